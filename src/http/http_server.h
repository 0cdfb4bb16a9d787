/* src/http/http_server.h: the HTTP/1.1 server side on libuv, shared by every daemon.
 *
 * N worker threads, each with its own uv loop; every listener is bound once per
 * worker with SO_REUSEPORT so the kernel spreads connections across workers and a
 * connection stays on one loop for its whole life. A connection reads into a bounded
 * buffer, parses with http_parse_request(), reads the body (Content-Length or chunked,
 * bounded by limits.max_body), then calls the listener's handler with a struct
 * http_exchange. The handler answers at once or later, on the same loop, either whole
 * (http_x_respond) or streamed (http_x_start / http_x_write / http_x_end). Pipelined
 * requests are parsed in order and answered in order: the next handler call happens
 * after the previous response ended. HEAD responses never carry a body.
 *
 * Lifetimes: the server owns connections and exchanges. An exchange is valid from the
 * handler call until the handler ends it (http_x_end()/http_x_respond()/http_x_error()),
 * even if the client went away meanwhile: then the abort callback (if any) has been
 * called, writes fail with -EPIPE and the final call just releases the exchange.
 * Timeouts: header (408), body (408), idle keep-alive (close). Graceful stop: stop
 * accepting, let in-flight exchanges finish, close idle connections, bounded wait.
 *
 * Closing: when the server closes a connection the client may still be sending on (a
 * rejected or unread request body, pipelined requests), it shuts its write side after
 * the response and reads and discards what still comes, bounded in time and bytes
 * (lingering close), so that the response is not destroyed by a reset. Out of file
 * descriptors, a worker pauses accepting (a timer resumes it), closes idle connections
 * to make room and keeps serving the ones it has; see docs/internals/http.md. */
#ifndef MLCDN_HTTP_HTTP_SERVER_H
#define MLCDN_HTTP_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "http/http_parse.h"
#include "http/http_tls.h"

struct http_server;   /* opaque; http_server_start() / http_server_free() */
struct http_exchange; /* opaque; one request and its response */
struct accesslog;     /* core/accesslog.h */

/* What a handler tells the access log and the completion callback about its answer,
 * beyond what the server sees (http_x_note()). Zeroed for each request. */
struct http_x_note {
    const char *cache;   /* static string: HIT, MISS, STALE, BYPASS...; NULL: none */
    const char *level;   /* static string: L1, L2, REDIS, PARENT, ORIGIN; NULL: none */
    int64_t upstream_us; /* time waiting for an upstream; meaningful when has_upstream */
    int has_upstream;
    int kind;         /* the handler's own tag for on_done (e.g. an endpoint); 0: none */
    int sub;          /* and a second one (e.g. the tier) */
    char model[64];   /* predictions: the model ("" when none) */
    int64_t version;  /* and its version */
    char reason[160]; /* why a 502/504 (http_x_error's message when left empty) */
};

/* An exchange whose last byte went to the socket, or whose connection ended first
 * (`incomplete`). Times are units_now_us() values. */
struct http_x_done {
    size_t listener; /* index in the server's listeners */
    int status;
    uint64_t bytes;                      /* body bytes */
    uint64_t start_us, first_us, end_us; /* first_us 0: no byte went out */
    int incomplete;
    /* The client went away before any byte of a response went out: status is then
     * HTTP_STATUS_CLIENT_GONE, whatever the handler answered to nobody. */
    int client_gone;
    const struct http_x_note *note;
};
/* nginx's "client closed request": the access log's status for such an exchange. */
#define HTTP_STATUS_CLIENT_GONE 499
/* Called on the exchange's loop (or while the server stops, after loop_fini: it must only
 * touch what outlives the loops). */
typedef void http_x_done_f(const struct http_x_done *d, void *arg);

typedef void http_handler_f(struct http_exchange *x, void *arg);
typedef void http_x_cb_f(struct http_exchange *x, void *arg);
/* A piece of a streamed request body; `data` is valid during the call only. */
typedef void http_x_body_data_f(struct http_exchange *x, const char *data, size_t len, void *arg);
/* The streamed body ended: err 0, or minus the status that describes the failure (400
 * bad chunked framing, 408 stalled, 413 over the limit) with a message. */
typedef void http_x_body_end_f(struct http_exchange *x, int err, const char *msg, void *arg);

struct http_listener_cfg {
    const char *addr;        /* "127.0.0.1:8080", "[::1]:0", ":8080" (all addresses) */
    http_handler_f *handler; /* called on the connection's loop */
    void *arg;
    const char *name;  /* for logs and metrics ("public", "admin") */
    int stream_bodies; /* call the handler after the head; see http_x_body_stream() */
    /* TLS on this listener (http_tls.h), or NULL for plain HTTP. Not owned: it outlives
     * the server. Bodies sent from files are read and encrypted in bounded pieces
     * (sendfile(2) cannot send what user-space TLS encrypts). */
    struct http_tls_ctx *tls;
    /* Plain listeners: a connection that opens with the HTTP/2 preface is served as HTTP/2
     * ("prior knowledge", RFC 9113 §3.3), as an "h2" TLS connection is. */
    int h2c;
};

#define HTTP_SERVER_MAX_LISTENERS 4

struct http_server_cfg {
    unsigned threads; /* worker loops; 0 = 1 */
    struct http_limits limits;
    uint64_t header_timeout_ms; /* whole head must arrive within this (408) */
    uint64_t body_timeout_ms;   /* no body progress for this long (408) */
    uint64_t idle_timeout_ms;   /* keep-alive connection with no request (close) */
    uint64_t send_timeout_ms;   /* response bytes not taken by the client for this long (close) */
    /* Lingering close: after the last response, read and discard the client's bytes for at
     * most linger_ms in all, at most linger_idle_ms without any, and at most linger_max_bytes;
     * then close. linger_ms 0 closes at once. */
    uint64_t linger_ms;
    uint64_t linger_idle_ms;
    uint64_t linger_max_bytes;
    struct http_listener_cfg listeners[HTTP_SERVER_MAX_LISTENERS];
    size_t nlisteners;
    /* Called on each worker thread before it serves; the returned pointer is that worker's
     * data (http_x_worker()). */
    void *(*loop_init)(uv_loop_t *loop, unsigned idx, void *arg);
    /* Called on the worker loop when a graceful stop begins (listeners already closed). */
    void (*loop_stopping)(uv_loop_t *loop, void *worker_data, void *arg);
    /* Called on the worker loop once its connections are gone or the grace period ran out:
     * it must close every handle the app opened on the loop (and end any exchange it still
     * holds), so that the loop can end. */
    void (*loop_fini)(uv_loop_t *loop, void *worker_data, void *arg);
    void *loop_arg;
    /* Optional: every exchange is logged here (one line when its last byte went), and
     * reported to on_done(d, loop_arg). The access log must outlive the server. 502 and 504
     * answers are also logged at warn with their reason, with or without an access log. */
    struct accesslog *access_log;
    http_x_done_f *on_done;
};

/* Fills cfg with defaults: 1 thread, default limits, 10 s header, 30 s body, 60 s idle,
 * 60 s send; lingering close 30 s in all, 5 s idle, 64 MiB. */
/* What a failed accept(2) (errno `err`, positive) means for a listener that accepts by
 * itself: HTTP_ACCEPT_DRAINED, nothing waits and a descriptor was free (Linux checks that
 * first); HTTP_ACCEPT_RETRY, only that client is lost (accept(2) passes on its pending
 * network errors); HTTP_ACCEPT_PAUSE, out of descriptors or memory, or an error nobody
 * expects: the next call would fail the same way, so stop accepting for a while (never
 * retry at once: that is a loop spinning at the limit). Shared by every listener of the
 * process that does not use uv_listen (see docs/internals/http.md). */
enum http_accept_act {
    HTTP_ACCEPT_DRAINED,
    HTTP_ACCEPT_RETRY,
    HTTP_ACCEPT_PAUSE,
};
enum http_accept_act http_accept_errno_act(int err);

void http_server_cfg_default(struct http_server_cfg *cfg);

/* Binds every listener on every worker and starts the threads. Returns 0, or a negative
 * errno with a message naming the address in err. On success the caller owns *out. */
int http_server_start(const struct http_server_cfg *cfg, struct http_server **out, char *err,
                      size_t errlen);
/* The port listener `idx` is bound to (useful with port 0). */
int http_server_port(const struct http_server *s, size_t idx);
/* Graceful stop: stops accepting, waits up to grace_ms for in-flight exchanges, then
 * closes everything and joins the threads. Safe to call from any thread once. */
void http_server_stop(struct http_server *s, uint64_t grace_ms);
void http_server_free(struct http_server **s);
/* While http_server_stop() waits (from another thread): ends the grace period now, as if
 * it had run out. Safe from any thread, any number of times, until http_server_free. */
void http_server_hurry(struct http_server *s);
/* From now on every response carries Connection: close, so keep-alive clients move to
 * another server while the listeners stay open (a drain before a stop). Any thread. */
void http_server_drain(struct http_server *s);
/* Changes the body limit and the timeouts while serving (a configuration reload): each
 * connection uses the new values from its next read or timer on. Any thread. */
void http_server_set_limits(struct http_server *s, uint64_t max_body, uint64_t header_timeout_ms,
                            uint64_t body_timeout_ms, uint64_t idle_timeout_ms,
                            uint64_t send_timeout_ms);
/* Connections currently open / exchanges in flight (all workers). */
uint64_t http_server_active_conns(const struct http_server *s);

/* ---- inside a handler (on the exchange's loop) ---- */
const struct http_request *http_x_request(const struct http_exchange *x);
/* The same request, for a handler that removes field lines (http_request_strip_*) before
 * anything else looks at it. What the server derived from the head (framing, keep-alive)
 * stays as parsed. */
struct http_request *http_x_request_edit(struct http_exchange *x);
/* The request body, complete (the server reads it before calling the handler), unless
 * the listener streams bodies: then it is empty and http_x_body_streaming() says so. */
const char *http_x_body(const struct http_exchange *x, size_t *len);
/* 1 while a streamed body has bytes still to come. */
int http_x_body_streaming(const struct http_exchange *x);
/* Streamed bodies: registers the callbacks (once); sends 100 Continue if the client waits
 * for it; on_data may run before this returns. Limits and the body timeout still apply;
 * a failure ends the body with an error and the connection closes after the response.
 * Ending the exchange before the body was read closes the connection too. */
void http_x_body_stream(struct http_exchange *x, http_x_body_data_f *on_data,
                        http_x_body_end_f *on_end, void *arg);
/* Back-pressure: stop handing out body bytes (the socket is no longer read once the
 * input buffer is full) and resume. */
void http_x_body_pause(struct http_exchange *x);
void http_x_body_resume(struct http_exchange *x);
/* The client's address as text ("127.0.0.1", "::1"). */
const char *http_x_peer(const struct http_exchange *x);
uv_loop_t *http_x_loop(const struct http_exchange *x);
void *http_x_worker(const struct http_exchange *x);
/* Microsecond timestamp (units_now_us) when the request head was complete. */
uint64_t http_x_start_us(const struct http_exchange *x);
/* The exchange's note for the access log and on_done; the handler fills what it knows. */
struct http_x_note *http_x_note(struct http_exchange *x);

/* Answers in one go: status line, the given header lines ("Name: value\r\n" each, may be
 * NULL), Content-Length, Date, Connection, and a copy of the body (left out for HEAD
 * and for 1xx/204/304). The exchange ends. */
void http_x_respond(struct http_exchange *x, int status, const char *headers, const void *body,
                    size_t len);
/* Formats a small JSON or text error body {"error": msg} and responds. */
void http_x_error(struct http_exchange *x, int status, const char *msg);

/* Sends an interim response (RFC 9110 §15.2) before the final one: status 102..199 (100
 * Continue is the server's own, see http_x_body_stream; 101 switches nothing here) with
 * the given header lines ("Name: value\r\n" each, may be NULL; Date and framing fields are
 * not added). Over HTTP/1.1 it is a head of its own on the connection, sent to clients of
 * HTTP/1.1 and later only (§15.2: never to an HTTP/1.0 client); over HTTP/2 a HEADERS frame
 * without END_STREAM. Any number, before http_x_start/http_x_respond only. Returns 0 once
 * queued, -EALREADY after the final head began, -EPROTO for an HTTP/1.0 client, -EINVAL
 * for a status outside 102..199, -EPIPE when the client is gone. */
int http_x_interim(struct http_exchange *x, int status, const char *headers);

/* Streamed answer: head first (content_length -1 → chunked for HTTP/1.1, close-delimited
 * for 1.0), then writes, then http_x_end(). The head is sent together with the first
 * write. http_x_write copies nothing: `data` must stay valid until done(arg) is called,
 * once, when the bytes were written or the write failed. done may run before http_x_write
 * returns: when the socket took all the bytes at once, or when there is nothing to send
 * (e.g. HEAD). Returns 0, or -EPIPE when the client is gone (done is then not called). */
void http_x_start(struct http_exchange *x, int status, const char *headers, int64_t content_length);
int http_x_write(struct http_exchange *x, const void *data, size_t len, void (*done)(void *arg),
                 void *arg);
/* Like http_x_write for bytes [off, off+len) of file `fd`, which are also mapped at `mem`:
 * sent with sendfile(2) when the socket takes them at once (no copy), else written from
 * `mem`. Not for chunked responses. fd and mem must stay valid until done(arg). */
int http_x_sendfile(struct http_exchange *x, int fd, uint64_t off, size_t len, const char *mem,
                    void (*done)(void *arg), void *arg);
/* Sends bytes [off, off+len) of the regular file `fd` with sendfile(2), any len (over
 * 2 GiB too), without mapping or buffering the body: when the socket is full it waits
 * for room (meanwhile at most 16 KiB of the file are copied into a probe write) and goes
 * on. Not for chunked responses; the head goes first. The file is read on the loop: the
 * caller makes sure the range is in the page cache (else the loop blocks on the disk).
 * done(arg) is called exactly once: when all bytes were handed to the socket, or when
 * the connection failed meanwhile (client gone, send timeout, server stop: the abort
 * callback, if any, runs first, and done runs before loop_fini). It may run before this
 * returns (the socket took everything at once, or HEAD). No other write on the exchange
 * until done; from done the caller may write again, send again or end the exchange.
 * http_x_end may also come before done: the rest still goes out, then the next request
 * is served. The caller keeps fd open (the server never closes it) and arg valid until
 * done. Returns 0, or a negative errno (-EPIPE: the client is gone; -EIO: the file is
 * shorter than len; else sendfile's or pread's error): then done is not called and the
 * connection closes. SIGPIPE must be ignored, as for any libuv socket write. */
int http_x_sendfile_fd(struct http_exchange *x, int fd, uint64_t off, uint64_t len,
                       void (*done)(void *arg), void *arg);
void http_x_end(struct http_exchange *x);
/* Ends a streamed response that cannot be completed (its source failed) so that the client
 * sees an incomplete message, never a whole one (RFC 9112 §8): what was queued still goes
 * out, then the connection closes without the end of the framing (no last chunk; a
 * Content-Length body stays short); a close-delimited body (HTTP/1.0 client) ends with a
 * reset instead. If the head had not gone out, nothing is sent: the connection closes. */
void http_x_abort(struct http_exchange *x);
/* Bytes queued for this connection's socket and not yet written, including what is left
 * of a file send (for back-pressure). */
size_t http_x_pending(const struct http_exchange *x);
/* Called once if the client disconnects before the exchange ends. */
void http_x_on_abort(struct http_exchange *x, http_x_cb_f *cb, void *arg);
/* The connection's TLS state, or NULL on a plain connection. */
const struct http_tls_conn *http_x_tls(const struct http_exchange *x);
/* Ask to close the connection after this response (no keep-alive). Over HTTP/2 the
 * connection ends gracefully: GOAWAY naming the last stream received, the streams already
 * open finish, then the connection closes. */
void http_x_close_after(struct http_exchange *x);

#endif
