/* src/edge/edge_origin.c: circuit breakers per upstream (see edge_origin.h).
 *
 * A hanging origin costs every request the whole first-byte timeout; once `failures`
 * requests in a row have paid it, the breaker opens and the edge stops asking that
 * origin for a cool-down: requests go to the next upstream, get a stale object
 * (stale-if-error) or a 503 at once. Only connect failures and timeouts count: a 5xx is
 * an answer that costs no wait (and stale-if-error applies to it already), and one
 * failing path must not cut off every other path of the origin.
 *
 * Locking: `state` and `fails` are atomics read without the lock on every request; they
 * are written under `mtx`, with `until_ms`, so that exactly one caller wins a transition
 * (and logs it). Counters and gauges are the metrics registry's relaxed atomics. */
#include "edge/edge_origin.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/mc.h"
#include "core/metrics.h"

#define EDGE_ORIGINS_MAGIC 0x4f524753u

struct upstream {
    char *url;
    pthread_mutex_t mtx;
    _Atomic int state;      /* enum edge_origin_state */
    _Atomic unsigned fails; /* consecutive failures while CLOSED */
    uint64_t until_ms;      /* mtx; OPEN: end of the cool-down; HALF: the probe's deadline */
    char msg[320];
    struct metrics_gauge *g_state;
    struct metrics_counter *c_open, *c_half, *c_closed, *c_skipped;
};

struct edge_origins {
    unsigned magic;
    unsigned failures;
    uint64_t cooldown_ms, probe_ms;
    size_t n;
    struct upstream *u;
};

/* origin="URL" with the label value escaped (Prometheus text format 0.0.4). */
static void label_for(struct buf *b, const char *url, const char *extra)
{
    buf_puts(b, "origin=\"");
    metrics_label_esc(b, url);
    buf_puts(b, "\"");
    if (extra)
        buf_puts(b, extra);
}

static struct metrics_counter *counter(const char *name, const char *help, const char *url,
                                       const char *extra)
{
    struct buf b;
    buf_init(&b, 16 * 1024);
    label_for(&b, url, extra);
    struct metrics_counter *c = metrics_counter(name, help, b.data);
    buf_fini(&b);
    return c;
}

struct edge_origins *edge__origins_new(const char *const *urls, size_t n, unsigned failures,
                                       uint64_t cooldown_ms, uint64_t probe_ms)
{
    struct edge_origins *os = mc_xcalloc(1, sizeof(*os));
    MC_INIT_OBJ(os, EDGE_ORIGINS_MAGIC);
    os->failures = failures;
    os->cooldown_ms = cooldown_ms;
    os->probe_ms = probe_ms;
    os->n = n;
    os->u = mc_xcalloc(n ? n : 1, sizeof(*os->u));
    for (size_t i = 0; i < n; i++) {
        struct upstream *u = &os->u[i];
        struct buf b;
        u->url = mc_xstrdup(urls[i]);
        pthread_mutex_init(&u->mtx, NULL);
        atomic_init(&u->state, EDGE_ORIGIN_CLOSED);
        atomic_init(&u->fails, 0);
        snprintf(u->msg, sizeof(u->msg),
                 "origin %.200s is failing (connect errors or timeouts): not contacted until a "
                 "probe succeeds (circuit breaker open)",
                 u->url);
        buf_init(&b, 16 * 1024);
        label_for(&b, u->url, NULL);
        u->g_state = metrics_gauge("mlcdn_edge_origin_breaker_state",
                                   "Origin circuit breaker: 0 closed, 1 open, 2 half-open", b.data);
        buf_fini(&b);
        metrics_gauge_set(u->g_state, EDGE_ORIGIN_CLOSED);
        static const char th[] = "Origin circuit breaker transitions";
        u->c_open = counter("mlcdn_edge_origin_breaker_transitions_total", th, u->url,
                            ",to=\"open\"");
        u->c_half = counter("mlcdn_edge_origin_breaker_transitions_total", th, u->url,
                            ",to=\"half_open\"");
        u->c_closed = counter("mlcdn_edge_origin_breaker_transitions_total", th, u->url,
                              ",to=\"closed\"");
        u->c_skipped = counter("mlcdn_edge_origin_short_circuited_total",
                               "Requests not sent to an origin because its breaker was open",
                               u->url, NULL);
    }
    return os;
}

void edge__origins_free(struct edge_origins **osp)
{
    struct edge_origins *os = *osp;

    *osp = NULL;
    if (!os)
        return;
    MC_CHECK_OBJ_NOTNULL(os, EDGE_ORIGINS_MAGIC);
    for (size_t i = 0; i < os->n; i++) {
        pthread_mutex_destroy(&os->u[i].mtx);
        free(os->u[i].url);
    }
    free(os->u);
    MC_FREE_OBJ(os);
}

static struct upstream *up(const struct edge_origins *os, size_t idx)
{
    MC_CHECK_OBJ_NOTNULL(os, EDGE_ORIGINS_MAGIC);
    MC_ASSERT(idx < os->n);
    return &os->u[idx];
}

/* Under u->mtx. */
static void set_state(struct upstream *u, enum edge_origin_state s)
{
    atomic_store_explicit(&u->state, s, memory_order_release);
    metrics_gauge_set(u->g_state, s);
    metrics_counter_add(s == EDGE_ORIGIN_OPEN   ? u->c_open
                        : s == EDGE_ORIGIN_HALF ? u->c_half
                                                : u->c_closed,
                        1);
}

enum edge_origin_verdict edge__origin_allow(struct edge_origins *os, size_t idx, uint64_t now_ms)
{
    struct upstream *u = up(os, idx);
    enum edge_origin_verdict v = EDGE_ORIGIN_SKIP;

    if (os->failures == 0 ||
        atomic_load_explicit(&u->state, memory_order_acquire) == EDGE_ORIGIN_CLOSED)
        return EDGE_ORIGIN_PASS;
    pthread_mutex_lock(&u->mtx);
    int s = atomic_load_explicit(&u->state, memory_order_relaxed);
    if (s == EDGE_ORIGIN_CLOSED) {
        v = EDGE_ORIGIN_PASS;
    } else if (now_ms >= u->until_ms) {
        /* Cool-down over, or the last probe never reported: one request tries. */
        if (s == EDGE_ORIGIN_OPEN) {
            set_state(u, EDGE_ORIGIN_HALF);
            log_info("origin breaker half-open: one probe goes through", "origin=%s", u->url);
        }
        u->until_ms = now_ms + os->probe_ms;
        v = EDGE_ORIGIN_PROBE;
    }
    pthread_mutex_unlock(&u->mtx);
    return v;
}

void edge__origin_success(struct edge_origins *os, size_t idx)
{
    struct upstream *u = up(os, idx);

    if (atomic_load_explicit(&u->state, memory_order_acquire) == EDGE_ORIGIN_CLOSED &&
        atomic_load_explicit(&u->fails, memory_order_relaxed) == 0)
        return;
    pthread_mutex_lock(&u->mtx);
    int s = atomic_load_explicit(&u->state, memory_order_relaxed);
    if (s == EDGE_ORIGIN_HALF) {
        set_state(u, EDGE_ORIGIN_CLOSED);
        log_info("origin breaker closed: the origin answers again", "origin=%s", u->url);
    }
    /* OPEN: an answer to a request sent before the trip does not end the cool-down. */
    if (s != EDGE_ORIGIN_OPEN)
        atomic_store_explicit(&u->fails, 0, memory_order_relaxed);
    pthread_mutex_unlock(&u->mtx);
}

void edge__origin_failure(struct edge_origins *os, size_t idx, int probe, const char *why,
                          uint64_t now_ms)
{
    struct upstream *u = up(os, idx);

    if (os->failures == 0)
        return;
    pthread_mutex_lock(&u->mtx);
    int s = atomic_load_explicit(&u->state, memory_order_relaxed);
    if (s == EDGE_ORIGIN_CLOSED) {
        unsigned f = atomic_load_explicit(&u->fails, memory_order_relaxed) + 1;
        atomic_store_explicit(&u->fails, f, memory_order_relaxed);
        if (f >= os->failures) {
            u->until_ms = now_ms + os->cooldown_ms;
            set_state(u, EDGE_ORIGIN_OPEN);
            log_warn("origin breaker open: requests skip the origin until a probe succeeds",
                     "origin=%s why=\"%s\" failures=%u retry_ms=%" PRIu64, u->url, why, f,
                     os->cooldown_ms);
        }
    } else if (s == EDGE_ORIGIN_HALF && probe) {
        u->until_ms = now_ms + os->cooldown_ms;
        set_state(u, EDGE_ORIGIN_OPEN);
        log_warn("origin breaker open again: the probe failed",
                 "origin=%s why=\"%s\" retry_ms=%" PRIu64, u->url, why, os->cooldown_ms);
    }
    /* OPEN, or a request sent before the trip failing late: the cool-down stays as it is. */
    pthread_mutex_unlock(&u->mtx);
}

void edge__origin_probe_end(struct edge_origins *os, size_t idx)
{
    struct upstream *u = up(os, idx);

    pthread_mutex_lock(&u->mtx);
    if (atomic_load_explicit(&u->state, memory_order_relaxed) == EDGE_ORIGIN_HALF)
        u->until_ms = 0;
    pthread_mutex_unlock(&u->mtx);
}

void edge__origin_skipped(struct edge_origins *os, size_t idx)
{
    metrics_counter_add(up(os, idx)->c_skipped, 1);
}

const char *edge__origin_down_msg(const struct edge_origins *os, size_t idx)
{
    return up(os, idx)->msg;
}

enum edge_origin_state edge__origin_state(const struct edge_origins *os, size_t idx)
{
    return (enum edge_origin_state)atomic_load_explicit(&up(os, idx)->state, memory_order_acquire);
}
