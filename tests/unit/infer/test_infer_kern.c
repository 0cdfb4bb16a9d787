/* tests/unit/infer/test_infer_kern.c: the tuned kernels (src/infer/ops/infer_kern.h)
 * against plain references: the packed sgemm on random shapes with edge tails (M, N, K not
 * multiples of the blocks, dot-product N, row strides), every bias mode, alpha/beta and Relu,
 * with the AVX-512 kernels and with the portable path; Gemm and MatMul models with constant
 * weights (the packed path through the session); expf/tanhf/sigmoid within 2 ulp over a
 * sweep of all float magnitudes plus NaN, +-inf, +-0 and subnormal results; row softmax; and
 * the tree ensemble fast walk against a reference walk on random all-BRANCH_LEQ ensembles,
 * one row and several, with and without AVX-512. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "infer/infer.h"
#include "infer/ops/infer_kern.h"
#include "onnx_build.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static float frnd(void) /* [-1, 1) */
{
    return (float)(rnd() % 2000001) / 1000000.0f - 1.0f;
}

/* ---- sgemm ---- */

static void ref_gemm(int64_t M, int64_t N, int64_t K, const float *a, int64_t lda, const float *b,
                     bool tb, float alpha, int mode, const float *bias, float beta, bool relu,
                     const float *c0, double *out, int64_t ldc)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++)
                s += (double)a[i * lda + k] * (tb ? b[j * K + k] : b[k * N + j]);
            s *= alpha;
            if (mode == INFER_BIAS_ROW)
                s += (double)beta * bias[j];
            else if (mode == INFER_BIAS_ACC)
                s += (double)beta * c0[i * ldc + j];
            if (relu)
                s = s > 0 ? s : 0;
            out[i * ldc + j] = s;
        }
}

static void one_gemm(int64_t M, int64_t N, int64_t K, bool tb, int mode, bool relu, int pad)
{
    int64_t lda = K + pad, ldc = N + pad;
    float *a = malloc(sizeof(float) * (size_t)(M * lda + 1));
    float *b = malloc(sizeof(float) * (size_t)(N * K));
    float *bias = malloc(sizeof(float) * (size_t)N);
    float *c = malloc(sizeof(float) * (size_t)(M * ldc + 1));
    float *c0 = malloc(sizeof(float) * (size_t)(M * ldc + 1));
    double *want = malloc(sizeof(double) * (size_t)(M * ldc + 1));
    float alpha = (rnd() & 1) ? 1.0f : 0.5f, beta = (rnd() & 1) ? 1.0f : -2.0f;
    struct infer_sgemm_pack *p;

    for (int64_t i = 0; i < M * lda; i++)
        a[i] = frnd();
    for (int64_t i = 0; i < N * K; i++)
        b[i] = frnd();
    for (int64_t i = 0; i < N; i++)
        bias[i] = frnd();
    for (int64_t i = 0; i < M * ldc; i++)
        c[i] = c0[i] = frnd();
    p = infer__sgemm_pack(b, K, N, tb);
    if (p == NULL) { /* no AVX-512 here: Gemm keeps using OpenBLAS */
        assert_true(infer__cpu_level() < INFER_CPU_AVX512);
        goto out;
    }
    ref_gemm(M, N, K, a, lda, b, tb, alpha, mode, bias, beta, relu, c0, want, ldc);
    infer__sgemm_run(p, M, a, lda, alpha, mode, bias, beta, relu, c, ldc);
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < ldc; j++) {
            double w = want[i * ldc + j], g = c[i * ldc + j];
            if (j >= N) { /* padding past N must not be written */
                if (c[i * ldc + j] != c0[i * ldc + j])
                    fail_msg("M=%lld N=%lld K=%lld: wrote C[%lld][%lld] past N", (long long)M,
                             (long long)N, (long long)K, (long long)i, (long long)j);
                continue;
            }
            if (fabs(g - w) > 1e-5 * (double)K + 1e-5 * fabs(w))
                fail_msg("M=%lld N=%lld K=%lld tb=%d mode=%d relu=%d: C[%lld][%lld] = %.9g, "
                         "expected %.9g",
                         (long long)M, (long long)N, (long long)K, tb, mode, relu, (long long)i,
                         (long long)j, g, w);
        }
    }
    infer__sgemm_pack_free(p);
out:
    free(a);
    free(b);
    free(bias);
    free(c);
    free(c0);
    free(want);
}

static void gemm_sweep(void)
{
    static const int64_t Ms[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 33};
    static const int64_t Ns[] = {1, 2, 5, 8, 9, 10, 15, 16, 17, 31, 32, 33, 48, 65};
    static const int64_t Ks[] = {1, 3, 4, 5, 15, 16, 17, 31, 64, 80};

    for (size_t mi = 0; mi < sizeof(Ms) / sizeof(Ms[0]); mi++)
        for (size_t ni = 0; ni < sizeof(Ns) / sizeof(Ns[0]); ni++)
            for (size_t ki = 0; ki < sizeof(Ks) / sizeof(Ks[0]); ki++)
                one_gemm(Ms[mi], Ns[ni], Ks[ki], rnd() & 1, (int)(rnd() % 3), rnd() & 1,
                         (rnd() & 1) ? 0 : 3);
    /* The benchmark models' shapes. */
    one_gemm(256, 256, 64, true, INFER_BIAS_ROW, true, 0);
    one_gemm(256, 256, 256, true, INFER_BIAS_ROW, true, 0);
    one_gemm(256, 1, 256, true, INFER_BIAS_ROW, false, 0);
    one_gemm(100, 10, 32, false, INFER_BIAS_ACC, false, 0);
}

static void test_sgemm(void **state)
{
    gemm_sweep();
}

static void test_sgemm_portable(void **state)
{
    /* Packs made with AVX-512 but run through the portable path. */
    struct infer_sgemm_pack *p;
    float b[6 * 5], a[3 * 6], c[3 * 5];
    double want[3 * 5];

    for (int i = 0; i < 30; i++)
        b[i] = frnd();
    for (int i = 0; i < 18; i++)
        a[i] = frnd();
    p = infer__sgemm_pack(b, 6, 5, false);
    if (p == NULL)
        skip();
    infer__cpu_force(INFER_CPU_GENERIC);
    ref_gemm(3, 5, 6, a, 6, b, false, 1, INFER_BIAS_NONE, NULL, 0, true, NULL, want, 5);
    infer__sgemm_run(p, 3, a, 6, 1, INFER_BIAS_NONE, NULL, 0, true, c, 5);
    infer__cpu_force(-1);
    for (int i = 0; i < 15; i++)
        assert_true(fabs(c[i] - want[i]) < 1e-5);
    infer__sgemm_pack_free(p);
}

/* ---- Gemm / MatMul models with constant weights ---- */

static struct infer_model *load_pb(struct pb mb)
{
    struct infer_model *m = NULL;
    char err[256];

    if (infer_model_load_mem(mb.b, mb.n, NULL, &m, err, sizeof(err)) != 0)
        fail_msg("load: %s", err);
    free(mb.b);
    return m;
}

/* Y = Relu(Gemm(X, W, C, transB=1, alpha, beta)) with W [N, K] and C of shape cdims. */
static void gemm_model_case(int64_t M, int64_t N, int64_t K, int crank, const int64_t *cdims,
                            bool matmul)
{
    float *w = malloc(sizeof(float) * (size_t)(N * K));
    float *x = malloc(sizeof(float) * (size_t)(M * K));
    float *cv = malloc(sizeof(float) * (size_t)(M * N));
    /* A static batch: C may be [M, N] or [M, 1]. */
    int64_t cn = 1, wd[2] = {matmul ? K : N, matmul ? N : K}, dx[2] = {M, K}, dy[2] = {M, N};
    const char *in3[] = {"X", "W", "C", NULL}, *in2[] = {"X", "W", NULL}, *mid[] = {"G", NULL},
               *out[] = {"Y", NULL};
    struct pb g = {0};
    struct infer_model *m;
    struct infer_session *s;
    struct infer_tensor y;
    char err[256];

    for (int i = 0; i < crank; i++)
        cn *= cdims[i];
    for (int64_t i = 0; i < N * K; i++)
        w[i] = frnd();
    for (int64_t i = 0; i < M * K; i++)
        x[i] = frnd();
    for (int64_t i = 0; i < cn; i++)
        cv[i] = frnd();
    pb_msg(&g, OB_G_INIT, ob_tensor("W", 1, 2, wd, w, sizeof(float) * (size_t)(N * K)));
    if (matmul) {
        pb_msg(&g, OB_G_NODE, ob_node("MatMul", "", "mm", in2, mid, 0));
    } else {
        pb_msg(&g, OB_G_INIT, ob_tensor("C", 1, crank, cdims, cv, sizeof(float) * (size_t)cn));
        pb_msg(&g, OB_G_NODE,
               ob_node("Gemm", "", "gemm", in3, mid, 3, ob_attr_i("transB", 1),
                       ob_attr_f("alpha", 0.5f), ob_attr_f("beta", 2.0f)));
    }
    pb_msg(&g, OB_G_NODE, ob_node("Relu", "", "relu", mid, out, 0));
    pb_msg(&g, OB_G_INPUT, ob_value_info("X", 1, 2, dx));
    pb_msg(&g, OB_G_OUTPUT, ob_value_info("Y", 1, 2, dy));
    m = load_pb(ob_model(13, 0, g));
    infer_session_new(m, NULL, &s);
    {
        struct infer_input inp = {"X", {INFER_DT_FLOAT, 2, {M, K}, x}};
        if (infer_session_run(s, &inp, 1, &y, 1, err, sizeof(err)) != 0)
            fail_msg("run: %s", err);
    }
    assert_int_equal(y.dims[0], M);
    assert_int_equal(y.dims[1], N);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double sacc = 0, want, bv = 0;
            for (int64_t k = 0; k < K; k++)
                sacc += (double)x[i * K + k] * (matmul ? w[k * N + j] : w[j * K + k]);
            if (!matmul) {
                if (cn == 1)
                    bv = cv[0];
                else if (cn == N && (crank == 1 || cdims[0] == 1))
                    bv = cv[j];
                else if (crank == 2 && cdims[1] == 1)
                    bv = cv[i];
                else
                    bv = cv[i * N + j];
                want = 0.5 * sacc + 2.0 * bv;
            } else {
                want = sacc;
            }
            want = want > 0 ? want : 0;
            double got = ((float *)y.data)[i * N + j];
            if (fabs(got - want) > 1e-5 * (double)K + 1e-5 * fabs(want))
                fail_msg("%s M=%lld N=%lld K=%lld crank=%d: Y[%lld][%lld] = %.9g, expected %.9g",
                         matmul ? "MatMul" : "Gemm", (long long)M, (long long)N, (long long)K,
                         crank, (long long)i, (long long)j, got, want);
        }
    infer_session_free(&s);
    infer_model_unref(&m);
    free(w);
    free(x);
    free(cv);
}

static void test_gemm_models(void **state)
{
    static const int64_t Ms[] = {1, 5, 37};
    for (size_t i = 0; i < 3; i++) {
        int64_t M = Ms[i];
        int64_t row[1] = {20}, row2[2] = {1, 20}, one[1] = {1}, col[2] = {M, 1}, full[2] = {M, 20};
        int64_t n1[1] = {1};
        gemm_model_case(M, 20, 33, 1, row, false);
        gemm_model_case(M, 20, 33, 2, row2, false);
        gemm_model_case(M, 20, 33, 1, one, false);
        gemm_model_case(M, 20, 33, 2, col, false);
        gemm_model_case(M, 20, 33, 2, full, false);
        gemm_model_case(M, 1, 70, 1, n1, false);
        gemm_model_case(M, 20, 33, 0, NULL, true);
        gemm_model_case(M, 3, 17, 0, NULL, true);
    }
}

/* Gemm -> Relu fusion: a chain (Relu output feeding the next Gemm), a Gemm whose output is
 * also a graph output (not fused), and transA=1 (OpenBLAS path applying the fused Relu). */
static void dense_ref(const float *x, int64_t M, int64_t K, bool xt, const float *w, int64_t N,
                      const float *b, bool relu, double *y)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = b ? b[j] : 0;
            for (int64_t k = 0; k < K; k++)
                s += (double)(xt ? x[k * M + i] : x[i * K + k]) * w[j * K + k];
            y[i * N + j] = relu && !(s > 0) ? 0 : s;
        }
}

static void test_gemm_relu_fusion(void **state)
{
    enum { M = 19, K = 23, N1 = 40, N2 = 9 };
    static float x[M * K], xt[K * M], w1[N1 * K], b1[N1], w2[N2 * N1], b2[N2], w3[N2 * N1];
    static double h1[M * N1], h1f[M * N1], y2[M * N2], g3[M * N2], g4[M * N1];
    const int64_t dx[2] = {M, K}, dxt[2] = {K, M}, dw1[2] = {N1, K}, db1[1] = {N1},
                  dw2[2] = {N2, N1}, db2[1] = {N2}, dy[2] = {M, N2}, dy4[2] = {M, N1};
    const char *i1[] = {"X", "W1", "B1", NULL}, *o1[] = {"G1", NULL}, *r1i[] = {"G1", NULL},
               *r1o[] = {"H1", NULL}, *i2[] = {"H1", "W2", "B2", NULL}, *o2[] = {"G2", NULL},
               *r2o[] = {"Y", NULL}, *i3[] = {"H1", "W3", NULL}, *o3[] = {"Z", NULL},
               *r3o[] = {"R", NULL}, *i4[] = {"XT", "W1", NULL}, *o4[] = {"G4", NULL},
               *r4o[] = {"Y4", NULL};
    struct pb g = {0};
    struct infer_model *m;
    struct infer_session *s;
    struct infer_tensor out[4];
    struct infer_input in[2] = {{"X", {INFER_DT_FLOAT, 2, {M, K}, x}},
                                {"XT", {INFER_DT_FLOAT, 2, {K, M}, xt}}};
    char err[256];

    for (int i = 0; i < M * K; i++)
        x[i] = frnd();
    for (int i = 0; i < M; i++)
        for (int k = 0; k < K; k++)
            xt[k * M + i] = x[i * K + k];
    for (int i = 0; i < N1 * K; i++)
        w1[i] = frnd();
    for (int i = 0; i < N1; i++)
        b1[i] = frnd();
    for (int i = 0; i < N2 * N1; i++) {
        w2[i] = frnd();
        w3[i] = frnd();
    }
    for (int i = 0; i < N2; i++)
        b2[i] = frnd();
    pb_msg(&g, OB_G_INIT, ob_tensor("W1", 1, 2, dw1, w1, sizeof(w1)));
    pb_msg(&g, OB_G_INIT, ob_tensor("B1", 1, 1, db1, b1, sizeof(b1)));
    pb_msg(&g, OB_G_INIT, ob_tensor("W2", 1, 2, dw2, w2, sizeof(w2)));
    pb_msg(&g, OB_G_INIT, ob_tensor("B2", 1, 1, db2, b2, sizeof(b2)));
    pb_msg(&g, OB_G_INIT, ob_tensor("W3", 1, 2, dw2, w3, sizeof(w3)));
    pb_msg(&g, OB_G_NODE, ob_node("Gemm", "", "g1", i1, o1, 1, ob_attr_i("transB", 1)));
    pb_msg(&g, OB_G_NODE, ob_node("Relu", "", "r1", r1i, r1o, 0));
    pb_msg(&g, OB_G_NODE, ob_node("Gemm", "", "g2", i2, o2, 1, ob_attr_i("transB", 1)));
    pb_msg(&g, OB_G_NODE, ob_node("Relu", "", "r2", o2, r2o, 0));
    pb_msg(&g, OB_G_NODE, ob_node("Gemm", "", "g3", i3, o3, 1, ob_attr_i("transB", 1)));
    pb_msg(&g, OB_G_NODE, ob_node("Relu", "", "r3", o3, r3o, 0));
    pb_msg(&g, OB_G_NODE,
           ob_node("Gemm", "", "g4", i4, o4, 2, ob_attr_i("transA", 1), ob_attr_i("transB", 1)));
    pb_msg(&g, OB_G_NODE, ob_node("Relu", "", "r4", o4, r4o, 0));
    pb_msg(&g, OB_G_INPUT, ob_value_info("X", 1, 2, dx));
    pb_msg(&g, OB_G_INPUT, ob_value_info("XT", 1, 2, dxt));
    pb_msg(&g, OB_G_OUTPUT, ob_value_info("Y", 1, 2, dy));
    pb_msg(&g, OB_G_OUTPUT, ob_value_info("Z", 1, 2, dy));
    pb_msg(&g, OB_G_OUTPUT, ob_value_info("R", 1, 2, dy));
    pb_msg(&g, OB_G_OUTPUT, ob_value_info("Y4", 1, 2, dy4));
    m = load_pb(ob_model(13, 0, g));
    dense_ref(x, M, K, false, w1, N1, b1, false, h1);
    for (int i = 0; i < M * N1; i++)
        h1f[i] = (float)(h1[i] > 0 ? h1[i] : 0);
    {
        static float h1r[M * N1];
        for (int i = 0; i < M * N1; i++)
            h1r[i] = (float)h1f[i];
        dense_ref(h1r, M, N1, false, w2, N2, b2, true, y2);
        dense_ref(h1r, M, N1, false, w3, N2, NULL, false, g3);
    }
    dense_ref(x, M, K, false, w1, N1, NULL, true, g4);
    infer_session_new(m, NULL, &s);
    for (int rep = 0; rep < 2; rep++) { /* the second run reuses the plan */
        if (infer_session_run(s, in, 2, out, 4, err, sizeof(err)) != 0)
            fail_msg("run: %s", err);
        for (int i = 0; i < M * N2; i++) {
            const float *y = out[0].data, *z = out[1].data, *r = out[2].data;
            double rz = g3[i] > 0 ? g3[i] : 0;
            if (fabs(y[i] - y2[i]) > 1e-4 || fabs(z[i] - g3[i]) > 1e-4 || fabs(r[i] - rz) > 1e-4)
                fail_msg("element %d: Y %.9g/%.9g Z %.9g/%.9g R %.9g/%.9g", i, y[i], y2[i], z[i],
                         g3[i], r[i], rz);
        }
        for (int i = 0; i < M * N1; i++)
            if (fabs(((const float *)out[3].data)[i] - g4[i]) > 1e-4)
                fail_msg("Y4[%d] = %.9g, expected %.9g", i, ((const float *)out[3].data)[i], g4[i]);
    }
    infer_session_free(&s);
    infer_model_unref(&m);
}

/* ---- vectorised math ---- */

/* |got - want| in units of the float spacing at want (subnormal spacing below 2^-126). */
static double ulps(float got, double want)
{
    float wf = (float)want;
    int e;

    if (isnan(want))
        return isnan(got) ? 0 : 1e9;
    if (isinf(wf) || isinf(got))
        return got == wf ? 0 : 1e9;
    if (fabs(want) < 0x1p-126)
        return fabs((double)got - want) / 0x1p-149;
    frexp(fabs(want), &e);
    return fabs((double)got - want) / ldexp(1.0, e - 24);
}

static double sig_ref(double x)
{
    return x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x));
}

enum { F_EXP, F_TANH, F_SIG };

static void check_fn(int f, const float *x, int64_t n, double max_ulp)
{
    float *y = malloc(sizeof(float) * (size_t)n);
    float *y2 = malloc(sizeof(float) * (size_t)n);

    if (f == F_EXP)
        infer__vexpf(x, y, n);
    else if (f == F_TANH)
        infer__vtanhf(x, y, n);
    else
        infer__vsigmoidf(x, y, n);
    memcpy(y2, x, sizeof(float) * (size_t)n); /* in place gives the same */
    if (f == F_EXP)
        infer__vexpf(y2, y2, n);
    else if (f == F_TANH)
        infer__vtanhf(y2, y2, n);
    else
        infer__vsigmoidf(y2, y2, n);
    for (int64_t i = 0; i < n; i++) {
        double w = f == F_EXP  ? exp((double)x[i])
                 : f == F_TANH ? tanh((double)x[i])
                               : sig_ref((double)x[i]);
        double u = ulps(y[i], w);
        if (u > max_ulp)
            fail_msg("%s(%.9g) = %.9g, expected %.9g (%.2f ulp)",
                     f == F_EXP    ? "exp"
                     : f == F_TANH ? "tanh"
                                   : "sigmoid",
                     x[i], y[i], w, u);
        if (memcmp(&y[i], &y2[i], sizeof(float)) != 0 && !(isnan(y[i]) && isnan(y2[i])))
            fail_msg("in-place result differs at %.9g", x[i]);
    }
    free(y);
    free(y2);
}

static void test_vmath(void **state)
{
    /* Every 997th float bit pattern (both signs, all exponents), then specials; odd counts
     * exercise the masked tails. */
    int64_t n = 0, cap = (INT64_C(1) << 32) / 997 + 64;
    float *x = malloc(sizeof(float) * (size_t)cap);
    static const float sp[] = {0.0f,    -0.0f,    INFINITY, -INFINITY, NAN,      -NAN,
                               88.72f,  88.73f,   -87.33f,  -103.0f,   -103.97f, -104.5f,
                               1e-30f,  -1e-30f,  0.625f,   -0.625f,   0.62499f, 9.0f,
                               9.1f,    20.0f,    -20.0f,   1e30f,     -1e30f,   0x1p-149f,
                               FLT_MAX, -FLT_MAX, 0.5f,     -0.5f,     1e-5f};

    for (uint64_t b = 0; b < (UINT64_C(1) << 32); b += 997) {
        uint32_t u = (uint32_t)b;
        memcpy(&x[n++], &u, sizeof(float));
    }
    memcpy(x + n, sp, sizeof(sp));
    n += (int64_t)(sizeof(sp) / sizeof(sp[0]));
    check_fn(F_EXP, x, n, 2.0);
    check_fn(F_TANH, x, n, 2.5);
    check_fn(F_SIG, x, n, 2.5);
    check_fn(F_EXP, x, 7, 2.0);
    /* The portable path too. */
    infer__cpu_force(INFER_CPU_GENERIC);
    check_fn(F_TANH, x + n - 29, 29, 2.5);
    infer__cpu_force(-1);
    free(x);
}

static void test_softmax_rows(void **state)
{
    float x[3 * 41], y[3 * 41];

    for (int logsm = 0; logsm < 2; logsm++)
        for (int64_t n = 1; n <= 41; n++) {
            for (int i = 0; i < 3 * n; i++)
                x[i] = frnd() * 30;
            x[0] = -INFINITY;
            infer__softmax_rowsf(x, y, 3, n, logsm);
            for (int r = 0; r < 3; r++) {
                double mx = -INFINITY, sum = 0;
                for (int i = 0; i < n; i++)
                    mx = fmax(mx, x[r * n + i]);
                for (int i = 0; i < n; i++)
                    sum += exp((double)x[r * n + i] - mx);
                for (int i = 0; i < n; i++) {
                    double e = (double)x[r * n + i] - mx;
                    double w = logsm ? e - log(sum) : exp(e) / sum;
                    double g = y[r * n + i];
                    if (!(fabs(g - w) <= 1e-6 + 1e-5 * fabs(w)) && !(isinf(w) && g == w) &&
                        !(isnan(w) && isnan(g)))
                        fail_msg("%s n=%lld row %d [%d]: %.9g, expected %.9g",
                                 logsm ? "logsoftmax" : "softmax", (long long)n, r, i, g, w);
                }
            }
        }
}

/* ---- tree ensemble fast walk ---- */

#define TMAXN 4096

struct rtree {
    int64_t n;
    int64_t tree[TMAXN], node[TMAXN], feat[TMAXN], tru[TMAXN], fal[TMAXN];
    float thr[TMAXN];
    const char *mode[TMAXN];
    int64_t ttree[TMAXN], tnode[TMAXN], tid[TMAXN];
    float tw[TMAXN];
    int64_t nt;
};

/* Random subtree of tree t rooted at node id `id` (ids in preorder are not required: ids
 * are handed out shuffled by the caller's counter order). Returns the node id. */
static int64_t grow(struct rtree *r, int64_t t, int depth, int64_t *next_id, int nfeat)
{
    int64_t me = (*next_id)++, i = r->n++;

    r->tree[i] = t;
    r->node[i] = me;
    if (depth == 0 || (depth < 5 && rnd() % 4 == 0)) {
        r->mode[i] = "LEAF";
        r->feat[i] = r->tru[i] = r->fal[i] = 0;
        r->thr[i] = 0;
        r->ttree[r->nt] = t;
        r->tnode[r->nt] = me;
        r->tid[r->nt] = 0;
        r->tw[r->nt++] = frnd();
        if (rnd() % 8 == 0) { /* a leaf with two weights */
            r->ttree[r->nt] = t;
            r->tnode[r->nt] = me;
            r->tid[r->nt] = 0;
            r->tw[r->nt++] = frnd();
        }
        return me;
    }
    r->mode[i] = "BRANCH_LEQ";
    r->feat[i] = rnd() % nfeat;
    r->thr[i] = frnd();
    /* False child first sometimes, so the attribute order is not preorder. */
    if (rnd() & 1) {
        r->fal[i] = grow(r, t, depth - 1, next_id, nfeat);
        r->tru[i] = grow(r, t, depth - 1, next_id, nfeat);
    } else {
        r->tru[i] = grow(r, t, depth - 1, next_id, nfeat);
        r->fal[i] = grow(r, t, depth - 1, next_id, nfeat);
    }
    return me;
}

static double ref_walk(const struct rtree *r, int64_t t, const float *x)
{
    int64_t id = 0;
    double s = 0;

    for (;;) {
        int64_t i;
        for (i = 0; i < r->n; i++)
            if (r->tree[i] == t && r->node[i] == id)
                break;
        if (!strcmp(r->mode[i], "LEAF")) {
            for (int64_t k = 0; k < r->nt; k++)
                if (r->ttree[k] == t && r->tnode[k] == id)
                    s += r->tw[k];
            return s;
        }
        id = x[r->feat[i]] <= r->thr[i] ? r->tru[i] : r->fal[i];
    }
}

/* nfeat <= 32: rows read with a register permute; above: with gathers. */
static void tree_fast_case(int nfeat)
{
    static struct rtree r;
    const int ntrees = 37;
    const char *in[] = {"X", NULL}, *out[] = {"Y", NULL};
    const int64_t dx[2] = {OB_BATCH, nfeat}, dy[2] = {OB_BATCH, 1};
    const float base = 0.25f;
    struct pb g = {0};
    struct infer_model *m;
    float x[40 * 48], y[40];

    memset(&r, 0, sizeof(r));
    for (int t = 0; t < ntrees; t++) {
        int64_t next = 0;
        grow(&r, t, 1 + (int)(rnd() % 6), &next, nfeat);
    }
    pb_msg(&g, OB_G_NODE,
           ob_node("TreeEnsembleRegressor", "ai.onnx.ml", "trees", in, out, 13,
                   ob_attr_ints("nodes_treeids", (size_t)r.n, r.tree),
                   ob_attr_ints("nodes_nodeids", (size_t)r.n, r.node),
                   ob_attr_ints("nodes_featureids", (size_t)r.n, r.feat),
                   ob_attr_floats("nodes_values", (size_t)r.n, r.thr),
                   ob_attr_strings("nodes_modes", (size_t)r.n, r.mode),
                   ob_attr_ints("nodes_truenodeids", (size_t)r.n, r.tru),
                   ob_attr_ints("nodes_falsenodeids", (size_t)r.n, r.fal),
                   ob_attr_ints("target_treeids", (size_t)r.nt, r.ttree),
                   ob_attr_ints("target_nodeids", (size_t)r.nt, r.tnode),
                   ob_attr_ints("target_ids", (size_t)r.nt, r.tid),
                   ob_attr_floats("target_weights", (size_t)r.nt, r.tw), ob_attr_i("n_targets", 1),
                   ob_attr_floats("base_values", 1, &base)));
    pb_msg(&g, OB_G_INPUT, ob_value_info("X", 1, 2, dx));
    pb_msg(&g, OB_G_OUTPUT, ob_value_info("Y", 1, 2, dy));
    m = load_pb(ob_model(13, 3, g));
    for (int i = 0; i < 40 * nfeat; i++)
        x[i] = rnd() % 16 == 0 ? NAN : frnd();
    for (int lvl = 0; lvl < 2; lvl++) {
        static const int64_t Ns[] = {1, 2, 15, 16, 17, 40};
        if (lvl == 1)
            infer__cpu_force(INFER_CPU_AVX2); /* the portable fast walk */
        for (size_t ni = 0; ni < sizeof(Ns) / sizeof(Ns[0]); ni++) {
            int64_t N = Ns[ni];
            struct infer_session *s;
            struct infer_input inp = {"X", {INFER_DT_FLOAT, 2, {N, nfeat}, x}};
            struct infer_tensor o;
            char err[256];
            infer_session_new(m, NULL, &s);
            if (infer_session_run(s, &inp, 1, &o, 1, err, sizeof(err)) != 0)
                fail_msg("run: %s", err);
            memcpy(y, o.data, sizeof(float) * (size_t)N);
            infer_session_free(&s);
            for (int64_t j = 0; j < N; j++) {
                double want = base;
                for (int t = 0; t < ntrees; t++)
                    want += ref_walk(&r, t, x + j * nfeat);
                if (fabs(y[j] - want) > 1e-5 * (1 + fabs(want)))
                    fail_msg("C=%d level %d N=%lld row %lld: %.9g, expected %.9g", nfeat, lvl,
                             (long long)N, (long long)j, y[j], want);
            }
        }
    }
    infer__cpu_force(-1);
    infer_model_unref(&m);
}

static void test_tree_fast(void **state)
{
    tree_fast_case(7);
    tree_fast_case(20);
    tree_fast_case(32);
    tree_fast_case(45);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgemm),       cmocka_unit_test(test_sgemm_portable),
        cmocka_unit_test(test_gemm_models), cmocka_unit_test(test_gemm_relu_fusion),
        cmocka_unit_test(test_vmath),       cmocka_unit_test(test_softmax_rows),
        cmocka_unit_test(test_tree_fast),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
