/* Shared helpers of the fuzz targets; see harness.h.
 *
 * libFuzzer's entry points take no context pointer, so the few things that live from one input to the next (the
 * Lua state of a target, the coverage counters) are file-scope statics of the fuzzer binaries. None of this is
 * linked into wechat.core itself. */
#include "harness.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FZ_ROOT
#define FZ_ROOT "."
#endif

int luaopen_wechat_core(lua_State *L);

/* ---------------------------------------------------------------------------------------------------------------
 * Input */

uint8_t fz_u8(fz_reader *r)
{
    if (r->n == 0) return 0;
    r->n--;
    return *r->p++;
}

uint16_t fz_u16(fz_reader *r)
{
    uint16_t hi = fz_u8(r);
    return (uint16_t)(hi << 8 | fz_u8(r));
}

uint32_t fz_u32(fz_reader *r)
{
    uint32_t hi = fz_u16(r);
    return hi << 16 | fz_u16(r);
}

uint64_t fz_u64(fz_reader *r)
{
    uint64_t hi = fz_u32(r);
    return hi << 32 | fz_u32(r);
}

size_t fz_take(fz_reader *r, size_t want, const uint8_t **out)
{
    size_t k = want < r->n ? want : r->n;
    *out = r->p;
    r->p += k;
    r->n -= k;
    return k;
}

/* ---------------------------------------------------------------------------------------------------------------
 * Failures */

void fz_die(const char *fmt, ...)
{
    va_list ap;
    fputs("\nwechat.core fuzz finding: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}

void fz_dump(const char *label, const char *s, size_t len, size_t limit)
{
    fprintf(stderr, "%s (%zu bytes): \"", label, len);
    for (size_t i = 0; i < len && i < limit; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') fprintf(stderr, "\\%c", c);
        else if (c >= 0x20 && c < 0x7f) fputc(c, stderr);
        else fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "\"%s\n", len > limit ? "..." : "");
}

/* ---------------------------------------------------------------------------------------------------------------
 * The Lua state */

const char *fz_root(void)
{
    const char *env = getenv("WECHAT_ROOT");
    return env != NULL && env[0] != '\0' ? env : FZ_ROOT;
}

static int fz_init(lua_State *L)
{
    const char *root = fz_root();
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua", root, root);
    lua_setfield(L, -2, "path");
    /* The Debian Lua C modules (lxp, cjson) find the Lua API in this executable (linked with -Wl,-E). */
#if FZ_JIT
    lua_pushliteral(L, "/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;/usr/local/lib/lua/5.1/?.so;/usr/lib/lua/5.1/?.so");
#else
    lua_pushliteral(L, "/usr/lib/x86_64-linux-gnu/lua/5.4/?.so;/usr/local/lib/lua/5.4/?.so;/usr/lib/lua/5.4/?.so");
#endif
    lua_setfield(L, -2, "cpath");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_wechat_core);
    lua_setfield(L, -2, "wechat.core");
    lua_pop(L, 2);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "wechat.core");
    lua_call(L, 1, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "fz.core");
    fz_reset_counters(L);
    return 0;
}

/* malloc-based, so ASan watches every Lua object (LuaJIT's own allocator would hide them from it). */
static void *fz_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, nsize);
}

lua_State *fz_newstate(void)
{
    lua_State *L = lua_newstate(fz_alloc, NULL);
    if (L == NULL) L = luaL_newstate(); /* LuaJIT without GC64 takes no allocator */
    if (L == NULL) fz_die("luaL_newstate failed");
    lua_pushcfunction(L, fz_init);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) fz_die("setting up the Lua state: %s", lua_tostring(L, -1));
    return L;
}

void fz_push_core(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, "fz.core");
}

/* Extra counters: libFuzzer (LLVM 14) treats every byte of this section as a feature counter. */
#define FZ_LUA_COUNTERS (1 << 16)
__attribute__((section("__libfuzzer_extra_counters"), used)) static uint8_t fz_lua_counters[FZ_LUA_COUNTERS];
static uintptr_t fz_prev_line;

static void fz_line_hook(lua_State *L, lua_Debug *ar)
{
    if (!lua_getinfo(L, "S", ar)) return;
    /* The source string of a chunk is one object for all its functions, so its address names the chunk. */
    uintptr_t here = (uintptr_t)ar->source * 2654435761u + (uintptr_t)ar->currentline;
    uintptr_t edge = here ^ (fz_prev_line >> 1);
    fz_prev_line = here;
    uint8_t *a = &fz_lua_counters[here % FZ_LUA_COUNTERS];
    uint8_t *b = &fz_lua_counters[(edge * 40503u) % FZ_LUA_COUNTERS];
    if (*a < 255) (*a)++;
    if (*b < 255) (*b)++;
}

void fz_gc_aggressive(lua_State *L, int on)
{
#if FZ_JIT
    lua_gc(L, LUA_GCSETPAUSE, on ? 50 : 200);
    lua_gc(L, LUA_GCSETSTEPMUL, on ? 1000 : 200);
#else
    if (on) lua_gc(L, LUA_GCINC, 50, 1000, 0);
    else lua_gc(L, LUA_GCINC, 200, 100, 13);
#endif
}

void fz_lua_coverage(lua_State *L)
{
    lua_sethook(L, fz_line_hook, LUA_MASKLINE, 0);
}

lua_Integer fz_counter(lua_State *L, const char *name)
{
    lua_getfield(L, LUA_REGISTRYINDEX, name);
    lua_Integer n = lua_tointeger(L, -1);
    lua_pop(L, 1);
    return n;
}

static void fz_bump(lua_State *L, const char *name)
{
    lua_Integer n = fz_counter(L, name);
    lua_pushinteger(L, n + 1);
    lua_setfield(L, LUA_REGISTRYINDEX, name);
}

void fz_reset_counters(lua_State *L)
{
    lua_pushinteger(L, 0);
    lua_setfield(L, LUA_REGISTRYINDEX, "fz.mm");
    lua_pushinteger(L, 0);
    lua_setfield(L, LUA_REGISTRYINDEX, "fz.gc");
}

/* ---------------------------------------------------------------------------------------------------------------
 * JSON */

/* Length of the UTF-8 sequence at s (n bytes left), 0 when it is not valid. */
static size_t fz_utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) return n >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80) return 0;
        unsigned cp = (unsigned)(c & 0x0f) << 12 | (unsigned)(s[1] & 0x3f) << 6 | (unsigned)(s[2] & 0x3f);
        return cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff) ? 3 : 0;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80) return 0;
        unsigned long cp = (unsigned long)(c & 0x07) << 18 | (unsigned long)(s[1] & 0x3f) << 12 |
                           (unsigned long)(s[2] & 0x3f) << 6 | (unsigned long)(s[3] & 0x3f);
        return cp >= 0x10000 && cp <= 0x10ffff ? 4 : 0;
    }
    return 0;
}

int fz_utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        size_t k = fz_utf8_seq(s + i, n - i);
        if (k == 0) return 0;
        i += k;
    }
    return 1;
}

#define FZ_JSON_MAX_DEPTH 100

typedef struct fz_json {
    lua_State *L;
    const unsigned char *s;
    size_t n, i;
} fz_json;

static void fz_json_ws(fz_json *j)
{
    while (j->i < j->n && (j->s[j->i] == ' ' || j->s[j->i] == '\t' || j->s[j->i] == '\n' || j->s[j->i] == '\r'))
        j->i++;
}

static int fz_hex4(fz_json *j, unsigned *out)
{
    unsigned v = 0;
    if (j->n - j->i < 4) return 0;
    for (int k = 0; k < 4; k++) {
        unsigned char c = j->s[j->i++];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

static void fz_add_cp(luaL_Buffer *B, unsigned long cp)
{
    char u[4];
    size_t k;
    if (cp < 0x80) {
        u[0] = (char)cp;
        k = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | cp >> 6);
        u[1] = (char)(0x80 | (cp & 0x3f));
        k = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | cp >> 12);
        u[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        k = 3;
    } else {
        u[0] = (char)(0xf0 | cp >> 18);
        u[1] = (char)(0x80 | (cp >> 12 & 0x3f));
        u[2] = (char)(0x80 | (cp >> 6 & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        k = 4;
    }
    luaL_addlstring(B, u, k);
}

/* The string at j->i (on its opening quote); pushes it. Nothing else touches the stack while the buffer is open. */
static int fz_json_string(fz_json *j)
{
    luaL_Buffer B;
    j->i++;
    luaL_buffinit(j->L, &B);
    for (;;) {
        if (j->i >= j->n) return 0;
        unsigned char c = j->s[j->i];
        if (c == '"') {
            j->i++;
            luaL_pushresult(&B);
            return 1;
        }
        if (c < 0x20) return 0;
        if (c != '\\') {
            /* a run of plain characters at once */
            size_t start = j->i;
            while (j->i < j->n && j->s[j->i] != '"' && j->s[j->i] != '\\' && j->s[j->i] >= 0x20) {
                size_t k = fz_utf8_seq(j->s + j->i, j->n - j->i);
                if (k == 0) return 0;
                j->i += k;
            }
            luaL_addlstring(&B, (const char *)j->s + start, j->i - start);
            continue;
        }
        j->i++;
        if (j->i >= j->n) return 0;
        c = j->s[j->i++];
        switch (c) {
        case '"': luaL_addchar(&B, '"'); break;
        case '\\': luaL_addchar(&B, '\\'); break;
        case '/': luaL_addchar(&B, '/'); break;
        case 'b': luaL_addchar(&B, '\b'); break;
        case 'f': luaL_addchar(&B, '\f'); break;
        case 'n': luaL_addchar(&B, '\n'); break;
        case 'r': luaL_addchar(&B, '\r'); break;
        case 't': luaL_addchar(&B, '\t'); break;
        case 'u': {
            unsigned hi, lo;
            if (!fz_hex4(j, &hi)) return 0;
            if (hi >= 0xdc00 && hi <= 0xdfff) return 0;
            if (hi >= 0xd800 && hi <= 0xdbff) {
                if (j->n - j->i < 2 || j->s[j->i] != '\\' || j->s[j->i + 1] != 'u') return 0;
                j->i += 2;
                if (!fz_hex4(j, &lo) || lo < 0xdc00 || lo > 0xdfff) return 0;
                fz_add_cp(&B, 0x10000 + ((unsigned long)(hi - 0xd800) << 10) + (lo - 0xdc00));
            } else {
                fz_add_cp(&B, hi);
            }
            break;
        }
        default: return 0;
        }
    }
}

static int fz_digits(fz_json *j)
{
    size_t start = j->i;
    while (j->i < j->n && j->s[j->i] >= '0' && j->s[j->i] <= '9') j->i++;
    return j->i > start;
}

static int fz_json_number(fz_json *j)
{
    size_t start = j->i;
    char text[64];
    if (j->s[j->i] == '-') j->i++;
    if (j->i >= j->n) return 0;
    if (j->s[j->i] == '0') j->i++;
    else if (!fz_digits(j)) return 0;
    if (j->i < j->n && j->s[j->i] == '.') {
        j->i++;
        if (!fz_digits(j)) return 0;
    }
    if (j->i < j->n && (j->s[j->i] == 'e' || j->s[j->i] == 'E')) {
        j->i++;
        if (j->i < j->n && (j->s[j->i] == '+' || j->s[j->i] == '-')) j->i++;
        if (!fz_digits(j)) return 0;
    }
    size_t len = j->i - start;
    /* The encoder writes at most 17 significant digits plus sign, point and exponent. */
    if (len >= sizeof text) return 0;
    memcpy(text, j->s + start, len);
    text[len] = '\0';
#if FZ_JIT
    /* The grammar is checked above; the harness runs in the C locale ('.'). */
    lua_pushnumber(j->L, strtod(text, NULL));
    return 1;
#else
    return lua_stringtonumber(j->L, text) == len + 1;
#endif
}

static int fz_json_value(fz_json *j, int depth);

static int fz_json_container(fz_json *j, int depth, int object)
{
    lua_State *L = j->L;
    lua_Integer count = 0;
    if (depth > FZ_JSON_MAX_DEPTH) return 0;
    luaL_checkstack(L, 6, "fz json");
    j->i++;
    lua_newtable(L);
    luaL_getmetatable(L, object ? "fz.json_object" : "fz.json_array");
    lua_setmetatable(L, -2);
    fz_json_ws(j);
    if (j->i < j->n && j->s[j->i] == (object ? '}' : ']')) {
        j->i++;
        return 1;
    }
    for (;;) {
        fz_json_ws(j);
        if (object) {
            if (j->i >= j->n || j->s[j->i] != '"' || !fz_json_string(j)) return 0;
            lua_pushvalue(L, -1);
            lua_rawget(L, -3);
            int dup = !lua_isnil(L, -1);
            lua_pop(L, 1);
            if (dup) return 0;
            fz_json_ws(j);
            if (j->i >= j->n || j->s[j->i] != ':') return 0;
            j->i++;
            if (!fz_json_value(j, depth + 1)) return 0;
            lua_rawset(L, -3);
        } else {
            if (!fz_json_value(j, depth + 1)) return 0;
            lua_rawseti(L, -2, ++count);
        }
        fz_json_ws(j);
        if (j->i >= j->n) return 0;
        unsigned char c = j->s[j->i++];
        if (c == ',') continue;
        return c == (object ? '}' : ']');
    }
}

static int fz_literal(fz_json *j, const char *lit)
{
    size_t k = strlen(lit);
    if (j->n - j->i < k || memcmp(j->s + j->i, lit, k) != 0) return 0;
    j->i += k;
    return 1;
}

/* Pushes exactly one value on success; on failure the caller drops whatever is left. */
static int fz_json_value(fz_json *j, int depth)
{
    fz_json_ws(j);
    if (j->i >= j->n) return 0;
    switch (j->s[j->i]) {
    case '{': return fz_json_container(j, depth, 1);
    case '[': return fz_json_container(j, depth, 0);
    case '"': return fz_json_string(j);
    case 't':
        if (!fz_literal(j, "true")) return 0;
        lua_pushboolean(j->L, 1);
        return 1;
    case 'f':
        if (!fz_literal(j, "false")) return 0;
        lua_pushboolean(j->L, 0);
        return 1;
    case 'n':
        if (!fz_literal(j, "null")) return 0;
        lua_pushlightuserdata(j->L, NULL);
        return 1;
    default: return fz_json_number(j);
    }
}

int fz_json_decode(lua_State *L, const char *s, size_t n, size_t *err_at)
{
    fz_json j = {L, (const unsigned char *)s, n, 0};
    int top = lua_gettop(L);
    luaL_newmetatable(L, "fz.json_object");
    luaL_newmetatable(L, "fz.json_array");
    lua_pop(L, 2);
    int ok = fz_json_value(&j, 0);
    if (ok) {
        fz_json_ws(&j);
        ok = j.i == n;
    }
    if (!ok) {
        lua_settop(L, top);
        *err_at = j.i;
        return 0;
    }
    return 1;
}

static int fz_json_is(lua_State *L, int idx, const char *mt)
{
    if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx)) return 0;
    luaL_getmetatable(L, mt);
    int same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return same;
}

int fz_json_is_object(lua_State *L, int idx)
{
    return fz_json_is(L, idx, "fz.json_object");
}

int fz_json_is_array(lua_State *L, int idx)
{
    return fz_json_is(L, idx, "fz.json_array");
}

/* ---------------------------------------------------------------------------------------------------------------
 * Lua values from fuzz input */

#define FZ_MAX_NODES 2000
/* String bytes per input. A cycle makes the encoder write a string up to 32 times (and name its key in the error
 * path as often): 1 MiB keeps the slowest input of the slowest builder well under the 10 s libFuzzer timeout. */
#define FZ_MAX_BYTES ((size_t)1 << 20)
#define FZ_MAX_NEST 48

/* Words the builders look for, and strings that break UTF-8 in each way the writer must catch. */
#define W(s) {s, sizeof(s) - 1}
static const struct {
    const char *s;
    size_t len;
} FZ_WORDS[] = {
    W("text"), W("image"), W("voice"), W("video"), W("file"), W("link"), W("miniprogram"), W("msgmenu"),
    W("location"), W("click"), W("view"), W("type"), W("content"), W("id"), W("url"), W("title"), W("desc"),
    W("thumb_media_id"), W("appid"), W("pagepath"), W("media_id"), W("description"), W("head_content"), W("list"),
    W("tail_content"), W("name"), W("address"), W("latitude"), W("longitude"), W("msgid"), W("cursor"), W("token"),
    W("limit"), W("voice_format"), W("open_kfid"), W("no_newline"), W("http://"), W("https://"),
    W("HTTPS://a.b/c"), W("object"), W("array"), W("__jsontype"), W("msg_id"), W("Az09_-"), W(""),
    W("\xe4\xbd\xa0\xe5\xa5\xbd"), W("\xf0\x9f\x98\x80"), W("\xed\xa0\x80"), W("\xc0\xaf"), W("\xf4\x90\x80\x80"),
    W("\xe0\x80\xaf"), W("\x80"), W("\xef\xbf\xbf"), W("a\0b"), W("\"\\\n\x01\x7f"), W("foo"), W("wmAAAA"),
    W("userid"), W("code"), W("1"), W("-"), W("ftp://x"),
};
#undef W
#define FZ_NWORDS (sizeof FZ_WORDS / sizeof FZ_WORDS[0])

static const double FZ_FLOATS[] = {
    NAN, -NAN, INFINITY, -INFINITY, -0.0, 0.0, 0.5, 1.5, 0.1, 1.0, 2.0, 1e308, -1e308, 4.9e-324,
    2.2250738585072014e-308, 9007199254740992.0, 9007199254740994.0, 9223372036854775808.0,
    -9223372036854775808.0, 1e300 * 1e10, 90.0, 90.00000000000001, -90.0, -90.5, 180.0, 180.00000000000003,
    -180.0, 1000.0, 1000.5, 1e15, 1e16, 1e17, 123456789.123456789, 3.141592653589793, 1e-7, 1e21, 0.30000000000000004,
};
#define FZ_NFLOATS (sizeof FZ_FLOATS / sizeof FZ_FLOATS[0])

static const long long FZ_INTS[] = {
    0, 1, -1, 2, 3, 10, 11, 32, 33, 64, 65, 90, 91, -90, -91, 180, 181, -180, -181, 1000, 1001, 2048, 2049,
    INT_MAX, INT_MIN, (long long)UINT_MAX + 1, 9007199254740992LL, 9007199254740993LL, LLONG_MAX, LLONG_MIN,
};
#define FZ_NINTS (sizeof FZ_INTS / sizeof FZ_INTS[0])

enum {
    OP_NIL, OP_FALSE, OP_TRUE, OP_INT8, OP_INT64, OP_FLOATBITS, OP_FLOAT, OP_INT, OP_STR, OP_WORD, OP_HUGE,
    OP_WORDCAT, OP_NULL, OP_ARRAY, OP_OBJECT, OP_MIXED, OP_SPARSE, OP_REF, OP_META, OP_OTHER, OP_COUNT
};

/* Metamethods a builder must never run: reading is raw. */
static int fz_trap(lua_State *L)
{
    fz_bump(L, "fz.mm");
    return 0;
}

/* __gc of a garbage object: changes a table of the values while wechat.core may be walking it. */
static int fz_finalizer(lua_State *L)
{
    lua_Integer mode = lua_tointeger(L, lua_upvalueindex(1));
    int t = lua_upvalueindex(2);
    fz_bump(L, "fz.gc");
    if (lua_type(L, t) != LUA_TTABLE) return 0;
    switch (mode % 5) {
    case 0: /* clear it: allowed during a traversal */
        lua_pushnil(L);
        while (lua_next(L, t)) {
            lua_pop(L, 1);
            lua_pushvalue(L, -1);
            lua_pushnil(L);
            lua_rawset(L, t);
        }
        break;
    case 1: /* replace every value with the table itself */
        lua_pushnil(L);
        while (lua_next(L, t)) {
            lua_pop(L, 1);
            lua_pushvalue(L, -1);
            lua_pushvalue(L, t);
            lua_rawset(L, t);
        }
        break;
    case 2: /* grow it: forces a rehash under a running lua_next */
        for (int i = 1; i <= 40; i++) {
            lua_pushfstring(L, "k%d", i);
            lua_pushinteger(L, i);
            lua_rawset(L, t);
        }
        break;
    case 3: /* flip its __jsontype */
        lua_createtable(L, 0, 1);
        lua_pushstring(L, mode & 8 ? "array" : "object");
        lua_setfield(L, -2, "__jsontype");
        lua_setmetatable(L, t);
        break;
    default:
        lua_gc(L, LUA_GCCOLLECT, 0);
        break;
    }
    return 0;
}

static void fz_value(fz_values *v, int depth);

static void fz_push_word(lua_State *L, uint8_t w)
{
    lua_pushlstring(L, FZ_WORDS[w % FZ_NWORDS].s, FZ_WORDS[w % FZ_NWORDS].len);
}

static void fz_register_table(fz_values *v)
{
    lua_pushvalue(v->L, -1);
    lua_rawseti(v->L, v->tables, ++v->ntables);
}

static void fz_push_bytes(fz_values *v, size_t want)
{
    const uint8_t *b;
    size_t k = fz_take(v->r, want, &b);
    v->bytes += k;
    lua_pushlstring(v->L, (const char *)b, k);
}

static void fz_push_huge(fz_values *v)
{
    lua_State *L = v->L;
    const uint8_t *pat;
    size_t plen = fz_take(v->r, 1 + fz_u8(v->r) % 16, &pat);
    size_t count = 1 + (size_t)fz_u16(v->r) % 1024;
    uint8_t scale = fz_u8(v->r);
    /* Megabytes now and then (up to FZ_MAX_BYTES in all): they cost milliseconds per builder. */
    if ((scale & 0x3c) == 0x3c) count *= 256;
    if (plen == 0) {
        pat = (const uint8_t *)"x";
        plen = 1;
    }
    size_t room = FZ_MAX_BYTES > v->bytes ? FZ_MAX_BYTES - v->bytes : 0;
    if (count > room / plen) count = room / plen;
    v->bytes += count * plen;
    /* Built in a userdata, so a memory error while pushing it leaks nothing. */
    char *out = lua_newuserdata(L, count * plen + 1);
    for (size_t i = 0; i < count; i++) memcpy(out + i * plen, pat, plen);
    lua_pushlstring(L, out, count * plen);
    lua_remove(L, -2);
    if (scale & 2) { /* a bad tail after a long good run */
        fz_push_word(L, fz_u8(v->r));
        lua_concat(L, 2);
    }
}

/* Pushes a table: keys and values from the input. Nil and NaN cannot be keys; such pairs are skipped. */
static void fz_set_pair(lua_State *L)
{
    int kt = lua_type(L, -2);
    if (kt == LUA_TNIL || (kt == LUA_TNUMBER && lua_tonumber(L, -2) != lua_tonumber(L, -2))) {
        lua_pop(L, 2);
        return;
    }
    lua_rawset(L, -3);
}

static void fz_table(fz_values *v, int depth, int op)
{
    lua_State *L = v->L;
    lua_newtable(L);
    fz_register_table(v);
    if (op == OP_ARRAY || op == OP_MIXED) {
        int n = fz_u8(v->r) % 17;
        for (int i = 1; i <= n; i++) {
            fz_value(v, depth + 1);
            lua_rawseti(L, -2, i);
        }
    }
    if (op == OP_OBJECT || op == OP_MIXED) {
        int n = fz_u8(v->r) % 9;
        for (int i = 0; i < n; i++) {
            fz_value(v, depth + 1);
            fz_value(v, depth + 1);
            fz_set_pair(L);
        }
    }
    if (op == OP_SPARSE) {
        int n = fz_u8(v->r) % 9;
        for (int i = 0; i < n; i++) {
            uint8_t how = fz_u8(v->r);
            if (how % 3 == 0) lua_pushinteger(L, (lua_Integer)FZ_INTS[fz_u8(v->r) % FZ_NINTS]);
            else if (how % 3 == 1) lua_pushinteger(L, (lua_Integer)(fz_u8(v->r) % 24));
            else lua_pushnumber(L, FZ_FLOATS[fz_u8(v->r) % FZ_NFLOATS]);
            fz_value(v, depth + 1);
            fz_set_pair(L);
        }
    }
}

static void fz_meta(fz_values *v, int depth)
{
    lua_State *L = v->L;
    uint8_t jt = fz_u8(v->r);
    uint8_t flags = fz_u8(v->r);
    fz_value(v, depth); /* the table, or a value wrapped in one */
    if (lua_type(L, -1) != LUA_TTABLE) {
        lua_createtable(L, 1, 0);
        lua_insert(L, -2);
        lua_rawseti(L, -2, 1);
        fz_register_table(v);
    }
    lua_createtable(L, 0, 4);
    switch (jt % 8) {
    case 0: break;
    case 1: lua_pushliteral(L, "object"); break;
    case 2: lua_pushliteral(L, "array"); break;
    case 3: lua_pushliteral(L, "Object"); break;
    case 4: lua_pushinteger(L, 1); break;
    case 5: lua_pushboolean(L, 1); break;
    case 6: fz_push_word(L, fz_u8(v->r)); break;
    default: lua_newtable(L); break;
    }
    if (jt % 8 != 0) lua_setfield(L, -2, "__jsontype");
    if (flags & 3) {
        lua_pushstring(L, (flags & 3) == 1 ? "k" : (flags & 3) == 2 ? "v" : "kv");
        lua_setfield(L, -2, "__mode");
        v->volatile_ = 1;
    }
    if (flags & 4) {
        static const char *const TRAPS[] = {"__index", "__newindex", "__len", "__pairs", "__eq", "__lt", "__le",
                                            "__concat", "__call", "__tostring", "__name", "__close", NULL};
        for (int i = 0; TRAPS[i] != NULL; i++) {
            lua_pushcfunction(L, fz_trap);
            lua_setfield(L, -2, TRAPS[i]);
        }
    }
    if (flags & 8) {
        lua_pushliteral(L, "locked");
        lua_setfield(L, -2, "__metatable");
    }
    lua_setmetatable(L, -2);
}

static void fz_other(fz_values *v)
{
    lua_State *L = v->L;
    uint8_t what = fz_u8(v->r);
    switch (what % 5) {
    case 0: lua_pushcfunction(L, fz_trap); break;
    case 1: (void)lua_newuserdata(L, 8); break;
    case 2: (void)lua_newthread(L); break;
    case 3: lua_pushlightuserdata(L, (void *)v); break; /* not NULL: not cjson.null */
    default: {
        /* A finalizer bomb aimed at one of the tables made so far; the bomb itself is garbage at once. A
         * userdata, since LuaJIT runs __gc for userdata only. */
        v->volatile_ = 1;
        (void)lua_newuserdata(L, 1);
        lua_createtable(L, 0, 1);
        lua_pushinteger(L, fz_u8(v->r));
        if (v->ntables > 0) lua_rawgeti(L, v->tables, 1 + fz_u8(v->r) % v->ntables);
        else lua_pushnil(L);
        lua_pushcclosure(L, fz_finalizer, 2);
        lua_setfield(L, -2, "__gc");
        lua_setmetatable(L, -2);
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
        break;
    }
    }
}

static void fz_value(fz_values *v, int depth)
{
    lua_State *L = v->L;
    luaL_checkstack(L, 10, "fz values");
    uint8_t op = v->r->n == 0 ? OP_NIL : fz_u8(v->r) % OP_COUNT;
    if (++v->nodes > FZ_MAX_NODES || depth > FZ_MAX_NEST) {
        if (op >= OP_ARRAY && op != OP_NULL) op = OP_NIL;
    }
    switch (op) {
    case OP_NIL: lua_pushnil(L); break;
    case OP_FALSE: lua_pushboolean(L, 0); break;
    case OP_TRUE: lua_pushboolean(L, 1); break;
    case OP_INT8: lua_pushinteger(L, (int8_t)fz_u8(v->r)); break;
    case OP_INT64: lua_pushinteger(L, (lua_Integer)fz_u64(v->r)); break;
    case OP_FLOATBITS: {
        uint64_t bits = fz_u64(v->r);
        double d;
        memcpy(&d, &bits, sizeof d);
        lua_pushnumber(L, d);
        break;
    }
    case OP_FLOAT: lua_pushnumber(L, FZ_FLOATS[fz_u8(v->r) % FZ_NFLOATS]); break;
    case OP_INT: lua_pushinteger(L, (lua_Integer)FZ_INTS[fz_u8(v->r) % FZ_NINTS]); break;
    case OP_STR: fz_push_bytes(v, fz_u8(v->r)); break;
    case OP_WORD: fz_push_word(L, fz_u8(v->r)); break;
    case OP_HUGE: fz_push_huge(v); break;
    case OP_WORDCAT:
        fz_push_word(L, fz_u8(v->r));
        fz_push_bytes(v, fz_u8(v->r) % 64);
        lua_concat(L, 2);
        break;
    case OP_NULL: lua_pushlightuserdata(L, NULL); break;
    case OP_ARRAY:
    case OP_OBJECT:
    case OP_MIXED:
    case OP_SPARSE: fz_table(v, depth, op); break;
    case OP_REF:
        if (v->ntables == 0) lua_pushnil(L);
        else lua_rawgeti(L, v->tables, 1 + fz_u8(v->r) % v->ntables);
        break;
    case OP_META: fz_meta(v, depth + 1); break;
    default: fz_other(v); break;
    }
}

void fz_values_begin(fz_values *v, lua_State *L, fz_reader *r)
{
    v->L = L;
    v->r = r;
    lua_newtable(L);
    v->tables = lua_gettop(L);
    v->ntables = 0;
    v->nodes = 0;
    v->bytes = 0;
    v->volatile_ = 0;
}

void fz_push_value(fz_values *v)
{
    fz_value(v, 0);
}

void fz_values_end(fz_values *v)
{
    lua_remove(v->L, v->tables);
}

static void fz_print_string(const char *s, size_t len)
{
    fputc('"', stderr);
    for (size_t i = 0; i < len && i < 512; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') fprintf(stderr, "\\%c", c);
        else if (c >= 0x20 && c < 0x7f) fputc(c, stderr);
        else fprintf(stderr, "\\x%02x", c);
    }
    fputc('"', stderr);
    if (len > 512) fprintf(stderr, " --[[ %zu bytes ]]", len);
}

static void fz_print(lua_State *L, int idx, int seen, int depth)
{
    idx = FZ_ABSINDEX(L, idx);
    luaL_checkstack(L, 8, "fz print");
    switch (lua_type(L, idx)) {
    case LUA_TNIL: fputs("nil", stderr); return;
    case LUA_TBOOLEAN: fputs(lua_toboolean(L, idx) ? "true" : "false", stderr); return;
    case LUA_TNUMBER:
        if (wechat_isinteger(L, idx)) {
            fprintf(stderr, "%lld", wechat_tointeger(L, idx));
        } else {
            lua_Number d = lua_tonumber(L, idx);
            if (isnan(d)) fputs("(0/0)", stderr);
            else if (isinf(d)) fputs(d > 0 ? "math.huge" : "-math.huge", stderr);
            else fprintf(stderr, "%.17g", d);
        }
        return;
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        fz_print_string(s, len);
        return;
    }
    case LUA_TLIGHTUSERDATA:
        fputs(lua_touserdata(L, idx) == NULL ? "cjson.null" : "<lightuserdata>", stderr);
        return;
    case LUA_TTABLE: break;
    default: fprintf(stderr, "<%s>", luaL_typename(L, idx)); return;
    }
    lua_pushvalue(L, idx);
    lua_rawget(L, seen);
    if (!lua_isnil(L, -1)) {
        fprintf(stderr, "<table %lld>", (long long)lua_tointeger(L, -1));
        lua_pop(L, 1);
        return;
    }
    lua_pop(L, 1);
    lua_Integer id = (lua_Integer)wechat_rawlen(L, seen) + 1;
    lua_pushvalue(L, idx);
    lua_pushinteger(L, id);
    lua_rawset(L, seen);
    lua_pushinteger(L, id);
    lua_rawseti(L, seen, id);
    if (depth > 40) {
        fputs("{...}", stderr);
        return;
    }
    int mt = lua_getmetatable(L, idx);
    if (mt) fputs("setmetatable(", stderr);
    fprintf(stderr, "{ --[[table %lld]] ", (long long)id);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        fputc('[', stderr);
        fz_print(L, -2, seen, depth + 1);
        fputs("] = ", stderr);
        fz_print(L, -1, seen, depth + 1);
        fputs(", ", stderr);
        lua_pop(L, 1);
    }
    fputc('}', stderr);
    if (mt) {
        fputs(", ", stderr);
        fz_print(L, -1, seen, depth + 1);
        fputc(')', stderr);
        lua_pop(L, 1);
    }
}

void fz_print_value(lua_State *L, int idx)
{
    idx = FZ_ABSINDEX(L, idx);
    lua_newtable(L);
    fz_print(L, idx, lua_gettop(L), 0);
    lua_pop(L, 1);
    fputc('\n', stderr);
}

/* ---------------------------------------------------------------------------------------------------------------
 * The generic encoder's rules, from docs/architecture.md: strings valid UTF-8; a table whose keys are exactly
 * 1..n is an array; an empty table is []; a metatable's raw __jsontype "object" or "array" decides; other keys
 * must be strings; NaN and infinities raise; cjson.null (NULL light userdata) is null; tables nested deeper than
 * 32 raise (which also stops cycles); functions, other userdata and threads raise. */

#define FZ_ENC_DEPTH 32

enum { FZ_K_BAD = -1, FZ_K_EMPTY, FZ_K_ARRAY, FZ_K_OBJECT };

/* How the table at idx is written; *n = item count for arrays. */
static int fz_kind(lua_State *L, int idx, lua_Integer *n)
{
    *n = 0;
    if (lua_getmetatable(L, idx)) {
        lua_pushliteral(L, "__jsontype");
        lua_rawget(L, -2);
        int t = lua_type(L, -1);
        int kind = FZ_K_EMPTY - 2; /* none */
        if (t == LUA_TSTRING) {
            size_t len;
            const char *s = lua_tolstring(L, -1, &len);
            if (len == 6 && memcmp(s, "object", 6) == 0) kind = FZ_K_OBJECT;
            else if (len == 5 && memcmp(s, "array", 5) == 0) kind = FZ_K_ARRAY;
            else kind = FZ_K_BAD;
        } else if (t != LUA_TNIL) {
            kind = FZ_K_BAD;
        }
        lua_pop(L, 2);
        if (kind == FZ_K_ARRAY) *n = (lua_Integer)wechat_rawlen(L, idx);
        if (kind != FZ_K_EMPTY - 2) return kind;
    }
    lua_Integer count = 0, max = 0;
    int all_int = 1;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (wechat_isinteger(L, -1) && wechat_tointeger(L, -1) >= 1) {
            count++;
            if (wechat_tointeger(L, -1) > max) max = (lua_Integer)wechat_tointeger(L, -1);
        } else {
            all_int = 0;
        }
    }
    if (count == 0 && all_int) return FZ_K_EMPTY;
    if (all_int && max == count) {
        *n = count;
        return FZ_K_ARRAY;
    }
    return FZ_K_OBJECT;
}

/* depth: the nesting depth the value at idx would have as a table (top-level table: 1). */
static int fz_valid(lua_State *L, int idx, int depth, int object_root)
{
    int t = lua_type(L, idx);
    idx = FZ_ABSINDEX(L, idx);
    switch (t) {
    case LUA_TNIL:
    case LUA_TBOOLEAN: return !object_root;
    case LUA_TLIGHTUSERDATA: return !object_root && lua_touserdata(L, idx) == NULL;
    case LUA_TNUMBER: {
        if (object_root) return 0;
        if (wechat_isinteger(L, idx)) return 1;
        lua_Number d = lua_tonumber(L, idx);
        return !isnan(d) && !isinf(d);
    }
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        return !object_root && fz_utf8_valid(s, len);
    }
    case LUA_TTABLE: break;
    default: return 0;
    }
    if (depth > FZ_ENC_DEPTH) return 0;
    luaL_checkstack(L, 6, "fz oracle");
    lua_Integer n;
    int kind = fz_kind(L, idx, &n);
    if (kind == FZ_K_BAD) return 0;
    if (object_root && kind != FZ_K_OBJECT) return 0;
    if (kind == FZ_K_EMPTY) return 1;
    if (kind == FZ_K_ARRAY) {
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, i);
            int ok = fz_valid(L, -1, depth + 1, 0);
            lua_pop(L, 1);
            if (!ok) return 0;
        }
        return 1;
    }
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        size_t klen;
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 2);
            return 0;
        }
        const char *k = lua_tolstring(L, -2, &klen);
        if (!fz_utf8_valid(k, klen) || !fz_valid(L, -1, depth + 1, 0)) {
            lua_pop(L, 2);
            return 0;
        }
        lua_pop(L, 1);
    }
    return 1;
}

int fz_raw_msgid_rule(lua_State *L, int client, int body)
{
    int rule = 0;
    lua_pushliteral(L, "msgid");
    lua_rawget(L, body);
    int t = lua_type(L, -1);
    if (t == LUA_TNIL) {
        rule = 1;
        if (client != 0 && lua_type(L, client) == LUA_TTABLE) {
            lua_pushliteral(L, "auto_msgid");
            lua_rawget(L, client);
            if (lua_toboolean(L, -1)) rule = -1;
            lua_pop(L, 1);
        }
    } else if (t == LUA_TBOOLEAN) {
        rule = lua_toboolean(L, -1) ? -1 : 0;
    } else if (t == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        rule = n > 0 && n <= 32;
        for (size_t i = 0; i < n && rule; i++) {
            unsigned char ch = (unsigned char)s[i];
            rule = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
                   ch == '-';
        }
    }
    lua_pop(L, 1);
    return rule;
}

int fz_encodable(lua_State *L, int idx, int object_root)
{
    return fz_valid(L, idx, 1, object_root);
}

static int fz_matches(lua_State *L, int j, int v)
{
    j = FZ_ABSINDEX(L, j);
    v = FZ_ABSINDEX(L, v);
    switch (lua_type(L, v)) {
    case LUA_TNIL:
    case LUA_TLIGHTUSERDATA: return lua_type(L, j) == LUA_TLIGHTUSERDATA && lua_touserdata(L, j) == NULL;
    case LUA_TBOOLEAN: return lua_type(L, j) == LUA_TBOOLEAN && lua_toboolean(L, j) == lua_toboolean(L, v);
    case LUA_TNUMBER:
        if (lua_type(L, j) != LUA_TNUMBER) return 0;
        /* Integers are written as integers; floats with enough digits to read back the same double. */
#if !FZ_JIT
        if (lua_isinteger(L, v) && !lua_isinteger(L, j)) return 0;
#endif
        return lua_rawequal(L, j, v);
    case LUA_TSTRING: return lua_type(L, j) == LUA_TSTRING && lua_rawequal(L, j, v);
    default: break;
    }
    luaL_checkstack(L, 6, "fz oracle");
    lua_Integer n;
    int kind = fz_kind(L, v, &n);
    if (kind == FZ_K_EMPTY || kind == FZ_K_ARRAY) {
        if (!fz_json_is_array(L, j) || (lua_Integer)wechat_rawlen(L, j) != n) return 0;
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, j, i);
            lua_rawgeti(L, v, i);
            int ok = fz_matches(L, -2, -1);
            lua_pop(L, 2);
            if (!ok) return 0;
        }
        return 1;
    }
    if (!fz_json_is_object(L, j)) return 0;
    lua_Integer nv = 0, nj = 0;
    lua_pushnil(L);
    while (lua_next(L, v)) {
        nv++;
        lua_pushvalue(L, -2);
        lua_rawget(L, j);
        int ok = !lua_isnil(L, -1) && fz_matches(L, -1, -2);
        lua_pop(L, 2);
        if (!ok) {
            lua_pop(L, 1);
            return 0;
        }
    }
    lua_pushnil(L);
    while (lua_next(L, j)) {
        nj++;
        lua_pop(L, 1);
    }
    return nv == nj;
}

int fz_json_matches(lua_State *L, int json, int value)
{
    return fz_matches(L, json, value);
}

int fz_is_argerror(const char *msg, int argn, const char *fname, const char *root)
{
    char head[128];
    int k = snprintf(head, sizeof head, "bad argument #%d to '%s' (%s", argn, fname, root != NULL ? root : "");
    if (k < 0 || (size_t)k >= sizeof head) return 0;
    size_t len = strlen(msg);
    return strncmp(msg, head, (size_t)k) == 0 && len > (size_t)k && msg[len - 1] == ')';
}

int fz_push_args(lua_State *L, fz_reader *r, fz_values *v, const char *name, int *nargs, uint8_t *flags)
{
    *flags = fz_u8(r);
    *nargs = fz_u8(r) % 9;
    fz_values_begin(v, L, r);
    int args = lua_gettop(L) + 1;
    for (int i = 0; i < *nargs; i++) fz_push_value(v);
    if (getenv("FZ_PRINT") != NULL) { /* FZ_PRINT=1 build/fuzz/<name> FILE: the arguments as Lua */
        fprintf(stderr, "%s: flags %d, %d arguments%s:\n", name, *flags, *nargs, v->volatile_ ? " (volatile)" : "");
        for (int i = 0; i < *nargs; i++) {
            fprintf(stderr, "  #%d = ", i + 1);
            fz_print_value(L, args + i);
        }
    }
    return args;
}
