--- Drives an app location (bench/openresty/nginx.conf's /send: one kf.send_text per request) over one
-- keep-alive connection, exactly --count times, and reads the nginx worker's RSS (/proc/PID/status VmRSS) at the
-- start (after --warmup requests), middle and end. bench/soak.sh runs it under LuaJIT; luasocket.
--
--   luajit bench/soak/drive.lua --url http://127.0.0.1:18582/send --pid WORKER_PID --count N [--warmup W] [--tsv]
--
-- Prints `count seconds req_per_s rss_start rss_middle rss_end drift_pct connects` with --tsv (RSS in kB, drift =
-- the largest difference of middle or end from start, in % of start; connects: 1, one more each time nginx ended
-- the connection after keepalive_requests); exits 1 on any answer other than 200, on a broken connection, or
-- when the worker is gone at a sample (a crashed and respawned worker would hide a leak).
local socket = require "socket"

local format = string.format
local abs, floor, max = math.abs, math.floor, math.max
local tonumber, tostring = tonumber, tostring

local function usage(msg)
  io.stderr:write("drive.lua: ", msg, "\n",
    "usage: drive.lua --url http://127.0.0.1:PORT/PATH --pid PID --count N [--warmup W] [--tsv]\n")
  os.exit(2)
end

local opts = { warmup = 2000, tsv = false }
do
  local i = 1
  while arg[i] do
    local a = arg[i]
    if a == "--url" then
      opts.url = arg[i + 1]
    elseif a == "--pid" or a == "--count" or a == "--warmup" then
      local v = tonumber(arg[i + 1])
      if not v or v < 0 or v ~= floor(v) then
        usage("bad argument to " .. a .. ": a whole number expected")
      end
      opts[a:sub(3)] = v
    elseif a == "--tsv" then
      opts.tsv = true
      i = i - 1
    else
      usage("unknown argument '" .. tostring(a) .. "'")
    end
    i = i + 2
  end
end
local host, port, path = (opts.url or ""):match("^http://([%d%.]+):(%d+)(/.*)$")
if not host then
  usage("--url http://IP:PORT/PATH expected")
end
if not opts.pid or not opts.count or opts.count < 2 then
  usage("--pid and --count (>= 2) are required")
end

local function fail(msg)
  io.stderr:write("drive.lua: ", msg, "\n")
  os.exit(1)
end

local function rss_kb(pid)
  local f = io.open("/proc/" .. pid .. "/status")
  if not f then
    fail("no process " .. pid .. " (did the nginx worker die?)")
  end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)")) or 0
end

local sock
local connects = 0
local function connect()
  if sock then
    sock:close()
  end
  sock = assert(socket.tcp())
  sock:settimeout(30)
  local ok, err = sock:connect(host, tonumber(port))
  if not ok then
    fail("connect " .. host .. ":" .. port .. ": " .. tostring(err))
  end
  sock:setoption("tcp-nodelay", true)
  connects = connects + 1
end
connect()

local REQUEST = "GET " .. path .. " HTTP/1.1\r\nHost: " .. host .. "\r\nUser-Agent: wechat-soak\r\n\r\n"

-- One request and its answer: returns the status and the body; HTTP/1.1 with Content-Length or chunked.
local function exchange()
  local sent, serr = sock:send(REQUEST)
  if not sent then
    fail("send: " .. tostring(serr))
  end
  local line, rerr = sock:receive("*l")
  if not line then
    fail("receive: " .. tostring(rerr))
  end
  local status = tonumber(line:match("^HTTP/1%.1 (%d%d%d)"))
  if not status then
    fail("not an HTTP/1.1 status line: " .. line)
  end
  local length, chunked, close
  while true do
    line, rerr = sock:receive("*l")
    if not line then
      fail("receive: " .. tostring(rerr))
    end
    if line == "" then
      break
    end
    local name, value = line:match("^([^:]+):%s*(.-)%s*$")
    if name then
      name = name:lower()
      if name == "content-length" then
        length = tonumber(value)
      elseif name == "transfer-encoding" and value:lower() == "chunked" then
        chunked = true
      elseif name == "connection" and value:lower() == "close" then
        close = true
      end
    end
  end
  local body
  if chunked then
    local parts = {}
    while true do
      line, rerr = sock:receive("*l")
      local size = line and tonumber(line:match("^(%x+)"), 16)
      if not size then
        fail("bad chunk: " .. tostring(line or rerr))
      end
      if size == 0 then
        sock:receive("*l")
        break
      end
      parts[#parts + 1] = sock:receive(size)
      sock:receive("*l")
    end
    body = table.concat(parts)
  elseif length then
    body = length > 0 and sock:receive(length) or ""
  else
    fail("an answer without Content-Length or chunked body")
  end
  if close then
    -- nginx's keepalive_requests (1,000,000 in the app config) ends a connection now and then
    connect()
  end
  return status, body
end

local function run(n)
  for _ = 1, n do
    local status, body = exchange()
    if status ~= 200 then
      fail(format("answer %d: %s", status, tostring(body)))
    end
  end
end

run(opts.warmup)
local pid = opts.pid
local rss_start = rss_kb(pid)
local half = floor(opts.count / 2)
local t0 = socket.gettime()
run(half)
local rss_middle = rss_kb(pid)
run(opts.count - half)
local elapsed = socket.gettime() - t0
local rss_end = rss_kb(pid)
sock:close()

local drift = max(abs(rss_middle - rss_start), abs(rss_end - rss_start)) * 100 / rss_start
if opts.tsv then
  io.write(format("%d\t%.3f\t%.1f\t%d\t%d\t%d\t%.2f\t%d\n", opts.count, elapsed, opts.count / elapsed,
    rss_start, rss_middle, rss_end, drift, connects))
else
  io.write(format("%d requests in %.2f s (%.1f/s), %d connects; worker %d RSS kB: start %d, middle %d, end %d;"
    .. " drift %.2f%%\n", opts.count, elapsed, opts.count / elapsed, connects, pid, rss_start, rss_middle, rss_end,
    drift))
end
