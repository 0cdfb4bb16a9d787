/* src/edge/edge_tier_l2.c: the L2 disk tier (cache/cache_disk.h) behind the tier chain
 * (edge_tier.c), and its open-file cache.
 *
 * A lookup finds the index entry in memory; opening and verifying the file happens in the
 * libuv thread pool unless the open-file cache holds it, then the answer goes to the
 * chain (edge__tier_answered). An L2 object enters L1 only on its l2_admit_hits-th hit
 * (l2_admit), so one scan of cold objects cannot flush L1. Responses stored in L1 are
 * copied here in the background. */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "cache/cache_disk.h"
#include "core/log.h"
#include "core/mc.h"
#include "core/units.h"
#include "edge/edge_int.h"

/* L2 objects at least this large are not copied into L1 (see l2t_lookup). */
#define L1_COPY_MAX CACHE_BODY_MEMFD_MIN
#define COPY_BUF (256u << 10)
/* A 304 refresh rewrites the L2 copy only for bodies this small (the copy is a full read). */
#define L2_REFRESH_MAX (64u << 20)

/* ---- open L2 files, per loop ---- */

/* Like nginx's open_file_cache: a verified L2 file stays open with its decoded header, so
 * a hot L2 object is served on the loop without a thread-pool round trip. 8-way
 * set-associative by entry (least recently used slot of the set replaced); a slot holds a
 * reference on the entry, so its address cannot be reused while cached, and l2_lookup
 * returns the current entry, so a replaced, evicted or purged object is never found here.
 *
 * A file changed behind our back (written, truncated, touched, unlinked) must go back
 * through l2_read, which verifies it again. Each slot's inode is watched with inotify (one
 * instance per loop, through /proc/self/fd so the watch is on the open file itself): the
 * loop drops the slot when the event arrives, and a hit costs no syscall for the check.
 * A slot whose watch could not be added (inotify limits) compares fstat with the
 * verified identity on every use instead. */
#define FDC_SLOTS_MAX 65536u
#define FDC_WATCH (IN_MODIFY | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF)

struct fdc_slot {
    struct l2_entry *en; /* ref */
    struct cache_obj *o; /* ref; file-backed body, the fd inside */
    uint64_t last_hit;   /* the loop's L2 hit count at this slot's last use (replacement) */
    int wd;              /* inotify watch on the file, or -1: fstat on every use */
    int32_t wd_next;     /* next slot index in the same wd bucket, or -1 */
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtim, ctim;
};

struct edge_fdc {
    uint64_t l2_hits;    /* this loop's L2 hits so far: the clock of slot replacement */
    uv_poll_t *ipoll;    /* on ifd; NULL without inotify */
    uv_prepare_t *iprep; /* clears drained before each poll */
    int ifd;             /* inotify instance, or -1 */
    int drained;         /* ifd read since this loop iteration's poll returned */
    unsigned closing;    /* handles still closing at the end */
    int32_t *wd_head;    /* nslots buckets: wd -> first slot index, or -1 */
    size_t nslots;       /* a power of two */
    struct fdc_slot slot[];
};

#define FDC_WAYS 8u

/* The first slot of en's set (FDC_WAYS slots). */
static struct fdc_slot *fdc_set(struct edge_worker *w, const struct l2_entry *en)
{
    uintptr_t h = (uintptr_t)en;
    h ^= h >> 17;
    h *= 0x9e3779b97f4a7c15ull;
    return &w->fdc->slot[((h >> 32) & (w->fdc->nslots / FDC_WAYS - 1)) * FDC_WAYS];
}

/* en's slot, or NULL. */
static struct fdc_slot *fdc_find(struct edge_worker *w, const struct l2_entry *en)
{
    struct fdc_slot *set = fdc_set(w, en);
    for (unsigned i = 0; i < FDC_WAYS; i++)
        if (set[i].en == en)
            return &set[i];
    return NULL;
}

/* A slot for en: an empty one, else the one hit least recently. */
static struct fdc_slot *fdc_victim(struct edge_worker *w, const struct l2_entry *en)
{
    struct fdc_slot *set = fdc_set(w, en), *v = &set[0];
    for (unsigned i = 0; i < FDC_WAYS; i++) {
        if (!set[i].en)
            return &set[i];
        if (set[i].last_hit < v->last_hit)
            v = &set[i];
    }
    return v;
}

static int32_t *fdc_wd_bucket(struct edge_fdc *f, int wd)
{
    return &f->wd_head[(uint32_t)wd * 0x9e3779b1u >> 7 & (f->nslots - 1)];
}

/* The slot watching wd, or NULL. */
static struct fdc_slot *fdc_by_wd(struct edge_fdc *f, int wd)
{
    for (int32_t i = *fdc_wd_bucket(f, wd); i >= 0; i = f->slot[i].wd_next)
        if (f->slot[i].wd == wd)
            return &f->slot[i];
    return NULL;
}

/* Forgets sl's watch; rm says whether the kernel still has it (not after IN_IGNORED). */
static void fdc_unwatch(struct edge_fdc *f, struct fdc_slot *sl, int rm)
{
    if (sl->wd < 0)
        return;
    int32_t idx = (int32_t)(sl - f->slot), *pp = fdc_wd_bucket(f, sl->wd);
    while (*pp >= 0 && *pp != idx)
        pp = &f->slot[*pp].wd_next;
    if (*pp == idx)
        *pp = sl->wd_next;
    if (rm)
        inotify_rm_watch(f->ifd, sl->wd);
    sl->wd = -1;
    sl->wd_next = -1;
}

static void fdc_clear(struct edge_fdc *f, struct fdc_slot *sl)
{
    fdc_unwatch(f, sl, 1);
    l2_entry_unref(&sl->en);
    cache_obj_unref(&sl->o);
}

/* A watch on o's open file for sl (or none: sl falls back to fstat). */
static void fdc_watch(struct edge_fdc *f, struct fdc_slot *sl, int fd)
{
    char path[40];
    if (f->ifd < 0)
        return;
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    int wd = inotify_add_watch(f->ifd, path, FDC_WATCH);
    /* The same inode watched by another slot shares its wd: that slot keeps it. */
    if (wd < 0 || fdc_by_wd(f, wd))
        return;
    int32_t *b = fdc_wd_bucket(f, wd);
    sl->wd = wd;
    sl->wd_next = *b;
    *b = (int32_t)(sl - f->slot);
}

/* Applies every queued inotify event. */
static void fdc_drain(struct edge_fdc *f)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

    for (;;) {
        ssize_t n = read(f->ifd, buf, sizeof(buf));
        if (n <= 0)
            return;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof(*ev) + ev->len;
            if (ev->mask & IN_Q_OVERFLOW) {
                /* Events were lost: every watched slot is suspect. */
                for (size_t i = 0; i < f->nslots; i++)
                    if (f->slot[i].wd >= 0)
                        fdc_clear(f, &f->slot[i]);
                continue;
            }
            struct fdc_slot *sl = fdc_by_wd(f, ev->wd);
            if (!sl)
                continue;
            if (ev->mask & IN_IGNORED)
                fdc_unwatch(f, sl, 0);
            fdc_clear(f, sl);
        }
    }
}

static void fdc_on_events(uv_poll_t *h, int status, int events)
{
    (void)events;
    if (status >= 0)
        fdc_drain(h->data);
}

/* Before each poll: the first open-file hit of the coming iteration reads the inotify
 * queue first, so a change made before the requests of that iteration arrived is applied
 * before they are served, whatever order epoll reports the descriptors in. */
static void fdc_on_prepare(uv_prepare_t *h)
{
    ((struct edge_fdc *)h->data)->drained = 0;
}

static int same_file(const struct fdc_slot *sl, const struct stat *st)
{
    return st->st_dev == sl->dev && st->st_ino == sl->ino && st->st_size == sl->size &&
           st->st_mtim.tv_sec == sl->mtim.tv_sec && st->st_mtim.tv_nsec == sl->mtim.tv_nsec &&
           st->st_ctim.tv_sec == sl->ctim.tv_sec && st->st_ctim.tv_nsec == sl->ctim.tv_nsec;
}

/* A new reference on the open object of en, or NULL. */
static struct cache_obj *fdc_get(struct edge_worker *w, struct l2_entry *en)
{
    struct fdc_slot *sl;
    struct stat st;

    if (!w->fdc)
        return NULL;
    if (w->fdc->ifd >= 0 && !w->fdc->drained) {
        w->fdc->drained = 1;
        fdc_drain(w->fdc);
    }
    if ((sl = fdc_find(w, en)) == NULL)
        return NULL;
    sl->last_hit = ++w->fdc->l2_hits;
    if (sl->wd < 0 &&
        (fstat(cache_body_file(sl->o->body, NULL), &st) != 0 || !same_file(sl, &st))) {
        fdc_clear(w->fdc, sl);
        return NULL;
    }
    return cache_obj_ref(sl->o);
}

/* L1 admission of an L2 hit. An object is copied into L1 when its last l2_admit_hits
 * hits each came within about as many L2 hits (edge-wide) as L1 holds objects: then L1
 * would most likely still hold it at its next hit. A scan (each object hit once) never
 * qualifies, and a working set far larger than L1 (uniform reuse far apart) does not
 * churn copies through L1 for nothing. The state lives with the entry (shared by the
 * loops): the edge-wide L2 hit count at its last hit, times 256, plus the hits in a row. */
static int l2_admit(struct edge *e, struct l2_entry *en)
{
    unsigned need = e->cfg.l2_admit_hits;
    uint64_t now = atomic_fetch_add_explicit(&e->l2_clock, 1, memory_order_relaxed) + 1;
    uint64_t prev = l2_entry_mark_swap(en, now << 8 | 1);
    uint64_t window = MC_MAX(l1_objects(e->l1), (uint64_t)16);
    unsigned near = 1;

    if (prev && now - (prev >> 8) <= window)
        near = (unsigned)MC_MIN((prev & 0xff) + 1, 255u);
    if (near < need) {
        l2_entry_mark_swap(en, now << 8 | near);
        return 0;
    }
    return 1; /* the count starts again after a copy */
}

static void fdc_put(struct edge_worker *w, struct l2_entry *en, struct cache_obj *o)
{
    struct stat st;
    int fd = cache_body_file(o->body, NULL);
    if (!w->fdc || fstat(fd, &st) != 0)
        return;
    struct fdc_slot *sl = fdc_find(w, en);
    if (!sl)
        sl = fdc_victim(w, en);
    fdc_clear(w->fdc, sl);
    sl->en = l2_entry_ref(en);
    sl->o = cache_obj_ref(o);
    sl->last_hit = w->fdc->l2_hits;
    sl->dev = st.st_dev;
    sl->ino = st.st_ino;
    sl->size = st.st_size;
    sl->mtim = st.st_mtim;
    sl->ctim = st.st_ctim;
    fdc_watch(w->fdc, sl, fd);
    /* A change between the fstat above and the watch would not be seen: check again. */
    if (sl->wd >= 0 && (fstat(fd, &st) != 0 || !same_file(sl, &st)))
        fdc_clear(w->fdc, sl);
}

static void l2t_loop_init(struct edge_worker *w)
{
    struct rlimit rl;
    size_t n = FDC_SLOTS_MAX;

    if (!w->e->l2)
        return;
    /* At most half the descriptors the process may open, shared by the loops. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        while (n > 64 && n * 2 * w->e->nworkers > rl.rlim_cur)
            n /= 2;
    struct edge_fdc *f = mc_xcalloc(1, sizeof(*f) + n * sizeof(struct fdc_slot));
    f->nslots = n;
    f->wd_head = mc_xmalloc(n * sizeof(*f->wd_head));
    for (size_t i = 0; i < n; i++) {
        f->wd_head[i] = -1;
        f->slot[i].wd = -1;
        f->slot[i].wd_next = -1;
    }
    /* Without inotify (limits, no /proc) every hit checks with fstat instead. */
    f->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (f->ifd >= 0) {
        f->ipoll = mc_xmalloc(sizeof(*f->ipoll));
        f->iprep = mc_xmalloc(sizeof(*f->iprep));
        if (uv_poll_init(w->loop, f->ipoll, f->ifd) == 0) {
            f->ipoll->data = f;
            uv_poll_start(f->ipoll, UV_READABLE, fdc_on_events);
            uv_prepare_init(w->loop, f->iprep);
            f->iprep->data = f;
            uv_prepare_start(f->iprep, fdc_on_prepare);
            uv_unref((uv_handle_t *)f->iprep);
        } else {
            free(f->ipoll);
            free(f->iprep);
            f->ipoll = NULL;
            f->iprep = NULL;
            close(f->ifd);
            f->ifd = -1;
        }
    }
    w->fdc = f;
}

static void fdc_handle_closed(uv_handle_t *h)
{
    struct edge_fdc *f = h->data;
    free(h);
    if (--f->closing)
        return;
    close(f->ifd);
    free(f->wd_head);
    free(f);
}

static void l2t_loop_fini(struct edge_worker *w)
{
    struct edge_fdc *f = w->fdc;
    if (!f)
        return;
    for (size_t i = 0; i < f->nslots; i++)
        fdc_clear(f, &f->slot[i]);
    w->fdc = NULL;
    if (f->ipoll) {
        f->closing = 2;
        uv_close((uv_handle_t *)f->ipoll, fdc_handle_closed);
        uv_close((uv_handle_t *)f->iprep, fdc_handle_closed);
        return;
    }
    free(f->wd_head);
    free(f);
}

/* ---- L2 lookups ---- */

struct l2_job {
    uv_work_t work;
    struct edge_worker *w;
    struct http_exchange *x;
    struct l2_entry *en; /* NULL: probe the disk (index still being rebuilt) */
    char *key;
    size_t klen;
    int promote;   /* read the body into memory for L1 */
    uint64_t mark; /* edge__tier_purge_mark() before the index was asked */
    int rc;
    struct l2_file f;
    struct cache_body *mem;
    struct edge_rctx *rctx;
    edge_tier_done_f done;
};

/* Feeds bytes [off, off+n) of a file to sink, in COPY_BUF pieces (thread pool only: the
 * reads may wait on the disk). Returns 0, sink's error, or -EIO for a short file. */
static int file_copy(int fd, uint64_t off, uint64_t n,
                     int (*sink)(void *arg, const void *p, size_t len), void *arg)
{
    char *tmp = mc_xmalloc((size_t)MC_MIN(n ? n : 1, (uint64_t)COPY_BUF));
    int rc = 0;

    for (uint64_t done = 0; rc == 0 && done < n;) {
        ssize_t r = pread(fd, tmp, (size_t)MC_MIN((uint64_t)COPY_BUF, n - done),
                          (off_t)(off + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = -EIO;
            break;
        }
        rc = sink(arg, tmp, (size_t)r);
        done += (uint64_t)r;
    }
    free(tmp);
    return rc;
}

static int body_sink(void *arg, const void *p, size_t n)
{
    return cache_body_append(arg, p, n);
}

static int writer_sink(void *arg, const void *p, size_t n)
{
    return l2_writer_append(arg, p, n);
}

/* Reads n bytes at off into a new complete memory body, or NULL. */
static struct cache_body *read_body(int fd, uint64_t off, uint64_t n)
{
    struct cache_body *b = cache_body_new_heap((int64_t)n);

    if (file_copy(fd, off, n, body_sink, b) != 0) {
        cache_body_unref(&b);
        return NULL;
    }
    cache_body_finish(b, CACHE_BODY_COMPLETE);
    return b;
}

static void l2_work(uv_work_t *req)
{
    struct l2_job *j = req->data;
    struct l2 *l2 = j->w->e->l2;

    if (!j->en && (j->rc = l2_probe(l2, j->key, j->klen, &j->en)) != 0)
        return;
    if ((j->rc = l2_read(l2, j->en, &j->f)) != 0)
        return;
    if (j->promote) {
        j->mem = read_body(j->f.fd, j->f.body_off, j->f.body_len);
        if (j->mem) {
            close(j->f.fd);
            j->f.fd = -1;
            return;
        }
    }
    /* The first window goes out with sendfile from the loop: have it in the page cache. */
    readahead(j->f.fd, (off64_t)j->f.body_off,
              (size_t)MC_MIN(j->f.body_len, (uint64_t)EDGE_FILE_WINDOW));
}

static void l2_after(uv_work_t *req, int status)
{
    struct l2_job *j = req->data;
    struct edge_worker *w = j->w;
    struct edge *e = w->e;

    (void)status;
    if (j->rc == -EBADMSG)
        log_warn("L2 file failed its checks: dropped, refetching", "key=\"%.*s\"",
                 (int)MC_MIN(j->klen, 200u), j->key);
    if (j->rc != 0 || w->stopping) {
        edge__tier_answered(w, j->x, j->key, j->klen, j->rctx, EDGE_LV_L2, NULL, j->done);
    } else {
        struct cache_obj *o = j->f.obj;
        j->f.obj = NULL;
        if (j->mem) {
            o->body = j->mem;
            j->mem = NULL;
            /* A purge while the file was read: its copy must not outlive it in L1. */
            if (edge__tier_admit(e, j->mark, j->key, j->klen, o) == 0)
                metrics_counter_add(e->m.l2_promoted, 1);
        } else {
            o->body = cache_body_new_file(j->f.fd, j->f.body_off, (int64_t)j->f.body_len);
            j->f.fd = -1;
            cache_body_publish(o->body, j->f.body_len);
            cache_body_finish(o->body, CACHE_BODY_COMPLETE);
            fdc_put(w, j->en, o);
            metrics_counter_add(e->m.l2_opens, 1);
        }
        edge__tier_answered(w, j->x, j->key, j->klen, j->rctx, EDGE_LV_L2, o, j->done);
    }
    if (j->f.fd >= 0)
        close(j->f.fd);
    cache_obj_unref(&j->f.obj);
    cache_body_unref(&j->mem);
    l2_entry_unref(&j->en);
    edge_rctx_free(&j->rctx);
    free(j->key);
    free(j);
}

/* An in-memory copy of an open L2 object for L1, made on the loop only when the whole body
 * is in the page cache (one RWF_NOWAIT read: a copy, never a disk wait); else NULL. */
static struct cache_obj *copy_if_resident(const struct cache_obj *fo)
{
    uint64_t off, n = cache_body_len(fo->body);
    int fd = cache_body_file(fo->body, &off);
    char *tmp = mc_xmalloc(n ? (size_t)n : 1);
    struct iovec iov = {tmp, (size_t)n};
    struct cache_body *b = NULL;

    if (n == 0 || preadv2(fd, &iov, 1, (off_t)off, RWF_NOWAIT) == (ssize_t)n) {
        b = cache_body_new_heap((int64_t)n);
        if (n && cache_body_append(b, tmp, (size_t)n) != 0)
            cache_body_unref(&b);
        else
            cache_body_finish(b, CACHE_BODY_COMPLETE);
    }
    free(tmp);
    return b ? cache_obj_dup(fo, b) : NULL;
}

static void l2t_lookup(struct edge_worker *w, struct http_exchange *x, const char *key, size_t klen,
                       const struct edge_rctx *rc, edge_tier_done_f done)
{
    struct edge *e = w->e;
    struct l2_entry *en = NULL;
    uint64_t mark = edge__tier_purge_mark(e);
    int found = l2_lookup(e->l2, key, klen, http_x_request(x), &en);

    if (found != 0 && found != -EAGAIN) {
        edge__tier_answered(w, x, key, klen, rc, EDGE_LV_L2, NULL, done);
        return;
    }
    /* Larger bodies stay with L2: sent from the page cache with sendfile (no copy), they
     * cost less than from L1's memory, where every send copies them into the socket. */
    int promote = en && l2_entry_size(en) < L1_COPY_MAX && l2_entry_size(en) <= e->max_mem_object &&
                  l2_admit(e, en);
    struct cache_obj *o = en ? fdc_get(w, en) : NULL;
    struct cache_obj *m = o && promote ? copy_if_resident(o) : NULL;
    if (o && promote && !m) {
        /* Due for L1 but not wholly in the page cache (or the kernel would not say without
         * waiting): the copy is read in the pool, as when the file is not open here, so
         * the hit that earns L1 is the one that enters it. */
        cache_obj_unref(&o);
    }
    if (o) {
        if (m) {
            if (edge__tier_admit(e, mark, key, klen, m) == 0)
                metrics_counter_add(e->m.l2_promoted, 1);
            cache_obj_unref(&o);
            o = m;
        }
        l2_entry_unref(&en);
        edge__tier_answered(w, x, key, klen, rc, EDGE_LV_L2, o, done);
        return;
    }
    struct l2_job *j = mc_xcalloc(1, sizeof(*j));
    j->work.data = j;
    j->w = w;
    j->x = x;
    j->en = en;
    j->key = mc_xstrndup(key, klen);
    j->klen = klen;
    j->rctx = edge_rctx_dup(rc);
    j->done = done;
    j->f.fd = -1;
    j->promote = promote;
    j->mark = mark;
    if (uv_queue_work(w->loop, &j->work, l2_work, l2_after) != 0) {
        j->rc = -EAGAIN;
        l2_after(&j->work, 0);
    }
}

/* ---- copies into L2 ---- */

struct store_job {
    uv_work_t work;
    struct edge *e;
    struct cache_obj *o;
    char *key;
    size_t klen;
};

/* Writes the whole body of o (memory chunks or a file) through the writer. */
static int store_body(struct l2_writer *wr, const struct cache_obj *o)
{
    uint64_t off, n = cache_body_len(o->body);
    int fd = cache_body_file(o->body, &off);

    if (fd < 0) {
        int rc = 0;
        struct cache_body_cursor cur;
        const char *span;
        size_t k;
        cache_body_cursor_init(&cur, o->body);
        while (rc == 0 && (k = cache_body_next(&cur, o->body, n, SIZE_MAX, &span)) != 0)
            rc = l2_writer_append(wr, span, k);
        return rc ? rc : (cur.pos == n ? 0 : -EIO);
    }
    return file_copy(fd, off, n, writer_sink, wr);
}

static void store_work(uv_work_t *req)
{
    struct store_job *s = req->data;
    struct l2_writer *wr = NULL;
    int rc = l2_writer_begin(s->e->l2, s->key, s->klen, s->o, (int64_t)cache_body_len(s->o->body),
                             &wr);

    if (rc == 0 && (rc = store_body(wr, s->o)) == 0) {
        int ok;
        unsigned tok = edge__inval_store_begin(s->e, s->key, s->klen, s->o, &ok);
        rc = ok ? l2_writer_commit(&wr) : -ECANCELED;
        edge__inval_store_end(s->e, tok);
    }
    if (wr)
        l2_writer_abort(&wr);
    metrics_counter_add(rc == 0 ? s->e->m.l2_stored : s->e->m.l2_not_stored, 1);
}

static void store_after(uv_work_t *req, int status)
{
    struct store_job *s = req->data;
    (void)status;
    cache_obj_unref(&s->o);
    free(s->key);
    free(s);
}

static void l2t_store(struct edge_worker *w, const char *key, size_t klen, struct cache_obj *o)
{
    struct edge *e = w->e;
    uint64_t len = cache_body_len(o->body);

    if (cache_body_file(o->body, NULL) >= 0 && len > L2_REFRESH_MAX)
        return;
    struct store_job *s = mc_xmalloc(sizeof(*s));
    s->work.data = s;
    s->e = e;
    s->o = cache_obj_ref(o);
    s->key = mc_xstrndup(key, klen);
    s->klen = klen;
    if (uv_queue_work(w->loop, &s->work, store_work, store_after) != 0)
        store_after(&s->work, 0);
}

static void l2t_drop(struct edge_worker *w, const char *key, size_t klen)
{
    l2_remove(w->e->l2, key, klen);
}

/* ---- start-up ---- */

#define L2_STAT(field)                                                                             \
    static double l2_stat_##field(void *arg)                                                       \
    {                                                                                              \
        struct l2_stats st;                                                                        \
        l2_stats(((struct edge *)arg)->l2, &st);                                                   \
        return (double)st.field;                                                                   \
    }
L2_STAT(objects)
L2_STAT(bytes)
L2_STAT(budget)
L2_STAT(corrupt)
L2_STAT(write_errors)
L2_STAT(evictions)
L2_STAT(admission_paused)
L2_STAT(ready)
L2_STAT(indexed_at_start)

static void l2_metrics(struct edge *e)
{
    metrics_gauge_fn("mlcdn_edge_l2_objects", "Objects in L2", NULL, l2_stat_objects, e);
    metrics_gauge_fn("mlcdn_edge_l2_bytes", "Bytes charged to L2", NULL, l2_stat_bytes, e);
    metrics_gauge_fn("mlcdn_edge_l2_budget_bytes", "L2 byte budget", NULL, l2_stat_budget, e);
    metrics_gauge_fn("mlcdn_edge_l2_ready", "1 once the start-up index rebuild finished", NULL,
                     l2_stat_ready, e);
    metrics_gauge_fn("mlcdn_edge_l2_indexed_at_start", "Files found by the index rebuild", NULL,
                     l2_stat_indexed_at_start, e);
    metrics_gauge_fn("mlcdn_edge_l2_admission_paused",
                     "1 while L2 takes no new objects after a write error", NULL,
                     l2_stat_admission_paused, e);
    metrics_counter_fn("mlcdn_edge_l2_corrupt_total",
                       "L2 files dropped for a bad header, size or body checksum", NULL,
                       l2_stat_corrupt, e);
    metrics_counter_fn("mlcdn_edge_l2_write_errors_total", "L2 writes failed (ENOSPC, EIO)", NULL,
                       l2_stat_write_errors, e);
    metrics_counter_fn("mlcdn_edge_l2_evictions_total", "Objects evicted from L2", NULL,
                       l2_stat_evictions, e);
}

static int l2t_open(struct edge *e, char *err, size_t errlen)
{
    int rc;

    if (!e->cfg.disk_dir || !*e->cfg.disk_dir)
        return 0;
    /* L2 takes every storable response on its first fetch, as nginx and ATS do (a model
     * file asked for once is asked for again): SIEVE admits everything and still resists
     * scans; the choosier admission (S3-FIFO's small queue) is L1's. */
    struct l2_cfg lc = {e->cfg.disk_dir, e->cfg.disk,
                        e->cfg.disk_policy ? e->cfg.disk_policy : "sieve", e->disk_objective};
    if (e->cfg.disk < (1u << 20)) {
        snprintf(err, errlen, "--disk: at least 1M of disk cache is needed with --disk-dir");
        return -EINVAL;
    }
    if ((rc = l2_open(&lc, &e->l2, err, errlen)) != 0)
        return rc;
    l2_metrics(e);
    return 1;
}

static void l2t_close(struct edge *e)
{
    if (e->l2)
        l2_close(&e->l2);
}

const struct edge_tier_ops edge__tier_l2_ops = {
    .name = "L2",
    .level = EDGE_LV_L2,
    .open = l2t_open,
    .close = l2t_close,
    .loop_init = l2t_loop_init,
    .loop_fini = l2t_loop_fini,
    .lookup = l2t_lookup,
    .store = l2t_store,
    .drop = l2t_drop,
};
