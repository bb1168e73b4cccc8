-- Reads the raw text of parts of a JSON document that cjson has already accepted, so the stand-in can serve what
-- it was sent byte for byte (cjson 2.1.0 would turn [] into {} and round numbers to 14 digits) and can tell an
-- empty array from an empty object.
local cjson = require "cjson.safe"

local find, sub, byte = string.find, string.sub, string.byte
local select = select

local M = {}

local QUOTE, LBRACE, RBRACE, LBRACKET, RBRACKET, COLON, COMMA = 34, 123, 125, 91, 93, 58, 44

local function skip_ws(s, i)
  local _, e = find(s, "^[ \t\r\n]*", i)
  return e + 1
end

-- i is at the opening quote; returns the index after the closing one.
local function skip_string(s, i)
  local j = i + 1
  while true do
    local q = find(s, '["\\]', j)
    if not q then
      return nil
    end
    if byte(s, q) == QUOTE then
      return q + 1
    end
    j = q + 2 -- past the escaped character
  end
end

-- i is at the first character of a value; returns the index after it.
local function skip_value(s, i)
  local c = byte(s, i)
  if c == QUOTE then
    return skip_string(s, i)
  end
  if c == LBRACE or c == LBRACKET then
    local depth, j = 0, i
    while true do
      local q = find(s, '["{}%[%]]', j)
      if not q then
        return nil
      end
      local b = byte(s, q)
      if b == QUOTE then
        j = skip_string(s, q)
        if not j then
          return nil
        end
      else
        depth = depth + ((b == LBRACE or b == LBRACKET) and 1 or -1)
        j = q + 1
        if depth == 0 then
          return j
        end
      end
    end
  end
  -- numbers and the literals true, false, null (cjson also takes hex, inf and nan)
  local _, e = find(s, "^[%w%.%+%-]+", i)
  return e and e + 1
end

-- "object", "array", "string", "number", "true", "false", "null" for the raw text of one value.
function M.kind(raw)
  local c = byte(raw, skip_ws(raw, 1))
  if c == LBRACE then
    return "object"
  elseif c == LBRACKET then
    return "array"
  elseif c == QUOTE then
    return "string"
  end
  local word = raw:match("^%s*(%a+)")
  if word == "true" or word == "false" or word == "null" then
    return word
  end
  return "number"
end

-- The members of the object in s: a list of { key = "decoded key", raw = "raw value" }, in document order.
function M.members(s)
  local i = skip_ws(s, 1)
  if byte(s, i) ~= LBRACE then
    return nil, "not an object"
  end
  local out = {}
  i = skip_ws(s, i + 1)
  if byte(s, i) == RBRACE then
    return out
  end
  while true do
    if byte(s, i) ~= QUOTE then
      return nil, "malformed object"
    end
    local kend = skip_string(s, i)
    local key = kend and cjson.decode(sub(s, i, kend - 1))
    if not key then
      return nil, "malformed key"
    end
    i = skip_ws(s, kend)
    if byte(s, i) ~= COLON then
      return nil, "malformed object"
    end
    i = skip_ws(s, i + 1)
    local vend = skip_value(s, i)
    if not vend then
      return nil, "malformed value"
    end
    out[#out + 1] = { key = key, raw = sub(s, i, vend - 1) }
    i = skip_ws(s, vend)
    local c = byte(s, i)
    if c == RBRACE then
      return out
    end
    if c ~= COMMA then
      return nil, "malformed object"
    end
    i = skip_ws(s, i + 1)
  end
end

-- The raw texts of the elements of the array in s, in order.
function M.elements(s)
  local i = skip_ws(s, 1)
  if byte(s, i) ~= LBRACKET then
    return nil, "not an array"
  end
  local out = {}
  i = skip_ws(s, i + 1)
  if byte(s, i) == RBRACKET then
    return out
  end
  while true do
    local vend = skip_value(s, i)
    if not vend then
      return nil, "malformed value"
    end
    out[#out + 1] = sub(s, i, vend - 1)
    i = skip_ws(s, vend)
    local c = byte(s, i)
    if c == RBRACKET then
      return out
    end
    if c ~= COMMA then
      return nil, "malformed array"
    end
    i = skip_ws(s, i + 1)
  end
end

-- The raw value at a path of object keys ("msgmenu", "list"), or nil. With duplicate keys the last one counts,
-- as in cjson.
function M.get(s, ...)
  local raw = s
  for n = 1, select("#", ...) do
    local key = select(n, ...)
    local members = M.members(raw)
    if not members then
      return nil
    end
    local found
    for k = 1, #members do
      if members[k].key == key then
        found = members[k].raw
      end
    end
    if not found then
      return nil
    end
    raw = found
  end
  return raw
end

-- The object in raw with prefix_members ("\"a\":1,\"b\":2") put first; raw must be an object.
function M.prepend(raw, prefix_members)
  if prefix_members == "" then
    return raw
  end
  local open = skip_ws(raw, 1)
  local after = skip_ws(raw, open + 1)
  local sep = byte(raw, after) == RBRACE and "" or ","
  return sub(raw, 1, open) .. prefix_members .. sep .. sub(raw, open + 1)
end

return M
