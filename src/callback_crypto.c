#include "wechat_core.h"

void wechat_open_crypto(lua_State *L)
{
    (void)L;
}
