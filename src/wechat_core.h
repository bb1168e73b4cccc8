/* Declarations shared by the parts of wechat.core. */
#ifndef WECHAT_CORE_H
#define WECHAT_CORE_H

#include "compat.h"

/* The one exported symbol. */
__attribute__((visibility("default"))) int luaopen_wechat_core(lua_State *L);

/* Everything else the parts share stays inside core.so whatever the build passes (CMake adds
 * -fvisibility=hidden too; a plain luarocks build does not): another module loaded into the same process must
 * never bind to these names, nor these to its. After the Lua headers, so that only our own names are hidden. */
#pragma GCC visibility push(hidden)

/* Each part adds its functions to the module table on top of the stack. */

void wechat_open_bodies(lua_State *L);
void wechat_open_family_bodies(lua_State *L);
void wechat_open_curl(lua_State *L);
void wechat_open_curl_multi(lua_State *L);
void wechat_open_answer(lua_State *L);
void wechat_open_curl_media(lua_State *L);
void wechat_open_multipart(lua_State *L);
void wechat_open_digest(lua_State *L);
void wechat_open_crypto(lua_State *L);
void wechat_open_random(lua_State *L);

/* Raises "POSITION: bad argument #argn to 'fname' (message)", like luaL_argerror, but with the public name of the
 * operation whatever the call site looked like (a table lookup, a tail call, LuaJIT or 5.4). */
int wechat_argerror(lua_State *L, const char *fname, int argn, const char *fmt, ...);

/* A character WeCom allows in a msgid or a contact way's scene: [0-9a-zA-Z_-]. */
int wechat_id_char(unsigned char ch);

/* Whether the table at idx has exactly the keys 1..n (n = its raw length), with nothing else: a sequence. Needs 2
 * free stack slots; leaves the stack as it was. */
int wechat_is_sequence(lua_State *L, int idx, size_t n);

/* Writes 2n lowercase hex digits of in[0..n) to out (no NUL). */
void wechat_hex(char *out, const unsigned char *in, size_t n);

/* Random bytes (OpenSSL's CSPRNG through a per-state pool that a forked child never shares; n <= 256), the one
 * source of them in core. take: 1, or 0 when OpenSSL has none to give (or n is too large). fill raises "fname: ..."
 * then instead; hex writes 2n lowercase hex digits to out (no NUL) and raises alike. */
int wechat_random_take(lua_State *L, unsigned char *out, size_t n);
void wechat_random_fill(lua_State *L, const char *fname, unsigned char *out, size_t n);
void wechat_random_hex(lua_State *L, const char *fname, char *out, size_t n);

#pragma GCC visibility pop

#endif
