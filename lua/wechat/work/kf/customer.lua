--- KF customers (the reference's `WeChat.Work.KF.Customer`) and the upgrade service that hands a customer on to
-- a member (专员服务) or a group chat (客户群服务). Errors as in `wechat.work.kf.message`.
local operations = require "wechat.work.kf.operations"

local M = {}

operations.define(M, {
  --- get_customer_info(client, agent, external_userid_list[, { need_enter_session_context = true }]): 1..100
  -- ids; answer `{ customer_list = , invalid_external_userid = }` (ids not seen in 48 h are invalid).
  get_customer_info = { path = "/cgi-bin/kf/customer/batchget", build = "kf_customer_get_customer_info",
    idempotent = true },
  --- get_upgrade_service_config(client, agent): `GET`, answer `{ member_range = , groupchat_range = }`.
  get_upgrade_service_config = { path = "/cgi-bin/kf/customer/get_upgrade_service_config",
    build = "kf_customer_get_upgrade_service_config", get = true },
  --- upgrade_service(client, agent, open_kfid, external_userid, type, info): type 1 with info `{ userid =,
  -- wording = }` (a member), type 2 with `{ chat_id =, wording = }` (a group chat). Not retried after a failure
  -- whose outcome is unknown.
  upgrade_service = { path = "/cgi-bin/kf/customer/upgrade_service", build = "kf_customer_upgrade_service" },
  --- cancel_upgrade_service(client, agent, open_kfid, external_userid)
  cancel_upgrade_service = { path = "/cgi-bin/kf/customer/cancel_upgrade_service",
    build = "kf_customer_cancel_upgrade_service", idempotent = true },
})

--- batchget: the same as get_customer_info (WeCom's name of the call).
M.batchget = M.get_customer_info

return M
