/* tests/unit/edge/test_edge_redis.c: the Redis shared tier against a real redis-server.
 *
 * A redis-server is started on a free port from a temp dir (fork+exec, stopped by PID);
 * the tests drive a uv loop by hand. Covered: URL parsing and errors, put/get round trip,
 * misses, PX expiry, size limits, primary-key mismatch, foreign and oversized values,
 * sealed values (every flip and cut refused; damaged values missed, counted, logged once and
 * deleted only while unchanged, left alone when scripts are refused), DEL, AUTH and SELECT, host names and [::1], two loops on two threads, finalising with
 * GETs in flight, and the breaker: a stopped server (SIGSTOP) answers within the deadline
 * and trips it, calls are then skipped, a killed and restarted server closes it again.
 * Timing asserts are loose (< 1 s); the suite skips when redis-server is not installed.
 * The .c is included to reach the connection state and the key hashing. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../../src/edge/edge_redis.c"

static pid_t g_pid = -1;
static int g_port;
static char g_dir[] = "/tmp/mlcdn-redis-XXXXXX";
static int g_have_redis;

/* ---- the server ---- */

static int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static int tcp_probe(int family, int port)
{
    struct sockaddr_storage ss = {0};
    socklen_t sl;
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sl = sizeof(*a);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        a->sin6_addr = in6addr_loopback;
        sl = sizeof(*a);
    }
    int fd = socket(family, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    int rc = connect(fd, (struct sockaddr *)&ss, sl);
    close(fd);
    return rc;
}

static uint64_t now_ms(void)
{
    return units_now_ms();
}

static void start_redis(void)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", g_port);
    g_pid = fork();
    assert_true(g_pid >= 0);
    if (g_pid == 0) {
        if (chdir(g_dir) != 0)
            _exit(126);
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2);
        /* "-::1": listen on the IPv6 loopback too when the host has one. */
        execlp("redis-server", "redis-server", "--port", port, "--save", "", "--appendonly", "no",
               "--daemonize", "no", "--bind", "127.0.0.1", "-::1", (char *)NULL);
        _exit(127);
    }
    for (uint64_t end = now_ms() + 10000; now_ms() < end; usleep(10000)) {
        int st;
        if (waitpid(g_pid, &st, WNOHANG) == g_pid)
            fail_msg("redis-server exited at start (status %d)", st);
        if (tcp_probe(AF_INET, g_port) == 0)
            return;
    }
    fail_msg("redis-server did not listen on %d", g_port);
}

/* kill() only queues the signal: wait until the server really stopped (or runs again), or
 * on a loaded host it could still answer what the test sends next. */
static void stop_redis(void)
{
    int st;
    kill(g_pid, SIGSTOP);
    assert_int_equal(waitpid(g_pid, &st, WUNTRACED), g_pid);
    assert_true(WIFSTOPPED(st));
}

static void cont_redis(void)
{
    int st;
    kill(g_pid, SIGCONT);
    assert_int_equal(waitpid(g_pid, &st, WCONTINUED), g_pid);
    assert_true(WIFCONTINUED(st));
}

static void kill_redis(void)
{
    if (g_pid > 0) {
        kill(g_pid, SIGKILL);
        waitpid(g_pid, NULL, 0);
        g_pid = -1;
    }
}

/* A plain blocking client for setting things up behind the tier's back. */
static redisContext *sync_client(void)
{
    struct timeval tv = {2, 0};
    redisContext *s = redisConnectWithTimeout("127.0.0.1", g_port, tv);
    assert_non_null(s);
    assert_int_equal(s->err, 0);
    return s;
}

static void sync_cmd_ok(redisContext *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(s, fmt, ap);
    va_end(ap);
    assert_non_null(rep);
    assert_int_not_equal(rep->type, REDIS_REPLY_ERROR);
    freeReplyObject(rep);
}

static int group_setup(void **state)
{
    (void)state;
    if (system("command -v redis-server >/dev/null 2>&1") != 0) {
        fprintf(stderr, "test_edge_redis: redis-server is not installed; skipping the Redis "
                        "tests (apt-get install redis-server)\n");
        return 0;
    }
    if (!mkdtemp(g_dir))
        return -1;
    g_port = free_port();
    start_redis();
    g_have_redis = 1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (g_pid > 0)
        kill(g_pid, SIGCONT);
    kill_redis();
    if (g_have_redis) {
        char path[128];
        snprintf(path, sizeof(path), "%s/dump.rdb", g_dir);
        unlink(path);
        rmdir(g_dir);
    }
    return 0;
}

#define NEED_REDIS()                                                                               \
    do {                                                                                           \
        if (!g_have_redis)                                                                         \
            skip();                                                                                \
    } while (0)

/* ---- the loop side ---- */

struct fx {
    uv_loop_t loop;
    struct edge_redis *r;
    struct edge_redis_conn *c;
};

static void spin_ms(uv_loop_t *loop, uint64_t ms)
{
    for (uint64_t end = now_ms() + ms; now_ms() < end; usleep(1000))
        uv_run(loop, UV_RUN_NOWAIT);
}

static int wait_up(struct fx *f, uint64_t ms)
{
    for (uint64_t end = now_ms() + ms; now_ms() < end; usleep(1000)) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        if (f->c->state == C_UP)
            return 1;
    }
    return 0;
}

static void fx_open(struct fx *f, const char *url, uint64_t max_object, uint64_t timeout_ms)
{
    char err[256];
    char u[256];
    if (!url) {
        snprintf(u, sizeof(u), "redis://127.0.0.1:%d", g_port);
        url = u;
    }
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(edge__redis_new(url, max_object, timeout_ms, &f->r, err, sizeof(err)), 0);
    f->c = edge__redis_loop_init(f->r, &f->loop);
    assert_non_null(f->c);
}

static void fx_close(struct fx *f)
{
    edge__redis_loop_fini(&f->c);
    assert_null(f->c);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    edge__redis_free(&f->r);
    assert_null(f->r);
}

/* GET deadline for tests that count every answer: the default (50 ms) may pass on a
 * loaded host, and a timeout is an error and a reconnect, not the outcome under test. */
#define SLOW_HOST_MS 2000

struct res {
    int done;
    int in_call; /* set around edge__redis_get(): the callback must not see it */
    struct cache_obj *o;
    char key[256];
    uint64_t t0, t1;
};

static void res_cb(void *arg, struct cache_obj *o, const char *pkey, size_t plen)
{
    struct res *rs = arg;
    assert_false(rs->in_call);
    assert_int_equal(plen, strlen(rs->key));
    assert_memory_equal(pkey, rs->key, plen);
    rs->done++;
    rs->o = o;
    rs->t1 = now_ms();
}

static void get_start(struct fx *f, struct res *rs, const char *key)
{
    memset(rs, 0, sizeof(*rs));
    snprintf(rs->key, sizeof(rs->key), "%s", key);
    rs->t0 = now_ms();
    rs->in_call = 1;
    edge__redis_get(f->c, key, strlen(key), res_cb, rs);
    rs->in_call = 0;
    assert_int_equal(rs->done, 0); /* never answered inside the call */
}

static void get_wait(struct fx *f, struct res *rs)
{
    for (uint64_t end = now_ms() + 3000; !rs->done && now_ms() < end; usleep(200))
        uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(rs->done, 1);
}

static struct cache_obj *get_sync(struct fx *f, const char *key)
{
    struct res rs;
    get_start(f, &rs, key);
    get_wait(f, &rs);
    return rs.o;
}

static struct edge_redis_stats stats(struct fx *f)
{
    struct edge_redis_stats s;
    edge__redis_stats(f->r, &s);
    return s;
}

static const char HDRS[] = "Content-Type: text/plain\r\nCache-Control: max-age=60\r\n"
                           "ETag: \"v1\"\r\nVary: Accept-Encoding\r\n";

static struct cache_obj *mkobj(const char *body, size_t n)
{
    struct cache_obj *o = cache_obj_new(200, mc_xstrdup(HDRS), strlen(HDRS),
                                        cache_body_from(body, n));
    free(o->vkey);
    o->vkey = mc_xstrdup("\naccept-encoding:gzip");
    o->vkey_len = strlen(o->vkey);
    o->vary = mc_xstrdup("accept-encoding");
    o->request_time = 1700000000;
    o->response_time = 1700000001;
    o->lifetime = 60;
    return o;
}

static void assert_body(const struct cache_obj *o, const char *body, size_t n)
{
    struct cache_body_cursor cur;
    const char *span;
    size_t k, at = 0;
    assert_non_null(o->body);
    assert_int_equal(cache_body_state(o->body), CACHE_BODY_COMPLETE);
    assert_int_equal(cache_body_len(o->body), n);
    cache_body_cursor_init(&cur, o->body);
    while ((k = cache_body_next(&cur, o->body, n, SIZE_MAX, &span)) > 0) {
        assert_true(at + k <= n);
        assert_memory_equal(span, body + at, k);
        at += k;
    }
    assert_int_equal(at, n);
}

/* ---- tests ---- */

static void test_url(void **state)
{
    struct edge_redis *r = NULL;
    char err[256];
    (void)state;

    assert_int_equal(edge__redis_new("redis://10.1.2.3:7000/3", 0, 0, &r, err, sizeof(err)), 0);
    assert_string_equal(r->host, "10.1.2.3");
    assert_true(r->host_is_ip);
    assert_int_equal(r->port, 7000);
    assert_int_equal(r->db, 3);
    assert_null(r->pass);
    assert_int_equal(r->timeout_ms, EDGE_REDIS_TIMEOUT_DEFAULT_MS);
    assert_int_equal(r->max_object, EDGE_REDIS_MAX_OBJECT_DEFAULT);
    assert_string_equal(edge__redis_state(r), "closed");
    edge__redis_free(&r);

    assert_int_equal(edge__redis_new("redis://[::1]:6380", 10, 20, &r, err, sizeof(err)), 0);
    assert_string_equal(r->host, "::1");
    assert_true(r->host_is_ip);
    assert_int_equal(r->port, 6380);
    assert_int_equal(r->timeout_ms, 20);
    assert_int_equal(r->max_object, 10);
    edge__redis_free(&r);

    assert_int_equal(edge__redis_new("redis://:p%40ss@cache.example:6379/", 0, 0, &r, err,
                                     sizeof(err)),
                     0);
    assert_string_equal(r->host, "cache.example");
    assert_false(r->host_is_ip);
    assert_null(r->user);
    assert_string_equal(r->pass, "p@ss");
    assert_int_equal(r->db, 0);
    edge__redis_free(&r);

    assert_int_equal(edge__redis_new("redis://bob:pw@localhost", 0, 0, &r, err, sizeof(err)), 0);
    assert_string_equal(r->user, "bob");
    assert_string_equal(r->pass, "pw");
    assert_int_equal(r->port, 6379);
    edge__redis_free(&r);

    static const char *const bad[] = {
        "http://h:1",      "redis://",         "redis://:1",       "redis://h:0",
        "redis://h:65536", "redis://h:x",      "redis://h:1/x",    "redis://[::1",
        "redis://[zz]:1",  "redis://::1:6379", "redis://h:1?db=1", "redis://u@h:1",
        "redis://:@h:1",   "redis://:%4@h:1",  "rediss://h:1",     "redis://h h:1",
    };
    for (size_t i = 0; i < MC_ARRAY_SIZE(bad); i++) {
        err[0] = '\0';
        assert_int_equal(edge__redis_new(bad[i], 0, 0, &r, err, sizeof(err)), -EINVAL);
        assert_null(r);
        if (!strchr(bad[i], '@'))
            assert_non_null(strstr(err, bad[i]));
    }
    assert_int_equal(edge__redis_new(NULL, 0, 0, &r, err, sizeof(err)), -EINVAL);
    /* The message names the URL but never shows the password. */
    assert_int_equal(edge__redis_new("redis://:hunter2@h:1/x", 0, 0, &r, err, sizeof(err)),
                     -EINVAL);
    assert_null(strstr(err, "hunter2"));
    assert_non_null(strstr(err, "redis://:***@h:1/x"));
}

static void test_roundtrip(void **state)
{
    struct fx f;
    struct res rs;
    static const char body[] = "hello from the shared tier";
    (void)state;
    NEED_REDIS();

    fx_open(&f, NULL, 0, 0);
    /* Right after init the connection is not up yet: skipped at once, answered later. */
    get_start(&f, &rs, "h/rt");
    get_wait(&f, &rs);
    assert_null(rs.o);
    assert_int_equal(stats(&f).skipped_down, 1);
    assert_true(wait_up(&f, 2000));

    struct cache_obj *o = mkobj(body, sizeof(body) - 1);
    edge__redis_put(f.c, "h/rt", 4, o, 60000);
    struct cache_obj *g = get_sync(&f, "h/rt");
    assert_non_null(g);
    assert_int_equal(g->status, 200);
    assert_int_equal(g->hdrs_len, o->hdrs_len);
    assert_memory_equal(g->hdrs, o->hdrs, o->hdrs_len);
    assert_int_equal(g->vkey_len, o->vkey_len);
    assert_memory_equal(g->vkey, o->vkey, o->vkey_len);
    assert_string_equal(g->vary, "accept-encoding");
    assert_int_equal(g->lifetime, 60);
    assert_int_equal(g->request_time, o->request_time);
    assert_int_equal(g->response_time, o->response_time);
    assert_body(g, body, sizeof(body) - 1);
    cache_obj_unref(&g);

    /* Empty body and a long key (the Redis key stays short: it is a hash). */
    char key[200];
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    struct cache_obj *e = mkobj("", 0);
    edge__redis_put(f.c, key, strlen(key), e, 60000);
    g = get_sync(&f, key);
    assert_non_null(g);
    assert_body(g, "", 0);
    cache_obj_unref(&g);

    /* Skipped puts: no ttl, incomplete body. */
    edge__redis_put(f.c, "h/nottl", 7, e, 0);
    struct cache_obj *filling = cache_obj_new(200, NULL, 0, cache_body_new(-1));
    edge__redis_put(f.c, "h/filling", 9, filling, 60000);
    assert_null(get_sync(&f, "h/nottl"));
    assert_null(get_sync(&f, "h/filling"));

    struct edge_redis_stats s = stats(&f);
    assert_int_equal(s.hits, 2);
    assert_int_equal(s.stores, 2);
    assert_int_equal(s.misses, 2);
    assert_int_equal(s.errors, 0);
    cache_obj_unref(&o);
    cache_obj_unref(&e);
    cache_obj_unref(&filling);
    fx_close(&f);
}

static void test_unknown_key(void **state)
{
    struct fx f;
    (void)state;
    NEED_REDIS();

    fx_open(&f, NULL, 0, 0);
    assert_true(wait_up(&f, 2000));
    assert_null(get_sync(&f, "h/never-stored"));
    assert_int_equal(stats(&f).misses, 1);
    assert_int_equal(stats(&f).hits, 0);
    fx_close(&f);
}

static void test_expiry(void **state)
{
    struct fx f;
    (void)state;
    NEED_REDIS();

    fx_open(&f, NULL, 0, 0);
    assert_true(wait_up(&f, 2000));
    struct cache_obj *o = mkobj("short-lived", 11);
    edge__redis_put(f.c, "h/ttl", 5, o, 400);
    struct cache_obj *g = get_sync(&f, "h/ttl");
    assert_non_null(g);
    cache_obj_unref(&g);
    spin_ms(&f.loop, 800);
    assert_null(get_sync(&f, "h/ttl"));
    cache_obj_unref(&o);
    fx_close(&f);
}

static void test_large_not_stored(void **state)
{
    struct fx f;
    char big[2048];
    (void)state;
    NEED_REDIS();

    memset(big, 'b', sizeof(big));
    fx_open(&f, NULL, 1024, 0);
    assert_true(wait_up(&f, 2000));
    struct cache_obj *o = mkobj(big, sizeof(big));
    edge__redis_put(f.c, "h/big", 5, o, 60000);
    assert_int_equal(stats(&f).store_skipped_large, 1);
    assert_null(get_sync(&f, "h/big"));
    cache_obj_unref(&o);
    /* Exactly the limit is stored. */
    o = mkobj(big, 1024);
    edge__redis_put(f.c, "h/limit", 7, o, 60000);
    struct cache_obj *g = get_sync(&f, "h/limit");
    assert_non_null(g);
    assert_body(g, big, 1024);
    cache_obj_unref(&g);
    cache_obj_unref(&o);
    assert_int_equal(stats(&f).stores, 1);
    fx_close(&f);
}

/* A value as edge__redis_put() writes it: frame, metadata stored under pkey, body. */
static void seal_value(struct buf *v, const char *pkey, const struct cache_obj *o, const char *body,
                       size_t n)
{
    static const char frame[CACHE_SEAL_LEN];
    v->len = 0;
    assert_int_equal(buf_append(v, frame, sizeof(frame)), 0);
    assert_int_equal(cache_pack_meta(v, pkey, strlen(pkey), o), 0);
    assert_int_equal(buf_append(v, body, n), 0);
    cache_pack_seal(v->data, v->len - CACHE_SEAL_LEN);
}

static long long sync_exists(redisContext *s, const char *k)
{
    redisReply *rep = redisCommand(s, "EXISTS %b", k, RKEY_LEN);
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
    long long n = rep->integer;
    freeReplyObject(rep);
    return n;
}

/* Runs the loop until the value under k is gone (the drop of a bad value is async). */
static void wait_gone(struct fx *f, redisContext *s, const char *k)
{
    for (uint64_t end = now_ms() + 3000; now_ms() < end; usleep(500)) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        if (sync_exists(s, k) == 0)
            return;
    }
    fail_msg("the bad value was not deleted");
}

/* Runs the loop until every drop this loop sent was answered. */
static void wait_drops(struct fx *f)
{
    for (uint64_t end = now_ms() + 3000; now_ms() < end; usleep(500)) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        int pending = 0;
        for (int i = 0; i < BAD_SEEN; i++)
            pending |= f->c->bad_seen[i] != 0;
        if (!pending)
            return;
    }
    fail_msg("a drop was not answered");
}

/* Values written behind the tier's back: another key's object under our hash, bytes that
 * are no value of ours, a value longer than the read cap, and one longer than its frame
 * says. */
static void test_foreign_values(void **state)
{
    struct fx f;
    char k[RKEY_LEN];
    struct buf v;
    (void)state;
    NEED_REDIS();

    fx_open(&f, NULL, 1024, SLOW_HOST_MS);
    assert_true(wait_up(&f, 2000));
    redisContext *s = sync_client();

    struct cache_obj *o = mkobj("other", 5);
    buf_init(&v, 4 << 20);
    seal_value(&v, "h/other", o, "other", 5);
    rkey("h/mine", 6, k);
    sync_cmd_ok(s, "SET %b %b", k, RKEY_LEN, v.data, v.len);
    assert_null(get_sync(&f, "h/mine"));
    assert_int_equal(stats(&f).misses, 1);
    assert_int_equal(sync_exists(s, k), 1); /* a sound value: someone else's, left alone */
    /* Same bytes under the right hash are a hit: only the key made the difference. */
    rkey("h/other", 7, k);
    sync_cmd_ok(s, "SET %b %b", k, RKEY_LEN, v.data, v.len);
    struct cache_obj *g = get_sync(&f, "h/other");
    assert_non_null(g);
    assert_body(g, "other", 5);
    cache_obj_unref(&g);
    /* A key that is a prefix of the stored one is no match either. */
    rkey("h/othe", 6, k);
    sync_cmd_ok(s, "SET %b %b", k, RKEY_LEN, v.data, v.len);
    assert_null(get_sync(&f, "h/othe"));
    assert_int_equal(stats(&f).corrupt, 0);

    rkey("h/garbage", 9, k);
    sync_cmd_ok(s, "SET %b %s", k, RKEY_LEN, "not an object, and longer than a frame");
    assert_null(get_sync(&f, "h/garbage"));
    assert_int_equal(stats(&f).corrupt, 1);
    wait_gone(&f, s, k);

    /* A sound frame declaring more than META_MAX + max_object (an edge with a larger
     * --redis-max-object wrote it): GETRANGE reads one byte past the cap, no more, and the
     * value is neither ours to serve nor to delete. */
    size_t n = META_MAX + 1024 + 4096;
    char *huge = calloc(1, n);
    seal_value(&v, "h/huge", o, huge, n);
    rkey("h/huge", 6, k);
    sync_cmd_ok(s, "SET %b %b", k, RKEY_LEN, v.data, v.len);
    assert_null(get_sync(&f, "h/huge"));
    assert_int_equal(stats(&f).errors, 1);
    assert_int_equal(stats(&f).corrupt, 1);
    spin_ms(&f.loop, 50);
    assert_int_equal(sync_exists(s, k), 1);
    /* A short value with junk after it up to past the cap: its frame gives it away. */
    seal_value(&v, "h/other", o, "other", 5);
    memcpy(huge, v.data, v.len);
    rkey("h/other", 7, k);
    sync_cmd_ok(s, "SET %b %b", k, RKEY_LEN, huge, n);
    assert_null(get_sync(&f, "h/other"));
    assert_int_equal(stats(&f).errors, 1);
    assert_int_equal(stats(&f).corrupt, 2);
    wait_gone(&f, s, k);
    assert_int_equal(stats(&f).breaker_open, 0); /* bad values say nothing of Redis' health */
    free(huge);

    buf_fini(&v);
    cache_obj_unref(&o);
    redisFree(s);
    fx_close(&f);
}

/* Encode/verify without a server: a good value round-trips; every single-byte change
 * (three patterns per byte), every truncation and every extension is refused. */
static void test_value_decode(void **state)
{
    struct buf v;
    struct cache_obj *g = NULL;
    const char *why;
    char body[600];
    (void)state;

    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = (char)(i * 7 + 3);
    struct cache_obj *o = mkobj(body, sizeof(body));
    buf_init(&v, 1 << 20);
    seal_value(&v, "h/dec", o, body, sizeof(body));
    uint64_t cap = CACHE_SEAL_LEN + META_MAX + 1024;
    assert_int_equal(edge__redis_value_decode(v.data, v.len, cap, "h/dec", 5, &g, &why), 0);
    assert_body(g, body, sizeof(body));
    assert_int_equal(g->hdrs_len, o->hdrs_len);
    assert_memory_equal(g->hdrs, o->hdrs, o->hdrs_len);
    assert_int_equal(g->response_time, o->response_time);
    cache_obj_unref(&g);

    char *c = malloc(v.len + 1);
    static const uint8_t masks[] = {0x01, 0x80, 0xff};
    for (size_t i = 0; i < v.len; i++) {
        for (size_t m = 0; m < sizeof(masks); m++) {
            memcpy(c, v.data, v.len);
            c[i] = (char)(c[i] ^ masks[m]);
            why = NULL;
            assert_int_equal(edge__redis_value_decode(c, v.len, cap, "h/dec", 5, &g, &why),
                             -EBADMSG);
            assert_null(g);
            assert_non_null(why);
        }
    }
    assert_int_equal(edge__redis_value_decode(v.data, 0, cap, "h/dec", 5, &g, &why), -ENOENT);
    for (size_t n = 1; n < v.len; n++)
        assert_int_equal(edge__redis_value_decode(v.data, n, cap, "h/dec", 5, &g, &why), -EBADMSG);
    memcpy(c, v.data, v.len);
    c[v.len] = 'x';
    assert_int_equal(edge__redis_value_decode(c, v.len + 1, cap, "h/dec", 5, &g, &why), -EBADMSG);
    assert_string_equal(why, "longer than its declared length");
    assert_null(g);
    /* The format before values were sealed (metadata then body, no frame). */
    assert_int_equal(edge__redis_value_decode(v.data + CACHE_SEAL_LEN, v.len - CACHE_SEAL_LEN, cap,
                                              "h/dec", 5, &g, &why),
                     -EBADMSG);
    /* A sound value read only up to a cap it exceeds. */
    assert_int_equal(edge__redis_value_decode(v.data, 100, 99, "h/dec", 5, &g, &why), -EFBIG);
    free(c);
    buf_fini(&v);
    cache_obj_unref(&o);
}

/* Temporarily sends stderr to a file, to count the tier's log lines. */
struct cap {
    int saved;
    char path[64];
};

static void cap_start(struct cap *cp)
{
    snprintf(cp->path, sizeof(cp->path), "%s/stderr.log", g_dir);
    int fd = open(cp->path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    fflush(stderr);
    cp->saved = dup(2);
    assert_true(cp->saved >= 0);
    dup2(fd, 2);
    close(fd);
}

/* Restores stderr; returns how many lines contained `what`. */
static int cap_end(struct cap *cp, const char *what)
{
    char line[1024];
    int n = 0;
    fflush(stderr);
    dup2(cp->saved, 2);
    close(cp->saved);
    FILE *fp = fopen(cp->path, "r");
    assert_non_null(fp);
    while (fgets(line, sizeof(line), fp))
        n += strstr(line, what) != NULL;
    fclose(fp);
    unlink(cp->path);
    return n;
}

/* Damage done to a value the tier wrote: each kind is a miss, counted, logged once and
 * deleted; a put afterwards is served again. Every flip and cut of that very value is
 * refused by the decoder too. */
static void test_corrupt_values(void **state)
{
    struct fx f;
    struct cap cp;
    char k[RKEY_LEN], body[3000];
    (void)state;
    NEED_REDIS();

    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = (char)('a' + i % 26);
    fx_open(&f, NULL, 0, SLOW_HOST_MS);
    assert_true(wait_up(&f, 2000));
    redisContext *s = sync_client();
    struct cache_obj *o = mkobj(body, sizeof(body));
    edge__redis_put(f.c, "h/bad", 5, o, 60000);
    struct cache_obj *g = get_sync(&f, "h/bad");
    assert_non_null(g);
    cache_obj_unref(&g);
    rkey("h/bad", 5, k);
    redisReply *rep = redisCommand(s, "GET %b", k, RKEY_LEN);
    assert_int_equal(rep->type, REDIS_REPLY_STRING);
    size_t len = rep->len;
    char *good = malloc(len + 1), *bad = malloc(len + 1);
    memcpy(good, rep->str, len);
    freeReplyObject(rep);

    const char *why;
    for (size_t i = 0; i < len; i++) {
        memcpy(bad, good, len);
        bad[i] = (char)(bad[i] ^ 0x10);
        assert_int_equal(edge__redis_value_decode(bad, len, f.r->value_cap, "h/bad", 5, &g, &why),
                         -EBADMSG);
    }
    for (size_t n = 1; n < len; n++)
        assert_int_equal(edge__redis_value_decode(good, n, f.r->value_cap, "h/bad", 5, &g, &why),
                         -EBADMSG);

    struct {
        const char *what;
        size_t at;  /* byte flipped, or SIZE_MAX */
        size_t len; /* bytes kept (or, above len, written with 'x' after) */
    } cases[] = {
        {"flip in the frame's checksum", 10, len},
        {"flip in the version", 4, len},
        {"flip in the metadata", CACHE_SEAL_LEN + 40, len},
        {"flip in the body", len - 1, len},
        {"cut inside the body", SIZE_MAX, len - 100},
        {"cut inside the frame", SIZE_MAX, 10},
        {"extended", SIZE_MAX, len + 1},
        {"unsealed, the older format", SIZE_MAX, 0},
    };
    uint64_t corrupt = 0;
    for (size_t i = 0; i < MC_ARRAY_SIZE(cases); i++) {
        const char *v = bad;
        size_t n = cases[i].len;
        memcpy(bad, good, len);
        bad[len] = 'x';
        if (cases[i].at != SIZE_MAX)
            bad[cases[i].at] = (char)(bad[cases[i].at] ^ 0x01);
        if (n == 0) {
            v = good + CACHE_SEAL_LEN;
            n = len - CACHE_SEAL_LEN;
        }
        sync_cmd_ok(s, "SET %b %b", k, RKEY_LEN, v, n);
        cap_start(&cp);
        g = get_sync(&f, "h/bad");
        wait_gone(&f, s, k);
        int lines = cap_end(&cp, "redis value corrupt");
        if (g)
            fail_msg("%s: served", cases[i].what);
        assert_int_equal(stats(&f).corrupt, ++corrupt);
        assert_int_equal(lines, 1);
        /* The refetch's put makes the object good again. */
        edge__redis_put(f.c, "h/bad", 5, o, 60000);
        g = get_sync(&f, "h/bad");
        assert_non_null(g);
        assert_body(g, body, sizeof(body));
        cache_obj_unref(&g);
    }

    /* Two GETs queued behind each other both see one bad value: both miss and count, one
     * line is logged and one drop sent. */
    memcpy(bad, good, len);
    bad[len / 2] ^= 0x01;
    sync_cmd_ok(s, "SET %b %b", k, RKEY_LEN, bad, len);
    struct res r1, r2;
    cap_start(&cp);
    get_start(&f, &r1, "h/bad");
    get_start(&f, &r2, "h/bad");
    get_wait(&f, &r1);
    get_wait(&f, &r2);
    wait_gone(&f, s, k);
    wait_drops(&f);
    assert_int_equal(cap_end(&cp, "redis value corrupt"), 1);
    assert_null(r1.o);
    assert_null(r2.o);
    corrupt += 2;
    assert_int_equal(stats(&f).corrupt, corrupt);
    assert_int_equal(stats(&f).errors, 0);
    assert_int_equal(stats(&f).misses, 0);
    assert_int_equal(stats(&f).breaker_open, 0);

    free(good);
    free(bad);
    cache_obj_unref(&o);
    redisFree(s);
    fx_close(&f);
}

/* The delete of a bad value is conditional: a value that changed since it was read (another
 * edge's good copy) stays. */
static void test_drop_is_conditional(void **state)
{
    struct fx f;
    char k[RKEY_LEN];
    static const char stale[] = "the bad bytes this loop read";
    (void)state;
    NEED_REDIS();

    fx_open(&f, NULL, 0, SLOW_HOST_MS);
    assert_true(wait_up(&f, 2000));
    redisContext *s = sync_client();
    struct cache_obj *o = mkobj("fresh", 5);
    edge__redis_put(f.c, "h/cond", 6, o, 60000);
    struct cache_obj *g = get_sync(&f, "h/cond");
    assert_non_null(g);
    cache_obj_unref(&g);
    rkey("h/cond", 6, k);

    /* Redis now holds a good value, not the bytes "read": nothing is deleted. */
    bad_value(f.c, "h/cond", 6, stale, sizeof(stale) - 1, "test");
    wait_drops(&f);
    assert_int_equal(sync_exists(s, k), 1);
    g = get_sync(&f, "h/cond");
    assert_non_null(g);
    assert_body(g, "fresh", 5);
    cache_obj_unref(&g);
    /* Holding exactly those bytes, it is. */
    sync_cmd_ok(s, "SET %b %b", k, RKEY_LEN, stale, sizeof(stale) - 1);
    bad_value(f.c, "h/cond", 6, stale, sizeof(stale) - 1, "test");
    wait_gone(&f, s, k);
    wait_drops(&f);
    assert_int_equal(stats(&f).corrupt, 2);
    cache_obj_unref(&o);
    redisFree(s);
    fx_close(&f);
}

/* A server that refuses scripts (ACL): the bad value stays until overwritten, every GET
 * of it is still a counted miss, and it is logged once, not once per GET. */
static void test_drop_refused(void **state)
{
    struct fx f;
    struct cap cp;
    char url[128], k[RKEY_LEN];
    static const char junk[] = "junk that is longer than a frame would be";
    (void)state;
    NEED_REDIS();

    redisContext *s = sync_client();
    sync_cmd_ok(s, "ACL SETUSER noscript on >pw ~* +@all -@scripting");
    snprintf(url, sizeof(url), "redis://noscript:pw@127.0.0.1:%d", g_port);
    fx_open(&f, url, 0, SLOW_HOST_MS);
    assert_true(wait_up(&f, 2000));
    rkey("h/refused", 9, k);
    sync_cmd_ok(s, "SET %b %b", k, RKEY_LEN, junk, sizeof(junk) - 1);
    cap_start(&cp);
    for (int i = 0; i < 3; i++) {
        assert_null(get_sync(&f, "h/refused"));
        spin_ms(&f.loop, 20);
    }
    int corrupt_lines = cap_end(&cp, "redis value corrupt");
    assert_int_equal(corrupt_lines, 1);
    assert_int_equal(stats(&f).corrupt, 3);
    assert_int_equal(sync_exists(s, k), 1);
    assert_int_equal(stats(&f).breaker_open, 0);
    /* The refetch's put replaces it. */
    struct cache_obj *o = mkobj("good", 4);
    edge__redis_put(f.c, "h/refused", 9, o, 60000);
    struct cache_obj *g = get_sync(&f, "h/refused");
    assert_non_null(g);
    cache_obj_unref(&g);
    fx_close(&f);
    sync_cmd_ok(s, "ACL DELUSER noscript");
    redisFree(s);
    cache_obj_unref(&o);
}

static void test_del(void **state)
{
    struct fx f;
    (void)state;
    NEED_REDIS();

    fx_open(&f, NULL, 0, 0);
    /* Not connected yet: the DEL is lost and counted. */
    edge__redis_del(f.c, "h/del", 5);
    assert_int_equal(stats(&f).del_failed, 1);
    assert_true(wait_up(&f, 2000));
    struct cache_obj *o = mkobj("x", 1);
    edge__redis_put(f.c, "h/del", 5, o, 60000);
    struct cache_obj *g = get_sync(&f, "h/del");
    assert_non_null(g);
    cache_obj_unref(&g);
    edge__redis_del(f.c, "h/del", 5);
    assert_null(get_sync(&f, "h/del"));
    assert_int_equal(stats(&f).del_failed, 1);
    cache_obj_unref(&o);
    fx_close(&f);
}

static void test_auth_and_db(void **state)
{
    struct fx f;
    char url[256], k[RKEY_LEN];
    (void)state;
    NEED_REDIS();

    redisContext *s = sync_client();
    sync_cmd_ok(s, "CONFIG SET requirepass %s", "s3cr:t");

    /* Wrong password: the handshake fails, calls are skipped, never an error to the caller. */
    snprintf(url, sizeof(url), "redis://:nope@127.0.0.1:%d", g_port);
    fx_open(&f, url, 0, 0);
    assert_false(wait_up(&f, 300));
    assert_null(get_sync(&f, "h/auth"));
    assert_true(stats(&f).errors >= 1);
    fx_close(&f);

    /* Right password (%-encoded ':'), database 2. */
    snprintf(url, sizeof(url), "redis://:s3cr%%3at@127.0.0.1:%d/2", g_port);
    fx_open(&f, url, 0, 0);
    assert_true(wait_up(&f, 2000));
    struct cache_obj *o = mkobj("in db 2", 7);
    edge__redis_put(f.c, "h/auth", 6, o, 60000);
    struct cache_obj *g = get_sync(&f, "h/auth");
    assert_non_null(g);
    cache_obj_unref(&g);
    fx_close(&f);

    /* The ACL form user:password. */
    snprintf(url, sizeof(url), "redis://default:s3cr%%3at@127.0.0.1:%d/2", g_port);
    fx_open(&f, url, 0, 0);
    assert_true(wait_up(&f, 2000));
    g = get_sync(&f, "h/auth");
    assert_non_null(g);
    cache_obj_unref(&g);
    fx_close(&f);

    sync_cmd_ok(s, "AUTH %s", "s3cr:t");
    rkey("h/auth", 6, k);
    redisReply *rep = redisCommand(s, "EXISTS %b", k, RKEY_LEN);
    assert_int_equal(rep->integer, 0); /* not in db 0 */
    freeReplyObject(rep);
    sync_cmd_ok(s, "SELECT 2");
    rep = redisCommand(s, "EXISTS %b", k, RKEY_LEN);
    assert_int_equal(rep->integer, 1);
    freeReplyObject(rep);
    sync_cmd_ok(s, "CONFIG SET requirepass %s", "");
    redisFree(s);
    cache_obj_unref(&o);
}

static void test_hostname_and_ipv6(void **state)
{
    struct fx f;
    char url[256];
    (void)state;
    NEED_REDIS();

    /* A name goes through uv_getaddrinfo; localhost may be ::1 or 127.0.0.1. */
    snprintf(url, sizeof(url), "redis://localhost:%d", g_port);
    fx_open(&f, url, 0, 0);
    assert_int_equal(f.c->state, C_RESOLVING);
    assert_true(wait_up(&f, 3000));
    struct cache_obj *o = mkobj("named", 5);
    edge__redis_put(f.c, "h/name", 6, o, 60000);
    struct cache_obj *g = get_sync(&f, "h/name");
    assert_non_null(g);
    cache_obj_unref(&g);
    fx_close(&f);

    if (tcp_probe(AF_INET6, g_port) == 0) {
        snprintf(url, sizeof(url), "redis://[::1]:%d", g_port);
        fx_open(&f, url, 0, 0);
        assert_true(wait_up(&f, 2000));
        g = get_sync(&f, "h/name");
        assert_non_null(g);
        cache_obj_unref(&g);
        fx_close(&f);
    } else {
        fprintf(stderr, "test_edge_redis: no IPv6 loopback, [::1] not tested\n");
    }
    cache_obj_unref(&o);
}

/* Two loops on two threads share one tier (and its counters and breaker). */
struct th {
    struct edge_redis *r;
    int id;
    int answers, hits;
    int loop_closed;
};

static void th_cb(void *arg, struct cache_obj *o, const char *pkey, size_t plen)
{
    struct th *t = arg;
    (void)pkey;
    (void)plen;
    t->answers++;
    if (o)
        t->hits++;
    cache_obj_unref(&o);
}

static void *th_main(void *arg)
{
    struct th *t = arg;
    struct fx f;
    char key[64];

    uv_loop_init(&f.loop);
    f.r = t->r;
    f.c = edge__redis_loop_init(t->r, &f.loop);
    /* No cmocka asserts off the main thread: results go back through t. */
    if (wait_up(&f, 2000)) {
        struct cache_obj *o = mkobj("threaded", 8);
        for (int i = 0; i < 50; i++) {
            snprintf(key, sizeof(key), "h/th%d/%d", t->id, i);
            edge__redis_put(f.c, key, strlen(key), o, 60000);
            edge__redis_get(f.c, key, strlen(key), th_cb, t);
        }
        for (uint64_t end = now_ms() + 5000; t->answers < 50 && now_ms() < end; usleep(500))
            uv_run(&f.loop, UV_RUN_NOWAIT);
        cache_obj_unref(&o);
    }
    edge__redis_loop_fini(&f.c);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    t->loop_closed = uv_loop_close(&f.loop) == 0;
    return NULL;
}

static void test_two_threads(void **state)
{
    struct edge_redis *r;
    char url[128], err[128];
    struct th t[2] = {{0}};
    pthread_t tid[2];
    struct edge_redis_stats s;
    (void)state;
    NEED_REDIS();

    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", g_port);
    /* A generous deadline: 100 pipelined commands on a loaded (sanitizer) host. */
    assert_int_equal(edge__redis_new(url, 0, 2000, &r, err, sizeof(err)), 0);
    for (int i = 0; i < 2; i++) {
        t[i].r = r;
        t[i].id = i;
        assert_int_equal(pthread_create(&tid[i], NULL, th_main, &t[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(tid[i], NULL);
    edge__redis_stats(r, &s);
    edge__redis_free(&r);
    for (int i = 0; i < 2; i++) {
        assert_true(t[i].loop_closed);
        assert_int_equal(t[i].hits, 50);
    }
    assert_int_equal(s.hits, 100);
    assert_int_equal(s.stores, 100);
}

/* Finalising answers everything: GETs in flight on a stalled server, GETs skipped and
 * not yet delivered; then the loop has nothing left. Also while resolving/connecting. */
static void test_fini_inflight(void **state)
{
    struct fx f;
    struct res rs[6];
    char url[128];
    (void)state;
    NEED_REDIS();

    fx_open(&f, NULL, 0, 1000);
    assert_true(wait_up(&f, 2000));
    stop_redis();
    for (int i = 0; i < 5; i++)
        get_start(&f, &rs[i], "h/stalled");
    assert_non_null(f.c->inflight);
    spin_ms(&f.loop, 20); /* sent, no reply */
    assert_int_equal(rs[0].done, 0);
    f.r->state = BRK_OPEN; /* force a skip that waits in `done` */
    f.r->until_ms = now_ms() + 60000;
    get_start(&f, &rs[5], "h/skipped");
    edge__redis_loop_fini(&f.c);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(rs[i].done, 1);
        assert_null(rs[i].o);
    }
    uv_run(&f.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f.loop), 0);
    assert_int_equal(stats(&f).timeouts, 0);
    edge__redis_free(&f.r);
    cont_redis();

    /* Finalised while resolving, and while connecting. */
    snprintf(url, sizeof(url), "redis://localhost:%d", g_port);
    fx_open(&f, url, 0, 0);
    assert_int_equal(f.c->state, C_RESOLVING);
    fx_close(&f);
    fx_open(&f, NULL, 0, 0);
    assert_int_equal(f.c->state, C_CONNECTING);
    fx_close(&f);
}

/* Stopped (slow), then killed (down), then back on the same port. */
static void test_breaker(void **state)
{
    struct fx f;
    struct res rs;
    struct edge_redis_stats s;
    (void)state;
    NEED_REDIS();

    fx_open(&f, NULL, 0, 50);
    assert_true(wait_up(&f, 2000));
    struct cache_obj *o = mkobj("before", 6);
    edge__redis_put(f.c, "h/brk", 5, o, 60000);
    struct cache_obj *g = get_sync(&f, "h/brk");
    assert_non_null(g);
    cache_obj_unref(&g);

    /* Stalled: the oldest GET's deadline drops the connection, the ones queued behind it
     * are answered with it; one timeout, one failure. */
    stop_redis();
    struct res three[3];
    for (int i = 0; i < 3; i++)
        get_start(&f, &three[i], "h/brk");
    for (int i = 0; i < 3; i++) {
        get_wait(&f, &three[i]);
        assert_null(three[i].o);
        assert_true(three[i].t1 - three[i].t0 < 1000);
    }
    s = stats(&f);
    assert_int_equal(s.timeouts, 1);
    assert_int_equal(s.errors, 1);
    assert_int_equal(s.breaker_open, 0);

    /* Keep asking: every answer comes fast, and the breaker opens. */
    uint64_t end = now_ms() + 10000;
    while (!stats(&f).breaker_open && now_ms() < end) {
        get_start(&f, &rs, "h/brk");
        get_wait(&f, &rs);
        assert_null(rs.o);
        assert_true(rs.t1 - rs.t0 < 1000);
        spin_ms(&f.loop, 10);
    }
    s = stats(&f);
    assert_int_equal(s.breaker_open, 1);
    assert_int_equal(s.breaker_trips, 1);
    assert_true(s.errors >= 3);
    assert_string_equal(edge__redis_state(f.r), "open");

    /* Open: skipped at once, the server is not asked. The back-off is stretched so that
     * a slow host cannot turn one of these into the probe. */
    pthread_mutex_lock(&f.r->mtx);
    f.r->until_ms = now_ms() + 60000;
    pthread_mutex_unlock(&f.r->mtx);
    uint64_t skipped = s.skipped_open;
    for (int i = 0; i < 3; i++) {
        get_start(&f, &rs, "h/brk");
        get_wait(&f, &rs);
        assert_null(rs.o);
        assert_true(rs.t1 - rs.t0 < 1000);
    }
    assert_int_equal(stats(&f).skipped_open, skipped + 3);
    edge__redis_put(f.c, "h/brk2", 6, o, 60000); /* skipped too */
    assert_int_equal(stats(&f).skipped_open, skipped + 4);

    /* Down: probes fail fast, back-off grows; then back on the same port. */
    kill_redis();
    pthread_mutex_lock(&f.r->mtx);
    f.r->until_ms = now_ms() + 500;
    pthread_mutex_unlock(&f.r->mtx);
    spin_ms(&f.loop, 600);
    for (int i = 0; i < 10; i++) {
        get_start(&f, &rs, "h/brk");
        get_wait(&f, &rs);
        assert_null(rs.o);
        spin_ms(&f.loop, 50);
    }
    assert_int_equal(stats(&f).breaker_open, 1);
    start_redis();
    end = now_ms() + 15000;
    while ((strcmp(edge__redis_state(f.r), "closed") != 0 || f.c->state != C_UP) &&
           now_ms() < end) {
        get_start(&f, &rs, "h/brk");
        get_wait(&f, &rs);
        cache_obj_unref(&rs.o);
        spin_ms(&f.loop, 50);
    }
    assert_string_equal(edge__redis_state(f.r), "closed");
    assert_int_equal(stats(&f).breaker_open, 0);
    /* The new server is empty: store again, and hits are back. */
    edge__redis_put(f.c, "h/brk", 5, o, 60000);
    g = get_sync(&f, "h/brk");
    assert_non_null(g);
    assert_body(g, "before", 6);
    cache_obj_unref(&g);
    assert_int_equal(stats(&f).breaker_trips, 1);
    cache_obj_unref(&o);
    fx_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_large_not_stored),
        cmocka_unit_test(test_foreign_values),
        cmocka_unit_test(test_value_decode),
        cmocka_unit_test(test_corrupt_values),
        cmocka_unit_test(test_drop_is_conditional),
        cmocka_unit_test(test_drop_refused),
        cmocka_unit_test(test_del),
        cmocka_unit_test(test_hostname_and_ipv6),
        cmocka_unit_test(test_two_threads),
        cmocka_unit_test(test_auth_and_db),
        cmocka_unit_test(test_fini_inflight),
        cmocka_unit_test(test_breaker),
    };
    /* A hung loop must not hang CI. */
    alarm(120);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
