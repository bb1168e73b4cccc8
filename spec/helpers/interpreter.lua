-- The shell command that starts a Lua interpreter of the same kind as the one running the specs, for specs that
-- need a child process (a locale, a network namespace).
--
--   local interpreter = require "helpers.interpreter"
--   io.popen(interpreter.command() .. " child.lua")
--
-- Under tools/sanitize the child loads the instrumented wechat.core too, so it needs the sanitizer runtime that
-- tools/sanitize names in WECHAT_SANITIZE_PRELOAD (the parent's LD_PRELOAD is gone by then, on purpose).
local M = {}

local shell_quote = require("helpers.shell").quote

--- Returns "lua5.4" or "luajit", with the sanitizer runtime preloaded when tools/sanitize runs the specs.
function M.command()
  local lua = rawget(_G, "jit") and "luajit" or "lua5.4"
  local preload = os.getenv("WECHAT_SANITIZE_PRELOAD")
  if preload and preload ~= "" then
    return "env LD_PRELOAD=" .. shell_quote(preload) .. " " .. lua
  end
  return lua
end

return M
