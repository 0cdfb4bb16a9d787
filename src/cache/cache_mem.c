/* src/cache/cache_mem.c: L1 memory store (see cache_mem.h).
 *
 * Locking: everything in a shard (buckets, entries, variant lists, the policy, the
 * counters) is guarded by shard->mtx; the helpers below that take a shard run with its
 * mtx held, and assert it. Objects dropped by eviction or purge are collected under the
 * lock and unreferenced after it is released, so freeing a large body never happens
 * inside the critical section. */
#include "cache/cache_mem.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <strings.h>

#include "cache/cache_key.h"
#include "core/mc.h"

#define L1_MAGIC 0x4c314d45u

struct l1_entry {
    struct l1_entry *next;
    uint64_t h;
    char *pkey;
    size_t plen;
    char *vary; /* lowercased Vary list of the newest variant, NULL when none */
    struct cache_obj *variants;
};

struct shard {
    pthread_mutex_t mtx;
    struct l1_entry **buckets;
    size_t nbuckets;
    size_t nentries;
    struct cache_policy *pol;
    _Atomic uint64_t bytes;
    _Atomic uint64_t objs;
};

struct l1 {
    unsigned magic;
    unsigned nshards;
    uint64_t budget;
    struct shard *shards;
};

static uint64_t key_hash(const char *k, size_t n, uint64_t *bucket_bits)
{
    uint8_t h[16];
    uint64_t a, b;

    cache_key_hash(k, n, h);
    memcpy(&a, h, 8);
    memcpy(&b, h + 8, 8);
    *bucket_bits = b;
    return a;
}

int l1_new(uint64_t budget, const char *policy, enum cache_policy_objective objective,
           unsigned nshards, struct l1 **out)
{
    struct l1 *c;

    if (nshards == 0)
        nshards = 16;
    c = mc_xcalloc(1, sizeof(*c));
    MC_INIT_OBJ(c, L1_MAGIC);
    c->nshards = nshards;
    c->budget = budget;
    c->shards = mc_xcalloc(nshards, sizeof(*c->shards));
    for (unsigned i = 0; i < nshards; i++) {
        struct shard *s = &c->shards[i];
        pthread_mutex_init(&s->mtx, NULL);
        s->nbuckets = 1024;
        s->buckets = mc_xcalloc(s->nbuckets, sizeof(*s->buckets));
        int err = cache_policy_new(policy, budget / nshards, &s->pol);
        if (err == 0)
            cache_policy_set_fill_admit(s->pol, 1);
        if (err) {
            free(s->buckets);
            pthread_mutex_destroy(&s->mtx);
            c->nshards = i;
            l1_free(&c);
            return err;
        }
        cache_policy_set_objective(s->pol, objective);
    }
    *out = c;
    return 0;
}

static void entry_free(struct l1_entry *e)
{
    free(e->pkey);
    free(e->vary);
    free(e);
}

void l1_free(struct l1 **cp)
{
    struct l1 *c = *cp;

    if (!c)
        return;
    for (unsigned i = 0; i < c->nshards; i++) {
        struct shard *s = &c->shards[i];
        for (size_t b = 0; b < s->nbuckets; b++) {
            struct l1_entry *e = s->buckets[b], *en;
            for (; e; e = en) {
                en = e->next;
                struct cache_obj *o = e->variants, *on;
                for (; o; o = on) {
                    on = o->vnext;
                    cache_policy_remove(s->pol, &o->pnode);
                    o->in_index = 0;
                    cache_obj_unref(&o);
                }
                entry_free(e);
            }
        }
        free(s->buckets);
        cache_policy_free(&s->pol);
        pthread_mutex_destroy(&s->mtx);
    }
    free(c->shards);
    MC_FREE_OBJ(c);
    *cp = NULL;
}

static struct shard *shard_of(struct l1 *c, uint64_t h)
{
    return &c->shards[h % c->nshards];
}

static struct l1_entry **bucket_of(struct shard *s, uint64_t bb)
{
    return &s->buckets[bb & (s->nbuckets - 1)];
}

static struct l1_entry *entry_find(struct shard *s, uint64_t bb, uint64_t h, const char *pkey,
                                   size_t plen)
{
    mc_lock_assert_held(&s->mtx);
    for (struct l1_entry *e = *bucket_of(s, bb); e; e = e->next)
        if (e->h == h && e->plen == plen && memcmp(e->pkey, pkey, plen) == 0)
            return e;
    return NULL;
}

static void grow(struct shard *s)
{
    size_t nb;
    struct l1_entry **nbk;

    mc_lock_assert_held(&s->mtx);
    nb = s->nbuckets * 2;
    nbk = mc_xcalloc(nb, sizeof(*nbk));
    for (size_t i = 0; i < s->nbuckets; i++) {
        struct l1_entry *e = s->buckets[i], *en;
        for (; e; e = en) {
            en = e->next;
            uint64_t bb;
            key_hash(e->pkey, e->plen, &bb);
            struct l1_entry **slot = &nbk[bb & (nb - 1)];
            e->next = *slot;
            *slot = e;
        }
    }
    free(s->buckets);
    s->buckets = nbk;
    s->nbuckets = nb;
}

static void entry_unlink(struct shard *s, struct l1_entry *e)
{
    uint64_t bb;

    mc_lock_assert_held(&s->mtx);
    key_hash(e->pkey, e->plen, &bb);
    for (struct l1_entry **pp = bucket_of(s, bb); *pp; pp = &(*pp)->next) {
        if (*pp == e) {
            *pp = e->next;
            s->nentries--;
            return;
        }
    }
    MC_ASSERT(!"entry not in its bucket");
}

struct dropped {
    struct cache_obj **v;
    size_t n, cap;
};

static void dropped_add(struct dropped *d, struct cache_obj *o)
{
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 8;
        d->v = mc_xrealloc(d->v, d->cap * sizeof(*d->v));
    }
    d->v[d->n++] = o;
}

static void dropped_release(struct dropped *d)
{
    for (size_t i = 0; i < d->n; i++)
        cache_obj_unref(&d->v[i]);
    free(d->v);
}

/* Unlinks o from its entry (policy already done) and frees the entry when empty. */
static void variant_unlink(struct shard *s, struct cache_obj *o, struct dropped *d)
{
    struct l1_entry *e = o->entry;

    mc_lock_assert_held(&s->mtx);
    for (struct cache_obj **pp = &e->variants; *pp; pp = &(*pp)->vnext) {
        if (*pp == o) {
            *pp = o->vnext;
            break;
        }
    }
    o->vnext = NULL;
    o->entry = NULL;
    o->in_index = 0;
    atomic_fetch_sub(&s->bytes, o->charge);
    atomic_fetch_sub(&s->objs, 1);
    dropped_add(d, o);
    if (!e->variants) {
        entry_unlink(s, e);
        entry_free(e);
    }
}

static void drop_variant(struct shard *s, struct cache_obj *o, struct dropped *d)
{
    mc_lock_assert_held(&s->mtx);
    cache_policy_remove(s->pol, &o->pnode);
    variant_unlink(s, o, d);
}

/* Drops every variant of e; the last one frees e itself. */
static void drop_entry(struct shard *s, struct l1_entry *e, struct dropped *d)
{
    mc_lock_assert_held(&s->mtx);
    for (;;) {
        struct cache_obj *o = e->variants;
        int last = o->vnext == NULL;
        drop_variant(s, o, d);
        if (last)
            return;
    }
}

int l1_vary_key(struct buf *out, const char *vary, const struct http_request *req)
{
    const char *p = vary;

    while (p && *p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n) {
            int err = cache_key_vary_append(out, req, p, n);
            if (err)
                return err;
        }
        p = comma ? comma + 1 : NULL;
    }
    return 0;
}

int l1_lookup(struct l1 *c, const char *pkey, size_t plen, const struct http_request *req,
              struct cache_obj **out)
{
    uint64_t bb, h = key_hash(pkey, plen, &bb);
    struct shard *s = shard_of(c, h);
    struct buf vk;
    int ret = -ENOENT;

    buf_init(&vk, 64 * 1024);
    pthread_mutex_lock(&s->mtx);
    struct l1_entry *e = entry_find(s, bb, h, pkey, plen);
    if (e && !(e->vary && strcmp(e->vary, "*") == 0)) {
        if (e->vary && l1_vary_key(&vk, e->vary, req) != 0)
            goto out;
        for (struct cache_obj *o = e->variants; o; o = o->vnext) {
            if (o->vkey_len == vk.len && memcmp(o->vkey, vk.data ? vk.data : "", vk.len) == 0) {
                cache_policy_hit(s->pol, &o->pnode);
                *out = cache_obj_ref(o);
                ret = 0;
                break;
            }
        }
    }
out:
    pthread_mutex_unlock(&s->mtx);
    buf_fini(&vk);
    return ret;
}

static int same_vary(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

int l1_insert(struct l1 *c, const char *pkey, size_t plen, struct cache_obj *o)
{
    uint64_t bb, h = key_hash(pkey, plen, &bb);
    struct shard *s = shard_of(c, h);
    struct dropped d = {0};
    struct cache_pnode *v;
    int ret = 0;

    if (o->in_index)
        return -EEXIST;
    if (cache_body_file(o->body, NULL) >= 0)
        return -EFBIG; /* a body kept in a file is not L1 memory */
    o->charge = cache_body_len(o->body) + o->hdrs_len + plen + o->vkey_len + L1_OBJ_OVERHEAD;
    pthread_mutex_lock(&s->mtx);
    struct l1_entry *e = entry_find(s, bb, h, pkey, plen);
    if (e && !same_vary(e->vary, o->vary)) {
        /* The origin changed its Vary: variants keyed by the old list are unreachable. */
        drop_entry(s, e, &d);
        e = NULL;
    }
    if (e) {
        for (struct cache_obj *x = e->variants; x; x = x->vnext) {
            if (x->vkey_len == o->vkey_len && memcmp(x->vkey, o->vkey, o->vkey_len) == 0) {
                int last = x->vnext == NULL && e->variants == x;
                drop_variant(s, x, &d);
                if (last)
                    e = NULL;
                break;
            }
        }
    }
    enum cache_policy_admit verdict;
    if (o->l1_verdict == L1_VERDICT_REFUSE)
        verdict = CACHE_POLICY_REJECTED;
    else if (o->l1_verdict == L1_VERDICT_ADMIT)
        verdict = cache_policy_insert_judged(s->pol, &o->pnode, o->charge);
    else
        verdict = cache_policy_insert(s->pol, &o->pnode, h, o->charge);
    if (verdict != CACHE_POLICY_ADMITTED) {
        ret = -EFBIG;
        goto out;
    }
    if (!e) {
        if (s->nentries >= s->nbuckets)
            grow(s);
        e = mc_xcalloc(1, sizeof(*e));
        e->h = h;
        e->pkey = mc_xstrndup(pkey, plen);
        e->plen = plen;
        struct l1_entry **slot = bucket_of(s, bb);
        e->next = *slot;
        *slot = e;
        s->nentries++;
    }
    free(e->vary);
    e->vary = o->vary ? mc_xstrdup(o->vary) : NULL;
    o->entry = e;
    o->vnext = e->variants;
    e->variants = o;
    o->in_index = 1;
    cache_obj_ref(o);
    atomic_fetch_add(&s->bytes, o->charge);
    atomic_fetch_add(&s->objs, 1);
    while ((v = cache_policy_victim(s->pol)) != NULL) {
        struct cache_obj *victim = MC_CONTAINER_OF(v, struct cache_obj, pnode);
        variant_unlink(s, victim, &d);
    }
    if (!o->in_index)
        ret = -EFBIG;
out:
    pthread_mutex_unlock(&s->mtx);
    dropped_release(&d);
    return ret;
}

int l1_replace(struct l1 *c, const char *pkey, size_t plen, struct cache_obj *old,
               struct cache_obj *fresh)
{
    uint64_t bb, h = key_hash(pkey, plen, &bb);
    struct shard *s = shard_of(c, h);
    int still;

    pthread_mutex_lock(&s->mtx);
    still = old->in_index && entry_find(s, bb, h, pkey, plen) == old->entry;
    pthread_mutex_unlock(&s->mtx);
    if (!still)
        return -ENOENT;
    /* l1_insert drops the variant with the same vkey, which is `old`. */
    return l1_insert(c, pkey, plen, fresh);
}

size_t l1_remove(struct l1 *c, const char *pkey, size_t plen)
{
    uint64_t bb, h = key_hash(pkey, plen, &bb);
    struct shard *s = shard_of(c, h);
    struct dropped d = {0};
    size_t n;

    pthread_mutex_lock(&s->mtx);
    struct l1_entry *e = entry_find(s, bb, h, pkey, plen);
    if (e)
        drop_entry(s, e, &d);
    pthread_mutex_unlock(&s->mtx);
    n = d.n;
    dropped_release(&d);
    return n;
}

void l1_remove_obj(struct l1 *c, const char *pkey, size_t plen, struct cache_obj *o)
{
    uint64_t bb, h = key_hash(pkey, plen, &bb);
    struct shard *s = shard_of(c, h);
    struct dropped d = {0};

    pthread_mutex_lock(&s->mtx);
    if (o->in_index && o->entry && entry_find(s, bb, h, pkey, plen) == o->entry)
        drop_variant(s, o, &d);
    pthread_mutex_unlock(&s->mtx);
    dropped_release(&d);
}

int l1_judge(struct l1 *c, const char *pkey, size_t plen, struct cache_obj *o, uint64_t body_len)
{
    uint64_t bb, h = key_hash(pkey, plen, &bb);
    struct shard *s = shard_of(c, h);
    uint64_t charge = body_len + o->hdrs_len + plen + o->vkey_len + L1_OBJ_OVERHEAD;

    pthread_mutex_lock(&s->mtx);
    enum cache_policy_admit v = cache_policy_judge(s->pol, &o->pnode, h, charge);
    o->l1_verdict = v == CACHE_POLICY_ADMITTED ? L1_VERDICT_ADMIT : L1_VERDICT_REFUSE;
    pthread_mutex_unlock(&s->mtx);
    return v == CACHE_POLICY_ADMITTED ? 0 : -EFBIG;
}

size_t l1_purge_path(struct l1 *c, const char *host, size_t hlen, const char *pathq, size_t plen)
{
    struct dropped d = {0};
    size_t n;

    for (unsigned i = 0; i < c->nshards; i++) {
        struct shard *s = &c->shards[i];
        pthread_mutex_lock(&s->mtx);
        for (size_t b = 0; b < s->nbuckets; b++) {
            struct l1_entry *e = s->buckets[b], *en;
            for (; e; e = en) {
                en = e->next;
                const char *slash = memchr(e->pkey, '/', e->plen);
                if (!slash)
                    continue;
                size_t kh = (size_t)(slash - e->pkey), kp = e->plen - kh;
                if (kp != plen || memcmp(slash, pathq, plen) != 0)
                    continue;
                if (host && (kh != hlen || strncasecmp(e->pkey, host, hlen) != 0))
                    continue;
                drop_entry(s, e, &d);
            }
        }
        pthread_mutex_unlock(&s->mtx);
    }
    n = d.n;
    dropped_release(&d);
    return n;
}

size_t l1_walk(struct l1 *c, l1_walk_f *fn, void *arg)
{
    struct dropped d = {0};
    size_t n;

    for (unsigned i = 0; i < c->nshards; i++) {
        struct shard *s = &c->shards[i];
        pthread_mutex_lock(&s->mtx);
        for (size_t b = 0; b < s->nbuckets; b++) {
            struct l1_entry *e = s->buckets[b], *en;
            for (; e; e = en) {
                en = e->next;
                /* The last variant dropped frees e: read its links before. */
                struct cache_obj *o = e->variants, *on;
                for (; o; o = on) {
                    on = o->vnext;
                    int last = on == NULL;
                    if (fn(arg, e->pkey, e->plen, o))
                        drop_variant(s, o, &d);
                    if (last)
                        break;
                }
            }
        }
        pthread_mutex_unlock(&s->mtx);
    }
    n = d.n;
    dropped_release(&d);
    return n;
}

size_t l1_remove_if(struct l1 *c, const char *pkey, size_t plen, l1_walk_f *fn, void *arg)
{
    uint64_t bb, h = key_hash(pkey, plen, &bb);
    struct shard *s = shard_of(c, h);
    struct dropped d = {0};
    size_t n;

    pthread_mutex_lock(&s->mtx);
    struct l1_entry *e = entry_find(s, bb, h, pkey, plen);
    /* The last variant dropped frees e: read its links before. */
    for (struct cache_obj *o = e ? e->variants : NULL, *on; o; o = on) {
        on = o->vnext;
        int last = on == NULL;
        if (fn(arg, e->pkey, e->plen, o))
            drop_variant(s, o, &d);
        if (last)
            break;
    }
    pthread_mutex_unlock(&s->mtx);
    n = d.n;
    dropped_release(&d);
    return n;
}

uint64_t l1_bytes(const struct l1 *c)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < c->nshards; i++)
        n += atomic_load(&c->shards[i].bytes);
    return n;
}

int l1_variant_matches(const struct cache_obj *o, const struct http_request *req)
{
    struct buf vk;
    int same;

    if (!o->vary)
        return 1;
    buf_init(&vk, 64 * 1024);
    same = strcmp(o->vary, "*") != 0 && l1_vary_key(&vk, o->vary, req) == 0 &&
           vk.len == o->vkey_len && memcmp(vk.data ? vk.data : "", o->vkey, vk.len) == 0;
    buf_fini(&vk);
    return same;
}

uint64_t l1_objects(const struct l1 *c)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < c->nshards; i++)
        n += atomic_load(&c->shards[i].objs);
    return n;
}

uint64_t l1_budget(const struct l1 *c)
{
    return c->budget;
}
