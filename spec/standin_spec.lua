-- The local WeCom stand-in itself: what it answers, what it records, how scripts and sync paging behave.
local cjson = require "cjson"
local socket = require "socket"
local standin = require "helpers.standin"

local rep, format = string.rep, string.format

local SEND = "/cgi-bin/kf/send_msg"
local EVENT = "/cgi-bin/kf/send_msg_on_event"
local SYNC = "/cgi-bin/kf/sync_msg"
local GETTOKEN = "/cgi-bin/gettoken"

-- status and body only, so that { req(...) } can be compared whole
local function req(method, path, body)
  local status, resp = standin.request(method, path, body)
  return status, resp
end

local function gettoken(query)
  return req("GET", GETTOKEN .. "?" .. query)
end

local function post(path, token, body)
  return req("POST", path .. "?access_token=" .. token, body)
end

local function err(code, msg)
  return format('{"errcode":%d,"errmsg":"%s"}', code, msg)
end

local function ok_msgid(msgid)
  return format('{"errcode":0,"errmsg":"ok","msgid":"%s"}', msgid)
end

-- send(open_kfid, msgid) and event(code, msgid): a text to wmUSER through send_msg and send_msg_on_event, with
-- that msgid (the code issued as a welcome code first); each returns status, body.
local function msgid_senders(token)
  local function send(kfid, msgid)
    return post(SEND, token, format('{"touser":"wmUSER","open_kfid":"%s","msgtype":"text","text":{"content":"s"},'
      .. '"msgid":"%s"}', kfid, msgid))
  end
  local function event(code, msgid)
    standin.welcome_code(code)
    return post(EVENT, token, format('{"code":"%s","msgid":"%s","msgtype":"text","text":{"content":"e"}}', code,
      msgid))
  end
  return send, event
end

-- Runs a shell command; returns its exit code and output (stdout and stderr).
local function shell(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"rc=$?\""))
  local out = p:read("*a")
  p:close()
  local body, code = out:match("^(.*)rc=(%d+)\n$")
  return tonumber(code), body
end

describe("wecom stand-in", function()
  setup(function()
    standin.start()
  end)

  teardown(function()
    standin.stop()
  end)

  before_each(function()
    standin.reset()
  end)

  describe("gettoken", function()
    it("hands out a token and the same one again while it lives", function()
      local status, body = gettoken("corpid=wwCORP&corpsecret=KF_SECRET")
      assert.are.equal(200, status)
      local first = cjson.decode(body)
      assert.are.equal(0, first.errcode)
      assert.are.equal("ok", first.errmsg)
      assert.are.equal(7200, first.expires_in)
      assert.are.equal(50, #first.access_token)
      assert.truthy(first.access_token:match("^ST%x+$"))
      assert.are.equal(format('{"errcode":0,"errmsg":"ok","access_token":"%s","expires_in":7200}',
        first.access_token), body)

      local _, again = gettoken("corpid=wwCORP&corpsecret=KF_SECRET")
      assert.are.equal(first.access_token, cjson.decode(again).access_token)
      assert.are.same({ [GETTOKEN] = 2 }, standin.counts())
    end)

    it("keeps one token per secret", function()
      local kf, other = standin.token("KF_SECRET"), standin.token("OTHER_SECRET")
      assert.are_not.equal(kf, other)
      assert.are.equal(kf, standin.token("KF_SECRET"))
      assert.are.equal(other, standin.token("OTHER_SECRET"))
    end)

    it("answers a wrong corpid or secret like WeCom", function()
      local cases = {
        { "corpsecret=KF_SECRET", err(41002, "corpid missing") },
        { "corpid=wwOTHER&corpsecret=KF_SECRET", err(40013, "invalid corpid") },
        { "corpid=wwCORP", err(41004, "corpsecret missing") },
        { "corpid=wwCORP&corpsecret=NOPE", err(40001, "invalid secret") },
        { "corpid=&corpsecret=KF_SECRET", err(40013, "invalid corpid") },
      }
      for _, case in ipairs(cases) do
        local status, body = gettoken(case[1])
        assert.are.equal(200, status)
        assert.are.equal(case[2], body)
      end
      assert.are.same({ [GETTOKEN] = 5 }, standin.counts())
    end)

    it("forgets tokens on reset", function()
      local token = standin.token()
      standin.reset()
      assert.are.same({ 200, err(40014, "invalid access_token") }, { post(SYNC, token, "{}") })
    end)

    it("issues already expired tokens when expires_in is 0", function()
      assert.are.same({ code_now = 0, expires_in = 0, kf_secret_only = false, media_cut_after = -1,
        media_framing = "length", media_now = 0, media_strict = true, msgid_dedup = true, record = true,
        statistic_now = 0, window_strict = true }, standin.config({ expires_in = 0 }))
      local status, body = gettoken("corpid=wwCORP&corpsecret=KF_SECRET")
      assert.are.equal(200, status)
      local reply = cjson.decode(body)
      assert.are.equal(0, reply.expires_in)
      assert.are_not.equal(reply.access_token, standin.token())
      assert.are.same({ 200, err(42001, "access_token expired") }, { post(SYNC, reply.access_token, "{}") })
    end)
  end)

  describe("access_token", function()
    it("is checked on every KF call", function()
      for _, path in ipairs({ SEND, EVENT, SYNC }) do
        assert.are.same({ 200, err(41001, "access_token missing") }, { req("POST", path, "{}") })
        assert.are.same({ 200, err(41001, "access_token missing") }, { post(path, "", "{}") })
        assert.are.same({ 200, err(40014, "invalid access_token") }, { post(path, "nope", "{}") })
      end
    end)

    it("answers 42001 for every token issued before expire_tokens, and a new token works", function()
      local old = standin.token()
      standin.expire_tokens()
      assert.are.same({ 200, err(42001, "access_token expired") }, { post(SYNC, old, "{}") })
      local new = standin.token()
      assert.are_not.equal(old, new)
      assert.are.same({ 200, '{"errcode":0,"errmsg":"ok","next_cursor":"SC0","has_more":0,"msg_list":[]}' },
        { post(SYNC, new, "{}") })
    end)

    it("forbids OTHER_SECRET tokens on the KF API when kf_secret_only is set", function()
      standin.config({ kf_secret_only = true })
      local other = standin.token("OTHER_SECRET")
      assert.are.same({ 200, err(48002, "api forbidden") }, { post(SYNC, other, "{}") })
      assert.are.same({ 200, '{"errcode":0,"errmsg":"ok","next_cursor":"SC0","has_more":0,"msg_list":[]}' },
        { post(SYNC, standin.token(), "{}") })
    end)

    it("wants POST and a JSON object", function()
      local token = standin.token()
      assert.are.same({ 200, err(43002, "require POST method") },
        { req("GET", SEND .. "?access_token=" .. token) })
      for _, body in ipairs({ "", "not json", "[]", '"text"', "{" }) do
        assert.are.same({ 200, err(47001, "data format error") }, { post(SEND, token, body) })
      end
    end)
  end)

  describe("send_msg", function()
    local HEAD = '"touser":"wmUSER","open_kfid":"wkKF",'
    local function menu_body(item)
      return "{" .. HEAD .. '"msgtype":"msgmenu","msgmenu":{"list":[' .. item .. ']}}'
    end
    local cases = {
      { '{"open_kfid":"wkKF","msgtype":"text","text":{"content":"hi"}}', err(41009, "touser missing") },
      { '{"touser":7,"open_kfid":"wkKF","msgtype":"text","text":{"content":"hi"}}', err(40058, "invalid touser") },
      { '{"touser":"wmUSER","msgtype":"text","text":{"content":"hi"}}', err(95000, "open_kfid missing") },
      { '{"touser":"wmUSER","open_kfid":[],"msgtype":"text"}', err(95000, "invalid open_kfid") },
      { "{" .. HEAD .. '"text":{"content":"hi"}}', err(40008, "msgtype missing") },
      { "{" .. HEAD .. '"msgtype":"news","news":{}}', err(40008, "invalid msgtype") },
      { "{" .. HEAD .. '"msgtype":"text"}', err(40058, "text missing") },
      { "{" .. HEAD .. '"msgtype":"text","text":null}', err(40058, "text missing") },
      { "{" .. HEAD .. '"msgtype":"text","text":[]}', err(40058, "invalid text") },
      { "{" .. HEAD .. '"msgtype":"text","text":{}}', err(44004, "text.content missing") },
      { "{" .. HEAD .. '"msgtype":"text","text":{"content":1}}', err(40058, "invalid text.content") },
      { "{" .. HEAD .. '"msgtype":"text","text":{"content":"' .. rep("a", 2049) .. '"}}',
        err(45002, "text.content too long") },
      { "{" .. HEAD .. '"msgtype":"image","image":{}}', err(41006, "image.media_id missing") },
      { "{" .. HEAD .. '"msgtype":"voice","voice":{"media_id":""}}', err(41006, "voice.media_id missing") },
      -- unknown keys inside a message object: 47001 (stricter than WeCom may be), video has media_id only
      { "{" .. HEAD .. '"msgtype":"video","video":{"media_id":"M","title":"t"}}',
        err(47001, "unknown key video.title") },
      { "{" .. HEAD .. '"msgtype":"video","video":{"media_id":"M","title":"t","description":"d"}}',
        err(47001, "unknown key video.description") },
      { "{" .. HEAD .. '"msgtype":"text","text":{"content":"hi","foo":1}}', err(47001, "unknown key text.foo") },
      { "{" .. HEAD .. '"msgtype":"location","location":{"latitude":1,"longitude":2,"zoom":3}}',
        err(47001, "unknown key location.zoom") },
      { "{" .. HEAD .. '"msgtype":"msgmenu","msgmenu":{"list":[{"type":"click","click":{"id":"1","content":"a",'
        .. '"bar":1}}]}}', err(47001, "unknown key msgmenu.list[1].click.bar") },
      { "{" .. HEAD .. '"msgtype":"msgmenu","msgmenu":{"list":[{"type":"click","click":{"id":"1","content":"a"},'
        .. '"view":{}}]}}', err(47001, "unknown key msgmenu.list[1].view") },
      { "{" .. HEAD .. '"msgtype":"file","file":{"media_id":false}}', err(40058, "invalid file.media_id") },
      -- unknown keys in the body itself: 47001 too, an object of another type included
      { "{" .. HEAD .. '"msgtype":"text","text":{"content":"hi"},"agentid":1000002}',
        err(47001, "unknown key body.agentid") },
      { "{" .. HEAD .. '"msgtype":"text","text":{"content":"hi"},"safe":0}', err(47001, "unknown key body.safe") },
      { "{" .. HEAD .. '"msgtype":"image","image":{"media_id":"@IMAGE@"},"text":{"content":"hi"}}',
        err(47001, "unknown key body.text") },
      { "{" .. HEAD .. '"msgtype":"link","link":{"url":"https://a.example","thumb_media_id":"@IMAGE@"}}',
        err(41016, "link.title missing") },
      { "{" .. HEAD .. '"msgtype":"link","link":{"title":"t","thumb_media_id":"@IMAGE@"}}',
        err(41010, "link.url missing") },
      { "{" .. HEAD .. '"msgtype":"link","link":{"title":"t","url":"a.example","thumb_media_id":"@IMAGE@"}}',
        err(40058, "invalid link.url") },
      { "{" .. HEAD .. '"msgtype":"link","link":{"title":"t","url":"https://","thumb_media_id":"@IMAGE@"}}',
        err(40058, "invalid link.url") },
      { "{" .. HEAD .. '"msgtype":"link","link":{"title":"t","url":"https://a.example/' .. rep("u", 2031)
        .. '","thumb_media_id":"@IMAGE@"}}', err(40058, "invalid link.url") },
      { "{" .. HEAD .. '"msgtype":"link","link":{"title":"t","url":"http://a.example"}}',
        err(41006, "link.thumb_media_id missing") },
      { "{" .. HEAD .. '"msgtype":"miniprogram","miniprogram":{"title":"t","thumb_media_id":"@IMAGE@","pagepath":"p"}}',
        err(40058, "miniprogram.appid missing") },
      { "{" .. HEAD .. '"msgtype":"miniprogram","miniprogram":{"appid":"wx1","title":7,"thumb_media_id":"@IMAGE@",'
        .. '"pagepath":"p"}}', err(40058, "invalid miniprogram.title") },
      { "{" .. HEAD .. '"msgtype":"miniprogram","miniprogram":{"appid":"wx1","title":"' .. rep("t", 65)
        .. '","thumb_media_id":"@IMAGE@","pagepath":"p"}}', err(40058, "invalid miniprogram.title") },
      { "{" .. HEAD .. '"msgtype":"miniprogram","miniprogram":{"appid":"wx1","title":"t","pagepath":"p"}}',
        err(41006, "miniprogram.thumb_media_id missing") },
      { "{" .. HEAD .. '"msgtype":"miniprogram","miniprogram":{"appid":"wx1","title":"t","thumb_media_id":"@IMAGE@"}}',
        err(40058, "miniprogram.pagepath missing") },
      { "{" .. HEAD .. '"msgtype":"msgmenu","msgmenu":{"list":{}}}', err(40058, "invalid msgmenu.list") },
      { "{" .. HEAD .. '"msgtype":"msgmenu","msgmenu":{"list":[' .. rep('{"type":"text","text":{"content":"x"}},', 10)
        .. '{"type":"text","text":{"content":"x"}}]}}', err(40058, "invalid msgmenu.list") },
      { "{" .. HEAD .. '"msgtype":"msgmenu","msgmenu":{"list":[{"type":"click","click":{"id":"1","content":"a"}},'
        .. '{"type":"button","button":{}}]}}', err(40058, "invalid msgmenu.list[2]") },
      { "{" .. HEAD .. '"msgtype":"msgmenu","msgmenu":{"head_content":' .. '"' .. rep("h", 1025) .. '","list":[]}}',
        err(40058, "invalid msgmenu.head_content") },
      -- menu items: every field required, within its limit
      { menu_body('{"type":"click","click":{"content":"a"}}'), err(40058, "msgmenu.list[1].click.id missing") },
      { menu_body('{"type":"click","click":{"id":"' .. rep("i", 65) .. '","content":"a"}}'),
        err(40058, "invalid msgmenu.list[1].click.id") },
      { menu_body('{"type":"click","click":{"id":"1","content":"' .. rep("c", 129) .. '"}}'),
        err(40058, "invalid msgmenu.list[1].click.content") },
      { menu_body('{"type":"view","view":{"url":"https://a.example/' .. rep("u", 2031) .. '","content":"v"}}'),
        err(40058, "invalid msgmenu.list[1].view.url") },
      { menu_body('{"type":"view","view":{"url":"https://a.example","content":""}}'),
        err(40058, "msgmenu.list[1].view.content missing") },
      { menu_body('{"type":"view","view":{"url":"https://a.example","content":"' .. rep("v", 1025) .. '"}}'),
        err(40058, "invalid msgmenu.list[1].view.content") },
      { menu_body('{"type":"miniprogram","miniprogram":{"appid":"' .. rep("w", 33) .. '","pagepath":"p",'
        .. '"content":"m"}}'), err(40058, "invalid msgmenu.list[1].miniprogram.appid") },
      { menu_body('{"type":"miniprogram","miniprogram":{"appid":"wx1","pagepath":"' .. rep("p", 1025) .. '",'
        .. '"content":"m"}}'), err(40058, "invalid msgmenu.list[1].miniprogram.pagepath") },
      { menu_body('{"type":"miniprogram","miniprogram":{"appid":"wx1","pagepath":"p"}}'),
        err(40058, "msgmenu.list[1].miniprogram.content missing") },
      { menu_body('{"type":"text","text":{"content":"' .. rep("t", 257) .. '"}}'),
        err(40058, "invalid msgmenu.list[1].text.content") },
      { menu_body('{"type":"text","text":{"content":"t","no_newline":2}}'),
        err(40058, "invalid msgmenu.list[1].text.no_newline") },
      { menu_body('{"type":"text","text":{"content":"t","no_newline":true}}'),
        err(40058, "invalid msgmenu.list[1].text.no_newline") },
      { "{" .. HEAD .. '"msgtype":"location","location":{"longitude":116.4}}',
        err(40058, "location.latitude missing") },
      { "{" .. HEAD .. '"msgtype":"location","location":{"latitude":"39.9","longitude":116.4}}',
        err(40058, "invalid location.latitude") },
      { "{" .. HEAD .. '"msgtype":"location","location":{"latitude":39.9,"longitude":180.5}}',
        err(40058, "invalid location.longitude") },
      { "{" .. HEAD .. '"msgtype":"text","text":{"content":"hi"},"msgid":"' .. rep("m", 33) .. '"}',
        err(40058, "invalid msgid") },
      { "{" .. HEAD .. '"msgtype":"text","text":{"content":"hi"},"msgid":"a b"}', err(40058, "invalid msgid") },
      { "{" .. HEAD .. '"msgtype":"text","text":{"content":"hi"},"msgid":42}', err(40058, "invalid msgid") },
      -- an empty msgid is an error, not "none"
      { "{" .. HEAD .. '"msgtype":"text","text":{"content":"hi"},"msgid":""}', err(40058, "invalid msgid") },
      -- a media_id the stand-in never issued, as WeCom refuses one it never issued
      { "{" .. HEAD .. '"msgtype":"image","image":{"media_id":"MI"}}', err(40007, "invalid media_id") },
      { "{" .. HEAD .. '"msgtype":"link","link":{"title":"t","url":"https://a.example","thumb_media_id":"T"}}',
        err(40007, "invalid media_id") },
    }

    -- a body with the media ids the stand-in issued in place of @IMAGE@, @VOICE@, @VIDEO@ and @FILE@
    local function issued(body)
      return (body:gsub("@(%u+)@", function(name)
        return standin.media_id(name:lower())
      end))
    end

    -- the customer wrote: WeCom takes send_msg within 48 hours after, 5 of them
    before_each(function()
      standin.wrote("wkKF", "wmUSER")
    end)

    for i, case in ipairs(cases) do
      it(format("rejects bad body %d: %s", i, case[2]), function()
        local token = standin.token()
        assert.are.same({ 200, case[2] }, { post(SEND, token, issued(case[1])) })
        assert.are.same({}, standin.delivered())
      end)
    end

    it("takes every message type and delivers the bodies in order, byte for byte", function()
      local bodies = {
        "{" .. HEAD .. '"msgtype":"text","text":{"content":"你好 👋"}}',
        "{" .. HEAD .. '"msgtype":"image","image":{"media_id":"@IMAGE@"}}',
        "{" .. HEAD .. '"msgtype":"voice","voice":{"media_id":"@VOICE@"}}',
        "{" .. HEAD .. '"msgtype":"video","video":{"media_id":"@VIDEO@"}}',
        "{" .. HEAD .. '"msgtype":"file","file":{"media_id":"@FILE@"}}',
        "{" .. HEAD .. '"msgtype":"link","link":{"title":"t","desc":"d","url":"https://a.example/'
          .. rep("x", 2030) .. '","thumb_media_id":"@IMAGE@"}}',
        "{" .. HEAD .. '"msgtype":"miniprogram","miniprogram":{"appid":"wx1","title":"t","thumb_media_id":"@IMAGE@",'
          .. '"pagepath":"pages/index"}}',
        "{" .. HEAD .. '"msgtype":"msgmenu","msgmenu":{"head_content":"h","list":[],"tail_content":"t"}}',
        "{" .. HEAD .. '"msgtype":"location","location":{"name":"n","address":"a","latitude":39.123456789012345,'
          .. '"longitude":-116.4}}',
      }
      for i = 1, #bodies do
        bodies[i] = issued(bodies[i])
      end
      local token = standin.token()
      local before = standin.counts()
      for i, body in ipairs(bodies) do
        standin.wrote("wkKF", "wmUSER") -- the customer writes before each, so that 5 sends never run out
        assert.are.same({ 200, ok_msgid("standin-msg-" .. i) }, { post(SEND, token, body) })
      end
      assert.are.same({ 200, "[" .. table.concat(bodies, ",") .. "]" }, { req("GET", "/_standin/delivered") })
      assert.are.equal("你好 👋", standin.delivered()[1].text.content)
      assert.are.same({ [SEND] = 9 }, standin.counts_since(before))
    end)

    it("takes what WeCom marks optional: miniprogram.title, msgmenu head_content, list and tail_content", function()
      local token = standin.token()
      local bodies = {
        "{" .. HEAD .. '"msgtype":"miniprogram","miniprogram":{"appid":"wx1","thumb_media_id":"@IMAGE@",'
          .. '"pagepath":"p"}}',
        "{" .. HEAD .. '"msgtype":"msgmenu","msgmenu":{"head_content":"h"}}',
        "{" .. HEAD .. '"msgtype":"msgmenu","msgmenu":{"tail_content":"t"}}',
        "{" .. HEAD .. '"msgtype":"msgmenu","msgmenu":{}}',
      }
      for i, body in ipairs(bodies) do
        bodies[i] = issued(body)
        assert.are.same({ 200, ok_msgid("standin-msg-" .. i) }, { post(SEND, token, bodies[i]) })
      end
      assert.are.same({ 200, "[" .. table.concat(bodies, ",") .. "]" }, { req("GET", "/_standin/delivered") })
    end)

    it("takes menu items with every field at its limit", function()
      local token = standin.token()
      local body = menu_body(table.concat({
        '{"type":"click","click":{"id":"' .. rep("i", 64) .. '","content":"' .. rep("c", 128) .. '"}}',
        '{"type":"view","view":{"url":"https://a.example/' .. rep("u", 2030) .. '","content":"' .. rep("v", 1024)
          .. '"}}',
        '{"type":"miniprogram","miniprogram":{"appid":"' .. rep("w", 32) .. '","pagepath":"' .. rep("p", 1024)
          .. '","content":"' .. rep("m", 1024) .. '"}}',
        '{"type":"text","text":{"content":"' .. rep("t", 256) .. '","no_newline":1}}',
        '{"type":"text","text":{"content":"t","no_newline":0}}',
      }, ","))
      assert.are.same({ 200, ok_msgid("standin-msg-1") }, { post(SEND, token, body) })
      assert.are.same({ 200, "[" .. body .. "]" }, { req("GET", "/_standin/delivered") })
    end)

    it("refuses a repeated msgid of the same open_kfid (40058, assumed) and delivers it once", function()
      local token = standin.token()
      local body = "{" .. HEAD .. '"msgtype":"text","text":{"content":"once"},"msgid":"order-17_a"}'
      assert.are.same({ 200, ok_msgid("order-17_a") }, { post(SEND, token, body) })
      assert.are.same({ 200, err(40058, "duplicate msgid order-17_a") }, { post(SEND, token, body) })
      local other = "{" .. HEAD .. '"msgtype":"text","text":{"content":"twice"},"msgid":"order-18"}'
      assert.are.same({ 200, ok_msgid("order-18") }, { post(SEND, token, other) })
      assert.are.same({
        { touser = "wmUSER", open_kfid = "wkKF", msgtype = "text", text = { content = "once" }, msgid = "order-17_a" },
        { touser = "wmUSER", open_kfid = "wkKF", msgtype = "text", text = { content = "twice" }, msgid = "order-18" },
      }, standin.delivered())
      assert.are.equal(3, standin.counts()[SEND])
    end)

    it("with config msgid_dedup false (benches only) delivers a repeated msgid again, and looks at none", function()
      local send, event = msgid_senders(standin.token())
      standin.config{ msgid_dedup = false }
      assert.are.same({ 200, ok_msgid("again") }, { send("wkKF", "again") })
      assert.are.same({ 200, ok_msgid("again") }, { send("wkKF", "again") })
      assert.are.same({ 200, ok_msgid("again") }, { event("C1", "again") })
      assert.are.same({ "again", "again", "again" }, { standin.delivered()[1].msgid, standin.delivered()[2].msgid,
        standin.delivered()[3].msgid })
      standin.config{ msgid_dedup = true }
      assert.are.same({ 200, ok_msgid("kept") }, { send("wkKF", "kept") })
      assert.are.same({ 200, err(40058, "duplicate msgid kept") }, { send("wkKF", "kept") })
    end)

    it("keeps msgids per open_kfid: another KF account may use the same one", function()
      standin.wrote("wkA", "wmUSER")
      standin.wrote("wkB", "wmUSER")
      local token = standin.token()
      local body = '{"touser":"wmUSER","open_kfid":"wkA","msgtype":"text","text":{"content":"a"},"msgid":"m1"}'
      assert.are.same({ 200, ok_msgid("m1") }, { post(SEND, token, body) })
      body = '{"touser":"wmUSER","open_kfid":"wkB","msgtype":"text","text":{"content":"b"},"msgid":"m1"}'
      assert.are.same({ 200, ok_msgid("m1") }, { post(SEND, token, body) })
      assert.are.equal(2, #standin.delivered())
    end)

    it("never forgets a msgid: with the dedup dict full a new msgid is refused (-1, stand-in), old ones stay",
      function()
      local send, event = msgid_senders(standin.token())
      standin.wrote("wkOTHER", "wmUSER")
      assert.are.same({ 200, ok_msgid("old-1") }, { send("wkKF", "old-1") })
      assert.are.same({ 200, ok_msgid("old-2") }, { event("C1", "old-2") })
      local status, answer = standin.request("POST", "/_standin/fill_msgids")
      assert.are.equal(200, status)
      assert.is_true(cjson.decode(answer).added > 1000)
      assert.are.same({ 200, err(-1, "system busy") }, { send("wkKF", "new-1") })
      assert.are.same({ 200, err(-1, "system busy") }, { send("wkOTHER", "new-2") })
      assert.are.same({ 200, err(-1, "system busy") }, { event("C2", "new-3") })
      assert.are.same({ 200, err(40058, "duplicate msgid old-1") }, { send("wkKF", "old-1") })
      assert.are.same({ 200, err(40058, "duplicate msgid old-2") }, { event("C3", "old-2") })
      assert.are.same({ "old-1", "old-2" }, { standin.delivered()[1].msgid, standin.delivered()[2].msgid })
      assert.are.equal(2, #standin.delivered())
    end)

    it("handles a request and then loses its answer with the lose_answer script", function()
      local token = standin.token()
      standin.script(SEND, { lose_answer = true }, 1)
      local body = "{" .. HEAD .. '"msgtype":"text","text":{"content":"lost"},"msgid":"m-lost"}'
      local status = post(SEND, token, body)
      assert.is_nil(status) -- no answer at all
      assert.are.same({ 200, err(40058, "duplicate msgid m-lost") }, { post(SEND, token, body) })
      assert.are.equal(1, #standin.delivered())
    end)
  end)

  describe("the 48 h / 5-message window of send_msg", function()
    local function wrote(user, send_time, origin)
      standin.sync{ messages = { { open_kfid = "wkKF", external_userid = user, send_time = send_time,
        origin = origin, msgtype = "text", text = { content = "hi" } } } }
    end

    local function text_to(user, msgid)
      return format('{"touser":"%s","open_kfid":"wkKF","msgtype":"text","text":{"content":"x"}%s}', user,
        msgid and ',"msgid":"' .. msgid .. '"' or "")
    end

    local QUOTA = err(95001, "send msg count limit: 5 messages since the customer's last message")
    local EXPIRED = err(95002, "send msg time limit: 48 hours since the customer's last message")

    it("answers 95001 to the 6th send after a customer message, and starts over at the next one", function()
      local token = standin.token()
      wrote("wmW", os.time() - 60)
      for i = 1, 5 do
        assert.are.same({ 200, ok_msgid("standin-msg-" .. i) }, { post(SEND, token, text_to("wmW")) })
      end
      assert.are.same({ 200, QUOTA }, { post(SEND, token, text_to("wmW")) })
      -- a repeated msgid is refused and not counted; send_msg_on_event is not counted
      wrote("wmW", os.time())
      standin.welcome_code("C1")
      assert.are.same({ 200, ok_msgid("same") }, { post(SEND, token, text_to("wmW", "same")) })
      assert.are.same({ 200, err(40058, "duplicate msgid same") }, { post(SEND, token, text_to("wmW", "same")) })
      assert.are.same({ 200, ok_msgid("standin-msg-6") },
        { post(EVENT, token, '{"code":"C1","msgtype":"text","text":{"content":"w"}}') })
      for i = 7, 10 do
        assert.are.same({ 200, ok_msgid("standin-msg-" .. i) }, { post(SEND, token, text_to("wmW")) })
      end
      assert.are.same({ 200, QUOTA }, { post(SEND, token, text_to("wmW")) })
      assert.are.equal(11, #standin.delivered())
    end)

    it("answers 95002 when the customer's last message is 48 hours old, counted from its send_time", function()
      local token = standin.token()
      wrote("wmOLD", os.time() - 48 * 3600)
      assert.are.same({ 200, EXPIRED }, { post(SEND, token, text_to("wmOLD")) })
      -- an older message queued later does not reopen it; a newer one does
      wrote("wmOLD", os.time() - 49 * 3600)
      assert.are.same({ 200, EXPIRED }, { post(SEND, token, text_to("wmOLD")) })
      wrote("wmOLD", os.time() - 47 * 3600)
      assert.are.same({ 200, ok_msgid("standin-msg-1") }, { post(SEND, token, text_to("wmOLD")) })
    end)

    -- with window_strict the account and the customer must be known (95004, 40096) before the window is looked at
    local function known_elsewhere(user)
      standin.kf_account{ open_kfid = "wkKF" }
      standin.sync{ messages = { { open_kfid = "wkOTHER", external_userid = user } } }
    end

    it("opens no window for events and servicer messages", function()
      local token = standin.token()
      wrote("wmS", os.time(), 5)
      known_elsewhere("wmS")
      assert.are.same({ 200, err(95031, "customer has not written within 48 hours") },
        { post(SEND, token, text_to("wmS")) })
    end)

    it("answers 95031 to a customer it never saw write, as WeCom; config window_strict false lets one pass", function()
      local token = standin.token()
      known_elsewhere("wmNEW")
      -- a session never told of: only a customer's message opens a window, and it makes the session too
      assert.are.same({}, { standin.session("wkKF", "wmNEW") })
      assert.are.same({ 200, err(95031, "customer has not written within 48 hours") },
        { post(SEND, token, text_to("wmNEW")) })
      assert.are.same({}, standin.delivered())
      standin.config{ window_strict = false }
      assert.are.same({ 200, ok_msgid("standin-msg-1") }, { post(SEND, token, text_to("wmNEW")) })
    end)

    it("opens windows with POST /_standin/customer_wrote, queueing nothing for sync_msg", function()
      local token = standin.token()
      assert.are.same({ 200, '{"ok":true}' }, { req("POST", "/_standin/customer_wrote",
        '{"open_kfid":"wkKF","external_userid":["wmA","wmB"]}') })
      assert.are.same({ 200, ok_msgid("standin-msg-1") }, { post(SEND, token, text_to("wmA")) })
      assert.are.same({ 200, ok_msgid("standin-msg-2") }, { post(SEND, token, text_to("wmB")) })
      -- a session that starts untreated, as after a message, and the window of that message's send_time
      assert.are.same({ 0, "" }, { standin.session("wkKF", "wmA") })
      standin.wrote("wkKF", "wmOLD", os.time() - 48 * 3600)
      assert.are.same({ 200, EXPIRED }, { post(SEND, token, text_to("wmOLD")) })
      standin.wrote("wkKF", "wmOLD")
      for i = 3, 7 do
        assert.are.same({ 200, ok_msgid("standin-msg-" .. i) }, { post(SEND, token, text_to("wmOLD")) })
      end
      assert.are.same({ 200, QUOTA }, { post(SEND, token, text_to("wmOLD")) })
      assert.are.same({ 200, '{"errcode":0,"errmsg":"ok","next_cursor":"SC0","has_more":0,"msg_list":[]}' },
        { post(SYNC, token, "{}") })
      assert.are.same({ [GETTOKEN] = 1, [SEND] = 9, [SYNC] = 1 }, standin.counts())
    end)

    it("answers 95004 for an account and 40096 for a customer it does not know (window_strict)", function()
      local token = standin.token()
      assert.are.same({ 200, err(95004, "open_kfid not exist") }, { post(SEND, token, text_to("wmNOBODY")) })
      standin.kf_account{ open_kfid = "wkKF" }
      assert.are.same({ 200, err(40096, "invalid external userid") }, { post(SEND, token, text_to("wmNOBODY")) })
      -- a customer's message makes both known; a deleted account is gone again
      wrote("wmNOBODY", os.time())
      assert.are.same({ 200, ok_msgid("standin-msg-1") }, { post(SEND, token, text_to("wmNOBODY")) })
      standin.sync{ messages = { { open_kfid = "wkNEW", external_userid = "wmNOBODY" } } }
      local new_kf = '{"touser":"wmNOBODY","open_kfid":"wkNEW","msgtype":"text","text":{"content":"x"}}'
      assert.are.same({ 200, ok_msgid("standin-msg-2") }, { post(SEND, token, new_kf) })
      assert.are.same({ 200, '{"errcode":0,"errmsg":"ok"}' },
        { post("/cgi-bin/kf/account/del", token, '{"open_kfid":"wkKF"}') })
      assert.are.same({ 200, err(95004, "open_kfid not exist") }, { post(SEND, token, text_to("wmNOBODY")) })
      assert.are.equal(2, #standin.delivered())
    end)

    it("refuses an open_kfid over 64 bytes with 95000, as the account calls do", function()
      local token = standin.token()
      local body = '{"touser":"wmU","open_kfid":"' .. rep("k", 65) .. '","msgtype":"text","text":{"content":"x"}}'
      assert.are.same({ 200, err(95000, "invalid open_kfid") }, { post(SEND, token, body) })
      standin.wrote(rep("k", 64), "wmU")
      body = '{"touser":"wmU","open_kfid":"' .. rep("k", 64) .. '","msgtype":"text","text":{"content":"x"}}'
      assert.are.same({ 200, ok_msgid("standin-msg-1") }, { post(SEND, token, body) })
    end)
  end)

  describe("send_msg_on_event", function()
    it("takes a code once", function()
      local token = standin.token()
      standin.welcome_code("WELCOME1")
      local body = '{"code":"WELCOME1","msgtype":"text","text":{"content":"welcome"}}'
      assert.are.same({ 200, ok_msgid("standin-msg-1") }, { post(EVENT, token, body) })
      assert.are.same({ 200, err(95018, "code already used") }, { post(EVENT, token, body) })
      assert.are.same({ { code = "WELCOME1", msgtype = "text", text = { content = "welcome" } } }, standin.delivered())
    end)

    it("refuses a retry with the same msgid as a repeat, before looking at the code", function()
      local token = standin.token()
      standin.welcome_code("W2")
      local body = '{"code":"W2","msgid":"ev1","msgtype":"msgmenu","msgmenu":{"list":[{"type":"click",'
        .. '"click":{"id":"1","content":"yes"}}]}}'
      assert.are.same({ 200, ok_msgid("ev1") }, { post(EVENT, token, body) })
      assert.are.same({ 200, err(40058, "duplicate msgid ev1") }, { post(EVENT, token, body) })
      assert.are.same({ 200, "[" .. body .. "]" }, { req("GET", "/_standin/delivered") })
    end)

    it("refuses a msgid send_msg used on any account, and send_msg one it used (one KF account's msgids)", function()
      local send, event = msgid_senders(standin.token())
      standin.wrote("wkA", "wmUSER")
      standin.wrote("wkB", "wmUSER")
      assert.are.same({ 200, ok_msgid("s1") }, { send("wkA", "s1") })
      assert.are.same({ 200, err(40058, "duplicate msgid s1") }, { event("C1", "s1") })
      assert.are.same({ 200, ok_msgid("e1") }, { event("C2", "e1") })
      assert.are.same({ 200, err(40058, "duplicate msgid e1") }, { send("wkA", "e1") })
      assert.are.same({ 200, err(40058, "duplicate msgid e1") }, { send("wkB", "e1") })
      -- the refused event left its code unused
      assert.are.same({ 200, ok_msgid("e2") }, { event("C1", "e2") })
      assert.are.same({ "s1", "e1", "e2" }, { standin.delivered()[1].msgid, standin.delivered()[2].msgid,
        standin.delivered()[3].msgid })
      assert.are.equal(3, #standin.delivered())
    end)

    it("checks code, msgtype and the typed object", function()
      local token = standin.token()
      standin.welcome_code("C")
      local cases = {
        { '{"msgtype":"text","text":{"content":"w"}}', err(40058, "code missing") },
        { '{"code":5,"msgtype":"text","text":{"content":"w"}}', err(40058, "invalid code") },
        { '{"code":"C","msgtype":"image","image":{"media_id":"M"}}', err(40008, "invalid msgtype") },
        { '{"code":"C","msgtype":"text","text":{}}', err(44004, "text.content missing") },
        { '{"code":"C","msgtype":"msgmenu","msgmenu":{"list":{}}}', err(40058, "invalid msgmenu.list") },
        { '{"code":"C","msgtype":"text","text":{"content":"w"},"open_kfid":"wkKF"}',
          err(47001, "unknown key body.open_kfid") },
        { '{"code":"C","msgtype":"text","text":{"content":"w"},"msgmenu":{}}', err(47001, "unknown key body.msgmenu") },
        { '{"code":"C","msgtype":"text","text":{"content":"w"},"msgid":"bad/id"}', err(40058, "invalid msgid") },
      }
      for _, case in ipairs(cases) do
        assert.are.same({ 200, case[2] }, { post(EVENT, token, case[1]) })
      end
      -- none of them used the code
      assert.are.same({ 200, ok_msgid("standin-msg-1") },
        { post(EVENT, token, '{"code":"C","msgtype":"text","text":{"content":"w"}}') })
    end)

    local function text_on(code)
      return format('{"code":"%s","msgtype":"text","text":{"content":"w"}}', code)
    end

    it("takes only codes it issued: trans's msg_code, a queued event's welcome_code or msg_code", function()
      local token = standin.token()
      assert.are.same({ 200, err(95018, "invalid code") }, { post(EVENT, token, text_on("MADE-UP")) })
      standin.sync{ messages = {
        { open_kfid = "wkKF", external_userid = "wmE", origin = 4, msgtype = "event",
          event = { event_type = "enter_session", open_kfid = "wkKF", external_userid = "wmE", welcome_code = "WC1" } },
        { open_kfid = "wkKF", external_userid = "wmE", origin = 4, msgtype = "event",
          event = { event_type = "session_status_change", open_kfid = "wkKF", external_userid = "wmE",
            change_type = 3, old_servicer_userid = "zhangsan", msg_code = "MC1" } },
      } }
      assert.are.same({ 200, ok_msgid("standin-msg-1") }, { post(EVENT, token, text_on("WC1")) })
      assert.are.same({ 200, ok_msgid("standin-msg-2") }, { post(EVENT, token, text_on("MC1")) })
      assert.are.same({ "standin-welcome-code-1", "standin-welcome-code-2" },
        { standin.welcome_code(), standin.welcome_code() })
      assert.are.same({ 200, ok_msgid("standin-msg-3") }, { post(EVENT, token, text_on("standin-welcome-code-2")) })
      assert.are.same({ 200, err(95018, "invalid code") }, { post(EVENT, token, text_on("standin-welcome-code-3")) })
      assert.are.equal(3, #standin.delivered())
    end)

    it("refuses a code 20 s after it was issued (95018, stand-in: 20 s for every code, the stricter reading)",
      function()
      local token = standin.token()
      local t = 1700000000
      standin.config{ code_now = t }
      standin.welcome_code("ON-TIME")
      standin.welcome_code("LATE")
      standin.config{ code_now = t + 19 }
      assert.are.same({ 200, ok_msgid("standin-msg-1") }, { post(EVENT, token, text_on("ON-TIME")) })
      standin.config{ code_now = t + 20 }
      assert.are.same({ 200, err(95018, "code expired") }, { post(EVENT, token, text_on("LATE")) })
      -- an event's codes age from its send_time, not from when it was queued
      standin.config{ code_now = 0 }
      standin.sync{ messages = { { open_kfid = "wkKF", external_userid = "wmE", origin = 4, msgtype = "event",
        send_time = os.time() - 30, event = { event_type = "enter_session", open_kfid = "wkKF",
          external_userid = "wmE", welcome_code = "OLD-EVENT" } } } }
      assert.are.same({ 200, err(95018, "code expired") }, { post(EVENT, token, text_on("OLD-EVENT")) })
      assert.are.equal(1, #standin.delivered())
    end)
  end)

  describe("sync_msg", function()
    local function pull(token, request)
      local status, body = post(SYNC, token, cjson.encode(request))
      assert.are.equal(200, status)
      return cjson.decode(body), body
    end

    local function msgids(reply)
      local out = {}
      for i, m in ipairs(reply.msg_list) do
        out[i] = m.msgid
      end
      return out
    end

    it("pages through the queue, empty pages first, and resumes after any cursor", function()
      local token = standin.token()
      local messages = {}
      for i = 1, 5 do
        messages[i] = { msgid = "m" .. i, send_time = 1700000000 + i, origin = 3, open_kfid = "wkKF",
          external_userid = "wmUSER", msgtype = "text", text = { content = "c" .. i } }
      end
      assert.are.equal(5, standin.sync({ messages = messages, page_size = 2, empty_pages = 2 }))

      local _, raw = pull(token, {})
      assert.are.equal('{"errcode":0,"errmsg":"ok","next_cursor":"SC0","has_more":1,"msg_list":[]}', raw)
      local page = pull(token, { cursor = "SC0" })
      assert.are.same({ {}, 1, "SC0" }, { msgids(page), page.has_more, page.next_cursor })

      local p1 = pull(token, { cursor = "SC0", limit = 1000 })
      assert.are.same({ { "m1", "m2" }, 1 }, { msgids(p1), p1.has_more })
      assert.are.same(messages[1], p1.msg_list[1])
      local p2 = pull(token, { cursor = p1.next_cursor })
      assert.are.same({ { "m3", "m4" }, 1 }, { msgids(p2), p2.has_more })
      local p3 = pull(token, { cursor = p2.next_cursor })
      assert.are.same({ { "m5" }, 0, "SC5" }, { msgids(p3), p3.has_more, p3.next_cursor })

      -- an older cursor resumes after its page again
      local again = pull(token, { cursor = p1.next_cursor })
      assert.are.same({ { "m3", "m4" }, 1 }, { msgids(again), again.has_more })
      -- the last cursor sees messages queued later
      standin.sync({ messages = { { msgid = "m6" } } })
      local later = pull(token, { cursor = p3.next_cursor })
      assert.are.same({ { "m6" }, 0 }, { msgids(later), later.has_more })
      assert.are.equal(7, standin.counts()[SYNC])
    end)

    it("caps a page by limit and narrows by open_kfid", function()
      local token = standin.token()
      standin.sync({ messages = {
        { msgid = "a1", open_kfid = "wkA" }, { msgid = "b1", open_kfid = "wkB" },
        { msgid = "a2", open_kfid = "wkA" }, { msgid = "b2", open_kfid = "wkB" },
      } })
      local p = pull(token, { limit = 3 })
      assert.are.same({ { "a1", "b1", "a2" }, 1, "SC3" }, { msgids(p), p.has_more, p.next_cursor })
      local a = pull(token, { open_kfid = "wkA", limit = 1 })
      assert.are.same({ { "a1" }, 1, "SC1" }, { msgids(a), a.has_more, a.next_cursor })
      a = pull(token, { open_kfid = "wkA", cursor = a.next_cursor })
      assert.are.same({ { "a2" }, 0, "SC4" }, { msgids(a), a.has_more, a.next_cursor })
    end)

    it("fills in msgid, send_time and origin and keeps the rest as sent", function()
      local token = standin.token()
      local before = os.time()
      standin.request("POST", "/_standin/sync",
        '{"messages":[{"msgtype":"msgmenu","msgmenu":{"list":[]},"x":1.5e300},{"msgid":"own","origin":5}]}')
      local after = os.time()
      local reply, raw = pull(token, {})
      local t1, t2 = reply.msg_list[1].send_time, reply.msg_list[2].send_time
      assert.is_true(t1 >= before and t1 <= after)
      assert.are.equal(t1, t2)
      assert.are.equal(format('{"errcode":0,"errmsg":"ok","next_cursor":"SC2","has_more":0,"msg_list":['
        .. '{"msgid":"standin-sync-1","send_time":%d,"origin":3,"msgtype":"msgmenu","msgmenu":{"list":[]},'
        .. '"x":1.5e300},{"send_time":%d,"msgid":"own","origin":5}]}', t1, t1), raw)
    end)

    it("checks cursor, token, limit, voice_format and open_kfid", function()
      local token = standin.token()
      local cases = {
        { { cursor = "bogus" }, err(40058, "invalid cursor") },
        { { cursor = 3 }, err(40058, "invalid cursor") },
        { { cursor = "SC" .. rep("1", 63) }, err(40058, "invalid cursor") },
        { { token = rep("t", 129) }, err(95007, "invalid token") },
        -- only a token of a callback the stand-in sent
        { { token = rep("t", 128) }, err(95007, "invalid token") },
        { { token = "standin-sync-token-1" }, err(95007, "invalid token") },
        { { token = "" }, err(95007, "invalid token") },
        { { limit = 0 }, err(40058, "invalid limit") },
        { { limit = 1001 }, err(40058, "invalid limit") },
        { { limit = 1.5 }, err(40058, "invalid limit") },
        { { voice_format = 2 }, err(40058, "invalid voice_format") },
        { { open_kfid = 1 }, err(95000, "invalid open_kfid") },
      }
      for _, case in ipairs(cases) do
        assert.are.same({ 200, case[2] }, { post(SYNC, token, cjson.encode(case[1])) })
      end
      local ok = pull(token, { token = standin.sync_token("wkKF"), limit = 1000, voice_format = 1,
        open_kfid = "wkKF" })
      assert.are.same({ 0, 0 }, { ok.errcode, ok.has_more })
    end)
  end)

  describe("scripts", function()
    local query = "corpid=wwCORP&corpsecret=KF_SECRET"

    it("answer the next N requests to a path with a WeCom error, then normal answers follow", function()
      assert.are.same({ ok = true, queued = 1 },
        standin.script(GETTOKEN, { errcode = 45009, errmsg = "api freq out of limit" }, 2))
      assert.are.same({ 200, err(45009, "api freq out of limit") }, { gettoken(query) })
      assert.are.same({ 200, err(45009, "api freq out of limit") }, { gettoken(query) })
      assert.are.equal(0, cjson.decode((select(2, gettoken(query)))).errcode)
      assert.are.same({ [GETTOKEN] = 3 }, standin.counts())
    end)

    it("queue per path, first in first out, and count -1 stays", function()
      standin.script(GETTOKEN, { errcode = 1, errmsg = "first" })
      standin.script(GETTOKEN, { status = 503, body = "busy" })
      standin.script(GETTOKEN, { errcode = 3, errmsg = "forever" }, -1)
      standin.script(SYNC, { errcode = -1, errmsg = "system busy" })
      assert.are.same({ 200, err(1, "first") }, { gettoken(query) })
      local status, body, headers = standin.request("GET", GETTOKEN .. "?" .. query)
      assert.are.same({ 503, "busy", "text/plain; charset=utf-8" }, { status, body, headers["content-type"] })
      for _ = 1, 3 do
        assert.are.same({ 200, err(3, "forever") }, { gettoken(query) })
      end
      assert.are.same({ 200, err(-1, "system busy") }, { post(SYNC, "any", "{}") })
      assert.are.same({ 200, err(40014, "invalid access_token") }, { post(SYNC, "any", "{}") })
    end)

    it("answer a raw status with a JSON body given as a value", function()
      standin.script(SEND, { status = 500, body = { errcode = 1 } })
      local status, body, headers = standin.request("POST", SEND .. "?access_token=any", "{}")
      assert.are.same({ 500, '{"errcode":1}', "application/json; charset=utf-8" },
        { status, body, headers["content-type"] })
    end)

    it("delay, then answer normally", function()
      standin.wrote("k", "u")
      local token = standin.token()
      standin.script(SEND, { delay = 0.2 })
      assert.are.same({ 200, ok_msgid("standin-msg-1") },
        { post(SEND, token, '{"touser":"u","open_kfid":"k","msgtype":"text","text":{"content":"late"}}') })
      assert.are.equal(1, #standin.delivered())
    end)

    it("delay until_released: held until POST /_standin/release, then answer normally", function()
      standin.wrote("k", "u")
      local token = standin.token()
      standin.script(SEND, { delay = 60, until_released = true })
      local body = '{"touser":"u","open_kfid":"k","msgtype":"text","text":{"content":"held"}}'
      local held = assert(socket.connect("127.0.0.1", tonumber(standin.url():match(":(%d+)$"))))
      held:settimeout(30)
      assert(held:send("POST " .. SEND .. "?access_token=" .. token .. " HTTP/1.0\r\nContent-Length: " .. #body
        .. "\r\n\r\n" .. body))
      local arrived = false
      for _ = 1, 600 do
        arrived = (standin.counts()[SEND] or 0) == 1
        if arrived then break end
        socket.sleep(0.05)
      end
      assert.is_true(arrived)
      assert.are.equal(0, #standin.delivered())
      assert.are.equal(1, standin.release())
      local answer = held:receive("*a")
      held:close()
      assert.are.equal("HTTP/1.1 200", answer:sub(1, 12))
      assert.are.equal(ok_msgid("standin-msg-1"), answer:match("\r\n\r\n(.*)$"))
      assert.are.equal(1, #standin.delivered())
      assert.are.equal(0, standin.release())
    end)

    it("close the connection without an answer", function()
      standin.script(GETTOKEN, { close = true })
      assert.are.same({ nil, "closed" }, { gettoken(query) })
      assert.are.equal(200, (gettoken(query)))
    end)

    it("truncate: announce a length, send half, close", function()
      standin.script(GETTOKEN, { truncate = true })
      assert.are.same({ nil, "closed" }, { gettoken(query) })
      standin.script(GETTOKEN, { truncate = true })
      local code, out = shell(format("curl -sS -o /dev/null -w '%%{http_code} %%{size_download}' '%s%s?%s'",
        standin.url(), GETTOKEN, query))
      assert.are.same({ 18, "curl: (18) transfer closed with 36 bytes remaining to read\n200 36" }, { code, out })
    end)

    it("huge: a 200 body of exactly that many bytes", function()
      standin.script(GETTOKEN, { huge = 1000000 })
      local status, body = gettoken(query)
      assert.are.same({ 200, 1000000 }, { status, #body })
      assert.are.equal('{"errcode":0,"errmsg":"ok","padding":"xxxx', body:sub(1, 42))
      assert.are.equal('xx"}', body:sub(-4))
      assert.are.same({ errcode = 0, errmsg = "ok" }, { errcode = cjson.decode(body).errcode,
        errmsg = cjson.decode(body).errmsg })
      standin.script(GETTOKEN, { huge = 10 })
      assert.are.same({ 200, "xxxxxxxxxx" }, { gettoken(query) })
    end)

    it("expire_token: tokens expire, then the normal answer is 42001", function()
      local token = standin.token()
      standin.script(SYNC, { expire_token = true })
      assert.are.same({ 200, err(42001, "access_token expired") }, { post(SYNC, token, "{}") })
      assert.are_not.equal(token, standin.token())
    end)

    it("apply to paths the stand-in does not serve", function()
      assert.are.same({ 404, "not found\n" }, { req("GET", "/nowhere") })
      standin.script("/nowhere", { errcode = 7, errmsg = "scripted" })
      assert.are.same({ 200, err(7, "scripted") }, { req("GET", "/nowhere") })
    end)

    it("are refused when malformed", function()
      local cases = {
        { '{"path":"/x","action":{"bogus":1}}', "action has an unknown key: bogus" },
        { '{"path":"/x","action":{"close":true,"errcode":1}}', "action has both errcode and close" },
        { '{"path":"/x","action":{}}',
          "action needs one of errcode, status, delay, close, truncate, huge, expire_token" },
        { '{"path":"/x","action":{"close":1}}', "close must be true" },
        { '{"path":"/x","action":{"status":99}}', "status must be an integer from 200 to 599" },
        { '{"path":"/x","action":{"delay":-1}}', "delay must be a number of seconds, 0 to 300" },
        { '{"path":"/x","action":{"until_released":true}}', "until_released must be true, with a delay" },
        { '{"path":"/x","action":{"delay":1,"until_released":1}}', "until_released must be true, with a delay" },
        { '{"path":"/x","count":0,"action":{"close":true}}', "count must be an integer >= 1, or -1 for every request" },
        { '{"path":"/_standin/reset","action":{"close":true}}',
          "path must be a path outside /_standin/, like /cgi-bin/kf/send_msg" },
        { '{"path":"/x","action":{"close":true},"when":1}', "unknown script key: when" },
        { "[]", "body must be a JSON object" },
      }
      for _, case in ipairs(cases) do
        local status, body = standin.request("POST", "/_standin/script", case[1])
        assert.are.same({ 400, { error = case[2] } }, { status, cjson.decode(body) })
      end
      assert.are.same({ 404, "not found\n" }, { req("GET", "/x") })
    end)
  end)

  describe("control API", function()
    it("records requests in order with method, path, args, raw query and raw body, but not its own calls", function()
      local token = standin.token()
      post(SEND, token, '{"a": [1, 2.50]}')
      standin.request("PUT", "/other?x=1&x=2&flag", "raw body")
      assert.are.same({
        { method = "GET", path = GETTOKEN, args = { corpid = "wwCORP", corpsecret = "KF_SECRET" }, body = "",
          query = "corpid=wwCORP&corpsecret=KF_SECRET" },
        { method = "POST", path = SEND, args = { access_token = token }, body = '{"a": [1, 2.50]}',
          query = "access_token=" .. token },
        { method = "PUT", path = "/other", args = { x = { "1", "2" }, flag = true }, body = "raw body",
          query = "x=1&x=2&flag" },
      }, standin.requests())
      local other = { method = "PUT", path = "/other", args = { x = { "1", "2" }, flag = true }, body = "raw body",
        query = "x=1&x=2&flag" }
      assert.are.same({ other }, standin.requests("/other"))
      assert.are.same({ { a = { 1, 2.5 } } }, standin.bodies(SEND))
      assert.are.same({ [GETTOKEN] = 1, [SEND] = 1, ["/other"] = 1 }, standin.counts())
    end)

    it("stops recording, but keeps counting, when record is false", function()
      standin.config({ record = false })
      standin.wrote("k", "u")
      local token = standin.token()
      assert.are.same({ 200, ok_msgid("standin-msg-1") },
        { post(SEND, token, '{"touser":"u","open_kfid":"k","msgtype":"text","text":{"content":"x"}}') })
      assert.are.same({ {}, {} }, { standin.requests(), standin.delivered() })
      assert.are.same({ [GETTOKEN] = 1, [SEND] = 1 }, standin.counts())
    end)

    it("answers empty lists after reset", function()
      standin.token()
      standin.reset()
      assert.are.same({ 200, "[]" }, { req("GET", "/_standin/requests") })
      assert.are.same({ 200, "{}" }, { req("GET", "/_standin/counts") })
      assert.are.same({ 200, "[]" }, { req("GET", "/_standin/delivered") })
      assert.are.same({ code_now = 0, expires_in = 7200, kf_secret_only = false, media_cut_after = -1,
        media_framing = "length", media_now = 0, media_strict = true, msgid_dedup = true, record = true,
        statistic_now = 0, window_strict = true },
        cjson.decode((select(2, standin.request("GET", "/_standin/config")))))
    end)

    it("refuses bad config, sync and unknown calls", function()
      local cases = {
        { "POST", "/_standin/config", '{"expires_in":-1}', 400, "expires_in must be an integer >= 0" },
        { "POST", "/_standin/config", '{"ttl":1}', 400, "unknown config key: ttl" },
        { "POST", "/_standin/sync", '{"messages":{}}', 400, "messages must be an array of objects" },
        { "POST", "/_standin/sync", '{"messages":[1]}', 400, "messages[1] must be an object" },
        { "POST", "/_standin/sync", '{"page_size":0}', 400, "page_size must be an integer >= 1" },
        { "POST", "/_standin/sync", '{"empty_pages":-1}', 400, "empty_pages must be an integer >= 0" },
        { "POST", "/_standin/customer_wrote", '{"external_userid":"wm1"}', 400,
          "open_kfid must be a non-empty string" },
        { "POST", "/_standin/customer_wrote", '{"open_kfid":"wk1","external_userid":[]}', 400,
          "external_userid must be a non-empty string or a non-empty list of them" },
        { "POST", "/_standin/customer_wrote", '{"open_kfid":"wk1","external_userid":["wm1",2]}', 400,
          "external_userid must be a non-empty string or a non-empty list of them" },
        { "POST", "/_standin/customer_wrote", '{"open_kfid":"wk1","external_userid":"wm1","send_time":1.5}', 400,
          "send_time must be an integer >= 0" },
        { "POST", "/_standin/customer_wrote", '{"open_kfid":"wk1","external_userid":"wm1","origin":3}', 400,
          "unknown customer_wrote key: origin" },
        { "GET", "/_standin/reset", nil, 405, "GET not allowed on /_standin/reset" },
        { "GET", "/_standin/nothing", nil, 404, "no such control call: /_standin/nothing" },
      }
      for _, case in ipairs(cases) do
        local status, body = standin.request(case[1], case[2], case[3])
        assert.are.same({ case[4], { error = case[5] } }, { status, cjson.decode(body) })
      end
      assert.are.same({}, standin.counts())
    end)
  end)

  describe("HTTPS", function()
    local function curl(args)
      return shell("curl -sS " .. args)
    end

    it("serves the same API with a certificate for 127.0.0.1 and localhost signed by cafile", function()
      local code, out = curl(format("--cacert '%s' '%s/cgi-bin/gettoken?corpid=wwCORP&corpsecret=NOPE'",
        standin.cafile(), standin.https_url()))
      assert.are.same({ 0, err(40001, "invalid secret") }, { code, out })
      local port = standin.https_url():match(":(%d+)$")
      code, out = curl(format("--cacert '%s' 'https://localhost:%s/cgi-bin/kf/sync_msg' -d '{}'",
        standin.cafile(), port))
      assert.are.same({ 0, err(41001, "access_token missing") }, { code, out })
      assert.are.same({ [GETTOKEN] = 1, [SYNC] = 1 }, standin.counts())
    end)

    it("is refused by a client that does not trust the CA", function()
      local code = curl(format("-o /dev/null '%s/_standin/ping'", standin.https_url()))
      assert.are.equal(60, code)
    end)
  end)
end)
