-- The behaviours of wechat.work.kf.window against the WeCom stand-in, written once for every backend: under
-- Lua 5.4 / LuaJIT (spec/window_spec.lua: memory, Redis) and inside nginx (spec/openresty/window_spec.lua:
-- lua_shared_dict). A driver runs them on its client:
--   driver.send(user, n, opts, slow)   n send_text calls; one word each: "ok" or "<kind>:<reason or errcode>";
--                                      slow: through a client with a 0.5 s timeout sharing the same tracker
--   driver.pull()                      kf.sync_all over everything queued since the last pull
--   driver.get(user), driver.can_send(user) -> { ok, reason }, driver.note_state(user, state) -> true
--   driver.on_event(code)              send_text_on_event, true when WeCom took it
--   driver.trans(user, state, servicer), driver.state_get(user)   service_state.trans / get: "ok" or "<kind>:<errcode>"
local standin = require "helpers.standin"

local M = {}

M.KFID = "wkWINDOW"
local KFID = M.KFID
local SEND = "/cgi-bin/kf/send_msg"
local HOUR = 3600

local serial = 0

function M.customer_message(user, send_time)
  serial = serial + 1
  return { msgid = "c" .. serial, open_kfid = KFID, external_userid = user, send_time = send_time or os.time(),
    origin = 3, msgtype = "text", text = { content = "hello " .. serial } }
end

function M.event(user, fields)
  serial = serial + 1
  fields.open_kfid, fields.external_userid = KFID, user
  return { msgid = "e" .. serial, send_time = os.time(), origin = 4, msgtype = "event", event = fields }
end

function M.delivered_to(user)
  local n = 0
  for _, body in ipairs(standin.delivered()) do
    if body.touser == user then
      n = n + 1
    end
  end
  return n
end

--- Defines the `it` blocks; `driver` is read when they run (the caller may fill it in a before_each). busted's
-- `it` and `assert` live in the spec file's environment, not in a helper's: the spec passes them.
function M.define(driver, it, assert)
  local customer_message, event, delivered_to = M.customer_message, M.event, M.delivered_to

  local function arrive(messages)
    standin.sync{ messages = messages }
    assert.are.equal(#messages, driver.pull())
  end

  local function send(user, n, opts, slow)
    return driver.send(user, n, opts, slow)
  end

  it("lets 5 sends pass after a customer message and refuses the 6th locally", function()
    arrive{ customer_message("wmA") }
    assert.are.equal("ok ok ok ok ok window:quota window:quota", send("wmA", 7))
    assert.are.equal(5, delivered_to("wmA"))
    assert.are.equal(5, standin.counts()[SEND])
    local info = driver.get("wmA")
    assert.are.equal(0, info.remaining)
    assert.are.equal("quota", info.reason)
    assert.are.same({ false, "quota" }, driver.can_send("wmA"))
  end)

  it("starts again at 5 when the customer writes again", function()
    arrive{ customer_message("wmA", os.time() - 10) }
    assert.are.equal("ok ok ok ok ok window:quota", send("wmA", 6))
    local t = os.time()
    arrive{ customer_message("wmA", t) }
    assert.are.same({ remaining = 5, expires_at = t + 48 * HOUR }, driver.get("wmA"))
    assert.are.equal("ok ok ok ok ok window:quota", send("wmA", 6))
    assert.are.equal(10, delivered_to("wmA"))
  end)

  it("does not start again for a message it has seen, nor for an older one", function()
    local first = customer_message("wmA")
    arrive{ first }
    assert.are.equal("ok ok", send("wmA", 2))
    arrive{ first, customer_message("wmA", os.time() - HOUR) }
    assert.are.equal(3, driver.get("wmA").remaining)
  end)

  it("refuses a customer whose last message is 49 hours old, as WeCom does", function()
    local t = os.time() - 49 * HOUR
    arrive{ customer_message("wmOLD", t) }
    assert.are.equal("window:expired", send("wmOLD", 1))
    assert.are.equal(0, standin.counts()[SEND] or 0)
    assert.are.same({ remaining = 0, expires_at = t + 48 * HOUR, reason = "expired" }, driver.get("wmOLD"))
    -- forced, it reaches the stand-in, which refuses it with WeCom's 95002
    assert.are.equal("api:95002", send("wmOLD", 1, { force = true }))
    assert.are.equal(0, delivered_to("wmOLD"))
  end)

  it("refuses with reason state while a person has the session, and passes once it ended and restarted", function()
    arrive{ customer_message("wmH") }
    assert.are.equal("ok", send("wmH", 1))
    arrive{ event("wmH", { event_type = "session_status_change", change_type = 1, new_servicer_userid = "zhang" }) }
    assert.are.equal("window:state", send("wmH", 1))
    assert.are.equal(3, driver.get("wmH").state)
    -- the servicer ends the session: still closed to the API until the customer writes
    arrive{ event("wmH", { event_type = "session_status_change", change_type = 3, old_servicer_userid = "zhang" }) }
    assert.are.equal("window:state", send("wmH", 1))
    assert.are.equal(4, driver.get("wmH").state)
    arrive{ customer_message("wmH") }
    assert.are.equal(0, driver.get("wmH").state)
    assert.are.equal("ok ok", send("wmH", 2))
    assert.are.equal(3, delivered_to("wmH"))
  end)

  it("takes the state given by note_state (service_state.trans)", function()
    arrive{ customer_message("wmT") }
    assert.is_true(driver.note_state("wmT", 2))
    assert.are.equal("window:state", send("wmT", 1))
    assert.is_true(driver.note_state("wmT", 1))
    assert.are.equal("ok", send("wmT", 1))
  end)

  it("learns the state from service_state.trans and get, and sends again once the session is back", function()
    standin.kf_account{ open_kfid = KFID, servicers = { "zhangsan" } }
    arrive{ customer_message("wmTR") }
    assert.are.equal("ok", send("wmTR", 1))
    assert.are.equal("ok", driver.trans("wmTR", 3, "zhangsan"))
    assert.are.equal("window:state", send("wmTR", 1))
    assert.are.equal("ok", driver.trans("wmTR", 4))
    assert.are.equal("window:state", send("wmTR", 1))
    assert.are.equal(1, standin.counts()[SEND])
    arrive{ customer_message("wmTR") }
    assert.are.equal("ok", send("wmTR", 1))
    -- moved behind the tracker's back: WeCom's 95018 teaches it, service_state.get tells it the session is back
    standin.set_session{ open_kfid = KFID, external_userid = "wmTR", service_state = 2 }
    assert.are.equal("api:95018 window:state", send("wmTR", 2))
    standin.set_session{ open_kfid = KFID, external_userid = "wmTR", service_state = 1 }
    assert.are.equal("ok", driver.state_get("wmTR"))
    assert.are.equal(1, driver.get("wmTR").state)
    assert.are.equal("ok", send("wmTR", 1))
    assert.are.equal(3, delivered_to("wmTR"))
  end)

  it("takes state 4 from enter_session for a customer without an open window, and only then", function()
    arrive{ event("wmIN", { event_type = "enter_session", welcome_code = "W1" }) }
    assert.are.same({ state = 4, reason = "state" }, driver.get("wmIN"))
    assert.are.equal("window:state", send("wmIN", 1))
    arrive{ customer_message("wmIN"), event("wmIN", { event_type = "enter_session", welcome_code = "W2" }) }
    assert.are.equal(0, driver.get("wmIN").state)
    assert.are.equal("ok", send("wmIN", 1))
  end)

  it("marks the state 'not the API's' on a 95018 until the customer writes", function()
    arrive{ customer_message("wm18") }
    standin.script(SEND, { errcode = 95018, errmsg = "send msg session status invalid" })
    assert.are.equal("api:95018 window:state", send("wm18", 2))
    assert.is_nil(driver.get("wm18").state)
    arrive{ customer_message("wm18") }
    assert.are.equal("ok", send("wm18", 1))
  end)

  it("lets customers it has never seen pass", function()
    -- WeCom saw the customer write, and again after 5 sends; the tracker saw none of it
    standin.wrote(KFID, "wmNEW")
    assert.is_nil(driver.get("wmNEW"))
    assert.are.same({ true }, driver.can_send("wmNEW"))
    assert.are.equal("ok ok ok ok ok", send("wmNEW", 5))
    standin.wrote(KFID, "wmNEW")
    assert.are.equal("ok ok", send("wmNEW", 2))
    assert.are.equal(7, delivered_to("wmNEW"))
  end)

  it("sends with force = true past the tracker, and learns from WeCom's 95001", function()
    arrive{ customer_message("wmF") }
    assert.are.equal("ok ok ok ok ok window:quota", send("wmF", 6))
    assert.are.equal("api:95001", send("wmF", 1, { force = true, msgid = "forced-1" }))
    assert.are.equal(6, standin.counts()[SEND])
  end)

  it("counts a forced send WeCom accepted", function()
    arrive{ customer_message("wmG") }
    assert.are.equal("ok ok", send("wmG", 2, { force = true }))
    assert.are.equal(3, driver.get("wmG").remaining)
  end)

  it("learns 95001 for a customer it did not know, for an hour", function()
    standin.script(SEND, { errcode = 95001, errmsg = "send msg count limit" })
    assert.are.equal("api:95001 window:quota", send("wmQ", 2))
    assert.are.equal(0, driver.get("wmQ").remaining)
  end)

  it("gives the count back when WeCom refused the send for another reason", function()
    arrive{ customer_message("wmR") }
    standin.script(SEND, { errcode = 45009, errmsg = "api freq out of limit" }, 2)
    assert.are.equal("api:45009 api:45009", send("wmR", 2))
    assert.are.equal(5, driver.get("wmR").remaining)
  end)

  it("keeps the count of a send whose fate is unknown", function()
    arrive{ customer_message("wmU") }
    -- the try and its retry both time out (a retry answered as a duplicate would be the first try's success)
    standin.script(SEND, { delay = 2 }, 2)
    assert.are.equal("transport:timeout", send("wmU", 1, nil, true))
    assert.are.equal(4, driver.get("wmU").remaining)
    standin.settle(5)
  end)

  it("learns a closed window and a used quota from msg_send_fail events, not from older ones", function()
    arrive{ customer_message("wm4"), customer_message("wm6"), customer_message("wmLATE") }
    local stale = event("wmLATE", { event_type = "msg_send_fail", fail_msgid = "z", fail_type = 6 })
    stale.send_time = os.time() - HOUR
    arrive{ event("wm4", { event_type = "msg_send_fail", fail_msgid = "x", fail_type = 4 }),
      event("wm6", { event_type = "msg_send_fail", fail_msgid = "y", fail_type = 6 }), stale }
    assert.are.equal("window:expired", send("wm4", 1))
    assert.are.equal("window:quota", send("wm6", 1))
    assert.are.equal("ok", send("wmLATE", 1))
  end)

  it("neither counts nor blocks send_msg_on_event", function()
    arrive{ customer_message("wmE") }
    assert.are.equal("ok ok ok ok ok", send("wmE", 5))
    assert.is_true(driver.on_event(standin.welcome_code("CODE-1")))
    assert.are.equal(0, driver.get("wmE").remaining)
  end)
end

return M
