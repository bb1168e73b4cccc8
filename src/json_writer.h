/* JSON text written straight into a luaL_Buffer: strings are checked as UTF-8 and escaped in one pass, numbers are
 * written locale-independently, and a generic encoder turns Lua values into JSON.
 *
 * luaL_Buffer keeps part of its state on the Lua stack (5.4: one slot; LuaJIT/5.1: a variable number of string
 * pieces). Every function here that writes expects the stack top to be exactly where the previous buffer
 * operation left it, and leaves it there again. */
#ifndef WECHAT_JSON_WRITER_H
#define WECHAT_JSON_WRITER_H

#include <stddef.h>
#include <string.h>

#include "wechat_core.h"

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

/* A window on the free space of a luaL_Buffer: [p, end) may be written at once. jw_more, the only place that
 * calls the buffer, commits what is written and opens the next window; writing needs no call per fragment.
 *
 * luaL_Buffer wants the stack top exactly where its previous operation left it whenever it is called. With a
 * spill table (an absolute index below the buffer, from jw_spill_table), jw_more moves whatever lies above that
 * level into the table, calls the buffer, and pushes the values back in the same order, so a writer may hold
 * values on the stack (the generic encoder does); their absolute positions may change on LuaJIT, whose buffer
 * keeps a varying number of pieces on the stack, so such a writer uses indices relative to the top. Without a
 * spill table the stack must be at the buffer's level whenever a write may need more room.
 * Open after luaL_buffinit; close, with the stack back at the buffer's level, before luaL_pushresult. */
typedef struct jw_out {
    luaL_Buffer *B;
    char *start; /* written since the last commit: [start, p) */
    char *p;
    char *end;
    int level; /* stack top right after the last buffer operation */
    int spill; /* absolute index of the spill table, 0: none */
} jw_out;

/* The most one reservation asks for: it must fit LuaJIT's fixed buffer (LUAL_BUFFERSIZE, 8 KiB there). */
#define JW_CHUNK 512

void jw_open(jw_out *w, luaL_Buffer *B, int spill);
char *jw_more(jw_out *w, size_t n); /* n <= JW_CHUNK */
void jw_close(jw_out *w);

/* At least n (<= JW_CHUNK) writable bytes at w->p; advance w->p past what was written. */
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

/* Pushes an empty spill table for jw_open; call it before luaL_buffinit. Returns its absolute index. */
int jw_spill_table(lua_State *L);

/* The generic encoder: writes the value at idx (absolute). The writer must have a spill table. Errors raise
 * "bad argument #argn to 'fname' (root.path: message)"; with JW_OBJECT the value must encode as an object. */
#define JW_OBJECT 1

void jw_encode(jw_out *w, int idx, const char *fname, int argn, const char *root, int flags);

#endif
