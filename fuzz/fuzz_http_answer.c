/* Fuzz target: the HTTP/1.x answer reader of the direct exchange (src/http_answer.c), with no socket.
 *
 * Input: a flags byte, a split seed byte, then data.
 *   bit 0 clear: data is an answer as bytes. Oracle: read whole and read in pieces of 1..16 bytes (sizes from the
 *     seed) give the same outcome, status, keep-alive, body and bytes used; a body is never longer than the input;
 *     an answer that ended has a status of 200..999; a refused one says why.
 *   bit 0 set: an answer framed here from data (status 200..599, then Content-Length, chunked with extensions and a
 *     trailer, or ended by the close: bits 1-2), whose payload is the rest of the data. Exact oracle: read in
 *     pieces, it ends (after the close, for the last kind) with that status and that payload, having used every byte
 *     of it, and keeps the connection exactly for the first two kinds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "http_answer.h"

#define BODY_CAP (1 << 20)

typedef struct {
    char *p;
    size_t n;
} body;

static int sink(void *ud, const char *data, size_t n)
{
    body *b = ud;
    if (n > BODY_CAP - b->n) return 1;
    memcpy(b->p + b->n, data, n);
    b->n += n;
    return 0;
}

typedef struct {
    ha_result r;
    int status, keep_alive;
    size_t used;
    body b;
} outcome;

/* Reads data in pieces (sizes from seed; 0: whole), then the close when the answer wants more. */
static void read_answer(const char *data, size_t n, unsigned seed, outcome *o)
{
    http_answer a;
    memset(&a, 0, sizeof a);
    ha_reset(&a);
    o->b.p = malloc(BODY_CAP);
    if (o->b.p == NULL) fz_die("out of memory");
    o->b.n = 0;
    o->used = 0;
    ha_result r = HA_MORE;
    unsigned x = seed * 2654435761u + 1;
    while (o->used < n) {
        size_t piece = n - o->used;
        if (seed != 0) {
            x = x * 1103515245u + 12345u;
            size_t k = 1 + (x >> 16) % 16;
            if (k < piece) piece = k;
        }
        size_t used = 0;
        r = ha_feed(&a, data + o->used, piece, &used, sink, &o->b);
        if (used > piece) fz_die("ha_feed used %zu bytes of a piece of %zu", used, piece);
        if (r == HA_MORE && used != piece) fz_die("ha_feed wants more but used %zu of %zu", used, piece);
        o->used += r == HA_MORE || r == HA_DONE ? used : 0;
        if (r != HA_MORE) break;
    }
    if (r == HA_MORE) r = ha_eof(&a);
    if (r == HA_BAD && (a.message == NULL || a.message[0] == '\0')) fz_die("refused without a reason");
    if (r == HA_DONE && (a.status < 200 || a.status > 999)) fz_die("ended with status %d", a.status);
    if (r == HA_DONE && a.body_bytes != o->b.n) fz_die("body_bytes %llu, sink got %zu", a.body_bytes, o->b.n);
    if (o->b.n > n) fz_die("a body of %zu bytes from %zu bytes of input", o->b.n, n);
    o->r = r;
    o->status = r == HA_DONE ? a.status : 0;
    o->keep_alive = r == HA_DONE ? a.keep_alive : 0;
    ha_free(&a);
}

static void raw(const char *data, size_t n, unsigned seed)
{
    outcome whole, pieces;
    read_answer(data, n, 0, &whole);
    read_answer(data, n, seed | 1, &pieces);
    /* a refusal is a refusal wherever the pieces end; where the body stops first (the sink's cap) it may differ */
    int same = whole.r == pieces.r && whole.status == pieces.status && whole.keep_alive == pieces.keep_alive &&
               (whole.r != HA_DONE || (whole.used == pieces.used && whole.b.n == pieces.b.n &&
                                       memcmp(whole.b.p, pieces.b.p, whole.b.n) == 0));
    if (!same) {
        fz_dump("input", data, n, 400);
        fz_die("whole: result %d status %d keep %d used %zu body %zu; in pieces: %d %d %d %zu %zu", whole.r,
               whole.status, whole.keep_alive, whole.used, whole.b.n, pieces.r, pieces.status, pieces.keep_alive,
               pieces.used, pieces.b.n);
    }
    free(whole.b.p);
    free(pieces.b.p);
}

static void append(char **p, size_t *n, size_t *cap, const char *s, size_t k)
{
    if (*n + k > *cap) {
        *cap = (*n + k) * 2 + 256;
        char *q = realloc(*p, *cap);
        if (q == NULL) fz_die("out of memory");
        *p = q;
    }
    memcpy(*p + *n, s, k);
    *n += k;
}

static void framed(fz_reader *in, uint8_t flags, unsigned seed)
{
    int kind = (flags >> 1) & 3; /* 0 Content-Length, 1 chunked, 2 and 3 until the close */
    int status = 200 + fz_u16(in) % 400;
    if (status == 204 || status == 304) status = 200;
    const uint8_t *payload;
    size_t plen = fz_take(in, in->n, &payload);
    char *msg = NULL, line[128];
    size_t n = 0, cap = 0;
    int k = snprintf(line, sizeof line, "HTTP/1.1 %d Fuzzed\r\nServer: fz\r\n", status);
    append(&msg, &n, &cap, line, (size_t)k);
    if (kind == 0) {
        k = snprintf(line, sizeof line, "content-length:  %zu \r\n\r\n", plen);
        append(&msg, &n, &cap, line, (size_t)k);
        append(&msg, &n, &cap, (const char *)payload, plen);
    } else if (kind == 1) {
        append(&msg, &n, &cap, "Transfer-Encoding: Chunked\r\n\r\n", strlen("Transfer-Encoding: Chunked\r\n\r\n"));
        unsigned x = seed + 7;
        for (size_t off = 0; off < plen;) {
            x = x * 1103515245u + 12345u;
            size_t c = 1 + (x >> 16) % 300;
            if (c > plen - off) c = plen - off;
            k = snprintf(line, sizeof line, (x & 1) ? "%zX;ext=\"a b\"\r\n" : "%zx\r\n", c);
            append(&msg, &n, &cap, line, (size_t)k);
            append(&msg, &n, &cap, (const char *)payload + off, c);
            append(&msg, &n, &cap, "\r\n", 2);
            off += c;
        }
        append(&msg, &n, &cap, "0\r\nX-Trailer: t\r\n\r\n", strlen("0\r\nX-Trailer: t\r\n\r\n"));
    } else {
        append(&msg, &n, &cap, "\r\n", 2);
        append(&msg, &n, &cap, (const char *)payload, plen);
    }
    outcome o;
    read_answer(msg, n, seed | 1, &o);
    if (o.r != HA_DONE || o.status != status || o.b.n != plen || memcmp(o.b.p, payload, plen) != 0 || o.used != n ||
        o.keep_alive != (kind < 2)) {
        fz_dump("answer", msg, n, 400);
        fz_die("framed kind %d: result %d status %d (sent %d) body %zu (sent %zu) used %zu of %zu keep %d", kind, o.r,
               o.status, status, o.b.n, plen, o.used, n, o.keep_alive);
    }
    free(o.b.p);
    free(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_reader in = {data, size};
    uint8_t flags = fz_u8(&in);
    unsigned seed = fz_u8(&in);
    if (flags & 1) framed(&in, flags, seed);
    else raw((const char *)in.p, in.n, seed);
    return 0;
}
