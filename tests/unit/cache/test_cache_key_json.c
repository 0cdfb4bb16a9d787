/* tests/unit/cache/test_cache_key_json.c: canonical JSON for request keys: equal values
 * give equal bytes (member order, whitespace, number spellings, escapes), every error
 * with its offset, the nesting limit, exact big numbers and idempotence. */
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

struct canon_case {
    const char *in, *want;
};

struct err_case {
    const char *in;
    size_t pos;
    const char *msg;
};

/* Canonicalises s (NUL-terminated) and checks the result, then that the result is its
 * own canonical form. */
static void canon_is(const char *in, size_t len, const char *want)
{
    struct buf b, b2;
    const char *msg = NULL;
    size_t pos = 0;
    int rc;

    buf_init(&b, 1 << 20);
    buf_init(&b2, 1 << 20);
    rc = cache_key_json_canon(in, len, &b, &pos, &msg);
    if (rc != 0)
        print_error("%s: rc %d at %zu: %s\n", in, rc, pos, msg);
    assert_int_equal(rc, 0);
    if (strlen(want) != b.len || memcmp(b.data, want, b.len) != 0)
        print_error("%s: got %s want %s\n", in, b.data, want);
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    assert_int_equal(cache_key_json_canon(b.data, b.len, &b2, NULL, NULL), 0);
    assert_int_equal(b2.len, b.len);
    assert_memory_equal(b2.data, b.data, b.len);
    buf_fini(&b);
    buf_fini(&b2);
}

static void run_cases(const struct canon_case *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        canon_is(c[i].in, strlen(c[i].in), c[i].want);
}

static void err_is(const char *in, size_t len, size_t want_pos, const char *want_msg)
{
    struct buf b;
    const char *msg = NULL;
    size_t pos = 12345;
    int rc;

    buf_init(&b, 1 << 20);
    assert_int_equal(buf_puts(&b, "keep"), 0);
    rc = cache_key_json_canon(in, len, &b, &pos, &msg);
    if (rc != -EINVAL || pos != want_pos || msg == NULL || strcmp(msg, want_msg) != 0)
        print_error("'%.*s': rc %d at %zu (%s), want %zu (%s)\n", (int)len, in, rc, pos,
                    msg ? msg : "NULL", want_pos, want_msg);
    assert_int_equal(rc, -EINVAL);
    assert_int_equal(pos, want_pos);
    assert_string_equal(msg, want_msg);
    /* The buffer is left as it was. */
    assert_int_equal(b.len, 4);
    assert_string_equal(b.data, "keep");
    buf_fini(&b);
}

static void run_errs(const struct err_case *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        err_is(c[i].in, strlen(c[i].in), c[i].pos, c[i].msg);
}

static void test_issue_example(void **state)
{
    const char *S;

    (void)state;
    canon_is("{\"b\":1,\"a\":[1,2]}", 17, "{\"a\":[1,2],\"b\":1}");
    canon_is("{ \"a\":[1, 2.0], \"b\":1 }", 23, "{\"a\":[1,2],\"b\":1}");
    S = " \t\r\n{\n  \"b\" : 1.000 ,\n  \"a\" : [ 10E-1 , 0.2e1 ]\n}\n";
    canon_is(S, strlen(S), "{\"a\":[1,2],\"b\":1}");
}

static const struct canon_case numbers[] = {
    /* One value, many spellings. */
    {"1", "1"},
    {"1.0", "1"},
    {"1.00", "1"},
    {"1e0", "1"},
    {"10E-1", "1"},
    {"0.1e1", "1"},
    {"100e-2", "1"},
    {"1E+0", "1"},
    {"1e-0", "1"},
    {"0", "0"},
    {"-0", "0"},
    {"-0.0", "0"},
    {"0e10", "0"},
    {"-0E-5", "0"},
    {"0.000", "0"},
    {"-1", "-1"},
    {"-1.50", "-1.5"},
    {"123.456", "123.456"},
    {"123.4560e0", "123.456"},
    {"1e2", "100"},
    {"1E+2", "100"},
    {"12e-1", "1.2"},
    {"1234.5e-2", "12.345"},
    {"0.001", "0.001"},
    {"1e-6", "0.000001"},
    {"1e-7", "1e-7"},
    {"1.5e-7", "1.5e-7"},
    {"0.00000012", "1.2e-7"},
    {"-0.00000012", "-1.2e-7"},
    /* In place up to 21 zeros after the digits, 5 before them; exponent form beyond. */
    {"1e20", "100000000000000000000"},
    {"1e21", "1000000000000000000000"},
    {"1e22", "1e+22"},
    {"123e21", "123000000000000000000000"},
    {"123e22", "1.23e+24"},
    {"1.5e-6", "0.0000015"},
    {"1e300", "1e+300"},
    {"-2.5e-300", "-2.5e-300"},
    {"1e000000000000000000001", "10"}, /* leading zeros of an exponent do not count */
    {"5e-324", "5e-324"},              /* below the smallest double: still exact */
    {"1e400", "1e+400"},               /* above the largest double: still exact */
    /* Integers past 2^53 keep every digit (no double on the way). */
    {"9007199254740993", "9007199254740993"},
    {"9007199254740993.0", "9007199254740993"},
    {"-123456789012345678901234567890", "-123456789012345678901234567890"},
    {"123456789012345678901234567890e1", "1234567890123456789012345678900"},
    {"1234567890123456789012345678901e-40", "1.234567890123456789012345678901e-10"},
    {"18446744073709551617", "18446744073709551617"},
    {"0.1000000000000000055511151231257827", "0.1000000000000000055511151231257827"},
    {"12345678901234567890123.5", "12345678901234567890123.5"},
    {"[1,1.0,-0,0.5e1,2e-1]", "[1,1,0,5,0.2]"},
};

static void test_numbers(void **state)
{
    (void)state;
    run_cases(numbers, MC_ARRAY_SIZE(numbers));
}

static const struct canon_case strings[] = {
    {"\"A\"", "\"A\""},
    {"\"\\u0041\"", "\"A\""},
    {"\"\\/\"", "\"/\""},
    {"\"a/b\"", "\"a/b\""},
    {"\"\\u00e9\"", "\"\xc3\xa9\""},
    {"\"\\u00E9\"", "\"\xc3\xa9\""},
    {"\"\xc3\xa9\"", "\"\xc3\xa9\""},
    {"\"\\u20AC\"", "\"\xe2\x82\xac\""},
    {"\"\\uD83D\\uDE00\"", "\"\xf0\x9f\x98\x80\""},
    {"\"\\ud83d\\ude00\"", "\"\xf0\x9f\x98\x80\""},
    {"\"\xf0\x9f\x98\x80\"", "\"\xf0\x9f\x98\x80\""},
    {"\"\xf4\x8f\xbf\xbf\"", "\"\xf4\x8f\xbf\xbf\""}, /* U+10FFFF */
    {"\"\\u2028\"", "\"\xe2\x80\xa8\""},
    {"\"\x7f\"", "\"\x7f\""},
    {"\"\\u0022\\u005C\"", "\"\\\"\\\\\""},
    {"\"\\\"\\\\\"", "\"\\\"\\\\\""},
    {"\"\\u0008\\u000C\\u000a\\u000D\\u0009\"", "\"\\b\\f\\n\\r\\t\""},
    {"\"\\b\\f\\n\\r\\t\"", "\"\\b\\f\\n\\r\\t\""},
    {"\"\\u0000\\u001F\\u0001\"", "\"\\u0000\\u001f\\u0001\""},
    {"\"\"", "\"\""},
    {"[\"a\", \"b\" ,\"c\"]", "[\"a\",\"b\",\"c\"]"},
};

static void test_strings(void **state)
{
    (void)state;
    run_cases(strings, MC_ARRAY_SIZE(strings));
    /* An escaped NUL is a character like any other. */
    canon_is("{\"a\\u0000b\":1}", 14, "{\"a\\u0000b\":1}");
    /* Runs longer than the output staging area, around escapes. */
    {
        char in[3000], want[3000];
        size_t n = 0, w = 0;

        in[n++] = want[w++] = '"';
        for (int i = 0; i < 1200; i++)
            in[n++] = want[w++] = (char)('a' + i % 26);
        memcpy(in + n, "\\u00e9\\/", 8);
        n += 8;
        memcpy(want + w, "\xc3\xa9/", 3);
        w += 3;
        for (int i = 0; i < 1200; i++)
            in[n++] = want[w++] = (char)('A' + i % 26);
        in[n++] = want[w++] = '"';
        in[n] = want[w] = '\0';
        canon_is(in, n, want);
    }
}

static const struct canon_case members[] = {
    {"{\"b\":1,\"a\":2}", "{\"a\":2,\"b\":1}"},
    {"{\"ab\":1,\"a\":2,\"b\":3}", "{\"a\":2,\"ab\":1,\"b\":3}"},
    /* By UTF-8 bytes: U+00E9 (C3 A9) after 'z'. */
    {"{\"\\u00e9\":1,\"z\":2,\"a\":3}", "{\"a\":3,\"z\":2,\"\xc3\xa9\":1}"},
    /* By unescaped bytes, not by escaped text: '"' (0x22) before 'A', while its escape
     * starts with '\\' (0x5c); U+0001 before '\n' while "\\u" sorts after "\\n". */
    {"{\"A\":2,\"\\\"\":1}", "{\"\\\"\":1,\"A\":2}"},
    {"{\"\\n\":1,\"\\u0001\":2}", "{\"\\u0001\":2,\"\\n\":1}"},
    {"{\"\\\\\":1,\"]\":2,\"[\":3}", "{\"[\":3,\"\\\\\":1,\"]\":2}"},
    {"{}", "{}"},
    {"[]", "[]"},
    {"{ }", "{}"},
    {"[ ]", "[]"},
    {"{\"o\":{\"y\":[{\"d\":1,\"c\":2}],\"x\":null},\"a\":true,\"f\":false}",
     "{\"a\":true,\"f\":false,\"o\":{\"x\":null,\"y\":[{\"c\":2,\"d\":1}]}}"},
    /* Arrays keep their order. */
    {"[3,1,2]", "[3,1,2]"},
    {"[{\"b\":0,\"a\":0},{\"a\":0}]", "[{\"a\":0,\"b\":0},{\"a\":0}]"},
    /* Any value at the top (RFC 8259 §2). */
    {"null", "null"},
    {" true ", "true"},
    {"false", "false"},
    {"\"x\"", "\"x\""},
    {"-7", "-7"},
};

static void test_members_and_structure(void **state)
{
    (void)state;
    run_cases(members, MC_ARRAY_SIZE(members));
}

static void test_many_members(void **state)
{
    struct buf in, want;
    int i;

    (void)state;
    /* 2000 members written in reverse order (k1999 ... k0000), to exercise the sort and
     * the growth of the member stack and reorder scratch. */
    buf_init(&in, 1 << 20);
    buf_init(&want, 1 << 20);
    assert_int_equal(buf_puts(&in, "{"), 0);
    assert_int_equal(buf_puts(&want, "{"), 0);
    for (i = 1999; i >= 0; i--)
        assert_int_equal(buf_printf(&in, "%s\"k%04d\" : {\"z\":%d,\"y\":[%d.0]}",
                                    i == 1999 ? "" : ", ", i, i, i),
                         0);
    for (i = 0; i < 2000; i++)
        assert_int_equal(buf_printf(&want, "%s\"k%04d\":{\"y\":[%d],\"z\":%d}", i ? "," : "", i, i,
                                    i),
                         0);
    assert_int_equal(buf_puts(&in, "}"), 0);
    assert_int_equal(buf_puts(&want, "}"), 0);
    canon_is(in.data, in.len, want.data);
    buf_fini(&in);
    buf_fini(&want);
}

static const struct err_case errs[] = {
    {"", 0, "unexpected end of input"},
    {"   ", 3, "unexpected end of input"},
    {"{", 1, "unexpected end of input"},
    {"[", 1, "unexpected end of input"},
    {"{\"a\"", 4, "unexpected end of input"},
    {"{\"a\":", 5, "unexpected end of input"},
    {"{\"a\":1", 6, "unexpected end of input"},
    {"[1,", 3, "unexpected end of input"},
    {"tru", 3, "unexpected end of input"},
    {"{\"a\" 1}", 5, "unexpected character"},
    {"{a:1}", 1, "unexpected character"},
    {"{\"a\":1,}", 7, "unexpected character"},
    {"{\"a\":1 \"b\":2}", 7, "unexpected character"},
    {"{,}", 1, "unexpected character"},
    {"[1,]", 3, "unexpected character"},
    {"[1 2]", 3, "unexpected character"},
    {"[,1]", 1, "unexpected character"},
    {"[1}", 2, "unexpected character"},
    {"{\"a\":1]", 6, "unexpected character"},
    {"trUe", 2, "unexpected character"},
    {"NaN", 0, "unexpected character"},
    {"Infinity", 0, "unexpected character"},
    {"'a'", 0, "unexpected character"},
    {".5", 0, "unexpected character"},
    {"+1", 0, "unexpected character"},
    {"\xef\xbb\xbf{}", 0, "unexpected character"}, /* a BOM is not JSON text */
    {"[1,\f2]", 3, "unexpected character"},        /* form feed is not JSON whitespace */
    {"01", 1, "invalid number"},
    {"-01", 2, "invalid number"},
    {"-", 1, "invalid number"},
    {"-a", 1, "invalid number"},
    {"[-]", 2, "invalid number"},
    {"1.", 2, "invalid number"},
    {"1.e3", 2, "invalid number"},
    {"1e", 2, "invalid number"},
    {"1e+", 3, "invalid number"},
    {"[1E-x]", 4, "invalid number"},
    {"-Infinity", 1, "invalid number"},
    {"[1e1234567890123456]", 1, "number out of range"},
    {"nulll", 4, "trailing data"},
    {"{} x", 3, "trailing data"},
    {"[] []", 3, "trailing data"},
    {"1 2", 2, "trailing data"},
    {"\"abc", 0, "unterminated string"},
    {"[\"a\",\"b", 5, "unterminated string"},
    {"\"\\", 0, "unterminated string"},
    {"\"\\u12", 0, "unterminated string"},
    {"\"\\x\"", 1, "invalid escape"},
    {"\"ab\\'\"", 3, "invalid escape"},
    {"\"\\u12G4\"", 1, "invalid escape"},
    {"\"\\U0041\"", 1, "invalid escape"},
    {"\"\\uD800\"", 1, "lone surrogate"},
    {"\"\\uDC00\"", 1, "lone surrogate"},
    {"\"\\uDBFF\\uDBFF\"", 1, "lone surrogate"},
    {"\"ab\\uD800\\u0041\"", 3, "lone surrogate"},
    {"\"\\uD800x\"", 1, "lone surrogate"},
    {"\"a\x01\"", 2, "control character in string"},
    {"\"a\tb\"", 2, "control character in string"},
    {"\"a\nb\"", 2, "control character in string"},
    {"\"\xc3\x28\"", 1, "invalid UTF-8"},         /* bad continuation byte */
    {"\"\xc0\xaf\"", 1, "invalid UTF-8"},         /* overlong '/' */
    {"\"\xe0\x80\xaf\"", 1, "invalid UTF-8"},     /* overlong, 3 bytes */
    {"\"\xf0\x80\x80\xaf\"", 1, "invalid UTF-8"}, /* overlong, 4 bytes */
    {"\"\xed\xa0\x80\"", 1, "invalid UTF-8"},     /* a surrogate encoded in UTF-8 */
    {"\"\xf4\x90\x80\x80\"", 1, "invalid UTF-8"}, /* past U+10FFFF */
    {"\"ab\xe2\x82\"", 3, "invalid UTF-8"},       /* truncated before the quote */
    {"\"\x80\"", 1, "invalid UTF-8"},             /* stray continuation byte */
    {"\"\xff\"", 1, "invalid UTF-8"},
    {"\"\xf8\x88\x80\x80\x80\"", 1, "invalid UTF-8"},
    {"\"\xe2\x82", 1, "invalid UTF-8"},
    {"{\"a\":1,\"b\":2,\"a\":3}", 13, "duplicate key"},
    {"{\"a\":1,\"\\u0061\":2}", 7, "duplicate key"},
    {"{\"a\":{\"x\":1,\"x\":2}}", 12, "duplicate key"},
    {"{\"b\":1,\"a\":1,\"b\":1,\"a\":1}", 13, "duplicate key"},
    {"{\"a\":1,\"a\":1,\"a\":1}", 7, "duplicate key"},
};

static void test_errors(void **state)
{
    (void)state;
    run_errs(errs, MC_ARRAY_SIZE(errs));
    /* A NUL byte is no JSON character, inside a string or outside. */
    err_is("[1,\0]", 5, 3, "unexpected character");
    err_is("\"a\0\"", 4, 2, "control character in string");
}

static void test_nesting_limit(void **state)
{
    char in[8 * 70];
    size_t n;

    (void)state;
    for (int depth = 63; depth <= 66; depth++) {
        /* Alternating {"k": and [ levels. */
        n = 0;
        for (int i = 0; i < depth; i++) {
            if (i % 2) {
                in[n++] = '[';
            } else {
                memcpy(in + n, "{\"k\":", 5);
                n += 5;
            }
        }
        in[n++] = '1';
        for (int i = depth - 1; i >= 0; i--)
            in[n++] = i % 2 ? ']' : '}';
        in[n] = '\0';
        if (depth <= 64) {
            canon_is(in, n, in);
        } else {
            /* The 65th opening bracket comes after 32 '{"k":' and 32 '['. */
            err_is(in, n, 32 * 5 + 32, "nesting too deep");
        }
    }
    memset(in, '[', 65);
    err_is(in, 65, 64, "nesting too deep");
    memset(in, '[', 64);
    memset(in + 64, ']', 64);
    canon_is(in, 128,
             "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
             "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
}

static void test_cap_and_append(void **state)
{
    static const char doc[] = "{\"b\":[1,2,3],\"a\":\"hello\"}";
    static const char want[] = "{\"a\":\"hello\",\"b\":[1,2,3]}";
    const char *msg = NULL;
    size_t pos = 0;
    struct buf b;

    (void)state;
    /* Appends after what the buffer holds. */
    buf_init(&b, 4 + sizeof(want) - 1);
    assert_int_equal(buf_puts(&b, "key\n"), 0);
    assert_int_equal(cache_key_json_canon(doc, sizeof(doc) - 1, &b, NULL, NULL), 0);
    assert_memory_equal(b.data + 4, want, sizeof(want) - 1);
    buf_fini(&b);

    /* One byte short: -E2BIG, the buffer as it was. */
    buf_init(&b, 4 + sizeof(want) - 2);
    assert_int_equal(buf_puts(&b, "key\n"), 0);
    assert_int_equal(cache_key_json_canon(doc, sizeof(doc) - 1, &b, &pos, &msg), -E2BIG);
    assert_int_equal(b.len, 4);
    assert_string_equal(b.data, "key\n");
    buf_fini(&b);

    /* Over the cap in the middle of a large document. */
    {
        struct buf big;

        buf_init(&big, 1 << 16);
        assert_int_equal(buf_puts(&big, "["), 0);
        for (int i = 0; i < 1000; i++)
            assert_int_equal(buf_printf(&big, "%s{\"b\":%d,\"a\":\"x\"}", i ? "," : "", i), 0);
        assert_int_equal(buf_puts(&big, "]"), 0);
        buf_init(&b, 4000);
        assert_int_equal(buf_puts(&b, "key\n"), 0);
        assert_int_equal(cache_key_json_canon(big.data, big.len, &b, NULL, NULL), -E2BIG);
        assert_int_equal(b.len, 4);
        assert_string_equal(b.data, "key\n");
        buf_fini(&b);
        buf_fini(&big);
    }

    /* Numbers may grow (1e20 is 21 digits): the cap is on the output. */
    buf_init(&b, 20);
    assert_int_equal(cache_key_json_canon("1e20", 4, &b, NULL, NULL), -E2BIG);
    assert_int_equal(b.len, 0);
    buf_fini(&b);
}

static void test_equal_values_equal_bytes(void **state)
{
    static const char *const same[] = {
        "{\"model\":\"m\",\"inputs\":[[1,2.5],[3,4]],\"opts\":{\"t\":0.5,\"k\":10}}",
        "{\"opts\":{\"k\":1e1,\"t\":5e-1},\"inputs\":[[1.0,2.50],[3e0,40E-1]],"
        "\"model\":\"\\u006d\"}",
        "  {\"inputs\" : [ [ 1 , 2.5 ] , [ 3 , 4 ] ] ,\n \"model\":\"m\" ,"
        "\"opts\":{\"t\":0.50e0,\"k\":10}}",
    };
    struct buf a, b;

    (void)state;
    buf_init(&a, 4096);
    buf_init(&b, 4096);
    assert_int_equal(cache_key_json_canon(same[0], strlen(same[0]), &a, NULL, NULL), 0);
    for (size_t i = 1; i < MC_ARRAY_SIZE(same); i++) {
        buf_reset(&b);
        assert_int_equal(cache_key_json_canon(same[i], strlen(same[i]), &b, NULL, NULL), 0);
        assert_int_equal(a.len, b.len);
        assert_memory_equal(a.data, b.data, a.len);
    }
    /* Different values stay different: array order, types. */
    buf_reset(&a);
    buf_reset(&b);
    assert_int_equal(cache_key_json_canon("[1,2]", 5, &a, NULL, NULL), 0);
    assert_int_equal(cache_key_json_canon("[2,1]", 5, &b, NULL, NULL), 0);
    assert_memory_not_equal(a.data, b.data, 5);
    buf_reset(&b);
    assert_int_equal(cache_key_json_canon("[\"1\",2]", 7, &b, NULL, NULL), 0);
    assert_int_not_equal(a.len, b.len);
    buf_fini(&a);
    buf_fini(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_issue_example),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_members_and_structure),
        cmocka_unit_test(test_many_members),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_cap_and_append),
        cmocka_unit_test(test_equal_values_equal_bytes),
    };

    return cmocka_run_group_tests_name("cache_key_json", tests, NULL, NULL);
}
