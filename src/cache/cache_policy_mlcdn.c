/* src/cache/cache_policy_mlcdn.c: "mlcdn", the default policy: adaptive S3-FIFO with a
 * frequency sketch and an objective.
 *
 * S3-FIFO's structure (a small probation FIFO, a main FIFO with a 2-bit CLOCK, a ghost of
 * hashes) with the split between the two queues tuned online, ARC-style, from two ghosts:
 *   - ghost S remembers objects the small queue dropped unhit (1.25 x capacity in units);
 *     a newcomer found there was re-requested just after the probation window closed:
 *     the small queue was too short, so its target grows by the newcomer's size;
 *   - ghost M remembers objects the main queue dropped (1 x capacity); a newcomer found
 *     there shows main was too short, so the small target shrinks by its size.
 *   Each step is weighted by how near its ghost's head the hit was, 1 - depth / capacity
 *   (depth_weight()): one more unit of room for a queue would have kept only the hits at
 *   its ghost's head. Under objective `bytes` a step is at most twice the mean ghost hit
 *   (ghost_step()).
 * The small target stays within [1%, 99%] of the capacity, leaving each queue at least
 * one unit (starts at 10%). A newcomer found in either ghost goes straight to main.
 * Small-queue eviction promotes a node hit twice while on probation; main eviction
 * re-queues a node whose CLOCK credit (the hits it took, at most 3 held) pays for another
 * round, and takes the price from it.
 *
 * Frequency: a TinyLFU count-min sketch (cache_policy_sketch.c) counts every request: a
 * miss when it is offered, a hit when the policy next looks at the node (eviction scan,
 * removal), so cache_policy_hit() stays one relaxed bump of the node's counter.
 *
 * Objective `objects` (the default) on mixed sizes: a newcomer that would displace resident
 * objects is admitted only if its expected hits per unit of space are at least those of an
 * average request: sketch count x mean requested size >= its size. A first-seen object
 * larger than the mean request would take the room of several typical objects for one
 * expected hit; each further request it gets raises its count, so a popular large object
 * still gets in. With unit sizes the rule always admits. The same measure prices every
 * other decision, in hits of an average request: a lap of the probation queue costs a
 * newcomer size / mean request size of the one hit that brought it (a small object gets
 * several laps to be asked for again, a large one one); hits on probation promote it once
 * they are worth two average requests for its size (two hits always do); a round in main
 * costs size / mean hits of CLOCK credit, so a large object must be hit in proportion to
 * the room it holds to stay, and a small one may stay several rounds on one hit. With unit
 * sizes, or under objective `bytes`, every price is one hit: S3-FIFO's probation and
 * CLOCK.
 *
 * Size-aware admission (both objectives): a first-seen object larger than the small target
 * is not stored (it would flush the probation queue) but remembered in ghost S, tagged;
 * asked for again while remembered, it enters main (no adaptation: it never was on
 * probation). Stores add a hard bound with cache_policy_set_max_object().
 *
 * Hits only bump the node's counter (relaxed atomics); everything else runs under the
 * caller's lock. Rationale and measurements: docs/internals/eviction.md. */
#include "cache/cache_policy_int.h"

#define Q_SMALL 1
#define Q_MAIN 2
#define F_TO_MAIN 1

#define PROMOTE_HITS 2 /* hits on probation that earn main */
#define FREQ_CAP 3     /* main's CLOCK credit, in hits: S3-FIFO's 2 bits */
#define CREDIT_HIT 16  /* credit (main's CLOCK, probation laps) is kept in 1/16 hits (spare) */
#define STEP_MEANS 2   /* objective `bytes`: a ghost hit moves the split by at most 2 mean ones */
#define WEIGHT_ONE 256 /* a ghost hit's weight by depth, and the split below one unit, in 1/256 */

struct mlcdn {
    struct cache_policy base;
    struct cache__list small, main;
    struct cache__ghost ghost_s, ghost_m;
    uint64_t small_target; /* adapted; in the store's unit */
    int64_t target_frac;   /* weighted steps not yet a whole unit, in 1/WEIGHT_ONE units */
    uint64_t small_min, small_max;
    int has_evicted;
    struct cache__sketch sk;
    uint64_t req_units, req_n; /* requested units and requests (halved now and then) */
    uint64_t gh_units, gh_n;   /* objective `bytes`: units and count of the ghost hits that
                                  moved the split (halved now and then) */
};

static void bounds(struct mlcdn *m)
{
    uint64_t cap = m->base.capacity;

    /* Each queue keeps 1 % of the capacity and at least one unit: 99 % of a 13-object
     * cache rounded to all of it, and the policy, main empty, became one FIFO. */
    m->small_min = MC_MAX(cap / 100, 1);
    m->small_max = cap > 2 * m->small_min ? cap - m->small_min : m->small_min;
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
    cache__sketch_init(&m->sk, 64);
    bounds(m);
}

static void ml_fini(struct cache_policy *p)
{
    struct mlcdn *m = (struct mlcdn *)p;

    cache__ghost_fini(&m->ghost_s);
    cache__ghost_fini(&m->ghost_m);
    cache__sketch_fini(&m->sk);
}

/* Counts a request of `size` units in the mean request size; the sums are halved once
 * they hold 2^20 requests, so the mean follows the traffic. */
static void count_request(struct mlcdn *m, uint64_t size, uint32_t n)
{
    m->req_units += size * n;
    m->req_n += n;
    if (m->req_n >= 1u << 20) {
        m->req_units /= 2;
        m->req_n /= 2;
    }
}

/* Folds the hits a node took since the policy last looked into the sketch and the mean. */
static void fold(struct mlcdn *m, struct cache__pn *v, uint32_t f)
{
    if (f == 0)
        return;
    cache__sketch_add(&m->sk, v->hash, f);
    count_request(m, v->size, f);
}

/* Objective `objects`: 1 if the newcomer, seen `est` times lately, is worth the room it
 * takes from what it would displace (see the file comment). */
static int worth_its_room(const struct mlcdn *m, const struct cache__pn *n, uint32_t est)
{
    const struct cache_policy *p = &m->base;

    /* A saturated count is as popular as the sketch can tell: a large object that hot
     * gets in whatever its size. */
    if (p->objective != CACHE_POLICY_OBJECTS || p->used + n->size <= p->capacity || m->req_n == 0 ||
        est >= CACHE__SKETCH_MAX)
        return 1;
    /* est x (req_units / req_n) >= size, without the division. */
    return (uint64_t)est * m->req_units >= n->size * m->req_n;
}

/* How far a ghost hit of `size` units moves the split. Its size, the room it needed;
 * under objective `bytes` the size is also the event's weight (that many units missed),
 * and sizes are heavy-tailed, so a walk of size-weighted steps is driven by its few
 * largest hits (on epa_http three hits of a tenth of the cache each take the split from
 * 33 % of the cache to its floor, and it never comes back). There a step is bounded by
 * STEP_MEANS times the mean size of the ghost hits so far, this one included: no one
 * event outweighs two typical ones. Under objective `objects` each ghost hit weighs one
 * object hit whatever its size, so the step is the room it needed, unbounded. With unit
 * sizes the mean is 1 and the bound is never reached. */
static uint64_t ghost_step(struct mlcdn *m, uint64_t size)
{
    if (m->base.objective != CACHE_POLICY_BYTES)
        return size;
    m->gh_units += size;
    m->gh_n++;
    if (m->gh_n >= 1u << 20) { /* as the request mean: it follows the traffic */
        m->gh_units /= 2;
        m->gh_n /= 2;
    }
    return MC_MIN(size, MC_MAX(STEP_MEANS * m->gh_units / m->gh_n, 1));
}

/* The weight, in 1/WEIGHT_ONE, of a ghost hit `depth` units into its ghost (the units the
 * ghost took since the entry went in, its own included: the room the queue would have
 * needed to keep it). Giving one more unit of room to the queue a ghost follows would
 * have kept its hits at depth 0, and taking one from the other queue would have lost
 * those of the other ghost at depth 0: the split's gradient is the density of each
 * ghost's hits near its head, not their count over the whole ghost. The weight falls
 * linearly from 1 at the head to 0 at one capacity, the depth no split could reach. */
static uint64_t depth_weight(const struct mlcdn *m, uint64_t depth)
{
    uint64_t cap = m->base.capacity;

    return depth >= cap ? 0 : (cap - depth) * WEIGHT_ONE / cap;
}

/* Moves the small target by delta / WEIGHT_ONE units within its bounds; what is below a
 * unit waits for the next step (a 13-object cache would round every weighted step away). */
static void move_split(struct mlcdn *m, int64_t delta)
{
    int64_t u;

    m->target_frac += delta;
    u = m->target_frac / WEIGHT_ONE;
    if (u == 0)
        return;
    m->target_frac -= u * WEIGHT_ONE;
    if (u > 0)
        m->small_target = MC_MIN(m->small_target + (uint64_t)u, m->small_max);
    else if (m->small_target > m->small_min + (uint64_t)-u)
        m->small_target -= (uint64_t)-u;
    else
        m->small_target = m->small_min;
}

static enum cache_policy_admit ml_admit(struct cache_policy *p, struct cache__pn *n)
{
    struct mlcdn *m = (struct mlcdn *)p;
    int tag = 0;
    uint32_t est;
    uint64_t at;

    count_request(m, n->size, 1);
    est = cache__sketch_add(&m->sk, n->hash, 1);
    est = MC_MAX(est, 1u); /* at least this request, even if the sketch just aged */
    if (!worth_its_room(m, n, est))
        return CACHE_POLICY_REJECTED;
    /* cache__ghost_take() returns 1 + the hit's depth. */
    if ((at = cache__ghost_take(&m->ghost_s, n->hash, &tag)) != 0) {
        n->flags |= F_TO_MAIN;
        if (!tag)
            move_split(m, (int64_t)(ghost_step(m, n->size) * depth_weight(m, at - 1)));
    } else if ((at = cache__ghost_take(&m->ghost_m, n->hash, &tag)) != 0) {
        n->flags |= F_TO_MAIN;
        move_split(m, -(int64_t)(ghost_step(m, n->size) * depth_weight(m, at - 1)));
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
    n->spare = 0;
    /* Until the first eviction there is nothing to protect: newcomers that do not fit in
     * the small queue fill main, as libCacheSim's S3-FIFO does. */
    if ((n->flags & F_TO_MAIN) || (!m->has_evicted && m->small.used >= m->small_target)) {
        n->q = Q_MAIN;
        cache__list_push(&m->main, n);
    } else {
        /* Probation credit: the one request that brought it (see evict_small()). */
        n->q = Q_SMALL;
        n->spare = CREDIT_HIT;
        cache__list_push(&m->small, n);
    }
    n->flags = 0;
    if (p->count > m->ghost_s.live_max) {
        cache__ghost_reserve(&m->ghost_s, p->count + p->count / 2);
        cache__ghost_reserve(&m->ghost_m, p->count + p->count / 2);
        cache__sketch_reserve(&m->sk, p->count + p->count / 2);
    }
}

/* The mean requested size under objective `objects` on mixed sizes, the unit the laps of
 * probation and the rounds in main are priced in (see evict_small(), evict_main()); 0 when
 * each costs one hit whatever the size (objective `bytes`, or nothing counted yet). */
static uint64_t round_unit(const struct mlcdn *m)
{
    if (m->base.objective != CACHE_POLICY_OBJECTS || m->req_n == 0)
        return 0;
    return MC_MAX(m->req_units / m->req_n, 1);
}

static struct cache__pn *evict_main(struct mlcdn *m)
{
    struct cache__pn *v;
    uint64_t credit, cost, unit = round_unit(m);
    uint32_t f;

    /* A round holds size units for a lap of the queue; under objective `objects` the hits
     * that pay for it should be those of as many average requests as it takes room, so it
     * costs size / mean requested size hits of credit (the density of worth_its_room(),
     * applied to staying): an object a quarter of the mean stays four rounds on one hit.
     * Else, and with unit sizes, one hit: S3-FIFO's CLOCK. Terminates: every pass takes
     * at least 1/CREDIT_HIT of a hit from the node it re-queues (a hit racing with the
     * scan can add some back, bounded by the concurrent hits). */
    while ((v = cache__list_oldest(&m->main)) != NULL) {
        cache__list_del(&m->main, v);
        f = cache__freq(v);
        cache__freq_set(v, 0);
        fold(m, v, f);
        credit = MC_MIN(v->spare + (uint64_t)f * CREDIT_HIT, FREQ_CAP * CREDIT_HIT);
        cost = unit == 0 ? CREDIT_HIT : MC_MAX(v->size * CREDIT_HIT / unit, 1);
        if (credit < cost) {
            v->q = 0;
            cache__ghost_add(&m->ghost_m, v->hash, v->size, 0);
            return v;
        }
        v->spare = (uint16_t)(credit - cost);
        cache__list_push(&m->main, v);
    }
    return NULL;
}

/* Probation's end for the oldest nodes of the small queue: promotion, another lap, or out
 * (to ghost S). Under objective `objects` on mixed sizes both are priced like a round in
 * main, in hits of an average request (unit = the mean request): a node is promoted once
 * its hits here cover two average requests for its size (PROMOTE_HITS hits always do),
 * and a lap costs size / unit of the one hit it came in with, so a newcomer a quarter of
 * the mean has four laps to be asked for again and one of the mean or larger has one, as
 * every newcomer has with unit = 0. Hits taken on probation count across laps; they are
 * folded into the sketch when the node leaves. Terminates: a lap takes at least
 * 1/CREDIT_HIT of the node's credit. */
static struct cache__pn *evict_small(struct mlcdn *m)
{
    struct cache__pn *v;
    uint64_t unit = round_unit(m), lap;
    uint32_t f;

    while ((v = cache__list_oldest(&m->small)) != NULL) {
        cache__list_del(&m->small, v);
        f = cache__freq(v);
        if (f >= PROMOTE_HITS || (unit != 0 && f >= 1 && (uint64_t)f * unit >= 2 * v->size)) {
            cache__freq_set(v, 0);
            fold(m, v, f);
            v->spare = 0;
            v->q = Q_MAIN;
            cache__list_push(&m->main, v);
            continue;
        }
        lap = unit == 0 ? CREDIT_HIT : MC_MAX(v->size * CREDIT_HIT / unit, 1);
        if (v->spare >= 2 * lap) {
            v->spare = (uint16_t)(v->spare - lap);
            cache__list_push(&m->small, v);
            continue;
        }
        cache__freq_set(v, 0);
        fold(m, v, f);
        cache__ghost_add(&m->ghost_s, v->hash, v->size, 0);
        v->q = 0;
        return v;
    }
    return evict_main(m);
}

static struct cache__pn *ml_evict(struct cache_policy *p)
{
    struct mlcdn *m = (struct mlcdn *)p;

    m->has_evicted = 1;
    if (m->main.used > p->capacity - m->small_target || cache__list_empty(&m->small))
        return evict_main(m);
    return evict_small(m);
}

static void ml_hit(struct cache_policy *p, struct cache__pn *n)
{
    cache__freq_bump(n, CACHE__FREQ_MAX);
}

static void ml_unlink(struct cache_policy *p, struct cache__pn *n)
{
    struct mlcdn *m = (struct mlcdn *)p;

    cache__list_del(n->q == Q_SMALL ? &m->small : &m->main, n);
    fold(m, n, cache__freq(n));
    n->q = 0;
}

static void ml_resize(struct cache_policy *p)
{
    bounds((struct mlcdn *)p);
}

static uint64_t ml_side_bytes(const struct cache_policy *p)
{
    const struct mlcdn *m = (const struct mlcdn *)p;

    return cache__ghost_bytes(&m->ghost_s) + cache__ghost_bytes(&m->ghost_m) +
           cache__sketch_bytes(&m->sk);
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
    .side_bytes = ml_side_bytes,
};

/* Read-only view for stats and tests: the current small-queue target. */
uint64_t cache__mlcdn_small_target(const struct cache_policy *p)
{
    return ((const struct mlcdn *)p)->small_target;
}
