-- The libcurl transport keeps the last few URLs it was given parsed, so that libcurl does not parse each one again
-- on every request (src/curl_transport.c). Every request must still go out exactly as libcurl sends a URL given as
-- text: to its own URL, across more URLs than the transport keeps and back to old ones, in libcurl's own writing
-- of URLs it normalises, and a URL libcurl refuses must fail the same way each time. A small nginx of this spec's
-- own (127.0.0.1:18191) answers with the request line and Host header it received.
local curl = require "wechat.work.transport.curl"
local nginx = require "helpers.nginx"

local PORT = 18191
local BASE = "http://127.0.0.1:" .. PORT

describe("wechat.work.transport.curl with URLs kept parsed", function()
  local app
  setup(function()
    app = nginx.start{ name = "curl-urls", port = PORT, workers = 1, log_level = "warn",
      server = [[location / { return 200 "$request_method $request_uri $http_host"; }]] }
  end)
  teardown(function()
    if app then app:stop() end
  end)

  local t
  after_each(function()
    if t then t:close() end
    t = nil
  end)

  it("sends each request to its own URL, over more URLs than it keeps and back", function()
    t = assert(curl.new())
    local targets = {}
    for i = 1, 7 do
      targets[#targets + 1] = "/cgi-bin/kf/op" .. i .. "?access_token=T" .. i
    end
    -- the first paths again with a new token, as after a refresh
    for i = 1, 3 do
      targets[#targets + 1] = "/cgi-bin/kf/op" .. i .. "?access_token=N" .. i
    end
    local made = 0
    for round = 1, 3 do
      for i, target in ipairs(targets) do
        local post = (i + round) % 2 == 0
        local res = t:request{ method = post and "POST" or "GET", url = BASE .. target, body = post and "{}" or nil }
        made = made + 1
        assert.same({ status = 200, body = (post and "POST " or "GET ") .. target .. " 127.0.0.1:" .. PORT }, res)
      end
    end
    assert.same({ requests = made, connects = 1 }, t:stats())
  end)

  it("sends URLs that libcurl writes in its own way as libcurl writes them, every time", function()
    t = assert(curl.new())
    local cases = {
      { BASE .. "/a/../b?x=1", "/b?x=1" },
      { BASE .. "/x#fragment", "/x" },
      { BASE .. "/你好?q=好", "/%e4%bd%a0%e5%a5%bd?q=好" },
      { "HTTP://127.0.0.1:" .. PORT .. "/upper", "/upper" },
      { "http://127.0.0.1:0" .. PORT .. "/zero", "/zero" },
      { BASE .. "/q?x=%zz&y=%41", "/q?x=%zz&y=%41" },
    }
    for _ = 1, 2 do
      for _, case in ipairs(cases) do
        assert.same({ status = 200, body = "GET " .. case[2] .. " 127.0.0.1:" .. PORT },
          t:request{ method = "GET", url = case[1] })
      end
    end
  end)

  it("fails a URL libcurl refuses the same way each time, and goes on with good ones", function()
    t = assert(curl.new())
    for _ = 1, 2 do
      local res, err = t:request{ method = "GET", url = "http://127.0.0.1:99999/x" }
      assert.is_nil(res)
      assert.are.equal("transport", err.kind)
      assert.are.equal("other", err.reason)
      assert.are.equal("URL using bad/illegal format or missing URL", err.message)
      assert.same({ status = 200, body = "GET /ok 127.0.0.1:" .. PORT },
        t:request{ method = "GET", url = BASE .. "/ok" })
    end
  end)
end)
