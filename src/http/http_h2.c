/* src/http/http_h2.c: HTTP/2 to clients, on the server's TLS connections (nghttp2).
 *
 * A TLS connection whose ALPN chose "h2" carries an nghttp2 server session instead of the
 * HTTP/1.1 parser: http_server.c hands it the decrypted bytes (http__h2_input) and tells it
 * when the socket took what was written (http__h2_on_write); frames go out through the
 * same connection writes as HTTP/1.1 responses (nghttp2_session_mem_send, no socket of
 * its own). Each stream is one struct http_exchange, so every handler runs unchanged
 * through the exchange API; http_server.c routes each http_x_* call of an exchange with
 * x->h2s here.
 *
 * Requests: the pseudo-header fields and the fields of a HEADERS block become an HTTP/1.1
 * head (`METHOD PATH HTTP/1.1`, Host from :authority) parsed by http_parse_request, so a
 * request is validated and described exactly as over HTTP/1.1. nghttp2's own HTTP
 * messaging checks (RFC 9113 §8.2) come first: connection-specific fields, TE other than
 * "trailers", uppercase names, missing or repeated pseudo-headers, and a Content-Length
 * that the DATA frames do not match reset the stream (PROTOCOL_ERROR).
 *
 * Request bodies arrive in DATA frames. Window updates are ours (no automatic ones): the
 * bytes a handler took (or that were buffered whole for a handler that does not stream)
 * are "consumed", which reopens the window. A paused streaming handler leaves bytes in the
 * stream's pending buffer, at most one stream window (H2_STREAM_WINDOW), and the client
 * stops for want of window.
 *
 * Responses: the head is submitted at http_x_start (fields from the handler's header
 * lines, names in lower case, connection-specific ones dropped); the body goes through a
 * per-stream queue of pieces (memory, or a file range read with pread in pieces of at most
 * one frame) taken by nghttp2's data provider as flow control allows. Frames are produced
 * only while the socket's write queue is under H2_SEND_HIGH, so a slow client makes the
 * edge hold at most that much per connection, never a whole body. A piece's done callback
 * runs once nghttp2 copied its last byte (not from inside an nghttp2 callback: done may
 * write or end the exchange).
 *
 * Lifetimes: a stream struct and its exchange live until both the stream is closed in
 * nghttp2 (or the connection closes) and the handler ended the exchange. A stream the
 * client resets, or a connection that goes, aborts its exchange as a client that goes away
 * does over HTTP/1.1 (abort callback, writes fail with -EPIPE, queued pieces' done run).
 * http_x_abort resets the stream (INTERNAL_ERROR): the client never sees an END_STREAM on
 * a body that is not whole.
 *
 * Limits (see docs/internals/http.md): 128 concurrent streams, header list size (the head
 * limit, 431 past it), HPACK table 4096, at most H2_RST_PER_S resets and H2_CTRL_PER_S
 * control frames from the client per second (rapid reset, ping/settings floods) before
 * GOAWAY ENHANCE_YOUR_CALM; nghttp2 bounds CONTINUATION frames per header block. */
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/log.h"
#include "core/mc.h"
#include "core/units.h"
#include "http/http_server_int.h"

#define H2_MAX_STREAMS 128
/* Each stream's receive window: what a paused streaming handler may leave buffered. */
#define H2_STREAM_WINDOW (256u << 10)
#define H2_CONN_WINDOW (1u << 20)
#define H2_HPACK_TABLE 4096
/* Frames are produced while the socket has less than this queued. */
#define H2_SEND_HIGH (256u << 10)
/* Frames gathered into one connection write. */
#define H2_BATCH (64u << 10)
#define H2_BATCH_CAP (H2_BATCH + 16384 + 64) /* a batch and the frame that ends it */
/* Body pieces kept per connection for reuse (each stream in flight queues one or more). */
#define H2_SPARE_PIECES 32u
/* Response heads up to this many fields and name bytes are built on the stack. */
#define H2_HEAD_NV 48u
#define H2_HEAD_NAMES 2048u
/* Resets, and control frames (SETTINGS, PING, PRIORITY, RST_STREAM), from the client per
 * second past which the connection ends with ENHANCE_YOUR_CALM. Browsers reset a few
 * streams when a page is left; hundreds a second is an attack (CVE-2023-44487). */
#define H2_RST_PER_S 200
#define H2_CTRL_PER_S 1000

enum {
    H2_GOAWAY_NO_ERROR,
    H2_GOAWAY_PROTOCOL,
    H2_GOAWAY_CALM,
    H2_GOAWAY_OTHER,
};

/* A piece of a response body waiting for the data provider. */
struct h2_piece {
    struct h2_piece *next;
    const char *mem; /* memory piece, or NULL: a file range */
    int fd;
    uint64_t off, left;
    void (*done)(void *arg);
    void *arg;
};

struct http__h2_stream {
    struct http__h2 *h2;
    struct http__h2_stream *prev, *next;
    int32_t id;
    struct http_exchange *x; /* from the end of the head on */
    struct buf fields;       /* regular fields as "name: value\r\n" */
    struct buf pseudo;       /* :method, :path, :authority, host, NUL-separated at offsets */
    size_t m_off, p_off, a_off, h_off;
    size_t m_len, p_len, a_len, h_len;
    int has_m, has_p, has_a, has_h, has_cl;
    size_t hdr_bytes; /* the field list's size as HTTP/2 counts it (RFC 9113 §6.5.2) */
    char *head;       /* the synthesized HTTP/1.1 head, which x->req points into */
    struct h2_piece *q, **qtail;
    uint64_t queued; /* bytes in q */
    char *pend;      /* request body bytes received, not yet taken by the handler */
    size_t pend_len, pend_cap;
    int remote_done; /* END_STREAM received */
    int dispatched;  /* the handler has x (or the server answered it) */
    int submitted;   /* the response head is with nghttp2 */
    int deferred;    /* the data provider waits for pieces */
    int closed;      /* nghttp2 closed the stream, or the connection closes */
    int in_cb;       /* a callback of ours is on the stack for this stream */
    /* A response without a body is submitted when the exchange ends: its HEADERS carry
     * END_STREAM, and the stream must not close under a handler still holding it. */
    char *later_headers;
    int later_status;
    int64_t later_cl;
};

struct http__h2 {
    struct conn *c;
    nghttp2_session *s;
    struct http__h2_stream *streams;
    unsigned nstreams;                    /* stream structs alive */
    int busy;                             /* inside mem_recv or the send loop: sends wait */
    int again;                            /* a send was asked for meanwhile */
    int goaway;                           /* we asked for GOAWAY (drain or calm) */
    int end_after;                        /* GOAWAY once a response's frames went out */
    struct h2_piece *dones, **dones_tail; /* pieces whose done is owed */
    struct h2_piece *spare;               /* pieces to reuse: one per response otherwise */
    unsigned nspare;
    uint64_t win_start; /* loop time (ms) the rate window began */
    unsigned rst_n, ctrl_n;
};

static void h2_send(struct http__h2 *h2);

static struct listener_metrics *h2_m(struct conn *c)
{
    return &c->w->srv->m[c->li];
}

/* ---- request heads ---- */

/* An HTTP/1.1 head from HTTP/2 pseudo-header fields and the field lines ("name: value\r\n"
 * each). Host is :authority, else the host field. A request with a body of unknown length
 * (no Content-Length) is described as chunked, so that handlers see that a body comes. */
int http__h2_head(struct buf *out, const char *method, size_t mlen, const char *path, size_t plen,
                  const char *host, size_t hlen, const char *fields, size_t flen, int unknown_len)
{
    int e = 0;

    e |= buf_append(out, method, mlen);
    e |= buf_append(out, " ", 1);
    e |= buf_append(out, path, plen);
    e |= buf_append(out, " HTTP/1.1\r\n", 11);
    if (host) {
        e |= buf_append(out, "host: ", 6);
        e |= buf_append(out, host, hlen);
        e |= buf_append(out, "\r\n", 2);
    }
    e |= buf_append(out, fields, flen);
    if (unknown_len)
        e |= buf_append(out, "transfer-encoding: chunked\r\n", 28);
    e |= buf_append(out, "\r\n", 2);
    return e ? -E2BIG : 0;
}

static struct http__h2_stream *stream_get(struct http__h2 *h2, int32_t id)
{
    return nghttp2_session_get_stream_user_data(h2->s, id);
}

static void stream_free(struct http__h2_stream *st)
{
    struct http__h2 *h2 = st->h2;

    MC_ASSERT(!st->q);
    if (st->prev)
        st->prev->next = st->next;
    else
        h2->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    h2->nstreams--;
    if (!h2->streams)
        h2->c->idle_since = uv_now(&h2->c->w->loop); /* for shedding (http_server.c) */
    if (st->x && st->dispatched)
        http__x_complete(h2->c, st->x);
    if (st->x) {
        buf_fini(&st->x->body);
        free(st->x);
    }
    buf_fini(&st->fields);
    buf_fini(&st->pseudo);
    free(st->head);
    free(st->pend);
    free(st->later_headers);
    free(st);
}

/* Frees the stream once nghttp2 is done with it and the handler ended it. */
static void stream_maybe_free(struct http__h2_stream *st)
{
    struct http__h2 *h2 = st->h2;
    struct conn *c = h2->c;

    if (st->in_cb || !st->closed || (st->x && st->dispatched && !st->x->ended))
        return;
    if (h2->s && st->id > 0)
        nghttp2_session_set_stream_user_data(h2->s, st->id, NULL);
    stream_free(st);
    if (c->closing)
        http__conn_maybe_free(c);
}

/* Leaves a callback of ours: the stream may go now (the caller does not touch it after). */
static void stream_leave(struct http__h2_stream *st)
{
    if (--st->in_cb == 0)
        stream_maybe_free(st);
}

/* The pieces still queued will not go: their done callbacks are owed. */
static void stream_fail_queue(struct http__h2_stream *st)
{
    struct http__h2 *h2 = st->h2;

    if (!st->q)
        return;
    *h2->dones_tail = st->q;
    h2->dones_tail = st->qtail;
    st->q = NULL;
    st->qtail = &st->q;
    st->queued = 0;
}

static void run_dones(struct http__h2 *h2)
{
    while (h2->dones) {
        struct h2_piece *p = h2->dones;
        h2->dones = p->next;
        if (!h2->dones)
            h2->dones_tail = &h2->dones;
        if (p->done)
            p->done(p->arg);
        if (h2->nspare < H2_SPARE_PIECES) {
            p->next = h2->spare;
            h2->spare = p;
            h2->nspare++;
        } else {
            free(p);
        }
    }
}

/* The client went (reset, or the connection): as over HTTP/1.1, the handler hears it. */
static void stream_abort(struct http__h2_stream *st)
{
    struct http_exchange *x = st->x;

    st->closed = 1;
    stream_fail_queue(st);
    if (x && st->dispatched && !x->ended && !x->aborted) {
        x->aborted = 1;
        if (x->on_abort) {
            st->in_cb++;
            x->on_abort(x, x->abort_arg);
            st->in_cb--;
        }
    }
}

/* ---- nghttp2 callbacks ---- */

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    struct http__h2 *h2 = ud;
    struct http__h2_stream *st;
    size_t max = h2->c->w->srv->cfg.limits.max_header_bytes;

    if (h2->c->closing || f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    st = mc_xcalloc(1, sizeof(*st));
    st->h2 = h2;
    st->id = f->hd.stream_id;
    st->qtail = &st->q;
    buf_init(&st->fields, max);
    buf_init(&st->pseudo, max);
    st->next = h2->streams;
    if (h2->streams)
        h2->streams->prev = st;
    h2->streams = st;
    h2->nstreams++;
    nghttp2_session_set_stream_user_data(s, st->id, st);
    metrics_counter_add(h2_m(h2->c)->h2_streams, 1);
    return 0;
}

static int pseudo_put(struct http__h2_stream *st, const uint8_t *v, size_t n, size_t *off,
                      size_t *len, int *has)
{
    *off = st->pseudo.len;
    *len = n;
    *has = 1;
    return buf_append(&st->pseudo, v, n);
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    struct http__h2 *h2 = ud;
    struct http__h2_stream *st;
    int e = 0;

    (void)flags;
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    st = stream_get(h2, f->hd.stream_id);
    if (!st || st->x)
        return 0; /* trailers: nothing here reads them */
    st->hdr_bytes += nlen + vlen + 32;
    if (st->hdr_bytes > h2->c->w->srv->cfg.limits.max_header_bytes)
        return 0; /* answered with 431 once the block ends */
    if (nlen && name[0] == ':') {
        if (nlen == 7 && memcmp(name, ":method", 7) == 0)
            e = pseudo_put(st, value, vlen, &st->m_off, &st->m_len, &st->has_m);
        else if (nlen == 5 && memcmp(name, ":path", 5) == 0)
            e = pseudo_put(st, value, vlen, &st->p_off, &st->p_len, &st->has_p);
        else if (nlen == 10 && memcmp(name, ":authority", 10) == 0)
            e = pseudo_put(st, value, vlen, &st->a_off, &st->a_len, &st->has_a);
        /* :scheme is "https" here whatever it says; :protocol (extended CONNECT) is not
         * offered (no SETTINGS_ENABLE_CONNECT_PROTOCOL). */
    } else if (nlen == 4 && memcmp(name, "host", 4) == 0) {
        e = pseudo_put(st, value, vlen, &st->h_off, &st->h_len, &st->has_h);
    } else if ((nlen == 2 && memcmp(name, "te", 2) == 0) ||
               (nlen == 6 && memcmp(name, "expect", 6) == 0)) {
        /* TE may only say "trailers" (nghttp2 checks); 100-continue is an HTTP/1.1 device:
         * over HTTP/2 flow control does its work. */
    } else {
        if (nlen == 14 && memcmp(name, "content-length", 14) == 0)
            st->has_cl = 1;
        e |= buf_append(&st->fields, name, nlen);
        e |= buf_append(&st->fields, ": ", 2);
        e |= buf_append(&st->fields, value, vlen);
        e |= buf_append(&st->fields, "\r\n", 2);
    }
    if (e)
        st->hdr_bytes = SIZE_MAX / 2; /* over any limit */
    (void)s;
    return 0;
}

static void stream_dispatch(struct http__h2_stream *st)
{
    struct conn *c = st->h2->c;
    struct http_exchange *x = st->x;

    st->dispatched = 1;
    c->requests++;
    st->in_cb++;
    c->lcfg->handler(x, c->lcfg->arg);
    stream_leave(st);
}

/* The request head is complete: build the exchange, answer errors, call the handler now or
 * once the body is there. */
static void stream_head_done(struct http__h2 *h2, struct http__h2_stream *st, int end_stream)
{
    struct conn *c = h2->c;
    struct http_limits limv = c->w->srv->cfg.limits;
    const struct http_limits *lim = &limv;
    struct http_exchange *x;
    struct buf head;
    const char *msg = NULL;
    const char *host = NULL;
    size_t hlen = 0;
    int r = 0;

    limv.max_body = TUN(c->w->srv, max_body); /* http_server_set_limits may change it */
    /* As for HTTP/1.1, only what the parser does not fill is zeroed: the header array
     * (most of the struct's 4.7 KB) is written up to nheaders, which starts at 0 for a
     * request refused before it is parsed. */
    x = mc_xmalloc(sizeof(*x));
    memset(x, 0, offsetof(struct http_exchange, req));
    memset(&x->req, 0, offsetof(struct http_request, headers));
    memset((char *)&x->req + offsetof(struct http_request, nheaders), 0,
           sizeof(x->req) - offsetof(struct http_request, nheaders));
    st->x = x;
    x->conn = c;
    x->h2s = st;
    x->start_us = units_now_us();
    buf_init(&x->body, lim->max_body);
    st->remote_done = end_stream;
    if (st->has_a) {
        host = st->pseudo.data + st->a_off;
        hlen = st->a_len;
    } else if (st->has_h) {
        host = st->pseudo.data + st->h_off;
        hlen = st->h_len;
    }
    buf_init(&head, lim->max_header_bytes + 64);
    if (st->hdr_bytes > lim->max_header_bytes) {
        r = -431;
        msg = "request header fields too large";
    } else if (!st->has_m || !st->has_p) {
        /* nghttp2 resets such streams first; CONNECT has no :path and is not served. */
        r = -400;
        msg = "request without :method or :path";
    } else if (http__h2_head(&head, st->pseudo.data + st->m_off, st->m_len,
                             st->pseudo.data + st->p_off, st->p_len, host, hlen, st->fields.data,
                             st->fields.len, !end_stream && !st->has_cl) != 0) {
        r = -431;
        msg = "request header fields too large";
    }
    if (r == 0) {
        size_t n;
        st->head = buf_take(&head, &n);
        r = http_parse_request(st->head, n, lim, &x->req, &msg);
        if (r == HTTP_PARSE_AGAIN) {
            r = -400;
            msg = "bad request";
        }
        if (r >= 0 && x->req.content_length > 0 &&
            (uint64_t)x->req.content_length > lim->max_body) {
            r = -413;
            msg = "request body over the limit";
        }
    }
    buf_fini(&head);
    buf_fini(&st->fields);
    buf_fini(&st->pseudo);
    if (r < 0) {
        char named[128];
        struct http_str tc = x->req.unsupported_coding;
        if (tc.len) {
            snprintf(named, sizeof(named), "%s: %.*s", msg ? msg : "not implemented",
                     (int)MC_MIN(tc.len, 64u), tc.p);
            msg = named;
        }
        st->dispatched = 1;
        st->in_cb++;
        http_x_error(x, -r, msg ? msg : "bad request");
        stream_leave(st);
        return;
    }
    if (end_stream) {
        stream_dispatch(st);
        return;
    }
    if (c->lcfg->stream_bodies) {
        x->streaming = 1;
        stream_dispatch(st);
    }
    /* else: the handler is called once the body is whole (on_frame_recv). */
}

/* Hands buffered body bytes to a streaming handler until it pauses; ends the body when
 * the client did. */
static void body_pump(struct http__h2_stream *st)
{
    struct http__h2 *h2 = st->h2;
    struct http_exchange *x = st->x;

    if (!x || !x->on_body_data || x->body_done || x->ended || st->closed)
        return;
    st->in_cb++;
    while (!x->body_paused && st->pend_len && !x->ended && !x->aborted) {
        size_t n = st->pend_len;
        char *p = st->pend;
        st->pend = NULL;
        st->pend_len = st->pend_cap = 0;
        x->on_body_data(x, p, n, x->body_arg);
        free(p);
        if (!st->closed && !h2->c->closing)
            nghttp2_session_consume(h2->s, st->id, n);
    }
    if (!x->body_paused && !st->pend_len && st->remote_done && !x->body_done && !x->ended &&
        !x->aborted) {
        x->body_done = 1;
        x->on_body_end(x, 0, NULL, x->body_arg);
    }
    stream_leave(st);
}

static void body_fail(struct http__h2_stream *st, int status, const char *msg)
{
    struct http_exchange *x = st->x;

    x->body_done = 1;
    x->body_failed = 1;
    free(st->pend);
    st->pend = NULL;
    st->pend_len = st->pend_cap = 0;
    if (x->on_body_end) {
        st->in_cb++;
        x->on_body_end(x, -status, msg, x->body_arg);
        stream_leave(st);
    }
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    struct http__h2 *h2 = ud;
    struct http__h2_stream *st = stream_get(h2, id);
    struct http_exchange *x = st ? st->x : NULL;
    uint64_t max = TUN(h2->c->w->srv, max_body);

    (void)flags;
    if (h2->c->closing)
        return 0;
    if (!x || x->ended || x->aborted || x->body_done) {
        nghttp2_session_consume(s, id, len); /* nobody reads it: dropped */
        return 0;
    }
    x->body_total += len;
    if (!x->streaming) {
        nghttp2_session_consume(s, id, len);
        if (st->dispatched)
            return 0; /* already answered (an error) */
        if (x->body_total > max || buf_append(&x->body, data, len) != 0) {
            st->dispatched = 1;
            x->body_failed = 1;
            st->in_cb++;
            http_x_error(x, 413, "request body over the limit");
            stream_leave(st);
        }
        return 0;
    }
    if (x->body_total > max) {
        nghttp2_session_consume(s, id, len);
        body_fail(st, 413, "request body over the limit");
        return 0;
    }
    if (x->on_body_data && !x->body_paused && !st->pend_len) {
        st->in_cb++;
        x->on_body_data(x, (const char *)data, len, x->body_arg);
        stream_leave(st);
        if (!h2->c->closing)
            nghttp2_session_consume(s, id, len);
        return 0;
    }
    /* Paused (or not registered yet): kept, and not consumed, so the window closes. */
    if (st->pend_len + len > st->pend_cap) {
        st->pend_cap = MC_MAX(st->pend_len + len, st->pend_cap * 2);
        st->pend = mc_xrealloc(st->pend, st->pend_cap);
    }
    memcpy(st->pend + st->pend_len, data, len);
    st->pend_len += len;
    return 0;
}

/* Too many resets or control frames this second: the client is abusing the connection. */
static int rate_check(struct http__h2 *h2, const nghttp2_frame *f)
{
    uint64_t now = uv_now(&h2->c->w->loop);

    if (now >= h2->win_start + 1000) {
        h2->win_start = now;
        h2->rst_n = h2->ctrl_n = 0;
    }
    if (f->hd.type == NGHTTP2_RST_STREAM) {
        metrics_counter_add(h2_m(h2->c)->h2_resets, 1);
        h2->rst_n++;
    }
    if (f->hd.type == NGHTTP2_RST_STREAM || f->hd.type == NGHTTP2_PING ||
        f->hd.type == NGHTTP2_SETTINGS || f->hd.type == NGHTTP2_PRIORITY)
        h2->ctrl_n++;
    if (h2->rst_n <= H2_RST_PER_S && h2->ctrl_n <= H2_CTRL_PER_S)
        return 0;
    if (!h2->goaway) {
        h2->goaway = 1;
        log_debug("http2: connection ended, too many resets or control frames",
                  "peer=%s resets=%u control=%u", h2->c->peer, h2->rst_n, h2->ctrl_n);
        nghttp2_session_terminate_session(h2->s, NGHTTP2_ENHANCE_YOUR_CALM);
    }
    return -1;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    struct http__h2 *h2 = ud;
    struct http__h2_stream *st;
    int end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;

    (void)s;
    if (h2->c->closing || rate_check(h2, f) != 0)
        return 0;
    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
        st = stream_get(h2, f->hd.stream_id);
        if (!st)
            return 0;
        if (!st->x) {
            stream_head_done(h2, st, end);
            return 0;
        }
        /* Trailers: they end the body. */
        if (end)
            goto body_end;
        return 0;
    case NGHTTP2_DATA:
        if (!end)
            return 0;
        st = stream_get(h2, f->hd.stream_id);
        if (!st || !st->x)
            return 0;
    body_end:
        st->remote_done = 1;
        if (st->x->streaming)
            body_pump(st);
        else if (!st->dispatched)
            stream_dispatch(st);
        return 0;
    default: return 0;
    }
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t err, void *ud)
{
    struct http__h2 *h2 = ud;
    struct http__h2_stream *st = stream_get(h2, id);

    (void)s;
    if (!st)
        return 0;
    /* A stream closes cleanly only after our END_STREAM, i.e. after the handler ended the
     * exchange: any other close is the client going away. */
    st->in_cb++;
    stream_abort(st);
    st->in_cb--;
    if (err != NGHTTP2_NO_ERROR && st->x)
        st->x->aborted = 1; /* for the access log: the response may not be whole */
    nghttp2_session_set_stream_user_data(h2->s, id, NULL);
    st->id = 0;
    stream_maybe_free(st);
    return 0;
}

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    struct http__h2 *h2 = ud;
    struct listener_metrics *m = h2_m(h2->c);

    /* A response that is whole while the request body is not leaves the stream open: the
     * rest of the body is read and dropped (see on_data_chunk). A RST_STREAM NO_ERROR
     * (RFC 9113 §8.1) would end it sooner, but curl then reports the response as failed. */
    if (f->hd.type != NGHTTP2_GOAWAY)
        return 0;
    switch (f->goaway.error_code) {
    case NGHTTP2_NO_ERROR: metrics_counter_add(m->h2_goaway[H2_GOAWAY_NO_ERROR], 1); break;
    case NGHTTP2_PROTOCOL_ERROR: metrics_counter_add(m->h2_goaway[H2_GOAWAY_PROTOCOL], 1); break;
    case NGHTTP2_ENHANCE_YOUR_CALM: metrics_counter_add(m->h2_goaway[H2_GOAWAY_CALM], 1); break;
    default: metrics_counter_add(m->h2_goaway[H2_GOAWAY_OTHER], 1); break;
    }
    return 0;
}

/* ---- response bodies: the data provider ---- */

static ssize_t on_read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t cap,
                            uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    struct http__h2 *h2 = ud;
    struct http__h2_stream *st = src->ptr;
    size_t n = 0;

    (void)s;
    (void)id;
    while (n < cap && st->q) {
        struct h2_piece *p = st->q;
        size_t take = (size_t)MC_MIN(p->left, (uint64_t)(cap - n));
        if (p->mem) {
            memcpy(buf + n, p->mem, take);
            p->mem += take;
        } else {
            ssize_t r;
            do
                r = pread(p->fd, buf + n, take, (off_t)p->off);
            while (r < 0 && errno == EINTR);
            if (r <= 0) {
                /* The file failed or is shorter than announced: the body cannot be whole.
                 * The stream is reset (INTERNAL_ERROR); its exchange hears of it. */
                log_warn("http2: file read failed", "peer=%s err=%s", h2->c->peer,
                         r < 0 ? strerror(errno) : "short file");
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
            }
            take = (size_t)r;
            p->off += take;
        }
        p->left -= take;
        st->queued -= take;
        n += take;
        if (p->left == 0) {
            st->q = p->next;
            if (!st->q)
                st->qtail = &st->q;
            p->next = NULL;
            *h2->dones_tail = p;
            h2->dones_tail = &p->next;
        }
    }
    if (!st->q && st->x->ended) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return (ssize_t)n;
    }
    if (n == 0) {
        st->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

/* ---- sending ---- */

static void h2_timers(struct http__h2 *h2)
{
    struct conn *c = h2->c;

    if (c->closing)
        return;
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > 0)
        return; /* the send timeout runs (armed by the write) */
    /* Without streams the idle timeout runs; with some, the body timeout (a request body
     * that stalls, see http__h2_timeout). Any progress starts it again. */
    http__timer_arm(c, h2->streams ? TUN(c->w->srv, body_timeout_ms)
                                   : TUN(c->w->srv, idle_timeout_ms));
}

/* Produces frames while the socket takes them, then runs the done callbacks owed. Not
 * from inside nghttp2 (mem_recv, the data provider): then it runs when that returns. */
static void h2_send(struct http__h2 *h2)
{
    struct conn *c = h2->c;

    if (h2->busy) {
        h2->again = 1;
        return;
    }
    h2->busy = 1;
    do {
        h2->again = 0;
        while (!c->closing &&
               uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) < H2_SEND_HIGH) {
            /* Gathered in the worker's scratch buffer, which the write only reads (copying
             * what the socket does not take). A batch outgrowing it, or a send nested in
             * another's gathering (a callback of nghttp2's), has its own. */
            struct worker *w = c->w;
            char *sb = NULL;
            if (!w->h2_batch_busy) {
                if (!w->h2_batch)
                    w->h2_batch = mc_xmalloc(H2_BATCH_CAP);
                sb = w->h2_batch;
                w->h2_batch_busy = 1;
            }
            char *batch = sb ? sb : mc_xmalloc(H2_BATCH_CAP);
            size_t blen = 0, cap = H2_BATCH_CAP;
            ssize_t n;
            for (;;) {
                const uint8_t *d;
                n = nghttp2_session_mem_send(h2->s, &d);
                if (n <= 0)
                    break;
                if (blen + (size_t)n > cap) {
                    cap = blen + (size_t)n;
                    if (batch == sb) {
                        batch = mc_xmalloc(cap);
                        memcpy(batch, sb, blen);
                    } else {
                        batch = mc_xrealloc(batch, cap);
                    }
                }
                memcpy(batch + blen, d, (size_t)n);
                blen += (size_t)n;
                if (blen >= H2_BATCH)
                    break;
            }
            if (n < 0 || !blen) {
                if (batch != sb)
                    free(batch);
                if (sb)
                    w->h2_batch_busy = 0;
                if (n < 0) {
                    log_debug("http2: send failed", "peer=%s err=%s", c->peer,
                              nghttp2_strerror((int)n));
                    h2->busy = 0;
                    http__conn_abort(c);
                    run_dones(h2);
                    return;
                }
                break;
            }
            uv_buf_t b = uv_buf_init(batch, (unsigned)blen);
            int wr = batch == sb ? http__conn_write_copy(c, &b, 1)
                                 : http__conn_write(c, &b, 1, batch, NULL, NULL);
            if (sb)
                w->h2_batch_busy = 0;
            if (wr != 0)
                break;
        }
        run_dones(h2);
    } while (h2->again && !c->closing);
    h2->busy = 0;
    if (c->closing)
        return;
    if (h2->end_after && !h2->goaway) {
        /* After the frames of the response that asked for it (ends_session()): a GOAWAY
         * submitted with them would go first, as nghttp2 sends control frames ahead. */
        http__h2_drain(c);
        return;
    }
    if (!nghttp2_session_want_read(h2->s) && !nghttp2_session_want_write(h2->s)) {
        /* GOAWAY went and no stream is left (or the session failed): the end. */
        http__conn_close(c);
        return;
    }
    h2_timers(h2);
}

/* ---- connection ---- */

void http__h2_metrics(struct listener_metrics *m, const char *labels)
{
    static const char *const reasons[] = {"no_error", "protocol_error", "enhance_your_calm",
                                          "other"};
    char l2[192];

    m->h2_conns = metrics_counter("mlcdn_http2_connections_total",
                                  "Connections that chose HTTP/2 (ALPN h2)", labels);
    m->h2_streams = metrics_counter("mlcdn_http2_streams_total",
                                    "HTTP/2 streams (requests) opened by clients", labels);
    m->h2_resets = metrics_counter("mlcdn_http2_resets_received_total",
                                   "RST_STREAM frames received from HTTP/2 clients", labels);
    for (size_t i = 0; i < 4; i++) {
        snprintf(l2, sizeof(l2), "%s,reason=\"%s\"", labels, reasons[i]);
        m->h2_goaway[i] = metrics_counter("mlcdn_http2_goaway_sent_total",
                                          "GOAWAY frames sent, by error code (no_error: drain "
                                          "or idle; enhance_your_calm: reset or control frame "
                                          "flood)",
                                          l2);
    }
}

void http__h2_start(struct conn *c)
{
    struct http__h2 *h2 = mc_xcalloc(1, sizeof(*h2));
    nghttp2_session_callbacks *cb;
    nghttp2_option *opt;
    const struct http_limits *lim = &c->w->srv->cfg.limits;

    h2->c = c;
    h2->dones_tail = &h2->dones;
    h2->win_start = uv_now(&c->w->loop);
    c->h2 = h2;
    c->state = ST_HANDLING; /* the HTTP/1.1 state machine stays out of it */
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    /* Streams beyond the advertised limit are refused by nghttp2 itself. */
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, H2_HPACK_TABLE);
    int rc = nghttp2_session_server_new2(&h2->s, cb, h2, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    if (rc != 0) {
        log_warn("http2: session failed", "peer=%s err=%s", c->peer, nghttp2_strerror(rc));
        http__conn_abort(c);
        return;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2_MAX_STREAMS},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)lim->max_header_bytes},
        {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, H2_HPACK_TABLE},
    };
    nghttp2_submit_settings(h2->s, NGHTTP2_FLAG_NONE, iv, MC_ARRAY_SIZE(iv));
    nghttp2_session_set_local_window_size(h2->s, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW);
    metrics_counter_add(h2_m(c)->h2_conns, 1);
    h2_send(h2);
}

void http__h2_input(struct conn *c)
{
    struct http__h2 *h2 = c->h2;
    ssize_t r;

    h2->busy = 1;
    r = nghttp2_session_mem_recv(h2->s, (const uint8_t *)c->in, c->in_len);
    h2->busy = 0;
    c->in_len = 0;
    if (c->closing) {
        run_dones(h2);
        return;
    }
    if (r < 0) {
        /* A bad preface, a flood nghttp2 caught (NGHTTP2_ERR_FLOODED), a failed callback:
         * nghttp2 has queued its GOAWAY where there is one to send. */
        log_debug("http2: session error", "peer=%s err=%s", c->peer, nghttp2_strerror((int)r));
        if (!h2->goaway) {
            h2->goaway = 1;
            nghttp2_session_terminate_session(h2->s, r == NGHTTP2_ERR_FLOODED
                                                         ? NGHTTP2_ENHANCE_YOUR_CALM
                                                         : NGHTTP2_PROTOCOL_ERROR);
        }
    }
    h2_send(h2);
}

void http__h2_on_write(struct conn *c)
{
    h2_send(c->h2);
}

void http__h2_close(struct conn *c)
{
    struct http__h2 *h2 = c->h2;
    struct http__h2_stream *st, *next;

    for (st = h2->streams; st; st = next) {
        next = st->next;
        st->in_cb++;
        stream_abort(st);
        st->in_cb--;
        /* nghttp2 (still in mem_recv, maybe) no longer finds it. */
        if (st->id > 0)
            nghttp2_session_set_stream_user_data(h2->s, st->id, NULL);
        st->id = 0;
    }
    /* Dones after every abort callback, as over HTTP/1.1 (the caller can tell a failure). */
    run_dones(h2);
    for (st = h2->streams; st; st = next) {
        next = st->next;
        if (!st->in_cb && !(st->x && st->dispatched && !st->x->ended))
            stream_free(st);
    }
}

int http__h2_idle(const struct conn *c)
{
    return c->h2->streams == NULL;
}

void http__h2_free(struct conn *c)
{
    struct http__h2 *h2 = c->h2;

    MC_ASSERT(!h2->streams && !h2->dones);
    while (h2->spare) {
        struct h2_piece *p = h2->spare;
        h2->spare = p->next;
        free(p);
    }
    nghttp2_session_del(h2->s);
    free(h2);
    c->h2 = NULL;
}

void http__h2_timeout(struct conn *c)
{
    struct http__h2 *h2 = c->h2;
    struct http__h2_stream *st, *next;
    int busy = 0;

    for (st = h2->streams; st; st = next) {
        struct http_exchange *x = st->x;
        next = st->next;
        if (!x || !st->dispatched || x->ended)
            continue; /* a head or a body not complete, or an answered request */
        if (x->streaming && !x->body_done && !x->body_paused && x->on_body_end) {
            /* As over HTTP/1.1: a streamed body that stalls ends with 408. */
            body_fail(st, 408, "request body not received in time");
            continue;
        }
        busy = 1; /* a handler at work: as over HTTP/1.1, no timeout while it runs */
    }
    if (busy || c->closing)
        return;
    if (!h2->goaway) {
        h2->goaway = 1;
        nghttp2_session_terminate_session(h2->s, NGHTTP2_NO_ERROR);
    }
    h2_send(h2);
    if (!c->closing)
        http__conn_close(c);
}

void http__h2_shed(struct conn *c)
{
    struct http__h2 *h2 = c->h2;

    if (!h2->goaway) {
        h2->goaway = 1;
        nghttp2_session_terminate_session(h2->s, NGHTTP2_NO_ERROR);
    }
    h2_send(h2);
    if (!c->closing)
        http__conn_close(c);
}

void http__h2_drain(struct conn *c)
{
    struct http__h2 *h2 = c->h2;

    if (!h2->goaway) {
        h2->goaway = 1;
        /* Streams up to the last one seen finish; newer ones are refused. */
        nghttp2_submit_goaway(h2->s, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(h2->s), NGHTTP2_NO_ERROR,
                              NULL, 0);
    }
    h2_send(h2);
}

/* ---- the exchange API on a stream ---- */

/* Connection-specific fields, which HTTP/2 forbids (RFC 9113 §8.2.2). By length first:
 * this runs for every field of every response. */
static int skip_field(const char *name, size_t n)
{
    switch (n) {
    case 2: return strncasecmp(name, "te", 2) == 0;
    case 7: return strncasecmp(name, "upgrade", 7) == 0;
    case 10:
        return strncasecmp(name, "connection", 10) == 0 || strncasecmp(name, "keep-alive", 10) == 0;
    case 16: return strncasecmp(name, "proxy-connection", 16) == 0;
    case 17: return strncasecmp(name, "transfer-encoding", 17) == 0;
    default: return 0;
    }
}

/* The field lines ("Name: value\r\n" each) as name/value pairs after nv[0], ":status"
 * (sbuf holds its digits). nv has room for a pair per line plus 4; names (hl + 1 bytes)
 * takes the lower-case copies of the names. Returns the number of pairs in nv. */
static size_t head_nv(int status, const char *headers, size_t hl, nghttp2_nv *nv, char *names,
                      char sbuf[24], int *has_date)
{
    size_t n = 0, no = 0;

    nv[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)sbuf, 7,
                           mc_u64_digits((uint64_t)(status < 0 ? 0 : status % 1000), sbuf),
                           NGHTTP2_NV_FLAG_NONE};
    for (const char *p = headers, *end = headers + hl; p && p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (colon && colon > p) {
            size_t nl = (size_t)(colon - p);
            const char *v = colon + 1, *ve = le;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            if (!skip_field(p, nl)) {
                for (size_t i = 0; i < nl; i++)
                    names[no + i] = (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] + 32 : p[i]);
                if (nl == 4 && memcmp(names + no, "date", 4) == 0)
                    *has_date = 1;
                nv[n++] = (nghttp2_nv){(uint8_t *)names + no, (uint8_t *)v, nl, (size_t)(ve - v),
                                       NGHTTP2_NV_FLAG_NONE};
                no += nl;
            }
        }
        p = eol ? eol + 1 : NULL;
    }
    return n;
}

static size_t nv_room(const char *headers, size_t hl)
{
    size_t nmax = 4;
    if (hl == 0)
        return nmax; /* headers may be NULL: memchr must not see it */
    for (const char *p = headers, *end = headers + hl;
         (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++)
        nmax++;
    return nmax;
}

static void submit_head(struct http__h2_stream *st, int status, const char *headers,
                        int64_t content_length)
{
    struct http_exchange *x = st->x;
    struct http__h2 *h2 = st->h2;
    size_t hl = headers ? strlen(headers) : 0;
    char sbuf[24], clbuf[24];
    int has_date = 0;
    nghttp2_nv nv_st[H2_HEAD_NV];
    char names_st[H2_HEAD_NAMES];
    size_t room = nv_room(headers, hl);
    nghttp2_nv *nv = room <= H2_HEAD_NV ? nv_st : mc_xmalloc(room * sizeof(*nv));
    /* lower-case copies of the names */
    char *names = hl < H2_HEAD_NAMES ? names_st : mc_xmalloc(hl + 1);
    size_t n = head_nv(status, headers, hl, nv, names, sbuf, &has_date);

    /* A cached response keeps the origin's Date (RFC 9110 §6.6.1); others get ours. */
    if (!has_date)
        nv[n++] = (nghttp2_nv){(uint8_t *)"date", (uint8_t *)http__date_now(h2->c->w), 4, 29,
                               NGHTTP2_NV_FLAG_NONE};
    if (content_length >= 0 && status >= 200 && status != 204) {
        nv[n++] = (nghttp2_nv){(uint8_t *)"content-length", (uint8_t *)clbuf, 14,
                               mc_u64_digits((uint64_t)content_length, clbuf),
                               NGHTTP2_NV_FLAG_NONE};
    }
    nghttp2_data_provider dp = {.source.ptr = st, .read_callback = on_read_body};
    int rc = nghttp2_submit_response(h2->s, st->id, nv, n, x->no_body ? NULL : &dp);
    if (nv != nv_st)
        free(nv);
    if (names != names_st)
        free(names);
    if (rc != 0) {
        log_debug("http2: response refused", "peer=%s err=%s", h2->c->peer, nghttp2_strerror(rc));
        nghttp2_submit_rst_stream(h2->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    } else {
        st->submitted = 1;
        x->first_us = units_now_us();
    }
}

int http__h2_x_interim(struct http_exchange *x, int status, const char *headers)
{
    struct http__h2_stream *st = x->h2s;
    struct http__h2 *h2 = st->h2;
    size_t hl = headers ? strlen(headers) : 0;
    char sbuf[24];
    int has_date = 0;

    if (st->closed)
        return -EPIPE;
    nghttp2_nv *nv = mc_xmalloc(nv_room(headers, hl) * sizeof(*nv));
    char *names = mc_xmalloc(hl + 1);
    size_t n = head_nv(status, headers, hl, nv, names, sbuf, &has_date);
    /* A HEADERS frame without END_STREAM before the final one (RFC 9113 §8.1). */
    int rc = nghttp2_submit_headers(h2->s, NGHTTP2_FLAG_NONE, st->id, NULL, nv, n, NULL);
    free(nv);
    free(names);
    if (rc != 0)
        return -EPIPE;
    h2_send(h2);
    return 0;
}

void http__h2_x_start(struct http_exchange *x, int status, const char *headers,
                      int64_t content_length)
{
    struct http__h2_stream *st = x->h2s;

    MC_ASSERT(!x->started && !x->ended);
    x->started = 1;
    x->status = status;
    x->no_body = x->req.method == HTTP_M_HEAD || status < 200 || status == 204 || status == 304;
    if (st->closed || x->aborted || st->h2->c->closing)
        return;
    if (x->no_body) {
        st->later_headers = mc_xstrdup(headers ? headers : "");
        st->later_status = status;
        st->later_cl = content_length;
        return;
    }
    submit_head(st, status, headers, content_length);
    h2_send(st->h2);
}

static int enqueue(struct http_exchange *x, const char *mem, int fd, uint64_t off, uint64_t len,
                   void (*done)(void *), void *arg)
{
    struct http__h2_stream *st = x->h2s;
    struct http__h2 *h2 = st->h2;

    MC_ASSERT(x->started && !x->ended);
    if (x->aborted || st->closed || h2->c->closing)
        return -EPIPE;
    if (x->no_body || len == 0) {
        if (done)
            done(arg);
        return 0;
    }
    x->bytes_out += len;
    struct h2_piece *p = h2->spare;
    if (p) {
        h2->spare = p->next;
        h2->nspare--;
        p->next = NULL;
    } else {
        p = mc_xcalloc(1, sizeof(*p));
    }
    p->mem = mem;
    p->fd = fd;
    p->off = off;
    p->left = len;
    p->done = done;
    p->arg = arg;
    *st->qtail = p;
    st->qtail = &p->next;
    st->queued += len;
    if (st->deferred && st->submitted) {
        st->deferred = 0;
        nghttp2_session_resume_data(h2->s, st->id);
    }
    h2_send(h2);
    return 0;
}

int http__h2_x_write(struct http_exchange *x, const void *data, size_t len, void (*done)(void *arg),
                     void *arg)
{
    return enqueue(x, data, -1, 0, len, done, arg);
}

int http__h2_x_sendfile_fd(struct http_exchange *x, int fd, uint64_t off, uint64_t len,
                           void (*done)(void *arg), void *arg)
{
    return enqueue(x, NULL, fd, off, len, done, arg);
}

/* Does this response end the session (GOAWAY after it: no new stream, the open ones
 * finish)? When the handler said so (http_x_close_after), and while the server drains:
 * the response that ends after http_server_drain() carries the GOAWAY, as an HTTP/1.1
 * response begun then carries Connection: close. Not any send after the drain: a write
 * completing for a stream answered before it would refuse the client's next request. */
static int ends_session(const struct http_exchange *x, const struct http__h2 *h2)
{
    return !h2->c->closing &&
           (x->close_after || atomic_load_explicit(&h2->c->w->srv->draining, memory_order_relaxed));
}

void http__h2_x_end(struct http_exchange *x)
{
    struct http__h2_stream *st = x->h2s;
    struct http__h2 *h2 = st->h2;

    MC_ASSERT(x->started && !x->ended);
    x->ended = 1;
    st->in_cb++; /* the stream may close while frames go out */
    if (ends_session(x, h2))
        h2->end_after = 1;
    if (!st->closed && !h2->c->closing) {
        if (st->later_headers) {
            submit_head(st, st->later_status, st->later_headers, st->later_cl);
            free(st->later_headers);
            st->later_headers = NULL;
        } else if (st->deferred && st->submitted) {
            st->deferred = 0;
            nghttp2_session_resume_data(h2->s, st->id);
        }
        h2_send(h2);
    } else if (h2->end_after && !h2->c->closing) {
        h2_send(h2);
    }
    stream_leave(st);
}

void http__h2_x_abort(struct http_exchange *x)
{
    struct http__h2_stream *st = x->h2s;
    struct http__h2 *h2 = st->h2;

    MC_ASSERT(x->started && !x->ended);
    x->ended = 1;
    x->cut = 1;
    if (!st->closed && !h2->c->closing) {
        /* Never END_STREAM on a body that is not whole: the client sees the reset. */
        stream_fail_queue(st);
        nghttp2_submit_rst_stream(h2->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        st->in_cb++;
        if (ends_session(x, h2))
            h2->end_after = 1;
        h2_send(h2);
        stream_leave(st);
        return;
    }
    stream_maybe_free(st);
}

size_t http__h2_x_pending(const struct http_exchange *x)
{
    const struct http__h2_stream *st = x->h2s;
    const struct conn *c = st->h2->c;

    if (c->closing)
        return 0;
    return (size_t)st->queued + uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp);
}

void http__h2_x_body_stream(struct http_exchange *x)
{
    struct http__h2_stream *st = x->h2s;
    struct http__h2 *h2 = st->h2;

    MC_ASSERT(x->streaming);
    body_pump(st);
    if (!h2->c->closing)
        h2_send(h2); /* window updates for what was taken */
}

void http__h2_x_body_resume(struct http_exchange *x)
{
    struct http__h2_stream *st = x->h2s;
    struct http__h2 *h2 = st->h2;

    body_pump(st);
    if (!h2->c->closing)
        h2_send(h2);
}
