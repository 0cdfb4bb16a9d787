/* src/ctl/ctl_delay.c: `mlcdn delay`, a TCP relay that adds a network round-trip time.
 *
 * The machines mlcdn runs its demo on have no netem qdisc, so distance is emulated in user
 * space: each relay listens on one address and forwards every connection to one target,
 * holding each piece of data for half the round-trip time in each direction. A new
 * connection also pays its handshake: the client's first bytes reach the target no earlier
 * than 1.5 RTT after the accept, so a first request costs 2 RTT and a request on a kept-alive
 * connection 1 RTT, as over a real link. Data in flight per direction is bounded by a window
 * (reading stops above it), so a large body also pays for the bandwidth-delay product.
 *
 * One process serves any number of relays on one libuv loop. Each connection owns two
 * sockets and one direction struct per way (a queue of timed chunks); the connection is
 * freed in the last close callback of its two sockets. Directions with data waiting are on
 * one list, and a single timerfd (absolute CLOCK_MONOTONIC, uv_hrtime()'s clock) wakes the
 * loop at the earliest due time: libuv's timers count whole milliseconds, which would add up
 * to a millisecond per direction to a 5 ms round trip. */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <uv.h>

#include "core/conf.h"
#include "core/log.h"
#include "core/mc.h"
#include "ctl/ctl.h"

#define DLY_WINDOW (2u << 20) /* bytes in flight per direction before reading stops */
#define DLY_READ 65536
#define DLY_MAX_RELAYS 1024

struct dly_relay {
    unsigned magic;
#define DLY_RELAY_MAGIC 0x444c5952u
    uv_tcp_t srv;
    struct sockaddr_storage to;
    uint64_t rtt_us;
    char listen[80], target[80];
};

struct dly_chunk {
    struct dly_chunk *next;
    uint64_t due; /* uv_hrtime() in microseconds at which it may leave */
    size_t len;   /* 0: the end of the stream (a shutdown to pass on) */
    uv_write_t wr;
    struct dly_dir *dir;
    char data[];
};

/* One way of a connection: bytes read from src wait in the queue, then go to dst. */
struct dly_dir {
    struct dly_conn *c;
    uv_tcp_t *src, *dst;
    struct dly_dir *wprev, *wnext; /* on the waiting list while the queue is not empty */
    int waiting;
    uv_shutdown_t sd;
    struct dly_chunk *head, *tail;
    size_t inflight; /* queued or being written */
    uint64_t floor;  /* nothing leaves before this time (us) */
    int reading, eof, shut;
};

struct dly_conn {
    unsigned magic;
#define DLY_CONN_MAGIC 0x444c5943u
    struct dly_relay *r;
    uv_tcp_t client, up;
    uv_connect_t connect;
    struct dly_dir dir[2]; /* 0: client to target, 1: target to client */
    int connected, closing, open_handles;
};

static uv_signal_t sigint_h, sigterm_h;
static struct dly_relay *relays[DLY_MAX_RELAYS];
static size_t nrelays;
static int tfd = -1;       /* the timerfd */
static uv_poll_t tfd_poll; /* its readiness on the loop */
static struct dly_dir *waiting;

static void wait_del(struct dly_dir *d)
{
    if (!d->waiting)
        return;
    if (d->wprev)
        d->wprev->wnext = d->wnext;
    else
        waiting = d->wnext;
    if (d->wnext)
        d->wnext->wprev = d->wprev;
    d->wprev = d->wnext = NULL;
    d->waiting = 0;
}

static void wait_add(struct dly_dir *d)
{
    if (d->waiting)
        return;
    d->wprev = NULL;
    d->wnext = waiting;
    if (waiting)
        waiting->wprev = d;
    waiting = d;
    d->waiting = 1;
}

/* Arms the timerfd for the earliest due chunk (a scan: few connections are open at once). */
static void wait_arm(void)
{
    struct itimerspec its = {0};
    uint64_t min = UINT64_MAX;

    for (struct dly_dir *d = waiting; d; d = d->wnext)
        min = MC_MIN(min, d->head->due);
    if (min != UINT64_MAX) {
        min = MC_MAX(min, 1); /* all zeros would disarm it */
        its.it_value.tv_sec = (time_t)(min / 1000000);
        its.it_value.tv_nsec = (long)(min % 1000000) * 1000;
    }
    timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void conn_close(struct dly_conn *c);

static void on_handle_closed(uv_handle_t *h)
{
    struct dly_conn *c = h->data;

    MC_CHECK_OBJ_NOTNULL(c, DLY_CONN_MAGIC);
    if (--c->open_handles > 0)
        return;
    for (int i = 0; i < 2; i++) {
        struct dly_chunk *ch = c->dir[i].head;
        while (ch) {
            struct dly_chunk *next = ch->next;
            free(ch);
            ch = next;
        }
    }
    MC_FREE_OBJ(c);
}

static void conn_close(struct dly_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    wait_del(&c->dir[0]);
    wait_del(&c->dir[1]);
    uv_close((uv_handle_t *)&c->client, on_handle_closed);
    uv_close((uv_handle_t *)&c->up, on_handle_closed);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    struct dly_chunk *ch = mc_xmalloc(sizeof(*ch) + DLY_READ);
    buf->base = ch->data;
    buf->len = DLY_READ;
}

static void dir_flush(struct dly_dir *d);

/* The timerfd fired: every direction with a chunk due is flushed (taken off the list
 * first, as a flush may put it back or close its connection), then the next wake-up set. */
static void on_tick(uv_poll_t *p, int status, int events)
{
    uint64_t expirations, now = uv_hrtime() / 1000;
    struct dly_dir *due = NULL;

    (void)p;
    (void)status;
    (void)events;
    if (read(tfd, &expirations, sizeof(expirations)) < 0) {
        /* EAGAIN: re-armed since it fired; the scan below is still right. */
    }
    for (struct dly_dir *d = waiting, *next; d; d = next) {
        next = d->wnext;
        if (d->head->due <= now) {
            wait_del(d);
            d->wnext = due;
            due = d;
        }
    }
    while (due) {
        struct dly_dir *d = due;
        due = d->wnext;
        d->wnext = NULL;
        dir_flush(d);
    }
    wait_arm();
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct dly_dir *d = req->data;
    struct dly_conn *c = d->c;

    d->shut = 2;
    if (status < 0 || (c->dir[0].shut == 2 && c->dir[1].shut == 2))
        conn_close(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_write(uv_write_t *wr, int status)
{
    struct dly_chunk *ch = wr->data;
    struct dly_dir *d = ch->dir;
    struct dly_conn *c = d->c;

    d->inflight -= ch->len;
    free(ch);
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (!c->closing && !d->reading && !d->eof && d->inflight < DLY_WINDOW / 2) {
        d->reading = 1;
        uv_read_start((uv_stream_t *)d->src, on_alloc, on_read);
    }
}

/* Sends what is due, then sleeps until the next chunk is. */
static void dir_flush(struct dly_dir *d)
{
    struct dly_conn *c = d->c;
    uint64_t now;

    if (c->closing || !c->connected)
        return;
    now = uv_hrtime() / 1000;
    while (d->head && d->head->due <= now) {
        struct dly_chunk *ch = d->head;
        d->head = ch->next;
        if (!d->head)
            d->tail = NULL;
        if (ch->len == 0) {
            free(ch);
            d->shut = 1;
            d->sd.data = d;
            if (uv_shutdown(&d->sd, (uv_stream_t *)d->dst, on_shutdown) != 0)
                conn_close(c);
            return;
        }
        uv_buf_t b = uv_buf_init(ch->data, (unsigned)ch->len);
        ch->wr.data = ch;
        ch->dir = d;
        if (uv_write(&ch->wr, (uv_stream_t *)d->dst, &b, 1, on_write) != 0) {
            d->inflight -= ch->len;
            free(ch);
            conn_close(c);
            return;
        }
    }
    if (d->head && !d->waiting) {
        wait_add(d);
        wait_arm();
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct dly_conn *c = s->data;
    struct dly_dir *d = &c->dir[s == (uv_stream_t *)&c->client ? 0 : 1];
    struct dly_chunk *ch = buf->base ? MC_CONTAINER_OF(buf->base, struct dly_chunk, data) : NULL;

    MC_CHECK_OBJ_NOTNULL(c, DLY_CONN_MAGIC);
    if (nread == 0) {
        free(ch);
        return;
    }
    if (nread < 0 && nread != UV_EOF) {
        free(ch);
        conn_close(c);
        return;
    }
    if (nread == UV_EOF) {
        uv_read_stop(s);
        d->reading = 0;
        d->eof = 1;
        if (!ch)
            ch = mc_xmalloc(sizeof(*ch));
        ch->len = 0;
    } else {
        ch->len = (size_t)nread;
        if (nread < DLY_READ / 4)
            ch = mc_xrealloc(ch, sizeof(*ch) + (size_t)nread);
    }
    uint64_t due = uv_hrtime() / 1000 + c->r->rtt_us / 2;
    ch->due = MC_MAX(due, d->floor);
    d->floor = ch->due; /* order is kept: a later chunk never leaves earlier */
    ch->next = NULL;
    ch->dir = d;
    if (d->tail)
        d->tail->next = ch;
    else
        d->head = ch;
    d->tail = ch;
    d->inflight += ch->len;
    if (d->reading && d->inflight >= DLY_WINDOW) {
        uv_read_stop(s);
        d->reading = 0;
    }
    if (d->head == ch)
        dir_flush(d);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct dly_conn *c = req->data;

    MC_CHECK_OBJ_NOTNULL(c, DLY_CONN_MAGIC);
    if (c->closing)
        return;
    if (status < 0) {
        log_emit(LOG_WARN, "delay: target refused", "target=%s error=%s", c->r->target,
                 uv_strerror(status));
        conn_close(c);
        return;
    }
    c->connected = 1;
    c->dir[1].reading = 1;
    uv_read_start((uv_stream_t *)&c->up, on_alloc, on_read);
    dir_flush(&c->dir[0]);
}

static void on_accept(uv_stream_t *srv, int status)
{
    struct dly_relay *r = srv->data;
    struct dly_conn *c;

    MC_CHECK_OBJ_NOTNULL(r, DLY_RELAY_MAGIC);
    if (status < 0)
        return;
    c = mc_xcalloc(1, sizeof(*c));
    MC_INIT_OBJ(c, DLY_CONN_MAGIC);
    c->r = r;
    uv_tcp_init(srv->loop, &c->client);
    uv_tcp_init(srv->loop, &c->up);
    c->client.data = c->up.data = c;
    c->open_handles = 2;
    for (int i = 0; i < 2; i++) {
        struct dly_dir *d = &c->dir[i];
        d->c = c;
        d->src = i == 0 ? &c->client : &c->up;
        d->dst = i == 0 ? &c->up : &c->client;
    }
    if (uv_accept(srv, (uv_stream_t *)&c->client) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->client, 1);
    uv_tcp_nodelay(&c->up, 1);
    /* The handshake's round trip, then half a trip for the first bytes to arrive. */
    c->dir[0].floor = uv_hrtime() / 1000 + r->rtt_us + r->rtt_us / 2;
    c->connect.data = c;
    if (uv_tcp_connect(&c->connect, &c->up, (struct sockaddr *)&r->to, on_connect) != 0) {
        conn_close(c);
        return;
    }
    c->dir[0].reading = 1;
    uv_read_start((uv_stream_t *)&c->client, on_alloc, on_read);
}

static int parse_addr(const char *s, struct sockaddr_storage *ss)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    char *end;

    if (!colon || colon == s || (size_t)(colon - s) >= sizeof(host))
        return -EINVAL;
    long port = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port < 0 || port > 65535)
        return -EINVAL;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    if (host[0] == '[') {
        size_t n = strlen(host);
        if (n < 3 || host[n - 1] != ']')
            return -EINVAL;
        host[n - 1] = '\0';
        return uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)ss) ? -EINVAL : 0;
    }
    return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) ? -EINVAL : 0;
}

/* "LISTEN=TARGET@RTT" (RTT as a duration: 150, 150ms, 0.2s). */
static int relay_add(uv_loop_t *loop, const char *listen, const char *target, const char *rtt,
                     char *err, size_t errlen)
{
    struct sockaddr_storage la;
    struct dly_relay *r;
    char *end;
    double v;
    int rc;

    memset(&la, 0, sizeof(la));
    if (nrelays == DLY_MAX_RELAYS) {
        snprintf(err, errlen, "at most %d relays", DLY_MAX_RELAYS);
        return -EINVAL;
    }
    if (parse_addr(listen, &la) != 0) {
        snprintf(err, errlen, "listen address '%s': expected ADDR:PORT", listen);
        return -EINVAL;
    }
    r = mc_xcalloc(1, sizeof(*r));
    MC_INIT_OBJ(r, DLY_RELAY_MAGIC);
    if (parse_addr(target, &r->to) != 0) {
        snprintf(err, errlen, "target '%s': expected ADDR:PORT", target);
        goto fail;
    }
    v = strtod(rtt, &end);
    if (end == rtt || v < 0 || v > 60000)
        goto bad_rtt;
    if (!strcmp(end, "s"))
        v *= 1000;
    else if (*end && strcmp(end, "ms"))
        goto bad_rtt;
    r->rtt_us = (uint64_t)(v * 1000 + 0.5);
    snprintf(r->listen, sizeof(r->listen), "%s", listen);
    snprintf(r->target, sizeof(r->target), "%s", target);
    uv_tcp_init(loop, &r->srv);
    r->srv.data = r;
    relays[nrelays++] = r;
    if ((rc = uv_tcp_bind(&r->srv, (struct sockaddr *)&la, 0)) != 0 ||
        (rc = uv_listen((uv_stream_t *)&r->srv, 511, on_accept)) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", listen, uv_strerror(rc));
        return -EADDRINUSE;
    }
    return 0;
bad_rtt:
    snprintf(err, errlen, "round-trip time '%s': expected milliseconds (150, 150ms, 0.15s)", rtt);
fail:
    MC_FREE_OBJ(r);
    return -EINVAL;
}

static void on_relay_closed(uv_handle_t *h)
{
    struct dly_relay *r = h->data;
    MC_FREE_OBJ(r);
}

static void walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (uv_is_closing(h))
        return;
    if (h->type == UV_TCP && h->data) {
        for (size_t i = 0; i < nrelays; i++) {
            if (h == (uv_handle_t *)&relays[i]->srv) {
                uv_close(h, on_relay_closed);
                return;
            }
        }
        conn_close(h->data);
        return;
    }
    uv_close(h, NULL);
}

static void on_stop_signal(uv_signal_t *s, int sig)
{
    (void)sig;
    uv_walk(s->loop, walk_close, NULL);
}

int ctl_delay_main(int argc, char **argv)
{
    const char *listen = NULL, *to = NULL, *rtt = NULL, *log_level = "info";
    struct conf_strlist rl = {0};
    struct conf c;
    char err[512];
    uv_loop_t loop;
    int rc = 0;
    const struct conf_opt opts[] = {
        {"listen", CONF_STR, &listen, "ADDR:PORT to accept on (with --to and --rtt)"},
        {"to", CONF_STR, &to, "ADDR:PORT every connection is relayed to"},
        {"rtt", CONF_STR, &rtt, "round-trip time added: MS, 150ms, 0.15s"},
        {"relay", CONF_STRLIST, &rl, "LISTEN=TARGET@RTT: one more relay (repeat)"},
        {"log-level", CONF_STR, &log_level, "debug, info, warn, error"},
    };

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            conf_usage("delay", "--listen ADDR:PORT --to ADDR:PORT --rtt MS | --relay ...", opts,
                       MC_ARRAY_SIZE(opts));
            return 0;
        }
    }
    if (conf_parse(&c, opts, MC_ARRAY_SIZE(opts), argc, argv, 0, err, sizeof(err)) != 0 ||
        conf_check_keys(&c, opts, MC_ARRAY_SIZE(opts), NULL, 0, err, sizeof(err)) != 0) {
        fprintf(stderr, "mlcdn delay: %s\n", err);
        conf_fini(&c);
        return 2;
    }
    if (log_level_set_name(log_level) != 0) {
        fprintf(stderr, "mlcdn delay: --log-level '%s' unknown\n", log_level);
        conf_fini(&c);
        return 2;
    }
    if ((listen || to || rtt) && !(listen && to && rtt)) {
        fprintf(stderr, "mlcdn delay: --listen, --to and --rtt go together\n");
        conf_fini(&c);
        return 2;
    }
    if (!listen && rl.n == 0) {
        fprintf(stderr, "mlcdn delay: nothing to relay (--listen/--to/--rtt or --relay)\n");
        conf_fini(&c);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&loop);
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (tfd < 0) {
        fprintf(stderr, "mlcdn delay: timerfd: %s\n", strerror(errno));
        uv_loop_close(&loop);
        conf_fini(&c);
        return 1;
    }
    uv_poll_init(&loop, &tfd_poll, tfd);
    uv_poll_start(&tfd_poll, UV_READABLE, on_tick);
    if (listen && (rc = relay_add(&loop, listen, to, rtt, err, sizeof(err))) != 0) {
        fprintf(stderr, "mlcdn delay: --listen %s: %s\n", listen, err);
        goto out;
    }
    for (size_t i = 0; i < rl.n; i++) {
        char spec[256], *eq, *at;
        snprintf(spec, sizeof(spec), "%s", rl.v[i]);
        eq = strchr(spec, '=');
        at = eq ? strrchr(eq, '@') : NULL;
        if (!eq || !at) {
            fprintf(stderr, "mlcdn delay: --relay '%s': expected LISTEN=TARGET@RTT\n", rl.v[i]);
            rc = -EINVAL;
            goto out;
        }
        *eq = *at = '\0';
        if ((rc = relay_add(&loop, spec, eq + 1, at + 1, err, sizeof(err))) != 0) {
            fprintf(stderr, "mlcdn delay: --relay '%s': %s\n", rl.v[i], err);
            goto out;
        }
    }
    uv_signal_init(&loop, &sigint_h);
    uv_signal_init(&loop, &sigterm_h);
    uv_signal_start(&sigint_h, on_stop_signal, SIGINT);
    uv_signal_start(&sigterm_h, on_stop_signal, SIGTERM);
    for (size_t i = 0; i < nrelays; i++)
        log_emit(LOG_DEBUG, "delay relay", "listen=%s target=%s rtt_us=%llu", relays[i]->listen,
                 relays[i]->target, (unsigned long long)relays[i]->rtt_us);
    /* The ready line (tests and `mlcdn run` read it), with the first relay's bound port. */
    struct sockaddr_storage bound;
    int blen = sizeof(bound);
    char host[64] = "?";
    int port = 0;
    if (uv_tcp_getsockname(&relays[0]->srv, (struct sockaddr *)&bound, &blen) == 0) {
        if (bound.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&bound, host, sizeof(host));
            port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
        } else {
            uv_ip4_name((struct sockaddr_in *)&bound, host, sizeof(host));
            port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
        }
    }
    printf("delay listening on tcp://%s%s%s:%d to %s, rtt %.1f ms (%zu relays)\n",
           bound.ss_family == AF_INET6 ? "[" : "", host, bound.ss_family == AF_INET6 ? "]" : "",
           port, relays[0]->target, (double)relays[0]->rtt_us / 1000.0, nrelays);
    fflush(stdout);
    log_emit(LOG_INFO, "delay ready", "relays=%zu", nrelays);
    uv_run(&loop, UV_RUN_DEFAULT);
out:
    if (rc != 0) {
        uv_walk(&loop, walk_close, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    uv_loop_close(&loop);
    close(tfd);
    tfd = -1;
    nrelays = 0;
    conf_fini(&c);
    return rc ? 1 : 0;
}
