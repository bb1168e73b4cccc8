--- The libcurl transport: one HTTP exchange per `request`, over a connection kept alive between requests.
-- libcurl opens the connection (DNS, TCP, TLS and its checks); the request is written and its answer read by
-- wechat.core itself over that connection, byte for byte the request libcurl would write (a third of the work of
-- curl_easy_perform). With a proxy in the environment (`http_proxy`, `https_proxy`, `all_proxy`), for URLs only
-- libcurl writes right, and inside `run`, libcurl makes the whole exchange. Blocking: for plain Lua programs, not
-- for OpenResty request handlers (use `wechat.work.transport.cosocket` there). It never retries and knows nothing
-- of access tokens.
local core = require "wechat.core"
local errors = require "wechat.work.errors"
local request = require "wechat.work.transport.request"
local check_request = request.check

local error, ipairs, pairs, pcall, setmetatable, tostring, type =
  error, ipairs, pairs, pcall, setmetatable, tostring, type
local format, gsub = string.format, string.gsub
local create, resume, running, status, yield =
  coroutine.create, coroutine.resume, coroutine.running, coroutine.status, coroutine.yield
local traceback = debug.traceback

local M = {}

-- Only these keys are handed to libcurl, so the whole client options table can be passed in.
local DEFAULT_MAX_RESPONSE = 4 * 1024 * 1024
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
  return setmetatable({ handle = handle, closed = false, picked = picked, batch = nil }, Transport)
end

-- What a task of `run` yields to ask for a moment's wait (see Transport:pause).
local PAUSE = {}

--- Makes one HTTP exchange.
-- @param req `{method = "GET" | "POST", url = "http(s)://...", body = string | nil, fresh = boolean | nil}`; a POST
--   is sent as `Content-Type: application/json; charset=utf-8`, a nil POST body as an empty one; `fresh = true`
--   sends it over a new connection, which libcurl never sends twice (inside `run` too).
-- @return `{status = N, body = "..."}` for any HTTP answer (any status), or nil and a "transport" error whose
--   `reason` is one of "connect", "timeout", "tls", "resolve", "too_large", "send", "recv", "other"; its
--   message never holds the URL's query (where the access token is); `resent` (in either) is true when the
--   request may have gone out twice: a kept-alive connection died under it after a byte of it was written, and it
--   went once more over a new connection, as libcurl does; the client then does not retry it.
-- @raise on a wrong request table, or when the transport is closed
function Transport:request(req)
  if self.closed then
    error("curl transport is closed", 2)
  end
  local method, url, body = check_request(req)
  local code, res, msg, resent
  local batch = self.batch
  if batch and batch[running()] then
    -- the transfer runs in Transport:run's multi handle
    code, res, msg, resent = yield(method, url, body, req.fresh == true)
  else
    code, res, msg, resent = self.handle:request(method, url, body, req.fresh == true)
  end
  if not code then
    return nil, errors.new(errors.TRANSPORT, msg, { reason = res, resent = resent or nil })
  end
  -- on success the third value says whether libcurl may have sent it twice
  return { status = code, body = res, resent = msg or nil }
end

--- Lets the other tasks of `run` go on until one of their transfers ends, when called from one of them.
-- @return true after such a wait; false when there is nothing to wait for (outside `run`, or every other task
--   is waiting too), so a caller waiting for another task's result must not wait any longer
function Transport:pause()
  local batch = self.batch
  if batch and batch[running()] then
    return yield(PAUSE)
  end
  return false
end

-- Ends the batch with a raise: transfers under way are dropped, their handles (task index -> handle) go back to
-- the pool.
local function abandon(self, handles, message)
  self.multi:abort()
  for _, handle in pairs(handles) do
    self.free[#self.free + 1] = handle
  end
  self.batch = nil
  error(message, 0)
end

-- A free easy handle of the pool (made with the transport's options when there are fewer than `limit`).
local function take_handle(self)
  local free = self.free
  local n = #free
  if n > 0 then
    local handle = free[n]
    free[n] = nil
    return handle
  end
  local handle, msg = core.curl_new(self.picked)
  if not handle then
    return nil, msg
  end
  return handle
end

--- Runs `tasks` (an array of functions) at once, at most `limit` at a time, each in a coroutine of its own: the
-- requests they make through this transport go out together over libcurl's multi interface, with at most
-- `limit` connections, kept alive for the next run. The transport's own handle is not used; the pool of
-- handles and connections lives as long as the transport.
-- @return an array: entry i holds the values task i returned, packed (`{ n = N, ... }`)
-- @raise when a task raises (the other tasks are dropped), or when the transport is closed
function Transport:run(tasks, limit)
  if self.closed then
    error("curl transport is closed", 2)
  end
  if self.batch then
    error("curl transport: run called from inside a run", 2)
  end
  local multi = self.multi
  if not multi then
    local msg
    multi, msg = core.curl_multi_new()
    if not multi then
      error("curl transport: " .. tostring(msg), 2)
    end
    self.multi, self.free = multi, {}
  end
  local limited, why = multi:limit(limit)
  if not limited then
    error("curl transport: " .. tostring(why), 2)
  end
  local batch = {}            -- coroutine -> task index, also how request and pause know they run in a task
  local coroutines = {}       -- task index -> coroutine
  local results, n = {}, #tasks
  local active, next_task = 0, 1
  local handles = {}          -- task index -> the easy handle of its transfer under way
  local paused = {}           -- coroutines waiting in pause, in the order they came
  self.batch = batch

  -- Runs co until it yields a request or a pause, or ends; a request is added to the multi handle.
  local function step(co, ok, a, b, c, d)
    local i = batch[co]
    while true do
      if not ok then
        abandon(self, handles, traceback(co, tostring(a)))
      end
      if status(co) == "dead" then
        batch[co], coroutines[i] = nil, nil
        results[i] = { n = 3, a, b, c }
        active = active - 1
        return
      end
      if a == PAUSE then
        paused[#paused + 1] = co
        return
      end
      local handle, msg = take_handle(self)
      local added, reason, message, resent
      if handle then
        added, reason, message, resent = multi:add(i, handle, a, b, c, d)
      else
        reason, message = "other", msg
      end
      if added then
        handles[i] = handle
        return
      end
      if handle then
        self.free[#self.free + 1] = handle
      end
      ok, a, b, c, d = resume(co, nil, reason, message, resent)
    end
  end

  local function start_more()
    while active < limit and next_task <= n do
      local i = next_task
      next_task = i + 1
      local co = create(tasks[i])
      batch[co], coroutines[i] = i, co
      active = active + 1
      step(co, resume(co))
    end
  end

  start_more()
  while active > 0 do
    if multi:running() > 0 then
      local done, failed = multi:perform(1)
      if not done then
        abandon(self, handles, "curl transport: " .. tostring(failed))
      end
      for _, d in ipairs(done) do
        local i = d.id
        self.free[#self.free + 1] = handles[i]
        handles[i] = nil
      end
      for _, d in ipairs(done) do
        local co = coroutines[d.id]
        if d.status then
          step(co, resume(co, d.status, d.body, d.resent))
        else
          step(co, resume(co, nil, d.reason, d.message, d.resent))
        end
      end
    end
    -- The paused tasks wait for something another task does: look again after each round. With no transfer left
    -- under way nothing can change for them any more, and pause tells them so.
    local waiting = paused
    if #waiting > 0 then
      paused = {}
      local idle = multi:running() == 0
      for _, co in ipairs(waiting) do
        step(co, resume(co, not idle))
      end
    end
    start_more()
  end
  self.batch = nil
  return results
end

--- Makes one media exchange: a multipart upload streamed from a file (or a string), or a download whose body goes
-- to a file as it arrives. A transfer of its own, on a new connection; nothing of a file is held in memory.
-- The timeout applies to a stall (no byte moving for `timeout` seconds), not to the whole transfer.
-- @param req `{ method, url, upload = { name, filename, path | data, size }, range =, sink =, max = }` (see
--   `wechat.work.transport.request.check_media`); `max` bounds content (a 200 or 206 that is not JSON or text),
--   default the transport's `max_response`, which bounds any other answer.
-- @return `{ status = N, body = string | nil, size = N, headers = { ["content-type"] =, ["content-disposition"] =,
--   ["content-range"] = }, content = true | false }` (content: a 200 or 206 that is neither JSON nor text):
--   `body` is nil when the answer went to `sink` (a 200 or 206 that is not JSON or
--   text); or nil and a "transport" error (reasons as for `request`)
-- @raise on a wrong request table, or when the transport is closed
function Transport:media(req)
  if self.closed then
    error("curl transport is closed", 2)
  end
  req = request.check_media(req)
  local spec = {
    url = req.url, method = req.method, range = req.range, sink = req.sink,
    max = req.max or self.picked.max_response or DEFAULT_MAX_RESPONSE,
    other_max = self.picked.max_response or DEFAULT_MAX_RESPONSE,
  }
  local upload = req.upload
  if upload then
    spec.head, spec.tail, spec.content_type = core.multipart_frame(upload.name, upload.filename, upload.size)
    spec.path, spec.data, spec.size = upload.path, upload.data, upload.size
  end
  local code, body, size, headers, content = core.curl_media(self.picked, spec)
  if not code then
    local reason, message = body, size
    return nil, errors.new(errors.TRANSPORT, message, { reason = reason })
  end
  return { status = code, body = body, size = size, headers = headers, content = content }
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
    if self.multi then
      self.multi:close()
      for _, handle in ipairs(self.free) do
        handle:close()
      end
      self.multi, self.free = nil, nil
    end
  end
  return true
end

-- Lua 5.4: `local t <close> = curl.new()` closes the transport when `t` goes out of scope.
Transport.__close = Transport.close

--- The libcurl version string, e.g. "libcurl/7.88.1 OpenSSL/3.0.11".
M.version = core.curl_version

return M
