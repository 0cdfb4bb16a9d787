/* tests/unit/plan/test_plan_mrc.c: `mlcdn plan`'s sampler, curves and cost choice.
 *
 * The sampler keeps whole objects at the asked rate, deterministically per seed; the
 * fixed-size variant bounds the sample's objects under every seed; a sampled curve stays
 * near the exact one on a generated skewed trace; an L2 of size 0 adds no hits; the choice
 * is the cheapest pair meeting the target (or the best hit ratio when none does); the
 * latency mixture's mean and quantiles are the weighted ones. */
#include <math.h>
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

#define GIB (1024.0 * 1024.0 * 1024.0)

/* Zipf-like (s ~ 1) popularity over nobj keys by inverse-CDF of a power law, sizes 1..64 KiB
 * fixed per key; a small LCG keeps it reproducible. */
static struct plan_trace *gen(uint64_t nreq, uint64_t nobj, unsigned seed)
{
    char *buf = malloc(nreq * 40 + 16), err[256];
    size_t len = 0;
    uint64_t x = seed * 2654435761u + 1;
    struct plan_trace *t = NULL;

    for (uint64_t i = 0; i < nreq; i++) {
        double u;
        uint64_t k;
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        u = (double)(x >> 11) / 9007199254740992.0;
        k = (uint64_t)(pow((double)nobj, u)) - 1; /* density ~ 1/k */
        len += (size_t)sprintf(buf + len, "%llu,k%llu,%llu\n", (unsigned long long)i,
                               (unsigned long long)k,
                               (unsigned long long)(1 + (k * 2654435761u) % 65536));
    }
    assert_int_equal(0, plan_trace_parse_csv(buf, len, "gen", &t, err, sizeof(err)));
    free(buf);
    return t;
}

static void test_sample_keeps_whole_objects_at_the_rate(void **state)
{
    struct plan_trace *t = gen(200000, 50000, 1), *s, *s2, *s3, *all;
    uint64_t *cnt;
    (void)state;

    s = plan_trace_sample(t, 0.1, plan__seed(0));
    /* ~10% of the objects seen: binomial sd ~ sqrt(n * 0.09) */
    assert_true(fabs((double)s->nobj - 0.1 * (double)t->nobj) < 5 * sqrt(0.09 * (double)t->nobj));
    /* every request of a kept object is kept, and none of the others */
    cnt = calloc(t->nobj, sizeof(*cnt));
    for (uint64_t i = 0; i < t->nreq; i++)
        cnt[t->req_obj[i]]++;
    {
        uint64_t want = 0, bytes = 0;
        for (uint64_t i = 0; i < t->nreq; i++)
            if (plan_sample_keep(t->obj_hash[t->req_obj[i]], 0.1, plan__seed(0))) {
                want++;
                bytes += t->req_size[i];
            }
        assert_int_equal(want, s->nreq);
        assert_int_equal(bytes, s->req_bytes);
    }
    for (uint64_t i = 0; i < s->nreq; i++)
        assert_true(s->req_obj[i] < s->nobj);
    free(cnt);

    /* deterministic per seed, different across seeds */
    s2 = plan_trace_sample(t, 0.1, plan__seed(0));
    s3 = plan_trace_sample(t, 0.1, plan__seed(1));
    assert_int_equal(s->nreq, s2->nreq);
    assert_memory_equal(s->req_obj, s2->req_obj, s->nreq * sizeof(*s->req_obj));
    assert_true(s->nobj != s3->nobj || memcmp(s->obj_hash, s3->obj_hash, 8 * s->nobj) != 0);
    /* a rate of 1 keeps everything */
    all = plan_trace_sample(t, 1.0, plan__seed(2));
    assert_int_equal(t->nreq, all->nreq);
    assert_int_equal(t->nobj, all->nobj);
    assert_int_equal(t->unique_bytes, all->unique_bytes);
    plan_trace_free(&s);
    plan_trace_free(&s2);
    plan_trace_free(&s3);
    plan_trace_free(&all);
    plan_trace_free(&t);
}

static void test_fixed_size_bounds_every_seed(void **state)
{
    struct plan_trace *t = gen(100000, 40000, 2);
    double r = plan__fixed_rate(t, 1000, 4);
    uint64_t most = 0;
    (void)state;

    assert_true(r > 0 && r < 1);
    for (int s = 0; s < 4; s++) {
        struct plan_trace *x = plan_trace_sample(t, r, plan__seed(s));
        assert_true(x->nobj <= 1000);
        most = x->nobj > most ? x->nobj : most;
        plan_trace_free(&x);
    }
    assert_true(most >= 990); /* the seed that set the threshold fills it (but for ties) */
    assert_true(plan__fixed_rate(t, t->nobj, 4) == 1.0);
    plan_trace_free(&t);
}

static void test_rates(void **state)
{
    /* Only the counts matter to the rate rules: a trace header without requests will do. */
    struct plan_trace t = {.nreq = 400000, .nobj = 1000, .unique_bytes = 1000 * 100};
    (void)state;

    assert_true(plan__base_rate(&t) == 1.0); /* small enough to replay exactly */
    t.nreq = 10000000;
    t.nobj = 1000000;
    /* 200,000 requests of 10 M is 0.02, but 40,000 objects of 1 M needs 0.04 */
    assert_true(fabs(plan__base_rate(&t) - 0.04) < 1e-12);
    t.nobj = 100000; /* 40,000 objects would need 0.4: above 0.125, so exact */
    assert_true(plan__base_rate(&t) == 1.0);
    t.nobj = 1000000;
    t.unique_bytes = 1000000ull * 100; /* mean object: 100 bytes */
    /* a cache of 10 MB at 0.04 holds 4,000 sampled objects: no raise */
    assert_true(plan__size_rate(&t, 0.04, 10000000) == 0.04);
    assert_false(plan__coarse(&t, 0.04, 10000000));
    /* 2 MB at 0.04 holds 800: doubled to 0.08 (1,600) */
    assert_true(plan__size_rate(&t, 0.04, 2000000) == 0.08);
    assert_true(plan__coarse(&t, 0.04, 2000000));
    assert_false(plan__coarse(&t, 0.08, 2000000));
    /* 1 MB would need 0.16: above 0.125, so exact */
    assert_true(plan__size_rate(&t, 0.04, 1000000) == 1.0);
    assert_false(plan__coarse(&t, 1.0, 100000));
    assert_true(plan__size_rate(&t, 0.04, 0) == 0.04); /* no tier */
    /* a base rate above 0.125 (asked for with --sample) is kept where it suffices */
    assert_true(plan__size_rate(&t, 0.5, 10000000) == 0.5);
    assert_true(plan__size_rate(&t, 0.5, 100000) == 1.0);
}

static void run_grid(const struct plan_trace *t, double rate, int fixed, int seeds,
                     const uint64_t *l1, int nl1, const uint64_t *l2, int nl2, struct plan__mrc *m)
{
    struct plan__mrc_opts o = {.policy = {"default", "default"},
                               .l1 = l1,
                               .nl1 = nl1,
                               .l2 = l2,
                               .nl2 = nl2,
                               .rate = rate,
                               .fixed = fixed,
                               .seeds = seeds,
                               .threads = 2};
    assert_int_equal(0, plan__mrc_run(t, &o, m));
}

static void test_sampled_curve_near_exact(void **state)
{
    struct plan_trace *t = gen(300000, 100000, 3);
    uint64_t l1[4], l2[2] = {0, 0};
    struct plan__mrc ex, sa;
    (void)state;

    for (int i = 0; i < 4; i++)
        l1[i] = t->unique_bytes / 100 * (uint64_t)(2 + 8 * i); /* 2%, 10%, 18%, 26% */
    l2[1] = t->unique_bytes / 10;
    run_grid(t, 1.0, 0, 1, l1, 4, l2, 2, &ex);
    run_grid(t, 0.1, 1, 4, l1, 4, l2, 2, &sa);
    assert_true(ex.sampled_reqs == 0 && sa.sampled_reqs > 0);
    for (size_t i = 0; i < 4; i++) {
        double mean, err, bmean, berr;
        plan__seed_stat(sa.l1_miss, 4, 4, i, sa.l1_rate[i], &mean, &err);
        plan__seed_stat(sa.l1_bmiss, 4, 4, i, sa.l1_rate[i], &bmean, &berr);
        assert_true(sa.l1_rate[i] == 0.1);
        assert_true(fabs(mean - ex.l1_miss[i]) < 0.015);
        assert_true(fabs(bmean - ex.l1_bmiss[i]) < 0.015);
        assert_true(err > 0 && err < 0.02);
        /* an L2 of 0 adds no hit: what reaches the origin is what L1 missed */
        assert_true(ex.o_miss[i * 2] == ex.l1_miss[i]);
        assert_true(ex.o_bmiss[i * 2] == ex.l1_bmiss[i]);
        /* an L2 behind it only removes misses */
        assert_true(ex.o_miss[i * 2 + 1] < ex.l1_miss[i]);
        if (i > 0)
            assert_true(ex.l1_miss[i] < ex.l1_miss[i - 1]);
    }
    plan__mrc_fini(&ex);
    plan__mrc_fini(&sa);
    plan_trace_free(&t);
}

static void test_seed_stat(void **state)
{
    double v[6] = {0.1, 0.9, 0.3, 0.9, 0.2, 0.9}, mean, err; /* 3 seeds x 2 points */
    (void)state;

    plan__seed_stat(v, 3, 2, 0, 0.5, &mean, &err);
    assert_true(fabs(mean - 0.2) < 1e-12);
    assert_true(fabs(err - 2.0 * 0.1 / sqrt(3.0)) < 1e-12); /* sd 0.1 over 3 seeds */
    plan__seed_stat(v, 3, 2, 1, 0.5, &mean, &err);
    assert_true(fabs(mean - 0.9) < 1e-12 && err == 0);
    plan__seed_stat(v, 3, 2, 0, 1.0, &mean, &err); /* exact: the first row only */
    assert_true(fabs(mean - 0.1) < 1e-12 && err == 0);
}

static void test_cost_and_choice(void **state)
{
    struct plan__prices p = {100, 10, 0.02};
    struct plan__cell c[4] = {
        {(uint64_t)GIB, 0, 0.70, 0},                                 /* 100, misses target */
        {(uint64_t)(GIB / 4), 4 * (uint64_t)GIB, 0.82, 0},           /* 25 + 40 = 65 */
        {(uint64_t)(GIB / 2), 2 * (uint64_t)GIB, 0.8 - 1e-13, 0},    /* 50 + 20 = 70 */
        {(uint64_t)(GIB / 8), 0, 0.60, GIB / PLAN_MONTH_S * 1000.0}, /* 12.5 + 20 */
    };
    struct plan__cost k;
    int met;
    (void)state;

    plan__cost_of(&c[3], &p, &k);
    assert_true(fabs(k.l1 - 12.5) < 1e-9 && k.l2 == 0);
    assert_true(fabs(k.origin_gib_month - 1000.0) < 1e-6 && fabs(k.origin - 20.0) < 1e-6);
    assert_true(fabs(k.total - 32.5) < 1e-6);
    /* 0.8 - 1e-13 meets 0.8 (a rounding hair), but costs more than the 0.82 pair */
    assert_int_equal(1, plan__choose(c, 4, &p, 0.8, &met));
    assert_int_equal(1, met);
    c[1].hit = 0.79;
    assert_int_equal(2, plan__choose(c, 4, &p, 0.8, &met));
    assert_int_equal(1, met);
    /* the cheapest that meets a low target */
    assert_int_equal(3, plan__choose(c, 4, &p, 0.5, &met));
    /* nothing meets it: the highest hit ratio, met = 0 */
    assert_int_equal(2, plan__choose(c, 4, &p, 0.95, &met));
    assert_int_equal(0, met);
    /* among equal best hit ratios, the cheaper */
    c[0].hit = c[2].hit;
    assert_int_equal(2, plan__choose(c, 4, &p, 0.95, &met));
}

static void test_latency_mixture(void **state)
{
    double l1 = 0.001, l2[3] = {0.01, 0.02, 0.03}, o = 0.1;
    struct plan__lat lat[PLAN_NTIERS] = {{&l1, 1}, {l2, 3}, {&o, 1}};
    double w[PLAN_NTIERS] = {0.7, 0.2, 0.1};
    (void)state;

    assert_true(fabs(plan__lat_mean(lat, w) - (0.0007 + 0.2 * 0.02 + 0.01)) < 1e-12);
    assert_true(plan__lat_quantile(lat, w, 0.5) == 0.001);
    assert_true(plan__lat_quantile(lat, w, 0.7) == 0.001);
    assert_true(plan__lat_quantile(lat, w, 0.75) == 0.01);
    assert_true(plan__lat_quantile(lat, w, 0.8) == 0.02);
    assert_true(plan__lat_quantile(lat, w, 0.85) == 0.03);
    assert_true(plan__lat_quantile(lat, w, 0.99) == 0.1);
    w[PLAN_TIER_ORIGIN] = 0; /* a tier with no weight never shows */
    w[PLAN_TIER_L1] = 0.8;
    assert_true(plan__lat_quantile(lat, w, 0.99) == 0.03);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sample_keeps_whole_objects_at_the_rate),
        cmocka_unit_test(test_fixed_size_bounds_every_seed),
        cmocka_unit_test(test_rates),
        cmocka_unit_test(test_sampled_curve_near_exact),
        cmocka_unit_test(test_seed_stat),
        cmocka_unit_test(test_cost_and_choice),
        cmocka_unit_test(test_latency_mixture),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
