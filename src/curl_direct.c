/* The direct exchange of the curl transport: libcurl opens the connection (DNS, TCP, TLS, its checks and its
 * error messages: CURLOPT_CONNECT_ONLY), and each request is written and its answer read here, over
 * curl_easy_send/curl_easy_recv. A send needs only a head we keep written out per URL and an answer read in one or
 * two pieces; curl_easy_perform's machinery around the same exchange was two thirds of a send's instructions.
 *
 * It keeps libcurl's promises: the same request bytes, the same reasons and messages for failures, a timeout for
 * the whole exchange, an answer bounded by max_response, and a request sent again only as libcurl would (once, on a
 * new connection, when a kept-alive connection died before any byte of the answer), which it reports as
 * maybe_resent only when a byte of the request had gone out. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "curl_transport.h"

/* receive buffer: a send's answer comes in one piece */
#define DIRECT_IN 16384
/* head and body go out in one piece up to this size, in two above it */
#define DIRECT_OUT 16384
#define CONTENT_TYPE "Content-Type: application/json; charset=utf-8\r\n"

/* --- request heads, written once per URL --------------------------------------------------------------- */

static char *url_part_as(CURLU *u, CURLUPart part, unsigned int flags, CURLUcode *rc)
{
    char *s = NULL;
    *rc = curl_url_get(u, part, &s, flags);
    return *rc == CURLUE_OK ? s : NULL;
}

static char *url_part(CURLU *u, CURLUPart part, CURLUcode *rc)
{
    return url_part_as(u, part, 0, rc);
}

/* Whether the URL has a part that makes libcurl's request differ from ours (credentials, a fragment, a zone id). */
static int has_part(CURLU *u, CURLUPart part)
{
    CURLUcode rc;
    char *s = url_part(u, part, &rc);
    curl_free(s);
    return rc == CURLUE_OK;
}

void wdirect_forget_url(wcurl_url *u)
{
    free(u->origin);
    free(u->post_head);
    free(u->get_head);
    u->origin = u->post_head = u->get_head = NULL;
    u->origin_len = u->post_head_len = u->get_head_len = 0;
}

static char *print(size_t *len, const char *fmt, const char *a, const char *b, const char *c, const char *d)
{
    int n = snprintf(NULL, 0, fmt, a, b, c, d);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (s == NULL) return NULL;
    if (snprintf(s, (size_t)n + 1, fmt, a, b, c, d) != n) {
        free(s);
        return NULL;
    }
    *len = (size_t)n;
    return s;
}

int wdirect_prepare_url(wcurl *c, wcurl_url *u)
{
    wdirect_forget_url(u);
    CURLUcode rc;
    char *scheme = url_part(u->parsed, CURLUPART_SCHEME, &rc);
    char *host = url_part(u->parsed, CURLUPART_HOST, &rc);
    char *port = NULL, *path = NULL, *query = NULL;
    int result = 0;
    if (scheme == NULL || host == NULL) goto done;
    int https = strcmp(scheme, "https") == 0;
    if (!https && strcmp(scheme, "http") != 0) goto done;
    if (has_part(u->parsed, CURLUPART_USER) || has_part(u->parsed, CURLUPART_PASSWORD) ||
        has_part(u->parsed, CURLUPART_OPTIONS) || has_part(u->parsed, CURLUPART_FRAGMENT) ||
        has_part(u->parsed, CURLUPART_ZONEID))
        goto done;
    /* the port libcurl connects to, and writes into Host: unless it is the scheme's own */
    port = url_part(u->parsed, CURLUPART_PORT, &rc);
    int default_port = port == NULL || strcmp(port, https ? "443" : "80") == 0;
    /* the path as libcurl sends it: bytes outside ASCII escaped (url.c takes it with CURLU_URLENCODE) */
    path = url_part_as(u->parsed, CURLUPART_PATH, CURLU_URLENCODE, &rc);
    if (path == NULL || path[0] != '/') goto done;
    query = url_part(u->parsed, CURLUPART_QUERY, &rc);
    /* a character libcurl would escape or refuse in the request line: left to libcurl */
    for (const char *s = path; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f) goto done;
    for (const char *s = query != NULL ? query : ""; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f) goto done;

    /* a host outside ASCII: libcurl would connect to and name its punycode form */
    for (const char *h = host; *h; h++)
        if ((unsigned char)*h >= 0x80) goto done;
    const char *colon = default_port ? "" : ":", *port_text = default_port ? "" : port;
    const char *qmark = query != NULL ? "?" : "", *query_text = query != NULL ? query : "";
    const char *agent = c->user_agent != NULL ? c->user_agent : WCURL_USER_AGENT;
    char hostline[1024];
    int n = snprintf(hostline, sizeof hostline, "%s%s%s", host, colon, port_text);
    if (n < 0 || (size_t)n >= sizeof hostline) goto done;
    size_t target_len;
    char *target = print(&target_len, "%s%s%s%s", path, qmark, query_text, "");
    if (target == NULL) goto no_memory;
    u->origin = print(&u->origin_len, "%s://%s%s%s/", scheme, host, ":", port != NULL ? port : https ? "443" : "80");
    u->post_head = print(&u->post_head_len,
                         "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nAccept: */*\r\n%sContent-Length: ", target,
                         hostline, agent, CONTENT_TYPE);
    u->get_head = print(&u->get_head_len, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nAccept: */*\r\n%s\r\n",
                        target, hostline, agent, "");
    free(target);
    if (u->origin == NULL || u->post_head == NULL || u->get_head == NULL) goto no_memory;
    /* a POST head, with its Content-Length, must fit the output buffer */
    if (u->post_head_len + 32 > DIRECT_OUT) wdirect_forget_url(u);
    goto done;
no_memory:
    wdirect_forget_url(u);
    result = -1;
done:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(query);
    return result;
}

/* --- the connection -------------------------------------------------------------------------------------- */

static long long now_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) return 0;
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int env_set(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0';
}

/* A proxy libcurl would take from the environment for this scheme (the names libcurl reads): the request must then
 * go through curl_easy_perform, which speaks to the proxy. NO_PROXY is not weighed: with any proxy set, libcurl
 * decides. */
static int proxy_in_env(const wcurl_url *u)
{
    int https = u->origin[4] == 's';
    return env_set(https ? "https_proxy" : "http_proxy") || (https && env_set("HTTPS_PROXY")) ||
           env_set("all_proxy") || env_set("ALL_PROXY");
}

static void direct_close(wdirect *d)
{
    if (d->easy != NULL) {
        curl_easy_cleanup(d->easy);
        d->easy = NULL;
    }
    free(d->origin);
    d->origin = NULL;
    d->origin_len = 0;
    d->sock = CURL_SOCKET_BAD;
}

void wdirect_release(wcurl *c)
{
    wdirect *d = &c->direct;
    direct_close(d);
    ha_free(&d->answer);
    free(d->in);
    free(d->out);
    d->in = d->out = NULL;
}

/* An idle kept-alive connection with something to read was closed by the server (or sent what no request asked
 * for): either way it cannot carry a request. */
static int direct_alive(wdirect *d)
{
    struct pollfd p = {.fd = d->sock, .events = POLLIN};
    return poll(&p, 1, 0) == 0;
}

/* Opens the connection to u's origin; *reason set on failure (libcurl's message is in c->errbuf). */
static CURLcode direct_connect(wcurl *c, wcurl_url *u, long long left_ms, const char **reason)
{
    wdirect *d = &c->direct;
    d->easy = curl_easy_init();
    if (d->easy == NULL) {
        *reason = "other";
        snprintf(c->errbuf, sizeof c->errbuf, "curl_easy_init failed");
        return CURLE_FAILED_INIT;
    }
    CURLcode rc = wcurl_common_opts(d->easy, c->errbuf, c->user_agent, c->ssl_verify, c->cafile, c->connect_timeout);
    if (rc == CURLE_OK) rc = curl_easy_setopt(d->easy, CURLOPT_CONNECT_ONLY, 1L);
    /* HTTP/1.1 is what we write: TLS must not agree on h2 (ALPN), after which libcurl 7.88 writes HTTP/2's
     * preface on the connection itself, and its curl_easy_recv was seen to crash */
    if (rc == CURLE_OK) rc = curl_easy_setopt(d->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    if (rc == CURLE_OK) rc = curl_easy_setopt(d->easy, CURLOPT_TCP_KEEPALIVE, 1L);
    if (rc == CURLE_OK) rc = curl_easy_setopt(d->easy, CURLOPT_TIMEOUT_MS, (long)(left_ms > 0 ? left_ms : 1));
    if (rc == CURLE_OK) rc = curl_easy_setopt(d->easy, CURLOPT_URL, u->origin);
    if (rc == CURLE_OK && c->abstract_socket != NULL) {
        rc = curl_easy_setopt(d->easy, CURLOPT_ABSTRACT_UNIX_SOCKET, c->abstract_socket);
        if (rc == CURLE_OK) rc = curl_easy_setopt(d->easy, CURLOPT_PROXY, "");
    }
    if (rc != CURLE_OK) {
        *reason = "other";
        snprintf(c->errbuf, sizeof c->errbuf, "curl_easy_setopt failed: %s", curl_easy_strerror(rc));
        direct_close(d);
        return rc;
    }
    c->errbuf[0] = '\0';
    rc = curl_easy_perform(d->easy);
    curl_socket_t sock = CURL_SOCKET_BAD;
    if (rc == CURLE_OK && (curl_easy_getinfo(d->easy, CURLINFO_ACTIVESOCKET, &sock) != CURLE_OK ||
                           sock == CURL_SOCKET_BAD)) {
        rc = CURLE_FAILED_INIT;
        snprintf(c->errbuf, sizeof c->errbuf, "libcurl gave no socket for the connection");
    }
    if (rc != CURLE_OK) {
        *reason = wcurl_reason(d->easy, rc);
        if (c->errbuf[0] == '\0') snprintf(c->errbuf, sizeof c->errbuf, "%s", curl_easy_strerror(rc));
        direct_close(d);
        return rc;
    }
    d->origin = malloc(u->origin_len + 1);
    if (d->origin == NULL) {
        *reason = "other";
        snprintf(c->errbuf, sizeof c->errbuf, "not enough memory");
        direct_close(d);
        return CURLE_OUT_OF_MEMORY;
    }
    memcpy(d->origin, u->origin, u->origin_len + 1);
    d->origin_len = u->origin_len;
    d->sock = sock;
    const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    d->read_first = v == NULL || v->version_num >= 0x080000;
    c->connects++;
    return CURLE_OK;
}

/* Waits until the socket is ready for events, or the deadline. */
static CURLcode direct_wait(wcurl *c, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0) return CURLE_OPERATION_TIMEDOUT;
        struct pollfd p = {.fd = c->direct.sock, .events = events};
        int r = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (r > 0) return CURLE_OK;
        if (r == 0) return CURLE_OPERATION_TIMEDOUT;
        if (errno != EINTR) {
            snprintf(c->errbuf, sizeof c->errbuf, "poll failed: %s", strerror(errno));
            return events == POLLOUT ? CURLE_SEND_ERROR : CURLE_RECV_ERROR;
        }
    }
}

/* *touched: a byte of the request may have gone out; over TLS even a write that reports none may have sent part
 * of a record. */
static CURLcode direct_send(wcurl *c, const char *p, size_t n, long long deadline, int *touched)
{
    while (n > 0) {
        size_t k = 0;
        *touched = 1;
        CURLcode rc = curl_easy_send(c->direct.easy, p, n, &k);
        /* Over TLS, CURLE_AGAIN after the socket was writable is the usual thing (part of a record went out), and
         * the rare write that must read first (a renegotiation) goes on as soon as the peer's message is in: so the
         * wait is always for writability, as libcurl's own example waits. */
        if (rc == CURLE_AGAIN) {
            rc = direct_wait(c, POLLOUT, deadline);
            if (rc != CURLE_OK) return rc;
            continue;
        }
        if (rc != CURLE_OK) return rc;
        p += k;
        n -= k;
    }
    return CURLE_OK;
}

/* A Content-Length over max_response is refused by direct_recv once the head is read. */
static int take(void *ud, const char *data, size_t n)
{
    return wcurl_take_body(ud, data, n) == n ? 0 : 1;
}

/* What went wrong reading an answer, beyond a CURLcode: */
enum { READ_OK = 0, READ_EOF_EARLY, READ_BAD };

/* Reads one answer into c->buf. */
static CURLcode direct_recv(wcurl *c, long long deadline, int *how)
{
    wdirect *d = &c->direct;
    /* The answer cannot be there yet: wait before the first read, which saves a read that would find nothing. That
     * needs every byte that came to be where poll() sees it: true for libcurl before 8.0, which reads from the
     * socket only what it is asked for (and OpenSSL one record at a time). Later ones may hold bytes in a buffer of
     * their own, so there the first read comes first. */
    CURLcode rc = CURLE_OK;
    if (!d->read_first) rc = direct_wait(c, POLLIN, deadline);
    if (rc != CURLE_OK) return rc;
    for (;;) {
        size_t k = 0;
        rc = curl_easy_recv(d->easy, d->in, DIRECT_IN, &k);
        if (rc == CURLE_AGAIN) {
            rc = direct_wait(c, POLLIN, deadline);
            if (rc != CURLE_OK) return rc;
            continue;
        }
        if (rc != CURLE_OK) return rc;
        size_t used = 0;
        ha_result r = k == 0 ? ha_eof(&d->answer) : ha_feed(&d->answer, d->in, k, &used, take, c);
        if (r == HA_MORE && d->answer.has_length && d->answer.length > c->max_response) {
            c->too_large = 1;
            r = HA_SINK;
        }
        switch (r) {
        case HA_MORE:
            continue;
        case HA_DONE:
            /* bytes after the answer belong to no request of ours */
            if (k == 0 || used < k) d->answer.keep_alive = 0;
            return CURLE_OK;
        case HA_BAD:
            *how = k == 0 ? READ_EOF_EARLY : READ_BAD;
            return k == 0 ? CURLE_PARTIAL_FILE : CURLE_WEIRD_SERVER_REPLY;
        case HA_SINK:
            return CURLE_WRITE_ERROR;
        default:
            c->no_memory = 1;
            return CURLE_OUT_OF_MEMORY;
        }
    }
}

/* Writes the request: head and body in one piece when they fit in d->out, else the head, then the body. */
static CURLcode direct_write_request(wcurl *c, wcurl_url *u, int post, const char *body, size_t body_len,
                                     long long deadline, int *touched)
{
    wdirect *d = &c->direct;
    if (!post) return direct_send(c, u->get_head, u->get_head_len, deadline, touched);
    /* the Content-Length digits, then the blank line */
    char length[32];
    char *end = length + sizeof length, *q = end - 4;
    memcpy(q, "\r\n\r\n", 4);
    size_t v = body_len;
    do {
        *--q = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    size_t ln = (size_t)(end - q);
    size_t head = u->post_head_len + ln;
    int whole = head + body_len <= DIRECT_OUT;
    /* head <= DIRECT_OUT: wdirect_prepare_url takes no URL whose head would not fit */
    memcpy(d->out, u->post_head, u->post_head_len);
    memcpy(d->out + u->post_head_len, q, ln);
    if (whole) {
        memcpy(d->out + head, body, body_len);
        return direct_send(c, d->out, head + body_len, deadline, touched);
    }
    CURLcode rc = direct_send(c, d->out, head, deadline, touched);
    if (rc == CURLE_OK) rc = direct_send(c, body, body_len, deadline, touched);
    return rc;
}

/* --- one exchange ------------------------------------------------------------------------------------------ */

/* The reason and message of a failed exchange (rc from sending or reading), in libcurl's words. */
static const char *failure(wcurl *c, CURLcode rc, int how, int touched, long long started)
{
    const http_answer *a = &c->direct.answer;
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        snprintf(c->errbuf, sizeof c->errbuf, "Operation timed out after %lld milliseconds with %llu bytes received",
                 now_ms() - started, a->body_bytes);
        /* as libcurl has it: a timeout before any byte of the request went out is a connect failure */
        return touched ? "timeout" : "connect";
    case CURLE_WRITE_ERROR:
    case CURLE_OUT_OF_MEMORY:
        return wcurl_sink_failure(c);
    case CURLE_PARTIAL_FILE:
    case CURLE_WEIRD_SERVER_REPLY:
        if (ha_missing(a) > 0)
            snprintf(c->errbuf, sizeof c->errbuf, "transfer closed with %llu bytes remaining to read",
                     ha_missing(a));
        else snprintf(c->errbuf, sizeof c->errbuf, "%s", a->message != NULL ? a->message : "weird server reply");
        return how == READ_EOF_EARLY ? "recv" : "other";
    case CURLE_SEND_ERROR:
        if (c->errbuf[0] == '\0') snprintf(c->errbuf, sizeof c->errbuf, "Send failure");
        return "send";
    case CURLE_RECV_ERROR:
        if (c->errbuf[0] == '\0') snprintf(c->errbuf, sizeof c->errbuf, "Recv failure");
        return "recv";
    default:
        if (c->errbuf[0] == '\0') snprintf(c->errbuf, sizeof c->errbuf, "%s", curl_easy_strerror(rc));
        return wcurl_reason(c->direct.easy, rc);
    }
}

int wdirect_request(lua_State *L, wcurl *c, wcurl_url *u, int post, const char *body, size_t body_len)
{
    wdirect *d = &c->direct;
    if (d->easy != NULL &&
        (c->fresh || d->origin_len != u->origin_len || memcmp(d->origin, u->origin, u->origin_len) != 0))
        direct_close(d);
    /* the server closed it while idle (or sent what nobody asked for): nothing was sent on it */
    if (d->easy != NULL && !direct_alive(d)) direct_close(d);
    /* a new connection where the environment names a proxy: libcurl's to make, with the whole exchange */
    if (d->easy == NULL && proxy_in_env(u)) return 0;
    long long started = now_ms();
    long long deadline = started + c->timeout_ms;
    c->requests++;
    c->fresh = 0;
    c->errbuf[0] = '\0';
    int maybe_resent = 0;
    if (d->in == NULL) d->in = malloc(DIRECT_IN);
    if (d->out == NULL) d->out = malloc(DIRECT_OUT);
    if (d->in == NULL || d->out == NULL) {
        snprintf(c->errbuf, sizeof c->errbuf, "not enough memory");
        return wcurl_push_result(L, c, 0, "other", 0);
    }

    for (int attempt = 0;; attempt++) {
        int reused = d->easy != NULL;
        if (d->easy == NULL) {
            const char *reason = "other";
            if (direct_connect(c, u, deadline - now_ms(), &reason) != CURLE_OK)
                return wcurl_push_result(L, c, 0, reason, maybe_resent);
        }
        ha_reset(&d->answer);
        c->len = 0;
        c->too_large = c->no_memory = 0;
        c->errbuf[0] = '\0';
        int touched = 0, how = READ_OK;
        CURLcode rc = direct_write_request(c, u, post, body, body_len, deadline, &touched);
        if (rc == CURLE_OK) rc = direct_recv(c, deadline, &how);
        if (rc == CURLE_OK) break;
        /* libcurl's rule: a reused connection that died before any byte of the answer came gets the request once
         * more, on a new connection; it may have reached the server, since a write was made */
        int died = rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR || how == READ_EOF_EARLY;
        /* (not when a proxy has come into the environment since: the new connection would be libcurl's to make) */
        if (reused && attempt == 0 && died && !d->answer.saw_bytes && !proxy_in_env(u)) {
            maybe_resent = touched;
            direct_close(d);
            continue;
        }
        const char *reason = failure(c, rc, how, touched, started);
        direct_close(d);
        return wcurl_push_result(L, c, 0, reason, maybe_resent);
    }
    if (!d->answer.keep_alive) direct_close(d);
    return wcurl_push_result(L, c, d->answer.status, NULL, maybe_resent);
}
