--- The OpenResty transport: one HTTP/1.1 exchange per `request` over `ngx.socket.tcp`, so a request handler
-- waiting for WeCom yields to the nginx event loop instead of blocking the worker. Connections go back to
-- nginx's keep-alive pool (one pool per scheme, host, port and verification mode). Pure Lua: `wechat.core`
-- does no I/O on this path. It knows nothing of access tokens and retries nothing, except that a request on a
-- pooled connection the server dropped just as it was reused is sent once more, on a new connection (as libcurl
-- does).
--
-- TLS certificates are checked against nginx's `lua_ssl_trusted_certificate` (the `cafile` option of the curl
-- transport has no per-socket equivalent in ngx_lua and is ignored here).
local errors = require "wechat.work.errors"
local nginx = require "wechat.work.nginx"
local request = require "wechat.work.transport.request"
local check_request, check_media = request.check, request.check_media

local collectgarbage, error, pcall, require, setmetatable, tonumber, tostring, type =
  collectgarbage, error, pcall, require, setmetatable, tonumber, tostring, type
local floor, min = math.floor, math.min
local io_open = io.open
local concat = table.concat
local byte, find, format, gsub, lower, match, sub = string.byte, string.find, string.format, string.gsub,
  string.lower, string.match, string.sub

local M = { _VERSION = "0.1.0" }

local USER_AGENT = "lua-wechat-work/" .. M._VERSION
local DEFAULT_TIMEOUT = 10                -- seconds
local DEFAULT_MAX_RESPONSE = 4 * 1024 * 1024
local MAX_MAX_RESPONSE = 1024 * 1024 * 1024
local MAX_SECONDS = 86400
local DEFAULT_KEEPALIVE_TIMEOUT = 60      -- seconds a pooled connection may stay idle
local DEFAULT_KEEPALIVE_POOL = 32         -- connections per pool and worker
local MAX_HEADER_BYTES = 64 * 1024        -- status line and headers together
local MAX_HEADERS = 100
local MAX_CHUNK_LINE = 1024               -- chunk size and extensions
local READ_CHUNK = 16 * 1024              -- for bodies delimited by the end of the connection


local Transport = {}
Transport.__index = Transport

local function argerror(fname, argn, fmt, ...)
  error(format("bad argument #%d to '%s' (%s)", argn, fname, format(fmt, ...)), 3)
end

local function opt_seconds(opts, name, default)
  local v = opts[name]
  if v == nil then
    return default
  end
  if type(v) ~= "number" then
    argerror("new", 1, "opts.%s: number of seconds expected, got %s", name, type(v))
  end
  if not (v > 0 and v <= MAX_SECONDS) then
    argerror("new", 1, "opts.%s: must be > 0 and <= %d seconds, got %s", name, MAX_SECONDS, tostring(v))
  end
  return v
end

local function opt_integer(opts, name, default, min_value, max_value)
  local v = opts[name]
  if v == nil then
    return default
  end
  if type(v) ~= "number" or v ~= floor(v) or v < min_value or v > max_value then
    argerror("new", 1, "opts.%s: must be an integer %d..%d, got %s", name, min_value, max_value,
      type(v) == "number" and tostring(v) or type(v))
  end
  return v
end

local function ms(seconds)
  local v = floor(seconds * 1000 + 0.5)
  return v < 1 and 1 or v
end

--- Makes a transport. Cheap and I/O free: it may be made at module load or in init_by_lua.
-- @param opts nil or a table; other keys than these are ignored (the whole client options table may be passed):
--   `timeout` seconds for each send and each read (number, default 10), `connect_timeout` (default `timeout`),
--   `ssl_verify` (default true: the peer certificate must chain to `lua_ssl_trusted_certificate` and name the
--   host; false skips both), `max_response` body bytes at most (default 4 MiB), `keepalive_timeout` seconds a
--   pooled connection stays idle (default 60), `keepalive_pool` connections kept per pool and worker
--   (default 32), `cafile` (string, accepted for option compatibility, ignored: nginx takes its trust store
--   from `lua_ssl_trusted_certificate`).
-- @return the transport
-- @raise on a wrong option, naming it, or outside OpenResty
function M.new(opts)
  if opts ~= nil and type(opts) ~= "table" then
    argerror("new", 1, "table or nil expected, got %s", type(opts))
  end
  opts = opts or {}
  local ngx = nginx.get()
  if not ngx then
    error("the cosocket transport runs inside OpenResty (ngx_http_lua) only; use transport = \"curl\" here", 2)
  end
  local timeout = opt_seconds(opts, "timeout", DEFAULT_TIMEOUT)
  local connect_timeout = opt_seconds(opts, "connect_timeout", timeout)
  local keepalive_timeout = opt_seconds(opts, "keepalive_timeout", DEFAULT_KEEPALIVE_TIMEOUT)
  local max_response = opt_integer(opts, "max_response", DEFAULT_MAX_RESPONSE, 1, MAX_MAX_RESPONSE)
  local keepalive_pool = opt_integer(opts, "keepalive_pool", DEFAULT_KEEPALIVE_POOL, 1, 65535)
  if opts.ssl_verify ~= nil and type(opts.ssl_verify) ~= "boolean" then
    argerror("new", 1, "opts.ssl_verify: boolean expected, got %s", type(opts.ssl_verify))
  end
  if opts.cafile ~= nil and type(opts.cafile) ~= "string" then
    argerror("new", 1, "opts.cafile: string expected, got %s", type(opts.cafile))
  end
  return setmetatable({
    ngx = ngx,
    connect_ms = ms(connect_timeout),
    io_ms = ms(timeout),
    keepalive_ms = ms(keepalive_timeout),
    keepalive_pool = keepalive_pool,
    max_response = max_response,
    ssl_verify = opts.ssl_verify ~= false,
    sessions = {},     -- pool name -> TLS session, to shorten the handshake of the next new connection
    destinations = {}, -- url -> what a request to it needs (see destination)
    destination_count = 0,
    requests = 0,
    connects = 0,
  }, Transport)
end

-- scheme, host (for connect), port, Host header, path with query; nil when the URL is not one we can use.
local function parse_url(url)
  local scheme, authority, rest = match(url, "^([Hh][Tt][Tt][Pp][Ss]?)://([^/?#]+)(.*)$")
  if not scheme or find(authority, "@", 1, true) then
    return nil
  end
  scheme = lower(scheme)
  local host, port
  if byte(authority, 1) == 91 then -- "[": an IPv6 literal
    host, port = match(authority, "^(%[[%x:.]+%]):?(%d*)$")
  else
    host, port = match(authority, "^([^:]+):?(%d*)$")
  end
  if not host then
    return nil
  end
  local default_port = scheme == "https" and 443 or 80
  port = port ~= "" and tonumber(port) or default_port
  if port < 1 or port > 65535 then
    return nil
  end
  rest = match(rest, "^[^#]*")
  if rest == "" or byte(rest, 1) == 63 then -- "?"
    rest = "/" .. rest
  end
  return scheme, host, port, authority, rest
end

local function fail(reason, message)
  return nil, errors.new(errors.TRANSPORT, message, { reason = reason })
end

-- Cosocket messages are short words ("timeout", "closed", "connection refused"); they name hosts at most,
-- never the request line, so the query (the access token) cannot reach them.
local function io_fail(sock, what, err, reason)
  sock:close()
  if err == "timeout" then
    return fail("timeout", what .. ": timeout")
  end
  return fail(reason, what .. ": " .. tostring(err))
end

-- The header fields the exchange acts on; a media exchange also hands the content's to its caller.
local KEPT_HEADERS = { ["connection"] = true, ["transfer-encoding"] = true, ["content-length"] = true }
local MEDIA_KEPT_HEADERS = { ["connection"] = true, ["transfer-encoding"] = true, ["content-length"] = true,
  ["content-type"] = true, ["content-disposition"] = true, ["content-range"] = true }

-- Status and header fields, read in one go up to the empty line (at most max_bytes). On failure, also true when
-- not one byte of the answer came.
local function read_headers(sock, max_bytes, kept)
  local reader = sock:receiveuntil("\r\n\r\n")
  local head, err, partial = reader(max_bytes)
  if not head then
    return nil, err, nil, partial == nil or partial == ""
  end
  -- A shorter answer means the reader stopped at the empty line (and consumed it); one of exactly max_bytes
  -- may have stopped for the size: then the empty line must come next.
  if #head >= max_bytes then
    local rest
    rest, err = reader(1)
    if rest ~= nil or err then
      return nil, err or "response headers too large"
    end
  end
  local minor, status = match(head, "^HTTP/1%.([01]) (%d%d%d)")
  if not minor then
    return nil, "bad status line"
  end
  -- The lines after the status line, split by hand (string.gmatch would keep LuaJIT from compiling this loop).
  -- Every line must be a header field; only the three the exchange acts on are kept, by lower-case name.
  local headers, count = {}, 0
  local pos = find(head, "\n", 1, true)
  while pos do
    local next_pos = find(head, "\n", pos + 1, true)
    count = count + 1
    if count > MAX_HEADERS then
      return nil, "response headers too large"
    end
    local colon = find(head, ":", pos + 1, true)
    if not colon or (next_pos and colon > next_pos) then
      return nil, "bad header line"
    end
    local name = sub(head, pos + 1, colon - 1)
    -- a name, then optional white space before the colon; never white space inside or before the name
    local name_end = find(name, "%s")
    if name_end then
      if name_end == 1 or find(name, "%S", name_end) then
        return nil, "bad header line"
      end
      name = sub(name, 1, name_end - 1)
    elseif name == "" then
      return nil, "bad header line"
    end
    name = lower(name)
    if kept[name] then
      local value = match(sub(head, colon + 1, (next_pos or 0) - 1), "^%s*(.-)%s*$")
      local seen = headers[name]
      headers[name] = seen and (seen .. ", " .. value) or value
    end
    pos = next_pos
  end
  return tonumber(status), minor == "1", headers
end

-- One line, without its line break, of at most max bytes (a longer one is an error, not a bigger buffer).
local function read_line(sock, max)
  local reader = sock:receiveuntil("\n")
  local line, err = reader(max)
  if not line then
    return nil, err
  end
  if #line >= max then -- stopped for the size, not (yet) at the line break
    local rest
    rest, err = reader(1)
    if rest ~= nil or err then
      return nil, err or "line too long"
    end
  end
  if byte(line, -1) == 13 then -- "\r"
    line = sub(line, 1, -2)
  end
  return line
end

-- The size of the next chunk of a chunked answer, from its line (extensions ignored), or nil, err.
local function read_chunk_size(sock)
  local line, err = read_line(sock, MAX_CHUNK_LINE)
  if not line then
    return nil, err
  end
  local size = match(line, "^%s*(%x+)")
  size = size and #size <= 8 and tonumber(size, 16)
  if not size then
    return nil, "bad chunk size"
  end
  return size
end

-- Reads the trailer fields after the last chunk, if any, up to the empty line: true, or nil, err.
local function skip_trailer(sock)
  local used = 0
  for _ = 1, MAX_HEADERS do
    local line, err = read_line(sock, MAX_HEADER_BYTES)
    if not line then
      return nil, err
    end
    if line == "" then
      return true
    end
    used = used + #line
    if used > MAX_HEADER_BYTES then
      break
    end
  end
  return nil, "trailer fields too large"
end

-- The body of a chunked answer.
local function read_chunked(sock, max)
  local parts, n, total = {}, 0, 0
  while true do
    local size, err = read_chunk_size(sock)
    if not size then
      return nil, err
    end
    if size == 0 then
      break
    end
    total = total + size
    if total > max then
      return nil, "too large"
    end
    local data
    data, err = sock:receive(size)
    if not data then
      return nil, err
    end
    n = n + 1
    parts[n] = data
    local line
    line, err = read_line(sock, MAX_CHUNK_LINE)
    if line ~= "" then
      return nil, err or "bad chunk end"
    end
  end
  local ok, err = skip_trailer(sock)
  if not ok then
    return nil, err
  end
  return concat(parts, "", 1, n)
end

local function read_until_close(sock, max)
  local parts, n, total = {}, 0, 0
  while true do
    local data, err, partial = sock:receive(READ_CHUNK)
    data = data or partial
    if data and data ~= "" then
      total = total + #data
      if total > max then
        return nil, "too large"
      end
      n = n + 1
      parts[n] = data
    end
    if err == "closed" then
      return concat(parts, "", 1, n)
    end
    if err then
      return nil, err
    end
  end
end


-- The reason of a failed handshake that lua-resty-core 0.1.25 raised as "assertion failed!" instead of returning
-- it (a verification that failed while the handshake completed at once): the C side has just left it in the
-- shared FFI error pointer.
local function raised_handshake_reason()
  local ok_ffi, ffi = pcall(require, "ffi")
  local ok_base, base = pcall(require, "resty.core.base")
  if ok_ffi and ok_base and type(base.get_errmsg_ptr) == "function" then
    local ptr = base.get_errmsg_ptr()
    if ptr[0] ~= nil then
      return ffi.string(ptr[0])
    end
  end
  return "handshake failed"
end

-- TLS on a new connection. SNI and the name check take a host name: nginx checks names only (X509_check_host),
-- so for an IP literal (no name to give) the chain is verified but not the address.
local function handshake(sock, host, session, verify)
  local server_name = not find(host, "^[%d.]+$") and byte(host, 1) ~= 91 and host or nil
  local ok, new_session, err = pcall(sock.sslhandshake, sock, session, server_name, verify)
  if not ok then
    new_session, err = nil, raised_handshake_reason()
  end
  if new_session then
    return new_session
  end
  if err == "timeout" then
    -- no byte of the request went out: a connect failure, which any request may retry
    return fail("connect", "TLS handshake with " .. host .. ": timeout")
  end
  -- "21: unable to verify ...": the OpenSSL code is not there on every path, so it is never kept
  err = gsub(tostring(err), "^%d+: ", "")
  return fail("tls", format("TLS handshake with %s failed: %s%s", host, err,
    verify and " (certificates are checked against lua_ssl_trusted_certificate)" or ""))
end

-- A connected socket (TLS done) from the pool or new, and how often it was reused before; or nil, err.
-- fresh: a new connection for sure. It is made under a pool name of its own that never holds a connection (it is
-- closed after its one exchange), since the pool proper may hold more connections the server has dropped.
local function open(self, dest, fresh)
  local sock = self.ngx.socket.tcp()
  sock:settimeouts(self.connect_ms, self.io_ms, self.io_ms)
  local host, port = dest.host, dest.port
  local ok, err = sock:connect(host, port, fresh and dest.fresh_opts or dest.pool_opts)
  if not ok then
    -- a connect timeout too is "connect": nothing reached WeCom
    local reason = "connect"
    if find(err, "resolve", 1, true) then
      reason = "resolve"
    end
    return fail(reason, format("cannot connect to %s:%d: %s", host, port, tostring(err)))
  end
  local reused = sock:getreusedtimes() or 0
  if reused == 0 then
    self.connects = self.connects + 1
    if dest.tls then
      local pool = dest.pool
      local session, herr = handshake(sock, host, self.sessions[pool], self.ssl_verify)
      if not session then
        sock:close()
        self.sessions[pool] = nil
        return nil, herr
      end
      self.sessions[pool] = session
    end
  end
  return sock, reused
end

-- What a cosocket says when the peer had closed a pooled connection before our request: a send on it fails so, or
-- the answer's first read does (for a read, only when not one byte came).
local function stale_send(err)
  return err == "closed" or err == "broken pipe" or err == "connection reset by peer"
end

local function stale_receive(err)
  return err == "closed" or err == "connection reset by peer"
end

-- Sends the request and reads the answer; the connection goes back to the pool when `keep` is true and HTTP
-- allows. On failure also returns true when nothing at all came back and the failure looks like the peer having
-- closed the connection while it sat in the pool.
local function exchange(self, sock, head, keep)
  local ok, err = sock:send(head)
  if not ok then
    local stale = stale_send(err)
    local _, e = io_fail(sock, "send", err, "send")
    return nil, e, stale
  end

  local status, http11, headers, first = read_headers(sock, MAX_HEADER_BYTES, KEPT_HEADERS)
  -- 1xx interim answers come before the real one (a loop entered only then: see exchange_retrying in work.lua)
  while status and status < 200 do
    status, http11, headers, first = read_headers(sock, MAX_HEADER_BYTES, KEPT_HEADERS)
  end
  if not status then
    local stale = first and stale_receive(http11)
    local _, e = io_fail(sock, "receive", http11, "recv")
    return nil, e, stale
  end

  local max = self.max_response
  local connection = lower(headers["connection"] or "")
  local keepalive = http11 and not find(connection, "close", 1, true)
    or (not http11 and find(connection, "keep-alive", 1, true) ~= nil)
  local te = headers["transfer-encoding"]
  local body
  if status == 204 or status == 304 then
    body = ""
  elseif te and lower(te) ~= "identity" then
    if not find(lower(te), "chunked%s*$") then
      sock:close()
      return fail("recv", "unsupported transfer-encoding")
    end
    body, err = read_chunked(sock, max)
  elseif headers["content-length"] then
    local length = match(headers["content-length"], "^%s*(%d+)%s*$")
    length = length and #length <= 15 and tonumber(length)
    if not length then
      sock:close()
      return fail("recv", "bad Content-Length")
    end
    if length > max then
      err = "too large"
    elseif length == 0 then
      body = ""
    else
      body, err = sock:receive(length)
    end
  else
    keepalive = false
    body, err = read_until_close(sock, max)
  end
  if not body then
    if err == "too large" then
      sock:close()
      return fail("too_large", format("response too large (over %d bytes)", max))
    end
    return io_fail(sock, "receive", err, "recv")
  end

  if not (keep and keepalive and sock:setkeepalive(self.keepalive_ms, self.keepalive_pool)) then
    sock:close()
  end
  return { status = status, body = body }
end

-- The "phase" error of an nginx phase without cosockets, or nil where they work.
local function phase_error(self)
  local phase, cosockets = nginx.phase(self.ngx)
  if not cosockets then
    return errors.new(errors.PHASE, "cannot send from the nginx '" .. tostring(phase)
      .. "' phase: cosockets are disabled there; use a timer (ngx.timer.at) or another phase")
  end
end

-- Runs run_exchange(self, sock, head, keep, req) (exchange or media_exchange) over a pooled connection to dest, or
-- a new one when fresh; when a pooled connection proves dead before any answer, once more over a new one, never
-- pooled again. The answer or error, and true when it came from that second exchange (its error says resent).
local function exchange_resending(self, dest, run_exchange, head, fresh, req)
  self.requests = self.requests + 1
  local sock, reused = open(self, dest, fresh)
  if not sock then
    return nil, reused
  end
  local res, err, stale = run_exchange(self, sock, head, not fresh, req)
  if res or not (stale and reused > 0) then
    return res, err
  end
  sock, err = open(self, dest, true)
  if not sock then
    return nil, err
  end
  res, err = run_exchange(self, sock, head, false, req)
  -- the request may have reached the server twice already
  if res then
    res.resent = true
  else
    err.resent = true
  end
  return res, err
end

-- Destinations kept per transport: a client posts to a few URLs, each the same until the token changes.
local MAX_DESTINATIONS = 8

-- What a request to url needs: where to connect, the connection pool, the request head. Raises at `level`
-- (naming the transport method fname) when the URL is not one we can use.
local function make_destination(self, url, fname, level)
  local scheme, host, port, authority, target = parse_url(url)
  if not scheme then
    error(format("bad argument #1 to '%s' (req.url: http:// or https:// URL expected)", fname), level)
  end
  local tls = scheme == "https"
  local pool = format("wechat:%s:%s:%d:%s", scheme, host, port, (tls and not self.ssl_verify) and "noverify" or "")
  local common = " HTTP/1.1\r\nHost: " .. authority .. "\r\nUser-Agent: " .. USER_AGENT
    .. "\r\nAccept: application/json\r\nConnection: keep-alive\r\n"
  return {
    host = host, port = port, tls = tls, pool = pool, authority = authority, target = target,
    pool_opts = { pool = pool },
    -- a new connection for sure: a pool name of its own that never holds one (see open)
    fresh_opts = { pool = pool .. "#fresh" },
    get_head = "GET " .. target .. common .. "\r\n",
    post_head = "POST " .. target .. common .. "Content-Type: application/json; charset=utf-8\r\nContent-Length: ",
  }
end

-- make_destination, worked out once per URL (the same until the token changes).
local function destination(self, url)
  -- level 4: make_destination, destination, request, and then the code that called request
  local dest = make_destination(self, url, "request", 4)
  if self.destination_count >= MAX_DESTINATIONS then
    self.destinations, self.destination_count = {}, 0
  end
  self.destinations[url] = dest
  self.destination_count = self.destination_count + 1
  return dest
end

--- Makes one HTTP exchange.
-- Only in the nginx phases that allow cosockets (rewrite, server_rewrite, access, content, timer,
-- ssl_client_hello, ssl_cert, ssl_session_fetch); elsewhere it returns a "phase" error at once.
-- A request that went over a pooled connection the server had closed (not one byte of answer came) is sent once
-- more, over a new connection, like libcurl does (never over another pooled one, which may be just as dead); the
-- answer or the error of that second exchange says `resent = true`. Otherwise nothing is retried. With
-- `req.fresh = true` the request goes over a new connection (closed after it), so it is never sent twice.
-- @param req `{method = "GET" | "POST", url = "http(s)://...", body = string | nil, fresh = boolean | nil}`; a POST
--   is sent as `Content-Type: application/json; charset=utf-8`, a nil POST body as an empty one.
-- @return `{status = N, body = "..."}` for any HTTP answer (any status), or nil and an error: kind "phase"
--   (wrong nginx phase) or "transport" with `reason` one of "connect", "timeout", "tls", "resolve",
--   "too_large", "send", "recv", "other"; its message never holds the URL's query (where the access token is).
-- @raise on a wrong request table
function Transport:request(req)
  local method, url, body = check_request(req)
  local perr = phase_error(self)
  if perr then
    return nil, perr
  end
  local dest = self.destinations[url] or destination(self, url)
  local head
  if method == "POST" then
    body = body or ""
    head = { dest.post_head, tostring(#body), "\r\n\r\n", body }
  else
    head = dest.get_head
  end

  return exchange_resending(self, dest, exchange, head, req.fresh == true)
end

--- Lets the other light threads of this worker run for a moment (1 ms), e.g. while another one fetches the
-- access token this one needs.
-- @return true, or false in a phase where nginx cannot sleep (the caller must not wait any longer)
function Transport:pause()
  local ngx = self.ngx
  local _, cosockets = nginx.phase(ngx)
  if not cosockets then
    return false
  end
  ngx.sleep(0.001)
  return true
end

--- Runs `tasks` (an array of functions) at once in light threads (`ngx.thread.spawn`), at most `limit` at a
-- time; their requests over this transport wait on cosockets, so the worker serves other requests meanwhile.
-- In a phase without cosockets they run one after the other (each gets its "phase" error from `request`).
-- @return an array: entry i holds the values task i returned, packed (`{ ... }`)
-- @raise when a task raises (the other threads are killed)
function Transport:run(tasks, limit)
  local ngx = self.ngx
  local n = #tasks
  local results = {}
  local _, cosockets = nginx.phase(ngx)
  if not cosockets then
    for i = 1, n do
      results[i] = { tasks[i]() }
    end
    return results
  end
  local next_task = 1
  local function work()
    while next_task <= n do
      local i = next_task
      next_task = i + 1
      results[i] = { tasks[i]() }
    end
  end
  local spawn, wait, kill = ngx.thread.spawn, ngx.thread.wait, ngx.thread.kill
  local threads = {}
  for k = 1, min(limit, n) do
    threads[k] = spawn(work)
  end
  for k = 1, #threads do
    local ok, err = wait(threads[k])
    if not ok then
      for j = k + 1, #threads do
        kill(threads[j])
      end
      error(err, 0)
    end
  end
  return results
end

-- --- media: multipart uploads sent from a file in pieces, downloads written to a file as they arrive ----------

local MEDIA_PIECE = 64 * 1024
local GC_STEP = 64 -- KiB of collector work per piece moved

-- WeCom answers a failed media/get with JSON (or text): such an answer, or one that is not 200/206, is read into
-- memory for the caller; content goes to the sink.
local function media_is_content(status, headers)
  if status ~= 200 and status ~= 206 then
    return false
  end
  local content_type = lower(headers["content-type"] or "")
  return not (find(content_type, "^application/json") or find(content_type, "^text/"))
end

-- Sends head (request line, header fields, the part's header) and then the part's bytes and tail. A failure of
-- the file is reported as its own reason, with the socket closed.
local function send_upload(sock, head, upload, tail)
  local ok, err = sock:send(head)
  if ok and upload.data then
    ok, err = sock:send(upload.data)
  elseif ok then
    local file, ferr = io_open(upload.path, "rb")
    if not file then
      sock:close()
      return fail("send", "cannot open the file to upload: " .. tostring(ferr))
    end
    local left = upload.size
    while ok and left > 0 do
      local piece = file:read(left < MEDIA_PIECE and left or MEDIA_PIECE)
      if not piece then
        file:close()
        sock:close()
        return fail("send", "the file to upload ended early or could not be read")
      end
      left = left - #piece
      ok, err = sock:send(piece)
      -- each piece is garbage once sent: collected as it comes, or 20 MB of them could pile up before the next cycle
      piece = nil -- luacheck: ignore 311
      collectgarbage("step", GC_STEP)
    end
    file:close()
  end
  if ok then
    ok, err = sock:send(tail)
  end
  if not ok then
    local stale = stale_send(err)
    local _, e = io_fail(sock, "send", err, "send")
    return nil, e, stale
  end
  return true
end

-- Reads the body in pieces of at most MEDIA_PIECE, handing each to put (which returns true, or nil and an error of
-- its own); true when the body ended where HTTP says, else nil, err (err "too large" past max bytes).
local function read_body_pieces(sock, status, headers, max, put)
  local total = 0
  local function take(piece)
    total = total + #piece
    if total > max then
      return nil, "too large"
    end
    local ok, err = put(piece)
    collectgarbage("step", GC_STEP) -- as in send_upload: the pieces are garbage at once
    return ok, err
  end
  local function take_exactly(n)
    while n > 0 do
      local piece, err = sock:receive(n < MEDIA_PIECE and n or MEDIA_PIECE)
      if not piece then
        return nil, err
      end
      n = n - #piece
      local ok, perr = take(piece)
      if not ok then
        return nil, perr
      end
    end
    return true
  end
  if status == 204 or status == 304 then
    return true
  end
  local te = headers["transfer-encoding"]
  if te and lower(te) ~= "identity" then
    if not find(lower(te), "chunked%s*$") then
      return nil, "unsupported transfer-encoding"
    end
    while true do
      local size, err = read_chunk_size(sock)
      if not size then
        return nil, err
      end
      if size == 0 then
        return skip_trailer(sock)
      end
      local ok, line
      ok, err = take_exactly(size)
      if not ok then
        return nil, err
      end
      line, err = read_line(sock, MAX_CHUNK_LINE)
      if line ~= "" then
        return nil, err or "bad chunk end"
      end
    end
  end
  local length = headers["content-length"]
  if length then
    length = match(length, "^%s*(%d+)%s*$")
    length = length and #length <= 15 and tonumber(length)
    if not length then
      return nil, "bad Content-Length"
    end
    if length > max then
      return nil, "too large"
    end
    return take_exactly(length)
  end
  while true do
    local piece, err, partial = sock:receive(MEDIA_PIECE)
    piece = piece or partial
    if piece and piece ~= "" then
      local ok, perr = take(piece)
      if not ok then
        return nil, perr
      end
    end
    if err == "closed" then
      return true
    end
    if err then
      return nil, err
    end
  end
end

local function media_exchange(self, sock, head, keep, req)
  local upload = req.upload
  local ok, err, stale
  if upload then
    ok, err, stale = send_upload(sock, head, upload, req.tail)
  else
    ok, err = sock:send(head)
    if not ok then
      stale = stale_send(err)
      ok, err = io_fail(sock, "send", err, "send")
    end
  end
  if not ok then
    return nil, err, stale
  end
  local status, http11, headers, first
  repeat
    status, http11, headers, first = read_headers(sock, MAX_HEADER_BYTES, MEDIA_KEPT_HEADERS)
    if not status then
      -- an upload sent whole may have been acted on: it is never sent again on a new connection
      stale = not upload and first and stale_receive(http11)
      local _, e = io_fail(sock, "receive", http11, "recv")
      return nil, e, stale
    end
  until status >= 200

  local file, parts, n, size = nil, {}, 0, 0
  local put
  local content = media_is_content(status, headers)
  if req.sink and content then
    local ferr
    file, ferr = io_open(req.sink, "wb")
    if not file then
      sock:close()
      return fail("other", "cannot write the downloaded file: " .. tostring(ferr))
    end
    put = function(piece)
      size = size + #piece
      local written, werr = file:write(piece)
      if not written then
        return nil, "cannot write the downloaded file: " .. tostring(werr)
      end
      return true
    end
  else
    put = function(piece)
      size = size + #piece
      n = n + 1
      parts[n] = piece
      return true
    end
  end
  local max = content and req.max or self.max_response
  ok, err = read_body_pieces(sock, status, headers, max, put)
  if file then
    local closed, cerr = file:close()
    if ok and not closed then
      ok, err = nil, "cannot write the downloaded file: " .. tostring(cerr)
    end
  end
  if not ok then
    sock:close()
    if err == "too large" then
      return fail("too_large", format("response too large (over %d bytes)", max))
    end
    if find(err, "^cannot write") or find(err, "^unsupported") or find(err, "^bad ") then
      return fail(find(err, "^cannot write") and "other" or "recv", err)
    end
    return fail(err == "timeout" and "timeout" or "recv", "receive: " .. tostring(err))
  end
  local connection = lower(headers["connection"] or "")
  local keepalive = (http11 and not find(connection, "close", 1, true))
    or (not http11 and find(connection, "keep-alive", 1, true) ~= nil)
  local delimited = headers["transfer-encoding"] or headers["content-length"] or status == 204 or status == 304
  if not (keep and keepalive and delimited and sock:setkeepalive(self.keepalive_ms, self.keepalive_pool)) then
    sock:close()
  end
  return {
    status = status,
    body = not file and concat(parts, "", 1, n) or nil,
    size = size,
    content = content,
    headers = {
      ["content-type"] = headers["content-type"],
      ["content-disposition"] = headers["content-disposition"],
      ["content-range"] = headers["content-range"],
    },
  }
end

--- Makes one media exchange: a multipart upload sent from a file (or a string) in pieces, or a download whose body
-- goes to a file as it arrives; nothing of a file is held in memory. In the same nginx phases as `request`; a
-- pooled connection found dead is replaced once as there. `timeout` bounds each send and each read of a piece.
-- @param req `{ method, url, upload = { name, filename, path | data, size }, range =, sink =, max = }` (see
--   `wechat.work.transport.request.check_media`); `max` bounds content (a 200 or 206 that is not JSON or text),
--   default the transport's `max_response`, which bounds any other answer.
-- @return `{ status = N, body = string | nil, size = N, headers = { ["content-type"] =, ["content-disposition"] =,
--   ["content-range"] = }, content = true | false }` (content: a 200 or 206 that is neither JSON nor text):
--   `body` is nil when the answer went to `sink`; or nil and an error as `request`
--   returns
-- @raise on a wrong request table
function Transport:media(req)
  req = check_media(req)
  local perr = phase_error(self)
  if perr then
    return nil, perr
  end
  -- not kept among the destinations: every media_id makes another URL
  local dest = make_destination(self, req.url, "media", 3)
  local head = {
    req.method, " ", dest.target, " HTTP/1.1\r\nHost: ", dest.authority,
    "\r\nUser-Agent: ", USER_AGENT,
    "\r\nAccept: */*\r\nConnection: keep-alive\r\n",
  }
  if req.range then
    head[#head + 1] = "Range: " .. req.range .. "\r\n"
  end
  local upload = req.upload
  local exchange_req = { upload = upload, sink = req.sink, max = req.max }
  if upload then
    local part_head, tail, content_type = require("wechat.core").multipart_frame(upload.name, upload.filename,
      upload.size)
    exchange_req.tail = tail
    head[#head + 1] = "Content-Type: " .. content_type .. "\r\nContent-Length: "
      .. format("%d", #part_head + upload.size + #tail) .. "\r\n\r\n"
    head[#head + 1] = part_head
  elseif req.method == "POST" then
    head[#head + 1] = "Content-Length: 0\r\n\r\n"
  else
    head[#head + 1] = "\r\n"
  end
  head = concat(head)

  return exchange_resending(self, dest, media_exchange, head, false, exchange_req)
end

--- Counts since the transport was made, in this worker: `{requests = N, connects = M}`, where `connects` is
-- the number of new connections opened; fewer connects than requests means pooled connections were reused.
function Transport:stats()
  return { requests = self.requests, connects = self.connects }
end

--- Nothing to free: connections belong to nginx's pool. Present so `client:close()` works with any transport.
-- @return true
function Transport.close(_)
  return true
end

-- exposed for the specs of this module
M._parse_url = parse_url

return M
