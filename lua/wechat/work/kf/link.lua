--- Builds the `msg` table of a KF link message (图文链接) for `send_link`:
--
--   local msg = link.new{ url = "https://example.com/a", title = "Your order", desc = "Shipped today",
--                         thumb_media_id = "MEDIA_ID" }
--
-- The url must be an http:// or https:// URL with a host (`link.valid_url`) and fit 2048 bytes, the title 128
-- bytes, the desc 512 bytes. WeCom cuts a longer desc itself; `truncate = true` cuts it here instead, on a UTF-8
-- character boundary, so no half character reaches the customer.
local error, pairs, tostring, type = error, pairs, tostring, type
local byte, find, format, match, sub = string.byte, string.find, string.format, string.match, string.sub

local M = {}

-- The limits wechat.core's send_link checks (thumb_media_id has none), so that the two never disagree.
local CORE_LIMITS = require("wechat.core").limits.link
local LIMITS = { url = CORE_LIMITS.url, title = CORE_LIMITS.title, desc = CORE_LIMITS.desc, thumb_media_id = math.huge }
local REQUIRED = { url = true, title = true, thumb_media_id = true }

local function fail(field, message)
  error(format("bad argument #1 to 'new' (%s: %s)", field, message), 3)
end

-- Cuts `s` to at most `max` bytes without splitting a UTF-8 sequence (continuation bytes are 0x80..0xBF).
local function cut_utf8(s, max)
  if #s <= max then
    return s
  end
  local n = max
  while n > 0 and byte(s, n + 1) >= 0x80 and byte(s, n + 1) < 0xC0 do
    n = n - 1
  end
  return s:sub(1, n)
end

--- True when `url` follows the one url rule of the library (link urls, menu view urls, and wechat.core's checks
-- of both): http:// or https:// in any case, then a host that is not empty. The host is what comes before the
-- first "/", "?" or "#", less any "userinfo@" and ":port"; an IPv6 host is "[...]" with something inside.
function M.valid_url(url)
  if type(url) ~= "string" then
    return false
  end
  local rest = match(url, "^[hH][tT][tT][pP][sS]?://(.*)$")
  if not rest then
    return false
  end
  local authority = match(rest, "^[^/?#]*")
  local host = match(authority, "^.*@(.*)$") or authority
  if sub(host, 1, 1) == "[" then
    return find(host, "^%[[^%]]+%]") ~= nil
  end
  return match(host, "^[^:]*") ~= ""
end

--- Makes a link `msg`: `{ url, title, desc, thumb_media_id }` (desc optional); option `truncate`.
-- Raises on a missing field, a field too long or a url that is not `valid_url`, naming the field.
function M.new(opts)
  if type(opts) ~= "table" then
    error(format("bad argument #1 to 'new' (table expected, got %s)", opts == nil and "no value" or type(opts)), 2)
  end
  for key in pairs(opts) do
    if LIMITS[key] == nil and key ~= "truncate" then
      fail(tostring(key), "unknown field")
    end
  end
  local msg = {}
  for field, max in pairs(LIMITS) do
    local value = opts[field]
    if value == nil then
      if REQUIRED[field] then
        fail(field, "string expected, got no value")
      end
    elseif type(value) ~= "string" then
      fail(field, "string expected, got " .. type(value))
    else
      if field == "desc" and opts.truncate then
        value = cut_utf8(value, max)
      end
      if #value > max then
        fail(field, format("at most %d bytes, got %d", max, #value))
      end
      if REQUIRED[field] and value == "" then
        fail(field, "must not be empty")
      end
      msg[field] = value
    end
  end
  if not M.valid_url(msg.url) then
    fail("url", "http:// or https:// URL with a host expected")
  end
  return msg
end

return M
