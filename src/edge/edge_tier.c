/* src/edge/edge_tier.c: the chain of storage tiers behind L1.
 *
 * Each tier is a struct edge_tier_ops (edge_int.h): the L2 disk tier (edge_tier_l2.c) and
 * the Redis shared tier (edge_redis.c). The tiers configured at start-up form the chain,
 * nearest first. A cacheable request that missed L1 (edge_req.c) walks it: each tier's
 * lookup answers through edge__tier_answered, the one continuation of every tier: a hit
 * (which the tier has already admitted to L1 by its own policy) returns to the request's
 * state machine, a miss goes to the next tier, and after the last one the state machine
 * is told that every tier missed. Stores and drops go to every tier of the chain, and
 * what a fill keeps enters L1 here (edge__tier_keep, edge__tier_refresh).
 *
 * Storage only: this file and the adapters call nothing of edge_req.c, edge_fetch.c or
 * edge_deliver.c. */
#include <errno.h>

#include "edge/edge_int.h"

/* Asks tier i of the chain, or tells done that every tier missed. */
static void walk_from(struct edge_worker *w, size_t i, struct http_exchange *x, const char *key,
                      size_t klen, const struct edge_rctx *rc, edge_tier_done_f done)
{
    const struct edge *e = w->e;

    if (i < e->ntiers) {
        e->tiers[i]->lookup(w, x, key, klen, rc, done);
        return;
    }
    done(w, x, key, klen, rc, i ? e->tiers[i - 1]->level : EDGE_LV_L1, NULL);
}

void edge__tier_walk(struct edge_worker *w, struct http_exchange *x, const char *key, size_t klen,
                     const struct edge_rctx *rc, edge_tier_done_f done)
{
    walk_from(w, 0, x, key, klen, rc, done);
}

void edge__tier_answered(struct edge_worker *w, struct http_exchange *x, const char *key,
                         size_t klen, const struct edge_rctx *rc, enum edge_level lv,
                         struct cache_obj *o, edge_tier_done_f done)
{
    struct edge *e = w->e;

    if (w->stopping) {
        /* An asynchronous answer while the loop closes: no fetch may start, no next tier
         * is asked; done answers the client (503). */
        cache_obj_unref(&o);
        done(w, x, key, klen, rc, lv, NULL);
        return;
    }
    if (o) {
        metrics_counter_add(e->m.tier_hits[lv], 1);
        done(w, x, key, klen, rc, lv, o);
        return;
    }
    metrics_counter_add(e->m.tier_misses[lv], 1);
    size_t i = 0;
    while (i < e->ntiers && e->tiers[i]->level != lv)
        i++;
    walk_from(w, i + 1, x, key, klen, rc, done);
}

void edge__tier_keep(struct edge_worker *w, const char *key, size_t klen, struct cache_obj *o)
{
    struct edge *e = w->e;

    if (edge__inval_l1_insert(e, key, klen, o) == 0) {
        metrics_counter_add(e->m.stored, 1);
        edge__tier_store(w, key, klen, o);
        return;
    }
    metrics_counter_add(e->m.not_stored, 1);
    /* A file-backed body here is one L2 would not take when the fill began (full,
     * paused, too large): it is not offered again. A memory body L1 refused may still
     * fit the tiers behind it. */
    if (cache_body_file(o->body, NULL) < 0)
        edge__tier_store(w, key, klen, o);
}

void edge__tier_refresh(struct edge_worker *w, const char *key, size_t klen,
                        struct cache_obj *stale, struct cache_obj *o)
{
    struct edge *e = w->e;
    int ok;
    unsigned tok = edge__inval_store_begin(e, key, klen, o, &ok);

    /* stale may have been evicted meanwhile: then the refreshed object enters L1 anew. A
     * ban issued while the revalidation ran refuses the refreshed object: stale goes. */
    if (!ok)
        l1_remove_obj(e->l1, key, klen, stale);
    else if (l1_replace(e->l1, key, klen, stale, o) != 0)
        l1_insert(e->l1, key, klen, o);
    edge__inval_store_end(e, tok);
    if (ok)
        edge__tier_store(w, key, klen, o);
}

void edge__tier_store(struct edge_worker *w, const char *key, size_t klen, struct cache_obj *o)
{
    struct edge *e = w->e;

    int ok;

    if (cache_body_state(o->body) != CACHE_BODY_COMPLETE)
        return;
    unsigned tok = edge__inval_store_begin(e, key, klen, o, &ok);
    for (size_t i = e->ntiers; ok && i-- > 0;)
        e->tiers[i]->store(w, key, klen, o);
    edge__inval_store_end(e, tok);
}

void edge__tier_drop(struct edge_worker *w, const char *key, size_t klen)
{
    struct edge *e = w->e;

    l1_remove(e->l1, key, klen);
    edge__parts_drop(e, key, klen);
    for (size_t i = 0; i < e->ntiers; i++)
        e->tiers[i]->drop(w, key, klen);
}

void edge__tier_purge_begin(struct edge *e)
{
    atomic_fetch_add(&e->purges, 1);
}

/* The epoch moves before the count drops, so a lookup that sees no purge running also
 * sees the epoch of every purge that ended. */
void edge__tier_purge_end(struct edge *e)
{
    atomic_fetch_add(&e->purge_epoch, 1);
    atomic_fetch_sub(&e->purges, 1);
}

uint64_t edge__tier_purge_mark(struct edge *e)
{
    return atomic_load(&e->purge_epoch);
}

int edge__tier_may_admit(struct edge *e, uint64_t mark)
{
    return atomic_load(&e->purges) == 0 && atomic_load(&e->purge_epoch) == mark;
}

int edge__tier_admit(struct edge *e, uint64_t mark, const char *key, size_t klen,
                     struct cache_obj *o)
{
    if (!edge__tier_may_admit(e, mark))
        return -ECANCELED;
    int rc = edge__inval_l1_insert(e, key, klen, o);
    /* A purge counts itself before it clears L1: one that the check above missed either
     * finds o in L1 and drops it, or is seen here. */
    if (rc == 0 && !edge__tier_may_admit(e, mark)) {
        l1_remove_obj(e->l1, key, klen, o);
        rc = -ECANCELED;
    }
    return rc;
}

void edge__tier_loop_init(struct edge_worker *w)
{
    for (size_t i = 0; i < w->e->ntiers; i++)
        w->e->tiers[i]->loop_init(w);
}

void edge__tier_loop_fini(struct edge_worker *w)
{
    for (size_t i = w->e->ntiers; i-- > 0;)
        w->e->tiers[i]->loop_fini(w);
}

int edge__tier_open(struct edge *e, const struct edge_tier_ops *const *known, size_t n, char *err,
                    size_t errlen)
{
    int rc;

    for (size_t i = 0; i < n; i++) {
        if ((rc = known[i]->open(e, err, errlen)) < 0)
            return rc;
        if (rc > 0)
            e->tiers[e->ntiers++] = known[i];
    }
    return 0;
}

void edge__tier_close(struct edge *e)
{
    for (size_t i = e->ntiers; i-- > 0;)
        e->tiers[i]->close(e);
    e->ntiers = 0;
}
