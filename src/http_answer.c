/* Reads HTTP/1.x answers in pieces (see http_answer.h). Only what a client of one origin needs: the status, whether
 * the connection may carry the next request, and the body, framed as RFC 9112 section 6 says. Anything it cannot
 * read with certainty is HA_BAD, and the caller closes the connection: a byte taken as the wrong answer's would be
 * worse than a failed request. */
#include <stdlib.h>
#include <string.h>

#include "http_answer.h"

enum {
    S_HEAD = 0,
    S_LEN,          /* a Content-Length body */
    S_UNTIL_CLOSE,  /* a body that ends with the connection */
    S_CHUNK_SIZE,   /* the size line of a chunk */
    S_CHUNK_DATA,
    S_CHUNK_END,    /* the CRLF after a chunk's data */
    S_TRAILER,      /* trailer fields after the last chunk, up to an empty line */
    S_DONE,
};

#define HEAD_FIRST_CAP 1024
/* a chunk size line with extensions, and a trailer line */
#define LINE_MAX_BYTES 4096
/* 15 hex digits: below 2^60, so a size never overflows */
#define CHUNK_DIGITS_MAX 15

void ha_reset(http_answer *a)
{
    char *head = a->head;
    size_t cap = a->head_cap;
    memset(a, 0, sizeof *a);
    a->head = head;
    a->head_cap = cap;
    a->state = S_HEAD;
}

void ha_free(http_answer *a)
{
    free(a->head);
    a->head = NULL;
    a->head_cap = a->head_len = 0;
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* s[0..n) equals the lowercase word w, ignoring case */
static int same_word(const char *s, size_t n, const char *w)
{
    size_t wn = strlen(w);
    if (n != wn) return 0;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)s[i]) != w[i]) return 0;
    return 1;
}

static int is_space(int c)
{
    return c == ' ' || c == '\t';
}

/* Whether a comma-separated token of the field value v[0..n) is w (ignoring case); *last (when not NULL) is set
 * to whether the last non-empty token is, and left as it was when there is none. */
static int has_token(const char *v, size_t n, const char *w, int *last)
{
    int any = 0;
    size_t i = 0;
    while (i <= n) {
        size_t j = i;
        while (j < n && v[j] != ',') j++;
        size_t s = i, e = j;
        while (s < e && is_space((unsigned char)v[s])) s++;
        while (e > s && is_space((unsigned char)v[e - 1])) e--;
        int match = same_word(v + s, e - s, w);
        if (match) any = 1;
        if (last != NULL && e > s) *last = match;
        i = j + 1;
    }
    return any;
}

static ha_result bad(http_answer *a, const char *why)
{
    a->message = why;
    a->keep_alive = 0;
    return HA_BAD;
}

/* The head a->head[0..a->head_len) is whole (it ends with an empty line): reads the status and the framing. */
static ha_result parse_head(http_answer *a)
{
    const char *p = a->head, *end = a->head + a->head_len;
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    size_t n = (size_t)(eol - p);
    if (n > 0 && p[n - 1] == '\r') n--;
    /* "HTTP/1.x SSS" then a space or the end of the line */
    if (n < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ')
        return bad(a, "Unsupported HTTP version in response");
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9') return bad(a, "Invalid status line");
        status = status * 10 + (p[i] - '0');
    }
    if (n > 12 && p[12] != ' ') return bad(a, "Invalid status line");
    if (status < 100) return bad(a, "Invalid status line");
    int http10 = p[7] == '0';

    int close = 0, keep = 0, coded = 0, chunked = 0, folded = 0, has_length = 0;
    unsigned long long length = 0;
    for (p = eol + 1; p < end;) {
        eol = memchr(p, '\n', (size_t)(end - p));
        n = (size_t)(eol - p);
        if (n > 0 && p[n - 1] == '\r') n--;
        const char *line = p;
        p = eol + 1;
        if (n == 0) break;
        /* an obsolete folded line continues the field before it, which may have been one we act on: read no
         * further, but take no chance with the connection either */
        if (is_space((unsigned char)line[0])) {
            folded = 1;
            continue;
        }
        const char *colon = memchr(line, ':', n);
        if (colon == NULL) return bad(a, "Invalid header line in response");
        size_t name_len = (size_t)(colon - line);
        const char *v = colon + 1;
        size_t vn = n - name_len - 1;
        while (vn > 0 && is_space((unsigned char)v[0])) v++, vn--;
        while (vn > 0 && is_space((unsigned char)v[vn - 1])) vn--;
        if (same_word(line, name_len, "content-length")) {
            if (vn == 0 || vn > 18) return bad(a, "Invalid Content-Length in response");
            unsigned long long value = 0;
            for (size_t i = 0; i < vn; i++) {
                if (v[i] < '0' || v[i] > '9') return bad(a, "Invalid Content-Length in response");
                value = value * 10 + (unsigned long long)(v[i] - '0');
            }
            if (has_length && value != length) return bad(a, "Conflicting Content-Length values in response");
            has_length = 1;
            length = value;
        } else if (same_word(line, name_len, "transfer-encoding")) {
            /* the codings of all such lines make one list: the body is chunked when its last coding is */
            int last = -1;
            has_token(v, vn, "chunked", &last);
            /* a line without a coding changes nothing */
            if (last >= 0) {
                chunked = last;
                coded = 1;
            }
        } else if (same_word(line, name_len, "connection")) {
            if (has_token(v, vn, "close", NULL)) close = 1;
            if (has_token(v, vn, "keep-alive", NULL)) keep = 1;
        }
    }

    if (status == 101) return bad(a, "Unexpected 101 Switching Protocols");
    if (status < 200) {
        /* an interim answer (100 Continue, 103 Early Hints): the final one follows */
        a->head_len = 0;
        return HA_MORE;
    }
    a->status = status;
    a->keep_alive = http10 ? keep && !close : !close;
    /* RFC 9112 6.1: after a coded HTTP/1.0 answer, or one with both framings (one of the two is a lie somebody
     * was told), the connection is closed */
    if (folded || (coded && (http10 || has_length))) a->keep_alive = 0;
    if (status == 204 || status == 304) {
        a->state = S_DONE;
    } else if (coded && chunked) {
        a->state = S_CHUNK_SIZE;
    } else if (coded) {
        a->keep_alive = 0;
        a->state = S_UNTIL_CLOSE;
    } else if (has_length) {
        a->has_length = 1;
        a->length = a->remaining = length;
        a->state = length == 0 ? S_DONE : S_LEN;
    } else {
        a->keep_alive = 0;
        a->state = S_UNTIL_CLOSE;
    }
    a->remaining = a->state == S_LEN ? length : 0;
    return HA_MORE;
}

/* Takes bytes of the head from data; *taken tells how many were the head's. */
static ha_result take_head(http_answer *a, const char *data, size_t n, size_t *taken)
{
    size_t before = a->head_len;
    size_t room = HA_HEAD_MAX - before;
    size_t k = n < room ? n : room;
    if (before + k > a->head_cap) {
        size_t cap = a->head_cap < HEAD_FIRST_CAP ? HEAD_FIRST_CAP : a->head_cap;
        while (cap < before + k) cap *= 2;
        if (cap > HA_HEAD_MAX) cap = HA_HEAD_MAX;
        char *grown = realloc(a->head, cap);
        if (grown == NULL) return HA_NO_MEMORY;
        a->head = grown;
        a->head_cap = cap;
    }
    memcpy(a->head + before, data, k);
    a->head_len = before + k;
    /* the empty line ending the head: "\n\n" or "\n\r\n", possibly begun in an earlier piece */
    size_t from = before >= 2 ? before - 2 : 0;
    for (size_t i = from; i < a->head_len; i++) {
        const char *nl = memchr(a->head + i, '\n', a->head_len - i);
        if (nl == NULL) break;
        i = (size_t)(nl - a->head);
        if (i == 0) continue;
        size_t e = 0;
        if (a->head[i - 1] == '\n') e = i + 1;
        else if (a->head[i - 1] == '\r' && i >= 2 && a->head[i - 2] == '\n') e = i + 1;
        if (e == 0) continue;
        if (e <= before) continue; /* seen before: cannot be, the head would have ended then */
        *taken = e - before;
        a->head_len = e;
        return parse_head(a);
    }
    if (a->head_len == HA_HEAD_MAX) return bad(a, "Answer header section too large");
    *taken = k;
    return HA_MORE;
}

static ha_result give(http_answer *a, const char *data, size_t n, ha_sink sink, void *ud)
{
    if (n == 0) return HA_MORE;
    if (sink(ud, data, n) != 0) {
        a->keep_alive = 0;
        return HA_SINK;
    }
    a->body_bytes += n;
    return HA_MORE;
}

ha_result ha_feed(http_answer *a, const char *data, size_t n, size_t *used, ha_sink sink, void *ud)
{
    size_t i = 0;
    ha_result r = HA_MORE;
    if (n > 0) a->saw_bytes = 1;
    *used = 0;
    while (i < n && a->state != S_DONE) {
        size_t left = n - i, k;
        switch (a->state) {
        case S_HEAD:
            k = 0;
            r = take_head(a, data + i, left, &k);
            if (r != HA_MORE) return r;
            i += k;
            break;
        case S_LEN:
        case S_CHUNK_DATA:
            k = left < a->remaining ? left : (size_t)a->remaining;
            r = give(a, data + i, k, sink, ud);
            if (r != HA_MORE) return r;
            i += k;
            a->remaining -= k;
            if (a->remaining == 0) a->state = a->state == S_LEN ? S_DONE : S_CHUNK_END;
            break;
        case S_UNTIL_CLOSE:
            r = give(a, data + i, left, sink, ud);
            if (r != HA_MORE) return r;
            i = n;
            break;
        case S_CHUNK_SIZE: {
            int c = (unsigned char)data[i++];
            if (++a->line_len > LINE_MAX_BYTES) return bad(a, "Chunk size line too long");
            int lc = lower(c);
            int v = c >= '0' && c <= '9' ? c - '0' : lc >= 'a' && lc <= 'f' ? lc - 'a' + 10 : -1;
            if (v >= 0 && !a->in_ext) {
                /* leading zeros count as read, not toward the size's digits */
                a->saw_digit = 1;
                if (a->remaining != 0 || v != 0) {
                    if (++a->digits > CHUNK_DIGITS_MAX) return bad(a, "Chunk size too large");
                    a->remaining = a->remaining * 16 + (unsigned long long)v;
                }
            } else if (c == '\n') {
                if (!a->saw_digit) return bad(a, "Invalid chunk size");
                a->state = a->remaining == 0 ? S_TRAILER : S_CHUNK_DATA;
                a->line_len = 0;
                a->digits = a->in_ext = a->saw_digit = 0;
            } else if (c == ';' || is_space(c) || c == '\r') {
                /* an extension (skipped to the line end), or the line end's CR */
                if (!a->saw_digit) return bad(a, "Invalid chunk size");
                a->in_ext = 1;
            } else if (!a->in_ext) {
                return bad(a, "Invalid chunk size");
            }
            break;
        }
        case S_CHUNK_END: {
            int c = (unsigned char)data[i++];
            if (c == '\n') {
                a->state = S_CHUNK_SIZE;
                a->cr = 0;
                a->remaining = 0;
            } else if (c != '\r' || a->cr++ > 0) {
                return bad(a, "Chunk data not followed by CRLF");
            }
            break;
        }
        case S_TRAILER: {
            int c = (unsigned char)data[i++];
            if (c == '\n') {
                if (a->line_len == 0) a->state = S_DONE;
                a->line_len = 0;
            } else if (c != '\r') {
                if (++a->line_len > LINE_MAX_BYTES) return bad(a, "Trailer line too long");
                if (++a->trailer_len > HA_HEAD_MAX) return bad(a, "Trailer section too large");
            }
            break;
        }
        default:
            return bad(a, "Answer reader in an unknown state");
        }
    }
    *used = i;
    return a->state == S_DONE ? HA_DONE : HA_MORE;
}

ha_result ha_eof(http_answer *a)
{
    switch (a->state) {
    case S_DONE:
        return HA_DONE;
    case S_UNTIL_CLOSE:
        a->state = S_DONE;
        return HA_DONE;
    case S_HEAD:
        return bad(a, a->saw_bytes ? "Connection closed in the answer's header" : "Empty reply from server");
    case S_LEN:
        return bad(a, "transfer closed with bytes remaining to read");
    default:
        return bad(a, "transfer closed with outstanding read data remaining");
    }
}

unsigned long long ha_missing(const http_answer *a)
{
    return a->state == S_LEN ? a->remaining : 0;
}
