-- Waiting on state, not on time, for the specs that start work in the background (a curl in the shell, held
-- requests at the stand-in): `eventually(fn)` polls fn until it is true, and `read_file(path)` reads what such
-- a background job wrote so far.
local socket = require "socket"

local M = {}

--- Polls fn every 50 ms until it returns true (at most 30 s, so a broken spec ends); false when it never did.
-- Never a time assertion: on a busy machine it just takes longer.
function M.eventually(fn)
  for _ = 1, 600 do
    if fn() then
      return true
    end
    socket.sleep(0.05)
  end
  return false
end

--- The whole content of a file, or "" when there is none (yet).
function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then
    return ""
  end
  local data = f:read("*a")
  f:close()
  return data
end

return M
