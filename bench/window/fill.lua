-- GET /fill?n=N&keys=K inside nginx (bench/window_memory.sh): tracks N customers in the lua_shared_dict "window"
-- through the tracker's shared_dict backend, each with a customer message (the window key) and, for K >= 2, one
-- send counted (its count key) and, for K = 3, a known session state; prints the dict's used bytes.
-- Ids have WeCom's lengths: open_kfid "wk" + 30, external_userid "wm" + 30.
local ngx = ngx -- luacheck: ignore 113
local backend_module = require "wechat.work.kf.window.shared_dict"
local store_module = require "wechat.work.store.shared_dict"

local M = {}

local function id(prefix, i)
  return prefix .. string.format("%030d", i)
end

function M.run()
  local n, keys = tonumber(ngx.var.arg_n), tonumber(ngx.var.arg_keys)
  local dict = ngx.shared.window
  dict:flush_all()
  dict:flush_expired()
  local store = store_module.new("window")
  local backend = backend_module.new(store)
  local empty = dict:free_space()
  local now = ngx.time()
  local kfid = id("wk", 7)
  for i = 1, n do
    local key = "wechat:kf:window:ww" .. string.format("%016d", 1) .. ":" .. kfid .. ":" .. id("wm", i)
    assert(backend:open(key, now, "from_msgid_" .. string.format("%019d", i), now))
    if keys >= 2 then
      assert(backend:take(key, now) == "ok")
    end
    if keys >= 3 then
      assert(backend:note_state(key, 1, now))
    end
  end
  local used = dict:capacity() - dict:free_space()
  ngx.say(string.format("%d %d %d %d", n, used, empty, dict:capacity()))
end

return M
