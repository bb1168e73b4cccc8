#!/usr/bin/env bash
# The body builders of two revisions side by side, in one run: bench/bodies.lua against the core.so of OLD and
# of NEW (default: this checkout as it is, built by tools/build), in turns, under Lua 5.4 and LuaJIT.
#
#   bench/builder_ab.sh OLD [NEW] [--rounds R] [--n N] [--desk]
#     --rounds  runs of bodies.lua per side and interpreter, old and new taking turns (default 2)
#     --n       bodies.lua --n (default 100000)
#     --desk    bodies.lua --desk (the KF desk bodies too; both revisions must have those builders)
#
# OLD (and NEW when given) is built aside by bench/build_rev.sh in a temporary directory, with this checkout's
# bench/*.lua, so only the core.so differs. Prints, per interpreter and body, the means over the rounds of:
# new / old calls per second of the builder and of `core.encode` (table + the generic encoder), and each side's
# builder / table+cjson ratio (the figure bench/run prints), and new/old normalized: new b/cjson over old b/cjson.
# The table + cjson side is the same code in both runs (same bench/*.lua, same cjson), and each bodies.lua run
# times it in turns with the builder, so dividing by it cancels a change of load between the old and the new run;
# on a shared machine that column is the one to read. The order alternates by round (old first in odd rounds).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=2 n=100000 desk="" old="" new=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --n) n=$2; shift 2 ;;
    --desk) desk=--desk; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    -*) echo "bench/builder_ab.sh: unknown argument '$1'" >&2; exit 2 ;;
    *) if [[ -z $old ]]; then old=$1; elif [[ -z $new ]]; then new=$1; else
         echo "bench/builder_ab.sh: too many revisions" >&2; exit 2; fi; shift ;;
  esac
done
[[ -n $old ]] || { echo "usage: bench/builder_ab.sh OLD [NEW] [--rounds R] [--n N] [--desk]" >&2; exit 2; }
for v in "$rounds" "$n"; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "bench/builder_ab.sh: '$v' is not a positive integer" >&2; exit 2; }
done

tmp=$(mktemp -d /tmp/wechat-builder-ab.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
old_commit=$(bench/build_rev.sh "$old" "$tmp/old" | tail -1)
if [[ -n $new ]]; then
  new_commit=$(bench/build_rev.sh "$new" "$tmp/new" | tail -1)
  new_root=$tmp/new
else
  tools/build
  new_commit="$(git rev-parse HEAD) (this checkout$(git diff --quiet HEAD -- src CMakeLists.txt || echo ', changed'))"
  new_root=.
fi

out=$tmp/rates.tsv
for round in $(seq "$rounds"); do
  for lua in lua5.4 luajit; do
    if (( round % 2 )); then order="old new"; else order="new old"; fi
    for side in $order; do
      if [[ $side = old ]]; then root=$tmp/old; else root=$new_root; fi
      "$lua" "$root/bench/bodies.lua" --n "$n" --tsv $desk | sed "s/^/$lua\t$side\t$round\t/" >>"$out"
    done
  done
  echo "round $round of $rounds done" >&2
done

echo "builder A/B, bench/bodies.lua --n $n, $rounds rounds, old and new in turns; means over the rounds"
echo "  old: $old_commit"
echo "  new: $new_commit"
# columns: lua side round name bytes core cjson encode
awk -F'\t' '
  { k = $1 SUBSEP $4; c[k, $2] += $6; j[k, $2] += $7; e[k, $2] += $8; m[k, $2]++
    if (!(k in seen)) { seen[k] = 1; order[++nk] = k } }
  END {
    for (i = 1; i <= nk; i++) {
      split(order[i], p, SUBSEP)
      if (p[1] != last) {
        printf "\n%s\n  %-28s %16s %16s %14s %14s %14s\n", p[1], "body", "new/old builder", "new/old encode",
          "old b/cjson", "new b/cjson", "new/old, norm."
        last = p[1]
      }
      k = order[i]
      printf "  %-28s %15.2fx %15.2fx %13.2fx %13.2fx %13.2fx\n", p[2],
        (c[k, "new"] / m[k, "new"]) / (c[k, "old"] / m[k, "old"]),
        (e[k, "new"] / m[k, "new"]) / (e[k, "old"] / m[k, "old"]),
        c[k, "old"] / j[k, "old"], c[k, "new"] / j[k, "new"],
        (c[k, "new"] / j[k, "new"]) / (c[k, "old"] / j[k, "old"])
    }
  }' "$out"
