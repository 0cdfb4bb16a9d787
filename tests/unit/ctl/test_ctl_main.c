/* tests/unit/ctl/test_ctl_main.c: the target flags every `mlcdn ctl` command shares: one
 * transport exactly, each well formed, and errors that name the flag. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ctl/ctl_int.h"

static int check(struct ctl_target *t, char *err, size_t n)
{
    err[0] = 0;
    return ctl__target_check(t, err, n);
}

static void one_transport(void **state)
{
    struct ctl_target t;
    char err[512];
    (void)state;
    ctl__target_init(&t);
    assert_int_equal(-EINVAL, check(&t, err, sizeof(err)));
    assert_non_null(strstr(err, "--router"));
    t.edges = "http://127.0.0.1:1";
    assert_int_equal(0, check(&t, err, sizeof(err)));
    t.redis = "redis://127.0.0.1";
    assert_int_equal(-EINVAL, check(&t, err, sizeof(err)));
    assert_non_null(strstr(err, "exclude"));
    t.edges = NULL;
    assert_int_equal(0, check(&t, err, sizeof(err)));
    t.redis = "redis://h:0";
    assert_int_equal(-EINVAL, check(&t, err, sizeof(err)));
    assert_non_null(strstr(err, "--redis"));
    t.redis = NULL;
    t.router = "127.0.0.1:8055";
    assert_int_equal(-EINVAL, check(&t, err, sizeof(err)));
    assert_non_null(strstr(err, "--router"));
    t.router = "http://127.0.0.1:8055";
    t.retries = 11;
    assert_int_equal(-EINVAL, check(&t, err, sizeof(err)));
    assert_non_null(strstr(err, "--retries"));
    t.retries = 0;
    t.timeout_ms = 0;
    assert_int_equal(-EINVAL, check(&t, err, sizeof(err)));
    assert_non_null(strstr(err, "--timeout"));
}

static void edges_list(void **state)
{
    char **v, err[512];
    size_t n;
    (void)state;
    assert_int_equal(0, ctl__edges_split("http://a:1/,https://b:2", &v, &n, err, sizeof(err)));
    assert_int_equal(2, n);
    assert_string_equal("http://a:1", v[0]);
    assert_string_equal("https://b:2", v[1]);
    ctl__strv_free(v, n);
    static const char *const bad[] = {"",    "http://a:1,", ",http://a:1", "http://a,,http://b",
                                      "a:1", NULL};
    for (int i = 0; bad[i]; i++) {
        err[0] = 0;
        assert_int_equal(-EINVAL, ctl__edges_split(bad[i], &v, &n, err, sizeof(err)));
        assert_non_null(strstr(err, "--edges"));
    }
}

static void op_ids_differ(void **state)
{
    char a[17], b[17];
    (void)state;
    ctl__op_id(a);
    ctl__op_id(b);
    assert_int_equal(16, strlen(a));
    assert_string_not_equal(a, b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(one_transport),
        cmocka_unit_test(edges_list),
        cmocka_unit_test(op_ids_differ),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
