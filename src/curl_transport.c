#include "wechat_core.h"

void wechat_open_curl(lua_State *L)
{
    (void)L;
}
