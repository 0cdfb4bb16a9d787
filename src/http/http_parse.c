/* src/http/http_parse.c: strict HTTP/1.1 request head parser and chunked decoder.
 *
 * http_parse_request() is stateless: it scans buf from the start in one pass, without
 * allocating and without looking past len, and the caller calls it again once more bytes
 * have arrived. Limits are checked on the bytes scanned so far, so an endless request
 * line or head is rejected as soon as it crosses the limit, complete or not.
 *
 * Rejected (400 unless noted; the connection is then closed, RFC 9112 §11.2): a method
 * that is not a token (a very long one: 501), a request-target with a CTL, SP, '#' or
 * non-ASCII byte, a form not allowed for the method, anything but single SPs between
 * the three parts, a version that is not "HTTP/d.d" (a well-formed one other than 1.0 and
 * 1.1: 505), bare CR or bare LF anywhere in the head, obs-fold (and whitespace before
 * the first field line), a field name that is not a token or is followed by whitespace,
 * CTLs (HTAB aside) or NUL in a field value, a missing (HTTP/1.1), repeated or invalid
 * Host, a Content-Length that is not digits or overflows or differs from another,
 * Transfer-Encoding with Content-Length or in HTTP/1.0 or whose final coding is not
 * chunked or that repeats chunked (any coding but chunked: 501), and limits: URI/request
 * line 414, head size and field count 431, Content-Length over max_body 413.
 * The authority of an absolute-form target replaces Host (RFC 9112 §3.2.2).
 *
 * After parsing, an intermediary removes what the Connection field names
 * (http_request_strip_connection) and whatever else it must not pass on
 * (http_request_strip_fields), before it looks at the request.
 * See docs/internals/http.md. */
#include "http/http_parse.h"

#include <string.h>

#include "core/mc.h"

/* Character classes, one table: RFC 9110 §5.6.2 tchar, request-target bytes (VCHAR but
 * '#', RFC 9112 §3.2), field-value bytes (VCHAR, obs-text, SP, HTAB; RFC 9110 §5.5), hex
 * digits, and Host bytes (RFC 3986 reg-name / IP-literal / port). */
#define C_TOKEN 1
#define C_TARGET 2
#define C_FIELD 4
#define C_HEX 8
#define C_HOST 16

static const unsigned char cls[256] = {
    0,  0,  0,  0,  0,  0,  0,  0,  0,  4,  0,  0,  0,  0,  0,  0,  /* 0x00 */
    0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 0x10 */
    4,  23, 6,  5,  23, 23, 23, 23, 22, 22, 23, 23, 22, 23, 23, 6,  /* 0x20 */
    31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 22, 22, 6,  22, 6,  6,  /* 0x30 */
    6,  31, 31, 31, 31, 31, 31, 23, 23, 23, 23, 23, 23, 23, 23, 23, /* 0x40 */
    23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 22, 6,  22, 7,  23, /* 0x50 */
    7,  31, 31, 31, 31, 31, 31, 23, 23, 23, 23, 23, 23, 23, 23, 23, /* 0x60 */
    23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 6,  7,  6,  23, 0,  /* 0x70 */
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0x80 */
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4, 4, 4, 4, 4, 4, 4,
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4, 4, 4, 4, 4, 4, 4,
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4, 4, 4, 4, 4, 4, 4,
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4, 4, 4, 4, 4, 4, 4,
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4, 4, 4, 4,
};

#define IS(c, k) (cls[(unsigned char)(c)] & (k))

/* Longer methods than this are answered 501 (RFC 9112 §3: a method longer than any
 * implemented one); keeps a garbage first line from being scanned as a method. */
#define HTTP_MAX_METHOD 32
/* Bound on a chunk-size line with its extensions, and on the whole trailer section. */
#define HTTP_CHUNK_LINE_MAX 4096
#define HTTP_TRAILER_MAX 16384

static const char slash[] = "/";

void http_limits_default(struct http_limits *lim)
{
    lim->max_request_line = 8192;
    lim->max_uri = 8192;
    lim->max_header_bytes = 65536;
    lim->max_headers = 100;
    lim->max_body = (uint64_t)16 << 20;
}

static inline unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

int http_str_ieq_n(struct http_str s, const char *lit, size_t n)
{
    if (s.len != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)s.p[i]) != lower((unsigned char)lit[i]))
            return 0;
    return 1;
}

#define IEQ(p, len, lit) http_str_ieq_n((struct http_str){(p), (len)}, lit, sizeof(lit) - 1)

const struct http_header *http_request_header(const struct http_request *r, const char *name)
{
    size_t n = strlen(name);

    for (size_t i = 0; i < r->nheaders; i++)
        if (http_str_ieq_n(r->headers[i].name, name, n))
            return &r->headers[i];
    return NULL;
}

/* Fields meant for every hop, which a Connection option cannot make hop-by-hop: the
 * host the request is keyed and routed by (RFC 9112 §3.2), the framing this hop already
 * consumed (§6), credentials a proxy must not touch (RFC 9110 §11.6.2) and cache
 * directives a proxy must pass on (RFC 9111 §5.2). A client listing Host in Connection
 * (RFC 9110 §7.6.1 forbids it) must not make the cache key one host while the origin
 * sees another. */
static int end_to_end(struct http_str name)
{
    switch (name.len) {
    case 4: return IEQ(name.p, 4, "host");
    case 13: return IEQ(name.p, 13, "authorization") || IEQ(name.p, 13, "cache-control");
    case 14: return IEQ(name.p, 14, "content-length");
    case 17: return IEQ(name.p, 17, "transfer-encoding");
    default: return 0;
    }
}

/* Is `name` a member of the comma-separated list v[0..len) (OWS around members)? */
static int list_has(const char *v, size_t len, struct http_str name)
{
    size_t i = 0, e0, e1;

    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        e0 = i;
        while (i < len && v[i] != ',')
            i++;
        e1 = i;
        while (e1 > e0 && (v[e1 - 1] == ' ' || v[e1 - 1] == '\t'))
            e1--;
        if (e1 - e0 == name.len) {
            size_t k;

            for (k = 0; k < name.len; k++)
                if (lower((unsigned char)v[e0 + k]) != lower((unsigned char)name.p[k]))
                    break;
            if (k == name.len)
                return 1;
        }
    }
    return 0;
}

int http_request_hop_nominated(const struct http_request *r, struct http_str name)
{
    size_t i;

    if (name.len == 0 || end_to_end(name) || IEQ(name.p, name.len, "connection"))
        return 0;
    for (i = 0; i < r->nheaders; i++)
        if (IEQ(r->headers[i].name.p, r->headers[i].name.len, "connection") &&
            list_has(r->headers[i].value.p, r->headers[i].value.len, name))
            return 1;
    return 0;
}

/* Keeps the field lines for which drop[i] is 0, in order. */
static size_t compact(struct http_request *r, const unsigned char *drop)
{
    size_t i, o = 0;

    for (i = 0; i < r->nheaders; i++)
        if (!drop[i])
            r->headers[o++] = r->headers[i];
    i = r->nheaders - o;
    r->nheaders = o;
    return i;
}

size_t http_request_strip_connection(struct http_request *r)
{
    unsigned char drop[HTTP_MAX_HEADERS];
    size_t i, n = 0;

    /* Most requests carry no Connection field: one pass, not one per field. */
    for (i = 0; i < r->nheaders; i++)
        if (IEQ(r->headers[i].name.p, r->headers[i].name.len, "connection"))
            break;
    if (i == r->nheaders)
        return 0;
    /* Marked first, removed after: the Connection fields are read while marking. */
    for (i = 0; i < r->nheaders; i++) {
        drop[i] = (unsigned char)http_request_hop_nominated(r, r->headers[i].name);
        n += drop[i];
    }
    return n ? compact(r, drop) : 0;
}

size_t http_request_strip_fields(struct http_request *r, const struct http_str *names, size_t n)
{
    unsigned char drop[HTTP_MAX_HEADERS];
    size_t i, k, ndrop = 0;

    for (i = 0; i < r->nheaders; i++) {
        struct http_str nm = r->headers[i].name;

        drop[i] = 0;
        if (IEQ(nm.p, nm.len, "host") || IEQ(nm.p, nm.len, "content-length") ||
            IEQ(nm.p, nm.len, "transfer-encoding"))
            continue;
        for (k = 0; k < n && !drop[i]; k++)
            drop[i] = (unsigned char)http_str_ieq_n(nm, names[k].p, names[k].len);
        ndrop += drop[i];
    }
    return ndrop ? compact(r, drop) : 0;
}

static enum http_method method_of(const char *m, size_t len)
{
    /* Methods are case-sensitive (RFC 9110 §9.1). */
    switch (len) {
    case 3:
        if (memcmp(m, "GET", 3) == 0)
            return HTTP_M_GET;
        if (memcmp(m, "PUT", 3) == 0)
            return HTTP_M_PUT;
        break;
    case 4:
        if (memcmp(m, "HEAD", 4) == 0)
            return HTTP_M_HEAD;
        if (memcmp(m, "POST", 4) == 0)
            return HTTP_M_POST;
        break;
    case 5:
        if (memcmp(m, "PATCH", 5) == 0)
            return HTTP_M_PATCH;
        if (memcmp(m, "TRACE", 5) == 0)
            return HTTP_M_TRACE;
        if (memcmp(m, "PURGE", 5) == 0)
            return HTTP_M_PURGE;
        break;
    case 6:
        if (memcmp(m, "DELETE", 6) == 0)
            return HTTP_M_DELETE;
        break;
    case 7:
        if (memcmp(m, "OPTIONS", 7) == 0)
            return HTTP_M_OPTIONS;
        if (memcmp(m, "CONNECT", 7) == 0)
            return HTTP_M_CONNECT;
        break;
    default: break;
    }
    return HTTP_M_OTHER;
}

/* Host header value or authority: reg-name / IPv4 / IP-literal, then an optional ":port"
 * (RFC 9112 §3.2, RFC 3986 §3.2.2). Empty is allowed for the Host header only. */
static int host_valid(const char *p, size_t len, int allow_empty)
{
    size_t i = 0, colon = len;

    if (len == 0)
        return allow_empty;
    if (p[0] == '[') {
        for (i = 1; i < len && p[i] != ']'; i++)
            if (!(IS(p[i], C_HEX) || p[i] == ':' || p[i] == '.'))
                return 0;
        if (i == len || i == 1)
            return 0;
        i++;
        if (i < len && p[i] != ':')
            return 0;
        colon = i;
    } else {
        for (i = 0; i < len; i++) {
            if (!IS(p[i], C_HOST) || p[i] == '[' || p[i] == ']')
                return 0;
            if (p[i] == ':') {
                colon = i;
                break;
            }
        }
        if (colon == 0)
            return 0;
    }
    if (colon < len) {
        /* An empty port is allowed by RFC 3986 ("host:"); digits only otherwise. */
        for (i = colon + 1; i < len; i++)
            if (p[i] < '0' || p[i] > '9')
                return 0;
    }
    return 1;
}

/* Content-Length (RFC 9112 §6.3): 1*DIGIT, or a list of identical values. */
static int parse_content_length(const char *p, size_t len, int64_t *out)
{
    size_t i = 0;
    int64_t v = -1, cur;

    for (;;) {
        while (i < len && (p[i] == ' ' || p[i] == '\t'))
            i++;
        if (i == len || p[i] < '0' || p[i] > '9')
            return -1;
        cur = 0;
        while (i < len && p[i] >= '0' && p[i] <= '9') {
            if (cur > (INT64_MAX - (p[i] - '0')) / 10)
                return -1;
            cur = cur * 10 + (p[i] - '0');
            i++;
        }
        if (v >= 0 && cur != v)
            return -1;
        v = cur;
        while (i < len && (p[i] == ' ' || p[i] == '\t'))
            i++;
        if (i == len)
            break;
        if (p[i] != ',')
            return -1;
        i++;
    }
    *out = v;
    return 0;
}

struct te_state {
    int seen;                    /* a Transfer-Encoding field was present */
    int chunked_seen;            /* chunked appeared somewhere */
    int last_chunked;            /* the last coding so far is chunked */
    struct http_str unsupported; /* the coding that made it 501 */
};

/* Transfer-Encoding (RFC 9112 §6.1): a list of codings; chunked at most once and last.
 * chunked is the only coding implemented: de-chunking "gzip, chunked" and passing the
 * rest on as the body would hand the next hop compressed bytes as if they were the
 * content, so gzip, deflate, compress and every unknown coding get 501 (§6.1: a server
 * that does not understand a coding SHOULD answer 501). */
static int parse_te(struct te_state *te, const char *p, size_t len, const char **msg)
{
    size_t i = 0, n0;

    te->seen = 1;
    while (i < len) {
        while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == ','))
            i++;
        if (i == len)
            break;
        n0 = i;
        while (i < len && IS(p[i], C_TOKEN))
            i++;
        if (i == n0) {
            *msg = "invalid Transfer-Encoding";
            return -400;
        }
        if (IEQ(p + n0, i - n0, "chunked")) {
            if (te->chunked_seen) {
                *msg = "chunked applied more than once";
                return -400;
            }
            te->chunked_seen = 1;
            te->last_chunked = 1;
        } else if (te->chunked_seen) {
            /* RFC 9112 §6.1: chunked must be the final coding of a request. */
            *msg = "chunked is not the final transfer coding";
            return -400;
        } else {
            te->unsupported.p = p + n0;
            te->unsupported.len = i - n0;
            *msg = "transfer coding not implemented";
            return -501;
        }
        /* Parameters: only "; token=value" for the codings we know; be strict. */
        while (i < len && (p[i] == ' ' || p[i] == '\t'))
            i++;
        if (i < len && p[i] != ',') {
            *msg = "invalid Transfer-Encoding";
            return -400;
        }
    }
    return 0;
}

/* Connection (RFC 9110 §7.6.1): a list of tokens; close wins over keep-alive. */
static void parse_connection(const char *p, size_t len, int *close_, int *ka)
{
    size_t i = 0, e0, e1;

    while (i < len) {
        while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == ','))
            i++;
        e0 = i;
        while (i < len && p[i] != ',')
            i++;
        e1 = i;
        while (e1 > e0 && (p[e1 - 1] == ' ' || p[e1 - 1] == '\t'))
            e1--;
        if (IEQ(p + e0, e1 - e0, "close"))
            *close_ = 1;
        else if (IEQ(p + e0, e1 - e0, "keep-alive"))
            *ka = 1;
    }
}

/* Splits the request-target by form (RFC 9112 §3.2). */
static int parse_target(struct http_request *r, const char **msg)
{
    const char *t = r->target.p, *e = t + r->target.len, *q, *a0;

    r->abs_host.p = t;
    r->abs_host.len = 0;
    r->query.p = e;
    r->query.len = 0;
    if (r->method == HTTP_M_CONNECT) {
        /* authority-form only, and only for CONNECT (§3.2.3). */
        if (t[0] == '/' || !host_valid(t, r->target.len, 0) ||
            memchr(t, ':', r->target.len) == NULL) {
            *msg = "CONNECT needs authority-form";
            return -400;
        }
        r->abs_host = r->target;
        r->path.p = t;
        r->path.len = 0;
        return 0;
    }
    if (t[0] == '*') {
        /* asterisk-form only with OPTIONS (§3.2.4). */
        if (r->target.len != 1 || r->method != HTTP_M_OPTIONS) {
            *msg = "asterisk-form only with OPTIONS";
            return -400;
        }
        r->path = r->target;
        return 0;
    }
    if (t[0] == '/') {
        a0 = t;
    } else {
        /* absolute-form (§3.2.2): http or https, with a non-empty authority. */
        size_t sl;

        if (r->target.len > 7 && IEQ(t, 7, "http://"))
            sl = 7;
        else if (r->target.len > 8 && IEQ(t, 8, "https://"))
            sl = 8;
        else {
            *msg = "invalid request-target";
            return -400;
        }
        a0 = t + sl;
        while (a0 < e && *a0 != '/' && *a0 != '?')
            a0++;
        r->abs_host.p = t + sl;
        r->abs_host.len = (size_t)(a0 - (t + sl));
        /* Userinfo is deprecated and a phishing vector (RFC 9110 §4.2.4). */
        if (!host_valid(r->abs_host.p, r->abs_host.len, 0)) {
            *msg = "invalid authority in request-target";
            return -400;
        }
        if (a0 == e || *a0 == '?') {
            /* No path: it means "/" (RFC 9112 §3.2.1). */
            r->path.p = slash;
            r->path.len = 1;
            if (a0 < e) {
                r->query.p = a0 + 1;
                r->query.len = (size_t)(e - a0 - 1);
            }
            return 0;
        }
    }
    q = memchr(a0, '?', (size_t)(e - a0));
    r->path.p = a0;
    if (q != NULL) {
        r->path.len = (size_t)(q - a0);
        r->query.p = q + 1;
        r->query.len = (size_t)(e - q - 1);
    } else {
        r->path.len = (size_t)(e - a0);
    }
    return 0;
}

#define FAIL(st, m)                                                                                \
    do {                                                                                           \
        status = (st);                                                                             \
        msg = (m);                                                                                 \
        goto fail;                                                                                 \
    } while (0)

int http_parse_request(const char *buf, size_t len, const struct http_limits *lim,
                       struct http_request *out, const char **errmsg)
{
    const char *p = buf, *end = buf + len, *line = buf, *n0, *v0, *vend;
    const char *msg = NULL;
    size_t max_headers = MC_MIN(lim->max_headers, (size_t)HTTP_MAX_HEADERS), nlen;
    struct te_state te = {0, 0, 0, {NULL, 0}};
    int status, in_line = 1, host_count = 0, cl_seen = 0, conn_close = 0, conn_ka = 0;
    int expect = 0, rc;
    size_t host_idx = 0;
    int64_t cl = -1, v;

    out->unsupported_coding.p = NULL;
    out->unsupported_coding.len = 0;

    /* RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the
     * request-line; we ignore exactly one. */
    if (p < end && *p == '\r') {
        if (p + 1 == end)
            goto again;
        if (p[1] != '\n')
            FAIL(400, "bare CR");
        p += 2;
    }
    line = p;

    /* method SP */
    out->method_str.p = p;
    while (p < end && IS(*p, C_TOKEN)) {
        p++;
        if (MC_UNLIKELY(p - line > HTTP_MAX_METHOD))
            FAIL(501, "method too long");
    }
    if (p == end)
        goto again;
    if (*p != ' ') {
        if (*p == '\n')
            FAIL(400, "bare LF");
        FAIL(400, p == line ? "invalid method" : "invalid character in method");
    }
    out->method_str.len = (size_t)(p - line);
    if (out->method_str.len == 0)
        FAIL(400, "invalid method");
    out->method = method_of(line, out->method_str.len);
    p++;

    /* request-target SP */
    out->target.p = p;
    while (p < end && IS(*p, C_TARGET))
        p++;
    out->target.len = (size_t)(p - out->target.p);
    if (out->target.len > lim->max_uri)
        FAIL(414, "URI too long");
    if (p == end)
        goto again;
    if (*p != ' ') {
        if (*p == '#')
            FAIL(400, "fragment in request-target");
        if (*p == '\r' || *p == '\n')
            FAIL(400, "missing HTTP version");
        FAIL(400, "invalid character in request-target");
    }
    if (out->target.len == 0)
        FAIL(400, "empty request-target");
    p++;

    /* HTTP-version CRLF: "HTTP/" DIGIT "." DIGIT, name case-sensitive (RFC 9112 §2.3). */
    {
        static const char pat[] = "HTTP/d.d\r\n";
        size_t i, avail = (size_t)(end - p);

        for (i = 0; i < 10 && i < avail; i++) {
            char c = p[i];
            int ok = pat[i] == 'd' ? (c >= '0' && c <= '9') : c == pat[i];

            if (!ok) {
                if (c == '\n' && i == 8)
                    FAIL(400, "bare LF");
                if (i == 9)
                    FAIL(400, "bare CR");
                FAIL(400, "invalid HTTP version");
            }
        }
        if (avail < 10)
            goto again;
        if (p[5] != '1' || (p[7] != '0' && p[7] != '1'))
            FAIL(505, "HTTP version not supported");
        out->version_minor = p[7] - '0';
        p += 10;
    }
    if ((size_t)(p - line) - 2 > lim->max_request_line)
        FAIL(414, "request line too long");
    in_line = 0;

    /* field lines, then CRLF */
    out->nheaders = 0;
    out->host.p = NULL;
    out->host.len = 0;
    for (;;) {
        if ((size_t)(p - buf) > lim->max_header_bytes)
            FAIL(431, "request header too large");
        if (p == end)
            goto again;
        if (*p == '\r') {
            if (p + 1 == end)
                goto again;
            if (p[1] != '\n')
                FAIL(400, "bare CR");
            p += 2;
            break;
        }
        if (*p == '\n')
            FAIL(400, "bare LF");
        if (*p == ' ' || *p == '\t') {
            /* RFC 9112 §5.2 obs-fold, and §2.2 whitespace after the start-line. */
            FAIL(400, out->nheaders ? "obs-fold" : "whitespace before first header");
        }
        n0 = p;
        while (p < end && IS(*p, C_TOKEN))
            p++;
        if (p == end)
            continue; /* re-checks the size limit, then AGAIN */
        if (*p != ':') {
            if (*p == ' ' || *p == '\t')
                FAIL(400, "whitespace before colon");
            if (*p == '\n')
                FAIL(400, "bare LF");
            FAIL(400, "invalid character in header name");
        }
        if (p == n0)
            FAIL(400, "empty header name");
        nlen = (size_t)(p - n0);
        p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        v0 = p;
        while (p < end && IS(*p, C_FIELD))
            p++;
        vend = p;
        while (vend > v0 && (vend[-1] == ' ' || vend[-1] == '\t'))
            vend--;
        if (p == end || (*p == '\r' && p + 1 == end))
            continue;
        if (*p == '\r') {
            if (p[1] != '\n')
                FAIL(400, "bare CR");
            p += 2;
        } else if (*p == '\n') {
            FAIL(400, "bare LF");
        } else {
            FAIL(400, *p == '\0' ? "NUL in header value" : "control character in header value");
        }
        if (out->nheaders == max_headers)
            FAIL(431, "too many header fields");
        out->headers[out->nheaders].name.p = n0;
        out->headers[out->nheaders].name.len = nlen;
        out->headers[out->nheaders].value.p = v0;
        out->headers[out->nheaders].value.len = (size_t)(vend - v0);
        out->nheaders++;

        /* The few fields that frame the message or the connection. */
        switch (nlen) {
        case 4:
            if (IEQ(n0, 4, "host")) {
                if (++host_count > 1)
                    FAIL(400, "multiple Host headers");
                if (!host_valid(v0, (size_t)(vend - v0), 1))
                    FAIL(400, "invalid Host header");
                out->host.p = v0;
                out->host.len = (size_t)(vend - v0);
                host_idx = out->nheaders - 1;
            }
            break;
        case 6:
            if (IEQ(n0, 6, "expect") && IEQ(v0, (size_t)(vend - v0), "100-continue"))
                expect = 1;
            break;
        case 10:
            if (IEQ(n0, 10, "connection"))
                parse_connection(v0, (size_t)(vend - v0), &conn_close, &conn_ka);
            break;
        case 14:
            if (IEQ(n0, 14, "content-length")) {
                if (parse_content_length(v0, (size_t)(vend - v0), &v) != 0)
                    FAIL(400, "invalid Content-Length");
                if (cl_seen && v != cl)
                    FAIL(400, "differing Content-Length values");
                cl_seen = 1;
                cl = v;
            }
            break;
        case 17:
            if (IEQ(n0, 17, "transfer-encoding")) {
                /* RFC 9112 §6.1: HTTP/1.0 has no chunked; a 1.0 request with TE was
                 * likely forwarded by something that ignores it (smuggling). */
                if (out->version_minor == 0)
                    FAIL(400, "Transfer-Encoding in HTTP/1.0");
                rc = parse_te(&te, v0, (size_t)(vend - v0), &msg);
                if (rc < 0) {
                    out->unsupported_coding = te.unsupported;
                    status = -rc;
                    goto fail;
                }
            }
            break;
        default: break;
        }
    }

    out->head_len = (size_t)(p - buf);
    if (out->head_len > lim->max_header_bytes || out->head_len > INT32_MAX)
        FAIL(431, "request header too large");
    if (out->version_minor == 1 && host_count == 0)
        FAIL(400, "missing Host header");
    if (te.seen) {
        /* RFC 9112 §6.1 / §6.3: both framings at once is the classic smuggling vector. */
        if (cl_seen)
            FAIL(400, "both Content-Length and Transfer-Encoding");
        if (!te.last_chunked)
            FAIL(400, "chunked is not the final transfer coding");
    }
    rc = parse_target(out, &msg);
    if (rc < 0) {
        status = -rc;
        goto fail;
    }
    if (out->abs_host.len && out->method != HTTP_M_CONNECT) {
        /* RFC 9112 §3.2.2: the authority of an absolute-form target replaces Host, which
         * is ignored. Both the host and the Host field say it from here on, so whatever
         * keys, routes or forwards the request sees one host: a cache that keyed on the
         * target but forwarded the field could be made to store one host's response under
         * another's key. */
        out->host = out->abs_host;
        if (host_count)
            out->headers[host_idx].value = out->abs_host;
    }
    if (cl_seen && (uint64_t)cl > lim->max_body)
        FAIL(413, "body too large");
    out->content_length = cl;
    out->chunked = te.seen;
    if (out->version_minor == 1)
        out->keep_alive = !conn_close;
    else
        out->keep_alive = conn_ka && !conn_close;
    /* RFC 9110 §10.1.1: a 100-continue expectation in HTTP/1.0 is ignored. */
    out->expect_continue = expect && out->version_minor == 1;
    return (int)out->head_len;

again:
    /* +2: the CRLF is not part of the limit, and may already be partly here. */
    if (in_line && (size_t)(end - line) > lim->max_request_line + 2)
        FAIL(414, "request line too long");
    if (len > lim->max_header_bytes)
        FAIL(431, "request header too large");
    return HTTP_PARSE_AGAIN;

fail:
    if (errmsg != NULL)
        *errmsg = msg;
    return -status;
}

/* ---- chunked decoder ---- */

enum {
    CK_SIZE = 0, /* chunk-size hex digits */
    CK_BWS,      /* whitespace after the size: only ';' may follow */
    CK_EXT,      /* chunk extensions, skipped */
    CK_SIZE_LF,  /* CR seen at the end of the size line */
    CK_DATA,
    CK_DATA_CR,
    CK_DATA_LF,
    CK_TR_START, /* start of a trailer line or the final CRLF */
    CK_TR_NAME,
    CK_TR_VALUE,
    CK_TR_LF,
    CK_FINAL_LF,
    CK_DONE,
    CK_ERROR,
};

void http_chunked_init(struct http_chunked *c, uint64_t max_body)
{
    memset(c, 0, sizeof(*c));
    c->state = CK_SIZE;
    c->max_body = max_body;
}

int http_chunked_feed(struct http_chunked *c, const char *in, size_t len, size_t *consumed,
                      const char **data, size_t *data_len, const char **errmsg)
{
    size_t i = 0, n;
    int status = 400;
    const char *msg = "invalid chunked framing";
    unsigned char ch;
    unsigned d;

    *data = NULL;
    *data_len = 0;
    if (c->state == CK_DONE) {
        *consumed = 0;
        return HTTP_CHUNKED_DONE;
    }
    if (c->state == CK_ERROR) {
        msg = "chunked decoder already failed";
        goto fail;
    }
    while (i < len) {
        ch = (unsigned char)in[i];
        switch (c->state) {
        case CK_SIZE:
            if (IS(ch, C_HEX)) {
                d = (unsigned)mc_hexval(ch);
                if (c->remaining >> 60) {
                    msg = "chunk size overflow";
                    goto fail;
                }
                c->remaining = (c->remaining << 4) | d;
                c->digits++;
                if (++c->line_len > HTTP_CHUNK_LINE_MAX) {
                    msg = "chunk size line too long";
                    goto fail;
                }
                i++;
                break;
            }
            if (c->digits == 0) {
                msg = "invalid chunk size";
                goto fail;
            }
            if (ch == '\r')
                c->state = CK_SIZE_LF;
            else if (ch == ';')
                c->state = CK_EXT;
            else if (ch == ' ' || ch == '\t')
                c->state = CK_BWS;
            else {
                msg = "invalid chunk size";
                goto fail;
            }
            c->line_len++;
            i++;
            break;
        case CK_BWS:
            /* RFC 9112 §7.1.1: BWS is only allowed before a chunk-ext's ';'. */
            if (ch == ';')
                c->state = CK_EXT;
            else if (ch != ' ' && ch != '\t') {
                msg = "whitespace after chunk size";
                goto fail;
            }
            if (++c->line_len > HTTP_CHUNK_LINE_MAX) {
                msg = "chunk size line too long";
                goto fail;
            }
            i++;
            break;
        case CK_EXT:
            if (ch == '\r') {
                c->state = CK_SIZE_LF;
            } else if (!IS(ch, C_FIELD)) {
                msg = "invalid chunk extension";
                goto fail;
            }
            if (++c->line_len > HTTP_CHUNK_LINE_MAX) {
                msg = "chunk extension too long";
                goto fail;
            }
            i++;
            break;
        case CK_SIZE_LF:
            if (ch != '\n') {
                msg = "bare CR in chunk size line";
                goto fail;
            }
            i++;
            c->line_len = 0;
            c->digits = 0;
            if (c->remaining == 0) {
                c->state = CK_TR_START;
                break;
            }
            if (c->remaining > c->max_body - c->total) {
                status = 413;
                msg = "body too large";
                goto fail;
            }
            c->state = CK_DATA;
            break;
        case CK_DATA:
            n = len - i;
            if (n > c->remaining)
                n = (size_t)c->remaining;
            *data = in + i;
            *data_len = n;
            c->remaining -= n;
            c->total += n;
            i += n;
            if (c->remaining == 0)
                c->state = CK_DATA_CR;
            *consumed = i;
            return HTTP_CHUNKED_DATA;
        case CK_DATA_CR:
            if (ch != '\r') {
                msg = "missing CRLF after chunk data";
                goto fail;
            }
            c->state = CK_DATA_LF;
            i++;
            break;
        case CK_DATA_LF:
            if (ch != '\n') {
                msg = "bare CR after chunk data";
                goto fail;
            }
            c->state = CK_SIZE;
            i++;
            break;
        case CK_TR_START:
            if (ch == '\r') {
                c->state = CK_FINAL_LF;
            } else if (IS(ch, C_TOKEN)) {
                c->state = CK_TR_NAME;
            } else {
                msg = "invalid trailer field";
                goto fail;
            }
            goto trailer_byte;
        case CK_TR_NAME:
            if (ch == ':')
                c->state = CK_TR_VALUE;
            else if (!IS(ch, C_TOKEN)) {
                msg = "invalid trailer field name";
                goto fail;
            }
            goto trailer_byte;
        case CK_TR_VALUE:
            if (ch == '\r')
                c->state = CK_TR_LF;
            else if (!IS(ch, C_FIELD)) {
                msg = "invalid trailer field value";
                goto fail;
            }
            goto trailer_byte;
        case CK_TR_LF:
            if (ch != '\n') {
                msg = "bare CR in trailer";
                goto fail;
            }
            c->state = CK_TR_START;
            goto trailer_byte;
        case CK_FINAL_LF:
            if (ch != '\n') {
                msg = "bare CR at end of chunked body";
                goto fail;
            }
            i++;
            c->state = CK_DONE;
            *consumed = i;
            return HTTP_CHUNKED_DONE;
        default: msg = "chunked decoder in a bad state"; goto fail;
        }
        continue;
    trailer_byte:
        /* The trailer section is discarded but bounded as a whole. */
        if (++c->line_len > HTTP_TRAILER_MAX) {
            msg = "trailer section too large";
            goto fail;
        }
        i++;
    }
    *consumed = i;
    return HTTP_CHUNKED_MORE;

fail:
    c->state = CK_ERROR;
    *consumed = i;
    if (errmsg != NULL)
        *errmsg = msg;
    return -status;
}

const char *http_status_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 102: return "Processing";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 508: return "Loop Detected";
    default: return "Unknown";
    }
}
