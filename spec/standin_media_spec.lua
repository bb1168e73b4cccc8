-- The stand-in's media/upload and media/get refuse what WeCom refuses, with WeCom's codes (the table in
-- tools/wecom-standin/README.md), driven by the curl command so that the multipart bodies are not ours.
local cjson = require "cjson"
local standin = require "helpers.standin"
local shell_quote = require("helpers.shell").quote

local DIR = "/tmp/wechat-standin-media-spec"

local function write(name, data)
  local f = assert(io.open(DIR .. "/" .. name, "wb"))
  f:write(data)
  f:close()
  return DIR .. "/" .. name
end

-- curl's answer (and HTTP status) to a form posted to media/upload with the query given.
local function curl(args)
  local p = assert(io.popen("curl -s -w '\\n%{http_code}' " .. args))
  local out = p:read("*a")
  p:close()
  local body, status = out:match("^(.*)\n(%d+)$")
  return body, tonumber(status)
end

local function upload(query, form)
  local parts = {}
  for i, f in ipairs(form) do
    parts[i] = "-F " .. shell_quote(f)
  end
  local body = curl(table.concat(parts, " ") .. " " .. shell_quote(standin.url() .. "/cgi-bin/media/upload?" .. query))
  return cjson.decode(body)
end

-- A part header with filelength, as WeCom documents it (curl -F writes no filelength by itself).
local function headers_file(name, filename, length)
  return write("h-" .. name .. length, ('Content-Disposition: form-data; name="%s"; filename="%s"; filelength=%d\r\n')
    :format(name, filename, length))
end

local function form(path, length, name, filename)
  return ("%s=@%s;headers=@%s;type=application/octet-stream"):format(name or "media", path,
    headers_file(name or "media", filename or "f.bin", length))
end

describe("the stand-in's media calls", function()
  local token, png, bin

  setup(function()
    standin.start()
    os.execute("rm -rf " .. DIR .. " && mkdir -p " .. DIR)
    png = write("a.png", "\137PNG\r\n\26\n" .. ("x"):rep(100))
    bin = write("a.bin", ("b"):rep(100))
    os.execute("truncate -s " .. (10 * 1024 * 1024 + 1) .. " " .. DIR .. "/ten.bin")
    os.execute("truncate -s " .. (2 * 1024 * 1024 + 1) .. " " .. DIR .. "/two.bin")
  end)

  before_each(function()
    standin.reset()
    token = standin.token()
  end)

  it("stores a well-formed upload and serves it back byte for byte, with Range", function()
    local res = upload("type=image&access_token=" .. token, { form(png, 108, "media", "a.png") })
    assert.equal(0, res.errcode)
    assert.equal("image", res.type)
    assert.equal("string", type(res.created_at))
    local url = standin.url() .. "/cgi-bin/media/get?access_token=" .. token .. "&media_id=" .. res.media_id
    local body, status = curl("-D " .. DIR .. "/h.txt " .. shell_quote(url))
    assert.equal(200, status)
    assert.equal("\137PNG\r\n\26\n" .. ("x"):rep(100), body)
    local f = assert(io.open(DIR .. "/h.txt"))
    local head = f:read("*a")
    f:close()
    assert.truthy(head:find("Content-Type: image/png\r\n", 1, true))
    assert.truthy(head:find('Content-Disposition: attachment; filename="a.png"\r\n', 1, true))
    assert.truthy(head:find("Accept-Ranges: bytes\r\n", 1, true))
    body, status = curl("-H 'Range: bytes=1-3' " .. shell_quote(url))
    assert.same({ 206, "PNG" }, { status, body })
    body, status = curl("-H 'Range: bytes=-2' " .. shell_quote(url))
    assert.same({ 206, "xx" }, { status, body })
    body, status = curl("-H 'Range: bytes=108-' " .. shell_quote(url))
    assert.same({ 416, '{"errcode":40058,"errmsg":"invalid Range"}' }, { status, body })
  end)

  it("refuses what WeCom refuses, with its codes", function()
    local q = "access_token=" .. token .. "&type="
    local function code(query, f)
      local res = upload(query, f)
      return ("%d %s"):format(res.errcode, res.errmsg)
    end
    assert.same({
      "40014 invalid access_token",
      "40004 invalid media type",
      "40004 invalid media type",
      "40006 invalid file size",            -- no filelength (curl -F as it is)
      "40006 invalid file size",            -- a filelength that is not the size
      "41005 media data missing",           -- the part is not named media
      "41005 media data missing",           -- two parts
      "40006 invalid file size",            -- 5 bytes
      "40009 invalid image size",
      "40011 invalid video size",
      "40006 invalid file size",            -- voice over 2 MB
      "40005 invalid file type",            -- an image that is neither PNG nor JPG
      "40005 invalid file type",            -- voice that is not AMR
    }, {
      code("access_token=nope&type=file", { form(bin, 100) }),
      code("access_token=" .. token, { form(bin, 100) }),
      code(q .. "picture", { form(bin, 100) }),
      code(q .. "file", { "media=@" .. bin }),
      code(q .. "file", { form(bin, 99) }),
      code(q .. "file", { form(bin, 100, "file") }),
      code(q .. "file", { form(bin, 100), form(bin, 100) }),
      code(q .. "file", { form(write("five", "12345"), 5) }),
      code(q .. "image", { form(DIR .. "/ten.bin", 10 * 1024 * 1024 + 1) }),
      code(q .. "video", { form(DIR .. "/ten.bin", 10 * 1024 * 1024 + 1) }),
      code(q .. "voice", { form(DIR .. "/two.bin", 2 * 1024 * 1024 + 1) }),
      code(q .. "image", { form(bin, 100) }),
      code(q .. "voice", { form(bin, 100) }),
    })
    assert.equal(13, standin.counts()["/cgi-bin/media/upload"])
  end)

  it("refuses voice over 60 s: more than 3000 AMR frames of 20 ms, each sized by its header's FT (40006, stand-in)",
    function()
    local q = "access_token=" .. token .. "&type=voice"
    local function voice(name, frames)
      local data = "#!AMR\n" .. frames
      local res = upload(q, { form(write(name, data), #data, "media", name) })
      return ("%d %s"):format(res.errcode, res.errmsg)
    end
    local MR102 = "\52" .. ("v"):rep(26)  -- FT 6: 27 bytes; 3000 of them straddle the stand-in's 64 KiB pieces
    local NO_DATA = "\124"                -- FT 15: the header byte alone
    assert.same({ "0 ", "40006 invalid voice length", "0 ", "40006 invalid voice length",
      "40006 invalid voice length" }, {
      voice("60s.amr", MR102:rep(3000)),
      voice("60s20ms.amr", MR102:rep(3001)),
      voice("silent60s.amr", NO_DATA:rep(3000)),
      voice("silent60s20ms.amr", NO_DATA:rep(3001)),
      voice("mixed.amr", MR102:rep(1500) .. NO_DATA:rep(1501)),
    })
  end)

  it("forgets a media_id 3 days after its upload (40007 on media/get, in send_msg, as an avatar)", function()
    local res = upload("type=image&access_token=" .. token, { form(png, 108, "media", "a.png") })
    local id, created_at = res.media_id, tonumber(res.created_at)
    local url = standin.url() .. "/cgi-bin/media/get?access_token=" .. token .. "&media_id=" .. id
    local function uses()
      local body = curl(shell_quote(url))
      local _, send = standin.request("POST", "/cgi-bin/kf/send_msg?access_token=" .. token, cjson.encode{
        touser = "wmUSER", open_kfid = "wkKF01", msgtype = "image", image = { media_id = id } })
      local _, add = standin.request("POST", "/cgi-bin/kf/account/add?access_token=" .. token, cjson.encode{
        name = "客服", media_id = id })
      return { body == '{"errcode":40007,"errmsg":"invalid media_id"}' and "40007" or "served",
        cjson.decode(send).errcode, cjson.decode(add).errcode }
    end
    standin.sync{ messages = { { open_kfid = "wkKF01", external_userid = "wmUSER", msgtype = "text",
      text = { content = "hi" } } } }
    standin.config{ media_strict = true, media_now = created_at + 3 * 86400 - 1 }
    assert.same({ "served", 0, 0 }, uses())
    standin.config{ media_now = created_at + 3 * 86400 }
    assert.same({ "40007", 40007, 40007 }, uses())
    assert.equal(created_at, standin.media(id).created_at)
  end)

  it("answers an unknown media_id with 40007 as JSON", function()
    local body, status = curl(shell_quote(standin.url() .. "/cgi-bin/media/get?access_token=" .. token
      .. "&media_id=nope"))
    assert.same({ 200, '{"errcode":40007,"errmsg":"invalid media_id"}' }, { status, body })
  end)
end)
