/* src/cache/cache_policy_s3fifo.c: S3-FIFO (Yang et al., SOSP '23), as libCacheSim runs it.
 *
 * A small FIFO (10% of the capacity) takes newcomers; a main FIFO (the rest) with a 2-bit
 * CLOCK keeps what proved itself; a ghost remembers the hashes of objects the small queue
 * dropped (90% of the capacity in units). Evicting from small: a node hit at least twice
 * moves to main, else it leaves and goes to the ghost. A newcomer found in the ghost goes
 * straight to main. Evicting from main: a node hit since its last round gets another round
 * with its count decremented (capped at 3). Before the first eviction, newcomers that do
 * not fit in small go to main, as libCacheSim's S3FIFO.c does. Objects larger than the
 * small queue are refused (they would flush it). Hits only bump the node's counter. */
#include "cache/cache_policy_int.h"

#define Q_SMALL 1
#define Q_MAIN 2
#define F_GHOST 1

struct s3fifo {
    struct cache_policy base;
    struct cache__list small, main;
    struct cache__ghost ghost;
    uint64_t small_target;
    int has_evicted;
};

static void targets(struct s3fifo *s)
{
    s->small_target = s->base.capacity / 10;
    cache__ghost_set_budget(&s->ghost, s->base.capacity - s->base.capacity / 10);
}

static void s3_init(struct cache_policy *p)
{
    struct s3fifo *s = (struct s3fifo *)p;

    cache__list_init(&s->small);
    cache__list_init(&s->main);
    cache__ghost_init(&s->ghost, 0, 64);
    targets(s);
}

static void s3_fini(struct cache_policy *p)
{
    cache__ghost_fini(&((struct s3fifo *)p)->ghost);
}

static enum cache_policy_admit s3_admit(struct cache_policy *p, struct cache__pn *n)
{
    struct s3fifo *s = (struct s3fifo *)p;
    int tag;

    if (n->size > s->small_target)
        return CACHE_POLICY_REJECTED;
    if (cache__ghost_take(&s->ghost, n->hash, &tag))
        n->flags |= F_GHOST;
    return CACHE_POLICY_ADMITTED;
}

static void s3_link(struct cache_policy *p, struct cache__pn *n)
{
    struct s3fifo *s = (struct s3fifo *)p;

    cache__freq_set(n, 0);
    if ((n->flags & F_GHOST) || (!s->has_evicted && s->small.used >= s->small_target)) {
        n->q = Q_MAIN;
        cache__list_push(&s->main, n);
    } else {
        n->q = Q_SMALL;
        cache__list_push(&s->small, n);
    }
    n->flags &= (uint8_t)~F_GHOST;
    if (p->count > s->ghost.live_max)
        cache__ghost_reserve(&s->ghost, p->count + p->count / 2);
}

static struct cache__pn *evict_main(struct s3fifo *s)
{
    struct cache__pn *v;
    uint32_t f;

    while ((v = cache__list_oldest(&s->main)) != NULL) {
        cache__list_del(&s->main, v);
        f = cache__freq(v);
        if (f == 0) {
            v->q = 0;
            return v;
        }
        cache__freq_set(v, MC_MIN(f, 3u) - 1);
        cache__list_push(&s->main, v);
    }
    return NULL;
}

static struct cache__pn *s3_evict(struct cache_policy *p)
{
    struct s3fifo *s = (struct s3fifo *)p;
    struct cache__pn *v;

    s->has_evicted = 1;
    if (s->main.used > p->capacity - s->small_target || cache__list_empty(&s->small))
        return evict_main(s);
    while ((v = cache__list_oldest(&s->small)) != NULL) {
        cache__list_del(&s->small, v);
        if (cache__freq(v) >= 2) {
            cache__freq_set(v, 0);
            v->q = Q_MAIN;
            cache__list_push(&s->main, v);
            continue;
        }
        cache__ghost_add(&s->ghost, v->hash, v->size, 0);
        v->q = 0;
        return v;
    }
    return evict_main(s);
}

static void s3_hit(struct cache_policy *p, struct cache__pn *n)
{
    cache__freq_bump(n, 3);
}

static void s3_unlink(struct cache_policy *p, struct cache__pn *n)
{
    struct s3fifo *s = (struct s3fifo *)p;

    cache__list_del(n->q == Q_SMALL ? &s->small : &s->main, n);
    n->q = 0;
}

static void s3_resize(struct cache_policy *p)
{
    targets((struct s3fifo *)p);
}

static uint64_t s3_side_bytes(const struct cache_policy *p)
{
    return cache__ghost_bytes(&((const struct s3fifo *)p)->ghost);
}

const struct cache__policy_ops cache__policy_s3fifo = {
    .name = "s3fifo",
    .size = sizeof(struct s3fifo),
    .hit_concurrent = 1,
    .init = s3_init,
    .fini = s3_fini,
    .admit = s3_admit,
    .link = s3_link,
    .evict = s3_evict,
    .hit = s3_hit,
    .unlink = s3_unlink,
    .resize = s3_resize,
    .side_bytes = s3_side_bytes,
};
