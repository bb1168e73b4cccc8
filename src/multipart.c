/* The framing of a multipart/form-data body with one file part, as WeCom's media/upload wants it:
 *
 *   --BOUNDARY\r\n
 *   Content-Disposition: form-data; name="media"; filename="a.png"; filelength=1234\r\n
 *   Content-Type: application/octet-stream\r\n
 *   \r\n
 *   <the file's bytes>\r\n
 *   --BOUNDARY--\r\n
 *
 * Pure: it writes the text before and after the bytes, and both transports send the bytes themselves (libcurl from a
 * read callback, the cosocket transport from Lua), so the file never passes through here and never sits in memory. */
#include <stdio.h>
#include <string.h>

#include "wechat_core.h"

#define MP_BOUNDARY_RANDOM 16     /* random bytes, written as 32 hex digits */
#define MP_MAX_BOUNDARY 70        /* RFC 2046 */
#define MP_MAX_NAME 64
#define MP_MAX_FILENAME 255       /* bytes, before escaping */
#define MP_MAX_LENGTH 9007199254740992.0 /* 2^53: every size a Lua number holds exactly */
#define MP_PREFIX "----wechat-work-"

/* RFC 2046 bchars without the space, so the boundary needs no quotes in the Content-Type header. */
static int boundary_char(unsigned char c)
{
    /* strchr finds the terminating NUL too: a NUL byte is no boundary character */
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != '\0' && strchr("'()+_,-./:=?", c) != NULL);
}

static int name_char(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '-' ||
           c == '.';
}

/* The filename as browsers write it in a quoted form-data parameter (HTML's multipart/form-data encoding): '"'
 * becomes %22, CR %0D and LF %0A; other bytes (UTF-8 included) go as they are. */
static void add_filename(luaL_Buffer *b, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        switch (s[i]) {
        case '"': luaL_addstring(b, "%22"); break;
        case '\r': luaL_addstring(b, "%0D"); break;
        case '\n': luaL_addstring(b, "%0A"); break;
        default: luaL_addchar(b, s[i]);
        }
    }
}

/* core.multipart_frame(name, filename, length[, boundary]) -> head, tail, content_type
 * name: [0-9A-Za-z_.-], 1..64 bytes; filename: 1..255 bytes, no NUL; length: the part's byte count, an integer
 * >= 0; boundary (for specs and the fuzzer): 1..70 RFC 2046 characters without space, else "----wechat-work-" and 32
 * random hex digits. The body is head .. <length bytes> .. tail; content_type goes in the request's header. */
static int l_multipart_frame(lua_State *L)
{
    static const char *const F = "multipart_frame";
    size_t name_len, filename_len, boundary_len;
    if (lua_type(L, 1) != LUA_TSTRING) return wechat_argerror(L, F, 1, "string expected, got %s", luaL_typename(L, 1));
    const char *name = lua_tolstring(L, 1, &name_len);
    if (name_len == 0 || name_len > MP_MAX_NAME)
        return wechat_argerror(L, F, 1, "name: 1 to %d bytes expected, got %d", MP_MAX_NAME, (int)name_len);
    for (size_t i = 0; i < name_len; i++)
        if (!name_char((unsigned char)name[i])) return wechat_argerror(L, F, 1, "name: only [0-9A-Za-z_.-] allowed");

    if (lua_type(L, 2) != LUA_TSTRING) return wechat_argerror(L, F, 2, "string expected, got %s", luaL_typename(L, 2));
    const char *filename = lua_tolstring(L, 2, &filename_len);
    if (filename_len == 0 || filename_len > MP_MAX_FILENAME)
        return wechat_argerror(L, F, 2, "filename: 1 to %d bytes expected, got %d", MP_MAX_FILENAME,
                               (int)(filename_len > 999999 ? 999999 : filename_len));
    if (memchr(filename, '\0', filename_len) != NULL) return wechat_argerror(L, F, 2, "filename: contains a NUL byte");

    if (lua_type(L, 3) != LUA_TNUMBER)
        return wechat_argerror(L, F, 3, "integer expected, got %s", luaL_typename(L, 3));
    /* a float holding an integer is one (LuaJIT has no other kind); NaN fails the range check */
    lua_Number length = lua_tonumber(L, 3);
    if (!(length >= 0 && length <= MP_MAX_LENGTH)) return wechat_argerror(L, F, 3, "length: 0 to 2^53 expected");
    if ((lua_Number)(long long)length != length)
        return wechat_argerror(L, F, 3, "integer expected, got non-integer number");

    char made[sizeof MP_PREFIX + 2 * MP_BOUNDARY_RANDOM];
    const char *boundary;
    if (lua_isnoneornil(L, 4)) {
        memcpy(made, MP_PREFIX, sizeof MP_PREFIX - 1);
        wechat_random_hex(L, F, made + sizeof MP_PREFIX - 1, MP_BOUNDARY_RANDOM);
        boundary = made;
        boundary_len = sizeof MP_PREFIX - 1 + 2 * MP_BOUNDARY_RANDOM;
    } else {
        if (lua_type(L, 4) != LUA_TSTRING)
            return wechat_argerror(L, F, 4, "string or nil expected, got %s", luaL_typename(L, 4));
        boundary = lua_tolstring(L, 4, &boundary_len);
        if (boundary_len == 0 || boundary_len > MP_MAX_BOUNDARY)
            return wechat_argerror(L, F, 4, "boundary: 1 to %d characters expected", MP_MAX_BOUNDARY);
        for (size_t i = 0; i < boundary_len; i++)
            if (!boundary_char((unsigned char)boundary[i]))
                return wechat_argerror(L, F, 4, "boundary: RFC 2046 characters (no space) expected");
    }

    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "--");
    luaL_addlstring(&b, boundary, boundary_len);
    luaL_addstring(&b, "\r\nContent-Disposition: form-data; name=\"");
    luaL_addlstring(&b, name, name_len);
    luaL_addstring(&b, "\"; filename=\"");
    add_filename(&b, filename, filename_len);
    luaL_addstring(&b, "\"; filelength=");
    char digits[24]; /* 2^53 has 16 digits */
    int n = snprintf(digits, sizeof digits, "%.0f", (double)length);
    if (n <= 0 || (size_t)n >= sizeof digits) return luaL_error(L, "multipart_frame: cannot write the length");
    luaL_addlstring(&b, digits, (size_t)n);
    luaL_addstring(&b, "\r\nContent-Type: application/octet-stream\r\n\r\n");
    luaL_pushresult(&b);

    lua_pushliteral(L, "\r\n--");
    lua_pushlstring(L, boundary, boundary_len);
    lua_pushliteral(L, "--\r\n");
    lua_concat(L, 3);

    lua_pushliteral(L, "multipart/form-data; boundary=");
    lua_pushlstring(L, boundary, boundary_len);
    lua_concat(L, 2);
    return 3;
}

static const luaL_Reg multipart_funcs[] = {
    {"multipart_frame", l_multipart_frame},
    {NULL, NULL},
};

void wechat_open_multipart(lua_State *L)
{
    wechat_setfuncs(L, multipart_funcs);
}
