--- What WeCom will let a KF account send a customer, known before WeCom refuses: at most 5 messages within
-- 48 hours after the customer's last message, and only while the session is with the API (state 0 or 1).
--
--   local client = work.client{ ..., window = true }      -- or shared_dict = "wechat", or a Redis token_store
--   local res, err = kf.send_text(client, "kf", to, open_kfid, "hi")
--   if not res and err.kind == "window" then ... err.reason: "quota" | "expired" | "state" end
--
-- The tracker learns from what passes through the client: customer messages (origin 3) and events in every
-- sync_msg page (kf.sync_msg, kf.sync_all), the answers to send_msg (95001 quota, 95002/95031 closed, 95018 state
-- not the API's), service_state transitions (note_state). Sends are counted before they leave, in one atomic
-- step of the store (memory: one Lua call; lua_shared_dict: incr; Redis: one EVAL), and the count is given back
-- when WeCom refused the send for another reason or it surely never left; a send whose fate is unknown keeps its
-- count, erring towards never passing 5. A customer it has never seen is never blocked, nor a send with
-- `opts.force`; a store that fails makes it pass sends too: it blocks only what it knows.
local errors = require "wechat.work.errors"
local nginx = require "wechat.work.nginx"
local rules = require "wechat.work.kf.window.rules"
local work = require "wechat.work"

local error, ipairs, require, tostring, type = error, ipairs, require, tostring, type
local floor = math.floor
local format = string.format
local LIMIT, WINDOW = rules.LIMIT, rules.WINDOW

local M = {}

local REFUSALS = {
  quota = "5 messages sent since the customer last wrote: wait for the customer's next message",
  expired = "48 hours passed since the customer last wrote: wait for the customer's next message",
  state = "the session is not with the API (queued, with a human or ended)",
}

-- What a WeCom errcode to send_msg says about the window.
local WINDOW_CODES = { [95001] = "quota", [95002] = "closed", [95031] = "closed", [95018] = "state" }
-- msg_send_fail fail_type: 4 session expired (48 h), 6 over the 5-message limit.
local FAIL_TYPES = { [4] = "closed", [6] = "quota" }

local now = nginx.time

-- The backend of a store, one per store object (so clients sharing a store share the windows).
local function backend_of(store)
  local backend = store.window_backend
  if not backend then
    backend = require("wechat.work.kf.window." .. store.kind).new(store)
    store.window_backend = backend
  end
  return backend
end

--- The tracker's backend of a client, or nil when the client was made without `window`.
function M.backend(client)
  local option = client.window
  if not option then
    return nil
  end
  if option == true then
    return backend_of(client.store)
  end
  return backend_of(option)
end

local function key_of(client, open_kfid, external_userid)
  return "wechat:kf:window:" .. client.corp_id .. ":" .. open_kfid .. ":" .. external_userid
end

local type_name = work.type_name

-- Raises naming the argument; `level` is the caller's, as error() counts it from check.
local function check(fname, level, client, agent, open_kfid, external_userid)
  work.check_client_and_agent(fname, client, agent, level + 1)
  if type(open_kfid) ~= "string" or open_kfid == "" then
    error(format("bad argument #3 to '%s' (open_kfid: non-empty string expected, got %s)", fname,
      open_kfid == "" and "empty string" or type_name(open_kfid)), level)
  end
  if type(external_userid) ~= "string" or external_userid == "" then
    error(format("bad argument #4 to '%s' (external_userid: non-empty string expected, got %s)", fname,
      external_userid == "" and "empty string" or type_name(external_userid)), level)
  end
  local backend = M.backend(client)
  if not backend then
    error(format("bad argument #1 to '%s' (the client was made without the window option)", fname), level)
  end
  return backend, key_of(client, open_kfid, external_userid)
end

-- The entry of a customer and the refusal a send would get now: rec, reason, time; nil, err when the store failed.
local function lookup(fname, client, agent, open_kfid, external_userid)
  local backend, key = check(fname, 4, client, agent, open_kfid, external_userid)
  local t_now = now()
  local rec, err = backend:get(key, t_now)
  if err then
    return nil, err
  end
  return rec, rules.refusal(rec, t_now)
end

--- What the tracker knows of a customer.
-- @return nil when it knows nothing (it then lets sends pass), or `{ remaining = 0..5 (sends left in the window),
--   expires_at = unix seconds (48 h after the customer's last message), state = 0..4 or nil (unknown, or only
--   known to be "not the API's" after a 95018), reason = nil or the refusal a send would get ("quota",
--   "expired", "state") }`; remaining and expires_at are nil when only the state is known. nil, err when the
--   store failed.
function M.get(client, agent, open_kfid, external_userid)
  local rec, reason = lookup("get", client, agent, open_kfid, external_userid)
  if not rec then
    return nil, reason
  end
  local out = { reason = reason }
  if rec.s and rec.s >= 0 then
    out.state = rec.s
  end
  if rec.t then
    out.expires_at = rec.t + WINDOW
    local left = LIMIT - rec.n
    if out.reason == "expired" or left < 0 then
      left = 0
    end
    out.remaining = left
  end
  return out
end

--- Whether a send to the customer would pass the tracker now (without counting it).
-- @return true; or false and the reason ("quota", "expired", "state"); nil, err when the store failed
function M.can_send(client, agent, open_kfid, external_userid)
  local rec, reason = lookup("can_send", client, agent, open_kfid, external_userid)
  if not rec and reason then
    return nil, reason
  end
  if reason then
    return false, reason
  end
  return true
end

--- Records the session state of a customer, as `service_state.trans` and `service_state.get` learn it: 0 or 1
-- let sends pass, 2 (queued), 3 (a human) and 4 (ended) refuse them with reason "state".
-- @return true, or nil, err when the store failed
function M.note_state(client, agent, open_kfid, external_userid, state)
  local backend, key = check("note_state", 3, client, agent, open_kfid, external_userid)
  if state ~= 0 and state ~= 1 and state ~= 2 and state ~= 3 and state ~= 4 then
    error(format("bad argument #5 to 'note_state' (service state 0..4 expected, got %s)",
      type(state) == "number" and tostring(state) or type_name(state)), 2)
  end
  return backend:note_state(key, state, now(), false)
end

local function customer_of(msg, event)
  local open_kfid, user = event and event.open_kfid or msg.open_kfid, event and event.external_userid
    or msg.external_userid
  if type(open_kfid) == "string" and open_kfid ~= "" and type(user) == "string" and user ~= "" then
    return open_kfid, user
  end
end

local function integer(v)
  return type(v) == "number" and v == floor(v) and v or nil
end

-- The customer messages of a page, kept per customer until they must reach the backend: only the newest counts
-- (`open` ignores an older send_time, and of two in one second the later one wins), so a page costs one store
-- round trip per customer instead of one per message. An event of a customer sends that customer's open first,
-- so the backend sees each customer's messages and events in their order.
local function pend_open(pending, key, t, msgid)
  local p = pending[key]
  if not p then
    pending[#pending + 1] = key
    pending[key] = { t = t, msgid = msgid }
  elseif t >= p.t then
    p.t, p.msgid = t, msgid
  end
end

local function flush_open(backend, pending, key, t_now)
  local p = pending[key]
  if p then
    pending[key] = false
    backend:open(key, p.t, p.msgid, t_now)
  end
end

-- One message of a sync_msg page.
local function observe_one(client, backend, msg, t_now, pending)
  if type(msg) ~= "table" then
    return
  end
  if msg.origin == 3 then
    local open_kfid, user = customer_of(msg)
    if open_kfid then
      pend_open(pending, key_of(client, open_kfid, user), integer(msg.send_time) or t_now,
        type(msg.msgid) == "string" and msg.msgid or nil)
    end
    return
  end
  local event = msg.event
  if msg.msgtype ~= "event" or type(event) ~= "table" then
    return
  end
  local open_kfid, user = customer_of(msg, event)
  if not open_kfid then
    return      -- servicer_status_change names no customer: no session's state follows from it
  end
  local key = key_of(client, open_kfid, user)
  flush_open(backend, pending, key, t_now)
  local kind = event.event_type
  if kind == "enter_session" then
    -- the customer opened the chat without writing: state 4 (not started), unless a window is open already
    backend:note_state(key, 4, t_now, true)
  elseif kind == "session_status_change" then
    -- 1 taken from the queue, 2 transferred, 4 taken up again: a human has it; 3 ended
    local change = event.change_type
    if change == 3 then
      backend:note_state(key, 4, t_now, false)
    elseif change == 1 or change == 2 or change == 4 then
      backend:note_state(key, 3, t_now, false)
    end
  elseif kind == "msg_send_fail" then
    local what = FAIL_TYPES[event.fail_type]
    if what then
      backend:mark(key, what, nil, t_now, integer(msg.send_time))
    end
  end
end

--- Feeds a sync_msg answer (its msg_list) to the tracker of the client, if it has one. kf.sync_msg and
-- kf.sync_all call it for every page they fetch. Store failures are ignored: the tracker then knows less.
function M.observe(client, data)
  local backend = M.backend(client)
  local list = backend and type(data) == "table" and data.msg_list
  if type(list) ~= "table" then
    return
  end
  local t_now, pending = now(), {}
  for _, msg in ipairs(list) do
    observe_one(client, backend, msg, t_now, pending)
  end
  for i = 1, #pending do
    flush_open(backend, pending, pending[i], t_now)
  end
end

--- Before a send_msg to `to`: nil, err (kind "window") when the tracker knows WeCom would refuse it; else a
-- ticket for `after_send` (false when the client has no tracker). The send is counted now unless `force`.
-- kf.send_* call it; another module sending send_msg bodies must call it and `after_send` the same way.
function M.before_send(client, open_kfid, to, force, op)
  local backend = M.backend(client)
  if not backend or type(open_kfid) ~= "string" or type(to) ~= "string" then
    return false
  end
  local key = key_of(client, open_kfid, to)
  if force then
    return { backend = backend, key = key, force = true }
  end
  local status, gen = backend:take(key, now(), false)
  if status == "ok" then
    return { backend = backend, key = key, gen = gen }
  end
  if REFUSALS[status] then
    return nil, errors.new(errors.WINDOW, REFUSALS[status], { reason = status, op = op, open_kfid = open_kfid,
      external_userid = to })
  end
  -- unknown customer, or the store failed: pass, and still learn from WeCom's answer
  return { backend = backend, key = key }
end

--- After the send of a `before_send` ticket: learns from WeCom's answer, gives the count back when the send
-- surely did not count (WeCom refused it, or it never reached WeCom: the client says which on every failed send,
-- `err.maybe_sent`, see Client:post), counts a forced send WeCom accepted.
function M.after_send(ticket, res, err)
  if not ticket then
    return
  end
  local backend, key, t_now = ticket.backend, ticket.key, now()
  if res then
    if ticket.force then
      backend:take(key, t_now, true)
    end
    return
  end
  local what = err.kind == errors.API and WINDOW_CODES[err.errcode]
  if what then
    backend:mark(key, what, ticket.gen, t_now)
  elseif ticket.gen and not err.maybe_sent then
    backend:give_back(key, ticket.gen, t_now)
  end
end

return M
