-- KF accounts, contact ways and servicers: POST /cgi-bin/kf/account/{add,del,update,list},
-- /cgi-bin/kf/add_contact_way, /cgi-bin/kf/servicer/{add,del}, GET /cgi-bin/kf/servicer/list.
-- Each check answers the first thing wrong, in the order of the tables in tools/wecom-standin/README.md.
local cjson = require "cjson.safe"
local http = require "standin.http"
local json_raw = require "standin.json_raw"
local kf = require "standin.kf"
local media_store = require "standin.media"
local state = require "standin.state"
local token = require "standin.token"

local ngx = ngx
local type, ipairs, floor = type, ipairs, math.floor
local format, find, gsub, concat = string.format, string.find, string.gsub, table.concat

local DICT = ngx.shared.standin
local prelude, need_string, absent = kf.prelude, kf.need_string, kf.absent

local M = {}

local MAX_NAME_CHARS = 16
local MAX_MEDIA_ID = 128
local MAX_OPEN_KFID = 64
local MAX_SCENE = 32
local MAX_IDS = 100
local MAX_LIMIT = 100
local MAX_ACCOUNTS = 5000 -- per corp (account/add's page)

--- A JSON array of JSON texts (cjson would write an empty table as {}).
function M.array(items)
  return "[" .. concat(items, ",") .. "]"
end

--- Answers ok with more fields (JSON text after the comma), or none.
function M.ok_with(fields)
  return http.json('{"errcode":0,"errmsg":"ok"' .. (fields and ("," .. fields) or "") .. "}")
end

local array, ok_with = M.array, M.ok_with

local function account(open_kfid)
  local rec = DICT:get("acct:" .. open_kfid)
  return rec and cjson.decode(rec)
end

local function save_account(open_kfid, rec)
  return DICT:safe_set("acct:" .. open_kfid, cjson.encode(rec))
end

--- Adds an account with a chosen id (the control API seeds accounts this way). Returns true or nil, err.
function M.seed_account(open_kfid, name, media_id)
  local n = DICT:incr("acct:n", 1, 0)
  local ok, err = DICT:safe_set("acct:id:" .. n, open_kfid)
  if not ok then
    return nil, err
  end
  ok, err = save_account(open_kfid, { name = name, media_id = media_id or "" })
  if ok then
    DICT:incr("acct:live", 1, 0)
  end
  return ok, err
end

-- The open_kfid of the body: nil, errcode, errmsg when missing, malformed or (known true) not an account.
local function need_kfid(obj, known)
  local v = obj.open_kfid
  if absent(v) or v == "" then
    return nil, 95000, "open_kfid missing"
  end
  if type(v) ~= "string" or #v > MAX_OPEN_KFID then
    return nil, 95000, "invalid open_kfid"
  end
  if known and not account(v) then
    return nil, 95004, "open_kfid not exist"
  end
  return v
end

--- The checks of a POST on one account: the decoded body and its open_kfid, or nil, errcode, errmsg.
function M.prelude(method, args, body)
  local obj, code, msg = prelude(method, args, body)
  if not obj then
    return nil, code, msg
  end
  local open_kfid
  open_kfid, code, msg = need_kfid(obj, true)
  if not open_kfid then
    return nil, code, msg
  end
  return obj, open_kfid
end

--- The checks of a GET: nil, or errcode, errmsg.
function M.get_prelude(method, args)
  if method ~= "GET" then
    return 43001, "require GET method"
  end
  return token.check(args)
end

-- UTF-8 characters (the name limit is in characters).
local function chars(s)
  return #gsub(s, "[\128-\191]", "")
end

local function name_error(name)
  if type(name) ~= "string" or name == "" or chars(name) > MAX_NAME_CHARS then
    return 95006, "invalid kf account name"
  end
end

-- The avatar: a temporary media_id of an image the stand-in issued (stricter than known: WeCom's answer to the
-- media_id of a voice, video or file is not documented, so those are refused too).
local function media_error(media_id)
  if type(media_id) ~= "string" or media_id == "" or #media_id > MAX_MEDIA_ID then
    return 40007, "invalid media_id"
  end
  local kept = media_store.lookup(media_id)
  if not kept or kept.type ~= "image" then
    return 40007, "invalid media_id"
  end
end

function M.add(method, args, body)
  local obj, code, msg = prelude(method, args, body)
  if not obj then
    return http.wecom_error(code, msg)
  end
  if absent(obj.name) then
    return http.wecom_error(40058, "name missing")
  end
  code, msg = name_error(obj.name)
  if code then
    return http.wecom_error(code, msg)
  end
  code, msg = need_string(obj, "media_id", "media_id", 41006)
  if code then
    return http.wecom_error(code, msg)
  end
  code, msg = media_error(obj.media_id)
  if code then
    return http.wecom_error(code, msg)
  end
  if (DICT:get("acct:live") or 0) >= MAX_ACCOUNTS then
    return http.wecom_error(95005, "kf account count exceeds limit")
  end
  local open_kfid = format("wkSTANDIN%d", state.next_id("open_kfid"))
  local ok, err = M.seed_account(open_kfid, obj.name, obj.media_id)
  if not ok then
    return http.wecom_error(-1, "system busy: " .. err)
  end
  return ok_with('"open_kfid":' .. cjson.encode(open_kfid))
end

function M.del(method, args, body)
  local obj, open_kfid, msg = M.prelude(method, args, body)
  if not obj then
    return http.wecom_error(open_kfid, msg)
  end
  DICT:delete("acct:" .. open_kfid)
  DICT:delete("svc:" .. open_kfid)
  DICT:incr("acct:live", -1, 0)
  DICT:delete("kfid:" .. open_kfid) -- a deleted account is gone for send_msg too (standin/session.lua)
  return ok_with()
end

function M.update(method, args, body)
  local obj, open_kfid, msg = M.prelude(method, args, body)
  if not obj then
    return http.wecom_error(open_kfid, msg)
  end
  local name, media_id = obj.name, obj.media_id
  if absent(name) and absent(media_id) then
    return http.wecom_error(40058, "name and media_id missing")
  end
  local code
  if not absent(name) then
    code, msg = name_error(name)
  end
  if not code and not absent(media_id) then
    code, msg = media_error(media_id)
  end
  if code then
    return http.wecom_error(code, msg)
  end
  local rec = account(open_kfid)
  rec.name = absent(name) and rec.name or name
  rec.media_id = absent(media_id) and rec.media_id or media_id
  save_account(open_kfid, rec)
  return ok_with()
end

local function is_uint(v, min, max)
  return type(v) == "number" and v == floor(v) and v >= min and v <= max
end

function M.list(method, args, body)
  local obj, code, msg = prelude(method, args, body)
  if not obj then
    return http.wecom_error(code, msg)
  end
  local offset, limit = obj.offset, obj.limit
  if not absent(offset) and not is_uint(offset, 0, 4294967295) then
    return http.wecom_error(40058, "invalid offset")
  end
  if not absent(limit) and not is_uint(limit, 1, MAX_LIMIT) then
    return http.wecom_error(40058, "invalid limit")
  end
  offset = absent(offset) and 0 or offset
  limit = absent(limit) and MAX_LIMIT or limit
  local items, live = {}, 0
  for i = 1, DICT:get("acct:n") or 0 do
    local open_kfid = DICT:get("acct:id:" .. i)
    local rec = open_kfid and account(open_kfid)
    if rec then
      live = live + 1
      if live > offset and #items < limit then
        items[#items + 1] = cjson.encode({
          open_kfid = open_kfid, name = rec.name, manage_privilege = true,
          avatar = "https://wework.qpic.cn/standin/" .. rec.media_id,
        })
      end
    end
  end
  return ok_with('"account_list":' .. array(items))
end

function M.add_contact_way(method, args, body)
  local obj, open_kfid, msg = M.prelude(method, args, body)
  if not obj then
    return http.wecom_error(open_kfid, msg)
  end
  local scene = obj.scene
  if absent(scene) then
    scene = ""
  elseif type(scene) ~= "string" or #scene > MAX_SCENE or find(scene, "[^0-9a-zA-Z_%-]") then
    return http.wecom_error(40058, "invalid scene")
  end
  local n = state.next_id("contact_way")
  local enc = gsub(ngx.encode_base64(open_kfid .. "|" .. scene), "[^%w]", "")
  return ok_with('"url":' .. cjson.encode(format("https://work.weixin.qq.com/kf/kfcstandin%d?enc_scene=ENC%s", n,
    enc)))
end

-- Servicers of an account, in the order added: { { userid = } | { department_id = } }.
local function servicers(open_kfid)
  local rec = DICT:get("svc:" .. open_kfid)
  return rec and cjson.decode(rec) or {}
end

--- True when userid is a servicer of the account in its own right (a department's members are not known to the
-- stand-in: the stricter answer).
function M.is_servicer(open_kfid, userid)
  for _, s in ipairs(servicers(open_kfid)) do
    if s.userid == userid then
      return true
    end
  end
  return false
end

--- Sets a servicer's reception status, for every account (the control API): 0 receiving (接待中), 1 stopped
-- (停止接待) with stop_type 0 stopped or 1 suspended (暂时挂起). Returns true or nil, err.
function M.set_servicer_status(userid, status, stop_type)
  if status == 0 then
    DICT:delete("svcstop:" .. userid)
    return true
  end
  return DICT:safe_set("svcstop:" .. userid, stop_type)
end

--- A servicer's status and, when it is 1, stop_type (servicer/list's fields). Receiving (0) unless set.
function M.servicer_status(userid)
  local stop_type = DICT:get("svcstop:" .. userid)
  if stop_type == nil then
    return 0
  end
  return 1, stop_type
end

--- Adds servicers by userid (the control API seeds them this way). Returns true or nil, err.
function M.seed_servicers(open_kfid, userids)
  local list = servicers(open_kfid)
  for _, userid in ipairs(userids) do
    list[#list + 1] = { userid = userid }
  end
  return DICT:safe_set("svc:" .. open_kfid, cjson.encode(list))
end

--- Sets the app's visible range (the control API): { userid_list = {...}, department_id_list = {...} }.
function M.set_visible_range(range)
  return DICT:safe_set("visible", cjson.encode(range))
end

-- True when the user or department (field "userid" or "department_id") is in the app's visible range, which is
-- empty until the control API sets it: WeCom takes as servicers only members the app can see (kf-family.md).
local function visible(field, id)
  local range = cjson.decode(DICT:get("visible") or "{}")
  for _, v in ipairs(range[field .. "_list"] or {}) do
    if v == id then
      return true
    end
  end
  return false
end

-- userid_list / department_id_list of a servicer body: the lists, or nil, errcode, errmsg.
local function id_lists(obj, raw)
  local lists = {}
  for _, spec in ipairs{ { "userid_list", "string" }, { "department_id_list", "number" } } do
    local name, kind = spec[1], spec[2]
    local list = obj[name]
    if absent(list) then
      list = {}
    else
      local text = json_raw.get(raw, name)
      if not text or json_raw.kind(text) ~= "array" or #list > MAX_IDS then
        return nil, 40058, "invalid " .. name
      end
      for _, id in ipairs(list) do
        if type(id) ~= kind or (kind == "string" and id == "") or (kind == "number" and not is_uint(id, 1, 4294967295))
        then
          return nil, 40058, "invalid " .. name
        end
      end
    end
    lists[name] = list
  end
  if #lists.userid_list + #lists.department_id_list == 0 then
    return nil, 40058, "userid_list and department_id_list empty"
  end
  return lists
end

-- servicer/add (adding true) and servicer/del: one result per id, "ignored" for an id already there (add) or
-- not there (del), as WeCom answers.
local function change_servicers(method, args, body, adding)
  local obj, open_kfid, msg = M.prelude(method, args, body)
  if not obj then
    return http.wecom_error(open_kfid, msg)
  end
  local lists, code
  lists, code, msg = id_lists(obj, body)
  if not lists then
    return http.wecom_error(code, msg)
  end
  local current = servicers(open_kfid)
  local results = {}
  local function change(field, id)
    if adding and not visible(field, id) then
      results[#results + 1] = cjson.encode({ [field] = id, errcode = 60011, errmsg = "not in the app's visible range" })
      return
    end
    local at
    for i, s in ipairs(current) do
      if s[field] == id then
        at = i
      end
    end
    local ignored = (adding and at) or (not adding and not at)
    if not ignored then
      if adding then
        current[#current + 1] = { [field] = id }
      else
        table.remove(current, at)
      end
    end
    results[#results + 1] = cjson.encode({ [field] = id, errcode = 0, errmsg = ignored and "ignored" or "success" })
  end
  for _, id in ipairs(lists.userid_list) do
    change("userid", id)
  end
  for _, id in ipairs(lists.department_id_list) do
    change("department_id", id)
  end
  DICT:safe_set("svc:" .. open_kfid, cjson.encode(current))
  return ok_with('"result_list":' .. array(results))
end

function M.servicer_add(method, args, body)
  return change_servicers(method, args, body, true)
end

function M.servicer_del(method, args, body)
  return change_servicers(method, args, body, false)
end

function M.servicer_list(method, args)
  local code, msg = M.get_prelude(method, args)
  if code then
    return http.wecom_error(code, msg)
  end
  local open_kfid
  open_kfid, code, msg = need_kfid({ open_kfid = http.arg(args, "open_kfid") }, true)
  if not open_kfid then
    return http.wecom_error(code, msg)
  end
  local items = {}
  for _, s in ipairs(servicers(open_kfid)) do
    if s.userid then
      local status, stop_type = M.servicer_status(s.userid)
      items[#items + 1] = cjson.encode({ userid = s.userid, status = status, stop_type = stop_type })
    else
      items[#items + 1] = cjson.encode({ department_id = s.department_id })
    end
  end
  return ok_with('"servicer_list":' .. array(items))
end

return M
