/* src/http/http_server_int.h: what the server's files share inside the http module
 * (http_server.c: connections, HTTP/1.1; http_h2.c: HTTP/2 sessions on the same
 * connections). Not a public header: nothing outside src/http includes it. */
#ifndef MLCDN_HTTP_HTTP_SERVER_INT_H
#define MLCDN_HTTP_HTTP_SERVER_INT_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "core/buf.h"
#include "core/metrics.h"
#include "http/http_server.h"

struct http__h2;
struct http__h2_stream;
struct pend;
struct accesslog_local;

#define CONN_MAGIC 0x434f4e4eu
#define WORKER_MAGIC 0x574f524bu
#define INBUF_MIN 4096
/* A file send waiting for the socket copies this much of the file into a probe write (see
 * sf_probe); it bounds the memory of a send whatever its length. */
#define SF_PROBE 16384
/* Bytes sent with sendfile(2) per loop turn, so that a fast client of a huge file does
 * not starve the loop's other connections; also well under the ~2 GiB a call may move. */
#define SF_TURN_MAX (4u << 20)
/* Connections accepted per readiness callback of a listener, so that a burst of new
 * clients does not hold up the loop's other connections (the socket stays readable). */
#define ACCEPT_BATCH 64
/* After accept(2) failed for want of descriptors (or memory), a worker stops accepting
 * for this long, then tries again. */
#define ACCEPT_PAUSE_MS 100
/* Idle connections closed per pause, to make room for the clients waiting in the queue. */
#define SHED_MAX 64
/* ...but not one idle for less than this: a client that just connected, or just read its
 * response, may be sending its request right now. */
#define SHED_MIN_IDLE_MS 1000
/* A worker's episode of failed accepts ends once it finds its queue empty with a
 * descriptor to spare this long after its last pause: a flood in bursts is one episode
 * (one pair of log lines), not one per burst. */
#define ACCEPT_CALM_MS 1000
/* Ciphertext read per read callback on a TLS connection (a worker's buffer). */
#define TLS_RBUF (64u << 10)
/* Ciphertext up to this size is tried on the socket at once from TLS's own buffer (what
 * the socket does not take is copied); a larger flight is queued as it is. */
#define TLS_WBUF (128u << 10)
/* TLS connections idle this long give back their input buffer and TLS's buffers (checked
 * once per period by a worker timer, so a busy connection pays nothing). */
#define TLS_TRIM_MS 1000

struct worker;

enum conn_state {
    ST_HEAD,     /* waiting for (more of) a request head */
    ST_BODY,     /* reading a request body */
    ST_HANDLING, /* the handler owns the exchange */
};

struct http_exchange {
    struct conn *conn;
    struct buf body;
    uint64_t start_us;
    int status;
    int started; /* head formatted */
    int head_sent;
    int chunked;     /* response framing */
    int close_delim; /* HTTP/1.0 without length: close ends the body */
    int no_body;     /* HEAD or 1xx/204/304 */
    int close_after;
    int aborted;
    int ended;
    http_x_cb_f *on_abort;
    void *abort_arg;
    char *head; /* formatted response head waiting for the first write */
    size_t head_len;
    /* Streamed request body (listeners with stream_bodies). */
    int streaming;
    int body_done;
    int body_failed;
    int body_paused;
    uint64_t body_total;
    http_x_body_data_f *on_body_data;
    http_x_body_end_f *on_body_end;
    void *body_arg;
    /* For the access log and on_done. */
    uint64_t first_us;  /* first response byte handed to the socket; 0: not yet */
    uint64_t bytes_out; /* body bytes handed to the socket (or queued) */
    int cut;            /* ended with http_x_abort */
    struct http_x_note note;
    struct http__h2_stream *h2s; /* the HTTP/2 stream it answers; NULL on HTTP/1.1 */
    /* Last: everything above is zeroed for each request, the parser fills this. */
    struct http_request req;
};

/* The probe write of a file send and its bytes: allocated together only while a send
 * needs them, so that an idle connection does not carry a write request. */
struct sf_probe {
    uv_write_t req; /* req.data: the connection, which outlives the write */
    char buf[SF_PROBE];
};

/* A file send in progress on a connection (http_x_sendfile_fd). */
struct sendfd {
    struct sf_probe *probe; /* while a send needed to wait (or runs over TLS), else NULL */
    int fd;                 /* the caller's; never closed here */
    bool active;            /* bytes left to send, done still owed */
    bool probing;           /* req is in libuv's write queue */
    bool then_next;         /* the exchange ended meanwhile: serve the next request after */
    bool then_close;        /* ...or close the connection */
    bool tls_in_pump;       /* TLS: sf_tls_pump is on the stack (a piece that completes at once) */
    bool tls_sync;          /* TLS: the piece just queued completed at once */
    uint64_t off, left;
    void (*done)(void *arg);
    void *arg;
};

struct conn {
    unsigned magic;
    unsigned dq_idx; /* 1 + its index in w->dq; 0: not in the heap */
    uv_tcp_t tcp;
    struct worker *w;
    const struct http_listener_cfg *lcfg;
    struct conn *prev, *next;
    char *in;
    size_t in_len, in_cap;
    enum conn_state state;
    int tls_err; /* TLS ended (-EPROTO, -ECONNRESET) after bytes still to use */
    struct http_chunked chunked;
    uint64_t body_left;          /* Content-Length body bytes still to read */
    struct http_exchange *x;     /* current exchange, NULL when none */
    struct http_exchange *spare; /* a finished exchange kept for the next request */
    uint64_t linger_end;         /* lingering: loop time it ends at the latest */
    uint64_t linger_bytes;       /* lingering: client bytes read and discarded */
    uint64_t deadline;           /* loop time (ms) of the pending timeout; 0: none */
    uint64_t due;                /* loop time its entry in the worker's deadline heap fires */
    uint64_t idle_since;         /* loop time it last began waiting for a request */
    uint64_t requests;
    uint64_t tls_start_us; /* accept time, for the handshake's duration */
    struct sendfd sf;
    struct http_tls_conn *tls; /* owned; NULL on a plain connection */
    struct http__h2 *h2;       /* owned; the HTTP/2 session once ALPN chose "h2", else NULL */
    struct pend *pend;         /* an ended exchange whose bytes are still queued, or NULL */
    uint8_t li;                /* index of the listener that accepted it */
    uint8_t in_dispatch;       /* handler calls on the stack */
    bool tcp_closed;           /* close callback ran for tcp */
    bool released;             /* conn_release ran: no deadline from now on */
    bool closing;              /* uv_close issued */
    bool reading;
    bool reset_close; /* close with a RST: a response was aborted (http_x_abort) */
    bool want_next;   /* an exchange ended inside it with requests pending */
    bool keep_alive;
    bool req_unread;             /* request bytes may still arrive (body unread or failed) */
    bool lingering;              /* closing with a lingering close (conn_linger) */
    bool shut;                   /* lingering: response and FIN are out, only reading now */
    bool linger_eof;             /* lingering: the client ended its side before we shut ours */
    bool tls_done;               /* the handshake completed (counted) */
    char peer[INET6_ADDRSTRLEN]; /* the client's address, as text */
};

/* A worker's listening socket. accept(2) is called here rather than by libuv: when
 * accept fails with EMFILE, libuv's listener closes a reserve descriptor, accepts and
 * drops the waiting clients, and opens the reserve again (uv__emfile_trick); with several
 * loops in one process another thread can take the freed slot, the reserve is lost for
 * good, and from then on libuv retries accept() in a loop that only a free descriptor
 * ends: the loop spins and none of its connections is served, not even to read the EOFs
 * whose close would free descriptors. A uv_poll_t that we can stop lets a worker pause
 * instead (accept_pause). */
struct listener {
    uv_poll_t poll;
    struct worker *w;
    size_t idx;
    int fd;
};

struct worker {
    unsigned magic;
    unsigned idx;
    struct http_server *srv;
    uv_loop_t loop;
    uv_async_t stop_async;
    struct listener listeners[HTTP_SERVER_MAX_LISTENERS];
    uv_timer_t accept_timer; /* resumes accepting after a pause */
    uv_timer_t trim_timer;   /* trims idle TLS connections (TLS listeners only) */
    int trimming;            /* trim_timer is initialised */
    int accept_paused;
    int fd_short;        /* in an episode of failed accepts (counted in srv->fd_short) */
    uint64_t last_pause; /* loop time of the last pause */
    uv_timer_t grace_timer;
    /* Connection deadlines: one timer per worker over a min-heap of connections by due
     * time, instead of a uv_timer_t (152 B) in every connection, which idle keep-alive
     * connections would hold by the ten thousand. */
    uv_timer_t dq_timer;
    struct conn **dq; /* owned array; the connections are not */
    unsigned dq_n, dq_cap;
    uint64_t dq_armed; /* due time dq_timer is started for; 0: stopped */
    int dq_closed;     /* dq_timer closed: the worker is ending */
    uv_thread_t thread;
    struct conn *conns;
    void *data;
    int stopping;
    int forced;
    int async_closed; /* stop_async closed (srv->stop_mtx) */
    char date[40];
    int64_t date_s;
    char *tls_rbuf;               /* ciphertext read buffer (TLS listeners), used within on_read */
    char *h2_batch;               /* frames being gathered by an HTTP/2 send, used within it */
    int h2_batch_busy;            /* a send is gathering into h2_batch */
    struct accesslog_local *alog; /* this loop's access log buffer, or NULL */
};

struct listener_metrics {
    struct metrics_counter *paused; /* accept paused for want of descriptors */
    struct metrics_counter *shed;   /* idle connections closed to make room */
    struct metrics_counter *linger; /* lingering closes begun */
    /* TLS listeners only. */
    struct metrics_counter *tls_full, *tls_resumed, *tls_failed;
    struct metrics_hist *tls_time; /* handshake duration, accept to completion */
    /* HTTP/2 (TLS listeners). */
    struct metrics_counter *h2_conns, *h2_streams, *h2_resets;
    struct metrics_counter *h2_goaway[4]; /* by reason: H2_GOAWAY_* in http_h2.c */
};

struct http_server {
    struct http_server_cfg cfg;
    struct worker *workers;
    unsigned nworkers;
    int ports[HTTP_SERVER_MAX_LISTENERS];
    struct listener_metrics m[HTTP_SERVER_MAX_LISTENERS];
    uint64_t grace_ms;
    _Atomic uint64_t active_conns;
    _Atomic unsigned fd_short; /* workers in an episode of failed accepts: logged at 0 <-> 1 */
    _Atomic int started_ok;
    int stopped;
    /* What http_server_set_limits() may change while serving: read by the workers with
     * relaxed loads (a connection sees the old or the new value, either is valid). */
    _Atomic uint64_t max_body, header_timeout_ms, body_timeout_ms, idle_timeout_ms, send_timeout_ms;
    _Atomic int draining; /* every response says Connection: close */
    /* Workers whose stop_async is still open (a later http_server_hurry may poke it). */
    pthread_mutex_t stop_mtx;
    _Atomic int hurry;
};

#define TUN(srv, f) atomic_load_explicit(&(srv)->f, memory_order_relaxed)

/* ---- shared between http_server.c and http_h2.c ---- */

/* Queues bufs on the connection (encrypted on TLS); `own` is freed afterwards, done(arg)
 * called once. A failure closes the connection. */
int http__conn_write(struct conn *c, uv_buf_t *bufs, unsigned n, char *own, void (*done)(void *),
                     void *arg);
/* As http__conn_write, but bufs are only read during the call (what the socket does not
 * take at once is copied): for a caller's scratch memory. */
int http__conn_write_copy(struct conn *c, uv_buf_t *bufs, unsigned n);
void http__conn_close(struct conn *c);
void http__conn_abort(struct conn *c);
/* Frees the connection once its handles are closed and no exchange is left. */
void http__conn_maybe_free(struct conn *c);
void http__timer_arm(struct conn *c, uint64_t ms);
void http__timer_disarm(struct conn *c);
const char *http__date_now(struct worker *w);
/* Reports a finished exchange now (access log, 502/504 warning, on_done). */
void http__x_complete(struct conn *c, struct http_exchange *x);

/* ---- HTTP/2 (http_h2.c) ---- */

/* Turns a connection whose ALPN chose "h2" into an HTTP/2 session (sends our SETTINGS). */
void http__h2_start(struct conn *c);
/* The plaintext in c->in goes to the session (c->in_len becomes 0). */
void http__h2_input(struct conn *c);
/* Bytes were written: produce more frames while the socket takes them. */
void http__h2_on_write(struct conn *c);
/* The connection is closing: every open stream is aborted (abort callbacks, done callbacks
 * of queued writes), streams whose exchange has ended are freed. */
void http__h2_close(struct conn *c);
/* 1 when no stream still waits for its handler to end it (the connection may be freed). */
int http__h2_idle(const struct conn *c);
void http__h2_free(struct conn *c);
/* The connection's timer fired (not closing). */
void http__h2_timeout(struct conn *c);
/* Graceful stop: GOAWAY, in-flight streams finish, then the connection closes. */
void http__h2_drain(struct conn *c);
/* The HTTP/1.1 head a request on an HTTP/2 stream is parsed as: `METHOD PATH HTTP/1.1`,
 * Host from :authority (or the host field; none when host is NULL), the field lines
 * ("name: value\r\n" each), and "transfer-encoding: chunked" when unknown_len (a body
 * comes without Content-Length). Returns 0, or -E2BIG past out's cap. */
int http__h2_head(struct buf *out, const char *method, size_t mlen, const char *path, size_t plen,
                  const char *host, size_t hlen, const char *fields, size_t flen, int unknown_len);
/* Registers the listener's HTTP/2 metrics. */
void http__h2_metrics(struct listener_metrics *m, const char *labels);

/* The exchange API on an HTTP/2 stream (x->h2s != NULL). */
void http__h2_x_start(struct http_exchange *x, int status, const char *headers,
                      int64_t content_length);
int http__h2_x_write(struct http_exchange *x, const void *data, size_t len, void (*done)(void *arg),
                     void *arg);
int http__h2_x_sendfile_fd(struct http_exchange *x, int fd, uint64_t off, uint64_t len,
                           void (*done)(void *arg), void *arg);
void http__h2_x_end(struct http_exchange *x);
int http__h2_x_interim(struct http_exchange *x, int status, const char *headers);
/* Out of descriptors: an idle session (no stream, nothing queued) says GOAWAY and closes. */
void http__h2_shed(struct conn *c);
void http__h2_x_abort(struct http_exchange *x);
size_t http__h2_x_pending(const struct http_exchange *x);
void http__h2_x_body_stream(struct http_exchange *x);
void http__h2_x_body_resume(struct http_exchange *x);

#endif
