/* tests/unit/http/test_http_range.c: http_range_answer(), the one answer to Range and
 * If-Range (RFC 9110 §13.1.5, §14) for the edge and the origin. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "http/http_parse.h"
#include "http/http_range.h"

static char reqbuf[4096];
static struct http_request req;

static const struct http_request *mkreq(const char *method, const char *hdrs)
{
    struct http_limits lim;
    const char *m;
    int n = snprintf(reqbuf, sizeof(reqbuf), "%s / HTTP/1.1\r\nHost: a\r\n%s\r\n", method, hdrs);

    http_limits_default(&lim);
    assert_int_equal(http_parse_request(reqbuf, (size_t)n, &lim, &req, &m), n);
    return &req;
}

#define ETAG "\"v1\""
#define LM 1700000000 /* Tue, 14 Nov 2023 22:13:20 GMT */

struct rcase {
    const char *method, *hdrs;
    uint64_t size;
    int status;
    uint64_t first, len;
    const char *cr;
};

static void check(const struct rcase *c, const char *etag, int64_t lm)
{
    struct http_range_answer a;

    memset(&a, 0xa5, sizeof(a));
    http_range_answer(mkreq(c->method, c->hdrs), c->size, etag, etag ? strlen(etag) : 0, lm, &a);
    if (a.status != c->status || a.first != c->first || a.len != c->len ||
        strcmp(a.content_range, c->cr) != 0)
        fail_msg("%s [%s] size %llu: got %d %llu+%llu \"%s\", want %d %llu+%llu \"%s\"", c->method,
                 c->hdrs, (unsigned long long)c->size, a.status, (unsigned long long)a.first,
                 (unsigned long long)a.len, a.content_range, c->status,
                 (unsigned long long)c->first, (unsigned long long)c->len, c->cr);
}

static void run(const struct rcase *cs, size_t n, const char *etag, int64_t lm)
{
    for (size_t i = 0; i < n; i++)
        check(&cs[i], etag, lm);
}

/* RFC 9110 §14.1.2 examples and the forms of a single byte range. */
static void test_single_ranges(void **state)
{
    static const struct rcase cs[] = {
        {"GET", "", 10000, 200, 0, 10000, ""},
        {"GET", "Range: bytes=0-499\r\n", 10000, 206, 0, 500, "bytes 0-499/10000"},
        {"GET", "Range: bytes=500-999\r\n", 10000, 206, 500, 500, "bytes 500-999/10000"},
        {"GET", "Range: bytes=9500-\r\n", 10000, 206, 9500, 500, "bytes 9500-9999/10000"},
        {"GET", "Range: bytes=-500\r\n", 10000, 206, 9500, 500, "bytes 9500-9999/10000"},
        {"GET", "Range: bytes=0-0\r\n", 10000, 206, 0, 1, "bytes 0-0/10000"},
        {"GET", "Range: bytes=9999-9999\r\n", 10000, 206, 9999, 1, "bytes 9999-9999/10000"},
        /* a last-pos past the end runs to the end (§14.1.2) */
        {"GET", "Range: bytes=9000-20000\r\n", 10000, 206, 9000, 1000, "bytes 9000-9999/10000"},
        /* a suffix longer than the representation is all of it */
        {"GET", "Range: bytes=-20000\r\n", 10000, 206, 0, 10000, "bytes 0-9999/10000"},
        /* the unit is case-insensitive (§14.1), whitespace around the spec is OWS */
        {"GET", "Range: BYTES=1-2\r\n", 10, 206, 1, 2, "bytes 1-2/10"},
        {"GET", "Range: bytes= 1-2 \r\n", 10, 206, 1, 2, "bytes 1-2/10"},
        /* a number too large for 64 bits saturates: still the last byte */
        {"GET", "Range: bytes=5-99999999999999999999999\r\n", 10, 206, 5, 5, "bytes 5-9/10"},
    };
    (void)state;
    run(cs, sizeof(cs) / sizeof(cs[0]), ETAG, LM);
}

/* §14.1.1, §15.5.17: unsatisfiable → 416 with the unsatisfied-range form. */
static void test_unsatisfiable(void **state)
{
    static const struct rcase cs[] = {
        {"GET", "Range: bytes=10000-\r\n", 10000, 416, 0, 0, "bytes */10000"},
        {"GET", "Range: bytes=10000-10005\r\n", 10000, 416, 0, 0, "bytes */10000"},
        {"GET", "Range: bytes=-0\r\n", 10000, 416, 0, 0, "bytes */10000"},
        {"GET", "Range: bytes=0-\r\n", 0, 416, 0, 0, "bytes */0"},
        {"GET", "Range: bytes=-5\r\n", 0, 416, 0, 0, "bytes */0"},
        {"GET", "Range: bytes=99999999999999999999-\r\n", 10, 416, 0, 0, "bytes */10"},
    };
    (void)state;
    run(cs, sizeof(cs) / sizeof(cs[0]), ETAG, LM);
}

/* A Range that is ignored gets the whole representation (§14.2): another unit, bad
 * syntax, last < first, and several ranges (no multipart answers). */
static void test_ignored(void **state)
{
    static const struct rcase cs[] = {
        {"GET", "Range: items=0-5\r\n", 100, 200, 0, 100, ""},
        {"GET", "Range: bytes=5-1\r\n", 100, 200, 0, 100, ""},
        {"GET", "Range: bytes=a-b\r\n", 100, 200, 0, 100, ""},
        {"GET", "Range: bytes=\r\n", 100, 200, 0, 100, ""},
        {"GET", "Range: bytes=-\r\n", 100, 200, 0, 100, ""},
        {"GET", "Range: bytes=5\r\n", 100, 200, 0, 100, ""},
        {"GET", "Range: bytes 0-5\r\n", 100, 200, 0, 100, ""},
        {"GET", "Range: bytes=0-1,5-6\r\n", 100, 200, 0, 100, ""},
        {"GET", "Range: bytes=0-1, -5\r\n", 100, 200, 0, 100, ""},
        /* several ranges even when one is unsatisfiable: ignored, not 416 */
        {"GET", "Range: bytes=0-1,500-\r\n", 100, 200, 0, 100, ""},
        /* range handling is defined for GET only (§14.2) */
        {"HEAD", "Range: bytes=0-1\r\n", 100, 200, 0, 100, ""},
        {"POST", "Range: bytes=0-1\r\n", 100, 200, 0, 100, ""},
        {"HEAD", "Range: bytes=500-\r\n", 100, 200, 0, 100, ""},
    };
    (void)state;
    run(cs, sizeof(cs) / sizeof(cs[0]), ETAG, LM);
}

/* §13.1.5: If-Range with an entity-tag is a strong comparison; with a date, equality
 * with Last-Modified; no match, or no Range: the whole representation. */
static void test_if_range(void **state)
{
    static const struct rcase cs[] = {
        {"GET", "Range: bytes=0-4\r\nIf-Range: \"v1\"\r\n", 100, 206, 0, 5, "bytes 0-4/100"},
        {"GET", "Range: bytes=0-4\r\nIf-Range: \"v2\"\r\n", 100, 200, 0, 100, ""},
        {"GET", "Range: bytes=0-4\r\nIf-Range: W/\"v1\"\r\n", 100, 200, 0, 100, ""},
        {"GET", "Range: bytes=0-4\r\nIf-Range: \"v1\r\n", 100, 200, 0, 100, ""},
        {"GET", "Range: bytes=0-4\r\nIf-Range: Tue, 14 Nov 2023 22:13:20 GMT\r\n", 100, 206, 0, 5,
         "bytes 0-4/100"},
        {"GET", "Range: bytes=0-4\r\nIf-Range: Tue, 14 Nov 2023 22:13:19 GMT\r\n", 100, 200, 0, 100,
         ""},
        {"GET", "Range: bytes=0-4\r\nIf-Range: Tue, 14 Nov 2023 22:13:21 GMT\r\n", 100, 200, 0, 100,
         ""},
        {"GET", "Range: bytes=0-4\r\nIf-Range: garbage\r\n", 100, 200, 0, 100, ""},
        /* a failed If-Range ignores the Range, an unsatisfiable one included: 200 not 416 */
        {"GET", "Range: bytes=500-\r\nIf-Range: \"v2\"\r\n", 100, 200, 0, 100, ""},
        {"GET", "Range: bytes=500-\r\nIf-Range: \"v1\"\r\n", 100, 416, 0, 0, "bytes */100"},
        /* If-Range without Range is ignored */
        {"GET", "If-Range: \"v2\"\r\n", 100, 200, 0, 100, ""},
    };
    (void)state;
    run(cs, sizeof(cs) / sizeof(cs[0]), ETAG, LM);
}

/* A weak stored entity-tag never matches, even an identical If-Range (§13.1.5 needs a
 * strong comparison); no validators at all: nothing matches. */
static void test_if_range_weak_or_missing_validators(void **state)
{
    static const struct rcase weak[] = {
        {"GET", "Range: bytes=0-4\r\nIf-Range: W/\"v1\"\r\n", 100, 200, 0, 100, ""},
        {"GET", "Range: bytes=0-4\r\nIf-Range: \"v1\"\r\n", 100, 200, 0, 100, ""},
        {"GET", "Range: bytes=0-4\r\n", 100, 206, 0, 5, "bytes 0-4/100"},
    };
    static const struct rcase none[] = {
        {"GET", "Range: bytes=0-4\r\nIf-Range: \"v1\"\r\n", 100, 200, 0, 100, ""},
        {"GET", "Range: bytes=0-4\r\nIf-Range: Tue, 14 Nov 2023 22:13:20 GMT\r\n", 100, 200, 0, 100,
         ""},
        {"GET", "Range: bytes=0-4\r\n", 100, 206, 0, 5, "bytes 0-4/100"},
    };
    (void)state;
    run(weak, sizeof(weak) / sizeof(weak[0]), "W/\"v1\"", LM);
    run(none, sizeof(none) / sizeof(none[0]), NULL, -1);
}

/* A date that begins with 'W' is a date, not a weak entity-tag. */
static void test_if_range_wednesday(void **state)
{
    static const struct rcase cs[] = {
        {"GET", "Range: bytes=0-4\r\nIf-Range: Wed, 15 Nov 2023 22:13:20 GMT\r\n", 100, 206, 0, 5,
         "bytes 0-4/100"},
        {"GET", "Range: bytes=0-4\r\nIf-Range: Wed, 15 Nov 2023 22:13:21 GMT\r\n", 100, 200, 0, 100,
         ""},
    };
    (void)state;
    run(cs, sizeof(cs) / sizeof(cs[0]), ETAG, LM + 86400);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_ranges),
        cmocka_unit_test(test_unsatisfiable),
        cmocka_unit_test(test_ignored),
        cmocka_unit_test(test_if_range),
        cmocka_unit_test(test_if_range_weak_or_missing_validators),
        cmocka_unit_test(test_if_range_wednesday),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
