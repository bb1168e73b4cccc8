--- The window tracker's entries in a Lua table: one process (one OpenResty worker). Every operation runs without
-- a yield, so coroutines of one worker never see half an update.
local rules = require "wechat.work.kf.window.rules"

local next, setmetatable = next, setmetatable
local WINDOW, GRACE, NOT_API = rules.WINDOW, rules.GRACE, rules.NOT_API
local blocks, refusal, ttl_of = rules.blocks, rules.refusal, rules.ttl

local M = {}
local Backend = {}
Backend.__index = Backend

local SWEEP_EVERY = 1000     -- opens between two walks that drop expired entries

function M.new()
  return setmetatable({ entries = {}, opens = 0, serial = 0 }, Backend)
end

local function live(self, key, now)
  local e = self.entries[key]
  if e and e.expires <= now then
    self.entries[key] = nil
    return nil
  end
  return e
end

local function sweep(self, now)
  local entries = self.entries
  local key, e = next(entries)
  while key do
    local following = next(entries, key)
    if e.expires <= now then
      entries[key] = nil
    end
    key, e = following, following and entries[following]
  end
end

local function new_window(self, e, t, msgid, now)
  self.serial = self.serial + 1
  e.t, e.m, e.g, e.n = t, msgid, self.serial, 0
  e.expires = now + ttl_of(t, now)
end

--- "ok", generation | "unknown" | a refusal reason. With `force` nothing is refused: a known window is counted.
function Backend:take(key, now, force)
  local e = live(self, key, now)
  if not e then
    return "unknown"
  end
  local reason = not force and refusal(e, now)
  if reason then
    return reason
  end
  if not e.t then
    return "unknown"
  end
  e.n = e.n + 1
  return "ok", e.g
end

function Backend:give_back(key, gen, now)
  local e = live(self, key, now)
  if e and e.g == gen and e.n > 0 then
    e.n = e.n - 1
  end
  return true
end

function Backend:open(key, t, msgid, now)
  local e = live(self, key, now)
  if e and e.t and (t < e.t or (t == e.t and msgid == e.m)) then
    return true
  end
  if not e then
    e = {}
    self.entries[key] = e
  end
  new_window(self, e, t, msgid, now)
  e.s = rules.state_after_message(e.s)
  self.opens = self.opens + 1
  if self.opens >= SWEEP_EVERY then
    self.opens = 0
    sweep(self, now)
  end
  return true
end

--- Records the session state; with `unless_open`, only when no window is open (enter_session).
function Backend:note_state(key, state, now, unless_open)
  local e = live(self, key, now)
  if e and unless_open and e.t and rules.is_open(e.t, e.n, now) then
    return true
  end
  if not e then
    e = { expires = now + WINDOW }
    self.entries[key] = e
  end
  e.s = state
  return true
end

--- What WeCom said about a window: "quota" (95001, fail_type 6), "closed" (95002, 95031, fail_type 4) or
-- "state" (95018). `gen`: only for that window (the one the refused send was counted in); `since`: only if the
-- customer has not written after that time (an event reporting an older send).
function Backend:mark(key, what, gen, now, since)
  local e = live(self, key, now)
  if what == "state" then
    if not e then
      e = { expires = now + GRACE }
      self.entries[key] = e
    end
    if not blocks(e.s) then
      e.s = NOT_API
    end
    return true
  end
  if e and e.t and ((gen and e.g ~= gen) or (since and e.t > since)) then
    return true
  end
  if not e or not e.t then
    e = e or {}
    self.entries[key] = e
    -- learned from a refusal alone: an hour's worth of knowing, no more
    new_window(self, e, rules.learned_start(what, now), nil, now)
    e.expires = now + GRACE
  end
  e.n = e.n + rules.mark_add(what, e.n)
  return true
end

--- The entry: { t =, n =, s = } (t nil when only the state is known), or nil.
function Backend:get(key, now)
  local e = live(self, key, now)
  if not e then
    return nil
  end
  return { t = e.t, n = e.n, s = e.s }
end

return M
