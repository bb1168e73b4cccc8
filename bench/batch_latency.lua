--- kf.batch against a slow WeCom: the stand-in answers each send after a delay (bench/lanes scripts it, 20 ms);
-- N sends one by one, then the same N through kf.batch (curl multi), then B more batches for the RSS.
--
--   lua5.4 bench/batch_latency.lua --url URL [--n 200] [--concurrency 20] [--batches 100]
-- RSS is read after 10 warm-up batches (start), after half the batches (middle) and after all (end); drift is the
-- largest difference of middle or end from start, in % of start.
-- Prints one line: `serial_s batch_s rss_start_kB rss_middle_kB rss_end_kB drift_pct`.
local root = (arg and arg[0] or ""):match("^(.*)/bench/[^/]*$") or "."
local variant = rawget(_G, "jit") and "jit" or "5.4"
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/" .. variant .. "/?.so;" .. package.cpath

local socket = require "socket"
local work = require "wechat.work"
local kf = require "wechat.work.kf"

local opts = { n = 200, concurrency = 20, batches = 100 }
local i = 1
while arg[i] do
  local name, value = arg[i]:match("^%-%-(.+)$"), arg[i + 1]
  if name == "url" then
    opts.url = value
  elseif opts[name] then
    opts[name] = assert(math.tointeger(tonumber(value)), "--" .. name .. ": integer expected")
  else
    io.stderr:write("batch_latency.lua: unknown argument ", arg[i], "\n")
    os.exit(2)
  end
  i = i + 2
end
assert(opts.url, "usage: batch_latency.lua --url URL [--n N] [--concurrency C] [--batches B]")

local function rss_kb()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

local client = work.client{ corp_id = "wwCORP", agents = { kf = { secret = "KF_SECRET" } }, base_url = opts.url }
local run = 0
local function calls()
  run = run + 1
  local out = {}
  for k = 1, opts.n do
    out[k] = { "send_text", "wmBENCH", "wkBENCH", "bench", { msgid = ("L%d_%d_%d"):format(os.time(), run, k) } }
  end
  return out
end

local function check(results)
  for k = 1, opts.n do
    if not results[k].res then
      io.stderr:write("batch_latency.lua: send ", k, " failed: ", tostring(results[k].err), "\n")
      os.exit(1)
    end
  end
end

assert(client:token("kf"))
local serial = calls()
local t0 = socket.gettime()
for k = 1, opts.n do
  local call = serial[k]
  assert(kf.message.send_text(client, "kf", call[2], call[3], call[4], call[5]))
end
local serial_s = socket.gettime() - t0

local batch = calls()
t0 = socket.gettime()
check(kf.batch(client, "kf", batch, { concurrency = opts.concurrency }))
local batch_s = socket.gettime() - t0

local function batches(count)
  for _ = 1, count do
    check(kf.batch(client, "kf", calls(), { concurrency = opts.concurrency }))
  end
  return rss_kb()
end
local rss_start = batches(10)
local rss_middle = batches(opts.batches // 2)
local rss_end = batches(opts.batches - opts.batches // 2)
local drift = math.max(math.abs(rss_middle - rss_start), math.abs(rss_end - rss_start)) * 100 / rss_start
io.write(("%.3f\t%.3f\t%d\t%d\t%d\t%.2f\n"):format(serial_s, batch_s, rss_start, rss_middle, rss_end, drift))
