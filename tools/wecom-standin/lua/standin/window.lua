-- WeCom's 48 h / 5-message rule for send_msg: after a customer's message (origin 3, queued by /_standin/sync or
-- customer_writes, or told by customer_wrote, with its send_time) the KF account may send that customer 5 messages
-- within 48 hours of the message's send_time; the next customer message starts over. send_msg_on_event is not
-- counted. A customer the stand-in never saw write gets 95031, as on WeCom (config window_strict false: passes).
local state = require "standin.state"

local ngx = ngx
local DICT = ngx.shared.standin

local M = {}

local LIMIT = 5
local WINDOW = 48 * 3600

local function key(open_kfid, user)
  return open_kfid .. "\0" .. user
end

-- A customer message: the window restarts unless a later one is known already.
function M.customer_wrote(open_kfid, user, send_time)
  local k = key(open_kfid, user)
  local last = DICT:get("win:t:" .. k)
  if last and send_time < last then
    return true
  end
  local ok, err = DICT:safe_set("win:t:" .. k, send_time)
  if not ok then
    return nil, err
  end
  -- a new count for the new window: sends still counting against the old one cannot touch it
  DICT:incr("win:g:" .. k, 1, 0)
  -- the customer's last message to any account, for the calls that name no account (customer/batchget)
  if send_time > (DICT:get("win:c:" .. user) or -1) then
    DICT:safe_set("win:c:" .. user, send_time)
  end
  return true
end

--- True when the customer wrote to the account (open_kfid, or any account when nil) within the last 48 hours.
function M.wrote_lately(open_kfid, user)
  local t = DICT:get(open_kfid and "win:t:" .. key(open_kfid, user) or "win:c:" .. user)
  return t ~= nil and ngx.time() < t + WINDOW
end

--- The send_time of the customer's last message to the account, or nil when none is known.
function M.last_message(open_kfid, user)
  return DICT:get("win:t:" .. key(open_kfid, user))
end

--- True when the customer's last message to the account is 48 hours old or older (WeCom's session and window end).
function M.over(open_kfid, user)
  local t = M.last_message(open_kfid, user)
  return t ~= nil and ngx.time() >= t + WINDOW
end

-- Counts a send to the customer: nil when it may go (then a count was taken: give it back with `give_back` if
-- the send is not delivered after all), else errcode, errmsg.
function M.take(open_kfid, user)
  local k = key(open_kfid, user)
  local t = DICT:get("win:t:" .. k)
  if not t then
    if state.config("window_strict") then
      return 95031, "customer has not written within 48 hours"
    end
    return nil
  end
  if ngx.time() >= t + WINDOW then
    return 95002, "send msg time limit: 48 hours since the customer's last message"
  end
  local counter = "win:n:" .. k .. ":" .. (DICT:get("win:g:" .. k) or 0)
  local n = DICT:incr(counter, 1, 0)
  if n > LIMIT then
    DICT:incr(counter, -1)
    return 95001, "send msg count limit: 5 messages since the customer's last message"
  end
  return nil, nil, counter
end

function M.give_back(counter)
  if counter then
    DICT:incr(counter, -1)
  end
end

return M
