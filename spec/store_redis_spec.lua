-- wechat.work.store.redis against a real redis-server on 127.0.0.1 (spec/helpers/redis.lua): the store
-- contract of docs/architecture.md (get, set with ttl, compare-and-delete, lock), and failures as values.
local errors = require "wechat.work.errors"
local redis = require "helpers.redis"
local redis_store = require "wechat.work.store.redis"
local socket = require "socket"

local PORT = 16391
local AUTH_PORT = 16394
local DEAD_PORT = 16395 -- nothing listens here

-- Polls (bounded) until fn() returns true; returns how it ended.
local function eventually(fn)
  for _ = 1, 200 do
    if fn() then
      return true
    end
    socket.sleep(0.02)
  end
  return false
end

local function load_redis_lua()
  local ok, driver = pcall(require, "redis")
  if ok then
    return driver
  end
  return dofile(package.searchpath("redis", "/usr/share/lua/5.1/?.lua"))
end

describe("wechat.work.store.redis", function()
  local server, store

  setup(function()
    server = redis.start(PORT)
  end)

  teardown(function()
    server:stop()
  end)

  before_each(function()
    server:flush()
    store = redis_store.new{ port = PORT, prefix = "t:" }
  end)

  describe("get and set", function()
    it("returns nil for a key it does not hold", function()
      assert.are.same({}, { store:get("nothing") })
    end)

    it("stores values byte for byte, behind the prefix", function()
      local value = "客服 \0 \r\n😀"
      assert.are.same({ true }, { store:set("k", value) })
      assert.are.equal(value, store:get("k"))
      assert.are.equal(value, server:call("GET", "t:k"))
      assert.are.equal(-1, server:call("PTTL", "t:k"))
    end)

    it("sets a ttl in milliseconds", function()
      assert.is_true(store:set("k", "v", 1000))
      local pttl = server:call("PTTL", "t:k")
      assert.is_true(pttl > 990000 and pttl <= 1000000, "pttl " .. pttl)
      assert.is_true(store:set("k", "v", 0.0015))
      assert.is_true(eventually(function() return store:get("k") == nil end))
      assert.are.equal(0, server:call("EXISTS", "t:k"))
    end)

    it("drops the key at once for a ttl <= 0, like the memory store", function()
      server:call("SET", "t:k", "old")
      assert.is_true(store:set("k", "v", 0))
      assert.are.equal(0, server:call("EXISTS", "t:k"))
    end)

    it("uses the db it is given", function()
      local db3 = redis_store.new{ port = PORT, db = 3 }
      assert.is_true(db3:set("k", "in three"))
      assert.are.equal("in three", db3:get("k"))
      assert.is_nil(server:call("GET", "k"))
      assert.is_truthy(server:call("INFO", "keyspace"):find("db3:keys=1,", 1, true))
    end)
  end)

  describe("delete", function()
    it("removes the key when the value is still the given one, else keeps it", function()
      server:call("SET", "t:k", "token-2")
      assert.are.same({ true }, { store:delete("k", "token-1") })
      assert.are.equal("token-2", server:call("GET", "t:k"))
      assert.are.same({ true }, { store:delete("k", "token-2") })
      assert.are.equal(0, server:call("EXISTS", "t:k"))
    end)

    it("removes the key whatever it holds when no value is given", function()
      server:call("SET", "t:k", "anything")
      assert.are.same({ true }, { store:delete("k") })
      assert.are.equal(0, server:call("EXISTS", "t:k"))
      assert.are.same({ true }, { store:delete("k") })
    end)
  end)

  describe("lock", function()
    it("is exclusive: a second taker gets a timeout error until the first unlocks", function()
      local first = assert(store:lock("k", { ttl = 30 }))
      assert.are.equal(1, server:call("EXISTS", "t:k:lock"))
      local other = redis_store.new{ port = PORT, prefix = "t:" }
      local second, err = other:lock("k", { timeout = 0 })
      assert.is_nil(second)
      assert.is_true(errors.is(err, errors.STORE))
      assert.are.equal("timeout", err.reason)
      assert.are.equal("wechat: store error: lock k still held by another after 0s", tostring(err))
      assert.are.same({ true }, { first:unlock() })
      assert.are.equal(0, server:call("EXISTS", "t:k:lock"))
      second = assert(other:lock("k", { timeout = 0 }))
      assert.are.same({ true }, { second:unlock() })
    end)

    it("holds a random token with the ttl asked for", function()
      local a = assert(store:lock("k", { ttl = 30 }))
      local token = server:call("GET", "t:k:lock")
      assert.are.equal(a.token, token)
      local pttl = server:call("PTTL", "t:k:lock")
      assert.is_true(pttl > 0 and pttl <= 30000, "pttl " .. pttl)
      a:unlock()
      local b = assert(redis_store.new{ port = PORT, prefix = "t:" }:lock("k"))
      assert.are_not.equal(token, b.token)
      b:unlock()
    end)

    it("expires after its ttl, so a holder that died blocks the others only that long", function()
      local dead = assert(store:lock("k", { ttl = 0.2 }))
      local other = redis_store.new{ port = PORT, prefix = "t:" }
      local taken = assert(other:lock("k", { timeout = 10, ttl = 30 }))
      assert.are.equal(taken.token, server:call("GET", "t:k:lock"))
      -- the first holder cannot release (or extend) what is now the other's lock
      local ok, err = dead:unlock()
      assert.is_nil(ok)
      assert.are.equal("expired", err.reason)
      assert.are.equal("wechat: store error: lock k had expired", tostring(err))
      ok, err = dead:extend(30)
      assert.is_nil(ok)
      assert.are.equal("wechat: store error: lock released", tostring(err))
      assert.are.equal(taken.token, server:call("GET", "t:k:lock"))
      assert.are.same({ true }, { taken:unlock() })
    end)

    it("is extended while it is held", function()
      local lock = assert(store:lock("k", { ttl = 1 }))
      assert.are.same({ true }, { lock:extend(100) })
      local pttl = server:call("PTTL", "t:k:lock")
      assert.is_true(pttl > 1000 and pttl <= 100000, "pttl " .. pttl)
      assert.are.same({ true }, { lock:unlock() })
      assert.are.same({ true }, { lock:unlock() })
    end)

    it("lives 150 s when taken without a ttl (it must outlast a gettoken with retries), or the store's lock_ttl",
      function()
      local lock = assert(store:lock("k"))
      local pttl = server:call("PTTL", "t:k:lock")
      assert.is_true(pttl > 140000 and pttl <= 150000, "pttl " .. pttl)
      lock:unlock()
      lock = assert(redis_store.new{ port = PORT, prefix = "t:", lock_ttl = 400 }:lock("k"))
      pttl = server:call("PTTL", "t:k:lock")
      assert.is_true(pttl > 390000 and pttl <= 400000, "pttl " .. pttl)
      lock:unlock()
    end)

    it("writes a key only while it is held, renewing itself (one EVAL: compare, renew, write)", function()
      local lock = assert(store:lock("k", { ttl = 100 }))
      server:call("PEXPIRE", "t:k:lock", 1000)
      assert.are.same({ true }, { lock:set("cursor", "1:SC3:m4") })
      assert.are.equal("1:SC3:m4", server:call("GET", "t:cursor"))
      assert.are.equal(-1, server:call("PTTL", "t:cursor"))
      local pttl = server:call("PTTL", "t:k:lock")
      assert.is_true(pttl > 90000 and pttl <= 100000, "pttl " .. pttl)
      -- the lock ran out and another took it: nothing written, the other's lock untouched
      server:call("SET", "t:k:lock", "someone else", "PX", "30000")
      local ok, err = lock:set("cursor", "2:SC3:m5")
      assert.is_nil(ok)
      assert.is_true(errors.is(err, errors.STORE))
      assert.are.equal("lost", err.reason)
      assert.are.equal("wechat: store error: lock k lost: cursor not written", tostring(err))
      assert.are.equal("1:SC3:m4", server:call("GET", "t:cursor"))
      assert.are.equal("someone else", server:call("GET", "t:k:lock"))
      -- and after unlock
      server:call("DEL", "t:k:lock")
      lock = assert(store:lock("k"))
      assert.is_true(lock:unlock())
      ok, err = lock:set("cursor", "x")
      assert.is_nil(ok)
      assert.are.equal("wechat: store error: lock released", tostring(err))
      assert.are.equal("1:SC3:m4", server:call("GET", "t:cursor"))
    end)

    it("raises on a wrong timeout or ttl", function()
      local ok, err = pcall(store.lock, store, "k", { ttl = 0 })
      assert.is_false(ok)
      assert.are.equal("bad argument #2 to 'lock' (ttl: positive number expected, got 0)", err)
      ok, err = pcall(store.lock, store, "k", { timeout = -1 })
      assert.is_false(ok)
      assert.are.equal("bad argument #2 to 'lock' (timeout: non-negative number expected, got -1)", err)
    end)
  end)

  describe("failures", function()
    it("come back as store errors, never raised", function()
      local dead = redis_store.new{ port = DEAD_PORT }
      local message = "wechat: store error: cannot connect to redis 127.0.0.1:" .. DEAD_PORT .. ": connection refused"
      local value, err = dead:get("k")
      assert.is_nil(value)
      assert.is_true(errors.is(err, errors.STORE))
      assert.are.equal(message, tostring(err))
      local results = { dead:set("k", "v") }
      assert.are.equal(message, tostring(results[2]))
      results = { dead:delete("k", "v") }
      assert.are.equal(message, tostring(results[2]))
      results = { dead:lock("k", { timeout = 0 }) }
      assert.are.equal(message, tostring(results[2]))
    end)

    it("reconnects once Redis is back", function()
      local port = DEAD_PORT + 1
      local s = redis.start(port)
      local st = redis_store.new{ port = port }
      assert.is_true(st:set("k", "v"))
      s:stop()
      local value, err = st:get("k")
      assert.is_nil(value)
      assert.are.equal("wechat: store error: cannot connect to redis 127.0.0.1:" .. port .. ": connection refused",
        tostring(err))
      s = redis.start(port)
      assert.is_true(st:set("k", "again"))
      -- a kept connection that died with its server is replaced without an error
      s:stop()
      s = redis.start(port)
      assert.are.same({}, { st:get("k") })
      s:stop()
    end)

    it("report a wrong password or db without the password", function()
      local s = redis.start(AUTH_PORT, { password = "s3cret" })
      local _, err = redis_store.new{ port = AUTH_PORT, password = "wrong-s3cret" }:get("k")
      assert.are.equal("wechat: store error: redis 127.0.0.1:" .. AUTH_PORT
        .. ": auth: WRONGPASS invalid username-password pair or user is disabled.", tostring(err))
      _, err = redis_store.new{ port = AUTH_PORT }:get("k")
      assert.are.equal("wechat: store error: redis 127.0.0.1:" .. AUTH_PORT .. ": NOAUTH Authentication required.",
        tostring(err))
      _, err = redis_store.new{ port = AUTH_PORT, password = "s3cret", db = 99 }:get("k")
      assert.are.equal("wechat: store error: redis 127.0.0.1:" .. AUTH_PORT
        .. ": select 99: ERR DB index is out of range", tostring(err))
      local good = redis_store.new{ port = AUTH_PORT, password = "s3cret" }
      assert.is_true(good:set("k", "v"))
      assert.are.equal("v", good:get("k"))
      s:stop()
    end)
  end)

  describe("new", function()
    it("takes a connection of the caller's and uses it as it is", function()
      local conn = load_redis_lua().connect("127.0.0.1", PORT)
      local st = redis_store.new(conn)
      assert.is_true(st:set("k", "v", 100))
      assert.are.equal("v", st:get("k"))
      assert.is_true(st:delete("k", "other"))
      assert.are.equal("v", server:call("GET", "k"))
      local lock = assert(st:lock("k"))
      assert.are.equal(lock.token, server:call("GET", "k:lock"))
      assert.is_true(lock:unlock())
      assert.is_true(st:delete("k", "v"))
      assert.are.equal(0, server:call("EXISTS", "k"))
      assert.is_true(conn:ping())
      conn:quit()
    end)

    it("raises on wrong arguments, naming them", function()
      local ok, err = pcall(redis_store.new, "127.0.0.1")
      assert.is_false(ok)
      assert.are.equal("bad argument #1 to 'new' (table expected, got string)", err)
      ok, err = pcall(redis_store.new, { port = "6379" })
      assert.is_false(ok)
      assert.are.equal("bad argument #1 to 'new' (port: positive number expected, got 6379)", err)
      ok, err = pcall(redis_store.new, { timeout = 0 })
      assert.is_false(ok)
      assert.are.equal("bad argument #1 to 'new' (timeout: positive number expected, got 0)", err)
      ok, err = pcall(redis_store.new, { lock_ttl = -1 })
      assert.is_false(ok)
      assert.are.equal("bad argument #1 to 'new' (lock_ttl: positive number expected, got -1)", err)
    end)
  end)
end)
