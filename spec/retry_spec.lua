-- Retries that cannot duplicate a message, over libcurl (the OpenResty twin is spec/openresty/retry_spec.lua).
--
-- The rule (`Client:post` in lua/wechat/work.lua): a failed request goes again while
--   - the connection could not be made (reason connect, resolve; also a connect or TLS handshake that timed out):
--     always, since nothing reached WeCom;
--   - after a timeout, a send or receive failure, HTTP 502/503/504: only when the request is idempotent, i.e.
--     gettoken, sync_msg, or a send that carries a msgid (WeCom, like the stand-in, delivers a msgid once);
--   - never after HTTP 500, a body that is not WeCom's JSON, a response over max_response, or a WeCom errcode;
-- and in all, for one call, the request reaches WeCom at most `retries + 1` times (client option, integer 0..10,
-- default 1). The budget is the call's, not an exchange's: the one repeat after WeCom refused the token
-- (40014/42001: the token is fetched anew) shares it, and the refused exchange itself is not counted, since WeCom
-- did not act on it. An exchange the transport itself sent twice (err.resent) counts as two.
-- A send gets a msgid from `opts.msgid = "..."`, from `opts.msgid = true` (the library makes a random one and
-- returns it in res.msgid), or from the client option `auto_msgid` (default true: every send without one gets one).
-- "without msgid" below means `auto_msgid = false` and none given: such a send goes over a new connection, which no
-- transport sends twice, and a failure whose fate is unknown says `err.maybe_sent = true`.
-- WeCom refuses a msgid used before on the KF account (errcode 40058, assumed): a retry refused so after a try
-- whose fate is unknown is the first try's success, `res.duplicate = true`.
--
-- Below both transports, one more resend can happen: libcurl, and the cosocket transport on purpose in the same
-- way, send a request again, once and over a new connection, when it went over a kept-alive connection that gave
-- back not one byte (the server dropped the idle connection as it was reused). `err.attempts` and
-- transport:stats().requests count exchanges, the stand-in's counts count requests. A transport that may have
-- resent says so on failure (`err.resent`), and the client counts that exchange twice.
--
-- Requests the stand-in saw per fault (faults_spec.lua, retry_spec.lua and their nginx twins): the same on libcurl
-- and on cosockets. "seen" is per path; attempts is err.attempts ("-": the call succeeded); retries = 1 unless noted.
--
--   fault (script count -1 unless noted)          call                      seen               attempts  result
--   connection refused (closed port)              send                      nothing            2   transport connect
--   DNS failure (.invalid host)                   send                      nothing            2   transport resolve
--   connect never completes (full accept queue)   send without msgid        nothing            2   transport connect
--   never answers (delay 3 + close; timeout 1)    send without msgid        send 1             1   transport timeout
--                                                 send with msgid           send 2, same msgid 2   transport timeout
--                                                 sync_msg                  sync 2             2   transport timeout
--                                                 gettoken                  gettoken 2, send 0 2   transport timeout
--   answers late (delay 3, count 1)               send with msgid           send 2, delivered 1  -  ok
--                                                 send without msgid        send 1, delivered 1  1  transport timeout
--   cut short (truncate: 36 of 72 bytes, FIN)     send without msgid        send 1             1   transport recv
--   or TCP reset (reset: 36 of 72 bytes, RST)     send with msgid           send 2             2   transport recv
--                                                 send with msgid, count 1  send 2, delivered 1  -  ok
--                                                 gettoken                  gettoken 2         2   transport recv
--   close, no byte, on a new connection (count 1) send with msgid           send 2, delivered 1  -  ok
--                                                 send without msgid        send 1             1   transport recv
--   close, no byte, on a kept-alive connection    send with msgid, count 1  send 2 (transport resend)  -  ok
--                                                 send without msgid        send 1 (new connection) 1  recv
--                                                 send with msgid           send 2 (resend, no retry)  1  recv
--   answer lost after delivery (lose_answer, 1)   send with msgid           send 2, delivered 1  -  ok, duplicate
--     then errcode 95018                          send with msgid           send 2, delivered 1  2  api, maybe_sent
--   msgid used before by the caller               send with that msgid      send 1, delivered 0  1  duplicate_msgid
--   40001 once on send_msg                        send                      send 2, gettoken 2   -  ok
--   HTTP 500                                      send with msgid           send 1             1   http 500
--   HTTP 502 / 503 / 504                          send without msgid        send 1             1   http
--                                                 send with msgid, sync_msg 2                  2   http
--                                                 send with msgid, count 1  send 2, delivered 1  -  ok
--                                                 gettoken 503, count 1     gettoken 2, send 1   -  ok
--   503, 42001, 503, 503 (one each)               send with msgid           send 3, gettoken 2  3   http 503
--   42001, 503, 503 (one each)                    send with msgid           send 3, gettoken 2  3   http 503
--   42001 once, retries = 0                       send                      send 2, gettoken 2   -  ok
--   200 not JSON / truncated JSON / empty         send with msgid           send 1             1   decode
--   200, 100 MB (with or without Content-Length)  send with msgid           send 1             1   transport too_large
--   gettoken errcode -1 (count 1), then again     send, send                gettoken 1+1, send 0+1  1, -  api, ok
--   token expired between two calls              send, send                gettoken 2, send 1+2    -  ok
--   token expiring on every call                  send                      gettoken 2, send 2  2   api 42001
--   retries = 0                                   send with msgid, truncate send 1             1   transport recv
--   retries = 3                                   refused / 503 with msgid  4 exchanges / send 4  4
local standin = require "helpers.standin"
local errors = require "wechat.work.errors"
local work = require "wechat.work"
local kf = require "wechat.work.kf.message"
local curl = require "wechat.work.transport.curl"
local memory = require "wechat.work.store.memory"
local ports = require "helpers.ports"

local SEND_MSG = "/cgi-bin/kf/send_msg"
local SEND_MSG_ON_EVENT = "/cgi-bin/kf/send_msg_on_event"
local GETTOKEN = "/cgi-bin/gettoken"
local SYNC_MSG = "/cgi-bin/kf/sync_msg"
local TIMEOUT = 10 -- client timeout (seconds) for exchanges that should succeed, however busy the machine
local SHORT = 1    -- client timeout where the timeout is the point
local HOLD = 3     -- seconds a delayed request sleeps: well past SHORT
local MSGID = "^[0-9a-zA-Z_-]+$"

local closed_port = ports.closed
local settle = standin.settle

-- warm: the token is fetched first (one gettoken) by another client, with TIMEOUT, into the store this one uses,
-- so that a short timeout applies to the fault alone.
local function new_client(opts)
  opts = opts or {}
  local store = opts.token_store or memory.new()
  if opts.warm then
    assert(new_client{ token_store = store }:token("kf"))
  end
  local transport = assert(curl.new{ timeout = opts.timeout or TIMEOUT })
  local client = work.client{
    corp_id = standin.CORPID,
    agents = { kf = { secret = standin.KF_SECRET } },
    base_url = opts.base_url or standin.url(),
    retries = opts.retries,
    auto_msgid = opts.auto_msgid,
    token_store = store,
    transport = transport,
  }
  return client, transport
end

local function exchanges(transport)
  return transport:stats().requests
end

-- A client whose first request to the stand-in goes over a new connection: its token comes from a store that
-- another client filled (with one gettoken and one sync_msg), so it has not talked to the stand-in yet.
local function cold_client(opts)
  local store = memory.new()
  assert(kf.sync_msg((new_client{ token_store = store }), "kf"))
  opts = opts or {}
  opts.token_store = store
  return new_client(opts)
end

local function msgids(path)
  local out = {}
  for i, body in ipairs(standin.bodies(path)) do
    out[i] = body.msgid or "none"
  end
  return out
end

local function delivered_msgids()
  local out = {}
  for i, body in ipairs(standin.delivered()) do
    out[i] = body.msgid or "none"
  end
  return out
end

local function send(client, opts)
  return kf.send_text(client, "kf", "wmCUSTOMER", "wkKF", "hello", opts)
end

describe("retries that cannot duplicate a message (libcurl)", function()
  setup(standin.start)
  before_each(function()
    standin.reset()
    standin.wrote("wkKF", "wmCUSTOMER")
    standin.wrote("wkOTHER", "wmCUSTOMER")
  end)
  after_each(settle)

  describe("with a msgid", function()
    it("the connection closed without an answer: sent again once, the customer sees it once", function()
      local client, transport = cold_client()
      standin.script(SEND_MSG, { close = true }, 1)
      local res, err = send(client, { msgid = "m-close" })
      assert.is_nil(err)
      assert.are.same({ errcode = 0, errmsg = "ok", msgid = "m-close" }, res)
      assert.are.same({ [SYNC_MSG] = 1, [GETTOKEN] = 1, [SEND_MSG] = 2 }, standin.counts())
      assert.are.same({ "m-close", "m-close" }, msgids(SEND_MSG))
      assert.are.same({ "m-close" }, delivered_msgids())
      -- the library's own retry: two exchanges (a new connection gets no resend from libcurl)
      assert.are.equal(2, exchanges(transport))
    end)

    it("no answer within the timeout, WeCom acting on it late: sent again, delivered once", function()
      local client = new_client{ timeout = SHORT, warm = true }
      standin.script(SEND_MSG, { delay = HOLD }, 1) -- held, then the normal answer: the message goes through
      local res, err = send(client, { msgid = "m-late" })
      assert.is_nil(err)
      assert.are.same({ errcode = 0, errmsg = "ok", msgid = "m-late" }, res)
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 2 }, standin.counts())
      assert.are.same({ "m-late", "m-late" }, msgids(SEND_MSG))
      -- once the held request has woken and been answered, the customer still has one message
      assert.are.equal(1, settle())
      assert.are.same({ "m-late" }, delivered_msgids())
    end)

    it("never answered: two requests, then the timeout; never more", function()
      local client = new_client{ timeout = SHORT, warm = true }
      standin.script(SEND_MSG, { delay = HOLD, close = true }, -1)
      local res, err = send(client, { msgid = "m-never" })
      assert.is_nil(res)
      assert.are.same({ "transport", "timeout", 2 }, { err.kind, err.reason, err.attempts })
      assert.are.same({ "m-never", "m-never" }, msgids(SEND_MSG))
      assert.are.equal(2, settle())
      assert.are.same({}, delivered_msgids())
    end)
  end)

  describe("without a msgid", function()
    it("no answer within the timeout: one request, the error comes back, and WeCom delivered it once", function()
      local client = new_client{ timeout = SHORT, warm = true, auto_msgid = false }
      standin.script(SEND_MSG, { delay = HOLD }, 1)
      local res, err = send(client)
      assert.is_nil(res)
      assert.are.same({ "transport", "timeout", 1, true }, { err.kind, err.reason, err.attempts, err.maybe_sent })
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 1 }, standin.counts())
      -- what a retry would have doubled: the held request went through after all
      assert.are.equal(1, settle())
      local delivered = standin.delivered()
      assert.are.same({ 1, "hello" }, { #delivered, delivered[1].text.content })
    end)

    it("the connection closed without an answer, on a new connection: one request, the error comes back", function()
      local client, transport = cold_client{ auto_msgid = false }
      standin.script(SEND_MSG, { close = true }, 1)
      local res, err = send(client)
      assert.is_nil(res)
      assert.are.same({ "transport", "recv", 1, "Empty reply from server", true },
        { err.kind, err.reason, err.attempts, err.message, err.maybe_sent })
      assert.are.same({ [SYNC_MSG] = 1, [GETTOKEN] = 1, [SEND_MSG] = 1 }, standin.counts())
      assert.are.equal(1, exchanges(transport))
    end)
  end)

  describe("below the library: the transport's resend on a dropped kept-alive connection", function()
    it("closed once on a reused connection: libcurl sends again by itself, one exchange", function()
      local client, transport = new_client()
      assert.truthy(kf.sync_msg(client, "kf")) -- the connection is open and kept alive
      standin.script(SEND_MSG, { close = true }, 1)
      local res, err = send(client, { msgid = "m-reused" })
      assert.is_nil(err)
      assert.are.same({ errcode = 0, errmsg = "ok", msgid = "m-reused" }, res)
      assert.are.same({ [GETTOKEN] = 1, [SYNC_MSG] = 1, [SEND_MSG] = 2 }, standin.counts())
      -- gettoken, sync_msg and the send: libcurl's resend is not an exchange
      assert.are.equal(3, exchanges(transport))
      assert.are.same({ "m-reused" }, delivered_msgids())
    end)

    it("without a msgid (auto_msgid = false): over a new connection, which libcurl never sends twice", function()
      local client, transport = new_client{ auto_msgid = false }
      assert.truthy(kf.sync_msg(client, "kf")) -- a kept-alive connection the send does not take
      standin.script(SEND_MSG, { close = true }, 1)
      local res, err = send(client)
      assert.is_nil(res)
      assert.are.same({ "transport", "recv", 1, true }, { err.kind, err.reason, err.attempts, err.maybe_sent })
      assert.is_nil(err.resent)
      assert.are.same({ [GETTOKEN] = 1, [SYNC_MSG] = 1, [SEND_MSG] = 1 }, standin.counts())
      assert.are.same({ requests = 3, connects = 2 }, transport:stats())
    end)

    it("closed every time on a reused connection, with a msgid: two requests, no retry on top", function()
      local client, transport = new_client()
      assert.truthy(kf.sync_msg(client, "kf"))
      standin.script(SEND_MSG, { close = true }, -1)
      local res, err = send(client, { msgid = "m-closed" })
      assert.is_nil(res)
      assert.are.same({ "transport", "recv", 1, true }, { err.kind, err.reason, err.attempts, err.resent })
      -- the exchange went over the kept-alive connection and libcurl resent it on a new one: no third copy
      assert.are.same({ "m-closed", "m-closed" }, msgids(SEND_MSG))
      assert.are.equal(2 + 1, exchanges(transport)) -- gettoken, sync_msg, the send once
      assert.are.same({}, delivered_msgids())
    end)
  end)

  describe("opts.msgid = true", function()
    it("makes a msgid of [0-9a-zA-Z_-], at most 32 bytes, returned in res.msgid and used on both tries", function()
      local client = new_client()
      standin.script(SEND_MSG, { truncate = true }, 1)
      local res, err = send(client, { msgid = true })
      assert.is_nil(err)
      local msgid = res.msgid
      assert.are.equal("string", type(msgid))
      assert.truthy(msgid:find(MSGID) and #msgid <= 32, msgid)
      assert.are.same({ errcode = 0, errmsg = "ok", msgid = msgid }, res)
      assert.are.same({ msgid, msgid }, msgids(SEND_MSG))
      assert.are.same({ msgid }, delivered_msgids())
    end)

    it("makes a new one for every send", function()
      local client = new_client()
      local seen, n = {}, 0
      for _ = 1, 20 do
        standin.wrote("wkKF", "wmCUSTOMER") -- WeCom takes 5 sends per customer message: one before each
        local res = assert(send(client, { msgid = true }))
        if not seen[res.msgid] then
          seen[res.msgid] = true
          n = n + 1
        end
      end
      assert.are.equal(20, n)
      assert.are.equal(20, #standin.delivered())
    end)
  end)

  describe("client option auto_msgid = true", function()
    it("gives every send a msgid, so a send is retried after a reset mid-response", function()
      local client = new_client{ auto_msgid = true }
      standin.script(SEND_MSG, { truncate = true }, 1)
      local res, err = send(client)
      assert.is_nil(err)
      assert.truthy(res.msgid:find(MSGID) and #res.msgid <= 32, res.msgid)
      assert.are.same({ res.msgid, res.msgid }, msgids(SEND_MSG))
      assert.are.same({ res.msgid }, delivered_msgids())
    end)

    it("keeps a msgid the caller gave", function()
      local client = new_client{ auto_msgid = true }
      assert.are.same({ errcode = 0, errmsg = "ok", msgid = "mine" }, send(client, { msgid = "mine" }))
      assert.are.same({ "mine" }, msgids(SEND_MSG))
    end)

    it("also covers the other sends (send_menu)", function()
      local client = new_client{ auto_msgid = true }
      standin.script(SEND_MSG, { status = 503, body = "busy" }, 1)
      local res, err = kf.send_menu(client, "kf", "wmCUSTOMER", "wkKF",
        { list = { { type = "click", click = { id = "1", content = "yes" } } } })
      assert.is_nil(err)
      assert.are.same({ res.msgid, res.msgid }, msgids(SEND_MSG))
      assert.are.equal(1, #standin.delivered())
    end)
  end)

  describe("client option retries", function()
    it("0: nothing is tried again, not even with a msgid", function()
      local client, transport = new_client{ retries = 0 }
      standin.script(SEND_MSG, { truncate = true }, 1)
      local res, err = send(client, { msgid = "m-0" })
      assert.is_nil(res)
      assert.are.same({ "transport", "recv", 1 }, { err.kind, err.reason, err.attempts })
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 1 }, standin.counts())
      assert.are.equal(2, exchanges(transport))
    end)

    it("0: a refused connection is tried once", function()
      local client, transport = new_client{ retries = 0, base_url = "http://127.0.0.1:" .. closed_port() }
      local res, err = send(client)
      assert.is_nil(res)
      assert.are.same({ "transport", "connect", 1 }, { err.kind, err.reason, err.attempts })
      assert.are.equal(1, exchanges(transport))
    end)

    it("1 with a connect that never completes, without a msgid: tried again, since nothing reached WeCom", function()
      local port, close = ports.unanswered()
      local client, transport = new_client{ warm = true, timeout = SHORT, base_url = "http://127.0.0.1:" .. port }
      local res, err = send(client)
      close()
      assert.is_nil(res)
      assert.are.same({ "transport", "connect", 2 }, { err.kind, err.reason, err.attempts })
      assert.are.equal(2, exchanges(transport))
      assert.are.same({ [GETTOKEN] = 1 }, standin.counts())
    end)

    it("3 with a connection that is always refused: exactly 4 attempts", function()
      local client, transport = new_client{ retries = 3, base_url = "http://127.0.0.1:" .. closed_port() }
      local res, err = send(client)
      assert.is_nil(res)
      assert.are.same({ "transport", "connect", 4 }, { err.kind, err.reason, err.attempts })
      assert.are.equal(4, exchanges(transport))
    end)

    it("3 with a 503 every time, with a msgid: exactly 4 requests", function()
      local client = new_client{ retries = 3 }
      standin.script(SEND_MSG, { status = 503, body = "busy" }, -1)
      local res, err = send(client, { msgid = "m-3" })
      assert.is_nil(res)
      assert.are.same({ "http", 503, 4 }, { err.kind, err.status, err.attempts })
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 4 }, standin.counts())
      assert.are.same({ "m-3", "m-3", "m-3", "m-3" }, msgids(SEND_MSG))
    end)
  end)

  describe("one budget per call, shared with the repeat after a refused token", function()
    local BUSY = { status = 503, body = "busy" }
    local EXPIRE = { expire_token = true } -- every token expires, then the normal answer: 42001

    it("503, 42001, 503, 503 with retries = 1: three requests, not four; the refused one is not counted", function()
      local client, transport = new_client()
      standin.script(SEND_MSG, BUSY, 1)
      standin.script(SEND_MSG, EXPIRE, 1)
      standin.script(SEND_MSG, BUSY, 1)
      standin.script(SEND_MSG, BUSY, 1)
      local res, err = send(client, { msgid = "m-budget" })
      assert.is_nil(res)
      assert.are.same({ "http", 503, 3 }, { err.kind, err.status, err.attempts })
      -- 503 (1 of retries + 1 = 2), 42001 (refused: not counted), new token, 503 (2 of 2): the error comes back
      assert.are.same({ [GETTOKEN] = 2, [SEND_MSG] = 3 }, standin.counts())
      assert.are.same({ "m-budget", "m-budget", "m-budget" }, msgids(SEND_MSG))
      assert.are.equal(2 + 3, exchanges(transport))
      assert.are.same({}, delivered_msgids())
    end)

    it("42001, 503, 503 with retries = 1: the retry after the new token's 503 is still there", function()
      local client = new_client()
      standin.script(SEND_MSG, EXPIRE, 1)
      standin.script(SEND_MSG, BUSY, 2)
      local res, err = send(client, { msgid = "m-refused-first" })
      assert.is_nil(res)
      assert.are.same({ "http", 503, 3 }, { err.kind, err.status, err.attempts })
      assert.are.same({ [GETTOKEN] = 2, [SEND_MSG] = 3 }, standin.counts())
    end)

    it("503, 42001, then ok with retries = 1: delivered once", function()
      local client = new_client()
      standin.script(SEND_MSG, BUSY, 1)
      standin.script(SEND_MSG, EXPIRE, 1)
      local res, err = send(client, { msgid = "m-through" })
      assert.is_nil(err)
      assert.are.same({ errcode = 0, errmsg = "ok", msgid = "m-through" }, res)
      assert.are.same({ [GETTOKEN] = 2, [SEND_MSG] = 3 }, standin.counts())
      assert.are.same({ "m-through" }, delivered_msgids())
    end)

    it("retries = 0 still fetches a refused token anew and makes the call once more", function()
      local client = new_client{ retries = 0 }
      standin.script(SEND_MSG, EXPIRE, 1)
      local res, err = send(client, { msgid = "m-0-token" })
      assert.is_nil(err)
      assert.are.same({ errcode = 0, errmsg = "ok", msgid = "m-0-token" }, res)
      assert.are.same({ [GETTOKEN] = 2, [SEND_MSG] = 2 }, standin.counts())
    end)

    it("retries = 3, 503 always with a refused token on the way: four requests WeCom may act on, plus one", function()
      local client = new_client{ retries = 3 }
      standin.script(SEND_MSG, BUSY, 1)
      standin.script(SEND_MSG, EXPIRE, 1)
      standin.script(SEND_MSG, BUSY, -1)
      local res, err = send(client, { msgid = "m-3-budget" })
      assert.is_nil(res)
      assert.are.same({ "http", 503, 5 }, { err.kind, err.status, err.attempts })
      assert.are.same({ [GETTOKEN] = 2, [SEND_MSG] = 5 }, standin.counts())
    end)
  end)

  describe("send_msg_on_event", function()
    before_each(function()
      standin.welcome_code("WELCOME_CODE")
    end)

    it("with its msg_id, retried after a reset mid-response: the code is used once", function()
      local client = new_client()
      standin.script(SEND_MSG_ON_EVENT, { truncate = true }, 1)
      local res, err = kf.send_text_on_event(client, "kf", "WELCOME_CODE", "welcome", "m-event")
      assert.is_nil(err)
      assert.are.same({ errcode = 0, errmsg = "ok", msgid = "m-event" }, res)
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG_ON_EVENT] = 2 }, standin.counts())
      assert.are.same({ "m-event" }, delivered_msgids())
    end)

    it("without one (auto_msgid = false): one request", function()
      local client = new_client{ auto_msgid = false }
      standin.script(SEND_MSG_ON_EVENT, { truncate = true }, 1)
      local res, err = kf.send_text_on_event(client, "kf", "WELCOME_CODE", "welcome")
      assert.is_nil(res)
      assert.are.same({ "transport", "recv", 1, true }, { err.kind, err.reason, err.attempts, err.maybe_sent })
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG_ON_EVENT] = 1 }, standin.counts())
    end)

    it("its answer lost after WeCom took it: the retry refused as a repeat is the first try's success", function()
      local client = cold_client()
      standin.script(SEND_MSG_ON_EVENT, { lose_answer = true }, 1)
      local res, err = kf.send_text_on_event(client, "kf", "WELCOME_CODE", "welcome", "m-event-lost")
      assert.is_nil(err)
      assert.are.same({ errcode = 0, errmsg = "ok", msgid = "m-event-lost", duplicate = true }, res)
      assert.are.same({ "m-event-lost" }, delivered_msgids())
    end)
  end)

  describe("a repeated msgid (WeCom refuses it: errcode " .. errors.DUPLICATE_MSGID_ERRCODE .. ", assumed)", function()
    it("the answer lost after WeCom took it: sent again, refused as a repeat: success, res.duplicate", function()
      local client, transport = cold_client()
      standin.script(SEND_MSG, { lose_answer = true }, 1)
      local res, err = send(client, { msgid = "m-lost" })
      assert.is_nil(err)
      assert.are.same({ errcode = 0, errmsg = "ok", msgid = "m-lost", duplicate = true }, res)
      assert.are.same({ "m-lost", "m-lost" }, msgids(SEND_MSG))
      assert.are.same({ "m-lost" }, delivered_msgids())
      assert.are.equal(2, exchanges(transport))
    end)

    it("the same with the msgid auto_msgid made: returned in res.msgid", function()
      local client = cold_client()
      standin.script(SEND_MSG, { lose_answer = true }, 1)
      local res, err = send(client)
      assert.is_nil(err)
      assert.is_true(res.duplicate)
      assert.truthy(res.msgid:find(MSGID))
      assert.are.equal(32, #res.msgid)
      assert.are.same({ res.msgid, res.msgid }, msgids(SEND_MSG))
      assert.are.same({ res.msgid }, delivered_msgids())
    end)

    it("the answer lost on a kept-alive connection: libcurl's own resend, refused as a repeat, is a success", function()
      local client, transport = new_client()
      assert.truthy(kf.sync_msg(client, "kf"))
      standin.script(SEND_MSG, { lose_answer = true }, 1)
      local res, err = send(client, { msgid = "m-lost-reused" })
      assert.is_nil(err)
      assert.are.same({ errcode = 0, errmsg = "ok", msgid = "m-lost-reused", duplicate = true }, res)
      assert.are.same({ "m-lost-reused" }, delivered_msgids())
      assert.are.equal(3, exchanges(transport)) -- no retry of the library's own
    end)

    it("a msgid the caller used before: nil, err, reason duplicate_msgid, nothing delivered again", function()
      local client = new_client()
      assert.truthy(send(client, { msgid = "m-used" }))
      local res, err = send(client, { msgid = "m-used" })
      assert.is_nil(res)
      assert.are.same({ "api", errors.DUPLICATE_MSGID_ERRCODE, "duplicate_msgid", 1 },
        { err.kind, err.errcode, err.reason, err.attempts })
      assert.is_nil(err.maybe_sent)
      assert.are.equal("wechat: api error 40058 (duplicate msgid m-used): msgid m-used already used on this KF account"
        .. " in send_text", tostring(err))
      assert.are.same({ "m-used" }, delivered_msgids())
      -- per KF account: another open_kfid takes it
      assert.truthy(kf.send_text(client, "kf", "wmCUSTOMER", "wkOTHER", "hello", { msgid = "m-used" }))
    end)

    it("any other refusal of the retry: nil, err with maybe_sent, since the first try may have landed", function()
      local client = cold_client()
      standin.script(SEND_MSG, { lose_answer = true }, 1)
      standin.script(SEND_MSG, { errcode = 95018, errmsg = "send msg session status invalid" }, 1)
      local res, err = send(client, { msgid = "m-unknown" })
      assert.is_nil(res)
      assert.are.same({ "api", 95018, true, 2 }, { err.kind, err.errcode, err.maybe_sent, err.attempts })
      assert.is_nil(err.reason)
      assert.are.equal("wechat: api error 95018 (session status does not allow sending) in send_text", tostring(err))
      assert.are.equal("send msg session status invalid", err.errmsg)
      assert.are.same({ "m-unknown" }, delivered_msgids())
    end)

    it("a transport error ending the call after a try whose fate is unknown: maybe_sent", function()
      local client = new_client{ timeout = SHORT, warm = true }
      standin.script(SEND_MSG, { delay = HOLD, close = true }, -1)
      local res, err = send(client, { msgid = "m-gone" })
      assert.is_nil(res)
      assert.are.same({ "transport", "timeout", 2, true }, { err.kind, err.reason, err.attempts, err.maybe_sent })
      assert.are.equal(2, settle())
    end)

    it("a refused connection is no unknown fate: no maybe_sent", function()
      local client = new_client{ base_url = "http://127.0.0.1:" .. closed_port() }
      local res, err = send(client, { msgid = "m-refused" })
      assert.is_nil(res)
      assert.are.same({ "transport", "connect", 2 }, { err.kind, err.reason, err.attempts })
      assert.is_nil(err.maybe_sent)
    end)

    it("sync_msg, which has no effect to be unsure of, never says maybe_sent", function()
      local client = new_client{ retries = 0 }
      standin.script(SYNC_MSG, { truncate = true }, 1)
      local res, err = kf.sync_msg(client, "kf")
      assert.is_nil(res)
      assert.are.same({ "transport", "recv" }, { err.kind, err.reason })
      assert.is_nil(err.maybe_sent)
    end)
  end)

  describe("a bad token on send_msg", function()
    it("40001 (invalid credential) drops the token, fetches a new one and sends once more", function()
      local client = new_client()
      standin.script(SEND_MSG, { errcode = 40001, errmsg = "invalid credential" }, 1)
      local res, err = send(client, { msgid = "m-40001" })
      assert.is_nil(err)
      assert.are.same({ errcode = 0, errmsg = "ok", msgid = "m-40001" }, res)
      assert.are.same({ [GETTOKEN] = 2, [SEND_MSG] = 2 }, standin.counts())
      assert.are.same({ "m-40001" }, delivered_msgids())
    end)

    it("40001 from gettoken itself is the error, not a reason to fetch again", function()
      local client = new_client()
      standin.script(GETTOKEN, { errcode = 40001, errmsg = "invalid credential" }, 1)
      local res, err = send(client)
      assert.is_nil(res)
      assert.are.same({ "api", 40001 }, { err.kind, err.errcode })
      assert.are.same({ [GETTOKEN] = 1 }, standin.counts())
    end)
  end)
end)
