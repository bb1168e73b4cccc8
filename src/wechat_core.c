/* wechat.core: the C half of lua-wechat-work. Pure functions (bodies, digests, crypto) and the libcurl
 * transport; no global mutable state, so two clients never share anything by accident. */
#include <stdarg.h>

#include "wechat_core.h"

int wechat_argerror(lua_State *L, const char *fname, int argn, const char *fmt, ...)
{
    va_list ap;
    /* Level 2: the builder is called by the public Lua function, so the position that helps is its caller's. */
    luaL_where(L, 2);
    lua_pushfstring(L, "bad argument #%d to '%s' (", argn, fname);
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_pushliteral(L, ")");
    lua_concat(L, 4);
    return lua_error(L);
}

int wechat_id_char(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
           ch == '-';
}

int wechat_is_sequence(lua_State *L, int idx, size_t n)
{
    size_t count = 0;
    if (idx < 0 && idx > LUA_REGISTRYINDEX) idx = lua_gettop(L) + idx + 1;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        long long k;
        lua_pop(L, 1);
        if (!wechat_isinteger(L, -1) || (k = wechat_tointeger(L, -1)) < 1 || (size_t)k > n) {
            lua_pop(L, 1);
            return 0;
        }
        count++;
    }
    return count == n;
}

void wechat_hex(char *out, const unsigned char *in, size_t n)
{
    static const char HEX[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = HEX[in[i] >> 4];
        out[2 * i + 1] = HEX[in[i] & 0x0f];
    }
}

int luaopen_wechat_core(lua_State *L)
{
    lua_newtable(L);
    wechat_open_bodies(L);
    wechat_open_family_bodies(L);
    wechat_open_curl(L);
    wechat_open_curl_multi(L);
    wechat_open_answer(L);
    wechat_open_curl_media(L);
    wechat_open_multipart(L);
    wechat_open_digest(L);
    wechat_open_crypto(L);
    wechat_open_random(L);
    lua_pushliteral(L, "0.1.0");
    lua_setfield(L, -2, "_VERSION");
    return 1;
}
