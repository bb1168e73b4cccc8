/* Declarations shared by the parts of wechat.core. */
#ifndef WECHAT_CORE_H
#define WECHAT_CORE_H

#include "compat.h"

/* Each part adds its functions to the module table on top of the stack. */
__attribute__((visibility("default"))) int luaopen_wechat_core(lua_State *L);

void wechat_open_bodies(lua_State *L);
void wechat_open_family_bodies(lua_State *L);
void wechat_open_curl(lua_State *L);
void wechat_open_digest(lua_State *L);
void wechat_open_crypto(lua_State *L);

/* Raises "POSITION: bad argument #argn to 'fname' (message)", like luaL_argerror, but with the public name of the
 * operation whatever the call site looked like (a table lookup, a tail call, LuaJIT or 5.4). */
int wechat_argerror(lua_State *L, const char *fname, int argn, const char *fmt, ...);

#endif
