/* src/router/router_main.c: `mlcdn router`: options, wiring, start and stop.
 *
 * Start order: options → zone → edges → geolocation files → metrics → main loop and its
 * SIGINT/SIGTERM handlers → DNS sockets (UDP threads + TCP on the main loop) → health checks (first round at once) → HTTP server →
 * "router ready" log line with the bound ports (tests read it). SIGINT/SIGTERM stop in
 * the reverse order; the main loop runs until every handle is closed. */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/accesslog.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/mc.h"
#include "core/sdnotify.h"
#include "core/metrics.h"
#include "http/http_server.h"
#include "router/router.h"
#include "router/router_int.h"

int router__edge_parse(const char *spec, struct router_edge_cfg *e, char *err, size_t errlen)
{
    char tmp[1024], *f[6], *save = NULL;
    size_t nf = 0;
    const char *eq = strchr(spec, '=');

    memset(e, 0, sizeof(*e));
    if (!eq || eq == spec || (size_t)(eq - spec) >= sizeof(e->name) ||
        strlen(eq + 1) >= sizeof(tmp)) {
        snprintf(err, errlen, "--edge '%s': expected NAME=LAT,LON,IP,HEALTH_URL[,CAPACITY]", spec);
        return -EINVAL;
    }
    memcpy(e->name, spec, (size_t)(eq - spec));
    snprintf(tmp, sizeof(tmp), "%s", eq + 1);
    /* IPv6 addresses contain no commas, and URLs rarely do; split on commas. */
    for (char *t = strtok_r(tmp, ",", &save); t && nf < 6; t = strtok_r(NULL, ",", &save))
        f[nf++] = t;
    if (nf < 4 || nf > 5)
        goto bad;
    char *end;
    e->lat = strtod(f[0], &end);
    if (*end || e->lat < -90 || e->lat > 90)
        goto bad;
    e->lon = strtod(f[1], &end);
    if (*end || e->lon < -180 || e->lon > 180)
        goto bad;
    const char *ip = f[2];
    char ipbuf[64];
    if (ip[0] == '[' && strlen(ip) < sizeof(ipbuf)) {
        snprintf(ipbuf, sizeof(ipbuf), "%s", ip + 1);
        char *rb = strchr(ipbuf, ']');
        if (rb)
            *rb = 0;
        ip = ipbuf;
    }
    if (inet_pton(AF_INET, ip, e->addr) == 1)
        e->family = 4;
    else if (inet_pton(AF_INET6, ip, e->addr) == 1)
        e->family = 6;
    else
        goto bad;
    snprintf(e->addr_text, sizeof(e->addr_text), "%s", ip);
    if (strncmp(f[3], "http://", 7) && strncmp(f[3], "https://", 8))
        goto bad;
    if (strlen(f[3]) >= sizeof(e->health_url))
        goto bad;
    snprintf(e->health_url, sizeof(e->health_url), "%s", f[3]);
    e->capacity = 1.0;
    if (nf == 5) {
        e->capacity = strtod(f[4], &end);
        if (*end || e->capacity <= 0)
            goto bad;
    }
    return 0;
bad:
    snprintf(err, errlen,
             "--edge '%s': expected NAME=LAT,LON,IP,HEALTH_URL[,CAPACITY] (lat -90..90, "
             "lon -180..180, IPv4 or IPv6, http(s) URL, capacity > 0)",
             spec);
    return -EINVAL;
}

static int parse_latlon(const char *s, double *lat, double *lon)
{
    char *end;
    *lat = strtod(s, &end);
    if (*end != ',' || *lat < -90 || *lat > 90)
        return -EINVAL;
    *lon = strtod(end + 1, &end);
    if (*end || *lon < -180 || *lon > 180)
        return -EINVAL;
    return 0;
}

/* What the flags and the file say: one per (re)load; the strings live in c. */
struct router_args {
    struct conf c;
    const char *dns, *http, *zone, *deflt, *log_level;
    const char *admin, *admin_token, *edge_token;
    long inval_log, fanout_retries;
    uint64_t fanout_timeout_ms;
    struct conf_strlist geoip, edges, names, statics, countries;
    uint64_t ttl_ms, zone_ttl_ms, neg_ttl_ms, interval_ms, timeout_ms;
    long rise, fall, udp_threads, http_threads, edns_size, redirect_port, udp_coalesce_us;
    double w_dist, w_load, w_hit, hysteresis;
    struct accesslog_opts logo;
};

#define ROUTER_NOPTS 40

/* The options of `mlcdn router`, bound to a's fields. CONF_RELOAD marks what SIGHUP
 * applies: the edges, weights, geolocation files and default location (a new set),
 * health-check settings and the log level; the rest needs a restart. */
static size_t router_opts(struct router_args *a, struct conf_opt *out)
{
    const struct conf_opt opts[] = {
        {"dns", CONF_STR, &a->dns, "DNS listen address, UDP and TCP (default 127.0.0.1:5353)"},
        {"http", CONF_STR, &a->http, "HTTP API listen address (/route, /edges, /r/, /metrics)"},
        {"zone", CONF_STR, &a->zone, "the CDN name the router is authoritative for"},
        {"geoip", CONF_STRLIST, &a->geoip, "mmdb file (GeoIP2 City or flat ip-location-db; repeat)",
         CONF_RELOAD},
        {"edge", CONF_STRLIST, &a->edges, "NAME=LAT,LON,IP,HEALTH_URL[,CAPACITY] (repeat)",
         CONF_RELOAD},
        {"name", CONF_STRLIST, &a->names, "name under the zone answered with the best edge"},
        {"static", CONF_STRLIST, &a->statics, "NAME=IP: fixed record under the zone (repeat)"},
        {"ttl", CONF_DURATION, &a->ttl_ms, "TTL of edge answers (default 20s)"},
        {"zone-ttl", CONF_DURATION, &a->zone_ttl_ms, "TTL of SOA, NS, static records (1h)"},
        {"negative-ttl", CONF_DURATION, &a->neg_ttl_ms, "TTL for NXDOMAIN/NODATA (20s)"},
        {"w-distance", CONF_DOUBLE, &a->w_dist, "weight of the distance score (0.5)", CONF_RELOAD},
        {"w-load", CONF_DOUBLE, &a->w_load, "weight of 1 - load (0.3)", CONF_RELOAD},
        {"w-hit", CONF_DOUBLE, &a->w_hit, "weight of the hit ratio (0.2)", CONF_RELOAD},
        {"hysteresis", CONF_DOUBLE, &a->hysteresis,
         "least change of load/hit ratio that moves answers; capacity band (0.05)", CONF_RELOAD},
        {"health-interval", CONF_DURATION, &a->interval_ms, "time between checks (1s)",
         CONF_RELOAD},
        {"health-timeout", CONF_DURATION, &a->timeout_ms, "a slower answer is a failure (500ms)",
         CONF_RELOAD},
        {"health-rise", CONF_INT, &a->rise, "good checks to come back (2)", CONF_RELOAD},
        {"health-fall", CONF_INT, &a->fall, "bad checks to go down (2)", CONF_RELOAD},
        {"default-location", CONF_STR, &a->deflt,
         "LAT,LON for addresses without a location (default: distance ignored)", CONF_RELOAD},
        {"country-location", CONF_STRLIST, &a->countries, "CC=LAT,LON: country location override"},
        {"udp-threads", CONF_INT, &a->udp_threads, "DNS UDP threads (1)"},
        {"udp-coalesce-us", CONF_INT, &a->udp_coalesce_us,
         "pause after a small UDP batch, trading latency for CPU (0 = off)"},
        {"http-threads", CONF_INT, &a->http_threads, "HTTP worker threads (1)"},
        {"edns-size", CONF_INT, &a->edns_size, "largest UDP answer / advertised EDNS size (1232)"},
        {"redirect-port", CONF_INT, &a->redirect_port, "edge HTTP port in /r/ redirects (80)"},
        {"admin", CONF_STR, &a->admin,
         "admin listen address: POST /admin/invalidate to every edge, GET /admin/invalidations"},
        {"admin-token", CONF_STR, &a->admin_token,
         "bearer token the admin listener requires (without it the admin API answers 403)"},
        {"edge-token", CONF_STR, &a->edge_token,
         "bearer token sent to the edges' admin API (default: --admin-token)"},
        {"invalidation-log", CONF_INT, &a->inval_log,
         "invalidations kept for GET /admin/invalidations (100)"},
        {"fanout-timeout", CONF_DURATION, &a->fanout_timeout_ms,
         "time an edge has to answer one attempt of a fan-out (2s)"},
        {"fanout-retries", CONF_INT, &a->fanout_retries,
         "more attempts per edge after no answer or a 5xx (2)"},
        {"log-level", CONF_STR, &a->log_level, "debug, info, warn, error", CONF_RELOAD},
        {"access-log", CONF_STR, &a->logo.access_log,
         "one line per HTTP request to FILE, '-' (stdout) or 'syslog' (default: none)"},
        {"access-log-format", CONF_STR, &a->logo.format, "combined (default) or json"},
        {"error-log", CONF_STR, &a->logo.error_log, "log lines to FILE instead of stderr"},
    };
    MC_ASSERT(MC_ARRAY_SIZE(opts) <= ROUTER_NOPTS);
    memcpy(out, opts, sizeof(opts));
    return MC_ARRAY_SIZE(opts);
}

/* Defaults, the file, the flags. 0, or -EINVAL with err naming the flag or file and line;
 * conf_fini(&a->c) is the caller's in both cases. */
static int router_args_parse(struct router_args *a, int argc, char **argv, char *err, size_t errlen)
{
    struct conf_opt opts[ROUTER_NOPTS];
    size_t n;

    memset(a, 0, sizeof(*a));
    a->dns = "127.0.0.1:5353";
    a->log_level = "info";
    a->ttl_ms = 20000;
    a->zone_ttl_ms = 3600000;
    a->neg_ttl_ms = 20000;
    a->interval_ms = 1000;
    a->timeout_ms = 500;
    a->rise = a->fall = 2;
    a->udp_threads = a->http_threads = 1;
    a->edns_size = 1232;
    a->redirect_port = 80;
    a->w_dist = 0.5;
    a->w_load = 0.3;
    a->w_hit = 0.2;
    a->hysteresis = 0.05;
    a->inval_log = 100;
    a->fanout_timeout_ms = 2000;
    a->fanout_retries = 2;
    n = router_opts(a, opts);
    if (conf_parse(&a->c, opts, n, argc, argv, 0, err, errlen) < 0 ||
        conf_check_keys(&a->c, opts, n, NULL, 0, err, errlen) < 0)
        return -EINVAL;
    if (log_level_parse(a->log_level) < 0) {
        snprintf(err, errlen, "--log-level '%s' unknown", a->log_level);
        conf_locate(&a->c, (const char *const *)argv, argc, err, errlen);
        return -EINVAL;
    }
    return 0;
}

/* The checks and the health settings of a (start or reload). */
static int health_cfg(const struct router_args *a, struct router_health_cfg *hc, char *err,
                      size_t errlen)
{
    if (a->interval_ms == 0 || a->timeout_ms == 0 || a->rise < 1 || a->fall < 1) {
        snprintf(err, errlen, "--health-interval/timeout must be > 0 and rise/fall >= 1");
        return -EINVAL;
    }
    if (a->hysteresis < 0 || a->hysteresis >= 1) {
        snprintf(err, errlen, "--hysteresis must be in [0, 1)");
        return -EINVAL;
    }
    *hc = (struct router_health_cfg){a->interval_ms, a->timeout_ms, a->rise, a->fall,
                                     a->hysteresis};
    return 0;
}

struct router_set *router__set_ref(struct router_set *s)
{
    MC_CHECK_OBJ_NOTNULL(s, ROUTER_SET_MAGIC);
    atomic_fetch_add(&s->refcnt, 1);
    return s;
}

void router__set_unref(struct router_set **sp)
{
    struct router_set *s = *sp;
    *sp = NULL;
    if (!s)
        return;
    MC_CHECK_OBJ_NOTNULL(s, ROUTER_SET_MAGIC);
    if (atomic_fetch_sub(&s->refcnt, 1) != 1)
        return;
    router_geo_free(&s->geo);
    MC_FREE_OBJ(s);
}

/* Builds the set of a: edges (checked), weights, default location, and the geolocation
 * files opened. 0 with one reference in *out, or -EINVAL with err naming the flag (or the
 * file that cannot be opened). */
static int set_new(const struct router_args *a, struct router_set **out, char *err, size_t errlen)
{
    struct router_set *s = mc_xcalloc(1, sizeof(*s));
    char e2[400];

    MC_INIT_OBJ(s, ROUTER_SET_MAGIC);
    atomic_init(&s->refcnt, 1);
#define BAD(...)                                                                                   \
    do {                                                                                           \
        snprintf(err, errlen, __VA_ARGS__);                                                        \
        goto fail;                                                                                 \
    } while (0)
    if (a->edges.n == 0)
        BAD("at least one --edge is required");
    if (a->edges.n > ROUTER_MAX_EDGES)
        BAD("at most %d edges", ROUTER_MAX_EDGES);
    for (size_t i = 0; i < a->edges.n; i++) {
        if (router__edge_parse(a->edges.v[i], &s->edges[i], e2, sizeof(e2)) < 0)
            BAD("%s", e2);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(s->edges[j].name, s->edges[i].name))
                BAD("--edge name '%s' given twice", s->edges[i].name);
    }
    s->nedges = a->edges.n;
    if (a->w_dist < 0 || a->w_load < 0 || a->w_hit < 0 || a->w_dist + a->w_load + a->w_hit <= 0)
        BAD("--w-distance, --w-load, --w-hit: weights must be >= 0 and not all 0");
    s->weights = (struct router_weights){a->w_dist, a->w_load, a->w_hit};
    if (a->deflt) {
        if (parse_latlon(a->deflt, &s->default_lat, &s->default_lon) < 0)
            BAD("--default-location '%s': expected LAT,LON", a->deflt);
        s->have_default = 1;
    }
    if (a->geoip.n == 0)
        BAD("--geoip FILE.mmdb is required (see docs/router.md for sources)");
    if (router_geo_open(a->geoip.v, a->geoip.n, &s->geo, e2, sizeof(e2)) < 0)
        BAD("--geoip %s", e2);
#undef BAD
    for (size_t i = 0; i < s->nedges; i++) {
        char labels[200];
        snprintf(labels, sizeof(labels), "edge=\"%s\"", s->edges[i].name);
        s->m_answers[i] = metrics_counter("mlcdn_router_answers_total",
                                          "DNS answers by chosen edge", labels);
    }
    *out = s;
    return 0;
fail:
    router__set_unref(&s);
    return -EINVAL;
}

/* The process around the router: its main loop and signals.
 *   SIGHUP        reload the configuration (reload())
 *   SIGUSR1       reopen the access and error log files (logrotate)
 *   SIGTERM/INT   stop: the DNS sockets close, HTTP requests in flight get 1 s
 * The router has no drain of its own: DNS clients retry another server, and it is the
 * edges that drain (the router steers around them). */
static uv_signal_t sigs[4];
static size_t nsigs;
static struct http_server *http_srv;
static struct accesslog *access_log;
static struct router_args *start_args;
static int main_argc;
static char **main_argv;

static void close_signals(void)
{
    for (size_t i = 0; i < nsigs; i++)
        if (!uv_is_closing((uv_handle_t *)&sigs[i]))
            uv_close((uv_handle_t *)&sigs[i], NULL);
}

static void router_args_free(struct router_args *a)
{
    conf_fini(&a->c);
    free(a);
}

/* SIGHUP: the same flags and the file, parsed again. A file that does not parse or check
 * (or an mmdb that does not open) is refused whole, named in the log, and the running
 * configuration stays. Otherwise settings that need a restart keep their running value
 * (named in one log line) and a new set of edges, weights and databases is swapped in: the
 * edges it keeps keep their health state. */
static void reload(struct router *r)
{
    struct router_args *na = mc_xmalloc(sizeof(*na));
    struct conf_opt oldo[ROUTER_NOPTS], newo[ROUTER_NOPTS];
    struct router_health_cfg hc;
    struct router_set *ns = NULL, *old;
    char err[512], kept[512];

    sdnotify_reloading();
    if (router_args_parse(na, main_argc, main_argv, err, sizeof(err)) < 0)
        goto refused;
    size_t n = router_opts(start_args, oldo);
    router_opts(na, newo);
    if (conf_keep_restart_only(oldo, newo, n, kept, sizeof(kept)))
        log_warn("config: settings need a restart; running values kept", "file=%s settings=%s",
                 conf_file(&na->c) ? conf_file(&na->c) : "-", kept);
    if (health_cfg(na, &hc, err, sizeof(err)) < 0 || set_new(na, &ns, err, sizeof(err)) < 0) {
        conf_locate(&na->c, (const char *const *)main_argv, main_argc, err, sizeof(err));
        goto refused;
    }
    pthread_mutex_lock(&r->mtx);
    r->hc = hc;
    router__health_swap(r, ns);
    pthread_mutex_lock(&r->set_mtx);
    old = r->set;
    r->set = ns;
    atomic_fetch_add_explicit(&r->set_gen, 1, memory_order_release);
    pthread_mutex_unlock(&r->set_mtx);
    pthread_mutex_unlock(&r->mtx);
    router__set_unref(&old);
    log_level_set_name(na->log_level);
    for (unsigned i = 0; i < router_geo_count(r->set->geo); i++)
        log_info("geoip database", "file=\"%s\"", router_geo_describe(r->set->geo, i));
    conf_reload_count(1);
    log_info("config reloaded", "file=%s edges=%zu", conf_file(&na->c) ? conf_file(&na->c) : "-",
             r->set->nedges);
    router_args_free(na);
    sdnotify_ready("configuration reloaded");
    return;
refused:
    conf_reload_count(0);
    log_error("config reload refused; the running configuration stays", "error=\"%s\"", err);
    router_args_free(na);
    sdnotify_ready("configuration reload refused; the previous one runs");
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct router *r = s->data;
    if (signum == SIGUSR1) {
        accesslog_reopen_all(access_log);
        return;
    }
    if (signum == SIGHUP) {
        if (!atomic_load(&r->stopping))
            reload(r);
        return;
    }
    log_info("router stopping", "signal=%d", signum);
    sdnotify_stopping();
    if (http_srv)
        http_server_stop(http_srv, 1000);
    router__dns_stop(r);
    router__health_stop(r);
    close_signals();
}

/* Signal handles on the main loop, one per signal the router answers. */
static int signals_init(struct router *r)
{
    static const int signals[] = {SIGHUP, SIGTERM, SIGINT, SIGUSR1};
    for (size_t i = 0; i < MC_ARRAY_SIZE(signals); i++) {
        if (uv_signal_init(r->loop, &sigs[i]) != 0)
            return -EMFILE;
        nsigs++;
        sigs[i].data = r;
        uv_signal_start(&sigs[i], on_signal, signals[i]);
    }
    return 0;
}

static void register_metrics(struct router *r)
{
    static const char *const rc_names[6] = {"NOERROR",  "FORMERR", "SERVFAIL",
                                            "NXDOMAIN", "NOTIMP",  "REFUSED"};
    char labels[200];
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < 6; i++) {
            snprintf(labels, sizeof(labels), "transport=\"%s\",rcode=\"%s\"", t ? "tcp" : "udp",
                     rc_names[i]);
            r->m_rcode[t][i] = metrics_counter("mlcdn_router_dns_queries_total",
                                               "DNS queries answered, by rcode", labels);
        }
    r->m_badvers = metrics_counter("mlcdn_router_dns_queries_total",
                                   "DNS queries answered, by rcode",
                                   "transport=\"any\",rcode=\"BADVERS\"");
    r->m_dropped = metrics_counter("mlcdn_router_dns_dropped_total",
                                   "DNS packets dropped unanswered (too short, or responses)", "");
    r->m_truncated = metrics_counter("mlcdn_router_dns_truncated_total",
                                     "UDP answers truncated (TC) to the client's size", "");
    r->m_ecs = metrics_counter("mlcdn_router_dns_ecs_queries_total",
                               "DNS queries carrying EDNS Client Subnet", "");
    r->m_tcp_paused = metrics_counter("mlcdn_router_dns_tcp_accept_paused_total",
                                      "DNS TCP accepting paused for want of descriptors", "");
    r->m_tcp_idle_closed = metrics_counter("mlcdn_router_dns_tcp_idle_closed_total",
                                           "Idle DNS TCP connections closed to make room", "");
    r->m_latency = metrics_hist("mlcdn_router_dns_latency_seconds",
                                "Time to answer one DNS query inside the router", "", 1e6, 1,
                                1 << 20);
    r->m_route_req = metrics_counter("mlcdn_router_http_route_requests_total",
                                     "GET /route requests", "");
    r->m_redirects = metrics_counter("mlcdn_router_http_redirects_total",
                                     "302 redirects to an edge", "");
}

int router_main(int argc, char **argv)
{
    struct router_args *a;
    char err[512], msg[1024];
    int rc = 1;
    struct router *r = NULL;
    uv_loop_t loop;

    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            struct router_args tmp;
            struct conf_opt opts[ROUTER_NOPTS];
            memset(&tmp, 0, sizeof(tmp));
            conf_usage("router",
                       "--zone NAME --geoip FILE.mmdb --edge NAME=LAT,LON,IP,HEALTH_URL ... "
                       "[--dns ADDR:PORT] [--http ADDR:PORT] [--config FILE]",
                       opts, router_opts(&tmp, opts));
            return 0;
        }
    a = mc_xmalloc(sizeof(*a));
    if (router_args_parse(a, argc, argv, err, sizeof(err)) < 0) {
        fprintf(stderr, "mlcdn router: %s\n", err);
        router_args_free(a);
        return 2;
    }
    log_level_set_name(a->log_level);
    if (accesslog_setup(&a->logo, &access_log, err, sizeof(err)) != 0) {
        fprintf(stderr, "mlcdn router: %s\n", err);
        router_args_free(a);
        return 2;
    }
    start_args = a;
    main_argc = argc;
    main_argv = argv;
    r = mc_xcalloc(1, sizeof(*r));
    MC_INIT_OBJ(r, ROUTER_MAGIC);
    pthread_mutex_init(&r->mtx, NULL);
    pthread_mutex_init(&r->set_mtx, NULL);
#define FAIL(...)                                                                                  \
    do {                                                                                           \
        snprintf(msg, sizeof(msg), __VA_ARGS__);                                                   \
        conf_locate(&a->c, (const char *const *)argv, argc, msg, sizeof(msg));                     \
        fprintf(stderr, "mlcdn router: %s\n", msg);                                                \
        goto out;                                                                                  \
    } while (0)
    if (!a->zone)
        FAIL("--zone is required");
    if (router_zone_init(&r->zone, a->zone) < 0)
        FAIL("--zone '%s' is not a domain name", a->zone);
    r->zone.ttl = (uint32_t)(a->ttl_ms / 1000);
    r->zone.zone_ttl = (uint32_t)(a->zone_ttl_ms / 1000);
    r->zone.neg_ttl = (uint32_t)(a->neg_ttl_ms / 1000);
    r->zone.serial = (uint32_t)time(NULL);
    if (a->edns_size < 512 || a->edns_size > 4096)
        FAIL("--edns-size must be between 512 and 4096");
    r->zone.edns_size = (uint16_t)a->edns_size;
    r->edns_max = (size_t)a->edns_size;
    for (size_t i = 0; i < a->names.n; i++)
        if (router_zone_add(&r->zone, a->names.v[i], RZ_GEO, NULL) < 0)
            FAIL("--name '%s': not a name under %s (or too many names)", a->names.v[i], a->zone);
    for (size_t i = 0; i < a->statics.n; i++) {
        char nm[300];
        const char *eq = strchr(a->statics.v[i], '=');
        if (!eq || (size_t)(eq - a->statics.v[i]) >= sizeof(nm))
            FAIL("--static '%s': expected NAME=IP", a->statics.v[i]);
        memcpy(nm, a->statics.v[i], (size_t)(eq - a->statics.v[i]));
        nm[eq - a->statics.v[i]] = 0;
        if (router_zone_add(&r->zone, nm, RZ_STATIC, eq + 1) < 0)
            FAIL("--static '%s': expected NAME=IP with NAME under %s", a->statics.v[i], a->zone);
    }
    if (health_cfg(a, &r->hc, err, sizeof(err)) < 0)
        FAIL("%s", err);
    r->redirect_port = a->redirect_port;
    if (a->udp_coalesce_us < 0 || a->udp_coalesce_us > 10000)
        FAIL("--udp-coalesce-us must be between 0 and 10000");
    r->udp_coalesce_us = a->udp_coalesce_us;
    for (size_t i = 0; i < a->countries.n; i++) {
        double la, lo;
        const char *eq = strchr(a->countries.v[i], '=');
        char cc[3] = "";
        if (eq && eq - a->countries.v[i] == 2)
            memcpy(cc, a->countries.v[i], 2);
        if (!eq || !cc[0] || parse_latlon(eq + 1, &la, &lo) < 0 ||
            router_geo_country_set(cc, la, lo) < 0)
            FAIL("--country-location '%s': expected CC=LAT,LON", a->countries.v[i]);
    }
    if (a->inval_log < 1 || a->inval_log > 100000)
        FAIL("--invalidation-log must be between 1 and 100000");
    if (a->fanout_retries < 0 || a->fanout_retries > 10)
        FAIL("--fanout-retries must be between 0 and 10");
    if (a->fanout_timeout_ms == 0)
        FAIL("--fanout-timeout must be more than 0");
    if (a->admin_token && !*a->admin_token)
        FAIL("--admin-token must not be empty");
    if (set_new(a, &r->set, err, sizeof(err)) < 0)
        FAIL("%s", err);
    router__admin_init(r,
                       &(struct router_admin_cfg){a->admin_token, a->edge_token,
                                                  (size_t)a->inval_log, (long)a->fanout_timeout_ms,
                                                  (int)a->fanout_retries});
    atomic_init(&r->set_gen, 1);
    for (unsigned i = 0; i < router_geo_count(r->set->geo); i++)
        log_info("geoip database", "file=\"%s\"", router_geo_describe(r->set->geo, i));
    register_metrics(r);
    conf_reload_metrics_init();

    signal(SIGPIPE, SIG_IGN);
    /* The loop and its signal handlers come before any listener: once the HTTP workers
     * and the DNS listener accept, clients may take every descriptor the loop and its
     * signal pipe need, and a SIGTERM right after the ready line must not be lost. */
    if (uv_loop_init(&loop) != 0)
        FAIL("cannot set up the main loop (out of descriptors?)");
    r->loop = &loop;
    if (signals_init(r) != 0) {
        close_signals();
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        FAIL("cannot set up the signal handlers (out of descriptors?)");
    }
    if (router__dns_start(r, a->dns, (unsigned)a->udp_threads, err, sizeof(err)) < 0) {
        close_signals();
        uv_run(&loop, UV_RUN_NOWAIT);
        uv_loop_close(&loop);
        FAIL("--dns %s", err);
    }
    if (router__health_start(r, err, sizeof(err)) < 0) {
        close_signals();
        router__dns_stop(r);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        router__dns_free_cache();
        FAIL("%s", err);
    }
    int http_port = 0, admin_port = 0;
    if (a->http) {
        struct http_server_cfg hc;
        http_server_cfg_default(&hc);
        hc.threads = (unsigned)(a->http_threads > 0 ? a->http_threads : 1);
        hc.listeners[0] = (struct http_listener_cfg){a->http, router__http_handle, r, "api"};
        hc.nlisteners = 1;
        if (a->admin)
            hc.listeners[hc.nlisteners++] =
                (struct http_listener_cfg){a->admin, router__admin_handle, r, "admin"};
        hc.loop_init = router__http_loop_init;
        hc.loop_fini = router__http_loop_fini;
        hc.loop_arg = r;
        hc.access_log = access_log;
        if (http_server_start(&hc, &http_srv, err, sizeof(err)) < 0) {
            close_signals();
            router__dns_stop(r);
            router__health_stop(r);
            uv_run(&loop, UV_RUN_DEFAULT);
            uv_loop_close(&loop);
            router__dns_free_cache();
            FAIL("--http %s", err);
        }
        http_port = http_server_port(http_srv, 0);
        if (a->admin)
            admin_port = http_server_port(http_srv, 1);
    } else if (a->admin) {
        close_signals();
        router__dns_stop(r);
        router__health_stop(r);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        router__dns_free_cache();
        FAIL("--admin needs --http (they share the HTTP workers)");
    }
    char host[64] = "";
    if (r->dns_addr.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&r->dns_addr)->sin_addr, host, sizeof(host));
    else
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&r->dns_addr)->sin6_addr, host, sizeof(host));
    log_info("router ready",
             "zone=%s dns=%s dns_port=%d http_port=%d admin_port=%d edges=%zu udp_threads=%u",
             a->zone, host, r->dns_port, http_port, admin_port, r->set->nedges, r->nudp);
    {
        char status[160];
        snprintf(status, sizeof(status), "zone %s: DNS on %s port %d, HTTP port %d", a->zone, host,
                 r->dns_port, http_port);
        sdnotify_ready(status);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (http_srv)
        http_server_free(&http_srv);
    uv_loop_close(&loop);
    router__dns_free_cache();
    rc = 0;
out:
#undef FAIL
    if (r) {
        router__admin_fini(r);
        router__dash_free(r);
        router__set_unref(&r->set);
        pthread_mutex_destroy(&r->set_mtx);
        pthread_mutex_destroy(&r->mtx);
        MC_FREE_OBJ(r);
    }
    accesslog_free(&access_log); /* after the HTTP server: its last lines are written */
    router_args_free(a);
    return rc;
}
