/* tests/unit/infer/test_infer_ml.c: ai.onnx.ml operators against hand-computed values:
 * every branch mode, missing values, several targets, the aggregate functions, post
 * transforms, classifiers (multi-class and binary), linear models, and malformed trees.
 * (The 100-tree gbdt reference model is checked against ONNX Runtime in
 * test_infer_models.c.) */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "infer/infer.h"
#include "onnx_build.h"

#define NA(a) (sizeof(a) / sizeof((a)[0]))

static struct infer_model *load_pb(struct pb mb, int expect, char *err, size_t errlen)
{
    struct infer_model *m = NULL;
    int rc = infer_model_load_mem(mb.b, mb.n, NULL, &m, err, errlen);

    free(mb.b);
    if (rc != expect)
        fail_msg("load returned %d, expected %d: %s", rc, expect, err);
    return m;
}

/* Runs x[N, C] through m; copies output `which` into y. */
static void run(struct infer_model *m, const float *x, int64_t N, int64_t C, int which, void *y,
                size_t ybytes)
{
    struct infer_session *s;
    struct infer_input in = {"X", {INFER_DT_FLOAT, 2, {N, C}, (void *)x}};
    struct infer_tensor out[2];
    char err[256];

    infer_session_new(m, NULL, &s);
    if (infer_session_run(s, &in, 1, out, infer_model_n_outputs(m), err, sizeof(err)) != 0)
        fail_msg("run: %s", err);
    memcpy(y, out[which].data, ybytes);
    infer_session_free(&s);
}

/* The two-tree, two-target ensemble described in test_regressor_sum. */
static struct pb reg_model(const char *agg, const char *post, bool with_base)
{
    const int64_t treeids[] = {0, 0, 0, 0, 0, 1, 1, 1};
    const int64_t nodeids[] = {0, 1, 2, 3, 4, 0, 1, 2};
    const int64_t feats[] = {0, 0, 1, 0, 0, 1, 0, 0};
    const float vals[] = {0.5f, 0, 2, 0, 0, 3, 0, 0};
    const char *modes[] = {"BRANCH_LEQ", "LEAF",      "BRANCH_LT", "LEAF",
                           "LEAF",       "BRANCH_EQ", "LEAF",      "LEAF"};
    const int64_t tru[] = {1, 0, 3, 0, 0, 1, 0, 0}, fal[] = {2, 0, 4, 0, 0, 2, 0, 0};
    const int64_t miss[] = {0, 0, 1, 0, 0, 0, 0, 0};
    const int64_t ttree[] = {0, 0, 0, 0, 0, 1, 1, 1}, tnode[] = {1, 1, 3, 4, 4, 1, 1, 2};
    const int64_t tid[] = {0, 1, 0, 0, 1, 0, 1, 1};
    const float tw[] = {1, 10, 2, 3, 30, 0.5f, 5, 7};
    const float base[] = {0.25f, -1};
    const char *in[] = {"X", NULL}, *out[] = {"Y", NULL};
    const int64_t dx[2] = {OB_BATCH, 2}, dy[2] = {OB_BATCH, 2};
    struct pb g = {0};

    pb_msg(&g, OB_G_NODE,
           ob_node("TreeEnsembleRegressor", "ai.onnx.ml", "trees", in, out, 16,
                   ob_attr_ints("nodes_treeids", NA(treeids), treeids),
                   ob_attr_ints("nodes_nodeids", NA(nodeids), nodeids),
                   ob_attr_ints("nodes_featureids", NA(feats), feats),
                   ob_attr_floats("nodes_values", NA(vals), vals),
                   ob_attr_strings("nodes_modes", NA(modes), modes),
                   ob_attr_ints("nodes_truenodeids", NA(tru), tru),
                   ob_attr_ints("nodes_falsenodeids", NA(fal), fal),
                   ob_attr_ints("nodes_missing_value_tracks_true", NA(miss), miss),
                   ob_attr_ints("target_treeids", NA(ttree), ttree),
                   ob_attr_ints("target_nodeids", NA(tnode), tnode),
                   ob_attr_ints("target_ids", NA(tid), tid),
                   ob_attr_floats("target_weights", NA(tw), tw), ob_attr_i("n_targets", 2),
                   ob_attr_s("aggregate_function", agg), ob_attr_s("post_transform", post),
                   with_base ? ob_attr_floats("base_values", 2, base)
                             : ob_attr_s("doc", "no base")));
    pb_msg(&g, OB_G_INPUT, ob_value_info("X", 1, 2, dx));
    pb_msg(&g, OB_G_OUTPUT, ob_value_info("Y", 1, 2, dy));
    return ob_model(13, 3, g);
}

/* Rows: r0 = (0, 3): tree0 leaf1 (1, 10), tree1 leaf1 (0.5, 5)
 *       r1 = (1, 1): tree0 leaf3 (2, -), tree1 leaf2 (-, 7)
 *       r2 = (1, NaN): NaN tracks true at tree0 node2 -> leaf3; NaN == 3 false -> leaf2
 *       r3 = (1, 5): tree0 leaf4 (3, 30), tree1 leaf2 (-, 7) */
static const float X4[8] = {0, 3, 1, 1, 1, NAN, 1, 5};

static void check(const float *got, const float *want, int n)
{
    for (int i = 0; i < n; i++)
        if (fabsf(got[i] - want[i]) > 1e-6f * (1 + fabsf(want[i])))
            fail_msg("element %d: %.9g, expected %.9g", i, got[i], want[i]);
}

static void test_regressor_sum(void **state)
{
    char err[256];
    float y[8];
    struct infer_model *m = load_pb(reg_model("SUM", "NONE", true), 0, err, sizeof(err));
    const float want[8] = {1.75f, 14, 2.25f, 6, 2.25f, 6, 3.25f, 36};

    run(m, X4, 4, 2, 0, y, sizeof(y));
    check(y, want, 8);
    infer_model_unref(&m);
}

static void test_regressor_aggregates(void **state)
{
    char err[256];
    float y[8];
    struct infer_model *m;
    const float avg[8] = {0.75f, 7.5f, 1, 3.5f, 1, 3.5f, 1.5f, 18.5f};
    const float mn[8] = {0.5f, 5, 2, 7, 2, 7, 3, 7};
    const float mx[8] = {1, 10, 2, 7, 2, 7, 3, 30};

    m = load_pb(reg_model("AVERAGE", "NONE", false), 0, err, sizeof(err));
    run(m, X4, 4, 2, 0, y, sizeof(y));
    check(y, avg, 8);
    infer_model_unref(&m);
    m = load_pb(reg_model("MIN", "NONE", false), 0, err, sizeof(err));
    run(m, X4, 4, 2, 0, y, sizeof(y));
    check(y, mn, 8);
    infer_model_unref(&m);
    m = load_pb(reg_model("MAX", "NONE", false), 0, err, sizeof(err));
    run(m, X4, 4, 2, 0, y, sizeof(y));
    check(y, mx, 8);
    infer_model_unref(&m);
}

static void test_regressor_post_transforms(void **state)
{
    char err[256];
    float y[8];
    struct infer_model *m;
    /* raw SUM without base: r0 (1.5, 15), r1 (2, 7) */
    float lg[4] = {1 / (1 + expf(-1.5f)), 1 / (1 + expf(-15.f)), 1 / (1 + expf(-2.f)),
                   1 / (1 + expf(-7.f))};
    float e0 = expf(1.5f - 15), e1 = expf(2.f - 7);
    float sm[4] = {e0 / (e0 + 1), 1 / (e0 + 1), e1 / (e1 + 1), 1 / (e1 + 1)};

    m = load_pb(reg_model("SUM", "LOGISTIC", false), 0, err, sizeof(err));
    run(m, X4, 2, 2, 0, y, sizeof(float) * 4);
    check(y, lg, 4);
    infer_model_unref(&m);
    m = load_pb(reg_model("SUM", "SOFTMAX", false), 0, err, sizeof(err));
    run(m, X4, 2, 2, 0, y, sizeof(float) * 4);
    check(y, sm, 4);
    infer_model_unref(&m);
    /* PROBIT of a value above 1 is +inf; check a value inside (0, 1) with AVERAGE/MIN:
     * MIN r0 = (0.5, 5): probit(0.5) = 0. */
    m = load_pb(reg_model("MIN", "PROBIT", false), 0, err, sizeof(err));
    run(m, X4, 1, 2, 0, y, sizeof(float) * 2);
    assert_true(fabsf(y[0]) < 1e-6f);
    assert_true(isinf(y[1]));
    infer_model_unref(&m);
    m = load_pb(reg_model("SUM", "NOPE", false), -EINVAL, err, sizeof(err));
    assert_null(m);
}

/* Six one-split trees, one per target, one per mode, threshold 1 on feature 0; the true
 * leaf weighs 1, the false leaf 0. */
static void test_branch_modes(void **state)
{
    static const char *const mode_names[6] = {"BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE",
                                              "BRANCH_GT",  "BRANCH_EQ", "BRANCH_NEQ"};
    int64_t treeids[18], nodeids[18], feats[18] = {0}, tru[18] = {0}, fal[18] = {0};
    int64_t ttree[12], tnode[12], tid[12];
    float vals[18] = {0}, tw[12];
    const char *modes[18];
    const char *in[] = {"X", NULL}, *out[] = {"Y", NULL};
    const int64_t dx[2] = {OB_BATCH, 1}, dy[2] = {OB_BATCH, 6};
    struct pb g = {0};
    char err[256];
    float y[18];
    const float x[4] = {0, 1, 2, NAN};
    /* rows x = 0, 1, 2, NaN; columns LEQ LT GTE GT EQ NEQ */
    const float want[24] = {1,
                            1,
                            0,
                            0,
                            0,
                            1,
                            /**/ 1,
                            0,
                            1,
                            0,
                            1,
                            0,
                            /**/ 0,
                            0,
                            1,
                            1,
                            0,
                            1,
                            /* NaN: every comparison false except NEQ */ 0,
                            0,
                            0,
                            0,
                            0,
                            1};

    for (int t = 0; t < 6; t++) {
        for (int k = 0; k < 3; k++) {
            treeids[t * 3 + k] = t;
            nodeids[t * 3 + k] = k;
            modes[t * 3 + k] = k == 0 ? mode_names[t] : "LEAF";
        }
        vals[t * 3] = 1;
        tru[t * 3] = 1;
        fal[t * 3] = 2;
        for (int k = 0; k < 2; k++) {
            ttree[t * 2 + k] = t;
            tnode[t * 2 + k] = 1 + k;
            tid[t * 2 + k] = t;
            tw[t * 2 + k] = k == 0 ? 1.0f : 0.0f;
        }
    }
    pb_msg(&g, OB_G_NODE,
           ob_node("TreeEnsembleRegressor", "ai.onnx.ml", "modes", in, out, 12,
                   ob_attr_ints("nodes_treeids", 18, treeids),
                   ob_attr_ints("nodes_nodeids", 18, nodeids),
                   ob_attr_ints("nodes_featureids", 18, feats),
                   ob_attr_floats("nodes_values", 18, vals),
                   ob_attr_strings("nodes_modes", 18, modes),
                   ob_attr_ints("nodes_truenodeids", 18, tru),
                   ob_attr_ints("nodes_falsenodeids", 18, fal),
                   ob_attr_ints("target_treeids", 12, ttree),
                   ob_attr_ints("target_nodeids", 12, tnode), ob_attr_ints("target_ids", 12, tid),
                   ob_attr_floats("target_weights", 12, tw), ob_attr_i("n_targets", 6)));
    pb_msg(&g, OB_G_INPUT, ob_value_info("X", 1, 2, dx));
    pb_msg(&g, OB_G_OUTPUT, ob_value_info("Y", 1, 2, dy));
    struct infer_model *m = load_pb(ob_model(13, 1, g), 0, err, sizeof(err));
    float y4[24];
    run(m, x, 4, 1, 0, y4, sizeof(y4));
    check(y4, want, 24);
    (void)y;
    infer_model_unref(&m);
}

/* Malformed trees fail at load with a reason. */
static struct pb bad_tree(const int64_t *tru, const int64_t *fal, int64_t feat0)
{
    const int64_t treeids[] = {0, 0, 0}, nodeids[] = {0, 1, 2}, feats[] = {feat0, 0, 0};
    const float vals[] = {0, 0, 0}, tw[] = {1};
    const char *modes[] = {"BRANCH_LEQ", "LEAF", "LEAF"};
    const int64_t ttree[] = {0}, tnode[] = {1}, tid[] = {0};
    const char *in[] = {"X", NULL}, *out[] = {"Y", NULL};
    const int64_t dx[2] = {OB_BATCH, 2}, dy[2] = {OB_BATCH, 1};
    struct pb g = {0};

    pb_msg(&g, OB_G_NODE,
           ob_node("TreeEnsembleRegressor", "ai.onnx.ml", "bad", in, out, 11,
                   ob_attr_ints("nodes_treeids", 3, treeids),
                   ob_attr_ints("nodes_nodeids", 3, nodeids),
                   ob_attr_ints("nodes_featureids", 3, feats),
                   ob_attr_floats("nodes_values", 3, vals),
                   ob_attr_strings("nodes_modes", 3, modes),
                   ob_attr_ints("nodes_truenodeids", 3, tru),
                   ob_attr_ints("nodes_falsenodeids", 3, fal),
                   ob_attr_ints("target_treeids", 1, ttree),
                   ob_attr_ints("target_nodeids", 1, tnode), ob_attr_ints("target_ids", 1, tid),
                   ob_attr_floats("target_weights", 1, tw)));
    pb_msg(&g, OB_G_INPUT, ob_value_info("X", 1, 2, dx));
    pb_msg(&g, OB_G_OUTPUT, ob_value_info("Y", 1, 2, dy));
    return ob_model(13, 1, g);
}

static void test_bad_trees(void **state)
{
    char err[256];
    const int64_t ok_t[] = {1, 0, 0}, ok_f[] = {2, 0, 0};
    const int64_t missing_t[] = {7, 0, 0};
    const int64_t self_t[] = {0, 0, 0};
    struct infer_model *m;

    m = load_pb(bad_tree(ok_t, ok_f, 1), 0, err, sizeof(err));
    infer_model_unref(&m);
    load_pb(bad_tree(missing_t, ok_f, 0), -EINVAL, err, sizeof(err));
    assert_non_null(strstr(err, "child node missing"));
    /* Root pointing at itself: no root left (every node is a child). */
    load_pb(bad_tree(self_t, ok_f, 0), -EINVAL, err, sizeof(err));
    /* Feature 5 of a 2-column input: caught by shape inference at load. */
    load_pb(bad_tree(ok_t, ok_f, 5), -EINVAL, err, sizeof(err));
    assert_non_null(strstr(err, "feature id 5"));
}

static struct pb clf_model(const float *w, const int64_t *cid, int nw, const char *post)
{
    /* One split on x0 <= 0: leaf 1 (true) and leaf 2 (false). */
    const int64_t treeids[] = {0, 0, 0}, nodeids[] = {0, 1, 2}, feats[] = {0, 0, 0};
    const int64_t tru[] = {1, 0, 0}, fal[] = {2, 0, 0};
    const float vals[] = {0, 0, 0};
    const char *modes[] = {"BRANCH_LEQ", "LEAF", "LEAF"};
    int64_t ttree[6] = {0}, tnode[6];
    const int64_t labels3[] = {10, 20, 30}, labels2[] = {0, 1};
    const char *in[] = {"X", NULL}, *out[] = {"label", "scores", NULL};
    const int64_t dx[2] = {OB_BATCH, 1}, dl[1] = {OB_BATCH}, ds[2] = {OB_BATCH, nw == 2 ? 2 : 3};
    struct pb g = {0};

    for (int i = 0; i < nw; i++)
        tnode[i] = nw == 2 ? 1 + i : 1 + i / 3;
    pb_msg(&g, OB_G_NODE,
           ob_node("TreeEnsembleClassifier", "ai.onnx.ml", "clf", in, out, 13,
                   ob_attr_ints("nodes_treeids", 3, treeids),
                   ob_attr_ints("nodes_nodeids", 3, nodeids),
                   ob_attr_ints("nodes_featureids", 3, feats),
                   ob_attr_floats("nodes_values", 3, vals),
                   ob_attr_strings("nodes_modes", 3, modes),
                   ob_attr_ints("nodes_truenodeids", 3, tru),
                   ob_attr_ints("nodes_falsenodeids", 3, fal),
                   ob_attr_ints("class_treeids", (size_t)nw, ttree),
                   ob_attr_ints("class_nodeids", (size_t)nw, tnode),
                   ob_attr_ints("class_ids", (size_t)nw, cid),
                   ob_attr_floats("class_weights", (size_t)nw, w),
                   nw == 2 ? ob_attr_ints("classlabels_int64s", 2, labels2)
                           : ob_attr_ints("classlabels_int64s", 3, labels3),
                   ob_attr_s("post_transform", post)));
    pb_msg(&g, OB_G_INPUT, ob_value_info("X", 1, 2, dx));
    pb_msg(&g, OB_G_OUTPUT, ob_value_info("label", INFER_DT_INT64, 1, dl));
    pb_msg(&g, OB_G_OUTPUT, ob_value_info("scores", 1, 2, ds));
    return ob_model(13, 1, g);
}

static void test_classifier(void **state)
{
    char err[256];
    const float w[6] = {0.2f, 0.7f, 0.1f, 0.6f, 0.3f, 0.1f};
    const int64_t cid[6] = {0, 1, 2, 0, 1, 2};
    const float x[2] = {-1, 1};
    int64_t lab[2];
    float sc[6];
    struct infer_model *m = load_pb(clf_model(w, cid, 6, "NONE"), 0, err, sizeof(err));

    run(m, x, 2, 1, 0, lab, sizeof(lab));
    run(m, x, 2, 1, 1, sc, sizeof(sc));
    assert_int_equal(lab[0], 20);
    assert_int_equal(lab[1], 10);
    check(sc, w, 6);
    infer_model_unref(&m);

    m = load_pb(clf_model(w, cid, 6, "SOFTMAX"), 0, err, sizeof(err));
    run(m, x, 2, 1, 1, sc, sizeof(sc));
    float z = expf(0.2f) + expf(0.7f) + expf(0.1f);
    const float want[3] = {expf(0.2f) / z, expf(0.7f) / z, expf(0.1f) / z};
    check(sc, want, 3);
    infer_model_unref(&m);

    /* Binary: every weight on class 1 (all positive): scores (1 - s, s), label s > 0.5. */
    const float wb[2] = {0.8f, 0.3f};
    const int64_t cb[2] = {1, 1};
    m = load_pb(clf_model(wb, cb, 2, "NONE"), 0, err, sizeof(err));
    run(m, x, 2, 1, 0, lab, sizeof(lab));
    run(m, x, 2, 1, 1, sc, sizeof(float) * 4);
    assert_int_equal(lab[0], 1);
    assert_int_equal(lab[1], 0);
    const float wantb[4] = {0.2f, 0.8f, 0.7f, 0.3f};
    check(sc, wantb, 4);
    infer_model_unref(&m);
}

static struct pb linear_model(bool clf, const float *coef, int nc, const float *icpt, int ni,
                              const int64_t *labels, int nl, int targets, const char *post,
                              int64_t C)
{
    const char *in[] = {"X", NULL}, *outr[] = {"Y", NULL}, *outc[] = {"label", "scores", NULL};
    const int64_t dx[2] = {OB_BATCH, C}, dl[1] = {OB_BATCH}, dy[2] = {OB_BATCH, -1};
    struct pb g = {0};

    (void)dy;
    if (clf)
        pb_msg(&g, OB_G_NODE,
               ob_node("LinearClassifier", "ai.onnx.ml", "lin", in, outc, 4,
                       ob_attr_floats("coefficients", (size_t)nc, coef),
                       ob_attr_floats("intercepts", (size_t)ni, icpt),
                       ob_attr_ints("classlabels_ints", (size_t)nl, labels),
                       ob_attr_s("post_transform", post)));
    else
        pb_msg(&g, OB_G_NODE,
               ob_node("LinearRegressor", "ai.onnx.ml", "lin", in, outr, 4,
                       ob_attr_floats("coefficients", (size_t)nc, coef),
                       ob_attr_floats("intercepts", (size_t)ni, icpt),
                       ob_attr_i("targets", targets), ob_attr_s("post_transform", post)));
    pb_msg(&g, OB_G_INPUT, ob_value_info("X", 1, 2, dx));
    if (clf) {
        const int64_t ds[2] = {OB_BATCH, nl == 2 ? 2 : nl};
        pb_msg(&g, OB_G_OUTPUT, ob_value_info("label", INFER_DT_INT64, 1, dl));
        pb_msg(&g, OB_G_OUTPUT, ob_value_info("scores", 1, 2, ds));
    } else {
        const int64_t dyy[2] = {OB_BATCH, targets};
        pb_msg(&g, OB_G_OUTPUT, ob_value_info("Y", 1, 2, dyy));
    }
    return ob_model(13, 1, g);
}

static void test_linear(void **state)
{
    char err[256];
    const float coef[6] = {1, 2, 3, -1, 0, 1}, icpt[2] = {0.5f, -0.5f};
    const float x[6] = {1, 1, 1, 0, 1, 2};
    float y[4];
    struct infer_model *m = load_pb(linear_model(false, coef, 6, icpt, 2, NULL, 0, 2, "NONE", 3), 0,
                                    err, sizeof(err));
    const float want[4] = {6.5f, -0.5f, 8.5f, 1.5f};

    run(m, x, 2, 3, 0, y, sizeof(y));
    check(y, want, 4);
    infer_model_unref(&m);
    /* Coefficients that do not match X's width: load-time error. */
    load_pb(linear_model(false, coef, 6, icpt, 2, NULL, 0, 2, "NONE", 4), -EINVAL, err,
            sizeof(err));

    /* Multi-class. */
    const float c3[6] = {1, 0, 0, 1, -1, -1}, i3[3] = {0, 0, 0.5f};
    const int64_t l3[3] = {7, 8, 9};
    const float x2[4] = {2, 1, -3, 1};
    int64_t lab[2];
    float sc[6];
    m = load_pb(linear_model(true, c3, 6, i3, 3, l3, 3, 0, "NONE", 2), 0, err, sizeof(err));
    run(m, x2, 2, 2, 0, lab, sizeof(lab));
    run(m, x2, 2, 2, 1, sc, sizeof(sc));
    assert_int_equal(lab[0], 7); /* scores (2, 1, -2.5) */
    assert_int_equal(lab[1], 9); /* scores (-3, 1, 2.5) */
    const float w3[6] = {2, 1, -2.5f, -3, 1, 2.5f};
    check(sc, w3, 6);
    infer_model_unref(&m);

    /* Binary: one coefficient row; label by sign; scores (-s, s), LOGISTIC (1 - p, p). */
    const float cb[2] = {1, -1}, ib[1] = {0};
    const int64_t lb[2] = {0, 1};
    m = load_pb(linear_model(true, cb, 2, ib, 1, lb, 2, 0, "NONE", 2), 0, err, sizeof(err));
    run(m, x2, 2, 2, 0, lab, sizeof(lab));
    run(m, x2, 2, 2, 1, sc, sizeof(float) * 4);
    assert_int_equal(lab[0], 1); /* s = 1 */
    assert_int_equal(lab[1], 0); /* s = -4 */
    const float wb[4] = {-1, 1, 4, -4};
    check(sc, wb, 4);
    infer_model_unref(&m);
    m = load_pb(linear_model(true, cb, 2, ib, 1, lb, 2, 0, "LOGISTIC", 2), 0, err, sizeof(err));
    run(m, x2, 1, 2, 1, sc, sizeof(float) * 2);
    float p = 1 / (1 + expf(-1));
    const float wl[2] = {1 - p, p};
    check(sc, wl, 2);
    infer_model_unref(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_regressor_sum),
        cmocka_unit_test(test_regressor_aggregates),
        cmocka_unit_test(test_regressor_post_transforms),
        cmocka_unit_test(test_branch_modes),
        cmocka_unit_test(test_bad_trees),
        cmocka_unit_test(test_classifier),
        cmocka_unit_test(test_linear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
