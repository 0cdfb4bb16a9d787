/* tests/unit/core/test_redis_util.c: redis:// URLs (what is accepted, what is refused and
 * why), stream entry ids (parse, order, format) and the stream-gap decision. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/redis_util.h"

static void url_forms(void **state)
{
    struct redis_url u;
    const char *why;
    (void)state;
    assert_int_equal(0, redis_url_parse("redis://127.0.0.1", &u, &why));
    assert_string_equal("127.0.0.1", u.host);
    assert_int_equal(6379, u.port);
    assert_string_equal("", u.password);
    assert_int_equal(0, u.db);
    assert_int_equal(0, redis_url_parse("redis://:s3cret@redis.local:7000/3", &u, &why));
    assert_string_equal("redis.local", u.host);
    assert_int_equal(7000, u.port);
    assert_string_equal("s3cret", u.password);
    assert_int_equal(3, u.db);
    assert_int_equal(0, redis_url_parse("redis://user:pw@[::1]:6380", &u, &why));
    assert_string_equal("::1", u.host);
    assert_string_equal("pw", u.password);
    assert_int_equal(6380, u.port);
}

static void url_refused(void **state)
{
    struct redis_url u;
    const char *why = NULL;
    (void)state;
    static const char *const bad[] = {"http://127.0.0.1", "redis://",        "redis://:6379",
                                      "redis://h:0",      "redis://h:99999", "redis://h:12x",
                                      "redis://h/x",      "redis://[::1",    NULL};
    for (int i = 0; bad[i]; i++) {
        why = NULL;
        assert_int_equal(-EINVAL, redis_url_parse(bad[i], &u, &why));
        assert_non_null(why);
    }
    assert_int_equal(-EINVAL, redis_url_parse(NULL, &u, &why));
}

static struct redis_sid sid(const char *s)
{
    struct redis_sid id;
    assert_int_equal(0, redis_sid_parse(s, strlen(s), &id));
    return id;
}

static void sid_order(void **state)
{
    char out[48];
    struct redis_sid id;
    (void)state;
    assert_true(redis_sid_cmp(sid("1-0"), sid("1-1")) < 0);
    assert_true(redis_sid_cmp(sid("2-0"), sid("1-99")) > 0);
    assert_true(redis_sid_cmp(sid("1700000000000-5"), sid("1700000000000-5")) == 0);
    /* Numbers, not strings: "10-0" is after "9-0". */
    assert_true(redis_sid_cmp(sid("10-0"), sid("9-0")) > 0);
    assert_true(redis_sid_cmp(sid("5"), sid("5-0")) == 0);
    assert_true(redis_sid_cmp(sid("18446744073709551615-18446744073709551615"), sid("0-0")) > 0);
    redis_sid_fmt(sid("1700000000000-42"), out, sizeof(out));
    assert_string_equal("1700000000000-42", out);
    assert_int_equal(-EINVAL, redis_sid_parse("", 0, &id));
    assert_int_equal(-EINVAL, redis_sid_parse("1-", 2, &id));
    assert_int_equal(-EINVAL, redis_sid_parse("-1", 2, &id));
    assert_int_equal(-EINVAL, redis_sid_parse("a-1", 3, &id));
    assert_int_equal(-EINVAL, redis_sid_parse("18446744073709551616-0", 22, &id));
    /* Only len bytes count. */
    assert_int_equal(0, redis_sid_parse("7-8garbage", 3, &id));
    assert_true(id.ms == 7 && id.seq == 8);
}

/* The reader's position against the stream's state: only a removed position can hide a
 * gap, and a lost or recreated stream is one. */
static void stream_gap(void **state)
{
    (void)state;
    struct redis_stream_info none = {0};
    struct redis_stream_info si = {1, sid("100-0"), sid("50-0"), 1, 10, 10};
    assert_null(redis_stream_gap(sid("0-0"), &none));      /* no stream yet */
    assert_non_null(redis_stream_gap(sid("70-0"), &none)); /* stream lost */
    assert_null(redis_stream_gap(sid("100-0"), &si));      /* at the end */
    assert_null(redis_stream_gap(sid("70-0"), &si));       /* position still there */
    assert_null(redis_stream_gap(sid("50-0"), &si));       /* the first entry itself */
    assert_non_null(redis_stream_gap(sid("200-0"), &si));  /* recreated: ids went back */
    assert_non_null(redis_stream_gap(sid("40-0"), &si));   /* trimmed past the position */
    assert_null(redis_stream_gap(sid("0-0"), &si));        /* from the start, none removed */
    si.added = 12;
    assert_non_null(redis_stream_gap(sid("0-0"), &si)); /* from the start, 2 removed */
    si.added = -1;                                      /* Redis before 7: cannot tell */
    assert_non_null(redis_stream_gap(sid("0-0"), &si));
    struct redis_stream_info empty = {1, sid("100-0"), {0, 0}, 0, 0, 5};
    assert_non_null(redis_stream_gap(sid("90-0"), &empty)); /* everything trimmed */
    assert_null(redis_stream_gap(sid("100-0"), &empty));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(url_forms),
        cmocka_unit_test(url_refused),
        cmocka_unit_test(sid_order),
        cmocka_unit_test(stream_gap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
