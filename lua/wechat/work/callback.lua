--- WeCom callbacks (WXBizMsgCrypt): the URL check, the decryption of events such as the KF
-- `kf_msg_or_event` ("pull now, with this token"), and encrypted replies.
--
--     local callback = require "wechat.work.callback"
--     local cb = callback.new{ token = TOKEN, encoding_aes_key = KEY, corp_id = CORPID }
--     -- GET  ?msg_signature=&timestamp=&nonce=&echostr=
--     local echo, err = cb:verify_url(ngx.req.get_uri_args())   -- answer `echo` as the body
--     -- POST ?msg_signature=&timestamp=&nonce=
--     local event, err = cb:decrypt_event(ngx.req.get_uri_args(), ngx.req.get_body_data())
--     -- event.MsgType == "event", event.Event == "kf_msg_or_event", event.Token, event.OpenKfId
--
-- Query values must be URL-decoded (`%2B` -> `+`). Every run-time failure is `nil, err` with
-- `err.kind == "callback"` (see wechat.work.errors); the token and the key never appear in an error.
--
-- Limits: a body is at most `MAX_BODY` bytes (64 KiB), a query value at most `MAX_QUERY_VALUE` bytes
-- (the echostr: `MAX_BODY`); a message to encrypt at most `MAX_MSG` bytes (1 MiB). XML is parsed with expat
-- (lxp) and must be flat: `<xml>` holding elements holding text; DOCTYPE (so any entity declaration),
-- processing instructions, deeper nesting and text between the fields are refused. An element given more than
-- once (`kf_account_auth_change` lists `<AuthAddOpenKfId>` once per account) comes back as an array of its
-- texts in document order; an element given once stays a string.
local core = require "wechat.core"
local errors = require "wechat.work.errors"
local nginx = require "wechat.work.nginx"
local lxp = require "lxp"

local error, ipairs, pairs, pcall, setmetatable, tonumber, tostring, type = error, ipairs, pairs, pcall,
  setmetatable, tonumber, tostring, type
local concat = table.concat
local format = string.format
local floor = math.floor

local M = {}

M.MAX_BODY = 64 * 1024
M.MAX_QUERY_VALUE = 1024
M.MAX_MSG = core.limits.callback_msg -- what core.callback_encrypt takes
M.MAX_CORP_ID = 256

local KEY_PATTERN = "^[A-Za-z0-9+/]+$"
local NAME_PATTERN = "^[A-Za-z_][A-Za-z0-9_]*$"
local MAX_NAME_IN_ERROR = 64

local Callback = {}
Callback.__index = Callback

local function argerror(fname, argn, message)
  error(format("bad argument #%d to '%s' (%s)", argn, fname, message), 3)
end

local function fail(op, message, reason)
  return nil, errors.new(errors.CALLBACK, message, { op = op, reason = reason })
end

-- An element name from the network goes into an error only when it is short and plain.
local function shown(name)
  if #name <= MAX_NAME_IN_ERROR and name:find(NAME_PATTERN) then
    return "<" .. name .. ">"
  end
  return "element"
end

--- Parses `<xml><Name>text</Name>...</xml>` into `{ Name = "text", ... }` (CDATA or not, entities of XML
-- itself and character references decoded); a name given more than once maps to the array of its texts.
-- Returns the table, or nil and the reason.
local function parse_flat(text)
  local fields = {}
  local depth, name, chunks = 0, nil, nil
  local reason
  local parser

  local function refuse(why)
    if not reason then
      reason = why
      parser:stop()
    end
  end

  parser = lxp.new({
    -- A DOCTYPE is where entities (billion laughs, external files) are declared: refusing it at its start
    -- means expat never reads a declaration.
    StartDoctypeDecl = function() refuse("DOCTYPE not allowed") end,
    EntityDecl = function() refuse("entity declaration not allowed") end,
    ProcessingInstruction = function() refuse("processing instruction not allowed") end,
    StartElement = function(_, element)
      if reason then return end
      depth = depth + 1
      if depth == 1 then
        if element ~= "xml" then refuse("root element is " .. shown(element) .. ", not <xml>") end
      elseif depth == 2 then
        name, chunks = element, {}
      else
        refuse("nesting deeper than 2 at " .. shown(element))
      end
    end,
    EndElement = function()
      if reason then return end
      if depth == 2 then
        local value, before = concat(chunks), fields[name]
        if before == nil then
          fields[name] = value
        elseif type(before) == "table" then
          before[#before + 1] = value
        else
          fields[name] = { before, value }
        end
        name, chunks = nil, nil
      end
      depth = depth - 1
    end,
    CharacterData = function(_, data)
      if reason then return end
      if depth == 2 then
        chunks[#chunks + 1] = data
      elseif data:find("[^ \t\r\n]") then
        refuse("text outside a field")
      end
    end,
  })

  local ok, message, line, column = parser:parse(text)
  if ok then
    ok, message, line, column = parser:parse()
  end
  -- close raises when parsing stopped early; the parser is freed either way.
  pcall(parser.close, parser)
  if reason then
    return nil, reason
  end
  if not ok then
    return nil, format("malformed XML (%s at line %s column %s)", tostring(message), tostring(line),
      tostring(column))
  end
  return fields
end

local function query_value(query, field, max)
  local value = query[field]
  if value == nil then
    return nil, "missing " .. field
  end
  if type(value) ~= "string" then
    return nil, format("%s: string expected, got %s", field, type(value))
  end
  if value == "" then
    return nil, "empty " .. field
  end
  if #value > max then
    return nil, format("%s too long: %d bytes, at most %d", field, #value, max)
  end
  return value
end

-- Reads and checks msg_signature, timestamp, nonce (and echostr when asked) from a query table.
local function signed_query(query, with_echostr)
  local out = {}
  local names = { "msg_signature", "timestamp", "nonce" }
  if with_echostr then names[4] = "echostr" end
  for _, field in ipairs(names) do
    local value, err = query_value(query, field, field == "echostr" and M.MAX_BODY or M.MAX_QUERY_VALUE)
    if not value then
      return nil, err
    end
    out[field] = value
  end
  return out
end

--- Makes a callback handler.
-- @param opts table:
--   `token` (string, required): the Token set on the callback page of the WeCom admin console;
--   `encoding_aes_key` (string, required): the EncodingAESKey, 43 characters of base64;
--   `corp_id` (string, required): the receive id, the corpid for an internal app or the KF desk;
--   `max_age` (seconds, default 0 = off): a callback whose signed `timestamp` is further than this from now, in
--   the past or the future, is refused (`err.reason = "stale"`): a recorded callback cannot be replayed later,
--   at the price of refusing genuine ones when this host's clock is off by more than that.
-- Raises on a missing, mistyped or unknown option, naming it (never echoing a secret).
-- @return the handler object
function M.new(opts)
  if type(opts) ~= "table" then
    argerror("new", 1, "table expected, got " .. type(opts))
  end
  for key in pairs(opts) do
    if key ~= "token" and key ~= "encoding_aes_key" and key ~= "corp_id" and key ~= "max_age" then
      argerror("new", 1, "unknown option " .. (type(key) == "string" and shown(key) or type(key)))
    end
  end
  local max_age = opts.max_age
  if max_age ~= nil and (type(max_age) ~= "number" or max_age ~= max_age or max_age < 0 or max_age == 1 / 0) then
    argerror("new", 1, "opts.max_age: number of seconds >= 0 expected, got "
      .. (type(max_age) == "number" and tostring(max_age) or type(max_age)))
  end
  for _, key in ipairs({ "token", "encoding_aes_key", "corp_id" }) do
    local value = opts[key]
    if type(value) ~= "string" then
      argerror("new", 1, format("opts.%s: string expected, got %s", key, type(value)))
    end
    if value == "" then
      argerror("new", 1, format("opts.%s: must not be empty", key))
    end
  end
  local key = opts.encoding_aes_key
  if #key ~= 43 or not key:find(KEY_PATTERN) then
    argerror("new", 1, "opts.encoding_aes_key: 43 base64 characters expected")
  end
  if #opts.corp_id > M.MAX_CORP_ID then
    argerror("new", 1, format("opts.corp_id: at most %d bytes, got %d", M.MAX_CORP_ID, #opts.corp_id))
  end
  if #opts.token > M.MAX_QUERY_VALUE then
    argerror("new", 1, format("opts.token: at most %d bytes, got %d", M.MAX_QUERY_VALUE, #opts.token))
  end
  return setmetatable({ token = opts.token, encoding_aes_key = key, corp_id = opts.corp_id, max_age = max_age or 0 },
    Callback)
end

local now = nginx.time

-- nil when max_age is off or the signed timestamp lies within it of now; else the reason to refuse.
local function stale(self, timestamp)
  if self.max_age == 0 then
    return nil
  end
  local t = timestamp:find("^%d+$") and tonumber(timestamp)
  if not t then
    return "timestamp is not a number of seconds"
  end
  local off = t - now()
  if off < -self.max_age then
    return format("timestamp %d s old, at most %s", -off, tostring(self.max_age))
  end
  if off > self.max_age then
    return format("timestamp %d s ahead, at most %s", off, tostring(self.max_age))
  end
  return nil
end

local function check_query(fname, query)
  if type(query) ~= "table" then
    argerror(fname, 1, "table expected, got " .. type(query))
  end
end

--- The URL check WeCom makes when the callback URL is saved:
-- `GET ?msg_signature=&timestamp=&nonce=&echostr=`.
-- @param query table of the (URL-decoded) query arguments
-- @return the decrypted echostr, to send back as the response body; or nil, err
function Callback:verify_url(query)
  check_query("verify_url", query)
  local q, err = signed_query(query, true)
  if not q then
    return fail("verify_url", err)
  end
  if not core.callback_verify(q.msg_signature, self.token, q.timestamp, q.nonce, q.echostr) then
    return fail("verify_url", "signature mismatch")
  end
  local why = stale(self, q.timestamp)
  if why then
    return fail("verify_url", why, "stale")
  end
  local echo, derr = core.callback_decrypt(self.encoding_aes_key, q.echostr, self.corp_id)
  if not echo then
    return fail("verify_url", "echostr: " .. derr)
  end
  return echo
end

--- Checks and decrypts an event WeCom posts: `POST ?msg_signature=&timestamp=&nonce=` with the body
-- `<xml><ToUserName>..</ToUserName><Encrypt>..</Encrypt><AgentID>..</AgentID></xml>`.
-- The signature is checked over Encrypt before anything is decrypted.
-- @param query table of the (URL-decoded) query arguments
-- @param body the request body (string, or nil for none). In OpenResty: `ngx.req.read_body()` first, and a
--   `client_body_buffer_size` of at least 64k, or `ngx.req.get_body_data()` gives nil for a body kept in a file
-- @return table of the event's fields, element name -> text, e.g. for KF `ToUserName`, `CreateTime`,
--   `MsgType` ("event"), `Event` ("kf_msg_or_event"), `Token` (for sync_msg), `OpenKfId`, and any other
--   element as it came; an element given more than once -> the array of its texts (`kf_account_auth_change`:
--   `{ AuthAddOpenKfId = { "wk1", "wk2" } }`); or nil, err (`err.reason = "stale"` for a timestamp beyond
--   `max_age`)
function Callback:decrypt_event(query, body)
  check_query("decrypt_event", query)
  if body ~= nil and type(body) ~= "string" then
    argerror("decrypt_event", 2, "string expected, got " .. type(body))
  end
  local q, err = signed_query(query, false)
  if not q then
    return fail("decrypt_event", err)
  end
  if body == nil or body == "" then
    return fail("decrypt_event", "no body")
  end
  if #body > M.MAX_BODY then
    return fail("decrypt_event", format("body too large: %d bytes, at most %d", #body, M.MAX_BODY))
  end
  local outer, perr = parse_flat(body)
  if not outer then
    return fail("decrypt_event", "body: " .. perr)
  end
  local encrypt = outer.Encrypt
  if encrypt == nil or encrypt == "" then
    return fail("decrypt_event", "body has no Encrypt")
  end
  if type(encrypt) ~= "string" then
    return fail("decrypt_event", "body has more than one Encrypt")
  end
  if not core.callback_verify(q.msg_signature, self.token, q.timestamp, q.nonce, encrypt) then
    return fail("decrypt_event", "signature mismatch")
  end
  local why = stale(self, q.timestamp)
  if why then
    return fail("decrypt_event", why, "stale")
  end
  local xml, derr = core.callback_decrypt(self.encoding_aes_key, encrypt, self.corp_id)
  if not xml then
    return fail("decrypt_event", "Encrypt: " .. derr)
  end
  local event, eerr = parse_flat(xml)
  if not event then
    return fail("decrypt_event", "event: " .. eerr)
  end
  return event
end

local function check_word(fname, argn, what, value)
  if type(value) == "number" and value >= 0 and floor(value) == value then
    value = format("%d", value)
  end
  if type(value) ~= "string" then
    argerror(fname, argn, format("%s: string expected, got %s", what, type(value)))
  end
  if value == "" or #value > M.MAX_QUERY_VALUE or not value:find("^[A-Za-z0-9_%-]+$") then
    argerror(fname, argn, what .. ": 1.." .. M.MAX_QUERY_VALUE .. " characters of [A-Za-z0-9_-] expected")
  end
  return value
end

-- From OpenSSL: math.random is seeded alike in every nginx worker, and its nonces would repeat across them.
local function default_nonce()
  return core.random_hex(8)
end

local function seal(self, fname, msg, timestamp, nonce, random16)
  if type(msg) ~= "string" then
    argerror(fname, 1, "string expected, got " .. type(msg))
  end
  if #msg > M.MAX_MSG then
    argerror(fname, 1, format("at most %d bytes, got %d", M.MAX_MSG, #msg))
  end
  timestamp = check_word(fname, 2, "timestamp", timestamp == nil and now() or timestamp)
  nonce = check_word(fname, 3, "nonce", nonce == nil and default_nonce() or nonce)
  local encrypt, err = core.callback_encrypt(self.encoding_aes_key, msg, self.corp_id, random16)
  if not encrypt then
    return nil, err
  end
  local signature, serr = core.callback_signature(self.token, timestamp, nonce, encrypt)
  if not signature then
    return nil, serr
  end
  return encrypt, signature, timestamp, nonce
end

--- Encrypts a passive reply into the envelope WeCom expects:
-- `<xml><Encrypt>..</Encrypt><MsgSignature>..</MsgSignature><TimeStamp>..</TimeStamp><Nonce>..</Nonce></xml>`.
-- (KF replies go through send_msg, not here; this completes the WXBizMsgCrypt protocol.)
-- @param msg the reply XML (string, at most MAX_MSG bytes)
-- @param timestamp seconds (string or integer; default: now)
-- @param nonce string of [A-Za-z0-9_-] (default: 16 random hex digits)
-- @return the XML string; or nil, err
function Callback:encrypt_reply(msg, timestamp, nonce)
  local encrypt, signature, ts, n = seal(self, "encrypt_reply", msg, timestamp, nonce)
  if not encrypt then
    return fail("encrypt_reply", signature)
  end
  return format("<xml><Encrypt><![CDATA[%s]]></Encrypt><MsgSignature><![CDATA[%s]]></MsgSignature>"
    .. "<TimeStamp>%s</TimeStamp><Nonce><![CDATA[%s]]></Nonce></xml>", encrypt, signature, ts, n)
end

-- Exposed for the specs of this module and for wechat.work.callback.testing only.
M._parse_flat = parse_flat
M._seal = seal
M._Callback = Callback

return M
