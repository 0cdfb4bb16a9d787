/* src/predict/predict_models.c: the model registry.
 *
 * Layout of --models DIR: NAME/VERSION/model.onnx, VERSION a decimal number, with an
 * optional config.json in NAME/ (for every version) and/or in NAME/VERSION/ (wins):
 * {"max_batch": 64, "max_delay_us": 500, "threads": 0, "cache_bytes": "64M"}.
 * Every version found is loaded, checked (only the batch dimension may be dynamic; one
 * probe run at batch 1 fixes the per-row output shapes and proves the model runs) and
 * served; the highest is the model's current version. Each version is loaded under the
 * --model-memory budget with its run sized at max_batch rows: the engine refuses, from the
 * shapes and before allocating them, a model whose constants plus one run would not fit.
 *
 * Reload (POST /admin/models/reload, or the watcher thread when the directory's
 * signature changes): new or changed versions load beside the served ones with no lock
 * held; then, under the write lock, the version lists are swapped in one go. Retired
 * versions lose the registry's reference only: requests and queued items that hold one
 * finish on them. A version that fails to load changes nothing; its error is kept on the
 * model for GET /admin/models until a later load of that model succeeds. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/evp.h>

#include "cache/cache_key.h"
#include "core/log.h"
#include "core/mc.h"
#include "core/units.h"
#include "predict/predict_int.h"

#define MAX_CANDIDATES 1024

struct cand {
    char name[PREDICT_MODEL_NAME_MAX];
    int64_t version;
    char sig[256];
    struct predict_version *loaded; /* new version (ref), or NULL when unchanged/failed */
    int keep;                       /* unchanged: keep the served one */
};

static void model_unref(struct predict_model **mp)
{
    struct predict_model *m = *mp;

    *mp = NULL;
    if (!m)
        return;
    MC_CHECK_OBJ(m, PREDICT_MODEL_MAGIC);
    if (atomic_fetch_sub(&m->refcnt, 1) != 1)
        return;
    MC_ASSERT(m->nvers == 0);
    free(m->vers);
    cache_pred_free(&m->cache);
    MC_FREE_OBJ(m);
}

struct predict_version *predict__version_ref(struct predict_version *v)
{
    MC_CHECK_OBJ_NOTNULL(v, PREDICT_VERSION_MAGIC);
    atomic_fetch_add(&v->refcnt, 1);
    return v;
}

void predict__version_unref(struct predict_version **vp)
{
    struct predict_version *v = *vp;

    *vp = NULL;
    if (!v)
        return;
    MC_CHECK_OBJ(v, PREDICT_VERSION_MAGIC);
    if (atomic_fetch_sub(&v->refcnt, 1) != 1)
        return;
    MC_ASSERT(v->batcher.head == NULL && v->batcher.running == 0);
    for (unsigned i = 0; i < v->nsessions; i++)
        infer_session_free(&v->sessions[i]);
    free(v->sessions);
    infer_model_unref(&v->im);
    free(v->in);
    free(v->out);
    if (v->info)
        metrics_gauge_add(v->info, -1);
    model_unref(&v->model);
    MC_FREE_OBJ(v);
}

/* Hex SHA-256 of the file at path into out[65]; "" when it cannot be read. */
static void file_sha256(const char *path, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE], chunk[65536];
    unsigned int mdlen = 0;
    size_t n;
    FILE *f = fopen(path, "rb");
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    out[0] = '\0';
    if (!f || !ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
        goto out;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (EVP_DigestUpdate(ctx, chunk, n) != 1)
            goto out;
    if (ferror(f) || EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32)
        goto out;
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
out:
    EVP_MD_CTX_free(ctx);
    if (f)
        fclose(f);
}

int predict_model_name_valid(const char *s, size_t n)
{
    if (n == 0 || n >= PREDICT_MODEL_NAME_MAX || s[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return 0;
    }
    return 1;
}

static int parse_version(const char *s, int64_t *out)
{
    char *end;
    if (!*s || *s < '0' || *s > '9' || strlen(s) > 15)
        return -1;
    long long v = strtoll(s, &end, 10);
    if (*end)
        return -1;
    *out = v;
    return 0;
}

static void file_sig(const char *path, char *out, size_t len)
{
    struct stat st;
    size_t o = strlen(out);
    if (o >= len)
        return;
    if (stat(path, &st) != 0)
        snprintf(out + o, len - o, "-;");
    else
        snprintf(out + o, len - o, "%llu:%lld:%lld.%09ld;", (unsigned long long)st.st_ino,
                 (long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
}

/* Applies one config.json to cfg. */
static int read_config(const char *path, struct predict_model_cfg *cfg, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root, *v;
    struct stat st;

    if (stat(path, &st) != 0)
        return 0;
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        snprintf(err, errlen, "%s: line %d: %s", path, je.line, je.text);
        return -EINVAL;
    }
    if (!json_is_object(root)) {
        snprintf(err, errlen, "%s: expected a JSON object", path);
        json_decref(root);
        return -EINVAL;
    }
    /* A misspelt or unsupported key would otherwise be a setting silently not applied. */
    const char *key;
    json_object_foreach(root, key, v)
    {
        static const char *const known[] = {"max_batch", "max_delay_us", "threads", "cache_bytes",
                                            "cache_size"};
        size_t i = 0;
        while (i < MC_ARRAY_SIZE(known) && strcmp(key, known[i]) != 0)
            i++;
        if (i == MC_ARRAY_SIZE(known)) {
            snprintf(err, errlen,
                     "%s: unknown key '%.64s' (known: max_batch, max_delay_us, threads, "
                     "cache_bytes)",
                     path, key);
            goto fail;
        }
    }
    if ((v = json_object_get(root, "max_batch"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65536)
            goto bad_max_batch;
        cfg->max_batch = (unsigned)json_integer_value(v);
    }
    if ((v = json_object_get(root, "max_delay_us"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 10000000) {
            snprintf(err, errlen, "%s: max_delay_us: expected an integer 0..10000000", path);
            goto fail;
        }
        cfg->max_delay_us = (uint64_t)json_integer_value(v);
    }
    if ((v = json_object_get(root, "threads"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1024) {
            snprintf(err, errlen, "%s: threads: expected an integer 0..1024", path);
            goto fail;
        }
        cfg->threads = (unsigned)json_integer_value(v);
    }
    v = json_object_get(root, "cache_bytes");
    if (!v)
        v = json_object_get(root, "cache_size");
    if (v) {
        uint64_t n;
        if (json_is_integer(v) && json_integer_value(v) >= 0) {
            cfg->cache_bytes = (uint64_t)json_integer_value(v);
        } else if (json_is_string(v) && units_parse_size(json_string_value(v), &n) == 0) {
            cfg->cache_bytes = n;
        } else {
            snprintf(err, errlen, "%s: cache_bytes: expected bytes (an integer or \"64M\")", path);
            goto fail;
        }
    }
    json_decref(root);
    return 0;
bad_max_batch:
    snprintf(err, errlen, "%s: max_batch: expected an integer 1..65536", path);
fail:
    json_decref(root);
    return -EINVAL;
}

static int servable_dtype(int dt)
{
    return dt == INFER_DT_FLOAT || dt == INFER_DT_DOUBLE || dt == INFER_DT_INT64 ||
           dt == INFER_DT_INT32 || dt == INFER_DT_BOOL;
}

/* Loads NAME/VERSION: model, config, I/O layout and a probe run. */
static int load_version(struct predict_models *r, const char *name, int64_t version,
                        const char *sig, const char *file, struct predict_version **out, char *err,
                        size_t errlen)
{
    char path[4096], cpath[4096];
    struct predict_version *v = mc_xcalloc(1, sizeof(*v));
    struct infer_session *s = NULL;
    struct infer_input *in = NULL;
    struct infer_tensor *ot = NULL;
    struct infer_load_opts lo = {0};
    size_t nin = 0;
    int rc;

    MC_INIT_OBJ(v, PREDICT_VERSION_MAGIC);
    atomic_init(&v->refcnt, 1);
    v->version = version;
    v->gen = atomic_fetch_add(&r->next_gen, 1);
    snprintf(v->name, sizeof(v->name), "%s", name);
    v->cfg = r->defaults;
    snprintf(v->sig, sizeof(v->sig), "%s", sig);
    if (file) {
        snprintf(path, sizeof(path), "%s", file);
    } else {
        snprintf(cpath, sizeof(cpath), "%s/%s/config.json", r->dir, name);
        if ((rc = read_config(cpath, &v->cfg, err, errlen)) != 0)
            goto fail;
        snprintf(cpath, sizeof(cpath), "%s/%s/%" PRId64 "/config.json", r->dir, name, version);
        if ((rc = read_config(cpath, &v->cfg, err, errlen)) != 0)
            goto fail;
        snprintf(path, sizeof(path), "%s/%s/%" PRId64 "/model.onnx", r->dir, name, version);
    }
    /* The budget covers a run of max_batch rows: the largest batch this version will run. */
    lo.max_memory = r->model_memory;
    lo.batch = v->cfg.max_batch ? v->cfg.max_batch : 1;
    if ((rc = infer_model_load(path, &lo, &v->im, err, errlen)) != 0)
        goto fail;
    /* The file may change under a later reload: the digest says which bytes are served. */
    file_sha256(path, v->sha256);
    v->n_in = infer_model_n_inputs(v->im);
    v->n_out = infer_model_n_outputs(v->im);
    if (v->n_in == 0 || v->n_in > 16 || v->n_out == 0 || v->n_out > 16) {
        snprintf(err, errlen, "1..16 inputs and outputs are supported (model has %zu and %zu)",
                 v->n_in, v->n_out);
        rc = -ENOTSUP;
        goto fail;
    }
    v->in = mc_xcalloc(v->n_in, sizeof(*v->in));
    v->out = mc_xcalloc(v->n_out, sizeof(*v->out));
    v->key_bytes = 16;
    nin = v->n_in;
    in = mc_xcalloc(nin, sizeof(*in));
    for (size_t i = 0; i < v->n_in; i++) {
        const struct infer_io_info *ii = infer_model_input(v->im, i);
        struct predict_io *io = &v->in[i];
        io->name = ii->name;
        io->dtype = ii->dtype;
        io->esize = infer_dtype_size(ii->dtype);
        if (!servable_dtype(ii->dtype)) {
            snprintf(err, errlen, "input %s: dtype %s cannot be sent as JSON", ii->name,
                     infer_dtype_name(ii->dtype));
            rc = -ENOTSUP;
            goto fail;
        }
        if (ii->rank < 1 || (ii->dims[0] != -1 && ii->dims[0] != 1)) {
            snprintf(err, errlen, "input %s: needs a leading batch dimension", ii->name);
            rc = -ENOTSUP;
            goto fail;
        }
        if (ii->dims[0] == 1)
            v->cfg.max_batch = 1;
        io->rank = ii->rank;
        io->dims[0] = -1;
        io->row_numel = 1;
        for (int d = 1; d < ii->rank; d++) {
            if (ii->dims[d] < 1) {
                snprintf(err, errlen,
                         "input %s: dimension %d is dynamic; only the batch "
                         "dimension may be",
                         ii->name, d);
                rc = -ENOTSUP;
                goto fail;
            }
            io->dims[d] = ii->dims[d];
            io->row_numel *= ii->dims[d];
        }
        io->row_bytes = (size_t)io->row_numel * io->esize;
        v->key_bytes += io->row_bytes;
        in[i].name = io->name;
        in[i].t.dtype = io->dtype;
        in[i].t.rank = io->rank;
        memcpy(in[i].t.dims, io->dims, sizeof(io->dims));
        in[i].t.dims[0] = 1;
        in[i].t.data = mc_xcalloc(1, io->row_bytes ? io->row_bytes : 1);
    }
    /* The probe: zeros at batch 1 (valid ids for embedding lookups too). */
    if ((rc = infer_session_new(v->im, NULL, &s)) != 0) {
        snprintf(err, errlen, "cannot create a session: %s", strerror(-rc));
        goto fail;
    }
    ot = mc_xcalloc(v->n_out, sizeof(*ot));
    if ((rc = infer_session_run(s, in, v->n_in, ot, v->n_out, err, errlen)) != 0)
        goto fail;
    for (size_t o = 0; o < v->n_out; o++) {
        const struct infer_io_info *oi = infer_model_output(v->im, o);
        struct predict_io *io = &v->out[o];
        io->name = oi->name;
        io->dtype = ot[o].dtype;
        io->esize = infer_dtype_size(ot[o].dtype);
        if (ot[o].rank < 1 || ot[o].dims[0] != 1 || io->esize == 0) {
            snprintf(err, errlen,
                     "output %s: needs a leading batch dimension and a numeric "
                     "dtype",
                     oi->name);
            rc = -ENOTSUP;
            goto fail;
        }
        io->rank = ot[o].rank;
        memcpy(io->dims, ot[o].dims, sizeof(io->dims));
        io->dims[0] = -1;
        io->row_numel = infer_tensor_numel(&ot[o]);
        io->row_bytes = (size_t)io->row_numel * io->esize;
        io->off = v->val_bytes;
        v->val_bytes += io->row_bytes;
    }
    v->nsessions = r->nthreads;
    v->sessions = mc_xcalloc(v->nsessions, sizeof(*v->sessions));
    /* The probe's session becomes thread 0's. */
    v->sessions[0] = s;
    s = NULL;
    rc = 0;
    *out = v;
    v = NULL;
fail:
    if (in) {
        for (size_t i = 0; i < nin; i++)
            free(in[i].t.data);
        free(in);
    }
    free(ot);
    infer_session_free(&s);
    if (v) {
        v->nsessions = 0;
        predict__version_unref(&v);
    }
    return rc;
}

/* reg->lock held (read or write). */
static struct predict_model *find_model(struct predict_models *r, const char *name)
{
    mc_rwlock_assert_held(&r->lock);
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->models[i]->name, name))
            return r->models[i];
    return NULL;
}

/* reg->lock held for writing. */
static struct predict_model *model_new(struct predict_models *r, const char *name,
                                       uint64_t cache_bytes)
{
    struct predict_model *m;
    char labels[128];

    mc_rwlock_assert_held(&r->lock);
    m = mc_xcalloc(1, sizeof(*m));
    MC_INIT_OBJ(m, PREDICT_MODEL_MAGIC);
    atomic_init(&m->refcnt, 1);
    snprintf(m->name, sizeof(m->name), "%s", name);
    m->cache_bytes = cache_bytes;
    if (cache_bytes &&
        cache_pred_new(cache_bytes, "default", r->cache_objective, 16, &m->cache) != 0)
        m->cache = NULL;
    snprintf(labels, sizeof(labels), "model=\"%s\"", name);
    metrics_show_label("model", name); /* a model removed before, back */
    m->lat = metrics_hist("mlcdn_predict_inference_duration_seconds",
                          "Time of one inference run (one batch), by model", labels, 1e6, 16,
                          60000000);
    m->bsize = metrics_hist("mlcdn_predict_batch_size", "Rows per inference run, by model", labels,
                            1, 1, 65536);
    m->hits = metrics_counter("mlcdn_predict_cache_hits_total",
                              "Rows answered from the prediction cache", labels);
    m->misses = metrics_counter("mlcdn_predict_cache_misses_total", "Rows that needed an inference",
                                labels);
    m->runs = metrics_counter("mlcdn_predict_runs_total", "Inference runs (batches)", labels);
    m->run_errors = metrics_counter("mlcdn_predict_run_errors_total", "Inference runs that failed",
                                    labels);
    m->load_failures =
        metrics_counter("mlcdn_model_load_failures_total",
                        "Model versions that failed to download, verify, load or pass their sample",
                        labels);
    m->failed = metrics_gauge("mlcdn_model_failed",
                              "1 while the model's last load or roll-out failed (an older "
                              "version, or none, serves)",
                              labels);
    r->models = mc_xrealloc(r->models, (r->n + 1) * sizeof(*r->models));
    r->models[r->n++] = m;
    return m;
}

/* mlcdn_model_info of a version being listed: 1 while it is loaded (the count of loaded
 * versions with those bytes: a reload of an unchanged file adds one before the old one
 * goes). */
static void model_info(struct predict_version *v)
{
    struct buf b;
    buf_init(&b, 512);
    buf_puts(&b, "model=\"");
    metrics_label_esc(&b, v->model->name);
    buf_printf(&b, "\",version=\"%" PRId64 "\",sha256=\"%s\"", v->version, v->sha256);
    v->info = metrics_gauge("mlcdn_model_info",
                            "Loaded model versions and the SHA-256 of their model.onnx (value 1)",
                            b.data);
    buf_fini(&b);
    metrics_gauge_add(v->info, 1);
}

/* Lists NAME/VERSION directories holding a model.onnx; returns the count. */
static size_t scan(struct predict_models *r, struct cand *c, size_t max)
{
    DIR *d = opendir(r->dir), *vd;
    struct dirent *de, *ve;
    char p[4096];
    size_t n = 0;
    struct stat st;

    if (!d)
        return 0;
    while ((de = readdir(d)) != NULL && n < max) {
        if (!predict_model_name_valid(de->d_name, strlen(de->d_name)))
            continue;
        snprintf(p, sizeof(p), "%s/%s", r->dir, de->d_name);
        if (!(vd = opendir(p)))
            continue;
        while ((ve = readdir(vd)) != NULL && n < max) {
            int64_t ver;
            if (parse_version(ve->d_name, &ver) != 0)
                continue;
            snprintf(p, sizeof(p), "%s/%s/%s/model.onnx", r->dir, de->d_name, ve->d_name);
            if (stat(p, &st) != 0)
                continue;
            memset(&c[n], 0, sizeof(c[n]));
            memcpy(c[n].name, de->d_name, strlen(de->d_name) + 1); /* name valid: < 64 */
            c[n].version = ver;
            file_sig(p, c[n].sig, sizeof(c[n].sig));
            snprintf(p, sizeof(p), "%s/%s/config.json", r->dir, de->d_name);
            file_sig(p, c[n].sig, sizeof(c[n].sig));
            snprintf(p, sizeof(p), "%s/%s/%s/config.json", r->dir, de->d_name, ve->d_name);
            file_sig(p, c[n].sig, sizeof(c[n].sig));
            n++;
        }
        closedir(vd);
    }
    closedir(d);
    return n;
}

static int cand_cmp(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return x->version < y->version ? -1 : x->version > y->version;
}

static struct predict_version *find_ver(struct predict_model *m, int64_t version)
{
    for (size_t i = 0; i < m->nvers; i++)
        if (m->vers[i]->version == version)
            return m->vers[i];
    return NULL;
}

static void dir_sig(const struct cand *c, size_t n, char *out, size_t len)
{
    uint8_t h[16];
    struct buf b;
    buf_init(&b, SIZE_MAX);
    for (size_t i = 0; i < n; i++)
        buf_printf(&b, "%s/%" PRId64 "=%s\n", c[i].name, c[i].version, c[i].sig);
    cache_key_hash(b.data ? b.data : "", b.len, h);
    buf_fini(&b);
    size_t o = 0;
    for (int i = 0; i < 16 && o + 2 < len; i++)
        o += (size_t)snprintf(out + o, len - o, "%02x", h[i]);
}

int predict__models_reload(struct predict_models *r, struct buf *report)
{
    struct cand *c = mc_xcalloc(MAX_CANDIDATES, sizeof(*c));
    size_t n, nfail = 0, nloaded = 0;
    char err[512];
    struct predict_version **retired = NULL;
    size_t nretired = 0;

    MC_CHECK_OBJ_NOTNULL(r, PREDICT_MODELS_MAGIC);
    if (!r->dir) { /* model store: versions come from predict_store.c */
        free(c);
        return 0;
    }
    pthread_mutex_lock(&r->reload_mtx);
    n = scan(r, c, MAX_CANDIDATES);
    qsort(c, n, sizeof(*c), cand_cmp);
    dir_sig(c, n, r->last_sig, sizeof(r->last_sig));
    /* Which versions are unchanged (read lock: requests go on meanwhile). */
    pthread_rwlock_rdlock(&r->lock);
    for (size_t i = 0; i < n; i++) {
        struct predict_model *m = find_model(r, c[i].name);
        struct predict_version *v = m ? find_ver(m, c[i].version) : NULL;
        c[i].keep = v && !strcmp(v->sig, c[i].sig);
    }
    pthread_rwlock_unlock(&r->lock);
    if (report)
        buf_puts(report, "{\"loaded\":[");
    /* Errors per model name, collected before the swap. */
    struct {
        char name[PREDICT_MODEL_NAME_MAX];
        char error[512];
    } *errs = mc_xcalloc(n ? n : 1, sizeof(*errs));
    size_t nerrs = 0;
    for (size_t i = 0; i < n; i++) {
        if (c[i].keep)
            continue;
        uint64_t t0 = units_now_ms();
        int rc = load_version(r, c[i].name, c[i].version, c[i].sig, NULL, &c[i].loaded, err,
                              sizeof(err));
        if (rc) {
            nfail++;
            log_warn("model failed to load", "model=%s version=%" PRId64 " error=\"%s\"", c[i].name,
                     c[i].version, err);
            snprintf(errs[nerrs].name, sizeof(errs[nerrs].name), "%s", c[i].name);
            snprintf(errs[nerrs].error, sizeof(errs[nerrs].error), "version %" PRId64 ": %.400s",
                     c[i].version, err);
            nerrs++;
            continue;
        }
        c[i].loaded->cfg.max_batch = c[i].loaded->cfg.max_batch ? c[i].loaded->cfg.max_batch : 1;
        log_info("model loaded", "model=%s version=%" PRId64 " ms=%llu", c[i].name, c[i].version,
                 (unsigned long long)(units_now_ms() - t0));
        if (report) {
            buf_printf(report, "%s{\"model\":", nloaded ? "," : "");
            buf_json_str(report, c[i].name, strlen(c[i].name));
            buf_printf(report, ",\"version\":%" PRId64 "}", c[i].version);
        }
        nloaded++;
    }
    /* The switch: every model's version list at once. */
    pthread_rwlock_wrlock(&r->lock);
    for (size_t i = 0; i < n; i++) {
        if (find_model(r, c[i].name))
            continue;
        uint64_t cb = c[i].loaded ? c[i].loaded->cfg.cache_bytes : r->defaults.cache_bytes;
        model_new(r, c[i].name, cb);
    }
    for (size_t mi = 0; mi < r->n; mi++) {
        struct predict_model *m = r->models[mi];
        struct predict_version **nv = mc_xcalloc(n + m->nvers + 1, sizeof(*nv));
        size_t nn = 0;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(c[i].name, m->name))
                continue;
            struct predict_version *old = find_ver(m, c[i].version);
            if (c[i].keep) {
                nv[nn++] = old;
            } else if (c[i].loaded) {
                atomic_fetch_add(&m->refcnt, 1);
                c[i].loaded->model = m;
                model_info(c[i].loaded);
                nv[nn++] = c[i].loaded;
                c[i].loaded = NULL;
            } else if (old) {
                nv[nn++] = old; /* a changed version that fails keeps the old one */
            }
        }
        /* What the new list does not hold any more is retired. */
        for (size_t k = 0; k < m->nvers; k++) {
            int kept = 0;
            for (size_t j = 0; j < nn; j++)
                kept |= nv[j] == m->vers[k];
            if (!kept) {
                retired = mc_xrealloc(retired, (nretired + 1) * sizeof(*retired));
                retired[nretired++] = m->vers[k];
            }
        }
        free(m->vers);
        m->vers = nv;
        m->nvers = nn;
        m->cur = nn ? nv[nn - 1] : NULL;
        /* A version that failed is retried by every reload, so the errors of this reload
         * are the model's state: none clears an older one. */
        m->error[0] = '\0';
        for (size_t k = 0; k < nerrs; k++) {
            if (strcmp(errs[k].name, m->name))
                continue;
            size_t o = strlen(m->error);
            snprintf(m->error + o, sizeof(m->error) - o, "%s%.400s", o ? "; " : "", errs[k].error);
            metrics_counter_add(m->load_failures, 1);
        }
        metrics_gauge_set(m->failed, m->error[0] ? 1 : 0);
    }
    /* A model whose directory holds no version any more (removed, or emptied) leaves the
     * registry and the metrics; its versions were retired above and finish their
     * requests. A scan cut at MAX_CANDIDATES may have missed models: nothing goes then. */
    struct predict_model **removed = mc_xcalloc(r->n ? r->n : 1, sizeof(*removed));
    size_t nremoved = 0;
    for (size_t mi = 0; n < MAX_CANDIDATES && mi < r->n;) {
        struct predict_model *m = r->models[mi];
        size_t i = 0;
        while (i < n && strcmp(c[i].name, m->name))
            i++;
        if (i < n) {
            mi++;
            continue;
        }
        MC_ASSERT(m->nvers == 0);
        metrics_hide_label("model", m->name);
        removed[nremoved++] = m;
        memmove(&r->models[mi], &r->models[mi + 1], (r->n - mi - 1) * sizeof(*r->models));
        r->n--;
    }
    r->reloads++;
    if (nfail)
        r->reload_failures++;
    pthread_rwlock_unlock(&r->lock);
    if (report) {
        buf_puts(report, "],\"retired\":[");
        for (size_t k = 0; k < nretired; k++) {
            buf_printf(report, "%s{\"model\":", k ? "," : "");
            buf_json_str(report, retired[k]->model->name, strlen(retired[k]->model->name));
            buf_printf(report, ",\"version\":%" PRId64 "}", retired[k]->version);
        }
        buf_puts(report, "],\"removed\":[");
        for (size_t k = 0; k < nremoved; k++) {
            if (k)
                buf_puts(report, ",");
            buf_json_str(report, removed[k]->name, strlen(removed[k]->name));
        }
        buf_puts(report, "],\"failed\":[");
        for (size_t k = 0; k < nerrs; k++) {
            buf_printf(report, "%s{\"model\":", k ? "," : "");
            buf_json_str(report, errs[k].name, strlen(errs[k].name));
            buf_puts(report, ",\"error\":");
            buf_json_str(report, errs[k].error, strlen(errs[k].error));
            buf_puts(report, "}");
        }
        buf_puts(report, "]}\n");
    }
    pthread_mutex_unlock(&r->reload_mtx);
    for (size_t k = 0; k < nretired; k++) {
        log_info("model version retired", "model=%s version=%" PRId64, retired[k]->model->name,
                 retired[k]->version);
        predict__version_unref(&retired[k]);
    }
    free(retired);
    for (size_t k = 0; k < nremoved; k++) {
        log_info("model removed", "model=%s", removed[k]->name);
        model_unref(&removed[k]);
    }
    free(removed);
    free(errs);
    free(c);
    return (int)nfail;
}

static void *watcher(void *arg)
{
    struct predict_models *r = arg;
    struct cand *c = mc_xcalloc(MAX_CANDIDATES, sizeof(*c));
    char sig[64];

    pthread_mutex_lock(&r->wmtx);
    while (!r->wstop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)(r->poll_ms / 1000);
        ts.tv_nsec += (long)(r->poll_ms % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&r->wcv, &r->wmtx, &ts);
        if (r->wstop)
            break;
        pthread_mutex_unlock(&r->wmtx);
        pthread_mutex_lock(&r->reload_mtx);
        size_t n = scan(r, c, MAX_CANDIDATES);
        qsort(c, n, sizeof(*c), cand_cmp);
        dir_sig(c, n, sig, sizeof(sig));
        int changed = strcmp(sig, r->last_sig) != 0;
        pthread_mutex_unlock(&r->reload_mtx);
        if (changed) {
            log_info("models directory changed, reloading", "dir=%s", r->dir);
            predict__models_reload(r, NULL);
        }
        pthread_mutex_lock(&r->wmtx);
    }
    pthread_mutex_unlock(&r->wmtx);
    free(c);
    return NULL;
}

int predict__models_new(const struct predict_cfg *cfg, unsigned nthreads,
                        struct predict_models **out, char *err, size_t errlen)
{
    struct predict_models *r;
    struct stat st;

    if (cfg->models_dir && (stat(cfg->models_dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
        snprintf(err, errlen, "--models: '%s' is not a directory", cfg->models_dir);
        return -ENOENT;
    }
    r = mc_xcalloc(1, sizeof(*r));
    MC_INIT_OBJ(r, PREDICT_MODELS_MAGIC);
    r->dir = cfg->models_dir ? mc_xstrdup(cfg->models_dir) : NULL;
    pthread_rwlock_init(&r->lock, NULL);
    pthread_mutex_init(&r->reload_mtx, NULL);
    pthread_mutex_init(&r->wmtx, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->wcv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&r->next_gen, 1);
    r->defaults.max_batch = cfg->max_batch ? cfg->max_batch : 64;
    r->defaults.max_delay_us = cfg->max_delay_us;
    r->defaults.threads = 0;
    r->defaults.cache_bytes = cfg->predict_cache;
    r->model_memory = cfg->model_memory;
    r->cache_objective = cfg->predict_objective;
    r->nthreads = nthreads;
    r->poll_ms = cfg->models_poll_ms;
    *out = r;
    return 0;
}

void predict__models_watch(struct predict_models *r)
{
    MC_CHECK_OBJ_NOTNULL(r, PREDICT_MODELS_MAGIC);
    if (r->dir && r->poll_ms && !r->watcher_on &&
        pthread_create(&r->watcher, NULL, watcher, r) == 0)
        r->watcher_on = 1;
}

void predict__models_free(struct predict_models **rp)
{
    struct predict_models *r = *rp;

    if (!r)
        return;
    MC_CHECK_OBJ(r, PREDICT_MODELS_MAGIC);
    if (r->watcher_on) {
        pthread_mutex_lock(&r->wmtx);
        r->wstop = 1;
        pthread_cond_signal(&r->wcv);
        pthread_mutex_unlock(&r->wmtx);
        pthread_join(r->watcher, NULL);
    }
    for (size_t i = 0; i < r->n; i++) {
        struct predict_model *m = r->models[i];
        size_t nv = m->nvers;
        m->nvers = 0;
        for (size_t k = 0; k < nv; k++)
            predict__version_unref(&m->vers[k]);
        model_unref(&m);
    }
    free(r->models);
    pthread_rwlock_destroy(&r->lock);
    pthread_mutex_destroy(&r->reload_mtx);
    pthread_mutex_destroy(&r->wmtx);
    pthread_cond_destroy(&r->wcv);
    free(r->dir);
    MC_FREE_OBJ(r);
    *rp = NULL;
}

/* Names of the loaded models, comma-separated, for messages (reg->lock held). */
static void loaded_names(struct predict_models *r, char *out, size_t len)
{
    size_t o = 0;

    mc_rwlock_assert_held(&r->lock);
    out[0] = '\0';
    for (size_t i = 0; i < r->n && o < len; i++)
        if (r->models[i]->cur)
            o += (size_t)snprintf(out + o, len - o, "%s%s", o ? ", " : "", r->models[i]->name);
}

int64_t predict_cache_drop(struct predict *p, const char *name)
{
    struct predict_models *r = p->models;
    int64_t n = -ENOENT;

    pthread_rwlock_rdlock(&r->lock);
    for (size_t i = 0; i < r->n; i++) {
        struct predict_model *m = r->models[i];
        if (name && strcmp(m->name, name) != 0)
            continue;
        n = MC_MAX(n, 0);
        if (m->cache) {
            struct cache_pred_stats st;
            cache_pred_stats(m->cache, &st);
            cache_pred_clear(m->cache);
            n += (int64_t)st.entries;
        }
    }
    pthread_rwlock_unlock(&r->lock);
    if (!name)
        n = MC_MAX(n, 0);
    return n;
}

int predict__models_get(struct predict_models *r, const char *name, int64_t version,
                        struct predict_version **out, char *msg, size_t mlen)
{
    struct predict_model *m = NULL;
    struct predict_version *v = NULL;
    char names[256];
    int rc = 0;

    pthread_rwlock_rdlock(&r->lock);
    if (name) {
        m = find_model(r, name);
        if (!m) {
            loaded_names(r, names, sizeof(names));
            snprintf(msg, mlen, "model: '%.64s' is not loaded (loaded: %s)", name,
                     names[0] ? names : "none");
            rc = -ENOENT;
            goto out;
        }
    } else {
        size_t nready = 0;
        for (size_t i = 0; i < r->n; i++)
            if (r->models[i]->cur) {
                m = r->models[i];
                nready++;
            }
        if (nready != 1) {
            loaded_names(r, names, sizeof(names));
            snprintf(msg, mlen, "model: required when %s models are loaded (loaded: %s)",
                     nready ? "several" : "no", names[0] ? names : "none");
            rc = nready ? -EINVAL : -ENOENT;
            goto out;
        }
    }
    if (version < 0) {
        v = m->cur;
        if (m->canary && predict__policy_canary(atomic_fetch_add(&m->seq, 1), m->canary_percent))
            v = m->canary;
        if (!v) {
            snprintf(msg, mlen, "model %s has no version loaded%s%.300s", m->name,
                     m->error[0] ? ": " : "", m->error);
            /* Failed to load: unavailable; removed from the directory: unknown. */
            rc = m->error[0] ? -EAGAIN : -ENOENT;
            goto out;
        }
    } else {
        v = find_ver(m, version);
        if (!v) {
            size_t o = 0;
            names[0] = '\0';
            for (size_t k = 0; k < m->nvers && o < sizeof(names); k++)
                o += (size_t)snprintf(names + o, sizeof(names) - o, "%s%" PRId64, k ? ", " : "",
                                      m->vers[k]->version);
            snprintf(msg, mlen, "model %s has no version %" PRId64 " (loaded: %s)", m->name,
                     version, names[0] ? names : "none");
            rc = -ENOENT;
            goto out;
        }
    }
    *out = predict__version_ref(v);
out:
    pthread_rwlock_unlock(&r->lock);
    return rc;
}

void predict__cache_key(const struct predict_version *v, void *const *in, size_t r,
                        unsigned char *key)
{
    uint64_t id[2] = {(uint64_t)v->version, v->gen};
    size_t o = sizeof(id);

    memcpy(key, id, sizeof(id));
    for (size_t i = 0; i < v->n_in; i++) {
        memcpy(key + o, (const unsigned char *)in[i] + r * v->in[i].row_bytes, v->in[i].row_bytes);
        o += v->in[i].row_bytes;
    }
}

void predict__models_describe(struct predict_models *r, const char *edge, int64_t rollouts_done,
                              struct buf *b)
{
    pthread_rwlock_rdlock(&r->lock);
    buf_puts(b, "{");
    if (edge) {
        buf_puts(b, "\"edge\":");
        buf_json_str(b, edge, strlen(edge));
        buf_puts(b, ",");
    }
    if (rollouts_done >= 0)
        buf_printf(b, "\"rollouts_done\":%" PRId64 ",", rollouts_done);
    buf_puts(b, "\"dir\":");
    if (r->dir)
        buf_json_str(b, r->dir, strlen(r->dir));
    else
        buf_puts(b, "null");
    buf_printf(b,
               ",\"reloads\":%" PRIu64 ",\"reload_failures\":%" PRIu64
               ",\"infer_threads\":%u,\"models\":[",
               r->reloads, r->reload_failures, r->nthreads);
    for (size_t i = 0; i < r->n; i++) {
        struct predict_model *m = r->models[i];
        buf_puts(b, i ? ",{\"name\":" : "{\"name\":");
        buf_json_str(b, m->name, strlen(m->name));
        if (m->cur)
            buf_printf(b, ",\"version\":%" PRId64 ",\"ready\":true", m->cur->version);
        else
            buf_puts(b, ",\"version\":null,\"ready\":false");
        buf_puts(b, ",\"versions\":[");
        for (size_t k = 0; k < m->nvers; k++)
            buf_printf(b, "%s%" PRId64, k ? "," : "", m->vers[k]->version);
        buf_puts(b, "],\"error\":");
        if (m->error[0])
            buf_json_str(b, m->error, strlen(m->error));
        else
            buf_puts(b, "null");
        buf_puts(b, ",\"sha256\":");
        if (m->cur)
            buf_json_str(b, m->cur->sha256, strlen(m->cur->sha256));
        else
            buf_puts(b, "null");
        if (!r->dir) {
            static const char *const st[] = {
#define X(id, label) label,
                PREDICT_MSTATES(X)
#undef X
            };
            buf_printf(b, ",\"state\":\"%s\",\"reason\":", st[m->state]);
            if (m->state == PREDICT_MS_FAILED)
                buf_json_str(b, m->error, strlen(m->error));
            else
                buf_puts(b, "null");
            buf_puts(b, ",\"target\":");
            if (m->target >= 0)
                buf_printf(b, "%" PRId64, m->target);
            else
                buf_puts(b, "null");
            buf_printf(b, ",\"policy\":%s", m->policy[0] ? m->policy : "null");
            if (m->canary)
                buf_printf(b,
                           ",\"canary\":{\"version\":%" PRId64 ",\"sha256\":\"%s\","
                           "\"percent\":%u}",
                           m->canary->version, m->canary->sha256, m->canary_percent);
            else
                buf_puts(b, ",\"canary\":null");
        }
        if (m->cur) {
            const struct predict_model_cfg *c = &m->cur->cfg;
            buf_printf(b,
                       ",\"config\":{\"max_batch\":%u,\"max_delay_us\":%" PRIu64
                       ",\"threads\":%u,\"cache_bytes\":%" PRIu64 "},\"inputs\":",
                       c->max_batch, c->max_delay_us, c->threads, m->cache_bytes);
            predict__json_io(b, m->cur->in, m->cur->n_in);
            buf_puts(b, ",\"outputs\":");
            predict__json_io(b, m->cur->out, m->cur->n_out);
            struct infer_model_mem mm;
            infer_model_memory(m->cur->im, &mm);
            buf_printf(b,
                       ",\"memory\":{\"budget\":%zu,\"constants\":%zu,\"run\":%zu,"
                       "\"batch\":%" PRId64 "}",
                       mm.budget, mm.constants, mm.run, mm.batch);
        }
        if (m->cache) {
            struct cache_pred_stats st;
            cache_pred_stats(m->cache, &st);
            buf_printf(b,
                       ",\"cache\":{\"entries\":%" PRIu64 ",\"bytes\":%" PRIu64
                       ",\"capacity\":%" PRIu64 ",\"hits\":%" PRIu64 ",\"misses\":%" PRIu64
                       ",\"evictions\":%" PRIu64 "}",
                       st.entries, st.bytes, st.capacity, metrics_counter_get(m->hits),
                       metrics_counter_get(m->misses), st.evictions);
        }
        buf_puts(b, "}");
    }
    buf_puts(b, "]}\n");
    pthread_rwlock_unlock(&r->lock);
}

void predict__models_brief(struct predict_models *r, size_t max, struct buf *b)
{
    static const char *const st[] = {
#define X(id, label) label,
        PREDICT_MSTATES(X)
#undef X
    };

    pthread_rwlock_rdlock(&r->lock);
    buf_puts(b, "[");
    for (size_t i = 0; i < r->n && i < max; i++) {
        const struct predict_model *m = r->models[i];
        if (i)
            buf_puts(b, ",");
        buf_puts(b, "{\"name\":");
        buf_json_str(b, m->name, strlen(m->name));
        if (m->cur)
            buf_printf(b, ",\"version\":%" PRId64 ",\"sha256\":\"%s\"", m->cur->version,
                       m->cur->sha256);
        else
            buf_puts(b, ",\"version\":null,\"sha256\":null");
        /* A models directory has no roll-out: a model serves or failed to load. */
        buf_printf(b, ",\"state\":\"%s\"", r->dir ? (m->cur ? "active" : "failed") : st[m->state]);
        if (m->canary)
            buf_printf(b, ",\"canary\":%" PRId64 ",\"canary_percent\":%u", m->canary->version,
                       m->canary_percent);
        buf_puts(b, "}");
    }
    buf_puts(b, "]");
    pthread_rwlock_unlock(&r->lock);
}

/* ---- model store (predict_store.c drives these) ---- */

int predict__models_load_file(struct predict_models *r, const char *name, int64_t version,
                              const char *path, struct predict_version **out, char *err,
                              size_t errlen)
{
    MC_CHECK_OBJ_NOTNULL(r, PREDICT_MODELS_MAGIC);
    int rc = load_version(r, name, version, "", path, out, err, errlen);
    if (rc == 0 && !(*out)->cfg.max_batch)
        (*out)->cfg.max_batch = 1;
    return rc;
}

int predict__models_has(struct predict_models *r, const char *name, int64_t version)
{
    struct predict_model *m;
    int has;

    pthread_rwlock_rdlock(&r->lock);
    m = find_model(r, name);
    has = m && find_ver(m, version) != NULL;
    pthread_rwlock_unlock(&r->lock);
    return has;
}

/* reg->lock held for writing. */
static struct predict_model *model_get_or_new(struct predict_models *r, const char *name)
{
    struct predict_model *m = find_model(r, name);
    if (!m) {
        m = model_new(r, name, r->defaults.cache_bytes);
        m->target = -1;
    }
    return m;
}

void predict__models_set_state(struct predict_models *r, const char *name, enum predict_mstate st,
                               int64_t target, const char *reason)
{
    struct predict_model *m;

    pthread_rwlock_wrlock(&r->lock);
    m = model_get_or_new(r, name);
    m->state = st;
    m->target = target;
    snprintf(m->error, sizeof(m->error), "%s", st == PREDICT_MS_FAILED && reason ? reason : "");
    if (st == PREDICT_MS_FAILED)
        metrics_counter_add(m->load_failures, 1);
    if (st == PREDICT_MS_FAILED || st == PREDICT_MS_ACTIVE)
        metrics_gauge_set(m->failed, st == PREDICT_MS_FAILED);
    pthread_rwlock_unlock(&r->lock);
}

int predict__models_activate(struct predict_models *r, const char *name,
                             struct predict_version **nvs, size_t nnv,
                             const struct predict_target *t, const char *policy, unsigned keep,
                             char *err, size_t errlen)
{
    struct predict_model *m;
    struct predict_version **retired = NULL, *stable, *canary = NULL;
    size_t nretired = 0;

    pthread_rwlock_wrlock(&r->lock);
    m = model_get_or_new(r, name);
    for (size_t j = 0; j < nnv; j++) {
        struct predict_version *nv = nvs[j];
        /* A version already listed is replaced: the new load is what was just verified. */
        struct predict_version *old = find_ver(m, nv->version);
        size_t i = 0;
        if (old) {
            while (m->vers[i] != old)
                i++;
            memmove(&m->vers[i], &m->vers[i + 1], (m->nvers - i - 1) * sizeof(*m->vers));
            m->nvers--;
            retired = mc_xrealloc(retired, (nretired + 1) * sizeof(*retired));
            retired[nretired++] = old;
        }
        m->vers = mc_xrealloc(m->vers, (m->nvers + 1) * sizeof(*m->vers));
        for (i = m->nvers; i > 0 && m->vers[i - 1]->version > nv->version; i--)
            m->vers[i] = m->vers[i - 1];
        m->vers[i] = nv;
        m->nvers++;
        atomic_fetch_add(&m->refcnt, 1);
        nv->model = m;
        model_info(nv);
    }
    stable = find_ver(m, t->stable);
    if (t->canary >= 0)
        canary = find_ver(m, t->canary);
    if (!stable || (t->canary >= 0 && !canary)) {
        snprintf(err, errlen, "version %" PRId64 " is not loaded", !stable ? t->stable : t->canary);
        pthread_rwlock_unlock(&r->lock);
        for (size_t k = 0; k < nretired; k++)
            predict__version_unref(&retired[k]);
        free(retired);
        return -ENOENT;
    }
    m->cur = stable;
    m->canary = canary;
    m->canary_percent = canary ? t->percent : 0;
    snprintf(m->policy, sizeof(m->policy), "%s", policy ? policy : "");
    /* Keep the `keep` highest versions for rollback, and whatever is served. */
    size_t others = 0;
    for (size_t k = m->nvers; k-- > 0;) {
        struct predict_version *v = m->vers[k];
        if (v == stable || v == canary)
            continue;
        if (others++ < keep)
            continue;
        memmove(&m->vers[k], &m->vers[k + 1], (m->nvers - k - 1) * sizeof(*m->vers));
        m->nvers--;
        retired = mc_xrealloc(retired, (nretired + 1) * sizeof(*retired));
        retired[nretired++] = v;
    }
    m->state = PREDICT_MS_ACTIVE;
    m->target = -1;
    m->error[0] = '\0';
    metrics_gauge_set(m->failed, 0);
    pthread_rwlock_unlock(&r->lock);
    for (size_t k = 0; k < nretired; k++) {
        log_info("model version retired", "model=%s version=%" PRId64, name, retired[k]->version);
        predict__version_unref(&retired[k]);
    }
    free(retired);
    return 0;
}

int predict__sample_run(struct predict_version *v, json_t *sample, struct buf *out, char *msg,
                        size_t mlen)
{
    struct predict_rows d = {0};
    struct infer_input in[16];
    struct infer_tensor ot[16];
    int rc;

    MC_CHECK_OBJ_NOTNULL(v, PREDICT_VERSION_MAGIC);
    if ((rc = predict__json_seed(sample, v, 0, &d, msg, mlen)) != 0)
        goto out;
    if (d.rows != 1) {
        snprintf(msg, mlen, "sample: expected one row, got %zu", d.rows);
        rc = -EINVAL;
        goto out;
    }
    for (size_t i = 0; i < v->n_in; i++) {
        in[i].name = v->in[i].name;
        in[i].t.dtype = v->in[i].dtype;
        in[i].t.rank = v->in[i].rank;
        memcpy(in[i].t.dims, v->in[i].dims, sizeof(in[i].t.dims));
        in[i].t.dims[0] = 1;
        in[i].t.data = d.in[i];
    }
    memset(ot, 0, sizeof(ot));
    if ((rc = infer_session_run(v->sessions[0], in, v->n_in, ot, v->n_out, msg, mlen)) != 0) {
        rc = -EINVAL;
        goto out;
    }
    buf_puts(out, "{");
    for (size_t o = 0; o < v->n_out; o++) {
        int64_t n = infer_tensor_numel(&ot[o]);
        if (o)
            buf_puts(out, ",");
        buf_json_str(out, v->out[o].name, strlen(v->out[o].name));
        buf_puts(out, ":[");
        for (int64_t k = 0; k < n; k++) {
            if (k)
                buf_puts(out, ",");
            predict__json_elem(out, ot[o].dtype, ot[o].data, k);
        }
        buf_puts(out, "]");
    }
    buf_puts(out, "}");
out:
    predict__rows_fini(&d);
    return rc;
}
