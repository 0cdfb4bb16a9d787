/* tests/unit/infer/test_infer_models.c: agreement with ONNX Runtime on tests/fixtures/models,
 * metadata, dynamic batch, constant memory per batch size, concurrent sessions on one
 * shared model, and external data files. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "infer/infer.h"
#include "infer/infer_int.h"
#include "onnx_build.h"

static const char *const models[] = {"logreg", "mlp", "two_tower", "gbdt", "softmax_clf"};

static void model_dir(const char *name, char *buf, size_t len)
{
    const char *fx = getenv("MLCDN_FIXTURES");

    snprintf(buf, len, "%s/models/%s", fx ? fx : "tests/fixtures", name);
}

static struct infer_model *load_shared(const char *name)
{
    char dir[1024], path[1100], err[512];
    struct infer_model *m = NULL;

    model_dir(name, dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/model.onnx", dir);
    if (infer_model_load(path, NULL, &m, err, sizeof(err)) != 0)
        fail_msg("%s: %s", name, err);
    return m;
}

/* Every reference model reproduces ONNX Runtime's outputs at batch 1 and 64 within
 * abs 1e-5 + rel 1e-4 (int64 exactly). */
static void test_shared_models_match_ort(void **state)
{
    for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++) {
        char dir[1024], msg[1024];
        model_dir(models[i], dir, sizeof(dir));
        int rc = infer_case_run(dir, 1e-5, 1e-4, msg, sizeof(msg));
        if (rc != 0)
            fail_msg("%s: %s", models[i], msg);
    }
}

static void test_metadata(void **state)
{
    struct infer_model *m = load_shared("two_tower");
    const struct infer_io_info *a;

    assert_int_equal(infer_model_n_inputs(m), 3);
    assert_int_equal(infer_model_n_outputs(m), 1);
    a = infer_model_input(m, 0);
    assert_string_equal(a->name, "user_id");
    assert_int_equal(a->dtype, INFER_DT_INT64);
    assert_int_equal(a->rank, 1);
    assert_int_equal(a->dims[0], -1);
    a = infer_model_input(m, 2);
    assert_string_equal(a->name, "dense");
    assert_int_equal(a->rank, 2);
    assert_int_equal(a->dims[0], -1);
    assert_int_equal(a->dims[1], 16);
    assert_int_equal(infer_model_input_index(m, "item_id"), 1);
    assert_int_equal(infer_model_input_index(m, "nope"), -ENOENT);
    a = infer_model_output(m, 0);
    assert_string_equal(a->name, "prob");
    assert_int_equal(a->dtype, INFER_DT_FLOAT);
    infer_model_unref(&m);
}

/* Batch rows are independent: row r of a batch-B run equals a batch-1 run on row r, for
 * several B, and the arena stays the same size when a batch size repeats. */
static void test_dynamic_batch_and_static_plan(void **state)
{
    struct infer_model *m = load_shared("mlp");
    struct infer_session *s;
    static float x[256 * 64], one[64];
    struct infer_tensor out;
    char err[256];
    const int64_t batches[] = {1, 16, 256, 7, 16};
    size_t arena16 = 0;

    for (int i = 0; i < 256 * 64; i++)
        x[i] = (float)((i * 7919) % 1000) / 500.0f - 1.0f;
    assert_int_equal(infer_session_new(m, NULL, &s), 0);
    for (size_t b = 0; b < sizeof(batches) / sizeof(batches[0]); b++) {
        int64_t B = batches[b];
        struct infer_input in = {"x", {INFER_DT_FLOAT, 2, {B, 64}, x}};
        float got[256];
        assert_int_equal(infer_session_run(s, &in, 1, &out, 1, err, sizeof(err)), 0);
        assert_int_equal(out.rank, 2);
        assert_int_equal(out.dims[0], B);
        assert_int_equal(out.dims[1], 1);
        memcpy(got, out.data, sizeof(float) * (size_t)B);
        if (B == 16 && arena16 == 0)
            arena16 = infer_session_arena_bytes(s);
        for (int64_t r = 0; r < B; r += (B > 8 ? 37 : 1)) {
            struct infer_input in1 = {"x", {INFER_DT_FLOAT, 2, {1, 64}, one}};
            memcpy(one, x + r * 64, sizeof(one));
            assert_int_equal(infer_session_run(s, &in1, 1, &out, 1, err, sizeof(err)), 0);
            assert_float_equal(((float *)out.data)[0], got[r], 1e-5);
        }
    }
    /* The arena only grows to the largest batch seen; a repeat of 16 reused its plan. */
    assert_true(infer_session_arena_bytes(s) >= arena16);
    infer_session_free(&s);
    infer_model_unref(&m);
}

struct worker {
    struct infer_model *m;
    int fails;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct infer_session *s;
    char dir[1024], msg[512];

    model_dir("two_tower", dir, sizeof(dir));
    strcat(dir, "/test_data_set_1");
    infer_session_new(w->m, NULL, &s);
    for (int i = 0; i < 20; i++)
        if (infer__run_dataset(s, w->m, dir, 1e-5, 1e-4, msg, sizeof(msg)) != 0)
            w->fails++;
    infer_session_free(&s);
    return NULL;
}

/* One immutable model, four threads, a session each. */
static void test_concurrent_sessions(void **state)
{
    struct infer_model *m = load_shared("two_tower");
    struct worker w[4];
    pthread_t th[4];

    for (int i = 0; i < 4; i++) {
        w[i].m = m;
        w[i].fails = 0;
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].fails, 0);
    }
    infer_model_unref(&m);
}

/* A session keeps the model alive after the caller drops its reference. */
static void test_session_holds_model(void **state)
{
    struct infer_model *m = load_shared("logreg");
    struct infer_session *s;
    float x[32] = {0};
    struct infer_input in = {"x", {INFER_DT_FLOAT, 2, {1, 32}, x}};
    struct infer_tensor out;

    infer_session_new(m, NULL, &s);
    infer_model_unref(&m);
    assert_null(m);
    assert_int_equal(infer_session_run(s, &in, 1, &out, 1, NULL, 0), 0);
    /* Zero input: sigmoid(b) must be in (0, 1). */
    assert_true(((float *)out.data)[0] > 0 && ((float *)out.data)[0] < 1);
    infer_session_free(&s);
}

/* An initializer in an external file beside the model (how large embedding tables ship),
 * and the path rules: relative, no "..". */
static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static struct pb ext_model(const char *location, int64_t offset)
{
    struct pb g = {0}, t = {0}, kv = {0}, kv2 = {0};
    const int64_t edims[2] = {4, 2}, idims[1] = {OB_BATCH}, odims[2] = {OB_BATCH, 2};
    const char *in[] = {"emb", "ids", NULL}, *out[] = {"y", NULL};
    char off[32];

    pb_varint(&t, 1, 4);
    pb_varint(&t, 1, 2);
    pb_varint(&t, 2, INFER_DT_FLOAT);
    pb_str(&t, 8, "emb");
    pb_str(&kv, 1, "location");
    pb_str(&kv, 2, location);
    pb_msg(&t, 13, kv);
    snprintf(off, sizeof(off), "%lld", (long long)offset);
    pb_str(&kv2, 1, "offset");
    pb_str(&kv2, 2, off);
    pb_msg(&t, 13, kv2);
    pb_varint(&t, 14, 1); /* EXTERNAL */
    (void)edims;
    pb_msg(&g, OB_G_NODE, ob_node("Gather", "", "g", in, out, 1, ob_attr_i("axis", 0)));
    pb_str(&g, OB_G_NAME, "ext");
    pb_msg(&g, OB_G_INIT, t);
    pb_msg(&g, OB_G_INPUT, ob_value_info("ids", INFER_DT_INT64, 1, idims));
    pb_msg(&g, OB_G_OUTPUT, ob_value_info("y", INFER_DT_FLOAT, 2, odims));
    return ob_model(13, 0, g);
}

static void test_external_data(void **state)
{
    char dir[] = "/tmp/mlcdn-infer-ext-XXXXXX", path[256], err[256];
    float table[4 + 8];
    struct infer_model *m = NULL;
    struct infer_session *s;
    int64_t ids[3] = {3, 0, -1};
    struct infer_input in = {"ids", {INFER_DT_INT64, 1, {3}, ids}};
    struct infer_tensor out;
    struct pb mb;

    assert_non_null(mkdtemp(dir));
    for (int i = 0; i < 12; i++)
        table[i] = (float)i;
    snprintf(path, sizeof(path), "%s/weights.bin", dir);
    write_file(path, table, sizeof(table));

    /* 16 bytes of padding before the table: offset is honoured. */
    mb = ext_model("weights.bin", 16);
    snprintf(path, sizeof(path), "%s/model.onnx", dir);
    write_file(path, mb.b, mb.n);
    free(mb.b);
    assert_int_equal(infer_model_load(path, NULL, &m, err, sizeof(err)), 0);
    infer_session_new(m, NULL, &s);
    assert_int_equal(infer_session_run(s, &in, 1, &out, 1, err, sizeof(err)), 0);
    const float *y = out.data;
    /* row 3 of the table that starts at float 4: values 10, 11; row 0: 4, 5; row -1 = 3 */
    assert_float_equal(y[0], 10, 0);
    assert_float_equal(y[1], 11, 0);
    assert_float_equal(y[2], 4, 0);
    assert_float_equal(y[5], 11, 0);
    infer_session_free(&s);
    infer_model_unref(&m);

    /* Too short for the offset. */
    mb = ext_model("weights.bin", 40);
    write_file(path, mb.b, mb.n);
    free(mb.b);
    assert_int_equal(infer_model_load(path, NULL, &m, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "too short"));

    /* Escaping the model directory is refused. */
    mb = ext_model("../weights.bin", 0);
    write_file(path, mb.b, mb.n);
    free(mb.b);
    assert_int_equal(infer_model_load(path, NULL, &m, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, ".."));
    mb = ext_model("/etc/passwd", 0);
    write_file(path, mb.b, mb.n);
    free(mb.b);
    assert_int_equal(infer_model_load(path, NULL, &m, err, sizeof(err)), -EINVAL);

    /* Missing file. */
    mb = ext_model("nothere.bin", 0);
    write_file(path, mb.b, mb.n);
    free(mb.b);
    assert_int_equal(infer_model_load(path, NULL, &m, err, sizeof(err)), -ENOENT);

    unlink(path);
    snprintf(path, sizeof(path), "%s/weights.bin", dir);
    unlink(path);
    rmdir(dir);
}

/* Out-of-range embedding ids are a run error naming the node, never a read out of bounds. */
static void test_gather_out_of_range(void **state)
{
    struct infer_model *m = load_shared("two_tower");
    struct infer_session *s;
    int64_t u[2] = {0, 50000}, it[2] = {0, 1};
    float dense[32] = {0};
    struct infer_input in[3] = {{"user_id", {INFER_DT_INT64, 1, {2}, u}},
                                {"item_id", {INFER_DT_INT64, 1, {2}, it}},
                                {"dense", {INFER_DT_FLOAT, 2, {2, 16}, dense}}};
    struct infer_tensor out;
    char err[512];

    infer_session_new(m, NULL, &s);
    assert_int_equal(infer_session_run(s, in, 3, &out, 1, err, sizeof(err)), -ERANGE);
    assert_non_null(strstr(err, "out of range"));
    assert_non_null(strstr(err, "Gather"));
    u[1] = -50000; /* counts from the end: row 0 */
    assert_int_equal(infer_session_run(s, in, 3, &out, 1, err, sizeof(err)), 0);
    u[1] = -50001;
    assert_int_equal(infer_session_run(s, in, 3, &out, 1, err, sizeof(err)), -ERANGE);
    infer_session_free(&s);
    infer_model_unref(&m);
}

/* Inputs that do not match the model are refused with a message. */
static void test_bad_inputs(void **state)
{
    struct infer_model *m = load_shared("logreg");
    struct infer_session *s;
    float x[64] = {0};
    int64_t xi[32] = {0};
    struct infer_tensor out;
    char err[256];

    infer_session_new(m, NULL, &s);
    struct infer_input wrong_dim = {"x", {INFER_DT_FLOAT, 2, {1, 31}, x}};
    assert_int_equal(infer_session_run(s, &wrong_dim, 1, &out, 1, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "dim 1"));
    struct infer_input wrong_rank = {"x", {INFER_DT_FLOAT, 1, {32}, x}};
    assert_int_equal(infer_session_run(s, &wrong_rank, 1, &out, 1, err, sizeof(err)), -EINVAL);
    struct infer_input wrong_type = {"x", {INFER_DT_INT64, 2, {1, 32}, xi}};
    assert_int_equal(infer_session_run(s, &wrong_type, 1, &out, 1, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "dtype"));
    struct infer_input wrong_name = {"y", {INFER_DT_FLOAT, 2, {1, 32}, x}};
    assert_int_equal(infer_session_run(s, &wrong_name, 1, &out, 1, err, sizeof(err)), -EINVAL);
    assert_int_equal(infer_session_run(s, NULL, 0, &out, 1, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "missing input 'x'"));
    struct infer_input neg = {"x", {INFER_DT_FLOAT, 2, {-1, 32}, x}};
    assert_int_equal(infer_session_run(s, &neg, 1, &out, 1, err, sizeof(err)), -EINVAL);
    /* Two outputs asked of a one-output model. */
    struct infer_tensor two[2];
    struct infer_input ok = {"x", {INFER_DT_FLOAT, 2, {2, 32}, x}};
    assert_int_equal(infer_session_run(s, &ok, 1, two, 2, err, sizeof(err)), -EINVAL);
    /* Output selection by name. */
    const char *names[] = {"prob"};
    assert_int_equal(infer_session_run_select(s, &ok, 1, names, 1, two, err, sizeof(err)), 0);
    assert_int_equal(two[0].dims[0], 2);
    names[0] = "nope";
    assert_int_equal(infer_session_run_select(s, &ok, 1, names, 1, two, err, sizeof(err)), -EINVAL);
    infer_session_free(&s);
    infer_model_unref(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_models_match_ort),
        cmocka_unit_test(test_metadata),
        cmocka_unit_test(test_dynamic_batch_and_static_plan),
        cmocka_unit_test(test_concurrent_sessions),
        cmocka_unit_test(test_session_holds_model),
        cmocka_unit_test(test_external_data),
        cmocka_unit_test(test_gather_out_of_range),
        cmocka_unit_test(test_bad_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
