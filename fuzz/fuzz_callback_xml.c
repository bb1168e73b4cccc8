/* Fuzz target: the callback XML, through the Lua module wechat.work.callback (expat via lxp) and the C crypto.
 *
 * Input: byte 0 picks the mode (0: the outer body WeCom posts, signed over its Encrypt; 1: the decrypted event XML,
 * sealed with a fixed key and opened again by decrypt_event; 2: the URL check's echostr), then 16 bytes of
 * random16 for the envelope, then the data. The rules are checked by fuzz/callback_driver.lua; any rule broken or
 * any error raised is a finding. Lua line coverage guides the fuzzer through the Lua module too. */
#include <stdio.h>
#include <string.h>

#include "harness.h"

static lua_State *L;
static int driver;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    L = fz_newstate();
    fz_lua_coverage(L);
    lua_pushfstring(L, "%s/fuzz/callback_driver.lua", fz_root());
    if (luaL_loadfile(L, lua_tostring(L, -1)) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK)
        fz_die("loading the driver: %s", lua_tostring(L, -1));
    if (lua_type(L, -1) != LUA_TFUNCTION) fz_die("the driver did not return a function");
    driver = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, 0);
    /* see fuzz_response.c: no garbage left for libFuzzer's leak check to chase */
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_reader r = {data, size};
    uint8_t mode = fz_u8(&r) % 3;
    char random16[16] = {0};
    const uint8_t *p;
    size_t k = fz_take(&r, sizeof random16, &p);
    memcpy(random16, p, k);
    size_t dlen = fz_take(&r, r.n, &p);

    lua_rawgeti(L, LUA_REGISTRYINDEX, driver);
    lua_pushinteger(L, mode);
    lua_pushlstring(L, (const char *)p, dlen);
    lua_pushlstring(L, random16, sizeof random16);
    if (lua_pcall(L, 3, 1, 0) != LUA_OK) {
        fz_dump("data", (const char *)p, dlen, 4096);
        fz_die("the driver raised (mode %d): %s", mode, lua_tostring(L, -1));
    }
    if (!lua_isnil(L, -1)) {
        fz_dump("data", (const char *)p, dlen, 4096);
        fz_die("mode %d: %s", mode, lua_tostring(L, -1));
    }
    lua_settop(L, 0);
    /* see fuzz_response.c: no garbage left for libFuzzer's leak check to chase */
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
