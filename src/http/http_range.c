/* src/http/http_range.c: validators and Range (RFC 9110 §8.8, §13, §14).
 *
 * Entity-tag lists are parsed strictly (a malformed element ends the list and never
 * matches). Only single byte ranges are served: a multi-range request gets the whole
 * representation (RFC 9110 §14.2 allows ignoring Range), which avoids multipart bodies
 * and the range-amplification attacks they make possible. */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "http/http_cache.h"
#include "http/http_range.h"

/* An entity-tag at s: [W/] DQUOTE *etagc DQUOTE. Returns its length, 0 if malformed. */
static size_t etag_len(const char *s, size_t len)
{
    size_t i = 0;

    if (len >= 2 && s[0] == 'W' && s[1] == '/')
        i = 2;
    if (i >= len || s[i] != '"')
        return 0;
    for (i++; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '"')
            return i + 1;
        /* etagc = %x21 / %x23-7E / obs-text */
        if (c < 0x21 || c == 0x7f)
            return 0;
    }
    return 0;
}

static int is_weak(const char *s, size_t len)
{
    return len >= 2 && s[0] == 'W' && s[1] == '/';
}

int http_etag_weak_eq(const char *a, size_t alen, const char *b, size_t blen)
{
    if (etag_len(a, alen) != alen || etag_len(b, blen) != blen || alen == 0)
        return 0;
    if (is_weak(a, alen)) {
        a += 2;
        alen -= 2;
    }
    if (is_weak(b, blen)) {
        b += 2;
        blen -= 2;
    }
    return alen == blen && memcmp(a, b, alen) == 0;
}

static int etag_strong_eq(const char *a, size_t alen, const char *b, size_t blen)
{
    return !is_weak(a, alen) && !is_weak(b, blen) && alen == blen && alen > 0 &&
           etag_len(a, alen) == alen && memcmp(a, b, alen) == 0;
}

/* Does the If-Match / If-None-Match list `v` match the stored etag? "*" matches any
 * stored representation. */
static int etag_list_match(const char *v, size_t len, const char *etag, size_t elen, int weak)
{
    size_t i = 0, n;

    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        if (i == len)
            break;
        if (v[i] == '*')
            return 1;
        n = etag_len(v + i, len - i);
        if (n == 0)
            return 0;
        if (elen > 0 &&
            (weak ? http_etag_weak_eq(v + i, n, etag, elen) : etag_strong_eq(v + i, n, etag, elen)))
            return 1;
        i += n;
        while (i < len && (v[i] == ' ' || v[i] == '\t'))
            i++;
        if (i < len && v[i] != ',')
            return 0;
    }
    return 0;
}

int http_cache_conditional(const struct http_request *r, const char *etag, size_t etag_len_,
                           int64_t last_modified)
{
    const struct http_header *im = NULL, *inm = NULL, *ims = NULL, *ius = NULL;
    int safe = r->method == HTTP_M_GET || r->method == HTTP_M_HEAD;
    int match = 0;
    size_t i;
    int64_t t;

    if (etag == NULL)
        etag_len_ = 0;
    /* Repeated fields are one list (RFC 9110 §5.3); the date ones use the first. */
    for (i = 0; i < r->nheaders; i++) {
        const struct http_header *h = &r->headers[i];

        if (http_str_ieq(h->name, "if-match")) {
            im = h;
            if (etag_list_match(h->value.p, h->value.len, etag, etag_len_, 0))
                match |= 1;
        } else if (http_str_ieq(h->name, "if-none-match")) {
            inm = h;
            if (etag_list_match(h->value.p, h->value.len, etag, etag_len_, 1))
                match |= 2;
        } else if (http_str_ieq(h->name, "if-modified-since")) {
            if (ims == NULL)
                ims = h;
        } else if (http_str_ieq(h->name, "if-unmodified-since")) {
            if (ius == NULL)
                ius = h;
        }
    }
    /* RFC 9110 §13.2.2 steps 1-2. */
    if (im != NULL) {
        if (!(match & 1))
            return 412;
    } else if (ius != NULL && last_modified >= 0 &&
               http_date_parse(ius->value.p, ius->value.len, &t) == 0 && last_modified > t) {
        return 412;
    }
    /* Step 3: If-None-Match, weak comparison; when present If-Modified-Since is ignored. */
    if (inm != NULL) {
        if (match & 2)
            return safe ? 304 : 412;
        return 0;
    }
    /* Step 4: If-Modified-Since, GET/HEAD only; an invalid date is ignored. */
    if (safe && ims != NULL && last_modified >= 0 &&
        http_date_parse(ims->value.p, ims->value.len, &t) == 0 && last_modified <= t)
        return 304;
    return 0;
}

int http_range_if_range_ok(const struct http_request *r, const char *etag, size_t elen,
                           int64_t last_modified)
{
    const struct http_header *h = http_request_header(r, "if-range");
    int64_t t;

    if (h == NULL)
        return 1;
    if (etag == NULL)
        elen = 0;
    /* RFC 9110 §13.1.5: an entity-tag matches only strongly; a date only exactly. A date
     * may begin with 'W' too ("Wed, ..."): only "W/" marks a weak tag. */
    if (h->value.len > 0 && (h->value.p[0] == '"' ||
                             (h->value.len >= 2 && h->value.p[0] == 'W' && h->value.p[1] == '/')))
        return etag_strong_eq(h->value.p, h->value.len, etag, elen);
    if (http_date_parse(h->value.p, h->value.len, &t) != 0)
        return 0;
    return last_modified >= 0 && t == last_modified;
}

/* 1*DIGIT, saturating at UINT64_MAX; returns the number of digits. */
static size_t num(const char *s, size_t len, uint64_t *out)
{
    size_t i = 0;
    uint64_t v = 0;

    while (i < len && s[i] >= '0' && s[i] <= '9') {
        unsigned d = (unsigned)(s[i] - '0');

        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
        i++;
    }
    *out = v;
    return i;
}

int http_range_parse(const char *v, size_t len, uint64_t size, uint64_t *first, uint64_t *last)
{
    size_t i, n;
    uint64_t a = 0, b = UINT64_MAX;
    int suffix = 0, nranges = 0;

    if (v == NULL || len < 6)
        return 0;
    /* range-unit is case-insensitive (RFC 9110 §14.1). */
    for (i = 0; i < 5; i++)
        if ((v[i] | 0x20) != "bytes"[i])
            return 0;
    if (v[5] != '=')
        return 0;
    i = 6;
    while (i < len) {
        uint64_t x = 0, y = UINT64_MAX;
        int sfx = 0;

        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        if (i == len)
            break;
        if (v[i] == '-') {
            sfx = 1;
            n = num(v + i + 1, len - i - 1, &x);
            if (n == 0)
                return 0;
            i += 1 + n;
        } else {
            n = num(v + i, len - i, &x);
            if (n == 0 || i + n >= len || v[i + n] != '-')
                return 0;
            i += n + 1;
            n = num(v + i, len - i, &y);
            if (n == 0)
                y = UINT64_MAX;
            else if (y < x)
                return 0; /* invalid range-spec: ignore the header (§14.1.1) */
            i += n;
        }
        while (i < len && (v[i] == ' ' || v[i] == '\t'))
            i++;
        if (i < len && v[i] != ',')
            return 0;
        if (++nranges > 1)
            return 0;
        a = x;
        b = y;
        suffix = sfx;
    }
    if (nranges == 0)
        return 0;
    if (suffix) {
        /* suffix-range: the last a bytes; "-0" is unsatisfiable (§14.1.3). */
        if (a == 0 || size == 0)
            return -416;
        *first = a >= size ? 0 : size - a;
        *last = size - 1;
        return 1;
    }
    if (a >= size)
        return -416;
    *first = a;
    *last = b >= size ? size - 1 : b;
    return 1;
}

void http_range_answer(const struct http_request *r, uint64_t size, const char *etag,
                       size_t etag_len, int64_t last_modified, struct http_range_answer *out)
{
    const struct http_header *h = http_request_header(r, "range");
    uint64_t first = 0, last = 0;
    int rr = 0;

    /* RFC 9110 §14.2: Range is ignored unless the method is GET; If-Range is ignored
     * without a Range (§13.1.5), and when it does not match the Range is. */
    if (h != NULL && r->method == HTTP_M_GET &&
        http_range_if_range_ok(r, etag, etag_len, last_modified))
        rr = http_range_parse(h->value.p, h->value.len, size, &first, &last);
    out->content_range[0] = '\0';
    if (rr == -416) {
        out->status = 416;
        out->first = out->len = 0;
        snprintf(out->content_range, sizeof(out->content_range), "bytes */%" PRIu64, size);
    } else if (rr == 1) {
        out->status = 206;
        out->first = first;
        out->len = last - first + 1;
        snprintf(out->content_range, sizeof(out->content_range),
                 "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, first, last, size);
    } else {
        out->status = 200;
        out->first = 0;
        out->len = size;
    }
}
