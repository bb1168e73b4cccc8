-- The msgid a builder writes is also returned, so the client knows a send may be retried; `true` (or the
-- client option auto_msgid) makes one.
local core = require "wechat.core"
local cjson = require "cjson"

local HEX32 = "^%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x$"

describe("msgid", function()
  it("comes back as the second result when given", function()
    local body, msgid = core.send_text(nil, nil, "wm", "wk", "x", { msgid = "order-42" })
    assert.equal("order-42", msgid)
    assert.equal("order-42", cjson.decode(body).msgid)
  end)

  it("is nil when there is none", function()
    local body, msgid = core.send_image(nil, nil, "wm", "wk", "MEDIA")
    assert.is_nil(msgid)
    assert.is_nil(cjson.decode(body).msgid)
    assert.is_nil(select(2, core.sync_msg(nil, nil, { limit = 1 })))
  end)

  it("is made when given as true: 32 hex digits, new each time, the caller's table untouched", function()
    local opts = { msgid = true }
    local body, msgid = core.send_text(nil, nil, "wm", "wk", "x", opts)
    assert.truthy(msgid:find(HEX32))
    assert.equal(msgid, cjson.decode(body).msgid)
    assert.is_true(opts.msgid)
    local _, again = core.send_text(nil, nil, "wm", "wk", "x", opts)
    assert.not_equal(msgid, again)
  end)

  it("is made for every send when the client has auto_msgid", function()
    local client = { auto_msgid = true }
    local body, msgid = core.send_video(client, "kf", "wm", "wk", "MEDIA", nil, nil)
    assert.truthy(msgid:find(HEX32))
    assert.equal(msgid, cjson.decode(body).msgid)
    local opts = {}
    local _, with_opts = core.send_menu(client, "kf", "wm", "wk", { list = {} }, opts)
    assert.truthy(with_opts:find(HEX32))
    assert.is_nil(next(opts))
    local _, on_event = core.send_text_on_event(client, "kf", "CODE", "hi")
    assert.truthy(on_event:find(HEX32))
    local _, given = core.send_text(client, "kf", "wm", "wk", "x", { msgid = "mine" })
    assert.equal("mine", given)
  end)

  it("of a raw body is the body's own", function()
    local _, msgid = core.send_message(nil, nil, { touser = "wm", open_kfid = "wk", msgid = "raw-1" })
    assert.equal("raw-1", msgid)
    assert.is_nil(select(2, core.send_message(nil, nil, { touser = "wm" })))
  end)

  it("false is not a msgid", function()
    local ok, err = pcall(core.send_text, nil, nil, "wm", "wk", "x", { msgid = false })
    assert.is_false(ok)
    assert.equal("bad argument #6 to 'send_text' (opts.msgid: string expected, got boolean)",
      (tostring(err):gsub("^[^:]+:%d+: ", "")))
  end)
end)
