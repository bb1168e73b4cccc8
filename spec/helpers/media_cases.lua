-- The cases of wechat.work.material, run the same way by spec/material_spec.lua (libcurl, Lua 5.4 and LuaJIT) and
-- spec/openresty/material_spec.lua (cosockets, inside an nginx content handler). Each `run(client, dir)` does the
-- calls and returns a JSON-able table; the specs check it, and the stand-in, in the busted process.
--
-- Files live in M.DIR, made by the specs (M.prepare): small ones written here, the 20 MB one by `head -c`, so no
-- Lua string of that size ever exists in the process whose memory is measured.
local material = require "wechat.work.material"

local assert, collectgarbage, io, ipairs, os, pcall, tonumber, tostring =
  assert, collectgarbage, io, ipairs, os, pcall, tonumber, tostring

local M = {}

M.AGENT = "kf"
M.DIR = "/tmp/wechat-media-spec"
M.PNG = "\137PNG\r\n\26\n\0\0\0\rIHDR" .. ("png-bytes "):rep(10)
M.BIG = 20 * 1024 * 1024 -- the file type's limit, exactly

local function summary(res, err)
  if res then
    return { res = res }
  end
  return { err = { kind = err.kind, reason = err.reason, errcode = err.errcode, errmsg = err.errmsg,
    message = err.message, op = err.op } }
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then
    f:close()
  end
  return f ~= nil
end

local function status_kb(field)
  local f = assert(io.open("/proc/self/status", "rb"))
  local text = f:read("*a")
  f:close()
  return tonumber(text:match(field .. ":%s*(%d+)"))
end

-- How far this process's resident memory rose above where it stood, at its peak while fn ran (KiB): Linux resets
-- the peak (VmHWM) when "5" is written to clear_refs.
local function peak_growth(fn)
  collectgarbage()
  collectgarbage()
  local f = assert(io.open("/proc/self/clear_refs", "wb"))
  f:write("5")
  f:close()
  local before = status_kb("VmRSS")
  local out = fn()
  return status_kb("VmHWM") - before, out
end

--- Writes the small files the cases use (the 20 MB one is the spec's job).
function M.prepare(dir)
  dir = dir or M.DIR
  os.execute("rm -rf '" .. dir .. "' && mkdir -p '" .. dir .. "/empty.d' && chmod 777 '" .. dir .. "'")
  local function write(name, data)
    local f = assert(io.open(dir .. "/" .. name, "wb"))
    f:write(data)
    f:close()
  end
  write("logo.png", M.PNG)
  write("empty.bin", "")
  write("five.bin", "12345")
  write("six.bin", "123456")
  -- sparse: one byte over a limit costs no disk
  os.execute("truncate -s " .. (10 * 1024 * 1024 + 1) .. " '" .. dir .. "/image-over.png'")
  os.execute("truncate -s " .. (M.BIG + 1) .. " '" .. dir .. "/file-over.bin'")
end

M.cases = {
  upload_data_png = function(client)
    return summary(material.upload_data(client, M.AGENT, "image", "logo \"1\".png", M.PNG))
  end,
  upload_path = function(client, dir)
    return summary(material.upload(client, M.AGENT, "image", dir .. "/logo.png"))
  end,
  upload_six_bytes = function(client, dir)
    return summary(material.upload(client, M.AGENT, "file", dir .. "/six.bin"))
  end,
  upload_file_errors = function(client, dir)
    local out = {}
    for _, c in ipairs{
      { "file", "missing.bin" }, { "file", "empty.d" }, { "file", "empty.bin" }, { "file", "five.bin" },
      { "image", "image-over.png" }, { "file", "file-over.bin" },
    } do
      out[#out + 1] = summary(material.upload(client, M.AGENT, c[1], dir .. "/" .. c[2]))
    end
    return out
  end,
  argument_errors = function(client)
    local out = {}
    local function try(fn, ...)
      local ok, err = pcall(fn, ...)
      out[#out + 1] = ok and "no error" or tostring(err):gsub("^[^:]*:%d+: ", "")
    end
    try(material.upload, client, M.AGENT, "picture", "/x")
    try(material.upload, client, M.AGENT, "image", nil)
    try(material.upload, {}, M.AGENT, "image", "/x")
    try(material.upload, client, "nobody", "image", "/x")
    try(material.upload_data, client, M.AGENT, "voice", "a.amr", ("v"):rep(2 * 1024 * 1024 + 1))
    try(material.upload_data, client, M.AGENT, "file", "a.bin", "12345")
    try(material.upload_data, client, M.AGENT, "file", "", "123456")
    try(material.upload_data, client, M.AGENT, "file", "a\0b", "123456")
    try(material.upload_data, client, M.AGENT, "file", "a.bin", 123456)
    try(material.get, client, M.AGENT, "")
    try(material.get, client, M.AGENT, "id", "path")
    try(material.get, client, M.AGENT, "id", { max = 0 })
    try(material.get, client, M.AGENT, "id", { range = { 5, 2 } })
    try(material.get, client, M.AGENT, "id", { path = 7 })
    return out
  end,
  -- upload, then download to memory, to a file and a range of it
  round_trip = function(client, dir)
    local up, err = material.upload_data(client, M.AGENT, "image", "logo.png", M.PNG)
    if not up then
      return summary(up, err)
    end
    local path = dir .. "/down.png"
    os.remove(path)
    local whole = summary(material.get(client, M.AGENT, up.media_id))
    local to_file = summary(material.get(client, M.AGENT, up.media_id, { path = path }))
    local f = io.open(path, "rb")
    local bytes = f and f:read("*a")
    if f then
      f:close()
    end
    return {
      media_id = up.media_id,
      whole = whole,
      same = whole.res and whole.res.body == M.PNG,
      to_file = to_file,
      file_same = bytes == M.PNG,
      part_left = exists(path .. ".part"),
      range = summary(material.get(client, M.AGENT, up.media_id, { range = { 2, 5 } })),
      tail = summary(material.get(client, M.AGENT, up.media_id, { range = { 40 } })),
    }
  end,
  -- the answers that are not content: an unknown media_id, an answer over max, one cut short
  get_failures = function(client, dir, media_id)
    local path = dir .. "/fail.bin"
    os.remove(path)
    local res, err = material.get(client, M.AGENT, media_id or "no-such-media", { path = path, max = 20 })
    local out = summary(res, err)
    out.file_left = exists(path)
    out.part_left = exists(path .. ".part")
    return out
  end,
  -- a download that breaks off: nothing at the path, no part file
  get_cut = function(client, dir, media_id)
    local path = dir .. "/cut.png"
    os.remove(path)
    local out = summary(material.get(client, M.AGENT, media_id, { path = path }))
    out.file_left = exists(path)
    out.part_left = exists(path .. ".part")
    return out
  end,
  -- 20 MB up and down, in this process: how far its memory rose at the peak of each
  big = function(client, dir)
    local up_growth, up = peak_growth(function()
      return summary(material.upload(client, M.AGENT, "file", dir .. "/big.bin"))
    end)
    if not up.res then
      return up
    end
    local path = dir .. "/big.down"
    os.remove(path)
    local down_growth, down = peak_growth(function()
      return summary(material.get(client, M.AGENT, up.res.media_id, { path = path }))
    end)
    return { up = up, down = down, up_growth_kb = up_growth, down_growth_kb = down_growth, path = path }
  end,
}

M.summary, M.exists = summary, exists

return M
