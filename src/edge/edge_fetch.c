/* src/edge/edge_fetch.c: origin fetches, request coalescing and streaming to waiters.
 *
 * A fill runs one libcurl transfer on its owner's loop. Its response becomes a
 * struct cache_obj as soon as the header block is complete, and the body is appended
 * to that object's body as it arrives, so every waiter (on any worker) streams it to its
 * client while it is still arriving. When the transfer ends, a storable response is put
 * into L1 and the fill leaves the busy table. A transfer that fails before a response
 * is retried on the next origin for idempotent requests; otherwise every waiter gets a
 * 502 (504 on timeouts), or the stale object when stale-if-error allows it. Upstreams
 * whose circuit breaker is open (edge_origin.h) are not asked at all. See edge_int.h for
 * the threading and refcount rules. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cache/cache_disk.h"
#include "cache/cache_key.h"
#include "core/log.h"
#include "core/mc.h"
#include "core/units.h"
#include "edge/edge_int.h"
#include "edge/edge_origin.h"
#include "http/http_proxy.h"

#define RESP_HDRS_MAX (64u << 10)
#define UPLOAD_HIGH (1u << 20) /* pause the client above this many buffered body bytes */
#define UPLOAD_LOW (256u << 10)

static void waiter_pump(struct edge_waiter *wt);
static void waiter_wake(void *arg);
static int fill_start_transfer(struct edge_fill *f);
static void fetch_pass(struct edge_worker *w, struct http_exchange *x, const char *pkey,
                       size_t plen, const struct edge_rctx *rc);

/* ---- request copies ---- */

/* Deep copy of a parsed request: the strings are rebased into one owned buffer, so a fill
 * can compute Vary keys after the client that started it went away. */
struct req_copy {
    struct http_request r;
    char *buf;
};

static struct req_copy *req_clone(const struct http_request *r)
{
    struct req_copy *c = mc_xmalloc(sizeof(*c));
    const char *base = r->method_str.p, *end = r->target.p + r->target.len;

    for (size_t i = 0; i < r->nheaders; i++) {
        const char *he = r->headers[i].value.p + r->headers[i].value.len;
        const char *ne = r->headers[i].name.p + r->headers[i].name.len;
        if (he > end)
            end = he;
        if (ne > end)
            end = ne;
    }
    size_t n = (size_t)(end - base);
    c->r = *r;
    c->buf = mc_xmalloc(n + 1);
    memcpy(c->buf, base, n);
    c->buf[n] = '\0';
#define REBASE(s)                                                                                  \
    do {                                                                                           \
        if ((s).p)                                                                                 \
            (s).p = c->buf + ((s).p - base);                                                       \
    } while (0)
    REBASE(c->r.method_str);
    REBASE(c->r.target);
    REBASE(c->r.path);
    REBASE(c->r.query);
    REBASE(c->r.abs_host);
    REBASE(c->r.host);
    for (size_t i = 0; i < c->r.nheaders; i++) {
        REBASE(c->r.headers[i].name);
        REBASE(c->r.headers[i].value);
    }
#undef REBASE
    return c;
}

static void req_copy_free(struct req_copy *c)
{
    if (!c)
        return;
    free(c->buf);
    free(c);
}

/* ---- fills ---- */

struct fill_ext {
    struct req_copy *req; /* the starting request */
    char peer[64];        /* its client's address, for X-Forwarded-For */
};

static struct edge_fill *fill_new(struct edge_worker *w, const char *pkey, size_t plen)
{
    struct edge_fill *f = mc_xcalloc(1, sizeof(*f) + sizeof(struct fill_ext));
    MC_INIT_OBJ(f, EDGE_FILL_MAGIC);
    atomic_init(&f->refcnt, 1);
    f->e = w->e;
    f->owner = w;
    f->rt = edge__rt_ref(edge__rt(w));
    f->pkey = mc_xstrndup(pkey, plen);
    f->plen = plen;
    f->fail_status = 502;
    f->route_ttl_s = -1;
    pthread_mutex_init(&f->mtx, NULL);
    buf_init(&f->resp_hdrs, RESP_HDRS_MAX);
    /* Room for --request-buffer (or the streaming high mark) and one read of the client. */
    buf_init(&f->upload, MC_MAX(f->rt->cfg.request_buffer, (uint64_t)UPLOAD_HIGH) + (1u << 20));
    return f;
}

static struct fill_ext *fill_ext(struct edge_fill *f)
{
    return (struct fill_ext *)(void *)(f + 1);
}

static struct edge_fill *fill_ref(struct edge_fill *f)
{
    MC_CHECK_OBJ_NOTNULL(f, EDGE_FILL_MAGIC);
    atomic_fetch_add(&f->refcnt, 1);
    return f;
}

static void fill_unref(struct edge_fill **fp)
{
    struct edge_fill *f = *fp;

    *fp = NULL;
    if (!f)
        return;
    MC_CHECK_OBJ_NOTNULL(f, EDGE_FILL_MAGIC);
    if (atomic_fetch_sub(&f->refcnt, 1) != 1)
        return;
    MC_ASSERT(f->easy == NULL && !f->in_busy && f->waiters == NULL);
    cache_obj_unref(&f->obj);
    cache_obj_unref(&f->stale);
    for (unsigned i = 0; i < f->ninterim; i++)
        free(f->interim[i]);
    req_copy_free(fill_ext(f)->req);
    buf_fini(&f->resp_hdrs);
    buf_fini(&f->upload);
    free(f->pkey);
    free(f->url_path);
    free(f->method);
    free(f->req_body);
    free(f->vkey);
    edge__rt_unref(&f->rt);
    pthread_mutex_destroy(&f->mtx);
    MC_FREE_OBJ(f);
}

/* ---- busy table ---- */

void edge__busy_init(struct edge *e)
{
    for (size_t i = 0; i < EDGE_BUSY_SHARDS; i++)
        pthread_mutex_init(&e->busy[i].mtx, NULL);
}

static uint64_t pkey_hash(const char *pkey, size_t plen)
{
    uint8_t h[16];
    uint64_t v;
    cache_key_hash(pkey, plen, h);
    memcpy(&v, h, sizeof(v));
    return v;
}

/* Returns a referenced fill for pkey: the running one (*leader = 0) or `fresh`, which is
 * then registered (*leader = 1). */
static struct edge_fill *busy_join(struct edge *e, struct edge_fill *fresh, int *leader)
{
    struct edge_busy_shard *s = &e->busy[fresh->phash % EDGE_BUSY_SHARDS];
    struct edge_fill *f;

    pthread_mutex_lock(&s->mtx);
    for (f = s->head; f; f = f->busy_next) {
        if (f->phash == fresh->phash && f->plen == fresh->plen &&
            memcmp(f->pkey, fresh->pkey, f->plen) == 0) {
            fill_ref(f);
            f->joined++;
            pthread_mutex_unlock(&s->mtx);
            *leader = 0;
            return f;
        }
    }
    fresh->busy_next = s->head;
    s->head = fresh;
    fresh->in_busy = 1;
    fill_ref(fresh); /* the table's reference */
    pthread_mutex_unlock(&s->mtx);
    *leader = 1;
    return fill_ref(fresh);
}

/* The fill running for pkey (a new reference), or NULL. */
static struct edge_fill *busy_find(struct edge *e, const char *pkey, size_t plen)
{
    uint64_t h = pkey_hash(pkey, plen);
    struct edge_busy_shard *s = &e->busy[h % EDGE_BUSY_SHARDS];
    struct edge_fill *f;

    pthread_mutex_lock(&s->mtx);
    for (f = s->head; f; f = f->busy_next)
        if (f->phash == h && f->plen == plen && memcmp(f->pkey, pkey, plen) == 0)
            break;
    if (f) {
        fill_ref(f);
        f->joined++;
    }
    pthread_mutex_unlock(&s->mtx);
    return f;
}

static void busy_leave(struct edge_fill *f)
{
    struct edge_busy_shard *s = &f->e->busy[f->phash % EDGE_BUSY_SHARDS];
    int was = 0;

    pthread_mutex_lock(&s->mtx);
    for (struct edge_fill **pp = &s->head; *pp; pp = &(*pp)->busy_next) {
        if (*pp == f) {
            *pp = f->busy_next;
            f->in_busy = 0;
            was = 1;
            break;
        }
    }
    pthread_mutex_unlock(&s->mtx);
    if (was)
        fill_unref(&f);
}

/* ---- waking waiters across loops ---- */

static void wake_queue(struct edge_waiter *wt)
{
    struct edge_worker *w = wt->w;
    int send = 0;

    pthread_mutex_lock(&w->wake_mtx);
    if (!wt->queued) {
        wt->queued = 1;
        wt->wnext = NULL;
        if (w->wake_tail)
            w->wake_tail->wnext = wt;
        else
            w->wake_head = wt;
        w->wake_tail = wt;
        send = 1;
    }
    pthread_mutex_unlock(&w->wake_mtx);
    if (send)
        uv_async_send(&w->wake);
}

static void fill_notify(struct edge_fill *f)
{
    pthread_mutex_lock(&f->mtx);
    for (struct edge_waiter *wt = f->waiters; wt; wt = wt->next)
        wake_queue(wt);
    pthread_mutex_unlock(&f->mtx);
}

void edge__worker_wake(uv_async_t *a)
{
    struct edge_worker *w = a->data;
    struct edge_waiter *list, *wt, *next;

    MC_CHECK_OBJ_NOTNULL(w, EDGE_WORKER_MAGIC);
    pthread_mutex_lock(&w->wake_mtx);
    list = w->wake_head;
    w->wake_head = w->wake_tail = NULL;
    for (wt = list; wt; wt = wt->wnext)
        wt->queued = 0;
    pthread_mutex_unlock(&w->wake_mtx);
    for (wt = list; wt; wt = next) {
        next = wt->wnext;
        waiter_pump(wt);
    }
}

/* ---- waiters ---- */

static void waiter_on_abort(struct http_exchange *x, void *arg)
{
    struct edge_waiter *wt = arg;
    MC_CHECK_OBJ_NOTNULL(wt, EDGE_WAITER_MAGIC);
    (void)x;
    wt->aborted = 1;
    if (!wt->st.writing)
        wake_queue(wt);
}

static struct edge_waiter *waiter_new(struct edge_worker *w, struct http_exchange *x,
                                      const char *pkey, size_t plen)
{
    struct edge_waiter *wt = mc_xcalloc(1, sizeof(*wt));
    MC_INIT_OBJ(wt, EDGE_WAITER_MAGIC);
    wt->w = w;
    wt->x = x;
    wt->pkey = mc_xstrndup(pkey, plen);
    wt->plen = plen;
    wt->st.wake = waiter_wake;
    wt->st.arg = wt;
    http_x_on_abort(x, waiter_on_abort, wt);
    return wt;
}

static void waiter_attach(struct edge_waiter *wt, struct edge_fill *f)
{
    wt->fill = f; /* takes the caller's reference */
    pthread_mutex_lock(&f->mtx);
    wt->next = f->waiters;
    f->waiters = wt;
    int ready = f->state != FILL_WAIT;
    pthread_mutex_unlock(&f->mtx);
    if (ready)
        wake_queue(wt);
}

static void waiter_detach(struct edge_waiter *wt)
{
    struct edge_fill *f = wt->fill;

    if (!f || wt->detached)
        return;
    pthread_mutex_lock(&f->mtx);
    for (struct edge_waiter **pp = &f->waiters; *pp; pp = &(*pp)->next) {
        if (*pp == wt) {
            *pp = wt->next;
            break;
        }
    }
    pthread_mutex_unlock(&f->mtx);
    wt->detached = 1;
}

/* Releases the waiter; the exchange must have been ended (or handed on) before. */
static void upload_client_gone(struct edge_fill *f);

static void waiter_free(struct edge_waiter *wt)
{
    struct edge_worker *w = wt->w;

    if (wt->fill && wt->fill->upload_x == wt->x)
        upload_client_gone(wt->fill);

    waiter_detach(wt);
    pthread_mutex_lock(&w->wake_mtx);
    if (wt->queued) {
        struct edge_waiter **pp = &w->wake_head, *prev = NULL;
        for (; *pp; prev = *pp, pp = &(*pp)->wnext) {
            if (*pp == wt) {
                *pp = wt->wnext;
                if (w->wake_tail == wt)
                    w->wake_tail = prev;
                break;
            }
        }
        wt->queued = 0;
    }
    pthread_mutex_unlock(&w->wake_mtx);
    fill_unref(&wt->fill);
    cache_obj_unref(&wt->st.obj);
    edge_rctx_free(&wt->rc);
    free(wt->pkey);
    free(wt->vkey);
    MC_FREE_OBJ(wt);
}

/* Called once the exchange was ended: it must not be touched any more (an ended exchange
 * never calls its abort callback, so there is nothing to unhook). */
static void waiter_finish(struct edge_waiter *wt)
{
    wt->finished = 1;
    if (wt->fill && wt->fill->upload_x == wt->x)
        upload_client_gone(wt->fill);
    wt->x = NULL;
    waiter_free(wt);
}

/* The tier the fill's response came from. */
static enum edge_level fill_level(const struct edge_fill *f)
{
    return f->rt->upstream_level[f->origin_idx];
}

/* The access log's upstream time: from the request to the upstream to its response head
 * (or to now, when none came). A coalesced waiter reports its fill's. */
static void waiter_note_upstream(struct edge_waiter *wt)
{
    struct edge_fill *f = wt->fill;
    if (!f)
        return;
    uint64_t s = atomic_load_explicit(&f->start_us, memory_order_relaxed);
    uint64_t h = atomic_load_explicit(&f->hdr_us, memory_order_relaxed);
    if (!s)
        return;
    struct http_x_note *n = http_x_note(wt->x);
    n->has_upstream = 1;
    n->upstream_us = (int64_t)((h ? h : units_now_us()) - s);
}

static void waiter_respond_error(struct edge_waiter *wt, int status, const char *msg)
{
    waiter_note_upstream(wt);
    edge__deliver_error(wt->w->e, wt->x, status, wt->xc,
                        wt->fill ? fill_level(wt->fill) : EDGE_LV_ORIGIN, msg);
    waiter_finish(wt);
}

static void waiter_wake(void *arg)
{
    struct edge_waiter *wt = arg;
    MC_CHECK_OBJ_NOTNULL(wt, EDGE_WAITER_MAGIC);
    waiter_pump(wt);
}

static const char *fill_cache_status(struct edge_fill *f, enum edge_xc xc, char *buf, size_t n)
{
    if (xc == EDGE_XC_BYPASS)
        snprintf(buf, n, "mlcdn; fwd=bypass");
    else if (f->store_detail)
        snprintf(buf, n, "mlcdn; fwd=%s; fwd-status=%d; detail=%s", f->stale ? "stale" : "miss",
                 f->obj ? f->obj->status : 0, f->store_detail);
    else
        snprintf(buf, n, "mlcdn; fwd=%s; fwd-status=%d; stored", f->stale ? "stale" : "miss",
                 f->obj ? f->obj->status : 0);
    return buf;
}

/* A coalesced waiter that cannot use the leader's response goes its own way. */
static void waiter_restart(struct edge_waiter *wt, int as_pass)
{
    struct edge_worker *w = wt->w;
    struct http_exchange *x = wt->x;
    char *pkey = mc_xstrndup(wt->pkey, wt->plen);
    size_t plen = wt->plen;
    struct edge_rctx *rc = wt->rc;

    wt->rc = NULL;
    http_x_on_abort(x, NULL, NULL);
    wt->finished = 1;
    waiter_free(wt);
    if (as_pass)
        fetch_pass(w, x, pkey, plen, rc);
    else
        edge__fetch_cacheable(w, x, pkey, plen, NULL, rc);
    edge_rctx_free(&rc);
    free(pkey);
}

/* A waiter that has sent nothing yet, for a body that failed: a clean error status (504
 * when the origin was too slow) rather than any part of the body. Returns 1 when it
 * answered (o's reference dropped). */
static int waiter_body_failed(struct edge_waiter *wt, struct cache_obj *o)
{
    struct edge_fill *f = wt->fill;

    if (cache_body_state(o->body) != CACHE_BODY_FAILED)
        return 0;
    pthread_mutex_lock(&f->mtx);
    int fail = f->fail_status;
    const char *msg = f->fail_msg;
    pthread_mutex_unlock(&f->mtx);
    cache_obj_unref(&o);
    waiter_respond_error(wt, fail, msg ? msg : "origin body incomplete");
    return 1;
}

static int fill_no_body(const struct edge_fill *f, int status);

/* The answer for a waiter whose fill has a response: a whole object, a restart on its own,
 * or the start of a stream. Returns 1 when the waiter is finished or handed on, 0 when it
 * waits for more of the fill (nothing sent), 2 when its stream was started. */
static int waiter_decide(struct edge_waiter *wt)
{
    struct edge_fill *f = wt->fill;
    struct edge *e = wt->w->e;
    char cs[256];

    pthread_mutex_lock(&f->mtx);
    int state = f->state, shareable = f->shareable, fail = f->fail_status;
    const char *msg = f->fail_msg;
    struct cache_obj *o = f->obj ? cache_obj_ref(f->obj) : NULL;
    int whole = f->revalidated || f->served_stale;
    pthread_mutex_unlock(&f->mtx);
    if (state == FILL_WAIT)
        return 0;
    waiter_note_upstream(wt);
    if (!o) {
        waiter_respond_error(wt, fail, msg ? msg : "origin unavailable");
        return 1;
    }
    if (!whole && waiter_body_failed(wt, o))
        return 1;
    if (!wt->leader && !shareable) {
        cache_obj_unref(&o);
        waiter_restart(wt, 1);
        return 1;
    }
    if (!wt->leader && o->vary) {
        /* Vary: the leader's variant only serves requests with the same header values. */
        if (!l1_variant_matches(o, http_x_request(wt->x))) {
            cache_obj_unref(&o);
            waiter_restart(wt, 1);
            return 1;
        }
    }
    if (f->served_stale) {
        snprintf(cs, sizeof(cs), "mlcdn; hit; fwd=stale; detail=stale-if-error");
        edge__deliver_obj(e, wt->x, o, EDGE_XC_STALE, EDGE_LV_L1, cs);
        cache_obj_unref(&o);
        waiter_finish(wt);
        return 1;
    }
    /* A HEAD fill's object has no body, only the length its head announced: the stream
     * start sends that. */
    int head_fill = f->method && strcmp(f->method, "HEAD") == 0;
    if (whole ||
        (!head_fill && state == FILL_DONE && cache_body_state(o->body) == CACHE_BODY_COMPLETE)) {
        enum edge_level lv = f->revalidated ? EDGE_LV_L1 : fill_level(f);
        enum edge_xc xc = f->revalidated ? EDGE_XC_HIT : wt->xc;
        if (f->revalidated)
            snprintf(cs, sizeof(cs), "mlcdn; hit; fwd=stale; fwd-status=304");
        else
            fill_cache_status(f, wt->xc, cs, sizeof(cs));
        if (!wt->leader && !f->revalidated)
            snprintf(cs + strlen(cs), sizeof(cs) - strlen(cs), "; collapsed");
        edge__deliver_obj(e, wt->x, o, xc, lv, cs);
        cache_obj_unref(&o);
        waiter_finish(wt);
        return 1;
    }
    /* Stream the response while it arrives (a Range from the announced length, only for
     * a cache fill: docs/edge.md). */
    fill_cache_status(f, wt->xc, cs, sizeof(cs));
    if (!wt->leader)
        snprintf(cs + strlen(cs), sizeof(cs) - strlen(cs), "; collapsed");
    enum edge_stream_rc rc = edge__stream_start(e, wt->x, &wt->st, o, f->cacheable_req,
                                                fill_no_body(f, o->status), wt->xc, fill_level(f),
                                                cs);
    switch (rc) {
    case EDGE_STREAM_WAIT:
        cache_obj_unref(&o);
        return 0; /* woken again when bytes arrive or the body ends */
    case EDGE_STREAM_FAILED:
        waiter_body_failed(wt, o); /* answers, drops o */
        return 1;
    case EDGE_STREAM_DONE:
        cache_obj_unref(&o);
        waiter_finish(wt);
        return 1;
    case EDGE_STREAM_PUMP: break;
    }
    cache_obj_unref(&o);
    wt->started = 1;
    return 2;
}

/* Forwards the interim responses of the fill that this waiter's client has not had yet:
 * only before its final head (RFC 9110 §15.2), so a waiter that joins a fill whose
 * response is already complete may get them too, which §15.2 allows. */
static void waiter_interim(struct edge_waiter *wt)
{
    struct edge_fill *f = wt->fill;
    char *blocks[EDGE_INTERIM_MAX];
    int status[EDGE_INTERIM_MAX];
    unsigned n = 0;

    pthread_mutex_lock(&f->mtx);
    for (; wt->interim_sent < f->ninterim; wt->interim_sent++, n++) {
        blocks[n] = mc_xstrdup(f->interim[wt->interim_sent]);
        status[n] = f->interim_status[wt->interim_sent];
    }
    pthread_mutex_unlock(&f->mtx);
    for (unsigned i = 0; i < n; i++) {
        /* An HTTP/1.0 client gets none (-EPROTO); a client gone hears of it elsewhere. */
        (void)http_x_interim(wt->x, status[i], blocks[i]);
        free(blocks[i]);
    }
}

static void waiter_pump(struct edge_waiter *wt)
{
    MC_CHECK_OBJ_NOTNULL(wt, EDGE_WAITER_MAGIC);
    if (wt->finished)
        return;
    if (wt->aborted && !wt->st.writing) {
        edge__stream_abandon(wt->x, wt->started);
        waiter_finish(wt);
        return;
    }
    if (!wt->started && wt->fill)
        waiter_interim(wt);
    if (!wt->started && waiter_decide(wt) != 2)
        return;
    if (edge__stream_pump(wt->w->e, wt->x, &wt->st, fill_level(wt->fill)))
        waiter_finish(wt);
}

/* ---- upstream circuit breakers (edge_origin.h) ---- */

static void fill_setup(struct edge_fill *f, const struct http_request *r, const char *peer,
                       int cacheable);
static void fill_route(struct edge_fill *f, const struct edge_rctx *rc);
static int fill_launch(struct edge_fill *f);

static int fill_has_clients(struct edge_fill *f)
{
    pthread_mutex_lock(&f->mtx);
    int any = f->waiters != NULL;
    pthread_mutex_unlock(&f->mtx);
    return any;
}

static int fill_stale_usable(const struct edge_fill *f)
{
    return f->stale && http_cache_stale_if_error_ok(&f->stale->info, f->stale->lifetime,
                                                    edge_obj_age(f->stale, units_wall_s()),
                                                    f->rt->cfg.stale_if_error_s);
}

/* Probes upstream idx with a copy of cache fill f that nobody waits for (and that is not
 * in the busy table, so no request joins it): if the upstream still hangs, only this
 * background transfer pays the timeout. A good answer is stored like any fill's. */
static void fill_spawn_probe(struct edge_fill *f, size_t idx)
{
    struct edge_fill *p = fill_new(f->owner, f->pkey, f->plen);
    /* idx is a place in f's upstream list: the copy uses f's settings, not newer ones. */
    edge__rt_unref(&p->rt);
    p->rt = edge__rt_ref(f->rt);
    struct edge_rctx rc = {f->route_post ? f->req_body : NULL, f->route_post ? f->req_body_len : 0,
                           f->route_ttl_s};

    fill_setup(p, &fill_ext(f)->req->r, NULL, 1);
    fill_route(p, &rc);
    if (f->stale)
        p->stale = cache_obj_ref(f->stale);
    p->origin_idx = idx;
    p->probe = 1;
    fill_launch(p);
    fill_unref(&p); /* the transfer holds its own reference */
}

/* Is any upstream after idx closed (a place to send the request right away)? */
static int later_upstream_closed(const struct edge_rt *rt, size_t idx)
{
    for (size_t j = idx + 1; j < rt->norigins; j++)
        if (edge__origin_state(rt->origins, j) == EDGE_ORIGIN_CLOSED)
            return 1;
    return 0;
}

/* Chooses the upstream of the next attempt, from f->origin_idx on, skipping those whose
 * breaker is open: nothing was sent to them, so a request of any method may skip. 0 with
 * f->origin_idx set (f->probe when this attempt is the half-open probe), or -EHOSTDOWN
 * when every remaining upstream is held back: the fill then fails at once (the stale
 * object under stale-if-error, else 503) instead of waiting for a timeout. A cache fill
 * whose clients can be answered otherwise (stale object, a later upstream) leaves the
 * probe to a background copy of itself. */
static int fill_pick_upstream(struct edge_fill *f)
{
    size_t skipped = SIZE_MAX;

    if (f->probe)
        return 0; /* fill_spawn_probe handed it the slot */
    for (; f->origin_idx < f->rt->norigins; f->origin_idx++) {
        size_t i = f->origin_idx;
        enum edge_origin_verdict v = edge__origin_allow(f->rt->origins, i, units_now_ms());
        if (v == EDGE_ORIGIN_PASS)
            return 0;
        if (v == EDGE_ORIGIN_PROBE) {
            if (!f->cacheable_req || !fill_has_clients(f) ||
                (!fill_stale_usable(f) && !later_upstream_closed(f->rt, i))) {
                f->probe = 1;
                return 0;
            }
            fill_spawn_probe(f, i);
        }
        edge__origin_skipped(f->rt->origins, i);
        if (skipped == SIZE_MAX)
            skipped = i;
    }
    MC_ASSERT(skipped != SIZE_MAX); /* called with origin_idx < norigins */
    f->origin_idx = skipped;
    f->short_circuit = 1;
    pthread_mutex_lock(&f->mtx);
    f->fail_status = 503;
    f->fail_msg = edge__origin_down_msg(f->rt->origins, skipped);
    pthread_mutex_unlock(&f->mtx);
    return -EHOSTDOWN;
}

/* A connect failure or a timeout before the response head. */
static void fill_upstream_failed(struct edge_fill *f, const char *why)
{
    edge__origin_failure(f->rt->origins, f->origin_idx, f->probe, why, units_now_ms());
    f->probe = 0;
}

static void fill_upstream_answered(struct edge_fill *f)
{
    edge__origin_success(f->rt->origins, f->origin_idx);
    f->probe = 0;
}

/* The transfer ends without a verdict on the upstream (cancelled, client gone). */
static void fill_upstream_release(struct edge_fill *f)
{
    if (f->probe)
        edge__origin_probe_end(f->rt->origins, f->origin_idx);
    f->probe = 0;
}

/* ---- streamed request bodies: client -> curl ---- */

static void upload_unpause_curl(struct edge_fill *f)
{
    if (f->curl_paused && f->easy) {
        f->curl_paused = 0;
        curl_easy_pause(f->easy, CURLPAUSE_CONT);
    }
}

static void upload_client_gone(struct edge_fill *f)
{
    f->upload_x = NULL;
    if (!f->upload_done)
        f->upload_failed = 1;
    if (f->resume_timer)
        uv_timer_stop(f->resume_timer);
    upload_unpause_curl(f);
}

static void on_resume_timer(uv_timer_t *t)
{
    struct edge_fill *f = t->data;
    MC_CHECK_OBJ_NOTNULL(f, EDGE_FILL_MAGIC);
    MC_CHECK_OBJ(f->e, EDGE_MAGIC);
    if (f->client_paused && f->upload_x) {
        f->client_paused = 0;
        http_x_body_resume(f->upload_x);
    }
}

/* ---- request bodies read before the origin is contacted ---- */

/* A pass request's body is read into f->upload before the fill starts, up to
 * --request-buffer: a client that sends its body slowly (or stops) holds only its own
 * connection, never an origin connection, and a stalled body gets its 408 from the body
 * timeout without the origin ever seeing the request. A body that fits goes to the origin
 * in one piece with a Content-Length (also when the client sent it chunked) and may be
 * sent again to the next origin; a larger one starts streaming once the buffer is full. */

/* The body went wrong before the origin was contacted (400, 408, 413): answer with that. */
static void upload_buffer_fail(struct edge_fill *f, int status, const char *msg)
{
    f->upload_buffering = 0;
    f->upload_failed = 1;
    pthread_mutex_lock(&f->mtx);
    f->fail_status = status;
    f->fail_msg = msg ? msg : "invalid request body";
    f->state = FILL_FAILED;
    pthread_mutex_unlock(&f->mtx);
    fill_notify(f);
}

/* The whole body is here: send it in one piece. */
static void upload_send_buffered(struct edge_fill *f)
{
    f->upload_buffering = 0;
    f->upload_done = 1;
    f->upload_x = NULL;
    free(f->req_body);
    f->req_body = buf_take(&f->upload, &f->req_body_len);
    metrics_counter_add(f->e->m.bodies_buffered, 1);
    fill_launch(f);
}

/* The body is larger than the buffer (or buffering is off): start the transfer and stream
 * what is buffered and the rest as it arrives. */
static void upload_stream(struct edge_fill *f)
{
    f->upload_buffering = 0;
    f->upload_streaming = 1;
    f->idempotent = 0; /* a streamed body cannot be sent twice */
    metrics_counter_add(f->e->m.bodies_streamed, 1);
    fill_launch(f);
}

static size_t on_upload_read(char *dst, size_t size, size_t nitems, void *arg)
{
    struct edge_fill *f = arg;
    MC_CHECK_OBJ_NOTNULL(f, EDGE_FILL_MAGIC);
    MC_CHECK_OBJ(f->e, EDGE_MAGIC);
    size_t n = size * nitems, avail = f->upload.len - f->upload_off;

    if (f->upload_failed)
        return CURL_READFUNC_ABORT;
    if (avail) {
        size_t k = MC_MIN(n, avail);
        memcpy(dst, f->upload.data + f->upload_off, k);
        f->upload_off += k;
        if (f->upload_off == f->upload.len) {
            buf_reset(&f->upload);
            f->upload_off = 0;
        } else if (f->upload_off > UPLOAD_LOW) {
            buf_consume(&f->upload, f->upload_off);
            f->upload_off = 0;
        }
        /* Resuming the client may hand us more bytes at once: never from inside curl. */
        if (f->client_paused && f->upload.len - f->upload_off < UPLOAD_LOW && f->resume_timer)
            uv_timer_start(f->resume_timer, on_resume_timer, 0, 0);
        return k;
    }
    if (f->upload_done)
        return 0;
    f->curl_paused = 1;
    return CURL_READFUNC_PAUSE;
}

static void on_upload_data(struct http_exchange *x, const char *data, size_t len, void *arg)
{
    struct edge_fill *f = arg;
    MC_CHECK_OBJ_NOTNULL(f, EDGE_FILL_MAGIC);
    MC_CHECK_OBJ(f->e, EDGE_MAGIC);

    if (f->upload_buffering) {
        if (buf_append(&f->upload, data, len) != 0) {
            upload_buffer_fail(f, 500, "request body buffer exhausted");
            return;
        }
        if (f->upload.len < f->rt->cfg.request_buffer)
            return;
        upload_stream(f);
        if (!f->easy)
            return; /* not started (no upstream would take it): the client is answered */
    } else {
        if (!f->easy || f->upload_failed)
            return; /* the origin already answered: the rest of the body is dropped */
        if (buf_append(&f->upload, data, len) != 0) {
            f->upload_failed = 1;
            upload_unpause_curl(f);
            return;
        }
    }
    if (f->upload.len - f->upload_off >= UPLOAD_HIGH && !f->client_paused) {
        f->client_paused = 1;
        http_x_body_pause(x);
    }
    upload_unpause_curl(f);
}

static void on_upload_end(struct http_exchange *x, int err, const char *msg, void *arg)
{
    struct edge_fill *f = arg;
    MC_CHECK_OBJ_NOTNULL(f, EDGE_FILL_MAGIC);
    MC_CHECK_OBJ(f->e, EDGE_MAGIC);

    (void)x;
    if (err == -408)
        metrics_counter_add(f->e->m.body_timeouts, 1);
    if (f->upload_buffering) {
        if (err)
            upload_buffer_fail(f, -err, msg);
        else
            upload_send_buffered(f);
        return;
    }
    if (err) {
        f->upload_failed = 1;
        f->fail_status = -err;
        f->fail_msg = msg;
    } else {
        f->upload_done = 1;
    }
    upload_unpause_curl(f);
}

/* ---- the transfer ---- */

static struct curl_slist *add_hdr(struct curl_slist *l, const char *name, size_t nl,
                                  const char *value, size_t vl)
{
    char line[8192 + 256];
    if (nl + vl + 3 > sizeof(line))
        return l;
    snprintf(line, sizeof(line), "%.*s: %.*s", (int)nl, name, (int)vl, value);
    struct curl_slist *n = curl_slist_append(l, line);
    return n ? n : l;
}

/* Request headers for the origin: end-to-end headers of the client, minus what a cache
 * fill must not forward (conditionals and Range, so the full object comes back). The
 * request already lost its --strip-header fields and what its Connection options named
 * (edge_req.c); the check is repeated here so that no path forwards a nominated field. */
static struct curl_slist *origin_headers(struct edge_fill *f, const struct http_request *r,
                                         const char *peer)
{
    struct curl_slist *l = NULL;
    char via[2300];

    for (size_t i = 0; i < r->nheaders; i++) {
        struct http_str nm = r->headers[i].name, v = r->headers[i].value;
        if (http_proxy_hop_by_hop(nm.p, nm.len) || http_request_hop_nominated(r, nm))
            continue;
        /* Host is written below from the request's one host, the one it is keyed by. */
        if (http_str_ieq(nm, "host") || http_str_ieq(nm, "expect") ||
            http_str_ieq(nm, "content-length") || http_str_ieq(nm, "x-forwarded-for") ||
            http_str_ieq(nm, "via"))
            continue;
        if (f->cacheable_req &&
            (http_str_ieq(nm, "if-none-match") || http_str_ieq(nm, "if-modified-since") ||
             http_str_ieq(nm, "if-match") || http_str_ieq(nm, "if-unmodified-since") ||
             http_str_ieq(nm, "if-range") || (!f->range_fwd && http_str_ieq(nm, "range"))))
            continue;
        l = add_hdr(l, nm.p, nm.len, v.p, v.len);
    }
    /* The host the object is keyed by is exactly the one the origin is asked for (an
     * absolute-form authority already replaced the client's Host, RFC 9112 §3.2.2). A
     * request without any host (HTTP/1.0) is keyed under the empty host and sends an
     * empty Host, as §3.2 asks; "Host;" is how curl sends a field with no value, where
     * "Host:" would let it send the origin's own authority. */
    if (r->host.len)
        l = add_hdr(l, "Host", 4, r->host.p, r->host.len);
    else
        l = curl_slist_append(l, "Host;");
    /* Disable curl's own Expect and Accept headers: the client's are forwarded as sent. */
    l = curl_slist_append(l, "Expect:");
    if (!http_request_header(r, "accept"))
        l = curl_slist_append(l, "Accept:");
    /* Via (RFC 9110 §7.6.3) as a list: the client's hops, then this node, so a parent
     * edge can see the whole path and refuse a loop. */
    const struct http_header *cv = http_request_header(r, "via");
    if (cv)
        snprintf(via, sizeof(via), "Via: %.*s, 1.1 %s (mlcdn)", (int)MC_MIN(cv->value.len, 2048u),
                 cv->value.p, f->e->name);
    else
        snprintf(via, sizeof(via), "Via: 1.1 %s (mlcdn)", f->e->name);
    l = curl_slist_append(l, via);
    if (peer && *peer) {
        const struct http_header *xff = http_request_header(r, "x-forwarded-for");
        char line[1024];
        if (xff)
            snprintf(line, sizeof(line), "X-Forwarded-For: %.*s, %s", (int)xff->value.len,
                     xff->value.p, peer);
        else
            snprintf(line, sizeof(line), "X-Forwarded-For: %s", peer);
        l = curl_slist_append(l, line);
    }
    if (f->stale) {
        const char *v;
        if (f->stale->etag)
            l = add_hdr(l, "If-None-Match", 13, f->stale->etag, strlen(f->stale->etag));
        long n = cache_obj_header(f->stale, "last-modified", &v);
        if (n > 0)
            l = add_hdr(l, "If-Modified-Since", 17, v, (size_t)n);
    }
    return l;
}

static int vary_has(const struct buf *vary, const char *name, size_t n)
{
    const char *p = vary->data, *end = p ? p + vary->len : NULL;
    while (p && p < end) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        size_t len = c ? (size_t)(c - p) : (size_t)(end - p);
        if (len == n && memcmp(p, name, n) == 0)
            return 1;
        p = c ? c + 1 : end;
    }
    return 0;
}

/* The stored Vary list (lowercased, comma-separated; *vary, NULL when none) of a response
 * gets the --key-header fields as if the origin had named them, so every variant is keyed
 * by them too. A Vary entry rather than a longer primary key: PURGE, L2 and Redis already
 * handle variants. A list with a "*" member is left alone: such a response is never
 * stored (vary_star). */
static void vary_finish(const struct edge *e, char **vary)
{
    struct buf b;

    if (!e->key_vary || !*e->key_vary)
        return;
    buf_init(&b, SIZE_MAX);
    if (*vary)
        buf_puts(&b, *vary);
    if (vary_has(&b, "*", 1)) {
        buf_fini(&b);
        return;
    }
    for (const char *p = e->key_vary; *p;) {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        if (!vary_has(&b, p, n)) {
            if (b.len)
                buf_append(&b, ",", 1);
            buf_append(&b, p, n);
        }
        p = c ? c + 1 : p + n;
    }
    free(*vary);
    *vary = b.len ? buf_take(&b, NULL) : NULL;
    buf_fini(&b);
}

static void fill_set_state(struct edge_fill *f, int state)
{
    pthread_mutex_lock(&f->mtx);
    f->state = state;
    pthread_mutex_unlock(&f->mtx);
}

static void fill_stop_fb_timer(struct edge_fill *f)
{
    if (f->fb_timer) {
        uv_timer_stop(f->fb_timer);
        uv_close((uv_handle_t *)f->fb_timer, (uv_close_cb)free);
        f->fb_timer = NULL;
    }
}

/* An unlinked temporary file in dir with room for n bytes reserved, or -1. */
static int tmp_body_file(const char *dir, uint64_t n)
{
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0 && n && posix_fallocate(fd, 0, (off_t)n) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* The body of a new response. Above --max-mem-object it is kept in a file, never whole
 * in memory: written straight into L2 when the response may be stored there, else into
 * an unlinked temporary file that lives as long as its readers. The file's space is
 * reserved first (fallocate), so a full disk shows here, where another place can still be
 * chosen, and never in the middle of the body, which clients are already receiving. */
static struct cache_body *fill_body(struct edge_fill *f, const struct cache_obj *o,
                                    int64_t expected, int storable)
{
    struct edge *e = f->e;
    int head_only = f->method && strcmp(f->method, "HEAD") == 0;

    if (expected < 0 || (uint64_t)expected <= e->max_mem_object || head_only)
        return cache_body_new(expected);
    metrics_counter_add(e->m.big_bodies, 1);
    if (storable && e->l2) {
        if (l2_writer_begin(e->l2, f->pkey, f->plen, o, expected, &f->l2w) == 0) {
            uint64_t off = l2_writer_body_off(f->l2w);
            int fd = -1;
            if (expected == 0 || posix_fallocate(l2_writer_fd(f->l2w), (off_t)off, expected) == 0)
                fd = l2_writer_dup_fd(f->l2w);
            if (fd >= 0)
                return cache_body_new_file(fd, off, expected);
            l2_writer_abort(&f->l2w);
        }
        metrics_counter_add(e->m.l2_not_stored, 1); /* full, paused, or too large for L2 */
    }
    const char *tmp = getenv("TMPDIR");
    int fd = -1;
    if (e->cfg.disk_dir && *e->cfg.disk_dir)
        fd = tmp_body_file(e->cfg.disk_dir, (uint64_t)expected);
    if (fd < 0 && tmp && *tmp)
        fd = tmp_body_file(tmp, (uint64_t)expected);
    if (fd < 0)
        fd = tmp_body_file("/tmp", (uint64_t)expected);
    if (fd < 0) {
        log_warn("no room in a temporary file for a large body: it is kept in memory", "bytes=%lld",
                 (long long)expected);
        return cache_body_new(expected);
    }
    return cache_body_new_file(fd, 0, expected);
}

/* A request or status whose response has no body (RFC 9112 §6.3 rule 1). */
static int fill_no_body(const struct edge_fill *f, int status)
{
    return (f->method && strcmp(f->method, "HEAD") == 0) || status < 200 || status == 204 ||
           status == 304;
}

/* Checks the final response head (framing, field lines) and builds what is kept of it into
 * *pr: for a 304 that refreshes f->stale, the stored block updated by it. 0, or -EPROTO
 * once the refusal is counted and logged: the transfer must fail (RFC 9112 §6.3: the
 * proxy closes the connection to the server, discards the response and answers 502). */
static int origin_head(struct edge_fill *f, int status, struct http_proxy_resp *pr)
{
    struct edge *e = f->e;
    const char *lines = f->resp_hdrs.data ? f->resp_hdrs.data : "", *why = NULL;
    size_t len = f->resp_hdrs.len;
    int no_body = fill_no_body(f, status);
    long ver = CURL_HTTP_VERSION_1_1;
    curl_off_t ccl = -1;
    int rc;

    curl_easy_getinfo(f->easy, CURLINFO_HTTP_VERSION, &ver);
    rc = http_proxy_resp_parse(pr, status, ver == CURL_HTTP_VERSION_1_0 ? 0 : 1, no_body, lines,
                               len, units_wall_s(), &why);
    if (rc == 0 && !no_body) {
        /* curl frames the body: it must have read the same length we did. */
        curl_easy_getinfo(f->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &ccl);
        if ((int64_t)ccl != pr->content_length) {
            http_proxy_resp_fini(pr);
            why = "Content-Length read differently";
            rc = -EPROTO;
        }
    }
    if (rc == 0 && f->stale && status == 304) {
        size_t hl;
        char *merged = http_proxy_merge_304(f->stale->hdrs, f->stale->hdrs_len, lines, len, &hl);
        http_proxy_resp_fini(pr);
        rc = -E2BIG;
        why = "header block too large";
        if (merged)
            rc = http_proxy_resp_parse(pr, f->stale->status, 1, 0, merged, hl, units_wall_s(),
                                       &why);
        free(merged);
    }
    if (rc != 0) {
        f->head_refused = why;
        metrics_counter_add(e->m.origin_bad_framing, 1);
        log_warn("origin response refused", "key=\"%.*s\" url=\"%s%.*s\" status=%d reason=\"%s\"",
                 (int)MC_MIN(f->plen, 200u), f->pkey, f->rt->origin_urls[f->origin_idx],
                 (int)MC_MIN(strlen(f->url_path), 200u), f->url_path, status, why);
        return -EPROTO;
    }
    return 0;
}

/* The stored response `stale` with its header block updated (pr: the merged block, taken
 * over), its body shared: RFC 9111 §4.3.4 (a 304) and §4.3.5 (a HEAD's 200). */
static struct cache_obj *refreshed_obj(struct edge_fill *f, const struct cache_obj *stale,
                                       struct http_proxy_resp *pr, int64_t now)
{
    struct cache_obj *o = cache_obj_new(stale->status, pr->hdrs, pr->hdrs_len,
                                        cache_body_ref(stale->body));
    vary_finish(f->e, &pr->vary);
    o->info = pr->info;
    o->etag = pr->etag;
    o->vary = pr->vary;
    free(o->vkey);
    o->vkey = mc_xstrndup(stale->vkey, stale->vkey_len);
    o->vkey_len = stale->vkey_len;
    o->request_time = f->request_time;
    o->stored_us = f->request_us;
    o->response_time = now;
    o->lifetime = http_freshness_lifetime(&o->info, f->rt->cfg.heuristic_max_s);
    o->has_accept_ranges = stale->has_accept_ranges;
    return o;
}

/* Does a HEAD's 200 (o) describe the same representation as the stored response s (RFC 9111
 * §4.3.5)? Every validator the HEAD carries must match (at least one must be there: with
 * none, nothing tells the two apart), and so must its Content-Length, when it has one. */
static int head_matches(const struct cache_obj *s, const struct cache_obj *o)
{
    const char *a, *b;
    long na, nb;
    int compared = 0;

    if (s->status != 200 || cache_body_state(s->body) != CACHE_BODY_COMPLETE)
        return 0;
    if (o->etag) {
        if (!s->etag || strcmp(s->etag, o->etag) != 0)
            return 0;
        compared = 1;
    }
    nb = cache_obj_header(o, "last-modified", &b);
    if (nb > 0) {
        na = cache_obj_header(s, "last-modified", &a);
        if (na != nb || memcmp(a, b, (size_t)nb) != 0)
            return 0;
        compared = 1;
    }
    if (o->body->expected >= 0 && (uint64_t)o->body->expected != cache_body_len(s->body))
        return 0;
    return compared;
}

/* RFC 9111 §4.3.5: a HEAD's 200 updates the stored response it could have been chosen for
 * (the one being revalidated, else L1's variant for the request) when it describes the
 * same representation: its fields replace the stored ones as a 304's do (§3.2), the body
 * is kept. A stored response it does not match is out of date: it is dropped. Returns 1
 * when a stored response was updated. */
static int head_refresh(struct edge_fill *f, const struct cache_obj *o, int64_t now)
{
    struct cache_obj *s = f->stale ? cache_obj_ref(f->stale) : NULL;
    struct http_proxy_resp mpr;
    const char *why;
    size_t hl;
    int done = 0;

    if (!s && l1_lookup(f->e->l1, f->pkey, f->plen, &fill_ext(f)->req->r, &s) != 0)
        return 0;
    /* A banned response is not brought back by a refresh (its stored_us would be the
     * HEAD's, newer than the ban): a soft-banned one stays stale, a banned one goes, as
     * does one that the HEAD says is another representation. */
    enum cache_ban_verdict v = edge__inval_verdict(f->e, f->pkey, f->plen, s);
    if (v == CACHE_BAN_SOFT) {
        cache_obj_unref(&s);
        return 0;
    }
    if (v == CACHE_BAN_HARD || !head_matches(s, o)) {
        edge__tier_drop(f->owner, f->pkey, f->plen);
        cache_obj_unref(&s);
        return 0;
    }
    char *merged = http_proxy_merge_304(s->hdrs, s->hdrs_len,
                                        f->resp_hdrs.data ? f->resp_hdrs.data : "",
                                        f->resp_hdrs.len, &hl);
    if (merged && http_proxy_resp_parse(&mpr, s->status, 1, 0, merged, hl, now, &why) == 0) {
        struct cache_obj *n = refreshed_obj(f, s, &mpr, now);
        metrics_counter_add(f->e->m.revalidations, 1);
        edge__tier_refresh(f->owner, f->pkey, f->plen, s, n);
        cache_obj_unref(&n);
        done = 1;
    }
    free(merged);
    cache_obj_unref(&s);
    return done;
}

/* The final response's header block is complete and valid: pr is taken over. */
static void headers_complete(struct edge_fill *f, int status, struct http_proxy_resp *pr)
{
    struct edge *e = f->e;
    int64_t now = units_wall_s();

    f->headers_done = 1;
    atomic_store_explicit(&f->hdr_us, units_now_us(), memory_order_relaxed);
    fill_stop_fb_timer(f);
    if (f->stale && status == 304) {
        struct cache_obj *o = refreshed_obj(f, f->stale, pr, now);
        metrics_counter_add(e->m.revalidations, 1);
        edge__tier_refresh(f->owner, f->pkey, f->plen, f->stale, o);
        pthread_mutex_lock(&f->mtx);
        f->obj = o;
        f->revalidated = 1;
        f->shareable = 1;
        f->state = FILL_DONE;
        pthread_mutex_unlock(&f->mtx);
        fill_notify(f);
        return;
    }
    if (f->stale && status >= 500 &&
        http_cache_stale_if_error_ok(&f->stale->info, f->stale->lifetime,
                                     edge_obj_age(f->stale, now), f->rt->cfg.stale_if_error_s)) {
        http_proxy_resp_fini(pr);
        pthread_mutex_lock(&f->mtx);
        f->obj = cache_obj_ref(f->stale);
        f->served_stale = 1;
        f->shareable = 1;
        f->state = FILL_DONE;
        pthread_mutex_unlock(&f->mtx);
        fill_notify(f);
        return;
    }

    vary_finish(e, &pr->vary);
    int64_t cl = pr->content_length;
    struct cache_obj *o = cache_obj_new(status, pr->hdrs, pr->hdrs_len, NULL);
    o->info = pr->info;
    o->etag = pr->etag;
    o->vary = pr->vary;
    o->request_time = f->request_time;
    o->stored_us = f->request_us;
    o->response_time = now;
    o->lifetime = http_freshness_lifetime(&o->info, f->rt->cfg.heuristic_max_s);
    /* Negative caching: a 404/410 that says nothing of its freshness is reused for a short
     * while, so a storm of requests for a missing model does not all reach the origin. */
    if ((status == 404 || status == 410) && o->lifetime == 0 && f->rt->cfg.negative_ttl_s > 0 &&
        !o->info.cc.present && !o->info.cdn_cc.present && !o->info.surrogate.present &&
        !o->info.has_expires)
        o->lifetime = f->rt->cfg.negative_ttl_s;
    /* A route's ttl is the default freshness of responses that state none of their own. */
    if (f->route_ttl_s >= 0 && o->lifetime == 0 && !o->info.cc.present && !o->info.cdn_cc.present &&
        !o->info.surrogate.present && !o->info.has_expires && status >= 200 && status < 300)
        o->lifetime = f->route_ttl_s;
    const char *ar;
    o->has_accept_ranges = cache_obj_header(o, "accept-ranges", &ar) >= 0;
    if (f->range_fwd && status == 206) {
        /* A part is kept when the whole response would be stored as a 200 (RFC 9111 §3.3):
         * its freshness is the 200's. */
        struct http_resp_info ri = o->info;
        const char *cr;
        long crl = cache_obj_header(o, "content-range", &cr);
        const char *pwhy;
        uint64_t last = 0;
        ri.status = 200;
        f->part_ok = crl > 0 &&
                     edge__parts_content_range(cr, (size_t)crl, &f->part_first, &last,
                                               &f->part_size) == 0 &&
                     cl >= 0 && (uint64_t)cl == last - f->part_first + 1 &&
                     edge__parts_keepable(o) && http_cache_storable(&f->qi, &ri, &pwhy);
        if (f->part_ok)
            o->lifetime = http_freshness_lifetime(&ri, f->rt->cfg.heuristic_max_s);
    }

    const char *why = NULL;
    int storable = 0;
    if (f->cacheable_req || f->auth_pass) {
        storable = http_cache_storable(&f->qi, &o->info, &why);
        if (storable && o->vary && strcmp(o->vary, "*") == 0) {
            storable = 0;
            why = "vary-star";
        }
        /* Like nginx and Varnish: a Set-Cookie response is shared only when the origin
         * says so explicitly. */
        if (storable && o->info.has_set_cookie && !o->info.cc.public_ && o->info.cc.s_maxage < 0 &&
            !o->info.cdn_cc.present) {
            storable = 0;
            why = "set-cookie";
        }
    }
    /* A body with neither Content-Length nor chunked framing ends with the origin's close
     * (RFC 9112 §6.3 rule 8), and an origin that dies mid-body closes the same way: nothing
     * tells a whole body from a cut one. It is passed on, not stored for every later client,
     * unless the operator vouches for the origin. */
    if (storable && cl < 0 && !pr->chunked && !fill_no_body(f, status) &&
        !f->rt->cfg.store_close_delimited) {
        storable = 0;
        why = "close-delimited";
    }
    if (storable && o->vary) {
        struct buf vk;
        buf_init(&vk, 64 * 1024);
        if (fill_ext(f)->req && l1_vary_key(&vk, o->vary, &fill_ext(f)->req->r) == 0) {
            free(o->vkey);
            o->vkey = buf_take(&vk, &o->vkey_len);
        } else {
            storable = 0;
            why = "vary";
        }
        buf_fini(&vk);
    }
    o->body = fill_body(f, o, cl, storable);
    const char *kept = NULL; /* why a storable response is not kept after all */
    if (f->cacheable_req && f->method && strcmp(f->method, "HEAD") == 0) {
        /* A HEAD's response is not an object to store (it has no body); it may update the
         * stored response's fields (§4.3.5). Cache-Status says which. */
        if (status == 200 && head_refresh(f, o, now))
            kept = "head-refreshed";
        else
            kept = "head";
    } else if (storable && !fill_no_body(f, status)) {
        /* The head says whether the response is kept (Cache-Status), and it goes out with
         * the body's first bytes, long before the body is complete: what the tiers will
         * do with it is decided now, and kept to. */
        if (cache_body_file(o->body, NULL) >= 0) {
            if (!f->l2w) {
                /* Over --max-mem-object and not written into L2: a temporary file that
                 * goes with the last client. */
                kept = "too-large";
            }
        } else if (l1_judge(e->l1, f->pkey, f->plen, o, cl >= 0 ? (uint64_t)cl : 0) != 0 &&
                   e->ntiers == 0) {
            /* The policy keeps first-seen large objects out of a full L1 (they would flush
             * its probation queue, docs/internals/eviction.md); the next request for it
             * is stored. With tiers behind L1 they take it. */
            kept = "admission";
        }
    }
    pthread_mutex_lock(&f->mtx);
    f->obj = o;
    f->shareable = storable;
    f->store_detail = storable ? kept : f->part_ok ? "partial" : (why ? why : "uncacheable");
    f->state = FILL_HEADERS;
    pthread_mutex_unlock(&f->mtx);
    fill_notify(f);
}

/* An interim response (RFC 9110 §15.2; 103 Early Hints above all, whose Link fields are
 * what clients preload): its fields, filtered as a stored block is (no hop-by-hop field,
 * none that Connection names), go to the waiters that have not begun their final response;
 * it is never stored nor merged into the final head. A few per response are kept, the
 * rest dropped: an origin cannot make the edge hold more than EDGE_INTERIM_MAX blocks. */
static void fill_interim(struct edge_fill *f, int status)
{
    struct http_proxy_resp pr;
    const char *why;

    if (http_proxy_resp_parse(&pr, status, 1, 1, f->resp_hdrs.data ? f->resp_hdrs.data : "",
                              f->resp_hdrs.len, units_wall_s(), &why) != 0)
        return;
    pthread_mutex_lock(&f->mtx);
    int kept = f->ninterim < EDGE_INTERIM_MAX;
    if (kept) {
        f->interim_status[f->ninterim] = status;
        f->interim[f->ninterim++] = mc_xstrndup(pr.hdrs, pr.hdrs_len);
    }
    pthread_mutex_unlock(&f->mtx);
    http_proxy_resp_fini(&pr);
    if (kept)
        fill_notify(f);
}

static size_t on_header(char *data, size_t size, size_t nitems, void *arg)
{
    struct edge_fill *f = arg;
    MC_CHECK_OBJ_NOTNULL(f, EDGE_FILL_MAGIC);
    MC_CHECK_OBJ(f->e, EDGE_MAGIC);
    size_t n = size * nitems;

    if (f->headers_done)
        return n; /* trailers: ignored */
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        buf_reset(&f->resp_hdrs);
        return n;
    }
    if (n <= 2 && (data[0] == '\r' || data[0] == '\n')) {
        long status = 0;
        curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 100 && status < 200) {
            /* 100 Continue answers our own Expect, which curl does not send (origin_headers);
             * the edge answers the client's Expect itself (http_x_body_stream). */
            if (status != 100 && status != 101)
                fill_interim(f, (int)status);
            buf_reset(&f->resp_hdrs);
            return n;
        }
        fill_upstream_answered(f); /* a refused head is no sign of an origin down */
        struct http_proxy_resp pr;
        if (origin_head(f, (int)status, &pr) != 0)
            return 0; /* curl fails the transfer and closes the origin connection */
        headers_complete(f, (int)status, &pr);
        return n;
    }
    if (buf_append(&f->resp_hdrs, data, n) != 0)
        return 0; /* header block over the limit: fail the transfer */
    return n;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct edge_fill *f = arg;
    MC_CHECK_OBJ_NOTNULL(f, EDGE_FILL_MAGIC);
    MC_CHECK_OBJ(f->e, EDGE_MAGIC);
    size_t n = size * nmemb;

    if (!f->headers_done || !f->obj)
        return 0;
    if (f->revalidated || f->served_stale)
        return n;
    if (f->l2w) {
        /* Into the L2 file (checksummed as it goes), then visible to the readers. */
        if (l2_writer_append(f->l2w, data, n) != 0) {
            f->local_fail = 1;
            return 0;
        }
        cache_body_publish(f->obj->body, cache_body_len(f->obj->body) + n);
    } else if (cache_body_append(f->obj->body, data, n) != 0) {
        f->local_fail = 1;
        return 0;
    }
    metrics_counter_add(f->e->m.bytes_origin, n);
    fill_notify(f);
    return n;
}

static int retryable(CURLcode res)
{
    switch (res) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR: return 1;
    default: return 0;
    }
}

static void fill_unlink_owner(struct edge_fill *f)
{
    struct edge_worker *w = f->owner;
    if (f->prev)
        f->prev->next = f->next;
    else if (w->fills == f)
        w->fills = f->next;
    if (f->next)
        f->next->prev = f->prev;
    f->prev = f->next = NULL;
}

static void transfer_cleanup(struct edge_fill *f)
{
    fill_stop_fb_timer(f);
    if (f->resume_timer) {
        uv_timer_stop(f->resume_timer);
        uv_close((uv_handle_t *)f->resume_timer, (uv_close_cb)free);
        f->resume_timer = NULL;
    }
    if (f->easy) {
        curl_easy_cleanup(f->easy);
        f->easy = NULL;
    }
    curl_slist_free_all(f->req_hdrs);
    f->req_hdrs = NULL;
    if (f->l2w)
        l2_writer_abort(&f->l2w);
}

/* RFC 9111 §4.4: the URIs in Location and Content-Location of a successful unsafe request
 * are invalidated too, but only on the same host (a response must not be able to purge
 * another origin's content). */
static void invalidate_location(struct edge_fill *f, const struct cache_obj *o, const char *field)
{
    const char *v, *slash = memchr(f->pkey, '/', f->plen);
    long n = cache_obj_header(o, field, &v);
    struct http_str host, path, query = {"", 0};
    struct buf key;

    if (n <= 0 || !slash)
        return;
    host.p = f->pkey;
    host.len = (size_t)(slash - f->pkey);
    const char *end = v + n, *p = v;
    if ((size_t)n > 7 &&
        (strncasecmp(v, "http://", 7) == 0 || strncasecmp(v, "https://", 8) == 0)) {
        p = memchr(v, '/', (size_t)n);
        p = p ? p + 2 : end;
        const char *hend = memchr(p, '/', (size_t)(end - p));
        if (!hend)
            hend = end;
        if ((size_t)(hend - p) != host.len || strncasecmp(p, host.p, host.len) != 0)
            return;
        p = hend;
    }
    if (p >= end || *p != '/')
        return; /* relative references other than absolute paths are left alone */
    const char *q = memchr(p, '?', (size_t)(end - p));
    path.p = p;
    path.len = (size_t)((q ? q : end) - p);
    if (q) {
        query.p = q + 1;
        query.len = (size_t)(end - q - 1);
    }
    buf_init(&key, 16 * 1024);
    if (cache_key_primary(&key, host, path, query, &f->e->keyopts) == 0)
        edge__tier_drop(f->owner, key.data, key.len);
    buf_fini(&key);
}

/* A response body that did not arrive whole: it is never stored (the L2 writer, if any,
 * is abandoned by transfer_cleanup) and its readers abort. Counted and logged when the
 * origin is at fault: not for a fill cancelled by a stop, nor a body this edge could not
 * keep. */
static void body_failed(struct edge_fill *f, CURLcode res)
{
    struct edge *e = f->e;
    const char *why = f->errbuf[0]    ? f->errbuf
                    : res != CURLE_OK ? curl_easy_strerror(res)
                                      : "body shorter than its Content-Length";
    int keyn = (int)MC_MIN(f->plen, 200u), urln = (int)MC_MIN(strlen(f->url_path), 200u);
    unsigned long long got = (unsigned long long)cache_body_len(f->obj->body);

    if (res == CURLE_ABORTED_BY_CALLBACK || f->local_fail) {
        log_debug("response body not kept", "key=\"%.*s\" bytes=%llu reason=\"%s\"", keyn, f->pkey,
                  got, f->local_fail ? "local write failed" : why);
        return;
    }
    metrics_counter_add(e->m.origin_truncated, 1);
    log_warn("origin body incomplete: clients aborted, not stored",
             "key=\"%.*s\" url=\"%s%.*s\" bytes=%llu expected=%lld reason=\"%s\"", keyn, f->pkey,
             f->rt->origin_urls[f->origin_idx], urln, f->url_path, got,
             (long long)f->obj->body->expected, why);
}

/* Ends the fill: store, leave the busy table, wake everyone, drop the transfer's ref. */
static void fill_complete(struct edge_fill *f, CURLcode res)
{
    struct edge *e = f->e;
    int64_t now = units_wall_s();

    if (!f->headers_done) {
        if (f->stale && http_cache_stale_if_error_ok(&f->stale->info, f->stale->lifetime,
                                                     edge_obj_age(f->stale, now),
                                                     f->rt->cfg.stale_if_error_s)) {
            pthread_mutex_lock(&f->mtx);
            f->obj = cache_obj_ref(f->stale);
            f->served_stale = 1;
            f->shareable = 1;
            f->state = FILL_DONE;
            pthread_mutex_unlock(&f->mtx);
        } else {
            pthread_mutex_lock(&f->mtx);
            f->state = FILL_FAILED;
            if ((f->upload_failed || f->short_circuit) && f->fail_msg) {
                /* The client's body was at fault (413, 400, 408): say so, not 502; or no
                 * upstream was asked (503 naming the origin whose breaker is open). */
            } else if (f->head_refused) {
                f->fail_status = 502;
                f->fail_msg = "origin sent an invalid response head";
            } else if (res == CURLE_PEER_FAILED_VERIFICATION) {
                /* Said apart from "unreachable": the fix is a CA bundle (--origin-ca) or a
                 * certificate that names the origin, not the network. */
                f->fail_status = 502;
                f->fail_msg = "origin TLS certificate could not be verified";
            } else if (res == CURLE_SSL_CONNECT_ERROR) {
                f->fail_status = 502;
                f->fail_msg = "TLS handshake with the origin failed";
            } else {
                f->fail_status = (f->timed_out || res == CURLE_OPERATION_TIMEDOUT) ? 504 : 502;
                f->fail_msg = f->fail_status == 504        ? "origin did not answer in time"
                            : res == CURLE_COULDNT_CONNECT ? "origin refused the connection"
                            : res == CURLE_COULDNT_RESOLVE_HOST
                                ? "origin host name not resolved"
                                : "origin unreachable or invalid response";
            }
            pthread_mutex_unlock(&f->mtx);
        }
        if (!f->short_circuit)
            metrics_counter_add(e->m.origin_errors, 1);
    } else if (f->obj && !f->revalidated && !f->served_stale) {
        struct cache_obj *o = f->obj;
        int head_only = f->method && strcmp(f->method, "HEAD") == 0;
        int whole = fill_no_body(f, o->status) || o->body->expected < 0 ||
                    cache_body_len(o->body) == (uint64_t)o->body->expected;
        if (res != CURLE_OK || !whole) {
            body_failed(f, res);
            metrics_counter_add(e->m.origin_errors, 1);
            /* The failure status is set before the body fails: a waiter that sees the
             * failed body and then takes the lock reads it (waiter_body_failed). */
            pthread_mutex_lock(&f->mtx);
            f->shareable = 0;
            f->fail_status = res == CURLE_OPERATION_TIMEDOUT ? 504 : 502;
            f->fail_msg = f->fail_status == 504 ? "origin body did not arrive in time"
                                                : "origin body incomplete";
            pthread_mutex_unlock(&f->mtx);
            cache_body_finish(o->body, CACHE_BODY_FAILED);
        } else {
            cache_body_finish(o->body, CACHE_BODY_COMPLETE);
            if (f->shareable && f->store_detail == NULL && !head_only) {
                if (f->l2w) {
                    /* A large body went straight to its L2 file: make it visible,
                     * unless a ban issued while it arrived refuses it. */
                    int ok;
                    unsigned tok = edge__inval_store_begin(e, f->pkey, f->plen, o, &ok);
                    int rc = ok ? l2_writer_commit(&f->l2w) : -ECANCELED;
                    if (!ok)
                        l2_writer_abort(&f->l2w);
                    edge__inval_store_end(e, tok);
                    if (rc != 0)
                        log_warn("L2 did not keep a large object", "key=\"%.*s\" err=\"%s\"",
                                 (int)MC_MIN(f->plen, 200u), f->pkey, strerror(-rc));
                    metrics_counter_add(rc == 0 ? e->m.l2_stored : e->m.l2_not_stored, 1);
                    metrics_counter_add(rc == 0 ? e->m.stored : e->m.not_stored, 1);
                } else {
                    edge__tier_keep(f->owner, f->pkey, f->plen, o);
                }
                edge__parts_drop(e, f->pkey, f->plen); /* the whole is stored now */
            } else if (f->part_ok && o->status == 206) {
                struct cache_obj *all = edge__parts_keep(e, f->pkey, f->plen, o, f->part_first,
                                                         f->part_size);
                if (all) {
                    edge__tier_keep(f->owner, f->pkey, f->plen, all);
                    cache_obj_unref(&all);
                }
            } else {
                metrics_counter_add(e->m.not_stored, 1);
            }
            /* Unsafe methods invalidate the target URI (RFC 9111 §4.4). */
            if (f->method && !f->route_post && o->status >= 200 && o->status < 400 &&
                strcmp(f->method, "OPTIONS") && strcmp(f->method, "TRACE") &&
                strcmp(f->method, "HEAD")) {
                edge__tier_drop(f->owner, f->pkey, f->plen);
                invalidate_location(f, o, "location");
                invalidate_location(f, o, "content-location");
            }
        }
        fill_set_state(f, FILL_DONE);
    } else {
        fill_set_state(f, FILL_DONE);
    }
    transfer_cleanup(f);
    fill_upstream_release(f);
    fill_unlink_owner(f);
    if (f->in_busy)
        busy_leave(f);
    fill_notify(f);
    fill_unref(&f); /* the transfer's reference */
}

static void on_done(CURL *easy, CURLcode res, void *arg)
{
    struct edge_fill *f = arg;
    MC_CHECK_OBJ_NOTNULL(f, EDGE_FILL_MAGIC);
    MC_CHECK_OBJ(f->e, EDGE_MAGIC);

    (void)easy;
    if (res != CURLE_OK && !f->headers_done && retryable(res))
        fill_upstream_failed(f, curl_easy_strerror(res));
    if (res != CURLE_OK && !f->headers_done && f->idempotent && retryable(res) && !f->timed_out &&
        f->origin_idx + 1 < f->rt->norigins) {
        log_warn("origin failed, trying the next", "origin=%s err=\"%s\"",
                 f->rt->origin_urls[f->origin_idx], curl_easy_strerror(res));
        transfer_cleanup(f);
        f->origin_idx++;
        buf_reset(&f->resp_hdrs);
        if (fill_start_transfer(f) == 0)
            return;
    }
    if (res != CURLE_OK)
        log_debug("origin transfer failed", "err=\"%s\"", curl_easy_strerror(res));
    fill_complete(f, res);
}

static void on_first_byte_timeout(uv_timer_t *t)
{
    struct edge_fill *f = t->data;
    MC_CHECK_OBJ_NOTNULL(f, EDGE_FILL_MAGIC);
    MC_CHECK_OBJ(f->e, EDGE_MAGIC);

    if (f->headers_done || !f->easy)
        return;
    f->timed_out = 1;
    fill_upstream_failed(f, "no response head within --first-byte-timeout");
    http_client_cancel(f->owner->client, f->easy);
    fill_complete(f, CURLE_OPERATION_TIMEDOUT);
}

static int fill_start_transfer(struct edge_fill *f)
{
    struct edge *e = f->e;
    struct http_request *r = &fill_ext(f)->req->r;
    char *url;
    size_t ul;
    struct buf u;

    if (fill_pick_upstream(f) != 0)
        return -EHOSTDOWN;
    f->easy = curl_easy_init();
    if (!f->easy)
        return -ENOMEM;
    buf_init(&u, 64 * 1024);
    buf_puts(&u, f->rt->origin_urls[f->origin_idx]);
    buf_puts(&u, f->url_path);
    url = buf_take(&u, &ul);
    curl_easy_setopt(f->easy, CURLOPT_URL, url);
    free(url);
    f->req_hdrs = origin_headers(f, r, fill_ext(f)->peer);
    curl_easy_setopt(f->easy, CURLOPT_HTTPHEADER, f->req_hdrs);
    f->errbuf[0] = '\0';
    curl_easy_setopt(f->easy, CURLOPT_ERRORBUFFER, f->errbuf);
    curl_easy_setopt(f->easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(f->easy, CURLOPT_HEADERDATA, f);
    curl_easy_setopt(f->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(f->easy, CURLOPT_WRITEDATA, f);
    if (e->cfg.origin_http2) {
        /* h2 where the https:// upstream offers it in ALPN, HTTP/1.1 otherwise; a new
         * transfer waits for a multiplexed connection rather than opening another. */
        curl_easy_setopt(f->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
        curl_easy_setopt(f->easy, CURLOPT_PIPEWAIT, 1L);
    } else {
        curl_easy_setopt(f->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    }
    curl_easy_setopt(f->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)f->rt->cfg.connect_timeout_ms);
    curl_easy_setopt(f->easy, CURLOPT_TIMEOUT_MS, (long)f->rt->cfg.origin_timeout_ms);
    curl_easy_setopt(f->easy, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(f->easy, CURLOPT_TCP_NODELAY, 1L);
    if (e->cfg.origin_ca)
        curl_easy_setopt(f->easy, CURLOPT_CAINFO, e->cfg.origin_ca);
    if (e->cfg.origin_insecure) {
        curl_easy_setopt(f->easy, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(f->easy, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (f->upload_streaming) {
        curl_easy_setopt(f->easy, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(f->easy, CURLOPT_CUSTOMREQUEST, f->method);
        curl_easy_setopt(f->easy, CURLOPT_READFUNCTION, on_upload_read);
        curl_easy_setopt(f->easy, CURLOPT_READDATA, f);
        curl_easy_setopt(f->easy, CURLOPT_INFILESIZE_LARGE, (curl_off_t)f->upload_len);
        f->resume_timer = mc_xmalloc(sizeof(*f->resume_timer));
        uv_timer_init(f->owner->loop, f->resume_timer);
        f->resume_timer->data = f;
    } else if (f->method) {
        if (strcmp(f->method, "HEAD") == 0)
            curl_easy_setopt(f->easy, CURLOPT_NOBODY, 1L);
        else
            curl_easy_setopt(f->easy, CURLOPT_CUSTOMREQUEST, f->method);
        if (f->req_body_len || (strcmp(f->method, "POST") == 0 || strcmp(f->method, "PUT") == 0 ||
                                strcmp(f->method, "PATCH") == 0)) {
            curl_easy_setopt(f->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)f->req_body_len);
            curl_easy_setopt(f->easy, CURLOPT_POSTFIELDS, f->req_body ? f->req_body : "");
        }
    }
    f->request_time = units_wall_s();
    f->request_us = units_wall_us();
    f->headers_done = 0;
    f->head_refused = NULL;
    if (http_client_add(f->owner->client, f->easy, on_done, f) != 0) {
        transfer_cleanup(f);
        return -EINVAL;
    }
    metrics_counter_add(e->m.origin_requests, 1);
    atomic_store_explicit(&f->start_us, units_now_us(), memory_order_relaxed);
    atomic_store_explicit(&f->hdr_us, 0, memory_order_relaxed);
    if (f->rt->cfg.first_byte_timeout_ms) {
        f->fb_timer = mc_xmalloc(sizeof(*f->fb_timer));
        uv_timer_init(f->owner->loop, f->fb_timer);
        f->fb_timer->data = f;
        uv_timer_start(f->fb_timer, on_first_byte_timeout, f->rt->cfg.first_byte_timeout_ms, 0);
    }
    return 0;
}

/* Common set-up of a fill from the request that starts it. */
static void fill_setup(struct edge_fill *f, const struct http_request *r, const char *peer,
                       int cacheable)
{
    struct fill_ext *fx = fill_ext(f);

    fx->req = req_clone(r);
    snprintf(fx->peer, sizeof(fx->peer), "%s", peer ? peer : "");
    f->cacheable_req = cacheable;
    http_req_info_from_request(&f->qi, r);
    if (cacheable)
        f->qi.method = HTTP_M_GET; /* a cache fill for HEAD fetches the whole object */
    f->auth_pass = !cacheable && f->qi.has_authorization &&
                   (r->method == HTTP_M_GET || r->method == HTTP_M_HEAD);
    f->url_path = mc_xstrndup(r->path.p, r->path.len + (r->query.len ? r->query.len + 1 : 0));
    if (r->query.len && r->path.p + r->path.len != r->query.p - 1) {
        /* Path and query are not contiguous (absolute-form parsing): join them. */
        free(f->url_path);
        struct buf b;
        buf_init(&b, 64 * 1024);
        buf_append(&b, r->path.p, r->path.len);
        buf_append(&b, "?", 1);
        buf_append(&b, r->query.p, r->query.len);
        f->url_path = buf_take(&b, NULL);
    }
    if (f->url_path[0] != '/') {
        char *p = mc_xmalloc(strlen(f->url_path) + 2);
        p[0] = '/';
        strcpy(p + 1, f->url_path);
        free(f->url_path);
        f->url_path = p;
    }
    f->idempotent = r->method == HTTP_M_GET || r->method == HTTP_M_HEAD ||
                    r->method == HTTP_M_OPTIONS || r->method == HTTP_M_PUT ||
                    r->method == HTTP_M_DELETE || r->method == HTTP_M_TRACE;
    f->phash = pkey_hash(f->pkey, f->plen);
}

static int fill_launch(struct edge_fill *f)
{
    struct edge_worker *w = f->owner;

    f->next = w->fills;
    f->prev = NULL;
    if (w->fills)
        w->fills->prev = f;
    w->fills = f;
    fill_ref(f); /* the transfer's reference */
    if (fill_start_transfer(f) != 0) {
        fill_complete(f, CURLE_FAILED_INIT);
        return -EINVAL;
    }
    return 0;
}

/* A route's POST body goes to the origin with the fill; its ttl sets default freshness. */
static void fill_route(struct edge_fill *f, const struct edge_rctx *rc)
{
    if (!rc)
        return;
    f->route_ttl_s = rc->ttl_s;
    if (rc->body) {
        free(f->method);
        f->method = mc_xstrdup("POST");
        f->req_body = mc_xmalloc(rc->len ? rc->len : 1);
        memcpy(f->req_body, rc->body, rc->len);
        f->req_body_len = rc->len;
        f->route_post = 1;
    }
}

/* A HEAD that missed, or whose stored response must be revalidated: it joins the fill
 * running for the key, if any (a GET's response answers a HEAD), else asks the upstream
 * with HEAD (with the stored response's validators when there is one), so no body is
 * fetched for it (RFC 9111 §4.3.5 then updates the stored fields). That fill is not in
 * the busy table: a GET must not join a response without a body. */
static void fetch_head(struct edge_worker *w, struct http_exchange *x, const char *pkey,
                       size_t plen, struct cache_obj *stale, const struct edge_rctx *rc)
{
    struct edge_fill *f = busy_find(w->e, pkey, plen);
    struct edge_waiter *wt = waiter_new(w, x, pkey, plen);

    wt->rc = edge_rctx_dup(rc);
    wt->xc = EDGE_XC_MISS;
    if (f) {
        metrics_counter_add(w->e->m.coalesced, 1);
        waiter_attach(wt, f);
        return;
    }
    f = fill_new(w, pkey, plen);
    fill_setup(f, http_x_request(x), http_x_peer(x), 1);
    fill_route(f, rc);
    f->method = mc_xstrdup("HEAD");
    if (stale)
        f->stale = cache_obj_ref(stale);
    wt->leader = 1;
    waiter_attach(wt, f); /* takes f's initial reference */
    fill_launch(f);
}

void edge__fetch_range(struct edge_worker *w, struct http_exchange *x, const char *pkey,
                       size_t plen, const struct edge_rctx *rc)
{
    if (edge__parts_serve(w, x, pkey, plen))
        return;
    struct edge_fill *f = busy_find(w->e, pkey, plen);
    if (f || edge__parts_too_large(w->e, pkey, plen)) {
        fill_unref(&f);
        edge__fetch_cacheable(w, x, pkey, plen, NULL, rc);
        return;
    }
    /* Not in the busy table, as a HEAD fill: a request for the whole (or another range)
     * must not join a response that holds one part. */
    struct edge_waiter *wt = waiter_new(w, x, pkey, plen);
    wt->rc = edge_rctx_dup(rc);
    wt->xc = EDGE_XC_MISS;
    f = fill_new(w, pkey, plen);
    f->range_fwd = 1;
    fill_setup(f, http_x_request(x), http_x_peer(x), 1);
    fill_route(f, rc);
    wt->leader = 1;
    waiter_attach(wt, f); /* takes f's initial reference */
    fill_launch(f);
}

/* A fill that ended between this request's L1 look-up and its turn in the busy table
 * stored its response first and left the table (a leader sees what any earlier fill
 * stored). A fresh, unbanned copy in L1, newer than the stale one being revalidated if
 * any, answers the request, or makes a background refresh needless: either would fetch
 * the same thing again. A new reference, or NULL. */
static struct cache_obj *stored_meanwhile(struct edge *e, const struct http_request *req,
                                          const char *pkey, size_t plen,
                                          const struct cache_obj *stale)
{
    struct cache_obj *o;
    struct http_req_info qi;

    if (l1_lookup(e->l1, pkey, plen, req, &o) != 0)
        return NULL;
    http_req_info_from_request(&qi, req);
    if (o == stale || (stale && o->stored_us <= stale->stored_us) ||
        http_cache_reuse(&qi, &o->info, o->lifetime, edge_obj_age(o, units_wall_s())) !=
            HTTP_REUSE_FRESH ||
        edge__inval_verdict(e, pkey, plen, o) != CACHE_BAN_NONE)
        cache_obj_unref(&o);
    return o;
}

void edge__fetch_cacheable(struct edge_worker *w, struct http_exchange *x, const char *pkey,
                           size_t plen, struct cache_obj *stale, const struct edge_rctx *rc)
{
    const struct http_request *r = http_x_request(x);
    if (r->method == HTTP_M_HEAD && !(rc && rc->body)) {
        fetch_head(w, x, pkey, plen, stale, rc);
        return;
    }
    struct edge_fill *fresh = fill_new(w, pkey, plen), *f;
    struct edge_waiter *wt;
    struct cache_obj *o;
    int leader;

    fill_setup(fresh, r, http_x_peer(x), 1);
    fill_route(fresh, rc);
    if (stale)
        fresh->stale = cache_obj_ref(stale);
    f = busy_join(w->e, fresh, &leader);
    if (leader && (o = stored_meanwhile(w->e, r, pkey, plen, stale)) != NULL) {
        /* Nobody may join it once it has left the table; one that did waits for it. */
        busy_leave(f);
        if (f->joined == 0) {
            fill_unref(&fresh);
            fill_unref(&f);
            /* Fresh and unbanned: answered as the L1 hit it now is. */
            edge__serve_stored(w, x, pkey, plen, o, EDGE_LV_L1, rc);
            cache_obj_unref(&o);
            return;
        }
        cache_obj_unref(&o);
    }
    wt = waiter_new(w, x, pkey, plen);
    wt->rc = edge_rctx_dup(rc);
    wt->xc = EDGE_XC_MISS;
    wt->leader = leader;
    if (!leader) {
        metrics_counter_add(w->e->m.coalesced, 1);
        fill_unref(&fresh);
        waiter_attach(wt, f);
        return;
    }
    fill_unref(&fresh); /* busy_join returned its own reference */
    waiter_attach(wt, f);
    fill_launch(f);
}

static void fetch_pass(struct edge_worker *w, struct http_exchange *x, const char *pkey,
                       size_t plen, const struct edge_rctx *rc)
{
    const struct http_request *r = http_x_request(x);
    struct edge_fill *f = fill_new(w, pkey, plen);
    struct edge_waiter *wt = waiter_new(w, x, pkey, plen);
    size_t blen;
    const char *body = http_x_body(x, &blen);

    fill_setup(f, r, http_x_peer(x), 0);
    if (rc && rc->body) {
        /* The route already read the body off the connection: it travels with rc. */
        body = rc->body;
        blen = rc->len;
    }
    if (r->method != HTTP_M_GET) {
        f->method = mc_xstrndup(r->method_str.p, r->method_str.len);
        if (blen) {
            f->req_body = mc_xmalloc(blen);
            memcpy(f->req_body, body, blen);
            f->req_body_len = blen;
        }
    }
    f->route_post = rc && rc->body;
    wt->leader = 1;
    wt->xc = EDGE_XC_BYPASS;
    waiter_attach(wt, f); /* takes f's initial reference */
    if (!f->route_post && http_x_body_streaming(x)) {
        if (!f->method)
            f->method = mc_xstrndup(r->method_str.p, r->method_str.len);
        f->upload_x = x;
        f->upload_len = r->chunked ? -1 : r->content_length;
        /* The fill starts once the body is read or over --request-buffer (see above). */
        if (f->rt->cfg.request_buffer)
            f->upload_buffering = 1;
        else
            upload_stream(f);
        http_x_body_stream(x, on_upload_data, on_upload_end, f);
        return;
    }
    fill_launch(f);
}

void edge__fetch_pass(struct edge_worker *w, struct http_exchange *x, const char *pkey, size_t plen)
{
    fetch_pass(w, x, pkey, plen, NULL);
}

void edge__fetch_background(struct edge_worker *w, const struct http_request *req, const char *pkey,
                            size_t plen, struct cache_obj *stale, const struct edge_rctx *rc)
{
    struct edge_fill *fresh = fill_new(w, pkey, plen), *f;
    struct cache_obj *o;
    int leader;

    fill_setup(fresh, req, NULL, 1);
    fill_route(fresh, rc);
    fresh->stale = cache_obj_ref(stale);
    f = busy_join(w->e, fresh, &leader);
    fill_unref(&fresh);
    if (leader && (o = stored_meanwhile(w->e, req, pkey, plen, stale)) != NULL) {
        /* Nobody may join it once it has left the table; one that did waits for it. */
        busy_leave(f);
        leader = f->joined > 0;
        cache_obj_unref(&o);
    }
    if (leader)
        fill_launch(f);
    fill_unref(&f);
}

void edge__worker_cancel_fills(struct edge_worker *w)
{
    while (w->fills) {
        struct edge_fill *f = w->fills;
        if (f->easy)
            http_client_cancel(w->client, f->easy);
        fill_complete(f, CURLE_ABORTED_BY_CALLBACK);
    }
}
