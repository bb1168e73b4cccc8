-- wrk script of bench/openresty_send_text.sh: POSTs the body the library would send (BENCH_BODY) straight to
-- the stand-in's send_msg, with the same headers the cosocket transport sends.
-- Each request carries its own msgid, as the library's sends do (see bench/wrk_post.lua).
-- luacheck: globals wrk request
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
local body_rest = wrk.body:sub(2)
local msgid_head = string.format('{"msgid":"w%d-%d-', os.time() % 1e8, math.random(0, 1e6))
local sent = 0

function request()
  sent = sent + 1
  return wrk.format(nil, nil, nil, msgid_head .. sent .. '",' .. body_rest)
end
wrk.headers["Content-Type"] = "application/json; charset=utf-8"
wrk.headers["User-Agent"] = "lua-wechat-work/0.1.0"
wrk.headers["Accept"] = "application/json"
