--- The rules every window backend applies (wechat.work.kf.window): WeCom's numbers and the session states that
-- refuse API sends. The Redis backend repeats them inside its scripts (it gets them as arguments from here).
local M = {}

M.LIMIT = 5                  -- messages a KF account may send per customer message
M.WINDOW = 48 * 3600         -- seconds after the customer's message during which it may send them
-- Seconds an entry is kept after its window closed (or when it is learned closed: a late customer message,
-- 95002, fail_type 4), so the tracker answers "expired" for a while instead of forgetting the customer.
M.GRACE = 3600
-- Added to a window's count when WeCom says the window is closed (95002, 95031, fail_type 4): a count this high
-- means "expired", one from LIMIT up means "quota". Give-backs of sends in flight never bring it below.
M.CLOSED = 1000
-- The state recorded after a 95018: "not the API's", without knowing which (queued, human or ended).
M.NOT_API = -1

--- True when a session in `state` refuses send_msg: 2 queued, 3 with a human, 4 ended, or NOT_API.
function M.blocks(state)
  return state ~= nil and state ~= 0 and state ~= 1
end

--- True while a window that opened at `t` with `n` sends counted is open: within 48 h and not marked closed.
function M.is_open(t, n, now)
  return now < t + M.WINDOW and n < M.CLOSED
end

--- The state a session is in after a new customer message, from the one it was in: an ended session (4) starts
-- again; which state a 95018 meant (NOT_API) is unknown, and the message may have changed it, so it is forgotten
-- (nil); any other stays.
function M.state_after_message(s)
  if s == 4 then
    return 0
  end
  if s == M.NOT_API then
    return nil
  end
  return s
end

--- The send_time to assume for a window learned from a refusal alone (no customer message seen): closed (95002,
-- 95031, fail_type 4) means it opened at least WINDOW ago; quota (95001, fail_type 6) means it is open now.
function M.learned_start(what, now)
  if what == "closed" then
    return now - M.WINDOW
  end
  return now
end

--- What a refusal adds to a window's count `n`: LIMIT for "quota" and CLOSED for "closed", once each (0 when
-- the count already says so).
function M.mark_add(what, n)
  if what == "quota" and n < M.LIMIT then
    return M.LIMIT
  end
  if what == "closed" and n < M.CLOSED then
    return M.CLOSED
  end
  return 0
end

--- Seconds an entry whose customer last wrote at `t` lives from `now`: to the end of its window plus GRACE, and
-- at least GRACE (a window learned when already closed).
function M.ttl(t, now)
  local ttl = t + M.WINDOW + M.GRACE - now
  if ttl < M.GRACE then
    return M.GRACE
  end
  return ttl
end

--- Why a send would be refused, from an entry `{ t = the customer's last send_time or nil, n = sends counted,
-- s = state or nil }` at time `now`: "state", "expired" or "quota"; nil when it would pass.
function M.refusal(rec, now)
  if not rec then
    return nil
  end
  if M.blocks(rec.s) then
    return "state"
  end
  if not rec.t then
    return nil
  end
  if not M.is_open(rec.t, rec.n, now) then
    return "expired"
  end
  if rec.n >= M.LIMIT then
    return "quota"
  end
  return nil
end

--- The refusal reason for a count `n` taken past the limit: "expired" when the window was marked closed.
function M.over(n)
  if n >= M.CLOSED then
    return "expired"
  end
  return "quota"
end

return M
