/* src/edge/edge_admin.c: the admin listener (GET /health, GET /metrics, PURGE) and the
 * edge's metric series. */
#include <errno.h>
#include <stdio.h>
#include <strings.h>
#include <sys/resource.h>

#include <jansson.h>

#include "cache/cache_key.h"
#include "core/mc.h"
#include "core/units.h"
#include "cache/cache_disk.h"
#include "edge/edge_int.h"
#include "edge/edge_redis.h"
#include "predict/predict.h"

static double l1_bytes_read(void *arg)
{
    return (double)l1_bytes(((struct edge *)arg)->l1);
}

static double l1_objects_read(void *arg)
{
    return (double)l1_objects(((struct edge *)arg)->l1);
}

static double conns_read(void *arg)
{
    struct edge *e = arg;
    return e->srv ? (double)http_server_active_conns(e->srv) : 0;
}

void edge__metrics_init(struct edge *e)
{
    char labels[128];

    for (int i = 0; i < EDGE_XC__N; i++) {
        for (int j = 0; j < EDGE_LV__N; j++) {
            snprintf(labels, sizeof(labels), "cache=\"%s\",level=\"%s\"", edge__xc_name(i),
                     edge__lv_name(j));
            e->m.req[i][j] = metrics_counter("mlcdn_edge_requests_total",
                                             "Requests answered, by cache status and tier", labels);
        }
    }
    for (int j = 0; j < EDGE_LV__N; j++) {
        snprintf(labels, sizeof(labels), "level=\"%s\"", edge__lv_name(j));
        e->m.latency[j] = metrics_hist("mlcdn_edge_request_duration_seconds",
                                       "Time from request head to the last response byte handed "
                                       "to the socket, by tier",
                                       labels, 1e6, 16, 60000000);
        e->m.ttfb[j] = metrics_hist("mlcdn_edge_time_to_first_byte_seconds",
                                    "Time from request head to the first response byte handed to "
                                    "the socket, by tier",
                                    labels, 1e6, 16, 60000000);
    }
    for (int j = 0; j < EDGE_LV__N; j++) {
        snprintf(labels, sizeof(labels), "level=\"%s\"", edge__lv_name(j));
        e->m.bytes_by_level[j] = metrics_counter("mlcdn_edge_bytes_served_by_level_total",
                                                 "Body bytes sent to clients, by the tier "
                                                 "that answered",
                                                 labels);
        if (j == EDGE_LV_L2 || j == EDGE_LV_REDIS) {
            e->m.tier_hits[j] = metrics_counter("mlcdn_edge_tier_hits_total",
                                                "Lookups a tier behind L1 answered", labels);
            e->m.tier_misses[j] = metrics_counter("mlcdn_edge_tier_misses_total",
                                                  "Lookups a tier behind L1 could not answer",
                                                  labels);
        }
    }
    e->m.l2_stored = metrics_counter("mlcdn_edge_l2_stored_total", "Objects written to L2", NULL);
    e->m.l2_not_stored = metrics_counter("mlcdn_edge_l2_not_stored_total",
                                         "L2 writes refused or failed (full, I/O error, "
                                         "admission paused)",
                                         NULL);
    e->m.l2_promoted = metrics_counter("mlcdn_edge_l2_promoted_total",
                                       "L2 hits copied into L1 (admission on a repeated hit)",
                                       NULL);
    e->m.l2_opens = metrics_counter("mlcdn_edge_l2_file_opens_total",
                                    "L2 hits that opened and verified their file in the "
                                    "thread pool (the rest came from the open-file cache)",
                                    NULL);
    e->m.big_bodies = metrics_counter("mlcdn_edge_file_bodies_total",
                                      "Responses above --max-mem-object kept in files", NULL);
    for (int k = 1; k <= 5; k++) {
        snprintf(labels, sizeof(labels), "class=\"%dxx\"", k);
        e->m.status[k] = metrics_counter("mlcdn_edge_responses_total", "Responses by status class",
                                         labels);
    }
    e->m.bytes_served = metrics_counter("mlcdn_edge_bytes_served_total",
                                        "Body bytes sent to clients", NULL);
    e->m.bytes_origin = metrics_counter("mlcdn_edge_bytes_from_origin_total",
                                        "Body bytes received from origins", NULL);
    e->m.origin_requests = metrics_counter("mlcdn_edge_origin_requests_total",
                                           "Requests sent to origins", NULL);
    e->m.origin_errors = metrics_counter("mlcdn_edge_origin_errors_total",
                                         "Origin transfers that failed", NULL);
    e->m.origin_truncated = metrics_counter("mlcdn_edge_origin_truncated_total",
                                            "Origin bodies that ended early (cut, reset, timeout, "
                                            "bad chunk): clients aborted, "
                                            "not stored",
                                            NULL);
    e->m.origin_bad_framing = metrics_counter("mlcdn_edge_origin_bad_framing_total",
                                              "Origin response heads refused (conflicting framing, "
                                              "invalid field lines): 502, not "
                                              "stored",
                                              NULL);
    e->m.coalesced = metrics_counter("mlcdn_edge_coalesced_total",
                                     "Requests that waited for another request's origin fetch",
                                     NULL);
    e->m.revalidations = metrics_counter("mlcdn_edge_revalidations_total",
                                         "Stale objects refreshed by a 304", NULL);
    e->m.purged = metrics_counter("mlcdn_edge_purged_objects_total", "Objects dropped by PURGE",
                                  NULL);
    e->m.stored = metrics_counter("mlcdn_edge_stored_total", "Responses stored in L1", NULL);
    e->m.not_stored = metrics_counter("mlcdn_edge_not_stored_total",
                                      "Responses not stored (uncacheable or refused)", NULL);
    static const char bh[] = "Request bodies forwarded to origins: read whole first "
                             "(buffered) or streamed (over --request-buffer)";
    e->m.bodies_buffered = metrics_counter("mlcdn_edge_request_bodies_total", bh,
                                           "mode=\"buffered\"");
    e->m.bodies_streamed = metrics_counter("mlcdn_edge_request_bodies_total", bh,
                                           "mode=\"streamed\"");
    e->m.body_timeouts = metrics_counter("mlcdn_edge_request_body_timeouts_total",
                                         "Forwarded request bodies that stalled (408)", NULL);
    metrics_gauge_fn("mlcdn_edge_l1_bytes", "Bytes charged to L1", NULL, l1_bytes_read, e);
    metrics_gauge_fn("mlcdn_edge_l1_objects", "Objects in L1", NULL, l1_objects_read, e);
}

void edge__on_done(const struct http_x_done *d, void *arg)
{
    struct edge *e = arg;
    const struct http_x_note *n = d->note;

    if (n->sub > 0 && n->sub <= EDGE_LV__N) {
        metrics_hist_observe(e->m.latency[n->sub - 1], d->end_us - d->start_us);
        if (d->first_us)
            metrics_hist_observe(e->m.ttfb[n->sub - 1], d->first_us - d->start_us);
    }
    if (n->kind && e->predict)
        predict_on_done(e->predict, d);
}

/* Registered once the server exists: the gauge reads e->srv from the scraping thread. */
void edge__metrics_server_ready(struct edge *e)
{
    metrics_gauge_fn("mlcdn_edge_connections", "Open client connections", NULL, conns_read, e);
}

/* Share of the workers' CPU used since the previous sample (at most one sample per 250 ms,
 * so frequent health checks do not measure noise). */
static double cpu_load(struct edge *e)
{
    struct rusage ru;
    uint64_t now = units_now_ms();
    double load;

    pthread_mutex_lock(&e->cpu_mtx);
    if (now - e->cpu_last_ms >= 250) {
        getrusage(RUSAGE_SELF, &ru);
        uint64_t cpu_us = (uint64_t)ru.ru_utime.tv_sec * 1000000u + (uint64_t)ru.ru_utime.tv_usec +
                          (uint64_t)ru.ru_stime.tv_sec * 1000000u + (uint64_t)ru.ru_stime.tv_usec;
        if (e->cpu_last_ms) {
            double wall_us = (double)(now - e->cpu_last_ms) * 1000.0 * e->nworkers;
            e->cpu_load = (double)(cpu_us - e->cpu_last_us) / wall_us;
        }
        e->cpu_last_ms = now;
        e->cpu_last_us = cpu_us;
    }
    load = e->cpu_load;
    pthread_mutex_unlock(&e->cpu_mtx);
    return load;
}

static void health(struct edge *e, struct http_exchange *x)
{
    char body[512];
    struct buf b;
    uint64_t hits = atomic_load(&e->hits), misses = atomic_load(&e->misses);
    double conn_load = (double)http_server_active_conns(e->srv) / (1000.0 * e->nworkers);
    double load = cpu_load(e);
    if (conn_load > load)
        load = conn_load;
    if (load > 1)
        load = 1;
    if (load < 0)
        load = 0;
    int n = snprintf(body, sizeof(body),
                     "{\"status\":\"%s\",\"region\":\"%s\",\"load\":%.4f,\"hit_ratio\":%.4f,"
                     "\"uptime_s\":%llu,\"requests\":%llu,\"l1_bytes\":%llu,\"l1_objects\":%llu}\n",
                     atomic_load(&e->draining) ? "draining" : "ok", e->cfg.region, load,
                     hits + misses ? (double)hits / (double)(hits + misses) : 0.0,
                     (unsigned long long)((units_now_ms() - e->start_ms) / 1000),
                     (unsigned long long)(hits + misses), (unsigned long long)l1_bytes(e->l1),
                     (unsigned long long)l1_objects(e->l1));
    if (e->l2 || e->redis) {
        /* The tiers behind L1, for operators (the router reads only the fields above). */
        struct l2_stats st = {0};
        if (e->l2)
            l2_stats(e->l2, &st);
        n--; /* reopen the object: drop "}\n" and append */
        n--;
        n += snprintf(body + n, sizeof(body) - (size_t)n,
                      ",\"l2_objects\":%llu,\"l2_bytes\":%llu,\"l2_ready\":%s,\"redis\":\"%s\"}\n",
                      (unsigned long long)st.objects, (unsigned long long)st.bytes,
                      !e->l2 || st.ready ? "true" : "false",
                      e->redis ? edge__redis_state(e->redis) : "none");
    }
    buf_init(&b, 1u << 20);
    buf_append(&b, body, (size_t)n - 2); /* reopened: without "}\n" */
    if (e->predict) {
        /* What each model serves, for the router's /edges (bounded: the router reads at
         * most 64 KiB of a health answer). */
        buf_puts(&b, ",\"models\":");
        predict_models_brief(e->predict, 64, &b);
    }
    buf_puts(&b, "}\n");
    http_x_respond(x, atomic_load(&e->draining) ? 503 : 200,
                   "Content-Type: application/json\r\nCache-Control: no-store\r\n", b.data, b.len);
    buf_fini(&b);
}

static int authorized(struct edge *e, const struct http_request *r)
{
    const struct http_header *a = http_request_header(r, "authorization");
    const char *tok = e->cfg.admin_token;

    if (!a || !tok || a->value.len < 7 || strncasecmp(a->value.p, "Bearer ", 7) != 0)
        return 0;
    return mc_consttime_eq(a->value.p + 7, a->value.len - 7, tok, strlen(tok));
}

/* A PURGE waiting for Redis to acknowledge its deletes. */
struct purge_wait {
    struct edge *e;
    struct http_exchange *x;
    size_t n; /* copies dropped from L1 and L2 */
};

static void purge_answer(struct edge *e, struct http_exchange *x, size_t n, int64_t redis)
{
    char body[256];
    int bl;

    edge__tier_purge_end(e);
    if (redis < 0) {
        /* A copy left in Redis would be served again, by this edge and by every other
         * one: the purge did not happen as asked, and a client retries on a 5xx. */
        bl = snprintf(body, sizeof(body),
                      "{\"error\":\"the Redis tier could not delete its copies (%s): they may "
                      "be served until they expire; retry the PURGE\",\"purged\":%zu,"
                      "\"status\":503}\n",
                      redis == -ENOTCONN ? "not connected" : "no answer", n);
        http_x_respond(x, 503, "Content-Type: application/json\r\n", body, (size_t)bl);
        return;
    }
    n += (size_t)redis;
    metrics_counter_add(e->m.purged, n);
    bl = snprintf(body, sizeof(body), "{\"purged\":%zu}\n", n);
    http_x_respond(x, 200, "Content-Type: application/json\r\n", body, (size_t)bl);
}

static void purge_redis_done(void *arg, int64_t deleted)
{
    struct purge_wait *pw = arg;

    purge_answer(pw->e, pw->x, pw->n, deleted);
    free(pw);
}

static void invalidate_done(void *arg, int status, const char *json, size_t len);

/* PURGE with a '*' in its target: a glob ban of the (normalised) path and query, for
 * every host (a ban names no host), through POST /admin/invalidate's entry point. The
 * other glob characters ('?' and the backslash) are taken literally, as in a URL. */
static void purge_glob(struct edge *e, struct http_exchange *x, const struct buf *pq)
{
    struct buf g;

    buf_init(&g, 64 * 1024);
    for (size_t i = 0; i < pq->len; i++) {
        if (pq->data[i] == '?' || pq->data[i] == '\\')
            buf_append(&g, "\\", 1);
        buf_append(&g, pq->data + i, 1);
    }
    json_t *body = json_pack("{s:[s%]}", "patterns", g.data, g.len);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (text)
        edge__invalidate_json(e, text, strlen(text), invalidate_done, x);
    else
        http_x_error(x, 400, "invalid PURGE target");
    free(text);
    json_decref(body);
    buf_fini(&g);
}

static void purge(struct edge *e, struct http_exchange *x)
{
    const struct http_request *r = http_x_request(x);
    struct edge_worker *w = http_x_worker(x);
    struct http_str nohost = {"", 0};
    struct buf pq;

    if (!e->cfg.admin_token) {
        http_x_error(x, 403, "PURGE is disabled: start the edge with --admin-token");
        return;
    }
    if (!authorized(e, r)) {
        static const char msg[] =
            "{\"error\":\"PURGE needs Authorization: Bearer <admin token>\",\"status\":401}\n";
        http_x_respond(x, 401, "WWW-Authenticate: Bearer\r\nContent-Type: application/json\r\n",
                       msg, sizeof(msg) - 1);
        return;
    }
    buf_init(&pq, 16 * 1024);
    if (cache_key_primary(&pq, nohost, r->path, r->query, &e->keyopts) != 0 || pq.len == 0) {
        buf_fini(&pq);
        http_x_error(x, 400, "invalid PURGE target");
        return;
    }
    if (memchr(pq.data, '*', pq.len)) {
        purge_glob(e, x, &pq);
        buf_fini(&pq);
        return;
    }
    /* Only an absolute-form target names a host; then just that host's copies go. */
    struct buf host;
    buf_init(&host, 1024);
    if (r->abs_host.len) {
        struct http_str root = {"/", 1}, noq = {"", 0};
        cache_key_primary(&host, r->abs_host, root, noq, &e->keyopts);
        if (host.len)
            host.len--; /* drop the "/" */
    }
    const char *h = r->abs_host.len ? host.data : NULL;
    /* From here until the answer, no tier hit read before it may enter L1 (edge_tier.c). */
    edge__tier_purge_begin(e);
    size_t n = l1_purge_path(e->l1, h, host.len, pq.data, pq.len);
    edge__parts_clear(e);
    if (e->l2)
        n += l2_purge_path(e->l2, h, host.len, pq.data, pq.len);
    if (e->redis) {
        /* The answer waits for Redis: another edge (or this one) must not find the copy
         * there once the client was told it is gone. */
        struct purge_wait *pw = mc_xmalloc(sizeof(*pw));
        pw->e = e;
        pw->x = x;
        pw->n = n;
        if (w && w->redis)
            edge__redis_purge(w->redis, h, host.len, pq.data, pq.len, purge_redis_done, pw);
        else
            purge_redis_done(pw, -ENOTCONN);
    } else {
        purge_answer(e, x, n, 0);
    }
    buf_fini(&pq);
    buf_fini(&host);
}

static void invalidate_done(void *arg, int status, const char *json, size_t len)
{
    http_x_respond(arg, status, "Content-Type: application/json\r\nCache-Control: no-store\r\n",
                   json, len);
}

/* POST /admin/invalidate: the JSON body goes to edge__invalidate_json (edge_inval.c). */
static void invalidate(struct edge *e, struct http_exchange *x)
{
    size_t blen;
    const char *body;

    if (!e->cfg.admin_token) {
        http_x_error(x, 403, "invalidation is disabled: start the edge with --admin-token");
        return;
    }
    if (!authorized(e, http_x_request(x))) {
        static const char msg[] = "{\"error\":\"invalidation needs Authorization: Bearer <admin "
                                  "token>\",\"status\":401}\n";
        http_x_respond(x, 401, "WWW-Authenticate: Bearer\r\nContent-Type: application/json\r\n",
                       msg, sizeof(msg) - 1);
        return;
    }
    if (http_x_body_streaming(x)) {
        http_x_error(x, 413, "invalidation body too large");
        return;
    }
    body = http_x_body(x, &blen);
    edge__invalidate_json(e, body ? body : "", blen, invalidate_done, x);
}

/* POST /admin/drain: what SIGTERM does, for an operator (or an orchestrator) that reaches
 * the admin listener rather than the process. */
static void drain(struct edge *e, struct http_exchange *x)
{
    if (!e->cfg.admin_token) {
        http_x_error(x, 403, "drain is disabled: start the edge with --admin-token");
        return;
    }
    if (!authorized(e, http_x_request(x))) {
        static const char msg[] =
            "{\"error\":\"drain needs Authorization: Bearer <admin token>\",\"status\":401}\n";
        http_x_respond(x, 401, "WWW-Authenticate: Bearer\r\nContent-Type: application/json\r\n",
                       msg, sizeof(msg) - 1);
        return;
    }
    int already = atomic_load(&e->draining);
    edge_drain(e);
    if (!already && e->on_drain)
        e->on_drain(e->on_drain_arg);
    static const char ok[] = "{\"status\":\"draining\"}\n";
    http_x_respond(x, 202, "Content-Type: application/json\r\n", ok, sizeof(ok) - 1);
}

void edge__admin_handle(struct http_exchange *x, void *arg)
{
    struct edge *e = arg;
    const struct http_request *r = http_x_request(x);

    if (http_str_ieq(r->path, "/admin/drain")) {
        if (r->method != HTTP_M_POST)
            http_x_error(x, 405, "/admin/drain: POST with the admin token");
        else
            drain(e, x);
        return;
    }
    if (http_str_ieq(r->path, "/admin/invalidate")) {
        if (r->method != HTTP_M_POST)
            http_x_error(x, 405, "/admin/invalidate: POST a JSON body with the admin token");
        else
            invalidate(e, x);
        return;
    }
    if (e->predict && predict_admin(e->predict, x, authorized(e, r)))
        return;
    if (r->method == HTTP_M_PURGE) {
        purge(e, x);
        return;
    }
    if (r->method != HTTP_M_GET && r->method != HTTP_M_HEAD) {
        http_x_error(x, 405,
                     "admin listener: GET /health, GET /metrics, PURGE <path>, POST "
                     "/admin/invalidate, "
                     "POST /admin/drain");
        return;
    }
    if (http_str_ieq(r->path, "/health")) {
        health(e, x);
    } else if (http_str_ieq(r->path, "/metrics")) {
        struct buf b;
        buf_init(&b, 64u << 20);
        metrics_render(&b);
        http_x_respond(x, 200, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n", b.data,
                       b.len);
        buf_fini(&b);
    } else {
        http_x_error(x, 404,
                     "admin listener: GET /health, GET /metrics, PURGE <path>, POST "
                     "/admin/invalidate, "
                     "POST /admin/drain");
    }
}

void edge__model_announce_json(struct edge *e, const char *body, size_t len,
                               edge_control_done_fn *done, void *arg)
{
    struct buf b;
    int status;

    buf_init(&b, 1u << 20);
    if (!e->predict) {
        buf_puts(&b, "{\"error\":\"this edge serves no models: start it with --model-store "
                     "URL\",\"status\":409}\n");
        status = 409;
    } else {
        status = predict_announce_json(e->predict, body, len, &b);
    }
    /* The stream's consumer counts 200 as applied: taking the roll-out is all it asks. */
    done(arg, status == 202 ? 200 : status, b.data ? b.data : "", b.len);
    buf_fini(&b);
}

void edge__model_gap(struct edge *e, edge_control_done_fn *done, void *arg)
{
    struct buf b;
    int status;

    buf_init(&b, 1u << 20);
    if (!e->predict) {
        buf_puts(&b, "{\"announced\":[]}\n");
        status = 200;
    } else {
        status = predict_store_reread(e->predict, &b);
    }
    done(arg, status == 202 || status == 409 ? 200 : status, b.data ? b.data : "", b.len);
    buf_fini(&b);
}
