/* tests/unit/origin/test_origin_models.c: the model store's write rules (paths under
 * models/ and the manifest check). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>

#include <cmocka.h>

#include "origin/origin_int.h"

static void test_model_path_ok(void **state)
{
    struct origin_model_path mp;
    char msg[256];
    (void)state;
    assert_int_equal(origin__model_path("models/ranker/12/model.onnx", &mp, msg, sizeof(msg)), 1);
    assert_string_equal(mp.name, "ranker");
    assert_string_equal(mp.version, "12");
    assert_int_equal(mp.manifest, 0);
    /* Files beside a version's model (weights, configs) are the store's too. */
    assert_int_equal(origin__model_path("models/ranker/3/weights.bin", &mp, msg, sizeof(msg)), 1);
    assert_string_equal(mp.version, "3");
    assert_int_equal(origin__model_path("models/rank.v2_x-y/manifest.json", &mp, msg, sizeof(msg)),
                     1);
    assert_string_equal(mp.name, "rank.v2_x-y");
    assert_int_equal(mp.manifest, 1);
    /* Not under models/: an ordinary file. */
    assert_int_equal(origin__model_path("assets/models/x", &mp, msg, sizeof(msg)), 0);
    assert_int_equal(origin__model_path("modelsx/a", &mp, msg, sizeof(msg)), 0);
}

static void refused(const char *rel, const char *word)
{
    struct origin_model_path mp;
    char msg[256] = "";
    if (origin__model_path(rel, &mp, msg, sizeof(msg)) != -EINVAL)
        fail_msg("%s was not refused", rel);
    if (!strstr(msg, word))
        fail_msg("%s: message '%s' does not name %s", rel, msg, word);
}

static void test_model_path_refused(void **state)
{
    (void)state;
    refused("models/bad name/1/model.onnx", "NAME");
    refused("models/.hidden/1/model.onnx", "NAME");
    refused("models/r/v1/model.onnx", "VERSION");
    refused("models/r/01/model.onnx", "VERSION");
    refused("models/r/1234567890123456/model.onnx", "VERSION");
    refused("models/r/1", "model.onnx");
    refused("models/r", "manifest.json");
    refused("models", "NAME");
}

static void test_manifest_check(void **state)
{
    char msg[256];
    (void)state;
    const char *ok = "{\"name\":\"r\",\"versions\":{\"1\":{\"sha256\":\"x\"}}}";
    assert_int_equal(origin__manifest_check(ok, strlen(ok), "r", msg, sizeof(msg)), 0);
    const char *other = "{\"name\":\"s\",\"versions\":{}}";
    assert_int_equal(origin__manifest_check(other, strlen(other), "r", msg, sizeof(msg)), -EINVAL);
    assert_non_null(strstr(msg, "name"));
    const char *nov = "{\"versions\":[]}";
    assert_int_equal(origin__manifest_check(nov, strlen(nov), "r", msg, sizeof(msg)), -EINVAL);
    assert_non_null(strstr(msg, "versions"));
    const char *badkey = "{\"versions\":{\"v1\":{}}}";
    assert_int_equal(origin__manifest_check(badkey, strlen(badkey), "r", msg, sizeof(msg)),
                     -EINVAL);
    assert_int_equal(origin__manifest_check("{", 1, "r", msg, sizeof(msg)), -EINVAL);
    assert_int_equal(origin__manifest_check("[]", 2, "r", msg, sizeof(msg)), -EINVAL);
}

static void test_index(void **state)
{
    struct origin_model_path mp;
    char msg[256];
    (void)state;
    assert_int_equal(origin__model_path("models/index.json", &mp, msg, sizeof(msg)), 1);
    assert_int_equal(mp.index, 1);
    assert_int_equal(mp.manifest, 0);
    const char *ok = "{\"models\":[\"ranker\",\"emb.v2\"]}";
    assert_int_equal(origin__index_check(ok, strlen(ok), msg, sizeof(msg)), 0);
    const char *empty = "{\"models\":[]}";
    assert_int_equal(origin__index_check(empty, strlen(empty), msg, sizeof(msg)), 0);
    const char *bad = "{\"models\":[\"ok\",\"bad name\"]}";
    assert_int_equal(origin__index_check(bad, strlen(bad), msg, sizeof(msg)), -EINVAL);
    assert_non_null(strstr(msg, "models[1]"));
    const char *noarr = "{\"models\":\"ranker\"}";
    assert_int_equal(origin__index_check(noarr, strlen(noarr), msg, sizeof(msg)), -EINVAL);
    assert_int_equal(origin__index_check("{", 1, msg, sizeof(msg)), -EINVAL);
    assert_non_null(strstr(msg, "index.json"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_path_ok),
        cmocka_unit_test(test_model_path_refused),
        cmocka_unit_test(test_manifest_check),
        cmocka_unit_test(test_index),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
