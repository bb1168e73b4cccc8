-- Sessions and customers: POST /cgi-bin/kf/service_state/{get,trans}, /cgi-bin/kf/customer/batchget,
-- /cgi-bin/kf/customer/{upgrade_service,cancel_upgrade_service}, GET /cgi-bin/kf/customer/get_upgrade_service_config,
-- POST /cgi-bin/kf/get_corp_statistic, /cgi-bin/kf/get_servicer_statistic.
-- Each check answers the first thing wrong, in the order of the tables in tools/wecom-standin/README.md.
local cjson = require "cjson.safe"
local http = require "standin.http"
local json_raw = require "standin.json_raw"
local kf = require "standin.kf"
local kf_account = require "standin.kf_account"
local session = require "standin.session"
local state = require "standin.state"
local window = require "standin.window"

local ngx = ngx
local type, ipairs, floor = type, ipairs, math.floor

local DICT = ngx.shared.standin
local prelude, need_string, absent = kf.prelude, kf.need_string, kf.absent

local M = {}

local MAX_CUSTOMERS = 100
local DAY = 86400
local CST = 8 * 3600 -- WeCom's days start at 00:00 China Standard Time
local MAX_DAYS = 31 -- days in the closed range [start day, end day]
local MAX_BACK_DAYS = 180
local MAX_WORDING = 128 -- WeCom publishes no limit: stand-in, the stricter reading

local array, ok_with = kf_account.array, kf_account.ok_with

-- The account's checks, then (with_user) an external_userid: obj, open_kfid, userid or nil, errcode, errmsg.
local function session_prelude(method, args, body, with_user)
  local obj, kfid, msg = kf_account.prelude(method, args, body)
  if not obj then
    return nil, kfid, msg
  end
  if with_user then
    local code
    code, msg = need_string(obj, "external_userid", "external_userid", 40096)
    if code then
      return nil, code, msg
    end
  end
  return obj, kfid, obj.external_userid
end

function M.get_state(method, args, body)
  local obj, kfid, user = session_prelude(method, args, body, true)
  if not obj then
    return http.wecom_error(kfid, user)
  end
  local s, servicer = session.get(kfid, user)
  if s == nil then
    -- a customer the stand-in never saw: no session (WeCom's 4, "not started")
    s, servicer = session.ENDED, ""
  end
  return ok_with(('"service_state":%d,"servicer_userid":%s'):format(s, cjson.encode(servicer)))
end

function M.trans(method, args, body)
  local obj, kfid, user = session_prelude(method, args, body, true)
  if not obj then
    return http.wecom_error(kfid, user)
  end
  local to, servicer = obj.service_state, obj.servicer_userid
  if type(to) ~= "number" or to ~= floor(to) or to < 0 or to > 4 then
    return http.wecom_error(40058, "invalid service_state")
  end
  if to == session.HUMAN then
    local code, msg = need_string(obj, "servicer_userid", "servicer_userid", 40058)
    if code then
      return http.wecom_error(code, msg)
    end
  elseif not absent(servicer) then
    -- the stricter answer: WeCom documents servicer_userid for state 3 only
    return http.wecom_error(40058, "servicer_userid only with service_state 3")
  end
  local msg_code, code, msg = session.trans(kfid, user, to, servicer, function(userid)
    if not kf_account.is_servicer(kfid, userid) then
      return 95014, "user is not servicer"
    end
    -- the servicer must be receiving (接待中), kf-family.md §3
    if kf_account.servicer_status(userid) ~= 0 then
      return 95019, "servicer has stopped receiving or is suspended"
    end
  end)
  if msg_code == false then
    return http.wecom_error(code, msg)
  end
  return ok_with(msg_code and ('"msg_code":' .. cjson.encode(msg_code)) or nil)
end

function M.batchget(method, args, body)
  local obj, code, msg = prelude(method, args, body)
  if not obj then
    return http.wecom_error(code, msg)
  end
  local list = obj.external_userid_list
  local raw = json_raw.get(body, "external_userid_list")
  if absent(list) or not raw or json_raw.kind(raw) ~= "array" or #list == 0 or #list > MAX_CUSTOMERS then
    return http.wecom_error(40058, "invalid external_userid_list")
  end
  local context = obj.need_enter_session_context
  if not absent(context) and context ~= 0 and context ~= 1 then
    return http.wecom_error(40058, "invalid need_enter_session_context")
  end
  local customers, invalid = {}, {}
  for _, id in ipairs(list) do
    if type(id) ~= "string" or id == "" then
      return http.wecom_error(40058, "invalid external_userid_list")
    end
    -- WeCom: only customers who wrote within 48 hours; the others are invalid (kf-family.md §4)
    if window.wrote_lately(nil, id) then
      local c = { external_userid = id, nickname = "standin-" .. id, avatar = "", gender = 0, unionid = "" }
      if context == 1 then
        c.enter_session_context = { scene = "", scene_param = "" }
      end
      customers[#customers + 1] = cjson.encode(c)
    else
      invalid[#invalid + 1] = cjson.encode(id)
    end
  end
  return ok_with('"customer_list":' .. array(customers) .. ',"invalid_external_userid":' .. array(invalid))
end

-- The upgrade-service configuration: { userid_list = {}, department_id_list = {}, chat_id_list = {} }.
local function upgrade_config()
  local rec = DICT:get("upgrade:config")
  return rec and cjson.decode(rec) or { userid_list = {}, department_id_list = {}, chat_id_list = {} }
end

--- Sets the members and group chats upgrade_service may name (the control API).
function M.set_upgrade_config(config)
  return DICT:safe_set("upgrade:config", cjson.encode(config))
end

local function encoded(list)
  local out = {}
  for i, v in ipairs(list) do
    out[i] = cjson.encode(v)
  end
  return array(out)
end

function M.get_upgrade_service_config(method, args)
  local code, msg = kf_account.get_prelude(method, args)
  if code then
    return http.wecom_error(code, msg)
  end
  local c = upgrade_config()
  return ok_with(('"member_range":{"userid_list":%s,"department_id_list":%s},"groupchat_range":{"chat_id_list":%s}')
    :format(encoded(c.userid_list), encoded(c.department_id_list), encoded(c.chat_id_list)))
end

local function contains(list, value)
  for _, v in ipairs(list) do
    if v == value then
      return true
    end
  end
  return false
end

function M.upgrade_service(method, args, body)
  local obj, kfid, user = session_prelude(method, args, body, true)
  if not obj then
    return http.wecom_error(kfid, user)
  end
  if not window.wrote_lately(kfid, user) then
    return http.wecom_error(40096, "invalid external userid")
  end
  local kind = obj.type
  local field = kind == 1 and "member" or kind == 2 and "groupchat" or nil
  if not field then
    return http.wecom_error(40058, "invalid type")
  end
  local inner = obj[field]
  local raw = json_raw.get(body, field)
  if absent(inner) or not raw or json_raw.kind(raw) ~= "object" then
    return http.wecom_error(40058, field .. " missing")
  end
  local id = kind == 1 and "userid" or "chat_id"
  local code, msg = need_string(inner, id, field .. "." .. id, 40058)
  if code then
    return http.wecom_error(code, msg)
  end
  if not absent(inner.wording) and (type(inner.wording) ~= "string" or #inner.wording > MAX_WORDING) then
    return http.wecom_error(40058, "invalid " .. field .. ".wording")
  end
  local c = upgrade_config()
  if not contains(kind == 1 and c.userid_list or c.chat_id_list, inner[id]) then
    return http.wecom_error(40058, field .. "." .. id .. " not in the upgrade service range")
  end
  DICT:safe_set("upgrade:" .. kfid .. "\0" .. user, body)
  return ok_with()
end

function M.cancel_upgrade_service(method, args, body)
  local obj, kfid, user = session_prelude(method, args, body, true)
  if not obj then
    return http.wecom_error(kfid, user)
  end
  if not window.wrote_lately(kfid, user) then
    return http.wecom_error(40096, "invalid external userid")
  end
  DICT:delete("upgrade:" .. kfid .. "\0" .. user)
  return ok_with()
end

local function day_start(t)
  return floor((t + CST) / DAY) * DAY - CST
end

-- Both statistics: open_kfid of a known account, the time range (day starts, closed, at most 31 days, within
-- yesterday and the 180 days before), servicer_userid (servicer only) a servicer of the account.
local function statistic(method, args, body, per_servicer)
  local obj, kfid, code = session_prelude(method, args, body, false)
  if not obj then
    return http.wecom_error(kfid, code)
  end
  local from, to = obj.start_time, obj.end_time
  local function uint32(v)
    return type(v) == "number" and v == floor(v) and v >= 0 and v <= 4294967295
  end
  if not uint32(from) or not uint32(to) then
    return http.wecom_error(40058, "invalid start_time or end_time")
  end
  local now = state.config("statistic_now")
  local today = day_start(now > 0 and now or ngx.time())
  -- WeCom floors both to their days and counts the closed range: 31 days at most, however far into the day they are
  local days = (day_start(to) - day_start(from)) / DAY + 1
  if to < from or days > MAX_DAYS or day_start(to) >= today or day_start(from) < today - MAX_BACK_DAYS * DAY then
    return http.wecom_error(40058, "invalid time range")
  end
  if per_servicer and not absent(obj.servicer_userid) then
    local servicer = obj.servicer_userid
    if type(servicer) ~= "string" or not kf_account.is_servicer(kfid, servicer) then
      return http.wecom_error(95014, "user is not servicer")
    end
  elseif not per_servicer and not absent(obj.servicer_userid) then
    return http.wecom_error(40058, "unknown field servicer_userid")
  end
  local list = {}
  for day = day_start(from), day_start(to), DAY do
    list[#list + 1] = ('{"stat_time":%d,"statistic":{"session_cnt":0,"customer_cnt":0,"customer_msg_cnt":0}}')
      :format(day)
  end
  return ok_with('"statistic_list":' .. array(list))
end

function M.corp_statistic(method, args, body)
  return statistic(method, args, body, false)
end

function M.servicer_statistic(method, args, body)
  return statistic(method, args, body, true)
end

return M
