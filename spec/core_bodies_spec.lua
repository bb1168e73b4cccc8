-- wechat.core body builders: the JSON each KF operation posts. Every body is compared twice: as the exact
-- string (the builders write keys in the documented order) and decoded by cjson, field by field.
local cjson = require "cjson"
local core = require "wechat.core"

local TO = "wmUSER_ext-01"
local KFID = "wkKF_01"
-- Chinese, a 4-byte emoji with a skin-tone modifier, a 3-byte symbol: must arrive byte for byte, not \u-escaped.
local CN = "您好，欢迎光临！请问有什么可以帮您？\xF0\x9F\x91\x8B\xF0\x9F\x8F\xBB\xE2\x9C\x85"

local function send_body(msgtype, typed, msgid)
  return { touser = TO, open_kfid = KFID, msgtype = msgtype, [msgtype] = typed, msgid = msgid }
end

local function check(raw, expected_raw, expected)
  assert.equal(expected_raw, raw)
  assert.same(expected, cjson.decode(raw))
end

local MENU_ITEMS = {
  { type = "click", click = { id = "101", content = "满意" } },
  { type = "view", view = { url = "https://example.com/faq?a=1&b=2", content = "常见问题" } },
  { type = "miniprogram", miniprogram = { appid = "wx123", pagepath = "pages/index?x=1", content = "小程序" } },
  { type = "text", text = { content = "谢谢", no_newline = 1 } },
}
local MENU_ITEMS_JSON = [[[{"type":"click","click":{"id":"101","content":"满意"}},]]
  .. [[{"type":"view","view":{"url":"https://example.com/faq?a=1&b=2","content":"常见问题"}},]]
  .. [[{"type":"miniprogram","miniprogram":{"appid":"wx123","pagepath":"pages/index?x=1","content":"小程序"}},]]
  .. [[{"type":"text","text":{"content":"谢谢","no_newline":1}}]] .. "]"

describe("wechat.core body builders", function()
  describe("send_text", function()
    it("writes touser, open_kfid, msgtype and text in that order", function()
      check(core.send_text(nil, nil, TO, KFID, "hello"),
        [[{"touser":"wmUSER_ext-01","open_kfid":"wkKF_01","msgtype":"text","text":{"content":"hello"}}]],
        send_body("text", { content = "hello" }))
    end)

    it("writes opts.msgid before msgtype", function()
      check(core.send_text(nil, nil, TO, KFID, "hello", { msgid = "Msg-2024_01" }),
        [[{"touser":"wmUSER_ext-01","open_kfid":"wkKF_01","msgid":"Msg-2024_01","msgtype":"text",]]
          .. [["text":{"content":"hello"}}]],
        send_body("text", { content = "hello" }, "Msg-2024_01"))
    end)

    it("omits msgid when opts is an empty table", function()
      check(core.send_text(nil, nil, TO, KFID, "hi", {}),
        [[{"touser":"wmUSER_ext-01","open_kfid":"wkKF_01","msgtype":"text","text":{"content":"hi"}}]],
        send_body("text", { content = "hi" }))
    end)

    it("keeps Chinese and emoji byte for byte, unescaped", function()
      local raw = core.send_text(nil, nil, TO, KFID, CN)
      assert.equal([[{"touser":"wmUSER_ext-01","open_kfid":"wkKF_01","msgtype":"text","text":{"content":"]]
        .. CN .. [["}}]], raw)
      local content = cjson.decode(raw).text.content
      assert.equal(CN, content)
      assert.equal(65, #content) -- 18 CJK characters of 3 bytes, 4 + 4 + 3
    end)

    it("escapes quotes, backslashes and control characters, and nothing else", function()
      local content = "a\"b\\c/d\n\r\t\b\f\0\1\31\127\xC3\xA9<>&'"
      local raw = core.send_text(nil, nil, TO, KFID, content)
      assert.equal([[{"touser":"wmUSER_ext-01","open_kfid":"wkKF_01","msgtype":"text","text":{"content":]]
        .. [["a\"b\\c/d\n\r\t\b\f\u0000\u0001\u001f]] .. "\127\xC3\xA9<>&'" .. [["}}]], raw)
      assert.equal(content, cjson.decode(raw).text.content)
    end)

    it("writes UTF-8 at the edges of the valid ranges as is", function()
      -- U+0080, U+07FF, U+0800, U+D7FF, U+E000, U+FFFF, U+10000, U+10FFFF
      local content = "\xC2\x80\xDF\xBF\xE0\xA0\x80\xED\x9F\xBF\xEE\x80\x80\xEF\xBF\xBF\xF0\x90\x80\x80\xF4\x8F\xBF\xBF"
      local raw = core.send_text(nil, nil, TO, KFID, content)
      assert.equal(content, raw:match('"content":"(.*)"}}$'))
      assert.equal(content, cjson.decode(raw).text.content)
    end)

    it("writes a 2048-byte content made of escapes and multi-byte characters whole", function()
      local content = ("\n"):rep(512) .. ("\xC3\xA9"):rep(256) .. ("\1"):rep(512) .. ("\xE4\xB8\xAD"):rep(170) .. "ab"
      assert.equal(2048, #content)
      local raw = core.send_text(nil, nil, TO, KFID, content)
      assert.equal([[{"touser":"wmUSER_ext-01","open_kfid":"wkKF_01","msgtype":"text","text":{"content":"]]
        .. ([[\n]]):rep(512) .. ("\xC3\xA9"):rep(256) .. ([[\u0001]]):rep(512) .. ("\xE4\xB8\xAD"):rep(170)
        .. [[ab"}}]],
        raw)
      assert.equal(content, cjson.decode(raw).text.content)
    end)
  end)

  describe("send_image, send_voice, send_file", function()
    for _, t in ipairs { "image", "voice", "file" } do
      it("writes " .. t .. ".media_id", function()
        check(core["send_" .. t](nil, nil, TO, KFID, "MEDIA_ID_1", { msgid = "m1" }),
          [[{"touser":"wmUSER_ext-01","open_kfid":"wkKF_01","msgid":"m1","msgtype":"]] .. t .. [[","]] .. t
            .. [[":{"media_id":"MEDIA_ID_1"}}]],
          send_body(t, { media_id = "MEDIA_ID_1" }, "m1"))
      end)
    end
  end)

  -- WeCom's video object is {"media_id"} only: title and description are the reference library's arguments,
  -- accepted and never sent
  describe("send_video", function()
    it("writes media_id only, whatever title and description say", function()
      check(core.send_video(nil, nil, TO, KFID, "MID", "标题", "描述"),
        [[{"touser":"wmUSER_ext-01","open_kfid":"wkKF_01","msgtype":"video",]]
          .. [["video":{"media_id":"MID"}}]],
        send_body("video", { media_id = "MID" }))
      check(core.send_video(nil, nil, TO, KFID, "MID", "t", "\xff"),
        [[{"touser":"wmUSER_ext-01","open_kfid":"wkKF_01","msgtype":"video",]]
          .. [["video":{"media_id":"MID"}}]],
        send_body("video", { media_id = "MID" }))
    end)

    it("refuses title and description inside send_message's video object", function()
      assert.has_error(function()
        core.send_message(nil, nil, TO, KFID, "video", { media_id = "MID", title = "t" })
      end, "bad argument #6 to 'send_message' (msg: unknown key 'title')")
    end)

    it("omits title and description when nil", function()
      check(core.send_video(nil, nil, TO, KFID, "MID", nil, nil, { msgid = "v1" }),
        [[{"touser":"wmUSER_ext-01","open_kfid":"wkKF_01","msgid":"v1","msgtype":"video",]]
          .. [["video":{"media_id":"MID"}}]],
        send_body("video", { media_id = "MID" }, "v1"))
    end)

  end)

  describe("send_link", function()
    it("writes title, desc, url, thumb_media_id in that order", function()
      local msg = { url = "https://example.com/a?b=c", thumb_media_id = "THUMB", desc = "描述", title = "标题" }
      check(core.send_link(nil, nil, TO, KFID, msg),
        [[{"touser":"wmUSER_ext-01","open_kfid":"wkKF_01","msgtype":"link","link":{"title":"标题",]]
          .. [["desc":"描述","url":"https://example.com/a?b=c","thumb_media_id":"THUMB"}}]],
        send_body("link", { title = "标题", desc = "描述", url = "https://example.com/a?b=c",
          thumb_media_id = "THUMB" }))
    end)

    it("omits desc when nil and keeps an empty one", function()
      local raw = core.send_link(nil, nil, TO, KFID, { title = "t", url = "HTTP://X.CN", thumb_media_id = "m" })
      assert.equal([[{"touser":"wmUSER_ext-01","open_kfid":"wkKF_01","msgtype":"link",]]
        .. [["link":{"title":"t","url":"HTTP://X.CN","thumb_media_id":"m"}}]], raw)
      raw = core.send_link(nil, nil, TO, KFID, { title = "t", desc = "", url = "http://x.cn", thumb_media_id = "m" })
      assert.same({ title = "t", desc = "", url = "http://x.cn", thumb_media_id = "m" }, cjson.decode(raw).link)
    end)

    it("takes a title of 128 bytes, a desc of 512 and a url of 2048", function()
      local msg = { title = ("t"):rep(128), desc = ("\xE4\xB8\xAD"):rep(170) .. "ab",
        url = "https://x.cn/" .. ("p"):rep(2035), thumb_media_id = "m" }
      assert.same(msg, cjson.decode((core.send_link(nil, nil, TO, KFID, msg))).link)
    end)
  end)

  describe("send_mini_program", function()
    it("writes appid, title, thumb_media_id, pagepath in that order", function()
      local msg = { pagepath = "pages/index?id=1", appid = "wx8bd80126147dfAAA", title = "小程序", thumb_media_id = "T" }
      check(core.send_mini_program(nil, nil, TO, KFID, msg),
        [[{"touser":"wmUSER_ext-01","open_kfid":"wkKF_01","msgtype":"miniprogram","miniprogram":]]
          .. [[{"appid":"wx8bd80126147dfAAA","title":"小程序","thumb_media_id":"T","pagepath":"pages/index?id=1"}}]],
        send_body("miniprogram", msg))
    end)

    it("omits title when nil", function()
      local msg = { appid = "wx1", thumb_media_id = "T", pagepath = "p" }
      check(core.send_mini_program(nil, nil, TO, KFID, msg),
        [[{"touser":"wmUSER_ext-01","open_kfid":"wkKF_01","msgtype":"miniprogram","miniprogram":]]
          .. [[{"appid":"wx1","thumb_media_id":"T","pagepath":"p"}}]],
        send_body("miniprogram", msg))
    end)
  end)

  describe("send_menu", function()
    it("writes head_content, the four kinds of items and tail_content", function()
      local msg = { tail_content = "欢迎再次光临", head_content = "您对本次服务是否满意呢？", list = MENU_ITEMS }
      check(core.send_menu(nil, nil, TO, KFID, msg, { msgid = "menu1" }),
        [[{"touser":"wmUSER_ext-01","open_kfid":"wkKF_01","msgid":"menu1","msgtype":"msgmenu","msgmenu":]]
          .. [[{"head_content":"您对本次服务是否满意呢？","list":]] .. MENU_ITEMS_JSON
          .. [[,"tail_content":"欢迎再次光临"}}]],
        send_body("msgmenu", msg, "menu1"))
    end)

    it("writes an empty list as [] (not {})", function()
      local raw = core.send_menu(nil, nil, TO, KFID, { head_content = "h", list = {} })
      assert.equal([[{"touser":"wmUSER_ext-01","open_kfid":"wkKF_01","msgtype":"msgmenu",]]
        .. [["msgmenu":{"head_content":"h","list":[]}}]], raw)
      assert.truthy(raw:find('"list":[]', 1, true))
      assert.same(send_body("msgmenu", { head_content = "h", list = {} }), cjson.decode(raw))
    end)

    it("omits what is nil", function()
      check(core.send_menu(nil, nil, TO, KFID, { list = { MENU_ITEMS[4] } }),
        [[{"touser":"wmUSER_ext-01","open_kfid":"wkKF_01","msgtype":"msgmenu",]]
          .. [["msgmenu":{"list":[{"type":"text","text":{"content":"谢谢","no_newline":1}}]}}]],
        send_body("msgmenu", { list = { MENU_ITEMS[4] } }))
      assert.equal([[{"touser":"wmUSER_ext-01","open_kfid":"wkKF_01","msgtype":"msgmenu","msgmenu":{}}]],
        core.send_menu(nil, nil, TO, KFID, {}))
    end)

    it("writes text items without no_newline, and no_newline 0", function()
      local list = {
        { type = "text", text = { content = "a" } },
        { type = "text", text = { content = "b", no_newline = 0 } },
      }
      assert.equal([[{"touser":"wmUSER_ext-01","open_kfid":"wkKF_01","msgtype":"msgmenu","msgmenu":{"list":]]
        .. [[[{"type":"text","text":{"content":"a"}},{"type":"text","text":{"content":"b","no_newline":0}}]}}]],
        core.send_menu(nil, nil, TO, KFID, { list = list }))
    end)

    it("takes 10 items", function()
      local list = {}
      for i = 1, 10 do
        list[i] = { type = "click", click = { id = "id" .. i, content = "选项" .. i } }
      end
      local body = cjson.decode((core.send_menu(nil, nil, TO, KFID, { list = list })))
      assert.equal(10, #body.msgmenu.list)
      assert.same(list, body.msgmenu.list)
    end)

    it("takes the msg that wechat.work.kf.menu builds", function()
      local menu = require "wechat.work.kf.menu"
      local msg = menu.new("head"):click("1", "yes"):view("https://x.cn", "v"):text("t", true):tail("tail"):build()
      assert.equal([[{"touser":"wmUSER_ext-01","open_kfid":"wkKF_01","msgtype":"msgmenu","msgmenu":]]
        .. [[{"head_content":"head","list":[{"type":"click","click":{"id":"1","content":"yes"}},]]
        .. [[{"type":"view","view":{"url":"https://x.cn","content":"v"}},]]
        .. [[{"type":"text","text":{"content":"t","no_newline":1}}],"tail_content":"tail"}}]],
        core.send_menu(nil, nil, TO, KFID, msg))
    end)
  end)

  describe("send_location", function()
    it("writes name, address, latitude, longitude in that order", function()
      local msg = { longitude = 113.324520, latitude = 23.099994, address = "广州市海珠区", name = "广州塔" }
      check(core.send_location(nil, nil, TO, KFID, msg),
        [[{"touser":"wmUSER_ext-01","open_kfid":"wkKF_01","msgtype":"location","location":]]
          .. [[{"name":"广州塔","address":"广州市海珠区","latitude":23.099994,"longitude":113.32452}}]],
        send_body("location", msg))
    end)

    it("omits name and address when nil and writes whole numbers without a decimal point", function()
      assert.equal([[{"touser":"wmUSER_ext-01","open_kfid":"wkKF_01","msgtype":"location","location":]]
        .. [[{"latitude":-90,"longitude":180}}]],
        core.send_location(nil, nil, TO, KFID, { latitude = -90, longitude = 180 }))
      assert.equal([[{"touser":"wmUSER_ext-01","open_kfid":"wkKF_01","msgtype":"location","location":]]
        .. [[{"latitude":90,"longitude":-180}}]],
        core.send_location(nil, nil, TO, KFID, { latitude = 90.0, longitude = -180.0 }))
    end)
  end)

  describe("send_message", function()
    it("(c, a, to, open_kfid, msgtype, msg) writes a known type by its rules", function()
      check(core.send_message(nil, nil, TO, KFID, "text", { content = CN }, { msgid = "x" }),
        [[{"touser":"wmUSER_ext-01","open_kfid":"wkKF_01","msgid":"x","msgtype":"text","text":{"content":"]]
          .. CN .. [["}}]],
        send_body("text", { content = CN }, "x"))
      check(core.send_message(nil, nil, TO, KFID, "msgmenu", { list = {} }),
        [[{"touser":"wmUSER_ext-01","open_kfid":"wkKF_01","msgtype":"msgmenu","msgmenu":{"list":[]}}]],
        send_body("msgmenu", { list = {} }))
      check(core.send_message(nil, nil, TO, KFID, "location", { latitude = 1.5, longitude = -2.25 }),
        [[{"touser":"wmUSER_ext-01","open_kfid":"wkKF_01","msgtype":"location",]]
          .. [["location":{"latitude":1.5,"longitude":-2.25}}]],
        send_body("location", { latitude = 1.5, longitude = -2.25 }))
    end)

    it("(c, a, to, open_kfid, msgtype, msg) writes an unknown type through the generic encoder", function()
      check(core.send_message(nil, nil, TO, KFID, "business_card", { userid = "zhangsan" }, nil),
        [[{"touser":"wmUSER_ext-01","open_kfid":"wkKF_01","msgtype":"business_card",]]
          .. [["business_card":{"userid":"zhangsan"}}]],
        send_body("business_card", { userid = "zhangsan" }))
      check(core.send_message(nil, nil, TO, KFID, "新\"类型", { n = { 1, 2.5, true } }),
        [[{"touser":"wmUSER_ext-01","open_kfid":"wkKF_01","msgtype":"新\"类型","新\"类型":{"n":[1,2.5,true]}}]],
        send_body("新\"类型", { n = { 1, 2.5, true } }))
    end)

    it("(c, a, body) writes any object through the generic encoder", function()
      local body = { touser = TO, open_kfid = KFID, msgtype = "text", text = { content = CN }, msgid = "m" }
      assert.same(body, cjson.decode((core.send_message(nil, nil, body))))
      assert.equal([[{"text":{"content":"x"}}]], core.send_message(nil, nil, { text = { content = "x" } }))
      assert.equal([[{}]], core.send_message(nil, nil, setmetatable({}, { __jsontype = "object" })))
    end)

    it("(c, a, body) returns the body's msgid, and nil when it has none", function()
      assert.same({ [[{"msgid":"m-1"}]], "m-1" }, { core.send_message(nil, nil, { msgid = "m-1" }) })
      assert.same({ [[{"a":1}]], nil }, { core.send_message(nil, nil, { a = 1 }) })
      assert.equal(2, select("#", core.send_message(nil, nil, { a = 1 })))
    end)

    it("(c, a, body) checks the body's msgid as opts.msgid: \"\" (an error to WeCom), bad bytes, too long", function()
      assert.has_error(function() core.send_message(nil, nil, { msgid = "" }) end,
        "bad argument #3 to 'send_message' (body.msgid: must not be empty)")
      assert.has_error(function() core.send_message(nil, nil, { msgid = "a/b" }) end,
        "bad argument #3 to 'send_message' (body.msgid: only [0-9a-zA-Z_-] allowed)")
      assert.has_error(function() core.send_message(nil, nil, { msgid = ("m"):rep(33) }) end,
        "bad argument #3 to 'send_message' (body.msgid: at most 32 bytes, got 33)")
    end)

    it("makes a distinct msgid of 32 hex digits every time, across refills of its random pool", function()
      local seen, n = {}, 0
      for _ = 1, 1000 do -- 16 bytes each: four pools of 4096 bytes
        local _, msgid = core.send_text({ auto_msgid = true }, nil, TO, KFID, "x")
        assert.truthy(msgid:find("^" .. ("%x"):rep(32) .. "$"), msgid)
        if not seen[msgid] then
          seen[msgid], n = true, n + 1
        end
      end
      assert.equal(1000, n)
    end)

    it("(c, a, body) makes a msgid for msgid = true, or for none when the client has auto_msgid", function()
      local body, msgid = core.send_message(nil, nil, { msgid = true, a = 1 })
      assert.equal(32, #msgid)
      assert.same({ msgid = msgid, a = 1 }, cjson.decode(body))
      local given = { a = 1 }
      body, msgid = core.send_message({ auto_msgid = true }, nil, given)
      assert.same({ msgid = msgid, a = 1 }, cjson.decode(body))
      assert.same({ a = 1 }, given)
    end)

    it("takes the body form when arguments 4 to 7 are nil, as a Lua wrapper passes them", function()
      assert.equal([[{"a":1}]], core.send_message(nil, nil, { a = 1 }, nil, nil, nil, nil))
    end)
  end)

  describe("send_msg_on_event", function()
    it("writes the documented body for text: code, msgid, msgtype, text", function()
      local raw = core.send_msg_on_event(nil, nil, "WELCOME_CODE", "text", { content = "欢迎" }, "ev-1")
      check(raw, [[{"code":"WELCOME_CODE","msgid":"ev-1","msgtype":"text","text":{"content":"欢迎"}}]],
        { code = "WELCOME_CODE", msgid = "ev-1", msgtype = "text", text = { content = "欢迎" } })
      local body = cjson.decode(raw)
      assert.is_nil(body.on_event_msg_type)
      assert.is_nil(body.msg)
      assert.is_nil(body.msg_id)
    end)

    it("writes the documented body for msgmenu, without msgid when msg_id is nil", function()
      local msg = { head_content = "h", list = MENU_ITEMS, tail_content = "t" }
      check(core.send_msg_on_event(nil, nil, "CODE", "msgmenu", msg),
        [[{"code":"CODE","msgtype":"msgmenu","msgmenu":{"head_content":"h","list":]] .. MENU_ITEMS_JSON
          .. [[,"tail_content":"t"}}]],
        { code = "CODE", msgtype = "msgmenu", msgmenu = msg })
    end)
  end)

  describe("send_text_on_event and send_menu_on_event", function()
    it("write the same bodies as send_msg_on_event", function()
      assert.equal(core.send_msg_on_event(nil, nil, "C", "text", { content = CN }, "id1"),
        core.send_text_on_event(nil, nil, "C", CN, "id1"))
      assert.equal([[{"code":"C","msgtype":"text","text":{"content":"hi"}}]],
        core.send_text_on_event(nil, nil, "C", "hi"))
      assert.equal(core.send_msg_on_event(nil, nil, "C", "msgmenu", { list = MENU_ITEMS }, "id2"),
        core.send_menu_on_event(nil, nil, "C", { list = MENU_ITEMS }, "id2"))
      assert.equal([[{"code":"C","msgid":"id3","msgtype":"msgmenu","msgmenu":{"list":[]}}]],
        core.send_menu_on_event(nil, nil, "C", { list = {} }, "id3"))
    end)
  end)

  describe("sync_msg", function()
    it("writes {} without options", function()
      assert.equal("{}", core.sync_msg(nil, nil))
      assert.equal("{}", core.sync_msg(nil, nil, nil))
      assert.equal("{}", core.sync_msg(nil, nil, {}))
    end)

    it("writes cursor, token, limit, voice_format, open_kfid in that order", function()
      local opts = { open_kfid = KFID, voice_format = 1, limit = 1000,
        token = "ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR", cursor = "4gw7MepFLfgF2VC5npN" }
      check(core.sync_msg(nil, nil, opts),
        [[{"cursor":"4gw7MepFLfgF2VC5npN","token":"ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR",]]
          .. [["limit":1000,"voice_format":1,"open_kfid":"wkKF_01"}]],
        opts)
    end)

    it("writes whole floats as integers", function()
      assert.equal([[{"limit":10,"voice_format":0}]], core.sync_msg(nil, nil, { limit = 10.0, voice_format = 0.0 }))
    end)
  end)

  describe("every builder", function()
    it("leaves its arguments as they were", function()
      local msg = { head_content = "h", list = { { type = "click", click = { id = "1", content = "c" } } } }
      local opts = { msgid = "m" }
      core.send_menu(nil, nil, TO, KFID, msg, opts)
      assert.same({ head_content = "h", list = { { type = "click", click = { id = "1", content = "c" } } } }, msg)
      assert.same({ msgid = "m" }, opts)
      assert.is_nil(getmetatable(msg.list))
    end)

    it("gives the same body when called again (no state kept between calls)", function()
      local a = core.send_menu(nil, nil, TO, KFID, { list = MENU_ITEMS })
      core.send_text(nil, nil, "other", "kf", "x", { msgid = "y" })
      assert.equal(a, core.send_menu(nil, nil, TO, KFID, { list = MENU_ITEMS }))
    end)
  end)
end)
