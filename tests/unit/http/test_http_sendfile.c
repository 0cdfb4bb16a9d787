/* tests/unit/http/test_http_sendfile.c: http_x_sendfile_fd on a real server and sockets.
 *
 * A server on 127.0.0.1:0 answers GET /f/<file>/<off>/<len>/<mode> with bytes [off,
 * off+len) of a temp file (big: 64 MiB sparse with random blocks; small: 1000 bytes;
 * far: 5 GiB sparse, data past 4 GiB). Modes say when the handler ends the exchange:
 * "end" at once after the call (the edge's pattern), "wait" from done, "chain" two halves
 * where done starts the second send, "prefix" a first part written from memory with
 * http_x_write (still queued when the file send starts). A blocking client in the test thread reads slowly
 * (small receive buffer, short sleeps: the socket fills, the probe path runs) then fast,
 * and compares an FNV-1a hash with the file's. The server source is included so that
 * sendfile(2) and pread(2) can be counted and made to fail (failure injection). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* ---- the server, with its system calls counted ---- */

static _Atomic long n_sendfile, n_eagain, n_probe;
static _Atomic long inject_eio_at; /* the Nth sendfile call fails with EIO (0: never) */

static ssize_t test_sendfile(int out, int in, off_t *off, size_t count)
{
    if (atomic_fetch_add(&n_sendfile, 1) + 1 == atomic_load(&inject_eio_at)) {
        errno = EIO;
        return -1;
    }
    ssize_t n = sendfile(out, in, off, count);
    if (n < 0 && errno == EAGAIN)
        atomic_fetch_add(&n_eagain, 1);
    return n;
}

static ssize_t test_pread(int fd, void *buf, size_t n, off_t off)
{
    atomic_fetch_add(&n_probe, 1);
    return pread(fd, buf, n, off);
}

#define sendfile test_sendfile
#define pread test_pread
#include "http/http_server.c"
#undef sendfile
#undef pread

#include <cmocka.h>

#define MIB (1024ull * 1024)
#define BIG_SIZE (64 * MIB)
#define SMALL_SIZE 1000
#define FAR_BASE (4096 * MIB) /* past 32-bit offsets */
#define FAR_SIZE (5120 * MIB)

static int fd_big = -1, fd_small = -1, fd_far = -1;

/* ---- handler side (runs on the server's worker thread) ---- */

#define SND_MAGIC 0x534e4431u

static _Atomic long n_calls;  /* http_x_sendfile_fd calls in flight or that returned 0 */
static _Atomic long n_done;   /* done callbacks */
static _Atomic long n_double; /* done called more often than sends were issued */
static _Atomic long n_abort_then_done;
static _Atomic long n_errs, last_err;
static _Atomic int fini_all_done; /* at loop_fini, every done had been called */

enum mode { M_END, M_WAIT, M_CHAIN, M_PREFIX };

struct snd {
    unsigned magic;
    struct http_exchange *x;
    enum mode mode;
    int fd;
    uint64_t off, len;
    int issued, calls, aborted;
};

static void snd_done(void *arg);

static void snd_abort(struct http_exchange *x, void *arg)
{
    struct snd *s = arg;
    (void)x;
    MC_CHECK_OBJ_NOTNULL(s, SND_MAGIC);
    s->aborted = 1;
}

static int snd_issue(struct snd *s, uint64_t off, uint64_t len)
{
    /* Counted before the call: the client may see bytes (and check) before it returns. */
    s->issued++;
    atomic_fetch_add(&n_calls, 1);
    int rc = http_x_sendfile_fd(s->x, s->fd, off, len, snd_done, s);
    if (rc != 0) {
        s->issued--;
        atomic_fetch_sub(&n_calls, 1);
        atomic_fetch_add(&n_errs, 1);
        atomic_store(&last_err, rc);
    }
    return rc;
}

static void snd_done(void *arg)
{
    struct snd *s = arg;

    MC_CHECK_OBJ_NOTNULL(s, SND_MAGIC);
    if (++s->calls > s->issued)
        atomic_fetch_add(&n_double, 1);
    if (s->aborted)
        atomic_fetch_add(&n_abort_then_done, 1);
    atomic_fetch_add(&n_done, 1); /* last: the test thread waits on it, then reads those */
    if (s->mode == M_CHAIN && s->calls == 1 && !s->aborted) {
        uint64_t half = s->len / 2;
        if (snd_issue(s, s->off + half, s->len - half) == 0)
            return; /* this callback may be running inside that very call: s stays */
    }
    if (s->mode != M_END)
        http_x_end(s->x);
    MC_FREE_OBJ(s);
}

static void on_request(struct http_exchange *x, void *arg)
{
    const struct http_request *r = http_x_request(x);
    char path[256], name[16], mode[16] = "end";
    unsigned long long off, len;
    (void)arg;

    snprintf(path, sizeof(path), "%.*s", (int)r->path.len, r->path.p);
    if (sscanf(path, "/f/%15[a-z]/%llu/%llu/%15[a-z]", name, &off, &len, mode) < 3) {
        http_x_error(x, 404, "no such test path");
        return;
    }
    struct snd *s = mc_xcalloc(1, sizeof(*s));
    MC_INIT_OBJ(s, SND_MAGIC);
    s->x = x;
    s->fd = !strcmp(name, "big") ? fd_big : !strcmp(name, "far") ? fd_far : fd_small;
    s->off = off;
    s->len = len;
    s->mode = !strcmp(mode, "wait")   ? M_WAIT
            : !strcmp(mode, "chain")  ? M_CHAIN
            : !strcmp(mode, "prefix") ? M_PREFIX
                                      : M_END;
    if (s->mode != M_END)
        http_x_on_abort(x, snd_abort, s);
    http_x_start(x, 200, "Content-Type: application/octet-stream\r\n", (int64_t)len);
    if (s->mode == M_PREFIX) {
        /* The socket takes 64 KiB or so at once: most of this waits in libuv's queue. */
        size_t n = (size_t)MC_MIN(len / 2, 4 * MIB);
        char *b = mc_xmalloc(n);
        MC_ASSERT(pread(s->fd, b, n, (off_t)off) == (ssize_t)n);
        MC_ASSERT(http_x_write(x, b, n, free, b) == 0);
        off += n;
        len -= n;
    }
    /* In "end" mode done frees s, maybe before this returns: s is not touched after. */
    enum mode m = s->mode;
    int rc = snd_issue(s, off, s->mode == M_CHAIN ? len / 2 : len);
    if (rc != 0) {
        if (m != M_END)
            http_x_end(x);
        MC_FREE_OBJ(s);
    }
    if (m == M_END)
        http_x_end(x);
}

static void on_loop_fini(uv_loop_t *loop, void *data, void *arg)
{
    (void)loop;
    (void)data;
    (void)arg;
    atomic_store(&fini_all_done, atomic_load(&n_done) == atomic_load(&n_calls));
}

/* ---- test side ---- */

static struct http_server *srv;
static int port;

static void srv_start(uint64_t send_timeout_ms)
{
    struct http_server_cfg cfg;
    char err[256];

    http_server_cfg_default(&cfg);
    cfg.send_timeout_ms = send_timeout_ms;
    cfg.listeners[0].addr = "127.0.0.1:0";
    cfg.listeners[0].handler = on_request;
    cfg.listeners[0].name = "test";
    cfg.nlisteners = 1;
    cfg.loop_fini = on_loop_fini;
    atomic_store(&fini_all_done, 0);
    if (http_server_start(&cfg, &srv, err, sizeof(err)) != 0)
        fail_msg("server: %s", err);
    port = http_server_port(srv, 0);
}

/* Stops the server; every send that started must have seen its done, once. */
static void srv_stop(uint64_t grace_ms)
{
    http_server_stop(srv, grace_ms);
    http_server_free(&srv);
    assert_int_equal(atomic_load(&n_done), atomic_load(&n_calls));
    assert_int_equal(atomic_load(&n_double), 0);
    assert_true(atomic_load(&fini_all_done));
}

static uint64_t fnv(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}
#define FNV0 0xcbf29ce484222325ull

static uint64_t file_hash(int fd, uint64_t off, uint64_t len)
{
    static unsigned char b[1 << 16];
    uint64_t h = FNV0;
    while (len) {
        ssize_t n = pread(fd, b, (size_t)MC_MIN(len, sizeof(b)), (off_t)off);
        assert_true(n > 0);
        h = fnv(h, b, (size_t)n);
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
    return h;
}

struct cli {
    int fd;
    size_t len, pos;
    unsigned char buf[1 << 16];
};

static struct cli cl; /* one client at a time; static keeps its buffer out of the stack */

/* rcvbuf > 0 shrinks the receive buffer so a slow reader fills the socket early. */
static void cli_open(struct cli *c, int rcvbuf)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct timeval tv = {.tv_sec = 30}; /* a hang fails the test instead of blocking it */

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c->fd >= 0);
    if (rcvbuf > 0)
        setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    c->len = c->pos = 0;
}

static void cli_close(struct cli *c)
{
    close(c->fd);
    c->fd = -1;
}

static void cli_send(struct cli *c, const char *s)
{
    size_t n = strlen(s);
    assert_int_equal(send(c->fd, s, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Buffered bytes, reading at most max more when none are left; 0 at EOF or error. */
static size_t cli_avail(struct cli *c, size_t max)
{
    if (c->pos == c->len) {
        ssize_t n = recv(c->fd, c->buf, MC_MIN(max, sizeof(c->buf)), 0);
        if (n <= 0)
            return 0;
        c->pos = 0;
        c->len = (size_t)n;
    }
    return c->len - c->pos;
}

struct resp {
    int status;
    uint64_t clen, got, hash;
};

/* Reads one response head, then the body unless head_only (HEAD): the first slow_bytes in
 * 4 KiB reads with a 1 ms sleep each, the rest as fast as it comes. Stops early after
 * stop_after body bytes (0: never) or at EOF; resp->got says how many came. */
static void cli_resp(struct cli *c, struct resp *r, int head_only, uint64_t slow_bytes,
                     uint64_t stop_after)
{
    char head[4096];
    size_t hl = 0;

    memset(r, 0, sizeof(*r));
    r->hash = FNV0;
    for (;;) {
        assert_true(cli_avail(c, sizeof(c->buf)) > 0);
        assert_true(hl < sizeof(head) - 1);
        head[hl++] = (char)c->buf[c->pos++];
        if (hl >= 4 && !memcmp(head + hl - 4, "\r\n\r\n", 4))
            break;
    }
    head[hl] = '\0';
    assert_int_equal(sscanf(head, "HTTP/1.1 %d", &r->status), 1);
    const char *cl_h = strcasestr(head, "\r\ncontent-length:");
    assert_non_null(cl_h);
    r->clen = strtoull(cl_h + 17, NULL, 10);
    if (head_only)
        return;
    while (r->got < r->clen && (!stop_after || r->got < stop_after)) {
        int slow = r->got < slow_bytes;
        size_t n = cli_avail(c, slow ? 4096 : sizeof(c->buf));
        if (n == 0)
            break;
        n = (size_t)MC_MIN((uint64_t)n, r->clen - r->got);
        r->hash = fnv(r->hash, c->buf + c->pos, n);
        c->pos += n;
        r->got += n;
        if (slow)
            usleep(1000);
    }
}

/* GET one file range on the open connection and check every byte. */
static void get_check(struct cli *c, const char *file, int fd, uint64_t off, uint64_t len,
                      const char *mode, uint64_t slow_bytes)
{
    char req[256];
    struct resp r;

    snprintf(req, sizeof(req), "GET /f/%s/%llu/%llu/%s HTTP/1.1\r\nHost: t\r\n\r\n", file,
             (unsigned long long)off, (unsigned long long)len, mode);
    cli_send(c, req);
    cli_resp(c, &r, 0, slow_bytes, 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.clen, len);
    assert_int_equal(r.got, len);
    assert_true(r.hash == file_hash(fd, off, len));
}

/* Sends that ended: with done, or with an error from the call (done never comes). */
static long outcomes(void)
{
    return atomic_load(&n_done) + atomic_load(&n_errs);
}

/* Waits (bounded) until at least min sends ended in all and every send that started got
 * its done (a handler may not have started its send yet when the client already got
 * bytes from it: then min says one more is due). */
static void wait_done(long min)
{
    for (int i = 0; i < 10000; i++) {
        if (outcomes() >= min && atomic_load(&n_done) == atomic_load(&n_calls))
            break;
        usleep(1000);
    }
    assert_true(outcomes() >= min);
    assert_int_equal(atomic_load(&n_done), atomic_load(&n_calls));
}

static void wait_all_done(void)
{
    wait_done(0);
}

/* Reads until the server closes the connection; returns the bytes seen. */
static uint64_t drain_to_eof(struct cli *c)
{
    uint64_t total = c->len - c->pos;
    c->pos = c->len;
    for (;;) {
        ssize_t n = recv(c->fd, c->buf, sizeof(c->buf), 0);
        if (n <= 0) {
            assert_true(n == 0 || errno == ECONNRESET); /* not EAGAIN: the server closed */
            return total;
        }
        total += (uint64_t)n;
    }
}

static long vm_rss_kib(void)
{
    char line[256];
    long kib = -1;
    FILE *f = fopen("/proc/self/status", "r");

    assert_non_null(f);
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* ---- files ---- */

static int tmpfile_fd(void)
{
    char name[] = "/tmp/mlcdn-sendfile-XXXXXX";
    int fd = mkstemp(name);
    assert_true(fd >= 0);
    unlink(name);
    return fd;
}

static void put_random(int fd, uint64_t off, size_t n, uint32_t seed)
{
    unsigned char b[8192];
    assert_true(n <= sizeof(b));
    for (size_t i = 0; i < n; i++) {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        b[i] = (unsigned char)seed;
    }
    assert_int_equal(pwrite(fd, b, n, (off_t)off), (ssize_t)n);
}

static int setup(void **state)
{
    (void)state;
    fd_big = tmpfile_fd();
    assert_int_equal(ftruncate(fd_big, (off_t)BIG_SIZE), 0);
    /* Blocks that cross page and MiB boundaries, and the very first and last bytes. */
    put_random(fd_big, 0, 4096, 1);
    put_random(fd_big, 1 * MIB - 100, 8192, 2);
    put_random(fd_big, 12345678, 5000, 3);
    put_random(fd_big, 33 * MIB - 7, 777, 4);
    put_random(fd_big, BIG_SIZE - 4096, 4096, 5);
    fd_small = tmpfile_fd();
    put_random(fd_small, 0, SMALL_SIZE, 6);
    fd_far = tmpfile_fd();
    assert_int_equal(ftruncate(fd_far, (off_t)FAR_SIZE), 0);
    put_random(fd_far, FAR_BASE + 1000, 8192, 7);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    close(fd_big);
    close(fd_small);
    close(fd_far);
    return 0;
}

/* ---- tests ---- */

/* A small file goes out at once (done inside the call), in every mode; HEAD sends no
 * body and still calls done; keep-alive goes on after each. */
static void test_small_and_head(void **state)
{
    struct resp r;
    (void)state;

    srv_start(60000);
    cli_open(&cl, 0);
    get_check(&cl, "small", fd_small, 0, SMALL_SIZE, "end", 0);
    get_check(&cl, "small", fd_small, 0, SMALL_SIZE, "wait", 0);
    get_check(&cl, "small", fd_small, 0, SMALL_SIZE, "chain", 0);
    get_check(&cl, "small", fd_small, 0, SMALL_SIZE, "prefix", 0);
    get_check(&cl, "small", fd_small, 999, 1, "end", 0);
    cli_send(&cl, "HEAD /f/small/0/1000/wait HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_resp(&cl, &r, 1, 0, 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.clen, SMALL_SIZE);
    get_check(&cl, "small", fd_small, 10, 20, "end", 0);
    cli_close(&cl);
    wait_all_done();
    srv_stop(1000);
}

/* 64 MiB to a slow-then-fast reader: the socket fills (EAGAIN, probe writes), every byte
 * arrives, and the process does not grow with the body (no mapping, no copy). */
static void test_big_slow_reader(void **state)
{
    (void)state;
    srv_start(60000);
    cli_open(&cl, 65536);
    get_check(&cl, "small", fd_small, 0, SMALL_SIZE, "end", 0); /* warm up */
    long eagain0 = atomic_load(&n_eagain), probe0 = atomic_load(&n_probe);
    long rss0 = vm_rss_kib();
    get_check(&cl, "big", fd_big, 0, BIG_SIZE, "end", 2 * MIB);
    long rss1 = vm_rss_kib();
    assert_true(atomic_load(&n_eagain) > eagain0);
    assert_true(atomic_load(&n_probe) > probe0);
    print_message("64 MiB: %ld EAGAIN, %ld probe writes, RSS %+ld KiB\n",
                  atomic_load(&n_eagain) - eagain0, atomic_load(&n_probe) - probe0, rss1 - rss0);
    if (rss1 - rss0 >= 16 * 1024)
        fail_msg("RSS grew by %ld KiB for a 64 MiB body", rss1 - rss0);
    /* The exchange stayed open during the send (ended from done) and the second half was
     * chained from done: same bytes. */
    get_check(&cl, "big", fd_big, 0, BIG_SIZE, "wait", 1 * MIB);
    get_check(&cl, "big", fd_big, 0, BIG_SIZE, "chain", 1 * MIB);
    get_check(&cl, "big", fd_big, 100, 16 * MIB, "prefix", 1 * MIB);
    cli_close(&cl);
    wait_all_done();
    srv_stop(1000);
}

/* Ranges (off > 0, unaligned) on one keep-alive connection, and an offset past 4 GiB. */
static void test_ranges_keepalive(void **state)
{
    (void)state;
    srv_start(60000);
    cli_open(&cl, 65536);
    get_check(&cl, "big", fd_big, 12345000, 20000000, "end", 512 * 1024);
    get_check(&cl, "big", fd_big, 1 * MIB - 4097, 3 * MIB + 1, "wait", 256 * 1024);
    get_check(&cl, "big", fd_big, BIG_SIZE - 5000, 5000, "chain", 0);
    get_check(&cl, "far", fd_far, FAR_BASE + 500, 2 * MIB, "end", 512 * 1024);
    cli_close(&cl);
    wait_all_done();
    srv_stop(1000);
}

/* Two pipelined requests: the first handler ends its exchange while most of its file is
 * still to go; the second response must come after the last file byte. */
static void test_pipelined_after_file(void **state)
{
    struct resp r;
    (void)state;

    srv_start(60000);
    cli_open(&cl, 65536);
    cli_send(&cl, "GET /f/big/0/67108864/end HTTP/1.1\r\nHost: t\r\n\r\n"
                  "GET /f/small/0/1000/end HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_resp(&cl, &r, 0, 2 * MIB, 0);
    assert_int_equal(r.got, BIG_SIZE);
    assert_true(r.hash == file_hash(fd_big, 0, BIG_SIZE));
    cli_resp(&cl, &r, 0, 0, 0);
    assert_int_equal(r.got, SMALL_SIZE);
    assert_true(r.hash == file_hash(fd_small, 0, SMALL_SIZE));
    get_check(&cl, "big", fd_big, 7, 3 * MIB, "end", 0); /* and the connection goes on */
    cli_close(&cl);
    wait_all_done();
    srv_stop(1000);
}

/* The client goes away mid-body, with the exchange ended (edge pattern) or still open
 * (then the abort callback comes first): done once each, the server serves on. */
static void test_client_abort(void **state)
{
    static const char *modes[] = {"end", "wait", "chain", "prefix"};
    struct resp r;
    char req[128];
    (void)state;

    srv_start(60000);
    for (size_t i = 0; i < MC_ARRAY_SIZE(modes); i++) {
        long out0 = outcomes(), errs0 = atomic_load(&n_errs);
        long aborts0 = atomic_load(&n_abort_then_done);
        cli_open(&cl, 65536);
        snprintf(req, sizeof(req), "GET /f/big/0/67108864/%s HTTP/1.1\r\nHost: t\r\n\r\n",
                 modes[i]);
        cli_send(&cl, req);
        cli_resp(&cl, &r, 0, 0, 1 * MIB);
        assert_true(r.got >= 1 * MIB && r.got < BIG_SIZE);
        /* RST at once (unread bytes), so the server sees it in the middle of the send. */
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(cl.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        cli_close(&cl);
        wait_done(out0 + 1);
        /* The reset may also hit the first, synchronous sendfile run (up to SF_TURN_MAX
         * bytes): then the call returns the error instead (the abort callback ran). */
        if (i > 0) {
            /* In chain mode the first done may be the one waited for: give the reset time
             * to reach the second send (a loaded machine delivers it late). */
            for (int t = 0; t < 500 && atomic_load(&n_abort_then_done) == aborts0 &&
                            atomic_load(&n_errs) == errs0;
                 t++)
                usleep(10000);
            assert_true(atomic_load(&n_abort_then_done) > aborts0 || atomic_load(&n_errs) > errs0);
        }
        cli_open(&cl, 0);
        get_check(&cl, "small", fd_small, 0, SMALL_SIZE, "end", 0);
        cli_close(&cl);
    }
    srv_stop(1000);
}

/* A client that stops reading: the send timeout closes the connection, done comes. */
static void test_send_timeout(void **state)
{
    struct resp r;
    (void)state;

    srv_start(300);
    long aborts0 = atomic_load(&n_abort_then_done), out0 = outcomes();
    cli_open(&cl, 65536);
    cli_send(&cl, "GET /f/big/0/67108864/wait HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_resp(&cl, &r, 0, 0, 4096);
    wait_done(out0 + 1);
    assert_true(atomic_load(&n_abort_then_done) > aborts0);
    assert_true(r.got + drain_to_eof(&cl) < BIG_SIZE);
    cli_close(&cl);
    cli_open(&cl, 0);
    get_check(&cl, "small", fd_small, 0, SMALL_SIZE, "end", 0);
    cli_close(&cl);
    srv_stop(1000);
}

/* Graceful stop while a file send waits on a client that does not read: the grace period
 * ends it, done comes before loop_fini (checked by srv_stop). */
static void test_stop_mid_send(void **state)
{
    struct resp r;
    (void)state;

    srv_start(60000);
    cli_open(&cl, 65536);
    cli_send(&cl, "GET /f/big/0/67108864/end HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_resp(&cl, &r, 0, 0, 4096);
    srv_stop(200);
    assert_true(r.got + drain_to_eof(&cl) < BIG_SIZE);
    cli_close(&cl);
}

/* A file shorter than announced: reported by the call when found at once (done not
 * called), else done comes; the connection closes either way (the length was promised). */
static void test_short_file(void **state)
{
    struct resp r;
    (void)state;

    srv_start(60000);
    long errs0 = atomic_load(&n_errs);
    cli_open(&cl, 0);
    cli_send(&cl, "GET /f/small/0/2000/end HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_resp(&cl, &r, 0, 0, 0);
    assert_int_equal(r.got, SMALL_SIZE);
    cli_close(&cl);
    assert_int_equal(atomic_load(&n_errs), errs0 + 1);
    assert_int_equal(atomic_load(&last_err), -EIO);
    /* Past the end of the big file, found after waits for a slow reader. */
    cli_open(&cl, 65536);
    cli_send(&cl, "GET /f/big/33554432/33554433/wait HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_resp(&cl, &r, 0, 2 * MIB, 0);
    assert_int_equal(r.got, BIG_SIZE - 32 * MIB);
    cli_close(&cl);
    wait_all_done();
    srv_stop(1000);
}

/* Failure injection: the Nth sendfile call fails (EIO) for N over the first calls of a
 * slow send: each time the connection closes, done (or the error return) comes once. */
static void test_sendfile_fails(void **state)
{
    struct resp r;
    (void)state;

    srv_start(60000);
    for (long k = 1; k <= 6; k++) {
        cli_open(&cl, 65536);
        atomic_store(&inject_eio_at, atomic_load(&n_sendfile) + k);
        cli_send(&cl, "GET /f/big/0/67108864/wait HTTP/1.1\r\nHost: t\r\n\r\n");
        cli_resp(&cl, &r, 0, 1 * MIB, 0);
        assert_true(r.got < BIG_SIZE);
        cli_close(&cl);
        wait_all_done();
    }
    atomic_store(&inject_eio_at, 0);
    cli_open(&cl, 0);
    get_check(&cl, "small", fd_small, 0, SMALL_SIZE, "end", 0);
    cli_close(&cl);
    srv_stop(1000);
}

/* len over 2 GiB (sendfile moves less per call). Slow (GiBs of hashing): only with
 * MLCDN_TEST_HUGE=1. */
static void test_huge_len(void **state)
{
    (void)state;
    if (!getenv("MLCDN_TEST_HUGE"))
        skip();
    srv_start(60000);
    cli_open(&cl, 0);
    get_check(&cl, "far", fd_far, FAR_BASE - 2048 * MIB - 100, 2048 * MIB + 100 + 9000, "end", 0);
    cli_close(&cl);
    wait_all_done();
    srv_stop(1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_and_head),   cmocka_unit_test(test_big_slow_reader),
        cmocka_unit_test(test_ranges_keepalive), cmocka_unit_test(test_pipelined_after_file),
        cmocka_unit_test(test_client_abort),     cmocka_unit_test(test_send_timeout),
        cmocka_unit_test(test_stop_mid_send),    cmocka_unit_test(test_short_file),
        cmocka_unit_test(test_sendfile_fails),   cmocka_unit_test(test_huge_len),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, setup, teardown);
}
