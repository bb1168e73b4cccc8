-- Two bots (two separate lua5.4 processes, spec/helpers/bot_worker.lua) pull the same customers' messages from
-- one stand-in with kf.sync_all, sharing the cursor and its lock in one real redis-server. Every message must be
-- handled exactly once and in order, also when one bot is killed (kill -9) in the middle of a page while it holds
-- the lock, and started again.
local redis = require "helpers.redis"
local socket = require "socket"
local standin = require "helpers.standin"

local PORT = 16393
local MESSAGES = 200
local PAGE_SIZE = 7
local BATCH = 15
local LOCK_TTL = 2
local WAIT_TRIES = 1200         -- x 0.1 s: bounded waits for the bots

local shell_quote = require("helpers.shell").quote

local succeeded = require("helpers.shell").succeeded

local function repo_root()
  local p = io.popen("pwd")
  local dir = p:read("*l")
  p:close()
  return dir
end

describe("two bots sharing one Redis", function()
  local server, root
  local started = {} -- name -> pid file, for teardown

  local function file(name)
    return server.dir .. "/" .. name
  end

  local function read(path)
    local f = io.open(path)
    if not f then
      return nil
    end
    local s = f:read("*a")
    f:close()
    return s
  end

  local function pid_of(name)
    return tonumber(read(file(name .. ".pid")) or "")
  end

  local function alive(pid)
    return succeeded(os.execute("kill -0 " .. pid .. " 2>/dev/null"))
  end

  local function launch(name, pause_after)
    local args = {
      "lua5.4", "spec/helpers/bot_worker.lua", shell_quote(root), shell_quote(standin.url()), PORT, name,
      MESSAGES, BATCH, pause_after or 0, LOCK_TTL,
    }
    local inner = "echo $$ > " .. shell_quote(file(name .. ".pid")) .. "; exec " .. table.concat(args, " ")
      .. " >" .. shell_quote(file(name .. ".log")) .. " 2>&1"
    assert.is_true(succeeded(os.execute("cd " .. shell_quote(root) .. " && sh -c " .. shell_quote(inner) .. " &")))
    started[#started + 1] = name
  end

  -- Waits (bounded) until the bot's key is set; raises with its log when it is not.
  local function wait_for(key, name)
    for _ = 1, WAIT_TRIES do
      if server:call("GET", key) ~= nil then
        return server:call("GET", key)
      end
      socket.sleep(0.1)
    end
    error(key .. " never set; log of " .. name .. ":\n" .. tostring(read(file(name .. ".log"))))
  end

  local function wait_exit(name)
    local pid = pid_of(name)
    for _ = 1, WAIT_TRIES do
      if not alive(pid) then
        return
      end
      socket.sleep(0.1)
    end
    error(name .. " did not exit")
  end

  local function handled()
    local who, msgids = {}, {}
    for i, entry in ipairs(server:call("LRANGE", "bots:handled", "0", "-1")) do
      who[i], msgids[i] = entry:match("^(%S+) (%S+)$")
    end
    return who, msgids
  end

  local function queued_ids()
    local ids = {}
    for i = 1, MESSAGES do
      ids[i] = "m" .. i
    end
    return ids
  end

  setup(function()
    root = repo_root()
    standin.start()
    server = redis.start(PORT)
  end)

  teardown(function()
    for _, name in ipairs(started) do
      local pid = pid_of(name)
      if pid and alive(pid) then
        os.execute("kill -9 " .. pid)
      end
    end
    server:stop()
  end)

  before_each(function()
    standin.reset()
    server:flush()
    local messages = {}
    for i = 1, MESSAGES do
      messages[i] = {
        msgid = "m" .. i, open_kfid = "wkBOTS", external_userid = "wmCUSTOMER" .. (i % 5), send_time = 1700000000 + i,
        origin = 3, msgtype = "text", text = { content = "message " .. i },
      }
    end
    assert.are.equal(MESSAGES, standin.sync({ messages = messages, page_size = PAGE_SIZE }))
  end)

  it("handles each of 200 messages exactly once, in order", function()
    launch("A")
    launch("B")
    assert.are.equal("done", wait_for("bots:done:A", "A"))
    assert.are.equal("done", wait_for("bots:done:B", "B"))
    wait_exit("A")
    wait_exit("B")
    local _, msgids = handled()
    assert.are.same(queued_ids(), msgids)
    assert.are.equal("0:SC200", server:call("GET", "wechat:kf:cursor:wwCORP:wkBOTS"))
    assert.are.equal(0, server:call("EXISTS", "wechat:kf:cursor:wwCORP:wkBOTS:lock"))
  end)

  it("loses nothing and repeats nothing when a bot is killed mid-page holding the lock and restarted", function()
    -- B1 handles 40 messages (5 pages of 7, then 5 of the 6th page), then stops before handling the 41st
    launch("B1", 40)
    assert.are.equal("1", wait_for("bots:paused:B1", "B1"))
    assert.are.equal("5:SC35:m40", server:call("GET", "wechat:kf:cursor:wwCORP:wkBOTS"))
    assert.are.equal(1, server:call("EXISTS", "wechat:kf:cursor:wwCORP:wkBOTS:lock"))
    launch("A")
    assert.is_true(succeeded(os.execute("kill -9 " .. pid_of("B1"))))
    wait_exit("B1")
    launch("B2")
    assert.are.equal("done", wait_for("bots:done:A", "A"))
    assert.are.equal("done", wait_for("bots:done:B2", "B2"))
    wait_exit("A")
    wait_exit("B2")

    local who, msgids = handled()
    assert.are.same(queued_ids(), msgids)
    local count = {}
    for _, name in ipairs(who) do
      count[name] = (count[name] or 0) + 1
    end
    assert.are.equal(40, count.B1)
    assert.are.equal(MESSAGES - 40, (count.A or 0) + (count.B2 or 0))
    for i = 1, 40 do
      assert.are.equal("B1", who[i])
    end
    assert.are.equal("0:SC200", server:call("GET", "wechat:kf:cursor:wwCORP:wkBOTS"))
    -- the stand-in saw the 6th page asked for again, from its start cursor, after the kill
    local from_sc35 = 0
    for _, body in ipairs(standin.bodies("/cgi-bin/kf/sync_msg")) do
      if body.cursor == "SC35" then
        from_sc35 = from_sc35 + 1
      end
    end
    assert.are.equal(2, from_sc35)
  end)
end)
