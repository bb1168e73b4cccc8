--- The library's own Lua work per send_text, without a server: a client whose curl transport (its Lua side, the
-- request check included) drives a handle that answers at once. Prints the best of R batches in µs a send; under
-- `valgrind --tool=callgrind` the difference between `--calls N` and `--calls 1` counts instructions repeatably
-- on a shared machine.
--
--   lua5.4 bench/lua_cost.lua [--calls N] [--rounds R]        (luajit likewise)
local root = (arg and arg[0] or ""):match("^(.*)/bench/[^/]*$") or "."
local variant = rawget(_G, "jit") and "jit" or "5.4"
package.path = root .. "/lua/?.lua;" .. package.path
package.cpath = root .. "/build/" .. variant .. "/?.so;" .. package.cpath

local work = require "wechat.work"
local curl = require "wechat.work.transport.curl"
local message = require "wechat.work.kf.message"

local calls, rounds = 200000, 5
for i = 1, #arg, 2 do
  local value = tonumber(arg[i + 1])
  if arg[i] == "--calls" and value then
    calls = value
  elseif arg[i] == "--rounds" and value then
    rounds = value
  else
    io.stderr:write("usage: lua_cost.lua [--calls N] [--rounds R]\n")
    os.exit(2)
  end
end

local TOKEN_ANSWER = '{"errcode":0,"errmsg":"ok","access_token":"TOKEN","expires_in":7200}'
local SEND_ANSWER = '{"errcode":0,"errmsg":"ok","msgid":"MSGID"}'
local find = string.find
local instant = {
  request = function(_, _, url)
    return 200, find(url, "/gettoken", 1, true) and TOKEN_ANSWER or SEND_ANSWER
  end,
}
local real = curl.new{}
local transport = setmetatable({ handle = instant, closed = false, picked = {} }, getmetatable(real))
real:close()
local client = work.client{ corp_id = "wwBENCH", agents = { kf = { secret = "SECRET" } }, transport = transport,
  base_url = "http://127.0.0.1:18580" }

assert(message.send_text(client, "kf", "wmBENCH", "wkBENCH", "bench"))
local best = math.huge
for _ = 1, rounds do
  local t0 = os.clock()
  for _ = 1, calls do
    message.send_text(client, "kf", "wmBENCH", "wkBENCH", "bench")
  end
  best = math.min(best, (os.clock() - t0) / calls * 1e6)
end
io.write(string.format("%.3f us/send (best of %d rounds of %d)\n", best, rounds, calls))
