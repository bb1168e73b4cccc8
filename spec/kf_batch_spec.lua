-- kf.batch over libcurl's multi interface (Lua 5.4 and LuaJIT), against the stand-in. Concurrency is shown by the
-- stand-in's own counts (GET /_standin/concurrency: requests being answered at once, and the connections they came
-- on), never by timings; the nginx twin is spec/openresty/kf_batch_spec.lua.
local standin = require "helpers.standin"
local work = require "wechat.work"
local kf = require "wechat.work.kf"
local message = require "wechat.work.kf.message"
local errors = require "wechat.work.errors"

local SEND_MSG = "/cgi-bin/kf/send_msg"
local SEND_MSG_ON_EVENT = "/cgi-bin/kf/send_msg_on_event"
local SYNC_MSG = "/cgi-bin/kf/sync_msg"
local GETTOKEN = "/cgi-bin/gettoken"
local unpack = table.unpack or unpack -- luacheck: ignore (LuaJIT's unpack)

local function new_client(opts)
  opts = opts or {}
  return work.client{
    corp_id = standin.CORPID,
    agents = { kf = { secret = opts.secret or standin.KF_SECRET } },
    base_url = standin.url(),
    timeout = opts.timeout or 10,
  }
end

-- WeCom takes 5 sends per customer message: the i-th call goes to customer i, who wrote (before_each)
local CUSTOMERS = {}
for i = 1, 30 do
  CUSTOMERS[i] = "wmCUSTOMER" .. i
end

local function sends(n, prefix)
  local calls = {}
  for i = 1, n do
    calls[i] = { "send_text", CUSTOMERS[i], "wkKF", "hello " .. i, { msgid = prefix .. i } }
  end
  return calls
end

local function msgids_of(results)
  local out = {}
  for i, r in ipairs(results) do
    out[i] = r.res and r.res.msgid or ("err " .. tostring(r.err))
  end
  return out
end

local function expected_msgids(n, prefix)
  local out = {}
  for i = 1, n do
    out[i] = prefix .. i
  end
  return out
end

describe("kf.batch (libcurl multi)", function()
  setup(standin.start)
  teardown(standin.stop)
  before_each(function()
    standin.reset()
    standin.wrote("wkKF", CUSTOMERS)
    standin.wrote("wkKF", { "wmA", "wmB" })
  end)

  local client
  after_each(function()
    if client then client:close() end
    client = nil
  end)

  it("is the same function as wechat.work.kf.message.batch", function()
    assert.are.equal(kf.batch, message.batch)
    assert.are.equal(message, kf.message)
  end)

  it("returns every answer in the order of calls, with one gettoken for all", function()
    client = new_client()
    local results = kf.batch(client, "kf", sends(30, "b"), { concurrency = 8 })
    assert.same(expected_msgids(30, "b"), msgids_of(results))
    assert.same({ errcode = 0, errmsg = "ok", msgid = "b1" }, results[1].res)
    assert.same({ [GETTOKEN] = 1, [SEND_MSG] = 30 }, standin.counts())
    local delivered = {}
    for i, body in ipairs(standin.delivered()) do
      delivered[i] = body.msgid
    end
    table.sort(delivered)
    local want = expected_msgids(30, "b")
    table.sort(want)
    assert.same(want, delivered)
  end)

  it("gives each call what it alone would give: an API error, a timeout, successes", function()
    client = new_client{ timeout = 1 }
    local image = standin.media_id("image")
    local before = standin.counts()
    standin.welcome_code("USED")
    assert(message.send_text_on_event(client, "kf", "USED", "welcome", "w0")) -- the code is used up
    -- every sync_msg is held past the client's timeout, until released at the end
    standin.script(SYNC_MSG, { delay = 60, until_released = true }, -1)
    local results = kf.batch(client, "kf", {
      { "send_text", "wmA", "wkKF", "one", { msgid = "m1" } },
      { "send_text_on_event", "USED", "again", "w1" },
      { "sync_msg", { limit = 10 } },
      { "send_image", "wmB", "wkKF", image, { msgid = "m4" } },
    }, { concurrency = 4 })
    assert.are.equal(4, #results)
    assert.same({ errcode = 0, errmsg = "ok", msgid = "m1" }, results[1].res)
    assert.is_nil(results[1].err)

    local api = results[2].err
    assert.is_true(errors.is(api, errors.API))
    assert.same({ 95018, "code already used", "send_text_on_event", 1 },
      { api.errcode, api.errmsg, api.op, api.attempts })

    -- sync_msg may be retried: two exchanges, both timed out, as a single sync_msg gives
    local timeout = results[3].err
    assert.is_true(errors.is(timeout, errors.TRANSPORT))
    assert.same({ "timeout", "sync_msg", 2 }, { timeout.reason, timeout.op, timeout.attempts })
    assert.same({ errcode = 0, errmsg = "ok", msgid = "m4" }, results[4].res)

    assert.are.equal(2, standin.release())
    local single, err = message.sync_msg(client, "kf", { limit = 10 })
    assert.is_nil(single)
    assert.same({ timeout.kind, timeout.reason, timeout.op, timeout.attempts },
      { err.kind, err.reason, err.op, err.attempts })
    assert.are.equal(2, standin.release())
    assert.same({ [GETTOKEN] = 1, [SEND_MSG] = 2, [SEND_MSG_ON_EVENT] = 2, [SYNC_MSG] = 4 },
      standin.counts_since(before))
  end)

  it("fetches a token WeCom refused once for all the calls that saw it refused", function()
    client = new_client()
    assert(client:token("kf"))
    standin.expire_tokens()
    -- the first 10 go out with the expired token and are refused (42001); one gettoken; the other 20 start after,
    -- with the new token
    local results = kf.batch(client, "kf", sends(30, "t"), { concurrency = 10 })
    assert.same(expected_msgids(30, "t"), msgids_of(results))
    assert.same({ [GETTOKEN] = 2, [SEND_MSG] = 40 }, standin.counts())
    assert.are.equal(30, #standin.delivered())
  end)

  it("sends nothing and gives every call the gettoken error when there is no token", function()
    client = new_client{ secret = "WRONG_SECRET" }
    local results = kf.batch(client, "kf", {
      { "send_text", "wmA", "wkKF", "one" },
      { "sync_msg" },
    })
    assert.are.equal(2, #results)
    for i, op in ipairs{ "send_text", "sync_msg" } do
      local err = results[i].err
      assert.is_true(errors.is(err, errors.API))
      assert.same({ 40001, op }, { err.errcode, err.op })
    end
    assert.are_not.equal(results[1].err, results[2].err)
    assert.same({ [GETTOKEN] = 1 }, standin.counts())
  end)

  it("never has more than `concurrency` requests under way, over as many connections, kept for the next batch",
    function()
      client = new_client()
      standin.script(SEND_MSG, { delay = 0.2 }, -1) -- long enough that all 5 of a round overlap
      local results = kf.batch(client, "kf", sends(25, "c"), { concurrency = 5 })
      assert.same(expected_msgids(25, "c"), msgids_of(results))
      -- 5 for the sends, 1 for the gettoken made before them (the transport's own handle)
      assert.same({ in_flight = 0, max_in_flight = 5, connections = 6 }, standin.concurrency())
      results = kf.batch(client, "kf", sends(15, "d"), { concurrency = 5 })
      assert.same(expected_msgids(15, "d"), msgids_of(results))
      assert.same({ in_flight = 0, max_in_flight = 5, connections = 6 }, standin.concurrency())
      assert.same({ [GETTOKEN] = 1, [SEND_MSG] = 40 }, standin.counts())
    end)

  it("runs one call at a time with concurrency 1", function()
    client = new_client()
    standin.script(SEND_MSG, { delay = 0.05 }, -1)
    assert.same(expected_msgids(4, "s"), msgids_of(kf.batch(client, "kf", sends(4, "s"), { concurrency = 1 })))
    assert.same({ in_flight = 0, max_in_flight = 1, connections = 2 }, standin.concurrency())
  end)

  it("raises a Lua error of a call (a bug, not a failure) and stays usable for the next batch", function()
    local memory = require "wechat.work.store.memory"
    local store, gets, armed = memory.new(), 0, true
    local get = store.get
    -- a store that breaks once the batch is under way: the first get is the batch's own token lookup
    store.get = function(self, key)
      gets = gets + 1
      if armed and gets == 3 then
        error("store exploded", 0)
      end
      return get(self, key)
    end
    client = work.client{ corp_id = standin.CORPID, agents = { kf = { secret = standin.KF_SECRET } },
      base_url = standin.url(), token_store = store }
    standin.script(SEND_MSG, { delay = 0.2 }, -1)
    local ok, err = pcall(kf.batch, client, "kf", sends(6, "e"), { concurrency = 3 })
    assert.is_false(ok)
    assert.matches("^store exploded", err)
    armed = false
    assert.same(expected_msgids(4, "f"), msgids_of(kf.batch(client, "kf", sends(4, "f"), { concurrency = 3 })))
  end)

  it("returns an empty array for no calls, sending nothing", function()
    client = new_client()
    assert.same({}, kf.batch(client, "kf", {}))
    assert.same({}, standin.counts())
  end)

  it("sends a call's trailing nil arguments when n says so", function()
    client = new_client()
    local video = standin.media_id("video")
    local results = kf.batch(client, "kf", {
      { "send_video", "wmA", "wkKF", video, nil, nil, { msgid = "v1" } },
      { "send_text", "wmA", "wkKF", "two", n = 4 },
    })
    assert.same({ "v1" }, { results[1].res.msgid })
    assert.is_string(results[2].res.msgid)
  end)

  describe("raises before sending anything", function()
    local function fails(message_text, ...)
      local args = { n = select("#", ...), ... }
      local ok, err = pcall(kf.batch, unpack(args, 1, args.n))
      assert.is_false(ok)
      assert.are.equal(message_text, err)
    end

    it("naming the call and its argument", function()
      client = new_client()
      local calls = sends(3, "a")
      calls[2] = { "send_text", "wmA", "wkKF", 5 }
      fails("bad argument #3 to 'batch' (calls[2]: bad argument #5 to 'send_text' (string expected, got number))",
        client, "kf", calls)
      calls[2] = { "send_text", "wmA", "wkKF", "hi", { msgid = "bad msgid!" } }
      local ok, err = pcall(kf.batch, client, "kf", calls)
      assert.is_false(ok)
      assert.matches("^bad argument #3 to 'batch' %(calls%[2%]: bad argument #6 to 'send_text' %(", err)
      calls[3] = { "send_link", "wmA", "wkKF", { title = "t" } }
      calls[2] = sends(1, "x")[1]
      ok, err = pcall(kf.batch, client, "kf", calls)
      assert.is_false(ok)
      assert.matches("^bad argument #3 to 'batch' %(calls%[3%]: bad argument #5 to 'send_link' %(", err)
      fails("bad argument #3 to 'batch' (calls[1]: operation of wechat.work.kf.message expected at [1], "
        .. "got 'send_nothing')", client, "kf", { { "send_nothing" } })
      fails("bad argument #3 to 'batch' (calls[2]: operation of wechat.work.kf.message expected at [1], "
        .. "got 'sync_all')", client, "kf", { { "sync_msg" }, { "sync_all" } })
      fails("bad argument #3 to 'batch' (calls[1]: table expected, got string)", client, "kf", { "send_text" })
      fails("bad argument #3 to 'batch' (calls: array expected (key 'x'))", client, "kf", { x = 1 })
      assert.same({}, standin.counts())
    end)

    it("naming client, agent, calls and opts", function()
      client = new_client()
      fails("bad argument #1 to 'batch' (wechat.work client expected, got no value)")
      fails("bad argument #2 to 'batch' (unknown agent 'nope')", client, "nope", {})
      fails("bad argument #2 to 'batch' (agent name expected, got number)", client, 1, {})
      fails("bad argument #3 to 'batch' (table expected, got no value)", client, "kf")
      fails("bad argument #4 to 'batch' (opts.concurrency: integer 1..256 expected, got 0)", client, "kf", {},
        { concurrency = 0 })
      fails("bad argument #4 to 'batch' (opts.concurrency: integer 1..256 expected, got 1.5)", client, "kf", {},
        { concurrency = 1.5 })
      fails("bad argument #4 to 'batch' (unknown option 'concurrent')", client, "kf", {}, { concurrent = 2 })
      fails("bad argument #4 to 'batch' (table or nil expected, got number)", client, "kf", {}, 3)
      assert.same({}, standin.counts())
    end)
  end)
end)
