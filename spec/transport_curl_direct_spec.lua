-- The curl transport's direct exchange: libcurl opens the connection, and the transport writes each request and
-- reads each answer itself (src/curl_direct.c, src/http_answer.c). Against a small nginx of this spec's own
-- (127.0.0.1:18192, one worker): /head echoes the request head as it arrived, /raw sends the bytes it is given (hex)
-- as the whole answer over the raw socket, whatever they are, and the stand-in for a connection dropped under a
-- request. What it must keep from libcurl: the same request bytes, the same answers, the same words for failures,
-- and a request sent twice only when a kept-alive connection died under it, said as `resent`.
local core = require "wechat.core"
local curl = require "wechat.work.transport.curl"
local nginx = require "helpers.nginx"
local standin = require "helpers.standin"
local interpreter = require "helpers.interpreter"
local shell_quote = require("helpers.shell").quote

local PORT = 18192
local BASE = "http://127.0.0.1:" .. PORT

local SERVER = [[
    location /head {
      content_by_lua_block {
        ngx.req.read_body()
        ngx.print(ngx.req.raw_header(), ngx.req.get_body_data() or "")
      }
    }
    location = /raw {
      content_by_lua_block {
        local answer = ngx.var.arg_h:gsub("..", function(x) return string.char(tonumber(x, 16)) end)
        local sock = assert(ngx.req.socket(true))
        assert(sock:send(answer))
      }
    }
    # a header section of 100 KiB and more, too long for /raw's URL
    location = /big-head {
      content_by_lua_block {
        local sock = assert(ngx.req.socket(true))
        assert(sock:send("HTTP/1.1 200 OK\r\nX-Big: " .. string.rep("b", 102400) .. "\r\n\r\n"))
      }
    }
    location = /conn { return 200 "$connection $connection_requests"; }
    location = /hello { return 200 "hello"; }
    # the connection is closed 100 ms after this answer: idle, from the client's side
    location = /conn-short { keepalive_timeout 100ms; return 200 "$connection $connection_requests"; }
]]

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- Over a new connection each: nginx closes a connection after a raw-socket request, and a request sent on it in
-- the meantime would be sent again (and said resent), as it should be, but not what these specs are about.
local function raw(answer)
  return { method = "GET", url = BASE .. "/raw?h=" .. hex(answer), fresh = true }
end

local function sleep(seconds)
  os.execute("sleep " .. seconds)
end

describe("wechat.work.transport.curl, direct exchange", function()
  local app
  setup(function()
    app = nginx.start{ name = "curl-direct", port = PORT, workers = 1, server = SERVER, log_level = "warn" }
  end)
  teardown(function()
    if app then app:stop() end
  end)

  local t
  after_each(function()
    if t then t:close() end
    t = nil
  end)

  describe("requests", function()
    local POST_HEAD = "POST /head?access_token=T HTTP/1.1\r\nHost: 127.0.0.1:" .. PORT .. "\r\n"
      .. "User-Agent: lua-wechat-work/0.1.0\r\nAccept: */*\r\nContent-Type: application/json; charset=utf-8\r\n"
      .. "Content-Length: 13\r\n\r\n"
    local GET_HEAD = "GET /head?x=%41&y=1 HTTP/1.1\r\nHost: 127.0.0.1:" .. PORT .. "\r\n"
      .. "User-Agent: lua-wechat-work/0.1.0\r\nAccept: */*\r\n\r\n"

    it("writes the request head libcurl writes, byte for byte", function()
      t = assert(curl.new())
      local post = { method = "POST", url = BASE .. "/head?access_token=T", body = '{"touser":1}\n' }
      local get = { method = "GET", url = BASE .. "/head?x=%41&y=1" }
      assert.same({ status = 200, body = POST_HEAD .. '{"touser":1}\n' }, t:request(post))
      assert.same({ status = 200, body = GET_HEAD }, t:request(get))
      -- libcurl's own request (a batch goes through curl_easy_perform) is the same
      local results = t:run({ function() return t:request(post), t:request(get) end }, 1)
      assert.same({ n = 3, { status = 200, body = POST_HEAD .. '{"touser":1}\n' }, { status = 200, body = GET_HEAD } },
        results[1])
      assert.same({ requests = 2, connects = 1 }, t:stats())
    end)

    it("writes the path as libcurl does: dot segments gone, bytes outside ASCII escaped, the query as given", function()
      t = assert(curl.new())
      local res = assert(t:request{ method = "GET", url = BASE .. "/x/../head/你好?q=好" })
      assert.are.equal("GET /head/%e4%bd%a0%e5%a5%bd?q=好 HTTP/1.1\r\nHost: 127.0.0.1:" .. PORT .. "\r\n",
        res.body:match("^[^\n]*\n[^\n]*\n"))
    end)

    it("sends a body larger than its buffer in two writes, whole", function()
      t = assert(curl.new())
      local body = string.rep("0123456789abcdef", 4096) -- 64 KiB
      local res = assert(t:request{ method = "POST", url = BASE .. "/head", body = body })
      assert.are.equal(200, res.status)
      assert.are.equal(body, res.body:sub(-#body))
      assert.truthy(res.body:find("\r\nContent-Length: 65536\r\n\r\n", 1, true))
    end)

    it("goes through libcurl when the environment names a proxy, as libcurl would use it", function()
      local child = "package.path = 'lua/?.lua;' .. package.path; package.cpath = "
        .. "'build/" .. (rawget(_G, "jit") and "jit" or "5.4") .. "/?.so;' .. package.cpath; "
        .. "local t = require('wechat.work.transport.curl').new(); "
        .. "io.write(t:request{ method = 'GET', url = 'http://localhost.invalid:" .. PORT .. "/head' }.body)"
      local function run(env)
        local p = assert(io.popen(env .. " " .. interpreter.command() .. " -e " .. shell_quote(child)))
        local out = p:read("a")
        p:close()
        return out
      end
      -- the spec's nginx is the proxy: it serves the absolute-form request for its own location
      local via_proxy = run("env http_proxy=" .. BASE)
      assert.are.equal("GET http://localhost.invalid:" .. PORT .. "/head HTTP/1.1\r\n", via_proxy:match("^[^\n]*\n"))
      assert.truthy(via_proxy:find("\r\nProxy-Connection: Keep-Alive\r\n", 1, true))
    end)
  end)

  describe("answers", function()
    it("skips interim answers and reads the final one", function()
      t = assert(curl.new())
      assert.same({ status = 201, body = "{}" }, t:request(raw("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\n"
        .. "Link: </x>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}")))
    end)

    it("reads a chunked answer with extensions and a trailer", function()
      t = assert(curl.new())
      assert.same({ status = 200, body = '{"errcode":0}' }, t:request(raw("HTTP/1.1 200 OK\r\n"
        .. "Transfer-Encoding: chunked\r\n\r\n4;name=\"a b\"\r\n{\"er\r\n9\r\nrcode\":0}\r\n0\r\n"
        .. "X-Trailer: t\r\n\r\n")))
    end)

    it("reads the codings of two Transfer-Encoding lines as one list, chunked last, and sizes with leading zeros",
      function()
        t = assert(curl.new())
        assert.same({ status = 200, body = "abc" }, t:request(raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n"
          .. "Transfer-Encoding: chunked\r\n\r\n0000000000000003\r\nabc\r\n0\r\n\r\n")))
        -- a line without a coding changes nothing
        assert.same({ status = 200, body = "abc" }, t:request(raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
          .. "Transfer-Encoding: ,\r\n\r\n3\r\nabc\r\n0\r\n\r\n")))
        assert.same({ status = 200, body = "abc" }, t:request(raw("HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n"
          .. "Content-Length: 3\r\n\r\nabc")))
        -- chunked not last: the body is what comes until the close, framing and all
        assert.same({ status = 200, body = "3\r\nabc\r\n" }, t:request(raw("HTTP/1.1 200 OK\r\n"
          .. "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n3\r\nabc\r\n")))
      end)

    it("reads an HTTP/1.0 answer ended by the close, bare line ends too", function()
      t = assert(curl.new())
      assert.same({ status = 500, body = "boom\r\n" }, t:request(raw("HTTP/1.0 500 Oops\nServer: x\n\nboom\r\n")))
    end)

    it("takes no body with a 204, and no byte after an answer as the next one's", function()
      t = assert(curl.new())
      assert.same({ status = 204, body = "" },
        t:request(raw("HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\nHTTP/1.1 200 OK\r\n\r\n")))
      assert.same({ status = 200, body = "{}" },
        t:request(raw("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 200 OK\r\n\r\n")))
      assert.same({ status = 200, body = "hello" }, t:request{ method = "GET", url = BASE .. "/hello" })
    end)

    local refused = {
      { "not HTTP", "SSH-2.0-OpenSSH_9.2\r\n\r\n", "other", "Unsupported HTTP version in response" },
      { "a status of two digits", "HTTP/1.1 20 OK\r\n\r\n", "other", "Invalid status line" },
      { "a header line without a colon", "HTTP/1.1 200 OK\r\nbroken\r\n\r\n", "other",
        "Invalid header line in response" },
      { "two Content-Lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc", "other",
        "Conflicting Content-Length values in response" },
      { "a Content-Length that is no number", "HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nab", "other",
        "Invalid Content-Length in response" },
      { "a chunk size that is no number", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "other",
        "Invalid chunk size" },
      { "a switch of protocols", "HTTP/1.1 101 Switching Protocols\r\n\r\n", "other",
        "Unexpected 101 Switching Protocols" },
      { "a header section over 100 KiB", { method = "GET", url = BASE .. "/big-head" }, "other",
        "Answer header section too large" },
      { "a close in the header", "HTTP/1.1 200 OK\r\nContent-Len", "recv", "Connection closed in the answer's header" },
      { "a close in a chunked body", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "recv",
        "transfer closed with outstanding read data remaining" },
      { "a close in a sized body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "recv",
        "transfer closed with 7 bytes remaining to read" },
      { "no answer at all", "", "recv", "Empty reply from server" },
    }
    for _, case in ipairs(refused) do
      it("fails " .. case[1] .. " (" .. case[3] .. "), then works again", function()
        t = assert(curl.new())
        local res, err = t:request(type(case[2]) == "table" and case[2] or raw(case[2]))
        assert.is_nil(res)
        assert.same({ "transport", case[3], case[4] }, { err.kind, err.reason, err.message })
        assert.is_nil(err.resent)
        assert.same({ status = 200, body = "hello" }, t:request{ method = "GET", url = BASE .. "/hello" })
      end)
    end
  end)

  describe("connections", function()
    it("opens a new connection for fresh = true, and for another origin, without saying resent", function()
      t = assert(curl.new())
      local first = assert(t:request{ method = "GET", url = BASE .. "/conn" })
      local fresh = assert(t:request{ method = "GET", url = BASE .. "/conn", fresh = true })
      assert.are_not.equal(first.body:match("^%d+"), fresh.body:match("^%d+"))
      assert.are.equal("1", fresh.body:match(" (%d+)$"))
      local other = assert(t:request{ method = "GET", url = "http://localhost:" .. PORT .. "/conn" })
      assert.same({ status = 200, body = other.body:match("^%d+") .. " 1" }, other)
      assert.same({ requests = 3, connects = 3 }, t:stats())
    end)

    it("finds an idle connection the server closed before sending on it: one request, not resent", function()
      t = assert(curl.new())
      local first = assert(t:request{ method = "GET", url = BASE .. "/conn-short" })
      sleep(0.5) -- nginx closes it after 100 ms
      local second = t:request{ method = "GET", url = BASE .. "/conn" }
      assert.same({ status = 200, body = second.body:match("^%d+") .. " 1" }, second)
      assert.are_not.equal(first.body:match("^%d+"), second.body:match("^%d+"))
      assert.same({ requests = 2, connects = 2 }, t:stats())
    end)

    describe("against the stand-in", function()
      setup(standin.start)
      teardown(standin.stop)
      before_each(standin.reset)

      local function sync_msg()
        return { method = "POST", url = standin.url() .. "/cgi-bin/kf/sync_msg?access_token=NEVER_ISSUED", body = "{}" }
      end
      local INVALID_TOKEN = '{"errcode":40014,"errmsg":"invalid access_token"}'

      it("sends once more, saying resent, when a kept-alive connection closes under a request", function()
        t = assert(curl.new())
        assert.same({ status = 200, body = INVALID_TOKEN }, t:request(sync_msg()))
        standin.script("/cgi-bin/kf/sync_msg", { close = true })
        assert.same({ status = 200, body = INVALID_TOKEN, resent = true }, t:request(sync_msg()))
        assert.same({ ["/cgi-bin/kf/sync_msg"] = 3 }, standin.counts())
        assert.same({ requests = 2, connects = 2 }, t:stats())
      end)

      it("does not send again when the connection was new: recv, one request", function()
        t = assert(curl.new())
        standin.script("/cgi-bin/kf/sync_msg", { close = true })
        local res, err = t:request(sync_msg())
        assert.is_nil(res)
        assert.same({ "recv", "Empty reply from server" }, { err.reason, err.message })
        assert.same({ ["/cgi-bin/kf/sync_msg"] = 1 }, standin.counts())
      end)

      it("speaks HTTP/1.1 over TLS to a server that offers h2 (ALPN agrees on http/1.1)", function()
        local dir = standin.cafile():match("^(.*)/[^/]*$")
        local h2 = nginx.start{ name = "curl-direct-h2", port = 18193, workers = 1, listen = "ssl http2",
          log_level = "warn", server = "ssl_certificate " .. dir .. "/server.pem;\n"
            .. "ssl_certificate_key " .. dir .. "/server.key;\n"
            .. 'location = /version { return 200 "$server_protocol"; }' }
        t = assert(curl.new{ cafile = standin.cafile() })
        local res, err = t:request{ method = "GET", url = "https://127.0.0.1:18193/version" }
        local again = t:request{ method = "GET", url = "https://127.0.0.1:18193/version" }
        h2:stop()
        assert.same({ status = 200, body = "HTTP/1.1" }, res, tostring(err))
        assert.same({ status = 200, body = "HTTP/1.1" }, again)
        assert.same({ requests = 2, connects = 1 }, t:stats())
      end)

      it("posts 8 MiB over TLS 1.2 to a server that reads slowly, whole", function()
        -- TLS 1.2 leaves nothing to read after the handshake, so a write held up waits for the socket to take more
        -- and for nothing else
        local dir = standin.cafile():match("^(.*)/[^/]*$")
        local slow = nginx.start{ name = "curl-direct-tls12", port = 18194, workers = 1, listen = "ssl",
          log_level = "warn", server = "ssl_certificate " .. dir .. "/server.pem;\n"
            .. "ssl_certificate_key " .. dir .. "/server.key;\nssl_protocols TLSv1.2;\n" .. [[
            location = /slow-read {
              content_by_lua_block {
                local sock = assert(ngx.req.socket())
                local left, parts = tonumber(ngx.var.http_content_length), {}
                while left > 0 do
                  local piece = assert(sock:receive(math.min(left, 65536)))
                  parts[#parts + 1] = piece
                  left = left - #piece
                  ngx.sleep(0.001)
                end
                local body = table.concat(parts)
                ngx.print(#body, " ", (ngx.sha1_bin(body):gsub(".", function(c)
                  return string.format("%02x", c:byte())
                end)))
              }
            }
          ]] }
        t = assert(curl.new{ cafile = standin.cafile(), timeout = 30 })
        local body = string.rep("0123456789abcdef", 524288)
        local res, err = t:request{ method = "POST", url = "https://127.0.0.1:18194/slow-read", body = body }
        slow:stop()
        assert.same({ status = 200, body = #body .. " " .. core.sha1_hex(body) }, res, tostring(err))
      end)

      it("reads HTTPS answers over the connection libcurl verified", function()
        t = assert(curl.new{ cafile = standin.cafile() })
        local req = sync_msg()
        req.url = standin.https_url() .. "/cgi-bin/kf/sync_msg?access_token=NEVER_ISSUED"
        for _ = 1, 5 do
          assert.same({ status = 200, body = INVALID_TOKEN }, t:request(req))
        end
        assert.same({ requests = 5, connects = 1 }, t:stats())
      end)
    end)
  end)
end)
