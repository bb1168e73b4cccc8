--- A token or cursor store in a Lua table: the default for one Lua process (one OpenResty worker).
-- Shape shared by every store (see docs/architecture.md): `get`, `set`, `delete`; no `lock`, since one process
-- needs no cross-process single flight.
local setmetatable = setmetatable

local M = {}
local Store = {}
Store.__index = Store

local default_clock = require("wechat.work.nginx").now

--- Makes a store.
-- @param opts optional: `clock` (function returning seconds, for tests)
function M.new(opts)
  return setmetatable({ kind = "memory", values = {}, expires = {}, clock = opts and opts.clock or default_clock },
    Store)
end

--- The value under `key`, or nil when there is none or it has expired.
function Store:get(key)
  local value = self.values[key]
  if value == nil then
    return nil
  end
  local expires = self.expires[key]
  if expires and expires <= self.clock() then
    self.values[key], self.expires[key] = nil, nil
    return nil
  end
  return value
end

--- Stores `value` under `key` for `ttl` seconds (nil: no expiry).
function Store:set(key, value, ttl)
  self.values[key] = value
  self.expires[key] = ttl and self.clock() + ttl or nil
  return true
end

--- Removes `key`; when `value` is given, only if the stored value is still that one (so a token that another
-- caller already replaced is not thrown away).
function Store:delete(key, value)
  if value == nil or self.values[key] == value then
    self.values[key], self.expires[key] = nil, nil
  end
  return true
end

return M
