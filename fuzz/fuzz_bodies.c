/* Fuzz target: every KF body builder of wechat.core (src/kf_bodies.c and the JSON writer under it).
 *
 * Input: byte 0 holds flags (bit 0: an aggressive garbage collector), byte 1 the number of arguments (0..8), then
 * that many values in the byte code of fz_push_value (harness.c). Every builder is called with those values at
 * positions 1..n, and core.encode with each of them. Checked: a builder answers one string of strict JSON, an
 * object whose touser/open_kfid/code/content fields are the arguments given, or raises
 * "bad argument #N to '<builder>' (...)" with N one of its argument positions; no metamethod ever runs;
 * send_message(c, a, body) and encode follow the generic encoder's rules exactly. When the input made weak tables
 * or finalizers the values may change under the builder: then only the shape of the answer is checked (and an
 * error may be any string, e.g. Lua's "invalid key to 'next'"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static lua_State *L;

static const struct {
    const char *name;
    int last_arg;
} BUILDERS[] = {
    {"send_message", 7},      {"send_text", 6},          {"send_image", 6},         {"send_voice", 6},
    {"send_video", 8},        {"send_file", 6},          {"send_link", 6},          {"send_mini_program", 6},
    {"send_menu", 6},         {"send_location", 6},      {"send_msg_on_event", 6},  {"send_text_on_event", 5},
    {"send_menu_on_event", 5}, {"sync_msg", 3},
};
#define NBUILDERS (sizeof BUILDERS / sizeof BUILDERS[0])

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    L = fz_newstate();
    return 0;
}

/* The field path[0].path[1]... of the decoded body at idx equals argument argn (a string). */
static int field_is(int body, int args, int argn, int nargs, const char *f1, const char *f2)
{
    if (argn > nargs || lua_type(L, args + argn - 1) != LUA_TSTRING) return 1; /* a success proves it was valid */
    lua_getfield(L, body, f1);
    if (f2 != NULL) {
        if (lua_type(L, -1) != LUA_TTABLE) {
            lua_pop(L, 1);
            return 0;
        }
        lua_getfield(L, -1, f2);
        lua_remove(L, -2);
    }
    int same = lua_rawequal(L, -1, args + argn - 1);
    lua_pop(L, 1);
    return same;
}

static int is_generic_send(int args, int nargs)
{
    if (nargs < 3 || lua_type(L, args + 2) != LUA_TTABLE) return 0;
    for (int i = 4; i <= 7 && i <= nargs; i++)
        if (!lua_isnil(L, args + i - 1)) return 0;
    return 1;
}

static void check_success(const char *name, int body, int args, int nargs, int volatile_)
{
    if (!fz_json_is_object(L, body)) fz_die("%s: the body is not a JSON object", name);
    if (volatile_) return;
    int ok = 1;
    if (strcmp(name, "sync_msg") == 0) {
        static const char *const KEYS[] = {"cursor", "token", "limit", "voice_format", "open_kfid"};
        int n = 0;
        lua_pushnil(L);
        while (lua_next(L, body)) n++, lua_pop(L, 1);
        for (int i = 0; i < 5; i++) {
            lua_getfield(L, body, KEYS[i]);
            if (!lua_isnil(L, -1)) {
                n--;
                lua_getfield(L, args + 2, KEYS[i]);
                ok = ok && lua_rawequal(L, -1, -2);
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
        ok = ok && n == 0;
    } else if (strstr(name, "_on_event") != NULL) {
        ok = field_is(body, args, 3, nargs, "code", NULL);
        if (strcmp(name, "send_text_on_event") == 0) ok = ok && field_is(body, args, 4, nargs, "text", "content");
    } else if (!(strcmp(name, "send_message") == 0 && is_generic_send(args, nargs))) {
        ok = field_is(body, args, 3, nargs, "touser", NULL) && field_is(body, args, 4, nargs, "open_kfid", NULL);
        if (strcmp(name, "send_text") == 0) ok = ok && field_is(body, args, 5, nargs, "text", "content");
        if (strcmp(name, "send_image") == 0) ok = ok && field_is(body, args, 5, nargs, "image", "media_id");
        /* title and description are accepted and never sent: WeCom's video object is media_id only */
        if (strcmp(name, "send_video") == 0) {
            ok = ok && field_is(body, args, 5, nargs, "video", "media_id");
            lua_getfield(L, body, "video");
            lua_pushnil(L);
            int keys = 0;
            while (lua_type(L, -2) == LUA_TTABLE && lua_next(L, -2)) keys++, lua_pop(L, 1);
            lua_pop(L, 1);
            ok = ok && keys == 1;
        }
    }
    if (!ok) fz_die("%s: the body does not carry the arguments given", name);
}

static void call_builder(int idx, int args, int nargs, int volatile_)
{
    const char *name = BUILDERS[idx].name;
    int base = lua_gettop(L);
    int generic = strcmp(name, "send_message") == 0 && is_generic_send(args, nargs);
    int expect = generic && !volatile_ ? fz_encodable(L, args + 2, 1) : -1;
    if (expect != -1) {
        /* the body's msgid follows opts.msgid's rules; a made one goes into a copy, which decodes to another table */
        int rule = fz_raw_msgid_rule(L, args, args + 2);
        if (rule == 0) {
            expect = 0;
        } else if (rule == -1) {
            /* the body sent is a copy with a msgid added, so judge that copy: `{}` alone is no object, with a msgid
             * it is; the made msgid's value is not known here, any valid one judges the same */
            lua_newtable(L);
            lua_pushnil(L);
            while (lua_next(L, args + 2)) {
                lua_pushvalue(L, -2);
                lua_insert(L, -2);
                lua_rawset(L, -4);
            }
            lua_pushliteral(L, "msgid");
            lua_pushliteral(L, "0123456789abcdef0123456789abcdef");
            lua_rawset(L, -3);
            expect = fz_encodable(L, -1, 1) == 0 ? 0 : -1;
            lua_pop(L, 1);
        }
    }
    fz_reset_counters(L);
    fz_push_core(L);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
    for (int i = 0; i < nargs; i++) lua_pushvalue(L, args + i);
    int rc = lua_pcall(L, nargs, LUA_MULTRET, 0);
    int nres = lua_gettop(L) - base;
    if (fz_counter(L, "fz.mm") != 0) fz_die("%s ran a metamethod", name);
    if (rc == LUA_OK) {
        size_t len, at = 0;
        const char *out = lua_tolstring(L, base + 1, &len);
        /* sync_msg: the body; the send builders: the body and the msgid it carries (nil when none). */
        int sends = strcmp(name, "sync_msg") != 0;
        if (nres < 1 || nres > 1 + sends || lua_type(L, base + 1) != LUA_TSTRING)
            fz_die("%s returned %d values", name, nres);
        if (nres == 2 && !lua_isnil(L, base + 2) && lua_type(L, base + 2) != LUA_TSTRING)
            fz_die("%s returned a msgid of type %s", name, luaL_typename(L, base + 2));
        if (expect == 0) {
            fz_dump("body", out, len, 2048);
            fz_die("%s encoded a body the rules refuse", name);
        }
        if (!fz_json_decode(L, out, len, &at)) {
            fz_dump("body", out, len, 2048);
            fz_die("%s wrote invalid JSON (at byte %zu)", name, at);
        }
        if (expect == 1 && !fz_json_matches(L, -1, args + 2)) {
            fz_dump("body", out, len, 2048);
            fz_die("%s wrote JSON that is not the body", name);
        }
        check_success(name, lua_gettop(L), args, nargs, volatile_);
        if (nres == 2) {
            /* the body's msgid (a raw body's is checked, or made, as opts.msgid), nil when it has none */
            lua_getfield(L, -1, "msgid");
            if (lua_type(L, -1) != LUA_TSTRING || wechat_rawlen(L, -1) == 0) lua_pushnil(L);
            if (!lua_rawequal(L, -1, base + 2)) fz_die("%s: the msgid returned is not the body's", name);
        }
    } else {
        const char *msg = lua_tostring(L, -1);
        if (nres != 1 || msg == NULL) fz_die("%s raised a non-string error", name);
        if (expect == 1 && strstr(msg, "not enough memory") == NULL)
            fz_die("%s raised on a body the rules allow: %s", name, msg);
        if (!volatile_) {
            int shaped = 0;
            for (int n = 3; n <= BUILDERS[idx].last_arg && !shaped; n++)
                shaped = fz_is_argerror(msg, n, name, NULL);
            if (!shaped) fz_die("%s raised an error of the wrong shape: %s", name, msg);
        }
    }
    lua_settop(L, base);
}

static void call_encode(int val, int volatile_)
{
    int base = lua_gettop(L);
    int expect = volatile_ ? -1 : fz_encodable(L, val, 0);
    fz_reset_counters(L);
    fz_push_core(L);
    lua_getfield(L, -1, "encode");
    lua_remove(L, -2);
    lua_pushvalue(L, val);
    int rc = lua_pcall(L, 1, 1, 0);
    if (fz_counter(L, "fz.mm") != 0) fz_die("encode ran a metamethod");
    if (rc == LUA_OK) {
        size_t len, at = 0;
        const char *out = lua_tolstring(L, -1, &len);
        if (out == NULL) fz_die("encode returned a non-string");
        if (expect == 0) fz_die("encode encoded a value the rules refuse");
        if (!fz_json_decode(L, out, len, &at)) fz_die("encode wrote invalid JSON (at byte %zu)", at);
        if (expect == 1 && !fz_json_matches(L, -1, val)) fz_die("encode wrote JSON that is not the value");
    } else {
        const char *msg = lua_tostring(L, -1);
        if (msg == NULL) fz_die("encode raised a non-string error");
        if (expect == 1) fz_die("encode raised on a value the rules allow: %s", msg);
        if (expect == 0 && !fz_is_argerror(msg, 1, "encode", "value"))
            fz_die("encode raised an error of the wrong shape: %s", msg);
    }
    lua_settop(L, base);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_reader r = {data, size};
    uint8_t flags;
    int nargs;
    int base = lua_gettop(L);
    fz_values v;
    int args = fz_push_args(L, &r, &v, "fuzz_bodies", &nargs, &flags);
    if (flags & 1) fz_gc_aggressive(L, 1);
    for (size_t b = 0; b < NBUILDERS; b++) call_builder((int)b, args, nargs, v.volatile_);
    for (int i = 0; i < nargs; i++) call_encode(args + i, v.volatile_);
    if (flags & 1) fz_gc_aggressive(L, 0);
    lua_settop(L, base);
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
