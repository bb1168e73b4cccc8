-- Every request outside /_standin/: recorded, then a queued script for its path if there is one, then the WeCom
-- handler of the path.
local http = require "standin.http"
local kf = require "standin.kf"
local media = require "standin.media"
local kf_account = require "standin.kf_account"
local kf_session = require "standin.kf_session"
local script = require "standin.script"
local state = require "standin.state"
local token = require "standin.token"

local ngx = ngx

local M = {}

local ROUTES = {
  ["/cgi-bin/gettoken"] = token.gettoken,
  ["/cgi-bin/kf/send_msg"] = kf.send_msg,
  ["/cgi-bin/kf/send_msg_on_event"] = kf.send_msg_on_event,
  ["/cgi-bin/kf/sync_msg"] = kf.sync_msg,
  [media.GET] = media.get,
  ["/cgi-bin/kf/account/add"] = kf_account.add,
  ["/cgi-bin/kf/account/del"] = kf_account.del,
  ["/cgi-bin/kf/account/update"] = kf_account.update,
  ["/cgi-bin/kf/account/list"] = kf_account.list,
  ["/cgi-bin/kf/add_contact_way"] = kf_account.add_contact_way,
  ["/cgi-bin/kf/servicer/add"] = kf_account.servicer_add,
  ["/cgi-bin/kf/servicer/del"] = kf_account.servicer_del,
  ["/cgi-bin/kf/servicer/list"] = kf_account.servicer_list,
  ["/cgi-bin/kf/service_state/get"] = kf_session.get_state,
  ["/cgi-bin/kf/service_state/trans"] = kf_session.trans,
  ["/cgi-bin/kf/customer/batchget"] = kf_session.batchget,
  ["/cgi-bin/kf/customer/get_upgrade_service_config"] = kf_session.get_upgrade_service_config,
  ["/cgi-bin/kf/customer/upgrade_service"] = kf_session.upgrade_service,
  ["/cgi-bin/kf/customer/cancel_upgrade_service"] = kf_session.cancel_upgrade_service,
  ["/cgi-bin/kf/get_corp_statistic"] = kf_session.corp_statistic,
  ["/cgi-bin/kf/get_servicer_statistic"] = kf_session.servicer_statistic,
}

function M.handle()
  state.request_began(ngx.var.connection)
  ngx.ctx.counted = true
  local method = ngx.req.get_method()
  local path = ngx.var.uri
  local args = ngx.req.get_uri_args(0)
  if path == media.UPLOAD then
    -- read from the socket in pieces, so it records and plays scripts itself
    return media.upload(method, args)
  end
  local body = http.read_body()
  state.record_request(method, path, args, body, ngx.var.args)
  local action = state.take_script(path)
  if action and script.play(action) then
    return
  end
  local handler = ROUTES[path]
  if not handler then
    return http.send(404, "text/plain; charset=utf-8", "not found\n")
  end
  return handler(method, args, body)
end

-- log_by_lua: the request is over, whichever way it ended (answered, scripted close, client gone).
function M.ended()
  if ngx.ctx.counted then
    state.request_ended()
  end
end

return M
