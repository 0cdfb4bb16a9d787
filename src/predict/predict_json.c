/* src/predict/predict_json.c: JSON <-> tensor elements for the prediction endpoints.
 *
 * Pure functions (no I/O, no locks), unit-tested in tests/unit/edge. Decoding walks a
 * jansson value depth-first, flattening nested arrays into C order; every leaf is checked
 * against the expected JSON form of its dtype, and an error names the offending field
 * with its index path ("features[2][5]: expected a number, got a string"). Encoding
 * writes floats with %.9g (enough digits to round-trip a float32), NaN/Inf as null. */
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "predict/predict_int.h"

#define PJ_MAX_DEPTH (INFER_MAX_RANK + 1)

struct walk {
    int decl;  /* dtype whose JSON form the leaves must have */
    int dtype; /* dtype written */
    unsigned char *dst;
    size_t esize;
    int64_t n, cap;
    const char *field;
    char *msg;
    size_t mlen;
    int depth;
    size_t idx[PJ_MAX_DEPTH];
};

static const char *jtype(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

static const char *want(int dtype)
{
    switch (dtype) {
    case INFER_DT_FLOAT:
    case INFER_DT_DOUBLE: return "a number";
    case INFER_DT_BOOL: return "a boolean";
    case INFER_DT_INT32: return "an integer in the int32 range";
    default: return "an integer";
    }
}

static int fail(struct walk *w, const json_t *v, const char *what)
{
    size_t o = (size_t)snprintf(w->msg, w->mlen, "%s", w->field);
    for (int i = 0; i < w->depth && o < w->mlen; i++)
        o += (size_t)snprintf(w->msg + o, w->mlen - o, "[%zu]", w->idx[i]);
    if (o < w->mlen) {
        if (what)
            snprintf(w->msg + o, w->mlen - o, ": %s", what);
        else
            snprintf(w->msg + o, w->mlen - o, ": expected %s, got %s", want(w->decl), jtype(v));
    }
    return -1;
}

static int leaf(struct walk *w, const json_t *v)
{
    double d = 0;
    long long i = 0;
    int is_int = 0;

    switch (w->decl) {
    case INFER_DT_FLOAT:
    case INFER_DT_DOUBLE:
        if (json_is_integer(v)) {
            i = json_integer_value(v);
            d = (double)i;
            is_int = 1;
        } else if (json_is_real(v)) {
            d = json_real_value(v);
        } else {
            return fail(w, v, NULL);
        }
        /* A float32 input cannot hold it (and the conversion would be undefined). */
        if (w->dtype == INFER_DT_FLOAT && fabs(d) > FLT_MAX)
            return fail(w, v, "number out of the float32 range");
        break;
    case INFER_DT_BOOL:
        if (!json_is_boolean(v))
            return fail(w, v, NULL);
        i = json_is_true(v);
        d = (double)i;
        is_int = 1;
        break;
    case INFER_DT_INT32:
    case INFER_DT_INT64:
        if (!json_is_integer(v))
            return fail(w, v, NULL);
        i = json_integer_value(v);
        if (w->decl == INFER_DT_INT32 && (i < INT32_MIN || i > INT32_MAX))
            return fail(w, v, NULL);
        d = (double)i;
        is_int = 1;
        break;
    default:
        return fail(w, v, "unsupported datatype");
    }
    if (w->n >= w->cap && w->dst)
        return fail(w, v, "more elements than expected");
    if (w->dst) {
        unsigned char *p = w->dst + (size_t)w->n * w->esize;
        switch (w->dtype) {
        case INFER_DT_FLOAT: {
            float f = (float)d;
            memcpy(p, &f, 4);
            break;
        }
        case INFER_DT_DOUBLE:
            memcpy(p, &d, 8);
            break;
        case INFER_DT_INT64: {
            int64_t x = is_int ? (int64_t)i : (int64_t)d;
            memcpy(p, &x, 8);
            break;
        }
        case INFER_DT_INT32: {
            if (i < INT32_MIN || i > INT32_MAX)
                return fail(w, v, "value out of the int32 range of the model's input");
            int32_t x = (int32_t)i;
            memcpy(p, &x, 4);
            break;
        }
        case INFER_DT_BOOL:
            *p = (i != 0 || d != 0);
            break;
        default:
            return fail(w, v, "unsupported datatype");
        }
    }
    w->n++;
    return 0;
}

static int walk(struct walk *w, const json_t *v)
{
    if (!json_is_array(v))
        return leaf(w, v);
    if (w->depth >= PJ_MAX_DEPTH)
        return fail(w, v, "arrays nested too deeply");
    size_t n = json_array_size(v);
    int d = w->depth++;
    for (size_t k = 0; k < n; k++) {
        w->idx[d] = k;
        if (walk(w, json_array_get(v, k)) != 0)
            return -1;
    }
    w->depth--;
    return 0;
}

int64_t predict__json_count(const json_t *v, int dtype, const char *field, char *msg, size_t mlen)
{
    struct walk w = {.decl = dtype, .dtype = dtype, .field = field, .msg = msg, .mlen = mlen};
    if (!v)
        return fail(&w, v, "missing");
    if (walk(&w, v) != 0)
        return -1;
    return w.n;
}

int predict__json_fill(const json_t *v, int decl, int dtype, void *dst, int64_t count,
                 const char *field, char *msg, size_t mlen)
{
    struct walk w = {.decl = decl ? decl : dtype, .dtype = dtype, .dst = dst,
                     .esize = infer_dtype_size(dtype), .cap = count, .field = field,
                     .msg = msg, .mlen = mlen};
    if (!v)
        return fail(&w, v, "missing");
    if (walk(&w, v) != 0)
        return -1;
    if (w.n != count) {
        snprintf(msg, mlen, "%s: expected %" PRId64 " elements, got %" PRId64, field, count,
                 w.n);
        return -1;
    }
    return 0;
}

int predict__json_oip_dtype(const char *s)
{
    if (!strcmp(s, "FP32"))
        return INFER_DT_FLOAT;
    if (!strcmp(s, "FP64"))
        return INFER_DT_DOUBLE;
    if (!strcmp(s, "INT64"))
        return INFER_DT_INT64;
    if (!strcmp(s, "INT32"))
        return INFER_DT_INT32;
    if (!strcmp(s, "BOOL"))
        return INFER_DT_BOOL;
    return 0;
}

const char *predict__json_oip_name(int dtype)
{
    switch (dtype) {
    case INFER_DT_FLOAT: return "FP32";
    case INFER_DT_DOUBLE: return "FP64";
    case INFER_DT_INT64: return "INT64";
    case INFER_DT_INT32: return "INT32";
    case INFER_DT_BOOL: return "BOOL";
    case INFER_DT_UINT8: return "UINT8";
    case INFER_DT_INT8: return "INT8";
    case INFER_DT_INT16: return "INT16";
    case INFER_DT_UINT16: return "UINT16";
    case INFER_DT_UINT32: return "UINT32";
    case INFER_DT_UINT64: return "UINT64";
    case INFER_DT_FLOAT16: return "FP16";
    case INFER_DT_BFLOAT16: return "BF16";
    case INFER_DT_STRING: return "BYTES";
    default: return "UNKNOWN";
    }
}

void predict__json_elem(struct buf *b, int dtype, const void *data, int64_t i)
{
    char tmp[40];
    int n;
    const unsigned char *p = data;

    switch (dtype) {
    case INFER_DT_FLOAT: {
        float f;
        memcpy(&f, p + i * 4, 4);
        if (!isfinite(f)) {
            buf_append(b, "null", 4);
            return;
        }
        n = snprintf(tmp, sizeof(tmp), "%.9g", (double)f);
        break;
    }
    case INFER_DT_DOUBLE: {
        double d;
        memcpy(&d, p + i * 8, 8);
        if (!isfinite(d)) {
            buf_append(b, "null", 4);
            return;
        }
        n = snprintf(tmp, sizeof(tmp), "%.17g", d);
        break;
    }
    case INFER_DT_INT64: {
        int64_t x;
        memcpy(&x, p + i * 8, 8);
        n = snprintf(tmp, sizeof(tmp), "%" PRId64, x);
        break;
    }
    case INFER_DT_UINT64: {
        uint64_t x;
        memcpy(&x, p + i * 8, 8);
        n = snprintf(tmp, sizeof(tmp), "%" PRIu64, x);
        break;
    }
    case INFER_DT_INT32: {
        int32_t x;
        memcpy(&x, p + i * 4, 4);
        n = snprintf(tmp, sizeof(tmp), "%" PRId32, x);
        break;
    }
    case INFER_DT_UINT32: {
        uint32_t x;
        memcpy(&x, p + i * 4, 4);
        n = snprintf(tmp, sizeof(tmp), "%" PRIu32, x);
        break;
    }
    case INFER_DT_INT16: {
        int16_t x;
        memcpy(&x, p + i * 2, 2);
        n = snprintf(tmp, sizeof(tmp), "%d", x);
        break;
    }
    case INFER_DT_UINT16: {
        uint16_t x;
        memcpy(&x, p + i * 2, 2);
        n = snprintf(tmp, sizeof(tmp), "%u", x);
        break;
    }
    case INFER_DT_INT8:
        n = snprintf(tmp, sizeof(tmp), "%d", (int)((const int8_t *)data)[i]);
        break;
    case INFER_DT_UINT8:
        n = snprintf(tmp, sizeof(tmp), "%u", (unsigned)p[i]);
        break;
    case INFER_DT_BOOL:
        if (p[i])
            buf_append(b, "true", 4);
        else
            buf_append(b, "false", 5);
        return;
    default:
        buf_append(b, "null", 4);
        return;
    }
    buf_append(b, tmp, (size_t)n);
}

static void nested(struct buf *b, int dtype, const void *data, const int64_t *dims, int rank,
                   int64_t *pos)
{
    buf_append(b, "[", 1);
    for (int64_t k = 0; k < dims[0]; k++) {
        if (k)
            buf_append(b, ",", 1);
        if (rank > 1)
            nested(b, dtype, data, dims + 1, rank - 1, pos);
        else
            predict__json_elem(b, dtype, data, (*pos)++);
    }
    buf_append(b, "]", 1);
}

void predict__json_tensor(struct buf *b, int dtype, const void *data, const int64_t *dims, int rank,
                    int scalar)
{
    int64_t n = 1, pos = 0;
    for (int i = 0; i < rank; i++)
        n *= dims[i];
    if (scalar && n == 1) {
        predict__json_elem(b, dtype, data, 0);
        return;
    }
    if (rank <= 1) {
        int64_t d = n;
        nested(b, dtype, data, &d, 1, &pos);
        return;
    }
    nested(b, dtype, data, dims, rank, &pos);
}

void predict__json_str(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t start = 0;

    buf_append(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        buf_append(b, s + start, i - start);
        start = i + 1;
        char esc[7] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0};
        if (c == '"' || c == '\\') {
            esc[1] = (char)c;
            buf_append(b, esc, 2);
        } else if (c == '\n') {
            buf_append(b, "\\n", 2);
        } else {
            buf_append(b, esc, 6);
        }
    }
    buf_append(b, s + start, n - start);
    buf_append(b, "\"", 1);
}

/* ---- the /predict fast path ---- */

static const double pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static const char *ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* A JSON number at p. Values with at most 15 significant digits and a power of ten
 * within 1e±22 are computed exactly (Clinger's fast path: one correctly rounded IEEE
 * operation, the same double strtod returns); anything else goes through strtod. */
static const char *number(const char *p, const char *end, double *out)
{
    const char *s = p;
    uint64_t m = 0;
    int digits = 0, e10 = 0, neg = 0, simple = 1;

    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    if (p >= end || *p < '0' || *p > '9')
        return NULL;
    if (*p == '0') {
        p++;
    } else {
        while (p < end && *p >= '0' && *p <= '9') {
            if (digits < 19)
                m = m * 10 + (uint64_t)(*p - '0');
            else
                simple = 0;
            digits += m != 0;
            p++;
        }
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9')
            return NULL;
        while (p < end && *p >= '0' && *p <= '9') {
            if (digits < 19) {
                m = m * 10 + (uint64_t)(*p - '0');
                e10--;
            } else {
                simple = 0;
            }
            digits += m != 0;
            p++;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        simple = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || *p < '0' || *p > '9')
            return NULL;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    /* Integer literals are int64 in jansson: it refuses those out of range (leave them to
     * it, for the same answer) and reads -0 as 0. */
    if (!memchr(s, '.', (size_t)(p - s)) && !memchr(s, 'e', (size_t)(p - s)) &&
        !memchr(s, 'E', (size_t)(p - s))) {
        if (p - s > 18)
            return NULL;
        if (m == 0)
            neg = 0;
    }
    if (simple && digits <= 15 && e10 >= -22) {
        double d = (double)m;
        d = e10 < 0 ? d / pow10_exact[-e10] : d;
        *out = neg ? -d : d;
        return p;
    }
    char tmp[64];
    if ((size_t)(p - s) >= sizeof(tmp))
        return NULL;
    memcpy(tmp, s, (size_t)(p - s));
    tmp[p - s] = '\0';
    char *te;
    *out = strtod(tmp, &te);
    if (*te || !isfinite(*out))
        return NULL;
    return p;
}

/* A string without escapes (model names never need them); NULL otherwise. */
static const char *plain_string(const char *p, const char *end, const char **s, size_t *n)
{
    if (p >= end || *p != '"')
        return NULL;
    const char *q = ++p;
    while (q < end && *q != '"') {
        if (*q == '\\' || (unsigned char)*q < 0x20 || (unsigned char)*q >= 0x80)
            return NULL; /* escapes and non-ASCII (UTF-8 to validate): the full decoder */
        q++;
    }
    if (q >= end)
        return NULL;
    *s = p;
    *n = (size_t)(q - p);
    return q + 1;
}

int predict__json_fast_predict(const char *body, size_t len, struct predict_json_fast *out)
{
    const char *p = body, *end = body + len;
    int have_features = 0;

    out->model = NULL;
    out->model_len = 0;
    out->version = -1;
    out->n = 0;
    p = ws(p, end);
    if (p >= end || *p++ != '{')
        return 0;
    for (;;) {
        const char *k;
        size_t kn;
        p = ws(p, end);
        if (!(p = plain_string(p, end, &k, &kn)))
            return 0;
        p = ws(p, end);
        if (p >= end || *p++ != ':')
            return 0;
        p = ws(p, end);
        if (kn == 5 && !memcmp(k, "model", 5) && !out->model) {
            if (!(p = plain_string(p, end, &out->model, &out->model_len)))
                return 0;
            if (!out->model_len)
                return 0;
        } else if (kn == 8 && !memcmp(k, "features", 8) && !have_features) {
            int nested = 0;
            if (p >= end || *p++ != '[')
                return 0;
            p = ws(p, end);
            if (p < end && *p == '[') {
                nested = 1;
                p = ws(p + 1, end);
            }
            for (;;) {
                double d;
                if (out->n >= out->cap || !(p = number(p, end, &d)) || fabs(d) > FLT_MAX)
                    return 0;
                out->vals[out->n++] = d;
                p = ws(p, end);
                if (p < end && *p == ',') {
                    p = ws(p + 1, end);
                    continue;
                }
                break;
            }
            if (p >= end || *p++ != ']')
                return 0;
            if (nested) {
                p = ws(p, end);
                if (p >= end || *p++ != ']')
                    return 0;
            }
            have_features = 1;
        } else if (kn == 13 && !memcmp(k, "model_version", 13) && out->version < 0) {
            double d;
            const char *q = number(p, end, &d);
            if (!q || d < 0 || d > 1e15 || d != (double)(int64_t)d)
                return 0;
            out->version = (int64_t)d;
            p = q;
        } else {
            return 0;
        }
        p = ws(p, end);
        if (p < end && *p == ',') {
            p++;
            continue;
        }
        break;
    }
    if (p >= end || *p++ != '}')
        return 0;
    p = ws(p, end);
    return p == end && have_features;
}
