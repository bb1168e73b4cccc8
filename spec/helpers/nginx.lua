-- Starts and stops an nginx "app" (Debian nginx + libnginx-mod-http-lua) with this checkout's library on its
-- paths, for the OpenResty specs and benches. The specs themselves run in plain LuaJIT and drive it over HTTP.
--
--   local nginx = require "helpers.nginx"
--   local app = nginx.start{
--     name = "kf",                 -- prefix /tmp/wechat-openresty-kf (world-readable)
--     port = 18360,                -- listens on 127.0.0.1 only
--     workers = 2,                 -- worker_processes (default 2)
--     http = "lua_shared_dict wechat 1m;",          -- lines for the http block
--     server = "location = /t { content_by_lua_block { ngx.say('hi') } }",   -- lines for the server block
--     trusted_certificate = standin.cafile(),        -- lua_ssl_trusted_certificate (optional)
--     listen = "reuseport",       -- more parameters of the listen directive (optional)
--   }
--   local status, body = app:request("GET", "/t")
--   app:stop()
--
-- The http block gets: load_module lines for ndk and ngx_http_lua, lua_package_path with lua/?.lua,
-- lua/?/init.lua and spec/?.lua of the checkout (so handlers can require "helpers.kf_cases"), then the system
-- paths (Debian's lua-resty-core and cjson); lua_package_cpath with build/jit/?.so (WECHAT_SPEC_BUILD, see below).
local socket = require "socket"

local M = {}

local assert, error, io, ipairs, os, pairs, setmetatable, tonumber, tostring, type =
  assert, error, io, ipairs, os, pairs, setmetatable, tonumber, tostring, type
local concat, sort = table.concat, table.sort

local MODULES = "/usr/lib/nginx/modules"
local NGINX = os.getenv("WECHAT_NGINX") or "/usr/sbin/nginx"
-- tools/sanitize runs these specs against the ASan/UBSan build: nginx then loads it (WECHAT_SPEC_BUILD) with the
-- sanitizer runtime preloaded (WECHAT_SANITIZE_PRELOAD), and its reports go to WECHAT_SANITIZE_LOGS. Leak checking
-- stays off in nginx: it never frees its pools at exit, and a worker that exits is not where the module leaks.
local BUILD = os.getenv("WECHAT_SPEC_BUILD") or "build/jit"
local PRELOAD = os.getenv("WECHAT_SANITIZE_PRELOAD")
local SANITIZE_LOGS = os.getenv("WECHAT_SANITIZE_LOGS") or "/tmp"

local App = {}
App.__index = App

local shell_quote = require("helpers.shell").quote

local succeeded = require("helpers.shell").succeeded

local function run(cmd)
  return succeeded(os.execute(cmd))
end

local function read_command(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local data = f:read("*a")
  f:close()
  return data
end

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  assert(f:write(data))
  assert(f:close())
end

-- The checkout's root, absolute: nginx workers run with the prefix as their directory.
local function repo_root()
  local source = debug.getinfo(1, "S").source:sub(2)
  local dir = source:match("^(.*)/spec/helpers/nginx%.lua$")
  if source:match("^spec/helpers/nginx%.lua$") then
    dir = "."
  end
  assert(dir, "helpers.nginx: cannot tell the checkout from " .. source)
  if dir:sub(1, 1) ~= "/" then
    dir = read_command("cd " .. shell_quote(dir) .. " && pwd"):gsub("%s+$", "")
  end
  return dir
end

M.ROOT = repo_root()

local function port_open(port)
  local s = socket.tcp()
  s:settimeout(0.5)
  local ok = s:connect("127.0.0.1", port)
  s:close()
  return ok ~= nil
end

local function wait(what, fn)
  for _ = 1, 200 do
    if fn() then
      return true
    end
    socket.sleep(0.05)
  end
  error("helpers.nginx: timed out waiting for " .. what, 3)
end

local CONF = [[
# written by spec/helpers/nginx.lua
@USER@
worker_processes @WORKERS@;
daemon on;
master_process on;
pid @PREFIX@/nginx.pid;
error_log @PREFIX@/error.log @LEVEL@;

load_module @MODULES@/ndk_http_module.so;
load_module @MODULES@/ngx_http_lua_module.so;

events {
    worker_connections 4096;
}

http {
    access_log off;
    server_tokens off;
    client_body_temp_path @PREFIX@/tmp/body;
    proxy_temp_path @PREFIX@/tmp/proxy;
    fastcgi_temp_path @PREFIX@/tmp/fastcgi;
    uwsgi_temp_path @PREFIX@/tmp/uwsgi;
    scgi_temp_path @PREFIX@/tmp/scgi;
    keepalive_requests 1000000;
    # request bodies stay in memory, so handlers read them with ngx.req.get_body_data()
    client_max_body_size 16m;
    client_body_buffer_size 16m;

    lua_package_path "@ROOT@/lua/?.lua;@ROOT@/lua/?/init.lua;@ROOT@/spec/?.lua;;";
    lua_package_cpath "@ROOT@/@BUILD@/?.so;;";
@TRUST@
@HTTP@

    server {
        listen 127.0.0.1:@PORT@@LISTEN@;
        default_type text/plain;
@SERVER@
    }
}
]]

local function fill(template, values)
  return (template:gsub("@(%u+)@", function(name)
    local v = values[name]
    if v == nil then
      error("helpers.nginx: no value for @" .. name .. "@", 3)
    end
    return tostring(v)
  end))
end

local function master_pid(prefix)
  local pid = tonumber((read_file(prefix .. "/nginx.pid") or ""):match("%d+"))
  if pid and run("kill -0 " .. pid .. " 2>/dev/null") then
    return pid
  end
  return nil
end

local function stop_prefix(prefix, port)
  local pid = master_pid(prefix)
  if pid then
    run(shell_quote(NGINX) .. " -p " .. shell_quote(prefix .. "/") .. " -c " .. shell_quote(prefix .. "/nginx.conf")
      .. " -e " .. shell_quote(prefix .. "/error.log") .. " -s stop >/dev/null 2>&1")
    wait("nginx pid " .. pid .. " to stop", function()
      return not run("kill -0 " .. pid .. " 2>/dev/null")
    end)
  end
  if port then
    wait("port " .. port .. " to close", function()
      return not port_open(port)
    end)
  end
end

--- Starts an nginx (stopping one a run before left on the same prefix) and waits until all its workers run.
-- @param opts `name` (prefix /tmp/wechat-openresty-<name>), `port`, `workers` (default 2), `http`, `server`,
--   `trusted_certificate` (PEM path), `listen` (more listen parameters, e.g. "reuseport" so that the kernel
--   spreads connections over the workers), `log_level` (default "info"); or, instead of the template, `conf`: a
--   whole nginx.conf (its pid file must be nginx.pid and its error log error.log in the prefix, its worker count
--   `workers`). `env`: table of environment variables for nginx (what its `env` directives pass on).
-- @return an app object
function M.start(opts)
  assert(type(opts) == "table" and type(opts.name) == "string" and tonumber(opts.port),
    "helpers.nginx.start: name and port expected")
  local prefix = "/tmp/wechat-openresty-" .. opts.name
  local workers = opts.workers or 2
  stop_prefix(prefix)
  assert(run("mkdir -p " .. shell_quote(prefix .. "/tmp") .. " && chmod 755 " .. shell_quote(prefix) .. " "
    .. shell_quote(prefix .. "/tmp")))
  local conf = opts.conf
  if not conf then
    local is_root = read_command("id -u"):match("^0%s*$") ~= nil
    local trust = ""
    if opts.trusted_certificate then
      trust = "    lua_ssl_trusted_certificate " .. opts.trusted_certificate .. ";\n    lua_ssl_verify_depth 3;"
    end
    conf = fill(CONF, {
      USER = is_root and "user root;" or "",
      WORKERS = workers,
      PREFIX = prefix,
      LEVEL = opts.log_level or "info",
      MODULES = MODULES,
      ROOT = M.ROOT,
      BUILD = BUILD,
      TRUST = trust,
      HTTP = opts.http or "",
      PORT = opts.port,
      LISTEN = opts.listen and (" " .. opts.listen) or "",
      SERVER = opts.server or "",
    })
  end
  write_file(prefix .. "/nginx.conf", conf)
  write_file(prefix .. "/error.log", "")
  local env = {}
  for name, value in pairs(opts.env or {}) do
    env[#env + 1] = name .. "=" .. shell_quote(value) .. " "
  end
  sort(env)
  local app = setmetatable({ prefix = prefix, port = tonumber(opts.port), workers = workers }, App)
  if not run(concat(env) .. app:command() .. " >" .. shell_quote(prefix .. "/start.out") .. " 2>&1") then
    error("helpers.nginx: nginx did not start:\n" .. (read_file(prefix .. "/start.out") or "")
      .. (read_file(prefix .. "/error.log") or ""), 2)
  end
  wait("nginx on port " .. app.port, function()
    return port_open(app.port) and #app:worker_pids() == workers
  end)
  return app
end

--- The nginx command line for this app, with extra arguments (e.g. "-s reload").
function App:command(extra)
  local p = self.prefix
  local sanitize = ""
  if PRELOAD and PRELOAD ~= "" then
    sanitize = "env LD_PRELOAD=" .. shell_quote(PRELOAD)
      .. " ASAN_OPTIONS=" .. shell_quote("detect_leaks=0:abort_on_error=1:halt_on_error=1:detect_odr_violation=0:"
        .. "log_path=" .. SANITIZE_LOGS .. "/asan-nginx")
      .. " UBSAN_OPTIONS=" .. shell_quote("halt_on_error=1:print_stacktrace=1:log_path=" .. SANITIZE_LOGS
        .. "/ubsan-nginx") .. " "
  end
  return sanitize .. shell_quote(NGINX) .. " -p " .. shell_quote(p .. "/") .. " -c " .. shell_quote(p .. "/nginx.conf")
    .. " -e " .. shell_quote(p .. "/error.log") .. (extra and (" " .. extra) or "")
end

function App:url(path)
  return "http://127.0.0.1:" .. self.port .. (path or "/")
end

--- One HTTP/1.0 exchange with the app: status, body; nil, err when no answer came.
function App:request(method, path, body)
  local s = socket.tcp()
  s:settimeout(30)
  local ok, err = s:connect("127.0.0.1", self.port)
  if not ok then
    return nil, err
  end
  local head = { method, " ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\n" }
  if body then
    head[#head + 1] = "Content-Type: application/json\r\nContent-Length: " .. #body .. "\r\n"
  end
  head[#head + 1] = "\r\n"
  head[#head + 1] = body or ""
  ok, err = s:send(concat(head))
  if not ok then
    s:close()
    return nil, err
  end
  local data, rerr, partial = s:receive("*a")
  s:close()
  data = data or partial
  if not data or data == "" then
    return nil, rerr or "empty answer"
  end
  local status = tonumber(data:match("^HTTP/1%.%d (%d%d%d)"))
  local body_start = data:find("\r\n\r\n", 1, true)
  if not status or not body_start then
    return nil, "bad answer: " .. data:sub(1, 200)
  end
  return status, data:sub(body_start + 4)
end

--- The error.log so far.
function App:error_log()
  return read_file(self.prefix .. "/error.log") or ""
end

--- Empties error.log, so a spec reads only what its own requests wrote.
function App:clear_error_log()
  write_file(self.prefix .. "/error.log", "")
  run(self:command("-s reopen") .. " >/dev/null 2>&1")
end

function App:master_pid()
  return master_pid(self.prefix)
end

--- The pids of the worker processes, sorted.
function App:worker_pids()
  local pid = self:master_pid()
  if not pid then
    return {}
  end
  local pids = {}
  for p in read_command("pgrep -P " .. pid .. " 2>/dev/null"):gmatch("%d+") do
    -- the cache manager and loader are children too, but this config has no caches
    pids[#pids + 1] = tonumber(p)
  end
  sort(pids)
  return pids
end

local function disjoint(a, b)
  for _, x in ipairs(a) do
    for _, y in ipairs(b) do
      if x == y then
        return false
      end
    end
  end
  return true
end

--- Reloads the configuration (SIGHUP): new workers replace all the old ones; shared dicts stay.
-- @return the new worker pids
function App:reload()
  local old = self:worker_pids()
  assert(run(self:command("-s reload") .. " >/dev/null 2>&1"), "helpers.nginx: reload failed")
  local new
  wait("the workers to be replaced", function()
    new = self:worker_pids()
    return #new == self.workers and disjoint(old, new)
  end)
  return new
end

--- Kills one worker (SIGKILL, by its pid) and waits until the master has started a new one in its place.
-- @return the new worker pids
function App:kill_worker(pid)
  assert(run("kill -KILL " .. tonumber(pid)), "helpers.nginx: kill failed")
  local new
  wait("a new worker", function()
    new = self:worker_pids()
    return #new == self.workers and disjoint({ pid }, new)
  end)
  return new
end

--- Stops nginx and waits until its port is closed.
function App:stop()
  stop_prefix(self.prefix, self.port)
end

return M
