/* tests/unit/predict/test_predict_store.c: what the model store client does to the
 * registry once a version is fetched: loading a file, running its sample, the switch under
 * the version policy (stable and canary, the split of requests), versions kept for
 * rollback and retired beyond --model-keep, a switch to a version not loaded refused with
 * nothing changed, the roll-out state; and ctl's local sample run (predict_sample_file). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/mc.h"
#include "infer/onnx_build.h"
#include "predict/predict.h"
#include "predict/predict_int.h"

#define FLOAT 1

/* y = MatMul(x, W), x float[batch,4], every weight k: version k answers k * sum(x). */
static void write_linear(const char *path, float k)
{
    struct pb g = {0};
    const char *in[] = {"x", "W", NULL}, *out[] = {"y", NULL};
    int64_t wd[2] = {4, 1}, xd[2] = {OB_BATCH, 4}, yd[2] = {OB_BATCH, 1};
    float w[4] = {k, k, k, k};

    pb_msg(&g, OB_G_NODE, ob_node("MatMul", "", "mm", in, out, 0));
    pb_str(&g, OB_G_NAME, "linear");
    pb_msg(&g, OB_G_INIT, ob_tensor("W", FLOAT, 2, wd, w, sizeof(w)));
    pb_msg(&g, OB_G_INPUT, ob_value_info("x", FLOAT, 2, xd));
    pb_msg(&g, OB_G_OUTPUT, ob_value_info("y", FLOAT, 2, yd));
    struct pb m = ob_model(13, 0, g);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(m.b, 1, m.n, f), m.n);
    fclose(f);
    free(m.b);
}

struct fx {
    char dir[64], path[4][96];
    struct predict_models *r;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct predict_cfg cfg = {.max_batch = 4};
    char err[256];

    snprintf(f->dir, sizeof(f->dir), "/tmp/mlcdn-store-test.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    for (int k = 1; k <= 3; k++) {
        snprintf(f->path[k], sizeof(f->path[k]), "%s/m%d.onnx", f->dir, k);
        write_linear(f->path[k], (float)k);
    }
    assert_int_equal(predict__models_new(&cfg, 1, &f->r, err, sizeof(err)), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    predict__models_free(&f->r);
    for (int k = 1; k <= 3; k++)
        unlink(f->path[k]);
    rmdir(f->dir);
    free(f);
    return 0;
}

static struct predict_version *load(struct fx *f, int64_t v)
{
    struct predict_version *out = NULL;
    char err[256];
    assert_int_equal(predict__models_load_file(f->r, "lin", v, f->path[v], &out, err, sizeof(err)),
                     0);
    return out;
}

static int activate(struct fx *f, struct predict_version **nv, size_t n, int64_t stable,
                    int64_t canary, unsigned pct, unsigned keep)
{
    struct predict_target t = {stable, canary, pct};
    char err[256];
    return predict__models_activate(f->r, "lin", nv, n, &t, "{\"mode\":\"latest\"}", keep, err,
                                    sizeof(err));
}

static int64_t current(struct fx *f)
{
    struct predict_version *v = NULL;
    char msg[256];
    if (predict__models_get(f->r, "lin", -1, &v, msg, sizeof(msg)) != 0)
        return -1;
    int64_t n = v->version;
    predict__version_unref(&v);
    return n;
}

static void test_switch_keep_and_rollback(void **state)
{
    struct fx *f = *state;
    struct predict_version *nv[1];

    nv[0] = load(f, 1);
    assert_int_equal(activate(f, nv, 1, 1, -1, 0, 1), 0);
    assert_int_equal(current(f), 1);
    nv[0] = load(f, 2);
    assert_int_equal(activate(f, nv, 1, 2, -1, 0, 1), 0);
    assert_int_equal(current(f), 2);
    /* One kept beyond the served one: a rollback to 1 is a switch, no load. */
    assert_true(predict__models_has(f->r, "lin", 1));
    assert_int_equal(activate(f, NULL, 0, 1, -1, 0, 1), 0);
    assert_int_equal(current(f), 1);
    nv[0] = load(f, 3);
    assert_int_equal(activate(f, nv, 1, 3, -1, 0, 1), 0);
    /* Kept: 3 (served) and the highest other, 2; 1 is retired. */
    assert_true(predict__models_has(f->r, "lin", 3));
    assert_true(predict__models_has(f->r, "lin", 2));
    assert_false(predict__models_has(f->r, "lin", 1));
    /* A switch to a version not loaded is refused and changes nothing. */
    assert_int_equal(activate(f, NULL, 0, 1, -1, 0, 1), -ENOENT);
    assert_int_equal(current(f), 3);
}

static void test_canary_split(void **state)
{
    struct fx *f = *state;
    struct predict_version *nv[2] = {load(f, 1), load(f, 2)};
    int got[3] = {0};

    assert_int_equal(activate(f, nv, 2, 1, 2, 25, 2), 0);
    for (int i = 0; i < 200; i++) {
        int64_t v = current(f);
        assert_true(v == 1 || v == 2);
        got[v]++;
    }
    assert_int_equal(got[2], 50);
    assert_int_equal(got[1], 150);
    /* An explicit version is that version, whatever the split. */
    struct predict_version *v = NULL;
    char msg[256];
    assert_int_equal(predict__models_get(f->r, "lin", 2, &v, msg, sizeof(msg)), 0);
    assert_int_equal(v->version, 2);
    predict__version_unref(&v);
    /* Promote: 2 alone. */
    assert_int_equal(activate(f, NULL, 0, 2, -1, 0, 2), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(current(f), 2);
}

static void test_sample_run(void **state)
{
    struct fx *f = *state;
    struct predict_version *v = load(f, 3);
    json_t *in = json_loads("{\"features\":[1,2,3,4]}", 0, NULL), *got;
    struct buf b;
    char msg[256];

    buf_init(&b, 1 << 20);
    assert_int_equal(predict__sample_run(v, in, &b, msg, sizeof(msg)), 0);
    got = json_loads(b.data, 0, NULL);
    assert_non_null(got);
    json_t *want = json_loads("{\"y\":[30]}", 0, NULL);
    assert_int_equal(predict__sample_compare(want, got, 1e-4, 1e-4, msg, sizeof(msg)), 0);
    json_decref(want);
    want = json_loads("{\"y\":[20]}", 0, NULL);
    assert_int_equal(predict__sample_compare(want, got, 1e-4, 1e-4, msg, sizeof(msg)), -EINVAL);
    assert_non_null(strstr(msg, "y[0]: 30"));
    json_decref(want);
    json_decref(got);
    /* A sample that does not fit the model is refused by name. */
    json_decref(in);
    in = json_loads("{\"features\":[1,2]}", 0, NULL);
    buf_reset(&b);
    assert_int_equal(predict__sample_run(v, in, &b, msg, sizeof(msg)), -EINVAL);
    json_decref(in);
    buf_fini(&b);
    predict__version_unref(&v);
}

static void test_state(void **state)
{
    struct fx *f = *state;
    struct buf b;

    predict__models_set_state(f->r, "lin", PREDICT_MS_FAILED, 7, "sha256 mismatch: got a");
    buf_init(&b, 1 << 20);
    predict__models_brief(f->r, 8, &b);
    assert_string_equal(b.data, "[{\"name\":\"lin\",\"version\":null,\"sha256\":null,\"state\":"
                                "\"failed\"}]");
    buf_reset(&b);
    predict__models_describe(f->r, "e1", 3, &b);
    json_t *j = json_loads(b.data, 0, NULL), *m = json_array_get(json_object_get(j, "models"), 0);
    assert_int_equal(json_integer_value(json_object_get(j, "rollouts_done")), 3);
    assert_string_equal(json_string_value(json_object_get(j, "edge")), "e1");
    assert_string_equal(json_string_value(json_object_get(m, "state")), "failed");
    assert_string_equal(json_string_value(json_object_get(m, "reason")), "sha256 mismatch: got a");
    assert_int_equal(json_integer_value(json_object_get(m, "target")), 7);
    json_decref(j);
    buf_fini(&b);
}

static void test_sample_file(void **state)
{
    struct fx *f = *state;
    char *out = NULL, err[256];
    const char *s = "{\"features\":[1,1,1,1]}";

    assert_int_equal(predict_sample_file(f->path[2], s, strlen(s), 0, &out, err, sizeof(err)), 0);
    assert_string_equal(out, "{\"y\":[8]}");
    free(out);
    assert_int_equal(predict_sample_file(f->path[2], "[1]", 3, 0, &out, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "sample"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_switch_keep_and_rollback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_canary_split, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sample_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sample_file, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
