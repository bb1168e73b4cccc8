/* Fuzz target: core.callback_decrypt, core.callback_encrypt, core.callback_signature and core.callback_verify,
 * compared with an independent statement of WXBizMsgCrypt (OpenSSL's AES and SHA-1 called directly here).
 *
 * Input: flags, then the key (32 raw key bytes, or in raw-key mode 0..63 arbitrary characters), the receive id
 * (0..299 bytes), then by mode: 0 the base64 text as is; 1 ciphertext bytes this target base64-encodes; 2
 * plaintext bytes this target encrypts (so every check of the envelope is reached: padding, length, receive id);
 * 3 a message sealed by callback_encrypt with a given random16 (sometimes of a wrong length) and opened again. Every input also signs four
 * strings from the input. The expected outcome is exact: the message, or the exact error text, or the exact
 * argument error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "harness.h"

#define KEY_CHARS 43
#define MAX_BASE64 ((size_t)2 << 20)
#define MAX_RID 256

static lua_State *L;


/* The oracle's own loops over megabytes of base64 need no coverage feedback, only the module's do. */
#define ORACLE __attribute__((no_sanitize("coverage")))

ORACLE static int b64_index(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Standard base64 with padding, by OpenSSL; *len gets the text length. Caller frees. */
static char *b64_encode(const uint8_t *in, size_t n, size_t *len)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (out == NULL) fz_die("out of memory");
    int k = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    if (k < 0) fz_die("EVP_EncodeBlock failed");
    *len = (size_t)k;
    return out;
}

/* Strict RFC 4648 decoding, the unused low bits of the last character ignored (WXBizMsgCrypt keys have them set).
 * Returns the decoded length, or (size_t)-1. out has room for n / 4 * 3 bytes. */
ORACLE static size_t b64_decode_strict(const char *in, size_t n, uint8_t *out)
{
    size_t o = 0;
    if (n % 4 != 0) return (size_t)-1;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        int last = i + 4 == n;
        for (int j = 0; j < 4; j++) {
            unsigned char c = (unsigned char)in[i + j];
            v[j] = b64_index(c);
            if (v[j] < 0) {
                /* '=' only as the last one or two characters of the text */
                if (!(c == '=' && last && (j == 3 || (j == 2 && in[i + 3] == '=')))) return (size_t)-1;
                v[j] = -1;
            }
        }
        if (v[0] < 0 || v[1] < 0) return (size_t)-1;
        out[o++] = (uint8_t)(v[0] << 2 | v[1] >> 4);
        if (v[2] >= 0) out[o++] = (uint8_t)((v[1] & 15) << 4 | v[2] >> 2);
        if (v[2] >= 0 && v[3] >= 0) out[o++] = (uint8_t)((v[2] & 3) << 6 | v[3]);
    }
    return o;
}

static void aes(const uint8_t key[32], int enc, const uint8_t *in, size_t n, uint8_t *out)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int a = 0, b = 0;
    if (ctx == NULL || EVP_CipherInit_ex(ctx, EVP_aes_256_cbc(), NULL, key, key, enc) != 1 ||
        EVP_CIPHER_CTX_set_padding(ctx, 0) != 1 || EVP_CipherUpdate(ctx, out, &a, in, (int)n) != 1 ||
        EVP_CipherFinal_ex(ctx, out + a, &b) != 1 || (size_t)(a + b) != n)
        fz_die("OpenSSL AES failed in the oracle");
    EVP_CIPHER_CTX_free(ctx);
}

typedef struct expect {
    int ok;
    char err[200];
    const uint8_t *msg;
    size_t msglen;
    uint8_t *mem;
} expect;

/* What callback_decrypt(key, text, rid) must answer, from the documented envelope. */
ORACLE static void expect_decrypt(const uint8_t key[32], const char *text, size_t tlen, const uint8_t *rid, size_t ridlen,
                           expect *e)
{
    e->ok = 0;
    e->mem = NULL;
    if (tlen > MAX_BASE64) {
        snprintf(e->err, sizeof e->err, "ciphertext too large: %zu bytes of base64, at most %zu", tlen, MAX_BASE64);
        return;
    }
    e->mem = malloc(2 * (tlen / 4 * 3) + 32);
    if (e->mem == NULL) fz_die("out of memory");
    uint8_t *cipher = e->mem, *plain = e->mem + tlen / 4 * 3 + 16;
    size_t clen = b64_decode_strict(text, tlen, cipher);
    if (clen == (size_t)-1) {
        snprintf(e->err, sizeof e->err, "ciphertext is not valid base64");
        return;
    }
    if (clen == 0 || clen % 16 != 0) {
        snprintf(e->err, sizeof e->err, "ciphertext length %zu is not a positive multiple of 16", clen);
        return;
    }
    aes(key, 0, cipher, clen, plain);
    size_t pad = plain[clen - 1];
    int bad = pad < 1 || pad > 32 || pad > clen;
    for (size_t i = 0; !bad && i < pad; i++) bad = plain[clen - 1 - i] != pad;
    if (bad) {
        snprintf(e->err, sizeof e->err, "bad padding");
        return;
    }
    size_t content = clen - pad;
    if (content < 20) {
        snprintf(e->err, sizeof e->err, "plaintext too short: %zu bytes, at least 20", content);
        return;
    }
    size_t msglen = (size_t)plain[16] << 24 | (size_t)plain[17] << 16 | (size_t)plain[18] << 8 | plain[19];
    if (msglen > content - 20) {
        snprintf(e->err, sizeof e->err, "message length %zu larger than the %zu bytes present", msglen,
                 content - 20);
        return;
    }
    if (content - 20 - msglen != ridlen || memcmp(plain + 20 + msglen, rid, ridlen) != 0) {
        snprintf(e->err, sizeof e->err, "receive id mismatch");
        return;
    }
    e->ok = 1;
    e->msg = plain + 20;
    e->msglen = msglen;
}

static void call(const char *fname, int nargs, int nres)
{
    fz_push_core(L);
    lua_getfield(L, -1, fname);
    lua_remove(L, -2);
    lua_insert(L, -nargs - 1);
    if (lua_pcall(L, nargs, nres, 0) != LUA_OK) lua_pushboolean(L, 0); /* error object below a false marker */
    else lua_pushboolean(L, 1);
}

static void no_secret(const char *msg, const char *keytext)
{
    /* Only a well-formed key is a secret worth the name: a malformed one can be chosen to match the message
     * ("43 characters expected"), and its errors are compared whole anyway. */
    size_t klen = strlen(keytext);
    int wellformed = klen == KEY_CHARS;
    for (size_t i = 0; wellformed && i < klen; i++) wellformed = b64_index((unsigned char)keytext[i]) >= 0;
    if (msg != NULL && wellformed && strstr(msg, keytext) != NULL) fz_die("the key appears in an error: %s", msg);
}

/* Checks the two results of a callback_decrypt call on top of the stack (below the pcall marker). */
static void check_decrypt(const expect *e, const char *keytext, const char *what)
{
    int ok = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (!ok) fz_die("%s: callback_decrypt raised: %s", what, lua_tostring(L, -1));
    size_t len;
    const char *res = lua_tolstring(L, -2, &len);
    if (e->ok) {
        if (res == NULL || len != e->msglen || memcmp(res, e->msg, len) != 0) {
            fz_dump("expected", (const char *)e->msg, e->msglen, 256);
            if (res != NULL) fz_dump("got", res, len, 256);
            fz_die("%s: callback_decrypt returned %s, expected the message (err: %s)", what,
                   res == NULL ? "nil" : "another string", lua_tostring(L, -1) ? lua_tostring(L, -1) : "-");
        }
    } else {
        const char *err = lua_tostring(L, -1);
        if (!lua_isnil(L, -2) || err == NULL || strcmp(err, e->err) != 0)
            fz_die("%s: callback_decrypt gave [%s], expected nil, \"%s\"", what, err ? err : "?", e->err);
        no_secret(err, keytext);
    }
    lua_pop(L, 2);
}

/* Checks a raised error against the exact text. */
static void check_raise(const char *want, const char *keytext, const char *what)
{
    int ok = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (ok) fz_die("%s: did not raise, expected \"%s\"", what, want);
    const char *err = lua_tostring(L, -1);
    if (err == NULL || strcmp(err, want) != 0) fz_die("%s: raised \"%s\", expected \"%s\"", what, err, want);
    no_secret(err, keytext);
    lua_pop(L, 1);
}

static int before(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c < 0 || (c == 0 && alen < blen);
}

static void check_signature(fz_reader *r)
{
    const uint8_t *part[4];
    size_t len[4];
    for (int i = 0; i < 4; i++) len[i] = fz_take(r, fz_u8(r) % 48, &part[i]);
    /* selection sort: byte order, a prefix first */
    const uint8_t *sp[4];
    size_t sl[4];
    memcpy(sp, part, sizeof sp);
    memcpy(sl, len, sizeof sl);
    for (int i = 0; i < 4; i++)
        for (int j = i + 1; j < 4; j++)
            if (before(sp[j], sl[j], sp[i], sl[i])) {
                const uint8_t *tp = sp[i];
                size_t tl = sl[i];
                sp[i] = sp[j], sl[i] = sl[j], sp[j] = tp, sl[j] = tl;
            }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) != 1) fz_die("SHA-1 failed in the oracle");
    for (int i = 0; i < 4; i++)
        if (EVP_DigestUpdate(ctx, sp[i], sl[i]) != 1) fz_die("SHA-1 failed in the oracle");
    if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 20) fz_die("SHA-1 failed in the oracle");
    EVP_MD_CTX_free(ctx);
    char hex[41];
    for (int i = 0; i < 20; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);

    for (int i = 0; i < 4; i++) lua_pushlstring(L, (const char *)part[i], len[i]);
    call("callback_signature", 4, 1);
    if (!lua_toboolean(L, -1)) fz_die("callback_signature raised: %s", lua_tostring(L, -2));
    size_t glen;
    const char *got = lua_tolstring(L, -2, &glen);
    if (got == NULL || glen != 40 || memcmp(got, hex, 40) != 0)
        fz_die("callback_signature gave %s, expected %s", got ? got : "nil", hex);
    lua_pop(L, 2);

    /* verify: the right one, one flipped character, one character more, upper case */
    for (int variant = 0; variant < 4; variant++) {
        char sig[42];
        size_t slen = 40;
        memcpy(sig, hex, 41);
        int want = variant == 0;
        if (variant == 1) sig[part[0] != NULL && len[0] > 0 ? part[0][0] % 40 : 7] ^= 1;
        if (variant == 2) sig[slen++] = '0';
        if (variant == 3) {
            int changed = 0;
            for (size_t i = 0; i < 40; i++)
                if (sig[i] >= 'a' && sig[i] <= 'f') sig[i] = (char)(sig[i] - 32), changed = 1;
            if (!changed) continue;
        }
        lua_pushlstring(L, sig, slen);
        for (int i = 0; i < 4; i++) lua_pushlstring(L, (const char *)part[i], len[i]);
        call("callback_verify", 5, 1);
        if (!lua_toboolean(L, -1)) fz_die("callback_verify raised: %s", lua_tostring(L, -2));
        if (lua_type(L, -2) != LUA_TBOOLEAN || lua_toboolean(L, -2) != want)
            fz_die("callback_verify (variant %d) gave %s, expected %s", variant, luaL_typename(L, -2),
                   want ? "true" : "false");
        lua_pop(L, 2);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    L = fz_newstate();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_reader r = {data, size};
    uint8_t flags = fz_u8(&r);
    int mode = flags & 3;
    int raw_key = (flags & 0x1c) == 0x1c; /* one input in eight */
    int rid_number = (flags & 0xe0) == 0xe0;
    int huge = flags == 0xc0; /* 2 MiB of base64: rare, it is slow */
    const uint8_t *p;

    /* The key: text for the module, 32 bytes for the oracle, or the exact argument error. */
    char keytext[64];
    uint8_t key[33];
    const char *key_error = NULL;
    char key_error_buf[160];
    if (raw_key) {
        size_t klen = fz_take(&r, fz_u8(&r) % 64, &p);
        memcpy(keytext, p, klen);
        keytext[klen] = '\0';
        if (memchr(p, 0, klen) != NULL) klen = strlen(keytext); /* keep it a C string for strstr */
        if (klen != KEY_CHARS) {
            snprintf(key_error_buf, sizeof key_error_buf,
                     "bad argument #1 to 'callback_decrypt' (encoding_aes_key: 43 characters expected, got %zu)",
                     klen);
            key_error = key_error_buf;
        } else {
            for (size_t i = 0; i < klen && key_error == NULL; i++)
                if (b64_index((unsigned char)keytext[i]) < 0) {
                    snprintf(key_error_buf, sizeof key_error_buf,
                             "bad argument #1 to 'callback_decrypt' (encoding_aes_key: not base64 (character %zu))",
                             i + 1);
                    key_error = key_error_buf;
                }
            if (key_error == NULL) {
                char padded[45];
                memcpy(padded, keytext, 43);
                padded[43] = '=';
                padded[44] = '\0';
                if (b64_decode_strict(padded, 44, key) != 32) fz_die("oracle: key decoding");
            }
        }
    } else {
        memset(key, 0, sizeof key);
        size_t k = fz_take(&r, 32, &p);
        memcpy(key, p, k);
        size_t tlen;
        char *t = b64_encode(key, 32, &tlen);
        memcpy(keytext, t, KEY_CHARS);
        keytext[KEY_CHARS] = '\0';
        free(t);
    }

    const uint8_t *rid;
    size_t ridlen = fz_take(&r, fz_u16(&r) % 300, &rid);

    /* The ciphertext text, by mode. */
    char *text = NULL;
    size_t tlen = 0;
    const uint8_t *msg = NULL;
    size_t msglen = 0;
    uint8_t random16[20] = {0};
    size_t r16len = 16;
    if (mode == 0) {
        if (huge) {
            tlen = MAX_BASE64 + 4 * (size_t)(fz_u8(&r) % 2);
            text = malloc(tlen);
            if (text == NULL) fz_die("out of memory");
            memset(text, 'A', tlen);
        } else {
            tlen = fz_take(&r, r.n, &p);
            text = malloc(tlen + 1);
            if (text == NULL) fz_die("out of memory");
            memcpy(text, p, tlen);
        }
    } else if (mode == 1) {
        size_t n = fz_take(&r, fz_u16(&r) % 4096, &p);
        uint8_t how = fz_u8(&r);
        text = b64_encode(p, n, &tlen);
        if (how % 4 == 1 && tlen > 0 && text[tlen - 1] == '=') tlen--; /* padding dropped */
        if (how % 4 == 2 && tlen > 0) text[(how >> 2) % tlen] = (char)fz_u8(&r);
    } else if (mode == 2) {
        size_t n = fz_take(&r, fz_u16(&r) % 4096, &p);
        size_t clen = (n + 15) / 16 * 16;
        uint8_t *plain = calloc(1, clen + 1), *cipher = calloc(1, clen + 1);
        if (plain == NULL || cipher == NULL) fz_die("out of memory");
        memcpy(plain, p, n);
        if (clen > 0) aes(key, 1, plain, clen, cipher);
        text = b64_encode(cipher, clen, &tlen);
        free(plain);
        free(cipher);
    } else {
        /* one input in eight gives random16 a wrong length (0..19 bytes) */
        uint8_t r16 = fz_u8(&r);
        r16len = r16 % 8 == 7 ? (size_t)(r16 >> 3) % 20 : 16;
        size_t k = fz_take(&r, r16len, &p);
        memcpy(random16, p, k);
        msglen = fz_take(&r, r.n, &msg);
    }

    int base = lua_gettop(L);
    if (mode == 3) {
        /* callback_encrypt with a fixed random16 is deterministic: the expected text is computed here. */
        lua_pushstring(L, keytext);
        lua_pushlstring(L, (const char *)msg, msglen);
        if (rid_number) lua_pushinteger(L, 42);
        else lua_pushlstring(L, (const char *)rid, ridlen);
        lua_pushlstring(L, (const char *)random16, r16len);
        call("callback_encrypt", 4, 2);
        char want_err[200];
        if (key_error != NULL) {
            snprintf(want_err, sizeof want_err, "bad argument #1 to 'callback_encrypt' (%s",
                     strchr(key_error, '(') + 1);
            check_raise(want_err, keytext, "callback_encrypt");
        } else if (rid_number) {
            check_raise("bad argument #3 to 'callback_encrypt' (string expected, got number)", keytext,
                        "callback_encrypt");
        } else if (ridlen > MAX_RID) {
            snprintf(want_err, sizeof want_err,
                     "bad argument #3 to 'callback_encrypt' (receive_id: at most 256 bytes, got %zu)", ridlen);
            check_raise(want_err, keytext, "callback_encrypt");
        } else if (r16len != 16) {
            snprintf(want_err, sizeof want_err,
                     "bad argument #4 to 'callback_encrypt' (random16: 16 bytes expected, got %zu)", r16len);
            check_raise(want_err, keytext, "callback_encrypt");
        } else {
            if (!lua_toboolean(L, -1)) fz_die("callback_encrypt raised: %s", lua_tostring(L, -3));
            size_t total = 20 + msglen + ridlen;
            total += 32 - total % 32;
            uint8_t *plain = malloc(total), *cipher = malloc(total);
            if (plain == NULL || cipher == NULL) fz_die("out of memory");
            memcpy(plain, random16, 16);
            plain[16] = (uint8_t)(msglen >> 24);
            plain[17] = (uint8_t)(msglen >> 16);
            plain[18] = (uint8_t)(msglen >> 8);
            plain[19] = (uint8_t)msglen;
            if (msglen > 0) memcpy(plain + 20, msg, msglen);
            if (ridlen > 0) memcpy(plain + 20 + msglen, rid, ridlen);
            memset(plain + 20 + msglen + ridlen, (int)(total - 20 - msglen - ridlen), total - 20 - msglen - ridlen);
            aes(key, 1, plain, total, cipher);
            size_t wlen;
            char *want = b64_encode(cipher, total, &wlen);
            size_t glen;
            const char *got = lua_tolstring(L, -3, &glen);
            if (got == NULL || glen != wlen || memcmp(got, want, wlen) != 0)
                fz_die("callback_encrypt gave %s, expected %s", got ? got : "nil", want);
            free(plain);
            free(cipher);
            /* and back */
            lua_pushstring(L, keytext);
            lua_pushvalue(L, -4);
            lua_pushlstring(L, (const char *)rid, ridlen);
            call("callback_decrypt", 3, 2);
            expect e = {1, "", msg, msglen, NULL};
            check_decrypt(&e, keytext, "round trip");
            free(want);
        }
    } else {
        lua_pushstring(L, keytext);
        lua_pushlstring(L, text, tlen);
        if (rid_number) lua_pushinteger(L, 42);
        else lua_pushlstring(L, (const char *)rid, ridlen);
        call("callback_decrypt", 3, 2);
        if (key_error != NULL) {
            check_raise(key_error, keytext, "callback_decrypt");
        } else if (rid_number) {
            check_raise("bad argument #3 to 'callback_decrypt' (string expected, got number)", keytext,
                        "callback_decrypt");
        } else if (ridlen > MAX_RID) {
            char want_err[200];
            snprintf(want_err, sizeof want_err,
                     "bad argument #3 to 'callback_decrypt' (receive_id: at most 256 bytes, got %zu)", ridlen);
            check_raise(want_err, keytext, "callback_decrypt");
        } else {
            expect e;
            expect_decrypt(key, text, tlen, rid, ridlen, &e);
            check_decrypt(&e, keytext, mode == 0 ? "base64 text" : mode == 1 ? "ciphertext" : "plaintext");
            free(e.mem);
        }
    }
    free(text);
    lua_settop(L, base);
    check_signature(&r);
    lua_settop(L, base);
    /* see fuzz_response.c: no garbage left for libFuzzer's leak check to chase */
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
