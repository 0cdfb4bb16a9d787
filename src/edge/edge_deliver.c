/* src/edge/edge_deliver.c: answering a client from a stored object.
 *
 * Conditional requests (304/412), single Range requests (206/416, If-Range), HEAD and
 * full responses, with the edge's own headers (Age, X-Cache, X-Cache-Level,
 * X-Edge-Region, Cache-Status). Bodies are written straight from the object's chunks;
 * the object reference is held until the last write completed, so an eviction in the
 * meantime cannot free the bytes being sent. */
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "core/mc.h"
#include "core/units.h"
#include "edge/edge_int.h"

static const char *const xc_names[EDGE_XC__N] = {"HIT", "MISS", "STALE", "BYPASS"};
static const char *const lv_names[EDGE_LV__N] = {"L1", "L2", "REDIS", "PARENT", "ORIGIN"};

const char *edge_xc_name(enum edge_xc xc)
{
    return xc_names[xc];
}

const char *edge_lv_name(enum edge_level lv)
{
    return lv_names[lv];
}

int64_t edge_obj_age(const struct cache_obj *o, int64_t now)
{
    return http_current_age(&o->info, o->request_time, o->response_time, now);
}

void edge_count(struct edge *e, struct http_exchange *x, int status, enum edge_xc xc,
                enum edge_level lv, uint64_t bytes)
{
    metrics_counter_add(e->m.req[xc][lv], 1);
    metrics_hist_observe(e->m.latency[lv], units_now_us() - http_x_start_us(x));
    if (status >= 100 && status < 600)
        metrics_counter_add(e->m.status[status / 100], 1);
    if (bytes) {
        metrics_counter_add(e->m.bytes_served, bytes);
        metrics_counter_add(e->m.bytes_by_level[lv], bytes);
    }
    if (xc == EDGE_XC_HIT || xc == EDGE_XC_STALE)
        atomic_fetch_add_explicit(&e->hits, 1, memory_order_relaxed);
    else if (xc == EDGE_XC_MISS)
        atomic_fetch_add_explicit(&e->misses, 1, memory_order_relaxed);
}

void edge_cache_status(char *out, size_t n, const char *prefix, int64_t v, const char *suffix)
{
    size_t pl = strlen(prefix), sl = suffix ? strlen(suffix) : 0;
    char num[21];
    size_t nl = 0;

    if (v < 0)
        num[nl++] = '-';
    nl += mc_u64_digits(v < 0 ? (uint64_t)(-(v + 1)) + 1 : (uint64_t)v, num + nl);
    if (pl + nl + sl + 1 > n) {
        out[0] = '\0';
        return;
    }
    memcpy(out, prefix, pl);
    memcpy(out + pl, num, nl);
    memcpy(out + pl + nl, suffix ? suffix : "", sl);
    out[pl + nl + sl] = '\0';
}

void edge_deliver_headers(struct edge *e, struct buf *h, const struct cache_obj *o,
                          enum edge_xc xc, enum edge_level lv, const char *cache_status)
{
    int64_t age = edge_obj_age(o, units_wall_s());

    if (o->hdrs_len)
        buf_append(h, o->hdrs, o->hdrs_len);
    buf_append(h, "Age: ", 5);
    buf_append_u64(h, (uint64_t)(age < 0 ? 0 : age));
    buf_append(h, "\r\nX-Cache: ", 11);
    buf_puts(h, xc_names[xc]);
    buf_append(h, "\r\nX-Cache-Level: ", 17);
    buf_puts(h, lv_names[lv]);
    buf_append(h, "\r\nX-Edge-Region: ", 17);
    buf_puts(h, e->cfg.region);
    buf_append(h, "\r\nCache-Status: ", 16);
    buf_puts(h, cache_status);
    buf_append(h, "\r\n", 2);
}

struct send_ref {
    struct cache_obj *o;
};

static void send_done(void *arg)
{
    struct send_ref *s = arg;
    cache_obj_unref(&s->o);
    free(s);
}

void edge_deliver_obj(struct edge *e, struct http_exchange *x, struct cache_obj *o,
                      enum edge_xc xc, enum edge_level lv, const char *cache_status)
{
    const struct http_request *r = http_x_request(x);
    uint64_t size = cache_body_len(o->body), first = 0, last = size ? size - 1 : 0;
    int status = o->status;
    struct edge_worker *w = http_x_worker(x);
    struct buf *h = &w->hdr_scratch;

    /* Built in the loop's scratch buffer, which http_x_start/http_x_respond copy: it is not
     * touched after them (ending the exchange may run the next pipelined request). */
    buf_reset(h);
    edge_deliver_headers(e, h, o, xc, lv, cache_status);
    if ((r->method == HTTP_M_GET || r->method == HTTP_M_HEAD) && status >= 200 && status < 300) {
        int cond = http_cache_conditional(r, o->etag, o->etag ? strlen(o->etag) : 0,
                                          o->info.last_modified);
        if (cond == 304 || cond == 412) {
            edge_count(e, x, cond, xc, lv, 0);
            http_x_respond(x, cond, h->data, NULL, 0);
            return;
        }
    }
    if ((r->method == HTTP_M_GET || r->method == HTTP_M_HEAD) && status == 200) {
        const struct http_header *rg = http_request_header(r, "range");
        if (rg && http_range_if_range_ok(r, o->etag, o->etag ? strlen(o->etag) : 0,
                                         o->info.last_modified)) {
            int rr = http_range_parse(rg->value.p, rg->value.len, size, &first, &last);
            if (rr == -416) {
                buf_printf(h, "Content-Range: bytes */%llu\r\n", (unsigned long long)size);
                edge_count(e, x, 416, xc, lv, 0);
                http_x_respond(x, 416, h->data, NULL, 0);
                    return;
            }
            if (rr == 1) {
                status = 206;
                buf_printf(h, "Content-Range: bytes %llu-%llu/%llu\r\n",
                           (unsigned long long)first, (unsigned long long)last,
                           (unsigned long long)size);
            }
        }
    }
    if (status == 200 && !o->has_accept_ranges)
        buf_puts(h, "Accept-Ranges: bytes\r\n");
    uint64_t end = status == 206 ? last + 1 : size;
    if (status != 206)
        first = 0;
    http_x_start(x, status, h->data, (int64_t)(end - first));
    edge_count(e, x, status, xc, lv, r->method == HTTP_M_HEAD ? 0 : end - first);
    if (r->method != HTTP_M_HEAD && end > first && cache_body_file(o->body, NULL) >= 0) {
        edge_send_file(x, o, first, end); /* ends the exchange */
        return;
    }
    int sfd = cache_body_sendfile_fd(o->body);
    if (r->method != HTTP_M_HEAD && end > first && sfd >= 0) {
        struct send_ref *ref = mc_xmalloc(sizeof(*ref));
        ref->o = cache_obj_ref(o);
        if (http_x_sendfile(x, sfd, first, (size_t)(end - first), o->body->map + first, send_done,
                            ref) != 0)
            send_done(ref);
    } else if (r->method != HTTP_M_HEAD && end > first) {
        struct cache_body_cursor cur;
        cache_body_cursor_seek(&cur, o->body, first);
        struct send_ref *ref = mc_xmalloc(sizeof(*ref));
        ref->o = cache_obj_ref(o);
        const char *span;
        size_t n;
        while ((n = cache_body_next(&cur, o->body, end, SIZE_MAX, &span)) != 0) {
            int lastspan = cur.pos >= end;
            if (http_x_write(x, span, n, lastspan ? send_done : NULL, lastspan ? ref : NULL) != 0) {
                send_done(ref);
                ref = NULL;
                break;
            }
            if (lastspan) {
                ref = NULL;
                break;
            }
        }
        if (ref)
            send_done(ref); /* fewer bytes than announced: cannot happen for complete bodies */
    }
    http_x_end(x);
}
