-- One of two processes of spec/window_spec.lua: waits until the given second, then sends N texts to a customer
-- through a client whose window tracker lives in Redis, printing one word per send ("ok" or kind:reason).
-- usage: lua window_worker.lua STANDIN_URL REDIS_PORT PREFIX OPEN_KFID USER N GO_TIME
package.path = "lua/?.lua;spec/?.lua;" .. package.path
package.cpath = (rawget(_G, "jit") and "build/jit/?.so;" or "build/5.4/?.so;") .. package.cpath
local kf = require "wechat.work.kf.message"
local redis_store = require "wechat.work.store.redis"
local socket = require "socket"
local work = require "wechat.work"

local url, port, prefix, kfid, user, n, go = arg[1], tonumber(arg[2]), arg[3], arg[4], arg[5], tonumber(arg[6]),
  tonumber(arg[7])
local client = work.client{ corp_id = "wwCORP", agents = { kf = { secret = "KF_SECRET" } }, base_url = url,
  window = redis_store.new{ port = port, prefix = prefix } }
assert(client:token("kf"))
while socket.gettime() < go do
  socket.sleep(0.005)
end
for i = 1, n do
  local res, err = kf.send_text(client, "kf", user, kfid, "from " .. tostring(socket.gettime()) .. " " .. i)
  io.write(res and "ok" or (err.kind .. ":" .. tostring(err.reason or err.errcode)), "\n")
end
