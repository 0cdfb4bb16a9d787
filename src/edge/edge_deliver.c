/* src/edge/edge_deliver.c: every byte the edge sends to a client from a cached response
 * or one still arriving from the origin.
 *
 * Conditional requests (304/412), single Range requests (206/416, If-Range: one helper for
 * complete and streaming bodies), HEAD and full responses, with the edge's own headers
 * (Age, X-Cache, X-Cache-Level, X-Edge-Region, Cache-Status). Memory bodies are written
 * straight from the object's chunks; the object reference is held until the last write
 * completed, so an eviction in the meantime cannot free the bytes being sent.
 *
 * File-backed bodies (L2 hits, and responses above --max-mem-object) are sent with
 * sendfile, window by window; a window whose pages are not in the page cache is read
 * ahead in the thread pool first, so a loop never waits on the disk.
 *
 * This file calls nothing else of the request path (edge_req.c, edge_tier.c,
 * edge_fetch.c): a streaming owner is told of completed writes through a callback. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/mc.h"
#include "core/units.h"
#include "edge/edge_int.h"
#include "http/http_range.h"

#define NAME(n) #n,
static const char *const xc_names[EDGE_XC__N] = {EDGE_XC_LIST(NAME)};
static const char *const lv_names[EDGE_LV__N] = {EDGE_LV_LIST(NAME)};
#undef NAME

const char *edge__xc_name(enum edge_xc xc)
{
    return xc_names[xc];
}

const char *edge__lv_name(enum edge_level lv)
{
    return lv_names[lv];
}

void edge__count(struct edge *e, struct http_exchange *x, int status, enum edge_xc xc,
                 enum edge_level lv, uint64_t bytes)
{
    struct http_x_note *n = http_x_note(x);
    /* The durations are measured to the last byte, in edge__on_done. */
    n->cache = xc_names[xc];
    n->level = lv_names[lv];
    n->sub = (int)lv + 1;
    metrics_counter_add(e->m.req[xc][lv], 1);
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

void edge__cache_status(char *out, size_t n, const char *prefix, int64_t v, const char *suffix)
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

void edge__deliver_headers(struct edge *e, struct buf *h, const struct cache_obj *o,
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

/* ---- sending file-backed bodies ---- */

struct fsend {
    uv_work_t work;
    struct http_exchange *x;
    struct cache_obj *o;
    int fd;
    uint64_t base, pos, end, inflight;
    int in_step, again, failed;
};

/* Is the last byte of [off, off+n) in the page cache? Windows are read ahead (and files
 * written) front to back, so the last page being there says the window is. RWF_NOWAIT
 * reads fail with EAGAIN instead of going to the disk (EOPNOTSUPP on old kernels: no). */
static int resident(int fd, uint64_t off, uint64_t n)
{
    char c;
    struct iovec iov = {&c, 1};
    return preadv2(fd, &iov, 1, (off_t)(off + (n ? n - 1 : 0)), RWF_NOWAIT) == 1;
}

/* A body that fits one window and was found whole in the page cache within the last
 * RESIDENT_TRUST_MS is sent without asking again: pages read that recently sit on the
 * active list, and the probe was a tenth of an L2 hit's CPU. Only reclaim within that
 * second could make such a send wait on the disk. */
#define RESIDENT_TRUST_MS 1000u

static int window_resident(struct fsend *s, uint64_t n)
{
    struct cache_body *b = s->o->body;
    uint64_t now = uv_now(http_x_loop(s->x));
    int whole = s->pos == 0 && n == cache_body_len(b);

    if (whole) {
        uint64_t seen = atomic_load_explicit(&b->resident_ms, memory_order_relaxed);
        if (seen && now - seen < RESIDENT_TRUST_MS)
            return 1;
    }
    if (!resident(s->fd, s->base + s->pos, n))
        return 0;
    if (whole)
        atomic_store_explicit(&b->resident_ms, now ? now : 1, memory_order_relaxed);
    return 1;
}

static void fs_step(struct fsend *s);

static void fs_finish(struct fsend *s)
{
    http_x_end(s->x);
    cache_obj_unref(&s->o);
    free(s);
}

static void fs_sent(void *arg)
{
    struct fsend *s = arg;
    s->pos += s->inflight;
    s->inflight = 0;
    if (s->in_step)
        s->again = 1; /* completed inside http_x_sendfile_fd: fs_step loops */
    else
        fs_step(s);
}

static void fs_prefetch_work(uv_work_t *req)
{
    struct fsend *s = req->data;
    readahead(s->fd, (off64_t)(s->base + s->pos),
              (size_t)MC_MIN(s->end - s->pos, (uint64_t)EDGE_FILE_WINDOW));
}

static void fs_send_window(struct fsend *s)
{
    uint64_t n = MC_MIN(s->end - s->pos, (uint64_t)EDGE_FILE_WINDOW);
    s->inflight = n;
    s->in_step = 1;
    s->again = 0;
    int rc = http_x_sendfile_fd(s->x, s->fd, s->base + s->pos, n, fs_sent, s);
    s->in_step = 0;
    if (rc != 0)
        s->failed = 1;
}

static void fs_prefetch_after(uv_work_t *req, int status)
{
    struct fsend *s = req->data;
    (void)status;
    fs_send_window(s);
    if (s->failed || s->again)
        fs_step(s);
}

static void fs_step(struct fsend *s)
{
    for (;;) {
        if (s->failed || s->pos >= s->end) {
            fs_finish(s);
            return;
        }
        uint64_t n = MC_MIN(s->end - s->pos, (uint64_t)EDGE_FILE_WINDOW);
        if (!window_resident(s, n)) {
            s->work.data = s;
            if (uv_queue_work(http_x_loop(s->x), &s->work, fs_prefetch_work, fs_prefetch_after) ==
                0)
                return;
        }
        fs_send_window(s);
        if (!s->failed && !s->again)
            return; /* fs_sent continues */
    }
}

static void send_file(struct http_exchange *x, struct cache_obj *o, uint64_t first, uint64_t end)
{
    struct fsend *s = mc_xcalloc(1, sizeof(*s));
    s->x = x;
    s->o = cache_obj_ref(o);
    s->fd = cache_body_file(o->body, &s->base);
    s->pos = first;
    s->end = end;
    MC_ASSERT(s->fd >= 0);
    fs_step(s);
}

/* ---- complete objects ---- */

/* The reference a body send holds on its object (arg: the object, counted): no wrapper is
 * allocated, as this runs for every hit. */
static void send_done(void *arg)
{
    struct cache_obj *o = arg;
    cache_obj_unref(&o);
}

int edge__range_answer(const struct http_request *r, const struct cache_obj *o, uint64_t size,
                       uint64_t *first, uint64_t *last, struct buf *h)
{
    struct http_range_answer a;

    if (!http_request_header(r, "range"))
        return 0;
    http_range_answer(r, size, o->etag, o->etag ? strlen(o->etag) : 0, o->info.last_modified, &a);
    if (a.status == 200)
        return 0;
    buf_printf(h, "Content-Range: %s\r\n", a.content_range);
    if (a.status == 206) {
        *first = a.first;
        *last = a.first + a.len - 1;
    }
    return a.status;
}

void edge__deliver_error(struct edge *e, struct http_exchange *x, int status, enum edge_xc xc,
                         enum edge_level lv, const char *msg)
{
    edge__count(e, x, status, xc, lv, 0);
    http_x_error(x, status, msg);
}

void edge__deliver_obj(struct edge *e, struct http_exchange *x, struct cache_obj *o,
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
    edge__deliver_headers(e, h, o, xc, lv, cache_status);
    if ((r->method == HTTP_M_GET || r->method == HTTP_M_HEAD) && status >= 200 && status < 300) {
        int cond = http_cache_conditional(r, o->etag, o->etag ? strlen(o->etag) : 0,
                                          o->info.last_modified);
        if (cond == 304 || cond == 412) {
            edge__count(e, x, cond, xc, lv, 0);
            http_x_respond(x, cond, h->data, NULL, 0);
            return;
        }
    }
    if ((r->method == HTTP_M_GET || r->method == HTTP_M_HEAD) && status == 200) {
        int rr = edge__range_answer(r, o, size, &first, &last, h);
        if (rr == 416) {
            edge__count(e, x, 416, xc, lv, 0);
            http_x_respond(x, 416, h->data, NULL, 0);
            return;
        }
        if (rr == 206)
            status = 206;
    }
    if (status == 200 && !o->has_accept_ranges)
        buf_puts(h, "Accept-Ranges: bytes\r\n");
    uint64_t end = status == 206 ? last + 1 : size;
    if (status != 206)
        first = 0;
    http_x_start(x, status, h->data, (int64_t)(end - first));
    edge__count(e, x, status, xc, lv, r->method == HTTP_M_HEAD ? 0 : end - first);
    if (r->method != HTTP_M_HEAD && end > first && cache_body_file(o->body, NULL) >= 0) {
        send_file(x, o, first, end); /* ends the exchange */
        return;
    }
    int sfd = cache_body_sendfile_fd(o->body);
    if (r->method != HTTP_M_HEAD && end > first && sfd >= 0) {
        struct cache_obj *ref = cache_obj_ref(o);
        if (http_x_sendfile(x, sfd, first, (size_t)(end - first), o->body->map + first, send_done,
                            ref) != 0)
            send_done(ref);
    } else if (r->method != HTTP_M_HEAD && end > first) {
        struct cache_body_cursor cur;
        cache_body_cursor_seek(&cur, o->body, first);
        struct cache_obj *ref = cache_obj_ref(o);
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

/* ---- responses still arriving (a fill's waiters) ---- */

#define SEND_SPAN_MAX (256u << 10)
#define SEND_FILE_MAX (4u << 20) /* bytes per sendfile call of a file-backed body */

enum edge_stream_rc edge__stream_start(struct edge *e, struct http_exchange *x,
                                       struct edge_stream *s, struct cache_obj *o, int range_ok,
                                       int no_body, enum edge_xc xc, enum edge_level lv,
                                       const char *cache_status)
{
    struct buf h;
    const struct http_request *r = http_x_request(x);
    int64_t clen = o->body->expected;
    int status = o->status, rr = 0;
    uint64_t first = 0, last = 0;

    buf_init(&h, SIZE_MAX);
    if (range_ok && r->method == HTTP_M_GET && status == 200 && clen >= 0)
        rr = edge__range_answer(r, o, (uint64_t)clen, &first, &last, &h);
    if (rr != 416 && r->method != HTTP_M_HEAD && !no_body &&
        cache_body_state(o->body) == CACHE_BODY_FILLING &&
        cache_body_len(o->body) <= (rr == 206 ? first : 0)) {
        buf_fini(&h);
        return EDGE_STREAM_WAIT;
    }
    if (cache_body_state(o->body) == CACHE_BODY_FAILED) {
        buf_fini(&h);
        return EDGE_STREAM_FAILED;
    }
    /* The stored headers first, then the Content-Range computed above. */
    struct buf full;
    buf_init(&full, SIZE_MAX);
    edge__deliver_headers(e, &full, o, xc, lv, cache_status);
    if (h.len)
        buf_append(&full, h.data, h.len);
    buf_fini(&h);
    if (rr == 416) {
        edge__count(e, x, 416, xc, lv, 0);
        http_x_respond(x, 416, full.data, NULL, 0);
        buf_fini(&full);
        return EDGE_STREAM_DONE;
    }
    if (rr == 206) {
        status = 206;
        s->range = 1;
        clen = (int64_t)(last - first + 1);
    }
    http_x_start(x, status, full.data, clen);
    buf_fini(&full);
    edge__count(e, x, status, xc, lv, 0);
    s->obj = cache_obj_ref(o);
    s->limit = s->range ? last + 1 : UINT64_MAX;
    s->pos = s->range ? first : 0;
    cache_body_cursor_init(&s->cur, o->body);
    if (r->method == HTTP_M_HEAD || o->status == 304 || o->status == 204) {
        http_x_end(x);
        return EDGE_STREAM_DONE;
    }
    return EDGE_STREAM_PUMP;
}

static void stream_written(void *arg)
{
    struct edge_stream *s = arg;
    s->writing = 0;
    if (!s->in_pump)
        s->wake(s->arg);
}

int edge__stream_pump(struct edge *e, struct http_exchange *x, struct edge_stream *s,
                      enum edge_level lv)
{
    uint64_t foff = 0;
    int fd = cache_body_file(s->obj->body, &foff);

    while (!s->writing) {
        const char *span = NULL;
        size_t n = 0;
        uint64_t pub = cache_body_len(s->obj->body);
        uint64_t pos = fd >= 0 ? s->pos : s->cur.pos;
        if (pos >= s->limit)
            break; /* a range is complete even while the rest of the body arrives */
        if (fd >= 0) {
            if (pub > pos)
                n = (size_t)MC_MIN(MC_MIN(pub, s->limit) - pos, (uint64_t)SEND_FILE_MAX);
        } else if (s->cur.pos < s->pos) {
            if (pub >= s->pos) {
                cache_body_cursor_seek(&s->cur, s->obj->body, s->pos);
                continue;
            }
        } else {
            n = cache_body_next(&s->cur, s->obj->body, s->limit, SEND_SPAN_MAX, &span);
        }
        if (n) {
            s->writing = 1;
            s->sent += n;
            metrics_counter_add(e->m.bytes_served, n);
            metrics_counter_add(e->m.bytes_by_level[lv], n);
            s->in_pump = 1;
            int err;
            if (fd >= 0) {
                s->pos += n;
                err = http_x_sendfile_fd(x, fd, foff + pos, n, stream_written, s);
            } else {
                err = http_x_write(x, span, n, stream_written, s);
            }
            s->in_pump = 0;
            if (err != 0) {
                s->writing = 0;
                http_x_end(x);
                return 1;
            }
            continue; /* written at once: go on; else stream_written wakes the owner */
        }
        enum cache_body_state st = cache_body_state(s->obj->body);
        if (st == CACHE_BODY_FILLING)
            return 0; /* woken again when more bytes arrive */
        if (st == CACHE_BODY_COMPLETE && pos < cache_body_len(s->obj->body) &&
            (fd >= 0 || s->cur.pos >= s->pos))
            continue; /* bytes published together with the state change */
        if (st == CACHE_BODY_FAILED || (s->range && pos < s->limit)) {
            /* The body did not arrive whole: the client must see an incomplete response
             * (no last chunk, a short Content-Length body), never a clean end. */
            http_x_abort(x);
            return 1;
        }
        break;
    }
    if (s->writing)
        return 0;
    http_x_end(x);
    return 1;
}

void edge__stream_abandon(struct http_exchange *x, int started)
{
    if (started)
        http_x_end(x);
    else
        http_x_respond(x, 502, NULL, NULL, 0);
}
