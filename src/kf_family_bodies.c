/* wechat.core body builders for the rest of the KF family: accounts, contact ways, servicers, session state,
 * customers, upgrade service and statistics. One table (FAM_OPS) describes every operation: its core name, the
 * public name errors use, its arguments at the public function's positions (1 client and 2 agent are checked by
 * the Lua layer and ignored here) and, for the few rules that join two fields, a rule function. One C closure per
 * row runs the same two phases as src/kf_bodies.c: every argument is checked and every string that goes into the
 * body left on the stack, then the body is written through json_writer's public functions. A POST operation
 * returns its JSON body; a GET operation returns its checked query parameters as a table for Client:get.
 *
 * Arguments are plain values (written under their own name) or tables: the keys of a table argument are written
 * at the top level of the body in the order of its field list (opts, fields, servicers, query), except `info`
 * of upgrade_service, which goes under "member" (type 1) or "groupchat" (type 2).
 *
 * Argument errors, "bad argument #N to '<name>' (<message>)"; <path> is the argument's name, then ".key" for a
 * field of a table argument, then "[i]" for an item of a list:
 *   string expected, got nil                  the argument itself (table expected, got string likewise)
 *   <path>: string expected, got number       a field or list item of the wrong type, or a required one missing
 *   <path>: must not be empty                 ids and names; free text (wording) may be empty
 *   <path>: at most 64 bytes, got 65          (name: at most 16 characters, got 17: UTF-8 characters)
 *   <path>: invalid UTF-8 at byte 3
 *   <path>: only [0-9a-zA-Z_-] allowed        scene
 *   <path>: integer expected, got 1.5         also NaN not allowed, infinity not allowed
 *   <path>: must be between 1 and 100, got 0
 *   <path>: boolean expected, got number
 *   <path>: at most 100 items, got 101 / <path>: sequence expected / <path>: at least 1 item expected
 *   <arg>: unknown key 'foo'                  (a key that is not a string: unknown key of type number)
 *   and the rules' own messages, written where the rule is. */
#include <stdarg.h>
#include <string.h>

#include "json_writer.h"

#define FAM_MAX_ARGS 4
#define FAM_MAX_FIELDS 4
#define FAM_MAX_ITEMS 100
#define FAM_MAX_LISTS 2
#define FAM_UINT32 4294967295LL
#define FAM_DAY 86400LL
#define FAM_MAX_SPAN_DAYS 31

/* F_ID: non-empty string; F_TEXT: string, may be empty; F_NAME: non-empty, max in UTF-8 characters; F_SCENE:
 * non-empty [0-9a-zA-Z_-]; F_UINT: integer in [min, max]; F_BOOL: boolean, written 1/0; F_IDS / F_UINTS: lists of
 * F_ID / F_UINT items, at most max, at least min; F_TABLE: a table of `fields` (only as an argument). */
enum { F_ID, F_TEXT, F_NAME, F_SCENE, F_UINT, F_BOOL, F_IDS, F_UINTS, F_TABLE };

typedef struct fam_field {
    const char *name; /* Lua key, JSON key, and the name in messages */
    int kind;
    int required;
    long long min;
    long long max;
    const struct fam_field *fields; /* F_TABLE */
} fam_field;

#define FLD(name, kind, req, min, max) {name, kind, req, min, max, NULL}
#define TBL(name, req, fields) {name, F_TABLE, req, 0, 0, fields}
#define FEND {NULL, 0, 0, 0, 0, NULL}

/* Shared fields. Byte limits from kf-family.md: open_kfid <= 64, media_id <= 128, name <= 16 characters, scene
 * <= 32; lists 0..100 (customers 1..100); the rest unpublished (no limit here, WeCom judges). */
#define OPEN_KFID FLD("open_kfid", F_ID, 1, 0, 64)
#define EXTERNAL_USERID FLD("external_userid", F_ID, 1, 0, 0)
#define TIME(name) FLD(name, F_UINT, 1, 0, FAM_UINT32)

static const fam_field UPDATE_FIELDS[] = {FLD("name", F_NAME, 0, 0, 16), FLD("media_id", F_ID, 0, 0, 128), FEND};
static const fam_field LIST_OPTS[] = {FLD("offset", F_UINT, 0, 0, FAM_UINT32), FLD("limit", F_UINT, 0, 1, 100), FEND};
static const fam_field SERVICERS[] = {FLD("userid_list", F_IDS, 0, 0, FAM_MAX_ITEMS),
                                      FLD("department_id_list", F_UINTS, 0, 0, FAM_MAX_ITEMS), FEND};
static const fam_field CUSTOMER_OPTS[] = {FLD("need_enter_session_context", F_BOOL, 0, 0, 0), FEND};
static const fam_field UPGRADE_INFO[] = {FLD("userid", F_ID, 0, 0, 0), FLD("chat_id", F_ID, 0, 0, 0),
                                         FLD("wording", F_TEXT, 0, 0, 0), FEND};
static const fam_field CORP_STAT[] = {OPEN_KFID, TIME("start_time"), TIME("end_time"), FEND};
static const fam_field SERVICER_STAT[] = {OPEN_KFID, FLD("servicer_userid", F_ID, 0, 0, 0), TIME("start_time"),
                                          TIME("end_time"), FEND};

/* Argument lists, from position 3. */
static const fam_field A_ADD[] = {FLD("name", F_NAME, 1, 0, 16), FLD("media_id", F_ID, 1, 0, 128), FEND};
static const fam_field A_KFID[] = {OPEN_KFID, FEND};
static const fam_field A_UPDATE[] = {OPEN_KFID, TBL("fields", 1, UPDATE_FIELDS), FEND};
static const fam_field A_LIST[] = {TBL("opts", 0, LIST_OPTS), FEND};
static const fam_field A_CONTACT_WAY[] = {OPEN_KFID, FLD("scene", F_SCENE, 0, 0, 32), FEND};
static const fam_field A_SERVICERS[] = {OPEN_KFID, TBL("servicers", 1, SERVICERS), FEND};
static const fam_field A_SESSION[] = {OPEN_KFID, EXTERNAL_USERID, FEND};
static const fam_field A_TRANS[] = {OPEN_KFID, EXTERNAL_USERID, FLD("service_state", F_UINT, 1, 0, 4),
                                    FLD("servicer_userid", F_ID, 0, 0, 0), FEND};
static const fam_field A_CUSTOMERS[] = {FLD("external_userid_list", F_IDS, 1, 1, FAM_MAX_ITEMS),
                                        TBL("opts", 0, CUSTOMER_OPTS), FEND};
static const fam_field A_NONE[] = {FEND};
static const fam_field A_UPGRADE[] = {OPEN_KFID, EXTERNAL_USERID, FLD("type", F_UINT, 1, 1, 2),
                                      TBL("info", 1, UPGRADE_INFO), FEND};
static const fam_field A_CORP_STAT[] = {TBL("query", 1, CORP_STAT), FEND};
static const fam_field A_SERVICER_STAT[] = {TBL("query", 1, SERVICER_STAT), FEND};

typedef struct fam_item {
    const char *s;
    size_t len;
    jw_num num;
} fam_item;

typedef struct fam_val {
    int present;
    const char *s; /* strings: points into a Lua string left on the stack */
    size_t len;
    jw_num num;
    int boolean;
    size_t nitems;
    fam_item *items; /* lists: into fam_body.pool */
    int sidx;        /* absolute stack index of the value */
    int argn;
    const char *head;  /* the argument's name */
    const char *field; /* the key in a table argument, or NULL */
} fam_val;

typedef struct fam_body {
    fam_val v[FAM_MAX_ARGS][FAM_MAX_FIELDS]; /* plain argument i: v[i][0]; table argument i: v[i][field] */
    size_t nlists;
    fam_item pool[FAM_MAX_LISTS][FAM_MAX_ITEMS];
    const char *nest; /* upgrade_service: the key `info` is written under */
} fam_body;

typedef struct fam_op fam_op;

typedef struct fam_ctx {
    lua_State *L;
    const fam_op *op;
} fam_ctx;

struct fam_op {
    const char *core_name;
    const char *fname; /* the public function's name, for errors */
    const char *get;   /* non-NULL: a GET operation; the builder returns the query table */
    const fam_field *args;
    void (*rule)(const fam_ctx *c, fam_body *b);
};

/* ---------------------------------------------------------------------------------------------------------------
 * Errors */

/* A value that stands for a whole argument or table, to name it in a message. */
static fam_val fam_named(int argn, const char *head)
{
    fam_val v;
    memset(&v, 0, sizeof v);
    v.argn = argn;
    v.head = head;
    return v;
}

/* Raises for v's argument; idx > 0 names a list item; whole: the message is about the argument itself. */
static int fam_fail(const fam_ctx *c, const fam_val *v, size_t idx, int whole, const char *fmt, ...)
{
    lua_State *L = c->L;
    va_list ap;
    va_start(ap, fmt);
    const char *msg = lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    if (whole) return wechat_argerror(L, c->op->fname, v->argn, "%s", msg);
    char a[JW_NUMBUF];
    const char *path = lua_pushfstring(L, "%s%s%s%s%s%s", v->head, v->field ? "." : "", v->field ? v->field : "",
                                       idx > 0 ? "[" : "", idx > 0 ? jw_int_text(a, (long long)idx) : "",
                                       idx > 0 ? "]" : "");
    return wechat_argerror(L, c->op->fname, v->argn, "%s: %s", path, msg);
}

/* The Lua type a value of this kind must have. */
static int fam_luatype(int kind)
{
    switch (kind) {
    case F_UINT: return LUA_TNUMBER;
    case F_BOOL: return LUA_TBOOLEAN;
    case F_IDS:
    case F_UINTS:
    case F_TABLE: return LUA_TTABLE;
    default: return LUA_TSTRING;
    }
}

static const char *fam_kindname(lua_State *L, int kind)
{
    return lua_typename(L, fam_luatype(kind));
}

/* ---------------------------------------------------------------------------------------------------------------
 * Checks (phase one) */

/* UTF-8 characters: bytes that do not continue a sequence (validity is checked when the string is written). */
static size_t fam_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) n++;
    return n;
}

static void fam_string(const fam_ctx *c, const fam_field *f, int idx, const fam_val *v, size_t item,
                       const char **s, size_t *len)
{
    char a[JW_NUMBUF], b[JW_NUMBUF];
    *s = lua_tolstring(c->L, idx, len);
    if (*len == 0 && f->kind != F_TEXT) fam_fail(c, v, item, 0, "must not be empty");
    if (f->kind == F_NAME) {
        size_t n = fam_chars(*s, *len);
        if ((long long)n > f->max)
            fam_fail(c, v, item, 0, "at most %s characters, got %s", jw_int_text(a, f->max),
                     jw_int_text(b, (long long)n));
    } else if (f->max > 0 && (long long)*len > f->max) {
        fam_fail(c, v, item, 0, "at most %s bytes, got %s", jw_int_text(a, f->max), jw_int_text(b, (long long)*len));
    }
    if (f->kind == F_SCENE)
        for (size_t i = 0; i < *len; i++)
            if (!wechat_id_char((unsigned char)(*s)[i])) fam_fail(c, v, item, 0, "only [0-9a-zA-Z_-] allowed");
}

static void fam_uint(const fam_ctx *c, const fam_field *f, int idx, const fam_val *v, size_t item, jw_num *num)
{
    char a[JW_NUMBUF], b[JW_NUMBUF], d[JW_NUMBUF];
    jw_tonum(c->L, idx, num);
    switch (jw_num_special(num)) {
    case 1: fam_fail(c, v, item, 0, "NaN not allowed"); break;
    case 2: fam_fail(c, v, item, 0, "infinity not allowed"); break;
    default: break;
    }
    if (!num->isint) {
        if (jw_format_num(d, num) == 0) memcpy(d, "?", 2);
        fam_fail(c, v, item, 0, "integer expected, got %s", d);
    }
    if (num->i < f->min || num->i > f->max)
        fam_fail(c, v, item, 0, "must be between %s and %s, got %s", jw_int_text(a, f->min), jw_int_text(b, f->max),
                 jw_int_text(d, num->i));
}

/* A list at idx (a table): keys exactly 1..n, min..max items, each left on the stack and checked. */
static void fam_list(const fam_ctx *c, const fam_field *f, int idx, fam_val *v, fam_body *b)
{
    lua_State *L = c->L;
    char a[JW_NUMBUF], d[JW_NUMBUF];
    size_t n = wechat_rawlen(L, idx);
    if ((long long)n > f->max) fam_fail(c, v, 0, 0, "at most %s items, got %s", jw_int_text(a, f->max),
                                        jw_int_text(d, (long long)n));
    luaL_checkstack(L, 4, "wechat.core: list");
    if (!wechat_is_sequence(L, idx, n)) fam_fail(c, v, 0, 0, "sequence expected");
    if ((long long)n < f->min) fam_fail(c, v, 0, 0, "at least %s item expected", jw_int_text(a, f->min));
    /* items: non-empty strings without a published limit, or uint32 ids */
    fam_field item = {f->name, f->kind == F_IDS ? F_ID : F_UINT, 1, 0, f->kind == F_IDS ? 0 : FAM_UINT32, NULL};
    v->items = b->pool[b->nlists++];
    v->nitems = n;
    luaL_checkstack(L, (int)n + 4, "wechat.core: list");
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, (int)i);
        int t = lua_type(L, -1);
        fam_item *it = &v->items[i - 1];
        if (item.kind == F_ID) {
            if (t != LUA_TSTRING) fam_fail(c, v, i, 0, "string expected, got %s", lua_typename(L, t));
            fam_string(c, &item, lua_gettop(L), v, i, &it->s, &it->len);
        } else {
            if (t != LUA_TNUMBER) fam_fail(c, v, i, 0, "number expected, got %s", lua_typename(L, t));
            fam_uint(c, &item, lua_gettop(L), v, i, &it->num);
        }
    }
}

/* Checks the value at idx against f into v (argn, head, field set); whole: v is the argument itself. nil is
 * absent, which raises when f is required. A list's items are walked afterwards by fam_items: not while a
 * lua_next over the enclosing table is under way. */
static void fam_check(const fam_ctx *c, const fam_field *f, int idx, fam_val *v, int whole)
{
    lua_State *L = c->L;
    int t = lua_type(L, idx);
    v->present = 0;
    v->sidx = idx;
    if (t <= LUA_TNIL) {
        if (f->required) fam_fail(c, v, 0, whole, "%s expected, got nil", fam_kindname(L, f->kind));
        return;
    }
    int want = fam_luatype(f->kind);
    if (t != want) fam_fail(c, v, 0, whole, "%s expected, got %s", lua_typename(L, want), lua_typename(L, t));
    switch (f->kind) {
    case F_UINT: fam_uint(c, f, idx, v, 0, &v->num); break;
    case F_BOOL: v->boolean = lua_toboolean(L, idx); break;
    case F_IDS:
    case F_UINTS:
    case F_TABLE: break;
    default: fam_string(c, f, idx, v, 0, &v->s, &v->len); break;
    }
    v->present = 1;
}

/* A table argument at argn: every key one of f->fields, each value checked and left on the stack. */
static void fam_table(const fam_ctx *c, const fam_field *f, int argn, fam_val *vals, fam_body *b)
{
    lua_State *L = c->L;
    int nf = 0;
    while (f->fields[nf].name != NULL) nf++;
    for (int j = 0; j < nf; j++) {
        vals[j].present = 0;
        vals[j].argn = argn;
        vals[j].head = f->name;
        vals[j].field = f->fields[j].name;
    }
    if (lua_isnoneornil(L, argn)) return;
    luaL_checkstack(L, 2 * nf + 4, "wechat.core: table");
    lua_pushnil(L);
    while (lua_next(L, argn)) {
        fam_val whole = fam_named(argn, f->name);
        if (lua_type(L, -2) != LUA_TSTRING) fam_fail(c, &whole, 0, 0, "unknown key of type %s",
                                                     luaL_typename(L, -2));
        size_t klen;
        const char *k = lua_tolstring(L, -2, &klen);
        int j = -1;
        for (int i = 0; i < nf && j < 0; i++)
            if (strlen(f->fields[i].name) == klen && memcmp(f->fields[i].name, k, klen) == 0) j = i;
        if (j < 0) fam_fail(c, &whole, 0, 0, "unknown key '%s'", jw_pushshow(L, k, klen));
        /* key and value stay on the stack; lua_next resumes from the copy of the key */
        lua_pushvalue(L, -2);
        fam_check(c, &f->fields[j], lua_gettop(L) - 1, &vals[j], 0);
    }
    for (int j = 0; j < nf; j++) {
        if (!vals[j].present) {
            if (f->fields[j].required)
                fam_fail(c, &vals[j], 0, 0, "%s expected, got nil", fam_kindname(L, f->fields[j].kind));
        } else if (f->fields[j].kind == F_IDS || f->fields[j].kind == F_UINTS) {
            fam_list(c, &f->fields[j], vals[j].sidx, &vals[j], b);
        }
    }
}

/* ---------------------------------------------------------------------------------------------------------------
 * Rules that join fields */

/* account update: something to change. */
static void rule_update(const fam_ctx *c, fam_body *b)
{
    fam_val *f = b->v[1];
    if (!f[0].present && !f[1].present) {
        fam_val whole = fam_named(4, "fields");
        fam_fail(c, &whole, 0, 1, "fields: name or media_id expected");
    }
}

/* servicer add/delete: at least one id. */
static void rule_servicers(const fam_ctx *c, fam_body *b)
{
    fam_val *f = b->v[1];
    size_t n = (f[0].present ? f[0].nitems : 0) + (f[1].present ? f[1].nitems : 0);
    if (n == 0) {
        fam_val whole = fam_named(4, "servicers");
        fam_fail(c, &whole, 0, 1, "servicers: a userid or a department id expected");
    }
}

/* trans: a servicer exactly when the session goes to a human (3). */
static void rule_trans(const fam_ctx *c, fam_body *b)
{
    char a[JW_NUMBUF];
    long long state = b->v[2][0].num.i;
    fam_val *s = &b->v[3][0];
    if (state == 3 && !s->present) fam_fail(c, s, 0, 1, "servicer_userid required when service_state is 3 (HUMAN)");
    if (state != 3 && s->present)
        fam_fail(c, s, 0, 1, "servicer_userid only with service_state 3 (HUMAN), got %s", jw_int_text(a, state));
}

/* upgrade_service: type 1 a member { userid, wording }, 2 a group chat { chat_id, wording }. */
static void rule_upgrade(const fam_ctx *c, fam_body *b)
{
    int member = b->v[2][0].num.i == 1;
    fam_val *info = b->v[3];
    fam_val *need = member ? &info[0] : &info[1];
    fam_val *other = member ? &info[1] : &info[0];
    if (!need->present) fam_fail(c, need, 0, 0, "string expected, got nil");
    if (other->present) {
        fam_val whole = fam_named(6, "info");
        fam_fail(c, &whole, 0, 0, "key '%s' does not match type %d", other->field, member ? 1 : 2);
    }
    b->nest = member ? "member" : "groupchat";
}

/* The start of the China Standard Time day (UTC+8) that holds t: WeCom floors statistic times to it. */
static long long fam_cst_day(long long t)
{
    return (t + 8 * 3600) / FAM_DAY; /* t is a uint32 here: no negative division */
}

/* statistics: end_time not before start_time; the closed range of days, counted as WeCom does (China time, both
 * ends included, so midnight to midnight 31 days later is 32), at most 31. */
static void rule_statistic(const fam_ctx *c, fam_body *b)
{
    char d[JW_NUMBUF];
    const fam_field *fields = c->op->args[0].fields;
    fam_val *q = b->v[0];
    int last = 0;
    while (strcmp(fields[last].name, "end_time") != 0) last++;
    /* start_time comes just before end_time in both field lists */
    long long start = q[last - 1].num.i, end = q[last].num.i;
    if (end < start) fam_fail(c, &q[last], 0, 0, "must not be before query.start_time");
    long long days = fam_cst_day(end) - fam_cst_day(start) + 1;
    if (days > FAM_MAX_SPAN_DAYS)
        fam_fail(c, &q[last], 0, 0, "at most %d days counting query.start_time's and its own (China time), got %s",
                 FAM_MAX_SPAN_DAYS, jw_int_text(d, days));
}

/* ---------------------------------------------------------------------------------------------------------------
 * The table of operations */

static const fam_op FAM_OPS[] = {
    {"kf_account_add", "add", NULL, A_ADD, NULL},
    {"kf_account_delete", "delete", NULL, A_KFID, NULL},
    {"kf_account_update", "update", NULL, A_UPDATE, rule_update},
    {"kf_account_list", "list", NULL, A_LIST, NULL},
    {"kf_account_add_contact_way", "add_contact_way", NULL, A_CONTACT_WAY, NULL},
    {"kf_servicer_add", "add", NULL, A_SERVICERS, rule_servicers},
    {"kf_servicer_delete", "delete", NULL, A_SERVICERS, rule_servicers},
    {"kf_servicer_list", "list", "GET", A_KFID, NULL},
    {"kf_service_state_get", "get", NULL, A_SESSION, NULL},
    {"kf_service_state_trans", "trans", NULL, A_TRANS, rule_trans},
    {"kf_customer_get_customer_info", "get_customer_info", NULL, A_CUSTOMERS, NULL},
    {"kf_customer_get_upgrade_service_config", "get_upgrade_service_config", "GET", A_NONE, NULL},
    {"kf_customer_upgrade_service", "upgrade_service", NULL, A_UPGRADE, rule_upgrade},
    {"kf_customer_cancel_upgrade_service", "cancel_upgrade_service", NULL, A_SESSION, NULL},
    {"kf_get_corp_statistic", "get_corp_statistic", NULL, A_CORP_STAT, rule_statistic},
    {"kf_get_servicer_statistic", "get_servicer_statistic", NULL, A_SERVICER_STAT, rule_statistic},
};

/* ---------------------------------------------------------------------------------------------------------------
 * Writing (phase two): nothing here touches the stack except through the buffer. */

static void fam_put_str(const fam_ctx *c, jw_out *w, const char *s, size_t len, const fam_val *v, size_t item)
{
    size_t bad = jw_string(w, s, len);
    if (bad != 0) {
        char a[JW_NUMBUF];
        fam_fail(c, v, item, 0, "invalid UTF-8 at byte %s", jw_int_text(a, (long long)bad));
    }
}

static void fam_put_key(jw_out *w, const char *name, int *first)
{
    if (!*first) jw_putc(w, ',');
    *first = 0;
    jw_putc(w, '"');
    jw_add(w, name, strlen(name)); /* our own ASCII names: nothing to escape */
    jw_lit(w, "\":");
}

static void fam_put_val(const fam_ctx *c, jw_out *w, const fam_field *f, const fam_val *v)
{
    switch (f->kind) {
    case F_UINT: jw_number(w, &v->num); break;
    case F_BOOL: jw_putc(w, v->boolean ? '1' : '0'); break;
    case F_IDS:
    case F_UINTS:
        jw_putc(w, '[');
        for (size_t i = 0; i < v->nitems; i++) {
            if (i > 0) jw_putc(w, ',');
            if (f->kind == F_IDS)
                fam_put_str(c, w, v->items[i].s, v->items[i].len, v, i + 1);
            else
                jw_number(w, &v->items[i].num);
        }
        jw_putc(w, ']');
        break;
    default: fam_put_str(c, w, v->s, v->len, v, 0); break;
    }
}

static void fam_put_fields(const fam_ctx *c, jw_out *w, const fam_field *fields, const fam_val *vals, int *first)
{
    for (int j = 0; fields[j].name != NULL; j++) {
        if (!vals[j].present) continue;
        fam_put_key(w, fields[j].name, first);
        fam_put_val(c, w, &fields[j], &vals[j]);
    }
}

static int fam_write(const fam_ctx *c, const fam_body *b)
{
    jw_out w;
    int first = 1;
    jw_open(&w, c->L);
    jw_putc(&w, '{');
    for (int i = 0; c->op->args[i].name != NULL; i++) {
        const fam_field *a = &c->op->args[i];
        if (a->kind != F_TABLE) {
            if (!b->v[i][0].present) continue;
            fam_put_key(&w, a->name, &first);
            fam_put_val(c, &w, a, &b->v[i][0]);
        } else if (b->nest != NULL && a->fields == UPGRADE_INFO) {
            int inner = 1;
            fam_put_key(&w, b->nest, &first);
            jw_putc(&w, '{');
            fam_put_fields(c, &w, a->fields, b->v[i], &inner);
            jw_putc(&w, '}');
        } else {
            fam_put_fields(c, &w, a->fields, b->v[i], &first);
        }
    }
    jw_putc(&w, '}');
    jw_push(&w);
    return 1;
}

/* A GET operation's parameters: the plain arguments, by name (strings; integers as numbers). */
static int fam_query(const fam_ctx *c, const fam_body *b)
{
    lua_State *L = c->L;
    luaL_checkstack(L, 4, "wechat.core: query");
    lua_newtable(L);
    for (int i = 0; c->op->args[i].name != NULL; i++) {
        const fam_val *v = &b->v[i][0];
        if (!v->present) continue;
        if (c->op->args[i].kind == F_UINT)
            lua_pushnumber(L, (lua_Number)v->num.i);
        else
            lua_pushlstring(L, v->s, v->len);
        lua_setfield(L, -2, c->op->args[i].name);
    }
    return 1;
}

static int l_build(lua_State *L)
{
    const fam_op *op = lua_touserdata(L, lua_upvalueindex(1));
    fam_ctx c = {L, op};
    fam_body b;
    int nargs = 0;
    while (op->args[nargs].name != NULL) nargs++;
    lua_settop(L, 2 + nargs);
    b.nlists = 0;
    b.nest = NULL;
    for (int i = 0; i < nargs; i++) {
        const fam_field *a = &op->args[i];
        fam_val *v = &b.v[i][0];
        v->argn = 3 + i;
        v->head = a->name;
        v->field = NULL;
        fam_check(&c, a, 3 + i, v, 1);
        if (a->kind == F_TABLE) fam_table(&c, a, 3 + i, b.v[i], &b);
        if (v->present && (a->kind == F_IDS || a->kind == F_UINTS)) fam_list(&c, a, 3 + i, v, &b);
    }
    if (op->rule != NULL) op->rule(&c, &b);
    return op->get != NULL ? fam_query(&c, &b) : fam_write(&c, &b);
}

void wechat_open_family_bodies(lua_State *L)
{
    for (size_t i = 0; i < sizeof FAM_OPS / sizeof FAM_OPS[0]; i++) {
        lua_pushlightuserdata(L, (void *)&FAM_OPS[i]);
        lua_pushcclosure(L, l_build, 1);
        lua_setfield(L, -2, FAM_OPS[i].core_name);
    }
}
