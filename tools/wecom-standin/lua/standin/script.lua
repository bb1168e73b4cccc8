-- Scripted answers (POST /_standin/script): checked when they are queued, played when a request comes.
local cjson = require "cjson.safe"
local http = require "standin.http"
local state = require "standin.state"

local ngx = ngx
local error, type, pairs, ipairs, pcall, tonumber, tostring, floor, min =
  error, type, pairs, ipairs, pcall, tonumber, tostring, math.floor, math.min
local concat, sort = table.concat, table.sort
local rep, sub = string.rep, string.sub

local M = {}

local CHUNK = 65536
local SETTLE_POLL = 0.01 -- seconds between two looks of wait_until (settle, written, an until_released delay)

-- Delayed requests of this worker now sleeping (the stand-in runs one worker). Not in a shared dict: a reset must
-- not forget a request that still sleeps, since it acts on the state when it wakes.
local sleeping = 0
-- Bumped by POST /_standin/release: a delay with "until_released" ends early when it changes.
local releases = 0
-- Huge answers of this worker still being written; what each one wrote goes into the shared dict (under
-- "written:*", which a reset forgets, as it forgets the requests).
local writing = 0
local DICT = ngx.shared.standin

-- Each action kind and the keys it may carry besides its own; "delay" goes with any of them or alone.
local KINDS = {
  errcode = { errmsg = true },
  status = { body = true, content_type = true },
  close = {},
  truncate = {},
  huge = { chunked = true },
  expire_token = {},
  settle = {},
  reset = {},
  written = {},
  lose_answer = {},
}

local KIND_ORDER = { "errcode", "status", "close", "truncate", "reset", "huge", "expire_token", "settle", "written",
  "lose_answer" }

local function is_integer(v)
  return type(v) == "number" and v == floor(v)
end

-- The action as JSON text to queue, or nil, err.
function M.check(action)
  if type(action) ~= "table" then
    return nil, "action must be an object"
  end
  local kind
  for _, name in ipairs(KIND_ORDER) do
    if action[name] ~= nil then
      if kind then
        return nil, "action has both " .. kind .. " and " .. name
      end
      kind = name
    end
  end
  local unknown = {}
  for key in pairs(action) do
    if type(key) ~= "string"
        or not (key == "delay" or key == "until_released" or KINDS[key] or (kind and KINDS[kind][key])) then
      unknown[#unknown + 1] = tostring(key)
    end
  end
  if #unknown > 0 then
    sort(unknown)
    return nil, "action has an unknown key: " .. unknown[1]
  end
  if action.delay ~= nil and (type(action.delay) ~= "number" or action.delay < 0 or action.delay > 300) then
    return nil, "delay must be a number of seconds, 0 to 300"
  end
  if action.until_released ~= nil and (action.until_released ~= true or action.delay == nil) then
    return nil, "until_released must be true, with a delay"
  end
  if not kind and action.delay == nil then
    -- (spec/standin_spec.lua holds this text; it names the first kinds only)
    return nil, "action needs one of errcode, status, delay, close, truncate, huge, expire_token"
  end
  if kind == "errcode" then
    if not is_integer(action.errcode) then
      return nil, "errcode must be an integer"
    end
    if action.errmsg ~= nil and type(action.errmsg) ~= "string" then
      return nil, "errmsg must be a string"
    end
  elseif kind == "status" then
    if not is_integer(action.status) or action.status < 200 or action.status > 599 then
      return nil, "status must be an integer from 200 to 599"
    end
    if action.content_type ~= nil and type(action.content_type) ~= "string" then
      return nil, "content_type must be a string"
    end
    if action.body ~= nil and type(action.body) ~= "string" then
      -- a JSON value given as such is answered as its JSON text
      local text, err = cjson.encode(action.body)
      if not text then
        return nil, "body: " .. err
      end
      action.body = text
    end
  elseif kind == "close" or kind == "truncate" or kind == "reset" or kind == "expire_token" or kind == "lose_answer"
  then
    if action[kind] ~= true then
      return nil, kind .. " must be true"
    end
  elseif kind == "huge" then
    if not is_integer(action.huge) or action.huge < 0 then
      return nil, "huge must be a number of bytes"
    end
    if action.chunked ~= nil and type(action.chunked) ~= "boolean" then
      return nil, "chunked must be true or false"
    end
  elseif kind == "settle" or kind == "written" then
    if type(action[kind]) ~= "number" or action[kind] < 0 or action[kind] > 300 then
      return nil, kind .. " must be a number of seconds, 0 to 300"
    end
    if action.delay ~= nil then
      return nil, kind .. " takes no delay"
    end
  end
  return cjson.encode(action)
end

local JSON = "application/json; charset=utf-8"

-- A 200 announcing 72 bytes, of which the first 36 go out (and are handed to the connection).
local function half_answer()
  local body = '{"errcode":0,"errmsg":"ok","note":"the stand-in cuts this answer short"}'
  ngx.status = 200
  ngx.header["Content-Type"] = JSON
  ngx.header["Content-Length"] = #body
  ngx.print(sub(body, 1, floor(#body / 2)))
  ngx.flush(true)
end

local function truncate()
  half_answer()
  -- NGX_ERROR after the headers are out closes the connection without finishing the body
  return ngx.exit(ngx.ERROR)
end

-- LuaJIT FFI for the reset action: SO_LINGER with a zero timeout makes close() send a TCP RST instead of a FIN.
-- ngx_lua does not hand out the descriptor of the client connection, so it is found by its two ports.
local ffi = require "ffi"
local bit = require "bit"
pcall(ffi.cdef, [[
  struct standin_linger { int l_onoff; int l_linger; };
  struct standin_sockaddr_in { uint16_t family; uint16_t port; uint32_t addr; uint8_t zero[8]; };
]])
pcall(ffi.cdef, "int getsockname(int fd, void *addr, uint32_t *len);")
pcall(ffi.cdef, "int getpeername(int fd, void *addr, uint32_t *len);")
pcall(ffi.cdef, "int setsockopt(int fd, int level, int name, const void *value, uint32_t len);")
local AF_INET, SOL_SOCKET, SO_LINGER = 2, 1, 13
local MAX_FD = 8192 -- worker_rlimit_nofile

local function port_of(sockaddr)
  local p = sockaddr.port -- network byte order
  return bit.bor(bit.lshift(bit.band(p, 0xff), 8), bit.rshift(p, 8))
end

-- The descriptor of this request's client connection (IPv4: the stand-in listens on 127.0.0.1), or nil.
local function client_fd()
  local local_port, remote_port = tonumber(ngx.var.server_port), tonumber(ngx.var.remote_port)
  local addr = ffi.new("struct standin_sockaddr_in[8]") -- room for any address family: only AF_INET is read
  local len = ffi.new("uint32_t[1]")
  for fd = 3, MAX_FD do
    len[0] = ffi.sizeof(addr)
    if ffi.C.getsockname(fd, addr, len) == 0 and addr[0].family == AF_INET and port_of(addr[0]) == local_port then
      len[0] = ffi.sizeof(addr)
      if ffi.C.getpeername(fd, addr, len) == 0 and addr[0].family == AF_INET and port_of(addr[0]) == remote_port
      then
        return fd
      end
    end
  end
  return nil
end

-- Like truncate, but the connection ends with a TCP reset (RST), as a crashing server or a middlebox sends it.
local function reset()
  half_answer()
  local fd = client_fd()
  if not fd then
    ngx.log(ngx.ERR, "standin: reset: cannot find the client connection")
    return ngx.exit(ngx.ERROR)
  end
  local linger = ffi.new("struct standin_linger", 1, 0)
  if ffi.C.setsockopt(fd, SOL_SOCKET, SO_LINGER, linger, ffi.sizeof(linger)) ~= 0 then
    ngx.log(ngx.ERR, "standin: reset: setsockopt(SO_LINGER) failed")
  end
  -- nginx closes the descriptor now, without a shutdown(): with that linger, the kernel sends the RST
  return ngx.exit(ngx.ERROR)
end

-- Looks every SETTLE_POLL seconds (yielding meanwhile) until done() or `limit` seconds have passed; returns done().
local function wait_until(done, limit)
  local deadline = ngx.now() + limit
  while not done() and ngx.now() < deadline do
    ngx.sleep(SETTLE_POLL)
    ngx.update_time()
  end
  return done()
end

-- A 200 of exactly n bytes, a JSON document when n leaves room for one, written in chunks so that 100 MB never
-- sit in memory. Chunked: without Content-Length (HTTP/1.1 chunked transfer encoding), so that a client learns the
-- size only while the body arrives and has to stop reading at its cap. How many bytes went out (were handed to the
-- connection) before the client hung up is kept for the written action.
local function huge(n, chunked)
  local head, tail = '{"errcode":0,"errmsg":"ok","padding":"', '"}'
  if n < #head + #tail then
    head, tail = "", ""
  end
  ngx.status = 200
  ngx.header["Content-Type"] = JSON
  if not chunked then
    ngx.header["Content-Length"] = n
  end
  writing = writing + 1
  local chunk = rep("x", CHUNK)
  local left = n - #head - #tail
  local ok = ngx.print(head) and ngx.flush(true)
  local sent = ok and #head or 0
  while ok and left > 0 do
    local k = min(left, CHUNK)
    ok = ngx.print(k == CHUNK and chunk or sub(chunk, 1, k))
    -- waiting for the socket keeps at most one chunk buffered; it fails when the client has gone
    ok = ok and ngx.flush(true)
    if ok then
      sent = sent + k
    end
    left = left - k
  end
  ok = ok and ngx.print(tail) and ngx.flush(true)
  if ok then
    sent = sent + #tail
  end
  local i = DICT:incr("written:n", 1, 0)
  DICT:set("written:" .. i, sent)
  writing = writing - 1
  if not ok then
    return ngx.exit(ngx.ERROR)
  end
  return ngx.exit(200)
end

-- Waits until no huge answer is still being written (at most `limit` seconds), then answers how many bytes each
-- huge answer since the last reset wrote, in order.
local function written(limit)
  wait_until(function() return writing == 0 end, limit)
  local list = {}
  for i = 1, DICT:get("written:n") or 0 do
    list[i] = tostring(DICT:get("written:" .. i) or 0)
  end
  if writing > 0 then
    return http.json('{"ok":false,"writing":' .. writing .. ',"written":[' .. concat(list, ",") .. "]}", 504)
  end
  return http.json('{"ok":true,"written":[' .. concat(list, ",") .. "]}")
end

-- Waits until no delayed request sleeps any more (at most `limit` seconds), then answers how many slept when it
-- began. A request that wakes runs its normal answer, and with it every change it makes to the state (a delivery,
-- an expired token), before it can yield again: once `sleeping` is 0 those changes are all made.
local function settle(limit)
  local waited_for = sleeping
  if not wait_until(function() return sleeping == 0 end, limit) then
    return http.json(cjson.encode({ ok = false, waited_for = waited_for, sleeping = sleeping }), 504)
  end
  return http.json(cjson.encode({ ok = true, waited_for = waited_for }))
end

-- Ends the delays with "until_released" that are under way now; returns how many there were.
function M.release()
  releases = releases + 1
  return sleeping
end

-- Plays an action (JSON text from the queue). Returns true when it answered the request, false when the normal
-- answer should follow.
function M.play(action_json)
  local action = cjson.decode(action_json)
  if action.delay then
    -- ngx.sleep yields to the event loop, so a delayed request holds nothing else up
    sleeping = sleeping + 1
    local ok, err
    if action.until_released then
      local seen = releases
      ok, err = pcall(wait_until, function() return releases ~= seen end, action.delay)
    else
      ok, err = pcall(ngx.sleep, action.delay)
    end
    sleeping = sleeping - 1
    if not ok then
      error(err, 0)
    end
  end
  if action.settle then
    settle(action.settle)
    return true
  end
  if action.written then
    written(action.written)
    return true
  end
  if action.errcode then
    http.wecom_error(action.errcode, action.errmsg or "")
    return true
  end
  if action.status then
    local body = action.body or ""
    local content_type = action.content_type
    if not content_type then
      content_type = cjson.decode(body) ~= nil and JSON or "text/plain; charset=utf-8"
    end
    http.send(action.status, content_type, body)
    return true
  end
  if action.close then
    ngx.exit(444)
    return true
  end
  if action.truncate then
    truncate()
    return true
  end
  if action.reset then
    reset()
    return true
  end
  if action.huge then
    huge(action.huge, action.chunked)
    return true
  end
  if action.expire_token then
    state.expire_tokens()
  end
  if action.lose_answer then
    -- the request is handled (a send delivered), then its answer dropped: see http.send
    ngx.ctx.lose_answer = true
  end
  return false
end

return M
