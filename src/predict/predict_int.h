/* src/predict/predict_int.h: predictions at the edge (issue 5), private to src/edge.
 *
 * Pieces:
 *   edge_models.c        registry: models dir, versions, config.json, reload (admin and
 *                        a polling watcher), atomic switch with refcounted versions;
 *   edge_batch.c         inference pool (own threads, never a loop), dynamic batcher per
 *                        version, per-loop completion queue (uv_async);
 *   edge_predict.c       /predict, /batch_predict, OIP v2 routes; prediction cache use;
 *   edge_predict_json.c  pure JSON -> tensor decoding and tensor -> JSON formatting.
 *
 * Lifetimes: struct edge_models lives from edge_start() to edge_stop(); a struct
 * edge_model (one name) lives as long as the registry; a struct edge_mver (one loaded
 * version) is refcounted: the registry holds one reference while the version is listed,
 * every request and every queued item holds one, so a reload that retires a version
 * lets in-flight requests finish on it. Sessions are per (version, pool thread), created
 * by that thread and freed with the version (no run can be in progress then: a run
 * holds an item, which holds a reference).
 *
 * Locking: reg->lock (rwlock) guards the model list, each model's version list, `cur`
 * and `error`. pool->mtx guards every batcher queue. pl->mtx guards a loop's completion
 * queue. pool->mtx and pl->mtx are leaves; reg->lock may be held while registering a
 * model's metrics (the registry's lock), so metric callbacks never take reg->lock. */
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

struct edge;
struct edge_worker;
struct http_exchange;

#define EDGE_MODELS_MAGIC 0x4d4f4453u
#define EDGE_MODEL_MAGIC 0x4d4f444cu
#define EDGE_MVER_MAGIC 0x4d564552u
#define EDGE_PITEM_MAGIC 0x5049544du
#define EDGE_PL_MAGIC 0x504c4f4fu
#define EDGE_POOL_MAGIC 0x504f4f4cu

#define EDGE_MODEL_NAME_MAX 64

/* Per-version settings (config.json). */
struct edge_mcfg {
    unsigned max_batch;    /* rows per inference run; 1 = no dynamic batching */
    uint64_t max_delay_us; /* how long a partial batch may wait for more rows */
    unsigned threads;      /* pool threads this model may occupy at once; 0 = all */
    uint64_t cache_bytes;  /* prediction cache budget of the model; 0 = no cache */
};

/* One input or output of a version, per row (dims[0] is the batch). */
struct edge_mio {
    const char *name; /* owned by the infer model */
    int dtype;
    size_t esize;
    int rank; /* including the batch dimension, >= 1 */
    int64_t dims[INFER_MAX_RANK];
    int64_t row_numel;
    size_t row_bytes;
    size_t off; /* outputs: offset of this output in a row's value bytes */
};

struct edge_pitem;

/* The dynamic batcher of one version (embedded in it; pool->mtx). */
struct edge_batcher {
    struct edge_pitem *head, *tail;
    size_t rows;
    unsigned running;
    int in_ready;
    struct edge_batcher *rnext;
};

struct edge_model;

struct edge_mver {
    unsigned magic;
    _Atomic unsigned refcnt;
    struct edge_model *model;
    int64_t version;
    uint64_t gen; /* unique per load: part of the cache key, so a reloaded file never
                   * serves predictions of its previous contents */
    struct infer_model *im;
    struct edge_mcfg cfg;
    size_t n_in, n_out;
    struct edge_mio *in, *out;
    size_t key_bytes; /* 16 + sum of input row bytes */
    size_t val_bytes; /* sum of output row bytes */
    struct infer_session **sessions; /* [pool->nthreads], each touched by its thread only */
    unsigned nsessions;
    struct edge_batcher batcher;
    char sig[256]; /* file identity (model.onnx, config.json) at load, for reload */
};

struct edge_model {
    unsigned magic;
    char name[EDGE_MODEL_NAME_MAX];
    struct edge_mver **vers; /* ascending version; reg->lock */
    size_t nvers;
    struct edge_mver *cur;   /* highest version; reg->lock */
    char error[512];         /* last load error, "" if none; reg->lock */
    struct cache_pred *cache; /* NULL when cache_bytes is 0 */
    uint64_t cache_bytes;
    struct metrics_hist *lat;   /* inference latency (us) */
    struct metrics_hist *bsize; /* rows per run */
    struct metrics_counter *hits, *misses;
    struct metrics_counter *runs, *run_errors;
};

struct edge_pool;

struct edge_models {
    unsigned magic;
    struct edge *e;
    char *dir;
    pthread_rwlock_t lock;
    struct edge_model **models;
    size_t n;
    pthread_mutex_t reload_mtx; /* one reload at a time */
    _Atomic uint64_t next_gen;
    uint64_t reloads, reload_failures; /* reload_mtx */
    char last_sig[4096];                /* watcher: directory signature; reload_mtx */
    struct edge_pool *pool;
    struct edge_mcfg defaults;
    /* Rows answered from / missing in the caches of all models, for the hit-ratio gauge
     * (read while the metrics registry is locked: it must not take reg->lock). */
    _Atomic uint64_t rows_hit, rows_missed;
    /* Watcher thread (polls the directory). */
    pthread_t watcher;
    int watcher_on;
    uint64_t poll_ms;
    pthread_mutex_t wmtx;
    pthread_cond_t wcv;
    int wstop;
    /* Metrics. */
    struct metrics_counter *req[8][10]; /* [endpoint][status index] */
};

/* A loop's side of the pool: finished items come back here (uv_async). */
struct edge_pl {
    unsigned magic;
    _Atomic unsigned refcnt;
    uv_async_t async;
    pthread_mutex_t mtx;
    struct edge_pitem *done_head, *done_tail; /* mtx */
    int closed;                               /* mtx */
    struct edge_pitem *outstanding;           /* loop thread only */
};

typedef void edge_pitem_done_f(struct edge_pitem *it, void *arg);

/* A group of rows of one request, run as part of one batch. */
struct edge_pitem {
    unsigned magic;
    struct edge_pitem *next;          /* batcher queue, then the loop's done queue */
    struct edge_pitem *oprev, *onext; /* loop's outstanding list (loop thread) */
    struct edge_mver *ver;            /* ref */
    struct edge_pl *pl;               /* ref */
    size_t rows;
    void **in;          /* per input, rows * row_bytes (owned) */
    unsigned char *out; /* rows * val_bytes (owned), set by the pool on success */
    int status;         /* 0 ok, else the HTTP status to answer */
    char msg[512];
    uint64_t enq_us;
    int orphan;         /* the loop already answered (stopping); pl->mtx */
    edge_pitem_done_f *done;
    void *arg;
};

/* ---- edge_models.c ---- */
int edge_models_new(struct edge *e, struct edge_models **out, char *err, size_t errlen);
void edge_models_free(struct edge_models **rp);
/* A reference to model `name` (NULL: the only model), version `version` (-1: current).
 * Returns 0, or minus an HTTP status (400/404) with a message. */
int edge_models_get(struct edge_models *r, const char *name, int64_t version,
                    struct edge_mver **out, char *msg, size_t mlen);
struct edge_mver *edge_mver_ref(struct edge_mver *v);
void edge_mver_unref(struct edge_mver **vp);
/* Rescans the directory, loads what is new or changed, retires what is gone. Thread-safe,
 * blocking (call off the loops). Appends a JSON report to `report` if non-NULL. Returns
 * the number of versions that failed to load. */
int edge_models_reload(struct edge_models *r, struct buf *report);
/* JSON description of every model (GET /admin/models). */
void edge_models_describe(struct edge_models *r, struct buf *out);
/* Names of loaded models, comma-separated (for messages). */
void edge_models_names(struct edge_models *r, char *out, size_t len);

/* ---- edge_batch.c ---- */
int edge_pool_new(unsigned nthreads, struct edge_pool **out);
/* Stops the threads; queued items fail with 503. */
void edge_pool_free(struct edge_pool **pp);
unsigned edge_pool_threads(const struct edge_pool *p);
uint64_t edge_pool_queued_rows(struct edge_pool *p);
struct edge_pl *edge_pl_new(uv_loop_t *loop);
/* On the loop, when it stops: answers outstanding items with 503 and closes the async. */
void edge_pl_close(struct edge_pl *pl);
/* New item of `rows` rows for v (takes a reference); the caller fills it->in[i]. */
struct edge_pitem *edge_pitem_new(struct edge_mver *v, size_t rows);
void edge_pitem_free(struct edge_pitem *it);
/* Queues the item; done(it, arg) runs later on pl's loop; then the callee frees it. */
void edge_pool_submit(struct edge_pool *p, struct edge_pl *pl, struct edge_pitem *it,
                      edge_pitem_done_f *done, void *arg);
/* Builds the cache key of row r of the given per-input buffers into key (v->key_bytes). */
void edge_pred_key(const struct edge_mver *v, void *const *in, size_t r, unsigned char *key);

/* ---- edge_predict_json.c (pure) ---- */
/* Counts the scalar leaves of a JSON value (numbers/bools, arrays flattened), checking
 * each against dtype's JSON form; nesting deeper than INFER_MAX_RANK+1 is refused.
 * Returns the count, or -1 with a message naming `field`. */
int64_t edge_pj_count(const json_t *v, int dtype, const char *field, char *msg, size_t mlen);
/* Writes the leaves of v, converted to dtype, at dst (count elements). Same checks.
 * `decl` is the OIP datatype the client declared (0: none, the model's dtype rules). */
int edge_pj_fill(const json_t *v, int decl, int dtype, void *dst, int64_t count,
                 const char *field, char *msg, size_t mlen);
/* OIP datatype name <-> dtype ("FP32" -> INFER_DT_FLOAT...). 0 when unknown. */
int edge_pj_oip_dtype(const char *s);
const char *edge_pj_oip_name(int dtype);
/* Appends element i of a tensor of dtype at data as JSON (floats with %.9g, NaN/Inf as
 * null). */
void edge_pj_elem(struct buf *b, int dtype, const void *data, int64_t i);
/* Appends n elements as JSON: a scalar when `scalar` and n == 1, else nested arrays
 * following dims[0..rank) (flat when rank <= 1). */
void edge_pj_tensor(struct buf *b, int dtype, const void *data, const int64_t *dims, int rank,
                    int scalar);
/* Appends a JSON string literal (quoted, escaped). */
void edge_pj_str(struct buf *b, const char *s, size_t n);
/* Appends the JSON array [{"name":..,"datatype":..,"shape":[..]},...] of a model's inputs or
 * outputs (OIP metadata and GET /admin/models share it). */
void edge_models_io_json(struct buf *b, const struct edge_mio *io, size_t n);

/* The common /predict body {"model": "m", "features": [numbers] or [[numbers]]} (keys in
 * any order, "model" and "model_version" optional), decoded without building a JSON tree.
 * Returns 1 with out filled (model points into body, not NUL-terminated; version -1 when
 * absent; at most out->cap values), or 0 when the body has any other shape, a string with
 * escapes, or more values: the caller then takes the full decoder, which also writes the
 * error messages. Numbers are converted exactly as strtod does. */
struct edge_pj_fast {
    const char *model;
    size_t model_len;
    int64_t version;
    double *vals;
    size_t n, cap;
};
int edge_pj_fast_predict(const char *body, size_t len, struct edge_pj_fast *out);

/* ---- edge_predict.c ---- */
void edge_predict_metrics_init(struct edge_models *r);

#endif
