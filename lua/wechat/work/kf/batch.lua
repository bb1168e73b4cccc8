--- Many KF operations at once: `batch(client, agent, calls[, opts])`.
-- Each call runs exactly as the single call would (`wechat.work.kf.message`: retries, token refresh and all),
-- but they go out together: under plain Lua over libcurl's multi interface, inside OpenResty in light threads
-- over cosockets. A transport of the caller's own without `run` sends them one by one.
local errors = require "wechat.work.errors"
local work = require "wechat.work"

local error, pairs, pcall, tostring, type = error, pairs, pcall, tostring, type
local format, match = string.format, string.match
local floor = math.floor
local unpack = table.unpack or unpack -- luacheck: ignore (LuaJIT's unpack)

local M = {}

-- wechat.work.kf.message requires this module to offer batch itself: it is required here at the first call.
local message

local DEFAULT_CONCURRENCY = 16
local MAX_CONCURRENCY = 256
local MAX_CALLS = 100000

local type_name = work.type_name

-- Raises at the caller of batch; depth: how many functions of this file are between argerror and batch.
local function argerror(depth, argn, fmt, ...)
  error(format("bad argument #%d to 'batch' (%s)", argn, format(fmt, ...)), 3 + depth)
end

-- The number of arguments of a call after its name: `n` when given (so a trailing nil can be passed), else the
-- highest integer key (nils in between are arguments left out, e.g. send_video's title).
local function call_length(call)
  if call.n ~= nil then
    return call.n
  end
  local last = 0
  for k in pairs(call) do
    if type(k) == "number" and k > last then
      last = k
    end
  end
  return last
end

local function check_calls(client, agent, calls)
  local n = #calls
  for k in pairs(calls) do
    if type(k) ~= "number" or k < 1 or k > n or k ~= floor(k) then
      argerror(1, 3, "calls: array expected (key %s)", type(k) == "string" and "'" .. k .. "'" or tostring(k))
    end
  end
  if n > MAX_CALLS then
    argerror(1, 3, "calls: at most %d, got %d", MAX_CALLS, n)
  end
  local lengths = {}
  for i = 1, n do
    local call = calls[i]
    if type(call) ~= "table" then
      argerror(1, 3, "calls[%d]: table expected, got %s", i, type_name(call))
    end
    local name = call[1]
    if type(name) ~= "string" or not message.OPERATIONS[name] then
      argerror(1, 3, "calls[%d]: operation of wechat.work.kf.message expected at [1], got %s", i,
        type(name) == "string" and "'" .. name .. "'" or type_name(name))
    end
    local length = call_length(call)
    if type(length) ~= "number" or length < 1 or length ~= floor(length) then
      argerror(1, 3, "calls[%d]: n must be a positive integer", i)
    end
    -- The builder checks every argument as the single call does; the body it writes is thrown away.
    local ok, err = pcall(message.check_arguments, name, client, agent, unpack(call, 2, length))
    if not ok then
      argerror(1, 3, "calls[%d]: %s", i, match(tostring(err), "^.-(bad argument.*)$") or tostring(err))
    end
    lengths[i] = length
  end
  return n, lengths
end

local function check_opts(opts)
  if opts == nil then
    return DEFAULT_CONCURRENCY
  end
  if type(opts) ~= "table" then
    argerror(1, 4, "table or nil expected, got %s", type_name(opts))
  end
  for k in pairs(opts) do
    if k ~= "concurrency" then
      argerror(1, 4, "unknown option '%s'", tostring(k))
    end
  end
  local c = opts.concurrency
  if c == nil then
    return DEFAULT_CONCURRENCY
  end
  if type(c) ~= "number" or c ~= floor(c) or c < 1 or c > MAX_CONCURRENCY then
    argerror(1, 4, "opts.concurrency: integer 1..%d expected, got %s", MAX_CONCURRENCY,
      type(c) == "number" and tostring(c) or type_name(c))
  end
  return c
end

-- One task after the other, for a transport without `run`.
local function run_one_by_one(tasks)
  local results = {}
  for i = 1, #tasks do
    local res, err = tasks[i]()
    results[i] = { n = 2, res, err }
  end
  return results
end

--- Makes many KF calls at once.
-- @param client a `wechat.work` client
-- @param agent the agent name, for every call
-- @param calls an array; each entry names an operation of `wechat.work.kf.message` and its arguments after
--   `client, agent`: `{ "send_text", to, open_kfid, "hi", { msgid = "a1" } }` (set `n` in the entry, the count of
--   arguments after the name, to pass trailing nils)
-- @param opts nil or `{ concurrency = N }`: at most N calls under way at once (1..256, default 16); under plain
--   Lua also the most connections the transport opens for batches (kept alive between them)
-- @return an array as long as `calls`: entry i is `{ res = answer }` or `{ err = err }`, what call i alone would
--   have returned. The token is fetched once before anything is sent; when that fails, nothing is sent and every
--   entry holds the gettoken error (with its own `op`). A token WeCom refuses is fetched again once for all the
--   calls that saw it refused.
-- @raise before anything is sent when an argument is wrong, naming it: `bad argument #3 to 'batch' (calls[2]:
--   bad argument #5 to 'send_text' (...))`
function M.batch(client, agent, calls, opts)
  message = message or require "wechat.work.kf.message"
  work.check_client_and_agent("batch", client, agent)
  if type(calls) ~= "table" then
    argerror(0, 3, "table expected, got %s", type_name(calls))
  end
  local concurrency = check_opts(opts)
  local n, lengths = check_calls(client, agent, calls)
  local results = {}
  if n == 0 then
    return results
  end

  local token, err = client:token(agent, calls[1][1])
  if not token then
    for i = 1, n do
      results[i] = { err = errors.copy(err, { op = calls[i][1] }) }
    end
    return results
  end

  local tasks = {}
  for i = 1, n do
    local call, length = calls[i], lengths[i]
    local operation = message[call[1]]
    tasks[i] = function()
      return operation(client, agent, unpack(call, 2, length))
    end
  end
  local transport = client.transport
  local packed
  if transport.run then
    packed = transport:run(tasks, concurrency)
  else
    packed = run_one_by_one(tasks)
  end
  for i = 1, n do
    local res, failure = packed[i][1], packed[i][2]
    if res ~= nil then
      results[i] = { res = res }
    else
      results[i] = { err = failure }
    end
  end
  return results
end

return M
