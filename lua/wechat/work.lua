--- The WeCom client: corp id, agents and their secrets, the access token, the transport.
-- `wechat.work.kf.message` and the other API modules build request bodies and hand them to `client:post`;
-- the client adds the access token (fetched once, cached in a store, refreshed once on 40014/42001) and
-- turns every run-time failure into `nil, err` (see `wechat.work.errors`).
local cjson_safe = require "cjson.safe"
local errors = require "wechat.work.errors"
local memory_store = require "wechat.work.store.memory"

local error, getmetatable, ipairs, next, pairs, rawget, require, select, setmetatable, tonumber, tostring, type =
  error, getmetatable, ipairs, next, pairs, rawget, require, select, setmetatable, tonumber, tostring, type
local floor, min = math.floor, math.min
local format, gsub, byte, find = string.format, string.gsub, string.byte, string.find
local decode = cjson_safe.decode
local tointeger = math.tointeger -- nil on LuaJIT, where every number is a double anyway

local M = { _VERSION = "0.1.0" }

local DEFAULT_BASE_URL = "https://qyapi.weixin.qq.com"
local DEFAULT_TIMEOUT = 10            -- seconds, whole exchange
local DEFAULT_TOKEN_MARGIN = 300      -- refresh this long before WeCom says the token expires
local DEFAULT_EXPIRES_IN = 7200
local DEFAULT_LOCK_TIMEOUT = 5        -- how long a caller waits for another one's gettoken (shared stores)
local DEFAULT_RETRIES = 1             -- tries after the first, for failures a retry cannot make worse
local TOKEN_ERRORS = { [40014] = true, [42001] = true }

local Client = {}
Client.__index = Client

-- Says what was given without showing it: the value may be a secret.
local function describe(value)
  if type(value) == "table" and next(value) == nil then
    return "empty table"
  end
  return type(value)
end

local function option_error(name, expected, value)
  error(format("bad argument #1 to 'client' (%s: %s expected, got %s)", name, expected, describe(value)), 3)
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

local function check_number(opts, name, min_value)
  local value = opts[name]
  if value == nil then
    return nil
  end
  if type(value) ~= "number" or value ~= value or value < min_value then
    option_error(name, format("number >= %s", tostring(min_value)), value)
  end
  return value
end

local function url_escape(s)
  return (gsub(s, "[^%w%-%._~]", function(c)
    return format("%%%02X", byte(c))
  end))
end

-- Every error built here passes through this: whatever a lower layer put in the message, the secret and
-- the access token must not reach a log.
local function scrub(err, ...)
  local message = err.message
  if type(message) == "string" then
    for i = 1, select("#", ...) do
      local secret = select(i, ...)
      if type(secret) == "string" and secret ~= "" then
        local from, to = find(message, secret, 1, true)
        while from do
          message = message:sub(1, from - 1) .. "***" .. message:sub(to + 1)
          from, to = find(message, secret, from + 3, true)
        end
      end
    end
    err.message = message
  end
  return err
end

local function inside_nginx()
  local ngx = rawget(_G, "ngx")
  return type(ngx) == "table" and type(ngx.socket) == "table" and type(ngx.get_phase) == "function"
end

local function make_transport(opts)
  local transport = opts.transport
  if type(transport) == "table" or type(transport) == "userdata" then
    if type(transport.request) ~= "function" then
      option_error("transport", "object with a request method", transport)
    end
    return transport
  end
  if transport == nil then
    transport = inside_nginx() and "cosocket" or "curl"
  end
  if transport ~= "curl" and transport ~= "cosocket" then
    option_error("transport", "\"curl\", \"cosocket\" or an object", transport)
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

--- Makes a client.
-- @param opts table:
--   `corp_id` (string, required); `agents` (table name -> `{ secret = "..." }`, required);
--   `base_url` (default "https://qyapi.weixin.qq.com"); `timeout` (seconds, default 10; also the connect
--   timeout unless `connect_timeout` is given); `cafile` (PEM bundle for a private CA); `ssl_verify` (default
--   true); `max_response` (bytes, default 4 MiB); `transport` ("curl", "cosocket" or an object; default: cosocket
--   inside nginx, curl elsewhere); `token_store` (a store object) or `shared_dict` (name of an nginx
--   lua_shared_dict); `token_margin` (seconds before expiry to refresh, default 300); `retries` (how many
--   times a failed exchange goes again when that cannot duplicate a message, default 1; 0: never);
--   `auto_msgid` (true: every send without a msgid gets a random one, which makes it safe to retry).
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
  check_number(opts, "retries", 0)
  check_string(opts, "cafile")
  for _, name in ipairs{ "ssl_verify", "auto_msgid" } do
    if opts[name] ~= nil and type(opts[name]) ~= "boolean" then
      option_error(name, "boolean", opts[name])
    end
  end

  return setmetatable({
    corp_id = corp_id,
    agents = agents,
    base_url = base_url,
    token_margin = opts.token_margin or DEFAULT_TOKEN_MARGIN,
    retries = opts.retries or DEFAULT_RETRIES,
    -- read by the C body builders: a send without msgid gets a random one, so it may be retried safely
    auto_msgid = opts.auto_msgid or false,
    store = make_store(opts),
    transport = make_transport(opts),
  }, Client)
end

--- True when `value` is a client made by `wechat.work.client`.
function M.is_client(value)
  return type(value) == "table" and getmetatable(value) == Client
end

--- The agent record for `name`, or nil.
function Client:agent(name)
  return self.agents[name]
end

-- The store key names the corp and a digest of the secret, never the secret: stores may be shared
-- (lua_shared_dict, Redis) and their keys end up in dumps and monitors.
local function token_key(self, agent)
  local key = agent.token_key
  if not key then
    local core = require "wechat.core"
    key = "wechat:token:" .. self.corp_id .. ":" .. core.sha1_hex(self.corp_id .. "\0" .. agent.secret):sub(1, 16)
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

-- One HTTP exchange decoded into WeCom's JSON object; errcode ~= 0 becomes an "api" error.
local function exchange(self, method, url, body, op, ...)
  local res, err = self.transport:request{ method = method, url = url, body = body }
  if not res then
    if not errors.is(err) then
      err = errors.new(errors.TRANSPORT, tostring(err))
    end
    err.op = op
    return nil, scrub(err, ...)
  end
  if res.status ~= 200 then
    return nil, errors.new(errors.HTTP, "unexpected HTTP status", { status = res.status, op = op })
  end
  local data = decode(res.body)
  -- WeCom always answers an object with a numeric errcode (gettoken included): anything else is not WeCom.
  if type(data) ~= "table" or type(data.errcode) ~= "number" then
    return nil, errors.new(errors.DECODE, "response is not WeCom's JSON (an object with errcode)", { op = op })
  end
  if tointeger then
    restore_integers(data)
  end
  local errcode = data.errcode
  if errcode ~= nil and errcode ~= 0 then
    return nil, errors.new(errors.API, nil, {
      errcode = errcode,
      errmsg = type(data.errmsg) == "string" and scrub({ message = data.errmsg }, ...).message or nil,
      op = op,
    }), data
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
  if err.resent then
    return false -- the transport sent it again itself: a third copy would break "at most twice"
  end
  if err.kind == errors.TRANSPORT then
    return SAFE_REASONS[err.reason] or (idempotent and AMBIGUOUS_REASONS[err.reason]) or false
  end
  return (idempotent and err.kind == errors.HTTP and RETRY_STATUS[err.status]) or false
end

-- exchange, tried again at most `retries` times (client option, default 1) when may_retry allows.
local function exchange_retrying(self, method, url, body, op, idempotent, ...)
  local data, err, raw = exchange(self, method, url, body, op, ...)
  local attempts = 1
  while not data and attempts <= self.retries and may_retry(err, idempotent) do
    attempts = attempts + 1
    data, err, raw = exchange(self, method, url, body, op, ...)
  end
  if err then
    err.attempts = attempts
  end
  return data, err, raw
end

local function fetch_token(self, agent, op)
  local url = self.base_url .. "/cgi-bin/gettoken?corpid=" .. url_escape(self.corp_id)
    .. "&corpsecret=" .. url_escape(agent.secret)
  local data, err = exchange_retrying(self, "GET", url, nil, op, true, agent.secret)
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

--- The access token of `agent`: from the store when it holds one, else fetched from /cgi-bin/gettoken and
-- stored. With a store that has `lock` (lua_shared_dict, Redis), one caller fetches and the others wait.
-- @return token, or nil and an error value
function Client:token(agent_name, op)
  local agent = self.agents[agent_name]
  if not agent then
    return nil, errors.new(errors.API, "unknown agent '" .. tostring(agent_name) .. "'", { op = op })
  end
  local store, key = self.store, token_key(self, agent)
  local token = store:get(key)
  if token then
    return token
  end
  local lock, err
  if store.lock then
    lock, err = store:lock(key, { timeout = DEFAULT_LOCK_TIMEOUT })
    if not lock then
      if errors.is(err) then
        err.op = op
        return nil, err
      end
      return nil, errors.new(errors.STORE, "token lock: " .. tostring(err), { op = op })
    end
    token = store:get(key)    -- fetched by whoever held the lock before us
    if token then
      lock:unlock()
      return token
    end
  end
  local ttl
  token, err, ttl = fetch_token(self, agent, op)
  if token then
    store:set(key, token, ttl)
  end
  if lock then
    lock:unlock()
  end
  return token, err
end

--- Forgets the cached token of `agent` (only if it is still `token`, when given).
function Client:invalidate_token(agent_name, token)
  local agent = self.agents[agent_name]
  if agent then
    self.store:delete(token_key(self, agent), token)
  end
end

--- POSTs a JSON body to a WeCom API path with the agent's access token.
-- A token WeCom calls invalid or expired (40014, 42001) is dropped, fetched anew and the call made once more.
-- @param agent_name the agent whose secret gets the token
-- @param path e.g. "/cgi-bin/kf/send_msg"
-- @param body the JSON body (string)
-- A failure to connect is tried again (client option `retries`, default 1); a timeout, a reset or a
-- 502/503/504 only when `idempotent` is true, since WeCom may have acted on the first try.
-- @param op the operation's name, for errors
-- @param idempotent true when sending the body twice has the effect of sending it once
-- @return the decoded answer (a table with errcode 0), or nil and an error value
function Client:post(agent_name, path, body, op, idempotent)
  local err, data
  for _ = 1, 2 do
    local token
    token, err = self:token(agent_name, op)
    if not token then
      return nil, err
    end
    local url = self.base_url .. path .. "?access_token=" .. url_escape(token)
    data, err = exchange_retrying(self, "POST", url, body, op, idempotent, token, self.agents[agent_name].secret)
    if data then
      return data
    end
    if not (err.kind == errors.API and TOKEN_ERRORS[err.errcode]) then
      return nil, err
    end
    self:invalidate_token(agent_name, token)
  end
  return nil, err
end

--- Closes the transport (the curl handle; cosockets are pooled by nginx). The client is unusable after.
function Client:close()
  local transport = self.transport
  if transport and transport.close then
    transport:close()
  end
end

return M
