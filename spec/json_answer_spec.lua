-- core.decode_answer: the client's fast path for small flat answers. Where it answers, its table must be exactly
-- what cjson.decode (with integers restored, as the client does) gives; everything else it leaves to cjson.
local core = require "wechat.core"
local cjson = require "cjson.safe"

local tointeger = math.tointeger

local function restore_integers(value)
  for k, v in pairs(value) do
    if type(v) == "number" and tointeger and tointeger(v) then
      value[k] = tointeger(v)
    end
  end
  return value
end

-- math.type where there is one: 1 and 1.0 differ on Lua 5.4
local function typed(t)
  local out = {}
  for k, v in pairs(t) do
    out[k] = { v, math.type and math.type(v) or type(v) }
  end
  return out
end

describe("core.decode_answer", function()
  it("decodes flat objects of plain strings, integers and booleans as cjson does", function()
    for _, body in ipairs{
      '{"errcode":0,"errmsg":"ok","msgid":"MSGID"}',
      ' { "errcode" : 40014 , "errmsg" : "invalid access_token" } \r\n',
      '{"errcode":0,"errmsg":"ok","access_token":"ST0123","expires_in":7200}',
      '{}',
      '{"a":-12,"b":true,"c":false,"d":"中文 ✓","a":3}',
      '{"n":999999999999999,"z":-0,"e":""}',
    } do
      local fast = core.decode_answer(body)
      assert.is_table(fast, body)
      assert.same(typed(restore_integers(cjson.decode(body))), typed(fast))
    end
  end)

  it("leaves everything else to cjson", function()
    for _, body in ipairs{
      '', '[]', '{"a":[1]}', '{"a":{"b":1}}', '{"a":"x\\"y"}', '{"a":"\\u4e2d"}', '{"a":1.5}', '{"a":1e3}',
      '{"a":null}', '{"a":01}', '{"a":1234567890123456}', '{"a":1,}', '{"a":1', '{"a":1} x', '{a:1}',
      '{"a":"tab\there"}', '{"a":-}', '{"a":tru}', 'null', '{"a":1}{"b":2}',
    } do
      assert.are.equal(0, select("#", core.decode_answer(body)), body)
    end
  end)
end)
