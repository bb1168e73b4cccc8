-- wechat.work.material over libcurl (Lua 5.4 and LuaJIT): the exact multipart the stand-in receives, downloads to
-- memory and to a file, every argument error and every file error, the retry rules, and 20 MB up and down with the
-- bytes compared and the process's peak memory growth under 2 MB (spec/helpers/media_behaviour.lua). The same runs
-- inside nginx in spec/openresty/material_spec.lua.
local standin = require "helpers.standin"
local cases = require "helpers.media_cases"
local behaviour = require "helpers.media_behaviour"
local work = require "wechat.work"

describe("wechat.work.material over libcurl", function()
  local client

  setup(behaviour.setup)

  before_each(function()
    standin.reset()
    client = work.client{
      corp_id = standin.CORPID,
      agents = { [cases.AGENT] = { secret = standin.KF_SECRET } },
      base_url = standin.url(),
      timeout = 5,
    }
  end)

  after_each(function()
    client:close()
  end)

  behaviour.define(it, assert, function(name, arg)
    return cases.cases[name](client, cases.DIR, arg)
  end)

  it("names the caller's line in an argument error, also for checks made by a helper", function()
    local material = require "wechat.work.material"
    local line = debug.getinfo(1, "l").currentline
    local ok1, err1 = pcall(material.upload, nil, cases.AGENT, "image", "x")
    local ok2, err2 = pcall(function() material.upload(client, cases.AGENT, "gif", "x") end)
    local ok3, err3 = pcall(function() material.get(client, cases.AGENT, "M", { max = 0 }) end)
    assert.are.same({ false, false, false }, { ok1, ok2, ok3 })
    -- a function called by pcall itself has no Lua caller line to name
    assert.are.equal("bad argument #1 to 'upload' (wechat.work client expected, got no value)", err1)
    assert.are.equal(("spec/material_spec.lua:%d: bad argument #3 to 'upload' (\"image\", \"voice\", \"video\" or "
      .. "\"file\" expected, got \"gif\")"):format(line + 2), err2)
    assert.are.equal(("spec/material_spec.lua:%d: bad argument #4 to 'get' (opts.max: integer >= 1 expected, got 0)")
      :format(line + 3), err3)
  end)

  it("uploads and downloads over HTTPS, verifying the stand-in's certificate against its CA", function()
    local agents = { [cases.AGENT] = { secret = standin.KF_SECRET } }
    local https = work.client{ corp_id = standin.CORPID, agents = agents, base_url = standin.https_url(),
      cafile = standin.cafile(), timeout = 5 }
    local out = cases.cases.round_trip(https, cases.DIR)
    https:close()
    assert.is_true(out.same)
    assert.is_true(out.file_same)
    -- a refused certificate answers at once; the long timeout is for tools/sanitize, where loading the system's CA
    -- bundle under ASan's full malloc stacks can take longer than 5 s (a timeout there reads as "connect")
    local untrusted = work.client{ corp_id = standin.CORPID, agents = agents, base_url = standin.https_url(),
      timeout = 60 }
    local res, err = require("wechat.work.material").get(untrusted, cases.AGENT, out.media_id)
    untrusted:close()
    assert.is_nil(res)
    assert.equal("tls", err.reason)
  end)
end)
