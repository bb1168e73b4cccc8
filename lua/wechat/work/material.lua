--- WeCom temporary media (the reference's `WeChat.Work.Material`): upload a file to get a `media_id` (valid 3 days)
-- for image, voice, video and file messages, link and mini-program thumbnails and KF account avatars; download what
-- a customer sent.
--
-- Files are streamed: an upload is sent from the file in pieces and a download written to its file as it arrives,
-- so a 20 MB file never sits in memory. A wrong argument raises; a file that is missing, unreadable, empty or of a
-- size WeCom refuses is `nil, err` with `err.kind == "media"` and `err.reason` naming it, and nothing is sent.
local errors = require "wechat.work.errors"
local work = require "wechat.work"

local error, floor, tonumber, tostring, type = error, math.floor, tonumber, tostring, type
local io_open, os_remove, os_rename = io.open, os.remove, os.rename
local format, gsub, match, char = string.format, string.gsub, string.match, string.char

local M = {}

local MB = 1024 * 1024

--- Bytes at most per media type (WeCom's limits), and at least for any (WeCom: "more than 5 bytes").
M.MAX_SIZE = { image = 10 * MB, voice = 2 * MB, video = 10 * MB, file = 20 * MB }
M.MIN_SIZE = 6
--- What `get` downloads at most unless `opts.max` says otherwise.
M.DEFAULT_MAX_DOWNLOAD = 20 * MB

local UPLOAD = "/cgi-bin/media/upload"
local GET = "/cgi-bin/media/get"
local MAX_FILENAME = 255
local MAX_MEDIA_ID = 256

local type_name, check_client_and_agent = work.type_name, work.check_client_and_agent

-- Raises at the caller of the public function fname; depth: how many functions of this file stand between this
-- one and that public function (0: it calls argerror itself).
local function argerror(depth, fname, argn, fmt, ...)
  error(format("bad argument #%d to '%s' (%s)", argn, fname, format(fmt, ...)), 3 + depth)
end

local function check_type(fname, media_type)
  if type(media_type) ~= "string" or not M.MAX_SIZE[media_type] then
    argerror(1, fname, 3, "\"image\", \"voice\", \"video\" or \"file\" expected, got %s",
      type(media_type) == "string" and ('"' .. media_type .. '"') or type_name(media_type))
  end
end

local function media_error(reason, message, op)
  return nil, errors.new(errors.MEDIA, message, { reason = reason, op = op })
end

-- nil, or the reason and message why `size` bytes cannot be uploaded as `media_type`.
local function size_problem(media_type, size)
  if size == 0 then
    return "empty", "the file is empty"
  end
  if size < M.MIN_SIZE then
    return "too_small", format("%d bytes: WeCom takes %d bytes at least", size, M.MIN_SIZE)
  end
  local max = M.MAX_SIZE[media_type]
  if size > max then
    return "too_large", format("%d bytes: WeCom takes %d bytes at most for %s", size, max, media_type)
  end
end

local function upload_answer(res, err)
  if not res then
    return nil, err
  end
  if not res.json then
    return nil, errors.new(errors.DECODE, "media/upload answered content, not WeCom's JSON", { op = "upload" })
  end
  return res.json
end

--- Uploads the file at `path` as temporary media, streaming it from disk. The part's filename is the last part
-- of `path`.
-- @param client a `wechat.work` client
-- @param agent the agent's name
-- @param media_type "image" (JPG/PNG, 10 MB), "voice" (AMR, 2 MB), "video" (MP4, 10 MB) or "file" (20 MB)
-- @param path the file; read when it is sent, not before
-- @return WeCom's answer `{ errcode = 0, errmsg =, type =, media_id =, created_at = }` (`created_at` as WeCom sent
--   it: a string of seconds in its documentation), or nil and an error: kind "media" with `reason` "missing",
--   "unreadable", "empty", "too_small" or "too_large" (nothing was sent), or any error `client:media` returns.
--   Not retried after a failure that may have reached WeCom (a second upload would make a second media_id).
-- @raise on a wrong argument, naming it
function M.upload(client, agent, media_type, path)
  check_client_and_agent("upload", client, agent)
  check_type("upload", media_type)
  if type(path) ~= "string" or path == "" then
    argerror(0, "upload", 4, "file path expected, got %s", path == "" and "empty string" or type_name(path))
  end
  local filename = match(path, "([^/]+)$")
  if not filename then
    return media_error("missing", "no file name in the path", "upload")
  end
  local file, open_err = io_open(path, "rb")
  if not file then
    local missing = match(tostring(open_err), "No such file or directory") or match(tostring(open_err), "Not a dir")
    return media_error(missing and "missing" or "unreadable", "cannot open the file: " .. tostring(open_err), "upload")
  end
  -- a directory opens, but neither reads nor has a size
  local first, read_err = file:read(1)
  local size = file:seek("end")
  file:close()
  if first == nil and read_err then
    return media_error("unreadable", "cannot read the file: " .. tostring(read_err), "upload")
  end
  if not size then
    return media_error("unreadable", "cannot tell the size of the file", "upload")
  end
  local reason, message = size_problem(media_type, size)
  if reason then
    return media_error(reason, message, "upload")
  end
  return upload_answer(client:media(agent, "POST", UPLOAD, { type = media_type },
    { upload = { name = "media", filename = filename, path = path, size = size } }, "upload", false))
end

--- Uploads `data` (a Lua string) as temporary media named `filename`.
-- @param media_type as for `upload`
-- @param filename the name WeCom shows for a file message: 1..255 bytes, no NUL
-- @param data the bytes: from 6 up to the type's limit (raises otherwise)
-- @return as `upload`
function M.upload_data(client, agent, media_type, filename, data)
  check_client_and_agent("upload_data", client, agent)
  check_type("upload_data", media_type)
  if type(filename) ~= "string" or filename == "" or #filename > MAX_FILENAME or match(filename, "%z") then
    argerror(0, "upload_data", 4, "file name of 1 to %d bytes without NUL expected, got %s", MAX_FILENAME,
      type(filename) == "string" and (#filename .. " bytes") or type_name(filename))
  end
  if type(data) ~= "string" then
    argerror(0, "upload_data", 5, "string expected, got %s", type_name(data))
  end
  local max = M.MAX_SIZE[media_type]
  if #data < M.MIN_SIZE or #data > max then
    argerror(0, "upload_data", 5, "%d to %d bytes expected for %s, got %d", M.MIN_SIZE, max, media_type, #data)
  end
  return upload_answer(client:media(agent, "POST", UPLOAD, { type = media_type },
    { upload = { name = "media", filename = filename, data = data, size = #data } }, "upload_data", false))
end

local function unescape(s)
  return (gsub(s, "%%(%x%x)", function(hex)
    return char(tonumber(hex, 16))
  end))
end

-- The filename of a Content-Disposition header (RFC 6266: filename* in UTF-8 first, then filename), or nil.
local function disposition_filename(value)
  if type(value) ~= "string" then
    return nil
  end
  local extended = match(value, "[Ff][Ii][Ll][Ee][Nn][Aa][Mm][Ee]%*%s*=%s*[Uu][Tt][Ff]%-8''([^;%s]+)")
  if extended then
    return unescape(extended)
  end
  local quoted = match(value, "[Ff][Ii][Ll][Ee][Nn][Aa][Mm][Ee]%s*=%s*\"([^\"]*)\"")
  if quoted then
    return quoted
  end
  return match(value, "[Ff][Ii][Ll][Ee][Nn][Aa][Mm][Ee]%s*=%s*([^;%s]+)")
end

local function check_integer(fname, argn, what, value, min_value)
  if type(value) ~= "number" or value ~= floor(value) or value < min_value or value > 2 ^ 53 then
    argerror(1, fname, argn, "%s: integer >= %d expected, got %s", what, min_value,
      type(value) == "number" and tostring(value) or type_name(value))
  end
end

--- Downloads temporary media (what a customer sent, or what was uploaded).
-- @param media_id the media_id (a message's `image.media_id`, ...)
-- @param opts nil or a table: `path` writes the bytes to that file as they arrive (through `path .. ".part"`,
--   renamed when complete, removed on failure, so `path` never holds part of a file); `max` bytes at most (default
--   20 MiB, whatever the client's `max_response`); `range = { from, to }` asks for bytes from..to (0-based, both
--   included; `to` may be nil for "to the end"), which WeCom answers with 206.
-- @return `{ body =, content_type =, filename = }`, or with `opts.path` `{ path =, size =, content_type =,
--   filename = }` (`filename` from Content-Disposition, nil when WeCom sent none); or nil and an error: kind "api"
--   when WeCom answered with an errcode (40007: unknown or expired media_id; 830002: too large, ask with a range),
--   kind "media" reason "unwritable" when `opts.path` cannot be written, kind "transport" reason "too_large" over
--   `max`, or any error `client:media` returns. Retried like a read (it changes nothing at WeCom).
-- @raise on a wrong argument, naming it
function M.get(client, agent, media_id, opts)
  check_client_and_agent("get", client, agent)
  if type(media_id) ~= "string" or media_id == "" or #media_id > MAX_MEDIA_ID then
    argerror(0, "get", 3, "media_id of 1 to %d bytes expected, got %s", MAX_MEDIA_ID,
      type(media_id) == "string" and (#media_id .. " bytes") or type_name(media_id))
  end
  if opts ~= nil and type(opts) ~= "table" then
    argerror(0, "get", 4, "table or nil expected, got %s", type(opts))
  end
  opts = opts or {}
  local path, max, range = opts.path, opts.max, opts.range
  if path ~= nil and (type(path) ~= "string" or path == "" or match(path, "%z")) then
    argerror(0, "get", 4, "opts.path: file path expected, got %s", type_name(path))
  end
  if max ~= nil then
    check_integer("get", 4, "opts.max", max, 1)
  end
  local range_header
  if range ~= nil then
    if type(range) ~= "table" then
      argerror(0, "get", 4, "opts.range: { from, to } expected, got %s", type(range))
    end
    check_integer("get", 4, "opts.range[1] (from)", range[1], 0)
    if range[2] ~= nil then
      check_integer("get", 4, "opts.range[2] (to)", range[2], range[1])
    end
    range_header = format("bytes=%d-%s", range[1], range[2] and format("%d", range[2]) or "")
  end

  local part
  if path then
    part = path .. ".part"
    local probe, open_err = io_open(part, "wb")
    if not probe then
      return media_error("unwritable", "cannot write the file: " .. tostring(open_err), "get")
    end
    probe:close()
  end
  local res, err = client:media(agent, "GET", GET, { media_id = media_id },
    { sink = part, max = max or M.DEFAULT_MAX_DOWNLOAD, range = range_header }, "get", true)
  if res and res.json then
    res, err = nil, errors.new(errors.DECODE, "media/get answered JSON without an errcode, not content",
      { op = "get" })
  end
  if part and res then
    local ok, rename_err = os_rename(part, path)
    if not ok then
      res, err = nil, errors.new(errors.MEDIA, "cannot rename the file: " .. tostring(rename_err),
        { reason = "unwritable", op = "get" })
    end
  end
  if not res then
    if part then
      os_remove(part)
    end
    return nil, err
  end
  local headers = res.headers or {}
  local answer = {
    content_type = headers["content-type"],
    filename = disposition_filename(headers["content-disposition"]),
  }
  if path then
    answer.path, answer.size = path, res.size
  else
    answer.body = res.body
  end
  return answer
end

return M
