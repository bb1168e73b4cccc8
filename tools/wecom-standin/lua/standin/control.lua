-- The control API under /_standin/ (see docs/standin.md and tools/wecom-standin/README.md). Control requests are
-- not recorded, not counted and not scripted.
local callback = require "standin.callback"
local cjson = require "cjson.safe"
local http = require "standin.http"
local json_raw = require "standin.json_raw"
local script = require "standin.script"
local state = require "standin.state"
local window = require "standin.window"

local ngx = ngx
local type, pairs, tonumber, tostring, floor = type, pairs, tonumber, tostring, math.floor
local concat, sort = table.concat, table.sort
local format, sub = string.format, string.sub

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

local function unknown_key(obj, known)
  local keys = {}
  for key in pairs(obj) do
    if not known[key] then
      keys[#keys + 1] = tostring(key)
    end
  end
  sort(keys)
  return keys[1]
end

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
  window_strict = function(v)
    return type(v) == "boolean", "window_strict must be a boolean"
  end,
}

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
    if (msg.origin == nil or msg.origin == 3) and kfid and type(msg.external_userid) == "string" then
      ok, err = window.customer_wrote(kfid, msg.external_userid, tonumber(msg.send_time) or ngx.time())
      if not ok then
        return nil, 500, "cannot open the customer's window: " .. err
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

local ROUTES = {
  ["/_standin/ping"] = { GET = ping },
  ["/_standin/reset"] = { POST = reset },
  ["/_standin/requests"] = { GET = requests },
  ["/_standin/counts"] = { GET = counts },
  ["/_standin/delivered"] = { GET = delivered },
  ["/_standin/expire_tokens"] = { POST = expire_tokens },
  ["/_standin/release"] = { POST = release },
  ["/_standin/config"] = { GET = get_config, POST = set_config },
  ["/_standin/script"] = { POST = add_script },
  ["/_standin/sync"] = { POST = sync },
  ["/_standin/customer_writes"] = { POST = customer_writes },
  ["/_standin/callback_again"] = { POST = callback_again },
  ["/_standin/callbacks"] = { GET = callbacks },
  ["/_standin/verify_url"] = { POST = verify_url },
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
