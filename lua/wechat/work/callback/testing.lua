--- What WeCom does with a callback URL, for specs, benches, fuzzing and the local stand-in: build the encrypted
-- event request and the URL check it would send. Nothing a handler of real callbacks needs (that is
-- wechat.work.callback), so it stays out of that module.
--
--     local testing = require "wechat.work.callback.testing"
--     local cb = testing.new{ token = TOKEN, encoding_aes_key = KEY, corp_id = CORPID }
--     local req = cb:build_event_request{ MsgType = "event", Event = "kf_msg_or_event", Token = "T" }
--     -- cb is also a wechat.work.callback handler: cb:decrypt_event(req.query, req.body)
local callback = require "wechat.work.callback"
local errors = require "wechat.work.errors"

local error, ipairs, pairs, setmetatable, type = error, ipairs, pairs, setmetatable, type
local concat, sort = table.concat, table.sort
local format = string.format
local floor = math.floor

local M = {}

local NAME_PATTERN = "^[A-Za-z_][A-Za-z0-9_]*$"

-- A handler of wechat.work.callback with the two builders besides.
local Testing = setmetatable({}, { __index = callback._Callback })
Testing.__index = Testing

local function argerror(fname, argn, message)
  error(format("bad argument #%d to '%s' (%s)", argn, fname, message), 3)
end

-- The builders' opts (argument 2): nil or a table whose random16, when given, is 16 bytes.
local function check_opts(fname, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error(format("bad argument #2 to '%s' (table expected, got %s)", fname, type(opts)), 3)
  end
  opts = opts or {}
  if opts.random16 ~= nil and (type(opts.random16) ~= "string" or #opts.random16 ~= 16) then
    error(format("bad argument #2 to '%s' (opts.random16: 16 bytes expected)", fname), 3)
  end
  return opts
end

-- callback's seal with the builders' opts: encrypt, signature, timestamp, nonce; or nil and a "callback" error.
local function seal(self, fname, msg, opts)
  local encrypt, signature, ts, n = callback._seal(self, fname, msg, opts.timestamp, opts.nonce, opts.random16)
  if not encrypt then
    return nil, errors.new(errors.CALLBACK, signature, { op = fname })
  end
  return encrypt, signature, ts, n
end

--- Makes a callback handler (options as wechat.work.callback.new) that also builds what WeCom would send.
function M.new(opts)
  return setmetatable(callback.new(opts), Testing)
end

local function check_xml_value(name, value)
  if type(value) == "number" then
    if floor(value) ~= value then
      argerror("event_xml", 1, "fields." .. name .. ": integer expected")
    end
  elseif type(value) ~= "string" then
    argerror("event_xml", 1, format("fields.%s: string or integer expected, got %s", name, type(value)))
  elseif value:find("]]>", 1, true) then
    argerror("event_xml", 1, "fields." .. name .. ": must not contain ]]>")
  end
end

--- Renders a flat event table as WeCom's XML: `<xml><Name><![CDATA[text]]></Name>...</xml>`, names in byte
-- order, strings in CDATA, integers as plain text; an array value repeats its element once per item, in order
-- (as `kf_account_auth_change` does). Raises on a bad name or value.
-- @param fields table name -> string, integer, or a non-empty array of them
-- @return the XML string
function M.event_xml(fields)
  if type(fields) ~= "table" then
    argerror("event_xml", 1, "table expected, got " .. type(fields))
  end
  local names = {}
  for name, value in pairs(fields) do
    if type(name) ~= "string" or not name:find(NAME_PATTERN) then
      argerror("event_xml", 1, "field names must match " .. NAME_PATTERN)
    end
    if type(value) == "table" then
      if #value == 0 then
        argerror("event_xml", 1, "fields." .. name .. ": non-empty array expected")
      end
      for _, item in ipairs(value) do
        check_xml_value(name, item)
      end
    else
      check_xml_value(name, value)
    end
    names[#names + 1] = name
  end
  sort(names)
  local parts = { "<xml>" }
  for _, name in ipairs(names) do
    local value = fields[name]
    for _, item in ipairs(type(value) == "table" and value or { value }) do
      if type(item) == "number" then
        parts[#parts + 1] = format("<%s>%d</%s>", name, item, name)
      else
        parts[#parts + 1] = format("<%s><![CDATA[%s]]></%s>", name, item, name)
      end
    end
  end
  parts[#parts + 1] = "</xml>"
  return concat(parts)
end

--- Builds the request WeCom would send for an event.
-- @param event the inner XML (string) or a flat table of fields (rendered by `event_xml`)
-- @param opts optional table: `timestamp`, `nonce` (as in encrypt_reply), `agent_id` (string, default none:
--   KF callbacks carry an empty AgentID), `random16` (16 bytes, for a deterministic ciphertext)
-- @return `{ query = { msg_signature, timestamp, nonce }, body = "<xml>...</xml>" }`; or nil, err
function Testing:build_event_request(event, opts)
  if type(event) == "table" then
    event = M.event_xml(event)
  elseif type(event) ~= "string" then
    argerror("build_event_request", 1, "string or table expected, got " .. type(event))
  end
  opts = check_opts("build_event_request", opts)
  local agent_id = opts.agent_id or ""
  if type(agent_id) ~= "string" or agent_id:find("]]>", 1, true) then
    argerror("build_event_request", 2, "opts.agent_id: string without ]]> expected")
  end
  local encrypt, signature, ts, n = seal(self, "build_event_request", event, opts)
  if not encrypt then
    return nil, signature
  end
  local body = format("<xml><ToUserName><![CDATA[%s]]></ToUserName><Encrypt><![CDATA[%s]]></Encrypt>"
    .. "<AgentID><![CDATA[%s]]></AgentID></xml>", self.corp_id, encrypt, agent_id)
  return { query = { msg_signature = signature, timestamp = ts, nonce = n }, body = body }
end

--- Builds the URL-check query WeCom would send when the callback URL is saved.
-- @param echo the plaintext WeCom expects back (string)
-- @param opts optional table: `timestamp`, `nonce`, `random16` as in build_event_request
-- @return `{ msg_signature, timestamp, nonce, echostr }`; or nil, err
function Testing:build_url_check(echo, opts)
  opts = check_opts("build_url_check", opts)
  local encrypt, signature, ts, n = seal(self, "build_url_check", echo, opts)
  if not encrypt then
    return nil, signature
  end
  return { msg_signature = signature, timestamp = ts, nonce = n, echostr = encrypt }
end

return M
