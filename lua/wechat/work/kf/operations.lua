--- What every KF API module shares: the check of the client and agent arguments, and the making of public
-- functions from a table of operations whose bodies (or GET queries) `wechat.core` builds in C.
local core = require "wechat.core"
local work = require "wechat.work"

local pairs = pairs

local M = {}

--- Raises, at the caller of the public function `name`, when `client` is not a client or `agent` not one of its
-- agents (`wechat.work.check_client_and_agent`).
M.check_client_and_agent = work.check_client_and_agent

local check = M.check_client_and_agent

--- Adds to module `mod` one public function per row of `operations`: name -> `{ path, build = core builder name,
-- get = true for a GET, idempotent = true when sending it twice has the effect of sending it once, after =
-- function(client, agent, res, ...) called with WeCom's answer and the call's arguments when it succeeded }`. A
-- POST function posts the body `core[build]` writes; a GET function sends the query table it returns.
function M.define(mod, operations)
  for name, op in pairs(operations) do
    local build, path, idempotent = core[op.build], op.path, op.idempotent or false
    if op.get then
      mod[name] = function(client, agent, ...)
        check(name, client, agent)
        return client:get(agent, path, build(client, agent, ...), name)
      end
    else
      local after = op.after
      mod[name] = function(client, agent, ...)
        check(name, client, agent)
        local res, err = client:post(agent, path, build(client, agent, ...), name, idempotent)
        if res and after then
          after(client, agent, res, ...)
        end
        return res, err
      end
    end
  end
  return mod
end

return M
