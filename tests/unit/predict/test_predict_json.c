/* tests/unit/predict/test_predict_json.c: JSON -> tensor decoding (counting, flattening,
 * dtype checks and conversions, error messages naming the field) and tensor -> JSON. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "predict/predict_int.h"

static json_t *J(const char *s)
{
    json_error_t e;
    json_t *v = json_loads(s, JSON_DECODE_ANY, &e);
    assert_non_null(v);
    return v;
}

static void test_count_and_fill_float(void **state)
{
    char msg[256];
    float f[4];
    (void)state;

    json_t *v = J("[[1, 2.5], [-3, 4e2]]");
    assert_int_equal(predict__json_count(v, INFER_DT_FLOAT, "features", msg, sizeof(msg)), 4);
    assert_int_equal(
        predict__json_fill(v, 0, INFER_DT_FLOAT, f, 4, "features", msg, sizeof(msg)), 0);
    assert_true(f[0] == 1.0f && f[1] == 2.5f && f[2] == -3.0f && f[3] == 400.0f);
    /* Count mismatch at fill time. */
    assert_int_equal(
        predict__json_fill(v, 0, INFER_DT_FLOAT, f, 3, "features", msg, sizeof(msg)), -1);
    json_decref(v);
    v = J("7");
    assert_int_equal(predict__json_count(v, INFER_DT_FLOAT, "x", msg, sizeof(msg)), 1);
    json_decref(v);
}

static void test_errors_name_the_field(void **state)
{
    char msg[256];
    (void)state;

    json_t *v = J("[[1, 2], [3, \"x\"]]");
    assert_int_equal(predict__json_count(v, INFER_DT_FLOAT, "features", msg, sizeof(msg)), -1);
    assert_string_equal(msg, "features[1][1]: expected a number, got a string");
    json_decref(v);
    v = J("[1, 2.5]");
    assert_int_equal(
        predict__json_count(v, INFER_DT_INT64, "inputs.user_id", msg, sizeof(msg)), -1);
    assert_string_equal(msg, "inputs.user_id[1]: expected an integer, got a number");
    json_decref(v);
    v = J("[true, 1]");
    assert_int_equal(predict__json_count(v, INFER_DT_BOOL, "b", msg, sizeof(msg)), -1);
    assert_string_equal(msg, "b[1]: expected a boolean, got an integer");
    json_decref(v);
    v = J("[[[[[[[[[[1]]]]]]]]]]");
    assert_int_equal(predict__json_count(v, INFER_DT_FLOAT, "f", msg, sizeof(msg)), -1);
    assert_non_null(strstr(msg, "nested too deeply"));
    json_decref(v);
    v = J("{\"a\": 1}");
    assert_int_equal(predict__json_count(v, INFER_DT_FLOAT, "f", msg, sizeof(msg)), -1);
    assert_string_equal(msg, "f: expected a number, got an object");
    json_decref(v);
    assert_int_equal(predict__json_count(NULL, INFER_DT_FLOAT, "f", msg, sizeof(msg)), -1);
    assert_string_equal(msg, "f: missing");
}

static void test_declared_types(void **state)
{
    char msg[256];
    int64_t i64[3];
    float f[2];
    (void)state;

    /* INT32 declared, INT64 model input: widened. */
    json_t *v = J("[1, -2, 2147483647]");
    assert_int_equal(predict__json_fill(v, INFER_DT_INT32, INFER_DT_INT64, i64, 3, "d", msg,
                                        sizeof(msg)), 0);
    assert_true(i64[0] == 1 && i64[1] == -2 && i64[2] == 2147483647);
    json_decref(v);
    v = J("[2147483648]");
    assert_int_equal(predict__json_fill(v, INFER_DT_INT32, INFER_DT_INT64, i64, 1, "d", msg,
                                        sizeof(msg)), -1);
    assert_string_equal(msg, "d[0]: expected an integer in the int32 range, got an integer");
    json_decref(v);
    /* BOOL declared, float input. */
    v = J("[true, false]");
    assert_int_equal(predict__json_fill(v, INFER_DT_BOOL, INFER_DT_FLOAT, f, 2, "d", msg,
                                        sizeof(msg)), 0);
    assert_true(f[0] == 1.0f && f[1] == 0.0f);
    json_decref(v);
}

static void test_oip_names(void **state)
{
    (void)state;
    assert_int_equal(predict__json_oip_dtype("FP32"), INFER_DT_FLOAT);
    assert_int_equal(predict__json_oip_dtype("INT64"), INFER_DT_INT64);
    assert_int_equal(predict__json_oip_dtype("INT32"), INFER_DT_INT32);
    assert_int_equal(predict__json_oip_dtype("BOOL"), INFER_DT_BOOL);
    assert_int_equal(predict__json_oip_dtype("FP16"), 0);
    assert_string_equal(predict__json_oip_name(INFER_DT_FLOAT), "FP32");
    assert_string_equal(predict__json_oip_name(INFER_DT_INT64), "INT64");
}

static void test_encode(void **state)
{
    struct buf b;
    float f[6] = {0.5f, 1.0f / 3.0f, -2.0f, 0, 0, 0};
    int64_t d2[2] = {2, 3};
    int64_t one = 1;
    (void)state;

    buf_init(&b, 4096);
    predict__json_tensor(&b, INFER_DT_FLOAT, f, &one, 1, 1);
    assert_string_equal(b.data, "0.5");
    buf_reset(&b);
    predict__json_tensor(&b, INFER_DT_FLOAT, f, &one, 1, 0);
    assert_string_equal(b.data, "[0.5]");
    buf_reset(&b);
    predict__json_tensor(&b, INFER_DT_FLOAT, f, d2, 2, 1);
    assert_string_equal(b.data, "[[0.5,0.333333343,-2],[0,0,0]]");
    buf_reset(&b);
    f[0] = 1.0f / 0.0f;
    predict__json_elem(&b, INFER_DT_FLOAT, f, 0);
    assert_string_equal(b.data, "null");
    buf_reset(&b);
    int64_t l = -42;
    predict__json_elem(&b, INFER_DT_INT64, &l, 0);
    unsigned char t = 1;
    predict__json_elem(&b, INFER_DT_BOOL, &t, 0);
    assert_string_equal(b.data, "-42true");
    buf_reset(&b);
    predict__json_str(&b, "a\"b\\c\n\x01", 7);
    assert_string_equal(b.data, "\"a\\\"b\\\\c\\n\\u0001\"");
    buf_fini(&b);
}

static void test_fast_predict(void **state)
{
    double v[8];
    struct predict_json_fast f = {.vals = v, .cap = 8};
    (void)state;

    const char *b = " {\"features\": [[1, -2.5, 0.1, 3e2]], \"model\" : \"mlp\",\n"
                    "\"model_version\": 7 } ";
    assert_int_equal(predict__json_fast_predict(b, strlen(b), &f), 1);
    assert_int_equal(f.n, 4);
    assert_true(v[0] == 1.0 && v[1] == -2.5 && v[2] == 0.1 && v[3] == 300.0);
    assert_int_equal(f.model_len, 3);
    assert_memory_equal(f.model, "mlp", 3);
    assert_int_equal(f.version, 7);
    /* Shapes the fast path leaves to the full decoder. */
    const char *no[] = {
        "{\"features\": [1, \"x\"]}", "{\"inputs\": {\"x\": [1]}}",
        "{\"model\": \"a\\u0062\", \"features\": [1]}", "{\"features\": [1, 2]",
        "{\"features\": [1, 2]} x", "{\"features\": []}", "{\"features\": [01]}",
        "{\"features\": [1, 2], \"features\": [3]}", "{\"model\": \"m\"}",
        "{\"features\": [1,2,3,4,5,6,7,8,9]}", "[1]", "",
        "{\"features\": [[1], [2]]}", "{\"features\": [true]}",
    };
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        assert_int_equal(predict__json_fast_predict(no[i], strlen(no[i]), &f), 0);
}

static void test_fast_numbers_match_strtod(void **state)
{
    char body[128], num[40];
    double v[1];
    struct predict_json_fast f = {.vals = v, .cap = 1};
    uint64_t x = 88172645463325252ull;
    (void)state;

    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        switch (i % 4) {
        case 0: snprintf(num, sizeof(num), "%.*f", (int)(x % 12), (double)(x % 100000) / 977.0); break;
        case 1: snprintf(num, sizeof(num), "-0.%0*llu", (int)(x % 18) + 1, (unsigned long long)(x % 1000000007ull)); break;
        case 2: snprintf(num, sizeof(num), "%.9g", (double)(int64_t)x / 1e9); break;
        default: snprintf(num, sizeof(num), "%llu.%llu", (unsigned long long)(x % 1000), (unsigned long long)(x >> 40)); break;
        }
        snprintf(body, sizeof(body), "{\"features\":[%s]}", num);
        assert_int_equal(predict__json_fast_predict(body, strlen(body), &f), 1);
        assert_true(v[0] == strtod(num, NULL));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_count_and_fill_float),
        cmocka_unit_test(test_errors_name_the_field),
        cmocka_unit_test(test_declared_types),
        cmocka_unit_test(test_oip_names),
        cmocka_unit_test(test_encode),
        cmocka_unit_test(test_fast_predict),
        cmocka_unit_test(test_fast_numbers_match_strtod),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
