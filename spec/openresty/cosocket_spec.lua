-- wechat.work.transport.cosocket inside a real nginx: the spec posts a job (transport options and requests) to
-- /call, a content handler runs it with the cosocket transport against locations of the same nginx (exact
-- request headers, chunked, sized and close-delimited answers, slow and broken ones) and the WeCom stand-in
-- (HTTPS with its CA), and answers what the transport returned.
local cjson = require "cjson"
local nginx = require "helpers.nginx"
local standin = require "helpers.standin"
local socket = require "socket"
local ports = require "helpers.ports"

local PORT = 18360        -- the app
local KEEPALIVE_PORT = 18361 -- a second server, only for the keep-alive count
local UNTRUSTED_PORT = 18362 -- an app that does not trust the stand-in's CA
local STALE_PORT = 18359    -- a server that drops a kept-alive connection when the next request comes
local STALE_MANY_PORT = 18358 -- the same server on a port of its own, so that its connections pool apart

-- The job runner and the phase probes, shared by both apps.
local HTTP = [[
    lua_shared_dict results 1m;
    # a call while nginx loads its configuration must come back at once, or nginx would not start
    init_by_lua_block {
      local t = require("wechat.work.transport.cosocket").new()
      local res, err = t:request{ method = "GET", url = "http://127.0.0.1:@PORT@/hello?access_token=SECRET_TOKEN" }
      ngx.shared.results:set("init", res and "no error" or (err.kind .. "|" .. tostring(err)))
    }
    init_worker_by_lua_block {
      local t = require("wechat.work.transport.cosocket").new()
      local res, err = t:request{ method = "GET", url = "http://127.0.0.1:@PORT@/hello?access_token=SECRET_TOKEN" }
      ngx.shared.results:set("init_worker", res and "no error" or (err.kind .. "|" .. tostring(err)))
    }
    server {
      listen 127.0.0.1:@KEEPALIVE_PORT@;
      keepalive_requests 1000;
      # which connection, and how many requests it has carried
      location = /conn { return 200 "$connection $connection_requests"; }
    }
    server {
      listen 127.0.0.1:@STALE_PORT@;
      listen 127.0.0.1:@STALE_MANY_PORT@;
      # answers with keep-alive, then reads the next request on the connection and closes without a byte, as a
      # server does that drops an idle connection just when the client reuses it
      # requests seen in all are counted under the name in ?key= (default "stale")
      location = /stale {
        content_by_lua_block {
          local seen = ngx.shared.results
          local key = ngx.var.arg_key or "stale"
          local n = seen:incr(key, 1, 0)
          local sock = assert(ngx.req.socket(true))
          local body = "answer " .. n
          assert(sock:send("HTTP/1.1 200 OK\r\nContent-Length: " .. #body .. "\r\nConnection: keep-alive\r\n\r\n"
            .. body))
          if sock:receiveuntil("\r\n\r\n")() then
            seen:incr(key, 1, 0)
          end
          return ngx.exit(444)
        }
      }
    }
]]

local SERVER = [[
    location = /call {
      content_by_lua_block {
        local cjson = require "cjson"
        local cosocket = require "wechat.work.transport.cosocket"
        ngx.req.read_body()
        local job = cjson.decode(ngx.req.get_body_data())
        local t = cosocket.new(job.opts)
        local function run(req)
          if req.body_size then -- a body of that many bytes, made here rather than carried in the job
            req.body = string.rep("b", req.body_size)
          end
          local res, err = t:request(req)
          return res or { kind = err.kind, reason = err.reason, message = err.message, text = tostring(err),
            resent = err.resent }
        end
        local out = {}
        for i, req in ipairs(job.requests) do
          if req.together then -- these at once, each in its own light thread (so each on its own connection)
            local threads, results = {}, {}
            for k, r in ipairs(req.together) do
              threads[k] = ngx.thread.spawn(run, r)
            end
            for k, thread in ipairs(threads) do
              local _, res = ngx.thread.wait(thread)
              results[k] = res
            end
            out[i] = results
          else
            out[i] = run(req)
          end
        end
        ngx.print(cjson.encode({ results = out, stats = t:stats() }))
      }
    }
    location = /hello { return 200 "hello"; }
    location = /missing { return 404 "nope"; }
    location = /echo {
      content_by_lua_block {
        ngx.req.read_body()
        local h = ngx.req.get_headers()
        ngx.print(ngx.req.get_method(), "|", ngx.var.request_uri, "|", h["host"] or "-", "|",
          h["content-type"] or "-", "|", h["content-length"] or "-", "|", h["connection"] or "-", "|",
          h["user-agent"] or "-", "|", h["accept"] or "-", "|", ngx.req.get_body_data() or "")
      }
    }
    location = /slow { content_by_lua_block { ngx.sleep(3) ngx.print("late") } }
    # n bytes, chunked: the size is known only while it arrives
    location = /chunked {
      content_by_lua_block {
        local n = tonumber(ngx.var.arg_n)
        while n > 0 do
          local k = math.min(n, 3000)
          ngx.print(string.rep("x", k))
          ngx.flush(true)
          n = n - k
        end
      }
    }
    # n bytes with a Content-Length announced up front
    location = /sized {
      content_by_lua_block {
        local n = tonumber(ngx.var.arg_n)
        ngx.header["Content-Length"] = n
        ngx.print(string.rep("y", n))
      }
    }
    # neither chunked nor a length: the body ends when the connection does
    location = /unsized {
      chunked_transfer_encoding off;
      content_by_lua_block { ngx.print(string.rep("z", tonumber(ngx.var.arg_n))) }
    }
    # announces 100 bytes, sends 50, closes
    location = /truncated {
      content_by_lua_block {
        ngx.header["Content-Length"] = 100
        ngx.print(string.rep("t", 50))
        ngx.flush(true)
        return ngx.exit(ngx.ERROR)
      }
    }
    location = /close { return 444; }
    location = /big_header {
      content_by_lua_block { ngx.header["X-Big"] = string.rep("h", tonumber(ngx.var.arg_n)) ngx.print("small") }
    }
    location = /log_phase {
      content_by_lua_block { ngx.print("answered") }
      log_by_lua_block {
        local t = require("wechat.work.transport.cosocket").new()
        local res, err = t:request{ method = "GET", url = "http://127.0.0.1:@PORT@/hello" }
        ngx.shared.results:set("log", res and "no error" or (err.kind .. "|" .. tostring(err)))
      }
    }
    location = /header_filter_phase {
      content_by_lua_block { ngx.print("answered") }
      header_filter_by_lua_block {
        local t = require("wechat.work.transport.cosocket").new()
        local res, err = t:request{ method = "GET", url = "http://127.0.0.1:@PORT@/hello" }
        ngx.shared.results:set("header_filter", res and "no error" or (err.kind .. "|" .. tostring(err)))
      }
    }
    location = /body_filter_phase {
      content_by_lua_block { ngx.print("answered") }
      body_filter_by_lua_block {
        local t = require("wechat.work.transport.cosocket").new()
        local res, err = t:request{ method = "GET", url = "http://127.0.0.1:@PORT@/hello" }
        -- the filter runs once per buffer: the first result stays
        ngx.shared.results:add("body_filter", res and "no error" or (err.kind .. "|" .. tostring(err)))
      }
    }
    # reads neither the body nor anything else for a while: a client sending a large body fills the socket
    # buffers and has to wait
    location = /no_read {
      client_max_body_size 0;
      content_by_lua_block { ngx.sleep(3) ngx.print("late") }
    }
    location = /args {
      content_by_lua_block {
        local cosocket = require "wechat.work.transport.cosocket"
        local function raised(fn, ...)
          local ok, err = pcall(fn, ...)
          return ok and "no error" or (tostring(err):gsub("^[^:]+:%d+: ", ""))
        end
        local t = cosocket.new()
        local out = {
          raised(cosocket.new, { timeout = "10" }),
          raised(cosocket.new, { connect_timeout = 0 }),
          raised(cosocket.new, { max_response = 0 }),
          raised(cosocket.new, { ssl_verify = "no" }),
          raised(cosocket.new, { cafile = 1 }),
          raised(cosocket.new, { keepalive_pool = 0 }),
          raised(cosocket.new, 5),
          raised(t.request, t, "GET"),
          raised(t.request, t, { method = "PUT", url = "http://127.0.0.1/" }),
          raised(t.request, t, { method = "GET" }),
          raised(t.request, t, { method = "GET", url = "ftp://127.0.0.1/" }),
          raised(t.request, t, { method = "GET", url = "http://127.0.0.1:99999/" }),
          raised(t.request, t, { method = "POST", url = "http://127.0.0.1/", body = {} }),
          raised(t.request, t, { method = "GET", url = "http://127.0.0.1/", body = "x" }),
        }
        local stats = t:stats()
        out[#out + 1] = "requests " .. stats.requests .. ", connects " .. stats.connects
        ngx.print(table.concat(out, "\n"))
      }
    }
    location = /result {
      content_by_lua_block { ngx.print(ngx.shared.results:get(ngx.var.arg_key) or "none") }
    }
]]

local closed_port = ports.closed

local function fill(text, port)
  return (text:gsub("@PORT@", tostring(port)):gsub("@KEEPALIVE_PORT@", tostring(KEEPALIVE_PORT))
    :gsub("@STALE_PORT@", tostring(STALE_PORT)):gsub("@STALE_MANY_PORT@", tostring(STALE_MANY_PORT)))
end

local app, untrusted

local function call(target, opts, requests)
  local status, body = target:request("POST", "/call", cjson.encode({ opts = opts or {}, requests = requests }))
  assert.are.equal(200, status, body)
  local out = cjson.decode(body)
  return out.results, out.stats
end

local function one(opts, req)
  local results = call(app, opts, { req })
  return results[1]
end

local function split(text)
  local lines = {}
  for line in (text .. "\n"):gmatch("(.-)\n") do
    lines[#lines + 1] = line
  end
  return lines
end

local function url(path)
  return "http://127.0.0.1:" .. PORT .. path
end

-- The value a phase probe stored, once it is there (log handlers run after the answer went out).
local function result(key)
  for _ = 1, 100 do
    local _, value = app:request("GET", "/result?key=" .. key)
    if value ~= "none" then
      return value
    end
    socket.sleep(0.02)
  end
  return "none"
end

describe("wechat.work.transport.cosocket inside nginx #openresty", function()
  setup(function()
    standin.start()
    app = nginx.start{ name = "cosocket", port = PORT, workers = 2, trusted_certificate = standin.cafile(),
      http = fill(HTTP, PORT), server = fill(SERVER, PORT) }
  end)
  teardown(function()
    if app then app:stop() end
  end)

  describe("HTTP answers", function()
    it("returns status and body of a GET", function()
      assert.same({ status = 200, body = "hello" }, one(nil, { method = "GET", url = url("/hello") }))
    end)

    it("returns a non-200 answer as a result, not an error", function()
      assert.same({ status = 404, body = "nope" }, one(nil, { method = "GET", url = url("/missing") }))
    end)

    it("posts the body byte for byte as JSON, with Host, Content-Length and keep-alive", function()
      local body = '{"touser":"u","text":{"content":"你好，客服 👋🏻 ✅ \\u0000 \\"q\\""}}'
      assert.same({
        status = 200,
        body = "POST|/echo?access_token=T&x=1|127.0.0.1:" .. PORT .. "|application/json; charset=utf-8|" .. #body
          .. "|keep-alive|lua-wechat-work/0.1.0|application/json|" .. body,
      }, one(nil, { method = "POST", url = url("/echo?access_token=T&x=1"), body = body }))
    end)

    it("posts a 1 MiB body intact", function()
      local chunk = "0123456789abcdef微信客服😀"
      local body = string.rep(chunk, math.floor(1048576 / #chunk))
      local res = one(nil, { method = "POST", url = url("/echo"), body = body })
      assert.are.equal(200, res.status)
      assert.are.equal("POST|/echo|127.0.0.1:" .. PORT .. "|application/json; charset=utf-8|" .. #body
        .. "|keep-alive|lua-wechat-work/0.1.0|application/json|" .. body, res.body)
    end)

    it("posts an empty body when body is nil, and sends a GET without one", function()
      local results = call(app, nil, {
        { method = "POST", url = url("/echo") },
        { method = "GET", url = url("/echo") },
      })
      assert.same({
        { status = 200, body = "POST|/echo|127.0.0.1:" .. PORT
          .. "|application/json; charset=utf-8|0|keep-alive|lua-wechat-work/0.1.0|application/json|" },
        { status = 200, body = "GET|/echo|127.0.0.1:" .. PORT
          .. "|-|-|keep-alive|lua-wechat-work/0.1.0|application/json|" },
      }, results)
    end)

    it("reads chunked, sized and close-delimited bodies", function()
      local results = call(app, nil, {
        { method = "GET", url = url("/chunked?n=10000") },
        { method = "GET", url = url("/chunked?n=0") },
        { method = "GET", url = url("/sized?n=7000") },
        { method = "GET", url = url("/sized?n=0") },
        { method = "GET", url = url("/unsized?n=20000") },
      })
      assert.same({
        { status = 200, body = string.rep("x", 10000) },
        { status = 200, body = "" },
        { status = 200, body = string.rep("y", 7000) },
        { status = 200, body = "" },
        { status = 200, body = string.rep("z", 20000) },
      }, results)
    end)
  end)

  describe("keep-alive", function()
    it("carries 20 requests over one pooled connection", function()
      local requests = {}
      for i = 1, 20 do
        requests[i] = { method = i % 2 == 0 and "POST" or "GET", url = "http://127.0.0.1:" .. KEEPALIVE_PORT .. "/conn",
          body = i % 2 == 0 and "{}" or nil }
      end
      local results, stats = call(app, nil, requests)
      local conn = results[1].body:match("^(%d+) 1$")
      assert.is_string(conn)
      for i = 1, 20 do
        assert.same({ status = 200, body = conn .. " " .. i }, results[i])
      end
      assert.same({ requests = 20, connects = 1 }, stats)
    end)
  end)

  describe("max_response", function()
    it("stops a chunked answer over it", function()
      local results = call(app, { max_response = 1000 }, {
        { method = "GET", url = url("/chunked?n=1001") },
        { method = "GET", url = url("/chunked?n=1000") },
      })
      assert.same({
        { kind = "transport", reason = "too_large", message = "response too large (over 1000 bytes)",
          text = "wechat: transport error: response too large (over 1000 bytes)" },
        { status = 200, body = string.rep("x", 1000) },
      }, results)
    end)

    it("stops an answer whose Content-Length is over it, and one delimited by the close", function()
      local results = call(app, { max_response = 1000 }, {
        { method = "GET", url = url("/sized?n=5000") },
        { method = "GET", url = url("/unsized?n=1001") },
        { method = "GET", url = url("/sized?n=1000") },
      })
      local too_large = { kind = "transport", reason = "too_large", message = "response too large (over 1000 bytes)",
        text = "wechat: transport error: response too large (over 1000 bytes)" }
      assert.same({ too_large, too_large, { status = 200, body = string.rep("y", 1000) } }, results)
    end)

    it("takes answers up to the default 4 MiB", function()
      local results = call(app, nil, {
        { method = "GET", url = url("/chunked?n=4194304") },
        { method = "GET", url = url("/sized?n=4194305") },
      })
      assert.are.equal(200, results[1].status)
      assert.are.equal(string.rep("x", 4194304), results[1].body)
      assert.same({ kind = "transport", reason = "too_large", message = "response too large (over 4194304 bytes)",
        text = "wechat: transport error: response too large (over 4194304 bytes)" }, results[2])
    end)
  end)

  describe("transport failures", function()
    it("reports a read timeout, then works again", function()
      local results = call(app, { timeout = 1 }, { -- /slow answers after 3 s
        { method = "GET", url = url("/slow?access_token=SECRET_TOKEN") },
        { method = "GET", url = url("/hello") },
      })
      assert.same({
        { kind = "transport", reason = "timeout", message = "receive: timeout",
          text = "wechat: transport error: receive: timeout" },
        { status = 200, body = "hello" },
      }, results)
    end)

    it("reports a connect timeout, then works again", function()
      local port, close = ports.unanswered() -- its accept queue is full: a connect waits until its timeout
      local results, stats = call(app, { connect_timeout = 0.3, timeout = 10 }, {
        { method = "POST", url = "http://127.0.0.1:" .. port .. "/cgi-bin/kf/send_msg?access_token=SECRET_TOKEN",
          body = "{}" },
        { method = "GET", url = url("/hello") },
      })
      close()
      local message = "cannot connect to 127.0.0.1:" .. port .. ": timeout"
      assert.same({
        { kind = "transport", reason = "connect", message = message, text = "wechat: transport error: " .. message },
        { status = 200, body = "hello" },
      }, results)
      -- (no count of connects: /hello may go over a connection an earlier spec left in the pool)
      assert.are.equal(2, stats.requests)
    end)

    it("reports a send timeout when the server reads nothing of a large body, then works again", function()
      -- 32 MiB: far more than both socket buffers hold: the sender's is at most tcp_wmem's maximum (4 MiB on
      -- Debian), the receiver's stays near tcp_rmem's default (128 KiB), as the kernel enlarges it only as the
      -- server reads
      local results = call(app, { timeout = 1 }, { -- /no_read reads nothing for 3 s
        -- (no access_token in this URL: the receiving server, this nginx, logs its request line at info level)
        { method = "POST", url = url("/no_read?x=1"), body_size = 32 * 1024 * 1024 },
        { method = "GET", url = url("/hello") },
      })
      assert.same({
        { kind = "transport", reason = "timeout", message = "send: timeout",
          text = "wechat: transport error: send: timeout" },
        { status = 200, body = "hello" },
      }, results)
    end)

    it("reports a refused connection without the query string", function()
      local port = closed_port()
      local res = one(nil, { method = "POST",
        url = "http://127.0.0.1:" .. port .. "/cgi-bin/kf/send_msg?access_token=SECRET_TOKEN", body = "{}" })
      local message = "cannot connect to 127.0.0.1:" .. port .. ": connection refused"
      assert.same({ kind = "transport", reason = "connect", message = message,
        text = "wechat: transport error: " .. message }, res)
    end)

    it("reports an answer cut short and a connection closed without an answer", function()
      local results = call(app, nil, {
        { method = "GET", url = url("/truncated?access_token=SECRET_TOKEN") },
        { method = "GET", url = url("/close?access_token=SECRET_TOKEN") },
      })
      local closed = { kind = "transport", reason = "recv", message = "receive: closed",
        text = "wechat: transport error: receive: closed" }
      assert.same({ closed, closed }, results)
    end)
  end)

  it("replaces a pooled connection the server dropped once, on a new connection", function()
    local stale = "http://127.0.0.1:" .. STALE_PORT .. "/stale"
    local results, stats = call(app, nil, {
      { method = "GET", url = stale },
      { method = "POST", url = stale, body = "{}" },
    })
    -- request 2 reached the server on the pooled connection (seen: 2), was dropped, went again on a new one (3);
    -- the answer says so (resent), since the server may have acted on it twice
    assert.same({ { status = 200, body = "answer 1" }, { status = 200, body = "answer 3", resent = true } }, results)
    assert.same({ requests = 2, connects = 2 }, stats)
    assert.same({ 200, "3" }, { app:request("GET", "/result?key=stale") })
  end)

  it("sends a request marked fresh over a new connection, bypassing the pool, and never twice", function()
    local stale = "http://127.0.0.1:" .. STALE_PORT .. "/stale?key=fresh"
    local results, stats = call(app, nil, {
      { method = "GET", url = stale },
      { method = "POST", url = stale, body = "{}", fresh = true },
    })
    -- the pooled connection was left alone (the server never saw a second request on it): one answer each
    assert.same({ { status = 200, body = "answer 1" }, { status = 200, body = "answer 2" } }, results)
    assert.same({ requests = 2, connects = 2 }, stats)
    assert.same({ 200, "2" }, { app:request("GET", "/result?key=fresh") })
  end)

  it("resends over a new connection, never over another pooled one the server dropped as well", function()
    local stale = "http://127.0.0.1:" .. STALE_MANY_PORT .. "/stale?key=many"
    local get = { method = "GET", url = stale }
    local results, stats = call(app, nil, {
      { together = { get, get, get } }, -- three connections at once, all three pooled afterwards
      { method = "POST", url = stale, body = "{}" },
    })
    local bodies = {}
    for k, res in ipairs(results[1]) do
      assert.are.equal(200, res.status)
      bodies[k] = res.body
    end
    table.sort(bodies)
    assert.same({ "answer 1", "answer 2", "answer 3" }, bodies)
    -- the POST reached the server on one of the pooled connections (seen: 4), which dropped it; it went again on
    -- a new connection (5), not on the next pooled one (which would have been dropped too: "receive: closed")
    assert.same({ status = 200, body = "answer 5", resent = true }, results[2])
    assert.same({ requests = 4, connects = 4 }, stats)
    assert.same({ 200, "5" }, { app:request("GET", "/result?key=many") })
  end)

  it("refuses response headers over 64 KiB", function()
    local results = call(app, nil, {
      { method = "GET", url = url("/big_header?n=70000") },
      { method = "GET", url = url("/big_header?n=60000") },
    })
    assert.same({ kind = "transport", reason = "recv", message = "receive: response headers too large",
      text = "wechat: transport error: receive: response headers too large" }, results[1])
    assert.same({ status = 200, body = "small" }, results[2])
  end)

  describe("HTTPS", function()
    setup(function()
      untrusted = nginx.start{ name = "cosocket-untrusted", port = UNTRUSTED_PORT, workers = 1,
        trusted_certificate = "/etc/ssl/certs/ca-certificates.crt", server = fill(SERVER, UNTRUSTED_PORT) }
    end)
    teardown(function()
      if untrusted then untrusted:stop() end
    end)

    it("verifies the stand-in's certificate against lua_ssl_trusted_certificate", function()
      local results, stats = call(app, nil, {
        { method = "GET", url = standin.https_url() .. "/_standin/ping" },
        { method = "GET", url = standin.https_url() .. "/_standin/ping" },
      })
      assert.same({ { status = 200, body = "ok\n" }, { status = 200, body = "ok\n" } }, results)
      assert.are.equal(2, stats.requests)
    end)

    it("refuses a certificate from a CA nginx does not trust", function()
      local results, stats = call(untrusted, nil, {
        { method = "GET", url = standin.https_url() .. "/_standin/ping?access_token=SECRET_TOKEN" },
      })
      local message = "TLS handshake with 127.0.0.1 failed: unable to verify the first certificate"
        .. " (certificates are checked against lua_ssl_trusted_certificate)"
      assert.same({ { kind = "transport", reason = "tls", message = message,
        text = "wechat: transport error: " .. message } }, results)
      assert.same({ requests = 1, connects = 1 }, stats)
    end)

    it("skips the check when ssl_verify is false", function()
      local results = call(untrusted, { ssl_verify = false }, {
        { method = "GET", url = standin.https_url() .. "/_standin/ping" },
      })
      assert.same({ { status = 200, body = "ok\n" } }, results)
    end)
  end)

  describe("nginx phases without cosockets", function()
    local function phase_error(phase)
      return "phase|wechat: phase error: cannot send from the nginx '" .. phase
        .. "' phase: cosockets are disabled there; use a timer (ngx.timer.at) or another phase"
    end

    it("fails in init_worker_by_lua with a phase error", function()
      assert.are.equal(phase_error("init_worker"), result("init_worker"))
    end)

    it("fails in log_by_lua with a phase error, after the answer went out", function()
      assert.same({ 200, "answered" }, { app:request("GET", "/log_phase") })
      assert.are.equal(phase_error("log"), result("log"))
    end)

    it("fails in header_filter_by_lua with a phase error", function()
      assert.same({ 200, "answered" }, { app:request("GET", "/header_filter_phase") })
      assert.are.equal(phase_error("header_filter"), result("header_filter"))
    end)

    it("fails in init_by_lua with a phase error, at once (nginx started)", function()
      assert.are.equal(phase_error("init"), result("init"))
    end)

    it("fails in body_filter_by_lua with a phase error, and the answer goes out whole", function()
      assert.same({ 200, "answered" }, { app:request("GET", "/body_filter_phase") })
      assert.are.equal(phase_error("body_filter"), result("body_filter"))
    end)

    it("never puts the access token in the error log", function()
      assert.is_nil(app:error_log():find("SECRET_TOKEN", 1, true))
    end)
  end)

  describe("arguments", function()
    it("names a wrong option or request field, like the curl transport, before any I/O", function()
      local status, body = app:request("GET", "/args")
      assert.are.equal(200, status)
      assert.same({
        "bad argument #1 to 'new' (opts.timeout: number of seconds expected, got string)",
        "bad argument #1 to 'new' (opts.connect_timeout: must be > 0 and <= 86400 seconds, got 0)",
        "bad argument #1 to 'new' (opts.max_response: must be an integer 1..1073741824, got 0)",
        "bad argument #1 to 'new' (opts.ssl_verify: boolean expected, got string)",
        "bad argument #1 to 'new' (opts.cafile: string expected, got number)",
        "bad argument #1 to 'new' (opts.keepalive_pool: must be an integer 1..65535, got 0)",
        "bad argument #1 to 'new' (table or nil expected, got number)",
        "bad argument #1 to 'request' (table expected, got string)",
        "bad argument #1 to 'request' (req.method: \"GET\" or \"POST\" expected, got \"PUT\")",
        "bad argument #1 to 'request' (req.url: string expected, got nil)",
        "bad argument #1 to 'request' (req.url: http:// or https:// URL expected)",
        "bad argument #1 to 'request' (req.url: http:// or https:// URL expected)",
        "bad argument #1 to 'request' (req.body: string or nil expected, got table)",
        "bad argument #1 to 'request' (req.body: a GET request has no body)",
        "requests 0, connects 0",
      }, split(body))
    end)

    it("raises outside OpenResty, naming the way out", function()
      local cosocket = require "wechat.work.transport.cosocket"
      assert.has_error(function() cosocket.new() end,
        "the cosocket transport runs inside OpenResty (ngx_http_lua) only; use transport = \"curl\" here")
    end)
  end)
end)
