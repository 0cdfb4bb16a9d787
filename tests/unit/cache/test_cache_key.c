/* tests/unit/cache/test_cache_key.c: key normalisation, Vary lines and the hash. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cache/cache_key.h"

static struct http_str S(const char *s) {
    struct http_str r = {s, strlen(s)};
    return r;
}

struct key_case {
    const char *host, *path, *query, *want; /* want NULL: -EINVAL */
};

static const char *const ignore[] = {"utm_source", "fbclid"};

static const struct key_case key_cases[] = {
    {"Example.COM", "/a", "", "example.com/a"},
    {"example.com:80", "/a", "", "example.com/a"},
    {"example.com:8080", "/a", "", "example.com:8080/a"},
    {"example.com", "", "", "example.com/"},
    {"h", "/m.onnx", "b=2&a=1", "h/m.onnx?a=1&b=2"},
    {"h", "/", "b=2&a=1&b=1&a=0", "h/?a=1&a=0&b=2&b=1"}, /* stable for duplicates */
    {"h", "/", "a&b=&a=", "h/?a&a=&b="},
    {"h", "/", "ab=1&a=2", "h/?a=2&ab=1"}, /* name, not "name=" order */
    {"h", "/", "utm_source=x&z=1&fbclid=9", "h/?z=1"},
    {"h", "/", "utm_source=x&fbclid=9", "h/"}, /* no '?' when nothing is left */
    {"h", "/", "&&z=1&", "h/?z=1"},
    {"h", "/", "UTM_SOURCE=x", "h/?UTM_SOURCE=x"}, /* names are case-sensitive */
    {"h", "/%7euser/%41%2f%2F%3a", "", "h/~user/A%2F%2F%3A"},
    {"h", "/a%20b", "q=%7e%2c", "h/a%20b?q=~%2C"},
    {"h", "/", "%61=1&b=2&a=0", "h/?a=1&a=0&b=2"}, /* sorted after normalising */
    {"h", "/a%", "", NULL},
    {"h", "/a%4", "", NULL},
    {"h", "/a%zz", "", NULL},
    {"h", "/", "a=%g1", NULL},
};

static void test_primary(void **state)
{
    struct cache_key_opts opts = {ignore, 2};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(key_cases) / sizeof(key_cases[0]); i++) {
        const struct key_case *kc = &key_cases[i];
        struct buf b;
        int rc;

        buf_init(&b, 4096);
        rc = cache_key_primary(&b, S(kc->host), S(kc->path), S(kc->query), &opts);
        if (kc->want == NULL) {
            assert_int_equal(rc, -EINVAL);
            assert_int_equal(b.len, 0);
        } else {
            assert_int_equal(rc, 0);
            if (strcmp(b.data, kc->want) != 0)
                print_error("case %zu: got %s want %s\n", i, b.data, kc->want);
            assert_string_equal(b.data, kc->want);
        }
        buf_fini(&b);
    }
}

static void test_primary_cap_and_many_params(void **state)
{
    struct buf b;
    char q[4000];
    size_t i, o = 0;

    (void)state;
    buf_init(&b, 8);
    assert_int_equal(cache_key_primary(&b, S("example.com"), S("/"), S(""), NULL), -E2BIG);
    assert_int_equal(b.len, 0);
    buf_fini(&b);
    /* More parameters than the on-stack arrays hold, in reverse order. */
    for (i = 0; i < 300; i++)
        o += (size_t)snprintf(q + o, sizeof(q) - o, "%sp%03zu=%zu", i ? "&" : "", 299 - i, i);
    buf_init(&b, 1 << 16);
    assert_int_equal(cache_key_primary(&b, S("h"), S("/"), S(q), NULL), 0);
    assert_memory_equal(b.data, "h/?p000=299&p001=298&", 21);
    buf_fini(&b);
}

static struct http_request req_with(const char *const *hv, size_t n)
{
    struct http_request r;
    size_t i;

    memset(&r, 0, sizeof(r));
    for (i = 0; i < n; i++) {
        r.headers[i].name = S(hv[2 * i]);
        r.headers[i].value = S(hv[2 * i + 1]);
    }
    r.nheaders = n;
    return r;
}

static void vary_is(const struct http_request *r, const char *name, const char *want)
{
    struct buf b;

    buf_init(&b, 4096);
    assert_int_equal(cache_key_vary_append(&b, r, name, strlen(name)), 0);
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    buf_fini(&b);
}

static void test_vary(void **state)
{
    static const char *const h1[] = {"Accept-Encoding", "gzip ,  br", "X-A",     "a   b\t c",
                                     "accept-encoding", "zstd",       "X-Empty", ""};
    struct http_request r = req_with(h1, 4);
    struct buf b;

    (void)state;
    vary_is(&r, "Accept-Encoding", "\naccept-encoding:gzip,br,zstd");
    vary_is(&r, "x-a", "\nx-a:a b c");
    /* Absent and empty differ (RFC 9111 §4.1). */
    vary_is(&r, "X-Empty", "\nx-empty:");
    vary_is(&r, "X-Absent", "\nx-absent:\x01");
    buf_init(&b, 10);
    assert_int_equal(cache_key_vary_append(&b, &r, "Accept-Encoding", 15), -E2BIG);
    assert_int_equal(b.len, 0);
    buf_fini(&b);
}

static void test_hash(void **state)
{
    uint8_t a[16], b[16], c[16];

    (void)state;
    cache_key_hash("h/a", 3, a);
    cache_key_hash("h/a", 3, b);
    cache_key_hash("h/b", 3, c);
    assert_memory_equal(a, b, 16);
    assert_memory_not_equal(a, c, 16);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_primary),
        cmocka_unit_test(test_primary_cap_and_many_params),
        cmocka_unit_test(test_vary),
        cmocka_unit_test(test_hash),
    };

    return cmocka_run_group_tests_name("cache_key", tests, NULL, NULL);
}
