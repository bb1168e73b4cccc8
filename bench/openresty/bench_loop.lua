-- Handlers of the bench app (bench/openresty/nginx.conf) for bench/lanes: sends timed inside one request.
--   /loop?lane=ours|bare&n=N      N sends in a loop; prints "N seconds"
--   /pair?n=N&blocks=B            N sends of each lane in B blocks taking turns; prints "ours/s bare/s"
--   /latency?mode=serial|batch&n=N&c=C   N sends one by one or through kf.batch (concurrency C); prints seconds
-- "bare" is the hand-written twin of kf.send_text inside nginx: what a user writes with ngx.socket.tcp,
-- setkeepalive and cjson and nothing else: the body a Lua table encoded by cjson, the request made by
-- concatenation, the head read up to the empty line, Content-Length found with a pattern, the body read and decoded,
-- errcode checked. Like the library's sends, each carries its own msgid (the stand-in, like WeCom, refuses a
-- repeated one and does the same work for both lanes): a per-worker prefix and a counter, the cheapest unique
-- msgid a user would write. It checks nothing else (no chunked answers, no status, no size limit, no retries).
-- luacheck: globals ngx, read globals BENCH_CLIENT
local cjson = require "cjson.safe"
local kf = require "wechat.work.kf"

local ngx = ngx
local tonumber, tostring = tonumber, tostring
local concat = table.concat
local match = string.match

local M = {}

local TO, KFID, CONTENT = "wmBENCH", "wkBENCH", "bench"

local host, port, authority
local token

local msgid_prefix, msgid_seq = nil, 0

local function bare_send(to, open_kfid, content)
  msgid_seq = msgid_seq + 1
  local sock = ngx.socket.tcp()
  sock:settimeouts(10000, 10000, 10000)
  local ok, err = sock:connect(host, port)
  if not ok then
    return nil, err
  end
  local body = cjson.encode{ touser = to, open_kfid = open_kfid, msgid = msgid_prefix .. msgid_seq, msgtype = "text",
    text = { content = content } }
  ok, err = sock:send(concat{ "POST /cgi-bin/kf/send_msg?access_token=", token, " HTTP/1.1\r\nHost: ", authority,
    "\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ", #body, "\r\n\r\n", body })
  if not ok then
    sock:close()
    return nil, err
  end
  local head
  head, err = sock:receiveuntil("\r\n\r\n")()
  if not head then
    sock:close()
    return nil, err
  end
  local length = tonumber(match(head, "[Cc]ontent%-[Ll]ength:%s*(%d+)"))
  local answer
  answer, err = sock:receive(length)
  if not answer then
    sock:close()
    return nil, err
  end
  sock:setkeepalive(60000, 32)
  local data = cjson.decode(answer)
  if not data or data.errcode ~= 0 then
    return nil, data and data.errmsg or "not JSON"
  end
  return data
end

local function ours_send(to, open_kfid, content)
  return kf.message.send_text(BENCH_CLIENT, "kf", to, open_kfid, content)
end

local function setup()
  if not token then
    local client = BENCH_CLIENT
    token = assert(client:token("kf"))
    authority = match(client.base_url, "^https?://([^/]+)")
    host, port = match(authority, "^([^:]+):(%d+)$")
    port = tonumber(port)
    msgid_prefix = string.format("b%d-%d-", ngx.worker.pid(), math.floor(ngx.now() * 1000) % 1e8)
  end
end

function M.loop()
  setup()
  local n = tonumber(ngx.var.arg_n) or 10000
  local send = ngx.var.arg_lane == "bare" and bare_send or ours_send
  for _ = 1, 500 do -- warm-up: pool filled, JIT traces made
    assert(send(TO, KFID, CONTENT))
  end
  ngx.update_time()
  local t0 = ngx.now()
  for _ = 1, n do
    local res, err = send(TO, KFID, CONTENT)
    if not res then
      ngx.status = 500
      return ngx.print(tostring(err))
    end
  end
  ngx.update_time()
  ngx.print(n, " ", ngx.now() - t0)
end

-- /pair?n=N&blocks=B: both lanes in one request, in B blocks each, taking turns (ours first in odd blocks, bare
-- first in even ones), so that both meet the same machine: a slow second of the host's falls on both. Prints
-- "ours_per_s bare_per_s" over N sends each.
function M.pair()
  setup()
  local n = tonumber(ngx.var.arg_n) or 10000
  local blocks = tonumber(ngx.var.arg_blocks) or 20
  local per = math.max(1, math.floor(n / blocks))
  for _ = 1, 500 do
    assert(ours_send(TO, KFID, CONTENT))
    assert(bare_send(TO, KFID, CONTENT))
  end
  local spent = { ours = 0, bare = 0 }
  local sends = { ours = ours_send, bare = bare_send }
  for b = 1, blocks do
    for i = 1, 2 do
      local lane = (b + i) % 2 == 0 and "ours" or "bare"
      local send = sends[lane]
      ngx.update_time()
      local t0 = ngx.now()
      for _ = 1, per do
        local res, err = send(TO, KFID, CONTENT)
        if not res then
          ngx.status = 500
          return ngx.print(lane, ": ", tostring(err))
        end
      end
      ngx.update_time()
      spent[lane] = spent[lane] + (ngx.now() - t0)
    end
  end
  ngx.print(string.format("%.1f %.1f", per * blocks / spent.ours, per * blocks / spent.bare))
end

function M.latency()
  setup()
  local n, c = tonumber(ngx.var.arg_n) or 200, tonumber(ngx.var.arg_c) or 20
  local calls = {}
  for i = 1, n do
    calls[i] = { "send_text", TO, KFID, CONTENT, { msgid = "lat" .. ngx.now() * 1000 .. "x" .. i } }
  end
  ngx.update_time()
  local t0 = ngx.now()
  if ngx.var.arg_mode == "batch" then
    local results = kf.batch(BENCH_CLIENT, "kf", calls, { concurrency = c })
    for i = 1, n do
      if not results[i].res then
        ngx.status = 500
        return ngx.print(tostring(results[i].err))
      end
    end
  else
    for i = 1, n do
      local res, err = kf.message.send_text(BENCH_CLIENT, "kf", TO, KFID, CONTENT, calls[i][5])
      if not res then
        ngx.status = 500
        return ngx.print(tostring(err))
      end
    end
  end
  ngx.update_time()
  ngx.print(ngx.now() - t0)
end

return M
