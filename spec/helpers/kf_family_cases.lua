-- Every public function of wechat.work.kf.account, servicer, service_state, customer and statistic once, with
-- what the stand-in is given first (`setup`, control calls), the exact request it must receive (the raw body of a
-- POST, the query after the token of a GET) and the exact answer the caller must get back. Run under Lua 5.4 and
-- LuaJIT (spec/kf_family_spec.lua, curl) and inside nginx (spec/openresty/kf_family_spec.lua, cosockets).
--
--   for _, c in ipairs(cases.cases) do
--     c.setup(standin)
--     local avatar = c.avatar and assert(cases.upload_avatar(client)).media_id
--     local res, err = modules[c.module][c.op](client, cases.AGENT, cases.args(c, avatar))
--     -- the stand-in must have received cases.body(c, avatar)
--   end
local unpack = table.unpack or unpack -- luacheck: ignore 143
local select, type, gsub = select, type, string.gsub

local M = {}

M.AGENT = "kf"
M.TO = "wmCUSTOMER01"
M.KFID = "wkKF01"
M.SERVICER = "zhangsan"

local TO, KFID, SERVICER = M.TO, M.KFID, M.SERVICER

M.MODULES = { "account", "servicer", "service_state", "customer", "statistic" }

-- Statistics take day starts (00:00 China Standard Time) between yesterday and 180 days back. The stand-in is told
-- what "now" is (config statistic_now: noon of M.TODAY), so a window fixed here holds whenever the run goes, across
-- midnight in China too, and this module gives the same numbers in every process that loads it.
local DAY = 86400
M.TODAY = 1767196800 -- 2026-01-01 00:00 China Standard Time
M.NOW = M.TODAY + DAY / 2
local START, END = M.TODAY - 3 * DAY, M.TODAY - 2 * DAY

-- Stands for the media_id of an avatar uploaded just before the case (cases with `avatar = true`).
local AVATAR = "@AVATAR@"
M.AVATAR_PNG = "\137PNG\r\n\26\n\0\0\0\rIHDR" .. ("avatar "):rep(8)

local function ok(fields)
  local out = { errcode = 0, errmsg = "ok" }
  for k, v in pairs(fields or {}) do
    out[k] = v
  end
  return out
end

local function account(standin, servicers)
  standin.kf_account{ open_kfid = KFID, name = "客服", servicers = servicers }
end

local function human_session(standin)
  account(standin, { SERVICER })
  standin.set_session{ open_kfid = KFID, external_userid = TO, service_state = 3, servicer_userid = SERVICER }
end

-- the customer wrote (WeCom knows customers by their messages of the last 48 hours) and the assistant took it
local function customer(standin)
  account(standin, { SERVICER })
  standin.sync{ messages = { { open_kfid = KFID, external_userid = TO, msgtype = "text", text = { content = "在吗" } } } }
  standin.set_session{ open_kfid = KFID, external_userid = TO, service_state = 1 }
  standin.upgrade_config{ userid_list = { SERVICER }, department_id_list = { 2 }, chat_id_list = { "wrCHAT" } }
end

local function nothing() end

local function statistic_clock(standin)
  standin.config{ statistic_now = M.NOW }
end

-- name, module, op, setup, path, request (the raw POST body, or { query = "..." } for a GET), result, args...
local function case(name, module, op, setup, path, request, result, ...)
  local get = type(request) == "table"
  return { name = name, module = module, op = op, setup = setup, path = path, method = get and "GET" or "POST",
    body = not get and request or nil, query = get and request.query or nil, result = result,
    n = select("#", ...), ... }
end

local function with_avatar(c)
  c.avatar = true
  return c
end

local STAT = { open_kfid = KFID, start_time = START, end_time = END }
local STAT_DAYS = {
  { stat_time = START, statistic = { session_cnt = 0, customer_cnt = 0, customer_msg_cnt = 0 } },
  { stat_time = END, statistic = { session_cnt = 0, customer_cnt = 0, customer_msg_cnt = 0 } },
}

M.cases = {
  with_avatar(case("account.add", "account", "add", nothing, "/cgi-bin/kf/account/add",
    '{"name":"客服小美","media_id":"@AVATAR@"}', ok{ open_kfid = "wkSTANDIN1" }, "客服小美", AVATAR)),
  case("account.delete", "account", "delete", account, "/cgi-bin/kf/account/del",
    '{"open_kfid":"wkKF01"}', ok(), KFID),
  with_avatar(case("account.update", "account", "update", account, "/cgi-bin/kf/account/update",
    '{"open_kfid":"wkKF01","name":"新名字","media_id":"@AVATAR@"}', ok(), KFID, { media_id = AVATAR, name = "新名字" })),
  case("account.list with offset and limit", "account", "list", function(standin)
      standin.kf_account{ open_kfid = "wkA" }
      standin.kf_account{ open_kfid = "wkB", name = "乙" }
    end, "/cgi-bin/kf/account/list", '{"offset":1,"limit":1}',
    ok{ account_list = { { open_kfid = "wkB", name = "乙", avatar = "https://wework.qpic.cn/standin/",
      manage_privilege = true } } }, { offset = 1, limit = 1 }),
  case("account.list without options", "account", "list", nothing, "/cgi-bin/kf/account/list", "{}",
    ok{ account_list = {} }),
  case("account.add_contact_way with a scene", "account", "add_contact_way", account, "/cgi-bin/kf/add_contact_way",
    '{"open_kfid":"wkKF01","scene":"spring_sale-1"}',
    ok{ url = "https://work.weixin.qq.com/kf/kfcstandin1?enc_scene=ENCd2tLRjAxfHNwcmluZ19zYWxlLTE" },
    KFID, "spring_sale-1"),
  case("servicer.add", "servicer", "add", function(standin)
      account(standin, { "lisi" })
      standin.visible_range{ userid_list = { "zhangsan", "lisi" }, department_id_list = { 2 } }
    end,
    "/cgi-bin/kf/servicer/add", '{"open_kfid":"wkKF01","userid_list":["zhangsan","lisi"],"department_id_list":[2]}',
    ok{ result_list = {
      { userid = "zhangsan", errcode = 0, errmsg = "success" },
      { userid = "lisi", errcode = 0, errmsg = "ignored" },
      { department_id = 2, errcode = 0, errmsg = "success" },
    } }, KFID, { userid_list = { "zhangsan", "lisi" }, department_id_list = { 2 } }),
  case("servicer.delete", "servicer", "delete", function(standin) account(standin, { "lisi" }) end,
    "/cgi-bin/kf/servicer/del", '{"open_kfid":"wkKF01","userid_list":["lisi","nobody"]}',
    ok{ result_list = {
      { userid = "lisi", errcode = 0, errmsg = "success" },
      { userid = "nobody", errcode = 0, errmsg = "ignored" },
    } }, KFID, { userid_list = { "lisi", "nobody" } }),
  case("servicer.list", "servicer", "list", function(standin) account(standin, { SERVICER }) end,
    "/cgi-bin/kf/servicer/list", { query = "open_kfid=wkKF01" },
    ok{ servicer_list = { { userid = SERVICER, status = 0 } } }, KFID),
  case("service_state.get", "service_state", "get", human_session, "/cgi-bin/kf/service_state/get",
    '{"open_kfid":"wkKF01","external_userid":"wmCUSTOMER01"}', ok{ service_state = 3, servicer_userid = SERVICER },
    KFID, TO),
  case("service_state.trans to a human", "service_state", "trans", function(standin)
      account(standin, { SERVICER })
      standin.set_session{ open_kfid = KFID, external_userid = TO, service_state = 1 }
    end, "/cgi-bin/kf/service_state/trans",
    '{"open_kfid":"wkKF01","external_userid":"wmCUSTOMER01","service_state":3,"servicer_userid":"zhangsan"}',
    ok{ msg_code = "standin-msg-code-1" }, KFID, TO, 3, SERVICER),
  case("service_state.trans to the assistant", "service_state", "trans", function(standin)
      account(standin)
      standin.set_session{ open_kfid = KFID, external_userid = TO, service_state = 0 }
    end, "/cgi-bin/kf/service_state/trans",
    '{"open_kfid":"wkKF01","external_userid":"wmCUSTOMER01","service_state":1}', ok(), KFID, TO, 1),
  case("customer.get_customer_info", "customer", "get_customer_info", customer, "/cgi-bin/kf/customer/batchget",
    '{"external_userid_list":["wmCUSTOMER01","wmNOBODY"],"need_enter_session_context":1}',
    ok{ customer_list = { { external_userid = TO, nickname = "standin-" .. TO, avatar = "", gender = 0, unionid = "",
      enter_session_context = { scene = "", scene_param = "" } } }, invalid_external_userid = { "wmNOBODY" } },
    { TO, "wmNOBODY" }, { need_enter_session_context = true }),
  case("customer.batchget", "customer", "batchget", customer, "/cgi-bin/kf/customer/batchget",
    '{"external_userid_list":["wmCUSTOMER01"]}',
    ok{ customer_list = { { external_userid = TO, nickname = "standin-" .. TO, avatar = "", gender = 0,
      unionid = "" } }, invalid_external_userid = {} }, { TO }),
  case("customer.get_upgrade_service_config", "customer", "get_upgrade_service_config", customer,
    "/cgi-bin/kf/customer/get_upgrade_service_config", { query = "" },
    ok{ member_range = { userid_list = { SERVICER }, department_id_list = { 2 } },
      groupchat_range = { chat_id_list = { "wrCHAT" } } }),
  case("customer.upgrade_service to a member", "customer", "upgrade_service", customer,
    "/cgi-bin/kf/customer/upgrade_service", '{"open_kfid":"wkKF01","external_userid":"wmCUSTOMER01","type":1,'
    .. '"member":{"userid":"zhangsan","wording":"专属顾问为您服务"}}', ok(),
    KFID, TO, 1, { userid = SERVICER, wording = "专属顾问为您服务" }),
  case("customer.upgrade_service to a group chat", "customer", "upgrade_service", customer,
    "/cgi-bin/kf/customer/upgrade_service", '{"open_kfid":"wkKF01","external_userid":"wmCUSTOMER01","type":2,'
    .. '"groupchat":{"chat_id":"wrCHAT"}}', ok(), KFID, TO, 2, { chat_id = "wrCHAT" }),
  case("customer.cancel_upgrade_service", "customer", "cancel_upgrade_service", customer,
    "/cgi-bin/kf/customer/cancel_upgrade_service", '{"open_kfid":"wkKF01","external_userid":"wmCUSTOMER01"}', ok(),
    KFID, TO),
  case("statistic.get_corp_statistic", "statistic", "get_corp_statistic",
    function(standin) account(standin) statistic_clock(standin) end, "/cgi-bin/kf/get_corp_statistic",
    ('{"open_kfid":"wkKF01","start_time":%d,"end_time":%d}'):format(START, END), ok{ statistic_list = STAT_DAYS },
    STAT),
  case("statistic.get_servicer_statistic", "statistic", "get_servicer_statistic",
    function(standin) account(standin, { SERVICER }) statistic_clock(standin) end,
    "/cgi-bin/kf/get_servicer_statistic",
    ('{"open_kfid":"wkKF01","servicer_userid":"zhangsan","start_time":%d,"end_time":%d}'):format(START, END),
    ok{ statistic_list = STAT_DAYS },
    { open_kfid = KFID, servicer_userid = SERVICER, start_time = START, end_time = END }),
}

-- The case's arguments, the avatar's media_id in place of AVATAR (also as a field of a table argument).
function M.args(c, avatar)
  local out = {}
  for i = 1, c.n do
    local v = c[i]
    if v == AVATAR then
      v = avatar
    elseif type(v) == "table" and v.media_id == AVATAR then
      local copy = {}
      for k, x in pairs(v) do
        copy[k] = x
      end
      copy.media_id = avatar
      v = copy
    end
    out[i] = v
  end
  return unpack(out, 1, c.n)
end

-- The raw body the stand-in must receive, with the avatar's media_id.
function M.body(c, avatar)
  return c.body and (gsub(c.body, AVATAR, avatar or AVATAR))
end

--- Uploads the avatar image (account add and update take only the media_id of one the stand-in issued).
function M.upload_avatar(client)
  return require("wechat.work.material").upload_data(client, M.AGENT, "image", "avatar.png", M.AVATAR_PNG)
end

-- The modules by short name.
function M.modules()
  local out = {}
  for _, name in ipairs(M.MODULES) do
    out[name] = require("wechat.work.kf." .. name)
  end
  return out
end

return M
