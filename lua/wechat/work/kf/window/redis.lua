--- The window tracker's entries on Redis, exact across processes and machines: one hash a customer (fields t:
-- the customer's last send_time, m: its msgid, g: the window's number, n: sends counted in it, s: the session
-- state), expiring with its window. Every operation is one EVAL, so the check and the count of a send are one
-- step: two nodes can never both send the fifth message.
local rules = require "wechat.work.kf.window.rules"

local setmetatable, tonumber, tostring = setmetatable, tonumber, tostring
local LIMIT, WINDOW, GRACE, CLOSED, NOT_API = rules.LIMIT, rules.WINDOW, rules.GRACE, rules.CLOSED, rules.NOT_API

local M = {}
local Backend = {}
Backend.__index = Backend

-- ARGV: now, force ("1"), limit, window, closed. Reply {"ok", g} or {reason}.
local TAKE = [[
local k = KEYS[1]
local now, force = tonumber(ARGV[1]), ARGV[2] == "1"
local limit, window, closed = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local v = redis.call("hmget", k, "t", "g", "n", "s")
local t, n, s = tonumber(v[1]), tonumber(v[3]) or 0, tonumber(v[4])
if not force and s and s ~= 0 and s ~= 1 then return {"state"} end
if not t then return {"unknown"} end
if not force then
  if now >= t + window or n >= closed then return {"expired"} end
  if n >= limit then return {"quota"} end
end
redis.call("hincrby", k, "n", 1)
return {"ok", v[2]}
]]

-- ARGV: g of the window the send was counted in.
local GIVE_BACK = [[
local v = redis.call("hmget", KEYS[1], "g", "n")
if v[1] == ARGV[1] and (tonumber(v[2]) or 0) > 0 then
  redis.call("hincrby", KEYS[1], "n", -1)
end
return 1
]]

-- ARGV: send_time, msgid, now, window, grace.
local OPEN = [[
local k = KEYS[1]
local t, m = tonumber(ARGV[1]), ARGV[2]
local now, window, grace = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local v = redis.call("hmget", k, "t", "m", "s")
local old, s = tonumber(v[1]), tonumber(v[3])
if old and (t < old or (t == old and v[2] == m)) then return 0 end
redis.call("hincrby", k, "g", 1)
redis.call("hmset", k, "t", t, "m", m, "n", 0)
if s == 4 then
  redis.call("hset", k, "s", 0)
elseif s and s < 0 then
  redis.call("hdel", k, "s")
end
local ttl = t + window + grace - now
if ttl < grace then ttl = grace end
redis.call("expire", k, ttl)
return 1
]]

-- ARGV: state, now, window, unless_open ("1"), closed.
local NOTE_STATE = [[
local k = KEYS[1]
local now, window, closed = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[5])
local v = redis.call("hmget", k, "t", "n")
local t, n = tonumber(v[1]), tonumber(v[2]) or 0
if ARGV[4] == "1" and t and now < t + window and n < closed then return 0 end
redis.call("hset", k, "s", ARGV[1])
if not t then redis.call("expire", k, window) end
return 1
]]

-- ARGV: what, g ("" any), now, since ("" none), limit, window, grace, closed, not_api.
local MARK = [[
local k, what, gen = KEYS[1], ARGV[1], ARGV[2]
local now, since = tonumber(ARGV[3]), tonumber(ARGV[4])
local limit, window, grace, closed = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local v = redis.call("hmget", k, "t", "g", "n", "s")
local t, n, s = tonumber(v[1]), tonumber(v[3]) or 0, tonumber(v[4])
if what == "state" then
  if not s or s == 0 or s == 1 then
    redis.call("hset", k, "s", ARGV[9])
    if not t and not s then redis.call("expire", k, grace) end
  end
  return 1
end
if t then
  if (gen ~= "" and v[2] ~= gen) or (since and t > since) then return 0 end
else
  if what == "closed" then t = now - window else t = now end
  redis.call("hincrby", k, "g", 1)
  redis.call("hmset", k, "t", t, "n", 0)
  redis.call("expire", k, grace)
  n = 0
end
if what == "quota" and n < limit then
  redis.call("hincrby", k, "n", limit)
elseif what == "closed" and n < closed then
  redis.call("hincrby", k, "n", closed)
end
return 1
]]

local GET = [[
return redis.call("hmget", KEYS[1], "t", "n", "s")
]]

--- A backend on a Redis store (wechat.work.store.redis, through its `eval`).
function M.new(store)
  return setmetatable({ store = store }, Backend)
end

local function eval(self, script, key, ...)
  return self.store:eval(script, { key }, { ... })
end

-- true, or nil, err: for the operations whose reply says nothing the caller needs
local function done(res, err)
  if res == nil and err then
    return nil, err
  end
  return true
end

function Backend:take(key, now, force)
  local res, err = eval(self, TAKE, key, now, force and "1" or "0", LIMIT, WINDOW, CLOSED)
  if not res then
    return nil, err
  end
  return res[1], res[2]
end

function Backend:give_back(key, gen)
  return done(eval(self, GIVE_BACK, key, gen))
end

function Backend:open(key, t, msgid, now)
  return done(eval(self, OPEN, key, t, msgid or "", now, WINDOW, GRACE))
end

function Backend:note_state(key, state, now, unless_open)
  return done(eval(self, NOTE_STATE, key, state, now, WINDOW, unless_open and "1" or "0", CLOSED))
end

function Backend:mark(key, what, gen, now, since)
  return done(eval(self, MARK, key, what, gen and tostring(gen) or "", now, since or "", LIMIT, WINDOW, GRACE,
    CLOSED, NOT_API))
end

function Backend:get(key)
  local res, err = eval(self, GET, key)
  if not res then
    return nil, err
  end
  local t, n, s = tonumber(res[1]), tonumber(res[2]), tonumber(res[3])
  if not t and not s then
    return nil
  end
  return { t = t, n = n or 0, s = s }
end

return M
