--- Builds the `msg` table of a KF menu message (msgmenu) for `send_menu` and `send_menu_on_event`:
--
--   menu.new("How was it?"):click("101", "Good"):click("102", "Bad")
--       :view("https://example.com/rate", "Details"):miniprogram(appid, "pages/rate", "Open")
--       :text("or write to us"):tail("Thanks"):build()
--
-- Each method checks its arguments against WeCom's byte limits at once, so a bad item raises where it is
-- added, not later inside a send. `build()` returns a fresh plain table each time.
local valid_url = require("wechat.work.kf.link").valid_url
-- The limits wechat.core's send_menu checks, so that the two never disagree.
local limits = require("wechat.core").limits

local error, pairs, setmetatable, type = error, pairs, setmetatable, type
local format = string.format

local M = {}

local MAX_ITEMS = limits.msgmenu.list
local HEAD_MAX, TAIL_MAX = limits.msgmenu.head_content, limits.msgmenu.tail_content
local CLICK, VIEW, MINIPROGRAM, TEXT = limits.menu_item.click, limits.menu_item.view, limits.menu_item.miniprogram,
  limits.menu_item.text

local Menu = {}
Menu.__index = Menu

local function check_text(method, argn, name, value, max, optional)
  if value == nil and optional then
    return
  end
  if type(value) ~= "string" then
    error(format("bad argument #%d to '%s' (%s: string expected, got %s)", argn, method, name,
      value == nil and "no value" or type(value)), 3)
  end
  if #value == 0 then
    error(format("bad argument #%d to '%s' (%s: must not be empty)", argn, method, name), 3)
  end
  if #value > max then
    error(format("bad argument #%d to '%s' (%s: at most %d bytes, got %d)", argn, method, name, max, #value), 3)
  end
end

-- A full menu is the fault of self, the menu the method is called on: Lua's own argument errors say
-- "calling 'm' on bad self (...)" then (luaL_argerror), and so does this one. Level 3 is the method's caller:
-- the methods call add in a statement, never as a tail call, which would take their level away.
local function add(self, method, item)
  local list = self.list
  if #list >= MAX_ITEMS then
    error(format("calling '%s' on bad self (menu: at most %d items, got %d)", method, MAX_ITEMS, #list + 1), 3)
  end
  list[#list + 1] = item
end

--- Starts a menu. `head` (optional) is the text above the items, at most 1024 bytes.
function M.new(head)
  check_text("new", 1, "head", head, HEAD_MAX, true)
  return setmetatable({ head = head, list = {} }, Menu)
end

--- Adds a button the customer taps; the tap comes back through sync_msg as a text message with `menu_id = id`.
-- id 1..64 bytes, content 1..128 bytes.
function Menu:click(id, content)
  check_text("click", 1, "id", id, CLICK.id)
  check_text("click", 2, "content", content, CLICK.content)
  add(self, "click", { type = "click", click = { id = id, content = content } })
  return self
end

--- Adds a link: url 1..2048 bytes, an http:// or https:// URL with a host (`link.valid_url`), content 1..1024
-- bytes.
function Menu:view(url, content)
  check_text("view", 1, "url", url, VIEW.url)
  if not valid_url(url) then
    error("bad argument #1 to 'view' (url: http:// or https:// URL with a host expected)", 2)
  end
  check_text("view", 2, "content", content, VIEW.content)
  add(self, "view", { type = "view", view = { url = url, content = content } })
  return self
end

--- Adds a mini program entry: appid 1..32 bytes, pagepath 1..1024, content 1..1024.
function Menu:miniprogram(appid, pagepath, content)
  check_text("miniprogram", 1, "appid", appid, MINIPROGRAM.appid)
  check_text("miniprogram", 2, "pagepath", pagepath, MINIPROGRAM.pagepath)
  check_text("miniprogram", 3, "content", content, MINIPROGRAM.content)
  add(self, "miniprogram",
    { type = "miniprogram", miniprogram = { appid = appid, pagepath = pagepath, content = content } })
  return self
end

--- Adds a line of plain text; `no_newline` true keeps the next item on the same line.
function Menu:text(content, no_newline)
  check_text("text", 1, "content", content, TEXT.content)
  if no_newline ~= nil and type(no_newline) ~= "boolean" then
    error(format("bad argument #2 to 'text' (no_newline: boolean expected, got %s)", type(no_newline)), 2)
  end
  local text = { content = content }
  if no_newline ~= nil then
    text.no_newline = no_newline and 1 or 0
  end
  add(self, "text", { type = "text", text = text })
  return self
end

--- Sets the text below the items, at most 1024 bytes.
function Menu:tail(tail)
  check_text("tail", 1, "tail", tail, TAIL_MAX)
  self.tail_content = tail
  return self
end

local function copy(value)
  if type(value) ~= "table" then
    return value
  end
  local out = {}
  for k, v in pairs(value) do
    out[k] = copy(v)
  end
  return out
end

--- The `msg` table: `{ head_content = ..., list = { ... }, tail_content = ... }`.
function Menu:build()
  return { head_content = self.head, list = copy(self.list), tail_content = self.tail_content }
end

return M
