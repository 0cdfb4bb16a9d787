/* tests/unit/edge/test_edge_origin.c: the per-upstream circuit breaker, driven with an
 * explicit clock: opening after N consecutive failures (a success in between resets the
 * count), skipping during the cool-down, one probe in half-open (its success closes, its
 * failure opens again, a cancelled or silent probe hands the slot on), late reports of
 * requests sent before the trip, the disabled breaker, independent upstreams, the metrics
 * (state gauge, transitions, short-circuits, escaped labels) and many threads racing for
 * the probe slot (exactly one wins). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/metrics.h"
#include "edge/edge_origin.h"

#define A "http://a.test:1"
#define B "http://b.test:2"

static struct edge_origins *mk(unsigned failures)
{
    static const char *const urls[] = {A, B};
    metrics_reset();
    return edge__origins_new(urls, 2, failures, 1000, 500);
}

/* The value of one series in the rendered metrics, -1 when absent. */
static double metric(const char *series)
{
    struct buf b;
    double v = -1;
    buf_init(&b, 1u << 20);
    assert_int_equal(metrics_render(&b), 0);
    const char *p = b.data;
    size_t n = strlen(series);
    while (p && (p = strstr(p, series)) != NULL) {
        if ((p == b.data || p[-1] == '\n') && p[n] == ' ') {
            v = strtod(p + n + 1, NULL);
            break;
        }
        p += n;
    }
    buf_fini(&b);
    return v;
}

static void test_opens_after_consecutive_failures(void **state)
{
    struct edge_origins *os = mk(3);
    (void)state;

    assert_int_equal(edge__origin_allow(os, 0, 0), EDGE_ORIGIN_PASS);
    edge__origin_failure(os, 0, 0, "timeout", 10);
    edge__origin_failure(os, 0, 0, "timeout", 20);
    edge__origin_success(os, 0); /* an answer in between: the count starts again */
    edge__origin_failure(os, 0, 0, "timeout", 30);
    edge__origin_failure(os, 0, 0, "timeout", 40);
    assert_int_equal(edge__origin_state(os, 0), EDGE_ORIGIN_CLOSED);
    assert_int_equal(edge__origin_allow(os, 0, 40), EDGE_ORIGIN_PASS);
    edge__origin_failure(os, 0, 0, "connect", 50);
    assert_int_equal(edge__origin_state(os, 0), EDGE_ORIGIN_OPEN);
    assert_true(metric("mlcdn_edge_origin_breaker_state{origin=\"" A "\"}") == 1);
    assert_true(
        metric("mlcdn_edge_origin_breaker_transitions_total{origin=\"" A "\",to=\"open\"}") == 1);
    /* The other upstream is not affected. */
    assert_int_equal(edge__origin_allow(os, 1, 60), EDGE_ORIGIN_PASS);
    assert_int_equal(edge__origin_state(os, 1), EDGE_ORIGIN_CLOSED);
    edge__origins_free(&os);
    assert_null(os);
}

static void test_cooldown_then_one_probe(void **state)
{
    struct edge_origins *os = mk(1);
    (void)state;

    edge__origin_failure(os, 0, 0, "timeout", 100); /* open until 1100 */
    assert_int_equal(edge__origin_allow(os, 0, 101), EDGE_ORIGIN_SKIP);
    assert_int_equal(edge__origin_allow(os, 0, 1099), EDGE_ORIGIN_SKIP);
    edge__origin_skipped(os, 0);
    edge__origin_skipped(os, 0);
    assert_true(metric("mlcdn_edge_origin_short_circuited_total{origin=\"" A "\"}") == 2);
    assert_int_equal(edge__origin_allow(os, 0, 1100), EDGE_ORIGIN_PROBE);
    assert_int_equal(edge__origin_state(os, 0), EDGE_ORIGIN_HALF);
    assert_true(metric("mlcdn_edge_origin_breaker_state{origin=\"" A "\"}") == 2);
    /* While the probe runs, everyone else skips. */
    assert_int_equal(edge__origin_allow(os, 0, 1101), EDGE_ORIGIN_SKIP);
    assert_int_equal(edge__origin_allow(os, 0, 1599), EDGE_ORIGIN_SKIP);
    edge__origin_success(os, 0);
    assert_int_equal(edge__origin_state(os, 0), EDGE_ORIGIN_CLOSED);
    assert_int_equal(edge__origin_allow(os, 0, 1600), EDGE_ORIGIN_PASS);
    assert_true(metric("mlcdn_edge_origin_breaker_state{origin=\"" A "\"}") == 0);
    assert_true(metric("mlcdn_edge_origin_breaker_transitions_total{origin=\"" A
                       "\",to=\"half_open\"}") == 1);
    assert_true(
        metric("mlcdn_edge_origin_breaker_transitions_total{origin=\"" A "\",to=\"closed\"}") == 1);
    edge__origins_free(&os);
}

static void test_failed_probe_opens_again(void **state)
{
    struct edge_origins *os = mk(2);
    (void)state;

    edge__origin_failure(os, 0, 0, "timeout", 0);
    edge__origin_failure(os, 0, 0, "timeout", 0);
    assert_int_equal(edge__origin_allow(os, 0, 1000), EDGE_ORIGIN_PROBE);
    /* A request sent before the trip failing late is not the probe: nothing changes. */
    edge__origin_failure(os, 0, 0, "timeout", 1200);
    assert_int_equal(edge__origin_state(os, 0), EDGE_ORIGIN_HALF);
    edge__origin_failure(os, 0, 1, "timeout", 1300); /* the probe: open until 2300 */
    assert_int_equal(edge__origin_state(os, 0), EDGE_ORIGIN_OPEN);
    assert_int_equal(edge__origin_allow(os, 0, 2299), EDGE_ORIGIN_SKIP);
    assert_int_equal(edge__origin_allow(os, 0, 2300), EDGE_ORIGIN_PROBE);
    assert_true(
        metric("mlcdn_edge_origin_breaker_transitions_total{origin=\"" A "\",to=\"open\"}") == 2);
    edge__origins_free(&os);
}

static void test_late_reports_while_open(void **state)
{
    struct edge_origins *os = mk(1);
    (void)state;

    edge__origin_failure(os, 0, 0, "timeout", 0); /* open until 1000 */
    /* Answers and failures of requests sent before the trip leave the cool-down alone. */
    edge__origin_success(os, 0);
    edge__origin_failure(os, 0, 0, "timeout", 900);
    assert_int_equal(edge__origin_state(os, 0), EDGE_ORIGIN_OPEN);
    assert_int_equal(edge__origin_allow(os, 0, 1000), EDGE_ORIGIN_PROBE);
    edge__origins_free(&os);
}

static void test_probe_without_verdict_hands_the_slot_on(void **state)
{
    struct edge_origins *os = mk(1);
    (void)state;

    edge__origin_failure(os, 0, 0, "timeout", 0);
    assert_int_equal(edge__origin_allow(os, 0, 1000), EDGE_ORIGIN_PROBE);
    assert_int_equal(edge__origin_allow(os, 0, 1001), EDGE_ORIGIN_SKIP);
    edge__origin_probe_end(os, 0); /* cancelled: the next request probes */
    assert_int_equal(edge__origin_allow(os, 0, 1002), EDGE_ORIGIN_PROBE);
    /* A probe that never reports is replaced after probe_ms (500). */
    assert_int_equal(edge__origin_allow(os, 0, 1501), EDGE_ORIGIN_SKIP);
    assert_int_equal(edge__origin_allow(os, 0, 1502), EDGE_ORIGIN_PROBE);
    assert_int_equal(edge__origin_state(os, 0), EDGE_ORIGIN_HALF);
    /* Still one transition to half-open: the slot moved, the state did not. */
    assert_true(metric("mlcdn_edge_origin_breaker_transitions_total{origin=\"" A
                       "\",to=\"half_open\"}") == 1);
    edge__origins_free(&os);
}

static void test_disabled_breaker_always_passes(void **state)
{
    struct edge_origins *os = mk(0);
    (void)state;

    for (int i = 0; i < 100; i++)
        edge__origin_failure(os, 0, 0, "timeout", (uint64_t)i);
    assert_int_equal(edge__origin_state(os, 0), EDGE_ORIGIN_CLOSED);
    assert_int_equal(edge__origin_allow(os, 0, 100), EDGE_ORIGIN_PASS);
    edge__origins_free(&os);
}

static void test_message_and_label_escaping(void **state)
{
    static const char *const urls[] = {"http://q.test/a\"b\\c"};
    struct edge_origins *os;
    (void)state;

    metrics_reset();
    os = edge__origins_new(urls, 1, 1, 1000, 500);
    assert_non_null(strstr(edge__origin_down_msg(os, 0), "http://q.test/a\"b\\c"));
    assert_non_null(strstr(edge__origin_down_msg(os, 0), "circuit breaker open"));
    assert_true(metric("mlcdn_edge_origin_breaker_state{origin=\"http://q.test/a\\\"b\\\\c\"}") ==
                0);
    edge__origins_free(&os);
}

struct race {
    struct edge_origins *os;
    pthread_barrier_t *bar;
    int probes;
};

static void *racer(void *arg)
{
    struct race *r = arg;
    pthread_barrier_wait(r->bar);
    for (int i = 0; i < 1000; i++)
        if (edge__origin_allow(r->os, 0, 5000) == EDGE_ORIGIN_PROBE)
            r->probes++;
    return NULL;
}

static void test_one_probe_among_racing_threads(void **state)
{
    struct edge_origins *os = mk(1);
    pthread_barrier_t bar;
    pthread_t th[8];
    struct race rs[8];
    int total = 0;
    (void)state;

    edge__origin_failure(os, 0, 0, "timeout", 0);
    pthread_barrier_init(&bar, NULL, 8);
    for (int i = 0; i < 8; i++) {
        rs[i] = (struct race){os, &bar, 0};
        assert_int_equal(pthread_create(&th[i], NULL, racer, &rs[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        total += rs[i].probes;
    }
    pthread_barrier_destroy(&bar);
    assert_int_equal(total, 1);
    edge__origins_free(&os);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opens_after_consecutive_failures),
        cmocka_unit_test(test_cooldown_then_one_probe),
        cmocka_unit_test(test_failed_probe_opens_again),
        cmocka_unit_test(test_late_reports_while_open),
        cmocka_unit_test(test_probe_without_verdict_hands_the_slot_on),
        cmocka_unit_test(test_disabled_breaker_always_passes),
        cmocka_unit_test(test_message_and_label_escaping),
        cmocka_unit_test(test_one_probe_among_racing_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
