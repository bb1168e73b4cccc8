-- Faults between the library and WeCom inside nginx (cosocket transport), played by the stand-in: the twin of
-- spec/faults_spec.lua. The spec posts a job to /run; a content handler makes a client over its own cosocket
-- transport, runs the calls and answers every result or error field, and how many exchanges the library made.
-- The stand-in's counts show how often each request went out: nothing retries without bound.
local cjson = require "cjson"
local nginx = require "helpers.nginx"
local standin = require "helpers.standin"
local ports = require "helpers.ports"

local PORT = 18376
local SEND_MSG = "/cgi-bin/kf/send_msg"
local SYNC_MSG = "/cgi-bin/kf/sync_msg"
local GETTOKEN = "/cgi-bin/gettoken"
local SHORT = 1     -- client timeout (seconds) where the timeout is the point; 10 for every other job
local HOLD = 3      -- seconds the stand-in holds a request that "never answers": well past SHORT
local MB = 1024 * 1024
local CAP = 4 * MB  -- the default max_response

-- resolver: a UDP port on 127.0.0.1 that nothing listens on, so no query ever leaves the machine; nginx's resolver
-- does not take the ICMP refusal as an answer and gives up after resolver_timeout.
local HTTP = [[
    resolver 127.0.0.1:@DNS_PORT@ ipv6=off;
    resolver_timeout 1s;
]]

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
          local transport = cosocket.new{ timeout = timeout, max_response = job.max_response }
          return work.client{ corp_id = "wwCORP", agents = { kf = { secret = "KF_SECRET" } }, base_url = base_url,
            -- "without msgid" below means none at all: the faults are about what a send without one may do
            retries = job.retries, auto_msgid = job.auto_msgid or false, token_store = store,
            transport = transport }, transport
        end
        local store = memory.new()
        if job.token_from then
          -- another client puts the token into the store this one uses
          assert(kf.sync_msg((new_client(job.token_from, store, 10)), "kf"))
        end
        if job.warm then
          -- another client fetches the token (one gettoken), so that a short timeout applies to the fault alone
          assert(new_client(job.base_url, store, 10):token("kf"))
        end
        local client, transport = new_client(job.base_url, store, job.timeout or 10)
        local control = cosocket.new{ timeout = 10 }
        local out = {}
        for i, call in ipairs(job.calls) do
          local args = call.args or {}
          local res, err
          if call.control then -- a call to the stand-in's control API between two calls of the client
            res, err = control:request{ method = "POST", url = job.control_url .. call.control }
            res = res and { status = res.status, body = res.body }
          else
            res, err = kf[call.op](client, "kf", unpack(args, 1, #args))
          end
          if res then
            out[i] = { res = res }
          else
            out[i] = { err = { kind = err.kind, reason = err.reason, status = err.status, errcode = err.errcode,
              errmsg = err.errmsg, attempts = err.attempts, op = err.op, message = err.message,
              text = tostring(err) } }
          end
        end
        ngx.print(cjson.encode({ results = out, exchanges = transport:stats().requests }))
      }
    }
    location = /gc {
      content_by_lua_block { collectgarbage() collectgarbage() ngx.print(ngx.worker.pid()) }
    }
]]

local app

local closed_port = ports.closed
local settle = standin.settle
local written = standin.written

-- Runs a job: { calls = { { op =, args = {} }, ... }, base_url =, timeout =, retries =, max_response =,
-- token_from = }; returns the list of results ({res =} or {err =}) and the number of exchanges.
local function run(job)
  job.base_url = job.base_url or standin.url()
  job.control_url = standin.url()
  local status, body = app:request("POST", "/run", cjson.encode(job))
  assert.are.equal(200, status, body)
  local out = cjson.decode(body)
  return out.results, out.exchanges
end

local function send(msgid)
  return { op = "send_text", args = { "wmCUSTOMER", "wkKF", "hello", msgid and { msgid = msgid } or nil } }
end

local SYNC = { op = "sync_msg" }

-- A reset stand-in, and the customer the sends go to has written, as WeCom requires (95031 otherwise)
local function reset()
  standin.reset()
  standin.wrote("wkKF", "wmCUSTOMER")
end

-- the fields of an error that every fault spec looks at
local function fields(err)
  return { kind = err.kind, reason = err.reason, status = err.status, errcode = err.errcode,
    attempts = err.attempts, message = err.message }
end

local function msgids(path)
  local out = {}
  for i, body in ipairs(standin.bodies(path)) do
    out[i] = body.msgid or "none"
  end
  return out
end

-- A field of /proc/PID/status in kB: VmHWM is the peak resident memory since the last reset_peak.
local function status_kb(pid, field)
  local f = assert(io.open("/proc/" .. pid .. "/status", "r"))
  local text = f:read("*a")
  f:close()
  return tonumber(text:match(field .. ":%s*(%d+)"))
end

-- Sets the peak (VmHWM) of the worker back to what it holds now (5 into clear_refs; root, as the specs run), after
-- a full collection in it, so that the peak read after a job shows the most the job held at any moment.
local function reset_peak(pid)
  assert.are.same({ 200, tostring(pid) }, { app:request("GET", "/gc") })
  local f = assert(io.open("/proc/" .. pid .. "/clear_refs", "w"))
  assert(f:write("5"))
  f:close()
  return status_kb(pid, "VmHWM")
end

describe("faults inside nginx, over cosockets #openresty", function()
  setup(function()
    standin.start()
    -- one worker, so that the 100 MB spec measures the worker that ran it
    app = nginx.start{ name = "faults", port = PORT, workers = 1,
      http = (HTTP:gsub("@DNS_PORT@", tostring(closed_port("udp")))), server = SERVER }
  end)
  teardown(function()
    if app then app:stop() end
  end)
  before_each(reset)
  after_each(settle)

  describe("connection refused", function()
    it("gettoken: transport error 'connect', tried twice", function()
      local port = closed_port()
      local results, exchanges = run{ base_url = "http://127.0.0.1:" .. port, calls = { send() } }
      assert.are.same({ kind = "transport", reason = "connect", attempts = 2,
        message = "gettoken: cannot connect to 127.0.0.1:" .. port .. ": connection refused" },
        fields(results[1].err))
      assert.are.equal(2, exchanges)
    end)

    it("a send without msgid, token at hand: tried twice as well", function()
      local port = closed_port()
      local results, exchanges = run{ base_url = "http://127.0.0.1:" .. port, token_from = standin.url(),
        calls = { send() } }
      assert.are.same({ kind = "transport", reason = "connect", attempts = 2,
        message = "cannot connect to 127.0.0.1:" .. port .. ": connection refused" }, fields(results[1].err))
      assert.are.equal(2, exchanges)
      assert.are.same({ [GETTOKEN] = 1, [SYNC_MSG] = 1 }, standin.counts())
    end)
  end)

  describe("a server that accepts and never answers", function()
    local NEVER = { delay = HOLD, close = true }
    local TIMED_OUT = "receive: timeout"

    it("a send without msgid: timeout, one request", function()
      standin.script(SEND_MSG, NEVER, -1)
      local results, exchanges = run{ timeout = SHORT, warm = true, calls = { send() } }
      assert.are.same({ kind = "transport", reason = "timeout", attempts = 1, message = TIMED_OUT },
        fields(results[1].err))
      assert.are.equal(1, exchanges)
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 1 }, standin.counts())
      assert.are.equal(1, settle())
      assert.are.same({}, standin.delivered())
    end)

    it("a send with a msgid: timeout, two requests with the same msgid, delivered never", function()
      standin.script(SEND_MSG, NEVER, -1)
      local results, exchanges = run{ timeout = SHORT, warm = true, calls = { send("m-never") } }
      assert.are.same({ kind = "transport", reason = "timeout", attempts = 2, message = TIMED_OUT },
        fields(results[1].err))
      assert.are.equal(2, exchanges)
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 2 }, standin.counts())
      assert.are.same({ "m-never", "m-never" }, msgids(SEND_MSG))
      assert.are.equal(2, settle())
      assert.are.same({}, standin.delivered())
    end)

    it("sync_msg and gettoken: timeout after two requests", function()
      standin.script(SYNC_MSG, NEVER, -1)
      local results = run{ timeout = SHORT, warm = true, calls = { SYNC } }
      assert.are.same({ kind = "transport", reason = "timeout", attempts = 2, message = TIMED_OUT },
        fields(results[1].err))
      assert.are.same({ [GETTOKEN] = 1, [SYNC_MSG] = 2 }, standin.counts())
      assert.are.equal(2, settle())
      reset()
      standin.script(GETTOKEN, NEVER, -1)
      results = run{ timeout = SHORT, calls = { send() } }
      assert.are.same({ kind = "transport", reason = "timeout", attempts = 2, message = "gettoken: " .. TIMED_OUT },
        fields(results[1].err))
      assert.are.same({ [GETTOKEN] = 2 }, standin.counts())
    end)
  end)

  describe("an answer cut short (Content-Length 72, 36 bytes, then a clean close: FIN)", function()
    -- libcurl says "transfer closed with 36 bytes remaining to read": the reason is "recv" on both transports
    local CUT = "receive: closed"

    it("a send without msgid: 'recv', one request", function()
      standin.script(SEND_MSG, { truncate = true }, -1)
      local results = run{ calls = { send() } }
      assert.are.same({ kind = "transport", reason = "recv", attempts = 1, message = CUT }, fields(results[1].err))
      assert.are.equal("wechat: transport error: " .. CUT .. " in send_text", results[1].err.text)
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 1 }, standin.counts())
    end)

    it("a send with a msgid: 'recv' after two requests with the same msgid", function()
      standin.script(SEND_MSG, { truncate = true }, -1)
      local results = run{ calls = { send("m-cut") } }
      assert.are.same({ kind = "transport", reason = "recv", attempts = 2, message = CUT }, fields(results[1].err))
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 2 }, standin.counts())
      assert.are.same({ "m-cut", "m-cut" }, msgids(SEND_MSG))
      assert.are.same({}, standin.delivered())
    end)

    it("a send with a msgid, cut once: the retry gets through, delivered once", function()
      standin.script(SEND_MSG, { truncate = true }, 1)
      local results = run{ calls = { send("m-cut-once") } }
      assert.are.same({ res = { errcode = 0, errmsg = "ok", msgid = "m-cut-once" } }, results[1])
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 2 }, standin.counts())
      local delivered = standin.delivered()
      assert.are.same({ 1, "m-cut-once" }, { #delivered, delivered[1].msgid })
    end)
  end)

  describe("a TCP reset in the middle of the response (Content-Length 72, 36 bytes, then RST)", function()
    -- libcurl says "Recv failure: Connection reset by peer": the reason is "recv" on both transports
    local RESET = "receive: connection reset by peer"

    it("a send without msgid: 'recv', one request", function()
      standin.script(SEND_MSG, { reset = true }, -1)
      local results, exchanges = run{ calls = { send() } }
      assert.are.same({ kind = "transport", reason = "recv", attempts = 1, message = RESET }, fields(results[1].err))
      assert.are.equal("wechat: transport error: " .. RESET .. " in send_text", results[1].err.text)
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 1 }, standin.counts())
      assert.are.equal(2, exchanges)
      assert.are.same({}, standin.delivered())
    end)

    it("a send with a msgid: 'recv' after two requests with the same msgid", function()
      standin.script(SEND_MSG, { reset = true }, -1)
      local results, exchanges = run{ calls = { send("m-rst") } }
      assert.are.same({ kind = "transport", reason = "recv", attempts = 2, message = RESET }, fields(results[1].err))
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 2 }, standin.counts())
      assert.are.same({ "m-rst", "m-rst" }, msgids(SEND_MSG))
      assert.are.equal(3, exchanges)
      assert.are.same({}, standin.delivered())
    end)

    it("a send with a msgid, reset once: the retry gets through, delivered once", function()
      standin.script(SEND_MSG, { reset = true }, 1)
      local results = run{ calls = { send("m-rst-once") } }
      assert.are.same({ res = { errcode = 0, errmsg = "ok", msgid = "m-rst-once" } }, results[1])
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 2 }, standin.counts())
      local delivered = standin.delivered()
      assert.are.same({ 1, "m-rst-once" }, { #delivered, delivered[1].msgid })
    end)

    it("gettoken: 'recv' after two requests", function()
      standin.script(GETTOKEN, { reset = true }, -1)
      local results = run{ calls = { send() } }
      assert.are.same({ kind = "transport", reason = "recv", attempts = 2, message = "gettoken: " .. RESET },
        fields(results[1].err))
      assert.are.same({ [GETTOKEN] = 2 }, standin.counts())
    end)
  end)

  describe("HTTP 5xx", function()
    it("500: never retried, even with a msgid", function()
      standin.script(SEND_MSG, { status = 500, body = "oops" }, -1)
      local results = run{ calls = { send("m-500") } }
      assert.are.same({ kind = "http", status = 500, attempts = 1, message = "unexpected HTTP status" },
        fields(results[1].err))
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 1 }, standin.counts())
    end)

    for _, status in ipairs({ 502, 503, 504 }) do
      it(status .. ": one request without msgid, two with one", function()
        standin.script(SEND_MSG, { status = status, body = "busy" }, -1)
        local results = run{ calls = { send(), send("m-" .. status) } }
        assert.are.same({ kind = "http", status = status, attempts = 1, message = "unexpected HTTP status" },
          fields(results[1].err))
        assert.are.same({ kind = "http", status = status, attempts = 2, message = "unexpected HTTP status" },
          fields(results[2].err))
        assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 3 }, standin.counts())
        assert.are.same({ "none", "m-" .. status, "m-" .. status }, msgids(SEND_MSG))
      end)
    end

    it("503 once to a send with a msgid: the retry gets through, delivered once", function()
      standin.script(SEND_MSG, { status = 503, body = "busy" }, 1)
      local results = run{ calls = { send("m-503-once") } }
      assert.are.same({ res = { errcode = 0, errmsg = "ok", msgid = "m-503-once" } }, results[1])
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 2 }, standin.counts())
      assert.are.equal(1, #standin.delivered())
    end)
  end)

  describe("a 200 whose body is not WeCom's JSON object", function()
    it("not JSON, truncated JSON, empty, an array, no errcode: decode error, one request each", function()
      standin.script(SEND_MSG, { status = 200, body = "<html>gateway says hi</html>" }, 1)
      standin.script(SEND_MSG, { status = 200, body = '{"errcode":0,"errmsg":"o' }, 1)
      standin.script(SEND_MSG, { status = 200, body = "" }, 1)
      standin.script(SEND_MSG, { status = 200, body = "[1,2]" }, 1)
      standin.script(SEND_MSG, { status = 200, body = '{"msgid":"m-e"}' }, 1)
      local results = run{ calls = { send("m-a"), send("m-b"), send("m-c"), send("m-d"), send("m-e") } }
      for i = 1, 5 do
        assert.are.same({ kind = "decode", attempts = 1,
          message = "response is not WeCom's JSON (an object with errcode)" },
          fields(results[i].err))
      end
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 5 }, standin.counts())
    end)
  end)

  describe("a body over the cap", function()
    -- The worker's peak memory during the job (not two snapshots, which miss a buffer filled and freed again) and
    -- the bytes the stand-in got out before the worker hung up: both far below 100 MB.
    it("100 MB: refused at the 4 MiB default cap, one request, the worker's memory stays bounded", function()
      local pid = app:worker_pids()[1]
      run{ calls = { SYNC } } -- the code paths loaded once, so only the fault is measured
      reset()
      standin.script(SEND_MSG, { huge = 100 * MB }, -1)
      local before = reset_peak(pid)
      local results = run{ calls = { send("m-huge") } }
      local peak = status_kb(pid, "VmHWM") - before
      assert.are.same({ kind = "transport", reason = "too_large", attempts = 1,
        message = "response too large (over 4194304 bytes)" }, fields(results[1].err))
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 1 }, standin.counts())
      assert.is_true(peak < (CAP + 16 * MB) / 1024, "the worker's peak (VmHWM) grew by " .. peak .. " kB")
      local out = written()
      assert.are.equal(1, #out)
      assert.is_true(out[1] < CAP + 16 * MB, "the stand-in wrote " .. out[1] .. " bytes")
    end)

    it("without Content-Length (chunked): reading stops at the cap, the worker's memory stays bounded", function()
      local pid = app:worker_pids()[1]
      run{ calls = { SYNC } }
      reset()
      standin.script(SEND_MSG, { huge = 100 * MB, chunked = true }, 1)
      local before = reset_peak(pid)
      local results = run{ calls = { send("m-huge"), send("m-after") } }
      local peak = status_kb(pid, "VmHWM") - before
      assert.are.same({ kind = "transport", reason = "too_large", attempts = 1,
        message = "response too large (over 4194304 bytes)" }, fields(results[1].err))
      assert.are.same({ res = { errcode = 0, errmsg = "ok", msgid = "m-after" } }, results[2])
      assert.are.same({ [GETTOKEN] = 1, [SEND_MSG] = 2 }, standin.counts())
      assert.is_true(peak < (CAP + 16 * MB) / 1024, "the worker's peak (VmHWM) grew by " .. peak .. " kB")
      local out = written()
      assert.are.equal(1, #out)
      assert.is_true(out[1] < CAP + 16 * MB, "the stand-in wrote " .. out[1] .. " bytes")
    end)

    it("max_response: one byte over it is refused, exactly at it is read", function()
      standin.script(GETTOKEN, { huge = 4097 }, 1)
      standin.script(SEND_MSG, { huge = 4096 }, 1)
      local results = run{ max_response = 4096, calls = { send(), send() } }
      assert.are.same({ kind = "transport", reason = "too_large", attempts = 1,
        message = "gettoken: response too large (over 4096 bytes)" }, fields(results[1].err))
      local res = results[2].res
      assert.are.same({ 0, "ok", 4096 - 40 }, { res.errcode, res.errmsg, #res.padding })
      assert.are.same({ [GETTOKEN] = 2, [SEND_MSG] = 1 }, standin.counts())
    end)
  end)

  describe("gettoken failing", function()
    it("with an errcode: api error, no send; the next call fetches a token and goes through", function()
      standin.script(GETTOKEN, { errcode = -1, errmsg = "system busy" }, 1)
      local results = run{ calls = { send("m-1"), send("m-2") } }
      assert.are.same({ kind = "api", errcode = -1, attempts = 1, message = "gettoken failed" },
        fields(results[1].err))
      assert.are.equal("wechat: api error -1 (system busy): gettoken failed in send_text", results[1].err.text)
      assert.are.same({ res = { errcode = 0, errmsg = "ok", msgid = "m-2" } }, results[2])
      assert.are.same({ [GETTOKEN] = 2, [SEND_MSG] = 1 }, standin.counts())
      assert.are.same({ "m-2" }, msgids(SEND_MSG))
    end)

    it("with a 503 once: tried again at once, and the send goes through", function()
      standin.script(GETTOKEN, { status = 503, body = "busy" }, 1)
      local results = run{ calls = { send() } }
      assert.are.same({ res = { errcode = 0, errmsg = "ok", msgid = "standin-msg-1" } }, results[1])
      assert.are.same({ [GETTOKEN] = 2, [SEND_MSG] = 1 }, standin.counts())
    end)
  end)

  describe("a token that expires between two calls", function()
    it("send_text: the second call gets 42001, fetches a new token and sends once more", function()
      local results = run{ calls = { send("m-1"), { control = "/_standin/expire_tokens" }, send("m-2") } }
      assert.are.same({ res = { errcode = 0, errmsg = "ok", msgid = "m-1" } }, results[1])
      assert.are.same({ res = { status = 200, body = '{"ok":true}' } }, results[2])
      assert.are.same({ res = { errcode = 0, errmsg = "ok", msgid = "m-2" } }, results[3])
      assert.are.same({ [GETTOKEN] = 2, [SEND_MSG] = 3 }, standin.counts())
      local reqs = standin.requests(SEND_MSG)
      assert.are.equal(reqs[1].args.access_token, reqs[2].args.access_token)
      assert.are_not.equal(reqs[2].args.access_token, reqs[3].args.access_token)
      assert.are.same({ "m-1", "m-2" }, { standin.delivered()[1].msgid, standin.delivered()[2].msgid })
    end)

    it("send_text, the token expiring as the call arrives: one new token, one more request", function()
      standin.script(SEND_MSG, { expire_token = true }, 1)
      local results = run{ calls = { send("m-1") } }
      assert.are.same({ res = { errcode = 0, errmsg = "ok", msgid = "m-1" } }, results[1])
      assert.are.same({ [GETTOKEN] = 2, [SEND_MSG] = 2 }, standin.counts())
      local reqs = standin.requests(SEND_MSG)
      assert.are_not.equal(reqs[1].args.access_token, reqs[2].args.access_token)
      assert.are.equal(1, #standin.delivered())
    end)

    it("expiring on every call: refreshed once, then the 42001 comes back", function()
      standin.script(SYNC_MSG, { expire_token = true }, -1)
      local results = run{ calls = { SYNC } }
      assert.are.same({ kind = "api", errcode = 42001, attempts = 2 }, fields(results[1].err))
      assert.are.same({ [GETTOKEN] = 2, [SYNC_MSG] = 2 }, standin.counts())
    end)
  end)

  describe("DNS failure", function()
    it("the base URL's host cannot be resolved: transport error 'resolve', tried twice", function()
      local results, exchanges = run{ base_url = "http://wecom-standin.invalid:" .. standin.url():match(":(%d+)$"),
        calls = { send() } }
      local err = results[1].err
      assert.are.same({ "transport", "resolve", 2 }, { err.kind, err.reason, err.attempts })
      assert.truthy(err.message:find("^gettoken: cannot connect to wecom%-standin%.invalid:%d+: "
        .. "wecom%-standin%.invalid could not be resolved"), err.message)
      assert.are.equal(2, exchanges)
      assert.are.same({}, standin.counts())
    end)
  end)
end)
