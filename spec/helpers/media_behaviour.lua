-- The behaviour of wechat.work.material, the same on both transports: spec/material_spec.lua runs it over libcurl,
-- spec/openresty/material_spec.lua inside nginx. `run(name, arg)` runs a case of helpers.media_cases where the
-- client lives and returns its table; the stand-in is checked from here.
local standin = require "helpers.standin"
local cases = require "helpers.media_cases"

local DIR = cases.DIR

local function sha1_of(path)
  local p = assert(io.popen("sha1sum '" .. path .. "'"))
  local out = p:read("*a")
  p:close()
  return out:match("^(%x+)")
end

-- The recorded multipart body of the n-th upload, with its boundary replaced by "B".
local function recorded_upload(n)
  local r = standin.requests("/cgi-bin/media/upload")[n or 1]
  local boundary = r.body:match("^%-%-(%S+)\r\n")
  return (r.body:gsub(boundary:gsub("%p", "%%%0"), "B")), r.args, boundary
end

--- Makes the files (the 20 MB one with head -c) and starts the stand-in.
local function setup_all()
  standin.start()
  cases.prepare(DIR)
  assert(os.execute("head -c " .. cases.BIG .. " /dev/urandom > '" .. DIR .. "/big.bin'"))
end

local M = { setup = setup_all }

--- Defines the `it` blocks, inside the caller's describe: busted gives `it` and its `assert` to spec files only.
function M.define(it, assert, run)
  it("upload_data sends one part named media with filename and filelength, octet-stream", function()
    local out = run("upload_data_png")
    assert.is_nil(out.err)
    assert.equal("image", out.res.type)
    assert.equal("string", type(out.res.created_at))
    assert.truthy(out.res.media_id:find("^3m"))
    local body, args = recorded_upload()
    assert.equal('--B\r\nContent-Disposition: form-data; name="media"; filename="logo %221%22.png"; filelength='
      .. #cases.PNG .. '\r\nContent-Type: application/octet-stream\r\n\r\n[' .. #cases.PNG .. ' bytes]\r\n--B--\r\n',
      body)
    assert.equal("image", args.type)
    assert.same({ ["/cgi-bin/gettoken"] = 1, ["/cgi-bin/media/upload"] = 1 }, standin.counts())
    assert.equal(standin.token(), args.access_token)
  end)

  it("sends the Content-Type of a multipart body with the same boundary", function()
    run("upload_data_png")
    local _, _, boundary = recorded_upload()
    assert.truthy(boundary:find("^%-%-%-%-wechat%-work%-%x+$"), boundary)
    assert.equal(16 + 32, #boundary)
  end)

  it("upload streams a file from disk, named by the last part of its path", function()
    local out = run("upload_path")
    assert.is_nil(out.err)
    local body = recorded_upload()
    assert.equal('--B\r\nContent-Disposition: form-data; name="media"; filename="logo.png"; filelength='
      .. #cases.PNG .. '\r\nContent-Type: application/octet-stream\r\n\r\n[' .. #cases.PNG .. ' bytes]\r\n--B--\r\n',
      body)
    local kept = standin.media(out.res.media_id)
    assert.equal(sha1_of(DIR .. "/logo.png"), sha1_of(kept.path))
    assert.equal("image/png", kept.content_type)
  end)

  it("takes a file of 6 bytes, the least WeCom takes", function()
    local out = run("upload_six_bytes")
    assert.is_nil(out.err)
    assert.equal("file", out.res.type)
  end)

  it("refuses a missing, unreadable, empty, too small or too large file with nothing sent", function()
    local out = run("upload_file_errors")
    local reasons = {}
    for i, o in ipairs(out) do
      assert.equal("media", o.err.kind)
      assert.equal("upload", o.err.op)
      reasons[i] = o.err.reason
    end
    assert.same({ "missing", "unreadable", "empty", "too_small", "too_large", "too_large" }, reasons)
    assert.equal("10485761 bytes: WeCom takes 10485760 bytes at most for image", out[5].err.message)
    assert.equal("5 bytes: WeCom takes 6 bytes at least", out[4].err.message)
    assert.same({}, standin.counts())
  end)

  it("raises on a wrong argument, naming it", function()
    assert.same({
      [[bad argument #3 to 'upload' ("image", "voice", "video" or "file" expected, got "picture")]],
      "bad argument #4 to 'upload' (file path expected, got no value)",
      "bad argument #1 to 'upload' (wechat.work client expected, got table)",
      "bad argument #2 to 'upload' (unknown agent 'nobody')",
      "bad argument #5 to 'upload_data' (6 to 2097152 bytes expected for voice, got 2097153)",
      "bad argument #5 to 'upload_data' (6 to 20971520 bytes expected for file, got 5)",
      "bad argument #4 to 'upload_data' (file name of 1 to 255 bytes without NUL expected, got 0 bytes)",
      "bad argument #4 to 'upload_data' (file name of 1 to 255 bytes without NUL expected, got 3 bytes)",
      "bad argument #5 to 'upload_data' (string expected, got number)",
      "bad argument #3 to 'get' (media_id of 1 to 256 bytes expected, got 0 bytes)",
      "bad argument #4 to 'get' (table or nil expected, got string)",
      "bad argument #4 to 'get' (opts.max: integer >= 1 expected, got 0)",
      "bad argument #4 to 'get' (opts.range[2] (to): integer >= 5 expected, got 2)",
      "bad argument #4 to 'get' (opts.path: file path expected, got number)",
    }, run("argument_errors"))
    assert.same({}, standin.counts())
  end)

  -- the four downloads of the round_trip case, byte for byte
  local function assert_round_trip(out)
    assert.same({ body = cases.PNG, content_type = "image/png", filename = "logo.png" }, out.whole.res)
    assert.is_true(out.same)
    assert.same({ path = DIR .. "/down.png", size = #cases.PNG, content_type = "image/png", filename = "logo.png" },
      out.to_file.res)
    assert.is_true(out.file_same)
    assert.is_false(out.part_left)
    assert.same({ body = cases.PNG:sub(3, 6), content_type = "image/png", filename = "logo.png" }, out.range.res)
    assert.same({ body = cases.PNG:sub(41), content_type = "image/png", filename = "logo.png" }, out.tail.res)
  end

  it("get downloads to memory, to a file, and a range", function()
    local out = run("round_trip")
    assert_round_trip(out)
    local gets = standin.requests("/cgi-bin/media/get")
    assert.equal(4, #gets)
    assert.same({ access_token = standin.token(), media_id = out.media_id }, gets[1].args)
  end)

  -- nginx frames the stand-in's answers with Content-Length; config media_framing writes them by hand otherwise
  for _, framing in ipairs{ "chunked", "close" } do
    it("get reads a body " .. (framing == "chunked" and "sent in chunks" or "ended by the connection closing")
      .. ", to memory, to a file and a range, byte for byte", function()
      standin.config{ media_framing = framing }
      local out = run("round_trip")
      assert_round_trip(out)
      assert.equal(4, standin.counts()["/cgi-bin/media/get"])
      -- and the stand-in did frame it so
      local status, body, headers = standin.request("GET", "/cgi-bin/media/get?access_token=" .. standin.token()
        .. "&media_id=" .. out.media_id)
      assert.same({ 200, cases.PNG, framing == "chunked" and "chunked" or nil, nil, "close" },
        { status, body, headers["transfer-encoding"], headers["content-length"], headers["connection"] })
    end)
  end

  it("gives WeCom's JSON answer to media/get as an api error, never as a file", function()
    local out = run("get_failures")
    assert.same({ kind = "api", errcode = 40007, errmsg = "invalid media_id", op = "get" }, out.err)
    assert.is_false(out.file_left)
    assert.is_false(out.part_left)
  end)

  it("stops a download over opts.max and leaves no file", function()
    local up = run("upload_data_png").res
    local out = run("get_failures", up.media_id)
    assert.equal("transport", out.err.kind)
    assert.equal("too_large", out.err.reason)
    assert.is_false(out.file_left)
    assert.is_false(out.part_left)
  end)

  it("leaves no file at opts.path when the download breaks off mid-body, after trying it again", function()
    local up = run("upload_data_png").res
    standin.config{ media_cut_after = 10 }
    local out = run("get_cut", up.media_id)
    assert.equal("transport", out.err.kind)
    assert.equal("recv", out.err.reason)
    assert.is_false(out.file_left)
    assert.is_false(out.part_left)
    -- a download changes nothing at WeCom: it went once more
    assert.equal(2, standin.counts()["/cgi-bin/media/get"])
  end)

  it("refreshes an expired token and uploads again", function()
    assert.is_nil(run("upload_data_png").err)
    standin.expire_tokens()
    local out = run("upload_data_png")
    assert.is_nil(out.err)
    assert.same({ ["/cgi-bin/gettoken"] = 2, ["/cgi-bin/media/upload"] = 3 }, standin.counts())
  end)

  it("does not upload again after a send whose fate is unknown", function()
    standin.script("/cgi-bin/media/upload", { close = true })
    local out = run("upload_data_png")
    assert.equal("transport", out.err.kind)
    assert.equal(1, standin.counts()["/cgi-bin/media/upload"])
  end)

  it("uploads and downloads 20 MB byte for byte, the process growing by less than 2 MB", function()
    local out = run("big")
    assert.is_nil(out.up.err)
    assert.is_nil(out.down.err)
    assert.equal(cases.BIG, standin.media(out.up.res.media_id).size)
    assert.equal(sha1_of(DIR .. "/big.bin"), sha1_of(standin.media(out.up.res.media_id).path))
    assert.equal(sha1_of(DIR .. "/big.bin"), sha1_of(out.path))
    assert.equal(cases.BIG, out.down.res.size)
    assert.is_true(out.up_growth_kb < 2048, "upload grew " .. out.up_growth_kb .. " KiB")
    assert.is_true(out.down_growth_kb < 2048, "download grew " .. out.down_growth_kb .. " KiB")
  end)
end

return M
