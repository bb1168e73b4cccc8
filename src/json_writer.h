/* JSON text written straight into a buffer of our own (jw_out): strings are checked as UTF-8 and escaped in one
 * pass, numbers are written locale-independently, and a generic encoder turns Lua values into JSON.
 *
 * The buffer is ours rather than a luaL_Buffer, whose fields are private and differ between Lua releases and
 * which wants the stack top where it left it. It starts in the jw_out itself (on the C stack) and moves to a
 * malloc'd block, doubling, when that is full; the block belongs to a userdata anchored in one stack slot below
 * the writer, whose __gc frees it, so a raise anywhere (a bad value, no memory) leaks nothing. The stack above
 * that slot is free for the writer's user. */
#ifndef WECHAT_JSON_WRITER_H
#define WECHAT_JSON_WRITER_H

#include <stddef.h>
#include <string.h>

#include "wechat_core.h"

/* Hidden, as wechat_core.h says. */
#pragma GCC visibility push(hidden)

/* Tables nested deeper than this raise in the generic encoder; it also stops cycles. */
#define JW_MAX_DEPTH 32

/* Longest text jw_format_num writes, NUL included. */
#define JW_NUMBUF 48

/* A Lua number as read from the stack: 5.4 integers stay exact; doubles holding an integer in the +-2^53 range
 * (but not -0.0) count as integers on both VMs. */
typedef struct jw_num {
    int isint;
    long long i;
    lua_Number n;
} jw_num;

/* Reads the number at idx (its type must be LUA_TNUMBER). */
void jw_tonum(lua_State *L, int idx, jw_num *num);

/* 1 when num is a float NaN, 2 when it is an infinity, else 0. */
int jw_num_special(const jw_num *num);

/* Writes num as text into buf (JW_NUMBUF bytes): integers without a decimal point, other finite numbers with the
 * fewest of 15, 16 or 17 significant digits that read back to the same double, '.' as decimal point whatever the
 * locale; "nan", "inf", "-inf" for the special values (callers writing JSON reject those first). Returns the
 * length, or 0 when the C library failed. */
size_t jw_format_num(char *buf, const jw_num *num);

/* An integer as jw_format_num writes it, for error messages (lua_pushfstring's %d is an int, and %f differs between
 * 5.4 and LuaJIT); returns buf (JW_NUMBUF bytes). */
const char *jw_int_text(char *buf, long long n);

/* The output: [buf, p) is written, [p, end) may be written at once. */
typedef struct jw_box jw_box;
#define JW_INLINE 4096
typedef struct jw_out {
    lua_State *L;
    char *buf;
    char *p;
    char *end;
    jw_box *box;  /* owner of buf once it left inline, else NULL */
    int slot;     /* absolute stack index anchoring box */
    char inline_buf[JW_INLINE];
} jw_out;

/* Opens w on L, pushing one anchor slot (the writer's user must leave it in place until jw_push). */
void jw_open(jw_out *w, lua_State *L);
/* Makes room for n more bytes (raises when it cannot) and returns w->p. */
char *jw_more(jw_out *w, size_t n);
/* Pushes the text written as one string and frees the block; the anchor slot stays below it. */
void jw_push(jw_out *w);

/* At least n writable bytes at w->p; advance w->p past what was written. */
static inline char *jw_room(jw_out *w, size_t n)
{
    return (size_t)(w->end - w->p) >= n ? w->p : jw_more(w, n);
}

static inline void jw_putc(jw_out *w, char c)
{
    char *o = jw_room(w, 1);
    *o = c;
    w->p = o + 1;
}

/* Raw bytes. */
void jw_add_more(jw_out *w, const char *s, size_t len);

static inline void jw_add(jw_out *w, const char *s, size_t len)
{
    if ((size_t)(w->end - w->p) >= len) {
        memcpy(w->p, s, len);
        w->p += len;
        return;
    }
    jw_add_more(w, s, len);
}

#define jw_lit(w, s) jw_add((w), "" s "", sizeof(s) - 1)

/* A finite number (see jw_format_num). */
void jw_number(jw_out *w, const jw_num *num);

/* A JSON string: quotes, escapes for '"', '\\' and control characters, everything else raw. Returns 0, or the
 * 1-based offset of the first byte of an invalid UTF-8 sequence (overlong forms, surrogates and code points above
 * U+10FFFF are invalid); the output then holds a partial string and must be abandoned (raise). */
size_t jw_string(jw_out *w, const char *s, size_t len);

/* Error messages quote user strings up to this many bytes, then "...": a message must stay small whatever the
 * input (a path repeats a key at every level). */
#define JW_SHOW_MAX 40

/* Pushes s cut to JW_SHOW_MAX bytes at a UTF-8 boundary, "..." after a cut; returns it. */
const char *jw_pushshow(lua_State *L, const char *s, size_t len);

/* The generic encoder: writes the value at idx (absolute). Errors raise
 * "bad argument #argn to 'fname' (root.path: message)"; with JW_OBJECT the value must encode as an object. */
#define JW_OBJECT 1

void jw_encode(jw_out *w, int idx, const char *fname, int argn, const char *root, int flags);

#pragma GCC visibility pop

#endif
