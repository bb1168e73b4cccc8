local core = require "wechat.core"
local menu = require "wechat.work.kf.menu"
local link = require "wechat.work.kf.link"

-- Errors raised at the caller carry its position; the message after it is what we pin down.
local function raised(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  return (tostring(err):gsub("^[^:]+:%d+: ", ""))
end

-- The whole error of a builder call made on this file's line `line`, position included.
local function where(line)
  return debug.getinfo(1, "S").short_src .. ":" .. line .. ": "
end

describe("wechat.work.kf.menu", function()
  it("builds the documented msgmenu table, items in order", function()
    local msg = menu.new("How was it?")
      :click("101", "Good")
      :click("102", "Bad")
      :view("https://example.com/rate", "Details")
      :miniprogram("wx123", "pages/rate", "Open")
      :text("or write to us", true)
      :tail("Thanks")
      :build()
    assert.same({
      head_content = "How was it?",
      list = {
        { type = "click", click = { id = "101", content = "Good" } },
        { type = "click", click = { id = "102", content = "Bad" } },
        { type = "view", view = { url = "https://example.com/rate", content = "Details" } },
        { type = "miniprogram", miniprogram = { appid = "wx123", pagepath = "pages/rate", content = "Open" } },
        { type = "text", text = { content = "or write to us", no_newline = 1 } },
      },
      tail_content = "Thanks",
    }, msg)
  end)

  it("leaves head and tail out when not given, and the list empty", function()
    assert.same({ list = {} }, menu.new():build())
  end)

  it("gives a fresh table on each build", function()
    local m = menu.new("h"):click("1", "a")
    local first = m:build()
    first.list[1].click.id = "changed"
    assert.equal("1", m:build().list[1].click.id)
  end)

  it("refuses an 11th item of any kind as Lua refuses a bad self, at the caller's line", function()
    local m = menu.new("h")
    for i = 1, 10 do
      m:click(tostring(i), "item " .. i)
    end
    local line
    local ok, err = pcall(function()
      line = debug.getinfo(1, "l").currentline; m:click("11", "one too many")
    end)
    assert.is_false(ok)
    assert.equal(where(line) .. "calling 'click' on bad self (menu: at most 10 items, got 11)", err)
    assert.equal("calling 'view' on bad self (menu: at most 10 items, got 11)",
      raised(m.view, m, "https://e.com", "v"))
    assert.equal("calling 'miniprogram' on bad self (menu: at most 10 items, got 11)",
      raised(m.miniprogram, m, "wx1", "p", "c"))
    assert.equal("calling 'text' on bad self (menu: at most 10 items, got 11)", raised(m.text, m, "t"))
    assert.equal(10, #m:build().list)
  end)

  it("checks byte limits, naming the argument", function()
    local m = menu.new()
    assert.equal("bad argument #1 to 'click' (id: at most 64 bytes, got 65)",
      raised(m.click, m, string.rep("x", 65), "a"))
    assert.equal("bad argument #2 to 'click' (content: at most 128 bytes, got 129)",
      raised(m.click, m, "1", string.rep("字", 43)))
    assert.equal("bad argument #2 to 'click' (content: string expected, got no value)", raised(m.click, m, "1"))
    assert.equal("bad argument #1 to 'click' (id: must not be empty)", raised(m.click, m, "", "a"))
    assert.equal("bad argument #1 to 'new' (head: at most 1024 bytes, got 1025)",
      raised(menu.new, string.rep("h", 1025)))
    assert.equal("bad argument #1 to 'view' (url: http:// or https:// URL with a host expected)",
      raised(m.view, m, "example.com", "x"))
    assert.equal("bad argument #1 to 'view' (url: http:// or https:// URL with a host expected)",
      raised(m.view, m, "https://", "x"))
    assert.equal("bad argument #1 to 'miniprogram' (appid: at most 32 bytes, got 33)",
      raised(m.miniprogram, m, string.rep("a", 33), "p", "c"))
    assert.equal("bad argument #2 to 'text' (no_newline: boolean expected, got number)", raised(m.text, m, "t", 1))
    assert.same({ list = {} }, m:build())
  end)
end)

describe("wechat.work.kf.link", function()
  it("makes the link msg table", function()
    assert.same({ url = "https://e.com/a", title = "T", desc = "D", thumb_media_id = "M" },
      link.new{ url = "https://e.com/a", title = "T", desc = "D", thumb_media_id = "M" })
  end)

  it("requires url, title and thumb_media_id, and a scheme on the url", function()
    assert.equal("bad argument #1 to 'new' (title: string expected, got no value)",
      raised(link.new, { url = "https://e.com", thumb_media_id = "M" }))
    assert.equal("bad argument #1 to 'new' (url: http:// or https:// URL with a host expected)",
      raised(link.new, { url = "e.com/a", title = "T", thumb_media_id = "M" }))
    assert.equal("bad argument #1 to 'new' (colour: unknown field)",
      raised(link.new, { url = "https://e.com", title = "T", thumb_media_id = "M", colour = "red" }))
  end)

  it("refuses a desc over 512 bytes unless asked to cut it, then cuts on a character boundary", function()
    local desc = string.rep("字", 200) -- 600 bytes
    assert.equal("bad argument #1 to 'new' (desc: at most 512 bytes, got 600)",
      raised(link.new, { url = "https://e.com", title = "T", desc = desc, thumb_media_id = "M" }))
    local msg = link.new{ url = "https://e.com", title = "T", desc = desc, thumb_media_id = "M", truncate = true }
    assert.equal(510, #msg.desc) -- 170 whole characters of 3 bytes
    assert.equal(string.rep("字", 170), msg.desc)
  end)

  it("refuses a title over 128 bytes", function()
    assert.equal("bad argument #1 to 'new' (title: at most 128 bytes, got 129)",
      raised(link.new, { url = "https://e.com", title = string.rep("t", 129), thumb_media_id = "M" }))
  end)
end)

-- One url rule for the Lua builders and wechat.core: the same urls pass and fail everywhere, with the same words.
describe("one url rule", function()
  local GOOD = {
    "http://a", "HTTPS://Example.COM", "https://e.com:8443/x?y=1#z", "https://user:pw@e.com/", "https://[::1]:8080/",
    "http://e.com?x=1", "https://e.com#top", "https://中文.cn/路径",
  }
  local BAD = {
    "https://", "http://", "https:///path", "https://?q=1", "https://#f", "https://:443/", "https://user@/x",
    "https://user@:80", "https://[]/", "ftp://e.com", "e.com", "https:/e.com", "//e.com/", " https://e.com",
  }
  local MESSAGE = "http:// or https:// URL with a host expected"

  local function link_body(url)
    return core.send_link(nil, nil, "wmU", "wkK", { title = "T", url = url, thumb_media_id = "M" })
  end

  local function menu_body(url)
    return core.send_menu(nil, nil, "wmU", "wkK", { list = { { type = "view", view = { url = url, content = "v" } } } })
  end

  for _, url in ipairs(GOOD) do
    it("takes " .. url, function()
      assert.is_true(link.valid_url(url))
      assert.equal(url, link.new{ url = url, title = "T", thumb_media_id = "M" }.url)
      assert.equal(url, menu.new():view(url, "v"):build().list[1].view.url)
      local want = require("cjson").encode(url):gsub("\\/", "/")
      assert.truthy(link_body(url):find('"url":' .. want, 1, true))
      assert.truthy(menu_body(url):find('"url":' .. want, 1, true))
    end)
  end

  for _, url in ipairs(BAD) do
    it("refuses " .. url, function()
      assert.is_false(link.valid_url(url))
      assert.equal("bad argument #1 to 'new' (url: " .. MESSAGE .. ")",
        raised(link.new, { url = url, title = "T", thumb_media_id = "M" }))
      local m = menu.new()
      assert.equal("bad argument #1 to 'view' (url: " .. MESSAGE .. ")", raised(m.view, m, url, "v"))
      assert.equal("bad argument #5 to 'send_link' (msg.url: " .. MESSAGE .. ")", raised(link_body, url))
      assert.equal("bad argument #5 to 'send_menu' (msg.list[1].view.url: " .. MESSAGE .. ")", raised(menu_body, url))
    end)
  end

  it("valid_url is false for what is not a string", function()
    assert.is_false(link.valid_url(nil))
    assert.is_false(link.valid_url(42))
  end)
end)
