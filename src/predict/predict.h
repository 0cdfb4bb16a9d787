/* src/predict/predict.h: prediction serving (ONNX models behind HTTP), a handler the edge
 * hosts.
 *
 * One struct predict serves a models directory: the registry, the inference pool and the
 * endpoint metrics. Each worker loop of the host gets a struct predict_loop, the queue on
 * which finished inferences come back to that loop. Requests come in through
 * predict_handle() and predict_admin(), as h2o handlers do: 1 when the request was taken,
 * 0 when it belongs to someone else. Everything runs on the caller's loop except model
 * loading and inference (threads of their own). docs/internals/predict.md has the design. */
#ifndef MLCDN_PREDICT_PREDICT_H
#define MLCDN_PREDICT_PREDICT_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "cache/cache_policy.h"

struct http_exchange;
struct buf;
struct predict;      /* opaque; predict_new() / predict_free() */
struct predict_loop; /* opaque; one per worker loop; predict_loop_init() / _fini() */

struct predict_cfg {
    const char *models_dir; /* NAME/VERSION/model.onnx [+ config.json] */
    unsigned infer_threads; /* inference pool threads; 0 = 1 */
    uint64_t predict_cache; /* default prediction cache budget per model, bytes */
    enum cache_policy_objective predict_objective; /* of every prediction cache */
    unsigned max_batch;                            /* default max_batch; 0 = 64 */
    uint64_t max_delay_us;                         /* default max_delay_us */
    uint64_t models_poll_ms; /* polling of models_dir for new versions; 0 = off */
    uint64_t model_memory;   /* memory budget of each model version, bytes */
    const char *region;      /* X-Edge-Region and "edge_region" of the answers */
    uint64_t max_body;       /* request body limit, bytes */
    const char *admin_token; /* NULL: POST /admin/models/reload is refused (403) */
    /* Model store (instead of models_dir, which must then be NULL): the URL holding
     * models/NAME/manifest.json and models/NAME/VERSION/model.onnx. */
    const char *model_store;
    const char *store_models; /* comma-separated models read at start; NULL: the index's */
    unsigned keep_versions;   /* versions kept for rollback beyond those served */
    const char *edge_name;    /* this edge's name, for a canary's edge list */
};

/* Starts the inference pool, loads every model of cfg->models_dir and starts the watcher
 * (with cfg->model_store instead: nothing is loaded until predict_store_start()).
 * cfg is copied, strings included. Returns 0 with the new object in *out (the caller's
 * until predict_free()), or a negative errno with a message in err naming the flag. */
int predict_new(const struct predict_cfg *cfg, struct predict **out, char *err, size_t errlen);
/* Stops the watcher and the pool and frees everything; *pp becomes NULL (NULL is fine).
 * Every loop must have run predict_loop_fini() before. */
void predict_free(struct predict **pp);

/* On a worker loop before it serves: the loop's completion queue (a uv_async on `loop`).
 * The loop owns it until predict_loop_fini(). */
struct predict_loop *predict_loop_init(struct predict *p, uv_loop_t *loop);
/* On the same loop when it stops: answers its requests still waiting for the pool (503)
 * and closes the handle; the memory goes with the last queued item. *plp becomes NULL
 * (NULL is fine). */
void predict_loop_fini(struct predict_loop **plp);

/* 1 when predict_handle() takes requests for path[0..len) (any method): "/predict",
 * "/batch_predict", "/v2" and everything under "/v2/". Pure; for the edge to tell which
 * of its own routes these paths hide. */
int predict_path_taken(const char *path, size_t len);
/* The roots of those paths, NULL-terminated (static storage). */
extern const char *const predict_paths[];

/* 1 when s[0..n) may name a model: 1 to 63 of [A-Za-z0-9_.-], not starting with '.'. The
 * one rule for a models directory's entries and a model store's names (the origin refuses
 * to store what no edge would load). Pure. */
int predict_model_name_valid(const char *s, size_t n);

/* Public listener, on x's loop, pl being that loop's queue: /predict, /batch_predict and
 * /v2[/...]. Returns 1 when it took x (then it answers x, at once or later on this loop),
 * 0 for any other path. */
int predict_handle(struct predict *p, struct predict_loop *pl, struct http_exchange *x);
/* Admin listener: GET /admin/models, POST /admin/models/reload, POST
 * /admin/models/announce (model store: {"name": NAME[, "manifest": {...}]}) (`authorized`:
 * x carries the admin token). Returns 1 when it took x, else 0. */
int predict_admin(struct predict *p, struct http_exchange *x, int authorized);
/* Drops every cached prediction of model `name` (all its versions; invalidation), or of
 * every model when name is NULL. Rows being computed meanwhile may still be stored: they
 * are the same model's answers. Returns how many entries there were, or -ENOENT when no
 * such model is loaded (never for NULL). Any thread. */
int64_t predict_cache_drop(struct predict *p, const char *name);
/* The first `max` models, what each serves, as a JSON array appended to out:
 * [{"name","version","sha256","state"[,"canary","canary_percent"]}]. Any thread. */
void predict_models_brief(struct predict *p, size_t max, struct buf *out);
/* What GET /admin/models answers (the edge, the roll-out jobs done, every model with its
 * versions, state and reason) as a JSON object appended to out. Any thread. */
void predict_models_json(struct predict *p, struct buf *out);
/* A model store's announcement (the body of POST /admin/models/announce, also what the
 * control stream carries for kind "model"): {"name": NAME[, "manifest": {...}]} queues a
 * roll-out of NAME. Writes the JSON answer to out and returns its HTTP status: 202 queued
 * ({"queued":true,"name","edge","seq"}: the job's number), 400 a bad body (the field
 * named), 409 no model store. Any thread; returns at once. */
int predict_announce_json(struct predict *p, const char *body, size_t len, struct buf *out);
/* Model store: queues a roll-out of every model this edge knows (POST /admin/models/reload,
 * and after announcements were lost). The JSON answer {"announced":[NAMES]} goes to out;
 * returns 202, or 409 without a model store. Any thread. */
int predict_store_reread(struct predict *p, struct buf *out);
/* Model store: once the host serves, starts the roll-out thread and reads the models of
 * cfg->store_models (else every model of the store's models/index.json). Model files are fetched under fetch_base (the host's own listener, so
 * they come through its caches; NULL: from the store directly). No-op without a store.
 * Returns 0, or a negative errno with err. */
int predict_store_start(struct predict *p, const char *fetch_base, char *err, size_t errlen);
/* Loads the model file at path, runs the sample (a /predict body, JSON text) and returns
 * its outputs as JSON {"OUTPUT": [values], ...} in *out (malloc'd, the caller's). For
 * `mlcdn ctl model publish`, which records what every edge must reproduce. 0, or a
 * negative errno with err. */
int predict_sample_file(const char *path, const char *sample, size_t len, uint64_t model_memory,
                        char **out, char *err, size_t errlen);
/* What the edge called `edge` serves under the manifest `text` of model `name` (the
 * policy's resolution, as every edge computes it): its stable version and its canary
 * version (-1: none). For ctl, which waits for each edge to serve it. 0, or -EINVAL with
 * err naming the manifest's field at fault. */
int predict_manifest_target(const char *name, const char *text, size_t len, const char *edge,
                            int64_t *stable, int64_t *canary, char *err, size_t errlen);
/* The host is draining: /v2/health/ready answers 503 from now on. Any thread; NULL is fine. */
void predict_set_draining(struct predict *p);
/* The host server's on_done for an exchange this module answered (its note's `kind` is
 * set): observes the end-to-end latency of predictions, to the last byte. Any thread. */
struct http_x_done;
void predict_on_done(struct predict *p, const struct http_x_done *d);

#endif
