-- wechat.core states every limit once (core.limits); the Lua builders read them from there. Each limit is tried
-- at its edge on both sides: exactly the limit passes, one byte more fails, with the same words.
local core = require "wechat.core"
local menu = require "wechat.work.kf.menu"
local link = require "wechat.work.kf.link"
local callback = require "wechat.work.callback"

local limits = core.limits
local unpack = table.unpack or unpack

local function message(fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then
    return nil
  end
  return (tostring(err):gsub("^[^:]+:%d+: ", ""):match("%((.*)%)$"))
end

-- The menu item of `kind` with `field` set to `value`, as a Lua builder call and as the table send_menu takes.
local ITEM_ARGS = {
  click = { "id", "content" },
  view = { "url", "content" },
  miniprogram = { "appid", "pagepath", "content" },
  text = { "content" },
}
local function item_args(kind, field, value)
  local args, item = {}, {}
  for i, name in ipairs(ITEM_ARGS[kind]) do
    local v = name == field and value or (name == "url" and "https://e.x/" or "x")
    args[i], item[name] = v, v
  end
  return args, { type = kind, [kind] = item }
end

local function url_of(n)
  return "https://e.x/" .. ("a"):rep(n - #"https://e.x/")
end

describe("core.limits", function()
  it("holds the documented numbers", function()
    assert.same({ content = 2048 }, limits.text)
    assert.same({ title = 128, desc = 512, url = 2048 }, limits.link)
    assert.same({ head_content = 1024, tail_content = 1024, list = 10 }, limits.msgmenu)
    assert.same({ id = 64, content = 128 }, limits.menu_item.click)
    assert.same({ url = 2048, content = 1024 }, limits.menu_item.view)
    assert.same({ appid = 32, pagepath = 1024, content = 1024 }, limits.menu_item.miniprogram)
    assert.same({ content = 1024 }, limits.menu_item.text)
    assert.same({ cursor = 64, token = 128 }, limits.sync_msg)
    assert.equal(32, limits.msgid)
    assert.equal(1024 * 1024, limits.callback_msg)
    assert.equal(limits.callback_msg, callback.MAX_MSG)
  end)

  for kind, fields in pairs(limits.menu_item) do
    for field, max in pairs(fields) do
      it("menu " .. kind .. "." .. field .. ": menu." .. kind .. " and core.send_menu agree on " .. max, function()
        local fit = field == "url" and url_of(max) or ("x"):rep(max)
        local over = field == "url" and url_of(max + 1) or ("x"):rep(max + 1)
        local args, item = item_args(kind, field, fit)
        local built = menu.new()[kind](menu.new(), unpack(args)):build()
        assert.same({ item }, built.list)
        assert.is_string(core.send_menu(nil, nil, "to", "kf", { list = { item } }))
        args, item = item_args(kind, field, over)
        local want = field .. ": at most " .. max .. " bytes, got " .. (max + 1)
        assert.equal(want, message(menu.new()[kind], menu.new(), unpack(args)))
        assert.equal("msg.list[1]." .. kind .. "." .. want,
          message(core.send_menu, nil, nil, "to", "kf", { list = { item } }))
      end)
    end
  end

  it("menu: head, tail and the item count agree with core.send_menu", function()
    local m = limits.msgmenu
    assert.is_table(menu.new(("h"):rep(m.head_content)):tail(("t"):rep(m.tail_content)):build())
    assert.equal("head: at most " .. m.head_content .. " bytes, got " .. (m.head_content + 1),
      message(menu.new, ("h"):rep(m.head_content + 1)))
    assert.equal("msg.head_content: at most " .. m.head_content .. " bytes, got " .. (m.head_content + 1),
      message(core.send_menu, nil, nil, "to", "kf", { head_content = ("h"):rep(m.head_content + 1) }))
    local full, list = menu.new(), {}
    for i = 1, m.list do
      full:text("line " .. i)
      list[i] = { type = "text", text = { content = "line " .. i } }
    end
    assert.is_string(core.send_menu(nil, nil, "to", "kf", { list = list }))
    assert.matches("menu: at most " .. m.list .. " items, got " .. (m.list + 1), message(full.text, full, "one more"),
      1, true)
    list[#list + 1] = { type = "text", text = { content = "one more" } }
    assert.equal("msg.list: at most " .. m.list .. " items, got " .. (m.list + 1),
      message(core.send_menu, nil, nil, "to", "kf", { list = list }))
  end)

  for field, max in pairs(limits.link) do
    it("link " .. field .. ": link.new and core.send_link agree on " .. max, function()
      local function msg(value)
        local t = { url = "https://e.x/", title = "t", desc = "d", thumb_media_id = "M" }
        t[field] = value
        return t
      end
      local fit = field == "url" and url_of(max) or ("x"):rep(max)
      local over = field == "url" and url_of(max + 1) or ("x"):rep(max + 1)
      assert.same(msg(fit), link.new(msg(fit)))
      assert.is_string(core.send_link(nil, nil, "to", "kf", msg(fit)))
      local want = field .. ": at most " .. max .. " bytes, got " .. (max + 1)
      assert.equal(want, message(link.new, msg(over)))
      assert.equal("msg." .. want, message(core.send_link, nil, nil, "to", "kf", msg(over)))
    end)
  end
end)
