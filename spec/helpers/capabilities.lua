--- The capabilities of a machine that a spec may need and a machine may lack, in one place. A spec that finds
-- one missing goes pending through `pending_without(name)`; under CI=true tools/test fails the run for every
-- pending spec except those naming a capability of this list that the machine really lacks (its probe fails).
-- Everything else a spec needs is a Debian package that tools/deps installs: its absence is a failure.
local succeeded = require("helpers.shell").succeeded

local M = {}

M.LIST = {
  -- the DNS failure spec (spec/faults_spec.lua) resolves inside an empty network namespace
  network_namespace = { what = "`unshare -n` (root, in a system that allows network namespaces)",
    probe = "unshare -n true" },
}

--- True when the machine has capability `name` (of LIST; another name raises).
function M.has(name)
  local cap = M.LIST[name] or error("no capability '" .. tostring(name) .. "' in spec/helpers/capabilities.lua", 2)
  return succeeded(os.execute(cap.probe .. " >/dev/null 2>&1"))
end

--- The message a spec passes to pending() when the machine lacks capability `name`.
function M.pending_message(name)
  local cap = M.LIST[name] or error("no capability '" .. tostring(name) .. "' in spec/helpers/capabilities.lua", 2)
  return "lacks capability " .. name .. ": needs " .. cap.what
end

--- Whether a pending spec's message excuses it under CI: true, or false and why not.
function M.excused(message)
  local name = tostring(message):match("^lacks capability ([%w_]+):")
  if not name then
    return false, "it names no capability of spec/helpers/capabilities.lua"
  end
  if not M.LIST[name] then
    return false, "'" .. name .. "' is not in spec/helpers/capabilities.lua"
  end
  if M.has(name) then
    return false, "this machine has " .. name
  end
  return true
end

return M
