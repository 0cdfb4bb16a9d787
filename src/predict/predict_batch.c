/* src/predict/predict_batch.c: the inference pool and the dynamic batcher.
 *
 * Inference never runs on an event loop: a loop packs the rows it could not answer from
 * the prediction cache into an item and queues it on the batcher of the model version.
 * The pool's threads (their own, not libuv's threadpool, so a slow model cannot starve
 * file-system work of the loops) take a batcher that is due, gather its queued items up
 * to max_batch rows and run them as one batch. A batcher is due when it holds max_batch
 * rows or its oldest item waited max_delay_us; an idle thread sleeps until the earliest
 * deadline. A model's `threads` setting caps how many threads run it at once. Results
 * are copied per item (the session's outputs are only valid until its next run), the
 * new rows go into the model's prediction cache from the pool thread, and each item is
 * posted to its loop's completion queue (pl->mtx, uv_async), where done() answers.
 *
 * When a batch of several items fails with an input error (say an out-of-range id in
 * one request), each item is rerun alone so only the faulty request gets the error.
 *
 * Locking: pool->mtx guards every batcher and the ready list; pl->mtx guards a loop's
 * completion queue and `closed`/`orphan`. Items hold a version reference and a pl
 * reference; a pl is freed when its loop closed it and its last item is gone. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/mc.h"
#include "core/units.h"
#include "predict/predict_int.h"

struct predict_pool {
    unsigned magic;
    pthread_mutex_t mtx;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    struct predict_batcher *ready_head, *ready_tail;
    unsigned nthreads;
    pthread_t *th;
    int stop;
    _Atomic uint64_t queued_rows;
};

struct pthread_arg {
    struct predict_pool *p;
    unsigned idx;
};

static struct predict_version *ver_of(struct predict_batcher *b)
{
    return MC_CONTAINER_OF(b, struct predict_version, batcher);
}

/* ---- loop side ---- */

static void pl_unref(struct predict_loop *pl)
{
    if (atomic_fetch_sub(&pl->refcnt, 1) == 1) {
        pthread_mutex_destroy(&pl->mtx);
        MC_FREE_OBJ(pl);
    }
}

static void pl_drain(uv_async_t *a)
{
    struct predict_loop *pl = a->data;
    struct predict_item *it;

    MC_CHECK_OBJ_NOTNULL(pl, PREDICT_LOOP_MAGIC);
    pthread_mutex_lock(&pl->mtx);
    it = pl->done_head;
    pl->done_head = pl->done_tail = NULL;
    pthread_mutex_unlock(&pl->mtx);
    while (it) {
        struct predict_item *next = it->next;
        /* Off the outstanding list first: done() may queue new items. */
        if (it->oprev)
            it->oprev->onext = it->onext;
        else
            pl->outstanding = it->onext;
        if (it->onext)
            it->onext->oprev = it->oprev;
        it->done(it, it->arg);
        predict__item_free(it);
        it = next;
    }
}

struct predict_loop *predict__loop_new(uv_loop_t *loop)
{
    struct predict_loop *pl = mc_xcalloc(1, sizeof(*pl));
    MC_INIT_OBJ(pl, PREDICT_LOOP_MAGIC);
    atomic_init(&pl->refcnt, 1);
    pthread_mutex_init(&pl->mtx, NULL);
    MC_ASSERT(uv_async_init(loop, &pl->async, pl_drain) == 0);
    pl->async.data = pl;
    return pl;
}

static void pl_closed(uv_handle_t *h)
{
    pl_unref(h->data);
}

void predict__loop_close(struct predict_loop *pl)
{
    MC_CHECK_OBJ_NOTNULL(pl, PREDICT_LOOP_MAGIC);
    /* Finished items answer normally; the rest are answered 503 now and dropped by the
     * pool when it finishes them (orphans). */
    pl_drain(&pl->async);
    pthread_mutex_lock(&pl->mtx);
    pl->closed = 1;
    for (struct predict_item *it = pl->outstanding; it; it = it->onext)
        it->orphan = 1;
    pthread_mutex_unlock(&pl->mtx);
    for (struct predict_item *it = pl->outstanding; it; it = it->onext) {
        it->err = -ESHUTDOWN;
        snprintf(it->msg, sizeof(it->msg), "the edge is stopping");
        it->done(it, it->arg);
    }
    pl->outstanding = NULL;
    uv_close((uv_handle_t *)&pl->async, pl_closed);
}

static void post(struct predict_item *it)
{
    struct predict_loop *pl = it->pl;
    int drop;

    pthread_mutex_lock(&pl->mtx);
    drop = pl->closed || it->orphan;
    if (!drop) {
        it->next = NULL;
        if (pl->done_tail)
            pl->done_tail->next = it;
        else
            pl->done_head = it;
        pl->done_tail = it;
        uv_async_send(&pl->async);
    }
    pthread_mutex_unlock(&pl->mtx);
    if (drop)
        predict__item_free(it);
}

struct predict_item *predict__item_new(struct predict_version *v, size_t rows)
{
    struct predict_item *it = mc_xcalloc(1, sizeof(*it));
    MC_INIT_OBJ(it, PREDICT_ITEM_MAGIC);
    it->ver = predict__version_ref(v);
    it->rows = rows;
    it->in = mc_xcalloc(v->n_in, sizeof(*it->in));
    return it;
}

void predict__item_free(struct predict_item *it)
{
    if (!it)
        return;
    MC_CHECK_OBJ(it, PREDICT_ITEM_MAGIC);
    for (size_t i = 0; i < it->ver->n_in; i++)
        free(it->in[i]);
    free(it->in);
    free(it->out);
    predict__version_unref(&it->ver);
    if (it->pl)
        pl_unref(it->pl);
    MC_FREE_OBJ(it);
}

/* ---- pool side ---- */

/* pool->mtx held, as for ready_remove(). */
static void ready_push(struct predict_pool *p, struct predict_batcher *b)
{
    mc_lock_assert_held(&p->mtx);
    b->rnext = NULL;
    if (p->ready_tail)
        p->ready_tail->rnext = b;
    else
        p->ready_head = b;
    p->ready_tail = b;
    b->in_ready = 1;
}

static void ready_remove(struct predict_pool *p, struct predict_batcher *b)
{
    struct predict_batcher **pp = &p->ready_head, *prev = NULL;

    mc_lock_assert_held(&p->mtx);
    for (; *pp && *pp != b; pp = &(*pp)->rnext)
        prev = *pp;
    MC_ASSERT(*pp == b);
    *pp = b->rnext;
    if (p->ready_tail == b)
        p->ready_tail = prev;
    b->rnext = NULL;
    b->in_ready = 0;
}

void predict__pool_submit(struct predict_pool *p, struct predict_loop *pl, struct predict_item *it,
                          predict_item_done_f *done, void *arg)
{
    struct predict_batcher *b = &it->ver->batcher;

    MC_CHECK_OBJ_NOTNULL(p, PREDICT_POOL_MAGIC);
    MC_CHECK_OBJ_NOTNULL(pl, PREDICT_LOOP_MAGIC);
    it->done = done;
    it->arg = arg;
    it->pl = pl;
    atomic_fetch_add(&pl->refcnt, 1);
    it->oprev = NULL;
    it->onext = pl->outstanding;
    if (pl->outstanding)
        pl->outstanding->oprev = it;
    pl->outstanding = it;
    it->enq_us = units_now_us();
    it->next = NULL;
    const struct predict_model_cfg *cfg = &it->ver->cfg;
    pthread_mutex_lock(&p->mtx);
    int first = b->head == NULL;
    if (b->tail)
        b->tail->next = it;
    else
        b->head = it;
    b->tail = it;
    b->rows += it->rows;
    if (!b->in_ready)
        ready_push(p, b);
    atomic_fetch_add_explicit(&p->queued_rows, it->rows, memory_order_relaxed);
    /* Wake a thread only when this changes its plan: a new deadline (first item), a batch
     * now due, or no batching delay at all. Waking it for every row of a partial batch
     * would cost a context switch per request for nothing. */
    if (first || b->rows >= cfg->max_batch || cfg->max_delay_us == 0)
        pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mtx);
}

static void fail_item(struct predict_item *it, int err, const char *msg)
{
    it->err = err;
    size_t n = strlen(msg);
    if (n >= sizeof(it->msg))
        n = sizeof(it->msg) - 1;
    memcpy(it->msg, msg, n);
    it->msg[n] = '\0';
}

/* The class of an engine error, as the loop answers it. */
static int classify(int rc)
{
    switch (rc) {
    case -EINVAL:
    case -ERANGE: return -EINVAL;
    case -E2BIG:
        /* The run was sized before anything was allocated and does not fit the model's
         * memory budget (shapes decided by the request's values): the request is too big. */
        return -E2BIG;
    case -ENOMEM:
    case -EFBIG: return -ENOMEM;
    default: return -EIO;
    }
}

/* Runs items (a NULL-terminated list linked through ->next) as one batch on thread tidx.
 * Returns 0 or the engine's error (with every item failed). */
static int run(struct predict_version *v, unsigned tidx, struct predict_item *items)
{
    struct infer_input in[16];
    struct infer_tensor out[16];
    void *owned[16] = {0};
    size_t rows = 0, nitems = 0;
    char err[448];
    int rc = 0;

    for (struct predict_item *it = items; it; it = it->next) {
        rows += it->rows;
        nitems++;
    }
    if (!v->sessions[tidx]) {
        struct infer_session_opts so = {0};
        rc = infer_session_new(v->im, &so, &v->sessions[tidx]);
        if (rc) {
            snprintf(err, sizeof(err), "cannot create an inference session: %s", strerror(-rc));
            goto fail;
        }
    }
    for (size_t i = 0; i < v->n_in; i++) {
        struct predict_io *io = &v->in[i];
        in[i].name = io->name;
        in[i].t.dtype = io->dtype;
        in[i].t.rank = io->rank;
        memcpy(in[i].t.dims, io->dims, sizeof(io->dims));
        in[i].t.dims[0] = (int64_t)rows;
        if (nitems == 1) {
            in[i].t.data = items->in[i];
            continue;
        }
        /* Payload memory: a failure answers 503 rather than aborting the edge. */
        unsigned char *d = malloc(MC_MAX(rows * io->row_bytes, (size_t)1));
        if (!d) {
            rc = -ENOMEM;
            snprintf(err, sizeof(err), "out of memory for a batch of %zu rows", rows);
            goto fail;
        }
        owned[i] = d;
        size_t o = 0;
        for (struct predict_item *it = items; it; it = it->next) {
            memcpy(d + o, it->in[i], it->rows * io->row_bytes);
            o += it->rows * io->row_bytes;
        }
        in[i].t.data = d;
    }
    uint64_t t0 = units_now_us();
    rc = infer_session_run(v->sessions[tidx], in, v->n_in, out, v->n_out, err, sizeof(err));
    uint64_t t1 = units_now_us();
    metrics_hist_observe(v->model->lat, t1 - t0);
    metrics_hist_observe(v->model->bsize, rows);
    metrics_counter_add(v->model->runs, 1);
    if (rc)
        goto fail;
    for (size_t o = 0; o < v->n_out; o++) {
        if (out[o].rank < 1 || out[o].dims[0] != (int64_t)rows ||
            infer_tensor_numel(&out[o]) != (int64_t)rows * v->out[o].row_numel) {
            rc = -EINVAL;
            snprintf(err, sizeof(err), "output %s has an unexpected shape", v->out[o].name);
            goto fail;
        }
    }
    size_t r0 = 0;
    unsigned char *key = malloc(v->key_bytes);
    for (struct predict_item *it = items; it; it = it->next) {
        it->out = malloc(MC_MAX(it->rows * v->val_bytes, (size_t)1));
        if (!it->out) {
            fail_item(it, -ENOMEM, "out of memory for the outputs");
            r0 += it->rows;
            continue;
        }
        for (size_t r = 0; r < it->rows; r++) {
            unsigned char *row = it->out + r * v->val_bytes;
            for (size_t o = 0; o < v->n_out; o++)
                memcpy(row + v->out[o].off,
                       (const unsigned char *)out[o].data + (r0 + r) * v->out[o].row_bytes,
                       v->out[o].row_bytes);
            if (v->model->cache && key) {
                predict__cache_key(v, it->in, r, key);
                cache_pred_put(v->model->cache, key, v->key_bytes, row, v->val_bytes);
            }
        }
        r0 += it->rows;
    }
    free(key);
    for (size_t i = 0; i < v->n_in; i++)
        free(owned[i]);
    return 0;
fail:
    metrics_counter_add(v->model->run_errors, 1);
    for (size_t i = 0; i < v->n_in; i++)
        free(owned[i]);
    for (struct predict_item *it = items; it; it = it->next) {
        char m[512];
        int cls = classify(rc);
        snprintf(m, sizeof(m), "%s: %s",
                 cls == -EINVAL  ? "input rejected by the model"
                 : cls == -E2BIG ? "too large for the model's memory budget"
                                 : "inference failed",
                 err);
        fail_item(it, cls, m);
    }
    return rc;
}

static void run_items(struct predict_version *v, unsigned tidx, struct predict_item *items)
{
    int rc = run(v, tidx, items);
    if (rc && (classify(rc) == -EINVAL || classify(rc) == -E2BIG) && items->next) {
        /* One bad request must not fail the others it was batched with, nor several small
         * ones fail together for a batch too large as a whole. */
        for (struct predict_item *it = items; it; it = it->next) {
            struct predict_item *next = it->next;
            it->next = NULL;
            it->err = 0;
            run(v, tidx, it);
            it->next = next;
        }
    }
    while (items) {
        struct predict_item *next = items->next;
        post(items);
        items = next;
    }
}

static int due(struct predict_batcher *b, uint64_t now, uint64_t *deadline)
{
    struct predict_version *v = ver_of(b);
    if (v->cfg.threads && b->running >= v->cfg.threads)
        return 0;
    if (b->rows >= v->cfg.max_batch || v->cfg.max_delay_us == 0)
        return 1;
    uint64_t dl = b->head->enq_us + v->cfg.max_delay_us;
    if (now >= dl)
        return 1;
    if (dl < *deadline)
        *deadline = dl;
    return 0;
}

static void *pool_thread(void *arg)
{
    struct pthread_arg *pa = arg;
    struct predict_pool *p = pa->p;
    unsigned tidx = pa->idx;

    free(pa);
    pthread_mutex_lock(&p->mtx);
    for (;;) {
        if (p->stop)
            break;
        uint64_t now = units_now_us(), deadline = UINT64_MAX;
        struct predict_batcher *b = p->ready_head;
        for (; b; b = b->rnext)
            if (due(b, now, &deadline))
                break;
        if (!b) {
            if (deadline == UINT64_MAX) {
                pthread_cond_wait(&p->cv, &p->mtx);
            } else {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                uint64_t wait = deadline - now;
                ts.tv_sec += (time_t)(wait / 1000000);
                ts.tv_nsec += (long)(wait % 1000000) * 1000;
                if (ts.tv_nsec >= 1000000000) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&p->cv, &p->mtx, &ts);
            }
            continue;
        }
        struct predict_version *v = ver_of(b);
        struct predict_item *items = NULL, **tail = &items;
        size_t rows = 0;
        while (b->head && (rows == 0 || rows + b->head->rows <= v->cfg.max_batch)) {
            struct predict_item *it = b->head;
            b->head = it->next;
            if (!b->head)
                b->tail = NULL;
            it->next = NULL;
            *tail = it;
            tail = &it->next;
            rows += it->rows;
        }
        b->rows -= rows;
        ready_remove(p, b);
        if (b->head) {
            ready_push(p, b); /* the rest waits behind other models: round robin */
            pthread_cond_signal(&p->cv);
        }
        b->running++;
        atomic_fetch_sub_explicit(&p->queued_rows, rows, memory_order_relaxed);
        /* Our own reference: once posted, the items (and theirs) may be gone. */
        predict__version_ref(v);
        pthread_mutex_unlock(&p->mtx);
        run_items(v, tidx, items);
        pthread_mutex_lock(&p->mtx);
        v->batcher.running--;
        if (v->batcher.head)
            pthread_cond_signal(&p->cv);
        pthread_mutex_unlock(&p->mtx);
        predict__version_unref(&v);
        pthread_mutex_lock(&p->mtx);
    }
    pthread_mutex_unlock(&p->mtx);
    return NULL;
}

int predict__pool_new(unsigned nthreads, struct predict_pool **out)
{
    struct predict_pool *p = mc_xcalloc(1, sizeof(*p));
    pthread_condattr_t ca;

    MC_INIT_OBJ(p, PREDICT_POOL_MAGIC);
    pthread_mutex_init(&p->mtx, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    p->nthreads = nthreads ? nthreads : 1;
    p->th = mc_xcalloc(p->nthreads, sizeof(*p->th));
    for (unsigned i = 0; i < p->nthreads; i++) {
        struct pthread_arg *pa = mc_xmalloc(sizeof(*pa));
        pa->p = p;
        pa->idx = i;
        int rc = pthread_create(&p->th[i], NULL, pool_thread, pa);
        if (rc) {
            free(pa);
            p->nthreads = i;
            predict__pool_free(&p);
            return -rc;
        }
    }
    *out = p;
    return 0;
}

void predict__pool_free(struct predict_pool **pp)
{
    struct predict_pool *p = *pp;

    if (!p)
        return;
    MC_CHECK_OBJ(p, PREDICT_POOL_MAGIC);
    pthread_mutex_lock(&p->mtx);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mtx);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->th[i], NULL);
    /* Whatever is still queued fails; its loops are gone by now, so post() drops it. */
    while (p->ready_head) {
        struct predict_batcher *b = p->ready_head;
        ready_remove(p, b);
        while (b->head) {
            struct predict_item *it = b->head;
            b->head = it->next;
            fail_item(it, -ESHUTDOWN, "the edge is stopping");
            post(it);
        }
        b->tail = NULL;
        b->rows = 0;
    }
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mtx);
    free(p->th);
    MC_FREE_OBJ(p);
    *pp = NULL;
}

uint64_t predict__pool_queued_rows(struct predict_pool *p)
{
    return atomic_load_explicit(&p->queued_rows, memory_order_relaxed);
}
