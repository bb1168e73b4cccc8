#include "wechat_core.h"
