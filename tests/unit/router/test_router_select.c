/* tests/unit/router/test_router_select.c: the best-edge choice (router_select.h, docs/router.md
 * "Choosing the edge"): distance, load and hit-ratio weights, eligibility, capacity spill-over,
 * fail-open, ties, and the hysteresis of the published view (router_view_publish). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "router/router_select.h"

#define DEADBAND 0.05

static const struct router_weights W = {0.5, 0.3, 0.2};

/* n IPv4 edges, all up, same load (0.2) and hit ratio (0.8), capacity 1. */
static void edges(struct router_edge_cfg *cfg, struct router_edge_view *view, size_t n)
{
    memset(cfg, 0, n * sizeof(*cfg));
    memset(view, 0, n * sizeof(*view));
    for (size_t i = 0; i < n; i++) {
        snprintf(cfg[i].name, sizeof(cfg[i].name), "e%zu", i);
        cfg[i].family = 4;
        cfg[i].capacity = 1.0;
        router_view_publish(&view[i], 1, 0.2, 0.8, 1.0, DEADBAND, 1);
    }
}

static void place(struct router_edge_cfg *e, double lat, double lon)
{
    e->lat = lat;
    e->lon = lon;
}

static float score_from(double lat, double lon, const struct router_edge_cfg *e)
{
    return (float)router_distance_score(router_haversine_km(lat, lon, e->lat, e->lon));
}

static void test_haversine_known_distances(void **st)
{
    /* One degree of latitude along a meridian: 2 pi R / 360 = 111.195 km. */
    assert_true(fabs(router_haversine_km(0, 0, 1, 0) - 111.195) < 0.01);
    /* One degree of longitude at 60 degrees north is about half that (cos 60 = 0.5). */
    assert_true(fabs(router_haversine_km(60, 0, 60, 1) - 55.59) < 0.05);
    /* Symmetric, and the pole-to-pole distance is half the circumference. */
    assert_true(fabs(router_haversine_km(35.68, 139.69, 51.51, -0.13) -
                     router_haversine_km(51.51, -0.13, 35.68, 139.69)) < 1e-9);
    assert_true(fabs(router_haversine_km(90, 0, -90, 0) - ROUTER_HALF_CIRCUMFERENCE_KM) < 1);
    /* Across the antimeridian: 179E to 179W is 2 degrees of longitude, not 358. */
    assert_true(fabs(router_haversine_km(0, 179, 0, -179) - 2 * 111.195) < 0.05);
    /* Distance score: linear in km, clamped to [0, 1]. */
    assert_true(fabs(router_distance_score(ROUTER_HALF_CIRCUMFERENCE_KM / 2) - 0.5) < 1e-12);
    assert_true(router_distance_score(ROUTER_HALF_CIRCUMFERENCE_KM) == 0);
    assert_true(router_distance_score(-5) == 1);
}

static void test_nearest_wins(void **st)
{
    struct router_edge_cfg cfg[4];
    struct router_edge_view view[4];
    float dist[4];
    struct router_score sc[4];

    edges(cfg, view, 4);
    place(&cfg[0], 51.51, -0.13);  /* London */
    place(&cfg[1], 50.11, 8.68);   /* Frankfurt */
    place(&cfg[2], 35.68, 139.69); /* Tokyo */
    place(&cfg[3], 40.71, -74.01); /* New York */
    /* A client in Paris: London (~344 km) before Frankfurt (~480 km). */
    for (int i = 0; i < 4; i++)
        dist[i] = score_from(48.86, 2.35, &cfg[i]);
    assert_int_equal(router_select(cfg, view, 4, dist, &W, 4, sc), 0);
    assert_true(sc[0].distance_km < sc[1].distance_km);
    assert_true(fabs(sc[0].distance_km - 344) < 5);
    /* A client in Munich: Frankfurt. In Osaka: Tokyo. In Boston: New York. */
    for (int i = 0; i < 4; i++)
        dist[i] = score_from(48.14, 11.58, &cfg[i]);
    assert_int_equal(router_select(cfg, view, 4, dist, &W, 4, NULL), 1);
    for (int i = 0; i < 4; i++)
        dist[i] = score_from(34.69, 135.50, &cfg[i]);
    assert_int_equal(router_select(cfg, view, 4, dist, &W, 4, NULL), 2);
    for (int i = 0; i < 4; i++)
        dist[i] = score_from(42.36, -71.06, &cfg[i]);
    assert_int_equal(router_select(cfg, view, 4, dist, &W, 4, sc), 3);
    /* The documented score, part by part. */
    for (int i = 0; i < 4; i++) {
        assert_true(fabs(sc[i].total - (0.5 * dist[i] + 0.3 * (1 - 0.2) + 0.2 * 0.8)) < 1e-9);
        assert_true(sc[i].candidate && sc[i].eligible && !sc[i].over);
    }
}

static void test_load_weight(void **st)
{
    struct router_edge_cfg cfg[2];
    struct router_edge_view view[2];
    float dist[2] = {0.95f, 0.90f}; /* edge 0 nearer by 0.05 * 0.5 = 0.025 of score */

    edges(cfg, view, 2);
    assert_int_equal(router_select(cfg, view, 2, dist, &W, 4, NULL), 0);
    /* 0.1 more load costs 0.03 > 0.025: the farther, idler edge wins. */
    router_view_publish(&view[0], 1, 0.3, 0.8, 1.0, DEADBAND, 0);
    assert_int_equal(router_select(cfg, view, 2, dist, &W, 4, NULL), 1);
    /* Without a load weight, distance decides again. */
    struct router_weights nol = {0.5, 0, 0.2};
    assert_int_equal(router_select(cfg, view, 2, dist, &nol, 4, NULL), 0);
    /* With only a load weight, the idlest edge wins whatever the distance. */
    struct router_weights onlyl = {0, 1, 0};
    float far[2] = {1.0f, 0.0f};
    assert_int_equal(router_select(cfg, view, 2, far, &onlyl, 4, NULL), 1);
}

static void test_hit_weight(void **st)
{
    struct router_edge_cfg cfg[2];
    struct router_edge_view view[2];
    float dist[2] = {0.95f, 0.90f};

    edges(cfg, view, 2);
    /* Edge 1's hit ratio 0.8 -> 1.0 is worth 0.04 > 0.025. */
    router_view_publish(&view[1], 1, 0.2, 1.0, 1.0, DEADBAND, 0);
    assert_int_equal(router_select(cfg, view, 2, dist, &W, 4, NULL), 1);
    /* 0.8 -> 0.9 is worth only 0.02: the nearer edge keeps it. */
    router_view_publish(&view[1], 1, 0.2, 0.9, 1.0, DEADBAND, 0);
    assert_int_equal(router_select(cfg, view, 2, dist, &W, 4, NULL), 0);
}

static void test_ineligible_skipped(void **st)
{
    struct router_edge_cfg cfg[3];
    struct router_edge_view view[3];
    float dist[3] = {0.99f, 0.5f, 0.7f};

    edges(cfg, view, 3);
    assert_int_equal(router_select(cfg, view, 3, dist, &W, 4, NULL), 0);
    /* Down (or draining: the same flag) the best edge is never chosen while another is up,
     * whatever its score: the next best by score is. */
    router_view_publish(&view[0], 0, 0.0, 1.0, 1.0, DEADBAND, 0);
    assert_int_equal(router_select(cfg, view, 3, dist, &W, 4, NULL), 2);
    router_view_publish(&view[2], 0, 0.2, 0.8, 1.0, DEADBAND, 0);
    assert_int_equal(router_select(cfg, view, 3, dist, &W, 4, NULL), 1);
    /* Back up: chosen again. */
    router_view_publish(&view[0], 1, 0.2, 0.8, 1.0, DEADBAND, 0);
    assert_int_equal(router_select(cfg, view, 3, dist, &W, 4, NULL), 0);
}

static void test_no_eligible_fails_open(void **st)
{
    struct router_edge_cfg cfg[3];
    struct router_edge_view view[3];
    float dist[3] = {0.5f, 0.9f, 0.7f};

    edges(cfg, view, 3);
    for (int i = 0; i < 3; i++)
        router_view_publish(&view[i], 0, 0.2, 0.8, 1.0, DEADBAND, 0);
    /* No edge is up: answer by score over all edges rather than nothing. */
    assert_int_equal(router_select(cfg, view, 3, dist, &W, 4, NULL), 1);
    /* One edge up, even a poor and over-capacity one, beats every down edge. */
    router_view_publish(&view[0], 1, 1.0, 0.0, 0.5, DEADBAND, 0);
    assert_int_equal(router_select(cfg, view, 3, dist, &W, 4, NULL), 0);
}

static void test_capacity_spill(void **st)
{
    struct router_edge_cfg cfg[3];
    struct router_edge_view view[3];
    float dist[3] = {0.99f, 0.6f, 0.8f};
    struct router_score sc[3];

    edges(cfg, view, 3);
    cfg[0].capacity = 0.5;
    /* Load at its capacity: over, its new clients spill to the next best (2, not 1). */
    router_view_publish(&view[0], 1, 0.5, 0.8, cfg[0].capacity, DEADBAND, 0);
    assert_int_equal(router_select(cfg, view, 3, dist, &W, 4, sc), 2);
    assert_true(sc[0].over && sc[0].eligible);
    /* Its score stays the best: spilling is by the flag, not by the load weight. */
    assert_true(sc[0].total > sc[2].total);
    /* The next one over capacity too: spill further. */
    router_view_publish(&view[2], 1, 1.0, 0.8, 1.0, DEADBAND, 0);
    assert_int_equal(router_select(cfg, view, 3, dist, &W, 4, NULL), 1);
    /* Every eligible edge over capacity: the best eligible one by score, not a down one. */
    router_view_publish(&view[1], 1, 1.0, 0.8, 1.0, DEADBAND, 0);
    assert_int_equal(router_select(cfg, view, 3, dist, &W, 4, NULL), 0);
    router_view_publish(&view[0], 0, 0.5, 0.8, cfg[0].capacity, DEADBAND, 0);
    assert_int_equal(router_select(cfg, view, 3, dist, &W, 4, NULL), 2);
}

static void test_capacity_band(void **st)
{
    struct router_edge_view v;
    memset(&v, 0, sizeof(v));

    router_view_publish(&v, 1, 0.85, 0.8, 0.9, DEADBAND, 1);
    assert_false(atomic_load(&v.over));
    /* Just below the capacity: still under. */
    router_view_publish(&v, 1, 0.899, 0.8, 0.9, DEADBAND, 0);
    assert_false(atomic_load(&v.over));
    router_view_publish(&v, 1, 0.9, 0.8, 0.9, DEADBAND, 0);
    assert_true(atomic_load(&v.over));
    /* Back under capacity but inside the band (capacity - deadband = 0.85): still over. */
    router_view_publish(&v, 1, 0.86, 0.8, 0.9, DEADBAND, 0);
    assert_true(atomic_load(&v.over));
    router_view_publish(&v, 1, 0.851, 0.8, 0.9, DEADBAND, 0);
    assert_true(atomic_load(&v.over));
    /* Below the band: takes clients again. */
    router_view_publish(&v, 1, 0.84, 0.8, 0.9, DEADBAND, 0);
    assert_false(atomic_load(&v.over));
    /* Jitter inside the band from below does not set it. */
    router_view_publish(&v, 1, 0.88, 0.8, 0.9, DEADBAND, 0);
    assert_false(atomic_load(&v.over));
}

static void test_deadband_keeps_pick(void **st)
{
    struct router_edge_cfg cfg[2];
    struct router_edge_view view[2];
    float dist[2] = {0.90f, 0.90f}; /* same distance: load decides */

    edges(cfg, view, 2);
    router_view_publish(&view[0], 1, 0.30, 0.8, 1.0, DEADBAND, 1);
    router_view_publish(&view[1], 1, 0.32, 0.8, 1.0, DEADBAND, 1);
    assert_int_equal(router_select(cfg, view, 2, dist, &W, 4, NULL), 0);
    /* Edge 1 reports 0.27 (better than 0.30 in truth) but moved 0.05 - epsilon only: not
     * published, so the pick stays edge 0. */
    router_view_publish(&view[1], 1, 0.275, 0.8, 1.0, DEADBAND, 0);
    assert_true(fabs(atomic_load(&view[1].load) - 0.32) < 1e-12);
    assert_int_equal(router_select(cfg, view, 2, dist, &W, 4, NULL), 0);
    /* Edge 0 jitters up by less than the deadband: still edge 0. */
    router_view_publish(&view[0], 1, 0.34, 0.8, 1.0, DEADBAND, 0);
    assert_int_equal(router_select(cfg, view, 2, dist, &W, 4, NULL), 0);
    /* A move by the deadband or more is published and decides. */
    router_view_publish(&view[1], 1, 0.20, 0.8, 1.0, DEADBAND, 0);
    assert_true(fabs(atomic_load(&view[1].load) - 0.20) < 1e-12);
    assert_int_equal(router_select(cfg, view, 2, dist, &W, 4, NULL), 1);
    /* The same band for the hit ratio. */
    router_view_publish(&view[0], 1, 0.30, 0.8, 1.0, DEADBAND, 0); /* < 0.05 from 0.30: kept */
    router_view_publish(&view[0], 1, 0.30, 0.84, 1.0, DEADBAND, 0);
    assert_true(fabs(atomic_load(&view[0].hit) - 0.8) < 1e-12);
    router_view_publish(&view[0], 1, 0.30, 0.90, 1.0, DEADBAND, 0);
    assert_true(fabs(atomic_load(&view[0].hit) - 0.90) < 1e-12);
    /* The first report is published whatever it is. */
    router_view_publish(&view[0], 1, 0.31, 0.91, 1.0, DEADBAND, 1);
    assert_true(fabs(atomic_load(&view[0].load) - 0.31) < 1e-12);
    assert_true(fabs(atomic_load(&view[0].hit) - 0.91) < 1e-12);
}

static void test_publish_clamps(void **st)
{
    struct router_edge_view v;
    memset(&v, 0, sizeof(v));
    /* Reports outside 0..1 are clamped, so no edge can buy a score above the weights. */
    router_view_publish(&v, 1, -3, 7, 1.0, DEADBAND, 1);
    assert_true(atomic_load(&v.load) == 0);
    assert_true(atomic_load(&v.hit) == 1);
    router_view_publish(&v, 1, 9, -1, 1.0, DEADBAND, 0);
    assert_true(atomic_load(&v.load) == 1);
    assert_true(atomic_load(&v.hit) == 0);
    assert_true(atomic_load(&v.over));
}

static void test_ties(void **st)
{
    struct router_edge_cfg cfg[3];
    struct router_edge_view view[3];

    edges(cfg, view, 3);
    /* Equal totals: the nearer edge (edge 2: 0.8 vs 0.7), made equal by load. */
    float dist[3] = {0.7f, 0.6f, 0.8f};
    router_view_publish(&view[2], 1, 0.2 + 0.5 * (dist[2] - dist[0]) / 0.3, 0.8, 1.0, DEADBAND, 1);
    struct router_score sc[3];
    assert_int_equal(router_select(cfg, view, 3, dist, &W, 4, sc), 2);
    assert_true(fabs(sc[0].total - sc[2].total) < 1e-7);
    /* Equal totals and distances: the lower index, wherever it is in the list. */
    float same[3] = {0.5f, 0.5f, 0.5f};
    edges(cfg, view, 3);
    assert_int_equal(router_select(cfg, view, 3, same, &W, 4, NULL), 0);
    router_view_publish(&view[0], 0, 0.2, 0.8, 1.0, DEADBAND, 0);
    assert_int_equal(router_select(cfg, view, 3, same, &W, 4, NULL), 1);
}

static void test_one_edge_and_families(void **st)
{
    struct router_edge_cfg cfg[3];
    struct router_edge_view view[3];
    float dist[3] = {0.2f, 0.9f, 0.5f};
    struct router_score sc[3];

    edges(cfg, view, 1);
    /* One edge: it, whatever its state. */
    assert_int_equal(router_select(cfg, view, 1, dist, &W, 4, NULL), 0);
    router_view_publish(&view[0], 0, 1.0, 0.0, 0.5, DEADBAND, 0);
    assert_int_equal(router_select(cfg, view, 1, dist, &W, 4, NULL), 0);
    assert_int_equal(router_select(cfg, view, 0, dist, &W, 4, NULL), -1);
    /* Only edges of the asked family are candidates, even a better one of the other family. */
    edges(cfg, view, 3);
    cfg[1].family = 6;
    assert_int_equal(router_select(cfg, view, 3, dist, &W, 4, sc), 2);
    assert_false(sc[1].candidate);
    assert_true(sc[0].candidate && sc[2].candidate);
    assert_int_equal(router_select(cfg, view, 3, dist, &W, 6, NULL), 1);
    /* The only IPv6 edge down: still it (fail open), never an IPv4 one. */
    router_view_publish(&view[1], 0, 0.2, 0.8, 1.0, DEADBAND, 0);
    assert_int_equal(router_select(cfg, view, 3, dist, &W, 6, NULL), 1);
    cfg[1].family = 4;
    assert_int_equal(router_select(cfg, view, 3, dist, &W, 6, NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_haversine_known_distances),
        cmocka_unit_test(test_nearest_wins),
        cmocka_unit_test(test_load_weight),
        cmocka_unit_test(test_hit_weight),
        cmocka_unit_test(test_ineligible_skipped),
        cmocka_unit_test(test_no_eligible_fails_open),
        cmocka_unit_test(test_capacity_spill),
        cmocka_unit_test(test_capacity_band),
        cmocka_unit_test(test_deadband_keeps_pick),
        cmocka_unit_test(test_publish_clamps),
        cmocka_unit_test(test_ties),
        cmocka_unit_test(test_one_edge_and_families),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
