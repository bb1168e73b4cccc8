-- wechat.work.kf.account, servicer, service_state, customer and statistic under Lua 5.4 and LuaJIT (curl
-- transport): the exact request the stand-in receives and the exact answer, every argument error at the caller's
-- line, and which calls go again after a failure whose outcome is unknown. The same cases run inside nginx in
-- spec/openresty/kf_family_spec.lua.
local standin = require "helpers.standin"
local cases = require "helpers.kf_family_cases"
local work = require "wechat.work"

local unpack = table.unpack or unpack -- luacheck: ignore 143

local kf = cases.modules()
local message = require "wechat.work.kf.message"

describe("the KF desk over libcurl", function()
  local client

  setup(standin.start)

  before_each(function()
    standin.reset()
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
    it(c.name .. " sends the documented request", function()
      c.setup(standin)
      local avatar = c.avatar and assert(cases.upload_avatar(client)).media_id
      local res, err = kf[c.module][c.op](client, cases.AGENT, cases.args(c, avatar))
      assert.is_nil(err)
      assert.same(c.result, res)
      local sent = standin.requests(c.path)
      assert.equal(1, #sent)
      assert.equal(c.method, sent[1].method)
      if c.body then
        assert.equal(cases.body(c, avatar), sent[1].body)
      else
        assert.equal("", sent[1].body)
        local token = sent[1].query:match("^access_token=(ST%x+)")
        assert.truthy(token, sent[1].query)
        assert.equal("access_token=" .. token .. (c.query ~= "" and "&" .. c.query or ""), sent[1].query)
      end
    end)
  end

  it("has named session states and the alias batchget", function()
    assert.same({ 0, 1, 2, 3, 4 }, { kf.service_state.UNTREATED, kf.service_state.ASSISTANT, kf.service_state.QUEUE,
      kf.service_state.HUMAN, kf.service_state.ENDED })
    assert.equal(kf.customer.get_customer_info, kf.customer.batchget)
  end)

  describe("a session handed to a human", function()
    before_each(function()
      standin.kf_account{ open_kfid = cases.KFID, servicers = { cases.SERVICER } }
      standin.wrote(cases.KFID, cases.TO)
      standin.set_session{ open_kfid = cases.KFID, external_userid = cases.TO, service_state = 1 }
    end)

    it("refuses API messages with 95018 and the msg_code answers once", function()
      assert.truthy(message.send_text(client, cases.AGENT, cases.TO, cases.KFID, "bot here"))
      local res = assert(kf.service_state.trans(client, cases.AGENT, cases.KFID, cases.TO, kf.service_state.HUMAN,
        cases.SERVICER))
      assert.same({ 3, cases.SERVICER }, { standin.session(cases.KFID, cases.TO) })
      local _, err = message.send_text(client, cases.AGENT, cases.TO, cases.KFID, "still the bot?")
      assert.same({ "api", 95018 }, { err.kind, err.errcode })
      assert.truthy(message.send_text_on_event(client, cases.AGENT, res.msg_code, "转人工了，请稍候"))
      _, err = message.send_text_on_event(client, cases.AGENT, res.msg_code, "again")
      assert.equal(95018, err.errcode)
      assert.equal(2, #standin.delivered())
    end)

    it("gives back the session to the API only after the customer writes again", function()
      assert.truthy(kf.service_state.trans(client, cases.AGENT, cases.KFID, cases.TO, 3, cases.SERVICER))
      local ended = assert(kf.service_state.trans(client, cases.AGENT, cases.KFID, cases.TO, kf.service_state.ENDED))
      assert.equal("standin-msg-code-2", ended.msg_code)
      local _, err = kf.service_state.trans(client, cases.AGENT, cases.KFID, cases.TO, 1)
      assert.equal(95016, err.errcode)
      standin.sync{ messages = { { open_kfid = cases.KFID, external_userid = cases.TO, msgtype = "text",
        text = { content = "还在吗" } } } }
      assert.same({ service_state = 0, servicer_userid = "", errcode = 0, errmsg = "ok" },
        kf.service_state.get(client, cases.AGENT, cases.KFID, cases.TO))
      assert.truthy(message.send_text(client, cases.AGENT, cases.TO, cases.KFID, "我在"))
    end)

    it("refuses a servicer the account does not have (95014)", function()
      local _, err = kf.service_state.trans(client, cases.AGENT, cases.KFID, cases.TO, 3, "stranger")
      assert.same({ "api", 95014 }, { err.kind, err.errcode })
      assert.same({ 1, "" }, { standin.session(cases.KFID, cases.TO) })
    end)
  end)

  -- A connection closed without an answer, on a new connection (libcurl resends by itself only on a reused one):
  -- each call gets a client of its own whose token is already in the store.
  describe("after a failure whose outcome is unknown", function()
    local store

    before_each(function()
      standin.kf_account{ open_kfid = cases.KFID, servicers = { cases.SERVICER } }
      store = require("wechat.work.store.memory").new()
      local warm = work.client{ corp_id = standin.CORPID, agents = { [cases.AGENT] = { secret = standin.KF_SECRET } },
        base_url = standin.url(), token_store = store }
      assert(warm:token(cases.AGENT))
      warm:close()
    end)

    local function cold(c)
      local fresh = work.client{ corp_id = standin.CORPID, agents = { [cases.AGENT] = { secret = standin.KF_SECRET } },
        base_url = standin.url(), token_store = store, timeout = 5 }
      standin.script(c[1], { close = true })
      local res, err = c[2](fresh, cases.AGENT, unpack(c, 3))
      fresh:close()
      return res, err
    end

    it("does not send add, trans or upgrade_service again", function()
      for _, c in ipairs{
        { "/cgi-bin/kf/account/add", kf.account.add, "名", "M" },
        { "/cgi-bin/kf/service_state/trans", kf.service_state.trans, cases.KFID, cases.TO, 1 },
        { "/cgi-bin/kf/customer/upgrade_service", kf.customer.upgrade_service, cases.KFID, cases.TO, 2,
          { chat_id = "wrCHAT" } },
        { "/cgi-bin/kf/servicer/add", kf.servicer.add, cases.KFID, { userid_list = { "u" } } },
        { "/cgi-bin/kf/add_contact_way", kf.account.add_contact_way, cases.KFID },
      } do
        local res, err = cold(c)
        assert.is_nil(res)
        assert.same({ "transport", "recv", 1 }, { err.kind, err.reason, standin.counts()[c[1]] })
      end
    end)

    it("sends reads and deletes again", function()
      for _, c in ipairs{
        { "/cgi-bin/kf/servicer/list", kf.servicer.list, cases.KFID },
        { "/cgi-bin/kf/service_state/get", kf.service_state.get, cases.KFID, cases.TO },
        { "/cgi-bin/kf/account/list", kf.account.list },
        { "/cgi-bin/kf/servicer/del", kf.servicer.delete, cases.KFID, { userid_list = { cases.SERVICER } } },
        { "/cgi-bin/kf/account/del", kf.account.delete, cases.KFID },
      } do
        local res, err = cold(c)
        assert.is_nil(err)
        assert.same({ 0, 2 }, { res.errcode, standin.counts()[c[1]] })
      end
    end)
  end)

  -- Every argument error, raised before anything is sent, at the caller's line.
  describe("raises exactly, at the caller's line", function()
    local SRC = debug.getinfo(1, "S").short_src
    local K, U = cases.KFID, cases.TO
    local MANY = {}
    for i = 1, 101 do
      MANY[i] = "u" .. i
    end
    local Q = function(extra)
      local q = { open_kfid = K, start_time = 86400, end_time = 2 * 86400 }
      for k, v in pairs(extra) do
        q[k] = v
      end
      return q
    end
    local ERRORS = {
      { "account", "add", { nil, "m" }, "bad argument #3 to 'add' (string expected, got nil)" },
      { "account", "add", { "", "m" }, "bad argument #3 to 'add' (name: must not be empty)" },
      { "account", "add", { ("客"):rep(17), "m" }, "bad argument #3 to 'add' (name: at most 16 characters, got 17)" },
      { "account", "add", { "a\xC0\xAF", "m" }, "bad argument #3 to 'add' (name: invalid UTF-8 at byte 2)" },
      { "account", "add", { "n", nil }, "bad argument #4 to 'add' (string expected, got nil)" },
      { "account", "add", { "n", ("m"):rep(129) }, "bad argument #4 to 'add' (media_id: at most 128 bytes, got 129)" },
      { "account", "delete", { 5 }, "bad argument #3 to 'delete' (string expected, got number)" },
      { "account", "delete", { ("k"):rep(65) }, "bad argument #3 to 'delete' (open_kfid: at most 64 bytes, got 65)" },
      { "account", "update", { K, nil }, "bad argument #4 to 'update' (table expected, got nil)" },
      { "account", "update", { K, {} }, "bad argument #4 to 'update' (fields: name or media_id expected)" },
      { "account", "update", { K, { avatar = "x" } }, "bad argument #4 to 'update' (fields: unknown key 'avatar')" },
      { "account", "update", { K, { name = 5 } },
        "bad argument #4 to 'update' (fields.name: string expected, got number)" },
      { "account", "list", { "x" }, "bad argument #3 to 'list' (table expected, got string)" },
      { "account", "list", { { limit = 101 } },
        "bad argument #3 to 'list' (opts.limit: must be between 1 and 100, got 101)" },
      { "account", "list", { { limit = 0 } },
        "bad argument #3 to 'list' (opts.limit: must be between 1 and 100, got 0)" },
      { "account", "list", { { offset = -1 } },
        "bad argument #3 to 'list' (opts.offset: must be between 0 and 4294967295, got -1)" },
      { "account", "list", { { offset = 0.5 } }, "bad argument #3 to 'list' (opts.offset: integer expected, got 0.5)" },
      { "account", "list", { { limit = 0 / 0 } }, "bad argument #3 to 'list' (opts.limit: NaN not allowed)" },
      { "account", "add_contact_way", { K, "a b" },
        "bad argument #4 to 'add_contact_way' (scene: only [0-9a-zA-Z_-] allowed)" },
      { "account", "add_contact_way", { K, ("s"):rep(33) },
        "bad argument #4 to 'add_contact_way' (scene: at most 32 bytes, got 33)" },
      { "account", "add_contact_way", { K, "" }, "bad argument #4 to 'add_contact_way' (scene: must not be empty)" },
      { "servicer", "add", { K, {} }, "bad argument #4 to 'add' (servicers: a userid or a department id expected)" },
      { "servicer", "add", { K, { userid_list = MANY } },
        "bad argument #4 to 'add' (servicers.userid_list: at most 100 items, got 101)" },
      { "servicer", "add", { K, { userid_list = { "a", "" } } },
        "bad argument #4 to 'add' (servicers.userid_list[2]: must not be empty)" },
      { "servicer", "delete", { K, { department_id_list = { 1, "2" } } },
        "bad argument #4 to 'delete' (servicers.department_id_list[2]: number expected, got string)" },
      { "servicer", "delete", { K, { department_id_list = { n = 1 } } },
        "bad argument #4 to 'delete' (servicers.department_id_list: sequence expected)" },
      { "servicer", "list", { nil }, "bad argument #3 to 'list' (string expected, got nil)" },
      { "service_state", "get", { K, nil }, "bad argument #4 to 'get' (string expected, got nil)" },
      { "service_state", "trans", { K, U, 5 },
        "bad argument #5 to 'trans' (service_state: must be between 0 and 4, got 5)" },
      { "service_state", "trans", { K, U, "3" }, "bad argument #5 to 'trans' (number expected, got string)" },
      { "service_state", "trans", { K, U, 3 },
        "bad argument #6 to 'trans' (servicer_userid required when service_state is 3 (HUMAN))" },
      { "service_state", "trans", { K, U, 2, "zhangsan" },
        "bad argument #6 to 'trans' (servicer_userid only with service_state 3 (HUMAN), got 2)" },
      { "customer", "get_customer_info", { {} },
        "bad argument #3 to 'get_customer_info' (external_userid_list: at least 1 item expected)" },
      { "customer", "batchget", { MANY },
        "bad argument #3 to 'get_customer_info' (external_userid_list: at most 100 items, got 101)" },
      { "customer", "get_customer_info", { { U }, { need_enter_session_context = 1 } },
        "bad argument #4 to 'get_customer_info' (opts.need_enter_session_context: boolean expected, got number)" },
      { "customer", "upgrade_service", { K, U, 3, {} },
        "bad argument #5 to 'upgrade_service' (type: must be between 1 and 2, got 3)" },
      { "customer", "upgrade_service", { K, U, 1, { chat_id = "c" } },
        "bad argument #6 to 'upgrade_service' (info.userid: string expected, got nil)" },
      { "customer", "upgrade_service", { K, U, 2, { chat_id = "c", userid = "u" } },
        "bad argument #6 to 'upgrade_service' (info: key 'userid' does not match type 2)" },
      { "customer", "upgrade_service", { K, U, 1, { userid = "u", wording = true } },
        "bad argument #6 to 'upgrade_service' (info.wording: string expected, got boolean)" },
      { "customer", "cancel_upgrade_service", { K },
        "bad argument #4 to 'cancel_upgrade_service' (string expected, got nil)" },
      { "statistic", "get_corp_statistic", { nil },
        "bad argument #3 to 'get_corp_statistic' (table expected, got nil)" },
      { "statistic", "get_corp_statistic", { { start_time = 1, end_time = 2 } },
        "bad argument #3 to 'get_corp_statistic' (query.open_kfid: string expected, got nil)" },
      { "statistic", "get_corp_statistic", { Q{ end_time = 0 } },
        "bad argument #3 to 'get_corp_statistic' (query.end_time: must not be before query.start_time)" },
      -- start 1970-01-02 08:00 China time (day 1): day 32 is 32 days counting both
      { "statistic", "get_corp_statistic", { Q{ end_time = 86400 + 31 * 86400 } }, "bad argument #3 to "
        .. "'get_corp_statistic' (query.end_time: at most 31 days counting query.start_time's and its own (China "
        .. "time), got 32)" },
      -- China midnight to China midnight 31 days later: 32 days, though 31 * 86400 s apart
      { "statistic", "get_corp_statistic", { Q{ start_time = 2 * 86400 - 28800, end_time = 33 * 86400 - 28800 } },
        "bad argument #3 to 'get_corp_statistic' (query.end_time: at most 31 days counting query.start_time's and "
        .. "its own (China time), got 32)" },
      { "statistic", "get_corp_statistic", { Q{ servicer_userid = "u" } },
        "bad argument #3 to 'get_corp_statistic' (query: unknown key 'servicer_userid')" },
      { "statistic", "get_servicer_statistic", { Q{ start_time = 1.5 } },
        "bad argument #3 to 'get_servicer_statistic' (query.start_time: integer expected, got 1.5)" },
      { "statistic", "get_servicer_statistic", { Q{ servicer_userid = "" } },
        "bad argument #3 to 'get_servicer_statistic' (query.servicer_userid: must not be empty)" },
    }

    for _, e in ipairs(ERRORS) do
      it(e[1] .. "." .. e[2] .. ": " .. e[4]:match("%((.*)%)$"), function()
        local line = debug.getinfo(1, "l").currentline + 1
        local ok, msg = pcall(function() kf[e[1]][e[2]](client, cases.AGENT, unpack(e[3], 1, 4)) end)
        assert.is_false(ok)
        assert.equal(SRC .. ":" .. line .. ": " .. e[4], msg)
      end)
    end

    it("checks the client and the agent first", function()
      assert.has_error(function() kf.account.add(nil, "kf", "n", "m") end,
        "bad argument #1 to 'add' (wechat.work client expected, got no value)")
      assert.has_error(function() kf.servicer.list(client, "sales", K) end,
        "bad argument #2 to 'list' (unknown agent 'sales')")
    end)

    it("sends nothing when an argument is wrong", function()
      pcall(kf.account.add, client, cases.AGENT, ("客"):rep(17), "m")
      assert.same({}, standin.counts())
    end)
  end)
end)
