--- WeCom customer service (微信客服, KF) messages: the operations of the reference module
-- `WeChat.Work.KF.Message`, with the same names and argument order, `opts` last.
--
-- Every function checks its arguments at once (a wrong one raises `bad argument #N to 'name' (...)`), has the
-- body written by `wechat.core` in C, and posts it with the client's access token. It returns WeCom's decoded
-- answer (`{ errcode = 0, errmsg = "ok", msgid = "..." }`, or the sync_msg page), or `nil, err` on a run-time
-- failure (see `wechat.work.errors`).
local core = require "wechat.core"
local check_client_and_agent = require("wechat.work.kf.operations").check_client_and_agent

local pairs = pairs

local M = {}

local SEND_MSG = "/cgi-bin/kf/send_msg"
local SEND_MSG_ON_EVENT = "/cgi-bin/kf/send_msg_on_event"
local SYNC_MSG = "/cgi-bin/kf/sync_msg"

-- One row an operation: its WeCom path. The body builder is `core[name]`, which takes the same arguments.
local OPERATIONS = {
  --- send_message(client, agent, body): posts `body` (any table, see README "Raw bodies") to send_msg.
  --- send_message(client, agent, to, open_kfid, msgtype, msg, opts): `msg` under `msgtype`, checked by the
  -- rules of that type when it is one we know.
  send_message = SEND_MSG,
  --- send_text(client, agent, to, open_kfid, content, opts): text, 1..2048 bytes.
  send_text = SEND_MSG,
  --- send_image(client, agent, to, open_kfid, media_id, opts)
  send_image = SEND_MSG,
  --- send_voice(client, agent, to, open_kfid, media_id, opts)
  send_voice = SEND_MSG,
  --- send_video(client, agent, to, open_kfid, media_id, title, description, opts): title and description are
  -- accepted for compatibility with the reference library (strings or nil) and not sent: WeCom's video object is
  -- `{ media_id }` only.
  send_video = SEND_MSG,
  --- send_file(client, agent, to, open_kfid, media_id, opts)
  send_file = SEND_MSG,
  --- send_link(client, agent, to, open_kfid, msg, opts): msg `{ title, desc, url, thumb_media_id }`
  -- (`wechat.work.kf.link` builds it).
  send_link = SEND_MSG,
  --- send_mini_program(client, agent, to, open_kfid, msg, opts): msg `{ appid, title, thumb_media_id, pagepath }`.
  send_mini_program = SEND_MSG,
  --- send_menu(client, agent, to, open_kfid, msg, opts): msg `{ head_content, list, tail_content }`
  -- (`wechat.work.kf.menu` builds it).
  send_menu = SEND_MSG,
  --- send_location(client, agent, to, open_kfid, msg, opts): msg `{ name, address, latitude, longitude }`.
  send_location = SEND_MSG,
  --- send_msg_on_event(client, agent, code, on_event_msg_type, msg, msg_id): answers an event code (e.g. the
  -- welcome_code of enter_session) with "text" or "msgmenu"; posts the documented body.
  send_msg_on_event = SEND_MSG_ON_EVENT,
  --- send_text_on_event(client, agent, code, content, msg_id)
  send_text_on_event = SEND_MSG_ON_EVENT,
  --- send_menu_on_event(client, agent, code, msg, msg_id)
  send_menu_on_event = SEND_MSG_ON_EVENT,
  --- sync_msg(client, agent, opts): one page of customer messages; opts `{ cursor, token, limit, voice_format,
  -- open_kfid }`, all optional.
  sync_msg = SYNC_MSG,
}

-- Pulling a page again with the same cursor gives the same page: sync_msg may always be retried. A send may
-- be retried when it carries a msgid (the builder returns it), since WeCom delivers a msgid once and refuses it
-- after: that refusal of a retry is the first try's success (`res.duplicate`, see `Client:post`).
local ALWAYS_IDEMPOTENT = { sync_msg = true }

for name, path in pairs(OPERATIONS) do
  local build = core[name]
  local always = ALWAYS_IDEMPOTENT[name] or false
  M[name] = function(client, agent, ...)
    check_client_and_agent(name, client, agent)
    local body, msgid = build(client, agent, ...)
    return client:post(agent, path, body, name, always or msgid ~= nil, msgid)
  end
end

M.sync_all = require("wechat.work.kf.sync").sync_all

--- The names of the operations above that post one request each (what `batch` accepts), as a set.
M.OPERATIONS = {}
for name in pairs(OPERATIONS) do
  M.OPERATIONS[name] = true
end

--- batch(client, agent, calls[, opts]): many of the operations above at once; see `wechat.work.kf.batch`.
M.batch = require("wechat.work.kf.batch").batch

return M
