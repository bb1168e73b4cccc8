-- The control API under /_standin/ (see docs/standin.md and tools/wecom-standin/README.md). Control requests are
-- not recorded, not counted and not scripted.
local callback = require "standin.callback"
local cjson = require "cjson.safe"
local http = require "standin.http"
local json_raw = require "standin.json_raw"
local kf_account = require "standin.kf_account"
local kf_session = require "standin.kf_session"
local script = require "standin.script"
local session = require "standin.session"
local state = require "standin.state"
local window = require "standin.window"

local ngx = ngx
local type, pairs, ipairs, tonumber, floor = type, pairs, ipairs, tonumber, math.floor
local concat = table.concat
local format, sub, rep = string.format, string.sub, string.rep

local M = {}

local OK = '{"ok":true}'

local function is_integer(v)
  return type(v) == "number" and v == floor(v)
end

local function array(items)
  return "[" .. concat(items, ",") .. "]"
end

-- The body as a decoded object, or nil after answering 400.
local function object_body(body)
  local obj = cjson.decode(body)
  if type(obj) ~= "table" or json_raw.kind(body) ~= "object" then
    http.control_error(400, "body must be a JSON object")
    return nil
  end
  return obj
end

local unknown_key = http.unknown_key

local function ping()
  return http.send(200, "text/plain; charset=utf-8", "ok\n")
end

local function reset()
  state.reset()
  return http.json(OK)
end

local function requests(args)
  return http.json(array(state.requests(http.arg(args, "path"))))
end

local function counts()
  return http.json(cjson.encode(state.counts()))
end

local function delivered()
  return http.json(array(state.delivered()))
end

local function release()
  return http.json(cjson.encode({ ok = true, sleeping = script.release() }))
end

local function concurrency()
  return http.json(cjson.encode(state.concurrency()))
end

-- Fills standin_msgids until it has no room, so a spec can see a full dedup dict: filler keys of every length up
-- to 255 bytes, so that no slab size keeps a free slot. The keys hold a "\0", which no msgid has.
local function fill_msgids()
  local dict, added = ngx.shared.standin_msgids, 0
  for pad = 0, 240 do
    local prefix = "\0fill\0" .. rep("x", pad) .. "\0"
    while dict:safe_add(prefix .. added, true) do
      added = added + 1
    end
  end
  return http.json(format('{"ok":true,"added":%d}', added))
end

local function expire_tokens()
  state.expire_tokens()
  return http.json(OK)
end

local CONFIG_CHECKS = {
  expires_in = function(v)
    return is_integer(v) and v >= 0, "expires_in must be an integer >= 0"
  end,
  kf_secret_only = function(v)
    return type(v) == "boolean", "kf_secret_only must be a boolean"
  end,
  record = function(v)
    return type(v) == "boolean", "record must be a boolean"
  end,
  msgid_dedup = function(v)
    return type(v) == "boolean", "msgid_dedup must be a boolean"
  end,
  window_strict = function(v)
    return type(v) == "boolean", "window_strict must be a boolean"
  end,
  media_cut_after = function(v)
    return is_integer(v) and v >= -1, "media_cut_after must be an integer >= -1"
  end,
  media_framing = function(v)
    return v == "length" or v == "chunked" or v == "close", 'media_framing must be "length", "chunked" or "close"'
  end,
  media_strict = function(v)
    return type(v) == "boolean", "media_strict must be a boolean"
  end,
  media_now = function(v)
    return is_integer(v) and v >= 0, "media_now must be an integer >= 0"
  end,
  statistic_now = function(v)
    return is_integer(v) and v >= 0, "statistic_now must be an integer >= 0"
  end,
  code_now = function(v)
    return is_integer(v) and v >= 0, "code_now must be an integer >= 0"
  end,
}

-- GET /_standin/media?media_id=: what the stand-in keeps of an upload (its file's path, to compare bytes).
local function media_info(args)
  local info = require("standin.media").kept(http.arg(args, "media_id") or "")
  if not info then
    return http.control_error(404, "no such media_id")
  end
  return http.json(cjson.encode(info))
end

local function get_config()
  return http.json(cjson.encode(state.all_config()))
end

local function set_config(_, body)
  local obj = object_body(body)
  if not obj then
    return
  end
  local bad = unknown_key(obj, CONFIG_CHECKS)
  if bad then
    return http.control_error(400, "unknown config key: " .. bad)
  end
  for name, value in pairs(obj) do
    local ok, err = CONFIG_CHECKS[name](value)
    if not ok then
      return http.control_error(400, err)
    end
  end
  for name, value in pairs(obj) do
    local ok, err = state.set_config(name, value)
    if not ok then
      return http.control_error(500, "cannot store config: " .. err)
    end
  end
  return get_config()
end

local SCRIPT_KEYS = { path = true, count = true, action = true }

local function add_script(_, body)
  local obj = object_body(body)
  if not obj then
    return
  end
  local bad = unknown_key(obj, SCRIPT_KEYS)
  if bad then
    return http.control_error(400, "unknown script key: " .. bad)
  end
  local path, count = obj.path, obj.count
  if count == nil then
    count = 1
  end
  if type(path) ~= "string" or sub(path, 1, 1) ~= "/" or sub(path, 1, 10) == "/_standin/" then
    return http.control_error(400, "path must be a path outside /_standin/, like /cgi-bin/kf/send_msg")
  end
  if not is_integer(count) or (count < 1 and count ~= -1) then
    return http.control_error(400, "count must be an integer >= 1, or -1 for every request")
  end
  local action_json, err = script.check(obj.action)
  if not action_json then
    return http.control_error(400, err)
  end
  local queued
  queued, err = state.push_script(path, count, action_json)
  if not queued then
    return http.control_error(500, "cannot store the script: " .. err)
  end
  return http.json(format('{"ok":true,"queued":%d}', queued))
end

local SYNC_KEYS = { messages = true, page_size = true, empty_pages = true }

-- Defaults for what a queued message leaves out, put in front of its raw text so the rest stays byte for byte.
-- open_kfid: the default of customer_writes, which names the KF account once for all its messages.
local function with_defaults(raw, msg, open_kfid)
  local head = {}
  if open_kfid and msg.open_kfid == nil then
    head[#head + 1] = '"open_kfid":' .. cjson.encode(open_kfid)
  end
  if msg.msgid == nil then
    head[#head + 1] = '"msgid":' .. cjson.encode("standin-sync-" .. state.next_id("sync_msgid"))
  end
  if msg.send_time == nil then
    head[#head + 1] = '"send_time":' .. ngx.time()
  end
  if msg.origin == nil then
    head[#head + 1] = '"origin":3'
  end
  return json_raw.prepend(raw, concat(head, ","))
end

-- The codes an event carries (enter_session's welcome_code, session_status_change's msg_code) are issued when it
-- is queued, or at its send_time when that is earlier (WeCom's 20 s run from the event): send_msg_on_event takes
-- only issued codes. Returns true, or nil, message.
local EVENT_CODES = { "welcome_code", "msg_code" }

local function issue_event_codes(msg)
  local event = msg.event
  if type(event) ~= "table" then
    return true
  end
  for _, name in ipairs(EVENT_CODES) do
    local code = event[name]
    if type(code) == "string" and code ~= "" then
      local ok, err = state.issue_code(code, tonumber(msg.send_time))
      if not ok then
        return nil, "cannot issue " .. name .. ": " .. err
      end
    end
  end
  return true
end

-- A customer who writes starts (or restarts) a session, as on WeCom, and a window of 5 sends in 48 h from
-- send_time (default now). Returns true, or nil, message.
local function customer_wrote(open_kfid, external_userid, send_time)
  local ok, err = session.customer_wrote(open_kfid, external_userid)
  if ok then
    ok, err = window.customer_wrote(open_kfid, external_userid, send_time or ngx.time())
  end
  if not ok then
    return nil, "cannot open the customer's window: " .. err
  end
  return true
end

-- Queues the "messages" of a control body (body raw, obj decoded) for sync_msg. Shared by /_standin/sync and
-- /_standin/customer_writes. Returns the number of messages queued in all, or nil, HTTP status, message.
local function queue_messages(body, obj, open_kfid)
  local raws = {}
  if obj.messages ~= nil then
    local raw_list = json_raw.get(body, "messages")
    local elements = raw_list and json_raw.kind(raw_list) == "array" and json_raw.elements(raw_list)
    if not elements then
      return nil, 400, "messages must be an array of objects"
    end
    for i = 1, #elements do
      if json_raw.kind(elements[i]) ~= "object" then
        return nil, 400, format("messages[%d] must be an object", i)
      end
      raws[i] = elements[i]
    end
  end
  for i = 1, #raws do
    local msg = obj.messages[i]
    local kfid = type(msg.open_kfid) == "string" and msg.open_kfid or (msg.open_kfid == nil and open_kfid) or nil
    local ok, err = state.queue_message(with_defaults(raws[i], msg, open_kfid), kfid)
    if not ok then
      return nil, 500, "cannot queue message: " .. err
    end
    ok, err = issue_event_codes(msg)
    if not ok then
      return nil, 500, err
    end
    if kfid and type(msg.external_userid) == "string" and (msg.origin == nil or msg.origin == 3) then
      ok, err = customer_wrote(kfid, msg.external_userid, tonumber(msg.send_time))
      if not ok then
        return nil, 500, err
      end
    end
  end
  return state.queued_count()
end

local function sync(_, body)
  local obj = object_body(body)
  if not obj then
    return
  end
  local bad = unknown_key(obj, SYNC_KEYS)
  if bad then
    return http.control_error(400, "unknown sync key: " .. bad)
  end
  if obj.page_size ~= nil and not (is_integer(obj.page_size) and obj.page_size >= 1) then
    return http.control_error(400, "page_size must be an integer >= 1")
  end
  if obj.empty_pages ~= nil and not (is_integer(obj.empty_pages) and obj.empty_pages >= 0) then
    return http.control_error(400, "empty_pages must be an integer >= 0")
  end
  local queued, status, message = queue_messages(body, obj)
  if not queued then
    return http.control_error(status, message)
  end
  if obj.page_size ~= nil then
    state.set_page_size(obj.page_size)
  end
  if obj.empty_pages ~= nil then
    state.set_empty_pages(obj.empty_pages)
  end
  return http.json(format('{"ok":true,"queued":%d}', state.queued_count()))
end

-- The stand-in as WeCom calling a bot (standin/callback.lua): JSON text, or nil, status, message.
local function answer(json, status, message)
  if not json then
    return http.control_error(status, message)
  end
  return http.json(json)
end

local function customer_writes(_, body)
  local obj = object_body(body)
  if obj then
    return answer(callback.customer_writes(body, obj, queue_messages))
  end
end

local function auth_change(_, body)
  local obj = object_body(body)
  if obj then
    return answer(callback.auth_change(obj))
  end
end

local function callback_again(_, body)
  local obj = object_body(body ~= "" and body or "{}")
  if obj then
    return answer(callback.callback_again(obj))
  end
end

local function callbacks()
  return http.json(callback.callbacks())
end

local function verify_url(_, body)
  local obj = object_body(body)
  if obj then
    return answer(callback.verify_url(obj))
  end
end

local function is_string(v)
  return type(v) == "string" and v ~= ""
end

local function string_list(v)
  if type(v) ~= "table" then
    return false
  end
  for i = 1, #v do
    if not is_string(v[i]) then
      return false
    end
  end
  return true
end

-- A list of department ids (positive integers).
local function id_list(v)
  if type(v) ~= "table" then
    return false
  end
  for i = 1, #v do
    if not (is_integer(v[i]) and v[i] > 0) then
      return false
    end
  end
  return true
end

-- The body as a decoded object with only known keys, or nil after answering 400 ("unknown <what> key: k").
local function keyed_body(body, known, what)
  local obj = object_body(body)
  if not obj then
    return nil
  end
  local bad = unknown_key(obj, known)
  if bad then
    http.control_error(400, "unknown " .. what .. " key: " .. bad)
    return nil
  end
  return obj
end

local WELCOME_CODE_KEYS = { code = true }

-- POST /_standin/welcome_code: a welcome code issued as with an enter_session event the bot got some other way
-- (the spec's own name for it, or standin-welcome-code-N), so a spec of send_msg_on_event need not pull an event.
local function welcome_code(_, body)
  local obj = keyed_body(body ~= "" and body or "{}", WELCOME_CODE_KEYS, "welcome_code")
  if not obj then
    return
  end
  local code = obj.code
  if code == nil then
    code = "standin-welcome-code-" .. state.next_id("welcome_code")
  elseif not is_string(code) then
    return http.control_error(400, "code must be a non-empty string")
  end
  local ok, err = state.issue_code(code)
  if not ok then
    return http.control_error(500, "cannot issue the code: " .. err)
  end
  return http.json(cjson.encode({ ok = true, code = code }))
end

local WROTE_KEYS = { open_kfid = true, external_userid = true, send_time = true }

-- POST /_standin/customer_wrote: customers wrote to an account (one external_userid or a list), seen as by
-- sync_msg's messages (session and 48 h window) but with nothing queued for sync_msg to return.
local function wrote(_, body)
  local obj = keyed_body(body, WROTE_KEYS, "customer_wrote")
  if not obj then
    return
  end
  local users = obj.external_userid
  if is_string(users) then
    users = { users }
  end
  if not is_string(obj.open_kfid) then
    return http.control_error(400, "open_kfid must be a non-empty string")
  end
  if not string_list(users) or #users == 0 then
    return http.control_error(400, "external_userid must be a non-empty string or a non-empty list of them")
  end
  if obj.send_time ~= nil and not (is_integer(obj.send_time) and obj.send_time >= 0) then
    return http.control_error(400, "send_time must be an integer >= 0")
  end
  for i = 1, #users do
    local ok, err = customer_wrote(obj.open_kfid, users[i], obj.send_time)
    if not ok then
      return http.control_error(500, err)
    end
  end
  return http.json(OK)
end

local SESSION_KEYS = { open_kfid = true, external_userid = true, service_state = true, servicer_userid = true }

-- A session's state, set as a servicer or the customer would move it (no transition rules apply).
local function set_session(_, body)
  local obj = keyed_body(body, SESSION_KEYS, "session")
  if not obj then
    return
  end
  local s = obj.service_state
  if not is_string(obj.open_kfid) or not is_string(obj.external_userid) then
    return http.control_error(400, "open_kfid and external_userid must be non-empty strings")
  end
  if not is_integer(s) or s < 0 or s > 4 then
    return http.control_error(400, "service_state must be an integer from 0 to 4")
  end
  if (s == session.HUMAN) ~= is_string(obj.servicer_userid) then
    return http.control_error(400, "servicer_userid must be given exactly when service_state is 3")
  end
  local ok, err = session.set(obj.open_kfid, obj.external_userid, s, obj.servicer_userid)
  if not ok then
    return http.control_error(500, "cannot store the session: " .. err)
  end
  return http.json(OK)
end

local function get_session(args)
  local kfid, user = http.arg(args, "open_kfid"), http.arg(args, "external_userid")
  if not kfid or not user then
    return http.control_error(400, "open_kfid and external_userid arguments expected")
  end
  local s, servicer = session.get(kfid, user)
  return http.json(cjson.encode({ service_state = s or cjson.null, servicer_userid = servicer or cjson.null }))
end

local ACCOUNT_KEYS = { open_kfid = true, name = true, servicers = true }

-- An account with a chosen open_kfid (kept when it exists) and servicers added to it by userid.
local function seed_account(_, body)
  local obj = keyed_body(body, ACCOUNT_KEYS, "kf_account")
  if not obj then
    return
  end
  if not is_string(obj.open_kfid) then
    return http.control_error(400, "open_kfid must be a non-empty string")
  end
  if obj.servicers ~= nil and not string_list(obj.servicers) then
    return http.control_error(400, "servicers must be a list of userids")
  end
  local ok, err = true, nil
  if not ngx.shared.standin:get("acct:" .. obj.open_kfid) then
    ok, err = kf_account.seed_account(obj.open_kfid, is_string(obj.name) and obj.name or "standin")
  end
  if ok and obj.servicers then
    ok, err = kf_account.seed_servicers(obj.open_kfid, obj.servicers)
  end
  if not ok then
    return http.control_error(500, "cannot store the account: " .. err)
  end
  return http.json(OK)
end

local SERVICER_STATUS_KEYS = { userid = true, status = true, stop_type = true }

-- A servicer's reception status, as the servicer sets it in the KF tool.
local function set_servicer_status(_, body)
  local obj = keyed_body(body, SERVICER_STATUS_KEYS, "servicer_status")
  if not obj then
    return
  end
  if not is_string(obj.userid) then
    return http.control_error(400, "userid must be a non-empty string")
  end
  if obj.status ~= 0 and obj.status ~= 1 then
    return http.control_error(400, "status must be 0 (receiving) or 1 (stopped)")
  end
  local stop_type = obj.stop_type
  if obj.status == 1 and stop_type == nil then
    stop_type = 0
  end
  if (obj.status == 1) ~= (stop_type == 0 or stop_type == 1) then
    return http.control_error(400, "stop_type must be 0 or 1, and only with status 1")
  end
  local ok, err = kf_account.set_servicer_status(obj.userid, obj.status, stop_type)
  if not ok then
    return http.control_error(500, "cannot store the status: " .. err)
  end
  return http.json(OK)
end

local VISIBLE_KEYS = { userid_list = true, department_id_list = true }

-- The app's visible range: the members and departments servicer/add takes.
local function set_visible_range(_, body)
  local obj = keyed_body(body, VISIBLE_KEYS, "visible_range")
  if not obj then
    return
  end
  local users, departments = obj.userid_list or {}, obj.department_id_list or {}
  if not string_list(users) then
    return http.control_error(400, "userid_list must be a list of strings")
  end
  if not id_list(departments) then
    return http.control_error(400, "department_id_list must be a list of ids")
  end
  local stored, err = kf_account.set_visible_range({ userid_list = users, department_id_list = departments })
  if not stored then
    return http.control_error(500, "cannot store the visible range: " .. err)
  end
  return http.json(OK)
end

local UPGRADE_KEYS = { userid_list = true, department_id_list = true, chat_id_list = true }

local function set_upgrade_config(_, body)
  local obj = keyed_body(body, UPGRADE_KEYS, "upgrade_config")
  if not obj then
    return
  end
  local config = {}
  for name in pairs(UPGRADE_KEYS) do
    local list = obj[name] or {}
    local check = name == "department_id_list" and id_list or string_list
    if not check(list) then
      return http.control_error(400, name .. " must be a list of " .. (name == "department_id_list" and "ids" or
        "strings"))
    end
    config[name] = list
  end
  kf_session.set_upgrade_config(config)
  return http.json(OK)
end

local ROUTES = {
  ["/_standin/ping"] = { GET = ping },
  ["/_standin/reset"] = { POST = reset },
  ["/_standin/requests"] = { GET = requests },
  ["/_standin/counts"] = { GET = counts },
  ["/_standin/concurrency"] = { GET = concurrency },
  ["/_standin/delivered"] = { GET = delivered },
  ["/_standin/expire_tokens"] = { POST = expire_tokens },
  ["/_standin/fill_msgids"] = { POST = fill_msgids },
  ["/_standin/release"] = { POST = release },
  ["/_standin/config"] = { GET = get_config, POST = set_config },
  ["/_standin/script"] = { POST = add_script },
  ["/_standin/sync"] = { POST = sync },
  ["/_standin/customer_writes"] = { POST = customer_writes },
  ["/_standin/customer_wrote"] = { POST = wrote },
  ["/_standin/welcome_code"] = { POST = welcome_code },
  ["/_standin/auth_change"] = { POST = auth_change },
  ["/_standin/callback_again"] = { POST = callback_again },
  ["/_standin/callbacks"] = { GET = callbacks },
  ["/_standin/verify_url"] = { POST = verify_url },
  ["/_standin/media"] = { GET = media_info },
  ["/_standin/session"] = { GET = get_session, POST = set_session },
  ["/_standin/kf_account"] = { POST = seed_account },
  ["/_standin/upgrade_config"] = { POST = set_upgrade_config },
  ["/_standin/servicer_status"] = { POST = set_servicer_status },
  ["/_standin/visible_range"] = { POST = set_visible_range },
}

function M.handle()
  local route = ROUTES[ngx.var.uri]
  if not route then
    return http.control_error(404, "no such control call: " .. ngx.var.uri)
  end
  local method = ngx.req.get_method()
  local handler = route[method]
  if not handler then
    return http.control_error(405, method .. " not allowed on " .. ngx.var.uri)
  end
  return handler(ngx.req.get_uri_args(0), http.read_body())
end

return M
