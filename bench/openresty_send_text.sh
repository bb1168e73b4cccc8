#!/usr/bin/env bash
# send_text throughput from inside nginx, next to the stand-in on its own.
#
#   1. the app: nginx (1 worker) whose /send does one kf.send_text per request (cosocket transport, keep-alive
#      pool, token in a lua_shared_dict), driven by wrk over one connection;
#   2. the floor: wrk posting the very same JSON body straight to the stand-in's /cgi-bin/kf/send_msg, one
#      connection.
# Same machine, same run, same stand-in; prints both rates and their ratio (1.0 would mean the library and nginx
# around it cost nothing). The stand-in records nothing during the run (config record = false).
#
# Environment: BENCH_SECONDS (default 5), BENCH_APP_PORT (default 18368), BENCH_PREFIX (default
# /tmp/wechat-bench-openresty), and the stand-in's WECOM_STANDIN_* (see tools/wecom-standin/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${BENCH_SECONDS:-5}
port=${BENCH_APP_PORT:-18368}
prefix=${BENCH_PREFIX:-/tmp/wechat-bench-openresty}
nginx=/usr/sbin/nginx

die() {
  echo "bench: $*" >&2
  exit 1
}

command -v wrk >/dev/null || die "wrk not found (apt-get install wrk)"
command -v luajit >/dev/null || die "luajit not found (apt-get install luajit2)"
[[ -f build/jit/wechat/core.so ]] || tools/build

standin=tools/wecom-standin/standin
started_standin=0
if ! "$standin" status >/dev/null 2>&1; then
  "$standin" start >/dev/null
  started_standin=1
fi
eval "$("$standin" env)"

stop_app() {
  if [[ -f $prefix/nginx.pid ]]; then
    "$nginx" -p "$prefix/" -c "$prefix/nginx.conf" -e "$prefix/error.log" -s stop 2>/dev/null || true
    rm -f "$prefix/nginx.pid"
  fi
}
cleanup() {
  stop_app
  curl -fsS -o /dev/null -X POST -d '{"record":true,"window_strict":true,"msgid_dedup":true}' "$WECOM_STANDIN_URL/_standin/config" || true
  if [[ $started_standin = 1 ]]; then "$standin" stop >/dev/null || true; fi
}
trap cleanup EXIT

# The app: bench/openresty/nginx.conf with this checkout, the port and the stand-in filled in.
stop_app
mkdir -p "$prefix/tmp"
chmod 755 "$prefix" "$prefix/tmp"
user=""
if [[ $(id -u) -eq 0 ]]; then user="user root;"; fi
sed -e "s|@USER@|$user|" -e "s|@PREFIX@|$prefix|g" -e "s|@ROOT@|$root|g" -e "s|@PORT@|$port|g" \
  -e "s|@STANDIN_URL@|$WECOM_STANDIN_URL|g" bench/openresty/nginx.conf >"$prefix/nginx.conf"
: >"$prefix/error.log"
"$nginx" -p "$prefix/" -c "$prefix/nginx.conf" -e "$prefix/error.log" || die "the app nginx did not start"
for _ in $(seq 100); do
  # any HTTP answer (404 here) means it listens
  curl -s -o /dev/null "http://127.0.0.1:$port/" && break
  sleep 0.1
done

curl -fsS -o /dev/null -X POST "$WECOM_STANDIN_URL/_standin/reset"
# window_strict false: the bench sends thousands of messages to one customer, who never wrote (WeCom
# would take 5); what is measured is the exchange, not the window (spec/window_spec.lua has that)
# msgid_dedup false: hundreds of thousands of msgids, more than the stand-in's dedup store holds (a full
# one answers -1); every lane sends its own msgids all the same, as the library does
curl -fsS -o /dev/null -X POST -d '{"record":false,"window_strict":false,"msgid_dedup":false}' "$WECOM_STANDIN_URL/_standin/config"

# One call first: the token is fetched and the keep-alive connection opened before the clock runs.
first=$(curl -fsS "http://127.0.0.1:$port/send") || die "the app's /send failed: $(tail -n 5 "$prefix/error.log")"
# the msgid of the send: the client makes one (auto_msgid, the default), so any valid msgid will do
[[ $first =~ ^[0-9A-Za-z_-]{1,32}$ ]] || die "unexpected answer from /send: $first"
token=$(curl -fsS "$WECOM_STANDIN_URL/cgi-bin/gettoken?corpid=wwCORP&corpsecret=KF_SECRET" |
  sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
[[ -n $token ]] || die "no token from the stand-in"

# The body send_text posts, written by the library's own builder.
body=$(LUA_CPATH="$root/build/jit/?.so;;" luajit -e \
  'io.write((require("wechat.core").send_text(nil, nil, "wmBENCH", "wkBENCH", "bench")))')

rate() { # wrk output -> requests per second
  sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p'
}
errors() { # wrk output -> non-2xx answers and socket errors
  local n
  n=$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p')
  echo "${n:-0}"
}

app_out=$(wrk -c1 -t1 -d"${seconds}s" "http://127.0.0.1:$port/send")
direct_out=$(BENCH_BODY=$body wrk -c1 -t1 -d"${seconds}s" -s bench/openresty/post.lua \
  "$WECOM_STANDIN_URL/cgi-bin/kf/send_msg?access_token=$token")

app_rate=$(rate <<<"$app_out")
direct_rate=$(rate <<<"$direct_out")
[[ -n $app_rate && -n $direct_rate ]] || die "could not read wrk's output:
$app_out
$direct_out"
app_errors=$(errors <<<"$app_out")
direct_errors=$(errors <<<"$direct_out")

# The stand-in counted every send_msg: the first call, the app's and the direct ones.
counts=$(curl -fsS "$WECOM_STANDIN_URL/_standin/counts")

echo "send_text, one connection, ${seconds}s each, $(nproc) CPUs"
printf '  inside nginx (handler -> cosocket -> stand-in): %10.1f req/s  (%s failed)\n' "$app_rate" "$app_errors"
printf '  wrk straight to the stand-in, same body:       %10.1f req/s  (%s failed)\n' "$direct_rate" "$direct_errors"
awk -v a="$app_rate" -v d="$direct_rate" 'BEGIN { printf "  ratio inside nginx / straight:                 %10.2f\n", a / d }'
echo "  stand-in counts: $counts"
if [[ $app_errors != 0 || $direct_errors != 0 ]]; then
  echo "bench: some requests failed; see $prefix/error.log" >&2
  exit 1
fi
