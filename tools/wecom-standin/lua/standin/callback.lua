-- The stand-in acting as WeCom towards a bot: it calls the bot's callback URL like WeCom does.
--   customer_writes: queue customer messages for sync_msg, issue a sync token, and POST the signed, encrypted
--                    kf_msg_or_event event ("pull now, with this token") to the bot, from a timer
--   auth_change:     POST the kf_account_auth_change event (KF accounts given to / taken from the app)
--   callback_again:  send a callback again byte for byte, as WeCom does when it saw no timely answer
--   callbacks:       what was sent and what the bot answered
--   verify_url:      the URL check WeCom makes when the callback URL is saved (GET with an echostr)
-- The functions here check and act; control.lua reads the request and writes the answer. Each returns the JSON
-- text of the answer, or nil, HTTP status, message.
--
-- The crypto is the library's own (wechat.work.callback over wechat.core): the stand-in loads them from the
-- checkout (lua/, build/jit/), so these calls need `tools/build`; everything else in the stand-in works without.
local cjson = require "cjson.safe"
local http = require "standin.http"
local state = require "standin.state"

local ngx = ngx
local type, pairs, pcall, require, tostring, tonumber = type, pairs, pcall, require, tostring, tonumber
local concat, sort = table.concat, table.sort
local floor = math.floor
local find, format, lower, match, sub = string.find, string.format, string.lower, string.match, string.sub

local M = {}

local DICT = ngx.shared.standin

local DEFAULT_CORP_ID = "wwCORP"
local TIMEOUT_MS = 5000          -- WeCom waits 5 s for an answer; so does the stand-in, at each socket step
local MAX_ANSWER = 64 * 1024     -- bytes of the bot's answer kept; a larger one is a failure
local MAX_FIELD = 1024           -- token, open_kfid, corp id, echo
local AES_KEY_PATTERN = "^[A-Za-z0-9+/]+$"

local crypto_module

-- wechat.work.callback.testing (what WeCom sends, built with the library's crypto), loaded on first use so that
-- a checkout without a build still runs the rest.
local function crypto()
  if crypto_module then
    return crypto_module
  end
  local ok, mod = pcall(require, "wechat.work.callback.testing")
  if not ok then
    return nil, "callbacks need the library's crypto (lua/ and build/jit/wechat/core.so of the checkout; run "
      .. "tools/build): " .. (match(tostring(mod), "^[^\n]*") or "")
  end
  crypto_module = mod
  return mod
end

local unknown_key = http.unknown_key

-- scheme, host, port, path (with its query, "/" when none); or nil.
local function parse_url(url)
  if type(url) ~= "string" or #url > 2048 then
    return nil
  end
  local scheme, host, port, path = match(url, "^(https?)://([%w%.%-]+):?(%d*)([^#]*)$")
  if not scheme or (path ~= "" and sub(path, 1, 1) ~= "/" and sub(path, 1, 1) ~= "?") then
    return nil
  end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  if port < 1 or port > 65535 then
    return nil
  end
  if path == "" or sub(path, 1, 1) == "?" then
    path = "/" .. path
  end
  return scheme, host, port, path
end

local function plain_string(v)
  return type(v) == "string" and v ~= "" and #v <= MAX_FIELD and not find(v, "]]>", 1, true)
    and not find(v, "[%c]")
end

-- The bot's side of the callback settings: callback_url, token, encoding_aes_key, corp_id. Returns the handler
-- of wechat.work.callback, or nil, status, message.
local function bot_settings(obj)
  if not parse_url(obj.callback_url) then
    return nil, 400, "callback_url must be an http:// or https:// URL"
  end
  if not plain_string(obj.token) then
    return nil, 400, "token must be the callback Token of the bot: a non-empty string"
  end
  local key = obj.encoding_aes_key
  if type(key) ~= "string" or #key ~= 43 or not find(key, AES_KEY_PATTERN) then
    return nil, 400, "encoding_aes_key must be 43 characters of base64"
  end
  if obj.corp_id ~= nil and not plain_string(obj.corp_id) then
    return nil, 400, "corp_id must be a non-empty string"
  end
  local lib, err = crypto()
  if not lib then
    return nil, 500, err
  end
  local ok, cb = pcall(lib.new, { token = obj.token, encoding_aes_key = key, corp_id = obj.corp_id or DEFAULT_CORP_ID })
  if not ok then
    return nil, 400, "bad callback settings: " .. tostring(cb)
  end
  return cb
end

local function encode_query(query)
  local names = {}
  for name in pairs(query) do
    names[#names + 1] = name
  end
  sort(names)
  local parts = {}
  for i = 1, #names do
    parts[i] = names[i] .. "=" .. ngx.escape_uri(query[names[i]])
  end
  return concat(parts, "&")
end

local function with_query(url, query)
  return url .. (find(url, "?", 1, true) and "&" or "?") .. query
end

-- One HTTP/1.0 exchange (so the answer is never chunked) over a cosocket, the way WeCom calls a bot: TLS
-- without checking the bot's certificate. Returns status, body; or nil, err.
local function exchange(method, url, body)
  local scheme, host, port, path = parse_url(url)
  if not scheme then
    return nil, "bad url"
  end
  local sock = ngx.socket.tcp()
  sock:settimeouts(TIMEOUT_MS, TIMEOUT_MS, TIMEOUT_MS)
  -- no resolver is configured: localhost is the one name a local bot has
  local ok, err = sock:connect(host == "localhost" and "127.0.0.1" or host, port)
  if not ok then
    return nil, "connect: " .. tostring(err)
  end
  if scheme == "https" then
    ok, err = sock:sslhandshake(nil, host, false)
    if not ok then
      sock:close()
      return nil, "tls: " .. tostring(err)
    end
  end
  local head = {
    method, " ", path, " HTTP/1.0\r\n",
    "Host: ", host, ":", port, "\r\n",
    "User-Agent: wecom-standin\r\n",
  }
  if body then
    head[#head + 1] = "Content-Type: text/xml\r\nContent-Length: " .. #body .. "\r\n"
  end
  head[#head + 1] = "\r\n"
  head[#head + 1] = body or ""
  ok, err = sock:send(concat(head))
  if not ok then
    sock:close()
    return nil, "send: " .. tostring(err)
  end
  local chunks, size = {}, 0
  while true do
    local data, rerr = sock:receiveany(MAX_ANSWER + 1 - size)
    if not data then
      if rerr == "closed" then
        break
      end
      sock:close()
      return nil, "receive: " .. tostring(rerr)
    end
    chunks[#chunks + 1] = data
    size = size + #data
    if size > MAX_ANSWER then
      sock:close()
      return nil, "answer larger than " .. MAX_ANSWER .. " bytes"
    end
  end
  sock:close()
  local raw = concat(chunks)
  local status = tonumber(match(raw, "^HTTP/%d%.%d (%d%d%d)"))
  local split = find(raw, "\r\n\r\n", 1, true)
  if not status or not split then
    return nil, "not an HTTP answer"
  end
  local answer = sub(raw, split + 4)
  local length = tonumber(match(lower(sub(raw, 1, split)), "\r\ncontent%-length:%s*(%d+)"))
  if length and length < #answer then
    answer = sub(answer, 1, length)
  end
  return status, answer
end

-- The callback log: "cb:n" and one JSON record per callback under "cb:<id>", in the standin dict, so reset
-- forgets it. A record carries a stamp: a timer that outlived a reset must not write into a newer record.
local function store_record(rec)
  local json = cjson.encode(rec)
  local ok, err = DICT:safe_set("cb:" .. rec.id, json)
  if not ok then
    return nil, err
  end
  return true
end

local function load_record(id)
  local json = DICT:get("cb:" .. id)
  return json and cjson.decode(json)
end

local function finish(id, stamp, fields)
  local rec = load_record(id)
  if not rec or rec.stamp ~= stamp then
    return
  end
  for k, v in pairs(fields) do
    rec[k] = v
  end
  local ok, err = store_record(rec)
  if not ok then
    ngx.log(ngx.WARN, "standin: callback ", id, " not recorded: ", err)
  end
end

local function send_callback(premature, id, stamp)
  local rec = load_record(id)
  if not rec or rec.stamp ~= stamp then
    return
  end
  if premature then
    return finish(id, stamp, { state = "failed", error = "the stand-in stopped first" })
  end
  local status, answer = exchange("POST", with_query(rec.url, rec.query), rec.body)
  if not status then
    return finish(id, stamp, { state = "failed", error = answer })
  end
  return finish(id, stamp, { state = "answered", status = status, answer = answer })
end

-- Logs a callback as pending and starts the timer that sends it. Returns the id, or nil, status, message.
local function schedule(fields)
  local id = state.next_id("callback")
  local rec = {
    id = id,
    stamp = format("%d:%s:%d", ngx.worker.pid(), tostring(ngx.now()), id),
    state = "pending",
  }
  for k, v in pairs(fields) do
    rec[k] = v
  end
  local ok, err = store_record(rec)
  if not ok then
    return nil, 500, "cannot log the callback: " .. err
  end
  DICT:incr("cb:n", 1, 0)
  ok, err = ngx.timer.at(0, send_callback, id, rec.stamp)
  if not ok then
    finish(id, rec.stamp, { state = "failed", error = "no timer: " .. tostring(err) })
    return nil, 500, "cannot start the callback timer: " .. tostring(err)
  end
  return id
end

-- Encrypts and signs the event (a flat table for wechat.work.callback.testing.event_xml) as WeCom would, and schedules
-- its POST to the bot; `record` adds fields to the callback record. Returns the id, or nil, status, message.
local function send_event(cb, obj, event, record)
  local ok, req, err = pcall(cb.build_event_request, cb, event)
  if not ok or not req then
    return nil, 500, "cannot build the callback: " .. tostring(ok and err or req)
  end
  record.url = obj.callback_url
  record.query = encode_query(req.query)
  record.body = req.body
  return schedule(record)
end

local WRITES_KEYS = {
  callback_url = true, token = true, encoding_aes_key = true, corp_id = true, open_kfid = true, messages = true,
}

--- POST /_standin/customer_writes: queue_messages(body, obj, open_kfid) is control.lua's queue of /_standin/sync.
function M.customer_writes(body, obj, queue_messages)
  local bad = unknown_key(obj, WRITES_KEYS)
  if bad then
    return nil, 400, "unknown customer_writes key: " .. bad
  end
  local cb, status, message = bot_settings(obj)
  if not cb then
    return nil, status, message
  end
  local open_kfid = obj.open_kfid
  if not plain_string(open_kfid) then
    return nil, 400, "open_kfid must be a non-empty string"
  end
  -- queued first: a refused messages list must not use up a token number
  local queued
  queued, status, message = queue_messages(body, obj, open_kfid)
  if not queued then
    return nil, status, message
  end
  local token = "standin-sync-token-" .. state.next_id("sync_token")
  local issued, err = state.issue_sync_token(token)
  if not issued then
    return nil, 500, "cannot store the sync token: " .. err
  end
  local id
  id, status, message = send_event(cb, obj, {
    ToUserName = obj.corp_id or DEFAULT_CORP_ID,
    CreateTime = ngx.time(),
    MsgType = "event",
    Event = "kf_msg_or_event",
    Token = token,
    OpenKfId = open_kfid,
  }, { token = token, open_kfid = open_kfid })
  if not id then
    return nil, status, message
  end
  return format('{"ok":true,"queued":%d,"token":%s,"callback":%d}', queued, cjson.encode(token), id)
end

-- A list of open_kfids for auth_change: nil when absent, else a non-empty array of plain strings.
local function kfid_list(obj, key)
  local list = obj[key]
  if list == nil then
    return nil
  end
  if type(list) ~= "table" or #list == 0 then
    return nil, key .. " must be a non-empty array of open_kfids"
  end
  for i = 1, #list do
    if not plain_string(list[i]) then
      return nil, key .. " must be a non-empty array of open_kfids"
    end
  end
  return list
end

local AUTH_KEYS = {
  callback_url = true, token = true, encoding_aes_key = true, corp_id = true, add = true, del = true,
}

--- POST /_standin/auth_change: the kf_account_auth_change event, one <AuthAddOpenKfId> per account in `add` and
-- one <AuthDelOpenKfId> per account in `del` (path/97713: "多个AuthAddOpenKfId节点表示多个新增账号").
function M.auth_change(obj)
  local bad = unknown_key(obj, AUTH_KEYS)
  if bad then
    return nil, 400, "unknown auth_change key: " .. bad
  end
  local cb, status, message = bot_settings(obj)
  if not cb then
    return nil, status, message
  end
  local add, aerr = kfid_list(obj, "add")
  local del, derr = kfid_list(obj, "del")
  if aerr or derr then
    return nil, 400, aerr or derr
  end
  if not add and not del then
    return nil, 400, "add or del must list an open_kfid"
  end
  local id
  id, status, message = send_event(cb, obj, {
    ToUserName = obj.corp_id or DEFAULT_CORP_ID,
    FromUserName = "sys",
    CreateTime = ngx.time(),
    MsgType = "event",
    Event = "kf_account_auth_change",
    AuthAddOpenKfId = add,
    AuthDelOpenKfId = del,
  }, {})
  if not id then
    return nil, status, message
  end
  return format('{"ok":true,"callback":%d}', id)
end

--- POST /_standin/callback_again {"callback":N}: N's request once more, byte for byte (default: the last one).
function M.callback_again(obj)
  local bad = unknown_key(obj, { callback = true })
  if bad then
    return nil, 400, "unknown callback_again key: " .. bad
  end
  local of = obj.callback
  if of == nil then
    of = DICT:get("cb:n")
    if not of then
      return nil, 400, "no callback was sent yet"
    end
  elseif type(of) ~= "number" or of < 1 or of ~= floor(of) then
    return nil, 400, "callback must be the number of a callback"
  end
  local rec = load_record(of)
  if not rec then
    return nil, 400, format("no callback %d", of)
  end
  local id, status, message = schedule({
    url = rec.url,
    query = rec.query,
    body = rec.body,
    token = rec.token,
    open_kfid = rec.open_kfid,
    again = rec.again or rec.id,
  })
  if not id then
    return nil, status, message
  end
  return format('{"ok":true,"callback":%d}', id)
end

--- GET /_standin/callbacks: the records, oldest first, without their stamps.
function M.callbacks()
  local out = {}
  for i = 1, DICT:get("cb:n") or 0 do
    local rec = load_record(i)
    if rec then
      rec.stamp = nil
      out[#out + 1] = cjson.encode(rec)
    end
  end
  return "[" .. concat(out, ",") .. "]"
end

local VERIFY_KEYS = { callback_url = true, token = true, encoding_aes_key = true, corp_id = true, echo = true }

--- POST /_standin/verify_url: GET callback_url?msg_signature=&timestamp=&nonce=&echostr= now, as WeCom does when
-- the URL is saved; ok when the bot answers 200 with exactly the plaintext.
function M.verify_url(obj)
  local bad = unknown_key(obj, VERIFY_KEYS)
  if bad then
    return nil, 400, "unknown verify_url key: " .. bad
  end
  local cb, status, message = bot_settings(obj)
  if not cb then
    return nil, status, message
  end
  local echo = obj.echo
  if echo == nil then
    echo = "standin-echo-" .. state.next_id("echo")
  elseif not plain_string(echo) then
    return nil, 400, "echo must be a non-empty string"
  end
  local ok, query, err = pcall(cb.build_url_check, cb, echo)
  if not ok or not query then
    return nil, 500, "cannot build the URL check: " .. tostring(ok and err or query)
  end
  local answer
  status, answer = exchange("GET", with_query(obj.callback_url, encode_query(query)))
  if not status then
    return cjson.encode({ ok = false, echo = echo, error = answer })
  end
  return cjson.encode({ ok = status == 200 and answer == echo, echo = echo, status = status, answer = answer })
end

return M
