-- A blocking transport (curl) inside nginx: refused where cosockets are at hand (a request handler), since it
-- would stall the whole worker while it waits; allowed with allow_blocking = true; allowed in init_by_lua, where
-- cosockets are not available. A curl client made in init_by_lua is still refused in a content handler, at the
-- request, as a "phase" error value.
local nginx = require "helpers.nginx"
local standin = require "helpers.standin"

local PORT = 18391

local HTTP = [[
    init_by_lua_block {
      local work = require "wechat.work"
      SPEC_OPTS = { corp_id = "wwCORP", agents = { kf = { secret = "KF_SECRET" } }, base_url = "@URL@", timeout = 5 }
      local opts = setmetatable({ transport = "curl" }, { __index = SPEC_OPTS })
      -- allowed here: init_by_lua has no cosockets
      SPEC_INIT_CLIENT = work.client(opts)
    }
]]

local SERVER = [[
    location = /t {
      content_by_lua_block {
        local work = require "wechat.work"
        local function opts(extra)
          local t = {}
          for k, v in pairs(SPEC_OPTS) do t[k] = v end
          for k, v in pairs(extra) do t[k] = v end
          return t
        end
        local function raised(fn, ...)
          local ok, err = pcall(fn, ...)
          return ok and "no error" or (tostring(err):gsub("^[^:]+:%d+: ", ""))
        end
        ngx.say(raised(work.client, opts{ transport = "curl" }))
        local curl = require("wechat.work.transport.curl").new{ timeout = 5 }
        ngx.say(raised(work.client, opts{ transport = curl }))
        local token, err = SPEC_INIT_CLIENT:token("kf")
        ngx.say(tostring(token), " ", err.kind, " ", err.message)
        local allowed = work.client(opts{ transport = "curl", allow_blocking = true })
        ngx.say(allowed:token("kf") and "token" or "no token")
        ngx.say(work.client(opts{ transport = curl, allow_blocking = true }):token("kf") and "token" or "no token")
      }
    }
]]

describe("a blocking transport inside nginx #openresty", function()
  local app

  setup(function()
    standin.start()
    app = nginx.start{ name = "blocking", port = PORT, workers = 1,
      http = (HTTP:gsub("@URL@", standin.url())), server = SERVER }
  end)

  teardown(function()
    if app then
      app:stop()
    end
  end)

  it("is refused in a content handler unless allow_blocking, and allowed in init_by_lua", function()
    standin.reset()
    local status, body = app:request("GET", "/t")
    assert.are.equal(200, status, body)
    local refused = "bad argument #1 to 'client' (transport: a blocking transport (curl) would stall the nginx "
      .. "worker in the 'content' phase; use transport = \"cosocket\" there, or allow_blocking = true)"
    assert.are.same({
      refused,
      refused,
      "nil phase cannot send with a blocking transport (curl) from the nginx 'content' phase: it would stall "
        .. "the worker; use transport = \"cosocket\", or allow_blocking = true",
      "token",
      "token",
    }, (function()
      local out = {}
      for line in body:gmatch("([^\n]*)\n") do
        out[#out + 1] = line
      end
      return out
    end)())
    -- only the two allowed clients reached WeCom
    assert.same({ ["/cgi-bin/gettoken"] = 2 }, standin.counts())
  end)
end)
