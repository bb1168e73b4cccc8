#!/usr/bin/env bash
# Instructions a call, counted by valgrind's callgrind: repeatable on a shared machine where timings swing.
# Each figure is (Ir of a run making K+B calls - Ir of a run making B calls) / K, so start-up, loading and
# warm-up cancel out.
#
#   bench/callgrind.sh [--rev REV] [--lua lua5.4|luajit] [--calls K] [--top T] [WHAT...]
#     WHAT (default: send bodies):
#       send       bench/lua_cost.lua: the library's own Lua work per kf.send_text (client, builder, token,
#                  request check, decoding) with a curl transport whose handle answers at once
#       bodies     bench/bodies.lua --repeat: each message body, the builder and table + cjson.encode
#       transport  bench/send_text.lua --transport-only: one request straight to the curl transport (libcurl
#                  included) against the stand-in, over one keep-alive connection
#       client     bench/send_text.lua: kf.send_text through the client and the curl transport, same stand-in
#     --rev REV  count REV's code instead of this checkout's (built aside by bench/build_rev.sh, with this
#                checkout's bench/*.lua)
#     --lua      the interpreter (default lua5.4; under luajit the counts include the JIT compiler's work)
#     --calls K  calls counted (default: send 2000, bodies 5000, transport and client 1000)
#     --top T    also list the T functions with the most instructions a call (inclusive, the same difference of
#                two runs), e.g. lua_next under the menu builder
#
# transport and client need the stand-in: WECOM_STANDIN_URL when set, else the stand-in of bench/run
# (/tmp/bench-standin, ports 18580/18943), started and stopped here when it is not running. Builds first.
set -euo pipefail
cd "$(dirname "$0")/.."

rev="" lua=lua5.4 calls="" top=0 whats=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --rev) rev=$2; shift 2 ;;
    --lua) lua=$2; shift 2 ;;
    --calls) calls=$2; shift 2 ;;
    --top) top=$2; shift 2 ;;
    send | bodies | transport | client) whats+=("$1"); shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "bench/callgrind.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ ${#whats[@]} -gt 0 ]] || whats=(send bodies)
[[ $lua = lua5.4 || $lua = luajit ]] || { echo "bench/callgrind.sh: --lua lua5.4 or luajit" >&2; exit 2; }
[[ -z $calls || $calls =~ ^[1-9][0-9]*$ ]] || { echo "bench/callgrind.sh: bad --calls '$calls'" >&2; exit 2; }
[[ $top =~ ^[0-9]+$ ]] || { echo "bench/callgrind.sh: bad --top '$top'" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "bench/callgrind.sh: valgrind not found" >&2; exit 1; }

tmp=$(mktemp -d /tmp/wechat-callgrind.XXXXXX)
standin=tools/wecom-standin/standin
started_standin=0
configured_standin=0
cleanup() {
  if [[ $started_standin = 1 ]]; then
    "$standin" stop >/dev/null || true
  elif [[ $configured_standin = 1 ]]; then
    curl -fsS -o /dev/null -X POST -d '{"record":true,"window_strict":true,"msgid_dedup":true}' "$WECOM_STANDIN_URL/_standin/config" ||
      true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

if [[ -n $rev ]]; then
  root=$tmp/rev
  label=$(bench/build_rev.sh "$rev" "$root" | tail -1)
else
  tools/build
  root=.
  label="$(git rev-parse HEAD) (this checkout$(git diff --quiet HEAD -- src lua || echo ', changed'))"
fi
# LuaJIT writes machine code into memory it then runs: valgrind must look for such changes everywhere
smc=()
[[ $lua = luajit ]] && smc=(--smc-check=all-non-file)

# Ir of one run: callgrind's total. Args: NAME ARGS...; the profile stays in $tmp/cg.NAME.
ir() {
  local name=$1
  shift
  local out=$tmp/cg.$name
  valgrind --tool=callgrind "${smc[@]}" --callgrind-out-file="$out" "$lua" "$@" >/dev/null 2>"$tmp/err" ||
    { cat "$tmp/err" >&2; echo "bench/callgrind.sh: '$lua $*' failed under valgrind" >&2; exit 1; }
  sed -n 's/^\(summary\|totals\): *//p' "$out" | head -1
}
# Every named function's inclusive Ir in profile NAME, as "Ir<TAB>function" lines. callgrind_annotate lists a
# function once per file name its debug info gives and once per recursion level (NAME'2): the largest is kept.
# Frames of stripped libraries (liblua5.4 here) have no name, only an address, and are left out.
functions() {
  callgrind_annotate --inclusive=yes --threshold=100 "$tmp/cg.$1" 2>/dev/null |
    awk '/^ *[0-9][0-9,]* *\(/ && !/PROGRAM TOTALS/ {
      v = $1; gsub(",", "", v); fn = $0; sub(/^ *[0-9,]+ *\([^)]*\) */, "", fn); sub(/ \[.*$/, "", fn)
      sub(/^.*:/, "", fn); sub(/\047[0-9]+$/, "", fn)
      if (fn ~ /^0x/) next
      if (v + 0 > s[fn] + 0) s[fn] = v } END { for (f in s) printf "%s\t%s\n", s[f], f }'
}
# Prints one figure: name, then (Ir(K + base) - Ir(base)) / K; args: name K base-args... -- K-args...
# With --top, also the T functions whose inclusive Ir grew most a call between the two runs, leaving out the
# frames that hold 95% or more of it (main, lua_pcallk, the entry point of the call measured).
n_run=0
per_call() {
  local name=$1 k=$2
  shift 2
  local base=() more=()
  while [[ $1 != -- ]]; do base+=("$1"); shift; done
  shift
  more=("$@")
  local a b each
  n_run=$((n_run + 1))
  a=$(ir "$n_run.base" "${base[@]}")
  b=$(ir "$n_run" "${more[@]}")
  each=$(awk -v a="$a" -v b="$b" -v k="$k" 'BEGIN { printf "%.0f", (b - a) / k }')
  printf '  %-44s %12s\n' "$name" "$each"
  if [[ $top -gt 0 ]]; then
    functions "$n_run.base" >"$tmp/f.base"
    functions "$n_run" >"$tmp/f.more"
    awk -F'\t' -v k="$k" -v each="$each" 'NR == FNR { base[$2] = $1; next }
      { d = ($1 - base[$2]) / k; if (d < 0.95 * each) printf "%.0f\t%s\n", d, $2 }' "$tmp/f.base" "$tmp/f.more" |
      sort -t$'\t' -k1,1nr | awk -F'\t' -v t="$top" 'NR <= t { printf "      %10s  %s\n", $1, $2 }'
  fi
}

need_standin() {
  [[ $started_standin = 1 || $configured_standin = 1 ]] && return
  if [[ -z ${WECOM_STANDIN_URL:-} ]]; then
    export WECOM_STANDIN_PREFIX=${WECOM_STANDIN_PREFIX:-/tmp/bench-standin}
    export WECOM_STANDIN_HTTP_PORT=${WECOM_STANDIN_HTTP_PORT:-18580}
    export WECOM_STANDIN_HTTPS_PORT=${WECOM_STANDIN_HTTPS_PORT:-18943}
    if ! "$standin" status >/dev/null 2>&1; then
      "$standin" start >/dev/null
      started_standin=1
    fi
    WECOM_STANDIN_URL=$("$standin" env | sed -n 's/^WECOM_STANDIN_URL=//p')
    export WECOM_STANDIN_URL
  fi
  # window_strict false: thousands of sends to one customer who never wrote (WeCom would take 5); what is counted
  # is the exchange, not the window; msgid_dedup false: more msgids than the stand-in's dedup store holds. A
  # stand-in that was running gets the defaults back at the end.
  [[ $started_standin = 1 ]] || configured_standin=1
  curl -fsS -o /dev/null -X POST -d '{"record":false,"window_strict":false,"msgid_dedup":false}' "$WECOM_STANDIN_URL/_standin/config"
}

echo "instructions a call (callgrind, $lua), code of $label"
for what in "${whats[@]}"; do
  case $what in
    send)
      k=${calls:-2000}
      per_call "send_text, library Lua work (lua_cost.lua)" "$k" \
        "$root/bench/lua_cost.lua" --calls 1 --rounds 1 -- "$root/bench/lua_cost.lua" --calls $((k + 1)) --rounds 1
      ;;
    bodies)
      k=${calls:-5000}
      for body in text menu link location sync_msg; do
        for side in core cjson; do
          per_call "$body, $([[ $side = core ]] && echo builder || echo 'table + cjson.encode')" "$k" \
            "$root/bench/bodies.lua" --only "$body" --side "$side" --repeat 0 -- \
            "$root/bench/bodies.lua" --only "$body" --side "$side" --repeat "$k"
        done
      done
      ;;
    transport | client)
      need_standin
      k=${calls:-1000}
      flag=()
      [[ $what = transport ]] && flag=(--transport-only)
      per_call "$([[ $what = transport ]] && echo 'curl transport alone, one request' || echo 'send_text, client + curl transport')" "$k" \
        "$root/bench/send_text.lua" "${flag[@]}" --calls 1 -- "$root/bench/send_text.lua" "${flag[@]}" --calls $((k + 1))
      ;;
  esac
done
