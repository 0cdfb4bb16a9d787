/* tests/unit/http/test_http_server.c: closing and accepting in the HTTP server, on a real
 * server and real sockets.
 *
 * Lingering close: a client that sends a whole request body over the limit before reading
 * must get the 413, and the draining that makes this possible is bounded in bytes and in
 * time (idle and total). Out of descriptors: the soft RLIMIT_NOFILE of this process is
 * lowered so that accept(2) fails with EMFILE; the server must pause accepting, close its
 * idle connections (and only those), keep serving the busy one and accept the waiting
 * client once descriptors are free again. The server source is included for the pure
 * accept(2) error classification. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/metrics.h"
#include "http/http_server.c"

#include <cmocka.h>

#define MIB (1024ull * 1024)

/* ---- handler: GET answers "ok", POST answers with the body length ---- */

static void on_request(struct http_exchange *x, void *arg)
{
    char body[64];
    size_t len;
    const struct http_request *r = http_x_request(x);

    (void)arg;
    if (r->path.len == 6 && memcmp(r->path.p, "/close", 6) == 0)
        http_x_close_after(x);
    if (r->path.len == 6 && memcmp(r->path.p, "/hints", 6) == 0) {
        /* Not asserted here (a server thread): the client checks what it got. A status
         * outside 102..199 is refused and sends nothing. */
        (void)http_x_interim(x, 200, NULL);
        (void)http_x_interim(x, 103, "Link: </a.js>; rel=preload\r\n");
    }
    http_x_body(x, &len);
    int n = snprintf(body, sizeof(body), "ok %zu\n", len);
    http_x_respond(x, 200, "Content-Type: text/plain\r\n", body, (size_t)n);
}

static struct http_server *srv;
static int port;

static void srv_start(const struct http_server_cfg *over)
{
    struct http_server_cfg cfg;
    char err[256];

    if (over)
        cfg = *over;
    else
        http_server_cfg_default(&cfg);
    cfg.limits.max_body = 1 * MIB;
    cfg.listeners[0].addr = "127.0.0.1:0";
    cfg.listeners[0].handler = on_request;
    cfg.listeners[0].name = "unit";
    cfg.nlisteners = 1;
    if (http_server_start(&cfg, &srv, err, sizeof(err)) != 0)
        fail_msg("server: %s", err);
    port = http_server_port(srv, 0);
}

static void srv_stop(void)
{
    http_server_stop(srv, 1000);
    http_server_free(&srv);
}

static uint64_t counter(const char *name)
{
    return metrics_counter_get(metrics_counter(name, NULL, "listener=\"unit\""));
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits (bounded) for the server to have exactly n connections open. */
static int wait_conns(uint64_t n)
{
    for (int i = 0; i < 1000; i++) {
        if (http_server_active_conns(srv) == n)
            return 1;
        sleep_ms(10);
    }
    return 0;
}

/* A socket to the server; not connected when connect_now is 0 (see cli_connect). */
static int cli_new(int connect_now)
{
    struct timeval tv = {.tv_sec = 30}; /* a hang fails the test instead of blocking it */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect_now) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    }
    return fd;
}

static void cli_connect(int fd)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
}

/* Sends all of p; returns 0 or the errno that stopped it. */
static int cli_send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* A request head with Content-Length len, then len bytes of body, all sent before a byte
 * is read. Returns 0 or the errno that stopped the send. */
static int cli_send_big(int fd, uint64_t len)
{
    static char chunk[1 << 16];
    char head[128];
    int hl = snprintf(head, sizeof(head),
                      "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %llu\r\n\r\n",
                      (unsigned long long)len);
    int err = cli_send_all(fd, head, (size_t)hl);

    memset(chunk, 'b', sizeof(chunk));
    while (!err && len) {
        size_t n = (size_t)MC_MIN(len, sizeof(chunk));
        err = cli_send_all(fd, chunk, n);
        len -= n;
    }
    return err;
}

/* Reads until EOF (or error/timeout) into out (NUL-terminated, truncated); returns the
 * number of bytes read, or -errno when the read failed before EOF. */
static ssize_t cli_read_all(int fd, char *out, size_t cap)
{
    size_t len = 0;

    for (;;) {
        char b[4096];
        ssize_t n = recv(fd, b, sizeof(b), 0);
        if (n == 0)
            break;
        if (n < 0)
            return -errno;
        size_t take = MC_MIN((size_t)n, cap - 1 - len);
        memcpy(out + len, b, take);
        len += take;
    }
    out[len] = '\0';
    return (ssize_t)len;
}

/* ---- accept(2) errors ---- */

static void test_accept_errors(void **state)
{
    (void)state;
    assert_int_equal(http_accept_errno_act(EAGAIN), HTTP_ACCEPT_DRAINED);
    assert_int_equal(http_accept_errno_act(EWOULDBLOCK), HTTP_ACCEPT_DRAINED);
    /* Out of descriptors or memory: the next call would fail the same way. */
    assert_int_equal(http_accept_errno_act(EMFILE), HTTP_ACCEPT_PAUSE);
    assert_int_equal(http_accept_errno_act(ENFILE), HTTP_ACCEPT_PAUSE);
    assert_int_equal(http_accept_errno_act(ENOBUFS), HTTP_ACCEPT_PAUSE);
    assert_int_equal(http_accept_errno_act(ENOMEM), HTTP_ACCEPT_PAUSE);
    /* Errors nobody expects pause too: never a loop that retries at once. */
    assert_int_equal(http_accept_errno_act(EBADF), HTTP_ACCEPT_PAUSE);
    assert_int_equal(http_accept_errno_act(EINVAL), HTTP_ACCEPT_PAUSE);
    /* That one client's trouble. */
    assert_int_equal(http_accept_errno_act(ECONNABORTED), HTTP_ACCEPT_RETRY);
    assert_int_equal(http_accept_errno_act(EINTR), HTTP_ACCEPT_RETRY);
    assert_int_equal(http_accept_errno_act(EPROTO), HTTP_ACCEPT_RETRY);
    assert_int_equal(http_accept_errno_act(ENETUNREACH), HTTP_ACCEPT_RETRY);
    assert_int_equal(http_accept_errno_act(EPERM), HTTP_ACCEPT_RETRY);
}

/* ---- lingering close ---- */

/* 32 MiB is many times what loopback sockets buffer: most of the body is still being sent
 * when the server answers 413 and closes. */
static void test_linger_413_reaches_the_sender(void **state)
{
    static char out[4096];
    uint64_t lingered = counter("mlcdn_http_lingering_closes_total");

    (void)state;
    srv_start(NULL);
    int fd = cli_new(1);
    assert_int_equal(cli_send_big(fd, 32 * MIB), 0);
    assert_true(cli_read_all(fd, out, sizeof(out)) > 0);
    assert_memory_equal(out, "HTTP/1.1 413 ", 13);
    assert_non_null(strstr(out, "Connection: close\r\n"));
    close(fd);
    assert_true(wait_conns(0));
    assert_int_equal(counter("mlcdn_http_lingering_closes_total"), lingered + 1);
    srv_stop();
}

/* Past linger_max_bytes the server stops reading and closes: the sender is reset. */
static void test_linger_bounded_in_bytes(void **state)
{
    struct http_server_cfg cfg;

    (void)state;
    http_server_cfg_default(&cfg);
    cfg.linger_max_bytes = 1 * MIB;
    srv_start(&cfg);
    int fd = cli_new(1);
    int err = cli_send_big(fd, 64 * MIB);
    assert_true(err == EPIPE || err == ECONNRESET);
    close(fd);
    assert_true(wait_conns(0));
    srv_stop();
}

/* A client that neither sends nor closes is let go after linger_idle_ms; one that trickles
 * bytes after linger_ms in all. */
static void test_linger_bounded_in_time(void **state)
{
    static char out[4096];
    struct http_server_cfg cfg;
    uint64_t lingered = counter("mlcdn_http_lingering_closes_total");

    (void)state;
    http_server_cfg_default(&cfg);
    cfg.linger_ms = 1500;
    cfg.linger_idle_ms = 200;
    srv_start(&cfg);

    int fd = cli_new(1);
    const char *req = "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\nabc";
    assert_int_equal(cli_send_all(fd, req, strlen(req)), 0);
    /* The response, then our side's EOF: the server shut its write side. */
    assert_true(cli_read_all(fd, out, sizeof(out)) > 0);
    assert_memory_equal(out, "HTTP/1.1 413 ", 13);
    assert_int_equal(counter("mlcdn_http_lingering_closes_total"), lingered + 1);
    assert_true(wait_conns(0)); /* while the client still holds its socket open */
    close(fd);

    fd = cli_new(1);
    assert_int_equal(cli_send_all(fd, req, strlen(req)), 0);
    assert_true(cli_read_all(fd, out, sizeof(out)) > 0);
    int gone = 0;
    for (int i = 0; i < 200 && !gone; i++) { /* 100 ms apart: under the idle bound */
        gone = cli_send_all(fd, "x", 1) != 0 || http_server_active_conns(srv) == 0;
        sleep_ms(100);
    }
    assert_true(gone); /* the total bound ended it while bytes kept coming */
    close(fd);
    assert_true(wait_conns(0));
    srv_stop();
}

/* A request the client sends whole and then waits on gets its answer with no lingering. */
static void test_plain_close_when_the_client_asked(void **state)
{
    static char out[4096];
    uint64_t lingered = counter("mlcdn_http_lingering_closes_total");

    (void)state;
    srv_start(NULL);
    int fd = cli_new(1);
    const char *req = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_int_equal(cli_send_all(fd, req, strlen(req)), 0);
    assert_true(cli_read_all(fd, out, sizeof(out)) > 0);
    assert_memory_equal(out, "HTTP/1.1 200 ", 13);
    close(fd);
    assert_true(wait_conns(0));
    assert_int_equal(counter("mlcdn_http_lingering_closes_total"), lingered);
    srv_stop();
}

/* ---- changes while serving: drain, limits ---- */

/* One GET on fd (kept open); returns what came back up to the end of the body "ok 0\n". */
static void get_once(int fd, char *out, size_t cap)
{
    const char *req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    size_t len = 0;

    assert_int_equal(cli_send_all(fd, req, strlen(req)), 0);
    while (len + 1 < cap && !strstr(out, "ok 0\n")) {
        ssize_t n = recv(fd, out + len, cap - 1 - len, 0);
        assert_true(n > 0);
        len += (size_t)n;
        out[len] = '\0';
    }
}

static void test_drain_closes_keepalive_connections(void **state)
{
    static char out[4096];

    (void)state;
    srv_start(NULL);
    int fd = cli_new(1);
    memset(out, 0, sizeof(out));
    get_once(fd, out, sizeof(out));
    assert_null(strstr(out, "Connection: close"));
    http_server_drain(srv);
    /* The same keep-alive connection: answered, told to go, then closed by the server. */
    memset(out, 0, sizeof(out));
    get_once(fd, out, sizeof(out));
    assert_memory_equal(out, "HTTP/1.1 200 ", 13);
    assert_non_null(strstr(out, "\r\nConnection: close\r\n"));
    char rest[64];
    assert_int_equal(recv(fd, rest, sizeof(rest), 0), 0);
    close(fd);
    /* New connections are still accepted and served. */
    fd = cli_new(1);
    memset(out, 0, sizeof(out));
    get_once(fd, out, sizeof(out));
    assert_non_null(strstr(out, "\r\nConnection: close\r\n"));
    close(fd);
    srv_stop();
}

static void test_set_limits_reaches_open_connections(void **state)
{
    static char out[4096];
    const char *post = "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n";
    static char body[2048];

    (void)state;
    srv_start(NULL);
    int fd = cli_new(1);
    memset(out, 0, sizeof(out));
    get_once(fd, out, sizeof(out));
    http_server_set_limits(srv, 1024, 10000, 30000, 60000, 60000);
    memset(body, 'b', sizeof(body));
    assert_int_equal(cli_send_all(fd, post, strlen(post)), 0);
    assert_int_equal(cli_send_all(fd, body, sizeof(body)), 0);
    assert_true(cli_read_all(fd, out, sizeof(out)) > 0);
    assert_memory_equal(out, "HTTP/1.1 413 ", 13);
    close(fd);
    srv_stop();
}

/* ---- out of descriptors ---- */

#define IDLE 8

static void test_out_of_descriptors(void **state)
{
    static char out[4096];
    int idle[IDLE];
    struct rlimit saved, low;
    uint64_t paused = counter("mlcdn_http_accept_paused_total");
    uint64_t shed = counter("mlcdn_http_idle_closed_total");

    (void)state;
    srv_start(NULL);
    for (int i = 0; i < IDLE; i++)
        idle[i] = cli_new(1);
    int busy = cli_new(1);
    const char *part = "GET / HTTP/1.1\r\nHost: x\r\n"; /* a request under way */
    assert_int_equal(cli_send_all(busy, part, strlen(part)), 0);
    assert_true(wait_conns(IDLE + 1));
    int late = cli_new(0); /* its descriptor exists before the limit drops */

    /* No descriptor left below the limit: the lowest free one is the limit. */
    int lowest = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(lowest >= 0);
    close(lowest);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
    low = saved;
    low.rlim_cur = (rlim_t)lowest;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);

    /* The server cannot accept it: it pauses, closes the idle connections to make room,
     * and takes it when it tries again. */
    cli_connect(late);
    const char *req = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_int_equal(cli_send_all(late, req, strlen(req)), 0);
    ssize_t n = cli_read_all(late, out, sizeof(out));
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
    assert_true(n > 0);
    assert_memory_equal(out, "HTTP/1.1 200 ", 13);
    close(late);

    for (int i = 0; i < IDLE; i++) {
        assert_int_equal(cli_read_all(idle[i], out, sizeof(out)), 0); /* closed, no answer */
        close(idle[i]);
    }
    /* The busy one was left alone and is still served. */
    assert_int_equal(cli_send_all(busy, "Connection: close\r\n\r\n", 21), 0);
    assert_true(cli_read_all(busy, out, sizeof(out)) > 0);
    assert_memory_equal(out, "HTTP/1.1 200 ", 13);
    close(busy);

    assert_true(counter("mlcdn_http_accept_paused_total") >= paused + 1);
    assert_int_equal(counter("mlcdn_http_idle_closed_total"), shed + IDLE);
    assert_true(wait_conns(0));
    srv_stop();
}

/* ---- HTTP/2 with prior knowledge (h2c): frames written by hand ---- */

enum { H2_DATA = 0, H2_HEADERS = 1, H2_SETTINGS = 4, H2_GOAWAY = 7 };

static void h2c_start(const struct http_server_cfg *over)
{
    struct http_server_cfg cfg;

    if (over)
        cfg = *over;
    else
        http_server_cfg_default(&cfg);
    cfg.listeners[0].h2c = 1;
    srv_start(&cfg);
}

static size_t h2_frame(char *out, int type, int flags, uint32_t sid, const char *p, size_t n)
{
    out[0] = (char)(n >> 16);
    out[1] = (char)(n >> 8);
    out[2] = (char)n;
    out[3] = (char)type;
    out[4] = (char)flags;
    out[5] = (char)(sid >> 24);
    out[6] = (char)(sid >> 16);
    out[7] = (char)(sid >> 8);
    out[8] = (char)sid;
    if (n)
        memcpy(out + 9, p, n);
    return 9 + n;
}

/* A literal field without indexing, new name (RFC 7541 §6.2.2); short strings only. */
static size_t hpack_lit(char *out, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    out[0] = 0;
    out[1] = (char)nl;
    memcpy(out + 2, name, nl);
    out[2 + nl] = (char)vl;
    memcpy(out + 3 + nl, value, vl);
    return 3 + nl + vl;
}

/* The connection preface and an empty SETTINGS. */
static void h2_hello(int fd)
{
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    char b[64];
    size_t n = sizeof(preface) - 1;
    memcpy(b, preface, n);
    n += h2_frame(b + n, H2_SETTINGS, 0, 0, NULL, 0);
    assert_int_equal(cli_send_all(fd, b, n), 0);
}

static void h2_get(int fd, uint32_t sid, const char *path)
{
    char block[256], f[300];
    size_t n = 0;
    n += hpack_lit(block + n, ":method", "GET");
    n += hpack_lit(block + n, ":scheme", "http");
    n += hpack_lit(block + n, ":path", path);
    n += hpack_lit(block + n, ":authority", "x");
    size_t fl = h2_frame(f, H2_HEADERS, 0x5 /* END_STREAM | END_HEADERS */, sid, block, n);
    assert_int_equal(cli_send_all(fd, f, fl), 0);
}

/* Reads one frame (its payload into p, at most cap bytes kept). 1, or 0 at EOF / error. */
static int h2_read_frame(int fd, int *type, int *flags, uint32_t *sid, char *p, size_t cap)
{
    unsigned char h[9];
    size_t got = 0;
    while (got < 9) {
        ssize_t k = recv(fd, h + got, 9 - got, 0);
        if (k <= 0)
            return 0;
        got += (size_t)k;
    }
    size_t len = ((size_t)h[0] << 16) | ((size_t)h[1] << 8) | h[2];
    *type = h[3];
    *flags = h[4];
    *sid = ((uint32_t)(h[5] & 0x7f) << 24) | ((uint32_t)h[6] << 16) | ((uint32_t)h[7] << 8) | h[8];
    for (size_t i = 0; i < len;) {
        char b[4096];
        ssize_t k = recv(fd, b, MC_MIN(sizeof(b), len - i), 0);
        if (k <= 0)
            return 0;
        if (i < cap)
            memcpy(p + i, b, MC_MIN((size_t)k, cap - i));
        i += (size_t)k;
    }
    return 1;
}

/* Frames until EOF: the flags of what was seen. */
struct h2_seen {
    int headers, end_stream, goaway;
    uint32_t goaway_last, goaway_err;
    int interim_first; /* a HEADERS without END_STREAM came before the one of the response */
    int headers_n;
};

static void h2_read_to_eof(int fd, struct h2_seen *s)
{
    int type, flags;
    uint32_t sid;
    char p[256];

    memset(s, 0, sizeof(*s));
    while (h2_read_frame(fd, &type, &flags, &sid, p, sizeof(p))) {
        if (type == H2_HEADERS) {
            s->headers = 1;
            s->headers_n++;
        }
        if (sid == 1 && (flags & 0x1))
            s->end_stream = 1;
        if (type == H2_GOAWAY) {
            s->goaway = 1;
            s->goaway_last = (((uint32_t)(unsigned char)p[0] & 0x7f) << 24) |
                             ((uint32_t)(unsigned char)p[1] << 16) |
                             ((uint32_t)(unsigned char)p[2] << 8) | (unsigned char)p[3];
            s->goaway_err = ((uint32_t)(unsigned char)p[4] << 24) |
                            ((uint32_t)(unsigned char)p[5] << 16) |
                            ((uint32_t)(unsigned char)p[6] << 8) | (unsigned char)p[7];
        }
    }
}

/* http_x_close_after over HTTP/2: the response is whole, then GOAWAY (NO_ERROR, naming the
 * stream) and the connection ends, as Connection: close ends one over HTTP/1.1. */
static void test_h2_close_after(void **state)
{
    struct h2_seen s;

    (void)state;
    h2c_start(NULL);
    int fd = cli_new(1);
    h2_hello(fd);
    h2_get(fd, 1, "/close");
    h2_read_to_eof(fd, &s);
    assert_true(s.headers && s.end_stream);
    assert_true(s.goaway);
    assert_int_equal(s.goaway_last, 1);
    assert_int_equal(s.goaway_err, 0);
    close(fd);
    /* Without it the connection stays open: a second stream is served on it. */
    fd = cli_new(1);
    h2_hello(fd);
    h2_get(fd, 1, "/");
    h2_get(fd, 3, "/close");
    h2_read_to_eof(fd, &s);
    assert_true(s.goaway && s.goaway_last == 3 && s.headers_n == 2);
    close(fd);
    assert_true(wait_conns(0));
    srv_stop();
}

/* Interim responses: a 103 goes out before the final head, over HTTP/1.1 (a head of its
 * own) and over HTTP/2 (a HEADERS frame without END_STREAM); an HTTP/1.0 client gets none. */
static void test_interim_responses(void **state)
{
    static char out[4096];
    struct h2_seen s;

    (void)state;
    h2c_start(NULL);
    int fd = cli_new(1);
    const char *req = "GET /hints HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_int_equal(cli_send_all(fd, req, strlen(req)), 0);
    assert_true(cli_read_all(fd, out, sizeof(out)) > 0);
    assert_memory_equal(out,
                        "HTTP/1.1 103 Early Hints\r\nLink: </a.js>; rel=preload\r\n\r\n"
                        "HTTP/1.1 200 ",
                        strlen("HTTP/1.1 103 Early Hints\r\nLink: </a.js>; rel=preload\r\n\r\n"
                               "HTTP/1.1 200 "));
    close(fd);
    fd = cli_new(1);
    req = "GET /hints HTTP/1.0\r\nHost: x\r\n\r\n";
    assert_int_equal(cli_send_all(fd, req, strlen(req)), 0);
    assert_true(cli_read_all(fd, out, sizeof(out)) > 0);
    assert_memory_equal(out, "HTTP/1.1 200 ", 13);
    close(fd);
    fd = cli_new(1);
    h2_hello(fd);
    h2_get(fd, 1, "/hints");
    h2_get(fd, 3, "/close");
    h2_read_to_eof(fd, &s);
    assert_int_equal(s.headers_n, 3); /* the 103, the 200 of stream 1, the 200 of stream 3 */
    close(fd);
    assert_true(wait_conns(0));
    srv_stop();
}

/* Out of descriptors, idle HTTP/2 connections are shed as idle HTTP/1.1 ones are, but
 * with a GOAWAY first (NO_ERROR: no request of theirs was lost); one with a stream in
 * progress is left alone. */
static void test_out_of_descriptors_h2(void **state)
{
    static char out[4096];
    int idle[IDLE];
    struct rlimit saved, low;
    struct h2_seen s;
    int type, flags;
    uint32_t sid;
    uint64_t shed = counter("mlcdn_http_idle_closed_total");

    (void)state;
    h2c_start(NULL);
    for (int i = 0; i < IDLE; i++) {
        idle[i] = cli_new(1);
        h2_hello(idle[i]);
        /* The server's SETTINGS: the session is up. */
        assert_true(h2_read_frame(idle[i], &type, &flags, &sid, out, sizeof(out)));
        assert_int_equal(type, H2_SETTINGS);
    }
    int busy = cli_new(1);
    h2_hello(busy);
    /* A stream whose head is not complete yet (no END_HEADERS): a request under way. */
    char block[64], f[128];
    size_t bn = hpack_lit(block, ":method", "GET");
    assert_int_equal(cli_send_all(busy, f, h2_frame(f, H2_HEADERS, 0x1, 1, block, bn)), 0);
    assert_true(wait_conns(IDLE + 1));
    int late = cli_new(0);

    int lowest = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(lowest >= 0);
    close(lowest);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
    low = saved;
    low.rlim_cur = (rlim_t)lowest;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);

    cli_connect(late);
    const char *req = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_int_equal(cli_send_all(late, req, strlen(req)), 0);
    ssize_t n = cli_read_all(late, out, sizeof(out));
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
    assert_true(n > 0);
    assert_memory_equal(out, "HTTP/1.1 200 ", 13);
    close(late);

    for (int i = 0; i < IDLE; i++) {
        h2_read_to_eof(idle[i], &s);
        assert_true(s.goaway);
        assert_int_equal(s.goaway_err, 0);
        close(idle[i]);
    }
    /* The busy one was left alone: its request completes and is answered. */
    char rest[128];
    size_t rn = hpack_lit(rest, ":scheme", "http");
    rn += hpack_lit(rest + rn, ":path", "/close");
    rn += hpack_lit(rest + rn, ":authority", "x");
    assert_int_equal(cli_send_all(busy, f, h2_frame(f, 9 /* CONTINUATION */, 0x4, 1, rest, rn)), 0);
    h2_read_to_eof(busy, &s);
    assert_true(s.headers && s.end_stream);
    close(busy);
    assert_int_equal(counter("mlcdn_http_idle_closed_total"), shed + IDLE);
    assert_true(wait_conns(0));
    srv_stop();
}

/* ---- the worker's deadline heap ---- */

static void heap_check(const struct worker *w)
{
    for (unsigned i = 0; i < w->dq_n; i++) {
        assert_int_equal(w->dq[i]->dq_idx, i + 1);
        if (i > 0)
            assert_true(w->dq[(i - 1) / 2]->due <= w->dq[i]->due);
    }
}

/* Entries set, moved earlier and later, deleted from anywhere: the heap stays a heap, every
 * connection knows its place, and the earliest is always at the top. */
static void test_deadline_heap(void **state)
{
    enum { N = 300 };
    static struct worker w;
    static struct conn cs[N];
    uint64_t seed = 12345;

    (void)state;
    memset(&w, 0, sizeof(w));
    w.dq_closed = 1; /* no loop here: the heap alone */
    for (int i = 0; i < N; i++) {
        cs[i].w = &w;
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        dq_set(&cs[i], 1000 + (seed >> 33) % 100000);
    }
    heap_check(&w);
    assert_int_equal(w.dq_n, N);
    for (int round = 0; round < 2000; round++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        struct conn *c = &cs[(seed >> 33) % N];
        switch ((seed >> 20) % 3) {
        case 0: dq_set(c, c->due / 2 + 1); break;                   /* earlier (or in, if out) */
        case 1: dq_set(c, c->due + 1 + (seed >> 40) % 5000); break; /* later */
        case 2: dq_del(c); break;
        }
        heap_check(&w);
    }
    uint64_t last = 0;
    unsigned left = w.dq_n;
    while (w.dq_n) {
        struct conn *c = w.dq[0];
        assert_true(c->due >= last);
        last = c->due;
        dq_del(c);
        assert_int_equal(c->dq_idx, 0);
        heap_check(&w);
    }
    assert_true(left > 0);
    dq_del(&cs[0]); /* not in the heap: nothing */
    free(w.dq);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_errors),
        cmocka_unit_test(test_deadline_heap),
        cmocka_unit_test(test_linger_413_reaches_the_sender),
        cmocka_unit_test(test_linger_bounded_in_bytes),
        cmocka_unit_test(test_linger_bounded_in_time),
        cmocka_unit_test(test_plain_close_when_the_client_asked),
        cmocka_unit_test(test_drain_closes_keepalive_connections),
        cmocka_unit_test(test_set_limits_reaches_open_connections),
        cmocka_unit_test(test_out_of_descriptors),
        cmocka_unit_test(test_h2_close_after),
        cmocka_unit_test(test_interim_responses),
        cmocka_unit_test(test_out_of_descriptors_h2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
