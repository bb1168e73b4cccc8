/* Random bytes from OpenSSL's CSPRNG (RAND_bytes), for msgids, lock tokens, callback reply nonces and multipart
 * boundaries: unlike math.random, never the same sequence in two nginx workers or two processes started at the same
 * second. The one source of random bytes in core. */
/* mmap's MAP_ANONYMOUS and madvise's MADV_WIPEONFORK are not in POSIX 2008 */
#define _DEFAULT_SOURCE
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "wechat_core.h"

/* Longest draw, in bytes: tokens and nonces need a few dozen; a bound keeps the buffers on the C stack. */
#define WECHAT_RANDOM_MAX 256

/* Bytes are drawn from OpenSSL a pool at a time: one RAND_bytes call costs about 2 us, ten times a whole body, and
 * every send makes a msgid by default. One pool per Lua state (a userdata in its registry, so no C global). A
 * forked process (nginx workers of one master) must never hand out its parent's bytes: the pool lives in a page the
 * kernel zeroes in the child (MADV_WIPEONFORK, Linux 4.14), so `ready` reads 0 there; where that is not available,
 * the pid is compared on every draw instead (a system call, ~0.7 us here). */
#define RANDOM_POOL 4000
typedef struct random_pool {
    int ready;
    pid_t pid;
    size_t used;
    unsigned char bytes[RANDOM_POOL];
} random_pool;

typedef struct random_box {
    random_pool *r; /* an mmap'd page, or malloc'd when mmap fails; NULL after __gc */
    int mapped;
    int wipes; /* the kernel zeroes *r in a child */
} random_box;

/* Its address is the registry key: no string lookup on every msgid. */
static const char RANDOM_KEY = 0;

static int random_gc(lua_State *L)
{
    random_box *box = (random_box *)lua_touserdata(L, 1);
    if (box != NULL && box->r != NULL) {
        OPENSSL_cleanse(box->r, sizeof *box->r);
        if (box->mapped)
            (void)munmap(box->r, sizeof *box->r);
        else
            free(box->r);
        box->r = NULL;
    }
    return 0;
}

static random_box *random_pool_of(lua_State *L)
{
    luaL_checkstack(L, 4, "wechat.core: random");
    lua_pushlightuserdata(L, (void *)&RANDOM_KEY);
    lua_rawget(L, LUA_REGISTRYINDEX);
    random_box *box = (random_box *)lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (box != NULL) return box;
    lua_pushlightuserdata(L, (void *)&RANDOM_KEY);
    box = (random_box *)lua_newuserdata(L, sizeof *box);
    box->r = NULL;
    box->mapped = box->wipes = 0;
    lua_newtable(L);
    lua_pushcfunction(L, random_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    void *page = mmap(NULL, sizeof(random_pool), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page != MAP_FAILED) {
        box->r = (random_pool *)page;
        box->mapped = 1;
#ifdef MADV_WIPEONFORK
        box->wipes = madvise(page, sizeof(random_pool), MADV_WIPEONFORK) == 0;
#endif
    } else {
        box->r = (random_pool *)malloc(sizeof(random_pool));
        if (box->r == NULL) luaL_error(L, "wechat.core: not enough memory for random bytes");
    }
    box->r->ready = 0;
    lua_rawset(L, LUA_REGISTRYINDEX); /* the registry keeps it: box stays valid */
    return box;
}

int wechat_random_take(lua_State *L, unsigned char *out, size_t n)
{
    if (n > WECHAT_RANDOM_MAX) return 0;
    random_box *box = random_pool_of(L);
    random_pool *r = box->r;
    pid_t pid = box->wipes ? 0 : getpid();
    if (!r->ready || r->pid != pid || RANDOM_POOL - r->used < n) {
        r->ready = 0;
        if (RAND_bytes(r->bytes, RANDOM_POOL) != 1) return 0;
        r->ready = 1;
        r->pid = pid;
        r->used = 0;
    }
    memcpy(out, r->bytes + r->used, n);
    /* handed out once: nothing of a draw stays behind to be read again */
    OPENSSL_cleanse(r->bytes + r->used, n);
    r->used += n;
    return 1;
}

static size_t random_count(lua_State *L, const char *fname)
{
    if (lua_type(L, 1) != LUA_TNUMBER)
        wechat_argerror(L, fname, 1, "number expected, got %s", luaL_typename(L, 1));
    lua_Number n = lua_tonumber(L, 1);
    if (!(n >= 1 && n <= WECHAT_RANDOM_MAX) || n != (lua_Number)(int)n)
        wechat_argerror(L, fname, 1, "integer from 1 to %d expected", WECHAT_RANDOM_MAX);
    return (size_t)n;
}

void wechat_random_fill(lua_State *L, const char *fname, unsigned char *out, size_t n)
{
    if (n > WECHAT_RANDOM_MAX) luaL_error(L, "%s: at most %d random bytes at once", fname, WECHAT_RANDOM_MAX);
    if (!wechat_random_take(L, out, n)) luaL_error(L, "%s: OpenSSL RAND_bytes failed", fname);
}

void wechat_random_hex(lua_State *L, const char *fname, char *out, size_t n)
{
    unsigned char buf[WECHAT_RANDOM_MAX];
    if (n > WECHAT_RANDOM_MAX) luaL_error(L, "%s: at most %d random bytes at once", fname, WECHAT_RANDOM_MAX);
    wechat_random_fill(L, fname, buf, n);
    wechat_hex(out, buf, n);
    OPENSSL_cleanse(buf, n);
}

/* core.random_bytes(n) -> n random bytes (1 <= n <= 256); raises when OpenSSL has no randomness to give. */
static int l_random_bytes(lua_State *L)
{
    unsigned char buf[WECHAT_RANDOM_MAX];
    size_t n = random_count(L, "random_bytes");
    wechat_random_fill(L, "random_bytes", buf, n);
    lua_pushlstring(L, (const char *)buf, n);
    OPENSSL_cleanse(buf, n);
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
