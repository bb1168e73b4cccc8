-- wechat.work.kf.window in a lua_shared_dict, inside a real nginx with 2 workers, against the WeCom stand-in: the
-- behaviours of helpers.window_cases (as for the memory and Redis backends); both workers sending to one customer
-- at the same moment, exactly 5 sends reaching the stand-in and every other one refused locally with kind
-- "window"; the entries expiring with the window.
local cases = require "helpers.window_cases"
local cjson = require "cjson"
local nginx = require "helpers.nginx"
local socket = require "socket"
local standin = require "helpers.standin"

local PORT = 18410
local KFID = cases.KFID
local PER_WORKER = 6

local HTTP = [[
    lua_shared_dict wechat 1m;
    lua_shared_dict cursors 1m;
    lua_shared_dict results 1m;
    init_by_lua_block {
      local work = require "wechat.work"
      SPEC_CLIENT = work.client{ corp_id = "wwCORP", agents = { kf = { secret = "KF_SECRET" } },
        base_url = "@URL@", timeout = 5, shared_dict = "wechat", window = true }
      -- the same tracker (the same dict), a short timeout
      SPEC_SLOW = work.client{ corp_id = "wwCORP", agents = { kf = { secret = "KF_SECRET" } },
        base_url = "@URL@", timeout = 0.5, shared_dict = "wechat", window = true }
    }
    init_worker_by_lua_block {
      -- each worker waits for "go", then sends PER_WORKER texts to wmRACE as fast as it can
      local function race(premature)
        local results = ngx.shared.results
        for _ = 1, 600 do
          if premature or ngx.worker.exiting() then
            return
          end
          if results:get("go") then
            break
          end
          ngx.sleep(0.05)
        end
        if not results:get("go") then
          return
        end
        local kf = require "wechat.work.kf.message"
        for i = 1, @PER_WORKER@ do
          local res, err = kf.send_text(SPEC_CLIENT, "kf", "wmRACE", "@KFID@", "w" .. ngx.worker.id() .. "-" .. i)
          results:rpush("sent", ngx.worker.id() .. "/" .. (res and "ok" or (err.kind .. ":"
            .. tostring(err.reason or err.errcode))))
        end
      end
      ngx.timer.at(0, race)
    }
]]

local SERVER = [[
        # the driver of helpers.window_cases: POST {"op": ..., ...}, answers JSON
        location = /do {
          content_by_lua_block {
            local cjson = require "cjson"
            local kf = require "wechat.work.kf.message"
            local shared_dict = require "wechat.work.store.shared_dict"
            local window = require "wechat.work.kf.window"
            ngx.req.read_body()
            local req = cjson.decode(ngx.req.get_body_data())
            local out = {}
            if req.op == "reset" then
              ngx.shared.wechat:flush_all()
              ngx.shared.cursors:flush_all()
            elseif req.op == "send" then
              local words = {}
              for i = 1, req.n do
                local res, err = kf.send_text(req.slow and SPEC_SLOW or SPEC_CLIENT, "kf", req.user, "@KFID@",
                  "reply " .. i, req.opts)
                words[i] = res and "ok" or (err.kind .. ":" .. tostring(err.reason or err.errcode))
              end
              out.words = table.concat(words, " ")
            elseif req.op == "pull" then
              local p = kf.sync_all(SPEC_CLIENT, "kf", { cursor_store = shared_dict.new("cursors") })
              out.n = 0
              for _ in p do
                out.n = out.n + 1
              end
              out.err = p.err and tostring(p.err)
            elseif req.op == "get" then
              out.info = window.get(SPEC_CLIENT, "kf", "@KFID@", req.user) or false
            elseif req.op == "can_send" then
              out.ok, out.reason = window.can_send(SPEC_CLIENT, "kf", "@KFID@", req.user)
            elseif req.op == "note_state" then
              out.ok = window.note_state(SPEC_CLIENT, "kf", "@KFID@", req.user, req.state)
            elseif req.op == "on_event" then
              out.ok = kf.send_text_on_event(SPEC_CLIENT, "kf", req.code, "welcome") ~= nil
            elseif req.op == "trans" or req.op == "state_get" then
              local service_state = require "wechat.work.kf.service_state"
              local res, err
              if req.op == "trans" then
                res, err = service_state.trans(SPEC_CLIENT, "kf", "@KFID@", req.user, req.state, req.servicer)
              else
                res, err = service_state.get(SPEC_CLIENT, "kf", "@KFID@", req.user)
              end
              out.word = res and "ok" or (err.kind .. ":" .. tostring(err.errcode))
            end
            ngx.say(cjson.encode(out))
          }
        }
        location = /pull {
          content_by_lua_block {
            local kf = require "wechat.work.kf.message"
            local n = 0
            local pull = kf.sync_all(SPEC_CLIENT, "kf")
            for _ in pull do
              n = n + 1
            end
            ngx.say(pull.err and tostring(pull.err) or n)
          }
        }
        location = /token {
          content_by_lua_block { ngx.say(assert(SPEC_CLIENT:token("kf")) and "ok") }
        }
        location = /go {
          content_by_lua_block { ngx.shared.results:set("go", true) ngx.say("ok") }
        }
        location = /sent {
          content_by_lua_block {
            local results, out = ngx.shared.results, {}
            for i = 1, results:llen("sent") or 0 do
              out[i] = results:lpop("sent")
            end
            for i = 1, #out do
              results:rpush("sent", out[i])
            end
            ngx.say(table.concat(out, " "))
          }
        }
        location = /window {
          content_by_lua_block {
            local window = require "wechat.work.kf.window"
            local info = window.get(SPEC_CLIENT, "kf", "@KFID@", ngx.var.arg_user)
            -- the keys of the customer in the dict, and their ttls (seconds, rounded down to the hour)
            local dict, ttls = ngx.shared.wechat, {}
            for _, key in ipairs(dict:get_keys(0)) do
              if key:sub(1, 1) == "~" then
                ttls[#ttls + 1] = math.floor(dict:ttl(key) / 3600)
              end
            end
            table.sort(ttls)
            ngx.say(require("cjson").encode({ info = info or "unknown", hours = ttls }))
          }
        }
]]

local function fill(template)
  return (template:gsub("@(%u[%u_]*)@", { URL = standin.url(), KFID = KFID, PER_WORKER = PER_WORKER }))
end

describe("kf.window in a lua_shared_dict, 2 workers #openresty", function()
  local app

  setup(function()
    standin.start()
    standin.reset()
    app = nginx.start{ name = "window", port = PORT, workers = 2, http = fill(HTTP), server = fill(SERVER) }
  end)

  teardown(function()
    if app then
      app:stop()
    end
  end)

  local function get(path)
    local status, body = app:request("GET", path)
    assert.are.equal(200, status, body)
    return (body:gsub("\n$", ""))
  end

  local function call(req)
    local status, body = app:request("POST", "/do", cjson.encode(req))
    assert.are.equal(200, status, body)
    return cjson.decode(body)
  end

  it("lets exactly 5 of 12 sends from both workers at once reach the stand-in", function()
    standin.reset()
    call{ op = "reset" }
    standin.sync{ messages = { { msgid = "c1", open_kfid = KFID, external_userid = "wmRACE", send_time = os.time(),
      origin = 3, msgtype = "text", text = { content = "hi" } } } }
    assert.are.equal("1", get("/pull"))
    assert.are.equal("ok", get("/token"))
    assert.are.equal("ok", get("/go"))
    local sent
    for _ = 1, 200 do
      sent = get("/sent")
      if select(2, sent:gsub("%S+", "")) == 2 * PER_WORKER then
        break
      end
      socket.sleep(0.05)
    end
    -- both workers sent all theirs
    assert.are.equal(PER_WORKER, select(2, sent:gsub("0/", "")), sent)
    assert.are.equal(PER_WORKER, select(2, sent:gsub("1/", "")), sent)
    assert.are.equal(5, select(2, sent:gsub("/ok", "")), sent)
    assert.are.equal(2 * PER_WORKER - 5, select(2, sent:gsub("window:quota", "")), sent)
    assert.are.equal(5, #standin.delivered())
    assert.are.equal(5, standin.counts()["/cgi-bin/kf/send_msg"])
    local window = cjson.decode(get("/window?user=wmRACE"))
    assert.are.equal(0, window.info.remaining)
    assert.are.equal("quota", window.info.reason)
    -- the window and its count, both gone 49 h after the customer's message (48 h and the hour of grace)
    assert.are.same({ 48, 48 }, window.hours)
  end)

  describe("behaves as with the other backends:", function()
    before_each(function()
      standin.reset()
      call{ op = "reset" }
    end)

    cases.define({
      send = function(user, n, opts, slow)
        return call{ op = "send", user = user, n = n, opts = opts, slow = slow or nil }.words
      end,
      pull = function()
        local out = call{ op = "pull" }
        assert.is_nil(out.err)
        return out.n
      end,
      get = function(user)
        return call{ op = "get", user = user }.info or nil
      end,
      can_send = function(user)
        local out = call{ op = "can_send", user = user }
        return { out.ok, out.reason }
      end,
      note_state = function(user, state)
        return call{ op = "note_state", user = user, state = state }.ok
      end,
      on_event = function(code)
        return call{ op = "on_event", code = code }.ok
      end,
      trans = function(user, state, servicer)
        return call{ op = "trans", user = user, state = state, servicer = servicer }.word
      end,
      state_get = function(user)
        return call{ op = "state_get", user = user }.word
      end,
    }, it, assert)
  end)
end)
