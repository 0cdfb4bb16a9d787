/* src/edge/edge_inval.c: invalidation on the edge (docs/internals/edge.md "Invalidation").
 *
 * edge__invalidate_json() applies one POST /admin/invalidate body (also what the Redis
 * Streams consumer hands over): exact URLs are purged at once from L1, L2 and Redis (as
 * PURGE does); tags are removed at once through the tag indexes (cache_tags.h for L1
 * and L2, a Redis set per tag). Prefixes, globs, tags and models become bans
 * (cache_ban.h), O(1) to issue, checked by every lookup against the object's stored time
 * and tags (edge__inval_verdict) and by every store (edge__inval_l1_insert,
 * edge__inval_store_begin).
 *
 * The lurker, a thread of its own, removes what the bans match from L1 and L2 and then
 * retires them: it first syncs the bans' insert gate, so that no object checked before
 * the newest ban is still on its way into a store, walks both stores, and marks the bans
 * up to that one walked. The Redis tier cannot be walked: its copies expire on their own
 * within EDGE_INVAL_REDIS_KEEP_S (edge_redis.c caps their lifetime), and a ban stays
 * that long after its walk when the edge has a Redis tier.
 *
 * Bans live in the L2 directory's "bans" file when there is a disk tier, so an object
 * banned before a restart is not served from the disk after it. Without a disk tier
 * nothing survives a restart anyway (L1 starts empty; Redis copies: see the docs).
 *
 * Threads: edge__invalidate_json runs on a worker loop and answers on it (the Redis
 * deletes answer on the same loop); the checks run on any loop; the lurker only calls
 * the stores' walks and the ban list. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cache/cache_disk.h"
#include "cache/cache_key.h"
#include "cache/cache_tags.h"
#include "core/log.h"
#include "core/mc.h"
#include "core/units.h"
#include "edge/edge_int.h"
#include "edge/edge_redis.h"
#include "cache/cache_ban.h"
#include "predict/predict.h"

#define EDGE_INVAL_MAGIC 0x494e564cu
#define INVAL_OP_MAGIC 0x494e4f50u
#define LURK_IDLE_MS 1000              /* between walks while bans are active */
#define SOFT_GRACE_US (30 * 1000000LL) /* see lurk_once */
#define MAX_LIST 1000                  /* entries of urls / patterns / tags in one body */
#define MODEL_ID_MAX 128
/* The tag index holds at most one (tag, key) pair per this many bytes of L1 budget (a
 * pair costs about 120 bytes: about 6% of L1 on top of it), and at least TAG_PAIRS_MIN. */
#define TAG_PAIRS_PER_BYTES 2048u
#define TAG_PAIRS_MIN 4096u

/* How a request's object was found invalid, for the removal counter. */
enum { BY_BAN, BY_TAG, BY_LURKER, BY__N };
static const char *const by_name[BY__N] = {"ban", "tag", "lurker"};
/* What an invalidation named, for the invalidations counter. */
enum { K_URL, K_PREFIX, K_PATTERN, K_TAG, K_MODEL, K_ALL, K__N };
static const char *const k_name[K__N] = {"url", "prefix", "pattern", "tag", "model", "all"};

struct edge_inval {
    unsigned magic;
    struct cache_bans *bans;
    struct cache_tags *tags; /* tag -> primary keys stored in L1 and L2 */
    int64_t keep_us;         /* how long a walked ban stays (the Redis tier's horizon), 0 without */
    pthread_t lurker;
    int started;
    pthread_mutex_t mtx;
    pthread_cond_t cond;
    int stop, kicked; /* mtx */
    struct metrics_counter *issued, *retired;
    struct metrics_counter *removed[BY__N];
    struct metrics_counter *kinds[K__N];
    struct metrics_counter *predictions;
    _Atomic uint64_t walks;
};

/* ---- checks ---- */

/* The path and query of a primary key (its route part, after '\n', left out). */
static const char *key_pathq(const char *key, size_t klen, size_t *plen)
{
    const char *slash = memchr(key, '/', klen);
    if (!slash) {
        *plen = 0;
        return key + klen;
    }
    const char *nl = memchr(slash, '\n', (size_t)(key + klen - slash));
    *plen = (size_t)((nl ? nl : key + klen) - slash);
    return slash;
}

static enum cache_ban_verdict verdict_of(struct edge_inval *iv, const char *key, size_t klen,
                                         const struct cache_obj *o, enum cache_ban_kind *kind)
{
    char tags[CACHE_OBJ_TAGS_MAX];
    size_t plen, tl;
    const char *pq;

    if (cache_bans_count(iv->bans) == 0)
        return CACHE_BAN_NONE;
    /* As Varnish moves an object's ban pointer: the bans up to ban_checked_us found
     * nothing in o, so only newer ones are asked. Without it, every lookup of an object
     * older than the bans would match it against all of them, for as long as they live
     * (24 h with a Redis tier). The newest ban is read before the check: a ban added
     * meanwhile is newer still, and is asked next time. The mark caches a judgement,
     * not the object's content, so it is written through the const reference. */
    struct cache_obj *mo = (struct cache_obj *)o;
    int64_t checked = atomic_load_explicit(&mo->ban_checked_us, memory_order_relaxed);
    int64_t since = checked ? MC_MAX(o->stored_us, checked + 1) : o->stored_us;
    int64_t newest = cache_bans_newest(iv->bans);
    if (newest < since)
        return CACHE_BAN_NONE;
    pq = key_pathq(key, klen, &plen);
    tl = cache_obj_tags(o, tags, sizeof(tags));
    if (tl == (size_t)-1)
        tl = 0;
    enum cache_ban_verdict v = cache_bans_check(iv->bans, pq, plen, tags, tl, since, kind);
    while (v == CACHE_BAN_NONE && checked < newest &&
           !atomic_compare_exchange_weak_explicit(&mo->ban_checked_us, &checked, newest,
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
    return v;
}

enum cache_ban_verdict edge__inval_verdict(struct edge *e, const char *key, size_t klen,
                                           const struct cache_obj *o)
{
    enum cache_ban_kind kind = CACHE_BAN_PREFIX;
    enum cache_ban_verdict v = verdict_of(e->inval, key, klen, o, &kind);

    if (v == CACHE_BAN_HARD)
        metrics_counter_add(e->inval->removed[kind == CACHE_BAN_TAG || kind == CACHE_BAN_TAG_PREFIX
                                                  ? BY_TAG
                                                  : BY_BAN],
                            1);
    if (v == CACHE_BAN_NONE && atomic_load(&((struct cache_obj *)o)->inval_stale))
        v = CACHE_BAN_SOFT;
    return v;
}

/* Lists o under its tags in the tag index (a tag purge's way to L1 and L2). */
static void index_tags(struct edge_inval *iv, const char *key, size_t klen,
                       const struct cache_obj *o)
{
    char tags[CACHE_OBJ_TAGS_MAX];
    size_t tl = cache_obj_tags(o, tags, sizeof(tags));

    /* Tags that do not fit are not indexed: the tag's ban still finds the object. */
    if (tl != (size_t)-1 && tl > 0)
        cache_tags_add(iv->tags, key, klen, tags, tl);
}

int edge__inval_l1_insert(struct edge *e, const char *key, size_t klen, struct cache_obj *o)
{
    struct edge_inval *iv = e->inval;
    unsigned tok = cache_bans_gate_enter(iv->bans);
    enum cache_ban_verdict v = verdict_of(iv, key, klen, o, NULL);
    int rc = -ECANCELED;

    if (v == CACHE_BAN_SOFT)
        atomic_store(&o->inval_stale, 1);
    if (v != CACHE_BAN_HARD)
        rc = l1_insert(e->l1, key, klen, o);
    if (rc == 0)
        index_tags(iv, key, klen, o);
    cache_bans_gate_exit(iv->bans, tok);
    return rc;
}

unsigned edge__inval_store_begin(struct edge *e, const char *key, size_t klen,
                                 const struct cache_obj *o, int *ok)
{
    struct edge_inval *iv = e->inval;
    unsigned tok = cache_bans_gate_enter(iv->bans);

    /* A soft-banned copy may still be stored: lookups mark it stale while the ban lives,
     * and the lurker drops such cold copies from L2 before it retires the ban. */
    *ok = verdict_of(iv, key, klen, o, NULL) != CACHE_BAN_HARD;
    /* Listed before the store: a key listed without its copy is a removal of nothing. */
    if (*ok)
        index_tags(iv, key, klen, o);
    return tok;
}

void edge__inval_store_end(struct edge *e, unsigned tok)
{
    cache_bans_gate_exit(e->inval->bans, tok);
}

/* ---- the lurker ---- */

struct walk_ctx {
    struct edge_inval *iv;
    size_t marked;
    int64_t upto; /* L2: only the bans issued up to this time are applied */
};

static int l1_walk_fn(void *arg, const char *pkey, size_t plen, struct cache_obj *o)
{
    struct walk_ctx *c = arg;
    enum cache_ban_verdict v = verdict_of(c->iv, pkey, plen, o, NULL);

    if (v == CACHE_BAN_SOFT && !atomic_exchange(&o->inval_stale, 1))
        c->marked++;
    return v == CACHE_BAN_HARD;
}

static int l2_walk_fn(void *arg, const char *pkey, size_t plen, int64_t stored_us, const char *tags,
                      size_t tags_len)
{
    struct walk_ctx *c = arg;
    size_t pl;
    const char *pq = key_pathq(pkey, plen, &pl);

    /* Soft-banned copies go too, once their grace is over (lurk_once): L1's copy (if any)
     * is marked stale and refreshed, and a cold disk copy is not worth a ban kept alive
     * for it. */
    return cache_bans_check_upto(c->iv->bans, pq, pl, tags, tags_len, stored_us, c->upto, NULL) !=
           CACHE_BAN_NONE;
}

static void lurk_once(struct edge *e)
{
    struct edge_inval *iv = e->inval;
    int64_t upto = cache_bans_newest(iv->bans);
    size_t n = 0;

    if (!upto)
        return;
    /* A soft ban gives the L2 copies it matches SOFT_GRACE_US to be served stale and
     * refreshed before the walk drops those still cold: until then the walk applies
     * only the bans before it, and marks only those walked. */
    int64_t soft = cache_bans_soft_since(iv->bans, units_wall_us() - SOFT_GRACE_US);
    if (soft && soft <= upto)
        upto = soft - 1;
    struct walk_ctx c = {iv, 0, upto};
    /* Every store that checked its object before `upto` was issued has finished: what it
     * stored is in L1 or L2 now, where the walk will find it. */
    cache_bans_gate_sync(iv->bans);
    n += l1_walk(e->l1, l1_walk_fn, &c);
    int complete = 1;
    if (e->l2) {
        /* Files the start-up rebuild has not indexed yet are not walked: the bans stay
         * until a walk after it. Lookups check those files meanwhile. */
        complete = l2_ready(e->l2);
        n += l2_walk(e->l2, l2_walk_fn, &c);
        /* The files must be gone, not only unindexed, before the bans may be forgotten:
         * a restart re-indexes whatever is on the disk. */
        l2_flush_unlinks(e->l2);
    }
    metrics_counter_add(iv->removed[BY_LURKER], n);
    atomic_fetch_add(&iv->walks, 1);
    if (complete)
        cache_bans_walked(iv->bans, upto, units_wall_us());
    size_t r = cache_bans_retire(iv->bans, units_wall_us(), iv->keep_us);
    metrics_counter_add(iv->retired, r);
}

static void *lurker_main(void *arg)
{
    struct edge *e = arg;
    struct edge_inval *iv = e->inval;

    pthread_mutex_lock(&iv->mtx);
    while (!iv->stop) {
        if (!iv->kicked) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += LURK_IDLE_MS / 1000;
            pthread_cond_timedwait(&iv->cond, &iv->mtx, &ts);
        }
        if (iv->stop)
            break;
        iv->kicked = 0;
        pthread_mutex_unlock(&iv->mtx);
        lurk_once(e);
        pthread_mutex_lock(&iv->mtx);
    }
    pthread_mutex_unlock(&iv->mtx);
    return NULL;
}

static void lurker_kick(struct edge_inval *iv)
{
    pthread_mutex_lock(&iv->mtx);
    iv->kicked = 1;
    pthread_cond_signal(&iv->cond);
    pthread_mutex_unlock(&iv->mtx);
}

static double bans_active_read(void *arg)
{
    return (double)cache_bans_count(((struct edge_inval *)arg)->bans);
}

static double tag_pairs_read(void *arg)
{
    return (double)cache_tags_pairs(((struct edge_inval *)arg)->tags);
}

static double walks_read(void *arg)
{
    return (double)atomic_load(&((struct edge_inval *)arg)->walks);
}

static double tag_resets_read(void *arg)
{
    return (double)cache_tags_resets(((struct edge_inval *)arg)->tags);
}

int edge__inval_open(struct edge *e, char *err, size_t errlen)
{
    struct edge_inval *iv = mc_xcalloc(1, sizeof(*iv));
    pthread_condattr_t ca;
    char labels[64];
    int rc;

    MC_INIT_OBJ(iv, EDGE_INVAL_MAGIC);
    iv->bans = cache_bans_new();
    iv->tags = cache_tags_new(MC_MAX(TAG_PAIRS_MIN, l1_budget(e->l1) / TAG_PAIRS_PER_BYTES));
    pthread_mutex_init(&iv->mtx, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&iv->cond, &ca);
    pthread_condattr_destroy(&ca);
    iv->keep_us = e->redis ? (int64_t)EDGE_INVAL_REDIS_KEEP_S * 1000000 : 0;
    e->inval = iv;
    if (e->cfg.disk_dir && *e->cfg.disk_dir) {
        size_t pl = strlen(e->cfg.disk_dir) + 8;
        char *path = mc_xmalloc(pl);
        snprintf(path, pl, "%s/bans", e->cfg.disk_dir);
        rc = cache_bans_attach(iv->bans, path, err, errlen);
        free(path);
        if (rc != 0)
            return rc;
    }
    iv->issued = metrics_counter("mlcdn_edge_bans_issued_total",
                                 "Bans issued (prefixes, patterns, tags, models)", NULL);
    iv->retired = metrics_counter("mlcdn_edge_bans_retired_total",
                                  "Bans retired by the lurker once applied everywhere", NULL);
    for (int i = 0; i < BY__N; i++) {
        snprintf(labels, sizeof(labels), "by=\"%s\"", by_name[i]);
        iv->removed[i] = metrics_counter("mlcdn_edge_invalidated_objects_total",
                                         "Objects removed by invalidation: found banned at "
                                         "lookup (ban, tag) or removed by the lurker",
                                         labels);
    }
    for (int i = 0; i < K__N; i++) {
        snprintf(labels, sizeof(labels), "kind=\"%s\"", k_name[i]);
        iv->kinds[i] = metrics_counter("mlcdn_edge_invalidations_total",
                                       "Invalidation entries applied, by kind", labels);
    }
    iv->predictions = metrics_counter("mlcdn_edge_invalidated_predictions_total",
                                      "Cached predictions dropped by model invalidations", NULL);
    metrics_gauge_fn("mlcdn_edge_bans_active", "Bans not yet retired", NULL, bans_active_read, iv);
    metrics_gauge_fn("mlcdn_edge_tag_index_pairs", "(tag, key) pairs in the tag index of L1 and L2",
                     NULL, tag_pairs_read, iv);
    metrics_counter_fn("mlcdn_edge_ban_lurker_walks_total", "Walks of L1 and L2 by the ban lurker",
                       NULL, walks_read, iv);
    metrics_counter_fn("mlcdn_edge_tag_index_resets_total",
                       "Times the tag index was full and started over (its tags' bans still "
                       "apply)",
                       NULL, tag_resets_read, iv);
    if (pthread_create(&iv->lurker, NULL, lurker_main, e) != 0) {
        snprintf(err, errlen, "ban lurker: cannot start a thread");
        return -EAGAIN;
    }
    iv->started = 1;
    if (cache_bans_count(iv->bans))
        lurker_kick(iv);
    return 0;
}

void edge__inval_close(struct edge *e)
{
    struct edge_inval *iv = e->inval;

    if (!iv)
        return;
    if (iv->started) {
        pthread_mutex_lock(&iv->mtx);
        iv->stop = 1;
        pthread_cond_signal(&iv->cond);
        pthread_mutex_unlock(&iv->mtx);
        pthread_join(iv->lurker, NULL);
    }
    cache_bans_free(&iv->bans);
    cache_tags_free(&iv->tags);
    pthread_cond_destroy(&iv->cond);
    pthread_mutex_destroy(&iv->mtx);
    MC_FREE_OBJ(iv);
    e->inval = NULL;
}

void edge__inval_lurk_now(struct edge *e)
{
    lurker_kick(e->inval);
}

uint64_t edge__inval_walks(struct edge *e)
{
    return atomic_load(&e->inval->walks);
}

/* ---- POST /admin/invalidate ---- */

/* One invalidation waiting for Redis to acknowledge its URL deletes. */
struct inval_op {
    unsigned magic;
    struct edge *e;
    edge_inval_done_fn done;
    void *arg;
    size_t pending; /* Redis purges not answered yet */
    size_t purged;  /* copies dropped (L1, L2, Redis) */
    size_t bans;    /* bans issued */
    int64_t preds;  /* cached predictions dropped, -1 when no model was named */
    int redis_fail; /* a Redis purge failed: -ENOTCONN or -EIO */
    int soft;
    char *id;             /* NULL when none */
    const char *ban_fail; /* why a ban could not be issued (static), NULL when all were */
};

static void json_str(struct buf *b, const char *s)
{
    json_t *j = json_string(s);
    char *t = json_dumps(j, JSON_ENCODE_ANY);
    buf_puts(b, t ? t : "null");
    free(t);
    json_decref(j);
}

static void op_answer(struct inval_op *op)
{
    struct buf b;
    int status = 200;

    buf_init(&b, 64 * 1024);
    buf_puts(&b, "{");
    if (op->id) {
        buf_puts(&b, "\"id\":");
        json_str(&b, op->id);
        buf_puts(&b, ",");
    }
    buf_printf(&b, "\"purged\":%zu,\"bans\":%zu,\"soft\":%s", op->purged, op->bans,
               op->soft ? "true" : "false");
    if (op->preds >= 0)
        buf_printf(&b, ",\"predictions\":%lld", (long long)op->preds);
    if (op->ban_fail || op->redis_fail) {
        status = 503;
        buf_puts(&b, ",\"error\":");
        char msg[256];
        if (op->ban_fail)
            snprintf(msg, sizeof(msg), "%s", op->ban_fail);
        else
            snprintf(msg, sizeof(msg),
                     "the Redis tier could not delete its copies (%s): they may be served "
                     "until they expire; retry",
                     op->redis_fail == -ENOTCONN ? "not connected" : "no answer");
        json_str(&b, msg);
        buf_puts(&b, ",\"status\":503");
    }
    buf_puts(&b, "}\n");
    edge__tier_purge_end(op->e);
    op->done(op->arg, status, b.data, b.len);
    buf_fini(&b);
    free(op->id);
    MC_FREE_OBJ(op);
}

static void op_redis_done(void *arg, int64_t deleted)
{
    struct inval_op *op = arg;

    MC_CHECK_OBJ_NOTNULL(op, INVAL_OP_MAGIC);
    if (deleted < 0) {
        op->redis_fail = (int)deleted;
    } else {
        op->purged += (size_t)deleted;
        metrics_counter_add(op->e->m.purged, (uint64_t)deleted);
    }
    if (--op->pending == 0)
        op_answer(op);
}

static void bad(edge_inval_done_fn done, void *arg, const char *field, const char *why)
{
    struct buf b;

    buf_init(&b, 16 * 1024);
    buf_puts(&b, "{\"error\":");
    char msg[600];
    snprintf(msg, sizeof(msg), "%s%s%s", field ? field : "", field ? ": " : "", why);
    json_str(&b, msg);
    buf_puts(&b, ",\"status\":400}\n");
    done(arg, 400, b.data, b.len);
    buf_fini(&b);
}

/* A list field: an array of at most MAX_LIST strings (a lone string is taken as a list of
 * one). Returns the array (borrowed, or *owned when made here) or NULL with *why set. */
static json_t *str_list(json_t *v, json_t **owned, const char **why)
{
    size_t i;
    json_t *it;

    *owned = NULL;
    if (json_is_string(v)) {
        *owned = json_array();
        json_array_append(*owned, v);
        return *owned;
    }
    if (!json_is_array(v)) {
        *why = "expected an array of strings";
        return NULL;
    }
    if (json_array_size(v) > MAX_LIST) {
        *why = "more than 1000 entries";
        return NULL;
    }
    json_array_foreach(v, i, it)
    {
        if (!json_is_string(it)) {
            *why = "expected an array of strings";
            return NULL;
        }
    }
    return v;
}

/* A URL of the urls list: "/path?query", or "http[s]://host[:port]/path?query" (only that
 * host's copies). Fills the primary-key forms of the host (hk) and of path and query (pq).
 * 0 or -EINVAL with *why. */
static int url_keys(const struct cache_key_opts *ko, const char *u, struct buf *hk, struct buf *pq,
                    int *has_host, const char **why)
{
    struct http_str host = {"", 0}, path, query = {"", 0};
    const char *p = u;

    *has_host = 0;
    if (strncmp(u, "http://", 7) == 0 || strncmp(u, "https://", 8) == 0) {
        const char *h = strstr(u, "//") + 2;
        const char *slash = strchr(h, '/');
        if (!slash || slash == h) {
            *why = "an absolute URL needs a host and a path";
            return -EINVAL;
        }
        host.p = h;
        host.len = (size_t)(slash - h);
        p = slash;
        *has_host = 1;
    } else if (u[0] != '/') {
        *why = "expected a path starting with '/' or an http(s):// URL";
        return -EINVAL;
    }
    const char *q = strchr(p, '?');
    path.p = p;
    path.len = q ? (size_t)(q - p) : strlen(p);
    if (q) {
        query.p = q + 1;
        query.len = strlen(q + 1);
    }
    if (strpbrk(p, " \t\r\n#")) {
        *why = "a URL holds no spaces, control characters or fragment";
        return -EINVAL;
    }
    struct http_str nohost = {"", 0};
    if (cache_key_primary(pq, nohost, path, query, ko) != 0 || pq->len == 0) {
        *why = "not a valid path (bad percent-encoding or too long)";
        return -EINVAL;
    }
    if (*has_host) {
        struct http_str root = {"/", 1}, noq = {"", 0};
        if (cache_key_primary(hk, host, root, noq, ko) != 0 || hk->len < 1) {
            *why = "not a valid host";
            return -EINVAL;
        }
        hk->len--; /* drop the "/" */
    }
    return 0;
}

static int model_id_ok(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n <= MODEL_ID_MAX &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

/* Escapes a path so that cache_ban_glob() matches exactly it (a soft URL is a soft ban). */
static void glob_quote(struct buf *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '*' || s[i] == '?' || s[i] == '\\')
            buf_append(out, "\\", 1);
        buf_append(out, s + i, 1);
    }
}

static void add_ban(struct inval_op *op, enum cache_ban_kind kind, const char *expr, size_t len)
{
    struct edge_inval *iv = op->e->inval;

    if (op->ban_fail)
        return;
    int rc = cache_bans_add(iv->bans, kind, expr, len, op->soft, units_wall_us(), NULL);
    if (rc == 0) {
        op->bans++;
        metrics_counter_add(iv->issued, 1);
    } else if (rc == -ENOSPC) {
        op->ban_fail = "too many bans are active (the lurker retires them as it applies "
                       "them); retry later";
    } else {
        op->ban_fail = "the ban list could not be written to the disk tier's directory";
    }
}

/* A tag's copies in Redis are gone, or could not be deleted: the tag's ban still refuses
 * them at lookup, so a Redis that is down does not fail a tag purge. */
static void op_redis_tag_done(void *arg, int64_t deleted)
{
    struct inval_op *op = arg;

    MC_CHECK_OBJ_NOTNULL(op, INVAL_OP_MAGIC);
    op_redis_done(op, deleted < 0 ? 0 : deleted);
}

struct tag_take {
    struct edge *e;
    struct walk_ctx c;
    size_t n;
    int soft;
};

static void take_key(void *arg, const char *pkey, size_t plen)
{
    struct tag_take *t = arg;

    t->n += l1_remove_if(t->e->l1, pkey, plen, l1_walk_fn, &t->c);
    /* A soft purge leaves L2's copies to be served stale (lurk_once). */
    if (t->e->l2 && !t->soft)
        t->n += l2_remove_if(t->e->l2, pkey, plen, l2_walk_fn, &t->c);
}

/* A tag purge: first the ban, which refuses what no index lists (a copy being stored
 * now, L2 files indexed before this run, a Redis copy whose index entry expired); then
 * what the indexes list goes at once, judged by the same ban (so a key stored again
 * without the tag stays): L1 and L2 through the tag index, Redis through its tag set. */
static void purge_tag(struct inval_op *op, struct edge_worker *w, const char *tag, size_t len)
{
    struct edge *e = op->e;
    struct edge_inval *iv = e->inval;
    size_t bans = op->bans;

    add_ban(op, CACHE_BAN_TAG, tag, len);
    if (op->bans == bans)
        return;
    struct tag_take t = {e, {iv, 0, INT64_MAX}, 0, op->soft};
    cache_tags_take(iv->tags, tag, len, take_key, &t);
    op->purged += t.n;
    metrics_counter_add(iv->removed[BY_TAG], t.n);
    metrics_counter_add(e->m.purged, t.n);
    if (e->redis && !op->soft) {
        op->pending++;
        if (w && w->redis)
            edge__redis_purge_tag(w->redis, tag, len, op_redis_tag_done, op);
        else
            op_redis_tag_done(op, -ENOTCONN);
    }
}

/* The model's URL spaces and tags (docs/edge.md "Invalidation"). */
static const char *const model_roots[] = {"model", "prediction", "embedding"};

void edge__inval_req_fini(struct edge_inval_req *q)
{
    for (size_t k = 0; k < MC_ARRAY_SIZE(q->own); k++)
        json_decref(q->own[k]);
    json_decref(q->root);
    memset(q, 0, sizeof(*q));
}

/* msg gets "field: why" (field may be NULL); returns -EINVAL. */
static int refuse(char *msg, size_t mlen, const char *field, const char *why)
{
    snprintf(msg, mlen, "%s%s%s", field ? field : "", field ? ": " : "", why);
    return -EINVAL;
}

int edge__inval_parse(const char *body, size_t len, const struct cache_key_opts *ko,
                      struct edge_inval_req *q, char *msg, size_t mlen)
{
    static const char *const fields[] = {"urls",  "prefix", "patterns", "tags",
                                         "model", "all",    "soft",     "id"};
    json_error_t jerr;
    const char *why = NULL, *key;
    char where[64];
    json_t *v;
    int rc = 0;

    memset(q, 0, sizeof(*q));
    q->root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!q->root) {
        snprintf(msg, mlen, "invalid JSON at byte %d: %s", jerr.position, jerr.text);
        return -EINVAL;
    }
    if (!json_is_object(q->root)) {
        rc = refuse(msg, mlen, NULL, "expected a JSON object");
        goto out;
    }
    json_object_foreach(q->root, key, v)
    {
        size_t i = 0;
        while (i < MC_ARRAY_SIZE(fields) && strcmp(fields[i], key) != 0)
            i++;
        if (i == MC_ARRAY_SIZE(fields)) {
            snprintf(where, sizeof(where), "%.48s", key);
            rc =
                refuse(msg, mlen, where,
                       "unknown field (known: urls, prefix, patterns, tags, model, all, soft, id)");
            goto out;
        }
    }
    if ((v = json_object_get(q->root, "urls")) && !(q->urls = str_list(v, &q->own[0], &why))) {
        rc = refuse(msg, mlen, "urls", why);
        goto out;
    }
    if ((v = json_object_get(q->root, "patterns")) &&
        !(q->patterns = str_list(v, &q->own[1], &why))) {
        rc = refuse(msg, mlen, "patterns", why);
        goto out;
    }
    if ((v = json_object_get(q->root, "tags")) && !(q->tags = str_list(v, &q->own[2], &why))) {
        rc = refuse(msg, mlen, "tags", why);
        goto out;
    }
    if ((v = json_object_get(q->root, "prefix"))) {
        if (!json_is_string(v)) {
            rc = refuse(msg, mlen, "prefix", "expected a string");
            goto out;
        }
        q->prefix = json_string_value(v);
        if (cache_ban_expr_check(CACHE_BAN_PREFIX, q->prefix, strlen(q->prefix), &why) != 0) {
            rc = refuse(msg, mlen, "prefix", why);
            goto out;
        }
    }
    if ((v = json_object_get(q->root, "model"))) {
        if (!json_is_string(v) || !model_id_ok(json_string_value(v))) {
            rc = refuse(msg, mlen, "model",
                        "expected a model name of 1-128 letters, digits, '.', '_', '-'");
            goto out;
        }
        q->model = json_string_value(v);
    }
    if ((v = json_object_get(q->root, "all"))) {
        if (!json_is_boolean(v)) {
            rc = refuse(msg, mlen, "all", "expected true or false");
            goto out;
        }
        q->all = json_is_true(v);
    }
    if ((v = json_object_get(q->root, "soft"))) {
        if (!json_is_boolean(v)) {
            rc = refuse(msg, mlen, "soft", "expected true or false");
            goto out;
        }
        q->soft = json_is_true(v);
    }
    if ((v = json_object_get(q->root, "id"))) {
        if (!json_is_string(v) || strlen(json_string_value(v)) > 256) {
            rc = refuse(msg, mlen, "id", "expected a string of at most 256 bytes");
            goto out;
        }
        q->id = json_string_value(v);
    }
    size_t i;
    json_t *it;
    json_array_foreach(q->patterns, i, it)
    {
        const char *p = json_string_value(it);
        if (cache_ban_expr_check(CACHE_BAN_GLOB, p, strlen(p), &why) != 0) {
            snprintf(where, sizeof(where), "patterns[%zu]", i);
            rc = refuse(msg, mlen, where, why);
            goto out;
        }
    }
    json_array_foreach(q->tags, i, it)
    {
        const char *t = json_string_value(it);
        if (cache_ban_expr_check(CACHE_BAN_TAG, t, strlen(t), &why) != 0) {
            snprintf(where, sizeof(where), "tags[%zu]", i);
            rc = refuse(msg, mlen, where, why);
            goto out;
        }
    }
    /* Every URL is checked before anything is applied: a 400 changes nothing. */
    struct buf hk, pq;
    buf_init(&hk, 16 * 1024);
    buf_init(&pq, 16 * 1024);
    json_array_foreach(q->urls, i, it)
    {
        int has_host;
        buf_reset(&hk);
        buf_reset(&pq);
        if (url_keys(ko, json_string_value(it), &hk, &pq, &has_host, &why) != 0) {
            snprintf(where, sizeof(where), "urls[%zu]", i);
            rc = refuse(msg, mlen, where, why);
            break;
        }
    }
    buf_fini(&hk);
    buf_fini(&pq);
    if (rc == 0 && !json_array_size(q->urls) && !q->prefix && !json_array_size(q->patterns) &&
        !json_array_size(q->tags) && !q->model && !q->all)
        rc = refuse(msg, mlen, NULL,
                    "nothing to invalidate: give urls, prefix, patterns, tags, model or all");
out:
    if (rc != 0)
        edge__inval_req_fini(q);
    return rc;
}

void edge__invalidate_json(struct edge *e, const char *body, size_t len, edge_inval_done_fn done,
                           void *arg)
{
    struct edge_inval_req q;
    const char *why;
    char msg[400];
    size_t i;
    json_t *it;

    MC_CHECK_OBJ_NOTNULL(e, EDGE_MAGIC);
    if (edge__inval_parse(body, len, &e->keyopts, &q, msg, sizeof(msg)) != 0) {
        bad(done, arg, NULL, msg);
        return;
    }
    json_t *urls = q.urls, *patterns = q.patterns, *tags = q.tags;
    const char *prefix = q.prefix, *model = q.model, *id = q.id;
    int soft = q.soft, all = q.all;
    struct buf hk, pq;
    buf_init(&hk, 16 * 1024);
    buf_init(&pq, 16 * 1024);

    struct edge_inval *iv = e->inval;
    struct inval_op *op = mc_xcalloc(1, sizeof(*op));
    MC_INIT_OBJ(op, INVAL_OP_MAGIC);
    op->e = e;
    op->done = done;
    op->arg = arg;
    op->soft = soft;
    op->preds = -1;
    op->id = id ? mc_xstrdup(id) : NULL;
    op->pending = 1; /* this function's own, dropped at the end */
    /* Until the answer, no tier hit read before it may enter L1 (edge_tier.c). */
    edge__tier_purge_begin(e);
    struct edge_worker *w = edge__worker_self(e);
    if (all) {
        /* Everything stored until now, whatever its key or tags, in every tier (the
         * Redis tier's copies included: the ban outlives them), and every model's cached
         * predictions, which are no tier's objects. */
        add_ban(op, CACHE_BAN_ALL, "*", 1);
        edge__parts_clear(e);
        if (!soft) {
            int64_t d = e->predict ? predict_cache_drop(e->predict, NULL) : 0;
            op->preds = d < 0 ? 0 : d;
            metrics_counter_add(iv->predictions, (uint64_t)op->preds);
        } else {
            op->preds = 0;
        }
        metrics_counter_add(iv->kinds[K_ALL], 1);
    }
    if (prefix) {
        add_ban(op, CACHE_BAN_PREFIX, prefix, strlen(prefix));
        metrics_counter_add(iv->kinds[K_PREFIX], 1);
    }
    json_array_foreach(patterns, i, it)
    {
        add_ban(op, CACHE_BAN_GLOB, json_string_value(it), strlen(json_string_value(it)));
        metrics_counter_add(iv->kinds[K_PATTERN], 1);
    }
    json_array_foreach(tags, i, it)
    {
        purge_tag(op, w, json_string_value(it), strlen(json_string_value(it)));
        metrics_counter_add(iv->kinds[K_TAG], 1);
    }
    if (model) {
        char ex[MODEL_ID_MAX + 32];
        for (size_t r = 0; r < MC_ARRAY_SIZE(model_roots); r++) {
            int n = snprintf(ex, sizeof(ex), "/%ss/%s/", model_roots[r], model);
            add_ban(op, CACHE_BAN_PREFIX, ex, (size_t)n);
            n = snprintf(ex, sizeof(ex), "%s:%s", model_roots[r], model);
            purge_tag(op, w, ex, (size_t)n);
            /* Versioned or per-key tags ("prediction:ID:v3") have no index entry of
             * their own to take: a tag-prefix ban finds them at lookup and walk. */
            n = snprintf(ex, sizeof(ex), "%s:%s:", model_roots[r], model);
            add_ban(op, CACHE_BAN_TAG_PREFIX, ex, (size_t)n);
        }
        if (!soft) {
            /* A soft invalidation keeps predictions: the model itself did not change. */
            int64_t d = e->predict ? predict_cache_drop(e->predict, model) : -ENOENT;
            d = MC_MAX(d, 0);
            op->preds = MC_MAX(op->preds, 0) + d;
            metrics_counter_add(iv->predictions, (uint64_t)d);
        } else {
            op->preds = MC_MAX(op->preds, 0);
        }
        metrics_counter_add(iv->kinds[K_MODEL], 1);
    }
    json_array_foreach(urls, i, it)
    {
        int has_host;
        buf_reset(&hk);
        buf_reset(&pq);
        url_keys(&e->keyopts, json_string_value(it), &hk, &pq, &has_host, &why);
        metrics_counter_add(iv->kinds[K_URL], 1);
        if (soft) {
            /* Soft: marked stale, not dropped, which is a ban on exactly that path (for
             * every host: a ban holds no host). */
            struct buf g;
            buf_init(&g, 64 * 1024);
            glob_quote(&g, pq.data, pq.len);
            add_ban(op, CACHE_BAN_GLOB, g.data, g.len);
            buf_fini(&g);
            continue;
        }
        const char *h = has_host ? hk.data : NULL;
        size_t n = l1_purge_path(e->l1, h, hk.len, pq.data, pq.len);
        edge__parts_clear(e);
        if (e->l2)
            n += l2_purge_path(e->l2, h, hk.len, pq.data, pq.len);
        op->purged += n;
        metrics_counter_add(e->m.purged, n);
        if (e->redis) {
            op->pending++;
            if (w && w->redis)
                edge__redis_purge(w->redis, h, hk.len, pq.data, pq.len, op_redis_done, op);
            else
                op_redis_done(op, -ENOTCONN);
        }
    }
    buf_fini(&hk);
    buf_fini(&pq);
    if (op->bans)
        lurker_kick(iv);
    op_redis_done(op, 0);
    edge__inval_req_fini(&q);
}
