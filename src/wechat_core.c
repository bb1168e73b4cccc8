/* wechat.core: the C half of lua-wechat-work. Pure functions (bodies, digests, crypto) and the libcurl
 * transport; no global mutable state, so two clients never share anything by accident. */
#include <stdarg.h>

#include "wechat_core.h"

int wechat_argerror(lua_State *L, const char *fname, int argn, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    return luaL_error(L, "bad argument #%d to '%s' (%s)", argn, fname, lua_tostring(L, -1));
}

int luaopen_wechat_core(lua_State *L)
{
    lua_newtable(L);
    wechat_open_bodies(L);
    wechat_open_curl(L);
    wechat_open_digest(L);
    wechat_open_crypto(L);
    lua_pushliteral(L, "0.1.0");
    lua_setfield(L, -2, "_VERSION");
    return 1;
}
