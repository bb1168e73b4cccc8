-- Shell words for the commands the spec helpers and specs run through io.popen / os.execute.
--
--   local shell_quote = require("helpers.shell").quote
--   os.execute("rm -rf " .. shell_quote(dir))
local tostring = tostring

local M = {}

--- `s` (made a string) as one single-quoted shell word, whatever it holds.
function M.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

return M
