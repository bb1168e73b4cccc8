#!/usr/bin/env bash
# Media upload throughput: wechat.work.material.upload (Lua 5.4, libcurl transport, the file streamed from disk)
# against `curl -F` posting the same file, as the same one part with filelength, to the same stand-in, same run.
# Rounds interleave the two sides; each side keeps its best round. Prints MiB/s (1 MiB = 1,048,576 bytes) of both
# and their ratio.
#
# Environment: BENCH_MB (file size in MiB, default 20), BENCH_UPLOADS (uploads per round and side, default 5),
# BENCH_ROUNDS (default 3), BENCH_DIR (default /tmp/wechat-bench-media), and the stand-in's WECOM_STANDIN_*.
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${BENCH_MB:-20}
uploads=${BENCH_UPLOADS:-5}
rounds=${BENCH_ROUNDS:-3}
dir=${BENCH_DIR:-/tmp/wechat-bench-media}

[[ -f build/5.4/wechat/core.so ]] || tools/build
standin=tools/wecom-standin/standin
started_standin=0
if ! "$standin" status >/dev/null 2>&1; then
  "$standin" start >/dev/null
  started_standin=1
fi
eval "$("$standin" env)"
cleanup() {
  curl -fsS -o /dev/null -X POST -d '{"record":true}' "$WECOM_STANDIN_URL/_standin/config" || true
  if [[ $started_standin = 1 ]]; then "$standin" stop >/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT
curl -fsS -o /dev/null -X POST -d '{"record":false}' "$WECOM_STANDIN_URL/_standin/config"

mkdir -p "$dir"
bytes=$((mb * 1024 * 1024))
head -c "$bytes" /dev/urandom >"$dir/upload.bin"
# curl -F writes no filelength: the part header WeCom documents is given whole (curl then writes no other)
printf 'Content-Disposition: form-data; name="media"; filename="upload.bin"; filelength=%d\r\n' "$bytes" \
  >"$dir/part-header"
token=$(curl -fsS "$WECOM_STANDIN_URL/cgi-bin/gettoken?corpid=wwCORP&corpsecret=KF_SECRET" |
  sed 's/.*"access_token":"\([^"]*\)".*/\1/')
url="$WECOM_STANDIN_URL/cgi-bin/media/upload?type=file&access_token=$token"
answer=$(curl -fsS -F "media=@$dir/upload.bin;headers=@$dir/part-header;type=application/octet-stream" "$url")
[[ $answer == *'"errcode":0'* ]] || { echo "bench: curl -F was refused: $answer" >&2; exit 1; }

curl_seconds() {
  local start end
  start=$(date +%s.%N)
  for _ in $(seq "$uploads"); do
    curl -fsS -o /dev/null -F "media=@$dir/upload.bin;headers=@$dir/part-header;type=application/octet-stream" \
      "$url"
  done
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.6f", b - a }' 
}
lua_seconds() {
  LUA_PATH="lua/?.lua;;" LUA_CPATH="build/5.4/?.so;;" lua5.4 bench/media_upload.lua "$WECOM_STANDIN_URL" \
    "$dir/upload.bin" "$uploads"
}

best_curl="" best_lua=""
for round in $(seq "$rounds"); do
  c=$(curl_seconds)
  l=$(lua_seconds)
  printf 'round %d: curl -F %.3f s, material.upload %.3f s (%d x %d MiB each)\n' "$round" "$c" "$l" "$uploads" "$mb"
  best_curl=$(awk -v a="$c" -v b="${best_curl:-$c}" 'BEGIN { print (a < b ? a : b) }')
  best_lua=$(awk -v a="$l" -v b="${best_lua:-$l}" 'BEGIN { print (a < b ? a : b) }')
done
awk -v n="$uploads" -v mb="$mb" -v c="$best_curl" -v l="$best_lua" -v r="$rounds" 'BEGIN {
  printf "\n| | MiB/s (best of %d rounds) |\n| --- | --- |\n", r
  printf "| curl -F | %.1f |\n| material.upload (Lua 5.4, libcurl) | %.1f |\n", n * mb / c, n * mb / l
  printf "| ratio material.upload / curl -F | %.2f |\n", c / l
}'
