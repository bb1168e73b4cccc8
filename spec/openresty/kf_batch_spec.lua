-- kf.batch inside nginx: light threads over cosockets. Shown by state, never by time: while a handler's batch has
-- all its sends held at the stand-in (until_released), the same (only) worker answers another location, and the
-- stand-in has every send of the batch under way at once, never more than the batch's concurrency.
local nginx = require "helpers.nginx"
local standin = require "helpers.standin"
local eventually = require("helpers.eventually").eventually
local read_file = require("helpers.eventually").read_file

local PORT = 18391
local SEND_MSG = "/cgi-bin/kf/send_msg"
local GETTOKEN = "/cgi-bin/gettoken"

local HTTP = [[
    lua_shared_dict state 1m;
    init_by_lua_block {
      SPEC_CLIENT = require("wechat.work").client{ corp_id = "wwCORP", agents = { kf = { secret = "KF_SECRET" } },
        base_url = "@URL@", timeout = 30 }
      SHORT_CLIENT = require("wechat.work").client{ corp_id = "wwCORP", agents = { kf = { secret = "KF_SECRET" } },
        base_url = "@URL@", timeout = 1 }
    }
]]

-- /batch?n=N&c=C&p=PREFIX: N sends with msgids PREFIX1..PREFIXN; prints one line a result, in order.
local SERVER = [[
    location = /batch {
      content_by_lua_block {
        local kf = require "wechat.work.kf"
        local state = ngx.shared.state
        local n, c, prefix = tonumber(ngx.var.arg_n), tonumber(ngx.var.arg_c), ngx.var.arg_p
        local calls = {}
        -- WeCom takes 5 sends per customer message: the i-th call goes to customer i, who wrote (before_each)
        for i = 1, n do
          calls[i] = { "send_text", "wmCUSTOMER" .. i, "wkKF", "hello " .. i, { msgid = prefix .. i } }
        end
        state:incr("batches", 1, 0)
        local results = kf.batch(SPEC_CLIENT, "kf", calls, { concurrency = c })
        state:incr("batches", -1, 0)
        for i, r in ipairs(results) do
          ngx.say(r.res and r.res.msgid or tostring(r.err))
        end
      }
    }
    # an answer, an API error and a timeout in one batch: one line a result
    location = /mixed {
      content_by_lua_block {
        local kf = require "wechat.work.kf"
        assert(kf.message.send_text_on_event(SHORT_CLIENT, "kf", "USED", "welcome", "w0"))
        local results = kf.batch(SHORT_CLIENT, "kf", {
          { "send_text", "wmA", "wkKF", "one", { msgid = "m1" } },
          { "send_text_on_event", "USED", "again", "w1" },
          { "sync_msg", { limit = 10 } },
        }, { concurrency = 3 })
        for _, r in ipairs(results) do
          local e = r.err
          ngx.say(r.res and r.res.msgid or table.concat({ e.kind, e.errcode or e.reason, e.op, e.attempts }, " "))
        end
      }
    }
    location = /empty {
      content_by_lua_block { ngx.say(#require("wechat.work.kf").batch(SPEC_CLIENT, "kf", {})) }
    }
    location = /forget {
      content_by_lua_block { SPEC_CLIENT:invalidate_token("kf") ngx.print("ok") }
    }
    location = /ping {
      content_by_lua_block { ngx.print("pong ", ngx.worker.pid(), " batches ", ngx.shared.state:get("batches") or 0) }
    }
]]

local app
local shell_quote = require("helpers.shell").quote

-- the customers the batches send to (one a call), and wmA
local CUSTOMERS = { "wmA" }
for i = 1, 30 do
  CUSTOMERS[#CUSTOMERS + 1] = "wmCUSTOMER" .. i
end

local function expected_lines(n, prefix)
  local out = {}
  for i = 1, n do
    out[i] = prefix .. i
  end
  return table.concat(out, "\n") .. "\n"
end

describe("kf.batch inside nginx #openresty", function()
  setup(function()
    standin.start()
    app = nginx.start{ name = "kf-batch", port = PORT, workers = 1,
      http = (HTTP:gsub("@URL@", standin.url())), server = SERVER }
  end)
  teardown(function()
    if app then app:stop() end
  end)
  before_each(function()
    standin.reset()
    standin.wrote("wkKF", CUSTOMERS)
    -- the reset forgot the stand-in's tokens: the client forgets its own, so each test starts with one gettoken
    assert.same({ 200, "ok" }, { app:request("GET", "/forget") })
  end)

  it("has all its sends under way at once while the worker answers another request", function()
    local held = 20
    standin.script(SEND_MSG, { delay = 60, until_released = true }, held)
    local out = app.prefix .. "/batch.out"
    os.remove(out)
    -- curl runs in the background; the shell returns at once
    assert(os.execute("curl -s --no-progress-meter -o " .. shell_quote(out) .. " "
      .. shell_quote(app:url("/batch?n=" .. held .. "&c=" .. held .. "&p=h")) .. " >/dev/null 2>&1 &"))

    assert.is_true(eventually(function()
      return standin.concurrency().in_flight == held
    end))
    local status, body = app:request("GET", "/ping")
    assert.are.equal(200, status)
    assert.are.equal("pong " .. app:worker_pids()[1] .. " batches 1", body)
    assert.same({ [GETTOKEN] = 1, [SEND_MSG] = held }, standin.counts())
    assert.are.equal("", read_file(out))
    assert.are.equal(held, standin.release())

    assert.is_true(eventually(function()
      return read_file(out) == expected_lines(held, "h")
    end))
    assert.same({ 200, "pong " .. app:worker_pids()[1] .. " batches 0" }, { app:request("GET", "/ping") })
    assert.are.equal(held, #standin.delivered())
  end)

  it("never has more than `concurrency` sends under way", function()
    standin.script(SEND_MSG, { delay = 0.2 }, -1) -- long enough that all 4 of a round overlap
    local status, body = app:request("GET", "/batch?n=12&c=4&p=c")
    assert.are.equal(200, status)
    assert.are.equal(expected_lines(12, "c"), body)
    local seen = standin.concurrency()
    assert.same({ 0, 4 }, { seen.in_flight, seen.max_in_flight })
    assert.same({ [GETTOKEN] = 1, [SEND_MSG] = 12 }, standin.counts())
  end)

  it("fetches a token WeCom refused once for all the sends that saw it refused", function()
    assert.same({ 200, expected_lines(1, "w") }, { app:request("GET", "/batch?n=1&c=1&p=w") })
    standin.expire_tokens()
    local status, body = app:request("GET", "/batch?n=24&c=8&p=r")
    assert.are.equal(200, status)
    assert.are.equal(expected_lines(24, "r"), body)
    -- 1 + 1 gettoken; 1 warm-up send, the 8 first sends refused (42001) and made again, 16 more
    assert.same({ [GETTOKEN] = 2, [SEND_MSG] = 1 + 8 + 24 }, standin.counts())
  end)

  it("gives each call what it alone would give: an answer, an API error, a timeout", function()
    standin.welcome_code("USED")
    standin.script("/cgi-bin/kf/sync_msg", { delay = 60, until_released = true }, -1)
    local status, body = app:request("GET", "/mixed")
    assert.are.equal(200, status)
    -- sync_msg may be retried: two exchanges, both timed out
    assert.are.equal("m1\napi 95018 send_text_on_event 1\ntransport timeout sync_msg 2\n", body)
    assert.are.equal(2, standin.release())
  end)

  it("returns an empty array for no calls, sending nothing", function()
    assert.same({ 200, "0\n" }, { app:request("GET", "/empty") })
    assert.same({}, standin.counts())
    -- no handler raised (the timeouts of the test above are logged by nginx at level error: not looked at)
    assert.is_nil(app:error_log():find("runtime error", 1, true))
  end)
end)
