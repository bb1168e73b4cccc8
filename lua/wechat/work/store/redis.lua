--- A token or cursor store on Redis, for several processes or machines sharing one access token and one
-- sync_msg cursor (see docs/architecture.md, "Stores").
--
--   local redis_store = require "wechat.work.store.redis"
--   local store = redis_store.new{ host = "127.0.0.1", port = 6379, db = 0, password = nil, prefix = "",
--                                  timeout = 2 }
--   local store = redis_store.new(connection)   -- a connection you made and own (see below)
--
-- Drivers:
-- * Inside nginx (OpenResty) it uses `resty.redis` (Debian's lua-nginx-redis installs it as `nginx.redis`; both
--   names are tried): a connection per operation, handed back to the cosocket pool with `set_keepalive`.
--   Cosockets are not available in every phase (init_by_lua, set_by_lua, header/body filters, log): there every
--   operation fails with a "store" error.
-- * Elsewhere it uses nrk's redis-lua (`require "redis"`, Debian's lua-redis). Debian ships that one for Lua 5.1
--   only (/usr/share/lua/5.1/redis.lua); it is plain Lua over luasocket and runs unchanged under Lua 5.4, so when
--   `require "redis"` finds nothing this module loads that file from the Lua 5.1 tree itself (without touching
--   `package.path` or `package.loaded`). One connection per store, opened on first use and dropped after any
--   failure (the next operation reconnects). A store so made is for one coroutine at a time.
-- * `new(connection)`: a redis-lua client or a connected resty.redis object, used as it is: this module never
--   connects, closes or pools it.
--
-- Every run-time failure (refused, timeout, AUTH, a Redis error reply) comes back as `nil, err` with
-- `err.kind == "store"`; nothing raises but wrong arguments. The password never appears in an error.
--
-- Keys are used as given, behind `prefix`. A lock on `key` lives at `prefix .. key .. ":lock"` and holds a
-- random token: `SET lockkey token NX PX ttl` takes it, a compare-and-delete script (EVAL) releases it, so a
-- holder whose lock expired and was taken by another never releases the other's lock.
local errors = require "wechat.work.errors"

local error, ipairs, loadfile, pcall, rawget, require, setmetatable, tonumber, tostring, type =
  error, ipairs, loadfile, pcall, rawget, require, setmetatable, tonumber, tostring, type
local searchpath = package.searchpath
local unpack = table.unpack or unpack -- luacheck: ignore 143
local ceil, floor, min, random = math.ceil, math.floor, math.min, math.random
local byte, find, format, gsub, sub = string.byte, string.find, string.format, string.gsub, string.sub

local M = {}

local DEFAULT_HOST = "127.0.0.1"
local DEFAULT_PORT = 6379
local DEFAULT_TIMEOUT = 2             -- seconds, connect and each command
local DEFAULT_KEEPALIVE = 60          -- seconds a pooled cosocket connection may idle (OpenResty)
local DEFAULT_POOL_SIZE = 32          -- pooled connections per worker (OpenResty)
local DEFAULT_LOCK_TIMEOUT = 5        -- seconds lock() waits for a lock another holds
-- Seconds a lock taken without a ttl lives unless released or extended: the client's token lock, which must
-- outlast the slowest gettoken with retries (see wechat.work.store.shared_dict, the same number).
M.DEFAULT_LOCK_TTL = 150
local POLL_FIRST, POLL_MAX = 0.005, 0.1
local LUA51_TREES = "/usr/share/lua/5.1/?.lua;/usr/local/share/lua/5.1/?.lua"

-- KEYS[1] lock (or value) key, ARGV[1] the value it must still hold.
local COMPARE_AND_DELETE = [[
if redis.call("get", KEYS[1]) == ARGV[1] then
  return redis.call("del", KEYS[1])
end
return 0
]]

-- KEYS[1] lock key, ARGV[1] token, ARGV[2] new ttl in ms.
local COMPARE_AND_EXPIRE = [[
if redis.call("get", KEYS[1]) == ARGV[1] then
  return redis.call("pexpire", KEYS[1], ARGV[2])
end
return 0
]]

-- KEYS[1] lock key, KEYS[2] key to write, ARGV[1] token, ARGV[2] ttl of the lock in ms, ARGV[3] value.
-- The fence: the value is written only while the lock is still the writer's, in one step.
local COMPARE_AND_SET = [[
if redis.call("get", KEYS[1]) == ARGV[1] then
  redis.call("pexpire", KEYS[1], ARGV[2])
  redis.call("set", KEYS[2], ARGV[3])
  return 1
end
return 0
]]

local Store = {}
Store.__index = Store

local Lock = {}
Lock.__index = Lock

local function nginx()
  local ngx = rawget(_G, "ngx")
  if type(ngx) == "table" and type(ngx.socket) == "table" and type(ngx.get_phase) == "function" then
    return ngx
  end
end

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

local function ms(seconds)
  return format("%d", ceil(seconds * 1000))
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

-- A lock token nobody else draws: random bytes read once per store, then a counter.
local function random_id()
  local f = io.open("/dev/urandom", "rb")
  if f then
    local bytes = f:read(12)
    f:close()
    if bytes and #bytes == 12 then
      return (gsub(bytes, ".", function(c) return format("%02x", byte(c)) end))
    end
  end
  return format("%x%x%s", floor(random() * 2 ^ 31), os.time(), sub(tostring({}), 8))
end

-- A command on a connection of either driver: reply, or nil, err. A nil reply (or resty's ngx.null) is nil, nil.
local function call(conn, name, ...)
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

local function check_option(opts, name, kind, test, expected)
  local value = opts[name]
  if value ~= nil and (type(value) ~= kind or (test and not test(value))) then
    error(format("bad argument #1 to 'new' (%s: %s expected, got %s)", name, expected or kind, tostring(value)), 3)
  end
  return value
end

local function nonneg(v)
  return v >= 0
end

local function positive(v)
  return v > 0
end

--- Makes a store.
-- @param opts a table: `host` (default "127.0.0.1"), `port` (6379), `db` (index for SELECT, default none),
--   `password` (AUTH; with `username` for Redis 6 ACL users), `prefix` (put in front of every key, default ""),
--   `timeout` (seconds, connect and each command, default 2), `keepalive` (seconds idle in the OpenResty pool,
--   default 60), `pool_size` (OpenResty, default 32), `lock_ttl` (seconds a lock taken without a ttl lives,
--   default 150: it must outlast the client's slowest gettoken, retries included);
--   or a connection: a redis-lua client or a connected resty.redis object (anything with get/set/del/eval
--   methods), used as it is.
-- @return the store; raises on a wrong argument.
function M.new(opts)
  if type(opts) ~= "table" then
    error(format("bad argument #1 to 'new' (table expected, got %s)", type(opts)), 2)
  end
  local self = { kind = "redis", prefix = "", id = random_id(), serial = 0, lock_ttl = M.DEFAULT_LOCK_TTL }
  if type(opts.get) == "function" and type(opts.eval) == "function" then
    self.conn, self.given = opts, true
    return setmetatable(self, Store)
  end
  self.host = check_option(opts, "host", "string") or DEFAULT_HOST
  self.port = check_option(opts, "port", "number", positive, "positive number") or DEFAULT_PORT
  self.db = check_option(opts, "db", "number", nonneg, "non-negative number")
  self.username = check_option(opts, "username", "string")
  self.password = check_option(opts, "password", "string")
  self.prefix = check_option(opts, "prefix", "string") or ""
  self.timeout = check_option(opts, "timeout", "number", positive, "positive number") or DEFAULT_TIMEOUT
  self.keepalive = check_option(opts, "keepalive", "number", nonneg, "non-negative number") or DEFAULT_KEEPALIVE
  self.pool_size = check_option(opts, "pool_size", "number", positive, "positive number") or DEFAULT_POOL_SIZE
  self.lock_ttl = check_option(opts, "lock_ttl", "number", positive, "positive number") or M.DEFAULT_LOCK_TTL
  return setmetatable(self, Store)
end

-- AUTH and SELECT on a fresh connection: true, or nil, err.
local function prepare(self, conn)
  local _, err
  if self.password then
    if self.username then
      _, err = call(conn, "auth", self.username, self.password)
    else
      _, err = call(conn, "auth", self.password)
    end
    if err then
      return nil, "auth: " .. clean(err, self.password)
    end
  end
  if self.db then
    _, err = call(conn, "select", format("%d", self.db))
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

-- Runs fn(conn) on a connection: fn's reply, or nil, err (an error value).
local function run(self, fn)
  if self.given then
    local res, err = fn(self.conn)
    if err then
      return nil, store_error("redis: " .. clean(err, self.password))
    end
    return res
  end

  local ngx = nginx()
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
    -- connections differ by db and credentials (AUTH and SELECT happen only on new ones): one pool each
    local pool = format("wechat:%s:%d:%d", self.host, self.port, self.db or 0)
    if self.password then
      pool = pool .. ":" .. sub(ngx.md5((self.username or "") .. "\0" .. self.password), 1, 16)
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

--- The value under `key`, or nil when there is none; nil, err when Redis failed.
function Store:get(key)
  local full = self.prefix .. key
  return run(self, function(conn)
    return call(conn, "get", full)
  end)
end

--- Stores `value` under `key` for `ttl` seconds (nil: no expiry; <= 0: gone at once, like the memory store).
-- @return true, or nil, err
function Store:set(key, value, ttl)
  local full = self.prefix .. key
  if ttl ~= nil and type(ttl) ~= "number" then
    error(format("bad argument #3 to 'set' (number expected, got %s)", type(ttl)), 2)
  end
  local ok, err = run(self, function(conn)
    if ttl == nil then
      return call(conn, "set", full, value)
    elseif ttl <= 0 then
      local _, e = call(conn, "del", full)
      return not e, e
    end
    return call(conn, "set", full, value, "PX", ms(ttl))
  end)
  if not ok then
    return nil, err
  end
  return true
end

--- Removes `key`; when `value` is given, only if the stored value is still that one (compare-and-delete in
-- one EVAL, so a token another process just stored is not thrown away).
-- @return true, or nil, err
function Store:delete(key, value)
  local full = self.prefix .. key
  local _, err = run(self, function(conn)
    if value == nil then
      local _, e = call(conn, "del", full)
      return not e, e
    end
    local _, e = call(conn, "eval", COMPARE_AND_DELETE, 1, full, value)
    return not e, e
  end)
  if err then
    return nil, err
  end
  return true
end

--- Runs a Lua script on Redis in one EVAL, for callers that must check and write in one step (the KF window
-- tracker counts sends this way). `keys` are put behind the store's prefix.
-- @param script the script's text
-- @param keys a list of keys (KEYS in the script)
-- @param args a list of arguments (ARGV), strings or numbers
-- @return the script's reply (a Redis nil reply is nil), or nil, err
function Store:eval(script, keys, args)
  local argv = {}
  for i = 1, #keys do
    argv[i] = self.prefix .. keys[i]
  end
  for i = 1, #args do
    argv[#keys + i] = args[i]
  end
  return run(self, function(conn)
    return call(conn, "eval", script, #keys, unpack(argv, 1, #keys + #args))
  end)
end

local function sleep(seconds)
  local ngx = nginx()
  if ngx then
    return ngx.sleep(seconds)
  end
  return require("socket").sleep(seconds)
end

local function now()
  local ngx = nginx()
  if ngx then
    ngx.update_time()
    return ngx.now()
  end
  return require("socket").gettime()
end

--- Takes the lock on `key`, waiting while another holds it.
-- @param opts optional: `timeout` (seconds to wait, default 5; 0: one try), `ttl` (seconds the lock lives
--   unless released or extended, default the store's `lock_ttl`, 150: a killed holder does not block the
--   others longer)
-- @return a lock with `unlock()`, `extend(ttl)` and `set(key, value)`, or nil, err (`err.reason ==
--   "timeout"` when another held it the whole time)
function Store:lock(key, opts)
  opts = opts or {}
  local timeout, ttl = opts.timeout or DEFAULT_LOCK_TIMEOUT, opts.ttl or self.lock_ttl
  if type(timeout) ~= "number" or timeout < 0 then
    error(format("bad argument #2 to 'lock' (timeout: non-negative number expected, got %s)", tostring(timeout)), 2)
  end
  if type(ttl) ~= "number" or ttl <= 0 then
    error(format("bad argument #2 to 'lock' (ttl: positive number expected, got %s)", tostring(ttl)), 2)
  end
  local lock_key = self.prefix .. key .. ":lock"
  self.serial = self.serial + 1
  local token = self.id .. ":" .. self.serial
  local deadline = now() + timeout
  local step = POLL_FIRST
  while true do
    local got, err = run(self, function(conn)
      return call(conn, "set", lock_key, token, "NX", "PX", ms(ttl))
    end)
    if got then
      return setmetatable({ store = self, name = key, key = lock_key, token = token, ttl = ttl }, Lock)
    end
    if err then
      return nil, err
    end
    local left = deadline - now()
    if left <= 0 then
      return nil, store_error(format("lock %s still held by another after %gs", key, timeout),
        { reason = "timeout" })
    end
    sleep(min(step, left))
    step = min(step * 2, POLL_MAX)
  end
end

-- Runs a compare-and-something script on the lock: true while it is still ours.
local function held(self, script, arg)
  local res, err = run(self.store, function(conn)
    if arg then
      return call(conn, "eval", script, 1, self.key, self.token, arg)
    end
    return call(conn, "eval", script, 1, self.key, self.token)
  end)
  if err then
    return nil, err
  end
  if tonumber(res) ~= 1 then
    return nil, store_error("lock " .. self.name .. " had expired", { reason = "expired" })
  end
  return true
end

--- Releases the lock, only if it is still this one.
-- @return true, or nil, err (`err.reason == "expired"` when its ttl ran out first)
function Lock:unlock()
  if self.released then
    return true
  end
  self.released = true
  return held(self, COMPARE_AND_DELETE)
end

--- Gives the lock `ttl` more seconds from now (default: the ttl it was taken or last extended with), only if it
-- is still this one.
-- @return true, or nil, err (`err.reason == "expired"` when its ttl ran out first)
function Lock:extend(ttl)
  if self.released then
    return nil, store_error("lock released")
  end
  ttl = ttl or self.ttl
  local ok, err = held(self, COMPARE_AND_EXPIRE, ms(ttl))
  if ok then
    self.ttl = ttl
  end
  return ok, err
end

--- Stores `value` under `key` (no expiry) only while the lock is still this one, and renews the lock for its
-- ttl: compare, renew and write in one EVAL, so a holder whose lock ran out (and may be another's now) writes
-- nothing. sync_all writes its cursor this way. (Two keys in one script: on a Redis Cluster both must hash to
-- one slot.)
-- @return true, or nil, err (`err.reason == "lost"` when the lock was not this one's any more)
function Lock:set(key, value)
  if self.released then
    return nil, store_error("lock released")
  end
  local store = self.store
  local full = store.prefix .. key
  local res, err = run(store, function(conn)
    return call(conn, "eval", COMPARE_AND_SET, 2, self.key, full, self.token, ms(self.ttl), value)
  end)
  if err then
    return nil, err
  end
  if tonumber(res) ~= 1 then
    return nil, store_error("lock " .. self.name .. " lost: " .. key .. " not written", { reason = "lost" })
  end
  return true
end

return M
