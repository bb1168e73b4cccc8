/* Fuzz target: the response handling of the libcurl transport (src/curl_transport.c, src/curl_direct.c): the
 * direct exchange's HTTP reading (src/http_answer.c) over a connection libcurl opened, the bounded accumulation of
 * the body, max_response, the reuse of the buffer between requests, and the results and error messages of
 * handle:request(); libcurl's own HTTP parsing through the write callback.
 *
 * In process and without a network: this file includes src/curl_transport.c, so it can point the easy handle of a
 * real core.curl_new() handle at an abstract unix socket of this process (CURLOPT_ABSTRACT_UNIX_SOCKET; the URL
 * stays http://127.0.0.1:9/...), where a thread per connection sends the response from the fuzz input and then
 * closes for writing. (CURLOPT_OPENSOCKETFUNCTION with a socketpair would be simpler, but libcurl 7.88 calls
 * connect() on such sockets all the same: curl/curl#10626.) It also calls the write callback directly with
 * fuzzed chunk sizes.
 *
 * Input: byte 0 flags (bits 0-1: 0 one request, 1 two requests on one handle, 2 the write callback alone; bit 2:
 * GET instead of POST), byte 1 picks max_response, then per request a response: byte "how" (0: raw bytes from the
 * input; 1: status line + Content-Length; 2: chunked with fuzzed chunk sizes; 3: close-delimited) and its data.
 * Framed responses carry a payload of a fuzzed pattern repeated (up to 2.5 MiB), and the expected answer is exact:
 * `status, payload, maybe_resent` when it fits in max_response, else `nil, "too_large", "response too large (over
 * N bytes)"`.
 * For raw responses: a status and a body no larger than max_response, or nil, a known reason, a message (never the
 * access token of the URL) and maybe_resent (false on the first request of a handle). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"

#include "curl_transport.c" /* from src/ (-I) */

#define TOKEN "FUZZ_SECRET_TOKEN_0123456789"
#define URL "http://127.0.0.1:9/cgi-bin/kf/send_msg?access_token=" TOKEN
#define MAX_CONNS 4
#define MAX_PAYLOAD ((size_t)5 << 19)

static lua_State *L;

static const long long MAX_RESPONSES[] = {1, 2, 16, 100, 1024, 16384, 16385, 65536, 1 << 20, (1 << 20) + 1, 0};
#define NMAX (sizeof MAX_RESPONSES / sizeof MAX_RESPONSES[0])
static const int STATUSES[] = {200, 201, 400, 404, 500, 503};

typedef struct response {
    char *bytes; /* the whole response as sent */
    size_t len;
    int framed;
    int status;
    const char *payload;
    size_t payload_len;
} response;

typedef struct conn {
    int fd;
    pthread_t thread;
    const response *res;
} conn;

typedef struct server {
    const response *res[2];
    int nres, next;
    conn conns[MAX_CONNS];
    int nconns;
    pthread_t acceptor;
} server;

/* Made once: the listening socket and the pipe that tells an acceptor to stop. */
static int listen_fd = -1;
static int stop_pipe[2];
static char socket_name[64];

static void *writer(void *arg)
{
    conn *c = arg;
    size_t off = 0;
    while (c->res != NULL && off < c->res->len) {
        ssize_t k = send(c->fd, c->res->bytes + off, c->res->len - off, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break; /* libcurl closed its end: it has read all it wanted */
        off += (size_t)k;
    }
    shutdown(c->fd, SHUT_WR);
    return NULL;
}

/* Accepts libcurl's connections until told to stop; each gets the next response (none left: just EOF). */
static void *acceptor(void *arg)
{
    server *s = arg;
    for (;;) {
        struct pollfd p[2] = {{listen_fd, POLLIN, 0}, {stop_pipe[0], POLLIN, 0}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            fz_die("poll: %s", strerror(errno));
        }
        if (p[1].revents != 0) {
            char b;
            if (read(stop_pipe[0], &b, 1) != 1) fz_die("read on the stop pipe");
            return NULL;
        }
        int fd = accept(listen_fd, NULL, NULL);
        if (fd < 0) continue;
        if (s->nconns == MAX_CONNS) {
            close(fd);
            continue;
        }
        /* A bound on any wait, should libcurl stop reading without closing. */
        struct timeval tv = {5, 0};
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        conn *c = &s->conns[s->nconns];
        c->fd = fd;
        c->res = s->next < s->nres ? s->res[s->next++] : NULL;
        if (pthread_create(&c->thread, NULL, writer, c) != 0) fz_die("pthread_create");
        s->nconns++;
    }
}

static void listen_once(void)
{
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    int k = snprintf(socket_name, sizeof socket_name, "wechat-core-fuzz-response-%ld", (long)getpid());
    if (k < 0 || (size_t)k >= sizeof socket_name) fz_die("socket name");
    memcpy(a.sun_path + 1, socket_name, (size_t)k); /* abstract: no file, gone with the process */
    listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
                                                                           1 + (size_t)k)) != 0 ||
        listen(listen_fd, 16) != 0 || pipe(stop_pipe) != 0)
        fz_die("listening on @%s: %s", socket_name, strerror(errno));
}

static void add(response *r, size_t *cap, const void *p, size_t n)
{
    if (n == 0) return;
    if (r->len + n > *cap) {
        size_t want = (r->len + n) * 2 + 64;
        char *b = realloc(r->bytes, want);
        if (b == NULL) fz_die("out of memory");
        r->bytes = b;
        *cap = want;
    }
    memcpy(r->bytes + r->len, p, n);
    r->len += n;
}

static void addf(response *r, size_t *cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void addf(response *r, size_t *cap, const char *fmt, ...)
{
    char line[128];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= sizeof line) fz_die("header line too long");
    add(r, cap, line, (size_t)k);
}

/* Builds one response from the input; payload (when framed) points into r->bytes. */
static void make_response(fz_reader *in, response *r, char **payload_mem)
{
    size_t cap = 0;
    uint8_t how = fz_u8(in) % 4;
    memset(r, 0, sizeof *r);
    *payload_mem = NULL;
    if (how == 0) {
        const uint8_t *p;
        size_t n = fz_take(in, fz_u16(in), &p);
        add(r, &cap, p, n);
        return;
    }
    const uint8_t *pat;
    size_t plen = fz_take(in, 1 + fz_u8(in) % 8, &pat);
    size_t reps = fz_u16(in) % 4096;
    /* Megabytes (over KEEP_BUFFER and most max_response choices) one time in eight: they are slow. */
    if ((fz_u8(in) & 7) == 7) reps *= 64;
    if (plen == 0) reps = 0;
    if (reps > MAX_PAYLOAD / (plen ? plen : 1)) reps = MAX_PAYLOAD / (plen ? plen : 1);
    size_t n = plen * reps;
    char *payload = malloc(n + 1);
    if (payload == NULL) fz_die("out of memory");
    for (size_t i = 0; i < reps; i++) memcpy(payload + i * plen, pat, plen);
    *payload_mem = payload;
    r->framed = 1;
    r->status = STATUSES[fz_u8(in) % (sizeof STATUSES / sizeof STATUSES[0])];
    r->payload = payload;
    r->payload_len = n;
    addf(r, &cap, "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n", r->status);
    if (how == 1) {
        addf(r, &cap, "Content-Length: %zu\r\n\r\n", n);
        add(r, &cap, payload, n);
    } else if (how == 2) {
        addf(r, &cap, "Transfer-Encoding: chunked\r\n\r\n");
        size_t off = 0;
        while (off < n) {
            size_t k = fz_u16(in);
            k = 1 + k * (1 + fz_u8(in) % 64);
            if (k > n - off) k = n - off;
            addf(r, &cap, "%zx\r\n", k);
            add(r, &cap, payload + off, k);
            add(r, &cap, "\r\n", 2);
            off += k;
        }
        addf(r, &cap, "0\r\n\r\n");
    } else {
        addf(r, &cap, "Connection: close\r\n\r\n");
        add(r, &cap, payload, n);
    }
}

static const char *const REASONS[] = {"connect", "timeout", "resolve", "tls", "too_large", "send", "recv", "other",
                                      NULL};

/* Checks the answer of one request on top of the stack (pcall status rc, nres values). */
static void check_answer(int rc, int nres, const response *r, long long max_response, int first)
{
    if (rc != LUA_OK) fz_die("request raised: %s", lua_tostring(L, -1));
    if (nres < 2 || nres > 4) fz_die("request returned %d values", nres);
    int top = lua_gettop(L);
    if (lua_isinteger(L, top - nres + 1)) {
        size_t len;
        const char *body = lua_tolstring(L, top - nres + 2, &len);
        lua_Integer status = lua_tointeger(L, top - nres + 1);
        /* status, body, and whether libcurl may have sent the request twice */
        if (nres != 3 || body == NULL || !lua_isboolean(L, top - nres + 3))
            fz_die("request: a status without a body and a resent flag");
        if ((long long)len > max_response) fz_die("request: a body of %zu bytes over max_response", len);
        if (r != NULL && r->framed) {
            if (r->payload_len > (size_t)max_response) fz_die("request: %zu bytes accepted over the limit", len);
            if (status != r->status || len != r->payload_len || memcmp(body, r->payload, len) != 0) {
                fz_dump("got", body, len, 256);
                fz_die("request: status %lld, %zu bytes; expected %d, %zu bytes", (long long)status, len,
                       r->status, r->payload_len);
            }
        }
        return;
    }
    /* nil, reason, message[, maybe_resent]: a first request on a handle cannot have gone out twice */
    int f = top - nres + 1;
    if (nres < 3 || !lua_isnil(L, f)) fz_die("request: neither status nor nil");
    if (nres == 4 && (lua_type(L, f + 3) != LUA_TBOOLEAN || (first && lua_toboolean(L, f + 3))))
        fz_die("request: maybe_resent is %s", lua_toboolean(L, f + 3) ? "true on a first request" : "no boolean");
    const char *reason = lua_tostring(L, f + 1), *msg = lua_tostring(L, f + 2);
    if (reason == NULL || msg == NULL) fz_die("request: reason and message must be strings");
    int known = 0;
    for (int i = 0; REASONS[i] != NULL; i++) known |= strcmp(reason, REASONS[i]) == 0;
    if (!known) fz_die("request: unknown reason '%s'", reason);
    /* The local socket always accepts: these would mean the harness, not the response, failed. */
    if (strcmp(reason, "connect") == 0 || strcmp(reason, "resolve") == 0 || strcmp(reason, "tls") == 0)
        fz_die("request never reached the local socket: [%s] %s", reason, msg);
    if (strstr(msg, TOKEN) != NULL || strstr(msg, "access_token") != NULL)
        fz_die("request: the access token in an error: %s", msg);
    if (r != NULL && r->framed) {
        char want[96];
        snprintf(want, sizeof want, "response too large (over %d bytes)", (int)max_response);
        if (r->payload_len <= (size_t)max_response)
            fz_die("request failed on a response that fits: %s: %s", reason, msg);
        if (strcmp(reason, "too_large") != 0 || strcmp(msg, want) != 0)
            fz_die("request: [%s] %s, expected [too_large] %s", reason, msg, want);
    }
}

/* The write callback alone: chunks of fuzzed sizes, the buffer must hold exactly what was accepted. */
static void direct(fz_reader *in, long long max_response)
{
    wcurl c;
    memset(&c, 0, sizeof c);
    c.max_response = (size_t)max_response;
    static char chunk[70000];
    size_t total = 0;
    for (int i = 0; i < 64 && in->n > 0; i++) {
        size_t n = fz_u16(in);
        n += fz_u8(in) & 1 ? 0 : 1;
        memset(chunk, 'a' + i % 26, n);
        size_t got = wcurl_write(chunk, 1, n, &c);
        if (got != 0 && got != n) fz_die("write callback took %zu of %zu bytes", got, n);
        if (got == 0 && n != 0 && !c.too_large) fz_die("write callback refused without a reason");
        if (got == 0) break;
        total += n;
        if (c.len != total || c.len > c.cap || c.cap > c.max_response) fz_die("write callback bookkeeping");
        if (c.buf[total - 1] != 'a' + i % 26) fz_die("write callback lost bytes");
    }
    free(c.buf);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    /* Environment proxies would send the request elsewhere. */
    setenv("no_proxy", "*", 1);
    unsetenv("http_proxy");
    unsetenv("HTTP_PROXY");
    /* One reference held for the whole run, so handles do not set OpenSSL up and down for every input. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) fz_die("curl_global_init");
    listen_once();
    L = fz_newstate();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_reader in = {data, size};
    uint8_t flags = fz_u8(&in);
    long long max_response = MAX_RESPONSES[fz_u8(&in) % NMAX];
    long long limit = max_response != 0 ? max_response : DEFAULT_MAX_RESPONSE;
    int nreq = (flags & 3) == 1 ? 2 : 1;
    if ((flags & 3) >= 2) {
        direct(&in, limit);
        return 0;
    }

    response res[2];
    char *mem[2] = {NULL, NULL};
    for (int i = 0; i < nreq; i++) make_response(&in, &res[i], &mem[i]);
    server s;
    memset(&s, 0, sizeof s);
    s.nres = nreq;
    for (int i = 0; i < nreq; i++) s.res[i] = &res[i];

    int base = lua_gettop(L);
    fz_push_core(L);
    lua_getfield(L, -1, "curl_new");
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, 5);
    lua_setfield(L, -2, "timeout");
    if (max_response != 0) {
        lua_pushinteger(L, (lua_Integer)max_response);
        lua_setfield(L, -2, "max_response");
    }
    if (lua_pcall(L, 1, 2, 0) != LUA_OK || lua_isnil(L, -2)) fz_die("curl_new failed: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
    int handle = lua_gettop(L);
    wcurl *c = luaL_checkudata(L, handle, CURL_MT);
    if (curl_easy_setopt(c->easy, CURLOPT_ABSTRACT_UNIX_SOCKET, socket_name) != CURLE_OK ||
        curl_easy_setopt(c->easy, CURLOPT_PROXY, "") != CURLE_OK ||
        curl_easy_setopt(c->easy, CURLOPT_VERBOSE, getenv("FZ_VERBOSE") != NULL ? 1L : 0L) != CURLE_OK)
        fz_die("curl_easy_setopt");
    c->abstract_socket = socket_name; /* the direct exchange's connections too */
    if (pthread_create(&s.acceptor, NULL, acceptor, &s) != 0) fz_die("pthread_create");

    for (int i = 0; i < nreq; i++) {
        int top = lua_gettop(L);
        lua_getfield(L, handle, "request");
        lua_pushvalue(L, handle);
        lua_pushstring(L, flags & 4 ? "GET" : "POST");
        lua_pushliteral(L, URL);
        if (flags & 4) lua_pushnil(L);
        else lua_pushliteral(L, "{\"touser\":\"u\"}");
        int rc = lua_pcall(L, 4, LUA_MULTRET, 0);
        check_answer(rc, lua_gettop(L) - top, &res[i], limit, i == 0);
        lua_settop(L, top);
    }

    /* Closing the handle closes libcurl's ends, which ends every writer. */
    lua_getfield(L, handle, "close");
    lua_pushvalue(L, handle);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) fz_die("close raised: %s", lua_tostring(L, -1));
    if (write(stop_pipe[1], "x", 1) != 1) fz_die("write on the stop pipe");
    pthread_join(s.acceptor, NULL);
    for (int i = 0; i < s.nconns; i++) {
        shutdown(s.conns[i].fd, SHUT_RDWR);
        pthread_join(s.conns[i].thread, NULL);
        close(s.conns[i].fd);
    }
    for (int i = 0; i < nreq; i++) {
        free(res[i].bytes);
        free(mem[i]);
    }
    lua_settop(L, base);
    /* Everything this input allocated is freed before it ends: libFuzzer runs a leak check (slow) after any input
     * with more mallocs than frees. */
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
