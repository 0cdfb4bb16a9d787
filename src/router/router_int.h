/* src/router/router_int.h: the router daemon's shared state (internal to src/router).
 *
 * Threads and ownership:
 *  - the main thread runs a libuv loop: DNS over TCP, the health checker (libcurl multi on
 *    that loop), signals. It is the only writer of edge health state.
 *  - `udp_threads` DNS threads each block in recvmmsg() on their own SO_REUSEPORT socket
 *    and answer with sendmmsg(); each owns a struct router_loc_cache.
 *  - the HTTP server's worker threads answer /route, /edges, /r/..., /metrics; each worker
 *    owns a struct router_loc_cache (http_server loop_init).
 * Edge state read on the query path lives in struct router_edge_view (relaxed atomics).
 * The descriptive state shown by /edges (last check, error text, region) is guarded by
 * router->mtx; the health checker takes it briefly when a check completes. */
#ifndef MLCDN_ROUTER_ROUTER_INT_H
#define MLCDN_ROUTER_ROUTER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <jansson.h>
#include <uv.h>

#include "core/buf.h"
#include "core/metrics.h"
#include "router/router_geo.h"
#include "router/router_select.h"
#include "router/router_zone.h"

#define ROUTER_MAX_UDP_THREADS 16
#define ROUTER_HEALTH_BODY_MAX 65536
#define ROUTER_TCP_MAX_CONNS 512
#define ROUTER_TCP_IDLE_MS 10000

struct router_health_cfg {
    uint64_t interval_ms, timeout_ms;
    long rise, fall;
    double deadband; /* hysteresis on load / hit ratio / capacity */
};

/* Health of one edge as the checker sees it (main loop); the `shown` part is copied under
 * router->mtx for /edges. */
struct router_edge_health {
    unsigned magic;
#define ROUTER_EDGE_HEALTH_MAGIC 0x45444748u
    struct router *r;
    size_t idx;
    CURL *easy;
    struct buf body;
    int running;
    uint64_t started_us;
    long ok_streak, fail_streak;
    int up; /* -1 before the first check, then 0/1 */
    /* shown by /edges, guarded by r->mtx */
    int draining;
    double load, hit;
    char status[16];
    char region[64];
    int64_t last_check_ms; /* wall clock */
    double last_latency_ms;
    char last_error[160];
    json_t *models; /* the models the last good check listed (owned), or NULL */
    uint64_t checks, failures, transitions;
    struct metrics_counter *to_up, *to_down;
    struct metrics_gauge *g_up, *g_load, *g_hit;
};

struct router_tcp_conn;
struct http_exchange;

/* What a reload (SIGHUP) may replace as a whole: the edges, the weights and the
 * geolocation databases, with what depends on them (per-edge published state and answer
 * counters). Built complete, never changed afterwards except through its views' atomics
 * (the health checker publishes there), then swapped in by the main loop under
 * router->set_mtx. Each thread that answers queries keeps a reference to the set it last
 * saw (struct router_thr), so a query is answered from one set, never from two. */
struct router_set {
    unsigned magic;
#define ROUTER_SET_MAGIC 0x52534554u
    _Atomic unsigned refcnt;
    struct router_edge_cfg edges[ROUTER_MAX_EDGES];
    struct router_edge_view views[ROUTER_MAX_EDGES];
    size_t nedges;
    struct router_weights weights;
    struct router_geo *geo; /* owned */
    int have_default;
    double default_lat, default_lon;
    struct metrics_counter *m_answers[ROUTER_MAX_EDGES];
    _Atomic(struct metrics_counter *) m_answers_region[ROUTER_MAX_EDGES];
};

/* A query-answering thread's view: its set (a reference) and the location cache built for
 * it (distances to that set's edges, records of that set's databases). */
struct router_fanout;
struct router_thr {
    struct router_set *set;
    uint64_t gen;
    struct router_loc_cache *c;
    /* HTTP workers only (NULL on DNS threads): the loop, its client for fan-outs to the
     * edges, and the fan-outs running on it (router_fanout.c). */
    uv_loop_t *loop;
    struct http_client *client;
    struct router_fanout *fanouts;
};

struct router {
    unsigned magic;
#define ROUTER_MAGIC 0x524f5554u
    struct router_zone zone;
    /* The current set: written by the main loop only, under set_mtx (which other threads
     * take to follow set_gen); the main loop itself reads it without the lock. */
    struct router_set *set;
    _Atomic uint64_t set_gen;
    pthread_mutex_t set_mtx;
    struct router_edge_health health[ROUTER_MAX_EDGES]; /* set->edges[i]'s, main loop */
    struct router_health_cfg hc;
    size_t edns_max;      /* largest UDP answer we send */
    long udp_coalesce_us; /* pause after a small UDP batch (0: off) */
    long redirect_port;
    pthread_mutex_t mtx;
    atomic_int stopping;

    /* DNS sockets */
    struct sockaddr_storage dns_addr;
    int dns_port;
    int udp_fds[ROUTER_MAX_UDP_THREADS];
    pthread_t udp_threads[ROUTER_MAX_UDP_THREADS];
    unsigned nudp;

    /* main loop */
    uv_loop_t *loop;
    /* DNS over TCP: the listening socket is watched with a uv_poll_t and accepted by
     * router_srv.c itself, never uv_listen (see there). */
    int tcp_fd;
    uv_poll_t tcp_poll;
    uv_timer_t tcp_accept_timer; /* resumes accepting after a pause */
    int tcp_listening, tcp_paused, tcp_fd_short;
    uint64_t tcp_last_pause;          /* loop time of the last pause */
    struct router_tcp_conn *tcp_list; /* open connections, newest first */
    unsigned tcp_conns;
    uv_timer_t hc_timer;
    struct http_client *client;

    /* metrics */
    struct metrics_counter
        *m_rcode[2][6]; /* [udp, tcp][NOERROR FORMERR SERVFAIL NXDOMAIN NOTIMP REFUSED] */
    struct metrics_counter *m_badvers, *m_dropped, *m_truncated, *m_ecs;
    struct metrics_counter *m_tcp_paused, *m_tcp_idle_closed;
    struct metrics_hist *m_latency;
    struct metrics_counter *m_route_req, *m_redirects;

    /* admin listener (router_admin.c) */
    struct router_admin *admin;
    /* the web dashboard (router_dash.c) */
    struct router_dash *dash;
};

/* Parses `NAME=LAT,LON,IP,HEALTH_URL[,CAPACITY]`. Returns 0 or -EINVAL with err set. */
int router__edge_parse(const char *spec, struct router_edge_cfg *e, char *err, size_t errlen);

/* Per-thread tallies of answered queries, added to the shared metrics once per receive
 * batch (router__stats_flush) so the hot path touches no shared cache line. */
struct router_stats {
    uint64_t n;
    uint64_t rcode[6];
    uint64_t badvers, dropped, truncated, ecs;
    uint64_t answers[ROUTER_MAX_EDGES];
};

/* router_main.c: the sets. router__set_unref drops a reference (the last frees the set
 * and closes its databases), any thread. */
struct router_set *router__set_ref(struct router_set *s);
void router__set_unref(struct router_set **sp);
/* Brings t up to the current set (first call: t zeroed) and returns it; a new set means a
 * new location cache. Per-edge tallies still in st (may be NULL) are counted against the
 * set they were made with first. */
struct router_set *router__thr_sync(struct router *r, struct router_thr *t,
                                    struct router_stats *st);
void router__thr_fini(struct router_thr *t);

/* Answers one DNS message (UDP or TCP) from `peer`, counting into *st. Returns the response
 * length (0: send nothing). UDP answers are capped at r->edns_max, TCP at DNS_MSG_MAX. */
size_t router__answer(struct router *r, struct router_thr *t, struct router_stats *st,
                      const uint8_t *pkt, size_t len, const struct sockaddr *peer, int tcp,
                      uint8_t *out, size_t cap);
/* Adds *st to the metrics (the per-edge ones of set s, which st's counts were made with)
 * and zeroes it; `elapsed_ns` is the time the batch took (each of its queries is recorded
 * in the latency histogram with the batch's mean). */
void router__stats_flush(struct router *r, struct router_set *s, struct router_stats *st, int tcp,
                         uint64_t elapsed_ns);

/* Client address of a query: the ECS subnet when present (source > 0), else the peer.
 * Writes family 4/6 and 16 bytes (4 used for IPv4). */
void router__client_addr(const struct dns_query *q, const struct sockaddr *peer, int *family,
                         uint8_t addr[16]);

/* Chooses the edge of set s for an address (c: the location cache built for s); fills
 * scores when non-NULL. Returns the edge index or -1; *netmask gets the database network's
 * prefix length. */
int router__choose(struct router_set *s, struct router_loc_cache *c, int client_family,
                   const uint8_t *client_addr, int answer_family, uint8_t *netmask,
                   struct router_score *scores, const struct router_loc_entry **entry);

/* DNS servers: binds UDP (nudp sockets, SO_REUSEPORT) and TCP on r->loop. */
int router__dns_start(struct router *r, const char *addr, unsigned nudp, char *err, size_t errlen);
void router__dns_stop(struct router *r);
/* Frees the main loop's view (after the loop stopped). */
void router__dns_free_cache(void);

/* Health checks on r->loop; the first round starts at once. */
int router__health_start(struct router *r, char *err, size_t errlen);
void router__health_stop(struct router *r);
/* Main loop, under r->mtx: r->set is about to become `next`. Checks in flight are dropped;
 * an edge of next that was in the old set (same name and health URL) keeps its health
 * state and published view, a new one starts unknown (its first check decides); a round of
 * checks starts at once. */
void router__health_swap(struct router *r, struct router_set *next);

/* router_fanout.c: one request to every edge of a set, in parallel, on an HTTP worker's
 * loop (thr->client). Strings are copied; results are valid during done() only. */
#define ROUTER_URL_MAX 512
struct router_fanout_req {
    const char *method, *path;
    const char *body; /* sent as application/json, or NULL */
    size_t len;
    const char *token; /* Authorization: Bearer for the edges, or NULL */
    long timeout_ms;   /* per attempt; 0: 2000 */
    int retries;       /* more attempts after no answer or a 5xx */
};
struct router_fanout_result {
    char edge[64];
    char url[ROUTER_URL_MAX]; /* the edge's admin base URL */
    int status;               /* 0: no answer (error says why) */
    double ms;                /* from the start of the fan-out */
    int attempts;
    char *body; /* NUL-terminated */
    size_t len;
    char error[256];
};
typedef void router_fanout_done_f(void *arg, struct router_fanout_result *res, size_t n,
                                  double total_ms);
void router__fanout(struct router_thr *thr, const struct router_set *s,
                    const struct router_fanout_req *rq, router_fanout_done_f *done, void *arg);
/* A stopping worker: every fan-out still running ends now (done() is called). */
void router__fanout_stop_all(struct router_thr *thr);
/* The admin base URL of an edge: its health URL's scheme://authority. 0 or -EINVAL. */
int router__admin_base(const char *health_url, char *out, size_t n);

/* router_admin.c: the admin listener (--admin): POST /admin/invalidate fans out to every
 * edge; GET /admin/invalidations shows the last ones. */
struct router_admin_cfg {
    const char *token;      /* callers' bearer token; NULL: the admin API refuses (403) */
    const char *edge_token; /* sent to the edges (default: token) */
    size_t log_max;         /* invalidations kept */
    long timeout_ms;
    int retries;
};
void router__admin_init(struct router *r, const struct router_admin_cfg *cfg);
void router__admin_fini(struct router *r);
void router__admin_handle(struct http_exchange *x, void *arg);
/* The last `max` invalidations, newest first, for the dashboard: id, time_ms,
 * propagation_ms, acknowledged, total, what (the kinds of selectors the request had) and
 * per edge {edge, status, ms}. A new reference. */
json_t *router__admin_recent(struct router *r, size_t max);

/* router_dash.c: the web dashboard. start: at the end of router__health_start (the main
 * loop and its HTTP client exist); stop: first thing in router__health_stop; free: when the
 * HTTP workers are gone. handle: GET /dashboard..., rest is the path after "/dashboard". */
struct router_dash;
int router__dash_start(struct router *r);
void router__dash_stop(struct router *r);
void router__dash_free(struct router *r);
void router__dash_handle(struct router *r, struct http_exchange *x, const char *rest, size_t n);

/* HTTP API handler (http_server listener). */
struct http_exchange;
void router__http_handle(struct http_exchange *x, void *arg);
void *router__http_loop_init(uv_loop_t *loop, unsigned idx, void *arg);
void router__http_loop_fini(uv_loop_t *loop, void *worker_data, void *arg);

#endif
