-- GET /cgi-bin/gettoken and the access_token check of the KF API.
local cjson = require "cjson.safe"
local http = require "standin.http"
local state = require "standin.state"

local ngx = ngx
local ceil, format = math.ceil, string.format

local M = {}

M.CORPID = "wwCORP"

-- The secrets the corp knows, by the name a token remembers (never the secret itself).
M.SECRETS = {
  KF_SECRET = "kf",
  OTHER_SECRET = "other",
}

function M.gettoken(_, args)
  local corpid = http.arg(args, "corpid")
  local secret = http.arg(args, "corpsecret")
  if corpid == nil then
    return http.wecom_error(41002, "corpid missing")
  end
  if corpid ~= M.CORPID then
    return http.wecom_error(40013, "invalid corpid")
  end
  if secret == nil then
    return http.wecom_error(41004, "corpsecret missing")
  end
  local name = M.SECRETS[secret]
  if not name then
    return http.wecom_error(40001, "invalid secret")
  end
  local token, left = state.token_for(name)
  if not token then
    ngx.log(ngx.ERR, "standin: cannot store a token: ", left)
    return http.wecom_error(-1, "system busy")
  end
  -- WeCom gives the time left of the token it hands back; a fresh one has all of expires_in.
  return http.json(format('{"errcode":0,"errmsg":"ok","access_token":%s,"expires_in":%d}',
    cjson.encode(token), ceil(left)))
end

-- nil when the access_token query argument is good, else errcode, errmsg.
function M.check(args)
  local token = http.arg(args, "access_token")
  if token == nil or token == "" then
    return 41001, "access_token missing"
  end
  local status, name = state.token_state(token)
  if status == "invalid" then
    return 40014, "invalid access_token"
  end
  if status == "expired" then
    return 42001, "access_token expired"
  end
  if name ~= M.SECRETS.KF_SECRET and state.config("kf_secret_only") then
    return 48002, "api forbidden"
  end
  return nil
end

return M
