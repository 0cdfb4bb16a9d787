/* src/edge/edge_redis.c: the Redis shared tier (see edge_redis.h).
 *
 * Per loop, a struct edge_redis_conn goes DOWN -> RESOLVING (host names only, through
 * uv_getaddrinfo so DNS never blocks the loop) -> CONNECTING (TCP connect, then AUTH,
 * SELECT and PING under one deadline) -> UP. GETs are sent only when UP and are listed
 * in send order (`inflight`); Redis answers in order and every GET has the same timeout,
 * so the oldest has the earliest deadline and one timer per connection covers them all.
 * A passed deadline drops the whole connection: a Redis that late is stalled or cut off,
 * and only a fresh connection tells (a blackholed one never errors, and replies queued
 * behind the late one would be as late).
 *
 * Ownership: a GET (struct rget) belongs to hiredis from redisAsyncCommand() to its reply
 * callback, which hiredis calls exactly once (with NULL when the context goes away); it
 * then waits in `done` until the loop's idle handle hands the answer to the caller, so a
 * caller is never re-entered from edge__redis_get() or from inside hiredis.
 *
 * Values are sealed (cache_pack_seal(): length and checksum of everything) and verified
 * before anything in them is used. A bad one is a miss, counted, logged once and deleted
 * only if it is still the value that was read (a script compares its SHA-1), so a good
 * copy another edge has written meanwhile is not lost; docs/internals/cache.md.
 *
 * The breaker in struct edge_redis is shared by every loop: its state is read lock-free
 * on each call, transitions take its mutex. Counters are relaxed atomics.
 *
 * The end of this file is the Redis tier of the chain (edge_tier.c): lookups, copies and
 * drops through the per-loop connection, and the tier's metrics. */
#include "edge/edge_redis.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <xxhash.h>

#include "cache/cache_key.h"
#include "cache/cache_pack.h"
#include "cache/cache_tags.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/mc.h"
#include "core/units.h"
#include "edge/edge_int.h"

#define EDGE_REDIS_MAGIC 0x52444953u
#define EDGE_REDIS_CONN_MAGIC 0x5244434eu
#define RGET_MAGIC 0x52474554u
#define RPURGE_MAGIC 0x52505247u

#define RKEY_PREFIX "mlcdn:obj:"
#define RKEY_LEN (sizeof(RKEY_PREFIX) - 1 + 32)
/* The path index: a set per path and query (the primary key from its first '/') of the
 * Redis keys of every host's copy, so that a PURGE naming no host finds them all. */
#define IKEY_PREFIX "mlcdn:path:"
#define IKEY_LEN (sizeof(IKEY_PREFIX) - 1 + 32)
/* The tag index: a sorted set per tag (Surrogate-Key, Cache-Tag) of the Redis keys of the
 * copies that carry it, scored by when each copy expires, so that a tag purge deletes
 * exactly them. A popular tag gains members as long as objects are stored, and the set
 * would never expire: every add first removes the members whose copies expired (with
 * INDEX_SLACK_MS for clocks that differ between edges; a member removed early leaves a
 * copy that the tag's ban still refuses). Its keys have the path index's length. */
#define TKEY_PREFIX "mlcdn:tags:"
_Static_assert(sizeof(TKEY_PREFIX) == sizeof(IKEY_PREFIX), "index keys share one length");
/* The index outlives every copy it lists: its expiry is set just before the copy's SET,
 * on the same connection, and this margin covers the gap. */
#define INDEX_SLACK_MS 60000
/* A PURGE's answer waits for Redis at most this long (or --redis-timeout if longer): past
 * it the connection is dropped as for a late GET, and the purge is answered 503. A dead
 * peer is not always reported (see the GET deadline above), and a purge is answered only
 * when Redis acknowledged it. */
#define PURGE_TIMEOUT_MIN_MS 1000
/* Metadata (key, header lines, Vary) larger than this is not stored; with max_object it
 * bounds what a GET reads back, whoever wrote the value. */
#define META_MAX (256u << 10)
#define BREAKER_FAILS 3
#define BREAKER_BACKOFF_MIN_MS 500
#define BREAKER_BACKOFF_MAX_MS 5000
#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 5000
/* No request waits on a connect (calls are skipped meanwhile), so the handshake may take
 * longer than a GET; but it must end, or a stalled server would hold the loop's tier. */
#define CONNECT_TIMEOUT_MIN_MS 250
/* Redis refuses PX values whose expiry overflows; nothing we store lives a year. */
#define TTL_MAX_MS (366ull * 86400 * 1000)
/* Bad values this loop has warned about and not yet seen dropped. */
#define BAD_SEEN 8
#define SHA1_LEN 20

/* Deletes KEYS[1] only while it holds the value a GET read: the same range (ARGV[1] is
 * the GETRANGE end) with the same SHA-1 (ARGV[2]). One script runs atomically, so a value
 * written between our GET and this DEL (another edge's good copy) is left alone. */
static const char DROP_SCRIPT[] =
    "local v = redis.call('GETRANGE', KEYS[1], 0, ARGV[1]) "
    "if #v > 0 and redis.sha1hex(v) == ARGV[2] then return redis.call('DEL', KEYS[1]) end "
    "return 0";

enum brk_state { BRK_CLOSED, BRK_OPEN, BRK_HALF };
enum brk_verdict { BRK_SKIP, BRK_PASS, BRK_PROBE };
enum conn_state { C_DOWN, C_RESOLVING, C_CONNECTING, C_UP };

struct edge_redis {
    unsigned magic;
    char *host; /* IPv6 without brackets */
    int host_is_ip;
    int port;
    char *user, *pass; /* NULL when absent */
    unsigned db;
    uint64_t max_object;
    uint64_t timeout_ms;
    uint64_t connect_timeout_ms;
    uint64_t value_cap; /* longest value a GET accepts: frame + META_MAX + max_object */
    _Atomic unsigned nconns;
    /* Breaker: `state` and `fails` are read without the lock, written under it. */
    pthread_mutex_t mtx;
    _Atomic int state;
    _Atomic unsigned fails; /* consecutive failures while closed */
    uint64_t backoff_ms;    /* mtx */
    uint64_t until_ms;      /* mtx; OPEN: end of back-off; HALF: when a new probe may go */
    struct {
        _Atomic uint64_t hits, misses, errors, corrupt, timeouts, skipped_open, skipped_down,
            stores, store_skipped_large, del_failed, trips;
    } st;
    _Atomic int index_warned; /* the index's PEXPIRE was refused once (logged) */
};

struct rget {
    unsigned magic;
    struct edge_redis_conn *c;
    struct rget *next; /* inflight or done list */
    edge_redis_get_cb *cb;
    void *arg;
    uint64_t deadline;     /* loop time */
    struct cache_obj *obj; /* the answer once decided (ref), NULL for a miss */
    size_t klen;
    char key[]; /* the caller's key, NUL-terminated */
};

struct rpurge;

struct edge_redis_conn {
    unsigned magic;
    struct edge_redis *r;
    uv_loop_t *loop;
    enum conn_state state;
    redisAsyncContext *ac; /* CONNECTING or UP; freed by hiredis on errors, else conn_drop() */
    int warned;            /* this outage was logged: one warning per outage per loop */
    uint64_t next_connect; /* loop time; no new connect before (unless probing) */
    uint64_t reconnect_ms;
    uint64_t hs_deadline; /* loop time the handshake must end by */
    uv_timer_t timer;     /* handshake deadline, or the oldest GET's */
    uv_idle_t idle;       /* delivers `done` */
    uv_getaddrinfo_t gai;
    int gai_busy;
    struct rget *inflight, *inflight_tail;
    struct rget *done, *done_tail;
    struct rpurge *purges; /* waiting for Redis, oldest first (each with its deadline) */
    int closing;
    unsigned handles; /* not yet closed; freed at 0 with no gai pending */
    /* Fingerprints (Redis key and SHA-1 of the value) of bad values already logged and
     * sent a drop: the GETs queued behind the first one that saw a value, or every GET
     * when the server refuses the script, neither log nor drop it again. 0: free slot. */
    uint64_t bad_seen[BAD_SEEN];
    unsigned bad_next;
};

#define ST_ADD(r, f) atomic_fetch_add_explicit(&(r)->st.f, 1, memory_order_relaxed)

/* ---- circuit breaker ---- */

static enum brk_verdict brk_allow(struct edge_redis *r)
{
    enum brk_verdict v = BRK_SKIP;

    if (atomic_load_explicit(&r->state, memory_order_acquire) == BRK_CLOSED)
        return BRK_PASS;
    uint64_t now = units_now_ms();
    pthread_mutex_lock(&r->mtx);
    int s = atomic_load_explicit(&r->state, memory_order_relaxed);
    if (s == BRK_CLOSED) {
        v = BRK_PASS;
    } else if (now >= r->until_ms) {
        /* Back-off over, or the last probe never reported (its loop was finalised): one
         * call goes through and its outcome decides. */
        atomic_store_explicit(&r->state, BRK_HALF, memory_order_release);
        r->until_ms = now + r->connect_timeout_ms + r->timeout_ms;
        v = BRK_PROBE;
    }
    pthread_mutex_unlock(&r->mtx);
    return v;
}

static void brk_success(struct edge_redis *r)
{
    if (atomic_load_explicit(&r->state, memory_order_acquire) == BRK_CLOSED &&
        atomic_load_explicit(&r->fails, memory_order_relaxed) == 0)
        return;
    pthread_mutex_lock(&r->mtx);
    int s = atomic_load_explicit(&r->state, memory_order_relaxed);
    if (s == BRK_HALF) {
        r->backoff_ms = BREAKER_BACKOFF_MIN_MS;
        atomic_store_explicit(&r->state, BRK_CLOSED, memory_order_release);
        log_info("redis tier back", "host=%s port=%d", r->host, r->port);
    }
    /* OPEN: a late reply sent before the trip does not cut the back-off short. */
    if (s != BRK_OPEN)
        atomic_store_explicit(&r->fails, 0, memory_order_relaxed);
    pthread_mutex_unlock(&r->mtx);
}

static void brk_failure(struct edge_redis *r, const char *why)
{
    uint64_t now = units_now_ms();

    pthread_mutex_lock(&r->mtx);
    int s = atomic_load_explicit(&r->state, memory_order_relaxed);
    if (s == BRK_CLOSED) {
        unsigned f = atomic_load_explicit(&r->fails, memory_order_relaxed) + 1;
        atomic_store_explicit(&r->fails, f, memory_order_relaxed);
        if (f >= BREAKER_FAILS) {
            r->until_ms = now + r->backoff_ms;
            atomic_store_explicit(&r->state, BRK_OPEN, memory_order_release);
            ST_ADD(r, trips);
            log_warn("redis tier skipped", "why=\"%s\" failures=%u retry_ms=%" PRIu64, why, f,
                     r->backoff_ms);
        }
    } else if (s == BRK_HALF) {
        r->backoff_ms = MC_MIN(r->backoff_ms * 2, (uint64_t)BREAKER_BACKOFF_MAX_MS);
        r->until_ms = now + r->backoff_ms;
        atomic_store_explicit(&r->state, BRK_OPEN, memory_order_release);
        log_debug("redis probe failed", "why=\"%s\" retry_ms=%" PRIu64, why, r->backoff_ms);
    }
    /* OPEN: late failures of calls sent before the trip do not extend the back-off. */
    pthread_mutex_unlock(&r->mtx);
}

/* ---- answers ---- */

static void on_idle(uv_idle_t *h);

static void answer(struct rget *g, struct cache_obj *o)
{
    struct edge_redis_conn *c = g->c;

    g->obj = o;
    g->next = NULL;
    if (c->done_tail)
        c->done_tail->next = g;
    else
        c->done = g;
    c->done_tail = g;
    if (!c->closing)
        uv_idle_start(&c->idle, on_idle);
}

/* Takes the queue first: answers queued by the callbacks wait for the next round. */
static void deliver(struct edge_redis_conn *c)
{
    struct rget *g = c->done;

    c->done = c->done_tail = NULL;
    while (g) {
        struct rget *n = g->next;
        MC_CHECK_OBJ_NOTNULL(g, RGET_MAGIC);
        g->cb(g->arg, g->obj, g->key, g->klen);
        MC_FREE_OBJ(g);
        g = n;
    }
}

static void on_idle(uv_idle_t *h)
{
    struct edge_redis_conn *c = h->data;

    MC_CHECK_OBJ_NOTNULL(c, EDGE_REDIS_CONN_MAGIC);
    deliver(c);
    if (!c->done)
        uv_idle_stop(h);
}

/* ---- connection ---- */

static void on_timer(uv_timer_t *t);
static uint64_t oldest_deadline(const struct edge_redis_conn *c);

static void arm_timer(struct edge_redis_conn *c)
{
    uint64_t at, now = uv_now(c->loop);

    if (c->closing)
        return;
    if (c->state == C_CONNECTING)
        at = c->hs_deadline;
    else if (c->state == C_UP && (c->inflight || c->purges))
        at = oldest_deadline(c);
    else {
        uv_timer_stop(&c->timer);
        return;
    }
    uv_timer_start(&c->timer, on_timer, at > now ? at - now : 0, 0);
}

/* The connection failed or was given up (the context is gone or about to be): counts
 * one failure, however many calls were in flight on it. */
static void conn_failed(struct edge_redis_conn *c, const char *what, const char *detail)
{
    struct edge_redis *r = c->r;

    c->ac = NULL;
    c->state = C_DOWN;
    c->next_connect = uv_now(c->loop) + c->reconnect_ms;
    c->reconnect_ms = MC_MIN(c->reconnect_ms * 2, (uint64_t)RECONNECT_MAX_MS);
    arm_timer(c);
    ST_ADD(r, errors);
    if (!c->warned) {
        c->warned = 1;
        log_warn("redis connection failed", "host=%s port=%d what=\"%s\" error=\"%s\"", r->host,
                 r->port, what, detail ? detail : "");
    }
    brk_failure(r, what);
}

/* Lets go of the context. Its pending callbacks run with a NULL reply, now or (inside a
 * hiredis callback) when that returns; they see c->ac != their context. */
static void conn_drop(struct edge_redis_conn *c, const char *what, const char *detail)
{
    redisAsyncContext *ac = c->ac;

    if (c->closing) {
        c->ac = NULL;
        c->state = C_DOWN;
    } else {
        conn_failed(c, what, detail);
    }
    redisAsyncFree(ac);
}

static void on_connect(const redisAsyncContext *cac, int status);
static void on_disconnect(const redisAsyncContext *cac, int status);

static void conn_open(struct edge_redis_conn *c, const char *ip)
{
    struct edge_redis *r = c->r;
    char msg[128];

    redisAsyncContext *ac = redisAsyncConnect(ip, r->port);
    if (!ac) {
        conn_failed(c, "connect", "out of memory");
        return;
    }
    if (ac->err) {
        snprintf(msg, sizeof(msg), "%s", ac->errstr);
        redisAsyncFree(ac);
        conn_failed(c, "connect", msg);
        return;
    }
    if (redisLibuvAttach(ac, c->loop) != REDIS_OK) {
        /* The adapter sets its cleanup hook before it can fail; without its data that hook
         * would dereference NULL in redisAsyncFree(). */
        ac->ev.cleanup = NULL;
        redisAsyncFree(ac);
        conn_failed(c, "connect", "cannot watch the socket");
        return;
    }
    ac->data = c;
    /* Connect callback after attaching: setting it asks the adapter for the first
     * writable event, which is how hiredis learns that connect(2) finished. */
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    c->ac = ac;
    c->state = C_CONNECTING;
    c->hs_deadline = uv_now(c->loop) + r->connect_timeout_ms;
    arm_timer(c);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct edge_redis_conn *c = req->data;
    char ip[INET6_ADDRSTRLEN] = "";

    MC_CHECK_OBJ_NOTNULL(c, EDGE_REDIS_CONN_MAGIC);
    c->gai_busy = 0;
    /* IPv4 first, as hiredis does for names: "localhost" often lists ::1 first while the
     * server listens on 127.0.0.1 only. */
    const struct addrinfo *a = res;
    for (const struct addrinfo *q = res; q; q = q->ai_next)
        if (q->ai_family == AF_INET) {
            a = q;
            break;
        }
    if (status == 0 && a) {
        if (a->ai_family == AF_INET6)
            uv_ip6_name((const struct sockaddr_in6 *)(void *)a->ai_addr, ip, sizeof(ip));
        else
            uv_ip4_name((const struct sockaddr_in *)(void *)a->ai_addr, ip, sizeof(ip));
    }
    uv_freeaddrinfo(res);
    if (c->closing) {
        if (!c->handles)
            MC_FREE_OBJ(c);
        return;
    }
    c->state = C_DOWN;
    if (status != 0)
        conn_failed(c, "resolve", uv_strerror(status));
    else
        conn_open(c, ip);
}

static void conn_connect(struct edge_redis_conn *c)
{
    struct edge_redis *r = c->r;

    MC_ASSERT(c->state == C_DOWN && !c->closing);
    if (r->host_is_ip) {
        /* hiredis resolves the literal itself, which never touches DNS. */
        conn_open(c, r->host);
        return;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int rc = uv_getaddrinfo(c->loop, &c->gai, on_resolved, r->host, NULL, &hints);
    if (rc != 0) {
        conn_failed(c, "resolve", uv_strerror(rc));
        return;
    }
    c->gai_busy = 1;
    c->state = C_RESOLVING;
}

static void maybe_connect(struct edge_redis_conn *c, int probe)
{
    if (c->state == C_DOWN && !c->closing && (probe || uv_now(c->loop) >= c->next_connect))
        conn_connect(c);
}

static int hs_check(redisAsyncContext *ac, redisReply *reply, const char *what)
{
    struct edge_redis_conn *c = ac->data;

    MC_CHECK_OBJ_NOTNULL(c, EDGE_REDIS_CONN_MAGIC);
    /* A NULL reply: the context is going away and on_disconnect (or we) accounted for it. */
    if (ac != c->ac || !reply)
        return -1;
    if (reply->type == REDIS_REPLY_ERROR) {
        conn_drop(c, what, reply->str);
        return -1;
    }
    return 0;
}

static void on_hs_step(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)hs_check(ac, reply, priv);
}

static void on_hs_ping(redisAsyncContext *ac, void *reply, void *priv)
{
    struct edge_redis_conn *c = ac->data;

    if (hs_check(ac, reply, "PING") != 0)
        return;
    c->state = C_UP;
    c->reconnect_ms = RECONNECT_MIN_MS;
    if (c->warned)
        log_info("redis connected", "host=%s port=%d", c->r->host, c->r->port);
    c->warned = 0;
    arm_timer(c);
    brk_success(c->r);
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct edge_redis_conn *c = ac->data;
    struct edge_redis *r = c->r;

    MC_CHECK_OBJ_NOTNULL(c, EDGE_REDIS_CONN_MAGIC);
    if (ac != c->ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context when this returns. */
        conn_failed(c, "connect", ac->errstr);
        return;
    }
    redisEnableKeepAlive(&ac->c);
    /* Pipelined: the replies come in this order, the PING's last, and the first error
     * drops the connection. The command strings are static so the callbacks can name
     * the step without holding anything. */
    if (r->pass && r->user)
        redisAsyncCommand(ac, on_hs_step, "AUTH", "AUTH %s %s", r->user, r->pass);
    else if (r->pass)
        redisAsyncCommand(ac, on_hs_step, "AUTH", "AUTH %s", r->pass);
    if (r->db)
        redisAsyncCommand(ac, on_hs_step, "SELECT", "SELECT %u", r->db);
    redisAsyncCommand(ac, on_hs_ping, NULL, "PING");
}

static void on_disconnect(const redisAsyncContext *cac, int status)
{
    struct edge_redis_conn *c = cac->data;

    MC_CHECK_OBJ_NOTNULL(c, EDGE_REDIS_CONN_MAGIC);
    if (cac != c->ac)
        return; /* we let go of it ourselves */
    conn_failed(c, "connection lost", cac->errstr[0] ? cac->errstr : "closed by server");
}

static void on_timer(uv_timer_t *t)
{
    struct edge_redis_conn *c = t->data;
    uint64_t now = uv_now(c->loop);

    MC_CHECK_OBJ_NOTNULL(c, EDGE_REDIS_CONN_MAGIC);
    if (c->state == C_CONNECTING && now >= c->hs_deadline) {
        conn_drop(c, "connect timeout", NULL);
    } else if (c->state == C_UP && c->inflight && now >= c->inflight->deadline) {
        ST_ADD(c->r, timeouts);
        conn_drop(c, "timeout", NULL);
    } else if (c->state == C_UP && c->purges && now >= oldest_deadline(c)) {
        conn_drop(c, "purge timeout", NULL);
    } else {
        arm_timer(c);
    }
}

/* ---- operations ---- */

/* out = prefix + hex XXH3-128 of text (32 digits); out holds plen + 32 bytes. */
static void hashed_key(const char *prefix, size_t plen, const char *text, size_t tlen, char *out)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t h[16];
    char *p = out + plen;

    cache_key_hash(text, tlen, h);
    memcpy(out, prefix, plen);
    for (size_t i = 0; i < sizeof(h); i++) {
        *p++ = hex[h[i] >> 4];
        *p++ = hex[h[i] & 15];
    }
}

static void rkey(const char *key, size_t klen, char out[RKEY_LEN])
{
    hashed_key(RKEY_PREFIX, sizeof(RKEY_PREFIX) - 1, key, klen, out);
}

/* The path index of path and query pathq[0..plen), as PURGE names it. */
static void ikey(const char *pathq, size_t plen, char out[IKEY_LEN])
{
    hashed_key(IKEY_PREFIX, sizeof(IKEY_PREFIX) - 1, pathq, plen, out);
}

/* The tag index of tag[0..tlen). */
static void tkey(const char *tag, size_t tlen, char out[IKEY_LEN])
{
    hashed_key(TKEY_PREFIX, sizeof(TKEY_PREFIX) - 1, tag, tlen, out);
}

int edge__redis_value_decode(const void *v, size_t n, uint64_t cap, const char *key, size_t klen,
                             struct cache_obj **out, const char **why)
{
    const char *p = v;
    struct cache_obj *o;
    char *pkey;
    size_t plen, used;
    uint64_t total;

    /* GETRANGE answers "" for a missing key; a value of ours is never empty. */
    if (n == 0)
        return -ENOENT;
    if (n > cap) {
        /* Only a prefix was read. A sound frame declaring more than the cap is a value an
         * edge with a larger --redis-max-object wrote: not ours to read, nor to judge. */
        if (cache_pack_seal_len(v, n, &total, why) != 0)
            return -EBADMSG;
        if (total > cap)
            return -EFBIG;
        *why = "longer than its declared length";
        return -EBADMSG;
    }
    if (cache_pack_unseal(v, n, why) != 0)
        return -EBADMSG;
    p += CACHE_SEAL_LEN;
    n -= CACHE_SEAL_LEN;
    /* The checksum held, so this is what some writer sealed: a writer bug or a forgery. */
    if (cache_unpack_meta(p, n, &o, &pkey, &plen, &used) != 0) {
        *why = "undecodable metadata";
        return -EBADMSG;
    }
    /* The Redis key is a hash: the stored primary key must be ours, byte for byte. */
    int same = plen == klen && memcmp(pkey, key, plen) == 0;
    free(pkey);
    if (!same) {
        cache_obj_unref(&o);
        return -ENOENT;
    }
    o->body = cache_body_from(p + used, n - used);
    if (!o->body) {
        cache_obj_unref(&o);
        return -ENOMEM;
    }
    *out = o;
    return 0;
}

/* ---- bad values ---- */

static int bad_seen_find(const struct edge_redis_conn *c, uint64_t fp)
{
    for (int i = 0; i < BAD_SEEN; i++)
        if (c->bad_seen[i] == fp)
            return i;
    return -1;
}

struct drop {
    uint64_t fp;
};

static void on_drop(redisAsyncContext *ac, void *rep, void *priv)
{
    struct edge_redis_conn *c = ac->data;
    redisReply *reply = rep;
    struct drop *d = priv;

    MC_CHECK_OBJ_NOTNULL(c, EDGE_REDIS_CONN_MAGIC);
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        /* Scripts refused (ACL, a proxy): the value stays until the refetch overwrites it
         * or it expires; its fingerprint stays too, so it is not logged again. */
        log_info("redis corrupt value not deleted", "error=\"%s\"", reply->str);
    } else {
        /* Deleted, already replaced or expired, or the connection went away before the
         * answer (the next sighting tries again): the same bytes seen again are news. */
        int i = bad_seen_find(c, d->fp);
        if (i >= 0)
            c->bad_seen[i] = 0;
    }
    free(d);
}

/* v[0..n): the bytes a GET of key read and found bad. Counts it; the first time this loop
 * sees these bytes under this key, logs it and sends the conditional delete. */
static void bad_value(struct edge_redis_conn *c, const char *key, size_t klen, const char *v,
                      size_t n, const char *why)
{
    static const char hex[] = "0123456789abcdef";
    struct edge_redis *r = c->r;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    char k[RKEY_LEN], sha[2 * SHA1_LEN], end[24];
    uint64_t fp;

    ST_ADD(r, corrupt);
    rkey(key, klen, k);
    if (EVP_Digest(v, n, md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != SHA1_LEN) {
        log_warn("redis value corrupt", "redis_key=%.*s reason=\"%s\" bytes=%zu dropped=no",
                 (int)RKEY_LEN, k, why, n);
        return;
    }
    memcpy(&fp, md, sizeof(fp));
    fp ^= XXH3_64bits(k, RKEY_LEN);
    fp |= 1; /* 0 marks a free slot */
    if (bad_seen_find(c, fp) >= 0)
        return;
    c->bad_seen[c->bad_next] = fp;
    c->bad_next = (c->bad_next + 1) % BAD_SEEN;
    log_warn("redis value corrupt", "redis_key=%.*s reason=\"%s\" bytes=%zu", (int)RKEY_LEN, k, why,
             n);
    for (int i = 0; i < SHA1_LEN; i++) {
        sha[2 * i] = hex[md[i] >> 4];
        sha[2 * i + 1] = hex[md[i] & 15];
    }
    size_t el = mc_u64_digits(r->value_cap, end);
    const char *argv[] = {"EVAL", DROP_SCRIPT, "1", k, end, sha};
    const size_t argvlen[] = {4, sizeof(DROP_SCRIPT) - 1, 1, RKEY_LEN, el, sizeof(sha)};
    struct drop *d = mc_xmalloc(sizeof(*d));
    d->fp = fp;
    /* Sent on this loop's connection ahead of the refetch's SET, so our own new copy is
     * never the one deleted. */
    if (redisAsyncCommandArgv(c->ac, on_drop, d, 6, argv, argvlen) != REDIS_OK)
        free(d);
}

static void on_get(redisAsyncContext *ac, void *rep, void *priv)
{
    struct rget *g = priv;
    redisReply *reply = rep;
    struct cache_obj *o = NULL;
    const char *why = NULL;

    MC_CHECK_OBJ_NOTNULL(g, RGET_MAGIC);
    struct edge_redis_conn *c = g->c;
    struct edge_redis *r = c->r;
    MC_ASSERT(c->inflight == g); /* Redis answers in order */
    c->inflight = g->next;
    if (!c->inflight)
        c->inflight_tail = NULL;
    if (!reply) {
        /* The connection went away; whoever ended it counted the failure once. */
    } else if (reply->type == REDIS_REPLY_ERROR) {
        ST_ADD(r, errors);
        brk_failure(r, "error reply");
    } else {
        /* Bad values say nothing of Redis' health: the server answered. */
        brk_success(r);
        if (reply->type == REDIS_REPLY_NIL) {
            ST_ADD(r, misses);
        } else if (reply->type != REDIS_REPLY_STRING) {
            ST_ADD(r, errors);
        } else {
            switch (edge__redis_value_decode(reply->str, reply->len, r->value_cap, g->key, g->klen,
                                             &o, &why)) {
            case 0: ST_ADD(r, hits); break;
            case -ENOENT: ST_ADD(r, misses); break;
            case -EBADMSG:
                if (ac == c->ac)
                    bad_value(c, g->key, g->klen, reply->str, reply->len, why);
                else
                    ST_ADD(r, corrupt);
                break;
            default:
                /* Over this edge's cap, or no payload memory: the next tier serves it. */
                ST_ADD(r, errors);
                break;
            }
        }
    }
    answer(g, o);
    if (ac == c->ac)
        arm_timer(c);
}

void edge__redis_get(struct edge_redis_conn *c, const char *key, size_t klen, edge_redis_get_cb *cb,
                     void *arg)
{
    char k[RKEY_LEN];

    MC_CHECK_OBJ_NOTNULL(c, EDGE_REDIS_CONN_MAGIC);
    struct edge_redis *r = c->r;
    struct rget *g = mc_xmalloc(sizeof(*g) + klen + 1);
    MC_INIT_OBJ(g, RGET_MAGIC);
    g->c = c;
    g->next = NULL;
    g->cb = cb;
    g->arg = arg;
    g->obj = NULL;
    g->klen = klen;
    memcpy(g->key, key, klen);
    g->key[klen] = '\0';
    if (c->closing) {
        answer(g, NULL);
        return;
    }
    enum brk_verdict v = brk_allow(r);
    if (v == BRK_SKIP) {
        ST_ADD(r, skipped_open);
        answer(g, NULL);
        return;
    }
    if (c->state != C_UP) {
        /* Never queue behind a connect: the next tier is faster than a handshake. A probe
         * that finds no connection makes one; the handshake's outcome then decides. */
        ST_ADD(r, skipped_down);
        maybe_connect(c, v == BRK_PROBE);
        answer(g, NULL);
        return;
    }
    rkey(key, klen, k);
    /* GETRANGE rather than GET: hiredis 0.14 buffers a whole reply before it looks at it,
     * so the range caps what a value written by anyone can make us hold. */
    if (redisAsyncCommand(c->ac, on_get, g, "GETRANGE %b 0 %" PRIu64, k, RKEY_LEN, r->value_cap) !=
        REDIS_OK) {
        ST_ADD(r, errors);
        answer(g, NULL);
        return;
    }
    g->deadline = uv_now(c->loop) + r->timeout_ms;
    if (c->inflight_tail)
        c->inflight_tail->next = g;
    else
        c->inflight = g;
    c->inflight_tail = g;
    if (c->inflight == g)
        arm_timer(c);
}

static void on_put(redisAsyncContext *ac, void *rep, void *priv)
{
    struct edge_redis_conn *c = ac->data;
    redisReply *reply = rep;

    MC_CHECK_OBJ_NOTNULL(c, EDGE_REDIS_CONN_MAGIC);
    if (!reply)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        /* Not a breaker failure: a full Redis (OOM under noeviction) still serves reads. */
        ST_ADD(c->r, errors);
        log_debug("redis SET failed", "error=\"%s\"", reply->str);
        return;
    }
    ST_ADD(c->r, stores);
    brk_success(c->r);
}

static void on_index(redisAsyncContext *ac, void *rep, void *priv)
{
    struct edge_redis_conn *c = ac->data;
    redisReply *reply = rep;

    (void)priv;
    MC_CHECK_OBJ_NOTNULL(c, EDGE_REDIS_CONN_MAGIC);
    if (reply && reply->type == REDIS_REPLY_ERROR &&
        !atomic_exchange_explicit(&c->r->index_warned, 1, memory_order_relaxed))
        log_warn("redis path index not updated",
                 "error=\"%s\" effect=\"PURGE may miss copies; PEXPIRE NX/GT needs Redis 7\"",
                 reply->str);
}

/* Lists Redis key k in index set ik, which lives at least ttl_ms from now. Sent before
 * the copy's SET: a copy is never in Redis without its index entries (a member without
 * its copy costs a DEL of nothing). NX sets the expiry of a new set, GT only lengthens
 * it, so the index lasts as long as its longest lived copy. */
static void set_add(struct edge_redis_conn *c, const char ik[IKEY_LEN], const char k[RKEY_LEN],
                    uint64_t ttl_ms)
{
    char ttl[24];
    size_t tl = mc_u64_digits(ttl_ms, ttl);
    const char *sadd[] = {"SADD", ik, k};
    const size_t sadd_len[] = {4, IKEY_LEN, RKEY_LEN};
    redisAsyncCommandArgv(c->ac, on_index, NULL, 3, sadd, sadd_len);
    static const char *const how[] = {"NX", "GT"};
    for (int i = 0; i < 2; i++) {
        const char *px[] = {"PEXPIRE", ik, ttl, how[i]};
        const size_t px_len[] = {7, IKEY_LEN, tl, 2};
        redisAsyncCommandArgv(c->ac, on_index, NULL, 4, px, px_len);
    }
}

struct tag_add {
    struct edge_redis_conn *c;
    const char *k;
    uint64_t ttl_ms;
};

static void tag_add_one(void *arg, const char *tag, size_t tlen)
{
    struct tag_add *t = arg;
    char tk[IKEY_LEN], ttl[24], at[24], gone[24];
    uint64_t now = (uint64_t)units_wall_us() / 1000;

    tkey(tag, tlen, tk);
    size_t gl = mc_u64_digits(now > INDEX_SLACK_MS ? now - INDEX_SLACK_MS : 0, gone);
    const char *zrem[] = {"ZREMRANGEBYSCORE", tk, "-inf", gone};
    const size_t zrem_len[] = {16, IKEY_LEN, 4, gl};
    redisAsyncCommandArgv(t->c->ac, on_index, NULL, 4, zrem, zrem_len);
    size_t al = mc_u64_digits(now + t->ttl_ms, at);
    const char *zadd[] = {"ZADD", tk, at, t->k};
    const size_t zadd_len[] = {4, IKEY_LEN, al, RKEY_LEN};
    redisAsyncCommandArgv(t->c->ac, on_index, NULL, 4, zadd, zadd_len);
    size_t tl = mc_u64_digits(t->ttl_ms, ttl);
    static const char *const how[] = {"NX", "GT"};
    for (int i = 0; i < 2; i++) {
        const char *px[] = {"PEXPIRE", tk, ttl, how[i]};
        const size_t px_len[] = {7, IKEY_LEN, tl, 2};
        redisAsyncCommandArgv(t->c->ac, on_index, NULL, 4, px, px_len);
    }
}

/* Lists Redis key k (of primary key key[0..klen), object o) in its path's index and in
 * the index of each of its tags. */
static void index_add(struct edge_redis_conn *c, const char *key, size_t klen,
                      const struct cache_obj *o, const char k[RKEY_LEN], uint64_t ttl_ms)
{
    const char *slash = memchr(key, '/', klen);
    char ik[IKEY_LEN], tags[CACHE_OBJ_TAGS_MAX];

    if (!slash)
        return;
    ikey(slash, klen - (size_t)(slash - key), ik);
    set_add(c, ik, k, ttl_ms);
    size_t tl = cache_obj_tags(o, tags, sizeof(tags));
    struct tag_add t = {c, k, ttl_ms};
    /* Tags that do not fit are not indexed: their bans still refuse the copy at lookup. */
    if (tl != (size_t)-1)
        cache_tags_each(tags, tl, tag_add_one, &t);
}

void edge__redis_put(struct edge_redis_conn *c, const char *key, size_t klen,
                     const struct cache_obj *o, uint64_t ttl_ms)
{
    struct buf meta;
    char k[RKEY_LEN], ttl[24];

    MC_CHECK_OBJ_NOTNULL(c, EDGE_REDIS_CONN_MAGIC);
    struct edge_redis *r = c->r;
    if (ttl_ms == 0 || !o->body || cache_body_state(o->body) != CACHE_BODY_COMPLETE || c->closing)
        return;
    uint64_t blen = cache_body_len(o->body);
    if (blen > r->max_object) {
        ST_ADD(r, store_skipped_large);
        return;
    }
    /* A store never probes: a probe must come back within a deadline, and SETs have none. */
    if (atomic_load_explicit(&r->state, memory_order_acquire) != BRK_CLOSED) {
        ST_ADD(r, skipped_open);
        return;
    }
    if (c->state != C_UP) {
        ST_ADD(r, skipped_down);
        maybe_connect(c, 0);
        return;
    }
    buf_init(&meta, META_MAX);
    if (cache_pack_meta(&meta, key, klen, o) != 0) {
        ST_ADD(r, store_skipped_large);
        goto out;
    }
    /* The value is payload memory: when it cannot be had the object just is not shared. */
    size_t vlen = CACHE_SEAL_LEN + meta.len + (size_t)blen;
    char *v = malloc(vlen);
    if (!v)
        goto out;
    memcpy(v + CACHE_SEAL_LEN, meta.data, meta.len);
    struct cache_body_cursor cur;
    const char *span;
    size_t n, at = CACHE_SEAL_LEN + meta.len;
    cache_body_cursor_init(&cur, o->body);
    while ((n = cache_body_next(&cur, o->body, blen, SIZE_MAX, &span)) > 0) {
        memcpy(v + at, span, n);
        at += n;
    }
    MC_ASSERT(at == vlen); /* a complete body never changes */
    cache_pack_seal(v, vlen - CACHE_SEAL_LEN);
    rkey(key, klen, k);
    index_add(c, key, klen, o, k, MC_MIN(ttl_ms, TTL_MAX_MS) + INDEX_SLACK_MS);
    size_t tl = mc_u64_digits(MC_MIN(ttl_ms, TTL_MAX_MS), ttl);
    const char *argv[] = {"SET", k, v, "PX", ttl};
    const size_t argvlen[] = {3, RKEY_LEN, vlen, 2, tl};
    if (redisAsyncCommandArgv(c->ac, on_put, NULL, 5, argv, argvlen) != REDIS_OK)
        ST_ADD(r, errors);
    free(v);
out:
    buf_fini(&meta);
}

static void on_del(redisAsyncContext *ac, void *rep, void *priv)
{
    struct edge_redis_conn *c = ac->data;
    redisReply *reply = rep;

    MC_CHECK_OBJ_NOTNULL(c, EDGE_REDIS_CONN_MAGIC);
    if (!reply || reply->type == REDIS_REPLY_ERROR)
        ST_ADD(c->r, del_failed);
}

void edge__redis_del(struct edge_redis_conn *c, const char *key, size_t klen)
{
    char k[RKEY_LEN];

    MC_CHECK_OBJ_NOTNULL(c, EDGE_REDIS_CONN_MAGIC);
    if (c->closing || c->state != C_UP) {
        ST_ADD(c->r, del_failed);
        maybe_connect(c, 0);
        return;
    }
    rkey(key, klen, k);
    if (redisAsyncCommand(c->ac, on_del, NULL, "DEL %b", k, RKEY_LEN) != REDIS_OK)
        ST_ADD(c->r, del_failed);
}

/* A PURGE's deletes: DEL the copies, then SREM them from the index. */
struct rpurge {
    unsigned magic;
    struct edge_redis_conn *c; /* listed in c->purges, or NULL */
    struct rpurge *next;
    uint64_t deadline; /* loop time */
    edge_redis_purge_cb *cb;
    void *arg;
    int64_t deleted;  /* DEL's answer, -EIO until it came */
    unsigned pending; /* commands sent and not answered */
    int zset;         /* ik is a tag's sorted set (ZRANGE/ZREM), else a path's set */
    char ik[IKEY_LEN];
};

static uint64_t oldest_deadline(const struct edge_redis_conn *c)
{
    uint64_t at = UINT64_MAX;

    if (c->inflight)
        at = c->inflight->deadline;
    if (c->purges && c->purges->deadline < at)
        at = c->purges->deadline;
    return at;
}

static void purge_finish(struct rpurge *p)
{
    MC_CHECK_OBJ_NOTNULL(p, RPURGE_MAGIC);
    if (p->c) {
        struct rpurge **pp = &p->c->purges;
        while (*pp != p)
            pp = &(*pp)->next;
        *pp = p->next;
    }
    p->cb(p->arg, p->deleted);
    MC_FREE_OBJ(p);
}

/* The SREM's answer comes after the DEL's (Redis answers in order, and hiredis calls the
 * callbacks of a lost connection in order too): the copies are gone or not by the last
 * answer. A failed SREM only leaves members whose copies are gone. */
static void on_purge_reply(redisAsyncContext *ac, void *rep, void *priv)
{
    struct edge_redis_conn *c = ac->data;
    redisReply *reply = rep;
    struct rpurge *p = priv;

    MC_CHECK_OBJ_NOTNULL(c, EDGE_REDIS_CONN_MAGIC);
    MC_CHECK_OBJ_NOTNULL(p, RPURGE_MAGIC);
    if (p->deleted == -EIO) {
        /* The first answer is the DEL's. */
        if (reply && reply->type == REDIS_REPLY_INTEGER) {
            p->deleted = reply->integer;
        } else {
            p->deleted = -ECANCELED; /* so the SREM's answer is not taken for it */
            ST_ADD(c->r, del_failed);
            if (reply && reply->type == REDIS_REPLY_ERROR)
                log_warn("redis purge failed", "error=\"%s\"", reply->str);
        }
    }
    if (--p->pending == 0) {
        if (p->deleted == -ECANCELED)
            p->deleted = -EIO;
        purge_finish(p);
    }
}

/* Sends DEL keys and SREM index keys for the n Redis keys keys[0..n). Returns 0 when the
 * DEL went (the last answer finishes p), -EIO when nothing was sent. */
static int purge_send(struct edge_redis_conn *c, struct rpurge *p, size_t n, const char **keys,
                      const size_t *lens)
{
    const char **argv = mc_xmalloc((n + 2) * sizeof(*argv));
    size_t *argvlen = mc_xmalloc((n + 2) * sizeof(*argvlen));
    int rc = -EIO;

    memcpy(argv + 2, keys, n * sizeof(*argv));
    memcpy(argvlen + 2, lens, n * sizeof(*argvlen));
    argv[1] = "DEL";
    argvlen[1] = 3;
    if (redisAsyncCommandArgv(c->ac, on_purge_reply, p, (int)n + 1, argv + 1, argvlen + 1) !=
        REDIS_OK)
        goto out;
    p->pending++;
    rc = 0;
    argv[0] = p->zset ? "ZREM" : "SREM";
    argvlen[0] = 4;
    argv[1] = p->ik;
    argvlen[1] = IKEY_LEN;
    if (redisAsyncCommandArgv(c->ac, on_purge_reply, p, (int)n + 2, argv, argvlen) == REDIS_OK)
        p->pending++;
out:
    free(argv);
    free(argvlen);
    return rc;
}

static void on_purge_members(redisAsyncContext *ac, void *rep, void *priv)
{
    struct edge_redis_conn *c = ac->data;
    redisReply *reply = rep;
    struct rpurge *p = priv;

    MC_CHECK_OBJ_NOTNULL(c, EDGE_REDIS_CONN_MAGIC);
    MC_CHECK_OBJ_NOTNULL(p, RPURGE_MAGIC);
    if (!reply || reply->type != REDIS_REPLY_ARRAY || ac != c->ac) {
        ST_ADD(c->r, del_failed);
        if (reply && reply->type == REDIS_REPLY_ERROR)
            log_warn("redis purge failed", "error=\"%s\"", reply->str);
        purge_finish(p);
        return;
    }
    size_t n = 0;
    const char **keys = mc_xmalloc((reply->elements + 1) * sizeof(*keys));
    size_t *lens = mc_xmalloc((reply->elements + 1) * sizeof(*lens));
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *m = reply->element[i];
        /* Only keys of this tier's form: the index is data anyone with access may write. */
        if (m->type == REDIS_REPLY_STRING && m->len == RKEY_LEN &&
            memcmp(m->str, RKEY_PREFIX, sizeof(RKEY_PREFIX) - 1) == 0) {
            keys[n] = m->str;
            lens[n++] = RKEY_LEN;
        }
    }
    if (n == 0) {
        p->deleted = 0;
        purge_finish(p);
    } else if (purge_send(c, p, n, keys, lens) < 0) {
        ST_ADD(c->r, del_failed);
        purge_finish(p);
    }
    free(keys);
    free(lens);
}

/* p's first command is queued: it now waits for Redis, within its deadline. */
static void purge_wait(struct edge_redis_conn *c, struct rpurge *p)
{
    struct rpurge **pp = &c->purges;

    p->c = c;
    p->deadline = uv_now(c->loop) + MC_MAX(c->r->timeout_ms, (uint64_t)PURGE_TIMEOUT_MIN_MS);
    while (*pp)
        pp = &(*pp)->next;
    *pp = p;
    arm_timer(c);
}

static struct rpurge *purge_new(edge_redis_purge_cb *cb, void *arg)
{
    struct rpurge *p = mc_xmalloc(sizeof(*p));

    MC_INIT_OBJ(p, RPURGE_MAGIC);
    p->cb = cb;
    p->arg = arg;
    p->deleted = -EIO;
    p->pending = 0;
    p->zset = 0;
    p->c = NULL;
    p->next = NULL;
    return p;
}

/* Deletes every copy index set p->ik lists, and their members from it. */
static void purge_members(struct edge_redis_conn *c, struct rpurge *p)
{
    int rc = p->zset ? redisAsyncCommand(c->ac, on_purge_members, p, "ZRANGE %b 0 -1", p->ik,
                                         (size_t)IKEY_LEN)
                     : redisAsyncCommand(c->ac, on_purge_members, p, "SMEMBERS %b", p->ik,
                                         (size_t)IKEY_LEN);
    if (rc != REDIS_OK) {
        ST_ADD(c->r, del_failed);
        purge_finish(p);
    } else {
        purge_wait(c, p);
    }
}

void edge__redis_purge(struct edge_redis_conn *c, const char *host, size_t hlen, const char *pathq,
                       size_t plen, edge_redis_purge_cb *cb, void *arg)
{
    MC_CHECK_OBJ_NOTNULL(c, EDGE_REDIS_CONN_MAGIC);
    struct rpurge *p = purge_new(cb, arg);
    ikey(pathq, plen, p->ik);
    if (c->closing || c->state != C_UP) {
        ST_ADD(c->r, del_failed);
        maybe_connect(c, 0);
        p->deleted = -ENOTCONN;
        purge_finish(p);
        return;
    }
    if (host) {
        char k[RKEY_LEN];
        char *key = mc_xmalloc(hlen + plen);
        memcpy(key, host, hlen);
        memcpy(key + hlen, pathq, plen);
        rkey(key, hlen + plen, k);
        free(key);
        const char *keys[] = {k};
        const size_t lens[] = {RKEY_LEN};
        if (purge_send(c, p, 1, keys, lens) < 0) {
            ST_ADD(c->r, del_failed);
            purge_finish(p);
        } else {
            purge_wait(c, p);
        }
        return;
    }
    purge_members(c, p);
}

void edge__redis_purge_tag(struct edge_redis_conn *c, const char *tag, size_t tlen,
                           edge_redis_purge_cb *cb, void *arg)
{
    MC_CHECK_OBJ_NOTNULL(c, EDGE_REDIS_CONN_MAGIC);
    struct rpurge *p = purge_new(cb, arg);
    p->zset = 1;
    tkey(tag, tlen, p->ik);
    if (c->closing || c->state != C_UP) {
        ST_ADD(c->r, del_failed);
        maybe_connect(c, 0);
        p->deleted = -ENOTCONN;
        purge_finish(p);
        return;
    }
    purge_members(c, p);
}

/* ---- loops ---- */

static void on_handle_closed(uv_handle_t *h)
{
    struct edge_redis_conn *c = h->data;

    MC_CHECK_OBJ_NOTNULL(c, EDGE_REDIS_CONN_MAGIC);
    if (--c->handles == 0 && !c->gai_busy)
        MC_FREE_OBJ(c);
}

struct edge_redis_conn *edge__redis_loop_init(struct edge_redis *r, uv_loop_t *loop)
{
    MC_CHECK_OBJ_NOTNULL(r, EDGE_REDIS_MAGIC);
    struct edge_redis_conn *c = mc_xcalloc(1, sizeof(*c));
    MC_INIT_OBJ(c, EDGE_REDIS_CONN_MAGIC);
    c->r = r;
    c->loop = loop;
    c->reconnect_ms = RECONNECT_MIN_MS;
    MC_ASSERT(uv_timer_init(loop, &c->timer) == 0);
    MC_ASSERT(uv_idle_init(loop, &c->idle) == 0);
    c->timer.data = c->idle.data = c->gai.data = c;
    c->handles = 2;
    atomic_fetch_add_explicit(&r->nconns, 1, memory_order_relaxed);
    /* Connecting now, in the background, spares this loop's first requests a skip. */
    if (atomic_load_explicit(&r->state, memory_order_acquire) == BRK_CLOSED)
        conn_connect(c);
    return c;
}

void edge__redis_loop_fini(struct edge_redis_conn **cp)
{
    struct edge_redis_conn *c = *cp;

    *cp = NULL;
    if (!c)
        return;
    MC_CHECK_OBJ_NOTNULL(c, EDGE_REDIS_CONN_MAGIC);
    MC_ASSERT(!c->closing);
    c->closing = 1;
    if (c->ac)
        conn_drop(c, NULL, NULL); /* in-flight GETs move to `done` */
    /* A lookup already running in the pool cannot be cancelled; its callback frees. */
    if (c->gai_busy)
        uv_cancel((uv_req_t *)&c->gai);
    while (c->done)
        deliver(c); /* callers may call again from their callbacks; answered here too */
    atomic_fetch_sub_explicit(&c->r->nconns, 1, memory_order_relaxed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->idle, on_handle_closed);
}

/* ---- configuration ---- */

/* RFC 3986 %XX decoding of URL credentials; NULL for a bad escape or %00 (AUTH takes
 * C strings). */
static char *pct_decode(const char *s, size_t n)
{
    char *out = mc_xmalloc(n + 1), *p = out;

    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            *p++ = s[i];
            continue;
        }
        int hi = i + 2 < n ? mc_hexval(s[i + 1]) : -1, lo = i + 2 < n ? mc_hexval(s[i + 2]) : -1;
        if (hi < 0 || lo < 0 || (hi | lo) == 0) {
            free(out);
            return NULL;
        }
        *p++ = (char)(hi << 4 | lo);
        i += 2;
    }
    *p = '\0';
    return out;
}

/* The URL for messages, its password replaced by "***". */
static void mask_url(const char *url, char *out, size_t outlen)
{
    const char *auth = strstr(url, "://");
    auth = auth ? auth + 3 : url;
    size_t alen = strcspn(auth, "/?#");
    const char *at = NULL;
    for (size_t i = 0; i < alen; i++)
        if (auth[i] == '@')
            at = auth + i;
    const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (!colon)
        snprintf(out, outlen, "%s", url);
    else
        snprintf(out, outlen, "%.*s***%s", (int)(colon + 1 - url), url, at);
}

static int parse_port(const char *s, size_t n, int *out)
{
    unsigned v = 0;

    if (n == 0 || n > 5)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return -EINVAL;
    *out = (int)v;
    return 0;
}

/* Fills r's host, port, user, pass and db from url. Returns 0 or -EINVAL with *why. */
static int parse_url(struct edge_redis *r, const char *url, const char **why)
{
    const char *p, *hs, *he, *pe;
    char ipbuf[16];

    if (strncasecmp(url, "rediss://", 9) == 0) {
        *why = "TLS (rediss://) is not supported";
        return -EINVAL;
    }
    if (strncasecmp(url, "redis://", 8) != 0) {
        *why = "expected redis://HOST:PORT[/DB]";
        return -EINVAL;
    }
    p = url + 8;
    size_t alen = strcspn(p, "/?#");
    const char *aend = p + alen, *at = NULL;
    for (const char *q = p; q < aend; q++)
        if (*q == '@')
            at = q;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon) {
            *why = "credentials must be [user]:password@";
            return -EINVAL;
        }
        if (colon > p && !(r->user = pct_decode(p, (size_t)(colon - p)))) {
            *why = "bad %-escape in the user name";
            return -EINVAL;
        }
        if (!(r->pass = pct_decode(colon + 1, (size_t)(at - colon - 1)))) {
            *why = "bad %-escape in the password";
            return -EINVAL;
        }
        if (!r->pass[0]) {
            *why = "empty password";
            return -EINVAL;
        }
        p = at + 1;
    }
    if (*p == '[') {
        hs = p + 1;
        he = memchr(hs, ']', (size_t)(aend - hs));
        if (!he) {
            *why = "unterminated [IPv6] address";
            return -EINVAL;
        }
        pe = he + 1;
        r->host = mc_xstrndup(hs, (size_t)(he - hs));
        if (uv_inet_pton(AF_INET6, r->host, ipbuf) != 0) {
            *why = "bad IPv6 address";
            return -EINVAL;
        }
        r->host_is_ip = 1;
    } else {
        hs = p;
        const char *colon = memchr(hs, ':', (size_t)(aend - hs));
        if (colon && memchr(colon + 1, ':', (size_t)(aend - colon - 1))) {
            *why = "an IPv6 address needs brackets";
            return -EINVAL;
        }
        he = pe = colon ? colon : aend;
        for (const char *q = hs; q < he; q++) {
            if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
                  (*q >= '0' && *q <= '9') || *q == '.' || *q == '-' || *q == '_')) {
                *why = "bad character in the host";
                return -EINVAL;
            }
        }
        r->host = mc_xstrndup(hs, (size_t)(he - hs));
        r->host_is_ip = uv_inet_pton(AF_INET, r->host, ipbuf) == 0;
    }
    if (!r->host[0]) {
        *why = "missing host";
        return -EINVAL;
    }
    r->port = 6379;
    if (pe < aend) {
        if (*pe != ':') {
            *why = "junk after the host";
            return -EINVAL;
        }
        const char *ps = pe + 1;
        if (parse_port(ps, (size_t)(aend - ps), &r->port) != 0) {
            *why = "bad port";
            return -EINVAL;
        }
    }
    p = aend;
    if (*p == '?' || *p == '#') {
        *why = "query and fragment are not supported";
        return -EINVAL;
    }
    if (*p == '/' && p[1]) {
        char *end;
        errno = 0;
        unsigned long db = strtoul(p + 1, &end, 10);
        if (*end || errno || p[1] < '0' || p[1] > '9' || db > 1000000) {
            *why = "bad database number";
            return -EINVAL;
        }
        r->db = (unsigned)db;
    }
    return 0;
}

static void redis_free_fields(struct edge_redis *r)
{
    free(r->host);
    free(r->user);
    free(r->pass);
}

int edge__redis_new(const char *url, uint64_t max_object, uint64_t timeout_ms,
                    struct edge_redis **out, char *err, size_t errlen)
{
    const char *why = NULL;
    char masked[512];

    struct edge_redis *r = mc_xcalloc(1, sizeof(*r));
    MC_INIT_OBJ(r, EDGE_REDIS_MAGIC);
    if (!url || parse_url(r, url, &why) != 0) {
        mask_url(url ? url : "", masked, sizeof(masked));
        /* A message cut short by errlen is still a message (and gcc wants the result used). */
        if (snprintf(err, errlen, "redis URL '%s': %s", masked, why ? why : "missing") < 0)
            err[0] = '\0';
        redis_free_fields(r);
        MC_FREE_OBJ(r);
        return -EINVAL;
    }
    r->max_object = max_object ? max_object : EDGE_REDIS_MAX_OBJECT_DEFAULT;
    r->timeout_ms = timeout_ms ? timeout_ms : EDGE_REDIS_TIMEOUT_DEFAULT_MS;
    r->connect_timeout_ms = MC_MAX(4 * r->timeout_ms, (uint64_t)CONNECT_TIMEOUT_MIN_MS);
    r->value_cap = CACHE_SEAL_LEN + META_MAX + r->max_object;
    r->backoff_ms = BREAKER_BACKOFF_MIN_MS;
    pthread_mutex_init(&r->mtx, NULL);
    *out = r;
    return 0;
}

void edge__redis_free(struct edge_redis **rp)
{
    struct edge_redis *r = *rp;

    if (!r)
        return;
    MC_CHECK_OBJ_NOTNULL(r, EDGE_REDIS_MAGIC);
    MC_ASSERT(atomic_load(&r->nconns) == 0);
    pthread_mutex_destroy(&r->mtx);
    redis_free_fields(r);
    MC_FREE_OBJ(r);
    *rp = NULL;
}

void edge__redis_stats(const struct edge_redis *cr, struct edge_redis_stats *out)
{
    struct edge_redis *r = (struct edge_redis *)cr;

    MC_CHECK_OBJ_NOTNULL(r, EDGE_REDIS_MAGIC);
#define LD(f) atomic_load_explicit(&r->st.f, memory_order_relaxed)
    out->hits = LD(hits);
    out->misses = LD(misses);
    out->errors = LD(errors);
    out->corrupt = LD(corrupt);
    out->timeouts = LD(timeouts);
    out->skipped_open = LD(skipped_open);
    out->skipped_down = LD(skipped_down);
    out->stores = LD(stores);
    out->store_skipped_large = LD(store_skipped_large);
    out->del_failed = LD(del_failed);
    out->breaker_trips = LD(trips);
#undef LD
    out->breaker_open = atomic_load_explicit(&r->state, memory_order_acquire) != BRK_CLOSED;
}

const char *edge__redis_state(const struct edge_redis *cr)
{
    struct edge_redis *r = (struct edge_redis *)cr;

    MC_CHECK_OBJ_NOTNULL(r, EDGE_REDIS_MAGIC);
    switch (atomic_load_explicit(&r->state, memory_order_acquire)) {
    case BRK_OPEN: return "open";
    case BRK_HALF: return "half-open";
    default: return "closed";
    }
}

/* ---- the Redis tier of the chain (edge_tier.c) ---- */

struct redis_get {
    struct edge_worker *w;
    struct http_exchange *x;
    char *key;
    size_t klen;
    struct edge_rctx *rc;
    edge_tier_done_f done;
    uint64_t mark; /* edge__tier_purge_mark() when the lookup started */
};

static void on_redis_get(void *arg, struct cache_obj *o, const char *pkey, size_t plen)
{
    struct redis_get *g = arg;
    struct edge_worker *w = g->w;

    (void)pkey;
    (void)plen;
    /* The copy is one variant: it serves only requests with the same Vary'd values. */
    if (o && !l1_variant_matches(o, http_x_request(g->x)))
        cache_obj_unref(&o);
    /* Every Redis hit enters L1 (the lookup already cost a round trip), unless a PURGE
     * ran meanwhile: the copy may be one it deleted. */
    if (o && !w->stopping && edge__tier_admit(w->e, g->mark, g->key, g->klen, o) == 0)
        metrics_counter_add(w->e->m.stored, 1);
    edge__tier_answered(w, g->x, g->key, g->klen, g->rc, EDGE_LV_REDIS, o, g->done);
    edge_rctx_free(&g->rc);
    free(g->key);
    free(g);
}

static void redis_lookup(struct edge_worker *w, struct http_exchange *x, const char *key,
                         size_t klen, const struct edge_rctx *rc, edge_tier_done_f done)
{
    if (!w->redis) {
        /* This loop's connection is gone: it is stopping. */
        edge__tier_answered(w, x, key, klen, rc, EDGE_LV_REDIS, NULL, done);
        return;
    }
    struct redis_get *g = mc_xmalloc(sizeof(*g));
    g->w = w;
    g->x = x;
    g->key = mc_xstrndup(key, klen);
    g->klen = klen;
    g->rc = edge_rctx_dup(rc);
    g->done = done;
    g->mark = edge__tier_purge_mark(w->e);
    edge__redis_get(w->redis, key, klen, on_redis_get, g);
}

static void redis_store(struct edge_worker *w, const char *key, size_t klen, struct cache_obj *o)
{
    /* Capped: bans cannot walk Redis, so they outlive every copy stored before them. */
    int64_t ttl = MC_MIN(o->lifetime - edge_obj_age(o, units_wall_s()), EDGE_INVAL_REDIS_KEEP_S);

    if (w->redis && ttl > 0 && cache_body_file(o->body, NULL) < 0)
        edge__redis_put(w->redis, key, klen, o, (uint64_t)ttl * 1000u);
}

static void redis_drop(struct edge_worker *w, const char *key, size_t klen)
{
    if (w->redis)
        edge__redis_del(w->redis, key, klen);
}

static void redis_loop_init(struct edge_worker *w)
{
    w->redis = edge__redis_loop_init(w->e->redis, w->loop);
}

static void redis_loop_fini(struct edge_worker *w)
{
    if (w->redis)
        edge__redis_loop_fini(&w->redis);
}

#define REDIS_STAT(field)                                                                          \
    static double redis_stat_##field(void *arg)                                                    \
    {                                                                                              \
        struct edge_redis_stats st;                                                                \
        edge__redis_stats(((struct edge *)arg)->redis, &st);                                       \
        return (double)st.field;                                                                   \
    }
REDIS_STAT(hits)
REDIS_STAT(misses)
REDIS_STAT(errors)
REDIS_STAT(corrupt)
REDIS_STAT(timeouts)
REDIS_STAT(skipped_open)
REDIS_STAT(skipped_down)
REDIS_STAT(stores)
REDIS_STAT(breaker_trips)
REDIS_STAT(breaker_open)

static void redis_metrics(struct edge *e)
{
    metrics_counter_fn("mlcdn_edge_redis_hits_total", "Redis lookups that found the object", NULL,
                       redis_stat_hits, e);
    metrics_counter_fn("mlcdn_edge_redis_misses_total", "Redis lookups that found nothing", NULL,
                       redis_stat_misses, e);
    metrics_counter_fn("mlcdn_edge_redis_errors_total",
                       "Redis timeouts, connection failures and error replies", NULL,
                       redis_stat_errors, e);
    metrics_counter_fn("mlcdn_edge_redis_corrupt_total",
                       "Redis values refused for a bad frame, length or checksum (served "
                       "from the next tier)",
                       NULL, redis_stat_corrupt, e);
    metrics_counter_fn("mlcdn_edge_redis_timeouts_total",
                       "Redis lookups answered as misses at their deadline", NULL,
                       redis_stat_timeouts, e);
    metrics_counter_fn("mlcdn_edge_redis_skipped_total", "Redis lookups skipped: breaker open",
                       "reason=\"breaker\"", redis_stat_skipped_open, e);
    metrics_counter_fn("mlcdn_edge_redis_skipped_total", "Redis lookups skipped: breaker open",
                       "reason=\"disconnected\"", redis_stat_skipped_down, e);
    metrics_counter_fn("mlcdn_edge_redis_stores_total", "Objects stored in Redis", NULL,
                       redis_stat_stores, e);
    metrics_counter_fn("mlcdn_edge_redis_breaker_trips_total",
                       "Times the Redis circuit breaker opened", NULL, redis_stat_breaker_trips, e);
    metrics_gauge_fn("mlcdn_edge_redis_breaker_open", "1 while the Redis tier is skipped", NULL,
                     redis_stat_breaker_open, e);
}

static int redis_open(struct edge *e, char *err, size_t errlen)
{
    int rc;

    if (!e->cfg.redis || !*e->cfg.redis)
        return 0;
    rc = edge__redis_new(e->cfg.redis, e->cfg.redis_max_object, e->cfg.redis_timeout_ms, &e->redis,
                         err, errlen);
    if (rc != 0)
        return rc;
    redis_metrics(e);
    return 1;
}

static void redis_close(struct edge *e)
{
    if (e->redis)
        edge__redis_free(&e->redis);
}

const struct edge_tier_ops edge__tier_redis_ops = {
    .name = "REDIS",
    .level = EDGE_LV_REDIS,
    .open = redis_open,
    .close = redis_close,
    .loop_init = redis_loop_init,
    .loop_fini = redis_loop_fini,
    .lookup = redis_lookup,
    .store = redis_store,
    .drop = redis_drop,
};
