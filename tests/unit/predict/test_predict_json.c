/* tests/unit/predict/test_predict_json.c: JSON -> tensor decoding (counting, flattening,
 * dtype checks and conversions, error messages naming the field), the request body
 * decoders (seed shapes and OIP v2, good bodies and every refusal with its message) and
 * tensor -> JSON. */
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
    assert_int_equal(predict__json_fill(v, 0, INFER_DT_FLOAT, f, 4, "features", msg, sizeof(msg)),
                     0);
    assert_true(f[0] == 1.0f && f[1] == 2.5f && f[2] == -3.0f && f[3] == 400.0f);
    /* Count mismatch at fill time. */
    assert_int_equal(predict__json_fill(v, 0, INFER_DT_FLOAT, f, 3, "features", msg, sizeof(msg)),
                     -1);
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
    assert_int_equal(predict__json_count(v, INFER_DT_INT64, "inputs.user_id", msg, sizeof(msg)),
                     -1);
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
                                        sizeof(msg)),
                     0);
    assert_true(i64[0] == 1 && i64[1] == -2 && i64[2] == 2147483647);
    json_decref(v);
    v = J("[2147483648]");
    assert_int_equal(predict__json_fill(v, INFER_DT_INT32, INFER_DT_INT64, i64, 1, "d", msg,
                                        sizeof(msg)),
                     -1);
    assert_string_equal(msg, "d[0]: expected an integer in the int32 range, got an integer");
    json_decref(v);
    /* BOOL declared, float input. */
    v = J("[true, false]");
    assert_int_equal(predict__json_fill(v, INFER_DT_BOOL, INFER_DT_FLOAT, f, 2, "d", msg,
                                        sizeof(msg)),
                     0);
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
        "{\"features\": [1, \"x\"]}",
        "{\"inputs\": {\"x\": [1]}}",
        "{\"model\": \"a\\u0062\", \"features\": [1]}",
        "{\"features\": [1, 2]",
        "{\"features\": [1, 2]} x",
        "{\"features\": []}",
        "{\"features\": [01]}",
        "{\"features\": [1, 2], \"features\": [3]}",
        "{\"model\": \"m\"}",
        "{\"features\": [1,2,3,4,5,6,7,8,9]}",
        "[1]",
        "",
        "{\"features\": [[1], [2]]}",
        "{\"features\": [true]}",
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
        case 0:
            snprintf(num, sizeof(num), "%.*f", (int)(x % 12), (double)(x % 100000) / 977.0);
            break;
        case 1:
            snprintf(num, sizeof(num), "-0.%0*llu", (int)(x % 18) + 1,
                     (unsigned long long)(x % 1000000007ull));
            break;
        case 2: snprintf(num, sizeof(num), "%.9g", (double)(int64_t)x / 1e9); break;
        default:
            snprintf(num, sizeof(num), "%llu.%llu", (unsigned long long)(x % 1000),
                     (unsigned long long)(x >> 40));
            break;
        }
        snprintf(body, sizeof(body), "{\"features\":[%s]}", num);
        assert_int_equal(predict__json_fast_predict(body, strlen(body), &f), 1);
        assert_true(v[0] == strtod(num, NULL));
    }
}

/* ---- body decoders ---- */

/* Versions as the registry describes them (only what the decoders read): "mlp" takes one
 * row of 4 floats; "two" takes an int64 id and 2 floats and answers two outputs. */
static struct predict_model m_mlp = {.name = "mlp"}, m_two = {.name = "two"};
static struct predict_io mlp_in[] = {
    {.name = "x",
     .dtype = INFER_DT_FLOAT,
     .esize = 4,
     .rank = 2,
     .dims = {-1, 4},
     .row_numel = 4,
     .row_bytes = 16},
};
static struct predict_io mlp_out[] = {
    {.name = "y",
     .dtype = INFER_DT_FLOAT,
     .esize = 4,
     .rank = 2,
     .dims = {-1, 2},
     .row_numel = 2,
     .row_bytes = 8},
};
static struct predict_io two_in[] = {
    {.name = "user_id",
     .dtype = INFER_DT_INT64,
     .esize = 8,
     .rank = 2,
     .dims = {-1, 1},
     .row_numel = 1,
     .row_bytes = 8},
    {.name = "dense",
     .dtype = INFER_DT_FLOAT,
     .esize = 4,
     .rank = 2,
     .dims = {-1, 2},
     .row_numel = 2,
     .row_bytes = 8},
};
static struct predict_io two_out[] = {
    {.name = "score",
     .dtype = INFER_DT_FLOAT,
     .esize = 4,
     .rank = 2,
     .dims = {-1, 1},
     .row_numel = 1,
     .row_bytes = 4},
    {.name = "emb",
     .dtype = INFER_DT_FLOAT,
     .esize = 4,
     .rank = 2,
     .dims = {-1, 3},
     .row_numel = 3,
     .row_bytes = 12,
     .off = 4},
};
static const struct predict_version v_mlp = {
    .model = &m_mlp,
    .name = "mlp",
    .n_in = 1,
    .n_out = 1,
    .in = mlp_in,
    .out = mlp_out,
    .cfg = {.max_batch = 8},
};
static const struct predict_version v_two = {
    .model = &m_two,
    .name = "two",
    .n_in = 2,
    .n_out = 2,
    .in = two_in,
    .out = two_out,
    .cfg = {.max_batch = 4},
};

enum body_kind { PREDICT, BATCH, OIP };

/* Decodes body as `kind` for v into d (zeroed first); returns the decoder's result. */
static int decode(enum body_kind kind, const struct predict_version *v, const char *body,
                  struct predict_rows *d, char *msg, size_t mlen)
{
    json_t *root = J(body);
    int rc;

    memset(d, 0, sizeof(*d));
    msg[0] = '\0';
    if (kind == OIP)
        rc = predict__json_oip(root, v, d, msg, mlen);
    else
        rc = predict__json_seed(root, v, kind == BATCH, d, msg, mlen);
    json_decref(root);
    return rc;
}

static void test_seed_model(void **state)
{
    const char *name;
    int64_t version;
    char msg[256];
    (void)state;

    static const struct {
        const char *body, *name;
        int64_t version;
    } good[] = {
        {"{}", NULL, -1},
        {"{\"model\": null, \"model_version\": null}", NULL, -1},
        {"{\"model\": \"mlp\"}", "mlp", -1},
        {"{\"model\": \"mlp\", \"model_version\": 3}", "mlp", 3},
        {"{\"model_version\": \"12\"}", NULL, 12},
        {"{\"version\": 0}", NULL, 0},
        /* model_version wins over version */
        {"{\"model_version\": 2, \"version\": 5}", NULL, 2},
    };
    for (size_t i = 0; i < MC_ARRAY_SIZE(good); i++) {
        json_t *root = J(good[i].body);
        assert_int_equal(predict__json_seed_model(root, &name, &version, msg, sizeof(msg)), 0);
        if (good[i].name)
            assert_string_equal(name, good[i].name);
        else
            assert_null(name);
        assert_int_equal(version, good[i].version);
        json_decref(root);
    }
    static const struct {
        const char *body, *msg;
    } bad[] = {
        {"{\"model\": 5}", "model: expected a string"},
        {"{\"model\": [\"mlp\"]}", "model: expected a string"},
        {"{\"model_version\": -1}", "model_version: expected a non-negative integer"},
        {"{\"model_version\": 1.5}", "model_version: expected a non-negative integer"},
        {"{\"model_version\": \"3x\"}", "model_version: expected a non-negative integer"},
        {"{\"model_version\": \"\"}", "model_version: expected a non-negative integer"},
        {"{\"model_version\": \"-2\"}", "model_version: expected a non-negative integer"},
        {"{\"version\": true}", "model_version: expected a non-negative integer"},
    };
    for (size_t i = 0; i < MC_ARRAY_SIZE(bad); i++) {
        json_t *root = J(bad[i].body);
        msg[0] = '\0';
        assert_int_equal(predict__json_seed_model(root, &name, &version, msg, sizeof(msg)),
                         -EINVAL);
        assert_string_equal(msg, bad[i].msg);
        json_decref(root);
    }
}

static void test_seed_good(void **state)
{
    struct predict_rows d;
    char msg[256];
    const float *x;
    const int64_t *id;
    (void)state;

    /* /predict: one row, flat or nested. */
    assert_int_equal(decode(PREDICT, &v_mlp, "{\"features\": [1, 2.5, -3, 4e2]}", &d, msg,
                            sizeof(msg)),
                     0);
    assert_int_equal(d.rows, 1);
    assert_int_equal(d.n_in, 1);
    x = d.in[0];
    assert_true(x[0] == 1.0f && x[1] == 2.5f && x[2] == -3.0f && x[3] == 400.0f);
    assert_null(d.id);
    predict__rows_fini(&d);
    assert_null(d.in);
    assert_int_equal(decode(PREDICT, &v_mlp, "{\"features\": [[1, 2], [3, 4]]}", &d, msg,
                            sizeof(msg)),
                     0);
    x = d.in[0];
    assert_true(d.rows == 1 && x[3] == 4.0f);
    predict__rows_fini(&d);
    /* /batch_predict: rows in order. */
    assert_int_equal(decode(BATCH, &v_mlp, "{\"features\": [[1, 2, 3, 4], [5, 6, 7, 8]]}", &d, msg,
                            sizeof(msg)),
                     0);
    assert_int_equal(d.rows, 2);
    x = d.in[0];
    assert_true(x[0] == 1.0f && x[4] == 5.0f && x[7] == 8.0f);
    predict__rows_fini(&d);
    /* Named inputs, in the model's input order whatever the body's order. */
    assert_int_equal(decode(PREDICT, &v_two, "{\"inputs\": {\"dense\": [0.5, 1], \"user_id\": 7}}",
                            &d, msg, sizeof(msg)),
                     0);
    assert_int_equal(d.rows, 1);
    assert_int_equal(d.n_in, 2);
    id = d.in[0];
    x = d.in[1];
    assert_true(id[0] == 7 && x[0] == 0.5f && x[1] == 1.0f);
    predict__rows_fini(&d);
    assert_int_equal(decode(BATCH, &v_two,
                            "{\"inputs\": {\"user_id\": [[1], [2], [3]], "
                            "\"dense\": [[1, 2], [3, 4], [5, 6]]}}",
                            &d, msg, sizeof(msg)),
                     0);
    assert_int_equal(d.rows, 3);
    id = d.in[0];
    x = d.in[1];
    assert_true(id[2] == 3 && x[5] == 6.0f);
    predict__rows_fini(&d);
}

struct bad_body {
    enum body_kind kind;
    const struct predict_version *v;
    const char *body, *msg;
};

static void check_bad(const struct bad_body *b, size_t n)
{
    struct predict_rows d;
    char msg[512];

    for (size_t i = 0; i < n; i++) {
        int rc = decode(b[i].kind, b[i].v, b[i].body, &d, msg, sizeof(msg));
        if (rc != -EINVAL || strcmp(msg, b[i].msg) != 0)
            print_error("body %zu: %s\n  rc %d, message: %s\n  expected: %s\n", i, b[i].body, rc,
                        msg, b[i].msg);
        assert_int_equal(rc, -EINVAL);
        assert_string_equal(msg, b[i].msg);
        /* Whatever was allocated before the refusal is the caller's to free (ASan: leaks). */
        predict__rows_fini(&d);
    }
}

static void test_seed_bad(void **state)
{
    static const struct bad_body bad[] = {
        {PREDICT, &v_mlp, "{}",
         "features: missing (an array of numbers, or named inputs as \"inputs\": {...})"},
        {PREDICT, &v_mlp, "{\"features\": [1, 2, 3, 4], \"inputs\": {\"x\": [1, 2, 3, 4]}}",
         "features: send either features or inputs, not both"},
        {PREDICT, &v_mlp, "{\"features\": [1, 2, 3]}",
         "features: expected 4 values for input x of model mlp (shape [4]), got 3"},
        {PREDICT, &v_mlp, "{\"features\": [1, 2, 3, 4, 5]}",
         "features: expected 4 values for input x of model mlp (shape [4]), got 5"},
        {PREDICT, &v_mlp, "{\"features\": [1, \"2\", 3, 4]}",
         "features[1]: expected a number, got a string"},
        {PREDICT, &v_mlp, "{\"features\": [1, 2, 3, 1e39]}",
         "features[3]: number out of the float32 range"},
        {PREDICT, &v_mlp, "{\"features\": null}", "features: expected a number, got null"},
        {PREDICT, &v_two, "{\"features\": [1, 2, 3]}",
         "features: model two has 2 inputs (user_id, dense); send them by name as "
         "\"inputs\": {...}"},
        {BATCH, &v_mlp, "{\"features\": [1, 2, 3, 4]}",
         "features[0]: expected 4 values for input x of model mlp (shape [4]), got 1"},
        {BATCH, &v_mlp, "{\"features\": {\"a\": 1}}", "features: expected an array of rows"},
        {BATCH, &v_mlp, "{\"features\": []}", "features: expected at least one row"},
        {BATCH, &v_mlp,
         "{\"features\": [[1,2,3,4],[1,2,3,4],[1,2,3,4],[1,2,3,4],[1,2,3,4],[1,2,3,4],"
         "[1,2,3,4],[1,2,3,4],[1,2,3,4]]}",
         "features: 9 rows is over max_batch 8 of model mlp"},
        {BATCH, &v_mlp, "{\"features\": [[1, 2, 3, 4], [1, 2, 3]]}",
         "features[1]: expected 4 values for input x of model mlp (shape [4]), got 3"},
        {PREDICT, &v_two, "{\"inputs\": [1, 2]}",
         "inputs: expected an object mapping input names to values"},
        {PREDICT, &v_two, "{\"inputs\": {\"user_id\": 1, \"dense\": [1, 2], \"age\": 3}}",
         "inputs.age: model two has no such input (inputs: user_id, dense)"},
        {PREDICT, &v_two, "{\"inputs\": {\"user_id\": 1}}",
         "inputs.dense: missing (model two needs user_id, dense)"},
        {PREDICT, &v_two, "{\"inputs\": {\"user_id\": 1.5, \"dense\": [1, 2]}}",
         "inputs.user_id: expected an integer, got a number"},
        {PREDICT, &v_two, "{\"inputs\": {\"user_id\": true, \"dense\": [1, 2]}}",
         "inputs.user_id: expected an integer, got a boolean"},
        {PREDICT, &v_two, "{\"inputs\": {\"user_id\": 1, \"dense\": [1, 2, 3]}}",
         "inputs.dense: expected 2 values for input dense of model two (shape [2]), got 3"},
        {BATCH, &v_two, "{\"inputs\": {\"user_id\": [[1], [2]], \"dense\": [[1, 2]]}}",
         "inputs.dense: 1 rows, but inputs.user_id has 2"},
        {BATCH, &v_two, "{\"inputs\": {\"user_id\": 1, \"dense\": [[1, 2]]}}",
         "inputs.user_id: expected an array of rows"},
        {BATCH, &v_two, "{\"inputs\": {\"user_id\": [], \"dense\": []}}",
         "inputs: expected at least one row"},
        {BATCH, &v_two,
         "{\"inputs\": {\"user_id\": [1, 2, 3, 4, 5], \"dense\": [[1,2],[1,2],[1,2],[1,2],[1,2]]}}",
         "inputs: 5 rows is over max_batch 4 of model two"},
        {BATCH, &v_two, "{\"inputs\": {\"user_id\": [[1], [2]], \"dense\": [[1, 2], [3, \"4\"]]}}",
         "inputs.dense[1][1]: expected a number, got a string"},
    };
    (void)state;
    check_bad(bad, MC_ARRAY_SIZE(bad));
}

static void test_oip_good(void **state)
{
    struct predict_rows d;
    char msg[256];
    const float *x;
    const int64_t *id;
    (void)state;

    assert_int_equal(decode(OIP, &v_mlp,
                            "{\"id\": \"r\\\"1\", \"inputs\": [{\"name\": \"x\", "
                            "\"shape\": [2, 4], \"datatype\": \"FP32\", "
                            "\"data\": [[1, 2, 3, 4], [5, 6, 7, 8]]}]}",
                            &d, msg, sizeof(msg)),
                     0);
    assert_int_equal(d.rows, 2);
    x = d.in[0];
    assert_true(x[0] == 1.0f && x[7] == 8.0f);
    assert_string_equal(d.id, "\"r\\\"1\""); /* kept as a JSON literal, to echo */
    assert_int_equal(d.outsel, 0);
    predict__rows_fini(&d);
    /* Inputs in any order; INT32 data for an INT64 input, BOOL for a float one (widened);
     * outputs select what is answered; "outputs": null means all. */
    assert_int_equal(decode(OIP, &v_two,
                            "{\"inputs\": [{\"name\": \"dense\", \"shape\": [1, 2], \"datatype\": "
                            "\"BOOL\", \"data\": [true, false]}, {\"name\": \"user_id\", "
                            "\"shape\": [1, 1], \"datatype\": \"INT32\", \"data\": [42]}], "
                            "\"outputs\": [{\"name\": \"emb\"}]}",
                            &d, msg, sizeof(msg)),
                     0);
    assert_int_equal(d.rows, 1);
    id = d.in[0];
    x = d.in[1];
    assert_true(id[0] == 42 && x[0] == 1.0f && x[1] == 0.0f);
    assert_int_equal(d.outsel, 2);
    predict__rows_fini(&d);
    assert_int_equal(decode(OIP, &v_mlp,
                            "{\"id\": null, \"outputs\": null, \"inputs\": [{\"name\": \"x\", "
                            "\"shape\": [1, 4], \"datatype\": \"FP64\", \"data\": [1, 2, 3, 4]}]}",
                            &d, msg, sizeof(msg)),
                     0);
    assert_null(d.id);
    assert_int_equal(d.outsel, 0);
    predict__rows_fini(&d);
}

#define X4 "\"name\": \"x\", \"datatype\": \"FP32\""

static void test_oip_bad(void **state)
{
    static const struct bad_body bad[] = {
        /* missing fields */
        {OIP, &v_mlp, "{}",
         "inputs: expected a non-empty array of tensors ({\"name\", \"shape\", \"datatype\", "
         "\"data\"})"},
        {OIP, &v_mlp, "{\"inputs\": []}",
         "inputs: expected a non-empty array of tensors ({\"name\", \"shape\", \"datatype\", "
         "\"data\"})"},
        {OIP, &v_mlp, "{\"inputs\": {\"x\": [1, 2, 3, 4]}}",
         "inputs: expected a non-empty array of tensors ({\"name\", \"shape\", \"datatype\", "
         "\"data\"})"},
        {OIP, &v_mlp, "{\"inputs\": [[1, 2, 3, 4]]}", "inputs[0]: expected an object"},
        {OIP, &v_mlp, "{\"inputs\": [{\"shape\": [1, 4], \"datatype\": \"FP32\", \"data\": []}]}",
         "inputs[0].name: expected a string"},
        {OIP, &v_mlp, "{\"inputs\": [{\"name\": \"x\", \"shape\": [1, 4], \"data\": [1,2,3,4]}]}",
         "inputs[0].datatype: expected one of FP32, INT64, INT32, BOOL (FP64 too)"},
        {OIP, &v_mlp, "{\"inputs\": [{" X4 ", \"data\": [1, 2, 3, 4]}]}",
         "inputs[0].shape: expected [batch] + [4] for input x of model mlp"},
        {OIP, &v_mlp, "{\"inputs\": [{" X4 ", \"shape\": [1, 4]}]}", "inputs[0].data: missing"},
        {OIP, &v_two,
         "{\"inputs\": [{\"name\": \"user_id\", \"shape\": [1, 1], \"datatype\": \"INT64\", "
         "\"data\": [1]}]}",
         "inputs: input 'dense' of model two is missing (inputs: user_id, dense)"},
        /* names */
        {OIP, &v_mlp,
         "{\"inputs\": [{\"name\": \"z\", \"shape\": [1, 4], \"datatype\": "
         "\"FP32\", \"data\": [1, 2, 3, 4]}]}",
         "inputs[0].name: model mlp has no input 'z' (inputs: x)"},
        {OIP, &v_mlp,
         "{\"inputs\": [{" X4 ", \"shape\": [1, 4], \"data\": [1, 2, 3, 4]}, {" X4
         ", \"shape\": [1, 4], \"data\": [1, 2, 3, 4]}]}",
         "inputs[1].name: input 'x' given twice"},
        /* wrong datatype */
        {OIP, &v_mlp,
         "{\"inputs\": [{\"name\": \"x\", \"shape\": [1, 4], \"datatype\": "
         "\"FP16\", \"data\": [1, 2, 3, 4]}]}",
         "inputs[0].datatype: expected one of FP32, INT64, INT32, BOOL (FP64 too)"},
        {OIP, &v_mlp,
         "{\"inputs\": [{\"name\": \"x\", \"shape\": [1, 4], \"datatype\": "
         "\"fp32\", \"data\": [1, 2, 3, 4]}]}",
         "inputs[0].datatype: expected one of FP32, INT64, INT32, BOOL (FP64 too)"},
        {OIP, &v_two,
         "{\"inputs\": [{\"name\": \"user_id\", \"shape\": [1, 1], \"datatype\": "
         "\"FP32\", \"data\": [1]}]}",
         "inputs[0].datatype: FP32 given, input user_id of model two is INT64"},
        {OIP, &v_two,
         "{\"inputs\": [{\"name\": \"user_id\", \"shape\": [1, 1], \"datatype\": "
         "\"INT64\", \"data\": [1.5]}, {\"name\": \"dense\", \"shape\": [1, 2], "
         "\"datatype\": \"FP32\", \"data\": [1, 2]}]}",
         "inputs[0].data[0]: expected an integer, got a number"},
        {OIP, &v_two,
         "{\"inputs\": [{\"name\": \"user_id\", \"shape\": [1, 1], \"datatype\": "
         "\"INT32\", \"data\": [2147483648]}, {\"name\": \"dense\", \"shape\": "
         "[1, 2], \"datatype\": \"FP32\", \"data\": [1, 2]}]}",
         "inputs[0].data[0]: expected an integer in the int32 range, got an integer"},
        {OIP, &v_mlp, "{\"inputs\": [{" X4 ", \"shape\": [1, 4], \"data\": [1, 2, true, 4]}]}",
         "inputs[0].data[2]: expected a number, got a boolean"},
        /* shape and data disagree */
        {OIP, &v_mlp, "{\"inputs\": [{" X4 ", \"shape\": [2, 4], \"data\": [1, 2, 3, 4]}]}",
         "inputs[0].data: expected 8 elements, got 4"},
        {OIP, &v_mlp, "{\"inputs\": [{" X4 ", \"shape\": [1, 4], \"data\": [1, 2, 3, 4, 5]}]}",
         "inputs[0].data[4]: more elements than expected"},
        {OIP, &v_mlp, "{\"inputs\": [{" X4 ", \"shape\": [1, 5], \"data\": [1, 2, 3, 4, 5]}]}",
         "inputs[0].shape: expected [batch] + [4] for input x of model mlp"},
        {OIP, &v_mlp, "{\"inputs\": [{" X4 ", \"shape\": [4], \"data\": [1, 2, 3, 4]}]}",
         "inputs[0].shape: expected [batch] + [4] for input x of model mlp"},
        {OIP, &v_mlp, "{\"inputs\": [{" X4 ", \"shape\": [1, 4, 1], \"data\": [1, 2, 3, 4]}]}",
         "inputs[0].shape: expected [batch] + [4] for input x of model mlp"},
        {OIP, &v_mlp, "{\"inputs\": [{" X4 ", \"shape\": [-1, 4], \"data\": [1, 2, 3, 4]}]}",
         "inputs[0].shape: expected [batch] + [4] for input x of model mlp"},
        {OIP, &v_mlp, "{\"inputs\": [{" X4 ", \"shape\": [1.0, 4], \"data\": [1, 2, 3, 4]}]}",
         "inputs[0].shape: expected [batch] + [4] for input x of model mlp"},
        {OIP, &v_mlp, "{\"inputs\": [{" X4 ", \"shape\": \"1x4\", \"data\": [1, 2, 3, 4]}]}",
         "inputs[0].shape: expected [batch] + [4] for input x of model mlp"},
        {OIP, &v_two,
         "{\"inputs\": [{\"name\": \"user_id\", \"shape\": [2, 1], \"datatype\": "
         "\"INT64\", \"data\": [1, 2]}, {\"name\": \"dense\", \"shape\": [3, 2], "
         "\"datatype\": \"FP32\", \"data\": [1, 2, 3, 4, 5, 6]}]}",
         "inputs[1].shape: batch 3 differs from the other inputs' 2"},
        /* huge shapes: refused from the shape alone, before anything is allocated */
        {OIP, &v_mlp,
         "{\"inputs\": [{" X4 ", \"shape\": [9223372036854775807, 4], "
         "\"data\": [1, 2, 3, 4]}]}",
         "inputs[0].shape: 9223372036854775807 rows is over max_batch 8 of model mlp"},
        {OIP, &v_mlp, "{\"inputs\": [{" X4 ", \"shape\": [9, 4], \"data\": []}]}",
         "inputs[0].shape: 9 rows is over max_batch 8 of model mlp"},
        {OIP, &v_mlp,
         "{\"inputs\": [{" X4 ", \"shape\": [1, 9223372036854775807], "
         "\"data\": [1, 2, 3, 4]}]}",
         "inputs[0].shape: expected [batch] + [4] for input x of model mlp"},
        {OIP, &v_mlp, "{\"inputs\": [{" X4 ", \"shape\": [0, 4], \"data\": []}]}",
         "inputs[0].shape: expected at least one row"},
        {OIP, &v_mlp,
         "{\"inputs\": [{" X4 ", \"shape\": [1, 4], "
         "\"data\": [[[[[[[[[[[1]]]]]]]]]]]}]}",
         "inputs[0].data[0][0][0][0][0][0][0][0][0]: arrays nested too deeply"},
        /* id and outputs */
        {OIP, &v_mlp,
         "{\"id\": 7, \"inputs\": [{" X4 ", \"shape\": [1, 4], \"data\": [1, 2, 3, 4]}]}",
         "id: expected a string"},
        {OIP, &v_mlp,
         "{\"inputs\": [{" X4 ", \"shape\": [1, 4], \"data\": [1, 2, 3, 4]}], "
         "\"outputs\": {\"name\": \"y\"}}",
         "outputs: expected an array of {\"name\": ...}"},
        {OIP, &v_mlp,
         "{\"inputs\": [{" X4 ", \"shape\": [1, 4], \"data\": [1, 2, 3, 4]}], "
         "\"outputs\": [\"y\"]}",
         "outputs[0].name: expected a string"},
        {OIP, &v_two,
         "{\"inputs\": [{\"name\": \"user_id\", \"shape\": [1, 1], \"datatype\": "
         "\"INT64\", \"data\": [1]}, {\"name\": \"dense\", \"shape\": [1, 2], "
         "\"datatype\": \"FP32\", \"data\": [1, 2]}], \"outputs\": [{\"name\": "
         "\"emb\"}, {\"name\": \"y\"}]}",
         "outputs[1].name: model two has no output 'y' (outputs: score, emb)"},
    };
    (void)state;
    check_bad(bad, MC_ARRAY_SIZE(bad));
}

static void test_oip_long_id(void **state)
{
    struct predict_rows d;
    char msg[256];
    struct buf b;
    (void)state;

    /* Escaping counts: 1400 quotes become 2800 bytes plus the rest, over 4 KiB. */
    buf_init(&b, 1 << 16);
    buf_puts(&b, "{\"id\": \"");
    for (int i = 0; i < 1400; i++)
        buf_puts(&b, "\\\"a");
    buf_puts(&b, "\", \"inputs\": [{" X4 ", \"shape\": [1, 4], \"data\": [1, 2, 3, 4]}]}");
    assert_int_equal(decode(OIP, &v_mlp, b.data, &d, msg, sizeof(msg)), -EINVAL);
    assert_string_equal(msg, "id: longer than 4 KiB");
    assert_null(d.id);
    predict__rows_fini(&d);
    buf_reset(&b);
    /* Just under: kept. */
    buf_puts(&b, "{\"id\": \"");
    for (int i = 0; i < 4000; i++)
        buf_puts(&b, "a");
    buf_puts(&b, "\", \"inputs\": [{" X4 ", \"shape\": [1, 4], \"data\": [1, 2, 3, 4]}]}");
    assert_int_equal(decode(OIP, &v_mlp, b.data, &d, msg, sizeof(msg)), 0);
    assert_int_equal(strlen(d.id), 4002);
    predict__rows_fini(&d);
    buf_fini(&b);
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
        cmocka_unit_test(test_seed_model),
        cmocka_unit_test(test_seed_good),
        cmocka_unit_test(test_seed_bad),
        cmocka_unit_test(test_oip_good),
        cmocka_unit_test(test_oip_bad),
        cmocka_unit_test(test_oip_long_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
