-- The client's token lock is released on every path: a transport or a store that raises between lock and unlock
-- (a bug in a user's object, a driver that throws) must not leave the lock to block every other caller for
-- lock_ttl (150 s). Against a real redis-server (spec/helpers/redis.lua) and the real Redis store.
local ports = require "helpers.ports"
local redis = require "helpers.redis"
local redis_store = require "wechat.work.store.redis"
local work = require "wechat.work"

-- A transport object that raises, as a buggy one would.
local raising_transport = {
  request = function()
    error("transport exploded", 0)
  end,
}

-- A transport object that answers gettoken at once.
local answering_transport = {
  request = function(_, req)
    assert(req.url:find("/cgi-bin/gettoken?", 1, true))
    return { status = 200, body = '{"errcode":0,"errmsg":"ok","access_token":"TOKEN2","expires_in":7200}' }
  end,
}

describe("the client's token lock", function()
  local server

  setup(function()
    server = redis.start(ports.closed())
  end)

  teardown(function()
    server:stop()
  end)

  before_each(function()
    server:flush()
  end)

  local function client(transport, store)
    return work.client{ corp_id = "wwCORP", agents = { kf = { secret = "S" } }, transport = transport,
      token_store = store or redis_store.new{ port = server.port }, token_wait = 0.2 }
  end

  local function locks()
    return server:call("KEYS", "*:lock")
  end

  it("is released when the transport raises, and the raise goes on unchanged", function()
    local ok, err = pcall(client(raising_transport).token, client(raising_transport), "kf")
    assert.is_false(ok)
    assert.equal("transport exploded", err)
    assert.same({}, locks())
    -- the next caller does not wait for a lock: it fetches at once
    assert.equal("TOKEN2", client(answering_transport):token("kf"))
  end)

  it("is released when the store raises while storing the token", function()
    local store = redis_store.new{ port = server.port }
    local raising_store = setmetatable({
      set = function()
        error("store exploded", 0)
      end,
    }, { __index = function(_, name)
      return function(_, ...)
        return store[name](store, ...)
      end
    end })
    local ok, err = pcall(function()
      return client(answering_transport, raising_store):token("kf")
    end)
    assert.is_false(ok)
    assert.equal("store exploded", err)
    assert.same({}, locks())
  end)
end)
