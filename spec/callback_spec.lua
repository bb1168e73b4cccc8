-- wechat.work.callback: the URL check, event decryption with strict XML, and the envelopes WeCom expects.
-- Vectors are Tencent's published ones (spec/fixtures/callback/util.lua says where from).
local callback = require "wechat.work.callback"
local testing = require "wechat.work.callback.testing"
local core = require "wechat.core"
local errors = require "wechat.work.errors"
local u = require "fixtures.callback.util"

local function copy(t, changes)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  for k, v in pairs(changes or {}) do c[k] = v end
  return c
end

local function handler(changes)
  return testing.new(copy({ token = u.TOKEN, encoding_aes_key = u.KEY, corp_id = u.CORP_ID }, changes))
end

-- Asserts `nil, err` with a callback error of exactly this message and op.
local function assert_fails(message, op, value, err)
  assert.is_nil(value)
  assert.is_true(errors.is(err, "callback"))
  assert.equal(message, err.message)
  assert.equal(op, err.op)
end

local KF_EVENT = {
  ToUserName = "ww1234567890abcdef",
  CreateTime = 1348831860,
  MsgType = "event",
  Event = "kf_msg_or_event",
  Token = "ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR",
  OpenKfId = "wkxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
}
local KF_EVENT_TEXT = {
  ToUserName = "ww1234567890abcdef",
  CreateTime = "1348831860",
  MsgType = "event",
  Event = "kf_msg_or_event",
  Token = "ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR",
  OpenKfId = "wkxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
}
local FIXED = { timestamp = "1409659813", nonce = "1372623149", random16 = "0123456789abcdef" }

describe("wechat.work.callback", function()
  describe("new", function()
    it("raises on a missing or mistyped option, naming it", function()
      assert.has_error(function() callback.new() end, "bad argument #1 to 'new' (table expected, got nil)")
      assert.has_error(function() handler({ token = false }) end,
        "bad argument #1 to 'new' (opts.token: string expected, got boolean)")
      assert.has_error(function() handler({ corp_id = "" }) end,
        "bad argument #1 to 'new' (opts.corp_id: must not be empty)")
      assert.has_error(function() callback.new({ token = u.TOKEN, corp_id = u.CORP_ID }) end,
        "bad argument #1 to 'new' (opts.encoding_aes_key: string expected, got nil)")
    end)

    it("raises on a bad key without echoing it", function()
      assert.has_error(function() handler({ encoding_aes_key = u.KEY:sub(1, 42) }) end,
        "bad argument #1 to 'new' (opts.encoding_aes_key: 43 base64 characters expected)")
      assert.has_error(function() handler({ encoding_aes_key = u.KEY:sub(1, 42) .. "-" }) end,
        "bad argument #1 to 'new' (opts.encoding_aes_key: 43 base64 characters expected)")
    end)

    it("raises on an unknown option, so a typo is not a silent default", function()
      assert.has_error(function() handler({ encodingAESKey = u.KEY }) end,
        "bad argument #1 to 'new' (unknown option <encodingAESKey>)")
    end)
  end)

  describe("verify_url", function()
    it("answers Tencent's URL check with the echostr plaintext", function()
      assert.equal(u.ECHO_PLAIN, handler():verify_url(u.URL_CHECK))
    end)

    it("refuses a signature with one character changed", function()
      local q = copy(u.URL_CHECK, { msg_signature = u.flip_hex(u.URL_CHECK.msg_signature, 17) })
      assert_fails("signature mismatch", "verify_url", handler():verify_url(q))
    end)

    it("refuses a tampered echostr, timestamp or nonce, and another token", function()
      assert_fails("signature mismatch", "verify_url",
        handler():verify_url(copy(u.URL_CHECK, { echostr = u.tamper(u.URL_CHECK.echostr, 64, 1) })))
      assert_fails("signature mismatch", "verify_url",
        handler():verify_url(copy(u.URL_CHECK, { timestamp = "1409659590" })))
      assert_fails("signature mismatch", "verify_url",
        handler():verify_url(copy(u.URL_CHECK, { nonce = "263014781" })))
      assert_fails("signature mismatch", "verify_url", handler({ token = "QDG6eL" }):verify_url(u.URL_CHECK))
    end)

    it("refuses another corp id or key even with a good signature", function()
      assert_fails("echostr: receive id mismatch", "verify_url",
        handler({ corp_id = "wx5823bf96d3bd56c8" }):verify_url(u.URL_CHECK))
      assert_fails("echostr: bad padding", "verify_url",
        handler({ encoding_aes_key = u.JAVA.key }):verify_url(u.URL_CHECK))
    end)

    it("refuses a query that lacks a field or repeats one", function()
      assert_fails("missing echostr", "verify_url",
        handler():verify_url({ msg_signature = u.URL_CHECK.msg_signature, timestamp = "1", nonce = "2" }))
      assert_fails("missing msg_signature", "verify_url", handler():verify_url({}))
      assert_fails("timestamp: string expected, got table", "verify_url",
        handler():verify_url(copy(u.URL_CHECK, { timestamp = { "1", "2" } })))
      assert_fails("empty nonce", "verify_url", handler():verify_url(copy(u.URL_CHECK, { nonce = "" })))
      assert_fails("nonce too long: 1025 bytes, at most 1024", "verify_url",
        handler():verify_url(copy(u.URL_CHECK, { nonce = string.rep("1", 1025) })))
    end)

    it("keeps secrets out of the error text", function()
      local _, err = handler():verify_url(copy(u.URL_CHECK, { nonce = "1" }))
      assert.equal("wechat: callback error: signature mismatch in verify_url", tostring(err))
      assert.is_nil(tostring(err):find(u.TOKEN, 1, true))
    end)

    it("round-trips a URL check built by build_url_check", function()
      local q = handler():build_url_check("echo 回声", FIXED)
      assert.same({ "1409659813", "1372623149" }, { q.timestamp, q.nonce })
      assert.equal(core.callback_signature(u.TOKEN, q.timestamp, q.nonce, q.echostr), q.msg_signature)
      assert.equal("echo 回声", handler():verify_url(q))
    end)

    it("raises when the query is not a table", function()
      assert.has_error(function() handler():verify_url("msg_signature=x") end,
        "bad argument #1 to 'verify_url' (table expected, got string)")
    end)
  end)

  describe("decrypt_event", function()
    it("decrypts Tencent's sample message into its fields", function()
      assert.same({
        ToUserName = "wx5823bf96d3bd56c7",
        FromUserName = "mycreate",
        CreateTime = "1409659813",
        MsgType = "text",
        Content = "hello",
        MsgId = "4561255354251345929",
        AgentID = "218",
      }, handler():decrypt_event(u.MSG_QUERY, u.MSG_BODY))
    end)

    it("decrypts a KF event built by build_event_request", function()
      local req = handler():build_event_request(KF_EVENT, FIXED)
      assert.same(KF_EVENT_TEXT, handler():decrypt_event(req.query, req.body))
    end)

    it("builds the exact request WeCom sends", function()
      local req = handler():build_event_request(KF_EVENT, FIXED)
      local encrypt = core.callback_encrypt(u.KEY, testing.event_xml(KF_EVENT), u.CORP_ID, FIXED.random16)
      assert.same({
        query = {
          msg_signature = core.callback_signature(u.TOKEN, FIXED.timestamp, FIXED.nonce, encrypt),
          timestamp = "1409659813",
          nonce = "1372623149",
        },
        body = "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName><Encrypt><![CDATA[" .. encrypt
          .. "]]></Encrypt><AgentID><![CDATA[]]></AgentID></xml>",
      }, req)
    end)

    describe("tampering", function()
      local cb = handler()
      local original = cb:build_event_request(KF_EVENT, FIXED)
      local encrypt = callback._parse_flat(original.body).Encrypt

      local function with_encrypt(e, resign)
        local query = copy(original.query)
        if resign then
          query.msg_signature = core.callback_signature(u.TOKEN, query.timestamp, query.nonce, e)
        end
        return query, original.body:gsub(encrypt:gsub("%p", "%%%0"), (e:gsub("%%", "%%%%")))
      end

      it("refuses a flipped bit in the first or last ciphertext block", function()
        local n = #u.b64decode(encrypt)
        assert_fails("signature mismatch", "decrypt_event", cb:decrypt_event(with_encrypt(u.tamper(encrypt, 5, 1))))
        assert_fails("signature mismatch", "decrypt_event", cb:decrypt_event(with_encrypt(u.tamper(encrypt, n, 1))))
      end)

      it("refuses a re-signed ciphertext (token known, key not) at decryption", function()
        local n = #u.b64decode(encrypt)
        assert_fails("Encrypt: bad padding", "decrypt_event",
          cb:decrypt_event(with_encrypt(u.tamper(encrypt, n, 1), true)))
        assert_fails("Encrypt: message length 2147483969 larger than the 339 bytes present", "decrypt_event",
          cb:decrypt_event(with_encrypt(u.tamper(encrypt, 1, 0x80), true)))
      end)

      it("refuses a flipped signature character", function()
        local q = copy(original.query, { msg_signature = u.flip_hex(original.query.msg_signature, 40) })
        assert_fails("signature mismatch", "decrypt_event", cb:decrypt_event(q, original.body))
      end)

      it("refuses another corp id or key", function()
        assert_fails("Encrypt: receive id mismatch", "decrypt_event",
          handler({ corp_id = "wx5823bf96d3bd56c8" }):decrypt_event(original.query, original.body))
        assert_fails("Encrypt: bad padding", "decrypt_event",
          handler({ encoding_aes_key = u.JAVA.key }):decrypt_event(original.query, original.body))
      end)

      it("refuses truncated and non-base64 Encrypt", function()
        assert_fails("Encrypt: ciphertext is not valid base64", "decrypt_event",
          cb:decrypt_event(with_encrypt(encrypt:sub(1, -2), true)))
        assert_fails("Encrypt: ciphertext is not valid base64", "decrypt_event",
          cb:decrypt_event(with_encrypt("*" .. encrypt:sub(2), true)))
      end)
    end)

    describe("hostile outer XML", function()
      local cb = handler()
      local function outer(body)
        return cb:decrypt_event(u.MSG_QUERY, body)
      end

      it("refuses billion laughs", function()
        local lol = '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
          .. '<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
          .. '<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">'
          .. '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
          .. '<xml><Encrypt>&lol3;</Encrypt></xml>'
        assert_fails("body: DOCTYPE not allowed", "decrypt_event", outer(lol))
      end)

      it("refuses an external entity", function()
        assert_fails("body: DOCTYPE not allowed", "decrypt_event",
          outer('<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><Encrypt>&xxe;</Encrypt></xml>'))
        assert_fails("body: DOCTYPE not allowed", "decrypt_event",
          outer('<!DOCTYPE xml SYSTEM "http://127.0.0.1:9/x.dtd"><xml><Encrypt>a</Encrypt></xml>'))
      end)

      it("refuses an entity that was never declared", function()
        assert_fails("body: malformed XML (undefined entity at line 1 column 15)", "decrypt_event",
          outer("<xml><Encrypt>&xxe;</Encrypt></xml>"))
      end)

      it("refuses a body of 1 MB before parsing it", function()
        assert_fails("body too large: 1048576 bytes, at most 65536", "decrypt_event",
          outer("<xml><Encrypt>" .. string.rep("A", 1048576 - 30) .. "</Encrypt></xml>"))
      end)

      it("refuses nesting deeper than root and fields", function()
        assert_fails("body: nesting deeper than 2 at <b>", "decrypt_event",
          outer("<xml><Encrypt><b>x</b></Encrypt></xml>"))
      end)

      it("refuses an unterminated CDATA section and an unclosed root", function()
        assert_fails("body: malformed XML (unclosed CDATA section at line 1 column 43)", "decrypt_event",
          outer("<xml><Encrypt><![CDATA[abc</Encrypt></xml>"))
        assert_fails("body: malformed XML (no element found at line 2 column 2)", "decrypt_event",
          outer("<xml><Encrypt>abc</Encrypt>\n "))
      end)

      it("refuses text without a root element, and another root", function()
        assert_fails("body: malformed XML (not well-formed (invalid token) at line 1 column 8)", "decrypt_event",
          outer("Encrypt=abc"))
        assert_fails("body: root element is <Encrypt>, not <xml>", "decrypt_event", outer("<Encrypt>a</Encrypt>"))
      end)

      it("refuses Encrypt given twice, text between fields and processing instructions", function()
        assert_fails("body has more than one Encrypt", "decrypt_event",
          outer("<xml><Encrypt>a</Encrypt><Encrypt>b</Encrypt></xml>"))
        assert_fails("body: text outside a field", "decrypt_event", outer("<xml>x<Encrypt>a</Encrypt></xml>"))
        assert_fails("body: processing instruction not allowed", "decrypt_event",
          outer("<xml><?php x ?><Encrypt>a</Encrypt></xml>"))
      end)

      it("refuses a body without Encrypt, an empty and a missing body", function()
        assert_fails("body has no Encrypt", "decrypt_event", outer("<xml><ToUserName>x</ToUserName></xml>"))
        assert_fails("no body", "decrypt_event", outer(""))
        assert_fails("no body", "decrypt_event", outer(nil))
      end)

      it("refuses a query without a signature before reading the body", function()
        assert_fails("missing msg_signature", "decrypt_event", cb:decrypt_event({ timestamp = "1", nonce = "2" },
          u.MSG_BODY))
      end)

      it("raises when the body is not a string", function()
        assert.has_error(function() cb:decrypt_event(u.MSG_QUERY, 42) end,
          "bad argument #2 to 'decrypt_event' (string expected, got number)")
      end)
    end)

    describe("hostile inner XML (signed and encrypted correctly)", function()
      local cb = handler()
      local function inner(xml)
        local req = cb:build_event_request(xml, FIXED)
        return cb:decrypt_event(req.query, req.body)
      end

      it("refuses billion laughs inside the ciphertext", function()
        assert_fails("event: DOCTYPE not allowed", "decrypt_event", inner(
          '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><xml><Token>&b;</Token></xml>'))
      end)

      it("refuses nesting and broken XML", function()
        assert_fails("event: nesting deeper than 2 at <MediaId>", "decrypt_event",
          inner("<xml><Video><MediaId>m</MediaId></Video></xml>"))
        assert_fails("event: malformed XML (mismatched tag at line 1 column 16)", "decrypt_event",
          inner("<xml><Token>a</Event></xml>"))
      end)

      it("returns a repeated element as the array of its texts, in order; a single one stays a string", function()
        -- kf_account_auth_change lists one <AuthAddOpenKfId> per account (path/97713)
        assert.same({
          ToUserName = "ww1", FromUserName = "sys", CreateTime = "1409659813", MsgType = "event",
          Event = "kf_account_auth_change", AuthAddOpenKfId = { "wk1", "wk2" }, AuthDelOpenKfId = "wk3",
        }, inner("<xml><ToUserName><![CDATA[ww1]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
          .. "<CreateTime>1409659813</CreateTime><MsgType><![CDATA[event]]></MsgType>"
          .. "<Event><![CDATA[kf_account_auth_change]]></Event><AuthAddOpenKfId><![CDATA[wk1]]></AuthAddOpenKfId>"
          .. "<AuthDelOpenKfId><![CDATA[wk3]]></AuthDelOpenKfId><AuthAddOpenKfId><![CDATA[wk2]]></AuthAddOpenKfId>"
          .. "</xml>"))
        assert.same({ Token = { "a", "b", "" } }, inner("<xml><Token>a</Token><Token>b</Token><Token/></xml>"))
      end)

      it("reads CDATA, entities, character references, comments and empty fields", function()
        assert.same({ A = "<b>&", B = "x&y中", C = "" }, inner(
          '<?xml version="1.0" encoding="UTF-8"?>\n<xml>\n  <A><![CDATA[<b>]]>&amp;</A><!-- note -->\n'
          .. "  <B>x&amp;y&#x4e2d;</B><C/>\n</xml>\n"))
      end)
    end)
  end)

  describe("max_age", function()
    local function request(timestamp)
      return handler():build_event_request(KF_EVENT, { timestamp = timestamp, nonce = "1", random16 = FIXED.random16 })
    end

    it("is off by default: a callback of 2014 is accepted", function()
      local req = request(FIXED.timestamp)
      assert.same(KF_EVENT_TEXT, handler():decrypt_event(req.query, req.body))
    end)

    it("refuses a callback older or further ahead than max_age seconds, reason stale", function()
      local cb = handler{ max_age = 300 }
      local req = request(os.time() - 400)
      local event, err = cb:decrypt_event(req.query, req.body)
      assert_fails("timestamp 400 s old, at most 300", "decrypt_event", event, err)
      assert.equal("stale", err.reason)
      req = request(os.time() + 400)
      event, err = cb:decrypt_event(req.query, req.body)
      assert_fails("timestamp 400 s ahead, at most 300", "decrypt_event", event, err)
      assert.equal("stale", err.reason)
      -- the same callback, old, without max_age
      assert.same(KF_EVENT_TEXT, handler():decrypt_event(req.query, req.body))
    end)

    it("accepts one within max_age, and checks the URL check too", function()
      local cb = handler{ max_age = 300 }
      local req = request(os.time() - 10)
      assert.same(KF_EVENT_TEXT, cb:decrypt_event(req.query, req.body))
      local q = handler():build_url_check("echo", { timestamp = FIXED.timestamp, nonce = "1" })
      local echo, err = cb:verify_url(q)
      assert.is_nil(echo)
      assert.equal("stale", err.reason)
      assert.equal("echo", handler():verify_url(q))
    end)

    it("raises on a max_age that is not a number of seconds >= 0", function()
      assert.has_error(function() handler{ max_age = -1 } end,
        "bad argument #1 to 'new' (opts.max_age: number of seconds >= 0 expected, got -1)")
      assert.has_error(function() handler{ max_age = "300" } end,
        "bad argument #1 to 'new' (opts.max_age: number of seconds >= 0 expected, got string)")
    end)
  end)

  describe("event_xml", function()
    it("repeats the element of an array value, in order", function()
      assert.equal("<xml><AuthAddOpenKfId><![CDATA[wk1]]></AuthAddOpenKfId><AuthAddOpenKfId><![CDATA[wk2]]>"
        .. "</AuthAddOpenKfId><CreateTime>1</CreateTime></xml>",
        testing.event_xml({ AuthAddOpenKfId = { "wk1", "wk2" }, CreateTime = 1 }))
      assert.has_error(function() testing.event_xml({ A = {} }) end,
        "bad argument #1 to 'event_xml' (fields.A: non-empty array expected)")
    end)
  end)

  describe("encrypt_reply", function()
    it("makes the signed envelope WeCom expects, which decrypts back", function()
      local cb = handler()
      local reply = cb:encrypt_reply("<xml><Content><![CDATA[你好]]></Content></xml>", 1409659813, "1372623149")
      local env = callback._parse_flat(reply)
      assert.equal("<xml><Encrypt><![CDATA[" .. env.Encrypt .. "]]></Encrypt><MsgSignature><![CDATA["
        .. env.MsgSignature .. "]]></MsgSignature><TimeStamp>1409659813</TimeStamp><Nonce><![CDATA[1372623149]]>"
        .. "</Nonce></xml>", reply)
      assert.equal(core.callback_signature(u.TOKEN, "1409659813", "1372623149", env.Encrypt), env.MsgSignature)
      local query = { msg_signature = env.MsgSignature, timestamp = env.TimeStamp, nonce = env.Nonce }
      assert.same({ Content = "你好" }, cb:decrypt_event(query, reply))
    end)

    it("draws its default nonce from OpenSSL: 16 hex digits, a new one each time", function()
      local cb = handler()
      local a = callback._parse_flat(cb:encrypt_reply("<xml/>", 1)).Nonce
      local b = callback._parse_flat(cb:encrypt_reply("<xml/>", 1)).Nonce
      assert.matches("^%x+$", a)
      assert.equal(16, #a)
      assert.are_not.equal(a, b)
    end)

    it("raises on a nonce that would break the XML and on a non-string message", function()
      assert.has_error(function() handler():encrypt_reply("<xml/>", "1", "a]]>b") end,
        "bad argument #3 to 'encrypt_reply' (nonce: 1..1024 characters of [A-Za-z0-9_-] expected)")
      assert.has_error(function() handler():encrypt_reply(nil) end,
        "bad argument #1 to 'encrypt_reply' (string expected, got nil)")
    end)
  end)

  describe("event_xml", function()
    it("renders names in byte order, strings in CDATA, integers as text", function()
      assert.equal("<xml><CreateTime>1348831860</CreateTime><Event><![CDATA[kf_msg_or_event]]></Event>"
        .. "<MsgType><![CDATA[event]]></MsgType><OpenKfId><![CDATA[wkxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx]]></OpenKfId>"
        .. "<ToUserName><![CDATA[ww1234567890abcdef]]></ToUserName>"
        .. "<Token><![CDATA[ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR]]></Token></xml>",
        testing.event_xml(KF_EVENT))
    end)

    it("raises on a value that would end the CDATA section", function()
      assert.has_error(function() testing.event_xml({ Token = "a]]>b" }) end,
        "bad argument #1 to 'event_xml' (fields.Token: must not contain ]]>)")
    end)
  end)
end)
