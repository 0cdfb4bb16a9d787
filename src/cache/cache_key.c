/* src/cache/cache_key.c: cache key text and its XXH3-128 hash.
 *
 * The key text is "host/path?sorted-query" followed by one "\n<name>:<value>" line per
 * Vary'd request header. Normalisation is exactly what RFC 3986 §6.2.2 allows without
 * knowing the origin (case of the host and of %-escapes, decoding of unreserved
 * characters, the default port) plus what the operator chose (parameter order,
 * ignored parameters, a route's dropped or whitelisted query). Nothing else is rewritten: "/a/../b" and "/a/b" stay distinct
 * keys, because an origin may treat them differently.
 *
 * On error every function leaves `out` as it found it. */
#include "cache/cache_key.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

static int unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

/* Writes the %-normalised form of s[0..len) to dst (never longer than the input):
 * %XX of an unreserved character decoded, other escapes upper-cased. Returns the
 * written length, or -1 for a bad escape. */
static long pct_normalise(const char *s, size_t len, char *dst)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i, o = 0;

    for (i = 0; i < len; i++) {
        int hi, lo;
        unsigned char c;

        if (s[i] != '%') {
            dst[o++] = s[i];
            continue;
        }
        if (len - i < 3)
            return -1;
        hi = mc_hexval((unsigned char)s[i + 1]);
        lo = mc_hexval((unsigned char)s[i + 2]);
        if (hi < 0 || lo < 0)
            return -1;
        c = (unsigned char)(hi << 4 | lo);
        if (unreserved(c)) {
            dst[o++] = (char)c;
        } else {
            dst[o++] = '%';
            dst[o++] = hex[hi];
            dst[o++] = hex[lo];
        }
        i += 2;
    }
    return (long)o;
}

static void truncate_to(struct buf *out, size_t len)
{
    out->len = len;
    if (out->data != NULL)
        out->data[len] = '\0';
}

struct param {
    const char *p; /* normalised "name[=value]" */
    size_t len;
    size_t nlen; /* length of the name */
    size_t idx;  /* position in the query, for a stable sort */
};

static int param_cmp(const void *a, const void *b)
{
    const struct param *x = a, *y = b;
    size_t n = MC_MIN(x->nlen, y->nlen);
    int c = memcmp(x->p, y->p, n);

    if (c != 0)
        return c;
    if (x->nlen != y->nlen)
        return x->nlen < y->nlen ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx ? 1 : 0);
}

static int in_list(const char *const *names, size_t n, const char *name, size_t nlen)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strlen(names[i]) == nlen && memcmp(names[i], name, nlen) == 0)
            return 1;
    return 0;
}

static int ignored(const struct cache_key_opts *opts, const struct cache_key_query *rq,
                   const char *name, size_t nlen)
{
    if (opts != NULL && in_list(opts->ignore_params, opts->n_ignore, name, nlen))
        return 1;
    if (rq == NULL)
        return 0;
    if (rq->n_keep > 0 && !in_list(rq->keep, rq->n_keep, name, nlen))
        return 1;
    return in_list(rq->ignore, rq->n_ignore, name, nlen);
}

static int append_query(struct buf *out, struct http_str query, const struct cache_key_opts *opts,
                        const struct cache_key_query *rq)
{
    struct param small[32], *ps = small;
    char sbuf[1024], *norm = sbuf;
    size_t np = 0, cap = 1, i, start, o = 0, kept = 0;
    int err = 0;
    long n;

    if (query.len == 0)
        return 0;
    for (i = 0; i < query.len; i++)
        cap += query.p[i] == '&';
    if (cap > MC_ARRAY_SIZE(small))
        ps = mc_xmalloc(cap * sizeof(*ps));
    if (query.len > sizeof(sbuf))
        norm = mc_xmalloc(query.len);

    start = 0;
    for (i = 0; i <= query.len; i++) {
        const char *eq;
        struct param *pp;

        if (i < query.len && query.p[i] != '&')
            continue;
        if (i > start) {
            n = pct_normalise(query.p + start, i - start, norm + o);
            if (n < 0) {
                err = -EINVAL;
                goto out;
            }
            pp = &ps[np];
            pp->p = norm + o;
            pp->len = (size_t)n;
            eq = memchr(pp->p, '=', pp->len);
            pp->nlen = eq ? (size_t)(eq - pp->p) : pp->len;
            pp->idx = np;
            o += (size_t)n;
            if (!ignored(opts, rq, pp->p, pp->nlen))
                np++;
        }
        start = i + 1;
    }
    if (np > 1)
        qsort(ps, np, sizeof(*ps), param_cmp);
    for (i = 0; i < np; i++) {
        err = buf_append(out, kept++ ? "&" : "?", 1);
        if (err == 0)
            err = buf_append(out, ps[i].p, ps[i].len);
        if (err != 0)
            goto out;
    }
out:
    if (ps != small)
        free(ps);
    if (norm != sbuf)
        free(norm);
    return err;
}

int cache_key_primary(struct buf *out, struct http_str host, struct http_str path,
                      struct http_str query, const struct cache_key_opts *opts)
{
    return cache_key_primary_ex(out, host, path, query, opts, NULL);
}

int cache_key_primary_ex(struct buf *out, struct http_str host, struct http_str path,
                         struct http_str query, const struct cache_key_opts *opts,
                         const struct cache_key_query *rq)
{
    size_t saved = out->len, hlen = host.len, i;
    char hb[256], pb[1024], *pn = pb;
    long n;
    int err;

    /* The default port of http is the same origin (RFC 9110 §4.2.3). */
    if (hlen > 3 && memcmp(host.p + hlen - 3, ":80", 3) == 0)
        hlen -= 3;
    for (i = 0; i < hlen; i += sizeof(hb)) {
        size_t k, chunk = MC_MIN(sizeof(hb), hlen - i);

        for (k = 0; k < chunk; k++)
            hb[k] = (char)lower((unsigned char)host.p[i + k]);
        err = buf_append(out, hb, chunk);
        if (err != 0)
            goto fail;
    }

    if (path.len > sizeof(pb))
        pn = mc_xmalloc(path.len);
    n = pct_normalise(path.p, path.len, pn);
    if (n < 0)
        err = -EINVAL;
    else if (n == 0)
        err = buf_append(out, "/", 1);
    else
        err = buf_append(out, pn, (size_t)n);
    if (pn != pb)
        free(pn);
    if (err != 0)
        goto fail;

    /* A dropped query is not looked at at all, bad %-escapes included. */
    err = rq != NULL && rq->drop ? 0 : append_query(out, query, opts, rq);
    if (err != 0)
        goto fail;
    return 0;
fail:
    truncate_to(out, saved);
    return err;
}

/* Appends a field value with runs of SP/HTAB folded to one space and the whitespace
 * around commas removed (RFC 9110 §5.6.1: list elements are separated by OWS "," OWS). */
static int append_folded(struct buf *out, const char *v, size_t len)
{
    char tmp[256];
    size_t i = 0, o = 0;
    int pending_space = 0, emitted = 0, err;

    while (i < len) {
        unsigned char c = (unsigned char)v[i++];

        if (c == ' ' || c == '\t') {
            pending_space = 1;
            continue;
        }
        if (c == ',') {
            pending_space = 0;
            while (i < len && (v[i] == ' ' || v[i] == '\t'))
                i++;
        } else if (pending_space) {
            if (emitted)
                tmp[o++] = ' ';
            pending_space = 0;
        }
        tmp[o++] = (char)c;
        emitted = 1;
        if (o >= sizeof(tmp) - 2) {
            err = buf_append(out, tmp, o);
            if (err != 0)
                return err;
            o = 0;
        }
    }
    return buf_append(out, tmp, o);
}

int cache_key_vary_append(struct buf *out, const struct http_request *r, const char *name,
                          size_t nlen)
{
    size_t saved = out->len, i, k, nfound = 0;
    char lname[64];
    int err = 0;

    err = buf_append(out, "\n", 1);
    for (i = 0; err == 0 && i < nlen; i += sizeof(lname)) {
        size_t chunk = MC_MIN(sizeof(lname), nlen - i);

        for (k = 0; k < chunk; k++)
            lname[k] = (char)lower((unsigned char)name[i + k]);
        err = buf_append(out, lname, chunk);
    }
    if (err == 0)
        err = buf_append(out, ":", 1);
    for (i = 0; err == 0 && i < r->nheaders; i++) {
        const struct http_header *h = &r->headers[i];

        if (h->name.len != nlen)
            continue;
        for (k = 0; k < nlen; k++)
            if (lower((unsigned char)h->name.p[k]) != lower((unsigned char)name[k]))
                break;
        if (k != nlen)
            continue;
        if (nfound++ > 0)
            err = buf_append(out, ",", 1);
        if (err == 0)
            err = append_folded(out, h->value.p, h->value.len);
    }
    /* An absent header must not match an empty one (RFC 9111 §4.1: "absent" is a value
     * of its own), so it gets a marker no field value can contain. */
    if (err == 0 && nfound == 0)
        err = buf_append(out, "\x01", 1);
    if (err != 0)
        truncate_to(out, saved);
    return err;
}

void cache_key_hash(const void *text, size_t len, uint8_t out[16])
{
    XXH128_hash_t h = XXH3_128bits(text, len);
    XXH128_canonical_t c;

    /* The canonical (big-endian) form, so keys hashed on one machine match on another
     * (the L2 directory layout and the Redis tier depend on it). */
    XXH128_canonicalFromHash(&c, h);
    memcpy(out, c.digest, 16);
}
