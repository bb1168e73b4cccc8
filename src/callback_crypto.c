/* WXBizMsgCrypt, the crypto of WeCom callbacks: msg_signature (SHA-1 over the sorted strings) and the
 * AES-256-CBC envelope (16 random bytes | msg length, 4 bytes big-endian | msg | receive id | padding to a
 * multiple of 32). Pure functions: no I/O, no global state, so they are safe in OpenResty handlers.
 *
 * Size caps (documented in the Lua module too):
 *   encrypt: msg at most WECHAT_CB_MAX_MSG bytes (1 MiB), receive_id at most WECHAT_CB_MAX_RECEIVE_ID bytes;
 *            larger arguments raise (the caller chose them).
 *   decrypt: the base64 text at most WECHAT_CB_MAX_BASE64 bytes (2 MiB); larger is `nil, err` (it came from
 *            the network), checked before anything is allocated. */
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "wechat_core.h"

#define WECHAT_CB_KEY_CHARS 43
#define WECHAT_CB_KEY_BYTES 32
#define WECHAT_CB_RANDOM_BYTES 16
#define WECHAT_CB_HEADER_BYTES (WECHAT_CB_RANDOM_BYTES + 4)
#define WECHAT_CB_PAD_BLOCK 32
#define WECHAT_CB_AES_BLOCK 16
#define WECHAT_CB_MAX_MSG ((size_t)1 << 20)
#define WECHAT_CB_MAX_RECEIVE_ID ((size_t)256)
#define WECHAT_CB_MAX_BASE64 ((size_t)2 << 20)
#define WECHAT_CB_SHA1_HEX 40

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Strict RFC 4648 base64 with padding: length a multiple of 4, '=' only as the last one or two characters,
 * nothing outside the alphabet (no whitespace). The unused low bits of the last character are ignored, as
 * every WXBizMsgCrypt SDK does: Tencent's own sample keys have them set. Returns the decoded length, or
 * (size_t)-1 when `in` is not base64. */
static size_t b64_decoded_len(const char *in, size_t n)
{
    size_t pads = 0, i;
    if (n % 4 != 0) return (size_t)-1;
    if (n == 0) return 0;
    if (in[n - 1] == '=') {
        pads++;
        if (in[n - 2] == '=') pads++;
    }
    for (i = 0; i < n - pads; i++) {
        if (b64_value((unsigned char)in[i]) < 0) return (size_t)-1;
    }
    return n / 4 * 3 - pads;
}

/* `in` must have passed b64_decoded_len; `out` holds that many bytes. */
static void b64_decode(const char *in, size_t n, unsigned char *out)
{
    size_t i, o = 0;
    for (i = 0; i < n; i += 4) {
        int a = b64_value((unsigned char)in[i]);
        int b = b64_value((unsigned char)in[i + 1]);
        int c = in[i + 2] == '=' ? -1 : b64_value((unsigned char)in[i + 2]);
        int d = in[i + 3] == '=' ? -1 : b64_value((unsigned char)in[i + 3]);
        uint32_t v = ((uint32_t)a << 18) | ((uint32_t)b << 12) | ((uint32_t)(c < 0 ? 0 : c) << 6) |
                     (uint32_t)(d < 0 ? 0 : d);
        out[o++] = (unsigned char)(v >> 16);
        if (c >= 0) out[o++] = (unsigned char)(v >> 8);
        if (d >= 0) out[o++] = (unsigned char)v;
    }
}

static void b64_encode(luaL_Buffer *b, const unsigned char *in, size_t n)
{
    char chunk[64];
    size_t i = 0, used = 0;
    while (i < n) {
        size_t left = n - i;
        uint32_t v = (uint32_t)in[i] << 16;
        if (left > 1) v |= (uint32_t)in[i + 1] << 8;
        if (left > 2) v |= (uint32_t)in[i + 2];
        chunk[used++] = b64_alphabet[(v >> 18) & 63];
        chunk[used++] = b64_alphabet[(v >> 12) & 63];
        chunk[used++] = left > 1 ? b64_alphabet[(v >> 6) & 63] : '=';
        chunk[used++] = left > 2 ? b64_alphabet[v & 63] : '=';
        i += left > 3 ? 3 : left;
        if (used == sizeof chunk) {
            luaL_addlstring(b, chunk, used);
            used = 0;
        }
    }
    if (used > 0) luaL_addlstring(b, chunk, used);
}

static const char *check_string(lua_State *L, const char *fname, int argn, size_t *len)
{
    if (lua_type(L, argn) != LUA_TSTRING) {
        wechat_argerror(L, fname, argn, "string expected, got %s", luaL_typename(L, argn));
    }
    return lua_tolstring(L, argn, len);
}

/* The key is a secret: the errors give its length and the position of a bad character, never its text. */
static const char *check_key(lua_State *L, const char *fname, int argn)
{
    size_t len, i;
    const char *s = check_string(L, fname, argn, &len);
    if (len != WECHAT_CB_KEY_CHARS) {
        wechat_argerror(L, fname, argn, "encoding_aes_key: %d characters expected, got %d", WECHAT_CB_KEY_CHARS,
                        (int)(len > INT_MAX ? INT_MAX : len));
    }
    for (i = 0; i < len; i++) {
        if (b64_value((unsigned char)s[i]) < 0) {
            wechat_argerror(L, fname, argn, "encoding_aes_key: not base64 (character %d)", (int)i + 1);
        }
    }
    return s;
}

/* `s` passed check_key. Called only after the last Lua call that could raise, so the key bytes on the C
 * stack are always wiped by the caller. */
static void decode_key(const char *s, unsigned char key[WECHAT_CB_KEY_BYTES])
{
    char padded[WECHAT_CB_KEY_CHARS + 1];
    memcpy(padded, s, WECHAT_CB_KEY_CHARS);
    padded[WECHAT_CB_KEY_CHARS] = '=';
    /* 43 alphabet characters and one '=' always decode to exactly 32 bytes. */
    b64_decode(padded, sizeof padded, key);
    OPENSSL_cleanse(padded, sizeof padded);
}

static const char *check_receive_id(lua_State *L, const char *fname, int argn, size_t *len)
{
    const char *s = check_string(L, fname, argn, len);
    if (*len > WECHAT_CB_MAX_RECEIVE_ID) {
        wechat_argerror(L, fname, argn, "receive_id: at most %d bytes, got %d", (int)WECHAT_CB_MAX_RECEIVE_ID,
                        (int)(*len > INT_MAX ? INT_MAX : *len));
    }
    return s;
}

static int push_fail(lua_State *L, const char *message)
{
    lua_pushnil(L);
    lua_pushstring(L, message);
    return 2;
}

/* The numbers in these messages can exceed an int (a length field is 32 bits from the network), which
 * lua_pushfstring cannot print on LuaJIT; the text is short and bounded, so a stack buffer does. */
__attribute__((format(printf, 2, 3))) static int push_failf(lua_State *L, const char *fmt, ...)
{
    char message[128];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    return push_fail(L, n < 0 ? "callback decryption failed" : message);
}

static int bytes_before(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c < 0 || (c == 0 && alen < blen);
}

/* sha1(sort{token, timestamp, nonce, encrypt} joined), hex lowercase, from the strings at stack indexes
 * first..first+3. Returns 1, or 0 when libcrypto fails. */
static int signature_hex(lua_State *L, int first, char hex[WECHAT_CB_SHA1_HEX + 1])
{
    const char *part[4];
    size_t len[4];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int j, ok = 0;
    EVP_MD_CTX *ctx;

    for (j = 0; j < 4; j++) part[j] = lua_tolstring(L, first + j, &len[j]);
    for (j = 1; j < 4; j++) {
        const char *p = part[j];
        size_t n = len[j];
        int k = j - 1;
        while (k >= 0 && bytes_before(p, n, part[k], len[k])) {
            part[k + 1] = part[k];
            len[k + 1] = len[k];
            k--;
        }
        part[k + 1] = p;
        len[k + 1] = n;
    }

    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) return 0;
    if (EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) != 1) goto done;
    for (j = 0; j < 4; j++) {
        if (EVP_DigestUpdate(ctx, part[j], len[j]) != 1) goto done;
    }
    if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen * 2 != WECHAT_CB_SHA1_HEX) goto done;
    wechat_hex(hex, md, mdlen);
    hex[WECHAT_CB_SHA1_HEX] = '\0';
    ok = 1;
done:
    EVP_MD_CTX_free(ctx);
    return ok;
}

static void check_signature_args(lua_State *L, const char *fname, int first)
{
    int j;
    for (j = 0; j < 4; j++) {
        size_t n;
        check_string(L, fname, first + j, &n);
    }
}

/* core.callback_signature(token, timestamp, nonce, encrypt) -> 40 hex lowercase | nil, err */
static int l_callback_signature(lua_State *L)
{
    char hex[WECHAT_CB_SHA1_HEX + 1];
    check_signature_args(L, "callback_signature", 1);
    if (!signature_hex(L, 1, hex)) return push_fail(L, "sha1 failed");
    lua_pushlstring(L, hex, WECHAT_CB_SHA1_HEX);
    return 1;
}

/* core.callback_verify(expected_hex, token, timestamp, nonce, encrypt) -> boolean | nil, err.
 * Constant time over the 40 characters, so the answer time says nothing about how much of a forged
 * signature was right. */
static int l_callback_verify(lua_State *L)
{
    char hex[WECHAT_CB_SHA1_HEX + 1];
    size_t elen;
    const char *expected = check_string(L, "callback_verify", 1, &elen);
    check_signature_args(L, "callback_verify", 2);
    if (!signature_hex(L, 2, hex)) return push_fail(L, "sha1 failed");
    lua_pushboolean(L, elen == WECHAT_CB_SHA1_HEX && CRYPTO_memcmp(expected, hex, WECHAT_CB_SHA1_HEX) == 0);
    return 1;
}

/* AES-256-CBC over whole blocks, IV = the first 16 key bytes (WXBizMsgCrypt). Padding is ours (to 32, not
 * the cipher's 16), so OpenSSL's is off. Returns 1 on success. */
static int aes_cbc(const unsigned char key[WECHAT_CB_KEY_BYTES], int encrypt, const unsigned char *in, size_t len,
                   unsigned char *out)
{
    EVP_CIPHER_CTX *ctx;
    int outl = 0, finl = 0, ok = 0;
    if (len == 0 || len % WECHAT_CB_AES_BLOCK != 0 || len > (size_t)INT_MAX) return 0;
    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) return 0;
    if (EVP_CipherInit_ex(ctx, EVP_aes_256_cbc(), NULL, key, key, encrypt) != 1) goto done;
    if (EVP_CIPHER_CTX_set_padding(ctx, 0) != 1) goto done;
    if (EVP_CipherUpdate(ctx, out, &outl, in, (int)len) != 1) goto done;
    if (outl < 0 || (size_t)outl > len) goto done;
    if (EVP_CipherFinal_ex(ctx, out + outl, &finl) != 1) goto done;
    ok = finl >= 0 && (size_t)outl + (size_t)finl == len;
done:
    EVP_CIPHER_CTX_free(ctx);
    return ok;
}

/* Pushes n bytes at the light userdata 1 (n at 2) as a string; called protected, so that the caller can wipe the
 * plaintext when Lua has no memory for the string, before the error goes on. */
static int push_plain(lua_State *L)
{
    lua_pushlstring(L, (const char *)lua_touserdata(L, 1), (size_t)lua_tointeger(L, 2));
    return 1;
}

/* core.callback_decrypt(encoding_aes_key, encrypt_base64, receive_id) -> msg | nil, err.
 * Every check passes before anything is returned: never a partial message. */
static int l_callback_decrypt(lua_State *L)
{
    static const char *fname = "callback_decrypt";
    unsigned char key[WECHAT_CB_KEY_BYTES];
    size_t b64len, ridlen, clen, content, msglen, i;
    unsigned char *cipher, *plain, pad, diff = 0;
    const char *keytext, *b64, *rid;
    int ok;

    keytext = check_key(L, fname, 1);
    b64 = check_string(L, fname, 2, &b64len);
    rid = check_receive_id(L, fname, 3, &ridlen);

    if (b64len > WECHAT_CB_MAX_BASE64) {
        return push_failf(L, "ciphertext too large: %zu bytes of base64, at most %zu", b64len, WECHAT_CB_MAX_BASE64);
    }
    clen = b64_decoded_len(b64, b64len);
    if (clen == (size_t)-1) return push_fail(L, "ciphertext is not valid base64");
    if (clen == 0 || clen % WECHAT_CB_AES_BLOCK != 0) {
        return push_failf(L, "ciphertext length %zu is not a positive multiple of 16", clen);
    }

    /* Before the plaintext exists: pushing a C function allocates on LuaJIT. */
    lua_pushcfunction(L, push_plain);
    int pusher = lua_gettop(L);
    /* Userdata, not malloc: a memory error raised by Lua cannot leak them. */
    cipher = (unsigned char *)lua_newuserdata(L, clen);
    plain = (unsigned char *)lua_newuserdata(L, clen);
    b64_decode(b64, b64len, cipher);
    decode_key(keytext, key);
    ok = aes_cbc(key, 0, cipher, clen, plain);
    OPENSSL_cleanse(key, sizeof key);
    if (!ok) return push_fail(L, "aes decrypt failed");

    pad = plain[clen - 1];
    if (pad < 1 || pad > WECHAT_CB_PAD_BLOCK || pad > clen) {
        diff = 1;
    } else {
        for (i = clen - pad; i < clen; i++) diff |= (unsigned char)(plain[i] ^ pad);
    }
    if (diff != 0) {
        OPENSSL_cleanse(plain, clen);
        return push_fail(L, "bad padding");
    }
    content = clen - pad;
    if (content < WECHAT_CB_HEADER_BYTES) {
        OPENSSL_cleanse(plain, clen);
        return push_failf(L, "plaintext too short: %zu bytes, at least %d", content, WECHAT_CB_HEADER_BYTES);
    }
    msglen = ((size_t)plain[16] << 24) | ((size_t)plain[17] << 16) | ((size_t)plain[18] << 8) | (size_t)plain[19];
    if (msglen > content - WECHAT_CB_HEADER_BYTES) {
        OPENSSL_cleanse(plain, clen);
        return push_failf(L, "message length %zu larger than the %zu bytes present", msglen,
                          content - WECHAT_CB_HEADER_BYTES);
    }
    if (content - WECHAT_CB_HEADER_BYTES - msglen != ridlen ||
        memcmp(plain + WECHAT_CB_HEADER_BYTES + msglen, rid, ridlen) != 0) {
        OPENSSL_cleanse(plain, clen);
        return push_fail(L, "receive id mismatch");
    }
    lua_pushvalue(L, pusher);
    lua_pushlightuserdata(L, plain + WECHAT_CB_HEADER_BYTES);
    lua_pushinteger(L, (lua_Integer)msglen);
    int rc = lua_pcall(L, 2, 1, 0);
    OPENSSL_cleanse(plain, clen);
    if (rc != 0) return lua_error(L);
    return 1;
}

/* core.callback_encrypt(encoding_aes_key, msg, receive_id[, random16]) -> base64 | nil, err */
static int l_callback_encrypt(lua_State *L)
{
    static const char *fname = "callback_encrypt";
    unsigned char key[WECHAT_CB_KEY_BYTES];
    const char *keytext, *msg, *rid, *random16 = NULL;
    size_t msglen, ridlen, total, pad, r16len = 0;
    unsigned char *plain, *cipher;
    luaL_Buffer b;
    int ok;

    keytext = check_key(L, fname, 1);
    msg = check_string(L, fname, 2, &msglen);
    if (msglen > WECHAT_CB_MAX_MSG) {
        wechat_argerror(L, fname, 2, "msg: at most %d bytes, got %d", (int)WECHAT_CB_MAX_MSG,
                        (int)(msglen > INT_MAX ? INT_MAX : msglen));
    }
    rid = check_receive_id(L, fname, 3, &ridlen);
    if (!lua_isnoneornil(L, 4)) {
        random16 = check_string(L, fname, 4, &r16len);
        if (r16len != WECHAT_CB_RANDOM_BYTES) {
            wechat_argerror(L, fname, 4, "random16: 16 bytes expected, got %d",
                            (int)(r16len > INT_MAX ? INT_MAX : r16len));
        }
    }

    /* The caps keep this far from SIZE_MAX and INT_MAX. WeCom pads with 1..32 bytes: a whole block of 32
     * when the plaintext is already aligned. */
    total = WECHAT_CB_HEADER_BYTES + msglen + ridlen;
    pad = WECHAT_CB_PAD_BLOCK - total % WECHAT_CB_PAD_BLOCK;
    total += pad;

    plain = (unsigned char *)lua_newuserdata(L, total);
    cipher = (unsigned char *)lua_newuserdata(L, total);
    if (random16 != NULL) {
        memcpy(plain, random16, WECHAT_CB_RANDOM_BYTES);
    } else if (!wechat_random_take(L, plain, WECHAT_CB_RANDOM_BYTES)) {
        return push_fail(L, "no random bytes available");
    }
    plain[16] = (unsigned char)(msglen >> 24);
    plain[17] = (unsigned char)(msglen >> 16);
    plain[18] = (unsigned char)(msglen >> 8);
    plain[19] = (unsigned char)msglen;
    if (msglen > 0) memcpy(plain + WECHAT_CB_HEADER_BYTES, msg, msglen);
    if (ridlen > 0) memcpy(plain + WECHAT_CB_HEADER_BYTES + msglen, rid, ridlen);
    memset(plain + total - pad, (int)pad, pad);

    decode_key(keytext, key);
    ok = aes_cbc(key, 1, plain, total, cipher);
    OPENSSL_cleanse(key, sizeof key);
    OPENSSL_cleanse(plain, total);
    if (!ok) return push_fail(L, "aes encrypt failed");

    luaL_buffinit(L, &b);
    b64_encode(&b, cipher, total);
    luaL_pushresult(&b);
    return 1;
}

void wechat_open_crypto(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"callback_signature", l_callback_signature},
        {"callback_verify", l_callback_verify},
        {"callback_decrypt", l_callback_decrypt},
        {"callback_encrypt", l_callback_encrypt},
        {NULL, NULL},
    };
    wechat_setfuncs(L, funcs);
    /* Beside the body limits (kf_bodies.c), which made the table. */
    lua_getfield(L, -1, "limits");
    lua_pushinteger(L, (lua_Integer)WECHAT_CB_MAX_MSG);
    lua_setfield(L, -2, "callback_msg");
    lua_pop(L, 1);
}
