/* tests/unit/router/test_router_geo.c: mmdb reading (both layouts, on databases generated
 * by tests/e2e/mmdb_writer.py at test time), haversine, scoring and the choice rules. */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "router/router_geo.h"
#include "router/router_select.h"

static char dir[64];
static char city_db[128], flat4_db[128], flat6_db[128];

static int gen(const char *out, const char *args)
{
    const char *src = getenv("MLCDN_SRC");
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s/tests/e2e/mmdb_writer.py %s %s",
             src ? src : ".", out, args);
    return system(cmd);
}

static int setup(void **st)
{
    snprintf(dir, sizeof(dir), "/tmp/mlcdn-router-geo-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(city_db, sizeof(city_db), "%s/city.mmdb", dir);
    snprintf(flat4_db, sizeof(flat4_db), "%s/flat4.mmdb", dir);
    snprintf(flat6_db, sizeof(flat6_db), "%s/flat6.mmdb", dir);
    if (gen(city_db, "--layout city 49.165.200.0/24=37.5985,126.9783,KR,Seoul "
                     "81.2.69.0/24=51.5142,-0.0931,GB,London 5.0.0.0/8=DE "
                     "2001:db8::/32=-33.87,151.21,AU,Sydney 198.51.100.0/24=") != 0)
        return -1;
    if (gen(flat4_db, "--layout flat --ip-version 4 49.165.200.0/24=37.5985,126.9783,KR,Seoul "
                      "200.29.13.0/24=-33.39,-70.72,CL,Renca") != 0)
        return -1;
    if (gen(flat6_db, "--layout flat --ip-version 6 2a00:1450::/32=50.11,8.68,DE,Frankfurt") != 0)
        return -1;
    return 0;
}

static int teardown(void **st)
{
    unlink(city_db);
    unlink(flat4_db);
    unlink(flat6_db);
    rmdir(dir);
    return 0;
}

static void lookup(struct router_geo *g, const char *ip, struct router_geo_hit *hit,
                   struct router_geo_loc *loc)
{
    uint8_t a[16];
    int fam = strchr(ip, ':') ? 6 : 4;
    assert_int_equal(inet_pton(fam == 4 ? AF_INET : AF_INET6, ip, a), 1);
    assert_int_equal(router_geo_find(g, fam, a, hit), 0);
    memset(loc, 0, sizeof(*loc));
    if (hit->found)
        assert_int_equal(router_geo_decode(g, hit, loc), 0);
}

static void test_city_layout(void **st)
{
    struct router_geo *g = NULL;
    char err[256];
    const char *paths[] = {city_db};
    struct router_geo_hit hit;
    struct router_geo_loc loc;

    assert_int_equal(router_geo_open(paths, 1, &g, err, sizeof(err)), 0);
    lookup(g, "49.165.200.39", &hit, &loc);
    assert_true(hit.found);
    assert_int_equal(hit.netmask, 24); /* IPv4 family, not ::/120 */
    assert_int_equal(loc.src, GEO_SRC_CITY);
    assert_true(fabs(loc.lat - 37.5985) < 1e-6 && fabs(loc.lon - 126.9783) < 1e-6);
    assert_string_equal(loc.country, "KR");
    /* a record with a country and no location: the country's location */
    lookup(g, "5.6.7.8", &hit, &loc);
    assert_true(hit.found);
    assert_int_equal(hit.netmask, 8);
    assert_int_equal(loc.src, GEO_SRC_COUNTRY);
    assert_string_equal(loc.country, "DE");
    /* IPv6 */
    lookup(g, "2001:db8::1", &hit, &loc);
    assert_true(hit.found);
    assert_int_equal(hit.netmask, 32);
    assert_int_equal(loc.src, GEO_SRC_CITY);
    /* unknown address */
    lookup(g, "10.1.2.3", &hit, &loc);
    assert_false(hit.found);
    /* a record with neither (empty map) */
    lookup(g, "198.51.100.1", &hit, &loc);
    assert_true(hit.found);
    assert_int_equal(loc.src, GEO_SRC_NONE);
    router_geo_free(&g);
    assert_null(g);
}

static void test_flat_layout_two_files(void **st)
{
    struct router_geo *g = NULL;
    char err[256];
    const char *paths[] = {flat4_db, flat6_db};
    struct router_geo_hit hit;
    struct router_geo_loc loc;

    assert_int_equal(router_geo_open(paths, 2, &g, err, sizeof(err)), 0);
    lookup(g, "200.29.13.224", &hit, &loc);
    assert_true(hit.found);
    assert_int_equal(hit.db, 0);
    assert_int_equal(hit.netmask, 24);
    assert_int_equal(loc.src, GEO_SRC_CITY);
    assert_true(fabs(loc.lat - -33.39) < 1e-4); /* float in the file */
    assert_string_equal(loc.country, "CL");
    lookup(g, "2a00:1450:4001::1", &hit, &loc);
    assert_true(hit.found);
    assert_int_equal(hit.db, 1);
    assert_string_equal(loc.country, "DE");
    assert_true(fabs(loc.lon - 8.68) < 1e-4);
    router_geo_free(&g);
}

static void test_open_errors(void **st)
{
    struct router_geo *g = NULL;
    char err[256] = "";
    const char *missing[] = {"/nonexistent/x.mmdb"};
    assert_int_equal(router_geo_open(missing, 1, &g, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "/nonexistent/x.mmdb"));
    const char *notdb[] = {"/etc/hostname"};
    assert_true(router_geo_open(notdb, 1, &g, err, sizeof(err)) < 0);
    assert_null(g);
}

static void test_haversine(void **st)
{
    /* London - Tokyo about 9,560 km; antipodes half the circumference */
    double d = router_haversine_km(51.51, -0.13, 35.68, 139.69);
    assert_true(fabs(d - 9560) < 30);
    assert_true(fabs(router_haversine_km(0, 0, 0, 180) - ROUTER_HALF_CIRCUMFERENCE_KM) < 1);
    assert_true(router_haversine_km(10, 20, 10, 20) < 1e-9);
    assert_true(fabs(router_distance_score(0) - 1) < 1e-12);
    assert_true(router_distance_score(1e6) == 0);
}

static const double dcs[6][2] = {{35.68, 139.69}, {51.51, -0.13},   {38.9, -77.4},
                                 {19.08, 72.88},  {-23.55, -46.63}, {-33.87, 151.21}};

static void make_edges(struct router_edge_cfg *cfg, struct router_edge_view *view, size_t n)
{
    memset(cfg, 0, n * sizeof(*cfg));
    memset(view, 0, n * sizeof(*view));
    for (size_t i = 0; i < n; i++) {
        snprintf(cfg[i].name, sizeof(cfg[i].name), "e%zu", i);
        cfg[i].lat = dcs[i][0];
        cfg[i].lon = dcs[i][1];
        cfg[i].family = 4;
        cfg[i].capacity = 1.0;
        router_view_publish(&view[i], 1, 0.2, 0.8, 1.0, 0.05, 1);
    }
}

static void test_select_rules(void **st)
{
    struct router_edge_cfg cfg[6];
    struct router_edge_view view[6];
    struct router_weights w = {0.5, 0.3, 0.2};
    struct router_score sc[6];
    float dist[6];

    make_edges(cfg, view, 6);
    /* Seoul: tokyo, then mumbai */
    for (int i = 0; i < 6; i++)
        dist[i] = (float)router_distance_score(
            router_haversine_km(37.5985, 126.9783, cfg[i].lat, cfg[i].lon));
    assert_int_equal(router_select(cfg, view, 6, dist, &w, 4, sc), 0);
    assert_true(sc[0].total > sc[3].total);
    assert_true(fabs(sc[0].total - (0.5 * dist[0] + 0.3 * 0.8 + 0.2 * 0.8)) < 1e-6);
    /* tokyo down: mumbai (nearer than sydney from Seoul) */
    router_view_publish(&view[0], 0, 0.2, 0.8, 1.0, 0.05, 0);
    assert_int_equal(router_select(cfg, view, 6, dist, &w, 4, NULL), 3);
    router_view_publish(&view[0], 1, 0.2, 0.8, 1.0, 0.05, 0);
    /* capacity spill: tokyo at 0.95 with capacity 0.9 goes over, then back under only below
     * 0.85 (hysteresis) */
    cfg[0].capacity = 0.9;
    router_view_publish(&view[0], 1, 0.95, 0.8, 0.9, 0.05, 0);
    assert_int_equal(router_select(cfg, view, 6, dist, &w, 4, NULL), 3);
    router_view_publish(&view[0], 1, 0.88, 0.8, 0.9, 0.05, 0);
    assert_int_equal(router_select(cfg, view, 6, dist, &w, 4, NULL), 3);
    router_view_publish(&view[0], 1, 0.5, 0.8, 0.9, 0.05, 0);
    assert_int_equal(router_select(cfg, view, 6, dist, &w, 4, NULL), 0);
    /* every edge over capacity: best eligible anyway */
    for (int i = 0; i < 6; i++)
        router_view_publish(&view[i], 1, 1.0, 0.8, 0.9, 0.05, 1);
    assert_int_equal(router_select(cfg, view, 6, dist, &w, 4, NULL), 0);
    /* nothing eligible: fail open */
    for (int i = 0; i < 6; i++)
        router_view_publish(&view[i], 0, 0.2, 0.8, 1.0, 0.05, 1);
    assert_int_equal(router_select(cfg, view, 6, dist, &w, 4, NULL), 0);
    /* no edge of the family */
    assert_int_equal(router_select(cfg, view, 6, dist, &w, 6, NULL), -1);
}

static void test_load_and_deadband(void **st)
{
    struct router_edge_cfg cfg[2];
    struct router_edge_view view[2];
    struct router_weights w = {0.5, 0.3, 0.2};
    float dist[2] = {0.9f, 0.88f}; /* edge 0 slightly nearer */

    make_edges(cfg, view, 2);
    assert_int_equal(router_select(cfg, view, 2, dist, &w, 4, NULL), 0);
    /* a much busier nearest edge loses */
    router_view_publish(&view[0], 1, 0.9, 0.8, 1.0, 0.05, 0);
    assert_int_equal(router_select(cfg, view, 2, dist, &w, 4, NULL), 1);
    /* small jitter is not published */
    router_view_publish(&view[1], 1, 0.23, 0.8, 1.0, 0.05, 0);
    assert_true(fabs(atomic_load(&view[1].load) - 0.2) < 1e-12);
    router_view_publish(&view[1], 1, 0.26, 0.8, 1.0, 0.05, 0);
    assert_true(fabs(atomic_load(&view[1].load) - 0.26) < 1e-12);
}

static void test_loc_cache(void **st)
{
    struct router_geo *g = NULL;
    char err[256];
    const char *paths[] = {city_db};
    struct router_edge_cfg cfg[6];
    struct router_edge_view view[6];
    uint8_t a[4] = {49, 165, 200, 39}, nm;

    assert_int_equal(router_geo_open(paths, 1, &g, err, sizeof(err)), 0);
    make_edges(cfg, view, 6);
    struct router_loc_cache *c = router_loc_cache_new(g, cfg, 6, 0, 0, 0);
    const struct router_loc_entry *e = router_loc_lookup(c, 4, a, &nm);
    assert_int_equal(nm, 24);
    assert_int_equal(e->loc.src, GEO_SRC_CITY);
    assert_true(e->dist[0] > e->dist[3] && e->dist[3] > e->dist[5]);
    a[3] = 1;
    e = router_loc_lookup(c, 4, a, &nm);
    assert_int_equal(c->hits, 1);
    /* unknown: equal distance scores without a default location */
    uint8_t u[4] = {10, 0, 0, 1};
    e = router_loc_lookup(c, 4, u, &nm);
    assert_true(e->dist[0] == 0.5f && e->dist[5] == 0.5f);
    free(c);
    /* with a default location (London) */
    c = router_loc_cache_new(g, cfg, 6, 1, 51.5, 0);
    e = router_loc_lookup(c, 4, u, &nm);
    assert_true(e->dist[1] > e->dist[0]);
    free(c);
    router_geo_free(&g);
}

static void test_country_table(void **st)
{
    double lat, lon;
    assert_int_equal(router_geo_country_loc("JP", &lat, &lon), 0);
    assert_true(fabs(lat - 35.7) < 0.5);
    assert_int_equal(router_geo_country_loc("QQ", &lat, &lon), -ENOENT);
    assert_int_equal(router_geo_country_set("qq", 1.5, 2.5), 0);
    assert_int_equal(router_geo_country_loc("QQ", &lat, &lon), 0);
    assert_true(fabs(lon - 2.5) < 1e-6);
    assert_int_equal(router_geo_country_set("QQQ", 1, 2), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_city_layout),  cmocka_unit_test(test_flat_layout_two_files),
        cmocka_unit_test(test_open_errors),  cmocka_unit_test(test_haversine),
        cmocka_unit_test(test_select_rules), cmocka_unit_test(test_load_and_deadband),
        cmocka_unit_test(test_loc_cache),    cmocka_unit_test(test_country_table),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
