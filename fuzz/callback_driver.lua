-- Drives wechat.work.callback for fuzz/fuzz_callback_xml.c: the XML WeCom posts (outer envelope), the decrypted
-- event XML (through a real encrypt/decrypt round trip) and the URL check's echostr, all from fuzz input.
-- Returns a function(mode, data, random16) that returns nil when every rule held, else what went wrong.
--
-- Rules: run-time data never raises; a failure is `nil, err` with a "callback" error value whose text never holds
-- the token or the key; a success is exactly what the plaintext says (cross-checked with the XML parser and the
-- C decryption on their own).
local callback = require "wechat.work.callback"
local testing = require "wechat.work.callback.testing"
local core = require "wechat.core"
local errors = require "wechat.work.errors"

local ipairs, pairs, pcall, tostring, type = ipairs, pairs, pcall, tostring, type
local format = string.format

local TOKEN = "fuzzTOKENq7XwPz"
local KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
local CORP = "wx5823bf96d3bd56c7"
local TIMESTAMP = "1409304348"
local NONCE = "xxxxxx"

local cb = testing.new({ token = TOKEN, encoding_aes_key = KEY, corp_id = CORP })

-- data: what the request carried; a secret the sender wrote into it may come back (an element name), it is no leak.
local function clean_failure(err, data)
  if not errors.is(err, "callback") then
    return "failure is not a callback error value: " .. tostring(err)
  end
  local text = tostring(err)
  for _, secret in ipairs({ TOKEN, KEY }) do
    if text:find(secret, 1, true) and not data:find(secret, 1, true) then
      return "a secret in an error: " .. text
    end
  end
  return nil
end

local function same_fields(a, b)
  for k, v in pairs(a) do
    if b[k] ~= v then
      return false
    end
  end
  for k in pairs(b) do
    if a[k] == nil then
      return false
    end
  end
  return true
end

local function signed(encrypt)
  return {
    msg_signature = core.callback_signature(TOKEN, TIMESTAMP, NONCE, encrypt),
    timestamp = TIMESTAMP,
    nonce = NONCE,
  }
end

-- The outer body, signed over whatever Encrypt it carries so the checks get past the signature.
local function outer(data)
  local fields = callback._parse_flat(data)
  local encrypt = type(fields) == "table" and fields.Encrypt or nil
  local query = { msg_signature = ("0"):rep(40), timestamp = TIMESTAMP, nonce = NONCE }
  if type(encrypt) == "string" and encrypt ~= "" then
    query = signed(encrypt)
  end
  local ok, event, err = pcall(cb.decrypt_event, cb, query, data)
  if not ok then
    return "decrypt_event raised: " .. tostring(event)
  end
  if event == nil then
    return clean_failure(err, data)
  end
  local plain = core.callback_decrypt(KEY, encrypt, CORP)
  local want = plain and callback._parse_flat(plain)
  if type(event) ~= "table" or not want or not same_fields(want, event) then
    return "decrypt_event's event is not the decrypted XML"
  end
  return nil
end

-- The event XML inside a real envelope: decrypt_event must give exactly what the parser makes of it.
local function inner(data, random16)
  local ok, req, rerr = pcall(cb.build_event_request, cb, data,
    { random16 = random16, timestamp = TIMESTAMP, nonce = NONCE })
  if not ok then
    return "build_event_request raised: " .. tostring(req)
  end
  if req == nil then
    return clean_failure(rerr, data) or "build_event_request failed: " .. tostring(rerr)
  end
  local event, err
  ok, event, err = pcall(cb.decrypt_event, cb, req.query, req.body)
  if not ok then
    return "decrypt_event raised: " .. tostring(event)
  end
  local want, why = callback._parse_flat(data)
  if want then
    if type(event) ~= "table" or not same_fields(want, event) then
      return "decrypt_event's event differs from the XML: " .. tostring(err)
    end
    return nil
  end
  if event ~= nil then
    return "decrypt_event accepted XML the parser refuses: " .. tostring(why)
  end
  local bad = clean_failure(err, data)
  if bad then
    return bad
  end
  if err.message ~= "event: " .. why then
    return format("decrypt_event said %q, the parser %q", tostring(err.message), tostring(why))
  end
  return nil
end

-- The URL check with a fuzzed echostr: verify_url must agree with the C decryption.
local function url_check(data)
  local query = signed(data)
  query.echostr = data
  local ok, echo, err = pcall(cb.verify_url, cb, query)
  if not ok then
    return "verify_url raised: " .. tostring(echo)
  end
  if data == "" or #data > callback.MAX_BODY then
    if echo ~= nil then
      return "verify_url accepted an empty or oversized echostr"
    end
    return clean_failure(err, data)
  end
  local want, werr = core.callback_decrypt(KEY, data, CORP)
  if want then
    if echo ~= want then
      return "verify_url's echo differs from callback_decrypt"
    end
    return nil
  end
  if echo ~= nil then
    return "verify_url accepted what callback_decrypt refuses"
  end
  local bad = clean_failure(err, data)
  if bad then
    return bad
  end
  if err.message ~= "echostr: " .. werr then
    return format("verify_url said %q, callback_decrypt %q", tostring(err.message), tostring(werr))
  end
  return nil
end

return function(mode, data, random16)
  if mode == 0 then
    return outer(data)
  elseif mode == 1 then
    return inner(data, random16)
  end
  return url_check(data)
end
