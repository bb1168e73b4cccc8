--- The handlers of examples/openresty/nginx.conf: a KF reply sent from inside nginx.
--   POST /kf/reply        {"to": external_userid, "open_kfid": ..., "text": ..., "msgid": optional}
--                         -> 200 {"msgid": ...} once WeCom took it, 400 on a wrong argument, 502 on a failure
--   POST /kf/reply_later  the same body -> 202 at once; a timer sends it (the pattern for phases and handlers
--                         that must not wait: a cosocket works in a timer wherever the timer was started)
--
-- Settings come from the environment (nginx.conf passes them on with `env` lines): WECOM_CORP_ID,
-- WECOM_KF_SECRET, WECOM_BASE_URL (optional; default https://qyapi.weixin.qq.com).
local cjson = require "cjson.safe"
local kf = require "wechat.work.kf.message"
local work = require "wechat.work"

local getenv = os.getenv
local pcall, tostring, type = pcall, tostring, type

local M = {}

local AGENT = "kf"

-- Made on first use in each worker (a missing setting then shows in a request's error, not as a failed start)
-- and kept for the worker's life. Nothing in it does I/O until a call.
local client

local function get_client()
  if not client then
    client = work.client{
      corp_id = getenv("WECOM_CORP_ID"),
      agents = { [AGENT] = { secret = getenv("WECOM_KF_SECRET") } },
      base_url = getenv("WECOM_BASE_URL"),
      timeout = 5,
      shared_dict = "wechat",   -- lua_shared_dict wechat 1m; one access token for all workers
    }
  end
  return client
end

-- The only writes to ngx fields (.luacheckrc lists ngx as read-only).
local function answer(status, body)
  -- luacheck: push ignore 122
  ngx.status = status
  ngx.header["Content-Type"] = "application/json; charset=utf-8"
  -- luacheck: pop
  ngx.print(cjson.encode(body))
  return ngx.exit(status)
end

-- The request's JSON object, or nil after answering 4xx.
local function read_request()
  if ngx.req.get_method() ~= "POST" then
    answer(405, { error = "POST expected" })
    return nil
  end
  ngx.req.read_body()
  local req = cjson.decode(ngx.req.get_body_data() or "")
  if type(req) ~= "table" then
    answer(400, { error = "a JSON object expected" })
    return nil
  end
  return req
end

-- kf.send_text with the request's fields. A wrong argument (a missing field, text over 2048 bytes, a bad msgid)
-- raises: that is the caller's fault, returned here as false and the message without its file position.
local function send(req)
  local ok, res, err = pcall(kf.send_text, get_client(), AGENT, req.to, req.open_kfid, req.text,
    req.msgid ~= nil and { msgid = req.msgid } or nil)
  if not ok then
    return false, (tostring(res):gsub("^[^:]+:%d+: ", ""))
  end
  return res, err
end

--- POST /kf/reply: sends from the request handler. The handler yields while WeCom answers (cosockets), so the
-- worker serves other requests meanwhile.
function M.reply()
  local req = read_request()
  if not req then
    return
  end
  local res, err = send(req)
  if res == false then
    return answer(400, { error = err })
  end
  if not res then
    -- err never holds the secret or the access token: fine to log and to show
    ngx.log(ngx.ERR, "kf reply: ", tostring(err))
    return answer(502, { error = tostring(err), errcode = err.errcode })
  end
  return answer(200, { msgid = res.msgid })
end

local function send_later(premature, req)
  if premature then
    return
  end
  local res, err = send(req)
  if not res then
    ngx.log(ngx.ERR, "kf reply_later: ", tostring(err))
  end
end

--- POST /kf/reply_later: answers 202 at once and sends from a timer; a failure (or a wrong argument) is only
-- logged then.
function M.reply_later()
  local req = read_request()
  if not req then
    return
  end
  local ok, err = ngx.timer.at(0, send_later, req)
  if not ok then
    return answer(503, { error = "cannot start a timer: " .. tostring(err) })
  end
  return answer(202, { queued = true })
end

return M
