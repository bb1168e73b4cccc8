-- Retries that cannot duplicate a message, inside nginx (cosocket transport): the twin of spec/retry_spec.lua,
-- where the rule and the counts table are. The spec posts a job to /run; a content handler makes a client over its
-- own cosocket transport, runs the calls and answers the results and how many exchanges the library made.
-- Where it matters whether a request goes over a reused connection (which the transport may resend once), the spec
-- starts nginx anew, so that no kept-alive connection of an earlier spec sits in the worker's pool.
local cjson = require "cjson"
local nginx = require "helpers.nginx"
local standin = require "helpers.standin"
local ports = require "helpers.ports"

local PORT = 18377
local SEND_MSG = "/cgi-bin/kf/send_msg"
local GETTOKEN = "/cgi-bin/gettoken"
local SYNC_MSG = "/cgi-bin/kf/sync_msg"
local SHORT = 1 -- client timeout (seconds) where the timeout is the point; 10 for every other job
local HOLD = 3  -- seconds a delayed request sleeps: well past SHORT
local MSGID = "^[0-9a-zA-Z_-]+$"

local SERVER = [[
    location = /run {
      content_by_lua_block {
        local cjson = require "cjson"
        local work = require "wechat.work"
        local kf = require "wechat.work.kf.message"
        local cosocket = require "wechat.work.transport.cosocket"
        local memory = require "wechat.work.store.memory"
        ngx.req.read_body()
        local job = cjson.decode(ngx.req.get_body_data())
        local function new_client(base_url, store, timeout)
          local transport = cosocket.new{ timeout = timeout }
          return work.client{ corp_id = "wwCORP", agents = { kf = { secret = "KF_SECRET" } }, base_url = base_url,
            retries = job.retries, auto_msgid = job.auto_msgid, token_store = store, transport = transport },
            transport
        end
        local store = memory.new()
        if job.token_from then
          assert(kf.sync_msg((new_client(job.token_from, store, 10)), "kf"))
        end
        if job.warm then
          -- the token first (one gettoken), so that a short timeout applies to the fault alone
          assert(new_client(job.base_url, store, 10):token("kf"))
        end
        local client, transport = new_client(job.base_url, store, job.timeout or 10)
        local out = {}
        for i, call in ipairs(job.calls) do
          local args = call.args or {}
          local res, err = kf[call.op](client, "kf", unpack(args, 1, #args))
          if res then
            out[i] = { res = res }
          else
            out[i] = { err = { kind = err.kind, reason = err.reason, status = err.status, errcode = err.errcode,
              attempts = err.attempts, message = err.message, maybe_sent = err.maybe_sent } }
          end
        end
        local stats = transport:stats()
        ngx.print(cjson.encode({ results = out, exchanges = stats.requests, connects = stats.connects }))
      }
    }
]]

local app

local closed_port = ports.closed
local settle = standin.settle

local function run(job)
  job.base_url = job.base_url or standin.url()
  local status, body = app:request("POST", "/run", cjson.encode(job))
  assert.are.equal(200, status, body)
  local out = cjson.decode(body)
  return out.results, out.exchanges, out.connects
end

local function send(opts)
  return { op = "send_text", args = { "wmCUSTOMER", "wkKF", "hello", opts } }
end

local SYNC = { op = "sync_msg" }

local function msgids(list)
  local out = {}
  for i, body in ipairs(list) do
    out[i] = body.msgid or "none"
  end
  return out
end

describe("retries that cannot duplicate a message, inside nginx #openresty", function()
  local function start_app()
    app = nginx.start{ name = "retry", port = PORT, workers = 1, trusted_certificate = standin.cafile(),
      server = SERVER }
  end

  setup(function()
    standin.start()
    start_app()
  end)
  teardown(function()
    if app then app:stop() end
  end)
  before_each(function()
    standin.reset()
    standin.wrote("wkKF", "wmCUSTOMER") -- the customer wrote, as WeCom requires before a send (95031 otherwise)
  end)
  after_each(settle)

  describe("with a msgid", function()
    it("closed without an answer on a new connection: sent again once by the library, delivered once", function()
      -- a new nginx, and the token comes over HTTPS: the send is the first request in the pool of http://127.0.0.1
      start_app()
      standin.script(SEND_MSG, { close = true }, 1)
      local results, exchanges = run{ token_from = standin.https_url(), calls = { send{ msgid = "m-close" } } }
      assert.are.same({ res = { errcode = 0, errmsg = "ok", msgid = "m-close" } }, results[1])
      assert.are.same({ [GETTOKEN] = 1, [SYNC_MSG] = 1, [SEND_MSG] = 2 }, standin.counts())
      assert.are.same({ "m-close", "m-close" }, msgids(standin.bodies(SEND_MSG)))
      assert.are.same({ "m-close" }, msgids(standin.delivered()))
      assert.are.equal(2, exchanges)
    end)

    it("no answer within the timeout, WeCom acting on it late: sent again, delivered once", function()
      standin.script(SEND_MSG, { delay = HOLD }, 1)
      local results = run{ timeout = SHORT, warm = true, calls = { send{ msgid = "m-late" } } }
      assert.are.same({ res = { errcode = 0, errmsg = "ok", msgid = "m-late" } }, results[1])
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 2 }, standin.counts())
      assert.are.same({ "m-late", "m-late" }, msgids(standin.bodies(SEND_MSG)))
      assert.are.equal(1, settle())
      assert.are.same({ "m-late" }, msgids(standin.delivered()))
    end)
  end)

  describe("without a msgid", function()
    it("no answer within the timeout: one request, the error comes back, and WeCom delivered it once", function()
      standin.script(SEND_MSG, { delay = HOLD }, 1)
      local results = run{ timeout = SHORT, warm = true, auto_msgid = false, calls = { send() } }
      assert.are.same({ kind = "transport", reason = "timeout", attempts = 1, message = "receive: timeout",
        maybe_sent = true }, results[1].err)
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 1 }, standin.counts())
      assert.are.equal(1, settle())
      local delivered = standin.delivered()
      assert.are.same({ 1, "hello" }, { #delivered, delivered[1].text.content })
    end)
  end)

  describe("below the library: the transport's resend on a dropped kept-alive connection", function()
    it("closed once on a reused connection: the transport sends again by itself, one exchange", function()
      standin.script(SEND_MSG, { close = true }, 1)
      local results, exchanges = run{ calls = { SYNC, send{ msgid = "m-reused" } } }
      assert.are.same({ res = { errcode = 0, errmsg = "ok", msgid = "m-reused" } }, results[2])
      assert.are.same({ [GETTOKEN] = 1, [SYNC_MSG] = 1, [SEND_MSG] = 2 }, standin.counts())
      assert.are.equal(3, exchanges)
      assert.are.same({ "m-reused" }, msgids(standin.delivered()))
    end)

    it("without a msgid (auto_msgid = false): over a new connection, which the transport never sends twice", function()
      start_app()
      standin.script(SEND_MSG, { close = true }, 1)
      local results, exchanges, connects = run{ auto_msgid = false, calls = { SYNC, send() } }
      assert.are.same({ kind = "transport", reason = "recv", attempts = 1, message = "receive: closed",
        maybe_sent = true }, results[2].err)
      assert.are.same({ [GETTOKEN] = 1, [SYNC_MSG] = 1, [SEND_MSG] = 1 }, standin.counts())
      -- gettoken and sync_msg share one connection; the send gets one of its own
      assert.are.same({ 3, 2 }, { exchanges, connects })
    end)

    it("closed every time on a reused connection, with a msgid: two requests, no retry on top", function()
      -- a new nginx: after sync_msg its pool holds exactly one connection, the one the send then reuses
      start_app()
      standin.script(SEND_MSG, { close = true }, -1)
      local results, exchanges = run{ calls = { SYNC, send{ msgid = "m-closed" } } }
      assert.are.same({ kind = "transport", reason = "recv", attempts = 1, message = "receive: closed",
        maybe_sent = true }, results[2].err)
      assert.are.same({ "m-closed", "m-closed" }, msgids(standin.bodies(SEND_MSG)))
      assert.are.equal(2 + 1, exchanges)
      assert.are.same({}, standin.delivered())
    end)
  end)

  describe("a repeated msgid (WeCom refuses it: errcode 40058, assumed)", function()
    it("the answer lost after WeCom took it: sent again, refused as a repeat: success, res.duplicate", function()
      start_app()
      standin.script(SEND_MSG, { lose_answer = true }, 1)
      local results, exchanges = run{ token_from = standin.https_url(), calls = { send{ msgid = "m-lost" } } }
      assert.are.same({ res = { errcode = 0, errmsg = "ok", msgid = "m-lost", duplicate = true } }, results[1])
      assert.are.same({ "m-lost", "m-lost" }, msgids(standin.bodies(SEND_MSG)))
      assert.are.same({ "m-lost" }, msgids(standin.delivered()))
      assert.are.equal(2, exchanges)
    end)

    it("the answer lost on a kept-alive connection: the resend, refused as a repeat, is a success", function()
      start_app()
      standin.script(SEND_MSG, { lose_answer = true }, 1)
      local results, exchanges = run{ calls = { SYNC, send{ msgid = "m-lost-reused" } } }
      assert.are.same({ res = { errcode = 0, errmsg = "ok", msgid = "m-lost-reused", duplicate = true } }, results[2])
      assert.are.same({ "m-lost-reused" }, msgids(standin.delivered()))
      assert.are.equal(3, exchanges)
    end)

    it("a msgid the caller used before: nil, err, reason duplicate_msgid", function()
      local results = run{ calls = { send{ msgid = "m-used" }, send{ msgid = "m-used" } } }
      assert.are.same({ kind = "api", errcode = 40058, reason = "duplicate_msgid", attempts = 1,
        message = "msgid m-used already used on this KF account" }, results[2].err)
      assert.are.same({ "m-used" }, msgids(standin.delivered()))
    end)

    it("any other refusal of the retry: nil, err with maybe_sent", function()
      start_app()
      standin.script(SEND_MSG, { lose_answer = true }, 1)
      standin.script(SEND_MSG, { errcode = 95018, errmsg = "send msg session status invalid" }, 1)
      local results = run{ token_from = standin.https_url(), calls = { send{ msgid = "m-unknown" } } }
      assert.are.same({ kind = "api", errcode = 95018, attempts = 2, maybe_sent = true }, results[1].err)
      assert.are.same({ "m-unknown" }, msgids(standin.delivered()))
    end)

    it("40001 on send_msg: the token is fetched anew and the send made once more", function()
      standin.script(SEND_MSG, { errcode = 40001, errmsg = "invalid credential" }, 1)
      local results = run{ calls = { send{ msgid = "m-40001" } } }
      assert.are.same({ res = { errcode = 0, errmsg = "ok", msgid = "m-40001" } }, results[1])
      assert.are.same({ [GETTOKEN] = 2, [SEND_MSG] = 2 }, standin.counts())
    end)
  end)

  describe("one budget per call, shared with the repeat after a refused token", function()
    local BUSY = { status = 503, body = "busy" }
    local EXPIRE = { expire_token = true }

    it("503, 42001, 503, 503 with retries = 1: three requests, not four; the refused one is not counted", function()
      standin.script(SEND_MSG, BUSY, 1)
      standin.script(SEND_MSG, EXPIRE, 1)
      standin.script(SEND_MSG, BUSY, 1)
      standin.script(SEND_MSG, BUSY, 1)
      local results, exchanges = run{ calls = { send{ msgid = "m-budget" } } }
      assert.are.same({ kind = "http", status = 503, attempts = 3, message = "unexpected HTTP status",
        maybe_sent = true }, results[1].err)
      assert.are.same({ [GETTOKEN] = 2, [SEND_MSG] = 3 }, standin.counts())
      assert.are.same({ "m-budget", "m-budget", "m-budget" }, msgids(standin.bodies(SEND_MSG)))
      assert.are.equal(2 + 3, exchanges)
      assert.are.same({}, standin.delivered())
    end)

    it("42001, 503, 503 with retries = 1: the retry after the new token's 503 is still there", function()
      standin.script(SEND_MSG, EXPIRE, 1)
      standin.script(SEND_MSG, BUSY, 2)
      local results = run{ calls = { send{ msgid = "m-refused-first" } } }
      assert.are.same({ kind = "http", status = 503, attempts = 3, message = "unexpected HTTP status",
        maybe_sent = true }, results[1].err)
      assert.are.same({ [GETTOKEN] = 2, [SEND_MSG] = 3 }, standin.counts())
    end)

    it("retries = 0 still fetches a refused token anew and makes the call once more", function()
      standin.script(SEND_MSG, EXPIRE, 1)
      local results = run{ retries = 0, calls = { send{ msgid = "m-0-token" } } }
      assert.are.same({ res = { errcode = 0, errmsg = "ok", msgid = "m-0-token" } }, results[1])
      assert.are.same({ [GETTOKEN] = 2, [SEND_MSG] = 2 }, standin.counts())
    end)
  end)

  describe("a msgid made by the library", function()
    it("opts.msgid = true: returned in res.msgid and used on both tries", function()
      standin.script(SEND_MSG, { truncate = true }, 1)
      local results = run{ calls = { send{ msgid = true } } }
      local msgid = results[1].res.msgid
      assert.truthy(type(msgid) == "string" and msgid:find(MSGID) and #msgid <= 32, tostring(msgid))
      assert.are.same({ res = { errcode = 0, errmsg = "ok", msgid = msgid } }, results[1])
      assert.are.same({ msgid, msgid }, msgids(standin.bodies(SEND_MSG)))
      assert.are.same({ msgid }, msgids(standin.delivered()))
    end)

    it("client option auto_msgid = true: every send gets one", function()
      standin.script(SEND_MSG, { status = 502, body = "bad gateway" }, 1)
      local results = run{ auto_msgid = true, calls = { send(), send() } }
      local first, second = results[1].res.msgid, results[2].res.msgid
      assert.truthy(first:find(MSGID) and second:find(MSGID) and first ~= second)
      assert.are.same({ first, first, second }, msgids(standin.bodies(SEND_MSG)))
      assert.are.same({ first, second }, msgids(standin.delivered()))
    end)
  end)

  describe("client option retries", function()
    it("0: nothing is tried again, not even with a msgid", function()
      standin.script(SEND_MSG, { truncate = true }, 1)
      local results = run{ retries = 0, calls = { send{ msgid = "m-0" } } }
      assert.are.same({ kind = "transport", reason = "recv", attempts = 1, message = "receive: closed",
        maybe_sent = true }, results[1].err)
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 1 }, standin.counts())
    end)

    it("1 with a connect that never completes, without a msgid: tried again, since nothing reached WeCom", function()
      local port, close = ports.unanswered()
      local results, exchanges = run{ token_from = standin.url(), timeout = SHORT,
        base_url = "http://127.0.0.1:" .. port, calls = { send() } }
      close()
      assert.are.same({ kind = "transport", reason = "connect", attempts = 2,
        message = "cannot connect to 127.0.0.1:" .. port .. ": timeout" }, results[1].err)
      assert.are.equal(2, exchanges)
      assert.are.same({ [GETTOKEN] = 1, [SYNC_MSG] = 1 }, standin.counts())
    end)

    it("3 with a connection that is always refused: exactly 4 attempts", function()
      local port = closed_port()
      local results, exchanges = run{ retries = 3, base_url = "http://127.0.0.1:" .. port, calls = { send() } }
      assert.are.same({ kind = "transport", reason = "connect", attempts = 4,
        message = "gettoken: cannot connect to 127.0.0.1:" .. port .. ": connection refused" }, results[1].err)
      assert.are.equal(4, exchanges)
    end)

    it("3 with a 503 every time, with a msgid: exactly 4 requests", function()
      standin.script(SEND_MSG, { status = 503, body = "busy" }, -1)
      local results = run{ retries = 3, calls = { send{ msgid = "m-3" } } }
      assert.are.same({ kind = "http", status = 503, attempts = 4, message = "unexpected HTTP status",
        maybe_sent = true }, results[1].err)
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 4 }, standin.counts())
    end)
  end)
end)
