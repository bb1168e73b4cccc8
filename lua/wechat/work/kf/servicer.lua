--- KF servicers (接待人员): the members and departments that receive an account's sessions.
--
-- `add` and `delete` take `{ userid_list = { "zhangsan", ... }, department_id_list = { 2, ... } }`, up to 100 of
-- each and one at least; WeCom answers each id in `result_list` (`errcode` per item, even when the call's is 0),
-- which comes back as WeCom sent it. Errors as in `wechat.work.kf.message`.
local operations = require "wechat.work.kf.operations"

local M = {}

operations.define(M, {
  --- add(client, agent, open_kfid, { userid_list =, department_id_list = }): an add, so not retried after a
  -- failure whose outcome is unknown (the house rule for adds; WeCom answers an id added twice "ignored").
  add = { path = "/cgi-bin/kf/servicer/add", build = "kf_servicer_add" },
  --- delete(client, agent, open_kfid, { userid_list =, department_id_list = })
  delete = { path = "/cgi-bin/kf/servicer/del", build = "kf_servicer_delete", idempotent = true },
  --- list(client, agent, open_kfid): `GET /cgi-bin/kf/servicer/list?open_kfid=`; answer `{ servicer_list = }`.
  list = { path = "/cgi-bin/kf/servicer/list", build = "kf_servicer_list", get = true },
})

return M
