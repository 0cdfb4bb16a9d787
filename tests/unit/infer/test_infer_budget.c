/* tests/unit/infer/test_infer_budget.c: the memory budget. A 200-byte model that expands a
 * constant to 4 GiB is refused from its shapes, before any of it is allocated (peak RSS is
 * read from /proc/self/status), with a message naming the node, the tensor, the bytes and
 * the budget; a model just under its budget loads and runs; the run at the caller's batch
 * is sized at load; shapes decided by input values are checked at run time; packed weight
 * copies are charged; and a session's cached plans stay within its cap. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "infer/infer.h"
#include "infer/infer_int.h"
#include "infer/ops/infer_kern.h"
#include "onnx_build.h"

#define MiB ((size_t)1 << 20)

/* Peak resident size of this process so far, in bytes. */
static size_t vm_hwm(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t kb = 0;

    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmHWM: %zu kB", &kb) == 1)
            break;
    fclose(f);
    assert_true(kb > 0);
    return kb * 1024;
}

/* Resets the peak to the current resident size (Linux clear_refs "5"), so what a test
 * measures is its own peak, not an earlier test's. Without it the difference of two
 * readings still bounds the growth from above only when the old peak was lower. */
static size_t hwm_reset(void)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY);

    if (fd >= 0) {
        ssize_t w = write(fd, "5", 1);
        (void)w;
        close(fd);
    }
    return vm_hwm();
}

/* x float[batch, 4] -> y = x + ReduceSum(Expand(c, [rows, 4]), axis 0): every input of the
 * Expand is a constant, so loading folds it: rows * 16 bytes from a ~200-byte file. */
static struct pb bomb_model(int64_t rows)
{
    const int64_t dx[2] = {OB_BATCH, 4}, dc[2] = {1, 1}, ds[1] = {2}, ax[1] = {0};
    const char *ein[] = {"c", "shape", NULL}, *eout[] = {"big", NULL};
    const char *rin[] = {"big", NULL}, *rout[] = {"s", NULL};
    const char *ain[] = {"x", "s", NULL}, *aout[] = {"y", NULL};
    int64_t shape[2] = {rows, 4};
    float c = 0;
    struct pb g = {0};

    pb_msg(&g, OB_G_NODE, ob_node("Expand", "", "bomb", ein, eout, 0));
    pb_msg(&g, OB_G_NODE,
           ob_node("ReduceSum", "", "sum", rin, rout, 2, ob_attr_ints("axes", 1, ax),
                   ob_attr_i("keepdims", 1)));
    pb_msg(&g, OB_G_NODE, ob_node("Add", "", "y", ain, aout, 0));
    pb_str(&g, OB_G_NAME, "bomb");
    pb_msg(&g, OB_G_INIT, ob_tensor("c", INFER_DT_FLOAT, 2, dc, &c, sizeof(c)));
    pb_msg(&g, OB_G_INIT, ob_tensor("shape", INFER_DT_INT64, 1, ds, shape, sizeof(shape)));
    pb_msg(&g, OB_G_INPUT, ob_value_info("x", INFER_DT_FLOAT, 2, dx));
    pb_msg(&g, OB_G_OUTPUT, ob_value_info("y", INFER_DT_FLOAT, 2, dx));
    return ob_model(11, 0, g);
}

static void test_expand_bomb_refused(void **state)
{
    struct pb mb = bomb_model(INT64_C(1) << 28);
    struct infer_model *m = NULL;
    char err[1024], dir[] = "/tmp/mlcdn-budget-XXXXXX", path[64];
    size_t base;
    FILE *f;

    assert_true(mb.n < 300);
    base = hwm_reset();
    assert_int_equal(infer_model_load_mem(mb.b, mb.n, NULL, &m, err, sizeof(err)), -E2BIG);
    assert_null(m);
    /* A memory bound, not a timing: the 4 GiB were never touched. */
    assert_true(vm_hwm() - base < 64 * MiB);
    assert_non_null(strstr(err, "node 'bomb' (Expand)"));
    assert_non_null(strstr(err, "'big' [268435456, 4] float32"));
    assert_non_null(strstr(err, "needs 4294967296 bytes"));
    assert_non_null(strstr(err, "memory budget of 1073741824 bytes"));

    /* From a file, the message names it. */
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/model.onnx", dir);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(mb.b, 1, mb.n, f), mb.n);
    fclose(f);
    base = hwm_reset();
    assert_int_equal(infer_model_load(path, NULL, &m, err, sizeof(err)), -E2BIG);
    assert_true(vm_hwm() - base < 64 * MiB);
    assert_true(strncmp(err, path, strlen(path)) == 0);
    assert_non_null(strstr(err, "budget"));
    unlink(path);
    rmdir(dir);
    free(mb.b);
}

/* The same graph with a 16 MiB expansion: a budget a little over that loads (the folded
 * intermediate is not kept: only the [1, 4] sum stays a constant) and computes y = x;
 * a budget under it is refused. */
static void test_just_under_budget_loads(void **state)
{
    struct pb mb = bomb_model(INT64_C(1) << 20);
    struct infer_load_opts lo = {.max_memory = 16 * MiB + 4096};
    struct infer_model *m = NULL;
    struct infer_session *s;
    struct infer_model_mem mm;
    struct infer_tensor y;
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    struct infer_input in = {"x", {INFER_DT_FLOAT, 2, {2, 4}, x}};
    char err[512];

    assert_int_equal(infer_model_load_mem(mb.b, mb.n, &lo, &m, err, sizeof(err)), 0);
    infer_model_memory(m, &mm);
    assert_int_equal(mm.budget, 16 * MiB + 4096);
    assert_true(mm.constants < 4096);
    assert_true(mm.constants + mm.run <= mm.budget);
    assert_int_equal(infer_session_new(m, NULL, &s), 0);
    assert_int_equal(infer_session_run(s, &in, 1, &y, 1, err, sizeof(err)), 0);
    for (int i = 0; i < 8; i++)
        assert_float_equal(((float *)y.data)[i], x[i], 0);
    infer_session_free(&s);
    infer_model_unref(&m);

    lo.max_memory = 16 * MiB - 1;
    assert_int_equal(infer_model_load_mem(mb.b, mb.n, &lo, &m, err, sizeof(err)), -E2BIG);
    assert_non_null(strstr(err, "memory budget of 16777215 bytes"));
    /* A file larger than its budget is refused before it is parsed. */
    lo.max_memory = mb.n - 1;
    assert_int_equal(infer_model_load_mem(mb.b, mb.n, &lo, &m, err, sizeof(err)), -E2BIG);
    free(mb.b);
}

/* x float[batch, 1024] -> Relu: a run of B rows needs 4 KiB * B of working memory. Loading
 * sizes the run at opts.batch; a session refuses, before allocating, a batch its model's
 * budget cannot hold. */
static void test_run_sized_at_batch(void **state)
{
    const int64_t d[2] = {OB_BATCH, 1024};
    const char *in[] = {"x", NULL}, *out[] = {"y", NULL};
    struct infer_load_opts lo = {.max_memory = 8 * MiB, .batch = 4096};
    struct infer_model *m = NULL;
    struct infer_session *s;
    struct infer_tensor y;
    struct pb g = {0}, mb;
    float *x = calloc(4096 * 1024, sizeof(float));
    struct infer_input xi = {"x", {INFER_DT_FLOAT, 2, {4096, 1024}, x}};
    char err[512];
    size_t base;

    pb_msg(&g, OB_G_NODE, ob_node("Relu", "", "act", in, out, 0));
    pb_msg(&g, OB_G_INPUT, ob_value_info("x", INFER_DT_FLOAT, 2, d));
    pb_msg(&g, OB_G_OUTPUT, ob_value_info("y", INFER_DT_FLOAT, 2, d));
    mb = ob_model(13, 0, g);
    assert_int_equal(infer_model_load_mem(mb.b, mb.n, &lo, &m, err, sizeof(err)), -E2BIG);
    assert_non_null(strstr(err, "a run of 4096 rows"));
    assert_non_null(strstr(err, "'y' [4096, 1024] float32 of node 'act' (Relu)"));
    lo.batch = 1024;
    assert_int_equal(infer_model_load_mem(mb.b, mb.n, &lo, &m, err, sizeof(err)), 0);
    assert_int_equal(infer_session_new(m, NULL, &s), 0);
    base = hwm_reset();
    assert_int_equal(infer_session_run(s, &xi, 1, &y, 1, err, sizeof(err)), -E2BIG);
    assert_true(vm_hwm() - base < 4 * MiB);
    assert_non_null(strstr(err, "memory budget of 8388608 bytes"));
    xi.t.dims[0] = 1024;
    assert_int_equal(infer_session_run(s, &xi, 1, &y, 1, err, sizeof(err)), 0);
    assert_int_equal(y.dims[0], 1024);
    infer_session_free(&s);
    infer_model_unref(&m);
    free(mb.b);
    free(x);
}

/* Expand whose target shape is a graph input: unknown at load, so the run that brings a
 * 4 GiB target is refused then, before allocating; the session still runs small ones. */
static void test_value_decided_shape_checked_at_run(void **state)
{
    const int64_t dx[1] = {1}, ds[1] = {2}, dy[2] = {OB_BATCH, OB_BATCH};
    const char *in[] = {"x", "shape", NULL}, *out[] = {"y", NULL};
    struct infer_model *m = NULL;
    struct infer_session *s;
    struct infer_tensor y;
    struct pb g = {0}, mb;
    float x = 3;
    int64_t shape[2] = {INT64_C(1) << 28, 4};
    struct infer_input ins[2] = {{"x", {INFER_DT_FLOAT, 1, {1}, &x}},
                                 {"shape", {INFER_DT_INT64, 1, {2}, shape}}};
    char err[512];
    size_t base;

    pb_msg(&g, OB_G_NODE, ob_node("Expand", "", "grow", in, out, 0));
    pb_msg(&g, OB_G_INPUT, ob_value_info("x", INFER_DT_FLOAT, 1, dx));
    pb_msg(&g, OB_G_INPUT, ob_value_info("shape", INFER_DT_INT64, 1, ds));
    pb_msg(&g, OB_G_OUTPUT, ob_value_info("y", INFER_DT_FLOAT, 2, dy));
    mb = ob_model(13, 0, g);
    assert_int_equal(infer_model_load_mem(mb.b, mb.n, NULL, &m, err, sizeof(err)), 0);
    free(mb.b);
    assert_int_equal(infer_session_new(m, NULL, &s), 0);
    base = hwm_reset();
    assert_int_equal(infer_session_run(s, ins, 2, &y, 1, err, sizeof(err)), -E2BIG);
    assert_true(vm_hwm() - base < 64 * MiB);
    assert_non_null(strstr(err, "'y' [268435456, 4] float32 of node 'grow' (Expand)"));
    assert_non_null(strstr(err, "budget"));
    shape[0] = 2;
    assert_int_equal(infer_session_run(s, ins, 2, &y, 1, err, sizeof(err)), 0);
    assert_int_equal(y.dims[0], 2);
    assert_float_equal(((float *)y.data)[7], 3, 0);
    infer_session_free(&s);
    infer_model_unref(&m);
}

/* Sixty-four MatMuls share one 256x256 weight: each packs its own copy (256 KiB), and
 * those copies are charged before they are made. */
static void test_packed_copies_charged(void **state)
{
    const int64_t dx[2] = {OB_BATCH, 256}, dw[2] = {256, 256};
    struct infer_load_opts lo = {.max_memory = 4 * MiB};
    struct infer_model *m = NULL;
    float *w = calloc(256 * 256, sizeof(float));
    char err[512], names[64][2][8];
    struct pb g = {0}, mb;

    if (infer__sgemm_pack_bytes(256, 256) == 0) {
        free(w);
        skip(); /* no AVX-512: weights are not packed */
    }
    for (int i = 0; i < 64; i++) {
        snprintf(names[i][0], sizeof(names[i][0]), i ? "h%d" : "x", i);
        snprintf(names[i][1], sizeof(names[i][1]), i < 63 ? "h%d" : "y", i + 1);
        const char *in[] = {names[i][0], "W", NULL}, *out[] = {names[i][1], NULL};
        pb_msg(&g, OB_G_NODE, ob_node("MatMul", "", names[i][1], in, out, 0));
    }
    pb_msg(&g, OB_G_INIT, ob_tensor("W", INFER_DT_FLOAT, 2, dw, w, 256 * 256 * sizeof(float)));
    pb_msg(&g, OB_G_INPUT, ob_value_info("x", INFER_DT_FLOAT, 2, dx));
    pb_msg(&g, OB_G_OUTPUT, ob_value_info("y", INFER_DT_FLOAT, 2, dx));
    mb = ob_model(13, 0, g);
    assert_int_equal(infer_model_load_mem(mb.b, mb.n, &lo, &m, err, sizeof(err)), -E2BIG);
    assert_non_null(strstr(err, "the packed copy of 'W'"));
    lo.max_memory = 32 * MiB;
    assert_int_equal(infer_model_load_mem(mb.b, mb.n, &lo, &m, err, sizeof(err)), 0);
    infer_model_unref(&m);
    free(mb.b);
    free(w);
}

/* y = x + Expand(c, Shape(x)): the Expand is folded per plan (its shape comes from x's),
 * so every batch size caches a plan holding a tensor as large as x. With a 512 KiB cap the
 * session drops old plans instead of growing, and each run is still right. */
static void test_session_cache_within_cap(void **state)
{
    const int64_t dx[2] = {OB_BATCH, 1024}, dc[1] = {1};
    const char *sin[] = {"x", NULL}, *sout[] = {"sh", NULL};
    const char *ein[] = {"c", "sh", NULL}, *eout[] = {"cc", NULL};
    const char *ain[] = {"x", "cc", NULL}, *aout[] = {"y", NULL};
    struct infer_session_opts so = {.max_arena = 512 * 1024};
    struct infer_model *m = NULL;
    struct infer_session *s;
    struct infer_tensor y;
    struct pb g = {0}, mb;
    float c = 0.5f, *x = calloc(80 * 1024, sizeof(float));
    char err[512];

    pb_msg(&g, OB_G_NODE, ob_node("Shape", "", "shape", sin, sout, 0));
    pb_msg(&g, OB_G_NODE, ob_node("Expand", "", "cc", ein, eout, 0));
    pb_msg(&g, OB_G_NODE, ob_node("Add", "", "y", ain, aout, 0));
    pb_msg(&g, OB_G_INIT, ob_tensor("c", INFER_DT_FLOAT, 1, dc, &c, sizeof(c)));
    pb_msg(&g, OB_G_INPUT, ob_value_info("x", INFER_DT_FLOAT, 2, dx));
    pb_msg(&g, OB_G_OUTPUT, ob_value_info("y", INFER_DT_FLOAT, 2, dx));
    mb = ob_model(13, 0, g);
    assert_int_equal(infer_model_load_mem(mb.b, mb.n, NULL, &m, err, sizeof(err)), 0);
    free(mb.b);
    assert_int_equal(infer_session_new(m, &so, &s), 0);
    for (int64_t b = 1; b <= 60; b++) {
        struct infer_input in = {"x", {INFER_DT_FLOAT, 2, {b, 1024}, x}};
        x[b * 1024 - 1] = (float)b;
        assert_int_equal(infer_session_run(s, &in, 1, &y, 1, err, sizeof(err)), 0);
        assert_float_equal(((float *)y.data)[b * 1024 - 1], (float)b + 0.5f, 0);
        assert_true(infer_session_memory_bytes(s) <= 512 * 1024);
    }
    /* 80 rows: 320 KiB folded plus 320 KiB of output do not fit at all. */
    struct infer_input in = {"x", {INFER_DT_FLOAT, 2, {80, 1024}, x}};
    assert_int_equal(infer_session_run(s, &in, 1, &y, 1, err, sizeof(err)), -E2BIG);
    assert_non_null(strstr(err, "the session's cap of 524288 bytes"));
    infer_session_free(&s);
    infer_model_unref(&m);
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expand_bomb_refused),
        cmocka_unit_test(test_just_under_budget_loads),
        cmocka_unit_test(test_run_sized_at_batch),
        cmocka_unit_test(test_value_decided_shape_checked_at_run),
        cmocka_unit_test(test_packed_copies_charged),
        cmocka_unit_test(test_session_cache_within_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
