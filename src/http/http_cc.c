/* src/http/http_cc.c: Cache-Control (RFC 9111 §5.2) and its targeted variants
 * (CDN-Cache-Control, RFC 9213; Surrogate-Control), list fields, and the gathering of
 * the response and request facts the caching rules in http_cache.c work from. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "http/http_cache.h"

/* RFC 9111 §1.2.2: a delta-seconds too large to represent is taken as 2^31. */
#define DELTA_MAX ((int64_t)2147483648LL)

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

/* lit lowercase, not NUL-terminated compare on len */
static int ieq(const char *p, size_t len, const char *lit)
{
    size_t i;

    for (i = 0; i < len; i++)
        if (lit[i] == '\0' || lower((unsigned char)p[i]) != (unsigned char)lit[i])
            return 0;
    return lit[len] == '\0';
}

void http_cc_init(struct http_cc *cc)
{
    memset(cc, 0, sizeof(*cc));
    cc->max_age = cc->s_maxage = -1;
    cc->stale_while_revalidate = cc->stale_if_error = -1;
    cc->max_stale = cc->min_fresh = -1;
}

/* delta-seconds = 1*DIGIT, saturating at 2^31. -1 when not a delta-seconds. */
static int64_t delta_seconds(const char *v, size_t len)
{
    int64_t n = 0;
    size_t i;

    if (len == 0)
        return -1;
    for (i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        if (n < DELTA_MAX)
            n = n * 10 + (v[i] - '0');
    }
    return n > DELTA_MAX ? DELTA_MAX : n;
}

/* Stores the first occurrence of a directive (RFC 9111 §4.2.1 allows using the first).
 * An invalid value for a freshness directive makes the response stale (§4.2.1: "caches
 * are encouraged to consider responses that have invalid freshness information to be
 * stale"); for the others it is ignored. */
static void set_delta(int64_t *dst, int64_t v, int invalid_means_zero)
{
    if (*dst >= 0)
        return;
    if (v < 0)
        v = invalid_means_zero ? 0 : -1;
    *dst = v;
}

void http_cc_parse(struct http_cc *cc, const char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        size_t n0, n1, v0, v1;
        int has_val = 0;

        while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == ','))
            i++;
        if (i == len)
            break;
        n0 = i;
        while (i < len && s[i] != '=' && s[i] != ',' && s[i] != ' ' && s[i] != '\t')
            i++;
        n1 = i;
        while (i < len && (s[i] == ' ' || s[i] == '\t'))
            i++;
        v0 = v1 = i;
        if (i < len && s[i] == '=') {
            has_val = 1;
            i++;
            while (i < len && (s[i] == ' ' || s[i] == '\t'))
                i++;
            if (i < len && s[i] == '"') {
                /* quoted-string; RFC 9111 §5.2: accept it for every argument. */
                v0 = ++i;
                while (i < len && s[i] != '"') {
                    if (s[i] == '\\' && i + 1 < len)
                        i++;
                    i++;
                }
                v1 = i;
                if (i < len)
                    i++;
            } else {
                v0 = i;
                while (i < len && s[i] != ',' && s[i] != ' ' && s[i] != '\t')
                    i++;
                v1 = i;
            }
        }
        /* Skip to the next element; anything else before the comma is garbage that
         * invalidates the value of this directive. */
        while (i < len && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (i < len && s[i] != ',') {
            has_val = 1;
            v1 = v0; /* forces an invalid (empty) value */
            while (i < len && s[i] != ',')
                i++;
        }
        if (n1 == n0)
            continue;
        cc->present = 1;

        {
            const char *n = s + n0, *v = s + v0;
            size_t nl = n1 - n0, vl = v1 - v0;
            int64_t d = has_val ? delta_seconds(v, vl) : -1;

            if (ieq(n, nl, "max-age"))
                set_delta(&cc->max_age, d, 1);
            else if (ieq(n, nl, "s-maxage"))
                set_delta(&cc->s_maxage, d, 1);
            else if (ieq(n, nl, "stale-while-revalidate"))
                set_delta(&cc->stale_while_revalidate, d, 0);
            else if (ieq(n, nl, "stale-if-error"))
                set_delta(&cc->stale_if_error, d, 0);
            else if (ieq(n, nl, "max-stale"))
                set_delta(&cc->max_stale, has_val ? d : INT64_MAX, 0);
            else if (ieq(n, nl, "min-fresh"))
                set_delta(&cc->min_fresh, d, 0);
            else if (ieq(n, nl, "no-store"))
                cc->no_store = 1;
            else if (ieq(n, nl, "no-cache")) {
                if (has_val && vl > 0)
                    cc->no_cache_fields = 1;
                else
                    cc->no_cache = 1;
            } else if (ieq(n, nl, "private")) {
                if (has_val && vl > 0)
                    cc->private_fields = 1;
                else
                    cc->private_ = 1;
            } else if (ieq(n, nl, "public"))
                cc->public_ = 1;
            else if (ieq(n, nl, "must-revalidate"))
                cc->must_revalidate = 1;
            else if (ieq(n, nl, "proxy-revalidate"))
                cc->proxy_revalidate = 1;
            else if (ieq(n, nl, "must-understand"))
                cc->must_understand = 1;
            else if (ieq(n, nl, "immutable"))
                cc->immutable = 1;
            else if (ieq(n, nl, "only-if-cached"))
                cc->only_if_cached = 1;
            else if (ieq(n, nl, "no-transform"))
                cc->no_transform = 1;
        }
    }
}

int http_list_each(const char *value, size_t len,
                   int (*cb)(const char *item, size_t ilen, void *arg), void *arg)
{
    size_t i = 0;

    while (i < len) {
        size_t e0, e1;
        int inq = 0, rc;

        while (i < len && (value[i] == ' ' || value[i] == '\t'))
            i++;
        e0 = i;
        while (i < len && (inq || value[i] != ',')) {
            if (value[i] == '"')
                inq = !inq;
            else if (inq && value[i] == '\\' && i + 1 < len)
                i++;
            i++;
        }
        e1 = i;
        while (e1 > e0 && (value[e1 - 1] == ' ' || value[e1 - 1] == '\t'))
            e1--;
        if (e1 > e0) {
            rc = cb(value + e0, e1 - e0, arg);
            if (rc != 0)
                return rc;
        }
        if (i < len)
            i++;
    }
    return 0;
}

void http_resp_info_init(struct http_resp_info *ri)
{
    memset(ri, 0, sizeof(*ri));
    http_cc_init(&ri->cc);
    http_cc_init(&ri->cdn_cc);
    http_cc_init(&ri->surrogate);
    ri->date = ri->expires = ri->last_modified = ri->age = -1;
}

static int vary_item(const char *item, size_t ilen, void *arg)
{
    if (ilen == 1 && item[0] == '*')
        *(int *)arg = 1;
    return 0;
}

static int no_cache_item(const char *item, size_t ilen, void *arg)
{
    if (ieq(item, ilen, "no-cache"))
        *(int *)arg = 1;
    return 0;
}

void http_resp_info_add(struct http_resp_info *ri, const char *name, size_t nlen, const char *value,
                        size_t vlen)
{
    int64_t t;

    switch (nlen) {
    case 3:
        if (ieq(name, nlen, "age")) {
            /* RFC 9111 §5.1: the first valid value; an invalid Age is ignored. */
            t = delta_seconds(value, vlen);
            if (ri->age < 0 && t >= 0)
                ri->age = t;
        }
        break;
    case 4:
        if (ieq(name, nlen, "date")) {
            if (ri->date < 0 && http_date_parse(value, vlen, &t) == 0)
                ri->date = t;
        } else if (ieq(name, nlen, "etag")) {
            ri->has_validator = 1;
        } else if (ieq(name, nlen, "vary")) {
            http_list_each(value, vlen, vary_item, &ri->vary_star);
        }
        break;
    case 6:
        if (ieq(name, nlen, "pragma"))
            http_list_each(value, vlen, no_cache_item, &ri->pragma_no_cache);
        break;
    case 7:
        if (ieq(name, nlen, "expires")) {
            /* RFC 9111 §5.3: an invalid Expires (e.g. "0") means already expired. */
            if (!ri->has_expires)
                ri->expires = http_date_parse(value, vlen, &t) == 0 ? t : 0;
            ri->has_expires = 1;
        }
        break;
    case 10:
        if (ieq(name, nlen, "set-cookie"))
            ri->has_set_cookie = 1;
        break;
    case 13:
        if (ieq(name, nlen, "cache-control")) {
            http_cc_parse(&ri->cc, value, vlen);
        } else if (ieq(name, nlen, "last-modified")) {
            if (ri->last_modified < 0 && http_date_parse(value, vlen, &t) == 0) {
                ri->last_modified = t;
                ri->has_validator = 1;
            }
        }
        break;
    case 17:
        if (ieq(name, nlen, "cdn-cache-control"))
            http_cc_parse(&ri->cdn_cc, value, vlen);
        else if (ieq(name, nlen, "surrogate-control"))
            http_cc_parse(&ri->surrogate, value, vlen);
        break;
    default: break;
    }
}

void http_req_info_from_request(struct http_req_info *qi, const struct http_request *r)
{
    size_t i;

    memset(qi, 0, sizeof(*qi));
    http_cc_init(&qi->cc);
    qi->method = r->method;
    for (i = 0; i < r->nheaders; i++) {
        const struct http_header *h = &r->headers[i];

        if (http_str_ieq(h->name, "cache-control"))
            http_cc_parse(&qi->cc, h->value.p, h->value.len);
        else if (http_str_ieq(h->name, "authorization"))
            qi->has_authorization = 1;
        else if (http_str_ieq(h->name, "pragma"))
            http_list_each(h->value.p, h->value.len, no_cache_item, &qi->pragma_no_cache);
    }
}

void http_header_lines_each(const char *p, size_t len,
                            void (*fn)(const char *name, size_t nlen, const char *value,
                                       size_t vlen, void *arg),
                            void *arg)
{
    const char *end = p + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (colon && colon > p) {
            const char *v = colon + 1, *ve = le;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            fn(p, (size_t)(colon - p), v, (size_t)(ve - v), arg);
        }
        p = eol ? eol + 1 : end;
    }
}
