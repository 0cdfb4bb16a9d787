/* src/router/router_health.c: asynchronous health checks of the edges.
 *
 * Every `interval` a GET of each edge's health URL starts on the main loop (libcurl multi
 * through http_client), unless the previous one is still running. A check is good when
 * the answer is 200 within `timeout` with a JSON body whose "status" is "ok" or
 * "draining" and whose "load" and "hit_ratio" are numbers; anything else (refused,
 * timeout, other status, bad JSON) is bad: a slow edge counts as down. `fall` bad checks
 * in a row take an edge down, `rise` good ones bring it back. The very first check
 * decides the initial state at once, so a fresh router answers within one round.
 * A draining edge is healthy but not eligible: it stops getting new clients immediately.
 * Results are published to the edge's view with hysteresis (router_view_publish). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/mc.h"
#include "core/units.h"
#include "http/http_client.h"
#include "router/router_int.h"

static size_t on_body(char *p, size_t sz, size_t nm, void *arg)
{
    struct router_edge_health *h = arg;
    /* Past the cap the transfer fails (returning less than given aborts it). */
    if (buf_append(&h->body, p, sz * nm) < 0)
        return 0;
    return sz * nm;
}

static void set_region_metric(struct router *r, struct router_edge_health *h)
{
    struct buf b;
    if (atomic_load(&r->set->m_answers_region[h->idx]) != NULL || !h->region[0])
        return;
    /* The region comes from the edge's /health answer: escaped like any label value. */
    buf_init(&b, 4096);
    buf_puts(&b, "edge=\"");
    metrics_label_esc(&b, r->set->edges[h->idx].name);
    buf_puts(&b, "\",region=\"");
    metrics_label_esc(&b, h->region);
    buf_puts(&b, "\"");
    atomic_store(&r->set->m_answers_region[h->idx],
                 metrics_counter("mlcdn_router_answers_by_region_total",
                                 "DNS answers by chosen edge and the region it reports", b.data));
    buf_fini(&b);
}

/* Applies one check result. */
static void hc_result(struct router_edge_health *h, int good, const char *status, double load,
                      double hit, const char *region, const char *error, double latency_ms)
{
    struct router *r = h->r;
    int was = h->up, first = h->up < 0;

    if (good) {
        h->fail_streak = 0;
        h->ok_streak++;
        if (h->up < 0 || (h->up == 0 && h->ok_streak >= r->hc.rise))
            h->up = 1;
    } else {
        h->ok_streak = 0;
        h->fail_streak++;
        if (h->up < 0 || (h->up == 1 && h->fail_streak >= r->hc.fall))
            h->up = 0;
    }
    pthread_mutex_lock(&r->mtx);
    h->checks++;
    if (!good)
        h->failures++;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    h->last_check_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    h->last_latency_ms = latency_ms;
    snprintf(h->last_error, sizeof(h->last_error), "%s", error ? error : "");
    if (good) {
        snprintf(h->status, sizeof(h->status), "%s", status);
        h->draining = !strcmp(status, "draining");
        h->load = load;
        h->hit = hit;
        if (region && region[0])
            snprintf(h->region, sizeof(h->region), "%s", region);
    }
    if (was != h->up && !first)
        h->transitions++;
    pthread_mutex_unlock(&r->mtx);

    int eligible = h->up == 1 && !h->draining;
    /* A failed check leaves the last reported load/hit in place: they are never invented. */
    router_view_publish(&r->set->views[h->idx], eligible, good ? load : h->load,
                        good ? hit : h->hit, r->set->edges[h->idx].capacity, r->hc.deadband, first);
    metrics_gauge_set(h->g_up, h->up == 1);
    if (good) {
        metrics_gauge_set(h->g_load, load);
        metrics_gauge_set(h->g_hit, hit);
        set_region_metric(r, h);
    }
    if (was != h->up) {
        if (!first)
            metrics_counter_add(h->up ? h->to_up : h->to_down, 1);
        log_info(h->up ? "edge up" : "edge down", "edge=%s first=%d error=\"%s\"",
                 r->set->edges[h->idx].name, first, error ? error : "");
    }
}

static int is_draining(const struct buf *b)
{
    json_error_t je;
    json_t *j = json_loadb(b->data, b->len, 0, &je);
    json_t *js = j ? json_object_get(j, "status") : NULL;
    int d = json_is_string(js) && !strcmp(json_string_value(js), "draining");
    json_decref(j);
    return d;
}

static void hc_done(CURL *easy, CURLcode result, void *arg)
{
    struct router_edge_health *h = arg;
    char err[160] = "";
    long code = 0;
    double load = 0, hit = 0;
    const char *status = "";
    char region[64] = "", st[16] = "";
    int good = 0;

    MC_CHECK_OBJ_NOTNULL(h, ROUTER_EDGE_HEALTH_MAGIC);
    h->running = 0;
    double ms = (double)(units_now_us() - h->started_us) / 1000.0;
    if (result != CURLE_OK) {
        snprintf(err, sizeof(err), "%s", curl_easy_strerror(result));
    } else if (curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code),
               code != 200 && !(code == 503 && is_draining(&h->body))) {
        /* A draining edge may answer 503 (mlcdn edge does): it is alive, but takes no new
         * clients, which the "draining" status expresses without waiting for `fall`. */
        snprintf(err, sizeof(err), "HTTP %ld", code);
    } else {
        json_error_t je;
        json_t *j = json_loadb(h->body.data, h->body.len, 0, &je);
        json_t *js = j ? json_object_get(j, "status") : NULL;
        json_t *jl = j ? json_object_get(j, "load") : NULL;
        json_t *jh = j ? json_object_get(j, "hit_ratio") : NULL;
        json_t *jr = j ? json_object_get(j, "region") : NULL;
        if (!j || !json_is_object(j)) {
            snprintf(err, sizeof(err), "body is not a JSON object");
        } else if (!json_is_string(js) || (strcmp(json_string_value(js), "ok") &&
                                           strcmp(json_string_value(js), "draining"))) {
            snprintf(err, sizeof(err), "status is not \"ok\" or \"draining\"");
        } else if (!json_is_number(jl) || !json_is_number(jh)) {
            snprintf(err, sizeof(err), "load or hit_ratio missing");
        } else {
            good = 1;
            snprintf(st, sizeof(st), "%s", json_string_value(js));
            status = st;
            load = json_number_value(jl);
            hit = json_number_value(jh);
            if (json_is_string(jr))
                snprintf(region, sizeof(region), "%s", json_string_value(jr));
            /* Shown by /edges as the edge reported them (an edge without models has none). */
            json_t *jm = json_object_get(j, "models");
            pthread_mutex_lock(&h->r->mtx);
            json_decref(h->models);
            h->models = json_is_array(jm) ? json_deep_copy(jm) : NULL;
            pthread_mutex_unlock(&h->r->mtx);
        }
        json_decref(j);
    }
    hc_result(h, good, status, load, hit, region, good ? NULL : err, ms);
}

static void hc_start(struct router_edge_health *h)
{
    struct router *r = h->r;
    if (h->running)
        return; /* the previous check is still within its timeout */
    buf_reset(&h->body);
    curl_easy_reset(h->easy);
    curl_easy_setopt(h->easy, CURLOPT_URL, r->set->edges[h->idx].health_url);
    curl_easy_setopt(h->easy, CURLOPT_TIMEOUT_MS, (long)r->hc.timeout_ms);
    curl_easy_setopt(h->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)r->hc.timeout_ms);
    curl_easy_setopt(h->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h->easy, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(h->easy, CURLOPT_USERAGENT, "mlcdn-router/" MLCDN_VERSION);
    curl_easy_setopt(h->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    h->started_us = units_now_us();
    if (http_client_add(r->client, h->easy, hc_done, h) == 0)
        h->running = 1;
    else
        hc_result(h, 0, "", 0, 0, NULL, "cannot start the check", 0);
}

static void on_tick(uv_timer_t *t)
{
    struct router *r = t->data;
    for (size_t i = 0; i < r->set->nedges; i++)
        hc_start(&r->health[i]);
}

/* A fresh state for edge idx (unknown until its first check). */
static void health_init(struct router *r, struct router_edge_health *h, size_t idx,
                        const char *edge_name)
{
    char labels[600], name[400];
    struct buf nb;

    buf_init(&nb, sizeof(name) - 1);
    if (metrics_label_esc(&nb, edge_name) != 0)
        buf_reset(&nb);
    snprintf(name, sizeof(name), "%s", nb.len ? nb.data : "");
    buf_fini(&nb);
    memset(h, 0, sizeof(*h));
    MC_INIT_OBJ(h, ROUTER_EDGE_HEALTH_MAGIC);
    h->r = r;
    h->idx = idx;
    h->up = -1;
    h->easy = curl_easy_init();
    MC_ASSERT(h->easy != NULL);
    buf_init(&h->body, ROUTER_HEALTH_BODY_MAX);
    snprintf(labels, sizeof(labels), "edge=\"%s\",to=\"up\"", name);
    h->to_up = metrics_counter("mlcdn_router_health_transitions_total", "Edge health state changes",
                               labels);
    snprintf(labels, sizeof(labels), "edge=\"%s\",to=\"down\"", name);
    h->to_down = metrics_counter("mlcdn_router_health_transitions_total",
                                 "Edge health state changes", labels);
    snprintf(labels, sizeof(labels), "edge=\"%s\"", name);
    h->g_up = metrics_gauge("mlcdn_router_edge_up", "1 when the edge passes its checks", labels);
    h->g_load = metrics_gauge("mlcdn_router_edge_load", "Load the edge reports", labels);
    h->g_hit = metrics_gauge("mlcdn_router_edge_hit_ratio", "Hit ratio the edge reports", labels);
}

void router__health_swap(struct router *r, struct router_set *next)
{
    struct router_set *cur = r->set;
    /* Static: the main loop is one thread, and this array is too large for its stack. */
    static struct router_edge_health old[ROUTER_MAX_EDGES];
    int taken[ROUTER_MAX_EDGES] = {0};

    for (size_t i = 0; i < cur->nedges; i++) {
        struct router_edge_health *h = &r->health[i];
        if (h->running)
            http_client_cancel(r->client, h->easy);
        h->running = 0;
        old[i] = *h;
    }
    for (size_t j = 0; j < next->nedges; j++) {
        const struct router_edge_cfg *ne = &next->edges[j];
        size_t i;
        for (i = 0; i < cur->nedges; i++)
            if (!taken[i] && !strcmp(cur->edges[i].name, ne->name) &&
                !strcmp(cur->edges[i].health_url, ne->health_url))
                break;
        if (i == cur->nedges) {
            health_init(r, &r->health[j], j, ne->name);
            continue;
        }
        /* The same edge: what its checks said so far still holds, and is still published. */
        taken[i] = 1;
        r->health[j] = old[i];
        r->health[j].idx = j;
        struct router_edge_view *from = &cur->views[i], *to = &next->views[j];
        atomic_store(&to->eligible, atomic_load(&from->eligible));
        atomic_store(&to->over, atomic_load(&from->over));
        atomic_store(&to->load, atomic_load(&from->load));
        atomic_store(&to->hit, atomic_load(&from->hit));
        atomic_store(&next->m_answers_region[j], atomic_load(&cur->m_answers_region[i]));
    }
    for (size_t i = 0; i < cur->nedges; i++) {
        if (taken[i])
            continue;
        metrics_gauge_set(old[i].g_up, 0);
        curl_easy_cleanup(old[i].easy);
        buf_fini(&old[i].body);
        json_decref(old[i].models);
    }
    for (size_t j = next->nedges; j < cur->nedges; j++)
        memset(&r->health[j], 0, sizeof(r->health[j]));
    /* A round now (the first checks of new edges decide their state at once), then every
     * interval, which the reload may have changed too. */
    uv_timer_start(&r->hc_timer, on_tick, 0, r->hc.interval_ms);
}

int router__health_start(struct router *r, char *err, size_t errlen)
{
    int rc = http_client_new(r->loop, &r->client);
    if (rc < 0) {
        snprintf(err, errlen, "health client: %s", strerror(-rc));
        return rc;
    }
    for (size_t i = 0; i < r->set->nedges; i++)
        health_init(r, &r->health[i], i, r->set->edges[i].name);
    uv_timer_init(r->loop, &r->hc_timer);
    r->hc_timer.data = r;
    uv_timer_start(&r->hc_timer, on_tick, 0, r->hc.interval_ms);
    return router__dash_start(r);
}

void router__health_stop(struct router *r)
{
    router__dash_stop(r); /* its reads run on the client freed below */
    if (!uv_is_closing((uv_handle_t *)&r->hc_timer))
        uv_close((uv_handle_t *)&r->hc_timer, NULL);
    if (r->client)
        http_client_free(&r->client); /* aborts running checks without calling done */
    for (size_t i = 0; i < r->set->nedges; i++) {
        struct router_edge_health *h = &r->health[i];
        if (h->easy)
            curl_easy_cleanup(h->easy);
        h->easy = NULL;
        buf_fini(&h->body);
        json_decref(h->models);
        h->models = NULL;
    }
}
