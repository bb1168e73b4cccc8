/* The libcurl easy handle of the curl transport (wechat.curl userdata), shared with the multi handle that runs
 * many of them at once (curl_multi.c). */
#ifndef WECHAT_CURL_TRANSPORT_H
#define WECHAT_CURL_TRANSPORT_H

#include <curl/curl.h>

#include "wechat_core.h"

#define CURL_MT "wechat.curl"
#define WCURL_USER_AGENT "lua-wechat-work/0.1.0"

/* Parsed URLs kept per handle: a client posts to a few URLs (gettoken, the KF paths), each the same until the
 * token changes. */
#define URL_CACHE 4

/* A URL parsed once: libcurl would otherwise parse the URL text, and print it back, on every transfer (a fifth of
 * its work per request). */
typedef struct {
    CURLU *parsed;
    char *text; /* NULL: slot unused */
    size_t len;
    unsigned long used; /* for evicting the least recently used */
} wcurl_url;

typedef struct {
    CURL *easy;                 /* NULL once closed */
    struct curl_slist *post_headers;
    int global_ref;             /* this handle holds one curl_global_init reference */
    char *buf;                  /* response body, bounded by max_response */
    size_t len, cap, max_response;
    int too_large, no_memory;   /* why the write callback stopped the transfer */
    long requests, connects;
    wcurl_url urls[URL_CACHE];
    unsigned long url_clock;
    char errbuf[CURL_ERROR_SIZE];
    int post;                   /* of the transfer under way */
    int fresh;                  /* the transfer under way goes over a new connection (never resent by libcurl) */
    int kept;                   /* the last transfer left its connection open for the next one */
    struct wmulti *multi;       /* the multi handle running this transfer, NULL when none */
} wcurl;


/* The open handle at idx; raises when it is closed or busy in a multi handle. */
wcurl *wcurl_check_idle(lua_State *L, int idx);

/* Sets up one request on the handle (URL, method, body: the body must stay unchanged until the transfer ends). */
CURLcode wcurl_begin(wcurl *c, int post, const char *url, size_t url_len, const char *body, size_t body_len);

/* After the transfer ended with rc (started: 0 when its setup failed and it never ran): pushes status, body,
 * maybe_resent, or nil, reason, message, maybe_resent. Returns how many. */
int wcurl_finish(lua_State *L, wcurl *c, CURLcode rc, int started);

/* Checks method, url, body at 2+shift.. (request: shift 0; the multi handle's add, whose handle argument comes
 * first: shift 1); raises naming the argument of fname. */
void wcurl_check_request(lua_State *L, const char *fname, int shift, int *post, const char **url, size_t *url_len,
                         const char **body, size_t *body_len);

/* The options every easy handle of ours gets (the JSON transport's and each media transfer's): error buffer, no
 * signals, no progress, no redirects, http(s) only, the connect timeout, the user agent (NULL: ours), TLS checks. */
CURLcode wcurl_common_opts(CURL *easy, char *errbuf, const char *user_agent, int ssl_verify, const char *cafile,
                           double connect_timeout);

/* The reason word of a failed transfer ("connect", "timeout", "tls", ...): a timeout before any byte of the
 * request went out is "connect". */
const char *wcurl_reason(CURL *easy, CURLcode rc);

/* Pushes libcurl's failure message, cut at a '?' (or a line break) so that a URL's query, where the access token
 * is, never reaches a log line. */
void wcurl_push_message(lua_State *L, const char *msg);

/* Called by wcurl_release for a handle still in a multi handle (curl_multi.c). */
void wmulti_detach(struct wmulti *m, wcurl *c);

#endif
