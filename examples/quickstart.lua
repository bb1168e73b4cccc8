-- A KF conversation in a few lines: pull what a customer wrote with sync_msg, answer the welcome event, then
-- reply with every message type. `tools/demo` runs it against the local WeCom stand-in; point
-- WECOM_BASE_URL (and WECOM_CORP_ID, WECOM_KF_SECRET, WECOM_OPEN_KFID) at WeCom to run it for real.
local work = require "wechat.work"
local kf = require "wechat.work.kf.message"
local menu = require "wechat.work.kf.menu"
local link = require "wechat.work.kf.link"

local getenv = os.getenv

local client = work.client{
  corp_id = getenv("WECOM_CORP_ID") or "wwCORP",
  agents = { kf = { secret = getenv("WECOM_KF_SECRET") or "KF_SECRET" } },
  base_url = getenv("WECOM_BASE_URL") or "http://127.0.0.1:18080",
  cafile = getenv("WECOM_CAFILE"),
  timeout = 5,
}
local open_kfid = getenv("WECOM_OPEN_KFID") or "wkDEMO"

local function show(what, res, err)
  if res then
    print(string.format("  -> %-18s ok, msgid %s", what, tostring(res.msgid)))
  else
    print(string.format("  -> %-18s failed: %s", what, tostring(err)))
  end
  return res, err
end

-- 1. Pull every page of new customer messages (WeCom may answer has_more = 1 with an empty page).
print("Pulling customer messages with sync_msg")
local messages, cursor = {}, nil
repeat
  local page, err = kf.sync_msg(client, "kf", { open_kfid = open_kfid, cursor = cursor, limit = 1000 })
  if not page then
    print("sync_msg failed: " .. tostring(err))
    os.exit(1)
  end
  for _, msg in ipairs(page.msg_list) do
    messages[#messages + 1] = msg
  end
  cursor = page.next_cursor
until page.has_more == 0

local customer
for _, msg in ipairs(messages) do
  customer = customer or msg.external_userid
  if msg.msgtype == "event" then
    print(string.format("  %s  event %s", msg.external_userid, msg.event.event_type))
  elseif msg.msgtype == "text" then
    print(string.format("  %s  text %q%s", msg.external_userid, msg.text.content,
      msg.text.menu_id and (" (menu item " .. msg.text.menu_id .. ")") or ""))
  else
    print(string.format("  %s  %s", msg.external_userid, msg.msgtype))
  end
end
print()

-- 2. Answer the enter_session event with a welcome menu, using its one-time code.
print("Answering the events")
for _, msg in ipairs(messages) do
  if msg.msgtype == "event" and msg.event.event_type == "enter_session" and msg.event.welcome_code then
    local welcome = menu.new("欢迎！What can we do for you?")
      :click("track", "Track my order")
      :click("human", "Talk to a person")
      :tail("We answer within a minute.")
      :build()
    show("send_menu_on_event", kf.send_menu_on_event(client, "kf", msg.event.welcome_code, welcome))
  end
end
print()

-- 3. A reply of each type.
print("Replying to " .. tostring(customer) .. " with every message type")
show("send_text", kf.send_text(client, "kf", customer, open_kfid, "您的包裹已发出 🚚", { msgid = "reply-text-1" }))
show("send_image", kf.send_image(client, "kf", customer, open_kfid, "MEDIA-IMAGE"))
show("send_voice", kf.send_voice(client, "kf", customer, open_kfid, "MEDIA-VOICE"))
show("send_video", kf.send_video(client, "kf", customer, open_kfid, "MEDIA-VIDEO", "Unboxing", "How to open it"))
show("send_file", kf.send_file(client, "kf", customer, open_kfid, "MEDIA-INVOICE-PDF"))
show("send_link", kf.send_link(client, "kf", customer, open_kfid, link.new{
  url = "https://example.com/orders/42", title = "Order #42", desc = "Shipped today", thumb_media_id = "MEDIA-THUMB",
}))
show("send_mini_program", kf.send_mini_program(client, "kf", customer, open_kfid, {
  appid = "wx0000000000000000", title = "Track #42", thumb_media_id = "MEDIA-THUMB", pagepath = "pages/track?id=42",
}))
show("send_menu", kf.send_menu(client, "kf", customer, open_kfid,
  menu.new("Was this helpful?"):click("yes", "Yes"):click("no", "No")
    :view("https://example.com/help", "Help centre"):build()))
show("send_location", kf.send_location(client, "kf", customer, open_kfid, {
  name = "Pick-up point", address = "1 Example Road", latitude = 23.1291, longitude = 113.2644,
}))
show("send_message", kf.send_message(client, "kf", customer, open_kfid, "text", { content = "Raw send_message/7" }))
print()

-- 4. What failures look like.
print("Errors")
local ok, raised = pcall(kf.send_text, client, "kf", customer, open_kfid, "hi", { msgid = "not valid!" })
print("  a wrong argument raises:   " .. tostring(not ok and raised))
local wrong = work.client{ corp_id = client.corp_id, agents = { kf = { secret = "WRONG-SECRET" } },
                          base_url = client.base_url, cafile = getenv("WECOM_CAFILE") }
local _, err = kf.send_text(wrong, "kf", customer, open_kfid, "hi")
print("  a run-time failure returns: nil, " .. tostring(err))
client:close()
