/* tests/unit/predict/test_predict_manifest.c: the model store's manifest (good ones and
 * every refusal with the field it names), the version policy as each edge resolves it,
 * the canary split and the sample comparison. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/mc.h"
#include "predict/predict_int.h"

#define SHA1 "1111111111111111111111111111111111111111111111111111111111111111"
#define SHA2 "2222222222222222222222222222222222222222222222222222222222222222"
#define SHA3 "3333333333333333333333333333333333333333333333333333333333333333"
#define VERS                                                                                       \
    "\"versions\":{\"2\":{\"sha256\":\"" SHA2 "\",\"size\":20},"                                   \
    "\"1\":{\"sha256\":\"" SHA1 "\",\"size\":10,\"sample\":{\"input\":{\"features\":[1]},"         \
    "\"output\":{\"y\":[2]}}},"                                                                    \
    "\"3\":{\"sha256\":\"" SHA3 "\",\"size\":30}}"

static int parse(const char *text, struct predict_manifest *m, char *msg, size_t mlen)
{
    return predict__manifest_parse("r", text, strlen(text), m, msg, mlen);
}

static void test_parse_versions_sorted(void **state)
{
    struct predict_manifest m;
    char msg[256];
    (void)state;
    assert_int_equal(parse("{\"name\":\"r\"," VERS "}", &m, msg, sizeof(msg)), 0);
    assert_int_equal(m.n, 3);
    assert_int_equal(m.v[0].version, 1);
    assert_int_equal(m.v[2].version, 3);
    assert_string_equal(m.v[0].sha256, SHA1);
    assert_int_equal(m.v[1].size, 20);
    assert_non_null(m.v[0].sample_in);
    assert_null(m.v[1].sample_in);
    assert_int_equal(m.pol.mode, PREDICT_POL_LATEST);
    assert_non_null(predict__manifest_find(&m, 2));
    assert_null(predict__manifest_find(&m, 4));
    predict__manifest_fini(&m);
}

static void refused(const char *text, const char *field)
{
    struct predict_manifest m;
    char msg[256] = "";
    if (parse(text, &m, msg, sizeof(msg)) != -EINVAL)
        fail_msg("not refused: %s", text);
    if (!strstr(msg, field))
        fail_msg("message '%s' does not name '%s'", msg, field);
    assert_null(m.root);
}

static void test_parse_refused(void **state)
{
    (void)state;
    refused("{", "line");
    refused("[]", "object");
    refused("{\"name\":\"other\"," VERS "}", "name");
    refused("{\"versions\":{}}", "versions");
    refused("{\"versions\":{\"a\":{}}}", "versions");
    /* Two spellings of one version would list it twice. */
    refused("{\"versions\":{\"1\":{\"sha256\":\"" SHA1 "\",\"size\":1},"
            "\"01\":{\"sha256\":\"" SHA1 "\",\"size\":1}}}",
            "'01'");
    refused("{\"versions\":{\"1\":{\"sha256\":\"abc\",\"size\":1}}}", "versions.1.sha256");
    refused("{\"versions\":{\"1\":{\"sha256\":\"" SHA1 "\"}}}", "versions.1.size");
    refused("{\"versions\":{\"1\":{\"sha256\":\"" SHA1 "\",\"size\":1,\"sample\":{}}}}",
            "versions.1.sample");
    refused("{" VERS ",\"policy\":{\"mode\":\"newest\"}}", "policy.mode");
    refused("{" VERS ",\"policy\":{\"mode\":\"pinned\"}}", "policy.version");
    refused("{" VERS ",\"policy\":{\"mode\":\"pinned\",\"version\":9}}", "policy.version");
    refused("{" VERS ",\"policy\":{\"mode\":\"canary\",\"version\":3,\"percent\":101}}",
            "policy.percent");
    refused("{" VERS ",\"policy\":{\"mode\":\"canary\",\"version\":3,\"edges\":\"e1\"}}",
            "policy.edges");
    refused("{" VERS ",\"policy\":{\"mode\":\"canary\",\"version\":1,\"percent\":10}}", "base");
    refused("{" VERS ",\"active\":7}", "active");
}

static void resolve(const char *text, const char *edge, int64_t stable, int64_t canary,
                    unsigned percent)
{
    struct predict_manifest m;
    struct predict_target t;
    char msg[256];
    if (parse(text, &m, msg, sizeof(msg)) != 0)
        fail_msg("parse: %s", msg);
    predict__policy_resolve(&m, edge, &t);
    if (t.stable != stable || t.canary != canary || t.percent != percent)
        fail_msg("%s on %s: got %lld/%lld/%u, want %lld/%lld/%u", text, edge ? edge : "(none)",
                 (long long)t.stable, (long long)t.canary, t.percent, (long long)stable,
                 (long long)canary, percent);
    predict__manifest_fini(&m);
}

static void test_policy(void **state)
{
    (void)state;
    resolve("{" VERS "}", "e1", 3, -1, 0);
    resolve("{" VERS ",\"policy\":{\"mode\":\"latest\"}}", NULL, 3, -1, 0);
    resolve("{" VERS ",\"active\":2}", "e1", 2, -1, 0);
    resolve("{" VERS ",\"policy\":{\"mode\":\"pinned\",\"version\":1}}", "e1", 1, -1, 0);
    resolve("{" VERS ",\"policy\":{\"mode\":\"pinned\",\"version\":\"2\"}}", "e1", 2, -1, 0);
    /* Canary on listed edges only: members switch (100 %), the others keep the base. */
    const char *c1 = "{" VERS ",\"policy\":{\"mode\":\"canary\",\"version\":3,\"base\":1,"
                     "\"edges\":[\"e1\",\"e2\"]}}";
    resolve(c1, "e1", 3, -1, 0);
    resolve(c1, "e2", 3, -1, 0);
    resolve(c1, "e3", 1, -1, 0);
    resolve(c1, NULL, 1, -1, 0);
    /* A share of requests on every edge; the base defaults to the highest below. */
    const char *c2 = "{" VERS ",\"policy\":{\"mode\":\"canary\",\"version\":3,\"percent\":10}}";
    resolve(c2, "e3", 2, 3, 10);
    resolve(c2, NULL, 2, 3, 10);
    const char *c3 = "{" VERS ",\"policy\":{\"mode\":\"canary\",\"version\":3,\"percent\":0,"
                     "\"edges\":[\"e1\"]}}";
    resolve(c3, "e1", 2, -1, 0);
}

static void test_canary_split(void **state)
{
    (void)state;
    for (unsigned pct = 0; pct <= 100; pct += 5) {
        unsigned n = 0;
        /* Exact in every window of 100 consecutive requests, wherever it starts. */
        for (uint64_t s = 37; s < 37 + 100; s++)
            n += (unsigned)predict__policy_canary(s, pct);
        assert_int_equal(n, pct);
    }
    assert_int_equal(predict__policy_canary(0, 1), 1);
    assert_int_equal(predict__policy_canary(1, 1), 0);
}

static void test_policy_describe(void **state)
{
    struct predict_manifest m;
    struct buf b;
    char msg[256];
    (void)state;
    const char *c = "{" VERS ",\"policy\":{\"mode\":\"canary\",\"version\":3,\"percent\":25,"
                    "\"edges\":[\"e\\\"1\"]}}";
    assert_int_equal(parse(c, &m, msg, sizeof(msg)), 0);
    buf_init(&b, 4096);
    predict__policy_describe(&m, &b);
    buf_puts(&b, "");
    assert_string_equal(b.data, "{\"mode\":\"canary\",\"version\":3,\"base\":2,\"percent\":25,"
                                "\"edges\":[\"e\\\"1\"]}");
    buf_fini(&b);
    predict__manifest_fini(&m);
}

static void compare(const char *want, const char *got, int rc, const char *word)
{
    json_t *w = json_loads(want, 0, NULL), *g = json_loads(got, 0, NULL);
    char msg[256] = "";
    assert_int_equal(predict__sample_compare(w, g, 1e-4, 1e-4, msg, sizeof(msg)), rc);
    if (word && !strstr(msg, word))
        fail_msg("message '%s' does not name '%s'", msg, word);
    json_decref(w);
    json_decref(g);
}

static void test_sample_compare(void **state)
{
    (void)state;
    compare("{\"y\":[[1.0],[2.5]]}", "{\"y\":[1.00001,2.5],\"z\":[0]}", 0, NULL);
    compare("{\"y\":[1,true,null]}", "{\"y\":[1,1,null]}", 0, NULL);
    compare("{\"y\":[1.0]}", "{\"y\":[1.01]}", -EINVAL, "y[0]");
    compare("{\"y\":[1.0,2.0]}", "{\"y\":[1.0]}", -EINVAL, "1 values");
    compare("{\"p\":[1.0]}", "{\"y\":[1.0]}", -EINVAL, "no such output");
    compare("{\"y\":[\"a\"]}", "{\"y\":[1.0]}", -EINVAL, "numbers");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_versions_sorted),
        cmocka_unit_test(test_parse_refused),
        cmocka_unit_test(test_policy),
        cmocka_unit_test(test_canary_split),
        cmocka_unit_test(test_policy_describe),
        cmocka_unit_test(test_sample_compare),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
