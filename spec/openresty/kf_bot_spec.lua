-- The KF bot example (examples/openresty/kf_bot) in a real nginx with 2 workers, started by its own `run` script,
-- against the WeCom stand-in acting as WeCom: a simulated customer writes (POST /_standin/customer_writes queues
-- the messages for sync_msg and sends the signed, encrypted kf_msg_or_event callback to the bot), the bot answers
-- the callback, pulls in a timer and replies; the stand-in records the exact replies, the callbacks and the
-- sync_msg calls.
local cjson = require "cjson"
local callback = require "wechat.work.callback"
local testing = require "wechat.work.callback.testing"
local core = require "wechat.core"
local bot_nginx = require "helpers.bot_nginx"
local redis = require "helpers.redis"
local standin = require "helpers.standin"
local socket = require "socket"

local PORT = 18372
local TOKEN = "kfBotSpecToken"
local AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
local KFID = "wkBOT"
local CUSTOMER = "wmCUSTOMER"
local SYNC = "/cgi-bin/kf/sync_msg"

local WELCOME = {
  head_content = "Welcome! What can we do for you?",
  list = {
    { type = "click", click = { id = "hours", content = "Opening hours" } },
    { type = "click", click = { id = "human", content = "Talk to a person" } },
  },
  tail_content = "Or write anything: I will say it back.",
}

local bot

local function post(path, value)
  local status, body = standin.request("POST", path, cjson.encode(value))
  assert.are.equal(200, status, body)
  return cjson.decode(body)
end

-- A customer writes: the stand-in queues the messages and calls the bot. opts override the callback settings.
local function customer_writes(messages, opts)
  local req = { callback_url = bot:url(), token = TOKEN, encoding_aes_key = AES_KEY, open_kfid = KFID }
  -- lua-cjson writes an empty table as {}, which the stand-in refuses as messages: leave it out instead
  if messages and #messages > 0 then
    req.messages = messages
  end
  for k, v in pairs(opts or {}) do
    req[k] = v
  end
  return post("/_standin/customer_writes", req)
end

local function callbacks()
  local status, body = standin.request("GET", "/_standin/callbacks")
  assert.are.equal(200, status, body)
  return cjson.decode(body)
end

-- Polls until fn() is true (at most 10 s: a bound, not a timing assertion).
local function eventually(what, fn)
  for _ = 1, 200 do
    if fn() then
      return
    end
    socket.sleep(0.05)
  end
  error("timed out waiting for " .. what .. "\n--- bot error.log ---\n" .. bot:error_log(), 2)
end

local function delivered_count(n)
  eventually(n .. " delivered message(s)", function()
    return #standin.delivered() >= n
  end)
end

local function answered(n)
  eventually(n .. " answered callback(s)", function()
    local list = callbacks()
    if #list < n then
      return false
    end
    for i = 1, n do
      if list[i].state == "pending" then
        return false
      end
    end
    return true
  end)
end

-- A callback record without the request it carried, after checking that request decrypts (signed with token,
-- default the bot's) to the event WeCom sends: "pull now, with this token".
local function checked(rec, token)
  local query = {}
  for name, value in rec.query:gmatch("([^&=]+)=([^&]*)") do
    query[name] = value:gsub("%%(%x%x)", function(h)
      return string.char(tonumber(h, 16))
    end)
  end
  local cb = callback.new{ token = token or TOKEN, encoding_aes_key = AES_KEY, corp_id = "wwCORP" }
  local event = assert(cb:decrypt_event(query, rec.body))
  assert.truthy(event.CreateTime:match("^%d+$"))
  event.CreateTime = nil
  assert.are.same({ ToUserName = "wwCORP", MsgType = "event", Event = "kf_msg_or_event", Token = rec.token,
    OpenKfId = rec.open_kfid }, event)
  rec.query, rec.body = nil, nil
  return rec
end

local function text(msgid, content, extra)
  local msg = { msgid = msgid, external_userid = CUSTOMER, msgtype = "text", text = { content = content } }
  for k, v in pairs(extra or {}) do
    msg[k] = v
  end
  return msg
end

local function enter_session(msgid, code)
  return { msgid = msgid, origin = 4, msgtype = "event", event = { event_type = "enter_session", open_kfid = KFID,
    external_userid = CUSTOMER, scene = "", welcome_code = code } }
end

local function reply(msgid, content, to)
  return { touser = to or CUSTOMER, open_kfid = KFID, msgid = msgid, msgtype = "text", text = { content = content } }
end

-- After the welcome on enter-1 (WELCOME-1), "hello" (text-1) and "still there?" (text-2), with a pull in between
-- that started over: the customer saw each reply once, and no send went out twice, not even one the stand-in
-- would have dropped by its msgid. Sends counted: 1 on event, 2 messages; pulls counted: 3.
local function each_reply_sent_once()
  assert.are.same({
    { code = "WELCOME-1", msgid = "re-enter-1", msgtype = "msgmenu", msgmenu = WELCOME },
    reply("re-text-1", "You said: hello"),
    reply("re-text-2", "You said: still there?"),
  }, standin.delivered())
  local counts = standin.counts()
  assert.are.same({ 1, 2, 3 }, { counts["/cgi-bin/kf/send_msg_on_event"], counts["/cgi-bin/kf/send_msg"],
    counts[SYNC] })
end

describe("examples/openresty/kf_bot #openresty", function()
  setup(function()
    standin.start()
    bot = bot_nginx.start{ port = PORT, workers = 2, base_url = standin.url(), token = TOKEN, aes_key = AES_KEY,
      servicer = "zhangsan" }
  end)

  teardown(function()
    if bot then
      bot:stop()
    end
    standin.stop()
  end)

  before_each(function()
    -- first the bot: its cursor and token live in its shared dict and would outlast the stand-in's reset, and a
    -- pull of the last spec still going on would reach into this one
    bot:restart()
    standin.reset()
  end)

  it("welcomes with the menu, echoes a text and names a tapped item, one callback and one pull each", function()
    assert.are.same({ ok = true, queued = 1, token = "standin-sync-token-1", callback = 1 },
      customer_writes({ enter_session("enter-1", "WELCOME-1") }))
    delivered_count(1)
    assert.are.same({ ok = true, queued = 2, token = "standin-sync-token-2", callback = 2 },
      customer_writes({ text("text-1", "你好, bot 👋") }))
    delivered_count(2)
    assert.are.same({ ok = true, queued = 3, token = "standin-sync-token-3", callback = 3 },
      customer_writes({ text("tap-1", "Opening hours", { text = { content = "Opening hours", menu_id = "hours" } }) }))
    delivered_count(3)

    assert.are.same({
      { code = "WELCOME-1", msgid = "re-enter-1", msgtype = "msgmenu", msgmenu = WELCOME },
      reply("re-text-1", "You said: 你好, bot 👋"),
      reply("re-tap-1", "You chose: Opening hours"),
    }, standin.delivered())
    -- each pull sends the token of its callback and resumes at the cursor the last one stored
    assert.are.same({
      { token = "standin-sync-token-1", open_kfid = KFID },
      { cursor = "SC1", token = "standin-sync-token-2", open_kfid = KFID },
      { cursor = "SC2", token = "standin-sync-token-3", open_kfid = KFID },
    }, standin.bodies(SYNC))
    answered(3)
    local list = callbacks()
    for i = 1, 3 do
      assert.are.same({ id = i, url = bot:url(), open_kfid = KFID, token = "standin-sync-token-" .. i,
        state = "answered", status = 200, answer = "success" }, checked(list[i]))
    end
    local counts = standin.counts()
    assert.are.same({ 1, 2, 1, 3 }, { counts["/cgi-bin/kf/send_msg_on_event"], counts["/cgi-bin/kf/send_msg"],
      counts["/cgi-bin/gettoken"], counts[SYNC] })
  end)

  it("hands a customer who types 人工 to the servicer and says so with the msg_code; then keeps quiet", function()
    standin.kf_account{ open_kfid = KFID, servicers = { "zhangsan" } }
    customer_writes({ text("human-1", " 人工 ") })
    delivered_count(1)
    assert.are.same({ { code = "standin-msg-code-1", msgid = "re-human-1", msgtype = "text",
      text = { content = "A person will answer you shortly." } } }, standin.delivered())
    assert.are.same({ 3, "zhangsan" }, { standin.session(KFID, CUSTOMER) })
    -- with a person now: the bot's echo is refused (95018), logged, and the customer sees nothing from it
    customer_writes({ text("text-9", "hello?") })
    eventually("the refused echo", function()
      return standin.counts()["/cgi-bin/kf/send_msg"] == 1
    end)
    answered(2)
    assert.are.equal(1, #standin.delivered())
    assert.are.same({ { open_kfid = KFID, external_userid = CUSTOMER, service_state = 3,
      servicer_userid = "zhangsan" } }, standin.bodies("/cgi-bin/kf/service_state/trans"))
  end)

  it("says no person is free when WeCom refuses the hand-over (95014: not a servicer of the account)", function()
    standin.kf_account{ open_kfid = KFID }
    customer_writes({ text("human-2", "人工") })
    delivered_count(1)
    assert.are.same({ reply("re-human-2", "Sorry, no person is free now. I am still here.") }, standin.delivered())
    assert.are.same({ 0, "" }, { standin.session(KFID, CUSTOMER) })
  end)

  it("acknowledges the callback before it pulls: answered while its sync_msg is still held", function()
    standin.script(SYNC, { delay = 60, until_released = true })
    customer_writes({ text("text-1", "hello") })
    -- the pull has reached the stand-in and waits there; the callback is answered all the same
    eventually("the held pull", function()
      return standin.counts()[SYNC] == 1
    end)
    answered(1)
    assert.are.same({ id = 1, url = bot:url(), open_kfid = KFID, token = "standin-sync-token-1", state = "answered",
      status = 200, answer = "success" }, checked(callbacks()[1]))
    assert.are.same({}, standin.delivered())
    assert.are.equal(1, standin.release())
    delivered_count(1)
    assert.are.same({ reply("re-text-1", "You said: hello") }, standin.delivered())
  end)

  it("answers a repeated callback with success and a pull that sends nothing again", function()
    customer_writes({ enter_session("enter-1", "WELCOME-1"), text("text-1", "hello") })
    delivered_count(2)
    assert.are.same({ ok = true, callback = 2 }, post("/_standin/callback_again", {}))
    answered(2)
    eventually("the second pull", function()
      return standin.counts()[SYNC] == 2
    end)
    -- a write after it: pulls are one at a time, so any reply of the repeated pull would come before this one's
    customer_writes({ text("text-2", "still there?") })
    delivered_count(3)

    each_reply_sent_once()
    assert.are.same({
      { token = "standin-sync-token-1", open_kfid = KFID },
      { cursor = "SC2", token = "standin-sync-token-1", open_kfid = KFID },
      { cursor = "SC2", token = "standin-sync-token-2", open_kfid = KFID },
    }, standin.bodies(SYNC))
    answered(3)
    assert.are.same({ id = 2, again = 1, url = bot:url(), open_kfid = KFID, token = "standin-sync-token-1",
      state = "answered", status = 200, answer = "success" }, checked(callbacks()[2]))
  end)

  it("shows the customer nothing twice when a pull starts over (the cursor lost with the bot's shared dict)", function()
    customer_writes({ enter_session("enter-1", "WELCOME-1"), text("text-1", "hello") })
    delivered_count(2)
    bot:restart()
    customer_writes()
    eventually("the replies sent again", function()
      local counts = standin.counts()
      return counts["/cgi-bin/kf/send_msg"] == 2 and counts["/cgi-bin/kf/send_msg_on_event"] == 2
    end)
    answered(2)
    -- sent again under the same msgids, which WeCom (and the stand-in) refuses as used: the bot takes that as
    -- "answered before", quietly
    assert.are.same({
      { code = "WELCOME-1", msgid = "re-enter-1", msgtype = "msgmenu", msgmenu = WELCOME },
      reply("re-text-1", "You said: hello"),
    }, standin.delivered())
    eventually("both refusals read", function()
      local _, n = bot:error_log():gsub("was answered before", "")
      return n == 2
    end)
    assert.is_nil(bot:error_log():find("not answered", 1, true))
    assert.are.same({
      { token = "standin-sync-token-1", open_kfid = KFID },
      { token = "standin-sync-token-2", open_kfid = KFID },
    }, standin.bodies(SYNC))
  end)

  it("answers kf_account_auth_change with several accounts in repeated elements: success, each account read", function()
    assert.are.same({ ok = true, callback = 1 }, post("/_standin/auth_change", { callback_url = bot:url(),
      token = TOKEN, encoding_aes_key = AES_KEY, add = { "wkNEW1", "wkNEW2" }, del = { "wkOLD" } }))
    answered(1)
    local rec = callbacks()[1]
    assert.are.same({ "answered", 200, "success" }, { rec.state, rec.status, rec.answer })
    -- what the bot got: the repeated element as an array, the single one as a string
    local query = {}
    for name, value in rec.query:gmatch("([^&=]+)=([^&]*)") do
      query[name] = value:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
    end
    local event = assert(callback.new{ token = TOKEN, encoding_aes_key = AES_KEY, corp_id = "wwCORP" }
      :decrypt_event(query, rec.body))
    assert.are.same({ { "wkNEW1", "wkNEW2" }, "wkOLD", "sys", "kf_account_auth_change" },
      { event.AuthAddOpenKfId, event.AuthDelOpenKfId, event.FromUserName, event.Event })
    eventually("the log line", function()
      return bot:error_log():find("KF accounts given to the app: wkNEW1, wkNEW2; taken: wkOLD", 1, true) ~= nil
    end)
    assert.are.same({}, standin.counts())
  end)

  it("answers WeCom's URL check with the decrypted echostr", function()
    assert.are.same({ ok = true, echo = "standin-echo-1", status = 200, answer = "standin-echo-1" },
      post("/_standin/verify_url", { callback_url = bot:url(), token = TOKEN, encoding_aes_key = AES_KEY }))
    assert.are.same({ ok = false, echo = "standin-echo-2", status = 403, answer = "forbidden\n" },
      post("/_standin/verify_url", { callback_url = bot:url(), token = "notTheBotsToken", encoding_aes_key = AES_KEY }))

    local cb = testing.new{ token = TOKEN, encoding_aes_key = AES_KEY, corp_id = "wwCORP" }
    local q = assert(cb:build_url_check("hello from the spec 你好"))
    local path = ("/wecom/kf?msg_signature=%s&timestamp=%s&nonce=%s&echostr=%s"):format(q.msg_signature,
      q.timestamp, q.nonce, (q.echostr:gsub("[^%w]", function(c) return ("%%%02X"):format(c:byte()) end)))
    assert.are.same({ 200, "hello from the spec 你好" }, { bot:request("GET", path) })
  end)

  it("refuses a callback with a bad signature (403) and pulls nothing for it", function()
    assert.are.same({ ok = true, queued = 1, token = "standin-sync-token-1", callback = 1 },
      customer_writes({ text("text-1", "hello") }, { token = "notTheBotsToken" }))
    answered(1)
    assert.are.same({ id = 1, url = bot:url(), open_kfid = KFID, token = "standin-sync-token-1",
      state = "answered", status = 403, answer = "forbidden\n" }, checked(callbacks()[1], "notTheBotsToken"))

    -- signed by someone else, straight to the bot; then one with no signature at all
    local other = testing.new{ token = "notTheBotsToken", encoding_aes_key = AES_KEY, corp_id = "wwCORP" }
    local req = assert(other:build_event_request({ ToUserName = "wwCORP", CreateTime = 1700000000, MsgType = "event",
      Event = "kf_msg_or_event", Token = "forged", OpenKfId = KFID }, { timestamp = 1700000000, nonce = "42" }))
    assert.are.same({ 403, "forbidden\n" }, { bot:request("POST", ("/wecom/kf?msg_signature=%s&timestamp=%s&nonce=%s")
      :format(req.query.msg_signature, req.query.timestamp, req.query.nonce), req.body) })
    assert.are.same({ 400, "bad request\n" }, { bot:request("POST", "/wecom/kf", req.body) })

    -- a good callback next: its pull is the only one, and finds the message the refused callback announced
    customer_writes()
    delivered_count(1)
    assert.are.same({ reply("re-text-1", "You said: hello") }, standin.delivered())
    assert.are.same({ { token = "standin-sync-token-2", open_kfid = KFID } }, standin.bodies(SYNC))
  end)

  it("answers every message once when callbacks arrive at both workers at once", function()
    local expected = {}
    for i = 1, 6 do
      customer_writes({ text("text-" .. i, "message " .. i, { external_userid = "wmC" .. i }) })
      expected[i] = reply("re-text-" .. i, "You said: message " .. i, "wmC" .. i)
    end
    delivered_count(6)
    answered(6)
    -- pulls take turns under the cursor's lock, each going on where the last one stopped: in order, once
    assert.are.same(expected, standin.delivered())
    assert.are.equal(6, standin.counts()["/cgi-bin/kf/send_msg"])
    for i, rec in ipairs(callbacks()) do
      assert.are.same({ i, 200, "success" }, { rec.id, rec.status, rec.answer })
    end
  end)

  it("leaves servicer, system and non-text messages alone, cuts a long echo and hashes a long msgid", function()
    local long_id = "from_msgid_4622416642169452483"   -- 30 bytes: "re-" .. it would be 33
    customer_writes({
      text("servicer-1", "a servicer writes", { origin = 5, servicer_userid = "zhangsan" }),
      { msgid = "image-1", external_userid = CUSTOMER, msgtype = "image", image = { media_id = "MEDIA" } },
      { msgid = "fail-1", origin = 4, msgtype = "event", event = { event_type = "msg_send_fail", open_kfid = KFID,
        external_userid = CUSTOMER, fail_msgid = "x", fail_type = 4 } },
      text(long_id, ("中"):rep(682) .. "ab"),
    })
    delivered_count(1)
    answered(1)
    customer_writes({ text("text-2", "done?") })
    delivered_count(2)
    -- 2048 bytes at most: "You said: " (10) and 679 whole characters of 3 bytes (2037), not 2038 cut mid-character
    assert.are.same({
      reply("re-" .. core.sha1_hex(long_id):sub(1, 29), "You said: " .. ("中"):rep(679)),
      reply("re-text-2", "You said: done?"),
    }, standin.delivered())
    local counts = standin.counts()
    assert.are.same({ 2, 2 }, { counts["/cgi-bin/kf/send_msg"], counts[SYNC] })
  end)
end)

describe("examples/openresty/kf_bot with its cursor in Redis (KF_BOT_REDIS) #openresty", function()
  local REDIS_PORT = 16397
  local CURSOR = "wechat:kf:cursor:wwCORP:" .. KFID
  local server

  -- Waits until the bot's last pull is over: its lock gone from Redis and its closing line in the log.
  local function pulled(n_messages)
    eventually("a pull of " .. n_messages .. " message(s)", function()
      return server:call("EXISTS", CURSOR .. ":lock") == 0
        and bot:error_log():find("kf_bot: pulled %d+ page%(s%), " .. n_messages .. " message%(s%)") ~= nil
    end)
  end

  setup(function()
    standin.start()
    server = redis.start(REDIS_PORT)
    bot = bot_nginx.start{ port = PORT + 10, workers = 2, base_url = standin.url(), token = TOKEN, aes_key = AES_KEY,
      redis = "127.0.0.1:" .. REDIS_PORT }
  end)

  teardown(function()
    if bot then
      bot:stop()
    end
    if server then
      server:stop()
    end
    standin.stop()
  end)

  before_each(function()
    bot:restart()
    standin.reset()
    server:flush()
  end)

  it("repeats no reply after nginx is stopped and started again: the cursor outlives it", function()
    customer_writes({ enter_session("enter-1", "WELCOME-1"), text("text-1", "hello") })
    delivered_count(2)
    pulled(2)
    assert.are.equal("0:SC2", server:call("GET", CURSOR))

    bot:stop()
    bot:start()
    -- WeCom calls again (its retry, or another event): the new nginx pulls from the stored cursor
    customer_writes()
    answered(2)
    pulled(0)
    customer_writes({ text("text-2", "still there?") })
    delivered_count(3)
    pulled(1)

    each_reply_sent_once()
    assert.are.same({
      { token = "standin-sync-token-1", open_kfid = KFID },
      { cursor = "SC2", token = "standin-sync-token-2", open_kfid = KFID },
      { cursor = "SC2", token = "standin-sync-token-3", open_kfid = KFID },
    }, standin.bodies(SYNC))
    assert.are.equal("0:SC3", server:call("GET", CURSOR))
  end)

  it("shows the customer one reply when the bot is killed between its reply and the cursor write", function()
    -- the reply reaches WeCom and is held there until the bot is dead: no answer, so no cursor write
    standin.script("/cgi-bin/kf/send_msg", { delay = 60, until_released = true })
    customer_writes({ text("text-1", "hello") })
    eventually("the held reply", function()
      return standin.counts()["/cgi-bin/kf/send_msg"] == 1
    end)
    bot:kill()
    assert.are.equal(1, standin.release())
    delivered_count(1)
    assert.is_nil(server:call("GET", CURSOR))
    -- the dead pull's lock runs out (its ttl, here at once)
    server:call("DEL", CURSOR .. ":lock")

    bot:start()
    customer_writes() -- WeCom calls again: the pull starts where the cursor is, before text-1
    pulled(1)
    assert.are.same({ reply("re-text-1", "You said: hello") }, standin.delivered())
    assert.are.same({ "re-text-1", "re-text-1" }, { standin.bodies("/cgi-bin/kf/send_msg")[1].msgid,
      standin.bodies("/cgi-bin/kf/send_msg")[2].msgid })
    assert.truthy(bot:error_log():find("message text-1 was answered before", 1, true))
    assert.is_nil(bot:error_log():find("not answered", 1, true))
    assert.are.equal("0:SC1", server:call("GET", CURSOR))
  end)

  it("refuses to start with a malformed KF_BOT_REDIS, naming it", function()
    bot:stop()
    local ok, err = pcall(bot_nginx.start, { port = PORT + 10, workers = 2, base_url = standin.url(), token = TOKEN,
      aes_key = AES_KEY, redis = "127.0.0.1" })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("kf_bot: redis is not host:port or host:port/db (environment KF_BOT_REDIS)", 1,
      true), tostring(err))
    bot:start()
  end)
end)
