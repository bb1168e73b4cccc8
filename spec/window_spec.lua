-- wechat.work.kf.window against the WeCom stand-in, which keeps the same 48 h / 5-message rule: the tracker in a
-- memory store and in a real redis-server learns customers' messages and events from sync_msg pages, refuses
-- locally what WeCom would refuse (the stand-in sees exactly what passes), and counts exactly when two Lua
-- processes share Redis. The behaviours shared with the lua_shared_dict backend are in helpers.window_cases.
local cases = require "helpers.window_cases"
local interpreter = require "helpers.interpreter"
local kf = require "wechat.work.kf.message"
local memory_store = require "wechat.work.store.memory"
local redis = require "helpers.redis"
local redis_store = require "wechat.work.store.redis"
local service_state = require "wechat.work.kf.service_state"
local standin = require "helpers.standin"
local window = require "wechat.work.kf.window"
local work = require "wechat.work"

local shell_quote = require("helpers.shell").quote

local PORT = 16410
local KFID = cases.KFID

local function new_client(store, timeout)
  return work.client{ corp_id = "wwCORP", agents = { kf = { secret = "KF_SECRET" } }, base_url = standin.url(),
    timeout = timeout, window = store }
end

-- Pulls everything queued at the stand-in through the client; returns how many messages came.
local function pull(client)
  local p = kf.sync_all(client, "kf")
  local n = 0
  for _ in p do
    n = n + 1
  end
  assert.is_nil(p.err)
  return n
end

-- The driver of helpers.window_cases for a client whose tracker lives in `store`.
local function driver_for(client, slow)
  local function words(c, user, n, opts)
    local out = {}
    for i = 1, n do
      local res, err = kf.send_text(c, "kf", user, KFID, "reply " .. i, opts)
      out[i] = res and "ok" or (err.kind .. ":" .. tostring(err.reason or err.errcode))
    end
    return table.concat(out, " ")
  end
  return {
    send = function(user, n, opts, use_slow)
      return words(use_slow and slow or client, user, n, opts)
    end,
    pull = function()
      return pull(client)
    end,
    get = function(user)
      return window.get(client, "kf", KFID, user)
    end,
    can_send = function(user)
      return { window.can_send(client, "kf", KFID, user) }
    end,
    note_state = function(user, state)
      return window.note_state(client, "kf", KFID, user, state)
    end,
    on_event = function(code)
      return kf.send_text_on_event(client, "kf", code, "welcome") ~= nil
    end,
    trans = function(user, state, servicer)
      local res, err = service_state.trans(client, "kf", KFID, user, state, servicer)
      return res and "ok" or (err.kind .. ":" .. tostring(err.errcode))
    end,
    state_get = function(user)
      local res, err = service_state.get(client, "kf", KFID, user)
      return res and "ok" or (err.kind .. ":" .. tostring(err.errcode))
    end,
  }
end

describe("kf.window", function()
  local server
  local prefixes = 0

  setup(function()
    standin.start()
    server = redis.start(PORT)
  end)

  teardown(function()
    server:stop()
  end)

  before_each(function()
    standin.reset()
  end)

  local stores = {
    memory = memory_store.new,
    redis = function()
      prefixes = prefixes + 1
      return redis_store.new{ port = PORT, prefix = "t" .. prefixes .. ":" }
    end,
  }

  for _, name in ipairs{ "memory", "redis" } do
    describe("in a " .. name .. " store", function()
      local client, store
      local driver = {}

      before_each(function()
        store = stores[name]()
        client = new_client(store)
        for k, v in pairs(driver_for(client, new_client(store, 0.5))) do
          driver[k] = v
        end
      end)

      cases.define(driver, it, assert)

      it("raises on a wrong force, state or customer", function()
        assert.has_error(function() kf.send_text(client, "kf", "wmF", KFID, "x", { force = "yes" }) end,
          "bad argument #6 to 'send_text' (opts.force: boolean expected, got string)")
        assert.has_error(function() kf.send_message(client, "kf", { touser = "wmF" }, { force = 1 }) end,
          "bad argument #4 to 'send_message' (opts.force: boolean expected, got number)")
        assert.has_error(function() kf.send_message(client, "kf", { touser = "wmF" }, { msgid = "m" }) end,
          "bad argument #4 to 'send_message' (opts: unknown option 'msgid')")
        assert.has_error(function() window.note_state(client, "kf", KFID, "wmT", 7) end,
          "bad argument #5 to 'note_state' (service state 0..4 expected, got 7)")
        assert.has_error(function() window.get(client, "kf", KFID, "") end,
          "bad argument #4 to 'get' (external_userid: non-empty string expected, got empty string)")
        assert.has_error(function() window.get(new_client(nil), "kf", KFID, "wmX") end,
          "bad argument #1 to 'get' (the client was made without the window option)")
      end)

      if name == "redis" then
        it("learns a page in one store call per customer and per event, not one per message", function()
          local function evals()
            local info = assert(redis.command(PORT, "INFO", "commandstats"))
            return tonumber(info:match("cmdstat_eval:calls=(%d+)")) or 0
          end
          local message, event, t = cases.customer_message, cases.event, os.time()
          standin.sync{ messages = { message("wmP1", t - 30), message("wmP1", t - 20), message("wmP2", t - 20),
            message("wmP1", t - 10), event("wmP2", { event_type = "enter_session" }), message("wmP2", t - 5),
            message("wmP2", t - 8) } }
          local before = evals()
          assert.are.equal(7, pull(client))
          -- wmP1: its newest message; wmP2: its message before the event, the event, its newest one after it
          assert.are.equal(4, evals() - before)
          assert.are.same({ remaining = 5, expires_at = t - 10 + 48 * 3600 }, window.get(client, "kf", KFID, "wmP1"))
          assert.are.same({ remaining = 5, expires_at = t - 5 + 48 * 3600 }, window.get(client, "kf", KFID, "wmP2"))
        end)
      end

      it("gives the count back after a failed TLS handshake: nothing reached WeCom", function()
        standin.sync{ messages = { cases.customer_message("wmTLS") } }
        assert.are.equal(1, pull(client))
        -- the stand-in's CA not trusted: the handshake fails before any byte of a request goes out
        local untrusted = work.client{ corp_id = "wwCORP", agents = { kf = { secret = "KF_SECRET" } },
          base_url = standin.https_url(), timeout = 60, window = store }
        local res, err = kf.send_text(untrusted, "kf", "wmTLS", KFID, "x")
        untrusted:close()
        assert.is_nil(res)
        assert.are.same({ "transport", "tls" }, { err.kind, err.reason })
        assert.is_nil(err.maybe_sent)
        assert.are.equal(5, window.get(client, "kf", KFID, "wmTLS").remaining)
      end)

      it("tracks the raw form of send_message, which takes force as its 4th argument", function()
        standin.sync{ messages = { cases.customer_message("wmRAW") } }
        assert.are.equal(1, pull(client))
        local body = { touser = "wmRAW", open_kfid = KFID, msgtype = "text", text = { content = "raw" } }
        for _ = 1, 5 do
          assert.is_truthy(kf.send_message(client, "kf", body))
        end
        local res, err = kf.send_message(client, "kf", body)
        assert.is_nil(res)
        assert.are.same({ "window", "quota", "send_message" }, { err.kind, err.reason, err.op })
        err = select(2, kf.send_message(client, "kf", body, { force = true }))
        assert.are.same({ "api", 95001 }, { err.kind, err.errcode })
        assert.are.equal(6, standin.counts()["/cgi-bin/kf/send_msg"])
      end)
    end)
  end

  it("refuses a client option window that is not a store it can count in", function()
    assert.has_error(function()
      work.client{ corp_id = "wwCORP", agents = { kf = { secret = "S" } }, window = "yes" }
    end, "bad argument #1 to 'client' (window: true, false or a memory, shared_dict or redis store expected, "
      .. "got string)")
  end)

  it("holds kf.batch to the same window: 5 of 7 sends to one customer go, forced ones pass", function()
    local c = new_client(memory_store.new())
    standin.sync{ messages = { cases.customer_message("wmBATCH") } }
    assert.are.equal(1, pull(c))
    local calls = {}
    for i = 1, 7 do
      calls[i] = { "send_text", "wmBATCH", KFID, "batch " .. i }
    end
    calls[8] = { "send_text", "wmBATCH", KFID, "forced", { force = true, msgid = "forced-batch" } }
    local words = {}
    for i, r in ipairs(kf.batch(c, "kf", calls)) do
      words[i] = r.res and "ok" or (r.err.kind .. ":" .. tostring(r.err.reason or r.err.errcode))
    end
    table.sort(words)
    assert.are.same({ "api:95001", "ok", "ok", "ok", "ok", "ok", "window:quota", "window:quota" }, words)
    assert.are.equal(5, cases.delivered_to("wmBATCH"))
    assert.are.equal(6, standin.counts()["/cgi-bin/kf/send_msg"])
  end)

  it("with window = true, counts in the token store's Redis, one hash a customer", function()
    local c = work.client{ corp_id = "wwCORP", agents = { kf = { secret = "KF_SECRET" } }, base_url = standin.url(),
      token_store = redis_store.new{ port = PORT, prefix = "tok:" }, window = true }
    local t = os.time() - 100
    standin.sync{ messages = { cases.customer_message("wmKEY", t) } }
    assert.are.equal(1, pull(c))
    local key = "tok:wechat:kf:window:wwCORP:" .. KFID .. ":wmKEY"
    assert.are.same({ tostring(t), "0" }, server:call("HMGET", key, "t", "n"))
    assert.is_truthy(kf.send_message(c, "kf", { touser = "wmKEY", open_kfid = KFID, msgtype = "text",
      text = { content = "hi" } }, { force = true }))
    assert.are.same({ "1" }, server:call("HMGET", key, "n"))
    -- it lives until 49 hours after the customer's message (to the second either way: the expiry is set relative to
    -- Redis's clock in milliseconds, and TTL rounds to the nearest second)
    local ends = os.time() + server:call("TTL", key)
    assert.is_true(ends >= t + 49 * 3600 - 1 and ends <= t + 49 * 3600 + 1, tostring(ends - t))
  end)

  it("lets exactly 5 of 12 sends from two Lua processes sharing Redis reach the stand-in", function()
    local c = new_client(redis_store.new{ port = PORT, prefix = "two:" })
    standin.sync{ messages = { cases.customer_message("wmTWO") } }
    assert.are.equal(1, pull(c))
    local go = os.time() + 2
    local procs = {}
    for i = 1, 2 do
      procs[i] = io.popen(interpreter.command() .. " spec/helpers/window_worker.lua " .. shell_quote(standin.url())
        .. " " .. PORT .. " two: " .. KFID .. " wmTWO 6 " .. go .. " 2>&1")
    end
    local results = {}
    for i = 1, 2 do
      results[i] = procs[i]:read("*a")
      procs[i]:close()
    end
    local all = results[1] .. results[2]
    local ok = select(2, all:gsub("ok", ""))
    local refused = select(2, all:gsub("window:quota", ""))
    assert.are.equal(5, ok, all)
    assert.are.equal(7, refused, all)
    assert.are.equal(5, cases.delivered_to("wmTWO"))
  end)
end)
