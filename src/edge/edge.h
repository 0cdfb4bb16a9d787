/* src/edge/edge.h: the mlcdn edge: an HTTP/1.1 reverse-proxy cache in front of origins.
 *
 * `mlcdn edge` parses its flags into a struct edge_cfg and runs edge_start(); `mlcdn run`
 * starts edges the same way. The edge owns its L1 store, its worker loops (shared with
 * the admin listener) and every in-flight origin fetch. */
#ifndef MLCDN_EDGE_EDGE_H
#define MLCDN_EDGE_EDGE_H

#include <stddef.h>
#include <stdint.h>

struct edge; /* opaque; edge_start() / edge_stop() */

#define EDGE_MAX_ORIGINS 8

struct accesslog;

struct edge_cfg {
    const char *listen; /* public listener, "127.0.0.1:8080" */
    const char *admin;  /* admin listener, default "127.0.0.1:0"; "" disables it */
    const char *origins[EDGE_MAX_ORIGINS]; /* base URLs, tried in order for idempotent requests */
    size_t norigins;
    const char *region;
    uint64_t mem;       /* L1 budget, bytes */
    const char *policy; /* eviction policy name */
    /* What each tier's policy optimises, "objects" or "bytes"; NULL = the tier's default
     * (objects for L1 and the prediction cache, bytes for L2). */
    const char *mem_objective, *disk_objective, *predict_objective;
    unsigned threads;
    const char *admin_token; /* NULL: PURGE is refused (no token configured) */
    uint64_t connect_timeout_ms;
    uint64_t first_byte_timeout_ms;
    uint64_t origin_timeout_ms;   /* whole transfer */
    unsigned breaker_failures;    /* consecutive connect failures/timeouts that open an
                                  * upstream's breaker; 0 = no breaker */
    uint64_t breaker_cooldown_ms; /* open breaker: time before a probe goes through */
    int64_t heuristic_max_s;      /* cap on heuristic freshness */
    int64_t negative_ttl_s;       /* lifetime of a 404/410 without freshness information */
    int64_t stale_if_error_s;     /* default stale-if-error window, -1 none */
    int store_close_delimited;    /* store bodies ended only by the origin's close */
    uint64_t max_body;            /* request body limit */
    uint64_t request_buffer;      /* pass bodies up to this size are read whole before the
                                  * origin is contacted; larger ones stream; 0 = always stream */
    uint64_t header_timeout_ms, body_timeout_ms, idle_timeout_ms, send_timeout_ms;
    const char *const *ignore_params;
    size_t n_ignore;
    /* Request fields (docs/edge.md "Requests"). Removed before the request is looked at:
     * NULL (n 0) means the default list of unkeyed fields that commonly change responses
     * (edge_req.c); a list holding only "none" removes nothing. */
    const char *const *strip_headers;
    size_t n_strip;
    const char *const *key_headers; /* forwarded and part of every cache key; never stripped */
    size_t n_key_headers;
    /* Methods beyond the standard ones that are forwarded (uncached); "*": any. Others
     * are answered 501. Methods are case-sensitive: "get" is not GET. */
    const char *const *extra_methods;
    size_t n_extra_methods;
    /* Prediction serving (docs/predict.md), handed to src/predict as a predict_cfg: the
     * edge only routes to it, so a cache-only edge sets none of this. models_dir NULL =
     * no prediction endpoints. */
    const char *models_dir;   /* NAME/VERSION/model.onnx [+ config.json] */
    unsigned infer_threads;   /* inference pool threads (default 2); 0 = 1 */
    uint64_t predict_cache;   /* default prediction cache budget per model, bytes */
    unsigned max_batch;       /* default max_batch; 0 = 64 */
    uint64_t max_delay_us;    /* default max_delay_us */
    uint64_t models_poll_ms;  /* models directory polling for new versions; 0 = off */
    uint64_t model_memory;    /* memory budget of each model version (constants + one
                                  * run at max_batch), bytes; 0 = 1 GiB */
    const char *model_store;  /* model store URL (instead of models_dir); NULL = none */
    const char *store_models; /* models of the store read at start; NULL: its index's */
    unsigned model_keep;      /* versions kept for rollback beyond those served */
    /* Tiers behind L1 and the node's place in a hierarchy (docs/edge.md "Tiers"): each
     * is optional, so an edge with none of them is a single-tier memory cache. */
    const char *name;          /* this node's name in Via (loop detection); NULL: random */
    const char *parent;        /* parent edge base URL: misses go there before the origins */
    const char *disk_dir;      /* L2 directory; NULL = no disk tier */
    uint64_t disk;             /* L2 byte budget */
    const char *disk_policy;   /* L2 eviction policy; NULL = sieve */
    uint64_t max_mem_object;   /* bodies larger than this skip L1 (file-backed); 0 = mem/16 */
    unsigned l2_admit_hits;    /* L2 hits before an object is copied into L1 (default 2) */
    const char *redis;         /* redis://HOST:PORT shared tier; NULL = none */
    uint64_t redis_max_object; /* bodies larger than this are not stored in Redis */
    uint64_t redis_timeout_ms; /* per-operation deadline before the tier is skipped */
    /* The control stream (docs/control.md): invalidations and model announcements from
     * Redis Streams, applied in order, the position kept in control_state. */
    const char *control_redis;  /* redis:// URL; NULL = no control stream */
    const char *control_stream; /* stream key; NULL = "mlcdn:control" */
    const char *control_state;  /* file of the last entry applied; NULL = DISK_DIR/control.state */
    const char *config_file;    /* --config FILE, read again for the route table */
    /* HTTPS (docs/edge.md "TLS"): a second public listener, served like the first. */
    const char *tls_listen;       /* ADDR:PORT; NULL = none */
    const char *const *tls_certs; /* PEM files, the first is the default */
    size_t n_tls_certs;
    const char *const *tls_keys; /* one per certificate, in the same order */
    size_t n_tls_keys;
    const char *const *tls_ocsp; /* none, or one DER response per certificate */
    size_t n_tls_ocsp;
    const char *tls_ticket_secret; /* ticket key secret shared by a region; NULL: random */
    uint64_t tls_ticket_period_ms; /* ticket key rotation; 0 = 1h */
    int http2;                     /* offer h2 in ALPN (default 1) */
    /* https:// upstreams: certificates are verified against the system's CAs, or this
     * bundle; insecure turns verification off (tests against self-signed origins). */
    const char *origin_ca;
    int origin_insecure;
    int origin_http2; /* ask https:// upstreams for HTTP/2 (ALPN), streams multiplexed */
    struct accesslog *access_log; /* borrowed, outlives the edge; NULL: no access log */
};

/* Fills the defaults (listen 127.0.0.1:8080, admin 127.0.0.1:0, 256 MiB, 1 thread...). */
void edge_cfg_default(struct edge_cfg *cfg);

/* Starts the edge. Returns 0 and the edge in *out, or a negative errno with a message in
 * err naming the flag or address at fault. */
int edge_start(const struct edge_cfg *cfg, struct edge **out, char *err, size_t errlen);
/* Ports actually bound (useful with port 0). */
int edge_port(const struct edge *e);
int edge_admin_port(const struct edge *e);
int edge_tls_port(const struct edge *e); /* -1 without --tls-listen */
/* This node's name in Via (from --name, or generated at start). */
const char *edge_name(const struct edge *e);
/* Applies the settings of cfg that may change while serving: upstreams (origins, parent)
 * and their breakers, routes (read again from cfg->config_file), origin timeouts,
 * stale-if-error, negative TTL, request body limits and buffering, client timeouts. The
 * other fields are ignored (they keep their start values). Requests already talking to an
 * upstream finish with the settings they started with; the next ones use the new. 0, or
 * -EINVAL with err naming the flag or the file and line: then nothing changed and the
 * caller keeps what cfg points to. On success the edge calls release(arg) (any thread)
 * once nothing uses cfg's strings any more. */
int edge_reload(struct edge *e, const struct edge_cfg *cfg, void (*release)(void *arg), void *arg,
                char *err, size_t errlen);
/* Begins a drain: /health answers "draining" with 503 (routers stop sending clients) and
 * every response carries Connection: close (keep-alive clients move away); the listeners
 * stay open and requests are served until edge_stop(). Any thread. */
void edge_drain(struct edge *e);
/* cb(arg) is called (on a worker thread) when POST /admin/drain begins a drain. */
void edge_on_drain(struct edge *e, void (*cb)(void *arg), void *arg);
/* Stops accepting and waits up to grace_ms for requests in flight (blocks); edge_stop()
 * then frees. edge_hurry(), from another thread meanwhile, cuts the wait short. */
void edge_quiesce(struct edge *e, uint64_t grace_ms);
void edge_hurry(struct edge *e);
/* Graceful stop (stop accepting, finish in-flight requests for up to grace_ms) and free. */
void edge_stop(struct edge **e, uint64_t grace_ms);

/* `mlcdn edge ...` */
int edge_main(int argc, char **argv);

#endif
