-- The libcurl transport against real servers: a small nginx of this spec's own (127.0.0.1:18190, one worker) for
-- what only a plain HTTP server shows (the connection each request came on, the request headers, chunked and
-- sized answers), and the WeCom stand-in (spec/helpers/standin.lua) for the API paths and HTTPS with its CA.
-- Keep-alive is shown both ways: nginx's $connection/$connection_requests echoed in the body, and the
-- transport's own stats() (libcurl's CURLINFO_NUM_CONNECTS summed over requests).
local core = require "wechat.core"
local curl = require "wechat.work.transport.curl"
local errors = require "wechat.work.errors"
local nginx = require "helpers.nginx"
local standin = require "helpers.standin"
local cjson = require "cjson"
local ports = require "helpers.ports"

local PORT = 18190
local BASE = "http://127.0.0.1:" .. PORT

local SERVER = [[
    location = /hello { return 200 "hello"; }
    location = /missing { return 404 "nope"; }
    # Which connection, and how many requests it has carried: equal first numbers = one kept-alive connection.
    location = /conn { return 200 "$connection $connection_requests"; }
    location = /echo {
      content_by_lua_block {
        ngx.req.read_body()
        local h = ngx.req.get_headers()
        ngx.print(ngx.req.get_method(), "|", h["content-type"] or "-", "|", h["content-length"] or "-", "|",
          h["expect"] or "-", "|", h["user-agent"] or "-", "|", ngx.req.get_body_data() or "")
      }
    }
    location = /slow { content_by_lua_block { ngx.sleep(3) ngx.print("late") } }
    # n bytes, chunked: the size is known only while it arrives.
    location = /chunked { content_by_lua_block { ngx.print(string.rep("x", tonumber(ngx.var.arg_n))) } }
    # n bytes with a Content-Length announced up front.
    location = /sized {
      content_by_lua_block {
        local n = tonumber(ngx.var.arg_n)
        ngx.header["Content-Length"] = n
        ngx.print(string.rep("y", n))
      }
    }
]]

local closed_port = ports.closed

describe("wechat.work.transport.curl", function()
  local app
  setup(function()
    app = nginx.start{ name = "curl-transport", port = PORT, workers = 1, server = SERVER, log_level = "warn" }
  end)
  teardown(function()
    if app then app:stop() end
  end)

  local t
  after_each(function()
    if t then t:close() end
    t = nil
  end)

  describe("HTTP answers", function()
    it("returns status and body of a GET", function()
      t = assert(curl.new())
      assert.same({ status = 200, body = "hello" }, t:request{ method = "GET", url = BASE .. "/hello" })
    end)

    it("returns a non-200 answer as a result, not an error", function()
      t = assert(curl.new())
      assert.same({ status = 404, body = "nope" }, t:request{ method = "GET", url = BASE .. "/missing" })
    end)

    it("posts the body byte for byte as JSON, without Expect: 100-continue", function()
      t = assert(curl.new{ user_agent = "spec-agent/1" })
      local body = '{"touser":"u","text":{"content":"你好，客服 👋🏻 ✅ \\u0000 \\"q\\""}}'
      local res = t:request{ method = "POST", url = BASE .. "/echo?access_token=T", body = body }
      assert.same({
        status = 200,
        body = "POST|application/json; charset=utf-8|" .. #body .. "|-|spec-agent/1|" .. body,
      }, res)
    end)

    it("posts a 1 MiB body intact", function()
      t = assert(curl.new())
      local chunk = "0123456789abcdef微信客服😀"
      local body = string.rep(chunk, math.floor(1048576 / #chunk))
      local res = t:request{ method = "POST", url = BASE .. "/echo", body = body }
      assert.are.equal(200, res.status)
      assert.are.equal("POST|application/json; charset=utf-8|" .. #body .. "|-|lua-wechat-work/0.1.0|" .. body,
        res.body)
    end)

    it("posts an empty body when body is nil", function()
      t = assert(curl.new())
      assert.same({ status = 200, body = "POST|application/json; charset=utf-8|0|-|lua-wechat-work/0.1.0|" },
        t:request{ method = "POST", url = BASE .. "/echo" })
    end)

    it("sends a GET without a body or Content-Type", function()
      t = assert(curl.new())
      assert.same({ status = 200, body = "GET|-|-|-|lua-wechat-work/0.1.0|" },
        t:request{ method = "GET", url = BASE .. "/echo" })
    end)
  end)

  describe("keep-alive", function()
    it("carries 20 requests over one connection", function()
      t = assert(curl.new())
      local first = assert(t:request{ method = "GET", url = BASE .. "/conn" })
      local conn = first.body:match("^(%d+) 1$")
      assert.is_string(conn)
      for i = 2, 20 do
        local res = t:request{ method = i % 2 == 0 and "POST" or "GET", url = BASE .. "/conn",
          body = i % 2 == 0 and "{}" or nil }
        assert.same({ status = 200, body = conn .. " " .. i }, res)
      end
      assert.same({ requests = 20, connects = 1 }, t:stats())
    end)

    it("gives two transports two connections", function()
      t = assert(curl.new())
      local other = assert(curl.new())
      local a = t:request{ method = "GET", url = BASE .. "/conn" }.body:match("^(%d+) 1$")
      local b = other:request{ method = "GET", url = BASE .. "/conn" }.body:match("^(%d+) 1$")
      other:close()
      assert.is_string(a)
      assert.is_string(b)
      assert.are_not.equal(a, b)
    end)
  end)

  describe("transport failures", function()
    it("reports a timeout, then works again", function()
      t = assert(curl.new{ timeout = 1 }) -- /slow answers after 3 s
      local res, err = t:request{ method = "GET", url = BASE .. "/slow?access_token=SECRET_TOKEN" }
      assert.is_nil(res)
      assert.is_true(errors.is(err, "transport"))
      assert.are.equal("timeout", err.reason)
      assert.matches("^Operation timed out after %d+ milliseconds with 0 bytes received$", err.message)
      assert.are.equal("wechat: transport error: " .. err.message, tostring(err))
      assert.same({ status = 200, body = "hello" }, t:request{ method = "GET", url = BASE .. "/hello" })
      assert.same({ requests = 2, connects = 2 }, t:stats())
    end)

    it("reports a connect timeout, then works again", function()
      local port, close = ports.unanswered() -- its accept queue is full: a connect waits until its timeout
      t = assert(curl.new{ connect_timeout = 0.3, timeout = 10 })
      local res, err = t:request{ method = "POST",
        url = "http://127.0.0.1:" .. port .. "/cgi-bin/kf/send_msg?access_token=SECRET_TOKEN", body = "{}" }
      close()
      assert.is_nil(res)
      -- nothing went out: reason "connect". libcurl words it one of two ways, by where the timeout caught it.
      assert.are.same({ "transport", "connect" }, { err.kind, err.reason })
      local failed = "^Failed to connect to 127%.0%.0%.1 port " .. port .. " after %d+ ms: Timeout was reached$"
      assert.is_truthy(err.message:find(failed) or err.message:find("^Connection timeout after %d+ ms$"),
        err.message)
      assert.same({ status = 200, body = "hello" }, t:request{ method = "GET", url = BASE .. "/hello" })
      assert.same({ requests = 2, connects = 1 }, t:stats())
    end)

    it("reports a refused connection without the query string", function()
      t = assert(curl.new())
      local port = closed_port()
      local res, err = t:request{ method = "POST",
        url = "http://127.0.0.1:" .. port .. "/cgi-bin/kf/send_msg?access_token=SECRET_TOKEN", body = "{}" }
      assert.is_nil(res)
      assert.are.equal("transport", err.kind)
      assert.are.equal("connect", err.reason)
      assert.matches("^Failed to connect to 127%.0%.0%.1 port " .. port .. " after %d+ ms: Couldn't connect to server$",
        err.message)
      assert.is_nil(tostring(err):find("SECRET_TOKEN", 1, true))
      assert.is_nil(tostring(err):find("?", 1, true))
    end)

    it("stops a chunked answer over max_response", function()
      t = assert(curl.new{ max_response = 1000 })
      local res, err = t:request{ method = "GET", url = BASE .. "/chunked?n=1001" }
      assert.is_nil(res)
      assert.are.equal("too_large", err.reason)
      assert.are.equal("response too large (over 1000 bytes)", err.message)
      assert.same({ status = 200, body = string.rep("x", 1000) },
        t:request{ method = "GET", url = BASE .. "/chunked?n=1000" })
    end)

    it("stops an answer whose Content-Length is over max_response", function()
      t = assert(curl.new{ max_response = 1000 })
      local res, err = t:request{ method = "GET", url = BASE .. "/sized?n=5000" }
      assert.is_nil(res)
      assert.are.equal("too_large", err.reason)
      assert.are.equal("response too large (over 1000 bytes)", err.message)
      assert.same({ status = 200, body = string.rep("y", 1000) },
        t:request{ method = "GET", url = BASE .. "/sized?n=1000" })
    end)

    it("takes answers up to the default 4 MiB", function()
      t = assert(curl.new())
      local res = t:request{ method = "GET", url = BASE .. "/chunked?n=4194304" }
      assert.are.equal(200, res.status)
      assert.are.equal(string.rep("x", 4194304), res.body)
      local _, err = t:request{ method = "GET", url = BASE .. "/chunked?n=4194305" }
      assert.are.equal("too_large", err.reason)
      assert.are.equal("response too large (over 4194304 bytes)", err.message)
    end)
  end)

  describe("closing", function()
    it("raises on use after close, and closes twice quietly", function()
      t = assert(curl.new())
      assert.is_true(t:close())
      assert.is_true(t:close())
      assert.has_error(function() t:request{ method = "GET", url = BASE .. "/hello" } end,
        "curl transport is closed")
      assert.has_error(function() t:stats() end, "curl transport is closed")
    end)

    it("raises from the C handle too, and prints its state", function()
      local h = assert(core.curl_new())
      assert.matches("^wechat%.curl %(0?x?%x+%)$", tostring(h))
      h:close()
      assert.are.equal("wechat.curl (closed)", tostring(h))
      assert.same({ false, "curl transport is closed" }, { pcall(h.request, h, "GET", BASE .. "/hello") })
      assert.same({ false, "curl transport is closed" }, { pcall(h.stats, h) })
      assert.are.equal("wechat.curl", getmetatable(h))
    end)

    it("closes at the end of a to-be-closed variable (Lua 5.4; __close elsewhere)", function()
      if _VERSION ~= "Lua 5.4" then
        -- no <close> syntax here: the metamethod it would call is there and closes all the same
        local kept = assert(curl.new())
        assert.are.equal(kept.close, getmetatable(kept).__close)
        getmetatable(kept).__close(kept)
        assert.is_true(kept.closed)
        assert.has_error(function() kept:request{ method = "GET", url = BASE .. "/hello" } end,
          "curl transport is closed")
        return
      end
      local chunk = assert(load([[
        local curl, url = ...
        local kept
        do
          local t <close> = assert(curl.new())
          kept = t
          assert(t:request{ method = "GET", url = url }.status == 200)
        end
        return kept
      ]]))
      local kept = chunk(curl, BASE .. "/hello")
      assert.is_true(kept.closed)
      assert.has_error(function() kept:request{ method = "GET", url = BASE .. "/hello" } end,
        "curl transport is closed")
    end)
  end)

  describe("arguments", function()
    it("names a wrong option", function()
      assert.has_error(function() curl.new{ timeout = "10" } end,
        "bad argument #1 to 'new' (opts.timeout: number of seconds expected, got string)")
      assert.has_error(function() curl.new{ connect_timeout = 0 } end,
        "bad argument #1 to 'new' (opts.connect_timeout: must be > 0 and <= 86400 seconds, got 0)")
      assert.has_error(function() curl.new{ max_response = 0 } end,
        "bad argument #1 to 'new' (opts.max_response: must be an integer 1..1073741824, got 0)")
      assert.has_error(function() curl.new{ ssl_verify = "no" } end,
        "bad argument #1 to 'new' (opts.ssl_verify: boolean expected, got string)")
      assert.has_error(function() curl.new{ cafile = 1 } end,
        "bad argument #1 to 'new' (opts.cafile: string expected, got number)")
      assert.has_error(function() curl.new(5) end, "bad argument #1 to 'new' (table or nil expected, got number)")
    end)

    it("ignores options that are not its own", function()
      t = assert(curl.new{ corpid = "wwCORP", timeout = 5 })
      assert.same({ status = 200, body = "hello" }, t:request{ method = "GET", url = BASE .. "/hello" })
    end)

    it("names a wrong request field", function()
      t = assert(curl.new())
      assert.has_error(function() t:request("GET") end, "bad argument #1 to 'request' (table expected, got string)")
      assert.has_error(function() t:request{ method = "PUT", url = BASE } end,
        "bad argument #1 to 'request' (req.method: \"GET\" or \"POST\" expected, got \"PUT\")")
      assert.has_error(function() t:request{ method = "GET" } end,
        "bad argument #1 to 'request' (req.url: string expected, got nil)")
      assert.has_error(function() t:request{ method = "GET", url = "ftp://127.0.0.1/" } end,
        "bad argument #1 to 'request' (req.url: http:// or https:// URL expected)")
      assert.has_error(function() t:request{ method = "POST", url = BASE, body = {} } end,
        "bad argument #1 to 'request' (req.body: string or nil expected, got table)")
      assert.has_error(function() t:request{ method = "GET", url = BASE, body = "x" } end,
        "bad argument #1 to 'request' (req.body: a GET request has no body)")
      assert.same({ requests = 0, connects = 0 }, t:stats())
    end)
  end)

  describe("against the WeCom stand-in", function()
    setup(standin.start)
    teardown(standin.stop)
    before_each(function()
      standin.reset()
      standin.wrote("wkKF", "wmCUST")
    end)

    local function token_body(token)
      return '{"errcode":0,"errmsg":"ok","access_token":"' .. token .. '","expires_in":7200}'
    end

    it("GETs a token and POSTs send_msg with Chinese and emoji byte for byte", function()
      t = assert(curl.new())
      local res = assert(t:request{ method = "GET",
        url = standin.url() .. "/cgi-bin/gettoken?corpid=wwCORP&corpsecret=KF_SECRET" })
      local token = cjson.decode(res.body).access_token
      assert.matches("^ST%x+$", token)
      assert.same({ status = 200, body = token_body(token) }, res)

      local body = '{"touser":"wmCUST","open_kfid":"wkKF","msgid":"m-1","msgtype":"text",'
        .. '"text":{"content":"您好！欢迎咨询微信客服 😀👍🏽🇨🇳 ≥ \\"quoted\\" \\n end"}}'
      res = t:request{ method = "POST", url = standin.url() .. "/cgi-bin/kf/send_msg?access_token=" .. token,
        body = body }
      assert.same({ status = 200, body = '{"errcode":0,"errmsg":"ok","msgid":"m-1"}' }, res)
      local seen = standin.requests("/cgi-bin/kf/send_msg")
      assert.are.equal(1, #seen)
      assert.are.equal("POST", seen[1].method)
      assert.same({ access_token = token }, seen[1].args)
      assert.are.equal(body, seen[1].body)
      assert.same({ requests = 2, connects = 1 }, t:stats())
    end)

    -- An answer that does not depend on time: a KF call with a token never issued.
    local INVALID_TOKEN = '{"errcode":40014,"errmsg":"invalid access_token"}'
    local function sync_msg(base)
      return { method = "POST", url = base .. "/cgi-bin/kf/sync_msg?access_token=NEVER_ISSUED", body = "{}" }
    end

    it("verifies HTTPS with the CA given as cafile", function()
      t = assert(curl.new{ cafile = standin.cafile() })
      assert.same({ status = 200, body = INVALID_TOKEN }, t:request(sync_msg(standin.https_url())))
      local localhost = standin.https_url():gsub("127%.0%.0%.1", "localhost")
      -- another origin: a new connection, opened before anything was sent, so not resent
      assert.same({ status = 200, body = INVALID_TOKEN }, t:request(sync_msg(localhost)))
      assert.same({ ["/cgi-bin/kf/sync_msg"] = 2 }, standin.counts())
      assert.same({ requests = 2, connects = 2 }, t:stats())
    end)

    it("says resent in a batch too, unless the request asked for a fresh connection", function()
      t = assert(curl.new{ cafile = standin.cafile() })
      local localhost = standin.https_url():gsub("127%.0%.0%.1", "localhost")
      local fresh = sync_msg(standin.https_url())
      fresh.fresh = true
      local results = t:run({ function()
        return t:request(sync_msg(standin.https_url())), t:request(sync_msg(localhost)), t:request(fresh)
      end }, 1)
      assert.same({ n = 3, { status = 200, body = INVALID_TOKEN },
        { status = 200, body = INVALID_TOKEN, resent = true }, { status = 200, body = INVALID_TOKEN } }, results[1])
      assert.same({ ["/cgi-bin/kf/sync_msg"] = 3 }, standin.counts())
    end)

    it("keeps one HTTPS connection for 20 requests", function()
      t = assert(curl.new{ cafile = standin.cafile() })
      for _ = 1, 20 do
        assert.same({ status = 200, body = INVALID_TOKEN }, t:request(sync_msg(standin.https_url())))
      end
      assert.same({ requests = 20, connects = 1 }, t:stats())
      assert.same({ ["/cgi-bin/kf/sync_msg"] = 20 }, standin.counts())
    end)

    it("fails HTTPS with reason tls when the CA is not trusted", function()
      t = assert(curl.new())
      local res, err = t:request(sync_msg(standin.https_url()))
      assert.is_nil(res)
      assert.are.equal("transport", err.kind)
      assert.are.equal("tls", err.reason)
      assert.are.equal("SSL certificate problem: unable to get local issuer certificate", err.message)
      assert.same({}, standin.counts())
    end)

    it("fails HTTPS with reason tls when cafile cannot be read", function()
      t = assert(curl.new{ cafile = "/nonexistent/ca.pem" })
      local res, err = t:request(sync_msg(standin.https_url()))
      assert.is_nil(res)
      assert.are.equal("tls", err.reason)
      assert.are.equal("error setting certificate file: /nonexistent/ca.pem", err.message)
    end)

    it("talks HTTPS without a CA when ssl_verify is false", function()
      t = assert(curl.new{ ssl_verify = false })
      assert.same({ status = 200, body = INVALID_TOKEN }, t:request(sync_msg(standin.https_url())))
    end)

    it("reports a delayed answer as a timeout", function()
      t = assert(curl.new{ timeout = 0.3 })
      standin.script("/cgi-bin/kf/send_msg", { delay = 3 })
      local res, err = t:request{ method = "POST", url = standin.url() .. "/cgi-bin/kf/send_msg?access_token=SECRET",
        body = "{}" }
      assert.is_nil(res)
      assert.are.equal("timeout", err.reason)
      assert.matches("^Operation timed out after %d+ milliseconds with 0 bytes received$", err.message)
    end)

    it("reports a connection closed without an answer as recv", function()
      t = assert(curl.new())
      standin.script("/cgi-bin/kf/send_msg", { close = true })
      local res, err = t:request{ method = "POST", url = standin.url() .. "/cgi-bin/kf/send_msg?access_token=SECRET",
        body = "{}" }
      assert.is_nil(res)
      assert.are.equal("recv", err.reason)
      assert.are.equal("Empty reply from server", err.message)
    end)

    it("reports a truncated answer as recv", function()
      t = assert(curl.new())
      standin.script("/cgi-bin/kf/send_msg", { truncate = true })
      local res, err = t:request{ method = "POST", url = standin.url() .. "/cgi-bin/kf/send_msg?access_token=SECRET",
        body = "{}" }
      assert.is_nil(res)
      assert.are.equal("recv", err.reason)
      assert.are.equal("transfer closed with 36 bytes remaining to read", err.message)
    end)

    it("stops a huge answer at max_response", function()
      t = assert(curl.new{ max_response = 65536 })
      standin.script("/cgi-bin/kf/sync_msg", { huge = 65537 })
      local res, err = t:request{ method = "POST", url = standin.url() .. "/cgi-bin/kf/sync_msg?access_token=SECRET",
        body = "{}" }
      assert.is_nil(res)
      assert.are.equal("too_large", err.reason)
      assert.are.equal("response too large (over 65536 bytes)", err.message)
      standin.script("/cgi-bin/kf/sync_msg", { huge = 65536 })
      res = assert(t:request{ method = "POST", url = standin.url() .. "/cgi-bin/kf/sync_msg?access_token=SECRET",
        body = "{}" })
      assert.are.equal(200, res.status)
      assert.are.equal(65536, #res.body)
      assert.are.equal('{"errcode":0,"errmsg":"ok","padding":"', res.body:sub(1, 38))
    end)
  end)

  it("names the libcurl it runs on", function()
    assert.matches("^libcurl/%d+%.%d+%.%d+", curl.version())
    assert.are.equal(core.curl_version(), curl.version())
  end)
end)

describe("wechat.core.sha1_hex", function()
  it("gives the known SHA-1 vectors in lowercase hex", function()
    assert.are.equal("a9993e364706816aba3e25717850c26c9cd0d89d", core.sha1_hex("abc"))
    assert.are.equal("da39a3ee5e6b4b0d3255bfef95601890afd80709", core.sha1_hex(""))
    assert.are.equal("84983e441c3bd26ebaae4aa1f95129e5e54670f1",
      core.sha1_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))
    assert.are.equal("34aa973cd4c4daa4f61eeb2bdbad27316534016f", core.sha1_hex(string.rep("a", 1000000)))
    assert.are.equal("5ba93c9db0cff93f52b521d7420e43f6eda2784f", core.sha1_hex("\0"))
  end)

  it("raises on a non-string", function()
    assert.has_error(function() core.sha1_hex(nil) end, "bad argument #1 to 'sha1_hex' (string expected, got nil)")
    assert.has_error(function() core.sha1_hex(123) end,
      "bad argument #1 to 'sha1_hex' (string expected, got number)")
  end)
end)
