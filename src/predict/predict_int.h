/* src/predict/predict_int.h: private to src/predict.
 *
 * Pieces (arrows are calls; none goes back up):
 *   predict.c         the top object (struct predict): routes, answers, endpoint metrics,
 *                     prediction cache lookups; owns the registry, the pool and the
 *                     counters. -> models, batch, json
 *   predict_batch.c   inference pool (own threads, never a loop), dynamic batcher per
 *                     version, per-loop completion queue (uv_async). -> models
 *   predict_models.c  registry: models dir, versions, config.json, reload (admin and a
 *                     polling watcher), atomic switch with refcounted versions; the
 *                     prediction cache key. -> json (report formatting)
 *   predict_json.c    pure: JSON -> rows (fast path, seed and OIP decoders), tensor -> JSON.
 *
 * Lifetimes: struct predict and its registry and pool live from predict_new() to
 * predict_free(); a struct predict_loop lives until its loop closed it and its last item
 * is gone; a struct predict_model (one name) lives as long as the registry; a struct
 * predict_version (one loaded version) is refcounted: the registry holds one reference
 * while the version is listed, every request and every queued item holds one, so a reload
 * that retires a version lets in-flight requests finish on it. Sessions are per (version,
 * pool thread), created by that thread and freed with the version (no run can be in
 * progress then: a run holds an item, which holds a reference).
 *
 * Locking: reg->lock (rwlock) guards the model list, each model's version list, `cur`
 * and `error`; reg->reload_mtx serialises reloads and is taken before reg->lock.
 * pool->mtx guards every batcher queue. pl->mtx guards a loop's completion queue.
 * pool->mtx and pl->mtx are leaves. reg->lock may be held while a model's metrics are
 * registered (the metrics registry's lock), so metric callbacks never take reg->lock.
 *
 * Errors inside the module are negative errnos with a message; predict.c alone turns them
 * into HTTP statuses: -EINVAL 400 (the message names the field), -ENOENT 404 (no such
 * model or version), -E2BIG 413 (over the model's memory budget), -ENOMEM, -EAGAIN (the
 * model failed to load) and -ESHUTDOWN 503, anything else 500. */
#ifndef MLCDN_PREDICT_PREDICT_INT_H
#define MLCDN_PREDICT_PREDICT_INT_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <uv.h>

#include "cache/cache_pred.h"
#include "core/buf.h"
#include "core/metrics.h"
#include "infer/infer.h"
#include "predict/predict.h"

#define PREDICT_MAGIC 0x50524544u
#define PREDICT_MODELS_MAGIC 0x4d4f4453u
#define PREDICT_MODEL_MAGIC 0x4d4f444cu
#define PREDICT_VERSION_MAGIC 0x4d564552u
#define PREDICT_ITEM_MAGIC 0x5049544du
#define PREDICT_LOOP_MAGIC 0x504c4f4fu
#define PREDICT_POOL_MAGIC 0x504f4f4cu

#define PREDICT_MODEL_NAME_MAX 64

/* Per-version settings (config.json). */
struct predict_model_cfg {
    unsigned max_batch;    /* rows per inference run; 1 = no dynamic batching */
    uint64_t max_delay_us; /* how long a partial batch may wait for more rows */
    unsigned threads;      /* pool threads this model may occupy at once; 0 = all */
    uint64_t cache_bytes;  /* prediction cache budget of the model; 0 = no cache */
};

/* One input or output of a version, per row (dims[0] is the batch). */
struct predict_io {
    const char *name; /* owned by the infer model */
    int dtype;
    size_t esize;
    int rank; /* including the batch dimension, >= 1 */
    int64_t dims[INFER_MAX_RANK];
    int64_t row_numel;
    size_t row_bytes;
    size_t off; /* outputs: offset of this output in a row's value bytes */
};

/* Endpoints and the statuses counted apart in mlcdn_predict_requests_total{endpoint,status}
 * (any other status is status="other"). One list each: the enum, the labels and the sizes
 * of the counter array all come from it. */
#define PREDICT_ENDPOINTS(X)                                                                       \
    X(PREDICT, "predict")                                                                          \
    X(BATCH, "batch_predict")                                                                      \
    X(V2_INFER, "v2_infer")                                                                        \
    X(V2_META, "v2_metadata")                                                                      \
    X(V2_READY, "v2_ready")                                                                        \
    X(V2_HEALTH, "v2_health")                                                                      \
    X(ADMIN, "admin_models")
#define PREDICT_STATUSES(X) X(200) X(400) X(401) X(403) X(404) X(405) X(408) X(413) X(503)

enum predict_ep {
#define X(id, label) PREDICT_EP_##id,
    PREDICT_ENDPOINTS(X)
#undef X
        PREDICT_EP__N
};

enum predict_st {
#define X(code) PREDICT_ST_##code,
    PREDICT_STATUSES(X)
#undef X
        PREDICT_ST_OTHER,
    PREDICT_ST__N
};

struct predict_item;

/* The dynamic batcher of one version (embedded in it; pool->mtx). */
struct predict_batcher {
    struct predict_item *head, *tail;
    size_t rows;
    unsigned running;
    int in_ready;
    struct predict_batcher *rnext;
};

struct predict_model;

struct predict_version {
    unsigned magic;
    _Atomic unsigned refcnt;
    struct predict_model *model; /* set when the version is listed (reload's switch) */
    /* The model's name, for messages: also right before the version is listed (a model
     * store's sample runs then). */
    char name[PREDICT_MODEL_NAME_MAX];
    int64_t version;
    uint64_t gen; /* unique per load: part of the cache key, so a reloaded file never
                   * serves predictions of its previous contents */
    struct infer_model *im;
    struct predict_model_cfg cfg;
    size_t n_in, n_out;
    struct predict_io *in, *out;
    size_t key_bytes;                /* 16 + sum of input row bytes */
    size_t val_bytes;                /* sum of output row bytes */
    struct infer_session **sessions; /* [pool threads], each touched by its thread only */
    unsigned nsessions;
    struct predict_batcher batcher;
    char sig[256];              /* file identity (model.onnx, config.json) at load, for reload */
    char sha256[65];            /* of model.onnx as loaded (hex) */
    struct metrics_gauge *info; /* mlcdn_model_info{model,version,sha256}: 1 while loaded */
    /* mlcdn_predict_model_requests_total series of this version, registered on first use. */
    struct metrics_counter *_Atomic req[PREDICT_EP__N][PREDICT_ST__N];
};

/* Where a model of the store stands on this edge (GET /admin/models "state"). */
#define PREDICT_MSTATES(X)                                                                         \
    X(NONE, "none")                                                                                \
    X(DOWNLOADING, "downloading")                                                                  \
    X(VERIFYING, "verifying")                                                                      \
    X(ACTIVE, "active")                                                                            \
    X(FAILED, "failed")
enum predict_mstate {
#define X(id, label) PREDICT_MS_##id,
    PREDICT_MSTATES(X)
#undef X
};

struct predict_model {
    unsigned magic;
    /* The registry's reference while the model is listed, and one per version whose
     * `model` it is: requests still running on a version of a removed model use its
     * cache and metrics until they finish. */
    _Atomic unsigned refcnt;
    char name[PREDICT_MODEL_NAME_MAX];
    struct predict_version **vers; /* ascending version; reg->lock */
    size_t nvers;
    struct predict_version *cur; /* highest version, or the policy's stable one; reg->lock */
    char error[512];             /* last load error, "" if none; reg->lock */
    /* Model store only (reg->lock): the policy's canary version and its share of requests,
     * the request counter of the split, the roll-out state, the version it is about and
     * the policy as JSON (for GET /admin/models). */
    struct predict_version *canary;
    unsigned canary_percent;
    _Atomic uint64_t seq;
    enum predict_mstate state;
    int64_t target;
    char policy[512];
    struct cache_pred *cache; /* NULL when cache_bytes is 0 */
    uint64_t cache_bytes;
    struct metrics_hist *lat;   /* inference latency (us) */
    struct metrics_hist *bsize; /* rows per run */
    struct metrics_counter *hits, *misses;
    struct metrics_counter *runs, *run_errors;
    /* Versions that failed to download, verify, load or pass their sample; and 1 while the
     * model's last load or roll-out failed (what an alert waits on: a model stuck on an old
     * version). */
    struct metrics_counter *load_failures;
    struct metrics_gauge *failed;
};

/* The registry of a models directory. */
struct predict_models {
    unsigned magic;
    char *dir;
    pthread_rwlock_t lock;
    struct predict_model **models;
    size_t n;
    pthread_mutex_t reload_mtx; /* one reload at a time */
    _Atomic uint64_t next_gen;
    uint64_t reloads, reload_failures; /* reload_mtx */
    char last_sig[4096];               /* watcher: directory signature; reload_mtx */
    struct predict_model_cfg defaults;
    uint64_t model_memory; /* budget of each version (infer_load_opts.max_memory) */
    enum cache_policy_objective cache_objective; /* of every model's prediction cache */
    unsigned nthreads;                           /* pool threads: sessions per version */
    /* Watcher thread (polls the directory). */
    pthread_t watcher;
    int watcher_on;
    uint64_t poll_ms;
    pthread_mutex_t wmtx;
    pthread_cond_t wcv;
    int wstop;
};

struct predict_pool;

/* The top object (predict.h). */
struct predict {
    unsigned magic;
    struct predict_cfg cfg; /* strings point at the copies below */
    char *dir, *region, *admin_token;
    struct predict_models *models;
    struct predict_pool *pool;
    struct predict_store *store; /* NULL without --model-store */
    char *store_url, *store_models, *edge_name;
    _Atomic int draining;
    /* Rows answered from / missing in the caches of all models, for the hit-ratio gauge
     * (read while the metrics registry is locked: it must not take reg->lock). */
    _Atomic uint64_t rows_hit, rows_missed;
    struct metrics_counter *req[PREDICT_EP__N][PREDICT_ST__N];
    /* End-to-end latency of answered predictions by endpoint and cache outcome (hit,
     * partial, miss); only PREDICT, BATCH and V2_INFER are registered. */
    struct metrics_hist *lat[PREDICT_EP__N][3];
};

/* A loop's side of the pool: finished items come back here (uv_async). */
struct predict_loop {
    unsigned magic;
    _Atomic unsigned refcnt;
    uv_async_t async;
    pthread_mutex_t mtx;
    struct predict_item *done_head, *done_tail; /* mtx */
    int closed;                                 /* mtx */
    struct predict_item *outstanding;           /* loop thread only */
};

typedef void predict_item_done_f(struct predict_item *it, void *arg);

/* A group of rows of one request, run as part of one batch. */
struct predict_item {
    unsigned magic;
    struct predict_item *next;          /* batcher queue, then the loop's done queue */
    struct predict_item *oprev, *onext; /* loop's outstanding list (loop thread) */
    struct predict_version *ver;        /* ref */
    struct predict_loop *pl;            /* ref */
    size_t rows;
    void **in;          /* per input, rows * row_bytes (owned) */
    unsigned char *out; /* rows * val_bytes (owned), set by the pool on success */
    int err;            /* 0, or -EINVAL, -E2BIG, -ENOMEM, -ESHUTDOWN, -EIO with msg */
    char msg[512];
    uint64_t enq_us;
    int orphan; /* the loop already answered (stopping); pl->mtx */
    predict_item_done_f *done;
    void *arg;
};

/* ---- predict_models.c ---- */
/* An empty registry of cfg->models_dir (checked to be a directory) whose versions get
 * `nthreads` session slots. Returns 0 with the registry in *out (the caller's, until
 * predict__models_free()), or -ENOENT with a message naming --models. */
int predict__models_new(const struct predict_cfg *cfg, unsigned nthreads,
                        struct predict_models **out, char *err, size_t errlen);
/* Starts the watcher thread when the poll interval is not 0. */
void predict__models_watch(struct predict_models *r);
/* Stops the watcher, drops the registry's references and frees it; *rp becomes NULL.
 * The pool must be gone: its threads use the models' caches and metrics. */
void predict__models_free(struct predict_models **rp);
/* A new reference, in *out, to model `name` (NULL: the only model), version `version`
 * (-1: current). Returns 0, or with a message -ENOENT (unknown model or version), -EINVAL
 * (no name while several models are loaded) or -EAGAIN (no version loaded: failed). */
int predict__models_get(struct predict_models *r, const char *name, int64_t version,
                        struct predict_version **out, char *msg, size_t mlen);
struct predict_version *predict__version_ref(struct predict_version *v);
/* Drops a reference and NULLs *vp; the last one frees the version (NULL is fine). */
void predict__version_unref(struct predict_version **vp);
/* Rescans the directory, loads what is new or changed, retires what is gone. Thread-safe,
 * blocking (call off the loops). Appends a JSON report to `report` if non-NULL. Returns
 * the number of versions that failed to load. */
int predict__models_reload(struct predict_models *r, struct buf *report);
/* JSON description of every model (GET /admin/models), appended to out; `edge` (this
 * edge's name) is included when not NULL, and rollouts_done (the number of the last
 * model store job finished) when >= 0. */
void predict__models_describe(struct predict_models *r, const char *edge, int64_t rollouts_done,
                              struct buf *out);
/* The first `max` models as a JSON array of {"name","version","sha256","state"[,"canary",
 * "canary_percent"]}, appended to out (the edge's /health, which the router shows). */
void predict__models_brief(struct predict_models *r, size_t max, struct buf *out);
/* The prediction cache key of row r of the per-input buffers `in`, written to key
 * (v->key_bytes): version, load generation, then the row's bytes of every input. */
void predict__cache_key(const struct predict_version *v, void *const *in, size_t r,
                        unsigned char *key);

/* Model store: loads the file at `path` as NAME/VERSION (registry defaults, no config.json),
 * not listed yet. Returns 0 with the only reference in *out, or a negative errno with err. */
int predict__models_load_file(struct predict_models *r, const char *name, int64_t version,
                              const char *path, struct predict_version **out, char *err,
                              size_t errlen);
/* 1 when NAME/VERSION is listed (loaded and kept). */
int predict__models_has(struct predict_models *r, const char *name, int64_t version);
/* Records the roll-out state of model `name` (listed, with no version, when new); reason is
 * kept for FAILED and cleared otherwise. */
void predict__models_set_state(struct predict_models *r, const char *name, enum predict_mstate st,
                               int64_t target, const char *reason);
/* Under the write lock, in one step: lists nv[0..nnv) (references taken over), makes
 * t->stable the model's current version and t->canary its canary (t->percent % of the
 * requests), records `policy` (JSON text), and retires the versions beyond the `keep`
 * highest (the stable and canary ones always stay). Returns 0, or -ENOENT when the stable
 * or canary version is not listed (the new versions stay listed, nothing else changes). */
struct predict_target;
int predict__models_activate(struct predict_models *r, const char *name,
                             struct predict_version **nv, size_t nnv,
                             const struct predict_target *t, const char *policy, unsigned keep,
                             char *err, size_t errlen);
/* Runs one sample (a /predict body: "features" or "inputs") on v with the session of pool
 * thread 0 (v must not be listed yet: no pool thread uses it) and appends the outputs as
 * {"NAME": [values...], ...} to out. 0, or -EINVAL with a message. */
int predict__sample_run(struct predict_version *v, json_t *sample, struct buf *out, char *msg,
                        size_t mlen);

/* ---- predict_manifest.c (pure) ---- */
enum predict_pmode { PREDICT_POL_LATEST, PREDICT_POL_PINNED, PREDICT_POL_CANARY };

struct predict_policy {
    enum predict_pmode mode;
    int64_t version;  /* pinned: the version; canary: the canary version */
    int64_t base;     /* canary: what the rest of the requests and edges get (-1: none) */
    unsigned percent; /* canary: share of a member edge's requests, 0..100 */
};

/* One published version. sample_* point into the manifest's JSON (NULL: no sample). */
struct predict_mver {
    int64_t version;
    char sha256[65];
    uint64_t size;
    json_t *sample_in, *sample_out;
};

struct predict_manifest {
    char name[PREDICT_MODEL_NAME_MAX];
    struct predict_mver *v; /* ascending version; owned */
    size_t n;               /* >= 1 */
    struct predict_policy pol;
    char **edges; /* canary members (owned); none: every edge */
    size_t nedges;
    json_t *root; /* owned */
};

/* What one edge serves of a model: its stable version and, when it takes part in a
 * canary, the canary version (else -1) and the canary's percentage of requests. */
struct predict_target {
    int64_t stable, canary;
    unsigned percent;
};

/* Parses the manifest of model `name`. 0 with m filled (predict__manifest_fini() frees
 * it), or -EINVAL with a message naming the field at fault (m is left empty). */
int predict__manifest_parse(const char *name, const char *text, size_t len,
                            struct predict_manifest *m, char *msg, size_t mlen);
void predict__manifest_fini(struct predict_manifest *m);
const struct predict_mver *predict__manifest_find(const struct predict_manifest *m,
                                                  int64_t version);
/* The versions the edge called `edge` (NULL: no name, a member only of edge-less
 * canaries) serves under m's policy. */
void predict__policy_resolve(const struct predict_manifest *m, const char *edge,
                             struct predict_target *t);
/* 1 when request number seq of a model goes to its canary. */
int predict__policy_canary(uint64_t seq, unsigned percent);
/* The policy as JSON, appended to b. */
void predict__policy_describe(const struct predict_manifest *m, struct buf *b);
/* 0 when every output of `expected` ({"NAME": numbers}) is in `got` with as many values,
 * each within atol + rtol * |expected|; else -EINVAL with a message naming the output,
 * the index and both values. */
int predict__sample_compare(const json_t *expected, const json_t *got, double atol, double rtol,
                            char *msg, size_t mlen);

/* ---- predict_store.c ---- */
struct predict_store;
/* The model store client of an edge (cfg->model_store): a thread that reads manifests,
 * fetches, verifies, loads, checks and activates versions. Not started until
 * predict__store_start(). */
struct predict_store *predict__store_new(const struct predict_cfg *cfg, struct predict_models *r);
/* Starts the thread; fetch_base is the URL model files are fetched under (the edge's own
 * listener, so they come through its cache tiers; NULL: the store itself). Queues the
 * models of cfg->store_models. */
int predict__store_start(struct predict_store *s, const char *fetch_base, char *err, size_t errlen);
/* Queues a roll-out of model `name` ("": of every model of the store's index); manifest
 * (JSON text, may be NULL: read from the store) is copied. Returns the job's number (1, 2, ...: jobs run in that order). Any thread. */
uint64_t predict__store_announce(struct predict_store *s, const char *name, const char *manifest,
                                 size_t len);
/* The number of the last job finished (0: none yet). Any thread. */
uint64_t predict__store_done(struct predict_store *s);
/* Stops the thread (a fetch in progress is aborted) and frees; *sp becomes NULL. */
void predict__store_free(struct predict_store **sp);

/* ---- predict_batch.c ---- */
/* Starts nthreads (0: 1) inference threads. Returns 0, or the -errno of pthread_create. */
int predict__pool_new(unsigned nthreads, struct predict_pool **out);
/* Stops the threads; queued items fail with -ESHUTDOWN; *pp becomes NULL. */
void predict__pool_free(struct predict_pool **pp);
uint64_t predict__pool_queued_rows(struct predict_pool *p);
/* A completion queue on `loop`, referenced by the loop until predict__loop_close(). */
struct predict_loop *predict__loop_new(uv_loop_t *loop);
/* On the loop, when it stops: answers outstanding items with -ESHUTDOWN and closes the
 * async; pl is freed when its last item is. */
void predict__loop_close(struct predict_loop *pl);
/* New item of `rows` rows for v (takes a reference); the caller fills it->in[i]. */
struct predict_item *predict__item_new(struct predict_version *v, size_t rows);
void predict__item_free(struct predict_item *it);
/* Queues the item; done(it, arg) runs later on pl's loop, then the pool frees the item. */
void predict__pool_submit(struct predict_pool *p, struct predict_loop *pl, struct predict_item *it,
                          predict_item_done_f *done, void *arg);

/* ---- predict_json.c (pure: no I/O, no locks) ---- */
/* Counts the scalar leaves of a JSON value (numbers/bools, arrays flattened), checking
 * each against dtype's JSON form; nesting deeper than INFER_MAX_RANK+1 is refused.
 * Returns the count, or -1 with a message naming `field`. */
int64_t predict__json_count(const json_t *v, int dtype, const char *field, char *msg, size_t mlen);
/* Writes the leaves of v, converted to dtype, at dst (count elements). Same checks.
 * `decl` is the OIP datatype the client declared (0: none, the model's dtype rules).
 * Returns 0 or -1 with a message. */
int predict__json_fill(const json_t *v, int decl, int dtype, void *dst, int64_t count,
                       const char *field, char *msg, size_t mlen);
/* OIP datatype name <-> dtype ("FP32" -> INFER_DT_FLOAT...). 0 when unknown. */
int predict__json_oip_dtype(const char *s);
const char *predict__json_oip_name(int dtype);
/* Appends element i of a tensor of dtype at data as JSON (floats with %.9g, NaN/Inf as
 * null). */
void predict__json_elem(struct buf *b, int dtype, const void *data, int64_t i);
/* Appends n elements as JSON: a scalar when `scalar` and n == 1, else nested arrays
 * following dims[0..rank) (flat when rank <= 1). */
void predict__json_tensor(struct buf *b, int dtype, const void *data, const int64_t *dims, int rank,
                          int scalar);
/* Appends the JSON array [{"name":..,"datatype":..,"shape":[..]},...] of a model's inputs or
 * outputs (OIP metadata and GET /admin/models share it). */
void predict__json_io(struct buf *b, const struct predict_io *io, size_t n);

/* The common /predict body {"model": "m", "features": [numbers] or [[numbers]]} (keys in
 * any order, "model" and "model_version" optional), decoded without building a JSON tree.
 * Returns 1 with out filled (model points into body, not NUL-terminated; version -1 when
 * absent; at most out->cap values), or 0 when the body has any other shape, a string with
 * escapes, or more values: the caller then takes the full decoder, which also writes the
 * error messages. Numbers are converted exactly as strtod does. */
struct predict_json_fast {
    const char *model;
    size_t model_len;
    int64_t version;
    double *vals;
    size_t n, cap;
};
int predict__json_fast_predict(const char *body, size_t len, struct predict_json_fast *out);

/* A decoded request body: the rows of every input of one version, in the version's input
 * order, and what an OIP request adds. */
struct predict_rows {
    size_t rows;
    size_t n_in;     /* entries of `in` */
    void **in;       /* per input: rows * row_bytes (each owned), or NULL */
    char *id;        /* OIP "id" as a JSON string literal (escaped, owned), or NULL */
    unsigned outsel; /* OIP: bit per output to return; 0 = all */
};
/* Allocates d->in for `rows` rows of v's inputs (payload memory). Returns 0, or -ENOMEM
 * with a message; what was allocated stays in d for predict__rows_fini(). */
int predict__rows_alloc(struct predict_rows *d, const struct predict_version *v, size_t rows,
                        char *msg, size_t mlen);
/* Frees what d owns and zeroes it. */
void predict__rows_fini(struct predict_rows *d);

/* Decoders of a whole body (root: a JSON object) for version v (its inputs, outputs,
 * max_batch and model name; nothing else is read). Each fills d (which owns its buffers
 * afterwards, on error too: predict__rows_fini()) and returns 0, -EINVAL with a message
 * naming the field at fault, or -ENOMEM. */
/* /predict and /batch_predict: which model ("model"; *name NULL when absent, pointing into
 * root otherwise) and which version ("model_version" or "version"; -1 when absent). This
 * comes first: the inputs are decoded for the version it picks. */
int predict__json_seed_model(json_t *root, const char **name, int64_t *version, char *msg,
                             size_t mlen);
/* /predict (batch 0: "features" is one row) and /batch_predict (batch 1: an array of
 * rows); or "inputs": {"NAME": value, ...}. */
int predict__json_seed(json_t *root, const struct predict_version *v, int batch,
                       struct predict_rows *d, char *msg, size_t mlen);
/* Open Inference Protocol v2 infer request: {"id", "inputs": [{"name", "shape",
 * "datatype", "data"}], "outputs": [{"name"}]}. */
int predict__json_oip(json_t *root, const struct predict_version *v, struct predict_rows *d,
                      char *msg, size_t mlen);

#endif
