/* src/router/router_admin.c: the router's admin listener (--admin, bearer token).
 *
 *   POST /admin/invalidate   the body of the edges' POST /admin/invalidate, sent to every
 *                            edge of the current set in parallel (router_fanout.c); the
 *                            answer has one entry per edge (status, time, its answer):
 *                            200 when every edge applied it, 502 when one did not
 *   GET  /admin/invalidations the last --invalidation-log invalidations, newest first, each
 *                            with its per-edge propagation times (for the dashboard)
 *   POST /admin/models/announce  the edges' model roll-out announcement, sent to every edge
 *   GET  /admin/models       every edge's GET /admin/models (what each serves, how its
 *                            roll-out goes); both answer per edge as the invalidation does
 *   GET  /health             the router itself
 *
 * The log is a ring of JSON texts under admin->mtx: written by whichever worker finished a
 * fan-out, read by any worker. The request body is checked to be a JSON object and gets
 * an "id" when it has none, so that the edges' answers and the log name the same
 * operation; the edges check the rest. */
#include <errno.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/log.h"
#include "core/mc.h"
#include "core/metrics.h"
#include "http/http_server.h"
#include "router/router_int.h"

struct router_admin {
    struct router_admin_cfg cfg; /* strings copied */
    pthread_mutex_t mtx;
    char **log; /* ring of cfg.log_max JSON texts (mtx) */
    size_t head, count;
    struct metrics_counter *m_ok, *m_failed;
    struct metrics_hist *m_prop;
};

void router__admin_init(struct router *r, const struct router_admin_cfg *cfg)
{
    struct router_admin *a = mc_xcalloc(1, sizeof(*a));
    a->cfg = *cfg;
    a->cfg.token = cfg->token ? mc_xstrdup(cfg->token) : NULL;
    a->cfg.edge_token = cfg->edge_token ? mc_xstrdup(cfg->edge_token)
                      : cfg->token      ? mc_xstrdup(cfg->token)
                                        : NULL;
    if (a->cfg.log_max == 0)
        a->cfg.log_max = 1;
    a->log = mc_xcalloc(a->cfg.log_max, sizeof(*a->log));
    pthread_mutex_init(&a->mtx, NULL);
    a->m_ok = metrics_counter("mlcdn_router_invalidations_total",
                              "Invalidations fanned out to the edges, by outcome", "result=\"ok\"");
    a->m_failed = metrics_counter("mlcdn_router_invalidations_total",
                                  "Invalidations fanned out to the edges, by outcome",
                                  "result=\"incomplete\"");
    a->m_prop = metrics_hist("mlcdn_router_invalidation_propagation_seconds",
                             "Time for every edge to acknowledge an invalidation", "", 1e6, 16,
                             60000000);
    r->admin = a;
}

void router__admin_fini(struct router *r)
{
    struct router_admin *a = r->admin;
    if (!a)
        return;
    for (size_t i = 0; i < a->cfg.log_max; i++)
        free(a->log[i]);
    free(a->log);
    free((char *)a->cfg.token);
    free((char *)a->cfg.edge_token);
    pthread_mutex_destroy(&a->mtx);
    free(a);
    r->admin = NULL;
}

static int authorized(const struct router_admin *a, const struct http_request *req)
{
    const struct http_header *h = http_request_header(req, "authorization");
    if (!h || h->value.len < 7 || strncasecmp(h->value.p, "Bearer ", 7) != 0)
        return 0;
    return mc_consttime_eq(h->value.p + 7, h->value.len - 7, a->cfg.token, strlen(a->cfg.token));
}

static void respond_json(struct http_exchange *x, int status, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    json_decref(j);
    if (!s) {
        http_x_error(x, 500, "out of memory");
        return;
    }
    size_t n = strlen(s);
    http_x_respond(x, status, "Content-Type: application/json\r\nCache-Control: no-store\r\n", s,
                   n);
    free(s);
}

struct inval_op {
    struct router *r;
    struct http_exchange *x;
    json_t *request; /* the body sent */
    char id[72];
    int64_t time_ms;
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void log_add(struct router_admin *a, json_t *entry)
{
    char *s = json_dumps(entry, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    if (!s)
        return;
    pthread_mutex_lock(&a->mtx);
    size_t slot = (a->head + a->count) % a->cfg.log_max;
    if (a->count == a->cfg.log_max) {
        slot = a->head;
        a->head = (a->head + 1) % a->cfg.log_max;
    } else {
        a->count++;
    }
    free(a->log[slot]);
    a->log[slot] = s;
    pthread_mutex_unlock(&a->mtx);
}

static void on_fanned_out(void *arg, struct router_fanout_result *res, size_t n, double total)
{
    struct inval_op *op = arg;
    struct router_admin *a = op->r->admin;
    json_t *edges = json_array(), *logged = json_array();
    size_t ok = 0;

    for (size_t i = 0; i < n; i++) {
        json_error_t je;
        json_t *e = json_object(), *ans = json_loads(res[i].body, 0, &je);
        json_object_set_new(e, "edge", json_string(res[i].edge));
        json_object_set_new(e, "url", json_string(res[i].url));
        json_object_set_new(e, "status", json_integer(res[i].status));
        json_object_set_new(e, "ms", json_real(res[i].ms));
        json_object_set_new(e, "attempts", json_integer(res[i].attempts));
        if (res[i].status == 200)
            ok++;
        else
            json_object_set_new(e, "error",
                                json_string(res[i].error[0] ? res[i].error
                                            : res[i].status ? "refused by the edge"
                                                            : "no answer"));
        json_array_append(logged, e);
        json_object_set_new(e, "answer", ans ? ans : json_string(res[i].body));
        json_array_append_new(edges, e);
    }
    double prop = 0;
    for (size_t i = 0; i < n; i++)
        if (res[i].status == 200 && res[i].ms > prop)
            prop = res[i].ms;
    json_t *entry = json_object();
    json_object_set_new(entry, "id", json_string(op->id));
    json_object_set_new(entry, "time_ms", json_integer(op->time_ms));
    json_object_set(entry, "request", op->request);
    json_object_set_new(entry, "propagation_ms", json_real(prop));
    json_object_set_new(entry, "acknowledged", json_integer((json_int_t)ok));
    json_object_set_new(entry, "total", json_integer((json_int_t)n));
    json_object_set_new(entry, "edges", logged);
    log_add(a, entry);
    json_object_set(entry, "edges", edges);
    json_decref(edges);
    metrics_counter_add(ok == n ? a->m_ok : a->m_failed, 1);
    if (ok == n)
        metrics_hist_observe(a->m_prop, (uint64_t)(total * 1000));
    else
        log_warn("invalidation not acknowledged by every edge", "id=%s acknowledged=%zu edges=%zu",
                 op->id, ok, n);
    respond_json(op->x, ok == n && n > 0 ? 200 : 502, entry);
    json_decref(op->request);
    free(op);
}

static void do_invalidate(struct router *r, struct http_exchange *x, struct router_thr *t)
{
    struct router_admin *a = r->admin;
    size_t len;
    const char *body = http_x_body(x, &len);
    json_error_t je;
    json_t *j = json_loadb(body, len, 0, &je);

    if (!json_is_object(j)) {
        char msg[300];
        snprintf(msg, sizeof(msg), "body: expected a JSON object (%s)",
                 j ? "not an object" : je.text);
        json_decref(j);
        http_x_error(x, 400, msg);
        return;
    }
    if (!t->client) {
        json_decref(j);
        http_x_error(x, 503, "no HTTP client on this worker");
        return;
    }
    struct inval_op *op = mc_xcalloc(1, sizeof(*op));
    op->r = r;
    op->x = x;
    op->time_ms = wall_ms();
    json_t *id = json_object_get(j, "id");
    if (json_is_string(id)) {
        snprintf(op->id, sizeof(op->id), "%s", json_string_value(id));
    } else {
        unsigned char b[8];
        if (RAND_bytes(b, sizeof(b)) != 1)
            memcpy(b, &op->time_ms, sizeof(b));
        for (int i = 0; i < 8; i++)
            snprintf(op->id + 2 * i, 3, "%02x", b[i]);
        json_object_set_new(j, "id", json_string(op->id));
    }
    op->request = j;
    char *out = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    struct router_fanout_req rq = {"POST",
                                   "/admin/invalidate",
                                   out,
                                   out ? strlen(out) : 0,
                                   a->cfg.edge_token,
                                   a->cfg.timeout_ms,
                                   a->cfg.retries};
    router__fanout(t, t->set, &rq, on_fanned_out, op);
    free(out);
}

/* The per-edge answers of a model fan-out: {"edges":[{edge, url, status, ms, attempts,
 * answer[, error]}], "acknowledged", "total", "propagation_ms"}; 200 when every edge
 * answered 2xx, else 502. */
static void on_models_fanned_out(void *arg, struct router_fanout_result *res, size_t n,
                                 double total)
{
    struct http_exchange *x = arg;
    json_t *edges = json_array(), *j = json_object();
    size_t ok = 0;
    double prop = 0;

    (void)total;
    for (size_t i = 0; i < n; i++) {
        json_error_t je;
        json_t *e = json_object(), *ans = json_loads(res[i].body, 0, &je);
        int good = res[i].status >= 200 && res[i].status < 300;
        json_object_set_new(e, "edge", json_string(res[i].edge));
        json_object_set_new(e, "url", json_string(res[i].url));
        json_object_set_new(e, "status", json_integer(res[i].status));
        json_object_set_new(e, "ms", json_real(res[i].ms));
        json_object_set_new(e, "attempts", json_integer(res[i].attempts));
        json_object_set_new(e, "answer", ans ? ans : json_string(res[i].body));
        if (good) {
            ok++;
            if (res[i].ms > prop)
                prop = res[i].ms;
        } else {
            json_object_set_new(e, "error",
                                json_string(res[i].error[0] ? res[i].error
                                            : res[i].status ? "refused by the edge"
                                                            : "no answer"));
        }
        json_array_append_new(edges, e);
    }
    json_object_set_new(j, "edges", edges);
    json_object_set_new(j, "acknowledged", json_integer((json_int_t)ok));
    json_object_set_new(j, "total", json_integer((json_int_t)n));
    json_object_set_new(j, "propagation_ms", json_real(prop));
    respond_json(x, ok == n && n > 0 ? 200 : 502, j);
}

static void do_models(struct router *r, struct http_exchange *x, struct router_thr *t, int announce)
{
    struct router_admin *a = r->admin;
    size_t len = 0;
    const char *body = announce ? http_x_body(x, &len) : NULL;

    if (announce) {
        /* Checked here so that a bad body is one 400, not one per edge; the edges check
         * the rest. */
        json_error_t je;
        json_t *j = json_loadb(body ? body : "", len, 0, &je);
        int obj = json_is_object(j);
        json_decref(j);
        if (!obj) {
            char msg[300];
            snprintf(msg, sizeof(msg), "body: expected a JSON object {\"name\": MODEL} (%s)",
                     j ? "not an object" : je.text);
            http_x_error(x, 400, msg);
            return;
        }
    }
    if (!t->client) {
        http_x_error(x, 503, "no HTTP client on this worker");
        return;
    }
    struct router_fanout_req rq = {announce ? "POST" : "GET",
                                   announce ? "/admin/models/announce" : "/admin/models",
                                   body,
                                   len,
                                   a->cfg.edge_token,
                                   a->cfg.timeout_ms,
                                   a->cfg.retries};
    router__fanout(t, t->set, &rq, on_models_fanned_out, x);
}

static void do_log(struct router_admin *a, struct http_exchange *x)
{
    struct buf b;
    buf_init(&b, 64u << 20);
    buf_puts(&b, "{\"invalidations\":[");
    pthread_mutex_lock(&a->mtx);
    for (size_t k = 0; k < a->count; k++) {
        size_t slot = (a->head + a->count - 1 - k) % a->cfg.log_max;
        if (k)
            buf_puts(&b, ",");
        buf_puts(&b, a->log[slot]);
    }
    pthread_mutex_unlock(&a->mtx);
    buf_puts(&b, "]}\n");
    http_x_respond(x, 200, "Content-Type: application/json\r\nCache-Control: no-store\r\n", b.data,
                   b.len);
    buf_fini(&b);
}

void router__admin_handle(struct http_exchange *x, void *arg)
{
    struct router *r = arg;
    struct router_admin *a = r->admin;
    const struct http_request *req = http_x_request(x);
    struct router_thr *t = http_x_worker(x);
    struct http_str p = req->path;

    router__thr_sync(r, t, NULL);
    if (p.len == 7 && !memcmp(p.p, "/health", 7)) {
        const char *ok = "{\"status\":\"ok\"}\n";
        http_x_respond(x, 200, "Content-Type: application/json\r\n", ok, strlen(ok));
        return;
    }
    int is_inval = p.len == 17 && !memcmp(p.p, "/admin/invalidate", 17);
    int is_log = p.len == 20 && !memcmp(p.p, "/admin/invalidations", 20);
    int is_models = p.len == 13 && !memcmp(p.p, "/admin/models", 13);
    int is_announce = p.len == 22 && !memcmp(p.p, "/admin/models/announce", 22);
    if (!is_inval && !is_log && !is_models && !is_announce) {
        http_x_error(x, 404, "not found");
        return;
    }
    if (!a->cfg.token) {
        http_x_error(x, 403, "the admin API is disabled: start the router with --admin-token");
        return;
    }
    if (!authorized(a, req)) {
        const char *m =
            "{\"error\":\"needs Authorization: Bearer <admin token>\",\"status\":401}\n";
        http_x_respond(x, 401, "WWW-Authenticate: Bearer\r\nContent-Type: application/json\r\n", m,
                       strlen(m));
        return;
    }
    if (is_inval && req->method == HTTP_M_POST)
        do_invalidate(r, x, t);
    else if (is_announce && req->method == HTTP_M_POST)
        do_models(r, x, t, 1);
    else if (is_models && req->method == HTTP_M_GET)
        do_models(r, x, t, 0);
    else if (is_log && (req->method == HTTP_M_GET || req->method == HTTP_M_HEAD))
        do_log(a, x);
    else
        http_x_respond(x, 405,
                       is_inval || is_announce ? "Allow: POST\r\n"
                       : is_models             ? "Allow: GET\r\n"
                                               : "Allow: GET, HEAD\r\n",
                       "method not allowed\n", 19);
}

json_t *router__admin_recent(struct router *r, size_t max)
{
    struct router_admin *a = r->admin;
    json_t *arr = json_array();
    if (!a)
        return arr;
    pthread_mutex_lock(&a->mtx);
    for (size_t k = 0; k < a->count && k < max; k++) {
        json_error_t je;
        json_t *e = json_loads(a->log[(a->head + a->count - 1 - k) % a->cfg.log_max], 0, &je);
        if (!e)
            continue;
        /* What was purged (URLs, tags...) stays on the admin listener: the dashboard is on
         * the public API. */
        json_t *o = json_object(), *what = json_array(), *edges = json_array(), *v;
        const char *key;
        json_object_foreach(json_object_get(e, "request"), key, v)
        {
            if (strcmp(key, "id"))
                json_array_append_new(what, json_string(key));
        }
        size_t i;
        json_array_foreach(json_object_get(e, "edges"), i, v)
        {
            json_t *pe = json_object();
            json_object_set(pe, "edge", json_object_get(v, "edge"));
            json_object_set(pe, "status", json_object_get(v, "status"));
            json_object_set(pe, "ms", json_object_get(v, "ms"));
            json_array_append_new(edges, pe);
        }
        static const char *const keep[] = {"id", "time_ms", "propagation_ms", "acknowledged",
                                           "total"};
        for (size_t j = 0; j < sizeof(keep) / sizeof(keep[0]); j++)
            json_object_set(o, keep[j], json_object_get(e, keep[j]));
        json_object_set_new(o, "what", what);
        json_object_set_new(o, "edges", edges);
        json_array_append_new(arr, o);
        json_decref(e);
    }
    pthread_mutex_unlock(&a->mtx);
    return arr;
}
