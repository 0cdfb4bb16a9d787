/* src/http/http_proxy.c: framing checks and the stored header block of a response head an
 * upstream sent (see http_proxy.h). Pure: no I/O, no globals.
 *
 * The field lines are walked twice: first to check every line and the framing fields and
 * to gather the Connection list, then to build the stored block (a field listed in
 * Connection may come before the Connection field itself). */
#include "http/http_proxy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/buf.h"
#include "core/mc.h"

/* RFC 9110 §5.6.2 tchar. */
static int is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int name_is(const char *p, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(p, lit, n) == 0;
}

int http_proxy_hop_by_hop(const char *name, size_t n)
{
    static const char *const hop[] = {"connection",
                                      "keep-alive",
                                      "proxy-connection",
                                      "te",
                                      "trailer",
                                      "transfer-encoding",
                                      "upgrade",
                                      "proxy-authenticate",
                                      "proxy-authorization"};
    for (size_t i = 0; i < MC_ARRAY_SIZE(hop); i++)
        if (name_is(name, n, hop[i]))
            return 1;
    return 0;
}

/* Fields that are not stored: hop-by-hop ones, framing (the edge frames its own
 * responses), Age (the edge computes its own), and Surrogate-Control, which is addressed
 * to the edge itself. A parent edge's X-Cache fields describe its cache, not ours: ours
 * are added on delivery (its Cache-Status entry stays: RFC 9211 lists every cache on the
 * path). */
static int keep_stored(const char *name, size_t n)
{
    static const char *const drop[] = {"content-length", "age",           "surrogate-control",
                                       "x-cache",        "x-cache-level", "x-edge-region"};
    if (http_proxy_hop_by_hop(name, n))
        return 0;
    for (size_t i = 0; i < MC_ARRAY_SIZE(drop); i++)
        if (name_is(name, n, drop[i]))
            return 0;
    return 1;
}

/* One field line of a block: the name, and the value without surrounding whitespace. */
struct line {
    const char *name, *value;
    size_t nlen, vlen;
};

/* Splits the line [p, le) (its LF excluded). 0, or -EPROTO with *why. */
static int split_line(const char *p, const char *le, struct line *l, const char **why)
{
    const char *colon, *v, *ve;

    if (le > p && le[-1] == '\r')
        le--;
    if (p < le && (*p == ' ' || *p == '\t')) {
        /* RFC 9112 §5.2: a proxy may refuse obs-fold in a response with a 502. */
        *why = "obs-fold";
        return -EPROTO;
    }
    colon = memchr(p, ':', (size_t)(le - p));
    if (!colon || colon == p) {
        *why = "invalid field line";
        return -EPROTO;
    }
    for (const char *q = p; q < colon; q++) {
        if (!is_tchar((unsigned char)*q)) {
            /* Whitespace before the colon included (RFC 9112 §5.1): a field that one
             * parser reads as Content-Length and another does not is how responses get
             * split. */
            *why = "invalid field name";
            return -EPROTO;
        }
    }
    v = colon + 1;
    ve = le;
    while (v < ve && (*v == ' ' || *v == '\t'))
        v++;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
        ve--;
    for (const char *q = v; q < ve; q++) {
        if (*q == '\r' || *q == '\0') {
            /* RFC 9110 §5.5: reject, or replace by SP; a bare CR can end a line for a
             * client further down. */
            *why = "CR or NUL in a field value";
            return -EPROTO;
        }
    }
    l->name = p;
    l->nlen = (size_t)(colon - p);
    l->value = v;
    l->vlen = (size_t)(ve - v);
    return 0;
}

/* Calls fn for each line of lines[0..len); stops at the first non-zero return. */
static int each_line(const char *lines, size_t len, int (*fn)(const struct line *l, void *arg),
                     void *arg, const char **why)
{
    const char *p = lines, *end = p ? p + len : p;

    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        struct line l;
        int rc = split_line(p, le, &l, why);
        if (rc == 0)
            rc = fn(&l, arg);
        if (rc != 0)
            return rc;
        p = eol ? eol + 1 : end;
    }
    return 0;
}

/* ---- framing (RFC 9112 §6.1, §6.3) ---- */

struct framing {
    int version_minor;
    int64_t cl;        /* -1 until a Content-Length field */
    unsigned cl_items; /* values in the current Content-Length field */
    int te_seen;
    unsigned chunked; /* times chunked was listed */
    int last_chunked; /* the last coding so far is chunked */
    int other_coding; /* a coding other than chunked */
    struct buf conn;  /* the Connection fields' values, joined by "," */
    const char *why;
};

/* Content-Length = 1*DIGIT, or a list of identical values (RFC 9112 §6.3 rule 5; RFC 9110
 * §8.6). -1 when invalid. */
static int cl_item(const char *p, size_t n, void *arg)
{
    struct framing *fr = arg;
    int64_t v = 0;

    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9' || v > (INT64_MAX - (p[i] - '0')) / 10) {
            fr->why = "invalid Content-Length";
            return -1;
        }
        v = v * 10 + (p[i] - '0');
    }
    if (fr->cl >= 0 && v != fr->cl) {
        fr->why = "differing Content-Length values";
        return -1;
    }
    fr->cl = v;
    fr->cl_items++;
    return 0;
}

static int te_item(const char *p, size_t n, void *arg)
{
    struct framing *fr = arg;

    if (name_is(p, n, "chunked")) {
        fr->chunked++;
        fr->last_chunked = 1;
    } else {
        fr->other_coding = 1;
        fr->last_chunked = 0;
    }
    return 0;
}

static int frame_line(const struct line *l, void *arg)
{
    struct framing *fr = arg;

    if (name_is(l->name, l->nlen, "content-length")) {
        fr->cl_items = 0;
        if (http_list_each(l->value, l->vlen, cl_item, fr) != 0)
            return -EPROTO;
        if (fr->cl_items == 0) {
            fr->why = "invalid Content-Length"; /* empty: no value at all */
            return -EPROTO;
        }
    } else if (name_is(l->name, l->nlen, "transfer-encoding")) {
        fr->te_seen = 1;
        http_list_each(l->value, l->vlen, te_item, fr);
    } else if (name_is(l->name, l->nlen, "connection")) {
        if ((fr->conn.len && buf_append(&fr->conn, ",", 1) != 0) ||
            buf_append(&fr->conn, l->value, l->vlen) != 0) {
            fr->why = "header block too large";
            return -E2BIG;
        }
    }
    return 0;
}

/* ---- the stored block ---- */

struct build {
    struct http_resp_info info;
    struct buf out;
    struct buf vary;
    char *etag;
    const struct buf *conn; /* Connection list of the response, or NULL */
};

/* Is the field named in the Connection list? Connection options are tokens (RFC 9110
 * §7.6.1), so the list is split at every comma, quotes or not: a name that some parser
 * could read as listed is dropped. */
static int conn_listed(const struct buf *conn, const struct line *l)
{
    const char *p = conn->data, *end = p ? p + conn->len : p;

    while (p < end) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        const char *ie = c ? c : end;
        while (p < ie && (*p == ' ' || *p == '\t'))
            p++;
        const char *te = ie;
        while (te > p && (te[-1] == ' ' || te[-1] == '\t'))
            te--;
        if ((size_t)(te - p) == l->nlen && strncasecmp(p, l->name, l->nlen) == 0)
            return 1;
        p = c ? c + 1 : end;
    }
    return 0;
}

static int vary_item(const char *item, size_t n, void *arg)
{
    struct buf *vary = arg;
    if (vary->len && buf_append(vary, ",", 1) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char ch = item[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch - 'A' + 'a');
        if (buf_append(vary, &ch, 1) != 0)
            return -1;
    }
    return 0;
}

/* Appends "name: value\r\n" whole or not at all. */
static int put_line(struct buf *out, const struct line *l)
{
    if (out->cap - out->len < l->nlen + l->vlen + 4)
        return -E2BIG;
    buf_append(out, l->name, l->nlen);
    buf_append(out, ": ", 2);
    buf_append(out, l->value, l->vlen);
    buf_append(out, "\r\n", 2);
    return 0;
}

static int build_line(const struct line *l, void *arg)
{
    struct build *b = arg;

    http_resp_info_add(&b->info, l->name, l->nlen, l->value, l->vlen);
    if (name_is(l->name, l->nlen, "etag")) {
        free(b->etag);
        b->etag = mc_xstrndup(l->value, l->vlen);
    } else if (name_is(l->name, l->nlen, "vary")) {
        http_list_each(l->value, l->vlen, vary_item, &b->vary);
    }
    if (!keep_stored(l->name, l->nlen))
        return 0;
    if (b->conn && conn_listed(b->conn, l))
        return 0; /* RFC 9110 §7.6.1: fields the Connection list names are hop-by-hop */
    return put_line(&b->out, l);
}

int http_proxy_resp_parse(struct http_proxy_resp *out, int status, int version_minor, int no_body,
                          const char *lines, size_t len, int64_t now, const char **why)
{
    struct framing fr = {.version_minor = version_minor, .cl = -1};
    struct build b = {0};
    const char *w = NULL;
    int rc;

    buf_init(&fr.conn, HTTP_PROXY_HDRS_MAX);
    rc = each_line(lines, len, frame_line, &fr, &w);
    if (rc != 0) {
        w = w ? w : fr.why;
        goto fail;
    }
    rc = -EPROTO;
    if (fr.te_seen && version_minor == 0) {
        /* RFC 9112 §6.1: a 1.0 message with Transfer-Encoding has faulty framing. */
        w = "Transfer-Encoding in HTTP/1.0";
        goto fail;
    }
    if (fr.te_seen && fr.cl >= 0) {
        /* RFC 9112 §6.3 rule 3: Transfer-Encoding would win, but the message "ought to be
         * handled as an error" (a sign of smuggling or splitting): it is. */
        w = "Transfer-Encoding with Content-Length";
        goto fail;
    }
    if (fr.te_seen && !no_body && (fr.other_coding || fr.chunked != 1 || !fr.last_chunked)) {
        /* Only chunked is decoded here; any other coding would be stored still encoded,
         * and without a final chunked the end of the body is unknowable (§6.3 rule 4). */
        w = "unsupported transfer coding";
        goto fail;
    }

    http_resp_info_init(&b.info);
    b.info.status = status;
    buf_init(&b.out, HTTP_PROXY_HDRS_MAX);
    buf_init(&b.vary, HTTP_PROXY_HDRS_MAX);
    b.conn = &fr.conn;
    rc = each_line(lines, len, build_line, &b, &w);
    if (rc != 0) {
        w = "header block too large";
        buf_fini(&b.out);
        buf_fini(&b.vary);
        free(b.etag);
        goto fail;
    }
    http_resp_info_finish(&b.info, now);
    buf_fini(&fr.conn);
    out->info = b.info;
    out->hdrs = buf_take(&b.out, &out->hdrs_len);
    out->etag = b.etag;
    out->vary = b.vary.len ? buf_take(&b.vary, NULL) : NULL;
    buf_fini(&b.vary);
    out->content_length = fr.te_seen ? -1 : fr.cl;
    out->chunked = fr.te_seen && !no_body;
    return 0;

fail:
    buf_fini(&fr.conn);
    if (why)
        *why = w ? w : "invalid response head";
    return rc;
}

void http_proxy_resp_fini(struct http_proxy_resp *r)
{
    free(r->hdrs);
    free(r->etag);
    free(r->vary);
    r->hdrs = r->etag = r->vary = NULL;
}

/* ---- 304 ---- */

struct merge {
    struct buf *out;
    const char *fresh; /* the 304's stored block */
    size_t fresh_len;
};

static int in_block(const struct line *l, void *arg)
{
    const struct line *old = arg;
    return l->nlen == old->nlen && strncasecmp(l->name, old->name, l->nlen) == 0;
}

static int merge_old_line(const struct line *l, void *arg)
{
    struct merge *m = arg;
    const char *why;

    if (!keep_stored(l->name, l->nlen))
        return 0; /* never stored by this code; a store written otherwise keeps no framing */
    if (each_line(m->fresh, m->fresh_len, in_block, (void *)l, &why) == 1)
        return 0; /* replaced by the 304's field */
    return put_line(m->out, l) == 0 ? 0 : -E2BIG;
}

char *http_proxy_merge_304(const char *old, size_t oldlen, const char *lines, size_t len,
                           size_t *outlen)
{
    struct http_proxy_resp fresh;
    struct merge m;
    struct buf out;
    const char *why;
    const char *p = old, *end = p ? p + oldlen : p;

    /* The 304 was checked already; here its fields are only filtered as for storing. */
    if (http_proxy_resp_parse(&fresh, 304, 1, 1, lines, len, 0, &why) != 0)
        return NULL;
    buf_init(&out, HTTP_PROXY_HDRS_MAX);
    m.out = &out;
    m.fresh = fresh.hdrs;
    m.fresh_len = fresh.hdrs_len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        struct line l;
        /* A stored line that is not a field line any more (an older store) is dropped. */
        if (split_line(p, le, &l, &why) == 0 && merge_old_line(&l, &m) != 0)
            goto toobig;
        p = eol ? eol + 1 : end;
    }
    if (out.cap - out.len < fresh.hdrs_len)
        goto toobig;
    buf_append(&out, fresh.hdrs, fresh.hdrs_len);
    http_proxy_resp_fini(&fresh);
    return buf_take(&out, outlen);

toobig:
    buf_fini(&out);
    http_proxy_resp_fini(&fresh);
    return NULL;
}
