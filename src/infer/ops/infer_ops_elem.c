/* src/infer/ops/infer_ops_elem.c: elementwise operators.
 *
 * Binary arithmetic and comparisons broadcast through infer_bc (infer_ops.h); each inner
 * row is a flat loop specialised for "both contiguous", "one scalar" so the compiler
 * vectorises it. Signed integer arithmetic wraps (done in unsigned) and integer division
 * by zero is an error, never a trap. Unary math works on float32/float64. */
#include <float.h>
#include <stdint.h>

#include "infer/ops/infer_kern.h"
#include "infer/ops/infer_ops.h"

enum bop { B_ADD, B_SUB, B_MUL, B_DIV, B_EQ, B_LT, B_GT };

static int bin_shape(const struct infer_node *n, struct infer_tensor *const *in,
                     struct infer_tensor *const *out, struct infer_err *e)
{
    int cmp = n->ia[0] >= B_EQ;

    INFER_NEED(n->n_in == 2 && in[0] && in[1] && n->n_out == 1, "needs 2 inputs, 1 output");
    INFER_NEED(in[0]->dtype == in[1]->dtype, "input dtypes differ (%s, %s)",
               infer_dtype_name(in[0]->dtype), infer_dtype_name(in[1]->dtype));
    if (!infer_is_float(in[0]->dtype) && !infer_is_int(in[0]->dtype) &&
        !(cmp && in[0]->dtype == INFER_DT_BOOL))
        return infer__errf(e, -ENOTSUP, "dtype %s not supported", infer_dtype_name(in[0]->dtype));
    out[0]->dtype = cmp ? INFER_DT_BOOL : in[0]->dtype;
    return infer__broadcast(in, 2, out[0], e);
}

#define ROW(T, OT, EXPR)                                                                           \
    do {                                                                                           \
        const T *pa = (const T *)a + o0, *pb = (const T *)b + o1;                                  \
        OT *po = (OT *)o + oo;                                                                     \
        if (s0 && s1) {                                                                            \
            for (int64_t i = 0; i < inner; i++) {                                                  \
                T x = pa[i], y = pb[i];                                                            \
                po[i] = (EXPR);                                                                    \
            }                                                                                      \
        } else if (s0) {                                                                           \
            const T y = pb[0];                                                                     \
            for (int64_t i = 0; i < inner; i++) {                                                  \
                T x = pa[i];                                                                       \
                po[i] = (EXPR);                                                                    \
            }                                                                                      \
        } else if (s1) {                                                                           \
            const T x = pa[0];                                                                     \
            for (int64_t i = 0; i < inner; i++) {                                                  \
                T y = pb[i];                                                                       \
                po[i] = (EXPR);                                                                    \
            }                                                                                      \
        } else {                                                                                   \
            const T x = pa[0], y = pb[0];                                                          \
            for (int64_t i = 0; i < inner; i++)                                                    \
                po[i] = (EXPR);                                                                    \
        }                                                                                          \
    } while (0)

/* T: element type; U: same-width unsigned type for wrapping arithmetic. */
#define BIN_INT(T, U, SGN)                                                                         \
    do {                                                                                           \
        switch (op) {                                                                              \
        case B_ADD: INFER_BC_ROWS(&bc, ROW(T, T, (T)((U)x + (U)y))); break;                        \
        case B_SUB: INFER_BC_ROWS(&bc, ROW(T, T, (T)((U)x - (U)y))); break;                        \
        case B_MUL: INFER_BC_ROWS(&bc, ROW(T, T, (T)((U)x * (U)y))); break;                        \
        case B_DIV:                                                                                \
            INFER_BC_ROWS(&bc, ROW(T, T,                                                           \
                                   y == 0                ? (divzero = 1, (T)0)                     \
                                   : (SGN && y == (T)-1) ? (T)(0 - (U)x)                           \
                                                         : (T)(x / y)));                           \
            break;                                                                                 \
        case B_EQ: INFER_BC_ROWS(&bc, ROW(T, uint8_t, x == y)); break;                             \
        case B_LT: INFER_BC_ROWS(&bc, ROW(T, uint8_t, x < y)); break;                              \
        case B_GT: INFER_BC_ROWS(&bc, ROW(T, uint8_t, x > y)); break;                              \
        }                                                                                          \
    } while (0)

#define BIN_FLT(T)                                                                                 \
    do {                                                                                           \
        switch (op) {                                                                              \
        case B_ADD: INFER_BC_ROWS(&bc, ROW(T, T, x + y)); break;                                   \
        case B_SUB: INFER_BC_ROWS(&bc, ROW(T, T, x - y)); break;                                   \
        case B_MUL: INFER_BC_ROWS(&bc, ROW(T, T, x *y)); break;                                    \
        case B_DIV: INFER_BC_ROWS(&bc, ROW(T, T, x / y)); break;                                   \
        case B_EQ: INFER_BC_ROWS(&bc, ROW(T, uint8_t, x == y)); break;                             \
        case B_LT: INFER_BC_ROWS(&bc, ROW(T, uint8_t, x < y)); break;                              \
        case B_GT: INFER_BC_ROWS(&bc, ROW(T, uint8_t, x > y)); break;                              \
        }                                                                                          \
    } while (0)

static int bin_run(const struct infer_node *n, struct infer_tensor *const *in,
                   struct infer_tensor *const *out, void *scratch, struct infer_err *e)
{
    struct infer_bc bc;
    const void *a = in[0]->data, *b = in[1]->data;
    void *o = out[0]->data;
    enum bop op = (enum bop)n->ia[0];
    int divzero = 0;

    infer_bc_init(&bc, in, 2, out[0]);
    switch (in[0]->dtype) {
    case INFER_DT_FLOAT: BIN_FLT(float); break;
    case INFER_DT_DOUBLE: BIN_FLT(double); break;
    case INFER_DT_INT64: BIN_INT(int64_t, uint64_t, 1); break;
    case INFER_DT_INT32: BIN_INT(int32_t, uint32_t, 1); break;
    case INFER_DT_INT16: BIN_INT(int16_t, uint16_t, 1); break;
    case INFER_DT_INT8: BIN_INT(int8_t, uint8_t, 1); break;
    case INFER_DT_UINT8:
    case INFER_DT_BOOL: BIN_INT(uint8_t, uint8_t, 0); break;
    case INFER_DT_UINT16: BIN_INT(uint16_t, uint16_t, 0); break;
    case INFER_DT_UINT32: BIN_INT(uint32_t, uint32_t, 0); break;
    case INFER_DT_UINT64: BIN_INT(uint64_t, uint64_t, 0); break;
    default: return infer__errf(e, -ENOTSUP, "dtype not supported");
    }
    if (divzero)
        return infer__errf(e, -EDOM, "integer division by zero");
    return 0;
}

static int bin_load(struct infer_node *n, struct infer_err *e)
{
    const char *t = n->op_type;

    n->ia[0] = !strcmp(t, "Add")   ? B_ADD
             : !strcmp(t, "Sub")   ? B_SUB
             : !strcmp(t, "Mul")   ? B_MUL
             : !strcmp(t, "Div")   ? B_DIV
             : !strcmp(t, "Equal") ? B_EQ
             : !strcmp(t, "Less")  ? B_LT
                                   : B_GT;
    /* Opsets before 7 had a `broadcast` attribute with different rules; we start at 7. */
    if (infer__attr(n, "broadcast") != NULL || infer__attr(n, "axis") != NULL)
        return infer__errf(e, -ENOTSUP, "legacy broadcast attributes not supported");
    return 0;
}

#define BIN_OP(sym, nm)                                                                            \
    const struct infer_op infer__op_##sym = {.name = nm,                                           \
                                             .domain = "",                                         \
                                             .load = bin_load,                                     \
                                             .shape = bin_shape,                                   \
                                             .run = bin_run}
BIN_OP(add, "Add");
BIN_OP(sub, "Sub");
BIN_OP(mul, "Mul");
BIN_OP(div, "Div");
BIN_OP(equal, "Equal");
BIN_OP(less, "Less");
BIN_OP(greater, "Greater");

/* ---- unary ---- */

enum uop { U_RELU, U_LEAKY, U_SIGMOID, U_TANH, U_EXP, U_LOG, U_NEG, U_ABS, U_SQRT };

static int un_load(struct infer_node *n, struct infer_err *e)
{
    const char *t = n->op_type;

    n->ia[0] = !strcmp(t, "Relu")      ? U_RELU
             : !strcmp(t, "LeakyRelu") ? U_LEAKY
             : !strcmp(t, "Sigmoid")   ? U_SIGMOID
             : !strcmp(t, "Tanh")      ? U_TANH
             : !strcmp(t, "Exp")       ? U_EXP
             : !strcmp(t, "Log")       ? U_LOG
             : !strcmp(t, "Neg")       ? U_NEG
             : !strcmp(t, "Abs")       ? U_ABS
                                       : U_SQRT;
    n->fa[0] = infer__attr_f(n, "alpha", 0.01f);
    return 0;
}

static int un_shape(const struct infer_node *n, struct infer_tensor *const *in,
                    struct infer_tensor *const *out, struct infer_err *e)
{
    int dt;

    INFER_NEED(n->n_in == 1 && in[0] && n->n_out == 1, "needs 1 input, 1 output");
    dt = in[0]->dtype;
    if (!infer_is_float(dt) &&
        !((n->ia[0] == U_RELU || n->ia[0] == U_NEG || n->ia[0] == U_ABS) &&
          (dt == INFER_DT_INT32 || dt == INFER_DT_INT64 || dt == INFER_DT_INT8)))
        return infer__errf(e, -ENOTSUP, "dtype %s not supported", infer_dtype_name(dt));
    infer_like(out[0], in[0]);
    return 0;
}

/* Sigmoid written so neither branch overflows exp(). */
static inline float sigmoidf(float x)
{
    if (x >= 0)
        return 1.0f / (1.0f + expf(-x));
    float z = expf(x);
    return z / (1.0f + z);
}

static inline double sigmoidd(double x)
{
    if (x >= 0)
        return 1.0 / (1.0 + exp(-x));
    double z = exp(x);
    return z / (1.0 + z);
}

#define UN_LOOP(T, EXPR)                                                                           \
    do {                                                                                           \
        const T *restrict px = in[0]->data;                                                        \
        T *restrict py = out[0]->data;                                                             \
        for (int64_t i = 0; i < cnt; i++) {                                                        \
            T x = px[i];                                                                           \
            py[i] = (EXPR);                                                                        \
        }                                                                                          \
    } while (0)

#define UN_FLT(T, EXP, LOG, TANH, SQRT, SIG)                                                       \
    do {                                                                                           \
        const T al = (T)n->fa[0];                                                                  \
        switch (n->ia[0]) {                                                                        \
        case U_RELU: UN_LOOP(T, x > 0 ? x : 0); break;                                             \
        case U_LEAKY: UN_LOOP(T, x >= 0 ? x : x * al); break;                                      \
        case U_SIGMOID: UN_LOOP(T, SIG(x)); break;                                                 \
        case U_TANH: UN_LOOP(T, TANH(x)); break;                                                   \
        case U_EXP: UN_LOOP(T, EXP(x)); break;                                                     \
        case U_LOG: UN_LOOP(T, LOG(x)); break;                                                     \
        case U_NEG: UN_LOOP(T, -x); break;                                                         \
        case U_ABS: UN_LOOP(T, x < 0 ? -x : x); break;                                             \
        case U_SQRT: UN_LOOP(T, SQRT(x)); break;                                                   \
        }                                                                                          \
    } while (0)

#define UN_INT(T, U)                                                                               \
    do {                                                                                           \
        switch (n->ia[0]) {                                                                        \
        case U_RELU: UN_LOOP(T, x > 0 ? x : 0); break;                                             \
        case U_NEG: UN_LOOP(T, (T)(0 - (U)x)); break;                                              \
        case U_ABS: UN_LOOP(T, x < 0 ? (T)(0 - (U)x) : x); break;                                  \
        }                                                                                          \
    } while (0)

static int un_run(const struct infer_node *n, struct infer_tensor *const *in,
                  struct infer_tensor *const *out, void *scratch, struct infer_err *e)
{
    int64_t cnt = infer_tensor_numel(in[0]);

    if (in[0]->dtype == INFER_DT_FLOAT) {
        switch (n->ia[0]) { /* vectorised (infer_vmath.c) */
        case U_RELU: infer__vreluf(in[0]->data, out[0]->data, cnt); return 0;
        case U_SIGMOID: infer__vsigmoidf(in[0]->data, out[0]->data, cnt); return 0;
        case U_TANH: infer__vtanhf(in[0]->data, out[0]->data, cnt); return 0;
        case U_EXP: infer__vexpf(in[0]->data, out[0]->data, cnt); return 0;
        default: break;
        }
    }
    switch (in[0]->dtype) {
    case INFER_DT_FLOAT: UN_FLT(float, expf, logf, tanhf, sqrtf, sigmoidf); break;
    case INFER_DT_DOUBLE: UN_FLT(double, exp, log, tanh, sqrt, sigmoidd); break;
    case INFER_DT_INT64: UN_INT(int64_t, uint64_t); break;
    case INFER_DT_INT32: UN_INT(int32_t, uint32_t); break;
    case INFER_DT_INT8: UN_INT(int8_t, uint8_t); break;
    default: return infer__errf(e, -ENOTSUP, "dtype not supported");
    }
    return 0;
}

#define UN_OP(sym, nm)                                                                             \
    const struct infer_op infer__op_##sym = {.name = nm,                                           \
                                             .domain = "",                                         \
                                             .load = un_load,                                      \
                                             .shape = un_shape,                                    \
                                             .run = un_run}
UN_OP(relu, "Relu");
UN_OP(leakyrelu, "LeakyRelu");
UN_OP(sigmoid, "Sigmoid");
UN_OP(tanh, "Tanh");
UN_OP(exp, "Exp");
UN_OP(log, "Log");
UN_OP(neg, "Neg");
UN_OP(abs, "Abs");
UN_OP(sqrt, "Sqrt");

/* ---- Not, Identity ---- */

static int not_shape(const struct infer_node *n, struct infer_tensor *const *in,
                     struct infer_tensor *const *out, struct infer_err *e)
{
    INFER_NEED(n->n_in == 1 && in[0] && n->n_out == 1, "needs 1 input, 1 output");
    INFER_NEED(in[0]->dtype == INFER_DT_BOOL, "input must be bool");
    infer_like(out[0], in[0]);
    return 0;
}

static int not_run(const struct infer_node *n, struct infer_tensor *const *in,
                   struct infer_tensor *const *out, void *scratch, struct infer_err *e)
{
    int64_t cnt = infer_tensor_numel(in[0]);
    const uint8_t *x = in[0]->data;
    uint8_t *y = out[0]->data;

    for (int64_t i = 0; i < cnt; i++)
        y[i] = !x[i];
    return 0;
}

const struct infer_op infer__op_not = {.name = "Not",
                                       .domain = "",
                                       .shape = not_shape,
                                       .run = not_run};

static int id_shape(const struct infer_node *n, struct infer_tensor *const *in,
                    struct infer_tensor *const *out, struct infer_err *e)
{
    INFER_NEED(n->n_in == 1 && in[0] && n->n_out == 1, "needs 1 input, 1 output");
    infer_like(out[0], in[0]);
    return 0;
}

int infer__copy_run(const struct infer_node *n, struct infer_tensor *const *in,
                    struct infer_tensor *const *out, void *scratch, struct infer_err *e)
{
    size_t b = infer__bytes(out[0]);

    if (b && out[0]->data != in[0]->data)
        memcpy(out[0]->data, in[0]->data, b);
    return 0;
}

const struct infer_op infer__op_identity = {.name = "Identity",
                                            .domain = "",
                                            .shape = id_shape,
                                            .run = infer__copy_run};

/* ---- Clip ---- */

static int clip_load(struct infer_node *n, struct infer_err *e)
{
    /* Opset 6-10: bounds are attributes; 11+: optional scalar inputs. */
    n->fa[0] = infer__attr_f(n, "min", -FLT_MAX);
    n->fa[1] = infer__attr_f(n, "max", FLT_MAX);
    return 0;
}

static int clip_shape(const struct infer_node *n, struct infer_tensor *const *in,
                      struct infer_tensor *const *out, struct infer_err *e)
{
    INFER_NEED(n->n_in >= 1 && n->n_in <= 3 && in[0] && n->n_out == 1, "needs 1-3 inputs");
    INFER_NEED(infer_is_float(in[0]->dtype) || infer_is_int(in[0]->dtype), "dtype %s not supported",
               infer_dtype_name(in[0]->dtype));
    for (int i = 1; i < n->n_in; i++)
        if (in[i] != NULL) {
            INFER_NEED(in[i]->dtype == in[0]->dtype, "bound dtype differs from input");
            INFER_NEED(infer_tensor_numel(in[i]) == 1, "bounds must be scalars");
        }
    infer_like(out[0], in[0]);
    return 0;
}

#define CLIP(T)                                                                                    \
    do {                                                                                           \
        const T *restrict px = in[0]->data;                                                        \
        T *restrict py = out[0]->data;                                                             \
        T lo = n->opset < 11          ? (T)n->fa[0]                                                \
             : (n->n_in > 1 && in[1]) ? *(const T *)in[1]->data                                    \
                                      : lo_def;                                                    \
        T hi = n->opset < 11          ? (T)n->fa[1]                                                \
             : (n->n_in > 2 && in[2]) ? *(const T *)in[2]->data                                    \
                                      : hi_def;                                                    \
        for (int64_t i = 0; i < cnt; i++) {                                                        \
            T x = px[i];                                                                           \
            x = x < lo ? lo : x;                                                                   \
            py[i] = x > hi ? hi : x;                                                               \
        }                                                                                          \
    } while (0)

static int clip_run(const struct infer_node *n, struct infer_tensor *const *in,
                    struct infer_tensor *const *out, void *scratch, struct infer_err *e)
{
    int64_t cnt = infer_tensor_numel(in[0]);

    switch (in[0]->dtype) {
    case INFER_DT_FLOAT: {
        float lo_def = -INFINITY, hi_def = INFINITY;
        CLIP(float);
        break;
    }
    case INFER_DT_DOUBLE: {
        double lo_def = -INFINITY, hi_def = INFINITY;
        CLIP(double);
        break;
    }
    case INFER_DT_INT64: {
        int64_t lo_def = INT64_MIN, hi_def = INT64_MAX;
        if (n->opset < 11)
            return infer__errf(e, -ENOTSUP, "integer Clip before opset 11");
        CLIP(int64_t);
        break;
    }
    case INFER_DT_INT32: {
        int32_t lo_def = INT32_MIN, hi_def = INT32_MAX;
        if (n->opset < 11)
            return infer__errf(e, -ENOTSUP, "integer Clip before opset 11");
        CLIP(int32_t);
        break;
    }
    case INFER_DT_INT8: {
        int8_t lo_def = INT8_MIN, hi_def = INT8_MAX;
        if (n->opset < 11)
            return infer__errf(e, -ENOTSUP, "integer Clip before opset 11");
        CLIP(int8_t);
        break;
    }
    case INFER_DT_UINT8: {
        uint8_t lo_def = 0, hi_def = UINT8_MAX;
        if (n->opset < 11)
            return infer__errf(e, -ENOTSUP, "integer Clip before opset 11");
        CLIP(uint8_t);
        break;
    }
    default:
        return infer__errf(e, -ENOTSUP, "dtype %s not supported", infer_dtype_name(in[0]->dtype));
    }
    return 0;
}

const struct infer_op infer__op_clip = {.name = "Clip",
                                        .domain = "",
                                        .load = clip_load,
                                        .shape = clip_shape,
                                        .run = clip_run};

/* ---- Where ---- */

static int where_shape(const struct infer_node *n, struct infer_tensor *const *in,
                       struct infer_tensor *const *out, struct infer_err *e)
{
    INFER_NEED(n->n_in == 3 && in[0] && in[1] && in[2] && n->n_out == 1, "needs 3 inputs");
    INFER_NEED(in[0]->dtype == INFER_DT_BOOL, "condition must be bool");
    INFER_NEED(in[1]->dtype == in[2]->dtype, "X and Y dtypes differ");
    out[0]->dtype = in[1]->dtype;
    return infer__broadcast(in, 3, out[0], e);
}

#define WHERE(T)                                                                                   \
    INFER_BC_ROWS(&bc, {                                                                           \
        const uint8_t *pc = (const uint8_t *)in[0]->data + o0;                                     \
        const T *px = (const T *)in[1]->data + o1, *py = (const T *)in[2]->data + o2;              \
        T *po = (T *)out[0]->data + oo;                                                            \
        for (int64_t i = 0; i < inner; i++)                                                        \
            po[i] = pc[i * s0] ? px[i * s1] : py[i * s2];                                          \
    })

static int where_run(const struct infer_node *n, struct infer_tensor *const *in,
                     struct infer_tensor *const *out, void *scratch, struct infer_err *e)
{
    struct infer_bc bc;

    infer_bc_init(&bc, in, 3, out[0]);
    switch (infer_dtype_size(out[0]->dtype)) {
    case 1: WHERE(uint8_t); break;
    case 2: WHERE(uint16_t); break;
    case 4: WHERE(uint32_t); break;
    case 8: WHERE(uint64_t); break;
    default: return infer__errf(e, -ENOTSUP, "dtype not supported");
    }
    return 0;
}

const struct infer_op infer__op_where = {.name = "Where",
                                         .domain = "",
                                         .shape = where_shape,
                                         .run = where_run};

/* ---- Cast ---- */

static int cast_load(struct infer_node *n, struct infer_err *e)
{
    const struct infer_attr *a = infer__attr(n, "to");

    if (a == NULL || a->type != INFER_AT_INT)
        return infer__errf(e, -EINVAL, "missing 'to'");
    if (!infer__dtype_supported((int)a->i))
        return infer__errf(e, -ENOTSUP, "cast to %s not supported", infer_dtype_name((int)a->i));
    n->ia[0] = a->i;
    return 0;
}

static int cast_shape(const struct infer_node *n, struct infer_tensor *const *in,
                      struct infer_tensor *const *out, struct infer_err *e)
{
    INFER_NEED(n->n_in == 1 && in[0] && n->n_out == 1, "needs 1 input, 1 output");
    infer_like(out[0], in[0]);
    out[0]->dtype = (int)n->ia[0];
    return 0;
}

/* IEEE half <-> single, round to nearest even (what numpy's astype does). */
static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    float f;

    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp == 0) {
        f = ldexpf((float)man, -24);
        return sign ? -f : f;
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    memcpy(&f, &bits, 4);
    return f;
}

static uint16_t float_to_half(float f)
{
    uint32_t x, sign, man;
    int exp;

    memcpy(&x, &f, 4);
    sign = (x >> 16) & 0x8000;
    exp = (int)((x >> 23) & 0xff);
    man = x & 0x7fffff;
    if (exp == 0xff)
        return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    exp -= 127 - 15;
    if (exp >= 0x1f)
        return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10)
            return (uint16_t)sign;
        man |= 0x800000;
        int shift = 14 - exp;
        uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1)))
            half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = ((uint32_t)exp << 10) | (man >> 13), rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
        h++; /* may carry into the exponent, up to infinity: that is the right rounding */
    return (uint16_t)(sign | h);
}

static float bf16_to_float(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;

    memcpy(&f, &bits, 4);
    return f;
}

static uint16_t float_to_bf16(float f)
{
    uint32_t x;

    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000)
        return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    /* Truncation, as the ONNX reference for opsets up to 17 does (rounding came with the
     * saturate attribute of opset 19). */
    return (uint16_t)(x >> 16);
}

/* Float to integer without undefined behaviour: NaN gives 0, out-of-range saturates. */
static int64_t f2i(double x, double lo, double hi)
{
    if (x != x)
        return 0;
    if (x <= lo)
        return (int64_t)lo;
    if (x >= hi)
        return (int64_t)hi;
    return (int64_t)x;
}

static int cast_run(const struct infer_node *n, struct infer_tensor *const *in,
                    struct infer_tensor *const *out, void *scratch, struct infer_err *e)
{
    int64_t cnt = infer_tensor_numel(in[0]);
    int st = in[0]->dtype, dt = out[0]->dtype;
    const void *x = in[0]->data;
    void *y = out[0]->data;

    if (st == dt) {
        if (cnt)
            memcpy(y, x, infer__bytes(in[0]));
        return 0;
    }
    for (int64_t i = 0; i < cnt; i++) {
        double d = 0;
        int64_t v = 0;
        uint64_t u = 0;
        bool isf = true, isu = false;
        switch (st) {
        case INFER_DT_FLOAT: d = ((const float *)x)[i]; break;
        case INFER_DT_DOUBLE: d = ((const double *)x)[i]; break;
        case INFER_DT_FLOAT16: d = half_to_float(((const uint16_t *)x)[i]); break;
        case INFER_DT_BFLOAT16: d = bf16_to_float(((const uint16_t *)x)[i]); break;
        case INFER_DT_UINT64:
            u = ((const uint64_t *)x)[i];
            isf = false;
            isu = true;
            break;
        default:
            v = infer__get_i64(in[0], i);
            isf = false;
            if (st == INFER_DT_UINT16)
                v = ((const uint16_t *)x)[i];
            else if (st == INFER_DT_UINT32)
                v = ((const uint32_t *)x)[i];
            else if (st == INFER_DT_INT16)
                v = ((const int16_t *)x)[i];
            break;
        }
        if (!isf) {
            d = isu ? (double)u : (double)v;
            if (isu)
                v = (int64_t)u;
        }
        switch (dt) {
        case INFER_DT_FLOAT: ((float *)y)[i] = isf ? (float)d : isu ? (float)u : (float)v; break;
        case INFER_DT_DOUBLE: ((double *)y)[i] = d; break;
        case INFER_DT_FLOAT16: ((uint16_t *)y)[i] = float_to_half((float)d); break;
        case INFER_DT_BFLOAT16: ((uint16_t *)y)[i] = float_to_bf16((float)d); break;
        case INFER_DT_BOOL: ((uint8_t *)y)[i] = isf ? d != 0 : (v != 0 || u != 0); break;
        case INFER_DT_INT64:
            ((int64_t *)y)[i] = isf ? f2i(d, -9223372036854775808.0, 9223372036854774784.0) : v;
            break;
        case INFER_DT_UINT64:
            ((uint64_t *)y)[i] = isf ? (uint64_t)f2i(d, 0, 9223372036854774784.0) : (uint64_t)v;
            break;
        case INFER_DT_INT32:
            ((int32_t *)y)[i] = (int32_t)(isf ? f2i(d, INT32_MIN, INT32_MAX)
                                              : (int64_t)(uint32_t)v);
            break;
        case INFER_DT_UINT32:
            ((uint32_t *)y)[i] = (uint32_t)(isf ? f2i(d, 0, UINT32_MAX) : v);
            break;
        case INFER_DT_INT16:
            ((int16_t *)y)[i] = (int16_t)(isf ? f2i(d, INT16_MIN, INT16_MAX)
                                              : (int64_t)(uint16_t)v);
            break;
        case INFER_DT_UINT16:
            ((uint16_t *)y)[i] = (uint16_t)(isf ? f2i(d, 0, UINT16_MAX) : v);
            break;
        case INFER_DT_INT8:
            ((int8_t *)y)[i] = (int8_t)(isf ? f2i(d, INT8_MIN, INT8_MAX) : (int64_t)(uint8_t)v);
            break;
        case INFER_DT_UINT8: ((uint8_t *)y)[i] = (uint8_t)(isf ? f2i(d, 0, UINT8_MAX) : v); break;
        default: return infer__errf(e, -ENOTSUP, "cast to %s not supported", infer_dtype_name(dt));
        }
    }
    return 0;
}

/* CastLike (opset 15): the target dtype is the second input's. */
static int castlike_shape(const struct infer_node *n, struct infer_tensor *const *in,
                          struct infer_tensor *const *out, struct infer_err *e)
{
    INFER_NEED(n->n_in == 2 && in[0] && in[1] && n->n_out == 1, "needs input and target_type");
    infer_like(out[0], in[0]);
    out[0]->dtype = in[1]->dtype;
    return 0;
}

const struct infer_op infer__op_castlike = {.name = "CastLike",
                                            .domain = "",
                                            .shape = castlike_shape,
                                            .run = cast_run};

const struct infer_op infer__op_cast = {.name = "Cast",
                                        .domain = "",
                                        .load = cast_load,
                                        .shape = cast_shape,
                                        .run = cast_run};
