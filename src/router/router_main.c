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

static uv_signal_t sig_int, sig_term, sig_usr1;
static struct http_server *http_srv;
static struct accesslog *access_log;

/* Closes the signal handles that were initialized (a zeroed handle has no type). */
static void close_signals(void)
{
    if (sig_int.type == UV_SIGNAL && !uv_is_closing((uv_handle_t *)&sig_int))
        uv_close((uv_handle_t *)&sig_int, NULL);
    if (sig_term.type == UV_SIGNAL && !uv_is_closing((uv_handle_t *)&sig_term))
        uv_close((uv_handle_t *)&sig_term, NULL);
    if (sig_usr1.type == UV_SIGNAL && !uv_is_closing((uv_handle_t *)&sig_usr1))
        uv_close((uv_handle_t *)&sig_usr1, NULL);
}

static void on_usr1(uv_signal_t *s, int signum)
{
    (void)s;
    (void)signum;
    accesslog_reopen_all(access_log);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct router *r = s->data;
    log_info("router stopping", "signal=%d", signum);
    sdnotify_stopping();
    if (http_srv)
        http_server_stop(http_srv, 1000);
    router__dns_stop(r);
    router__health_stop(r);
    close_signals();
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
    for (size_t i = 0; i < r->nedges; i++) {
        snprintf(labels, sizeof(labels), "edge=\"%s\"", r->edges[i].name);
        r->m_answers[i] = metrics_counter("mlcdn_router_answers_total",
                                          "DNS answers by chosen edge", labels);
    }
}

int router_main(int argc, char **argv)
{
    const char *dns = "127.0.0.1:5353", *http = NULL, *zone = NULL, *deflt = NULL;
    const char *log_level = "info";
    struct accesslog_opts logo = {0};
    struct conf_strlist geoip = {0}, edges = {0}, names = {0}, statics = {0}, countries = {0};
    uint64_t ttl_ms = 20000, zone_ttl_ms = 3600000, neg_ttl_ms = 20000;
    uint64_t interval_ms = 1000, timeout_ms = 500;
    long rise = 2, fall = 2, udp_threads = 1, http_threads = 1, edns_size = 1232;
    long redirect_port = 80, udp_coalesce_us = 0;
    double w_dist = 0.5, w_load = 0.3, w_hit = 0.2, hysteresis = 0.05;
    const struct conf_opt opts[] = {
        {"dns", CONF_STR, &dns, "DNS listen address, UDP and TCP (default 127.0.0.1:5353)"},
        {"http", CONF_STR, &http, "HTTP API listen address (/route, /edges, /r/, /metrics)"},
        {"zone", CONF_STR, &zone, "the CDN name the router is authoritative for"},
        {"geoip", CONF_STRLIST, &geoip, "mmdb file (GeoIP2 City or flat ip-location-db; repeat)"},
        {"edge", CONF_STRLIST, &edges, "NAME=LAT,LON,IP,HEALTH_URL[,CAPACITY] (repeat)"},
        {"name", CONF_STRLIST, &names, "name under the zone answered with the best edge"},
        {"static", CONF_STRLIST, &statics, "NAME=IP: fixed record under the zone (repeat)"},
        {"ttl", CONF_DURATION, &ttl_ms, "TTL of edge answers (default 20s)"},
        {"zone-ttl", CONF_DURATION, &zone_ttl_ms, "TTL of SOA, NS, static records (1h)"},
        {"negative-ttl", CONF_DURATION, &neg_ttl_ms, "TTL for NXDOMAIN/NODATA (20s)"},
        {"w-distance", CONF_DOUBLE, &w_dist, "weight of the distance score (0.5)"},
        {"w-load", CONF_DOUBLE, &w_load, "weight of 1 - load (0.3)"},
        {"w-hit", CONF_DOUBLE, &w_hit, "weight of the hit ratio (0.2)"},
        {"hysteresis", CONF_DOUBLE, &hysteresis,
         "least change of load/hit ratio that moves answers; capacity band (0.05)"},
        {"health-interval", CONF_DURATION, &interval_ms, "time between checks (1s)"},
        {"health-timeout", CONF_DURATION, &timeout_ms, "a slower answer is a failure (500ms)"},
        {"health-rise", CONF_INT, &rise, "good checks to come back (2)"},
        {"health-fall", CONF_INT, &fall, "bad checks to go down (2)"},
        {"default-location", CONF_STR, &deflt,
         "LAT,LON for addresses without a location (default: distance ignored)"},
        {"country-location", CONF_STRLIST, &countries, "CC=LAT,LON: country location override"},
        {"udp-threads", CONF_INT, &udp_threads, "DNS UDP threads (1)"},
        {"udp-coalesce-us", CONF_INT, &udp_coalesce_us,
         "pause after a small UDP batch, trading latency for CPU (0 = off)"},
        {"http-threads", CONF_INT, &http_threads, "HTTP worker threads (1)"},
        {"edns-size", CONF_INT, &edns_size, "largest UDP answer / advertised EDNS size (1232)"},
        {"redirect-port", CONF_INT, &redirect_port, "edge HTTP port in /r/ redirects (80)"},
        {"log-level", CONF_STR, &log_level, "debug, info, warn, error"},
        {"access-log", CONF_STR, &logo.access_log,
         "one line per HTTP request to FILE, '-' (stdout) or 'syslog' (default: none)"},
        {"access-log-format", CONF_STR, &logo.format, "combined (default) or json"},
        {"error-log", CONF_STR, &logo.error_log, "log lines to FILE instead of stderr"},
    };
    struct conf c = {0};
    char err[512];
    int rc = 1;
    struct router *r = NULL;
    uv_loop_t loop;

    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            conf_usage("router",
                       "--zone NAME --geoip FILE.mmdb --edge NAME=LAT,LON,IP,HEALTH_URL ... "
                       "[--dns ADDR:PORT] [--http ADDR:PORT] [--config FILE]",
                       opts, MC_ARRAY_SIZE(opts));
            return 0;
        }
    if (conf_parse(&c, opts, MC_ARRAY_SIZE(opts), argc, argv, 0, err, sizeof(err)) < 0) {
        fprintf(stderr, "mlcdn router: %s\n", err);
        conf_fini(&c);
        return 2;
    }
    if (log_level_set_name(log_level) < 0) {
        fprintf(stderr, "mlcdn router: --log-level '%s' unknown\n", log_level);
        goto out_conf;
    }
    if (accesslog_setup(&logo, &access_log, err, sizeof(err)) != 0) {
        fprintf(stderr, "mlcdn router: %s\n", err);
        rc = 2;
        goto out_conf;
    }
    r = mc_xcalloc(1, sizeof(*r));
    MC_INIT_OBJ(r, ROUTER_MAGIC);
    pthread_mutex_init(&r->mtx, NULL);
#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "mlcdn router: " __VA_ARGS__);                                             \
        fputc('\n', stderr);                                                                       \
        goto out;                                                                                  \
    } while (0)
    if (!zone)
        FAIL("--zone is required");
    if (router_zone_init(&r->zone, zone) < 0)
        FAIL("--zone '%s' is not a domain name", zone);
    r->zone.ttl = (uint32_t)(ttl_ms / 1000);
    r->zone.zone_ttl = (uint32_t)(zone_ttl_ms / 1000);
    r->zone.neg_ttl = (uint32_t)(neg_ttl_ms / 1000);
    r->zone.serial = (uint32_t)time(NULL);
    if (edns_size < 512 || edns_size > 4096)
        FAIL("--edns-size must be between 512 and 4096");
    r->zone.edns_size = (uint16_t)edns_size;
    r->edns_max = (size_t)edns_size;
    for (size_t i = 0; i < names.n; i++)
        if (router_zone_add(&r->zone, names.v[i], RZ_GEO, NULL) < 0)
            FAIL("--name '%s': not a name under %s (or too many names)", names.v[i], zone);
    for (size_t i = 0; i < statics.n; i++) {
        char nm[300];
        const char *eq = strchr(statics.v[i], '=');
        if (!eq || (size_t)(eq - statics.v[i]) >= sizeof(nm))
            FAIL("--static '%s': expected NAME=IP", statics.v[i]);
        memcpy(nm, statics.v[i], (size_t)(eq - statics.v[i]));
        nm[eq - statics.v[i]] = 0;
        if (router_zone_add(&r->zone, nm, RZ_STATIC, eq + 1) < 0)
            FAIL("--static '%s': expected NAME=IP with NAME under %s", statics.v[i], zone);
    }
    if (edges.n == 0)
        FAIL("at least one --edge is required");
    if (edges.n > ROUTER_MAX_EDGES)
        FAIL("at most %d edges", ROUTER_MAX_EDGES);
    for (size_t i = 0; i < edges.n; i++) {
        if (router__edge_parse(edges.v[i], &r->edges[i], err, sizeof(err)) < 0)
            FAIL("%s", err);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(r->edges[j].name, r->edges[i].name))
                FAIL("--edge name '%s' given twice", r->edges[i].name);
    }
    r->nedges = edges.n;
    if (w_dist < 0 || w_load < 0 || w_hit < 0 || w_dist + w_load + w_hit <= 0)
        FAIL("weights must be >= 0 and not all 0");
    r->weights = (struct router_weights){w_dist, w_load, w_hit};
    if (interval_ms == 0 || timeout_ms == 0 || rise < 1 || fall < 1)
        FAIL("health interval/timeout must be > 0 and rise/fall >= 1");
    if (hysteresis < 0 || hysteresis >= 1)
        FAIL("--hysteresis must be in [0, 1)");
    r->hc = (struct router_health_cfg){interval_ms, timeout_ms, rise, fall, hysteresis};
    r->redirect_port = redirect_port;
    if (udp_coalesce_us < 0 || udp_coalesce_us > 10000)
        FAIL("--udp-coalesce-us must be between 0 and 10000");
    r->udp_coalesce_us = udp_coalesce_us;
    if (deflt) {
        if (parse_latlon(deflt, &r->default_lat, &r->default_lon) < 0)
            FAIL("--default-location '%s': expected LAT,LON", deflt);
        r->have_default = 1;
    }
    for (size_t i = 0; i < countries.n; i++) {
        double la, lo;
        const char *eq = strchr(countries.v[i], '=');
        char cc[3] = "";
        if (eq && eq - countries.v[i] == 2)
            memcpy(cc, countries.v[i], 2);
        if (!eq || !cc[0] || parse_latlon(eq + 1, &la, &lo) < 0 ||
            router_geo_country_set(cc, la, lo) < 0)
            FAIL("--country-location '%s': expected CC=LAT,LON", countries.v[i]);
    }
    if (geoip.n == 0)
        FAIL("--geoip FILE.mmdb is required (see docs/router.md for sources)");
    if (router_geo_open(geoip.v, geoip.n, &r->geo, err, sizeof(err)) < 0)
        FAIL("--geoip %s", err);
    for (unsigned i = 0; i < router_geo_count(r->geo); i++)
        log_info("geoip database", "file=\"%s\"", router_geo_describe(r->geo, i));
    register_metrics(r);

    signal(SIGPIPE, SIG_IGN);
    /* The loop and its signal handlers come before any listener: once the HTTP workers
     * and the DNS listener accept, clients may take every descriptor the loop and its
     * signal pipe need, and a SIGTERM right after the ready line must not be lost. */
    if (uv_loop_init(&loop) != 0)
        FAIL("cannot set up the main loop (out of descriptors?)");
    r->loop = &loop;
    if (uv_signal_init(&loop, &sig_int) != 0 || uv_signal_init(&loop, &sig_term) != 0 ||
        uv_signal_init(&loop, &sig_usr1) != 0) {
        close_signals();
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        FAIL("cannot set up the signal handlers (out of descriptors?)");
    }
    sig_int.data = sig_term.data = r;
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_start(&sig_usr1, on_usr1, SIGUSR1);
    if (router__dns_start(r, dns, (unsigned)udp_threads, err, sizeof(err)) < 0) {
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
    int http_port = 0;
    if (http) {
        struct http_server_cfg hc;
        http_server_cfg_default(&hc);
        hc.threads = (unsigned)(http_threads > 0 ? http_threads : 1);
        hc.listeners[0] = (struct http_listener_cfg){http, router__http_handle, r, "api"};
        hc.nlisteners = 1;
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
    }
    char host[64] = "";
    if (r->dns_addr.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&r->dns_addr)->sin_addr, host, sizeof(host));
    else
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&r->dns_addr)->sin6_addr, host, sizeof(host));
    log_info("router ready", "zone=%s dns=%s dns_port=%d http_port=%d edges=%zu udp_threads=%u",
             zone, host, r->dns_port, http_port, r->nedges, r->nudp);
    {
        char status[160];
        snprintf(status, sizeof(status), "zone %s: DNS on %s port %d, HTTP port %d", zone, host,
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
        router_geo_free(&r->geo);
        pthread_mutex_destroy(&r->mtx);
        MC_FREE_OBJ(r);
    }
out_conf:
    accesslog_free(&access_log); /* after the HTTP server: its last lines are written */
    conf_fini(&c);
    return rc;
}
