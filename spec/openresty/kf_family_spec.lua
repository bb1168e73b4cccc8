-- wechat.work.kf.account, servicer, service_state, customer and statistic inside nginx content handlers
-- (cosocket transport, token in a lua_shared_dict): every case of spec/helpers/kf_family_cases.lua gives the
-- stand-in the same exact request, and the caller the same exact answer, as under Lua 5.4 (spec/kf_family_spec.lua).
local cjson = require "cjson"
local cases = require "helpers.kf_family_cases"
local nginx = require "helpers.nginx"
local standin = require "helpers.standin"

local PORT = 18391

local HTTP = [[
    lua_shared_dict wechat 1m;
    init_by_lua_block {
      local work = require "wechat.work"
      SPEC_CLIENT = work.client{ corp_id = "wwCORP", agents = { kf = { secret = "KF_SECRET" } }, base_url = "@URL@",
        timeout = 5, shared_dict = "wechat" }
    }
]]

local SERVER = [[
    location = /case {
      content_by_lua_block {
        local cjson = require "cjson"
        local cases = require "helpers.kf_family_cases"
        local c = cases.cases[tonumber(ngx.var.arg_i)]
        local avatar = c.avatar and assert(cases.upload_avatar(SPEC_CLIENT)).media_id
        local res, err = cases.modules()[c.module][c.op](SPEC_CLIENT, cases.AGENT, cases.args(c, avatar))
        ngx.print(cjson.encode(res and { result = res, avatar = avatar }
          or { err = { kind = err.kind, errcode = err.errcode } }))
      }
    }
    location = /forget_tokens {
      content_by_lua_block { ngx.shared.wechat:flush_all() ngx.print("ok") }
    }
    location = /human {
      content_by_lua_block {
        local cases = require "helpers.kf_family_cases"
        local message = require "wechat.work.kf.message"
        local service_state = require "wechat.work.kf.service_state"
        local moved, err = service_state.trans(SPEC_CLIENT, "kf", cases.KFID, cases.TO, service_state.HUMAN,
          cases.SERVICER)
        local _, refused = message.send_text(SPEC_CLIENT, "kf", cases.TO, cases.KFID, "still the bot?")
        local told = moved and message.send_text_on_event(SPEC_CLIENT, "kf", moved.msg_code, "转人工")
        ngx.print(tostring(moved and moved.msg_code or err), " ", tostring(refused and refused.errcode), " ",
          tostring(told and told.errcode))
      }
    }
]]

describe("the KF desk inside nginx content handlers #openresty", function()
  local app

  setup(function()
    standin.start()
    app = nginx.start{ name = "kf_family", port = PORT, workers = 1, http = HTTP:gsub("@URL@", standin.url()),
      server = SERVER }
  end)
  teardown(function()
    if app then app:stop() end
  end)
  before_each(function()
    standin.reset()
    assert.same({ 200, "ok" }, { app:request("GET", "/forget_tokens") })
  end)

  for i, c in ipairs(cases.cases) do
    it(c.name .. ": the exact request at the stand-in, the exact answer back", function()
      c.setup(standin)
      local status, body = app:request("GET", "/case?i=" .. i)
      assert.equal(200, status, body)
      local got = cjson.decode(body)
      assert.same({ result = c.result, avatar = got.avatar }, got)
      assert.equal(c.avatar or nil, got.avatar and true)
      local sent = standin.requests(c.path)
      assert.equal(1, #sent)
      assert.equal(c.method, sent[1].method)
      if c.body then
        assert.equal(cases.body(c, got.avatar), sent[1].body)
      else
        local token = sent[1].query:match("^access_token=(ST%x+)")
        assert.equal("access_token=" .. token .. (c.query ~= "" and "&" .. c.query or ""), sent[1].query)
      end
    end)
  end

  it("hands a session to a human: API sends refused with 95018, the msg_code answers", function()
    standin.kf_account{ open_kfid = cases.KFID, servicers = { cases.SERVICER } }
    standin.set_session{ open_kfid = cases.KFID, external_userid = cases.TO, service_state = 1 }
    assert.same({ 200, "standin-msg-code-1 95018 0" }, { app:request("GET", "/human") })
    assert.same({ 3, cases.SERVICER }, { standin.session(cases.KFID, cases.TO) })
  end)
end)
