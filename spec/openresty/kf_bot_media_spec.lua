-- examples/openresty/kf_bot saves the image a customer sends: the stand-in holds an uploaded PNG, a customer sends
-- it as an image message, and the bot (in its timer, over cosockets) downloads it to <prefix>/media/<msgid>.png,
-- byte for byte, and answers nothing.
local cjson = require "cjson"
local bot_nginx = require "helpers.bot_nginx"
local standin = require "helpers.standin"
local socket = require "socket"
local work = require "wechat.work"
local material = require "wechat.work.material"

local PORT = 18389
local TOKEN = "kfBotMediaSpecToken"
local AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

local function read(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local data = f:read("*a")
  f:close()
  return data
end

describe("examples/openresty/kf_bot with images #openresty", function()
  local bot

  setup(function()
    standin.start()
    bot = bot_nginx.start{ port = PORT, workers = 1, base_url = standin.url(), token = TOKEN, aes_key = AES_KEY,
      name = "media" }
  end)

  teardown(function()
    if bot then
      bot:stop()
    end
  end)

  before_each(function()
    bot:restart()
    standin.reset()
  end)

  it("downloads the image a customer sends into its media directory", function()
    local png = read("examples/media/logo.png")
    local client = work.client{ corp_id = standin.CORPID, agents = { kf = { secret = standin.KF_SECRET } },
      base_url = standin.url() }
    local up = assert(material.upload_data(client, "kf", "image", "photo.png", png))
    client:close()
    local path = bot.prefix .. "/media/img-1.png"
    os.remove(path)
    local status, body = standin.request("POST", "/_standin/customer_writes", cjson.encode{
      callback_url = bot:url(), token = TOKEN, encoding_aes_key = AES_KEY, open_kfid = "wkBOT",
      messages = { { msgid = "img-1", external_userid = "wmCUSTOMER", msgtype = "image",
        image = { media_id = up.media_id } } },
    })
    assert.equal(200, status, body)
    local saved
    for _ = 1, 200 do -- a bound, not a timing assertion
      saved = read(path)
      if saved and #saved == #png then
        break
      end
      socket.sleep(0.05)
    end
    assert.equal(png, saved, bot:error_log())
    assert.is_nil(read(bot.prefix .. "/media/img-1.part"))
    assert.same({ up.media_id }, { standin.requests("/cgi-bin/media/get")[1].args.media_id })
    assert.same({}, standin.delivered())
  end)
end)
