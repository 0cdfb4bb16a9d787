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
    e->workers[idx] = w;
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
    /* Pending tier lookups (Redis) answer (503, the loop is stopping) before the fills go. */
    edge__tier_loop_fini(w);
    edge__worker_cancel_fills(w);
    /* Waiters of this loop woken by the cancellations answer now, before the loop ends. */
    edge__worker_wake(&w->wake);
    predict_loop_fini(&w->pl);
    http_client_free(&w->client);
    e->workers[w->idx] = NULL;
    uv_close((uv_handle_t *)&w->wake, worker_closed);
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
    };
    return predict_new(&pc, &e->predict, err, errlen);
}

/* The certificates of --tls-listen: flags checked, files loaded (each error names one). */
static int start_tls(struct edge *e, const struct edge_cfg *cfg, char *err, size_t errlen)
{
    struct http_tls_cert certs[HTTP_TLS_MAX_CERTS];
    struct http_tls_cfg tc = {0};

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
    tc.certs = certs;
    tc.ncerts = cfg->n_tls_certs;
    tc.ticket_secret_file = cfg->tls_ticket_secret;
    tc.ticket_period_ms = cfg->tls_ticket_period_ms;
    /* ALPN offers http/1.1 only: HTTP/2 is not served yet. */
    tc.h2 = 0;
    return http_tls_ctx_new(&tc, &e->tls, err, errlen);
}

/* A buffered request body is held in memory whole (per request): a bound on the setting. */
#define REQUEST_BUFFER_MAX (64u << 20)

/* Upstreams are tried in order: the parent edge (if any), then the origins. */
static int add_origin(struct edge *e, enum edge_level lv, const char *flag, const char *url,
                      size_t n, char *err, size_t errlen)
{
    if (e->cfg.norigins >= EDGE_MAX_ORIGINS) {
        snprintf(err, errlen, "--origin: at most %d origins", EDGE_MAX_ORIGINS);
        return -EINVAL;
    }
    while (n && url[n - 1] == '/')
        n--;
    if (n < 8 || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)) {
        snprintf(err, errlen, "--%s: '%.*s' is not an http:// or https:// URL", flag, (int)n, url);
        return -EINVAL;
    }
    e->origin_urls[e->cfg.norigins] = mc_xstrndup(url, n);
    e->cfg.origins[e->cfg.norigins] = e->origin_urls[e->cfg.norigins];
    e->upstream_level[e->cfg.norigins] = lv;
    e->cfg.norigins++;
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
    e->cfg.norigins = 0;
    if (cfg->parent && *cfg->parent) {
        rc = add_origin(e, EDGE_LV_PARENT, "parent", cfg->parent, strlen(cfg->parent), err, errlen);
        if (rc != 0)
            goto fail;
    }
    for (size_t i = 0; i < cfg->norigins; i++) {
        /* Each --origin may itself be a comma-separated list. */
        const char *p = cfg->origins[i];
        while (p && *p) {
            const char *comma = strchr(p, ',');
            size_t n = comma ? (size_t)(comma - p) : strlen(p);
            if (n && (rc = add_origin(e, EDGE_LV_ORIGIN, "origin", p, n, err, errlen)) != 0)
                goto fail;
            p = comma ? comma + 1 : NULL;
        }
    }
    if (e->cfg.norigins == 0 || e->upstream_level[e->cfg.norigins - 1] != EDGE_LV_ORIGIN) {
        snprintf(err, errlen, "--origin is required (one or more http:// URLs)");
        rc = -EINVAL;
        goto fail;
    }
    if (cfg->origin_ca && access(cfg->origin_ca, R_OK) != 0) {
        snprintf(err, errlen, "--origin-ca: %s: %s", cfg->origin_ca, strerror(errno));
        rc = -EINVAL;
        goto fail;
    }
    if (cfg->request_buffer > REQUEST_BUFFER_MAX) {
        snprintf(err, errlen, "--request-buffer: at most %uM (bodies are held in memory)",
                 REQUEST_BUFFER_MAX >> 20);
        rc = -EINVAL;
        goto fail;
    }
    if (cfg->mem < (1u << 20)) {
        snprintf(err, errlen, "--mem: at least 1M of memory cache is needed");
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
    if (e->cfg.config_file &&
        (rc = edge__routes_load(e->cfg.config_file, &e->routes, err, errlen)) != 0)
        goto fail;
    edge__busy_init(e);
    /* An unreported probe holds the half-open slot for at most as long as an attempt can
     * take to fail; then another request probes. */
    e->origins = edge__origins_new((const char *const *)e->origin_urls, e->cfg.norigins,
                                   cfg->breaker_failures, cfg->breaker_cooldown_ms,
                                   cfg->connect_timeout_ms +
                                       (cfg->first_byte_timeout_ms ? cfg->first_byte_timeout_ms
                                                                   : cfg->origin_timeout_ms) +
                                       1000);
    pthread_mutex_init(&e->cpu_mtx, NULL);
    edge__metrics_init(e);
    e->start_ms = units_now_ms();
    e->nworkers = e->cfg.threads;
    e->workers = mc_xcalloc(e->nworkers, sizeof(*e->workers));
    if (cfg->models_dir && (rc = start_predict(e, err, errlen)) != 0)
        goto fail;

    http_server_cfg_default(&sc);
    sc.threads = e->cfg.threads;
    sc.limits.max_body = cfg->max_body;
    sc.header_timeout_ms = cfg->header_timeout_ms;
    sc.body_timeout_ms = cfg->body_timeout_ms;
    sc.idle_timeout_ms = cfg->idle_timeout_ms;
    sc.send_timeout_ms = cfg->send_timeout_ms;
    sc.listeners[0] = (struct http_listener_cfg){cfg->listen, edge__public_handle, e, "public", 1};
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
    edge__metrics_server_ready(e);
    *out = e;
    return 0;
fail:
    http_tls_ctx_free(&e->tls);
    edge__req_fini(e);
    edge__origins_free(&e->origins);
    predict_free(&e->predict);
    edge__tier_close(e);
    edge__routes_free(&e->routes);
    l1_free(&e->l1);
    for (size_t i = 0; i < e->cfg.norigins; i++)
        free(e->origin_urls[i]);
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

void edge_stop(struct edge **ep, uint64_t grace_ms)
{
    struct edge *e = *ep;

    if (!e)
        return;
    atomic_store(&e->draining, 1);
    predict_set_draining(e->predict);
    http_server_stop(e->srv, grace_ms);
    http_server_free(&e->srv);
    http_tls_ctx_free(&e->tls); /* after the loops: no connection holds it */
    predict_free(&e->predict);  /* after the loops: none can queue work any more */
    edge__tier_close(e);
    edge__routes_free(&e->routes);
    edge__origins_free(&e->origins); /* after the loops: no fill reports any more */
    l1_free(&e->l1);
    edge__req_fini(e);
    for (size_t i = 0; i < e->cfg.norigins; i++)
        free(e->origin_urls[i]);
    free(e->workers);
    MC_FREE_OBJ(e);
    *ep = NULL;
}

/* ---- `mlcdn edge` ---- */

static uv_loop_t *main_loop;

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

static struct accesslog *access_log;

static void on_usr1(uv_signal_t *s, int signum)
{
    (void)s;
    (void)signum;
    accesslog_reopen_all(access_log);
}

static void on_signal(uv_signal_t *s, int signum)
{
    log_info("signal received, draining", "signal=%d", signum);
    sdnotify_stopping();
    uv_signal_stop(s);
    uv_stop(main_loop);
}

int edge_main(int argc, char **argv)
{
    struct edge_cfg cfg;
    struct conf c;
    struct conf_strlist origins = {0}, ignore = {0}, strip = {0}, keyh = {0}, methods = {0};
    struct conf_strlist tls_certs = {0}, tls_keys = {0}, tls_ocsp = {0};
    const char *log_level = "info";
    struct accesslog_opts lo = {0};
    long threads = 1, infer_threads = 2, max_batch = 64, max_delay_us = 200, l2_admit = 2;
    long brk_failures;
    uint64_t grace = 10000, sie = 0, neg_ms = 10000;
    const char *sie_str = NULL;
    char err[512];
    struct edge *e;

    edge_cfg_default(&cfg);
    brk_failures = (long)cfg.breaker_failures;
    const struct conf_opt opts[] = {
        {"listen", CONF_STR, &cfg.listen, "public address ADDR:PORT (default 127.0.0.1:8080)"},
        {"admin", CONF_STR, &cfg.admin, "admin address (default 127.0.0.1:0; \"\" disables)"},
        {"tls-listen", CONF_STR, &cfg.tls_listen, "HTTPS address ADDR:PORT (TLS 1.2/1.3)"},
        {"tls-cert", CONF_STRLIST, &tls_certs,
         "PEM certificate chain, repeatable (per name by SNI; the first is the default)"},
        {"tls-key", CONF_STRLIST, &tls_keys, "PEM private key, one per --tls-cert, same order"},
        {"tls-ocsp", CONF_STRLIST, &tls_ocsp, "DER OCSP response to staple, one per --tls-cert"},
        {"tls-ticket-secret", CONF_STR, &cfg.tls_ticket_secret,
         "file with >= 32 secret bytes: edges sharing it resume each other's sessions"},
        {"origin-ca", CONF_STR, &cfg.origin_ca,
         "CA bundle (PEM) for https:// origins (default: the system's)"},
        {"origin-insecure", CONF_BOOL, &cfg.origin_insecure,
         "do not verify https:// origins' certificates (tests only)"},
        {"tls-ticket-period", CONF_DURATION, &cfg.tls_ticket_period_ms,
         "session ticket key rotation period (default 1h; a ticket lives two)"},
        {"origin", CONF_STRLIST, &origins, "origin base URL(s), comma-separated or repeated"},
        {"region", CONF_STR, &cfg.region, "region name reported in X-Edge-Region and /health"},
        {"name", CONF_STR, &cfg.name, "this node's name in Via (default mlcdn-REGION-random)"},
        {"parent", CONF_STR, &cfg.parent,
         "parent edge URL: misses go there first, then to the origins"},
        {"mem", CONF_SIZE, &cfg.mem, "L1 memory budget (default 256M)"},
        {"policy", CONF_STR, &cfg.policy, "eviction policy (default: mlcdn's adaptive policy)"},
        {"mem-objective", CONF_STR, &cfg.mem_objective,
         "what L1's policy optimises: objects (hits, the default) or bytes"},
        {"disk-objective", CONF_STR, &cfg.disk_objective,
         "what L2's policy optimises: bytes (origin bandwidth, the default) or objects"},
        {"predict-objective", CONF_STR, &cfg.predict_objective,
         "what the prediction caches optimise: objects (the default) or bytes"},
        {"threads", CONF_INT, &threads, "worker threads (default 1)"},
        {"admin-token", CONF_STR, &cfg.admin_token, "bearer token for PURGE on the admin port"},
        {"connect-timeout", CONF_DURATION, &cfg.connect_timeout_ms, "origin connect timeout"},
        {"first-byte-timeout", CONF_DURATION, &cfg.first_byte_timeout_ms,
         "origin time to response headers"},
        {"origin-timeout", CONF_DURATION, &cfg.origin_timeout_ms, "origin whole-transfer timeout"},
        {"origin-breaker-failures", CONF_INT, &brk_failures,
         "connect failures or timeouts in a row that stop requests to an origin (default 5; "
         "0 = off)"},
        {"origin-breaker-cooldown", CONF_DURATION, &cfg.breaker_cooldown_ms,
         "time before an origin whose breaker opened is probed (default 10s)"},
        {"stale-if-error", CONF_STR, &sie_str, "default stale-if-error window (e.g. 60s)"},
        {"store-close-delimited", CONF_BOOL, &cfg.store_close_delimited,
         "store origin bodies with neither Content-Length nor chunked framing"},
        {"negative-ttl", CONF_DURATION, &neg_ms, "cache 404/410 without freshness this long"},
        {"max-body", CONF_SIZE, &cfg.max_body, "request body limit (413 above)"},
        {"request-buffer", CONF_SIZE, &cfg.request_buffer,
         "read request bodies up to this size before contacting the origin; larger ones "
         "stream (default 1M, 0 = always stream)"},
        {"header-timeout", CONF_DURATION, &cfg.header_timeout_ms, "request head timeout (408)"},
        {"body-timeout", CONF_DURATION, &cfg.body_timeout_ms, "request body timeout (408)"},
        {"idle-timeout", CONF_DURATION, &cfg.idle_timeout_ms, "keep-alive idle timeout"},
        {"send-timeout", CONF_DURATION, &cfg.send_timeout_ms,
         "close a client that takes no response bytes for this long"},
        {"ignore-param", CONF_STRLIST, &ignore, "query parameter left out of cache keys"},
        {"strip-header", CONF_STRLIST, &strip,
         "request header removed on arrival (replaces the default list; 'none': keep all)"},
        {"key-header", CONF_STRLIST, &keyh,
         "request header forwarded and added to every cache key (never stripped)"},
        {"extra-method", CONF_STRLIST, &methods,
         "non-standard method forwarded uncached (case-sensitive; '*': any); others get 501"},
        {"models", CONF_STR, &cfg.models_dir,
         "serve predictions from DIR/NAME/VERSION/model.onnx (docs/predict.md)"},
        {"infer-threads", CONF_INT, &infer_threads, "inference threads (default 2)"},
        {"predict-cache", CONF_SIZE, &cfg.predict_cache,
         "prediction cache per model unless config.json says (default 64M)"},
        {"max-batch", CONF_INT, &max_batch, "default max rows per inference batch (64)"},
        {"max-delay-us", CONF_INT, &max_delay_us,
         "default wait for a fuller batch, microseconds (200)"},
        {"models-poll", CONF_DURATION, &cfg.models_poll_ms,
         "poll the models directory for new versions (default 2s, 0 = off)"},
        {"model-memory", CONF_SIZE, &cfg.model_memory,
         "memory budget of each model: weights + one run at max_batch (default 1G)"},
        {"disk-dir", CONF_STR, &cfg.disk_dir, "L2 disk cache directory (survives restarts)"},
        {"disk", CONF_SIZE, &cfg.disk, "L2 disk budget (default 1G)"},
        {"disk-policy", CONF_STR, &cfg.disk_policy, "L2 eviction policy (default sieve)"},
        {"max-mem-object", CONF_SIZE, &cfg.max_mem_object,
         "larger responses skip L1 and stream through a file (default --mem/16)"},
        {"l2-admit-hits", CONF_INT, &l2_admit, "L2 hits before an object enters L1 (default 2)"},
        {"redis", CONF_STR, &cfg.redis, "shared tier redis://HOST:PORT[/DB]"},
        {"redis-max-object", CONF_SIZE, &cfg.redis_max_object,
         "largest body stored in Redis (default 1M)"},
        {"redis-timeout", CONF_DURATION, &cfg.redis_timeout_ms,
         "Redis deadline before the tier is skipped (default 50ms)"},
        {"grace", CONF_DURATION, &grace, "shutdown grace period (default 10s)"},
        {"log-level", CONF_STR, &log_level, "debug, info, warn, error"},
        {"access-log", CONF_STR, &lo.access_log,
         "one line per request to FILE, '-' (stdout) or 'syslog' (default: none)"},
        {"access-log-format", CONF_STR, &lo.format, "combined (default) or json"},
        {"error-log", CONF_STR, &lo.error_log, "log lines to FILE instead of stderr"},
    };

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            conf_usage("edge", "--origin URL [options]", opts, MC_ARRAY_SIZE(opts));
            return 0;
        }
    }
    if (conf_parse(&c, opts, MC_ARRAY_SIZE(opts), argc, argv, 0, err, sizeof(err)) != 0) {
        fprintf(stderr, "mlcdn edge: %s\n", err);
        conf_fini(&c);
        return 2;
    }
    if (log_level_set_name(log_level) != 0) {
        fprintf(stderr, "mlcdn edge: --log-level: '%s' is not debug, info, warn or error\n",
                log_level);
        conf_fini(&c);
        return 2;
    }
    if (threads < 1 || threads > 256) {
        fprintf(stderr, "mlcdn edge: --threads: %ld is out of range (1..256)\n", threads);
        conf_fini(&c);
        return 2;
    }
    if (sie_str) {
        if (units_parse_duration_ms(sie_str, &sie) != 0) {
            fprintf(stderr, "mlcdn edge: --stale-if-error: '%s' is not a duration\n", sie_str);
            conf_fini(&c);
            return 2;
        }
        cfg.stale_if_error_s = (int64_t)(sie / 1000);
    }
    if (l2_admit < 1 || l2_admit > 1000) {
        fprintf(stderr, "mlcdn edge: --l2-admit-hits: %ld is out of range (1..1000)\n", l2_admit);
        conf_fini(&c);
        return 2;
    }
    cfg.l2_admit_hits = (unsigned)l2_admit;
    if (brk_failures < 0 || brk_failures > 1000) {
        fprintf(stderr, "mlcdn edge: --origin-breaker-failures: %ld is out of range (0..1000)\n",
                brk_failures);
        conf_fini(&c);
        return 2;
    }
    cfg.breaker_failures = (unsigned)brk_failures;
    cfg.config_file = conf_file(&c);
    cfg.threads = (unsigned)threads;
    cfg.negative_ttl_s = (int64_t)(neg_ms / 1000);
    if (cfg.model_memory == 0) {
        fprintf(stderr, "mlcdn edge: --model-memory: must be more than 0\n");
        conf_fini(&c);
        return 2;
    }
    if (infer_threads < 1 || infer_threads > 256 || max_batch < 1 || max_batch > 65536 ||
        max_delay_us < 0 || max_delay_us > 10000000) {
        fprintf(stderr, "mlcdn edge: --infer-threads (1..256), --max-batch (1..65536) or "
                        "--max-delay-us (0..10000000) out of range\n");
        conf_fini(&c);
        return 2;
    }
    cfg.infer_threads = (unsigned)infer_threads;
    cfg.max_batch = (unsigned)max_batch;
    cfg.max_delay_us = (uint64_t)max_delay_us;
    for (size_t i = 0; i < origins.n && i < EDGE_MAX_ORIGINS; i++)
        cfg.origins[cfg.norigins++] = origins.v[i];
    cfg.ignore_params = ignore.v;
    cfg.n_ignore = ignore.n;
    cfg.strip_headers = strip.v;
    cfg.n_strip = strip.n;
    cfg.key_headers = keyh.v;
    cfg.n_key_headers = keyh.n;
    cfg.extra_methods = methods.v;
    cfg.n_extra_methods = methods.n;
    cfg.tls_certs = tls_certs.v;
    cfg.n_tls_certs = tls_certs.n;
    cfg.tls_keys = tls_keys.v;
    cfg.n_tls_keys = tls_keys.n;
    cfg.tls_ocsp = tls_ocsp.v;
    cfg.n_tls_ocsp = tls_ocsp.n;

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
    /* The main loop and its signal handlers come before the workers: once they accept,
     * clients may take every descriptor the loop and its signal pipe need, and a SIGTERM
     * right after the ready line must not be lost. */
    uv_loop_t loop;
    uv_signal_t sterm, sint, susr1;
    if (accesslog_setup(&lo, &access_log, err, sizeof(err)) != 0) {
        fprintf(stderr, "mlcdn edge: %s\n", err);
        conf_fini(&c);
        return 2;
    }
    cfg.access_log = access_log;
    if (uv_loop_init(&loop) != 0 || uv_signal_init(&loop, &sterm) != 0 ||
        uv_signal_init(&loop, &sint) != 0 || uv_signal_init(&loop, &susr1) != 0) {
        fprintf(stderr, "mlcdn edge: cannot set up the main loop (out of descriptors?)\n");
        accesslog_free(&access_log);
        conf_fini(&c);
        return 1;
    }
    main_loop = &loop;
    uv_signal_start(&sterm, on_signal, SIGTERM);
    uv_signal_start(&sint, on_signal, SIGINT);
    uv_signal_start(&susr1, on_usr1, SIGUSR1);
    if (edge_start(&cfg, &e, err, sizeof(err)) != 0) {
        fprintf(stderr, "mlcdn edge: %s\n", err);
        uv_close((uv_handle_t *)&sterm, NULL);
        uv_close((uv_handle_t *)&sint, NULL);
        uv_close((uv_handle_t *)&susr1, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        accesslog_free(&access_log);
        conf_fini(&c);
        return 1;
    }
    /* One ready line: tests and `mlcdn run` read the bound ports from it. */
    char host[128], ahost[128], admin_url[160] = "none";
    url_host(cfg.listen, host, sizeof(host));
    if (edge_admin_port(e) > 0) {
        url_host(cfg.admin, ahost, sizeof(ahost));
        snprintf(admin_url, sizeof(admin_url), "http://%s:%d", ahost, edge_admin_port(e));
    }
    char tls_url[160] = "none";
    if (edge_tls_port(e) > 0) {
        char thost[128];
        url_host(cfg.tls_listen, thost, sizeof(thost));
        snprintf(tls_url, sizeof(tls_url), "https://%s:%d", thost, edge_tls_port(e));
    }
    printf("edge listening on http://%s:%d admin=%s region=%s name=%s tls=%s\n", host, edge_port(e),
           admin_url, cfg.region, edge_name(e), tls_url);
    fflush(stdout);
    log_info("edge started", "listen=%s port=%d region=%s threads=%u mem=%llu origins=%zu",
             cfg.listen, edge_port(e), cfg.region, cfg.threads, (unsigned long long)cfg.mem,
             cfg.norigins);
    {
        char status[512];
        snprintf(status, sizeof(status), "serving on %s:%d, admin %s", host, edge_port(e),
                 admin_url);
        sdnotify_ready(status);
    }

    uv_run(&loop, UV_RUN_DEFAULT);
    edge_stop(&e, grace);
    uv_close((uv_handle_t *)&sterm, NULL);
    uv_close((uv_handle_t *)&sint, NULL);
    uv_close((uv_handle_t *)&susr1, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    accesslog_free(&access_log); /* after the server: its last lines are written */
    log_info("edge stopped", "%s", "");
    conf_fini(&c);
    return 0;
}
