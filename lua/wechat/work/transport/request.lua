--- The request table both transports take (`transport:request{ method, url, body }`), checked in one place so
-- that they refuse the same things with the same words.
local error, type = error, type
local find, format = string.find, string.format

local M = {}

-- Level 4: fail, check, the transport's request method, and then the code that called it.
local function fail(fmt, ...)
  error(format("bad argument #1 to 'request' (%s)", format(fmt, ...)), 4)
end

--- Returns method, url, body of `req`, or raises naming what is wrong with it: a method other than "GET" or
-- "POST", a url that is not http(s) or holds a NUL, CR, LF or space, a body that is not a string, a GET with a body.
function M.check(req)
  if type(req) ~= "table" then
    fail("table expected, got %s", type(req))
  end
  local method, url, body = req.method, req.url, req.body
  if method ~= "GET" and method ~= "POST" then
    fail('req.method: "GET" or "POST" expected, got %s', type(method) == "string" and '"' .. method .. '"'
      or type(method))
  end
  if type(url) ~= "string" then
    fail("req.url: string expected, got %s", type(url))
  end
  -- four plain searches: a character class over the whole URL costs ten times as much on every request
  if not find(url, "^[Hh][Tt][Tt][Pp][Ss]?://") or find(url, " ", 1, true) or find(url, "\n", 1, true)
      or find(url, "\r", 1, true) or find(url, "\0", 1, true) then
    fail("req.url: http:// or https:// URL expected")
  end
  if body ~= nil then
    if type(body) ~= "string" then
      fail("req.body: string or nil expected, got %s", type(body))
    end
    if method == "GET" then
      fail("req.body: a GET request has no body")
    end
  end
  return method, url, body
end

return M
