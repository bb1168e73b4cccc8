--- The state of a customer's session with a KF account, and moving it (to a human, to the queue, to the end).
-- Only in states 0 (UNTREATED) and 1 (ASSISTANT) may the API send messages; in 2, 3 and 4 send_msg answers 95018.
-- Errors as in `wechat.work.kf.message`.
local operations = require "wechat.work.kf.operations"
local window = require "wechat.work.kf.window"

local type = type

local M = {
  UNTREATED = 0, -- 未处理: a new session, the customer has written
  ASSISTANT = 1, -- 由智能助手接待: the API (a bot) answers
  QUEUE = 2,     -- 待接入池排队中: waiting for a servicer
  HUMAN = 3,     -- 由人工接待: a servicer answers
  ENDED = 4,     -- 已结束/未开始
}

-- What get and trans learn of a session, the client's window tracker (wechat.work.kf.window) learns too, so that
-- sends to a session with a person are refused locally and sends after it came back pass.
local function note(client, agent, open_kfid, external_userid, service_state)
  if client.window and type(service_state) == "number" and service_state >= 0 and service_state <= 4
      and service_state % 1 == 0 then
    window.note_state(client, agent, open_kfid, external_userid, service_state)
  end
end

operations.define(M, {
  --- get(client, agent, open_kfid, external_userid): `{ service_state = , servicer_userid = }` (the servicer
  -- only in state 3).
  get = { path = "/cgi-bin/kf/service_state/get", build = "kf_service_state_get", idempotent = true,
    after = function(client, agent, res, open_kfid, external_userid)
      note(client, agent, open_kfid, external_userid, res.service_state)
    end },
  --- trans(client, agent, open_kfid, external_userid, service_state[, servicer_userid]): servicer_userid
  -- exactly when service_state is 3. Answer `{ msg_code = }` on a move to 2, 3 or 4: a one-time code for
  -- `kf.message.send_msg_on_event`. Not retried after a failure whose outcome is unknown.
  trans = { path = "/cgi-bin/kf/service_state/trans", build = "kf_service_state_trans",
    after = function(client, agent, _, open_kfid, external_userid, service_state)
      note(client, agent, open_kfid, external_userid, service_state)
    end },
})

return M
