-- Writes the seed corpora fuzz/corpus/<target>/<name>: a handful of valid and near-valid inputs per target, in
-- each target's input format, so the fuzzers start from real bodies, envelopes and responses.
--   lua5.4 fuzz/seeds.lua        (from the repository root, after tools/build: it uses build/5.4/wechat/core.so)
-- The files it writes are committed; rerun it only when an input format changes.
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = "build/5.4/?.so;" .. package.cpath

local testing = require "wechat.work.callback.testing"
local u = require "fixtures.callback.util"

local char, rep = string.char, string.rep
local concat = table.concat

local function write(target, name, data)
  os.execute("mkdir -p fuzz/corpus/" .. target)
  local f = assert(io.open("fuzz/corpus/" .. target .. "/" .. name, "wb"))
  assert(f:write(data))
  assert(f:close())
end

local function u16(n)
  return char(n >> 8 & 255, n & 255)
end

-- The value byte code of fuzz/harness.c (fz_push_value); keep the numbers in step with its OP_ enum and tables.
local V = {}
function V.null() return char(0) end
function V.bool(b) return char(b and 2 or 1) end
function V.int8(n) return char(3, n & 255) end
function V.float(i) return char(6, i) end -- index into FZ_FLOATS
function V.int(i) return char(7, i) end   -- index into FZ_INTS
function V.str(s)
  assert(#s <= 255)
  return char(8, #s) .. s
end
function V.word(i) return char(9, i) end  -- index into FZ_WORDS
-- pattern repeated count (<= 1024) times, or 256 * count times with scale
function V.huge(pattern, count, scale)
  return char(10, #pattern - 1) .. pattern .. u16(count - 1) .. char(scale and 0x3c or 0)
end
function V.cjson_null() return char(12) end
function V.array(...)
  local items = { ... }
  return char(13, #items) .. concat(items)
end
-- V.object{ k1, v1, k2, v2, ... } with encoded keys and values
function V.object(kv)
  return char(14, #kv // 2) .. concat(kv)
end
function V.ref(i) return char(17, i) end
function V.meta(jsontype, flags, value) return char(18, jsontype, flags) .. value end
function V.other(what, a, b) return char(19, what) .. (a and char(a) or "") .. (b and char(b) or "") end

local S = V.str
local F = { NAN = 0, INF = 2, NEG_ZERO = 4, HALF = 6, LAT_EDGE = 21 }
local I = { ONE = 1, INT_MAX = 23, LLONG_MAX = 28, LLONG_MIN = 29, THOUSAND = 19 }

local function menu()
  return V.object({
    S "head_content", S "Did that help?",
    S "list", V.array(
      V.object({ S "type", S "click", S "click", V.object({ S "id", S "101", S "content", S "Yes" }) }),
      V.object({ S "type", S "view", S "view",
        V.object({ S "url", S "https://example.com/a", S "content", S "More" }) }),
      V.object({ S "type", S "miniprogram", S "miniprogram",
        V.object({ S "appid", S "wx123", S "pagepath", S "pages/index", S "content", S "Open" }) }),
      V.object({ S "type", S "text", S "text", V.object({ S "content", S "line", S "no_newline", V.int8(1) }) })),
    S "tail_content", S "Thanks \xe4\xbd\xa0\xe5\xa5\xbd",
  })
end

-- fuzz_bodies: flags, argument count, the arguments.
local function bodies(name, flags, ...)
  local args = { ... }
  write("fuzz_bodies", name, char(flags, #args) .. concat(args))
end
local C, A = V.null(), V.null() -- client and agent: ignored by the builders
local TO, KF = S "wmUSER", S "wkKF"
bodies("send_text", 0, C, A, TO, KF, S "hello \xf0\x9f\x98\x80", V.object({ S "msgid", S "Az09_-" }))
bodies("send_video", 0, C, A, TO, KF, S "MEDIA", S "title", S "desc", V.null())
bodies("send_link", 0, C, A, TO, KF,
  V.object({ S "title", S "t", S "desc", S "d", S "url", S "HTTPS://example.com", S "thumb_media_id", S "m" }))
bodies("send_mini_program", 0, C, A, TO, KF,
  V.object({ S "appid", S "wx1", S "title", S "t", S "thumb_media_id", S "m", S "pagepath", S "p" }))
bodies("send_menu", 0, C, A, TO, KF, menu())
bodies("send_location", 1, C, A, TO, KF,
  V.object({ S "name", S "n", S "address", S "a", S "latitude", V.float(F.LAT_EDGE), S "longitude", V.float(F.NAN) }))
bodies("send_message_generic", 0, C, A, TO, KF, S "news",
  V.object({ S "articles",
    V.array(V.object({ S "title", S "x", S "n", V.int(I.LLONG_MIN) }), V.meta(1, 0, V.array())) }),
  V.null())
bodies("send_message_body", 0, C, A,
  V.object({ S "touser", TO, S "msgtype", S "text", S "text", V.object({ S "content", S "hi" }),
    S "list", V.meta(2, 0, V.object({})), S "null", V.cjson_null() }))
bodies("on_event", 0, C, A, S "CODE", S "msgmenu", menu(), S "MSGID")
bodies("sync_msg", 0, C, A, V.object({ S "cursor", S "c", S "token", S "t", S "limit", V.int(I.THOUSAND),
  S "voice_format", V.int8(0), S "open_kfid", S "wk" }))
bodies("huge_content", 0, C, A, TO, KF, V.huge("\xe4\xbd\xa0", 700), V.object({ S "msgid", V.huge("a", 40) }))
bodies("huge_media_id", 0, C, A, TO, KF, V.huge("\xf0\x9f\x98\x80", 1000, true), V.null())
bodies("bad_utf8", 0, C, A, TO, KF, S "ok\xed\xa0\x80", V.null())
bodies("location_latitude", 0, C, A, TO, KF,
  V.object({ S "latitude", V.int(12), S "longitude", V.int8(10) }))
bodies("location_longitude", 0, C, A, TO, KF,
  V.object({ S "latitude", V.float(5), S "longitude", V.float(25), S "name", V.word(44) }))
bodies("menu_mismatch", 0, C, A, TO, KF, V.object({ S "list", V.array(
  V.object({ S "type", S "click", S "view", V.object({ S "url", S "http://a", S "content", S "c" }) }),
  V.object({ S "type", S "text", S "text", V.object({ S "content", S "c", S "no_newline", V.float(9) }) })) }))
bodies("auto_msgid", 0, V.object({ S "auto_msgid", V.bool(true) }), A, TO, KF, S "hi", V.object({}))

-- fuzz_family: the format of fuzz_bodies; the KF desk builders at the same positions.
local function family(name, flags, ...)
  local args = { ... }
  write("fuzz_family", name, char(flags, #args) .. concat(args))
end
local EXT = S "wmCUSTOMER"
family("account_add", 0, C, A, S "\xe5\xae\xa2\xe6\x9c\x8d", S "MEDIA", V.null())
family("account_update", 0, C, A, KF, V.object({ S "name", S "n", S "media_id", S "m" }))
family("account_list", 0, C, A, V.object({ S "offset", V.int8(0), S "limit", V.int8(100) }))
family("contact_way", 0, C, A, KF, S "spring_sale-1")
family("servicers", 0, C, A, KF, V.object({ S "userid_list", V.array(S "zhangsan", S "lisi"),
  S "department_id_list", V.array(V.int8(2), V.int(I.INT_MAX)) }))
family("trans", 0, C, A, KF, EXT, V.int8(3), S "zhangsan")
family("customers", 0, C, A, V.array(EXT, S "wm2"), V.object({ S "need_enter_session_context", V.bool(true) }))
family("upgrade", 0, C, A, KF, EXT, V.int8(1), V.object({ S "userid", S "u", S "wording", S "\xe4\xbd\xa0" }))
family("statistic", 1, C, A, V.object({ S "open_kfid", KF, S "servicer_userid", S "u", S "start_time", V.int(I.ONE),
  S "end_time", V.int(I.THOUSAND) }))
family("bad_name", 0, C, A, V.huge("\xe4\xbd\xa0", 17), S "m")

-- fuzz_encode: flags, one value.
local function encode(name, flags, value)
  write("fuzz_encode", name, char(flags) .. value)
end
local deep = V.int8(1)
for _ = 1, 33 do
  deep = V.array(deep)
end
encode("deep", 0, deep)
encode("cycle", 0, V.array(V.int8(1), V.ref(0)))
encode("mixed", 0, V.object({ V.int8(1), S "a", S "k", V.float(F.HALF), V.int(I.LLONG_MAX), V.bool(true) }))
encode("numbers", 0, V.array(V.float(F.NEG_ZERO), V.float(F.INF), V.int(I.INT_MAX), V.float(12), V.int8(-1)))
encode("jsontype", 0, V.array(V.meta(1, 0, V.array()), V.meta(2, 0, V.object({ S "x", V.int8(1) })),
  V.meta(3, 4, V.array()), V.cjson_null()))
encode("strings", 0, V.object({ S "\xe4\xbd\xa0", S "\"\\\n\t\x01", S "k\x80", S "v", V.word(53), V.huge("ab", 300) }))
encode("huge", 0, V.array(V.huge("\xe4\xbd\xa0\"", 1000, true)))
encode("weak_gc", 1, V.array(V.meta(0, 2, V.array(V.array(), V.array())), V.other(4, 0, 0), V.other(4, 2, 1)))
encode("functions", 0, V.array(V.other(0), V.other(1), V.other(2), V.other(3)))

-- fuzz_decrypt: flags (mode in bits 0-1), key, receive id, mode data, four strings to sign.
local function b64decode(s)
  local map = {}
  local abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  for i = 1, 64 do
    map[abc:byte(i)] = i - 1
  end
  local out, bits, nbits = {}, 0, 0
  for i = 1, #s do
    local v = map[s:byte(i)]
    if v then
      bits, nbits = (bits << 6) | v, nbits + 6
      if nbits >= 8 then
        nbits = nbits - 8
        out[#out + 1] = char(bits >> nbits & 255)
      end
    end
  end
  return concat(out)
end
local KEY_BYTES = b64decode(u.KEY .. "=")
assert(#KEY_BYTES == 32)
local function sign_tail()
  return char(#u.TOKEN) .. u.TOKEN .. char(10) .. "1409659589" .. char(9) .. "263014780" .. char(8) .. "P9nAzCzy"
end
-- Modes 0 and 3 read the data to the end of the input; the others leave room for the strings to sign.
local function decrypt(name, flags, key, rid, data)
  local tail = (flags & 3 == 1 or flags & 3 == 2) and sign_tail() or ""
  write("fuzz_decrypt", name, char(flags) .. key .. u16(#rid) .. rid .. data .. tail)
end
decrypt("echostr", 0, KEY_BYTES, u.CORP_ID, u.URL_CHECK.echostr)
decrypt("raw_key", 0x1c, char(43) .. u.KEY, u.CORP_ID, u.MSG_ENCRYPT)
decrypt("ciphertext", 1, KEY_BYTES, u.CORP_ID, u16(#b64decode(u.URL_CHECK.echostr)) .. b64decode(u.URL_CHECK.echostr)
  .. char(0))
local plain = rep("r", 16) .. char(0, 0, 0, 5) .. "hello" .. u.CORP_ID
plain = plain .. rep(char(32 - #plain % 32), 32 - #plain % 32)
decrypt("plaintext", 2, KEY_BYTES, u.CORP_ID, u16(#plain) .. plain)
decrypt("round_trip", 3, KEY_BYTES, u.CORP_ID, char(16) .. "aaaabbbbccccdddd" .. u.MSG_PLAIN)
decrypt("rid_number", 0xe3, KEY_BYTES, "", char(16) .. "aaaabbbbccccdddd" .. "x")
decrypt("random16_short", 3, KEY_BYTES, u.CORP_ID, char(15 * 8 + 7) .. "aaaabbbbccccddd" .. "x")

-- fuzz_callback_xml: mode, random16, data.
local cb = testing.new({ token = "fuzzTOKENq7XwPz", encoding_aes_key = u.KEY, corp_id = u.CORP_ID })
local KF_EVENT = "<xml><ToUserName><![CDATA[ww1234567890abcdef]]></ToUserName><CreateTime>1348831860</CreateTime>"
  .. "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_msg_or_event]]></Event>"
  .. "<Token><![CDATA[ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR]]></Token>"
  .. "<OpenKfId><![CDATA[wkxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx]]></OpenKfId></xml>"
local R16 = "0123456789abcdef"
local function xml(name, mode, data)
  write("fuzz_callback_xml", name, char(mode) .. R16 .. data)
end
local req = assert(cb:build_event_request(KF_EVENT, { random16 = R16, timestamp = "1409304348", nonce = "xxxxxx" }))
xml("outer", 0, req.body)
xml("outer_tencent", 0, u.MSG_BODY)
xml("inner_kf_event", 1, KF_EVENT)
xml("inner_entities", 1, "<xml><A>&lt;&#x4F60;&#22909;&amp;</A><B><![CDATA[]]]]><![CDATA[>]]></B>\n</xml>")
xml("inner_doctype", 1, '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><xml><A>&a;</A></xml>')
xml("inner_nested", 1, "<xml><A><B>x</B></A><A/>text<?pi x?></xml>")
xml("inner_utf8", 1, "<xml><Content>\xe4\xbd\xa0\xe5\xa5\xbd\xf0\x9f\x98\x80</Content><Bad>\xc0\xaf</Bad></xml>")
local check = assert(cb:build_url_check(u.ECHO_PLAIN, { random16 = R16, timestamp = "1", nonce = "2" }))
xml("url_check", 2, check.echostr)

-- fuzz_response: flags, max_response choice, then per request a response (how, data).
local function raw(s) return char(0) .. u16(#s) .. s end
-- pattern: 1..8 bytes, repeated reps (< 4096) times, or 64 * reps times with scale
local function framed(how, pattern, reps, status, chunks, scale)
  return char(how, #pattern - 1) .. pattern .. u16(reps) .. char(scale and 7 or 0, status) .. (chunks or "")
end
local function response(name, flags, maxsel, ...)
  write("fuzz_response", name, char(flags, maxsel) .. concat({ ... }))
end
local OK = '{"errcode":0,"errmsg":"ok","msgid":"m1"}'
response("content_length", 0, 10, raw("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " .. #OK
  .. "\r\n\r\n" .. OK))
response("chunked", 4, 10, raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"err\r\n"
  .. string.format("%x", #OK - 5) .. "\r\n" .. OK:sub(6) .. "\r\n0\r\n\r\n"))
response("close_delimited", 0, 3, raw("HTTP/1.0 500 Internal Server Error\r\n\r\nboom"))
response("too_large_declared", 0, 4, raw("HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\nabc"))
response("truncated", 0, 10, raw("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"))
response("continue_then_ok", 0, 10, raw("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"))
response("redirect", 0, 10, raw("HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:9/x?access_token=T\r\n"
  .. "Content-Length: 0\r\n\r\n"))
response("garbage", 0, 10, raw("SSH-2.0-OpenSSH\r\n"))
response("framed_fits", 0, 6, framed(1, "ab", 8192, 0))
response("framed_over", 0, 6, framed(1, "ab", 8193, 0))
response("framed_chunked", 0, 7, framed(2, "{x}", 1000, 3, u16(100) .. char(2) .. u16(7) .. char(0)))
response("two_requests_keep_buffer", 1, 10, framed(1, "01234567", 3000, 0, nil, 1), framed(3, "z", 10, 2))
response("write_callback", 2, 4, u16(1000) .. char(0) .. u16(65535) .. char(1) .. u16(5) .. char(0))
-- fuzz_http_answer: flags (bit 0: framed here, bits 1-2 its kind), a split seed, then the answer or the payload.
local function answer(name, flags, seed, data)
  write("fuzz_http_answer", name, char(flags, seed) .. data)
end
answer("content_length", 0, 3, "HTTP/1.1 200 OK\r\nContent-Length: " .. #OK .. "\r\n\r\n" .. OK)
answer("chunked_ext_trailer", 0, 5, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\n{\"err\r\n"
  .. string.format("%X", #OK - 5) .. "\r\n" .. OK:sub(6) .. "\r\n0\r\nX-T: 1\r\n\r\n")
answer("interim_then_ok", 0, 1, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nLink: x\r\n\r\n"
  .. "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
answer("http10_keep_alive", 0, 2, "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\n{}")
answer("until_close", 0, 4, "HTTP/1.1 500 Oops\nServer: x\n\nboom")
answer("bytes_after", 0, 6, "HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\nleftover!")
answer("conflicting_lengths", 0, 7, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc")
answer("framed_length", 1, 9, OK)
answer("framed_chunked", 3, 11, string.rep(OK, 20))
answer("framed_close", 5, 13, OK)
-- Past findings (spec/fuzz_regressions_spec.lua says what each was), replayed first by every tools/fuzz run.
local function regress(target, name, data)
  write(target, "regress-" .. name, data)
end
regress("fuzz_bodies", "raw_body_msgid", char(0, 3) .. C .. A .. V.object({ S "msgid", V.array() }))
regress("fuzz_bodies", "cycle_long_key",
  b64decode("AAMAAA4FCAZjdXIFdG9rZW4IAXQIBWwwAGltanD//9k4tY1cVQAAc29yCAFjCAV0b2tlAQBgQAABXzMAaW1qcP8lfv4LlYs7Andr"))
regress("fuzz_encode", "empty_msgid", b64decode("D///HR0dHP8="))
regress("fuzz_encode", "cycle_long_key", b64decode("AA4DCAHkvaAKCgoKCuS9oAoKCgoKCv////8BYQ=="))
regress("fuzz_decrypt", "key_matches_message", "\255callback_encrypt")
regress("fuzz_callback_xml", "token_element", char(1) .. R16 .. "<xml><A><fuzzTOKENq7XwPzB/></A></xml>")
print("seeds written under fuzz/corpus/")
