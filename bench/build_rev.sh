#!/usr/bin/env bash
# Builds wechat.core of a git revision aside, so a bench can run old and new code in one run:
#
#   bench/build_rev.sh REV DIR
#
# Extracts REV's tree into DIR (`git archive`, DIR made empty first), copies this checkout's bench/*.lua over its
# bench/ (so both sides run the same bench code, only lua/ and the core.so differ) and builds it with REV's own
# tools/build (DIR/build/5.4 and DIR/build/jit). Prints the commit built. The bench scripts run from DIR then
# load DIR's lua/ and core.so: `lua5.4 DIR/bench/bodies.lua`.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -eq 2 ]] || { echo "usage: bench/build_rev.sh REV DIR" >&2; exit 2; }
rev=$1 dir=$2
commit=$(git rev-parse --verify --quiet "$rev^{commit}") || { echo "bench/build_rev.sh: no commit '$rev'" >&2; exit 2; }
case $dir in
  "" | / | . | "$PWD") echo "bench/build_rev.sh: refusing to empty '$dir'" >&2; exit 2 ;;
esac
rm -rf "$dir"
mkdir -p "$dir"
git archive "$commit" | tar -x -C "$dir"
mkdir -p "$dir/bench"
cp bench/*.lua "$dir/bench/"
"$dir/tools/build"
echo "$commit"
