/* src/predict/predict_json.c: JSON <-> tensors for the prediction endpoints.
 *
 * Pure functions (no I/O, no locks), unit-tested in tests/unit/predict and fuzzed by
 * tests/fuzz/fuzz_predict_json.c. Element decoding walks a jansson value depth-first,
 * flattening nested arrays into C order; every leaf is checked against the expected JSON
 * form of its dtype, and an error names the offending field with its index path
 * ("features[2][5]: expected a number, got a string"). The body decoders (the /predict
 * fast path, the seed shapes, OIP v2) check a body against a version's inputs and write
 * its rows into per-input buffers; every refusal is a message naming the field, never a
 * partial request. Encoding writes floats with %.9g (enough digits to round-trip a
 * float32), NaN/Inf as null. */
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mc.h"
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
    default: return fail(w, v, "unsupported datatype");
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
        case INFER_DT_DOUBLE: memcpy(p, &d, 8); break;
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
        case INFER_DT_BOOL: *p = (i != 0 || d != 0); break;
        default: return fail(w, v, "unsupported datatype");
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
    struct walk w = {.decl = decl ? decl : dtype,
                     .dtype = dtype,
                     .dst = dst,
                     .esize = infer_dtype_size(dtype),
                     .cap = count,
                     .field = field,
                     .msg = msg,
                     .mlen = mlen};
    if (!v)
        return fail(&w, v, "missing");
    if (walk(&w, v) != 0)
        return -1;
    if (w.n != count) {
        snprintf(msg, mlen, "%s: expected %" PRId64 " elements, got %" PRId64, field, count, w.n);
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
    case INFER_DT_INT8: n = snprintf(tmp, sizeof(tmp), "%d", (int)((const int8_t *)data)[i]); break;
    case INFER_DT_UINT8: n = snprintf(tmp, sizeof(tmp), "%u", (unsigned)p[i]); break;
    case INFER_DT_BOOL:
        if (p[i])
            buf_append(b, "true", 4);
        else
            buf_append(b, "false", 5);
        return;
    default: buf_append(b, "null", 4); return;
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

void predict__json_io(struct buf *b, const struct predict_io *io, size_t n)
{
    buf_puts(b, "[");
    for (size_t i = 0; i < n; i++) {
        buf_puts(b, i ? ",{\"name\":" : "{\"name\":");
        buf_json_str(b, io[i].name, strlen(io[i].name));
        buf_printf(b, ",\"datatype\":\"%s\",\"shape\":[", predict__json_oip_name(io[i].dtype));
        for (int d = 0; d < io[i].rank; d++)
            buf_printf(b, "%s%" PRId64, d ? "," : "", io[i].dims[d]);
        buf_puts(b, "]}");
    }
    buf_puts(b, "]");
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

/* ---- request bodies ---- */

int predict__rows_alloc(struct predict_rows *d, const struct predict_version *v, size_t rows,
                        char *msg, size_t mlen)
{
    d->rows = rows;
    d->n_in = v->n_in;
    d->in = mc_xcalloc(v->n_in, sizeof(*d->in));
    for (size_t i = 0; i < v->n_in; i++) {
        size_t n = rows * v->in[i].row_bytes;
        /* Payload memory (rows are bounded by max_batch): a failure answers, never aborts. */
        d->in[i] = malloc(n ? n : 1);
        if (!d->in[i]) {
            snprintf(msg, mlen, "out of memory for %zu rows", rows);
            return -ENOMEM;
        }
    }
    return 0;
}

void predict__rows_fini(struct predict_rows *d)
{
    if (d->in) {
        for (size_t i = 0; i < d->n_in; i++)
            free(d->in[i]);
        free(d->in);
    }
    free(d->id);
    memset(d, 0, sizeof(*d));
}

/* "[4, 8]": the per-row shape of an input, for messages. */
static void shape_str(const struct predict_io *io, char *out, size_t len)
{
    size_t o = (size_t)snprintf(out, len, "[");
    for (int d = 1; d < io->rank && o < len; d++)
        o += (size_t)snprintf(out + o, len - o, "%s%" PRId64, d > 1 ? ", " : "", io->dims[d]);
    if (o < len)
        snprintf(out + o, len - o, "]");
}

static void io_names(const struct predict_io *io, size_t n, char *out, size_t len)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && o < len; i++)
        o += (size_t)snprintf(out + o, len - o, "%s%s", i ? ", " : "", io[i].name);
}

static int input_index(const struct predict_version *v, const char *name)
{
    for (size_t i = 0; i < v->n_in; i++)
        if (!strcmp(v->in[i].name, name))
            return (int)i;
    return -1;
}

static int check_rows(const struct predict_version *v, size_t rows, const char *field, char *msg,
                      size_t mlen)
{
    if (rows == 0) {
        snprintf(msg, mlen, "%s: expected at least one row", field);
        return -EINVAL;
    }
    if (rows > v->cfg.max_batch) {
        snprintf(msg, mlen, "%s: %zu rows is over max_batch %u of model %s", field, rows,
                 v->cfg.max_batch, v->name);
        return -EINVAL;
    }
    return 0;
}

/* ---- /predict and /batch_predict ---- */

int predict__json_seed_model(json_t *root, const char **name, int64_t *version, char *msg,
                             size_t mlen)
{
    json_t *jm = json_object_get(root, "model"), *jv = json_object_get(root, "model_version");

    *name = NULL;
    *version = -1;
    if (jm && !json_is_null(jm)) {
        if (!json_is_string(jm)) {
            snprintf(msg, mlen, "model: expected a string");
            return -EINVAL;
        }
        *name = json_string_value(jm);
    }
    if (!jv)
        jv = json_object_get(root, "version");
    if (jv && !json_is_null(jv)) {
        char *end;
        int64_t n = -1;
        if (json_is_integer(jv) && json_integer_value(jv) >= 0)
            n = json_integer_value(jv);
        else if (json_is_string(jv) && *json_string_value(jv) &&
                 (n = strtoll(json_string_value(jv), &end, 10)) >= 0 && !*end)
            ;
        else {
            snprintf(msg, mlen, "model_version: expected a non-negative integer");
            return -EINVAL;
        }
        *version = n;
    }
    return 0;
}

/* One input's values: one row (/predict) or an array of d->rows rows (/batch_predict). */
static int seed_input(const struct predict_version *v, int batch, struct predict_rows *d, size_t i,
                      const json_t *val, const char *field, char *msg, size_t mlen)
{
    const struct predict_io *io = &v->in[i];
    char shp[96], f[128];

    for (size_t r = 0; r < d->rows; r++) {
        const json_t *row = batch ? json_array_get(val, r) : val;
        if (batch)
            snprintf(f, sizeof(f), "%s[%zu]", field, r);
        else
            snprintf(f, sizeof(f), "%s", field);
        int64_t n = predict__json_count(row, io->dtype, f, msg, mlen);
        if (n < 0)
            return -EINVAL;
        if (n != io->row_numel) {
            shape_str(io, shp, sizeof(shp));
            snprintf(msg, mlen,
                     "%s: expected %" PRId64 " values for input %s of model %s "
                     "(shape %s), got %" PRId64,
                     f, io->row_numel, io->name, v->name, shp, n);
            return -EINVAL;
        }
        if (predict__json_fill(row, 0, io->dtype, (unsigned char *)d->in[i] + r * io->row_bytes, n,
                               f, msg, mlen))
            return -EINVAL;
    }
    return 0;
}

static int batch_rows(const json_t *val, const char *field, size_t *rows, char *msg, size_t mlen)
{
    if (!json_is_array(val)) {
        snprintf(msg, mlen, "%s: expected an array of rows", field);
        return -EINVAL;
    }
    *rows = json_array_size(val);
    return 0;
}

/* "features": the values of a single-input model. */
static int seed_features(const struct predict_version *v, int batch, const json_t *feat,
                         struct predict_rows *d, char *msg, size_t mlen)
{
    char names[256];
    size_t rows = 1;
    int rc;

    if (v->n_in != 1) {
        io_names(v->in, v->n_in, names, sizeof(names));
        snprintf(msg, mlen,
                 "features: model %s has %zu inputs (%s); send them by name as "
                 "\"inputs\": {...}",
                 v->name, v->n_in, names);
        return -EINVAL;
    }
    if (batch && ((rc = batch_rows(feat, "features", &rows, msg, mlen)) != 0 ||
                  (rc = check_rows(v, rows, "features", msg, mlen)) != 0))
        return rc;
    if ((rc = predict__rows_alloc(d, v, rows, msg, mlen)) != 0)
        return rc;
    return seed_input(v, batch, d, 0, feat, "features", msg, mlen);
}

/* "inputs": {"NAME": value, ...}, one entry per input of the model, no other. */
static int seed_inputs(const struct predict_version *v, int batch, json_t *ins,
                       struct predict_rows *d, char *msg, size_t mlen)
{
    char names[256], field[128];
    size_t rows = 1;
    const char *k;
    json_t *val;
    int rc;

    if (!json_is_object(ins)) {
        snprintf(msg, mlen, "inputs: expected an object mapping input names to values");
        return -EINVAL;
    }
    json_object_foreach(ins, k, val)
    {
        if (input_index(v, k) < 0) {
            io_names(v->in, v->n_in, names, sizeof(names));
            snprintf(msg, mlen, "inputs.%.64s: model %s has no such input (inputs: %s)", k, v->name,
                     names);
            return -EINVAL;
        }
    }
    for (size_t i = 0; i < v->n_in; i++) {
        if (!json_object_get(ins, v->in[i].name)) {
            io_names(v->in, v->n_in, names, sizeof(names));
            snprintf(msg, mlen, "inputs.%s: missing (model %s needs %s)", v->in[i].name, v->name,
                     names);
            return -EINVAL;
        }
    }
    if (batch) {
        for (size_t i = 0; i < v->n_in; i++) {
            size_t n;
            snprintf(field, sizeof(field), "inputs.%s", v->in[i].name);
            if ((rc = batch_rows(json_object_get(ins, v->in[i].name), field, &n, msg, mlen)))
                return rc;
            if (i == 0) {
                rows = n;
            } else if (n != rows) {
                snprintf(msg, mlen, "%s: %zu rows, but inputs.%s has %zu", field, n, v->in[0].name,
                         rows);
                return -EINVAL;
            }
        }
        if ((rc = check_rows(v, rows, "inputs", msg, mlen)) != 0)
            return rc;
    }
    if ((rc = predict__rows_alloc(d, v, rows, msg, mlen)) != 0)
        return rc;
    for (size_t i = 0; i < v->n_in; i++) {
        snprintf(field, sizeof(field), "inputs.%s", v->in[i].name);
        if ((rc = seed_input(v, batch, d, i, json_object_get(ins, v->in[i].name), field, msg,
                             mlen)))
            return rc;
    }
    return 0;
}

int predict__json_seed(json_t *root, const struct predict_version *v, int batch,
                       struct predict_rows *d, char *msg, size_t mlen)
{
    json_t *feat = json_object_get(root, "features"), *ins = json_object_get(root, "inputs");

    if (feat && ins) {
        snprintf(msg, mlen, "features: send either features or inputs, not both");
        return -EINVAL;
    }
    if (feat)
        return seed_features(v, batch, feat, d, msg, mlen);
    if (!ins) {
        snprintf(msg, mlen,
                 "features: missing (an array of numbers, or named inputs as "
                 "\"inputs\": {...})");
        return -EINVAL;
    }
    return seed_inputs(v, batch, ins, d, msg, mlen);
}

/* ---- Open Inference Protocol v2 ---- */

/* What the "inputs" array says for each input of the model, by the model's input index. */
struct oip_tensors {
    const json_t *data[16]; /* "data", NULL until the input is given */
    int decl[16];           /* the declared datatype */
    size_t at[16];          /* index in "inputs", for messages */
};

/* Whether data declared as `decl` may feed an input of `dtype`: numbers convert to floats,
 * integers and booleans to integers, booleans only to booleans. */
static int compatible(int decl, int dtype)
{
    switch (dtype) {
    case INFER_DT_FLOAT:
    case INFER_DT_DOUBLE: return 1;
    case INFER_DT_INT64:
    case INFER_DT_INT32:
        return decl == INFER_DT_INT64 || decl == INFER_DT_INT32 || decl == INFER_DT_BOOL;
    case INFER_DT_BOOL: return decl == INFER_DT_BOOL;
    }
    return 0;
}

/* "id": echoed in the answer, so kept as a ready JSON literal. */
static int oip_id(const json_t *jid, struct predict_rows *d, char *msg, size_t mlen)
{
    struct buf b;

    if (!jid || json_is_null(jid))
        return 0;
    if (!json_is_string(jid)) {
        snprintf(msg, mlen, "id: expected a string");
        return -EINVAL;
    }
    buf_init(&b, 4096);
    if (buf_json_str(&b, json_string_value(jid), json_string_length(jid)) != 0) {
        buf_fini(&b);
        snprintf(msg, mlen, "id: longer than 4 KiB");
        return -EINVAL;
    }
    d->id = buf_take(&b, NULL);
    return 0;
}

/* inputs[k].name: an input of the model, given once. Returns its index. */
static int oip_input_name(const struct predict_version *v, const json_t *t, size_t k,
                          const struct oip_tensors *ts, char *msg, size_t mlen)
{
    const json_t *jn = json_object_get(t, "name");
    char names[256];
    int idx;

    if (!json_is_string(jn)) {
        snprintf(msg, mlen, "inputs[%zu].name: expected a string", k);
        return -EINVAL;
    }
    idx = input_index(v, json_string_value(jn));
    if (idx < 0) {
        io_names(v->in, v->n_in, names, sizeof(names));
        snprintf(msg, mlen, "inputs[%zu].name: model %s has no input '%.64s' (inputs: %s)", k,
                 v->name, json_string_value(jn), names);
        return -EINVAL;
    }
    if (ts->data[idx]) {
        snprintf(msg, mlen, "inputs[%zu].name: input '%s' given twice", k, v->in[idx].name);
        return -EINVAL;
    }
    return idx;
}

/* inputs[k].datatype: an OIP name the input's dtype accepts. Returns the dtype. */
static int oip_input_datatype(const struct predict_version *v, const struct predict_io *io,
                              const json_t *t, size_t k, char *msg, size_t mlen)
{
    const json_t *jd = json_object_get(t, "datatype");
    int dt = json_is_string(jd) ? predict__json_oip_dtype(json_string_value(jd)) : 0;

    if (!dt) {
        snprintf(msg, mlen,
                 "inputs[%zu].datatype: expected one of FP32, INT64, INT32, "
                 "BOOL (FP64 too)",
                 k);
        return -EINVAL;
    }
    if (!compatible(dt, io->dtype)) {
        snprintf(msg, mlen, "inputs[%zu].datatype: %s given, input %s of model %s is %s", k,
                 json_string_value(jd), io->name, v->name, predict__json_oip_name(io->dtype));
        return -EINVAL;
    }
    return dt;
}

/* inputs[k].shape: [batch] + the input's per-row shape, the same batch for every input.
 * Sets d->rows. */
static int oip_input_shape(const struct predict_version *v, const struct predict_io *io,
                           const json_t *t, size_t k, struct predict_rows *d, char *msg,
                           size_t mlen)
{
    const json_t *js = json_object_get(t, "shape");
    int ok = json_is_array(js) && (int)json_array_size(js) == io->rank;
    int64_t rows = 0;
    char shp[96];

    for (int i = 0; ok && i < io->rank; i++) {
        const json_t *e = json_array_get(js, (size_t)i);
        if (!json_is_integer(e) || json_integer_value(e) < 0)
            ok = 0;
        else if (i == 0)
            rows = json_integer_value(e);
        else if (json_integer_value(e) != io->dims[i])
            ok = 0;
    }
    if (!ok) {
        shape_str(io, shp, sizeof(shp));
        snprintf(msg, mlen, "inputs[%zu].shape: expected [batch] + %s for input %s of model %s", k,
                 shp, io->name, v->name);
        return -EINVAL;
    }
    if (d->rows && (size_t)rows != d->rows) {
        snprintf(msg, mlen,
                 "inputs[%zu].shape: batch %" PRId64 " differs from the other "
                 "inputs' %zu",
                 k, rows, d->rows);
        return -EINVAL;
    }
    d->rows = (size_t)rows;
    return 0;
}

/* inputs[k]: one tensor, checked field by field in that order; its data is kept in ts. */
static int oip_input(const struct predict_version *v, const json_t *t, size_t k,
                     struct oip_tensors *ts, struct predict_rows *d, char *msg, size_t mlen)
{
    int idx, dt, rc;

    if (!json_is_object(t)) {
        snprintf(msg, mlen, "inputs[%zu]: expected an object", k);
        return -EINVAL;
    }
    if ((idx = oip_input_name(v, t, k, ts, msg, mlen)) < 0)
        return idx;
    if ((dt = oip_input_datatype(v, &v->in[idx], t, k, msg, mlen)) < 0)
        return dt;
    if ((rc = oip_input_shape(v, &v->in[idx], t, k, d, msg, mlen)) != 0)
        return rc;
    if (!json_object_get(t, "data")) {
        snprintf(msg, mlen, "inputs[%zu].data: missing", k);
        return -EINVAL;
    }
    ts->data[idx] = json_object_get(t, "data");
    ts->decl[idx] = dt;
    ts->at[idx] = k;
    return 0;
}

/* "outputs": which outputs to answer (all when absent or null). Sets d->outsel. */
static int oip_outputs(const struct predict_version *v, const json_t *outs, struct predict_rows *d,
                       char *msg, size_t mlen)
{
    char names[256];

    if (!outs || json_is_null(outs))
        return 0;
    if (!json_is_array(outs)) {
        snprintf(msg, mlen, "outputs: expected an array of {\"name\": ...}");
        return -EINVAL;
    }
    for (size_t k = 0; k < json_array_size(outs); k++) {
        const json_t *jn = json_object_get(json_array_get(outs, k), "name");
        int idx = -1;
        if (!json_is_string(jn)) {
            snprintf(msg, mlen, "outputs[%zu].name: expected a string", k);
            return -EINVAL;
        }
        for (size_t o = 0; o < v->n_out; o++)
            if (!strcmp(v->out[o].name, json_string_value(jn)))
                idx = (int)o;
        if (idx < 0) {
            io_names(v->out, v->n_out, names, sizeof(names));
            snprintf(msg, mlen,
                     "outputs[%zu].name: model %s has no output '%.64s' "
                     "(outputs: %s)",
                     k, v->name, json_string_value(jn), names);
            return -EINVAL;
        }
        d->outsel |= 1u << idx;
    }
    return 0;
}

int predict__json_oip(json_t *root, const struct predict_version *v, struct predict_rows *d,
                      char *msg, size_t mlen)
{
    const json_t *ins = json_object_get(root, "inputs");
    struct oip_tensors ts = {{0}};
    char names[256], field[96];
    int rc;

    MC_ASSERT(v->n_in <= MC_ARRAY_SIZE(ts.data));
    if ((rc = oip_id(json_object_get(root, "id"), d, msg, mlen)) != 0)
        return rc;
    if (!json_is_array(ins) || json_array_size(ins) == 0) {
        snprintf(msg, mlen,
                 "inputs: expected a non-empty array of tensors "
                 "({\"name\", \"shape\", \"datatype\", \"data\"})");
        return -EINVAL;
    }
    d->rows = 0;
    for (size_t k = 0; k < json_array_size(ins); k++)
        if ((rc = oip_input(v, json_array_get(ins, k), k, &ts, d, msg, mlen)) != 0)
            return rc;
    for (size_t i = 0; i < v->n_in; i++) {
        if (!ts.data[i]) {
            io_names(v->in, v->n_in, names, sizeof(names));
            snprintf(msg, mlen, "inputs: input '%s' of model %s is missing (inputs: %s)",
                     v->in[i].name, v->name, names);
            return -EINVAL;
        }
    }
    if ((rc = check_rows(v, d->rows, "inputs[0].shape", msg, mlen)) != 0)
        return rc;
    if ((rc = oip_outputs(v, json_object_get(root, "outputs"), d, msg, mlen)) != 0)
        return rc;
    if ((rc = predict__rows_alloc(d, v, d->rows, msg, mlen)) != 0)
        return rc;
    for (size_t i = 0; i < v->n_in; i++) {
        snprintf(field, sizeof(field), "inputs[%zu].data", ts.at[i]);
        if (predict__json_fill(ts.data[i], ts.decl[i], v->in[i].dtype, d->in[i],
                               (int64_t)d->rows * v->in[i].row_numel, field, msg, mlen))
            return -EINVAL;
    }
    return 0;
}
