/* src/ctl/ctl_stream.c: the producer side of the control stream (Redis Streams).
 *
 * Keys (docs/internals/control.md): the stream KEY (entries kind, body, id, t), the
 * acknowledgements stream KEY:acks (entries op, edge, status, t, sid, answer, written by
 * each edge after applying an entry) and the registry hash KEY:edges (one field per edge
 * consuming the stream, written by the edge when it connects and after each entry).
 *
 * ctl__stream_send() notes the last acknowledgement's id before it adds the operation, so
 * that every acknowledgement of the new operation is read after it, then XREADs (BLOCK)
 * KEY:acks until every registered edge acknowledged or the timeout passed. A plain
 * synchronous hiredis connection: ctl is a command-line client. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "core/mc.h"
#include "core/redis_util.h"
#include "ctl/ctl_int.h"

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int reply_err(redisContext *c, redisReply *r, const char *what, char *err, size_t errlen)
{
    if (!r) {
        snprintf(err, errlen, "--redis: %s: %s", what, c->errstr[0] ? c->errstr : "no answer");
        return -EIO;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "--redis: %s: %s", what, r->str);
        freeReplyObject(r);
        return -EIO;
    }
    return 0;
}

static int connect_url(const char *url, redisContext **out, char *err, size_t errlen)
{
    struct redis_url u;
    const char *why;
    redisReply *r;
    struct timeval tv = {2, 0};

    if (redis_url_parse(url, &u, &why) < 0) {
        snprintf(err, errlen, "--redis '%s': %s", url, why);
        return -EINVAL;
    }
    redisContext *c = redisConnectWithTimeout(u.host, u.port, tv);
    if (!c || c->err) {
        snprintf(err, errlen, "--redis %s:%d: %s", u.host, u.port, c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return -ECONNREFUSED;
    }
    redisSetTimeout(c, tv);
    if (u.password[0]) {
        r = redisCommand(c, "AUTH %s", u.password);
        if (reply_err(c, r, "AUTH", err, errlen) < 0)
            goto fail;
        freeReplyObject(r);
    }
    if (u.db) {
        r = redisCommand(c, "SELECT %ld", u.db);
        if (reply_err(c, r, "SELECT", err, errlen) < 0)
            goto fail;
        freeReplyObject(r);
    }
    *out = c;
    return 0;
fail:
    redisFree(c);
    return -EIO;
}

static struct ctl_ack *find_ack(struct ctl_ack *a, size_t n, const char *edge, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(a[i].edge) == len && !memcmp(a[i].edge, edge, len))
            return &a[i];
    return NULL;
}

static const redisReply *field(const redisReply *kv, const char *name)
{
    if (kv->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < kv->elements; i += 2)
        if (kv->element[i]->type == REDIS_REPLY_STRING && !strcmp(kv->element[i]->str, name))
            return kv->element[i + 1];
    return NULL;
}

int ctl__stream_send(const char *url, const char *key, const char *kind, const char *body,
                     const char *id, uint64_t timeout_ms, struct ctl_ack **acks, size_t *nacks,
                     char *err, size_t errlen)
{
    redisContext *c = NULL;
    redisReply *r = NULL;
    char acks_key[512], edges_key[512], last[64] = "0-0", t[32];
    struct ctl_ack *a = NULL;
    size_t n = 0, cap = 0, pending = 0;
    int rc;

    if (strlen(key) > 400) {
        snprintf(err, errlen, "--stream: key too long");
        return -EINVAL;
    }
    snprintf(acks_key, sizeof(acks_key), "%s:acks", key);
    snprintf(edges_key, sizeof(edges_key), "%s:edges", key);
    if ((rc = connect_url(url, &c, err, errlen)) < 0)
        return rc;
    r = redisCommand(c, "XREVRANGE %s + - COUNT 1", acks_key);
    if ((rc = reply_err(c, r, "XREVRANGE", err, errlen)) < 0)
        goto out;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements >= 1)
        snprintf(last, sizeof(last), "%s", r->element[0]->element[0]->str);
    freeReplyObject(r);
    r = redisCommand(c, "HKEYS %s", edges_key);
    if ((rc = reply_err(c, r, "HKEYS", err, errlen)) < 0)
        goto out;
    cap = r->elements + 8;
    a = mc_xcalloc(cap, sizeof(*a));
    for (size_t i = 0; i < r->elements; i++) {
        if (r->element[i]->type != REDIS_REPLY_STRING)
            continue;
        snprintf(a[n].edge, sizeof(a[n].edge), "%s", r->element[i]->str);
        n++;
    }
    pending = n;
    freeReplyObject(r);
    snprintf(t, sizeof(t), "%lld", (long long)ctl__now_ms());
    double t0 = mono_ms();
    r = redisCommand(c, "XADD %s MAXLEN ~ 100000 * kind %s body %s id %s t %s", key, kind, body, id,
                     t);
    if ((rc = reply_err(c, r, "XADD", err, errlen)) < 0)
        goto out;
    freeReplyObject(r);
    r = NULL;
    while (pending > 0) {
        double left = (double)timeout_ms - (mono_ms() - t0);
        if (left <= 0)
            break;
        struct timeval tv = {(long)(left / 1000) + 2, 0};
        redisSetTimeout(c, tv);
        r = redisCommand(c, "XREAD COUNT 1000 BLOCK %ld STREAMS %s %s", (long)left + 1, acks_key,
                         last);
        if ((rc = reply_err(c, r, "XREAD", err, errlen)) < 0)
            goto out;
        double now = mono_ms() - t0;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
            const redisReply *entries = r->element[0]->element[1];
            for (size_t i = 0; i < entries->elements; i++) {
                const redisReply *e = entries->element[i];
                snprintf(last, sizeof(last), "%s", e->element[0]->str);
                const redisReply *op = field(e->element[1], "op");
                const redisReply *edge = field(e->element[1], "edge");
                const redisReply *st = field(e->element[1], "status");
                const redisReply *ans = field(e->element[1], "answer");
                if (!op || !edge || !st || strcmp(op->str, id) != 0)
                    continue;
                struct ctl_ack *k = find_ack(a, n, edge->str, edge->len);
                if (!k) {
                    if (n == cap) {
                        cap *= 2;
                        a = mc_xrealloc(a, cap * sizeof(*a));
                    }
                    k = &a[n++];
                    memset(k, 0, sizeof(*k));
                    snprintf(k->edge, sizeof(k->edge), "%.*s", (int)edge->len, edge->str);
                } else if (!k->acked) {
                    pending--;
                }
                if (k->acked)
                    continue;
                k->acked = 1;
                k->ms = now;
                k->status = atoi(st->str);
                snprintf(k->detail, sizeof(k->detail), "%s", ans ? ans->str : "");
            }
        }
        freeReplyObject(r);
        r = NULL;
    }
    *acks = a;
    *nacks = n;
    a = NULL;
    rc = 0;
out:
    free(a);
    redisFree(c);
    return rc;
}

int ctl__stream_edges(const char *url, const char *key, struct ctl_stream_edge **out, size_t *n,
                      char *err, size_t errlen)
{
    redisContext *c = NULL;
    redisReply *r;
    char edges_key[512];
    int rc;

    *out = NULL;
    *n = 0;
    if (strlen(key) > 400) {
        snprintf(err, errlen, "--stream: key too long");
        return -EINVAL;
    }
    snprintf(edges_key, sizeof(edges_key), "%s:edges", key);
    if ((rc = connect_url(url, &c, err, errlen)) < 0)
        return rc;
    r = redisCommand(c, "HGETALL %s", edges_key);
    if ((rc = reply_err(c, r, "HGETALL", err, errlen)) < 0) {
        redisFree(c);
        return rc;
    }
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2) {
        *out = mc_xcalloc(r->elements / 2, sizeof(**out));
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
            const redisReply *k = r->element[i], *v = r->element[i + 1];
            if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
                continue;
            struct ctl_stream_edge *o = &(*out)[(*n)++];
            snprintf(o->name, sizeof(o->name), "%.*s", (int)k->len, k->str);
            o->value = mc_xstrndup(v->str, v->len);
        }
    }
    freeReplyObject(r);
    redisFree(c);
    return 0;
}

void ctl__stream_edges_free(struct ctl_stream_edge *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].value);
    free(v);
}
