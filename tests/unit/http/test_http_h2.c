/* tests/unit/http/test_http_h2.c: the HTTP/1.1 head an HTTP/2 request becomes
 * (http__h2_head), checked through the parser that reads it: what an HTTP/2 client sends is
 * described and validated exactly as the same request over HTTP/1.1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "http/http_parse.h"
#include "http/http_server_int.h"

static int build(struct buf *b, const char *method, const char *path, const char *host,
                 const char *fields, int unknown_len)
{
    return http__h2_head(b, method, strlen(method), path, strlen(path), host,
                         host ? strlen(host) : 0, fields, strlen(fields), unknown_len);
}

static int parse(struct buf *b, struct http_request *r, const char **msg)
{
    struct http_limits lim;

    http_limits_default(&lim);
    return http_parse_request(b->data, b->len, &lim, r, msg);
}

static int str_is(struct http_str s, const char *want)
{
    return s.len == strlen(want) && memcmp(s.p, want, s.len) == 0;
}

static void test_get_with_authority(void **state)
{
    struct buf b;
    struct http_request r;
    const char *msg = NULL;

    (void)state;
    buf_init(&b, 65536);
    assert_int_equal(build(&b, "GET", "/models/a.bin?x=1", "edge.test",
                           "accept: */*\r\nrange: bytes=0-9\r\n", 0),
                     0);
    assert_int_equal(parse(&b, &r, &msg), (int)b.len);
    assert_int_equal(r.method, HTTP_M_GET);
    assert_true(str_is(r.path, "/models/a.bin"));
    assert_true(str_is(r.host, "edge.test"));
    assert_int_equal(r.version_minor, 1);
    assert_int_equal(r.chunked, 0);
    assert_true(r.content_length <= 0);
    buf_fini(&b);
}

static void test_body_without_length_is_chunked(void **state)
{
    struct buf b;
    struct http_request r;
    const char *msg = NULL;

    (void)state;
    buf_init(&b, 65536);
    assert_int_equal(build(&b, "POST", "/up", "edge.test", "content-type: a/b\r\n", 1), 0);
    assert_int_equal(parse(&b, &r, &msg), (int)b.len);
    assert_int_equal(r.method, HTTP_M_POST);
    assert_int_equal(r.chunked, 1);
    buf_reset(&b);
    assert_int_equal(build(&b, "POST", "/up", "edge.test", "content-length: 12\r\n", 0), 0);
    assert_int_equal(parse(&b, &r, &msg), (int)b.len);
    assert_int_equal(r.content_length, 12);
    buf_fini(&b);
}

static void test_parser_rules_apply(void **state)
{
    struct buf b;
    struct http_request r;
    const char *msg = NULL;
    char longpath[9001];

    (void)state;
    buf_init(&b, 65536);
    /* No :authority and no host: HTTP/1.1 requires Host (400). */
    assert_int_equal(build(&b, "GET", "/", NULL, "", 0), 0);
    assert_int_equal(parse(&b, &r, &msg), -400);
    /* A URI over the limit: 414, as over HTTP/1.1. */
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    buf_reset(&b);
    assert_int_equal(build(&b, "GET", longpath, "edge.test", "", 0), 0);
    assert_int_equal(parse(&b, &r, &msg), -414);
    /* A method that is no token. */
    buf_reset(&b);
    assert_int_equal(build(&b, "GE(T", "/", "edge.test", "", 0), 0);
    assert_true(parse(&b, &r, &msg) < 0);
    buf_fini(&b);
}

static void test_over_cap(void **state)
{
    struct buf b;

    (void)state;
    buf_init(&b, 32);
    assert_int_equal(build(&b, "GET", "/a/rather/long/path/indeed", "edge.test", "", 0), -E2BIG);
    buf_fini(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_with_authority),
        cmocka_unit_test(test_body_without_length_is_chunked),
        cmocka_unit_test(test_parser_rules_apply),
        cmocka_unit_test(test_over_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
