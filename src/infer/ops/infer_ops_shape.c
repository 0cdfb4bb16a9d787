/* src/infer/ops/infer_ops_shape.c: operators that move data without arithmetic:
 * Concat, Constant, Expand, Flatten, Gather, Reshape, Shape, Slice, Squeeze, Transpose,
 * Unsqueeze.
 *
 * Shapes that depend on values (Reshape's target, Slice's bounds, axes given as inputs)
 * read them in the shape function; those inputs are flagged in value_inputs so the
 * planner knows them (constants, or graph inputs that become part of the plan key). Every
 * kernel works on element size only, so all dtypes are supported. */
#include <stdint.h>

#include "infer/ops/infer_ops.h"

/* ---- Constant ---- */

static void tensor_free(void *p)
{
    struct infer_tensor *t = p;

    if (t != NULL)
        free(t->data);
    free(t);
}

static int const_load(struct infer_node *n, struct infer_err *e)
{
    struct infer_tensor *t = mc_xcalloc(1, sizeof(*t));
    const struct infer_attr *a;

    n->ext = t;
    n->ext_free = tensor_free;
    if ((a = infer__attr(n, "value")) != NULL && a->type == INFER_AT_TENSOR) {
        /* The value moves out of the attribute (nothing else reads it): one copy, already
         * charged to the model as the attribute. */
        struct infer_attr *am = &n->attrs[a - n->attrs];
        *t = am->t;
        am->t.data = NULL;
    } else if ((a = infer__attr(n, "value_float")) != NULL && a->type == INFER_AT_FLOAT) {
        t->dtype = INFER_DT_FLOAT;
        t->data = infer__aligned_alloc(4);
        *(float *)t->data = a->f;
    } else if ((a = infer__attr(n, "value_int")) != NULL && a->type == INFER_AT_INT) {
        t->dtype = INFER_DT_INT64;
        t->data = infer__aligned_alloc(8);
        *(int64_t *)t->data = a->i;
    } else if ((a = infer__attr(n, "value_floats")) != NULL && a->type == INFER_AT_FLOATS) {
        t->dtype = INFER_DT_FLOAT;
        t->rank = 1;
        t->dims[0] = (int64_t)a->n;
        t->data = infer__aligned_alloc(4 * a->n);
        memcpy(t->data, a->floats, 4 * a->n);
        n->ext_bytes = 4 * a->n;
    } else if ((a = infer__attr(n, "value_ints")) != NULL && a->type == INFER_AT_INTS) {
        t->dtype = INFER_DT_INT64;
        t->rank = 1;
        t->dims[0] = (int64_t)a->n;
        t->data = infer__aligned_alloc(8 * a->n);
        memcpy(t->data, a->ints, 8 * a->n);
        n->ext_bytes = 8 * a->n;
    } else {
        return infer__errf(e, -ENOTSUP, "only tensor, float(s) and int(s) values supported");
    }
    if (t->data == NULL)
        return infer__errf(e, -ENOMEM, "out of memory");
    return 0;
}

static int const_shape(const struct infer_node *n, struct infer_tensor *const *in,
                       struct infer_tensor *const *out, struct infer_err *e)
{
    INFER_NEED(n->n_in == 0 && n->n_out == 1, "takes no inputs, one output");
    infer_like(out[0], n->ext);
    return 0;
}

static int const_run(const struct infer_node *n, struct infer_tensor *const *in,
                     struct infer_tensor *const *out, void *scratch, struct infer_err *e)
{
    const struct infer_tensor *t = n->ext;

    memcpy(out[0]->data, t->data, infer__bytes(t));
    return 0;
}

const struct infer_op infer__op_constant = {.name = "Constant",
                                            .domain = "",
                                            .load = const_load,
                                            .shape = const_shape,
                                            .run = const_run};

/* ---- Shape ---- */

static int shape_shape(const struct infer_node *n, struct infer_tensor *const *in,
                       struct infer_tensor *const *out, struct infer_err *e)
{
    int64_t r, s, en;

    INFER_NEED(n->n_in == 1 && in[0] && n->n_out == 1, "needs 1 input");
    r = in[0]->rank;
    s = infer__attr_i(n, "start", 0);
    en = infer__attr_i(n, "end", r);
    /* Opset 15: start/end clamp like Python slicing. */
    s = s < 0 ? s + r : s;
    en = en < 0 ? en + r : en;
    s = s < 0 ? 0 : s > r ? r : s;
    en = en < 0 ? 0 : en > r ? r : en;
    out[0]->dtype = INFER_DT_INT64;
    out[0]->rank = 1;
    out[0]->dims[0] = en > s ? en - s : 0;
    return 0;
}

static int shape_run(const struct infer_node *n, struct infer_tensor *const *in,
                     struct infer_tensor *const *out, void *scratch, struct infer_err *e)
{
    int64_t r = in[0]->rank, s = infer__attr_i(n, "start", 0);

    s = s < 0 ? s + r : s;
    s = s < 0 ? 0 : s > r ? r : s;
    for (int64_t i = 0; i < out[0]->dims[0]; i++)
        ((int64_t *)out[0]->data)[i] = in[0]->dims[s + i];
    return 0;
}

const struct infer_op infer__op_shape = {.name = "Shape",
                                         .domain = "",
                                         .shape_only = true,
                                         .shape = shape_shape,
                                         .run = shape_run};

/* ---- Reshape, Flatten, Squeeze, Unsqueeze (copy with a new shape) ---- */

static int reshape_shape(const struct infer_node *n, struct infer_tensor *const *in,
                         struct infer_tensor *const *out, struct infer_err *e)
{
    int64_t sh[INFER_MAX_RANK], numel, known = 1;
    int r, neg = -1;
    bool allowzero = n->opset >= 14 && infer__attr_i(n, "allowzero", 0);

    INFER_NEED(n->n_in == 2 && in[0] && in[1] && n->n_out == 1, "needs data and shape");
    if (in[1]->data == NULL)
        return INFER_UNKNOWN;
    r = infer__read_ints(in[1], sh, INFER_MAX_RANK, e);
    if (r < 0)
        return r;
    numel = infer_tensor_numel(in[0]);
    for (int i = 0; i < r; i++) {
        if (sh[i] == 0 && !allowzero) {
            INFER_NEED(i < in[0]->rank, "0 in shape at %d beyond the input's rank", i);
            sh[i] = in[0]->dims[i];
        }
        if (sh[i] == -1) {
            INFER_NEED(neg < 0, "more than one -1 in shape");
            neg = i;
            continue;
        }
        INFER_NEED(sh[i] >= 0, "negative dim %lld in shape", (long long)sh[i]);
        if (sh[i] != 0 && known > (INT64_C(1) << 56) / sh[i])
            return infer__errf(e, -EINVAL, "shape too large");
        known *= sh[i];
    }
    if (neg >= 0) {
        INFER_NEED(known != 0 && numel % known == 0, "cannot infer -1: %lld elements into %lld",
                   (long long)numel, (long long)known);
        sh[neg] = numel / known;
        known *= sh[neg];
    }
    INFER_NEED(known == numel, "shape holds %lld elements, input has %lld", (long long)known,
               (long long)numel);
    out[0]->dtype = in[0]->dtype;
    out[0]->rank = r;
    memcpy(out[0]->dims, sh, sizeof(int64_t) * r);
    return 0;
}

const struct infer_op infer__op_reshape = {.name = "Reshape",
                                           .domain = "",
                                           .value_inputs = 2,
                                           .shape = reshape_shape,
                                           .run = infer__copy_run};

static int flatten_shape(const struct infer_node *n, struct infer_tensor *const *in,
                         struct infer_tensor *const *out, struct infer_err *e)
{
    int64_t axis = infer__attr_i(n, "axis", 1), a = 1, b = 1;
    int r;

    INFER_NEED(n->n_in == 1 && in[0] && n->n_out == 1, "needs 1 input");
    r = in[0]->rank;
    INFER_NEED(axis >= -r && axis <= r, "axis %lld out of range for rank %d", (long long)axis, r);
    if (axis < 0)
        axis += r;
    for (int i = 0; i < r; i++) {
        if (i < axis)
            a *= in[0]->dims[i];
        else
            b *= in[0]->dims[i];
    }
    out[0]->dtype = in[0]->dtype;
    out[0]->rank = 2;
    out[0]->dims[0] = a;
    out[0]->dims[1] = b;
    return 0;
}

const struct infer_op infer__op_flatten = {.name = "Flatten",
                                           .domain = "",
                                           .shape = flatten_shape,
                                           .run = infer__copy_run};

/* Axes from the attribute (before opset 13) or the optional input 1 (13+). */
static int axes_of(const struct infer_node *n, struct infer_tensor *const *in, int64_t *ax, int *na,
                   struct infer_err *e)
{
    const struct infer_attr *a = infer__attr(n, "axes");

    *na = 0;
    if (n->opset >= 13) {
        if (n->n_in < 2 || in[1] == NULL)
            return 0;
        if (in[1]->data == NULL)
            return INFER_UNKNOWN;
        *na = infer__read_ints(in[1], ax, INFER_MAX_RANK, e);
        return *na < 0 ? *na : 0;
    }
    if (a == NULL)
        return 0;
    INFER_NEED(a->type == INFER_AT_INTS && a->n <= INFER_MAX_RANK, "bad axes");
    *na = (int)a->n;
    memcpy(ax, a->ints, sizeof(int64_t) * a->n);
    return 0;
}

static int squeeze_shape(const struct infer_node *n, struct infer_tensor *const *in,
                         struct infer_tensor *const *out, struct infer_err *e)
{
    int64_t ax[INFER_MAX_RANK];
    bool drop[INFER_MAX_RANK] = {0};
    int na, err, r = 0;

    INFER_NEED(n->n_in >= 1 && in[0] && n->n_out == 1, "needs data");
    err = axes_of(n, in, ax, &na, e);
    if (err != 0)
        return err;
    for (int i = 0; i < na; i++) {
        int a;
        if (infer__axis(ax[i], in[0]->rank, &a, e) != 0)
            return -EINVAL;
        INFER_NEED(in[0]->dims[a] == 1, "cannot squeeze axis %d of size %lld", a,
                   (long long)in[0]->dims[a]);
        drop[a] = true;
    }
    for (int i = 0; i < in[0]->rank; i++) {
        if (na == 0 && in[0]->dims[i] == 1)
            continue;
        if (!drop[i])
            out[0]->dims[r++] = in[0]->dims[i];
    }
    out[0]->rank = r;
    out[0]->dtype = in[0]->dtype;
    return 0;
}

const struct infer_op infer__op_squeeze = {.name = "Squeeze",
                                           .domain = "",
                                           .value_inputs = 2,
                                           .shape = squeeze_shape,
                                           .run = infer__copy_run};

static int unsqueeze_shape(const struct infer_node *n, struct infer_tensor *const *in,
                           struct infer_tensor *const *out, struct infer_err *e)
{
    int64_t ax[INFER_MAX_RANK];
    bool ins[INFER_MAX_RANK] = {0};
    int na, err, r, k = 0;

    INFER_NEED(n->n_in >= 1 && in[0] && n->n_out == 1, "needs data");
    err = axes_of(n, in, ax, &na, e);
    if (err != 0)
        return err;
    INFER_NEED(na > 0, "axes required");
    r = in[0]->rank + na;
    INFER_NEED(r <= INFER_MAX_RANK, "output rank %d over %d", r, INFER_MAX_RANK);
    for (int i = 0; i < na; i++) {
        int a;
        if (infer__axis(ax[i], r, &a, e) != 0)
            return -EINVAL;
        INFER_NEED(!ins[a], "axis %d repeated", a);
        ins[a] = true;
    }
    for (int i = 0; i < r; i++)
        out[0]->dims[i] = ins[i] ? 1 : in[0]->dims[k++];
    out[0]->rank = r;
    out[0]->dtype = in[0]->dtype;
    return 0;
}

const struct infer_op infer__op_unsqueeze = {.name = "Unsqueeze",
                                             .domain = "",
                                             .value_inputs = 2,
                                             .shape = unsqueeze_shape,
                                             .run = infer__copy_run};

/* ---- Transpose ---- */

static int perm_of(const struct infer_node *n, int rank, int *perm, struct infer_err *e)
{
    const struct infer_attr *a = infer__attr(n, "perm");
    bool seen[INFER_MAX_RANK] = {0};

    if (a == NULL) {
        for (int i = 0; i < rank; i++)
            perm[i] = rank - 1 - i;
        return 0;
    }
    INFER_NEED(a->type == INFER_AT_INTS && (int)a->n == rank, "perm must list %d axes", rank);
    for (int i = 0; i < rank; i++) {
        INFER_NEED(a->ints[i] >= 0 && a->ints[i] < rank && !seen[a->ints[i]], "bad perm");
        seen[a->ints[i]] = true;
        perm[i] = (int)a->ints[i];
    }
    return 0;
}

static int transpose_shape(const struct infer_node *n, struct infer_tensor *const *in,
                           struct infer_tensor *const *out, struct infer_err *e)
{
    int perm[INFER_MAX_RANK];

    INFER_NEED(n->n_in == 1 && in[0] && n->n_out == 1, "needs 1 input");
    if (perm_of(n, in[0]->rank, perm, e) != 0)
        return -EINVAL;
    out[0]->dtype = in[0]->dtype;
    out[0]->rank = in[0]->rank;
    for (int i = 0; i < in[0]->rank; i++)
        out[0]->dims[i] = in[0]->dims[perm[i]];
    return 0;
}

/* Copies a strided view (dims/strides in elements) of `src` into contiguous `dst`. */
static void strided_copy(char *dst, const char *src, int rank, const int64_t *dims,
                         const int64_t *st, size_t es, int64_t total)
{
    int64_t idx[INFER_MAX_RANK] = {0}, off = 0;

    if (total == 0)
        return;
    if (rank == 0) {
        memcpy(dst, src, es);
        return;
    }
    for (int64_t i = 0; i < total; i++) {
        memcpy(dst + i * (int64_t)es, src + off * (int64_t)es, es);
        for (int d = rank - 1; d >= 0; d--) {
            off += st[d];
            if (++idx[d] < dims[d])
                break;
            off -= st[d] * dims[d];
            idx[d] = 0;
        }
    }
}

static int transpose_run(const struct infer_node *n, struct infer_tensor *const *in,
                         struct infer_tensor *const *out, void *scratch, struct infer_err *e)
{
    int perm[INFER_MAX_RANK], r = in[0]->rank;
    int64_t ist[INFER_MAX_RANK], st[INFER_MAX_RANK], s = 1;

    perm_of(n, r, perm, NULL);
    for (int d = r - 1; d >= 0; d--) {
        ist[d] = s;
        s *= in[0]->dims[d];
    }
    for (int i = 0; i < r; i++)
        st[i] = ist[perm[i]];
    strided_copy(out[0]->data, in[0]->data, r, out[0]->dims, st, infer_dtype_size(in[0]->dtype),
                 infer_tensor_numel(out[0]));
    return 0;
}

const struct infer_op infer__op_transpose = {.name = "Transpose",
                                             .domain = "",
                                             .shape = transpose_shape,
                                             .run = transpose_run};

/* ---- Gather ---- */

static int gather_shape(const struct infer_node *n, struct infer_tensor *const *in,
                        struct infer_tensor *const *out, struct infer_err *e)
{
    int axis, r = 0;

    INFER_NEED(n->n_in == 2 && in[0] && in[1] && n->n_out == 1, "needs data and indices");
    INFER_NEED(in[1]->dtype == INFER_DT_INT64 || in[1]->dtype == INFER_DT_INT32,
               "indices must be int32 or int64, got %s", infer_dtype_name(in[1]->dtype));
    INFER_NEED(in[0]->rank >= 1, "data must have rank >= 1");
    if (infer__axis(infer__attr_i(n, "axis", 0), in[0]->rank, &axis, e) != 0)
        return -EINVAL;
    INFER_NEED(in[0]->rank - 1 + in[1]->rank <= INFER_MAX_RANK, "output rank too large");
    for (int i = 0; i < axis; i++)
        out[0]->dims[r++] = in[0]->dims[i];
    for (int i = 0; i < in[1]->rank; i++)
        out[0]->dims[r++] = in[1]->dims[i];
    for (int i = axis + 1; i < in[0]->rank; i++)
        out[0]->dims[r++] = in[0]->dims[i];
    out[0]->rank = r;
    out[0]->dtype = in[0]->dtype;
    return 0;
}

static int gather_run(const struct infer_node *n, struct infer_tensor *const *in,
                      struct infer_tensor *const *out, void *scratch, struct infer_err *e)
{
    int axis;
    int64_t outer = 1, inner = 1, dim, ni = infer_tensor_numel(in[1]);
    size_t es = infer_dtype_size(in[0]->dtype), blk;
    const char *src = in[0]->data;
    char *dst = out[0]->data;

    infer__axis(infer__attr_i(n, "axis", 0), in[0]->rank, &axis, NULL);
    for (int i = 0; i < axis; i++)
        outer *= in[0]->dims[i];
    for (int i = axis + 1; i < in[0]->rank; i++)
        inner *= in[0]->dims[i];
    dim = in[0]->dims[axis];
    blk = (size_t)inner * es;
    for (int64_t j = 0; j < ni; j++) {
        int64_t k = infer__get_i64(in[1], j);
        if (k < -dim || k >= dim)
            return infer__errf(e, -ERANGE, "index %lld out of range [%lld, %lld) at position %lld",
                               (long long)k, (long long)-dim, (long long)dim, (long long)j);
    }
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < ni; j++) {
            int64_t k = infer__get_i64(in[1], j);
            if (k < 0)
                k += dim;
            memcpy(dst + (o * ni + j) * blk, src + (o * dim + k) * blk, blk);
        }
    return 0;
}

const struct infer_op infer__op_gather = {.name = "Gather",
                                          .domain = "",
                                          .shape = gather_shape,
                                          .run = gather_run};

/* ---- Concat ---- */

static int concat_shape(const struct infer_node *n, struct infer_tensor *const *in,
                        struct infer_tensor *const *out, struct infer_err *e)
{
    const struct infer_attr *a = infer__attr(n, "axis");
    int axis, r;

    INFER_NEED(n->n_in >= 1 && n->n_out == 1, "needs inputs");
    INFER_NEED(a != NULL && a->type == INFER_AT_INT, "axis required");
    for (int i = 0; i < n->n_in; i++)
        INFER_NEED(in[i] != NULL, "input %d missing", i);
    r = in[0]->rank;
    INFER_NEED(r >= 1, "inputs must have rank >= 1");
    if (infer__axis(a->i, r, &axis, e) != 0)
        return -EINVAL;
    infer_like(out[0], in[0]);
    for (int i = 1; i < n->n_in; i++) {
        INFER_NEED(in[i]->dtype == in[0]->dtype, "input %d dtype differs", i);
        INFER_NEED(in[i]->rank == r, "input %d rank %d, expected %d", i, in[i]->rank, r);
        for (int d = 0; d < r; d++)
            INFER_NEED(d == axis || in[i]->dims[d] == in[0]->dims[d],
                       "input %d dim %d is %lld, expected %lld", i, d, (long long)in[i]->dims[d],
                       (long long)in[0]->dims[d]);
        out[0]->dims[axis] += in[i]->dims[axis];
    }
    return 0;
}

static int concat_run(const struct infer_node *n, struct infer_tensor *const *in,
                      struct infer_tensor *const *out, void *scratch, struct infer_err *e)
{
    int axis;
    int64_t outer = 1, inner = 1;
    size_t es = infer_dtype_size(out[0]->dtype), orow;
    char *dst = out[0]->data;

    infer__axis(infer__attr_i(n, "axis", 0), out[0]->rank, &axis, NULL);
    for (int i = 0; i < axis; i++)
        outer *= out[0]->dims[i];
    for (int i = axis + 1; i < out[0]->rank; i++)
        inner *= out[0]->dims[i];
    orow = (size_t)(out[0]->dims[axis] * inner) * es;
    for (int64_t o = 0; o < outer; o++) {
        size_t off = 0;
        for (int i = 0; i < n->n_in; i++) {
            size_t b = (size_t)(in[i]->dims[axis] * inner) * es;
            if (b)
                memcpy(dst + o * orow + off, (const char *)in[i]->data + o * b, b);
            off += b;
        }
    }
    return 0;
}

const struct infer_op infer__op_concat = {.name = "Concat",
                                          .domain = "",
                                          .shape = concat_shape,
                                          .run = concat_run};

/* ---- Expand ---- */

static int expand_shape(const struct infer_node *n, struct infer_tensor *const *in,
                        struct infer_tensor *const *out, struct infer_err *e)
{
    struct infer_tensor sh = {0};
    struct infer_tensor *pair[2] = {in[0], &sh};
    int r;

    INFER_NEED(n->n_in == 2 && in[0] && in[1] && n->n_out == 1, "needs input and shape");
    if (in[1]->data == NULL)
        return INFER_UNKNOWN;
    r = infer__read_ints(in[1], sh.dims, INFER_MAX_RANK, e);
    if (r < 0)
        return r;
    sh.rank = r;
    for (int i = 0; i < r; i++)
        INFER_NEED(sh.dims[i] >= 0, "negative dim in shape");
    out[0]->dtype = in[0]->dtype;
    return infer__broadcast(pair, 2, out[0], e);
}

static int expand_run(const struct infer_node *n, struct infer_tensor *const *in,
                      struct infer_tensor *const *out, void *scratch, struct infer_err *e)
{
    struct infer_bc bc;
    size_t es = infer_dtype_size(in[0]->dtype);
    const char *x = in[0]->data;
    char *y = out[0]->data;

    infer_bc_init(&bc, in, 1, out[0]);
    INFER_BC_ROWS(&bc, {
        if (s0)
            memcpy(y + oo * es, x + o0 * es, (size_t)inner * es);
        else
            for (int64_t i = 0; i < inner; i++)
                memcpy(y + (oo + i) * es, x + o0 * es, es);
    });
    return 0;
}

const struct infer_op infer__op_expand = {.name = "Expand",
                                          .domain = "",
                                          .value_inputs = 2,
                                          .shape = expand_shape,
                                          .run = expand_run};

/* ---- Slice ---- */

struct slice_p {
    int64_t start[INFER_MAX_RANK], step[INFER_MAX_RANK];
};

static int slice_params(const struct infer_node *n, struct infer_tensor *const *in,
                        struct slice_p *p, struct infer_tensor *o, struct infer_err *e)
{
    int64_t st[INFER_MAX_RANK], en[INFER_MAX_RANK], ax[INFER_MAX_RANK], sp[INFER_MAX_RANK];
    int ns, ne, na, nsp, r = in[0]->rank;
    bool seen[INFER_MAX_RANK] = {0};

    if (n->opset < 10) {
        const struct infer_attr *as = infer__attr(n, "starts"), *ae = infer__attr(n, "ends"),
                                *aa = infer__attr(n, "axes");
        INFER_NEED(as && ae && as->type == INFER_AT_INTS && ae->type == INFER_AT_INTS &&
                       as->n <= INFER_MAX_RANK && ae->n == as->n,
                   "starts/ends attributes required, same length");
        ns = ne = (int)as->n;
        memcpy(st, as->ints, sizeof(int64_t) * ns);
        memcpy(en, ae->ints, sizeof(int64_t) * ne);
        na = ns;
        if (aa != NULL) {
            INFER_NEED(aa->type == INFER_AT_INTS && (int)aa->n == ns, "axes length differs");
            memcpy(ax, aa->ints, sizeof(int64_t) * na);
        } else {
            for (int i = 0; i < na; i++)
                ax[i] = i;
        }
        nsp = ns;
        for (int i = 0; i < ns; i++)
            sp[i] = 1;
    } else {
        INFER_NEED(n->n_in >= 3 && in[1] && in[2], "needs data, starts, ends");
        for (int i = 1; i < n->n_in; i++)
            if (in[i] != NULL && in[i]->data == NULL)
                return INFER_UNKNOWN;
        ns = infer__read_ints(in[1], st, INFER_MAX_RANK, e);
        ne = ns < 0 ? -1 : infer__read_ints(in[2], en, INFER_MAX_RANK, e);
        if (ns < 0 || ne < 0)
            return -EINVAL;
        INFER_NEED(ns == ne, "starts and ends differ in length");
        if (n->n_in > 3 && in[3] != NULL) {
            na = infer__read_ints(in[3], ax, INFER_MAX_RANK, e);
            if (na < 0)
                return na;
            INFER_NEED(na == ns, "axes length differs");
        } else {
            na = ns;
            for (int i = 0; i < na; i++)
                ax[i] = i;
        }
        if (n->n_in > 4 && in[4] != NULL) {
            nsp = infer__read_ints(in[4], sp, INFER_MAX_RANK, e);
            if (nsp < 0)
                return nsp;
            INFER_NEED(nsp == ns, "steps length differs");
        } else {
            nsp = ns;
            for (int i = 0; i < ns; i++)
                sp[i] = 1;
        }
    }
    infer_like(o, in[0]);
    for (int d = 0; d < r; d++) {
        p->start[d] = 0;
        p->step[d] = 1;
    }
    for (int i = 0; i < ns; i++) {
        int a;
        int64_t dim, s, t, k = sp[i];
        if (infer__axis(ax[i], r, &a, e) != 0)
            return -EINVAL;
        INFER_NEED(!seen[a], "axis %d repeated", a);
        seen[a] = true;
        INFER_NEED(k != 0, "step 0");
        if (k == INT64_MIN)
            k = -INT64_MAX;
        dim = in[0]->dims[a];
        s = st[i];
        t = en[i];
        /* ONNX Slice: negative bounds count from the end, then clamp; the clamp range
         * depends on the direction of the step. */
        if (s < 0)
            s = s < -dim ? -1 : s + dim;
        if (t < 0)
            t = t < -dim ? -1 : t + dim;
        if (k > 0) {
            s = s < 0 ? 0 : s > dim ? dim : s;
            t = t < 0 ? 0 : t > dim ? dim : t;
            o->dims[a] = t > s ? (t - s - 1) / k + 1 : 0;
        } else {
            s = s < 0 ? (dim ? 0 : -1) : s > dim - 1 ? dim - 1 : s;
            t = t < -1 ? -1 : t > dim - 1 ? dim - 1 : t;
            o->dims[a] = s > t ? (s - t - 1) / (-k) + 1 : 0;
            if (dim == 0)
                o->dims[a] = 0;
        }
        p->start[a] = s;
        p->step[a] = k;
    }
    (void)nsp;
    return 0;
}

static int slice_shape(const struct infer_node *n, struct infer_tensor *const *in,
                       struct infer_tensor *const *out, struct infer_err *e)
{
    struct slice_p p;

    INFER_NEED(n->n_in >= 1 && in[0] && n->n_out == 1, "needs data");
    return slice_params(n, in, &p, out[0], e);
}

static int slice_run(const struct infer_node *n, struct infer_tensor *const *in,
                     struct infer_tensor *const *out, void *scratch, struct infer_err *e)
{
    struct slice_p p;
    struct infer_tensor o;
    int64_t ist[INFER_MAX_RANK], st[INFER_MAX_RANK], s = 1, base = 0;
    int r = in[0]->rank, err;
    size_t es = infer_dtype_size(in[0]->dtype);
    int64_t total = infer_tensor_numel(out[0]);

    err = slice_params(n, in, &p, &o, e);
    if (err != 0)
        return err < 0 ? err : infer__errf(e, -EINVAL, "bounds unknown");
    if (total == 0)
        return 0;
    for (int d = r - 1; d >= 0; d--) {
        ist[d] = s;
        s *= in[0]->dims[d];
    }
    for (int d = 0; d < r; d++) {
        st[d] = ist[d] * p.step[d];
        base += p.start[d] * ist[d];
    }
    strided_copy(out[0]->data, (const char *)in[0]->data + base * (int64_t)es, r, out[0]->dims, st,
                 es, total);
    return 0;
}

const struct infer_op infer__op_slice = {.name = "Slice",
                                         .domain = "",
                                         .value_inputs = 0x1e,
                                         .shape = slice_shape,
                                         .run = slice_run};
