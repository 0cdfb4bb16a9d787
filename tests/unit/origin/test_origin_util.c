/* tests/unit/origin/test_origin_util.c: path cleaning, content types, .hdrs files,
 * validators and latency parsing of the reference origin. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

#include <cmocka.h>

#include "origin/origin_int.h"

static int clean(const char *in, char *out, size_t cap)
{
    return origin__path_clean(in, strlen(in), out, cap);
}

static void assert_clean(const char *in, const char *want)
{
    char out[256];
    int rc = clean(in, out, sizeof(out));
    if (rc != 0)
        fail_msg("clean(%s) = %d", in, rc);
    assert_string_equal(out, want);
}

static void assert_refused(const char *in)
{
    char out[256];
    if (clean(in, out, sizeof(out)) != -EINVAL)
        fail_msg("clean(%s) was not refused", in);
}

static void test_path_clean_plain(void **state)
{
    (void)state;
    assert_clean("/", "");
    assert_clean("/a.txt", "a.txt");
    assert_clean("/a/b/c.bin", "a/b/c.bin");
    assert_clean("//a///b//", "a/b");
    assert_clean("/./a/./b/.", "a/b");
    assert_clean("/dir/", "dir");
    assert_clean("/%61%2Fb", "a/b");
    assert_clean("/with%20space", "with space");
    assert_clean("/..a/b..", "..a/b..");
    assert_clean("/.../x", ".../x");
}

static void test_path_clean_traversal(void **state)
{
    (void)state;
    assert_refused("/..");
    assert_refused("/../etc/passwd");
    assert_refused("/a/../../etc/passwd");
    assert_refused("/a/..");
    assert_refused("/%2e%2e/etc/passwd");
    assert_refused("/%2E%2e/x");
    assert_refused("/.%2e/x");
    assert_refused("/a/..%2f..%2fetc");
    assert_refused("/a%2f..%2f..%2fetc");
    assert_refused("/a%00b");
    assert_refused("/a%2");
    assert_refused("/a%");
    assert_refused("/a%zz");
    assert_refused("a/b");
    assert_refused("");
}

static void test_path_clean_too_long(void **state)
{
    char out[8];
    (void)state;
    assert_int_equal(clean("/abcdefgh", out, sizeof(out)), -ENAMETOOLONG);
    assert_int_equal(clean("/abcdefg", out, sizeof(out)), 0);
    assert_string_equal(out, "abcdefg");
    assert_int_equal(clean("/abc/def/", out, sizeof(out)), 0);
    assert_string_equal(out, "abc/def");
    assert_int_equal(clean("/abc/defg", out, sizeof(out)), -ENAMETOOLONG);
}

static void test_path_hidden(void **state)
{
    (void)state;
    assert_true(origin__path_hidden("a.txt.hdrs"));
    assert_true(origin__path_hidden("x/.hdrs"));
    assert_true(origin__path_hidden(".mlcdn-put-1-2"));
    assert_true(origin__path_hidden("d/.mlcdn-put-1-2"));
    assert_true(origin__path_hidden(".mlcdn-x/file"));
    assert_false(origin__path_hidden("a.txt"));
    assert_false(origin__path_hidden("hdrs"));
    assert_false(origin__path_hidden("a.hdrsx"));
    assert_false(origin__path_hidden("x.mlcdn-/y"));
    assert_false(origin__path_hidden(""));
}

static void test_content_type(void **state)
{
    (void)state;
    assert_string_equal(origin__content_type("m.json"), "application/json");
    assert_string_equal(origin__content_type("a/b/M.JSON"), "application/json");
    assert_string_equal(origin__content_type("w.bin"), "application/octet-stream");
    assert_string_equal(origin__content_type("model.onnx"), "application/octet-stream");
    assert_string_equal(origin__content_type("x.npy"), "application/octet-stream");
    assert_string_equal(origin__content_type("r.txt"), "text/plain; charset=utf-8");
    assert_string_equal(origin__content_type("index.html"), "text/html; charset=utf-8");
    assert_string_equal(origin__content_type("noext"), "application/octet-stream");
    assert_string_equal(origin__content_type(".json"), "application/octet-stream");
    assert_string_equal(origin__content_type("d.json/file"), "application/octet-stream");
    assert_string_equal(origin__content_type("trailing."), "application/octet-stream");
}

static void assert_hdr(const struct origin_hdr *h, const char *name, const char *value)
{
    assert_int_equal(h->nlen, strlen(name));
    assert_memory_equal(h->name, name, h->nlen);
    assert_int_equal(h->vlen, strlen(value));
    assert_memory_equal(h->value, value, h->vlen);
}

static void test_hdrs_parse(void **state)
{
    const char *t = "# comment\n"
                    "Cache-Control: no-store\r\n"
                    "\n"
                    "  Vary:   Accept-Encoding  \n"
                    "Surrogate-Key: a b\n"
                    "Status: 404\n"
                    "X-Empty:\n"
                    "X-Last: no newline";
    struct origin_hdrs h;
    (void)state;
    assert_int_equal(origin__hdrs_parse(t, strlen(t), &h), 0);
    assert_int_equal(h.status, 404);
    assert_int_equal(h.n, 5);
    assert_hdr(&h.h[0], "Cache-Control", "no-store");
    assert_hdr(&h.h[1], "Vary", "Accept-Encoding");
    assert_hdr(&h.h[2], "Surrogate-Key", "a b");
    assert_hdr(&h.h[3], "X-Empty", "");
    assert_hdr(&h.h[4], "X-Last", "no newline");
    assert_non_null(origin__hdrs_find(&h, "cache-control"));
    assert_null(origin__hdrs_find(&h, "Status"));
    assert_null(origin__hdrs_find(NULL, "Vary"));
}

static void test_hdrs_parse_bad_lines(void **state)
{
    const char *t = "no colon here\n"
                    ": empty name\n"
                    "Bad Name: x\n"
                    "Content-Length: 5\n"
                    "transfer-encoding: chunked\n"
                    "Connection: close\n"
                    "Date: now\n"
                    "Status: 42\n"
                    "Status: 4040\n"
                    "Status: abc\n"
                    "X-Ctl: a\x01"
                    "b\n"
                    "Status: 301 Moved\n"
                    "Location: /elsewhere\n";
    struct origin_hdrs h;
    (void)state;
    assert_int_equal(origin__hdrs_parse(t, strlen(t), &h), 11);
    assert_int_equal(h.status, 301);
    assert_int_equal(h.n, 1);
    assert_hdr(&h.h[0], "Location", "/elsewhere");
}

static void test_hdrs_parse_limit(void **state)
{
    char t[4096];
    size_t n = 0;
    struct origin_hdrs h;
    (void)state;
    for (int i = 0; i < ORIGIN_HDRS_MAX + 3; i++)
        n += (size_t)snprintf(t + n, sizeof(t) - n, "X-H%d: %d\n", i, i);
    assert_int_equal(origin__hdrs_parse(t, n, &h), 3);
    assert_int_equal(h.n, ORIGIN_HDRS_MAX);
}

static void test_headers_build(void **state)
{
    const char *t = "cache-control: no-store\nVary: Accept-Encoding\nLink: <a>\nLink: <b>\n";
    const char *const defs[][2] = {
        {"Content-Type", "application/json"},
        {"Cache-Control", "public, max-age=3600"},
        {"ETag", NULL},
        {"Accept-Ranges", "bytes"},
    };
    struct origin_hdrs h;
    struct buf b;
    (void)state;
    buf_init(&b, 4096);
    assert_int_equal(origin__headers_build(&b, defs, 4, NULL), 0);
    assert_string_equal(b.data, "Content-Type: application/json\r\n"
                                "Cache-Control: public, max-age=3600\r\n"
                                "Accept-Ranges: bytes\r\n");
    buf_reset(&b);
    assert_int_equal(origin__hdrs_parse(t, strlen(t), &h), 0);
    assert_int_equal(origin__headers_build(&b, defs, 4, &h), 0);
    assert_string_equal(b.data, "Content-Type: application/json\r\n"
                                "Accept-Ranges: bytes\r\n"
                                "cache-control: no-store\r\n"
                                "Vary: Accept-Encoding\r\n"
                                "Link: <a>\r\n"
                                "Link: <b>\r\n");
    buf_fini(&b);
    buf_init(&b, 10);
    assert_int_equal(origin__headers_build(&b, defs, 4, NULL), -E2BIG);
    buf_fini(&b);
}

static void test_etag(void **state)
{
    char a[64], b[64];
    (void)state;
    assert_int_equal(origin__etag(a, 0x10, 0x20, 0x30), strlen("\"10-20-30\""));
    assert_string_equal(a, "\"10-20-30\"");
    origin__etag(b, 0x10, 0x21, 0x30);
    assert_string_not_equal(a, b);
    origin__etag(b, UINT64_MAX, INT64_MAX, UINT64_MAX);
    assert_true(strlen(b) < 64);
}

static void test_latency_parse(void **state)
{
    uint64_t ms = 7;
    (void)state;
    assert_int_equal(origin__latency_parse("250", 3, &ms), 0);
    assert_int_equal(ms, 250);
    assert_int_equal(origin__latency_parse("0", 1, &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(origin__latency_parse("1s", 2, &ms), 0);
    assert_int_equal(ms, 1000);
    assert_int_equal(origin__latency_parse("150ms", 5, &ms), 0);
    assert_int_equal(ms, 150);
    ms = 7;
    assert_int_equal(origin__latency_parse("", 0, &ms), -EINVAL);
    assert_int_equal(origin__latency_parse("-5", 2, &ms), -EINVAL);
    assert_int_equal(origin__latency_parse("abc", 3, &ms), -EINVAL);
    assert_int_equal(origin__latency_parse("600001", 6, &ms), -EINVAL);
    assert_int_equal(origin__latency_parse("99999999999999999999", 20, &ms), -EINVAL);
    assert_int_equal(origin__latency_parse("1h", 2, &ms), -EINVAL);
    assert_int_equal(ms, 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_clean_plain),     cmocka_unit_test(test_path_clean_traversal),
        cmocka_unit_test(test_path_clean_too_long),  cmocka_unit_test(test_path_hidden),
        cmocka_unit_test(test_content_type),         cmocka_unit_test(test_hdrs_parse),
        cmocka_unit_test(test_hdrs_parse_bad_lines), cmocka_unit_test(test_hdrs_parse_limit),
        cmocka_unit_test(test_headers_build),        cmocka_unit_test(test_etag),
        cmocka_unit_test(test_latency_parse),
    };
    return cmocka_run_group_tests_name("origin_util", tests, NULL, NULL);
}
