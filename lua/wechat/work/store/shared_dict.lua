--- A token or cursor store on an nginx `lua_shared_dict`: one store for all workers of an nginx, which outlives
-- a worker restart and a reload. Same shape as every store (see docs/architecture.md) plus `lock`, a lock
-- across workers, so that when many requests need a token at once exactly one `gettoken` goes out.
--
-- nginx.conf, http block: `lua_shared_dict wechat 1m;`, then `wechat.work.client{ ..., shared_dict = "wechat" }`.
local errors = require "wechat.work.errors"

local error, format, rawget, setmetatable, tostring, type =
  error, string.format, rawget, setmetatable, tostring, type
local min = math.min

local M = {}

local DEFAULT_LOCK_TIMEOUT = 5   -- seconds a caller waits for a lock another one holds
local DEFAULT_LOCK_TTL = 30      -- seconds after which a lock whose holder died frees itself
local FIRST_WAIT = 0.001         -- polling: 1 ms, doubling up to 50 ms
local MAX_WAIT = 0.05
local LOCK_SUFFIX = "#lock"

-- The phases where ngx.sleep may wait (lua-nginx-module's yieldable contexts, by ngx.get_phase() name).
local YIELDABLE = {
  rewrite = true,
  server_rewrite = true,
  access = true,
  content = true,
  timer = true,
  ssl_client_hello = true,
  ssl_cert = true,
  ssl_session_fetch = true,
}

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

--- Makes a store on the `lua_shared_dict` called `name`.
-- @param name the dict's name, as in `lua_shared_dict <name> <size>;`
-- @return the store
-- @raise when `name` is not a string, outside OpenResty, or when nginx.conf declares no such dict (the message
--   says which line to add)
function M.new(name)
  if type(name) ~= "string" or name == "" then
    error(format("bad argument #1 to 'new' (lua_shared_dict name expected, got %s)",
      name == "" and "empty string" or type(name)), 2)
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
  return setmetatable({ name = name, dict = dict, ngx = ngx, serial = 0 }, Store)
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
-- value is expired already, so the key is removed). A full dict evicts the least recently used keys.
-- @return true, or nil and a "store" error
function Store:set(key, value, ttl)
  check_key("set", key)
  local t = type(value)
  if t ~= "string" and t ~= "number" and t ~= "boolean" then
    error(format("bad argument #2 to 'set' (string, number or boolean expected, got %s)", t), 2)
  end
  if ttl ~= nil and type(ttl) ~= "number" then
    error(format("bad argument #3 to 'set' (number of seconds or nil expected, got %s)", type(ttl)), 2)
  end
  if ttl and ttl <= 0 then
    self.dict:delete(key)
    return true
  end
  local ok, err = self.dict:set(key, value, ttl or 0)
  if not ok then
    return store_error(self, "set", err)
  end
  return true
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

--- Takes the lock named by `key` across all workers: the caller that gets it does the work (fetches the token)
-- while the others wait here, polling the dict (1 ms, doubling up to 50 ms) with `ngx.sleep`, which yields.
-- @param key what the lock guards (the lock itself lives under `key .. "#lock"`)
-- @param opts nil or `{timeout = seconds to wait (default 5), ttl = seconds after which the lock frees
--   itself, should its holder never unlock (default 30)}`
-- @return a lock object with `unlock()`, or nil and an error: kind "store" when the lock stayed taken for
--   `timeout` seconds or the dict failed, kind "phase" when the lock is taken and this nginx phase cannot wait
--   (init_worker, log, header or body filter)
function Store:lock(key, opts)
  check_key("lock", key)
  if opts ~= nil and type(opts) ~= "table" then
    error(format("bad argument #2 to 'lock' (table or nil expected, got %s)", type(opts)), 2)
  end
  local timeout = opts and opts.timeout or DEFAULT_LOCK_TIMEOUT
  local ttl = opts and opts.ttl or DEFAULT_LOCK_TTL
  if type(timeout) ~= "number" or timeout < 0 then
    error(format("bad argument #2 to 'lock' (opts.timeout: number >= 0 expected, got %s)", tostring(timeout)), 2)
  end
  if type(ttl) ~= "number" or ttl <= 0 then
    error(format("bad argument #2 to 'lock' (opts.ttl: number > 0 expected, got %s)", tostring(ttl)), 2)
  end
  local ngx, dict = self.ngx, self.dict
  local lock_key = key .. LOCK_SUFFIX
  self.serial = self.serial + 1
  -- Unique among all workers: the pid tells workers apart, the serial the locks of one worker.
  local owner = format("%d:%d:%.3f", ngx.worker.pid(), self.serial, ngx.now())
  local waited, step = 0, FIRST_WAIT
  while true do
    local ok, err = dict:add(lock_key, owner, ttl)
    if ok then
      return setmetatable({ store = self, name = key, key = lock_key, owner = owner }, Lock)
    end
    if err ~= "exists" then
      return store_error(self, "lock " .. key, err)
    end
    if waited >= timeout then
      return nil, errors.new(errors.STORE, format("lua_shared_dict '%s': lock %s still taken after %s s",
        self.name, key, tostring(timeout)))
    end
    local phase = ngx.get_phase()
    if not YIELDABLE[phase] then
      return nil, errors.new(errors.PHASE, format("cannot wait for lock %s in the nginx '%s' phase: "
        .. "ngx.sleep is disabled there; use a timer (ngx.timer.at) or another phase", key, tostring(phase)))
    end
    local wait = min(step, timeout - waited)
    ngx.sleep(wait)
    waited = waited + wait
    step = min(step * 2, MAX_WAIT)
  end
end

--- Releases the lock, unless it expired and another caller holds it now (that one's lock is left alone).
-- @return true, or nil and a "store" error when the lock was no longer this one's
function Lock:unlock()
  local store = self.store
  local dict = store.dict
  if dict:get(self.key) ~= self.owner then
    return nil, errors.new(errors.STORE, format("lua_shared_dict '%s': lock %s is not held any more", store.name,
      self.name))
  end
  dict:delete(self.key)
  return true
end

return M
