/* src/infer/ops/infer_ops_math.c: Gemm, MatMul, Softmax/LogSoftmax, BatchNormalization,
 * reductions, ArgMax/ArgMin and TopK.
 *
 * Gemm and MatMul with a constant float B (weights) run the packed AVX-512 sgemm
 * (infer_sgemm.c): B is packed once at load by prepare(); alpha, bias, beta and a fused Relu
 * (node->fused_relu, see infer_model.c) are applied in its store. Everything else goes to
 * OpenBLAS (sgemm/dgemm, row-major); there a Gemm bias is written into the output first and
 * folded in with beta, and a fused Relu is a pass over the output.
 * Reductions walk the input once in memory order, accumulating into the output through
 * strides that are zero on the reduced axes. */
#include <float.h>
#include <stdint.h>

#include <cblas.h>

#include "infer/ops/infer_kern.h"
#include "infer/ops/infer_ops.h"

/* Splits dims around `axis`: outer = prod(dims[:axis]), n = dims[axis], inner = rest. */
static void split_axis(const struct infer_tensor *t, int axis, int64_t *outer, int64_t *n,
                       int64_t *inner)
{
    *outer = *inner = 1;
    for (int i = 0; i < axis; i++)
        *outer *= t->dims[i];
    *n = t->dims[axis];
    for (int i = axis + 1; i < t->rank; i++)
        *inner *= t->dims[i];
}

/* ---- Gemm ---- */

static int gemm_load(struct infer_node *n, struct infer_err *e)
{
    n->fa[0] = infer__attr_f(n, "alpha", 1.0f);
    n->fa[1] = infer__attr_f(n, "beta", 1.0f);
    n->ia[0] = infer__attr_i(n, "transA", 0);
    n->ia[1] = infer__attr_i(n, "transB", 0);
    if (infer__attr_i(n, "broadcast", 1) != 1)
        return infer__errf(e, -ENOTSUP, "broadcast=0 not supported");
    return 0;
}

static int gemm_shape(const struct infer_node *n, struct infer_tensor *const *in,
                      struct infer_tensor *const *out, struct infer_err *e)
{
    int64_t M, K, K2, N;

    INFER_NEED(n->n_in >= 2 && n->n_in <= 3 && in[0] && in[1] && n->n_out == 1,
               "needs A, B and optional C");
    INFER_NEED(in[0]->rank == 2 && in[1]->rank == 2, "A and B must be 2-D (got rank %d, %d)",
               in[0]->rank, in[1]->rank);
    INFER_NEED(in[0]->dtype == in[1]->dtype, "A and B dtypes differ");
    if (in[0]->dtype != INFER_DT_FLOAT && in[0]->dtype != INFER_DT_DOUBLE)
        return infer__errf(e, -ENOTSUP, "dtype %s not supported", infer_dtype_name(in[0]->dtype));
    M = n->ia[0] ? in[0]->dims[1] : in[0]->dims[0];
    K = n->ia[0] ? in[0]->dims[0] : in[0]->dims[1];
    K2 = n->ia[1] ? in[1]->dims[1] : in[1]->dims[0];
    N = n->ia[1] ? in[1]->dims[0] : in[1]->dims[1];
    INFER_NEED(K == K2, "inner dims differ: A gives %lld, B gives %lld", (long long)K,
               (long long)K2);
    out[0]->dtype = in[0]->dtype;
    out[0]->rank = 2;
    out[0]->dims[0] = M;
    out[0]->dims[1] = N;
    if (n->n_in == 3 && in[2] != NULL) {
        struct infer_tensor tmp;
        struct infer_tensor *pair[2] = {out[0], in[2]};
        INFER_NEED(in[2]->dtype == in[0]->dtype, "C dtype differs");
        INFER_NEED(in[2]->rank <= 2, "C must have rank <= 2");
        if (infer__broadcast(pair, 2, &tmp, e) != 0 || !infer_same_shape(&tmp, 2, out[0]->dims))
            return infer__errf(e, -EINVAL, "C does not broadcast to [%lld, %lld]", (long long)M,
                               (long long)N);
    }
    return 0;
}

/* Writes C broadcast to [M, N] into y. */
static void fill_bias(const struct infer_tensor *c, struct infer_tensor *y)
{
    int64_t M = y->dims[0], N = y->dims[1];
    size_t es = infer_dtype_size(y->dtype);
    char *o = y->data;
    const char *src = c->data;
    int64_t cn = infer_tensor_numel(c);

    if (cn == 1) {
        for (int64_t i = 0; i < M * N; i++)
            memcpy(o + i * es, src, es);
    } else if (c->rank == 1 || (c->rank == 2 && c->dims[0] == 1)) {
        for (int64_t i = 0; i < M; i++)
            memcpy(o + i * N * es, src, N * es);
    } else if (c->dims[1] == 1) { /* [M, 1] */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++)
                memcpy(o + (i * N + j) * es, src + i * es, es);
    } else {
        memcpy(o, src, M * N * es);
    }
}

/* Packs a constant float B for the AVX-512 kernel. */
/* Packs B[K, N] into n->ext, its size charged to the model first: many nodes may share
 * one small initializer and each gets its own copy. */
static int pack_b(struct infer_node *n, struct infer_model *m, const struct infer_value *v,
                  int64_t K, int64_t N, bool tb, struct infer_err *e)
{
    size_t b = infer__sgemm_pack_bytes(K, N);
    int err;

    if (b == 0)
        return 0;
    err = infer__charge(m, b, e, "the packed copy of '%s'", v->name);
    if (err != 0)
        return err;
    n->ext = infer__sgemm_pack(v->cdata, K, N, tb);
    n->ext_free = infer__sgemm_pack_free;
    n->ext_bytes = n->ext != NULL ? b : 0;
    return 0;
}

static int gemm_prepare(struct infer_node *n, struct infer_model *m, struct infer_err *e)
{
    const struct infer_value *v;
    bool tb = n->ia[1] != 0;

    if (n->n_in < 2 || n->in[1] < 0 || n->ia[0] != 0)
        return 0;
    v = &m->values[n->in[1]];
    if (v->cdata == NULL || v->dtype != INFER_DT_FLOAT || v->rank != 2)
        return 0;
    return pack_b(n, m, v, tb ? v->dims[1] : v->dims[0], tb ? v->dims[0] : v->dims[1], tb, e);
}

/* The packed B applies to this run (same constant, float, A not transposed). */
static const struct infer_sgemm_pack *packed_b(const struct infer_node *n,
                                               const struct infer_tensor *b, int64_t K, int64_t N)
{
    const struct infer_sgemm_pack *pk = n->ext;

    if (pk == NULL || b->dtype != INFER_DT_FLOAT || b->data != pk->src || pk->K != K || pk->N != N)
        return NULL;
    return pk;
}

/* Returns 1 when the packed kernel ran (and applied a fused Relu), else 0. */
static int gemm_compute(const struct infer_node *n, struct infer_tensor *const *in,
                        struct infer_tensor *const *out)
{
    const struct infer_tensor *a = in[0], *b = in[1];
    const struct infer_tensor *c = n->n_in == 3 ? in[2] : NULL;
    struct infer_tensor *y = out[0];
    int ta = (int)n->ia[0], tb = (int)n->ia[1];
    int64_t M = y->dims[0], N = y->dims[1], K = ta ? a->dims[0] : a->dims[1];
    float beta = n->fa[1];

    if (M == 0 || N == 0)
        return 0;
    const struct infer_sgemm_pack *pk = ta ? NULL : packed_b(n, b, K, N);
    if (pk != NULL) {
        int mode = INFER_BIAS_NONE;
        if (c != NULL && beta != 0.0f) {
            int64_t cn = infer_tensor_numel(c);
            if (cn == N && (c->rank == 1 || (c->rank == 2 && c->dims[0] == 1))) {
                mode = INFER_BIAS_ROW;
            } else {
                fill_bias(c, y);
                mode = INFER_BIAS_ACC;
            }
        }
        infer__sgemm_run(pk, M, a->data, K, n->fa[0], mode, c ? c->data : NULL, beta, n->fused_relu,
                         y->data, N);
        return 1;
    }
    if (c != NULL && beta != 0.0f) {
        fill_bias(c, y);
    } else {
        beta = 0.0f;
        if (K == 0)
            memset(y->data, 0, infer__bytes(y));
    }
    if (K == 0) {
        if (beta != 1.0f && beta != 0.0f) { /* y = beta * C */
            for (int64_t i = 0; i < M * N; i++) {
                if (y->dtype == INFER_DT_FLOAT)
                    ((float *)y->data)[i] *= beta;
                else
                    ((double *)y->data)[i] *= beta;
            }
        }
        return 0;
    }
    if (y->dtype == INFER_DT_FLOAT && M == 1) {
        /* One row (batch 1): a matrix-vector product; sgemm's packing would cost more than
         * the arithmetic. A's single row is contiguous whether or not it is transposed. */
        if (tb)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)N, (int)K, n->fa[0], b->data, (int)K,
                        a->data, 1, beta, y->data, 1);
        else
            cblas_sgemv(CblasRowMajor, CblasTrans, (int)K, (int)N, n->fa[0], b->data, (int)N,
                        a->data, 1, beta, y->data, 1);
    } else if (y->dtype == INFER_DT_FLOAT)
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    (int)M, (int)N, (int)K, n->fa[0], a->data, (int)a->dims[1], b->data,
                    (int)b->dims[1], beta, y->data, (int)N);
    else
        cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    (int)M, (int)N, (int)K, n->fa[0], a->data, (int)a->dims[1], b->data,
                    (int)b->dims[1], beta, y->data, (int)N);
    return 0;
}

static int gemm_run(const struct infer_node *n, struct infer_tensor *const *in,
                    struct infer_tensor *const *out, void *scratch, struct infer_err *e)
{
    struct infer_tensor *y = out[0];
    int64_t cnt = infer_tensor_numel(y);

    if (gemm_compute(n, in, out) == 0 && n->fused_relu) { /* as Relu: x > 0 ? x : 0 */
        if (y->dtype == INFER_DT_FLOAT) {
            infer__vreluf(y->data, y->data, cnt);
        } else {
            double *d = y->data;
            for (int64_t i = 0; i < cnt; i++)
                d[i] = d[i] > 0 ? d[i] : 0;
        }
    }
    return 0;
}

const struct infer_op infer__op_gemm = {.name = "Gemm",
                                        .domain = "",
                                        .load = gemm_load,
                                        .shape = gemm_shape,
                                        .run = gemm_run,
                                        .prepare = gemm_prepare};

/* ---- MatMul (numpy semantics) ---- */

static int matmul_shape(const struct infer_node *n, struct infer_tensor *const *in,
                        struct infer_tensor *const *out, struct infer_err *e)
{
    struct infer_tensor a, b, ba, bb, bo;
    struct infer_tensor *pair[2] = {&ba, &bb};
    int r = 0;

    INFER_NEED(n->n_in == 2 && in[0] && in[1] && n->n_out == 1, "needs 2 inputs");
    INFER_NEED(in[0]->dtype == in[1]->dtype, "input dtypes differ");
    if (in[0]->dtype != INFER_DT_FLOAT && in[0]->dtype != INFER_DT_DOUBLE)
        return infer__errf(e, -ENOTSUP, "dtype %s not supported", infer_dtype_name(in[0]->dtype));
    INFER_NEED(in[0]->rank >= 1 && in[1]->rank >= 1, "inputs must have rank >= 1");
    a = *in[0];
    b = *in[1];
    if (a.rank == 1) { /* [K] -> [1, K] */
        a.rank = 2;
        a.dims[1] = a.dims[0];
        a.dims[0] = 1;
    }
    if (b.rank == 1) { /* [K] -> [K, 1] */
        b.rank = 2;
        b.dims[1] = 1;
    }
    INFER_NEED(a.dims[a.rank - 1] == b.dims[b.rank - 2], "inner dims differ (%lld vs %lld)",
               (long long)a.dims[a.rank - 1], (long long)b.dims[b.rank - 2]);
    ba.rank = a.rank - 2;
    memcpy(ba.dims, a.dims, sizeof(a.dims));
    bb.rank = b.rank - 2;
    memcpy(bb.dims, b.dims, sizeof(b.dims));
    if (infer__broadcast(pair, 2, &bo, e) != 0)
        return infer__errf(e, -EINVAL, "batch dims do not broadcast");
    for (int i = 0; i < bo.rank; i++)
        out[0]->dims[r++] = bo.dims[i];
    if (in[0]->rank > 1)
        out[0]->dims[r++] = a.dims[a.rank - 2];
    if (in[1]->rank > 1)
        out[0]->dims[r++] = b.dims[b.rank - 1];
    INFER_NEED(r <= INFER_MAX_RANK, "rank too large");
    out[0]->rank = r;
    out[0]->dtype = in[0]->dtype;
    return 0;
}

static void gemm_nn(int dt, int64_t M, int64_t N, int64_t K, const void *a, const void *b, void *c)
{
    if (M == 0 || N == 0)
        return;
    if (K == 0) {
        memset(c, 0, (size_t)(M * N) * infer_dtype_size(dt));
        return;
    }
    if (dt == INFER_DT_FLOAT && M == 1)
        cblas_sgemv(CblasRowMajor, CblasTrans, (int)K, (int)N, 1.0f, b, (int)N, a, 1, 0.0f, c, 1);
    else if (dt == INFER_DT_FLOAT)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1.0f, a,
                    (int)K, b, (int)N, 0.0f, c, (int)N);
    else
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1.0, a,
                    (int)K, b, (int)N, 0.0, c, (int)N);
}

static int matmul_run(const struct infer_node *n, struct infer_tensor *const *in,
                      struct infer_tensor *const *out, void *scratch, struct infer_err *e)
{
    const struct infer_tensor *a = in[0], *b = in[1];
    struct infer_tensor *y = out[0];
    size_t es = infer_dtype_size(y->dtype);
    int64_t K = a->dims[a->rank - 1];
    int64_t M = a->rank > 1 ? a->dims[a->rank - 2] : 1;
    int64_t N = b->rank > 1 ? b->dims[b->rank - 1] : 1;
    int abr = a->rank > 2 ? a->rank - 2 : 0, bbr = b->rank > 2 ? b->rank - 2 : 0;
    int obr = abr > bbr ? abr : bbr;
    int64_t batches = 1, odims[INFER_MAX_RANK], idx[INFER_MAX_RANK] = {0};

    /* B without batch dims: every row of A (all batches) is one big matrix. */
    if (bbr == 0) {
        int64_t rows = infer_tensor_numel(a) / (K ? K : 1);
        if (K == 0)
            rows = a->rank > 1 ? infer_tensor_numel(y) / (N ? N : 1) : 1;
        const struct infer_sgemm_pack *pk = b->rank == 2 ? packed_b(n, b, K, N) : NULL;
        if (pk != NULL) {
            if (rows > 0)
                infer__sgemm_run(pk, rows, a->data, K, 1.0f, INFER_BIAS_NONE, NULL, 0.0f, false,
                                 y->data, N);
            return 0;
        }
        gemm_nn(y->dtype, rows, N, K, a->data, b->data, y->data);
        return 0;
    }
    for (int i = 0; i < obr; i++) {
        int ka = i - (obr - abr), kb = i - (obr - bbr);
        int64_t da = ka >= 0 ? a->dims[ka] : 1, db = kb >= 0 ? b->dims[kb] : 1;
        odims[i] = da > db ? da : db;
        batches *= odims[i];
    }
    for (int64_t bi = 0; bi < batches; bi++) {
        int64_t ao = 0, bo = 0, as = 1, bs = 1;
        for (int i = obr - 1; i >= 0; i--) {
            int ka = i - (obr - abr), kb = i - (obr - bbr);
            int64_t da = ka >= 0 ? a->dims[ka] : 1, db = kb >= 0 ? b->dims[kb] : 1;
            if (da > 1)
                ao += idx[i] * as;
            if (db > 1)
                bo += idx[i] * bs;
            as *= da;
            bs *= db;
        }
        gemm_nn(y->dtype, M, N, K, (const char *)a->data + ao * M * K * es,
                (const char *)b->data + bo * K * N * es, (char *)y->data + bi * M * N * es);
        for (int i = obr - 1; i >= 0; i--) {
            if (++idx[i] < odims[i])
                break;
            idx[i] = 0;
        }
    }
    return 0;
}

static int matmul_prepare(struct infer_node *n, struct infer_model *m, struct infer_err *e)
{
    const struct infer_value *v;

    if (n->n_in != 2 || n->in[1] < 0)
        return 0;
    v = &m->values[n->in[1]];
    if (v->cdata == NULL || v->dtype != INFER_DT_FLOAT || v->rank != 2)
        return 0;
    return pack_b(n, m, v, v->dims[0], v->dims[1], false, e);
}

const struct infer_op infer__op_matmul = {.name = "MatMul",
                                          .domain = "",
                                          .shape = matmul_shape,
                                          .run = matmul_run,
                                          .prepare = matmul_prepare};

/* ---- Softmax / LogSoftmax ---- */

static int softmax_shape(const struct infer_node *n, struct infer_tensor *const *in,
                         struct infer_tensor *const *out, struct infer_err *e)
{
    int axis;
    int64_t def = n->opset >= 13 ? -1 : 1;

    INFER_NEED(n->n_in == 1 && in[0] && n->n_out == 1, "needs 1 input");
    if (!infer_is_float(in[0]->dtype))
        return infer__errf(e, -ENOTSUP, "dtype %s not supported", infer_dtype_name(in[0]->dtype));
    INFER_NEED(in[0]->rank >= 1, "input must have rank >= 1");
    if (infer__axis(infer__attr_i(n, "axis", def), in[0]->rank, &axis, e) != 0)
        return -EINVAL;
    infer_like(out[0], in[0]);
    return 0;
}

#define SOFTMAX(T, EXP, LOG)                                                                       \
    do {                                                                                           \
        const T *x = in[0]->data;                                                                  \
        T *y = out[0]->data;                                                                       \
        for (int64_t o = 0; o < outer; o++) {                                                      \
            for (int64_t j = 0; j < inner; j++) {                                                  \
                const T *px = x + o * cnt * inner + j;                                             \
                T *py = y + o * cnt * inner + j;                                                   \
                T mx = px[0], sum = 0;                                                             \
                for (int64_t i = 1; i < cnt; i++)                                                  \
                    mx = px[i * inner] > mx ? px[i * inner] : mx;                                  \
                for (int64_t i = 0; i < cnt; i++) {                                                \
                    T v = EXP(px[i * inner] - mx);                                                 \
                    py[i * inner] = v;                                                             \
                    sum += v;                                                                      \
                }                                                                                  \
                if (logsm) {                                                                       \
                    T ls = LOG(sum);                                                               \
                    for (int64_t i = 0; i < cnt; i++)                                              \
                        py[i * inner] = px[i * inner] - mx - ls;                                   \
                } else {                                                                           \
                    T inv = (T)1 / sum;                                                            \
                    for (int64_t i = 0; i < cnt; i++)                                              \
                        py[i * inner] *= inv;                                                      \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    } while (0)

static int softmax_run(const struct infer_node *n, struct infer_tensor *const *in,
                       struct infer_tensor *const *out, void *scratch, struct infer_err *e)
{
    int axis;
    int64_t outer, cnt, inner;
    bool logsm = n->op_type[0] == 'L';

    infer__axis(infer__attr_i(n, "axis", n->opset >= 13 ? -1 : 1), in[0]->rank, &axis, NULL);
    split_axis(in[0], axis, &outer, &cnt, &inner);
    if (n->opset < 13) { /* coerced to 2-D: [prod(dims[:axis]), prod(dims[axis:])] */
        cnt *= inner;
        inner = 1;
    }
    if (cnt == 0)
        return 0;
    if (in[0]->dtype == INFER_DT_FLOAT && inner == 1)
        infer__softmax_rowsf(in[0]->data, out[0]->data, outer, cnt, logsm);
    else if (in[0]->dtype == INFER_DT_FLOAT)
        SOFTMAX(float, expf, logf);
    else
        SOFTMAX(double, exp, log);
    return 0;
}

const struct infer_op infer__op_softmax = {.name = "Softmax",
                                           .domain = "",
                                           .shape = softmax_shape,
                                           .run = softmax_run};
const struct infer_op infer__op_logsoftmax = {.name = "LogSoftmax",
                                              .domain = "",
                                              .shape = softmax_shape,
                                              .run = softmax_run};

/* ---- BatchNormalization ---- */

static int bn_load(struct infer_node *n, struct infer_err *e)
{
    n->fa[0] = infer__attr_f(n, "epsilon", 1e-5f);
    n->fa[1] = infer__attr_f(n, "momentum", 0.9f);
    n->ia[0] = infer__attr_i(n, "training_mode", 0);
    if (infer__attr_i(n, "spatial", 1) != 1)
        return infer__errf(e, -ENOTSUP, "spatial=0 not supported");
    if (n->n_out > 1 && !(n->opset >= 14 && n->ia[0]))
        return infer__errf(e, -ENOTSUP, "training outputs before opset 14 not supported");
    return 0;
}

static int bn_shape(const struct infer_node *n, struct infer_tensor *const *in,
                    struct infer_tensor *const *out, struct infer_err *e)
{
    int64_t C;

    INFER_NEED(n->n_in == 5 && n->n_out >= 1 && n->n_out <= 3, "needs X, scale, B, mean, var");
    for (int i = 0; i < 5; i++)
        INFER_NEED(in[i] != NULL, "input %d missing", i);
    if (!infer_is_float(in[0]->dtype))
        return infer__errf(e, -ENOTSUP, "dtype %s not supported", infer_dtype_name(in[0]->dtype));
    INFER_NEED(in[0]->rank >= 2, "X must have rank >= 2");
    C = in[0]->dims[1];
    for (int i = 1; i < 5; i++) {
        INFER_NEED(in[i]->dtype == in[0]->dtype, "input %d dtype differs from X", i);
        INFER_NEED(in[i]->rank == 1 && in[i]->dims[0] == C, "input %d must be [C=%lld]", i,
                   (long long)C);
    }
    infer_like(out[0], in[0]);
    for (int j = 1; j < n->n_out; j++)
        if (out[j] != NULL)
            infer_like(out[j], in[3]);
    return 0;
}

#define BN(T, SQRT)                                                                                \
    do {                                                                                           \
        const T *x = in[0]->data, *sc = in[1]->data, *bi = in[2]->data;                            \
        const T *mean = in[3]->data, *var = in[4]->data;                                           \
        T *y = out[0]->data;                                                                       \
        T *bm = NULL, *bv = NULL;                                                                  \
        if (train) {                                                                               \
            bm = scratch;                                                                          \
            bv = bm + C;                                                                           \
            for (int64_t c = 0; c < C; c++) {                                                      \
                double s = 0, s2 = 0;                                                              \
                for (int64_t b = 0; b < N; b++)                                                    \
                    for (int64_t i = 0; i < inner; i++)                                            \
                        s += x[(b * C + c) * inner + i];                                           \
                double mu = cntc ? s / (double)cntc : 0;                                           \
                for (int64_t b = 0; b < N; b++)                                                    \
                    for (int64_t i = 0; i < inner; i++) {                                          \
                        double d = x[(b * C + c) * inner + i] - mu;                                \
                        s2 += d * d;                                                               \
                    }                                                                              \
                bm[c] = (T)mu;                                                                     \
                bv[c] = (T)(cntc ? s2 / (double)cntc : 0);                                         \
            }                                                                                      \
            mean = bm;                                                                             \
            var = bv;                                                                              \
        }                                                                                          \
        for (int64_t b = 0; b < N; b++)                                                            \
            for (int64_t c = 0; c < C; c++) {                                                      \
                T k = sc[c] / SQRT(var[c] + (T)n->fa[0]);                                          \
                T d = bi[c] - mean[c] * k;                                                         \
                const T *px = x + (b * C + c) * inner;                                             \
                T *py = y + (b * C + c) * inner;                                                   \
                for (int64_t i = 0; i < inner; i++)                                                \
                    py[i] = px[i] * k + d;                                                         \
            }                                                                                      \
        if (train) {                                                                               \
            const T *im = in[3]->data, *iv = in[4]->data;                                          \
            T mo = (T)n->fa[1];                                                                    \
            if (n->n_out > 1 && out[1] != NULL)                                                    \
                for (int64_t c = 0; c < C; c++)                                                    \
                    ((T *)out[1]->data)[c] = im[c] * mo + bm[c] * (1 - mo);                        \
            if (n->n_out > 2 && out[2] != NULL)                                                    \
                for (int64_t c = 0; c < C; c++)                                                    \
                    ((T *)out[2]->data)[c] = iv[c] * mo + bv[c] * (1 - mo);                        \
        }                                                                                          \
    } while (0)

static size_t bn_scratch(const struct infer_node *n, struct infer_tensor *const *in,
                         struct infer_tensor *const *out)
{
    return (size_t)in[0]->dims[1] * 2 * infer_dtype_size(in[0]->dtype);
}

static int bn_run(const struct infer_node *n, struct infer_tensor *const *in,
                  struct infer_tensor *const *out, void *scratch, struct infer_err *e)
{
    int64_t N = in[0]->dims[0], C = in[0]->dims[1], inner = 1, cntc;
    bool train = n->opset >= 14 && n->ia[0];

    for (int i = 2; i < in[0]->rank; i++)
        inner *= in[0]->dims[i];
    cntc = N * inner;
    if (in[0]->dtype == INFER_DT_FLOAT)
        BN(float, sqrtf);
    else
        BN(double, sqrt);
    return 0;
}

const struct infer_op infer__op_batchnorm = {.name = "BatchNormalization",
                                             .domain = "",
                                             .load = bn_load,
                                             .shape = bn_shape,
                                             .scratch = bn_scratch,
                                             .run = bn_run};

/* ---- reductions ---- */

enum rop { R_SUM, R_MEAN, R_MAX, R_MIN, R_SUMSQ };

static int red_load(struct infer_node *n, struct infer_err *e)
{
    const char *t = n->op_type;
    const struct infer_attr *a = infer__attr(n, "axes");

    n->ia[0] = !strcmp(t, "ReduceSum")  ? R_SUM
             : !strcmp(t, "ReduceMean") ? R_MEAN
             : !strcmp(t, "ReduceMax")  ? R_MAX
             : !strcmp(t, "ReduceMin")  ? R_MIN
                                        : R_SUMSQ;
    n->ia[1] = infer__attr_i(n, "keepdims", 1);
    n->ia[2] = infer__attr_i(n, "noop_with_empty_axes", 0);
    /* ReduceSum takes axes as an input from opset 13; the others until opset 18. */
    n->ia[3] = n->ia[0] == R_SUM && n->opset >= 13;
    if (a != NULL) {
        if (n->ia[3] || a->type != INFER_AT_INTS || a->n > INFER_MAX_RANK)
            return infer__errf(e, -EINVAL, "bad 'axes' attribute");
        n->niv = a->n;
        n->iv = mc_xmalloc(sizeof(int64_t) * (a->n + 1));
        memcpy(n->iv, a->ints, sizeof(int64_t) * a->n);
    }
    return 0;
}

/* Reduced-axis mask from the attribute or the axes input. */
static int red_axes(const struct infer_node *n, struct infer_tensor *const *in, bool *red,
                    bool *noop, struct infer_err *e)
{
    int64_t ax[INFER_MAX_RANK];
    int na = 0, rank = in[0]->rank;

    *noop = false;
    if (n->ia[3] && n->n_in > 1 && in[1] != NULL) {
        if (in[1]->data == NULL)
            return INFER_UNKNOWN;
        na = infer__read_ints(in[1], ax, INFER_MAX_RANK, e);
        if (na < 0)
            return na;
    } else if (!n->ia[3]) {
        na = (int)n->niv;
        if (na > 0)
            memcpy(ax, n->iv, sizeof(int64_t) * na);
    }
    for (int i = 0; i < rank; i++)
        red[i] = na == 0;
    if (na == 0 && n->ia[2])
        *noop = true;
    for (int i = 0; i < na; i++) {
        int a;
        if (infer__axis(ax[i], rank, &a, e) != 0)
            return -EINVAL;
        red[a] = true;
    }
    return 0;
}

static int red_shape(const struct infer_node *n, struct infer_tensor *const *in,
                     struct infer_tensor *const *out, struct infer_err *e)
{
    bool red[INFER_MAX_RANK], noop;
    int err, r = 0;

    INFER_NEED(n->n_in >= 1 && in[0] && n->n_out == 1, "needs 1 input");
    if (!infer_is_float(in[0]->dtype) && in[0]->dtype != INFER_DT_INT32 &&
        in[0]->dtype != INFER_DT_INT64)
        return infer__errf(e, -ENOTSUP, "dtype %s not supported", infer_dtype_name(in[0]->dtype));
    err = red_axes(n, in, red, &noop, e);
    if (err != 0)
        return err;
    out[0]->dtype = in[0]->dtype;
    if (noop) {
        infer_like(out[0], in[0]);
        return 0;
    }
    for (int i = 0; i < in[0]->rank; i++) {
        if (!red[i])
            out[0]->dims[r++] = in[0]->dims[i];
        else if (n->ia[1])
            out[0]->dims[r++] = 1;
        if (red[i] && in[0]->dims[i] == 0 && (n->ia[0] == R_MAX || n->ia[0] == R_MIN))
            return infer__errf(e, -EINVAL, "max/min over an empty axis");
    }
    out[0]->rank = r;
    return 0;
}

#define RED(T, INIT_MAX, INIT_MIN)                                                                 \
    do {                                                                                           \
        const T *x = in[0]->data;                                                                  \
        T *y = out[0]->data;                                                                       \
        T init = op == R_MAX ? INIT_MAX : op == R_MIN ? INIT_MIN : 0;                              \
        for (int64_t i = 0; i < ny; i++)                                                           \
            y[i] = init;                                                                           \
        int64_t idx[INFER_MAX_RANK] = {0}, off = 0;                                                \
        for (int64_t i = 0; i < nx; i++) {                                                         \
            T v = x[i];                                                                            \
            switch (op) {                                                                          \
            case R_SUM:                                                                            \
            case R_MEAN: y[off] += v; break;                                                       \
            case R_SUMSQ: y[off] += v * v; break;                                                  \
            case R_MAX: y[off] = v > y[off] ? v : y[off]; break;                                   \
            case R_MIN: y[off] = v < y[off] ? v : y[off]; break;                                   \
            }                                                                                      \
            for (int d = rank - 1; d >= 0; d--) {                                                  \
                off += ost[d];                                                                     \
                if (++idx[d] < in[0]->dims[d])                                                     \
                    break;                                                                         \
                off -= ost[d] * in[0]->dims[d];                                                    \
                idx[d] = 0;                                                                        \
            }                                                                                      \
        }                                                                                          \
        if (op == R_MEAN && cnt > 0)                                                               \
            for (int64_t i = 0; i < ny; i++)                                                       \
                y[i] = (T)(y[i] / (T)cnt);                                                         \
    } while (0)

static int red_run(const struct infer_node *n, struct infer_tensor *const *in,
                   struct infer_tensor *const *out, void *scratch, struct infer_err *e)
{
    bool red[INFER_MAX_RANK], noop;
    int rank = in[0]->rank, err;
    int64_t ost[INFER_MAX_RANK], s = 1, cnt = 1;
    int64_t nx = infer_tensor_numel(in[0]), ny = infer_tensor_numel(out[0]);
    enum rop op = (enum rop)n->ia[0];

    err = red_axes(n, in, red, &noop, e);
    if (err != 0)
        return err < 0 ? err : infer__errf(e, -EINVAL, "axes unknown");
    if (noop)
        return infer__copy_run(n, in, out, scratch, e);
    for (int d = rank - 1; d >= 0; d--) {
        ost[d] = red[d] ? 0 : s;
        if (red[d])
            cnt *= in[0]->dims[d];
        else
            s *= in[0]->dims[d];
    }
    if (nx == 0) {
        memset(out[0]->data, 0, infer__bytes(out[0]));
        return 0;
    }
    switch (in[0]->dtype) {
    case INFER_DT_FLOAT: RED(float, -INFINITY, INFINITY); break;
    case INFER_DT_DOUBLE: RED(double, -INFINITY, INFINITY); break;
    case INFER_DT_INT32: RED(int32_t, INT32_MIN, INT32_MAX); break;
    case INFER_DT_INT64: RED(int64_t, INT64_MIN, INT64_MAX); break;
    default: return infer__errf(e, -ENOTSUP, "dtype not supported");
    }
    return 0;
}

#define RED_OP(sym, nm, vmask)                                                                     \
    const struct infer_op infer__op_##sym = {.name = nm,                                           \
                                             .domain = "",                                         \
                                             .value_inputs = vmask,                                \
                                             .load = red_load,                                     \
                                             .shape = red_shape,                                   \
                                             .run = red_run}
RED_OP(reducesum, "ReduceSum", 2);
RED_OP(reducemean, "ReduceMean", 0);
RED_OP(reducemax, "ReduceMax", 0);
RED_OP(reducemin, "ReduceMin", 0);
RED_OP(reducesumsquare, "ReduceSumSquare", 0);

/* ---- ArgMax / ArgMin ---- */

static int arg_shape(const struct infer_node *n, struct infer_tensor *const *in,
                     struct infer_tensor *const *out, struct infer_err *e)
{
    int axis, r = 0;

    INFER_NEED(n->n_in == 1 && in[0] && n->n_out == 1, "needs 1 input");
    if (!infer_is_float(in[0]->dtype) && in[0]->dtype != INFER_DT_INT32 &&
        in[0]->dtype != INFER_DT_INT64)
        return infer__errf(e, -ENOTSUP, "dtype %s not supported", infer_dtype_name(in[0]->dtype));
    INFER_NEED(in[0]->rank >= 1, "input must have rank >= 1");
    if (infer__axis(infer__attr_i(n, "axis", 0), in[0]->rank, &axis, e) != 0)
        return -EINVAL;
    INFER_NEED(in[0]->dims[axis] > 0, "empty axis");
    for (int i = 0; i < in[0]->rank; i++) {
        if (i != axis)
            out[0]->dims[r++] = in[0]->dims[i];
        else if (infer__attr_i(n, "keepdims", 1))
            out[0]->dims[r++] = 1;
    }
    out[0]->rank = r;
    out[0]->dtype = INFER_DT_INT64;
    return 0;
}

static int arg_run(const struct infer_node *n, struct infer_tensor *const *in,
                   struct infer_tensor *const *out, void *scratch, struct infer_err *e)
{
    int axis;
    int64_t outer, cnt, inner, *y = out[0]->data;
    bool last = infer__attr_i(n, "select_last_index", 0) != 0, mx = !strcmp(n->op_type, "ArgMax");

    infer__axis(infer__attr_i(n, "axis", 0), in[0]->rank, &axis, NULL);
    split_axis(in[0], axis, &outer, &cnt, &inner);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++) {
            int64_t base = o * cnt * inner + j, best = 0;
            double bv = infer__get_f64(in[0], base);
            for (int64_t i = 1; i < cnt; i++) {
                double v = infer__get_f64(in[0], base + i * inner);
                bool better = mx ? (last ? v >= bv : v > bv) : (last ? v <= bv : v < bv);
                if (better) {
                    bv = v;
                    best = i;
                }
            }
            y[o * inner + j] = best;
        }
    return 0;
}

const struct infer_op infer__op_argmax = {.name = "ArgMax",
                                          .domain = "",
                                          .shape = arg_shape,
                                          .run = arg_run};
const struct infer_op infer__op_argmin = {.name = "ArgMin",
                                          .domain = "",
                                          .shape = arg_shape,
                                          .run = arg_run};

/* ---- TopK ---- */

struct kv {
    double v;
    int64_t i;
};

static int cmp_large(const void *a, const void *b)
{
    const struct kv *x = a, *y = b;

    if (x->v != y->v)
        return x->v > y->v ? -1 : 1;
    return x->i < y->i ? -1 : 1;
}

static int cmp_small(const void *a, const void *b)
{
    const struct kv *x = a, *y = b;

    if (x->v != y->v)
        return x->v < y->v ? -1 : 1;
    return x->i < y->i ? -1 : 1;
}

static int topk_k(const struct infer_node *n, struct infer_tensor *const *in, int64_t *k,
                  struct infer_err *e)
{
    if (n->opset < 10) {
        *k = infer__attr_i(n, "k", -1);
        return 0;
    }
    INFER_NEED(n->n_in == 2 && in[1] != NULL, "needs K");
    if (in[1]->data == NULL)
        return INFER_UNKNOWN;
    INFER_NEED(in[1]->dtype == INFER_DT_INT64 && infer_tensor_numel(in[1]) == 1,
               "K must be one int64");
    *k = *(const int64_t *)in[1]->data;
    return 0;
}

static int topk_shape(const struct infer_node *n, struct infer_tensor *const *in,
                      struct infer_tensor *const *out, struct infer_err *e)
{
    int axis, err;
    int64_t k = 0;

    INFER_NEED(n->n_in >= 1 && in[0] && n->n_out == 2, "needs X (and K), 2 outputs");
    if (!infer_is_float(in[0]->dtype) && in[0]->dtype != INFER_DT_INT32 &&
        in[0]->dtype != INFER_DT_INT64)
        return infer__errf(e, -ENOTSUP, "dtype %s not supported", infer_dtype_name(in[0]->dtype));
    err = topk_k(n, in, &k, e);
    if (err != 0)
        return err;
    if (infer__axis(infer__attr_i(n, "axis", -1), in[0]->rank, &axis, e) != 0)
        return -EINVAL;
    INFER_NEED(k >= 0 && k <= in[0]->dims[axis], "K=%lld out of range for axis of %lld",
               (long long)k, (long long)in[0]->dims[axis]);
    for (int j = 0; j < 2; j++) {
        if (out[j] == NULL)
            continue;
        infer_like(out[j], in[0]);
        out[j]->dims[axis] = k;
    }
    if (out[1] != NULL)
        out[1]->dtype = INFER_DT_INT64;
    return 0;
}

static size_t topk_scratch(const struct infer_node *n, struct infer_tensor *const *in,
                           struct infer_tensor *const *out)
{
    int axis;

    infer__axis(infer__attr_i(n, "axis", -1), in[0]->rank, &axis, NULL);
    return sizeof(struct kv) * (size_t)in[0]->dims[axis];
}

static int topk_run(const struct infer_node *n, struct infer_tensor *const *in,
                    struct infer_tensor *const *out, void *scratch, struct infer_err *e)
{
    int axis;
    int64_t outer, cnt, inner, k;
    bool largest = infer__attr_i(n, "largest", 1) != 0;
    struct kv *kv = scratch;
    size_t es = infer_dtype_size(in[0]->dtype);

    infer__axis(infer__attr_i(n, "axis", -1), in[0]->rank, &axis, NULL);
    split_axis(in[0], axis, &outer, &cnt, &inner);
    k = (out[0] ? out[0] : out[1])->dims[axis];
    /* The output order is always sorted (sorted=0 leaves it unspecified, so sorted is fine). */
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++) {
            int64_t base = o * cnt * inner + j, obase = o * k * inner + j;
            for (int64_t i = 0; i < cnt; i++) {
                kv[i].v = infer__get_f64(in[0], base + i * inner);
                kv[i].i = i;
            }
            qsort(kv, (size_t)cnt, sizeof(*kv), largest ? cmp_large : cmp_small);
            for (int64_t i = 0; i < k; i++) {
                if (out[0] != NULL)
                    memcpy((char *)out[0]->data + (obase + i * inner) * es,
                           (const char *)in[0]->data + (base + kv[i].i * inner) * es, es);
                if (out[1] != NULL)
                    ((int64_t *)out[1]->data)[obase + i * inner] = kv[i].i;
            }
        }
    return 0;
}

const struct infer_op infer__op_topk = {.name = "TopK",
                                        .domain = "",
                                        .value_inputs = 2,
                                        .shape = topk_shape,
                                        .scratch = topk_scratch,
                                        .run = topk_run};
