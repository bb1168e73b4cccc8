-- The public KF operations from inside nginx content handlers (cosocket transport, token in a lua_shared_dict):
-- every case of spec/helpers/kf_cases.lua gives the stand-in the same exact body, and the caller the same exact
-- answer, as under Lua 5.4; HTTPS to the stand-in verifies its CA; the phases without cosockets give the
-- documented error.
local cjson = require "cjson"
local cases = require "helpers.kf_cases"
local nginx = require "helpers.nginx"
local standin = require "helpers.standin"
local socket = require "socket"

local PORT = 18363

local HTTP = [[
    lua_shared_dict wechat 1m;
    lua_shared_dict results 1m;
    init_by_lua_block {
      local work = require "wechat.work"
      local function client(base_url, opts)
        opts = opts or {}
        return work.client{ corp_id = "wwCORP", agents = { kf = { secret = "KF_SECRET" } }, base_url = base_url,
          timeout = 5, shared_dict = opts.shared_dict }
      end
      -- made once in the master, inherited by the workers: nothing in it does I/O before a call
      SPEC_CLIENTS = {
        http = client("@URL@", { shared_dict = "wechat" }),
        https = client("@HTTPS_URL@", { shared_dict = "wechat" }),
        memory = client("@URL@"),
      }
      -- a call while nginx loads its configuration: the documented error at once, or nginx would not start
      local kf = require "wechat.work.kf.message"
      local res, err = kf.send_text(SPEC_CLIENTS.memory, "kf", "wmU", "wkK", "from init")
      ngx.shared.results:set("init", res and "no error" or (err.kind .. "|" .. tostring(err)))
    }
    init_worker_by_lua_block {
      local kf = require "wechat.work.kf.message"
      local res, err = kf.send_text(SPEC_CLIENTS.memory, "kf", "wmU", "wkK", "from init_worker")
      ngx.shared.results:set("init_worker", res and "no error" or (err.kind .. "|" .. tostring(err)))
    }
]]

local SERVER = [[
    location = /case {
      content_by_lua_block {
        local cjson = require "cjson"
        local cases = require "helpers.kf_cases"
        local kf = require "wechat.work.kf.message"
        local c = cases.cases[tonumber(ngx.var.arg_i)]
        -- the media ids the spec had the stand-in issue come as query arguments named by their placeholders
        local res, err = kf[c.op](SPEC_CLIENTS[ngx.var.arg_client], cases.AGENT, cases.args(c, ngx.req.get_uri_args()))
        ngx.print(cjson.encode(res and { result = res }
          or { err = { kind = err.kind, errcode = err.errcode, message = err.message, text = tostring(err) } }))
      }
    }
    location = /forget_tokens {
      content_by_lua_block { ngx.shared.wechat:flush_all() ngx.print("ok") }
    }
    location = /log_phase {
      content_by_lua_block { ngx.print("answered") }
      log_by_lua_block {
        local kf = require "wechat.work.kf.message"
        local res, err = kf.send_text(SPEC_CLIENTS.http, "kf", "wmU", "wkK", "from log_by_lua")
        ngx.shared.results:set("log", res and "no error" or (err.kind .. "|" .. tostring(err)))
      }
    }
    location = /body_filter_phase {
      content_by_lua_block { ngx.print("answered") }
      body_filter_by_lua_block {
        local kf = require "wechat.work.kf.message"
        local res, err = kf.send_text(SPEC_CLIENTS.http, "kf", "wmU", "wkK", "from body_filter_by_lua")
        ngx.shared.results:add("body_filter", res and "no error" or (err.kind .. "|" .. tostring(err)))
      }
    }
    location = /result {
      content_by_lua_block { ngx.print(ngx.shared.results:get(ngx.var.arg_key) or "none") }
    }
]]

local app

local function fill(text)
  return (text:gsub("@URL@", standin.url()):gsub("@HTTPS_URL@", standin.https_url()))
end

local function run_case(i, client, ids)
  local query = ""
  for placeholder, id in pairs(ids or {}) do
    query = query .. "&" .. placeholder .. "=" .. id
  end
  local status, body = app:request("GET", "/case?i=" .. i .. "&client=" .. client .. query)
  assert.are.equal(200, status, body)
  return cjson.decode(body)
end

local function result(key)
  for _ = 1, 100 do
    local _, value = app:request("GET", "/result?key=" .. key)
    if value ~= "none" then
      return value
    end
    socket.sleep(0.02)
  end
  return "none"
end

describe("KF operations inside nginx content handlers #openresty", function()
  setup(function()
    standin.start()
    app = nginx.start{ name = "kf", port = PORT, workers = 2, trusted_certificate = standin.cafile(),
      http = fill(HTTP), server = SERVER }
  end)
  teardown(function()
    if app then app:stop() end
  end)
  before_each(function()
    standin.reset()
    standin.wrote(cases.KFID, cases.TO)
    standin.wrote("wkK", "wmU")
    assert.same({ 200, "ok" }, { app:request("GET", "/forget_tokens") })
  end)

  for i, c in ipairs(cases.cases) do
    it(c.name .. ": the exact body at the stand-in, the exact answer back", function()
      if c.setup then
        c.setup(standin)
      end
      local ids = cases.media_ids(c, standin.media_id)
      local before = standin.counts()
      local out = run_case(i, "http", ids)
      assert.same({ result = c.result }, out)
      assert.same({ cases.body(c, ids) }, standin.bodies(c.path))
      assert.same({ ["/cgi-bin/gettoken"] = 1, [c.path] = 1 }, standin.counts_since(before))
      local token = standin.token()
      assert.are.equal(token, standin.requests(c.path)[1].args.access_token)
    end)
  end

  it("sends over HTTPS, verifying the stand-in's certificate against its CA", function()
    local c = cases.find("send_menu")
    for i, case in ipairs(cases.cases) do
      if case == c then
        assert.same({ result = c.result }, run_case(i, "https"))
      end
    end
    assert.same({ c.body }, standin.bodies(c.path))
    assert.same({ ["/cgi-bin/gettoken"] = 1, [c.path] = 1 }, standin.counts())
  end)

  it("gives WeCom's error back as an api error", function()
    standin.script("/cgi-bin/kf/send_msg", { errcode = 45009, errmsg = "api freq out of limit" })
    assert.same({ err = { kind = "api", errcode = 45009,
      text = "wechat: api error 45009 (api call frequency limit) in send_text" } }, run_case(1, "http"))
    assert.same({ ["/cgi-bin/gettoken"] = 1, ["/cgi-bin/kf/send_msg"] = 1 }, standin.counts())
  end)

  describe("in the nginx phases without cosockets", function()
    local function phase_error(phase, op)
      return "phase|wechat: phase error: cannot send from the nginx '" .. phase
        .. "' phase: cosockets are disabled there; use a timer (ngx.timer.at) or another phase in " .. op
    end

    it("fails in init_worker_by_lua with the documented error", function()
      assert.are.equal(phase_error("init_worker", "send_text"), result("init_worker"))
    end)

    it("fails in log_by_lua with the documented error, and nothing goes out", function()
      assert.same({ 200, "answered" }, { app:request("GET", "/log_phase") })
      assert.are.equal(phase_error("log", "send_text"), result("log"))
      assert.same({}, standin.counts())
    end)

    it("fails in init_by_lua with the documented error", function()
      assert.are.equal(phase_error("init", "send_text"), result("init"))
    end)

    it("fails in body_filter_by_lua with the documented error, and nothing goes out", function()
      assert.same({ 200, "answered" }, { app:request("GET", "/body_filter_phase") })
      assert.are.equal(phase_error("body_filter", "send_text"), result("body_filter"))
      assert.same({}, standin.counts())
    end)
  end)
end)
