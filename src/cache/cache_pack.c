/* src/cache/cache_pack.c: see cache_pack.h. */
#include "cache/cache_pack.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <xxhash.h>

#include "core/mc.h"

#define PACK_MAGIC "MCPK"
#define PACK_ABSENT 0xffffffffu
#define PACK_FIXED (4 + 2 + 2 + 4 + 8 * 4)
/* Bounds on decoded fields: anything larger is not something the edge ever stored. */
#define PACK_MAX_FIELD (16u << 20)

#define SEAL_MAGIC "MCSV"
#define SEAL_VERSION 4
#define SEAL_FLAGS 6
#define SEAL_SUM 8
#define SEAL_PLEN 16

static int put_u32(struct buf *b, uint32_t v)
{
    uint8_t p[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return buf_append(b, p, 4);
}

static int put_u64(struct buf *b, uint64_t v)
{
    uint8_t p[8];
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return buf_append(b, p, 8);
}

static int put_str(struct buf *b, const char *s, size_t n, int present)
{
    if (!present)
        return put_u32(b, PACK_ABSENT);
    if (n >= PACK_MAX_FIELD)
        return -E2BIG;
    int err = put_u32(b, (uint32_t)n);
    return err ? err : buf_append(b, s, n);
}

int cache_pack_meta(struct buf *out, const char *pkey, size_t plen, const struct cache_obj *o)
{
    int err = 0;
    uint16_t ver = CACHE_PACK_VERSION, flags = (uint16_t)(o->has_accept_ranges ? 1 : 0);
    uint8_t vf[4] = {(uint8_t)ver, (uint8_t)(ver >> 8), (uint8_t)flags, (uint8_t)(flags >> 8)};

    err |= buf_append(out, PACK_MAGIC, 4);
    err |= buf_append(out, vf, 4);
    err |= put_u32(out, (uint32_t)o->status);
    err |= put_u64(out, (uint64_t)o->request_time);
    err |= put_u64(out, (uint64_t)o->response_time);
    err |= put_u64(out, (uint64_t)o->lifetime);
    err |= put_u64(out, (uint64_t)o->info.age);
    err |= put_u64(out, (uint64_t)o->stored_us);
    err |= put_str(out, pkey, plen, 1);
    err |= put_str(out, o->hdrs, o->hdrs_len, 1);
    err |= put_str(out, o->vkey, o->vkey_len, 1);
    err |= put_str(out, o->vary, o->vary ? strlen(o->vary) : 0, o->vary != NULL);
    return err ? -E2BIG : 0;
}

struct rd {
    const uint8_t *p, *end;
};

static int get_u32(struct rd *r, uint32_t *v)
{
    if (r->end - r->p < 4)
        return -EINVAL;
    *v = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 |
         (uint32_t)r->p[3] << 24;
    r->p += 4;
    return 0;
}

static int get_i64(struct rd *r, int64_t *v)
{
    uint64_t u = 0;
    if (r->end - r->p < 8)
        return -EINVAL;
    for (int i = 0; i < 8; i++)
        u |= (uint64_t)r->p[i] << (8 * i);
    r->p += 8;
    *v = (int64_t)u;
    return 0;
}

/* A length-prefixed string as a malloc'd NUL-terminated copy; *s NULL when absent. */
static int get_str(struct rd *r, char **s, size_t *n, int may_be_absent)
{
    uint32_t len;
    *s = NULL;
    if (get_u32(r, &len) != 0)
        return -EINVAL;
    if (len == PACK_ABSENT)
        return may_be_absent ? 0 : -EINVAL;
    if (len >= PACK_MAX_FIELD || (size_t)(r->end - r->p) < len)
        return -EINVAL;
    *s = mc_xstrndup((const char *)r->p, len);
    if (n)
        *n = len;
    r->p += len;
    return 0;
}

struct unpack_scan {
    struct cache_obj *o;
};

/* Re-derives what the freshness rules and the deliver path read from the stored lines,
 * exactly as the fill computed them from the origin's response. */
static void scan_line(const char *n, size_t nl, const char *v, size_t vl, void *arg)
{
    struct cache_obj *o = arg;
    http_resp_info_add(&o->info, n, nl, v, vl);
    if (nl == 4 && strncasecmp(n, "etag", 4) == 0) {
        free(o->etag);
        o->etag = mc_xstrndup(v, vl);
    }
}

int cache_unpack_meta(const void *p, size_t n, struct cache_obj **out, char **pkey, size_t *plen,
                      size_t *used)
{
    struct rd r = {p, (const uint8_t *)p + n};
    uint32_t status;
    int64_t reqt, respt, life, age, stored_us;
    char *key = NULL, *hdrs = NULL, *vkey = NULL, *vary = NULL;
    size_t klen = 0, hlen = 0, vklen = 0;

    *out = NULL;
    if (n < PACK_FIXED || memcmp(p, PACK_MAGIC, 4) != 0)
        return -EINVAL;
    uint16_t ver = (uint16_t)(r.p[4] | r.p[5] << 8), flags = (uint16_t)(r.p[6] | r.p[7] << 8);
    if (ver != CACHE_PACK_VERSION && ver != 1)
        return -EINVAL;
    r.p += 8;
    if (get_u32(&r, &status) || get_i64(&r, &reqt) || get_i64(&r, &respt) || get_i64(&r, &life) ||
        get_i64(&r, &age) || status < 100 || status > 999)
        return -EINVAL;
    /* Version 1 kept whole seconds only: the start of that second is never later than
     * the request was, so a ban issued after it still finds the object older. */
    stored_us = reqt * 1000000;
    if (ver >= 2 && get_i64(&r, &stored_us))
        return -EINVAL;
    size_t varylen = 0;
    /* The Vary list is kept as a C string: a NUL inside would silently shorten it. */
    if (get_str(&r, &key, &klen, 0) || get_str(&r, &hdrs, &hlen, 0) ||
        get_str(&r, &vkey, &vklen, 0) || get_str(&r, &vary, &varylen, 1) ||
        (vary && memchr(vary, '\0', varylen))) {
        free(key);
        free(hdrs);
        free(vkey);
        free(vary);
        return -EINVAL;
    }
    struct cache_obj *o = cache_obj_new((int)status, hdrs, hlen, NULL);
    free(o->vkey);
    o->vkey = vkey;
    o->vkey_len = vklen;
    o->vary = vary;
    o->request_time = reqt;
    o->response_time = respt;
    o->stored_us = stored_us;
    o->lifetime = life;
    o->has_accept_ranges = flags & 1;
    o->info.status = (int)status;
    http_header_lines_each(hdrs, hlen, scan_line, o);
    /* Age is not among the stored lines (the edge computes its own): restore the origin's. */
    o->info.age = age;
    http_resp_info_finish(&o->info, respt);
    *out = o;
    *pkey = key;
    *plen = klen;
    if (used)
        *used = (size_t)(r.p - (const uint8_t *)p);
    return 0;
}

/* ---- sealed values ---- */

static void le_put(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t le_get(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

uint64_t cache_pack_sum(const void *p, size_t n)
{
    return XXH3_64bits(p, n);
}

void cache_pack_seal(void *v, size_t n)
{
    uint8_t *u = v;

    memcpy(u, SEAL_MAGIC, 4);
    le_put(u + SEAL_VERSION, CACHE_SEAL_VERSION, 2);
    le_put(u + SEAL_FLAGS, 0, 2);
    le_put(u + SEAL_PLEN, n, 8);
    le_put(u + SEAL_SUM, cache_pack_sum(u + SEAL_PLEN, CACHE_SEAL_LEN - SEAL_PLEN + n), 8);
}

int cache_pack_seal_len(const void *v, size_t n, uint64_t *total, const char **why)
{
    const uint8_t *u = v;

    if (n < CACHE_SEAL_LEN) {
        *why = "shorter than its frame";
        return -EBADMSG;
    }
    if (memcmp(u, SEAL_MAGIC, 4) != 0) {
        *why = "bad magic (not a sealed value, or an older format)";
        return -EBADMSG;
    }
    if (le_get(u + SEAL_VERSION, 2) != CACHE_SEAL_VERSION) {
        *why = "unknown format version";
        return -EBADMSG;
    }
    if (le_get(u + SEAL_FLAGS, 2) != 0) {
        *why = "unknown flags";
        return -EBADMSG;
    }
    uint64_t plen = le_get(u + SEAL_PLEN, 8);
    if (plen > UINT64_MAX - CACHE_SEAL_LEN) {
        *why = "length out of range";
        return -EBADMSG;
    }
    *total = CACHE_SEAL_LEN + plen;
    return 0;
}

int cache_pack_unseal(const void *v, size_t n, const char **why)
{
    const uint8_t *u = v;
    uint64_t total;

    if (cache_pack_seal_len(v, n, &total, why) != 0)
        return -EBADMSG;
    if (n != total) {
        *why = n < total ? "cut short" : "longer than its declared length";
        return -EBADMSG;
    }
    if (le_get(u + SEAL_SUM, 8) != cache_pack_sum(u + SEAL_PLEN, n - SEAL_PLEN)) {
        *why = "checksum mismatch";
        return -EBADMSG;
    }
    return 0;
}
