/* src/edge/edge_int.h: private to src/edge.
 *
 * Threads: every worker loop serves both listeners and runs its own origin transfers
 * (one struct http_client per loop). A struct edge_fill is one origin transfer; it runs
 * on the loop that created it (its owner) but its response may be followed by waiters
 * on any loop. Fills meant to be shared sit in the busy table (keyed by primary cache
 * key) while they run, so concurrent misses for one key, on any worker, make one origin
 * request (request coalescing).
 *
 * Cross-thread wake-ups: a fill that makes progress queues each of its waiters on its
 * waiter's worker (under that worker's wake lock) and pokes the worker's uv_async; the
 * worker then pumps the waiters on its own loop. A waiter is only ever touched by its
 * own loop except for the `queued` link, which belongs to the wake lock.
 *
 * Refcounts: a fill is referenced by the busy table, by its transfer and by each waiter;
 * objects and bodies are refcounted (cache_obj.h). */
#ifndef MLCDN_EDGE_EDGE_INT_H
#define MLCDN_EDGE_EDGE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <uv.h>

#include "cache/cache_key.h"
#include "cache/cache_mem.h"
#include "cache/cache_obj.h"
#include "core/buf.h"
#include "core/mc.h"
#include "core/metrics.h"
#include "edge/edge.h"
#include "http/http_cache.h"
#include "http/http_client.h"
#include "http/http_server.h"
#include "cache/cache_ban.h"

#define EDGE_FILL_MAGIC 0x46494c4cu
#define EDGE_WAITER_MAGIC 0x57414954u
#define EDGE_WORKER_MAGIC 0x45574b52u
#define EDGE_MAGIC 0x45444745u
#define EDGE_BUSY_SHARDS 64

struct edge_fill;
struct edge_waiter;
struct predict; /* predict/predict.h */
struct l2;      /* cache/cache_disk.h */
struct l2_writer;
struct edge_redis; /* edge_redis.h */
struct edge_redis_conn;
struct edge_fdc;
struct edge_routes; /* edge_routes.h */
struct predict_loop;
struct edge_origins; /* edge_origin.h */
struct edge_inval;   /* edge_inval.c */
struct edge_parts;   /* edge_part.c */

struct edge_worker {
    unsigned magic;
    struct edge *e;
    unsigned idx;
    uv_loop_t *loop;
    struct http_client *client;
    uv_async_t wake;
    pthread_mutex_t wake_mtx;
    struct edge_waiter *wake_head, *wake_tail; /* guarded by wake_mtx */
    struct edge_fill *fills;                   /* fills owned by this loop */
    struct buf key_scratch;                    /* per-request scratch, this loop only */
    struct buf hdr_scratch;
    struct predict_loop *pl;       /* prediction completions, or NULL */
    struct edge_redis_conn *redis; /* this loop's Redis connection, or NULL */
    struct edge_fdc *fdc;          /* open L2 files (edge_tier_l2.c), or NULL */
    struct edge_rt *rt;            /* ref: the settings this loop last saw (edge__rt) */
    uint64_t rt_gen;
    int stopping;
};

struct edge_busy_shard {
    pthread_mutex_t mtx;
    struct edge_fill *head; /* linked through fill->busy_next */
};

/* Cache status of a response, for headers and metrics (X-Cache: the names). One list,
 * so the enum and its names (edge_deliver.c) cannot drift apart. */
#define EDGE_XC_LIST(X) X(HIT) X(MISS) X(STALE) X(BYPASS)
/* The tier a response came from, nearest first (X-Cache-Level: the names). */
#define EDGE_LV_LIST(X) X(L1) X(L2) X(REDIS) X(PARENT) X(ORIGIN)
#define EDGE_XC_ENUM(n) EDGE_XC_##n,
#define EDGE_LV_ENUM(n) EDGE_LV_##n,
enum edge_xc { EDGE_XC_LIST(EDGE_XC_ENUM) EDGE_XC__N };
enum edge_level { EDGE_LV_LIST(EDGE_LV_ENUM) EDGE_LV__N };
#undef EDGE_XC_ENUM
#undef EDGE_LV_ENUM

struct edge_metrics {
    struct metrics_counter *req[EDGE_XC__N][EDGE_LV__N];
    struct metrics_hist *latency[EDGE_LV__N]; /* to the last byte (edge__on_done) */
    struct metrics_hist *ttfb[EDGE_LV__N];
    struct metrics_counter *bytes_served;
    struct metrics_counter *bytes_origin;
    struct metrics_counter *origin_requests;
    struct metrics_counter *origin_errors;
    struct metrics_counter *origin_truncated;   /* bodies that did not arrive whole */
    struct metrics_counter *origin_bad_framing; /* heads refused (framing, field lines): 502 */
    struct metrics_counter *coalesced;
    struct metrics_counter *revalidations;
    struct metrics_counter *purged;
    struct metrics_counter *stored;
    struct metrics_counter *not_stored;
    struct metrics_counter *status[6];             /* 1xx..5xx by class, [0] unused */
    struct metrics_counter *tier_hits[EDGE_LV__N]; /* lookups answered by L2 / REDIS */
    struct metrics_counter *tier_misses[EDGE_LV__N];
    struct metrics_counter *bytes_by_level[EDGE_LV__N]; /* body bytes served, by tier */
    struct metrics_counter *l2_stored;
    struct metrics_counter *l2_not_stored;
    struct metrics_counter *l2_promoted;     /* L2 hits copied into L1 */
    struct metrics_counter *l2_opens;        /* L2 hits that opened and verified the file */
    struct metrics_counter *big_bodies;      /* responses kept in files */
    struct metrics_counter *bodies_buffered; /* pass bodies read whole, then sent */
    struct metrics_counter *bodies_streamed; /* pass bodies over --request-buffer */
    struct metrics_counter *body_timeouts;   /* pass bodies that stalled (408) */
};

/* The settings a reload may change (docs/internals/edge.md "Reload"): built whole by
 * edge_reload(), never changed afterwards, then published as e->rt. Each worker keeps a
 * reference to the one it last saw (edge__rt), every fill one to the one it started with,
 * so an origin transfer in flight keeps its upstream list, breakers and timeouts while a
 * newer configuration serves the next requests. The last reference frees it. */
struct edge_rt {
    unsigned magic;
#define EDGE_RT_MAGIC 0x45525431u
    _Atomic unsigned refcnt;
    struct edge_cfg cfg; /* strings borrowed until release(release_arg) */
    /* The upstreams of a fill, tried in order: the --parent edge (level PARENT) if any, then
     * the origins (level ORIGIN). Each has its circuit breaker (edge_origin.h). */
    char *origin_urls[EDGE_MAX_ORIGINS];              /* owned copies without a trailing slash */
    enum edge_level upstream_level[EDGE_MAX_ORIGINS]; /* what X-Cache-Level a fill from it says */
    size_t norigins;
    struct edge_origins *origins; /* a circuit breaker per entry of origin_urls */
    struct edge_routes *routes;   /* route table from the config file, or NULL */
    void (*release)(void *arg);   /* called with the last reference, or NULL */
    void *release_arg;
};

struct edge {
    unsigned magic;
    /* The settings at start. Those a reload may change are read from the edge_rt (they
     * are also here, at their start values, for start-up only); the others never change. */
    struct edge_cfg cfg;
    pthread_mutex_t rt_mtx;
    struct edge_rt *rt;      /* ref: the current settings (rt_mtx) */
    _Atomic uint64_t rt_gen; /* bumped after each new rt is published */
    struct l1 *l1;
    struct http_server *srv;
    struct edge_worker **workers; /* indexed by worker idx, set by loop_init */
    unsigned nworkers;
    struct edge_busy_shard busy[EDGE_BUSY_SHARDS];
    struct edge_metrics m;
    uint64_t start_ms;
    _Atomic int draining;
    _Atomic uint64_t hits, misses; /* for /health's hit ratio */
    pthread_mutex_t cpu_mtx;
    uint64_t cpu_last_ms, cpu_last_us;
    double cpu_load;
    struct cache_key_opts keyopts;
    struct predict *predict;                       /* --models: prediction serving, or NULL */
    struct http_tls_ctx *tls;                      /* --tls-listen's certificates, or NULL */
    int tls_li;                                    /* the TLS listener's index, or -1 */
    struct l2 *l2;                                 /* --disk-dir tier, or NULL */
    struct edge_redis *redis;                      /* --redis tier, or NULL */
    const struct edge_tier_ops *tiers[EDGE_LV__N]; /* the chain behind L1, nearest first */
    size_t ntiers;
    uint64_t max_mem_object;                           /* larger bodies live in files and skip L1 */
    enum cache_policy_objective disk_objective;        /* of L2's policy */
    enum cache_policy_objective cfg_predict_objective; /* of the prediction caches */
    _Atomic uint64_t l2_clock;    /* L2 hits so far: the clock of L1 admission (edge_tier_l2.c) */
    _Atomic uint64_t purge_epoch; /* PURGEs answered so far (edge_tier.c) */
    _Atomic unsigned purges;      /* PURGEs running now */
    struct edge_inval *inval;     /* bans and their lurker (edge_inval.c) */
    struct edge_parts *parts;     /* partial responses kept (edge_part.c) */
    char name[64];                /* this node in Via: "1.1 <name> (mlcdn)"; loops are refused */
    /* Request hardening (edge_req.c, set up by edge__req_init). */
    struct http_str *strip; /* fields removed on arrival; owned array of borrowed names */
    size_t nstrip;
    char *key_vary;               /* --key-header names, lowercased, as a Vary list; or NULL */
    int any_method;               /* --extra-method '*': every method token is forwarded */
    char *allow;                  /* "Allow: <the methods this edge serves>\r\n" */
    struct edge_control *control; /* --control-redis consumer (edge_control.c), or NULL */
    void (*on_drain)(void *arg);  /* POST /admin/drain asks the daemon to drain (any thread) */
    void *on_drain_arg;
};

/* edge_main.c: the settings of worker w, as of its latest call (a newer edge_rt, if one
 * was published since, is taken here). Borrowed: valid on w's loop until the next call;
 * whatever keeps it across callbacks takes a reference. */
struct edge_rt *edge__rt(struct edge_worker *w);
static inline struct edge_rt *edge__rt_ref(struct edge_rt *rt)
{
    MC_CHECK_OBJ_NOTNULL(rt, EDGE_RT_MAGIC);
    atomic_fetch_add(&rt->refcnt, 1);
    return rt;
}
/* Drops a reference and sets *rtp to NULL; the last one frees it (any thread). */
void edge__rt_unref(struct edge_rt **rtp);

/* What a route (edge_routes.h) adds to a cacheable request: the POST body the key was
 * built from (sent to the origin on a miss) and the route's default freshness. Functions
 * that take a `const struct edge_rctx *` borrow it (NULL: a plain GET/HEAD); whoever keeps
 * it makes its own copy (edge_rctx_dup). */
struct edge_rctx {
    char *body; /* NULL for GET routes */
    size_t len;
    int64_t ttl_s; /* -1: none */
};
/* Inline beside the struct: the request flow (edge_req.c), the tiers' asynchronous
 * lookups (edge_tier.c) and the fills (edge_fetch.c) all keep copies, and a function in
 * any one of those files would make the other two call into it. */
static inline struct edge_rctx *edge_rctx_dup(const struct edge_rctx *rc) /* NULL in, NULL out */
{
    if (!rc)
        return NULL;
    struct edge_rctx *d = mc_xmalloc(sizeof(*d));
    *d = *rc;
    if (rc->body) {
        d->body = mc_xmalloc(rc->len ? rc->len : 1);
        memcpy(d->body, rc->body, rc->len);
    }
    return d;
}

static inline void edge_rctx_free(struct edge_rctx **rcp)
{
    if (!*rcp)
        return;
    free((*rcp)->body);
    free(*rcp);
    *rcp = NULL;
}

/* The age of a stored object now (RFC 9111 §4.2.3); inline for the same reason. */
static inline int64_t edge_obj_age(const struct cache_obj *o, int64_t now)
{
    return http_current_age(&o->info, o->request_time, o->response_time, now);
}

/* Bytes per sendfile window of a file-backed body (and read ahead before it is sent). */
#define EDGE_FILE_WINDOW (4u << 20)

/* A response sent to a client while its body is still arriving (edge_deliver.c); its
 * owner (a fill's waiter) embeds it. A write that completes later calls wake(arg) on the
 * client's loop: the owner then decides whether to pump again. */
struct edge_stream {
    struct cache_obj *obj; /* ref once started */
    struct cache_body_cursor cur;
    uint64_t limit; /* absolute end (exclusive) of the bytes to send */
    uint64_t pos;   /* next byte to send (file-backed bodies; ranges) */
    int range;      /* a 206 for [pos, limit) of a body still filling */
    int writing;
    int in_pump; /* a write completing inside the pump does not recurse */
    uint64_t sent;
    void (*wake)(void *arg);
    void *arg;
};

/* One origin transfer. */
struct edge_fill {
    unsigned magic;
    _Atomic unsigned refcnt;
    struct edge *e;
    struct edge_worker *owner;
    struct edge_rt *rt;            /* ref: the settings the fill started with */
    struct edge_fill *busy_next;   /* busy table link (busy shard lock) */
    struct edge_fill *prev, *next; /* owner's list (owner loop only) */
    int in_busy;
    unsigned joined; /* requests that found it in the busy table (busy shard lock) */
    char *pkey;      /* primary key (shared fills) */
    size_t plen;
    uint64_t phash;
    /* The transfer (owner loop only). */
    CURL *easy;
    struct curl_slist *req_hdrs;
    char *url_path; /* path?query sent to the origin */
    char *method;   /* NULL for GET */
    char *req_body;
    size_t req_body_len;
    /* A request body streamed from the client to the origin (pass only, owner loop). */
    struct http_exchange *upload_x; /* NULL once the client's exchange ended */
    struct buf upload;              /* received, not yet taken by curl: [upload_off, len) */
    size_t upload_off;
    int64_t upload_len; /* Content-Length, -1 for chunked */
    int upload_streaming;
    int upload_done;
    int upload_failed;
    int curl_paused;          /* curl's read callback returned PAUSE */
    int client_paused;        /* we paused the client's body */
    uv_timer_t *resume_timer; /* resumes the client outside curl's callbacks */
    int upload_buffering;     /* reading the body before the origin is contacted */
    int probe;                /* this attempt holds origin_idx's half-open slot */
    /* A Range request forwarded with its Range (edge_part.c): its 206 goes to the client
     * as it is, and its part is kept when part_ok (bytes part_first.. of part_size). */
    int range_fwd;
    int part_ok;
    uint64_t part_first, part_size;
    int short_circuit; /* no upstream was contacted: every breaker was open */
    int idempotent;
    size_t origin_idx;
    uv_timer_t *fb_timer; /* first-byte timeout */
    int timed_out;
    struct buf resp_hdrs; /* header lines of the current response */
    int headers_done;
    const char *head_refused;     /* why the origin's head was refused (static), or NULL */
    _Atomic uint64_t start_us;    /* the request went to the upstream (units_now_us) */
    _Atomic uint64_t hdr_us;      /* its response head was complete; 0 before */
    int local_fail;               /* the body could not be kept here (not the origin's fault) */
    char errbuf[CURL_ERROR_SIZE]; /* curl's description of a failed transfer */
    int64_t request_time;
    int64_t request_us;      /* wall clock: the stored time of what it brings (bans) */
    struct http_req_info qi; /* of the request that started the fill */
    int auth_pass;           /* started by a request with Authorization */
    int cacheable_req;       /* GET/HEAD cache fill (vs. pass) */
    struct cache_obj *stale; /* object being revalidated (ref), or NULL */
    char *vkey;              /* vary part of the starting request, for storing */
    size_t vkey_len;
    struct l2_writer *l2w; /* a large body written straight into L2 (owner loop) */
    int64_t route_ttl_s;   /* the route's default freshness, -1 none */
    int route_post;        /* a POST cached by its body: no invalidation */
    /* Shared state (mtx). */
    pthread_mutex_t mtx;
    int state;       /* FILL_* */
    int fail_status; /* 502/504 when failed (before a response, or its body) */
    const char *fail_msg;
    struct cache_obj *obj;    /* the response being received (ref) */
    int shareable;            /* coalesced waiters may use obj */
    int revalidated;          /* obj is the stale object refreshed by a 304 */
    int served_stale;         /* obj is the stale object served on error */
    const char *store_detail; /* why not stored (static), NULL if stored/to be stored */
    struct edge_waiter *waiters;
    /* Interim responses (1xx but 100) received so far, for the waiters that have not begun
     * their final response; never stored, never part of the final head. */
#define EDGE_INTERIM_MAX 4
    char *interim[EDGE_INTERIM_MAX]; /* their field blocks (owned) */
    int interim_status[EDGE_INTERIM_MAX];
    unsigned ninterim;
};

enum { FILL_WAIT = 0, FILL_HEADERS = 1, FILL_DONE = 2, FILL_FAILED = 3 };

/* A client exchange waiting for (or streaming) a fill's response. */
struct edge_waiter {
    unsigned magic;
    struct edge_worker *w;
    struct http_exchange *x;
    struct edge_fill *fill;    /* ref */
    struct edge_waiter *next;  /* fill's waiter list (fill->mtx) */
    struct edge_waiter *wnext; /* worker wake queue (wake_mtx) */
    int queued;                /* in the wake queue (wake_mtx) */
    int detached;              /* left the fill's waiter list */
    int leader;                /* this request started the fill */
    int started;
    int finished;
    int aborted;
    struct edge_stream st; /* the response being streamed, once started */
    char *pkey;
    size_t plen;
    char *vkey; /* vary part under the fill's response Vary */
    enum edge_xc xc;
    struct edge_rctx *rc;  /* owned copy, for a restart on its own */
    unsigned interim_sent; /* of fill->interim, forwarded to the client */
};

/* edge_req.c: answers from a stored object of any tier (RFC 9111 §4): fresh,
 * stale-while-revalidate, or revalidate. */
void edge__serve_stored(struct edge_worker *w, struct http_exchange *x, const char *key,
                        size_t klen, struct cache_obj *o, enum edge_level lv,
                        const struct edge_rctx *rc);

/* edge_fetch.c */
void edge__busy_init(struct edge *e);
/* Handles a cacheable GET/HEAD that missed (or must revalidate `stale`, may be NULL). */
/* A GET with a Range that every tier missed: answered from the parts kept (edge_part.c)
 * when they cover it; else it joins the fill running for the key, if any; else it is
 * forwarded with its Range and the 206 kept. A key known to be too large for parts is
 * fetched whole (edge__fetch_cacheable). */
void edge__fetch_range(struct edge_worker *w, struct http_exchange *x, const char *pkey,
                       size_t plen, const struct edge_rctx *rc);
void edge__fetch_cacheable(struct edge_worker *w, struct http_exchange *x, const char *pkey,
                           size_t plen, struct cache_obj *stale, const struct edge_rctx *rc);
/* Forwards a request to the origin without coalescing (methods, Authorization, bypass). */
void edge__fetch_pass(struct edge_worker *w, struct http_exchange *x, const char *pkey,
                      size_t plen);
/* Starts a background revalidation of `stale` (stale-while-revalidate), no waiter. */
void edge__fetch_background(struct edge_worker *w, const struct http_request *req, const char *pkey,
                            size_t plen, struct cache_obj *stale, const struct edge_rctx *rc);
void edge__worker_wake(uv_async_t *a);
/* Cancels every fill of a stopping worker and fails its waiters. */
void edge__worker_cancel_fills(struct edge_worker *w);

/* edge_deliver.c: every byte sent to a client from a cached or arriving response. */
/* Serves a complete stored object to the exchange (conditional, Range, HEAD handled). */
void edge__deliver_obj(struct edge *e, struct http_exchange *x, struct cache_obj *o,
                       enum edge_xc xc, enum edge_level lv, const char *cache_status);
/* Appends the response header block for object o (stored headers, Age, X-Cache...). */
void edge__deliver_headers(struct edge *e, struct buf *h, const struct cache_obj *o,
                           enum edge_xc xc, enum edge_level lv, const char *cache_status);
/* Counts the answer, then answers status with msg (a JSON error body). */
void edge__deliver_error(struct edge *e, struct http_exchange *x, int status, enum edge_xc xc,
                         enum edge_level lv, const char *msg);
/* http_range_answer() for r and o, whose representation is `size` bytes: 206 for bytes
 * [*first, *last], 416 when unsatisfiable, or 0 to send it whole (no Range, a method other
 * than GET, a Range that is ignored, If-Range not matching). Appends the Content-Range
 * field of a 206 or 416 to h. The caller decides whether the status allows a Range. */
int edge__range_answer(const struct http_request *r, const struct cache_obj *o, uint64_t size,
                       uint64_t *first, uint64_t *last, struct buf *h);
enum edge_stream_rc {
    EDGE_STREAM_WAIT,   /* nothing sent: call again when bytes arrive or the body ends */
    EDGE_STREAM_FAILED, /* nothing sent: the body failed, the caller answers with an error */
    EDGE_STREAM_DONE,   /* answered and ended (416, HEAD, no body): the stream is unused */
    EDGE_STREAM_PUMP,   /* the head went out: edge__stream_pump sends the body */
};
/* Starts streaming o, a response whose body may still be arriving, into s. The head goes
 * out with the first byte of the body, not before, so a body that fails before any of it
 * could be sent still gets a clean error status. A Range (when range_ok) is answered from
 * the announced length, each byte sent as soon as it arrived. no_body: the response has
 * no body (RFC 9112 §6.3 rule 1). s takes its own reference on o for EDGE_STREAM_PUMP. */
enum edge_stream_rc edge__stream_start(struct edge *e, struct http_exchange *x,
                                       struct edge_stream *s, struct cache_obj *o, int range_ok,
                                       int no_body, enum edge_xc xc, enum edge_level lv,
                                       const char *cache_status);
/* Sends what has arrived. Returns 0 while more is to come (a write in flight: s->wake is
 * called when it completes; or the body still filling), 1 once the exchange was ended
 * (whole, or aborted: a body that did not arrive whole is never ended cleanly). */
int edge__stream_pump(struct edge *e, struct http_exchange *x, struct edge_stream *s,
                      enum edge_level lv);
/* Ends an exchange whose client went away: what was started is ended, else a bare 502. */
void edge__stream_abandon(struct http_exchange *x, int started);
void edge__count(struct edge *e, struct http_exchange *x, int status, enum edge_xc xc,
                 enum edge_level lv, uint64_t bytes);
/* out = prefix + decimal v + suffix (no printf: on the hit path). */
void edge__cache_status(char *out, size_t n, const char *prefix, int64_t v, const char *suffix);
const char *edge__xc_name(enum edge_xc xc);
const char *edge__lv_name(enum edge_level lv);

/* edge_part.c: partial responses (206) stored and combined (RFC 9111 §3.3-3.4). The
 * table is made after L1 (its limits come from --mem and --max-mem-object) and freed after
 * the loops; every call below is safe from any thread. */
void edge__parts_open(struct edge *e);
void edge__parts_close(struct edge *e);
/* Could a 206 whose object is o be kept (a strong validator, no Vary)? */
int edge__parts_keepable(const struct cache_obj *o);
/* Parses a 206's Content-Range value "bytes F-L/SIZE" (a known SIZE only). 0 or -EINVAL. */
int edge__parts_content_range(const char *v, size_t n, uint64_t *first, uint64_t *last,
                              uint64_t *size);
/* Keeps the complete body of 206 o, bytes [first, first + its length) of a representation
 * of `size` bytes, merged with the parts kept of the same representation (others are
 * dropped). Returns the whole response as a new complete 200 object (the caller's
 * reference, for the tiers) once the parts cover it, else NULL. */
struct cache_obj *edge__parts_keep(struct edge *e, const char *pkey, size_t plen,
                                   const struct cache_obj *o, uint64_t first, uint64_t size);
/* Answers GET x (a single range) from a kept part that covers it, while the response is
 * fresh and no ban covers it: 1 when answered, else 0 (nothing sent). */
int edge__parts_serve(struct edge_worker *w, struct http_exchange *x, const char *pkey,
                      size_t plen);
/* Is pkey known to be larger than the parts may keep (then ranges fetch the whole)? */
int edge__parts_too_large(struct edge *e, const char *pkey, size_t plen);
void edge__parts_drop(struct edge *e, const char *pkey, size_t plen);
/* Drops every entry: a PURGE or an invalidation by URL (the parts are few and short-lived,
 * and a purged response must never be served). */
void edge__parts_clear(struct edge *e);

/* edge_tier.c: the chain of storage tiers behind L1. It answers lookups through a
 * callback and calls none of edge_req.c, edge_fetch.c or edge_deliver.c. */
/* The answer of the chain: o is a reference the callee takes over, from tier lv; NULL when
 * every tier missed, or when the loop is stopping (w->stopping: the callee answers 503).
 * key, klen and rc are the lookup's, valid during the call only. */
typedef void (*edge_tier_done_f)(struct edge_worker *w, struct http_exchange *x, const char *key,
                                 size_t klen, const struct edge_rctx *rc, enum edge_level lv,
                                 struct cache_obj *o);

/* One storage tier behind L1 (like a Varnish stevedore): the chain in edge_tier.c walks
 * the configured ones nearest first. open returns 1 when the settings ask for the tier
 * (then it is in the chain), 0 when they do not, -errno with a message on failure; close
 * undoes it. loop_init/loop_fini set up and tear down the tier's per-loop state
 * (w->redis, w->fdc). lookup answers once, now or later on w's loop, by calling
 * edge__tier_answered with the tier's level and done; it admits a hit to L1 first when
 * its own policy says so. store copies a complete response (in the background); drop
 * forgets a key. Invalidation can grow the table without touching its callers: a
 * drop_tag(w, tag) for stores that index surrogate keys, and a ban(w, expr) recorded per
 * tier and checked by lookup, each an entry that a tier without it leaves NULL. */
struct edge_tier_ops {
    const char *name;
    enum edge_level level;
    int (*open)(struct edge *e, char *err, size_t errlen);
    void (*close)(struct edge *e);
    void (*loop_init)(struct edge_worker *w);
    void (*loop_fini)(struct edge_worker *w);
    void (*lookup)(struct edge_worker *w, struct http_exchange *x, const char *key, size_t klen,
                   const struct edge_rctx *rc, edge_tier_done_f done);
    void (*store)(struct edge_worker *w, const char *key, size_t klen, struct cache_obj *o);
    void (*drop)(struct edge_worker *w, const char *key, size_t klen);
};
extern const struct edge_tier_ops edge__tier_l2_ops;    /* edge_tier_l2.c */
extern const struct edge_tier_ops edge__tier_redis_ops; /* edge_redis.c */

/* L1 missed a cacheable GET/HEAD: walks the chain, then calls done (once). */
void edge__tier_walk(struct edge_worker *w, struct http_exchange *x, const char *key, size_t klen,
                     const struct edge_rctx *rc, edge_tier_done_f done);
/* The continuation of every tier's lookup (the adapters call it, nothing else does): while
 * the loop stops, done with NULL; on a hit, count it and hand o to done; on a miss, count
 * it and ask the next tier. Takes o's reference. */
void edge__tier_answered(struct edge_worker *w, struct http_exchange *x, const char *key,
                         size_t klen, const struct edge_rctx *rc, enum edge_level lv,
                         struct cache_obj *o, edge_tier_done_f done);
/* A PURGE drops L1's and L2's copies at once but waits for Redis: between the two, and
 * for a lookup sent before the purge but answered after it, a tier could read the old
 * copy and admit it to L1, where it would be served after the purge's answer. A lookup
 * takes a mark when it starts; its hit may enter L1 only if no purge ran or runs since. */
void edge__tier_purge_begin(struct edge *e);
void edge__tier_purge_end(struct edge *e);
uint64_t edge__tier_purge_mark(struct edge *e);
int edge__tier_may_admit(struct edge *e, uint64_t mark);
/* A tier's hit o into L1 (edge__inval_l1_insert) if no purge ran or runs since mark, also
 * one that began while o went in (then o is taken out again). 0 when o stays in L1. */
int edge__tier_admit(struct edge *e, uint64_t mark, const char *key, size_t klen,
                     struct cache_obj *o);
/* A fill's complete, storable response (not one written straight into L2): into L1, and
 * copied to the tiers; counts stored / not stored. */
void edge__tier_keep(struct edge_worker *w, const char *key, size_t klen, struct cache_obj *o);
/* A 304 refreshed stale into o (RFC 9111 §4.3.4): o takes stale's place in L1 and in the
 * tiers. */
void edge__tier_refresh(struct edge_worker *w, const char *key, size_t klen,
                        struct cache_obj *stale, struct cache_obj *o);
/* A complete stored response: copy it to every tier in the background. */
void edge__tier_store(struct edge_worker *w, const char *key, size_t klen, struct cache_obj *o);
/* Drops every copy of key from L1 and every tier (invalidation). */
void edge__tier_drop(struct edge_worker *w, const char *key, size_t klen);
/* Opens the tiers of known[0..n) that the configuration asks for (an ops' open returns 1),
 * nearest first; the wiring (edge_main.c) names the tiers, so the chain references no
 * adapter and the adapters' calls back into it (edge__tier_answered) make no loop. 0, or
 * -errno with err set; edge__tier_close() undoes what was done, also after a failure. */
int edge__tier_open(struct edge *e, const struct edge_tier_ops *const *known, size_t n, char *err,
                    size_t errlen);
void edge__tier_loop_init(struct edge_worker *w);
void edge__tier_loop_fini(struct edge_worker *w);
void edge__tier_close(struct edge *e);

/* edge_control.c: the consumer of the control stream (Redis Streams). Each entry has a
 * kind; the handler registered for it gets the entry's body, on worker 0's loop, and
 * answers through done(arg, status, json, len) once, on that loop: 200 applied (any
 * other status is acknowledged as refused and not retried, except 503: not applied, read
 * again). The same signature as the admin API's handlers (edge__invalidate_json), so
 * one function serves both. Body borrowed for the call. */
typedef void edge_control_done_fn(void *arg, int status, const char *json, size_t len);
typedef void edge_control_fn(struct edge *e, const char *body, size_t len,
                             edge_control_done_fn *done, void *arg);
/* Entries of the stream were lost before this edge read them: do what makes the edge
 * safe without them (for invalidations: ban everything cached until now). Answers as
 * above; until it answers 200 the consumer goes no further. */
typedef void edge_control_gap_fn(struct edge *e, edge_control_done_fn *done, void *arg);
/* Sets up e->control (not started). 0, or -EINVAL with err naming the flag. */
int edge__control_new(struct edge *e, const char *url, const char *key, const char *state_path,
                      char *err, size_t errlen);
/* kind -> fn (and gap, or NULL), before edge__control_start. Without a control stream
 * (e->control NULL) it does nothing and returns 0; -EEXIST, -EINVAL. */
int edge__control_register(struct edge *e, const char *kind, edge_control_fn *fn,
                           edge_control_gap_fn *gap);
/* Loads the state file (a bad one: -EINVAL with err) and starts the consumer thread. */
int edge__control_start(struct edge *e, char *err, size_t errlen);
/* Ends the consumer (a blocked read is cut); before the worker loops stop. Idempotent. */
void edge__control_stop(struct edge *e);
void edge__control_free(struct edge *e);
/* Worker 0's loop carries the handlers' calls. */
void edge__control_loop_init(struct edge_worker *w);
void edge__control_loop_fini(struct edge_worker *w);

/* edge_admin.c */
void edge__admin_handle(struct http_exchange *x, void *arg);
/* The control stream's handlers of kind "model" (edge_control_fn, edge_control_gap_fn).
 * An announcement has the body of POST /admin/models/announce ({"name": NAME[, "manifest":
 * {...}]}, borrowed for the call); done(arg, status, json, len) is called once, before this
 * returns: 200 the roll-out is queued (json {"queued":true,"name","edge","seq"}; it runs on
 * the model store's thread), 400 a bad body (json names the field), 409 the edge has no
 * --model-store. After a gap (announcements lost) every model the edge knows is read
 * again from the store. */
void edge__model_announce_json(struct edge *e, const char *body, size_t len,
                               edge_control_done_fn *done, void *arg);
void edge__model_gap(struct edge *e, edge_control_done_fn *done, void *arg);
void edge__metrics_init(struct edge *e);
void edge__metrics_server_ready(struct edge *e);
/* The server's on_done: durations to the last byte by tier, predictions' own metrics. The
 * note's `sub` is the tier + 1 (edge__count); `kind` belongs to src/predict. */
void edge__on_done(const struct http_x_done *d, void *arg);

/* edge_inval.c: invalidation (POST /admin/invalidate, bans, the lurker). */
/* body: the JSON of POST /admin/invalidate, borrowed for the call.
 * done(arg, status, json, len): called once, on the calling loop, with an HTTP status
 * (200 applied; 400 bad body, json names the problem; 503 a tier could not apply)
 * and a JSON answer such as {"purged":N,"bans":N,...}. Call on a worker loop (exact URLs
 * are deleted from Redis through that loop's connection). */
typedef void (*edge_inval_done_fn)(void *arg, int status, const char *json, size_t len);
void edge__invalidate_json(struct edge *e, const char *body, size_t len, edge_inval_done_fn done,
                           void *arg);
/* A POST /admin/invalidate body, checked (edge__inval_parse); the strings and arrays are
 * borrowed from root; edge__inval_req_fini() releases them. */
struct json_t; /* jansson's */
struct edge_inval_req {
    struct json_t *root;
    struct json_t *own[3];                 /* lists made from a lone string */
    struct json_t *urls, *patterns, *tags; /* arrays of strings, or NULL */
    const char *prefix, *model, *id;       /* NULL when absent */
    int all;                               /* everything stored until now */
    int soft;
};
/* Reads and checks a body with nothing applied (pure: the fuzz target's entry): 0 with *q
 * filled, or -EINVAL with msg naming the field and the problem (*q then holds nothing). */
int edge__inval_parse(const char *body, size_t len, const struct cache_key_opts *ko,
                      struct edge_inval_req *q, char *msg, size_t mlen);
void edge__inval_req_fini(struct edge_inval_req *q);
/* With a Redis tier, copies live there at most this long (edge_redis.c), and a ban stays
 * this long after the lurker applied it to L1 and L2. */
#define EDGE_INVAL_REDIS_KEEP_S 86400
/* Starts the ban list (kept in the --disk-dir's "bans" file when there is one) and the
 * lurker; after the tiers are open. 0, or -errno with err set; edge__inval_close() undoes
 * it, also after a failure. */
int edge__inval_open(struct edge *e, char *err, size_t errlen);
void edge__inval_close(struct edge *e);
/* The bans' verdict on object o found under primary key key (any tier): CACHE_BAN_HARD (a
 * miss: drop it), CACHE_BAN_SOFT (serve it stale while one refresh runs), CACHE_BAN_NONE. Counts
 * hard verdicts. Any loop. */
enum cache_ban_verdict edge__inval_verdict(struct edge *e, const char *key, size_t klen,
                                           const struct cache_obj *o);
/* l1_insert() unless a ban refuses o (-ECANCELED), inside the bans' insert gate; a
 * soft-banned o is stored marked stale. Every L1 insert goes through here. */
int edge__inval_l1_insert(struct edge *e, const char *key, size_t klen, struct cache_obj *o);
/* Around a store into L2 or Redis: *ok is 0 when a ban refuses o (then do not store).
 * Pass the token to edge__inval_store_end() once the store is done (or skipped). */
unsigned edge__inval_store_begin(struct edge *e, const char *key, size_t klen,
                                 const struct cache_obj *o, int *ok);
void edge__inval_store_end(struct edge *e, unsigned tok);

/* edge_main.c: the worker of the calling thread's loop, or NULL off the loops. */
struct edge_worker *edge__worker_self(struct edge *e);

/* edge_req.c */
void edge__public_handle(struct http_exchange *x, void *arg);
/* Builds the primary key of a request into out. 0, or -EINVAL (bad path/host). */
int edge__primary_key(struct edge *e, const struct http_request *r, struct buf *out);
/* Checks and prepares --strip-header, --key-header and --extra-method (e->cfg). Returns 0
 * or -EINVAL with a message naming the flag in err. edge__req_fini() frees what it made,
 * also after a failure. */
int edge__req_init(struct edge *e, char *err, size_t errlen);
void edge__req_fini(struct edge *e);

#endif
