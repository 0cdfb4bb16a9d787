/* src/router/router_dash.c: the web dashboard on the router's HTTP API.
 *
 *   GET /dashboard         the page (src/router/dash/index.html, embedded)
 *   GET /dashboard/FILE    its other files (dash.js)
 *   GET /dashboard/data    everything the page shows, as one JSON document
 *
 * What the page shows comes from the edges' own admin APIs: every second, on the main
 * loop (libcurl multi, the health checker's client), the router reads each edge's
 * GET /metrics (its admin base URL: the health URL's scheme://authority) and keeps the
 * last two samples, the first one (the histograms count from it) and a history of the
 * whole CDN's rates and quantiles. Health comes from the health checker, invalidations
 * from the admin listener's log. The document is built on the main loop once per second
 * and handed to the HTTP workers as a string under dash->mtx.
 *
 * Edges are read only while someone looks: the first /dashboard/data request starts the
 * reads, and they stop a minute after the last one. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/edgestat.h"
#include "core/log.h"
#include "core/mc.h"
#include "core/units.h"
#include "http/http_client.h"
#include "http/http_server.h"
#include "router/router_dash.h"
#include "router/router_int.h"

#define DASH_TICK_MS 1000
#define DASH_IDLE_MS 60000 /* reads stop this long after the last look */
#define DASH_HISTORY 300   /* points (seconds) of history */
#define DASH_BODY_MAX (8u << 20)

/* One edge being read (main loop only). */
struct dash_edge {
    int used;
    char name[64];
    char health_url[ROUTER_URL_MAX];
    char admin[ROUTER_URL_MAX];
    CURL *easy;
    struct buf body;
    int running;
    int ok;                          /* the last read succeeded */
    char err[200];                   /* why not */
    int have_cur, have_prev;         /* samples */
    int64_t t_cur_us, t_prev_us;     /* their monotonic times */
    struct edgestat cur, prev, base; /* base: the first read, the histograms' origin */
};

/* The whole CDN at one tick. */
struct dash_point {
    int64_t t_ms;
    double rps, hit, served_bps, saved_bps;
    double q[EDGESTAT_TIERS][3]; /* p50 p95 p99 seconds, NAN without requests */
};

struct router_dash {
    struct router *r;
    uv_timer_t timer;
    struct dash_edge e[ROUTER_MAX_EDGES];
    struct dash_point hist[DASH_HISTORY];
    size_t hhead, hcount;
    _Atomic int64_t last_look_ms; /* monotonic; set by the HTTP workers */
    pthread_mutex_t mtx;
    char *doc; /* the last document (mtx) */
    size_t doclen;
};

static size_t on_body(char *p, size_t sz, size_t nm, void *arg)
{
    struct dash_edge *d = arg;
    if (buf_append(&d->body, p, sz * nm) < 0)
        return 0; /* past the cap: the transfer fails */
    return sz * nm;
}

static void read_done(CURL *easy, CURLcode result, void *arg)
{
    struct dash_edge *d = arg;
    long code = 0;
    struct edgestat s;
    char err[160];

    d->running = 0;
    if (result != CURLE_OK) {
        snprintf(d->err, sizeof(d->err), "GET /metrics: %s", curl_easy_strerror(result));
        d->ok = 0;
        return;
    }
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200) {
        snprintf(d->err, sizeof(d->err), "GET /metrics: HTTP %ld", code);
        d->ok = 0;
        return;
    }
    if (edgestat_parse(d->body.data, d->body.len, &s, err, sizeof(err)) < 0) {
        snprintf(d->err, sizeof(d->err), "GET /metrics: %s", err);
        d->ok = 0;
        return;
    }
    if (d->have_cur) {
        d->prev = d->cur;
        d->t_prev_us = d->t_cur_us;
        d->have_prev = 1;
    } else {
        d->base = s;
    }
    d->cur = s;
    d->t_cur_us = (int64_t)units_now_us();
    d->have_cur = 1;
    d->ok = 1;
    d->err[0] = 0;
}

static void read_start(struct router *r, struct dash_edge *d)
{
    if (d->running)
        return;
    buf_reset(&d->body);
    curl_easy_reset(d->easy);
    char url[ROUTER_URL_MAX + 16];
    snprintf(url, sizeof(url), "%s/metrics", d->admin);
    curl_easy_setopt(d->easy, CURLOPT_URL, url);
    curl_easy_setopt(d->easy, CURLOPT_TIMEOUT_MS, (long)DASH_TICK_MS);
    curl_easy_setopt(d->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(d->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(d->easy, CURLOPT_WRITEDATA, d);
    curl_easy_setopt(d->easy, CURLOPT_USERAGENT, "mlcdn-router/" MLCDN_VERSION);
    curl_easy_setopt(d->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    if (http_client_add(r->client, d->easy, read_done, d) == 0) {
        d->running = 1;
    } else {
        d->ok = 0;
        snprintf(d->err, sizeof(d->err), "GET /metrics: cannot start the request");
    }
}

static void slot_free(struct router *r, struct dash_edge *d)
{
    if (d->running)
        http_client_cancel(r->client, d->easy);
    if (d->easy)
        curl_easy_cleanup(d->easy);
    buf_fini(&d->body);
    memset(d, 0, sizeof(*d));
}

/* The slot of the current set's edge i: the same name and health URL keep theirs across a
 * reload; slots of edges no longer in the set are freed. */
static void slots_sync(struct router_dash *dh)
{
    struct router *r = dh->r;
    const struct router_set *s = r->set;
    int keep[ROUTER_MAX_EDGES] = {0};

    for (size_t i = 0; i < s->nedges; i++) {
        const struct router_edge_cfg *c = &s->edges[i];
        size_t k, free_k = ROUTER_MAX_EDGES;
        for (k = 0; k < ROUTER_MAX_EDGES; k++) {
            if (dh->e[k].used && !strcmp(dh->e[k].name, c->name) &&
                !strcmp(dh->e[k].health_url, c->health_url))
                break;
            if (!dh->e[k].used && free_k == ROUTER_MAX_EDGES && !keep[k])
                free_k = k;
        }
        if (k == ROUTER_MAX_EDGES) {
            char admin[ROUTER_URL_MAX];
            if (free_k == ROUTER_MAX_EDGES ||
                router__admin_base(c->health_url, admin, sizeof(admin)) < 0)
                continue;
            k = free_k;
            struct dash_edge *d = &dh->e[k];
            d->used = 1;
            snprintf(d->name, sizeof(d->name), "%s", c->name);
            snprintf(d->health_url, sizeof(d->health_url), "%s", c->health_url);
            snprintf(d->admin, sizeof(d->admin), "%s", admin);
            d->easy = curl_easy_init();
            MC_ASSERT(d->easy != NULL);
            buf_init(&d->body, DASH_BODY_MAX);
        }
        keep[k] = 1;
    }
    for (size_t k = 0; k < ROUTER_MAX_EDGES; k++)
        if (dh->e[k].used && !keep[k])
            slot_free(r, &dh->e[k]);
}

static struct dash_edge *slot_of(struct router_dash *dh, const struct router_edge_cfg *c)
{
    for (size_t k = 0; k < ROUTER_MAX_EDGES; k++)
        if (dh->e[k].used && !strcmp(dh->e[k].name, c->name) &&
            !strcmp(dh->e[k].health_url, c->health_url))
            return &dh->e[k];
    return NULL;
}

static json_t *num_or_null(double v)
{
    return isnan(v) || v < 0 ? json_null() : json_real(v);
}

/* Share of requests a cache tier answered (every tier but the origin). */
static double hit_ratio(const struct edgestat *s)
{
    return s->requests > 0 ? 1.0 - s->tier_requests[EDGESTAT_ORIGIN] / s->requests : NAN;
}

static void all_tiers(const struct edgestat *s, struct edgestat_hist *h)
{
    memset(h, 0, sizeof(*h));
    for (int t = 0; t < EDGESTAT_TIERS; t++) {
        const struct edgestat_hist *x = &s->lat[t];
        if (!x->n)
            continue;
        if (!h->n) {
            *h = *x;
            continue;
        }
        if (x->n != h->n || memcmp(x->le, h->le, x->n * sizeof(x->le[0])))
            continue;
        for (size_t k = 0; k < x->n; k++)
            h->cnt[k] += x->cnt[k];
        h->count += x->count;
        h->sum += x->sum;
    }
}

static json_t *edge_json(const struct router_edge_cfg *c, const struct router_edge_health *h,
                         const struct dash_edge *d, struct edgestat *win_acc, double *win_secs,
                         int *nwin)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(c->name));
    json_object_set_new(o, "latitude", json_real(c->lat));
    json_object_set_new(o, "longitude", json_real(c->lon));
    json_object_set_new(o, "state", json_string(h->up < 0 ? "unknown" : h->up ? "up" : "down"));
    json_object_set_new(o, "draining", json_boolean(h->draining));
    json_object_set_new(o, "region", json_string(h->region));
    json_object_set_new(o, "health_error", json_string(h->last_error));
    json_object_set_new(o, "metrics_ok", json_boolean(d && d->ok));
    json_object_set_new(o, "metrics_error",
                        d && !d->ok && d->err[0] ? json_string(d->err) : json_null());
    double rps = NAN, hit = NAN, saved = NAN, served = NAN, p50 = NAN, p99 = NAN;
    if (d && d->ok && d->have_prev && d->t_cur_us > d->t_prev_us) {
        struct edgestat w;
        struct edgestat_hist all;
        double secs = (double)(d->t_cur_us - d->t_prev_us) / 1e6;
        edgestat_delta(&d->prev, &d->cur, &w);
        rps = w.requests / secs;
        hit = hit_ratio(&w);
        saved = edgestat_bytes_saved(&w) / secs;
        served = w.bytes_served / secs;
        all_tiers(&w, &all);
        p50 = edgestat_quantile(&all, 0.5);
        p99 = edgestat_quantile(&all, 0.99);
        edgestat_add(win_acc, &w);
        *win_secs += secs;
        (*nwin)++;
    }
    if (isnan(hit) && d && d->have_cur)
        hit = hit_ratio(&d->cur); /* no window yet: since the edge started */
    json_object_set_new(o, "requests_per_s", num_or_null(rps));
    json_object_set_new(o, "hit_ratio", num_or_null(hit));
    json_object_set_new(o, "bytes_served_per_s", num_or_null(served));
    json_object_set_new(o, "bytes_saved_per_s", num_or_null(saved));
    json_object_set_new(o, "p50", num_or_null(p50));
    json_object_set_new(o, "p99", num_or_null(p99));
    json_object_set_new(o, "requests", d && d->have_cur ? json_real(d->cur.requests) : json_null());
    json_object_set_new(o, "bytes_saved",
                        d && d->have_cur ? json_real(edgestat_bytes_saved(&d->cur)) : json_null());
    return o;
}

static void history_add(struct router_dash *dh, const struct dash_point *p)
{
    size_t slot = (dh->hhead + dh->hcount) % DASH_HISTORY;
    if (dh->hcount == DASH_HISTORY) {
        slot = dh->hhead;
        dh->hhead = (dh->hhead + 1) % DASH_HISTORY;
    } else {
        dh->hcount++;
    }
    dh->hist[slot] = *p;
}

static json_t *history_json(const struct router_dash *dh)
{
    json_t *arr = json_array();
    for (size_t k = 0; k < dh->hcount; k++) {
        const struct dash_point *p = &dh->hist[(dh->hhead + k) % DASH_HISTORY];
        json_t *o = json_object(), *q = json_object();
        json_object_set_new(o, "t", json_integer(p->t_ms));
        json_object_set_new(o, "requests_per_s", json_real(p->rps));
        json_object_set_new(o, "hit_ratio", num_or_null(p->hit));
        json_object_set_new(o, "bytes_served_per_s", json_real(p->served_bps));
        json_object_set_new(o, "bytes_saved_per_s", json_real(p->saved_bps));
        for (int t = 0; t < EDGESTAT_TIERS; t++) {
            if (isnan(p->q[t][0]))
                continue;
            json_t *a = json_array();
            for (int i = 0; i < 3; i++)
                json_array_append_new(a, num_or_null(p->q[t][i]));
            json_object_set_new(q, edgestat_tier_name(t), a);
        }
        json_object_set_new(o, "quantiles", q);
        json_array_append_new(arr, o);
    }
    return arr;
}

/* Per tier since the router started reading: buckets [[le, count]...] (le null: +Inf) and
 * the quantiles. */
static json_t *tiers_json(const struct edgestat *since)
{
    json_t *o = json_object();
    for (int t = 0; t < EDGESTAT_TIERS; t++) {
        const struct edgestat_hist *h = &since->lat[t];
        json_t *tj = json_object(), *b = json_array();
        for (size_t k = 0; k < h->n; k++) {
            json_t *pair = json_array();
            json_array_append_new(pair, isinf(h->le[k]) ? json_null() : json_real(h->le[k]));
            json_array_append_new(pair, json_real(h->cnt[k]));
            json_array_append_new(b, pair);
        }
        json_object_set_new(tj, "requests", json_real(h->count));
        json_object_set_new(tj, "p50", num_or_null(edgestat_quantile(h, 0.50)));
        json_object_set_new(tj, "p95", num_or_null(edgestat_quantile(h, 0.95)));
        json_object_set_new(tj, "p99", num_or_null(edgestat_quantile(h, 0.99)));
        json_object_set_new(tj, "buckets", b);
        json_object_set_new(o, edgestat_tier_name(t), tj);
    }
    return o;
}

/* Predictions per model and version, every edge together: loaded on how many edges, the
 * edges' counts since they started, and the rate over the last window. */
static json_t *models_json(struct router_dash *dh, const struct edgestat *win, double win_secs)
{
    struct edgestat tot;
    size_t nloaded[EDGESTAT_MAX_MODELS] = {0};
    memset(&tot, 0, sizeof(tot));
    for (size_t k = 0; k < ROUTER_MAX_EDGES; k++) {
        const struct dash_edge *d = &dh->e[k];
        if (!d->used || !d->ok || !d->have_cur)
            continue;
        edgestat_add(&tot, &d->cur);
        for (size_t m = 0; m < d->cur.nmodels; m++)
            for (size_t j = 0; j < tot.nmodels; j++)
                if (!strcmp(tot.models[j].name, d->cur.models[m].name) &&
                    tot.models[j].version == d->cur.models[m].version &&
                    d->cur.models[m].loaded > 0)
                    nloaded[j]++;
    }
    json_t *arr = json_array();
    for (size_t j = 0; j < tot.nmodels; j++) {
        const struct edgestat_model *m = &tot.models[j];
        double rate = 0;
        for (size_t i = 0; i < win->nmodels; i++)
            if (!strcmp(win->models[i].name, m->name) && win->models[i].version == m->version)
                rate = win_secs > 0 ? win->models[i].predictions / win_secs : 0;
        json_t *o = json_object();
        json_object_set_new(o, "model", json_string(m->name));
        json_object_set_new(o, "version", json_integer(m->version));
        json_object_set_new(o, "edges_loaded", json_integer((json_int_t)nloaded[j]));
        json_object_set_new(o, "predictions", json_real(m->predictions));
        json_object_set_new(o, "predictions_per_s", json_real(rate));
        json_array_append_new(arr, o);
    }
    return arr;
}

static void build_doc(struct router_dash *dh)
{
    struct router *r = dh->r;
    const struct router_set *s = r->set;
    struct edgestat win, since;
    double win_secs = 0, bytes_saved = 0;
    int nwin = 0;
    json_t *edges = json_array();

    memset(&win, 0, sizeof(win));
    memset(&since, 0, sizeof(since));
    pthread_mutex_lock(&r->mtx); /* the health state's shown part */
    for (size_t i = 0; i < s->nedges; i++) {
        const struct dash_edge *d = slot_of(dh, &s->edges[i]);
        json_array_append_new(edges,
                              edge_json(&s->edges[i], &r->health[i], d, &win, &win_secs, &nwin));
        if (d && d->have_cur) {
            struct edgestat x;
            edgestat_delta(&d->base, &d->cur, &x);
            edgestat_add(&since, &x);
            bytes_saved += edgestat_bytes_saved(&d->cur);
        }
    }
    pthread_mutex_unlock(&r->mtx);

    /* Rates of the CDN: every edge's window, over their mean length. */
    double secs = nwin ? win_secs / nwin : 0;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (secs > 0) {
        struct dash_point p = {.t_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000};
        p.rps = win.requests / secs;
        p.hit = hit_ratio(&win);
        p.served_bps = win.bytes_served / secs;
        p.saved_bps = edgestat_bytes_saved(&win) / secs;
        for (int t = 0; t < EDGESTAT_TIERS; t++) {
            const struct edgestat_hist *h = &win.lat[t];
            p.q[t][0] = h->count > 0 ? edgestat_quantile(h, 0.50) : NAN;
            p.q[t][1] = h->count > 0 ? edgestat_quantile(h, 0.95) : NAN;
            p.q[t][2] = h->count > 0 ? edgestat_quantile(h, 0.99) : NAN;
        }
        history_add(dh, &p);
    }

    json_t *doc = json_object();
    json_object_set_new(doc, "time_ms",
                        json_integer((int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000));
    json_object_set_new(doc, "health_interval_ms", json_integer((json_int_t)r->hc.interval_ms));
    json_object_set_new(doc, "edges", edges);
    json_object_set_new(doc, "tiers", tiers_json(&since));
    json_object_set_new(doc, "history", history_json(dh));
    json_object_set_new(doc, "models", models_json(dh, &win, secs));
    json_object_set_new(doc, "bytes_saved", json_real(bytes_saved));
    json_object_set_new(doc, "invalidations", router__admin_recent(r, 20));
    char *text = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(doc);
    if (!text)
        return;
    pthread_mutex_lock(&dh->mtx);
    free(dh->doc);
    dh->doc = text;
    dh->doclen = strlen(text);
    pthread_mutex_unlock(&dh->mtx);
}

static void on_tick(uv_timer_t *t)
{
    struct router_dash *dh = t->data;
    struct router *r = dh->r;
    int64_t last = atomic_load(&dh->last_look_ms);

    if (!last || (int64_t)units_now_ms() - last > DASH_IDLE_MS)
        return;
    build_doc(dh);
    slots_sync(dh);
    for (size_t k = 0; k < ROUTER_MAX_EDGES; k++)
        if (dh->e[k].used)
            read_start(r, &dh->e[k]);
}

int router__dash_start(struct router *r)
{
    struct router_dash *dh = mc_xcalloc(1, sizeof(*dh));
    dh->r = r;
    pthread_mutex_init(&dh->mtx, NULL);
    uv_timer_init(r->loop, &dh->timer);
    dh->timer.data = dh;
    uv_timer_start(&dh->timer, on_tick, DASH_TICK_MS, DASH_TICK_MS);
    r->dash = dh;
    return 0;
}

void router__dash_stop(struct router *r)
{
    struct router_dash *dh = r->dash;
    if (!dh)
        return;
    for (size_t k = 0; k < ROUTER_MAX_EDGES; k++)
        if (dh->e[k].used)
            slot_free(r, &dh->e[k]);
    if (!uv_is_closing((uv_handle_t *)&dh->timer))
        uv_close((uv_handle_t *)&dh->timer, NULL);
}

void router__dash_free(struct router *r)
{
    struct router_dash *dh = r->dash;
    if (!dh)
        return;
    r->dash = NULL;
    pthread_mutex_destroy(&dh->mtx);
    free(dh->doc);
    free(dh);
}

static void serve_file(struct http_exchange *x, const struct router_dash_file *f)
{
    char hdr[160];
    snprintf(hdr, sizeof(hdr), "Content-Type: %s\r\nCache-Control: no-cache\r\n", f->type);
    http_x_respond(x, 200, hdr, f->data, f->len);
}

void router__dash_handle(struct router *r, struct http_exchange *x, const char *rest, size_t n)
{
    struct router_dash *dh = r->dash;

    if (n == 0) { /* /dashboard: the page's relative links need the slash */
        http_x_respond(x, 301, "Location: /dashboard/\r\n", NULL, 0);
        return;
    }
    if (n == 1 || (n == 11 && !memcmp(rest, "/index.html", 11))) {
        for (size_t i = 0; i < router_dash_nfiles; i++)
            if (!strcmp(router_dash_files[i].name, "index.html"))
                serve_file(x, &router_dash_files[i]);
        return;
    }
    if (n == 5 && !memcmp(rest, "/data", 5)) {
        if (!dh) {
            http_x_error(x, 503, "the dashboard is not running");
            return;
        }
        int64_t now = (int64_t)units_now_ms();
        int64_t was = atomic_exchange(&dh->last_look_ms, now);
        pthread_mutex_lock(&dh->mtx);
        if (dh->doc && was && now - was <= DASH_IDLE_MS) {
            http_x_respond(x, 200, "Content-Type: application/json\r\nCache-Control: no-store\r\n",
                           dh->doc, dh->doclen);
            pthread_mutex_unlock(&dh->mtx);
            return;
        }
        pthread_mutex_unlock(&dh->mtx);
        /* The first look (or the first after a pause): reads start at the next tick. */
        const char *m = "{\"starting\":true,\"edges\":[],\"history\":[],\"models\":[],"
                        "\"invalidations\":[]}\n";
        http_x_respond(x, 200, "Content-Type: application/json\r\nCache-Control: no-store\r\n", m,
                       strlen(m));
        return;
    }
    for (size_t i = 0; i < router_dash_nfiles; i++) {
        const struct router_dash_file *f = &router_dash_files[i];
        if (n == strlen(f->name) + 1 && rest[0] == '/' && !memcmp(rest + 1, f->name, n - 1)) {
            serve_file(x, f);
            return;
        }
    }
    http_x_error(x, 404, "not found");
}
