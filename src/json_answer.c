/* A fast path for WeCom's answers to sends: a small flat JSON object of strings without escapes, integers and
 * booleans (`{"errcode":0,"errmsg":"ok","msgid":"..."}`) decoded straight into a table, integers as integers. Anything
 * else (nesting, escapes, floats, null, big numbers, bad JSON) is left to lua-cjson: the function then returns
 * nothing, and the caller decodes with cjson, whose answer for this subset is the same table. */
#include <string.h>

#include "wechat_core.h"

/* More digits than this may not fit a double exactly (cjson reads numbers as doubles): left to cjson. */
#define MAX_DIGITS 15

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

/* A string at p (just after its opening quote) without escapes or control characters: pushes it and returns the
 * position after its closing quote, or NULL. */
static const char *push_plain_string(lua_State *L, const char *p, const char *end)
{
    const char *start = p;
    while (p < end && *p != '"') {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == '\\') return NULL;
        p++;
    }
    if (p == end) return NULL;
    lua_pushlstring(L, start, (size_t)(p - start));
    return p + 1;
}

static const char *push_value(lua_State *L, const char *p, const char *end)
{
    if (p == end) return NULL;
    if (*p == '"') return push_plain_string(L, p + 1, end);
    if (*p == 't' && end - p >= 4 && memcmp(p, "true", 4) == 0) {
        lua_pushboolean(L, 1);
        return p + 4;
    }
    if (*p == 'f' && end - p >= 5 && memcmp(p, "false", 5) == 0) {
        lua_pushboolean(L, 0);
        return p + 5;
    }
    int negative = *p == '-';
    if (negative) p++;
    const char *digits = p;
    long long v = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        if (p - digits >= MAX_DIGITS) return NULL;
        v = v * 10 + (*p - '0');
        p++;
    }
    size_t n = (size_t)(p - digits);
    /* no digits, a leading zero (which cjson refuses), or a fraction or exponent: cjson's to judge */
    if (n == 0 || (n > 1 && *digits == '0')) return NULL;
    if (p < end && (*p == '.' || *p == 'e' || *p == 'E')) return NULL;
    if (negative) v = -v;
#if LUA_VERSION_NUM >= 503
    lua_pushinteger(L, (lua_Integer)v);
#else
    lua_pushnumber(L, (lua_Number)v);
#endif
    return p;
}

/* core.decode_answer(body) -> table | nothing */
static int l_decode_answer(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *end = s + len;
    const char *p = skip_ws(s, end);
    if (p == end || *p != '{') return 0;
    p = skip_ws(p + 1, end);
    lua_settop(L, 1);
    lua_createtable(L, 0, 4);
    if (p < end && *p == '}') {
        p++;
    } else {
        for (;;) {
            if (p == end || *p != '"') return 0;
            p = push_plain_string(L, p + 1, end);
            if (p == NULL) return 0;
            p = skip_ws(p, end);
            if (p == end || *p != ':') return 0;
            p = push_value(L, skip_ws(p + 1, end), end);
            if (p == NULL) return 0;
            lua_rawset(L, 2);
            p = skip_ws(p, end);
            if (p < end && *p == ',') {
                p = skip_ws(p + 1, end);
                continue;
            }
            if (p < end && *p == '}') {
                p++;
                break;
            }
            return 0;
        }
    }
    if (skip_ws(p, end) != end) return 0;
    return 1;
}

static const luaL_Reg answer_funcs[] = {
    {"decode_answer", l_decode_answer},
    {NULL, NULL},
};

void wechat_open_answer(lua_State *L)
{
    wechat_setfuncs(L, answer_funcs);
}
