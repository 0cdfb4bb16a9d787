/* src/cache/cache_policy_lru.c: least recently used, the textbook reference line.
 *
 * One list, newest first; a hit moves the node to the front. That move rewrites the
 * neighbours, so LRU is the one policy whose hit is NOT safe under concurrent hits:
 * cache_policy_hit_concurrent() returns 0 and a store using it must hold its shard lock
 * exclusively on hits. It exists for comparison and for `mlcdn cachesim`. */
#include "cache/cache_policy_int.h"

struct lru {
    struct cache_policy base;
    struct cache__list q;
};

static void lru_init(struct cache_policy *p)
{
    cache__list_init(&((struct lru *)p)->q);
}

static void lru_fini(struct cache_policy *p)
{
}

static enum cache_policy_admit lru_admit(struct cache_policy *p, struct cache__pn *n)
{
    return CACHE_POLICY_ADMITTED;
}

static void lru_link(struct cache_policy *p, struct cache__pn *n)
{
    n->q = 1;
    cache__list_push(&((struct lru *)p)->q, n);
}

static struct cache__pn *lru_evict(struct cache_policy *p)
{
    struct lru *l = (struct lru *)p;
    struct cache__pn *v = cache__list_oldest(&l->q);

    if (v != NULL) {
        cache__list_del(&l->q, v);
        v->q = 0;
    }
    return v;
}

static void lru_hit(struct cache_policy *p, struct cache__pn *n)
{
    struct lru *l = (struct lru *)p;

    if (n->q == 0) /* the newcomer, not linked yet */
        return;
    cache__list_del(&l->q, n);
    cache__list_push(&l->q, n);
}

static void lru_unlink(struct cache_policy *p, struct cache__pn *n)
{
    cache__list_del(&((struct lru *)p)->q, n);
    n->q = 0;
}

const struct cache__policy_ops cache__policy_lru = {
    .name = "lru",
    .size = sizeof(struct lru),
    .hit_concurrent = 0,
    .init = lru_init,
    .fini = lru_fini,
    .admit = lru_admit,
    .link = lru_link,
    .evict = lru_evict,
    .hit = lru_hit,
    .unlink = lru_unlink,
};
