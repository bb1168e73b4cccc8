-- Made msgids in nginx: the master makes one in init_by_lua (its random pool is filled there), then forks its
-- workers. No worker may hand out the bytes the master's pool still held: each worker's first msgid differs from
-- every other's and from the master's next one (src/kf_bodies.c: the pool's page is wiped on fork, or the pid
-- is compared where the kernel cannot wipe it).
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
    }
]]

local SERVER = [[
    location = /msgids {
      content_by_lua_block {
        local out = {}
        for i = 0, ]] .. (WORKERS - 1) .. [[ do
          out[#out + 1] = ngx.shared.msgids:get(tostring(i)) or "missing"
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

  it("differ from worker to worker: no two workers share the master's random bytes", function()
    local list
    for _ = 1, 100 do -- the workers store theirs as they start
      local status, body = app:request("GET", "/msgids")
      assert.are.equal(200, status)
      if not body:find("missing", 1, true) then
        list = body
        break
      end
      os.execute("sleep 0.05")
    end
    assert.truthy(list, "every worker made a msgid")
    local seen = {}
    for msgid in list:gmatch("%S+") do
      assert.truthy(msgid:find("^" .. ("%x"):rep(32) .. "$"), msgid)
      assert.is_nil(seen[msgid], "two workers made " .. msgid)
      seen[msgid] = true
    end
  end)
end)
