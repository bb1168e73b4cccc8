-- wrk script: POSTs the body send_text posts (bench/send_text.lua --print-body) to the stand-in's send_msg, with
-- a valid access token and the headers the curl transport sends, so `wrk -c1 -t1` gives the floor the client is
-- measured against. bench/run sets the environment:
--   BENCH_TOKEN      access token from the stand-in's gettoken (required; kept off the command line)
--   BENCH_BODY       the JSON body, or BENCH_BODY_FILE a file holding it (one of them required)
--   BENCH_PATH       default /cgi-bin/kf/send_msg
--   BENCH_CHECK=1    also read every answer and count those that are not errcode 0 (costs wrk some time; off for
--                    the figures, on to check the setup); printed by done()
--
--   BENCH_TOKEN=... BENCH_BODY=... wrk -c1 -t1 -d5s -s bench/wrk_post.lua http://127.0.0.1:18580
-- Each request carries its own msgid, as the library's sends do (the stand-in, like WeCom, refuses a repeated one,
-- and the dedup is work it must then do for the floor too): the body's first "{" is followed by
-- "msgid":"w<start>-<n>", made in request(), which costs wrk a string concatenation per request.
-- luacheck: globals wrk setup request response done
local getenv = os.getenv

local function need(value, what)
  if value == nil or value == "" then
    io.stderr:write("wrk_post.lua: ", what, "\n")
    os.exit(2)
  end
  return value
end

local token = need(getenv("BENCH_TOKEN"), "set BENCH_TOKEN to an access token from the stand-in")
local body = getenv("BENCH_BODY")
if body == nil or body == "" then
  local file = need(getenv("BENCH_BODY_FILE"), "set BENCH_BODY or BENCH_BODY_FILE")
  local f = io.open(file, "rb")
  body = need(f and f:read("*a"), "cannot read BENCH_BODY_FILE")
  f:close()
end

wrk.method = "POST"
wrk.path = (getenv("BENCH_PATH") or "/cgi-bin/kf/send_msg") .. "?access_token=" .. token
wrk.body = body
local body_rest = body:sub(2)
local msgid_head = string.format('{"msgid":"w%d-%d-', os.time() % 1e8, math.random(0, 1e6))
local sent = 0

function request()
  sent = sent + 1
  return wrk.format(nil, nil, nil, msgid_head .. sent .. '",' .. body_rest)
end
-- libcurl's defaults (Accept) and the transport's own headers, in the order curl sends them.
wrk.headers["User-Agent"] = "lua-wechat-work/0.1.0"
wrk.headers["Accept"] = "*/*"
wrk.headers["Content-Type"] = "application/json; charset=utf-8"

if getenv("BENCH_CHECK") == "1" then
  local threads = {}
  local bad = 0

  function setup(thread)
    threads[#threads + 1] = thread
  end

  function response(status, _, answer)
    if status ~= 200 or not answer:find('"errcode":0,', 1, true) then
      bad = bad + 1
      rawset(_G, "bad", bad)
    end
  end

  function done(summary)
    local total = 0
    for _, t in ipairs(threads) do
      total = total + (t:get("bad") or 0)
    end
    io.write(string.format("answers not errcode 0: %d of %d\n", total, summary.requests))
  end
end
