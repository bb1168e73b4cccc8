-- Every public KF operation once, with the exact body the WeCom stand-in must receive and the exact answer the
-- caller must get back. Written once, run by more than one spec: inside nginx (spec/openresty, cosocket
-- transport) and, when wanted, under Lua 5.4 and LuaJIT (curl transport). Each spec resets the stand-in before a
-- case, so codes and msgids are used once each.
--
-- The media_ids in the cases are placeholders (M.MEDIA): WeCom refuses a media_id it never issued, so a spec
-- uploads media of each type through the stand-in and the case's arguments and body take those ids.
--
--   local cases = require "helpers.kf_cases"
--   for _, c in ipairs(cases) do
--     local ids = cases.media_ids(c, standin.media_id)
--     local res, err = kf[c.op](client, cases.AGENT, cases.args(c, ids))
--     -- assert.same(c.result, res); assert.same({ cases.body(c, ids) }, standin.bodies(c.path))
--   end
local unpack = table.unpack or unpack -- luacheck: ignore 143
local select, type, pairs = select, type, pairs

local SEND_MSG = "/cgi-bin/kf/send_msg"
local SEND_MSG_ON_EVENT = "/cgi-bin/kf/send_msg_on_event"
local SYNC_MSG = "/cgi-bin/kf/sync_msg"

local M = {}

M.AGENT = "kf"           -- the agent name the specs give the KF secret
M.TO = "wmCUSTOMER01"    -- external_userid of the customer
M.KFID = "wkKF01"        -- open_kfid of the KF account

-- The media_id placeholders of the cases and the type of media each stands for.
M.MEDIA = {
  MEDIA_IMG = "image", MEDIA_IMG2 = "image", MEDIA_T = "image", MEDIA_M = "image",
  MEDIA_VOICE = "voice", MEDIA_VIDEO = "video", MEDIA_VIDEO2 = "video", MEDIA_FILE = "file",
}

local function ok(msgid)
  return { errcode = 0, errmsg = "ok", msgid = msgid }
end

-- One case: `name`, `op` (function of wechat.work.kf.message), its arguments after client and agent (`n` of
-- them, nils included), the `path` it posts to, the decoded `body` the stand-in sees and the decoded `result`.
local function case(name, op, path, body, result, ...)
  return { name = name, op = op, path = path, body = body, result = result, n = select("#", ...), ... }
end

local TO, KFID = M.TO, M.KFID

local MENU = {
  head_content = "您对本次服务是否满意？",
  list = {
    { type = "click", click = { id = "101", content = "满意 👍" } },
    { type = "view", view = { url = "https://example.com/rate?x=1&y=2", content = "去评价" } },
    { type = "miniprogram", miniprogram = { appid = "wx123456", pagepath = "pages/rate", content = "小程序" } },
    { type = "text", text = { content = "或者直接回复", no_newline = 1 } },
  },
  tail_content = "谢谢 🙏",
}

local LINK = { title = "退货说明", desc = "七天无理由", url = "https://example.com/return", thumb_media_id = "MEDIA_T" }
local MINI = { appid = "wx123456", title = "查看订单", thumb_media_id = "MEDIA_M", pagepath = "pages/order?id=7" }
-- WeCom marks miniprogram.title and msgmenu's head_content, list and tail_content optional ("否").
local MINI_NO_TITLE = { appid = "wx123456", thumb_media_id = "MEDIA_M", pagepath = "pages/order?id=8" }
local MENU_HEAD_ONLY = { head_content = "稍等，马上为您转人工" }
local LOCATION = { name = "广州塔", address = "广州市海珠区阅江西路222号", latitude = 23.106, longitude = 113.324 }

local function send(msgid, msgtype, msg)
  return { touser = TO, open_kfid = KFID, msgid = msgid, msgtype = msgtype, [msgtype] = msg }
end

local function on_event(code, msgid, msgtype, msg)
  return { code = code, msgid = msgid, msgtype = msgtype, [msgtype] = msg }
end

M.cases = {
  case("send_text", "send_text", SEND_MSG,
    send("c01", "text", { content = "你好，客服 👋🏻 \"quoted\" \\ back\nnew line" }), ok("c01"),
    TO, KFID, "你好，客服 👋🏻 \"quoted\" \\ back\nnew line", { msgid = "c01" }),
  case("send_image", "send_image", SEND_MSG,
    send("c02", "image", { media_id = "MEDIA_IMG" }), ok("c02"),
    TO, KFID, "MEDIA_IMG", { msgid = "c02" }),
  case("send_voice", "send_voice", SEND_MSG,
    send("c03", "voice", { media_id = "MEDIA_VOICE" }), ok("c03"),
    TO, KFID, "MEDIA_VOICE", { msgid = "c03" }),
  -- title and description are the reference library's arguments, accepted and not sent: WeCom's video is media_id
  case("send_video with title and description", "send_video", SEND_MSG,
    send("c04", "video", { media_id = "MEDIA_VIDEO" }), ok("c04"),
    TO, KFID, "MEDIA_VIDEO", "安装视频", "三分钟", { msgid = "c04" }),
  case("send_video without title", "send_video", SEND_MSG,
    send("c05", "video", { media_id = "MEDIA_VIDEO2" }), ok("c05"),
    TO, KFID, "MEDIA_VIDEO2", nil, nil, { msgid = "c05" }),
  case("send_file", "send_file", SEND_MSG,
    send("c06", "file", { media_id = "MEDIA_FILE" }), ok("c06"),
    TO, KFID, "MEDIA_FILE", { msgid = "c06" }),
  case("send_link", "send_link", SEND_MSG,
    send("c07", "link", LINK), ok("c07"),
    TO, KFID, LINK, { msgid = "c07" }),
  case("send_mini_program", "send_mini_program", SEND_MSG,
    send("c08", "miniprogram", MINI), ok("c08"),
    TO, KFID, MINI, { msgid = "c08" }),
  case("send_mini_program without title", "send_mini_program", SEND_MSG,
    send("c17", "miniprogram", MINI_NO_TITLE), ok("c17"),
    TO, KFID, MINI_NO_TITLE, { msgid = "c17" }),
  case("send_menu with head only", "send_menu", SEND_MSG,
    send("c18", "msgmenu", MENU_HEAD_ONLY), ok("c18"),
    TO, KFID, MENU_HEAD_ONLY, { msgid = "c18" }),
  case("send_menu_on_event with head only", "send_menu_on_event", SEND_MSG_ON_EVENT,
    on_event("WELCOME_CODE_5", "c19", "msgmenu", MENU_HEAD_ONLY), ok("c19"),
    "WELCOME_CODE_5", MENU_HEAD_ONLY, "c19"),
  case("send_menu", "send_menu", SEND_MSG,
    send("c09", "msgmenu", MENU), ok("c09"),
    TO, KFID, MENU, { msgid = "c09" }),
  case("send_location", "send_location", SEND_MSG,
    send("c10", "location", LOCATION), ok("c10"),
    TO, KFID, LOCATION, { msgid = "c10" }),
  case("send_message with a whole body", "send_message", SEND_MSG,
    send("c11", "text", { content = "raw body" }), ok("c11"),
    { touser = TO, open_kfid = KFID, msgid = "c11", msgtype = "text", text = { content = "raw body" } }),
  case("send_message with msgtype and msg", "send_message", SEND_MSG,
    send("c12", "image", { media_id = "MEDIA_IMG2" }), ok("c12"),
    TO, KFID, "image", { media_id = "MEDIA_IMG2" }, { msgid = "c12" }),
  case("send_msg_on_event text", "send_msg_on_event", SEND_MSG_ON_EVENT,
    on_event("WELCOME_CODE_1", "c13", "text", { content = "欢迎光临" }), ok("c13"),
    "WELCOME_CODE_1", "text", { content = "欢迎光临" }, "c13"),
  case("send_msg_on_event msgmenu", "send_msg_on_event", SEND_MSG_ON_EVENT,
    on_event("WELCOME_CODE_2", "c14", "msgmenu", MENU), ok("c14"),
    "WELCOME_CODE_2", "msgmenu", MENU, "c14"),
  case("send_text_on_event", "send_text_on_event", SEND_MSG_ON_EVENT,
    on_event("WELCOME_CODE_3", "c15", "text", { content = "您好！" }), ok("c15"),
    "WELCOME_CODE_3", "您好！", "c15"),
  case("send_menu_on_event", "send_menu_on_event", SEND_MSG_ON_EVENT,
    on_event("WELCOME_CODE_4", "c16", "msgmenu", MENU), ok("c16"),
    "WELCOME_CODE_4", MENU, "c16"),
  -- the token of a callback the stand-in sent (the case's setup), as WeCom takes no other
  case("sync_msg with every option", "sync_msg", SYNC_MSG,
    { cursor = "SC0", token = "standin-sync-token-1", limit = 100, voice_format = 1, open_kfid = KFID },
    { errcode = 0, errmsg = "ok", next_cursor = "SC0", has_more = 0, msg_list = {} },
    { cursor = "SC0", token = "standin-sync-token-1", limit = 100, voice_format = 1, open_kfid = KFID }),
  case("sync_msg without options", "sync_msg", SYNC_MSG,
    {}, { errcode = 0, errmsg = "ok", next_cursor = "SC0", has_more = 0, msg_list = {} }),
}

-- What a case needs of the stand-in before it runs (after a reset): setup(standin).
for _, c in ipairs(M.cases) do
  if c.name == "sync_msg with every option" then
    c.setup = function(standin)
      assert(standin.sync_token(KFID) == "standin-sync-token-1")
    end
  elseif c.path == SEND_MSG_ON_EVENT then
    -- WeCom takes only a code it issued: the event's welcome code, issued under the case's name for it
    c.setup = function(standin)
      assert(standin.welcome_code(c.body.code) == c.body.code)
    end
  end
end

-- v with every media placeholder replaced by ids[placeholder] (tables copied, v itself left alone); each placeholder
-- met is passed to seen.
local function with_media(v, ids, seen)
  if type(v) == "string" and M.MEDIA[v] then
    if seen then
      seen(v)
    end
    return ids and ids[v] or v
  elseif type(v) ~= "table" then
    return v
  end
  local copy = {}
  for k, item in pairs(v) do
    copy[k] = with_media(item, ids, seen)
  end
  return copy
end

--- { placeholder = media_id } for the placeholders case `c` uses, each id from issue(type) (standin.media_id).
function M.media_ids(c, issue)
  local ids = {}
  with_media(c.body, nil, function(placeholder)
    ids[placeholder] = issue(M.MEDIA[placeholder])
  end)
  return ids
end

--- The arguments of case `c` after client and agent, nils included, the media placeholders replaced by ids.
function M.args(c, ids)
  local args = with_media({ unpack(c, 1, c.n) }, ids)
  return unpack(args, 1, c.n)
end

--- The decoded body the stand-in must see for case `c`, the media placeholders replaced by ids.
function M.body(c, ids)
  return with_media(c.body, ids)
end

--- Finds a case by name.
function M.find(name)
  for _, c in ipairs(M.cases) do
    if c.name == name then
      return c
    end
  end
  return nil
end

return M
