-- wechat.work.kf.window against the WeCom stand-in, which keeps the same 48 h / 5-message rule: the tracker in a
-- memory store and in a real redis-server learns customers' messages and events from sync_msg pages, refuses
-- locally what WeCom would refuse (the stand-in sees exactly what passes), and counts exactly when two Lua
-- processes share Redis.
local errors = require "wechat.work.errors"
local interpreter = require "helpers.interpreter"
local kf = require "wechat.work.kf.message"
local redis = require "helpers.redis"
local redis_store = require "wechat.work.store.redis"
local socket = require "socket"
local standin = require "helpers.standin"
local window = require "wechat.work.kf.window"
local work = require "wechat.work"

local shell_quote = require("helpers.shell").quote

local PORT = 16410
local KFID = "wkWINDOW"
local SEND = "/cgi-bin/kf/send_msg"
local HOUR = 3600

local serial = 0

local function customer_message(user, send_time)
  serial = serial + 1
  return { msgid = "c" .. serial, open_kfid = KFID, external_userid = user, send_time = send_time or os.time(),
    origin = 3, msgtype = "text", text = { content = "hello " .. serial } }
end

local function event(user, fields)
  serial = serial + 1
  fields.open_kfid, fields.external_userid = KFID, user
  return { msgid = "e" .. serial, send_time = os.time(), origin = 4, msgtype = "event", event = fields }
end

-- Queues the messages at the stand-in and pulls them all through the client.
local function arrive(client, messages)
  standin.sync{ messages = messages }
  local pull = kf.sync_all(client, "kf")
  local n = 0
  for _ in pull do
    n = n + 1
  end
  assert.is_nil(pull.err)
  assert.are.equal(#messages, n)
end

local function send(client, user, n, opts)
  local out = {}
  for i = 1, n do
    local res, err = kf.send_text(client, "kf", user, KFID, "reply " .. i, opts)
    out[i] = res and "ok" or (err.kind .. ":" .. tostring(err.reason or err.errcode))
  end
  return table.concat(out, " ")
end

local function delivered_to(user)
  local n = 0
  for _, body in ipairs(standin.delivered()) do
    if body.touser == user then
      n = n + 1
    end
  end
  return n
end

local backends = {
  memory = function()
    return true
  end,
}

describe("kf.window", function()
  local server

  setup(function()
    standin.start()
    server = redis.start(PORT)
    backends.redis = function()
      return redis_store.new{ port = PORT, prefix = "t" .. serial .. ":" }
    end
  end)

  teardown(function()
    server:stop()
  end)

  before_each(function()
    standin.reset()
  end)

  for _, name in ipairs{ "memory", "redis" } do
    describe("in a " .. name .. " store", function()
      local client

      before_each(function()
        client = work.client{ corp_id = "wwCORP", agents = { kf = { secret = "KF_SECRET" } },
          base_url = standin.url(), window = backends[name]() }
      end)

      it("lets 5 sends pass after a customer message and refuses the 6th locally", function()
        arrive(client, { customer_message("wmA") })
        assert.are.equal("ok ok ok ok ok window:quota window:quota", send(client, "wmA", 7))
        assert.are.equal(5, delivered_to("wmA"))
        assert.are.equal(5, standin.counts()[SEND])
        local info = window.get(client, "kf", KFID, "wmA")
        assert.are.equal(0, info.remaining)
        assert.are.equal("quota", info.reason)
        assert.are.same({ false, "quota" }, { window.can_send(client, "kf", KFID, "wmA") })
      end)

      it("starts again at 5 when the customer writes again", function()
        arrive(client, { customer_message("wmA", os.time() - 10) })
        assert.are.equal("ok ok ok ok ok window:quota", send(client, "wmA", 6))
        local t = os.time()
        arrive(client, { customer_message("wmA", t) })
        assert.are.same({ remaining = 5, expires_at = t + 48 * HOUR }, window.get(client, "kf", KFID, "wmA"))
        assert.are.equal("ok ok ok ok ok window:quota", send(client, "wmA", 6))
        assert.are.equal(10, delivered_to("wmA"))
      end)

      it("does not start again for a message it has seen, nor for an older one", function()
        local first = customer_message("wmA")
        arrive(client, { first })
        assert.are.equal("ok ok", send(client, "wmA", 2))
        arrive(client, { first, customer_message("wmA", os.time() - HOUR) })
        assert.are.equal(3, window.get(client, "kf", KFID, "wmA").remaining)
      end)

      it("refuses a customer whose last message is 49 hours old, as WeCom does", function()
        local t = os.time() - 49 * HOUR
        arrive(client, { customer_message("wmOLD", t) })
        assert.are.equal("window:expired", send(client, "wmOLD", 1))
        assert.are.equal(0, standin.counts()[SEND] or 0)
        assert.are.same({ remaining = 0, expires_at = t + 48 * HOUR, reason = "expired" },
          window.get(client, "kf", KFID, "wmOLD"))
        -- forced, it reaches the stand-in, which refuses it with WeCom's 95002
        assert.are.equal("api:95002", send(client, "wmOLD", 1, { force = true }))
        assert.are.equal(0, delivered_to("wmOLD"))
      end)

      it("refuses with reason state while a human has the session, and passes once it ended and restarted", function()
        arrive(client, { customer_message("wmH") })
        assert.are.equal("ok", send(client, "wmH", 1))
        arrive(client, { event("wmH", { event_type = "session_status_change", change_type = 1,
          new_servicer_userid = "zhangsan" }) })
        assert.are.equal("window:state", send(client, "wmH", 1))
        assert.are.equal(3, window.get(client, "kf", KFID, "wmH").state)
        -- the servicer ends the session: still closed to the API until the customer writes
        arrive(client, { event("wmH", { event_type = "session_status_change", change_type = 3,
          old_servicer_userid = "zhangsan" }) })
        assert.are.equal("window:state", send(client, "wmH", 1))
        arrive(client, { customer_message("wmH") })
        assert.are.equal(0, window.get(client, "kf", KFID, "wmH").state)
        assert.are.equal("ok ok", send(client, "wmH", 2))
        assert.are.equal(3, delivered_to("wmH"))
      end)

      it("takes the state given by note_state (service_state.trans)", function()
        arrive(client, { customer_message("wmT") })
        assert.is_true(window.note_state(client, "kf", KFID, "wmT", 2))
        assert.are.equal("window:state", send(client, "wmT", 1))
        assert.is_true(window.note_state(client, "kf", KFID, "wmT", 1))
        assert.are.equal("ok", send(client, "wmT", 1))
        assert.has_error(function() window.note_state(client, "kf", KFID, "wmT", 7) end,
          "bad argument #5 to 'note_state' (service state 0..4 expected, got 7)")
      end)

      it("marks state 'not the API's' on a 95018 until the customer writes", function()
        arrive(client, { customer_message("wm18") })
        standin.script(SEND, { errcode = 95018, errmsg = "send msg session status invalid" })
        assert.are.equal("api:95018 window:state", send(client, "wm18", 2))
        arrive(client, { customer_message("wm18") })
        assert.are.equal("ok", send(client, "wm18", 1))
      end)

      it("lets customers it has never seen pass", function()
        assert.is_nil(window.get(client, "kf", KFID, "wmNEW"))
        assert.is_true(window.can_send(client, "kf", KFID, "wmNEW"))
        assert.are.equal("ok ok ok ok ok ok ok", send(client, "wmNEW", 7))
        assert.are.equal(7, delivered_to("wmNEW"))
      end)

      it("sends with force = true past the tracker, and learns from WeCom's 95001", function()
        arrive(client, { customer_message("wmF") })
        assert.are.equal("ok ok ok ok ok window:quota", send(client, "wmF", 6))
        assert.are.equal("api:95001", send(client, "wmF", 1, { force = true, msgid = "forced-1" }))
        assert.are.equal(6, standin.counts()[SEND])
        assert.has_error(function() kf.send_text(client, "kf", "wmF", KFID, "x", { force = "yes" }) end,
          "bad argument #6 to 'send_text' (opts.force: boolean expected, got string)")
      end)

      it("counts a forced send WeCom accepted", function()
        arrive(client, { customer_message("wmG") })
        assert.are.equal("ok ok", send(client, "wmG", 2, { force = true }))
        assert.are.equal(3, window.get(client, "kf", KFID, "wmG").remaining)
      end)

      it("gives the count back when WeCom refused the send for another reason", function()
        arrive(client, { customer_message("wmR") })
        standin.script(SEND, { errcode = 45009, errmsg = "api freq out of limit" }, 2)
        assert.are.equal("api:45009 api:45009", send(client, "wmR", 2))
        assert.are.equal(5, window.get(client, "kf", KFID, "wmR").remaining)
      end)

      it("keeps the count of a send whose fate is unknown", function()
        local slow = work.client{ corp_id = "wwCORP", agents = { kf = { secret = "KF_SECRET" } },
          base_url = standin.url(), timeout = 0.5, window = backends[name]() }
        arrive(slow, { customer_message("wmU") })
        standin.script(SEND, { delay = 2 })
        local res, err = kf.send_text(slow, "kf", "wmU", KFID, "lost?")
        assert.is_nil(res)
        assert.are.same({ errors.TRANSPORT, "timeout" }, { err.kind, err.reason })
        assert.are.equal(4, window.get(slow, "kf", KFID, "wmU").remaining)
        standin.settle(5)
      end)

      it("learns a closed window and a used quota from msg_send_fail events", function()
        arrive(client, { customer_message("wm4"), customer_message("wm6") })
        arrive(client, { event("wm4", { event_type = "msg_send_fail", fail_msgid = "x", fail_type = 4 }),
          event("wm6", { event_type = "msg_send_fail", fail_msgid = "y", fail_type = 6 }) })
        assert.are.equal("window:expired", send(client, "wm4", 1))
        assert.are.equal("window:quota", send(client, "wm6", 1))
      end)

      it("neither counts nor blocks send_msg_on_event", function()
        arrive(client, { customer_message("wmE") })
        assert.are.equal("ok ok ok ok ok", send(client, "wmE", 5))
        assert.is_truthy(kf.send_text_on_event(client, "kf", "CODE-1", "welcome"))
        assert.are.equal(0, window.get(client, "kf", KFID, "wmE").remaining)
      end)
    end)
  end

  it("refuses a client option window that is not a store it can count in", function()
    assert.has_error(function()
      work.client{ corp_id = "wwCORP", agents = { kf = { secret = "S" } }, window = "yes" }
    end, "bad argument #1 to 'client' (window: true, false or a memory, shared_dict or redis store expected, "
      .. "got string)")
  end)

  it("lets exactly 5 of 12 sends from two Lua processes sharing Redis reach the stand-in", function()
    local c = work.client{ corp_id = "wwCORP", agents = { kf = { secret = "KF_SECRET" } }, base_url = standin.url(),
      window = redis_store.new{ port = PORT, prefix = "two:" } }
    arrive(c, { customer_message("wmTWO") })
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
    assert.are.equal(5, delivered_to("wmTWO"))
    socket.sleep(0)
  end)
end)
