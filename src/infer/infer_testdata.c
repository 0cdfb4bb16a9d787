/* src/infer/infer_testdata.c: runs one ONNX backend-test case directory (model.onnx plus
 * test_data_set_N/input_K.pb, output_K.pb) and compares the outputs. Shared by the CLI's
 * --conformance runner and the unit tests (official node tests and tests/fixtures/models use
 * the same layout). */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "infer/infer_int.h"

int infer__read_file(const char *path, size_t cap, void **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, alloc = 0;

    if (f == NULL)
        return -errno;
    for (;;) {
        if (n == alloc) {
            alloc = alloc ? alloc * 2 : 65536;
            if (alloc > cap + 1)
                alloc = cap + 1;
            buf = mc_xrealloc(buf, alloc);
        }
        size_t r = fread(buf + n, 1, alloc - n, f);
        n += r;
        if (r == 0)
            break;
        if (n > cap) {
            free(buf);
            fclose(f);
            return -EFBIG;
        }
    }
    fclose(f);
    *out = buf;
    *len = n;
    return 0;
}

int infer__read_pb(const char *path, struct infer_tensor *t, char **name, char *err, size_t errlen)
{
    void *buf;
    size_t len;
    int rc = infer__read_file(path, (size_t)1 << 31, &buf, &len);

    if (rc != 0) {
        snprintf(err, errlen, "%.300s: %s", path, strerror(-rc));
        return rc;
    }
    rc = infer_tensor_pb_decode(buf, len, t, name, err, errlen);
    free(buf);
    return rc;
}

/* |got - want| <= atol + rtol * |want| for floats (NaN matches NaN), exact otherwise. */
static int compare(const struct infer_tensor *got, const struct infer_tensor *want, double atol,
                   double rtol, char *msg, size_t len)
{
    int64_t n = infer_tensor_numel(want);

    if (got->dtype != want->dtype) {
        snprintf(msg, len, "dtype %s, expected %s", infer_dtype_name(got->dtype),
                 infer_dtype_name(want->dtype));
        return -1;
    }
    if (got->rank != want->rank || memcmp(got->dims, want->dims, sizeof(int64_t) * want->rank)) {
        char a[128] = "", b[128] = "";
        for (int i = 0; i < got->rank; i++)
            snprintf(a + strlen(a), sizeof(a) - strlen(a), "%s%lld", i ? "," : "",
                     (long long)got->dims[i]);
        for (int i = 0; i < want->rank; i++)
            snprintf(b + strlen(b), sizeof(b) - strlen(b), "%s%lld", i ? "," : "",
                     (long long)want->dims[i]);
        snprintf(msg, len, "shape [%s], expected [%s]", a, b);
        return -1;
    }
    for (int64_t i = 0; i < n; i++) {
        double g, w;
        switch (want->dtype) {
        case INFER_DT_FLOAT:
            g = ((const float *)got->data)[i];
            w = ((const float *)want->data)[i];
            break;
        case INFER_DT_DOUBLE:
            g = ((const double *)got->data)[i];
            w = ((const double *)want->data)[i];
            break;
        case INFER_DT_FLOAT16:
        case INFER_DT_BFLOAT16: {
            uint16_t a = ((const uint16_t *)got->data)[i], b = ((const uint16_t *)want->data)[i];
            if (a != b) {
                snprintf(msg, len, "element %lld: bits 0x%04x, expected 0x%04x", (long long)i, a,
                         b);
                return -1;
            }
            continue;
        }
        default: {
            size_t es = infer_dtype_size(want->dtype);
            if (memcmp((const char *)got->data + i * es, (const char *)want->data + i * es, es)) {
                snprintf(msg, len, "element %lld: %lld, expected %lld", (long long)i,
                         (long long)infer__get_i64(got, i), (long long)infer__get_i64(want, i));
                return -1;
            }
            continue;
        }
        }
        if (isnan(w) ? !isnan(g) : !(fabs(g - w) <= atol + rtol * fabs(w)) && g != w) {
            snprintf(msg, len, "element %lld: %.9g, expected %.9g", (long long)i, g, w);
            return -1;
        }
    }
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names in dir starting with prefix. */
static size_t list_dir(const char *dir, const char *prefix, char ***out)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char **v = NULL;
    size_t n = 0;

    if (d == NULL) {
        *out = NULL;
        return 0;
    }
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, prefix, strlen(prefix)))
            continue;
        v = mc_xrealloc(v, sizeof(char *) * (n + 1));
        v[n++] = mc_xstrdup(de->d_name);
    }
    closedir(d);
    if (n)
        qsort(v, n, sizeof(char *), cmp_str);
    *out = v;
    return n;
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Natural order for input_K.pb: input_10 after input_9. */
static int pb_index(const char *name)
{
    const char *u = strrchr(name, '_');

    return u ? atoi(u + 1) : 0;
}

int infer__run_dataset(struct infer_session *s, const struct infer_model *m, const char *dir,
                       double atol, double rtol, char *msg, size_t len)
{
    char **files;
    size_t nf = list_dir(dir, "", &files);
    struct infer_input *in = mc_xcalloc(m->n_inputs + 1, sizeof(*in));
    char **in_names = mc_xcalloc(m->n_inputs + 1, sizeof(char *));
    struct infer_tensor *want = mc_xcalloc(m->n_outputs + 1, sizeof(*want));
    struct infer_tensor *got = mc_xcalloc(m->n_outputs + 1, sizeof(*got));
    size_t n_in = 0, n_want = 0;
    char path[4096], err[512];
    int rc = 0;

    for (size_t i = 0; i < nf && rc == 0; i++) {
        bool is_in = !strncmp(files[i], "input_", 6), is_out = !strncmp(files[i], "output_", 7);
        int k = pb_index(files[i]);
        struct infer_tensor t;
        char *name = NULL;
        if (!is_in && !is_out)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        rc = infer__read_pb(path, &t, &name, err, sizeof(err));
        if (rc != 0) {
            snprintf(msg, len, "%s", err);
            break;
        }
        if (is_in) {
            /* The tensor's own name wins; else its position in the graph's inputs. */
            int idx = name && name[0] ? infer_model_input_index(m, name) : -1;
            if (idx < 0)
                idx = k;
            if (idx < 0 || (size_t)idx >= m->n_inputs || n_in >= m->n_inputs) {
                snprintf(msg, len, "%s: no matching graph input", files[i]);
                free(t.data);
                free(name);
                rc = -EINVAL;
                break;
            }
            /* ONNX 1.12's test data stores bfloat16 tensors with the uint16 type. */
            if (t.dtype == INFER_DT_UINT16 && m->in_info[idx].dtype == INFER_DT_BFLOAT16)
                t.dtype = INFER_DT_BFLOAT16;
            in[n_in].name = m->in_info[idx].name;
            in[n_in].t = t;
            n_in++;
            free(name);
        } else {
            int idx = name && name[0] ? infer_model_output_index(m, name) : -1;
            free(name);
            if (idx < 0)
                idx = k;
            if (idx < 0 || (size_t)idx >= m->n_outputs || want[idx].data != NULL) {
                snprintf(msg, len, "%s: no matching graph output", files[i]);
                free(t.data);
                rc = -EINVAL;
                break;
            }
            if (t.dtype == INFER_DT_UINT16 && m->out_info[idx].dtype == INFER_DT_BFLOAT16)
                t.dtype = INFER_DT_BFLOAT16;
            want[idx] = t;
            n_want++;
        }
    }
    if (rc == 0) {
        rc = infer_session_run(s, in, n_in, got, m->n_outputs, err, sizeof(err));
        if (rc != 0)
            snprintf(msg, len, "run: %s", err);
    }
    for (size_t j = 0; rc == 0 && j < m->n_outputs; j++) {
        char cm[256];
        if (want[j].data == NULL)
            continue;
        if (compare(&got[j], &want[j], atol, rtol, cm, sizeof(cm)) != 0) {
            snprintf(msg, len, "output '%s': %s", m->out_info[j].name, cm);
            rc = -EDOM;
        }
    }
    for (size_t i = 0; i < n_in; i++)
        free(in[i].t.data);
    for (size_t j = 0; j < m->n_outputs; j++)
        free(want[j].data);
    free(in);
    free(in_names);
    free(want);
    free(got);
    free_list(files, nf);
    return rc;
}

int infer_case_run(const char *case_dir, double atol, double rtol, char *msg, size_t len)
{
    char path[4096], err[512];
    struct infer_model *m = NULL;
    struct infer_session *s = NULL;
    char **sets;
    size_t ns;
    int rc;

    snprintf(path, sizeof(path), "%s/model.onnx", case_dir);
    rc = infer_model_load(path, NULL, &m, err, sizeof(err));
    if (rc != 0) {
        snprintf(msg, len, "load: %s", err);
        return rc == -ENOTSUP ? -ENOTSUP : rc;
    }
    infer_session_new(m, NULL, &s);
    ns = list_dir(case_dir, "test_data_set_", &sets);
    if (ns == 0) {
        snprintf(msg, len, "no test_data_set_* directories");
        rc = -ENOENT;
    }
    for (size_t i = 0; i < ns && rc == 0; i++) {
        char sub[512];
        snprintf(path, sizeof(path), "%s/%s", case_dir, sets[i]);
        rc = infer__run_dataset(s, m, path, atol, rtol, sub, sizeof(sub));
        if (rc != 0) {
            snprintf(msg, len, "%s: %s", sets[i], sub);
            /* A data set that needs an unsupported feature at run time is still a failure:
             * the model loaded, so the engine claimed it. */
            if (rc == -ENOTSUP)
                rc = -EPROTO;
        }
    }
    free_list(sets, ns);
    infer_session_free(&s);
    infer_model_unref(&m);
    return rc;
}
