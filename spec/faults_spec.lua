-- Faults between the library and WeCom, over libcurl, played by the stand-in: each one comes back as `nil, err`
-- of the right kind, and the stand-in's counts show exactly how often each request went out, so nothing retries
-- without bound (most scripts below answer every request, count -1, and still only one or two requests come).
--
-- The retry rule under test (`Client:post` in lua/wechat/work.lua, client option `retries`, default 1):
--   connect / resolve failures: tried again (nothing reached WeCom);
--   timeout / send / recv failures and HTTP 502, 503, 504: tried again only when the request is idempotent
--   (gettoken, sync_msg, a send carrying a msgid, which WeCom delivers once);
--   anything else (HTTP 500, a body that is not JSON, a response over the cap, a WeCom errcode): never.
-- The counts per fault, on both transports, are in the table at the top of spec/retry_spec.lua.
local interpreter = require "helpers.interpreter"
local standin = require "helpers.standin"
local work = require "wechat.work"
local kf = require "wechat.work.kf.message"
local curl = require "wechat.work.transport.curl"
local memory = require "wechat.work.store.memory"
local ports = require "helpers.ports"

local SEND_MSG = "/cgi-bin/kf/send_msg"
local SYNC_MSG = "/cgi-bin/kf/sync_msg"
local GETTOKEN = "/cgi-bin/gettoken"
local TIMEOUT = 10    -- client timeout in seconds for exchanges that should succeed, however busy the machine
local SHORT = 1       -- client timeout where the timeout is the point
local HOLD = 3        -- seconds the stand-in holds a request that "never answers": well past SHORT
local MB = 1024 * 1024
local CAP = 4 * MB    -- the default max_response

local closed_port = ports.closed
local settle = standin.settle
local written = standin.written

-- A client over its own curl transport, so the spec can read how many exchanges the library made
-- (transport:stats().requests) beside what the stand-in saw. warm: the token is fetched first (one gettoken) by
-- another client, with TIMEOUT, into the store this one uses, so a short timeout applies to the fault alone.
local function new_client(opts)
  opts = opts or {}
  local transport = assert(curl.new{ timeout = opts.timeout or TIMEOUT, max_response = opts.max_response })
  local function make(t, store)
    return work.client{
      corp_id = standin.CORPID,
      agents = { kf = { secret = standin.KF_SECRET } },
      base_url = opts.base_url or standin.url(),
      retries = opts.retries,
      -- "without msgid" below means none at all: the faults are about what a send without one may do
      auto_msgid = opts.auto_msgid or false,
      token_store = store,
      transport = t,
    }
  end
  local store = opts.token_store or memory.new()
  if opts.warm then
    assert(make(assert(curl.new{ timeout = TIMEOUT }), store):token("kf"))
  end
  return make(transport, store), transport
end

local function exchanges(transport)
  return transport:stats().requests
end

-- A field of /proc/self/status in kB: VmRSS (resident now), VmHWM (the peak since the last reset_peak).
local function status_kb(field)
  local f = assert(io.open("/proc/self/status", "r"))
  local text = f:read("*a")
  f:close()
  return tonumber(text:match(field .. ":%s*(%d+)"))
end

-- Sets the peak (VmHWM) back to what is resident now (Linux >= 4.0: 5 into clear_refs), so that the peak read
-- after a call shows the most it held at any moment of it, even memory it filled and freed again.
local function reset_peak()
  collectgarbage()
  collectgarbage()
  local f = assert(io.open("/proc/self/clear_refs", "w"))
  assert(f:write("5"))
  f:close()
  return status_kb("VmHWM")
end

local function msgids(path)
  local out = {}
  for i, body in ipairs(standin.bodies(path)) do
    out[i] = body.msgid or "none"
  end
  return out
end

local function send(client, msgid)
  return kf.send_text(client, "kf", "wmCUSTOMER", "wkKF", "hello", msgid and { msgid = msgid } or nil)
end

describe("faults over libcurl", function()
  setup(standin.start)
  before_each(function()
    standin.reset()
    standin.wrote("wkKF", "wmCUSTOMER")
    standin.wrote("wkK", "wmC")
  end)
  -- a spec that failed before its own settle() leaves no sleeping request behind for the next one
  after_each(settle)

  describe("connection refused", function()
    it("gettoken: transport error 'connect', tried twice, nothing sent", function()
      local client, transport = new_client{ base_url = "http://127.0.0.1:" .. closed_port() }
      local res, err = send(client)
      assert.is_nil(res)
      assert.are.same({ "transport", "connect", 2, "send_text" }, { err.kind, err.reason, err.attempts, err.op })
      assert.truthy(err.message:find("^gettoken: Failed to connect to 127%.0%.0%.1 port %d+ after %d+ ms: "))
      assert.are.equal(2, exchanges(transport))
      assert.is_nil(tostring(err):find(standin.KF_SECRET, 1, true))
    end)

    it("a send without msgid, token at hand: tried twice as well (it never reached WeCom)", function()
      -- the first client gets the token into a store the second one shares; the second one talks to a closed port
      local store = require("wechat.work.store.memory").new()
      assert.truthy(kf.sync_msg(new_client{ token_store = store }, "kf"))
      local client, transport = new_client{ base_url = "http://127.0.0.1:" .. closed_port(), token_store = store }
      local res, err = send(client)
      assert.is_nil(res)
      assert.are.same({ "transport", "connect", 2, "send_text" }, { err.kind, err.reason, err.attempts, err.op })
      assert.truthy(err.message:find("^Failed to connect to 127%.0%.0%.1 port %d+ after %d+ ms: "))
      assert.are.equal(2, exchanges(transport))
      assert.are.same({ [GETTOKEN] = 1, [SYNC_MSG] = 1 }, standin.counts())
    end)
  end)

  describe("a server that accepts and never answers (held past the client timeout, then closed)", function()
    local NEVER = { delay = HOLD, close = true }

    it("a send without msgid: timeout, one request, not retried", function()
      local client, transport = new_client{ timeout = SHORT, warm = true }
      standin.script(SEND_MSG, NEVER, -1)
      local res, err = send(client)
      assert.is_nil(res)
      assert.are.same({ "transport", "timeout", 1, "send_text", true },
        { err.kind, err.reason, err.attempts, err.op, err.maybe_sent })
      assert.truthy(err.message:find("^Operation timed out after %d+ milliseconds with 0 bytes received$"))
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 1 }, standin.counts())
      assert.are.equal(1, exchanges(transport))
      assert.are.equal(1, settle())
      assert.are.same({}, standin.delivered())
    end)

    it("a send with a msgid: timeout, two requests with the same msgid, delivered never", function()
      local client, transport = new_client{ timeout = SHORT, warm = true }
      standin.script(SEND_MSG, NEVER, -1)
      local res, err = send(client, "m-never")
      assert.is_nil(res)
      assert.are.same({ "transport", "timeout", 2, "send_text" }, { err.kind, err.reason, err.attempts, err.op })
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 2 }, standin.counts())
      assert.are.same({ "m-never", "m-never" }, msgids(SEND_MSG))
      assert.are.equal(2, exchanges(transport))
      assert.are.equal(2, settle())
      assert.are.same({}, standin.delivered())
    end)

    it("sync_msg: timeout after two requests", function()
      local client = new_client{ timeout = SHORT, warm = true }
      standin.script(SYNC_MSG, NEVER, -1)
      local res, err = kf.sync_msg(client, "kf", { limit = 10 })
      assert.is_nil(res)
      assert.are.same({ "transport", "timeout", 2, "sync_msg" }, { err.kind, err.reason, err.attempts, err.op })
      assert.are.same({ [GETTOKEN] = 1, [SYNC_MSG] = 2 }, standin.counts())
      assert.are.equal(2, settle())
    end)

    it("gettoken: timeout after two requests, and the send never goes out", function()
      local client = new_client{ timeout = SHORT }
      standin.script(GETTOKEN, NEVER, -1)
      local res, err = send(client)
      assert.is_nil(res)
      assert.are.same({ "transport", "timeout", 2, "send_text" }, { err.kind, err.reason, err.attempts, err.op })
      assert.truthy(err.message:find("^gettoken: Operation timed out after %d+ milliseconds with 0 bytes received$"))
      assert.are.same({ [GETTOKEN] = 2 }, standin.counts())
      assert.are.equal(2, settle())
    end)
  end)

  describe("an answer cut short (Content-Length 72, 36 bytes, then a clean close: FIN)", function()
    local CUT = "transfer closed with 36 bytes remaining to read"

    it("a send without msgid: transport error 'recv', one request", function()
      local client = new_client()
      standin.script(SEND_MSG, { truncate = true }, -1)
      local res, err = send(client)
      assert.is_nil(res)
      assert.are.same({ "transport", "recv", 1, CUT }, { err.kind, err.reason, err.attempts, err.message })
      assert.are.equal("wechat: transport error: " .. CUT .. " in send_text", tostring(err))
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 1 }, standin.counts())
    end)

    it("a send with a msgid: 'recv' after two requests with the same msgid", function()
      local client = new_client()
      standin.script(SEND_MSG, { truncate = true }, -1)
      local res, err = send(client, "m-cut")
      assert.is_nil(res)
      assert.are.same({ "transport", "recv", 2, CUT }, { err.kind, err.reason, err.attempts, err.message })
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 2 }, standin.counts())
      assert.are.same({ "m-cut", "m-cut" }, msgids(SEND_MSG))
      assert.are.same({}, standin.delivered())
    end)

    it("a send with a msgid, cut once: the retry gets through, delivered once", function()
      local client = new_client()
      standin.script(SEND_MSG, { truncate = true }, 1)
      local res, err = send(client, "m-cut-once")
      assert.is_nil(err)
      assert.are.same({ errcode = 0, errmsg = "ok", msgid = "m-cut-once" }, res)
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 2 }, standin.counts())
      assert.are.same({ "m-cut-once", "m-cut-once" }, msgids(SEND_MSG))
      local delivered = standin.delivered()
      assert.are.same({ 1, "m-cut-once" }, { #delivered, delivered[1].msgid })
    end)

    it("gettoken: 'recv' after two requests", function()
      local client = new_client()
      standin.script(GETTOKEN, { truncate = true }, -1)
      local res, err = send(client)
      assert.is_nil(res)
      assert.are.same({ "transport", "recv", 2, "gettoken: " .. CUT }, { err.kind, err.reason, err.attempts,
        err.message })
      assert.are.same({ [GETTOKEN] = 2 }, standin.counts())
    end)
  end)

  describe("a TCP reset in the middle of the response (Content-Length 72, 36 bytes, then RST)", function()
    local RESET = "Recv failure: Connection reset by peer"

    it("a send without msgid: transport error 'recv', one request", function()
      local client, transport = new_client()
      standin.script(SEND_MSG, { reset = true }, -1)
      local res, err = send(client)
      assert.is_nil(res)
      assert.are.same({ "transport", "recv", 1, RESET }, { err.kind, err.reason, err.attempts, err.message })
      assert.are.equal("wechat: transport error: " .. RESET .. " in send_text", tostring(err))
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 1 }, standin.counts())
      assert.are.equal(2, exchanges(transport))
      assert.are.same({}, standin.delivered())
    end)

    it("a send with a msgid: 'recv' after two requests with the same msgid", function()
      local client, transport = new_client()
      standin.script(SEND_MSG, { reset = true }, -1)
      local res, err = send(client, "m-rst")
      assert.is_nil(res)
      assert.are.same({ "transport", "recv", 2, RESET }, { err.kind, err.reason, err.attempts, err.message })
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 2 }, standin.counts())
      assert.are.same({ "m-rst", "m-rst" }, msgids(SEND_MSG))
      assert.are.equal(3, exchanges(transport))
      assert.are.same({}, standin.delivered())
    end)

    it("a send with a msgid, reset once: the retry gets through, delivered once", function()
      local client = new_client()
      standin.script(SEND_MSG, { reset = true }, 1)
      local res, err = send(client, "m-rst-once")
      assert.is_nil(err)
      assert.are.same({ errcode = 0, errmsg = "ok", msgid = "m-rst-once" }, res)
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 2 }, standin.counts())
      local delivered = standin.delivered()
      assert.are.same({ 1, "m-rst-once" }, { #delivered, delivered[1].msgid })
    end)

    it("gettoken: 'recv' after two requests", function()
      local client = new_client()
      standin.script(GETTOKEN, { reset = true }, -1)
      local res, err = send(client)
      assert.is_nil(res)
      assert.are.same({ "transport", "recv", 2, "gettoken: " .. RESET },
        { err.kind, err.reason, err.attempts, err.message })
      assert.are.same({ [GETTOKEN] = 2 }, standin.counts())
    end)
  end)

  describe("HTTP 5xx", function()
    it("500: http error, never retried, even with a msgid", function()
      local client = new_client()
      standin.script(SEND_MSG, { status = 500, body = "oops" }, -1)
      local res, err = send(client, "m-500")
      assert.is_nil(res)
      assert.are.same({ "http", 500, 1 }, { err.kind, err.status, err.attempts })
      assert.are.equal("wechat: http error status 500: unexpected HTTP status in send_text", tostring(err))
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 1 }, standin.counts())
    end)

    for _, status in ipairs({ 502, 503, 504 }) do
      it(status .. " to a send without msgid: one request", function()
        local client = new_client()
        standin.script(SEND_MSG, { status = status, body = "busy" }, -1)
        local res, err = send(client)
        assert.is_nil(res)
        assert.are.same({ "http", status, 1 }, { err.kind, err.status, err.attempts })
        assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 1 }, standin.counts())
      end)

      it(status .. " to a send with a msgid: two requests, then the error", function()
        local client = new_client()
        standin.script(SEND_MSG, { status = status, body = "busy" }, -1)
        local res, err = send(client, "m-" .. status)
        assert.is_nil(res)
        assert.are.same({ "http", status, 2 }, { err.kind, err.status, err.attempts })
        assert.are.equal("wechat: http error status " .. status .. ": unexpected HTTP status in send_text",
          tostring(err))
        assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 2 }, standin.counts())
        assert.are.same({ "m-" .. status, "m-" .. status }, msgids(SEND_MSG))
      end)
    end

    it("503 once to a send with a msgid: the retry gets through, delivered once", function()
      local client = new_client()
      standin.script(SEND_MSG, { status = 503, body = "busy" }, 1)
      local res, err = send(client, "m-503-once")
      assert.is_nil(err)
      assert.are.same({ errcode = 0, errmsg = "ok", msgid = "m-503-once" }, res)
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 2 }, standin.counts())
      assert.are.equal(1, #standin.delivered())
    end)

    it("502 to sync_msg: two requests", function()
      local client = new_client()
      standin.script(SYNC_MSG, { status = 502, body = "bad gateway" }, -1)
      local res, err = kf.sync_msg(client, "kf")
      assert.is_nil(res)
      assert.are.same({ "http", 502, 2, "sync_msg" }, { err.kind, err.status, err.attempts, err.op })
      assert.are.same({ [GETTOKEN] = 1, [SYNC_MSG] = 2 }, standin.counts())
    end)
  end)

  describe("a 200 whose body is not WeCom's JSON object", function()
    local BODIES = {
      { "not JSON", "<html>gateway says hi</html>" },
      { "truncated JSON", '{"errcode":0,"errmsg":"o' },
      { "an empty body", "" },
      { "a JSON array", "[1,2]" },
      { "an object without errcode", '{"msgid":"m-decode"}' },
    }
    for _, case in ipairs(BODIES) do
      it(case[1] .. ": decode error, one request, even with a msgid", function()
        local client = new_client()
        standin.script(SEND_MSG, { status = 200, body = case[2] }, -1)
        local res, err = send(client, "m-decode")
        assert.is_nil(res)
        assert.are.same({ "decode", 1 }, { err.kind, err.attempts })
        assert.are.equal("wechat: decode error: response is not WeCom's JSON (an object with errcode) in send_text",
          tostring(err))
        assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 1 }, standin.counts())
      end)
    end

    it("a gettoken answer without access_token: decode error, the send never goes out", function()
      local client = new_client()
      standin.script(GETTOKEN, { status = 200, body = '{"errcode":0,"errmsg":"ok"}' }, 1)
      local res, err = send(client)
      assert.is_nil(res)
      assert.are.same({ "decode", "gettoken: no access_token in the answer" }, { err.kind, err.message })
      assert.are.same({ [GETTOKEN] = 1 }, standin.counts())
    end)
  end)

  describe("a body over the cap", function()
    -- The peak of this process's memory during the call, not the difference of two snapshots (a buffer filled and
    -- freed again would not show in those), and the bytes the stand-in got out before the client hung up: both far
    -- below 100 MB. Reading the whole body would push the peak over 100 MB (max_response = 200 MB fails both).
    it("100 MB: refused at the 4 MiB default cap, one request, memory stays bounded", function()
      local client = new_client()
      assert.truthy(kf.sync_msg(client, "kf")) -- token and connection first, so only the fault is measured
      standin.script(SEND_MSG, { huge = 100 * MB }, -1)
      local before = reset_peak()
      local res, err = send(client, "m-huge")
      local peak = status_kb("VmHWM") - before
      assert.is_nil(res)
      assert.are.same({ "transport", "too_large", 1, "response too large (over 4194304 bytes)" },
        { err.kind, err.reason, err.attempts, err.message })
      assert.are.same({ [GETTOKEN] = 1, [SYNC_MSG] = 1, [SEND_MSG] = 1 }, standin.counts())
      assert.is_true(peak < (CAP + 16 * MB) / 1024, "the peak (VmHWM) grew by " .. peak .. " kB")
      local out = written()
      assert.are.equal(1, #out)
      assert.is_true(out[1] < CAP + 16 * MB, "the stand-in wrote " .. out[1] .. " bytes")
    end)

    it("100 MB without Content-Length (chunked): reading stops at the cap, memory stays bounded", function()
      local client = new_client()
      assert.truthy(kf.sync_msg(client, "kf"))
      standin.script(SEND_MSG, { huge = 100 * MB, chunked = true }, -1)
      local before = reset_peak()
      local res, err = send(client, "m-huge")
      local peak = status_kb("VmHWM") - before
      assert.is_nil(res)
      assert.are.same({ "transport", "too_large", 1, "response too large (over 4194304 bytes)" },
        { err.kind, err.reason, err.attempts, err.message })
      assert.are.same({ [GETTOKEN] = 1, [SYNC_MSG] = 1, [SEND_MSG] = 1 }, standin.counts())
      assert.is_true(peak < (CAP + 16 * MB) / 1024, "the peak (VmHWM) grew by " .. peak .. " kB")
      local out = written()
      assert.are.equal(1, #out)
      assert.is_true(out[1] < CAP + 16 * MB, "the stand-in wrote " .. out[1] .. " bytes")
      -- and the client goes on: a new connection, a normal answer
      standin.reset()
      standin.wrote("wkKF", "wmCUSTOMER")
      assert.are.same({ errcode = 0, errmsg = "ok", msgid = "m-after" }, send(client, "m-after"))
    end)

    it("max_response: one byte over it is refused, exactly at it is read", function()
      local client = new_client{ max_response = 4096 }
      standin.script(GETTOKEN, { huge = 4097 }, 1)
      local res, err = send(client)
      assert.is_nil(res)
      assert.are.same({ "transport", "too_large", 1, "gettoken: response too large (over 4096 bytes)" },
        { err.kind, err.reason, err.attempts, err.message })
      standin.script(SEND_MSG, { huge = 4096 }, 1)
      res, err = send(client)
      assert.is_nil(err)
      -- read in full: {"errcode":0,"errmsg":"ok","padding":"xx...x"}, 4096 bytes in all
      assert.are.same({ 0, "ok", 4096 - 40 }, { res.errcode, res.errmsg, #res.padding })
      assert.are.same({ [GETTOKEN] = 2, [SEND_MSG] = 1 }, standin.counts())
    end)
  end)

  describe("gettoken failing", function()
    it("with an errcode: api error, no send; the next call fetches a token and goes through", function()
      local client = new_client()
      standin.script(GETTOKEN, { errcode = -1, errmsg = "system busy" }, 1)
      local res, err = send(client, "m-1")
      assert.is_nil(res)
      assert.are.same({ "api", -1, "system busy", 1, "send_text" },
        { err.kind, err.errcode, err.errmsg, err.attempts, err.op })
      assert.are.equal("wechat: api error -1 (system busy): gettoken failed in send_text", tostring(err))
      assert.are.same({ [GETTOKEN] = 1 }, standin.counts())
      res, err = send(client, "m-2")
      assert.is_nil(err)
      assert.are.same({ errcode = 0, errmsg = "ok", msgid = "m-2" }, res)
      assert.are.same({ [GETTOKEN] = 2, [SEND_MSG] = 1 }, standin.counts())
      assert.are.equal(1, #standin.delivered())
    end)

    it("with a 503 once: gettoken is tried again at once and the send goes through", function()
      local client = new_client()
      standin.script(GETTOKEN, { status = 503, body = "busy" }, 1)
      local res, err = send(client)
      assert.is_nil(err)
      assert.are.same({ errcode = 0, errmsg = "ok", msgid = "standin-msg-1" }, res)
      assert.are.same({ [GETTOKEN] = 2, [SEND_MSG] = 1 }, standin.counts())
    end)

    it("with a 503 always: http error after two gettokens, no send", function()
      local client = new_client()
      standin.script(GETTOKEN, { status = 503, body = "busy" }, -1)
      local res, err = send(client)
      assert.is_nil(res)
      assert.are.same({ "http", 503, 2, "gettoken: unexpected HTTP status" },
        { err.kind, err.status, err.attempts, err.message })
      assert.are.same({ [GETTOKEN] = 2 }, standin.counts())
    end)
  end)

  describe("a token that expires between two calls", function()
    it("send_text: the second call gets 42001, fetches a new token and sends once more", function()
      local client = new_client()
      assert.are.same({ errcode = 0, errmsg = "ok", msgid = "m-1" }, send(client, "m-1"))
      standin.expire_tokens()
      local res, err = send(client, "m-2")
      assert.is_nil(err)
      assert.are.same({ errcode = 0, errmsg = "ok", msgid = "m-2" }, res)
      assert.are.same({ [GETTOKEN] = 2, [SEND_MSG] = 3 }, standin.counts())
      local reqs = standin.requests(SEND_MSG)
      assert.are.equal(reqs[1].args.access_token, reqs[2].args.access_token)
      assert.are_not.equal(reqs[2].args.access_token, reqs[3].args.access_token)
      assert.are.same({ "m-1", "m-2" }, { standin.delivered()[1].msgid, standin.delivered()[2].msgid })
    end)

    it("sync_msg, the token expiring as the call arrives: one new token, one more request", function()
      local client = new_client()
      assert.truthy(kf.sync_msg(client, "kf"))
      standin.script(SYNC_MSG, { expire_token = true }, 1)
      local res, err = kf.sync_msg(client, "kf")
      assert.is_nil(err)
      assert.are.same({ 0, 0 }, { res.errcode, res.has_more })
      assert.are.same({ [GETTOKEN] = 2, [SYNC_MSG] = 3 }, standin.counts())
    end)

    it("expiring on every call: refreshed once, then the 42001 comes back", function()
      local client = new_client()
      standin.script(SEND_MSG, { expire_token = true }, -1)
      local res, err = send(client, "m-x")
      assert.is_nil(res)
      -- attempts counts both exchanges: the first, refused, and the one repeat with a new token
      assert.are.same({ "api", 42001, 2 }, { err.kind, err.errcode, err.attempts })
      assert.are.same({ [GETTOKEN] = 2, [SEND_MSG] = 2 }, standin.counts())
      assert.are.same({}, standin.delivered())
    end)
  end)

  describe("DNS failure", function()
    -- A child interpreter in a fresh network namespace (`unshare -n`, root only): it has no interface up, so no
    -- query can leave it and the name cannot be resolved; nothing is sent anywhere.
    local CHILD = [[
      local work = require "wechat.work"
      local kf = require "wechat.work.kf.message"
      local curl = require "wechat.work.transport.curl"
      local transport = assert(curl.new{ timeout = 2 })
      local client = work.client{ corp_id = "wwCORP", agents = { kf = { secret = "KF_SECRET" } },
        base_url = "http://wecom-standin.invalid", transport = transport }
      local res, err = kf.send_text(client, "kf", "wmC", "wkK", "hello")
      io.write(tostring(res), "|", err.kind, "|", err.reason, "|", err.attempts, "|", transport:stats().requests,
        "|", err.message)
    ]]

    local shell_quote = require("helpers.shell").quote
    local capabilities = require "helpers.capabilities"

    local function read_command(cmd)
      local p = assert(io.popen(cmd))
      local out = p:read("*a")
      p:close()
      return out
    end

    it("the base URL's host cannot be resolved: transport error 'resolve', tried twice", function()
      if not capabilities.has("network_namespace") then
        pending(capabilities.pending_message("network_namespace"))
        return
      end
      local setup_paths = "package.path = " .. string.format("%q", package.path)
        .. " package.cpath = " .. string.format("%q", package.cpath)
      local out = read_command("unshare -n " .. interpreter.command() .. " -e " .. shell_quote(setup_paths)
        .. " -e " .. shell_quote(CHILD) .. " 2>&1")
      assert.are.equal("nil|transport|resolve|2|2|gettoken: Could not resolve host: wecom-standin.invalid", out)
    end)
  end)
end)
