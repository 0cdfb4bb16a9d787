/* tests/unit/plan/test_plan_tiers.c: the coupled replay of L1 and L2 (plan_tiers.c).
 *
 * Against a reference written here with LRU in both tiers (arrays and linear scans, no
 * code shared with src/cache): L1 in 16 shards of 1/16 of its size, each object charged
 * its body + 512 bytes in L1 and + 4096 in L2; every origin fill enters L1 unless over
 * --max-mem-object, and L2; an L2 hit is copied into L1 on its admit_hits-th hit in a row,
 * each within max(L1 objects, 16) L2 hits of the previous one, and only under 64 KiB. The
 * counts must be equal. Also: without possible promotions L1 does not depend on L2. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "plan/plan.h"
#include "plan/plan_int.h"

static struct plan_trace *gen(uint64_t nreq, uint64_t nobj, uint64_t maxsz, unsigned seed)
{
    char *buf = malloc(nreq * 40 + 16), err[256];
    size_t len = 0;
    uint64_t x = seed * 2654435761u + 1;
    struct plan_trace *t = NULL;

    for (uint64_t i = 0; i < nreq; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t u = x >> 33, k = (u % nobj) * (u % 7 == 0 ? 1 : (u % 5)) % nobj; /* skewed */
        len += (size_t)sprintf(buf + len, "%llu,k%llu,%llu\n", (unsigned long long)i,
                               (unsigned long long)k,
                               (unsigned long long)(1000 + (k * 2654435761u) % maxsz));
    }
    assert_int_equal(0, plan_trace_parse_csv(buf, len, "gen", &t, err, sizeof(err)));
    free(buf);
    return t;
}

struct ref_lru {
    uint64_t cap, used, *last, *charge; /* per object: last use (0: absent), charge */
    uint64_t maxobj;
};

static void ref_evict(struct ref_lru *c, uint64_t nobj, const int *member, uint64_t *mark)
{
    while (c->used > c->cap) {
        uint64_t v = UINT64_MAX, best = UINT64_MAX;
        for (uint64_t o = 0; o < nobj; o++)
            if ((!member || member[o]) && c->last[o] && c->last[o] < best)
                best = c->last[o], v = o;
        c->used -= c->charge[v];
        c->last[v] = 0;
        if (mark)
            mark[v] = 0;
    }
}

static int ref_insert(struct ref_lru *c, uint64_t o, uint64_t charge, uint64_t now, uint64_t nobj,
                      const int *member, uint64_t *mark)
{
    if (charge > c->maxobj)
        return 0;
    c->last[o] = now;
    c->charge[o] = charge;
    c->used += charge;
    if (mark)
        mark[o] = 0;
    ref_evict(c, nobj, member, mark);
    return c->last[o] != 0;
}

static void reference(const struct plan_trace *t, uint64_t l1, uint64_t l2, uint64_t max_mem,
                      unsigned need, struct plan__tiers_result *r)
{
    uint64_t n = t->nobj, clock = 0, now = 0;
    struct ref_lru s1[16], c2 = {l2, 0, calloc(n, 8), calloc(n, 8), l2 / 8};
    int *member[16];
    unsigned *sh = calloc(n, sizeof(*sh));
    uint64_t *mark = calloc(n, 8);

    memset(r, 0, sizeof(*r));
    for (unsigned k = 0; k < 16; k++) {
        s1[k] = (struct ref_lru){l1 / 16, 0, calloc(n, 8), calloc(n, 8), l1 / 16};
        member[k] = calloc(n, sizeof(int));
    }
    for (uint64_t o = 0; o < n; o++) {
        sh[o] = (unsigned)((t->obj_hash[o] >> 40) % 16);
        member[sh[o]][o] = 1;
    }
    for (uint64_t i = 0; i < t->nreq; i++) {
        uint64_t o = t->req_obj[i], sz = t->req_size[i];
        struct ref_lru *a = &s1[sh[o]];
        now++;
        if (a->last[o]) {
            a->last[o] = now;
            continue;
        }
        r->l1_misses++;
        if (c2.last[o]) {
            c2.last[o] = now;
            if (sz < 65536 && sz <= max_mem) {
                uint64_t cnt = 0, tick = ++clock, near = 1, window;
                for (unsigned k = 0; k < 16; k++)
                    for (uint64_t x = 0; x < n; x++)
                        cnt += s1[k].last[x] != 0;
                window = cnt > 16 ? cnt : 16;
                if (mark[o] && tick - (mark[o] >> 8) <= window)
                    near = (mark[o] & 0xff) + 1;
                if (near < need) {
                    mark[o] = tick << 8 | near;
                } else {
                    mark[o] = tick << 8 | 1;
                    r->promoted += ref_insert(a, o, sz + 512, now, n, member[sh[o]], NULL);
                }
            }
            continue;
        }
        r->o_misses++;
        if (sz <= max_mem)
            ref_insert(a, o, sz + 512, now, n, member[sh[o]], NULL);
        ref_insert(&c2, o, sz + 4096, now, n, NULL, mark);
    }
    for (unsigned k = 0; k < 16; k++) {
        free(s1[k].last);
        free(s1[k].charge);
        free(member[k]);
    }
    free(c2.last);
    free(c2.charge);
    free(sh);
    free(mark);
}

static void test_coupled_replay_equals_the_reference(void **state)
{
    struct plan_trace *t = gen(6000, 300, 30000, 3);
    static const uint64_t l1s[] = {160000, 640000, 2000000}, l2s[] = {300000, 1500000};
    static const unsigned needs[] = {1, 2, 3};
    uint64_t promoted = 0;
    (void)state;

    for (size_t a = 0; a < 3; a++)
        for (size_t b = 0; b < 2; b++)
            for (size_t k = 0; k < 3; k++) {
                struct plan__tiers_cfg c = {.policy = {"lru", "lru"},
                                            .l1 = l1s[a],
                                            .l2 = l2s[b],
                                            .l1_full = l1s[a],
                                            .l2_full = l2s[b],
                                            .admit_hits = needs[k],
                                            .rate = 1.0};
                struct plan__tiers_result got, want;
                reference(t, l1s[a], l2s[b], l1s[a] / 16, needs[k], &want);
                assert_int_equal(0, plan__tiers_replay(t, &c, &got));
                assert_int_equal(want.l1_misses, got.l1_misses);
                assert_int_equal(want.o_misses, got.o_misses);
                assert_int_equal(want.promoted, got.promoted);
                promoted += got.promoted;
            }
    assert_true(promoted > 100); /* the rule the test is about did run */
    plan_trace_free(&t);
}

static void test_without_promotions_l1_ignores_l2(void **state)
{
    struct plan_trace *t = gen(4000, 200, 30000, 5);
    struct plan__tiers_cfg c = {.policy = {"default", "sieve"},
                                .l1 = 400000,
                                .l1_full = 400000,
                                .max_mem = 999, /* below every size: nothing enters L1 */
                                .admit_hits = 2,
                                .rate = 1.0};
    struct plan__tiers_result alone, with;
    (void)state;

    assert_int_equal(0, plan__tiers_coupled(t, 999));
    assert_int_equal(1, plan__tiers_coupled(t, 400000 / 16));
    assert_int_equal(0, plan__tiers_replay(t, &c, &alone));
    assert_int_equal(alone.l1_misses, t->nreq);
    c.l2 = c.l2_full = 2000000;
    assert_int_equal(0, plan__tiers_replay(t, &c, &with));
    assert_int_equal(with.l1_misses, t->nreq);
    assert_true(with.o_misses < t->nreq);
    assert_int_equal(0, with.promoted);
    plan_trace_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_coupled_replay_equals_the_reference),
        cmocka_unit_test(test_without_promotions_l1_ignores_l2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
