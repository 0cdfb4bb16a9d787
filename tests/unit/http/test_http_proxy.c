/* tests/unit/http/test_http_proxy.c: framing checks of an upstream's response head, the
 * stored header block, and the 304 merge. Each row names the rule it checks. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/http_proxy.h"

#define NOW 1700000000LL

struct frame_case {
    const char *lines;
    int status, minor, no_body;
    int rc;          /* 0 or -EPROTO */
    const char *why; /* expected reason when refused */
    int64_t cl;      /* content_length when accepted */
    int chunked;
};

static const struct frame_case frames[] = {
    /* RFC 9112 §6.3 rule 6: one Content-Length */
    {"Content-Length: 10\r\n", 200, 1, 0, 0, NULL, 10, 0},
    {"content-length:0\n", 200, 1, 0, 0, NULL, 0, 0},
    {"Content-Length: 9223372036854775807\r\n", 200, 1, 0, 0, NULL, INT64_MAX, 0},
    /* rule 5 + RFC 9110 §8.6: identical repeats (lines or a list) are one value */
    {"Content-Length: 5\r\nContent-Length: 5\r\n", 200, 1, 0, 0, NULL, 5, 0},
    {"Content-Length: 5, 5\r\n", 200, 1, 0, 0, NULL, 5, 0},
    {"Content-Length: 5,,5\r\n", 200, 1, 0, 0, NULL, 5, 0},
    /* rule 5: anything else is an unrecoverable error */
    {"Content-Length: 5\r\nContent-Length: 10\r\n", 200, 1, 0, -EPROTO,
     "differing Content-Length values", 0, 0},
    {"Content-Length: 5, 10\r\n", 200, 1, 0, -EPROTO, "differing Content-Length values", 0, 0},
    {"Content-Length: +5\r\n", 200, 1, 0, -EPROTO, "invalid Content-Length", 0, 0},
    {"Content-Length: -1\r\n", 200, 1, 0, -EPROTO, "invalid Content-Length", 0, 0},
    {"Content-Length: 0x10\r\n", 200, 1, 0, -EPROTO, "invalid Content-Length", 0, 0},
    {"Content-Length: 5 5\r\n", 200, 1, 0, -EPROTO, "invalid Content-Length", 0, 0},
    {"Content-Length:\r\n", 200, 1, 0, -EPROTO, "invalid Content-Length", 0, 0},
    {"Content-Length: 5\r\nContent-Length: ,\r\n", 200, 1, 0, -EPROTO, "invalid Content-Length", 0,
     0},
    {"Content-Length: 9223372036854775808\r\n", 200, 1, 0, -EPROTO, "invalid Content-Length", 0, 0},
    /* ... whether or not a body follows: such a head is broken either way */
    {"Content-Length: 5, 10\r\n", 304, 1, 1, -EPROTO, "differing Content-Length values", 0, 0},
    /* rule 3: Transfer-Encoding with Content-Length is handled as an error */
    {"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", 200, 1, 0, -EPROTO,
     "Transfer-Encoding with Content-Length", 0, 0},
    {"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", 200, 1, 1, -EPROTO,
     "Transfer-Encoding with Content-Length", 0, 0},
    /* rule 4: chunked, once and final; nothing else is decoded here */
    {"Transfer-Encoding: chunked\r\n", 200, 1, 0, 0, NULL, -1, 1},
    {"Transfer-Encoding: CHUNKED\r\n", 200, 1, 0, 0, NULL, -1, 1},
    {"Transfer-Encoding: gzip, chunked\r\n", 200, 1, 0, -EPROTO, "unsupported transfer coding", 0,
     0},
    {"Transfer-Encoding: chunked, gzip\r\n", 200, 1, 0, -EPROTO, "unsupported transfer coding", 0,
     0},
    {"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", 200, 1, 0, -EPROTO,
     "unsupported transfer coding", 0, 0},
    {"Transfer-Encoding: chunked;q=1\r\n", 200, 1, 0, -EPROTO, "unsupported transfer coding", 0, 0},
    {"Transfer-Encoding:\r\n", 200, 1, 0, -EPROTO, "unsupported transfer coding", 0, 0},
    /* rule 1: a HEAD response or a 304 may describe a coding it does not apply */
    {"Transfer-Encoding: gzip, chunked\r\n", 200, 1, 1, 0, NULL, -1, 0},
    /* §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing */
    {"Transfer-Encoding: chunked\r\n", 200, 0, 0, -EPROTO, "Transfer-Encoding in HTTP/1.0", 0, 0},
    /* rule 8: no framing field, the close ends the body */
    {"X-A: b\r\n", 200, 1, 0, 0, NULL, -1, 0},
    {"", 200, 0, 0, 0, NULL, -1, 0},
    /* §5.1 / §5.2 / RFC 9110 §5.5: field lines */
    {"Content-Length : 5\r\n", 200, 1, 0, -EPROTO, "invalid field name", 0, 0},
    {"X-A: b\r\n continued\r\n", 200, 1, 0, -EPROTO, "obs-fold", 0, 0},
    {"X-A: b\r\n\tcontinued\r\n", 200, 1, 0, -EPROTO, "obs-fold", 0, 0},
    {": empty name\r\n", 200, 1, 0, -EPROTO, "invalid field line", 0, 0},
    {"no colon\r\n", 200, 1, 0, -EPROTO, "invalid field line", 0, 0},
    {"\r\n", 200, 1, 0, -EPROTO, "invalid field line", 0, 0},
    {"X(A): b\r\n", 200, 1, 0, -EPROTO, "invalid field name", 0, 0},
    {"X-A: b\rContent-Length: 0\r\n", 200, 1, 0, -EPROTO, "CR or NUL in a field value", 0, 0},
};

static void test_framing(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(frames) / sizeof(frames[0]); i++) {
        const struct frame_case *c = &frames[i];
        struct http_proxy_resp r;
        const char *why = NULL;
        int rc = http_proxy_resp_parse(&r, c->status, c->minor, c->no_body, c->lines,
                                       strlen(c->lines), NOW, &why);
        if (rc != c->rc)
            fail_msg("case %zu (%s): rc %d, want %d (%s)", i, c->lines, rc, c->rc, why ? why : "-");
        if (rc != 0) {
            assert_non_null(why);
            assert_string_equal(why, c->why);
            continue;
        }
        assert_int_equal(r.content_length, c->cl);
        assert_int_equal(r.chunked, c->chunked);
        http_proxy_resp_fini(&r);
    }
}

static void test_nul_in_value(void **state)
{
    static const char lines[] = "X-A: a\0b\r\n";
    struct http_proxy_resp r;
    const char *why = NULL;

    (void)state;
    assert_int_equal(http_proxy_resp_parse(&r, 200, 1, 0, lines, sizeof(lines) - 1, NOW, &why),
                     -EPROTO);
    assert_string_equal(why, "CR or NUL in a field value");
}

static void test_stored_block(void **state)
{
    static const char lines[] =
        "Date: Tue, 14 Nov 2023 22:13:20 GMT\r\n"
        "Content-Type: application/octet-stream\n" /* a bare LF ends a line too */
        "Content-Length: 3\r\n"
        "Connection: keep-alive, X-Hop\r\n"
        "Keep-Alive: timeout=5\r\n"
        "X-Hop: 1\r\n"
        "Age: 100\r\n"
        "Surrogate-Control: max-age=60\r\n"
        "X-Cache: HIT\r\n"
        "Cache-Status: parent; hit\r\n"
        "ETag:   \"v1\"  \r\n"
        "Vary: Accept-Encoding, X-Model\r\n"
        "Cache-Control: max-age=600\r\n"
        "Connection: x-late\r\n"
        "X-Late: gone\r\n";
    struct http_proxy_resp r;
    const char *why = NULL;

    (void)state;
    assert_int_equal(http_proxy_resp_parse(&r, 200, 1, 0, lines, sizeof(lines) - 1, NOW, &why), 0);
    assert_string_equal(r.hdrs, "Date: Tue, 14 Nov 2023 22:13:20 GMT\r\n"
                                "Content-Type: application/octet-stream\r\n"
                                "Cache-Status: parent; hit\r\n"
                                "ETag: \"v1\"\r\n"
                                "Vary: Accept-Encoding, X-Model\r\n"
                                "Cache-Control: max-age=600\r\n");
    assert_int_equal(r.hdrs_len, strlen(r.hdrs));
    assert_string_equal(r.etag, "\"v1\"");
    assert_string_equal(r.vary, "accept-encoding,x-model");
    assert_int_equal(r.content_length, 3);
    /* Every field feeds the caching facts, stored or not (Age, Surrogate-Control). */
    assert_int_equal(r.info.status, 200);
    assert_int_equal(r.info.cc.max_age, 600);
    assert_int_equal(r.info.age, 100);
    assert_true(r.info.surrogate.present);
    assert_int_equal(r.info.date, NOW);
    assert_true(r.info.has_validator);
    http_proxy_resp_fini(&r);

    /* No fields at all: an empty block, not NULL; Date defaults to the arrival time. */
    assert_int_equal(http_proxy_resp_parse(&r, 404, 1, 0, "", 0, NOW + 5, &why), 0);
    assert_non_null(r.hdrs);
    assert_int_equal(r.hdrs_len, 0);
    assert_null(r.etag);
    assert_null(r.vary);
    assert_int_equal(r.info.date, NOW + 5);
    http_proxy_resp_fini(&r);
}

static void test_connection_list(void **state)
{
    /* Connection options are tokens: a quote does not hide the names after a comma. */
    static const char lines[] = "Connection: \"x, X-A\r\n"
                                "X-A: 1\r\n"
                                "Connection:\r\n"
                                "Connection: ,, x-b ,\r\n"
                                "X-B: 2\r\n"
                                "X-C: 3\r\n";
    struct http_proxy_resp r;
    const char *why = NULL;

    (void)state;
    assert_int_equal(http_proxy_resp_parse(&r, 200, 1, 0, lines, sizeof(lines) - 1, NOW, &why), 0);
    assert_string_equal(r.hdrs, "X-C: 3\r\n");
    http_proxy_resp_fini(&r);
}

static void test_merge_304(void **state)
{
    static const char old[] = "Content-Type: text/plain\r\n"
                              "ETag: \"v1\"\r\n"
                              "Cache-Control: max-age=10\r\n"
                              "X-Old: keep\r\n"
                              "bad line from an older store\r\n"
                              "Transfer-Encoding: chunked\r\n" /* not a stored field */
                              "Cache-Control: no-transform\r\n";
    static const char fresh[] = "ETag: \"v1\"\r\n"
                                "Cache-Control: max-age=600\r\n"
                                "Content-Length: 99\r\n" /* describes nothing stored */
                                "Connection: close\r\n"
                                "X-New: 1\r\n";
    size_t n = 0;
    char *m;

    (void)state;
    m = http_proxy_merge_304(old, sizeof(old) - 1, fresh, sizeof(fresh) - 1, &n);
    assert_non_null(m);
    /* Every stored Cache-Control line is replaced by the 304's (RFC 9111 §3.2). */
    assert_string_equal(m, "Content-Type: text/plain\r\n"
                           "X-Old: keep\r\n"
                           "ETag: \"v1\"\r\n"
                           "Cache-Control: max-age=600\r\n"
                           "X-New: 1\r\n");
    assert_int_equal(n, strlen(m));
    free(m);

    /* A 304 with broken framing merges nothing. */
    assert_null(http_proxy_merge_304(old, sizeof(old) - 1, "Content-Length: 1, 2\r\n", 22, &n));
}

static void test_too_large(void **state)
{
    /* "a:\n" grows to "a: \r\n": past HTTP_PROXY_HDRS_MAX the head is refused whole. */
    size_t n = HTTP_PROXY_HDRS_MAX, len = 0;
    char *lines = malloc(n);
    struct http_proxy_resp r;
    const char *why = NULL;

    (void)state;
    assert_non_null(lines);
    while (len + 3 <= n) {
        memcpy(lines + len, "a:\n", 3);
        len += 3;
    }
    assert_int_equal(http_proxy_resp_parse(&r, 200, 1, 0, lines, len, NOW, &why), -E2BIG);
    assert_string_equal(why, "header block too large");
    free(lines);
}

static void test_hop_by_hop(void **state)
{
    (void)state;
    assert_true(http_proxy_hop_by_hop("Connection", 10));
    assert_true(http_proxy_hop_by_hop("TRANSFER-ENCODING", 17));
    assert_true(http_proxy_hop_by_hop("te", 2));
    assert_false(http_proxy_hop_by_hop("tee", 3));
    assert_false(http_proxy_hop_by_hop("Content-Length", 14));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_framing),      cmocka_unit_test(test_nul_in_value),
        cmocka_unit_test(test_stored_block), cmocka_unit_test(test_connection_list),
        cmocka_unit_test(test_merge_304),    cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_hop_by_hop),
    };

    return cmocka_run_group_tests_name("http_proxy", tests, NULL, NULL);
}
