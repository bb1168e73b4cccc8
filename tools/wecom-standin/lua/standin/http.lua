-- Reading requests and writing answers. WeCom answers errors with HTTP 200 and a JSON body; so does the stand-in.
local cjson = require "cjson.safe"

local ngx = ngx
local pairs, sort, tostring, type = pairs, table.sort, tostring, type
local format = string.format

local M = {}

local JSON = "application/json; charset=utf-8"

function M.send(status, content_type, body)
  if ngx.ctx.lose_answer then
    -- the lose_answer script: WeCom acted on the request, and its answer never reaches the client
    return ngx.exit(444)
  end
  ngx.status = status
  ngx.header["Content-Type"] = content_type
  ngx.header["Content-Length"] = #body
  ngx.print(body)
  return ngx.exit(status)
end

function M.json(body, status)
  return M.send(status or 200, JSON, body)
end

-- {"errcode":E,"errmsg":M} in WeCom's key order.
function M.wecom_error(errcode, errmsg)
  return M.json(format('{"errcode":%d,"errmsg":%s}', errcode, cjson.encode(errmsg)))
end

-- Control API failures: a 4xx with {"error":"..."}.
function M.control_error(status, message)
  return M.json(cjson.encode({ error = message }), status)
end

-- The first key of obj (in byte order) that is not in the set known, or nil: requests name no key twice this way.
function M.unknown_key(obj, known)
  local keys = {}
  for key in pairs(obj) do
    if not known[key] then
      keys[#keys + 1] = tostring(key)
    end
  end
  sort(keys)
  return keys[1]
end

-- The request body as one string ("" when there is none).
function M.read_body()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body then
    return body
  end
  local path = ngx.req.get_body_file()
  if not path then
    return ""
  end
  -- only when the body outgrew client_body_buffer_size
  local f, err = io.open(path, "rb")
  if not f then
    ngx.log(ngx.ERR, "standin: cannot read the request body file: ", err)
    return ""
  end
  body = f:read("*a") or ""
  f:close()
  return body
end

-- One query argument as a string: nil when absent or given without a value, the first one when repeated.
function M.arg(args, name)
  local v = args[name]
  if type(v) == "table" then
    v = v[1]
  end
  if type(v) ~= "string" then
    return nil
  end
  return v
end

return M
