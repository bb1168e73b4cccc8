-- luarocks --lua-version 5.4 make                                         (Lua 5.4, luarocks.org at hand)
-- luarocks --lua-version 5.4 make --deps-mode none                        (offline, Debian's lua-cjson/lua-expat)
-- luarocks --lua-version 5.1 make --deps-mode none LUA_INCDIR=/usr/include/luajit-2.1   (LuaJIT / OpenResty)
-- Add `--tree DIR` to install somewhere else than the system tree. tools/install-check runs the offline commands
-- with CFLAGS="-O2 -fPIC -fvisibility=hidden -Wall -Wextra -Werror" (CMake's flags) and checks that core.so
-- exports luaopen_wechat_core only. Debian's luarocks does not count Debian's Lua packages as installed rocks:
-- there `--deps-mode none` keeps it from downloading the dependencies below (see README, Install).
rockspec_format = "3.0"
package = "lua-wechat-work"
version = "0.1.0-1"
source = {
  url = "git+https://example.invalid/lua-wechat-work.git",
  tag = "v0.1.0",
}
description = {
  summary = "WeCom (企业微信) customer service (微信客服, KF) client for Lua 5.4 and OpenResty",
  detailed = [[
Every operation of WeCom's KF message API (send_msg of every type, send_msg_on_event, sync_msg) with bodies
written and checked in C, a cached access token, a libcurl transport for Lua 5.4 and a cosocket transport
for OpenResty.]],
  license = "MIT",
  labels = { "wechat", "wecom", "openresty" },
}
dependencies = {
  "lua >= 5.1, < 5.5",
  "lua-cjson",
  "luaexpat",
}
-- CURL by its library, not curl/curl.h: Debian keeps that header in the multiarch directory
-- (/usr/include/x86_64-linux-gnu), where luarocks does not look for headers but does look for libraries.
-- libcurl.so comes with the -dev package, the compiler finds the header by itself.
external_dependencies = {
  CURL = { library = "curl" },
  OPENSSL = { header = "openssl/evp.h", library = "crypto" },
}
build = {
  type = "builtin",
  modules = {
    ["wechat.core"] = {
      sources = {
        "src/wechat_core.c", "src/kf_bodies.c", "src/kf_family_bodies.c", "src/json_writer.c", "src/json_answer.c",
        "src/curl_transport.c", "src/curl_direct.c", "src/http_answer.c", "src/curl_multi.c", "src/curl_media.c",
        "src/multipart.c", "src/digest.c", "src/callback_crypto.c", "src/random.c",
      },
      defines = { "_POSIX_C_SOURCE=200809L" },
      libraries = { "curl", "crypto" },
      incdirs = { "$(CURL_INCDIR)", "$(OPENSSL_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(OPENSSL_LIBDIR)" },
    },
    ["wechat.work"] = "lua/wechat/work.lua",
    ["wechat.work.errors"] = "lua/wechat/work/errors.lua",
    ["wechat.work.store.memory"] = "lua/wechat/work/store/memory.lua",
    ["wechat.work.transport.curl"] = "lua/wechat/work/transport/curl.lua",
    ["wechat.work.transport.cosocket"] = "lua/wechat/work/transport/cosocket.lua",
    ["wechat.work.transport.request"] = "lua/wechat/work/transport/request.lua",
    ["wechat.work.store.shared_dict"] = "lua/wechat/work/store/shared_dict.lua",
    ["wechat.work.kf"] = "lua/wechat/work/kf/init.lua",
    ["wechat.work.material"] = "lua/wechat/work/material.lua",
    ["wechat.work.kf.message"] = "lua/wechat/work/kf/message.lua",
    ["wechat.work.kf.batch"] = "lua/wechat/work/kf/batch.lua",
    ["wechat.work.kf.menu"] = "lua/wechat/work/kf/menu.lua",
    ["wechat.work.kf.link"] = "lua/wechat/work/kf/link.lua",
    ["wechat.work.callback"] = "lua/wechat/work/callback.lua",
    ["wechat.work.callback.testing"] = "lua/wechat/work/callback/testing.lua",
    ["wechat.work.kf.sync"] = "lua/wechat/work/kf/sync.lua",
    ["wechat.work.store.redis"] = "lua/wechat/work/store/redis.lua",
    ["wechat.work.kf.window"] = "lua/wechat/work/kf/window.lua",
    ["wechat.work.kf.window.rules"] = "lua/wechat/work/kf/window/rules.lua",
    ["wechat.work.kf.window.memory"] = "lua/wechat/work/kf/window/memory.lua",
    ["wechat.work.kf.window.shared_dict"] = "lua/wechat/work/kf/window/shared_dict.lua",
    ["wechat.work.kf.window.redis"] = "lua/wechat/work/kf/window/redis.lua",
    ["wechat.work.store.redis.connection"] = "lua/wechat/work/store/redis/connection.lua",
    ["wechat.work.nginx"] = "lua/wechat/work/nginx.lua",
    ["wechat.work.kf.operations"] = "lua/wechat/work/kf/operations.lua",
    ["wechat.work.kf.account"] = "lua/wechat/work/kf/account.lua",
    ["wechat.work.kf.servicer"] = "lua/wechat/work/kf/servicer.lua",
    ["wechat.work.kf.service_state"] = "lua/wechat/work/kf/service_state.lua",
    ["wechat.work.kf.customer"] = "lua/wechat/work/kf/customer.lua",
    ["wechat.work.kf.statistic"] = "lua/wechat/work/kf/statistic.lua",
  },
}
