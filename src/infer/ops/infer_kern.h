/* src/infer/ops/infer_kern.h: hand-tuned float kernels (internal).
 *
 * The build is generic x86-64, so every SIMD kernel is compiled per function with
 * __attribute__((target(...))) and chosen at run time from the CPU's features
 * (infer__cpu_level). Callers always have a portable path (OpenBLAS, libm) for CPUs or
 * shapes the kernels do not cover.
 *
 * sgemm: C[M,N] = alpha * A[M,K] * B[K,N] (+ beta * bias) (+ Relu), row-major, where B is
 * a constant (Gemm/MatMul weights) packed once at model load into 32-column panels
 * (k-major inside a panel, zero-padded past N). The AVX-512 micro-kernel keeps an 8x32
 * block of C in 16 zmm registers and streams A rows with broadcasts, so A needs no packing
 * and a batch of any size runs without allocation. Bias, beta and Relu are applied in the
 * store. */
#ifndef MLCDN_INFER_KERN_H
#define MLCDN_INFER_KERN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { INFER_CPU_GENERIC = 0, INFER_CPU_AVX2 = 1, INFER_CPU_AVX512 = 2 };

/* Highest kernel level this CPU runs (cached after the first call). */
int infer__cpu_level(void);
/* Tests: cap the level (-1 restores detection). Not thread-safe; call before running. */
void infer__cpu_force(int level);

#define INFER_SGEMM_NR 32

struct infer_sgemm_pack {
    int64_t K, N;
    int64_t np;      /* panels: ceil(N / 32) */
    const void *src; /* the constant it was packed from (checked at run time) */
    float *p;        /* np * K * 32 floats, 64-byte aligned */
    float *bt;       /* N <= INFER_SGEMM_DOT_N: B^T rows [N][kp] (zero-padded), else NULL */
    int64_t kp;      /* K rounded up to 16 */
};

/* Up to this many columns, C = A B is N dot products per row (a panel would be mostly
 * padding: a 256x256 by 256x1 product spends 32x the FMAs in 32-column panels). */
#define INFER_SGEMM_DOT_N 8

/* Packs B (transB ? [N,K] : [K,N], row-major). NULL where the kernels do not apply (CPU
 * without AVX-512, shapes out of range): the caller keeps using OpenBLAS. */
struct infer_sgemm_pack *infer__sgemm_pack(const float *b, int64_t K, int64_t N, bool transb);
/* Bytes infer__sgemm_pack() would allocate for B (0 where it would return NULL). */
size_t infer__sgemm_pack_bytes(int64_t K, int64_t N);
void infer__sgemm_pack_free(void *p);

/* Bias handling for infer__sgemm_run. */
enum {
    INFER_BIAS_NONE = 0,
    INFER_BIAS_ROW, /* bias[N] added to every row (times beta) */
    INFER_BIAS_ACC, /* C already holds the bias: C = alpha*AB + beta*C */
};

/* C[M, N] (row stride ldc) from A[M, K] (row stride lda) and the packed B. */
void infer__sgemm_run(const struct infer_sgemm_pack *p, int64_t M, const float *a, int64_t lda,
                      float alpha, int bias_mode, const float *bias, float beta, bool relu,
                      float *c, int64_t ldc);

/* Vectorised float math (AVX-512 where available, libm otherwise). Accurate to about 2
 * ulp, including subnormal results, +-inf and NaN. In-place (y == x) is allowed. */
void infer__vreluf(const float *x, float *y, int64_t n);
void infer__vexpf(const float *x, float *y, int64_t n);
void infer__vtanhf(const float *x, float *y, int64_t n);
void infer__vsigmoidf(const float *x, float *y, int64_t n);
/* Softmax (or LogSoftmax) of each of `rows` contiguous rows of length n. */
void infer__softmax_rowsf(const float *x, float *y, int64_t rows, int64_t n, bool logsm);

#endif
