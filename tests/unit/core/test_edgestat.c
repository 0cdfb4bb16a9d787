/* tests/unit/core/test_edgestat.c: the Prometheus text reader (strict: every malformed line
 * refused with its number; escapes, timestamps, special values) and the edge figures read
 * from it (the registry's own rendering of the edge's metric names read back: tier counts,
 * histograms, quantiles, deltas across a restart, models). */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/edgestat.h"
#include "core/metrics.h"
#include "core/promtext.h"

static void test_parse_ok(void **state)
{
    (void)state;
    static const char t[] = "# HELP a_total Things\n"
                            "# TYPE a_total counter\n"
                            "# a free comment\n"
                            "\n"
                            "a_total{x=\"1\",y=\"q\\\"\\\\\\n\",} 12 1700000000000\n"
                            "b +Inf\n"
                            "c{le=\"0.5\"} -3.5e-2\r\n"
                            "d NaN";
    struct promtext *p;
    char err[128];
    assert_int_equal(promtext_parse(t, sizeof(t) - 1, &p, err, sizeof(err)), 0);
    assert_int_equal(p->n, 4);
    assert_string_equal(p->s[0].name, "a_total");
    assert_int_equal(p->s[0].nlabels, 2);
    assert_string_equal(promtext_label(&p->s[0], "y"), "q\"\\\n");
    assert_true(p->s[0].value == 12);
    assert_true(isinf(p->s[1].value));
    assert_true(p->s[2].value == -0.035);
    assert_true(isnan(p->s[3].value));
    assert_null(promtext_label(&p->s[0], "z"));
    promtext_free(&p);
    assert_null(p);
}

static void test_parse_bad(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "a 1\n<html>\n",
        "a{x=1} 2\n",
        "a{x=\"1\" 2\n",
        "a{x=\"\\t\"} 2\n",
        "a{x=\"1\",x=\"2\"} 3\n",
        "a one\n",
        "a 1 2 3\n",
        "a 1 12x\n",
        "# TYPE a whatever\n",
        "a\n",
        "9a 1\n",
        "a{x=\"1\"}2\n",
        "a inf\n",
        "a 0x10\n",
        "# HELP\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct promtext *p = NULL;
        char err[128] = "";
        assert_int_equal(promtext_parse(bad[i], strlen(bad[i]), &p, err, sizeof(err)), -EINVAL);
        assert_null(p);
        assert_non_null(strstr(err, "metrics line "));
    }
    struct promtext *p;
    char err[128];
    assert_int_equal(promtext_parse("a 1\nb 2\nc{ 3\n", 14, &p, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "line 3"));
}

/* The registry renders the edge's names as the edge registers them (edge_admin.c). */
static void render_edge(struct buf *b, int hits, int misses, uint64_t hit_us, uint64_t miss_us)
{
    struct metrics_counter *l1 = metrics_counter("mlcdn_edge_requests_total", "r",
                                                 "cache=\"HIT\",level=\"L1\"");
    struct metrics_counter *og = metrics_counter("mlcdn_edge_requests_total", "r",
                                                 "cache=\"MISS\",level=\"ORIGIN\"");
    struct metrics_hist *h1 = metrics_hist("mlcdn_edge_request_duration_seconds", "d",
                                           "level=\"L1\"", 1e6, 16, 60000000);
    struct metrics_hist *ho = metrics_hist("mlcdn_edge_request_duration_seconds", "d",
                                           "level=\"ORIGIN\"", 1e6, 16, 60000000);
    struct metrics_counter *bl = metrics_counter("mlcdn_edge_bytes_served_by_level_total", "b",
                                                 "level=\"L1\"");
    struct metrics_counter *bo = metrics_counter("mlcdn_edge_bytes_served_by_level_total", "b",
                                                 "level=\"ORIGIN\"");
    struct metrics_counter *c5 = metrics_counter("mlcdn_edge_responses_total", "s",
                                                 "class=\"5xx\"");
    struct metrics_counter *pr =
        metrics_counter("mlcdn_predict_model_requests_total", "p",
                        "model=\"m\\\"x\",version=\"3\",endpoint=\"predict\",status=\"200\"");
    struct metrics_gauge *mi = metrics_gauge("mlcdn_model_info", "i",
                                             "model=\"m\\\"x\",version=\"3\",sha256=\"ab\"");
    metrics_gauge_set(mi, 1);
    for (int i = 0; i < hits; i++) {
        metrics_counter_add(l1, 1);
        metrics_counter_add(bl, 100);
        metrics_hist_observe(h1, hit_us);
    }
    for (int i = 0; i < misses; i++) {
        metrics_counter_add(og, 1);
        metrics_counter_add(bo, 1000);
        metrics_hist_observe(ho, miss_us);
        metrics_counter_add(pr, 1);
    }
    metrics_counter_add(c5, 1);
    buf_reset(b);
    metrics_render(b);
}

static void test_edge_figures(void **state)
{
    (void)state;
    struct buf b;
    struct edgestat a, c, d, sum;
    char err[128];

    metrics_reset();
    buf_init(&b, 1 << 20);
    render_edge(&b, 90, 10, 100, 20000);
    assert_int_equal(edgestat_parse(b.data, b.len, &a, err, sizeof(err)), 0);
    assert_true(a.requests == 100);
    assert_true(a.tier_requests[EDGESTAT_L1] == 90);
    assert_true(a.tier_requests[EDGESTAT_ORIGIN] == 10);
    assert_true(a.tier_bytes[EDGESTAT_L1] == 9000);
    assert_true(edgestat_bytes_saved(&a) == 9000);
    assert_true(a.responses_5xx == 1);
    assert_true(a.lat[EDGESTAT_L1].count == 90);
    /* The log-linear buckets hold 100 us in (96, 128] us once exported at 2 per octave. */
    double p50 = edgestat_quantile(&a.lat[EDGESTAT_L1], 0.5);
    assert_true(p50 > 64e-6 && p50 <= 128e-6);
    double p99 = edgestat_quantile(&a.lat[EDGESTAT_ORIGIN], 0.99);
    assert_true(p99 > 16e-3 && p99 <= 24.576e-3);
    assert_true(edgestat_quantile(&a.lat[EDGESTAT_L2], 0.5) < 0);
    assert_int_equal(a.nmodels, 1);
    assert_string_equal(a.models[0].name, "m\"x");
    assert_true(a.models[0].version == 3 && a.models[0].loaded == 1);
    assert_true(a.models[0].predictions == 10);

    render_edge(&b, 10, 5, 100, 20000);
    assert_int_equal(edgestat_parse(b.data, b.len, &c, err, sizeof(err)), 0);
    edgestat_delta(&a, &c, &d);
    assert_true(d.requests == 15);
    assert_true(d.tier_requests[EDGESTAT_L1] == 10);
    assert_true(d.lat[EDGESTAT_ORIGIN].count == 5);
    assert_true(d.models[0].predictions == 5);
    /* A restart: the later sample alone. */
    edgestat_delta(&c, &a, &d);
    assert_true(d.requests == a.requests);

    memset(&sum, 0, sizeof(sum));
    edgestat_add(&sum, &a);
    edgestat_add(&sum, &c);
    assert_true(sum.requests == 215);
    assert_true(sum.lat[EDGESTAT_L1].count == 190);
    assert_int_equal(sum.nmodels, 1);

    struct buf j;
    buf_init(&j, 1 << 20);
    assert_int_equal(edgestat_json(&d, 2, 1, &j), 0);
    assert_non_null(strstr(j.data, "\"requests_per_s\":50"));
    assert_non_null(strstr(j.data, "\"buckets\":[["));
    buf_fini(&j);

    assert_int_equal(edgestat_parse("x 1\n", 4, &d, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "not an mlcdn edge"));
    buf_fini(&b);
    metrics_reset();
}

static void test_quantile_interpolates(void **state)
{
    (void)state;
    struct edgestat_hist h = {.n = 3, .le = {1, 2, INFINITY}, .cnt = {0, 10, 0}};
    assert_true(fabs(edgestat_quantile(&h, 0.5) - 1.5) < 1e-9);
    h.cnt[2] = 90;
    assert_true(edgestat_quantile(&h, 0.99) == 2); /* above the last bound: the bound */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_ok),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_edge_figures),
        cmocka_unit_test(test_quantile_interpolates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
