--- send_text calls per second through the client (`wechat.work.kf.message`, curl transport) against the
-- stand-in, over one keep-alive connection, with the process's RSS at the start, middle and end of the run.
--
--   lua5.4 bench/send_text.lua [--calls N | --seconds D] [--url URL] [--cafile PEM] [--max-drift P] [--tsv]
--     [--transport-only]
--   luajit bench/send_text.lua ...
--   lua5.4 bench/send_text.lua --print-body      the JSON body every call posts (for wrk, bench/wrk_post.lua)
--
-- --url defaults to $WECOM_STANDIN_URL (`tools/wecom-standin/standin env`); default --calls 100000.
-- --transport-only posts the same request straight to the curl transport (no client, no builder, no decoding),
-- to split the cost between the library and libcurl.
-- Before the clock runs, WARMUP calls fetch the token, open the connection and let the GC settle; "start" RSS
-- is read after them, "middle" after half the calls (or half the time), "end" after the last. Drift = the largest
-- difference of middle or end from start, in % of start; with --max-drift P it exits 1 when drift > P.
-- Exits 1 when a call fails or when the transport opened more connections than it had to (nginx's
-- keepalive_requests closes one after 1,000,000 requests, so a longer run may take one more).
-- --tsv prints one line: `calls seconds calls_per_s requests connects rss_start rss_middle rss_end drift_pct`
-- (RSS in kB).
local root = (arg and arg[0] or ""):match("^(.*)/bench/[^/]*$") or "."
local variant = rawget(_G, "jit") and "jit" or "5.4"
package.path = root .. "/lua/?.lua;" .. package.path
package.cpath = root .. "/build/" .. variant .. "/?.so;" .. package.cpath

local core = require "wechat.core"

local format = string.format
local abs, ceil, floor, max = math.abs, math.ceil, math.floor, math.max
local tonumber, tostring = tonumber, tostring

-- The message every call sends; bench/run posts the very same body with wrk.
local TO, KFID, CONTENT = "wmBENCH", "wkBENCH", "bench"
local WARMUP = 2000
local KEEPALIVE_REQUESTS = 1000000 -- the stand-in's nginx keepalive_requests

local function usage(msg)
  io.stderr:write("send_text.lua: ", msg, "\n",
    "usage: send_text.lua [--calls N | --seconds D] [--url URL] [--max-drift P] [--tsv] [--transport-only]"
    .. " | --print-body\n")
  os.exit(2)
end

local opts = { calls = nil, seconds = nil, url = os.getenv("WECOM_STANDIN_URL"), tsv = false }
do
  local i = 1
  local function number_arg(name)
    local v = tonumber(arg[i + 1])
    if not v or v <= 0 then
      usage("bad argument to " .. name .. ": a positive number expected")
    end
    i = i + 2
    return v
  end
  while arg and arg[i] do
    local a = arg[i]
    if a == "--calls" then
      opts.calls = floor(number_arg(a))
    elseif a == "--seconds" then
      opts.seconds = number_arg(a)
    elseif a == "--max-drift" then
      opts.max_drift = number_arg(a)
    elseif a == "--url" then
      opts.url = arg[i + 1]
      i = i + 2
    elseif a == "--cafile" then
      opts.cafile = arg[i + 1]
      i = i + 2
    elseif a == "--tsv" then
      opts.tsv = true
      i = i + 1
    elseif a == "--transport-only" then
      opts.transport_only = true
      i = i + 1
    elseif a == "--print-body" then
      io.write((core.send_text(nil, nil, TO, KFID, CONTENT)))
      os.exit(0)
    else
      usage("unknown argument '" .. tostring(a) .. "'")
    end
  end
  if opts.calls and opts.seconds then
    usage("--calls and --seconds exclude each other")
  end
  if not opts.calls and not opts.seconds then
    opts.calls = 100000
  end
  if not opts.url or opts.url == "" then
    usage("no stand-in URL: pass --url or set WECOM_STANDIN_URL (tools/wecom-standin/standin env)")
  end
end

-- Wall clock: luasocket's when it is there, else /proc/uptime (10 ms steps, fine for runs of seconds).
local now
do
  local ok, socket = pcall(require, "socket")
  if ok and type(socket) == "table" and socket.gettime then
    now = socket.gettime
  else
    now = function()
      local f = assert(io.open("/proc/uptime"))
      local s = f:read("*l")
      f:close()
      return tonumber(s:match("^(%S+)"))
    end
  end
end

local function rss_kb()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)")) or 0
end

local work = require "wechat.work"
local kf = require "wechat.work.kf.message"
local send_text = kf.send_text

local client = work.client{
  corp_id = "wwCORP",
  agents = { kf = { secret = "KF_SECRET" } },
  base_url = opts.url,
  transport = "curl",
  timeout = 10,
  cafile = opts.cafile,
}

local failures, made = 0, 0
local first_error
local function one()
  local res, err = send_text(client, "kf", TO, KFID, CONTENT)
  made = made + 1
  if not res then
    failures = failures + 1
    first_error = first_error or format("call %d (warm-up included): %s", made, tostring(err))
  end
end

if opts.transport_only then
  -- The same exchange without the client: one fixed request table straight to the transport, no body building,
  -- no token lookup, no decoding. send_text minus this is what the library adds on top of libcurl.
  local token = assert(client:token("kf"))
  local transport = client.transport
  local req = { method = "POST", url = opts.url .. "/cgi-bin/kf/send_msg?access_token=" .. token,
    body = core.send_text(nil, nil, TO, KFID, CONTENT) }
  local find = string.find
  one = function()
    local res, err = transport:request(req)
    made = made + 1
    if not res or res.status ~= 200 or not find(res.body, '{"errcode":0,', 1, true) then
      failures = failures + 1
      first_error = first_error or format("call %d (warm-up included): %s", made,
        res and tostring(res.status) .. " " .. res.body or tostring(err))
    end
  end
end

for _ = 1, WARMUP do
  one()
end
if failures > 0 then
  io.stderr:write("send_text.lua: warm-up failed: ", first_error, "\n")
  os.exit(1)
end

local rss_start, rss_middle = rss_kb(), nil
local calls = 0
local t0 = now()
if opts.calls then
  local half = floor(opts.calls / 2)
  for _ = 1, half do
    one()
  end
  rss_middle = rss_kb()
  for _ = half + 1, opts.calls do
    one()
  end
  calls = opts.calls
else
  local half_at, stop_at = t0 + opts.seconds / 2, t0 + opts.seconds
  repeat
    for _ = 1, 256 do
      one()
    end
    calls = calls + 256
    local t = now()
    if not rss_middle and t >= half_at then
      rss_middle = rss_kb()
    end
  until t >= stop_at
end
local elapsed = now() - t0
local rss_end = rss_kb()

local stats = client.transport:stats()
client:close()

local drift = max(abs(rss_middle - rss_start), abs(rss_end - rss_start)) * 100 / rss_start
local rate = calls / elapsed
local allowed_connects = ceil(stats.requests / KEEPALIVE_REQUESTS)

if opts.tsv then
  io.write(format("%d\t%.3f\t%.1f\t%d\t%d\t%d\t%d\t%d\t%.2f\n", calls, elapsed, rate, stats.requests,
    stats.connects, rss_start, rss_middle, rss_end, drift))
else
  io.write(format("%s, %s, curl transport, %s\n", opts.transport_only and "transport:request alone" or
    "send_text through the client", rawget(_G, "jit") and rawget(_G, "jit").version or _VERSION, opts.url))
  io.write(format("  calls %d in %.2f s: %.1f calls/s (after %d warm-up calls)\n", calls, elapsed, rate, WARMUP))
  io.write(format("  transport: %d requests, %d connects\n", stats.requests, stats.connects))
  io.write(format("  RSS kB: start %d, middle %d, end %d; drift %.2f%%\n", rss_start, rss_middle, rss_end, drift))
end

local status = 0
if failures > 0 then
  io.stderr:write(format("send_text.lua: %d calls failed; first: %s\n", failures, first_error))
  status = 1
end
if stats.connects > allowed_connects then
  io.stderr:write(format("send_text.lua: %d connects for %d requests: the connection was not kept alive\n",
    stats.connects, stats.requests))
  status = 1
end
if opts.max_drift and drift > opts.max_drift then
  io.stderr:write(format("send_text.lua: RSS drift %.2f%% is over %.2f%%\n", drift, opts.max_drift))
  status = 1
end
os.exit(status)
