-- Starts and stops a real redis-server for specs, under Lua 5.4 and LuaJIT alike (luasocket only).
--
--   local redis = require "helpers.redis"
--   local server
--   setup(function() server = redis.start(16391) end)     -- 127.0.0.1:16391, its own temp dir
--   teardown(function() server:stop() end)
--   server:call("LRANGE", "handled", "0", "-1")            -- a tiny RESP client of its own
--
-- The server keeps nothing on disk (`--save "" --appendonly no`), listens on 127.0.0.1 only and runs daemonized
-- with a pid file in a fresh temp dir, which stop() removes. The calls here go through their own small RESP
-- client rather than the store under test, so a spec never checks the store with the store. Failures raise: a
-- spec cannot go on without its server.
local socket = require "socket"

local M = {}

local concat = table.concat
local error, tonumber, tostring, select, setmetatable = error, tonumber, tostring, select, setmetatable

local READY_TRIES = 200      -- x READY_STEP seconds: how long start() waits for the server to answer PING
local READY_STEP = 0.05
local STOP_TRIES = 200

local Server = {}
Server.__index = Server

local shell_quote = require("helpers.shell").quote
local succeeded = require("helpers.shell").succeeded

local function capture(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return (out:gsub("%s+$", ""))
end

local function encode(...)
  local n = select("#", ...)
  local parts = { "*" .. n .. "\r\n" }
  for i = 1, n do
    local arg = tostring((select(i, ...)))
    parts[#parts + 1] = "$" .. #arg .. "\r\n" .. arg .. "\r\n"
  end
  return concat(parts)
end

-- One RESP reply: strings, integers, nil, arrays; an error reply comes back as nil, "ERR ...".
local function read_reply(sock)
  local line, err = sock:receive("*l")
  if not line then
    return nil, "receive: " .. err
  end
  local prefix, rest = line:sub(1, 1), line:sub(2)
  if prefix == "+" then
    return rest
  elseif prefix == "-" then
    return nil, rest
  elseif prefix == ":" then
    return tonumber(rest)
  elseif prefix == "$" then
    local len = tonumber(rest)
    if len < 0 then
      return nil
    end
    local data
    data, err = sock:receive(len + 2)
    if not data then
      return nil, "receive: " .. err
    end
    return data:sub(1, len)
  elseif prefix == "*" then
    local count = tonumber(rest)
    if count < 0 then
      return nil
    end
    local list = {}
    for i = 1, count do
      local value
      value, err = read_reply(sock)
      if err then
        return nil, err
      end
      list[i] = value
    end
    return list
  end
  return nil, "unexpected reply: " .. line
end

-- One command on a fresh connection: reply, or nil, err (refused, error reply).
local function command(port, password, ...)
  local sock = socket.tcp()
  sock:settimeout(2)
  local ok, err = sock:connect("127.0.0.1", port)
  if not ok then
    sock:close()
    return nil, err
  end
  if password then
    sock:send(encode("AUTH", password))
    err = select(2, read_reply(sock))
    if err then
      sock:close()
      return nil, err
    end
  end
  ok, err = sock:send(encode(...))
  if not ok then
    sock:close()
    return nil, err
  end
  local reply
  reply, err = read_reply(sock)
  sock:close()
  return reply, err
end

--- One command on a fresh connection to 127.0.0.1:port: the reply, or nil, err (refused, an error reply).
-- For processes that have no server object, e.g. spec/helpers/bot_worker.lua.
function M.command(port, ...)
  return command(port, nil, ...)
end

--- Starts redis-server on 127.0.0.1:port (raises when something already listens there).
-- @param port number
-- @param opts optional: `password` (requirepass)
-- @return a server: `port`, `dir`, `pid`, `call(...)`, `stop()`
function M.start(port, opts)
  opts = opts or {}
  local reply, err = command(port, nil, "PING")
  if reply ~= nil or err ~= "connection refused" then
    error("redis helper: something already listens on 127.0.0.1:" .. port, 2)
  end
  local dir = capture("mktemp -d /tmp/wechat-spec-redis-XXXXXX")
  if not dir:match("^/tmp/wechat%-spec%-redis%-%w+$") then
    error("redis helper: mktemp failed: " .. dir, 2)
  end
  local args = {
    "redis-server", "--port", tostring(port), "--bind", "127.0.0.1", "--save", "''", "--appendonly", "no",
    "--dir", shell_quote(dir), "--daemonize", "yes", "--pidfile", shell_quote(dir .. "/redis.pid"),
    "--logfile", shell_quote(dir .. "/redis.log"),
  }
  if opts.password then
    args[#args + 1] = "--requirepass " .. shell_quote(opts.password)
  end
  if not succeeded(os.execute(concat(args, " ") .. " >/dev/null 2>&1")) then
    os.execute("rm -rf " .. shell_quote(dir))
    error("redis helper: redis-server did not start on port " .. port, 2)
  end
  local server = setmetatable({ port = port, dir = dir, password = opts.password }, Server)
  for _ = 1, READY_TRIES do
    if command(port, opts.password, "PING") == "PONG" then
      local f = io.open(dir .. "/redis.pid")
      if f then
        server.pid = tonumber(f:read("*a"))
        f:close()
      end
      if server.pid then
        return server
      end
    end
    socket.sleep(READY_STEP)
  end
  server:stop()
  error("redis helper: redis-server on port " .. port .. " did not answer PING in time", 2)
end

--- Runs one command; raises on an error reply. Arguments are strings or numbers.
function Server:call(...)
  local reply, err = command(self.port, self.password, ...)
  if err then
    error("redis helper: " .. tostring((...)) .. ": " .. err, 2)
  end
  return reply
end

--- Empties every database.
function Server:flush()
  return self:call("FLUSHALL")
end

--- Stops the server (SHUTDOWN NOSAVE), waits until its port refuses connections and removes its temp dir.
-- The process itself may take a second more to be gone (it says "bye bye" at once); nothing waits for that,
-- since the port is free again as soon as it refuses.
function Server:stop()
  if self.stopped then
    return
  end
  self.stopped = true
  command(self.port, self.password, "SHUTDOWN", "NOSAVE")
  for _ = 1, STOP_TRIES do
    if select(2, command(self.port, nil, "PING")) == "connection refused" then
      break
    end
    socket.sleep(0.01)
  end
  os.execute("rm -rf " .. shell_quote(self.dir))
end

return M
