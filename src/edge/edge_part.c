/* src/edge/edge_part.c: partial responses stored and combined (RFC 9111 §3.3-3.4).
 *
 * A Range request that every tier missed is forwarded with its Range when no fill runs
 * for the key (edge_fetch.c); the origin's 206 is passed to the client, and its part is
 * kept here: per primary key, the response's fields (a 200's, without Content-Range), the
 * complete length, and the parts received, sorted, disjoint and never adjacent (a part
 * that touches or overlaps others is merged with them into one). A later range inside
 * one part is answered from it while the response is fresh; another is fetched with a
 * Range and merged. Parts of another representation (validators that differ) replace
 * the ones kept. Once one part covers the whole length, it becomes a complete 200 object
 * stored in the tiers like any fill's, and the entry goes.
 *
 * Only responses with a strong validator (an ETag that is not weak, or a Last-Modified),
 * no Vary, storable as a 200 would be, and a complete length up to --max-mem-object are
 * kept (parts live in memory). For a larger one, only its length is remembered: the next
 * range of it fetches the whole object into L2 as before. All entries share a budget of
 * --mem / 8; the oldest go first. One mutex guards the table: every operation is a hash
 * look-up and, at most, a copy of the bytes kept. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cache/cache_obj.h"
#include "core/mc.h"
#include "core/units.h"
#include "edge/edge_int.h"
#include "http/http_range.h"
#include "http/http_server.h"

#define PART_BUCKETS 1024u

struct part {
    uint64_t first, len;
    char *data; /* len bytes, owned */
};

struct part_entry {
    struct part_entry *hnext;       /* hash chain */
    struct part_entry *prev, *next; /* age list, oldest first */
    char *pkey;
    size_t plen;
    uint64_t hash;
    struct cache_obj *meta; /* status 200, the fields without Content-Range; empty body */
    uint64_t size;          /* the complete length */
    struct part *parts;
    unsigned nparts;
    uint64_t bytes; /* of all parts */
};

struct edge_parts {
    pthread_mutex_t mtx;
    struct part_entry *buckets[PART_BUCKETS];
    struct part_entry *oldest, *newest;
    uint64_t bytes, budget, max_size;
};

static uint64_t key_hash(const char *k, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a: keys are short, a table of 1024 */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)k[i]) * 1099511628211ull;
    return h;
}

void edge__parts_open(struct edge *e)
{
    struct edge_parts *p = mc_xcalloc(1, sizeof(*p));

    pthread_mutex_init(&p->mtx, NULL);
    p->budget = e->cfg.mem / 8;
    p->max_size = e->max_mem_object;
    e->parts = p;
}

static void entry_free(struct part_entry *pe)
{
    for (unsigned i = 0; i < pe->nparts; i++)
        free(pe->parts[i].data);
    free(pe->parts);
    cache_obj_unref(&pe->meta);
    free(pe->pkey);
    free(pe);
}

static struct part_entry *find(struct edge_parts *p, const char *pkey, size_t plen)
{
    uint64_t h = key_hash(pkey, plen);
    for (struct part_entry *pe = p->buckets[h % PART_BUCKETS]; pe; pe = pe->hnext)
        if (pe->hash == h && pe->plen == plen && memcmp(pe->pkey, pkey, plen) == 0)
            return pe;
    return NULL;
}

static void unlink_entry(struct edge_parts *p, struct part_entry *pe)
{
    struct part_entry **pp = &p->buckets[pe->hash % PART_BUCKETS];
    while (*pp != pe)
        pp = &(*pp)->hnext;
    *pp = pe->hnext;
    if (pe->prev)
        pe->prev->next = pe->next;
    else
        p->oldest = pe->next;
    if (pe->next)
        pe->next->prev = pe->prev;
    else
        p->newest = pe->prev;
    p->bytes -= pe->bytes;
}

void edge__parts_close(struct edge *e)
{
    struct edge_parts *p = e->parts;

    if (!p)
        return;
    while (p->oldest) {
        struct part_entry *pe = p->oldest;
        unlink_entry(p, pe);
        entry_free(pe);
    }
    pthread_mutex_destroy(&p->mtx);
    free(p);
    e->parts = NULL;
}

void edge__parts_drop(struct edge *e, const char *pkey, size_t plen)
{
    struct edge_parts *p = e->parts;
    struct part_entry *pe;

    pthread_mutex_lock(&p->mtx);
    if ((pe = find(p, pkey, plen)) != NULL)
        unlink_entry(p, pe);
    pthread_mutex_unlock(&p->mtx);
    if (pe)
        entry_free(pe);
}

void edge__parts_clear(struct edge *e)
{
    struct edge_parts *p = e->parts;
    struct part_entry *all;

    pthread_mutex_lock(&p->mtx);
    all = p->oldest;
    memset(p->buckets, 0, sizeof(p->buckets));
    p->oldest = p->newest = NULL;
    p->bytes = 0;
    pthread_mutex_unlock(&p->mtx);
    while (all) {
        struct part_entry *n = all->next;
        entry_free(all);
        all = n;
    }
}

/* The same representation (RFC 9111 §3.4: strong validators that match)? */
static int same_repr(const struct cache_obj *a, const struct cache_obj *b)
{
    if (a->etag || b->etag)
        return a->etag && b->etag && strcmp(a->etag, b->etag) == 0;
    return a->info.last_modified >= 0 && a->info.last_modified == b->info.last_modified;
}

int edge__parts_keepable(const struct cache_obj *o)
{
    if (o->vary)
        return 0;
    if (o->etag)
        return strncmp(o->etag, "W/", 2) != 0;
    return o->info.last_modified >= 0;
}

int edge__parts_content_range(const char *v, size_t n, uint64_t *first, uint64_t *last,
                              uint64_t *size)
{
    char s[HTTP_RANGE_CR_MAX];
    unsigned long long a, b, z;
    int used = 0;

    if (n == 0 || n >= sizeof(s))
        return -EINVAL;
    memcpy(s, v, n);
    s[n] = '\0';
    if (sscanf(s, "bytes %llu-%llu/%llu%n", &a, &b, &z, &used) != 3 || (size_t)used != n || b < a ||
        b >= z)
        return -EINVAL;
    *first = a;
    *last = b;
    *size = z;
    return 0;
}

/* Inserts [first, first + len) into pe, merging it with the parts it touches. */
static void insert_part(struct part_entry *pe, uint64_t first, const char *data, uint64_t len)
{
    uint64_t lo = first, hi = first + len;
    unsigned a = 0, b;

    while (a < pe->nparts && pe->parts[a].first + pe->parts[a].len < lo)
        a++;
    for (b = a; b < pe->nparts && pe->parts[b].first <= hi; b++) {
        lo = MC_MIN(lo, pe->parts[b].first);
        hi = MC_MAX(hi, pe->parts[b].first + pe->parts[b].len);
    }
    /* parts[a, b) touch the new one: one buffer for all, the new bytes last (they are
     * the same bytes where they overlap: same representation). */
    char *d = mc_xmalloc(hi - lo ? hi - lo : 1);
    for (unsigned i = a; i < b; i++) {
        memcpy(d + (pe->parts[i].first - lo), pe->parts[i].data, pe->parts[i].len);
        pe->bytes -= pe->parts[i].len;
        free(pe->parts[i].data);
    }
    memcpy(d + (first - lo), data, len);
    pe->bytes += hi - lo;
    if (b == a) {
        pe->parts = mc_xrealloc(pe->parts, (pe->nparts + 1) * sizeof(*pe->parts));
        memmove(pe->parts + a + 1, pe->parts + a, (pe->nparts - a) * sizeof(*pe->parts));
        pe->nparts++;
    } else if (b > a + 1) {
        memmove(pe->parts + a + 1, pe->parts + b, (pe->nparts - b) * sizeof(*pe->parts));
        pe->nparts -= b - a - 1;
    }
    pe->parts[a] = (struct part){lo, hi - lo, d};
}

/* A copy of o's fields without Content-Range, as a 200 with an empty body. */
static struct cache_obj *meta_of(const struct cache_obj *o)
{
    struct buf h;
    const char *p = o->hdrs, *end = o->hdrs + o->hdrs_len;

    buf_init(&h, SIZE_MAX);
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol ? eol + 1 : end;
        if (!((size_t)(end - p) > 14 && strncasecmp(p, "content-range:", 14) == 0))
            buf_append(&h, p, (size_t)(next - p));
        p = next;
    }
    struct cache_obj *m = cache_obj_dup(o, cache_body_from("", 0));
    free(m->hdrs);
    m->hdrs_len = h.len;
    m->hdrs = h.len ? buf_take(&h, NULL) : mc_xstrdup("");
    buf_fini(&h);
    m->status = 200;
    m->info.status = 200;
    m->has_accept_ranges = cache_obj_header(m, "accept-ranges", &p) >= 0;
    return m;
}

struct cache_obj *edge__parts_keep(struct edge *e, const char *pkey, size_t plen,
                                   const struct cache_obj *o, uint64_t first, uint64_t size)
{
    struct edge_parts *p = e->parts;
    struct cache_body_cursor cur;
    uint64_t len = cache_body_len(o->body);
    const char *span;
    size_t n;
    struct part_entry *pe, *gone = NULL;
    struct cache_obj *whole = NULL;

    if (first + len > size || len == 0 || cache_body_file(o->body, NULL) >= 0)
        return NULL;
    /* The bytes first, outside the lock. */
    char *data = mc_xmalloc(len);
    uint64_t at = 0;
    cache_body_cursor_init(&cur, o->body);
    for (; (n = cache_body_next(&cur, o->body, len, SIZE_MAX, &span)) != 0; at += n)
        memcpy(data + at, span, n);
    if (at != len) { /* not all readable from memory: nothing is kept */
        free(data);
        return NULL;
    }

    pthread_mutex_lock(&p->mtx);
    pe = find(p, pkey, plen);
    if (pe && (pe->size != size || !same_repr(pe->meta, o))) {
        unlink_entry(p, pe); /* another representation: what was kept is out of date */
        pe->hnext = gone;
        gone = pe;
        pe = NULL;
    }
    if (!pe) {
        pe = mc_xcalloc(1, sizeof(*pe));
        pe->pkey = mc_xstrndup(pkey, plen);
        pe->plen = plen;
        pe->hash = key_hash(pkey, plen);
        pe->size = size;
        pe->hnext = p->buckets[pe->hash % PART_BUCKETS];
        p->buckets[pe->hash % PART_BUCKETS] = pe;
    } else {
        /* Moved to the newest end; its fields are the latest response's. */
        unlink_entry(p, pe);
        pe->hnext = p->buckets[pe->hash % PART_BUCKETS];
        p->buckets[pe->hash % PART_BUCKETS] = pe;
        cache_obj_unref(&pe->meta);
    }
    pe->meta = meta_of(o);
    pe->prev = p->newest;
    pe->next = NULL;
    if (p->newest)
        p->newest->next = pe;
    else
        p->oldest = pe;
    p->newest = pe;
    /* Too large for memory: only the length is remembered (edge__parts_too_large). */
    if (size <= p->max_size)
        insert_part(pe, first, data, len);
    p->bytes += pe->bytes; /* unlink_entry took off what it held before */
    if (pe->nparts == 1 && pe->parts[0].first == 0 && pe->parts[0].len == size) {
        /* Whole: a complete 200 for the tiers, and the entry goes. */
        struct part *w = &pe->parts[0];
        whole = cache_obj_dup(pe->meta, cache_body_from(w->data, w->len));
        unlink_entry(p, pe);
        pe->hnext = gone;
        gone = pe;
    }
    while (p->bytes > p->budget && p->oldest && p->oldest != pe) {
        struct part_entry *old = p->oldest;
        unlink_entry(p, old);
        old->hnext = gone;
        gone = old;
    }
    pthread_mutex_unlock(&p->mtx);
    free(data);
    while (gone) {
        struct part_entry *nx = gone->hnext;
        entry_free(gone);
        gone = nx;
    }
    return whole;
}

int edge__parts_too_large(struct edge *e, const char *pkey, size_t plen)
{
    struct edge_parts *p = e->parts;
    pthread_mutex_lock(&p->mtx);
    struct part_entry *pe = find(p, pkey, plen);
    int big = pe && pe->size > p->max_size;
    pthread_mutex_unlock(&p->mtx);
    return big;
}

int edge__parts_serve(struct edge_worker *w, struct http_exchange *x, const char *pkey, size_t plen)
{
    struct edge *e = w->e;
    struct edge_parts *p = e->parts;
    const struct http_request *r = http_x_request(x);
    struct http_range_answer a;
    struct http_req_info qi;
    struct cache_obj *o = NULL;
    char cs[160];
    int64_t now = units_wall_s(), age = 0;

    pthread_mutex_lock(&p->mtx);
    struct part_entry *pe = find(p, pkey, plen);
    if (pe && pe->nparts) {
        struct cache_obj *m = pe->meta;
        http_range_answer(r, pe->size, m->etag, m->etag ? strlen(m->etag) : 0,
                          m->info.last_modified, &a);
        http_req_info_from_request(&qi, r);
        age = edge_obj_age(m, now);
        const struct part *pt = NULL;
        for (unsigned i = 0; a.status == 206 && i < pe->nparts; i++)
            if (pe->parts[i].first <= a.first &&
                a.first + a.len <= pe->parts[i].first + pe->parts[i].len)
                pt = &pe->parts[i];
        if (pt && http_cache_reuse(&qi, &m->info, m->lifetime, age) == HTTP_REUSE_FRESH &&
            edge__inval_verdict(e, pkey, plen, m) == CACHE_BAN_NONE) {
            o = cache_obj_dup(m, cache_body_from(pt->data + (a.first - pt->first), a.len));
            /* Sent as it is (edge__deliver_obj applies no Range to a 206). */
            struct buf h;
            buf_init(&h, SIZE_MAX);
            buf_append(&h, o->hdrs, o->hdrs_len);
            buf_printf(&h, "Content-Range: %s\r\n", a.content_range);
            free(o->hdrs);
            o->hdrs = buf_take(&h, &o->hdrs_len);
            buf_fini(&h);
            o->status = 206;
        }
    }
    pthread_mutex_unlock(&p->mtx);
    if (!o)
        return 0;
    edge__cache_status(cs, sizeof(cs), "mlcdn; hit; ttl=", o->lifetime - age, "; detail=partial");
    edge__deliver_obj(e, x, o, EDGE_XC_HIT, EDGE_LV_L1, cs);
    cache_obj_unref(&o);
    return 1;
}
