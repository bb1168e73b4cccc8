-- kf.sync_all with wechat.work.store.redis inside a real nginx: the store's resty.redis (cosocket) path, against
-- a real redis-server (spec/helpers/redis.lua) and the WeCom stand-in. A content handler pulls; the spec checks
-- the exact messages, the cursor state Redis holds, that the lock was held while pulling and released after,
-- that a later request resumes there, and the store's failures as values.
local cjson = require "cjson"
local nginx = require "helpers.nginx"
local redis = require "helpers.redis"
local standin = require "helpers.standin"

local PORT = 18381
local REDIS_PORT = 16396
local DB = 2
local SYNC = "/cgi-bin/kf/sync_msg"
local KEY = "wechat:kf:cursor:wwCORP:wkA"
local LOCK = KEY .. ":lock"

local HTTP = [[
    lua_shared_dict tokens 1m;
    init_by_lua_block {
      local kf = require "wechat.work.kf.message"
      local redis_store = require "wechat.work.store.redis"
      local client = require("wechat.work").client{ corp_id = "wwCORP", agents = { kf = { secret = "KF_SECRET" } },
        base_url = "@URL@", timeout = 5, shared_dict = "tokens" }

      -- EXISTS key, asked on a connection of the spec's own, not through the store under test
      local function exists(key)
        local red = require("nginx.redis"):new()
        red:set_timeout(2000)
        assert(red:connect("127.0.0.1", @REDIS_PORT@))
        assert(red:select(@DB@))
        local n = assert(red:exists(key))
        red:close()
        return n
      end

      SPEC = {}

      -- Pulls wkA; stops after `max` messages (acked) when given.
      function SPEC.pull(args)
        local store = redis_store.new{ port = tonumber(args.port) or @REDIS_PORT@, db = @DB@, timeout = 2 }
        local pull = kf.sync_all(client, "kf", { open_kfid = "wkA", cursor_store = store, lock_ttl = 30,
          lock_timeout = tonumber(args.lock_timeout) })
        local got, max = {}, tonumber(args.max)
        for msg in pull do
          got[#got + 1] = { msg.msgid, exists("@LOCK@") }
          if #got == max then
            assert(pull:ack())
            break
          end
        end
        pull:close()
        return {
          got = got,
          handled = pull.handled,
          cursor = pull.cursor or "none",
          err = pull.err and tostring(pull.err) or "none",
          reason = pull.err and pull.err.reason or "none",
          driver = package.loaded["nginx.redis"] and "nginx.redis" or "other",
        }
      end
    }
]]

local SERVER = [[
    location = /pull {
      content_by_lua_block { ngx.print(require("cjson").encode(SPEC.pull(ngx.req.get_uri_args()))) }
    }
    location = /forget_tokens { content_by_lua_block { ngx.shared.tokens:flush_all() ngx.print("ok") } }
]]

local app, server

local function pull(query)
  local status, body = app:request("GET", "/pull?" .. (query or ""))
  assert.are.equal(200, status, body)
  return cjson.decode(body)
end

local function queue(from, to, page_size)
  local messages = {}
  for i = from, to do
    messages[#messages + 1] = { msgid = "m" .. i, open_kfid = "wkA", external_userid = "wmC",
      send_time = 1700000000 + i, origin = 3, msgtype = "text", text = { content = "message " .. i } }
  end
  return standin.sync({ messages = messages, page_size = page_size })
end

-- GET in the spec's db, through the helper's own client.
local function get(key)
  return server:call("EVAL", "redis.call('select', ARGV[1]) return redis.call('get', KEYS[1])", 1, key, DB)
end

local function exists(key)
  return server:call("EVAL", "redis.call('select', ARGV[1]) return redis.call('exists', KEYS[1])", 1, key, DB)
end

describe("kf.sync_all with the Redis store inside nginx (resty.redis) #openresty", function()
  setup(function()
    standin.start()
    server = redis.start(REDIS_PORT)
    local http = HTTP:gsub("@(%u+_?%u*)@", { URL = standin.url(), REDIS_PORT = REDIS_PORT, DB = DB, LOCK = LOCK })
    app = nginx.start{ name = "sync-redis", port = PORT, workers = 2, http = http, server = SERVER }
  end)

  teardown(function()
    if app then
      app:stop()
    end
    if server then
      server:stop()
    end
  end)

  before_each(function()
    standin.reset()
    server:flush()
    assert.are.same({ 200, "ok" }, { app:request("GET", "/forget_tokens") })
  end)

  it("pulls every message across pages, holding the lock, the cursor in Redis after each one", function()
    queue(1, 7, 3)
    assert.are.same({
      got = { { "m1", 1 }, { "m2", 1 }, { "m3", 1 }, { "m4", 1 }, { "m5", 1 }, { "m6", 1 }, { "m7", 1 } },
      handled = 7,
      cursor = "SC7",
      err = "none",
      reason = "none",
      driver = "nginx.redis",
    }, pull())
    assert.are.equal("0:SC7", get(KEY))
    assert.are.equal(0, exists(LOCK))
    assert.are.same({ "-", "SC3", "SC6" }, standin.sync_cursors())
    -- the keys live in the db asked for, not in db 0
    assert.is_nil(server:call("GET", KEY))
  end)

  it("resumes in a later request after the last handled message", function()
    queue(1, 7, 3)
    local first = pull("max=4")
    assert.are.same({ { "m1", 1 }, { "m2", 1 }, { "m3", 1 }, { "m4", 1 } }, first.got)
    assert.are.equal("1:SC3:m4", get(KEY))
    assert.are.equal(0, exists(LOCK))
    local rest = pull()
    assert.are.same({ { "m5", 1 }, { "m6", 1 }, { "m7", 1 } }, rest.got)
    assert.are.equal("none", rest.err)
    assert.are.equal("0:SC7", get(KEY))
    assert.are.same({ "-", "SC3", "SC3", "SC6" }, standin.sync_cursors())
  end)

  it("waits for a lock another holds, then ends with a timeout error and pulls nothing", function()
    queue(1, 3)
    server:call("EVAL", "redis.call('select', ARGV[1]) return redis.call('set', KEYS[1], 'another', 'PX', 30000)",
      1, LOCK, DB)
    local res = pull("lock_timeout=0.2")
    assert.are.same({}, res.got)
    assert.are.equal("timeout", res.reason)
    assert.are.equal("wechat: store error: lock " .. KEY .. " still held by another after 0.2s in sync_all", res.err)
    assert.are.equal(0, #standin.requests(SYNC))
    assert.are.equal("another", get(LOCK))
  end)

  it("reports a Redis it cannot reach as a store error, with no request made", function()
    queue(1, 3)
    local res = pull("port=" .. (REDIS_PORT + 10))
    assert.are.same({}, res.got)
    assert.are.equal("wechat: store error: cannot connect to redis 127.0.0.1:" .. (REDIS_PORT + 10)
      .. ": connection refused in sync_all", res.err)
    assert.are.equal(0, #standin.requests(SYNC))
  end)
end)
