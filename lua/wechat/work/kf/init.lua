--- WeCom customer service (微信客服, KF): `require "wechat.work.kf"` gives its modules in one table, and `batch`.
-- `kf.message.send_text(...)`, `kf.batch(client, agent, calls[, opts])` (the same as `kf.message.batch`).
local M = {
  message = require "wechat.work.kf.message",
  menu = require "wechat.work.kf.menu",
  link = require "wechat.work.kf.link",
  account = require "wechat.work.kf.account",
  servicer = require "wechat.work.kf.servicer",
  service_state = require "wechat.work.kf.service_state",
  customer = require "wechat.work.kf.customer",
  statistic = require "wechat.work.kf.statistic",
}

M.batch = require("wechat.work.kf.batch").batch

return M
