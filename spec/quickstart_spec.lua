-- examples/quickstart.lua, run as a user runs it (a child interpreter), against the stand-in: as the stand-in demo
-- (tools/demo), every message type; set up as against WeCom (WECOM_CORP_ID given), only what WeCom's rules allow:
-- at most 5 messages to the customer who wrote last, within 48 hours of it, the welcome code only while it lives,
-- and no media type without a media id from the environment.
local cjson = require "cjson"
local standin = require "helpers.standin"
local interpreter = require "helpers.interpreter"

local SEND_MSG = "/cgi-bin/kf/send_msg"
local SEND_MSG_ON_EVENT = "/cgi-bin/kf/send_msg_on_event"
local KFID = "wkDEMO"

local shell_quote = require("helpers.shell").quote

-- Runs the example with env (a table); returns its exit code and output.
local function quickstart(env)
  local cpath = rawget(_G, "jit") and "build/jit/?.so" or "build/5.4/?.so"
  local words = { "env", "LUA_PATH='lua/?.lua;;'", "LUA_CPATH=" .. shell_quote(cpath .. ";;"),
                  "WECOM_BASE_URL=" .. shell_quote(standin.url()) }
  for name, value in pairs(env) do
    words[#words + 1] = name .. "=" .. shell_quote(value)
  end
  local p = assert(io.popen(table.concat(words, " ") .. " " .. interpreter.command()
    .. " examples/quickstart.lua 2>&1; echo \"rc=$?\""))
  local out = p:read("*a")
  p:close()
  local text, code = out:match("^(.*)rc=(%d+)%s*$")
  return tonumber(code), text
end

-- A customer who entered the session and wrote `age` seconds ago.
local function conversation(age)
  local t = os.time() - age
  standin.sync{ page_size = 10, messages = {
    { msgid = "c-1", open_kfid = KFID, external_userid = "wmBOB", send_time = t - 1, origin = 4, msgtype = "event",
      event = { event_type = "enter_session", open_kfid = KFID, external_userid = "wmBOB", welcome_code = "W-BOB" } },
    { msgid = "c-2", open_kfid = KFID, external_userid = "wmBOB", send_time = t, origin = 3, msgtype = "text",
      text = { content = "hello?" } },
  } }
end

local AS_WECOM = { WECOM_CORP_ID = standin.CORPID, WECOM_KF_SECRET = standin.KF_SECRET, WECOM_OPEN_KFID = KFID }

local function with(extra)
  local env = {}
  for k, v in pairs(AS_WECOM) do
    env[k] = v
  end
  for k, v in pairs(extra or {}) do
    env[k] = v
  end
  return env
end

-- msgtype and media id (or content, title) of each message posted to send_msg (`delivered`: only those the
-- stand-in delivered, which also holds send_msg_on_event's), in order
local function sent(delivered)
  local out = {}
  for _, body in ipairs(delivered and standin.delivered() or standin.bodies(SEND_MSG)) do
    if body.code then
      assert.equal("W-BOB", body.code) -- send_msg_on_event's welcome
    else
      assert.equal("wmBOB", body.touser)
    end
    local m = body[body.msgtype]
    out[#out + 1] = body.msgtype .. " " .. tostring(m.media_id or m.thumb_media_id or m.content or m.title
      or m.head_content or m.name)
  end
  return out
end

describe("examples/quickstart.lua", function()
  setup(standin.start)
  before_each(standin.reset)

  it("as the stand-in demo, posts every message type, and the stand-in delivers the first 5", function()
    conversation(5)
    -- media ids the stand-in issued, as WeCom takes no other (40007)
    local image, voice = standin.media_id("image"), standin.media_id("voice")
    local video, file = standin.media_id("video"), standin.media_id("file")
    local code, out = quickstart{ WECOM_MEDIA_THUMB = image, WECOM_MEDIA_IMAGE = image, WECOM_MEDIA_VOICE = voice,
                                  WECOM_MEDIA_VIDEO = video, WECOM_MEDIA_FILE = file }
    assert.equal(0, code, out)
    assert.same({ "text 您的包裹已发出 🚚", "msgmenu Was this helpful?", "location Pick-up point", "link " .. image,
      "image " .. image, "miniprogram " .. image, "video " .. video, "file " .. file,
      "voice " .. voice, "text Raw send_message/7" }, sent())
    -- WeCom's rule, kept by the stand-in: 5 messages after the customer's; the welcome (send_msg_on_event) is apart
    assert.same({ "msgmenu 欢迎！What can we do for you?", "text 您的包裹已发出 🚚", "msgmenu Was this helpful?",
      "location Pick-up point", "link " .. image, "image " .. image }, sent(true))
    assert.equal(5, select(2, out:gsub("api error 95001", "")), out)
    assert.equal(1, standin.counts()[SEND_MSG_ON_EVENT])
  end)

  it("as against WeCom, sends no media type without a media id from the environment", function()
    conversation(5)
    local code, out = quickstart(with())
    assert.equal(0, code, out)
    assert.same({ "text 您的包裹已发出 🚚", "msgmenu Was this helpful?", "location Pick-up point",
      "text Raw send_message/7" }, sent())
    local welcome = standin.bodies(SEND_MSG_ON_EVENT)
    -- the msgid the client made (auto_msgid), so that the welcome may be retried safely
    assert.truthy(welcome[1].msgid:find("^[0-9a-f]+$"))
    welcome[1].msgid = nil
    assert.same({ { code = "W-BOB", msgtype = "msgmenu", msgmenu = cjson.decode(cjson.encode(
      require("wechat.work.kf.menu").new("欢迎！What can we do for you?"):click("track", "Track my order")
        :click("human", "Talk to a person"):tail("We answer within a minute."):build())) } }, welcome)
  end)

  it("as against WeCom, sends at most 5 messages, with the media ids given", function()
    conversation(5)
    local image, file = standin.media_id("image"), standin.media_id("file")
    local code, out = quickstart(with{ WECOM_MEDIA_THUMB = image, WECOM_MEDIA_IMAGE = image,
                                       WECOM_MEDIA_FILE = file, WECOM_MINIPROGRAM_APPID = "wxREAL" })
    assert.equal(0, code, out)
    assert.same({ "text 您的包裹已发出 🚚", "msgmenu Was this helpful?", "location Pick-up point",
      "link " .. image, "image " .. image }, sent())
    assert.truthy(out:find("(at most 5 messages)", 1, true), out)
  end)

  it("as against WeCom, sends nothing 48 hours after the customer wrote, nor on an expired welcome code", function()
    conversation(48 * 3600 + 60)
    local code, out = quickstart(with())
    assert.equal(0, code, out)
    assert.same({}, sent())
    assert.is_nil(standin.counts()[SEND_MSG_ON_EVENT])
    assert.truthy(out:find("wmBOB last wrote more than 48 hours ago", 1, true), out)
  end)

  it("as against WeCom, says what it needs when a setting is missing", function()
    local code, out = quickstart{ WECOM_CORP_ID = standin.CORPID }
    assert.equal(2, code)
    assert.equal("against WeCom, set WECOM_CORP_ID, WECOM_KF_SECRET and WECOM_OPEN_KFID\n", out)
    assert.same({}, standin.counts())
  end)
end)
