/* src/cache/cache_policy_sieve.c: SIEVE (Zhang et al., NSDI '24).
 *
 * One FIFO list, newest at the head, and a hand that walks from the tail towards the
 * head: a visited node keeps its place and loses its bit, the first unvisited node is
 * evicted and the hand stays where it was. Retained objects are never moved, so a hit is a
 * single relaxed store and runs concurrently with other hits. */
#include "cache/cache_policy_int.h"

struct sieve {
    struct cache_policy base;
    struct cache__list q;
    struct cache__pn *hand; /* next node to examine; NULL = start at the tail */
};

static void sieve_init(struct cache_policy *p)
{
    cache__list_init(&((struct sieve *)p)->q);
}

static void sieve_fini(struct cache_policy *p)
{
}

static enum cache_policy_admit sieve_admit(struct cache_policy *p, struct cache__pn *n)
{
    return CACHE_POLICY_ADMITTED;
}

static void sieve_link(struct cache_policy *p, struct cache__pn *n)
{
    n->q = 1;
    cache__list_push(&((struct sieve *)p)->q, n);
}

static struct cache__pn *sieve_evict(struct cache_policy *p)
{
    struct sieve *s = (struct sieve *)p;
    struct cache__pn *h = s->hand;
    uint64_t scanned = 0;

    if (cache__list_empty(&s->q))
        return NULL;
    if (h == NULL)
        h = s->q.head.prev;
    /* A concurrent hit can set a bit behind the hand; bounding the walk to two rounds
     * keeps eviction finite even then. */
    while (cache__freq(h) != 0 && scanned++ < 2 * s->q.count) {
        cache__freq_set(h, 0);
        h = h->prev;
        if (h == &s->q.head)
            h = s->q.head.prev;
    }
    s->hand = h->prev != &s->q.head ? h->prev : NULL;
    cache__list_del(&s->q, h);
    h->q = 0;
    return h;
}

static void sieve_hit(struct cache_policy *p, struct cache__pn *n)
{
    if (cache__freq(n) == 0)
        cache__freq_set(n, 1);
}

static void sieve_unlink(struct cache_policy *p, struct cache__pn *n)
{
    struct sieve *s = (struct sieve *)p;

    if (s->hand == n)
        s->hand = n->prev != &s->q.head ? n->prev : NULL;
    cache__list_del(&s->q, n);
    n->q = 0;
}

const struct cache__policy_ops cache__policy_sieve = {
    .name = "sieve",
    .size = sizeof(struct sieve),
    .hit_concurrent = 1,
    .init = sieve_init,
    .fini = sieve_fini,
    .admit = sieve_admit,
    .link = sieve_link,
    .evict = sieve_evict,
    .hit = sieve_hit,
    .unlink = sieve_unlink,
};
