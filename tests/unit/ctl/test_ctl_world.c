/* tests/unit/ctl/test_ctl_world.c: the demo world of `mlcdn run`: the regions and their
 * round-trip times, the places file, and the city database written for the router (read
 * back with the router's own reader, libmaxminddb). */
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

#include "ctl/ctl_world.h"
#include "router/router_geo.h"

static void regions_table_then_generated(void **state)
{
    struct world_region a[60], b[60];
    (void)state;
    world_regions(a, 60);
    world_regions(b, 60);
    assert_memory_equal(a, b, sizeof(a)); /* deterministic */
    assert_string_equal(a[0].name, "tokyo");
    assert_int_equal(150, a[0].rtt_origin_ms);
    assert_string_equal(a[2].name, "virginia");
    assert_string_equal(a[5].name, "sydney");
    assert_int_equal(160, world_rtt_user_origin(&a[0]));
    for (size_t i = 6; i < 60; i++) {
        /* generated: where people live, and farther from N. Virginia takes longer */
        assert_true(a[i].lat > -60 && a[i].lat < 70);
        assert_true(a[i].rtt_origin_ms >= 2 && a[i].rtt_origin_ms < 300);
        assert_true(a[i].rtt_user_ms >= 5 && a[i].rtt_user_ms <= 20);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(a[i].name, a[j].name);
    }
    char ip[32];
    world_ip(WORLD_IP_EDGE, 0, ip, sizeof(ip));
    assert_string_equal("127.2.0.1", ip);
    world_ip(WORLD_IP_USER_EDGE, 299, ip, sizeof(ip));
    assert_string_equal("127.1.1.44", ip);
}

static char *write_tmp(const char *text)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/mlcdn-test-world-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal((ssize_t)strlen(text), write(fd, text, strlen(text)));
    close(fd);
    return path;
}

static void places_file_checked(void **state)
{
    struct world_place *p = NULL;
    size_t n = 0;
    char err[512];
    (void)state;
    char *path = write_tmp("ip,country,city,lat,lon,expected_dc\n"
                           "49.165.200.39,KR,Seoul,37.5985,126.9783,tokyo\n"
                           "\n"
                           "86.229.89.124,FR,Marseille,43.2832,5.3718,london\n");
    assert_int_equal(0, world_places_load(path, &p, &n, err, sizeof(err)));
    assert_int_equal(2, n);
    assert_int_equal(0x31a5c800u, p[0].net); /* 49.165.200.0/24 */
    assert_string_equal("KR", p[0].cc);
    assert_string_equal("Seoul", p[0].city);
    free(p);
    unlink(path);

    static const struct {
        const char *text, *word;
    } bad[] = {
        {"address,lat,lon\n1.2.3.4,1,2\n", "no ip, lat and lon"},
        {"ip,lat,lon\n1.2.3,1,2\n", ":2: expected an IPv4"},
        {"ip,lat,lon\n1.2.3.4,north,2\n", ":2: lat and lon"},
        {"ip,lat,lon\n1.2.3.4,91,2\n", ":2: lat and lon"},
        {"ip,lat,lon\n1.2.3.4,1,2\n10.9.8.7,1,2\n", ":3: 10.9.8.7 is in the regions'"},
        {"", "empty"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        path = write_tmp(bad[i].text);
        err[0] = 0;
        assert_int_equal(-EINVAL, world_places_load(path, &p, &n, err, sizeof(err)));
        if (!strstr(err, bad[i].word))
            fail_msg("%s: '%s' does not say '%s'", bad[i].text, err, bad[i].word);
        unlink(path);
    }
    assert_int_equal(-ENOENT, world_places_load("/nonexistent/x.csv", &p, &n, err, sizeof(err)));
}

static void lookup(const struct router_geo *g, const char *addr, struct router_geo_loc *loc)
{
    unsigned a, b, c, d;
    assert_int_equal(4, sscanf(addr, "%u.%u.%u.%u", &a, &b, &c, &d));
    const uint8_t ip[4] = {(uint8_t)a, (uint8_t)b, (uint8_t)c, (uint8_t)d};
    struct router_geo_hit hit;
    memset(loc, 0, sizeof(*loc));
    assert_int_equal(0, router_geo_find(g, 4, ip, &hit));
    if (hit.found)
        assert_int_equal(0, router_geo_decode(g, &hit, loc));
}

static void city_database_read_back(void **state)
{
    struct world_region r[20];
    struct world_place places[2] = {
        {0x31a5c800u, 37.5985, 126.9783, "KR", "Seoul"},
        {0x31a5c800u, 0, 0, "ZZ", "the same /24 again"},
    };
    char path[64] = "/tmp/mlcdn-test-world-db-XXXXXX", err[512];
    struct router_geo *g = NULL;
    struct router_geo_loc loc;
    (void)state;
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    world_regions(r, 20);
    assert_int_equal(0, world_mmdb_write(path, r, 20, places, 2));
    const char *paths[1] = {path};
    assert_int_equal(0, router_geo_open(paths, 1, &g, err, sizeof(err)));

    lookup(g, "10.1.200.7", &loc); /* a user of Tokyo */
    assert_int_equal(GEO_SRC_CITY, loc.src);
    assert_true(fabs(loc.lat - 35.68) < 1e-9 && fabs(loc.lon - 139.69) < 1e-9);
    assert_string_equal("JP", loc.country);
    lookup(g, "10.20.0.1", &loc); /* the last region's users */
    assert_true(fabs(loc.lat - r[19].lat) < 1e-9 && fabs(loc.lon - r[19].lon) < 1e-9);
    lookup(g, "127.0.0.1", &loc); /* this machine: N. Virginia */
    assert_true(fabs(loc.lat - r[2].lat) < 1e-9);
    lookup(g, "49.165.200.39", &loc); /* a place: the first of a /24 given twice */
    assert_true(fabs(loc.lat - 37.5985) < 1e-9);
    assert_string_equal("KR", loc.country);
    lookup(g, "10.21.0.1", &loc); /* no such region */
    assert_int_equal(GEO_SRC_NONE, loc.src);
    lookup(g, "8.8.8.8", &loc);
    assert_int_equal(GEO_SRC_NONE, loc.src);
    router_geo_free(&g);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(regions_table_then_generated),
        cmocka_unit_test(places_file_checked),
        cmocka_unit_test(city_database_read_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
