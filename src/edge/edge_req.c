/* src/edge/edge_req.c: the public listener's request handling.
 *
 * GET and HEAD go through the cache: L1 lookup, then the RFC 9111 reuse decision (fresh
 * hit, stale-while-revalidate, revalidation), then a coalesced origin fetch on a miss.
 * Every other method, and requests with Authorization, are forwarded to the origin
 * (bypass); their responses are stored only when RFC 9111 §3.5 allows it. */
#include <errno.h>
#include <stdio.h>

#include "cache/cache_key.h"
#include "core/mc.h"
#include "core/units.h"
#include "edge/edge_int.h"

int edge_primary_key(struct edge *e, const struct http_request *r, struct buf *out)
{
    struct http_str host = r->abs_host.len ? r->abs_host : r->host;
    return cache_key_primary(out, host, r->path, r->query, &e->keyopts);
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
    char cs[160];

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
    buf_reset(kb);
    if (edge_primary_key(e, r, kb) != 0) {
        http_x_error(x, 400, "invalid request target (bad percent-encoding or too long)");
        return;
    }
    /* The fetch paths copy the key: the scratch buffer is free again after this call. */
    const char *key = kb->data;
    size_t klen = kb->len;
    http_req_info_from_request(&qi, r);
    if ((r->method != HTTP_M_GET && r->method != HTTP_M_HEAD) || qi.has_authorization) {
        edge_fetch_pass(w, x, key, klen);
        return;
    }
    if (l1_lookup(e->l1, key, klen, r, &o) == 0) {
        int64_t age = edge_obj_age(o, units_wall_s());
        switch (http_cache_reuse(&qi, &o->info, o->lifetime, age)) {
        case HTTP_REUSE_FRESH:
            edge_cache_status(cs, sizeof(cs), "mlcdn; hit; ttl=", o->lifetime - age, NULL);
            edge_deliver_obj(e, x, o, EDGE_XC_HIT, EDGE_LV_L1, cs);
            break;
        case HTTP_REUSE_STALE_OK:
            edge_cache_status(cs, sizeof(cs), "mlcdn; hit; ttl=", o->lifetime - age,
                              "; detail=stale-while-revalidate");
            /* Before answering: the request and the key are not valid once it ended. */
            edge_fetch_background(w, r, key, klen, o);
            edge_deliver_obj(e, x, o, EDGE_XC_STALE, EDGE_LV_L1, cs);
            break;
        case HTTP_REUSE_REVALIDATE:
            edge_fetch_cacheable(w, x, key, klen, o);
            break;
        }
        cache_obj_unref(&o);
        return;
    }
    if (qi.cc.only_if_cached) {
        edge_count(e, x, 504, EDGE_XC_MISS, EDGE_LV_L1, 0);
        http_x_error(x, 504, "not in cache and the request says only-if-cached");
        return;
    }
    edge_fetch_cacheable(w, x, key, klen, NULL);
}
