--- kf_bot: a WeCom customer-service (微信客服, KF) bot for OpenResty, on lua-wechat-work.
--
-- WeCom calls the bot's callback URL; the bot
--   * answers the URL check (GET with an echostr) with the decrypted echostr;
--   * on an event (POST), checks the signature, decrypts it and answers "success" at once: WeCom wants an answer
--     within 5 seconds and sends the event again otherwise. A `kf_msg_or_event` ("pull now, with this token")
--     starts a timer that does the pulling, after the answer is on its way;
--   * pulls with `kf.sync_all` (the cursor under its lock, so two workers or two events never pull the same
--     pages) and answers each message: the welcome menu on `enter_session`, "You chose: <item>" for a menu tap,
--     "You said: <text>" for any other text; an image a customer sends is downloaded to the media directory
--     (`<nginx prefix>/media/<msgid>.<ext>`); the rest is logged and left alone;
--   * hands a customer who types "人工" to a person: `service_state.trans` to 3 (human) with the servicer of the
--     setting `servicer` (environment KF_BOT_SERVICER), and says so with the msg_code that returns (from then on
--     WeCom would refuse the bot's own messages in that session, 95018: the window tracker, which saw the trans,
--     holds them back and the log says so). Without a servicer, or when WeCom refuses the move, the bot says no
--     person is free and goes on answering.
-- Where the cursor lives (setting `redis`, environment KF_BOT_REDIS):
--   * unset: in the lua_shared_dict. It survives a reload (HUP) and a crashed worker, not a stop and start of
--     nginx: then the next pull starts from the very first message WeCom still holds, and the replies go out
--     again (under the same msgids, so customers see each one once).
--   * "host:port" or "host:port/db" (an IP address, or add a `resolver` to nginx.conf): in that Redis (password
--     from KF_BOT_REDIS_PASSWORD), cursor and lock. It survives restarts of nginx and of the machine (as far as
--     Redis keeps its data), and several nginx on several machines can share it: one pulls at a time.
-- Each reply carries a msgid made from the customer's msgid, so a message pulled twice (after a crash, or when a
-- send failed and the pull stopped) can never reach the customer twice: WeCom refuses a msgid it has delivered.
-- That refusal (err.reason "duplicate_msgid") means the reply went out before: the message is done, quietly.
-- The client tracks each customer's window (`window = true`, in the lua_shared_dict: about 400 bytes a customer,
-- so 1m holds some 2,500; size the dict for your customers): a reply WeCom would refuse (5 already sent since the
-- customer's last message, 48 hours passed, or a person has the session) is not sent, and the log says why.
--
-- nginx.conf (see nginx.conf next to this file):
--   env WECOM_CORP_ID; env WECOM_KF_SECRET; env WECOM_CALLBACK_TOKEN; env WECOM_CALLBACK_AES_KEY;
--   env WECOM_BASE_URL; env KF_BOT_REDIS; env KF_BOT_REDIS_PASSWORD; env KF_BOT_SERVICER;
--   http { lua_shared_dict kf_bot 1m;
--          init_worker_by_lua_block { require("kf_bot.bot").setup() }
--          server { location = /wecom/kf { content_by_lua_block { require("kf_bot.bot").handle() } } } }
-- luacheck: globals ngx.status ngx.header
local callback = require "wechat.work.callback"
local core = require "wechat.core"
local errors = require "wechat.work.errors"
local kf = require "wechat.work.kf.message"
local material = require "wechat.work.material"
local menu = require "wechat.work.kf.menu"
local redis_store = require "wechat.work.store.redis"
local service_state = require "wechat.work.kf.service_state"
local shared_dict = require "wechat.work.store.shared_dict"
local work = require "wechat.work"

local ngx = ngx
local error, ipairs, os, pairs, pcall, tonumber, tostring, type =
  error, ipairs, os, pairs, pcall, tonumber, tostring, type
local byte, find, format, gsub, match, sub = string.byte, string.find, string.format, string.gsub, string.match,
  string.sub
local concat = table.concat

local M = {}

M.AGENT = "kf"                 -- the client's name for the KF secret
M.DICT = "kf_bot"              -- lua_shared_dict: access token, cursor (unless in Redis), their locks
M.DEFAULT_BASE_URL = "http://127.0.0.1:18080"   -- the local stand-in (tools/wecom-standin)

local MAX_TEXT = 2048          -- bytes of a KF text message
local MAX_MSGID = 32
local MAX_SYNC_TOKEN = 128
local LOCK_TIMEOUT = 30        -- seconds a pull waits while another worker pulls
local TIMEOUT = 10             -- seconds per WeCom call

local SAID = "You said: "
local CHOSE = "You chose: "
M.HUMAN_WORD = "人工"          -- what a customer types to talk to a person
M.HANDED = "A person will answer you shortly."
M.NO_HUMAN = "Sorry, no person is free now. I am still here."

--- The welcome menu, sent with the welcome_code of enter_session. A tap on a click item comes back as a text
-- message whose `menu_id` is the item's id.
M.WELCOME = menu.new("Welcome! What can we do for you?")
  :click("hours", "Opening hours")
  :click("human", "Talk to a person")
  :tail("Or write anything: I will say it back.")
  :build()

local CHOICES = {}
for _, item in ipairs(M.WELCOME.list) do
  if item.type == "click" then
    CHOICES[item.click.id] = item.click.content
  end
end

-- Setting -> environment variable (nginx passes on only the variables named by `env` lines).
local ENV = {
  corp_id = "WECOM_CORP_ID",
  secret = "WECOM_KF_SECRET",
  token = "WECOM_CALLBACK_TOKEN",
  encoding_aes_key = "WECOM_CALLBACK_AES_KEY",
  base_url = "WECOM_BASE_URL",
  redis = "KF_BOT_REDIS",
  redis_password = "KF_BOT_REDIS_PASSWORD",
  servicer = "KF_BOT_SERVICER",
}

local bot   -- this worker's { callback, client, cursors }, made by setup()

--- The settings from the environment: corp_id, secret, token, encoding_aes_key, base_url, redis,
-- redis_password (unset ones absent).
function M.env_config()
  local conf = {}
  for name, var in pairs(ENV) do
    local value = os.getenv(var)
    if value and value ~= "" then
      conf[name] = value
    end
  end
  return conf
end

--- Makes this worker's bot; call it from init_worker_by_lua. Raises on a missing or wrong setting, naming it
-- (never showing a value).
-- @param conf optional table (default `env_config()`): `corp_id`, `secret` (the KF secret), `token` and
--   `encoding_aes_key` (the callback settings of the KF admin page), `base_url` (default the local stand-in),
--   `redis` ("host:port" or "host:port/db": the cursor and its lock in that Redis instead of the shared dict),
--   `redis_password`, `cafile` (unused by the cosocket transport: nginx trusts `lua_ssl_trusted_certificate`),
--   `servicer` (the userid "人工" hands a customer to; unset: the bot says no person is free)
function M.setup(conf)
  conf = conf or M.env_config()
  for _, name in ipairs({ "corp_id", "secret", "token", "encoding_aes_key" }) do
    if type(conf[name]) ~= "string" or conf[name] == "" then
      error(format("kf_bot: %s is not set (environment %s)", name, ENV[name]), 2)
    end
  end
  local cursors
  if conf.redis then
    local host, port, db = match(tostring(conf.redis), "^([^:/]+):(%d+)$")
    if not host then
      host, port, db = match(tostring(conf.redis), "^([^:/]+):(%d+)/(%d+)$")
    end
    if not host then
      error(format("kf_bot: redis is not host:port or host:port/db (environment %s)", ENV.redis), 2)
    end
    cursors = redis_store.new{ host = host, port = tonumber(port), db = tonumber(db),
      password = conf.redis_password }
  else
    cursors = shared_dict.new(M.DICT)
  end
  bot = {
    callback = callback.new{ token = conf.token, encoding_aes_key = conf.encoding_aes_key, corp_id = conf.corp_id },
    client = work.client{
      corp_id = conf.corp_id,
      agents = { [M.AGENT] = { secret = conf.secret } },
      base_url = conf.base_url or M.DEFAULT_BASE_URL,
      cafile = conf.cafile,
      timeout = TIMEOUT,
      shared_dict = M.DICT,
      transport = "cosocket",
      window = true,
    },
    cursors = cursors,
    media_dir = conf.media_dir or (ngx.config.prefix() .. "media"),
    servicer = conf.servicer,
  }
  return true
end

local function answer(status, body)
  ngx.status = status
  ngx.header["Content-Type"] = "text/plain; charset=utf-8"
  ngx.print(body)
  return ngx.exit(status)
end

-- A callback that fails its checks: 403 when the signature is wrong (not WeCom, or another token), else 400.
local function refuse(err)
  ngx.log(ngx.WARN, "kf_bot: callback refused: ", tostring(err))
  if errors.is(err) and err.message == "signature mismatch" then
    return answer(403, "forbidden\n")
  end
  return answer(400, "bad request\n")
end

--- The msgid of the reply to msg: "re-" and the customer's msgid, or the first 29 hex digits of its SHA-1 when
-- that would not fit the 32 bytes of [0-9a-zA-Z_-] a msgid may have. nil when msg has no msgid.
function M.reply_msgid(msg)
  local id = msg.msgid
  if type(id) ~= "string" or id == "" then
    return nil
  end
  local reply = "re-" .. id
  if #reply <= MAX_MSGID and not find(reply, "[^0-9a-zA-Z_%-]") then
    return reply
  end
  return "re-" .. sub(core.sha1_hex(id), 1, MAX_MSGID - 3)
end

-- s cut to at most max bytes, never inside a UTF-8 character.
local function clip(s, max)
  if #s <= max then
    return s
  end
  local cut = max
  while cut > 0 do
    local b = byte(s, cut + 1)
    if b < 0x80 or b >= 0xC0 then   -- the first byte left out starts a character
      break
    end
    cut = cut - 1
  end
  return sub(s, 1, cut)
end

-- A send's outcome as M.reply returns it: a reply WeCom refuses because its msgid was used means this message was
-- answered before (a pull that started over, after a crash between the reply and the cursor write): done.
local function replied(msg, res, err)
  if not res and errors.is(err) and err.reason == "duplicate_msgid" then
    ngx.log(ngx.INFO, "kf_bot: message ", tostring(msg.msgid), " was answered before")
    return true
  end
  return res, err
end

local function text_reply(msg, prefix, text)
  local to, open_kfid = msg.external_userid, msg.open_kfid
  if type(to) ~= "string" or to == "" or type(open_kfid) ~= "string" or open_kfid == "" then
    ngx.log(ngx.WARN, "kf_bot: message ", tostring(msg.msgid), " names no customer or KF account; not answered")
    return true
  end
  return replied(msg, kf.send_text(bot.client, M.AGENT, to, open_kfid, prefix .. clip(text, MAX_TEXT - #prefix),
    { msgid = M.reply_msgid(msg) }))
end

local IMAGE_EXTENSIONS = { ["image/png"] = "png", ["image/jpeg"] = "jpg", ["image/gif"] = "gif" }

-- Downloads the image a customer sent to <media_dir>/<msgid>.<ext>, streamed to the file (never whole in memory;
-- material.get leaves no part of a file behind when it fails).
local function save_image(msg)
  local media_id = type(msg.image) == "table" and msg.image.media_id
  if type(media_id) ~= "string" or media_id == "" then
    return true
  end
  local name = sub(gsub(tostring(msg.msgid), "[^0-9a-zA-Z_%-]", "_"), 1, 64)
  local path = bot.media_dir .. "/" .. name
  local res, err = material.get(bot.client, M.AGENT, media_id, { path = path })
  if not res then
    return nil, err
  end
  local ext = IMAGE_EXTENSIONS[match(res.content_type or "", "^[^;%s]+")] or "img"
  local ok, rename_err = os.rename(path, path .. "." .. ext)
  if not ok then
    ngx.log(ngx.WARN, "kf_bot: image kept as ", path, ": ", tostring(rename_err))
  end
  ngx.log(ngx.INFO, "kf_bot: image of ", tostring(msg.msgid), " saved, ", res.size, " bytes")
  return true
end

-- "人工": the session goes to the servicer (state 3) and the customer hears so through the msg_code, the one way
-- left to write in that session. A refusal (no such servicer, a session that cannot move) is answered in words.
local function hand_to_human(msg)
  local moved, err
  if bot.servicer then
    moved, err = service_state.trans(bot.client, M.AGENT, msg.open_kfid, msg.external_userid, service_state.HUMAN,
      bot.servicer)
  end
  if not moved then
    if err and not (errors.is(err) and err.kind == errors.API) then
      return nil, err
    end
    ngx.log(ngx.WARN, "kf_bot: no hand-over to a person: ", err and tostring(err) or "no servicer set")
    return text_reply(msg, "", M.NO_HUMAN)
  end
  if type(moved.msg_code) ~= "string" or moved.msg_code == "" then
    return true
  end
  return replied(msg, kf.send_text_on_event(bot.client, M.AGENT, moved.msg_code, M.HANDED, M.reply_msgid(msg)))
end

--- Answers one message from sync_msg. Returns true when it is done with (answered or deliberately left alone),
-- else nil, err.
function M.reply(msg)
  if msg.msgtype == "event" then
    local event = msg.event
    if type(event) == "table" and event.event_type == "enter_session" and type(event.welcome_code) == "string"
        and event.welcome_code ~= "" then
      return replied(msg, kf.send_menu_on_event(bot.client, M.AGENT, event.welcome_code, M.WELCOME,
        M.reply_msgid(msg)))
    end
    ngx.log(ngx.INFO, "kf_bot: event ", type(event) == "table" and tostring(event.event_type) or "?", " left alone")
    return true
  end
  -- 4 are system messages, 5 the servicers' own: only customers (3) get an answer
  if msg.origin ~= 3 then
    return true
  end
  if msg.msgtype == "image" then
    return save_image(msg)
  end
  local text = msg.text
  if msg.msgtype ~= "text" or type(text) ~= "table" or type(text.content) ~= "string" then
    ngx.log(ngx.INFO, "kf_bot: ", tostring(msg.msgtype), " message left alone")
    return true
  end
  local menu_id = text.menu_id
  if type(menu_id) == "string" and menu_id ~= "" then
    return text_reply(msg, CHOSE, CHOICES[menu_id] or (text.content ~= "" and text.content) or menu_id)
  end
  if text.content == "" then
    return true
  end
  if match(text.content, "^%s*(.-)%s*$") == M.HUMAN_WORD and type(msg.external_userid) == "string"
      and msg.external_userid ~= "" and type(msg.open_kfid) == "string" and msg.open_kfid ~= "" then
    return hand_to_human(msg)
  end
  return text_reply(msg, SAID, text.content)
end

-- The timer: pulls every new message and answers it. A WeCom refusal (kind "api": code used, limits, ...) or a
-- reply the window tracker held back (kind "window": WeCom would refuse it) is logged and the message counted as
-- done, since asking again would not help; any other failure (network, store, a send whose fate is unknown:
-- err.maybe_sent) stops the pull before the message is counted, so the next event pulls it again, and its reply,
-- sent under the same msgid, reaches the customer once (refused if it went out).
local function pull(premature, token, open_kfid)
  if premature then
    return
  end
  local p = kf.sync_all(bot.client, M.AGENT, {
    token = token,
    open_kfid = open_kfid,
    cursor_store = bot.cursors,
    lock_timeout = LOCK_TIMEOUT,
  })
  for msg in p do
    local ok, done, err = pcall(M.reply, msg)
    if not ok then
      -- a raise is a message this bot cannot answer (a bug, or data it did not expect): never again
      ngx.log(ngx.ERR, "kf_bot: message ", tostring(msg.msgid), ": ", tostring(done))
    elseif not done and errors.is(err, errors.WINDOW) then
      ngx.log(ngx.NOTICE, "kf_bot: message ", tostring(msg.msgid), " not answered, the customer's window is closed (",
        err.reason, "): ", err.message)
    elseif not done then
      if not (errors.is(err) and err.kind == errors.API and not err.maybe_sent) then
        ngx.log(ngx.WARN, "kf_bot: message ", tostring(msg.msgid), " not answered, pull stopped: ", tostring(err))
        break
      end
      ngx.log(ngx.WARN, "kf_bot: message ", tostring(msg.msgid), " not answered: ", tostring(err))
    end
  end
  -- after a break the pull still holds its lock (Lua 5.4 would close it by itself; LuaJIT does not)
  p:close()
  if p.err then
    ngx.log(ngx.ERR, "kf_bot: pull: ", tostring(p.err))
  end
  ngx.log(ngx.INFO, "kf_bot: pulled ", p.pages, " page(s), ", p.handled, " message(s)")
end

local function word(value, max)
  if type(value) == "string" and value ~= "" and #value <= max then
    return value
  end
  return nil
end

-- A field of a callback that may be repeated, for a log line: "wk1, wk2", or "none".
local function ids(value)
  if type(value) == "table" then
    return concat(value, ", ")
  end
  return value or "none"
end

--- The content handler of the callback location.
function M.handle()
  if not bot then
    ngx.log(ngx.ERR, "kf_bot: not set up: see the init_worker error above")
    return answer(500, "not configured\n")
  end
  local method = ngx.req.get_method()
  local query = ngx.req.get_uri_args()
  if method == "GET" then
    local echo, err = bot.callback:verify_url(query)
    if not echo then
      return refuse(err)
    end
    return answer(200, echo)
  end
  if method ~= "POST" then
    return answer(405, "method not allowed\n")
  end
  ngx.req.read_body()
  local event, err = bot.callback:decrypt_event(query, ngx.req.get_body_data())
  if not event then
    return refuse(err)
  end
  if event.MsgType == "event" and event.Event == "kf_msg_or_event" then
    -- the pull runs after this answer: a long pull must not hold WeCom past its 5 seconds
    local ok, terr = ngx.timer.at(0, pull, word(event.Token, MAX_SYNC_TOKEN), word(event.OpenKfId, 1024))
    if not ok then
      -- not "success": WeCom sends the event again later
      ngx.log(ngx.ERR, "kf_bot: cannot start the pull: ", terr)
      return answer(503, "busy\n")
    end
  elseif event.MsgType == "event" and event.Event == "kf_account_auth_change" then
    -- one element per account, so each is a string (one) or an array (several): see wechat.work.callback
    ngx.log(ngx.INFO, "kf_bot: KF accounts given to the app: ", ids(event.AuthAddOpenKfId), "; taken: ",
      ids(event.AuthDelOpenKfId))
  else
    ngx.log(ngx.INFO, "kf_bot: ", tostring(event.MsgType), "/", tostring(event.Event), " left alone")
  end
  return answer(200, "success")
end

return M
