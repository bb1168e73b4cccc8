-- One access token for all workers: wechat.work.store.shared_dict behind `shared_dict = "wechat"`. A real nginx
-- with 2 workers (reuseport, so the kernel spreads connections over both) takes bursts of 200 concurrent requests
-- from curl --parallel; the WeCom stand-in counts the gettoken calls.
local nginx = require "helpers.nginx"
local standin = require "helpers.standin"

local PORT = 18364
local GETTOKEN = "/cgi-bin/gettoken"
local SEND_MSG = "/cgi-bin/kf/send_msg"

local HTTP = [[
    lua_shared_dict wechat 1m;
    lua_shared_dict results 1m;
    init_by_lua_block {
      SPEC_CLIENT = require("wechat.work").client{ corp_id = "wwCORP", agents = { kf = { secret = "KF_SECRET" } },
        base_url = "@URL@", timeout = 5, shared_dict = "wechat" }
      -- waits 0.2 s at most for another caller's gettoken
      SPEC_IMPATIENT = require("wechat.work").client{ corp_id = "wwCORP", agents = { kf = { secret = "KF_SECRET" } },
        base_url = "@URL@", timeout = 5, shared_dict = "wechat", token_wait = 0.2 }
    }
]]

local SERVER = [[
    location = /send {
      content_by_lua_block {
        local kf = require "wechat.work.kf.message"
        local i = ngx.var.arg_i
        local client = ngx.var.arg_client == "impatient" and SPEC_IMPATIENT or SPEC_CLIENT
        -- WeCom takes 5 sends per customer message: request i goes to customer i, who wrote (before_each)
        local res, err = kf.send_text(client, "kf", "wmCUSTOMER" .. i, "wkKF", "burst " .. i, { msgid = "b" .. i })
        ngx.header["X-Worker"] = ngx.worker.pid()
        if not res then
          ngx.status = 500
          ngx.print(err.kind, "|", tostring(err.reason), "|", err.op, "|", tostring(err))
          return
        end
        ngx.print(res.msgid)
      }
    }
    location = /forget_tokens {
      content_by_lua_block { ngx.shared.wechat:flush_all() ngx.print("ok") }
    }
    # the store on its own, as the cursor store will use it
    location = /store {
      content_by_lua_block {
        local shared_dict = require "wechat.work.store.shared_dict"
        local function raised(fn, ...)
          local ok, err = pcall(fn, ...)
          return ok and "no error" or (tostring(err):gsub("^[^:]+:%d+: ", ""))
        end
        local function show(...)
          local n, out = select("#", ...), {}
          for i = 1, n do
            local v = select(i, ...)
            out[i] = type(v) == "table" and (v.kind and (v.kind .. ": " .. v.message) or "lock") or tostring(v)
          end
          return table.concat(out, ", ")
        end
        local store = shared_dict.new("wechat")
        local out = {}
        local function say(line) out[#out + 1] = line end
        say(show(store:set("s:a", "1")))
        say(show(store:get("s:a")))
        say(show(store:delete("s:a", "2")))
        say(show(store:get("s:a")))
        say(show(store:delete("s:a", "1")))
        say(show(store:get("s:a")))
        say(show(store:set("s:b", "2", 0)))
        say(show(store:get("s:b")))
        say(show(store:set("s:c", 42, 60)))
        say(show(store:get("s:c")))
        say(show(store:delete("s:c")))
        say(show(store:get("s:c")))
        local first = store:lock("s:k", { ttl = 10 })
        say(show(first))
        say(show(store:lock("s:k", { timeout = 0.05 })))
        say(show(first:unlock()))
        say(show(first:unlock()))
        local second = store:lock("s:k")
        say(show(second))
        say(show(second:unlock()))
        -- a holder that never unlocks: its lock frees itself after ttl
        local dead = store:lock("s:dead", { ttl = 0.05 })
        local after = store:lock("s:dead", { timeout = 2 })
        say(show(after))
        say(show(dead:unlock()))
        say(show(after:unlock()))
        say(raised(store.get, store, nil))
        say(raised(store.set, store, "s:x", {}))
        say(raised(store.set, store, "s:x", "v", "soon"))
        say(raised(store.lock, store, "s:x", { timeout = -1 }))
        say(raised(shared_dict.new, "missing"))
        say(raised(shared_dict.new, 5))
        say(raised(require("wechat.work").client, { corp_id = "wwCORP", agents = { kf = { secret = "S" } },
          shared_dict = "missing" }))
        ngx.print(table.concat(out, "\n"))
      }
    }
    # a lock taken in the content phase, wanted again in the header filter, which cannot wait
    location = /lock_in_header_filter {
      content_by_lua_block {
        local store = require("wechat.work.store.shared_dict").new("wechat")
        local lock = assert(store:lock("s:filter"))
        ngx.send_headers() -- runs the header filter now, while the lock is held
        assert(lock:unlock())
        ngx.print("answered")
      }
      header_filter_by_lua_block {
        local store = require("wechat.work.store.shared_dict").new("wechat")
        local lock, err = store:lock("s:filter", { timeout = 1 })
        ngx.shared.results:set("header_filter", lock and "locked" or (err.kind .. "|" .. err.message))
        if lock then lock:unlock() end
      }
    }
    location = /result {
      content_by_lua_block { ngx.print(ngx.shared.results:get(ngx.var.arg_key) or "none") }
    }
]]

local app

local shell_quote = require("helpers.shell").quote

local function split(text)
  local lines = {}
  for line in (text .. "\n"):gmatch("(.-)\n") do
    lines[#lines + 1] = line
  end
  return lines
end

-- n requests to /send at once (curl --parallel, all connections opened at once), numbered from first; query:
-- more arguments before i ("client=impatient&"). Returns the answers: { status = , worker = , body = } by request
-- number.
local function burst(first, n, query)
  local dir = app.prefix .. "/burst"
  assert(os.execute("rm -rf " .. shell_quote(dir) .. " && mkdir -p " .. shell_quote(dir)))
  local cmd = "curl -s --no-progress-meter --parallel --parallel-immediate --parallel-max " .. n
    .. " -w '%{http_code} %header{x-worker} %{url}\\n' -o " .. shell_quote(dir .. "/#1")
    .. " " .. shell_quote(app:url("/send?" .. (query or "") .. "i=[" .. first .. "-" .. (first + n - 1) .. "]"))
    .. " 2>/dev/null"
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  local answers = {}
  for status, worker, i in out:gmatch("(%d+) (%d*) [^\n]-i=(%d+)\n") do
    local f = assert(io.open(dir .. "/" .. i, "rb"))
    answers[tonumber(i)] = { status = tonumber(status), worker = tonumber(worker), body = f:read("*a") }
    f:close()
  end
  return answers
end

local function workers_of(answers)
  local seen, list = {}, {}
  for _, a in pairs(answers) do
    if a.worker and not seen[a.worker] then
      seen[a.worker] = true
      list[#list + 1] = a.worker
    end
  end
  table.sort(list)
  return list
end

local function count_ok(answers, first, n)
  local good = 0
  for i = first, first + n - 1 do
    local a = answers[i]
    if a and a.status == 200 and a.body == "b" .. i then
      good = good + 1
    end
  end
  return good
end

-- the customers of requests 0 to 200 (request i sends to customer i)
local CUSTOMERS = {}
for i = 0, 200 do
  CUSTOMERS[#CUSTOMERS + 1] = "wmCUSTOMER" .. i
end

local function send(i)
  return { app:request("GET", "/send?i=" .. i) }
end

describe("one access token for all nginx workers #openresty", function()
  setup(function()
    standin.start()
    app = nginx.start{ name = "token", port = PORT, workers = 2, listen = "reuseport",
      http = (HTTP:gsub("@URL@", standin.url())), server = SERVER }
  end)
  teardown(function()
    if app then app:stop() end
  end)
  before_each(function()
    standin.reset()
    standin.wrote("wkKF", CUSTOMERS)
    assert.same({ 200, "ok" }, { app:request("GET", "/forget_tokens") })
  end)

  it("makes exactly 1 gettoken call for 200 concurrent first requests over 2 workers", function()
    -- the one gettoken is held for a while, so that every other request comes while it is under way
    standin.script(GETTOKEN, { delay = 0.5 })
    local answers = burst(1, 200)
    assert.are.equal(200, count_ok(answers, 1, 200))
    assert.are.equal(2, #workers_of(answers))
    assert.same({ [GETTOKEN] = 1, [SEND_MSG] = 200 }, standin.counts())
    local token = standin.token()
    local with_token = 0
    for _, req in ipairs(standin.requests(SEND_MSG)) do
      if req.args.access_token == token then
        with_token = with_token + 1
      end
    end
    assert.are.equal(200, with_token)
  end)

  it("refreshes a token the stand-in expired once for all workers", function()
    assert.same({ 200, "b0" }, send(0))
    local old = standin.token()
    standin.expire_tokens()
    standin.script(GETTOKEN, { delay = 0.5 })
    local answers = burst(1, 200)
    assert.are.equal(200, count_ok(answers, 1, 200))
    assert.are.equal(2, #workers_of(answers))
    local counts = standin.counts()
    assert.are.equal(3, counts[GETTOKEN]) -- the first, standin.token() above, the one refresh
    local new = standin.token()
    assert.are_not.equal(old, new)
    local by_token = { [old] = 0, [new] = 0 }
    for _, req in ipairs(standin.requests(SEND_MSG)) do
      local t = req.args.access_token
      by_token[t] = (by_token[t] or 0) + 1
    end
    -- every request went out once with the new token; those that went out with the old one first got 42001
    assert.are.equal(200, by_token[new])
    assert.are.equal(counts[SEND_MSG] - 200, by_token[old])
    local n = 0
    for _ in pairs(by_token) do n = n + 1 end
    assert.are.equal(2, n)
  end)

  it("gives nil, err (kind store) to the callers whose wait for the one gettoken runs out (token_wait)", function()
    -- gettoken held 3 s; the callers that come while it is under way wait 0.2 s (token_wait), then give up
    standin.script(GETTOKEN, { delay = 3 })
    local answers = burst(1, 20, "client=impatient&")
    local key = "wechat:token:wwCORP:" .. require("wechat.core").sha1_hex("wwCORP\0KF_SECRET"):sub(1, 16)
    local waited_out = "store|timeout|send_text|wechat: store error: lua_shared_dict 'wechat': lock " .. key
      .. " still taken after 0.2 s in send_text"
    local ok, gave_up, other = 0, 0, {}
    for i = 1, 20 do
      local a = answers[i]
      if a and a.status == 200 and a.body == "b" .. i then
        ok = ok + 1
      elseif a and a.status == 500 and a.body == waited_out then
        gave_up = gave_up + 1
      else
        other[#other + 1] = a and (a.status .. " " .. a.body) or ("no answer " .. i)
      end
    end
    assert.same({}, other)
    -- the one that fetched the token sent its message; the 19 others got the error and sent nothing
    assert.same({ 1, 19 }, { ok, gave_up })
    assert.same({ [GETTOKEN] = 1, [SEND_MSG] = 1 }, standin.counts())
    -- the token is there now: the next call needs no gettoken and no wait
    assert.same({ 200, "b21" }, { app:request("GET", "/send?i=21&client=impatient") })
    assert.same({ [GETTOKEN] = 1, [SEND_MSG] = 2 }, standin.counts())
  end)

  it("answers from the same store after a reload and after a killed worker", function()
    assert.same({ 200, "b1" }, send(1))
    local before = app:worker_pids()
    local after_reload = app:reload()
    assert.are_not.same(before, after_reload)
    for i = 2, 11 do
      assert.same({ 200, "b" .. i }, send(i))
    end
    app:kill_worker(after_reload[1])
    for i = 12, 21 do
      assert.same({ 200, "b" .. i }, send(i))
    end
    assert.same({ [GETTOKEN] = 1, [SEND_MSG] = 21 }, standin.counts())
  end)

  it("is a generic store: get, set with ttl, compare-and-delete, locks that time out and free themselves", function()
    local status, body = app:request("GET", "/store")
    assert.are.equal(200, status)
    assert.same({
      "true", "1", "true", "1", "true", "nil",
      "true", "nil",
      "true", "42", "true", "nil",
      "lock",
      "nil, store: lua_shared_dict 'wechat': lock s:k still taken after 0.05 s",
      "true",
      "nil, store: lua_shared_dict 'wechat': lock s:k is not held any more",
      "lock", "true",
      "lock",
      "nil, store: lua_shared_dict 'wechat': lock s:dead is not held any more",
      "true",
      "bad argument #1 to 'get' (non-empty string key expected, got nil)",
      "bad argument #2 to 'set' (string, number or boolean expected, got table)",
      "bad argument #3 to 'set' (number of seconds or nil expected, got string)",
      "bad argument #2 to 'lock' (opts.timeout: number >= 0 expected, got -1)",
      "bad argument #1 to 'new' (no lua_shared_dict named 'missing': add \"lua_shared_dict missing 1m;\" "
        .. "to the http block of nginx.conf)",
      "bad argument #1 to 'new' (lua_shared_dict name expected, got number)",
      "bad argument #1 to 'new' (no lua_shared_dict named 'missing': add \"lua_shared_dict missing 1m;\" "
        .. "to the http block of nginx.conf)",
    }, split(body))
  end)

  it("cannot wait for a taken lock in a phase without ngx.sleep, and says so", function()
    assert.same({ 200, "answered" }, { app:request("GET", "/lock_in_header_filter") })
    local _, value = app:request("GET", "/result?key=header_filter")
    assert.are.equal("phase|cannot wait for lock s:filter in the nginx 'header_filter' phase: ngx.sleep is "
      .. "disabled there; use a timer (ngx.timer.at) or another phase", value)
  end)

  it("raises outside OpenResty", function()
    local shared_dict = require "wechat.work.store.shared_dict"
    assert.has_error(function() shared_dict.new("wechat") end,
      "the shared_dict store runs inside OpenResty (ngx_http_lua) only")
  end)

  it("keeps the secret and the token out of nginx's error log", function()
    local log = app:error_log()
    assert.is_nil(log:find("KF_SECRET", 1, true))
    assert.is_nil(log:find("access_token", 1, true))
  end)
end)
