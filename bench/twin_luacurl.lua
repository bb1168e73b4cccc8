--- The hand-written twin of send_text under libcurl: what a user writes without this library. LuaJIT, Debian's
-- lua-curl (one easy handle, reused, so the connection stays alive) and lua-cjson: the body made as a Lua table
-- and encoded with cjson.encode, the answer gathered by a write function and decoded with cjson.decode, errcode
-- checked. The same message, URL and headers as bench/send_text.lua, and like the library's sends each carries its
-- own msgid (the stand-in, like WeCom, refuses a repeated one and does the same work for both): a per-run prefix and
-- a counter, the cheapest unique msgid a user would write.
--
--   luajit bench/twin_luacurl.lua --url URL --token TOKEN [--seconds D] [--cafile PEM]
-- Prints one line: `calls seconds calls_per_s`.
local curl = require "curl"
local cjson = require "cjson"

local concat = table.concat
local encode, decode = cjson.encode, cjson.decode

local opts = { seconds = 3 }
local i = 1
while arg[i] do
  local name, value = arg[i], arg[i + 1]
  if name == "--url" then
    opts.url = value
  elseif name == "--token" then
    opts.token = value
  elseif name == "--seconds" then
    opts.seconds = tonumber(value)
  elseif name == "--cafile" then
    opts.cafile = value
  else
    io.stderr:write("twin_luacurl.lua: unknown argument ", tostring(name), "\n")
    os.exit(2)
  end
  i = i + 2
end
assert(opts.url and opts.token and opts.seconds, "usage: twin_luacurl.lua --url URL --token TOKEN [--seconds D]")

local socket = require "socket"
local now = socket.gettime

local easy = curl.easy_init()
easy:setopt(curl.OPT_URL, opts.url .. "/cgi-bin/kf/send_msg?access_token=" .. opts.token)
easy:setopt(curl.OPT_HTTPHEADER, { "Content-Type: application/json; charset=utf-8", "Expect:" })
easy:setopt(curl.OPT_USERAGENT, "lua-wechat-work/0.1.0")
easy:setopt(curl.OPT_NOSIGNAL, 1)
easy:setopt(curl.OPT_TIMEOUT, 10)
if opts.cafile then
  easy:setopt(curl.OPT_CAINFO, opts.cafile)
end
local parts, n = {}, 0
easy:setopt(curl.OPT_WRITEFUNCTION, function(data)
  n = n + 1
  parts[n] = data
  return #data
end)

local msgid_prefix, msgid_seq = string.format("t%d-%d-", os.time() % 1e8, math.floor(now() * 1e6) % 1e6), 0

local function send_text(to, open_kfid, content)
  msgid_seq = msgid_seq + 1
  easy:setopt(curl.OPT_POSTFIELDS, encode{ touser = to, open_kfid = open_kfid, msgid = msgid_prefix .. msgid_seq,
    msgtype = "text", text = { content = content } })
  n = 0
  local code, message = easy:perform()
  if code ~= 0 then
    return nil, message
  end
  local answer = decode(concat(parts, "", 1, n))
  if answer.errcode ~= 0 then
    return nil, answer.errmsg
  end
  return answer
end

for _ = 1, 2000 do
  assert(send_text("wmBENCH", "wkBENCH", "bench"))
end
local calls, t0 = 0, now()
local stop_at = t0 + opts.seconds
repeat
  for _ = 1, 256 do
    assert(send_text("wmBENCH", "wkBENCH", "bench"))
  end
  calls = calls + 256
until now() >= stop_at
local elapsed = now() - t0
io.write(string.format("%d\t%.3f\t%.1f\n", calls, elapsed, calls / elapsed))
