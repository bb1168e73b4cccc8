/* An HTTP/1.x answer read as it arrives, in pieces of any size: status line, header fields, and a body framed by
 * Content-Length, chunked transfer coding, or the end of the connection. It does no I/O and knows nothing of Lua:
 * the curl transport's direct exchange (curl_direct.c) feeds it what the socket gives, and the fuzzer feeds it
 * anything. */
#ifndef WECHAT_HTTP_ANSWER_H
#define WECHAT_HTTP_ANSWER_H

#include <stddef.h>

/* libcurl's own limit on an answer's header section (CURL_MAX_HTTP_HEADER) */
#define HA_HEAD_MAX (100 * 1024)

typedef enum {
    HA_MORE = 0,  /* all of it taken, the answer goes on */
    HA_DONE,      /* the answer ended; *used tells how much of the piece was its */
    HA_BAD,       /* not an HTTP/1.x answer we can read: message says why */
    HA_SINK,      /* the body sink refused a piece */
    HA_NO_MEMORY,
} ha_result;

/* Takes n bytes of body; returns 0, or nonzero to stop the answer (HA_SINK). */
typedef int (*ha_sink)(void *ud, const char *data, size_t n);

typedef struct {
    int state;
    char *head;                     /* the header section so far (malloc'd, at most HA_HEAD_MAX) */
    size_t head_len, head_cap;
    int status;                     /* the final answer's status, once its head is read */
    int keep_alive;                 /* the connection may carry the next request after this answer */
    int saw_bytes;                  /* any byte of an answer arrived */
    unsigned long long remaining;   /* of the Content-Length body, or of the chunk under way */
    unsigned long long length;      /* the Content-Length, when the answer gave one (has_length) */
    int has_length;
    unsigned long long body_bytes;  /* body bytes handed to the sink */
    size_t line_len;                /* of the chunk size line or trailer line under way */
    size_t trailer_len;             /* of the trailer section so far */
    int digits, saw_digit, in_ext;  /* chunk size line: its significant hex digits, any digit, in an extension */
    int cr;                         /* a CR after chunk data */
    const char *message;            /* why HA_BAD (a constant) */
} http_answer;

/* Ready for a new answer. The buffer of a previous one is kept for reuse. */
void ha_reset(http_answer *a);

/* Frees the head buffer. */
void ha_free(http_answer *a);

/* Reads the piece data[0..n): body bytes go to sink. Returns HA_MORE when all of it was taken and more is needed,
 * HA_DONE when the answer ended (*used bytes of the piece were its; the rest is not), or an error. */
ha_result ha_feed(http_answer *a, const char *data, size_t n, size_t *used, ha_sink sink, void *ud);

/* The connection ended (a clean close). HA_DONE when that ends the answer (a body read until the close), else
 * HA_BAD with message saying what was missing, in libcurl's words where it has them. */
ha_result ha_eof(http_answer *a);

/* The body bytes still missing when ha_eof ended a Content-Length body early (for the message). */
unsigned long long ha_missing(const http_answer *a);

#endif
