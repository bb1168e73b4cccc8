--- The libcurl transport: one HTTP exchange per `request`, over one libcurl easy handle that keeps its
-- connection alive between requests. Blocking: for plain Lua programs, not for OpenResty request handlers
-- (use `wechat.work.transport.cosocket` there). It never retries and knows nothing of access tokens.
local core = require "wechat.core"
local errors = require "wechat.work.errors"
local check_request = require("wechat.work.transport.request").check

local error, ipairs, pcall, setmetatable, tostring, type = error, ipairs, pcall, setmetatable, tostring, type
local format, gsub = string.format, string.gsub

local M = {}

-- Only these keys are handed to libcurl, so the whole client options table can be passed in.
local OPTION_NAMES = { "timeout", "connect_timeout", "cafile", "ssl_verify", "max_response", "user_agent" }

local Transport = {}
Transport.__index = Transport
-- Each request holds the calling thread until it ends: wechat.work refuses such a transport inside an nginx phase
-- that has cosockets (a request handler), unless the client is made with `allow_blocking = true`.
Transport.blocking = true

local function argerror(fname, argn, fmt, ...)
  error(format("bad argument #%d to '%s' (%s)", argn, fname, format(fmt, ...)), 3)
end

--- Makes a transport.
-- @param opts nil or a table; other keys than these are ignored:
--   `timeout` total seconds per request (number, default 10), `connect_timeout` (default `timeout`),
--   `cafile` PEM file of the CAs to trust (default: the system's), `ssl_verify` (default true; false turns
--   off peer and host name checks), `max_response` body bytes at most (default 4 MiB), `user_agent`.
-- @return the transport, or nil and a "transport" error when libcurl cannot be set up
-- @raise on a wrong option, naming it
function M.new(opts)
  if opts ~= nil and type(opts) ~= "table" then
    argerror("new", 1, "table or nil expected, got %s", type(opts))
  end
  local picked = {}
  if opts then
    for _, name in ipairs(OPTION_NAMES) do
      picked[name] = opts[name]
    end
  end
  local ok, handle, msg = pcall(core.curl_new, picked)
  if not ok then
    -- Re-raised at the caller with the public name, without the position inside this file.
    local text = gsub(gsub(tostring(handle), "^.-bad argument", "bad argument", 1), "'curl_new'", "'new'", 1)
    error(text, 2)
  end
  if not handle then
    return nil, errors.new(errors.TRANSPORT, msg, { reason = "other" })
  end
  return setmetatable({ handle = handle, closed = false }, Transport)
end

--- Makes one HTTP exchange.
-- @param req `{method = "GET" | "POST", url = "http(s)://...", body = string | nil}`; a POST is sent as
--   `Content-Type: application/json; charset=utf-8`, a nil POST body as an empty one.
-- @return `{status = N, body = "..."}` for any HTTP answer (any status), or nil and a "transport" error whose
--   `reason` is one of "connect", "timeout", "tls", "resolve", "too_large", "send", "recv", "other"; its
--   message never holds the URL's query (where the access token is); `resent` is true when libcurl may have
--   sent the request twice already (a kept-alive connection died under it), so the client does not retry it.
-- @raise on a wrong request table, or when the transport is closed
function Transport:request(req)
  if self.closed then
    error("curl transport is closed", 2)
  end
  local method, url, body = check_request(req)
  local status, res, msg, resent = self.handle:request(method, url, body)
  if not status then
    return nil, errors.new(errors.TRANSPORT, msg, { reason = res, resent = resent or nil })
  end
  return { status = status, body = res }
end

--- Counts since the transport was made: `{requests = N, connects = M}`, where `connects` is the number of
-- new connections libcurl opened; fewer connects than requests means connections were reused.
-- @raise when the transport is closed
function Transport:stats()
  if self.closed then
    error("curl transport is closed", 2)
  end
  return self.handle:stats()
end

--- Closes the connection and frees the handle now instead of at garbage collection. Closing twice is fine;
-- any other use after this raises "curl transport is closed".
-- @return true
function Transport:close()
  if not self.closed then
    self.closed = true
    self.handle:close()
  end
  return true
end

-- Lua 5.4: `local t <close> = curl.new()` closes the transport when `t` goes out of scope.
Transport.__close = Transport.close

--- The libcurl version string, e.g. "libcurl/7.88.1 OpenSSL/3.0.11".
M.version = core.curl_version

return M
