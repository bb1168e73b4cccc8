-- wechat.core body builders: every argument check raises `bad argument #N to '<op>' (<path>: <message>)`, with
-- the exact wording documented at the top of src/kf_bodies.c.
--
-- wechat_argerror prefixes the position of the builder's caller's caller (the code that called the public Lua
-- function). The builders are called here from a Lua function that pcall runs, so that position is pcall's, a C
-- function's, which has none: the message is compared whole, with no prefix, under Lua 5.4 and LuaJIT alike.
-- (assert.has_error would strip a "file:line: " prefix and so could not see one that should not be there.)
local core = require "wechat.core"

local unpack = table.unpack or unpack

local TO, KFID = "wmUSER", "wkKF"

local function raised(f, n, args)
  local ok, err = pcall(function()
    local r = f(unpack(args, 1, n))
    return r
  end)
  assert.is_false(ok, "no error; returned " .. tostring(err))
  return err
end

-- { expected message, builder name, arguments from #1 on }
local function case(expected, name, ...)
  return { expected = expected, name = name, n = select("#", ...), args = { ... } }
end

local function run(cases)
  for _, c in ipairs(cases) do
    it(c.expected, function()
      assert.equal(c.expected, raised(core[c.name], c.n, c.args))
    end)
  end
end

local function text(content, opts)
  return "send_text", nil, nil, TO, KFID, content, opts
end

local function link(msg)
  local full = { title = "t", url = "https://x.cn", thumb_media_id = "m" }
  for k, v in pairs(msg) do
    full[k] = v
  end
  return "send_link", nil, nil, TO, KFID, full
end

local function menu(msg)
  return "send_menu", nil, nil, TO, KFID, msg
end

local function item(it_)
  return menu { list = { { type = "text", text = { content = "ok" } }, it_ } }
end

local function location(lat, lng, extra)
  local msg = { latitude = lat, longitude = lng }
  for k, v in pairs(extra or {}) do
    msg[k] = v
  end
  return "send_location", nil, nil, TO, KFID, msg
end

local function sync(opts)
  return "sync_msg", nil, nil, opts
end

describe("wechat.core argument checks", function()
  describe("to, open_kfid and other ids", function()
    run {
      case("bad argument #3 to 'send_text' (string expected, got nil)", "send_text", nil, nil, nil, KFID, "x"),
      case("bad argument #3 to 'send_text' (string expected, got number)", "send_text", nil, nil, 42, KFID, "x"),
      case("bad argument #3 to 'send_text' (to: must not be empty)", "send_text", nil, nil, "", KFID, "x"),
      case("bad argument #3 to 'send_text' (to: invalid UTF-8 at byte 2)", "send_text", nil, nil, "a\xff", KFID, "x"),
      case("bad argument #4 to 'send_text' (string expected, got table)", "send_text", nil, nil, TO, {}, "x"),
      case("bad argument #4 to 'send_image' (open_kfid: must not be empty)", "send_image", nil, nil, TO, "", "m"),
      case("bad argument #5 to 'send_image' (string expected, got nil)", "send_image", nil, nil, TO, KFID),
      case("bad argument #5 to 'send_voice' (media_id: must not be empty)", "send_voice", nil, nil, TO, KFID, ""),
      case("bad argument #5 to 'send_file' (string expected, got boolean)", "send_file", nil, nil, TO, KFID, true),
      case("bad argument #5 to 'send_video' (media_id: invalid UTF-8 at byte 1)", "send_video", nil, nil, TO, KFID,
        "\x80"),
    }
  end)

  describe("send_text content", function()
    run {
      case("bad argument #5 to 'send_text' (string expected, got nil)", text(nil)),
      case("bad argument #5 to 'send_text' (string expected, got nil)", "send_text", nil, nil, TO, KFID),
      case("bad argument #5 to 'send_text' (string expected, got number)", text(12)),
      case("bad argument #5 to 'send_text' (content: must not be empty)", text("")),
      case("bad argument #5 to 'send_text' (content: at most 2048 bytes, got 2049)", text(("x"):rep(2049))),
      -- bytes, not characters: 683 CJK characters are 2049 bytes
      case("bad argument #5 to 'send_text' (content: at most 2048 bytes, got 2049)", text(("\xE4\xB8\xAD"):rep(683))),
    }
  end)

  describe("UTF-8", function()
    run {
      case("bad argument #5 to 'send_text' (content: invalid UTF-8 at byte 3)", text("ab\xff")),
      case("bad argument #5 to 'send_text' (content: invalid UTF-8 at byte 1)", text("\x80abc")),
      -- overlong forms
      case("bad argument #5 to 'send_text' (content: invalid UTF-8 at byte 1)", text("\xC0\x80")),
      case("bad argument #5 to 'send_text' (content: invalid UTF-8 at byte 2)", text("a\xC1\xBF")),
      case("bad argument #5 to 'send_text' (content: invalid UTF-8 at byte 2)", text("a\xE0\x9F\xBF")),
      case("bad argument #5 to 'send_text' (content: invalid UTF-8 at byte 1)", text("\xF0\x8F\xBF\xBF")),
      -- surrogates
      case("bad argument #5 to 'send_text' (content: invalid UTF-8 at byte 4)", text("\xE4\xB8\xAD\xED\xA0\x80")),
      case("bad argument #5 to 'send_text' (content: invalid UTF-8 at byte 1)", text("\xED\xBF\xBF")),
      -- beyond U+10FFFF
      case("bad argument #5 to 'send_text' (content: invalid UTF-8 at byte 1)", text("\xF4\x90\x80\x80")),
      case("bad argument #5 to 'send_text' (content: invalid UTF-8 at byte 1)", text("\xF5\x80\x80\x80")),
      case("bad argument #5 to 'send_text' (content: invalid UTF-8 at byte 1)", text("\xFF")),
      -- cut short
      case("bad argument #5 to 'send_text' (content: invalid UTF-8 at byte 3)", text("ab\xE4\xB8")),
      case("bad argument #5 to 'send_text' (content: invalid UTF-8 at byte 1)", text("\xF0\x9F\x98")),
      case("bad argument #5 to 'send_text' (content: invalid UTF-8 at byte 1)", text("\xE4\x41\x80")),
      case("bad argument #5 to 'send_text' (content: invalid UTF-8 at byte 1)", text("\xF0\x9F\x98\x41")),
      -- found after a buffer's worth of escapes
      case("bad argument #5 to 'send_text' (content: invalid UTF-8 at byte 1001)", text(("\n"):rep(1000) .. "\xff")),
    }
  end)

  describe("opts", function()
    run {
      case("bad argument #6 to 'send_text' (table expected, got string)", text("x", "m1")),
      case("bad argument #6 to 'send_text' (opts: unknown option 'foo')", text("x", { foo = 1 })),
      case("bad argument #6 to 'send_text' (opts: unknown option 'msg_id')", text("x", { msg_id = "a" })),
      case("bad argument #6 to 'send_text' (opts: unknown option of type number)", text("x", { "m1" })),
      case("bad argument #6 to 'send_text' (opts: unknown option 'msgid\\0')", text("x", { ["msgid\0"] = "m" })),
      case("bad argument #6 to 'send_text' (opts.msgid: at most 32 bytes, got 40)",
        text("x", { msgid = ("a"):rep(40) })),
      case("bad argument #6 to 'send_text' (opts.msgid: at most 32 bytes, got 33)",
        text("x", { msgid = ("a"):rep(33) })),
      case("bad argument #6 to 'send_text' (opts.msgid: only [0-9a-zA-Z_-] allowed)", text("x", { msgid = "a b" })),
      case("bad argument #6 to 'send_text' (opts.msgid: only [0-9a-zA-Z_-] allowed)", text("x", { msgid = "a.b" })),
      case("bad argument #6 to 'send_text' (opts.msgid: only [0-9a-zA-Z_-] allowed)", text("x",
        { msgid = "\xE4\xB8\xAD" })),
      case("bad argument #6 to 'send_text' (opts.msgid: must not be empty)", text("x", { msgid = "" })),
      case("bad argument #6 to 'send_text' (opts.msgid: string expected, got number)", text("x", { msgid = 42 })),
      case("bad argument #6 to 'send_image' (opts: unknown option 'touser')", "send_image", nil, nil, TO, KFID, "m",
        { touser = "x" }),
      case("bad argument #8 to 'send_video' (opts: unknown option 'title')", "send_video", nil, nil, TO, KFID, "m",
        nil, nil, { title = "x" }),
    }

    it("take a msgid of exactly 32 bytes of every allowed kind", function()
      local id = "azAZ09_-" .. ("x"):rep(24)
      assert.equal(
        [[{"touser":"wmUSER","open_kfid":"wkKF","msgid":"azAZ09_-xxxxxxxxxxxxxxxxxxxxxxxx","msgtype":"text",]]
          .. [["text":{"content":"x"}}]],
        core.send_text(nil, nil, TO, KFID, "x", { msgid = id }))
    end)
  end)

  -- accepted for compatibility and never sent: their type is checked, their bytes are not (they go nowhere)
  describe("send_video title and description", function()
    run {
      case("bad argument #6 to 'send_video' (string expected, got number)", "send_video", nil, nil, TO, KFID, "m", 1),
      case("bad argument #7 to 'send_video' (string expected, got table)", "send_video", nil, nil, TO, KFID, "m", nil,
        {}),
    }
  end)

  describe("msg tables", function()
    run {
      case("bad argument #5 to 'send_link' (table expected, got nil)", "send_link", nil, nil, TO, KFID),
      case("bad argument #5 to 'send_link' (table expected, got string)", "send_link", nil, nil, TO, KFID, "x"),
      case("bad argument #5 to 'send_link' (msg: unknown key 'titel')", link { titel = "typo" }),
      case("bad argument #5 to 'send_link' (msg: unknown key 'pic_url')", link { pic_url = "https://x.cn/a.png" }),
      case("bad argument #5 to 'send_link' (msg: unknown key of type number)", link { [1] = "x" }),
      -- user strings in messages stop after 40 bytes (at a character boundary) and show control bytes
      case("bad argument #5 to 'send_link' (msg: unknown key '" .. ("k"):rep(40) .. "...')",
        link { [("k"):rep(100000)] = 1 }),
      case("bad argument #5 to 'send_link' (msg: unknown key '" .. ("\xE4\xB8\xAD"):rep(13) .. "...')",
        link { [("\xE4\xB8\xAD"):rep(20)] = 1 }),
      case("bad argument #5 to 'send_link' (msg: unknown key 'title\\0')", link { ["title\0"] = "t" }),
      case("bad argument #5 to 'send_link' (msg.title: string expected, got nil)", "send_link", nil, nil, TO, KFID,
        { url = "https://x.cn", thumb_media_id = "m" }),
      case("bad argument #5 to 'send_link' (msg.title: string expected, got number)", link { title = 1 }),
      case("bad argument #5 to 'send_link' (msg.title: must not be empty)", link { title = "" }),
      case("bad argument #5 to 'send_link' (msg.title: at most 128 bytes, got 129)", link { title = ("t"):rep(129) }),
      case("bad argument #5 to 'send_link' (msg.desc: at most 512 bytes, got 513)", link { desc = ("d"):rep(513) }),
      case("bad argument #5 to 'send_link' (msg.url: http:// or https:// URL with a host expected)",
        link { url = "ftp://x.cn" }),
      case("bad argument #5 to 'send_link' (msg.url: http:// or https:// URL with a host expected)",
        link { url = "x.cn" }),
      case("bad argument #5 to 'send_link' (msg.url: http:// or https:// URL with a host expected)",
        link { url = "https:/x" }),
      -- the scheme alone, or a host left empty (the whole rule: spec/menu_link_spec.lua, "one url rule")
      case("bad argument #5 to 'send_link' (msg.url: http:// or https:// URL with a host expected)",
        link { url = "https://" }),
      case("bad argument #5 to 'send_link' (msg.url: http:// or https:// URL with a host expected)",
        link { url = "HTTP:///path" }),
      case("bad argument #5 to 'send_link' (msg.url: http:// or https:// URL with a host expected)",
        link { url = "https://user@:443/" }),
      case("bad argument #5 to 'send_link' (msg.url: at most 2048 bytes, got 2049)",
        link { url = "https://x.cn/" .. ("p"):rep(2036) }),
      case("bad argument #5 to 'send_link' (msg.thumb_media_id: must not be empty)", link { thumb_media_id = "" }),
      case("bad argument #5 to 'send_link' (msg.desc: invalid UTF-8 at byte 2)", link { desc = "d\xC0\xAF" }),
      -- tables are read raw: an __index does not fill in fields
      case("bad argument #5 to 'send_link' (msg.title: string expected, got nil)", "send_link", nil, nil, TO, KFID,
        setmetatable({}, { __index = { title = "t", url = "https://x.cn", thumb_media_id = "m" } })),
      case("bad argument #5 to 'send_mini_program' (msg.appid: string expected, got nil)", "send_mini_program", nil,
        nil, TO, KFID, { thumb_media_id = "t", pagepath = "p" }),
      case("bad argument #5 to 'send_mini_program' (msg.title: at most 64 bytes, got 65)", "send_mini_program", nil,
        nil, TO, KFID, { appid = "wx", title = ("t"):rep(65), thumb_media_id = "t", pagepath = "p" }),
      case("bad argument #5 to 'send_mini_program' (msg.pagepath: string expected, got nil)", "send_mini_program", nil,
        nil, TO, KFID, { appid = "wx", thumb_media_id = "t" }),
      case("bad argument #5 to 'send_mini_program' (msg.thumb_media_id: must not be empty)", "send_mini_program", nil,
        nil, TO, KFID, { appid = "wx", thumb_media_id = "", pagepath = "p" }),
    }
  end)

  describe("menus", function()
    local eleven = {}
    for i = 1, 11 do
      eleven[i] = { type = "click", click = { id = tostring(i), content = "c" } }
    end
    local ok_click = { type = "click", click = { id = "1", content = "c" } }
    run {
      case("bad argument #5 to 'send_menu' (msg.head_content: at most 1024 bytes, got 1025)",
        menu { head_content = ("h"):rep(1025) }),
      case("bad argument #5 to 'send_menu' (msg.tail_content: string expected, got number)", menu { tail_content = 1 }),
      case("bad argument #5 to 'send_menu' (msg: unknown key 'head')", menu { head = "h" }),
      case("bad argument #5 to 'send_menu' (msg.list: table expected, got string)", menu { list = "x" }),
      case("bad argument #5 to 'send_menu' (msg.list: at most 10 items, got 11)", menu { list = eleven }),
      case("bad argument #5 to 'send_menu' (msg.list: sequence expected)", menu { list = { x = ok_click } }),
      case("bad argument #5 to 'send_menu' (msg.list: sequence expected)", menu { list = { [1] = ok_click,
        [3] = ok_click } }),
      case("bad argument #5 to 'send_menu' (msg.list: sequence expected)", menu { list = { ok_click, n = 1 } }),
      case("bad argument #5 to 'send_menu' (msg.list[2]: table expected, got string)", item("click")),
      case("bad argument #5 to 'send_menu' (msg.list[2].type: string expected, got nil)",
        item { click = { id = "1", content = "c" } }),
      case("bad argument #5 to 'send_menu' (msg.list[2].type: string expected, got number)", item { type = 1 }),
      case("bad argument #5 to 'send_menu' (msg.list[2].type: 'click', 'view', 'miniprogram' or 'text' expected, "
        .. "got 'button')", item { type = "button" }),
      case("bad argument #5 to 'send_menu' (msg.list[2].click: table expected, got nil)", item { type = "click" }),
      case("bad argument #5 to 'send_menu' (msg.list[2].click: table expected, got string)",
        item { type = "click", click = "1" }),
      case("bad argument #5 to 'send_menu' (msg.list[2]: key 'view' does not match type 'click')",
        item { type = "click", click = { id = "1", content = "c" }, view = { url = "https://x", content = "v" } }),
      case("bad argument #5 to 'send_menu' (msg.list[2]: unknown key 'id')", item { type = "click", id = "1" }),
      case("bad argument #5 to 'send_menu' (msg.list[2]: unknown key of type number)", item { "click" }),
      case("bad argument #5 to 'send_menu' (msg.list[2]: unknown key 'type\\0x')",
        item { type = "click", ["type\0x"] = "view", click = { id = "1", content = "c" } }),
      case("bad argument #5 to 'send_menu' (msg.list[2].type: 'click', 'view', 'miniprogram' or 'text' expected, "
        .. "got 'click\\0')", item { type = "click\0", click = { id = "1", content = "c" } }),
      case("bad argument #5 to 'send_menu' (msg.list[2].type: 'click', 'view', 'miniprogram' or 'text' expected, "
        .. "got '" .. ("x"):rep(40) .. "...')", item { type = ("x"):rep(41) }),
      case("bad argument #5 to 'send_menu' (msg.list[3].click.id: at most 64 bytes, got 70)", menu { list = {
        ok_click, ok_click, { type = "click", click = { id = ("i"):rep(70), content = "c" } } } }),
      case("bad argument #5 to 'send_menu' (msg.list[2].click.id: must not be empty)",
        item { type = "click", click = { id = "", content = "c" } }),
      case("bad argument #5 to 'send_menu' (msg.list[2].click.content: at most 128 bytes, got 129)",
        item { type = "click", click = { id = "1", content = ("c"):rep(129) } }),
      case("bad argument #5 to 'send_menu' (msg.list[2].click: unknown key 'url')",
        item { type = "click", click = { id = "1", content = "c", url = "https://x" } }),
      case("bad argument #5 to 'send_menu' (msg.list[2].view.url: http:// or https:// URL with a host expected)",
        item { type = "view", view = { url = "www.x.cn", content = "v" } }),
      case("bad argument #5 to 'send_menu' (msg.list[2].view.url: http:// or https:// URL with a host expected)",
        item { type = "view", view = { url = "https://?q=1", content = "v" } }),
      case("bad argument #5 to 'send_menu' (msg.list[2].view.content: at most 1024 bytes, got 1025)",
        item { type = "view", view = { url = "https://x", content = ("v"):rep(1025) } }),
      case("bad argument #5 to 'send_menu' (msg.list[2].miniprogram.appid: at most 32 bytes, got 33)",
        item { type = "miniprogram", miniprogram = { appid = ("a"):rep(33), pagepath = "p", content = "c" } }),
      case("bad argument #5 to 'send_menu' (msg.list[2].miniprogram.pagepath: string expected, got nil)",
        item { type = "miniprogram", miniprogram = { appid = "wx", content = "c" } }),
      case("bad argument #5 to 'send_menu' (msg.list[2].text.content: string expected, got nil)",
        item { type = "text", text = {} }),
      case("bad argument #5 to 'send_menu' (msg.list[2].text.content: at most 1024 bytes, got 1025)",
        item { type = "text", text = { content = ("t"):rep(1025) } }),
      case("bad argument #5 to 'send_menu' (msg.list[2].text.no_newline: 0 or 1 expected, got 2)",
        item { type = "text", text = { content = "t", no_newline = 2 } }),
      case("bad argument #5 to 'send_menu' (msg.list[2].text.no_newline: 0 or 1 expected, got 0.5)",
        item { type = "text", text = { content = "t", no_newline = 0.5 } }),
      case("bad argument #5 to 'send_menu' (msg.list[2].text.no_newline: number expected, got boolean)",
        item { type = "text", text = { content = "t", no_newline = true } }),
      case("bad argument #5 to 'send_menu' (msg.list[2].text.content: invalid UTF-8 at byte 2)",
        item { type = "text", text = { content = "t\xff" } }),
    }
  end)

  describe("locations", function()
    run {
      case("bad argument #5 to 'send_location' (msg.latitude: number expected, got nil)", location(nil, 1)),
      case("bad argument #5 to 'send_location' (msg.longitude: number expected, got string)", location(1, "113.3")),
      case("bad argument #5 to 'send_location' (msg.latitude: must be between -90 and 90, got 91.5)",
        location(91.5, 0)),
      case("bad argument #5 to 'send_location' (msg.latitude: must be between -90 and 90, got -90.5)",
        location(-90.5, 0)),
      case("bad argument #5 to 'send_location' (msg.longitude: must be between -180 and 180, got 180.25)",
        location(0, 180.25)),
      case("bad argument #5 to 'send_location' (msg.longitude: must be between -180 and 180, got -181)",
        location(0, -181)),
      case("bad argument #5 to 'send_location' (msg.latitude: NaN not allowed)", location(0 / 0, 0)),
      case("bad argument #5 to 'send_location' (msg.longitude: infinity not allowed)", location(0, math.huge)),
      case("bad argument #5 to 'send_location' (msg.longitude: infinity not allowed)", location(0, -math.huge)),
      case("bad argument #5 to 'send_location' (msg.name: invalid UTF-8 at byte 1)", location(0, 0, { name = "\xff" })),
      case("bad argument #5 to 'send_location' (msg.address: string expected, got boolean)",
        location(0, 0, { address = false })),
      case("bad argument #5 to 'send_location' (msg: unknown key 'lat')", location(0, 0, { lat = 1 })),
    }
  end)

  describe("send_message", function()
    run {
      case("bad argument #3 to 'send_message' (string expected, got nil)", "send_message", nil, nil, nil, KFID, "text",
        { content = "x" }),
      -- a table third argument with a fourth: the seven-argument form
      case("bad argument #3 to 'send_message' (string expected, got table)", "send_message", nil, nil, {}, KFID,
        "text", { content = "x" }),
      case("bad argument #5 to 'send_message' (string expected, got nil)", "send_message", nil, nil, TO, KFID, nil, {}),
      case("bad argument #5 to 'send_message' (msgtype: must not be empty)", "send_message", nil, nil, TO, KFID, "",
        {}),
      case("bad argument #5 to 'send_message' (msgtype: invalid UTF-8 at byte 1)", "send_message", nil, nil, TO, KFID,
        "\xff", {}),
      case("bad argument #6 to 'send_message' (table expected, got nil)", "send_message", nil, nil, TO, KFID, "text"),
      case("bad argument #6 to 'send_message' (msg.content: must not be empty)", "send_message", nil, nil, TO, KFID,
        "text", { content = "" }),
      case("bad argument #6 to 'send_message' (msg: unknown key 'text')", "send_message", nil, nil, TO, KFID, "text",
        { text = "x" }),
      case("bad argument #6 to 'send_message' (msg.media_id: string expected, got nil)", "send_message", nil, nil, TO,
        KFID, "image", {}),
      case("bad argument #6 to 'send_message' (msg.list[1].type: string expected, got nil)", "send_message", nil, nil,
        TO, KFID, "msgmenu", { list = { {} } }),
      case("bad argument #6 to 'send_message' (msg.latitude: must be between -90 and 90, got 100)", "send_message",
        nil, nil, TO, KFID, "location", { latitude = 100, longitude = 0 }),
      case("bad argument #6 to 'send_message' (table expected, got string)", "send_message", nil, nil, TO, KFID,
        "business_card", "zhangsan"),
      case("bad argument #6 to 'send_message' (msg: object expected, got array)", "send_message", nil, nil, TO, KFID,
        "business_card", { "zhangsan" }),
      case("bad argument #6 to 'send_message' (msg: object expected, got empty table)", "send_message", nil, nil, TO,
        KFID, "business_card", {}),
      case("bad argument #6 to 'send_message' (msg.a[1]: NaN not allowed)", "send_message", nil, nil, TO, KFID,
        "business_card", { a = { 0 / 0 } }),
      case("bad argument #7 to 'send_message' (opts: unknown option 'touser')", "send_message", nil, nil, TO, KFID,
        "text", { content = "x" }, { touser = "y" }),
      case("bad argument #7 to 'send_message' (opts.msgid: only [0-9a-zA-Z_-] allowed)", "send_message", nil, nil, TO,
        KFID, "business_card", { userid = "z" }, { msgid = "a/b" }),
      case("bad argument #3 to 'send_message' (body: object expected, got array)", "send_message", nil, nil, { 1, 2 }),
      case("bad argument #3 to 'send_message' (body: object expected, got empty table)", "send_message", nil, nil, {}),
      case("bad argument #3 to 'send_message' (body.text.content: invalid UTF-8 at byte 1)", "send_message", nil, nil,
        { text = { content = "\xff" } }),
    }
  end)

  describe("events", function()
    run {
      case("bad argument #3 to 'send_msg_on_event' (string expected, got nil)", "send_msg_on_event", nil, nil, nil,
        "text", { content = "x" }),
      case("bad argument #3 to 'send_msg_on_event' (code: must not be empty)", "send_msg_on_event", nil, nil, "",
        "text", { content = "x" }),
      case("bad argument #4 to 'send_msg_on_event' (string expected, got nil)", "send_msg_on_event", nil, nil, "C", nil,
        { content = "x" }),
      case("bad argument #4 to 'send_msg_on_event' (on_event_msg_type: 'text' or 'msgmenu' expected, got 'image')",
        "send_msg_on_event", nil, nil, "C", "image", { media_id = "m" }),
      case("bad argument #4 to 'send_msg_on_event' (on_event_msg_type: 'text' or 'msgmenu' expected, got 'text\\0')",
        "send_msg_on_event", nil, nil, "C", "text\0", { content = "x" }),
      case("bad argument #5 to 'send_msg_on_event' (table expected, got string)", "send_msg_on_event", nil, nil, "C",
        "text", "hello"),
      case("bad argument #5 to 'send_msg_on_event' (msg.content: at most 2048 bytes, got 2049)", "send_msg_on_event",
        nil, nil, "C", "text", { content = ("x"):rep(2049) }),
      case("bad argument #5 to 'send_msg_on_event' (msg: unknown key 'list')", "send_msg_on_event", nil, nil, "C",
        "text", { content = "x", list = {} }),
      case("bad argument #5 to 'send_msg_on_event' (msg.list: at most 10 items, got 11)", "send_msg_on_event", nil,
        nil, "C", "msgmenu", { list = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 } }),
      case("bad argument #6 to 'send_msg_on_event' (msg_id: at most 32 bytes, got 33)", "send_msg_on_event", nil, nil,
        "C", "text", { content = "x" }, ("i"):rep(33)),
      case("bad argument #6 to 'send_msg_on_event' (msg_id: only [0-9a-zA-Z_-] allowed)", "send_msg_on_event", nil,
        nil, "C", "text", { content = "x" }, "a:b"),
      case("bad argument #6 to 'send_msg_on_event' (string expected, got number)", "send_msg_on_event", nil, nil, "C",
        "text", { content = "x" }, 7),
      case("bad argument #4 to 'send_text_on_event' (string expected, got nil)", "send_text_on_event", nil, nil, "C"),
      case("bad argument #4 to 'send_text_on_event' (content: invalid UTF-8 at byte 1)", "send_text_on_event", nil,
        nil, "C", "\xC0\x80"),
      case("bad argument #5 to 'send_text_on_event' (msg_id: must not be empty)", "send_text_on_event", nil, nil, "C",
        "hi", ""),
      case("bad argument #4 to 'send_menu_on_event' (table expected, got string)", "send_menu_on_event", nil, nil, "C",
        "menu"),
      case("bad argument #4 to 'send_menu_on_event' (msg.list[1].type: 'click', 'view', 'miniprogram' or 'text' "
        .. "expected, got 'image')", "send_menu_on_event", nil, nil, "C", { list = { { type = "image" } } }),
      case("bad argument #5 to 'send_menu_on_event' (msg_id: only [0-9a-zA-Z_-] allowed)", "send_menu_on_event", nil,
        nil, "C", { list = {} }, "id#1"),
    }
  end)

  describe("sync_msg", function()
    run {
      case("bad argument #3 to 'sync_msg' (table expected, got string)", sync("cursor")),
      case("bad argument #3 to 'sync_msg' (opts: unknown option 'next_cursor')", sync { next_cursor = "c" }),
      case("bad argument #3 to 'sync_msg' (opts.cursor: at most 64 bytes, got 65)", sync { cursor = ("c"):rep(65) }),
      case("bad argument #3 to 'sync_msg' (opts.cursor: must not be empty)", sync { cursor = "" }),
      case("bad argument #3 to 'sync_msg' (opts.token: at most 128 bytes, got 129)", sync { token = ("t"):rep(129) }),
      case("bad argument #3 to 'sync_msg' (opts.token: invalid UTF-8 at byte 1)", sync { token = "\xff" }),
      case("bad argument #3 to 'sync_msg' (opts.limit: must be between 1 and 1000, got 0)", sync { limit = 0 }),
      case("bad argument #3 to 'sync_msg' (opts.limit: must be between 1 and 1000, got 1001)", sync { limit = 1001 }),
      case("bad argument #3 to 'sync_msg' (opts.limit: integer expected, got 1.5)", sync { limit = 1.5 }),
      case("bad argument #3 to 'sync_msg' (opts.limit: number expected, got string)", sync { limit = "10" }),
      case("bad argument #3 to 'sync_msg' (opts.limit: NaN not allowed)", sync { limit = 0 / 0 }),
      case("bad argument #3 to 'sync_msg' (opts.voice_format: 0 or 1 expected, got 2)", sync { voice_format = 2 }),
      case("bad argument #3 to 'sync_msg' (opts.voice_format: 0 or 1 expected, got -1)", sync { voice_format = -1 }),
      case("bad argument #3 to 'sync_msg' (opts.open_kfid: must not be empty)", sync { open_kfid = "" }),
    }
  end)

  describe("encode", function()
    run {
      case("bad argument #1 to 'encode' (value expected)", "encode"),
    }
  end)
end)
