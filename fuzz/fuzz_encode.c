/* Fuzz target: the generic table encoder, core.encode(value) and core.send_message(c, a, body), against the rules
 * of docs/architecture.md stated independently in harness.c.
 *
 * Input: byte 0 holds flags (bit 0: an aggressive garbage collector, so finalizers made by the input run in the
 * middle of encoding), then one value in the byte code of fz_push_value. Exact oracle: the encoder succeeds
 * exactly when the rules allow the value, its output is strict JSON (UTF-8 checked) that decodes to the value; it
 * raises "bad argument #1 to 'encode' (value...)" otherwise. When the input made weak tables or finalizers, the
 * value may change under the encoder: then only the shape of the answer is checked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static lua_State *L;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    L = fz_newstate();
    return 0;
}

/* Calls core[fname] with the value at val as argument argn (nil before it) and checks the answer. */
static void check(const char *fname, int argn, const char *root, int val, int volatile_)
{
    int base = lua_gettop(L);
    int object_root = argn != 1;
    int expect = volatile_ ? -1 : fz_encodable(L, val, object_root);
    if (object_root && expect != -1 && lua_type(L, val) == LUA_TTABLE) {
        /* send_message checks the body's msgid as opts.msgid, and makes one for true (in a copy of the body) */
        int rule = fz_raw_msgid_rule(L, 0, val);
        if (rule == 0) expect = 0;
        else if (rule == -1 && expect == 1) expect = -1;
    }
    fz_reset_counters(L);
    fz_push_core(L);
    lua_getfield(L, -1, fname);
    lua_remove(L, -2);
    for (int i = 1; i < argn; i++) lua_pushnil(L);
    lua_pushvalue(L, val);
    int rc = lua_pcall(L, argn, LUA_MULTRET, 0);
    int nres = lua_gettop(L) - base;
    if (fz_counter(L, "fz.mm") != 0) fz_die("%s ran a metamethod", fname);
    if (rc == LUA_OK) {
        size_t len, at = 0;
        const char *out = lua_tolstring(L, base + 1, &len);
        /* send_message also returns the body's msgid (nil when none). */
        if (nres < 1 || nres > (argn == 1 ? 1 : 2) || lua_type(L, base + 1) != LUA_TSTRING)
            fz_die("%s returned %d values", fname, nres);
        if (expect == 0) {
            fz_dump("output", out, len, 2048);
            fz_die("%s encoded a value the rules refuse", fname);
        }
        if (!fz_json_decode(L, out, len, &at)) {
            fz_dump("output", out, len, 2048);
            fz_die("%s wrote invalid JSON (at byte %zu)", fname, at);
        }
        if (expect == 1 && !fz_json_matches(L, -1, val)) {
            fz_dump("output", out, len, 2048);
            fz_die("%s wrote JSON that is not the value", fname);
        }
        if (nres == 2) {
            /* The body's msgid, checked (never empty) or made; nil when it has none. */
            lua_getfield(L, -1, "msgid");
            if (lua_type(L, -1) != LUA_TSTRING || wechat_rawlen(L, -1) == 0) lua_pushnil(L);
            if (!lua_rawequal(L, -1, base + 2)) fz_die("%s: the msgid returned is not the body's", fname);
        }
    } else {
        const char *msg = lua_tostring(L, -1);
        if (nres != 1 || msg == NULL) fz_die("%s raised a non-string error", fname);
        if (expect == 1 && strstr(msg, "not enough memory") == NULL)
            fz_die("%s raised on a value the rules allow: %s", fname, msg);
        if (expect == 0 && !fz_is_argerror(msg, argn, fname, root))
            fz_die("%s raised an error of the wrong shape: %s", fname, msg);
    }
    lua_settop(L, base);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_reader r = {data, size};
    uint8_t flags = fz_u8(&r);
    int base = lua_gettop(L);
    fz_values v;
    fz_values_begin(&v, L, &r);
    fz_push_value(&v);
    int val = lua_gettop(L);
    if (getenv("FZ_PRINT") != NULL) { /* FZ_PRINT=1 build/fuzz/fuzz_encode FILE: the value as Lua */
        fprintf(stderr, "flags %d%s: ", flags, v.volatile_ ? " (volatile)" : "");
        fz_print_value(L, val);
    }
    if (flags & 1) fz_gc_aggressive(L, 1);
    check("encode", 1, "value", val, v.volatile_);
    if (lua_type(L, val) == LUA_TTABLE) check("send_message", 3, "body", val, v.volatile_);
    if (flags & 1) fz_gc_aggressive(L, 0);
    fz_values_end(&v);
    lua_settop(L, base);
    /* Finalizers made by this input run now, not during the next one. */
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
