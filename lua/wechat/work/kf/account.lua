--- KF accounts (the reference's `WeChat.Work.KF.Account`) and the contact-way link that brings customers to one.
--
-- Every function checks its arguments at once (a wrong one raises `bad argument #N to 'name' (...)`), has the
-- body written by `wechat.core` in C, and posts it with the client's access token. It returns WeCom's decoded
-- answer, or `nil, err` on a run-time failure (see `wechat.work.errors`).
local operations = require "wechat.work.kf.operations"

local M = {}

operations.define(M, {
  --- add(client, agent, name, media_id): a new KF account; name 1..16 characters, media_id (the avatar, a
  -- temporary media id from `wechat.work.material`) 1..128 bytes. Answer `{ open_kfid = }`. Not retried after a
  -- failure whose outcome is unknown: it could make two accounts.
  add = { path = "/cgi-bin/kf/account/add", build = "kf_account_add" },
  --- delete(client, agent, open_kfid): deleting twice leaves it deleted, so it may be retried.
  delete = { path = "/cgi-bin/kf/account/del", build = "kf_account_delete", idempotent = true },
  --- update(client, agent, open_kfid, { name =, media_id = }): changes the fields given (at least one).
  update = { path = "/cgi-bin/kf/account/update", build = "kf_account_update", idempotent = true },
  --- list(client, agent[, { offset =, limit = }]): one page of `account_list` (limit 1..100, WeCom's default
  -- 100); a page shorter than limit is the last.
  list = { path = "/cgi-bin/kf/account/list", build = "kf_account_list", idempotent = true },
  --- add_contact_way(client, agent, open_kfid[, scene]): the link to the account (`{ url = }`); scene 1..32
  -- bytes of [0-9a-zA-Z_-], given back in the enter_session event.
  add_contact_way = { path = "/cgi-bin/kf/add_contact_way", build = "kf_account_add_contact_way" },
})

return M
