/* src/cache/cache_pred.c: the prediction cache (see cache_pred.h).
 *
 * Structure: nshards shards, each a chained hash table (power-of-two buckets, doubled
 * when the load passes 1) plus one cache_policy instance with a byte capacity of
 * budget / nshards. The shard is picked by the high half of the XXH3-128 hash and the
 * bucket by the low half; the low half is also kept in the entry to skip most memcmp.
 *
 * Locking: everything in a shard is guarded by shard->mtx, held for lookups too (a hit
 * copies the value out while the entry is pinned by the lock). Victims are unlinked
 * under the lock and freed after it is released. Counters are relaxed atomics. */
#include "cache/cache_pred.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache_key.h"
#include "cache/cache_policy.h"
#include "core/mc.h"

#define CACHE_PRED_MAGIC 0x50524544u

struct pentry {
    struct cache_pnode pn;
    struct pentry *next;
    uint64_t h;
    uint32_t klen, vlen;
    uint64_t charge;
    unsigned char data[]; /* key, then value */
};

struct pshard {
    pthread_mutex_t mtx;
    struct pentry **tab;
    size_t nbuckets; /* power of two */
    size_t n;
    struct cache_policy *pol;
};

struct cache_pred {
    unsigned magic;
    unsigned nshards;
    uint64_t capacity;
    struct pshard *sh;
    _Atomic uint64_t hits, misses, inserts, evictions, rejected;
};

static void hash2(const void *key, size_t klen, uint64_t *lo, uint64_t *hi)
{
    uint8_t h[16];
    cache_key_hash(key, klen, h);
    memcpy(lo, h, 8);
    memcpy(hi, h + 8, 8);
}

int cache_pred_new(uint64_t max_bytes, const char *policy, enum cache_policy_objective objective,
                   unsigned nshards, struct cache_pred **out)
{
    struct cache_pred *c;

    if (!nshards)
        nshards = 16;
    if (max_bytes == 0)
        return -EINVAL;
    c = mc_xcalloc(1, sizeof(*c));
    MC_INIT_OBJ(c, CACHE_PRED_MAGIC);
    c->nshards = nshards;
    c->capacity = max_bytes;
    c->sh = mc_xcalloc(nshards, sizeof(*c->sh));
    for (unsigned i = 0; i < nshards; i++) {
        struct pshard *s = &c->sh[i];
        uint64_t cap = max_bytes / nshards;
        if (cache_policy_new(policy ? policy : "default", cap ? cap : 1, &s->pol) != 0) {
            for (unsigned j = 0; j < i; j++) {
                cache_policy_free(&c->sh[j].pol);
                free(c->sh[j].tab);
                pthread_mutex_destroy(&c->sh[j].mtx);
            }
            free(c->sh);
            MC_FREE_OBJ(c);
            return -EINVAL;
        }
        cache_policy_set_objective(s->pol, objective);
        pthread_mutex_init(&s->mtx, NULL);
        s->nbuckets = 64;
        s->tab = mc_xcalloc(s->nbuckets, sizeof(*s->tab));
    }
    *out = c;
    return 0;
}

static void shard_clear(struct pshard *s)
{
    for (size_t b = 0; b < s->nbuckets; b++) {
        struct pentry *en = s->tab[b], *next;
        for (; en; en = next) {
            next = en->next;
            cache_policy_remove(s->pol, &en->pn);
            free(en);
        }
        s->tab[b] = NULL;
    }
    s->n = 0;
}

void cache_pred_free(struct cache_pred **cp)
{
    struct cache_pred *c = *cp;

    if (!c)
        return;
    MC_CHECK_OBJ(c, CACHE_PRED_MAGIC);
    for (unsigned i = 0; i < c->nshards; i++) {
        shard_clear(&c->sh[i]);
        cache_policy_free(&c->sh[i].pol);
        free(c->sh[i].tab);
        pthread_mutex_destroy(&c->sh[i].mtx);
    }
    free(c->sh);
    MC_FREE_OBJ(c);
    *cp = NULL;
}

static struct pentry **find(struct pshard *s, uint64_t h, const void *key, size_t klen)
{
    struct pentry **pp = &s->tab[h & (s->nbuckets - 1)];
    for (; *pp; pp = &(*pp)->next) {
        struct pentry *en = *pp;
        if (en->h == h && en->klen == klen && memcmp(en->data, key, klen) == 0)
            return pp;
    }
    return pp;
}

int cache_pred_get(struct cache_pred *c, const void *key, size_t klen, void *val, size_t vcap,
                   size_t *vlen)
{
    uint64_t lo, hi;
    int rc = -ENOENT;

    MC_CHECK_OBJ_NOTNULL(c, CACHE_PRED_MAGIC);
    hash2(key, klen, &lo, &hi);
    struct pshard *s = &c->sh[hi % c->nshards];
    pthread_mutex_lock(&s->mtx);
    struct pentry *en = *find(s, lo, key, klen);
    if (en) {
        if (en->vlen <= vcap) {
            memcpy(val, en->data + en->klen, en->vlen);
            *vlen = en->vlen;
            cache_policy_hit(s->pol, &en->pn);
            rc = 0;
        } else {
            rc = -ENOSPC;
        }
    }
    pthread_mutex_unlock(&s->mtx);
    atomic_fetch_add_explicit(rc == 0 ? &c->hits : &c->misses, 1, memory_order_relaxed);
    return rc;
}

static void unlink_entry(struct pshard *s, struct pentry *en)
{
    struct pentry **pp = find(s, en->h, en->data, en->klen);
    MC_ASSERT(*pp == en);
    *pp = en->next;
    s->n--;
}

static void grow(struct pshard *s)
{
    size_t nb = s->nbuckets * 2;
    struct pentry **tab = mc_xcalloc(nb, sizeof(*tab));

    for (size_t b = 0; b < s->nbuckets; b++) {
        struct pentry *en = s->tab[b], *next;
        for (; en; en = next) {
            next = en->next;
            en->next = tab[en->h & (nb - 1)];
            tab[en->h & (nb - 1)] = en;
        }
    }
    free(s->tab);
    s->tab = tab;
    s->nbuckets = nb;
}

int cache_pred_put(struct cache_pred *c, const void *key, size_t klen, const void *val, size_t vlen)
{
    uint64_t lo, hi;
    struct pentry *en, *victims = NULL, *old;
    uint64_t nev = 0;

    MC_CHECK_OBJ_NOTNULL(c, CACHE_PRED_MAGIC);
    if (klen > UINT32_MAX || vlen > UINT32_MAX)
        return -E2BIG;
    /* Payload memory: may fail, and then the prediction is just not cached. */
    en = malloc(sizeof(*en) + klen + vlen);
    if (!en)
        return -ENOMEM;
    memset(en, 0, sizeof(*en));
    hash2(key, klen, &lo, &hi);
    en->h = lo;
    en->klen = (uint32_t)klen;
    en->vlen = (uint32_t)vlen;
    en->charge = sizeof(*en) + klen + vlen;
    memcpy(en->data, key, klen);
    memcpy(en->data + klen, val, vlen);

    struct pshard *s = &c->sh[hi % c->nshards];
    pthread_mutex_lock(&s->mtx);
    struct pentry **pp = find(s, lo, key, klen);
    if ((old = *pp) != NULL) {
        *pp = old->next;
        s->n--;
        cache_policy_remove(s->pol, &old->pn);
        old->next = victims;
        victims = old;
    }
    if (cache_policy_insert(s->pol, &en->pn, lo ^ hi, en->charge) != CACHE_POLICY_ADMITTED) {
        pthread_mutex_unlock(&s->mtx);
        free(en);
        free(victims);
        atomic_fetch_add_explicit(&c->rejected, 1, memory_order_relaxed);
        return -E2BIG;
    }
    en->next = s->tab[lo & (s->nbuckets - 1)];
    s->tab[lo & (s->nbuckets - 1)] = en;
    s->n++;
    struct cache_pnode *vn;
    int self_evicted = 0;
    while ((vn = cache_policy_victim(s->pol)) != NULL) {
        struct pentry *v = MC_CONTAINER_OF(vn, struct pentry, pn);
        unlink_entry(s, v);
        if (v == en)
            self_evicted = 1;
        v->next = victims;
        victims = v;
        nev++;
    }
    if (s->n > s->nbuckets)
        grow(s);
    pthread_mutex_unlock(&s->mtx);
    while (victims) {
        struct pentry *next = victims->next;
        free(victims);
        victims = next;
    }
    atomic_fetch_add_explicit(&c->evictions, nev, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->inserts, 1, memory_order_relaxed);
    return self_evicted ? -E2BIG : 0;
}

void cache_pred_clear(struct cache_pred *c)
{
    MC_CHECK_OBJ_NOTNULL(c, CACHE_PRED_MAGIC);
    for (unsigned i = 0; i < c->nshards; i++) {
        pthread_mutex_lock(&c->sh[i].mtx);
        shard_clear(&c->sh[i]);
        pthread_mutex_unlock(&c->sh[i].mtx);
    }
}

void cache_pred_stats(struct cache_pred *c, struct cache_pred_stats *st)
{
    MC_CHECK_OBJ_NOTNULL(c, CACHE_PRED_MAGIC);
    memset(st, 0, sizeof(*st));
    for (unsigned i = 0; i < c->nshards; i++) {
        pthread_mutex_lock(&c->sh[i].mtx);
        st->entries += c->sh[i].n;
        st->bytes += cache_policy_used(c->sh[i].pol);
        pthread_mutex_unlock(&c->sh[i].mtx);
    }
    st->capacity = c->capacity;
    st->hits = atomic_load_explicit(&c->hits, memory_order_relaxed);
    st->misses = atomic_load_explicit(&c->misses, memory_order_relaxed);
    st->inserts = atomic_load_explicit(&c->inserts, memory_order_relaxed);
    st->evictions = atomic_load_explicit(&c->evictions, memory_order_relaxed);
    st->rejected = atomic_load_explicit(&c->rejected, memory_order_relaxed);
}
