/* JSON writing into our own buffer and the generic encoder. See json_writer.h for the contracts.
 *
 * Generic encoder error messages, after "bad argument #N to 'fname' (" and the path of the offending value
 * (root, then ".key" for identifier keys, "[\"key\"]" for other keys, "[i]" for array items; a key longer than
 * 40 bytes is cut there, "..." after it):
 *   <path>: invalid UTF-8 at byte N                 a string value; N is 1-based
 *   <path>: invalid UTF-8 in key at byte N          a key of the object at <path>
 *   <path>: NaN not allowed | infinity not allowed
 *   <path>: function not allowed                    also userdata (other than NULL, i.e. cjson.null), thread
 *   <path>: keys must be strings or exactly 1..n, got number
 *   <path>: nesting deeper than 32                also what a cycle meets
 *   <path>: __jsontype must be 'object' or 'array', got 'x'   (got <type> when not a string)
 *   <path>: object expected, got array | got empty table      (JW_OBJECT only) */
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "json_writer.h"

struct jw_box {
    char *data;
};

#define JW_BOX_META "wechat.core.json_buffer"

static int jw_box_gc(lua_State *L)
{
    jw_box *box = (jw_box *)lua_touserdata(L, 1);
    free(box->data);
    box->data = NULL;
    return 0;
}

void jw_open(jw_out *w, lua_State *L)
{
    luaL_checkstack(L, 3, "wechat.core: JSON writer");
    lua_pushnil(L);
    w->L = L;
    w->slot = lua_gettop(L);
    w->box = NULL;
    w->buf = w->p = w->inline_buf;
    w->end = w->inline_buf + JW_INLINE;
}

/* The block doubles until n more bytes fit; the inline buffer moves into a box the first time. */
char *jw_more(jw_out *w, size_t n)
{
    lua_State *L = w->L;
    size_t used = (size_t)(w->p - w->buf), cap = (size_t)(w->end - w->buf);
    if (n <= cap - used) return w->p;
    if (n > SIZE_MAX / 2 - used) luaL_error(L, "wechat.core: JSON body too large");
    size_t need = used + n, grown = cap;
    while (grown < need) grown *= 2;
    if (w->box == NULL) {
        jw_box *box = (jw_box *)lua_newuserdata(L, sizeof *box);
        box->data = NULL;
        if (luaL_newmetatable(L, JW_BOX_META)) {
            lua_pushcfunction(L, jw_box_gc);
            lua_setfield(L, -2, "__gc");
        }
        lua_setmetatable(L, -2);
        lua_replace(L, w->slot);
        box->data = (char *)malloc(grown);
        if (box->data == NULL) luaL_error(L, "wechat.core: not enough memory for a JSON body");
        memcpy(box->data, w->buf, used);
        w->box = box;
    } else {
        char *data = (char *)realloc(w->box->data, grown);
        /* On failure the old block stays with the box, whose __gc frees it. */
        if (data == NULL) luaL_error(L, "wechat.core: not enough memory for a JSON body");
        w->box->data = data;
    }
    w->buf = w->box->data;
    w->p = w->buf + used;
    w->end = w->buf + grown;
    return w->p;
}

void jw_push(jw_out *w)
{
    lua_pushlstring(w->L, w->buf, (size_t)(w->p - w->buf));
    if (w->box != NULL) {
        free(w->box->data);
        w->box->data = NULL;
        w->box = NULL;
    }
    w->buf = w->p = w->end = NULL;
}

void jw_add_more(jw_out *w, const char *s, size_t len)
{
    char *o = jw_more(w, len);
    memcpy(o, s, len);
    w->p = o + len;
}

/* ---------------------------------------------------------------------------------------------------------------
 * Numbers */

void jw_tonum(lua_State *L, int idx, jw_num *num)
{
    lua_Number n = lua_tonumber(L, idx);
    num->n = n;
    if (LUA_VERSION_NUM >= 503 && wechat_isinteger(L, idx)) {
        num->isint = 1;
        num->i = wechat_tointeger(L, idx);
        return;
    }
    /* A double holding an integer in the +-2^53 range is written as one, so that LuaJIT and 5.4 (1e15, 3.0) give
     * the same text; -0.0 stays a float ("-0"). */
    num->isint = n >= -9007199254740992.0 && n <= 9007199254740992.0 && (lua_Number)(long long)n == n &&
                 !(n == 0 && signbit(n));
    num->i = num->isint ? (long long)n : 0;
}

int jw_num_special(const jw_num *num)
{
    if (num->isint) return 0;
    if (isnan(num->n)) return 1;
    if (isinf(num->n)) return 2;
    return 0;
}

static size_t jw_format_int(char *buf, long long v)
{
    char tmp[24];
    size_t n = 0, len = 0;
    /* Through unsigned so that LLONG_MIN negates without overflow. */
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        tmp[n++] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u != 0);
    if (v < 0) buf[len++] = '-';
    while (n > 0) buf[len++] = tmp[--n];
    buf[len] = '\0';
    return len;
}

/* printf and strtod follow LC_NUMERIC (os.setlocale can change it); JSON wants '.'. */
static size_t jw_fix_decimal_point(char *buf, size_t len)
{
    const struct lconv *lc = localeconv();
    const char *dp = lc != NULL ? lc->decimal_point : NULL;
    if (dp == NULL || dp[0] == '\0' || (dp[0] == '.' && dp[1] == '\0')) return len;
    size_t dlen = strlen(dp);
    char *at = strstr(buf, dp);
    if (at == NULL) return len;
    *at = '.';
    memmove(at + 1, at + dlen, len - (size_t)(at - buf) - dlen + 1);
    return len - dlen + 1;
}

/* Fixed notation with the fewest decimals that read back as d, for 1e-4 <= |d| < 1e15 and at most 15 significant
 * digits: exactly what "%.15g" prints then (DBL_DIG is 15), without the C library's cost. r / 10^k is correctly
 * rounded because r < 2^53 and 10^k (k <= 15) are exact, so the comparison is an exact round-trip test. Returns 0
 * when d needs the general path. */
static size_t jw_format_fixed(char *buf, double d)
{
    static const double POW10[16] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7,
                                     1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
    double a = fabs(d);
    if (!(a >= 1e-4 && a < 1e15)) return 0;
    for (int k = 1; k <= 15; k++) {
        double scaled = a * POW10[k];
        if (scaled >= 1e15) return 0;
        double r = floor(scaled + 0.5);
        if (r / POW10[k] != a) continue;
        char digits[24];
        size_t nd = jw_format_int(digits, (long long)r);
        size_t len = 0;
        if (d < 0) buf[len++] = '-';
        if (nd <= (size_t)k) {
            buf[len++] = '0';
            buf[len++] = '.';
            for (size_t z = nd; z < (size_t)k; z++) buf[len++] = '0';
            memcpy(buf + len, digits, nd);
            len += nd;
        } else {
            memcpy(buf + len, digits, nd - (size_t)k);
            len += nd - (size_t)k;
            buf[len++] = '.';
            memcpy(buf + len, digits + nd - (size_t)k, (size_t)k);
            len += (size_t)k;
        }
        buf[len] = '\0';
        return len;
    }
    return 0;
}

const char *jw_int_text(char *buf, long long n)
{
    buf[jw_format_int(buf, n)] = '\0';
    return buf;
}

size_t jw_format_num(char *buf, const jw_num *num)
{
    if (num->isint) return jw_format_int(buf, num->i);
    switch (jw_num_special(num)) {
    case 1:
        memcpy(buf, "nan", 4);
        return 3;
    case 2:
        if (num->n < 0) {
            memcpy(buf, "-inf", 5);
            return 4;
        }
        memcpy(buf, "inf", 4);
        return 3;
    default:
        break;
    }
    double d = (double)num->n;
    size_t fixed = jw_format_fixed(buf, d);
    if (fixed > 0) return fixed;
    int len = 0;
    for (int prec = 15; prec <= 17; prec++) {
        len = snprintf(buf, JW_NUMBUF, "%.*g", prec, d);
        if (len <= 0 || len >= JW_NUMBUF) return 0;
        if (prec == 17 || strtod(buf, NULL) == d) break;
    }
    return jw_fix_decimal_point(buf, (size_t)len);
}

void jw_number(jw_out *w, const jw_num *num)
{
    char *o = jw_room(w, JW_NUMBUF);
    size_t len = jw_format_num(o, num);
    if (len == 0) luaL_error(w->L, "wechat.core: number formatting failed");
    w->p = o + len;
}

/* ---------------------------------------------------------------------------------------------------------------
 * Strings */

/* Byte classes: 0 copied as is, 1 escaped, 2/3/4 first byte of a 2/3/4-byte sequence, 5 never valid first. */
#define R16(c) c, c, c, c, c, c, c, c, c, c, c, c, c, c, c, c
static const unsigned char JW_CLASS[256] = {
    R16(1), R16(1),                                                   /* 0x00-0x1f control */
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,                   /* 0x20-0x2f: '"' */
    R16(0), R16(0),                                                   /* 0x30-0x4f */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,                   /* 0x50-0x5f: '\\' */
    R16(0), R16(0),                                                   /* 0x60-0x7f */
    R16(5), R16(5), R16(5), R16(5),                                   /* 0x80-0xbf continuation */
    5, 5, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,                   /* 0xc0-0xc1 overlong */
    R16(2),                                                           /* 0xd0-0xdf */
    R16(3),                                                           /* 0xe0-0xef */
    4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,                   /* 0xf5-0xff beyond U+10FFFF */
};
#undef R16

static char *jw_escape(char *o, unsigned char c)
{
    static const char HEX[] = "0123456789abcdef";
    *o++ = '\\';
    switch (c) {
    case '"': *o++ = '"'; break;
    case '\\': *o++ = '\\'; break;
    case '\b': *o++ = 'b'; break;
    case '\f': *o++ = 'f'; break;
    case '\n': *o++ = 'n'; break;
    case '\r': *o++ = 'r'; break;
    case '\t': *o++ = 't'; break;
    default:
        *o++ = 'u';
        *o++ = '0';
        *o++ = '0';
        *o++ = HEX[c >> 4];
        *o++ = HEX[c & 0x0f];
        break;
    }
    return o;
}

static int jw_cont(unsigned char c)
{
    return (c & 0xc0) == 0x80;
}

/* Nonzero when one of the 8 bytes in x is below 0x20, '"', '\\' or not ASCII (the "has less" and "has zero" byte
 * tricks: a borrow can only flag bytes above one that really matches, so there are no false negatives, and the
 * lowest flagged byte is a real match). */
static uint64_t jw_special8(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    uint64_t q = x ^ (ones * 0x22), b = x ^ (ones * 0x5c);
    uint64_t control = (x - ones * 0x20) & ~x;
    uint64_t quote = (q - ones) & ~q;
    uint64_t backslash = (b - ones) & ~b;
    return (control | quote | backslash | x) & high;
}

/* Where the first flagged byte of an 8-byte word flagged by jw_special8 is. The lowest flagged byte of a word is a
 * real match (a borrow only runs upwards), and on a little-endian machine it is the first in memory; elsewhere
 * the byte loop looks at the word's bytes one by one. */
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define JW_WORD_LE 1
#define JW_PLAIN_PREFIX(mask) ((size_t)__builtin_ctzll(mask) >> 3)
#else
#define JW_WORD_LE 0
#define JW_PLAIN_PREFIX(mask) ((size_t)0)
#endif

/* The end of the run from p that is written as is (plain ASCII and valid UTF-8 sequences): a byte to escape, the
 * end of the string, or the first byte of an invalid sequence (*bad set then). s is where the string starts. Reads
 * only, so it needs no room in the output: a run is then copied in one piece. */
static const unsigned char *jw_scan(const unsigned char *s, const unsigned char *p, const unsigned char *end,
                                    int *bad)
{
    for (;;) {
        /* Plain ASCII, 8 bytes at a time, up to the first byte that is not. */
        while (end - p >= 8) {
            uint64_t x;
            memcpy(&x, p, 8);
            uint64_t m = jw_special8(x);
            if (m != 0) {
                p += JW_PLAIN_PREFIX(m);
                goto bytes;
            }
            p += 8;
        }
        if (p == end) return p;
#if JW_WORD_LE
        /* Fewer than 8 bytes left: the string's last 8 as one word, the bytes before p masked off. A byte there
         * may flag the one above it by a borrow; the byte loop then finds that one plain. */
        if (end - s >= 8) {
            uint64_t x;
            memcpy(&x, end - 8, 8);
            uint64_t m = jw_special8(x) & (~0ULL << (8 * (8 - (end - p))));
            if (m == 0) return end;
            p = end - 8 + JW_PLAIN_PREFIX(m);
        }
#endif
    bytes:
        /* Byte by byte, for as long as there are sequences (CJK text is mostly 3-byte ones). */
        while (p < end) {
            unsigned char c = *p;
            int n = JW_CLASS[c];
            if (n == 3) {
#if JW_WORD_LE
                /* A run of CJK text, two characters (6 bytes) a word: leads 1110xxxx, continuations 10xxxxxx, and
                 * neither lead E0 nor ED (those have a narrower second byte, checked one by one below). */
                while (end - p >= 8) {
                    uint64_t x;
                    memcpy(&x, p, 8);
                    unsigned l0 = (unsigned)(x & 0x0f), l1 = (unsigned)(x >> 24) & 0x0f;
                    if ((x & 0xc0c0f0c0c0f0ULL) != 0x8080e08080e0ULL || l0 == 0 || l0 == 0xd || l1 == 0 || l1 == 0xd)
                        break;
                    p += 6;
                }
                c = *p;
                if (JW_CLASS[c] != 3) continue;
#endif
                /* Both continuation bytes at once, then the two leads with a narrower range: E0 needs A0.. (no
                 * overlongs), ED stops at 9F (no surrogates). */
                if (end - p < 3) goto invalid;
                unsigned char c1 = p[1];
                if (((c1 & 0xc0) | ((unsigned)(p[2] & 0xc0) << 8)) != 0x8080 || (c == 0xe0 && c1 < 0xa0) ||
                    (c == 0xed && c1 > 0x9f))
                    goto invalid;
                p += 3;
                continue;
            }
            if (n == 0) {
                p++;
                if (end - s >= 8) break; /* back to whole words */
                continue;
            }
            if (n == 1) return p;
            if (n == 5 || end - p < n) goto invalid;
            unsigned char c1 = p[1];
            if (n == 2) {
                if (!jw_cont(c1)) goto invalid;
            } else {
                /* F0 needs 90.. (no overlongs), F4 stops at 8F (U+10FFFF). */
                if (!((c == 0xf0 ? c1 >= 0x90 && c1 <= 0xbf : c == 0xf4 ? c1 >= 0x80 && c1 <= 0x8f : jw_cont(c1)) &&
                      jw_cont(p[2]) && jw_cont(p[3])))
                    goto invalid;
            }
            p += n;
        }
        if (p == end) return p;
    }
invalid:
    *bad = 1;
    return p;
}

size_t jw_string(jw_out *w, const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str, *p = s, *end = s + len;
    int bad = 0;
    const unsigned char *stop = jw_scan(s, p, end, &bad);
    if (stop == end && len <= SIZE_MAX / 2) {
        /* The usual case, nothing to escape: one reservation, one copy. */
        char *o = jw_room(w, len + 2);
        *o = '"';
        memcpy(o + 1, s, len);
        o[len + 1] = '"';
        w->p = o + len + 2;
        return 0;
    }
    jw_putc(w, '"');
    for (;;) {
        if (bad) return (size_t)(stop - s) + 1;
        jw_add(w, (const char *)p, (size_t)(stop - p));
        if (stop == end) break;
        char *o = jw_room(w, 6);
        w->p = jw_escape(o, *stop);
        p = stop + 1;
        stop = jw_scan(s, p, end, &bad);
    }
    jw_putc(w, '"');
    return 0;
}

/* ---------------------------------------------------------------------------------------------------------------
 * The generic encoder
 *
 * Tables, keys and values stay on the stack while they are written, addressed relative to the top, so every
 * string written is alive there. The path of the value
 * being written is kept in C for error messages: per depth, the array index, or the key (alive on the stack). */

typedef struct jw_enc {
    lua_State *L;
    jw_out *w;
    const char *fname;
    int argn;
    const char *root;
    long long idx[JW_MAX_DEPTH + 2]; /* > 0: array index at that depth; 0: the key below */
    const char *key[JW_MAX_DEPTH + 2];
    size_t klen[JW_MAX_DEPTH + 2];
} jw_enc;

static size_t jw_show_len(const char *s, size_t len)
{
    if (len <= JW_SHOW_MAX) return len;
    size_t n = JW_SHOW_MAX;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80) n--;
    return n;
}

/* Control bytes as \ddd, so that a message shows them (and a '\0' does not end it). */
static void jw_addshow(luaL_Buffer *pb, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            char esc[8];
            int n = snprintf(esc, sizeof esc, "\\%d", (int)c);
            if (n > 0 && (size_t)n < sizeof esc) luaL_addlstring(pb, esc, (size_t)n);
        } else {
            luaL_addchar(pb, (char)c);
        }
    }
}

const char *jw_pushshow(lua_State *L, const char *s, size_t len)
{
    size_t n = jw_show_len(s, len);
    luaL_Buffer pb;
    luaL_buffinit(L, &pb);
    jw_addshow(&pb, s, n);
    if (n < len) luaL_addstring(&pb, "...");
    luaL_pushresult(&pb);
    return lua_tostring(L, -1);
}

static int jw_is_ident(const char *k, size_t len)
{
    if (len == 0 || !((k[0] >= 'a' && k[0] <= 'z') || (k[0] >= 'A' && k[0] <= 'Z') || k[0] == '_')) return 0;
    for (size_t i = 1; i < len; i++) {
        char c = k[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return 0;
    }
    return 1;
}

/* Pushes root + the first nseg path segments. Only called on the way to an error, so the writer is abandoned and
 * a fresh buffer may use the stack. */
static const char *enc_pushpath(jw_enc *e, int nseg)
{
    lua_State *L = e->L;
    luaL_Buffer pb;
    luaL_buffinit(L, &pb);
    luaL_addstring(&pb, e->root);
    for (int d = 1; d <= nseg; d++) {
        if (e->idx[d] > 0) {
            char num[JW_NUMBUF];
            size_t n = jw_format_int(num, e->idx[d]);
            luaL_addchar(&pb, '[');
            luaL_addlstring(&pb, num, n);
            luaL_addchar(&pb, ']');
            continue;
        }
        const char *k = e->key[d];
        size_t klen = e->klen[d], show = jw_show_len(k, klen);
        const char *cut = show < klen ? "..." : "";
        if (jw_is_ident(k, klen)) {
            luaL_addchar(&pb, '.');
            luaL_addlstring(&pb, k, show);
            luaL_addstring(&pb, cut);
            continue;
        }
        luaL_addstring(&pb, "[\"");
        for (size_t i = 0; i < show; i++) {
            if (k[i] == '"' || k[i] == '\\') luaL_addchar(&pb, '\\');
            jw_addshow(&pb, k + i, 1);
        }
        luaL_addstring(&pb, cut);
        luaL_addstring(&pb, "\"]");
    }
    luaL_pushresult(&pb);
    return lua_tostring(L, -1);
}

static int enc_fail(jw_enc *e, int nseg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const char *msg = lua_pushvfstring(e->L, fmt, ap);
    va_end(ap);
    const char *path = enc_pushpath(e, nseg);
    return wechat_argerror(e->L, e->fname, e->argn, "%s: %s", path, msg);
}

static void enc_table(jw_enc *e, int td, int flags);

/* Writes the value on top of the stack, which sits in a container of depth d (0: the top-level value), and pops
 * it. */
static void enc_value(jw_enc *e, int d)
{
    lua_State *L = e->L;
    int t = lua_type(L, -1);
    switch (t) {
    case LUA_TNIL:
        jw_lit(e->w, "null");
        break;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, -1))
            jw_lit(e->w, "true");
        else
            jw_lit(e->w, "false");
        break;
    case LUA_TNUMBER: {
        jw_num num;
        jw_tonum(L, -1, &num);
        switch (jw_num_special(&num)) {
        case 1: enc_fail(e, d, "NaN not allowed"); break;
        case 2: enc_fail(e, d, "infinity not allowed"); break;
        default: jw_number(e->w, &num); break;
        }
        break;
    }
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        size_t bad = jw_string(e->w, s, len);
        if (bad != 0) {
            char num[JW_NUMBUF];
            jw_format_int(num, (long long)bad);
            enc_fail(e, d, "invalid UTF-8 at byte %s", num);
        }
        break;
    }
    case LUA_TTABLE:
        enc_table(e, d + 1, 0);
        break;
    default:
        if (t == LUA_TLIGHTUSERDATA && lua_touserdata(L, -1) == NULL) {
            jw_lit(e->w, "null"); /* cjson.null */
            break;
        }
        enc_fail(e, d, "%s not allowed", lua_typename(L, t));
        break;
    }
    lua_pop(L, 1);
}

enum { JT_EMPTY, JT_ARRAY, JT_OBJECT };

/* Decides how the table on top of the stack is written; n is the array length for JT_ARRAY. For an object whose
 * first key lua_next gave is a string, that key and its value are left on the stack (*pending = 1) so the walk
 * goes on from them; otherwise the table is back on top. */
static int enc_kind(jw_enc *e, int td, long long *n, int *pending)
{
    lua_State *L = e->L;
    *n = 0;
    *pending = 0;
    if (lua_getmetatable(L, -1)) {
        int kind = -1;
        lua_pushliteral(L, "__jsontype");
        lua_rawget(L, -2);
        if (lua_type(L, -1) == LUA_TSTRING) {
            size_t jlen;
            const char *jt = lua_tolstring(L, -1, &jlen);
            if (jlen == 6 && memcmp(jt, "object", 6) == 0)
                kind = JT_OBJECT;
            else if (jlen == 5 && memcmp(jt, "array", 5) == 0)
                kind = JT_ARRAY;
            else
                enc_fail(e, td - 1, "__jsontype must be 'object' or 'array', got '%s'", jw_pushshow(L, jt, jlen));
        } else if (!lua_isnil(L, -1)) {
            enc_fail(e, td - 1, "__jsontype must be 'object' or 'array', got %s", luaL_typename(L, -1));
        }
        lua_pop(L, 2);
        if (kind == JT_ARRAY) *n = (long long)wechat_rawlen(L, -1);
        if (kind >= 0) return kind;
    }
    lua_pushnil(L);
    if (!lua_next(L, -2)) return JT_EMPTY;
    if (lua_type(L, -2) == LUA_TSTRING) {
        *pending = 1;
        return JT_OBJECT;
    }
    /* An array when the keys are exactly 1..count; anything else is written as an object, which then raises on
     * the first key that is not a string. */
    long long count = 0, max = 0;
    do {
        long long k;
        if (!wechat_isinteger(L, -2) || (k = wechat_tointeger(L, -2)) < 1) {
            lua_pop(L, 2);
            return JT_OBJECT;
        }
        count++;
        if (k > max) max = k;
        lua_pop(L, 1);
    } while (lua_next(L, -2));
    if (max != count) return JT_OBJECT;
    *n = count;
    return JT_ARRAY;
}

/* Writes the table on top of the stack (left there), at depth td. */
static void enc_table(jw_enc *e, int td, int flags)
{
    lua_State *L = e->L;
    jw_out *w = e->w;
    /* Also what stops a cycle (docs/architecture.md). */
    if (td > JW_MAX_DEPTH) enc_fail(e, td - 1, "nesting deeper than %d", JW_MAX_DEPTH);
    luaL_checkstack(L, 6, "wechat.core: JSON encoder");
    long long n;
    int pending;
    int kind = enc_kind(e, td, &n, &pending);
    if ((flags & JW_OBJECT) && kind != JT_OBJECT)
        enc_fail(e, td - 1, "object expected, got %s", kind == JT_EMPTY ? "empty table" : "array");

    if (kind != JT_OBJECT) {
#if LUA_VERSION_NUM < 503
        /* LuaJIT's lua_rawgeti takes an int: a longer array would wrap to the wrong items. */
        if (n > INT_MAX) enc_fail(e, td - 1, "array longer than %d items", INT_MAX);
#endif
        jw_putc(w, '[');
        for (long long i = 1; i <= n; i++) {
            if (i > 1) jw_putc(w, ',');
            e->idx[td] = i;
            lua_rawgeti(L, -1, (wechat_rawindex)i);
            enc_value(e, td);
        }
        jw_putc(w, ']');
        return;
    }

    e->idx[td] = 0;
    jw_putc(w, '{');
    int more = pending;
    if (!more) {
        lua_pushnil(L);
        more = lua_next(L, -2);
    }
    for (int first = 1; more; first = 0) {
        if (lua_type(L, -2) != LUA_TSTRING)
            enc_fail(e, td - 1, "keys must be strings or exactly 1..n, got %s", luaL_typename(L, -2));
        size_t klen;
        const char *k = lua_tolstring(L, -2, &klen);
        e->key[td] = k;
        e->klen[td] = klen;
        if (!first) jw_putc(w, ',');
        size_t bad = jw_string(w, k, klen);
        if (bad != 0) {
            char num[JW_NUMBUF];
            jw_format_int(num, (long long)bad);
            enc_fail(e, td - 1, "invalid UTF-8 in key at byte %s", num);
        }
        jw_putc(w, ':');
        enc_value(e, td);
        more = lua_next(L, -2);
    }
    jw_putc(w, '}');
}

void jw_encode(jw_out *w, int idx, const char *fname, int argn, const char *root, int flags)
{
    jw_enc e;
    e.L = w->L;
    e.w = w;
    e.fname = fname;
    e.argn = argn;
    e.root = root;
    e.idx[0] = 0;
    lua_pushvalue(e.L, idx);
    if (lua_type(e.L, -1) == LUA_TTABLE) {
        enc_table(&e, 1, flags);
        lua_pop(e.L, 1);
        return;
    }
    if (flags & JW_OBJECT) enc_fail(&e, 0, "object expected, got %s", luaL_typename(e.L, -1));
    enc_value(&e, 0);
}
