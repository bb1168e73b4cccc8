-- wrk script of bench/openresty_send_text.sh: POSTs the body the library would send (BENCH_BODY) straight to
-- the stand-in's send_msg, with the same headers the cosocket transport sends.
-- luacheck: globals wrk
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json; charset=utf-8"
wrk.headers["User-Agent"] = "lua-wechat-work/0.1.0"
wrk.headers["Accept"] = "application/json"
