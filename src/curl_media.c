/* Media transfers over libcurl: a multipart upload whose bytes come from a file (or a Lua string) through a read
 * callback, and a download whose body goes to a file as it arrives. Neither holds a file in memory: libcurl reads and
 * writes in pieces of its buffer size. Each transfer has an easy handle of its own, made and freed here: media
 * calls are few and long, and the JSON calls keep their kept-alive handle (curl_transport.c) to themselves. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "curl_transport.h"

#define MEDIA_DEFAULT_TIMEOUT 10.0
#define MEDIA_MIN_BUFFER 16384
#define MEDIA_MAX_HEADER 512 /* a kept header value is cut here: names and ranges are short */
#define MEDIA_MT "wechat.curl_media"
#define MEDIA_MAX_BYTES 9007199254740992.0 /* 2^53: every size a Lua number holds exactly */

enum { HDR_CONTENT_TYPE, HDR_CONTENT_DISPOSITION, HDR_CONTENT_RANGE, HDR_COUNT };
static const char *const HDR_NAMES[HDR_COUNT] = {"content-type", "content-disposition", "content-range"};

typedef struct {
    CURL *easy;
    struct curl_slist *headers;
    /* the request body: head, then data or the file, then tail */
    const char *part[3];
    size_t part_len[3];
    FILE *in;
    curl_off_t in_left; /* file bytes still to send */
    int stage;
    int in_failed; /* the file ended early or could not be read */
    /* the answer */
    const char *sink;
    FILE *out;
    int to_sink, decided, content, out_failed, out_errno, too_large, no_memory;
    char *buf;
    size_t len, cap;
    curl_off_t received, max, other_max; /* max for content, other_max for any other answer (WeCom's JSON) */
    char hdr[HDR_COUNT][MEDIA_MAX_HEADER + 1];
    char errbuf[CURL_ERROR_SIZE];
    int global_ref; /* this transfer holds one curl_global_init reference */
} media_xfer;

/* Frees what the transfer holds; idempotent. Also the __gc of its userdata, so that a raise while the results are
 * pushed leaks nothing. */
static void media_release(media_xfer *x)
{
    if (x->easy != NULL) curl_easy_cleanup(x->easy);
    x->easy = NULL;
    curl_slist_free_all(x->headers);
    x->headers = NULL;
    if (x->in != NULL) fclose(x->in);
    x->in = NULL;
    if (x->out != NULL) fclose(x->out);
    x->out = NULL;
    free(x->buf);
    x->buf = NULL;
    if (x->global_ref) {
        x->global_ref = 0;
        curl_global_cleanup();
    }
}

static int l_media_gc(lua_State *L)
{
    media_release(luaL_checkudata(L, 1, MEDIA_MT));
    return 0;
}

/* Runs inside curl_easy_perform: trouble is recorded and the transfer stopped, never raised across libcurl. */
static size_t media_read(char *dest, size_t size, size_t nitems, void *ud)
{
    media_xfer *x = ud;
    size_t room = size * nitems, n = 0;
    while (n < room && x->stage < 3) {
        if (x->stage == 1 && x->in != NULL) {
            size_t want = room - n;
            if ((curl_off_t)want > x->in_left) want = (size_t)x->in_left;
            if (want == 0) {
                x->stage++;
                continue;
            }
            size_t got = fread(dest + n, 1, want, x->in);
            if (got == 0) {
                x->in_failed = 1;
                return CURL_READFUNC_ABORT;
            }
            n += got;
            x->in_left -= (curl_off_t)got;
            continue;
        }
        size_t want = x->part_len[x->stage];
        if (want > room - n) want = room - n;
        memcpy(dest + n, x->part[x->stage], want);
        x->part[x->stage] += want;
        x->part_len[x->stage] -= want;
        n += want;
        if (x->part_len[x->stage] == 0) x->stage++;
    }
    return n;
}

/* Keeps the headers the caller asks about; a new status line (after a 1xx) forgets them. */
static size_t media_header(char *line, size_t size, size_t nitems, void *ud)
{
    media_xfer *x = ud;
    size_t n = size * nitems;
    if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        for (int i = 0; i < HDR_COUNT; i++) x->hdr[i][0] = '\0';
        return n;
    }
    const char *colon = memchr(line, ':', n);
    if (colon == NULL) return n;
    size_t name_len = (size_t)(colon - line);
    for (int i = 0; i < HDR_COUNT; i++) {
        if (strlen(HDR_NAMES[i]) != name_len) continue;
        int same = 1;
        for (size_t k = 0; k < name_len && same; k++) {
            char c = line[k];
            if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
            same = c == HDR_NAMES[i][k];
        }
        if (!same) continue;
        const char *v = colon + 1, *end = line + n;
        while (v < end && (*v == ' ' || *v == '\t')) v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t')) end--;
        size_t vlen = (size_t)(end - v);
        if (vlen > MEDIA_MAX_HEADER) vlen = MEDIA_MAX_HEADER;
        memcpy(x->hdr[i], v, vlen);
        x->hdr[i][vlen] = '\0';
    }
    return n;
}

/* WeCom answers a failed media/get with JSON (or text): such an answer, or one that is not 200/206, stays in memory
 * for the caller to read; content goes to the sink. */
static int media_is_content(media_xfer *x)
{
    long status = 0;
    if (curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK) return 0;
    if (status != 200 && status != 206) return 0;
    const char *ct = x->hdr[HDR_CONTENT_TYPE];
    while (*ct == ' ') ct++;
    return strncasecmp(ct, "application/json", 16) != 0 && strncasecmp(ct, "text/", 5) != 0;
}

static size_t media_write(char *data, size_t size, size_t nmemb, void *ud)
{
    media_xfer *x = ud;
    size_t n = size * nmemb;
    if (n == 0) return 0;
    if (!x->decided) {
        x->decided = 1;
        x->content = media_is_content(x);
        if (!x->content) x->max = x->other_max;
        if (x->sink != NULL && x->content) {
            x->to_sink = 1;
            x->out = fopen(x->sink, "wb");
            if (x->out == NULL) {
                x->out_failed = 1;
                x->out_errno = errno;
                return 0;
            }
        }
    }
    if ((curl_off_t)n > x->max - x->received) {
        x->too_large = 1;
        return 0;
    }
    x->received += (curl_off_t)n;
    if (x->to_sink) {
        if (fwrite(data, 1, n, x->out) != n) {
            x->out_failed = 1;
            x->out_errno = errno;
            return 0;
        }
        return n;
    }
    if (x->len + n > x->cap) {
        size_t cap = x->cap < MEDIA_MIN_BUFFER ? MEDIA_MIN_BUFFER : x->cap;
        while (cap < x->len + n) cap *= 2;
        char *p = realloc(x->buf, cap);
        if (p == NULL) {
            x->no_memory = 1;
            return 0;
        }
        x->buf = p;
        x->cap = cap;
    }
    memcpy(x->buf + x->len, data, n);
    x->len += n;
    return n;
}

/* --- reading the arguments (checked by the Lua transport already: here only what keeps C safe) ------------- */

static const char *field_string(lua_State *L, int t, const char *key, size_t *len)
{
    lua_getfield(L, t, key);
    const char *s = NULL;
    if (lua_type(L, -1) == LUA_TSTRING) s = lua_tolstring(L, -1, len);
    else if (!lua_isnil(L, -1)) wechat_argerror(L, "curl_media", t, "%s: string expected", key);
    /* kept alive by the argument tables, which stay on the stack for the whole call */
    lua_pop(L, 1);
    return s;
}

static double field_number(lua_State *L, int t, const char *key, double dflt)
{
    lua_getfield(L, t, key);
    double v = dflt;
    if (lua_type(L, -1) == LUA_TNUMBER) v = lua_tonumber(L, -1);
    else if (!lua_isnil(L, -1)) wechat_argerror(L, "curl_media", t, "%s: number expected", key);
    lua_pop(L, 1);
    return v;
}

static int cstring_ok(const char *s, size_t len)
{
    return s == NULL || strlen(s) == len;
}

/* Pushes nil, reason, message; the message is cut at a '?' so a URL's query (the access token) never shows. */
static int media_fail(lua_State *L, const char *reason, const char *msg)
{
    lua_pushnil(L);
    lua_pushstring(L, reason);
    wcurl_push_message(L, msg);
    return 3;
}

#define MSETOPT(opt, val)                                                                                   \
    do {                                                                                                    \
        if (rc == CURLE_OK) rc = curl_easy_setopt(x->easy, (opt), (val));                                    \
    } while (0)

/* core.curl_media(opts, req) -> status, body | nil, size, headers, content  |  nil, reason, message
 * opts: timeout, connect_timeout, cafile, ssl_verify, user_agent (the curl transport's options);
 * req: url, method ("GET" | "POST"), max (content bytes at most), other_max (bytes at most of another answer:
 * WeCom's JSON, an error page), range (a Range header value), sink (a file path:
 * a 200/206 answer that is not JSON or text is written there, body nil), and for an upload content_type, head, tail
 * and path or data, with size the number of bytes between head and tail. */
static int l_curl_media(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    size_t url_len = 0, method_len = 0, ca_len = 0, ua_len = 0, range_len = 0, sink_len = 0, ct_len = 0;
    size_t head_len = 0, tail_len = 0, data_len = 0, path_len = 0;
    double timeout = field_number(L, 1, "timeout", MEDIA_DEFAULT_TIMEOUT);
    double connect_timeout = field_number(L, 1, "connect_timeout", timeout);
    const char *cafile = field_string(L, 1, "cafile", &ca_len);
    const char *user_agent = field_string(L, 1, "user_agent", &ua_len);
    lua_getfield(L, 1, "ssl_verify");
    int ssl_verify = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_pop(L, 1);

    const char *url = field_string(L, 2, "url", &url_len);
    const char *method = field_string(L, 2, "method", &method_len);
    const char *range = field_string(L, 2, "range", &range_len);
    const char *sink = field_string(L, 2, "sink", &sink_len);
    const char *content_type = field_string(L, 2, "content_type", &ct_len);
    const char *head = field_string(L, 2, "head", &head_len);
    const char *tail = field_string(L, 2, "tail", &tail_len);
    const char *data = field_string(L, 2, "data", &data_len);
    const char *path = field_string(L, 2, "path", &path_len);
    double max = field_number(L, 2, "max", 4.0 * 1024 * 1024);
    double other_max = field_number(L, 2, "other_max", 4.0 * 1024 * 1024);
    double size = field_number(L, 2, "size", 0);
    if (url == NULL || method == NULL || !cstring_ok(url, url_len) || !cstring_ok(range, range_len) ||
        !cstring_ok(sink, sink_len) || !cstring_ok(content_type, ct_len) || !cstring_ok(path, path_len) ||
        !cstring_ok(cafile, ca_len) || !cstring_ok(user_agent, ua_len))
        return wechat_argerror(L, "curl_media", 2, "url and method required; no NUL in a name or header");
    int post = strcmp(method, "POST") == 0;
    int upload = head != NULL;
    if (upload && (!post || tail == NULL || content_type == NULL || (data == NULL) == (path == NULL)))
        return wechat_argerror(L, "curl_media", 2, "an upload is a POST with head, tail, content_type, data or path");
    if (!(max >= 1 && max <= MEDIA_MAX_BYTES) || !(other_max >= 1 && other_max <= MEDIA_MAX_BYTES) ||
        !(size >= 0 && size <= MEDIA_MAX_BYTES) || !(timeout > 0) || !(connect_timeout > 0))
        return wechat_argerror(L, "curl_media", 2, "max, size and timeouts out of range");
    if (data != NULL && (double)data_len != size)
        return wechat_argerror(L, "curl_media", 2, "size must be the length of data");

    /* a userdata with __gc: whatever raises from here on, nothing it holds is lost */
    media_xfer *x = lua_newuserdata(L, sizeof *x);
    memset(x, 0, sizeof *x);
    luaL_getmetatable(L, MEDIA_MT);
    lua_setmetatable(L, -2);
    x->sink = sink;
    x->max = (curl_off_t)max;
    x->other_max = (curl_off_t)other_max;
    if (upload) {
        x->part[0] = head;
        x->part_len[0] = head_len;
        x->part[1] = data != NULL ? data : "";
        x->part_len[1] = data != NULL ? data_len : 0;
        x->part[2] = tail;
        x->part_len[2] = tail_len;
        if (path != NULL) {
            x->in = fopen(path, "rb");
            if (x->in == NULL) {
                int e = errno;
                lua_pushnil(L);
                lua_pushliteral(L, "other");
                lua_pushfstring(L, "cannot open the file to upload: %s", strerror(e));
                return 3;
            }
            x->in_left = (curl_off_t)size;
        }
    }

    CURLcode rc = CURLE_OK;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        media_release(x);
        return media_fail(L, "other", "curl_global_init failed");
    }
    x->global_ref = 1;
    x->easy = curl_easy_init();
    if (x->easy == NULL) rc = CURLE_OUT_OF_MEMORY;

    char line[MEDIA_MAX_HEADER + 64];
    /* An empty "Expect:" keeps libcurl from waiting for 100-continue before the body. */
    const char *lines[3] = {"Expect:", NULL, NULL};
    int n = 0;
    if (upload) {
        n = snprintf(line, sizeof line, "Content-Type: %s", content_type);
        lines[1] = line;
    } else if (range != NULL) {
        n = snprintf(line, sizeof line, "Range: %s", range);
        lines[1] = line;
    }
    if (n < 0 || (size_t)n >= sizeof line) {
        media_release(x);
        return media_fail(L, "other", "the Content-Type or Range header is too long");
    }
    for (int i = 0; i < 3 && lines[i] != NULL && rc == CURLE_OK; i++) {
        struct curl_slist *h = curl_slist_append(x->headers, lines[i]);
        if (h == NULL) rc = CURLE_OUT_OF_MEMORY;
        else x->headers = h;
    }

    if (rc == CURLE_OK) rc = wcurl_common_opts(x->easy, x->errbuf, user_agent, ssl_verify, cafile, connect_timeout);
    MSETOPT(CURLOPT_URL, url);
    /* The whole exchange may take long for 20 MB: the timeout bounds a stall (no progress), not the transfer. */
    MSETOPT(CURLOPT_LOW_SPEED_LIMIT, 1L);
    MSETOPT(CURLOPT_LOW_SPEED_TIME, (long)(timeout < 1.0 ? 1.0 : timeout + 0.5));
    MSETOPT(CURLOPT_HTTPHEADER, x->headers);
    MSETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)(max > other_max ? max : other_max));
    MSETOPT(CURLOPT_HEADERFUNCTION, media_header);
    MSETOPT(CURLOPT_HEADERDATA, (void *)x);
    MSETOPT(CURLOPT_WRITEFUNCTION, media_write);
    MSETOPT(CURLOPT_WRITEDATA, (void *)x);
    if (upload) {
        MSETOPT(CURLOPT_POST, 1L);
        MSETOPT(CURLOPT_READFUNCTION, media_read);
        MSETOPT(CURLOPT_READDATA, (void *)x);
        MSETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(head_len + tail_len) + (curl_off_t)size);
    } else if (post) {
        MSETOPT(CURLOPT_POSTFIELDS, "");
        MSETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    } else {
        MSETOPT(CURLOPT_HTTPGET, 1L);
    }
    if (rc != CURLE_OK) {
        media_release(x);
        return media_fail(L, "other", curl_easy_strerror(rc));
    }

    rc = curl_easy_perform(x->easy);
    long status = 0;
    if (rc == CURLE_OK && curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
        rc = CURLE_FAILED_INIT;
    if (x->out != NULL) {
        FILE *out = x->out;
        x->out = NULL;
        if (fclose(out) != 0 && rc == CURLE_OK) {
            x->out_failed = 1;
            x->out_errno = errno;
            rc = CURLE_WRITE_ERROR;
        }
    }
    int nret;
    if (rc == CURLE_OK) {
        lua_pushinteger(L, (lua_Integer)status);
        if (x->to_sink) lua_pushnil(L);
        else lua_pushlstring(L, x->buf != NULL ? x->buf : "", x->len);
        lua_pushnumber(L, (lua_Number)x->received);
        lua_createtable(L, 0, HDR_COUNT);
        for (int i = 0; i < HDR_COUNT; i++) {
            if (x->hdr[i][0] == '\0') continue;
            lua_pushstring(L, x->hdr[i]);
            lua_setfield(L, -2, HDR_NAMES[i]);
        }
        /* content (not WeCom's JSON or text): said here once, so the client need not judge the headers again */
        lua_pushboolean(L, x->decided ? x->content : media_is_content(x));
        nret = 5;
    } else if (x->too_large || rc == CURLE_FILESIZE_EXCEEDED) {
        char limit[32];
        snprintf(limit, sizeof limit, "%.0f", (double)x->max);
        lua_pushnil(L);
        lua_pushliteral(L, "too_large");
        lua_pushfstring(L, "response too large (over %s bytes)", limit);
        nret = 3;
    } else if (x->out_failed) {
        lua_pushnil(L);
        lua_pushliteral(L, "other");
        lua_pushfstring(L, "cannot write the downloaded file: %s", strerror(x->out_errno));
        nret = 3;
    } else if (x->in_failed) {
        lua_pushnil(L);
        lua_pushliteral(L, "send");
        lua_pushliteral(L, "the file to upload ended early or could not be read");
        nret = 3;
    } else if (x->no_memory) {
        nret = media_fail(L, "other", "not enough memory for the response");
    } else {
        /* the read callback stopped the upload: the file, not the network */
        const char *reason = rc == CURLE_ABORTED_BY_CALLBACK || rc == CURLE_READ_ERROR ? "send"
                                                                                      : wcurl_reason(x->easy, rc);
        nret = media_fail(L, reason, x->errbuf[0] != '\0' ? x->errbuf : curl_easy_strerror(rc));
    }
    media_release(x);
    return nret;
}

static const luaL_Reg media_funcs[] = {
    {"curl_media", l_curl_media},
    {NULL, NULL},
};

void wechat_open_curl_media(lua_State *L)
{
    if (luaL_newmetatable(L, MEDIA_MT)) {
        lua_pushcfunction(L, l_media_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushliteral(L, MEDIA_MT);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    wechat_setfuncs(L, media_funcs);
}
