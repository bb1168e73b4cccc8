-- The stand-in's KF desk, straight over HTTP: what it refuses and with which WeCom code (the tables in
-- tools/wecom-standin/README.md), the session rules (standin/session.lua) and the control calls specs use.
local cjson = require "cjson"
local standin = require "helpers.standin"
local cases = require "helpers.kf_family_cases"
local work = require "wechat.work"

local KFID, TO = "wkKF01", "wmCUSTOMER01"

describe("wecom stand-in: the KF desk", function()
  local token

  setup(standin.start)

  before_each(function()
    standin.reset()
    token = standin.token()
    standin.kf_account{ open_kfid = KFID, servicers = { "zhangsan" } }
  end)

  -- errcode and errmsg of a call with a raw body (a table is JSON-encoded).
  local function call(path, body, method)
    if type(body) == "table" then
      body = cjson.encode(body)
    end
    local status, answer = standin.request(method or "POST", path .. "?access_token=" .. token, body)
    assert.equal(200, status, answer)
    return cjson.decode(answer)
  end

  -- errcode and errmsg only
  local function codes(path, body, method)
    local obj = call(path, body, method)
    return obj.errcode, obj.errmsg
  end

  local function refused(code, msg, path, body, method)
    assert.same({ code, msg }, { codes(path, body, method) })
  end

  local function send(to)
    return (codes("/cgi-bin/kf/send_msg", { touser = to or TO, open_kfid = KFID, msgtype = "text",
      text = { content = "hi" } }))
  end

  local function trans(to, servicer)
    return codes("/cgi-bin/kf/service_state/trans", { open_kfid = KFID, external_userid = TO, service_state = to,
      servicer_userid = servicer })
  end

  -- the media_id of an upload through wechat.work.material
  local function upload(media_type, filename, data)
    local client = work.client{ corp_id = standin.CORPID, agents = { kf = { secret = standin.KF_SECRET } },
      base_url = standin.url(), timeout = 5 }
    local up = assert(require("wechat.work.material").upload_data(client, "kf", media_type, filename, data))
    client:close()
    return up.media_id
  end

  describe("accounts", function()
    local ADD, UPDATE = "/cgi-bin/kf/account/add", "/cgi-bin/kf/account/update"

    it("refuses bad add bodies", function()
      local avatar = upload("image", "a.png", cases.AVATAR_PNG)
      refused(47001, "data format error", ADD, "[]")
      refused(40058, "name missing", ADD, { media_id = avatar })
      refused(95006, "invalid kf account name", ADD, { name = ("客"):rep(17), media_id = avatar })
      refused(95006, "invalid kf account name", ADD, { name = 5, media_id = avatar })
      refused(41006, "media_id missing", ADD, { name = "n" })
      refused(40007, "invalid media_id", ADD, { name = "n", media_id = ("m"):rep(129) })
      assert.equal(0, (codes(ADD, { name = ("客"):rep(16), media_id = avatar })))
    end)

    it("holds at most 5000 accounts (95005), seeded ones too; a deleted one makes room", function()
      standin.config{ record = false }
      local avatar = upload("image", "a.png", cases.AVATAR_PNG)
      local client = work.client{ corp_id = standin.CORPID, agents = { kf = { secret = standin.KF_SECRET } },
        base_url = standin.url(), timeout = 5 }
      local account = require "wechat.work.kf.account"
      local added = 1 -- KFID, seeded
      local got, err
      repeat
        got, err = account.add(client, "kf", "n", avatar)
        added = added + (got and 1 or 0)
      until not got or added > 5000
      client:close()
      assert.same({ 5000, 95005 }, { added, err and err.errcode })
      refused(95005, "kf account count exceeds limit", ADD, { name = "n", media_id = avatar })
      assert.equal(0, (codes("/cgi-bin/kf/account/del", { open_kfid = KFID })))
      assert.equal(0, (codes(ADD, { name = "n", media_id = avatar })))
      refused(95005, "kf account count exceeds limit", ADD, { name = "n", media_id = avatar })
    end)

    it("takes as avatar only the media_id of an image it issued (40007 for another), on add and update", function()
      local file = upload("file", "a.bin", "not an image")
      for _, id in ipairs{ "MEDIA_M", file } do
        refused(40007, "invalid media_id", ADD, { name = "n", media_id = id })
        refused(40007, "invalid media_id", UPDATE, { open_kfid = KFID, media_id = id })
        refused(40007, "invalid media_id", UPDATE, { open_kfid = KFID, name = "新", media_id = id })
      end
      assert.same({ { open_kfid = KFID, name = "standin", avatar = "https://wework.qpic.cn/standin/",
        manage_privilege = true } }, call("/cgi-bin/kf/account/list", {}).account_list)
      local avatar = upload("image", "a.png", cases.AVATAR_PNG)
      assert.equal(0, (codes(UPDATE, { open_kfid = KFID, media_id = avatar })))
      assert.equal("https://wework.qpic.cn/standin/" .. avatar,
        call("/cgi-bin/kf/account/list", {}).account_list[1].avatar)
    end)

    it("deletes, updates and lists only accounts that exist", function()
      refused(95004, "open_kfid not exist", "/cgi-bin/kf/account/del", { open_kfid = "wkNONE" })
      refused(95000, "open_kfid missing", "/cgi-bin/kf/account/update", { name = "n" })
      refused(40058, "name and media_id missing", "/cgi-bin/kf/account/update", { open_kfid = KFID })
      refused(40058, "invalid limit", "/cgi-bin/kf/account/list", { limit = 101 })
      refused(40058, "invalid offset", "/cgi-bin/kf/account/list", { offset = -1 })
      assert.equal(0, (codes("/cgi-bin/kf/account/update", { open_kfid = KFID, name = "新" })))
      local list = call("/cgi-bin/kf/account/list", {})
      assert.same({ { open_kfid = KFID, name = "新", avatar = "https://wework.qpic.cn/standin/",
        manage_privilege = true } }, list.account_list)
      assert.equal(0, (codes("/cgi-bin/kf/account/del", { open_kfid = KFID })))
      list = call("/cgi-bin/kf/account/list", {})
      assert.same({}, list.account_list)
      refused(95004, "open_kfid not exist", "/cgi-bin/kf/add_contact_way", { open_kfid = KFID })
    end)

    it("refuses a scene that is too long or has other characters", function()
      refused(40058, "invalid scene", "/cgi-bin/kf/add_contact_way", { open_kfid = KFID, scene = ("s"):rep(33) })
      refused(40058, "invalid scene", "/cgi-bin/kf/add_contact_way", { open_kfid = KFID, scene = "a/b" })
    end)
  end)

  describe("media ids in messages", function()
    local function send_media(msg)
      msg.touser, msg.open_kfid = TO, KFID
      return codes("/cgi-bin/kf/send_msg", msg)
    end
    local function image(id)
      return send_media{ msgtype = "image", image = { media_id = id } }
    end
    local function link(id)
      return send_media{ msgtype = "link", link = { title = "t", url = "https://example.com/", thumb_media_id = id } }
    end

    before_each(function()
      standin.wrote(KFID, TO)
      standin.set_session{ open_kfid = KFID, external_userid = TO, service_state = 1 }
    end)

    it("takes only a media_id it issued (40007 for any other, as WeCom); config media_strict false takes any",
      function()
        assert.same({ 40007, "invalid media_id" }, { image("MEDIA_M") })
        assert.same({ 40007, "invalid media_id" }, { link("THUMB_M") })
        assert.same({ 40007, "invalid media_id" }, { send_media{ msgtype = "video", video = { media_id = "V" } } })
        local id = upload("image", "a.png", cases.AVATAR_PNG)
        assert.same({ 0, 0 }, { (image(id)), (link(id)) })
        standin.config{ media_strict = false }
        assert.same({ 0, 0 }, { (image("MEDIA_M")), (link("THUMB_M")) })
        assert.equal(4, #standin.delivered())
      end)

    -- an upload of each type
    local function one_of_each()
      return {
        image = upload("image", "a.png", cases.AVATAR_PNG),
        voice = upload("voice", "a.amr", "#!AMR\n" .. ("v"):rep(32)),
        video = upload("video", "a.mp4", "\0\0\0\24ftypmp42" .. ("m"):rep(32)),
        file = upload("file", "a.txt", "a file of text"),
      }
    end

    it("takes a media_id only in a message of its type (40007)", function()
      local ids = one_of_each()
      local sent = 0
      for want in pairs(ids) do
        for got, id in pairs(ids) do
          local code, msg = send_media{ msgtype = want, [want] = { media_id = id } }
          if got == want then
            assert.equal(0, code, want)
            sent = sent + 1
          else
            assert.same({ 40007, "invalid media_id" }, { code, msg }, want .. " with the media_id of a " .. got)
          end
        end
      end
      assert.same({ 4, 4 }, { sent, #standin.delivered() })
    end)

    it("takes only an image's media_id as a thumb (40007)", function()
      local ids = one_of_each()
      for got, id in pairs(ids) do
        local expected = got == "image" and { 0, 0 } or { 40007, 40007 }
        assert.same(expected, { (link(id)), (send_media{ msgtype = "miniprogram", miniprogram = { appid = "wx1",
          thumb_media_id = id, pagepath = "p" } }) }, "thumbs of a " .. got)
      end
      assert.equal(2, #standin.delivered())
    end)
  end)

  describe("servicers", function()
    it("refuses empty, overlong and mistyped id lists", function()
      local many = {}
      for i = 1, 101 do
        many[i] = "u" .. i
      end
      local ADD = "/cgi-bin/kf/servicer/add"
      refused(40058, "userid_list and department_id_list empty", ADD, { open_kfid = KFID })
      refused(40058, "userid_list and department_id_list empty", ADD, '{"open_kfid":"wkKF01","userid_list":[]}')
      refused(40058, "invalid userid_list", ADD, { open_kfid = KFID, userid_list = many })
      refused(40058, "invalid userid_list", ADD, '{"open_kfid":"wkKF01","userid_list":{"a":"b"}}')
      refused(40058, "invalid department_id_list", ADD, { open_kfid = KFID, department_id_list = { 1.5 } })
      refused(95004, "open_kfid not exist", ADD, { open_kfid = "wkNONE", userid_list = { "a" } })
    end)

    it("adds only members and departments in the app's visible range (60011 for the others)", function()
      local function add()
        return call("/cgi-bin/kf/servicer/add", { open_kfid = KFID, userid_list = { "wangwu", "zhaoliu" },
          department_id_list = { 2, 3 } }).result_list
      end
      local NOT_VISIBLE = "not in the app's visible range"
      assert.same({
        { userid = "wangwu", errcode = 60011, errmsg = NOT_VISIBLE },
        { userid = "zhaoliu", errcode = 60011, errmsg = NOT_VISIBLE },
        { department_id = 2, errcode = 60011, errmsg = NOT_VISIBLE },
        { department_id = 3, errcode = 60011, errmsg = NOT_VISIBLE },
      }, add())
      standin.visible_range{ userid_list = { "wangwu" }, department_id_list = { 3 } }
      assert.same({
        { userid = "wangwu", errcode = 0, errmsg = "success" },
        { userid = "zhaoliu", errcode = 60011, errmsg = NOT_VISIBLE },
        { department_id = 2, errcode = 60011, errmsg = NOT_VISIBLE },
        { department_id = 3, errcode = 0, errmsg = "success" },
      }, add())
      local _, listed = standin.request("GET", "/cgi-bin/kf/servicer/list?access_token=" .. token
        .. "&open_kfid=" .. KFID)
      assert.same({ { userid = "zhangsan", status = 0 }, { userid = "wangwu", status = 0 }, { department_id = 3 } },
        cjson.decode(listed).servicer_list)
      local status, body = standin.request("POST", "/_standin/visible_range", '{"userid_list":[1]}')
      assert.same({ 400, { error = "userid_list must be a list of strings" } }, { status, cjson.decode(body) })
    end)

    it("answers list to GET only", function()
      refused(43001, "require GET method", "/cgi-bin/kf/servicer/list", "{}")
      local status, body = standin.request("GET", "/cgi-bin/kf/servicer/list?access_token=" .. token)
      assert.same({ 200, { errcode = 95000, errmsg = "open_kfid missing" } }, { status, cjson.decode(body) })
    end)
  end)

  describe("sessions", function()
    it("answers 4 (not started) for a customer it never saw", function()
      local got = call("/cgi-bin/kf/service_state/get", { open_kfid = KFID, external_userid = "wmNEW" })
      assert.same({ 4, "" }, { got.service_state, got.servicer_userid })
    end)

    it("lets the API send in states 0 and 1 only; 2, 3 and 4 answer 95018", function()
      standin.wrote(KFID, TO)
      for s = 0, 4 do
        standin.set_session{ open_kfid = KFID, external_userid = TO, service_state = s,
          servicer_userid = s == 3 and "zhangsan" or nil }
        assert.equal(s <= 1 and 0 or 95018, send(), "state " .. s)
      end
    end)

    it("moves only as WeCom's table allows (95016), and to a human only to a servicer (95014)", function()
      local MOVES = { [0] = { 1, 2, 3 }, [1] = { 2, 3 }, [2] = { 3 }, [3] = { 3, 4 }, [4] = {} }
      for from = 0, 4 do
        for to = 0, 4 do
          standin.set_session{ open_kfid = KFID, external_userid = TO, service_state = from,
            servicer_userid = from == 3 and "lisi" or nil }
          local allowed = false
          for _, t in ipairs(MOVES[from]) do
            allowed = allowed or t == to
          end
          local code = trans(to, to == 3 and "zhangsan" or nil)
          assert.equal(allowed and 0 or 95016, code, from .. " -> " .. to)
        end
      end
      standin.set_session{ open_kfid = KFID, external_userid = TO, service_state = 1 }
      assert.same({ 95014, "user is not servicer" }, { trans(3, "stranger") })
      assert.same({ 40058, "servicer_userid missing" }, { trans(3) })
      assert.same({ 40058, "servicer_userid only with service_state 3" }, { trans(2, "zhangsan") })
      assert.same({ 40058, "invalid service_state" }, { trans(5) })
      refused(40096, "external_userid missing", "/cgi-bin/kf/service_state/trans", { open_kfid = KFID })
    end)

    it("moves nothing for a customer it never heard of: that session is 4, as service_state/get says", function()
      local got = call("/cgi-bin/kf/service_state/get", { open_kfid = KFID, external_userid = TO })
      assert.same({ 4, "" }, { got.service_state, got.servicer_userid })
      for to = 0, 4 do
        refused(95016, ("invalid service state transition 4 -> %d"):format(to), "/cgi-bin/kf/service_state/trans",
          { open_kfid = KFID, external_userid = TO, service_state = to,
            servicer_userid = to == 3 and "zhangsan" or nil })
      end
      assert.same({}, { standin.session(KFID, TO) })
    end)

    it("gives a msg_code on the first move to 2, 3 or 4, usable while the session stays there", function()
      standin.set_session{ open_kfid = KFID, external_userid = TO, service_state = 0 }
      local function move(to, servicer)
        return call("/cgi-bin/kf/service_state/trans", { open_kfid = KFID, external_userid = TO, service_state = to,
          servicer_userid = servicer })
      end
      local queued = move(2)
      assert.equal("standin-msg-code-1", queued.msg_code)
      local human = move(3, "zhangsan")
      assert.equal("standin-msg-code-2", human.msg_code)
      local EVENT = "/cgi-bin/kf/send_msg_on_event"
      refused(95018, "send msg session status invalid", EVENT,
        { code = queued.msg_code, msgtype = "text", text = { content = "排队中" } })
      assert.equal(0, (codes(EVENT, { code = human.msg_code, msgtype = "text", text = { content = "人工" } })))
      refused(95018, "code already used", EVENT, { code = human.msg_code, msgtype = "text", text = { content = "x" } })
      standin.kf_account{ open_kfid = KFID, servicers = { "lisi" } }
      local handed = move(3, "lisi")
      assert.is_nil(handed.msg_code)
    end)

    it("takes only text with a queue or pick-up msg_code (40008), text or a menu with a closing one", function()
      standin.set_session{ open_kfid = KFID, external_userid = TO, service_state = 0 }
      local EVENT = "/cgi-bin/kf/send_msg_on_event"
      local function move(to, servicer)
        return call("/cgi-bin/kf/service_state/trans", { open_kfid = KFID, external_userid = TO, service_state = to,
          servicer_userid = servicer }).msg_code
      end
      local function menu(code)
        return codes(EVENT, { code = code, msgtype = "msgmenu", msgmenu = { head_content = "满意吗" } })
      end
      local function text(code)
        return codes(EVENT, { code = code, msgtype = "text", text = { content = "请稍候" } })
      end
      local queued = move(2)
      assert.same({ 40008, "invalid msgtype" }, { menu(queued) })
      assert.equal(0, (text(queued)))
      local human = move(3, "zhangsan")
      assert.same({ 40008, "invalid msgtype" }, { menu(human) })
      assert.equal(0, (text(human)))
      assert.equal(0, (menu(move(4))))
      assert.equal(3, #standin.delivered())
    end)

    it("starts an untreated session when a customer writes, also after one ended", function()
      standin.set_session{ open_kfid = KFID, external_userid = TO, service_state = 4 }
      assert.equal(95018, send())
      standin.sync{ messages = { { open_kfid = KFID, external_userid = TO, msgtype = "text",
        text = { content = "在吗" } } } }
      assert.same({ 0, "" }, { standin.session(KFID, TO) })
      assert.equal(0, send())
    end)

    it("hands a session only to a servicer who is receiving (95019 when stopped or suspended)", function()
      local LIST = "/cgi-bin/kf/servicer/list"
      local function list()
        local status, body = standin.request("GET", LIST .. "?access_token=" .. token .. "&open_kfid=" .. KFID)
        assert.equal(200, status)
        return cjson.decode(body).servicer_list
      end
      standin.set_session{ open_kfid = KFID, external_userid = TO, service_state = 1 }
      standin.servicer_status("zhangsan", 1, 1)
      assert.same({ { userid = "zhangsan", status = 1, stop_type = 1 } }, list())
      assert.same({ 95019, "servicer has stopped receiving or is suspended" }, { trans(3, "zhangsan") })
      standin.servicer_status("zhangsan", 1)
      assert.same({ { userid = "zhangsan", status = 1, stop_type = 0 } }, list())
      assert.same({ 95019, "servicer has stopped receiving or is suspended" }, { trans(3, "zhangsan") })
      assert.same({ 1, "" }, { standin.session(KFID, TO) })
      standin.servicer_status("zhangsan", 0)
      assert.same({ { userid = "zhangsan", status = 0 } }, list())
      assert.equal(0, trans(3, "zhangsan"))
      for _, c in ipairs{
        { { userid = "zhangsan", status = 2 }, "status must be 0 (receiving) or 1 (stopped)" },
        { { userid = "zhangsan", status = 0, stop_type = 1 }, "stop_type must be 0 or 1, and only with status 1" },
        { { status = 0 }, "userid must be a non-empty string" },
        { { userid = "zhangsan", status = 0, x = 1 }, "unknown servicer_status key: x" },
      } do
        local status, body = standin.request("POST", "/_standin/servicer_status", cjson.encode(c[1]))
        assert.same({ 400, { error = c[2] } }, { status, cjson.decode(body) })
      end
    end)

    it("ends a session 48 hours after the customer's last message, whatever its state", function()
      local function wrote(user, ago)
        standin.sync{ messages = { { open_kfid = KFID, external_userid = user, send_time = os.time() - ago,
          msgtype = "text", text = { content = "在吗" } } } }
      end
      local function get(user)
        local got = call("/cgi-bin/kf/service_state/get", { open_kfid = KFID, external_userid = user })
        return got.service_state, got.servicer_userid
      end
      wrote(TO, 48 * 3600)
      assert.same({ 4, "" }, { get(TO) })
      assert.same({ 4, "" }, { standin.session(KFID, TO) })
      assert.same({ 95016, "invalid service state transition 4 -> 1" }, { trans(1) })
      wrote(TO, 60) -- a newer message starts a new session
      assert.same({ 0, "" }, { get(TO) })
      assert.equal(0, trans(3, "zhangsan"))
      assert.same({ 3, "zhangsan" }, { get(TO) })
      -- a human's session ends too
      standin.set_session{ open_kfid = KFID, external_userid = "wmOLD", service_state = 3,
        servicer_userid = "zhangsan" }
      assert.same({ 3, "zhangsan" }, { get("wmOLD") })
      wrote("wmOLD", 48 * 3600 + 1)
      assert.same({ 4, "" }, { get("wmOLD") })
    end)

    it("refuses bad control calls", function()
      for _, c in ipairs{
        { { open_kfid = KFID, external_userid = TO, service_state = 3 },
          "servicer_userid must be given exactly when service_state is 3" },
        { { open_kfid = KFID, external_userid = TO, service_state = 5 },
          "service_state must be an integer from 0 to 4" },
        { { open_kfid = KFID, service_state = 1 }, "open_kfid and external_userid must be non-empty strings" },
        { { open_kfid = KFID, external_userid = TO, service_state = 1, x = 1 }, "unknown session key: x" },
      } do
        local status, body = standin.request("POST", "/_standin/session", cjson.encode(c[1]))
        assert.same({ 400, { error = c[2] } }, { status, cjson.decode(body) })
      end
    end)
  end)

  describe("customers and upgrade service", function()
    local function wrote(user, ago, kfid)
      standin.sync{ messages = { { open_kfid = kfid or KFID, external_userid = user,
        send_time = os.time() - (ago or 0), msgtype = "text", text = { content = "在吗" } } } }
    end

    before_each(function()
      wrote(TO)
      standin.set_session{ open_kfid = KFID, external_userid = TO, service_state = 1 }
      standin.upgrade_config{ userid_list = { "zhangsan" }, chat_id_list = { "wrCHAT" } }
    end)

    it("refuses bad batchget bodies", function()
      local many = {}
      for i = 1, 101 do
        many[i] = "wm" .. i
      end
      local GET = "/cgi-bin/kf/customer/batchget"
      refused(40058, "invalid external_userid_list", GET, '{"external_userid_list":[]}')
      refused(40058, "invalid external_userid_list", GET, { external_userid_list = many })
      refused(40058, "invalid need_enter_session_context", GET,
        { external_userid_list = { TO }, need_enter_session_context = 2 })
    end)

    it("knows only customers who wrote within 48 hours: batchget lists the others as invalid", function()
      wrote("wmOLD", 48 * 3600)
      wrote("wmELSEWHERE", 60, "wkOTHER")
      standin.set_session{ open_kfid = KFID, external_userid = "wmSET", service_state = 1 }
      local got = call("/cgi-bin/kf/customer/batchget",
        { external_userid_list = { TO, "wmOLD", "wmELSEWHERE", "wmSET" } })
      local listed = {}
      for i, c in ipairs(got.customer_list) do
        listed[i] = c.external_userid
      end
      assert.same({ { TO, "wmELSEWHERE" }, { "wmOLD", "wmSET" } }, { listed, got.invalid_external_userid })
    end)

    it("upgrades only a customer who wrote to the account within 48 hours (40096 otherwise)", function()
      local UP = "/cgi-bin/kf/customer/upgrade_service"
      local function up(user)
        return { open_kfid = KFID, external_userid = user, type = 1, member = { userid = "zhangsan" } }
      end
      wrote("wmOLD", 48 * 3600)
      wrote("wmELSEWHERE", 60, "wkOTHER")
      standin.set_session{ open_kfid = KFID, external_userid = "wmSET", service_state = 1 }
      for _, user in ipairs{ "wmOLD", "wmELSEWHERE", "wmSET" } do
        refused(40096, "invalid external userid", UP, up(user))
      end
      assert.equal(0, (codes(UP, up(TO))))
    end)

    it("upgrades only to a member or group chat of the configuration; cancels only for a recent customer", function()
      local UP = "/cgi-bin/kf/customer/upgrade_service"
      local base = { open_kfid = KFID, external_userid = TO }
      local function with(t)
        local out = { open_kfid = KFID, external_userid = TO }
        for k, v in pairs(t) do
          out[k] = v
        end
        return out
      end
      refused(40058, "invalid type", UP, with{ type = 3 })
      refused(40058, "member missing", UP, with{ type = 1, groupchat = { chat_id = "wrCHAT" } })
      refused(40058, "member.userid missing", UP, with{ type = 1, member = { wording = "w" } })
      refused(40058, "invalid member.wording", UP, with{ type = 1, member = { userid = "zhangsan",
        wording = ("w"):rep(129) } })
      refused(40058, "invalid groupchat.wording", UP, with{ type = 2, groupchat = { chat_id = "wrCHAT", wording = 5 } })
      assert.equal(0, (codes(UP, with{ type = 1, member = { userid = "zhangsan", wording = ("w"):rep(128) } })))
      refused(40058, "member.userid not in the upgrade service range", UP, with{ type = 1, member = { userid = "x" } })
      refused(40058, "groupchat.chat_id not in the upgrade service range", UP,
        with{ type = 2, groupchat = { chat_id = "wrOTHER" } })
      refused(40096, "invalid external userid", UP, { open_kfid = KFID, external_userid = "wmNOBODY", type = 1,
        member = { userid = "zhangsan" } })
      assert.equal(0, (codes("/cgi-bin/kf/customer/cancel_upgrade_service", base)))
      wrote("wmOLD", 48 * 3600)
      for _, user in ipairs{ "wmNOBODY", "wmOLD" } do
        refused(40096, "invalid external userid", "/cgi-bin/kf/customer/cancel_upgrade_service",
          { open_kfid = KFID, external_userid = user })
      end
      refused(43001, "require GET method", "/cgi-bin/kf/customer/get_upgrade_service_config", "{}")
    end)
  end)

  describe("statistics", function()
    local DAY = 86400
    -- a fixed today, told to the stand-in: nothing moves when the run crosses midnight in China
    local today = cases.TODAY

    it("takes a closed range of at most 31 days, from yesterday back to 180 days", function()
      standin.config{ statistic_now = cases.NOW }
      local CORP = "/cgi-bin/kf/get_corp_statistic"
      local function range(from, to)
        return { open_kfid = KFID, start_time = from, end_time = to }
      end
      refused(40058, "invalid time range", CORP, range(today - 2 * DAY, today - 3 * DAY))
      refused(40058, "invalid time range", CORP, range(today - 40 * DAY, today - 8 * DAY))
      refused(40058, "invalid time range", CORP, range(today - DAY, today))
      refused(40058, "invalid time range", CORP, range(today - 181 * DAY, today - 170 * DAY))
      refused(40058, "invalid start_time or end_time", CORP, { open_kfid = KFID, start_time = 1 })
      refused(95004, "open_kfid not exist", CORP, { open_kfid = "wkNONE", start_time = today - DAY,
        end_time = today - DAY })
      -- a closed range of days: 32 days from midnight to midnight, or from 23:59 of the first day, are too many
      refused(40058, "invalid time range", CORP, range(today - 32 * DAY, today - DAY))
      refused(40058, "invalid time range", CORP, range(today - 31 * DAY - 60, today - DAY))
      local got = call(CORP, range(today - 31 * DAY, today - DAY + DAY - 1))
      assert.equal(31, #got.statistic_list)
      refused(95014, "user is not servicer", "/cgi-bin/kf/get_servicer_statistic",
        { open_kfid = KFID, servicer_userid = "stranger", start_time = today - DAY, end_time = today - DAY })
    end)
  end)
end)
