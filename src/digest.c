/* SHA-1 in lowercase hex: token store keys are sha1(corpid .. secret), so a store never holds a secret. */
#include <openssl/evp.h>

#include "wechat_core.h"

/* core.sha1_hex(s) -> 40 lowercase hex characters */
static int l_sha1_hex(lua_State *L)
{
    if (lua_type(L, 1) != LUA_TSTRING)
        return wechat_argerror(L, "sha1_hex", 1, "string expected, got %s", luaL_typename(L, 1));
    size_t len;
    const char *s = lua_tolstring(L, 1, &len);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    const EVP_MD *sha1 = EVP_sha1();
    if (sha1 == NULL || EVP_Digest(s, len, md, &md_len, sha1, NULL) != 1 || md_len != 20)
        return luaL_error(L, "sha1_hex: OpenSSL SHA-1 failed");
    char hex[40];
    wechat_hex(hex, md, 20);
    lua_pushlstring(L, hex, sizeof hex);
    return 1;
}

static const luaL_Reg digest_funcs[] = {
    {"sha1_hex", l_sha1_hex},
    {NULL, NULL},
};

void wechat_open_digest(lua_State *L)
{
    wechat_setfuncs(L, digest_funcs);
}
