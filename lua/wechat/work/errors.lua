--- Run-time error values of lua-wechat-work.
-- A failure that is not the caller's fault (network, HTTP status, bad JSON, a WeCom errcode) comes back as
-- `nil, err` where `err` is one of these tables: `err.kind` says which layer failed, `err.errcode` and
-- `err.errmsg` are WeCom's own when it sent them, and `tostring(err)` reads well in a log.
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
M.WINDOW = "window"       -- the KF window tracker knows WeCom would refuse the send (wechat.work.kf.window)
M.MEDIA = "media"         -- a file to upload or to download into is missing, unreadable, empty or of a wrong size

local Error = {}
Error.__index = Error

function Error.__tostring(err)
  local parts = { "wechat: ", err.kind, " error" }
  if err.errcode then
    parts[#parts + 1] = " " .. tostring(err.errcode)
    if err.errmsg and err.errmsg ~= "" then
      parts[#parts + 1] = " (" .. tostring(err.errmsg) .. ")"
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
