-- Client:get and work.query_string: JSON GETs with a query table, against the stand-in (curl transport, Lua 5.4
-- and LuaJIT). The retry and token rules are those of Client:post (client_spec.lua, retry_spec.lua); here the
-- parts that are GET's own: the URL, the escaping, the order, the argument errors, and that a read is retried.
local standin = require "helpers.standin"
local work = require "wechat.work"

describe("wechat.work client GET", function()
  local client
  local PATH = "/cgi-bin/kf/customer/get_upgrade_service_config"

  setup(standin.start)

  before_each(function()
    standin.reset()
    client = work.client{
      corp_id = standin.CORPID,
      agents = { kf = { secret = standin.KF_SECRET } },
      base_url = standin.url(),
      timeout = 5,
    }
  end)

  after_each(function()
    client:close()
  end)

  describe("query_string", function()
    it("sorts names and escapes names and values (RFC 3986 unreserved kept)", function()
      assert.equal("a=1&b=x%20y%26z%3D&m%C3%A9dia=%E5%AE%A2%E6%9C%8D&z=-._~",
        work.query_string{ z = "-._~", b = "x y&z=", a = 1, ["média"] = "客服" })
      assert.equal("", work.query_string(nil))
      assert.equal("", work.query_string{})
    end)

    it("raises on a value that is not a string or an integer", function()
      assert.has_error(function() work.query_string{ x = 1.5 } end,
        "bad argument #1 to 'query_string' (query.x: string or integer expected, got non-integer number)")
      assert.has_error(function() work.query_string{ x = true } end,
        "bad argument #1 to 'query_string' (query.x: string or integer expected, got boolean)")
      assert.has_error(function() work.query_string("a=b") end,
        "bad argument #1 to 'query_string' (table expected, got string)")
    end)
  end)

  it("sends the token first, then the query in sorted order, no body", function()
    standin.script(PATH, { status = 200, body = '{"errcode":0,"errmsg":"ok","n":7}' })
    local res, err = client:get("kf", PATH, { open_kfid = "wk A&B", b = 2 }, "op")
    assert.is_nil(err)
    assert.same({ errcode = 0, errmsg = "ok", n = 7 }, res)
    local req = standin.requests(PATH)
    assert.equal(1, #req)
    assert.equal("GET", req[1].method)
    assert.equal("", req[1].body)
    assert.truthy(req[1].query:find("^access_token=ST%x+&b=2&open_kfid=wk%%20A%%26B$"), req[1].query)
  end)

  it("sends only the token when the query is nil", function()
    standin.script(PATH, { status = 200, body = '{"errcode":0,"errmsg":"ok"}' })
    assert.truthy(client:get("kf", PATH, nil, "op"))
    assert.truthy(standin.requests(PATH)[1].query:find("^access_token=ST%x+$"))
  end)

  it("retries a read after an answer that never came (a read is idempotent)", function()
    standin.script(PATH, { close = true })
    standin.script(PATH, { status = 200, body = '{"errcode":0,"errmsg":"ok"}' })
    local res, err = client:get("kf", PATH, { open_kfid = "wk1" }, "op")
    assert.is_nil(err)
    assert.equal(0, res.errcode)
    assert.equal(2, standin.counts()[PATH])
  end)

  it("refreshes a refused token once and asks again", function()
    standin.script(PATH, { errcode = 40014, errmsg = "invalid access_token" })
    standin.script(PATH, { status = 200, body = '{"errcode":0,"errmsg":"ok"}' })
    assert.truthy(client:get("kf", PATH, nil, "op"))
    assert.equal(2, standin.counts()["/cgi-bin/gettoken"])
  end)

  it("raises on a bad query or agent, at the caller's line", function()
    local SRC = debug.getinfo(1, "S").short_src
    local line = debug.getinfo(1, "l").currentline + 1
    local ok, msg = pcall(function() client:get("kf", PATH, { x = {} }, "op") end)
    assert.is_false(ok)
    assert.equal(SRC .. ":" .. line .. ": bad argument #3 to 'get' (query.x: string or integer expected, got table)",
      msg)
    assert.has_error(function() client:get("nope", PATH, nil, "op") end,
      "bad argument #1 to 'get' (unknown agent 'nope')")
    assert.same({}, standin.requests(PATH))
  end)
end)
