/* tests/unit/origin/test_origin_stats.c: the origin's request counters (/__stats). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "origin/origin_int.h"

static json_t *stats_json(struct origin_stats *st, size_t n)
{
    struct buf b;
    json_error_t err;
    buf_init(&b, SIZE_MAX);
    origin__stats_json(st, n, &b);
    json_t *j = json_loadb(b.data, b.len, 0, &err);
    if (!j)
        fail_msg("invalid JSON: %s in %s", err.text, b.data);
    buf_fini(&b);
    return j;
}

static long long get(json_t *j, const char *obj, const char *key)
{
    json_t *o = obj ? json_object_get(j, obj) : j;
    json_t *v = json_object_get(o, key);
    return v ? json_integer_value(v) : -1;
}

static void add(struct origin_stats *st, const char *m, const char *p)
{
    origin__stats_add(st, m, strlen(m), p, strlen(p));
}

static void test_merge_and_reset(void **state)
{
    struct origin_stats st[2];
    (void)state;
    origin__stats_init(&st[0]);
    origin__stats_init(&st[1]);
    json_t *j = stats_json(st, 2);
    assert_int_equal(get(j, NULL, "total"), 0);
    assert_int_equal(json_object_size(json_object_get(j, "requests")), 0);
    json_decref(j);

    add(&st[0], "GET", "/a");
    add(&st[0], "GET", "/a");
    add(&st[1], "GET", "/a");
    add(&st[1], "PUT", "/b\"q");
    j = stats_json(st, 2);
    assert_int_equal(get(j, NULL, "total"), 4);
    assert_int_equal(get(j, "requests", "/a"), 3);
    assert_int_equal(get(j, "requests", "/b\"q"), 1);
    assert_int_equal(get(j, "methods", "GET"), 3);
    assert_int_equal(get(j, "methods", "PUT"), 1);
    json_decref(j);

    origin__stats_reset(&st[0]);
    origin__stats_reset(&st[1]);
    j = stats_json(st, 2);
    assert_int_equal(get(j, NULL, "total"), 0);
    assert_int_equal(get(j, "requests", "/a"), -1);
    json_decref(j);
    add(&st[1], "GET", "/c");
    j = stats_json(st, 2);
    assert_int_equal(get(j, "requests", "/c"), 1);
    json_decref(j);
    origin__stats_fini(&st[0]);
    origin__stats_fini(&st[1]);
}

static void test_many_paths_bounded(void **state)
{
    struct origin_stats st;
    char p[32];
    (void)state;
    origin__stats_init(&st);
    for (int i = 0; i < ORIGIN_STATS_MAX_PATHS + 10; i++) {
        snprintf(p, sizeof(p), "/p%d", i);
        add(&st, "GET", p);
    }
    add(&st, "GET", "/p0");
    for (int i = 0; i < ORIGIN_STATS_MAX_METHODS + 4; i++) {
        snprintf(p, sizeof(p), "M%d", i);
        add(&st, p, "/p0");
    }
    json_t *j = stats_json(&st, 1);
    assert_int_equal(get(j, NULL, "total"),
                     ORIGIN_STATS_MAX_PATHS + 11 + ORIGIN_STATS_MAX_METHODS + 4);
    assert_int_equal(get(j, "requests", "/p0"), 2 + ORIGIN_STATS_MAX_METHODS + 4);
    assert_int_equal(get(j, "requests", "(other)"), 10);
    assert_int_equal(json_object_size(json_object_get(j, "requests")), ORIGIN_STATS_MAX_PATHS + 1);
    assert_int_equal(json_object_size(json_object_get(j, "methods")), ORIGIN_STATS_MAX_METHODS + 1);
    json_decref(j);
    origin__stats_fini(&st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge_and_reset),
        cmocka_unit_test(test_many_paths_bounded),
    };
    return cmocka_run_group_tests_name("origin_stats", tests, NULL, NULL);
}
