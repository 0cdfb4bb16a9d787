/* src/predict/predict_store.c: models from a model store (--model-store URL).
 *
 * One thread per edge takes roll-out jobs (an announcement, or the models named at start:
 * --model-store-models, else every model of the store's models/index.json) one at a time. A job reads models/NAME/manifest.json from the store (or takes the one
 * announced), works out what this edge must serve under the version policy
 * (predict_manifest.c), and for each version not loaded yet:
 *   downloading  GET models/NAME/VERSION/model.onnx under fetch_base (the edge's own
 *                public listener, so the file comes through its cache tiers: the second
 *                edge of a region gets it from Redis or the parent) into a temporary file,
 *                hashing it on the way (OpenSSL EVP SHA-256);
 *   verifying    size and digest against the manifest (a mismatch through the tiers is
 *                fetched once more straight from the store, in case a tier held an older
 *                copy), then the load (the engine's checks and probe) and the sample: its
 *                outputs must match the manifest's within a tolerance;
 * and only then activates everything in one step under the registry's write lock
 * (predict__models_activate). A failure at any step leaves the served versions as they
 * were; the model's state says "failed" with the reason. Versions stay in memory (the
 * temporary file is removed once loaded), the `keep` newest beyond those served, so a
 * rollback to one of them is a switch, without a download.
 *
 * Locking: s->mtx guards the job queue and `stop`; the registry has its own locks. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "core/log.h"
#include "core/mc.h"
#include "core/units.h"
#include "predict/predict_int.h"

#define PREDICT_STORE_MAGIC 0x5053544fu
#define MANIFEST_MAX (16u << 20)
#define SAMPLE_ATOL 1e-4
#define SAMPLE_RTOL 1e-4

struct store_job {
    struct store_job *next;
    char name[PREDICT_MODEL_NAME_MAX];
    char *manifest; /* owned, or NULL: read from the store */
    size_t len;
    uint64_t seq;
};

struct predict_store {
    unsigned magic;
    struct predict_models *r;
    char *url;        /* the store, without a trailing '/' */
    char *fetch_base; /* where model files are fetched (NULL: url) */
    char *host;       /* the store URL's authority, the Host of fetches through the edge */
    const char *path; /* the store URL's path ("" or e.g. "/bucket"), inside url */
    char *edge;       /* this edge's name, for canary membership ("" when none) */
    char *models;     /* comma-separated models read at start, or NULL */
    unsigned keep;
    pthread_t th;
    int started;
    pthread_mutex_t mtx;
    pthread_cond_t cv;
    struct store_job *head, *tail; /* mtx */
    uint64_t last_seq;             /* mtx: the last job's number */
    _Atomic uint64_t done_seq;     /* the last job finished */
    _Atomic int stop;
};

static char *strip_slash(const char *u)
{
    char *s = mc_xstrdup(u);
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == '/')
        s[--n] = '\0';
    return s;
}

/* ---- HTTP ---- */

struct fetch {
    struct predict_store *s;
    struct buf *mem; /* manifest: into memory (capped) */
    FILE *f;         /* model: into a file, hashed */
    EVP_MD_CTX *md;
    uint64_t got, max;
};

static size_t on_data(char *p, size_t sz, size_t n, void *arg)
{
    struct fetch *ft = arg;
    size_t len = sz * n;

    if (ft->got + len > ft->max)
        return 0; /* more than announced: abort (CURLE_WRITE_ERROR) */
    ft->got += len;
    if (ft->mem)
        return buf_append(ft->mem, p, len) == 0 ? len : 0;
    if (EVP_DigestUpdate(ft->md, p, len) != 1 || fwrite(p, 1, len, ft->f) != len)
        return 0;
    return len;
}

static int on_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    struct fetch *ft = arg;
    (void)a, (void)b, (void)c, (void)d;
    return atomic_load(&ft->s->stop) ? 1 : 0;
}

/* GET url into ft, with a Host header when host is not NULL. 0, or -EIO with a message
 * naming the URL and what went wrong. */
static int http_get(struct fetch *ft, const char *url, const char *host, char *err, size_t errlen)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char cerr[CURL_ERROR_SIZE] = "";
    long status = 0;
    CURLcode cc;

    if (!c) {
        snprintf(err, errlen, "%s: cannot start a transfer", url);
        return -ENOMEM;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, ft);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, ft);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    /* A stalled transfer (under 1 KB/s for 30 s) fails rather than hanging the queue. */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 30L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "mlcdn-edge-model-store");
    if (host) {
        char hh[512];
        snprintf(hh, sizeof(hh), "Host: %s", host);
        h = curl_slist_append(h, hh);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    }
    cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    if (cc == CURLE_WRITE_ERROR && ft->got >= ft->max && !ft->mem) {
        snprintf(err, errlen, "%s: larger than the manifest's size (%" PRIu64 " bytes)", url,
                 ft->max);
        return -EIO;
    }
    if (cc != CURLE_OK) {
        snprintf(err, errlen, "%s: %s", url, cerr[0] ? cerr : curl_easy_strerror(cc));
        return -EIO;
    }
    if (status != 200) {
        snprintf(err, errlen, "%s: HTTP status %ld", url, status);
        return -EIO;
    }
    return 0;
}

/* Fetches the model file into a new temporary file (its path in path[4096]) and its hex
 * SHA-256 into hex[65]. 0, or -errno with err. The caller removes the file. */
static int fetch_model(struct predict_store *s, const char *base, const char *name,
                       const struct predict_mver *mv, char *path, char *hex, uint64_t *size,
                       char *err, size_t errlen)
{
    const char *tmp = getenv("TMPDIR");
    char url[4096];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    struct fetch ft = {.s = s, .max = mv->size};
    int fd, rc;

    snprintf(path, 4096, "%s/mlcdn-model-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if ((fd = mkstemp(path)) < 0) {
        rc = -errno;
        snprintf(err, errlen, "temporary file %s: %s", path, strerror(errno));
        path[0] = '\0';
        return rc;
    }
    ft.f = fdopen(fd, "wb");
    ft.md = EVP_MD_CTX_new();
    if (!ft.f || !ft.md || EVP_DigestInit_ex(ft.md, EVP_sha256(), NULL) != 1) {
        snprintf(err, errlen, "cannot set up the download");
        rc = -ENOMEM;
        if (!ft.f)
            close(fd);
        goto out;
    }
    /* Through the edge, the store's own host name and path (a bucket's, say): the cache
     * key is then the same on every edge (and on their parent) whatever address each edge
     * listens on, and the origin behind it gets the store's path. */
    snprintf(url, sizeof(url), "%s%s/models/%s/%" PRId64 "/model.onnx", base,
             base == s->url ? "" : s->path, name, mv->version);
    rc = http_get(&ft, url, base == s->url ? NULL : s->host, err, errlen);
    if (rc == 0 && fflush(ft.f) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        rc = -EIO;
    }
    if (rc == 0 && (EVP_DigestFinal_ex(ft.md, md, &mdlen) != 1 || mdlen != 32)) {
        snprintf(err, errlen, "SHA-256 failed");
        rc = -EIO;
    }
    if (rc == 0) {
        for (unsigned i = 0; i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", md[i]);
        *size = ft.got;
    }
out:
    if (ft.f)
        fclose(ft.f);
    EVP_MD_CTX_free(ft.md);
    return rc;
}

/* ---- one roll-out ---- */

/* Downloads, verifies, loads and checks version mv. 0 with the loaded (unlisted) version in
 * *out, or -errno with the state set to FAILED and its reason. */
static int install(struct predict_store *s, const struct predict_manifest *m,
                   const struct predict_mver *mv, struct predict_version **out)
{
    char path[4096] = "", hex[65] = "", err[512], reason[640];
    uint64_t size = 0, t0 = units_now_ms(), t_dl = 0, t_load = 0;
    int rc, direct = !s->fetch_base;

    predict__models_set_state(s->r, m->name, PREDICT_MS_DOWNLOADING, mv->version, NULL);
    rc = fetch_model(s, direct ? s->url : s->fetch_base, m->name, mv, path, hex, &size, err,
                     sizeof(err));
    if (!direct && (rc != 0 || strcmp(hex, mv->sha256) != 0)) {
        /* A tier may hold a copy from before (or a broken one): the store decides. */
        log_warn("model fetch through the edge failed, trying the store",
                 "model=%s version=%" PRId64 " error=\"%s\"", m->name, mv->version,
                 rc ? err : "sha256 mismatch");
        if (path[0])
            unlink(path);
        path[0] = '\0';
        rc = fetch_model(s, s->url, m->name, mv, path, hex, &size, err, sizeof(err));
    }
    if (rc != 0) {
        snprintf(reason, sizeof(reason), "download: %s", err);
        goto fail;
    }
    t_dl = units_now_ms();
    predict__models_set_state(s->r, m->name, PREDICT_MS_VERIFYING, mv->version, NULL);
    if (size != mv->size) {
        snprintf(reason, sizeof(reason), "size %" PRIu64 ", the manifest says %" PRIu64, size,
                 mv->size);
        rc = -EINVAL;
        goto fail;
    }
    if (strcmp(hex, mv->sha256) != 0) {
        snprintf(reason, sizeof(reason), "sha256 mismatch: got %s, the manifest says %s", hex,
                 mv->sha256);
        rc = -EINVAL;
        goto fail;
    }
    if ((rc = predict__models_load_file(s->r, m->name, mv->version, path, out, err, sizeof(err))) !=
        0) {
        snprintf(reason, sizeof(reason), "load: %s", err);
        goto fail;
    }
    t_load = units_now_ms();
    if (mv->sample_in) {
        struct buf b;
        json_t *got;
        buf_init(&b, 64u << 20);
        rc = predict__sample_run(*out, mv->sample_in, &b, err, sizeof(err));
        if (rc == 0) {
            got = json_loadb(b.data, b.len, 0, NULL);
            rc = predict__sample_compare(mv->sample_out, got, SAMPLE_ATOL, SAMPLE_RTOL, err,
                                         sizeof(err));
            json_decref(got);
        }
        buf_fini(&b);
        if (rc != 0) {
            snprintf(reason, sizeof(reason), "sample: %s", err);
            predict__version_unref(out);
            goto fail;
        }
    }
    unlink(path);
    log_info("model version verified",
             "model=%s version=%" PRId64 " bytes=%" PRIu64
             " ms=%llu download_ms=%llu load_ms=%llu sample_ms=%llu",
             m->name, mv->version, size, (unsigned long long)(units_now_ms() - t0),
             (unsigned long long)(t_dl - t0), (unsigned long long)(t_load - t_dl),
             (unsigned long long)(units_now_ms() - t_load));
    return 0;
fail:
    if (path[0])
        unlink(path);
    log_warn("model version refused", "model=%s version=%" PRId64 " reason=\"%s\"", m->name,
             mv->version, reason);
    predict__models_set_state(s->r, m->name, PREDICT_MS_FAILED, mv->version, reason);
    return rc;
}

static void roll_out(struct predict_store *s, struct store_job *j)
{
    struct predict_manifest m;
    struct predict_target t;
    struct predict_version *nv[2] = {NULL, NULL};
    size_t nnv = 0;
    char err[512], reason[640];
    struct buf text, pol;

    buf_init(&text, MANIFEST_MAX);
    buf_init(&pol, 4096);
    if (!j->manifest) {
        char url[4096];
        struct fetch ft = {.s = s, .mem = &text, .max = MANIFEST_MAX};
        snprintf(url, sizeof(url), "%s/models/%s/manifest.json", s->url, j->name);
        if (http_get(&ft, url, NULL, err, sizeof(err)) != 0) {
            snprintf(reason, sizeof(reason), "manifest: %s", err);
            predict__models_set_state(s->r, j->name, PREDICT_MS_FAILED, -1, reason);
            log_warn("model manifest unreadable", "model=%s error=\"%s\"", j->name, err);
            goto out;
        }
    } else {
        buf_append(&text, j->manifest, j->len);
    }
    if (predict__manifest_parse(j->name, text.data ? text.data : "", text.len, &m, err,
                                sizeof(err)) != 0) {
        snprintf(reason, sizeof(reason), "manifest: %s", err);
        predict__models_set_state(s->r, j->name, PREDICT_MS_FAILED, -1, reason);
        log_warn("model manifest refused", "model=%s error=\"%s\"", j->name, err);
        goto out;
    }
    predict__policy_resolve(&m, s->edge, &t);
    int64_t want[2] = {t.stable, t.canary};
    for (int k = 0; k < 2; k++) {
        if (want[k] < 0 || predict__models_has(s->r, m.name, want[k]))
            continue;
        if (install(s, &m, predict__manifest_find(&m, want[k]), &nv[nnv]) != 0)
            goto drop;
        nnv++;
    }
    predict__policy_describe(&m, &pol);
    if (predict__models_activate(s->r, m.name, nv, nnv, &t, pol.data, s->keep, err, sizeof(err)) !=
        0) {
        snprintf(reason, sizeof(reason), "activate: %s", err);
        predict__models_set_state(s->r, m.name, PREDICT_MS_FAILED, t.stable, reason);
    } else {
        log_info("model active", "model=%s version=%" PRId64 " canary=%" PRId64 " percent=%u",
                 m.name, t.stable, t.canary, t.percent);
    }
    nnv = 0;
drop:
    for (size_t k = 0; k < nnv; k++)
        predict__version_unref(&nv[k]);
    predict__manifest_fini(&m);
out:
    buf_fini(&pol);
    buf_fini(&text);
}

/* The store's index (models/index.json, {"models": [NAME, ...]}): every model it names is
 * rolled out, one after the other. A store without an index has no model to offer yet. */
static void read_index(struct predict_store *s)
{
    char url[4096], err[512];
    struct buf text;
    struct fetch ft = {.s = s, .max = MANIFEST_MAX};
    json_t *root, *names, *v;
    size_t i;

    buf_init(&text, MANIFEST_MAX);
    ft.mem = &text;
    snprintf(url, sizeof(url), "%s/models/index.json", s->url);
    if (http_get(&ft, url, NULL, err, sizeof(err)) != 0) {
        if (strstr(err, "HTTP status 404"))
            log_info("model store has no index yet", "url=%s", url);
        else
            log_warn("model store index unreadable", "error=\"%s\"", err);
        buf_fini(&text);
        return;
    }
    root = json_loadb(text.data ? text.data : "", text.len, 0, NULL);
    names = json_object_get(root, "models");
    if (!json_is_array(names))
        log_warn("model store index refused", "url=%s error=\"expected {\\\"models\\\": [...]}\"",
                 url);
    json_array_foreach(names, i, v)
    {
        struct store_job j = {0};
        if (!json_is_string(v) || json_string_length(v) == 0 ||
            json_string_length(v) >= sizeof(j.name))
            continue;
        snprintf(j.name, sizeof(j.name), "%s", json_string_value(v));
        if (atomic_load(&s->stop))
            break;
        roll_out(s, &j);
    }
    json_decref(root);
    buf_fini(&text);
}

/* ---- the thread and its queue ---- */

static void *store_thread(void *arg)
{
    struct predict_store *s = arg;

    pthread_mutex_lock(&s->mtx);
    for (;;) {
        while (!s->head && !atomic_load(&s->stop))
            pthread_cond_wait(&s->cv, &s->mtx);
        if (atomic_load(&s->stop))
            break;
        struct store_job *j = s->head;
        s->head = j->next;
        if (!s->head)
            s->tail = NULL;
        pthread_mutex_unlock(&s->mtx);
        if (j->name[0])
            roll_out(s, j);
        else
            read_index(s);
        atomic_store(&s->done_seq, j->seq);
        free(j->manifest);
        free(j);
        pthread_mutex_lock(&s->mtx);
    }
    pthread_mutex_unlock(&s->mtx);
    return NULL;
}

struct predict_store *predict__store_new(const struct predict_cfg *cfg, struct predict_models *r)
{
    struct predict_store *s = mc_xcalloc(1, sizeof(*s));

    MC_INIT_OBJ(s, PREDICT_STORE_MAGIC);
    s->r = r;
    s->url = strip_slash(cfg->model_store);
    {
        const char *a = strstr(s->url, "://");
        a = a ? a + 3 : s->url;
        s->host = mc_xstrndup(a, strcspn(a, "/?#"));
        s->path = a + strlen(s->host);
    }
    s->edge = mc_xstrdup(cfg->edge_name ? cfg->edge_name : "");
    s->models = cfg->store_models && *cfg->store_models ? mc_xstrdup(cfg->store_models) : NULL;
    s->keep = cfg->keep_versions;
    pthread_mutex_init(&s->mtx, NULL);
    pthread_cond_init(&s->cv, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return s;
}

uint64_t predict__store_done(struct predict_store *s)
{
    MC_CHECK_OBJ_NOTNULL(s, PREDICT_STORE_MAGIC);
    return atomic_load(&s->done_seq);
}

uint64_t predict__store_announce(struct predict_store *s, const char *name, const char *manifest,
                                 size_t len)
{
    struct store_job *j = mc_xcalloc(1, sizeof(*j));
    uint64_t seq;

    MC_CHECK_OBJ_NOTNULL(s, PREDICT_STORE_MAGIC);
    snprintf(j->name, sizeof(j->name), "%s", name);
    if (manifest) {
        j->manifest = mc_xmalloc(len + 1);
        memcpy(j->manifest, manifest, len);
        j->manifest[len] = '\0';
        j->len = len;
    }
    pthread_mutex_lock(&s->mtx);
    seq = j->seq = ++s->last_seq;
    if (s->tail)
        s->tail->next = j;
    else
        s->head = j;
    s->tail = j;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mtx);
    return seq;
}

int predict__store_start(struct predict_store *s, const char *fetch_base, char *err, size_t errlen)
{
    int rc;

    MC_CHECK_OBJ_NOTNULL(s, PREDICT_STORE_MAGIC);
    if (s->started)
        return 0;
    s->fetch_base = fetch_base ? strip_slash(fetch_base) : NULL;
    if ((rc = pthread_create(&s->th, NULL, store_thread, s)) != 0) {
        snprintf(err, errlen, "--model-store: cannot start its thread: %s", strerror(rc));
        return -rc;
    }
    s->started = 1;
    if (!s->models)
        predict__store_announce(s, "", NULL, 0); /* every model of the store's index */
    for (char *p = s->models; p && *p;) {
        char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char name[PREDICT_MODEL_NAME_MAX];
        if (n > 0 && n < sizeof(name)) {
            memcpy(name, p, n);
            name[n] = '\0';
            predict__store_announce(s, name, NULL, 0);
        }
        p = comma ? comma + 1 : NULL;
    }
    return 0;
}

void predict__store_free(struct predict_store **sp)
{
    struct predict_store *s = *sp;

    *sp = NULL;
    if (!s)
        return;
    MC_CHECK_OBJ(s, PREDICT_STORE_MAGIC);
    if (s->started) {
        pthread_mutex_lock(&s->mtx);
        atomic_store(&s->stop, 1);
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mtx);
        pthread_join(s->th, NULL);
    }
    while (s->head) {
        struct store_job *j = s->head;
        s->head = j->next;
        free(j->manifest);
        free(j);
    }
    pthread_mutex_destroy(&s->mtx);
    pthread_cond_destroy(&s->cv);
    free(s->url);
    free(s->fetch_base);
    free(s->host);
    free(s->edge);
    free(s->models);
    MC_FREE_OBJ(s);
}
