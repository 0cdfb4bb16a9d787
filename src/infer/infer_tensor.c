/* src/infer/infer_tensor.c: dtypes, shapes, and onnx.TensorProto decoding.
 *
 * Tensor payloads may arrive as raw_data (little-endian bytes), in the typed repeated
 * fields (float_data, int32_data for every type of 32 bits or less, int64_data,
 * double_data, uint64_data), or in an external file beside the model. Every path checks
 * that the byte count matches the dims before anything is copied. Decoded data is always
 * a fresh INFER_ALIGN-aligned buffer the caller owns. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "infer/infer_int.h"
#include "infer/infer_pb.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "raw_data is little-endian; a big-endian port must byte-swap in tensor_from_proto()"
#endif

const char *infer_dtype_name(int dtype)
{
    switch (dtype) {
    case INFER_DT_FLOAT: return "float32";
    case INFER_DT_UINT8: return "uint8";
    case INFER_DT_INT8: return "int8";
    case INFER_DT_UINT16: return "uint16";
    case INFER_DT_INT16: return "int16";
    case INFER_DT_INT32: return "int32";
    case INFER_DT_INT64: return "int64";
    case INFER_DT_STRING: return "string";
    case INFER_DT_BOOL: return "bool";
    case INFER_DT_FLOAT16: return "float16";
    case INFER_DT_DOUBLE: return "float64";
    case INFER_DT_UINT32: return "uint32";
    case INFER_DT_UINT64: return "uint64";
    case INFER_DT_BFLOAT16: return "bfloat16";
    default: return "undefined";
    }
}

size_t infer_dtype_size(int dtype)
{
    switch (dtype) {
    case INFER_DT_UINT8:
    case INFER_DT_INT8:
    case INFER_DT_BOOL: return 1;
    case INFER_DT_UINT16:
    case INFER_DT_INT16:
    case INFER_DT_FLOAT16:
    case INFER_DT_BFLOAT16: return 2;
    case INFER_DT_FLOAT:
    case INFER_DT_INT32:
    case INFER_DT_UINT32: return 4;
    case INFER_DT_INT64:
    case INFER_DT_DOUBLE:
    case INFER_DT_UINT64: return 8;
    default: return 0;
    }
}

bool infer__dtype_supported(int dtype)
{
    return infer_dtype_size(dtype) != 0;
}

/* Largest element count accepted anywhere: keeps every byte count below 2^62. */
#define NUMEL_MAX (INT64_C(1) << 56)

int infer__dims_numel(int rank, const int64_t *dims, int64_t *out)
{
    int64_t n = 1;

    if (rank < 0 || rank > INFER_MAX_RANK)
        return -EINVAL;
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0)
            return -EINVAL;
        if (dims[i] != 0 && n > NUMEL_MAX / dims[i])
            return -EFBIG;
        n *= dims[i];
    }
    *out = n;
    return 0;
}

int64_t infer_tensor_numel(const struct infer_tensor *t)
{
    int64_t n;

    if (infer__dims_numel(t->rank, t->dims, &n) != 0)
        return -1;
    return n;
}

size_t infer__bytes(const struct infer_tensor *t)
{
    int64_t n = infer_tensor_numel(t);

    return n < 0 ? 0 : (size_t)n * infer_dtype_size(t->dtype);
}

void *infer__aligned_alloc(size_t bytes)
{
    size_t sz = (bytes + INFER_ALIGN - 1) / INFER_ALIGN * INFER_ALIGN;

    /* Never zero bytes: an empty tensor still gets a distinct, freeable pointer. */
    return aligned_alloc(INFER_ALIGN, sz ? sz : INFER_ALIGN);
}

void infer__release(size_t bytes)
{
#ifdef __GLIBC__
    /* glibc returns a freed chunk to the system only when it was mmapped or sits at the
     * top of the heap, and its mmap threshold rises (up to 32 MiB) each time a mmapped
     * chunk is freed, so the weights of the next model land in the heap. malloc_trim()
     * walks every arena and gives back whole free pages wherever they are. */
    if (bytes >= ((size_t)1 << 20))
        malloc_trim(0);
#else
    (void)bytes;
#endif
}

/* External data: `location` must be a relative path inside the model's directory. */
static int read_external(const Onnx__TensorProto *tp, const char *dir, size_t want,
                         uint64_t *budget, void *dst, struct infer_err *e)
{
    const char *loc = NULL;
    int64_t off = 0, len = -1;
    char path[PATH_MAX];
    struct stat st;
    int fd, err = 0;

    for (size_t i = 0; i < tp->n_external_data; i++) {
        const char *k = tp->external_data[i]->key, *v = tp->external_data[i]->value;
        char *end;
        if (k == NULL || v == NULL)
            continue;
        if (!strcmp(k, "location")) {
            loc = v;
        } else if (!strcmp(k, "offset") || !strcmp(k, "length")) {
            errno = 0;
            long long x = strtoll(v, &end, 10);
            if (errno != 0 || end == v || *end != '\0' || x < 0)
                return infer__errf(e, -EINVAL, "tensor '%s': bad external_data %s '%s'", tp->name,
                                   k, v);
            if (k[0] == 'o')
                off = x;
            else
                len = x;
        }
    }
    if (dir == NULL)
        return infer__errf(e, -ENOTSUP, "tensor '%s': external data needs a model directory",
                           tp->name);
    if (loc == NULL || loc[0] == '\0' || loc[0] == '/' || strstr(loc, "..") != NULL)
        return infer__errf(e, -EINVAL,
                           "tensor '%s': external data location '%s' must be a "
                           "relative path without '..'",
                           tp->name, loc ? loc : "");
    if (len >= 0 && (uint64_t)len != want)
        return infer__errf(e, -EINVAL, "tensor '%s': external length %lld, shape needs %zu bytes",
                           tp->name, (long long)len, want);
    if (want > *budget)
        return infer__errf(e, -EFBIG, "tensor '%s': external data over the size cap", tp->name);
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, loc) >= sizeof(path))
        return infer__errf(e, -ENAMETOOLONG, "tensor '%s': external path too long", tp->name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return infer__errf(e, -errno, "tensor '%s': external data %s: %s", tp->name, path,
                           strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size < (uint64_t)off ||
        (uint64_t)st.st_size - (uint64_t)off < want) {
        err = infer__errf(e, -EINVAL,
                          "tensor '%s': external file %s too short for offset %lld "
                          "+ %zu bytes",
                          tp->name, path, (long long)off, want);
        goto out;
    }
    for (size_t got = 0; got < want;) {
        ssize_t r = pread(fd, (char *)dst + got, want - got, off + (off_t)got);
        if (r <= 0) {
            err = infer__errf(e, r < 0 ? -errno : -EIO, "tensor '%s': reading %s failed", tp->name,
                              path);
            goto out;
        }
        got += (size_t)r;
    }
    *budget -= want;
out:
    close(fd);
    return err;
}

int infer__tensor_proto_bytes(const Onnx__TensorProto *tp, size_t *out)
{
    int64_t dims[INFER_MAX_RANK], numel;
    size_t esz = infer_dtype_size(tp->has_data_type ? tp->data_type : 0);

    if (esz == 0 || tp->n_dims > INFER_MAX_RANK)
        return -EINVAL;
    for (size_t i = 0; i < tp->n_dims; i++)
        dims[i] = tp->dims[i];
    if (infer__dims_numel((int)tp->n_dims, dims, &numel) != 0)
        return -EINVAL;
    *out = (size_t)numel * esz;
    return 0;
}

int infer__tensor_from_proto(const Onnx__TensorProto *tp, const char *ext_dir, uint64_t *budget,
                             struct infer_tensor *out, struct infer_err *e)
{
    struct infer_tensor t = {0};
    const char *nm = tp->name ? tp->name : "";
    size_t esz, bytes, have;
    int64_t numel;
    int err;

    t.dtype = tp->has_data_type ? tp->data_type : 0;
    esz = infer_dtype_size(t.dtype);
    if (esz == 0)
        return infer__errf(e, -ENOTSUP, "tensor '%s': dtype %s (%d) not supported", nm,
                           infer_dtype_name(t.dtype), t.dtype);
    if (tp->n_dims > INFER_MAX_RANK)
        return infer__errf(e, -ENOTSUP, "tensor '%s': rank %zu over %d", nm, tp->n_dims,
                           INFER_MAX_RANK);
    if (tp->segment != NULL)
        return infer__errf(e, -ENOTSUP, "tensor '%s': segmented tensors not supported", nm);
    t.rank = (int)tp->n_dims;
    for (int i = 0; i < t.rank; i++)
        t.dims[i] = tp->dims[i];
    err = infer__dims_numel(t.rank, t.dims, &numel);
    if (err != 0)
        return infer__errf(e, err, "tensor '%s': bad dims", nm);
    bytes = (size_t)numel * esz;

    if (tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
        /* Checked before the buffer exists, not only before it is filled. */
        if (bytes > *budget)
            return infer__errf(e, -EFBIG, "tensor '%s': external data over the size cap", nm);
        t.data = infer__aligned_alloc(bytes);
        if (t.data == NULL)
            return infer__errf(e, -ENOMEM, "tensor '%s': out of memory", nm);
        err = read_external(tp, ext_dir, bytes, budget, t.data, e);
        if (err != 0) {
            free(t.data);
            return err;
        }
        *out = t;
        return 0;
    }

    /* Count what the typed fields hold before allocating, so a 20-byte file cannot claim
     * a terabyte tensor. */
    if (tp->has_raw_data) {
        have = tp->raw_data.len;
    } else {
        switch (t.dtype) {
        case INFER_DT_FLOAT: have = tp->n_float_data * esz; break;
        case INFER_DT_DOUBLE: have = tp->n_double_data * esz; break;
        case INFER_DT_INT64: have = tp->n_int64_data * esz; break;
        case INFER_DT_UINT32:
        case INFER_DT_UINT64: have = tp->n_uint64_data * esz; break;
        default: have = tp->n_int32_data * esz; break;
        }
    }
    if (have != bytes)
        return infer__errf(e, -EINVAL, "tensor '%s': holds %zu bytes, dims need %zu", nm, have,
                           bytes);
    t.data = infer__aligned_alloc(bytes);
    if (t.data == NULL)
        return infer__errf(e, -ENOMEM, "tensor '%s': out of memory", nm);
    if (tp->has_raw_data) {
        if (bytes)
            memcpy(t.data, tp->raw_data.data, bytes);
    } else {
        switch (t.dtype) {
        case INFER_DT_FLOAT:
            if (bytes)
                memcpy(t.data, tp->float_data, bytes);
            break;
        case INFER_DT_DOUBLE:
            if (bytes)
                memcpy(t.data, tp->double_data, bytes);
            break;
        case INFER_DT_INT64:
            if (bytes)
                memcpy(t.data, tp->int64_data, bytes);
            break;
        case INFER_DT_UINT64:
            if (bytes)
                memcpy(t.data, tp->uint64_data, bytes);
            break;
        case INFER_DT_UINT32:
            for (int64_t i = 0; i < numel; i++)
                ((uint32_t *)t.data)[i] = (uint32_t)tp->uint64_data[i];
            break;
        case INFER_DT_INT32:
            if (bytes)
                memcpy(t.data, tp->int32_data, bytes);
            break;
        case INFER_DT_INT16:
        case INFER_DT_UINT16:
        case INFER_DT_FLOAT16:
        case INFER_DT_BFLOAT16:
            /* 16-bit types travel as int32 values holding the bit pattern. */
            for (int64_t i = 0; i < numel; i++)
                ((uint16_t *)t.data)[i] = (uint16_t)tp->int32_data[i];
            break;
        case INFER_DT_BOOL:
            for (int64_t i = 0; i < numel; i++)
                ((uint8_t *)t.data)[i] = tp->int32_data[i] != 0;
            break;
        default: /* int8, uint8 */
            for (int64_t i = 0; i < numel; i++)
                ((uint8_t *)t.data)[i] = (uint8_t)tp->int32_data[i];
            break;
        }
    }
    if (t.dtype == INFER_DT_BOOL) {
        /* Bool kernels rely on 0/1 bytes; raw_data could hold anything. */
        for (int64_t i = 0; i < numel; i++)
            ((uint8_t *)t.data)[i] = ((uint8_t *)t.data)[i] != 0;
    }
    *out = t;
    return 0;
}

int infer_tensor_pb_decode(const void *buf, size_t len, struct infer_tensor *out, char **name,
                           char *errbuf, size_t errlen)
{
    struct infer_err e = {errbuf, errlen};
    Onnx__TensorProto *tp;
    uint64_t budget = 0;
    int err;

    err = infer__pb_check(buf, len, INFER_PB_TENSOR, &e);
    if (err != 0)
        return err;
    tp = onnx__tensor_proto__unpack(NULL, len, buf);
    if (tp == NULL)
        return infer__errf(&e, -EBADMSG, "not a valid onnx.TensorProto");
    err = infer__tensor_from_proto(tp, NULL, &budget, out, &e);
    if (err == 0 && name != NULL)
        *name = mc_xstrdup(tp->name ? tp->name : "");
    onnx__tensor_proto__free_unpacked(tp, NULL);
    return err;
}

/* ---- attribute and shape helpers used by the operators ---- */

const struct infer_attr *infer__attr(const struct infer_node *n, const char *name)
{
    for (size_t i = 0; i < n->n_attrs; i++)
        if (!strcmp(n->attrs[i].name, name))
            return &n->attrs[i];
    return NULL;
}

int64_t infer__attr_i(const struct infer_node *n, const char *name, int64_t def)
{
    const struct infer_attr *a = infer__attr(n, name);

    return a != NULL && a->type == INFER_AT_INT ? a->i : def;
}

float infer__attr_f(const struct infer_node *n, const char *name, float def)
{
    const struct infer_attr *a = infer__attr(n, name);

    return a != NULL && a->type == INFER_AT_FLOAT ? a->f : def;
}

const char *infer__attr_s(const struct infer_node *n, const char *name, const char *def)
{
    const struct infer_attr *a = infer__attr(n, name);

    return a != NULL && a->type == INFER_AT_STRING ? a->s : def;
}

int infer__axis(int64_t axis, int rank, int *out, struct infer_err *e)
{
    if (axis < -(int64_t)rank || axis >= rank)
        return infer__errf(e, -EINVAL, "axis %lld out of range for rank %d", (long long)axis, rank);
    *out = (int)(axis < 0 ? axis + rank : axis);
    return 0;
}

int infer__broadcast(struct infer_tensor *const *in, int n, struct infer_tensor *out,
                     struct infer_err *e)
{
    int rank = 0;

    for (int i = 0; i < n; i++)
        if (in[i] != NULL && in[i]->rank > rank)
            rank = in[i]->rank;
    out->rank = rank;
    for (int d = 0; d < rank; d++) {
        int64_t dim = 1;
        for (int i = 0; i < n; i++) {
            if (in[i] == NULL)
                continue;
            int k = d - (rank - in[i]->rank);
            if (k < 0)
                continue;
            int64_t x = in[i]->dims[k];
            if (x == dim || x == 1)
                continue;
            if (dim != 1)
                return infer__errf(e, -EINVAL, "shapes cannot broadcast (dim %d: %lld vs %lld)", d,
                                   (long long)dim, (long long)x);
            dim = x;
        }
        out->dims[d] = dim;
    }
    return 0;
}

int64_t infer__get_i64(const struct infer_tensor *t, int64_t i)
{
    switch (t->dtype) {
    case INFER_DT_INT64: return ((const int64_t *)t->data)[i];
    case INFER_DT_INT32: return ((const int32_t *)t->data)[i];
    case INFER_DT_UINT8:
    case INFER_DT_BOOL: return ((const uint8_t *)t->data)[i];
    case INFER_DT_INT8: return ((const int8_t *)t->data)[i];
    case INFER_DT_FLOAT: return (int64_t)((const float *)t->data)[i];
    case INFER_DT_DOUBLE: return (int64_t)((const double *)t->data)[i];
    default: return 0;
    }
}

double infer__get_f64(const struct infer_tensor *t, int64_t i)
{
    switch (t->dtype) {
    case INFER_DT_FLOAT: return ((const float *)t->data)[i];
    case INFER_DT_DOUBLE: return ((const double *)t->data)[i];
    default: return (double)infer__get_i64(t, i);
    }
}

int infer__read_ints(const struct infer_tensor *t, int64_t *v, int cap, struct infer_err *e)
{
    int64_t n = infer_tensor_numel(t);

    if (t->dtype != INFER_DT_INT64 && t->dtype != INFER_DT_INT32)
        return infer__errf(e, -EINVAL, "expected an int64 tensor, got %s",
                           infer_dtype_name(t->dtype));
    if (t->rank > 1 || n < 0 || n > cap)
        return infer__errf(e, -EINVAL, "expected a 1-D tensor of at most %d values", cap);
    for (int64_t i = 0; i < n; i++)
        v[i] = infer__get_i64(t, i);
    return (int)n;
}
