/* src/router/router_srv.c: DNS over UDP and TCP, and the per-query answer path.
 *
 * UDP: one blocking thread per socket (SO_REUSEPORT spreads clients over them), reading
 * up to UDP_BATCH datagrams with one recvmmsg() and sending the answers with one
 * sendmmsg(); batching is what keeps the CPU per query low under load (gdnsd does the
 * same). router__dns_stop() wakes them with shutdown().
 * TCP (RFC 7766): on the main libuv loop, 2-byte length-prefixed messages, several per
 * connection, answered in order; idle connections close after ROUTER_TCP_IDLE_MS; the
 * input buffer of a connection is bounded by one maximal message. The listening socket is
 * watched with a uv_poll_t and accepted here (accept4), as the HTTP server does: out of
 * descriptors, accepting pauses for TCP_ACCEPT_PAUSE_MS and idle connections are closed,
 * where libuv's own listener could spin (see tcp_accept_some). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/mc.h"
#include "core/units.h"
#include "http/http_server.h"
#include "router/router_int.h"

#define UDP_BATCH 32
#define UDP_BUF 4096
#define TCP_MAX_QUEUED (1u << 20) /* bytes of answers waiting for one slow TCP reader */
/* Connections accepted per readiness callback, so that a burst cannot starve the loop. */
#define TCP_ACCEPT_BATCH 64
/* After accept(2) failed for want of descriptors (or memory), accepting stops this long. */
#define TCP_ACCEPT_PAUSE_MS 100
/* Idle connections closed per pause, to make room for the clients waiting in the queue... */
#define TCP_SHED_MAX 64
/* ...but not one idle for less than this: its client may be sending a query right now. */
#define TCP_SHED_MIN_IDLE_MS 1000
/* An episode of failed accepts ends once the queue is found empty with a descriptor to
 * spare this long after the last pause: a flood in bursts is one episode, one log line. */
#define TCP_ACCEPT_CALM_MS 1000

void router__client_addr(const struct dns_query *q, const struct sockaddr *peer, int *family,
                         uint8_t addr[16])
{
    memset(addr, 0, 16);
    if (q && q->ecs.present && q->ecs.source > 0) {
        *family = q->ecs.family == 1 ? 4 : 6;
        memcpy(addr, q->ecs.addr, *family == 4 ? 4 : 16);
        return;
    }
    if (peer && peer->sa_family == AF_INET) {
        *family = 4;
        memcpy(addr, &((const struct sockaddr_in *)peer)->sin_addr, 4);
    } else if (peer && peer->sa_family == AF_INET6) {
        const uint8_t *a6 = ((const struct sockaddr_in6 *)peer)->sin6_addr.s6_addr;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (!memcmp(a6, mapped, 12)) {
            *family = 4;
            memcpy(addr, a6 + 12, 4);
        } else {
            *family = 6;
            memcpy(addr, a6, 16);
        }
    } else {
        *family = 4;
    }
}

int router__choose(struct router_set *s, struct router_loc_cache *c, int client_family,
                   const uint8_t *client_addr, int answer_family, uint8_t *netmask,
                   struct router_score *scores, const struct router_loc_entry **entry)
{
    const struct router_loc_entry *e = router_loc_lookup(c, client_family, client_addr, netmask);
    if (entry)
        *entry = e;
    return router_select(s->edges, s->views, s->nedges, e->dist, &s->weights, answer_family,
                         scores);
}

/* Counts st's per-edge answers against s, the set they were chosen from, and zeroes them. */
static void answers_flush(struct router_set *s, struct router_stats *st)
{
    for (size_t i = 0; i < s->nedges; i++) {
        if (!st->answers[i])
            continue;
        metrics_counter_add(s->m_answers[i], st->answers[i]);
        struct metrics_counter *rc = atomic_load_explicit(&s->m_answers_region[i],
                                                          memory_order_relaxed);
        if (rc)
            metrics_counter_add(rc, st->answers[i]);
        st->answers[i] = 0;
    }
}

struct router_set *router__thr_sync(struct router *r, struct router_thr *t, struct router_stats *st)
{
    /* One acquire load per query in the common case; the lock only after a reload. */
    if (t->set && atomic_load_explicit(&r->set_gen, memory_order_acquire) == t->gen)
        return t->set;
    if (t->set && st)
        answers_flush(t->set, st);
    struct router_set *old = t->set;
    pthread_mutex_lock(&r->set_mtx);
    t->set = router__set_ref(r->set);
    t->gen = atomic_load(&r->set_gen);
    pthread_mutex_unlock(&r->set_mtx);
    router__set_unref(&old);
    free(t->c);
    t->c = router_loc_cache_new(t->set->geo, t->set->edges, t->set->nedges, t->set->have_default,
                                t->set->default_lat, t->set->default_lon);
    return t->set;
}

void router__thr_fini(struct router_thr *t)
{
    router__set_unref(&t->set);
    free(t->c);
    t->c = NULL;
}

struct sel_ctx {
    struct router_set *set;
    struct router_loc_cache *c;
    struct router_stats *st;
    const struct sockaddr *peer;
};

static int sel_cb(void *arg, const struct dns_query *q, int family, uint8_t addr[16],
                  uint8_t *scope)
{
    struct sel_ctx *s = arg;
    uint8_t caddr[16], nm = 0;
    int cfam;

    router__client_addr(q, s->peer, &cfam, caddr);
    int i = router__choose(s->set, s->c, cfam, caddr, family, &nm, NULL, NULL);
    if (i < 0)
        return -ENOENT;
    memcpy(addr, s->set->edges[i].addr, family == 4 ? 4 : 16);
    /* RFC 7871 §7.2.1: the scope is the prefix the answer is valid for, i.e. the database
     * network that located the client; /0 requests (opt-out) get scope 0. */
    *scope = q->ecs.present && q->ecs.source > 0 ? nm : 0;
    s->st->answers[i]++;
    return 0;
}

size_t router__answer(struct router *r, struct router_thr *t, struct router_stats *st,
                      const uint8_t *pkt, size_t len, const struct sockaddr *peer, int tcp,
                      uint8_t *out, size_t cap)
{
    struct dns_query q;
    struct router_zone_result res;
    struct router_set *set = router__thr_sync(r, t, st);
    struct sel_ctx s = {set, t->c, st, peer};

    st->n++;
    int rc = router_dns_parse(pkt, len, &q);
    if (rc == DNS_PARSE_DROP) {
        st->dropped++;
        return 0;
    }
    size_t limit = tcp ? DNS_MSG_MAX : router_dns_udp_limit(&q, r->edns_max);
    size_t n = router_zone_answer(&r->zone, &q, rc, sel_cb, &s, out, cap, limit, &res);
    if (res.rcode >= 0 && res.rcode <= 5)
        st->rcode[res.rcode]++;
    else
        st->badvers++;
    st->truncated += res.truncated != 0;
    st->ecs += q.ecs.present != 0;
    return n;
}

static void add(struct metrics_counter *m, uint64_t v)
{
    if (v)
        metrics_counter_add(m, v);
}

void router__stats_flush(struct router *r, struct router_set *s, struct router_stats *st, int tcp,
                         uint64_t elapsed_ns)
{
    if (st->n == 0)
        return;
    for (int i = 0; i < 6; i++)
        add(r->m_rcode[tcp ? 1 : 0][i], st->rcode[i]);
    add(r->m_badvers, st->badvers);
    add(r->m_dropped, st->dropped);
    add(r->m_truncated, st->truncated);
    add(r->m_ecs, st->ecs);
    answers_flush(s, st);
    uint64_t us = (elapsed_ns / st->n + 500) / 1000;
    for (uint64_t i = 0; i < st->n; i++)
        metrics_hist_observe(r->m_latency, us);
    memset(st, 0, sizeof(*st));
}

/* ---- UDP ---- */

struct udp_worker {
    struct router *r;
    int fd;
    unsigned idx;
};

static void *udp_main(void *arg)
{
    struct udp_worker *w = arg;
    struct router *r = w->r;
    struct router_thr t = {0};
    uint8_t(*in)[UDP_BUF] = mc_xmalloc(sizeof(uint8_t[UDP_BATCH][UDP_BUF]));
    uint8_t(*out)[UDP_BUF] = mc_xmalloc(sizeof(uint8_t[UDP_BATCH][UDP_BUF]));
    struct mmsghdr rm[UDP_BATCH], sm[UDP_BATCH];
    struct iovec riov[UDP_BATCH], siov[UDP_BATCH];
    struct sockaddr_storage from[UDP_BATCH];
    struct router_stats st = {0};
    long coalesce_us = r->udp_coalesce_us;

    while (!atomic_load_explicit(&r->stopping, memory_order_relaxed)) {
        for (int i = 0; i < UDP_BATCH; i++) {
            riov[i].iov_base = in[i];
            riov[i].iov_len = UDP_BUF;
            memset(&rm[i].msg_hdr, 0, sizeof(rm[i].msg_hdr));
            rm[i].msg_hdr.msg_iov = &riov[i];
            rm[i].msg_hdr.msg_iovlen = 1;
            rm[i].msg_hdr.msg_name = &from[i];
            rm[i].msg_hdr.msg_namelen = sizeof(from[i]);
        }
        int n = recvmmsg(w->fd, rm, UDP_BATCH, MSG_WAITFORONE, NULL);
        if (n <= 0)
            continue; /* shutdown (stop), EINTR; other errors are per-datagram ICMP */
        int m = 0;
        uint64_t t0 = units_now_ns();
        for (int i = 0; i < n; i++) {
            if (rm[i].msg_hdr.msg_flags & MSG_TRUNC)
                continue; /* larger than any query we accept */
            size_t len = router__answer(r, &t, &st, in[i], rm[i].msg_len,
                                        (const struct sockaddr *)&from[i], 0, out[m], UDP_BUF);
            if (len == 0)
                continue;
            siov[m].iov_base = out[m];
            siov[m].iov_len = len;
            memset(&sm[m].msg_hdr, 0, sizeof(sm[m].msg_hdr));
            sm[m].msg_hdr.msg_iov = &siov[m];
            sm[m].msg_hdr.msg_iovlen = 1;
            sm[m].msg_hdr.msg_name = &from[i];
            sm[m].msg_hdr.msg_namelen = rm[i].msg_hdr.msg_namelen;
            m++;
        }
        router__stats_flush(r, t.set, &st, 0, units_now_ns() - t0);
        for (int done = 0; done < m;) {
            int k = sendmmsg(w->fd, sm + done, (unsigned)(m - done), 0);
            if (k <= 0) {
                if (k < 0 && errno == EINTR)
                    continue;
                done++; /* skip the datagram that failed (e.g. unreachable peer) */
                continue;
            }
            done += k;
        }
        /* Interrupt moderation (--udp-coalesce-us): after a small batch, let queries pile
         * up briefly so the next recvmmsg/sendmmsg pair and wake-up serve several. */
        if (coalesce_us > 0 && n < UDP_BATCH / 4) {
            struct timespec ts = {0, (long)coalesce_us * 1000};
            nanosleep(&ts, NULL);
        }
    }
    free(in);
    free(out);
    router__thr_fini(&t);
    free(w);
    return NULL;
}

static int parse_hostport(const char *s, struct sockaddr_storage *ss, char *err, size_t errlen)
{
    char host[128];
    const char *colon;
    memset(ss, 0, sizeof(*ss));
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':' || (size_t)(end - s - 1) >= sizeof(host))
            goto bad;
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = 0;
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof(host))
            goto bad;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = 0;
        if (!host[0])
            snprintf(host, sizeof(host), "0.0.0.0");
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535)
        goto bad;
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        return 0;
    }
bad:
    snprintf(err, errlen, "'%s' is not ADDR:PORT (IPv6 as [ADDR]:PORT)", s);
    return -EINVAL;
}

static socklen_t ss_len(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

static void set_port(struct sockaddr_storage *ss, int port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
}

static int get_port(const struct sockaddr_storage *ss)
{
    return ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port
                                          : ((const struct sockaddr_in6 *)ss)->sin6_port);
}

static int udp_socket(struct router *r, char *err, size_t errlen)
{
    int one = 1, fd = socket(r->dns_addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    int rcvbuf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    if (bind(fd, (struct sockaddr *)&r->dns_addr, ss_len(&r->dns_addr)) < 0)
        goto fail;
    return fd;
fail:;
    int e = errno;
    if (fd >= 0)
        close(fd);
    snprintf(err, errlen, "DNS UDP socket: %s", strerror(e));
    return -e;
}

/* ---- TCP ---- */

struct router_tcp_conn {
    unsigned magic;
#define TCP_CONN_MAGIC 0x54435043u
    uv_tcp_t h;
    uv_timer_t idle;
    struct router *r;
    struct sockaddr_storage peer;
    struct router_tcp_conn *prev, *next; /* r->tcp_list while open */
    uint64_t idle_since;                 /* loop time it last began waiting for a query */
    uint8_t *in;
    size_t in_len;
    int closing, handles;
};

struct tcp_write {
    uv_write_t req;
    uint8_t data[];
};

static struct router_thr main_thr; /* the main loop's view (DNS over TCP) */

static void conn_closed(uv_handle_t *h)
{
    struct router_tcp_conn *c = h->data;
    MC_CHECK_OBJ_NOTNULL(c, TCP_CONN_MAGIC);
    if (--c->handles > 0)
        return;
    c->r->tcp_conns--;
    free(c->in);
    MC_FREE_OBJ(c);
}

static void conn_close(struct router_tcp_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->prev)
        c->prev->next = c->next;
    else
        c->r->tcp_list = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_close((uv_handle_t *)&c->h, conn_closed);
    uv_close((uv_handle_t *)&c->idle, conn_closed);
}

static void on_idle(uv_timer_t *t)
{
    conn_close(t->data);
}

static void on_written(uv_write_t *req, int status)
{
    free(MC_CONTAINER_OF(req, struct tcp_write, req));
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct router_tcp_conn *c = h->data;
    /* Room for one maximal message (2 + 65535) beyond what is buffered. */
    size_t want = 2 + DNS_MSG_MAX;
    if (c->in == NULL)
        c->in = mc_xmalloc(want);
    buf->base = (char *)c->in + c->in_len;
    buf->len = want - c->in_len;
}

static void conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct router_tcp_conn *c = s->data;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    c->in_len += (size_t)nread;
    size_t off = 0;
    while (c->in_len - off >= 2) {
        size_t mlen = (size_t)(c->in[off] << 8 | c->in[off + 1]);
        if (c->in_len - off < 2 + mlen)
            break;
        /* The main loop is one thread: one scratch buffer serves every connection. */
        static uint8_t scratch[DNS_MSG_MAX];
        struct router_stats st = {0};
        uint64_t t0 = units_now_ns();
        size_t n = router__answer(c->r, &main_thr, &st, c->in + off + 2, mlen,
                                  (struct sockaddr *)&c->peer, 1, scratch, sizeof(scratch));
        router__stats_flush(c->r, main_thr.set, &st, 1, units_now_ns() - t0);
        off += 2 + mlen;
        if (n == 0)
            continue;
        /* A client that sends queries without reading answers is cut off rather than
         * letting its queue grow without bound. */
        if (uv_stream_get_write_queue_size(s) > TCP_MAX_QUEUED) {
            conn_close(c);
            return;
        }
        struct tcp_write *w = mc_xmalloc(sizeof(*w) + 2 + n);
        memcpy(w->data + 2, scratch, n);
        w->data[0] = (uint8_t)(n >> 8);
        w->data[1] = (uint8_t)n;
        uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)(n + 2));
        if (uv_write(&w->req, s, &b, 1, on_written) < 0) {
            free(w);
            conn_close(c);
            return;
        }
    }
    if (off > 0) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    c->idle_since = uv_now(c->r->loop);
    uv_timer_start(&c->idle, on_idle, ROUTER_TCP_IDLE_MS, 0);
}

/* Takes the accepted socket fd (closed on failure). */
static void tcp_conn_new(struct router *r, int fd)
{
    struct router_tcp_conn *c = mc_xcalloc(1, sizeof(*c));
    MC_INIT_OBJ(c, TCP_CONN_MAGIC);
    c->r = r;
    uv_tcp_init(r->loop, &c->h);
    uv_timer_init(r->loop, &c->idle);
    c->h.data = c->idle.data = c;
    c->handles = 2;
    c->next = r->tcp_list;
    if (r->tcp_list)
        r->tcp_list->prev = c;
    r->tcp_list = c;
    c->idle_since = uv_now(r->loop);
    r->tcp_conns++;
    if (uv_tcp_open(&c->h, fd) < 0) {
        close(fd);
        conn_close(c);
        return;
    }
    if (r->tcp_conns > ROUTER_TCP_MAX_CONNS) {
        conn_close(c);
        return;
    }
    int plen = sizeof(c->peer);
    uv_tcp_getpeername(&c->h, (struct sockaddr *)&c->peer, &plen);
    uv_read_start((uv_stream_t *)&c->h, conn_alloc, conn_read);
    uv_timer_start(&c->idle, on_idle, ROUTER_TCP_IDLE_MS, 0);
}

/* No query begun or answer pending for TCP_SHED_MIN_IDLE_MS, and no unread byte: an EOF
 * (0) or an error is a client that has gone, bytes are a query on its way. */
static int tcp_conn_idle(struct router_tcp_conn *c, uint64_t now)
{
    uv_os_fd_t fd;
    char b;

    if (c->closing || c->in_len || uv_stream_get_write_queue_size((uv_stream_t *)&c->h) ||
        now < c->idle_since + TCP_SHED_MIN_IDLE_MS || uv_fileno((uv_handle_t *)&c->h, &fd))
        return 0;
    return recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) <= 0;
}

/* Closes idle connections, oldest first, to make room for the clients waiting to be
 * accepted. Returns how many went. */
static unsigned tcp_shed_idle(struct router *r)
{
    struct router_tcp_conn *c, *prev, *tail = NULL;
    uint64_t now = uv_now(r->loop);
    unsigned n = 0;

    for (c = r->tcp_list; c; c = c->next)
        tail = c;
    for (c = tail; c && n < TCP_SHED_MAX; c = prev) {
        prev = c->prev;
        if (!tcp_conn_idle(c, now))
            continue;
        conn_close(c);
        n++;
    }
    if (n)
        metrics_counter_add(r->m_tcp_idle_closed, n);
    return n;
}

static void on_tcp_listen(uv_poll_t *p, int status, int events);
static void tcp_accept_some(struct router *r);

/* The end of a pause, or the check that an episode is over (tcp_accept_recovered). Accept
 * at once rather than wait for readiness: only accept(2) tells an empty queue with a
 * descriptor to spare (EAGAIN) from descriptors still short (EMFILE, even with nobody
 * waiting: pause again). */
static void on_tcp_accept_resume(uv_timer_t *t)
{
    struct router *r = t->data;

    MC_CHECK_OBJ_NOTNULL(r, ROUTER_MAGIC);
    if (!r->tcp_listening)
        return;
    r->tcp_paused = 0;
    tcp_accept_some(r);
    if (!r->tcp_paused)
        uv_poll_start(&r->tcp_poll, UV_READABLE, on_tcp_listen);
}

/* accept(2) failed with err (negative): stop watching the listener, close idle
 * connections, try again after TCP_ACCEPT_PAUSE_MS. Open connections are served meanwhile
 * (their EOFs are read and free descriptors); the clients not yet accepted wait in the
 * kernel's queue. Logged once per episode. */
static void tcp_accept_pause(struct router *r, int err)
{
    uv_poll_stop(&r->tcp_poll);
    r->tcp_paused = 1;
    r->tcp_last_pause = uv_now(r->loop);
    metrics_counter_add(r->m_tcp_paused, 1);
    unsigned shed = tcp_shed_idle(r);
    if (!r->tcp_fd_short) {
        r->tcp_fd_short = 1;
        log_warn("router: DNS TCP accepting paused, accept(2) failed",
                 "err=%s conns=%u idle_closed=%u retry_ms=%d", uv_err_name(err), r->tcp_conns, shed,
                 TCP_ACCEPT_PAUSE_MS);
    }
    uv_timer_start(&r->tcp_accept_timer, on_tcp_accept_resume, TCP_ACCEPT_PAUSE_MS, 0);
}

static void tcp_accept_recovered(struct router *r)
{
    uint64_t now = uv_now(r->loop);

    if (!r->tcp_fd_short)
        return;
    if (now < r->tcp_last_pause + TCP_ACCEPT_CALM_MS) {
        if (!uv_is_active((uv_handle_t *)&r->tcp_accept_timer))
            uv_timer_start(&r->tcp_accept_timer, on_tcp_accept_resume,
                           r->tcp_last_pause + TCP_ACCEPT_CALM_MS - now, 0);
        return;
    }
    r->tcp_fd_short = 0;
    log_info("router: DNS TCP accepting again", "conns=%u", r->tcp_conns);
}

/* accept4() ourselves instead of uv_listen: on EMFILE libuv's listener closes a reserve
 * descriptor, accepts and drops the waiting clients and reopens the reserve; the HTTP
 * workers' threads open descriptors too and can take the freed slot, the reserve is then
 * lost for good, and libuv retries accept() in a loop only a free descriptor ends (Linux
 * reports EMFILE even with an empty queue). The main loop would spin there, never reading
 * the EOFs of departed clients whose close would free descriptors. */
static void tcp_accept_some(struct router *r)
{
    for (int i = 0; i < TCP_ACCEPT_BATCH && !r->tcp_paused; i++) {
        int fd = accept4(r->tcp_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            tcp_conn_new(r, fd);
            continue;
        }
        int err = errno;
        switch (http_accept_errno_act(err)) {
        case HTTP_ACCEPT_DRAINED: tcp_accept_recovered(r); return;
        case HTTP_ACCEPT_RETRY: break;
        case HTTP_ACCEPT_PAUSE: tcp_accept_pause(r, -err); return;
        }
    }
}

static void on_tcp_listen(uv_poll_t *p, int status, int events)
{
    struct router *r = p->data;

    (void)events;
    MC_CHECK_OBJ_NOTNULL(r, ROUTER_MAGIC);
    if (!r->tcp_listening || r->tcp_paused)
        return;
    if (status < 0)
        tcp_accept_pause(r, status);
    else
        tcp_accept_some(r);
}

/* Binds and listens on r->dns_addr. Returns the socket or a negative errno. */
static int tcp_listen_socket(struct router *r)
{
    int one = 1, fd = socket(r->dns_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&r->dns_addr, ss_len(&r->dns_addr)) < 0 ||
        listen(fd, 128) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

static void tcp_listen_close(struct router *r)
{
    if (!r->tcp_listening)
        return;
    r->tcp_listening = 0;
    /* uv_close stops the poll at once: the descriptor may be closed right after. */
    uv_close((uv_handle_t *)&r->tcp_poll, NULL);
    uv_close((uv_handle_t *)&r->tcp_accept_timer, NULL);
    close(r->tcp_fd);
    r->tcp_fd = -1;
}

static int dns_start_once(struct router *r, const char *addr, unsigned nudp, char *err,
                          size_t errlen);

int router__dns_start(struct router *r, const char *addr, unsigned nudp, char *err, size_t errlen)
{
    int rc = parse_hostport(addr, &r->dns_addr, err, errlen);
    if (rc < 0)
        return rc;
    /* With port 0 the kernel picks a free UDP port, which may be taken for TCP: retry. */
    int any = get_port(&r->dns_addr) == 0;
    for (int attempt = 0;; attempt++) {
        rc = dns_start_once(r, addr, nudp, err, errlen);
        if (rc != UV_EADDRINUSE || !any || attempt >= 20)
            return rc;
        uv_run(r->loop, UV_RUN_NOWAIT); /* let the failed TCP handle close */
        set_port(&r->dns_addr, 0);
    }
}

static int dns_start_once(struct router *r, const char *addr, unsigned nudp, char *err,
                          size_t errlen)
{
    int rc;
    if (nudp == 0)
        nudp = 1;
    if (nudp > ROUTER_MAX_UDP_THREADS)
        nudp = ROUTER_MAX_UDP_THREADS;
    /* The first UDP socket fixes the port (port 0 picks one); TCP and the other UDP
     * sockets bind the same port. */
    int fd = udp_socket(r, err, errlen);
    if (fd < 0)
        return fd;
    struct sockaddr_storage bound;
    socklen_t bl = sizeof(bound);
    getsockname(fd, (struct sockaddr *)&bound, &bl);
    r->dns_port = get_port(&bound);
    set_port(&r->dns_addr, r->dns_port);
    r->udp_fds[0] = fd;
    r->nudp = 1;
    for (unsigned i = 1; i < nudp; i++) {
        fd = udp_socket(r, err, errlen);
        if (fd < 0)
            goto fail;
        r->udp_fds[r->nudp++] = fd;
    }
    router__thr_sync(r, &main_thr, NULL);
    rc = tcp_listen_socket(r);
    if (rc >= 0) {
        r->tcp_fd = rc;
        rc = uv_poll_init(r->loop, &r->tcp_poll, r->tcp_fd);
        if (rc < 0)
            close(r->tcp_fd);
    }
    if (rc < 0) {
        snprintf(err, errlen, "DNS TCP %s: %s", addr, uv_strerror(rc));
        fd = rc;
        goto fail;
    }
    uv_timer_init(r->loop, &r->tcp_accept_timer);
    r->tcp_poll.data = r->tcp_accept_timer.data = r;
    r->tcp_listening = 1;
    r->tcp_paused = r->tcp_fd_short = 0;
    uv_poll_start(&r->tcp_poll, UV_READABLE, on_tcp_listen);
    for (unsigned i = 0; i < r->nudp; i++) {
        struct udp_worker *w = mc_xcalloc(1, sizeof(*w));
        w->r = r;
        w->fd = r->udp_fds[i];
        w->idx = i;
        if (pthread_create(&r->udp_threads[i], NULL, udp_main, w) != 0)
            MC_ASSERT(!"pthread_create");
    }
    return 0;
fail:
    for (unsigned i = 0; i < r->nudp; i++)
        close(r->udp_fds[i]);
    r->nudp = 0;
    router__thr_fini(&main_thr);
    return fd;
}

void router__dns_stop(struct router *r)
{
    atomic_store(&r->stopping, 1);
    /* shutdown() wakes a thread blocked in recvmmsg() even on an unconnected UDP socket
     * (Linux inet_shutdown: "hack to wake up other listeners"), so the receive needs no
     * timeout, which would arm a timer on every sleep. */
    for (unsigned i = 0; i < r->nudp; i++)
        shutdown(r->udp_fds[i], SHUT_RDWR);
    for (unsigned i = 0; i < r->nudp; i++) {
        pthread_join(r->udp_threads[i], NULL);
        close(r->udp_fds[i]);
    }
    r->nudp = 0;
    tcp_listen_close(r);
    while (r->tcp_list)
        conn_close(r->tcp_list);
}

void router__dns_free_cache(void)
{
    router__thr_fini(&main_thr);
}
