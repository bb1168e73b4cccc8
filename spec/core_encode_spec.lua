-- wechat.core.encode: the generic encoder behind send_message(c, a, body) and unknown msgtypes.
-- Errors are compared whole, as in core_args_spec.lua (called from a Lua function that pcall runs).
local cjson = require "cjson"
local core = require "wechat.core"
local interpreter = require "helpers.interpreter"

local encode = core.encode

local function raised(value)
  local ok, err = pcall(function()
    local r = encode(value)
    return r
  end)
  assert.is_false(ok, "no error; returned " .. tostring(err))
  return err
end

-- The message of what fn(...) raised, without its position.
local function raised_by(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  return (tostring(err):gsub("^[^:]+:%d+: ", ""))
end

local function nested(depth, leaf)
  local t = leaf or {}
  for _ = 2, depth do
    t = { t }
  end
  return t
end

describe("wechat.core.encode", function()
  describe("tables", function()
    it("writes an empty table as an empty array", function()
      assert.equal("[]", encode({}))
      assert.equal([[{"list":[]}]], encode({ list = {} }))
    end)

    it("writes a table whose keys are exactly 1..n as an array", function()
      assert.equal([=[[1,"a",true,false]]=], encode({ 1, "a", true, false }))
      assert.equal("[[],[[]],[1,[2]]]", encode({ {}, { {} }, { 1, { 2 } } }))
      local t = {}
      t[3], t[1], t[2] = "c", "a", "b"
      assert.equal([=[["a","b","c"]]=], encode(t))
    end)

    it("writes a table with string keys as an object", function()
      assert.equal([[{"a":1}]], encode({ a = 1 }))
      local value = { touser = "u", open_kfid = "k", msgtype = "x", x = { a = { 1, 2 }, b = { c = "d" } } }
      assert.same(value, cjson.decode(encode(value)))
    end)

    it("follows __jsontype = 'object' and 'array' in the metatable", function()
      local object = { __jsontype = "object" }
      local array = { __jsontype = "array" }
      assert.equal("{}", encode(setmetatable({}, object)))
      assert.equal([[{"a":{}}]], encode({ a = setmetatable({}, object) }))
      assert.equal([[{"k":"v"}]], encode(setmetatable({ k = "v" }, object)))
      assert.equal("[]", encode(setmetatable({}, array)))
      assert.equal("[1,2]", encode(setmetatable({ 1, 2, x = "not written" }, array)))
    end)

    it("ignores other metatables and reads tables raw", function()
      local mt = { __index = function() return "from __index" end, __pairs = function() error("not called") end }
      assert.equal([[{"a":1}]], encode(setmetatable({ a = 1 }, mt)))
      assert.equal("[]", encode(setmetatable({}, mt)))
    end)

    it("leaves the value as it was", function()
      local value = { a = { 1, 2 }, b = setmetatable({}, { __jsontype = "object" }) }
      encode(value)
      assert.same({ 1, 2 }, value.a)
      assert.equal("object", getmetatable(value.b).__jsontype)
      assert.is_nil(getmetatable(value))
    end)
  end)

  describe("scalars", function()
    it("writes strings, booleans, nil and cjson.null", function()
      assert.equal([["s"]], encode("s"))
      assert.equal("true", encode(true))
      assert.equal("false", encode(false))
      assert.equal("null", encode(nil))
      assert.equal("null", encode(cjson.null))
      assert.equal([[{"a":[null,1]}]], encode({ a = { cjson.null, 1 } }))
    end)

    it("writes integers without a decimal point", function()
      local values = { 0, -1, 42, 2 ^ 53, -2 ^ 53, 3.0, 1e15, 2048.0 }
      local out = {}
      for i, v in ipairs(values) do
        out[i] = encode(v)
      end
      assert.same({ "0", "-1", "42", "9007199254740992", "-9007199254740992", "3", "1000000000000000", "2048" }, out)
    end)

    it("writes other numbers with the fewest of 15, 16, 17 digits that read back the same", function()
      local values = { 0.1, 0.1 + 0.2, 1 / 3, 123.456, -0.25, 1e21, 1e300, -1e-300, 5e-324, 1.7976931348623157e308,
        2 ^ 54, 2 ^ 63, -0.0, 1e-7 }
      local out = {}
      for i, v in ipairs(values) do
        out[i] = encode(v)
        assert.equal(v, tonumber(out[i]))
      end
      assert.same({ "0.1", "0.30000000000000004", "0.3333333333333333", "123.456", "-0.25", "1e+21", "1e+300",
        "-1e-300", "4.94065645841247e-324", "1.7976931348623157e+308", "18014398509481984",
        "9.223372036854776e+18", "-0", "1e-07" }, out)
    end)

    it("writes 5.4 integers beyond 2^53 exactly", function()
      if not math.type then
        -- LuaJIT numbers are doubles: 2^63 is the float written above
        assert.equal("9.223372036854776e+18", encode(2 ^ 63))
        return
      end
      assert.equal("9223372036854775807", encode(math.maxinteger))
      assert.equal("-9223372036854775808", encode(math.mininteger))
    end)

    it("writes '.' as the decimal point whatever LC_NUMERIC says", function()
      -- A real locale with a decimal comma, made with localedef, in a child interpreter started with LOCPATH.
      local dir = os.tmpname()
      os.remove(dir)
      local made = io.popen("mkdir " .. dir .. " && localedef -i de_DE -f UTF-8 " .. dir
        .. "/de_DE.UTF-8 >/dev/null 2>&1 && echo made"):read("*a")
      if made ~= "made\n" then
        io.popen("rm -rf " .. dir):close()
      end
      -- Not a capability the machine may lack: Debian's locales package (tools/deps) has what localedef needs.
      assert.equal("made\n", made, "localedef cannot make de_DE.UTF-8: install Debian's locales (tools/deps)")
      local f = assert(io.open(dir .. "/child.lua", "w"))
      f:write(("package.cpath = %q\n"):format(package.cpath), [[
        local core = require "wechat.core"
        io.write(tostring(os.setlocale("de_DE.UTF-8", "numeric")), " ", string.format("%.1f", 1.5), " ",
          core.encode({ 1.5, -0.25, 1e-7, { x = 1234.5 } }))
      ]])
      f:close()
      local p = io.popen("LOCPATH=" .. dir .. " " .. interpreter.command() .. " " .. dir .. "/child.lua")
      local out = p:read("*a")
      p:close()
      io.popen("rm -rf " .. dir):close()
      -- Lua 5.4 formats through the C library (so "1,5" proves the locale is on); LuaJIT formats on its own.
      local shown = jit and "1.5" or "1,5"
      assert.equal("de_DE.UTF-8 " .. shown .. [=[ [1.5,-0.25,1e-07,{"x":1234.5}]]=], out)
    end)
  end)

  describe("strings", function()
    it("escapes quotes, backslashes and control characters in values and keys, and writes the rest raw", function()
      assert.equal([["a\"b\\c/\n\r\t\b\f\u0000\u001f]] .. "\127\xE4\xB8\xAD\xF0\x9F\x98\x80" .. [["]],
        encode("a\"b\\c/\n\r\t\b\f\0\31\127\xE4\xB8\xAD\xF0\x9F\x98\x80"))
      assert.equal([[{"a\"b\n":1}]], encode({ ["a\"b\n"] = 1 }))
      assert.equal('{"名字":"值"}', encode({ ["名字"] = "值" }))
    end)

    it("writes sequences and escapes that fall on the edges of the buffer's storage whole", function()
      -- Lua 5.4's buffer starts with 1 KiB inside the luaL_Buffer, LuaJIT's is 8 KiB: put a 4-byte sequence,
      -- a 3-byte one and an escape at every offset around both.
      for _, around in ipairs { 1024, 8192 } do
        for pad = around - 12, around + 4 do
          local s = ("a"):rep(pad) .. "\xF0\x9F\x98\x80\xE4\xB8\xAD\n" .. ("b"):rep(pad)
          local expected = '["' .. ("a"):rep(pad) .. "\xF0\x9F\x98\x80\xE4\xB8\xAD\\n" .. ("b"):rep(pad) .. '"]'
          assert.equal(expected, encode({ s }))
        end
      end
    end)

    it("writes a long string whole across buffer boundaries", function()
      local parts = {}
      for i = 1, 4000 do
        parts[i] = ({ "中文", "\n", "\"", "emoji \xF0\x9F\x98\x80", "\1", "plain ascii text " })[i % 6 + 1]
      end
      local s = table.concat(parts)
      local escaped = s:gsub('[%c"\\]', function(c)
        local named = { ["\n"] = "\\n", ["\""] = "\\\"", ["\\"] = "\\\\" }
        return named[c] or ("\\u%04x"):format(c:byte())
      end)
      assert.equal('"' .. escaped .. '"', encode(s))
      assert.equal(s, cjson.decode(encode({ s }))[1])
    end)
  end)

  describe("large values", function()
    it("writes thousands of items and keys, across many buffer flushes", function()
      local value = { items = {}, index = {} }
      for i = 1, 3000 do
        value.items[i] = { id = i, name = "商品" .. i, price = i + 0.5, tags = { "a", "b\n" }, ok = i % 2 == 0 }
        value.index["k" .. i] = i
      end
      local raw = encode(value)
      assert.same(value, cjson.decode(raw))
      assert.same(cjson.decode(cjson.encode(value)), cjson.decode(raw))
    end)

    -- The writer's buffer: 4 KiB inline, then a block that doubles, owned by a userdata so that a raise after it
    -- grew frees it too (tools/sanitize checks for leaks); the body is exact on either side of each step.
    it("writes bodies across the inline buffer and its doublings exactly, and raises from a grown one", function()
      for _, n in ipairs{ 4000, 4094, 4095, 4096, 8190, 8191, 65536, 1048576 } do
        local s = ("x"):rep(n - 4)
        assert.equal('["' .. s .. '"]', encode({ s }))
      end
      local grown = { ("é"):rep(3000), ("\n"):rep(5000), ("é"):rep(3000) .. "\255" }
      assert.equal("bad argument #1 to 'encode' (value[3]: invalid UTF-8 at byte 6001)", raised(grown))
      assert.equal("bad argument #3 to 'send_message' (body.text.content: invalid UTF-8 at byte 6001)",
        raised_by(core.send_message, nil, nil, { msgtype = "text", text = { x = ("y"):rep(9000),
          content = ("é"):rep(3000) .. "\255" } }))
    end)

    it("takes 32 levels of nesting", function()
      assert.equal(("["):rep(32) .. ("]"):rep(32), encode(nested(32)))
      local innermost = setmetatable({}, { __jsontype = "object" })
      assert.equal(("["):rep(31) .. "{}" .. ("]"):rep(31), encode(nested(32, innermost)))
    end)
  end)

  describe("errors", function()
    it("raise on NaN and infinities, naming the path", function()
      assert.equal("bad argument #1 to 'encode' (value: NaN not allowed)", raised(0 / 0))
      assert.equal("bad argument #1 to 'encode' (value.a.b[2]: NaN not allowed)", raised({ a = { b = { 1, 0 / 0 } } }))
      assert.equal("bad argument #1 to 'encode' (value[1]: infinity not allowed)", raised({ math.huge }))
      assert.equal("bad argument #1 to 'encode' (value.x: infinity not allowed)", raised({ x = -math.huge }))
    end)

    it("raise on invalid UTF-8 in values and keys", function()
      assert.equal("bad argument #1 to 'encode' (value: invalid UTF-8 at byte 1)", raised("\xff"))
      assert.equal("bad argument #1 to 'encode' (value.a[2]: invalid UTF-8 at byte 2)",
        raised({ a = { "ok", "x\xC0\x80" } }))
      assert.equal("bad argument #1 to 'encode' (value.s: invalid UTF-8 at byte 1)", raised({ s = "\xED\xA0\x80" }))
      assert.equal("bad argument #1 to 'encode' (value: invalid UTF-8 in key at byte 2)", raised({ ["k\xff"] = 1 }))
      assert.equal("bad argument #1 to 'encode' (value.a: invalid UTF-8 in key at byte 1)",
        raised({ a = { ["\xF4\x90\x80\x80"] = 1 } }))
    end)

    it("raise on keys that are neither strings nor exactly 1..n", function()
      local msg = "bad argument #1 to 'encode' (value: keys must be strings or exactly 1..n, got %s)"
      assert.equal(msg:format("boolean"), raised({ [true] = 1 }))
      assert.equal(msg:format("number"), raised({ 1, x = 2 }))
      assert.equal(msg:format("number"), raised({ [1] = 1, [3] = 3 }))
      assert.equal(msg:format("number"), raised({ [0] = "a" }))
      assert.equal(msg:format("number"), raised({ [1.5] = "a" }))
      assert.equal(msg:format("table"), raised({ [{}] = "a" }))
      assert.equal("bad argument #1 to 'encode' (value.a: keys must be strings or exactly 1..n, got number)",
        raised({ a = { [2] = 1 } }))
      assert.equal("bad argument #1 to 'encode' (value: keys must be strings or exactly 1..n, got number)",
        raised(setmetatable({ 1 }, { __jsontype = "object" })))
    end)

    it("raise on functions, threads and userdata other than cjson.null", function()
      assert.equal("bad argument #1 to 'encode' (value.f: function not allowed)", raised({ f = print }))
      assert.equal("bad argument #1 to 'encode' (value[1]: thread not allowed)",
        raised({ coroutine.create(print) }))
      assert.equal("bad argument #1 to 'encode' (value.out: userdata not allowed)", raised({ out = io.stdout }))
      assert.equal("bad argument #1 to 'encode' (value: function not allowed)", raised(print))
    end)

    it("keep messages short: keys and quoted strings stop after 40 bytes", function()
      local long = ("k"):rep(1000000)
      assert.equal("bad argument #1 to 'encode' (value." .. ("k"):rep(40) .. "...: NaN not allowed)",
        raised({ [long] = 0 / 0 }))
      local spaced = ("a b"):rep(20)
      assert.equal([[bad argument #1 to 'encode' (value["]] .. spaced:sub(1, 40) .. [[..."]: NaN not allowed)]],
        raised({ [spaced] = 0 / 0 }))
      -- a path repeats its keys: 32 levels of 1 MB keys still make a message of about 1.5 KB
      local t = { [long] = 1 }
      for _ = 1, 32 do
        t = { [long] = t }
      end
      assert.equal("bad argument #1 to 'encode' (value" .. ("." .. ("k"):rep(40) .. "..."):rep(32)
        .. ": nesting deeper than 32)", raised(t))
      assert.equal("bad argument #1 to 'encode' (value: __jsontype must be 'object' or 'array', got '"
        .. ("x"):rep(40) .. "...')", raised(setmetatable({}, { __jsontype = ("x"):rep(50) })))
    end)

    it("raise on a __jsontype that is not 'object' or 'array'", function()
      assert.equal("bad argument #1 to 'encode' (value: __jsontype must be 'object' or 'array', got 'map')",
        raised(setmetatable({}, { __jsontype = "map" })))
      assert.equal("bad argument #1 to 'encode' (value.a: __jsontype must be 'object' or 'array', got number)",
        raised({ a = setmetatable({}, { __jsontype = 1 }) }))
      assert.equal([[bad argument #1 to 'encode' (value: __jsontype must be 'object' or 'array', got 'object\0')]],
        raised(setmetatable({}, { __jsontype = "object\0" })))
    end)

    it("raise on nesting deeper than 32", function()
      assert.equal("bad argument #1 to 'encode' (value" .. ("[1]"):rep(32) .. ": nesting deeper than 32)",
        raised(nested(33)))
    end)

    it("stop a cycle at the same depth", function()
      local t = {}
      t.self = t
      assert.equal("bad argument #1 to 'encode' (value" .. (".self"):rep(32) .. ": nesting deeper than 32)", raised(t))
      local a = { list = { {} } }
      a.list[1].back = a.list
      assert.equal("bad argument #1 to 'encode' (value.list" .. ("[1].back"):rep(15) .. "[1]: nesting deeper than 32)",
        raised(a))
      -- the same table twice, side by side, is no cycle
      local shared = { 1 }
      assert.equal([=[{"a":[[1],[1]]}]=], encode({ a = { shared, shared } }))
    end)

    it("name keys that are not identifiers in brackets", function()
      assert.equal([[bad argument #1 to 'encode' (value["b c"][2]: NaN not allowed)]],
        raised({ ["b c"] = { 1, 0 / 0 } }))
      assert.equal([[bad argument #1 to 'encode' (value["say \"hi\""].x: NaN not allowed)]],
        raised({ ['say "hi"'] = { x = 0 / 0 } }))
      assert.equal([[bad argument #1 to 'encode' (value["1a"]: NaN not allowed)]], raised({ ["1a"] = 0 / 0 }))
      assert.equal([[bad argument #1 to 'encode' (value["a\10b"]: NaN not allowed)]], raised({ ["a\nb"] = 0 / 0 }))
      assert.equal([[bad argument #1 to 'encode' (value["名字"]._ok_1: NaN not allowed)]],
        raised({ ["名字"] = { _ok_1 = 0 / 0 } }))
    end)
  end)
end)
