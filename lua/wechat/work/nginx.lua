--- What the library knows about the nginx (OpenResty) it may run inside, in one place: whether it runs there,
-- and which phases may use cosockets and ngx.sleep.
local rawget, type = rawget, type
local os_time = os.time

local M = {}

-- The phases whose handlers may use cosockets and ngx.sleep: lua-nginx-module's NGX_HTTP_LUA_CONTEXT_YIELDABLE
-- (rewrite_by_lua*, server_rewrite_by_lua*, access_by_lua*, content_by_lua*, ngx.timer.*,
-- ssl_client_hello_by_lua*, ssl_certificate_by_lua*, ssl_session_fetch_by_lua*), by their ngx.get_phase() names.
-- Elsewhere (init, init_worker, set, header_filter, body_filter, log, balancer, ssl_session_store,
-- exit_worker) a cosocket call raises "API disabled in the context of ...".
M.COSOCKET_PHASES = {
  rewrite = true,
  server_rewrite = true,
  access = true,
  content = true,
  timer = true,
  ssl_client_hello = true,
  ssl_cert = true,
  ssl_session_fetch = true,
}

--- The `ngx` table when running inside OpenResty's ngx_http_lua, else nil.
function M.get()
  local ngx = rawget(_G, "ngx")
  if type(ngx) == "table" and type(ngx.socket) == "table" and type(ngx.get_phase) == "function" then
    return ngx
  end
end

--- Seconds since the epoch, whole: nginx's cached clock inside OpenResty (no system call), os.time() elsewhere.
function M.time()
  local ngx = M.get()
  if ngx then
    return ngx.time()
  end
  return os_time()
end

--- Seconds since the epoch with nginx's milliseconds inside OpenResty (ngx.now), os.time() elsewhere.
function M.now()
  local ngx = M.get()
  if ngx then
    return ngx.now()
  end
  return os_time()
end

--- The current phase's name, and whether cosockets (and ngx.sleep) work in it.
function M.phase(ngx)
  local phase = ngx.get_phase()
  return phase, M.COSOCKET_PHASES[phase] or false
end

--- The phase's name when blocking I/O there would stall the worker though cosockets are at hand (a request
-- phase, or a timer of a worker that is not exiting); nil where blocking is the only way (init_by_lua,
-- init_worker, log, a premature timer of an exiting worker).
function M.blocking_refused(ngx)
  local phase, cosockets = M.phase(ngx)
  if not cosockets then
    return nil
  end
  if phase == "timer" and ngx.worker and ngx.worker.exiting and ngx.worker.exiting() then
    return nil
  end
  return phase
end

return M
