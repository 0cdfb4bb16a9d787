/* src/ctl/ctl_workload.c: the mixed workload of `mlcdn run` and its table (ctl_world.h).
 *
 * Every region gets the same kind of list of requests, drawn with a fixed seed per region:
 * assets (model files, an embedding table), API responses (popular ones more often, as
 * a Zipf law gives) and predictions (a few feature rows asked again and again). The list
 * is replayed twice by `users` concurrent clients per region, all regions at once on one
 * libcurl multi handle: first through the region's nearest edge, then straight to the
 * origin (predictions: to the model server next to it). Each way goes through the delay
 * relays, so the figures carry the emulated distance. The origin's bytes served are read
 * from its /metrics around the first pass: what it sent to the edges, against what the
 * users received through them, is the origin bandwidth saved. */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mc.h"
#include "ctl/ctl_world.h"

enum wl_kind { WL_ASSET, WL_API, WL_PREDICT };

struct wl_req {
    enum wl_kind kind;
    char path[64];
    char body[1024]; /* predictions: the JSON body */
};

enum { WL_L1, WL_L2, WL_REDIS, WL_ORIGIN, WL_OTHER, WL_NLEVELS };

struct wl_region {
    const struct world_target *t;
    struct wl_req *req;
    size_t nreq;
    double *lat[2]; /* milliseconds, per way (0 edge, 1 origin) */
    size_t nlat[2];
    double *hit_lat; /* the edge's answers from a cache (any tier, or the prediction cache) */
    size_t nhit;
    unsigned errors[2];
    uint64_t levels[WL_NLEVELS], pred_hit, pred_miss, bytes_users;
};

struct wl_user {
    CURL *h;
    struct wl_region *reg;
    size_t next, step;
    const struct wl_req *cur;
    char level[16], xcache[16];
    uint64_t bytes;
};

static const char *const assets[] = {
    "/models/ranker/3/config.json", "/models/ranker/3/config.json",
    "/embeddings/items.bin",        "/index.txt",
    "/models/ranker/3/weights.bin",
};

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* 1..n, item k with a weight of 1/k. */
static unsigned zipf(uint64_t *s, unsigned n)
{
    double h = 0, x;
    for (unsigned k = 1; k <= n; k++)
        h += 1.0 / k;
    x = (double)(rng_next(s) % 1000000) / 1e6 * h;
    for (unsigned k = 1; k <= n; k++) {
        x -= 1.0 / k;
        if (x <= 0)
            return k;
    }
    return n;
}

static void make_requests(struct wl_region *r, size_t ri, const struct world_workload_cfg *cfg)
{
    uint64_t s = 0x9e3779b97f4a7c15ull ^ (ri + 1) * 0x2545f4914f6cdd1dull;
    size_t nmodels = 0;

    while (cfg->models && cfg->models[nmodels])
        nmodels++;
    r->req = mc_xcalloc(cfg->requests, sizeof(*r->req));
    r->nreq = cfg->requests;
    for (size_t i = 0; i < r->nreq; i++) {
        struct wl_req *q = &r->req[i];
        unsigned dice = (unsigned)(rng_next(&s) % 10);
        if (dice < 3) {
            q->kind = WL_ASSET;
            snprintf(q->path, sizeof(q->path), "%s", assets[zipf(&s, MC_ARRAY_SIZE(assets)) - 1]);
        } else if (dice < 7 || nmodels == 0) {
            q->kind = WL_API;
            unsigned k = zipf(&s, 11);
            if (k == 1)
                snprintf(q->path, sizeof(q->path), "/api/features.json");
            else
                snprintf(q->path, sizeof(q->path), "/api/items/%u.json", k - 1);
        } else {
            size_t m = (size_t)(rng_next(&s) % nmodels);
            unsigned row = zipf(&s, 8), dims = cfg->model_dims[m];
            int n = snprintf(q->body, sizeof(q->body), "{\"model\":\"%s\",\"features\":[",
                             cfg->models[m]);
            for (unsigned j = 0; j < dims && n < (int)sizeof(q->body) - 16; j++)
                n += snprintf(q->body + n, sizeof(q->body) - (size_t)n, "%s%.2f", j ? "," : "",
                              (double)((row * 31 + j * 7) % 100) / 100.0);
            snprintf(q->body + n, sizeof(q->body) - (size_t)n, "]}");
            q->kind = WL_PREDICT;
            snprintf(q->path, sizeof(q->path), "/predict");
        }
    }
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct wl_user *u = arg;
    (void)p;
    u->bytes += size * n;
    return size * n;
}

static void header_value(const char *line, size_t len, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    if (len <= nl + 1 || strncasecmp(line, name, nl) || line[nl] != ':')
        return;
    const char *v = line + nl + 1;
    size_t vl = len - nl - 1;
    while (vl && (*v == ' ' || *v == '\t'))
        v++, vl--;
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
        vl--;
    snprintf(out, outlen, "%.*s", (int)MC_MIN(vl, outlen - 1), v);
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct wl_user *u = arg;
    header_value(p, size * n, "X-Cache-Level", u->level, sizeof(u->level));
    header_value(p, size * n, "X-Cache", u->xcache, sizeof(u->xcache));
    return size * n;
}

/* Starts the user's next request on its way, or returns 0 when its share is done. */
static int user_start(CURLM *m, struct wl_user *u, int way)
{
    const struct world_target *t = u->reg->t;
    char url[256];

    if (u->next >= u->reg->nreq)
        return 0;
    u->cur = &u->reg->req[u->next];
    u->next += u->step;
    const char *base = way == 0                                      ? t->edge_url
                     : u->cur->kind == WL_PREDICT && t->model_url[0] ? t->model_url
                                                                     : t->origin_url;
    snprintf(url, sizeof(url), "%s%s", base, u->cur->path);
    u->level[0] = u->xcache[0] = '\0';
    u->bytes = 0;
    curl_easy_setopt(u->h, CURLOPT_URL, url);
    if (u->cur->kind == WL_PREDICT)
        curl_easy_setopt(u->h, CURLOPT_POSTFIELDS, u->cur->body);
    else
        curl_easy_setopt(u->h, CURLOPT_HTTPGET, 1L);
    curl_multi_add_handle(m, u->h);
    return 1;
}

static void user_done(struct wl_user *u, int way, CURLcode res)
{
    struct wl_region *r = u->reg;
    long status = 0;
    curl_off_t us = 0;

    curl_easy_getinfo(u->h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(u->h, CURLINFO_TOTAL_TIME_T, &us);
    if (res != CURLE_OK || status != 200) {
        if (r->errors[way]++ < 3)
            fprintf(stderr, "mlcdn run: workload %s %s: %s\n", r->t->region->name, u->cur->path,
                    res != CURLE_OK ? curl_easy_strerror(res) : "status not 200");
        return;
    }
    double ms = (double)us / 1000.0;
    r->lat[way][r->nlat[way]++] = ms;
    if (way != 0)
        return;
    if (!strcmp(u->xcache, "HIT"))
        r->hit_lat[r->nhit++] = ms;
    if (u->cur->kind == WL_PREDICT) {
        if (!strcmp(u->xcache, "HIT"))
            r->pred_hit++;
        else
            r->pred_miss++;
        return;
    }
    r->bytes_users += u->bytes;
    static const char *const names[] = {"L1", "L2", "REDIS", "ORIGIN"};
    size_t lv = WL_OTHER;
    for (size_t i = 0; i < MC_ARRAY_SIZE(names); i++)
        if (!strcmp(u->level, names[i]))
            lv = i;
    r->levels[lv]++;
}

static void run_way(struct wl_region *regs, size_t n, unsigned users, int way)
{
    CURLM *m = curl_multi_init();
    size_t nu = n * users, running = 0;
    struct wl_user *u = mc_xcalloc(nu, sizeof(*u));
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");

    for (size_t i = 0; i < nu; i++) {
        u[i].reg = &regs[i / users];
        u[i].next = i % users;
        u[i].step = users;
        u[i].h = curl_easy_init();
        curl_easy_setopt(u[i].h, CURLOPT_PRIVATE, &u[i]);
        curl_easy_setopt(u[i].h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(u[i].h, CURLOPT_WRITEDATA, &u[i]);
        curl_easy_setopt(u[i].h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(u[i].h, CURLOPT_HEADERDATA, &u[i]);
        curl_easy_setopt(u[i].h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(u[i].h, CURLOPT_TIMEOUT, 30L);
        curl_easy_setopt(u[i].h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(u[i].h, CURLOPT_NOPROXY, "*");
        running += (size_t)user_start(m, &u[i], way);
    }
    while (running) {
        int still, left;
        curl_multi_perform(m, &still);
        CURLMsg *msg;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct wl_user *w;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&w);
            CURLcode res = msg->data.result;
            curl_multi_remove_handle(m, w->h);
            user_done(w, way, res);
            if (!user_start(m, w, way))
                running--;
        }
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    for (size_t i = 0; i < nu; i++)
        curl_easy_cleanup(u[i].h);
    curl_slist_free_all(hdrs);
    curl_multi_cleanup(m);
    free(u);
}

static size_t on_metrics(char *p, size_t size, size_t n, void *arg)
{
    char **buf = arg;
    size_t have = *buf ? strlen(*buf) : 0, add = size * n;
    if (have + add > (4u << 20))
        return 0;
    *buf = mc_xrealloc(*buf, have + add + 1);
    memcpy(*buf + have, p, add);
    (*buf)[have + add] = '\0';
    return add;
}

/* The origin's mlcdn_origin_bytes_served_total, or -1. */
static double origin_bytes(const char *url)
{
    char *body = NULL;
    double v = -1;
    CURL *h = curl_easy_init();

    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_metrics);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 5L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    if (curl_easy_perform(h) == CURLE_OK && body) {
        const char *name = "\nmlcdn_origin_bytes_served_total ";
        const char *p = strstr(body, name);
        if (p)
            v = strtod(p + strlen(name), NULL);
    }
    free(body);
    curl_easy_cleanup(h);
    return v;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), cmp_double);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[MC_MIN(i, n - 1)];
}

int world_workload_run(const struct world_target *t, size_t n, const struct world_workload_cfg *cfg)
{
    struct wl_region *regs = mc_xcalloc(n, sizeof(*regs));
    unsigned users = cfg->users ? cfg->users : 1;
    uint64_t lv[WL_NLEVELS] = {0}, ph = 0, pm = 0, ub = 0;
    unsigned errors = 0;

    for (size_t i = 0; i < n; i++) {
        regs[i].t = &t[i];
        make_requests(&regs[i], i, cfg);
        for (int w = 0; w < 2; w++)
            regs[i].lat[w] = mc_xcalloc(regs[i].nreq, sizeof(double));
        regs[i].hit_lat = mc_xcalloc(regs[i].nreq, sizeof(double));
    }
    double before = origin_bytes(cfg->origin_metrics);
    run_way(regs, n, users, 0);
    double after = origin_bytes(cfg->origin_metrics);
    run_way(regs, n, users, 1);

    printf("\nworkload: %zu requests per region and way (assets, API responses%s), %u users per "
           "region\n",
           cfg->requests, cfg->models && cfg->models[0] ? ", predictions" : "", users);
    printf("%-12s %10s %10s | %9s %9s %9s | %9s %9s | %8s\n", "", "rtt ms", "rtt ms", "nearest",
           "edge", "its hits", "straight", "to origin", "p50");
    printf("%-12s %10s %10s | %9s %9s %9s | %9s %9s | %8s\n", "region", "user-edge", "user-orig",
           "p50 ms", "p99 ms", "p50 ms", "p50 ms", "p99 ms", "speed-up");
    for (size_t i = 0; i < n; i++) {
        struct wl_region *r = &regs[i];
        const struct world_region *g = r->t->region;
        double e50 = pct(r->lat[0], r->nlat[0], 0.5), e99 = pct(r->lat[0], r->nlat[0], 0.99);
        double o50 = pct(r->lat[1], r->nlat[1], 0.5), o99 = pct(r->lat[1], r->nlat[1], 0.99);
        double h50 = pct(r->hit_lat, r->nhit, 0.5);
        printf("%-12s %10u %10u | %9.1f %9.1f %9.1f | %9.1f %9.1f | %7.1fx\n", g->name,
               g->rtt_user_ms, world_rtt_user_origin(g), e50, e99, h50, o50, o99,
               e50 > 0 ? o50 / e50 : 0.0);
        for (int k = 0; k < WL_NLEVELS; k++)
            lv[k] += r->levels[k];
        ph += r->pred_hit;
        pm += r->pred_miss;
        ub += r->bytes_users;
        errors += r->errors[0] + r->errors[1];
    }
    uint64_t cached = lv[WL_L1] + lv[WL_L2] + lv[WL_REDIS] + lv[WL_ORIGIN] + lv[WL_OTHER];
    double den = cached ? (double)cached : 1;
    printf("tiers (assets and API through the edges): L1 %.0f%%, L2 %.0f%%, Redis %.0f%%, "
           "origin %.0f%%; predictions cached %.0f%%\n",
           100.0 * (double)lv[WL_L1] / den, 100.0 * (double)lv[WL_L2] / den,
           100.0 * (double)lv[WL_REDIS] / den, 100.0 * (double)lv[WL_ORIGIN] / den,
           ph + pm ? 100.0 * (double)ph / (double)(ph + pm) : 0.0);
    if (before >= 0 && after >= before && ub > 0)
        printf("origin bandwidth: the users got %.1f MB through the edges, the origin sent them "
               "%.1f MB: %.0f%% saved\n",
               (double)ub / 1e6, (after - before) / 1e6,
               100.0 * (1.0 - (after - before) / (double)ub));
    if (errors)
        printf("errors: %u requests failed (see above)\n", errors);
    fflush(stdout);
    for (size_t i = 0; i < n; i++) {
        free(regs[i].req);
        free(regs[i].lat[0]);
        free(regs[i].lat[1]);
        free(regs[i].hit_lat);
    }
    free(regs);
    return errors ? -EIO : 0;
}

/* ---- round-trip times ---- */

#define WL_RTT_BATCH 12

struct rtt_probe {
    CURL *h;
    double *out; /* the fastest so far, ms */
    unsigned left, done;
};

static size_t on_discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

static void rtt_measure_some(const struct world_target *t, size_t n, unsigned samples,
                             struct world_rtt *out)
{
    /* Per region: the edge and the origin through the users' relays, the origin through
     * the edge's relay, then the edge and the origin straight. */
    enum { P_EDGE, P_USER_ORIGIN, P_EDGE_ORIGIN, P_EDGE_DIRECT, P_ORIGIN_DIRECT, P_N };
    CURLM *m = curl_multi_init();
    struct rtt_probe *p = mc_xcalloc(P_N * n, sizeof(*p));
    double *best = mc_xcalloc(P_N * n, sizeof(*best));
    struct curl_slist *hdrs = curl_slist_append(NULL, "X-Origin-Latency: 0");
    size_t running = 0;

    for (size_t i = 0; i < P_N * n; i++) {
        const struct world_target *g = &t[i / P_N];
        const char *const base[P_N] = {g->edge_url, g->origin_url, g->edge_origin_url,
                                       g->edge_direct_url, g->origin_direct_url};
        char url[128];
        p[i].out = &best[i];
        p[i].left = samples + 1;
        p[i].h = curl_easy_init();
        snprintf(url, sizeof(url), "%s/index.txt", base[i % P_N]);
        curl_easy_setopt(p[i].h, CURLOPT_URL, url);
        curl_easy_setopt(p[i].h, CURLOPT_PRIVATE, &p[i]);
        curl_easy_setopt(p[i].h, CURLOPT_WRITEFUNCTION, on_discard);
        curl_easy_setopt(p[i].h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(p[i].h, CURLOPT_TIMEOUT, 10L);
        curl_easy_setopt(p[i].h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(p[i].h, CURLOPT_NOPROXY, "*");
        curl_multi_add_handle(m, p[i].h);
        running++;
    }
    while (running) {
        int still, left;
        CURLMsg *msg;
        curl_multi_perform(m, &still);
        while ((msg = curl_multi_info_read(m, &left))) {
            struct rtt_probe *q;
            curl_off_t us = 0;
            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&q);
            curl_easy_getinfo(q->h, CURLINFO_TOTAL_TIME_T, &us);
            int ok = msg->data.result == CURLE_OK;
            curl_multi_remove_handle(m, q->h);
            /* The first request pays the handshake too; it only opens the connection. */
            if (ok && q->done++ > 0 && (*q->out == 0 || (double)us / 1000.0 < *q->out))
                *q->out = (double)us / 1000.0;
            if (ok && --q->left > 0)
                curl_multi_add_handle(m, q->h); /* the same handle: the connection is kept */
            else
                running--;
        }
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    for (size_t i = 0; i < n; i++) {
        const double *b = &best[i * P_N];
        int direct = b[P_EDGE_DIRECT] > 0 && b[P_ORIGIN_DIRECT] > 0;
        out[i].user_edge = direct && b[P_EDGE] > 0 ? b[P_EDGE] - b[P_EDGE_DIRECT] : 0;
        out[i].user_origin = direct && b[P_USER_ORIGIN] > 0 ? b[P_USER_ORIGIN] - b[P_ORIGIN_DIRECT]
                                                            : 0;
        out[i].edge_origin = direct && b[P_EDGE_ORIGIN] > 0 ? b[P_EDGE_ORIGIN] - b[P_ORIGIN_DIRECT]
                                                            : 0;
    }
    for (size_t i = 0; i < P_N * n; i++)
        curl_easy_cleanup(p[i].h);
    curl_slist_free_all(hdrs);
    curl_multi_cleanup(m);
    free(p);
    free(best);
}

void world_rtt_measure(const struct world_target *t, size_t n, unsigned samples,
                       struct world_rtt *out)
{
    /* A few regions at a time: a burst of hundreds of connections through one relay
     * process would queue behind itself and measure the queue. */
    for (size_t i = 0; i < n; i += WL_RTT_BATCH)
        rtt_measure_some(t + i, MC_MIN(WL_RTT_BATCH, n - i), samples, out + i);
}

static double deviation(double measured, unsigned configured)
{
    return configured ? fabs(measured - configured) / configured : 0;
}

double world_rtt_print(const struct world_target *t, size_t n, const struct world_rtt *m)
{
    double worst = 0;
    const char *worst_name = "", *worst_path = "";
    double worst_ms = 0;
    unsigned worst_cfg = 0, failed = 0;

    if (n <= 8)
        printf("\nround-trip times the relays add (the fastest of a few small requests on a "
               "kept-alive connection, less the same straight to the server):\n");
    for (size_t i = 0; i < n; i++) {
        const struct world_region *g = t[i].region;
        const double v[3] = {m[i].user_edge, m[i].user_origin, m[i].edge_origin};
        const unsigned cfg[3] = {g->rtt_user_ms, world_rtt_user_origin(g), g->rtt_origin_ms};
        static const char *const path[3] = {"user-edge", "user-origin", "edge-origin"};
        if (n <= 8)
            printf("  %-12s user-edge %6.1f ms (configured %3u)  user-origin %6.1f ms "
                   "(configured %3u)  edge-origin %6.1f ms (configured %3u)\n",
                   g->name, v[0], cfg[0], v[1], cfg[1], v[2], cfg[2]);
        for (int k = 0; k < 3; k++) {
            failed += v[k] == 0;
            if (v[k] > 0 && deviation(v[k], cfg[k]) > worst) {
                worst = deviation(v[k], cfg[k]);
                worst_name = g->name;
                worst_path = path[k];
                worst_ms = v[k];
                worst_cfg = cfg[k];
            }
        }
    }
    printf("round-trip times: %zu paths measured, the furthest from its configured value is "
           "%s %s, %.1f ms for %u (%.1f%%)%s\n",
           3 * n - failed, worst_name, worst_path, worst_ms, worst_cfg, 100.0 * worst,
           failed ? "; some paths did not answer" : "");
    fflush(stdout);
    return worst;
}
