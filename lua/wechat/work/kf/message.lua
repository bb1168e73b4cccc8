--- WeCom customer service (微信客服, KF) messages: the operations of the reference module
-- `WeChat.Work.KF.Message`, with the same names and argument order, `opts` last.
--
-- Every function checks its arguments at once (a wrong one raises `bad argument #N to 'name' (...)`), has the
-- body written by `wechat.core` in C, and posts it with the client's access token. It returns WeCom's decoded
-- answer (`{ errcode = 0, errmsg = "ok", msgid = "..." }`, or the sync_msg page), or `nil, err` on a run-time
-- failure (see `wechat.work.errors`).
local core = require "wechat.core"
local check_client_and_agent = require("wechat.work.kf.operations").check_client_and_agent
local window = require "wechat.work.kf.window"

local error, next, pairs, select, tostring, type = error, next, pairs, select, tostring, type
local format = string.format
local pack = table.pack or function(...) return { n = select("#", ...), ... } end
local unpack = table.unpack or unpack -- luacheck: ignore 143

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

-- Where each send_msg operation takes its opts, counting from `to` (argument #3); send_message's raw form
-- (a body table) takes them right after the body.
local OPTS_AT = {
  send_message = 5, send_text = 4, send_image = 4, send_voice = 4, send_video = 6, send_file = 4, send_link = 4,
  send_mini_program = 4, send_menu = 4, send_location = 4,
}

local function is_raw(name, first, ...)
  return name == "send_message" and type(first) == "table" and select("#", ...) <= 1
end

-- opts.force (a key of ours, not of the body): whether it is true, and opts without it (nil when nothing is left).
-- Raises at the caller of the public function (level 4: strip_force, send_args, the operation, its caller).
local function strip_force(name, argn, opts)
  local force = opts.force
  if type(force) ~= "boolean" then
    error(format("bad argument #%d to '%s' (opts.force: boolean expected, got %s)", argn, name, type(force)), 4)
  end
  local copy = {}
  for k, v in pairs(opts) do
    if k ~= "force" then
      copy[k] = v
    end
  end
  return force, next(copy) ~= nil and copy or nil
end

-- The arguments of a send_msg operation with opts.force taken out: force, to, open_kfid, and the arguments for the
-- builder when they are not the ones given (nil: pass those as they are). Raises at the caller of the public
-- function on a wrong opts.force, or wrong opts of the raw form. The builder itself is called by the public
-- function, so that its argument errors point at that function's caller too.
local function send_args(name, ...)
  if is_raw(name, ...) then
    local given, opts = ...
    local force = false
    if opts ~= nil then
      if type(opts) ~= "table" then
        error(format("bad argument #4 to '%s' (opts: table expected, got %s)", name, type(opts)), 3)
      end
      local rest = opts
      if opts.force ~= nil then
        force, rest = strip_force(name, 4, opts)
      end
      if rest and next(rest) ~= nil then
        error(format("bad argument #4 to '%s' (opts: unknown option '%s')", name, tostring(next(rest))), 3)
      end
    end
    -- the builder takes the body alone: opts, if any, stay here
    return force, given.touser, given.open_kfid, opts ~= nil and { n = 1, given } or nil
  end
  local opts_at = OPTS_AT[name]
  local opts = select(opts_at, ...)
  local to, open_kfid = ...
  if type(opts) == "table" and opts.force ~= nil then
    local args = pack(...)
    local force
    force, args[opts_at] = strip_force(name, opts_at + 2, opts)
    return force, to, open_kfid, args
  end
  return false, to, open_kfid, nil
end

-- A send_msg operation: the window tracker (when the client has one) sees it before and after it goes.
local function send_operation(name, build, path)
  return function(client, agent, ...)
    check_client_and_agent(name, client, agent)
    local force, to, open_kfid, args = send_args(name, ...)
    local body, msgid
    if args then
      body, msgid = build(client, agent, unpack(args, 1, args.n))
    else
      body, msgid = build(client, agent, ...)
    end
    if not client.window then
      return client:post(agent, path, body, name, msgid ~= nil, msgid)
    end
    local ticket, err = window.before_send(client, open_kfid, to, force, name)
    if ticket == nil then
      return nil, err
    end
    local res
    res, err = client:post(agent, path, body, name, msgid ~= nil, msgid)
    window.after_send(ticket, res, err)
    return res, err
  end
end

for name, path in pairs(OPERATIONS) do
  local build = core[name]
  local always = ALWAYS_IDEMPOTENT[name] or false
  if path == SEND_MSG then
    M[name] = send_operation(name, build, path)
  else
    M[name] = function(client, agent, ...)
      check_client_and_agent(name, client, agent)
      local body, msgid = build(client, agent, ...)
      local res, err = client:post(agent, path, body, name, always or msgid ~= nil, msgid)
      if res and path == SYNC_MSG and client.window then
        window.observe(client, res)
      end
      return res, err
    end
  end
end

M.sync_all = require("wechat.work.kf.sync").sync_all

--- The names of the operations above that post one request each (what `batch` accepts), as a set.
M.OPERATIONS = {}
for name in pairs(OPERATIONS) do
  M.OPERATIONS[name] = true
end

--- Checks the arguments of operation `name` as the operation itself does (raising the same error), without
-- sending anything: `batch` checks every call with it before the first goes out.
function M.check_arguments(name, client, agent, ...)
  local build = core[name]
  local args = OPERATIONS[name] == SEND_MSG and select(4, send_args(name, ...))
  if args then
    build(client, agent, unpack(args, 1, args.n))
  else
    build(client, agent, ...)
  end
end

--- batch(client, agent, calls[, opts]): many of the operations above at once; see `wechat.work.kf.batch`.
M.batch = require("wechat.work.kf.batch").batch

return M
