-- examples/openresty: its nginx.conf as shipped (only the checkout path, the port, the worker count, the log paths
-- and the trusted CA swapped for the stand-in's) runs kf_reply.lua against the WeCom stand-in over HTTPS.
local cjson = require "cjson"
local nginx = require "helpers.nginx"
local standin = require "helpers.standin"
local socket = require "socket"

local PORT = 18367
local SEND_MSG = "/cgi-bin/kf/send_msg"

local app

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

-- Replaces every `from` (which must be there) by `to`.
local function swap(text, from, to)
  local i, j = text:find(from, 1, true)
  assert(i, "examples/openresty/nginx.conf has no " .. from)
  local out = text:sub(1, i - 1) .. to .. text:sub(j + 1)
  if out:find(from, 1, true) then
    return swap(out, from, to)
  end
  return out
end

-- The example's nginx.conf, pointed at this checkout and the stand-in.
local function start_app()
  local conf = read_file(nginx.ROOT .. "/examples/openresty/nginx.conf")
  conf = swap(conf, "/path/to/lua-wechat-work", nginx.ROOT)
  conf = swap(conf, "listen 127.0.0.1:8080;", "listen 127.0.0.1:" .. PORT .. ";")
  conf = swap(conf, "worker_processes auto;", "worker_processes 2;")
  conf = swap(conf, "logs/", "")
  conf = swap(conf, "/etc/ssl/certs/ca-certificates.crt", standin.cafile())
  return nginx.start{ name = "example", port = PORT, workers = 2, conf = conf, env = {
    WECOM_CORP_ID = standin.CORPID,
    WECOM_KF_SECRET = standin.KF_SECRET,
    WECOM_BASE_URL = standin.https_url(),
  } }
end

local function post(path, tbl)
  local status, body = app:request("POST", path, cjson.encode(tbl))
  return { status, cjson.decode(body) }
end

local function eventually(fn)
  for _ = 1, 200 do
    if fn() then
      return true
    end
    socket.sleep(0.05)
  end
  return false
end

describe("examples/openresty #openresty", function()
  setup(function()
    standin.start()
    standin.reset()
    standin.wrote("wkK", "wmC") -- the customer the handlers reply to wrote, as WeCom requires (95031 otherwise)
    app = start_app()
  end)
  teardown(function()
    if app then app:stop() end
  end)

  -- One nginx for all: its token stays valid because the stand-in is reset once only; counts are compared
  -- before and after.
  local before
  before_each(function()
    before = standin.counts()
  end)
  local function sent_since()
    local now = standin.counts()
    return (now[SEND_MSG] or 0) - (before[SEND_MSG] or 0)
  end
  local function last_body()
    local bodies = standin.bodies(SEND_MSG)
    return bodies[#bodies]
  end

  it("sends the text from /kf/reply and answers its msgid", function()
    assert.same({ 200, { msgid = "r1" } }, post("/kf/reply", { to = "wmC", open_kfid = "wkK", text = "你好 👋",
      msgid = "r1" }))
    assert.are.equal(1, sent_since())
    assert.same({ touser = "wmC", open_kfid = "wkK", msgid = "r1", msgtype = "text", text = { content = "你好 👋" } },
      last_body())
    assert.are.equal(1, standin.counts()["/cgi-bin/gettoken"])
  end)

  it("answers 400 naming a wrong argument, and sends nothing", function()
    assert.same({ 400, { error = "bad argument #5 to 'send_text' (string expected, got nil)" } },
      post("/kf/reply", { to = "wmC", open_kfid = "wkK" }))
    assert.same({ 400, { error = "bad argument #6 to 'send_text' (opts.msgid: only [0-9a-zA-Z_-] allowed)" } },
      post("/kf/reply", { to = "wmC", open_kfid = "wkK", text = "hi", msgid = "no spaces" }))
    assert.same({ 400, { error = "a JSON object expected" } }, post("/kf/reply", "just a string"))
    assert.are.equal(0, sent_since())
  end)

  it("answers 502 with WeCom's error", function()
    standin.script(SEND_MSG, { errcode = 95011, errmsg = "kf account used inside wecom" })
    -- the code's English name in the text (err.errmsg keeps WeCom's words)
    assert.same({ 502, { error = "wechat: api error 95011 (KF is used inside WeCom: token of the wrong secret) in "
      .. "send_text", errcode = 95011 } }, post("/kf/reply", { to = "wmC", open_kfid = "wkK", text = "hi" }))
    assert.are.equal(1, sent_since())
  end)

  it("answers /kf/reply_later at once and sends from a timer", function()
    assert.same({ 202, { queued = true } }, post("/kf/reply_later", { to = "wmC", open_kfid = "wkK", text = "稍后",
      msgid = "later1" }))
    assert.is_true(eventually(function() return sent_since() == 1 end))
    assert.same({ touser = "wmC", open_kfid = "wkK", msgid = "later1", msgtype = "text", text = { content = "稍后" } },
      last_body())
  end)

  it("fetched one token for all of it, and logged neither secret nor token", function()
    assert.are.equal(1, standin.counts()["/cgi-bin/gettoken"])
    local log = app:error_log()
    assert.is_nil(log:find("KF_SECRET", 1, true))
    assert.is_nil(log:find("access_token", 1, true))
  end)
end)
