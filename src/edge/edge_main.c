/* src/edge/edge_main.c: edge start-up, worker loops, shutdown, and `mlcdn edge`. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cache/cache_key.h"
#include "core/accesslog.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/mc.h"
#include "core/sdnotify.h"
#include "core/units.h"
#include "edge/edge_int.h"
#include "edge/edge_origin.h"
#include "edge/edge_redis.h"
#include "edge/edge_routes.h"
#include "predict/predict.h"

/* The storage tiers behind L1, nearest first: the disk tier, then the region's Redis. */
static const struct edge_tier_ops *const tiers[] = {&edge__tier_l2_ops, &edge__tier_redis_ops};

void edge_cfg_default(struct edge_cfg *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->listen = "127.0.0.1:8080";
    cfg->admin = "127.0.0.1:0";
    cfg->region = "local";
    cfg->mem = 256u << 20;
    cfg->policy = "default";
    cfg->threads = 1;
    cfg->http2 = 1;
    cfg->connect_timeout_ms = 2000;
    cfg->first_byte_timeout_ms = 15000;
    cfg->origin_timeout_ms = 300000;
    cfg->heuristic_max_s = 86400;
    cfg->negative_ttl_s = 10;
    cfg->stale_if_error_s = -1;
    cfg->max_body = 16u << 20;
    cfg->request_buffer = 1u << 20;
    cfg->breaker_failures = 5;
    cfg->breaker_cooldown_ms = 10000;
    cfg->header_timeout_ms = 10000;
    cfg->body_timeout_ms = 30000;
    cfg->idle_timeout_ms = 60000;
    cfg->send_timeout_ms = 60000;
    cfg->infer_threads = 2;
    cfg->predict_cache = 64u << 20;
    cfg->max_batch = 64;
    cfg->max_delay_us = 200;
    cfg->models_poll_ms = 2000;
    cfg->model_memory = 1ull << 30;
    cfg->disk = 1ull << 30;
    cfg->l2_admit_hits = 2;
    cfg->redis_max_object = 1u << 20;
    cfg->redis_timeout_ms = 50;
}

/* The worker of this thread's loop (set while the loop serves). */
static _Thread_local struct edge_worker *self_worker;

struct edge_worker *edge__worker_self(struct edge *e)
{
    return self_worker && self_worker->e == e ? self_worker : NULL;
}

static void *loop_init(uv_loop_t *loop, unsigned idx, void *arg)
{
    struct edge *e = arg;
    struct edge_worker *w = mc_xcalloc(1, sizeof(*w));

    MC_INIT_OBJ(w, EDGE_WORKER_MAGIC);
    w->e = e;
    w->idx = idx;
    w->loop = loop;
    pthread_mutex_init(&w->wake_mtx, NULL);
    buf_init(&w->key_scratch, 16 * 1024);
    buf_init(&w->hdr_scratch, 1u << 20);
    MC_ASSERT(http_client_new(loop, &w->client) == 0);
    uv_async_init(loop, &w->wake, edge__worker_wake);
    w->wake.data = w;
    if (e->predict)
        w->pl = predict_loop_init(e->predict, loop);
    edge__tier_loop_init(w);
    edge__control_loop_init(w);
    pthread_mutex_lock(&e->rt_mtx);
    w->rt = edge__rt_ref(e->rt);
    w->rt_gen = atomic_load(&e->rt_gen);
    pthread_mutex_unlock(&e->rt_mtx);
    e->workers[idx] = w;
    self_worker = w;
    return w;
}

static void loop_stopping(uv_loop_t *loop, void *data, void *arg)
{
    struct edge *e = arg;
    (void)loop;
    (void)data;
    atomic_store(&e->draining, 1);
    predict_set_draining(e->predict);
}

static void worker_closed(uv_handle_t *h)
{
    struct edge_worker *w = h->data;
    edge__rt_unref(&w->rt);
    buf_fini(&w->key_scratch);
    buf_fini(&w->hdr_scratch);
    pthread_mutex_destroy(&w->wake_mtx);
    MC_FREE_OBJ(w);
}

static void loop_fini(uv_loop_t *loop, void *data, void *arg)
{
    struct edge_worker *w = data;
    struct edge *e = arg;

    (void)loop;
    w->stopping = 1;
    edge__control_loop_fini(w);
    /* Pending tier lookups (Redis) answer (503, the loop is stopping) before the fills go. */
    edge__tier_loop_fini(w);
    edge__worker_cancel_fills(w);
    /* Waiters of this loop woken by the cancellations answer now, before the loop ends. */
    edge__worker_wake(&w->wake);
    predict_loop_fini(&w->pl);
    http_client_free(&w->client);
    e->workers[w->idx] = NULL;
    if (self_worker == w)
        self_worker = NULL;
    uv_close((uv_handle_t *)&w->wake, worker_closed);
}

/* A gap in the control stream: an entry this edge never read may have invalidated any
 * object it holds, so everything cached until now is banned: every tier's objects,
 * whatever their key or tags, and every model's cached predictions. */
static void control_inval_gap(struct edge *e, edge_control_done_fn *done, void *arg)
{
    static const char ban_all[] = "{\"all\":true,\"id\":\"control-stream-gap\"}";
    edge__invalidate_json(e, ban_all, sizeof(ban_all) - 1, done, arg);
}

/* --control-redis: the consumer and its handlers, one per kind of entry. */
static int open_control(struct edge *e, const struct edge_cfg *cfg, char *err, size_t errlen)
{
    char state[4096];
    int rc;

    if (!cfg->name || !*cfg->name) {
        snprintf(err, errlen,
                 "--control-redis needs --name: the edge's name on the control "
                 "stream, the same across restarts");
        return -EINVAL;
    }
    if (cfg->control_state && *cfg->control_state)
        snprintf(state, sizeof(state), "%s", cfg->control_state);
    else if (cfg->disk_dir && *cfg->disk_dir)
        snprintf(state, sizeof(state), "%s/control.state", cfg->disk_dir);
    else {
        snprintf(err, errlen,
                 "--control-redis needs --control-state FILE (or --disk-dir): "
                 "where the last entry applied is kept across restarts");
        return -EINVAL;
    }
    rc = edge__control_new(e, cfg->control_redis,
                           cfg->control_stream ? cfg->control_stream : "mlcdn:control", state, err,
                           errlen);
    if (rc == 0)
        rc = edge__control_register(e, "invalidate", edge__invalidate_json, control_inval_gap);
    if (rc == 0)
        rc = edge__control_register(e, "model", edge__model_announce_json, edge__model_gap);
    return rc;
}

/* Prediction serving (--models) reads these settings of the edge. */
static int start_predict(struct edge *e, char *err, size_t errlen)
{
    const struct edge_cfg *c = &e->cfg;
    struct predict_cfg pc = {
        .models_dir = c->models_dir,
        .infer_threads = c->infer_threads,
        .predict_cache = c->predict_cache,
        .predict_objective = e->cfg_predict_objective,
        .max_batch = c->max_batch,
        .max_delay_us = c->max_delay_us,
        .models_poll_ms = c->models_poll_ms,
        .model_memory = c->model_memory,
        .region = c->region,
        .max_body = c->max_body,
        .admin_token = c->admin_token,
        .model_store = c->model_store,
        .store_models = c->store_models,
        .keep_versions = c->model_keep,
        .edge_name = e->name,
    };
    return predict_new(&pc, &e->predict, err, errlen);
}

/* The http_tls_cfg of cfg's --tls-* settings (certs: room for HTTP_TLS_MAX_CERTS), checked;
 * 0 or -EINVAL with err naming the flag. */
static int tls_cfg_of(const struct edge_cfg *cfg, struct http_tls_cert *certs,
                      struct http_tls_cfg *tc, char *err, size_t errlen)
{
    if (cfg->n_tls_certs == 0) {
        snprintf(err, errlen, "--tls-listen needs --tls-cert FILE and --tls-key FILE");
        return -EINVAL;
    }
    if (cfg->n_tls_certs > HTTP_TLS_MAX_CERTS) {
        snprintf(err, errlen, "--tls-cert: at most %d certificates", HTTP_TLS_MAX_CERTS);
        return -EINVAL;
    }
    if (cfg->n_tls_keys != cfg->n_tls_certs) {
        snprintf(err, errlen,
                 "--tls-key: %zu key(s) for %zu certificate(s); give one per --tls-cert",
                 cfg->n_tls_keys, cfg->n_tls_certs);
        return -EINVAL;
    }
    if (cfg->n_tls_ocsp != 0 && cfg->n_tls_ocsp != cfg->n_tls_certs) {
        snprintf(err, errlen,
                 "--tls-ocsp: %zu response(s) for %zu certificate(s); give none or one "
                 "per --tls-cert",
                 cfg->n_tls_ocsp, cfg->n_tls_certs);
        return -EINVAL;
    }
    for (size_t i = 0; i < cfg->n_tls_certs; i++)
        certs[i] = (struct http_tls_cert){cfg->tls_certs[i], cfg->tls_keys[i],
                                          cfg->n_tls_ocsp ? cfg->tls_ocsp[i] : NULL};
    memset(tc, 0, sizeof(*tc));
    tc->certs = certs;
    tc->ncerts = cfg->n_tls_certs;
    tc->ticket_secret_file = cfg->tls_ticket_secret;
    tc->ticket_period_ms = cfg->tls_ticket_period_ms;
    tc->h2 = cfg->http2;
    return 0;
}

/* The certificates of --tls-listen: flags checked, files loaded (each error names one). */
static int start_tls(struct edge *e, const struct edge_cfg *cfg, char *err, size_t errlen)
{
    struct http_tls_cert certs[HTTP_TLS_MAX_CERTS];
    struct http_tls_cfg tc;
    int rc = tls_cfg_of(cfg, certs, &tc, err, errlen);

    return rc ? rc : http_tls_ctx_new(&tc, &e->tls, err, errlen);
}

/* With --models, prediction serving answers its paths before any route is looked at
 * (edge_req.c): a route covering them is, there, dead configuration. Starting anyway
 * keeps one config file usable by edges with and without --models; the operator is told
 * which route and which endpoint, once per start or reload. */
static void report_shadowed_routes(const struct edge_rt *rt)
{
    for (size_t i = 0; i < edge__routes_count(rt->routes); i++) {
        const struct edge_route *r = edge__routes_get(rt->routes, i);
        const char *hit = NULL;
        for (const char *const *p = predict_paths; *p && !hit; p++)
            if (edge__route_covers(r, *p, strlen(*p)))
                hit = *p;
        if (!hit && predict_path_taken(r->prefix, r->prefix_len))
            hit = r->prefix;
        if (hit)
            log_warn("route shadowed by prediction serving",
                     "config=\"%s\" route=\"routes[%zu]\" prefix=\"%s\" endpoint=\"%s\" "
                     "rule=\"with --models the edge answers /predict, /batch_predict and /v2/... "
                     "itself; the route still applies to its other paths\"",
                     rt->cfg.config_file, r->index, r->prefix, hit);
    }
}

/* A buffered request body is held in memory whole (per request): a bound on the setting. */
#define REQUEST_BUFFER_MAX (64u << 20)

/* Upstreams are tried in order: the parent edge (if any), then the origins. */
static int add_origin(struct edge_rt *rt, enum edge_level lv, const char *flag, const char *url,
                      size_t n, char *err, size_t errlen)
{
    if (rt->norigins >= EDGE_MAX_ORIGINS) {
        snprintf(err, errlen, "--origin: at most %d origins", EDGE_MAX_ORIGINS);
        return -EINVAL;
    }
    while (n && url[n - 1] == '/')
        n--;
    if (n < 8 || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)) {
        snprintf(err, errlen, "--%s: '%.*s' is not an http:// or https:// URL", flag, (int)n, url);
        return -EINVAL;
    }
    /* A URL holds no space or control character: one there (a line break inside a quoted
     * string of the config file) would otherwise reach every request line to the origin. */
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)url[i] <= 0x20 || url[i] == 0x7f) {
            snprintf(err, errlen, "--%s: the URL holds a space or control character at byte %zu",
                     flag, i);
            return -EINVAL;
        }
    }
    rt->origin_urls[rt->norigins] = mc_xstrndup(url, n);
    rt->upstream_level[rt->norigins++] = lv;
    return 0;
}

static void rt_free(struct edge_rt *rt)
{
    edge__origins_free(&rt->origins);
    edge__routes_free(&rt->routes);
    for (size_t i = 0; i < rt->norigins; i++)
        free(rt->origin_urls[i]);
    if (rt->release)
        rt->release(rt->release_arg);
    MC_FREE_OBJ(rt);
}

void edge__rt_unref(struct edge_rt **rtp)
{
    struct edge_rt *rt = *rtp;

    *rtp = NULL;
    if (!rt)
        return;
    MC_CHECK_OBJ_NOTNULL(rt, EDGE_RT_MAGIC);
    if (atomic_fetch_sub(&rt->refcnt, 1) == 1)
        rt_free(rt);
}

struct edge_rt *edge__rt(struct edge_worker *w)
{
    struct edge *e = w->e;

    /* One acquire load per request in the common case; the lock only when a reload
     * published a new rt since this loop last looked. */
    if (atomic_load_explicit(&e->rt_gen, memory_order_acquire) != w->rt_gen) {
        struct edge_rt *old = w->rt;
        pthread_mutex_lock(&e->rt_mtx);
        w->rt = edge__rt_ref(e->rt);
        w->rt_gen = atomic_load(&e->rt_gen);
        pthread_mutex_unlock(&e->rt_mtx);
        edge__rt_unref(&old);
    }
    return w->rt;
}

/* Builds the run-time settings of cfg: the upstream list (checked), its breakers and the
 * route table (read from cfg->config_file). 0 with a new rt (one reference) in *out, or
 * -EINVAL with err naming the flag, or the file, line and field. */
static int rt_new(const struct edge_cfg *cfg, struct edge_rt **out, char *err, size_t errlen)
{
    struct edge_rt *rt = mc_xcalloc(1, sizeof(*rt));
    int rc;

    MC_INIT_OBJ(rt, EDGE_RT_MAGIC);
    atomic_init(&rt->refcnt, 1);
    rt->cfg = *cfg;
    if (cfg->parent && *cfg->parent) {
        rc = add_origin(rt, EDGE_LV_PARENT, "parent", cfg->parent, strlen(cfg->parent), err,
                        errlen);
        if (rc != 0)
            goto fail;
    }
    for (size_t i = 0; i < cfg->norigins; i++) {
        /* Each --origin may itself be a comma-separated list. */
        const char *p = cfg->origins[i];
        while (p && *p) {
            const char *comma = strchr(p, ',');
            size_t n = comma ? (size_t)(comma - p) : strlen(p);
            if (n && (rc = add_origin(rt, EDGE_LV_ORIGIN, "origin", p, n, err, errlen)) != 0)
                goto fail;
            p = comma ? comma + 1 : NULL;
        }
    }
    /* An edge that only serves predictions (--models) needs no origin; a parent is the
     * first upstream of an origin fetch, not an origin of its own. */
    int has_origin = rt->norigins > 0 && rt->upstream_level[rt->norigins - 1] == EDGE_LV_ORIGIN;
    if (!has_origin && (rt->norigins > 0 || !((cfg->models_dir && *cfg->models_dir) ||
                                              (cfg->model_store && *cfg->model_store)))) {
        snprintf(err, errlen,
                 "--origin is required (one or more http:// URLs), unless the edge only serves "
                 "predictions (--models without --parent)");
        rc = -EINVAL;
        goto fail;
    }
    if (cfg->request_buffer > REQUEST_BUFFER_MAX) {
        snprintf(err, errlen, "--request-buffer: at most %uM (bodies are held in memory)",
                 REQUEST_BUFFER_MAX >> 20);
        rc = -EINVAL;
        goto fail;
    }
    if (cfg->config_file && (rc = edge__routes_load(cfg->config_file, &rt->routes, err, errlen)))
        goto fail;
    /* An unreported probe holds the half-open slot for at most as long as an attempt can
     * take to fail; then another request probes. */
    rt->origins = edge__origins_new((const char *const *)rt->origin_urls, rt->norigins,
                                    cfg->breaker_failures, cfg->breaker_cooldown_ms,
                                    cfg->connect_timeout_ms +
                                        (cfg->first_byte_timeout_ms ? cfg->first_byte_timeout_ms
                                                                    : cfg->origin_timeout_ms) +
                                        1000);
    *out = rt;
    return 0;
fail:
    rt_free(rt);
    return rc;
}

/* Publishes rt (takes its reference): each loop picks it up at its next request. */
static void rt_publish(struct edge *e, struct edge_rt *rt)
{
    struct edge_rt *old;

    pthread_mutex_lock(&e->rt_mtx);
    old = e->rt;
    e->rt = rt;
    atomic_fetch_add_explicit(&e->rt_gen, 1, memory_order_release);
    pthread_mutex_unlock(&e->rt_mtx);
    edge__rt_unref(&old);
}

int edge_reload(struct edge *e, const struct edge_cfg *cfg, void (*release)(void *arg), void *arg,
                char *err, size_t errlen)
{
    struct edge_rt *rt;
    int rc;

    MC_CHECK_OBJ_NOTNULL(e, EDGE_MAGIC);
    if ((rc = rt_new(cfg, &rt, err, errlen)) != 0)
        return rc;
    if (e->tls) {
        /* New handshakes get the new certificates; open connections keep theirs. A file
         * that does not load refuses the whole reload: nothing has changed yet. */
        struct http_tls_cert certs[HTTP_TLS_MAX_CERTS];
        struct http_tls_cfg tc;
        if ((rc = tls_cfg_of(cfg, certs, &tc, err, errlen)) != 0 ||
            (rc = http_tls_ctx_reload(e->tls, &tc, err, errlen)) != 0) {
            rt_free(rt);
            return rc;
        }
    }
    if (e->predict)
        report_shadowed_routes(rt);
    rt->release = release;
    rt->release_arg = arg;
    http_server_set_limits(e->srv, cfg->max_body, cfg->header_timeout_ms, cfg->body_timeout_ms,
                           cfg->idle_timeout_ms, cfg->send_timeout_ms);
    rt_publish(e, rt);
    return 0;
}

int edge_start(const struct edge_cfg *cfg, struct edge **out, char *err, size_t errlen)
{
    struct edge *e = mc_xcalloc(1, sizeof(*e));
    struct http_server_cfg sc;
    enum cache_policy_objective mem_obj;
    int rc;

    MC_INIT_OBJ(e, EDGE_MAGIC);
    e->cfg = *cfg;
    pthread_mutex_init(&e->rt_mtx, NULL);
    if ((rc = rt_new(cfg, &e->rt, err, errlen)) != 0)
        goto fail;
    atomic_init(&e->rt_gen, 1);
    if (cfg->mem < (1u << 20)) {
        snprintf(err, errlen, "--mem: at least 1M of memory cache is needed");
        rc = -EINVAL;
        goto fail;
    }
    if (cfg->origin_ca && access(cfg->origin_ca, R_OK) != 0) {
        snprintf(err, errlen, "--origin-ca: %s: %s", cfg->origin_ca, strerror(errno));
        rc = -EINVAL;
        goto fail;
    }
    /* The region goes into a response header (X-Edge-Region), the /health JSON and Via
     * names: a quote, a comma or a line break there would forge fields or break the JSON. */
    if (!cfg->region || !*cfg->region || strlen(cfg->region) > 64 ||
        strspn(cfg->region, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
            strlen(cfg->region)) {
        snprintf(err, errlen, "--region: '%s' must be 1-64 letters, digits, '.', '_' or '-'",
                 cfg->region ? cfg->region : "");
        rc = -EINVAL;
        goto fail;
    }
    if (cfg->name && *cfg->name) {
        if (strlen(cfg->name) >= sizeof(e->name) || strpbrk(cfg->name, " ,()\t\r\n")) {
            snprintf(err, errlen, "--name: '%s' must be a single token of at most %zu characters",
                     cfg->name, sizeof(e->name) - 1);
            rc = -EINVAL;
            goto fail;
        }
        snprintf(e->name, sizeof(e->name), "%s", cfg->name);
    } else {
        /* Unique per process, so two edges of one region in a chain still tell each other
         * apart in Via. */
        uint64_t rnd = 0;
        if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
            rnd = units_now_us() ^ (uint64_t)getpid() << 32;
        snprintf(e->name, sizeof(e->name), "mlcdn-%s-%08llx", cfg->region,
                 (unsigned long long)(rnd & 0xffffffffu));
    }
    e->cfg.threads = cfg->threads ? cfg->threads : 1;
    e->keyopts.ignore_params = cfg->ignore_params;
    e->keyopts.n_ignore = cfg->n_ignore;
    if ((rc = edge__req_init(e, err, errlen)) != 0)
        goto fail;
    struct {
        const char *flag, *val;
        enum cache_policy_objective *out, dflt;
    } objs[] = {
        {"mem-objective", cfg->mem_objective, &mem_obj, CACHE_POLICY_OBJECTS},
        {"disk-objective", cfg->disk_objective, &e->disk_objective, CACHE_POLICY_BYTES},
        {"predict-objective", cfg->predict_objective, &e->cfg_predict_objective,
         CACHE_POLICY_OBJECTS},
    };
    for (size_t i = 0; i < MC_ARRAY_SIZE(objs); i++) {
        *objs[i].out = objs[i].dflt;
        if (objs[i].val != NULL && cache_policy_objective_parse(objs[i].val, objs[i].out) != 0) {
            snprintf(err, errlen, "--%s: '%s' is not an objective (objects or bytes)", objs[i].flag,
                     objs[i].val);
            rc = -EINVAL;
            goto fail;
        }
    }
    rc = l1_new(cfg->mem, cfg->policy, mem_obj, 16, &e->l1);
    if (rc) {
        snprintf(err, errlen, "--policy: unknown eviction policy '%s'", cfg->policy);
        goto fail;
    }
    /* An object must fit one L1 shard (1/16 of --mem) to be stored there at all. */
    e->max_mem_object = cfg->max_mem_object ? cfg->max_mem_object : cfg->mem / 16;
    if (e->cfg.l2_admit_hits == 0)
        e->cfg.l2_admit_hits = 1;
    if ((rc = edge__tier_open(e, tiers, MC_ARRAY_SIZE(tiers), err, errlen)) != 0)
        goto fail;
    if ((rc = edge__inval_open(e, err, errlen)) != 0)
        goto fail;
    edge__parts_open(e);
    edge__busy_init(e);
    pthread_mutex_init(&e->cpu_mtx, NULL);
    edge__metrics_init(e);
    if (cfg->control_redis && (rc = open_control(e, cfg, err, errlen)) != 0)
        goto fail;
    e->start_ms = units_now_ms();
    e->nworkers = e->cfg.threads;
    e->workers = mc_xcalloc(e->nworkers, sizeof(*e->workers));
    if (cfg->models_dir && cfg->model_store) {
        snprintf(err, errlen, "--models and --model-store: give one (a directory, or a store)");
        rc = -EINVAL;
        goto fail;
    }
    if (cfg->model_store && (strncmp(cfg->model_store, "http://", 7) != 0 &&
                             strncmp(cfg->model_store, "https://", 8) != 0)) {
        snprintf(err, errlen, "--model-store: '%s' is not an http:// or https:// URL",
                 cfg->model_store);
        rc = -EINVAL;
        goto fail;
    }
    if ((cfg->models_dir || cfg->model_store) && (rc = start_predict(e, err, errlen)) != 0)
        goto fail;
    if (e->predict)
        report_shadowed_routes(e->rt);

    http_server_cfg_default(&sc);
    sc.threads = e->cfg.threads;
    sc.limits.max_body = cfg->max_body;
    sc.header_timeout_ms = cfg->header_timeout_ms;
    sc.body_timeout_ms = cfg->body_timeout_ms;
    sc.idle_timeout_ms = cfg->idle_timeout_ms;
    sc.send_timeout_ms = cfg->send_timeout_ms;
    sc.listeners[0] = (struct http_listener_cfg){cfg->listen, edge__public_handle, e, "public", 1,
                                                 NULL,        cfg->http2};
    sc.nlisteners = 1;
    if (cfg->admin && *cfg->admin)
        sc.listeners[sc.nlisteners++] = (struct http_listener_cfg){cfg->admin, edge__admin_handle,
                                                                   e, "admin"};
    e->tls_li = -1;
    if (cfg->tls_listen && *cfg->tls_listen) {
        if ((rc = start_tls(e, cfg, err, errlen)) != 0)
            goto fail;
        e->tls_li = (int)sc.nlisteners;
        sc.listeners[sc.nlisteners++] =
            (struct http_listener_cfg){cfg->tls_listen, edge__public_handle, e, "tls", 1, e->tls};
    }
    sc.loop_init = loop_init;
    sc.loop_stopping = loop_stopping;
    sc.loop_fini = loop_fini;
    sc.loop_arg = e;
    sc.access_log = cfg->access_log;
    sc.on_done = edge__on_done;
    rc = http_server_start(&sc, &e->srv, err, errlen);
    if (rc)
        goto fail;
    if ((rc = edge__control_start(e, err, errlen)) != 0) {
        http_server_stop(e->srv, 0);
        http_server_free(&e->srv);
        goto fail;
    }
    edge__metrics_server_ready(e);
    if (e->predict && cfg->model_store) {
        /* Model files come through this edge's own listener, so through its tiers (the
         * store is expected behind the origin or the parent); an edge with no upstream
         * fetches them from the store. */
        char base[192];
        const char *colon = strrchr(cfg->listen, ':');
        size_t hl = colon ? (size_t)(colon - cfg->listen) : 0;
        if (hl == 0 || (hl == 7 && !strncmp(cfg->listen, "0.0.0.0", 7)))
            snprintf(base, sizeof(base), "http://127.0.0.1:%d", edge_port(e));
        else
            snprintf(base, sizeof(base), "http://%.*s:%d", (int)hl, cfg->listen, edge_port(e));
        if ((rc = predict_store_start(e->predict, e->rt->norigins ? base : NULL, err, errlen)) !=
            0) {
            edge_stop(&e, 0);
            return rc;
        }
    }
    *out = e;
    return 0;
fail:
    edge__control_free(e);
    http_tls_ctx_free(&e->tls);
    edge__req_fini(e);
    predict_free(&e->predict);
    edge__inval_close(e);
    edge__parts_close(e);
    edge__tier_close(e);
    l1_free(&e->l1);
    edge__rt_unref(&e->rt);
    pthread_mutex_destroy(&e->rt_mtx);
    free(e->workers);
    MC_FREE_OBJ(e);
    return rc;
}

int edge_port(const struct edge *e)
{
    return http_server_port(e->srv, 0);
}

int edge_admin_port(const struct edge *e)
{
    return e->cfg.admin && *e->cfg.admin ? http_server_port(e->srv, 1) : -1;
}

int edge_tls_port(const struct edge *e)
{
    return e->tls_li >= 0 ? http_server_port(e->srv, (size_t)e->tls_li) : -1;
}

const char *edge_name(const struct edge *e)
{
    return e->name;
}

void edge_drain(struct edge *e)
{
    atomic_store(&e->draining, 1);
    predict_set_draining(e->predict);
    http_server_drain(e->srv);
}

void edge_on_drain(struct edge *e, void (*cb)(void *arg), void *arg)
{
    e->on_drain = cb;
    e->on_drain_arg = arg;
}

void edge_quiesce(struct edge *e, uint64_t grace_ms)
{
    edge__control_stop(e); /* before the loops: its handlers run on worker 0's */
    atomic_store(&e->draining, 1);
    predict_set_draining(e->predict);
    http_server_stop(e->srv, grace_ms);
}

void edge_hurry(struct edge *e)
{
    http_server_hurry(e->srv);
}

void edge_stop(struct edge **ep, uint64_t grace_ms)
{
    struct edge *e = *ep;

    if (!e)
        return;
    edge_quiesce(e, grace_ms);
    http_server_free(&e->srv);
    edge__control_free(e);
    http_tls_ctx_free(&e->tls); /* after the loops: no connection holds it */
    predict_free(&e->predict);  /* after the loops: none can queue work any more */
    edge__inval_close(e);       /* the lurker walks L1 and L2: before they go */
    edge__parts_close(e);
    edge__tier_close(e);
    l1_free(&e->l1);
    edge__req_fini(e);
    /* After the loops: every fill (and its reference) is gone, so this is the last one. */
    edge__rt_unref(&e->rt);
    pthread_mutex_destroy(&e->rt_mtx);
    free(e->workers);
    MC_FREE_OBJ(e);
    *ep = NULL;
}

/* ---- `mlcdn edge` ---- */

/* What the flags and the file say, parsed: one per (re)load. The strings live in c. */
struct edge_args {
    struct edge_cfg cfg;
    struct conf c;
    struct conf_strlist origins, ignore, strip, keyh, methods;
    struct conf_strlist tls_certs, tls_keys, tls_ocsp;
    struct accesslog_opts lo;
    const char *log_level;
    long threads, infer_threads, max_batch, max_delay_us, l2_admit, brk_failures, model_keep;
    uint64_t grace, drain, sie, neg_ms;
    const char *sie_str;
};

#define EDGE_NOPTS 68

/* The options table of `mlcdn edge`, bound to a's fields. CONF_RELOAD marks what SIGHUP
 * applies (edge_reload, log level, drain and grace times); the rest needs a restart. */
static size_t edge_opts(struct edge_args *a, struct conf_opt *out)
{
    struct edge_cfg *cfgp = &a->cfg;
    const struct conf_opt opts[] = {
        {"listen", CONF_STR, &cfgp->listen, "public address ADDR:PORT (default 127.0.0.1:8080)"},
        {"admin", CONF_STR, &cfgp->admin, "admin address (default 127.0.0.1:0; \"\" disables)"},
        {"tls-listen", CONF_STR, &cfgp->tls_listen, "HTTPS address ADDR:PORT (TLS 1.2/1.3)"},
        {"tls-cert", CONF_STRLIST, &a->tls_certs,
         "PEM certificate chain, repeatable (per name by SNI; the first is the default)",
         CONF_RELOAD},
        {"tls-key", CONF_STRLIST, &a->tls_keys, "PEM private key, one per --tls-cert, same order",
         CONF_RELOAD},
        {"tls-ocsp", CONF_STRLIST, &a->tls_ocsp, "DER OCSP response to staple, one per --tls-cert",
         CONF_RELOAD},
        {"tls-ticket-secret", CONF_STR, &cfgp->tls_ticket_secret,
         "file with >= 32 secret bytes: edges sharing it resume each other's sessions",
         CONF_RELOAD},
        {"origin-ca", CONF_STR, &cfgp->origin_ca,
         "CA bundle (PEM) for https:// origins (default: the system's)"},
        {"origin-insecure", CONF_BOOL, &cfgp->origin_insecure,
         "do not verify https:// origins' certificates (tests only)"},
        {"origin-http2", CONF_BOOL, &cfgp->origin_http2,
         "HTTP/2 to https:// origins that offer it, requests multiplexed (default off)"},
        {"http2", CONF_BOOL, &cfgp->http2,
         "serve HTTP/2: ALPN h2 on --tls-listen, prior knowledge (h2c) on --listen (default true)"},
        {"tls-ticket-period", CONF_DURATION, &cfgp->tls_ticket_period_ms,
         "session ticket key rotation period (default 1h; a ticket lives two)", CONF_RELOAD},
        {"origin", CONF_STRLIST, &a->origins, "origin base URL(s), comma-separated or repeated",
         CONF_RELOAD},
        {"region", CONF_STR, &cfgp->region, "region name reported in X-Edge-Region and /health"},
        {"name", CONF_STR, &cfgp->name, "this node's name in Via (default mlcdn-REGION-random)"},
        {"parent", CONF_STR, &cfgp->parent,
         "parent edge URL: misses go there first, then to the origins", CONF_RELOAD},
        {"mem", CONF_SIZE, &cfgp->mem, "L1 memory budget (default 256M)"},
        {"policy", CONF_STR, &cfgp->policy, "eviction policy (default: mlcdn's adaptive policy)"},
        {"mem-objective", CONF_STR, &cfgp->mem_objective,
         "what L1's policy optimises: objects (hits, the default) or bytes"},
        {"disk-objective", CONF_STR, &cfgp->disk_objective,
         "what L2's policy optimises: bytes (origin bandwidth, the default) or objects"},
        {"predict-objective", CONF_STR, &cfgp->predict_objective,
         "what the prediction caches optimise: objects (the default) or bytes"},
        {"threads", CONF_INT, &a->threads, "worker threads (default 1)"},
        {"admin-token", CONF_STR, &cfgp->admin_token, "bearer token for PURGE on the admin port"},
        {"connect-timeout", CONF_DURATION, &cfgp->connect_timeout_ms, "origin connect timeout",
         CONF_RELOAD},
        {"first-byte-timeout", CONF_DURATION, &cfgp->first_byte_timeout_ms,
         "origin time to response headers", CONF_RELOAD},
        {"origin-timeout", CONF_DURATION, &cfgp->origin_timeout_ms, "origin whole-transfer timeout",
         CONF_RELOAD},
        {"origin-breaker-failures", CONF_INT, &a->brk_failures,
         "connect failures or timeouts in a row that stop requests to an origin (default 5; "
         "0 = off)",
         CONF_RELOAD},
        {"origin-breaker-cooldown", CONF_DURATION, &cfgp->breaker_cooldown_ms,
         "time before an origin whose breaker opened is probed (default 10s)", CONF_RELOAD},
        {"stale-if-error", CONF_STR, &a->sie_str, "default stale-if-error window (e.g. 60s)",
         CONF_RELOAD},
        {"store-close-delimited", CONF_BOOL, &cfgp->store_close_delimited,
         "store origin bodies with neither Content-Length nor chunked framing", CONF_RELOAD},
        {"negative-ttl", CONF_DURATION, &a->neg_ms, "cache 404/410 without freshness this long",
         CONF_RELOAD},
        {"max-body", CONF_SIZE, &cfgp->max_body, "request body limit (413 above)", CONF_RELOAD},
        {"request-buffer", CONF_SIZE, &cfgp->request_buffer,
         "read request bodies up to this size before contacting the origin; larger ones "
         "stream (default 1M, 0 = always stream)",
         CONF_RELOAD},
        {"header-timeout", CONF_DURATION, &cfgp->header_timeout_ms, "request head timeout (408)",
         CONF_RELOAD},
        {"body-timeout", CONF_DURATION, &cfgp->body_timeout_ms, "request body timeout (408)",
         CONF_RELOAD},
        {"idle-timeout", CONF_DURATION, &cfgp->idle_timeout_ms, "keep-alive idle timeout",
         CONF_RELOAD},
        {"send-timeout", CONF_DURATION, &cfgp->send_timeout_ms,
         "close a client that takes no response bytes for this long", CONF_RELOAD},
        {"ignore-param", CONF_STRLIST, &a->ignore, "query parameter left out of cache keys"},
        {"strip-header", CONF_STRLIST, &a->strip,
         "request header removed on arrival (replaces the default list; 'none': keep all)"},
        {"key-header", CONF_STRLIST, &a->keyh,
         "request header forwarded and added to every cache key (never stripped)"},
        {"extra-method", CONF_STRLIST, &a->methods,
         "non-standard method forwarded uncached (case-sensitive; '*': any); others get 501"},
        {"models", CONF_STR, &cfgp->models_dir,
         "serve predictions from DIR/NAME/VERSION/model.onnx (docs/predict.md)"},
        {"infer-threads", CONF_INT, &a->infer_threads, "inference threads (default 2)"},
        {"predict-cache", CONF_SIZE, &cfgp->predict_cache,
         "prediction cache per model unless config.json says (default 64M)"},
        {"max-batch", CONF_INT, &a->max_batch, "default max rows per inference batch (64)"},
        {"max-delay-us", CONF_INT, &a->max_delay_us,
         "default wait for a fuller batch, microseconds (200)"},
        {"models-poll", CONF_DURATION, &cfgp->models_poll_ms,
         "poll the models directory for new versions (default 2s, 0 = off)"},
        {"model-store", CONF_STR, &cfgp->model_store,
         "serve the models of a model store URL (models/NAME/manifest.json), not --models"},
        {"model-store-models", CONF_STR, &cfgp->store_models,
         "models of the store to read at start, comma-separated (default: every model of its "
         "models/index.json; others come when announced)"},
        {"model-keep", CONF_INT, &a->model_keep,
         "model versions kept in memory for rollback, beyond those served (default 2)"},
        {"model-memory", CONF_SIZE, &cfgp->model_memory,
         "memory budget of each model: weights + one run at max_batch (default 1G)"},
        {"disk-dir", CONF_STR, &cfgp->disk_dir, "L2 disk cache directory (survives restarts)"},
        {"disk", CONF_SIZE, &cfgp->disk, "L2 disk budget (default 1G)"},
        {"disk-policy", CONF_STR, &cfgp->disk_policy, "L2 eviction policy (default sieve)"},
        {"max-mem-object", CONF_SIZE, &cfgp->max_mem_object,
         "larger responses skip L1 and stream through a file (default --mem/16)"},
        {"l2-admit-hits", CONF_INT, &a->l2_admit, "L2 hits before an object enters L1 (default 2)"},
        {"redis", CONF_STR, &cfgp->redis, "shared tier redis://HOST:PORT[/DB]"},
        {"redis-max-object", CONF_SIZE, &cfgp->redis_max_object,
         "largest body stored in Redis (default 1M)"},
        {"redis-timeout", CONF_DURATION, &cfgp->redis_timeout_ms,
         "Redis deadline before the tier is skipped (default 50ms)"},
        {"control-redis", CONF_STR, &cfgp->control_redis,
         "control stream redis://HOST:PORT[/DB]: invalidations and announcements, in order"},
        {"control-stream", CONF_STR, &cfgp->control_stream,
         "the control stream's key (default mlcdn:control)"},
        {"control-state", CONF_STR, &cfgp->control_state,
         "file keeping the last control entry applied (default DISK_DIR/control.state)"},
        {"drain-time", CONF_DURATION, &a->drain,
         "SIGTERM: keep serving this long while /health says draining (default 10s)", CONF_RELOAD},
        {"grace", CONF_DURATION, &a->grace,
         "at the stop, time left to requests in flight (default 10s)", CONF_RELOAD},
        {"log-level", CONF_STR, &a->log_level, "debug, info, warn, error", CONF_RELOAD},
        {"access-log", CONF_STR, &a->lo.access_log,
         "one line per request to FILE, '-' (stdout) or 'syslog' (default: none)"},
        {"access-log-format", CONF_STR, &a->lo.format, "combined (default) or json"},
        {"error-log", CONF_STR, &a->lo.error_log, "log lines to FILE instead of stderr"},
    };
    MC_ASSERT(MC_ARRAY_SIZE(opts) <= EDGE_NOPTS);
    memcpy(out, opts, sizeof(opts));
    return MC_ARRAY_SIZE(opts);
}

/* The host part of ADDR:PORT as it goes into a URL ("" means all addresses). */
static void url_host(const char *addr, char *out, size_t n)
{
    snprintf(out, n, "%s", addr);
    char *colon = strrchr(out, ':');
    if (colon)
        *colon = '\0';
    if (!out[0] || !strcmp(out, "0.0.0.0"))
        snprintf(out, n, "127.0.0.1");
}
static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Defaults, then the file
, then the flags (conf_parse), then the checks that need more
 * than one option; fills a->cfg. 0, or -EINVAL with err naming the flag or the file and
 * line. conf_fini(&a->c) is the caller's in both cases. */
static int edge_args_parse(struct edge_args *a, int argc, char **argv, char *err, size_t errlen)
{
    static const char *const groups[] = {"routes"};
    struct edge_cfg *cfg = &a->cfg;
    struct conf_opt opts[EDGE_NOPTS];
    size_t nopts;

    memset(a, 0, sizeof(*a));
    edge_cfg_default(cfg);
    a->log_level = "info";
    a->threads = 1;
    a->infer_threads = 2;
    a->model_keep = 2;
    a->max_batch = 64;
    a->max_delay_us = 200;
    a->l2_admit = 2;
    a->brk_failures = (long)cfg->breaker_failures;
    a->grace = 10000;
    a->drain = 10000;
    a->neg_ms = 10000;
    nopts = edge_opts(a, opts);
    if (conf_parse(&a->c, opts, nopts, argc, argv, 0, err, errlen) != 0 ||
        conf_check_keys(&a->c, opts, nopts, groups, MC_ARRAY_SIZE(groups), err, errlen) != 0)
        return -EINVAL;
#define BAD(...)                                                                                   \
    do {                                                                                           \
        snprintf(err, errlen, __VA_ARGS__);                                                        \
        conf_locate(&a->c, (const char *const *)argv, argc, err, errlen);                          \
        return -EINVAL;                                                                            \
    } while (0)
    if (log_level_parse(a->log_level) < 0)
        BAD("--log-level: '%s' is not debug, info, warn or error", a->log_level);
    if (a->threads < 1 || a->threads > 256)
        BAD("--threads: %ld is out of range (1..256)", a->threads);
    if (a->sie_str) {
        if (units_parse_duration_ms(a->sie_str, &a->sie) != 0)
            BAD("--stale-if-error: '%s' is not a duration", a->sie_str);
        cfg->stale_if_error_s = (int64_t)(a->sie / 1000);
    }
    if (a->l2_admit < 1 || a->l2_admit > 1000)
        BAD("--l2-admit-hits: %ld is out of range (1..1000)", a->l2_admit);
    cfg->l2_admit_hits = (unsigned)a->l2_admit;
    if (a->brk_failures < 0 || a->brk_failures > 1000)
        BAD("--origin-breaker-failures: %ld is out of range (0..1000)", a->brk_failures);
    cfg->breaker_failures = (unsigned)a->brk_failures;
    cfg->config_file = conf_file(&a->c);
    cfg->threads = (unsigned)a->threads;
    cfg->negative_ttl_s = (int64_t)(a->neg_ms / 1000);
    if (cfg->model_memory == 0)
        BAD("--model-memory: must be more than 0");
    if (a->infer_threads < 1 || a->infer_threads > 256 || a->max_batch < 1 ||
        a->max_batch > 65536 || a->max_delay_us < 0 || a->max_delay_us > 10000000)
        BAD("--infer-threads (1..256), --max-batch (1..65536) or --max-delay-us (0..10000000) "
            "out of range");
    if (a->model_keep < 0 || a->model_keep > 64)
        BAD("--model-keep: %ld is out of range (0..64)", a->model_keep);
#undef BAD
    cfg->model_keep = (unsigned)a->model_keep;
    cfg->infer_threads = (unsigned)a->infer_threads;
    cfg->max_batch = (unsigned)a->max_batch;
    cfg->max_delay_us = (uint64_t)a->max_delay_us;
    for (size_t i = 0; i < a->origins.n && i < EDGE_MAX_ORIGINS; i++)
        cfg->origins[cfg->norigins++] = a->origins.v[i];
    cfg->ignore_params = a->ignore.v;
    cfg->n_ignore = a->ignore.n;
    cfg->strip_headers = a->strip.v;
    cfg->n_strip = a->strip.n;
    cfg->key_headers = a->keyh.v;
    cfg->n_key_headers = a->keyh.n;
    cfg->extra_methods = a->methods.v;
    cfg->n_extra_methods = a->methods.n;
    cfg->tls_certs = a->tls_certs.v;
    cfg->n_tls_certs = a->tls_certs.n;
    cfg->tls_keys = a->tls_keys.v;
    cfg->n_tls_keys = a->tls_keys.n;
    cfg->tls_ocsp = a->tls_ocsp.v;
    cfg->n_tls_ocsp = a->tls_ocsp.n;
    return 0;
}

static void edge_args_free(void *arg)
{
    struct edge_args *a = arg;
    conf_fini(&a->c);
    free(a);
}

static struct accesslog *access_log; /* --access-log, --error-log: one per process */

/* The process around one edge: its main loop, signals and the stop sequence.
 *   SIGHUP             reload the configuration (reload())
 *   SIGUSR1            reopen the access and error log files (logrotate)
 *   SIGTERM            drain for --drain-time (listeners open, /health "draining" 503,
 *                      Connection: close), then stop; POST /admin/drain does the same
 *   SIGINT             stop without the drain (Ctrl-C)
 *   a second TERM/INT  stop at once: requests in flight are cut
 * The stop itself (listeners closed, requests in flight given --grace) runs on a thread
 * of its own so that the main loop still hears signals meanwhile. */
enum daemon_state { D_RUNNING, D_DRAINING, D_STOPPING };

struct edge_daemon {
    uv_loop_t loop;
    int loop_ok;
    uv_signal_t sig[5]; /* daemon_init's signals, with room for one more */
    size_t nsig;
    uv_timer_t drain_timer;
    uv_async_t drain_async; /* POST /admin/drain, from a worker thread */
    uv_async_t stopped;     /* the stop thread is done */
    uv_thread_t stop_thread;
    enum daemon_state state;
    struct edge *e;
    struct edge_args *start;     /* the start's arguments: restart-only values live here */
    uint64_t drain_ms, grace_ms; /* as of the last (re)load */
    uint64_t stop_grace_ms;
    int told_stopping; /* the service manager heard STOPPING=1 */
    int argc;
    char **argv;
};

static void stop_thread_run(void *arg)
{
    struct edge_daemon *d = arg;
    edge_quiesce(d->e, d->stop_grace_ms);
    uv_async_send(&d->stopped);
}

static void on_stopped(uv_async_t *a)
{
    struct edge_daemon *d = a->data;
    uv_thread_join(&d->stop_thread);
    for (size_t i = 0; i < d->nsig; i++)
        uv_close((uv_handle_t *)&d->sig[i], NULL);
    uv_close((uv_handle_t *)&d->drain_timer, NULL);
    uv_close((uv_handle_t *)&d->drain_async, NULL);
    uv_close((uv_handle_t *)&d->stopped, NULL);
}

static void tell_stopping(struct edge_daemon *d)
{
    if (!d->told_stopping)
        sdnotify_stopping();
    d->told_stopping = 1;
}

static void begin_stop(struct edge_daemon *d, uint64_t grace_ms)
{
    tell_stopping(d);
    d->state = D_STOPPING;
    uv_timer_stop(&d->drain_timer);
    d->stop_grace_ms = grace_ms;
    log_info("edge stopping", "grace_ms=%llu", (unsigned long long)grace_ms);
    if (uv_thread_create(&d->stop_thread, stop_thread_run, d) != 0) {
        /* No thread: stop here (signals wait until it is done). */
        stop_thread_run(d);
    }
}

static void on_drain_done(uv_timer_t *t)
{
    struct edge_daemon *d = t->data;
    begin_stop(d, d->grace_ms);
}

static void begin_drain(struct edge_daemon *d, const char *why)
{
    if (d->state != D_RUNNING)
        return;
    if (d->drain_ms == 0) {
        begin_stop(d, d->grace_ms);
        return;
    }
    tell_stopping(d);
    d->state = D_DRAINING;
    edge_drain(d->e);
    log_info("edge draining", "reason=%s drain_ms=%llu", why, (unsigned long long)d->drain_ms);
    uv_timer_start(&d->drain_timer, on_drain_done, d->drain_ms, 0);
}

/* Called twice: the operator wants it over now. */
static void stop_now(struct edge_daemon *d, int signum)
{
    log_info("edge stopping at once", "signal=%d", signum);
    if (d->state == D_STOPPING)
        edge_hurry(d->e);
    else
        begin_stop(d, 0);
}

static void on_admin_drain(void *arg)
{
    struct edge_daemon *d = arg;
    uv_async_send(&d->drain_async);
}

static void on_drain_async(uv_async_t *a)
{
    begin_drain(a->data, "admin");
}

/* SIGHUP: parse the same flags and the file again. A file that does not parse or check is
 * refused whole (logged with its file and line) and the running configuration stays;
 * otherwise settings that need a restart keep their running value (logged by name) and
 * the rest apply. Flags still win over the file, as at start. */
static void reload(struct edge_daemon *d)
{
    struct edge_args *na = mc_xmalloc(sizeof(*na));
    struct conf_opt oldo[EDGE_NOPTS], newo[EDGE_NOPTS];
    char err[512], kept[512];
    size_t n;

    sdnotify_reloading();
    if (edge_args_parse(na, d->argc, d->argv, err, sizeof(err)) != 0)
        goto refused;
    n = edge_opts(d->start, oldo);
    edge_opts(na, newo);
    if (conf_keep_restart_only(oldo, newo, n, kept, sizeof(kept)))
        log_warn("config: settings need a restart; running values kept", "file=%s settings=%s",
                 na->cfg.config_file ? na->cfg.config_file : "-", kept);
    na->cfg.access_log = access_log;
    if (edge_reload(d->e, &na->cfg, edge_args_free, na, err, sizeof(err)) != 0) {
        conf_locate(&na->c, (const char *const *)d->argv, d->argc, err, sizeof(err));
        goto refused;
    }
    d->drain_ms = na->drain;
    d->grace_ms = na->grace;
    log_level_set_name(na->log_level);
    conf_reload_count(1);
    log_info("config reloaded", "file=%s", conf_file(&na->c) ? conf_file(&na->c) : "-");
    sdnotify_ready("configuration reloaded");
    return;
refused:
    conf_reload_count(0);
    log_error("config reload refused; the running configuration stays", "error=\"%s\"", err);
    edge_args_free(na);
    sdnotify_ready("configuration reload refused; the previous one runs");
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct edge_daemon *d = s->data;

    switch (signum) {
    case SIGUSR1: accesslog_reopen_all(access_log); return;
    case SIGHUP:
        if (d->state == D_RUNNING)
            reload(d);
        return;
    case SIGTERM:
        if (d->state == D_RUNNING)
            begin_drain(d, "SIGTERM");
        else
            stop_now(d, signum);
        return;
    case SIGINT:
        if (d->state == D_RUNNING) {
            log_info("edge stopping without drain", "signal=%d", signum);
            begin_stop(d, d->grace_ms);
        } else {
            stop_now(d, signum);
        }
        return;
    }
}

/* The main loop's handles, before the workers: once they accept, clients may take every
 * descriptor the loop and its signal pipe need, and a SIGTERM right after the ready line
 * must not be lost. One entry per signal the edge answers. */
static int daemon_init(struct edge_daemon *d)
{
    static const int signals[] = {SIGHUP, SIGTERM, SIGINT, SIGUSR1};

    if (uv_loop_init(&d->loop) != 0)
        return -EMFILE;
    d->loop_ok = 1;
    for (size_t i = 0; i < MC_ARRAY_SIZE(signals); i++) {
        if (uv_signal_init(&d->loop, &d->sig[i]) != 0)
            return -EMFILE;
        d->nsig++;
        d->sig[i].data = d;
        uv_signal_start(&d->sig[i], on_signal, signals[i]);
    }
    if (uv_timer_init(&d->loop, &d->drain_timer) != 0 ||
        uv_async_init(&d->loop, &d->drain_async, on_drain_async) != 0 ||
        uv_async_init(&d->loop, &d->stopped, on_stopped) != 0)
        return -EMFILE;
    d->drain_timer.data = d->drain_async.data = d->stopped.data = d;
    return 0;
}

/* Closes what daemon_init opened (after a failed start) and ends the loop. */
static void daemon_fini(struct edge_daemon *d)
{
    if (!d->loop_ok)
        return;
    uv_walk(&d->loop, close_walk, NULL);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    uv_loop_close(&d->loop);
}

int edge_main(int argc, char **argv)
{
    struct edge_daemon d = {0};
    struct edge_args *a;
    char err[512];

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            struct edge_args tmp;
            struct conf_opt opts[EDGE_NOPTS];
            memset(&tmp, 0, sizeof(tmp));
            size_t n = edge_opts(&tmp, opts);
            conf_usage("edge", "--origin URL [options]", opts, n);
            return 0;
        }
    }
    a = mc_xmalloc(sizeof(*a));
    if (edge_args_parse(a, argc, argv, err, sizeof(err)) != 0) {
        fprintf(stderr, "mlcdn edge: %s\n", err);
        edge_args_free(a);
        return 2;
    }
    log_level_set_name(a->log_level);
    d.start = a;
    d.argc = argc;
    d.argv = argv;
    d.drain_ms = a->drain;
    d.grace_ms = a->grace;

    signal(SIGPIPE, SIG_IGN);
    /* libuv's thread pool opens, verifies and reads ahead L2 files: a few disk waits must
     * not hold up the rest (the default is 4 threads). */
    setenv("UV_THREADPOOL_SIZE", "16", 0);
    /* Large cached bodies each hold a memfd: allow as many descriptors as the system does. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (accesslog_setup(&a->lo, &access_log, err, sizeof(err)) != 0) {
        fprintf(stderr, "mlcdn edge: %s\n", err);
        edge_args_free(a);
        return 2;
    }
    a->cfg.access_log = access_log;
    if (daemon_init(&d) != 0) {
        fprintf(stderr, "mlcdn edge: cannot set up the main loop (out of descriptors?)\n");
        daemon_fini(&d);
        accesslog_free(&access_log);
        edge_args_free(a);
        return 1;
    }
    conf_reload_metrics_init();
    if (edge_start(&a->cfg, &d.e, err, sizeof(err)) != 0) {
        conf_locate(&a->c, (const char *const *)argv, argc, err, sizeof(err));
        fprintf(stderr, "mlcdn edge: %s\n", err);
        daemon_fini(&d);
        accesslog_free(&access_log);
        edge_args_free(a);
        return 1;
    }
    edge_on_drain(d.e, on_admin_drain, &d);
    /* One ready line: tests and `mlcdn run` read the bound ports from it. */
    const struct edge_cfg *cfg = &a->cfg;
    char host[128], ahost[128], admin_url[160] = "none";
    url_host(cfg->listen, host, sizeof(host));
    if (edge_admin_port(d.e) > 0) {
        url_host(cfg->admin, ahost, sizeof(ahost));
        snprintf(admin_url, sizeof(admin_url), "http://%s:%d", ahost, edge_admin_port(d.e));
    }
    char tls_url[160] = "none";
    if (edge_tls_port(d.e) > 0) {
        char thost[128];
        url_host(cfg->tls_listen, thost, sizeof(thost));
        snprintf(tls_url, sizeof(tls_url), "https://%s:%d", thost, edge_tls_port(d.e));
    }
    printf("edge listening on http://%s:%d admin=%s region=%s name=%s tls=%s\n", host,
           edge_port(d.e), admin_url, cfg->region, edge_name(d.e), tls_url);
    fflush(stdout);
    log_info("edge started", "listen=%s port=%d region=%s threads=%u mem=%llu origins=%zu",
             cfg->listen, edge_port(d.e), cfg->region, cfg->threads, (unsigned long long)cfg->mem,
             cfg->norigins);
    {
        char status[512];
        snprintf(status, sizeof(status), "serving on %s:%d, admin %s", host, edge_port(d.e),
                 admin_url);
        sdnotify_ready(status);
    }

    uv_run(&d.loop, UV_RUN_DEFAULT); /* until on_stopped closed every handle */
    uv_loop_close(&d.loop);
    edge_stop(&d.e, 0);          /* quiesced already: frees */
    accesslog_free(&access_log); /* after the server: its last lines are written */
    log_info("edge stopped", "%s", "");
    edge_args_free(a);
    return 0;
}
