-- Drives the local WeCom stand-in (tools/wecom-standin) from specs, under Lua 5.4 and LuaJIT alike.
--
--   local standin = require "helpers.standin"
--   setup(standin.start)          -- starts it unless it runs already, learns its URLs
--   teardown(standin.stop)        -- stops it only if setup started it
--   before_each(standin.reset)    -- each spec starts from nothing
--   standin.script("/cgi-bin/kf/send_msg", { errcode = 45009, errmsg = "api freq out of limit" })
--
-- Control calls that fail raise: a spec cannot go on without its stand-in.
-- The stand-in honours WECOM_STANDIN_PREFIX, WECOM_STANDIN_HTTP_PORT and WECOM_STANDIN_HTTPS_PORT, so specs of
-- two checkouts can each use their own.
local http = require "socket.http"
local ltn12 = require "ltn12"
local cjson = require "cjson"

local M = {}

local concat = table.concat
local error, tostring, tonumber, pairs, ipairs, pcall = error, tostring, tonumber, pairs, ipairs, pcall

local CORPID = "wwCORP"

M.CORPID = CORPID
M.KF_SECRET = "KF_SECRET"
M.OTHER_SECRET = "OTHER_SECRET"

local started -- { url =, https_url =, cafile = } once start() has run

-- The repository root: from this file's own path (spec/helpers/standin.lua), else the working directory.
local function repo_root()
  local source = debug.getinfo(1, "S").source
  if source:sub(1, 1) == "@" then
    local dir = source:sub(2):match("^(.*)[/\\]spec[/\\]helpers[/\\]standin%.lua$")
    if dir then
      return dir
    end
    if source:sub(2):match("^spec[/\\]helpers[/\\]standin%.lua$") then
      return "."
    end
  end
  return "."
end

local shell_quote = require("helpers.shell").quote

-- Runs a command; returns its exit code and its output (stdout and stderr). io.popen():close() cannot give the
-- exit code under LuaJIT, so the shell prints it.
local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"rc=$?\""))
  local out = p:read("*a")
  p:close()
  local text, code = out:match("^(.*)rc=(%d+)%s*$")
  return tonumber(code), text
end

local function script_path()
  return repo_root() .. "/tools/wecom-standin/standin"
end

-- Starts the stand-in unless it runs already (the script is idempotent) and remembers its URLs.
function M.start()
  if started then
    return started
  end
  -- through bash, so a checkout that lost the executable bit still works
  local cmd = "bash " .. shell_quote(script_path())
  local code, out = run(cmd .. " start")
  if code ~= 0 then
    error("standin: '" .. script_path() .. " start' failed:\n" .. out, 2)
  end
  local env = {}
  local _, env_out = run(cmd .. " env")
  for name, value in env_out:gmatch("([%w_]+)=([^\n]*)") do
    env[name] = value
  end
  if not (env.WECOM_STANDIN_URL and env.WECOM_STANDIN_HTTPS_URL and env.WECOM_STANDIN_CAFILE) then
    error("standin: unexpected output of 'standin env': " .. env_out, 2)
  end
  started = {
    url = env.WECOM_STANDIN_URL,
    https_url = env.WECOM_STANDIN_HTTPS_URL,
    cafile = env.WECOM_STANDIN_CAFILE,
    -- only a stand-in this process started is stopped by stop()
    owned = out:find("standin: started", 1, true) ~= nil,
  }
  return started
end

-- Stops the stand-in if start() in this process started it (one found running is left alone).
function M.stop()
  if not started then
    return
  end
  local owned = started.owned
  started = nil
  if owned then
    local code, out = run("bash " .. shell_quote(script_path()) .. " stop")
    if code ~= 0 then
      error("standin: stop failed:\n" .. out, 2)
    end
  end
end

local function need_start()
  return started or M.start()
end

function M.url()
  return need_start().url
end

function M.https_url()
  return need_start().https_url
end

function M.cafile()
  return need_start().cafile
end

-- One plain HTTP exchange with the stand-in: status, body, headers; nil, err when no answer came.
function M.request(method, path, body, headers)
  local chunks = {}
  local hdrs = { ["content-type"] = "application/json" }
  for k, v in pairs(headers or {}) do
    hdrs[k] = v
  end
  if body then
    hdrs["content-length"] = tostring(#body)
  end
  local ok, status, resp_headers = http.request({
    url = M.url() .. path,
    method = method,
    headers = hdrs,
    source = body and ltn12.source.string(body) or nil,
    sink = ltn12.sink.table(chunks),
  })
  if not ok then
    return nil, status
  end
  return status, concat(chunks), resp_headers
end

local function control(method, path, value)
  local body = value ~= nil and cjson.encode(value) or nil
  local status, resp = M.request(method, path, body)
  if status ~= 200 then
    error("standin: " .. method .. " " .. path .. " failed: " .. tostring(status) .. " " .. tostring(resp), 3)
  end
  return cjson.decode(resp)
end

local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c)
    return string.format("%%%02X", c:byte())
  end))
end

-- Forgets requests, counts, scripts, tokens, queued messages, deliveries and config.
function M.reset()
  control("POST", "/_standin/reset")
end

-- The requests seen (to path only, when given), in order: { method =, path =, args = {}, body = "raw",
-- query = "raw query string" }.
function M.requests(path)
  local q = path and ("?path=" .. urlencode(path)) or ""
  return control("GET", "/_standin/requests" .. q)
end

-- The bodies of the requests to path, decoded from JSON (a body that is not JSON stays a string).
function M.bodies(path)
  local out = {}
  for i, r in ipairs(M.requests(path)) do
    local ok, value = pcall(cjson.decode, r.body)
    if ok then
      out[i] = value
    else
      out[i] = r.body
    end
  end
  return out
end

-- The cursors the sync_msg requests carried, in order ("-" for none); with_kfid: each as "<open_kfid> <cursor>".
function M.sync_cursors(with_kfid)
  local out = {}
  for i, body in ipairs(M.bodies("/cgi-bin/kf/sync_msg")) do
    local cursor = body.cursor or "-"
    out[i] = with_kfid and ((body.open_kfid or "") .. " " .. cursor) or cursor
  end
  return out
end

-- What the stand-in keeps of an uploaded media_id: { type =, filename =, size =, content_type =, path = }.
function M.media(media_id)
  return control("GET", "/_standin/media?media_id=" .. urlencode(media_id))
end

-- Customers wrote to open_kfid (user: an external_userid or a list of them) at send_time (default now): the
-- stand-in opens their session and their 48-hour window, as after a message, with nothing queued for sync_msg.
-- A spec that sends to a customer says first that the customer wrote, as WeCom answers 95031 otherwise.
function M.wrote(open_kfid, user, send_time)
  control("POST", "/_standin/customer_wrote", { open_kfid = open_kfid, external_userid = user, send_time = send_time })
end

-- The smallest files media/upload takes for each type: its magic bytes (standin/media.lua's check), then padding
-- past the 5-byte minimum.
local TINY_MEDIA = {
  image = { "tiny.png", "\137PNG\r\n\26\n\0\0\0\rIHDR" },
  voice = { "tiny.amr", "#!AMR\n\60\0\0\0" },
  video = { "tiny.mp4", "\0\0\0\24ftypisom\0\0\0\0" },
  file = { "tiny.txt", "tiny file\n" },
}

local media_ids = {} -- type -> the media_id uploaded last, checked against the stand-in before it is used again

-- A media_id of type ("image", "voice", "video", "file") that the stand-in issued: an upload of a tiny file of that
-- type through its media/upload (so a gettoken and a media/upload request, unless the last one is still known).
-- Specs that send media use these, as WeCom refuses a media_id it never issued (40007).
function M.media_id(media_type)
  local known = media_ids[media_type]
  if known and M.request("GET", "/_standin/media?media_id=" .. urlencode(known)) == 200 then
    return known
  end
  local tiny = TINY_MEDIA[media_type] or error("standin.media_id: no tiny file for type " .. tostring(media_type), 2)
  local boundary = "standin-tiny-media"
  local body = "--" .. boundary .. "\r\n"
    .. 'Content-Disposition: form-data; name="media"; filename="' .. tiny[1] .. '"; filelength=' .. #tiny[2]
    .. "\r\nContent-Type: application/octet-stream\r\n\r\n" .. tiny[2] .. "\r\n--" .. boundary .. "--\r\n"
  local status, resp = M.request("POST", "/cgi-bin/media/upload?access_token=" .. urlencode(M.token())
    .. "&type=" .. media_type, body, { ["content-type"] = "multipart/form-data; boundary=" .. boundary })
  local reply = status == 200 and cjson.decode(resp)
  if not (reply and reply.errcode == 0) then
    error("standin: media/upload of a tiny " .. media_type .. " failed: " .. tostring(status) .. " "
      .. tostring(resp), 2)
  end
  media_ids[media_type] = reply.media_id
  return reply.media_id
end

-- { ["/cgi-bin/gettoken"] = N, ... }
function M.counts()
  return control("GET", "/_standin/counts")
end

-- The counts that grew since `before` (an earlier counts()), by how much: what a spec's own calls made, when it
-- asked the stand-in for media ids (standin.media_id) or tokens first.
function M.counts_since(before)
  local grown = {}
  for path, n in pairs(M.counts()) do
    if n ~= (before[path] or 0) then
      grown[path] = n - (before[path] or 0)
    end
  end
  return grown
end

-- { in_flight, max_in_flight, connections } of the API requests since the last reset.
function M.concurrency()
  return control("GET", "/_standin/concurrency")
end

-- Decoded bodies of the messages a customer would see, after msgid dedup.
function M.delivered()
  return control("GET", "/_standin/delivered")
end

function M.expire_tokens()
  control("POST", "/_standin/expire_tokens")
end

-- Ends the delays scripted with until_released that are under way; returns how many requests slept then.
function M.release()
  return control("POST", "/_standin/release").sleeping
end

-- The next count requests to path (default 1, -1 for all) get action instead of the normal answer.
function M.script(path, action, count)
  return control("POST", "/_standin/script", { path = path, action = action, count = count or 1 })
end

-- { messages = {...}, page_size = N, empty_pages = K }; returns how many messages are queued in all.
function M.sync(spec)
  return control("POST", "/_standin/sync", spec).queued
end

-- Plays a reporting action (settle, written) on a path of its own, /_<name>, and returns the body of its answer.
local function report(name, seconds)
  M.script("/_" .. name, { [name] = seconds or 30 })
  local status, body = M.request("GET", "/_" .. name)
  if status ~= 200 then
    error("standin: " .. name .. " failed: " .. tostring(status) .. " " .. tostring(body), 3)
  end
  return body
end

-- Waits (at most limit seconds, default 30) until no request the stand-in delayed still sleeps; returns how many
-- slept. Specs with a delay end with this, so that no late request acts on the stand-in after they looked at it.
function M.settle(limit)
  return tonumber(report("settle", limit):match('"waited_for":(%d+)'))
end

-- How many bytes each huge answer since the reset managed to write before the client hung up, in order (waits, at
-- most limit seconds, default 30, until none is still being written).
function M.written(limit)
  local list = {}
  for n in report("written", limit):match('"written":%[([%d,]*)%]'):gmatch("%d+") do
    list[#list + 1] = tonumber(n)
  end
  return list
end

-- Changes settings ({ expires_in = N, kf_secret_only = bool, record = bool }); returns them all.
function M.config(tbl)
  return control("POST", "/_standin/config", tbl)
end

-- A KF account with a chosen open_kfid (kept when it exists), servicers added by userid:
-- { open_kfid =, name =, servicers = { "zhangsan", ... } }.
function M.kf_account(spec)
  control("POST", "/_standin/kf_account", spec)
end

-- A sync_msg token the stand-in issued for open_kfid, as a kf_msg_or_event callback carries one (WeCom takes no
-- other, and one for 10 minutes): a customer_writes with no messages to a callback URL nobody listens on (port 9),
-- so the callback fails and only the token is left.
function M.sync_token(open_kfid)
  return control("POST", "/_standin/customer_writes", { callback_url = "http://127.0.0.1:9/", token = "standin",
    encoding_aes_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", open_kfid = open_kfid }).token
end

-- A send_msg_on_event welcome code the stand-in issued now, as with an enter_session event the bot pulled (WeCom
-- takes only codes it issued, within 20 s): `code` names it (default standin-welcome-code-N). Returns the code.
-- trans's msg_code and the codes of events queued by sync / customer_writes are issued without this.
function M.welcome_code(code)
  return control("POST", "/_standin/welcome_code", { code = code }).code
end

-- The app's visible range, the members and departments servicer/add takes: { userid_list =, department_id_list = }.
function M.visible_range(spec)
  control("POST", "/_standin/visible_range", spec)
end

-- A servicer's reception status for every account: 0 receiving, 1 stopped (stop_type 0 stopped, 1 suspended).
function M.servicer_status(userid, status, stop_type)
  control("POST", "/_standin/servicer_status", { userid = userid, status = status, stop_type = stop_type })
end

-- Sets a session's state, as a servicer or the customer would: { open_kfid =, external_userid =,
-- service_state =, servicer_userid = (exactly for 3) }.
function M.set_session(spec)
  control("POST", "/_standin/session", spec)
end

-- The state the stand-in keeps for a session: service_state, servicer_userid (nil, nil when it knows none).
function M.session(open_kfid, external_userid)
  local s = control("GET", "/_standin/session?open_kfid=" .. urlencode(open_kfid) .. "&external_userid="
    .. urlencode(external_userid))
  return s.service_state ~= cjson.null and s.service_state or nil,
    s.servicer_userid ~= cjson.null and s.servicer_userid or nil
end

-- The members and group chats upgrade_service may name: { userid_list =, department_id_list =, chat_id_list = }.
function M.upgrade_config(spec)
  control("POST", "/_standin/upgrade_config", spec)
end

-- A fresh or cached access token of secret (default KF_SECRET), straight from the stand-in.
function M.token(secret)
  local status, body = M.request("GET", "/cgi-bin/gettoken?corpid=" .. CORPID
    .. "&corpsecret=" .. urlencode(secret or M.KF_SECRET))
  local reply = status == 200 and cjson.decode(body)
  if not (reply and reply.errcode == 0) then
    error("standin: gettoken failed: " .. tostring(status) .. " " .. tostring(body), 2)
  end
  return reply.access_token
end

return M
