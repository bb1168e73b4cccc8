-- kf.sync_all against the WeCom stand-in (pages, empty pages, scripted errors) with its cursor in a memory store
-- and in a real redis-server (spec/helpers/redis.lua): every message once, in order, across pages and across
-- pulls that stop half way.
local cjson = require "cjson"
local errors = require "wechat.work.errors"
local kf = require "wechat.work.kf.message"
local memory_store = require "wechat.work.store.memory"
local redis = require "helpers.redis"
local redis_store = require "wechat.work.store.redis"
local socket = require "socket"
local standin = require "helpers.standin"
local sync = require "wechat.work.kf.sync"
local work = require "wechat.work"

local PORT = 16392
local SYNC = "/cgi-bin/kf/sync_msg"
local KEY = "wechat:kf:cursor:wwCORP:wkA"

local function new_client()
  return work.client{ corp_id = "wwCORP", agents = { kf = { secret = "KF_SECRET" } }, base_url = standin.url() }
end

local function text(i, kfid)
  return {
    msgid = "m" .. i, open_kfid = kfid or "wkA", external_userid = "wmCUSTOMER", send_time = 1700000000 + i,
    origin = 3, msgtype = "text", text = { content = "message " .. i },
  }
end

-- Queues messages m<from>..m<to> for wkA.
local function queue(from, to, page_size, empty_pages)
  local messages = {}
  for i = from, to do
    messages[#messages + 1] = text(i)
  end
  return standin.sync({ messages = messages, page_size = page_size, empty_pages = empty_pages })
end

local function ids(from, to)
  local out = {}
  for i = from, to do
    out[#out + 1] = "m" .. i
  end
  return out
end

describe("kf.sync_all", function()
  local server

  setup(function()
    standin.start()
    server = redis.start(PORT)
  end)

  teardown(function()
    server:stop()
  end)

  before_each(function()
    standin.reset()
    server:flush()
  end)

  for _, kind in ipairs({ "memory", "redis" }) do
    describe("with a " .. kind .. " cursor store", function()
      local client, store

      before_each(function()
        client = new_client()
        store = kind == "memory" and memory_store.new() or redis_store.new{ port = PORT }
      end)

      local function pull_ids(opts, stop_at)
        opts = opts or {}
        opts.open_kfid = opts.open_kfid or "wkA"
        opts.cursor_store = store
        local pull = kf.sync_all(client, "kf", opts)
        local got = {}
        for msg in pull do
          if stop_at and #got == stop_at then
            break
          end
          got[#got + 1] = msg.msgid
        end
        return got, pull
      end

      it("pulls every message across pages, empty pages with has_more 1 included", function()
        assert.are.equal(10, queue(1, 10, 3, 2))
        local got, pull = pull_ids()
        assert.are.same(ids(1, 10), got)
        assert.is_nil(pull.err)
        assert.are.equal("SC10", pull.cursor)
        assert.are.equal(10, pull.handled)
        assert.are.equal(6, pull.pages)
        assert.are.same({ "-", "SC0", "SC0", "SC3", "SC6", "SC9" }, standin.sync_cursors())
        assert.are.equal("0:SC10", store:get(KEY))
      end)

      it("sends token, limit, voice_format and open_kfid on every page", function()
        queue(1, 5, 100)
        local token = standin.sync_token("wkA") -- from the callback that told the bot to pull
        local got = pull_ids({ token = token, limit = 2, voice_format = 1 })
        assert.are.same(ids(1, 5), got)
        assert.are.same({
          { token = token, limit = 2, voice_format = 1, open_kfid = "wkA" },
          { token = token, limit = 2, voice_format = 1, open_kfid = "wkA", cursor = "SC2" },
          { token = token, limit = 2, voice_format = 1, open_kfid = "wkA", cursor = "SC4" },
        }, standin.bodies(SYNC))
      end)

      it("starts the next pull where the last one ended", function()
        queue(1, 4, 3)
        assert.are.same(ids(1, 4), (pull_ids()))
        queue(5, 6)
        local got, pull = pull_ids()
        assert.are.same(ids(5, 6), got)
        assert.are.equal("SC6", pull.cursor)
        assert.are.same({ "-", "SC3", "SC4" }, standin.sync_cursors())
        got = pull_ids()
        assert.are.same({}, got)
        assert.are.equal("0:SC6", store:get(KEY))
      end)

      it("after a break, hands the message in hand out again and nothing handled twice", function()
        queue(1, 10, 3)
        local first, pull = pull_ids(nil, 4)  -- m5 was in hand: not handled
        pull:close()
        assert.are.same(ids(1, 4), first)
        assert.are.equal(4, pull.handled)
        assert.are.equal("1:SC3:m4", store:get(KEY))
        local rest = pull_ids()
        assert.are.same(ids(5, 10), rest)
        -- the page of m4..m6 was asked for again from its start cursor, m4 skipped
        assert.are.same({ "-", "SC3", "SC3", "SC6", "SC9" }, standin.sync_cursors())
      end)

      it("after ack and break, goes on with the next message", function()
        queue(1, 10, 3)
        local pull = kf.sync_all(client, "kf", { open_kfid = "wkA", cursor_store = store })
        local got = {}
        for msg in pull do
          got[#got + 1] = msg.msgid
          if msg.msgid == "m5" then
            assert.are.same({ true }, { pull:ack() })
            break
          end
        end
        pull:close()
        assert.are.equal("2:SC3:m5", store:get(KEY))
        -- the ack of the last message of a page moves on to the next cursor
        pull = kf.sync_all(client, "kf", { open_kfid = "wkA", cursor_store = store })
        got[#got + 1] = pull().msgid
        assert.are.same({ true }, { pull:ack() })
        pull:close()
        assert.are.equal("0:SC6", store:get(KEY))
        local rest = pull_ids()
        for _, id in ipairs(rest) do
          got[#got + 1] = id
        end
        assert.are.same(ids(1, 10), got)
      end)

      -- WeCom need not answer one cursor with the same page twice: the stand-in is scripted to answer the resumed
      -- cursor SC3 with another page than the first time ([m4, m5, m6]), after m4 was handled and m5 was in hand.
      local function resume_with(page, next_cursor)
        queue(1, 10, 3)
        local first, pull = pull_ids(nil, 4)
        pull:close()
        assert.are.same(ids(1, 4), first)
        assert.are.equal("1:SC3:m4", store:get(KEY))
        local list = {}
        for i, id in ipairs(page) do
          list[i] = text(tonumber(id:sub(2)))
        end
        standin.script(SYNC, { status = 200, body = '{"errcode":0,"errmsg":"ok","next_cursor":"' .. next_cursor
          .. '","has_more":1,"msg_list":' .. cjson.encode(list) .. '}' })
        local rest
        rest, pull = pull_ids()
        assert.is_nil(pull.err)
        local sent = standin.sync_cursors()
        assert.are.same({ "-", "SC3", "SC3", next_cursor }, { sent[1], sent[2], sent[3], sent[4] })
        assert.are.equal("0:SC10", store:get(KEY))
        return rest
      end

      it("resumes after the last handled msgid when the page of its cursor starts earlier and is longer", function()
        assert.are.same(ids(5, 10), resume_with({ "m2", "m3", "m4", "m5", "m6", "m7" }, "SC7"))
      end)

      it("resumes with the whole page when the page of its cursor no longer holds the last handled msgid", function()
        -- m4 gone from the page: nothing after it is skipped
        assert.are.same(ids(5, 10), resume_with({ "m5", "m6" }, "SC6"))
      end)

      it("errs towards handing out again: a page without the msgid is handed out whole, handled ones too", function()
        assert.are.same({ "m3", "m5", "m6", "m7", "m8", "m9", "m10" }, resume_with({ "m3", "m5", "m6" }, "SC6"))
      end)

      it("keeps cursors and msgids with ':', '%' and spaces apart in the stored state", function()
        local page = { text(1), text(2), text(3) }
        page[1].msgid, page[2].msgid = "id:1 %x", "id:2 %y"
        standin.script(SYNC, { status = 200, body = '{"errcode":0,"errmsg":"ok","next_cursor":"c:1%","has_more":0,'
          .. '"msg_list":' .. cjson.encode(page) .. '}' })
        local pull = kf.sync_all(client, "kf", { open_kfid = "wkA", cursor_store = store })
        assert.are.equal("id:1 %x", pull().msgid)
        assert.are.equal("id:2 %y", pull().msgid)
        assert.are.same({ true }, { pull:close() })
        assert.are.equal("1::id%3A1%20%25x", store:get(KEY))
        -- the same page again: resumes after "id:1 %x"
        standin.script(SYNC, { status = 200, body = '{"errcode":0,"errmsg":"ok","next_cursor":"c:1%","has_more":0,'
          .. '"msg_list":' .. cjson.encode(page) .. '}' })
        local got = pull_ids()
        assert.are.same({ "id:2 %y", "m3" }, got)
        assert.are.equal("0:c%3A1%25", store:get(KEY))
        -- and from that cursor (sent as WeCom gave it) onwards
        standin.script(SYNC, { status = 200, body = '{"errcode":0,"errmsg":"ok","next_cursor":"c:1%","has_more":0,'
          .. '"msg_list":[]}' })
        assert.are.same({}, (pull_ids()))
        assert.are.equal("c:1%", standin.bodies(SYNC)[3].cursor)
      end)

      it("stops on an error on the 2nd page, the cursor left at the last handled message", function()
        queue(1, 10, 3)
        local pull = kf.sync_all(client, "kf", { open_kfid = "wkA", cursor_store = store })
        local got = {}
        for msg in pull do
          if #got == 0 then
            standin.script(SYNC, { errcode = 45009, errmsg = "api freq out of limit" })
          end
          got[#got + 1] = msg.msgid
        end
        assert.are.same(ids(1, 3), got)
        assert.is_true(errors.is(pull.err, errors.API))
        assert.are.equal(45009, pull.err.errcode)
        assert.are.equal("wechat: api error 45009 (api call frequency limit) in sync_msg", tostring(pull.err))
        assert.are.equal("SC3", pull.cursor)
        assert.are.equal(3, pull.handled)
        assert.are.equal("0:SC3", store:get(KEY))
        assert.is_nil(pull())
        local rest, again = pull_ids()
        assert.are.same(ids(4, 10), rest)
        assert.is_nil(again.err)
      end)

      it("stops on an answer without next_cursor while has_more is 1", function()
        queue(1, 3, 3)
        standin.script(SYNC, { status = 200, body = '{"errcode":0,"errmsg":"ok","has_more":1,"msg_list":[]}' })
        local got, pull = pull_ids()
        assert.are.same({}, got)
        assert.are.equal("wechat: decode error: has_more without next_cursor in sync_msg", tostring(pull.err))
        assert.is_nil(store:get(KEY))
        assert.are.same(ids(1, 3), (pull_ids()))
      end)

      it("starts at the cursor it is given instead of the stored one; \"\" is the very start", function()
        queue(1, 9, 3)
        assert.are.same(ids(1, 9), (pull_ids()))
        assert.are.same(ids(7, 9), (pull_ids({ cursor = "SC6" })))
        assert.are.equal("0:SC9", store:get(KEY))
        assert.are.same(ids(1, 9), (pull_ids({ cursor = "" })))
      end)

      it("keeps one cursor per open_kfid", function()
        standin.sync({ messages = { text(1, "wkA"), text(2, "wkB"), text(3, "wkA"), text(4, "wkB") } })
        assert.are.same({ "m1", "m3" }, (pull_ids({ open_kfid = "wkA" })))
        assert.are.same({ "m2", "m4" }, (pull_ids({ open_kfid = "wkB" })))
        -- the stand-in's cursors count every queued message, as positions do
        assert.are.equal("0:SC4", store:get(KEY))
        assert.are.equal("0:SC4", store:get("wechat:kf:cursor:wwCORP:wkB"))
      end)

      it("refuses a malformed stored state", function()
        store:set(KEY, "SC3")
        local got, pull = pull_ids()
        assert.are.same({}, got)
        assert.are.equal("wechat: store error: malformed cursor state under " .. KEY .. " in sync_all",
          tostring(pull.err))
        assert.are.equal(0, #standin.requests(SYNC))
      end)

      it("hands events and unknown types over untouched", function()
        local messages = {
          {
            msgid = "e1", open_kfid = "wkA", external_userid = "wmC", send_time = 1, origin = 4, msgtype = "event",
            event = { event_type = "enter_session", open_kfid = "wkA", external_userid = "wmC", scene = "s1",
              scene_param = "p", welcome_code = "WELCOME", wechat_channels = { nickname = "n", scene = 1 } },
          },
          {
            msgid = "e2", open_kfid = "wkA", external_userid = "wmC", send_time = 2, origin = 4, msgtype = "event",
            event = { event_type = "msg_send_fail", open_kfid = "wkA", external_userid = "wmC",
              fail_msgid = "F1", fail_type = 4 },
          },
          {
            msgid = "e3", open_kfid = "wkA", external_userid = "wmC", send_time = 3, origin = 4, msgtype = "event",
            event = { event_type = "session_status_change", open_kfid = "wkA", external_userid = "wmC",
              change_type = 2, old_servicer_userid = "a", new_servicer_userid = "b", msg_code = "MC" },
          },
          {
            msgid = "e4", open_kfid = "wkA", external_userid = "wmC", send_time = 4, origin = 4, msgtype = "event",
            event = { event_type = "user_recall_msg", open_kfid = "wkA", external_userid = "wmC",
              recall_msgid = "m1" },
          },
          {
            msgid = "e5", open_kfid = "wkA", send_time = 5, origin = 4, msgtype = "event",
            event = { event_type = "servicer_status_change", open_kfid = "wkA", servicer_userid = "zhangsan",
              status = 2, stop_type = 1 },
          },
          {
            msgid = "e6", open_kfid = "wkA", external_userid = "wmC", send_time = 6, origin = 4, msgtype = "event",
            event = { event_type = "servicer_recall_msg", open_kfid = "wkA", external_userid = "wmC",
              recall_msgid = "r1", servicer_userid = "zhangsan" },
          },
          {
            msgid = "x1", open_kfid = "wkA", external_userid = "wmC", send_time = 7, origin = 3,
            msgtype = "hologram",
            hologram = { frames = { 1, 2, 3 }, codec = "h", nested = { deep = { deeper = true } } },
            brand_new_field = "kept",
          },
        }
        standin.sync({ messages = messages, page_size = 2 })
        local pull = kf.sync_all(client, "kf", { open_kfid = "wkA", cursor_store = store })
        local got = {}
        for msg in pull do
          got[#got + 1] = msg
        end
        assert.is_nil(pull.err)
        assert.are.same(messages, got)
        assert.are.equal("WELCOME", got[1].event.welcome_code)
      end)
    end)
  end

  describe("with its default store", function()
    it("keeps the cursor in a memory store on the client", function()
      local client = new_client()
      queue(1, 5, 2)
      local got = {}
      for msg in kf.sync_all(client, "kf", { open_kfid = "wkA" }) do
        got[#got + 1] = msg.msgid
      end
      assert.are.same(ids(1, 5), got)
      assert.are.equal("0:SC5", client.kf_cursor_store:get(KEY))
      queue(6, 6)
      got = {}
      for msg in kf.sync_all(client, "kf", { open_kfid = "wkA" }) do
        got[#got + 1] = msg.msgid
      end
      assert.are.same({ "m6" }, got)
      assert.is_nil(client.kf_cursor_store.lock)
      -- another client (process) has a cursor of its own
      got = {}
      for msg in kf.sync_all(new_client(), "kf", { open_kfid = "wkA" }) do
        got[#got + 1] = msg.msgid
      end
      assert.are.same(ids(1, 6), got)
    end)

    it("pulls every KF account under the key '*' without open_kfid", function()
      local client = new_client()
      standin.sync({ messages = { text(1, "wkA"), text(2, "wkB") } })
      local pull = kf.sync_all(client, "kf")
      local got = {}
      for msg in pull do
        got[#got + 1] = msg.msgid
      end
      assert.are.same({ "m1", "m2" }, got)
      assert.are.equal("0:SC2", client.kf_cursor_store:get("wechat:kf:cursor:wwCORP:*"))
      assert.are.same({ {} }, standin.bodies(SYNC))
      assert.are.equal("wechat:kf:cursor:wwCORP:*", sync.cursor_key(client))
    end)
  end)

  describe("with the lock of a Redis store", function()
    local LOCK = KEY .. ":lock"

    it("holds the lock while pulling and releases it at the end", function()
      local client, store = new_client(), redis_store.new{ port = PORT }
      queue(1, 4, 2)
      local pull = kf.sync_all(client, "kf", { open_kfid = "wkA", cursor_store = store, lock_ttl = 30 })
      local held = {}
      for _ in pull do
        held[#held + 1] = server:call("EXISTS", LOCK)
      end
      assert.are.same({ 1, 1, 1, 1 }, held)
      assert.are.equal(0, server:call("EXISTS", LOCK))
      assert.is_nil(pull.err)
    end)

    it("keeps a second puller out: it ends with a timeout error and pulls nothing", function()
      local store = redis_store.new{ port = PORT }
      queue(1, 4, 2)
      local first = kf.sync_all(new_client(), "kf", { open_kfid = "wkA", cursor_store = store })
      assert.are.equal("m1", first().msgid)
      local second = kf.sync_all(new_client(), "kf", { open_kfid = "wkA", cursor_store = redis_store.new{ port = PORT },
        lock_timeout = 0 })
      assert.is_nil(second())
      assert.are.equal("timeout", second.err.reason)
      assert.are.equal("wechat: store error: lock " .. KEY .. " still held by another after 0s in sync_all",
        tostring(second.err))
      assert.are.equal(1, #standin.requests(SYNC))
      local rest = {}
      for msg in first do
        rest[#rest + 1] = msg.msgid
      end
      assert.are.same(ids(2, 4), rest)
      assert.are.equal(0, server:call("EXISTS", LOCK))
    end)

    it("releases the lock on an error and on close", function()
      local store = redis_store.new{ port = PORT }
      queue(1, 4, 2)
      standin.script(SYNC, { errcode = -1, errmsg = "system busy" })
      local pull = kf.sync_all(new_client(), "kf", { open_kfid = "wkA", cursor_store = store })
      assert.is_nil(pull())
      assert.are.equal("wechat: api error -1 (system busy) in sync_msg", tostring(pull.err))
      assert.are.equal(0, server:call("EXISTS", LOCK))
      pull = kf.sync_all(new_client(), "kf", { open_kfid = "wkA", cursor_store = store })
      assert.are.equal("m1", pull().msgid)
      assert.are.equal(1, server:call("EXISTS", LOCK))
      assert.are.same({ true }, { pull:close() })
      assert.are.equal(0, server:call("EXISTS", LOCK))
      assert.is_nil(pull())
      assert.are.same({ true }, { pull:close() })
      -- m1 was in hand when closed: it comes again
      assert.are.equal("m1", kf.sync_all(new_client(), "kf", { open_kfid = "wkA", cursor_store = store,
        lock = false })().msgid)
    end)

    it("releases the lock when a for loop over sync_all is left by break (Lua 5.4: the closing value)", function()
      local store = redis_store.new{ port = PORT }
      queue(1, 4, 2)
      local first
      for msg in kf.sync_all(new_client(), "kf", { open_kfid = "wkA", cursor_store = store }) do -- luacheck: ignore 512
        first = msg
        break
      end
      assert.are.equal("m1", first.msgid)
      if _VERSION == "Lua 5.4" then
        assert.are.equal(0, server:call("EXISTS", LOCK))
      else
        -- LuaJIT has no closing value: the lock stays until its ttl or pull:close()
        assert.are.equal(1, server:call("EXISTS", LOCK))
      end
    end)

    -- Waits (bounded) until the lock's ttl has run out in Redis.
    local function wait_expired()
      for _ = 1, 200 do
        if server:call("EXISTS", LOCK) == 0 then
          return
        end
        socket.sleep(0.02)
      end
      error("the lock never expired")
    end

    it("renews the lock with every cursor write, and extends it before each page", function()
      local store = redis_store.new{ port = PORT }
      queue(1, 4, 2)
      local pull = kf.sync_all(new_client(), "kf", { open_kfid = "wkA", cursor_store = store, lock_ttl = 100 })
      assert.are.equal("m1", pull().msgid)
      -- as if time had passed: 50 s left of the lock's 100
      server:call("PEXPIRE", LOCK, 50000)
      assert.are.equal("m2", pull().msgid)    -- m1 recorded: the lock renewed
      assert.is_true(server:call("PTTL", LOCK) > 50000)
      assert.is_true(pull:ack())
      server:call("PEXPIRE", LOCK, 50000)
      assert.are.equal("m3", pull().msgid)    -- the next page fetched: the lock extended first
      assert.is_true(server:call("PTTL", LOCK) > 50000)
      assert.are.equal(2, #standin.requests(SYNC))
      assert.is_true(pull:close())
      assert.are.equal(0, server:call("EXISTS", LOCK))
    end)

    it("refuses the cursor write of a puller whose lock ran out and was taken over: it stops, 'lost'", function()
      local store = redis_store.new{ port = PORT }
      queue(1, 6, 3)
      local slow = kf.sync_all(new_client(), "kf", { open_kfid = "wkA", cursor_store = store, lock_ttl = 30 })
      assert.are.equal("m1", slow().msgid)
      assert.are.equal("m2", slow().msgid)     -- m1 recorded; m2's handler now takes longer than the lock's ttl
      server:call("PEXPIRE", LOCK, 1)          -- as if those 30 s had passed (a short lock_ttl races a slow machine)
      wait_expired()
      -- meanwhile another puller takes the lock, hands out m2 and m3 and is in the middle of m4
      local other = kf.sync_all(new_client(), "kf", { open_kfid = "wkA",
        cursor_store = redis_store.new{ port = PORT }, lock_ttl = 30 })
      assert.are.same({ "m2", "m3", "m4" }, { other().msgid, other().msgid, other().msgid })
      assert.are.equal("0:SC3", store:get(KEY))
      -- the slow one's handler returns: its write of m2 would move the cursor back under the new holder
      assert.is_nil(slow())
      assert.are.equal("lost", slow.err.reason)
      assert.are.equal("wechat: store error: lock " .. KEY .. " lost: " .. KEY .. " not written in sync_all",
        tostring(slow.err))
      assert.are.equal(1, slow.handled)
      assert.are.equal("0:SC3", store:get(KEY))
      -- and it did not release the other's lock
      assert.are.equal(other.lock.token, server:call("GET", LOCK))
      local rest = {}
      for msg in other do
        rest[#rest + 1] = msg.msgid
      end
      assert.are.same(ids(5, 6), rest)
      assert.are.equal("0:SC6", store:get(KEY))
      assert.are.equal(0, server:call("EXISTS", LOCK))
    end)

    it("stops before the next page when its lock expired meanwhile", function()
      local store = redis_store.new{ port = PORT }
      queue(1, 4, 2)
      local pull = kf.sync_all(new_client(), "kf", { open_kfid = "wkA", cursor_store = store, lock_ttl = 30 })
      assert.are.equal("m1", pull().msgid)
      assert.are.equal("m2", pull().msgid)
      assert.is_true(pull:ack())
      server:call("PEXPIRE", LOCK, 1)          -- as if those 30 s had passed (0.1 s ran out under ASan before m1)
      wait_expired()
      assert.is_nil(pull())
      assert.are.equal("wechat: store error: lock " .. KEY .. " had expired in sync_all", tostring(pull.err))
      assert.are.equal("expired", pull.err.reason)
      assert.are.equal(2, pull.handled)
      assert.are.equal("0:SC2", store:get(KEY))
      assert.are.equal(1, #standin.requests(SYNC))
    end)

    it("reports a Redis it cannot reach as the error, with no request made", function()
      local pull = kf.sync_all(new_client(), "kf", { open_kfid = "wkA",
        cursor_store = redis_store.new{ port = PORT + 10 } })
      assert.is_nil(pull())
      assert.are.equal("wechat: store error: cannot connect to redis 127.0.0.1:" .. (PORT + 10)
        .. ": connection refused in sync_all", tostring(pull.err))
      assert.are.equal(0, #standin.requests(SYNC))
    end)
  end)

  describe("arguments", function()
    local client

    before_each(function()
      client = new_client()
    end)

    local function message_of(...)
      local ok, err = pcall(kf.sync_all, ...)
      assert.is_false(ok)
      return err
    end

    it("raise naming the argument", function()
      assert.are.equal("bad argument #1 to 'sync_all' (wechat.work client expected, got no value)", message_of())
      assert.are.equal("bad argument #2 to 'sync_all' (agent name expected, got number)", message_of(client, 1))
      assert.are.equal("bad argument #2 to 'sync_all' (unknown agent 'nobody')", message_of(client, "nobody"))
      assert.are.equal("bad argument #3 to 'sync_all' (table expected, got string)", message_of(client, "kf", "x"))
      assert.are.equal("bad argument #3 to 'sync_all' (unknown option 'cursors')",
        message_of(client, "kf", { cursors = "x" }))
      assert.are.equal("bad argument #3 to 'sync_all' (cursor: at most 64 bytes, got 65)",
        message_of(client, "kf", { cursor = ("c"):rep(65) }))
      assert.are.equal("bad argument #3 to 'sync_all' (token: at most 128 bytes, got 129)",
        message_of(client, "kf", { token = ("t"):rep(129) }))
      assert.are.equal("bad argument #3 to 'sync_all' (token: non-empty string expected, got empty string)",
        message_of(client, "kf", { token = "" }))
      assert.are.equal("bad argument #3 to 'sync_all' (open_kfid: non-empty string expected, got number)",
        message_of(client, "kf", { open_kfid = 1 }))
      assert.are.equal("bad argument #3 to 'sync_all' (limit: integer 1..1000 expected, got 0)",
        message_of(client, "kf", { limit = 0 }))
      assert.are.equal("bad argument #3 to 'sync_all' (limit: integer 1..1000 expected, got 1001)",
        message_of(client, "kf", { limit = 1001 }))
      assert.are.equal("bad argument #3 to 'sync_all' (voice_format: 0 or 1 expected, got 2)",
        message_of(client, "kf", { voice_format = 2 }))
      assert.are.equal("bad argument #3 to 'sync_all' (cursor_store: store with get and set expected, got string)",
        message_of(client, "kf", { cursor_store = "redis" }))
      assert.are.equal("bad argument #3 to 'sync_all' (lock: the cursor_store has no lock)",
        message_of(client, "kf", { cursor_store = memory_store.new(), lock = true }))
      assert.are.equal("bad argument #3 to 'sync_all' (lock_ttl: positive number expected, got 0)",
        message_of(client, "kf", { lock_ttl = 0 }))
      assert.are.equal("bad argument #3 to 'sync_all' (lock_timeout: non-negative number expected, got -1)",
        message_of(client, "kf", { lock_timeout = -1 }))
      assert.are.equal(0, #standin.requests())
    end)
  end)
end)
