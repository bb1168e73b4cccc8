#include "wechat_core.h"

void wechat_open_digest(lua_State *L)
{
    (void)L;
}
