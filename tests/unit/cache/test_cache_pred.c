/* tests/unit/cache/test_cache_pred.c: the prediction cache: hit/miss, full-key compare,
 * replacement, byte budget with eviction through the policy interface, refusal of an
 * entry larger than a shard, stats, and concurrent use from several threads. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cache/cache_pred.h"

static void key_of(unsigned i, unsigned char k[64])
{
    memset(k, 0, 64);
    memcpy(k, &i, sizeof(i));
}

static void test_hit_miss_replace(void **state)
{
    struct cache_pred *c;
    unsigned char k[64], v[32];
    size_t vl = 0;
    (void)state;

    assert_int_equal(cache_pred_new(1 << 20, "default", CACHE_POLICY_OBJECTS, 4, &c), 0);
    key_of(1, k);
    assert_int_equal(cache_pred_get(c, k, sizeof(k), v, sizeof(v), &vl), -ENOENT);
    assert_int_equal(cache_pred_put(c, k, sizeof(k), "abcd", 4), 0);
    assert_int_equal(cache_pred_get(c, k, sizeof(k), v, sizeof(v), &vl), 0);
    assert_int_equal(vl, 4);
    assert_memory_equal(v, "abcd", 4);
    /* Same key bytes, different length: a different key. */
    assert_int_equal(cache_pred_get(c, k, 63, v, sizeof(v), &vl), -ENOENT);
    /* Replacement keeps one entry. */
    assert_int_equal(cache_pred_put(c, k, sizeof(k), "xyz", 3), 0);
    assert_int_equal(cache_pred_get(c, k, sizeof(k), v, sizeof(v), &vl), 0);
    assert_int_equal(vl, 3);
    assert_memory_equal(v, "xyz", 3);
    /* A value larger than the caller's buffer is not copied. */
    assert_int_equal(cache_pred_get(c, k, sizeof(k), v, 2, &vl), -ENOSPC);
    struct cache_pred_stats st;
    cache_pred_stats(c, &st);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.hits, 2);
    assert_int_equal(st.misses, 3);
    assert_true(st.bytes >= 64 + 3 && st.bytes < 1024);
    cache_pred_clear(c);
    cache_pred_stats(c, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    cache_pred_free(&c);
    assert_null(c);
}

static void test_byte_budget(void **state)
{
    struct cache_pred *c;
    unsigned char k[64], v[256];
    struct cache_pred_stats st;
    size_t vl;
    (void)state;

    memset(v, 7, sizeof(v));
    assert_int_equal(cache_pred_new(64 * 1024, "lru", CACHE_POLICY_OBJECTS, 1, &c), 0);
    for (unsigned i = 0; i < 2000; i++) {
        key_of(i, k);
        cache_pred_put(c, k, sizeof(k), v, sizeof(v));
    }
    cache_pred_stats(c, &st);
    assert_true(st.bytes <= 64 * 1024);
    assert_true(st.entries > 100 && st.entries < 2000);
    assert_true(st.evictions >= 2000 - st.entries);
    /* LRU: the newest survive, the oldest went. */
    key_of(1999, k);
    assert_int_equal(cache_pred_get(c, k, sizeof(k), v, sizeof(v), &vl), 0);
    key_of(0, k);
    assert_int_equal(cache_pred_get(c, k, sizeof(k), v, sizeof(v), &vl), -ENOENT);
    cache_pred_free(&c);
}

static void test_refuses_oversized_and_bad_args(void **state)
{
    struct cache_pred *c = NULL;
    static unsigned char big[8192];
    unsigned char k[64];
    (void)state;

    assert_int_equal(cache_pred_new(0, "default", CACHE_POLICY_OBJECTS, 4, &c), -EINVAL);
    assert_int_equal(cache_pred_new(1 << 20, "no-such-policy", CACHE_POLICY_OBJECTS, 4, &c),
                     -EINVAL);
    assert_null(c);
    assert_int_equal(cache_pred_new(16 * 1024, "default", CACHE_POLICY_OBJECTS, 4, &c),
                     0); /* 4 KiB per shard */
    key_of(5, k);
    assert_int_equal(cache_pred_put(c, k, sizeof(k), big, sizeof(big)), -E2BIG);
    struct cache_pred_stats st;
    cache_pred_stats(c, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    cache_pred_free(&c);
}

struct targ {
    struct cache_pred *c;
    unsigned base;
    int errors;
};

static void *worker(void *arg)
{
    struct targ *t = arg;
    unsigned char k[64];
    unsigned v, got;
    size_t vl;

    for (unsigned i = 0; i < 20000; i++) {
        unsigned id = t->base + (i % 500);
        key_of(id, k);
        v = id * 3u;
        if (cache_pred_get(t->c, k, sizeof(k), &got, sizeof(got), &vl) == 0) {
            if (vl != sizeof(got) || got != id * 3u)
                t->errors++;
        } else {
            cache_pred_put(t->c, k, sizeof(k), &v, sizeof(v));
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    struct cache_pred *c;
    pthread_t th[4];
    struct targ a[4];
    (void)state;

    assert_int_equal(cache_pred_new(32 * 1024, "default", CACHE_POLICY_OBJECTS, 8, &c), 0);
    for (int i = 0; i < 4; i++) {
        a[i] = (struct targ){c, (unsigned)i * 250u, 0}; /* overlapping key ranges */
        pthread_create(&th[i], NULL, worker, &a[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(a[i].errors, 0);
    }
    struct cache_pred_stats st;
    cache_pred_stats(c, &st);
    assert_true(st.bytes <= 32 * 1024);
    assert_true(st.hits > 0);
    cache_pred_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_miss_replace),
        cmocka_unit_test(test_byte_budget),
        cmocka_unit_test(test_refuses_oversized_and_bad_args),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
