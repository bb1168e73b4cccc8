/* Fuzz target: the KF desk builders of wechat.core (src/kf_family_bodies.c: accounts, servicers, session state,
 * customers, statistics) and the JSON writer under them.
 *
 * Input: the format of fuzz_bodies (byte 0 flags, bit 0 an aggressive garbage collector; byte 1 the number of
 * arguments, 0..8; then that many values in the byte code of fz_push_value, harness.c). Every builder is called
 * with those values at positions 1..n. Checked: a POST builder answers one string of strict JSON, an object whose
 * plain string fields (open_kfid, external_userid, name, media_id, scene, servicer_userid) are the arguments
 * given; a GET builder answers one table holding its plain arguments; or the builder raises
 * "bad argument #N to '<public name>' (...)" with N one of its argument positions; no metamethod ever runs. When
 * the input made weak tables or finalizers the values may change under the builder: then only the shape of the
 * answer is checked. */
#include <string.h>

#include "harness.h"

static lua_State *L;

#define MAX_PLAIN 4

/* A builder, its public name, its last argument position, whether it is a GET, and which argument positions are
 * plain strings written under which key. */
static const struct {
    const char *core;
    const char *fname;
    int last_arg;
    int get;
    struct {
        int argn;
        const char *key;
    } plain[MAX_PLAIN];
} BUILDERS[] = {
    {"kf_account_add", "add", 4, 0, {{3, "name"}, {4, "media_id"}}},
    {"kf_account_delete", "delete", 3, 0, {{3, "open_kfid"}}},
    {"kf_account_update", "update", 4, 0, {{3, "open_kfid"}}},
    {"kf_account_list", "list", 3, 0, {{0, NULL}}},
    {"kf_account_add_contact_way", "add_contact_way", 4, 0, {{3, "open_kfid"}, {4, "scene"}}},
    {"kf_servicer_add", "add", 4, 0, {{3, "open_kfid"}}},
    {"kf_servicer_delete", "delete", 4, 0, {{3, "open_kfid"}}},
    {"kf_servicer_list", "list", 3, 1, {{3, "open_kfid"}}},
    {"kf_service_state_get", "get", 4, 0, {{3, "open_kfid"}, {4, "external_userid"}}},
    {"kf_service_state_trans", "trans", 6, 0, {{3, "open_kfid"}, {4, "external_userid"}, {6, "servicer_userid"}}},
    {"kf_customer_get_customer_info", "get_customer_info", 4, 0, {{0, NULL}}},
    {"kf_customer_get_upgrade_service_config", "get_upgrade_service_config", 2, 1, {{0, NULL}}},
    {"kf_customer_upgrade_service", "upgrade_service", 6, 0, {{3, "open_kfid"}, {4, "external_userid"}}},
    {"kf_customer_cancel_upgrade_service", "cancel_upgrade_service", 4, 0,
     {{3, "open_kfid"}, {4, "external_userid"}}},
    {"kf_get_corp_statistic", "get_corp_statistic", 3, 0, {{0, NULL}}},
    {"kf_get_servicer_statistic", "get_servicer_statistic", 3, 0, {{0, NULL}}},
};
#define NBUILDERS (sizeof BUILDERS / sizeof BUILDERS[0])

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    L = fz_newstate();
    return 0;
}

/* Every plain string argument given is the field of its key in the table at out (a decoded body or a query). */
static int carries_args(size_t b, int out, int args, int nargs)
{
    for (int i = 0; i < MAX_PLAIN && BUILDERS[b].plain[i].key != NULL; i++) {
        int argn = BUILDERS[b].plain[i].argn;
        if (argn > nargs || lua_type(L, args + argn - 1) != LUA_TSTRING) continue;
        lua_getfield(L, out, BUILDERS[b].plain[i].key);
        int same = lua_rawequal(L, -1, args + argn - 1);
        lua_pop(L, 1);
        if (!same) return 0;
    }
    return 1;
}

static void call_builder(size_t b, int args, int nargs, int volatile_)
{
    const char *name = BUILDERS[b].core;
    int base = lua_gettop(L);
    fz_reset_counters(L);
    fz_push_core(L);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
    if (lua_type(L, -1) != LUA_TFUNCTION) fz_die("wechat.core has no %s", name);
    for (int i = 0; i < nargs; i++) lua_pushvalue(L, args + i);
    int rc = lua_pcall(L, nargs, LUA_MULTRET, 0);
    int nres = lua_gettop(L) - base;
    if (fz_counter(L, "fz.mm") != 0) fz_die("%s ran a metamethod", name);
    if (rc == LUA_OK) {
        if (nres != 1) fz_die("%s returned %d values", name, nres);
        int out = base + 1;
        if (BUILDERS[b].get) {
            if (lua_type(L, out) != LUA_TTABLE) fz_die("%s returned a %s, not a query table", name,
                                                       luaL_typename(L, out));
        } else {
            size_t len, at = 0;
            const char *s = lua_tolstring(L, out, &len);
            if (lua_type(L, out) != LUA_TSTRING) fz_die("%s returned a %s, not a body", name, luaL_typename(L, out));
            if (!fz_json_decode(L, s, len, &at)) {
                fz_dump("body", s, len, 2048);
                fz_die("%s wrote invalid JSON (at byte %zu)", name, at);
            }
            out = lua_gettop(L);
            if (!fz_json_is_object(L, out)) fz_die("%s: the body is not a JSON object", name);
        }
        if (!volatile_ && !carries_args(b, out, args, nargs))
            fz_die("%s: the answer does not carry the arguments given", name);
    } else {
        const char *msg = lua_tostring(L, -1);
        if (nres != 1 || msg == NULL) fz_die("%s raised a non-string error", name);
        if (!volatile_ && strstr(msg, "not enough memory") == NULL) {
            int shaped = 0;
            for (int n = 3; n <= BUILDERS[b].last_arg && !shaped; n++)
                shaped = fz_is_argerror(msg, n, BUILDERS[b].fname, NULL);
            if (!shaped) fz_die("%s raised an error of the wrong shape: %s", name, msg);
        }
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
    int args = fz_push_args(L, &r, &v, "fuzz_family", &nargs, &flags);
    if (flags & 1) fz_gc_aggressive(L, 1);
    for (size_t b = 0; b < NBUILDERS; b++) call_builder(b, args, nargs, v.volatile_);
    if (flags & 1) fz_gc_aggressive(L, 0);
    lua_settop(L, base);
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
