/* src/origin/origin_util.c: the origin's pure helpers (see origin_int.h).
 *
 * Path cleaning is the security boundary of the origin: it decodes first and checks
 * segments afterwards, so "%2e%2e", "..%2f" and friends are refused like a plain "..";
 * origin.c then opens the result below the root with RESOLVE_BENEATH, which also stops
 * symlinks from leading out. Nothing here allocates or does I/O. */
#include "origin/origin_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/units.h"

int origin__path_clean(const char *path, size_t len, char *out, size_t outlen)
{
    size_t o = 0, seg; /* seg: where the current output segment starts */

    if (len == 0 || path[0] != '/' || outlen == 0)
        return -EINVAL;
    seg = 0;
    for (size_t i = 0; i <= len; i++) {
        char ch;
        if (i == len) {
            ch = '/';
        } else if (path[i] == '%') {
            int hi, lo;
            if (i + 2 >= len)
                return -EINVAL;
            hi = mc_hexval(path[i + 1]);
            lo = mc_hexval(path[i + 2]);
            if (hi < 0 || lo < 0)
                return -EINVAL;
            ch = (char)(hi * 16 + lo);
            i += 2;
            if (ch == '\0')
                return -EINVAL;
        } else {
            ch = path[i];
        }
        if (ch == '/') {
            size_t sl = o - seg;
            if (sl == 0 || (sl == 1 && out[seg] == '.')) {
                o = seg; /* empty or "." segment: drop it */
                continue;
            }
            if (sl == 2 && out[seg] == '.' && out[seg + 1] == '.')
                return -EINVAL;
            if (i == len)
                break;
            /* May take the NUL's place: a separator is always followed by a character
             * (checked below) or dropped. */
            if (o >= outlen)
                return -ENAMETOOLONG;
            out[o++] = '/';
            seg = o;
            continue;
        }
        if (o + 1 >= outlen)
            return -ENAMETOOLONG;
        out[o++] = ch;
    }
    /* A kept segment is followed by '/', so a trailing one is dropped here. */
    if (o > 0 && out[o - 1] == '/')
        o--;
    out[o] = '\0';
    return 0;
}

static int ends_with(const char *s, size_t len, const char *suffix)
{
    size_t sl = strlen(suffix);
    return len >= sl && memcmp(s + len - sl, suffix, sl) == 0;
}

int origin__path_hidden(const char *rel)
{
    const char *p = rel;

    if (ends_with(rel, strlen(rel), ".hdrs"))
        return 1;
    while (*p) {
        if (strncmp(p, ".mlcdn-", 7) == 0)
            return 1;
        p = strchr(p, '/');
        if (!p)
            break;
        p++;
    }
    return 0;
}

static const struct {
    const char *ext;
    const char *type;
} types[] = {
    {"json", "application/json"},
    {"txt", "text/plain; charset=utf-8"},
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"csv", "text/csv; charset=utf-8"},
    {"md", "text/markdown; charset=utf-8"},
    {"xml", "application/xml"},
    {"yaml", "application/yaml"},
    {"yml", "application/yaml"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"ico", "image/x-icon"},
    {"wasm", "application/wasm"},
    {"gz", "application/gzip"},
    {"zst", "application/zstd"},
    {"tar", "application/x-tar"},
    {"zip", "application/zip"},
    {"pdf", "application/pdf"},
    /* ML artefacts have no registered types; octet-stream is what every hub serves. */
    {"bin", "application/octet-stream"},
    {"onnx", "application/octet-stream"},
    {"npy", "application/octet-stream"},
    {"npz", "application/octet-stream"},
    {"safetensors", "application/octet-stream"},
    {"pt", "application/octet-stream"},
    {"pth", "application/octet-stream"},
    {"pb", "application/octet-stream"},
    {"tflite", "application/octet-stream"},
    {"gguf", "application/octet-stream"},
    {"parquet", "application/vnd.apache.parquet"},
};

const char *origin__content_type(const char *name)
{
    const char *slash = strrchr(name, '/');
    const char *base = slash ? slash + 1 : name;
    const char *dot = strrchr(base, '.');

    if (dot && dot != base && dot[1]) {
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
            if (strcasecmp(dot + 1, types[i].ext) == 0)
                return types[i].type;
    }
    return "application/octet-stream";
}

/* ---- .hdrs ---- */

static int is_tchar(unsigned char c)
{
    /* RFC 9110 §5.6.2 token characters. */
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int ieq(const char *a, size_t alen, const char *lit)
{
    return alen == strlen(lit) && strncasecmp(a, lit, alen) == 0;
}

int origin__hdrs_parse(const char *text, size_t len, struct origin_hdrs *out)
{
    const char *p = text, *end = text + len;
    int skipped = 0;

    memset(out, 0, sizeof(*out));
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *next = nl ? nl + 1 : end;
        if (le > p && le[-1] == '\r')
            le--;
        const char *s = p;
        p = next;
        while (s < le && (*s == ' ' || *s == '\t'))
            s++;
        if (s == le || *s == '#')
            continue;
        const char *colon = memchr(s, ':', (size_t)(le - s));
        if (!colon || colon == s) {
            skipped++;
            continue;
        }
        size_t nlen = (size_t)(colon - s);
        int ok = 1;
        for (size_t i = 0; i < nlen; i++)
            ok &= is_tchar((unsigned char)s[i]);
        const char *v = colon + 1, *ve = le;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        for (const char *q = v; q < ve; q++)
            if ((unsigned char)*q < 0x20 && *q != '\t')
                ok = 0;
            else if (*q == 0x7f)
                ok = 0;
        if (!ok) {
            skipped++;
            continue;
        }
        if (ieq(s, nlen, "Status")) {
            int st = 0;
            size_t i = 0, vl = (size_t)(ve - v);
            for (; i < vl && i < 3 && v[i] >= '0' && v[i] <= '9'; i++)
                st = st * 10 + (v[i] - '0');
            /* "Status: 404 Not Found" is accepted; the reason phrase is ours. */
            if (i != 3 || st < 100 || st > 599 || (i < vl && v[i] != ' ')) {
                skipped++;
                continue;
            }
            out->status = st;
            continue;
        }
        if (ieq(s, nlen, "Content-Length") || ieq(s, nlen, "Transfer-Encoding") ||
            ieq(s, nlen, "Connection") || ieq(s, nlen, "Date") || out->n == ORIGIN_HDRS_MAX) {
            skipped++;
            continue;
        }
        out->h[out->n].name = s;
        out->h[out->n].nlen = nlen;
        out->h[out->n].value = v;
        out->h[out->n].vlen = (size_t)(ve - v);
        out->n++;
    }
    return skipped;
}

const struct origin_hdr *origin__hdrs_find(const struct origin_hdrs *over, const char *name)
{
    if (!over)
        return NULL;
    for (size_t i = 0; i < over->n; i++)
        if (ieq(over->h[i].name, over->h[i].nlen, name))
            return &over->h[i];
    return NULL;
}

int origin__headers_build(struct buf *b, const char *const (*defs)[2], size_t ndefs,
                          const struct origin_hdrs *over)
{
    int err = 0;

    for (size_t i = 0; i < ndefs && !err; i++) {
        if (!defs[i][1] || origin__hdrs_find(over, defs[i][0]))
            continue;
        err = buf_printf(b, "%s: %s\r\n", defs[i][0], defs[i][1]);
    }
    for (size_t i = 0; over && i < over->n && !err; i++)
        err = buf_printf(b, "%.*s: %.*s\r\n", (int)over->h[i].nlen, over->h[i].name,
                         (int)over->h[i].vlen, over->h[i].value);
    return err;
}

/* ---- validators, small parsers ---- */

size_t origin__etag(char *buf, uint64_t size, int64_t mtime_ns, uint64_t ino)
{
    int n = snprintf(buf, 64, "\"%" PRIx64 "-%" PRIx64 "-%" PRIx64 "\"", size, (uint64_t)mtime_ns,
                     ino);
    return n > 0 ? (size_t)n : 0;
}

int origin__latency_parse(const char *s, size_t len, uint64_t *ms)
{
    char tmp[32];
    uint64_t v = 0;
    size_t i;

    if (len == 0 || len >= sizeof(tmp))
        return -EINVAL;
    for (i = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        if (v > 1000000000ull)
            return -EINVAL;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (i != len) {
        memcpy(tmp, s, len);
        tmp[len] = '\0';
        if (units_parse_duration_ms(tmp, &v) != 0)
            return -EINVAL;
    }
    if (v > 600000)
        return -EINVAL;
    *ms = v;
    return 0;
}
