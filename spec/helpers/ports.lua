-- Loopback ports in the states the fault specs need, made with luasocket (Lua 5.4 and LuaJIT).
--
--   local ports = require "helpers.ports"
--   local port = ports.closed()            -- nothing listens there: a connect is refused
--   local port, close = ports.unanswered() -- a connect there waits until its timeout
local socket = require "socket"

local assert, tonumber = assert, tonumber

local M = {}

--- A port on 127.0.0.1 that nothing listens on (TCP, or UDP when kind is "udp"): bound by the kernel's choice, then
-- released.
function M.closed(kind)
  local s
  if kind == "udp" then
    s = assert(socket.udp())
    assert(s:setsockname("127.0.0.1", 0))
  else
    s = assert(socket.bind("127.0.0.1", 0))
  end
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

--- A port on 127.0.0.1 whose accept queue is full: it listens with backlog 0, which holds one connection, and that
-- one is made here and never accepted. Linux drops every further SYN, so a connect waits until its own timeout.
-- @return the port, and a function that closes both sockets
function M.unanswered()
  local server = assert(socket.tcp())
  assert(server:bind("127.0.0.1", 0))
  assert(server:listen(0))
  local _, port = server:getsockname()
  local filler = socket.tcp()
  filler:settimeout(2)
  assert(filler:connect("127.0.0.1", port))
  return tonumber(port), function()
    filler:close()
    server:close()
  end
end

return M
