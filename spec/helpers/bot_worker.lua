-- A customer-service bot as a process of its own (Lua 5.4), for spec/redis_two_bots_spec.lua.
--
--   lua5.4 spec/helpers/bot_worker.lua ROOT STANDIN_URL REDIS_PORT NAME EXPECTED BATCH PAUSE_AFTER LOCK_TTL
--
-- It pulls the customers' messages of KF account "wkBOTS" with kf.sync_all, the cursor (and its lock) in the
-- Redis at REDIS_PORT, and records each message it handles with RPUSH bots:handled "NAME MSGID". After BATCH
-- messages it acks, leaves the loop and lets the other bots have a go; it stops once bots:handled holds EXPECTED
-- entries, and then sets bots:done:NAME. With PAUSE_AFTER > 0 it stops at the top of the loop body of message
-- number PAUSE_AFTER + 1, before handling it, sets bots:paused:NAME and waits there to be killed (kill -9):
-- the moment where a crash must lose nothing and repeat nothing.
local ROOT, STANDIN_URL, REDIS_PORT, NAME, EXPECTED, BATCH, PAUSE_AFTER, LOCK_TTL = ...
package.path = ROOT .. "/lua/?.lua;" .. ROOT .. "/spec/?.lua;" .. package.path
package.cpath = ROOT .. "/build/5.4/?.so;" .. package.cpath

local socket = require "socket"
local redis = require "helpers.redis"
local redis_store = require "wechat.work.store.redis"
local work = require "wechat.work"
local kf = require "wechat.work.kf.message"

local port, expected = tonumber(REDIS_PORT), tonumber(EXPECTED)
local batch, pause_after, lock_ttl = tonumber(BATCH), tonumber(PAUSE_AFTER), tonumber(LOCK_TTL)

local MAX_ROUNDS = 5000          -- x IDLE seconds at most when there is nothing to do
local IDLE = 0.02
local PAUSE_LIMIT = 600          -- x 0.1 s: a paused bot that nobody kills goes away by itself

local function must(reply, err)
  if err then
    io.stderr:write(NAME, ": redis: ", tostring(err), "\n")
    os.exit(2)
  end
  return reply
end

local client = work.client{
  corp_id = "wwCORP",
  agents = { kf = { secret = "KF_SECRET" } },
  base_url = STANDIN_URL,
  timeout = 5,
}
local store = redis_store.new{ port = port }

local seen = 0
for _ = 1, MAX_ROUNDS do
  if must(redis.command(port, "LLEN", "bots:handled")) >= expected then
    must(redis.command(port, "SET", "bots:done:" .. NAME, "done"))
    os.exit(0)
  end
  local pull = kf.sync_all(client, "kf", {
    open_kfid = "wkBOTS", cursor_store = store, lock_timeout = 0.5, lock_ttl = lock_ttl,
  })
  local in_run = 0
  for msg in pull do
    if pause_after > 0 and seen == pause_after then
      must(redis.command(port, "SET", "bots:paused:" .. NAME, "1"))
      for _ = 1, PAUSE_LIMIT do
        socket.sleep(0.1)
      end
      os.exit(3)
    end
    must(redis.command(port, "RPUSH", "bots:handled", NAME .. " " .. msg.msgid))
    seen, in_run = seen + 1, in_run + 1
    if in_run == batch then
      assert(pull:ack())
      break
    end
  end
  pull:close()
  if pull.err and pull.err.reason ~= "timeout" then
    io.stderr:write(NAME, ": ", tostring(pull.err), "\n")
  end
  -- let the other bots have the lock for a while
  socket.sleep(in_run == batch and IDLE * 2 or IDLE)
end
must(redis.command(port, "SET", "bots:done:" .. NAME, "gave up"))
os.exit(1)
