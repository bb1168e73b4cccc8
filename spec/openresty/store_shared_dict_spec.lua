-- wechat.work.store.shared_dict as a cursor store, inside a real nginx with 2 workers: writes that never evict,
-- a lock that only its holder extends or writes under, the default lock ttl, and kf.sync_all on it against the
-- WeCom stand-in: the cursor saved per open_kfid after each message and page, resumed by a later request and
-- after a reload, extended while pulling, and a puller whose lock ran out refused its cursor write.
local cjson = require "cjson"
local nginx = require "helpers.nginx"
local standin = require "helpers.standin"

local PORT = 18380
local KEY_A = "wechat:kf:cursor:wwCORP:wkA"
local KEY_B = "wechat:kf:cursor:wwCORP:wkB"

local HTTP = [[
    lua_shared_dict cursors 1m;
    lua_shared_dict tokens 1m;
    lua_shared_dict tiny 64k;
    init_by_lua_block {
      local cjson = require "cjson"
      local kf = require "wechat.work.kf.message"
      local shared_dict = require "wechat.work.store.shared_dict"
      local client = require("wechat.work").client{ corp_id = "wwCORP", agents = { kf = { secret = "KF_SECRET" } },
        base_url = "@URL@", timeout = 5, shared_dict = "tokens" }

      local function show(...)
        local out = {}
        for i = 1, select("#", ...) do
          local v = select(i, ...)
          if type(v) == "table" then
            v = v.kind and (v.kind .. "|" .. tostring(v.reason) .. "|" .. v.message) or "lock"
          end
          out[i] = tostring(v)
        end
        return table.concat(out, ", ")
      end

      local function raised(fn, ...)
        local ok, err = pcall(fn, ...)
        return ok and "no error" or (tostring(err):gsub("^[^:]+:%d+: ", ""))
      end

      -- seconds left of key's ttl in dict, as "over N" / "at most N"
      local function left(dict, key, n)
        local ttl = dict:ttl(key)
        if ttl == 0 then
          return "no expiry"
        end
        return ttl and (ttl > n and "over " or "at most ") .. n or "gone"
      end

      local function wait_gone(dict, key)
        for _ = 1, 200 do
          if dict:get(key) == nil then
            return true
          end
          ngx.sleep(0.02)
        end
        return false
      end

      SPEC = {}

      -- A full dict: set and lock fail, nothing is evicted.
      function SPEC.full()
        local dict = ngx.shared.tiny
        dict:flush_all()
        -- fillers of the cursor's own key and value sizes, so that no slot of its size is left
        local key, value = "wechat:kf:cursor:wwCORP:wkA", "0:" .. ("C"):rep(60)
        local function filler(i)
          return string.format("filler:%021d", i)
        end
        local n = 0
        while dict:safe_set(filler(n), value) do
          n = n + 1
        end
        -- and of a lock's sizes ("k#lock", "<pid>:<serial>:<time>")
        local small = 0
        while dict:safe_set(string.format("z%05d", small), ("1"):rep(24)) do
          small = small + 1
        end
        local store = shared_dict.new("tiny")
        local out = {}
        out[#out + 1] = show(store:set(key, value))
        out[#out + 1] = show(store:lock("k", { timeout = 0 }))
        local kept = 0
        for i = 0, n - 1 do
          if dict:get(filler(i)) == value then
            kept = kept + 1
          end
        end
        out[#out + 1] = kept == n and n > 10 and "all kept" or (kept .. " of " .. n .. " kept")
        -- once there is room again, it writes
        dict:delete(filler(0))
        out[#out + 1] = show(store:set(key, value))
        out[#out + 1] = show(store:get(key) == value)
        return out
      end

      -- Locks: the default ttl, extend and set only by the holder.
      function SPEC.lock()
        local dict = ngx.shared.cursors
        dict:flush_all()
        local store = shared_dict.new("cursors")
        local out = {}
        local say = function(line) out[#out + 1] = line end
        local lock = store:lock("k")
        say(left(dict, "k#lock", 140) .. ", " .. left(dict, "k#lock", 150))
        say(show(lock:unlock()))
        lock = shared_dict.new("cursors", { lock_ttl = 400 }):lock("k")
        say(left(dict, "k#lock", 390))
        say(show(lock:unlock()))

        lock = store:lock("k", { ttl = 10 })
        say(show(lock:extend(100)))
        say(left(dict, "k#lock", 90))
        dict:expire("k#lock", 50)
        say(show(lock:extend()))
        say(left(dict, "k#lock", 90))
        -- a write under the lock renews it
        dict:expire("k#lock", 50)
        say(show(lock:set("cursor", "1:SC3:m4")))
        say(show(dict:get("cursor")) .. ", " .. left(dict, "cursor", 0) .. ", " .. left(dict, "k#lock", 90))
        -- the lock ran out and another worker took it
        dict:set("k#lock", "another", 30)
        say(show(lock:extend(100)))
        say(show(lock:set("cursor", "2:SC3:m5")))
        say(show(dict:get("cursor")) .. ", " .. show(dict:get("k#lock")) .. ", " .. left(dict, "k#lock", 30))
        say(show(lock:unlock()))
        dict:delete("k#lock")
        -- unlocked
        lock = store:lock("k", { ttl = 10 })
        say(show(lock:unlock()))
        say(show(lock:extend()))
        say(show(lock:set("cursor", "x")))
        say(show(dict:get("cursor")))
        say(raised(lock.extend, lock, 0))
        say(raised(shared_dict.new, "cursors", { lock_ttl = 0 }))
        say(raised(shared_dict.new, "cursors", 5))
        return out
      end

      -- sync_all over the store: after each message the state seen in the dict; stops after `max` (acked).
      function SPEC.pull(kfid, max)
        local dict = ngx.shared.cursors
        local key = "wechat:kf:cursor:wwCORP:" .. kfid
        local pull = kf.sync_all(client, "kf", { open_kfid = kfid, cursor_store = shared_dict.new("cursors") })
        local got = {}
        for msg in pull do
          got[#got + 1] = { msg.msgid, dict:get(key) or "none", dict:get(key .. "#lock") and "locked" or "free" }
          if #got == max then
            pull:ack()
            break
          end
        end
        pull:close()
        return { got = got, state = dict:get(key), err = pull.err and tostring(pull.err),
          lock = dict:get(key .. "#lock") or "released" }
      end

      -- The lock's ttl while pulling: set down to 50 s, then a cursor write and a page fetch each set it back.
      function SPEC.extend()
        local dict = ngx.shared.cursors
        local lock_key = "wechat:kf:cursor:wwCORP:wkA#lock"
        local pull = kf.sync_all(client, "kf", { open_kfid = "wkA", cursor_store = shared_dict.new("cursors"),
          lock_ttl = 100 })
        local out = {}
        out[#out + 1] = pull().msgid .. " " .. left(dict, lock_key, 90)
        dict:expire(lock_key, 50)
        out[#out + 1] = pull().msgid .. " " .. left(dict, lock_key, 90)    -- m1 written
        pull:ack()
        dict:expire(lock_key, 50)
        out[#out + 1] = pull().msgid .. " " .. left(dict, lock_key, 90)    -- the next page fetched
        out[#out + 1] = show(pull:close())
        out[#out + 1] = dict:get(lock_key) or "released"
        return out
      end

      -- Two stores on one dict in one worker: their lock owners differ, so one store's stale lock never
      -- releases the lock the other took after it expired.
      function SPEC.owners()
        local dict = ngx.shared.cursors
        dict:flush_all()
        local a, b = shared_dict.new("cursors"), shared_dict.new("cursors")
        local out = {}
        local la, lb = a:lock("x"), b:lock("y")
        out[1] = tostring(la.owner ~= lb.owner)
        la:unlock()
        lb:unlock()
        local stale = a:lock("k", { ttl = 0.05 })
        out[2] = tostring(wait_gone(dict, "k#lock"))
        local fresh = b:lock("k")
        out[3] = show(stale:unlock())
        out[4] = tostring(dict:get("k#lock") == fresh.owner)
        return out
      end

      -- A puller whose lock runs out while it handles m2; another takes over; the first one's write is refused.
      function SPEC.takeover()
        local dict = ngx.shared.cursors
        local key = "wechat:kf:cursor:wwCORP:wkA"
        local store = shared_dict.new("cursors")
        local out = {}
        local say = function(line) out[#out + 1] = line end
        local slow = kf.sync_all(client, "kf", { open_kfid = "wkA", cursor_store = store, lock_ttl = 30 })
        say(slow().msgid .. " " .. slow().msgid)
        -- as if those 30 s had passed (a short lock_ttl races a slow machine)
        dict:expire(key .. "#lock", 0.001)
        say(tostring(wait_gone(dict, key .. "#lock")))
        local other = kf.sync_all(client, "kf", { open_kfid = "wkA", cursor_store = store, lock_ttl = 30 })
        say(other().msgid .. " " .. other().msgid .. " " .. other().msgid)
        say(dict:get(key))
        say(show((slow())))
        say(show(slow.err))
        say(slow.handled .. " " .. dict:get(key))
        say(tostring(dict:get(key .. "#lock") == other.lock.owner))
        local rest = {}
        for msg in other do
          rest[#rest + 1] = msg.msgid
        end
        say(table.concat(rest, " ") .. " " .. dict:get(key) .. " " .. (dict:get(key .. "#lock") or "released"))
        return out
      end
    }
]]

local SERVER = [[
    location = /full { content_by_lua_block { ngx.print(table.concat(SPEC.full(), "\n")) } }
    location = /lock { content_by_lua_block { ngx.print(table.concat(SPEC.lock(), "\n")) } }
    location = /extend { content_by_lua_block { ngx.print(table.concat(SPEC.extend(), "\n")) } }
    location = /owners { content_by_lua_block { ngx.print(table.concat(SPEC.owners(), "\n")) } }
    location = /takeover { content_by_lua_block { ngx.print(table.concat(SPEC.takeover(), "\n")) } }
    location = /pull {
      content_by_lua_block {
        ngx.print(require("cjson").encode(SPEC.pull(ngx.var.arg_kfid, tonumber(ngx.var.arg_max))))
      }
    }
    # the stand-in forgets its tokens on reset: so do the workers
    location = /flush {
      content_by_lua_block { ngx.shared.cursors:flush_all() ngx.shared.tokens:flush_all() ngx.print("ok") }
    }
]]

local app

local function lines(path)
  local status, body = app:request("GET", path)
  assert.are.equal(200, status, body)
  local out = {}
  for line in (body .. "\n"):gmatch("(.-)\n") do
    out[#out + 1] = line
  end
  return out
end

local function pull(kfid, max)
  local status, body = app:request("GET", "/pull?kfid=" .. kfid .. "&max=" .. (max or 0))
  assert.are.equal(200, status, body)
  return cjson.decode(body)
end

local function text(i, kfid)
  return { msgid = "m" .. i, open_kfid = kfid, external_userid = "wmC", send_time = 1700000000 + i, origin = 3,
    msgtype = "text", text = { content = "message " .. i } }
end

local function queue(from, to, kfid, page_size)
  local messages = {}
  for i = from, to do
    messages[#messages + 1] = text(i, kfid)
  end
  return standin.sync({ messages = messages, page_size = page_size })
end

describe("wechat.work.store.shared_dict as a cursor store #openresty", function()
  setup(function()
    standin.start()
    app = nginx.start{ name = "store-shared-dict", port = PORT, workers = 2,
      http = (HTTP:gsub("@URL@", standin.url())), server = SERVER }
  end)

  teardown(function()
    if app then
      app:stop()
    end
  end)

  before_each(function()
    standin.reset()
    assert.are.same({ 200, "ok" }, { app:request("GET", "/flush") })
  end)

  it("never evicts: a write to a full dict fails with a store error and every other key stays", function()
    assert.are.same({
      "nil, store|nil|lua_shared_dict 'tiny': set wechat:kf:cursor:wwCORP:wkA: no memory",
      "nil, store|nil|lua_shared_dict 'tiny': lock k: no memory",
      "all kept",
      "true",
      "true",
    }, lines("/full"))
  end)

  it("locks for 150 s by default, and only the holder extends or writes under its lock", function()
    assert.are.same({
      "over 140, at most 150",
      "true",
      "over 390",
      "true",
      "true",
      "over 90",
      "true",
      "over 90",
      "true",
      "1:SC3:m4, no expiry, over 90",
      "nil, store|expired|lua_shared_dict 'cursors': lock k is not held any more",
      "nil, store|lost|lua_shared_dict 'cursors': lock k lost: cursor not written",
      "1:SC3:m4, another, at most 30",
      "nil, store|expired|lua_shared_dict 'cursors': lock k is not held any more",
      "true",
      "nil, store|expired|lua_shared_dict 'cursors': lock k is not held any more",
      "nil, store|lost|lua_shared_dict 'cursors': lock k lost: cursor not written",
      "1:SC3:m4",
      "bad argument #1 to 'extend' (number > 0 or nil expected, got 0)",
      "bad argument #2 to 'new' (lock_ttl: number > 0 expected, got 0)",
      "bad argument #2 to 'new' (table or nil expected, got number)",
    }, lines("/lock"))
  end)

  it("gives each store its own lock owners: a stale lock of one never releases the other's", function()
    assert.are.same({
      "true",
      "true",
      "nil, store|expired|lua_shared_dict 'cursors': lock k is not held any more",
      "true",
    }, lines("/owners"))
  end)

  it("saves the cursor per open_kfid after each message and page, and resumes it in a later request", function()
    queue(1, 5, "wkA", 2)
    queue(6, 7, "wkB", 2)
    -- each message as it is handed out, with the state stored at that moment (the one before it recorded)
    assert.are.same({
      got = { { "m1", "none", "locked" }, { "m2", "1::m1", "locked" }, { "m3", "0:SC2", "locked" } },
      state = "1:SC2:m3",
      lock = "released",
    }, pull("wkA", 3))
    assert.are.same({
      got = { { "m6", "none", "locked" }, { "m7", "1::m6", "locked" } },
      state = "0:SC7",
      lock = "released",
    }, pull("wkB"))
    assert.are.same({
      got = { { "m4", "1:SC2:m3", "locked" }, { "m5", "0:SC4", "locked" } },
      state = "0:SC7",
      lock = "released",
    }, pull("wkA"))
    assert.are.same({ "wkA -", "wkA SC2", "wkB -", "wkA SC2", "wkA SC4" }, standin.sync_cursors(true))
  end)

  it("keeps the cursors through a reload (SIGHUP: new workers, the same dict)", function()
    queue(1, 4, "wkA", 2)
    queue(5, 6, "wkB", 2)
    assert.are.same({ "m1", "m2", "m3" }, (function()
      local ids = {}
      for i, g in ipairs(pull("wkA", 3).got) do
        ids[i] = g[1]
      end
      return ids
    end)())
    assert.are.equal("0:SC6", pull("wkB").state)
    local before = app:worker_pids()
    assert.are_not.same(before, app:reload())
    local after = pull("wkA")
    assert.are.same({ { "m4", "1:SC2:m3", "locked" } }, after.got)
    assert.are.equal("0:SC4", after.state)
    assert.are.same({ got = {}, state = "0:SC6", lock = "released" }, pull("wkB"))
    assert.are.same({ "wkA -", "wkA SC2", "wkB -", "wkA SC2", "wkB SC6" }, standin.sync_cursors(true))
  end)

  it("has sync_all extend its lock: each cursor write and each page fetch give it its ttl again", function()
    queue(1, 4, "wkA", 2)
    assert.are.same({ "m1 over 90", "m2 over 90", "m3 over 90", "true", "released" }, lines("/extend"))
  end)

  it("refuses the cursor write of a puller whose lock ran out and was taken over: it stops, 'lost'", function()
    queue(1, 6, "wkA", 3)
    local key = KEY_A
    assert.are.same({
      "m1 m2",
      "true",
      "m2 m3 m4",
      "0:SC3",
      "nil",
      "store|lost|lua_shared_dict 'cursors': lock " .. key .. " lost: " .. key .. " not written",
      "1 0:SC3",
      "true",
      "m5 m6 0:SC6 released",
    }, lines("/takeover"))
    assert.is_nil(KEY_B:find("wkA"))
  end)
end)
