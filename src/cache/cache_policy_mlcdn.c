/* src/cache/cache_policy_mlcdn.c: "mlcdn", the default policy: adaptive S3-FIFO.
 *
 * S3-FIFO's structure (a small probation FIFO, a main FIFO with a 2-bit CLOCK, a ghost of
 * hashes) with the split between the two queues tuned online, ARC-style, from two ghosts:
 *   - ghost S remembers objects the small queue dropped unhit (1.25 x capacity in units);
 *     a newcomer found there was re-requested just after the probation window closed:
 *     the small queue was too short, so its target grows by the newcomer's size;
 *   - ghost M remembers objects the main queue dropped (1 x capacity); a newcomer found
 *     there shows main was too short, so the small target shrinks by its size.
 * The small target stays within [1%, 99%] of the capacity (starts at 10%). A newcomer
 * found in either ghost goes straight to main. Small-queue eviction promotes a node hit
 * twice while on probation; main eviction gives a node hit since its last round another
 * round (its counter, capped at 3, decremented).
 *
 * Size-aware admission: a first-seen object larger than the small target is not stored
 * (it would flush the probation queue) but remembered in ghost S, tagged; asked for again
 * while remembered, it enters main (no adaptation: it never was on probation). So a giant
 * must prove itself once before it can displace anything. Stores add a hard bound with
 * cache_policy_set_max_object().
 *
 * Hits only bump the node's counter (relaxed atomics); everything else runs under the
 * caller's lock. Rationale and measurements: docs/internals/eviction.md. */
#include "cache/cache_policy_int.h"

#define Q_SMALL 1
#define Q_MAIN 2
#define F_TO_MAIN 1

#define PROMOTE_HITS 2 /* hits on probation that earn main */
#define FREQ_CAP 3     /* main's CLOCK counter: 2 bits */

struct mlcdn {
    struct cache_policy base;
    struct cache__list small, main;
    struct cache__ghost ghost_s, ghost_m;
    uint64_t small_target; /* adapted; in the store's unit */
    uint64_t small_min, small_max;
    int has_evicted;
};

static void bounds(struct mlcdn *m)
{
    uint64_t cap = m->base.capacity;

    m->small_min = MC_MAX(cap / 100, 1);
    m->small_max = MC_MAX(cap - cap / 100, m->small_min);
    if (m->small_target == 0)
        m->small_target = cap / 10;
    m->small_target = MC_MIN(MC_MAX(m->small_target, m->small_min), m->small_max);
    cache__ghost_set_budget(&m->ghost_s, cap + cap / 4);
    cache__ghost_set_budget(&m->ghost_m, cap);
}

static void ml_init(struct cache_policy *p)
{
    struct mlcdn *m = (struct mlcdn *)p;

    cache__list_init(&m->small);
    cache__list_init(&m->main);
    cache__ghost_init(&m->ghost_s, 0, 64);
    cache__ghost_init(&m->ghost_m, 0, 64);
    bounds(m);
}

static void ml_fini(struct cache_policy *p)
{
    struct mlcdn *m = (struct mlcdn *)p;

    cache__ghost_fini(&m->ghost_s);
    cache__ghost_fini(&m->ghost_m);
}

static enum cache_policy_admit ml_admit(struct cache_policy *p, struct cache__pn *n)
{
    struct mlcdn *m = (struct mlcdn *)p;
    int tag = 0;

    if (cache__ghost_take(&m->ghost_s, n->hash, &tag)) {
        n->flags |= F_TO_MAIN;
        if (!tag)
            m->small_target = MC_MIN(m->small_target + n->size, m->small_max);
    } else if (cache__ghost_take(&m->ghost_m, n->hash, &tag)) {
        n->flags |= F_TO_MAIN;
        m->small_target = m->small_target > m->small_min + n->size ? m->small_target - n->size
                                                                   : m->small_min;
    } else if (n->size > m->small_target) {
        cache__ghost_add(&m->ghost_s, n->hash, n->size, 1);
        return CACHE_POLICY_REJECTED;
    }
    return CACHE_POLICY_ADMITTED;
}

static void ml_link(struct cache_policy *p, struct cache__pn *n)
{
    struct mlcdn *m = (struct mlcdn *)p;

    cache__freq_set(n, 0);
    /* Until the first eviction there is nothing to protect: newcomers that do not fit in
     * the small queue fill main, as libCacheSim's S3-FIFO does. */
    if ((n->flags & F_TO_MAIN) || (!m->has_evicted && m->small.used >= m->small_target)) {
        n->q = Q_MAIN;
        cache__list_push(&m->main, n);
    } else {
        n->q = Q_SMALL;
        cache__list_push(&m->small, n);
    }
    n->flags = 0;
    if (p->count > m->ghost_s.live_max) {
        cache__ghost_reserve(&m->ghost_s, p->count + p->count / 2);
        cache__ghost_reserve(&m->ghost_m, p->count + p->count / 2);
    }
}

static struct cache__pn *evict_main(struct mlcdn *m)
{
    struct cache__pn *v;
    uint32_t f;

    /* Terminates: every pass decrements the counter of the node it re-queues (a hit racing
     * with the scan can re-raise one, bounded by the number of concurrent hits). */
    while ((v = cache__list_oldest(&m->main)) != NULL) {
        cache__list_del(&m->main, v);
        f = cache__freq(v);
        if (f == 0) {
            v->q = 0;
            cache__ghost_add(&m->ghost_m, v->hash, v->size, 0);
            return v;
        }
        cache__freq_set(v, MC_MIN(f, FREQ_CAP) - 1);
        cache__list_push(&m->main, v);
    }
    return NULL;
}

static struct cache__pn *ml_evict(struct cache_policy *p)
{
    struct mlcdn *m = (struct mlcdn *)p;
    struct cache__pn *v;

    m->has_evicted = 1;
    if (m->main.used > p->capacity - m->small_target || cache__list_empty(&m->small))
        return evict_main(m);
    while ((v = cache__list_oldest(&m->small)) != NULL) {
        cache__list_del(&m->small, v);
        if (cache__freq(v) >= PROMOTE_HITS) {
            cache__freq_set(v, 0);
            v->q = Q_MAIN;
            cache__list_push(&m->main, v);
            continue;
        }
        cache__ghost_add(&m->ghost_s, v->hash, v->size, 0);
        v->q = 0;
        return v;
    }
    return evict_main(m);
}

static void ml_hit(struct cache_policy *p, struct cache__pn *n)
{
    cache__freq_bump(n, FREQ_CAP);
}

static void ml_unlink(struct cache_policy *p, struct cache__pn *n)
{
    struct mlcdn *m = (struct mlcdn *)p;

    cache__list_del(n->q == Q_SMALL ? &m->small : &m->main, n);
    n->q = 0;
}

static void ml_resize(struct cache_policy *p)
{
    bounds((struct mlcdn *)p);
}

const struct cache__policy_ops cache__policy_mlcdn = {
    .name = "mlcdn",
    .size = sizeof(struct mlcdn),
    .hit_concurrent = 1,
    .init = ml_init,
    .fini = ml_fini,
    .admit = ml_admit,
    .link = ml_link,
    .evict = ml_evict,
    .hit = ml_hit,
    .unlink = ml_unlink,
    .resize = ml_resize,
};

/* Read-only view for stats and tests: the current small-queue target. */
uint64_t cache__mlcdn_small_target(const struct cache_policy *p)
{
    return ((const struct mlcdn *)p)->small_target;
}
