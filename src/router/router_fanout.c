/* src/router/router_fanout.c: one request to every edge the router knows, in parallel.
 *
 * Runs on an HTTP worker's loop through that worker's http_client (libcurl multi on the
 * loop), so an admin request that fans out never blocks the loop nor another worker. Each
 * edge's admin base URL is its health URL's scheme and authority (the health check is on
 * the edge's admin listener). An edge that gives no answer or a 5xx is tried again after
 * a backoff (25 ms, doubling) while attempts remain; the result of each edge is its last
 * attempt. done() is called once, on the loop, when every edge ended; the results are
 * the caller's for the call only.
 *
 * A fan-out in flight is on its worker's list (struct router_thr.fanouts), so that a
 * stopping worker ends it (router__fanout_stop_all): every edge still running gets the
 * error "router stopping" and done() runs before the loop closes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/mc.h"
#include "core/units.h"
#include "http/http_client.h"
#include "router/router_int.h"

#define FANOUT_MAGIC 0x464f5554u
#define FANOUT_BODY_MAX (1u << 20)

struct fo_target {
    struct router_fanout *fo;
    CURL *easy;
    struct buf body;
    struct curl_slist *hdrs;
    uv_timer_t timer;
    int timer_init;
    int running, finished;
};

struct router_fanout {
    unsigned magic;
    struct router_thr *thr;
    struct router_fanout *next;
    char *method, *path, *body, *token;
    size_t len;
    long timeout_ms;
    int retries;
    size_t n, left;
    unsigned closing; /* timer handles still closing */
    uint64_t t0_us;
    int stopping;
    struct fo_target *t;
    struct router_fanout_result *res;
    router_fanout_done_f *done;
    void *arg;
};

int router__admin_base(const char *health_url, char *out, size_t n)
{
    const char *p = strstr(health_url, "://");
    if (!p)
        return -EINVAL;
    const char *slash = strchr(p + 3, '/');
    size_t len = slash ? (size_t)(slash - health_url) : strlen(health_url);
    if (len + 1 > n)
        return -ENAMETOOLONG;
    memcpy(out, health_url, len);
    out[len] = 0;
    return 0;
}

static size_t on_body(char *p, size_t sz, size_t nm, void *arg)
{
    struct fo_target *t = arg;
    if (buf_append(&t->body, p, sz * nm) < 0)
        return 0;
    return sz * nm;
}

static void fo_free(struct router_fanout *fo)
{
    for (size_t i = 0; i < fo->n; i++) {
        buf_fini(&fo->t[i].body);
        curl_slist_free_all(fo->t[i].hdrs);
        free(fo->res[i].body);
    }
    free(fo->t);
    free(fo->res);
    free(fo->method);
    free(fo->path);
    free(fo->body);
    free(fo->token);
    MC_FREE_OBJ(fo);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct fo_target *t = h->data;
    struct router_fanout *fo = t->fo;
    if (--fo->closing == 0)
        fo_free(fo);
}

static void finish(struct router_fanout *fo)
{
    struct router_fanout **pp = &fo->thr->fanouts;
    while (*pp && *pp != fo)
        pp = &(*pp)->next;
    if (*pp)
        *pp = fo->next;
    double total = 0;
    for (size_t i = 0; i < fo->n; i++) {
        if (!fo->res[i].body)
            fo->res[i].body = mc_xstrdup("");
        if (fo->res[i].ms > total)
            total = fo->res[i].ms;
    }
    fo->done(fo->arg, fo->res, fo->n, total);
    /* The memory goes back once every timer handle has closed. */
    fo->closing = 1;
    for (size_t i = 0; i < fo->n; i++)
        if (fo->t[i].timer_init) {
            fo->closing++;
            uv_close((uv_handle_t *)&fo->t[i].timer, on_timer_closed);
        }
    if (--fo->closing == 0)
        fo_free(fo);
}

static void on_done(CURL *easy, CURLcode rc, void *arg);

static void start(struct fo_target *t)
{
    struct router_fanout *fo = t->fo;
    size_t i = (size_t)(t - fo->t);
    char url[ROUTER_URL_MAX + 256];

    t->easy = curl_easy_init();
    if (!t->easy) {
        snprintf(fo->res[i].error, sizeof(fo->res[i].error), "out of memory");
        goto failed;
    }
    buf_reset(&t->body);
    snprintf(url, sizeof(url), "%s%s", fo->res[i].url, fo->path);
    curl_easy_setopt(t->easy, CURLOPT_URL, url);
    curl_easy_setopt(t->easy, CURLOPT_CUSTOMREQUEST, fo->method);
    if (fo->body) {
        curl_easy_setopt(t->easy, CURLOPT_POSTFIELDS, fo->body);
        curl_easy_setopt(t->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)fo->len);
    }
    curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, t->hdrs);
    curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS, fo->timeout_ms);
    curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(t->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    if (http_client_add(fo->thr->client, t->easy, on_done, t) < 0) {
        curl_easy_cleanup(t->easy);
        t->easy = NULL;
        snprintf(fo->res[i].error, sizeof(fo->res[i].error), "cannot start the transfer");
        goto failed;
    }
    t->running = 1;
    return;
failed:
    t->finished = 1;
    fo->res[i].ms = (double)(units_now_us() - fo->t0_us) / 1e3;
    if (--fo->left == 0)
        finish(fo);
}

static void on_retry(uv_timer_t *h)
{
    struct fo_target *t = h->data;
    start(t);
}

static void on_done(CURL *easy, CURLcode rc, void *arg)
{
    struct fo_target *t = arg;
    struct router_fanout *fo = t->fo;
    size_t i = (size_t)(t - fo->t);
    struct router_fanout_result *r = &fo->res[i];
    long status = 0;

    MC_CHECK_OBJ_NOTNULL(fo, FANOUT_MAGIC);
    if (rc == CURLE_OK)
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(easy);
    t->easy = NULL;
    t->running = 0;
    r->attempts++;
    r->status = (int)status;
    r->ms = (double)(units_now_us() - fo->t0_us) / 1e3;
    if (rc != CURLE_OK)
        snprintf(r->error, sizeof(r->error), "%s", curl_easy_strerror(rc));
    else if (status >= 500)
        snprintf(r->error, sizeof(r->error), "HTTP %ld", status);
    else
        r->error[0] = 0;
    if ((rc != CURLE_OK || status >= 500) && r->attempts <= fo->retries && !fo->stopping) {
        if (!t->timer_init) {
            uv_timer_init(fo->thr->loop, &t->timer);
            t->timer.data = t;
            t->timer_init = 1;
        }
        uv_timer_start(&t->timer, on_retry, 25u << (r->attempts - 1), 0);
        return;
    }
    free(r->body);
    r->len = t->body.len;
    r->body = mc_xmalloc(t->body.len + 1);
    memcpy(r->body, t->body.data ? t->body.data : "", t->body.len);
    r->body[t->body.len] = 0;
    t->finished = 1;
    if (--fo->left == 0)
        finish(fo);
}

void router__fanout(struct router_thr *thr, const struct router_set *s,
                    const struct router_fanout_req *rq, router_fanout_done_f *done, void *arg)
{
    struct router_fanout *fo = mc_xcalloc(1, sizeof(*fo));
    char auth[600];

    MC_INIT_OBJ(fo, FANOUT_MAGIC);
    fo->thr = thr;
    fo->method = mc_xstrdup(rq->method);
    fo->path = mc_xstrdup(rq->path);
    if (rq->body) {
        fo->body = mc_xmalloc(rq->len + 1);
        memcpy(fo->body, rq->body, rq->len);
        fo->body[rq->len] = 0;
        fo->len = rq->len;
    }
    fo->token = rq->token ? mc_xstrdup(rq->token) : NULL;
    fo->timeout_ms = rq->timeout_ms > 0 ? rq->timeout_ms : 2000;
    fo->retries = rq->retries;
    fo->done = done;
    fo->arg = arg;
    fo->n = fo->left = s->nedges;
    fo->t = mc_xcalloc(fo->n ? fo->n : 1, sizeof(*fo->t));
    fo->res = mc_xcalloc(fo->n ? fo->n : 1, sizeof(*fo->res));
    fo->t0_us = units_now_us();
    fo->next = thr->fanouts;
    thr->fanouts = fo;
    for (size_t i = 0; i < fo->n; i++) {
        fo->t[i].fo = fo;
        buf_init(&fo->t[i].body, FANOUT_BODY_MAX);
        snprintf(fo->res[i].edge, sizeof(fo->res[i].edge), "%s", s->edges[i].name);
        if (router__admin_base(s->edges[i].health_url, fo->res[i].url, sizeof(fo->res[i].url)) < 0)
            snprintf(fo->res[i].url, sizeof(fo->res[i].url), "%s", s->edges[i].health_url);
        if (fo->body)
            fo->t[i].hdrs = curl_slist_append(fo->t[i].hdrs, "Content-Type: application/json");
        fo->t[i].hdrs = curl_slist_append(fo->t[i].hdrs, "Expect:");
        if (fo->token) {
            snprintf(auth, sizeof(auth), "Authorization: Bearer %s", fo->token);
            fo->t[i].hdrs = curl_slist_append(fo->t[i].hdrs, auth);
        }
    }
    if (fo->n == 0) {
        finish(fo);
        return;
    }
    /* start() may finish the fan-out (every transfer refused at once): keep n apart. */
    size_t n = fo->n;
    fo->left++;
    for (size_t i = 0; i < n; i++)
        start(&fo->t[i]);
    if (--fo->left == 0)
        finish(fo);
}

void router__fanout_stop_all(struct router_thr *thr)
{
    while (thr->fanouts) {
        struct router_fanout *fo = thr->fanouts;
        fo->stopping = 1;
        fo->left++;
        for (size_t i = 0; i < fo->n; i++) {
            struct fo_target *t = &fo->t[i];
            if (t->finished)
                continue;
            if (t->running) {
                http_client_cancel(thr->client, t->easy);
                curl_easy_cleanup(t->easy);
                t->easy = NULL;
                t->running = 0;
            }
            if (t->timer_init)
                uv_timer_stop(&t->timer);
            snprintf(fo->res[i].error, sizeof(fo->res[i].error), "router stopping");
            fo->res[i].status = 0;
            t->finished = 1;
            fo->left--;
        }
        fo->left--;
        finish(fo);
    }
}
