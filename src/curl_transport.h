/* The libcurl easy handle of the curl transport (wechat.curl userdata), shared with the multi handle that runs
 * many of them at once (curl_multi.c). */
#ifndef WECHAT_CURL_TRANSPORT_H
#define WECHAT_CURL_TRANSPORT_H

#include <curl/curl.h>

#include "http_answer.h"
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
    /* For the direct exchange (curl_direct.c), when the URL is one it can send exactly as libcurl would (origin
     * NULL otherwise): the connection's origin, and the request heads written out once. */
    char *origin;       /* "scheme://host:port/" */
    size_t origin_len;
    char *post_head;    /* "POST target HTTP/1.1\r\n...Content-Length: " */
    size_t post_head_len;
    char *get_head;     /* the whole head of a GET */
    size_t get_head_len;
} wcurl_url;

/* The direct exchange: one connection libcurl opens (CURLOPT_CONNECT_ONLY, TLS included) and we write requests to
 * and read answers from ourselves, with curl_easy_send/curl_easy_recv. */
typedef struct {
    CURL *easy;           /* the connection's handle, NULL when none is open */
    curl_socket_t sock;
    char *origin;         /* of the open connection (a copy) */
    size_t origin_len;
    char *in;             /* receive buffer (DIRECT_IN bytes), kept while the transport lives */
    char *out;            /* a request's head and body when they fit (DIRECT_OUT bytes) */
    http_answer answer;
    int read_first;       /* read before waiting for an answer (libcurl may buffer what came: 8.0 and later) */
} wdirect;

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
    /* the options, kept for the connections of the direct exchange */
    char *user_agent, *cafile;  /* copies; NULL: ours, the system's */
    int ssl_verify;
    long long timeout_ms;
    double connect_timeout;
    wdirect direct;
    /* An abstract unix socket the direct exchange connects to instead of the URL's host: set only by the in-process
     * fuzzer (fuzz/fuzz_response.c), whose server lives there. */
    const char *abstract_socket;
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

/* Appends n bytes of answer body to the handle's buffer, bounded by max_response; returns n, or 0 when it cannot
 * (too_large or no_memory set). */
size_t wcurl_take_body(wcurl *c, const char *data, size_t n);

/* Pushes how a request ended: status, body, maybe_resent when reason is NULL; else nil, reason, the message in
 * c->errbuf (cut before any query), maybe_resent. Empties the body buffer. Returns how many values. */
int wcurl_push_result(lua_State *L, wcurl *c, long status, const char *reason, int maybe_resent);

/* The reason of a transfer the body sink stopped (too_large or no_memory set), its message written to c->errbuf. */
const char *wcurl_sink_failure(wcurl *c);

/* Gives back a buffer grown past KEEP_BUFFER for one large answer, so an idle transport stays small. */
void wcurl_shrink(wcurl *c);

/* Prepares slot u (just parsed into u->parsed from u->text) for the direct exchange: sets u->origin and the heads,
 * or leaves u->origin NULL when the URL must go through curl_easy_perform. Returns 0, or -1 without memory. */
int wdirect_prepare_url(wcurl *c, wcurl_url *u);

/* Frees what wdirect_prepare_url made. */
void wdirect_forget_url(wcurl_url *u);

/* Makes one exchange of the request at u over the direct connection; pushes what wcurl_finish pushes and returns
 * how many. Returns 0, having done nothing, when a new connection is needed and the environment names a proxy
 * libcurl would use for u's scheme: then the request goes through curl_easy_perform, which speaks to proxies. */
int wdirect_request(lua_State *L, wcurl *c, wcurl_url *u, int post, const char *body, size_t body_len);

/* Closes the direct connection and frees its buffers. */
void wdirect_release(wcurl *c);

/* Called by wcurl_release for a handle still in a multi handle (curl_multi.c). */
void wmulti_detach(struct wmulti *m, wcurl *c);

#endif
