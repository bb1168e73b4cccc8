/* Preloaded after the sanitizer runtime by tools/sanitize, into the Lua interpreter that runs busted.
 *
 * It takes LD_PRELOAD out of the environment once the process has started, so the programs the specs start (sh,
 * nginx, redis-server, openssl, curl) run without the sanitizer runtime: only the interpreter that loads the
 * instrumented wechat.core is checked, and a leak report from /bin/sh cannot fail a spec's os.execute.
 *
 * And it makes dlclose a no-op. lua_close unloads C modules before LeakSanitizer looks at the heap at exit; a
 * leak's stack would then show "<unknown module>" where wechat/core.so was, and nothing could tell the module's
 * leaks from anyone else's. */
#include <stdlib.h>

__attribute__((constructor)) static void unpreload(void)
{
    unsetenv("LD_PRELOAD");
}

int dlclose(void *handle)
{
    (void)handle;
    return 0;
}
