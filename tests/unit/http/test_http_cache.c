/* tests/unit/http/test_http_cache.c: RFC 9111 rules, conditionals, ranges, dates.
 * Each table row names the section it checks. Times: D is the response's Date. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/http_cache.h"

#define D 1700000000LL
#define D_STR "Tue, 14 Nov 2023 22:13:20 GMT"
#define D_M10 "Tue, 14 Nov 2023 22:13:10 GMT"   /* D - 10 */
#define D_P100 "Tue, 14 Nov 2023 22:15:00 GMT"  /* D + 100 */
#define D_M1000 "Tue, 14 Nov 2023 21:56:40 GMT" /* D - 1000 */

static char reqbuf[4096];
static struct http_request req;

/* Request "GET / HTTP/1.1" (or another method) with extra header lines "A: b\r\n...". */
static const struct http_request *mkreq(const char *method, const char *hdrs)
{
    struct http_limits lim;
    const char *m;
    int n = snprintf(reqbuf, sizeof(reqbuf), "%s / HTTP/1.1\r\nHost: a\r\n%s\r\n", method, hdrs);

    http_limits_default(&lim);
    assert_int_equal(http_parse_request(reqbuf, (size_t)n, &lim, &req, &m), n);
    return &req;
}

/* Response facts from "Name: value\n" lines. */
static void mkresp(struct http_resp_info *ri, int status, const char *hdrs)
{
    const char *p = hdrs;

    http_resp_info_init(ri);
    ri->status = status;
    while (*p) {
        const char *nl = strchr(p, '\n'), *colon = strchr(p, ':'), *v;

        assert_non_null(nl);
        assert_true(colon != NULL && colon < nl);
        v = colon + 1;
        while (*v == ' ')
            v++;
        http_resp_info_add(ri, p, (size_t)(colon - p), v, (size_t)(nl - v));
        p = nl + 1;
    }
    http_resp_info_finish(ri, D);
}

/* ---- storability and freshness ---- */

struct fresh_case {
    const char *rfc;
    const char *method, *req_hdrs;
    int status;
    const char *resp_hdrs;
    int storable;
    int64_t lifetime;
};

static const struct fresh_case fresh_cases[] = {
    {"9111 4.2.1 max-age", "GET", "", 200, "Cache-Control: max-age=60\n", 1, 60},
    {"9111 4.2.1 s-maxage over max-age", "GET", "", 200,
     "Cache-Control: max-age=60, s-maxage=120\n", 1, 120},
    {"9111 4.2.1 max-age over Expires", "GET", "", 200,
     "Date: " D_STR "\nExpires: " D_P100 "\nCache-Control: max-age=5\n", 1, 5},
    {"9111 4.2.1 Expires - Date", "GET", "", 200, "Date: " D_STR "\nExpires: " D_P100 "\n", 1, 100},
    {"9111 4.2.1 Expires without Date uses receipt time", "GET", "", 200, "Expires: " D_P100 "\n",
     1, 100},
    {"9111 5.3 invalid Expires is stale", "GET", "", 200, "Date: " D_STR "\nExpires: 0\n", 1, 0},
    {"9111 5.3 Expires in the past", "GET", "", 200, "Date: " D_STR "\nExpires: " D_M10 "\n", 1, 0},
    {"9111 4.2.1 invalid max-age is stale", "GET", "", 200, "Cache-Control: max-age=abc\n", 1, 0},
    {"9111 4.2.1 max-age without value is stale", "GET", "", 200, "Cache-Control: max-age\n", 1, 0},
    {"9111 4.2.1 first max-age wins", "GET", "", 200, "Cache-Control: max-age=30, max-age=5\n", 1,
     30},
    {"9111 5.2 quoted argument accepted", "GET", "", 200, "Cache-Control: max-age=\"40\"\n", 1, 40},
    {"9111 5.2 directive names case-insensitive", "GET", "", 200, "Cache-Control: MAX-AGE=7\n", 1,
     7},
    {"9111 1.2.2 delta-seconds overflow is 2^31", "GET", "", 200,
     "Cache-Control: max-age=99999999999999999999999\n", 1, 2147483648LL},
    {"9111 4.2.1 repeated fields combine", "GET", "", 200,
     "Cache-Control: public\nCache-Control: max-age=9\n", 1, 9},
    {"9213 2.1 CDN-Cache-Control over Cache-Control", "GET", "", 200,
     "Cache-Control: max-age=10\nCDN-Cache-Control: max-age=600\n", 1, 600},
    {"9213 2.1 CDN-Cache-Control also overrides Expires", "GET", "", 200,
     "Date: " D_STR "\nExpires: " D_P100 "\nCDN-Cache-Control: public\n", 1, 0},
    {"9213 2.1 CDN no-store wins over CC", "GET", "", 200,
     "Cache-Control: max-age=60\nCDN-Cache-Control: no-store\n", 0, 60 * 0},
    {"9213 2.1 CDN-CC lets a CC-private response be stored", "GET", "", 200,
     "Cache-Control: private\nCDN-Cache-Control: max-age=30\n", 1, 30},
    {"Surrogate-Control over Cache-Control", "GET", "", 200,
     "Cache-Control: max-age=10\nSurrogate-Control: max-age=300\n", 1, 300},
    {"CDN-Cache-Control over Surrogate-Control", "GET", "", 200,
     "Surrogate-Control: max-age=300\nCDN-Cache-Control: max-age=3\n", 1, 3},
    {"9111 4.2.2 heuristic 10% of Date - Last-Modified", "GET", "", 200,
     "Date: " D_STR "\nLast-Modified: " D_M1000 "\n", 1, 100},
    {"9111 4.2.2 heuristic capped", "GET", "", 200,
     "Date: " D_STR "\nLast-Modified: Thu, 01 Jan 1970 00:00:00 GMT\n", 1, 86400},
    {"9111 4.2.2 no heuristic without Last-Modified", "GET", "", 200, "", 1, 0},
    {"9111 4.2.2 heuristic for 404", "GET", "", 404,
     "Date: " D_STR "\nLast-Modified: " D_M1000 "\n", 1, 100},
    {"9111 3 302 not heuristically cacheable", "GET", "", 302,
     "Date: " D_STR "\nLast-Modified: " D_M1000 "\n", 0, 0},
    {"9111 3 302 with max-age", "GET", "", 302, "Cache-Control: max-age=60\n", 1, 60},
    {"9111 3 500 with Expires", "GET", "", 500, "Date: " D_STR "\nExpires: " D_P100 "\n", 1, 100},
    {"9111 4.2.2 public allows heuristic for 302", "GET", "", 302,
     "Cache-Control: public\nDate: " D_STR "\nLast-Modified: " D_M1000 "\n", 1, 100},
    {"9111 5.2.2.5 no-store", "GET", "", 200, "Cache-Control: no-store, max-age=60\n", 0, 60},
    {"9111 5.2.1.5 request no-store", "GET", "Cache-Control: no-store\r\n", 200,
     "Cache-Control: max-age=60\n", 0, 60},
    {"9111 5.2.2.7 private", "GET", "", 200, "Cache-Control: private, max-age=60\n", 0, 60},
    {"9111 5.2.2.7 qualified private", "GET", "", 200,
     "Cache-Control: private=\"x-user\", max-age=60\n", 0, 60},
    {"9111 5.2.2.3 must-understand overrides no-store", "GET", "", 200,
     "Cache-Control: must-understand, no-store, max-age=60\n", 1, 60},
    {"9111 5.2.2.3 must-understand with unknown status", "GET", "", 299,
     "Cache-Control: must-understand, no-store, max-age=60\n", 0, 60},
    {"9111 3.5 Authorization", "GET", "Authorization: Basic eA==\r\n", 200,
     "Cache-Control: max-age=60\n", 0, 60},
    {"9111 3.5 Authorization with public", "GET", "Authorization: Basic eA==\r\n", 200,
     "Cache-Control: public, max-age=60\n", 1, 60},
    {"9111 3.5 Authorization with s-maxage", "GET", "Authorization: Basic eA==\r\n", 200,
     "Cache-Control: s-maxage=60\n", 1, 60},
    {"9111 3.5 Authorization with must-revalidate", "GET", "Authorization: Basic eA==\r\n", 200,
     "Cache-Control: must-revalidate, max-age=60\n", 1, 60},
    {"9111 4.1 Vary: * never matches", "GET", "", 200,
     "Cache-Control: max-age=60\nVary: Accept, *\n", 0, 60},
    {"9111 3 Vary: Accept is fine", "GET", "", 200, "Cache-Control: max-age=60\nVary: Accept\n", 1,
     60},
    {"9111 3 POST not stored", "POST", "Content-Length: 0\r\n", 200, "Cache-Control: max-age=60\n",
     0, 60},
    {"9111 3 HEAD not stored under GET", "HEAD", "", 200, "Cache-Control: max-age=60\n", 0, 60},
    {"9111 3 206 not stored", "GET", "", 206, "Cache-Control: max-age=60\n", 0, 60},
    {"9111 3 304 not stored", "GET", "", 304, "Cache-Control: max-age=60\n", 0, 60},
    {"9111 5.4 response Pragma ignored", "GET", "", 200,
     "Pragma: no-cache\nCache-Control: max-age=6\n", 1, 6},
    {"policy: Set-Cookie without explicit opt-in", "GET", "", 200,
     "Set-Cookie: a=b\nCache-Control: max-age=60\n", 0, 60},
    {"policy: Set-Cookie with s-maxage", "GET", "", 200,
     "Set-Cookie: a=b\nCache-Control: s-maxage=60\n", 1, 60},
};

static void test_storable_and_lifetime(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(fresh_cases) / sizeof(fresh_cases[0]); i++) {
        const struct fresh_case *fc = &fresh_cases[i];
        struct http_req_info qi;
        struct http_resp_info ri;
        const char *why = NULL;
        int st;
        int64_t lt;

        http_req_info_from_request(&qi, mkreq(fc->method, fc->req_hdrs));
        mkresp(&ri, fc->status, fc->resp_hdrs);
        st = http_cache_storable(&qi, &ri, &why);
        lt = http_freshness_lifetime(&ri, 86400);
        if (st != fc->storable || (fc->storable && lt != fc->lifetime))
            print_error("RFC %s: storable %d (%s) lifetime %lld\n", fc->rfc, st, why ? why : "-",
                        (long long)lt);
        assert_int_equal(st, fc->storable);
        if (!st)
            assert_non_null(why);
        else
            assert_int_equal(lt, fc->lifetime);
    }
}

/* ---- age ---- */

static void test_current_age(void **state)
{
    struct http_resp_info ri;

    (void)state;
    /* 9111 4.2.3: Age header plus response delay, plus resident time. */
    mkresp(&ri, 200, "Date: " D_STR "\nAge: 30\n");
    assert_int_equal(http_current_age(&ri, D - 2, D, D + 10), 30 + 2 + 10);
    /* apparent_age from Date when larger */
    mkresp(&ri, 200, "Date: " D_M1000 "\n");
    assert_int_equal(http_current_age(&ri, D, D, D + 5), 1000 + 5);
    /* Date in the future: apparent age 0 */
    mkresp(&ri, 200, "Date: " D_P100 "\n");
    assert_int_equal(http_current_age(&ri, D, D, D), 0);
    /* invalid Age ignored; first Age wins */
    mkresp(&ri, 200, "Date: " D_STR "\nAge: -5\nAge: 7\nAge: 9\n");
    assert_int_equal(ri.age, 7);
    mkresp(&ri, 200, "Age: 1.5\n");
    assert_int_equal(ri.age, -1);
    /* a clock going backwards counts as no resident time */
    mkresp(&ri, 200, "Date: " D_STR "\n");
    assert_int_equal(http_current_age(&ri, D, D, D - 100), 0);
}

/* ---- reuse ---- */

struct reuse_case {
    const char *rfc;
    const char *req_hdrs, *resp_hdrs;
    int64_t age;
    enum http_reuse want;
};

static const struct reuse_case reuse_cases[] = {
    {"9111 4.2 fresh", "", "Cache-Control: max-age=60\n", 10, HTTP_REUSE_FRESH},
    {"9111 4.2 stale at lifetime", "", "Cache-Control: max-age=60\n", 60, HTTP_REUSE_REVALIDATE},
    {"9111 5.2.2.4 no-cache response", "", "Cache-Control: no-cache, max-age=60\n", 1,
     HTTP_REUSE_REVALIDATE},
    {"9111 5.2.2.4 qualified no-cache response", "", "Cache-Control: no-cache=\"x\", max-age=60\n",
     1, HTTP_REUSE_REVALIDATE},
    {"9111 5.2.1.4 request no-cache", "Cache-Control: no-cache\r\n", "Cache-Control: max-age=60\n",
     1, HTTP_REUSE_REVALIDATE},
    {"9111 5.4 request Pragma no-cache", "Pragma: no-cache\r\n", "Cache-Control: max-age=60\n", 1,
     HTTP_REUSE_REVALIDATE},
    {"9111 5.4 Pragma ignored with Cache-Control",
     "Pragma: no-cache\r\nCache-Control: max-stale\r\n", "Cache-Control: max-age=60\n", 1,
     HTTP_REUSE_FRESH},
    {"9111 5.2.1.1 request max-age exceeded", "Cache-Control: max-age=5\r\n",
     "Cache-Control: max-age=60\n", 10, HTTP_REUSE_REVALIDATE},
    {"9111 5.2.1.1 request max-age ok", "Cache-Control: max-age=20\r\n",
     "Cache-Control: max-age=60\n", 10, HTTP_REUSE_FRESH},
    {"9111 5.2.1.1 request max-age=0", "Cache-Control: max-age=0\r\n",
     "Cache-Control: max-age=60\n", 0, HTTP_REUSE_REVALIDATE},
    {"9111 5.2.1.3 min-fresh unmet", "Cache-Control: min-fresh=30\r\n",
     "Cache-Control: max-age=60\n", 40, HTTP_REUSE_REVALIDATE},
    {"9111 5.2.1.3 min-fresh met", "Cache-Control: min-fresh=30\r\n", "Cache-Control: max-age=60\n",
     20, HTTP_REUSE_FRESH},
    {"9111 5.2.1.2 max-stale within", "Cache-Control: max-stale=30\r\n",
     "Cache-Control: max-age=60\n", 80, HTTP_REUSE_STALE_OK},
    {"9111 5.2.1.2 max-stale exceeded", "Cache-Control: max-stale=10\r\n",
     "Cache-Control: max-age=60\n", 80, HTTP_REUSE_REVALIDATE},
    {"9111 5.2.1.2 bare max-stale", "Cache-Control: max-stale\r\n", "Cache-Control: max-age=60\n",
     100000, HTTP_REUSE_STALE_OK},
    {"9111 5.2.2.2 must-revalidate beats max-stale", "Cache-Control: max-stale\r\n",
     "Cache-Control: max-age=60, must-revalidate\n", 61, HTTP_REUSE_REVALIDATE},
    {"9111 5.2.2.8 proxy-revalidate beats max-stale", "Cache-Control: max-stale\r\n",
     "Cache-Control: max-age=60, proxy-revalidate\n", 61, HTTP_REUSE_REVALIDATE},
    {"9111 5.2.2.10 s-maxage implies proxy-revalidate", "Cache-Control: max-stale\r\n",
     "Cache-Control: s-maxage=60\n", 61, HTTP_REUSE_REVALIDATE},
    {"5861 3 stale-while-revalidate within", "",
     "Cache-Control: max-age=60, stale-while-revalidate=30\n", 80, HTTP_REUSE_STALE_OK},
    {"5861 3 stale-while-revalidate with s-maxage", "",
     "Cache-Control: s-maxage=60, stale-while-revalidate=30\n", 80, HTTP_REUSE_STALE_OK},
    {"5861 3 stale-while-revalidate exceeded", "",
     "Cache-Control: max-age=60, stale-while-revalidate=30\n", 91, HTTP_REUSE_REVALIDATE},
    {"5861 3 swr but must-revalidate", "",
     "Cache-Control: max-age=60, stale-while-revalidate=30, must-revalidate\n", 70,
     HTTP_REUSE_REVALIDATE},
    {"5861 3 swr but request no-cache", "Cache-Control: no-cache\r\n",
     "Cache-Control: max-age=60, stale-while-revalidate=30\n", 70, HTTP_REUSE_REVALIDATE},
    {"9213 CDN-Cache-Control swr", "",
     "Cache-Control: no-cache\nCDN-Cache-Control: max-age=10, "
     "stale-while-revalidate=10\n",
     15, HTTP_REUSE_STALE_OK},
};

static void test_reuse(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(reuse_cases) / sizeof(reuse_cases[0]); i++) {
        const struct reuse_case *rc = &reuse_cases[i];
        struct http_req_info qi;
        struct http_resp_info ri;
        enum http_reuse got;

        http_req_info_from_request(&qi, mkreq("GET", rc->req_hdrs));
        mkresp(&ri, 200, rc->resp_hdrs);
        got = http_cache_reuse(&qi, &ri, http_freshness_lifetime(&ri, 86400), rc->age);
        if (got != rc->want)
            print_error("RFC %s: got %d want %d\n", rc->rfc, (int)got, (int)rc->want);
        assert_int_equal(got, rc->want);
    }
}

static void test_stale_if_error(void **state)
{
    struct http_resp_info ri;

    (void)state;
    /* RFC 5861 §4 */
    mkresp(&ri, 200, "Cache-Control: max-age=60, stale-if-error=100\n");
    assert_true(http_cache_stale_if_error_ok(&ri, 60, 30, -1));
    assert_true(http_cache_stale_if_error_ok(&ri, 60, 160, -1));
    assert_false(http_cache_stale_if_error_ok(&ri, 60, 161, -1));
    mkresp(&ri, 200, "Cache-Control: max-age=60\n");
    assert_false(http_cache_stale_if_error_ok(&ri, 60, 61, -1));
    assert_true(http_cache_stale_if_error_ok(&ri, 60, 61, 300));
    mkresp(&ri, 200, "Cache-Control: max-age=60, stale-if-error=100, must-revalidate\n");
    assert_false(http_cache_stale_if_error_ok(&ri, 60, 61, 300));
    mkresp(&ri, 200, "Cache-Control: max-age=60, proxy-revalidate\n");
    assert_false(http_cache_stale_if_error_ok(&ri, 60, 61, 300));
    mkresp(&ri, 200, "Cache-Control: s-maxage=60\n");
    assert_false(http_cache_stale_if_error_ok(&ri, 60, 61, 300));
}

static void test_cc_parse(void **state)
{
    struct http_cc cc;
    static const char v[] =
        "no-cache=\"Set-Cookie, X-A\", private, max-stale, min-fresh=5, "
        "only-if-cached, immutable, no-transform, stale-if-error=9, foo=\"a,b\"";

    (void)state;
    http_cc_init(&cc);
    http_cc_parse(&cc, v, sizeof(v) - 1);
    assert_true(cc.present);
    assert_true(cc.no_cache_fields);
    assert_false(cc.no_cache);
    assert_true(cc.private_);
    assert_int_equal(cc.max_stale, INT64_MAX);
    assert_int_equal(cc.min_fresh, 5);
    assert_true(cc.only_if_cached && cc.immutable && cc.no_transform);
    assert_int_equal(cc.stale_if_error, 9);
    assert_int_equal(cc.max_age, -1);
    http_cc_init(&cc);
    http_cc_parse(&cc, "", 0);
    assert_false(cc.present);
    http_cc_parse(&cc, " , ,", 4);
    assert_false(cc.present);
}

static int collect(const char *item, size_t ilen, void *arg)
{
    char *out = arg;

    strncat(out, item, ilen);
    strcat(out, "|");
    return 0;
}

static int stop_at_b(const char *item, size_t ilen, void *arg)
{
    (void)arg;
    return ilen == 1 && item[0] == 'b' ? 7 : 0;
}

static void test_list_each(void **state)
{
    char out[128] = "";
    static const char v[] = " a , ,b\t,\"c,d\" ,, e ";

    (void)state;
    assert_int_equal(http_list_each(v, sizeof(v) - 1, collect, out), 0);
    assert_string_equal(out, "a|b|\"c,d\"|e|");
    assert_int_equal(http_list_each(v, sizeof(v) - 1, stop_at_b, NULL), 7);
}

/* ---- conditional requests (RFC 9110 §13) ---- */

struct cond_case {
    const char *rfc, *method, *hdrs, *etag;
    int64_t lm;
    int want;
};

static const struct cond_case cond_cases[] = {
    {"13.1.2 INM match", "GET", "If-None-Match: \"a\"\r\n", "\"a\"", -1, 304},
    {"13.1.2 INM weak comparison", "GET", "If-None-Match: W/\"a\"\r\n", "\"a\"", -1, 304},
    {"13.1.2 INM weak stored", "GET", "If-None-Match: \"a\"\r\n", "W/\"a\"", -1, 304},
    {"13.1.2 INM list", "HEAD", "If-None-Match: \"x\", \"y\" , \"a\"\r\n", "\"a\"", -1, 304},
    {"13.1.2 INM repeated fields", "GET", "If-None-Match: \"x\"\r\nIf-None-Match: \"a\"\r\n",
     "\"a\"", -1, 304},
    {"13.1.2 INM star", "GET", "If-None-Match: *\r\n", "\"a\"", -1, 304},
    {"13.1.2 INM no match", "GET", "If-None-Match: \"b\"\r\n", "\"a\"", -1, 0},
    {"13.1.2 INM unquoted is malformed", "GET", "If-None-Match: a\r\n", "\"a\"", -1, 0},
    {"13.1.2 INM without stored etag", "GET", "If-None-Match: \"a\"\r\n", NULL, D, 0},
    {"13.2.2 INM takes precedence over IMS", "GET",
     "If-None-Match: \"b\"\r\nIf-Modified-Since: " D_STR "\r\n", "\"a\"", D - 10, 0},
    {"13.2.2 INM match on unsafe method", "DELETE", "If-None-Match: \"a\"\r\n", "\"a\"", -1, 412},
    {"13.1.3 IMS not modified", "GET", "If-Modified-Since: " D_STR "\r\n", NULL, D - 10, 304},
    {"13.1.3 IMS equal", "GET", "If-Modified-Since: " D_STR "\r\n", NULL, D, 304},
    {"13.1.3 IMS modified", "GET", "If-Modified-Since: " D_M10 "\r\n", NULL, D, 0},
    {"13.1.3 IMS invalid date ignored", "GET", "If-Modified-Since: yesterday\r\n", NULL, D, 0},
    {"13.1.3 IMS RFC 850 date", "GET", "If-Modified-Since: Tuesday, 14-Nov-23 22:13:20 GMT\r\n",
     NULL, D, 304},
    {"13.1.3 IMS without Last-Modified", "GET", "If-Modified-Since: " D_STR "\r\n", "\"a\"", -1, 0},
    {"13.1.3 IMS ignored for POST", "POST", "Content-Length: 0\r\nIf-Modified-Since: " D_STR "\r\n",
     NULL, D - 10, 0},
    {"13.1.1 If-Match fails", "GET", "If-Match: \"b\"\r\n", "\"a\"", -1, 412},
    {"13.1.1 If-Match strong only", "GET", "If-Match: W/\"a\"\r\n", "W/\"a\"", -1, 412},
    {"13.1.1 If-Match ok", "GET", "If-Match: \"a\"\r\n", "\"a\"", -1, 0},
    {"13.1.1 If-Match star", "GET", "If-Match: *\r\n", "\"a\"", -1, 0},
    {"13.1.4 IUS fails", "GET", "If-Unmodified-Since: " D_M10 "\r\n", NULL, D, 412},
    {"13.1.4 IUS ok", "GET", "If-Unmodified-Since: " D_STR "\r\n", NULL, D, 0},
    {"13.2.2 If-Match beats IUS", "GET", "If-Match: \"a\"\r\nIf-Unmodified-Since: " D_M10 "\r\n",
     "\"a\"", D, 0},
    {"13.2.2 none", "GET", "", "\"a\"", D, 0},
};

static void test_conditional(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cond_cases) / sizeof(cond_cases[0]); i++) {
        const struct cond_case *cc = &cond_cases[i];
        const struct http_request *r = mkreq(cc->method, cc->hdrs);
        int got = http_cache_conditional(r, cc->etag, cc->etag ? strlen(cc->etag) : 0, cc->lm);

        if (got != cc->want)
            print_error("RFC 9110 %s: got %d want %d\n", cc->rfc, got, cc->want);
        assert_int_equal(got, cc->want);
    }
}

static void test_etag_weak_eq(void **state)
{
    (void)state;
    assert_true(http_etag_weak_eq("W/\"1\"", 5, "W/\"1\"", 5));
    assert_true(http_etag_weak_eq("W/\"1\"", 5, "\"1\"", 3));
    assert_true(http_etag_weak_eq("\"1\"", 3, "\"1\"", 3));
    assert_false(http_etag_weak_eq("W/\"1\"", 5, "W/\"2\"", 5));
    assert_false(http_etag_weak_eq("\"1\"", 3, "1", 1));
    assert_false(http_etag_weak_eq("\"1", 2, "\"1", 2));
    assert_false(http_etag_weak_eq("", 0, "", 0));
}

/* ---- ranges (RFC 9110 §14) ---- */

struct range_case {
    const char *v;
    uint64_t size;
    int rc;
    uint64_t first, last;
};

static const struct range_case range_cases[] = {
    {"bytes=0-99", 1000, 1, 0, 99},
    {"bytes=100-", 1000, 1, 100, 999},     /* open-ended */
    {"bytes=-100", 1000, 1, 900, 999},     /* suffix */
    {"bytes=-5000", 1000, 1, 0, 999},      /* suffix longer than the body */
    {"bytes=500-5000", 1000, 1, 500, 999}, /* last-pos clamped */
    {"bytes=999-999", 1000, 1, 999, 999},
    {"Bytes=0-0", 1000, 1, 0, 0},  /* unit is case-insensitive */
    {"bytes=0-1,", 1000, 1, 0, 1}, /* empty list element */
    {"bytes=0-99999999999999999999999", 10, 1, 0, 9},
    {"bytes=1000-", 1000, -416, 0, 0}, /* past the end */
    {"bytes=5000-6000", 1000, -416, 0, 0},
    {"bytes=-0", 1000, -416, 0, 0},
    {"bytes=0-", 0, -416, 0, 0},
    {"bytes=99999999999999999999999-", 10, -416, 0, 0},
    {"bytes=0-1,5-6", 1000, 0, 0, 0}, /* several ranges: ignored */
    {"bytes=5-1", 1000, 0, 0, 0},     /* invalid: ignored */
    {"bytes=a-b", 1000, 0, 0, 0},
    {"bytes=", 1000, 0, 0, 0},
    {"bytes=-", 1000, 0, 0, 0},
    {"bytes=1", 1000, 0, 0, 0},
    {"bytes=1-2x", 1000, 0, 0, 0},
    {"items=0-1", 1000, 0, 0, 0},
    {"bytes 0-1", 1000, 0, 0, 0},
    {"", 1000, 0, 0, 0},
};

static void test_range(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(range_cases) / sizeof(range_cases[0]); i++) {
        const struct range_case *rc = &range_cases[i];
        uint64_t a = 12345, b = 12345;
        int got = http_range_parse(rc->v, strlen(rc->v), rc->size, &a, &b);

        if (got != rc->rc)
            print_error("range %s size %llu: got %d\n", rc->v, (unsigned long long)rc->size, got);
        assert_int_equal(got, rc->rc);
        if (got == 1) {
            assert_int_equal(a, rc->first);
            assert_int_equal(b, rc->last);
        }
    }
}

static void test_if_range(void **state)
{
    (void)state;
    assert_true(http_range_if_range_ok(mkreq("GET", ""), "\"a\"", 3, D));
    assert_true(http_range_if_range_ok(mkreq("GET", "If-Range: \"a\"\r\n"), "\"a\"", 3, D));
    assert_false(http_range_if_range_ok(mkreq("GET", "If-Range: \"b\"\r\n"), "\"a\"", 3, D));
    assert_false(http_range_if_range_ok(mkreq("GET", "If-Range: W/\"a\"\r\n"), "W/\"a\"", 5, D));
    assert_true(http_range_if_range_ok(mkreq("GET", "If-Range: " D_STR "\r\n"), NULL, 0, D));
    assert_false(http_range_if_range_ok(mkreq("GET", "If-Range: " D_STR "\r\n"), NULL, 0, D - 1));
    assert_false(http_range_if_range_ok(mkreq("GET", "If-Range: junk\r\n"), "\"a\"", 3, D));
}

/* ---- dates (RFC 9110 §5.6.7) ---- */

static void test_dates(void **state)
{
    static const char *const same[] = {
        "Sun, 06 Nov 1994 08:49:37 GMT",  /* IMF-fixdate */
        "Sunday, 06-Nov-94 08:49:37 GMT", /* RFC 850 */
        "Sun Nov  6 08:49:37 1994",       /* asctime */
        "Sun Nov 06 08:49:37 1994",
    };
    static const char *const bad[] = {
        "",
        "0",
        "-1",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 gmt",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 8:49:37 GMT",
        "Sun, 31 Feb 1994 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT ",
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sun Nov  6 08:49:37 94",
        "Sun, 29 Feb 2023 00:00:00 GMT",
        "sun, 06 Nov 1994 08:49:37 GMT",
    };
    char buf[32];
    int64_t t;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        t = 0;
        assert_int_equal(http_date_parse(same[i], strlen(same[i]), &t), 0);
        assert_int_equal(t, 784111777);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (http_date_parse(bad[i], strlen(bad[i]), &t) != -EINVAL)
            print_error("date accepted: '%s'\n", bad[i]);
        assert_int_equal(http_date_parse(bad[i], strlen(bad[i]), &t), -EINVAL);
    }
    assert_int_equal(http_date_parse("Thu, 29 Feb 2024 12:00:00 GMT", 29, &t), 0);
    assert_int_equal(http_date_parse("Thursday, 01-Jan-70 00:00:00 GMT", 32, &t), 0);
    assert_int_equal(t, 0);
    assert_int_equal(http_date_parse("Friday, 01-Jan-38 00:00:00 GMT", 30, &t), 0);
    assert_int_equal(t, 2145916800LL);

    assert_int_equal(http_date_format(784111777, buf), 29);
    assert_string_equal(buf, "Sun, 06 Nov 1994 08:49:37 GMT");
    http_date_format(0, buf);
    assert_string_equal(buf, "Thu, 01 Jan 1970 00:00:00 GMT");
    http_date_format(D, buf);
    assert_string_equal(buf, D_STR);
    /* Round trip over a spread of times, leap days included. */
    for (t = 0; t < 4102444800LL; t += 86400 * 37 + 3601) {
        int64_t back;

        http_date_format(t, buf);
        assert_int_equal(http_date_parse(buf, 29, &back), 0);
        assert_int_equal(back, t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_storable_and_lifetime),
        cmocka_unit_test(test_current_age),
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_stale_if_error),
        cmocka_unit_test(test_cc_parse),
        cmocka_unit_test(test_list_each),
        cmocka_unit_test(test_conditional),
        cmocka_unit_test(test_etag_weak_eq),
        cmocka_unit_test(test_range),
        cmocka_unit_test(test_if_range),
        cmocka_unit_test(test_dates),
    };

    return cmocka_run_group_tests_name("http_cache", tests, NULL, NULL);
}
