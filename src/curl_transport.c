/* The libcurl transport: one easy handle per userdata, reused for every request so libcurl keeps the
 * connection to the API host alive between requests. Blocking I/O: for plain Lua, never for OpenResty handlers
 * (they use the cosocket transport). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "curl_transport.h"

#define DEFAULT_TIMEOUT 10.0
#define MAX_TIMEOUT 86400.0
#define DEFAULT_MAX_RESPONSE (4 * 1024 * 1024)
#define MAX_MAX_RESPONSE (1024 * 1024 * 1024)
#define MIN_BUFFER 16384
/* A buffer grown past this for one large answer is given back, so an idle transport stays small. */
#define KEEP_BUFFER (1024 * 1024)
static void wcurl_forget_url(wcurl_url *u)
{
    wdirect_forget_url(u);
    curl_url_cleanup(u->parsed);
    u->parsed = NULL;
    free(u->text);
    u->text = NULL;
    u->len = 0;
}

static void wcurl_release(wcurl *c)
{
    if (c->multi != NULL) wmulti_detach(c->multi, c);
    wdirect_release(c);
    if (c->easy != NULL) {
        curl_easy_cleanup(c->easy);
        c->easy = NULL;
    }
    /* After the easy handle, which may point at one of them. */
    for (int i = 0; i < URL_CACHE; i++) wcurl_forget_url(&c->urls[i]);
    curl_slist_free_all(c->post_headers);
    c->post_headers = NULL;
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
    free(c->user_agent);
    free(c->cafile);
    c->user_agent = c->cafile = NULL;
    if (c->global_ref) {
        c->global_ref = 0;
        curl_global_cleanup();
    }
}

size_t wcurl_take_body(wcurl *c, const char *data, size_t n)
{
    if (n == 0) return 0;
    if (n > c->max_response - c->len) {
        c->too_large = 1;
        return 0;
    }
    if (c->len + n > c->cap) {
        size_t want = c->len + n;
        size_t cap = c->cap < MIN_BUFFER ? MIN_BUFFER : c->cap;
        while (cap < want) cap = cap > c->max_response / 2 ? c->max_response : cap * 2;
        if (cap > c->max_response) cap = c->max_response;
        char *p = realloc(c->buf, cap);
        if (p == NULL) {
            c->no_memory = 1;
            return 0;
        }
        c->buf = p;
        c->cap = cap;
    }
    memcpy(c->buf + c->len, data, n);
    c->len += n;
    return n;
}

/* Runs inside curl_easy_perform: raising here would longjmp across libcurl, so trouble is recorded and the
 * transfer stopped by returning a short count. */
static size_t wcurl_write(char *data, size_t size, size_t nmemb, void *ud)
{
    return wcurl_take_body(ud, data, size * nmemb);
}

void wcurl_shrink(wcurl *c)
{
    if (c->cap > KEEP_BUFFER) {
        free(c->buf);
        c->buf = NULL;
        c->cap = 0;
    }
}

static wcurl *wcurl_check(lua_State *L)
{
    wcurl *c = luaL_checkudata(L, 1, CURL_MT);
    if (c->easy == NULL) luaL_error(L, "curl transport is closed");
    return c;
}

wcurl *wcurl_check_idle(lua_State *L, int idx)
{
    wcurl *c = luaL_checkudata(L, idx, CURL_MT);
    if (c->easy == NULL) luaL_error(L, "curl transport is closed");
    if (c->multi != NULL) luaL_error(L, "curl handle is busy in a batch");
    return c;
}

/* --- options ----------------------------------------------------------------------------------------- */

static double opt_seconds(lua_State *L, const char *key, double dflt)
{
    lua_getfield(L, 1, key);
    double v = dflt;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER)
            wechat_argerror(L, "curl_new", 1, "opts.%s: number of seconds expected, got %s", key,
                            luaL_typename(L, -1));
        v = lua_tonumber(L, -1);
        if (!(v > 0 && v <= MAX_TIMEOUT))
            wechat_argerror(L, "curl_new", 1, "opts.%s: must be > 0 and <= %d seconds, got %s", key,
                            (int)MAX_TIMEOUT, lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    return v;
}

static const char *opt_string(lua_State *L, const char *key)
{
    lua_getfield(L, 1, key);
    const char *s = NULL;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            wechat_argerror(L, "curl_new", 1, "opts.%s: string expected, got %s", key, luaL_typename(L, -1));
        size_t len;
        s = lua_tolstring(L, -1, &len);
        if (strlen(s) != len || len == 0)
            wechat_argerror(L, "curl_new", 1, "opts.%s: must be a non-empty string without NUL bytes", key);
    }
    /* Kept alive by the opts table, which stays on the stack until curl_new returns; libcurl copies it. */
    lua_pop(L, 1);
    return s;
}

static const char *const KNOWN_OPTS[] = {
    "timeout", "connect_timeout", "cafile", "ssl_verify", "max_response", "user_agent", NULL,
};

static void opt_check_keys(lua_State *L)
{
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        int known = 0;
        if (lua_type(L, -1) == LUA_TSTRING) {
            const char *k = lua_tostring(L, -1);
            for (int i = 0; KNOWN_OPTS[i] != NULL; i++)
                if (strcmp(k, KNOWN_OPTS[i]) == 0) known = 1;
        }
        if (!known) {
            if (lua_type(L, -1) == LUA_TSTRING)
                wechat_argerror(L, "curl_new", 1, "opts: unknown option '%s'", lua_tostring(L, -1));
            wechat_argerror(L, "curl_new", 1, "opts: unknown option of type %s", luaL_typename(L, -1));
        }
    }
}

/* --- shared with the media transfers (curl_media.c) ------------------------------------------------------ */

CURLcode wcurl_common_opts(CURL *easy, char *errbuf, const char *user_agent, int ssl_verify, const char *cafile,
                           double connect_timeout)
{
    CURLcode rc = curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf);
    if (rc == CURLE_OK) rc = curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    if (rc == CURLE_OK) rc = curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 1L);
    if (rc == CURLE_OK) rc = curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
    if (rc == CURLE_OK) rc = curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    if (rc == CURLE_OK) rc = curl_easy_setopt(easy, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    if (rc == CURLE_OK) rc = curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long)(connect_timeout * 1000.0 + 0.5));
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(easy, CURLOPT_USERAGENT, user_agent != NULL ? user_agent : WCURL_USER_AGENT);
    if (rc == CURLE_OK) rc = curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, ssl_verify ? 1L : 0L);
    if (rc == CURLE_OK) rc = curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, ssl_verify ? 2L : 0L);
    if (rc == CURLE_OK && cafile != NULL) rc = curl_easy_setopt(easy, CURLOPT_CAINFO, cafile);
    return rc;
}

/* --- constructor --------------------------------------------------------------------------------------- */

#define SETOPT(c, opt, val)                                                                                 \
    do {                                                                                                    \
        if (curl_easy_setopt((c)->easy, (opt), (val)) != CURLE_OK) {                                        \
            failed = #opt;                                                                                  \
            goto fail;                                                                                      \
        }                                                                                                   \
    } while (0)

/* core.curl_new([opts]) -> handle | nil, message */
static int l_curl_new(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    } else if (lua_type(L, 1) != LUA_TTABLE) {
        return wechat_argerror(L, "curl_new", 1, "table expected, got %s", luaL_typename(L, 1));
    }
    lua_settop(L, 1);
    opt_check_keys(L);

    double timeout = opt_seconds(L, "timeout", DEFAULT_TIMEOUT);
    double connect_timeout = opt_seconds(L, "connect_timeout", timeout);
    const char *cafile = opt_string(L, "cafile");
    const char *user_agent = opt_string(L, "user_agent");

    int ssl_verify = 1;
    lua_getfield(L, 1, "ssl_verify");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TBOOLEAN)
            return wechat_argerror(L, "curl_new", 1, "opts.ssl_verify: boolean expected, got %s",
                                   luaL_typename(L, -1));
        ssl_verify = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);

    size_t max_response = DEFAULT_MAX_RESPONSE;
    lua_getfield(L, 1, "max_response");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER)
            return wechat_argerror(L, "curl_new", 1, "opts.max_response: integer expected, got %s",
                                   luaL_typename(L, -1));
        if (!wechat_isinteger(L, -1) || wechat_tointeger(L, -1) < 1 || wechat_tointeger(L, -1) > MAX_MAX_RESPONSE)
            return wechat_argerror(L, "curl_new", 1, "opts.max_response: must be an integer 1..%d, got %s",
                                   MAX_MAX_RESPONSE, lua_tostring(L, -1));
        long long v = wechat_tointeger(L, -1);
        max_response = (size_t)v;
    }
    lua_pop(L, 1);

    wcurl *c = lua_newuserdata(L, sizeof *c);
    memset(c, 0, sizeof *c);
    c->max_response = max_response;
    c->direct.sock = CURL_SOCKET_BAD;
    c->ssl_verify = ssl_verify;
    c->timeout_ms = (long long)(timeout * 1000.0 + 0.5);
    c->connect_timeout = connect_timeout;
    /* The metatable goes on first: from here on any failure is cleaned up by __gc. */
    luaL_getmetatable(L, CURL_MT);
    lua_setmetatable(L, -2);

    /* Each handle takes and gives back its own reference to libcurl's global state (reference counted by
     * libcurl), so nothing global lives in this module and no lua_State can clean up under another one.
     * curl_global_init is thread-safe from libcurl 7.84 on (CURL_VERSION_THREADSAFE); with older builds,
     * load this module before starting threads, as libcurl documents. */
    const char *failed = NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        lua_pushnil(L);
        lua_pushliteral(L, "curl_global_init failed");
        return 2;
    }
    c->global_ref = 1;
    if ((user_agent != NULL && (c->user_agent = strdup(user_agent)) == NULL) ||
        (cafile != NULL && (c->cafile = strdup(cafile)) == NULL))
        goto no_memory;
    c->easy = curl_easy_init();
    if (c->easy == NULL) {
        wcurl_release(c);
        lua_pushnil(L);
        lua_pushliteral(L, "curl_easy_init failed");
        return 2;
    }

    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json; charset=utf-8");
    if (h == NULL) goto no_memory;
    c->post_headers = h;
    /* An empty "Expect:" stops libcurl from waiting for 100-continue before large bodies. */
    h = curl_slist_append(c->post_headers, "Expect:");
    if (h == NULL) goto no_memory;
    c->post_headers = h;

    if (wcurl_common_opts(c->easy, c->errbuf, user_agent, ssl_verify, cafile, connect_timeout) != CURLE_OK) {
        failed = "the common options";
        goto fail;
    }
    SETOPT(c, CURLOPT_TCP_KEEPALIVE, 1L);
    SETOPT(c, CURLOPT_TIMEOUT_MS, (long)(timeout * 1000.0 + 0.5));
    /* Stops early when the server announces a Content-Length over the limit; the write callback catches the
     * rest (chunked or lying answers). */
    SETOPT(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max_response);
    SETOPT(c, CURLOPT_WRITEFUNCTION, wcurl_write);
    SETOPT(c, CURLOPT_WRITEDATA, (void *)c);
    return 1;

no_memory:
    wcurl_release(c);
    lua_pushnil(L);
    lua_pushliteral(L, "not enough memory");
    return 2;
fail:
    wcurl_release(c);
    lua_pushnil(L);
    lua_pushfstring(L, "curl_easy_setopt(%s) failed", failed);
    return 2;
}

/* --- request ------------------------------------------------------------------------------------------ */

static const char *reason_of(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
        return "connect";
    case CURLE_OPERATION_TIMEDOUT:
        return "timeout";
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return "resolve";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_USE_SSL_FAILED:
        return "tls";
    case CURLE_FILESIZE_EXCEEDED:
        return "too_large";
    case CURLE_SEND_ERROR:
        return "send";
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        return "recv";
    default:
        return "other";
    }
}

const char *wcurl_reason(CURL *easy, CURLcode rc)
{
    /* A timeout before any byte of the request went out (connect or TLS handshake) is a connect failure: nothing
     * reached WeCom, so any request may go again. */
    long sent = 1;
    if (rc == CURLE_OPERATION_TIMEDOUT && curl_easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &sent) == CURLE_OK &&
        sent == 0)
        return "connect";
    return reason_of(rc);
}

void wcurl_push_message(lua_State *L, const char *msg)
{
    size_t n = strcspn(msg, "?\r\n");
    while (n > 0 && (msg[n - 1] == ' ' || msg[n - 1] == ':')) n--;
    if (n == 0) lua_pushliteral(L, "transfer failed");
    else lua_pushlstring(L, msg, n);
}

/* True when the parsed URL prints back as exactly the text it was parsed from: then handing libcurl the parsed URL
 * is the same as handing it the text (which it parses, prints in its normal form and works from that). */
static int wcurl_url_is_normal(CURLU *parsed, const char *url)
{
    char *back = NULL;
    int same = curl_url_get(parsed, CURLUPART_URL, &back, 0) == CURLUE_OK && strcmp(back, url) == 0;
    curl_free(back);
    return same;
}

/* The cache slot of url, parsed now into the least recently used slot when it is not there, with the flags libcurl
 * itself parses CURLOPT_URL with, so the request is the same byte for byte. NULL for a URL that does not parse, or not
 * into its own normal form (odd escapes, a host with '%'): it goes to libcurl as text, which then does exactly what
 * it did before, fail the transfer saying why or send it. *rc is set when libcurl fails (then NULL too). */
static wcurl_url *wcurl_find_url(wcurl *c, const char *url, size_t len, CURLcode *rc)
{
    wcurl_url *slot = &c->urls[0];
    *rc = CURLE_OK;
    c->url_clock++;
    for (int i = 0; i < URL_CACHE; i++) {
        wcurl_url *u = &c->urls[i];
        if (u->text != NULL && u->len == len && memcmp(u->text, url, len) == 0) {
            u->used = c->url_clock;
            return u;
        }
        if (u->text == NULL ? slot->text != NULL : slot->text != NULL && u->used < slot->used) slot = u;
    }
    /* The easy handle may still point at the slot's URL: it is set anew before its next transfer in every case. */
    *rc = curl_easy_setopt(c->easy, CURLOPT_CURLU, (CURLU *)NULL);
    if (*rc != CURLE_OK) return NULL;
    wcurl_forget_url(slot);
    slot->parsed = curl_url();
    slot->text = malloc(len + 1);
    if (slot->parsed != NULL && slot->text != NULL &&
        curl_url_set(slot->parsed, CURLUPART_URL, url, CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK &&
        wcurl_url_is_normal(slot->parsed, url) && wdirect_prepare_url(c, slot) == 0) {
        memcpy(slot->text, url, len + 1);
        slot->len = len;
        slot->used = c->url_clock;
        return slot;
    }
    wcurl_forget_url(slot);
    return NULL;
}

/* Sets up a transfer to url, whose cache slot u was looked up already (NULL: none, the text goes to libcurl). */
static CURLcode wcurl_begin_at(wcurl *c, int post, wcurl_url *u, const char *url, const char *body, size_t body_len)
{
    c->len = 0;
    c->too_large = c->no_memory = 0;
    c->errbuf[0] = '\0';
    c->post = post;
    CURLcode rc = u != NULL ? curl_easy_setopt(c->easy, CURLOPT_CURLU, u->parsed)
                            : curl_easy_setopt(c->easy, CURLOPT_URL, url);
    /* c->fresh: over a new connection, which libcurl never sends again by itself (it resends on a reused one) */
    if (rc == CURLE_OK) rc = curl_easy_setopt(c->easy, CURLOPT_FRESH_CONNECT, c->fresh ? 1L : 0L);
    if (rc != CURLE_OK) return rc;
    if (post) {
        rc = curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, body);
        if (rc == CURLE_OK) rc = curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        if (rc == CURLE_OK) rc = curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, c->post_headers);
    } else {
        rc = curl_easy_setopt(c->easy, CURLOPT_HTTPGET, 1L);
        if (rc == CURLE_OK) rc = curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
    }
    if (rc == CURLE_OK) c->requests++;
    return rc;
}

CURLcode wcurl_begin(wcurl *c, int post, const char *url, size_t url_len, const char *body, size_t body_len)
{
    CURLcode rc;
    wcurl_url *u = wcurl_find_url(c, url, url_len, &rc);
    if (rc != CURLE_OK) return rc;
    return wcurl_begin_at(c, post, u, url, body, body_len);
}

int wcurl_finish(lua_State *L, wcurl *c, CURLcode rc, int started)
{
    /* libcurl sends a request again by itself, on a new connection, when a kept-alive one died under it. When a
     * request that could have reused the connection the last one left open needed a new one, it may have gone out
     * twice already (or libcurl found the idle connection closed before sending: it cannot tell us which). A
     * transfer that never started (its setup failed) made no connection: the last one's counts stay as they are. */
    int maybe_resent = 0;
    if (started) {
        long connects = 0;
        if (curl_easy_getinfo(c->easy, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK) c->connects += connects;
        maybe_resent = !c->fresh && c->kept && connects > 0;
        curl_socket_t open_socket = CURL_SOCKET_BAD;
        c->kept = curl_easy_getinfo(c->easy, CURLINFO_ACTIVESOCKET, &open_socket) == CURLE_OK &&
                  open_socket != CURL_SOCKET_BAD;
    }
    c->fresh = 0;
    /* Forget the pointer into the Lua string, which may be collected before the next request. */
    if (c->post && curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, (char *)NULL) != CURLE_OK && rc == CURLE_OK)
        rc = CURLE_FAILED_INIT;
    c->post = 0;

    long status = 0;
    if (rc == CURLE_OK && curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
        rc = CURLE_FAILED_INIT;
    if (rc == CURLE_OK) return wcurl_push_result(L, c, status, NULL, maybe_resent);
    if (rc == CURLE_FILESIZE_EXCEEDED) c->too_large = 1;
    if (c->too_large || c->no_memory) return wcurl_push_result(L, c, 0, wcurl_sink_failure(c), maybe_resent);
    if (c->errbuf[0] == '\0') snprintf(c->errbuf, sizeof c->errbuf, "%s", curl_easy_strerror(rc));
    return wcurl_push_result(L, c, 0, wcurl_reason(c->easy, rc), maybe_resent);
}

const char *wcurl_sink_failure(wcurl *c)
{
    if (c->too_large) {
        snprintf(c->errbuf, sizeof c->errbuf, "response too large (over %d bytes)", (int)c->max_response);
        return "too_large";
    }
    snprintf(c->errbuf, sizeof c->errbuf, "not enough memory for the response");
    return "other";
}

int wcurl_push_result(lua_State *L, wcurl *c, long status, const char *reason, int maybe_resent)
{
    int nret;
    if (reason == NULL) {
        lua_pushinteger(L, (lua_Integer)status);
        lua_pushlstring(L, c->buf != NULL ? c->buf : "", c->len);
        nret = 3;
    } else {
        lua_pushnil(L);
        lua_pushstring(L, reason);
        wcurl_push_message(L, c->errbuf[0] != '\0' ? c->errbuf : "transfer failed");
        nret = 4;
    }
    lua_pushboolean(L, maybe_resent);
    c->len = 0;
    wcurl_shrink(c);
    return nret;
}

/* Checks the arguments of request at 2, 3, 4 (method, url, body) for the handle at 1 and for the multi handle's
 * add, whose id and handle come first: shift 2). */
void wcurl_check_request(lua_State *L, const char *fname, int shift, int *post, const char **url, size_t *url_len,
                         const char **body, size_t *body_len)
{
    int im = 2 + shift, iu = 3 + shift, ib = 4 + shift;
    if (lua_type(L, im) != LUA_TSTRING)
        wechat_argerror(L, fname, 1 + shift, "string expected, got %s", luaL_typename(L, im));
    const char *method = lua_tostring(L, im);
    if (strcmp(method, "GET") == 0) *post = 0;
    else if (strcmp(method, "POST") == 0) *post = 1;
    else wechat_argerror(L, fname, 1 + shift, "method must be \"GET\" or \"POST\", got \"%s\"", method);
    if (lua_type(L, iu) != LUA_TSTRING)
        wechat_argerror(L, fname, 2 + shift, "string expected, got %s", luaL_typename(L, iu));
    *url = lua_tolstring(L, iu, url_len);
    if (strlen(*url) != *url_len) wechat_argerror(L, fname, 2 + shift, "url contains a NUL byte");
    *body = "";
    *body_len = 0;
    if (!lua_isnoneornil(L, ib)) {
        if (lua_type(L, ib) != LUA_TSTRING)
            wechat_argerror(L, fname, 3 + shift, "string or nil expected, got %s", luaL_typename(L, ib));
        if (!*post) wechat_argerror(L, fname, 3 + shift, "a GET request has no body");
        *body = lua_tolstring(L, ib, body_len);
    }
}

/* handle:request(method, url[, body[, fresh]]) -> status, body, maybe_resent | nil, reason, message, maybe_resent
 * fresh: over a new connection, which libcurl does not send again by itself (it only resends on a reused one). */
static int l_curl_request(lua_State *L)
{
    wcurl *c = wcurl_check_idle(L, 1);
    int post;
    const char *url, *body;
    size_t url_len, body_len;
    wcurl_check_request(L, "request", 0, &post, &url, &url_len, &body, &body_len);
    c->fresh = lua_toboolean(L, 5);
    /* Our own exchange over a connection libcurl opened, unless the URL is one only libcurl writes right, or a
     * proxy from the environment must carry the request. */
    CURLcode rc;
    wcurl_url *u = wcurl_find_url(c, url, url_len, &rc);
    if (u != NULL && u->origin != NULL) {
        int nret = wdirect_request(L, c, u, post, body, body_len);
        if (nret > 0) return nret;
    }
    /* The body stays on the Lua stack for the whole transfer, so libcurl need not copy it. */
    if (rc == CURLE_OK) rc = wcurl_begin_at(c, post, u, url, body, body_len);
    if (rc != CURLE_OK) return wcurl_finish(L, c, rc, 0);
    return wcurl_finish(L, c, curl_easy_perform(c->easy), 1);
}

/* handle:stats() -> {requests = N, connects = M}: connects counts new connections (CURLINFO_NUM_CONNECTS
 * summed over requests), so requests > connects shows connection reuse. */
static int l_curl_stats(lua_State *L)
{
    wcurl *c = wcurl_check(L);
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, (lua_Integer)c->requests);
    lua_setfield(L, -2, "requests");
    lua_pushinteger(L, (lua_Integer)c->connects);
    lua_setfield(L, -2, "connects");
    return 1;
}

/* handle:close(): idempotent, also __gc and __close. */
static int l_curl_close(lua_State *L)
{
    wcurl *c = luaL_checkudata(L, 1, CURL_MT);
    wcurl_release(c);
    return 0;
}

static int l_curl_tostring(lua_State *L)
{
    wcurl *c = luaL_checkudata(L, 1, CURL_MT);
    if (c->easy == NULL) lua_pushliteral(L, CURL_MT " (closed)");
    else lua_pushfstring(L, CURL_MT " (%p)", (void *)c);
    return 1;
}

/* core.curl_version() -> "libcurl/7.88.1 OpenSSL/3.0.11". Built from curl_version_info rather than
 * curl_version(), which also asks every optional library (LDAP among them) for its version and leaves their
 * one-time allocations behind when the module is unloaded. */
static int l_curl_version(lua_State *L)
{
    const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    if (v == NULL || v->version == NULL) return luaL_error(L, "curl_version_info failed");
    if (v->ssl_version != NULL) lua_pushfstring(L, "libcurl/%s %s", v->version, v->ssl_version);
    else lua_pushfstring(L, "libcurl/%s", v->version);
    return 1;
}

static const luaL_Reg curl_methods[] = {
    {"request", l_curl_request},
    {"stats", l_curl_stats},
    {"close", l_curl_close},
    {NULL, NULL},
};

static const luaL_Reg curl_funcs[] = {
    {"curl_new", l_curl_new},
    {"curl_version", l_curl_version},
    {NULL, NULL},
};

void wechat_open_curl(lua_State *L)
{
    if (luaL_newmetatable(L, CURL_MT)) {
        lua_newtable(L);
        wechat_setfuncs(L, curl_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_curl_close);
        lua_setfield(L, -2, "__gc");
#if LUA_VERSION_NUM >= 504
        lua_pushcfunction(L, l_curl_close);
        lua_setfield(L, -2, "__close");
#endif
        lua_pushcfunction(L, l_curl_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushliteral(L, "wechat.curl");
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    wechat_setfuncs(L, curl_funcs);
}
