#!/usr/bin/env bash
# Soak: many sends against the stand-in over keep-alive, checking that memory stays flat.
#   1. Lua 5.4: bench/send_text.lua --calls N (client, curl transport, one connection), the process's own RSS;
#   2. inside nginx: the app of bench/openresty_send_text.sh (bench/openresty/nginx.conf: one worker, /send does one
#      kf.send_text per request over the cosocket transport, token in a lua_shared_dict), driven N times over one
#      keep-alive connection by bench/soak/drive.lua, the worker's RSS read from /proc.
# RSS is read at the start (after 2000 warm-up sends), the middle and the end; drift = the largest difference of
# middle or end from start, in % of start. Exits 1 when a drift is over --max-drift, when a send fails, or when the
# stand-in did not count every send.
#
#   bench/soak.sh [--sends N] [--max-drift P] [--only lua|nginx]
#     --sends      sends per part (default 1000000)
#     --max-drift  % (default 5)
#
# Stand-in: WECOM_STANDIN_PREFIX (default /tmp/bench-standin), WECOM_STANDIN_HTTP_PORT (18580),
# WECOM_STANDIN_HTTPS_PORT (18943); used when it runs there, else started and stopped at the end. The app nginx:
# BENCH_SOAK_PREFIX (default /tmp/wechat-bench-soak), BENCH_SOAK_PORT (default 18582).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

sends=1000000
max_drift=5
only=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --sends) sends=$2; shift 2 ;;
    --max-drift) max_drift=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "soak: unknown argument '$1' (see bench/soak.sh --help)" >&2; exit 2 ;;
  esac
done
[[ $sends =~ ^[1-9][0-9]*$ && $sends -ge 2 ]] || { echo "soak: --sends: a whole number >= 2 expected" >&2; exit 2; }
[[ $max_drift =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "soak: --max-drift: a number expected" >&2; exit 2; }
[[ -z $only || $only = lua || $only = nginx ]] || { echo "soak: --only lua or --only nginx" >&2; exit 2; }

die() {
  echo "soak: $*" >&2
  exit 1
}
for cmd in lua5.4 luajit curl; do
  command -v "$cmd" >/dev/null || die "$cmd not found"
done
nginx=/usr/sbin/nginx
warmup=2000 # send_text.lua's and drive.lua's warm-up

tools/build

export WECOM_STANDIN_PREFIX=${WECOM_STANDIN_PREFIX:-/tmp/bench-standin}
export WECOM_STANDIN_HTTP_PORT=${WECOM_STANDIN_HTTP_PORT:-18580}
export WECOM_STANDIN_HTTPS_PORT=${WECOM_STANDIN_HTTPS_PORT:-18943}
standin=tools/wecom-standin/standin
started_standin=0
if ! "$standin" status >/dev/null 2>&1; then
  "$standin" start >/dev/null
  started_standin=1
fi
url=$("$standin" env | sed -n 's/^WECOM_STANDIN_URL=//p')
[[ -n $url ]] || die "no URL from '$standin env'"
export WECOM_STANDIN_URL=$url

prefix=${BENCH_SOAK_PREFIX:-/tmp/wechat-bench-soak}
port=${BENCH_SOAK_PORT:-18582}
app_started=0
# shellcheck disable=SC2317 # called from the EXIT trap
stop_app() {
  if [[ $app_started = 1 && -f $prefix/nginx.pid ]]; then
    "$nginx" -p "$prefix/" -c "$prefix/nginx.conf" -e "$prefix/error.log" -s stop 2>/dev/null || true
    for _ in $(seq 100); do
      [[ -f $prefix/nginx.pid ]] || break
      sleep 0.1
    done
  fi
  app_started=0
}
# shellcheck disable=SC2317
cleanup() {
  stop_app
  if [[ $started_standin = 1 ]]; then
    "$standin" stop >/dev/null || true
  else
    curl -fsS -o /dev/null -X POST -d '{"record":true,"window_strict":true,"msgid_dedup":true}' "$url/_standin/config" || true
  fi
}
trap cleanup EXIT

send_msg_count() {
  # cjson writes the key as "\/cgi-bin\/kf\/send_msg"
  curl -fsS "$url/_standin/counts" | sed -n 's/.*send_msg":\([0-9]*\).*/\1/p'
}
reset_standin() {
  curl -fsS -o /dev/null -X POST "$url/_standin/reset"
  # window_strict false: the bench sends thousands of messages to one customer, who never wrote (WeCom
  # would take 5); what is measured is the exchange, not the window (spec/window_spec.lua has that)
  # msgid_dedup false: hundreds of thousands of msgids, more than the stand-in's dedup store holds (a full
  # one answers -1); every lane sends its own msgids all the same, as the library does
  curl -fsS -o /dev/null -X POST -d '{"record":false,"window_strict":false,"msgid_dedup":false}' "$url/_standin/config"
}

status=0
verdict() { # name drift
  if awk -v d="$2" -v m="$max_drift" 'BEGIN { exit !(d > m) }'; then
    echo "  $1: RSS drift $2% is over $max_drift%: NOT FLAT"
    status=1
  else
    echo "  $1: RSS drift $2% (<= $max_drift%): flat"
  fi
}
check_count() { # name expected
  local got
  got=$(send_msg_count)
  if [[ $got != "$2" ]]; then
    echo "  $1: the stand-in counted ${got:-no} send_msg, expected $2"
    status=1
  fi
}

echo "soak: $sends sends per part, $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# --- 1. Lua 5.4 ----------------------------------------------------------------------------------------------
if [[ -z $only || $only = lua ]]; then
  reset_standin
  out=$(lua5.4 bench/send_text.lua --calls "$sends" --tsv) || die "bench/send_text.lua failed"
  IFS=$'\t' read -r calls secs rate requests connects rss0 rss1 rss2 drift <<<"$out"
  echo "Lua 5.4 (client, curl transport): $calls sends in ${secs}s ($rate/s), $requests requests, $connects connects"
  echo "  RSS kB: start $rss0, middle $rss1, end $rss2"
  verdict "Lua 5.4" "$drift"
  check_count "Lua 5.4" $((sends + warmup))
fi

# --- 2. inside nginx -----------------------------------------------------------------------------------------
if [[ -z $only || $only = nginx ]]; then
  reset_standin
  mkdir -p "$prefix/tmp"
  chmod 755 "$prefix" "$prefix/tmp"
  if [[ -f $prefix/nginx.pid ]] && kill -0 "$(cat "$prefix/nginx.pid")" 2>/dev/null; then
    die "an nginx runs with prefix $prefix already (pid $(cat "$prefix/nginx.pid")); stop it or set BENCH_SOAK_PREFIX"
  fi
  user=""
  if [[ $(id -u) -eq 0 ]]; then user="user root;"; fi
  sed -e "s|@USER@|$user|" -e "s|@PREFIX@|$prefix|g" -e "s|@ROOT@|$root|g" -e "s|@PORT@|$port|g" \
    -e "s|@STANDIN_URL@|$url|g" bench/openresty/nginx.conf >"$prefix/nginx.conf"
  : >"$prefix/error.log"
  "$nginx" -p "$prefix/" -c "$prefix/nginx.conf" -e "$prefix/error.log" || die "the app nginx did not start"
  app_started=1
  # The first send fetches the token and fills the keep-alive pool; retried only while nginx does not listen yet
  # (curl exit 7), so the stand-in sees exactly one send here.
  for _ in $(seq 100); do
    rc=0
    first=$(curl -fsS "http://127.0.0.1:$port/send" 2>/dev/null) || rc=$?
    [[ $rc = 7 ]] || break
    sleep 0.1
  done
  [[ $rc = 0 ]] || die "the app's /send failed (curl exit $rc): $(tail -n 5 "$prefix/error.log")"
  # the msgid of the send: the client makes one (auto_msgid, the default), so any valid msgid will do
  [[ $first =~ ^[0-9A-Za-z_-]{1,32}$ ]] || die "unexpected answer from /send: $first"
  master=$(cat "$prefix/nginx.pid")
  worker=$(ps -o pid= --ppid "$master" | tr -d ' ' | head -n1)
  [[ -n $worker ]] || die "no worker under nginx master $master"
  out=$(luajit bench/soak/drive.lua --url "http://127.0.0.1:$port/send" --pid "$worker" --count "$sends" \
    --warmup "$warmup" --tsv) || die "bench/soak/drive.lua failed; end of $prefix/error.log:
$(tail -n 5 "$prefix/error.log")"
  IFS=$'\t' read -r calls secs rate rss0 rss1 rss2 drift connects <<<"$out"
  echo "nginx (handler, cosocket transport): $calls sends in ${secs}s ($rate/s), driver connects $connects"
  echo "  worker $worker RSS kB: start $rss0, middle $rss1, end $rss2"
  verdict "nginx worker" "$drift"
  check_count "nginx" $((sends + warmup + 1))
  if grep -q '\[\(error\|crit\|alert\|emerg\)\]' "$prefix/error.log"; then
    echo "  errors in $prefix/error.log:"
    grep '\[\(error\|crit\|alert\|emerg\)\]' "$prefix/error.log" | tail -n 5 | sed 's/^/    /'
    status=1
  fi
fi

exit "$status"
