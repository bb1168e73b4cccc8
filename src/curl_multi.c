/* A libcurl multi handle that runs the transfers of several curl transport handles (wechat.curl) at once, for
 * kf.batch under plain Lua. The Lua side owns the easy handles and decides what runs; this file only adds
 * transfers, drives them and hands back the finished ones. The connection cache belongs to the multi handle, so
 * connections stay alive between batches. */
#include <stdlib.h>
#include <string.h>

#include "curl_transport.h"

#define MULTI_MT "wechat.curl_multi"
#define MAX_TRANSFERS 1024
#define MAX_WAIT_MS 60000

struct wmulti {
    CURLM *multi;        /* NULL once closed */
    int global_ref;
    wcurl *running[MAX_TRANSFERS];
    lua_Integer ids[MAX_TRANSFERS];
    int n;               /* transfers added and not yet handed back */
};
typedef struct wmulti wmulti;

/* Takes c out of m (its transfer is over, or one of them is being closed). */
void wmulti_detach(wmulti *m, wcurl *c)
{
    for (int i = 0; i < m->n; i++) {
        if (m->running[i] == c) {
            /* An error here leaves nothing to undo: the handle is forgotten either way. */
            if (m->multi != NULL) (void)curl_multi_remove_handle(m->multi, c->easy);
            m->n--;
            m->running[i] = m->running[m->n];
            m->ids[i] = m->ids[m->n];
            break;
        }
    }
    c->multi = NULL;
}

static void wmulti_release(wmulti *m)
{
    while (m->n > 0) wmulti_detach(m, m->running[0]);
    if (m->multi != NULL) {
        (void)curl_multi_cleanup(m->multi);
        m->multi = NULL;
    }
    if (m->global_ref) {
        m->global_ref = 0;
        curl_global_cleanup();
    }
}

static wmulti *wmulti_check(lua_State *L)
{
    wmulti *m = luaL_checkudata(L, 1, MULTI_MT);
    if (m->multi == NULL) luaL_error(L, "curl multi handle is closed");
    return m;
}

static int push_multi_error(lua_State *L, const char *what, CURLMcode mc)
{
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", what, curl_multi_strerror(mc));
    return 2;
}

/* core.curl_multi_new() -> multi | nil, message */
static int l_multi_new(lua_State *L)
{
    wmulti *m = lua_newuserdata(L, sizeof *m);
    memset(m, 0, sizeof *m);
    luaL_getmetatable(L, MULTI_MT);
    lua_setmetatable(L, -2);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        lua_pushnil(L);
        lua_pushliteral(L, "curl_global_init failed");
        return 2;
    }
    m->global_ref = 1;
    m->multi = curl_multi_init();
    if (m->multi == NULL) {
        wmulti_release(m);
        lua_pushnil(L);
        lua_pushliteral(L, "curl_multi_init failed");
        return 2;
    }
    return 1;
}

/* multi:limit(n): at most n connections open at once (in use or kept alive), n 1..MAX_TRANSFERS. */
static int l_multi_limit(lua_State *L)
{
    wmulti *m = wmulti_check(L);
    if (!wechat_isinteger(L, 2) || wechat_tointeger(L, 2) < 1 || wechat_tointeger(L, 2) > MAX_TRANSFERS)
        return wechat_argerror(L, "limit", 1, "integer 1..%d expected", MAX_TRANSFERS);
    long n = (long)wechat_tointeger(L, 2);
    CURLMcode mc = curl_multi_setopt(m->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, n);
    if (mc == CURLM_OK) mc = curl_multi_setopt(m->multi, CURLMOPT_MAXCONNECTS, n);
    if (mc != CURLM_OK) return push_multi_error(L, "curl_multi_setopt", mc);
    lua_pushboolean(L, 1);
    return 1;
}

/* multi:add(id, handle, method, url[, body[, fresh]]) -> true | nil, reason, message, false
 * Starts a transfer on handle (a wechat.curl handle not in use); id (an integer) names it in perform's answers.
 * The body is copied: the caller's string may go before the transfer ends. fresh: as for handle:request. */
static int l_multi_add(lua_State *L)
{
    wmulti *m = wmulti_check(L);
    if (!wechat_isinteger(L, 2)) return wechat_argerror(L, "add", 1, "integer id expected");
    lua_Integer id = (lua_Integer)wechat_tointeger(L, 2);
    wcurl *c = wcurl_check_idle(L, 3);
    int post;
    const char *url, *body;
    size_t url_len, body_len;
    /* method, url, body at 4..6: the arguments #3..#5 of add */
    wcurl_check_request(L, "add", 2, &post, &url, &url_len, &body, &body_len);
    if (m->n >= MAX_TRANSFERS) return luaL_error(L, "curl multi handle: more than %d transfers", MAX_TRANSFERS);
    c->fresh = lua_toboolean(L, 7);
    CURLcode rc = wcurl_begin(c, post, url, url_len, body, body_len);
    if (rc == CURLE_OK && post) rc = curl_easy_setopt(c->easy, CURLOPT_COPYPOSTFIELDS, body);
    if (rc == CURLE_OK) rc = curl_easy_setopt(c->easy, CURLOPT_PRIVATE, (void *)c);
    if (rc != CURLE_OK) return wcurl_finish(L, c, rc, 0);
    CURLMcode mc = curl_multi_add_handle(m->multi, c->easy);
    if (mc != CURLM_OK) {
        lua_pushnil(L);
        lua_pushliteral(L, "other");
        lua_pushfstring(L, "curl_multi_add_handle: %s", curl_multi_strerror(mc));
        lua_pushboolean(L, 0);
        return 4;
    }
    c->multi = m;
    m->running[m->n] = c;
    m->ids[m->n] = id;
    m->n++;
    lua_pushboolean(L, 1);
    return 1;
}

/* Moves the values pushed by wcurl_finish (nret of them) into the table below them. */
static void set_result(lua_State *L, int nret)
{
    static const char *const ok_keys[] = {"status", "body", "resent"};
    static const char *const fail_keys[] = {"status", "reason", "message", "resent"};
    const char *const *keys = nret == 3 ? ok_keys : fail_keys;
    for (int k = nret - 1; k >= 0; k--) lua_setfield(L, -2 - k, keys[k]);
}

/* multi:perform(wait) -> { {id =, status =, body =, resent =} | {id =, reason =, message =, resent =}, ... } | nil,
 * message
 * Drives the transfers; waits at most `wait` seconds for one of them to end when none has. The list holds the
 * transfers that ended (possibly none); their handles are free again. */
static int l_multi_perform(lua_State *L)
{
    wmulti *m = wmulti_check(L);
    double wait = luaL_checknumber(L, 2);
    int wait_ms = !(wait > 0) ? 0 : wait * 1000 >= MAX_WAIT_MS ? MAX_WAIT_MS : (int)(wait * 1000 + 0.5);
    lua_newtable(L);
    int done = 0;
    for (int round = 0; round < 2; round++) {
        int running = 0;
        CURLMcode mc = curl_multi_perform(m->multi, &running);
        if (mc != CURLM_OK) return push_multi_error(L, "curl_multi_perform", mc);
        int queued;
        CURLMsg *msg;
        while ((msg = curl_multi_info_read(m->multi, &queued)) != NULL) {
            if (msg->msg != CURLMSG_DONE) continue;
            CURLcode rc = msg->data.result; /* read before the handle leaves the multi: msg goes with it */
            wcurl *c = NULL;
            if (curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c) != CURLE_OK || c == NULL)
                return luaL_error(L, "curl multi handle: a transfer of unknown origin ended");
            lua_Integer id = 0;
            for (int i = 0; i < m->n; i++)
                if (m->running[i] == c) id = m->ids[i];
            lua_createtable(L, 0, 5);
            lua_pushinteger(L, id);
            lua_setfield(L, -2, "id");
            /* finished while still in the multi handle: only there can libcurl tell whether the connection stays */
            set_result(L, wcurl_finish(L, c, rc, 1));
            wmulti_detach(m, c);
            lua_rawseti(L, -2, ++done);
        }
        if (done > 0 || m->n == 0 || round == 1 || wait_ms == 0) break;
        mc = curl_multi_poll(m->multi, NULL, 0, wait_ms, NULL);
        if (mc != CURLM_OK) return push_multi_error(L, "curl_multi_poll", mc);
    }
    return 1;
}

/* multi:abort(): ends every transfer under way without an answer (a batch that raised). */
static int l_multi_abort(lua_State *L)
{
    wmulti *m = wmulti_check(L);
    while (m->n > 0) {
        wcurl *c = m->running[0];
        wmulti_detach(m, c);
        lua_settop(L, 1);
        (void)wcurl_finish(L, c, CURLE_ABORTED_BY_CALLBACK, 1);
    }
    return 0;
}

/* multi:running() -> the number of transfers added and not yet handed back by perform */
static int l_multi_running(lua_State *L)
{
    wmulti *m = wmulti_check(L);
    lua_pushinteger(L, m->n);
    return 1;
}

static int l_multi_close(lua_State *L)
{
    wmulti *m = luaL_checkudata(L, 1, MULTI_MT);
    wmulti_release(m);
    return 0;
}

static const luaL_Reg multi_methods[] = {
    {"limit", l_multi_limit},
    {"add", l_multi_add},
    {"perform", l_multi_perform},
    {"abort", l_multi_abort},
    {"running", l_multi_running},
    {"close", l_multi_close},
    {NULL, NULL},
};

static const luaL_Reg multi_funcs[] = {
    {"curl_multi_new", l_multi_new},
    {NULL, NULL},
};

void wechat_open_curl_multi(lua_State *L)
{
    if (luaL_newmetatable(L, MULTI_MT)) {
        lua_newtable(L);
        wechat_setfuncs(L, multi_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_multi_close);
        lua_setfield(L, -2, "__gc");
#if LUA_VERSION_NUM >= 504
        lua_pushcfunction(L, l_multi_close);
        lua_setfield(L, -2, "__close");
#endif
        lua_pushliteral(L, MULTI_MT);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    wechat_setfuncs(L, multi_funcs);
}
