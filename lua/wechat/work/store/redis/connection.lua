--- Connections to Redis for wechat.work.store.redis: which driver (resty.redis inside nginx, redis-lua elsewhere),
-- connecting, AUTH and SELECT, pooling or keeping the connection, and turning every failure into a "store" error
-- value. The store itself (keys, ttls, locks) is in wechat.work.store.redis; see its header for the drivers.
local errors = require "wechat.work.errors"
local nginx = require "wechat.work.nginx"

local error, ipairs, loadfile, pcall, rawget, require, setmetatable, tostring, type =
  error, ipairs, loadfile, pcall, rawget, require, setmetatable, tostring, type
local searchpath = package.searchpath
local floor = math.floor
local find, format, gsub, sub = string.find, string.format, string.gsub, string.sub

local M = {}

local DEFAULT_HOST = "127.0.0.1"
local DEFAULT_PORT = 6379
local DEFAULT_TIMEOUT = 2             -- seconds, connect and each command
local DEFAULT_KEEPALIVE = 60          -- seconds a pooled cosocket connection may idle (OpenResty)
local DEFAULT_POOL_SIZE = 32          -- pooled connections per worker (OpenResty)
local LUA51_TREES = "/usr/share/lua/5.1/?.lua;/usr/local/share/lua/5.1/?.lua"

local Connection = {}
Connection.__index = Connection

local function store_error(message, fields)
  return errors.new(errors.STORE, message, fields)
end

-- Messages raised by redis-lua carry "file:line: " and its own "redis error: " in front.
local function clean(message, password)
  message = gsub(tostring(message), "^[^\n]-%.lua:%d+: ", "")
  message = gsub(message, "^redis error: ", "")
  if password and password ~= "" then
    local from, to = find(message, password, 1, true)
    while from do
      message = sub(message, 1, from - 1) .. "***" .. sub(message, to + 1)
      from, to = find(message, password, from + 3, true)
    end
  end
  return message
end

local function load_plain_driver()
  local ok, driver = pcall(require, "redis")
  if ok and type(driver) == "table" and driver.connect then
    return driver
  end
  -- Debian's lua-redis is installed for Lua 5.1 only, yet is plain Lua over luasocket (see the header).
  local path = searchpath and searchpath("redis", LUA51_TREES)
  if not path then
    return nil, "redis-lua not found (Debian: apt install lua-redis)"
  end
  local chunk, err = loadfile(path)
  if not chunk then
    return nil, err
  end
  ok, driver = pcall(chunk, "redis")
  if not ok or type(driver) ~= "table" or not driver.connect then
    return nil, "cannot load " .. path .. ": " .. tostring(driver)
  end
  return driver
end

local function load_resty_driver()
  for _, name in ipairs({ "resty.redis", "nginx.redis" }) do
    local ok, driver = pcall(require, name)
    if ok and type(driver) == "table" and driver.new then
      return driver
    end
  end
  return nil, "resty.redis not found (Debian: apt install lua-nginx-redis)"
end

--- A command on a connection of either driver: reply, or nil, err. A nil reply (or resty's ngx.null) is nil, nil.
function M.call(conn, name, ...)
  local method = conn[name]
  if type(method) ~= "function" then
    return nil, "the connection has no " .. name .. " command"
  end
  local ok, res, err = pcall(method, conn, ...)
  if not ok then
    return nil, res
  end
  if not res then    -- resty.redis answers an error reply with false, err
    return nil, err
  end
  if type(res) == "userdata" then    -- resty's ngx.null: no value
    return nil
  end
  return res
end

--- Checks option `name` of the store's `new`: nil, or of type `kind` and passing `test`. Otherwise raises "bad
-- argument #1 to 'new' (NAME: EXPECTED expected, got VALUE)" at `level`, counted as `error` counts it in the
-- function that calls check_option (so that it points at the caller of the store's `new`).
function M.check_option(level, opts, name, kind, test, expected)
  local value = opts[name]
  if value ~= nil and (type(value) ~= kind or (test and not test(value))) then
    error(format("bad argument #1 to 'new' (%s: %s expected, got %s)", name, expected or kind, tostring(value)),
      level + 1)
  end
  return value
end

function M.nonneg(v)
  return v >= 0
end

function M.positive(v)
  return v > 0
end

local check_option, nonneg, positive = M.check_option, M.nonneg, M.positive

--- True when `value` is a connection the caller made and owns (a redis-lua client or a connected resty.redis
-- object: anything with get and eval methods), which the store uses as it is.
function M.is_given(value)
  return type(value.get) == "function" and type(value.eval) == "function"
end

--- Makes the connection side of a store from the store's options (host, port, db, username, password, timeout,
-- keepalive, pool_size; see wechat.work.store.redis.new), or wraps a connection the caller made (M.is_given).
-- Raises on a wrong option, naming it.
function M.new(opts)
  if M.is_given(opts) then
    return setmetatable({ conn = opts, given = true }, Connection)
  end
  return setmetatable({
    host = check_option(3, opts, "host", "string") or DEFAULT_HOST,
    port = check_option(3, opts, "port", "number", positive, "positive number") or DEFAULT_PORT,
    db = check_option(3, opts, "db", "number", nonneg, "non-negative number"),
    username = check_option(3, opts, "username", "string"),
    password = check_option(3, opts, "password", "string"),
    timeout = check_option(3, opts, "timeout", "number", positive, "positive number") or DEFAULT_TIMEOUT,
    keepalive = check_option(3, opts, "keepalive", "number", nonneg, "non-negative number") or DEFAULT_KEEPALIVE,
    pool_size = check_option(3, opts, "pool_size", "number", positive, "positive number") or DEFAULT_POOL_SIZE,
  }, Connection)
end

-- AUTH and SELECT on a fresh connection: true, or nil, err.
local function prepare(self, conn)
  local _, err
  if self.password then
    if self.username then
      _, err = M.call(conn, "auth", self.username, self.password)
    else
      _, err = M.call(conn, "auth", self.password)
    end
    if err then
      return nil, "auth: " .. clean(err, self.password)
    end
  end
  if self.db then
    _, err = M.call(conn, "select", format("%d", self.db))
    if err then
      return nil, "select " .. self.db .. ": " .. clean(err)
    end
  end
  return true
end

local function where(self)
  return "redis " .. self.host .. ":" .. self.port
end

local function connect_plain(self)
  local driver, err = load_plain_driver()
  if not driver then
    return nil, err
  end
  local socket = require "socket"
  local sock = socket.tcp()
  sock:settimeout(self.timeout)
  local ok
  ok, err = sock:connect(self.host, self.port)
  if not ok then
    sock:close()
    return nil, "cannot connect to " .. where(self) .. ": " .. tostring(err)
  end
  sock:setoption("tcp-nodelay", true)
  local conn
  ok, conn = pcall(driver.connect, { socket = sock })
  if not ok then
    sock:close()
    return nil, clean(conn)
  end
  ok, err = prepare(self, conn)
  if not ok then
    sock:close()
    return nil, where(self) .. ": " .. err
  end
  return conn
end

--- Runs fn(conn) on a connection: fn's reply, or nil, err (a "store" error value).
function Connection:run(fn)
  if self.given then
    local res, err = fn(self.conn)
    if err then
      return nil, store_error("redis: " .. clean(err, self.password))
    end
    return res
  end

  local ngx = nginx.get()
  if ngx then
    local driver, err = load_resty_driver()
    if not driver then
      return nil, store_error(err)
    end
    local ok, red = pcall(driver.new, driver)
    if not ok or not red then
      return nil, store_error("redis: " .. clean(red))
    end
    -- rawget: resty.redis makes a Redis command of any other name it is asked for
    local t = floor(self.timeout * 1000)
    if rawget(driver, "set_timeouts") then
      red:set_timeouts(t, t, t)
    else
      red:set_timeout(t)
    end
    -- connections differ by db and credentials (AUTH and SELECT happen only on new ones): one pool each; named
    -- once per store, since with a window on Redis this runs on every send
    local pool = self.pool_name
    if not pool then
      pool = format("wechat:%s:%d:%d", self.host, self.port, self.db or 0)
      if self.password then
        pool = pool .. ":" .. sub(ngx.md5((self.username or "") .. "\0" .. self.password), 1, 16)
      end
      self.pool_name = pool
    end
    local connected, cerr
    ok, connected, cerr = pcall(red.connect, red, self.host, self.port, { pool = pool, pool_size = self.pool_size })
    if not ok or not connected then
      return nil, store_error("cannot connect to " .. where(self) .. ": " .. clean(ok and cerr or connected))
    end
    if (red:get_reused_times() or 0) == 0 then
      ok, err = prepare(self, red)
      if not ok then
        red:close()
        return nil, store_error(where(self) .. ": " .. err)
      end
    end
    local res
    res, err = fn(red)
    if err then
      red:close()
      return nil, store_error(where(self) .. ": " .. clean(err, self.password))
    end
    red:set_keepalive(floor(self.keepalive * 1000), self.pool_size)
    return res
  end

  -- A kept connection may have died since (Redis restarted, idle timeout): then once more on a fresh one.
  for _ = 1, 2 do
    local conn, reused = self.conn, true
    if not conn then
      local err
      conn, err = connect_plain(self)
      if not conn then
        return nil, store_error(err)
      end
      self.conn, reused = conn, false
    end
    local res, err = fn(conn)
    if not err then
      return res
    end
    -- the connection may be half way through a reply: never use it again
    self.conn = nil
    pcall(function() conn.network.socket:close() end)
    if not (reused and find(tostring(err), "connection error", 1, true)) then
      return nil, store_error(where(self) .. ": " .. clean(err, self.password))
    end
  end
end

return M
