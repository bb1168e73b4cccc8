-- Made msgids and random_hex (lock tokens, callback nonces) in nginx: the master draws in init_by_lua (its random
-- pool is filled there), then forks its workers. No worker may hand out the bytes the master's pool still held:
-- each worker's first draw differs from every other's and from the master's next one (src/random.c: the pool's page
-- is wiped on fork, or the pid is compared where the kernel cannot wipe it).
local nginx = require "helpers.nginx"

local PORT = 18391
local WORKERS = 4

local HTTP = [[
    lua_shared_dict msgids 1m;
    init_by_lua_block {
      local core = require "wechat.core"
      local function made()
        local _, msgid = core.send_text({ auto_msgid = true }, nil, "wm", "wk", "x")
        return msgid
      end
      MASTER_FIRST = made()
      -- what the master's pool would hand out next, had it not been forked: made in the master, never sent
      MADE = made
    }
    init_worker_by_lua_block {
      ngx.shared.msgids:set(tostring(ngx.worker.id()), MADE())
      ngx.shared.msgids:set("hex" .. ngx.worker.id(), require("wechat.core").random_hex(16))
    }
]]

local SERVER = [[
    location = /msgids {
      content_by_lua_block {
        local out = {}
        local prefix = ngx.var.arg_hex and "hex" or ""
        for i = 0, ]] .. (WORKERS - 1) .. [[ do
          out[#out + 1] = ngx.shared.msgids:get(prefix .. i) or "missing"
        end
        ngx.say(table.concat(out, " "))
      }
    }
]]

describe("msgids made in nginx workers forked from one master #openresty", function()
  local app

  setup(function()
    app = nginx.start{ name = "msgid-fork", port = PORT, workers = WORKERS, http = HTTP, server = SERVER }
  end)

  teardown(function()
    if app then app:stop() end
  end)

  local function drawn(path)
    for _ = 1, 100 do -- the workers store theirs as they start
      local status, body = app:request("GET", path)
      assert.are.equal(200, status)
      if not body:find("missing", 1, true) then
        return body
      end
      os.execute("sleep 0.05")
    end
  end

  it("differ from worker to worker: no two workers share the master's random bytes", function()
    local list = drawn("/msgids")
    assert.truthy(list, "every worker made a msgid")
    local seen = {}
    for msgid in list:gmatch("%S+") do
      assert.truthy(msgid:find("^" .. ("%x"):rep(32) .. "$"), msgid)
      assert.is_nil(seen[msgid], "two workers made " .. msgid)
      seen[msgid] = true
    end
  end)

  it("random_hex too: a lock token or nonce drawn in a worker is never another worker's", function()
    local list = drawn("/msgids?hex=1")
    assert.truthy(list, "every worker drew")
    local seen, n = {}, 0
    for hex in list:gmatch("%S+") do
      assert.truthy(hex:find("^" .. ("%x"):rep(32) .. "$"), hex)
      assert.is_nil(seen[hex], "two workers drew " .. hex)
      seen[hex], n = true, n + 1
    end
    assert.are.equal(WORKERS, n)
  end)
end)
