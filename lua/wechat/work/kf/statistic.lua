--- KF statistics, one entry a day. `query` is `{ open_kfid =, start_time =, end_time = }` (Unix seconds; WeCom
-- floors them to days, China time), end_time not before start_time, at most 31 days counting both ends. Both are
-- reads, so they may be retried. Errors as in `wechat.work.kf.message`.
local operations = require "wechat.work.kf.operations"

local M = {}

operations.define(M, {
  --- get_corp_statistic(client, agent, { open_kfid =, start_time =, end_time = }): `{ statistic_list = }`.
  get_corp_statistic = { path = "/cgi-bin/kf/get_corp_statistic", build = "kf_get_corp_statistic",
    idempotent = true },
  --- get_servicer_statistic(client, agent, { open_kfid =, servicer_userid =, start_time =, end_time = }):
  -- servicer_userid optional (without it: the account's servicers together).
  get_servicer_statistic = { path = "/cgi-bin/kf/get_servicer_statistic", build = "kf_get_servicer_statistic",
    idempotent = true },
})

return M
