-- Uploads one file N times with wechat.work.material.upload (curl transport) and prints the seconds it took,
-- for bench/media_upload.sh. Usage: lua5.4 bench/media_upload.lua BASE_URL PATH N
local work = require "wechat.work"
local material = require "wechat.work.material"
local socket = require "socket"

local base_url, path, n = arg[1], arg[2], tonumber(arg[3])
local client = work.client{ corp_id = "wwCORP", agents = { kf = { secret = "KF_SECRET" } }, base_url = base_url,
  timeout = 30 }
assert(client:token("kf")) -- the token is fetched before the clock starts
local started = socket.gettime()
for _ = 1, n do
  assert(material.upload(client, "kf", "file", path))
end
print(string.format("%.6f", socket.gettime() - started))
client:close()
