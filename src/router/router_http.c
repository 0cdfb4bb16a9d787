/* src/router/router_http.c: the router's HTTP API.
 *
 *   GET /route?ip=ADDR[&family=4|6]  the choice for ADDR with every candidate's score parts
 *   GET /edges                       health, load, hit ratio and last check of every edge
 *   GET /r/PATH?ip=ADDR              302 to the chosen edge (redirect mode); without ip= the
 *                                    client's own address is used
 *   GET /metrics                     Prometheus text
 *   GET /health                      the router itself
 *   GET /dashboard[/...]             the web dashboard (router_dash.c)
 * Each HTTP worker thread has its own location cache (loop_init). */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/mc.h"
#include "core/metrics.h"
#include "http/http_client.h"
#include "http/http_server.h"
#include "router/router_int.h"

void *router__http_loop_init(uv_loop_t *loop, unsigned idx, void *arg)
{
    struct router *r = arg;
    struct router_thr *t = mc_xcalloc(1, sizeof(*t));
    router__thr_sync(r, t, NULL);
    t->loop = loop;
    if (http_client_new(loop, &t->client) < 0)
        t->client = NULL; /* fan-outs then answer 503 */
    return t;
}

void router__http_loop_fini(uv_loop_t *loop, void *worker_data, void *arg)
{
    struct router_thr *t = worker_data;
    router__fanout_stop_all(t);
    if (t->client)
        http_client_free(&t->client);
    router__thr_fini(t);
    free(t);
}

/* Copies the percent-decoded value of query parameter `name` into out. Returns 0 or
 * -ENOENT. */
static int query_param(struct http_str q, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name), i = 0;
    while (i < q.len) {
        size_t end = i;
        while (end < q.len && q.p[end] != '&')
            end++;
        if (end - i > nl && !memcmp(q.p + i, name, nl) && q.p[i + nl] == '=') {
            size_t o = 0;
            for (size_t j = i + nl + 1; j < end && o + 1 < outlen; j++) {
                int h1, h2;
                if (q.p[j] == '%' && j + 2 < end + 1 && (h1 = mc_hexval(q.p[j + 1])) >= 0 &&
                    (h2 = mc_hexval(q.p[j + 2])) >= 0) {
                    out[o++] = (char)(h1 * 16 + h2);
                    j += 2;
                } else {
                    out[o++] = q.p[j] == '+' ? ' ' : q.p[j];
                }
            }
            out[o] = 0;
            return 0;
        }
        i = end + 1;
    }
    return -ENOENT;
}

static int parse_ip(const char *s, int *family, uint8_t addr[16])
{
    memset(addr, 0, 16);
    if (inet_pton(AF_INET, s, addr) == 1) {
        *family = 4;
        return 0;
    }
    if (inet_pton(AF_INET6, s, addr) == 1) {
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (!memcmp(addr, mapped, 12)) {
            memmove(addr, addr + 12, 4);
            memset(addr + 4, 0, 12);
            *family = 4;
        } else {
            *family = 6;
        }
        return 0;
    }
    return -EINVAL;
}

/* The address to route: ?ip= or the peer. */
static int client_of(struct http_exchange *x, const struct http_request *req, char *ip,
                     size_t iplen, int *family, uint8_t addr[16])
{
    if (query_param(req->query, "ip", ip, iplen) < 0)
        snprintf(ip, iplen, "%s", http_x_peer(x));
    return parse_ip(ip, family, addr);
}

static int default_family(const struct router_set *s)
{
    for (size_t i = 0; i < s->nedges; i++)
        if (s->edges[i].family == 4)
            return 4;
    return 6;
}

static void respond_json(struct http_exchange *x, int status, json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    json_decref(j);
    if (s == NULL) {
        http_x_error(x, 500, "out of memory");
        return;
    }
    http_x_respond(x, status, "Content-Type: application/json\r\nCache-Control: no-store\r\n", s,
                   strlen(s));
    free(s);
}

static const char *src_name(const struct router_set *set, enum router_geo_src s)
{
    return s == GEO_SRC_CITY    ? "city"
         : s == GEO_SRC_COUNTRY ? "country"
         : set->have_default    ? "default"
                                : "none";
}

static void do_route(struct router *r, struct http_exchange *x, const struct http_request *req,
                     struct router_thr *t)
{
    struct router_set *s = t->set;
    struct router_loc_cache *c = t->c;
    char ip[128], fam[8];
    int family, afam;
    uint8_t addr[16], nm = 0;
    struct router_score sc[ROUTER_MAX_EDGES];
    const struct router_loc_entry *e;

    if (client_of(x, req, ip, sizeof(ip), &family, addr) < 0) {
        http_x_error(x, 400, "ip= is not an IPv4 or IPv6 address");
        return;
    }
    afam = default_family(s);
    if (query_param(req->query, "family", fam, sizeof(fam)) == 0)
        afam = !strcmp(fam, "6") ? 6 : 4;
    int best = router__choose(s, c, family, addr, afam, &nm, sc, &e);
    metrics_counter_add(r->m_route_req, 1);

    json_t *j = json_object();
    json_object_set_new(j, "ip", json_string(ip));
    json_t *loc = json_object();
    json_object_set_new(loc, "source", json_string(src_name(s, e->loc.src)));
    if (e->loc.src != GEO_SRC_NONE) {
        json_object_set_new(loc, "latitude", json_real(e->loc.lat));
        json_object_set_new(loc, "longitude", json_real(e->loc.lon));
    } else if (s->have_default) {
        json_object_set_new(loc, "latitude", json_real(s->default_lat));
        json_object_set_new(loc, "longitude", json_real(s->default_lon));
    }
    json_object_set_new(loc, "country", json_string(e->loc.country));
    json_object_set_new(loc, "network_prefix", json_integer(nm));
    json_object_set_new(j, "location", loc);
    json_object_set_new(j, "family", json_integer(afam));
    json_object_set_new(j, "edge", best >= 0 ? json_string(s->edges[best].name) : json_null());
    json_object_set_new(j, "address",
                        best >= 0 ? json_string(s->edges[best].addr_text) : json_null());
    json_t *w = json_object();
    json_object_set_new(w, "distance", json_real(s->weights.distance));
    json_object_set_new(w, "load", json_real(s->weights.load));
    json_object_set_new(w, "hit", json_real(s->weights.hit));
    json_object_set_new(j, "weights", w);
    json_t *cands = json_array();
    for (size_t i = 0; i < s->nedges; i++) {
        if (!sc[i].candidate)
            continue;
        json_t *o = json_object();
        json_object_set_new(o, "edge", json_string(s->edges[i].name));
        json_object_set_new(o, "address", json_string(s->edges[i].addr_text));
        json_object_set_new(o, "healthy", json_boolean(sc[i].eligible));
        json_object_set_new(o, "over_capacity", json_boolean(sc[i].over));
        json_object_set_new(o, "distance_km", json_real(sc[i].distance_km));
        json_object_set_new(o, "distance_score", json_real(sc[i].distance_score));
        json_object_set_new(o, "load", json_real(sc[i].load));
        json_object_set_new(o, "hit_ratio", json_real(sc[i].hit));
        json_object_set_new(o, "distance_part",
                            json_real(s->weights.distance * sc[i].distance_score));
        json_object_set_new(o, "load_part", json_real(s->weights.load * (1 - sc[i].load)));
        json_object_set_new(o, "hit_part", json_real(s->weights.hit * sc[i].hit));
        json_object_set_new(o, "score", json_real(sc[i].total));
        json_object_set_new(o, "chosen", json_boolean((int)i == best));
        json_array_append_new(cands, o);
    }
    json_object_set_new(j, "candidates", cands);
    respond_json(x, 200, j);
}

static void do_edges(struct router *r, struct http_exchange *x)
{
    json_t *arr = json_array();
    pthread_mutex_lock(&r->mtx);
    const struct router_set *s = r->set; /* swapped under r->mtx (router__health_swap) */
    for (size_t i = 0; i < s->nedges; i++) {
        const struct router_edge_cfg *e = &s->edges[i];
        const struct router_edge_health *h = &r->health[i];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(e->name));
        json_object_set_new(o, "address", json_string(e->addr_text));
        json_object_set_new(o, "latitude", json_real(e->lat));
        json_object_set_new(o, "longitude", json_real(e->lon));
        json_object_set_new(o, "capacity", json_real(e->capacity));
        json_object_set_new(o, "health_url", json_string(e->health_url));
        json_object_set_new(o, "healthy", json_boolean(h->up == 1));
        json_object_set_new(o, "state", json_string(h->up < 0 ? "unknown" : h->up ? "up" : "down"));
        json_object_set_new(o, "status", json_string(h->status));
        json_object_set_new(o, "draining", json_boolean(h->draining));
        json_object_set_new(o, "eligible", json_boolean(atomic_load(&s->views[i].eligible)));
        json_object_set_new(o, "over_capacity", json_boolean(atomic_load(&s->views[i].over)));
        json_object_set_new(o, "region", json_string(h->region));
        json_object_set_new(o, "load", json_real(h->load));
        json_object_set_new(o, "hit_ratio", json_real(h->hit));
        json_object_set_new(o, "last_check_ms", json_integer(h->last_check_ms));
        json_object_set_new(o, "last_latency_ms", json_real(h->last_latency_ms));
        json_object_set_new(o, "last_error", json_string(h->last_error));
        json_object_set_new(o, "checks", json_integer((json_int_t)h->checks));
        json_object_set_new(o, "failures", json_integer((json_int_t)h->failures));
        json_object_set_new(o, "transitions", json_integer((json_int_t)h->transitions));
        json_object_set_new(o, "models", h->models ? json_deep_copy(h->models) : json_array());
        json_array_append_new(arr, o);
    }
    pthread_mutex_unlock(&r->mtx);
    json_t *j = json_object();
    json_object_set_new(j, "edges", arr);
    respond_json(x, 200, j);
}

static void do_redirect(struct router *r, struct http_exchange *x, const struct http_request *req,
                        struct router_thr *t)
{
    struct router_set *s = t->set;
    struct router_loc_cache *c = t->c;
    char ip[128], loc[2048], hdr[2200];
    int family;
    uint8_t addr[16], nm;
    struct buf q;

    if (client_of(x, req, ip, sizeof(ip), &family, addr) < 0) {
        http_x_error(x, 400, "ip= is not an IPv4 or IPv6 address");
        return;
    }
    /* Prefer an edge of the client's family, else any. */
    int best = router__choose(s, c, family, addr, family, &nm, NULL, NULL);
    if (best < 0)
        best = router__choose(s, c, family, addr, family == 4 ? 6 : 4, &nm, NULL, NULL);
    if (best < 0) {
        http_x_error(x, 503, "no edge");
        return;
    }
    /* The query goes along, minus the ip= parameter meant for the router. */
    buf_init(&q, 1024);
    size_t i = 0;
    while (i < req->query.len) {
        size_t end = i;
        while (end < req->query.len && req->query.p[end] != '&')
            end++;
        if (end > i && !(end - i >= 3 && !memcmp(req->query.p + i, "ip=", 3))) {
            buf_puts(&q, q.len ? "&" : "?");
            buf_append(&q, req->query.p + i, end - i);
        }
        i = end + 1;
    }
    const struct router_edge_cfg *e = &s->edges[best];
    char port[16] = "";
    if (r->redirect_port != 80)
        snprintf(port, sizeof(port), ":%ld", r->redirect_port);
    int n = snprintf(loc, sizeof(loc), "http://%s%s%s%s%.*s%s", e->family == 6 ? "[" : "",
                     e->addr_text, e->family == 6 ? "]" : "", port, (int)(req->path.len - 2),
                     req->path.p + 2, q.len ? q.data : "");
    buf_fini(&q);
    if (n < 0 || (size_t)n >= sizeof(loc)) {
        http_x_error(x, 414, "path too long");
        return;
    }
    /* The path must start with "/": /r/PATH -> /PATH */
    snprintf(hdr, sizeof(hdr), "Location: %s\r\nCache-Control: no-store\r\nX-Edge: %s\r\n", loc,
             e->name);
    metrics_counter_add(r->m_redirects, 1);
    http_x_respond(x, 302, hdr, NULL, 0);
}

void router__http_handle(struct http_exchange *x, void *arg)
{
    struct router *r = arg;
    const struct http_request *req = http_x_request(x);
    struct router_thr *t = http_x_worker(x);
    struct http_str p = req->path;

    router__thr_sync(r, t, NULL);

    if (req->method != HTTP_M_GET && req->method != HTTP_M_HEAD) {
        http_x_respond(x, 405, "Allow: GET, HEAD\r\n", "method not allowed\n", 19);
        return;
    }
    if (p.len == 6 && !memcmp(p.p, "/route", 6)) {
        do_route(r, x, req, t);
    } else if (p.len == 6 && !memcmp(p.p, "/edges", 6)) {
        do_edges(r, x);
    } else if (p.len >= 3 && !memcmp(p.p, "/r/", 3)) {
        do_redirect(r, x, req, t);
    } else if (p.len == 8 && !memcmp(p.p, "/metrics", 8)) {
        struct buf b;
        buf_init(&b, 16 << 20);
        metrics_render(&b);
        http_x_respond(x, 200, "Content-Type: text/plain; version=0.0.4\r\n", b.data, b.len);
        buf_fini(&b);
    } else if (p.len >= 10 && !memcmp(p.p, "/dashboard", 10)) {
        router__dash_handle(r, x, p.p + 10, p.len - 10);
    } else if (p.len == 7 && !memcmp(p.p, "/health", 7)) {
        const char *ok = "{\"status\":\"ok\"}\n";
        http_x_respond(x, 200, "Content-Type: application/json\r\n", ok, strlen(ok));
    } else {
        http_x_error(x, 404, "not found");
    }
}
