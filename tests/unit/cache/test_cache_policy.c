/* tests/unit/cache/test_cache_policy.c: each policy against hand-computed sequences, the
 * shared accounting (evict-before-link, pending newcomer, capacity changes) and size-aware
 * admission. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cache/cache_policy.h"
#include "cache/cache_policy_int.h"
#include "core/mc.h"

#define NOBJ 4096

struct obj {
    struct cache_pnode pn;
    int key;
    int resident;
};

struct sim {
    struct cache_policy *p;
    struct obj o[NOBJ];
    int evicted[NOBJ]; /* eviction order */
    int nevicted;
};

static uint64_t hash_of(int key)
{
    uint64_t x = (uint64_t)key * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e5ull;
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ull;
    return x ^ (x >> 29);
}

static void sim_new(struct sim *s, const char *policy, uint64_t cap)
{
    memset(s, 0, sizeof(*s));
    assert_int_equal(0, cache_policy_new(policy, cap, &s->p));
    for (int i = 0; i < NOBJ; i++)
        s->o[i].key = i;
}

static void sim_free(struct sim *s)
{
    for (int i = 0; i < NOBJ; i++)
        if (s->o[i].resident)
            cache_policy_remove(s->p, &s->o[i].pn);
    assert_int_equal(0, cache_policy_used(s->p));
    assert_int_equal(0, cache_policy_count(s->p));
    cache_policy_free(&s->p);
    assert_null(s->p);
}

/* Returns 1 on a hit, 0 on a miss (admitted or not). */
static int sim_get(struct sim *s, int key, uint64_t size)
{
    struct obj *o = &s->o[key];
    struct cache_pnode *v;

    if (o->resident) {
        cache_policy_hit(s->p, &o->pn);
        return 1;
    }
    if (cache_policy_insert(s->p, &o->pn, hash_of(key), size) != CACHE_POLICY_ADMITTED)
        return 0;
    o->resident = 1;
    while ((v = cache_policy_victim(s->p)) != NULL) {
        struct obj *e = MC_CONTAINER_OF(v, struct obj, pn);
        assert_true(e->resident);
        e->resident = 0;
        s->evicted[s->nevicted++] = e->key;
    }
    assert_true(cache_policy_used(s->p) <= cache_policy_capacity(s->p));
    return 0;
}

static void run(struct sim *s, const int *keys, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sim_get(s, keys[i], 1);
}

static void expect_resident(struct sim *s, const int *keys, size_t n)
{
    int count = 0;
    for (int i = 0; i < NOBJ; i++)
        count += s->o[i].resident;
    assert_int_equal(n, count);
    assert_int_equal(n, cache_policy_count(s->p));
    for (size_t i = 0; i < n; i++)
        assert_true(s->o[keys[i]].resident);
}

static void expect_evicted(struct sim *s, const int *keys, size_t n)
{
    assert_int_equal(n, s->nevicted);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(keys[i], s->evicted[i]);
}

#define RUN(s, ...) run(s, (const int[]){__VA_ARGS__}, sizeof((int[]){__VA_ARGS__}) / sizeof(int))
#define RESIDENT(s, ...)                                                                           \
    expect_resident(s, (const int[]){__VA_ARGS__}, sizeof((int[]){__VA_ARGS__}) / sizeof(int))
#define EVICTED(s, ...)                                                                            \
    expect_evicted(s, (const int[]){__VA_ARGS__}, sizeof((int[]){__VA_ARGS__}) / sizeof(int))

static struct sim S;

static void test_names(void **state)
{
    const char *const *n = cache_policy_names();
    struct cache_policy *p = NULL;
    int seen_default = 0;

    for (; *n != NULL; n++) {
        assert_int_equal(0, cache_policy_new(*n, 10, &p));
        seen_default |= !strcmp(*n, "default");
        cache_policy_free(&p);
    }
    assert_true(seen_default);
    assert_int_equal(-EINVAL, cache_policy_new("nope", 10, &p));
    assert_null(p);
    assert_int_equal(0, cache_policy_new("default", 10, &p));
    assert_true(cache_policy_hit_concurrent(p));
    cache_policy_free(&p);
    assert_int_equal(0, cache_policy_new("lru", 10, &p));
    assert_false(cache_policy_hit_concurrent(p));
    assert_string_equal("lru", cache_policy_name(p));
    cache_policy_free(&p);
}

static void test_lru(void **state)
{
    sim_new(&S, "lru", 3);
    RUN(&S, 1, 2, 3, 1, 4); /* 1 was used after 2: 2 goes */
    EVICTED(&S, 2);
    RUN(&S, 5);
    EVICTED(&S, 2, 3);
    RESIDENT(&S, 1, 4, 5);
    sim_free(&S);
}

static void test_fifo(void **state)
{
    sim_new(&S, "fifo", 3);
    RUN(&S, 1, 2, 3, 1, 4, 5); /* hits do not matter */
    EVICTED(&S, 1, 2);
    RESIDENT(&S, 3, 4, 5);
    sim_free(&S);
}

static void test_clock(void **state)
{
    sim_new(&S, "clock", 3);
    RUN(&S, 1, 2, 3, 1, 4); /* 1 had its bit: second chance at the head, 2 goes */
    EVICTED(&S, 2);
    RUN(&S, 5); /* order now 3 (tail), 1, 4: 3 goes */
    EVICTED(&S, 2, 3);
    RESIDENT(&S, 1, 4, 5);
    sim_free(&S);
}

static void test_sieve(void **state)
{
    sim_new(&S, "sieve", 3);
    /* list head..tail 3 2 1; 1 visited: hand clears 1, evicts 2, rests on 3 */
    RUN(&S, 1, 2, 3, 1, 4);
    EVICTED(&S, 2);
    /* 1 visited again; the hand is at 3 (unvisited): 3 goes, 1 stays at the tail unmoved */
    RUN(&S, 1, 5);
    EVICTED(&S, 2, 3);
    /* hand moved on to 4 (towards the head), unvisited: 4 goes although 1 is older */
    RUN(&S, 6);
    EVICTED(&S, 2, 3, 4);
    RESIDENT(&S, 1, 5, 6);
    /* the hand rests on 5, next towards the head */
    RUN(&S, 7);
    EVICTED(&S, 2, 3, 4, 5);
    sim_free(&S);
}

static void test_s3fifo(void **state)
{
    sim_new(&S, "s3fifo", 10); /* small 1, main 9, ghost 9 */
    /* Before the first eviction, newcomers that do not fit in small go to main. */
    RUN(&S, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10);
    assert_int_equal(0, S.nevicted);
    RUN(&S, 11); /* small holds 1, unhit: 1 leaves to the ghost */
    EVICTED(&S, 1);
    RUN(&S, 1); /* ghost hit: 1 goes to main; room is made in small (11 leaves) */
    EVICTED(&S, 1, 11);
    RUN(&S, 3, 12); /* main over its share: tail 2 evicted (3 was hit, it would survive) */
    EVICTED(&S, 1, 11, 2);
    RUN(&S, 13); /* main at its share: small's 12 (unhit) goes */
    EVICTED(&S, 1, 11, 2, 12);
    /* 13 hit twice in small: promoted to main; main's tail 3 was hit once and gets one
     * more round, so 4, the oldest unhit node, goes */
    RUN(&S, 13, 13, 14);
    EVICTED(&S, 1, 11, 2, 12, 4);
    RESIDENT(&S, 1, 3, 5, 6, 7, 8, 9, 10, 13, 14);
    sim_free(&S);
}

/* Belongs to every policy: evict-before-link, a newcomer never evicts itself, shrinking
 * the capacity drains, removing works on any node. */
static void test_accounting(void **state)
{
    for (const char *const *n = cache_policy_names(); *n != NULL; n++) {
        sim_new(&S, *n, 100);
        for (int i = 0; i < 1000; i++) {
            int k = (i * 7919) % 300;
            sim_get(&S, k, 1 + (uint64_t)(k % 5));
            if (i % 3 == 0)
                sim_get(&S, k / 2, 1 + (uint64_t)((k / 2) % 5));
        }
        assert_true(cache_policy_used(S.p) <= 100);
        cache_policy_set_capacity(S.p, 40);
        struct cache_pnode *v;
        while ((v = cache_policy_victim(S.p)) != NULL)
            MC_CONTAINER_OF(v, struct obj, pn)->resident = 0;
        assert_true(cache_policy_used(S.p) <= 40);
        uint64_t used = 0, count = 0;
        for (int i = 0; i < NOBJ; i++)
            if (S.o[i].resident) {
                used += 1 + (uint64_t)(i % 5);
                count++;
            }
        assert_int_equal(used, cache_policy_used(S.p));
        assert_int_equal(count, cache_policy_count(S.p));
        /* larger than the whole cache: refused */
        assert_int_equal(CACHE_POLICY_REJECTED,
                         cache_policy_insert(S.p, &S.o[4000].pn, hash_of(4000), 41));
        sim_free(&S);
    }
}

/* One giant object must not flush many small hot ones: a store sets the
 * per-object bound; every policy honours it, and the default refuses it on its own. */
static void test_giant_object(void **state)
{
    for (const char *const *n = cache_policy_names(); *n != NULL; n++) {
        int hits = 0;
        sim_new(&S, *n, 1000);
        cache_policy_set_max_object(S.p, 1000 / 8);
        for (int r = 0; r < 4; r++)
            for (int k = 0; k < 80; k++)
                sim_get(&S, k, 10);
        assert_int_equal(0, sim_get(&S, 2000, 900));
        assert_false(S.o[2000].resident);
        for (int k = 0; k < 80; k++)
            hits += sim_get(&S, k, 10);
        assert_int_equal(80, hits);
        sim_free(&S);
    }
}

static void test_default_refuses_giant(void **state)
{
    int hits = 0;

    sim_new(&S, "default", 1000); /* no store bound set */
    for (int r = 0; r < 4; r++)
        for (int k = 0; k < 80; k++)
            sim_get(&S, k, 10);
    sim_get(&S, 2000, 900);
    for (int k = 0; k < 80; k++)
        hits += sim_get(&S, k, 10);
    assert_true(hits >= 70);
    sim_free(&S);
}

static void test_objective_api(void **state)
{
    enum cache_policy_objective o = CACHE_POLICY_BYTES;

    assert_int_equal(0, cache_policy_objective_parse("objects", &o));
    assert_int_equal(CACHE_POLICY_OBJECTS, o);
    assert_int_equal(0, cache_policy_objective_parse("bytes", &o));
    assert_int_equal(CACHE_POLICY_BYTES, o);
    assert_int_equal(-EINVAL, cache_policy_objective_parse("Bytes", &o));
    assert_int_equal(-EINVAL, cache_policy_objective_parse("", &o));
    assert_int_equal(-EINVAL, cache_policy_objective_parse(NULL, &o));
    assert_int_equal(CACHE_POLICY_BYTES, o);
    assert_string_equal("objects", cache_policy_objective_name(CACHE_POLICY_OBJECTS));
    assert_string_equal("bytes", cache_policy_objective_name(CACHE_POLICY_BYTES));
    for (const char *const *n = cache_policy_names(); *n != NULL; n++) {
        sim_new(&S, *n, 100);
        assert_int_equal(CACHE_POLICY_OBJECTS, cache_policy_objective(S.p));
        cache_policy_set_objective(S.p, CACHE_POLICY_BYTES);
        assert_int_equal(CACHE_POLICY_BYTES, cache_policy_objective(S.p));
        sim_free(&S);
    }
}

/* Count-min: counts add up, saturate at 15, and halve once ten times the sized-for
 * number of objects were counted. */
static void test_sketch(void **state)
{
    struct cache__sketch sk;
    uint64_t h = hash_of(7);

    cache__sketch_init(&sk, 64);
    assert_int_equal(0, cache__sketch_estimate(&sk, h));
    for (int i = 0; i < 6; i++)
        assert_int_equal(i + 1, cache__sketch_add(&sk, h, 1));
    assert_int_equal(6, cache__sketch_estimate(&sk, h));
    assert_true(cache__sketch_estimate(&sk, hash_of(8)) <= 1);
    cache__sketch_add(&sk, h, 40);
    assert_int_equal(CACHE__SKETCH_MAX, cache__sketch_estimate(&sk, h));
    /* 46 counted so far; 640 in all triggers the halving. */
    for (int k = 1000; k < 1000 + 640 - 46; k++)
        cache__sketch_add(&sk, hash_of(k), 1);
    assert_in_range(cache__sketch_estimate(&sk, h), 7, 8);
    /* Growing starts over. */
    cache__sketch_reserve(&sk, 4096);
    assert_int_equal(0, cache__sketch_estimate(&sk, h));
    cache__sketch_fini(&sk);
}

/* Objective `objects`: once the cache is full, a first-seen object much larger than the
 * typical request is not worth the room of the several objects it would displace; asked
 * for often enough it gets in. Objective `bytes` takes it at once. */
static void test_default_objective_weighs_size(void **state)
{
    enum cache_policy_objective objs[] = {CACHE_POLICY_OBJECTS, CACHE_POLICY_BYTES};

    for (int i = 0; i < 2; i++) {
        int tries = 0;
        sim_new(&S, "default", 10000);
        cache_policy_set_objective(S.p, objs[i]);
        for (int r = 0; r < 3; r++)
            for (int k = 0; k < 200; k++)
                sim_get(&S, k, 50);
        assert_int_equal(10000, cache_policy_used(S.p));
        sim_get(&S, 1000, 400); /* 8 x the mean request, under the small-queue target */
        assert_int_equal(objs[i] == CACHE_POLICY_BYTES, S.o[1000].resident);
        while (!S.o[1001].resident && tries < 20) {
            sim_get(&S, 1001, 400);
            tries++;
        }
        assert_true(S.o[1001].resident);
        if (objs[i] == CACHE_POLICY_OBJECTS)
            assert_in_range(tries, 2, 9);
        else
            assert_int_equal(1, tries);
        sim_free(&S);
    }
}

/* Objective `objects`: a round in main costs a node size / mean request size hits of CLOCK
 * credit. A 300-unit object hit twice (credit for two rounds of a typical 50-unit object)
 * has not paid for one round of its size and is the first to go; under objective `bytes`
 * a round costs one hit whatever the size, so it outlives the 50-unit objects hit once. */
static void test_default_round_costs_size(void **state)
{
    enum cache_policy_objective objs[] = {CACHE_POLICY_OBJECTS, CACHE_POLICY_BYTES};
    struct cache_pnode *v;

    for (int i = 0; i < 2; i++) {
        sim_new(&S, "default", 10000);
        cache_policy_set_objective(S.p, objs[i]);
        for (int k = 0; k < 20; k++) /* the small queue's 10% */
            sim_get(&S, k, 50);
        sim_get(&S, 1000, 300); /* small is full: the rest fill main, oldest first */
        for (int k = 20; k < 194; k++)
            sim_get(&S, k, 50);
        assert_int_equal(10000, cache_policy_used(S.p));
        assert_int_equal(0, S.nevicted);
        sim_get(&S, 1000, 300);
        sim_get(&S, 1000, 300);
        for (int k = 20; k < 194; k++)
            sim_get(&S, k, 50);
        /* Main is now over its share: the next victim comes from its CLOCK. */
        cache_policy_set_capacity(S.p, 9950);
        while ((v = cache_policy_victim(S.p)) != NULL) {
            struct obj *e = MC_CONTAINER_OF(v, struct obj, pn);
            e->resident = 0;
            S.evicted[S.nevicted++] = e->key;
        }
        if (objs[i] == CACHE_POLICY_OBJECTS) {
            EVICTED(&S, 1000);
        } else {
            EVICTED(&S, 20);
            assert_true(S.o[1000].resident);
        }
        sim_free(&S);
    }
}

static int evicted_at(const struct sim *s, int key)
{
    for (int i = 0; i < s->nevicted; i++)
        if (s->evicted[i] == key)
            return i;
    return -1;
}

/* A full 10000-unit default store under `objective`: 200 objects of 50 units requested
 * `rounds` times (the small queue's 10 %, then main), then 100 first-seen ones of 40 units,
 * so probation holds first-seen objects and the mean request is between 40 and 50. */
static void probation_warm(enum cache_policy_objective objective, int rounds)
{
    sim_new(&S, "default", 10000);
    cache_policy_set_objective(S.p, objective);
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < 200; k++)
            sim_get(&S, k, 50);
    for (int k = 200; k < 300; k++)
        sim_get(&S, k, 40);
}

/* Objective `objects`: a lap of probation costs a newcomer size / mean request size of the
 * hit that brought it, so a first-seen object a fifth of the mean is given five laps to be
 * asked for again, and one of about the mean size one. Under objective `bytes` every
 * newcomer has one lap: the small one, in first, is out first. */
static void test_default_probation_costs_size(void **state)
{
    enum cache_policy_objective objs[] = {CACHE_POLICY_OBJECTS, CACHE_POLICY_BYTES};

    (void)state;
    for (int i = 0; i < 2; i++) {
        probation_warm(objs[i], 3);
        sim_get(&S, 1000, 10);
        sim_get(&S, 1001, 40);
        int k = 2000;
        while (S.o[1000].resident && k < NOBJ)
            sim_get(&S, k++, 40);
        int small = evicted_at(&S, 1000), large = evicted_at(&S, 1001);
        assert_true(small >= 0);
        if (objs[i] == CACHE_POLICY_OBJECTS) {
            /* A lap of the small queue is 25 of these 40-unit objects: four more laps. */
            assert_true(large >= 0 && small - large >= 3 * 25);
        } else {
            assert_true(large < 0 && S.o[1001].resident);
        }
        sim_free(&S);
    }
}

/* Objective `objects`: hits on probation promote a node once they are worth two average
 * requests for its size, so one hit promotes an object a fifth of the mean. It then stays
 * in main, which nothing here makes evict (the 50-unit objects were requested once: none
 * is promoted, and main keeps its share). Under objective `bytes` it takes two hits: one
 * leaves it to end its lap. */
static void test_default_promotion_by_density(void **state)
{
    enum cache_policy_objective objs[] = {CACHE_POLICY_OBJECTS, CACHE_POLICY_BYTES};

    (void)state;
    for (int i = 0; i < 2; i++) {
        probation_warm(objs[i], 1);
        sim_get(&S, 1000, 10);
        assert_int_equal(1, sim_get(&S, 1000, 10));
        for (int k = 2000; k < 2300; k++) /* 12 laps of probation */
            sim_get(&S, k, 40);
        assert_int_equal(objs[i] == CACHE_POLICY_OBJECTS, S.o[1000].resident);
        sim_free(&S);
    }
}

/* A ghost hit moves the split by its step times the depth weight (1 - depth / capacity,
 * in 1/256, the depth counting the entry's own units), and the fractions add up: asserts
 * the small target moved by delta / 256 units, give or take the fraction carried in. */
static void assert_moved(uint64_t before, int64_t delta)
{
    int64_t moved = (int64_t)cache__mlcdn_small_target(S.p) - (int64_t)before;

    if (moved < delta / 256 - 1 || moved > delta / 256 + 1)
        fail_msg("the split moved by %lld units, expected %lld / 256 = %lld", (long long)moved,
                 (long long)delta, (long long)(delta / 256));
}

static int64_t weight(uint64_t depth, uint64_t cap)
{
    return depth >= cap ? 0 : (int64_t)((cap - depth) * 256 / cap);
}

/* The split follows the ghost hits near each ghost's head: a 100-object cache whose
 * probation dropped 110 objects unhit (remembered: ghost S holds 1.25 x the capacity).
 * The oldest, 110 deep, could not have been kept by any split: it goes to main, the split
 * unmoved. The newest ones move it by 1 - depth / 100 each. */
static void test_default_ghost_hit_weighted_by_depth(void **state)
{
    int64_t delta = 0;

    (void)state;
    sim_new(&S, "default", 100);
    for (int i = 0; i < 100; i++) /* keys 0-9 on probation (10 %), the rest fill main */
        sim_get(&S, i, 1);
    assert_int_equal(10, cache__mlcdn_small_target(S.p));
    for (int i = 100; i < 210; i++) /* push keys 0-9, then 100-199, off probation unhit */
        sim_get(&S, i, 1);
    assert_false(S.o[0].resident);
    sim_get(&S, 0, 1); /* 110 deep: into main (pushing key 200 off probation), no step */
    assert_true(S.o[0].resident);
    assert_int_equal(10, cache__mlcdn_small_target(S.p));
    for (int i = 199; i >= 150; i--) { /* 2 to 51 deep: each worth a fraction of a unit */
        sim_get(&S, i, 1);
        assert_true(S.o[i].resident);
        delta += weight((uint64_t)(201 - i), 100);
    }
    assert_int_equal(10 + delta / 256, cache__mlcdn_small_target(S.p));
    assert_true(delta / 256 < 50); /* fewer units than hits */
    sim_free(&S);
}

/* Objective `bytes`: a ghost hit's step is its size, but at most twice the mean size of
 * the ghost hits so far (this one included), so one giant coming back to main cannot take
 * the small queue to its floor. After 100 returns of 50-unit objects, the 20000-unit
 * giant's return (20000 deep: it was the last to leave main) moves the split by
 * 2 x (100 x 50 + 20000) / 101 units, weighted by its depth. */
static void test_default_bytes_step_bounded(void **state)
{
    const int giant = 2000;
    uint64_t before;
    int k = 2001;

    (void)state;
    sim_new(&S, "default", 100000);
    cache_policy_set_objective(S.p, CACHE_POLICY_BYTES);
    for (int i = 0; i < 2000; i++) /* 200 on probation (10 %), 1800 fill main */
        sim_get(&S, i, 50);
    assert_int_equal(10000, cache__mlcdn_small_target(S.p));
    sim_get(&S, giant, 20000); /* larger than the small target: only remembered */
    assert_false(S.o[giant].resident);
    sim_get(&S, giant, 20000); /* asked again: into main, the split unmoved */
    assert_true(S.o[giant].resident);
    assert_int_equal(10000, cache__mlcdn_small_target(S.p));
    /* Objects hit twice on probation go to main and push its oldest out, the giant last. */
    while (S.o[giant].resident && k < NOBJ) {
        for (int r = 0; r < 3; r++)
            sim_get(&S, k, 100);
        k++;
    }
    assert_false(S.o[giant].resident);
    assert_int_equal(10000, cache__mlcdn_small_target(S.p));
    for (int i = 1900; i < 2000; i++) /* dropped by main before the giant: the split shrinks */
        sim_get(&S, i, 50);
    before = cache__mlcdn_small_target(S.p);
    assert_true(before < 10000 && before > 10000 - 100 * 50);
    sim_get(&S, giant, 20000);
    assert_true(S.o[giant].resident);
    assert_moved(before, -(int64_t)(2 * (100 * 50 + 20000) / 101) * weight(20000, 100000));
    sim_free(&S);
}

/* Under objective `bytes` the mean that bounds a step holds every ghost hit once, those of
 * ghost S as those of ghost M: after 100 ghost-S hits of 50 units, a ghost-M hit of an
 * 8000-unit object (8000 deep) moves the split by 2 x (100 x 50 + 8000) / 101, weighted. */
static void test_default_bytes_step_mean_counts_ghost_s(void **state)
{
    const int big = 4000;
    uint64_t before;
    int64_t delta = 0;
    int k = 2100;

    (void)state;
    sim_new(&S, "default", 100000);
    cache_policy_set_objective(S.p, CACHE_POLICY_BYTES);
    for (int i = 0; i < 2000; i++) /* keys 0-199 on probation (10 %), the rest fill main */
        sim_get(&S, i, 50);
    for (int i = 2000; i < 2100; i++) /* newcomers push keys 0-99 off probation, unhit */
        sim_get(&S, i, 50);
    assert_false(S.o[0].resident);
    before = cache__mlcdn_small_target(S.p);
    for (int i = 0; i < 100; i++) { /* each back from ghost S, (100 - i) x 50 deep */
        sim_get(&S, i, 50);
        delta += 50 * weight((uint64_t)(100 - i) * 50, 100000);
    }
    assert_int_equal(before + delta / 256, cache__mlcdn_small_target(S.p));
    for (int r = 0; r < 3; r++) /* on probation, hit twice: promoted, with no credit */
        sim_get(&S, big, 8000);
    /* Objects hit twice on probation go to main and push its oldest out, the big one too. */
    while (S.o[big].resident && k < big) {
        for (int r = 0; r < 3; r++)
            sim_get(&S, k, 100);
        k++;
    }
    assert_false(S.o[big].resident);
    before = cache__mlcdn_small_target(S.p);
    sim_get(&S, big, 8000);
    assert_true(S.o[big].resident);
    assert_moved(before, -(int64_t)(2 * (100 * 50 + 8000) / 101) * weight(8000, 100000));
    sim_free(&S);
}

/* The split's bounds leave each queue 1 % of the capacity and at least one unit: in a
 * 13-object cache where every object dropped from probation is asked for again at once
 * (a ghost-S hit each time), the small queue grows to 12 objects, never to all 13 (main
 * empty would leave one FIFO). */
static void test_default_tiny_cache_keeps_main(void **state)
{
    static int asked_again[NOBJ];
    int key, seen;

    (void)state;
    memset(asked_again, 0, sizeof(asked_again));
    sim_new(&S, "default", 13);
    for (key = 0; key < 13; key++) { /* the fill: one on probation, twelve in main */
        sim_get(&S, key, 1);
        asked_again[key] = 1;
    }
    seen = S.nevicted;
    for (; key < 400; key++) {
        sim_get(&S, key, 1);
        while (seen < S.nevicted) {
            int e = S.evicted[seen++];
            if (!asked_again[e]) { /* dropped from probation unhit: back at once */
                asked_again[e] = 1;
                sim_get(&S, e, 1);
            }
            assert_true(cache__mlcdn_small_target(S.p) <= 12);
        }
    }
    assert_int_equal(12, cache__mlcdn_small_target(S.p));
    sim_free(&S);
}

/* W-TinyLFU: a scan of objects asked for once (three times the cache) passes through the
 * 1 % window and loses every contest for the main cache to the objects asked for five
 * times each, which stay (LRU, on the same sequence, keeps none of them). The cache is
 * filled first, so the sketch, sized with the resident count, has stopped growing
 * (growing forgets counts). */
static void test_wtinylfu_scan_resistant(void **state)
{
    const char *pols[] = {"wtinylfu", "lru"};

    (void)state;
    for (int i = 0; i < 2; i++) {
        int hits = 0;

        sim_new(&S, pols[i], 100);
        for (int k = 3000; k < 3100; k++)
            sim_get(&S, k, 1);
        for (int r = 0; r < 5; r++)
            for (int k = 0; k < 50; k++)
                sim_get(&S, k, 1);
        for (int k = 1000; k < 1300; k++)
            sim_get(&S, k, 1);
        for (int k = 0; k < 50; k++)
            hits += sim_get(&S, k, 1);
        if (i == 0)
            assert_int_equal(50, hits);
        else
            assert_int_equal(0, hits);
        sim_free(&S);
    }
}

/* cache_policy_meta_bytes(): the node of each resident object, plus what the policy keeps
 * beside the nodes (ghosts, sketch), which stays once the nodes are gone. */
static void test_meta_bytes(void **state)
{
    (void)state;
    for (const char *const *n = cache_policy_names(); *n; n++) {
        int side = !strcmp(*n, "s3fifo") || !strcmp(*n, "default") || !strcmp(*n, "mlcdn") ||
                   !strcmp(*n, "wtinylfu");

        sim_new(&S, *n, 100);
        assert_int_equal(side ? 1 : 0, cache_policy_meta_bytes(S.p) > 0);
        for (int k = 0; k < 300; k++)
            sim_get(&S, k % 150, 1);
        uint64_t count = cache_policy_count(S.p), meta = cache_policy_meta_bytes(S.p);
        assert_true(count > 0);
        if (side)
            assert_true(meta > count * sizeof(struct cache_pnode));
        else
            assert_int_equal(count * sizeof(struct cache_pnode), meta);
        uint64_t beside = meta - count * sizeof(struct cache_pnode);
        for (int k = 0; k < NOBJ; k++)
            if (S.o[k].resident) {
                cache_policy_remove(S.p, &S.o[k].pn);
                S.o[k].resident = 0;
            }
        assert_int_equal(beside, cache_policy_meta_bytes(S.p));
        sim_free(&S);
    }
}

/* A store that fills (nothing evicted yet) may admit what the policy refuses when it fits
 * in the free space (L1: a 3 MB file in a fresh 256M L1); alone, the policy refuses a
 * first-seen giant, and after the first eviction the store keeps to the policy. */
static void test_fill_admit_while_there_is_room(void **state)
{
    (void)state;
    for (int on = 0; on <= 1; on++) {
        sim_new(&S, "default", 1000);
        cache_policy_set_fill_admit(S.p, on);
        for (int k = 0; k < 20; k++)
            sim_get(&S, k, 10);
        sim_get(&S, 2000, 500); /* 200 + 500 <= 1000, larger than the small target */
        assert_int_equal(on, S.o[2000].resident);
        if (on) {
            for (int k = 100; k < 140; k++) /* fill past the capacity: evictions */
                sim_get(&S, k, 10);
            assert_true(S.nevicted > 0);
            sim_get(&S, 2001, 150);
            assert_false(S.o[2001].resident);
        }
        sim_free(&S);
    }
}

/* cache_policy_judge() decides before the object is complete, with the side effects of
 * an insert, and cache_policy_insert_judged() keeps to it at the final size. */
static void test_judge_then_insert(void **state)
{
    struct cache_pnode *v;

    (void)state;
    sim_new(&S, "default", 1000);
    for (int r = 0; r < 2; r++)
        for (int k = 0; k < 80; k++)
            sim_get(&S, k, 10);
    /* A first-seen giant in a full store: refused, as cache_policy_insert() would. */
    assert_int_equal(CACHE_POLICY_REJECTED,
                     cache_policy_judge(S.p, &S.o[3000].pn, hash_of(3000), 500));
    /* Over the store bound: refused whatever the policy. */
    assert_int_equal(CACHE_POLICY_REJECTED,
                     cache_policy_judge(S.p, &S.o[3001].pn, hash_of(3001), 1001));
    /* A small one is admitted; its final size may differ from the announced one. */
    assert_int_equal(CACHE_POLICY_ADMITTED,
                     cache_policy_judge(S.p, &S.o[3002].pn, hash_of(3002), 10));
    assert_int_equal(CACHE_POLICY_ADMITTED, cache_policy_insert_judged(S.p, &S.o[3002].pn, 12));
    S.o[3002].resident = 1;
    while ((v = cache_policy_victim(S.p)) != NULL)
        MC_CONTAINER_OF(v, struct obj, pn)->resident = 0;
    assert_true(cache_policy_used(S.p) <= 1000);
    /* An admitted node past the store bound at its final size is refused after all. */
    assert_int_equal(CACHE_POLICY_ADMITTED,
                     cache_policy_judge(S.p, &S.o[3003].pn, hash_of(3003), 10));
    assert_int_equal(CACHE_POLICY_REJECTED, cache_policy_insert_judged(S.p, &S.o[3003].pn, 1001));
    sim_free(&S);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_lru),
        cmocka_unit_test(test_fifo),
        cmocka_unit_test(test_clock),
        cmocka_unit_test(test_sieve),
        cmocka_unit_test(test_s3fifo),
        cmocka_unit_test(test_accounting),
        cmocka_unit_test(test_giant_object),
        cmocka_unit_test(test_default_refuses_giant),
        cmocka_unit_test(test_objective_api),
        cmocka_unit_test(test_sketch),
        cmocka_unit_test(test_default_objective_weighs_size),
        cmocka_unit_test(test_default_round_costs_size),
        cmocka_unit_test(test_default_probation_costs_size),
        cmocka_unit_test(test_default_promotion_by_density),
        cmocka_unit_test(test_default_ghost_hit_weighted_by_depth),
        cmocka_unit_test(test_default_bytes_step_bounded),
        cmocka_unit_test(test_default_bytes_step_mean_counts_ghost_s),
        cmocka_unit_test(test_default_tiny_cache_keeps_main),
        cmocka_unit_test(test_wtinylfu_scan_resistant),
        cmocka_unit_test(test_meta_bytes),

        cmocka_unit_test(test_fill_admit_while_there_is_room),
        cmocka_unit_test(test_judge_then_insert),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
