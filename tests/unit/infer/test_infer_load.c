/* tests/unit/infer/test_infer_load.c: the loader is strict and never crashes: truncated
 * and corrupted files, deep nesting, unsupported operators and opsets (named in the
 * error), shape and dtype errors found at load, and value-dependent shapes (Reshape with
 * its target as a graph input) planned per value. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "infer/infer.h"
#include "infer/infer_int.h"
#include "onnx_build.h"

static void *slurp(const char *name, size_t *len)
{
    char path[1024];
    const char *fx = getenv("MLCDN_FIXTURES");
    void *buf = NULL;

    snprintf(path, sizeof(path), "%s/models/%s/model.onnx", fx ? fx : "tests/fixtures", name);
    assert_int_equal(infer__read_file(path, (size_t)1 << 30, &buf, len), 0);
    return buf;
}

static int load(const struct pb *mb, char *err, size_t errlen)
{
    struct infer_model *m = NULL;
    int rc = infer_model_load_mem(mb->b, mb->n, NULL, &m, err, errlen);

    infer_model_unref(&m);
    return rc;
}

/* Every strict prefix of a real model is refused (or, where a prefix happens to end on a
 * field boundary, checked like any model); none crashes. */
static void test_truncated(void **state)
{
    size_t len;
    uint8_t *buf = slurp("logreg", &len);
    char err[512];
    int ok = 0;

    for (size_t n = 0; n < len; n++) {
        struct infer_model *m = NULL;
        int rc = infer_model_load_mem(buf, n, NULL, &m, err, sizeof(err));
        if (rc == 0) {
            ok++;
            infer_model_unref(&m);
        } else {
            assert_true(rc < 0);
            assert_true(err[0] != '\0');
        }
    }
    /* A prefix cut inside the graph loses outputs or weights: almost none can load. */
    assert_true(ok < 5);
    free(buf);
}

/* Random byte flips and splices: any result but a crash or a leak is fine. */
static void test_corrupt(void **state)
{
    size_t len;
    uint8_t *orig = slurp("softmax_clf", &len), *buf = malloc(len);
    uint32_t x = 2463534242u;
    char err[512];

    for (int it = 0; it < 1500; it++) {
        struct infer_model *m = NULL;
        memcpy(buf, orig, len);
        for (int k = 0; k < 1 + it % 4; k++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            buf[x % len] = (uint8_t)(x >> 8);
        }
        if (infer_model_load_mem(buf, len, NULL, &m, err, sizeof(err)) == 0) {
            /* Loaded: running it on zeros must not crash either. */
            struct infer_session *s;
            float xin[48 * 2] = {0};
            struct infer_input in = {"x", {INFER_DT_FLOAT, 2, {2, 48}, xin}};
            struct infer_tensor out[2];
            infer_session_new(m, NULL, &s);
            (void)infer_session_run(s, &in, 1, out, 2, err, sizeof(err));
            infer_session_free(&s);
            infer_model_unref(&m);
        }
    }
    free(buf);
    free(orig);
}

/* Attribute -> graph -> node -> attribute ... 2000 levels deep: refused before
 * protobuf-c recurses into it. */
static void test_deep_nesting(void **state)
{
    struct pb cur = {0}, g = {0};
    char err[256];

    for (int d = 0; d < 2000; d++) {
        struct pb attr = {0}, node = {0}, graph = {0};
        pb_str(&attr, 1, "body");
        pb_varint(&attr, 20, 5);
        pb_bytes(&attr, 6, cur.b, cur.n); /* cur is a GraphProto */
        free(cur.b);
        pb_msg(&node, 5, attr);
        pb_msg(&graph, 1, node);
        cur = graph;
    }
    g = cur;
    struct pb m = ob_model(13, 0, g);
    assert_int_equal(load(&m, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "nesting"));
    free(m.b);
}

static struct pb one_node_graph(struct pb node, int dtype, int rin, const int64_t *din, int rout,
                                const int64_t *dout)
{
    struct pb g = {0};

    pb_msg(&g, OB_G_NODE, node);
    pb_str(&g, OB_G_NAME, "t");
    pb_msg(&g, OB_G_INPUT, ob_value_info("x", dtype, rin, din));
    pb_msg(&g, OB_G_OUTPUT, ob_value_info("y", dtype, rout, dout));
    return g;
}

static void test_unsupported_named(void **state)
{
    const char *in[] = {"x", NULL}, *out[] = {"y", NULL};
    const int64_t d[2] = {OB_BATCH, 4};
    char err[512];
    struct pb m;

    m = ob_model(13, 0,
                 one_node_graph(ob_node("FancyOp", "", "my_node", in, out, 0), 1, 2, d, 2, d));
    assert_int_equal(load(&m, err, sizeof(err)), -ENOTSUP);
    assert_non_null(strstr(err, "FancyOp"));
    assert_non_null(strstr(err, "my_node"));
    assert_non_null(strstr(err, "opset 13"));
    free(m.b);

    /* A known op in an unknown domain is unsupported too. */
    m = ob_model(13, 0,
                 one_node_graph(ob_node("Relu", "com.example", "n", in, out, 0), 1, 2, d, 2, d));
    assert_int_equal(load(&m, err, sizeof(err)), -ENOTSUP);
    assert_non_null(strstr(err, "com.example.Relu"));
    free(m.b);

    /* Opsets outside 7..17. */
    m = ob_model(6, 0, one_node_graph(ob_node("Relu", "", "n", in, out, 0), 1, 2, d, 2, d));
    assert_int_equal(load(&m, err, sizeof(err)), -ENOTSUP);
    assert_non_null(strstr(err, "opset 6"));
    free(m.b);
    m = ob_model(18, 0, one_node_graph(ob_node("Relu", "", "n", in, out, 0), 1, 2, d, 2, d));
    assert_int_equal(load(&m, err, sizeof(err)), -ENOTSUP);
    free(m.b);

    /* Supported: the same graph at opset 13 loads. */
    m = ob_model(13, 0, one_node_graph(ob_node("Relu", "", "n", in, out, 0), 1, 2, d, 2, d));
    assert_int_equal(load(&m, err, sizeof(err)), 0);
    free(m.b);

    /* String inputs are unsupported, not a crash. */
    m = ob_model(13, 0, one_node_graph(ob_node("Identity", "", "n", in, out, 0), 8, 2, d, 2, d));
    assert_int_equal(load(&m, err, sizeof(err)), -ENOTSUP);
    free(m.b);
}

/* Shape and dtype errors surface at load, with the node named. */
static void test_shape_errors_at_load(void **state)
{
    const int64_t dx[2] = {OB_BATCH, 4}, dw[2] = {5, 3}, dy[2] = {OB_BATCH, 3};
    const char *in[] = {"x", "W", NULL}, *out[] = {"y", NULL};
    float w[15] = {0};
    char err[512];
    struct pb g = {0}, m;

    pb_msg(&g, OB_G_NODE, ob_node("MatMul", "", "mm1", in, out, 0));
    pb_str(&g, OB_G_NAME, "t");
    pb_msg(&g, OB_G_INIT, ob_tensor("W", 1, 2, dw, w, sizeof(w)));
    pb_msg(&g, OB_G_INPUT, ob_value_info("x", 1, 2, dx));
    pb_msg(&g, OB_G_OUTPUT, ob_value_info("y", 1, 2, dy));
    m = ob_model(13, 0, g);
    assert_int_equal(load(&m, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "mm1"));
    assert_non_null(strstr(err, "inner dims"));
    free(m.b);

    /* Initializer whose bytes do not match its dims. */
    g = (struct pb){0};
    pb_msg(&g, OB_G_NODE, ob_node("MatMul", "", "mm1", in, out, 0));
    pb_msg(&g, OB_G_INIT, ob_tensor("W", 1, 2, dw, w, sizeof(w) - 4));
    pb_msg(&g, OB_G_INPUT, ob_value_info("x", 1, 2, dx));
    pb_msg(&g, OB_G_OUTPUT, ob_value_info("y", 1, 2, dy));
    m = ob_model(13, 0, g);
    assert_int_equal(load(&m, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "'W'"));
    free(m.b);

    /* Adding float to int64: dtype mismatch. */
    const int64_t d1[1] = {3};
    const char *ain[] = {"x", "k", NULL};
    int64_t k[3] = {1, 2, 3};
    g = (struct pb){0};
    pb_msg(&g, OB_G_NODE, ob_node("Add", "", "add7", ain, out, 0));
    pb_msg(&g, OB_G_INIT, ob_tensor("k", INFER_DT_INT64, 1, d1, k, sizeof(k)));
    pb_msg(&g, OB_G_INPUT, ob_value_info("x", 1, 1, d1));
    pb_msg(&g, OB_G_OUTPUT, ob_value_info("y", 1, 1, d1));
    m = ob_model(13, 0, g);
    assert_int_equal(load(&m, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "add7"));
    free(m.b);

    /* Use before definition (not topologically sorted). */
    const char *r1in[] = {"h", NULL}, *r1out[] = {"y", NULL}, *r2in[] = {"x", NULL},
               *r2out[] = {"h", NULL};
    g = (struct pb){0};
    pb_msg(&g, OB_G_NODE, ob_node("Relu", "", "second", r1in, r1out, 0));
    pb_msg(&g, OB_G_NODE, ob_node("Relu", "", "first", r2in, r2out, 0));
    pb_msg(&g, OB_G_INPUT, ob_value_info("x", 1, 1, d1));
    pb_msg(&g, OB_G_OUTPUT, ob_value_info("y", 1, 1, d1));
    m = ob_model(13, 0, g);
    assert_int_equal(load(&m, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "not defined before use"));
    free(m.b);

    /* Not protobuf at all. */
    struct pb junk = {(uint8_t *)"\xff\xff\xff\xff\xff", 5, 0};
    assert_int_equal(load(&junk, err, sizeof(err)), -EBADMSG);
    struct pb empty = {NULL, 0, 0};
    assert_int_equal(load(&empty, err, sizeof(err)), -EINVAL);
}

/* Reshape whose target shape is a graph input: the value is part of the plan key, so two
 * targets give two plans, both right. */
static void test_value_keyed_plan(void **state)
{
    const int64_t dx[2] = {2, 6}, ds[1] = {2}, dy[2] = {OB_BATCH, OB_BATCH};
    const char *in[] = {"x", "shape", NULL}, *out[] = {"y", NULL};
    float x[12];
    int64_t shp[2] = {3, 4};
    struct infer_model *m = NULL;
    struct infer_session *s;
    struct infer_tensor y;
    char err[256];
    struct pb g = {0}, mb;

    for (int i = 0; i < 12; i++)
        x[i] = (float)i;
    pb_msg(&g, OB_G_NODE, ob_node("Reshape", "", "r", in, out, 0));
    pb_msg(&g, OB_G_INPUT, ob_value_info("x", 1, 2, dx));
    pb_msg(&g, OB_G_INPUT, ob_value_info("shape", INFER_DT_INT64, 1, ds));
    pb_msg(&g, OB_G_OUTPUT, ob_value_info("y", 1, 2, dy));
    mb = ob_model(13, 0, g);
    assert_int_equal(infer_model_load_mem(mb.b, mb.n, NULL, &m, err, sizeof(err)), 0);
    free(mb.b);
    infer_session_new(m, NULL, &s);
    struct infer_input ins[2] = {{"x", {1, 2, {2, 6}, x}},
                                 {"shape", {INFER_DT_INT64, 1, {2}, shp}}};
    assert_int_equal(infer_session_run(s, ins, 2, &y, 1, err, sizeof(err)), 0);
    assert_int_equal(y.dims[0], 3);
    assert_int_equal(y.dims[1], 4);
    shp[0] = -1;
    shp[1] = 2;
    assert_int_equal(infer_session_run(s, ins, 2, &y, 1, err, sizeof(err)), 0);
    assert_int_equal(y.dims[0], 6);
    assert_int_equal(y.dims[1], 2);
    assert_float_equal(((float *)y.data)[11], 11, 0);
    shp[0] = 5;
    assert_int_equal(infer_session_run(s, ins, 2, &y, 1, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "elements"));
    infer_session_free(&s);
    infer_model_unref(&m);
}

/* A TensorProto decoder for .pb files: typed fields and raw_data. */
static void test_tensor_pb(void **state)
{
    struct pb t = {0};
    struct infer_tensor out;
    char *name = NULL, err[256];
    const int64_t d[1] = {3};

    pb_varint(&t, 1, 3);
    pb_varint(&t, 2, INFER_DT_INT64);
    pb_str(&t, 8, "ids");
    for (int i = 0; i < 3; i++)
        pb_varint(&t, 7, (uint64_t)(int64_t)(i - 1));
    assert_int_equal(infer_tensor_pb_decode(t.b, t.n, &out, &name, err, sizeof(err)), 0);
    assert_string_equal(name, "ids");
    assert_int_equal(((int64_t *)out.data)[0], -1);
    assert_int_equal(((int64_t *)out.data)[2], 1);
    free(out.data);
    free(name);
    free(t.b);

    /* dims claim 3 floats, raw_data has 2 */
    float v[2] = {1, 2};
    t = ob_tensor("f", 1, 1, d, v, sizeof(v));
    assert_int_equal(infer_tensor_pb_decode(t.b, t.n, &out, NULL, err, sizeof(err)), -EINVAL);
    free(t.b);
    /* A huge claimed shape with no data fails before allocating. */
    const int64_t big[2] = {INT64_C(1) << 40, INT64_C(1) << 20};
    t = ob_tensor("f", 1, 2, big, v, sizeof(v));
    assert_true(infer_tensor_pb_decode(t.b, t.n, &out, NULL, err, sizeof(err)) < 0);
    free(t.b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_corrupt),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_unsupported_named),
        cmocka_unit_test(test_shape_errors_at_load),
        cmocka_unit_test(test_value_keyed_plan),
        cmocka_unit_test(test_tensor_pb),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
