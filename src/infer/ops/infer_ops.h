/* src/infer/ops/infer_ops.h: helpers shared by the operator files (internal).
 *
 * Broadcasting (numpy rules, ONNX "multidirectional") is done by one iterator: shapes are
 * right-aligned, broadcast dims get stride 0, and adjacent dims are merged wherever every
 * operand is contiguous across them, so "same shape" becomes one flat loop and "matrix +
 * row vector" becomes rows of a flat inner loop the compiler can vectorise. */
#ifndef MLCDN_INFER_OPS_H
#define MLCDN_INFER_OPS_H

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer_int.h"

struct infer_bc {
    int rank; /* >= 1 after coalescing */
    int n;    /* operands */
    int64_t dims[INFER_MAX_RANK];
    int64_t st[3][INFER_MAX_RANK];
    int64_t numel;
};

static inline void infer_bc_init(struct infer_bc *b, struct infer_tensor *const *in, int n,
                                 const struct infer_tensor *out)
{
    int64_t st[3] = {1, 1, 1};
    int r = 0;
    int64_t dims[INFER_MAX_RANK], s[3][INFER_MAX_RANK];

    b->n = n;
    b->numel = 1;
    /* Strides from the innermost dim outwards, dims of 1 dropped. */
    for (int d = out->rank - 1; d >= 0; d--) {
        int64_t od = out->dims[d];
        b->numel *= od;
        if (od == 1)
            continue;
        dims[r] = od;
        for (int k = 0; k < n; k++) {
            int kd = d - (out->rank - in[k]->rank);
            int64_t id = kd >= 0 ? in[k]->dims[kd] : 1;
            s[k][r] = id == 1 ? 0 : st[k];
            st[k] *= id;
        }
        r++;
    }
    /* Merge dim r-1 (inner) into its outer neighbour where every operand allows it. */
    b->rank = 0;
    for (int i = 0; i < r; i++) {
        if (b->rank > 0) {
            int j = b->rank - 1;
            bool ok = true;
            for (int k = 0; k < n; k++)
                if (s[k][i] != b->st[k][j] * b->dims[j])
                    ok = false;
            if (ok) {
                b->dims[j] *= dims[i];
                continue;
            }
        }
        b->dims[b->rank] = dims[i];
        for (int k = 0; k < n; k++)
            b->st[k][b->rank] = s[k][i];
        b->rank++;
    }
    if (b->rank == 0) {
        b->rank = 1;
        b->dims[0] = 1;
        for (int k = 0; k < n; k++)
            b->st[k][0] = 0;
    }
    /* Stored innermost first so far; flip to outermost first. */
    for (int i = 0; i < b->rank / 2; i++) {
        int j = b->rank - 1 - i;
        int64_t t = b->dims[i];
        b->dims[i] = b->dims[j];
        b->dims[j] = t;
        for (int k = 0; k < n; k++) {
            t = b->st[k][i];
            b->st[k][i] = b->st[k][j];
            b->st[k][j] = t;
        }
    }
}

/* Runs BODY once per inner row with o0/o1/o2 the operands' element offsets, oo the output
 * offset, inner the row length and s0/s1/s2 the operands' inner strides (0 or 1). */
#define INFER_BC_ROWS(b, ...)                                                                      \
    do {                                                                                           \
        const int R_ = (b)->rank;                                                                  \
        const int64_t inner = (b)->dims[R_ - 1];                                                   \
        const int64_t s0 = (b)->st[0][R_ - 1];                                                     \
        const int64_t s1 = (b)->n > 1 ? (b)->st[1][R_ - 1] : 0;                                    \
        const int64_t s2 = (b)->n > 2 ? (b)->st[2][R_ - 1] : 0;                                    \
        int64_t idx_[INFER_MAX_RANK] = {0};                                                        \
        int64_t o0 = 0, o1 = 0, o2 = 0;                                                            \
        (void)s0;                                                                                  \
        (void)s1;                                                                                  \
        (void)s2;                                                                                  \
        (void)o0;                                                                                  \
        (void)o1;                                                                                  \
        (void)o2;                                                                                  \
        if ((b)->numel == 0)                                                                       \
            break;                                                                                 \
        for (int64_t oo = 0; oo < (b)->numel; oo += inner) {                                       \
            __VA_ARGS__;                                                                           \
            for (int d_ = R_ - 2; d_ >= 0; d_--) {                                                 \
                idx_[d_]++;                                                                        \
                o0 += (b)->st[0][d_];                                                              \
                if ((b)->n > 1)                                                                    \
                    o1 += (b)->st[1][d_];                                                          \
                if ((b)->n > 2)                                                                    \
                    o2 += (b)->st[2][d_];                                                          \
                if (idx_[d_] < (b)->dims[d_])                                                      \
                    break;                                                                         \
                o0 -= (b)->st[0][d_] * (b)->dims[d_];                                              \
                if ((b)->n > 1)                                                                    \
                    o1 -= (b)->st[1][d_] * (b)->dims[d_];                                          \
                if ((b)->n > 2)                                                                    \
                    o2 -= (b)->st[2][d_] * (b)->dims[d_];                                          \
                idx_[d_] = 0;                                                                      \
            }                                                                                      \
        }                                                                                          \
    } while (0)

static inline int infer_same_shape(const struct infer_tensor *a, int rank, const int64_t *dims)
{
    if (a->rank != rank)
        return 0;
    for (int i = 0; i < rank; i++)
        if (a->dims[i] != dims[i])
            return 0;
    return 1;
}

static inline bool infer_is_float(int dt)
{
    return dt == INFER_DT_FLOAT || dt == INFER_DT_DOUBLE;
}

static inline bool infer_is_int(int dt)
{
    return dt == INFER_DT_INT32 || dt == INFER_DT_INT64 || dt == INFER_DT_INT8 ||
           dt == INFER_DT_UINT8 || dt == INFER_DT_INT16 || dt == INFER_DT_UINT16 ||
           dt == INFER_DT_UINT32 || dt == INFER_DT_UINT64;
}

/* Copies shape and dtype. */
static inline void infer_like(struct infer_tensor *out, const struct infer_tensor *in)
{
    out->dtype = in->dtype;
    out->rank = in->rank;
    memcpy(out->dims, in->dims, sizeof(in->dims));
}

/* Copies in[0] to out[0] (same bytes); Identity, Reshape and friends. */
int infer__copy_run(const struct infer_node *n, struct infer_tensor *const *in,
                    struct infer_tensor *const *out, void *scratch, struct infer_err *e);

#define INFER_NEED(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond))                                                                               \
            return infer__errf(e, -EINVAL, __VA_ARGS__);                                           \
    } while (0)

#endif
