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

    (void)arg;
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

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_errors),
        cmocka_unit_test(test_linger_413_reaches_the_sender),
        cmocka_unit_test(test_linger_bounded_in_bytes),
        cmocka_unit_test(test_linger_bounded_in_time),
        cmocka_unit_test(test_plain_close_when_the_client_asked),
        cmocka_unit_test(test_drain_closes_keepalive_connections),
        cmocka_unit_test(test_set_limits_reaches_open_connections),
        cmocka_unit_test(test_out_of_descriptors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
