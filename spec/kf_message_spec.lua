-- Every KF operation end to end under Lua 5.4 and LuaJIT (curl transport): the exact body the stand-in receives
-- and the exact answer. The same cases run inside nginx in spec/openresty/kf_spec.lua.
local standin = require "helpers.standin"
local cases = require "helpers.kf_cases"
local work = require "wechat.work"
local kf = require "wechat.work.kf.message"

describe("wechat.work.kf.message over libcurl", function()
  local client

  setup(standin.start)

  -- A reset stand-in forgets its tokens, so each spec gets a client of its own.
  before_each(function()
    standin.reset()
    client = work.client{
      corp_id = standin.CORPID,
      agents = { [cases.AGENT] = { secret = standin.KF_SECRET } },
      base_url = standin.url(),
      timeout = 5,
    }
  end)

  after_each(function()
    client:close()
  end)

  for _, c in ipairs(cases.cases) do
    it(c.name .. " posts the documented body", function()
      local res, err = kf[c.op](client, cases.AGENT, cases.args(c))
      assert.is_nil(err)
      assert.same(c.result, res)
      assert.same({ c.body }, standin.bodies(c.path))
      assert.equal(1, standin.counts()[c.path])
    end)
  end

  it("writes an empty menu list as [] and non-ASCII text raw", function()
    assert.truthy(kf.send_menu(client, cases.AGENT, "wm1", "wk1", { head_content = "选一个", list = {} }))
    local raw = standin.requests("/cgi-bin/kf/send_msg")[1].body
    assert.truthy(raw:find('"list":[]', 1, true))
    assert.truthy(raw:find("选一个", 1, true))
  end)

  -- kf_cases compares decoded bodies; these are the bytes, so nothing is there that should not be (no "list":[]
  -- or "title":"" made up for a field left out).
  it("leaves optional fields out of the bytes: miniprogram title, menu list and tail", function()
    assert.truthy(kf.send_mini_program(client, cases.AGENT, "wm1", "wk1",
      { appid = "wx1", thumb_media_id = "T", pagepath = "p" }))
    assert.truthy(kf.send_menu(client, cases.AGENT, "wm1", "wk1", { head_content = "稍等" }, { msgid = "h1" }))
    assert.truthy(kf.send_menu_on_event(client, cases.AGENT, "CODE9", { tail_content = "谢谢" }, "t1"))
    local sent = standin.requests("/cgi-bin/kf/send_msg")
    assert.equal('{"touser":"wm1","open_kfid":"wk1","msgtype":"miniprogram","miniprogram":{"appid":"wx1",'
      .. '"thumb_media_id":"T","pagepath":"p"}}', sent[1].body)
    assert.equal('{"touser":"wm1","open_kfid":"wk1","msgid":"h1","msgtype":"msgmenu","msgmenu":'
      .. '{"head_content":"稍等"}}', sent[2].body)
    assert.equal('{"code":"CODE9","msgid":"t1","msgtype":"msgmenu","msgmenu":{"tail_content":"谢谢"}}',
      standin.requests("/cgi-bin/kf/send_msg_on_event")[1].body)
    assert.equal(3, #standin.delivered())
  end)

  it("returns WeCom's generated msgid when none is given", function()
    local res = assert(kf.send_text(client, cases.AGENT, "wm1", "wk1", "hi"))
    assert.equal(0, res.errcode)
    assert.equal("string", type(res.msgid))
    assert.is_nil(standin.bodies("/cgi-bin/kf/send_msg")[1].msgid)
  end)

  it("a wrong argument sends nothing, not even a gettoken", function()
    local ok = pcall(kf.send_text, client, cases.AGENT, "wm1", "wk1", string.rep("x", 2049))
    assert.is_false(ok)
    ok = pcall(kf.send_menu, client, cases.AGENT, "wm1", "wk1", { list = { { type = "click" } } })
    assert.is_false(ok)
    assert.same({}, standin.counts())
  end)
end)
