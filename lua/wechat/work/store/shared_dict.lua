--- A token or cursor store on an nginx `lua_shared_dict`: one store for all workers of an nginx, which outlives
-- a worker restart and a reload (not a stop and start of nginx). Same shape as every store (see
-- docs/architecture.md) plus `lock`, a lock across workers, so that when many requests need a token at once
-- exactly one `gettoken` goes out, and two workers never pull the same sync_msg pages.
--
-- nginx.conf, http block: `lua_shared_dict wechat 1m;`, then `wechat.work.client{ ..., shared_dict = "wechat" }`.
--
-- Writes never evict: a full dict makes `set` (and taking a lock) fail with a "store" error rather than silently
-- drop the least recently used keys, which could be a sync_msg cursor. Size the dict for what it holds (a token
-- or a cursor takes well under 1 KiB; 1m holds thousands).
local errors = require "wechat.work.errors"
local nginx = require "wechat.work.nginx"
local random_hex = require("wechat.core").random_hex

local error, format, rawget, setmetatable, tostring, type =
  error, string.format, rawget, setmetatable, tostring, type
local min = math.min

local M = {}

local DEFAULT_LOCK_TIMEOUT = 5   -- seconds a caller waits for a lock another one holds
-- Seconds after which a lock whose holder died frees itself, for callers that name no ttl: the client's token
-- lock. It must outlast the slowest gettoken the holder may make, retries included: with the client's
-- defaults (10 s for each connect, TLS handshake, send and read; 1 retry; a dead kept-alive connection
-- replaced once) that is 3 exchanges of up to 40 s. A holder that dies (worker killed mid-gettoken) blocks
-- the others' token fetches this long.
M.DEFAULT_LOCK_TTL = 150
-- A holder writes or extends only while its lock has this share of its ttl left (at most 1 s): the dict
-- cannot compare and set in one step, so this keeps the lock from running out between the two.
local SAFETY_SHARE, MAX_SAFETY = 0.1, 1
local FIRST_WAIT = 0.001         -- polling: 1 ms, doubling up to 50 ms
local MAX_WAIT = 0.05
local LOCK_SUFFIX = "#lock"

local Store = {}
Store.__index = Store

local Lock = {}
Lock.__index = Lock

local function check_key(fname, key)
  if type(key) ~= "string" or key == "" then
    error(format("bad argument #1 to '%s' (non-empty string key expected, got %s)", fname,
      key == "" and "empty string" or type(key)), 3)
  end
end

local function store_error(self, what, err)
  return nil, errors.new(errors.STORE, format("lua_shared_dict '%s': %s: %s", self.name, what, tostring(err)))
end

local function check_value(fname, value)
  local t = type(value)
  if t ~= "string" and t ~= "number" and t ~= "boolean" then
    error(format("bad argument #2 to '%s' (string, number or boolean expected, got %s)", fname, t), 3)
  end
end

-- Writes without evicting another key (safe_set): a full dict fails the write instead.
local function put(self, key, value, ttl)
  local ok, err = self.dict:safe_set(key, value, ttl or 0)
  if not ok then
    return store_error(self, "set " .. key, err)
  end
  return true
end

local function lock_error(self, reason, what)
  return nil, errors.new(errors.STORE, format("lua_shared_dict '%s': lock %s %s", self.store.name, self.name, what),
    { reason = reason })
end

--- Makes a store on the `lua_shared_dict` called `name`.
-- @param name the dict's name, as in `lua_shared_dict <name> <size>;`
-- @param opts optional: `lock_ttl` (seconds a lock taken without a ttl lives, default `DEFAULT_LOCK_TTL`, 150;
--   it must outlast the client's slowest gettoken, see above)
-- @return the store
-- @raise when `name` is not a string, outside OpenResty, or when nginx.conf declares no such dict (the message
--   says which line to add)
function M.new(name, opts)
  if type(name) ~= "string" or name == "" then
    error(format("bad argument #1 to 'new' (lua_shared_dict name expected, got %s)",
      name == "" and "empty string" or type(name)), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error(format("bad argument #2 to 'new' (table or nil expected, got %s)", type(opts)), 2)
  end
  local lock_ttl = opts and opts.lock_ttl
  if lock_ttl ~= nil and (type(lock_ttl) ~= "number" or lock_ttl ~= lock_ttl or lock_ttl <= 0) then
    error(format("bad argument #2 to 'new' (lock_ttl: number > 0 expected, got %s)", tostring(lock_ttl)), 2)
  end
  local ngx = rawget(_G, "ngx")
  if type(ngx) ~= "table" or type(ngx.shared) ~= "table" then
    error("the shared_dict store runs inside OpenResty (ngx_http_lua) only", 2)
  end
  local dict = ngx.shared[name]
  if not dict then
    error(format("bad argument #1 to 'new' (no lua_shared_dict named '%s': add \"lua_shared_dict %s 1m;\" "
      .. "to the http block of nginx.conf)", name, name), 2)
  end
  -- id: lock owners of two stores in one worker must differ too (their serials both start at 0)
  return setmetatable({ kind = "shared_dict", name = name, dict = dict, ngx = ngx, id = random_hex(8), serial = 0,
    lock_ttl = lock_ttl or M.DEFAULT_LOCK_TTL }, Store)
end

--- The value under `key`, or nil when there is none or it has expired; nil, err when the dict fails.
function Store:get(key)
  check_key("get", key)
  local value, err = self.dict:get(key)
  if value == nil and err then
    return store_error(self, "get", err)
  end
  return value
end

--- Stores `value` (string, number or boolean) under `key` for `ttl` seconds (nil: no expiry; 0 or less: the
-- value is expired already, so the key is removed). Never evicts another key: when the dict is full (after
-- its expired keys are dropped) the write fails.
-- @return true, or nil and a "store" error (`lua_shared_dict 'NAME': set KEY: no memory` when full)
function Store:set(key, value, ttl)
  check_key("set", key)
  check_value("set", value)
  if ttl ~= nil and type(ttl) ~= "number" then
    error(format("bad argument #3 to 'set' (number of seconds or nil expected, got %s)", type(ttl)), 2)
  end
  if ttl and ttl <= 0 then
    self.dict:delete(key)
    return true
  end
  return put(self, key, value, ttl)
end

--- Removes `key`; when `value` is given, only if the stored value is still that one (so a token that another
-- worker already replaced is not thrown away). The compare and the delete are two steps: a value written in
-- between may be removed, which costs one extra fetch, never a wrong value.
-- @return true
function Store:delete(key, value)
  check_key("delete", key)
  if value == nil or self.dict:get(key) == value then
    self.dict:delete(key)
  end
  return true
end

local function now(ngx)
  ngx.update_time()
  return ngx.now()
end

--- Takes the lock named by `key` across all workers: the caller that gets it does the work (fetches the token,
-- pulls the pages) while the others wait here, polling the dict (1 ms, doubling up to 50 ms) with `ngx.sleep`,
-- which yields.
-- @param key what the lock guards (the lock itself lives under `key .. "#lock"`)
-- @param opts nil or `{timeout = seconds to wait (default 5), ttl = seconds after which the lock frees
--   itself, should its holder never unlock or extend it (default the store's `lock_ttl`, 150)}`
-- @return a lock object with `unlock()`, `extend(ttl)` and `set(key, value)`, or nil and an error: kind
--   "store" when the lock stayed taken for `timeout` seconds or the dict failed (full), kind "phase" when the
--   lock is taken and this nginx phase cannot wait (init_worker, log, header or body filter)
function Store:lock(key, opts)
  check_key("lock", key)
  if opts ~= nil and type(opts) ~= "table" then
    error(format("bad argument #2 to 'lock' (table or nil expected, got %s)", type(opts)), 2)
  end
  local timeout = opts and opts.timeout or DEFAULT_LOCK_TIMEOUT
  local ttl = opts and opts.ttl or self.lock_ttl
  if type(timeout) ~= "number" or timeout < 0 then
    error(format("bad argument #2 to 'lock' (opts.timeout: number >= 0 expected, got %s)", tostring(timeout)), 2)
  end
  if type(ttl) ~= "number" or ttl <= 0 then
    error(format("bad argument #2 to 'lock' (opts.ttl: number > 0 expected, got %s)", tostring(ttl)), 2)
  end
  local ngx, dict = self.ngx, self.dict
  local lock_key = key .. LOCK_SUFFIX
  self.serial = self.serial + 1
  -- Unique among all workers and stores: a random id per store (from OpenSSL, so two workers never draw the
  -- same), the serial for the locks of one store.
  local owner = self.id .. ":" .. self.serial
  local waited, step = 0, FIRST_WAIT
  while true do
    local taken_at = now(ngx)
    local ok, err = dict:safe_add(lock_key, owner, ttl)
    if ok then
      return setmetatable({ store = self, name = key, key = lock_key, owner = owner, ttl = ttl,
        expires = taken_at + ttl }, Lock)
    end
    if err ~= "exists" then
      return store_error(self, "lock " .. key, err)
    end
    if waited >= timeout then
      return nil, errors.new(errors.STORE, format("lua_shared_dict '%s': lock %s still taken after %s s",
        self.name, key, tostring(timeout)), { reason = "timeout" })
    end
    local phase, yieldable = nginx.phase(ngx)
    if not yieldable then
      return nil, errors.new(errors.PHASE, format("cannot wait for lock %s in the nginx '%s' phase: "
        .. "ngx.sleep is disabled there; use a timer (ngx.timer.at) or another phase", key, tostring(phase)))
    end
    local wait = min(step, timeout - waited)
    ngx.sleep(wait)
    waited = waited + wait
    step = min(step * 2, MAX_WAIT)
  end
end

-- Whether the lock is still this one's with a safe part of its ttl left; renews it for another `ttl` seconds
-- when it is. The dict has no compare-and-set: between the compare and the write only another worker's `add`
-- could come, and that only once the lock has expired, which the margin rules out (unless this worker stalls
-- for that long between two dict calls, with no yield in between).
local function renew(self, ttl)
  local store = self.store
  local dict = store.dict
  local t = now(store.ngx)
  local margin = min(self.ttl * SAFETY_SHARE, MAX_SAFETY)
  if t >= self.expires - margin or dict:get(self.key) ~= self.owner then
    return lock_error(self, "expired", "is not held any more")
  end
  local ok, err = dict:safe_set(self.key, self.owner, ttl)
  if not ok then
    return store_error(store, "extend lock " .. self.name, err)
  end
  self.ttl, self.expires = ttl, t + ttl
  return true
end

--- Gives the lock `ttl` more seconds from now (default: the ttl it was taken or last extended with), only if it
-- is still this one's.
-- @return true, or nil and a "store" error, `reason = "expired"`, when its ttl ran out (another worker may hold
--   it now) or nearly did, or it was unlocked
function Lock:extend(ttl)
  if ttl ~= nil and (type(ttl) ~= "number" or ttl ~= ttl or ttl <= 0) then
    error(format("bad argument #1 to 'extend' (number > 0 or nil expected, got %s)", tostring(ttl)), 2)
  end
  return renew(self, ttl or self.ttl)
end

--- Stores `value` under `key` (no expiry) only while the lock is this one's, and renews the lock for its ttl:
-- a write under the lock is a sign of life. sync_all writes its cursor this way, so a puller whose lock ran out
-- and was taken by another can no longer move the cursor under the new holder.
-- @return true, or nil and a "store" error: `reason = "lost"` when the lock is not this one's any more (nothing
--   written), or the dict is full
function Lock:set(key, value)
  check_key("set", key)
  check_value("set", value)
  local ok, err = renew(self, self.ttl)
  if not ok then
    if err.reason == "expired" then
      return lock_error(self, "lost", "lost: " .. key .. " not written")
    end
    return nil, err
  end
  return put(self.store, key, value)
end

--- Releases the lock, unless it expired and another caller holds it now (that one's lock is left alone).
-- @return true, or nil and a "store" error (`reason = "expired"`) when the lock was no longer this one's
function Lock:unlock()
  local store = self.store
  local dict = store.dict
  if dict:get(self.key) ~= self.owner then
    return lock_error(self, "expired", "is not held any more")
  end
  dict:delete(self.key)
  return true
end

return M
