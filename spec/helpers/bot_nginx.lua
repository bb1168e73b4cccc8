-- Runs the KF bot example (examples/openresty/kf_bot) for specs, through its own `run` script, so that a spec
-- runs exactly what a user runs: the same nginx.conf template, the same environment variables.
--
--   local bot_nginx = require "helpers.bot_nginx"
--   local bot = bot_nginx.start{
--     port = 18372, workers = 2,          -- listens on 127.0.0.1:port
--     base_url = standin.url(),           -- WECOM_BASE_URL
--     token = "...", aes_key = "...",     -- WECOM_CALLBACK_TOKEN, WECOM_CALLBACK_AES_KEY
--     redis = "127.0.0.1:16397",          -- KF_BOT_REDIS (optional: the cursor in that Redis)
--   }                                     -- corp wwCORP, secret KF_SECRET (the stand-in's) unless given
--   bot:url()                             -- http://127.0.0.1:18372/wecom/kf
--   local status, body = bot:request("GET", "/wecom/kf?msg_signature=...")
--   bot:restart()                         -- fresh workers and shared dict (token, cursor)
--   bot:stop()  bot:start()               -- the same, in two steps
--   bot:kill()                            -- SIGKILL to master and workers: a crash (then bot:start())
local http = require "socket.http"
local ltn12 = require "ltn12"

local M = {}

local assert, error, io, ipairs, setmetatable, tonumber, tostring, type =
  assert, error, io, ipairs, setmetatable, tonumber, tostring, type
local concat = table.concat

local Bot = {}
Bot.__index = Bot

local shell_quote = require("helpers.shell").quote

-- The checkout's root, from this file's path.
local function repo_root()
  local source = debug.getinfo(1, "S").source:sub(2)
  local dir = source:match("^(.*)/spec/helpers/bot_nginx%.lua$")
  if source:match("^spec/helpers/bot_nginx%.lua$") then
    dir = "."
  end
  assert(dir, "helpers.bot_nginx: cannot tell the checkout from " .. source)
  return dir
end

M.ROOT = repo_root()
M.SCRIPT = M.ROOT .. "/examples/openresty/kf_bot/run"

-- exit code, output (stdout and stderr); io.popen():close() gives no exit code under LuaJIT, so the shell prints it
local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"rc=$?\""))
  local out = p:read("*a")
  p:close()
  local text, code = out:match("^(.*)rc=(%d+)%s*$")
  return tonumber(code), text
end

function Bot:command(action)
  local env = {
    KF_BOT_PREFIX = self.prefix,
    KF_BOT_LISTEN = "127.0.0.1:" .. self.port,
    KF_BOT_WORKERS = self.workers,
    KF_BOT_LOG_LEVEL = "info",
    WECOM_CORP_ID = self.corp_id,
    WECOM_KF_SECRET = self.secret,
    WECOM_CALLBACK_TOKEN = self.token,
    WECOM_CALLBACK_AES_KEY = self.aes_key,
    WECOM_BASE_URL = self.base_url,
    KF_BOT_REDIS = self.redis,
    KF_BOT_SERVICER = self.servicer,
  }
  local parts = { "env" }
  for _, name in ipairs({ "KF_BOT_PREFIX", "KF_BOT_LISTEN", "KF_BOT_WORKERS", "KF_BOT_LOG_LEVEL", "WECOM_CORP_ID",
    "WECOM_KF_SECRET", "WECOM_CALLBACK_TOKEN", "WECOM_CALLBACK_AES_KEY", "WECOM_BASE_URL", "KF_BOT_REDIS",
    "KF_BOT_SERVICER" }) do
    if env[name] ~= nil then
      parts[#parts + 1] = name .. "=" .. shell_quote(env[name])
    end
  end
  parts[#parts + 1] = "bash " .. shell_quote(M.SCRIPT) .. " " .. action
  return concat(parts, " ")
end

local function act(self, action)
  local code, out = run(self:command(action))
  if code ~= 0 then
    error("helpers.bot_nginx: 'run " .. action .. "' failed:\n" .. out, 3)
  end
  return out
end

--- Starts the bot (a bot left running on the same prefix by an earlier run is restarted).
-- @param opts `port` (required), `workers` (default 2), `base_url` (required), `token`, `aes_key` (required),
--   `corp_id` (default "wwCORP"), `secret` (default "KF_SECRET"), `name` (prefix /tmp/wechat-kf-bot-<name>,
--   default the port), `redis` (KF_BOT_REDIS, default unset: the cursor in the shared dict), `servicer`
--   (KF_BOT_SERVICER, default unset)
function M.start(opts)
  assert(type(opts) == "table" and tonumber(opts.port) and opts.base_url and opts.token and opts.aes_key,
    "helpers.bot_nginx.start: port, base_url, token and aes_key expected")
  local self = setmetatable({
    port = tonumber(opts.port),
    workers = opts.workers or 2,
    prefix = "/tmp/wechat-kf-bot-" .. tostring(opts.name or opts.port),
    base_url = opts.base_url,
    token = opts.token,
    aes_key = opts.aes_key,
    corp_id = opts.corp_id or "wwCORP",
    secret = opts.secret or "KF_SECRET",
    redis = opts.redis,
    servicer = opts.servicer,
  }, Bot)
  act(self, "restart")
  return self
end

--- Stops the bot and starts it again: new workers, empty shared dict (access token, cursor).
function Bot:restart()
  act(self, "restart")
end

function Bot:stop()
  act(self, "stop")
end

--- Kills the bot's nginx, master and workers, with SIGKILL: no request, timer or pull gets to finish (a crash).
-- start() brings it back.
function Bot:kill()
  local f = assert(io.open(self.prefix .. "/nginx.pid", "rb"))
  local master = tonumber(f:read("*a"):match("%d+"))
  f:close()
  local code, children = run("pgrep -P " .. master)
  assert(code == 0 or code == 1, "helpers.bot_nginx: pgrep failed: " .. tostring(children))
  local pids = { master }
  for pid in children:gmatch("%d+") do
    pids[#pids + 1] = pid
  end
  code = run("kill -9 " .. concat(pids, " "))
  assert(code == 0, "helpers.bot_nginx: cannot kill the bot")
  -- gone when the listening socket is (a killed process may linger as a zombie, its sockets closed)
  for _ = 1, 200 do
    if not self:request("GET", "/") then
      return
    end
    run("sleep 0.05")
  end
  error("helpers.bot_nginx: the killed bot still answers")
end

--- Starts the bot after stop(): a new nginx, an empty shared dict.
function Bot:start()
  act(self, "start")
end

function Bot:url(path)
  return "http://127.0.0.1:" .. self.port .. (path or "/wecom/kf")
end

--- One HTTP exchange with the bot: status, body; nil, err when no answer came.
function Bot:request(method, path, body)
  local chunks = {}
  local ok, status = http.request({
    url = self:url(path),
    method = method,
    headers = body and { ["content-type"] = "text/xml", ["content-length"] = tostring(#body) } or nil,
    source = body and ltn12.source.string(body) or nil,
    sink = ltn12.sink.table(chunks),
  })
  if not ok then
    return nil, status
  end
  return status, concat(chunks)
end

--- The bot's error.log so far.
function Bot:error_log()
  local f = io.open(self.prefix .. "/error.log", "rb")
  if not f then
    return ""
  end
  local data = f:read("*a")
  f:close()
  return data
end

return M
