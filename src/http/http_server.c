/* src/http/http_server.c: HTTP/1.1 server connections on libuv (see http_server.h).
 *
 * Threads: the caller's thread binds every listening socket (SO_REUSEPORT, one socket
 * per listener per worker, so port 0 resolves once and every worker shares it), then
 * each worker thread watches its sockets on its own loop with a uv_poll_t and accepts
 * itself (see struct listener for why not uv_listen). Nothing is shared between
 * workers except atomic counters.
 *
 * A connection has one input buffer. While a request is handled its head stays at the
 * start of that buffer (the struct http_request points into it), so the buffer is never
 * reallocated or shifted below head_len until the exchange ends; bytes of later
 * pipelined requests are appended after it, and body bytes are moved out into the
 * exchange's body buffer. The connection is freed when both its socket is closed and its
 * exchange (if any) was ended by the handler.
 *
 * A file send (http_x_sendfile_fd) belongs to the connection, not to the exchange: the
 * handler may end the exchange while file bytes are still to go, and the next request
 * then waits until they went (c->sf.then_next). While a file send waits for the socket,
 * exactly one small "probe" write of the next file bytes is in libuv's write queue; its
 * callback is the only thing that resumes the send, and conn_close() ends the send (done
 * called) before the socket can close, so no callback outlives the connection.
 *
 * Closing (conn_close, conn_linger, conn_abort) keeps the deadline until the socket is
 * closed: the writes still queued before the shutdown keep their send timeout, and a
 * lingering close its bounds. conn_release closes the socket and drops the deadline. */
#include "http/http_server.h"
#include "http/http_server_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/accesslog.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/mc.h"
#include "core/metrics.h"
#include "core/units.h"
#include "http/http_cache.h"

/* An exchange that ended while its bytes were still queued: what its log line and on_done
 * need, copied (the request's bytes go with the exchange), until the queue drains. */
struct pend {
    struct http_x_done d;
    struct http_x_note note;
    struct accesslog_rec rec;
    char strs[]; /* the copied strings of rec */
};

static void conn_close(struct conn *c);
static void pend_emit(struct conn *c, int incomplete);
static void conn_linger(struct conn *c);
static void conn_abort(struct conn *c);
static void conn_release(struct conn *c);
static void close_deadline(struct conn *c, uint64_t ms);
static void conn_timeout(struct conn *c);
static void dq_set(struct conn *c, uint64_t due);
static void dq_del(struct conn *c);
static void on_dq(uv_timer_t *t);
static void conn_process(struct conn *c);
static void start_reading(struct conn *c);
static void stream_body(struct conn *c);
static void body_fail(struct conn *c, int status, const char *msg);
static ssize_t tls_pull(struct conn *c);
static void in_room(struct conn *c);

void http_server_cfg_default(struct http_server_cfg *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->threads = 1;
    http_limits_default(&cfg->limits);
    cfg->header_timeout_ms = 10000;
    cfg->body_timeout_ms = 30000;
    cfg->idle_timeout_ms = 60000;
    cfg->send_timeout_ms = 60000;
    /* nginx's lingering_time and lingering_timeout; the byte bound keeps a fast client
     * from making us read for the whole time. */
    cfg->linger_ms = 30000;
    cfg->linger_idle_ms = 5000;
    cfg->linger_max_bytes = 64u << 20;
}

/* ---- addresses ---- */

static int parse_addr(const char *addr, struct sockaddr_storage *ss)
{
    char host[256];
    const char *colon;
    int port;

    if (!addr || !*addr)
        return -EINVAL;
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (!end || end[1] != ':' || (size_t)(end - addr - 1) >= sizeof(host))
            return -EINVAL;
        memcpy(host, addr + 1, (size_t)(end - addr - 1));
        host[end - addr - 1] = '\0';
        colon = end + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon || (size_t)(colon - addr) >= sizeof(host))
            return -EINVAL;
        memcpy(host, addr, (size_t)(colon - addr));
        host[colon - addr] = '\0';
        if (!host[0])
            strcpy(host, "0.0.0.0");
    }
    char *endp;
    long p = strtol(colon + 1, &endp, 10);
    if (*endp || endp == colon + 1 || p < 0 || p > 65535)
        return -EINVAL;
    port = (int)p;
    if (strchr(host, ':')) {
        if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss))
            return -EINVAL;
    } else if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss)) {
        return -EINVAL;
    }
    return 0;
}

static int bind_one(const struct sockaddr_storage *ss, int port, int *out)
{
    struct sockaddr_storage a = *ss;
    int fd, one = 1;
    socklen_t alen;

    if (a.ss_family == AF_INET6) {
        ((struct sockaddr_in6 *)&a)->sin6_port = htons((uint16_t)port);
        alen = sizeof(struct sockaddr_in6);
    } else {
        ((struct sockaddr_in *)&a)->sin_port = htons((uint16_t)port);
        alen = sizeof(struct sockaddr_in);
    }
    fd = socket(a.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (a.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&a, alen) < 0 || listen(fd, 4096) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    *out = fd;
    return 0;
}

static int bound_port(int fd)
{
    struct sockaddr_storage a;
    socklen_t alen = sizeof(a);

    if (getsockname(fd, (struct sockaddr *)&a, &alen) < 0)
        return -1;
    if (a.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&a)->sin6_port);
    return ntohs(((struct sockaddr_in *)&a)->sin_port);
}

/* ---- response writing ---- */

struct wreq {
    uv_write_t req;
    char *own; /* memory freed after the write (head, chunk framing, copies) */
    void (*done)(void *arg);
    void *arg;
    struct conn *conn;
    int close_first; /* on failure, close the connection before done runs */
};

/* raw_write flags. */
#define RAW_ASYNC 1u       /* no uv_try_write: done runs from the loop, not from here */
#define RAW_CLOSING 2u     /* also while closing (close_notify); no close on failure */
#define RAW_NOCLOSE 4u     /* a failure here is the caller's to handle: no close */
#define RAW_CLOSE_FIRST 8u /* a failure later closes the connection before done runs */
#define RAW_BORROWED 16u   /* bufs are the caller's (own is NULL): what is queued is copied */

const char *http__date_now(struct worker *w)
{
    int64_t now = units_wall_s();
    if (now != w->date_s) {
        w->date_s = now;
        http_date_format(now, w->date);
    }
    return w->date;
}

static int has_body_status(int status)
{
    return !(status < 200 || status == 204 || status == 304);
}

static void conn_maybe_free(struct conn *c);
static void exchange_finish(struct conn *c);
static void worker_drained(struct worker *w);

static void timer_arm(struct conn *c, uint64_t ms);
static void timer_disarm(struct conn *c);

static void on_write(uv_write_t *req, int status)
{
    struct wreq *wr = MC_CONTAINER_OF(req, struct wreq, req);
    struct conn *c = wr->conn;

    free(wr->own);
    if (status < 0 && wr->close_first && !c->closing)
        conn_close(c);
    if (wr->done)
        wr->done(wr->arg);
    free(wr);
    if (c->pend && (status < 0 ||
                    (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) == 0 && !c->sf.active)))
        pend_emit(c, status < 0);
    if (status < 0 && !c->closing) {
        conn_close(c);
        return;
    }
    if (c->closing) {
        /* Progress of the writes the shutdown waits for: their send timeout starts again. */
        if (status == 0 && !uv_is_closing((uv_handle_t *)&c->tcp) &&
            uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > 0)
            close_deadline(c, TUN(c->w->srv, send_timeout_ms));
        return;
    }
    if (c->h2) {
        http__h2_on_write(c);
        return;
    }
    /* Progress: the send timeout starts again; once everything is out, the connection
     * goes back to the timer of its state. */
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > 0)
        timer_arm(c, TUN(c->w->srv, send_timeout_ms));
    else if (c->state == ST_HANDLING)
        timer_disarm(c);
    else if (c->state == ST_HEAD && c->in_len == 0)
        timer_arm(c, TUN(c->w->srv, idle_timeout_ms));
}

/* Queues bufs, as they are, on the socket as one writev; `own` is freed afterwards,
 * done(arg) called once. */
static int raw_write(struct conn *c, uv_buf_t *bufs, unsigned n, char *own, void (*done)(void *),
                     void *arg, unsigned flags)
{
    struct wreq *wr;
    uv_buf_t copy;
    size_t total = 0;
    int err, w = UV_EAGAIN;

    if (c->closing && !(flags & RAW_CLOSING)) {
        free(own);
        return -EPIPE;
    }
    /* Try the write at once: when the socket takes it all (the common case for small
     * responses) no write request, deferred callback or poll re-arm is needed. libuv
     * refuses (EAGAIN) while earlier writes are still queued, which keeps the order. */
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    if (!(flags & RAW_ASYNC))
        w = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
    if (w == (int)total) {
        free(own);
        if (done)
            done(arg);
        return 0;
    }
    if (w < 0 && w != UV_EAGAIN) {
        free(own);
        if (!(flags & (RAW_CLOSING | RAW_NOCLOSE)))
            conn_close(c);
        return -EPIPE;
    }
    if (w > 0) {
        size_t skip = (size_t)w;
        while (n && skip >= bufs[0].len) {
            skip -= bufs[0].len;
            bufs++;
            n--;
        }
        if (n) {
            bufs[0].base += skip;
            bufs[0].len -= skip;
        }
    }
    if (flags & RAW_BORROWED) {
        size_t left = 0;
        for (unsigned i = 0; i < n; i++)
            left += bufs[i].len;
        own = mc_xmalloc(left ? left : 1);
        for (size_t i = 0, at = 0; i < n; at += bufs[i].len, i++)
            memcpy(own + at, bufs[i].base, bufs[i].len);
        copy = uv_buf_init(own, (unsigned)left);
        bufs = &copy;
        n = 1;
    }
    wr = mc_xmalloc(sizeof(*wr));
    wr->own = own;
    wr->done = done;
    wr->arg = arg;
    wr->conn = c;
    wr->close_first = (flags & RAW_CLOSE_FIRST) != 0;
    err = uv_write(&wr->req, (uv_stream_t *)&c->tcp, bufs, n, on_write);
    if (err) {
        free(own);
        free(wr);
        if (!(flags & (RAW_CLOSING | RAW_NOCLOSE)))
            conn_close(c);
        return -EPIPE;
    }
    /* The client is not taking bytes as fast as we send: bound how long it may stall. */
    if (!c->closing)
        timer_arm(c, TUN(c->w->srv, send_timeout_ms));
    return 0;
}

/* ---- TLS: every byte to the socket is ciphertext ---- */

/* Sends the ciphertext TLS has waiting (handshake messages, tickets, alerts, records). */
static int tls_flush(struct conn *c, void (*done)(void *), void *arg, unsigned flags)
{
    size_t n = http_tls_pending(c->tls);
    if (n == 0) {
        if (done)
            done(arg);
        return 0;
    }
    /* The records leave TLS's buffer without a copy. Most flushes are small and taken by
     * the socket at once: only what must wait is copied, and the buffer goes back for the
     * next records; a large flush (or one that must not be tried now) is queued as it is. */
    size_t cap;
    char *ct = http_tls_take_buf(c->tls, &n, &cap);
    uv_buf_t b = uv_buf_init(ct, (unsigned)n);
    if (n <= TLS_WBUF && !(flags & RAW_ASYNC)) {
        int rc = raw_write(c, &b, 1, NULL, done, arg, flags | RAW_BORROWED);
        http_tls_give_buf(c->tls, ct, cap);
        return rc;
    }
    return raw_write(c, &b, 1, ct, done, arg, flags);
}

/* Encrypts bufs and queues the records; done(arg) once they were written. */
static int tls_write(struct conn *c, uv_buf_t *bufs, unsigned n, char *own, void (*done)(void *),
                     void *arg, unsigned flags)
{
    if (c->closing) {
        free(own);
        return -EPIPE;
    }
    for (unsigned i = 0; i < n; i++) {
        if (bufs[i].len && http_tls_write(c->tls, bufs[i].base, bufs[i].len) < 0) {
            free(own);
            conn_abort(c);
            return -EPIPE;
        }
    }
    free(own);
    return tls_flush(c, done, arg, flags);
}

/* Queues bufs as one write; `own` is freed afterwards, done(arg) called once. */
static int queue_write(struct conn *c, uv_buf_t *bufs, unsigned n, char *own, void (*done)(void *),
                       void *arg)
{
    if (c->tls)
        return tls_write(c, bufs, n, own, done, arg, 0);
    return raw_write(c, bufs, n, own, done, arg, 0);
}

int http__conn_write(struct conn *c, uv_buf_t *bufs, unsigned n, char *own, void (*done)(void *),
                     void *arg)
{
    return queue_write(c, bufs, n, own, done, arg);
}

int http__conn_write_copy(struct conn *c, uv_buf_t *bufs, unsigned n)
{
    if (c->tls) /* encrypted into TLS's own buffer before this returns */
        return tls_write(c, bufs, n, NULL, NULL, NULL, 0);
    return raw_write(c, bufs, n, NULL, NULL, NULL, RAW_BORROWED);
}

/* Does the header block carry its own Date field? (checked line by line, no allocation) */
static int has_date_field(const char *h, size_t n)
{
    const char *p = h, *end = h + n;
    while (p && p + 5 <= end) {
        if ((p[0] | 0x20) == 'd' && strncasecmp(p, "date:", 5) == 0)
            return 1;
        p = memchr(p, '\n', (size_t)(end - p));
        if (p)
            p++;
    }
    return 0;
}

static void head_mark(struct http_exchange *x)
{
    x->head_sent = 1;
    if (!x->first_us)
        x->first_us = units_now_us();
}

static char *put(char *d, const char *s, size_t n)
{
    memcpy(d, s, n);
    return d + n;
}

static char *put_u64(char *d, uint64_t v)
{
    return d + mc_u64_digits(v, d);
}

/* The head is built in one allocation of its exact upper bound: it is on every response. */
static void format_head(struct http_exchange *x, int status, const char *headers,
                        int64_t content_length)
{
    struct conn *c = x->conn;
    const struct http_request *r = &x->req;
    const char *reason = http_status_reason(status);
    size_t hl = headers ? strlen(headers) : 0, rl = strlen(reason);
    char *head, *d;

    x->status = status;
    x->no_body = r->method == HTTP_M_HEAD || !has_body_status(status);
    if (c->w->stopping || !c->keep_alive ||
        atomic_load_explicit(&c->w->srv->draining, memory_order_relaxed))
        x->close_after = 1;
    head = d = mc_xmalloc(9 + 4 + rl + 2 + 37 + hl + 40 + 30 + 26 + 2);
    d = put(d, "HTTP/1.1 ", 9);
    d = put_u64(d, (uint64_t)(status % 1000));
    *d++ = ' ';
    d = put(d, reason, rl);
    d = put(d, "\r\n", 2);
    /* A cached response keeps the origin's Date (RFC 9110 §6.6.1); others get ours. */
    if (!has_date_field(headers ? headers : "", hl)) {
        d = put(d, "Date: ", 6);
        d = put(d, http__date_now(c->w), 29);
        d = put(d, "\r\n", 2);
    }
    d = put(d, headers ? headers : "", hl);
    if (content_length >= 0) {
        if (status >= 200 && status != 204) {
            d = put(d, "Content-Length: ", 16);
            d = put_u64(d, (uint64_t)content_length);
            d = put(d, "\r\n", 2);
        }
    } else if (has_body_status(status)) {
        if (r->version_minor >= 1) {
            x->chunked = !x->no_body;
            d = put(d, "Transfer-Encoding: chunked\r\n", 28);
        } else {
            x->close_delim = 1;
            x->close_after = 1;
        }
    }
    if (x->close_after)
        d = put(d, "Connection: close\r\n", 19);
    else if (r->version_minor == 0)
        d = put(d, "Connection: keep-alive\r\n", 24);
    d = put(d, "\r\n", 2);
    x->head = head;
    x->head_len = (size_t)(d - head);
    x->started = 1;
}

void http_x_start(struct http_exchange *x, int status, const char *headers, int64_t content_length)
{
    if (x->h2s) {
        http__h2_x_start(x, status, headers, content_length);
        return;
    }
    MC_ASSERT(!x->started && !x->ended);
    format_head(x, status, headers, content_length);
}

/* Before a sendfile: the head goes out at once in its own send, as nginx does. Not with
 * MSG_MORE (head and body in the same segments): under BBR that corked head made TCP pace
 * each response out from an hrtimer, one timer interrupt per hit, ~40 % more CPU per L2 hit
 * (bench/l2; no difference under CUBIC). Whatever the socket does not take is queued. */
static void head_now(struct http_exchange *x)
{
    struct conn *c = x->conn;
    uv_os_fd_t sock;

    if (x->head_sent || x->aborted || !x->head_len || c->tls ||
        uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) != 0 ||
        uv_fileno((uv_handle_t *)&c->tcp, &sock) != 0)
        return;
    ssize_t n = send(sock, x->head, x->head_len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n <= 0)
        return;
    if (!x->first_us)
        x->first_us = units_now_us();
    if ((size_t)n == x->head_len) {
        head_mark(x);
        free(x->head);
        x->head = NULL;
        x->head_len = 0;
        return;
    }
    memmove(x->head, x->head + n, x->head_len - (size_t)n);
    x->head_len -= (size_t)n;
}

static int flush_head(struct http_exchange *x)
{
    head_now(x);
    if (x->head_sent)
        return 0;
    head_mark(x);
    if (x->aborted) {
        free(x->head);
        x->head = NULL;
        return -EPIPE;
    }
    uv_buf_t b = uv_buf_init(x->head, (unsigned)x->head_len);
    char *own = x->head;
    x->head = NULL;
    return queue_write(x->conn, &b, 1, own, NULL, NULL);
}

int http_x_write(struct http_exchange *x, const void *data, size_t len, void (*done)(void *arg),
                 void *arg)
{
    uv_buf_t bufs[4];
    unsigned n = 0;
    char *own = NULL;
    char *frame;

    if (x->h2s)
        return http__h2_x_write(x, data, len, done, arg);
    MC_ASSERT(x->started && !x->ended && !x->conn->sf.active);
    if (x->aborted || x->conn->closing)
        return -EPIPE;
    if (x->no_body || len == 0) {
        int err = flush_head(x);
        if (err)
            return err;
        if (done)
            done(arg);
        return 0;
    }
    x->bytes_out += len;
    if (!x->head_sent) {
        head_mark(x);
        own = x->head;
        x->head = NULL;
        bufs[n++] = uv_buf_init(own, (unsigned)x->head_len);
    }
    if (x->chunked) {
        /* The chunk-size line is prefixed; its CRLF terminator is appended after the data. */
        size_t hl = own ? x->head_len : 0;
        frame = mc_xrealloc(own, hl + 24);
        if (own)
            bufs[0].base = frame;
        own = frame;
        int k = snprintf(frame + hl, 22, "%zx\r\n", len);
        bufs[n++] = uv_buf_init(frame + hl, (unsigned)k);
        bufs[n++] = uv_buf_init((char *)data, (unsigned)len);
        bufs[n++] = uv_buf_init((char *)"\r\n", 2);
    } else {
        bufs[n++] = uv_buf_init((char *)data, (unsigned)len);
    }
    return queue_write(x->conn, bufs, n, own, done, arg);
}

int http_x_sendfile(struct http_exchange *x, int fd, uint64_t off, size_t len, const char *mem,
                    void (*done)(void *arg), void *arg)
{
    struct conn *c = x->conn;
    uv_os_fd_t sock;

    if (x->h2s)
        return http__h2_x_write(x, mem, len, done, arg);
    MC_ASSERT(x->started && !x->ended && !x->chunked && !c->sf.active);
    if (x->aborted || c->closing)
        return -EPIPE;
    /* TLS encrypts from the mapping; no sendfile. */
    if (x->no_body || len == 0 || c->tls || uv_fileno((uv_handle_t *)&c->tcp, &sock) != 0 ||
        uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) != 0)
        return http_x_write(x, mem, len, done, arg);
    head_now(x);
    if (!x->head_sent) {
        /* The head must be out first; if the socket does not take it whole, the whole
         * response goes through the ordinary (copying) path. */
        uv_buf_t hb = uv_buf_init(x->head, (unsigned)x->head_len);
        int w = uv_try_write((uv_stream_t *)&c->tcp, &hb, 1);
        if (w != (int)x->head_len) {
            if (w > 0) {
                memmove(x->head, x->head + w, x->head_len - (size_t)w);
                x->head_len -= (size_t)w;
            }
            return http_x_write(x, mem, len, done, arg);
        }
        head_mark(x);
        free(x->head);
        x->head = NULL;
    }
    x->bytes_out += len;
    /* sendfile(2) from the body's memfd: the pages go to the socket without a copy. */
    size_t sent = 0;
    off_t o = (off_t)off;
    while (sent < len) {
        ssize_t n = sendfile(sock, fd, &o, len - sent);
        if (n <= 0)
            break;
        sent += (size_t)n;
    }
    if (sent == len) {
        if (done)
            done(arg);
        return 0;
    }
    /* The socket is full: the rest is written from memory when it drains, in pieces so
     * that each one completing counts as progress for the send timeout. */
    while (sent < len) {
        size_t piece = MC_MIN(len - sent, (size_t)(256u << 10));
        int last = sent + piece == len;
        uv_buf_t b = uv_buf_init((char *)mem + sent, (unsigned)piece);
        int err = queue_write(c, &b, 1, NULL, last ? done : NULL, last ? arg : NULL);
        if (err)
            return err;
        sent += piece;
    }
    return 0;
}

/* ---- file sends without a copy (http_x_sendfile_fd) ----
 *
 * libuv has no "tell me when this stream is writable" for a uv_tcp_t, so when sendfile(2)
 * finds the socket full, the next SF_PROBE bytes of the file are pread() into a small
 * buffer and queued with uv_write(): its callback means the socket took them, i.e. it has
 * room again, and sendfile goes on. This was chosen over a uv_poll_t on a dup() of the
 * socket because the probe stays inside libuv's own write queue: ordering with the head
 * and earlier writes, the send timeout (on_timeout sees a queued write), uv_shutdown
 * (waits for it) and uv_close (cancels it, ECANCELED) all work unchanged, whereas a second
 * epoll registration of the same socket would be invisible to them, would outlive the
 * uv_tcp_t's close (the dup keeps the socket open) and is unsupported by libuv (uv_poll
 * docs: one poller per socket). The price is a copy of at most SF_PROBE bytes per wait. */

static void on_sf_probe(uv_write_t *req, int status);

static void probe_alloc(struct conn *c)
{
    if (!c->sf.probe) {
        c->sf.probe = mc_xmalloc(sizeof(*c->sf.probe));
        c->sf.probe->req.data = c;
    }
}

static int sf_probe(struct conn *c)
{
    struct sendfd *sf = &c->sf;
    ssize_t n;
    int err;

    probe_alloc(c);
    do
        n = pread(sf->fd, sf->probe->buf, (size_t)MC_MIN(sf->left, (uint64_t)SF_PROBE),
                  (off_t)sf->off);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return n < 0 ? -errno : -EIO; /* EOF: the file is shorter than announced */
    uv_buf_t b = uv_buf_init(sf->probe->buf, (unsigned)n);
    err = uv_write(&sf->probe->req, (uv_stream_t *)&c->tcp, &b, 1, on_sf_probe);
    if (err)
        return -EPIPE;
    sf->probing = 1;
    sf->off += (uint64_t)n;
    sf->left -= (uint64_t)n;
    timer_arm(c, TUN(c->w->srv, send_timeout_ms));
    return 0;
}

static void sf_finish(struct conn *c, int ok);

/* Over TLS the file is read in pieces of SF_PROBE bytes (into the probe buffer), each
 * encrypted and queued when the one before it went: one piece in flight bounds the memory
 * of a send, whatever its length. A piece the socket takes at once lets the loop here go
 * on, up to SF_TURN_MAX per loop turn; then a piece is queued without trying, and its
 * callback goes on next turn. sf->probing says a piece is queued, as for the probe. */
static int sf_tls_pump(struct conn *c);

static void on_sf_tls_piece(void *arg)
{
    struct conn *c = arg;
    struct sendfd *sf = &c->sf;
    int r;

    MC_CHECK_OBJ_NOTNULL(c, CONN_MAGIC);
    if (sf->tls_in_pump) {
        sf->tls_sync = 1;
        return;
    }
    sf->probing = 0;
    if (!sf->active) {
        /* conn_close ended the send (a failed or cancelled piece). */
        free(sf->probe);
        sf->probe = NULL;
        return;
    }
    r = sf_tls_pump(c);
    if (r < 0)
        conn_close(c);
    else if (r > 0)
        sf_finish(c, 1);
}

static int sf_tls_pump(struct conn *c)
{
    struct sendfd *sf = &c->sf;
    uint64_t turn = 0;

    probe_alloc(c);
    while (sf->left > 0) {
        ssize_t n;
        do
            n = pread(sf->fd, sf->probe->buf, (size_t)MC_MIN(sf->left, (uint64_t)SF_PROBE),
                      (off_t)sf->off);
        while (n < 0 && errno == EINTR);
        if (n <= 0)
            return n < 0 ? -errno : -EIO; /* EOF: the file is shorter than announced */
        sf->off += (uint64_t)n;
        sf->left -= (uint64_t)n;
        turn += (uint64_t)n;
        if (http_tls_write(c->tls, sf->probe->buf, (size_t)n) < 0)
            return -EPROTO;
        size_t clen, ccap;
        char *ct = http_tls_take_buf(c->tls, &clen, &ccap);
        uv_buf_t b = uv_buf_init(ct, (unsigned)clen);
        sf->tls_sync = 0;
        sf->tls_in_pump = 1;
        sf->probing = 1;
        unsigned fl = RAW_NOCLOSE | RAW_CLOSE_FIRST | (turn >= SF_TURN_MAX ? RAW_ASYNC : 0);
        int err = raw_write(c, &b, 1, ct, on_sf_tls_piece, c, fl);
        sf->tls_in_pump = 0;
        if (err) {
            sf->probing = 0;
            return -EPIPE;
        }
        if (!sf->tls_sync)
            return 0; /* on_sf_tls_piece goes on */
        sf->probing = 0;
    }
    return 1;
}

/* Sends while the socket takes bytes. Returns 1 when all went, 0 when a probe write now
 * waits for the socket, or a negative errno (socket or file error). */
static int sf_pump(struct conn *c)
{
    struct sendfd *sf = &c->sf;
    uint64_t turn = 0;
    uv_os_fd_t sock;

    if (c->tls)
        return sf_tls_pump(c);
    if (uv_fileno((uv_handle_t *)&c->tcp, &sock) != 0)
        return -EPIPE;
    /* Bytes still in libuv's queue (the head, earlier writes) go first: the probe is
     * queued behind them and its callback brings us back here once they went. */
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > 0)
        return sf_probe(c);
    while (sf->left > 0) {
        if (turn >= SF_TURN_MAX)
            return sf_probe(c); /* completes at once; its callback runs next loop turn */
        off_t o = (off_t)sf->off;
        ssize_t n = sendfile(sock, sf->fd, &o, (size_t)MC_MIN(sf->left, SF_TURN_MAX - turn));
        if (n > 0) {
            sf->off += (uint64_t)n;
            sf->left -= (uint64_t)n;
            turn += (uint64_t)n;
        } else if (n == 0) {
            return -EIO; /* EOF: the file is shorter than announced */
        } else if (errno == EAGAIN) {
            return sf_probe(c);
        } else if (errno != EINTR) {
            return -errno;
        }
    }
    return 1;
}

static void conn_next(struct conn *c, int close_after);

/* Ends the send and calls done, once. ok: all bytes went; else the connection is closing
 * (conn_close calls this). The probe buffer stays while libuv may still write from it. */
static void sf_finish(struct conn *c, int ok)
{
    struct sendfd *sf = &c->sf;
    void (*done)(void *) = sf->done;
    void *arg = sf->arg;
    int then_next = sf->then_next, then_close = sf->then_close;

    MC_ASSERT(sf->active);
    sf->active = 0;
    sf->then_next = sf->then_close = 0;
    sf->done = NULL;
    sf->arg = NULL;
    if (!sf->probing) {
        free(sf->probe);
        sf->probe = NULL;
    }
    /* As in on_write: everything is out, the handler's state decides the timer again. */
    if (ok && c->state == ST_HANDLING)
        timer_disarm(c);
    /* done may start another send or end the exchange; `sf` is not touched after it. */
    if (done)
        done(arg);
    if (c->pend && !c->sf.active &&
        (!ok || uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) == 0))
        pend_emit(c, !ok);
    if (then_next && !c->closing)
        conn_next(c, then_close);
}

static void on_sf_probe(uv_write_t *req, int status)
{
    struct conn *c = req->data;
    struct sendfd *sf = &c->sf;
    int r;

    MC_CHECK_OBJ_NOTNULL(c, CONN_MAGIC);
    sf->probing = 0;
    if (!sf->active) {
        /* conn_close already ended the send (this is ECANCELED or a late completion). */
        free(sf->probe);
        sf->probe = NULL;
        return;
    }
    MC_ASSERT(!c->closing); /* conn_close ends an active send */
    r = status < 0 ? -EPIPE : sf_pump(c);
    if (r < 0)
        conn_close(c); /* calls sf_finish(c, 0) */
    else if (r > 0)
        sf_finish(c, 1);
}

int http_x_sendfile_fd(struct http_exchange *x, int fd, uint64_t off, uint64_t len,
                       void (*done)(void *arg), void *arg)
{
    struct conn *c = x->conn;
    struct sendfd *sf = &c->sf;
    int r;

    if (x->h2s)
        return http__h2_x_sendfile_fd(x, fd, off, len, done, arg);
    MC_ASSERT(x->started && !x->ended && !x->chunked && !sf->active);
    if (x->aborted || c->closing)
        return -EPIPE;
    MC_ASSERT(!sf->probing); /* only a closing connection has a probe without a send */
    if (x->no_body || len == 0)
        return http_x_write(x, NULL, 0, done, arg);
    r = flush_head(x);
    if (r)
        return r;
    x->bytes_out += len;
    sf->fd = fd;
    sf->off = off;
    sf->left = len;
    sf->done = done;
    sf->arg = arg;
    sf->active = 1;
    r = sf_pump(c);
    if (r == 0)
        return 0;
    if (r > 0) {
        sf_finish(c, 1);
        return 0;
    }
    /* Failed before any wait: like http_x_write, report it here and never call done.
     * Part of the body may be out already, so the connection cannot carry on. */
    sf->active = 0;
    sf->done = NULL;
    sf->arg = NULL;
    free(sf->probe);
    sf->probe = NULL;
    conn_close(c);
    return r;
}

size_t http_x_pending(const struct http_exchange *x)
{
    const struct conn *c = x->conn;

    if (x->h2s)
        return http__h2_x_pending(x);
    if (c->closing)
        return 0;
    return uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) +
           (c->sf.active ? (size_t)c->sf.left : 0);
}

void http_x_end(struct http_exchange *x)
{
    struct conn *c = x->conn;

    if (x->h2s) {
        http__h2_x_end(x);
        return;
    }
    MC_ASSERT(x->started && !x->ended);
    x->ended = 1;
    if (!x->aborted && !c->closing) {
        if (x->chunked && x->head_sent) {
            uv_buf_t b = uv_buf_init((char *)"0\r\n\r\n", 5);
            queue_write(c, &b, 1, NULL, NULL, NULL);
        } else if (!x->head_sent) {
            if (x->chunked) {
                /* Head and terminating chunk together: an empty chunked body. */
                size_t hl = x->head_len;
                char *own = mc_xrealloc(x->head, hl + 5);
                memcpy(own + hl, "0\r\n\r\n", 5);
                x->head = NULL;
                head_mark(x);
                uv_buf_t b = uv_buf_init(own, (unsigned)(hl + 5));
                queue_write(c, &b, 1, own, NULL, NULL);
            } else {
                flush_head(x);
            }
        }
    }
    free(x->head);
    x->head = NULL;
    exchange_finish(c);
}

void http_x_abort(struct http_exchange *x)
{
    struct conn *c = x->conn;

    if (x->h2s) {
        http__h2_x_abort(x);
        return;
    }
    MC_ASSERT(x->started && !x->ended);
    x->ended = 1;
    x->cut = 1;
    x->close_after = 1;
    /* Without a length, the end of the connection is the end of the body (RFC 9112 §6.3
     * rule 8): only a reset tells such a client that the body is not whole. */
    if (x->close_delim && x->head_sent)
        c->reset_close = 1;
    free(x->head);
    x->head = NULL;
    exchange_finish(c);
}

void http_x_respond(struct http_exchange *x, int status, const char *headers, const void *body,
                    size_t len)
{
    MC_ASSERT(!x->started && !x->ended);
    if (x->h2s) {
        /* The body is copied: the caller's buffer may go when this returns. */
        http_x_start(x, status, headers, has_body_status(status) ? (int64_t)len : -1);
        if (len && !x->no_body) {
            char *copy = mc_xmalloc(len);
            memcpy(copy, body, len);
            if (http_x_write(x, copy, len, free, copy) != 0)
                free(copy);
        }
        http_x_end(x);
        return;
    }
    format_head(x, status, headers, has_body_status(status) ? (int64_t)len : -1);
    if (!x->no_body && len && !x->aborted && !x->conn->closing) {
        /* One allocation and one writev for head + body. */
        char *own = mc_xrealloc(x->head, x->head_len + len);
        memcpy(own + x->head_len, body, len);
        uv_buf_t b = uv_buf_init(own, (unsigned)(x->head_len + len));
        x->head = NULL;
        head_mark(x);
        x->bytes_out += len;
        queue_write(x->conn, &b, 1, own, NULL, NULL);
    }
    http_x_end(x);
}

void http_x_error(struct http_exchange *x, int status, const char *msg)
{
    struct buf b;

    buf_init(&b, 64 * 1024);
    if (!msg)
        msg = http_status_reason(status);
    if (!x->note.reason[0])
        snprintf(x->note.reason, sizeof(x->note.reason), "%s", msg);
    buf_puts(&b, "{\"error\":");
    if (buf_json_str(&b, msg, strlen(msg)) != 0) /* over the cap: still valid JSON */
        buf_json_str(&b, http_status_reason(status), strlen(http_status_reason(status)));
    buf_printf(&b, ",\"status\":%d}\n", status);
    http_x_respond(x, status, "Content-Type: application/json\r\nCache-Control: no-store\r\n",
                   b.data, b.len);
    buf_fini(&b);
}

void http_x_on_abort(struct http_exchange *x, http_x_cb_f *cb, void *arg)
{
    x->on_abort = cb;
    x->abort_arg = arg;
}

void http_x_close_after(struct http_exchange *x)
{
    x->close_after = 1;
}

int http_x_interim(struct http_exchange *x, int status, const char *headers)
{
    struct conn *c = x->conn;

    if (status < 102 || status > 199)
        return -EINVAL;
    if (x->started || x->ended)
        return -EALREADY;
    if (x->aborted || c->closing)
        return -EPIPE;
    if (x->h2s)
        return http__h2_x_interim(x, status, headers);
    if (x->req.version_minor < 1)
        return -EPROTO;
    const char *reason = http_status_reason(status);
    size_t hl = headers ? strlen(headers) : 0, rl = strlen(reason);
    char *head = mc_xmalloc(9 + 3 + 1 + rl + 2 + hl + 2), *d = head;
    d = put(d, "HTTP/1.1 ", 9);
    d = put_u64(d, (uint64_t)status);
    *d++ = ' ';
    d = put(d, reason, rl);
    d = put(d, "\r\n", 2);
    d = put(d, headers ? headers : "", hl);
    d = put(d, "\r\n", 2);
    uv_buf_t b = uv_buf_init(head, (unsigned)(d - head));
    return queue_write(c, &b, 1, head, NULL, NULL) == 0 ? 0 : -EPIPE;
}

const struct http_request *http_x_request(const struct http_exchange *x)
{
    return &x->req;
}

struct http_request *http_x_request_edit(struct http_exchange *x)
{
    return &x->req;
}

const char *http_x_body(const struct http_exchange *x, size_t *len)
{
    *len = x->body.len;
    return x->body.data ? x->body.data : "";
}

const char *http_x_peer(const struct http_exchange *x)
{
    return x->conn->peer;
}

uv_loop_t *http_x_loop(const struct http_exchange *x)
{
    return &x->conn->w->loop;
}

void *http_x_worker(const struct http_exchange *x)
{
    return x->conn->w->data;
}

uint64_t http_x_start_us(const struct http_exchange *x)
{
    return x->start_us;
}

const struct http_tls_conn *http_x_tls(const struct http_exchange *x)
{
    return x->conn->tls;
}

struct http_x_note *http_x_note(struct http_exchange *x)
{
    return &x->note;
}

/* ---- completion: the access log, the 502/504 warning, on_done ---- */

static size_t lenz(const char *s)
{
    return s ? strlen(s) : 0;
}

/* rec's strings point into x and c: valid until the exchange is finished. */
static void done_fill(struct conn *c, struct http_exchange *x, struct http_x_done *d,
                      struct accesslog_rec *r)
{
    const struct http_request *q = &x->req;

    memset(d, 0, sizeof(*d));
    memset(r, 0, sizeof(*r));
    d->listener = c->li;
    d->status = x->status;
    d->bytes = x->bytes_out;
    d->start_us = x->start_us;
    d->first_us = x->first_us;
    d->incomplete = x->aborted || x->cut;
    /* A handler answers a client that left with some error status (a fill's waiter: 502)
     * only to end the exchange; nothing goes out, and no upstream failed for it. */
    if (x->aborted && !x->first_us) {
        d->client_gone = 1;
        d->status = HTTP_STATUS_CLIENT_GONE;
    }
    d->note = &x->note;
    r->client = c->peer;
    r->listener = c->lcfg->name;
    r->method = q->method_str.p;
    r->method_len = q->method_str.len;
    r->target = q->target.p;
    r->target_len = q->target.len;
    r->http_minor = q->version_minor;
    r->http2 = x->h2s != NULL;
    if (c->w->alog) {
        const struct http_header *h = http_request_header(q, "referer");
        if (h) {
            r->referer = h->value.p;
            r->referer_len = h->value.len;
        }
        h = http_request_header(q, "user-agent");
        if (h) {
            r->user_agent = h->value.p;
            r->user_agent_len = h->value.len;
        }
    }
}

static void done_emit(struct worker *w, struct http_x_done *d, struct accesslog_rec *r)
{
    const struct http_server_cfg *cfg = &w->srv->cfg;
    const struct http_x_note *n = d->note;

    d->end_us = units_now_us();
    if (d->client_gone)
        log_debug("client abort", "listener=%s client=%s method=%.*s url=\"%.*s\"",
                  r->listener ? r->listener : "-", r->client ? r->client : "-",
                  (int)MC_MIN(r->method_len, 32u), r->method ? r->method : "",
                  (int)MC_MIN(r->target_len, 512u), r->target ? r->target : "");
    else if (d->status == 502 || d->status == 504)
        log_warn("upstream failure answered",
                 "status=%d listener=%s client=%s method=%.*s url=\"%.*s\" reason=\"%s\"",
                 d->status, r->listener ? r->listener : "-", r->client ? r->client : "-",
                 (int)MC_MIN(r->method_len, 32u), r->method ? r->method : "",
                 (int)MC_MIN(r->target_len, 512u), r->target ? r->target : "",
                 n->reason[0] ? n->reason : "-");
    if (w->alog) {
        r->status = d->status;
        r->bytes = d->bytes;
        r->ttfb_us = d->first_us ? (int64_t)(d->first_us - d->start_us) : -1;
        r->total_us = (int64_t)(d->end_us - d->start_us);
        r->upstream_us = n->has_upstream ? n->upstream_us : -1;
        r->cache = n->cache;
        r->level = n->level;
        r->model = n->model[0] ? n->model : NULL;
        r->version = n->model[0] ? n->version : -1;
        r->incomplete = d->incomplete;
        accesslog_write(w->alog, r);
    }
    if (cfg->on_done)
        cfg->on_done(d, cfg->loop_arg);
}

static char *dup_into(char **p, const char *s, size_t n)
{
    char *d = *p;
    if (n)
        memcpy(d, s, n);
    d[n] = '\0';
    *p += n + 1;
    return d;
}

static void pend_emit(struct conn *c, int incomplete)
{
    struct pend *p = c->pend;

    c->pend = NULL;
    p->d.incomplete |= incomplete;
    done_emit(c->w, &p->d, &p->rec);
    free(p);
}

/* The exchange ended: log it now when its bytes are all with the kernel, else when the
 * connection's write queue drains (the time to the last byte is measured to then). */
static void x_complete(struct conn *c, struct http_exchange *x)
{
    struct http_x_done d;
    struct accesslog_rec r;

    done_fill(c, x, &d, &r);
    if (c->pend)
        pend_emit(c, 0); /* pipelined: the earlier one's bytes went before these */
    if (c->closing ||
        (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) == 0 && !c->sf.active)) {
        done_emit(c->w, &d, &r);
        return;
    }
    size_t nc = lenz(r.client), nm = r.method_len, nt = r.target_len;
    size_t nr = r.referer_len, nu = r.user_agent_len;
    struct pend *p = mc_xmalloc(sizeof(*p) + nc + nm + nt + nr + nu + 5);
    char *s = p->strs;
    p->d = d;
    p->note = x->note;
    p->d.note = &p->note;
    p->rec = r;
    p->rec.client = dup_into(&s, r.client, nc);
    p->rec.method = dup_into(&s, r.method, nm);
    p->rec.target = dup_into(&s, r.target, nt);
    p->rec.referer = dup_into(&s, r.referer, nr);
    p->rec.user_agent = dup_into(&s, r.user_agent, nu);
    c->pend = p;
}

/* An HTTP/2 exchange is complete (http_h2.c): its stream closed, or its connection ended. */
void http__x_complete(struct conn *c, struct http_exchange *x)
{
    struct http_x_done d;
    struct accesslog_rec r;

    done_fill(c, x, &d, &r);
    done_emit(c->w, &d, &r);
}

/* A request the server answered itself (parser or reader rejection). */
static void log_reject(struct conn *c, int status, size_t bytes)
{
    struct http_x_done d;
    struct accesslog_rec r;
    struct http_x_note note;

    if (!c->w->alog && !c->w->srv->cfg.on_done)
        return;
    memset(&note, 0, sizeof(note));
    if (c->x) {
        done_fill(c, c->x, &d, &r);
    } else {
        memset(&d, 0, sizeof(d));
        memset(&r, 0, sizeof(r));
        d.listener = c->li;
        d.start_us = units_now_us();
        r.client = c->peer;
        r.listener = c->lcfg->name;
        r.http_minor = 1;
    }
    d.note = &note;
    d.status = status;
    d.bytes = bytes;
    d.first_us = units_now_us();
    done_emit(c->w, &d, &r);
}

/* ---- connection ---- */

static void exchange_free(struct conn *c, struct http_exchange *x)
{
    buf_fini(&x->body);
    free(x->head);
    /* Keep one for the connection's next request: it is large (the parsed headers). */
    if (!c->spare && !c->closing)
        c->spare = x;
    else
        free(x);
}

/* The handler ended the exchange: drop the request bytes and go on with the next one. */
static void exchange_finish(struct conn *c)
{
    struct http_exchange *x = c->x;
    /* A streamed body not read to its end leaves no way to find the next request. */
    int close_after = x->close_after || x->aborted || (x->streaming && !x->body_done);

    x_complete(c, x);

    /* The rest of that body, or of one that failed (over the limit, bad framing), may
     * still be on its way: the close must linger. */
    c->req_unread = (x->streaming && !x->body_done) || x->body_failed;
    c->x = NULL;
    MC_ASSERT(x->req.head_len <= c->in_len);
    memmove(c->in, c->in + x->req.head_len, c->in_len - x->req.head_len);
    c->in_len -= x->req.head_len;
    exchange_free(c, x);
    if (c->closing) {
        conn_maybe_free(c);
        return;
    }
    if (c->sf.active) {
        /* File bytes of this response are still to go: the next request (or the close)
         * waits for them, in state ST_HANDLING so that its bytes are only buffered. */
        c->sf.then_next = 1;
        c->sf.then_close = close_after;
        return;
    }
    conn_next(c, close_after);
}

/* The response went out (or is queued): close, or go on with the next request. */
static void conn_next(struct conn *c, int close_after)
{
    /* A graceful stop waits for busy connections; this one is done now (the head may
     * have promised keep-alive before the stop began). */
    if (close_after || c->w->stopping) {
        /* Half-close after the queued writes so the client reads the whole response. A
         * client that may still be sending (an unread body, pipelined bytes, or simply a
         * keep-alive it did not expect us to end) gets a lingering close. */
        if (!c->reset_close && (c->req_unread || c->in_len > 0 || c->keep_alive))
            conn_linger(c);
        else
            conn_close(c);
        return;
    }
    c->state = ST_HEAD;
    c->idle_since = uv_now(&c->w->loop);
    start_reading(c);
    if (c->tls) {
        /* Pipelined requests may wait inside TLS, decrypted or not. */
        if (tls_pull(c) < 0 && !c->closing)
            conn_close(c);
        if (c->closing)
            return;
    }
    if (c->in_len == 0)
        timer_arm(c, TUN(c->w->srv, idle_timeout_ms));
    else if (c->in_dispatch)
        c->want_next = 1; /* the dispatch loop below us takes the next pipelined request */
    else
        conn_process(c);
}

static void on_closed(uv_handle_t *h)
{
    struct conn *c = h->data;

    MC_CHECK_OBJ_NOTNULL(c, CONN_MAGIC);
    c->tcp_closed = 1;
    conn_maybe_free(c);
}

void http__conn_maybe_free(struct conn *c)
{
    conn_maybe_free(c);
}

static void conn_maybe_free(struct conn *c)
{
    if (!c->tcp_closed || c->x || (c->h2 && !http__h2_idle(c)))
        return;
    struct worker *w = c->w;
    /* conn_close ended any file send, and libuv ran the probe's callback before the
     * socket's close callback. */
    MC_ASSERT(!c->sf.active && !c->sf.probing && !c->sf.probe);
    dq_del(c);
    if (c->pend)
        pend_emit(c, 1);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    atomic_fetch_sub(&w->srv->active_conns, 1);
    if (c->h2)
        http__h2_free(c);
    http_tls_conn_free(&c->tls);
    free(c->spare);
    free(c->in);
    MC_FREE_OBJ(c);
    if (w->stopping && !w->conns)
        worker_drained(w);
}

/* Closes the socket now, writes still queued cancelled, and ends its deadline. Memory
 * goes in on_closed. */
static void conn_release(struct conn *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_closed);
    c->released = 1;
    dq_del(c);
}

/* A deadline while closing: conn_release when it passes (conn_timeout). */
static void close_deadline(struct conn *c, uint64_t ms)
{
    if (!ms || c->released)
        return;
    c->deadline = uv_now(&c->w->loop) + ms;
    dq_set(c, c->deadline);
}

/* Lingering, after the shutdown: wait for the next client byte at most linger_idle_ms,
 * and never past linger_end. */
static void linger_rearm(struct conn *c)
{
    const struct http_server_cfg *cfg = &c->w->srv->cfg;
    uint64_t now = uv_now(&c->w->loop);
    uint64_t end = c->linger_end;

    if (cfg->linger_idle_ms && now + cfg->linger_idle_ms < end)
        end = now + cfg->linger_idle_ms;
    if (end <= now)
        conn_release(c);
    else
        close_deadline(c, end - now);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct conn *c = req->data;

    free(req);
    /* Released meanwhile (timeout, forced stop): this is the cancellation. */
    if (uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    if (!c->lingering || status < 0 || c->linger_eof || c->w->stopping) {
        conn_release(c);
        return;
    }
    /* The response and our FIN are out; what the client still sends is read and dropped. */
    c->shut = 1;
    c->linger_end = uv_now(&c->w->loop) + c->w->srv->cfg.linger_ms;
    linger_rearm(c);
}

/* The first half of every close: no more requests, the exchange is dropped or aborted,
 * a file send ends. The timer stays: the writes still queued get the send timeout. */
static void conn_close_begin(struct conn *c)
{
    c->closing = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
    c->deadline = 0;
    if (c->x && c->state != ST_HANDLING) {
        /* Still reading its body: no handler ever saw this exchange, so it goes now. */
        struct http_exchange *x = c->x;
        c->x = NULL;
        exchange_free(c, x);
    }
    if (c->h2)
        http__h2_close(c);
    if (c->x && !c->x->aborted && !c->x->ended) {
        c->x->aborted = 1;
        if (c->x->on_abort)
            c->x->on_abort(c->x, c->x->abort_arg);
    }
    /* The rest of a file send cannot go out any more: done now, after the abort callback
     * (so the caller can tell a failure from success), before the socket closes and
     * before loop_fini on a forced stop. A probe still queued only frees its buffer. */
    if (c->sf.active)
        sf_finish(c, 0);
    close_deadline(c, TUN(c->w->srv, send_timeout_ms));
}

/* Queued writes finish before the shutdown completes (on_shutdown). */
static void conn_shutdown(struct conn *c)
{
    uv_shutdown_t *sr = mc_xmalloc(sizeof(*sr));

    /* close_notify before the FIN: the client can tell our end from a truncation. */
    if (c->tls) {
        http_tls_close_notify(c->tls);
        tls_flush(c, NULL, NULL, RAW_CLOSING);
    }

    sr->data = c;
    if (uv_shutdown(sr, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        free(sr);
        conn_release(c);
    }
}

/* Graceful close: the queued response goes out, then FIN, then the socket closes. */
static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    conn_close_begin(c);
    /* An aborted response without a length (http_x_abort): a reset, not the FIN that
     * would end its body as if whole. */
    if (c->reset_close && uv_tcp_close_reset(&c->tcp, on_closed) == 0) {
        conn_release(c);
        return;
    }
    conn_shutdown(c);
}

/* Now, whatever is queued: timeouts, read errors, a forced stop. */
static void conn_abort(struct conn *c)
{
    if (!c->closing)
        conn_close_begin(c);
    conn_release(c);
}

static void linger_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct conn *c = h->data;

    (void)suggested;
    in_room(c);
    b->base = c->in;
    b->len = c->in_cap;
}

static void on_linger_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct conn *c = s->data;

    (void)b;
    if (n == 0 || uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    if (n < 0) {
        uv_read_stop(s);
        /* The client has sent everything: once our side is shut there is nothing left to
         * wait for. Before that, the response still goes out first (on_shutdown). */
        if (c->shut || n != UV_EOF)
            conn_release(c);
        else
            c->linger_eof = 1;
        return;
    }
    c->linger_bytes += (uint64_t)n;
    if (c->linger_bytes > c->w->srv->cfg.linger_max_bytes) {
        /* Bounded: this close may reset the connection, as without lingering. */
        conn_release(c);
        return;
    }
    if (c->shut)
        linger_rearm(c);
}

/* Lingering close (RFC 9112 §9.6): the response is queued, the write side is shut after
 * it, and whatever the client still sends is read and thrown away until it closes its
 * side or a bound is reached. Closing a socket with unread bytes makes the kernel send a
 * reset, and a reset can destroy the response before the client read it: a client that
 * sends a whole body before reading would see a broken pipe instead of our 413. */
static void conn_linger(struct conn *c)
{
    if (c->closing)
        return;
    if (!c->w->srv->cfg.linger_ms) {
        conn_close(c);
        return;
    }
    conn_close_begin(c);
    if (c->x) {
        /* A handler still holds a request that points into the input buffer. */
        conn_shutdown(c);
        return;
    }
    c->lingering = 1;
    c->in_len = 0;
    metrics_counter_add(c->w->srv->m[c->li].linger, 1);
    uv_read_start((uv_stream_t *)&c->tcp, linger_alloc, on_linger_read);
    conn_shutdown(c);
}

/* Answers a request the parser or the reader rejected, then closes (RFC 9112 §11.2). */
static void conn_reject(struct conn *c, int status, const char *msg)
{
    char body[512], head[256];
    int bl, hl;

    bl = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"status\":%d}\n", msg, status);
    log_reject(c, status, (size_t)bl);
    hl = snprintf(head, sizeof(head),
                  "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: application/json\r\n"
                  "Content-Length: %d\r\nConnection: close\r\n\r\n",
                  status, http_status_reason(status), http__date_now(c->w), bl);
    char *own = mc_xmalloc((size_t)(hl + bl));
    memcpy(own, head, (size_t)hl);
    memcpy(own + hl, body, (size_t)bl);
    uv_buf_t b = uv_buf_init(own, (unsigned)(hl + bl));
    queue_write(c, &b, 1, own, NULL, NULL);
    /* Framing is lost (RFC 9112 §11.2) but the client may still be sending. */
    conn_linger(c);
}

static void conn_timeout(struct conn *c)
{
    MC_CHECK_OBJ_NOTNULL(c, CONN_MAGIC);
    if (c->deadline == 0)
        return;
    uint64_t now = uv_now(&c->w->loop);
    if (now < c->deadline) {
        dq_set(c, c->deadline);
        return;
    }
    c->deadline = 0;
    if (c->closing) {
        /* Writes the client did not take in time, or a lingering close at its bound. */
        conn_release(c);
        return;
    }
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > 0) {
        /* A client that stopped reading: a graceful shutdown would wait for it forever. */
        conn_abort(c);
        return;
    }
    if (c->h2) {
        http__h2_timeout(c);
        return;
    }
    if (c->state == ST_HANDLING) {
        struct http_exchange *x = c->x;
        if (x && x->streaming && !x->body_done && !x->body_paused && x->on_body_end)
            body_fail(c, 408, "request body not received in time");
        return;
    }
    if (c->state == ST_BODY || c->in_len > 0)
        conn_reject(c, 408, "request not received in time");
    else
        conn_close(c);
}

/* Timeouts are lazy: arming only moves the deadline, and the heap entry moves only when
 * it would fire too late. An entry that fires early goes back in for the rest, so a
 * request costs no heap operation in the common case. */
static void timer_arm(struct conn *c, uint64_t ms)
{
    if (c->closing || !ms)
        return;
    /* While response bytes wait for the client, only the send timeout applies: an idle
     * or header deadline set when the exchange ended must not extend it. */
    if (ms != TUN(c->w->srv, send_timeout_ms) &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > 0)
        return;
    c->deadline = uv_now(&c->w->loop) + ms;
    if (!c->dq_idx || c->due > c->deadline)
        dq_set(c, c->deadline);
}

/* ---- the worker's deadline heap ---- */

static int dq_before(const struct conn *a, const struct conn *b)
{
    return a->due < b->due;
}

static void dq_put(struct worker *w, unsigned i, struct conn *c)
{
    w->dq[i] = c;
    c->dq_idx = i + 1;
}

static void dq_sift_up(struct worker *w, unsigned i)
{
    struct conn *c = w->dq[i];
    while (i > 0) {
        unsigned parent = (i - 1) / 2;
        if (!dq_before(c, w->dq[parent]))
            break;
        dq_put(w, i, w->dq[parent]);
        i = parent;
    }
    dq_put(w, i, c);
}

static void dq_sift_down(struct worker *w, unsigned i)
{
    struct conn *c = w->dq[i];
    for (;;) {
        unsigned l = 2 * i + 1, m = i;
        const struct conn *best = c;
        if (l < w->dq_n && dq_before(w->dq[l], best))
            best = w->dq[m = l];
        if (l + 1 < w->dq_n && dq_before(w->dq[l + 1], best))
            m = l + 1;
        if (m == i)
            break;
        dq_put(w, i, w->dq[m]);
        i = m;
    }
    dq_put(w, i, c);
}

/* The worker's timer fires for the heap's earliest entry: started again only when that
 * is earlier than what it is set for (a timer that fires early finds nothing due). */
static void dq_rearm(struct worker *w)
{
    if (w->dq_closed || w->dq_n == 0)
        return;
    uint64_t due = w->dq[0]->due;
    if (w->dq_armed && w->dq_armed <= due)
        return;
    uint64_t now = uv_now(&w->loop);
    uv_timer_start(&w->dq_timer, on_dq, due > now ? due - now : 0, 0);
    w->dq_armed = due;
}

/* c's entry fires at loop time `due` (conn_timeout), moved there if it had one. */
static void dq_set(struct conn *c, uint64_t due)
{
    struct worker *w = c->w;
    uint64_t old = c->due;

    c->due = due;
    if (c->dq_idx) {
        if (due < old)
            dq_sift_up(w, c->dq_idx - 1);
        else
            dq_sift_down(w, c->dq_idx - 1);
    } else {
        if (w->dq_n == w->dq_cap) {
            w->dq_cap = w->dq_cap ? 2 * w->dq_cap : 64;
            w->dq = mc_xrealloc(w->dq, w->dq_cap * sizeof(*w->dq));
        }
        dq_put(w, w->dq_n++, c);
        dq_sift_up(w, w->dq_n - 1);
    }
    dq_rearm(w);
}

static void dq_del(struct conn *c)
{
    struct worker *w = c->w;

    if (!c->dq_idx)
        return;
    unsigned i = c->dq_idx - 1;
    c->dq_idx = 0;
    struct conn *last = w->dq[--w->dq_n];
    if (i == w->dq_n)
        return;
    dq_put(w, i, last);
    if (i > 0 && dq_before(last, w->dq[(i - 1) / 2]))
        dq_sift_up(w, i);
    else
        dq_sift_down(w, i);
}

static void on_dq(uv_timer_t *t)
{
    struct worker *w = t->data;
    uint64_t now = uv_now(&w->loop);

    w->dq_armed = 0;
    /* An entry set again from conn_timeout is due later than now (deadlines are never
     * set 0 ms ahead), so this ends. */
    while (w->dq_n && w->dq[0]->due <= now) {
        struct conn *c = w->dq[0];
        dq_del(c);
        conn_timeout(c);
    }
    dq_rearm(w);
}

static void timer_disarm(struct conn *c)
{
    /* A closing connection's deadline bounds the close (close_deadline). */
    if (!c->closing)
        c->deadline = 0;
}

/* ---- streamed request bodies ---- */

static void body_fail(struct conn *c, int status, const char *msg)
{
    struct http_exchange *x = c->x;

    x->body_done = 1;
    x->body_failed = 1;
    x->close_after = 1;
    timer_disarm(c);
    if (x->on_body_end)
        x->on_body_end(x, -status, msg, x->body_arg);
}

/* Hands the body bytes that follow the head to the handler, until it pauses. */
static void stream_body(struct conn *c)
{
    struct http_exchange *x = c->x;
    uint64_t max = TUN(c->w->srv, max_body);

    if (!x || x->body_done || !x->on_body_data || c->closing)
        return;
    while (!x->body_paused && !x->body_done) {
        size_t hl = x->req.head_len;
        char *p = c->in + hl;
        size_t avail = c->in_len - hl, used = 0;
        const char *data = NULL, *msg = NULL;
        size_t dlen = 0;
        int done = 0;

        if (avail == 0) {
            ssize_t got = c->tls ? tls_pull(c) : 0;
            if (c->closing)
                return;
            if (got > 0)
                continue;
            if (got < 0) {
                conn_close(c);
                return;
            }
            break;
        }
        if (x->req.chunked) {
            int r = http_chunked_feed(&c->chunked, p, avail, &used, &data, &dlen, &msg);
            if (r < 0) {
                body_fail(c, -r, msg ? msg : "invalid chunked body");
                return;
            }
            done = r == HTTP_CHUNKED_DONE;
            if (r != HTTP_CHUNKED_DATA)
                dlen = 0;
        } else {
            used = (size_t)MC_MIN((uint64_t)avail, c->body_left);
            data = p;
            dlen = used;
            c->body_left -= used;
            done = c->body_left == 0;
        }
        x->body_total += dlen;
        if (x->body_total > max) {
            body_fail(c, 413, "request body over the limit");
            return;
        }
        /* The handler sees the bytes in place, then they leave the buffer. */
        if (dlen)
            x->on_body_data(x, data, dlen, x->body_arg);
        if (c->x != x || c->closing)
            return;
        memmove(p, p + used, avail - used);
        c->in_len -= used;
        if (done) {
            x->body_done = 1;
            timer_disarm(c);
            x->on_body_end(x, 0, NULL, x->body_arg);
            return;
        }
    }
    if (!x->body_done && !x->body_paused)
        timer_arm(c, TUN(c->w->srv, body_timeout_ms));
    if (c->in_len < c->in_cap)
        start_reading(c);
}

void http_x_body_stream(struct http_exchange *x, http_x_body_data_f *on_data,
                        http_x_body_end_f *on_end, void *arg)
{
    struct conn *c = x->conn;

    MC_ASSERT(x->streaming && !x->on_body_data);
    x->on_body_data = on_data;
    x->on_body_end = on_end;
    x->body_arg = arg;
    if (x->h2s) {
        http__h2_x_body_stream(x);
        return;
    }
    if (x->req.expect_continue && c->in_len == x->req.head_len && !c->closing) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        uv_buf_t b = uv_buf_init((char *)cont, sizeof(cont) - 1);
        queue_write(c, &b, 1, NULL, NULL, NULL);
    }
    stream_body(c);
}

int http_x_body_streaming(const struct http_exchange *x)
{
    return x->streaming && !x->body_done;
}

void http_x_body_pause(struct http_exchange *x)
{
    x->body_paused = 1;
    if (!x->h2s)
        timer_disarm(x->conn);
}

void http_x_body_resume(struct http_exchange *x)
{
    if (!x->body_paused)
        return;
    x->body_paused = 0;
    if (x->h2s)
        http__h2_x_body_resume(x);
    else
        stream_body(x->conn);
}

/* Room in the input buffer: it grows only while no exchange points into it, and the head
 * limit bounds it. */
static void in_room(struct conn *c)
{
    if (!c->in) {
        c->in_cap = INBUF_MIN;
        c->in = mc_xmalloc(c->in_cap);
    }
    if (c->in_cap - c->in_len < 1024 && !c->x) {
        size_t max = c->w->srv->cfg.limits.max_header_bytes + 65536;
        size_t ncap = MC_MIN(c->in_cap * 2, max);
        if (ncap > c->in_cap) {
            c->in = mc_xrealloc(c->in, ncap);
            c->in_cap = ncap;
        }
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct conn *c = h->data;

    (void)suggested;
    in_room(c);
    b->base = c->in + c->in_len;
    b->len = c->in_cap - c->in_len;
}

/* ---- TLS input: ciphertext into the worker's buffer, plaintext into c->in ---- */

static void tls_progress(struct conn *c)
{
    if (c->tls_done || !http_tls_done(c->tls))
        return;
    struct listener_metrics *m = &c->w->srv->m[c->li];
    c->tls_done = 1;
    metrics_counter_add(http_tls_resumed(c->tls) ? m->tls_resumed : m->tls_full, 1);
    metrics_hist_observe(m->tls_time, units_now_us() - c->tls_start_us);
}

/* Decrypts what TLS holds into the input buffer while it has room, and sends what TLS has
 * to say (handshake, tickets, an alert). Returns the bytes added, or -EPROTO (failed) or
 * -ECONNRESET (the client's close_notify) once no bytes come before them. The caller
 * checks c->closing (a failed send closes). */
static ssize_t tls_pull(struct conn *c)
{
    ssize_t added = 0, r = 0;

    while (!c->tls_err) {
        in_room(c);
        if (c->in_len == c->in_cap)
            break;
        r = http_tls_read(c->tls, c->in + c->in_len, c->in_cap - c->in_len);
        if (r <= 0)
            break;
        c->in_len += (size_t)r;
        added += r;
    }
    tls_progress(c);
    if (r < 0 && !c->tls_err) {
        c->tls_err = (int)r;
        if (r == -EPROTO) {
            if (!c->tls_done)
                metrics_counter_add(c->w->srv->m[c->li].tls_failed, 1);
            log_debug("TLS failed", "peer=%s reason=\"%s\"", c->peer, http_tls_error(c->tls));
        }
    }
    tls_flush(c, NULL, NULL, 0);
    return added ? added : c->tls_err;
}

/* New plaintext is handled as on_read handles bytes. */
static void tls_input(struct conn *c)
{
    for (;;) {
        ssize_t got = tls_pull(c);
        if (c->closing)
            return;
        if (!c->h2 && c->tls_done && c->requests == 0 && c->state == ST_HEAD &&
            strcmp(http_tls_alpn(c->tls), "h2") == 0) {
            http__h2_start(c);
            if (c->closing)
                return;
        }
        if (got < 0) {
            conn_close(c);
            return;
        }
        if (got == 0)
            break;
        if (c->h2) {
            http__h2_input(c);
            if (c->closing)
                return;
            continue;
        }
        if (c->state == ST_HANDLING && c->x && c->x->streaming && !c->x->body_done)
            stream_body(c);
        else if (c->state == ST_HANDLING)
            break;
        else
            conn_process(c);
        if (c->closing)
            return;
    }
    /* No room while a handler holds the exchange: stop reading the socket, so that
     * ciphertext does not pile up in TLS; start_reading resumes and pulls. */
    if (c->in_len == c->in_cap && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

static void tls_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct conn *c = h->data;

    (void)suggested;
    b->base = c->w->tls_rbuf;
    b->len = TLS_RBUF;
}

static void tls_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct conn *c = s->data;

    if (n < 0) {
        conn_close(c);
        return;
    }
    if (n == 0)
        return;
    if (http_tls_feed(c->tls, b->base, (size_t)n) != 0) {
        conn_abort(c);
        return;
    }
    tls_input(c);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct conn *c = s->data;

    (void)b;
    if (n == UV_ENOBUFS) {
        /* The input buffer is full while a handler holds the exchange: wait for it. */
        uv_read_stop(s);
        c->reading = 0;
        return;
    }
    if (n < 0) {
        conn_close(c);
        return;
    }
    if (n == 0)
        return;
    c->in_len += (size_t)n;
    if (c->h2) {
        http__h2_input(c);
        return;
    }
    if (c->state == ST_HANDLING && c->x && c->x->streaming && !c->x->body_done) {
        stream_body(c);
        return;
    }
    if (c->state == ST_HANDLING) {
        /* Pipelined bytes wait; stop reading when the buffer is full (back-pressure). */
        if (c->in_len == c->in_cap) {
            uv_read_stop(s);
            c->reading = 0;
        }
        return;
    }
    conn_process(c);
}

static void start_reading(struct conn *c)
{
    if (!c->reading && !c->closing) {
        c->reading = 1;
        if (c->tls)
            uv_read_start((uv_stream_t *)&c->tcp, tls_on_alloc, tls_on_read);
        else
            uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
}

static void dispatch(struct conn *c)
{
    struct http_exchange *x = c->x;

    c->state = ST_HANDLING;
    timer_disarm(c);
    c->requests++;
    c->in_dispatch++;
    c->lcfg->handler(x, c->lcfg->arg);
    c->in_dispatch--;
}

/* Moves body bytes that follow the head out of the input buffer into the exchange. */
static void read_body(struct conn *c)
{
    struct http_exchange *x = c->x;
    size_t hl = x->req.head_len;
    char *p = c->in + hl;
    size_t avail = c->in_len - hl, used = 0;

    if (x->req.chunked) {
        while (used < avail) {
            size_t consumed = 0, dlen = 0;
            const char *data = NULL, *msg = NULL;
            int r = http_chunked_feed(&c->chunked, p + used, avail - used, &consumed, &data, &dlen,
                                      &msg);
            if (r < 0) {
                conn_reject(c, -r, msg ? msg : "invalid chunked body");
                return;
            }
            used += consumed;
            if (r == HTTP_CHUNKED_DATA && buf_append(&x->body, data, dlen) != 0) {
                conn_reject(c, 413, "request body over the limit");
                return;
            }
            if (r == HTTP_CHUNKED_DONE) {
                c->body_left = 0;
                memmove(p, p + used, avail - used);
                c->in_len -= used;
                dispatch(c);
                return;
            }
            if (r == HTTP_CHUNKED_MORE)
                break;
        }
    } else {
        size_t take = (size_t)MC_MIN((uint64_t)avail, c->body_left);
        if (take && buf_append(&x->body, p, take) != 0) {
            conn_reject(c, 413, "request body over the limit");
            return;
        }
        used = take;
        c->body_left -= take;
    }
    memmove(p, p + used, avail - used);
    c->in_len -= used;
    if (!x->req.chunked && c->body_left == 0) {
        dispatch(c);
        return;
    }
    timer_arm(c, TUN(c->w->srv, body_timeout_ms));
}

static void conn_process_one(struct conn *c);

/* Pipelined requests are taken in a loop, not by recursion from the end of the previous
 * exchange, so a long pipeline cannot grow the stack. */
static void conn_process(struct conn *c)
{
    do {
        c->want_next = 0;
        conn_process_one(c);
    } while (c->want_next && !c->closing);
}

static void conn_process_one(struct conn *c)
{
    struct http_limits limv = c->w->srv->cfg.limits;
    const struct http_limits *lim = &limv;

    limv.max_body = TUN(c->w->srv, max_body);
    if (c->closing)
        return;
    if (c->state == ST_BODY) {
        read_body(c);
        return;
    }
    if (c->state != ST_HEAD || c->in_len == 0)
        return;
    if (c->lcfg->h2c && !c->tls && !c->h2 && c->requests == 0) {
        static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        size_t n = MC_MIN(c->in_len, sizeof(preface) - 1);
        if (memcmp(c->in, preface, n) == 0) {
            if (n < sizeof(preface) - 1)
                return; /* more of the preface (or of an HTTP/1.1 method) to come */
            http__h2_start(c);
            if (!c->closing)
                http__h2_input(c);
            return;
        }
    }

    struct http_exchange *x = c->spare ? c->spare : mc_xmalloc(sizeof(*x));
    c->spare = NULL;
    memset(x, 0, offsetof(struct http_exchange, req));
    const char *msg = NULL;
    int r = http_parse_request(c->in, c->in_len, lim, &x->req, &msg);
    if (r == HTTP_PARSE_AGAIN) {
        c->spare = x;
        if (c->in_len >= lim->max_header_bytes) {
            conn_reject(c, 431, "request header fields too large");
            return;
        }
        /* The header timeout counts from the first byte of the request. */
        uint64_t now = uv_now(&c->w->loop);
        if (c->deadline == 0 || c->deadline > now + TUN(c->w->srv, header_timeout_ms))
            timer_arm(c, TUN(c->w->srv, header_timeout_ms));
        return;
    }
    if (r < 0) {
        char named[128];
        struct http_str tc = x->req.unsupported_coding;

        c->spare = x;
        if (tc.len) {
            /* A token (tchar only), so it needs no escaping in the JSON body. */
            snprintf(named, sizeof(named), "%s: %.*s", msg ? msg : "not implemented",
                     (int)MC_MIN(tc.len, 64u), tc.p);
            msg = named;
        }
        conn_reject(c, -r, msg ? msg : "bad request");
        return;
    }
    x->conn = c;
    x->start_us = units_now_us();
    c->x = x;
    c->keep_alive = x->req.keep_alive;
    buf_init(&x->body, lim->max_body);
    if (x->req.content_length > 0 || x->req.chunked) {
        if (x->req.content_length > 0 && (uint64_t)x->req.content_length > lim->max_body) {
            conn_reject(c, 413, "request body over the limit");
            return;
        }
        c->body_left = x->req.content_length > 0 ? (uint64_t)x->req.content_length : 0;
        http_chunked_init(&c->chunked, lim->max_body);
        if (c->lcfg->stream_bodies) {
            /* The handler gets the head now and the body as it arrives. */
            x->streaming = 1;
            dispatch(c);
            return;
        }
        c->state = ST_BODY;
        if (x->req.expect_continue && c->in_len == x->req.head_len) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            uv_buf_t b = uv_buf_init((char *)cont, sizeof(cont) - 1);
            queue_write(c, &b, 1, NULL, NULL, NULL);
        }
        read_body(c);
        return;
    }
    dispatch(c);
}

/* ---- accepting ---- */

/* Linux passes pending network errors of the new connection on to accept (accept(2),
 * "Error handling"): only that client is lost. Out of descriptors (EMFILE, ENFILE) or
 * memory (ENOBUFS, ENOMEM) the next call fails the same way, and so would any error not
 * listed: the listener pauses, it never spins. */
enum http_accept_act http_accept_errno_act(int err)
{
    switch (err) {
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
        return HTTP_ACCEPT_DRAINED;
    case EINTR:
    case ECONNABORTED:
    case EPROTO:
    case EPERM: /* a firewall rule refused this connection */
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH: return HTTP_ACCEPT_RETRY;
    default: return HTTP_ACCEPT_PAUSE;
    }
}

/* Nothing in flight on it for SHED_MIN_IDLE_MS: no request begun, nothing left to send. */
static int conn_idle(struct conn *c, uint64_t now)
{
    uv_os_fd_t fd;
    char b;

    /* An HTTP/2 session is idle with no stream open (its idle_since is when the last one
     * ended); the HTTP/1.1 state machine says nothing about it. */
    if (c->closing || (c->h2 ? !http__h2_idle(c) : (c->state != ST_HEAD || c->x)) || c->in_len ||
        c->sf.active || uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) != 0 ||
        now < c->idle_since + SHED_MIN_IDLE_MS || uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0)
        return 0;
    /* Bytes the loop has not read yet are a request on its way; an EOF (0) or an error is
     * a client that has gone: that one may go. */
    return recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) <= 0;
}

/* Makes room for the clients waiting to be accepted: idle connections (conn_idle) are
 * closed, oldest accepted first (nginx reuses its idle "reusable" connections the same
 * way), and so are lingering closes that only wait for the client. Requests in progress
 * are never touched. Returns how many went. */
static unsigned shed_idle(struct worker *w)
{
    struct conn *c, *prev, *tail = NULL;
    uint64_t now = uv_now(&w->loop);
    unsigned n = 0;

    for (c = w->conns; c; c = c->next)
        tail = c;
    for (c = tail; c && n < SHED_MAX; c = prev) {
        prev = c->prev;
        int idle = conn_idle(c, now);
        if (idle && c->h2)
            http__h2_shed(c); /* GOAWAY first: the client knows no request was lost */
        else if (idle)
            conn_close(c);
        else if (c->closing && c->lingering && c->shut && !uv_is_closing((uv_handle_t *)&c->tcp))
            conn_release(c);
        else
            continue;
        metrics_counter_add(w->srv->m[c->li].shed, 1);
        n++;
    }
    return n;
}

static void on_listen(uv_poll_t *p, int status, int events);
static void accept_some(struct listener *l);

/* The end of a pause, or the check that an episode is over (accept_recovered). */
static void on_accept_resume(uv_timer_t *t)
{
    struct worker *w = t->data;

    MC_CHECK_OBJ_NOTNULL(w, WORKER_MAGIC);
    if (w->stopping)
        return;
    w->accept_paused = 0;
    /* Accept at once rather than wait for readiness: only accept(2) tells an empty queue
     * with descriptors to spare (EAGAIN: the episode is over) from descriptors still
     * short (EMFILE, even with nobody waiting: pause again). A worker whose queue was
     * emptied by its last accepts would otherwise stay in the episode until its next
     * client. */
    for (size_t i = 0; i < w->srv->cfg.nlisteners && !w->accept_paused; i++)
        accept_some(&w->listeners[i]);
    if (w->accept_paused)
        return;
    for (size_t i = 0; i < w->srv->cfg.nlisteners; i++)
        uv_poll_start(&w->listeners[i].poll, UV_READABLE, on_listen);
}

/* accept(2) failed with err (negative): stop watching every listener of this worker (the
 * descriptor table is the process's, the others would fail too), free what can be freed,
 * and try again after ACCEPT_PAUSE_MS. The connections already open are served meanwhile;
 * the clients not yet accepted wait in the kernel's queue. Logged once per episode: from
 * the first pause of any worker until every worker is calm again (accept_recovered). */
static void accept_pause(struct worker *w, struct listener *l, int err)
{
    struct http_server *s = w->srv;
    unsigned shed;

    for (size_t i = 0; i < s->cfg.nlisteners; i++)
        uv_poll_stop(&w->listeners[i].poll);
    w->accept_paused = 1;
    w->last_pause = uv_now(&w->loop);
    metrics_counter_add(s->m[l->idx].paused, 1);
    shed = shed_idle(w);
    if (!w->fd_short) {
        w->fd_short = 1;
        if (atomic_fetch_add(&s->fd_short, 1) == 0)
            log_warn("http: accepting paused, accept(2) failed",
                     "listener=%s err=%s worker=%u "
                     "conns=%llu idle_closed=%u retry_ms=%d",
                     s->cfg.listeners[l->idx].name ? s->cfg.listeners[l->idx].name : "-",
                     uv_err_name(err), w->idx, (unsigned long long)atomic_load(&s->active_conns),
                     shed, ACCEPT_PAUSE_MS);
    }
    uv_timer_start(&w->accept_timer, on_accept_resume, ACCEPT_PAUSE_MS, 0);
}

/* A listener's queue is empty with a descriptor to spare: the episode is over if that
 * lasted ACCEPT_CALM_MS since the last pause; if not, the timer looks again then. */
static void accept_recovered(struct worker *w)
{
    struct http_server *s = w->srv;
    uint64_t now = uv_now(&w->loop);

    if (!w->fd_short)
        return;
    if (now < w->last_pause + ACCEPT_CALM_MS) {
        if (!uv_is_active((uv_handle_t *)&w->accept_timer))
            uv_timer_start(&w->accept_timer, on_accept_resume, w->last_pause + ACCEPT_CALM_MS - now,
                           0);
        return;
    }
    w->fd_short = 0;
    if (atomic_fetch_sub(&s->fd_short, 1) == 1)
        log_info("http: accepting again", "worker=%u conns=%llu", w->idx,
                 (unsigned long long)atomic_load(&s->active_conns));
}

static void conn_new(struct listener *l, int fd, const struct sockaddr_storage *peer)
{
    struct worker *w = l->w;
    struct conn *c;

    c = mc_xcalloc(1, sizeof(*c));
    MC_INIT_OBJ(c, CONN_MAGIC);
    c->w = w;
    c->li = l->idx;
    c->lcfg = &w->srv->cfg.listeners[l->idx];
    uv_tcp_init(&w->loop, &c->tcp);
    c->tcp.data = c;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    atomic_fetch_add(&w->srv->active_conns, 1);
    if (uv_tcp_open(&c->tcp, fd) != 0) {
        close(fd);
        conn_abort(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (peer->ss_family == AF_INET6)
        uv_ip6_name((const struct sockaddr_in6 *)peer, c->peer, sizeof(c->peer));
    else if (peer->ss_family == AF_INET)
        uv_ip4_name((const struct sockaddr_in *)peer, c->peer, sizeof(c->peer));
    /* A TLS connection gets its input buffer with its first plaintext (in_room): an idle
     * or handshaking one does not hold it. */
    if (!c->lcfg->tls) {
        c->in_cap = INBUF_MIN;
        c->in = mc_xmalloc(c->in_cap);
    }
    c->state = ST_HEAD;
    c->keep_alive = 1;
    c->idle_since = uv_now(&w->loop);
    if (c->lcfg->tls) {
        c->tls = http_tls_conn_new(c->lcfg->tls);
        c->tls_start_us = units_now_us();
    }
    start_reading(c);
    timer_arm(c, TUN(w->srv, idle_timeout_ms));
}

/* Accepts the clients waiting on l, at most ACCEPT_BATCH. */
static void accept_some(struct listener *l)
{
    struct worker *w = l->w;

    for (int i = 0; i < ACCEPT_BATCH && !w->accept_paused && !w->stopping; i++) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        int fd = accept4(l->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            conn_new(l, fd, &peer);
            continue;
        }
        int err = errno;
        switch (http_accept_errno_act(err)) {
        case HTTP_ACCEPT_DRAINED: accept_recovered(w); return;
        case HTTP_ACCEPT_RETRY: break;
        case HTTP_ACCEPT_PAUSE: accept_pause(w, l, -err); return;
        }
    }
}

static void on_listen(uv_poll_t *p, int status, int events)
{
    struct listener *l = p->data;
    struct worker *w = l->w;

    (void)events;
    MC_CHECK_OBJ_NOTNULL(w, WORKER_MAGIC);
    if (w->stopping || w->accept_paused)
        return;
    if (status < 0)
        accept_pause(w, l, status);
    else
        accept_some(l);
}

/* ---- workers and graceful stop ---- */

static void force_close(struct worker *w)
{
    /* A client that stopped reading would hold uv_shutdown until its send timeout:
     * closing the handle cancels its queued writes. */
    for (struct conn *c = w->conns; c; c = c->next)
        conn_abort(c);
}

/* Every connection is gone (or the grace period ran out): the app closes its own
 * handles in loop_fini, and the loop then ends by itself. */
static void worker_drained(struct worker *w)
{
    if (w->forced)
        return;
    w->forced = 1;
    uv_close((uv_handle_t *)&w->grace_timer, NULL);
    /* A forced stop released every connection: none has a deadline left. */
    w->dq_closed = 1;
    uv_close((uv_handle_t *)&w->dq_timer, NULL);
    pthread_mutex_lock(&w->srv->stop_mtx);
    uv_close((uv_handle_t *)&w->stop_async, NULL);
    w->async_closed = 1;
    pthread_mutex_unlock(&w->srv->stop_mtx);
    if (w->srv->cfg.loop_fini)
        w->srv->cfg.loop_fini(&w->loop, w->data, w->srv->cfg.loop_arg);
}

static void on_grace(uv_timer_t *t)
{
    struct worker *w = t->data;
    force_close(w);
    worker_drained(w);
}

static void listener_closed(uv_handle_t *h)
{
    struct listener *l = h->data;

    close(l->fd);
    l->fd = -1;
}

static void on_stop(uv_async_t *a)
{
    struct worker *w = a->data;

    MC_CHECK_OBJ_NOTNULL(w, WORKER_MAGIC);
    if (w->stopping) {
        /* http_server_hurry(): the grace period ends now. */
        if (atomic_load(&w->srv->hurry) && !w->forced)
            on_grace(&w->grace_timer);
        return;
    }
    w->stopping = 1;
    for (size_t i = 0; i < w->srv->cfg.nlisteners; i++)
        uv_close((uv_handle_t *)&w->listeners[i].poll, listener_closed);
    uv_close((uv_handle_t *)&w->accept_timer, NULL);
    if (w->trimming)
        uv_close((uv_handle_t *)&w->trim_timer, NULL);
    if (w->fd_short) {
        w->fd_short = 0;
        atomic_fetch_sub(&w->srv->fd_short, 1);
    }
    if (w->srv->cfg.loop_stopping)
        w->srv->cfg.loop_stopping(&w->loop, w->data, w->srv->cfg.loop_arg);
    /* Connections without a request in a handler go now (idle, or a request still
     * arriving); busy ones close after their current response. */
    struct conn *next;
    for (struct conn *c = w->conns; c; c = next) {
        next = c->next;
        if (c->closing) {
            /* A lingering close that only waits for the client's bytes ends now. */
            if (c->lingering && c->shut)
                conn_release(c);
        } else if (c->h2) {
            http__h2_drain(c);
        } else if (c->state != ST_HANDLING) {
            conn_close(c);
        }
    }
    uv_timer_init(&w->loop, &w->grace_timer);
    w->grace_timer.data = w;
    uv_timer_start(&w->grace_timer, on_grace, w->srv->grace_ms, 0);
    if (!w->conns)
        worker_drained(w);
    else if (atomic_load(&w->srv->hurry))
        on_grace(&w->grace_timer); /* the hurry's wake-up merged with the stop's */
}

/* Idle HTTP/1.1 TLS connections (between requests, or never used) give back their input
 * buffer and TLS's I/O and record buffers: memory per idle connection is what a CDN edge
 * holds most of. An HTTP/2 session without streams gives back TLS's (its input is staged
 * per read, nothing to give back there). */
static void on_trim(uv_timer_t *t)
{
    struct worker *w = t->data;
    uint64_t now = uv_now(&w->loop);

    for (struct conn *c = w->conns; c; c = c->next) {
        if (c->h2) {
            /* A session without streams keeps its input staging but gives TLS's back. */
            if (c->tls && !c->closing && http__h2_idle(c) && now - c->idle_since >= TLS_TRIM_MS)
                http_tls_trim(c->tls);
            continue;
        }
        if (!c->tls || c->closing || c->x || c->sf.active || c->state != ST_HEAD ||
            c->in_len != 0 || now - c->idle_since < TLS_TRIM_MS)
            continue;
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
        free(c->spare); /* the parsed-request struct kept for the next request (4.7 KB) */
        c->spare = NULL;
        http_tls_trim(c->tls);
    }
}

static void worker_run(void *arg)
{
    struct worker *w = arg;
    struct http_server *s = w->srv;

    if (s->cfg.access_log)
        w->alog = accesslog_local_new(s->cfg.access_log);
    w->data = s->cfg.loop_init ? s->cfg.loop_init(&w->loop, w->idx, s->cfg.loop_arg) : NULL;
    for (size_t i = 0; i < s->cfg.nlisteners; i++)
        if (s->cfg.listeners[i].tls && !w->tls_rbuf)
            w->tls_rbuf = mc_xmalloc(TLS_RBUF);
    uv_timer_init(&w->loop, &w->accept_timer);
    w->accept_timer.data = w;
    uv_timer_init(&w->loop, &w->dq_timer);
    w->dq_timer.data = w;
    if (w->tls_rbuf) {
        uv_timer_init(&w->loop, &w->trim_timer);
        w->trim_timer.data = w;
        uv_timer_start(&w->trim_timer, on_trim, TLS_TRIM_MS, TLS_TRIM_MS);
        w->trimming = 1;
    }
    for (size_t i = 0; i < s->cfg.nlisteners; i++) {
        struct listener *l = &w->listeners[i];
        l->w = w;
        l->idx = i;
        /* Only fails for a descriptor that is not a socket: ours were just bound. */
        int rc = uv_poll_init_socket(&w->loop, &l->poll, l->fd);
        MC_ASSERT(rc == 0);
        l->poll.data = l;
        uv_poll_start(&l->poll, UV_READABLE, on_listen);
    }
    uv_run(&w->loop, UV_RUN_DEFAULT);
    free(w->tls_rbuf);
    w->tls_rbuf = NULL;
    free(w->h2_batch);
    w->h2_batch = NULL;
    free(w->dq);
    w->dq = NULL;
    w->dq_n = w->dq_cap = 0;
}

int http_server_start(const struct http_server_cfg *cfg, struct http_server **out, char *err,
                      size_t errlen)
{
    struct http_server *s;
    struct sockaddr_storage ss[HTTP_SERVER_MAX_LISTENERS];
    int e = 0;

    if (cfg->nlisteners == 0 || cfg->nlisteners > HTTP_SERVER_MAX_LISTENERS) {
        snprintf(err, errlen, "no listener configured");
        return -EINVAL;
    }
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        memset(&ss[i], 0, sizeof(ss[i]));
        if (parse_addr(cfg->listeners[i].addr, &ss[i])) {
            snprintf(err, errlen, "'%s' is not an ADDR:PORT listen address",
                     cfg->listeners[i].addr ? cfg->listeners[i].addr : "");
            return -EINVAL;
        }
    }
    s = mc_xcalloc(1, sizeof(*s));
    s->cfg = *cfg;
    pthread_mutex_init(&s->stop_mtx, NULL);
    atomic_init(&s->max_body, cfg->limits.max_body);
    atomic_init(&s->header_timeout_ms, cfg->header_timeout_ms);
    atomic_init(&s->body_timeout_ms, cfg->body_timeout_ms);
    atomic_init(&s->idle_timeout_ms, cfg->idle_timeout_ms);
    atomic_init(&s->send_timeout_ms, cfg->send_timeout_ms);
    s->nworkers = cfg->threads ? cfg->threads : 1;
    s->workers = mc_xcalloc(s->nworkers, sizeof(*s->workers));
    for (unsigned k = 0; k < s->nworkers; k++)
        for (size_t i = 0; i < HTTP_SERVER_MAX_LISTENERS; i++)
            s->workers[k].listeners[i].fd = -1;
    for (size_t i = 0; i < cfg->nlisteners && !e; i++) {
        int port = ntohs(ss[i].ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss[i])->sin6_port
                                                     : ((struct sockaddr_in *)&ss[i])->sin_port);
        for (unsigned k = 0; k < s->nworkers; k++) {
            e = bind_one(&ss[i], port, &s->workers[k].listeners[i].fd);
            if (e) {
                snprintf(err, errlen, "cannot listen on %s: %s", cfg->listeners[i].addr,
                         uv_strerror(e));
                break;
            }
            if (port == 0)
                port = bound_port(s->workers[k].listeners[i].fd);
        }
        s->ports[i] = port;
    }
    if (e) {
        for (unsigned k = 0; k < s->nworkers; k++)
            for (size_t i = 0; i < HTTP_SERVER_MAX_LISTENERS; i++)
                if (s->workers[k].listeners[i].fd >= 0)
                    close(s->workers[k].listeners[i].fd);
        free(s->workers);
        pthread_mutex_destroy(&s->stop_mtx);
        free(s);
        return e;
    }
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        char labels[96];
        snprintf(labels, sizeof(labels), "listener=\"%s\"",
                 cfg->listeners[i].name ? cfg->listeners[i].name : "http");
        s->m[i].paused = metrics_counter("mlcdn_http_accept_paused_total",
                                         "Times a worker stopped accepting for a while because "
                                         "accept(2) failed (out of "
                                         "file descriptors)",
                                         labels);
        s->m[i].shed = metrics_counter("mlcdn_http_idle_closed_total",
                                       "Idle connections closed to make room for new clients when "
                                       "accept(2) failed",
                                       labels);
        s->m[i].linger = metrics_counter("mlcdn_http_lingering_closes_total",
                                         "Connections closed with a lingering close (the client's "
                                         "remaining bytes read and "
                                         "dropped after the response)",
                                         labels);
        if (cfg->listeners[i].tls) {
            char l2[160];
            static const char *const help = "TLS handshakes completed (full or resumed with a "
                                            "ticket) and failed";
            snprintf(l2, sizeof(l2), "%s,result=\"full\"", labels);
            s->m[i].tls_full = metrics_counter("mlcdn_tls_handshakes_total", help, l2);
            snprintf(l2, sizeof(l2), "%s,result=\"resumed\"", labels);
            s->m[i].tls_resumed = metrics_counter("mlcdn_tls_handshakes_total", help, l2);
            snprintf(l2, sizeof(l2), "%s,result=\"failed\"", labels);
            s->m[i].tls_failed = metrics_counter("mlcdn_tls_handshakes_total", help, l2);
            s->m[i].tls_time = metrics_hist("mlcdn_tls_handshake_seconds",
                                            "Time from accepting a TLS connection to the end of "
                                            "its handshake",
                                            labels, 1e6, 100, 10000000);
        }
        if (cfg->listeners[i].tls || cfg->listeners[i].h2c)
            http__h2_metrics(&s->m[i], labels);
    }
    for (unsigned k = 0; k < s->nworkers; k++) {
        struct worker *w = &s->workers[k];
        MC_INIT_OBJ(w, WORKER_MAGIC);
        w->idx = k;
        w->srv = s;
        uv_loop_init(&w->loop);
        w->loop.data = w;
        uv_async_init(&w->loop, &w->stop_async, on_stop);
        w->stop_async.data = w;
        uv_thread_create(&w->thread, worker_run, w);
    }
    *out = s;
    return 0;
}

int http_server_port(const struct http_server *s, size_t idx)
{
    return idx < s->cfg.nlisteners ? s->ports[idx] : -1;
}

uint64_t http_server_active_conns(const struct http_server *s)
{
    return atomic_load(&((struct http_server *)s)->active_conns);
}

void http_server_stop(struct http_server *s, uint64_t grace_ms)
{
    if (s->stopped)
        return;
    s->stopped = 1;
    s->grace_ms = grace_ms ? grace_ms : 1;
    /* No worker has drained yet (only this stop drains them): every stop_async is open. */
    for (unsigned k = 0; k < s->nworkers; k++)
        uv_async_send(&s->workers[k].stop_async);
    for (unsigned k = 0; k < s->nworkers; k++) {
        uv_thread_join(&s->workers[k].thread);
        uv_loop_close(&s->workers[k].loop);
    }
}

void http_server_hurry(struct http_server *s)
{
    pthread_mutex_lock(&s->stop_mtx);
    s->hurry = 1;
    for (unsigned k = 0; k < s->nworkers; k++)
        if (!s->workers[k].async_closed)
            uv_async_send(&s->workers[k].stop_async);
    pthread_mutex_unlock(&s->stop_mtx);
}

void http_server_drain(struct http_server *s)
{
    atomic_store(&s->draining, 1);
}

void http_server_set_limits(struct http_server *s, uint64_t max_body, uint64_t header_timeout_ms,
                            uint64_t body_timeout_ms, uint64_t idle_timeout_ms,
                            uint64_t send_timeout_ms)
{
    atomic_store_explicit(&s->max_body, max_body, memory_order_relaxed);
    atomic_store_explicit(&s->header_timeout_ms, header_timeout_ms, memory_order_relaxed);
    atomic_store_explicit(&s->body_timeout_ms, body_timeout_ms, memory_order_relaxed);
    atomic_store_explicit(&s->idle_timeout_ms, idle_timeout_ms, memory_order_relaxed);
    atomic_store_explicit(&s->send_timeout_ms, send_timeout_ms, memory_order_relaxed);
}

void http_server_free(struct http_server **sp)
{
    struct http_server *s = *sp;
    if (!s)
        return;
    if (!s->stopped)
        http_server_stop(s, 1);
    for (unsigned k = 0; k < s->nworkers; k++)
        memset(&s->workers[k], 0, sizeof(s->workers[k]));
    free(s->workers);
    pthread_mutex_destroy(&s->stop_mtx);
    free(s);
    *sp = NULL;
}

/* ---- for http_h2.c ---- */

void http__conn_close(struct conn *c)
{
    conn_close(c);
}

void http__conn_abort(struct conn *c)
{
    conn_abort(c);
}

void http__timer_arm(struct conn *c, uint64_t ms)
{
    timer_arm(c, ms);
}

void http__timer_disarm(struct conn *c)
{
    timer_disarm(c);
}
