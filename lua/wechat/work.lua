--- The WeCom client: corp id, agents and their secrets, the access token, the transport.
-- `wechat.work.kf.message` and the other API modules build request bodies and hand them to `client:post`;
-- the client adds the access token (fetched once, cached in a store, refreshed once on 40001/40014/42001) and
-- turns every run-time failure into `nil, err` (see `wechat.work.errors`).
local cjson_safe = require "cjson.safe"
local core = require "wechat.core"
local errors = require "wechat.work.errors"
local memory_store = require "wechat.work.store.memory"
local nginx = require "wechat.work.nginx"

local error, getmetatable, ipairs, next, pairs, pcall, require, select, setmetatable, tonumber, tostring, type =
  error, getmetatable, ipairs, next, pairs, pcall, require, select, setmetatable, tonumber, tostring, type
local floor, min = math.floor, math.min
local time = os.time
local format, gsub, byte, find = string.format, string.gsub, string.byte, string.find
local concat, sort = table.concat, table.sort
local decode = cjson_safe.decode
local decode_answer, sha1_hex = core.decode_answer, core.sha1_hex
local tointeger = math.tointeger -- nil on LuaJIT, where every number is a double anyway

local M = { _VERSION = "0.1.0" }

local DEFAULT_BASE_URL = "https://qyapi.weixin.qq.com"
local DEFAULT_TIMEOUT = 10            -- seconds, whole exchange
local DEFAULT_TOKEN_MARGIN = 300      -- refresh this long before WeCom says the token expires
local DEFAULT_EXPIRES_IN = 7200
local DEFAULT_TOKEN_WAIT = 5          -- how long a caller waits for another one's gettoken (stores with a lock)
local MAX_TOKEN_WAIT = 3600
local DEFAULT_RETRIES = 1             -- tries after the first, for failures a retry cannot make worse
local MAX_RETRIES = 10
-- WeCom's answers to a bad token on a business call (40001 too, in practice: WxJava refreshes on all three)
local TOKEN_ERRORS = { [40001] = true, [40014] = true, [42001] = true }

local Client = {}
Client.__index = Client

-- Says what was given without showing it: the value may be a secret. A number is shown for the options that
-- are numbers (a secret given as a number by mistake is not).
local function describe(value, show_number)
  if type(value) == "table" and next(value) == nil then
    return "empty table"
  end
  if show_number and type(value) == "number" then
    return value ~= value and "nan" or tostring(value)
  end
  return type(value)
end

local function option_error(name, expected, value, show_number)
  error(format("bad argument #1 to 'client' (%s: %s expected, got %s)", name, expected,
    describe(value, show_number)), 3)
end

local function check_string(opts, name, required)
  local value = opts[name]
  if value == nil and not required then
    return nil
  end
  if type(value) ~= "string" or value == "" then
    option_error(name, "non-empty string", value)
  end
  return value
end

local function check_number(opts, name, min_value, max_value)
  local value = opts[name]
  if value == nil then
    return nil
  end
  if type(value) ~= "number" or value ~= value or value < min_value or (max_value and value > max_value) then
    if max_value then
      option_error(name, format("number from %s to %s", tostring(min_value), tostring(max_value)), value, true)
    end
    option_error(name, format("number >= %s", tostring(min_value)), value, true)
  end
  return value
end

local function check_integer(opts, name, min_value, max_value)
  local value = opts[name]
  if value == nil then
    return nil
  end
  if type(value) ~= "number" or value ~= floor(value) or value < min_value or value > max_value then
    option_error(name, format("integer from %d to %d", min_value, max_value), value, true)
  end
  return value
end

-- The agent record of `name`; raises naming argument `argn` of `fname` when there is none.
local function check_agent(self, fname, argn, name)
  if type(name) ~= "string" then
    error(format("bad argument #%d to '%s' (agent name expected, got %s)", argn, fname, type(name)), 3)
  end
  local agent = self.agents[name]
  if not agent then
    error(format("bad argument #%d to '%s' (unknown agent '%s')", argn, fname, name), 3)
  end
  return agent
end

local function url_escape(s)
  return (gsub(s, "[^%w%-%._~]", function(c)
    return format("%%%02X", byte(c))
  end))
end

local function hide(message, secret)
  local from, to = find(message, secret, 1, true)
  while from do
    message = message:sub(1, from - 1) .. "***" .. message:sub(to + 1)
    from, to = find(message, secret, from + 3, true)
  end
  return message
end

-- Every error built here passes through this: whatever a lower layer put in the message, the secret and
-- the access token must not reach a log, neither as given nor as they stand in a URL (escaped).
local function scrub(err, ...)
  local message = err.message
  if type(message) == "string" then
    for i = 1, select("#", ...) do
      local secret = select(i, ...)
      if type(secret) == "string" and secret ~= "" then
        message = hide(hide(message, secret), url_escape(secret))
      end
    end
    err.message = message
  end
  return err
end

-- The phase where a blocking transport would stall an nginx worker that has cosockets at hand, or nil.
local function blocking_refused(allow_blocking)
  local ngx = not allow_blocking and nginx.get()
  return ngx and nginx.blocking_refused(ngx) or nil
end

local function refuse_blocking(phase)
  error(format("bad argument #1 to 'client' (transport: a blocking transport (curl) would stall the nginx worker "
    .. "in the '%s' phase; use transport = \"cosocket\" there, or allow_blocking = true)", phase), 3)
end

local function make_transport(opts)
  local transport = opts.transport
  if type(transport) == "table" or type(transport) == "userdata" then
    if type(transport.request) ~= "function" then
      option_error("transport", "object with a request method", transport)
    end
    local phase = transport.blocking and blocking_refused(opts.allow_blocking)
    if phase then
      refuse_blocking(phase)
    end
    return transport
  end
  if transport == nil then
    transport = nginx.get() and "cosocket" or "curl"
  end
  if transport ~= "curl" and transport ~= "cosocket" then
    option_error("transport", "\"curl\", \"cosocket\" or an object", transport)
  end
  local phase = transport == "curl" and blocking_refused(opts.allow_blocking)
  if phase then
    refuse_blocking(phase)
  end
  return require("wechat.work.transport." .. transport).new{
    timeout = opts.timeout or DEFAULT_TIMEOUT,
    connect_timeout = opts.connect_timeout,
    cafile = opts.cafile,
    ssl_verify = opts.ssl_verify,
    max_response = opts.max_response,
    keepalive_timeout = opts.keepalive_timeout,
    keepalive_pool = opts.keepalive_pool,
  }
end

local function make_store(opts)
  local store = opts.token_store
  if store ~= nil then
    if type(store) ~= "table" or type(store.get) ~= "function" or type(store.set) ~= "function"
        or type(store.delete) ~= "function" then
      option_error("token_store", "store with get, set and delete", store)
    end
    return store
  end
  if opts.shared_dict ~= nil then
    check_string(opts, "shared_dict", true)
    return require("wechat.work.store.shared_dict").new(opts.shared_dict)
  end
  return memory_store.new()
end

-- The stores the KF window tracker (wechat.work.kf.window) can count in: ours, which say their kind.
local WINDOW_KINDS = { memory = true, shared_dict = true, redis = true }

local function check_window(opts, store)
  local window = opts.window
  if window == nil or window == false then
    return false
  end
  if window == true then
    if type(store.kind) ~= "string" or not WINDOW_KINDS[store.kind] then
      option_error("window", "a store (true needs a memory, shared_dict or redis token store)", store)
    end
    return true
  end
  if type(window) ~= "table" or not WINDOW_KINDS[window.kind] then
    option_error("window", "true, false or a memory, shared_dict or redis store", window)
  end
  return window
end

--- Makes a client.
-- @param opts table:
--   `corp_id` (string, required); `agents` (table name -> `{ secret = "..." }`, required);
--   `base_url` (default "https://qyapi.weixin.qq.com"); `timeout` (seconds, default 10; also the connect
--   timeout unless `connect_timeout` is given); `cafile` (PEM bundle for a private CA); `ssl_verify` (default
--   true); `max_response` (bytes, default 4 MiB); `transport` ("curl", "cosocket" or an object; default: cosocket
--   inside nginx, curl elsewhere); `token_store` (a store object) or `shared_dict` (name of an nginx
--   lua_shared_dict); `token_margin` (seconds before expiry to refresh, default 300); `token_wait` (seconds a
--   caller waits for another caller's gettoken, with a store that locks, default 5); `retries` (integer 0..10:
--   how many times a failed request goes again when that cannot duplicate a message, default 1; 0: never);
--   `auto_msgid` (default true: every send without a msgid gets a random one, which makes it safe to retry and
--   its fate knowable; false: such a send goes out once, over a new connection);
--   `allow_blocking` (true: a blocking transport, curl, may run inside an nginx phase that has cosockets, where
--   it stalls the whole worker while it waits; default false: refused there, with an error naming the phase);
--   `window` (true: track the 48-hour / 5-message window of every customer in a store of the token store's kind;
--   or a store of wechat.work.store.memory, .shared_dict or .redis to track it in; see wechat.work.kf.window).
-- @return the client; raises on a wrong option, naming it.
function M.client(opts)
  if type(opts) ~= "table" then
    error(format("bad argument #1 to 'client' (table expected, got %s)", type(opts)), 2)
  end
  local corp_id = check_string(opts, "corp_id", true)
  if type(opts.agents) ~= "table" or next(opts.agents) == nil then
    option_error("agents", "non-empty table", opts.agents)
  end
  local agents = {}
  for name, agent in pairs(opts.agents) do
    if type(name) ~= "string" then
      option_error("agents", "table with string keys", opts.agents)
    end
    if type(agent) ~= "table" or type(agent.secret) ~= "string" or agent.secret == "" then
      local given = agent
      if type(agent) == "table" then
        given = agent.secret
      end
      option_error("agents." .. name .. ".secret", "non-empty string", given)
    end
    agents[name] = { name = name, secret = agent.secret }
  end
  local base_url = check_string(opts, "base_url") or DEFAULT_BASE_URL
  if not find(base_url, "^https?://[^/]") then
    error(format("bad argument #1 to 'client' (base_url: http:// or https:// URL expected, got '%s')", base_url), 2)
  end
  base_url = gsub(base_url, "/+$", "")
  check_number(opts, "timeout", 0.001)
  check_number(opts, "connect_timeout", 0.001)
  check_number(opts, "max_response", 1)
  check_number(opts, "token_margin", 0)
  check_number(opts, "token_wait", 0, MAX_TOKEN_WAIT)
  check_integer(opts, "retries", 0, MAX_RETRIES)
  check_string(opts, "cafile")
  for _, name in ipairs{ "ssl_verify", "auto_msgid", "allow_blocking" } do
    if opts[name] ~= nil and type(opts[name]) ~= "boolean" then
      option_error(name, "boolean", opts[name])
    end
  end
  local store = make_store(opts)
  local window = check_window(opts, store)

  local transport = make_transport(opts)
  return setmetatable({
    corp_id = corp_id,
    agents = agents,
    base_url = base_url,
    token_margin = opts.token_margin or DEFAULT_TOKEN_MARGIN,
    token_wait = opts.token_wait or DEFAULT_TOKEN_WAIT,
    retries = opts.retries or DEFAULT_RETRIES,
    -- read by the C body builders: a send without msgid gets a random one, so it may be retried safely
    auto_msgid = opts.auto_msgid ~= false,
    store = store,
    window = window,      -- read by wechat.work.kf.window: false, true (the token store's kind) or a store
    spare = memory_store.new(), -- tokens the store failed to keep
    fetching = {},              -- store key -> the gettoken of this client under way { done =, err = }
    transport = transport,
    -- a blocking transport made where it may block (init_by_lua) is still refused in a request handler
    guard_blocking = transport.blocking and not opts.allow_blocking and nginx.get() ~= nil,
  }, Client)
end

--- True when `value` is a client made by `wechat.work.client`.
function M.is_client(value)
  return type(value) == "table" and getmetatable(value) == Client
end

--- The type of `value` as argument errors name it ("no value" for nil).
function M.type_name(value)
  local t = type(value)
  return t == "nil" and "no value" or t
end

--- Raises `bad argument #1 to 'name' (...)` when `client` is not a client, `bad argument #2 ...` when `agent` is
-- not the name of one of its agents: the check every API function makes first.
-- @param level as error() counts it from here; default 3: the caller of the public function that calls this
function M.check_client_and_agent(name, client, agent, level)
  level = level or 3
  if not M.is_client(client) then
    error(format("bad argument #1 to '%s' (wechat.work client expected, got %s)", name, M.type_name(client)), level)
  end
  if type(agent) ~= "string" then
    error(format("bad argument #2 to '%s' (agent name expected, got %s)", name, M.type_name(agent)), level)
  end
  if not client.agents[agent] then
    error(format("bad argument #2 to '%s' (unknown agent '%s')", name, agent), level)
  end
end

--- The agent record `{ name = , secret = }` of `name`, or nil when the client was not made with that agent.
-- The KF calls use it to check their agent argument.
function Client:agent(name)
  return self.agents[name]
end

-- The store key names the corp and a digest of the secret, never the secret: stores may be shared
-- (lua_shared_dict, Redis) and their keys end up in dumps and monitors.
local function token_key(self, agent)
  local key = agent.token_key
  if not key then
    key = "wechat:token:" .. self.corp_id .. ":" .. sha1_hex(self.corp_id .. "\0" .. agent.secret):sub(1, 16)
    agent.token_key = key
  end
  return key
end

-- lua-cjson 2.1 decodes every JSON number as a float on Lua 5.4; WeCom's numbers (errcode, send_time,
-- has_more, ...) are integers, and users print and compare them as such.
local function restore_integers(value)
  for k, v in pairs(value) do
    if type(v) == "number" then
      local i = tointeger(v)
      if i then
        value[k] = i
      end
    elseif type(v) == "table" then
      restore_integers(v)
    end
  end
end

-- One HTTP exchange decoded into WeCom's JSON object; errcode ~= 0 becomes an "api" error. A table `body` is a
-- media request (see Client:media): its content answer comes back as the transport's answer, its JSON answer as
-- that answer with `json` set. `fresh`: over a new connection (a request that must not be sent twice).
local function exchange(self, method, url, body, op, fresh, ...)
  local phase = self.guard_blocking and blocking_refused(false)
  if phase then
    return nil, errors.new(errors.PHASE, "cannot send with a blocking transport (curl) from the nginx '" .. phase
      .. "' phase: it would stall the worker; use transport = \"cosocket\", or allow_blocking = true", { op = op })
  end
  local res, err, media
  if type(body) == "table" then
    media = { method = method, url = url }
    for k, v in pairs(body) do
      media[k] = v
    end
    res, err = self.transport:media(media)
  else
    res, err = self.transport:request{ method = method, url = url, body = body, fresh = fresh }
  end
  if not res then
    if not errors.is(err) then
      err = errors.new(errors.TRANSPORT, tostring(err))
    end
    err.op = op
    return nil, scrub(err, ...)
  end
  -- the transport judged the answer content (a 200 or 206 that is neither JSON nor text), not WeCom's JSON
  if media and res.content then
    return res
  end
  if res.status ~= 200 then
    return nil, errors.new(errors.HTTP, "unexpected HTTP status", { status = res.status, op = op })
  end
  local answer = res.body
  -- A send's answer is a small flat object: decoded in C, integers as integers, without cjson's table walk.
  local data = decode_answer(answer)
  if data == nil then
    data = decode(answer)
    if tointeger and type(data) == "table" then
      restore_integers(data)
    end
  end
  -- WeCom always answers an object with a numeric errcode (gettoken included): anything else is not WeCom.
  if type(data) ~= "table" or type(data.errcode) ~= "number" then
    return nil, errors.new(errors.DECODE, "response is not WeCom's JSON (an object with errcode)", { op = op })
  end
  local errcode = data.errcode
  if errcode ~= 0 then
    return nil, errors.new(errors.API, nil, {
      errcode = errcode,
      errmsg = type(data.errmsg) == "string" and scrub({ message = data.errmsg }, ...).message or nil,
      op = op,
      resent = res.resent or nil,
    })
  end
  if media then
    res.json = data
    return res
  end
  return data
end

-- Whether a failed exchange may go again. When the connection could not be made, nothing reached WeCom: any
-- request may go again. After a timeout, a reset or a 502/503/504, WeCom may have acted on it: only an
-- idempotent request goes again (gettoken, sync_msg, a send carrying a msgid, which WeCom does not deliver
-- twice), so a retry can never show a customer the same message twice.
local SAFE_REASONS = { connect = true, resolve = true }
local AMBIGUOUS_REASONS = { timeout = true, send = true, recv = true }
local RETRY_STATUS = { [502] = true, [503] = true, [504] = true }

local function may_retry(err, idempotent)
  if err.kind == errors.TRANSPORT then
    return SAFE_REASONS[err.reason] or (idempotent and AMBIGUOUS_REASONS[err.reason]) or false
  end
  return (idempotent and err.kind == errors.HTTP and RETRY_STATUS[err.status]) or false
end

local function token_refused(err)
  return err.kind == errors.API and TOKEN_ERRORS[err.errcode] or false
end

-- Whether WeCom may have acted on an exchange that failed so: the request went out and no answer it could have
-- refused it with came back (or the transport sent it twice). Not for a failed connect, DNS or TLS handshake.
local NOT_SENT_REASONS = { connect = true, resolve = true, tls = true }

local function fate_unknown(err)
  if err.resent then
    return true
  end
  if err.kind == errors.TRANSPORT then
    return not NOT_SENT_REASONS[err.reason]
  end
  return err.kind == errors.HTTP or err.kind == errors.DECODE
end

local DUPLICATE_MSGID = errors.DUPLICATE_MSGID_ERRCODE

local function duplicate_refused(err)
  return err.kind == errors.API and err.errcode == DUPLICATE_MSGID
end

-- exchange, made again while may_retry allows and the request's budget lasts: it reaches WeCom at most
-- `retries + 1` times (client option, default 1). `tries` counts for the whole call, across the repeat after a
-- refused token: `tries.attempts` every exchange, `tries.sent` those WeCom may have acted on. An exchange the
-- transport sent twice itself (err.resent: a kept-alive connection died under it) counts twice; one WeCom answered
-- 40001/40014/42001 counts not at all, since WeCom refused it without acting on it. `tries.unknown` becomes true
-- once an exchange's fate is unknown (see `call_ended`). A request that is not idempotent goes over a new
-- connection, which the transport never sends twice.
-- Counts the failed exchange err in tries; true when the request may go again.
local function may_try_again(self, err, idempotent, tries)
  err.attempts = tries.attempts
  if fate_unknown(err) then
    tries.unknown = true
  end
  if not token_refused(err) then
    tries.sent = tries.sent + (err.resent and 2 or 1)
  end
  return tries.sent <= self.retries and may_retry(err, idempotent)
end

local function exchange_retrying(self, method, url, body, op, idempotent, tries, ...)
  -- The first exchange outside the loop: a loop entered once on every call is a loop LuaJIT keeps trying to
  -- compile from, and gives up on, and then runs the functions around it interpreted for good.
  local data, err = exchange(self, method, url, body, op, not idempotent, ...)
  tries.attempts = tries.attempts + 1
  while not data and may_try_again(self, err, idempotent, tries) do
    data, err = exchange(self, method, url, body, op, not idempotent, ...)
    tries.attempts = tries.attempts + 1
  end
  if data then
    return data
  end
  return nil, err
end

local function fetch_token(self, agent, op)
  local url = self.base_url .. "/cgi-bin/gettoken?corpid=" .. url_escape(self.corp_id)
    .. "&corpsecret=" .. url_escape(agent.secret)
  local data, err = exchange_retrying(self, "GET", url, nil, op, true, { attempts = 0, sent = 0 }, agent.secret)
  if not data then
    if err.kind ~= errors.PHASE then
      err.message = err.message and ("gettoken: " .. err.message) or "gettoken failed"
    end
    return nil, err
  end
  local token = data.access_token
  if type(token) ~= "string" or token == "" then
    return nil, errors.new(errors.DECODE, "gettoken: no access_token in the answer", { op = op })
  end
  local expires_in = tonumber(data.expires_in) or DEFAULT_EXPIRES_IN
  local ttl = floor(expires_in - min(self.token_margin, expires_in / 2))
  return token, nil, ttl
end

local function fetch_and_keep(self, agent, store, key, op)
  local token, err, ttl = fetch_token(self, agent, op)
  if token and not store:set(key, token, ttl) then
    -- The store could not keep it (a full lua_shared_dict, Redis gone): keep it in this process, or every call
    -- would fetch a token of its own, and gettoken is rate limited.
    self.spare:set(key, token, ttl)
  end
  return token, err
end

local function fetch_locked(self, agent, store, key, op)
  local token = store:get(key)    -- fetched by whoever held the lock before us
  if token then
    return token
  end
  return fetch_and_keep(self, agent, store, key, op)
end

-- Client:token after a miss in the store with no fetch of this client under way: fetches (under the store's lock
-- when it has one) and stores.
local function fetch_and_store(self, agent, store, key, op)
  if store.lock then
    local lock, err = store:lock(key, { timeout = self.token_wait })
    if not lock then
      if errors.is(err) then
        err.op = op
        return nil, err
      end
      return nil, errors.new(errors.STORE, "token lock: " .. tostring(err), { op = op })
    end
    -- A transport or store that raises must not keep the lock: every other caller would wait lock_ttl for it.
    local ok, got, fetch_err = pcall(fetch_locked, self, agent, store, key, op)
    lock:unlock()
    if not ok then
      error(got, 0)
    end
    return got, fetch_err
  end
  return fetch_and_keep(self, agent, store, key, op)
end

-- Waits while another task of this client fetches the token, as long as the transport can wait (a curl transport
-- inside kf.batch, a cosocket transport) and at most token_wait seconds.
local function wait_for_fetch(self, fetching)
  local transport, deadline = self.transport, time() + self.token_wait + 1
  while not fetching.done and time() <= deadline do
    if not (transport.pause and transport:pause()) then
      return
    end
  end
end

--- The access token of an agent: from the store when it holds one, else fetched from /cgi-bin/gettoken and
-- stored for `expires_in` less `token_margin` seconds (at most half its life less). With a store that has `lock`
-- (lua_shared_dict, Redis), one caller fetches and the others wait for it, `token_wait` seconds at most. Within
-- one client, callers that run at once (the sends of a `kf.batch`, light threads of one nginx worker) share one
-- gettoken whatever the store: the others wait for its token, or its error.
-- @param agent_name a name in the client's `agents`; another one raises
-- @param op the operation's name, for errors (optional)
-- @return token, or nil and an error value (kind "store" when the wait for another caller's gettoken ran out)
function Client:token(agent_name, op)
  local agent = check_agent(self, "token", 1, agent_name)
  local store, key = self.store, token_key(self, agent)
  local token = store:get(key) or self.spare:get(key)
  if token then
    return token
  end
  local fetching = self.fetching[key]
  if fetching then
    wait_for_fetch(self, fetching)
    if fetching.done then
      token = store:get(key) or self.spare:get(key)
      if token then
        return token
      end
      if fetching.err then
        return nil, errors.copy(fetching.err, { op = op })
      end
    end
  end
  fetching = {}
  self.fetching[key] = fetching
  -- marked done even when the fetch raises, so no one waits for it; they then fetch themselves (no err to share)
  local ok, got, err = pcall(fetch_and_store, self, agent, store, key, op)
  fetching.done, fetching.err = true, ok and err or nil
  if self.fetching[key] == fetching then
    self.fetching[key] = nil
  end
  if not ok then
    error(got, 0)
  end
  return got, err
end

--- Forgets the cached token of an agent (only if it is still `token`, when given).
-- @param agent_name a name in the client's `agents`; another one raises
-- @param token optional: the token found wanting; a newer one another caller stored is kept
function Client:invalidate_token(agent_name, token)
  local agent = check_agent(self, "invalidate_token", 1, agent_name)
  local key = token_key(self, agent)
  self.store:delete(key, token)
  self.spare:delete(key, token)
end

-- How a call ends whose last exchange failed with err. WeCom refusing the send's msgid (`tries.msgid`) as used
-- after an exchange whose fate was unknown means that exchange delivered it: the call succeeded, `duplicate =
-- true`. Else the error, with `reason = "duplicate_msgid"` when no earlier try can have used the msgid, and
-- `maybe_sent` when the request has an effect (`acts`) and an exchange may have reached WeCom.
local function call_ended(err, tries, acts)
  if tries.msgid and duplicate_refused(err) then
    if tries.unknown then
      return { errcode = 0, errmsg = "ok", msgid = tries.msgid, duplicate = true }
    end
    err.reason = "duplicate_msgid"
    err.message = "msgid " .. tries.msgid .. " already used on this KF account"
  elseif acts and tries.unknown then
    err.maybe_sent = true
  end
  return nil, err
end

-- One call with the agent's access token, refreshed once when WeCom refuses it (40001, 40014, 42001). `query` is
-- the escaped query string after the token ("" or "&k=v..."). `msgid`: the one the body carries, see `post`.
-- One try of `call` with the agent's token as the store has it: the answer; or nil, the error and the token that
-- was used (nil when none could be had).
local function call_with_token(self, agent, method, path, query, body, op, idempotent, tries)
  local token, err = self:token(agent.name, op)
  if not token then
    return nil, err
  end
  -- the token changes every two hours: escaping it once, not on every call, is a measurable share of a send
  if self.escaped_for ~= token then
    self.escaped_token, self.escaped_for = url_escape(token), token
  end
  local url = self.base_url .. path .. "?access_token=" .. self.escaped_token .. query
  local data
  data, err = exchange_retrying(self, method, url, body, op, idempotent, tries, token, agent.secret)
  return data, err, token
end

local function call(self, agent, method, path, query, body, op, idempotent, msgid)
  local tries = { attempts = 0, sent = 0, msgid = msgid }
  local data, err, token = call_with_token(self, agent, method, path, query, body, op, idempotent, tries)
  if data then
    return data
  end
  if token and token_refused(err) then
    self:invalidate_token(agent.name, token)
    data, err = call_with_token(self, agent, method, path, query, body, op, idempotent, tries)
    if data then
      return data
    end
  end
  return call_ended(err, tries, msgid ~= nil or not idempotent)
end

--- POSTs a JSON body to a WeCom API path with the agent's access token.
-- A token WeCom calls bad, invalid or expired (40001, 40014, 42001) is dropped, fetched anew and the call made once
-- more. A failure to connect is tried again; a timeout, a reset or a 502/503/504 only when `idempotent` is true,
-- since WeCom may have acted on the first try. Whatever happens, the body reaches WeCom at most `retries + 1` times
-- (client option, default 1), not counting the one WeCom refused for its token. A request that is not idempotent
-- goes over a new connection, so that no transport sends it twice.
-- @param agent_name a name in the client's `agents`; another one raises
-- @param path e.g. "/cgi-bin/kf/send_msg"
-- @param body the JSON body (string)
-- @param op the operation's name, for errors
-- @param idempotent true when sending the body twice has the effect of sending it once
-- @param msgid the msgid the body carries (a send), or nil. A retry WeCom refuses as a used msgid after a try
--   whose fate was unknown is the first try's success: `{ errcode = 0, errmsg = "ok", msgid = msgid,
--   duplicate = true }`. A first try refused so fails with `err.reason = "duplicate_msgid"`.
-- @return the decoded answer (a table with errcode 0), or nil and an error value (`err.attempts`: how many
--   exchanges of this request were made; `err.maybe_sent`: a send, or any request that is not idempotent, that
--   may have reached WeCom before the call failed)
function Client:post(agent_name, path, body, op, idempotent, msgid)
  local agent = check_agent(self, "post", 1, agent_name)
  return call(self, agent, "POST", path, "", body, op, idempotent, msgid)
end

-- The query string of `query`; a wrong one raises naming argument `argn` of `fname` (at the caller's caller).
local function encode_query(query, fname, argn)
  if query == nil then
    return ""
  end
  if type(query) ~= "table" then
    error(format("bad argument #%d to '%s' (table expected, got %s)", argn, fname, type(query)), 3)
  end
  local names = {}
  for name, value in pairs(query) do
    local t = type(value)
    if type(name) ~= "string" or (t ~= "string" and (t ~= "number" or value ~= floor(value))) then
      error(format("bad argument #%d to '%s' (query.%s: string or integer expected, got %s)", argn, fname,
        tostring(name), t == "number" and "non-integer number" or t), 3)
    end
    names[#names + 1] = name
  end
  sort(names)
  for i, name in ipairs(names) do
    local value = query[name]
    if type(value) == "number" then
      value = format("%d", value)
    end
    names[i] = url_escape(name) .. "=" .. url_escape(value)
  end
  return concat(names, "&")
end

--- The query string of `query` (names to strings or integers): `name=value` pairs joined by "&", names in
-- sorted order (the same table gives the same URL), names and values URL-escaped (RFC 3986 unreserved kept).
-- @return the string ("" for nil or an empty table); raises naming `query.<name>` when a value is of another type
function M.query_string(query)
  return encode_query(query, "query_string", 1)
end

--- GETs a WeCom API path that answers JSON, with the agent's access token and the parameters of `query`
-- (see `query_string`). Token refresh and retries as `post`; a read is idempotent, so it may always go again
-- after a failure whose outcome is unknown (within `retries`).
-- @param agent_name a name in the client's `agents`; another one raises
-- @param path e.g. "/cgi-bin/kf/servicer/list"
-- @param query nil or a table of parameters (strings or integers)
-- @param op the operation's name, for errors
-- @return the decoded answer (a table with errcode 0), or nil and an error value
function Client:get(agent_name, path, query, op)
  local agent = check_agent(self, "get", 1, agent_name)
  local qs = encode_query(query, "get", 3)
  return call(self, agent, "GET", path, qs ~= "" and "&" .. qs or "", nil, op, true)
end

--- Makes a media exchange with the agent's access token: a multipart upload or a download that may go to a file
-- (the transport's `media`), under the token refresh and retry rules of `post`.
-- @param agent_name a name in the client's `agents`; another one raises
-- @param method "GET" or "POST"
-- @param path e.g. "/cgi-bin/media/upload"
-- @param query nil or a table of parameters (see `query_string`)
-- @param req the rest of the transport's media request: `upload`, `range`, `sink`, `max`
-- @param op the operation's name, for errors
-- @param idempotent true when the request may go again after a failure whose effect is unknown
-- @return the transport's answer (`status`, `body`, `size`, `headers`), with `json` the decoded object when WeCom
--   answered JSON with errcode 0; or nil and an error value (kind "api" for a JSON answer with an errcode)
function Client:media(agent_name, method, path, query, req, op, idempotent)
  local agent = check_agent(self, "media", 1, agent_name)
  if type(self.transport.media) ~= "function" then
    error("bad argument #1 to 'media' (the client's transport has no media method)", 2)
  end
  local qs = encode_query(query, "media", 4)
  return call(self, agent, method, path, qs ~= "" and "&" .. qs or "", req, op, idempotent)
end

--- Closes the transport (the curl handle; cosockets are pooled by nginx). The client is unusable after.
function Client:close()
  local transport = self.transport
  if transport and transport.close then
    transport:close()
  end
end

return M
