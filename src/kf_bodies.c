#include "wechat_core.h"

void wechat_open_bodies(lua_State *L)
{
    (void)L;
}
