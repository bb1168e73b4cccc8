# The counting of tools/test, sourced by it and by tools/test-gate-check (which proves it goes red when it must).
#   gate_step NAME COMMAND...     one check: passed when COMMAND exits 0, else failed
#   gate_busted NAME ARGS...      one busted run (ARGS as for busted); counts its specs
#   gate_abort MESSAGE            an early exit: one failure, the closing line, exit 1
#   gate_finish                   the closing line "N passed, N failed, N skipped"; exits 0 only when all passed
# Strict on purpose: busted's exit status counts (a crash after its summary fails the run, even with every spec
# passed), a run without counts fails, and under CI=true a pending spec fails unless it names a capability of
# spec/helpers/capabilities.lua that the machine lacks.
gate_passed=0 gate_failed=0 gate_skipped=0

gate_fail() { # gate_fail MESSAGE
  echo "gate: $1"
  gate_failed=$((gate_failed + 1))
}

gate_step() {
  local name=$1
  shift
  echo "== $name"
  if "$@"; then
    gate_passed=$((gate_passed + 1))
  else
    gate_fail "$name failed"
  fi
}

# Prints "N" (pending specs that fail the run under CI) after one reason line per such spec.
gate_ci_pending() { # gate_ci_pending REPORT
  lua5.4 - "$1" <<'LUA'
package.path = "spec/?.lua;" .. package.path
local capabilities = require "helpers.capabilities"
local bad = 0
for line in io.lines(arg[1]) do
  local message, name = line:match("^pending\t([^\t]*)\t(.*)$")
  if message then
    local ok, why = capabilities.excused(message)
    if not ok then
      bad = bad + 1
      print("gate: CI: pending spec fails the run: " .. name .. " (" .. message .. "): " .. why)
    end
  end
end
print(bad)
LUA
}

gate_busted() {
  local name=$1 report rc counts s f e p
  shift
  echo "== $name"
  report=$(mktemp)
  WECHAT_GATE_REPORT=$report busted "$@" -o spec/helpers/gate_output.lua
  rc=$?
  counts=$(grep -E '^counts' "$report")
  if [ -z "$counts" ]; then
    gate_fail "$name: busted wrote no counts (exit $rc)"
    rm -f "$report"
    return
  fi
  read -r _ s f e p <<<"$counts"
  gate_passed=$((gate_passed + s))
  gate_failed=$((gate_failed + f + e))
  if [ "$p" -gt 0 ] && [ "${CI:-}" = "true" ]; then
    local out bad
    out=$(gate_ci_pending "$report")
    bad=$(tail -n 1 <<<"$out")
    head -n -1 <<<"$out"
    [[ "$bad" =~ ^[0-9]+$ ]] || { gate_fail "$name: the CI pending check failed"; bad=0; }
    gate_failed=$((gate_failed + bad))
    p=$((p - bad))
  fi
  gate_skipped=$((gate_skipped + p))
  # busted exits non-zero on failures; with none counted, a non-zero exit is a crash after the summary
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && [ "$e" -eq 0 ]; then
    gate_fail "$name: busted exited $rc after its summary counted no failure"
  fi
  rm -f "$report"
}

gate_finish() {
  echo
  echo "$gate_passed passed, $gate_failed failed, $gate_skipped skipped"
  [ "$gate_failed" -eq 0 ] && exit 0
  exit 1
}

gate_abort() {
  gate_fail "$1"
  gate_finish
}
