/* src/edge/edge_req.c: the public listener's request handling.
 *
 * GET and HEAD go through the cache: L1 lookup, then the RFC 9111 reuse decision (fresh
 * hit, stale-while-revalidate, revalidation), then a coalesced origin fetch on a miss.
 * Every other method, and requests with Authorization, are forwarded to the origin
 * (bypass); their responses are stored only when RFC 9111 §3.5 allows it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "cache/cache_key.h"
#include "core/mc.h"
#include "core/units.h"
#include "edge/edge_int.h"
#include "edge/edge_routes.h"

int edge_primary_key(struct edge *e, const struct http_request *r, struct buf *out)
{
    struct http_str host = r->abs_host.len ? r->abs_host : r->host;
    return cache_key_primary(out, host, r->path, r->query, &e->keyopts);
}

/* ---- POST routes cached by their body (edge_routes.h) ---- */

struct route_post {
    struct edge_worker *w;
    struct http_exchange *x;
    const struct edge_route *rt;
    struct buf key;  /* primary key, then the body part */
    struct buf body;
    int too_large;
};

static void route_post_free(struct route_post *rp)
{
    buf_fini(&rp->key);
    buf_fini(&rp->body);
    free(rp);
}

/* The whole body is here: key it, then go through the tiers like a GET. */
static void route_post_run(struct route_post *rp)
{
    struct edge *e = rp->w->e;
    struct http_exchange *x = rp->x;
    char err[256];
    struct cache_obj *o = NULL;

    if (rp->too_large) {
        snprintf(err, sizeof(err), "request body over the route's limit of %llu bytes (%s)",
                 (unsigned long long)rp->rt->max_body, rp->rt->prefix);
        http_x_error(x, 413, err);
        route_post_free(rp);
        return;
    }
    int rc = edge_route_key(rp->rt, http_x_request(x), rp->body.data ? rp->body.data : "",
                            rp->body.len, &rp->key, err, sizeof(err));
    if (rc != 0) {
        http_x_error(x, rc == -EFBIG ? 413 : 400, rc == -E2BIG ? "request key too long" : err);
        route_post_free(rp);
        return;
    }
    struct edge_rctx rctx = {rp->body.data ? rp->body.data : "", rp->body.len, rp->rt->ttl_s};
    if (l1_lookup(e->l1, rp->key.data, rp->key.len, http_x_request(x), &o) == 0) {
        edge_serve_stored(rp->w, x, rp->key.data, rp->key.len, o, EDGE_LV_L1, &rctx);
        cache_obj_unref(&o);
    } else {
        edge_tier_miss(rp->w, x, rp->key.data, rp->key.len, &rctx);
    }
    route_post_free(rp);
}

static void route_post_data(struct http_exchange *x, const char *data, size_t len, void *arg)
{
    struct route_post *rp = arg;
    (void)x;
    if (rp->too_large || rp->body.len + len > rp->rt->max_body ||
        buf_append(&rp->body, data, len) != 0)
        rp->too_large = 1; /* the rest is read and dropped; 413 at the end */
}

static void route_post_end(struct http_exchange *x, int err, const char *msg, void *arg)
{
    struct route_post *rp = arg;
    if (err) {
        http_x_error(x, -err, msg);
        route_post_free(rp);
        return;
    }
    route_post_run(rp);
}

static void route_post(struct edge_worker *w, struct http_exchange *x, const struct edge_route *rt,
                       const char *key, size_t klen)
{
    const struct http_request *r = http_x_request(x);
    char err[160];

    if (r->content_length >= 0 && (uint64_t)r->content_length > rt->max_body) {
        snprintf(err, sizeof(err), "request body over the route's limit of %llu bytes (%s)",
                 (unsigned long long)rt->max_body, rt->prefix);
        http_x_error(x, 413, err);
        return;
    }
    struct route_post *rp = mc_xcalloc(1, sizeof(*rp));
    rp->w = w;
    rp->x = x;
    rp->rt = rt;
    buf_init(&rp->key, 64 * 1024);
    buf_init(&rp->body, rt->max_body + 1);
    buf_append(&rp->key, key, klen);
    if (!http_x_body_streaming(x)) {
        size_t blen;
        const char *b = http_x_body(x, &blen);
        route_post_data(x, b, blen, rp);
        route_post_run(rp);
        return;
    }
    http_x_body_stream(x, route_post_data, route_post_end, rp);
}

/* Did this request already pass through this node? Each hop of Via is
 * "proto received-by [comment]"; ours is "1.1 <name> (mlcdn)". */
static int via_loop(const struct edge *e, const struct http_request *r)
{
    size_t nl = strlen(e->name);
    for (size_t i = 0; i < r->nheaders; i++) {
        if (!http_str_ieq(r->headers[i].name, "via"))
            continue;
        const char *p = r->headers[i].value.p, *end = p + r->headers[i].value.len;
        for (; p + nl <= end; p++) {
            if (memcmp(p, e->name, nl) == 0 && (p == r->headers[i].value.p || p[-1] == ' ') &&
                (p + nl == end || p[nl] == ' ' || p[nl] == ','))
                return 1;
        }
    }
    return 0;
}

void edge_public_handle(struct http_exchange *x, void *arg)
{
    struct edge *e = arg;
    struct edge_worker *w = http_x_worker(x);
    const struct http_request *r = http_x_request(x);
    struct http_req_info qi;
    struct cache_obj *o = NULL;
    struct buf *kb = &w->key_scratch;

    if (r->method == HTTP_M_PURGE) {
        http_x_error(x, 403, "PURGE is accepted on the admin listener only");
        return;
    }
    if (via_loop(e, r)) {
        http_x_error(x, 508, "request loop: this edge already forwarded this request (Via)");
        return;
    }
    if (e->models && edge_predict_route(e, x))
        return;
    const struct edge_route *rt =
        e->routes ? edge_routes_match(e->routes, r->path.p, r->path.len, r->method) : NULL;
    struct http_str host = r->abs_host.len ? r->abs_host : r->host;
    buf_reset(kb);
    if (cache_key_primary_ex(kb, host, r->path, r->query, &e->keyopts, rt ? &rt->query : NULL)) {
        http_x_error(x, 400, "invalid request target (bad percent-encoding or too long)");
        return;
    }
    /* The fetch paths copy the key: the scratch buffer is free again after this call. */
    const char *key = kb->data;
    size_t klen = kb->len;
    http_req_info_from_request(&qi, r);
    if (rt && r->method == HTTP_M_POST && rt->key_body != EDGE_ROUTE_BODY_NONE &&
        !qi.has_authorization) {
        route_post(w, x, rt, key, klen);
        return;
    }
    if ((r->method != HTTP_M_GET && r->method != HTTP_M_HEAD) || qi.has_authorization) {
        edge_fetch_pass(w, x, key, klen);
        return;
    }
    struct edge_rctx rctx = {NULL, 0, rt ? rt->ttl_s : -1};
    const struct edge_rctx *rc = rt && rt->ttl_s >= 0 ? &rctx : NULL;
    if (l1_lookup(e->l1, key, klen, r, &o) == 0) {
        edge_serve_stored(w, x, key, klen, o, EDGE_LV_L1, rc);
        cache_obj_unref(&o);
        return;
    }
    edge_tier_miss(w, x, key, klen, rc);
}
