-- busted output handler for tools/test: utfTerminal's output as usual and, when WECHAT_GATE_REPORT names a file,
-- the numbers written there at the end of the suite, so that the gate reads counts instead of terminal text:
--   counts<TAB>successes<TAB>failures<TAB>errors<TAB>pending
--   pending<TAB>message<TAB>name            one line per pending spec
return function(options)
  local busted = require "busted"
  local handler = require "busted.outputHandlers.utfTerminal"(options)
  local path = os.getenv("WECHAT_GATE_REPORT")
  if path and path ~= "" then
    busted.subscribe({ "suite", "end" }, function()
      local f = assert(io.open(path, "w"))
      f:write(string.format("counts\t%d\t%d\t%d\t%d\n", handler.successesCount, handler.failuresCount,
        handler.errorsCount, handler.pendingsCount))
      for _, p in ipairs(handler.pendings) do
        local message = tostring(p.message or ""):gsub("[\t\r\n]", " ")
        f:write("pending\t", message, "\t", (tostring(p.name or ""):gsub("[\t\r\n]", " ")), "\n")
      end
      f:close()
      return nil, true
    end)
  end
  return handler
end
