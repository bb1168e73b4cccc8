--- The request table both transports take (`transport:request{ method, url, body }`), checked in one place so
-- that they refuse the same things with the same words.
local error, ipairs, tostring, type = error, ipairs, tostring, type
local floor = math.floor
local find, format = string.find, string.format

local M = {}

-- Level 4 from raise's caller: that caller (fail, check_method_url, ...), check, the transport's method, and then the
-- code that called it. The name is the transport method's: 'request' or 'media'.
local function raise(level, fname, fmt, ...)
  error(format("bad argument #1 to '%s' (%s)", fname, format(fmt, ...)), level + 1)
end

local function fail(fmt, ...)
  raise(4, "request", fmt, ...)
end

local function fail_media(fmt, ...)
  raise(4, "media", fmt, ...)
end

local function check_method_url(req, fname)
  if type(req) ~= "table" then
    raise(4, fname, "table expected, got %s", type(req))
  end
  local method, url = req.method, req.url
  if method ~= "GET" and method ~= "POST" then
    raise(4, fname, 'req.method: "GET" or "POST" expected, got %s',
      type(method) == "string" and '"' .. method .. '"' or type(method))
  end
  if type(url) ~= "string" then
    raise(4, fname, "req.url: string expected, got %s", type(url))
  end
  -- four plain searches: a character class over the whole URL costs ten times as much on every request
  if not find(url, "^[Hh][Tt][Tt][Pp][Ss]?://") or find(url, " ", 1, true) or find(url, "\n", 1, true)
      or find(url, "\r", 1, true) or find(url, "\0", 1, true) then
    raise(4, fname, "req.url: http:// or https:// URL expected")
  end
  return method, url
end

--- Returns method, url, body of `req`, or raises naming what is wrong with it: a method other than "GET" or
-- "POST", a url that is not http(s) or holds a NUL, CR, LF or space, a body that is not a string, a GET with a body.
function M.check(req)
  local method, url = check_method_url(req, "request")
  local body = req.body
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

local function check_integer(value, name, min_value)
  if type(value) ~= "number" or value ~= floor(value) or value < min_value or value > 2 ^ 53 then
    raise(4, "media", "req.%s: integer >= %d expected, got %s", name, min_value,
      type(value) == "number" and tostring(value) or type(value))
  end
end

--- Checks the request table of `transport:media` (a multipart upload, or a download that may go to a file) and
-- returns it: `method` and `url` as for `check`, no `body`; `upload` (POST only) `{ name, filename, path | data,
-- size }` with `size` the byte count of the file (of `data` when it is given); `range` a Range header value
-- ("bytes=FROM-TO"); `sink` a file path; `max` the answer's bytes at most (integer >= 1).
function M.check_media(req)
  local method = check_method_url(req, "media")
  if req.body ~= nil then
    fail_media("req.body: a media request has no body (upload instead)")
  end
  local upload = req.upload
  if upload ~= nil then
    if type(upload) ~= "table" then
      fail_media("req.upload: table expected, got %s", type(upload))
    end
    if method ~= "POST" then
      fail_media("req.upload: only a POST uploads")
    end
    for _, name in ipairs{ "name", "filename" } do
      if type(upload[name]) ~= "string" then
        fail_media("req.upload.%s: string expected, got %s", name, type(upload[name]))
      end
    end
    if (type(upload.path) == "string") == (type(upload.data) == "string") then
      fail_media("req.upload: a string path or a string data expected (one of them)")
    end
    check_integer(upload.size, "upload.size", 0)
    if upload.data and upload.size ~= #upload.data then
      fail_media("req.upload.size: %d expected (the length of data), got %s", #upload.data, tostring(upload.size))
    end
  end
  if req.range ~= nil and (type(req.range) ~= "string" or not find(req.range, "^bytes=%d*%-%d*$")) then
    fail_media('req.range: "bytes=FROM-TO" expected')
  end
  if req.sink ~= nil and (type(req.sink) ~= "string" or req.sink == "" or find(req.sink, "%z")) then
    fail_media("req.sink: file path expected")
  end
  if req.max ~= nil then
    check_integer(req.max, "max", 1)
  end
  return req
end

return M
