/* src/infer/ops/infer_sgemm.c: CPU feature levels and the packed-weight sgemm
 * (see infer_kern.h).
 *
 * Loop order: for each 32-column panel of B (K*128 bytes: in L1 for K <= 256, L2 above),
 * for each block of 8 rows of A: the micro-kernel runs the whole K with the 8x32 block of
 * C in 16 zmm accumulators (two FMAs per A broadcast, 16 independent chains: enough to
 * cover FMA latency on two pipes), then applies alpha, bias, beta*C and Relu and stores
 * with masks (so N need not be a multiple of 32 and C is never written past N). Row tails
 * use the same kernel instantiated for 1..7 rows, and a last panel of at most 16 columns a
 * half-width one; a single row (batch 1) splits K four ways so its two chains become eight.
 * N <= INFER_SGEMM_DOT_N (a final logit) skips the panels: dot products of A's rows with a
 * transposed copy of B, four rows at a time. */
#include <stdlib.h>
#include <string.h>

#include "infer/infer_int.h"
#include "infer/ops/infer_kern.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define INFER_X86 1
#include <immintrin.h>
#else
#define INFER_X86 0
#endif

static int cpu_level = -1;
static int cpu_cap = -1;

int infer__cpu_level(void)
{
    int l = __atomic_load_n(&cpu_level, __ATOMIC_RELAXED);

    if (l < 0) {
        l = INFER_CPU_GENERIC;
#if INFER_X86
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            l = INFER_CPU_AVX2;
        if (l == INFER_CPU_AVX2 && __builtin_cpu_supports("avx512f"))
            l = INFER_CPU_AVX512;
#endif
        __atomic_store_n(&cpu_level, l, __ATOMIC_RELAXED);
    }
    int cap = __atomic_load_n(&cpu_cap, __ATOMIC_RELAXED);
    return cap >= 0 && cap < l ? cap : l;
}

void infer__cpu_force(int level)
{
    __atomic_store_n(&cpu_cap, level, __ATOMIC_RELAXED);
}

#define NR INFER_SGEMM_NR
#define MR 8

void infer__sgemm_pack_free(void *v)
{
    struct infer_sgemm_pack *p = v;

    if (p == NULL)
        return;
    free(p->p);
    free(p->bt);
    free(p);
}

size_t infer__sgemm_pack_bytes(int64_t K, int64_t N)
{
    size_t b;

    /* Shapes where one panel of B stays in L1/L2 and the packed copy is modest; the rest
     * goes to OpenBLAS. */
    if (infer__cpu_level() < INFER_CPU_AVX512 || K < 1 || N < 1 || K > 4096 || N > 16384 ||
        K * N > (INT64_C(1) << 24))
        return 0;
    b = sizeof(float) * (size_t)((N + NR - 1) / NR * K * NR);
    if (N <= INFER_SGEMM_DOT_N)
        b += sizeof(float) * (size_t)(N * ((K + 15) / 16 * 16));
    return b;
}

struct infer_sgemm_pack *infer__sgemm_pack(const float *b, int64_t K, int64_t N, bool transb)
{
    struct infer_sgemm_pack *p;

    if (infer__sgemm_pack_bytes(K, N) == 0)
        return NULL;
    p = mc_xcalloc(1, sizeof(*p));
    p->K = K;
    p->N = N;
    p->np = (N + NR - 1) / NR;
    p->src = b;
    p->p = infer__aligned_alloc(sizeof(float) * (size_t)(p->np * K * NR));
    if (p->p == NULL) {
        infer__sgemm_pack_free(p);
        return NULL;
    }
    p->kp = (K + 15) / 16 * 16;
    if (N <= INFER_SGEMM_DOT_N) {
        p->bt = infer__aligned_alloc(sizeof(float) * (size_t)(N * p->kp));
        if (p->bt == NULL) {
            infer__sgemm_pack_free(p);
            return NULL;
        }
        for (int64_t n = 0; n < N; n++)
            for (int64_t k = 0; k < p->kp; k++)
                p->bt[n * p->kp + k] = k >= K ? 0.0f : transb ? b[n * K + k] : b[k * N + n];
    }
    for (int64_t pi = 0; pi < p->np; pi++) {
        float *dst = p->p + pi * K * NR;
        for (int64_t k = 0; k < K; k++)
            for (int64_t j = 0; j < NR; j++) {
                int64_t n = pi * NR + j;
                dst[k * NR + j] = n >= N ? 0.0f : transb ? b[n * K + k] : b[k * N + n];
            }
    }
    return p;
}

#if INFER_X86

#define T512 __attribute__((target("avx512f,fma")))
#define INLINE512 static inline __attribute__((always_inline)) T512

struct kargs {
    int64_t K, lda, ldc;
    const float *a;    /* first row of the block */
    const float *p;    /* panel */
    float *c;          /* C at (first row, first column of the panel) */
    const float *bias; /* at the panel's first column */
    __mmask16 m0, m1;
    int bias_mode;
    bool relu;
    float alpha, beta;
};

INLINE512 void store_row(const struct kargs *g, int i, __m512 v0, __m512 v1)
{
    float *c = g->c + i * g->ldc;
    const __m512 al = _mm512_set1_ps(g->alpha), be = _mm512_set1_ps(g->beta);

    v0 = _mm512_mul_ps(v0, al);
    v1 = _mm512_mul_ps(v1, al);
    if (g->bias_mode == INFER_BIAS_ROW) {
        v0 = _mm512_fmadd_ps(be, _mm512_maskz_loadu_ps(g->m0, g->bias), v0);
        v1 = _mm512_fmadd_ps(be, _mm512_maskz_loadu_ps(g->m1, g->bias + 16), v1);
    } else if (g->bias_mode == INFER_BIAS_ACC) {
        v0 = _mm512_fmadd_ps(be, _mm512_maskz_loadu_ps(g->m0, c), v0);
        v1 = _mm512_fmadd_ps(be, _mm512_maskz_loadu_ps(g->m1, c + 16), v1);
    }
    if (g->relu) {
        v0 = _mm512_max_ps(v0, _mm512_setzero_ps());
        v1 = _mm512_max_ps(v1, _mm512_setzero_ps());
    }
    _mm512_mask_storeu_ps(c, g->m0, v0);
    _mm512_mask_storeu_ps(c + 16, g->m1, v1);
}

/* rows x 32 block over the whole K (rows x 16 when `half`: the last panel with at most 16
 * columns left); `rows` and `half` are compile-time constants in each caller. */
INLINE512 void kern_body(const struct kargs *g, const int rows, const bool half)
{
    __m512 c0[MR], c1[MR];
    const float *a = g->a, *p = g->p;
    const int64_t lda = g->lda, K = g->K;

#pragma GCC unroll 8
    for (int i = 0; i < rows; i++) {
        c0[i] = _mm512_setzero_ps();
        c1[i] = _mm512_setzero_ps();
    }
#pragma GCC unroll 2
    for (int64_t k = 0; k < K; k++) {
        const __m512 b0 = _mm512_load_ps(p + k * NR);
        const __m512 b1 = half ? b0 : _mm512_load_ps(p + k * NR + 16);
#pragma GCC unroll 8
        for (int i = 0; i < rows; i++) {
            const __m512 av = _mm512_set1_ps(a[i * lda + k]);
            c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
            if (!half)
                c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < rows; i++)
        store_row(g, i, c0[i], c1[i]);
}

/* One row: K split four ways so eight accumulator chains hide the FMA latency. */
static T512 void kern_row(const struct kargs *g)
{
    __m512 s[8];
    const float *a = g->a, *p = g->p;
    const int64_t K = g->K;
    int64_t k = 0;

    for (int i = 0; i < 8; i++)
        s[i] = _mm512_setzero_ps();
    for (; k + 4 <= K; k += 4) {
#pragma GCC unroll 4
        for (int u = 0; u < 4; u++) {
            const __m512 av = _mm512_set1_ps(a[k + u]);
            s[2 * u] = _mm512_fmadd_ps(av, _mm512_load_ps(p + (k + u) * NR), s[2 * u]);
            s[2 * u + 1] = _mm512_fmadd_ps(av, _mm512_load_ps(p + (k + u) * NR + 16), s[2 * u + 1]);
        }
    }
    for (; k < K; k++) {
        const __m512 av = _mm512_set1_ps(a[k]);
        s[0] = _mm512_fmadd_ps(av, _mm512_load_ps(p + k * NR), s[0]);
        s[1] = _mm512_fmadd_ps(av, _mm512_load_ps(p + k * NR + 16), s[1]);
    }
    store_row(g, 0, _mm512_add_ps(_mm512_add_ps(s[0], s[2]), _mm512_add_ps(s[4], s[6])),
              _mm512_add_ps(_mm512_add_ps(s[1], s[3]), _mm512_add_ps(s[5], s[7])));
}

#define KERN(R)                                                                                    \
    static T512 void kern##R(const struct kargs *g)                                                \
    {                                                                                              \
        kern_body(g, R, false);                                                                    \
    }                                                                                              \
    static T512 void kernh##R(const struct kargs *g)                                               \
    {                                                                                              \
        kern_body(g, R, true);                                                                     \
    }
static T512 void kernh1(const struct kargs *g)
{
    kern_body(g, 1, true);
}
KERN(2)
KERN(3)
KERN(4)
KERN(5)
KERN(6)
KERN(7)
KERN(8)

typedef void kern_f(const struct kargs *g);
static kern_f *const kerns[2][MR + 1] = {{NULL, kern_row, kern2, kern3, kern4, kern5, kern6, kern7,
                                          kern8},
                                         {NULL, kernh1, kernh2, kernh3, kernh4, kernh5, kernh6,
                                          kernh7, kernh8}};

/* N <= INFER_SGEMM_DOT_N: dot products of A's rows with B^T's rows, four rows at a time
 * (four independent FMA chains), then the same epilogue as store_row, in scalar. */
static T512 void run_dot(const struct infer_sgemm_pack *p, int64_t M, const float *a, int64_t lda,
                         float alpha, int bias_mode, const float *bias, float beta, bool relu,
                         float *c, int64_t ldc)
{
    const int64_t K = p->K, kfull = K - K % 16;
    const __mmask16 tail = (__mmask16)((1u << (K % 16)) - 1);

    for (int64_t i0 = 0; i0 < M; i0 += 4) {
        int rows = M - i0 < 4 ? (int)(M - i0) : 4;
        const float *ar[4];
        for (int r = 0; r < 4; r++)
            ar[r] = a + (i0 + (r < rows ? r : rows - 1)) * lda;
        for (int64_t n = 0; n < p->N; n++) {
            const float *bt = p->bt + n * p->kp;
            __m512 s[4];
            int64_t k;
            for (int r = 0; r < 4; r++)
                s[r] = _mm512_setzero_ps();
            for (k = 0; k < kfull; k += 16) {
                const __m512 bv = _mm512_load_ps(bt + k);
#pragma GCC unroll 4
                for (int r = 0; r < 4; r++)
                    s[r] = _mm512_fmadd_ps(_mm512_loadu_ps(ar[r] + k), bv, s[r]);
            }
            if (tail) {
                const __m512 bv = _mm512_load_ps(bt + k);
#pragma GCC unroll 4
                for (int r = 0; r < 4; r++)
                    s[r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, ar[r] + k), bv, s[r]);
            }
            for (int r = 0; r < rows; r++) {
                float *cv = c + (i0 + r) * ldc + n;
                float v = alpha * _mm512_reduce_add_ps(s[r]);
                if (bias_mode == INFER_BIAS_ROW)
                    v += beta * bias[n];
                else if (bias_mode == INFER_BIAS_ACC)
                    v += beta * *cv;
                if (relu)
                    v = v > 0 ? v : 0.0f;
                *cv = v;
            }
        }
    }
}

static void run512(const struct infer_sgemm_pack *p, int64_t M, const float *a, int64_t lda,
                   float alpha, int bias_mode, const float *bias, float beta, bool relu, float *c,
                   int64_t ldc)
{
    struct kargs g = {.K = p->K,
                      .lda = lda,
                      .ldc = ldc,
                      .bias_mode = bias_mode,
                      .relu = relu,
                      .alpha = alpha,
                      .beta = beta};

    if (p->bt != NULL) {
        run_dot(p, M, a, lda, alpha, bias_mode, bias, beta, relu, c, ldc);
        return;
    }
    for (int64_t pi = 0; pi < p->np; pi++) {
        int64_t j0 = pi * NR, rem = p->N - j0;
        g.m0 = rem >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << rem) - 1);
        g.m1 = rem >= 32 ? (__mmask16)0xffff
             : rem > 16  ? (__mmask16)((1u << (rem - 16)) - 1)
                         : (__mmask16)0;
        g.p = p->p + pi * p->K * NR;
        g.bias = bias_mode == INFER_BIAS_ROW ? bias + j0 : NULL;
        for (int64_t i0 = 0; i0 < M; i0 += MR) {
            int rows = M - i0 < MR ? (int)(M - i0) : MR;
            g.a = a + i0 * lda;
            g.c = c + i0 * ldc + j0;
            kerns[rem <= 16][rows](&g);
        }
    }
}

#endif /* INFER_X86 */

void infer__sgemm_run(const struct infer_sgemm_pack *p, int64_t M, const float *a, int64_t lda,
                      float alpha, int bias_mode, const float *bias, float beta, bool relu,
                      float *c, int64_t ldc)
{
#if INFER_X86
    if (infer__cpu_level() >= INFER_CPU_AVX512) {
        run512(p, M, a, lda, alpha, bias_mode, bias, beta, relu, c, ldc);
        return;
    }
#endif
    /* Portable path (a pack made on an AVX-512 CPU and a test capping the level). */
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < p->N; j++) {
            const float *col = p->p + (j / NR) * p->K * NR + j % NR;
            float s = 0, v;
            for (int64_t k = 0; k < p->K; k++)
                s += a[i * lda + k] * col[k * NR];
            v = alpha * s;
            if (bias_mode == INFER_BIAS_ROW)
                v += beta * bias[j];
            else if (bias_mode == INFER_BIAS_ACC)
                v += beta * c[i * ldc + j];
            if (relu)
                v = v > 0 ? v : 0.0f; /* as Relu: NaN becomes 0 */
            c[i * ldc + j] = v;
        }
}
