-- POST /cgi-bin/kf/send_msg, /cgi-bin/kf/send_msg_on_event, /cgi-bin/kf/sync_msg.
-- Each check answers the first thing wrong, in the order of the table in tools/wecom-standin/README.md.
local cjson = require "cjson.safe"
local errors = require "wechat.work.errors"
local http = require "standin.http"
local json_raw = require "standin.json_raw"
local media_store = require "standin.media"
local session = require "standin.session"
local state = require "standin.state"
local token = require "standin.token"
local window = require "standin.window"

local ngx = ngx
local type, tonumber, select, ipairs, floor = type, tonumber, select, ipairs, math.floor
local format, find, concat = string.format, string.find, table.concat

local NULL = cjson.null

local M = {}

local MAX_CONTENT = 2048
local MAX_URL = 2048
local MAX_MENU_ITEMS = 10
local MAX_MENU_TEXT = 1024
local MAX_MINIPROGRAM_TITLE = 64
local MAX_MSGID = 32
local MAX_OPEN_KFID = 64
local MAX_CURSOR = 64
local MAX_SYNC_TOKEN = 128
local MAX_LIMIT = 1000

-- Shared with the client (wechat.work.errors): WeCom publishes no errcode for a repeated msgid, so ours is assumed;
-- and a key WeCom does not document, in the body or inside a message object, is refused as "data format error"
-- (stricter than WeCom may be, so that no key the library should not send slips through unseen).
local DUPLICATE_MSGID = errors.DUPLICATE_MSGID_ERRCODE
local DATA_FORMAT = errors.DATA_FORMAT_ERRCODE
-- The msgid key prefix of "used by send_msg on some account": open_kfids are never empty.
local ANY_ACCOUNT = "\0"

-- The keys each message object and menu item may hold (WeCom's send_msg page); any other one is refused.
local function set(...)
  local out = {}
  for i = 1, select("#", ...) do
    out[select(i, ...)] = true
  end
  return out
end

local KEYS = {
  text = set("content"),
  image = set("media_id"), voice = set("media_id"), video = set("media_id"), file = set("media_id"),
  link = set("title", "desc", "url", "thumb_media_id"),
  miniprogram = set("appid", "title", "thumb_media_id", "pagepath"),
  msgmenu = set("head_content", "list", "tail_content"),
  location = set("name", "address", "latitude", "longitude"),
}
local ITEM_KEYS = {
  click = set("id", "content"),
  view = set("url", "content"),
  miniprogram = set("appid", "pagepath", "content"),
  text = set("content", "no_newline"),
}

-- 47001 naming the first unknown key (in byte order) of tbl, whose keys must be in allowed.
local function only_keys(tbl, allowed, path)
  local key = http.unknown_key(tbl, allowed)
  if key then
    return DATA_FORMAT, format("unknown key %s.%s", path, key)
  end
end

local function absent(v)
  return v == nil or v == NULL
end

-- A required string field: code_missing when absent, null or "", 40058 when not a string or longer than max.
local function need_string(tbl, key, path, code_missing, max)
  local v = tbl[key]
  if absent(v) or v == "" then
    return code_missing, path .. " missing"
  end
  if type(v) ~= "string" then
    return 40058, "invalid " .. path
  end
  if max and #v > max then
    return 40058, "invalid " .. path
  end
end

local function may_string(tbl, key, path, max)
  local v = tbl[key]
  if absent(v) then
    return
  end
  if type(v) ~= "string" or (max and #v > max) then
    return 40058, "invalid " .. path
  end
end

local function need_coordinate(tbl, key, path, limit)
  local v = tbl[key]
  if absent(v) then
    return 40058, path .. " missing"
  end
  if type(v) ~= "number" or v ~= v or v < -limit or v > limit then
    return 40058, "invalid " .. path
  end
end

-- Runs checks (each a function returning nothing or errcode, errmsg) until one fails.
local function first(...)
  for i = 1, select("#", ...) do
    local code, msg = (select(i, ...))()
    if code then
      return code, msg
    end
  end
end

-- A media_id field the stand-in issued for an upload of type `want` (WeCom's 40007 for any other, "wrong media
-- type" included; config media_strict false lets any through). Thumbs are images; a file takes only a file
-- upload: whether WeCom sends an image's media_id as a file is not documented, so the stricter answer.
local function need_media(msg, key, path, want)
  local code, err = need_string(msg, key, path, 41006)
  if code then
    return code, err
  end
  if state.config("media_strict") then
    local kept = media_store.lookup(msg[key])
    if not kept or kept.type ~= want then
      return 40007, "invalid media_id"
    end
  end
end

local function media(name)
  return function(msg)
    return need_media(msg, "media_id", name .. ".media_id", name)
  end
end

local MENU_ITEM_TYPES = { click = true, view = true, miniprogram = true, text = true }

-- Each menu item's fields, all required, with their byte limits (kf-reference.md §2.1). click.id is optional in
-- one SDK and 1..128 in another: required and 1..64, the stricter reading; text.content 1..256 (WxJava).
local ITEM_FIELDS = {
  click = { { "id", 64 }, { "content", 128 } },
  view = { { "url", 2048 }, { "content", 1024 } },
  miniprogram = { { "appid", 32 }, { "pagepath", 1024 }, { "content", 1024 } },
  text = { { "content", 256 } },
}

-- The fields of menu item `item` (its type checked): nothing, or 40058 naming the first bad one.
local function check_item_fields(item, path)
  local fields = item[item.type]
  for _, field in ipairs(ITEM_FIELDS[item.type]) do
    local code, err = need_string(fields, field[1], path .. "." .. field[1], 40058, field[2])
    if code then
      return code, err
    end
  end
  local no_newline = fields.no_newline
  if not absent(no_newline) and no_newline ~= 0 and no_newline ~= 1 then
    return 40058, "invalid " .. path .. ".no_newline"
  end
end

local TYPED = {
  text = function(msg)
    local code, err = need_string(msg, "content", "text.content", 44004)
    if code then
      return code, err
    end
    if #msg.content > MAX_CONTENT then
      return 45002, "text.content too long"
    end
  end,
  image = media("image"),
  voice = media("voice"),
  file = media("file"),
  video = media("video"),
  link = function(msg)
    return first(
      function() return need_string(msg, "title", "link.title", 41016) end,
      function() return may_string(msg, "desc", "link.desc") end,
      function()
        local code, err = need_string(msg, "url", "link.url", 41010, MAX_URL)
        if code then
          return code, err
        end
        if not find(msg.url, "^[hH][tT][tT][pP][sS]?://[^/?#]") then
          return 40058, "invalid link.url"
        end
      end,
      function() return need_media(msg, "thumb_media_id", "link.thumb_media_id", "image") end)
  end,
  miniprogram = function(msg)
    return first(
      function() return need_string(msg, "appid", "miniprogram.appid", 40058) end,
      -- title, head_content, tail_content and list are optional in WeCom's documentation ("否")
      function() return may_string(msg, "title", "miniprogram.title", MAX_MINIPROGRAM_TITLE) end,
      function() return need_media(msg, "thumb_media_id", "miniprogram.thumb_media_id", "image") end,
      function() return need_string(msg, "pagepath", "miniprogram.pagepath", 40058) end)
  end,
  msgmenu = function(msg, raw)
    local code, err = first(
      function() return may_string(msg, "head_content", "msgmenu.head_content", MAX_MENU_TEXT) end,
      function() return may_string(msg, "tail_content", "msgmenu.tail_content", MAX_MENU_TEXT) end)
    if code then
      return code, err
    end
    local list_raw = json_raw.get(raw, "list")
    if not list_raw or json_raw.kind(list_raw) == "null" then
      return
    end
    -- the raw text, because cjson decodes [] and {} alike and "list":{} is a classic encoder bug
    if json_raw.kind(list_raw) ~= "array" or #msg.list > MAX_MENU_ITEMS then
      return 40058, "invalid msgmenu.list"
    end
    for i = 1, #msg.list do
      local item = msg.list[i]
      if type(item) ~= "table" or not MENU_ITEM_TYPES[item.type] or type(item[item.type]) ~= "table" then
        return 40058, format("invalid msgmenu.list[%d]", i)
      end
      local path = format("msgmenu.list[%d]", i)
      code, err = first(
        function() return only_keys(item, set("type", item.type), path) end,
        function() return only_keys(item[item.type], ITEM_KEYS[item.type], path .. "." .. item.type) end,
        function() return check_item_fields(item, path .. "." .. item.type) end)
      if code then
        return code, err
      end
    end
  end,
  location = function(msg)
    return first(
      function() return may_string(msg, "name", "location.name") end,
      function() return may_string(msg, "address", "location.address") end,
      function() return need_coordinate(msg, "latitude", "location.latitude", 90) end,
      function() return need_coordinate(msg, "longitude", "location.longitude", 180) end)
  end,
}

-- msgtype, then the object named by it.
local function check_typed(body, obj, allowed)
  local msgtype = obj.msgtype
  if absent(msgtype) or msgtype == "" then
    return 40008, "msgtype missing"
  end
  if type(msgtype) ~= "string" or not allowed[msgtype] then
    return 40008, "invalid msgtype"
  end
  local raw = json_raw.get(body, msgtype)
  if not raw or json_raw.kind(raw) == "null" then
    return 40058, msgtype .. " missing"
  end
  if json_raw.kind(raw) ~= "object" then
    return 40058, "invalid " .. msgtype
  end
  local code, err = only_keys(obj[msgtype], KEYS[msgtype], msgtype)
  if code then
    return code, err
  end
  return TYPED[msgtype](obj[msgtype], raw)
end

-- The msgid of the body, or nil when none was given; errcode, errmsg when it breaks the rules. An empty one is
-- refused: a Go SDK had to stop sending "msgid":"" (stand-in: refused as invalid).
local function check_msgid(obj)
  local msgid = obj.msgid
  if absent(msgid) then
    return nil
  end
  if type(msgid) ~= "string" or msgid == "" or #msgid > MAX_MSGID or find(msgid, "[^0-9a-zA-Z_%-]") then
    return nil, 40058, "invalid msgid"
  end
  return msgid
end

-- The checks every KF call starts with. Returns the decoded body, or nil, errcode, errmsg.
local function prelude(method, args, body)
  if method ~= "POST" then
    return nil, 43002, "require POST method"
  end
  local code, msg = token.check(args)
  if code then
    return nil, code, msg
  end
  local obj = cjson.decode(body)
  if type(obj) ~= "table" or json_raw.kind(body) ~= "object" then
    return nil, 47001, "data format error"
  end
  return obj
end

local function ok_msgid(msgid)
  return http.json(format('{"errcode":0,"errmsg":"ok","msgid":%s}', cjson.encode(msgid)))
end

local function duplicate(msgid)
  return http.wecom_error(DUPLICATE_MSGID, "duplicate msgid " .. msgid)
end

-- The msgid dict is full: refused rather than forgetting old msgids (stand-in).
local function busy(err)
  ngx.log(ngx.ERR, "standin: cannot keep a msgid: ", err)
  return http.wecom_error(-1, "system busy")
end

local function generated_msgid()
  return "standin-msg-" .. state.next_id("msgid")
end

local SEND_TYPES = {
  text = true, image = true, voice = true, video = true, file = true,
  link = true, miniprogram = true, msgmenu = true, location = true,
}

function M.send_msg(method, args, body)
  local obj, code, msg = prelude(method, args, body)
  if not obj then
    return http.wecom_error(code, msg)
  end
  code, msg = first(
    function() return need_string(obj, "touser", "touser", 41009) end,
    function()
      if absent(obj.open_kfid) or obj.open_kfid == "" then
        return 95000, "open_kfid missing"
      end
      if type(obj.open_kfid) ~= "string" or #obj.open_kfid > MAX_OPEN_KFID then
        return 95000, "invalid open_kfid"
      end
    end,
    function()
      -- WeCom knows its accounts and customers (95004, 40096); the kinder default lets specs that never said
      -- a customer wrote send anyway (tools/wecom-standin/README.md)
      if not state.config("window_strict") then
        return
      end
      if not session.known_account(obj.open_kfid) then
        return 95004, "open_kfid not exist"
      end
      if not session.known_customer(obj.touser) then
        return 40096, "invalid external userid"
      end
    end,
    function() return check_typed(body, obj, SEND_TYPES) end,
    function() return only_keys(obj, set("touser", "open_kfid", "msgid", "msgtype", obj.msgtype), "body") end)
  if code then
    return http.wecom_error(code, msg)
  end
  local msgid
  msgid, code, msg = check_msgid(obj)
  if code then
    return http.wecom_error(code, msg)
  end
  -- a session with a human, queued or ended takes no API message (standin/session.lua)
  code, msg = session.check_send(obj.open_kfid, obj.touser)
  if code then
    return http.wecom_error(code, msg)
  end
  -- "msgid must be unique within the KF account, 否则接口返回错误": a repeat is refused, neither delivered nor
  -- counted against the customer's window; send_msg_on_event's msgids (any account) count as used too
  local dedup = msgid and state.config("msgid_dedup")
  local msgid_key = dedup and obj.open_kfid .. "\0" .. msgid
  if msgid_key and (state.seen_msgid(msgid_key) or state.seen_msgid(msgid)) then
    return duplicate(msgid)
  end
  local counter
  code, msg, counter = window.take(obj.open_kfid, obj.touser)
  if code then
    return http.wecom_error(code, msg)
  end
  if dedup then
    -- for send_msg_on_event, whose body names no account: "\0msgid" (no open_kfid is empty) is used on some account
    local marked, err = state.mark_msgid(ANY_ACCOUNT .. msgid)
    if not marked then
      window.give_back(counter)
      return busy(err)
    end
    local delivered
    delivered, err = state.deliver(msgid_key, body, true)
    if not delivered then
      window.give_back(counter)    -- another worker delivered this msgid meanwhile, or no room to keep it
      return delivered == nil and busy(err) or duplicate(msgid)
    end
    return ok_msgid(msgid)
  end
  state.deliver(nil, body, false)
  return ok_msgid(msgid or generated_msgid())
end

local EVENT_TYPES = { text = true, msgmenu = true }

-- How long a send_msg_on_event code lives. WeCom: "仅可在收到相关事件后20秒内调用，且只可调用一次" for welcome
-- codes; a SDK's scene table gives queue and pick-up codes 48 h, kf-family.md assumes 20 s for every msg_code:
-- 20 s for all, the stricter reading.
local CODE_LIFETIME = 20

-- nil when `code` was issued by the stand-in (trans, a queued event, /_standin/welcome_code) less than 20 s ago on
-- the code clock, else 95018 (WeCom publishes no code of its own for a bad or late code; *stand-in*).
local function code_check(code)
  local issued = state.code_issued_at(code)
  if not issued then
    return 95018, "invalid code"
  end
  if state.code_now() - issued >= CODE_LIFETIME then
    return 95018, "code expired"
  end
  return nil
end

function M.send_msg_on_event(method, args, body)
  local obj, code, msg = prelude(method, args, body)
  if not obj then
    return http.wecom_error(code, msg)
  end
  code, msg = first(
    function() return need_string(obj, "code", "code", 40058) end,
    function() return check_typed(body, obj, EVENT_TYPES) end,
    function() return only_keys(obj, set("code", "msgid", "msgtype", obj.msgtype), "body") end)
  if code then
    return http.wecom_error(code, msg)
  end
  local msgid
  msgid, code, msg = check_msgid(obj)
  if code then
    return http.wecom_error(code, msg)
  end
  -- A repeated msgid is refused before the code is looked at (a retry's code was used by the first try). No
  -- open_kfid here: on-event msgids are unique across all of them, send_msg's of every account included (stricter).
  local dedup = msgid and state.config("msgid_dedup")
  if dedup and (state.seen_msgid(msgid) or state.seen_msgid(ANY_ACCOUNT .. msgid)) then
    return duplicate(msgid)
  end
  -- only a code WeCom gave the bot, within 20 s of giving it (code_check's comment)
  code, msg = code_check(obj.code)
  if code then
    return http.wecom_error(code, msg)
  end
  -- a msg_code of service_state/trans answers only while its session is in the state it was given for, and a
  -- queue or pick-up code with text only
  code, msg = session.check_code(obj.code, obj.msgtype)
  if code then
    return http.wecom_error(code, msg)
  end
  local fresh, err = state.use_code(obj.code)
  if fresh == nil then
    ngx.log(ngx.ERR, "standin: cannot store a code: ", err)
    return http.wecom_error(-1, "system busy")
  end
  if not fresh then
    return http.wecom_error(95018, "code already used")
  end
  if dedup then
    local delivered
    delivered, err = state.deliver(msgid, body, true)
    if not delivered then
      return delivered == nil and busy(err) or duplicate(msgid)
    end
    return ok_msgid(msgid)
  end
  state.deliver(nil, body, false)
  return ok_msgid(msgid or generated_msgid())
end

-- Cursors carry the position in the queue after the last message handed out.
local function cursor_for(position)
  return "SC" .. position
end

local function position_of(cursor)
  local digits = cursor:match("^SC(%d+)$")
  return digits and tonumber(digits)
end

local function sync_reply(cursor, has_more, msgs)
  return http.json(format('{"errcode":0,"errmsg":"ok","next_cursor":%s,"has_more":%d,"msg_list":[%s]}',
    cjson.encode(cursor), has_more, concat(msgs, ",")))
end

local function is_integer(v)
  return type(v) == "number" and v == floor(v)
end

function M.sync_msg(method, args, body)
  local obj, code, msg = prelude(method, args, body)
  if not obj then
    return http.wecom_error(code, msg)
  end
  local position = 0
  local cursor, sync_token, limit = obj.cursor, obj.token, obj.limit
  local voice_format, open_kfid = obj.voice_format, obj.open_kfid
  if not absent(cursor) and cursor ~= "" then
    position = type(cursor) == "string" and #cursor <= MAX_CURSOR and position_of(cursor)
    if not position then
      return http.wecom_error(40058, "invalid cursor")
    end
  end
  -- only a token of a callback this stand-in sent, within its 10 minutes (WeCom: "msgtoken有时效性")
  if not absent(sync_token) and (type(sync_token) ~= "string" or #sync_token > MAX_SYNC_TOKEN
      or not state.live_sync_token(sync_token)) then
    return http.wecom_error(95007, "invalid token")
  end
  if not absent(limit) and not (is_integer(limit) and limit >= 1 and limit <= MAX_LIMIT) then
    return http.wecom_error(40058, "invalid limit")
  end
  if not absent(voice_format) and voice_format ~= 0 and voice_format ~= 1 then
    return http.wecom_error(40058, "invalid voice_format")
  end
  if absent(open_kfid) then
    open_kfid = nil
  elseif type(open_kfid) ~= "string" or open_kfid == "" then
    return http.wecom_error(95000, "invalid open_kfid")
  end

  if state.take_empty_page() then
    return sync_reply(cursor_for(position), 1, {})
  end

  local page = state.page_size()
  if not absent(limit) and limit < page then
    page = limit
  end
  local total = state.queued_count()
  local msgs = {}
  local i = position + 1
  while i <= total and #msgs < page do
    local raw, kfid = state.queued_message(i)
    if raw and (not open_kfid or kfid == open_kfid) then
      msgs[#msgs + 1] = raw
    end
    i = i + 1
  end
  local next_position = i - 1
  local has_more = 0
  for j = i, total do
    local raw, kfid = state.queued_message(j)
    if raw and (not open_kfid or kfid == open_kfid) then
      has_more = 1
      break
    end
  end
  return sync_reply(cursor_for(next_position), has_more, msgs)
end

-- Shared with the handlers of the rest of the KF family (kf_account.lua, kf_session.lua).
M.prelude = prelude
M.need_string = need_string
M.absent = absent

return M
