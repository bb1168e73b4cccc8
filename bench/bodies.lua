--- JSON bodies built per second: the `wechat.core` builders against the same bodies made as a Lua table and
-- encoded with `cjson.encode` (what a pure-Lua client does), and, for reference, the same table through the
-- library's generic encoder `core.encode`. Same inputs, same content; before timing, each pair is checked to
-- decode to equal JSON so the comparison is fair.
--
--   lua5.4 bench/bodies.lua [--n N] [--tsv] [--only BODY] [--desk] [--repeat N [--side core|cjson|encode]]
--   luajit bench/bodies.lua ...
--
-- Each body: after a warm-up of N/10 calls each, the builder, table + cjson and table + encode are timed in turns,
-- 40 batches of N/10 calls each, with os.clock (CPU time, so other processes on a shared machine disturb it less);
-- each keeps its best batch. --tsv prints `name bytes core_per_s cjson_per_s encode_per_s` lines for bench/run;
-- --only runs the bodies whose name contains BODY (e.g. under a profiler); --desk adds three bodies of the KF desk
-- (servicer add, service_state trans, customer batchget), which bench/run leaves out: its aim is for messages.
-- --repeat N times nothing: it makes each chosen body N times one way (--side, default core: the builder) and
-- prints nothing, so that bench/callgrind.sh can count instructions a body from two values of N.
local root = (arg and arg[0] or ""):match("^(.*)/bench/[^/]*$") or "."
local variant = rawget(_G, "jit") and "jit" or "5.4"
package.path = root .. "/lua/?.lua;" .. package.path
package.cpath = root .. "/build/" .. variant .. "/?.so;" .. package.cpath

local core = require "wechat.core"
local cjson = require "cjson"

local clock, format = os.clock, string.format
local pairs, tonumber, type = pairs, tonumber, type
local encode, decode, core_encode = cjson.encode, cjson.decode, core.encode

local N = 200000
local TSV = false
local ONLY
local DESK = false
local REPEAT
local SIDE = "core"
do
  local i = 1
  while arg and arg[i] do
    local a = arg[i]
    if a == "--n" then
      N = tonumber(arg[i + 1])
      if not N or N < 10 then
        error("bad argument to --n: a number >= 10 expected", 0)
      end
      N = math.floor(N)
      i = i + 2
    elseif a == "--tsv" then
      TSV = true
      i = i + 1
    elseif a == "--desk" then
      DESK = true
      i = i + 1
    elseif a == "--only" then
      ONLY = arg[i + 1]
      i = i + 2
    elseif a == "--repeat" then
      REPEAT = tonumber(arg[i + 1])
      if not REPEAT or REPEAT < 0 then
        error("bad argument to --repeat: a number >= 0 expected", 0)
      end
      i = i + 2
    elseif a == "--side" then
      SIDE = arg[i + 1]
      if SIDE ~= "core" and SIDE ~= "cjson" and SIDE ~= "encode" then
        error("bad argument to --side: core, cjson or encode expected", 0)
      end
      i = i + 2
    else
      error("unknown argument '" .. a .. "' (usage: bodies.lua [--n N] [--tsv] [--only BODY] [--desk]"
        .. " [--repeat N [--side core|cjson|encode]])", 0)
    end
  end
end

local TO = "wmAbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
local KFID = "wkAbCdEfGhIjKlMnOpQrStUvWx"
local MSGID = "bench_msg_0001"
local OPTS = { msgid = MSGID }
local TEXT = "您好，请问有什么可以帮您？Hello, how can we help? 😀"

local MENU = {
  head_content = "您对本次服务是否满意？",
  list = {
    { type = "click", click = { id = "101", content = "满意" } },
    { type = "click", click = { id = "102", content = "不满意" } },
    { type = "click", click = { id = "103", content = "一般" } },
    { type = "view", view = { url = "https://work.weixin.qq.com/kf/rate?id=1", content = "评价详情" } },
    { type = "view", view = { url = "https://example.com/help/faq", content = "常见问题" } },
    { type = "miniprogram", miniprogram = { appid = "wx123123123123123", pagepath = "pages/index?x=1",
      content = "打开小程序" } },
    { type = "miniprogram", miniprogram = { appid = "wx456456456456456", pagepath = "pages/order",
      content = "我的订单" } },
    { type = "text", text = { content = "或者直接回复文字", no_newline = 0 } },
    { type = "text", text = { content = "工作时间 9:00-18:00", no_newline = 1 } },
    { type = "click", click = { id = "199", content = "转人工" } },
  },
  tail_content = "欢迎再次光临",
}

local LINK = {
  title = "企业微信客服使用指南",
  desc = "一分钟了解如何通过微信客服与我们联系。",
  url = "https://work.weixin.qq.com/kf/help/guide?from=bench",
  thumb_media_id = "MEDIA_ID_2ab3c4d5e6f7a8b9c0d1e2f3a4b5c6d7",
}

local LOCATION = {
  name = "广州塔",
  address = "广东省广州市海珠区阅江西路222号",
  latitude = 23.106414,
  longitude = 113.324553,
}

local SYNC = {
  cursor = "4gw7MepFLfgF2VC5npN",
  token = "ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR",
  limit = 1000,
  voice_format = 0,
  open_kfid = KFID,
}

-- The KF desk (src/kf_family_bodies.c): lists of ids, the bodies with most items.
local USERIDS, CUSTOMERS = {}, {}
for i = 1, 20 do
  USERIDS[i] = "servicer_" .. i
end
for i = 1, 50 do
  CUSTOMERS[i] = TO .. i
end
local SERVICERS = { userid_list = USERIDS, department_id_list = { 2, 3, 1000001 } }
local CUSTOMER_OPTS = { need_enter_session_context = true }

-- Each case: a builder call and the Lua-table way to the same body. The msg tables are the caller's input on
-- both sides; the table path builds the body table around them on every call, as a Lua client would.
local CASES = {
  {
    name = "text",
    core = function()
      return core.send_text(nil, nil, TO, KFID, TEXT, OPTS)
    end,
    table = function()
      return { touser = TO, open_kfid = KFID, msgid = MSGID, msgtype = "text", text = { content = TEXT } }
    end,
  },
  {
    name = "menu (10 items)",
    core = function()
      return core.send_menu(nil, nil, TO, KFID, MENU, OPTS)
    end,
    table = function()
      return { touser = TO, open_kfid = KFID, msgid = MSGID, msgtype = "msgmenu", msgmenu = MENU }
    end,
  },
  {
    name = "link",
    core = function()
      return core.send_link(nil, nil, TO, KFID, LINK, OPTS)
    end,
    table = function()
      return { touser = TO, open_kfid = KFID, msgid = MSGID, msgtype = "link", link = LINK }
    end,
  },
  {
    name = "location",
    core = function()
      return core.send_location(nil, nil, TO, KFID, LOCATION, OPTS)
    end,
    table = function()
      return { touser = TO, open_kfid = KFID, msgid = MSGID, msgtype = "location", location = LOCATION }
    end,
  },
  {
    name = "servicer add (23 ids)",
    desk = true,
    core = function()
      return core.kf_servicer_add(nil, nil, KFID, SERVICERS)
    end,
    table = function()
      local s = SERVICERS
      return { open_kfid = KFID, userid_list = s.userid_list, department_id_list = s.department_id_list }
    end,
  },
  {
    name = "service_state trans",
    desk = true,
    core = function()
      return core.kf_service_state_trans(nil, nil, KFID, TO, 3, "servicer_1")
    end,
    table = function()
      return { open_kfid = KFID, external_userid = TO, service_state = 3, servicer_userid = "servicer_1" }
    end,
  },
  {
    name = "customer batchget (50 ids)",
    desk = true,
    core = function()
      return core.kf_customer_get_customer_info(nil, nil, CUSTOMERS, CUSTOMER_OPTS)
    end,
    table = function()
      local context = CUSTOMER_OPTS.need_enter_session_context and 1 or 0
      return { external_userid_list = CUSTOMERS, need_enter_session_context = context }
    end,
  },
  {
    name = "sync_msg",
    core = function()
      return core.sync_msg(nil, nil, SYNC)
    end,
    table = function()
      local o = SYNC
      return { cursor = o.cursor, token = o.token, limit = o.limit, voice_format = o.voice_format,
        open_kfid = o.open_kfid }
    end,
  },
}

local function same(a, b)
  if type(a) ~= type(b) then
    return false
  end
  if type(a) ~= "table" then
    return a == b
  end
  for k, v in pairs(a) do
    if not same(v, b[k]) then
      return false
    end
  end
  for k in pairs(b) do
    if a[k] == nil then
      return false
    end
  end
  return true
end

-- Runs f n times; returns the CPU seconds taken. The result is kept in a local so the call cannot be skipped.
local function run(f, n)
  local last
  local t0 = clock()
  for _ = 1, n do
    last = f()
  end
  local t = clock() - t0
  if type(last) ~= "string" then
    error("a body function returned " .. type(last))
  end
  return t
end

-- The three ways to one body are timed in turns, BATCHES times N/10 calls each after a warm-up of N/10, and each
-- keeps its best batch: a burst of other load on a shared machine then slows one batch of each side, not all the
-- calls of one side, and the ratio compares the two sides under the same conditions.
local BATCHES = 40

local function best_rates(fs)
  local batch = math.max(1, math.floor(N / 10))
  local best = {}
  for i, f in ipairs(fs) do
    run(f, batch)
    best[i] = math.huge
  end
  for _ = 1, BATCHES do
    for i, f in ipairs(fs) do
      local t = run(f, batch)
      if t < best[i] then
        best[i] = t
      end
    end
  end
  local rates = {}
  for i = 1, #fs do
    rates[i] = batch / math.max(best[i], 1e-6)
  end
  return rates
end

local results = {}
for _, case in ipairs(CASES) do
  if (ONLY and not case.name:find(ONLY, 1, true)) or (case.desk and not DESK) then
    goto continue
  end
  local built = case.core()
  local tbl = case.table
  local via_cjson = function()
    return encode(tbl())
  end
  local via_encode = function()
    return core_encode(tbl())
  end
  local a, b, c = decode(built), decode(via_cjson()), decode(via_encode())
  if not same(a, b) or not same(a, c) then
    io.stderr:write(format("bodies: %s: the bodies differ\n  core:   %s\n  cjson:  %s\n  encode: %s\n",
      case.name, built, via_cjson(), via_encode()))
    os.exit(1)
  end
  collectgarbage()
  if REPEAT then
    local f = ({ core = case.core, cjson = via_cjson, encode = via_encode })[SIDE]
    for _ = 1, REPEAT do
      f()
    end
  else
    local rates = best_rates{ case.core, via_cjson, via_encode }
    results[#results + 1] = { name = case.name, bytes = #built, core = rates[1], cjson = rates[2],
      encode = rates[3] }
  end
  ::continue::
end

if REPEAT then
  return
end
local lua_name = rawget(_G, "jit") and rawget(_G, "jit").version or _VERSION
if TSV then
  for _, r in ipairs(results) do
    io.write(format("%s\t%d\t%.0f\t%.0f\t%.0f\n", r.name, r.bytes, r.core, r.cjson, r.encode))
  end
else
  io.write(format("JSON bodies per second, %s, best of %d batches of %d calls, in turns (CPU time)\n", lua_name,
    BATCHES, math.max(1, math.floor(N / 10))))
  io.write(format("  %-16s %6s %12s %12s %8s %14s\n", "body", "bytes", "wechat.core", "table+cjson", "ratio",
    "table+encode"))
  for _, r in ipairs(results) do
    io.write(format("  %-16s %6d %12.0f %12.0f %7.2fx %14.0f\n", r.name, r.bytes, r.core, r.cjson,
      r.core / r.cjson, r.encode))
  end
end
