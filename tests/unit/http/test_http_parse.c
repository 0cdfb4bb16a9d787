/* tests/unit/http/test_http_parse.c: request head parser and chunked decoder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/http_parse.h"

static struct http_limits lim;
static struct http_request req;

static int parse(const char *s, const char **msg)
{
    *msg = NULL;
    return http_parse_request(s, strlen(s), &lim, &req, msg);
}

static int setup(void **state)
{
    (void)state;
    http_limits_default(&lim);
    return 0;
}

static void assert_str(struct http_str s, const char *want)
{
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(s.p, want, s.len);
}

static void test_simple_get(void **state)
{
    const char *m, *s = "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: Example.com\r\nUser-Agent: t\r\n\r\n";
    int rc = parse(s, &m);

    (void)state;
    assert_int_equal(rc, (int)strlen(s));
    assert_int_equal(req.head_len, strlen(s));
    assert_int_equal(req.method, HTTP_M_GET);
    assert_str(req.method_str, "GET");
    assert_str(req.target, "/a/b?x=1&y=2");
    assert_str(req.path, "/a/b");
    assert_str(req.query, "x=1&y=2");
    assert_int_equal(req.abs_host.len, 0);
    assert_int_equal(req.version_minor, 1);
    assert_int_equal(req.nheaders, 2);
    assert_str(req.host, "Example.com");
    assert_int_equal(req.content_length, -1);
    assert_int_equal(req.chunked, 0);
    assert_int_equal(req.keep_alive, 1);
    assert_int_equal(req.expect_continue, 0);
    assert_non_null(http_request_header(&req, "user-agent"));
    assert_null(http_request_header(&req, "user-agen"));
    assert_str(http_request_header(&req, "USER-AGENT")->value, "t");
}

static void test_value_ows_trimmed(void **state)
{
    const char *m, *s = "GET / HTTP/1.1\r\nHost:x\r\nA: \t v  a \t \r\nB:\r\nC:   \r\n\r\n";

    (void)state;
    assert_true(parse(s, &m) > 0);
    assert_str(req.host, "x");
    assert_str(req.headers[1].value, "v  a");
    assert_str(req.headers[2].value, "");
    assert_str(req.headers[3].value, "");
}

static void test_pipelined(void **state)
{
    const char *m;
    const char *s = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nHEAD /2 HTTP/1.1\r\nHost: a\r\n"
                    "Connection: close\r\n\r\n";
    int rc = parse(s, &m), rc2;

    (void)state;
    assert_int_equal(rc, 28);
    assert_str(req.path, "/1");
    rc2 = http_parse_request(s + rc, strlen(s) - (size_t)rc, &lim, &req, &m);
    assert_int_equal((size_t)rc2, strlen(s) - (size_t)rc);
    assert_int_equal(req.method, HTTP_M_HEAD);
    assert_str(req.path, "/2");
    assert_int_equal(req.keep_alive, 0);
}

static void test_byte_by_byte(void **state)
{
    const char *m = NULL;
    const char *s = "\r\nPOST /p HTTP/1.1\r\nHost: h:8080\r\nContent-Length: 5\r\n"
                    "Expect: 100-continue\r\n\r\nhello";
    size_t head = strlen(s) - 5, i;

    (void)state;
    for (i = 0; i < head; i++)
        assert_int_equal(http_parse_request(s, i, &lim, &req, &m), HTTP_PARSE_AGAIN);
    assert_int_equal(http_parse_request(s, head, &lim, &req, &m), (int)head);
    assert_int_equal(http_parse_request(s, strlen(s), &lim, &req, &m), (int)head);
    assert_int_equal(req.method, HTTP_M_POST);
    assert_int_equal(req.content_length, 5);
    assert_int_equal(req.expect_continue, 1);
    assert_str(req.host, "h:8080");
}

static void test_absolute_form(void **state)
{
    const char *m;

    (void)state;
    assert_true(parse("PURGE http://Cdn.Example:80/m.onnx?v=2 HTTP/1.1\r\nHost: x\r\n\r\n", &m) >
                0);
    assert_int_equal(req.method, HTTP_M_PURGE);
    assert_str(req.abs_host, "Cdn.Example:80");
    assert_str(req.path, "/m.onnx");
    assert_str(req.query, "v=2");
    assert_true(parse("GET https://h HTTP/1.1\r\nHost: h\r\n\r\n", &m) > 0);
    assert_str(req.abs_host, "h");
    assert_str(req.path, "/");
    assert_int_equal(req.query.len, 0);
    assert_true(parse("GET http://h?q HTTP/1.1\r\nHost: h\r\n\r\n", &m) > 0);
    assert_str(req.path, "/");
    assert_str(req.query, "q");
}

static void test_other_forms(void **state)
{
    const char *m;

    (void)state;
    assert_true(parse("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", &m) > 0);
    assert_int_equal(req.method, HTTP_M_OPTIONS);
    assert_str(req.path, "*");
    assert_true(parse("CONNECT h.example:443 HTTP/1.1\r\nHost: h.example:443\r\n\r\n", &m) > 0);
    assert_int_equal(req.method, HTTP_M_CONNECT);
    assert_str(req.abs_host, "h.example:443");
    assert_true(parse("FOO-BAR /x HTTP/1.1\r\nHost: h\r\n\r\n", &m) > 0);
    assert_int_equal(req.method, HTTP_M_OTHER);
    assert_str(req.method_str, "FOO-BAR");
    assert_true(parse("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", &m) > 0);
    assert_true(parse("GET / HTTP/1.1\r\nHost:\r\n\r\n", &m) > 0);
    assert_int_equal(req.host.len, 0);
}

static void test_keep_alive(void **state)
{
    const char *m;

    (void)state;
    assert_true(parse("GET / HTTP/1.0\r\n\r\n", &m) > 0);
    assert_int_equal(req.keep_alive, 0);
    assert_int_equal(req.version_minor, 0);
    assert_true(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &m) > 0);
    assert_int_equal(req.keep_alive, 1);
    assert_true(parse("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", &m) > 0);
    assert_int_equal(req.keep_alive, 0);
    assert_true(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo,  CLOSE \r\n\r\n", &m) > 0);
    assert_int_equal(req.keep_alive, 0);
    assert_true(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: closer\r\n\r\n", &m) > 0);
    assert_int_equal(req.keep_alive, 1);
    /* RFC 9110 §10.1.1: 100-continue is ignored in HTTP/1.0. */
    assert_true(parse("PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", &m) >
                0);
    assert_int_equal(req.expect_continue, 0);
}

static void test_framing_ok(void **state)
{
    const char *m;

    (void)state;
    assert_true(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", &m) > 0);
    assert_int_equal(req.chunked, 1);
    assert_int_equal(req.content_length, -1);
    assert_true(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  Chunked \r\n\r\n", &m) >
                0);
    assert_int_equal(req.chunked, 1);
    assert_true(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked ,\r\n\r\n", &m) >
                0);
    assert_int_equal(req.chunked, 1);
    assert_int_equal(req.unsupported_coding.len, 0);
    assert_true(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42, 42\r\n"
                      "Content-Length: 42\r\n\r\n",
                      &m) > 0);
    assert_int_equal(req.content_length, 42);
    assert_true(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", &m) > 0);
    assert_int_equal(req.content_length, 0);
}

struct bad {
    const char *req;
    int status;
};

static const struct bad bad_requests[] = {
    /* request line */
    {"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400},
    {" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"GET /\r\n\r\n", 400},                     /* HTTP/0.9 */
    {"GET / http/1.1\r\nHost: a\r\n\r\n", 400}, /* HTTP-name is case-sensitive */
    {"GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400},
    {"GET / HTTP/11\r\nHost: a\r\n\r\n", 400},
    {"GET / FOO/1.1\r\nHost: a\r\n\r\n", 400},
    {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
    {"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505},
    {"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505},
    {"GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400}, /* asterisk-form without OPTIONS */
    {"OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"GET h:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400}, /* authority-form without CONNECT */
    {"CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"GET ftp://h/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400}, /* empty authority */
    {"GET http://u@h/x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400}, /* only one empty line skipped */
    {"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"GETTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTT / HTTP/1.1\r\n\r\n", 501},
    /* line endings */
    {"GET / HTTP/1.1\nHost: a\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\nHost: a\n\r\n", 400},
    {"GET / HTTP/1.1\r\nHost: a\r\n\n", 400},
    {"GET / HTTP/1.1\rHost: a\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\nHost: a\r\n\rX", 400},
    /* field lines */
    {"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400}, /* obs-fold */
    {"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400}, /* space before colon */
    {"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nX(y): z\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01"
     "b\r\n\r\n",
     400},
    {"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nX: \x0b"
     "b\r\n\r\n",
     400},
    {"GET / HTTP/1.1\r\nHo\x80st: a\r\n\r\n", 400},
    /* Host */
    {"GET / HTTP/1.1\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400},
    /* Content-Length and Transfer-Encoding (request smuggling) */
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
    /* Only chunked is implemented: the rest would reach the origin still encoded. */
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: deflate, chunked\r\n\r\n", 501},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: compress, chunked\r\n\r\n", 501},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: x-gzip, chunked\r\n\r\n", 501},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
     501},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
     "chunked\r\n\r\n",
     400},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 501},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunkedx\r\n\r\n", 501},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 501},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;x=1\r\n\r\n", 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0b"
     "chunked\r\n\r\n",
     400},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", 400},
    {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n", 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n", 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5.0\r\n\r\n", 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n", 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n", 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 16777217\r\n\r\n", 413},
};

static void test_bad_requests(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad_requests) / sizeof(bad_requests[0]); i++) {
        const char *m = NULL;
        int rc = parse(bad_requests[i].req, &m);

        if (rc != -bad_requests[i].status)
            print_error("case %zu: %s -> %d (%s)\n", i, bad_requests[i].req, rc, m ? m : "-");
        assert_int_equal(rc, -bad_requests[i].status);
        assert_non_null(m);
    }
}

static void test_nul_in_header(void **state)
{
    static const char s[] = "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";
    const char *m = NULL;

    (void)state;
    assert_int_equal(http_parse_request(s, sizeof(s) - 1, &lim, &req, &m), -400);
    assert_string_equal(m, "NUL in header value");
}

static void test_errors_before_complete(void **state)
{
    const char *m;

    (void)state;
    /* Errors are reported as soon as the offending byte is seen, not at CRLFCRLF. */
    assert_int_equal(parse("GET / HTTP/1.1\r\nX: a\r\n b", &m), -400);
    assert_int_equal(parse("GET / HTTP/1.1\nHo", &m), -400);
    assert_int_equal(parse("GET / HTX", &m), -400);
    assert_int_equal(parse("GET / HTTP/1.", &m), HTTP_PARSE_AGAIN);
    assert_int_equal(parse("\r", &m), HTTP_PARSE_AGAIN);
    assert_int_equal(parse("", &m), HTTP_PARSE_AGAIN);
}

static char *repeat(const char *pre, char c, size_t n, const char *post)
{
    size_t a = strlen(pre), b = strlen(post);
    char *s = malloc(a + n + b + 1);

    assert_non_null(s);
    memcpy(s, pre, a);
    memset(s + a, c, n);
    memcpy(s + a + n, post, b + 1);
    return s;
}

static void test_limits(void **state)
{
    const char *m;
    char *s;
    size_t i;
    char hdrs[8192];
    size_t off;

    (void)state;
    /* URI over the limit: 414, complete or not. */
    s = repeat("GET /", 'a', 8192, " HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(parse(s, &m), -414);
    s[5 + 8192] = '\0';
    assert_int_equal(parse(s, &m), -414);
    free(s);
    s = repeat("GET /", 'a', 8000, " HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_true(parse(s, &m) > 0);
    free(s);
    /* A single huge header: 431 even before it ends. */
    s = repeat("GET / HTTP/1.1\r\nHost: a\r\nX: ", 'v', 70000, "\r\n\r\n");
    assert_int_equal(parse(s, &m), -431);
    s[30000 + 20] = '\0';
    assert_int_equal(parse(s, &m), HTTP_PARSE_AGAIN);
    s[30000 + 20] = 'v';
    s[66000] = '\0';
    assert_int_equal(parse(s, &m), -431);
    free(s);
    /* Header count. */
    off = (size_t)snprintf(hdrs, sizeof(hdrs), "GET / HTTP/1.1\r\nHost: a\r\n");
    for (i = 0; i < 99; i++)
        off += (size_t)snprintf(hdrs + off, sizeof(hdrs) - off, "X%zu: y\r\n", i);
    snprintf(hdrs + off, sizeof(hdrs) - off, "\r\n");
    assert_true(parse(hdrs, &m) > 0);
    assert_int_equal(req.nheaders, 100);
    snprintf(hdrs + off, sizeof(hdrs) - off, "Z: z\r\n\r\n");
    assert_int_equal(parse(hdrs, &m), -431);
    /* A lower configured limit. */
    lim.max_headers = 2;
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: a\r\nA: b\r\nC: d\r\n\r\n", &m), -431);
    lim.max_body = 10;
    assert_int_equal(parse("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", &m), -413);
    assert_true(parse("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n", &m) > 0);
    http_limits_default(&lim);
}

static void test_unsupported_coding_named(void **state)
{
    const char *m;

    (void)state;
    assert_int_equal(
        parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Gzip , chunked\r\n\r\n", &m), -501);
    assert_str(req.unsupported_coding, "Gzip");
    assert_string_equal(m, "transfer coding not implemented");
    assert_int_equal(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                           "Transfer-Encoding: x-frob\r\n\r\n",
                           &m),
                     -400);
    assert_int_equal(req.unsupported_coding.len, 0); /* chunked first: not final, 400 */
    assert_int_equal(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: x-frob\r\n\r\n", &m),
                     -501);
    assert_str(req.unsupported_coding, "x-frob");
    /* A later rejection of another kind does not leave a stale name behind. */
    assert_int_equal(parse("GET / HTTP/1.1\r\n\r\n", &m), -400);
    assert_int_equal(req.unsupported_coding.len, 0);
}

static void test_absolute_form_replaces_host(void **state)
{
    const char *m;
    const struct http_header *h;

    (void)state;
    /* RFC 9112 §3.2.2: the target's authority wins over a disagreeing Host. */
    assert_true(parse("GET http://Victim.example:8080/x HTTP/1.1\r\nHost: attacker.example\r\n"
                      "A: b\r\n\r\n",
                      &m) > 0);
    assert_str(req.host, "Victim.example:8080");
    h = http_request_header(&req, "host");
    assert_non_null(h);
    assert_str(h->value, "Victim.example:8080");
    assert_str(req.abs_host, "Victim.example:8080");
    assert_str(http_request_header(&req, "a")->value, "b");
    /* HTTP/1.0 with no Host field at all: the authority is the host. */
    assert_true(parse("GET http://v.example/ HTTP/1.0\r\n\r\n", &m) > 0);
    assert_str(req.host, "v.example");
    assert_null(http_request_header(&req, "host"));
    /* origin-form: the Host field, as received. */
    assert_true(parse("GET /x HTTP/1.1\r\nHost: h.example\r\n\r\n", &m) > 0);
    assert_str(req.host, "h.example");
    /* CONNECT's authority-form names the tunnel's end, not a replacement for Host. */
    assert_true(parse("CONNECT t.example:443 HTTP/1.1\r\nHost: h.example\r\n\r\n", &m) > 0);
    assert_str(req.host, "h.example");
    assert_str(req.abs_host, "t.example:443");
}

static void test_methods_case_sensitive(void **state)
{
    static const char *const other[] = {"get", "Get", "head", "HEAd", "post", "connect", "purge"};
    char buf[128];
    const char *m;

    (void)state;
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        snprintf(buf, sizeof(buf), "%s /x HTTP/1.1\r\nHost: h\r\n\r\n", other[i]);
        assert_true(parse(buf, &m) > 0);
        assert_int_equal(req.method, HTTP_M_OTHER);
        assert_str(req.method_str, other[i]);
    }
    assert_true(parse("GET /x HTTP/1.1\r\nHost: h\r\n\r\n", &m) > 0);
    assert_int_equal(req.method, HTTP_M_GET);
}

static int has_field(const char *name)
{
    return http_request_header(&req, name) != NULL;
}

static void test_strip_connection(void **state)
{
    const char *m;

    (void)state;
    assert_true(parse("GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nConnection: keep-alive, x-a,\r\n"
                      "X-B: 2\r\nconnection: X-B , host, Content-Length, AUTHORIZATION\r\n"
                      "Authorization: t\r\nCache-Control: no-cache\r\nX-C: 3\r\n"
                      "Connection: cache-control, connection, transfer-encoding\r\n\r\n",
                      &m) > 0);
    assert_int_equal(req.nheaders, 9);
    assert_true(http_request_hop_nominated(&req, (struct http_str){"x-A", 3}));
    assert_false(http_request_hop_nominated(&req, (struct http_str){"X-C", 3}));
    assert_false(http_request_hop_nominated(&req, (struct http_str){"Host", 4}));
    assert_false(http_request_hop_nominated(&req, (struct http_str){"Connection", 10}));
    assert_int_equal(http_request_strip_connection(&req), 2);
    assert_int_equal(req.nheaders, 7);
    assert_false(has_field("x-a"));
    assert_false(has_field("x-b"));
    /* End-to-end fields stay whatever Connection says; so does Connection itself. */
    assert_true(has_field("host"));
    assert_str(req.host, "h");
    assert_true(has_field("authorization"));
    assert_true(has_field("cache-control"));
    assert_true(has_field("x-c"));
    assert_true(has_field("connection"));
    /* The order of what is left is kept. */
    assert_str(req.headers[0].name, "Host");
    assert_str(req.headers[6].name, "Connection");
    /* Nothing named: nothing removed. */
    assert_int_equal(http_request_strip_connection(&req), 0);
    assert_true(parse("GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n", &m) > 0);
    assert_int_equal(http_request_strip_connection(&req), 0);
    assert_int_equal(req.nheaders, 2);
    /* A name that only starts like a listed one is not listed. */
    assert_true(parse("GET / HTTP/1.1\r\nHost: h\r\nX-AB: 1\r\nConnection: x-a\r\n\r\n", &m) > 0);
    assert_int_equal(http_request_strip_connection(&req), 0);
}

static void test_strip_fields(void **state)
{
    static const struct http_str names[] = {{"x-forwarded-host", 16},
                                            {"Forwarded", 9},
                                            {"host", 4},
                                            {"content-length", 14},
                                            {"transfer-encoding", 17}};
    const char *m;

    (void)state;
    assert_true(parse("POST / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Host: e\r\nA: 1\r\n"
                      "FORWARDED: for=x\r\nx-forwarded-host: f\r\nContent-Length: 0\r\n\r\n",
                      &m) > 0);
    assert_int_equal(http_request_strip_fields(&req, names, 5), 3);
    assert_int_equal(req.nheaders, 3);
    assert_str(req.headers[0].name, "Host");
    assert_str(req.headers[1].name, "A");
    assert_str(req.headers[2].name, "Content-Length");
    assert_int_equal(http_request_strip_fields(&req, names, 0), 0);
    assert_int_equal(req.nheaders, 3);
}

static void test_str_helpers(void **state)
{
    struct http_str s = {"Keep-Alive", 10};

    (void)state;
    assert_true(http_str_ieq(s, "keep-alive"));
    assert_false(http_str_ieq(s, "keep-aliv"));
    assert_false(http_str_ieq(s, "keep-alivee"));
    assert_string_equal(http_status_reason(404), "Not Found");
    assert_string_equal(http_status_reason(431), "Request Header Fields Too Large");
    assert_string_equal(http_status_reason(999), "Unknown");
}

/* ---- chunked ---- */

/* Decodes `in` in pieces of the given sizes (cycled); returns the final status, and the
 * decoded body and where the body ended. */
static int dechunk(const char *in, size_t len, const size_t *splits, size_t nsplits, uint64_t max,
                   char *outb, size_t *outlen, size_t *end)
{
    struct http_chunked c;
    size_t off = 0, k = 0;
    int rc = HTTP_CHUNKED_MORE;

    http_chunked_init(&c, max);
    *outlen = 0;
    while (off < len) {
        size_t piece = splits[k++ % nsplits], pos = 0;

        if (piece > len - off)
            piece = len - off;
        for (;;) {
            const char *d, *m;
            size_t dl, used;

            rc = http_chunked_feed(&c, in + off + pos, piece - pos, &used, &d, &dl, &m);
            assert_true(used <= piece - pos);
            pos += used;
            if (rc < 0) {
                *end = off + pos;
                return rc;
            }
            if (rc == HTTP_CHUNKED_DATA) {
                assert_true(d >= in + off && d + dl <= in + off + piece);
                memcpy(outb + *outlen, d, dl);
                *outlen += dl;
                continue;
            }
            if (rc == HTTP_CHUNKED_DONE) {
                *end = off + pos;
                return rc;
            }
            assert_int_equal(pos, piece);
            break;
        }
        off += piece;
    }
    *end = off;
    return rc;
}

static void test_chunked_splits(void **state)
{
    static const char body[] = "5\r\nhello\r\n1;ext=\"v\" ; e2\r\n \r\n10\r\n0123456789abcdef\r\n"
                               "0\r\nTrailer-A: x\r\nB: y\r\n\r\nNEXT";
    size_t len = sizeof(body) - 1, outlen, end, a, b;
    char out[64];
    size_t splits[2];

    (void)state;
    for (a = 1; a <= len; a++) {
        for (b = 1; b <= 7; b++) {
            splits[0] = a;
            splits[1] = b;
            assert_int_equal(dechunk(body, len, splits, 2, 1000, out, &outlen, &end),
                             HTTP_CHUNKED_DONE);
            assert_int_equal(outlen, 22);
            assert_memory_equal(out, "hello 0123456789abcdef", 22);
            assert_int_equal(end, len - 4);
        }
    }
}

struct bad_chunk {
    const char *in;
    int status;
};

static const struct bad_chunk bad_chunks[] = {
    {"ffffffffffffffffff\r\n", 400}, /* overflow */
    {"10000000000000000\r\n", 400},
    {"ffffffffffffffff\r\n", 413},
    {"5 \r\nhello\r\n0\r\n\r\n", 400}, /* whitespace after size without ext */
    {" 5\r\nhello\r\n0\r\n\r\n", 400},
    {"\r\n", 400},
    {"x\r\n", 400},
    {"-5\r\n", 400},
    {"0x5\r\n", 400},
    {"5\nhello\r\n0\r\n\r\n", 400}, /* bare LF */
    {"5\rhello", 400},
    {"5\r\nhelloX\r\n", 400}, /* data longer than the size */
    {"5\r\nhello\n0\r\n\r\n", 400},
    {"5\r\nhello\r\n0\r\n\n", 400},
    {"0\r\nX: y\n\r\n", 400},
    {"0\r\n y\r\n\r\n", 400}, /* obs-fold in trailer */
    {"0\r\nX y\r\n\r\n", 400},
    {"0\r\nX: \x01\r\n\r\n", 400},
    {"5;\x01\r\n", 400},
    {"20\r\n", 413}, /* over max_body (16) */
    {"8\r\n12345678\r\n9\r\n", 413},
};

static void test_chunked_bad(void **state)
{
    size_t i, outlen, end, one = 1, all = 1000;
    char out[64];

    (void)state;
    for (i = 0; i < sizeof(bad_chunks) / sizeof(bad_chunks[0]); i++) {
        const char *in = bad_chunks[i].in;
        int rc = dechunk(in, strlen(in), &all, 1, 16, out, &outlen, &end);

        if (rc != -bad_chunks[i].status)
            print_error("chunk case %zu -> %d\n", i, rc);
        assert_int_equal(rc, -bad_chunks[i].status);
        assert_int_equal(dechunk(in, strlen(in), &one, 1, 16, out, &outlen, &end), rc);
    }
}

static void test_chunked_bounds(void **state)
{
    struct http_chunked c;
    char *ext = repeat("1;", 'e', 5000, "\r\n");
    char *tr = repeat("0\r\nX: ", 'v', 20000, "\r\n\r\n");
    const char *d, *m;
    size_t dl, used;

    (void)state;
    http_chunked_init(&c, 100);
    assert_int_equal(http_chunked_feed(&c, ext, strlen(ext), &used, &d, &dl, &m), -400);
    /* Sticky error. */
    assert_int_equal(http_chunked_feed(&c, "0\r\n\r\n", 5, &used, &d, &dl, &m), -400);
    http_chunked_init(&c, 100);
    assert_int_equal(http_chunked_feed(&c, tr, strlen(tr), &used, &d, &dl, &m), -400);
    /* After DONE, nothing more is consumed. */
    http_chunked_init(&c, 100);
    assert_int_equal(http_chunked_feed(&c, "0\r\n\r\nGET", 8, &used, &d, &dl, &m),
                     HTTP_CHUNKED_DONE);
    assert_int_equal(used, 5);
    assert_int_equal(http_chunked_feed(&c, "GET", 3, &used, &d, &dl, &m), HTTP_CHUNKED_DONE);
    assert_int_equal(used, 0);
    assert_int_equal(c.total, 0);
    free(ext);
    free(tr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_simple_get, setup),
        cmocka_unit_test_setup(test_value_ows_trimmed, setup),
        cmocka_unit_test_setup(test_pipelined, setup),
        cmocka_unit_test_setup(test_byte_by_byte, setup),
        cmocka_unit_test_setup(test_absolute_form, setup),
        cmocka_unit_test_setup(test_other_forms, setup),
        cmocka_unit_test_setup(test_keep_alive, setup),
        cmocka_unit_test_setup(test_framing_ok, setup),
        cmocka_unit_test_setup(test_bad_requests, setup),
        cmocka_unit_test_setup(test_nul_in_header, setup),
        cmocka_unit_test_setup(test_errors_before_complete, setup),
        cmocka_unit_test_setup(test_limits, setup),
        cmocka_unit_test_setup(test_unsupported_coding_named, setup),
        cmocka_unit_test_setup(test_absolute_form_replaces_host, setup),
        cmocka_unit_test_setup(test_methods_case_sensitive, setup),
        cmocka_unit_test_setup(test_strip_connection, setup),
        cmocka_unit_test_setup(test_strip_fields, setup),
        cmocka_unit_test_setup(test_str_helpers, setup),
        cmocka_unit_test_setup(test_chunked_splits, setup),
        cmocka_unit_test_setup(test_chunked_bad, setup),
        cmocka_unit_test_setup(test_chunked_bounds, setup),
    };

    return cmocka_run_group_tests_name("http_parse", tests, NULL, NULL);
}
