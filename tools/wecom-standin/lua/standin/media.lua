-- POST /cgi-bin/media/upload and GET /cgi-bin/media/get: temporary media, kept on disk under the prefix
-- ($PREFIX/media/ID) and in the shared dict (what it is), served back byte for byte. An upload is read from the
-- request socket in pieces straight into its file, so a 20 MB upload never sits in a Lua string.
-- Each check answers the first thing wrong, in the order of the table in tools/wecom-standin/README.md.
local cjson = require "cjson.safe"
local http = require "standin.http"
local script = require "standin.script"
local state = require "standin.state"
local token = require "standin.token"

local ngx = ngx
local ipairs, tonumber, io_open, os_remove = ipairs, tonumber, io.open, os.remove
local byte, floor = string.byte, math.floor
local concat = table.concat
local format, match, sub = string.format, string.match, string.sub

local M = {}

M.UPLOAD = "/cgi-bin/media/upload"
M.GET = "/cgi-bin/media/get"

local DICT = ngx.shared.standin
local LIFETIME = 3 * 86400          -- "media_id valid 3 days"
local MB = 1024 * 1024
local PIECE = 65536
local MAX_PART_HEAD = 8192
local MIN_SIZE = 6                  -- "every file more than 5 bytes"
-- bytes at most, and the errcode of a file over it (the global codes: 40009 image size, 40011 video size, 40006
-- file size; voice has no code of its own there, so 40006)
local LIMITS = {
  image = { 10 * MB, 40009, "invalid image size" },
  voice = { 2 * MB, 40006, "invalid file size" },
  video = { 10 * MB, 40011, "invalid video size" },
  file = { 20 * MB, 40006, "invalid file size" },
}
local CONTENT_TYPES = { voice = "audio/amr", video = "video/mp4", file = "application/octet-stream" }

local function media_dir()
  return ngx.config.prefix() .. "media"
end

-- The first bytes say the format WeCom takes for the type: JPG or PNG images, AMR voice, MP4 video, any file.
local function format_ok(media_type, first)
  if media_type == "image" then
    return sub(first, 1, 8) == "\137PNG\r\n\26\n" or sub(first, 1, 3) == "\255\216\255"
  elseif media_type == "voice" then
    return sub(first, 1, 5) == "#!AMR"
  elseif media_type == "video" then
    return sub(first, 5, 8) == "ftyp"
  end
  return true
end

-- Voice: WeCom takes at most 60 s. An AMR frame is 20 ms whatever its mode, so 3000 frames at most. A frame's
-- bytes (its header byte included) by the FT field of that byte, bits 3..6 (RFC 4867 §5.3, storage format):
-- AMR-NB after "#!AMR\n", AMR-WB after "#!AMR-WB\n"; reserved types count as a header byte alone.
local MAX_VOICE_FRAMES = 3000
local AMR_NB_BYTES = { [0] = 13, 14, 16, 18, 20, 21, 27, 32, 6, 7, 6, 6, 1, 1, 1, 1 }
local AMR_WB_BYTES = { [0] = 18, 24, 33, 37, 41, 47, 51, 59, 61, 6, 1, 1, 1, 1, 1, 1 }

-- The number of frames in the AMR file at `path`, read in pieces (a frame may straddle two); a last frame cut
-- short counts. nil when the file cannot be read.
local function amr_frames(path)
  local file = io_open(path, "rb")
  if not file then
    return nil
  end
  local sizes, offset = AMR_NB_BYTES, 6
  if file:read(9) == "#!AMR-WB\n" then
    sizes, offset = AMR_WB_BYTES, 9
  end
  file:seek("set", offset)
  local frames, skip = 0, 0
  while true do
    local piece = file:read(PIECE)
    if not piece then
      break
    end
    local i, n = skip + 1, #piece
    while i <= n do
      frames = frames + 1
      i = i + sizes[floor(byte(piece, i) / 8) % 16]
    end
    skip = i - n - 1
  end
  file:close()
  return frames
end

local function image_type(first)
  return sub(first, 1, 4) == "\137PNG" and "image/png" or "image/jpeg"
end

-- Reads the multipart body from the request socket: the part's bytes go to `file_path`. Returns a table
-- { head =, size =, tail =, name =, filename =, filelength =, first = } or nil and why the body is not one part.
-- The whole body is read in every case, so the answer never races the client's sending.
local function read_upload(file_path)
  local boundary = match(ngx.var.content_type or "", "^[Mm]ultipart/form%-data;.-boundary=\"?([^\";%s]+)\"?")
  local length = tonumber(ngx.var.http_content_length or "")
  local sock = ngx.req.socket()
  if not sock then
    return nil, "no body"
  end
  sock:settimeout(10000)
  local got = 0
  -- reads what is left of the body, in pieces, for nothing
  local function drain()
    local left = (length or 0) - got
    while left > 0 do
      local piece = sock:receive(left < PIECE and left or PIECE)
      if not piece then
        return
      end
      left = left - #piece
    end
  end
  if not boundary or not length then
    drain()
    return nil, "not multipart/form-data"
  end
  local opening = "--" .. boundary .. "\r\n"
  local first_line = sock:receive(#opening)
  if first_line ~= opening then
    got = #(first_line or "")
    drain()
    return nil, "no opening boundary"
  end
  got = #opening
  local head_reader = sock:receiveuntil("\r\n\r\n")
  local part_head = head_reader(MAX_PART_HEAD)
  if not part_head or #part_head >= MAX_PART_HEAD then
    return nil, "part header too long"
  end
  got = got + #part_head + 4
  local file, err = io_open(file_path, "wb")
  if not file then
    ngx.log(ngx.ERR, "standin: cannot store media: ", err)
    return nil, "cannot store"
  end
  local data_reader = sock:receiveuntil("\r\n--" .. boundary)
  local size, first = 0, ""
  while true do
    local piece, rerr = data_reader(PIECE)
    if not piece then
      if rerr then
        file:close()
        return nil, "body ended early: " .. rerr
      end
      break
    end
    if #first < 16 then
      first = first .. sub(piece, 1, 16 - #first)
    end
    size = size + #piece
    file:write(piece)
  end
  file:close()
  got = got + size + #boundary + 4
  local after = sock:receive(2)
  got = got + 2
  local rest = ""
  if length - got > 0 and length - got <= 1024 then
    rest = sock:receive(length - got) or ""
  else
    drain()
  end
  local name = match(part_head, '[Nn][Aa][Mm][Ee]="([^"]*)"')
  local parsed = {
    head = opening .. part_head .. "\r\n\r\n",
    tail = "\r\n--" .. boundary .. (after or "") .. rest,
    size = size,
    first = first,
    name = match(part_head, ';%s*name="([^"]*)"') or name,
    filename = match(part_head, ';%s*filename="([^"]*)"'),
    filelength = match(part_head, ";%s*filelength=(%d+)"),
  }
  if after ~= "--" then
    return nil, "more than one part", parsed
  end
  return parsed
end

-- The clock media ids age by: config media_now when set, so specs can look 3 days ahead.
local function now()
  local t = state.config("media_now")
  return t > 0 and t or ngx.time()
end

local function new_media_id()
  return format("3m%030d", state.next_id("media")) .. sub(ngx.md5(ngx.now() .. ":" .. ngx.worker.pid()), 1, 8)
end

-- The upload, with what WeCom would refuse: first the access token, then the type, then the body.
function M.upload(method, args)
  local media_id = new_media_id()
  local file_path = media_dir() .. "/" .. media_id
  local part, why, partial = read_upload(file_path)
  local recorded = part or partial
  state.record_request(method, M.UPLOAD, args, recorded
    and (recorded.head .. format("[%d bytes]", recorded.size) .. recorded.tail) or ("[" .. why .. "]"))
  local function refuse(errcode, errmsg)
    os_remove(file_path)
    return http.wecom_error(errcode, errmsg)
  end
  local action = state.take_script(M.UPLOAD)
  if action and script.play(action) then
    os_remove(file_path)
    return
  end
  if method ~= "POST" then
    return refuse(43002, "require POST method")
  end
  local code, msg = token.check(args)
  if code then
    return refuse(code, msg)
  end
  local media_type = http.arg(args, "type")
  if not media_type or not LIMITS[media_type] then
    return refuse(40004, "invalid media type")
  end
  if not part or part.name ~= "media" or not part.filename or part.filename == "" then
    return refuse(41005, "media data missing")
  end
  if tonumber(part.filelength) ~= part.size then
    return refuse(40006, "invalid file size")
  end
  local limit = LIMITS[media_type]
  if part.size < MIN_SIZE then
    return refuse(40006, "invalid file size")
  end
  if part.size > limit[1] then
    return refuse(limit[2], limit[3])
  end
  if not format_ok(media_type, part.first) then
    return refuse(40005, "invalid file type")
  end
  if media_type == "voice" and (amr_frames(file_path) or MAX_VOICE_FRAMES + 1) > MAX_VOICE_FRAMES then
    return refuse(40006, "invalid voice length")
  end
  local created_at = now()
  local content_type = CONTENT_TYPES[media_type] or image_type(part.first)
  local ok, err = DICT:safe_set("media:" .. media_id, cjson.encode({
    type = media_type, filename = part.filename, size = part.size, content_type = content_type, path = file_path,
    created_at = created_at,
  }))
  if not ok then
    ngx.log(ngx.ERR, "standin: cannot remember media: ", err)
    return refuse(-1, "system busy")
  end
  return http.json(format('{"errcode":0,"errmsg":"","type":%s,"media_id":%s,"created_at":%s}',
    cjson.encode(media_type), cjson.encode(media_id), cjson.encode(format("%d", created_at))))
end

--- What the stand-in keeps of a media_id ({ type, filename, size, content_type, path, created_at }), expired or
-- not, or nil.
function M.kept(media_id)
  local raw = DICT:get("media:" .. media_id)
  return raw and cjson.decode(raw) or nil
end

--- What the stand-in keeps of a media_id that is still valid (issued less than 3 days ago), or nil.
function M.lookup(media_id)
  local media = M.kept(media_id)
  if media and now() < media.created_at + LIFETIME then
    return media
  end
  return nil
end

-- from, to (both included) of a Range header against size; nil when there is none; false when it cannot be met
local function parse_range(header, size)
  if not header then
    return nil
  end
  local from, to = match(header, "^%s*bytes=(%d*)%-(%d*)%s*$")
  if not from or (from == "" and to == "") then
    return false
  end
  if from == "" then -- the last `to` bytes
    local n = tonumber(to)
    if n == 0 then
      return false
    end
    return size - n < 0 and 0 or size - n, size - 1
  end
  from, to = tonumber(from), to ~= "" and tonumber(to) or size - 1
  if from >= size or to < from then
    return false
  end
  return from, to < size and to or size - 1
end

-- config media_framing "chunked" or "close": the answer written by hand on the raw connection, as nginx would never
-- frame it so: chunks of RAW_CHUNK bytes (an odd size, so that chunks never line up with a reader's pieces), or no
-- length at all, the body ending when the connection closes. Either way the connection closes after the answer.
local RAW_CHUNK = 37

local function send_raw(file, status, length, headers, framing)
  local sock, err = ngx.req.socket(true)
  if not sock then
    file:close()
    ngx.log(ngx.ERR, "standin: no raw socket for media_framing: ", err)
    return ngx.exit(500)
  end
  local head = { format("HTTP/1.1 %d %s\r\n", status, status == 206 and "Partial Content" or "OK") }
  for _, h in ipairs(headers) do
    head[#head + 1] = h[1] .. ": " .. h[2] .. "\r\n"
  end
  head[#head + 1] = (framing == "chunked" and "Transfer-Encoding: chunked\r\n" or "") .. "Connection: close\r\n\r\n"
  local ok = sock:send(concat(head))
  local left = length
  while ok and left > 0 do
    local piece = file:read(left < RAW_CHUNK and left or RAW_CHUNK)
    if not piece then
      break
    end
    left = left - #piece
    ok = sock:send(framing == "chunked" and (format("%x\r\n", #piece) .. piece .. "\r\n") or piece)
  end
  if ok and framing == "chunked" then
    sock:send("0\r\n\r\n")
  end
  file:close()
  return ngx.exit(444) -- closes the connection, sending nothing more
end

function M.get(method, args)
  if method ~= "GET" then
    return http.wecom_error(43001, "require GET method")
  end
  local code, msg = token.check(args)
  if code then
    return http.wecom_error(code, msg)
  end
  local media_id = http.arg(args, "media_id")
  local media = media_id and media_id ~= "" and M.lookup(media_id)
  local file = media and io_open(media.path, "rb")
  if not file then
    return http.wecom_error(40007, "invalid media_id")
  end
  local size = media.size
  local from, to = parse_range(ngx.var.http_range, size)
  if from == false then
    file:close()
    ngx.header["Content-Range"] = format("bytes */%d", size)
    return http.json('{"errcode":40058,"errmsg":"invalid Range"}', 416)
  end
  local status = 200
  if from then
    status = 206
    file:seek("set", from)
  else
    from, to = 0, size - 1
  end
  local length = to - from + 1
  local headers = {
    { "Content-Type", media.content_type },
    { "Content-Disposition", format('attachment; filename="%s"', media.filename) },
    { "Accept-Ranges", "bytes" },
  }
  if status == 206 then
    headers[#headers + 1] = { "Content-Range", format("bytes %d-%d/%d", from, to, size) }
  end
  local framing = state.config("media_framing")
  if framing ~= "length" then
    return send_raw(file, status, length, headers, framing)
  end
  ngx.status = status
  for _, h in ipairs(headers) do
    ngx.header[h[1]] = h[2]
  end
  ngx.header["Content-Length"] = length
  -- a spec's broken download: the answer stops after this many bytes of the body and the connection closes
  local cut = state.config("media_cut_after")
  local left = (cut and cut >= 0 and cut < length) and cut or length
  while left > 0 do
    local piece = file:read(left < PIECE and left or PIECE)
    if not piece then
      break
    end
    left = left - #piece
    ngx.print(piece)
    local ok = ngx.flush(true)
    if not ok then
      break
    end
  end
  file:close()
  if cut and cut >= 0 and cut < length then
    return ngx.exit(ngx.ERROR)
  end
  return ngx.exit(status)
end

return M
