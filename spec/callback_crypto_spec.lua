-- wechat.core callback crypto (WXBizMsgCrypt): signatures, AES-256-CBC with WeCom's padding, every check on
-- the way in. Vectors are Tencent's published ones (spec/fixtures/callback/util.lua says where from).
local core = require "wechat.core"
local u = require "fixtures.callback.util"

local ECHO = u.URL_CHECK.echostr

describe("wechat.core callback crypto", function()
  describe("callback_signature", function()
    it("matches Tencent's URL-check vector", function()
      assert.equal("5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",
        core.callback_signature(u.TOKEN, u.URL_CHECK.timestamp, u.URL_CHECK.nonce, ECHO))
    end)

    it("matches Tencent's message vector", function()
      assert.equal("477715d11cdb4164915debcba66cb864d751f3e6",
        core.callback_signature(u.TOKEN, u.MSG_QUERY.timestamp, u.MSG_QUERY.nonce, u.MSG_ENCRYPT))
    end)

    it("is the sha1 of the four strings sorted, whatever order they come in", function()
      -- sha1("abcd")
      assert.equal("81fe8bfe87576c3ecb22426f8e57847382917acf", core.callback_signature("a", "b", "c", "d"))
      assert.equal("81fe8bfe87576c3ecb22426f8e57847382917acf", core.callback_signature("d", "c", "b", "a"))
      assert.equal("81fe8bfe87576c3ecb22426f8e57847382917acf", core.callback_signature("c", "a", "d", "b"))
    end)

    it("sorts by bytes: a prefix first, bytes above 0x7f after ASCII", function()
      -- sha1("aab"): "", "", "a", "ab"
      assert.equal("40b904fd8852297daeaeb426b1bca46fd2454aa3", core.callback_signature("ab", "", "a", ""))
      -- sha1("z\xff")
      assert.equal("dfe79ab7bab2976ede36b044d47b0e1c402b959d", core.callback_signature("\xff", "", "z", ""))
    end)

    it("raises on a non-string argument, naming it", function()
      assert.has_error(function() core.callback_signature("t", 1409659589, "n", "e") end,
        "bad argument #2 to 'callback_signature' (string expected, got number)")
      assert.has_error(function() core.callback_signature("t", "1", "n") end,
        "bad argument #4 to 'callback_signature' (string expected, got no value)")
    end)
  end)

  describe("callback_verify", function()
    local function verify(sig)
      return core.callback_verify(sig, u.TOKEN, u.URL_CHECK.timestamp, u.URL_CHECK.nonce, ECHO)
    end

    it("accepts Tencent's signature", function()
      assert.is_true(verify(u.URL_CHECK.msg_signature))
    end)

    it("refuses a signature with one character changed, first or last", function()
      assert.is_false(verify(u.flip_hex(u.URL_CHECK.msg_signature, 1)))
      assert.is_false(verify(u.flip_hex(u.URL_CHECK.msg_signature, 40)))
    end)

    it("refuses upper case, a short, a long and an empty signature", function()
      assert.is_false(verify(u.URL_CHECK.msg_signature:upper()))
      assert.is_false(verify(u.URL_CHECK.msg_signature:sub(1, 39)))
      assert.is_false(verify(u.URL_CHECK.msg_signature .. "0"))
      assert.is_false(verify(""))
    end)

    it("refuses the right signature over another encrypt", function()
      assert.is_false(core.callback_verify(u.URL_CHECK.msg_signature, u.TOKEN, u.URL_CHECK.timestamp,
        u.URL_CHECK.nonce, u.tamper(ECHO, 64, 1)))
    end)

    it("raises on a non-string signature", function()
      assert.has_error(function() core.callback_verify(nil, "t", "1", "n", "e") end,
        "bad argument #1 to 'callback_verify' (string expected, got nil)")
    end)
  end)

  describe("callback_decrypt", function()
    it("decrypts Tencent's echostr", function()
      assert.equal(u.ECHO_PLAIN, core.callback_decrypt(u.KEY, ECHO, u.CORP_ID))
    end)

    it("decrypts Tencent's sample message", function()
      assert.equal(u.MSG_PLAIN, core.callback_decrypt(u.KEY, u.MSG_ENCRYPT, u.CORP_ID))
    end)

    it("decrypts Tencent's Java vectors", function()
      local j = u.JAVA
      assert.equal(j.msg, core.callback_decrypt(j.key, j.encrypted, j.receive_id))
      assert.equal(j.msg2, core.callback_decrypt(j.key, j.encrypted2, j.receive_id))
    end)

    it("refuses another receive id", function()
      local msg, err = core.callback_decrypt(u.KEY, ECHO, "wx5823bf96d3bd56c8")
      assert.is_nil(msg)
      assert.equal("receive id mismatch", err)
      assert.same({ nil, "receive id mismatch" }, { core.callback_decrypt(u.KEY, ECHO, "wx5823bf96d3bd56c") })
      assert.same({ nil, "receive id mismatch" }, { core.callback_decrypt(u.KEY, ECHO, "") })
    end)

    it("refuses another key", function()
      assert.same({ nil, "bad padding" }, { core.callback_decrypt(u.JAVA.key, ECHO, u.CORP_ID) })
      assert.same({ nil, "bad padding" }, { core.callback_decrypt(u.KEY, u.JAVA.encrypted, u.JAVA.receive_id) })
    end)

    describe("tampered ciphertexts", function()
      it("a flipped bit in the length field (first block) gives an impossible length", function()
        assert.same({ nil, "message length 2147483667 larger than the 37 bytes present" },
          { core.callback_decrypt(u.KEY, u.tamper(ECHO, 1, 0x80), u.CORP_ID) })
      end)

      it("a flipped bit in the first block past the length changes the message: only the signature sees it",
        function()
          assert.equal("0616140317555161061", core.callback_decrypt(u.KEY, u.tamper(ECHO, 5, 0x01), u.CORP_ID))
        end)

      it("a flipped bit in the last block breaks the padding", function()
        assert.same({ nil, "bad padding" }, { core.callback_decrypt(u.KEY, u.tamper(ECHO, 64, 0x01), u.CORP_ID) })
        assert.same({ nil, "bad padding" }, { core.callback_decrypt(u.KEY, u.tamper(ECHO, 49, 0x01), u.CORP_ID) })
      end)

      -- The echostr plaintext ends with 7 bytes of 7. XOR on the block before the last sets them at will.
      it("a last pad byte of 0 is bad padding", function()
        assert.same({ nil, "bad padding" }, { core.callback_decrypt(u.KEY, u.tamper(ECHO, 48, 7), u.CORP_ID) })
      end)

      it("a last pad byte of 33 is bad padding", function()
        assert.same({ nil, "bad padding" },
          { core.callback_decrypt(u.KEY, u.tamper(ECHO, 48, u.xor_byte(7, 33)), u.CORP_ID) })
      end)

      it("pad bytes that are not all equal are bad padding", function()
        assert.same({ nil, "bad padding" }, { core.callback_decrypt(u.KEY, u.tamper(ECHO, 42, 1), u.CORP_ID) })
        assert.same({ nil, "bad padding" }, { core.callback_decrypt(u.KEY, u.tamper(ECHO, 47, 1), u.CORP_ID) })
      end)

      it("a shorter valid padding leaves a receive id that does not match", function()
        assert.same({ nil, "receive id mismatch" },
          { core.callback_decrypt(u.KEY, u.tamper(ECHO, 48, u.xor_byte(7, 1)), u.CORP_ID) })
      end)

      it("a plaintext shorter than random and length is refused", function()
        -- "" with receive id "": 16 random | 00000000 | 12 bytes of 12. Make it 16 | 000000 | 13 x 13.
        local c = u.b64decode(core.callback_encrypt(u.KEY, "", "", "0123456789abcdef"))
        assert.equal(32, #c)
        c = u.xor_at(c, 4, 13)
        for pos = 5, 16 do
          c = u.xor_at(c, pos, u.xor_byte(12, 13))
        end
        assert.same({ nil, "plaintext too short: 19 bytes, at least 20" },
          { core.callback_decrypt(u.KEY, u.b64encode(c), "") })
      end)

      it("a ciphertext cut to whole blocks is refused", function()
        local cut = u.b64encode(u.b64decode(ECHO):sub(1, 48))
        assert.same({ nil, "bad padding" }, { core.callback_decrypt(u.KEY, cut, u.CORP_ID) })
      end)
    end)

    describe("malformed base64", function()
      local function decrypt(b64)
        return { core.callback_decrypt(u.KEY, b64, u.CORP_ID) }
      end

      it("refuses truncated base64", function()
        assert.same({ nil, "ciphertext is not valid base64" }, decrypt(ECHO:sub(1, -2)))
        assert.same({ nil, "ciphertext is not valid base64" }, decrypt(ECHO:sub(1, -3)))
      end)

      it("refuses characters outside the alphabet, whitespace and '=' inside", function()
        assert.same({ nil, "ciphertext is not valid base64" }, decrypt("!" .. ECHO:sub(2)))
        assert.same({ nil, "ciphertext is not valid base64" }, decrypt(ECHO:sub(1, 40) .. " " .. ECHO:sub(42)))
        assert.same({ nil, "ciphertext is not valid base64" }, decrypt(ECHO:sub(1, 84) .. "\n" .. ECHO:sub(86)))
        assert.same({ nil, "ciphertext is not valid base64" }, decrypt(ECHO:sub(1, 40) .. "=" .. ECHO:sub(42)))
        assert.same({ nil, "ciphertext is not valid base64" }, decrypt(ECHO:sub(1, 84) .. "A===" ))
        assert.same({ nil, "ciphertext is not valid base64" }, decrypt(ECHO:sub(1, 84) .. "AB=C"))
        assert.same({ nil, "ciphertext is not valid base64" }, decrypt(ECHO:gsub("%+", "-")))
      end)

      it("refuses an empty ciphertext and one that is not whole blocks", function()
        assert.same({ nil, "ciphertext length 0 is not a positive multiple of 16" }, decrypt(""))
        assert.same({ nil, "ciphertext length 3 is not a positive multiple of 16" }, decrypt("AAAA"))
        assert.same({ nil, "ciphertext length 63 is not a positive multiple of 16" },
          decrypt(u.b64encode(u.b64decode(ECHO):sub(1, 63))))
      end)

      it("refuses 100 MB of base64 before decoding any of it", function()
        assert.same({ nil, "ciphertext too large: 104857600 bytes of base64, at most 2097152" },
          decrypt(string.rep("A", 100 * 1024 * 1024)))
      end)
    end)

    describe("argument errors", function()
      it("raises on a key of 42 or 44 characters without echoing it", function()
        assert.has_error(function() core.callback_decrypt(u.KEY:sub(1, 42), ECHO, u.CORP_ID) end,
          "bad argument #1 to 'callback_decrypt' (encoding_aes_key: 43 characters expected, got 42)")
        assert.has_error(function() core.callback_decrypt(u.KEY .. "=", ECHO, u.CORP_ID) end,
          "bad argument #1 to 'callback_decrypt' (encoding_aes_key: 43 characters expected, got 44)")
      end)

      it("raises on a key with a character outside base64", function()
        assert.has_error(function() core.callback_decrypt(u.KEY:sub(1, 6) .. "!" .. u.KEY:sub(8), ECHO, u.CORP_ID) end,
          "bad argument #1 to 'callback_decrypt' (encoding_aes_key: not base64 (character 7))")
        assert.has_error(function() core.callback_decrypt(u.KEY:sub(1, 42) .. "=", ECHO, u.CORP_ID) end,
          "bad argument #1 to 'callback_decrypt' (encoding_aes_key: not base64 (character 43))")
      end)

      it("raises on wrong types and a receive id over 256 bytes", function()
        assert.has_error(function() core.callback_decrypt(nil, ECHO, u.CORP_ID) end,
          "bad argument #1 to 'callback_decrypt' (string expected, got nil)")
        assert.has_error(function() core.callback_decrypt(u.KEY, {}, u.CORP_ID) end,
          "bad argument #2 to 'callback_decrypt' (string expected, got table)")
        assert.has_error(function() core.callback_decrypt(u.KEY, ECHO) end,
          "bad argument #3 to 'callback_decrypt' (string expected, got no value)")
        assert.has_error(function() core.callback_decrypt(u.KEY, ECHO, string.rep("w", 257)) end,
          "bad argument #3 to 'callback_decrypt' (receive_id: at most 256 bytes, got 257)")
      end)
    end)
  end)

  describe("callback_encrypt", function()
    it("matches Tencent's Java vectors given their random prefix", function()
      local j = u.JAVA
      assert.equal(j.encrypted, core.callback_encrypt(j.key, j.msg, j.receive_id, j.random16))
      assert.equal(j.encrypted2, core.callback_encrypt(j.key, j.msg2, j.receive_id, j.random16))
    end)

    it("pads to a multiple of 32 with 1..32 bytes: a whole block when aligned", function()
      -- 20 + 26 + 18 = 64: aligned, so 32 bytes of padding follow.
      local c = u.b64decode(core.callback_encrypt(u.KEY, string.rep("m", 26), u.CORP_ID, "0123456789abcdef"))
      assert.equal(96, #c)
      -- 20 + 25 + 18 = 63: one byte of padding.
      c = u.b64decode(core.callback_encrypt(u.KEY, string.rep("m", 25), u.CORP_ID, "0123456789abcdef"))
      assert.equal(64, #c)
    end)

    it("draws a fresh random prefix when none is given", function()
      local a = core.callback_encrypt(u.KEY, "same", u.CORP_ID)
      local b = core.callback_encrypt(u.KEY, "same", u.CORP_ID)
      assert.are_not.equal(a, b)
      assert.equal("same", core.callback_decrypt(u.KEY, a, u.CORP_ID))
      assert.equal("same", core.callback_decrypt(u.KEY, b, u.CORP_ID))
    end)

    it("round-trips every size from 0 to 5000 bytes of arbitrary bytes", function()
      local blob = u.bytes(10000)
      local failures, done = {}, 0
      for n = 0, 5000 do
        local msg = blob:sub(n + 1, 2 * n)
        local encrypted = core.callback_encrypt(u.KEY, msg, u.CORP_ID)
        local cipher_len = 20 + n + #u.CORP_ID
        cipher_len = cipher_len + 32 - cipher_len % 32
        local b64_len = 4 * math.ceil(cipher_len / 3)
        if #encrypted ~= b64_len or core.callback_decrypt(u.KEY, encrypted, u.CORP_ID) ~= msg then
          failures[#failures + 1] = n
        end
        done = done + 1
      end
      assert.same({}, failures)
      assert.equal(5001, done)
    end)

    it("round-trips UTF-8 text, NUL bytes and an empty receive id", function()
      local msg = "客服消息 😀\0\255\1 end"
      assert.equal(msg, core.callback_decrypt(u.KEY, core.callback_encrypt(u.KEY, msg, ""), ""))
    end)

    it("round-trips a 1 MiB message, the largest allowed", function()
      local msg = u.bytes(1024 * 1024, 7)
      assert.equal(msg, core.callback_decrypt(u.KEY, core.callback_encrypt(u.KEY, msg, u.CORP_ID), u.CORP_ID))
    end)

    it("raises on a message over 1 MiB, a bad random16 and a bad key", function()
      assert.has_error(function() core.callback_encrypt(u.KEY, string.rep("x", 1024 * 1024 + 1), u.CORP_ID) end,
        "bad argument #2 to 'callback_encrypt' (msg: at most 1048576 bytes, got 1048577)")
      assert.has_error(function() core.callback_encrypt(u.KEY, "m", u.CORP_ID, "short") end,
        "bad argument #4 to 'callback_encrypt' (random16: 16 bytes expected, got 5)")
      assert.has_error(function() core.callback_encrypt(u.KEY, "m", u.CORP_ID, 16) end,
        "bad argument #4 to 'callback_encrypt' (string expected, got number)")
      assert.has_error(function() core.callback_encrypt("abcde", "m", u.CORP_ID) end,
        "bad argument #1 to 'callback_encrypt' (encoding_aes_key: 43 characters expected, got 5)")
      assert.has_error(function() core.callback_encrypt(u.KEY, nil, u.CORP_ID) end,
        "bad argument #2 to 'callback_encrypt' (string expected, got nil)")
    end)
  end)
end)
