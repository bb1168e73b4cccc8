/* Shared helpers of the libFuzzer targets of wechat.core: input reading, a Lua 5.4 state with wechat.core built
 * in, Lua line coverage for libFuzzer, a strict JSON decoder, Lua values decoded from fuzz input and an
 * independent statement of the generic encoder's rules (the oracle the targets compare wechat.core against).
 *
 * A target aborts (fz_die) when wechat.core breaks a rule: libFuzzer then saves the input like a crash. */
#ifndef FZ_HARNESS_H
#define FZ_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

/* The module's own shims (wechat_isinteger, wechat_tointeger, wechat_rawlen): the targets build against Lua 5.4
 * and, for the body builders and the encoder, against LuaJIT too (the *_jit targets). */
#include "compat.h"

#if LUA_VERSION_NUM < 502
#define FZ_JIT 1
#define FZ_ABSINDEX(L, i) ((i) > 0 || (i) <= LUA_REGISTRYINDEX ? (i) : lua_gettop(L) + (i) + 1)
#else
#define FZ_JIT 0
#define FZ_ABSINDEX(L, i) lua_absindex((L), (i))
#endif

/* Makes the collector run all the time (on), or as by default (off), so finalizers run in the middle of a call. */
void fz_gc_aggressive(lua_State *L, int on);

/* --- input ------------------------------------------------------------------------------------------ */

/* Reads the fuzz input front to back; past its end every read gives zeros, so any input decodes. */
typedef struct fz_reader {
    const uint8_t *p;
    size_t n;
} fz_reader;

uint8_t fz_u8(fz_reader *r);
uint16_t fz_u16(fz_reader *r);
uint32_t fz_u32(fz_reader *r);
uint64_t fz_u64(fz_reader *r);
/* Up to want bytes; *out points into the input. Returns how many there are. */
size_t fz_take(fz_reader *r, size_t want, const uint8_t **out);

/* --- failures --------------------------------------------------------------------------------------- */

/* Prints "wechat.core fuzz finding: ..." and aborts, which libFuzzer reports as a crash with the input saved. */
__attribute__((noreturn, format(printf, 1, 2))) void fz_die(const char *fmt, ...);

/* Prints a Lua string (possibly binary) escaped, at most limit bytes of it, to stderr. */
void fz_dump(const char *label, const char *s, size_t len, size_t limit);

/* --- the Lua state ---------------------------------------------------------------------------------- */

/* The repository root (compiled in, FZ_ROOT; WECHAT_ROOT in the environment wins). */
const char *fz_root(void);

/* A new Lua 5.4 state: standard libraries, package.path = <root>/lua, package.cpath = the Debian Lua 5.4 modules
 * (lxp, cjson), package.preload["wechat.core"] = the instrumented luaopen_wechat_core linked into the fuzzer.
 * Leaves the wechat.core table in the registry as "fz.core". Aborts on failure. */
lua_State *fz_newstate(void);

/* Pushes the wechat.core table. */
void fz_push_core(lua_State *L);

/* Turns on Lua line coverage: each (chunk, line) and each line-to-line step counts as a feature in libFuzzer's
 * extra counters, so the fuzzer also sees coverage inside Lua modules such as wechat.work.callback. */
void fz_lua_coverage(lua_State *L);

/* The registry counters the value decoder's traps bump: metamethods that must never run ("fz.mm") and
 * finalizers that ran ("fz.gc"). */
lua_Integer fz_counter(lua_State *L, const char *name);
void fz_reset_counters(lua_State *L);

/* --- JSON ------------------------------------------------------------------------------------------- */

/* 1 when s[0..n) is UTF-8 as JSON allows it (no overlong forms, no surrogates, nothing above U+10FFFF). */
int fz_utf8_valid(const char *s, size_t n);

/* Strict RFC 8259 decoding of s[0..n): one value, surrounded by optional whitespace. Objects and arrays become
 * tables with the metatables fz_object_mt / fz_array_mt, null becomes a NULL light userdata, numbers go through
 * lua_stringtonumber (integers stay integers). A repeated object key is an error. Pushes the value and returns
 * 1, or pushes nothing and returns 0 with *err_at = byte offset of the problem. */
int fz_json_decode(lua_State *L, const char *s, size_t n, size_t *err_at);
int fz_json_is_object(lua_State *L, int idx);
int fz_json_is_array(lua_State *L, int idx);

/* --- Lua values from fuzz input --------------------------------------------------------------------- */

typedef struct fz_values {
    lua_State *L;
    fz_reader *r;
    int tables;     /* absolute index of a table of every table made so far (targets of back references) */
    int ntables;
    int nodes;      /* values made, bounded */
    size_t bytes;   /* string bytes made, bounded */
    int volatile_;  /* weak tables or finalizers were made: the values may change while wechat.core runs */
} fz_values;

/* Pushes the table of made tables and prepares v; pair with fz_values_end. */
void fz_values_begin(fz_values *v, lua_State *L, fz_reader *r);
/* Decodes and pushes one value: nil, booleans, integers, floats (NaN, infinities, -0), strings (raw bytes, often
 * invalid UTF-8, KF field names, huge ones by repetition), cjson.null, array/object/mixed/sparse tables, back
 * references (cycles, shared tables), metatables with __jsontype, weak modes, finalizers that change the tables
 * and traps for metamethods, functions, userdata, threads. */
void fz_push_value(fz_values *v);
void fz_values_end(fz_values *v);

/* The input format of fuzz_bodies and fuzz_family: byte 0 flags, byte 1 the number of arguments (0..8), then the
 * values. Pushes the table of made tables and the arguments, prints them when FZ_PRINT is set (name: the target),
 * and returns the stack index of the first argument; *nargs and *flags are set. */
int fz_push_args(lua_State *L, fz_reader *r, fz_values *v, const char *name, int *nargs, uint8_t *flags);

/* Prints the value at idx as Lua source (tables once each, later mentions as <table N>; metatables shown), to
 * turn a finding into a spec. */
void fz_print_value(lua_State *L, int idx);

/* --- the generic encoder's rules (docs/architecture.md), stated independently ------------------------- */

/* 1 when the value at idx must encode, 0 when the encoder must raise. With object_root the top value must
 * encode as a JSON object. */
int fz_encodable(lua_State *L, int idx, int object_root);

/* How send_message(c, a, body) treats the msgid of the body table at body, with the client at client (0: none), by
 * the rules of opts.msgid: 1 when the body goes out as it is (a msgid of 1..32 bytes of [0-9a-zA-Z_-], or none while
 * the client has no auto_msgid), 0 when the call must raise (any other msgid: "", bad bytes, too long, not a
 * string), -1 when a msgid is made and added (msgid = true, or none while the client has auto_msgid). Raw reads. */
int fz_raw_msgid_rule(lua_State *L, int client, int body);

/* 1 when the decoded JSON at json is what the (encodable) value at value encodes to. */
int fz_json_matches(lua_State *L, int json, int value);

/* 1 when msg is "bad argument #<argn> to '<fname>' (<root>..." ending in ")". root may be NULL. */
int fz_is_argerror(const char *msg, int argn, const char *fname, const char *root);

#endif
