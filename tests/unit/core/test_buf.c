/* tests/unit/core/test_buf.c: the JSON string writer (buf_json_str, buf_json_esc).
 *
 * Escapes follow RFC 8259 §7 with the short forms, DEL passes through, and bytes that are
 * not well-formed UTF-8 become U+FFFD per maximal ill-formed subpart (Unicode §3.9,
 * Table 3-8), so every output is valid JSON in valid UTF-8. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"

#define FFFD "\xef\xbf\xbd"

/* buf_json_str of in[0..n) must be exactly `want` (the quotes included). */
static void str_is(const char *in, size_t n, const char *want)
{
    struct buf b;

    buf_init(&b, 1 << 16);
    assert_int_equal(buf_json_str(&b, in, n), 0);
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    buf_fini(&b);
}

#define STR_IS(lit, want) str_is((lit), sizeof(lit) - 1, (want))

static void test_json_mandatory(void **state)
{
    (void)state;
    STR_IS("", "\"\"");
    STR_IS("plain text", "\"plain text\"");
    STR_IS("a\"b\\c", "\"a\\\"b\\\\c\"");
    STR_IS("\"", "\"\\\"\"");
    STR_IS("\\\\", "\"\\\\\\\\\"");
    /* '/' may be escaped but need not be (RFC 8259 §7): it is not. */
    STR_IS("</script>", "\"</script>\"");
}

static void test_json_controls(void **state)
{
    char in[1], want[16];
    (void)state;
    STR_IS("\b\f\n\r\t", "\"\\b\\f\\n\\r\\t\"");
    STR_IS("a\nb", "\"a\\nb\"");
    /* NUL inside the string is data, not its end. */
    STR_IS("a\0b", "\"a\\u0000b\"");
    for (int c = 0; c < 0x20; c++) {
        in[0] = (char)c;
        switch (c) {
        case '\b': snprintf(want, sizeof(want), "\"\\b\""); break;
        case '\f': snprintf(want, sizeof(want), "\"\\f\""); break;
        case '\n': snprintf(want, sizeof(want), "\"\\n\""); break;
        case '\r': snprintf(want, sizeof(want), "\"\\r\""); break;
        case '\t': snprintf(want, sizeof(want), "\"\\t\""); break;
        default: snprintf(want, sizeof(want), "\"\\u%04x\"", (unsigned)c); break;
        }
        str_is(in, 1, want);
    }
    /* Every other ASCII byte, DEL included, is itself. */
    for (int c = 0x20; c < 0x80; c++) {
        if (c == '"' || c == '\\')
            continue;
        in[0] = (char)c;
        snprintf(want, sizeof(want), "\"%c\"", c);
        str_is(in, 1, want);
    }
}

static void test_json_utf8_valid(void **state)
{
    (void)state;
    /* The first and last code point of each sequence length, U+FFFD, U+2028. */
    STR_IS("\xc2\x80\xdf\xbf", "\"\xc2\x80\xdf\xbf\"");
    STR_IS("\xe0\xa0\x80\xef\xbf\xbf", "\"\xe0\xa0\x80\xef\xbf\xbf\"");
    STR_IS("\xed\x9f\xbf\xee\x80\x80", "\"\xed\x9f\xbf\xee\x80\x80\"");
    STR_IS("\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", "\"\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\"");
    STR_IS(FFFD "\xe2\x80\xa8", "\"" FFFD "\xe2\x80\xa8\"");
    STR_IS("caf\xc3\xa9 \xe2\x82\xac\n", "\"caf\xc3\xa9 \xe2\x82\xac\\n\"");
}

static void test_json_utf8_invalid(void **state)
{
    (void)state;
    /* Unicode Table 3-8: one U+FFFD per maximal subpart of an ill-formed sequence. */
    STR_IS("\x61\xf1\x80\x80\xe1\x80\xc2\x62\x80\x63\x80\xbf\x64",
           "\"a" FFFD FFFD FFFD "b" FFFD "c" FFFD FFFD "d\"");
    STR_IS("\x80", "\"" FFFD "\"");          /* stray continuation */
    STR_IS("\xc0\xaf", "\"" FFFD FFFD "\""); /* overlong '/' */
    STR_IS("\xc1\xbf", "\"" FFFD FFFD "\"");
    STR_IS("\xe0\x80\xaf", "\"" FFFD FFFD FFFD "\""); /* overlong, 3 bytes */
    STR_IS("\xf0\x8f\xbf\xbf", "\"" FFFD FFFD FFFD FFFD "\"");
    STR_IS("\xed\xa0\x80", "\"" FFFD FFFD FFFD "\"");          /* a UTF-16 surrogate */
    STR_IS("\xf4\x90\x80\x80", "\"" FFFD FFFD FFFD FFFD "\""); /* above U+10FFFF */
    STR_IS("\xf5\xff\xfe", "\"" FFFD FFFD FFFD "\"");
    /* Truncated sequences, at the end and before ASCII (which is kept). */
    STR_IS("ab\xe2\x82", "\"ab" FFFD "\"");
    STR_IS("\xe2\x82\"x", "\"" FFFD "\\\"x\"");
    STR_IS("\xf0\x9f\x98", "\"" FFFD "\"");
    STR_IS("\xf0\x9f\x98\n", "\"" FFFD "\\n\"");
    /* A name cut by "%.64s" in the middle of an 'é'. */
    STR_IS("x\xc3", "\"x" FFFD "\"");
}

static void test_json_esc_pieces(void **state)
{
    struct buf b;
    (void)state;
    buf_init(&b, 256);
    assert_int_equal(buf_puts(&b, "{\"path\":\"/"), 0);
    assert_int_equal(buf_json_esc(&b, "a\"b", 3), 0);
    assert_int_equal(buf_json_esc(&b, "", 0), 0);
    assert_int_equal(buf_puts(&b, "\"}"), 0);
    assert_string_equal(b.data, "{\"path\":\"/a\\\"b\"}");
    buf_fini(&b);
}

static void test_json_cap(void **state)
{
    struct buf b;
    (void)state;
    /* Each way of running out (the opening quote, a plain run, an escape, a U+FFFD, the
     * closing quote) leaves the buffer exactly as it was. */
    const char *in[] = {"abcdef", "ab\ncd", "ab\xff", "abc"};
    for (size_t cap = 2; cap < 14; cap++) {
        for (size_t k = 0; k < sizeof(in) / sizeof(in[0]); k++) {
            buf_init(&b, cap);
            assert_int_equal(buf_puts(&b, "xy"), 0);
            int rc = buf_json_str(&b, in[k], strlen(in[k]));
            if (rc == 0) {
                assert_true(b.len <= cap);
            } else {
                assert_int_equal(rc, -E2BIG);
                assert_int_equal(b.len, 2);
                assert_string_equal(b.data, "xy");
            }
            size_t len = b.len;
            rc = buf_json_esc(&b, in[k], strlen(in[k]));
            if (rc != 0) {
                assert_int_equal(rc, -E2BIG);
                assert_int_equal(b.len, len);
                assert_int_equal(b.data[len], '\0');
            }
            buf_fini(&b);
        }
    }
    buf_init(&b, 8);
    assert_int_equal(buf_json_str(&b, "abcdef", 6), 0);
    assert_string_equal(b.data, "\"abcdef\"");
    assert_int_equal(buf_json_esc(&b, "a", 1), -E2BIG);
    assert_string_equal(b.data, "\"abcdef\"");
    buf_fini(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_mandatory),  cmocka_unit_test(test_json_controls),
        cmocka_unit_test(test_json_utf8_valid), cmocka_unit_test(test_json_utf8_invalid),
        cmocka_unit_test(test_json_esc_pieces), cmocka_unit_test(test_json_cap),
    };
    return cmocka_run_group_tests_name("core_buf", tests, NULL, NULL);
}
