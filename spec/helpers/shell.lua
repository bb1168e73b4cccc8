-- Shell words for the commands the spec helpers and specs run through io.popen / os.execute.
--
--   local shell_quote = require("helpers.shell").quote
--   os.execute("rm -rf " .. shell_quote(dir))
local tostring, type = tostring, type

local M = {}

--- `s` (made a string) as one single-quoted shell word, whatever it holds.
function M.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- Whether os.execute's results say the command exited 0: a number in Lua 5.1/LuaJIT, true/nil, "exit", code
-- in 5.2+.
function M.succeeded(a, _, code)
  if type(a) == "number" then
    return a == 0
  end
  return a == true and (code == nil or code == 0)
end

return M
