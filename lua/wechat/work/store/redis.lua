--- A token or cursor store on Redis, for several processes or machines sharing one access token and one
-- sync_msg cursor (see docs/architecture.md, "Stores").
--
--   local redis_store = require "wechat.work.store.redis"
--   local store = redis_store.new{ host = "127.0.0.1", port = 6379, db = 0, password = nil, prefix = "",
--                                  timeout = 2 }
--   local store = redis_store.new(connection)   -- a connection you made and own (see below)
--
-- Drivers (wechat.work.store.redis.connection handles them; this module holds keys, ttls and locks):
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
local nginx = require "wechat.work.nginx"
local connection = require "wechat.work.store.redis.connection"
local random_hex = require("wechat.core").random_hex

local error, require, setmetatable, tonumber, tostring, type =
  error, require, setmetatable, tonumber, tostring, type
local ceil, min = math.ceil, math.min
local format = string.format
local unpack = table.unpack or unpack -- luacheck: ignore 143
local call, check_option, positive = connection.call, connection.check_option, connection.positive

local M = {}

local DEFAULT_LOCK_TIMEOUT = 5        -- seconds lock() waits for a lock another holds
-- Seconds a lock taken without a ttl lives unless released or extended: the client's token lock, which must
-- outlast the slowest gettoken with retries (see wechat.work.store.shared_dict, the same number).
M.DEFAULT_LOCK_TTL = 150
local POLL_FIRST, POLL_MAX = 0.005, 0.1

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

local function store_error(message, fields)
  return errors.new(errors.STORE, message, fields)
end

local function ms(seconds)
  return format("%d", ceil(seconds * 1000))
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
  -- id: a lock token nobody else draws, random per store (OpenSSL), then a counter
  local self = { kind = "redis", prefix = "", id = random_hex(12), serial = 0, lock_ttl = M.DEFAULT_LOCK_TTL,
    connection = connection.new(opts) }
  if self.connection.given then
    return setmetatable(self, Store)
  end
  self.prefix = check_option(2, opts, "prefix", "string") or ""
  self.lock_ttl = check_option(2, opts, "lock_ttl", "number", positive, "positive number") or M.DEFAULT_LOCK_TTL
  return setmetatable(self, Store)
end

--- The value under `key`, or nil when there is none; nil, err when Redis failed.
function Store:get(key)
  local full = self.prefix .. key
  return self.connection:run(function(conn)
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
  local ok, err = self.connection:run(function(conn)
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
  local _, err = self.connection:run(function(conn)
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
  return self.connection:run(function(conn)
    return call(conn, "eval", script, #keys, unpack(argv, 1, #keys + #args))
  end)
end

local function sleep(seconds)
  local ngx = nginx.get()
  if ngx then
    return ngx.sleep(seconds)
  end
  return require("socket").sleep(seconds)
end

local function now()
  local ngx = nginx.get()
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
    local got, err = self.connection:run(function(conn)
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
  local res, err = self.store.connection:run(function(conn)
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
  local res, err = store.connection:run(function(conn)
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
