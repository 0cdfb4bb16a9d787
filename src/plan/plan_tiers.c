/* src/plan/plan_tiers.c: one replay of L1 and L2 coupled as the edge runs them.
 *
 * The edge's rules, read from src/edge (edge_tier.c, edge_tier_l2.c, edge_fetch.c):
 *  - a request looks in L1; a miss looks in L2; a miss there is fetched from the origin;
 *  - an origin fill enters L1 unless its body is larger than --max-mem-object (such a
 *    body is kept in a file, which L1 refuses), through the L1 policy with fill admission
 *    on (cache_policy_set_fill_admit, as l1_new sets it); and every fill is offered to
 *    L2 (stored from L1 in the background, or written straight into L2 when large), whose
 *    policy refuses an object over 1/L2_MAX_OBJECT_DIV of its budget;
 *  - an L2 hit is copied into L1 only when the body is under L1_COPY_MAX and at most
 *    --max-mem-object, and its last --l2-admit-hits L2 hits each came within
 *    max(L1 objects, 16) L2 hits of the previous one (l2_admit, mirrored below with the
 *    same clock: L2 hits of objects small enough to be copied).
 * L2's contents therefore depend on L1's misses and L1's on L2's hits: neither tier can
 * be replayed alone, so every (L1, L2) pair is one replay.
 *
 * Exact replays: L1 is PLAN_L1_SHARDS policies of 1/PLAN_L1_SHARDS of its size each, as
 * the edge's (an object's shard chosen by a hash of its key: the edge's own hash is of its
 * cache key, which the trace does not have, so the split is the same in distribution, not
 * per key). A sampled replay's L1 is one policy (see plan__tiers_replay).
 *
 * Each tier charges an object its body plus its own bookkeeping (L1_CHARGE, L2_CHARGE);
 * not mirrored: the response headers and the key in L1's charge (the trace has neither). */
#include <errno.h>
#include <stdlib.h>

#include "cache/cache_disk.h" /* L2_MAX_OBJECT_DIV */
#include "cache/cache_obj.h"  /* CACHE_BODY_MEMFD_MIN: the edge's L1_COPY_MAX */
#include "cache/cache_mem.h"  /* L1_OBJ_OVERHEAD */
#include "cache/cache_policy.h"
#include "core/mc.h"
#include "plan/plan.h"
#include "plan/plan_int.h"

/* Mirrors l2_admit (edge_tier_l2.c): mark is clock << 8 | hits in a row, 0 = none. */
static int l2_admit(uint64_t *mark, uint64_t *clock, uint64_t window, unsigned need)
{
    uint64_t now = ++*clock, prev = *mark;
    unsigned near = 1;

    if (prev && now - (prev >> 8) <= window)
        near = (unsigned)MC_MIN((prev & 0xff) + 1, 255u);
    if (near < need) {
        *mark = now << 8 | near;
        return 0;
    }
    *mark = now << 8 | 1; /* the count starts again after a copy */
    return 1;
}

/* What each tier charges an object beyond its body: L1 its bookkeeping (the response
 * headers and the key, which the trace does not have, are left out); L2 the file header,
 * one page for any ordinary response (bodies start page-aligned). */
#define L1_CHARGE L1_OBJ_OVERHEAD
#define L2_CHARGE L2_ALIGN

/* Inserts o (sz bytes of body, charged sz + extra) into p; clears cur[] of the victims (and their marks when mark != NULL). */
static int insert(struct cache_policy *p, struct cache_pnode *nodes, uint64_t *cur, uint64_t *mark,
                  uint32_t o, uint64_t h, uint64_t sz, uint64_t extra)
{
    struct cache_pnode *v;

    if (sz == 0 || cache_policy_insert(p, &nodes[o], h, sz + extra) != CACHE_POLICY_ADMITTED)
        return 0;
    cur[o] = sz + extra;
    if (mark)
        mark[o] = 0; /* a new L2 entry: its hit count starts afresh */
    while ((v = cache_policy_victim(p)) != NULL) {
        cur[v - nodes] = 0;
        if (mark)
            mark[v - nodes] = 0;
    }
    return cur[o] != 0;
}

/* The L1 shard of an object (bits of its hash the policies do not take as theirs). */
static unsigned shard(uint64_t h, unsigned nshards)
{
    return (unsigned)((h >> 40) % nshards);
}

static void drain(struct cache_policy **p, unsigned np, const struct plan_trace *t,
                  struct cache_pnode *nodes, uint64_t *cur)
{
    for (uint64_t o = 0; o < t->nobj; o++)
        if (cur[o] != 0)
            cache_policy_remove(p[shard(t->obj_hash[o], np)], &nodes[o]);
    for (unsigned k = 0; k < np; k++)
        MC_ASSERT(cache_policy_used(p[k]) == 0);
}

static uint64_t l1_count(struct cache_policy **p1, unsigned nshards)
{
    uint64_t n = 0;
    for (unsigned k = 0; k < nshards; k++)
        n += cache_policy_count(p1[k]);
    return n;
}

int plan__tiers_replay(const struct plan_trace *t, const struct plan__tiers_cfg *c,
                       struct plan__tiers_result *out)
{
    struct cache_policy *p1[PLAN_L1_SHARDS] = {0}, *p2 = NULL;
    /* A sample's shards would each hold 1/16 of its few objects, and their miss ratios
     * stray far more than the whole cache's: a sampled L1 is one policy (for the caches
     * worth sampling, thousands of objects a shard, the split changes little). */
    unsigned ns = c->rate < 1.0 ? 1 : PLAN_L1_SHARDS;
    struct cache_pnode *n1 = NULL, *n2 = NULL;
    uint64_t *cur1 = NULL, *cur2 = NULL, *mark = NULL, clock = 0;
    uint64_t max_mem = c->max_mem ? c->max_mem : c->l1_full / 16;
    double wfloor = 16.0 * c->rate;
    uint64_t floor_objs = wfloor < 1.0 ? 1 : (uint64_t)(wfloor + 0.5);
    struct plan__tiers_result r = {0};
    int rc;

    for (unsigned k = 0; k < ns; k++) {
        if ((rc = cache_policy_new(c->policy[0], MC_MAX(c->l1 / ns, 1), &p1[k])) != 0)
            goto out;
        cache_policy_set_objective(p1[k], CACHE_POLICY_OBJECTS);
        cache_policy_set_fill_admit(p1[k], 1);
    }
    if ((rc = cache_policy_new(c->policy[1], MC_MAX(c->l2, 1), &p2)) != 0)
        goto out;
    cache_policy_set_objective(p2, CACHE_POLICY_BYTES);
    /* The bound is on an object's own size, which sampling does not scale. */
    cache_policy_set_max_object(p2, MC_MAX(MC_MIN(c->l2_full / L2_MAX_OBJECT_DIV, c->l2), 1));
    n1 = mc_xcalloc(MC_MAX(t->nobj, 1), sizeof(*n1));
    n2 = mc_xcalloc(MC_MAX(t->nobj, 1), sizeof(*n2));
    cur1 = mc_xcalloc(MC_MAX(t->nobj, 1), sizeof(*cur1));
    cur2 = mc_xcalloc(MC_MAX(t->nobj, 1), sizeof(*cur2));
    mark = mc_xcalloc(MC_MAX(t->nobj, 1), sizeof(*mark));
    for (uint64_t i = 0; i < t->nreq; i++) {
        uint32_t o = t->req_obj[i];
        uint64_t sz = t->req_size[i], h = t->obj_hash[o];
        struct cache_policy *s1 = p1[shard(h, ns)];

        if (c->l1 && cur1[o] != 0) {
            if (MC_LIKELY(cur1[o] == sz + L1_CHARGE)) {
                cache_policy_hit(s1, &n1[o]);
                continue;
            }
            cache_policy_remove(s1, &n1[o]); /* a new version replaces the copy */
            cur1[o] = 0;
        }
        if (c->l1_miss_idx)
            c->l1_miss_idx[r.l1_misses] = i;
        r.l1_misses++;
        r.l1_miss_bytes += sz;
        if (c->l2 && cur2[o] != 0) {
            if (MC_LIKELY(cur2[o] == sz + L2_CHARGE)) {
                cache_policy_hit(p2, &n2[o]);
                if (c->l1 && sz < CACHE_BODY_MEMFD_MIN && sz <= max_mem &&
                    l2_admit(&mark[o], &clock, MC_MAX(l1_count(p1, ns), floor_objs),
                             c->admit_hits) &&
                    insert(s1, n1, cur1, NULL, o, h, sz, L1_CHARGE))
                    r.promoted++;
                continue;
            }
            cache_policy_remove(p2, &n2[o]);
            cur2[o] = 0;
            mark[o] = 0;
        }
        r.o_misses++;
        r.o_miss_bytes += sz;
        if (c->l1 && sz <= max_mem)
            insert(s1, n1, cur1, NULL, o, h, sz, L1_CHARGE);
        if (c->l2)
            insert(p2, n2, cur2, mark, o, h, sz, L2_CHARGE);
    }
    r.requests = t->nreq;
    r.bytes = t->req_bytes;
    drain(p1, ns, t, n1, cur1);
    drain(&p2, 1, t, n2, cur2);
    *out = r;
out:
    for (unsigned k = 0; k < PLAN_L1_SHARDS; k++)
        if (p1[k])
            cache_policy_free(&p1[k]);
    if (p2)
        cache_policy_free(&p2);
    free(n1);
    free(n2);
    free(cur1);
    free(cur2);
    free(mark);
    return rc;
}

int plan__tiers_coupled(const struct plan_trace *t, uint64_t max_mem)
{
    for (uint64_t i = 0; i < t->nreq; i++)
        if (t->req_size[i] < CACHE_BODY_MEMFD_MIN && t->req_size[i] <= max_mem)
            return 1;
    return 0;
}
