/* Fuzz target: core.multipart_frame(name, filename, length[, boundary]), the framing of a media upload, against the
 * rules stated independently here.
 *
 * Input: a flags byte (bit 0: pass a boundary; bit 1: a length that is not an integer; bit 2: a negative length),
 * 8 bytes of length (taken modulo 2^54, so values over 2^53 come), then name, filename and boundary, each a length
 * byte and that many bytes. Exact oracle: the call raises "bad argument #N to 'multipart_frame' (...)" exactly when
 * a rule is broken (name 1..64 of [0-9A-Za-z_.-], filename 1..255 bytes without NUL, length an integer 0..2^53,
 * boundary 1..70 RFC 2046 characters without space); otherwise head, tail and content type are exactly the texts the
 * rules give, the filename escaped as %22, %0D, %0A, and the part header holds no other CR, LF or quote. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static lua_State *L;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    L = fz_newstate();
    return 0;
}

static int name_ok(const uint8_t *s, size_t n)
{
    if (n == 0 || n > 64) return 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '-' ||
              c == '.'))
            return 0;
    }
    return 1;
}

static int boundary_ok(const uint8_t *s, size_t n)
{
    static const char OTHER[] = "'()+_,-./:=?";
    if (n == 0 || n > 70) return 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        int alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!alnum && (c == 0 || memchr(OTHER, c, sizeof OTHER - 1) == NULL)) return 0;
    }
    return 1;
}

/* Appends to a growing buffer (the oracle's expected text). */
typedef struct {
    char *p;
    size_t n, cap;
} text;

static void add(text *t, const void *s, size_t n)
{
    if (t->n + n + 1 > t->cap) {
        t->cap = (t->n + n + 1) * 2;
        t->p = realloc(t->p, t->cap);
        if (t->p == NULL) fz_die("out of memory");
    }
    memcpy(t->p + t->n, s, n);
    t->n += n;
}

static void adds(text *t, const char *s)
{
    add(t, s, strlen(s));
}

static void expect_string(int idx, const text *want, const char *what)
{
    size_t len;
    const char *got = lua_tolstring(L, idx, &len);
    if (got == NULL || len != want->n || memcmp(got, want->p, len) != 0) {
        fz_dump("got", got != NULL ? got : "(not a string)", got != NULL ? len : 14, 512);
        fz_dump("want", want->p, want->n, 512);
        fz_die("%s differs from the rules", what);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_reader r = {data, size};
    uint8_t flags = fz_u8(&r);
    uint64_t raw = fz_u64(&r) % ((uint64_t)1 << 54);
    const uint8_t *name, *filename, *boundary;
    size_t name_len = fz_take(&r, fz_u8(&r), &name);
    size_t filename_len = fz_take(&r, fz_u8(&r) * 2u, &filename);
    size_t boundary_len = fz_take(&r, fz_u8(&r), &boundary);
    int with_boundary = flags & 1;
    double length = (double)raw;
    if (flags & 2) length += 0.5;
    if (flags & 4) length = -length - 1;

    int base = lua_gettop(L);
    fz_push_core(L);
    lua_getfield(L, -1, "multipart_frame");
    lua_remove(L, -2);
    lua_pushlstring(L, (const char *)name, name_len);
    lua_pushlstring(L, (const char *)filename, filename_len);
    lua_pushnumber(L, length);
    if (with_boundary) lua_pushlstring(L, (const char *)boundary, boundary_len);
    else lua_pushnil(L);
    int rc = lua_pcall(L, 4, LUA_MULTRET, 0);

    int bad_arg = 0;
    if (!name_ok(name, name_len)) bad_arg = 1;
    else if (filename_len == 0 || filename_len > 255 || memchr(filename, 0, filename_len) != NULL) bad_arg = 2;
    /* + 0.5 is lost on a double over 2^52: such a length is an integer after all */
    else if (!(length >= 0 && length <= 9007199254740992.0) || length - (double)(uint64_t)length != 0) bad_arg = 3;
    else if (with_boundary && !boundary_ok(boundary, boundary_len)) bad_arg = 4;

    if (bad_arg) {
        if (rc == LUA_OK) fz_die("multipart_frame took a bad argument #%d", bad_arg);
        char want[64];
        snprintf(want, sizeof want, "bad argument #%d to 'multipart_frame' (", bad_arg);
        const char *msg = lua_tostring(L, -1);
        if (msg == NULL || strstr(msg, want) == NULL) fz_die("wrong error for argument #%d: %s", bad_arg, msg);
        lua_settop(L, base);
        return 0;
    }
    if (rc != LUA_OK) fz_die("multipart_frame raised on good arguments: %s", lua_tostring(L, -1));
    if (lua_gettop(L) - base != 3) fz_die("multipart_frame returned %d values", lua_gettop(L) - base);

    size_t used_len;
    const char *used = lua_tolstring(L, base + 3, &used_len);
    static const char CT[] = "multipart/form-data; boundary=";
    if (used == NULL || used_len <= sizeof CT - 1 || memcmp(used, CT, sizeof CT - 1) != 0)
        fz_die("content type does not name a boundary");
    const char *b = used + sizeof CT - 1;
    size_t b_len = used_len - (sizeof CT - 1);
    if (with_boundary ? (b_len != boundary_len || memcmp(b, boundary, b_len) != 0)
                      : !boundary_ok((const uint8_t *)b, b_len) || b_len != 48)
        fz_die("boundary is not the one given or a made one of 48 characters");

    text head = {0}, tail = {0};
    char digits[32];
    snprintf(digits, sizeof digits, "%.0f", length);
    adds(&head, "--");
    add(&head, b, b_len);
    adds(&head, "\r\nContent-Disposition: form-data; name=\"");
    add(&head, name, name_len);
    adds(&head, "\"; filename=\"");
    for (size_t i = 0; i < filename_len; i++) {
        if (filename[i] == '"') adds(&head, "%22");
        else if (filename[i] == '\r') adds(&head, "%0D");
        else if (filename[i] == '\n') adds(&head, "%0A");
        else add(&head, &filename[i], 1);
    }
    adds(&head, "\"; filelength=");
    adds(&head, digits);
    adds(&head, "\r\nContent-Type: application/octet-stream\r\n\r\n");
    adds(&tail, "\r\n--");
    add(&tail, b, b_len);
    adds(&tail, "--\r\n");
    expect_string(base + 1, &head, "head");
    expect_string(base + 2, &tail, "tail");

    /* the filename cannot end the quoted string or the header line early */
    size_t quotes = 0, crlf = 0;
    for (size_t i = 0; i < head.n; i++) {
        if (head.p[i] == '"') quotes++;
        if (head.p[i] == '\n') crlf++;
    }
    if (quotes != 4 || crlf != 4) fz_die("head has %zu quotes and %zu line ends", quotes, crlf);
    free(head.p);
    free(tail.p);
    lua_settop(L, base);
    return 0;
}
