/* src/edge/edge_req.c: the public listener's request handling.
 *
 * First the request is made what the origin will see: the fields its Connection options
 * name are removed (RFC 9110 §7.6.1; never Host and the other end-to-end fields), and so
 * are the --strip-header fields, unkeyed fields that commonly change a response
 * (X-Forwarded-Host, X-Original-URL, method overrides...). The cache key, Vary and the
 * forwarded request are all computed from what is left, so nothing the origin's answer
 * depends on is missing from the key. The host is the request's single host (the
 * absolute-form authority replaces Host, RFC 9112 §3.2.2), both keyed and sent.
 *
 * The edge answers CONNECT (405) and OPTIONS * itself, and methods outside the standard
 * set (which includes "get": methods are case-sensitive) with 501 unless --extra-method
 * lets them through to the origin, uncached.
 *
 * GET and HEAD go through the cache, and this file decides every step of that walk: L1,
 * then the tier chain behind it (edge_tier.c, answering through tier_answered), the
 * RFC 9111 reuse decision for whatever tier answered (fresh hit,
 * stale-while-revalidate, revalidation), then a coalesced origin fetch on a miss
 * (edge_fetch.c). Bytes go to the client through edge_deliver.c.
 * Every other method, and requests with Authorization, are forwarded to the origin
 * (bypass); their responses are stored only when RFC 9111 §3.5 allows it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cache/cache_key.h"
#include "core/mc.h"
#include "core/units.h"
#include "edge/edge_int.h"
#include "http/http_range.h"
#include "edge/edge_routes.h"
#include "predict/predict.h"

int edge__primary_key(struct edge *e, const struct http_request *r, struct buf *out)
{
    return cache_key_primary(out, r->host, r->path, r->query, &e->keyopts);
}

/* ---- request hardening ---- */

/* Removed by default: request fields that frameworks and origins commonly let change a
 * response (the host or scheme of generated links and redirects, the path actually
 * served, the method) but that are not in the cache key. One client sending them could
 * otherwise have its variant stored for everyone (cache poisoning). The edge adds none
 * of them itself: what it adds (Via, X-Forwarded-For) is added after this, when the
 * request goes to the origin. */
static const char *const default_strip[] = {
    /* the host, scheme, port or prefix of generated links and redirects */
    "forwarded",
    "x-forwarded-host",
    "x-forwarded-server",
    "x-host",
    "x-forwarded-proto",
    "x-forwarded-scheme",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-ssl",
    "front-end-https",
    "x-url-scheme",
    /* the path actually served */
    "x-original-url",
    "x-rewrite-url",
    /* the method actually run */
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
};

/* Served by the edge (GET, HEAD through the cache; the rest forwarded), for Allow. */
static const char std_methods[] = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE";

static int is_token(const char *s)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";

    if (!*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr(extra, *s)))
            return 0;
    return 1;
}

static int listed_ci(const char *const *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(v[i], name) == 0)
            return 1;
    return 0;
}

int edge__req_init(struct edge *e, char *err, size_t errlen)
{
    const struct edge_cfg *c = &e->cfg;
    const char *const *strip = c->strip_headers ? c->strip_headers : default_strip;
    size_t nstrip = c->strip_headers ? c->n_strip : MC_ARRAY_SIZE(default_strip);
    struct buf b;

    for (size_t i = 0; i < c->n_key_headers; i++) {
        if (!is_token(c->key_headers[i])) {
            snprintf(err, errlen, "--key-header: '%s' is not a header field name",
                     c->key_headers[i]);
            return -EINVAL;
        }
    }
    e->strip = mc_xcalloc(nstrip ? nstrip : 1, sizeof(*e->strip));
    for (size_t i = 0; i < nstrip; i++) {
        if (c->strip_headers && strcmp(strip[i], "none") == 0)
            continue;
        if (!is_token(strip[i])) {
            snprintf(err, errlen, "--strip-header: '%s' is not a header field name", strip[i]);
            return -EINVAL;
        }
        /* A field that is part of the key reaches the origin: keying it is what makes it
         * safe to forward. */
        if (!listed_ci(c->key_headers, c->n_key_headers, strip[i]))
            e->strip[e->nstrip++] = (struct http_str){strip[i], strlen(strip[i])};
    }
    if (c->n_key_headers) {
        buf_init(&b, 64 * 1024);
        for (size_t i = 0; i < c->n_key_headers; i++) {
            if (i)
                buf_append(&b, ",", 1);
            for (const char *p = c->key_headers[i]; *p; p++) {
                char ch = (*p >= 'A' && *p <= 'Z') ? (char)(*p - 'A' + 'a') : *p;
                buf_append(&b, &ch, 1);
            }
        }
        e->key_vary = buf_take(&b, NULL);
    }
    buf_init(&b, 64 * 1024);
    buf_puts(&b, "Allow: ");
    buf_puts(&b, std_methods);
    for (size_t i = 0; i < c->n_extra_methods; i++) {
        const char *m = c->extra_methods[i];
        if (strcmp(m, "*") == 0) {
            e->any_method = 1;
            continue;
        }
        if (!is_token(m) || strlen(m) > 32) {
            snprintf(err, errlen, "--extra-method: '%s' is not a method name", m);
            buf_fini(&b);
            return -EINVAL;
        }
        buf_puts(&b, ", ");
        buf_puts(&b, m);
    }
    buf_puts(&b, "\r\n");
    e->allow = buf_take(&b, NULL);
    return 0;
}

void edge__req_fini(struct edge *e)
{
    free(e->strip);
    e->strip = NULL;
    free(e->key_vary);
    e->key_vary = NULL;
    free(e->allow);
    e->allow = NULL;
}

/* A method token outside the standard set: forwarded only when configured. */
static int method_forwarded(const struct edge *e, const struct http_request *r)
{
    if (r->method != HTTP_M_OTHER || e->any_method)
        return 1;
    for (size_t i = 0; i < e->cfg.n_extra_methods; i++) {
        const char *m = e->cfg.extra_methods[i];
        /* Case-sensitive (RFC 9110 §9.1): allowing "PROPFIND" does not allow "propfind". */
        if (strlen(m) == r->method_str.len && memcmp(m, r->method_str.p, r->method_str.len) == 0)
            return 1;
    }
    return 0;
}

/* Requests the edge answers itself, before anything is looked up or forwarded. Returns 1
 * when it answered. */
static int answer_here(struct edge *e, struct http_exchange *x, const struct http_request *r)
{
    char msg[160];

    if (r->method == HTTP_M_CONNECT) {
        /* RFC 9110 §9.3.6: CONNECT asks a forward proxy for a tunnel; a reverse proxy has
         * none to give. Forwarded, it would reach the origin as "CONNECT /". A client
         * that goes on to send tunnel bytes must not have them read as requests. */
        static const char body[] =
            "{\"error\":\"CONNECT is not served: this is a reverse proxy\",\"status\":405}\n";
        struct buf h;
        buf_init(&h, 64 * 1024);
        buf_puts(&h, e->allow);
        buf_puts(&h, "Content-Type: application/json\r\nCache-Control: no-store\r\n");
        http_x_close_after(x);
        http_x_respond(x, 405, h.data, body, sizeof(body) - 1);
        buf_fini(&h);
        return 1;
    }
    if (r->method == HTTP_M_OPTIONS && r->target.len == 1 && r->target.p[0] == '*') {
        /* RFC 9110 §9.3.7: OPTIONS * is about the server itself, and the server the client
         * talks to is this edge. An empty 200 carries Content-Length: 0 (ibid.). */
        http_x_respond(x, 200, e->allow, "", 0);
        return 1;
    }
    if (!method_forwarded(e, r)) {
        /* RFC 9110 §9.1: methods are case-sensitive, so "get" is not GET; an unknown
         * method is not implemented here unless --extra-method says to forward it. */
        snprintf(msg, sizeof(msg), "method not implemented: %.*s (methods are case-sensitive)",
                 (int)r->method_str.len, r->method_str.p);
        http_x_error(x, 501, msg);
        return 1;
    }
    return 0;
}

/* ---- the walk of a cacheable GET/HEAD: L1, the tiers, reuse, fetch ---- */

static void fetch_or_504(struct edge_worker *w, struct http_exchange *x, const char *key,
                         size_t klen, const struct edge_rctx *rc);

/* RFC 9111 §4: answers from a stored object of any tier: fresh, stale-while-revalidate
 * (§4.2.4 with RFC 5861), or revalidate. */
void edge__serve_stored(struct edge_worker *w, struct http_exchange *x, const char *key,
                        size_t klen, struct cache_obj *o, enum edge_level lv,
                        const struct edge_rctx *rc)
{
    struct edge *e = w->e;
    const struct http_request *r = http_x_request(x);
    struct http_req_info qi;
    char cs[160];
    int64_t age = edge_obj_age(o, units_wall_s());

    http_req_info_from_request(&qi, r);
    enum http_reuse reuse = http_cache_reuse(&qi, &o->info, o->lifetime, age);
    switch (edge__inval_verdict(e, key, klen, o)) {
    case CACHE_BAN_NONE: break;
    case CACHE_BAN_HARD:
        /* Banned: a miss, and every copy goes (the tier it came from included). It is no
         * base for a revalidation either: a 304 would bring it back. */
        edge__tier_drop(w, key, klen);
        fetch_or_504(w, x, key, klen, rc);
        return;
    case CACHE_BAN_SOFT:
        /* Soft-invalidated: stale. Served while one refresh runs (the busy table makes
         * it one), unless the response said it must not be served stale (RFC 9111
         * §4.2.4): then revalidated first. */
        if (o->info.cc.must_revalidate || o->info.cc.proxy_revalidate || o->info.cc.no_cache ||
            reuse == HTTP_REUSE_REVALIDATE) {
            edge__fetch_cacheable(w, x, key, klen, o, rc);
            return;
        }
        edge__fetch_background(w, r, key, klen, o, rc);
        edge__deliver_obj(e, x, o, EDGE_XC_STALE, lv, "mlcdn; hit; detail=soft-purged");
        return;
    }
    switch (reuse) {
    case HTTP_REUSE_FRESH:
        edge__cache_status(cs, sizeof(cs), "mlcdn; hit; ttl=", o->lifetime - age, NULL);
        edge__deliver_obj(e, x, o, EDGE_XC_HIT, lv, cs);
        break;
    case HTTP_REUSE_STALE_OK:
        edge__cache_status(cs, sizeof(cs), "mlcdn; hit; ttl=", o->lifetime - age,
                           "; detail=stale-while-revalidate");
        /* Before answering: the request and the key are not valid once it ended. */
        edge__fetch_background(w, r, key, klen, o, rc);
        edge__deliver_obj(e, x, o, EDGE_XC_STALE, lv, cs);
        break;
    case HTTP_REUSE_REVALIDATE: edge__fetch_cacheable(w, x, key, klen, o, rc); break;
    }
}

/* A GET for one byte range, without If-Range (which the origin is not asked with: a
 * request that carries one gets the whole object fetched, as before). */
static int single_range(const struct http_request *r)
{
    struct http_range_answer a;

    if (r->method != HTTP_M_GET || !http_request_header(r, "range") ||
        http_request_header(r, "if-range"))
        return 0;
    /* Any size will do to tell one range from several or from an invalid one. */
    http_range_answer(r, UINT64_C(1) << 62, NULL, 0, -1, &a);
    return a.status == 206;
}

/* Every tier missed: the parent or the origin, unless the client only wants a copy
 * (RFC 9111 §5.2.1.7). */
static void fetch_or_504(struct edge_worker *w, struct http_exchange *x, const char *key,
                         size_t klen, const struct edge_rctx *rc)
{
    struct http_req_info qi;

    http_req_info_from_request(&qi, http_x_request(x));
    if (qi.cc.only_if_cached) {
        edge__deliver_error(w->e, x, 504, EDGE_XC_MISS, EDGE_LV_L1,
                            "not in cache and the request says only-if-cached");
        return;
    }
    if (single_range(http_x_request(x)) && !(rc && rc->body)) {
        edge__fetch_range(w, x, key, klen, rc); /* parts kept, or a Range upstream */
        return;
    }
    edge__fetch_cacheable(w, x, key, klen, NULL, rc);
}

/* The answer of the tier chain (edge_tier.c): the reuse step for a tier's object, the
 * parent or the origin when every tier missed. */
static void tier_answered(struct edge_worker *w, struct http_exchange *x, const char *key,
                          size_t klen, const struct edge_rctx *rc, enum edge_level lv,
                          struct cache_obj *o)
{
    if (w->stopping)
        http_x_error(x, 503, "the edge is stopping");
    else if (o)
        edge__serve_stored(w, x, key, klen, o, lv, rc);
    else
        fetch_or_504(w, x, key, klen, rc);
    cache_obj_unref(&o);
}

/* L1, then the tier chain behind it. */
static void cache_walk(struct edge_worker *w, struct http_exchange *x, const char *key, size_t klen,
                       const struct edge_rctx *rc)
{
    struct cache_obj *o = NULL;

    if (l1_lookup(w->e->l1, key, klen, http_x_request(x), &o) == 0) {
        edge__serve_stored(w, x, key, klen, o, EDGE_LV_L1, rc);
        cache_obj_unref(&o);
        return;
    }
    edge__tier_walk(w, x, key, klen, rc, tier_answered);
}

/* ---- POST routes cached by their body (edge_routes.h) ---- */

struct route_post {
    struct edge_worker *w;
    struct http_exchange *x;
    const struct edge_route *rt; /* in settings, which the request keeps until its end */
    struct edge_rt *settings;    /* ref */
    struct buf key;              /* primary key, then the body part */
    struct buf body;
    int too_large;
};

static void route_post_free(struct route_post *rp)
{
    buf_fini(&rp->key);
    buf_fini(&rp->body);
    edge__rt_unref(&rp->settings);
    free(rp);
}

/* The whole body is here: key it, then go through the tiers like a GET. */
static void route_post_run(struct route_post *rp)
{
    struct http_exchange *x = rp->x;
    char err[256];

    if (rp->too_large) {
        snprintf(err, sizeof(err), "request body over the route's limit of %llu bytes (%s)",
                 (unsigned long long)rp->rt->max_body, rp->rt->prefix);
        http_x_error(x, 413, err);
        route_post_free(rp);
        return;
    }
    int rc = edge__route_key(rp->rt, http_x_request(x), rp->body.data ? rp->body.data : "",
                             rp->body.len, &rp->key, err, sizeof(err));
    if (rc != 0) {
        http_x_error(x, rc == -EFBIG ? 413 : 400, rc == -E2BIG ? "request key too long" : err);
        route_post_free(rp);
        return;
    }
    struct edge_rctx rctx = {rp->body.data ? rp->body.data : "", rp->body.len, rp->rt->ttl_s};
    cache_walk(rp->w, x, rp->key.data, rp->key.len, &rctx);
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
    rp->settings = edge__rt_ref(edge__rt(w));
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

void edge__public_handle(struct http_exchange *x, void *arg)
{
    struct edge *e = arg;
    struct edge_worker *w = http_x_worker(x);
    const struct http_request *r = http_x_request(x);
    struct http_req_info qi;
    struct buf *kb = &w->key_scratch;

    if (r->method == HTTP_M_PURGE) {
        http_x_error(x, 403, "PURGE is accepted on the admin listener only");
        return;
    }
    if (answer_here(e, x, r))
        return;
    /* From here on the request is what the origin will see (top of file). */
    http_request_strip_connection(http_x_request_edit(x));
    http_request_strip_fields(http_x_request_edit(x), e->strip, e->nstrip);
    if (via_loop(e, r)) {
        http_x_error(x, 508, "request loop: this edge already forwarded this request (Via)");
        return;
    }
    if (e->predict && predict_handle(e->predict, w->pl, x))
        return;
    struct edge_rt *cur = edge__rt(w);
    if (cur->norigins == 0) {
        /* An inference-only edge (--models, no --origin): nothing else exists here. */
        http_x_error(x, 404,
                     "no origin is configured (--origin): this edge serves only predictions "
                     "(POST /predict, POST /batch_predict, /v2/...)");
        return;
    }
    const struct edge_route *rt =
        cur->routes ? edge__routes_match(cur->routes, r->path.p, r->path.len, r->method) : NULL;
    buf_reset(kb);
    if (cache_key_primary_ex(kb, r->host, r->path, r->query, &e->keyopts, rt ? &rt->query : NULL)) {
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
        edge__fetch_pass(w, x, key, klen);
        return;
    }
    struct edge_rctx rctx = {NULL, 0, rt ? rt->ttl_s : -1};
    const struct edge_rctx *rc = rt && rt->ttl_s >= 0 ? &rctx : NULL;
    cache_walk(w, x, key, klen, rc);
}
