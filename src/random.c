/* Random bytes from OpenSSL's CSPRNG (RAND_bytes), for lock tokens, callback reply nonces and multipart
 * boundaries: unlike math.random,
 * never the same sequence in two nginx workers or two processes started at the same second. */
#include <openssl/rand.h>

#include "wechat_core.h"

/* Longest draw, in bytes: tokens and nonces need a few dozen; a bound keeps the buffers on the C stack. */
#define WECHAT_RANDOM_MAX 256

static size_t random_count(lua_State *L, const char *fname)
{
    if (lua_type(L, 1) != LUA_TNUMBER)
        wechat_argerror(L, fname, 1, "number expected, got %s", luaL_typename(L, 1));
    lua_Number n = lua_tonumber(L, 1);
    if (!(n >= 1 && n <= WECHAT_RANDOM_MAX) || n != (lua_Number)(int)n)
        wechat_argerror(L, fname, 1, "integer from 1 to %d expected", WECHAT_RANDOM_MAX);
    return (size_t)n;
}

static void random_fill(lua_State *L, const char *fname, unsigned char *buf, size_t n)
{
    if (RAND_bytes(buf, (int)n) != 1) luaL_error(L, "%s: OpenSSL RAND_bytes failed", fname);
}

void wechat_random_hex(lua_State *L, const char *fname, char *out, size_t n)
{
    unsigned char buf[WECHAT_RANDOM_MAX];
    if (n > WECHAT_RANDOM_MAX) luaL_error(L, "%s: at most %d random bytes at once", fname, WECHAT_RANDOM_MAX);
    random_fill(L, fname, buf, n);
    wechat_hex(out, buf, n);
}

/* core.random_bytes(n) -> n random bytes (1 <= n <= 256); raises when OpenSSL has no randomness to give. */
static int l_random_bytes(lua_State *L)
{
    unsigned char buf[WECHAT_RANDOM_MAX];
    size_t n = random_count(L, "random_bytes");
    random_fill(L, "random_bytes", buf, n);
    lua_pushlstring(L, (const char *)buf, n);
    return 1;
}

/* core.random_hex(n) -> n random bytes as 2n lowercase hex digits; raises like random_bytes. */
static int l_random_hex(lua_State *L)
{
    char hex[2 * WECHAT_RANDOM_MAX];
    size_t n = random_count(L, "random_hex");
    wechat_random_hex(L, "random_hex", hex, n);
    lua_pushlstring(L, hex, 2 * n);
    return 1;
}

static const luaL_Reg random_funcs[] = {
    {"random_bytes", l_random_bytes},
    {"random_hex", l_random_hex},
    {NULL, NULL},
};

void wechat_open_random(lua_State *L)
{
    wechat_setfuncs(L, random_funcs);
}
