-- Every KF operation end to end under Lua 5.4 and LuaJIT (curl transport): the exact body the stand-in receives
-- and the exact answer. The same cases run inside nginx in spec/openresty/kf_spec.lua.
local standin = require "helpers.standin"
local cases = require "helpers.kf_cases"
local work = require "wechat.work"
local kf = require "wechat.work.kf.message"

describe("wechat.work.kf.message over libcurl", function()
  local client

  setup(standin.start)

  -- A reset stand-in forgets its tokens, so each spec gets a client of its own.
  before_each(function()
    standin.reset()
    standin.wrote(cases.KFID, cases.TO)
    standin.wrote("wk1", "wm1")
    client = work.client{
      corp_id = standin.CORPID,
      agents = { [cases.AGENT] = { secret = standin.KF_SECRET } },
      base_url = standin.url(),
      timeout = 5,
    }
  end)

  after_each(function()
    client:close()
  end)

  for _, c in ipairs(cases.cases) do
    it(c.name .. " posts the documented body", function()
      if c.setup then
        c.setup(standin)
      end
      local ids = cases.media_ids(c, standin.media_id)
      local res, err = kf[c.op](client, cases.AGENT, cases.args(c, ids))
      assert.is_nil(err)
      assert.same(c.result, res)
      assert.same({ cases.body(c, ids) }, standin.bodies(c.path))
      assert.equal(1, standin.counts()[c.path])
    end)
  end

  it("writes an empty menu list as [] and non-ASCII text raw", function()
    assert.truthy(kf.send_menu(client, cases.AGENT, "wm1", "wk1", { head_content = "选一个", list = {} }))
    local raw = standin.requests("/cgi-bin/kf/send_msg")[1].body
    assert.truthy(raw:find('"list":[]', 1, true))
    assert.truthy(raw:find("选一个", 1, true))
  end)

  -- kf_cases compares decoded bodies; these are the bytes, so nothing is there that should not be (no "list":[]
  -- or "title":"" made up for a field left out).
  it("leaves optional fields out of the bytes: miniprogram title, menu list and tail", function()
    local thumb = standin.media_id("image")
    assert.truthy(kf.send_mini_program(client, cases.AGENT, "wm1", "wk1",
      { appid = "wx1", thumb_media_id = thumb, pagepath = "p" }, { msgid = "m1" }))
    assert.truthy(kf.send_menu(client, cases.AGENT, "wm1", "wk1", { head_content = "稍等" }, { msgid = "h1" }))
    standin.welcome_code("CODE9")
    assert.truthy(kf.send_menu_on_event(client, cases.AGENT, "CODE9", { tail_content = "谢谢" }, "t1"))
    local sent = standin.requests("/cgi-bin/kf/send_msg")
    assert.equal('{"touser":"wm1","open_kfid":"wk1","msgid":"m1","msgtype":"miniprogram","miniprogram":{"appid":"wx1",'
      .. '"thumb_media_id":"' .. thumb .. '","pagepath":"p"}}', sent[1].body)
    assert.equal('{"touser":"wm1","open_kfid":"wk1","msgid":"h1","msgtype":"msgmenu","msgmenu":'
      .. '{"head_content":"稍等"}}', sent[2].body)
    assert.equal('{"code":"CODE9","msgid":"t1","msgtype":"msgmenu","msgmenu":{"tail_content":"谢谢"}}',
      standin.requests("/cgi-bin/kf/send_msg_on_event")[1].body)
    assert.equal(3, #standin.delivered())
  end)

  it("sends a random msgid of its own by default (auto_msgid), returned in res.msgid", function()
    local res = assert(kf.send_text(client, cases.AGENT, "wm1", "wk1", "hi"))
    assert.equal(0, res.errcode)
    assert.truthy(res.msgid:find("^[0-9a-f]+$"))
    assert.equal(32, #res.msgid)
    assert.equal(res.msgid, standin.bodies("/cgi-bin/kf/send_msg")[1].msgid)
    local again = assert(kf.send_text(client, cases.AGENT, "wm1", "wk1", "hi"))
    assert.are_not.equal(res.msgid, again.msgid)
  end)

  it("with auto_msgid = false returns WeCom's generated msgid when none is given", function()
    local plain = work.client{
      corp_id = standin.CORPID,
      agents = { [cases.AGENT] = { secret = standin.KF_SECRET } },
      base_url = standin.url(),
      auto_msgid = false,
    }
    local res = assert(kf.send_text(plain, cases.AGENT, "wm1", "wk1", "hi"))
    assert.equal("standin-msg-1", res.msgid)
    assert.is_nil(standin.bodies("/cgi-bin/kf/send_msg")[1].msgid)
    plain:close()
  end)

  -- What a user sees from the public functions, whole: the position of the user's call (this file's line),
  -- the public function's name, the argument's number as the user counts it, the path in it and the words.
  -- (core_args_spec.lua proves every check of wechat.core; these prove the numbers and names come through.)
  describe("raises exactly, at the caller's line", function()
    local unpack = table.unpack or unpack -- luacheck: ignore 143
    local SRC = debug.getinfo(1, "S").short_src
    local AGENT, TO, KFID = cases.AGENT, "wmU", "wkK"
    local ELEVEN = {}
    for i = 1, 11 do
      ELEVEN[i] = { type = "click", click = { id = tostring(i), content = "c" } }
    end
    local LINK = { title = "t", desc = "d\xC0\xAF", url = "https://e.com", thumb_media_id = "m" }

    -- { message after the position, function, arguments after the client }
    local function case(expected, name, ...)
      return { expected = expected, name = name, n = select("#", ...), ... }
    end
    local CASES = {
      case("bad argument #1 to 'send_text' (wechat.work client expected, got no value)", "send_text"),
      case("bad argument #2 to 'send_text' (unknown agent 'nope')", "send_text", "nope", TO, KFID, "x"),
      case("bad argument #3 to 'send_text' (string expected, got number)", "send_text", AGENT, 42, KFID, "x"),
      case("bad argument #5 to 'send_image' (string expected, got nil)", "send_image", AGENT, TO, KFID),
      case("bad argument #5 to 'send_text' (content: at most 2048 bytes, got 2049)", "send_text", AGENT, TO, KFID,
        ("x"):rep(2049)),
      case("bad argument #5 to 'send_text' (content: invalid UTF-8 at byte 3)", "send_text", AGENT, TO, KFID,
        "ab\xff"),
      case("bad argument #5 to 'send_link' (msg.desc: invalid UTF-8 at byte 2)", "send_link", AGENT, TO, KFID, LINK),
      case("bad argument #6 to 'send_text' (opts.msgid: only [0-9a-zA-Z_-] allowed)", "send_text", AGENT, TO, KFID,
        "x", { msgid = "order 42" }),
      case("bad argument #6 to 'send_text' (opts.msgid: at most 32 bytes, got 33)", "send_text", AGENT, TO, KFID,
        "x", { msgid = ("m"):rep(33) }),
      case("bad argument #6 to 'send_file' (opts.msgid: must not be empty)", "send_file", AGENT, TO, KFID, "m",
        { msgid = "" }),
      case("bad argument #6 to 'send_text' (table expected, got string)", "send_text", AGENT, TO, KFID, "x", "m1"),
      case("bad argument #6 to 'send_text' (opts: unknown option 'msg_id')", "send_text", AGENT, TO, KFID, "x",
        { msg_id = "m1" }),
      case("bad argument #8 to 'send_video' (opts.msgid: string expected, got number)", "send_video", AGENT, TO,
        KFID, "m", nil, nil, { msgid = 7 }),
      case("bad argument #5 to 'send_menu' (msg.list: at most 10 items, got 11)", "send_menu", AGENT, TO, KFID,
        { list = ELEVEN }),
      case("bad argument #5 to 'send_location' (msg.latitude: must be between -90 and 90, got 91)", "send_location",
        AGENT, TO, KFID, { latitude = 91, longitude = 0 }),
      case("bad argument #7 to 'send_message' (opts.msgid: only [0-9a-zA-Z_-] allowed)", "send_message", AGENT,
        TO, KFID, "image", { media_id = "m" }, { msgid = "a/b" }),
      case("bad argument #3 to 'send_message' (body.text.content: invalid UTF-8 at byte 1)", "send_message", AGENT,
        { touser = TO, open_kfid = KFID, msgtype = "text", text = { content = "\xff" } }),
      case("bad argument #4 to 'send_msg_on_event' (on_event_msg_type: 'text' or 'msgmenu' expected, got 'image')",
        "send_msg_on_event", AGENT, "CODE", "image", { media_id = "m" }, "e1"),
      case("bad argument #5 to 'send_text_on_event' (msg_id: only [0-9a-zA-Z_-] allowed)", "send_text_on_event",
        AGENT, "CODE", "hi", "a.b"),
      case("bad argument #4 to 'send_menu_on_event' (msg.list: at most 10 items, got 11)", "send_menu_on_event",
        AGENT, "CODE", { list = ELEVEN }, "e2"),
      case("bad argument #3 to 'sync_msg' (opts.limit: must be between 1 and 1000, got 0)", "sync_msg", AGENT,
        { limit = 0 }),
      case("bad argument #3 to 'sync_msg' (opts: unknown option 'cursour')", "sync_msg", AGENT, { cursour = "c" }),
    }

    for _, c in ipairs(CASES) do
      it(c.expected, function()
        local line
        local ok, err = pcall(function()
          line = debug.getinfo(1, "l").currentline; local r = kf[c.name](c.n > 0 and client or nil, unpack(c, 1, c.n))
          return r
        end)
        assert.is_false(ok)
        assert.equal(SRC .. ":" .. line .. ": " .. c.expected, err)
        assert.same({}, standin.counts())
      end)
    end
  end)

  -- An empty msgid is an error to WeCom (a Go SDK had to stop sending it), never "none": a raw body's "" raises
  -- like opts.msgid = "" does, and sends nothing.
  it("raises on a raw body whose msgid is \"\", sending nothing", function()
    local body = { touser = "wm1", open_kfid = "wk1", msgid = "", msgtype = "text", text = { content = "hi" } }
    local ok, err = pcall(kf.send_message, client, cases.AGENT, body)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("bad argument #3 to 'send_message' (body.msgid: must not be empty)", 1, true))
    assert.same({}, standin.counts())
  end)

  it("gives a raw body without msgid one of its own (auto_msgid), in a copy: the caller's table stays", function()
    local body = { touser = "wm1", open_kfid = "wk1", msgtype = "text", text = { content = "hi" } }
    standin.script("/cgi-bin/kf/send_msg", { truncate = true }, 1) -- the answer is cut: did it go out?
    local res, err = kf.send_message(client, cases.AGENT, body)
    assert.is_nil(err)
    assert.is_nil(body.msgid)
    -- retried, since it carries a msgid; delivered once
    assert.same({ res.msgid, res.msgid }, { standin.bodies("/cgi-bin/kf/send_msg")[1].msgid,
      standin.bodies("/cgi-bin/kf/send_msg")[2].msgid })
    assert.equal(1, #standin.delivered())
  end)

  it("a wrong argument sends nothing, not even a gettoken", function()
    local ok = pcall(kf.send_text, client, cases.AGENT, "wm1", "wk1", string.rep("x", 2049))
    assert.is_false(ok)
    ok = pcall(kf.send_menu, client, cases.AGENT, "wm1", "wk1", { list = { { type = "click" } } })
    assert.is_false(ok)
    assert.same({}, standin.counts())
  end)
end)
