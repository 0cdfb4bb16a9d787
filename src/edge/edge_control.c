/* src/edge/edge_control.c: the edge's consumer of the control stream (Redis Streams,
 * docs/internals/control.md).
 *
 * One thread per edge reads the stream with a plain synchronous hiredis connection
 * (XREAD BLOCK from the last id applied) and hands each entry, in stream order, to the
 * handler registered for its kind. Handlers run on worker 0's loop (they are the same
 * functions the admin API calls, which answer on the loop that called them): the thread
 * queues the entry there through an async handle and waits for done(). Then it
 * acknowledges on KEY:acks and writes the entry's id to the state file (so a restarted
 * edge goes on from there). Requests are never on this path: with Redis down the edge serves as before,
 * and the thread reconnects (backoff 100 ms doubling to 2 s) and catches up.
 *
 * A gap (entries after the last applied one gone: trimmed, deleted, or the stream lost
 * with Redis' data) cannot be replayed, so every registered handler's gap function runs
 * (for invalidations: a ban of everything cached until now) before the entries that are
 * still there. Checked at each connect and after each read (XINFO STREAM's
 * max-deleted-entry-id; with an older Redis, the first entry's id).
 *
 * Threads: registration happens before edge__control_start; afterwards the handler table
 * is read-only. `job` and `stopping` are under mtx; the hiredis context is the thread's,
 * except that edge__control_stop shuts its socket down (under mtx) to end a blocked read. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/mc.h"
#include "core/metrics.h"
#include "core/redis_util.h"
#include "core/units.h"
#include "edge/edge_int.h"
#include "predict/predict.h"

#define EDGE_CONTROL_MAGIC 0x4354524cu
#define MAX_KINDS 8
#define BLOCK_MS 1000      /* one XREAD waits this long, then the loop checks the stop flag */
#define IO_SLACK_MS 3000   /* past BLOCK_MS without an answer, the connection is dead */
#define BACKOFF_MIN_MS 100 /* between connect attempts, doubling */
#define BACKOFF_MAX_MS 2000
#define READ_COUNT 256     /* entries per XREAD */
#define ACKS_MAXLEN 100000 /* KEY:acks is trimmed (approximately) to this many entries */
#define ANSWER_MAX 1024    /* of a handler's answer, kept in the acknowledgement */

struct kind {
    char name[32];
    edge_control_fn *fn;
    edge_control_gap_fn *gap;
};

/* One entry handed to worker 0's loop. */
struct job {
    const struct kind *k;
    int gap; /* run k->gap instead of k->fn */
    const char *body;
    size_t len;
    int done;
    int status;
    char answer[ANSWER_MAX];
};

struct edge_control {
    unsigned magic;
    struct edge *e;
    char *url, *key, *state_path, *name;
    char acks_key[512], edges_key[512];
    struct kind kinds[MAX_KINDS];
    size_t nkinds;
    pthread_t thr;
    int started;

    pthread_mutex_t mtx;
    pthread_cond_t cond;
    int stopping;
    redisContext *c;           /* the thread's connection (mtx for the pointer) */
    struct job *job;           /* waiting for worker 0's loop (mtx) */
    uv_async_t async;          /* on worker 0's loop */
    int async_init, loop_gone; /* mtx */

    /* the thread's own */
    struct redis_sid last;
    int have_last;
    struct redis_sid gap_at; /* a gap was handled with last here (gap_handled) */
    int gap_handled;

    struct metrics_counter *m_applied, *m_failed, *m_gaps, *m_reconnects;
    struct metrics_gauge *m_connected, *m_lag;
};

static int state_load(struct edge_control *c, char *err, size_t errlen);

int edge__control_new(struct edge *e, const char *url, const char *key, const char *state_path,
                      char *err, size_t errlen)
{
    struct redis_url u;
    const char *why;

    if (redis_url_parse(url, &u, &why) < 0) {
        snprintf(err, errlen, "--control-redis '%s': %s", url, why);
        return -EINVAL;
    }
    if (!key || !*key || strlen(key) > 400) {
        snprintf(err, errlen, "--control-stream: a key of 1 to 400 bytes");
        return -EINVAL;
    }
    struct edge_control *c = mc_xcalloc(1, sizeof(*c));
    MC_INIT_OBJ(c, EDGE_CONTROL_MAGIC);
    c->e = e;
    c->url = mc_xstrdup(url);
    c->key = mc_xstrdup(key);
    c->state_path = mc_xstrdup(state_path);
    c->name = mc_xstrdup(e->name);
    snprintf(c->acks_key, sizeof(c->acks_key), "%s:acks", key);
    snprintf(c->edges_key, sizeof(c->edges_key), "%s:edges", key);
    pthread_mutex_init(&c->mtx, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->m_applied = metrics_counter("mlcdn_control_entries_total",
                                   "Control stream entries handled, by outcome", "result=\"ok\"");
    c->m_failed = metrics_counter("mlcdn_control_entries_total",
                                  "Control stream entries handled, by outcome",
                                  "result=\"failed\"");
    c->m_gaps = metrics_counter("mlcdn_control_gaps_total",
                                "Gaps in the control stream (entries lost before this edge "
                                "read them), each answered by a ban of everything",
                                "");
    c->m_reconnects = metrics_counter("mlcdn_control_connects_total",
                                      "Connections to the control stream's Redis", "");
    c->m_connected = metrics_gauge("mlcdn_control_connected",
                                   "1 while the control stream is being read", "");
    c->m_lag = metrics_gauge("mlcdn_control_lag_seconds",
                             "Age of the last control entry applied, from its sender's clock", "");
    e->control = c;
    int rc = state_load(c, err, errlen);
    if (rc < 0)
        edge__control_free(e);
    return rc;
}

int edge__control_register(struct edge *e, const char *kind, edge_control_fn *fn,
                           edge_control_gap_fn *gap)
{
    struct edge_control *c = e->control;
    if (!c)
        return 0; /* no control stream: nothing to register with */
    MC_CHECK_OBJ_NOTNULL(c, EDGE_CONTROL_MAGIC);
    if (c->started || c->nkinds == MAX_KINDS || strlen(kind) >= sizeof(c->kinds[0].name))
        return -EINVAL;
    for (size_t i = 0; i < c->nkinds; i++)
        if (!strcmp(c->kinds[i].name, kind))
            return -EEXIST;
    snprintf(c->kinds[c->nkinds].name, sizeof(c->kinds[0].name), "%s", kind);
    c->kinds[c->nkinds].fn = fn;
    c->kinds[c->nkinds].gap = gap;
    c->nkinds++;
    return 0;
}

/* ---- worker 0's side ---- */

static void job_done(void *arg, int status, const char *json, size_t len)
{
    struct edge_control *c = arg;
    pthread_mutex_lock(&c->mtx);
    struct job *j = c->job;
    if (j) {
        j->status = status;
        while (len > 0 && (json[len - 1] == '\n' || json[len - 1] == '\r'))
            len--;
        if (len >= sizeof(j->answer))
            len = sizeof(j->answer) - 1;
        memcpy(j->answer, json, len);
        j->answer[len] = 0;
        j->done = 1;
        c->job = NULL;
        pthread_cond_broadcast(&c->cond);
    }
    pthread_mutex_unlock(&c->mtx);
}

static void on_async(uv_async_t *a)
{
    struct edge_control *c = a->data;
    pthread_mutex_lock(&c->mtx);
    struct job *j = c->job;
    pthread_mutex_unlock(&c->mtx);
    if (!j)
        return;
    /* The thread waits for done(), so j and its body stay until then. */
    if (j->gap)
        j->k->gap(c->e, job_done, c);
    else
        j->k->fn(c->e, j->body, j->len, job_done, c);
}

void edge__control_loop_init(struct edge_worker *w)
{
    struct edge_control *c = w->e->control;
    if (!c || w->idx != 0)
        return;
    uv_async_init(w->loop, &c->async, on_async);
    c->async.data = c;
    pthread_mutex_lock(&c->mtx);
    c->async_init = 1;
    c->loop_gone = 0;
    pthread_mutex_unlock(&c->mtx);
}

void edge__control_loop_fini(struct edge_worker *w)
{
    struct edge_control *c = w->e->control;
    if (!c || w->idx != 0 || !c->async_init)
        return;
    pthread_mutex_lock(&c->mtx);
    c->loop_gone = 1;
    if (c->job) { /* never handed over: the thread gives up on it */
        c->job->status = 503;
        snprintf(c->job->answer, sizeof(c->job->answer), "{\"error\":\"edge stopping\"}");
        c->job->done = 1;
        c->job = NULL;
    }
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mtx);
    uv_close((uv_handle_t *)&c->async, NULL);
}

/* ---- the thread ---- */

static int is_stopping(struct edge_control *c)
{
    pthread_mutex_lock(&c->mtx);
    int s = c->stopping;
    pthread_mutex_unlock(&c->mtx);
    return s;
}

/* Sleeps ms unless stopped meanwhile. */
static void pause_ms(struct edge_control *c, unsigned ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->mtx);
    while (!c->stopping && pthread_cond_timedwait(&c->cond, &c->mtx, &ts) == 0)
        ;
    pthread_mutex_unlock(&c->mtx);
}

/* Runs j on worker 0's loop and waits for its answer. 0, or -ECANCELED (stopping). */
static int run_job(struct edge_control *c, struct job *j)
{
    pthread_mutex_lock(&c->mtx);
    if (c->stopping || !c->async_init || c->loop_gone) {
        pthread_mutex_unlock(&c->mtx);
        return -ECANCELED;
    }
    c->job = j;
    uv_async_send(&c->async);
    while (!j->done)
        pthread_cond_wait(&c->cond, &c->mtx);
    pthread_mutex_unlock(&c->mtx);
    return j->status == 503 && c->loop_gone ? -ECANCELED : 0;
}

/* The state file: {"edge":NAME,"last":"MS-SEQ"}, replaced whole (a new file renamed over
 * it), so a crash leaves the old or the new one. */
static int state_load(struct edge_control *c, char *err, size_t errlen)
{
    json_error_t je;
    json_t *j = json_load_file(c->state_path, 0, &je);
    if (!j) {
        if (access(c->state_path, F_OK) != 0 && errno == ENOENT)
            return 0; /* first start: from the stream's end */
        snprintf(err, errlen, "--control-state %s: %s (line %d)", c->state_path, je.text, je.line);
        return -EINVAL;
    }
    const char *last = json_string_value(json_object_get(j, "last"));
    if (!last || redis_sid_parse(last, strlen(last), &c->last) < 0) {
        snprintf(err, errlen, "--control-state %s: no valid \"last\" stream id", c->state_path);
        json_decref(j);
        return -EINVAL;
    }
    c->have_last = 1;
    json_decref(j);
    return 0;
}

static void state_save(struct edge_control *c)
{
    char tmp[4200], sid[48];
    redis_sid_fmt(c->last, sid, sizeof(sid));
    snprintf(tmp, sizeof(tmp), "%s.tmp", c->state_path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        log_warn("control state not saved", "file=\"%s\" error=\"%s\"", tmp, strerror(errno));
        return;
    }
    json_t *j = json_pack("{s:s,s:s}", "edge", c->name, "last", sid);
    int bad = json_dumpf(j, f, JSON_COMPACT) < 0;
    json_decref(j);
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, c->state_path) != 0)
        log_warn("control state not saved", "file=\"%s\" error=\"%s\"", c->state_path,
                 strerror(errno));
}

static void set_timeout(redisContext *rc, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    redisSetTimeout(rc, tv);
}

static void drop(struct edge_control *c)
{
    pthread_mutex_lock(&c->mtx);
    redisContext *rc = c->c;
    c->c = NULL;
    pthread_mutex_unlock(&c->mtx);
    if (rc)
        redisFree(rc);
    metrics_gauge_set(c->m_connected, 0);
}

/* A command's reply, NULL (and the connection dropped) on an I/O or Redis error. */
static redisReply *cmd(struct edge_control *c, const char *what, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c->c, fmt, ap);
    va_end(ap);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        if (!is_stopping(c))
            log_warn("control stream: command failed", "command=%s error=\"%s\"", what,
                     r ? r->str : c->c->errstr);
        if (r)
            freeReplyObject(r);
        drop(c);
        return NULL;
    }
    return r;
}

static int connect_redis(struct edge_control *c)
{
    struct redis_url u;
    const char *why;
    redis_url_parse(c->url, &u, &why); /* checked by edge__control_new */
    struct timeval tv = {2, 0};
    redisContext *rc = redisConnectWithTimeout(u.host, u.port, tv);
    if (!rc || rc->err) {
        if (rc)
            redisFree(rc);
        return -ECONNREFUSED;
    }
    set_timeout(rc, 2000);
    pthread_mutex_lock(&c->mtx);
    if (c->stopping) {
        pthread_mutex_unlock(&c->mtx);
        redisFree(rc);
        return -ECANCELED;
    }
    c->c = rc;
    pthread_mutex_unlock(&c->mtx);
    redisReply *r;
    if (u.password[0]) {
        if (!(r = cmd(c, "AUTH", "AUTH %s", u.password)))
            return -EIO;
        freeReplyObject(r);
    }
    if (u.db) {
        if (!(r = cmd(c, "SELECT", "SELECT %ld", u.db)))
            return -EIO;
        freeReplyObject(r);
    }
    /* Named, so that CLIENT LIST tells which edge a connection is. */
    if (!(r = cmd(c, "CLIENT SETNAME", "CLIENT SETNAME mlcdn-control-%s", c->name)))
        return -EIO;
    freeReplyObject(r);
    return 0;
}

static const redisReply *kv_get(const redisReply *kv, const char *name)
{
    if (!kv || kv->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < kv->elements; i += 2)
        if (kv->element[i]->type == REDIS_REPLY_STRING && !strcmp(kv->element[i]->str, name))
            return kv->element[i + 1];
    return NULL;
}

static int sid_of(const redisReply *r, struct redis_sid *out)
{
    if (!r || r->type != REDIS_REPLY_STRING)
        return -EINVAL;
    return redis_sid_parse(r->str, r->len, out);
}

static int stream_info(struct edge_control *c, struct redis_stream_info *si)
{
    memset(si, 0, sizeof(*si));
    redisReply *r = redisCommand(c->c, "XINFO STREAM %s", c->key);
    if (!r) {
        log_warn("control stream: command failed", "command=XINFO error=\"%s\"", c->c->errstr);
        drop(c);
        return -EIO;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        int missing = strstr(r->str, "no such key") != NULL;
        if (!missing)
            log_warn("control stream: command failed", "command=XINFO error=\"%s\"", r->str);
        freeReplyObject(r);
        if (!missing) {
            drop(c);
            return -EIO;
        }
        return 0;
    }
    si->exists = 1;
    sid_of(kv_get(r, "last-generated-id"), &si->last_generated);
    const redisReply *n = kv_get(r, "length"), *a = kv_get(r, "entries-added");
    si->length = n && n->type == REDIS_REPLY_INTEGER ? n->integer : 0;
    si->added = a && a->type == REDIS_REPLY_INTEGER ? a->integer : -1;
    const redisReply *fe = kv_get(r, "first-entry");
    if (fe && fe->type == REDIS_REPLY_ARRAY && fe->elements >= 1)
        si->have_first = sid_of(fe->element[0], &si->first) == 0;
    freeReplyObject(r);
    return 0;
}

static void ack(struct edge_control *c, const char *op, int status, const char *answer,
                const char *sid)
{
    char st[16], t[32];
    snprintf(st, sizeof(st), "%d", status);
    snprintf(t, sizeof(t), "%" PRId64, units_wall_us() / 1000);
    redisReply *r = cmd(c, "XADD",
                        "XADD %s MAXLEN ~ %d * op %s edge %s status %s t %s sid %s answer %s",
                        c->acks_key, ACKS_MAXLEN, op, c->name, st, t, sid, answer);
    if (r)
        freeReplyObject(r);
}

/* The edge's entry in KEY:edges, rewritten after every read (so about once per BLOCK_MS):
 * the last entry applied, when, and the models it serves (GET /admin/models's answer), so
 * `ctl model status --redis` sees every edge of the stream without their admin URLs. */
static void announce(struct edge_control *c)
{
    char sid[48];
    struct buf v;

    /* A draining edge still applies what the stream says (it still serves), but the entry
     * is its successor's: a restart starts the new process while the old one drains. */
    if (atomic_load(&c->e->draining))
        return;
    buf_init(&v, 4u << 20);
    redis_sid_fmt(c->last, sid, sizeof(sid));
    buf_printf(&v, "{\"last\":\"%s\",\"t\":%" PRId64, sid, units_wall_us() / 1000);
    if (c->e->predict) {
        buf_puts(&v, ",\"models\":");
        predict_models_json(c->e->predict, &v);
    }
    buf_puts(&v, "}");
    redisReply *r = cmd(c, "HSET", "HSET %s %s %b", c->edges_key, c->name, v.data, v.len);
    if (r)
        freeReplyObject(r);
    buf_fini(&v);
}

/* Entries after c->last were lost: every handler's gap function runs, then the position
 * moves where reading goes on without finding the same gap again. */
static int on_gap(struct edge_control *c, const struct redis_stream_info *si, const char *why)
{
    char sid[48];
    redis_sid_fmt(c->last, sid, sizeof(sid));
    log_warn("control stream: entries lost before this edge read them; everything cached "
             "until now is banned",
             "last_applied=%s reason=\"%s\"", sid, why);
    metrics_counter_add(c->m_gaps, 1);
    for (size_t i = 0; i < c->nkinds; i++) {
        if (!c->kinds[i].gap)
            continue;
        struct job j = {.k = &c->kinds[i], .gap = 1};
        if (run_job(c, &j) < 0)
            return -ECANCELED;
        if (j.status != 200) {
            /* Not applied: the edge must not go on as if it were; try again later. */
            log_warn("control stream: the gap's ban failed; retrying",
                     "kind=%s status=%d answer=%s", c->kinds[i].name, j.status, j.answer);
            return -EAGAIN;
        }
    }
    if (!si->exists || redis_sid_cmp(si->last_generated, c->last) < 0)
        c->last = (struct redis_sid){0, 0}; /* a new stream (or none yet): read it all */
    else if (si->length == 0)
        c->last = si->last_generated; /* nothing left to read */
    c->gap_at = c->last;
    c->gap_handled = 1;
    return 0;
}

/* Why entries after c->last may be gone (redis_stream_gap), unless a gap was just handled
 * at this very position: the ban covers everything before the entries now there. */
static const char *gap_reason(const struct edge_control *c, const struct redis_stream_info *si)
{
    if (c->gap_handled && redis_sid_cmp(c->gap_at, c->last) == 0)
        return NULL;
    return redis_stream_gap(c->last, si);
}

/* At connect: where to read from, and whether something was lost meanwhile. */
static int position(struct edge_control *c)
{
    struct redis_stream_info si;
    if (stream_info(c, &si) < 0)
        return -EIO;
    if (!c->have_last) {
        /* A new edge: nothing older concerns it. */
        c->last = si.exists ? si.last_generated : (struct redis_sid){0, 0};
        c->have_last = 1;
        state_save(c);
        return 0;
    }
    const char *why = gap_reason(c, &si);
    int rc = why ? on_gap(c, &si, why) : 0;
    if (rc == 0)
        state_save(c);
    return rc;
}

static const struct kind *find_kind(struct edge_control *c, const char *name)
{
    for (size_t i = 0; i < c->nkinds; i++)
        if (!strcmp(c->kinds[i].name, name))
            return &c->kinds[i];
    return NULL;
}

/* One entry: its handler, the acknowledgement, then the state. */
static int apply(struct edge_control *c, const redisReply *e)
{
    struct redis_sid sid;
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 || sid_of(e->element[0], &sid) < 0)
        return 0;
    const redisReply *f = e->element[1];
    const redisReply *kind = kv_get(f, "kind"), *body = kv_get(f, "body"), *id = kv_get(f, "id");
    const redisReply *t = kv_get(f, "t");
    const char *op = id && id->type == REDIS_REPLY_STRING ? id->str : "";
    struct job j = {0};
    const struct kind *k = kind && kind->type == REDIS_REPLY_STRING ? find_kind(c, kind->str)
                                                                    : NULL;
    if (!k || !body || body->type != REDIS_REPLY_STRING) {
        j.status = 400;
        snprintf(j.answer, sizeof(j.answer), "{\"error\":\"%s\"}",
                 !k ? "unknown kind (no handler on this edge)" : "no body");
    } else {
        j.k = k;
        j.body = body->str;
        j.len = body->len;
        if (run_job(c, &j) < 0)
            return -ECANCELED;
    }
    if (j.status == 503) { /* a tier could not apply it: not done, so read it again */
        log_warn("control entry not applied; retrying", "sid=%s id=%s answer=%s",
                 e->element[0]->str, op, j.answer);
        return -EAGAIN;
    }
    metrics_counter_add(j.status == 200 ? c->m_applied : c->m_failed, 1);
    if (j.status != 200)
        log_warn("control entry refused", "sid=%s kind=%s id=%s status=%d answer=%s",
                 e->element[0]->str, kind && kind->str ? kind->str : "-", op, j.status, j.answer);
    if (t && t->type == REDIS_REPLY_STRING)
        metrics_gauge_set(c->m_lag, ((double)units_wall_us() / 1e3 - atof(t->str)) / 1e3);
    /* Acknowledged before the position is saved: a crash between the two applies the
     * entry again at restart (handlers are idempotent) rather than never acknowledging it. */
    if (c->c)
        ack(c, op, j.status, j.answer, e->element[0]->str);
    c->last = sid;
    state_save(c);
    return 0;
}

/* Reads and applies until the connection fails or the edge stops. */
static void consume(struct edge_control *c)
{
    char sid[48];
    while (!is_stopping(c) && c->c) {
        redis_sid_fmt(c->last, sid, sizeof(sid));
        set_timeout(c->c, BLOCK_MS + IO_SLACK_MS);
        redisReply *r = cmd(c, "XREAD", "XREAD COUNT %d BLOCK %d STREAMS %s %s", READ_COUNT,
                            BLOCK_MS, c->key, sid);
        if (!r)
            return;
        set_timeout(c->c, 2000);
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 1) {
            freeReplyObject(r);
            announce(c); /* nil: nothing new within BLOCK_MS; still here */
            continue;
        }
        const redisReply *entries = r->element[0]->element[1];
        struct redis_sid before = c->last;
        for (size_t i = 0; i < entries->elements && !is_stopping(c); i++) {
            int rc = apply(c, entries->element[i]);
            if (rc == -EAGAIN) {
                pause_ms(c, BACKOFF_MIN_MS);
                break;
            }
            if (rc < 0)
                break;
        }
        freeReplyObject(r);
        /* Entries between the last applied one and what was read may be gone: checked
         * after the batch, off the acknowledgements' path (the ban covers everything
         * cached until it, whatever was applied before it). */
        if (c->c && redis_sid_cmp(before, c->last) != 0) {
            struct redis_sid now = c->last;
            struct redis_stream_info si;
            c->last = before;
            if (stream_info(c, &si) < 0) {
                c->last = now;
                return;
            }
            const char *why = gap_reason(c, &si);
            c->last = now;
            if (why && on_gap(c, &si, why) != 0)
                return;
        }
        if (c->c)
            announce(c);
    }
}

static void *run(void *arg)
{
    struct edge_control *c = arg;
    unsigned backoff = BACKOFF_MIN_MS;
    int was_up = 1;

    pthread_setname_np(pthread_self(), "mlcdn-control");
    while (!is_stopping(c)) {
        if (connect_redis(c) < 0) {
            if (was_up)
                log_warn("control stream: Redis unreachable; serving on, retrying", "url=%s",
                         c->url);
            was_up = 0;
            drop(c);
            pause_ms(c, backoff);
            backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
            continue;
        }
        metrics_counter_add(c->m_reconnects, 1);
        if (position(c) < 0 || !c->c) {
            drop(c);
            pause_ms(c, backoff);
            continue;
        }
        announce(c);
        if (!c->c)
            continue;
        char sid[48];
        redis_sid_fmt(c->last, sid, sizeof(sid));
        log_info("control stream: reading", "key=%s edge=%s from=%s", c->key, c->name, sid);
        metrics_gauge_set(c->m_connected, 1);
        was_up = 1;
        backoff = BACKOFF_MIN_MS;
        consume(c);
        drop(c);
        if (!is_stopping(c))
            pause_ms(c, BACKOFF_MIN_MS);
    }
    return NULL;
}

int edge__control_start(struct edge *e, char *err, size_t errlen)
{
    struct edge_control *c = e->control;
    if (!c)
        return 0;
    if (pthread_create(&c->thr, NULL, run, c) != 0) {
        snprintf(err, errlen, "control stream: cannot start its thread");
        return -EAGAIN;
    }
    c->started = 1;
    return 0;
}

void edge__control_stop(struct edge *e)
{
    struct edge_control *c = e->control;
    if (!c || !c->started)
        return;
    pthread_mutex_lock(&c->mtx);
    c->stopping = 1;
    if (c->c)
        shutdown(c->c->fd, SHUT_RDWR); /* ends a blocked XREAD */
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mtx);
    pthread_join(c->thr, NULL);
    c->started = 0;
}

void edge__control_free(struct edge *e)
{
    struct edge_control *c = e->control;
    if (!c)
        return;
    edge__control_stop(e);
    drop(c);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->mtx);
    free(c->url);
    free(c->key);
    free(c->state_path);
    free(c->name);
    MC_FREE_OBJ(c);
    e->control = NULL;
}
