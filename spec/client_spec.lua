local standin = require "helpers.standin"
local work = require "wechat.work"
local kf = require "wechat.work.kf.message"
local errors = require "wechat.work.errors"
local memory = require "wechat.work.store.memory"

local SEND_MSG = "/cgi-bin/kf/send_msg"
local GETTOKEN = "/cgi-bin/gettoken"

local function new_client(opts)
  opts = opts or {}
  return work.client{
    corp_id = opts.corp_id or standin.CORPID,
    agents = { kf = { secret = opts.secret or standin.KF_SECRET } },
    base_url = opts.base_url or standin.url(),
    timeout = opts.timeout or 5,
    cafile = opts.cafile,
    token_store = opts.token_store,
    token_margin = opts.token_margin,
    auto_msgid = opts.auto_msgid,
  }
end

local AGENTS = { kf = { secret = "s" } }

local function count(path)
  return standin.counts()[path] or 0
end

local function raised(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  return (tostring(err):gsub("^[^:]+:%d+: ", ""))
end

describe("wechat.work client", function()
  setup(standin.start)
  before_each(function()
    standin.reset()
    standin.wrote("wkK", "wmC")
  end)

  describe("options", function()
    it("names the option that is wrong", function()
      assert.equal("bad argument #1 to 'client' (table expected, got nil)", raised(work.client))
      assert.equal("bad argument #1 to 'client' (corp_id: non-empty string expected, got nil)",
        raised(work.client, { agents = { kf = { secret = "s" } } }))
      assert.equal("bad argument #1 to 'client' (agents: non-empty table expected, got empty table)",
        raised(work.client, { corp_id = "ww", agents = {} }))
      assert.equal("bad argument #1 to 'client' (agents.kf.secret: non-empty string expected, got nil)",
        raised(work.client, { corp_id = "ww", agents = { kf = {} } }))
      assert.equal("bad argument #1 to 'client' (base_url: http:// or https:// URL expected, got 'ftp://x')",
        raised(work.client, { corp_id = "ww", agents = { kf = { secret = "s" } }, base_url = "ftp://x" }))
      assert.equal("bad argument #1 to 'client' (timeout: number >= 0.001 expected, got string)",
        raised(work.client, { corp_id = "ww", agents = { kf = { secret = "s" } }, timeout = "5" }))
      assert.equal("bad argument #1 to 'client' (transport: \"curl\", \"cosocket\" or an object expected, got string)",
        raised(work.client, { corp_id = "ww", agents = { kf = { secret = "s" } }, transport = "carrier pigeon" }))
    end)

    it("takes retries as an integer from 0 to 10 only", function()
      local function bad(value)
        return raised(work.client, { corp_id = "ww", agents = AGENTS, retries = value })
      end
      assert.equal("bad argument #1 to 'client' (retries: integer from 0 to 10 expected, got inf)", bad(math.huge))
      assert.equal("bad argument #1 to 'client' (retries: integer from 0 to 10 expected, got nan)", bad(0 / 0))
      assert.equal("bad argument #1 to 'client' (retries: integer from 0 to 10 expected, got 1.5)", bad(1.5))
      assert.equal("bad argument #1 to 'client' (retries: integer from 0 to 10 expected, got -1)", bad(-1))
      assert.equal("bad argument #1 to 'client' (retries: integer from 0 to 10 expected, got 11)", bad(11))
      assert.equal("bad argument #1 to 'client' (retries: integer from 0 to 10 expected, got string)", bad("1"))
      assert.equal(0, work.client{ corp_id = "ww", agents = AGENTS, retries = 0 }.retries)
      assert.equal(10, work.client{ corp_id = "ww", agents = AGENTS, retries = 10 }.retries)
      assert.equal(1, work.client{ corp_id = "ww", agents = AGENTS }.retries)
    end)

    it("takes token_wait as seconds from 0 to 3600", function()
      local function bad(value)
        return raised(work.client, { corp_id = "ww", agents = AGENTS, token_wait = value })
      end
      assert.equal("bad argument #1 to 'client' (token_wait: number from 0 to 3600 expected, got -1)", bad(-1))
      assert.equal("bad argument #1 to 'client' (token_wait: number from 0 to 3600 expected, got inf)", bad(1 / 0))
      assert.equal("bad argument #1 to 'client' (token_wait: number from 0 to 3600 expected, got nan)", bad(0 / 0))
      assert.equal("bad argument #1 to 'client' (token_wait: number from 0 to 3600 expected, got string)", bad("5"))
      assert.equal(0.25, work.client{ corp_id = "ww", agents = AGENTS, token_wait = 0.25 }.token_wait)
      assert.equal(5, work.client{ corp_id = "ww", agents = AGENTS }.token_wait)
    end)

    it("never shows a secret in an option error", function()
      local err = raised(work.client, { corp_id = "ww", agents = { kf = { secret = 12345 } } })
      assert.equal("bad argument #1 to 'client' (agents.kf.secret: non-empty string expected, got number)", err)
      err = raised(work.client, { corp_id = "ww", agents = { kf = { secret = "TOP-SECRET" } }, retries = "TOP-SECRET" })
      assert.equal("bad argument #1 to 'client' (retries: integer from 0 to 10 expected, got string)", err)
    end)

    it("checks client and agent before anything goes out", function()
      local client = new_client()
      assert.equal("bad argument #1 to 'send_text' (wechat.work client expected, got table)",
        raised(kf.send_text, {}, "kf", "wm1", "wk1", "hi"))
      assert.equal("bad argument #2 to 'send_text' (unknown agent 'sales')",
        raised(kf.send_text, client, "sales", "wm1", "wk1", "hi"))
      assert.equal("bad argument #2 to 'sync_msg' (agent name expected, got no value)", raised(kf.sync_msg, client))
      assert.same({}, standin.counts())
    end)

    it("raises on an agent it does not know in token, post and invalidate_token, like the KF calls", function()
      local client = new_client()
      assert.equal("bad argument #1 to 'token' (unknown agent 'sales')", raised(client.token, client, "sales"))
      assert.equal("bad argument #1 to 'token' (agent name expected, got nil)", raised(client.token, client))
      assert.equal("bad argument #1 to 'post' (unknown agent 'sales')",
        raised(client.post, client, "sales", "/cgi-bin/kf/send_msg", "{}", "send_msg"))
      assert.equal("bad argument #1 to 'invalidate_token' (unknown agent 'sales')",
        raised(client.invalidate_token, client, "sales"))
      assert.equal("bad argument #1 to 'invalidate_token' (agent name expected, got number)",
        raised(client.invalidate_token, client, 5))
      assert.same({}, standin.counts())
    end)

    it("tells its own clients apart and gives an agent's record", function()
      local client = new_client()
      assert.is_true(work.is_client(client))
      assert.is_false(work.is_client({}))
      assert.is_false(work.is_client(nil))
      assert.same({ "kf", standin.KF_SECRET }, { client:agent("kf").name, client:agent("kf").secret })
      assert.is_nil(client:agent("sales"))
    end)
  end)

  describe("access token", function()
    it("is fetched once for many calls", function()
      local client = new_client()
      for i = 1, 5 do
        local res, err = kf.send_text(client, "kf", "wmC", "wkK", "hello " .. i)
        assert.is_nil(err)
        assert.equal(0, res.errcode)
      end
      assert.equal(1, count(GETTOKEN))
      assert.equal(5, count(SEND_MSG))
      local token = standin.token()
      for _, req in ipairs(standin.requests(SEND_MSG)) do
        assert.equal(token, req.args.access_token)
      end
    end)

    it("is refreshed once when WeCom says it expired, and the call made again", function()
      local client = new_client()
      assert.truthy(kf.send_text(client, "kf", "wmC", "wkK", "before"))
      standin.expire_tokens()
      local res, err = kf.send_text(client, "kf", "wmC", "wkK", "after", { msgid = "m-after" })
      assert.is_nil(err)
      assert.same({ errcode = 0, errmsg = "ok", msgid = "m-after" }, res)
      assert.equal(2, count(GETTOKEN))
      assert.equal(3, count(SEND_MSG))
      assert.equal(2, #standin.delivered())
    end)

    it("is not refreshed forever when WeCom keeps refusing it", function()
      local client = new_client()
      standin.script(SEND_MSG, { errcode = 40014, errmsg = "invalid access_token" }, -1)
      local res, err = kf.send_text(client, "kf", "wmC", "wkK", "hi")
      assert.is_nil(res)
      assert.equal("api", err.kind)
      assert.equal(40014, err.errcode)
      assert.equal(2, count(GETTOKEN))
      assert.equal(2, count(SEND_MSG))
    end)

    describe("is kept until token_margin seconds before expires_in (memory store, its clock turned by hand)", function()
      local now
      local function clock()
        return now
      end
      local function send(client)
        local res, err = kf.send_text(client, "kf", "wmC", "wkK", "at " .. now)
        assert.is_nil(err)
        assert.equal(0, res.errcode)
        return { count(GETTOKEN), count(SEND_MSG) }
      end

      it("expires_in 1000, margin 300 (default): fetched again at 700 s, not before", function()
        standin.config{ expires_in = 1000 }
        now = 5000
        local client = new_client{ token_store = memory.new{ clock = clock } }
        assert.same({ 1, 1 }, send(client))
        now = 5699
        assert.same({ 1, 2 }, send(client))
        now = 5700
        assert.same({ 2, 3 }, send(client))
        -- the new one is kept as long again, from when it came
        now = 6399
        assert.same({ 2, 4 }, send(client))
        now = 6400
        assert.same({ 3, 5 }, send(client))
      end)

      it("expires_in 400: at most half its life is taken off, so fetched again at 200 s", function()
        standin.config{ expires_in = 400 }
        now = 0
        local client = new_client{ token_store = memory.new{ clock = clock } }
        assert.same({ 1, 1 }, send(client))
        now = 199
        assert.same({ 1, 2 }, send(client))
        now = 200
        assert.same({ 2, 3 }, send(client))
      end)

      it("token_margin 0: kept for the whole of expires_in", function()
        standin.config{ expires_in = 1000 }
        now = 0
        local client = new_client{ token_store = memory.new{ clock = clock }, token_margin = 0 }
        assert.same({ 1, 1 }, send(client))
        now = 999
        assert.same({ 1, 2 }, send(client))
        now = 1000
        assert.same({ 2, 3 }, send(client))
      end)
    end)

    it("is kept in the process when the store cannot keep it (full shared dict): one gettoken", function()
      local sets = 0
      local full = {
        get = function() return nil end,
        set = function()
          sets = sets + 1
          return nil, "no memory"
        end,
        delete = function() return true end,
      }
      local client = new_client{ token_store = full }
      for i = 1, 3 do
        assert.same({ errcode = 0, errmsg = "ok", msgid = "m" .. i },
          kf.send_text(client, "kf", "wmC", "wkK", "hi", { msgid = "m" .. i }))
      end
      assert.equal(1, count(GETTOKEN))
      assert.equal(1, sets)
      -- a token WeCom refuses is dropped from the process too: one new gettoken, then kept again
      standin.expire_tokens()
      assert.equal(0, (kf.send_text(client, "kf", "wmC", "wkK", "a")).errcode)
      assert.equal(0, (kf.send_text(client, "kf", "wmC", "wkK", "b")).errcode)
      assert.equal(2, count(GETTOKEN))
      assert.equal(2, sets)
      assert.equal(6, count(SEND_MSG))
    end)

    it("reports a gettoken refusal as an api error without the secret", function()
      local client = new_client{ secret = "WRONG-SECRET-123" }
      local res, err = kf.send_text(client, "kf", "wmC", "wkK", "hi")
      assert.is_nil(res)
      assert.equal("api", err.kind)
      assert.equal(40001, err.errcode)
      assert.equal("send_text", err.op)
      assert.is_nil(tostring(err):find("WRONG-SECRET-123", 1, true))
      assert.equal(0, count(SEND_MSG))
    end)
  end)

  describe("run-time failures come back as nil, err", function()
    it("an errcode, with errcode and errmsg", function()
      local client = new_client()
      standin.script(SEND_MSG, { errcode = 45009, errmsg = "api freq out of limit" })
      local res, err = kf.send_text(client, "kf", "wmC", "wkK", "hi")
      assert.is_nil(res)
      assert.is_true(errors.is(err, "api"))
      assert.equal(45009, err.errcode)
      assert.equal("api freq out of limit", err.errmsg)
      -- the code's English name in the text, WeCom's own words in errmsg
      assert.equal("wechat: api error 45009 (api call frequency limit) in send_text", tostring(err))
      assert.is_nil(err.maybe_sent)
    end)

    it("a timeout", function()
      -- the token comes with the default timeout; only the send that times out has a short one
      local store = memory.new()
      assert.truthy(new_client{ token_store = store }:token("kf"))
      -- without a msgid, so that the send is not tried again
      local client = new_client{ timeout = 1, token_store = store, auto_msgid = false }
      standin.script(SEND_MSG, { delay = 3, close = true }) -- held past the timeout, then closed: nothing delivered
      local res, err = kf.send_text(client, "kf", "wmC", "wkK", "hi")
      assert.is_nil(res)
      assert.equal("transport", err.kind)
      assert.equal("timeout", err.reason)
      assert.equal("send_text", err.op)
      -- WeCom had the request and no answer came: whether it was delivered is not known
      assert.is_true(err.maybe_sent)
    end)

    it("a refused connection", function()
      local client = new_client{ base_url = "http://127.0.0.1:1" }
      local res, err = kf.send_text(client, "kf", "wmC", "wkK", "hi")
      assert.is_nil(res)
      assert.equal("transport", err.kind)
      assert.equal("connect", err.reason)
      assert.is_nil(tostring(err):find(standin.KF_SECRET, 1, true))
    end)

    it("an HTTP 500", function()
      local client = new_client()
      standin.script(SEND_MSG, { status = 500, body = "oops" })
      local res, err = kf.send_text(client, "kf", "wmC", "wkK", "hi")
      assert.is_nil(res)
      assert.equal("http", err.kind)
      assert.equal(500, err.status)
      assert.equal("wechat: http error status 500: unexpected HTTP status in send_text", tostring(err))
    end)

    it("a body that is not JSON", function()
      local client = new_client()
      standin.script(SEND_MSG, { status = 200, body = "<html>not json</html>" })
      local res, err = kf.send_text(client, "kf", "wmC", "wkK", "hi")
      assert.is_nil(res)
      assert.equal("decode", err.kind)
      assert.equal("wechat: decode error: response is not WeCom's JSON (an object with errcode) in send_text",
        tostring(err))
    end)

    it("never shows the secret, not even URL-escaped as it went out, in errmsg or message", function()
      local client = new_client{ secret = "S/e+c r=t" }
      standin.script(GETTOKEN,
        { errcode = 40001, errmsg = "invalid credential: corpsecret=S%2Fe%2Bc%20r%3Dt, or S/e+c r=t" })
      local _, err = kf.send_text(client, "kf", "wmC", "wkK", "hi")
      assert.equal(40001, err.errcode)
      assert.equal("invalid credential: corpsecret=***, or ***", err.errmsg)
      assert.equal("wechat: api error 40001 (invalid credential: corpsecret=***, or ***): gettoken failed in "
        .. "send_text", tostring(err))
    end)

    it("never shows the access token", function()
      local client = new_client()
      assert.truthy(kf.send_text(client, "kf", "wmC", "wkK", "warm up"))
      local token = standin.token()
      -- libcurl silently resends once on a reused connection that died, so close twice
      standin.script(SEND_MSG, { close = true }, 2)
      local _, err = kf.send_text(client, "kf", "wmC", "wkK", "hi")
      assert.equal("transport", err.kind)
      assert.is_nil(tostring(err):find(token, 1, true))
    end)
  end)

  describe("error values (wechat.work.errors)", function()
    it("are made by errors.new with a kind, a message and fields, and read well", function()
      local err = errors.new(errors.API, nil, { errcode = 45009, errmsg = "api freq out of limit", op = "send_text" })
      assert.same({ "api", 45009, "api freq out of limit", "send_text" }, { err.kind, err.errcode, err.errmsg, err.op })
      assert.equal("wechat: api error 45009 (api call frequency limit) in send_text", tostring(err))
      -- a code without a name shows WeCom's errmsg
      assert.equal("wechat: api error 60020 (not allow to access from your ip)",
        tostring(errors.new(errors.API, nil, { errcode = 60020, errmsg = "not allow to access from your ip" })))
      err = errors.new(errors.TRANSPORT, "receive: timeout", { reason = "timeout" })
      assert.equal("wechat: transport error: receive: timeout", tostring(err))
      assert.equal("wechat: http error status 502: unexpected HTTP status",
        tostring(errors.new(errors.HTTP, "unexpected HTTP status", { status = 502 })))
    end)

    it("are told from other values by errors.is, with a kind or without", function()
      local err = errors.new(errors.STORE, "lock taken", { reason = "timeout" })
      assert.is_true(errors.is(err))
      assert.is_true(errors.is(err, errors.STORE))
      assert.is_false(errors.is(err, errors.API))
      assert.is_false(errors.is({ kind = "store" }))
      assert.is_false(errors.is("wechat: store error"))
    end)

    it("have one constant per kind", function()
      assert.same({ "transport", "http", "decode", "api", "phase", "store", "callback" }, { errors.TRANSPORT,
        errors.HTTP, errors.DECODE, errors.API, errors.PHASE, errors.STORE, errors.CALLBACK })
    end)
  end)

  describe("HTTPS", function()
    it("verifies the stand-in with its CA", function()
      local client = new_client{ base_url = standin.https_url(), cafile = standin.cafile() }
      local res, err = kf.send_text(client, "kf", "wmC", "wkK", "over TLS")
      assert.is_nil(err)
      assert.equal(0, res.errcode)
      assert.equal("over TLS", standin.bodies(SEND_MSG)[1].text.content)
    end)

    it("refuses the stand-in without its CA", function()
      -- a refused certificate answers at once; the long timeout is for tools/sanitize, where loading the system's
      -- CA bundle under ASan's full malloc stacks can take longer than 5 s (a timeout there reads as "connect")
      local client = new_client{ base_url = standin.https_url(), timeout = 60 }
      local res, err = kf.send_text(client, "kf", "wmC", "wkK", "over TLS")
      assert.is_nil(res)
      assert.equal("transport", err.kind)
      assert.equal("tls", err.reason)
      assert.same({}, standin.counts())
    end)
  end)
end)
