-- KF sessions: the service_state of each (open_kfid, external_userid), what may move it, and whether the API may
-- send in it. service_state/get and /trans, send_msg, send_msg_on_event (msg_code) and the control API all go
-- through here, so a rule is written once. States (kf-family.md §3): 0 untreated, 1 assistant (API bot),
-- 2 queue, 3 human, 4 ended / not started.
local cjson = require "cjson.safe"
local state = require "standin.state"
local window = require "standin.window"

local ngx = ngx
local type, tonumber = type, tonumber
local format = string.format

local DICT = ngx.shared.standin

local M = {
  UNTREATED = 0,
  ASSISTANT = 1,
  QUEUE = 2,
  HUMAN = 3,
  ENDED = 4,
}

-- The moves service_state/trans may make (kf-family.md §3, the official table's text). 0/1/2 -> 4 is not in
-- the text (a flow chart the corpus lacks): refused, the stricter answer. 3 -> 3 hands the session to another
-- servicer.
local MOVES = {
  [0] = { [1] = true, [2] = true, [3] = true },
  [1] = { [2] = true, [3] = true },
  [2] = { [3] = true },
  [3] = { [3] = true, [4] = true },
  [4] = {},
}

-- Only untreated and assistant sessions take API messages (kf-reference.md §2.5).
local SENDABLE = { [0] = true, [1] = true }

local function key(open_kfid, external_userid)
  return "sess:" .. open_kfid .. "\0" .. external_userid
end

-- The state as last set, not aged.
local function stored(open_kfid, external_userid)
  local rec = DICT:get(key(open_kfid, external_userid))
  if not rec then
    return nil
  end
  local s, servicer = rec:match("^(%d)|(.*)$")
  return tonumber(s), servicer
end

--- The session's state and servicer (servicer_userid "" unless human), or nil when the stand-in was never told
-- of that session. A session lasts 48 hours from the customer's last message (kf-family.md §3): after that it is
-- 4, whatever it was.
function M.get(open_kfid, external_userid)
  local s, servicer = stored(open_kfid, external_userid)
  if s and s ~= M.ENDED and window.over(open_kfid, external_userid) then
    return M.ENDED, ""
  end
  return s, servicer
end

--- Sets a session's state (and servicer, for 3). Returns true, or nil, err when the dict is full.
function M.set(open_kfid, external_userid, service_state, servicer_userid)
  local ok, err = DICT:safe_set(key(open_kfid, external_userid),
    service_state .. "|" .. (service_state == M.HUMAN and servicer_userid or ""))
  if not ok then
    return nil, err
  end
  DICT:safe_add("cust:" .. external_userid, open_kfid)
  -- a session on an account means WeCom has that account (customers write only to accounts that exist)
  DICT:safe_add("kfid:" .. open_kfid, true)
  return true
end

--- A customer message arrived (sync queue): a new session starts untreated, an ended one too; one in another
-- state stays as it is.
function M.customer_wrote(open_kfid, external_userid)
  local s = M.get(open_kfid, external_userid)
  if s == nil or s == M.ENDED then
    return M.set(open_kfid, external_userid, M.UNTREATED)
  end
  return true
end

--- True when the customer is known to the stand-in (a session, any state, with any account).
function M.known_customer(external_userid)
  return DICT:get("cust:" .. external_userid) ~= nil
end

--- True when the KF account exists for the stand-in: made by account/add or /_standin/kf_account, or a
-- session on it is known (a customer wrote to it, a control call or trans set one).
function M.known_account(open_kfid)
  return DICT:get("acct:" .. open_kfid) ~= nil or DICT:get("kfid:" .. open_kfid) ~= nil
end

--- nil when the API may send to this session now, else errcode, errmsg. A session the stand-in was never told
-- of is not refused here: whether the customer wrote (95031 when not) is standin/window.lua's, with the
-- 48-hour / 5-message window.
function M.check_send(open_kfid, external_userid)
  -- not aged: a session ended by the 48 hours is answered by the window's own 95002 (standin/window.lua)
  local s = stored(open_kfid, external_userid)
  if s == nil or SENDABLE[s] then
    return nil
  end
  return 95018, "send msg session status invalid"
end

--- Moves a session as service_state/trans does. `check_servicer(userid)` answers nil when a userid may receive
-- the account's sessions now, else errcode, errmsg. Returns the msg_code (nil when the move gives none), or
-- false, errcode, errmsg. A session never seen counts as ended (WeCom's 4, "not started", as service_state/get
-- answers), so nothing moves it until the customer writes. msg_code comes on a move to 2 or 4, and to 3 from
-- another state (a hand-over 3 -> 3 gives none): WeCom's "初次变更为2和3时 ... 为4时".
function M.trans(open_kfid, external_userid, to, servicer_userid, check_servicer)
  local from, servicer = M.get(open_kfid, external_userid)
  from = from or M.ENDED
  if not MOVES[from][to] or (from == M.HUMAN and to == M.HUMAN and servicer == servicer_userid) then
    return false, 95016, format("invalid service state transition %d -> %d", from, to)
  end
  if to == M.HUMAN then
    local code, msg = check_servicer(servicer_userid)
    if code then
      return false, code, msg
    end
  end
  local ok, err = M.set(open_kfid, external_userid, to, servicer_userid)
  if not ok then
    return false, -1, "system busy: " .. err
  end
  if to == M.ASSISTANT or (from == M.HUMAN and to == M.HUMAN) then
    return nil
  end
  local code = format("standin-msg-code-%d", state.next_id("msg_code"))
  DICT:safe_set("msgcode:" .. code, cjson.encode({ open_kfid, external_userid, to }))
  ok, err = state.issue_code(code)
  if not ok then
    return false, -1, "system busy: " .. err
  end
  return code
end

-- The scenes whose codes answer with text only (kf-reference.md §2.2): entering the queue (2) and being taken
-- from it by a servicer (3); the closing code (4) takes text or msgmenu.
local TEXT_ONLY = { [2] = true, [3] = true }

--- For send_msg_on_event: nil when `code` is not a msg_code of trans, or its session is still in the state it
-- was given for and the msgtype is one that state's scene takes; else errcode, errmsg
-- ("响应消息仅支持会话处于获取该code的会话状态时发送").
function M.check_code(code, msgtype)
  local rec = DICT:get("msgcode:" .. code)
  local given = rec and cjson.decode(rec)
  if type(given) ~= "table" then
    return nil
  end
  if TEXT_ONLY[given[3]] and msgtype ~= "text" then
    return 40008, "invalid msgtype"
  end
  if M.get(given[1], given[2]) ~= given[3] then
    return 95018, "send msg session status invalid"
  end
  return nil
end

return M
