/* tests/unit/edge/test_edge_range.c: edge__range_answer, the one Range answer of complete
 * and streaming responses (RFC 9110 §14): no Range (whole), one satisfiable range (206 with
 * Content-Range: bytes first-last/size), a suffix range, a range past the end (416 with
 * Content-Range: bytes * /size), ranges that are ignored (several ranges, other units,
 * bad syntax), If-Range with a matching, a weak and a different entity-tag, and with a
 * date (§13.1.5: only a date equal to Last-Modified), and HEAD (§14.2: no range). The
 * rules themselves are http_range_answer()'s (tests/unit/http/test_http_range.c); these
 * check the edge's use of them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "edge/edge_int.h"
#include "http/http_parse.h"

#define D 1700000000LL
#define D_STR "Tue, 14 Nov 2023 22:13:20 GMT"
#define D_M10 "Tue, 14 Nov 2023 22:13:10 GMT"

static char reqbuf[4096];
static struct http_request req;

static const char *method = "GET";

static const struct http_request *mkreq(const char *hdrs)
{
    struct http_limits lim;
    const char *m;
    int n = snprintf(reqbuf, sizeof(reqbuf), "%s / HTTP/1.1\r\nHost: a\r\n%s\r\n", method, hdrs);

    http_limits_default(&lim);
    assert_int_equal(http_parse_request(reqbuf, (size_t)n, &lim, &req, &m), n);
    return &req;
}

/* The answer for hdrs on a 1000-byte body whose validators are etag / last_modified;
 * *cr gets the Content-Range line appended ("" when none). */
static int answer(const char *hdrs, const char *etag, int64_t lm, uint64_t *first, uint64_t *last,
                  char *cr, size_t crlen)
{
    struct cache_obj o;
    struct buf h;

    memset(&o, 0, sizeof(o));
    o.etag = (char *)etag;
    o.info.last_modified = lm;
    buf_init(&h, 4096);
    *first = *last = 12345;
    int rc = edge__range_answer(mkreq(hdrs), &o, 1000, first, last, &h);
    snprintf(cr, crlen, "%.*s", (int)h.len, h.data ? h.data : "");
    buf_fini(&h);
    return rc;
}

static void test_no_range(void **state)
{
    uint64_t f, l;
    char cr[128];
    (void)state;
    assert_int_equal(answer("", NULL, -1, &f, &l, cr, sizeof(cr)), 0);
    assert_string_equal(cr, "");
}

static void test_one_range(void **state)
{
    uint64_t f, l;
    char cr[128];
    (void)state;
    assert_int_equal(answer("Range: bytes=10-19\r\n", NULL, -1, &f, &l, cr, sizeof(cr)), 206);
    assert_int_equal(f, 10);
    assert_int_equal(l, 19);
    assert_string_equal(cr, "Content-Range: bytes 10-19/1000\r\n");
    /* An end past the body is cut to the last byte. */
    assert_int_equal(answer("Range: bytes=990-5000\r\n", NULL, -1, &f, &l, cr, sizeof(cr)), 206);
    assert_string_equal(cr, "Content-Range: bytes 990-999/1000\r\n");
    /* Suffix: the last 100 bytes. */
    assert_int_equal(answer("Range: bytes=-100\r\n", NULL, -1, &f, &l, cr, sizeof(cr)), 206);
    assert_int_equal(f, 900);
    assert_int_equal(l, 999);
}

static void test_unsatisfiable(void **state)
{
    uint64_t f, l;
    char cr[128];
    (void)state;
    assert_int_equal(answer("Range: bytes=1000-\r\n", NULL, -1, &f, &l, cr, sizeof(cr)), 416);
    assert_string_equal(cr, "Content-Range: bytes */1000\r\n");
}

static void test_ignored(void **state)
{
    uint64_t f, l;
    char cr[128];
    (void)state;
    assert_int_equal(answer("Range: bytes=0-1,5-6\r\n", NULL, -1, &f, &l, cr, sizeof(cr)), 0);
    assert_string_equal(cr, "");
    assert_int_equal(answer("Range: items=0-1\r\n", NULL, -1, &f, &l, cr, sizeof(cr)), 0);
    assert_int_equal(answer("Range: bytes=abc\r\n", NULL, -1, &f, &l, cr, sizeof(cr)), 0);
    assert_string_equal(cr, "");
}

static void test_if_range(void **state)
{
    uint64_t f, l;
    char cr[128];
    (void)state;
    assert_int_equal(answer("Range: bytes=0-0\r\nIf-Range: \"v1\"\r\n", "\"v1\"", -1, &f, &l, cr,
                            sizeof(cr)),
                     206);
    /* Another tag, or a weak one (strong comparison only): the whole body, no Content-Range. */
    assert_int_equal(answer("Range: bytes=0-0\r\nIf-Range: \"v2\"\r\n", "\"v1\"", -1, &f, &l, cr,
                            sizeof(cr)),
                     0);
    assert_string_equal(cr, "");
    assert_int_equal(answer("Range: bytes=0-0\r\nIf-Range: W/\"v1\"\r\n", "W/\"v1\"", -1, &f, &l,
                            cr, sizeof(cr)),
                     0);
    /* A date: only one equal to Last-Modified. */
    assert_int_equal(answer("Range: bytes=0-0\r\nIf-Range: " D_STR "\r\n", NULL, D, &f, &l, cr,
                            sizeof(cr)),
                     206);
    assert_int_equal(answer("Range: bytes=0-0\r\nIf-Range: " D_M10 "\r\n", NULL, D, &f, &l, cr,
                            sizeof(cr)),
                     0);
    /* Unsatisfiable but If-Range failed: the whole body, not 416. */
    assert_int_equal(answer("Range: bytes=5000-\r\nIf-Range: \"v2\"\r\n", "\"v1\"", -1, &f, &l, cr,
                            sizeof(cr)),
                     0);
}

/* RFC 9110 §14.2: range handling is defined for GET only; a HEAD gets the 200's fields. */
static void test_head_ignores_range(void **state)
{
    uint64_t f, l;
    char cr[128];
    (void)state;
    method = "HEAD";
    int rc = answer("Range: bytes=0-9\r\n", NULL, -1, &f, &l, cr, sizeof(cr));
    method = "GET";
    assert_int_equal(rc, 0);
    assert_string_equal(cr, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_range),      cmocka_unit_test(test_one_range),
        cmocka_unit_test(test_unsatisfiable), cmocka_unit_test(test_ignored),
        cmocka_unit_test(test_if_range),      cmocka_unit_test(test_head_ignores_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
