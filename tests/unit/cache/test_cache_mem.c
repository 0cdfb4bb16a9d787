/* tests/unit/cache/test_cache_mem.c: L1 byte accounting, eviction, Vary variants, purge,
 * and object lifetime across eviction (an evicted object being sent stays valid). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cache/cache_mem.h"

/* A parsed request with the given extra header lines ("Name: v\r\n..."). */
static struct http_request *req_with(const char *hdrs, char *buf, size_t n)
{
    static struct http_request r;
    struct http_limits lim;
    const char *msg = NULL;

    http_limits_default(&lim);
    snprintf(buf, n, "GET / HTTP/1.1\r\nHost: h\r\n%s\r\n", hdrs);
    assert_true(http_parse_request(buf, strlen(buf), &lim, &r, &msg) > 0);
    return &r;
}

static struct cache_obj *obj_of(size_t body, const char *vary, const char *vkey)
{
    char *data = calloc(1, body ? body : 1);
    struct cache_obj *o = cache_obj_new(200, strdup("X-A: 1\r\n"), 8, cache_body_from(data, body));
    free(data);
    if (vary)
        o->vary = strdup(vary);
    if (vkey) {
        free(o->vkey);
        o->vkey = strdup(vkey);
        o->vkey_len = strlen(vkey);
    }
    return o;
}

static void test_byte_accounting(void **state)
{
    struct l1 *c;
    char buf[512];
    (void)state;

    assert_int_equal(l1_new(1u << 20, "lru", CACHE_POLICY_OBJECTS, 1, &c), 0);
    struct cache_obj *o = obj_of(1000, NULL, NULL);
    assert_int_equal(l1_insert(c, "h/a", 3, o), 0);
    /* body + header block + key + vkey + the fixed overhead */
    assert_int_equal(l1_bytes(c), 1000 + 8 + 3 + 0 + L1_OBJ_OVERHEAD);
    assert_int_equal(l1_objects(c), 1);
    assert_int_equal(l1_insert(c, "h/a", 3, o), -EEXIST);

    struct cache_obj *got = NULL;
    assert_int_equal(l1_lookup(c, "h/a", 3, req_with("", buf, sizeof(buf)), &got), 0);
    assert_ptr_equal(got, o);
    cache_obj_unref(&got);
    assert_int_equal(l1_lookup(c, "h/b", 3, req_with("", buf, sizeof(buf)), &got), -ENOENT);

    /* Replacing the same key frees the old charge. */
    struct cache_obj *o2 = obj_of(2000, NULL, NULL);
    assert_int_equal(l1_insert(c, "h/a", 3, o2), 0);
    assert_int_equal(l1_bytes(c), 2000 + 8 + 3 + L1_OBJ_OVERHEAD);
    assert_int_equal(l1_objects(c), 1);
    assert_false(o->in_index);
    assert_int_equal(l1_remove(c, "h/a", 3), 1);
    assert_int_equal(l1_bytes(c), 0);
    cache_obj_unref(&o);
    cache_obj_unref(&o2);
    l1_free(&c);
}

static void test_eviction_keeps_budget(void **state)
{
    struct l1 *c;
    char key[32];
    uint64_t charge = 4096 + 8 + 5 + L1_OBJ_OVERHEAD;
    (void)state;

    /* Room for exactly 10 objects of this size in one shard. */
    assert_int_equal(l1_new(charge * 10, "lru", CACHE_POLICY_OBJECTS, 1, &c), 0);
    for (int i = 0; i < 25; i++) {
        snprintf(key, sizeof(key), "h/%03d", i);
        struct cache_obj *o = obj_of(4096, NULL, NULL);
        assert_int_equal(l1_insert(c, key, strlen(key), o), 0);
        cache_obj_unref(&o);
        assert_true(l1_bytes(c) <= l1_budget(c));
    }
    assert_int_equal(l1_objects(c), 10);
    assert_int_equal(l1_bytes(c), charge * 10);
    /* LRU keeps the newest ten. */
    char buf[512];
    struct cache_obj *got = NULL;
    assert_int_equal(l1_lookup(c, "h/024", 5, req_with("", buf, sizeof(buf)), &got), 0);
    cache_obj_unref(&got);
    assert_int_equal(l1_lookup(c, "h/014", 5, req_with("", buf, sizeof(buf)), &got), -ENOENT);
    l1_free(&c);
}

static void test_object_larger_than_budget_is_refused(void **state)
{
    struct l1 *c;
    (void)state;

    assert_int_equal(l1_new(64 * 1024, "sieve", CACHE_POLICY_OBJECTS, 1, &c), 0);
    struct cache_obj *o = obj_of(128 * 1024, NULL, NULL);
    assert_int_equal(l1_insert(c, "h/big", 5, o), -EFBIG);
    assert_false(o->in_index);
    assert_int_equal(l1_bytes(c), 0);
    cache_obj_unref(&o);
    l1_free(&c);
}

static void test_evicted_object_stays_valid_while_referenced(void **state)
{
    struct l1 *c;
    char buf[512];
    uint64_t charge = 1000 + 8 + 3 + L1_OBJ_OVERHEAD;
    (void)state;

    assert_int_equal(l1_new(charge, "fifo", CACHE_POLICY_OBJECTS, 1, &c), 0);
    struct cache_obj *a = obj_of(1000, NULL, NULL);
    assert_int_equal(l1_insert(c, "h/a", 3, a), 0);
    cache_obj_unref(&a);
    struct cache_obj *sending = NULL;
    assert_int_equal(l1_lookup(c, "h/a", 3, req_with("", buf, sizeof(buf)), &sending), 0);
    struct cache_obj *b = obj_of(1000, NULL, NULL);
    assert_int_equal(l1_insert(c, "h/b", 3, b), 0); /* evicts h/a */
    cache_obj_unref(&b);
    assert_false(sending->in_index);
    assert_int_equal(cache_body_len(sending->body), 1000); /* still readable (ASan checks) */
    cache_obj_unref(&sending);
    l1_free(&c);
}

static void test_vary_variants_and_purge(void **state)
{
    struct l1 *c;
    char buf[512];
    struct buf vk;
    (void)state;

    assert_int_equal(l1_new(1u << 20, "default", CACHE_POLICY_OBJECTS, 4, &c), 0);
    const char *vals[] = {"gzip", "br"};
    for (int i = 0; i < 2; i++) {
        char h[64];
        snprintf(h, sizeof(h), "Accept-Encoding: %s\r\n", vals[i]);
        buf_init(&vk, 4096);
        assert_int_equal(l1_vary_key(&vk, "accept-encoding", req_with(h, buf, sizeof(buf))), 0);
        struct cache_obj *o = obj_of(10, "accept-encoding", vk.data);
        buf_fini(&vk);
        assert_int_equal(l1_insert(c, "a.example/v?x=1", 15, o), 0);
        cache_obj_unref(&o);
        struct cache_obj *o2 = obj_of(10, "accept-encoding", NULL);
        buf_init(&vk, 4096);
        l1_vary_key(&vk, "accept-encoding", req_with(h, buf, sizeof(buf)));
        free(o2->vkey);
        o2->vkey = strdup(vk.data);
        o2->vkey_len = vk.len;
        buf_fini(&vk);
        assert_int_equal(l1_insert(c, "b.example/v?x=1", 15, o2), 0);
        cache_obj_unref(&o2);
    }
    assert_int_equal(l1_objects(c), 4);
    struct cache_obj *got = NULL;
    assert_int_equal(l1_lookup(c, "a.example/v?x=1", 15,
                               req_with("Accept-Encoding: br\r\n", buf, sizeof(buf)), &got),
                     0);
    cache_obj_unref(&got);
    assert_int_equal(l1_lookup(c, "a.example/v?x=1", 15,
                               req_with("Accept-Encoding: zstd\r\n", buf, sizeof(buf)), &got),
                     -ENOENT);
    /* One host only, then every host. */
    assert_int_equal(l1_purge_path(c, "a.example", 9, "/v?x=1", 6), 2);
    assert_int_equal(l1_objects(c), 2);
    assert_int_equal(l1_purge_path(c, NULL, 0, "/v?x=2", 6), 0);
    assert_int_equal(l1_purge_path(c, NULL, 0, "/v?x=1", 6), 2);
    assert_int_equal(l1_objects(c), 0);
    assert_int_equal(l1_bytes(c), 0);
    l1_free(&c);
}

static int drop_stored_before(void *arg, const char *pkey, size_t plen, struct cache_obj *o)
{
    (void)pkey;
    (void)plen;
    return o->stored_us < *(const int64_t *)arg;
}

/* A tag purge removes by key, judged per variant; the lurker walks everything. */
static void test_remove_if_and_walk(void **state)
{
    struct l1 *c;
    (void)state;

    assert_int_equal(l1_new(1u << 20, "default", CACHE_POLICY_OBJECTS, 4, &c), 0);
    const char *vk[] = {"\naccept-encoding:gzip", "\naccept-encoding:br"};
    for (int i = 0; i < 2; i++) {
        struct cache_obj *o = obj_of(10, "accept-encoding", vk[i]);
        o->stored_us = 100 + i;
        assert_int_equal(l1_insert(c, "h/k", 3, o), 0);
        cache_obj_unref(&o);
    }
    struct cache_obj *o = obj_of(10, NULL, NULL);
    o->stored_us = 100;
    assert_int_equal(l1_insert(c, "h/other", 7, o), 0);
    cache_obj_unref(&o);
    int64_t t = 101;
    assert_int_equal(l1_remove_if(c, "h/k", 3, drop_stored_before, &t), 1);
    assert_int_equal(l1_objects(c), 2);
    assert_int_equal(l1_remove_if(c, "h/none", 6, drop_stored_before, &t), 0);
    t = 1000;
    assert_int_equal(l1_remove_if(c, "h/k", 3, drop_stored_before, &t), 1);
    assert_int_equal(l1_objects(c), 1);
    assert_int_equal(l1_walk(c, drop_stored_before, &t), 1);
    assert_int_equal(l1_objects(c), 0);
    assert_int_equal(l1_bytes(c), 0);
    l1_free(&c);
}

static void test_vary_star_never_matches(void **state)
{
    struct l1 *c;
    char buf[512];
    (void)state;

    assert_int_equal(l1_new(1u << 20, "default", CACHE_POLICY_OBJECTS, 1, &c), 0);
    struct cache_obj *o = obj_of(10, "*", NULL);
    assert_int_equal(l1_insert(c, "h/s", 3, o), 0);
    cache_obj_unref(&o);
    struct cache_obj *got = NULL;
    assert_int_equal(l1_lookup(c, "h/s", 3, req_with("", buf, sizeof(buf)), &got), -ENOENT);
    l1_free(&c);
}

static void test_unknown_policy(void **state)
{
    struct l1 *c = NULL;
    (void)state;
    assert_int_equal(l1_new(1u << 20, "nope", CACHE_POLICY_OBJECTS, 2, &c), -EINVAL);
    assert_null(c);
}

static void test_body_cursor_across_chunks(void **state)
{
    (void)state;
    struct cache_body *b = cache_body_new(-1);
    char data[100000];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (char)(i * 7);
    /* Appended in odd pieces while a reader follows. */
    struct cache_body_cursor cur;
    cache_body_cursor_init(&cur, b);
    size_t at = 0, got = 0;
    char out[100000];
    while (at < sizeof(data)) {
        size_t n = MC_MIN(sizeof(data) - at, (size_t)7777);
        assert_int_equal(cache_body_append(b, data + at, n), 0);
        at += n;
        const char *span;
        size_t k;
        while ((k = cache_body_next(&cur, b, UINT64_MAX, 5000, &span)) != 0) {
            memcpy(out + got, span, k);
            got += k;
        }
    }
    cache_body_finish(b, CACHE_BODY_COMPLETE);
    assert_int_equal(got, sizeof(data));
    assert_memory_equal(out, data, sizeof(data));
    /* Seek into the middle of a later chunk. */
    cache_body_cursor_seek(&cur, b, 50001);
    const char *span;
    size_t k = cache_body_next(&cur, b, 50011, SIZE_MAX, &span);
    assert_int_equal(k, 10);
    assert_memory_equal(span, data + 50001, 10);
    cache_body_unref(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_byte_accounting),
        cmocka_unit_test(test_eviction_keeps_budget),
        cmocka_unit_test(test_object_larger_than_budget_is_refused),
        cmocka_unit_test(test_evicted_object_stays_valid_while_referenced),
        cmocka_unit_test(test_vary_variants_and_purge),
        cmocka_unit_test(test_vary_star_never_matches),
        cmocka_unit_test(test_unknown_policy),
        cmocka_unit_test(test_remove_if_and_walk),
        cmocka_unit_test(test_body_cursor_across_chunks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
