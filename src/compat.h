/* The few differences between Lua 5.1/LuaJIT and Lua 5.4 that wechat.core meets. */
#ifndef WECHAT_COMPAT_H
#define WECHAT_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM < 502
#define wechat_rawlen(L, i) lua_objlen((L), (i))
/* lua_rawgeti's index type: an int here, so a caller checks a larger index against INT_MAX first. */
typedef int wechat_rawindex;
#define wechat_setfuncs(L, l) luaL_register((L), NULL, (l))
#define wechat_newlib(L, l) (lua_newtable(L), luaL_register((L), NULL, (l)))
/* LuaJIT's lua_Integer is ptrdiff_t; a double holding an integer is written as one. */
static inline int wechat_isinteger(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TNUMBER) return 0;
    lua_Number n = lua_tonumber(L, idx);
    return n >= -9007199254740992.0 && n <= 9007199254740992.0 && (lua_Number)(long long)n == n;
}
#define wechat_tointeger(L, i) ((long long)lua_tonumber((L), (i)))
static inline void *wechat_testudata(lua_State *L, int idx, const char *tname)
{
    void *p = lua_touserdata(L, idx);
    if (p == NULL || !lua_getmetatable(L, idx)) return NULL;
    luaL_getmetatable(L, tname);
    int same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return same ? p : NULL;
}
#else
#define wechat_rawlen(L, i) lua_rawlen((L), (i))
typedef lua_Integer wechat_rawindex;
#define wechat_setfuncs(L, l) luaL_setfuncs((L), (l), 0)
#define wechat_newlib(L, l) luaL_newlib((L), (l))
#define wechat_isinteger(L, i) lua_isinteger((L), (i))
#define wechat_tointeger(L, i) ((long long)lua_tointeger((L), (i)))
#define wechat_testudata(L, i, t) luaL_testudata((L), (i), (t))
#endif

#endif
