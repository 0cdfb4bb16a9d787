/* tests/unit/infer/onnx_build.h: writes ONNX protobuf bytes by hand for the tests.
 *
 * A tiny wire-format encoder (varints, length-delimited fields) plus helpers for the few
 * ONNX messages the tests need. Writing the bytes directly, instead of going through the
 * generated protobuf-c structs, also lets tests build malformed messages on purpose.
 * Every helper returns a heap buffer (struct pb) that the caller embeds or frees. */
#ifndef TESTS_INFER_ONNX_BUILD_H
#define TESTS_INFER_ONNX_BUILD_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct pb {
    uint8_t *b;
    size_t n, cap;
};

static inline void pb_put(struct pb *w, const void *p, size_t n)
{
    if (w->n + n > w->cap) {
        w->cap = (w->n + n) * 2 + 64;
        w->b = realloc(w->b, w->cap);
    }
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

static inline void pb_raw_varint(struct pb *w, uint64_t v)
{
    uint8_t tmp[10];
    size_t k = 0;

    do {
        tmp[k] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            tmp[k] |= 0x80;
        k++;
    } while (v);
    pb_put(w, tmp, k);
}

static inline void pb_varint(struct pb *w, uint32_t field, uint64_t v)
{
    pb_raw_varint(w, (uint64_t)field << 3);
    pb_raw_varint(w, v);
}

static inline void pb_bytes(struct pb *w, uint32_t field, const void *p, size_t n)
{
    pb_raw_varint(w, (uint64_t)field << 3 | 2);
    pb_raw_varint(w, n);
    if (n)
        pb_put(w, p, n);
}

static inline void pb_str(struct pb *w, uint32_t field, const char *s)
{
    pb_bytes(w, field, s, strlen(s));
}

/* Appends sub as field `field` and frees it. */
static inline void pb_msg(struct pb *w, uint32_t field, struct pb sub)
{
    pb_bytes(w, field, sub.b, sub.n);
    free(sub.b);
}

static inline void pb_f32(struct pb *w, uint32_t field, float f)
{
    pb_raw_varint(w, (uint64_t)field << 3 | 5);
    pb_put(w, &f, 4);
}

/* ---- ONNX helpers ---- */

#define OB_BATCH (-1) /* a dim named "batch" */

static inline struct pb ob_tensor(const char *name, int dtype, int rank, const int64_t *dims,
                                  const void *raw, size_t raw_len)
{
    struct pb t = {0};

    for (int i = 0; i < rank; i++)
        pb_varint(&t, 1, (uint64_t)dims[i]);
    pb_varint(&t, 2, (uint64_t)dtype);
    pb_str(&t, 8, name);
    pb_bytes(&t, 9, raw, raw_len);
    return t;
}

static inline struct pb ob_value_info(const char *name, int dtype, int rank, const int64_t *dims)
{
    struct pb vi = {0}, type = {0}, tt = {0}, shape = {0};

    for (int i = 0; i < rank; i++) {
        struct pb d = {0};
        if (dims[i] < 0)
            pb_str(&d, 2, "batch");
        else
            pb_varint(&d, 1, (uint64_t)dims[i]);
        pb_msg(&shape, 1, d);
    }
    pb_varint(&tt, 1, (uint64_t)dtype);
    pb_msg(&tt, 2, shape);
    pb_msg(&type, 1, tt);
    pb_str(&vi, 1, name);
    pb_msg(&vi, 2, type);
    return vi;
}

static inline struct pb ob_attr_i(const char *name, int64_t v)
{
    struct pb a = {0};

    pb_str(&a, 1, name);
    pb_varint(&a, 20, 2);
    pb_varint(&a, 3, (uint64_t)v);
    return a;
}

static inline struct pb ob_attr_f(const char *name, float v)
{
    struct pb a = {0};

    pb_str(&a, 1, name);
    pb_varint(&a, 20, 1);
    pb_f32(&a, 2, v);
    return a;
}

static inline struct pb ob_attr_s(const char *name, const char *v)
{
    struct pb a = {0};

    pb_str(&a, 1, name);
    pb_varint(&a, 20, 3);
    pb_str(&a, 4, v);
    return a;
}

static inline struct pb ob_attr_ints(const char *name, size_t n, const int64_t *v)
{
    struct pb a = {0};

    pb_str(&a, 1, name);
    pb_varint(&a, 20, 7);
    for (size_t i = 0; i < n; i++)
        pb_varint(&a, 8, (uint64_t)v[i]);
    return a;
}

static inline struct pb ob_attr_floats(const char *name, size_t n, const float *v)
{
    struct pb a = {0};

    pb_str(&a, 1, name);
    pb_varint(&a, 20, 6);
    for (size_t i = 0; i < n; i++)
        pb_f32(&a, 7, v[i]);
    return a;
}

static inline struct pb ob_attr_strings(const char *name, size_t n, const char *const *v)
{
    struct pb a = {0};

    pb_str(&a, 1, name);
    pb_varint(&a, 20, 8);
    for (size_t i = 0; i < n; i++)
        pb_str(&a, 9, v[i]);
    return a;
}

/* Inputs/outputs as NULL-terminated lists (use "" for an absent optional input); then
 * `nattr` attributes (struct pb values, consumed). */
static inline struct pb ob_node(const char *op, const char *domain, const char *name,
                                const char *const *in, const char *const *out, int nattr, ...)
{
    struct pb nd = {0};
    va_list ap;

    for (size_t i = 0; in && in[i]; i++)
        pb_str(&nd, 1, in[i]);
    for (size_t i = 0; out && out[i]; i++)
        pb_str(&nd, 2, out[i]);
    pb_str(&nd, 3, name);
    pb_str(&nd, 4, op);
    va_start(ap, nattr);
    for (int i = 0; i < nattr; i++)
        pb_msg(&nd, 5, va_arg(ap, struct pb));
    va_end(ap);
    if (domain && domain[0])
        pb_str(&nd, 7, domain);
    return nd;
}

/* Wraps a graph (consumed) into a model importing the default domain at `opset` and, when
 * ml_opset > 0, ai.onnx.ml. */
static inline struct pb ob_model(int opset, int ml_opset, struct pb graph)
{
    struct pb m = {0}, os = {0};

    pb_varint(&m, 1, 8);
    pb_str(&m, 2, "mlcdn-test");
    pb_msg(&m, 7, graph);
    pb_str(&os, 1, "");
    pb_varint(&os, 2, (uint64_t)opset);
    pb_msg(&m, 8, os);
    if (ml_opset > 0) {
        struct pb ml = {0};
        pb_str(&ml, 1, "ai.onnx.ml");
        pb_varint(&ml, 2, (uint64_t)ml_opset);
        pb_msg(&m, 8, ml);
    }
    return m;
}

/* Graph field numbers, for building graphs with pb_msg(). */
#define OB_G_NODE 1
#define OB_G_NAME 2
#define OB_G_INIT 5
#define OB_G_INPUT 11
#define OB_G_OUTPUT 12

#endif
