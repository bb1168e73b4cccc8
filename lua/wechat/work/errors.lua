--- Run-time error values of lua-wechat-work.
-- A failure that is not the caller's fault (network, HTTP status, bad JSON, a WeCom errcode) comes back as
-- `nil, err` where `err` is one of these tables: `err.kind` says which layer failed, `err.errcode` and
-- `err.errmsg` are WeCom's own when it sent them, and `tostring(err)` reads well in a log (a KF errcode by its
-- English name: `api error 95018 (session status does not allow sending)`).
local getmetatable, pairs, setmetatable, tostring, type = getmetatable, pairs, setmetatable, tostring, type
local concat = table.concat

local M = {}

--- The kinds, so callers can compare against a constant instead of a typo-prone string.
M.TRANSPORT = "transport" -- no HTTP answer: refused, timeout, TLS, reset, response too large, DNS
M.HTTP = "http"           -- an HTTP answer whose status is not 200
M.DECODE = "decode"       -- a 200 whose body is not the JSON object WeCom sends
M.API = "api"             -- WeCom answered with errcode ~= 0
M.PHASE = "phase"         -- called where the transport cannot run (an nginx phase without cosockets)
M.STORE = "store"         -- the token or cursor store failed (Redis down, lock not obtained in time)
M.CALLBACK = "callback"   -- a callback request failed its signature, decryption or XML checks
M.MEDIA = "media"         -- a file to upload or to download into is missing, unreadable, empty or of a wrong size

--- WeCom's answer to a msgid already used on the same KF account. WeCom says a repeated msgid is refused
-- ("否则接口返回错误") but publishes no errcode: this one (40058, "invalid parameter") is assumed, until someone
-- measures WeCom. The stand-in answers it and the client reads it, from this one place.
M.DUPLICATE_MSGID_ERRCODE = 40058
--- WeCom's "data format error": what the stand-in answers for a key it does not know inside a message object.
M.DATA_FORMAT_ERRCODE = 47001

-- Short English names of WeCom's KF errcodes (error-code page 90313, "kf-reference.md"): tostring(err) shows the
-- name, err.errmsg keeps WeCom's own text.
local NAMES = {
  [-1] = "system busy",
  [40096] = "invalid external userid",
  [45009] = "api call frequency limit",
  [95000] = "invalid open_kfid",
  [95001] = "5 messages sent since the customer last wrote",
  [95002] = "48 hours passed since the customer last wrote",
  [95003] = "too many customers for an unverified corp",
  [95004] = "open_kfid does not exist",
  [95005] = "too many KF accounts",
  [95006] = "invalid KF account name",
  [95007] = "invalid or expired msg token",
  [95008] = "more than 10 menu items",
  [95009] = "invalid menu item type",
  [95011] = "KF is used inside WeCom: token of the wrong secret",
  [95012] = "KF is not used inside WeCom: token of the wrong secret",
  [95013] = "session already ended",
  [95014] = "user is not a servicer",
  [95015] = "exclusive service set in the admin console",
  [95016] = "session state change not allowed",
  [95017] = "API switch is off",
  [95018] = "session status does not allow sending",
  [95019] = "servicer stopped or paused",
  [95022] = "invalid location_type",
  [95023] = "API switch granted to a custom-developed app",
  [95026] = "KF account usage too low to create more",
  [95027] = "unverified corp: at most 10 KF accounts",
  [95030] = "message type forbidden by the KF component",
  [95031] = "customer has not written within 48 hours",
  [95032] = "KF component lost the chat record permission",
}

--- The short English name of a WeCom errcode, or nil for one without a name here.
function M.name(errcode)
  return NAMES[errcode]
end

-- fail_type of a msg_send_fail event (sync_msg, msgtype "event"): why a message WeCom accepted was not delivered.
local FAIL_TYPES = {
  [0] = "unknown reason",
  [1] = "KF account deleted",
  [2] = "app closed",
  [4] = "session expired (over 48 hours)",
  [5] = "session closed",
  [6] = "over the 5-message limit",
  [7] = "no WeChat Channels account bound",
  [8] = "corp not verified",
  [9] = "no WeChat Channels account bound and corp not verified",
  [10] = "customer refuses messages",
  [11] = "no member of the corp has logged in to the WeCom app",
  [12] = "message type forbidden by the KF component",
  [13] = "security restriction",
}

--- The short English name of a msg_send_fail event's `fail_type`, or nil for one without a name here.
function M.fail_type_name(fail_type)
  return FAIL_TYPES[fail_type]
end

local Error = {}
Error.__index = Error

function Error.__tostring(err)
  local parts = { "wechat: ", err.kind, " error" }
  if err.errcode then
    parts[#parts + 1] = " " .. tostring(err.errcode)
    local text = NAMES[err.errcode] or err.errmsg
    if text and text ~= "" then
      parts[#parts + 1] = " (" .. tostring(text) .. ")"
    end
  end
  if err.status then
    parts[#parts + 1] = " status " .. tostring(err.status)
  end
  if err.message and err.message ~= "" then
    parts[#parts + 1] = ": " .. err.message
  end
  if err.op then
    parts[#parts + 1] = " in " .. err.op
  end
  return concat(parts)
end

--- Makes an error value.
-- @param kind one of the kinds above
-- @param message human-readable detail, never holding a secret or an access token
-- @param fields optional table copied in: `errcode`, `errmsg`, `status`, `op`, `reason`, `retryable`, ...
function M.new(kind, message, fields)
  local err = { kind = kind, message = message }
  if fields then
    for k, v in pairs(fields) do
      err[k] = v
    end
  end
  return setmetatable(err, Error)
end

--- A copy of error value `err` with `fields` set in it (e.g. `{ op = "send_text" }`), for handing one failure
-- to several callers, each with its own.
function M.copy(err, fields)
  local copy = {}
  for k, v in pairs(err) do
    copy[k] = v
  end
  if fields then
    for k, v in pairs(fields) do
      copy[k] = v
    end
  end
  return setmetatable(copy, Error)
end

--- True when `err` is an error value of this module, and of `kind` when one is given.
function M.is(err, kind)
  return type(err) == "table" and getmetatable(err) == Error and (kind == nil or err.kind == kind)
end

return M
