-- wechat.work.material inside nginx content handlers (cosocket transport, token in a lua_shared_dict): the same
-- behaviour as over libcurl (spec/helpers/media_behaviour.lua), each case run in the worker, whose own peak memory
-- growth is what the 20 MB case measures.
local cjson = require "cjson"
local behaviour = require "helpers.media_behaviour"
local nginx = require "helpers.nginx"
local standin = require "helpers.standin"

local PORT = 18388

local HTTP = [[
    lua_shared_dict wechat 1m;
    init_by_lua_block {
      SPEC_CLIENT = require("wechat.work").client{ corp_id = "wwCORP", agents = { kf = { secret = "KF_SECRET" } },
        base_url = "@URL@", timeout = 5, shared_dict = "wechat" }
    }
]]

local SERVER = [[
    location = /case {
      content_by_lua_block {
        local cases = require "helpers.media_cases"
        local out = cases.cases[ngx.var.arg_name](SPEC_CLIENT, cases.DIR, ngx.var.arg_arg)
        ngx.print(require("cjson").encode(out))
      }
    }
    location = /forget_tokens {
      content_by_lua_block { ngx.shared.wechat:flush_all() ngx.print("ok") }
    }
]]

describe("wechat.work.material inside nginx #openresty", function()
  local app

  setup(function()
    behaviour.setup()
    -- one worker: the peak memory measured is the one worker's that ran the transfer
    app = nginx.start{ name = "material", port = PORT, workers = 1, http = HTTP:gsub("@URL@", standin.url()),
      server = SERVER }
  end)
  teardown(function()
    if app then app:stop() end
  end)
  before_each(function()
    standin.reset()
    assert.same({ 200, "ok" }, { app:request("GET", "/forget_tokens") })
  end)

  behaviour.define(it, assert, function(name, arg)
    local status, body = app:request("GET", "/case?name=" .. name .. (arg and ("&arg=" .. arg) or ""))
    assert.equal(200, status, body)
    return cjson.decode(body)
  end)
end)
