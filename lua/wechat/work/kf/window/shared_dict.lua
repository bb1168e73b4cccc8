--- The window tracker's entries in an nginx lua_shared_dict, exact across the workers of one nginx.
-- A customer takes two or three keys, named by the MD5 of the tracker's key (16 bytes) so that 100,000 customers
-- stay small (see bench/window_memory):
--   "~w"..h  the window: "<send_time>:<crc32 of the msgid>" of the customer's last message, which also names
--            the window's count (a new message starts a new count; give-backs of older sends miss it)
--   "~n"..h..":"..window  the count, moved only by `incr` (check and count in one step: incr, then undo when it
--            went past the limit), so two workers can never both send the fifth message
--   "~s"..h  the session state, when known
-- Every key expires with its window (rules.ttl). Writes never evict (safe_set): a full dict loses a write, and
-- the tracker then knows less (it passes what it does not know).
local rules = require "wechat.work.kf.window.rules"
local errors = require "wechat.work.errors"

local setmetatable, tonumber = setmetatable, tonumber
local match = string.match
local LIMIT, WINDOW, GRACE, NOT_API = rules.LIMIT, rules.WINDOW, rules.GRACE, rules.NOT_API
local blocks, ttl_of, over = rules.blocks, rules.ttl, rules.over

local M = {}
local Backend = {}
Backend.__index = Backend

--- A backend on the dict of a shared_dict store (`store.dict`, `store.name`).
function M.new(store)
  local ngx = store.ngx
  return setmetatable({ dict = store.dict, name = store.name, md5_bin = ngx.md5_bin, crc32 = ngx.crc32_short },
    Backend)
end

local function fail(self, what, err)
  return nil, errors.new(errors.STORE, "lua_shared_dict '" .. self.name .. "': window " .. what .. ": " .. err)
end

local function keys(self, key)
  local h = self.md5_bin(key)
  return "~w" .. h, "~s" .. h, "~n" .. h .. ":"
end

local function window_time(w)
  return tonumber(match(w, "^(%-?%d+):"))
end

function Backend:take(key, now, force)
  local dict = self.dict
  local W, S, N = keys(self, key)
  local w = dict:get(W)
  if not force and blocks(dict:get(S)) then
    return "state"
  end
  if not w then
    return "unknown"
  end
  local t = window_time(w)
  if not force and now >= t + WINDOW then
    return "expired"
  end
  N = N .. w
  local n, err = dict:incr(N, 1, 0, ttl_of(t, now))
  if not n then
    return fail(self, "count", err)
  end
  if not force and n > LIMIT then
    dict:incr(N, -1)
    return over(n - 1)
  end
  return "ok", w
end

function Backend:give_back(key, gen)
  local _, _, N = keys(self, key)
  -- no init: a window that expired meanwhile stays gone
  self.dict:incr(N .. gen, -1)
  return true
end

function Backend:open(key, t, msgid, now)
  local dict = self.dict
  local W, S = keys(self, key)
  local gen = t .. ":" .. self.crc32(msgid or "")
  local w = dict:get(W)
  if w and (t < window_time(w) or w == gen) then
    return true
  end
  local ttl = ttl_of(t, now)
  local ok, err = dict:safe_set(W, gen, ttl)
  if not ok then
    return fail(self, "open", err)
  end
  local s = dict:get(S)
  if s then
    local after = rules.state_after_message(s)
    if after == nil then
      dict:delete(S)
    elseif after ~= s then
      dict:safe_set(S, after, ttl)
    else
      dict:expire(S, ttl)
    end
  end
  return true
end

function Backend:note_state(key, state, now, unless_open)
  local dict = self.dict
  local W, S, N = keys(self, key)
  local w = dict:get(W)
  local ttl = WINDOW
  if w then
    local t = window_time(w)
    if unless_open and rules.is_open(t, dict:get(N .. w) or 0, now) then
      return true
    end
    ttl = ttl_of(t, now)
  end
  local ok, err = dict:safe_set(S, state, ttl)
  if not ok then
    return fail(self, "state", err)
  end
  return true
end

function Backend:mark(key, what, gen, now, since)
  local dict = self.dict
  local W, S, N = keys(self, key)
  local w = dict:get(W)
  if what == "state" then
    if not blocks(dict:get(S)) then
      local ok, err = dict:safe_set(S, NOT_API, w and ttl_of(window_time(w), now) or GRACE)
      if not ok then
        return fail(self, "state", err)
      end
    end
    return true
  end
  local ttl
  if w then
    local t = window_time(w)
    if (gen and w ~= gen) or (since and t > since) then
      return true
    end
    ttl = ttl_of(t, now)
  else
    -- learned from a refusal alone: an hour's worth of knowing, no more
    w, ttl = rules.learned_start(what, now) .. ":0", GRACE
    local ok, err = dict:safe_set(W, w, ttl)
    if not ok then
      return fail(self, "mark", err)
    end
  end
  N = N .. w
  local add = rules.mark_add(what, dict:get(N) or 0)
  if add > 0 then
    local ok, err = dict:incr(N, add, 0, ttl)
    if not ok then
      return fail(self, "mark", err)
    end
  end
  return true
end

function Backend:get(key)
  local dict = self.dict
  local W, S, N = keys(self, key)
  local w, s = dict:get(W), dict:get(S)
  if not w then
    return s and { s = s } or nil
  end
  return { t = window_time(w), n = dict:get(N .. w) or 0, s = s }
end

return M
