-- The worker is never blocked: with ONE nginx worker, 20 handler requests wait on a stand-in send_msg that holds
-- its answer until the spec releases it, and meanwhile another location of the same worker answers. Shown by
-- counts, not timings: at the moment /ping answers, the stand-in has received all 20 and the worker still has all
-- 20 in flight (none answered).
local nginx = require "helpers.nginx"
local standin = require "helpers.standin"
local eventually = require("helpers.eventually").eventually
local read_file = require("helpers.eventually").read_file

local PORT = 18365
local SEND_MSG = "/cgi-bin/kf/send_msg"
local HELD = 20

local HTTP = [[
    lua_shared_dict wechat 1m;
    lua_shared_dict inflight 1m;
    init_by_lua_block {
      SPEC_CLIENT = require("wechat.work").client{ corp_id = "wwCORP", agents = { kf = { secret = "KF_SECRET" } },
        base_url = "@URL@", timeout = 30, shared_dict = "wechat" }
    }
]]

local SERVER = [[
    location = /send {
      content_by_lua_block {
        local kf = require "wechat.work.kf.message"
        local inflight = ngx.shared.inflight
        inflight:incr("n", 1, 0)
        local i = ngx.var.arg_i
        -- WeCom takes 5 sends per customer message: request i goes to customer i, who wrote
        local res, err = kf.send_text(SPEC_CLIENT, "kf", "wmCUSTOMER" .. i, "wkKF", "held " .. i, { msgid = "h" .. i })
        inflight:incr("n", -1, 0)
        ngx.header["X-Worker"] = ngx.worker.pid()
        if not res then
          ngx.status = 500
          ngx.print(tostring(err))
          return
        end
        ngx.print(res.msgid)
      }
    }
    location = /ping {
      content_by_lua_block { ngx.print("pong ", ngx.worker.pid(), " inflight ", ngx.shared.inflight:get("n") or 0) }
    }
]]

local app

local shell_quote = require("helpers.shell").quote

local function lines_of(text)
  local n = 0
  for _ in text:gmatch("[^\n]+\n") do
    n = n + 1
  end
  return n
end

describe("a handler waiting on WeCom does not block its nginx worker #openresty", function()
  setup(function()
    standin.start()
    app = nginx.start{ name = "nonblocking", port = PORT, workers = 1,
      http = (HTTP:gsub("@URL@", standin.url())), server = SERVER }
  end)
  teardown(function()
    if app then app:stop() end
  end)

  it("answers another location while 20 requests wait on a held send_msg", function()
    standin.reset()
    local customers = {}
    for i = 0, HELD do
      customers[#customers + 1] = "wmCUSTOMER" .. i
    end
    standin.wrote("wkKF", customers)
    assert.same({ 200, "h0" }, { app:request("GET", "/send?i=0") }) -- the token is fetched outside the test
    -- held until released below (or 60 s), so a slow machine cannot let one through early
    standin.script(SEND_MSG, { delay = 60, until_released = true }, HELD)

    local out = app.prefix .. "/held.out"
    os.remove(out)
    -- curl runs in the background; the shell returns at once
    assert(os.execute("curl -s --no-progress-meter --parallel --parallel-immediate --parallel-max " .. HELD
      .. " -o /dev/null -w '%{http_code} %header{x-worker}\\n' "
      .. shell_quote(app:url("/send?i=[1-" .. HELD .. "]")) .. " >" .. shell_quote(out) .. " 2>/dev/null &"))

    assert.is_true(eventually(function()
      return (standin.counts()[SEND_MSG] or 0) == 1 + HELD
    end))
    local status, body = app:request("GET", "/ping")
    local worker = app:worker_pids()[1]
    -- the same (only) worker answered /ping while all 20 were still in its handlers, none answered yet
    assert.are.equal(200, status)
    assert.are.equal("pong " .. worker .. " inflight " .. HELD, body)
    assert.are.equal(0, lines_of(read_file(out)))
    assert.same({ ["/cgi-bin/gettoken"] = 1, [SEND_MSG] = 1 + HELD }, standin.counts())
    assert.are.equal(HELD, standin.release())

    -- then all 20 complete, each once, from that worker
    assert.is_true(eventually(function()
      return lines_of(read_file(out)) == HELD
    end))
    local expected = {}
    for i = 1, HELD do
      expected[i] = "200 " .. worker
    end
    local got = {}
    for line in read_file(out):gmatch("([^\n]+)\n") do
      got[#got + 1] = line
    end
    assert.same(expected, got)
    assert.same({ 200, "pong " .. worker .. " inflight 0" }, { app:request("GET", "/ping") })
    assert.are.equal(1 + HELD, #standin.delivered())
  end)
end)
