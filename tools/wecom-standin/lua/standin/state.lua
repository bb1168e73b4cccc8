-- Everything the stand-in remembers, kept in lua_shared_dicts so that it is shared by every worker and survives
-- between requests. Lists are numbered keys ("req:1", "req:2", ...) because a shared-dict list cannot be read
-- without popping it.
local cjson = require "cjson.safe"

local ngx = ngx
local shared = ngx.shared
local tonumber, tostring, pairs, select = tonumber, tostring, pairs, select
local find, sub, format = string.find, string.sub, string.format
local sort = table.sort

local DICT = shared.standin
local LOG = shared.standin_log
local COUNTS = shared.standin_counts
local MSGIDS = shared.standin_msgids

local M = {}

-- Settings changed by POST /_standin/config; reset restores these.
M.DEFAULTS = {
  expires_in = 7200,        -- seconds a new access token lives
  kf_secret_only = false,   -- true: tokens of OTHER_SECRET get 48002 on the KF API
  record = true,            -- false: no request log and no delivered list (benches), counts still kept
  window_strict = true,     -- send_msg to a customer never seen writing answers 95031 (standin/window.lua), as WeCom
  media_cut_after = -1,     -- >= 0: media/get stops after this many bytes of the body and closes the connection
  media_framing = "length", -- media/get's body: "length" (Content-Length), "chunked", or "close" (ends at close)
  msgid_dedup = true,       -- a repeated msgid is refused, as WeCom; false (benches only: they send more msgids than
                            -- standin_msgids holds, and a full store answers -1) delivers every send
  media_strict = true,      -- send_msg refuses a media_id the stand-in never issued (40007), as WeCom
  media_now = 0,            -- > 0: the time media ids age by (3 days), and uploads are created at (0: the clock)
  statistic_now = 0,        -- > 0: the time the statistics' range check takes as now (0: the clock)
  code_now = 0,             -- > 0: the time send_msg_on_event codes are issued at and age by (0: the clock)
}

function M.reset()
  for _, dict in pairs({ DICT, LOG, COUNTS, MSGIDS }) do
    dict:flush_all()
    dict:flush_expired()
  end
end

function M.config(name)
  local value = DICT:get("cfg:" .. name)
  if value == nil then
    return M.DEFAULTS[name]
  end
  return value
end

function M.set_config(name, value)
  local ok, err = DICT:safe_set("cfg:" .. name, value)
  if not ok then
    return nil, err
  end
  return true
end

function M.all_config()
  local out = {}
  for name in pairs(M.DEFAULTS) do
    out[name] = M.config(name)
  end
  return out
end

-- A number that grows by one per call, per name, from 1 after a reset.
function M.next_id(name)
  return DICT:incr("id:" .. name, 1, 0)
end

local function warn_full(what, err)
  -- once per reset, not once per request: a bench can fill the log with millions of requests
  if DICT:add("warned:" .. what, true) then
    ngx.log(ngx.WARN, "standin: ", what, " not recorded: ", err, " (POST /_standin/reset or config record=false)")
  end
end

local function append(dict, list, value)
  local n = dict:incr(list .. ":n", 1, 0)
  local ok, err = dict:safe_set(list .. ":" .. n, value)
  if not ok then
    warn_full(list, err)
  end
end

local function items(dict, list)
  local n = dict:get(list .. ":n") or 0
  local out = {}
  for i = 1, n do
    local v = dict:get(list .. ":" .. i)
    if v ~= nil then
      out[#out + 1] = v
    end
  end
  return out
end

-- Requests: counted always, logged as a JSON object each unless config record is false. query: the raw query
-- string as it came (nil when there was none), so specs can assert escaping and order.
function M.record_request(method, path, args, body, query)
  COUNTS:incr(path, 1, 0)
  if not M.config("record") then
    return
  end
  local json = cjson.encode({ method = method, path = path, args = args, body = body, query = query })
  if json then
    append(LOG, "req", json)
  end
end

-- JSON texts of the logged requests, to path only when path is given.
function M.requests(path)
  local all = items(LOG, "req")
  if not path then
    return all
  end
  local out = {}
  for i = 1, #all do
    local r = cjson.decode(all[i])
    if r and r.path == path then
      out[#out + 1] = all[i]
    end
  end
  return out
end

function M.counts()
  local out = {}
  local keys = COUNTS:get_keys(0)
  sort(keys)
  for i = 1, #keys do
    out[keys[i]] = COUNTS:get(keys[i])
  end
  return out
end

-- Concurrency of the API requests (everything outside /_standin/): how many are being answered now, the most at
-- once since the reset, and how many connections they came on. One worker: no race between get and set.
function M.request_began(connection)
  local n = DICT:incr("in_flight", 1, 0)
  if n > (DICT:get("max_in_flight") or 0) then
    DICT:set("max_in_flight", n)
  end
  if DICT:add("connection:" .. connection, true) then
    DICT:incr("connections", 1, 0)
  end
end

function M.request_ended()
  DICT:incr("in_flight", -1, 0)
end

function M.concurrency()
  return {
    in_flight = DICT:get("in_flight") or 0,
    max_in_flight = DICT:get("max_in_flight") or 0,
    connections = DICT:get("connections") or 0,
  }
end

-- Delivery after msgid dedup. Returns true; false when msgid was delivered before; nil, err when the dedup dict
-- is full: safe_add never forgets an old msgid to make room, as WeCom keeps them without a time limit.
function M.deliver(msgid, raw_body, dedup)
  if dedup then
    local ok, err = MSGIDS:safe_add(msgid, true)
    if not ok then
      if err == "exists" then
        return false
      end
      return nil, err
    end
  end
  if M.config("record") then
    append(LOG, "delivered", raw_body)
  end
  return true
end

-- Marks a msgid key used without delivering anything. Returns true, or nil, err when the dict is full.
function M.mark_msgid(key)
  return MSGIDS:safe_set(key, true)
end

function M.seen_msgid(msgid)
  return MSGIDS:get(msgid) ~= nil
end

function M.delivered()
  return items(LOG, "delivered")
end

-- The clock send_msg_on_event codes are issued at and age by: config code_now when set, so a spec can age one.
function M.code_now()
  local t = M.config("code_now")
  if t > 0 then
    return t
  end
  return ngx.now()
end

-- A send_msg_on_event code WeCom gave the bot (a trans msg_code, a queued event's welcome_code or msg_code), at
-- `at` when earlier than now (an event's send_time), else now. Returns true, or nil, err when the dict is full.
function M.issue_code(code, at)
  local now = M.code_now()
  return DICT:safe_set("issued:" .. code, at and at < now and at or now)
end

-- When `code` was issued (code clock), or nil when the stand-in never issued it.
function M.code_issued_at(code)
  return DICT:get("issued:" .. code)
end

-- One-time codes of send_msg_on_event. Returns false when used before.
function M.use_code(code)
  local ok, err = DICT:safe_add("code:" .. code, true)
  if ok then
    return true
  end
  if err == "exists" then
    return false
  end
  return nil, err
end

-- sync_msg tokens, each from a kf_msg_or_event callback (customer_writes): WeCom takes one for 10 minutes.
local SYNC_TOKEN_LIFE = 600

function M.issue_sync_token(token)
  return DICT:safe_set("synctok:" .. token, true, SYNC_TOKEN_LIFE)
end

function M.live_sync_token(token)
  return DICT:get("synctok:" .. token) ~= nil
end

-- Tokens. Every token remembers the generation it was issued in; expire_tokens starts a new generation, which
-- makes every older token answer 42001 without walking them all.
local function generation()
  return DICT:get("token:gen") or 0
end

function M.expire_tokens()
  DICT:incr("token:gen", 1, 0)
end

local function random_hex(nbytes)
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(nbytes)
  if f then
    f:close()
  end
  if not bytes or #bytes ~= nbytes then
    -- a test server can live with a weaker token; two tokens never share the counter anyway
    bytes = ngx.md5_bin(tostring(ngx.now()) .. ":" .. tostring(ngx.worker.pid()) .. ":" .. tostring(M.next_id("rnd")))
  end
  return (bytes:gsub(".", function(c)
    return format("%02x", c:byte())
  end))
end

-- A token record is "GENERATION|EXPIRES_AT|SECRET_NAME".
local function parse_token(rec)
  local gen, expires_at, secret_name = rec:match("^(%d+)|([^|]+)|(.*)$")
  return tonumber(gen), tonumber(expires_at), secret_name
end

-- The token of secret_name, a new one when there is none alive. Returns token, seconds left.
function M.token_for(secret_name)
  local gen = generation()
  local now = ngx.now()
  local key = "tokfor:" .. gen .. ":" .. secret_name
  for _ = 1, 2 do
    local token = DICT:get(key)
    if token then
      local rec = DICT:get("tok:" .. token)
      local expires_at = rec and select(2, parse_token(rec))
      if expires_at and expires_at > now then
        return token, expires_at - now
      end
      DICT:delete(key)
    end
    local expires_in = M.config("expires_in")
    token = "ST" .. random_hex(24)
    local expires_at = now + expires_in
    local ok, err = DICT:safe_set("tok:" .. token, gen .. "|" .. expires_at .. "|" .. secret_name)
    if not ok then
      return nil, err
    end
    if expires_in <= 0 then
      return token, 0
    end
    -- add, not set: when two requests race, both answer with the token that got in first
    ok = DICT:safe_add(key, token, expires_in)
    if ok then
      return token, expires_in
    end
  end
  return nil, "token race"
end

-- "ok", secret_name | "invalid" | "expired"
function M.token_state(token)
  local rec = DICT:get("tok:" .. token)
  if not rec then
    return "invalid"
  end
  local gen, expires_at, secret_name = parse_token(rec)
  if gen < generation() or expires_at <= ngx.now() then
    return "expired", secret_name
  end
  return "ok", secret_name
end

-- Scripts: one shared-dict list per path, each item "COUNT ACTION_JSON".
function M.push_script(path, count, action_json)
  local len, err = DICT:rpush("script:" .. path, count .. " " .. action_json)
  if not len then
    return nil, err
  end
  return len
end

-- The action (JSON text) for the next request to path, or nil. Workers race between lpop and lpush; with the one
-- worker we run they cannot.
function M.take_script(path)
  local key = "script:" .. path
  local item = DICT:lpop(key)
  if not item then
    return nil
  end
  local space = find(item, " ", 1, true)
  local count = tonumber(sub(item, 1, space - 1))
  local action = sub(item, space + 1)
  if count == -1 then
    DICT:lpush(key, item)
  elseif count > 1 then
    DICT:lpush(key, (count - 1) .. " " .. action)
  end
  return action
end

-- Sync queue: messages as raw JSON objects, numbered from 1, with their open_kfid beside them for filtering.
function M.queue_message(raw, open_kfid)
  local n = DICT:incr("sync:n", 1, 0)
  local ok, err = DICT:safe_set("sync:msg:" .. n, raw)
  if not ok then
    return nil, err
  end
  if open_kfid then
    DICT:safe_set("sync:kfid:" .. n, open_kfid)
  end
  return n
end

function M.queued_count()
  return DICT:get("sync:n") or 0
end

function M.queued_message(i)
  return DICT:get("sync:msg:" .. i), DICT:get("sync:kfid:" .. i)
end

function M.set_page_size(n)
  return DICT:safe_set("sync:page_size", n)
end

function M.page_size()
  return DICT:get("sync:page_size") or 1000
end

function M.set_empty_pages(k)
  return DICT:safe_set("sync:empty", k)
end

-- True when this sync_msg call is one of the empty pages asked for.
function M.take_empty_page()
  local left = DICT:get("sync:empty")
  if not left or left <= 0 then
    return false
  end
  local now = DICT:incr("sync:empty", -1)
  return now ~= nil and now >= 0
end

return M
