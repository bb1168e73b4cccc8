-- Every request outside /_standin/: recorded, then a queued script for its path if there is one, then the WeCom
-- handler of the path.
local http = require "standin.http"
local kf = require "standin.kf"
local media = require "standin.media"
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
}

function M.handle()
  local method = ngx.req.get_method()
  local path = ngx.var.uri
  local args = ngx.req.get_uri_args(0)
  if path == media.UPLOAD then
    -- read from the socket in pieces, so it records and plays scripts itself
    return media.upload(method, args)
  end
  local body = http.read_body()
  state.record_request(method, path, args, body)
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

return M
