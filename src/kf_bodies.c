/* wechat.core body builders: one per KF operation, at the public function's argument positions (1 client and
 * 2 agent are checked by the Lua layer and ignored here). Each builder checks every argument, then writes the
 * JSON body into one jw_out (json_writer.h) and returns it as a string.
 *
 * Two phases, so that no half-written body exists while an argument may still be wrong: first every argument and table
 * is walked and checked, and every string that goes into the body is left on the stack (so it stays alive
 * whatever a finalizer does to the tables) with a pointer to it kept in a kf_val; then the buffer is opened and
 * the body written from those pointers without touching the stack. UTF-8 is checked while escaping, in the
 * second phase. Tables are read raw (no metamethods run).
 *
 * Argument errors, all "bad argument #N to '<op>' (<message>)" through wechat_argerror; <path> names the argument
 * or the field in it (content, msg.title, msg.list[3].click.id, opts.msgid, msg_id):
 *   string expected, got nil                the argument itself has the wrong type or is missing
 *                                           (table expected, got string for msg and opts)
 *   <path>: string expected, got nil        a field has the wrong type or a required one is missing
 *                                           (number expected / table expected likewise)
 *   <path>: must not be empty               ids, codes, urls, content, msgid, sync opts; optional free text
 *                                           (titles, desc, description, head/tail_content, name, address) may
 *                                           be empty
 *   <path>: at most 64 bytes, got 70
 *   <path>: invalid UTF-8 at byte 3         1-based offset of the first byte of the bad sequence
 *   <path>: only [0-9a-zA-Z_-] allowed      msgid, msg_id
 *   <path>: http:// or https:// URL with a host expected   link url, view menu item url: the scheme (any case),
 *                                           then a non-empty host (see kf_url_ok); link.lua and menu.lua
 *                                           apply the same rule with the same words
 * User strings quoted in a message (keys, types) are cut after 40 bytes, with "..." after the cut.
 *   msg: unknown key 'foo'                  any table but opts; a key that is not a string:
 *                                           "unknown key of type number"
 *   opts: unknown option 'foo'
 *   msg.list: at most 10 items, got 11
 *   msg.list: sequence expected             keys other than exactly 1..n
 *   msg.list[3]: table expected, got string
 *   msg.list[3].type: 'click', 'view', 'miniprogram' or 'text' expected, got 'foo'
 *   msg.list[3]: key 'view' does not match type 'click'
 *   on_event_msg_type: 'text' or 'msgmenu' expected, got 'image'
 *   <path>: NaN not allowed                 any number field; also "infinity not allowed"
 *   msg.latitude: must be between -90 and 90, got 91.5    (longitude -180..180, opts.limit 1..1000)
 *   opts.limit: integer expected, got 1.5
 *   <path>: 0 or 1 expected, got 2          opts.voice_format, msg.list[i].text.no_newline
 * Generic bodies (send_message/3, unknown msgtypes, encode) use the encoder's messages, listed in json_writer.c,
 * with root "body", "msg" or "value".
 *
 * Every send builder returns the body and the msgid it wrote, nil when none: the Lua layer retries a send after an
 * ambiguous failure only when it carries a msgid, which WeCom delivers once (a repeat is refused). An empty msgid
 * is an error to WeCom, not "none": the builders refuse "" (opts.msgid, msg_id, a raw body's msgid: must not be
 * empty). A msgid given as `true`, or left out while the client (argument 1) has `auto_msgid = true` (its
 * default), is made here: 32 random hex digits (128 bits from core's random pool, random.c). */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "json_writer.h"

#define KF_MAX_ITEMS 10
#define KF_MAX_FIELDS 5
#define KF_MAX_ITEM_FIELDS 3

/* K_STR: a non-empty string; K_TEXT: optional free text, may be empty. */
enum { K_STR, K_TEXT, K_URL, K_MSGID, K_LAT, K_LNG, K_BIT, K_LIMIT, K_LIST };

/* One field of a message table: JSON name (also the Lua key), kind, required, byte limit (0: none). For K_LIST
 * the limit is the number of items. */
typedef struct kf_spec {
    const char *name;
    size_t nlen;
    const char *qname; /* "name": as written */
    size_t qlen;
    int kind;
    int required;
    size_t max;
} kf_spec;

#define KF_F(name, kind, req, max) {name, sizeof(name) - 1, "\"" name "\":", sizeof(name) + 2, kind, req, max}
#define KF_END {NULL, 0, NULL, 0, 0, 0, 0}

static const kf_spec TEXT_MSG[] = {KF_F("content", K_STR, 1, 2048), KF_END};
static const kf_spec MEDIA_MSG[] = {KF_F("media_id", K_STR, 1, 0), KF_END};
/* send_video's title and description: the reference library's arguments, checked but never sent (WeCom's video
 * object is {"media_id"} only). */
static const kf_spec VIDEO_EXTRA[] = {KF_F("title", K_TEXT, 0, 0), KF_F("description", K_TEXT, 0, 0), KF_END};
static const kf_spec LINK_MSG[] = {KF_F("title", K_STR, 1, 128), KF_F("desc", K_TEXT, 0, 512),
                                   KF_F("url", K_URL, 1, 2048), KF_F("thumb_media_id", K_STR, 1, 0), KF_END};
static const kf_spec MINIPROGRAM_MSG[] = {KF_F("appid", K_STR, 1, 0), KF_F("title", K_TEXT, 0, 64),
                                          KF_F("thumb_media_id", K_STR, 1, 0), KF_F("pagepath", K_STR, 1, 0),
                                          KF_END};
static const kf_spec MENU_MSG[] = {KF_F("head_content", K_TEXT, 0, 1024), KF_F("list", K_LIST, 0, KF_MAX_ITEMS),
                                   KF_F("tail_content", K_TEXT, 0, 1024), KF_END};
static const kf_spec LOCATION_MSG[] = {KF_F("name", K_TEXT, 0, 0), KF_F("address", K_TEXT, 0, 0),
                                       KF_F("latitude", K_LAT, 1, 0), KF_F("longitude", K_LNG, 1, 0), KF_END};

static const kf_spec CLICK_ITEM[] = {KF_F("id", K_STR, 1, 64), KF_F("content", K_STR, 1, 128), KF_END};
static const kf_spec VIEW_ITEM[] = {KF_F("url", K_URL, 1, 2048), KF_F("content", K_STR, 1, 1024), KF_END};
static const kf_spec MINIPROGRAM_ITEM[] = {KF_F("appid", K_STR, 1, 32), KF_F("pagepath", K_STR, 1, 1024),
                                           KF_F("content", K_STR, 1, 1024), KF_END};
static const kf_spec TEXT_ITEM[] = {KF_F("content", K_STR, 1, 1024), KF_F("no_newline", K_BIT, 0, 0), KF_END};

static const kf_spec SEND_OPTS[] = {KF_F("msgid", K_MSGID, 0, 32), KF_END};
static const kf_spec SYNC_OPTS[] = {KF_F("cursor", K_STR, 0, 64), KF_F("token", K_STR, 0, 128),
                                    KF_F("limit", K_LIMIT, 0, 0), KF_F("voice_format", K_BIT, 0, 0),
                                    KF_F("open_kfid", K_STR, 0, 0), KF_END};

/* Plain arguments. */
static const kf_spec ARG_TO = KF_F("to", K_STR, 1, 0);
static const kf_spec ARG_OPEN_KFID = KF_F("open_kfid", K_STR, 1, 0);
static const kf_spec ARG_MSGTYPE = KF_F("msgtype", K_STR, 1, 0);
static const kf_spec ARG_CODE = KF_F("code", K_STR, 1, 0);
static const kf_spec ARG_EVENT_TYPE = KF_F("on_event_msg_type", K_STR, 1, 0);
static const kf_spec ARG_MSG_ID = KF_F("msg_id", K_MSGID, 0, 32);

enum { T_TEXT, T_IMAGE, T_VOICE, T_VIDEO, T_FILE, T_LINK, T_MINIPROGRAM, T_MSGMENU, T_LOCATION, T_COUNT };

static const struct {
    const char *name;
    const kf_spec *spec;
} KF_TYPES[T_COUNT] = {
    {"text", TEXT_MSG},     {"image", MEDIA_MSG},          {"voice", MEDIA_MSG},
    {"video", MEDIA_MSG},   {"file", MEDIA_MSG},           {"link", LINK_MSG},
    {"miniprogram", MINIPROGRAM_MSG}, {"msgmenu", MENU_MSG}, {"location", LOCATION_MSG},
};

#define ITEM_TYPES 4
static const char *const ITEM_NAMES[ITEM_TYPES] = {"click", "view", "miniprogram", "text"};
static const size_t ITEM_LENS[ITEM_TYPES] = {5, 4, 11, 4};
/* What each item starts with: {"type":"click","click": */
#define KF_ITEM_PREFIX(t) {"{\"type\":\"" t "\",\"" t "\":", 2 * sizeof(t) + 12}
static const struct {
    const char *s;
    size_t len;
} ITEM_PREFIXES[ITEM_TYPES] = {KF_ITEM_PREFIX("click"), KF_ITEM_PREFIX("view"), KF_ITEM_PREFIX("miniprogram"),
                               KF_ITEM_PREFIX("text")};
static const kf_spec *const ITEM_SPECS[ITEM_TYPES] = {CLICK_ITEM, VIEW_ITEM, MINIPROGRAM_ITEM, TEXT_ITEM};

/* Where a value sits, for messages: head, "[idx]" when idx > 0, ".mid", ".field" when not NULL. */
typedef struct kf_path {
    const char *head;
    int idx;
    const char *mid;
    const char *field;
} kf_path;

typedef struct kf_val {
    int present;
    const char *s; /* strings: points into a Lua string left on the stack */
    size_t len;
    jw_num num;
    int sidx; /* absolute stack index of the value */
    int argn;
    int is_arg; /* the value is the argument itself: type errors name no path */
    kf_path path;
} kf_val;

typedef struct kf_item {
    int type;
    kf_val v[KF_MAX_ITEM_FIELDS];
} kf_item;

typedef struct kf_body {
    kf_val to; /* touser, or code on events */
    kf_val kfid;
    kf_val msgid;
    kf_val msgtype;
    kf_val f[KF_MAX_FIELDS];
    size_t nitems;
    kf_item items[KF_MAX_ITEMS];
} kf_body;

typedef struct kf_ctx {
    lua_State *L;
    const char *fname;
} kf_ctx;

/* ---------------------------------------------------------------------------------------------------------------
 * Errors */

static const char *kf_typename(lua_State *L, int idx)
{
    return lua_isnoneornil(L, idx) ? "nil" : luaL_typename(L, idx);
}

static const char *kf_pushpath(lua_State *L, const kf_path *p)
{
    int n = 1;
    lua_pushstring(L, p->head);
    if (p->idx > 0) {
        lua_pushfstring(L, "[%d]", p->idx);
        n++;
    }
    if (p->mid != NULL) {
        lua_pushfstring(L, ".%s", p->mid);
        n++;
    }
    if (p->field != NULL) {
        lua_pushfstring(L, ".%s", p->field);
        n++;
    }
    lua_concat(L, n);
    return lua_tostring(L, -1);
}

/* Raises for argument argn; p == NULL: the message is about the argument itself. */
static int kf_fail(const kf_ctx *c, int argn, const kf_path *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const char *msg = lua_pushvfstring(c->L, fmt, ap);
    va_end(ap);
    if (p == NULL) return wechat_argerror(c->L, c->fname, argn, "%s", msg);
    const char *path = kf_pushpath(c->L, p);
    return wechat_argerror(c->L, c->fname, argn, "%s: %s", path, msg);
}

#define KF_VFAIL(c, v, ...) kf_fail((c), (v)->argn, &(v)->path, __VA_ARGS__)

static const char *kf_kindname(int kind)
{
    switch (kind) {
    case K_LAT:
    case K_LNG:
    case K_BIT:
    case K_LIMIT: return "number";
    case K_LIST: return "table";
    default: return "string";
    }
}

static int kf_expected(const kf_ctx *c, const kf_val *v, int kind, const char *got)
{
    return kf_fail(c, v->argn, v->is_arg ? NULL : &v->path, "%s expected, got %s", kf_kindname(kind), got);
}

/* Numbers in messages, formatted like the JSON writer does (lua_pushfstring's %f differs between 5.4 and LuaJIT). */
static const char *kf_numstr(char *buf, const jw_num *num)
{
    if (jw_format_num(buf, num) == 0) memcpy(buf, "?", 2);
    return buf;
}

/* ---------------------------------------------------------------------------------------------------------------
 * Checks (phase one) */

/* A Lua string (which may hold '\0') equals a C string. */
static int kf_eq(const char *s, size_t len, const char *cstr)
{
    return strlen(cstr) == len && memcmp(s, cstr, len) == 0;
}

static int kf_prefix_ci(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    if (len < n) return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch >= 'A' && ch <= 'Z') ch = (char)(ch - 'A' + 'a');
        if (ch != prefix[i]) return 0;
    }
    return 1;
}

/* The one url rule (also link.valid_url in Lua): http:// or https:// in any case, then an authority (up to the
 * first '/', '?' or '#') whose host, less any "userinfo@" and ":port", is not empty; an IPv6 host is "[...]"
 * with something between the brackets. */
static int kf_url_ok(const char *s, size_t len)
{
    size_t start;
    if (kf_prefix_ci(s, len, "http://"))
        start = 7;
    else if (kf_prefix_ci(s, len, "https://"))
        start = 8;
    else
        return 0;
    size_t end = start, host = start;
    while (end < len && s[end] != '/' && s[end] != '?' && s[end] != '#') end++;
    for (size_t i = start; i < end; i++)
        if (s[i] == '@') host = i + 1;
    if (host < end && s[host] == '[') {
        const char *close = memchr(s + host, ']', end - host);
        return close != NULL && close > s + host + 1;
    }
    size_t h = host;
    while (h < end && s[h] != ':') h++;
    return h > host;
}

/* An integral value, also from a 5.4 float such as 10.0; 0 when num has a fraction or is out of range. */
static int kf_integral(const jw_num *num, long long *out)
{
    if (num->isint) {
        *out = num->i;
        return 1;
    }
    if (num->n >= -9007199254740992.0 && num->n <= 9007199254740992.0 && (lua_Number)(long long)num->n == num->n) {
        *out = (long long)num->n;
        return 1;
    }
    return 0;
}

/* Replaces the value at idx with a new msgid and points v at it. The slot keeps the string alive until the body
 * is written; the caller's tables are not touched. */
static void kf_make_msgid(const kf_ctx *c, int idx, kf_val *v)
{
    unsigned char raw[16];
    char id[2 * sizeof raw];
    wechat_random_fill(c->L, c->fname, raw, sizeof raw);
    luaL_checkstack(c->L, 2, "wechat.core: msgid");
    wechat_hex(id, raw, sizeof raw);
    lua_pushlstring(c->L, id, sizeof id);
    lua_replace(c->L, idx);
    v->s = lua_tolstring(c->L, idx, &v->len);
    v->sidx = idx;
    v->present = 1;
}

/* True when the client (argument 1) asks for a msgid on every send. Read raw: no metamethod runs. */
static int kf_auto_msgid(const kf_ctx *c)
{
    lua_State *L = c->L;
    if (lua_type(L, 1) != LUA_TTABLE) return 0;
    luaL_checkstack(L, 2, "wechat.core: msgid");
    lua_pushliteral(L, "auto_msgid");
    lua_rawget(L, 1);
    int on = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return on;
}

/* Checks the value at idx against f and fills v, whose argn, is_arg and path are set already. nil (or none) is
 * absent; a required field then raises. */
static void kf_check(const kf_ctx *c, const kf_spec *f, int idx, kf_val *v)
{
    lua_State *L = c->L;
    char a[JW_NUMBUF], b[JW_NUMBUF];
    int t = lua_type(L, idx);
    v->present = 0;
    v->sidx = idx;
    if (t <= LUA_TNIL) {
        if (f->required) kf_expected(c, v, f->kind, "nil");
        return;
    }
    if (f->kind == K_MSGID && t == LUA_TBOOLEAN && lua_toboolean(L, idx)) {
        kf_make_msgid(c, idx, v);
        return;
    }
    switch (f->kind) {
    case K_STR:
    case K_TEXT:
    case K_URL:
    case K_MSGID:
        if (t != LUA_TSTRING) kf_expected(c, v, f->kind, lua_typename(L, t));
        v->s = lua_tolstring(L, idx, &v->len);
        if (v->len == 0 && f->kind != K_TEXT) KF_VFAIL(c, v, "must not be empty");
        if (f->max > 0 && v->len > f->max)
            KF_VFAIL(c, v, "at most %s bytes, got %s", jw_int_text(a, (long long)f->max),
                     jw_int_text(b, (long long)v->len));
        if (f->kind == K_URL && !kf_url_ok(v->s, v->len))
            KF_VFAIL(c, v, "http:// or https:// URL with a host expected");
        if (f->kind == K_MSGID) {
            for (size_t i = 0; i < v->len; i++)
                if (!wechat_id_char((unsigned char)v->s[i])) KF_VFAIL(c, v, "only [0-9a-zA-Z_-] allowed");
        }
        break;
    case K_LAT:
    case K_LNG:
    case K_BIT:
    case K_LIMIT: {
        if (t != LUA_TNUMBER) kf_expected(c, v, f->kind, lua_typename(L, t));
        jw_tonum(L, idx, &v->num);
        switch (jw_num_special(&v->num)) {
        case 1: KF_VFAIL(c, v, "NaN not allowed"); break;
        case 2: KF_VFAIL(c, v, "infinity not allowed"); break;
        default: break;
        }
        lua_Number n = v->num.isint ? (lua_Number)v->num.i : v->num.n;
        long long i = 0;
        if (f->kind == K_LAT && (n < -90 || n > 90))
            KF_VFAIL(c, v, "must be between -90 and 90, got %s", kf_numstr(a, &v->num));
        if (f->kind == K_LNG && (n < -180 || n > 180))
            KF_VFAIL(c, v, "must be between -180 and 180, got %s", kf_numstr(a, &v->num));
        if (f->kind == K_BIT && (!kf_integral(&v->num, &i) || (i != 0 && i != 1)))
            KF_VFAIL(c, v, "0 or 1 expected, got %s", kf_numstr(a, &v->num));
        if (f->kind == K_LIMIT) {
            if (!kf_integral(&v->num, &i)) KF_VFAIL(c, v, "integer expected, got %s", kf_numstr(a, &v->num));
            if (i < 1 || i > 1000) KF_VFAIL(c, v, "must be between 1 and 1000, got %s", kf_numstr(a, &v->num));
        }
        if (f->kind == K_BIT || f->kind == K_LIMIT) {
            /* written as an integer even when given as 1.0 */
            v->num.isint = 1;
            v->num.i = i;
        }
        break;
    }
    default:
        if (t != LUA_TTABLE) kf_expected(c, v, f->kind, lua_typename(L, t));
        break;
    }
    v->present = 1;
}

static void kf_init_vals(const kf_spec *spec, kf_val *vals, int argn, const kf_path *tp)
{
    for (int j = 0; spec[j].name != NULL; j++) {
        vals[j].present = 0;
        vals[j].argn = argn;
        vals[j].is_arg = 0;
        vals[j].path = *tp;
        vals[j].path.field = spec[j].name;
    }
}

static void kf_gather_list(const kf_ctx *c, const kf_val *lv, kf_body *b);

/* Walks the table at t (absolute index) once: every key must be one of spec's names ("unknown <what> 'k'"
 * otherwise), every value is checked and left on the stack under the walk. tp is the table's own path. */
static void kf_gather(const kf_ctx *c, int t, const kf_spec *spec, kf_val *vals, int argn, const kf_path *tp,
                      const char *what, kf_body *b)
{
    lua_State *L = c->L;
    int nspec = 0;
    while (spec[nspec].name != NULL) nspec++;
    kf_init_vals(spec, vals, argn, tp);
    luaL_checkstack(L, 2 * nspec + 4, "wechat.core: message table");
    lua_pushnil(L);
    while (lua_next(L, t)) {
        int j = -1;
        if (lua_type(L, -2) != LUA_TSTRING)
            kf_fail(c, argn, tp, "unknown %s of type %s", what, luaL_typename(L, -2));
        size_t klen;
        const char *k = lua_tolstring(L, -2, &klen);
        for (int i = 0; i < nspec && j < 0; i++)
            if (spec[i].nlen == klen && spec[i].name[0] == k[0] && memcmp(spec[i].name, k, klen) == 0) j = i;
        if (j < 0) kf_fail(c, argn, tp, "unknown %s '%s'", what, jw_pushshow(L, k, klen));
        /* Key and value stay on the stack (a copy of the key is what lua_next resumes from). */
        lua_pushvalue(L, -2);
        kf_check(c, &spec[j], lua_gettop(L) - 1, &vals[j]);
    }
    for (int j = 0; j < nspec; j++) {
        if (!vals[j].present) {
            if (spec[j].required) kf_expected(c, &vals[j], spec[j].kind, "nil");
        } else if (spec[j].kind == K_LIST) {
            kf_gather_list(c, &vals[j], b);
        }
    }
}

static void kf_gather_item(const kf_ctx *c, int item, int i, int argn, kf_item *it)
{
    lua_State *L = c->L;
    /* Menus only come as the msg argument. */
    kf_path ip = {"msg.list", i, NULL, NULL};
    kf_path typep = {"msg.list", i, NULL, "type"};
    if (lua_type(L, item) != LUA_TTABLE) kf_fail(c, argn, &ip, "table expected, got %s", luaL_typename(L, item));
    int typed[ITEM_TYPES] = {0, 0, 0, 0};
    const char *type = NULL;
    size_t tlen = 0;
    luaL_checkstack(L, 2 * ITEM_TYPES + 6, "wechat.core: menu item");
    lua_pushnil(L);
    while (lua_next(L, item)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            kf_fail(c, argn, &ip, "unknown key of type %s", luaL_typename(L, -2));
        size_t klen;
        const char *k = lua_tolstring(L, -2, &klen);
        int which = -1;
        if (klen == 4 && memcmp(k, "type", 4) == 0) {
            if (lua_type(L, -1) != LUA_TSTRING)
                kf_fail(c, argn, &typep, "string expected, got %s", luaL_typename(L, -1));
            type = lua_tolstring(L, -1, &tlen);
        } else {
            for (int t = 0; t < ITEM_TYPES && which < 0; t++)
                if (ITEM_LENS[t] == klen && memcmp(k, ITEM_NAMES[t], klen) == 0) which = t;
            if (which < 0) kf_fail(c, argn, &ip, "unknown key '%s'", jw_pushshow(L, k, klen));
        }
        lua_pushvalue(L, -2);
        if (which >= 0) typed[which] = lua_gettop(L) - 1;
    }
    if (type == NULL) kf_fail(c, argn, &typep, "string expected, got nil");
    int tk = -1;
    for (int t = 0; t < ITEM_TYPES && tk < 0; t++)
        if (ITEM_LENS[t] == tlen && memcmp(type, ITEM_NAMES[t], tlen) == 0) tk = t;
    if (tk < 0)
        kf_fail(c, argn, &typep, "'click', 'view', 'miniprogram' or 'text' expected, got '%s'",
                jw_pushshow(L, type, tlen));
    for (int t = 0; t < ITEM_TYPES; t++)
        if (t != tk && typed[t] != 0)
            kf_fail(c, argn, &ip, "key '%s' does not match type '%s'", ITEM_NAMES[t], ITEM_NAMES[tk]);
    kf_path tp = {"msg.list", i, ITEM_NAMES[tk], NULL};
    if (typed[tk] == 0) kf_fail(c, argn, &tp, "table expected, got nil");
    if (lua_type(L, typed[tk]) != LUA_TTABLE)
        kf_fail(c, argn, &tp, "table expected, got %s", luaL_typename(L, typed[tk]));
    it->type = tk;
    kf_gather(c, typed[tk], ITEM_SPECS[tk], it->v, argn, &tp, "key", NULL);
}

static void kf_gather_list(const kf_ctx *c, const kf_val *lv, kf_body *b)
{
    lua_State *L = c->L;
    int list = lv->sidx;
    char a[JW_NUMBUF];
    size_t n = wechat_rawlen(L, list);
    if (n > KF_MAX_ITEMS) KF_VFAIL(c, lv, "at most %d items, got %s", KF_MAX_ITEMS, jw_int_text(a, (long long)n));
    luaL_checkstack(L, (int)n + 4, "wechat.core: menu list");
    if (!wechat_is_sequence(L, list, n)) KF_VFAIL(c, lv, "sequence expected");
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, list, (int)i);
        kf_gather_item(c, lua_gettop(L), (int)i, lv->argn, &b->items[i - 1]);
    }
    b->nitems = n;
}

/* A plain argument: its path is its name. */
static void kf_arg(const kf_ctx *c, int argn, const kf_spec *f, kf_val *v)
{
    v->argn = argn;
    v->is_arg = 1;
    v->path.head = f->name;
    v->path.idx = 0;
    v->path.mid = NULL;
    v->path.field = NULL;
    kf_check(c, f, argn, v);
}

/* The msg argument, a table checked against spec into b->f. */
static void kf_msg(const kf_ctx *c, int argn, const kf_spec *spec, kf_body *b)
{
    static const kf_path MSG = {"msg", 0, NULL, NULL};
    if (lua_type(c->L, argn) != LUA_TTABLE)
        kf_fail(c, argn, NULL, "table expected, got %s", kf_typename(c->L, argn));
    kf_gather(c, argn, spec, b->f, argn, &MSG, "key", b);
}

/* The opts argument: nil or a table checked against spec. */
static void kf_opts(const kf_ctx *c, int argn, const kf_spec *spec, kf_val *vals)
{
    static const kf_path OPTS = {"opts", 0, NULL, NULL};
    if (lua_isnoneornil(c->L, argn)) {
        kf_init_vals(spec, vals, argn, &OPTS);
        /* The nil slot of opts holds the made msgid. */
        if (spec == SEND_OPTS && kf_auto_msgid(c)) kf_make_msgid(c, argn, &vals[0]);
        return;
    }
    if (lua_type(c->L, argn) != LUA_TTABLE)
        kf_fail(c, argn, NULL, "table expected, got %s", luaL_typename(c->L, argn));
    kf_gather(c, argn, spec, vals, argn, &OPTS, "option", NULL);
    if (spec == SEND_OPTS && !vals[0].present && kf_auto_msgid(c)) {
        luaL_checkstack(c->L, 3, "wechat.core: msgid");
        lua_pushnil(c->L); /* a fresh slot: the opts table stays where it is */
        kf_make_msgid(c, lua_gettop(c->L), &vals[0]);
    }
}

static void kf_settype(kf_body *b, int type)
{
    b->msgtype.present = 1;
    b->msgtype.s = KF_TYPES[type].name;
    b->msgtype.len = strlen(KF_TYPES[type].name);
    b->msgtype.argn = 0;
    b->msgtype.is_arg = 1;
    b->msgtype.path.head = "msgtype";
    b->msgtype.path.idx = 0;
    b->msgtype.path.mid = NULL;
    b->msgtype.path.field = NULL;
}

static int kf_find_type(const char *s, size_t len)
{
    for (int t = 0; t < T_COUNT; t++)
        if (kf_eq(s, len, KF_TYPES[t].name)) return t;
    return -1;
}

/* ---------------------------------------------------------------------------------------------------------------
 * Writing (phase two): nothing here touches the stack except through the buffer. */

static void kf_put_str(const kf_ctx *c, jw_out *w, const kf_val *v)
{
    size_t bad = jw_string(w, v->s, v->len);
    if (bad != 0) {
        char a[JW_NUMBUF];
        KF_VFAIL(c, v, "invalid UTF-8 at byte %s", jw_int_text(a, (long long)bad));
    }
}

static void kf_write_obj(const kf_ctx *c, jw_out *w, const kf_spec *spec, const kf_val *vals,
                         const kf_body *b);

static void kf_write_list(const kf_ctx *c, jw_out *w, const kf_body *b)
{
    jw_putc(w, '[');
    for (size_t i = 0; i < b->nitems; i++) {
        const kf_item *it = &b->items[i];
        if (i > 0) jw_putc(w, ',');
        jw_add(w, ITEM_PREFIXES[it->type].s, ITEM_PREFIXES[it->type].len);
        kf_write_obj(c, w, ITEM_SPECS[it->type], it->v, NULL);
        jw_putc(w, '}');
    }
    jw_putc(w, ']');
}

static void kf_write_obj(const kf_ctx *c, jw_out *w, const kf_spec *spec, const kf_val *vals,
                         const kf_body *b)
{
    int first = 1;
    jw_putc(w, '{');
    for (int j = 0; spec[j].name != NULL; j++) {
        const kf_val *v = &vals[j];
        if (!v->present) continue;
        if (!first) jw_putc(w, ',');
        first = 0;
        jw_add(w, spec[j].qname, spec[j].qlen);
        switch (spec[j].kind) {
        case K_STR:
        case K_TEXT:
        case K_URL:
        case K_MSGID: kf_put_str(c, w, v); break;
        case K_LIST: kf_write_list(c, w, b); break;
        default: jw_number(w, &v->num); break;
        }
    }
    jw_putc(w, '}');
}

static int kf_result(jw_out *w)
{
    jw_push(w);
    return 1;
}

/* Writes the whole body: send_msg ({"touser","open_kfid",...}) or send_msg_on_event ({"code",...}), then
 * "msgid" when given, "msgtype", and the typed object: by spec from b->f, or the value at generic_argn through
 * the generic encoder (spec == NULL). */
static int kf_finish(const kf_ctx *c, kf_body *b, int on_event, const kf_spec *spec, int generic_argn)
{
    jw_out w;
    jw_open(&w, c->L);
    if (on_event) {
        jw_lit(&w, "{\"code\":");
        kf_put_str(c, &w, &b->to);
    } else {
        jw_lit(&w, "{\"touser\":");
        kf_put_str(c, &w, &b->to);
        jw_lit(&w, ",\"open_kfid\":");
        kf_put_str(c, &w, &b->kfid);
    }
    if (b->msgid.present) {
        /* Only [0-9a-zA-Z_-] (checked, or made here): nothing to escape. */
        jw_lit(&w, ",\"msgid\":\"");
        jw_add(&w, b->msgid.s, b->msgid.len);
        jw_putc(&w, '"');
    }
    if (spec != NULL) {
        /* A type of KF_TYPES: a plain ASCII name. */
        jw_lit(&w, ",\"msgtype\":\"");
        jw_add(&w, b->msgtype.s, b->msgtype.len);
        jw_lit(&w, "\",\"");
        jw_add(&w, b->msgtype.s, b->msgtype.len);
        jw_lit(&w, "\":");
        kf_write_obj(c, &w, spec, b->f, b);
    } else {
        jw_lit(&w, ",\"msgtype\":");
        kf_put_str(c, &w, &b->msgtype);
        jw_putc(&w, ',');
        (void)jw_string(&w, b->msgtype.s, b->msgtype.len); /* valid: written just above */
        jw_putc(&w, ':');
        jw_encode(&w, generic_argn, c->fname, generic_argn, "msg", JW_OBJECT);
    }
    jw_putc(&w, '}');
    kf_result(&w);
    /* The msgid's own string, below the writer and untouched by it. */
    if (b->msgid.present)
        lua_pushvalue(c->L, b->msgid.sidx);
    else
        lua_pushnil(c->L);
    return 2;
}

/* ---------------------------------------------------------------------------------------------------------------
 * The builders */

static void kf_send_head(const kf_ctx *c, kf_body *b)
{
    kf_arg(c, 3, &ARG_TO, &b->to);
    kf_arg(c, 4, &ARG_OPEN_KFID, &b->kfid);
    b->nitems = 0;
}

/* send_text(c, a, to, open_kfid, content, opts) */
static int l_send_text(lua_State *L)
{
    kf_ctx c = {L, "send_text"};
    kf_body b;
    lua_settop(L, 6);
    kf_send_head(&c, &b);
    kf_arg(&c, 5, &TEXT_MSG[0], &b.f[0]);
    kf_opts(&c, 6, SEND_OPTS, &b.msgid);
    kf_settype(&b, T_TEXT);
    return kf_finish(&c, &b, 0, TEXT_MSG, 0);
}

/* send_image/voice/file(c, a, to, open_kfid, media_id, opts) */
static int kf_send_media(lua_State *L, const char *fname, int type)
{
    kf_ctx c = {L, fname};
    kf_body b;
    lua_settop(L, 6);
    kf_send_head(&c, &b);
    kf_arg(&c, 5, &MEDIA_MSG[0], &b.f[0]);
    kf_opts(&c, 6, SEND_OPTS, &b.msgid);
    kf_settype(&b, type);
    return kf_finish(&c, &b, 0, MEDIA_MSG, 0);
}

static int l_send_image(lua_State *L)
{
    return kf_send_media(L, "send_image", T_IMAGE);
}

static int l_send_voice(lua_State *L)
{
    return kf_send_media(L, "send_voice", T_VOICE);
}

static int l_send_file(lua_State *L)
{
    return kf_send_media(L, "send_file", T_FILE);
}

/* send_video(c, a, to, open_kfid, media_id, title, description, opts): title and description are accepted for
 * compatibility with the reference library and checked as strings, but not sent. */
static int l_send_video(lua_State *L)
{
    kf_ctx c = {L, "send_video"};
    kf_body b;
    kf_val extra;
    lua_settop(L, 8);
    kf_send_head(&c, &b);
    kf_arg(&c, 5, &MEDIA_MSG[0], &b.f[0]);
    for (int j = 0; j < 2; j++) kf_arg(&c, 6 + j, &VIDEO_EXTRA[j], &extra);
    kf_opts(&c, 8, SEND_OPTS, &b.msgid);
    kf_settype(&b, T_VIDEO);
    return kf_finish(&c, &b, 0, MEDIA_MSG, 0);
}

/* send_link/mini_program/menu/location(c, a, to, open_kfid, msg, opts) */
static int kf_send_msg(lua_State *L, const char *fname, int type)
{
    kf_ctx c = {L, fname};
    kf_body b;
    lua_settop(L, 6);
    kf_send_head(&c, &b);
    kf_msg(&c, 5, KF_TYPES[type].spec, &b);
    kf_opts(&c, 6, SEND_OPTS, &b.msgid);
    kf_settype(&b, type);
    return kf_finish(&c, &b, 0, KF_TYPES[type].spec, 0);
}

static int l_send_link(lua_State *L)
{
    return kf_send_msg(L, "send_link", T_LINK);
}

static int l_send_mini_program(lua_State *L)
{
    return kf_send_msg(L, "send_mini_program", T_MINIPROGRAM);
}

static int l_send_menu(lua_State *L)
{
    return kf_send_msg(L, "send_menu", T_MSGMENU);
}

static int l_send_location(lua_State *L)
{
    return kf_send_msg(L, "send_location", T_LOCATION);
}

/* The msgid of a raw body (argument 3), by the rules of opts.msgid: "" or a bad one raises; true, or none while the
 * client has auto_msgid, makes one, which goes into a shallow copy of the body put in place of argument 3 (the
 * caller's table is not touched). Leaves the msgid, or nil, at 4 (argument 4 is nil in this form). */
static void kf_raw_msgid(const kf_ctx *c)
{
    static const kf_path BODY = {"body", 0, NULL, NULL};
    lua_State *L = c->L;
    kf_val v;
    kf_init_vals(SEND_OPTS, &v, 3, &BODY);
    lua_pushliteral(L, "msgid");
    lua_rawget(L, 3);
    lua_replace(L, 4);
    int given = lua_type(L, 4) == LUA_TSTRING;
    kf_check(c, &SEND_OPTS[0], 4, &v);
    if (!v.present && kf_auto_msgid(c)) kf_make_msgid(c, 4, &v);
    if (!v.present || given) return;
    luaL_checkstack(L, 4, "wechat.core: body");
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, 3)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
    }
    lua_pushliteral(L, "msgid");
    lua_pushvalue(L, 4);
    lua_rawset(L, -3);
    lua_replace(L, 3);
}

/* send_message(c, a, body) or send_message(c, a, to, open_kfid, msgtype, msg, opts). The first form is chosen when
 * the third argument is a table and the fourth to seventh are nil (a Lua wrapper passes all seven). */
static int l_send_message(lua_State *L)
{
    kf_ctx c = {L, "send_message"};
    /* Arguments beyond the top would otherwise be taken by values the checks leave on the stack. */
    lua_settop(L, 7);
    if (lua_type(L, 3) == LUA_TTABLE && lua_isnoneornil(L, 4) && lua_isnoneornil(L, 5) && lua_isnoneornil(L, 6) &&
        lua_isnoneornil(L, 7)) {
        kf_raw_msgid(&c);
        jw_out w;
        jw_open(&w, L);
        jw_encode(&w, 3, c.fname, 3, "body", JW_OBJECT);
        kf_result(&w);
        lua_pushvalue(L, 4);
        return 2;
    }
    kf_body b;
    kf_send_head(&c, &b);
    kf_arg(&c, 5, &ARG_MSGTYPE, &b.msgtype);
    int type = kf_find_type(b.msgtype.s, b.msgtype.len);
    if (type >= 0) {
        kf_msg(&c, 6, KF_TYPES[type].spec, &b);
        kf_opts(&c, 7, SEND_OPTS, &b.msgid);
        return kf_finish(&c, &b, 0, KF_TYPES[type].spec, 0);
    }
    if (lua_type(L, 6) != LUA_TTABLE) kf_fail(&c, 6, NULL, "table expected, got %s", kf_typename(L, 6));
    kf_opts(&c, 7, SEND_OPTS, &b.msgid);
    return kf_finish(&c, &b, 0, NULL, 6);
}

/* The three on-event builders: code at 3; with event_argn, the message type comes from that argument ('text' or
 * 'msgmenu'); the message (a table, or the content string when content_arg) and msg_id follow. */
static int kf_on_event(lua_State *L, const char *fname, int type, int event_argn, int msg_argn, int content_arg)
{
    kf_ctx c = {L, fname};
    kf_body b;
    lua_settop(L, msg_argn + 1);
    b.nitems = 0;
    kf_arg(&c, 3, &ARG_CODE, &b.to);
    if (event_argn > 0) {
        kf_val evtype;
        kf_arg(&c, event_argn, &ARG_EVENT_TYPE, &evtype);
        if (kf_eq(evtype.s, evtype.len, "text"))
            type = T_TEXT;
        else if (kf_eq(evtype.s, evtype.len, "msgmenu"))
            type = T_MSGMENU;
        else
            kf_fail(&c, event_argn, &evtype.path, "'text' or 'msgmenu' expected, got '%s'",
                    jw_pushshow(L, evtype.s, evtype.len));
    }
    if (content_arg)
        kf_arg(&c, msg_argn, &TEXT_MSG[0], &b.f[0]);
    else
        kf_msg(&c, msg_argn, KF_TYPES[type].spec, &b);
    kf_arg(&c, msg_argn + 1, &ARG_MSG_ID, &b.msgid);
    if (!b.msgid.present && kf_auto_msgid(&c)) kf_make_msgid(&c, msg_argn + 1, &b.msgid);
    kf_settype(&b, type);
    return kf_finish(&c, &b, 1, KF_TYPES[type].spec, 0);
}

/* send_msg_on_event(c, a, code, on_event_msg_type, msg, msg_id) */
static int l_send_msg_on_event(lua_State *L)
{
    return kf_on_event(L, "send_msg_on_event", T_TEXT, 4, 5, 0);
}

/* send_text_on_event(c, a, code, content, msg_id) */
static int l_send_text_on_event(lua_State *L)
{
    return kf_on_event(L, "send_text_on_event", T_TEXT, 0, 4, 1);
}

/* send_menu_on_event(c, a, code, msg, msg_id) */
static int l_send_menu_on_event(lua_State *L)
{
    return kf_on_event(L, "send_menu_on_event", T_MSGMENU, 0, 4, 0);
}

/* sync_msg(c, a, opts) */
static int l_sync_msg(lua_State *L)
{
    kf_ctx c = {L, "sync_msg"};
    kf_val vals[KF_MAX_FIELDS];
    lua_settop(L, 3);
    kf_opts(&c, 3, SYNC_OPTS, vals);
    jw_out w;
    jw_open(&w, L);
    kf_write_obj(&c, &w, SYNC_OPTS, vals, NULL);
    return kf_result(&w);
}

/* encode(value) */
static int l_encode(lua_State *L)
{
    if (lua_gettop(L) < 1) return wechat_argerror(L, "encode", 1, "value expected");
    lua_settop(L, 1);
    jw_out w;
    jw_open(&w, L);
    jw_encode(&w, 1, "encode", 1, "value", 0);
    return kf_result(&w);
}

static const luaL_Reg body_funcs[] = {
    {"send_message", l_send_message},
    {"send_text", l_send_text},
    {"send_image", l_send_image},
    {"send_voice", l_send_voice},
    {"send_video", l_send_video},
    {"send_file", l_send_file},
    {"send_link", l_send_link},
    {"send_mini_program", l_send_mini_program},
    {"send_menu", l_send_menu},
    {"send_location", l_send_location},
    {"send_msg_on_event", l_send_msg_on_event},
    {"send_text_on_event", l_send_text_on_event},
    {"send_menu_on_event", l_send_menu_on_event},
    {"sync_msg", l_sync_msg},
    {"encode", l_encode},
    {NULL, NULL},
};

/* Pushes {name = limit} for the fields of spec that have one. */
static void kf_push_limits(lua_State *L, const kf_spec *spec)
{
    lua_newtable(L);
    for (; spec->name != NULL; spec++) {
        if (spec->max == 0) continue;
        lua_pushinteger(L, (lua_Integer)spec->max);
        lua_setfield(L, -2, spec->name);
    }
}

/* core.limits: the limits the builders enforce, from the tables above, so that the Lua builders (kf.menu,
 * kf.link) state none of their own: limits[msgtype][field] (bytes; msgmenu.list: items), limits.menu_item[type]
 * [field], limits.sync_msg[option], limits.msgid (bytes). */
static void kf_open_limits(lua_State *L)
{
    lua_newtable(L);
    for (int t = 0; t < T_COUNT; t++) {
        kf_push_limits(L, KF_TYPES[t].spec);
        lua_setfield(L, -2, KF_TYPES[t].name);
    }
    lua_newtable(L);
    for (int t = 0; t < ITEM_TYPES; t++) {
        kf_push_limits(L, ITEM_SPECS[t]);
        lua_setfield(L, -2, ITEM_NAMES[t]);
    }
    lua_setfield(L, -2, "menu_item");
    kf_push_limits(L, SYNC_OPTS);
    lua_setfield(L, -2, "sync_msg");
    lua_pushinteger(L, (lua_Integer)SEND_OPTS[0].max);
    lua_setfield(L, -2, "msgid");
    lua_setfield(L, -2, "limits");
}

void wechat_open_bodies(lua_State *L)
{
    wechat_setfuncs(L, body_funcs);
    kf_open_limits(L);
}
