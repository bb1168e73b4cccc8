-- A KF conversation: pull what customers wrote with sync_msg, answer the welcome event, reply to the customer.
--
-- Two ways to run it:
--
-- * `tools/demo`: against the local WeCom stand-in, no credentials. It replies with every message type it has a
--   media id for (tools/demo uploads examples/media/logo.png for the image, link and mini program replies; the
--   stand-in, like WeCom, refuses a media id it never issued).
--
-- * Against WeCom: set WECOM_CORP_ID, WECOM_KF_SECRET and WECOM_OPEN_KFID (WECOM_SYNC_TOKEN: the Token of the
--   latest kf_msg_or_event callback; without it sync_msg is strictly rate limited). WeCom lets a business send a
--   customer at most 5 messages within 48 hours of the customer's last message, so the script then answers only
--   the customer who wrote last, only within those 48 hours, with at most 5 messages, and the welcome event only
--   while its code lives (about 20 s). It sends text, a menu and a location; a type that needs a media id only
--   when you give a real one (upload it first with WeCom's /cgi-bin/media/upload): WECOM_MEDIA_IMAGE,
--   WECOM_MEDIA_VOICE, WECOM_MEDIA_VIDEO, WECOM_MEDIA_FILE, WECOM_MEDIA_THUMB (link and mini program; the mini
--   program also needs WECOM_MINIPROGRAM_APPID).
local work = require "wechat.work"
local kf = require "wechat.work.kf.message"
local menu = require "wechat.work.kf.menu"
local link = require "wechat.work.kf.link"

local getenv = os.getenv

local AGAINST_WECOM = getenv("WECOM_CORP_ID") ~= nil
local MAX_REPLIES = 5                -- WeCom: messages per customer within 48 hours of the customer's last one
local WINDOW = 48 * 3600
local WELCOME_CODE_LIFETIME = 20     -- seconds, about: WeCom takes an event's code once, shortly after it

if AGAINST_WECOM and not (getenv("WECOM_KF_SECRET") and getenv("WECOM_OPEN_KFID")) then
  io.stderr:write("against WeCom, set WECOM_CORP_ID, WECOM_KF_SECRET and WECOM_OPEN_KFID\n")
  os.exit(2, true) -- true: close the Lua state first, so everything is freed (the curl handle too)
end

local client = work.client{
  corp_id = getenv("WECOM_CORP_ID") or "wwCORP",
  agents = { kf = { secret = getenv("WECOM_KF_SECRET") or "KF_SECRET" } },
  base_url = getenv("WECOM_BASE_URL") or (not AGAINST_WECOM and "http://127.0.0.1:18080" or nil),
  cafile = getenv("WECOM_CAFILE"),
  timeout = 5,
}
local open_kfid = getenv("WECOM_OPEN_KFID") or "wkDEMO"

-- A media id from the environment (uploaded first: WeCom and the stand-in refuse one they never issued), or nil.
local function media(name)
  local id = getenv(name)
  return id ~= "" and id or nil
end

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
  local page, err = kf.sync_msg(client, "kf", { open_kfid = open_kfid, cursor = cursor, limit = 1000,
                                                token = getenv("WECOM_SYNC_TOKEN") })
  if not page then
    print("sync_msg failed: " .. tostring(err))
    os.exit(1, true)
  end
  for _, msg in ipairs(page.msg_list) do
    messages[#messages + 1] = msg
  end
  cursor = page.next_cursor
until page.has_more == 0

local last -- the last message a customer wrote (origin 3)
for _, msg in ipairs(messages) do
  if msg.origin == 3 and (not last or msg.send_time >= last.send_time) then
    last = msg
  end
  if msg.msgtype == "event" then
    print(string.format("  %s  event %s", msg.external_userid or msg.event.external_userid or "-",
      msg.event.event_type))
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
    if AGAINST_WECOM and os.time() - msg.send_time > WELCOME_CODE_LIFETIME then
      print("  (the welcome code of " .. tostring(msg.event.external_userid) .. " has expired: not answered)")
    else
      local welcome = menu.new("欢迎！What can we do for you?")
        :click("track", "Track my order")
        :click("human", "Talk to a person")
        :tail("We answer within a minute.")
        :build()
      show("send_menu_on_event", kf.send_menu_on_event(client, "kf", msg.event.welcome_code, welcome))
    end
  end
end
print()

-- 3. Replies to the customer who wrote last, most useful first; a type whose media id is missing is left out.
local customer = last and last.external_userid
local thumb = media("WECOM_MEDIA_THUMB")
local appid = getenv("WECOM_MINIPROGRAM_APPID") or (not AGAINST_WECOM and "wx0000000000000000" or nil)
local image, voice = media("WECOM_MEDIA_IMAGE"), media("WECOM_MEDIA_VOICE")
local video, file = media("WECOM_MEDIA_VIDEO"), media("WECOM_MEDIA_FILE")
local REPLIES = {
  { "send_text", true, function()
    -- msgid = true: a random msgid, so the library may send it again after a timeout without a duplicate
    return kf.send_text(client, "kf", customer, open_kfid, "您的包裹已发出 🚚", { msgid = true })
  end },
  { "send_menu", true, function()
    return kf.send_menu(client, "kf", customer, open_kfid,
      menu.new("Was this helpful?"):click("yes", "Yes"):click("no", "No")
        :view("https://example.com/help", "Help centre"):build())
  end },
  { "send_location", true, function()
    return kf.send_location(client, "kf", customer, open_kfid, {
      name = "Pick-up point", address = "1 Example Road", latitude = 23.1291, longitude = 113.2644,
    })
  end },
  { "send_link", thumb, function()
    return kf.send_link(client, "kf", customer, open_kfid, link.new{
      url = "https://example.com/orders/42", title = "Order #42", desc = "Shipped today", thumb_media_id = thumb,
    })
  end },
  { "send_image", image, function() return kf.send_image(client, "kf", customer, open_kfid, image) end },
  { "send_mini_program", thumb and appid, function()
    return kf.send_mini_program(client, "kf", customer, open_kfid, {
      appid = appid, title = "Track #42", thumb_media_id = thumb, pagepath = "pages/track?id=42",
    })
  end },
  { "send_video", video, function()
    return kf.send_video(client, "kf", customer, open_kfid, video, "Unboxing", "How to open it")
  end },
  { "send_file", file, function() return kf.send_file(client, "kf", customer, open_kfid, file) end },
  { "send_voice", voice, function() return kf.send_voice(client, "kf", customer, open_kfid, voice) end },
  { "send_message", true, function()
    return kf.send_message(client, "kf", customer, open_kfid, "text", { content = "Raw send_message/7" })
  end },
}

if not customer then
  print("No customer wrote: nothing to reply to")
elseif AGAINST_WECOM and os.time() - last.send_time > WINDOW then
  print(customer .. " last wrote more than 48 hours ago: WeCom takes no reply until they write again")
else
  print("Replying to " .. customer
    .. (AGAINST_WECOM and " (at most 5 messages)" or " with every message type it has a media id for"))
  local sent = 0
  for _, reply in ipairs(REPLIES) do
    local name, possible, send = reply[1], reply[2], reply[3]
    if AGAINST_WECOM and sent == MAX_REPLIES then
      break
    elseif possible then
      show(name, send())
      sent = sent + 1
    end
  end
end
print()

-- 4. What failures look like.
print("Errors")
local ok, raised = pcall(kf.send_text, client, "kf", customer or "wmNOBODY", open_kfid, "hi", { msgid = "not valid!" })
print("  a wrong argument raises:   " .. tostring(not ok and raised))
local wrong = work.client{ corp_id = client.corp_id, agents = { kf = { secret = "WRONG-SECRET" } },
                          base_url = client.base_url, cafile = getenv("WECOM_CAFILE") }
local _, err = kf.send_text(wrong, "kf", customer or "wmNOBODY", open_kfid, "hi")
print("  a run-time failure returns: nil, " .. tostring(err))
client:close()
