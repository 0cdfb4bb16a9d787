/* tests/unit/cache/test_cache_pack.c: the metadata encoding shared by L2 and Redis:
 * round trip of every field, the header facts re-derived on decode, and rejection of
 * every truncation and of corrupted lengths; sealed values: round trip, and rejection of
 * every single-byte change, every truncation and every extension. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <xxhash.h>

#include "cache/cache_pack.h"

static struct cache_obj *sample(int with_vary)
{
    const char *h = "Cache-Control: max-age=60, stale-if-error=30\r\nETag: \"v1\"\r\n"
                    "Last-Modified: Tue, 15 Nov 1994 12:45:26 GMT\r\nAccept-Ranges: bytes\r\n";
    struct cache_obj *o = cache_obj_new(200, strdup(h), strlen(h), NULL);
    o->request_time = 1700000000;
    o->stored_us = 1700000000123456;
    o->response_time = 1700000001;
    o->lifetime = 60;
    o->info.age = 7;
    o->has_accept_ranges = 1;
    if (with_vary) {
        o->vary = strdup("accept-encoding");
        free(o->vkey);
        o->vkey = strdup("\naccept-encoding:gzip");
        o->vkey_len = strlen(o->vkey);
    }
    return o;
}

static void test_round_trip(void **state)
{
    (void)state;
    for (int v = 0; v < 2; v++) {
        struct cache_obj *o = sample(v), *d = NULL;
        struct buf b;
        char *key = NULL;
        size_t klen = 0, used = 0;
        buf_init(&b, 1 << 20);
        assert_int_equal(cache_pack_meta(&b, "h/model.bin?v=2", 15, o), 0);
        assert_int_equal(cache_unpack_meta(b.data, b.len, &d, &key, &klen, &used), 0);
        assert_int_equal(used, b.len);
        assert_int_equal(klen, 15);
        assert_string_equal(key, "h/model.bin?v=2");
        assert_int_equal(d->status, 200);
        assert_int_equal(d->hdrs_len, o->hdrs_len);
        assert_memory_equal(d->hdrs, o->hdrs, o->hdrs_len);
        assert_int_equal(d->request_time, o->request_time);
        assert_int_equal(d->stored_us, o->stored_us);
        assert_int_equal(d->response_time, o->response_time);
        assert_int_equal(d->lifetime, 60);
        assert_int_equal(d->info.age, 7);
        assert_int_equal(d->info.cc.max_age, 60);
        assert_int_equal(d->info.cc.stale_if_error, 30);
        assert_true(d->info.has_validator);
        assert_true(d->info.last_modified > 0);
        assert_string_equal(d->etag, "\"v1\"");
        assert_int_equal(d->has_accept_ranges, 1);
        assert_int_equal(d->vkey_len, o->vkey_len);
        assert_memory_equal(d->vkey, o->vkey, o->vkey_len);
        if (v)
            assert_string_equal(d->vary, "accept-encoding");
        else
            assert_null(d->vary);
        assert_null(d->body);
        free(key);
        cache_obj_unref(&d);
        cache_obj_unref(&o);
        buf_fini(&b);
    }
}

static void test_truncated_and_corrupt(void **state)
{
    (void)state;
    struct cache_obj *o = sample(1), *d = NULL;
    struct buf b;
    char *key = NULL;
    size_t klen;
    buf_init(&b, 1 << 20);
    assert_int_equal(cache_pack_meta(&b, "k", 1, o), 0);
    for (size_t n = 0; n < b.len; n++) /* every proper prefix is refused */
        assert_int_equal(cache_unpack_meta(b.data, n, &d, &key, &klen, NULL), -EINVAL);
    char *c = malloc(b.len);
    memcpy(c, b.data, b.len);
    c[0] = 'X'; /* magic */
    assert_int_equal(cache_unpack_meta(c, b.len, &d, &key, &klen, NULL), -EINVAL);
    memcpy(c, b.data, b.len);
    c[4] = 9; /* version */
    assert_int_equal(cache_unpack_meta(c, b.len, &d, &key, &klen, NULL), -EINVAL);
    memcpy(c, b.data, b.len);
    memset(c + 52, 0x7f, 4); /* the key's length points past the end */
    assert_int_equal(cache_unpack_meta(c, b.len, &d, &key, &klen, NULL), -EINVAL);
    assert_null(d);
    /* A version 1 record (no stored_us, bytes 44..52) still decodes, as stored at the
     * start of its request's second. */
    memcpy(c, b.data, 44);
    memcpy(c + 44, b.data + 52, b.len - 52);
    c[4] = 1;
    assert_int_equal(cache_unpack_meta(c, b.len - 8, &d, &key, &klen, NULL), 0);
    assert_int_equal(d->stored_us, o->request_time * 1000000);
    assert_int_equal(klen, 1);
    cache_obj_unref(&d);
    free(key);
    free(c);
    cache_obj_unref(&o);
    buf_fini(&b);
}

static void test_seal(void **state)
{
    (void)state;
    uint8_t v[CACHE_SEAL_LEN + 300 + 1], c[sizeof(v)];
    const size_t n = sizeof(v) - 1, plen = n - CACHE_SEAL_LEN;
    const char *why = NULL;
    uint64_t total = 0;

    for (size_t i = 0; i < plen; i++)
        v[CACHE_SEAL_LEN + i] = (uint8_t)(i * 31 + 7);
    cache_pack_seal(v, plen);
    assert_memory_equal(v, "MCSV", 4);
    assert_int_equal(cache_pack_unseal(v, n, &why), 0);
    assert_int_equal(cache_pack_seal_len(v, CACHE_SEAL_LEN, &total, &why), 0);
    assert_int_equal(total, n);
    /* The checksum is the one L2 headers use, over the length field and the payload. */
    assert_int_equal(cache_pack_sum(v + 16, n - 16), XXH3_64bits(v + 16, n - 16));

    for (size_t i = 0; i < n; i++) {
        for (unsigned m = 1; m < 256; m <<= 1) { /* every bit of every byte */
            memcpy(c, v, n);
            c[i] ^= (uint8_t)m;
            why = NULL;
            assert_int_equal(cache_pack_unseal(c, n, &why), -EBADMSG);
            assert_non_null(why);
        }
        memcpy(c, v, n);
        c[i] ^= 0xff;
        assert_int_equal(cache_pack_unseal(c, n, &why), -EBADMSG);
    }
    for (size_t k = 0; k < n; k++) {
        assert_int_equal(cache_pack_unseal(v, k, &why), -EBADMSG);
        assert_string_equal(why, k < CACHE_SEAL_LEN ? "shorter than its frame" : "cut short");
    }
    memcpy(c, v, n);
    c[n] = 0;
    assert_int_equal(cache_pack_unseal(c, n + 1, &why), -EBADMSG);
    assert_string_equal(why, "longer than its declared length");
    /* An empty payload is a valid value. */
    cache_pack_seal(c, 0);
    assert_int_equal(cache_pack_unseal(c, CACHE_SEAL_LEN, &why), 0);
    /* A declared length that would overflow the total. */
    memcpy(c, v, n);
    memset(c + 16, 0xff, 8);
    assert_int_equal(cache_pack_seal_len(c, n, &total, &why), -EBADMSG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_truncated_and_corrupt),
        cmocka_unit_test(test_seal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
