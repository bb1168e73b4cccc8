-- Uploads a file as WeCom temporary media and prints its media_id (valid 3 days), for image, voice, video and file
-- messages, link and mini-program thumbnails and KF account avatars.
--
--   lua5.4 examples/media/upload.lua [TYPE [PATH]]        default: image examples/media/logo.png
--
-- Against the local stand-in by default (tools/demo does this); against WeCom with WECOM_CORP_ID and
-- WECOM_KF_SECRET set (WECOM_BASE_URL to another host).
local work = require "wechat.work"
local material = require "wechat.work.material"

local getenv = os.getenv
local media_type, path = arg[1] or "image", arg[2] or "examples/media/logo.png"

local client = work.client{
  corp_id = getenv("WECOM_CORP_ID") or "wwCORP",
  agents = { kf = { secret = getenv("WECOM_KF_SECRET") or "KF_SECRET" } },
  base_url = getenv("WECOM_BASE_URL") or (not getenv("WECOM_CORP_ID") and "http://127.0.0.1:18080" or nil),
  cafile = getenv("WECOM_CAFILE"),
  timeout = 10,
}

-- streamed from disk: a 20 MB file never sits in memory
local res, err = material.upload(client, "kf", media_type, path)
client:close()
if not res then
  -- err.reason says what to fix: "missing", "unreadable", "empty", "too_small", "too_large" (kind "media"),
  -- or WeCom's errcode (kind "api", e.g. 40005 a format the type does not take)
  io.stderr:write(("upload of %s failed: %s (reason %s)\n"):format(path, tostring(err), tostring(err.reason)))
  os.exit(1, true)
end
print(res.media_id)
