#!/usr/bin/env bash
# Memory of the KF window tracker in a lua_shared_dict (issue: 100,000 tracked customers in under 64 MB).
# Starts an nginx (1 worker) with a 64m dict, fills it through the tracker's shared_dict backend with N customers
# (default 100,000) in three shapes (window only; window + a counted send; window + count + session state), and
# prints the dict's used bytes (capacity - free_space, whole 4 KiB pages), bytes per customer and the share of
# the 64m dict (64 MiB = 67,108,864 bytes). Needs nginx + libnginx-mod-http-lua, curl, and tools/build (LuaJIT build).
#
# Environment: BENCH_N (default 100000), BENCH_APP_PORT (default 18411), BENCH_PREFIX (/tmp/wechat-bench-window).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
n=${BENCH_N:-100000}
port=${BENCH_APP_PORT:-18411}
prefix=${BENCH_PREFIX:-/tmp/wechat-bench-window}
nginx=/usr/sbin/nginx

[[ -f build/jit/wechat/core.so ]] || tools/build >/dev/null

stop_app() {
  if [[ -f $prefix/nginx.pid ]]; then
    "$nginx" -p "$prefix/" -c "$prefix/nginx.conf" -e "$prefix/error.log" -s stop 2>/dev/null || true
    rm -f "$prefix/nginx.pid"
  fi
}
trap stop_app EXIT
stop_app
mkdir -p "$prefix/tmp"
chmod 755 "$prefix" "$prefix/tmp"
user=""
if [[ $(id -u) -eq 0 ]]; then user="user root;"; fi
sed -e "s|@USER@|$user|" -e "s|@PREFIX@|$prefix|g" -e "s|@ROOT@|$root|g" -e "s|@PORT@|$port|g" \
  bench/window/nginx.conf >"$prefix/nginx.conf"
: >"$prefix/error.log"
"$nginx" -p "$prefix/" -c "$prefix/nginx.conf" -e "$prefix/error.log" || { cat "$prefix/error.log"; exit 1; }
for _ in $(seq 50); do curl -fs -o /dev/null "http://127.0.0.1:$port/fill?n=0&keys=1" && break; sleep 0.1; done

limit=$((64 * 1024 * 1024))
printf '%-34s %12s %10s %10s\n' "customers tracked in a 64m dict" "used bytes" "per cust." "of 64 MiB"
for keys in 1 2 3; do
  read -r count used _ _ < <(curl -fsS "http://127.0.0.1:$port/fill?n=$n&keys=$keys")
  case $keys in
    1) shape="$count, window only" ;;
    2) shape="$count, window + count" ;;
    3) shape="$count, window + count + state" ;;
  esac
  awk -v s="$shape" -v u="$used" -v c="$count" -v l="$limit" \
    'BEGIN { printf "%-34s %12d %10.0f %9.2fx\n", s, u, u / c, u / l }'
done
