--- Pulling customers' messages across sync_msg pages with a durable cursor: `kf.sync_all`.
--
--   local pull = kf.sync_all(client, "kf", { token = callback_token, open_kfid = "wkXXXX", cursor_store = store })
--   for msg in pull do
--     handle(msg)                  -- msg is WeCom's decoded message, untouched
--   end
--   if pull.err then log(tostring(pull.err)) end
--   -- pull.cursor: the last next_cursor WeCom gave
--
-- Progress ("what was handled") is kept in a cursor store (the shape of the token store: memory, lua_shared_dict,
-- Redis) under `wechat:kf:cursor:<corp_id>:<open_kfid>` (`*` for all KF accounts), as the text
-- `<n>:<cursor>:<msgid>`: the page fetched with `cursor` ("" for the very first pull) has had `n` messages
-- handled, the last of them `msgid`; or `0:<cursor>`: nothing of that page handled yet. (`%`, `:`, spaces and
-- control bytes in the cursor and the msgid are written as `%XX`.) The rules:
--   * A message counts as handled when the loop asks for the next one (or when `pull:ack()` is called). At that
--     moment, before the next message is handed out or fetched, the store gets `<n>:<page cursor>:<msgid>`, or
--     `0:<next_cursor>` when it was the last one of its page. One store write per message.
--   * A page with nothing to hand out (empty, `has_more` 1 included) moves the store to `0:<next_cursor>` at once.
--   * Starting, the pull reads the stored state and fetches the page of its cursor again. WeCom need not answer
--     the same cursor with the same page (messages may have been added or dropped since), so the pull looks for
--     the stored msgid in it and hands out what follows it. When the page does not hold that msgid, it hands out
--     the whole page: the rule errs towards handing a message out again, never towards skipping one. (A state
--     without a msgid, written for a message that had none, skips the first `n` messages.)
--   * The message in hand when a process died, or when the loop was left with `break` without `pull:ack()`, was
--     not handled, and comes first next time.
--   * A run-time failure (network, WeCom error, store) stops the iteration; `pull.err` holds the error value and
--     the store still names the last handled message.
-- So every message is handed out at least once. It is handed out again only when its handler's work was done
-- but not recorded: the process died (or the store write failed, or the lock was lost) between the handler's
-- side effect and the write, or a resumed page no longer held the last handled msgid. Handlers that must not
-- act twice check the msgid (the KF bot example sends each reply under a msgid made from the customer's one,
-- which WeCom delivers once).
-- With a store that has `lock` (lua_shared_dict, Redis), the pull holds the lock of its key from the first
-- message until the end, so two processes never pull the same pages at once: the one that comes second waits up
-- to `lock_timeout` and then ends with a "store" error (`reason = "timeout"`). The lock has a ttl (`lock_ttl`),
-- so a killed holder blocks the others only that long. Each cursor write renews it (`lock:set`, which writes only
-- while the lock is still this pull's: compare and write in one step), and it is extended before each page; so
-- `lock_ttl` must exceed the time to handle one message or to fetch one page. A pull whose lock ran out anyway
-- (and may be held by another now) writes nothing more: it stops with a "store" error, `reason = "lost"` (the
-- message just handled was not recorded, and comes again to whoever pulls next) or `"expired"` (found before a
-- page). A store whose lock has no `set` gets plain `store:set` writes, without that fence.
-- The stored state is read after the lock is taken.
--
-- Events (msgtype "event") and every other message type come as WeCom sent them: `msg.event.event_type`,
-- `msg.event.welcome_code` (ready for `kf.send_msg_on_event`), `fail_msgid`, `recall_msgid`, ...; unknown types
-- and fields pass through untouched.
local core = require "wechat.core"
local errors = require "wechat.work.errors"
local memory_store = require "wechat.work.store.memory"
local work = require "wechat.work"

local error, pairs, setmetatable, tonumber, tostring, type = error, pairs, setmetatable, tonumber, tostring, type
local floor = math.floor
local byte, char, find, format, gsub, match = string.byte, string.char, string.find, string.format, string.gsub,
  string.match

local M = {}

local SYNC_MSG = "/cgi-bin/kf/sync_msg"
local OP = "sync_msg"
local DEFAULT_LOCK_TIMEOUT = 5     -- seconds to wait while another process pulls
local DEFAULT_LOCK_TTL = 60        -- seconds: how long a killed holder blocks the others; must exceed one page
local MAX_CURSOR, MAX_TOKEN, MAX_LIMIT = 64, 128, 1000

local OPTIONS = {
  token = true, open_kfid = true, cursor = true, limit = true, voice_format = true,
  cursor_store = true, lock = true, lock_timeout = true, lock_ttl = true,
}

local Pull = {}
Pull.__index = Pull

local function type_name(value)
  local t = type(value)
  return t == "nil" and "no value" or t
end

local function arg_error(n, message)
  error(format("bad argument #%d to 'sync_all' (%s)", n, message), 3)
end

local function check_string(opts, name, max, allow_empty)
  local value = opts[name]
  if value == nil then
    return nil
  end
  if type(value) ~= "string" or (value == "" and not allow_empty) then
    error(format("bad argument #3 to 'sync_all' (%s: %sstring expected, got %s)", name,
      allow_empty and "" or "non-empty ", type(value) == "string" and "empty string" or type_name(value)), 3)
  end
  if max and #value > max then
    error(format("bad argument #3 to 'sync_all' (%s: at most %d bytes, got %d)", name, max, #value), 3)
  end
  return value
end

local function check_number(opts, name, positive)
  local value = opts[name]
  if value ~= nil and (type(value) ~= "number" or value ~= value or value < 0 or (positive and value == 0)) then
    error(format("bad argument #3 to 'sync_all' (%s: %s number expected, got %s)", name,
      positive and "positive" or "non-negative", tostring(value)), 3)
  end
  return value
end

local function is_integer(v)
  return type(v) == "number" and v == floor(v)
end

--- The store key of the cursor of `open_kfid` (nil: all KF accounts) of the client's corp.
function M.cursor_key(client, open_kfid)
  return "wechat:kf:cursor:" .. client.corp_id .. ":" .. (open_kfid or "*")
end

local function escape(s)
  return (gsub(s, "[%%:%s%c]", function(c)
    return format("%%%02X", byte(c))
  end))
end

local function unescape(s)
  if find(s, "%%[^%x]") or find(s, "%%%x?$") then
    return nil
  end
  return (gsub(s, "%%(%x%x)", function(h)
    return char(tonumber(h, 16))
  end))
end

local function encode_state(n, cursor, msgid)
  if n == 0 or not msgid then
    return n .. ":" .. escape(cursor)
  end
  return n .. ":" .. escape(cursor) .. ":" .. escape(msgid)
end

-- cursor, n, msgid (nil in the states without one); nil when malformed.
local function parse_state(value)
  local n, cursor, msgid = match(value, "^(%d+):([^:]*):([^:]+)$")
  if not n then
    n, cursor = match(value, "^(%d+):([^:]*)$")
    if not n then
      return nil
    end
  end
  cursor = unescape(cursor)
  if msgid then
    msgid = unescape(msgid)
    if not msgid then
      return nil
    end
  end
  if not cursor then
    return nil
  end
  return cursor, tonumber(n), msgid
end

local function fail(self, err)
  if not errors.is(err) then
    err = errors.new(errors.STORE, tostring(err))
  end
  err.op = err.op or "sync_all"
  self.err = self.err or err
end

-- Ends the iteration: records err (if any), releases the lock.
local function finish(self, err)
  if err then
    fail(self, err)
  end
  if not self.done then
    self.done = true
    self.pending = false
    local lock = self.lock
    self.lock = nil
    if lock then
      local ok, unlock_err = lock:unlock()
      if not ok then
        fail(self, unlock_err)
        return nil, unlock_err
      end
    end
  end
  return nil
end

-- Records the state; under a lock that can fence writes, only while the lock is still this pull's.
local function save(self, cursor, n, msgid)
  local value = encode_state(n, cursor, msgid)
  local lock = self.lock
  local ok, err
  if lock and lock.set then
    ok, err = lock:set(self.key, value)
  else
    ok, err = self.store:set(self.key, value)
  end
  if not ok then
    return nil, err or errors.new(errors.STORE, "cursor store refused the write")
  end
  return true
end

-- Takes the lock, then learns where to start.
local function start(self)
  self.started = true
  if self.use_lock then
    local lock, err = self.store:lock(self.key, { timeout = self.lock_timeout, ttl = self.lock_ttl })
    if not lock then
      return nil, err or errors.new(errors.STORE, "lock not obtained")
    end
    self.lock = lock
  end
  if self.start_cursor then
    self.page_cursor, self.skip, self.skip_msgid = self.start_cursor, 0, nil
  else
    local value, err = self.store:get(self.key)
    if err ~= nil then
      return nil, err
    end
    if value == nil then
      self.page_cursor, self.skip, self.skip_msgid = "", 0, nil
    else
      local cursor, n, msgid = parse_state(tostring(value))
      if not cursor then
        return nil, errors.new(errors.STORE, "malformed cursor state under " .. self.key)
      end
      self.page_cursor, self.skip, self.skip_msgid = cursor, n, msgid
    end
  end
  self.cursor = self.page_cursor ~= "" and self.page_cursor or nil
  return true
end

-- The message in hand is handled: record it.
local function commit(self)
  self.pending = false
  local ok, err
  if self.index >= #self.page then
    ok, err = save(self, self.next_cursor, 0)
    self.page_cursor, self.page, self.index = self.next_cursor, {}, 0
  else
    local msg = self.page[self.index]
    local msgid = type(msg) == "table" and msg.msgid
    ok, err = save(self, self.page_cursor, self.index, type(msgid) == "string" and msgid ~= "" and msgid or nil)
  end
  if ok then
    self.handled = self.handled + 1
  end
  return ok, err
end

-- How many messages of a resumed page were handled: up to and including msgid, or none when the page does
-- not hold it (handing out again rather than skipping what was never handled).
local function handled_through(list, msgid)
  for i = 1, #list do
    local msg = list[i]
    if type(msg) == "table" and msg.msgid == msgid then
      return i
    end
  end
  return 0
end

local function fetch(self)
  local lock = self.lock
  if lock and lock.extend then
    local ok, err = lock:extend(self.lock_ttl)
    if not ok then
      return nil, err
    end
  end
  local req = self.request
  req.cursor = self.page_cursor ~= "" and self.page_cursor or nil
  -- idempotent: the same cursor gives the same page, so a page whose answer was lost is pulled again
  local data, err = self.client:post(self.agent, SYNC_MSG, core.sync_msg(self.client, self.agent, req), OP, true)
  if not data then
    return nil, err
  end
  local list, next_cursor, has_more = data.msg_list, data.next_cursor, data.has_more
  if list == nil then
    list = {}
  end
  if type(list) ~= "table" then
    return nil, errors.new(errors.DECODE, "msg_list is not an array", { op = OP })
  end
  has_more = tonumber(has_more) or 0
  if type(next_cursor) ~= "string" or next_cursor == "" then
    if has_more ~= 0 then
      return nil, errors.new(errors.DECODE, "has_more without next_cursor", { op = OP })
    end
    next_cursor = self.page_cursor    -- nothing new: stay where we are rather than start over
  end
  self.pages = self.pages + 1
  self.page, self.next_cursor, self.has_more = list, next_cursor, has_more
  self.cursor = next_cursor ~= "" and next_cursor or nil
  local skip = self.skip
  if self.skip_msgid then
    skip = handled_through(list, self.skip_msgid)
  end
  self.skip, self.skip_msgid = 0, nil
  if skip >= #list then
    -- nothing to hand out here: move on at once (an empty page with has_more 1 included)
    local ok
    ok, err = save(self, next_cursor, 0)
    if not ok then
      return nil, err
    end
    self.page_cursor, self.page, self.index = next_cursor, {}, 0
  else
    self.index = skip
  end
  return true
end

--- The next message, or nil at the end (then see `pull.err`). The generic for calls this.
function Pull:next()
  if self.done then
    return nil
  end
  local ok, err
  if not self.started then
    ok, err = start(self)
    if not ok then
      return finish(self, err)
    end
  end
  if self.pending then
    ok, err = commit(self)
    if not ok then
      return finish(self, err)
    end
  end
  while true do
    if self.index < #self.page then
      self.index = self.index + 1
      self.pending = true
      return self.page[self.index]
    end
    if self.has_more == 0 then
      return finish(self)
    end
    ok, err = fetch(self)
    if not ok then
      return finish(self, err)
    end
  end
end

Pull.__call = Pull.next

--- Counts the message in hand as handled now, e.g. before leaving the loop with `break`.
-- @return true, or nil, err (the iteration is then over, see `pull.err`)
function Pull:ack()
  if not self.pending then
    return true
  end
  local ok, err = commit(self)
  if not ok then
    finish(self, err)
    return nil, err
  end
  return true
end

--- Ends the iteration and releases the lock. The message in hand, if any, is not counted as handled (unless
-- acked). Needed after `break`; on Lua 5.4 `local pull <close> = kf.sync_all(...)`, or
-- `for msg in kf.sync_all(...) do` (which passes the pull as the closing value), does it by itself.
-- @return true, or nil, err when the lock could not be released
function Pull:close()
  if self.done then
    return true
  end
  local _, err = finish(self)
  if err then
    return nil, err
  end
  return true
end

Pull.__close = Pull.close

--- Pulls every message of the corp (or of one KF account) across sync_msg pages, until `has_more` is 0.
-- @param client a client of `wechat.work.client`
-- @param agent the name of the agent holding the KF secret
-- @param opts optional table:
--   `token` (from the callback event, <= 128 bytes; without it WeCom limits the call rate strictly),
--   `open_kfid` (one KF account; also names the cursor), `limit` (1..1000 per page), `voice_format` (0 AMR,
--   1 SILK), `cursor` (start here instead of at the stored cursor; "" = from the very start; <= 64 bytes),
--   `cursor_store` (a store; default a memory store kept on the client, good for one process only),
--   `lock` (boolean: hold the store's lock while pulling; default true when the store has `lock`),
--   `lock_timeout` (seconds to wait for another puller, default 5), `lock_ttl` (seconds, default 60).
-- @return the pull: call it, or use it in a generic for; `pull.err` (nil or the error value that stopped it),
--   `pull.cursor` (the last next_cursor, or the start cursor before any page), `pull.handled` (messages
--   recorded as handled), `pull.pages` (pages fetched), `pull:ack()`, `pull:close()`. Nothing happens on the
--   network until the first message is asked for. The pull is returned a second time as the 4th value, so that
--   `for msg in kf.sync_all(...)` closes it on Lua 5.4 even when the loop is left by `break` or an error.
function M.sync_all(client, agent, opts)
  if not work.is_client(client) then
    arg_error(1, "wechat.work client expected, got " .. type_name(client))
  end
  if type(agent) ~= "string" then
    arg_error(2, "agent name expected, got " .. type_name(agent))
  end
  if not client:agent(agent) then
    arg_error(2, "unknown agent '" .. agent .. "'")
  end
  if opts == nil then
    opts = {}
  elseif type(opts) ~= "table" then
    arg_error(3, "table expected, got " .. type_name(opts))
  end
  for k in pairs(opts) do
    if not OPTIONS[k] then
      arg_error(3, "unknown option '" .. tostring(k) .. "'")
    end
  end
  local request = {
    token = check_string(opts, "token", MAX_TOKEN),
    open_kfid = check_string(opts, "open_kfid"),
  }
  local start_cursor = check_string(opts, "cursor", MAX_CURSOR, true)
  local limit = opts.limit
  if limit ~= nil and not (is_integer(limit) and limit >= 1 and limit <= MAX_LIMIT) then
    arg_error(3, "limit: integer 1..1000 expected, got " .. tostring(limit))
  end
  request.limit = limit
  local voice_format = opts.voice_format
  if voice_format ~= nil and voice_format ~= 0 and voice_format ~= 1 then
    arg_error(3, "voice_format: 0 or 1 expected, got " .. tostring(voice_format))
  end
  request.voice_format = voice_format
  local store = opts.cursor_store
  if store == nil then
    store = client.kf_cursor_store
    if not store then
      store = memory_store.new()
      client.kf_cursor_store = store
    end
  elseif type(store) ~= "table" or type(store.get) ~= "function" or type(store.set) ~= "function" then
    arg_error(3, "cursor_store: store with get and set expected, got " .. type_name(store))
  end
  local use_lock = opts.lock
  if use_lock == nil then
    use_lock = type(store.lock) == "function"
  elseif type(use_lock) ~= "boolean" then
    arg_error(3, "lock: boolean expected, got " .. type_name(use_lock))
  elseif use_lock and type(store.lock) ~= "function" then
    arg_error(3, "lock: the cursor_store has no lock")
  end

  local pull = setmetatable({
    client = client,
    agent = agent,
    request = request,
    store = store,
    key = M.cursor_key(client, request.open_kfid),
    use_lock = use_lock,
    lock_timeout = check_number(opts, "lock_timeout") or DEFAULT_LOCK_TIMEOUT,
    lock_ttl = check_number(opts, "lock_ttl", true) or DEFAULT_LOCK_TTL,
    start_cursor = start_cursor,
    cursor = start_cursor ~= "" and start_cursor or nil,
    page = {},
    index = 0,
    has_more = 1,
    skip = 0,
    pending = false,
    started = false,
    done = false,
    handled = 0,
    pages = 0,
  }, Pull)
  return pull, nil, nil, pull
end

return M
