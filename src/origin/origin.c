/* src/origin/origin.c: `mlcdn origin`, the reference origin (docs/origin.md).
 *
 * Serves the files under --root on the shared HTTP server (src/http/http_server.h):
 * GET/HEAD with ETag, Last-Modified, conditional and single Range requests, per-file
 * header overrides from FILE.hdrs, PUT (atomic: temporary file + rename) and DELETE for
 * the model store, a JSON echo for other methods, an added latency, and request counters
 * (GET /__stats, POST /__reset) so tests can assert what reached the origin.
 *
 * Threads: one struct oworker per server worker loop, touched only by that loop (its
 * counters are also read by the loop answering /__stats, under the table's mutex).
 * Requests that cannot be answered at once (latency timer, a body streamed from disk,
 * a PUT written on the thread pool) get a struct oreq, owned by its worker's list; it is
 * freed when the exchange has ended and nothing (timer, fs read, write, work) still
 * refers to it. Small bodies are read with pread() on the loop (page cache: cheaper
 * than a thread-pool round trip); larger ones go through two 256 KiB buffers read with
 * uv_fs_read on the thread pool, so memory stays bounded for files of any size. */
#include "origin/origin.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifdef SYS_openat2
#include <linux/openat2.h>
#endif

#include <uv.h>

#include "core/accesslog.h"
#include "core/buf.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/mc.h"
#include "core/metrics.h"
#include "core/sdnotify.h"
#include "core/units.h"
#include "http/http_cache.h"
#include "http/http_range.h"
#include "http/http_server.h"
#include "origin/origin_int.h"

#define ORIGIN_MAGIC 0x4f524947u
#define OWORKER_MAGIC 0x4f574b52u
#define OREQ_MAGIC 0x4f524551u

#define STREAM_CHUNK (256 * 1024)
#define SMALL_BODY (64 * 1024)
#define HDR_BUF_CAP (64 * 1024)

/* What a reload (SIGHUP) replaces. Published whole through origin->set; a replaced one is
 * kept (its directory open) until exit, since a request may still be reading it: one per
 * reload, a few hundred bytes. */
struct origin_set {
    int rootfd;
    uint64_t latency_ms;
    const char *cache_control;
    const char *token; /* --token: PUT and DELETE need it; NULL: open */
    struct conf conf;  /* owns the strings */
    struct origin_set *prev;
};

struct origin {
    unsigned magic;
    _Atomic(struct origin_set *) set;
    int has_openat2;
    unsigned nworkers;
    struct origin_stats *stats;           /* [nworkers] */
    struct oworker **workers;             /* [nworkers], set by each worker's loop_init */
    struct metrics_counter *responses[6]; /* by status class, [0] unused */
    struct metrics_counter *bytes;
    struct metrics_hist *duration;
};

struct oworker {
    unsigned magic;
    struct origin *o;
    unsigned idx;
    uv_loop_t *loop;
    struct buf hdr;    /* response header scratch; http_x_* copy what they are given */
    char *small;       /* SMALL_BODY bytes for bodies read on the loop */
    struct oreq *reqs; /* requests in flight (latency, streams, PUT) */
};

static struct origin_set *oset(const struct origin *o)
{
    return atomic_load_explicit(&((struct origin *)o)->set, memory_order_acquire);
}

enum slot_state { SL_FREE, SL_READING, SL_FULL, SL_WRITING };

struct slot {
    char *buf;
    size_t len;
    enum slot_state st;
};

struct oreq {
    unsigned magic;
    struct oworker *w;
    struct http_exchange *x;
    struct oreq *prev, *next;
    unsigned busy;  /* fs read, write, or thread-pool work in flight */
    int timer_open; /* latency timer initialised and not closed yet */
    int waiting;    /* latency timer running: the request is not processed yet */
    int aborted;    /* the client went away */
    int failed;     /* disk error while streaming */
    int ended;      /* exchange ended */
    uv_timer_t timer;
    /* streaming */
    int fd;
    int status;
    uint64_t rd_off, rd_left, wr_left, bytes;
    struct slot slots[2];
    unsigned rd_slot, wr_slot;
    int reading, writing;
    int in_pump, pump_again; /* see pump() */
    uv_fs_t fs;
    /* PUT */
    uv_work_t work;
    const char *body;
    size_t body_len;
    int put_err, put_created;
    char etag[64];
    char rel[PATH_MAX];
};

/* ---- files below the root ---- */

static int open_beneath(const struct origin *o, int dirfd, const char *rel, int flags)
{
    int fd;

    if (!*rel)
        rel = ".";
#ifdef SYS_openat2
    if (o->has_openat2) {
        /* RESOLVE_BENEATH: neither ".." nor a symlink may lead out of the root. */
        struct open_how how;
        memset(&how, 0, sizeof(how));
        how.flags = (uint64_t)flags;
        how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
        fd = (int)syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
        return fd < 0 ? -errno : fd;
    }
#endif
    fd = openat(dirfd, rel, flags);
    return fd < 0 ? -errno : fd;
}

/* Opens (creating when `create`) every directory of rel but the last segment, without
 * following symlinks, and returns the parent's fd and the last segment in *base. */
static int open_parent(const struct origin *o, const char *rel, int create, const char **base)
{
    char comp[NAME_MAX + 1];
    const char *p = rel, *slash;
    int fd = dup(oset(o)->rootfd);

    if (fd < 0)
        return -errno;
    while ((slash = strchr(p, '/')) != NULL) {
        size_t n = (size_t)(slash - p);
        if (n > NAME_MAX) {
            close(fd);
            return -ENAMETOOLONG;
        }
        memcpy(comp, p, n);
        comp[n] = '\0';
        if (create && mkdirat(fd, comp, 0755) < 0 && errno != EEXIST) {
            int e = -errno;
            close(fd);
            return e;
        }
        int nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int e = -errno;
        close(fd);
        if (nfd < 0)
            return e;
        fd = nfd;
        p = slash + 1;
    }
    *base = p;
    return fd;
}

/* Reads FILE.hdrs beside rel into text (ORIGIN_HDRS_FILE_MAX bytes) and parses it.
 * Returns 1 when the file exists, 0 when not. */
static int read_hdrs(struct oworker *w, const char *rel, char *text, struct origin_hdrs *h)
{
    char path[PATH_MAX];
    int fd, n;
    ssize_t got = 0, r;

    n = snprintf(path, sizeof(path), "%s.hdrs", *rel ? rel : "index.html");
    if (n < 0 || (size_t)n >= sizeof(path))
        return 0;
    fd = open_beneath(w->o, oset(w->o)->rootfd, path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return 0;
    while (got < ORIGIN_HDRS_FILE_MAX &&
           (r = read(fd, text + got, (size_t)(ORIGIN_HDRS_FILE_MAX - got))) > 0)
        got += r;
    close(fd);
    int skipped = origin__hdrs_parse(text, (size_t)got, h);
    if (skipped)
        log_warn("origin: ignored lines in a .hdrs file", "file=%s lines=%d", path, skipped);
    return 1;
}

/* ---- requests in flight ---- */

static void oreq_release(struct oreq *q)
{
    MC_CHECK_OBJ_NOTNULL(q, OREQ_MAGIC);
    if (!q->ended || q->busy || q->timer_open)
        return;
    struct oworker *w = q->w;
    if (q->prev)
        q->prev->next = q->next;
    else
        w->reqs = q->next;
    if (q->next)
        q->next->prev = q->prev;
    if (q->fd >= 0)
        close(q->fd);
    free(q->slots[0].buf);
    free(q->slots[1].buf);
    MC_FREE_OBJ(q);
}

static void on_latency(uv_timer_t *t);

static void on_abort(struct http_exchange *x, void *arg)
{
    struct oreq *q = arg;

    (void)x;
    MC_CHECK_OBJ_NOTNULL(q, OREQ_MAGIC);
    q->aborted = 1;
    /* A request still waiting for its latency is finished on the next loop turn. */
    if (q->waiting)
        uv_timer_start(&q->timer, on_latency, 0, 0);
}

static struct oreq *oreq_new(struct oworker *w, struct http_exchange *x)
{
    struct oreq *q = mc_xcalloc(1, sizeof(*q));

    MC_INIT_OBJ(q, OREQ_MAGIC);
    q->w = w;
    q->x = x;
    q->fd = -1;
    q->next = w->reqs;
    if (w->reqs)
        w->reqs->prev = q;
    w->reqs = q;
    http_x_on_abort(x, on_abort, q);
    return q;
}

/* ---- answering ---- */

static void log_req(struct http_exchange *x, int status, uint64_t bytes)
{
    if (log_level_get() > LOG_DEBUG)
        return;
    const struct http_request *r = http_x_request(x);
    log_emit(LOG_DEBUG, "origin request",
             "peer=%s method=%.*s path=\"%.*s\" status=%d bytes=%" PRIu64 " us=%" PRIu64,
             http_x_peer(x), (int)r->method_str.len, r->method_str.p, (int)r->target.len,
             r->target.p, status, bytes, units_now_us() - http_x_start_us(x));
}

/* Every answer that ends the exchange at once goes through here or fail(). */
static void respond(struct http_exchange *x, struct oreq *q, int status, const char *headers,
                    const void *body, size_t len)
{
    log_req(x, status, len);
    http_x_respond(x, status, headers, body, len);
    if (q) {
        q->ended = 1;
        oreq_release(q);
    }
}

static void fail(struct http_exchange *x, struct oreq *q, int status, const char *msg)
{
    log_req(x, status, 0);
    if (status >= 500)
        log_warn("origin: request failed", "status=%d error=\"%s\"", status, msg);
    http_x_error(x, status, msg);
    if (q) {
        q->ended = 1;
        oreq_release(q);
    }
}

static int errno_status(int e)
{
    switch (e) {
    case -ENOENT: return 404;
    case -ENOTDIR:
    case -EISDIR:
    case -ELOOP:
    case -EEXIST:
    case -ENOTEMPTY: return 409;
    case -EACCES:
    case -EPERM:
    case -EXDEV: /* RESOLVE_BENEATH: a symlink pointing out of the root */ return 403;
    case -ENAMETOOLONG: return 414;
    case -ENOSPC:
    case -EDQUOT: return 507;
    case -EMFILE:
    case -ENFILE:
    case -ENOMEM:
        /* Out of descriptors or memory for a moment (a burst of connections): the file is
         * there, the answer is "try again", not a server fault. */
        return 503;
    default: return 500;
    }
}

/* ---- streaming a file body ---- */

static void pump(struct oreq *q);

static void stream_end(struct oreq *q)
{
    if (q->failed)
        http_x_close_after(q->x); /* the body is short: the client must see it cut */
    log_req(q->x, q->status, q->bytes);
    http_x_end(q->x);
    q->ended = 1;
    oreq_release(q);
}

static void on_fs_read(uv_fs_t *req)
{
    struct oreq *q = MC_CONTAINER_OF(req, struct oreq, fs);
    ssize_t res = req->result;
    struct slot *s;

    MC_CHECK_OBJ_NOTNULL(q, OREQ_MAGIC);
    uv_fs_req_cleanup(req);
    q->reading = 0;
    q->busy--;
    s = &q->slots[q->rd_slot];
    if (res <= 0) {
        /* The file shrank or failed under us: stop, the short body closes the connection. */
        log_warn("origin: read failed while streaming", "error=\"%s\"",
                 res < 0 ? uv_strerror((int)res) : "unexpected end of file");
        s->st = SL_FREE;
        q->failed = 1;
    } else {
        s->len = (size_t)res;
        s->st = SL_FULL;
        q->rd_off += (uint64_t)res;
        q->rd_left -= (uint64_t)res;
        q->rd_slot ^= 1;
    }
    pump(q);
}

static void on_written(void *arg)
{
    struct oreq *q = arg;
    struct slot *s;

    MC_CHECK_OBJ_NOTNULL(q, OREQ_MAGIC);
    s = &q->slots[q->wr_slot];
    q->writing = 0;
    q->busy--;
    q->wr_left -= s->len;
    q->bytes += s->len;
    s->st = SL_FREE;
    q->wr_slot ^= 1;
    pump(q);
}

/* One read and one write in flight at most, over two buffers: the next piece is read
 * from disk while the previous one is being written to the socket. */
static void pump_once(struct oreq *q);

/* Writes may complete inside http_x_write (the socket took the bytes at once), calling
 * on_written and so pump again: such nested calls only ask for another round here. */
static void pump(struct oreq *q)
{
    if (q->in_pump) {
        q->pump_again = 1;
        return;
    }
    q->in_pump = 1;
    do {
        q->pump_again = 0;
        pump_once(q);
    } while (q->pump_again);
    q->in_pump = 0;
    if (q->reading || q->writing || q->ended)
        return;
    if (q->aborted || q->failed || q->wr_left == 0)
        stream_end(q);
}

static void pump_once(struct oreq *q)
{
    struct slot *s;
    int e;

    if (!q->aborted && !q->failed && !q->writing && q->slots[q->wr_slot].st == SL_FULL) {
        s = &q->slots[q->wr_slot];
        s->st = SL_WRITING;
        q->writing = 1;
        q->busy++;
        e = http_x_write(q->x, s->buf, s->len, on_written, q);
        if (e) {
            q->writing = 0;
            q->busy--;
            s->st = SL_FULL;
            q->aborted = 1;
        }
    }
    if (!q->aborted && !q->failed && !q->reading && q->rd_left &&
        q->slots[q->rd_slot].st == SL_FREE) {
        s = &q->slots[q->rd_slot];
        uv_buf_t b = uv_buf_init(s->buf, (unsigned)MC_MIN(q->rd_left, (uint64_t)STREAM_CHUNK));
        s->st = SL_READING;
        q->reading = 1;
        q->busy++;
        e = uv_fs_read(q->w->loop, &q->fs, q->fd, &b, 1, (int64_t)q->rd_off, on_fs_read);
        if (e) {
            log_warn("origin: cannot queue a read", "error=\"%s\"", uv_strerror(e));
            q->reading = 0;
            q->busy--;
            s->st = SL_FREE;
            q->failed = 1;
        }
    }
}

/* Sends [off, off+len) of fd after a head already given to http_x_start(). Takes fd. */
static void stream_start(struct oreq *q, int fd, int status, uint64_t off, uint64_t len)
{
    size_t chunk = (size_t)MC_MIN(len, (uint64_t)STREAM_CHUNK);

    q->fd = fd;
    q->status = status;
    q->rd_off = off;
    q->rd_left = q->wr_left = len;
    /* Payload memory: when it cannot be had, the response is cut short (and logged). */
    q->slots[0].buf = malloc(chunk);
    q->slots[1].buf = malloc(chunk);
    if (!q->slots[0].buf || !q->slots[1].buf) {
        log_warn("origin: no memory for a stream buffer", "bytes=%zu", chunk);
        q->failed = 1;
    }
    pump(q);
}

/* ---- GET / HEAD ---- */

/* A model's manifest and the store's index change with every publish: caches must
 * revalidate them (their ETag makes that cheap), while a version's model.onnx never
 * changes once written. */
static int model_manifest(const char *rel)
{
    size_t n = strlen(rel);
    if (!strcmp(rel, "models/index.json"))
        return 1;
    return strncmp(rel, "models/", 7) == 0 && n > 21 && !strcmp(rel + n - 14, "/manifest.json") &&
           !memchr(rel + 7, '/', n - 7 - 14);
}

static void serve_file(struct oworker *w, struct http_exchange *x, struct oreq *q)
{
    const struct http_request *r = http_x_request(x);
    struct origin *o = w->o;
    char rel[PATH_MAX - 32], hdrs_text[ORIGIN_HDRS_FILE_MAX];
    char etag[64], lmod[32];
    struct origin_hdrs ov;
    struct stat st;
    int fd, e, have_hdrs, status;
    uint64_t first = 0, len;

    e = origin__path_clean(r->path.p, r->path.len, rel, sizeof(rel));
    if (e) {
        fail(x, q, e == -ENAMETOOLONG ? 414 : 400, "invalid path");
        return;
    }
    if (origin__path_hidden(rel)) {
        fail(x, q, 404, "not found");
        return;
    }
    fd = open_beneath(o, oset(o)->rootfd, rel, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        int ifd = open_beneath(o, fd, "index.html", O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        close(fd);
        fd = ifd;
        if (fd >= 0) {
            size_t l = strlen(rel);
            snprintf(rel + l, sizeof(rel) - l, "%sindex.html", l ? "/" : "");
        }
        if (fd >= 0 && fstat(fd, &st) != 0) {
            close(fd);
            fd = -EIO;
        }
    } else if (fd >= 0 && fstat(fd, &st) != 0) {
        close(fd);
        fd = -EIO;
    }
    if (fd >= 0 && !S_ISREG(st.st_mode)) {
        close(fd);
        fd = -ENOENT;
    }
    have_hdrs = read_hdrs(w, rel, hdrs_text, &ov);
    if (fd < 0) {
        if (have_hdrs) {
            /* A .hdrs file without its body: an empty response with those headers (for
             * redirects and cacheable errors). */
            const char *const defs[][2] = {{"Cache-Control", oset(o)->cache_control}};
            buf_reset(&w->hdr);
            origin__headers_build(&w->hdr, defs, MC_ARRAY_SIZE(defs), &ov);
            respond(x, q, ov.status ? ov.status : 200, w->hdr.data, "", 0);
            return;
        }
        if (fd != -ENOENT && fd != -ENOTDIR)
            log_warn("origin: cannot open", "path=\"%s\" error=\"%s\"", rel, uv_strerror(fd));
        /* Whatever is not a readable file here is "not found", symlinks out included. */
        int st_code = errno_status(fd);
        if (st_code == 409 || fd == -EXDEV)
            st_code = 404;
        fail(x, q, st_code, st_code == 404 ? "not found" : uv_strerror(fd));
        return;
    }

    int64_t mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    size_t elen = origin__etag(etag, (uint64_t)st.st_size, mtime_ns, (uint64_t)st.st_ino);
    int64_t lm = (int64_t)st.st_mtim.tv_sec;
    http_date_format(lm, lmod);
    const char *const defs[][2] = {
        {"Content-Type", origin__content_type(rel)},
        {"Cache-Control", model_manifest(rel) ? "no-cache" : oset(o)->cache_control},
        {"ETag", etag},
        {"Last-Modified", lmod},
        {"Accept-Ranges", "bytes"},
    };
    const struct origin_hdrs *over = have_hdrs ? &ov : NULL;
    /* Validators overridden by .hdrs are the ones conditional requests are checked against. */
    const struct origin_hdr *oh;
    const char *et = etag;
    if ((oh = origin__hdrs_find(over, "ETag")) != NULL) {
        et = oh->value;
        elen = oh->vlen;
    }
    if ((oh = origin__hdrs_find(over, "Last-Modified")) != NULL &&
        http_date_parse(oh->value, oh->vlen, &lm) != 0)
        lm = -1;

    buf_reset(&w->hdr);
    origin__headers_build(&w->hdr, defs, MC_ARRAY_SIZE(defs), over);
    status = have_hdrs && ov.status ? ov.status : 200;
    len = (uint64_t)st.st_size;

    if (status == 200) {
        int c = http_cache_conditional(r, et, elen, lm);
        if (c == 304) {
            close(fd);
            respond(x, q, 304, w->hdr.data, NULL, 0);
            return;
        }
        if (c == 412) {
            close(fd);
            fail(x, q, 412, "precondition failed");
            return;
        }
        struct http_range_answer ra;
        http_range_answer(r, len, et, elen, lm, &ra);
        if (ra.status == 416) {
            close(fd);
            buf_reset(&w->hdr);
            buf_printf(&w->hdr,
                       "Content-Type: application/json\r\nContent-Range: %s\r\n"
                       "Cache-Control: %s\r\n",
                       ra.content_range, oset(o)->cache_control);
            static const char msg[] = "{\"error\":\"range not satisfiable\",\"status\":416}\n";
            respond(x, q, 416, w->hdr.data, msg, sizeof(msg) - 1);
            return;
        }
        if (ra.status == 206) {
            status = 206;
            buf_printf(&w->hdr, "Content-Range: %s\r\n", ra.content_range);
            first = ra.first;
            len = ra.len;
        }
    }

    if (r->method == HTTP_M_HEAD || status < 200 || status == 204 || status == 304) {
        close(fd);
        respond(x, q, status, w->hdr.data, NULL, len);
        return;
    }
    if (len <= SMALL_BODY) {
        ssize_t got = 0, n;
        while ((uint64_t)got < len && (n = pread(fd, w->small + got, (size_t)len - (size_t)got,
                                                 (off_t)(first + (uint64_t)got))) > 0)
            got += n;
        close(fd);
        if ((uint64_t)got != len) {
            fail(x, q, 500, "short read");
            return;
        }
        respond(x, q, status, w->hdr.data, w->small, (size_t)len);
        return;
    }
    if (!q)
        q = oreq_new(w, x);
    http_x_start(x, status, w->hdr.data, (int64_t)len);
    stream_start(q, fd, status, first, len);
}

/* ---- PUT / DELETE ---- */

static void put_work(uv_work_t *req)
{
    struct oreq *q = MC_CONTAINER_OF(req, struct oreq, work);
    const struct origin *o = q->w->o;
    static _Atomic unsigned long seq;
    char tmp[64];
    const char *base;
    struct stat st;
    int dfd, fd = -1, e = 0;

    dfd = open_parent(o, q->rel, 1, &base);
    if (dfd < 0) {
        q->put_err = dfd;
        return;
    }
    snprintf(tmp, sizeof(tmp), ".mlcdn-put-%ld-%lu", (long)getpid(), atomic_fetch_add(&seq, 1));
    fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        e = -errno;
        goto out;
    }
    for (size_t off = 0; off < q->body_len;) {
        ssize_t n = write(fd, q->body + off, q->body_len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            e = n < 0 ? -errno : -EIO;
            goto out;
        }
        off += (size_t)n;
    }
    if (fstat(fd, &st) != 0) {
        e = -errno;
        goto out;
    }
    q->put_created = fstatat(dfd, base, &(struct stat){0}, AT_SYMLINK_NOFOLLOW) != 0;
    /* rename(2) is atomic: readers see the old file or the new one, never a partial one. */
    if (renameat(dfd, tmp, dfd, base) != 0) {
        e = -errno;
        goto out;
    }
    origin__etag(q->etag, (uint64_t)st.st_size,
                 (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec, (uint64_t)st.st_ino);
out:
    if (fd >= 0) {
        close(fd);
        if (e)
            unlinkat(dfd, tmp, 0);
    }
    close(dfd);
    q->put_err = e;
}

static void put_done(uv_work_t *req, int status)
{
    struct oreq *q = MC_CONTAINER_OF(req, struct oreq, work);
    struct oworker *w = q->w;
    struct buf b;
    char head[128];

    MC_CHECK_OBJ_NOTNULL(q, OREQ_MAGIC);
    q->busy--;
    if (status == UV_ECANCELED)
        q->put_err = -ECANCELED;
    if (q->put_err) {
        log_warn("origin: PUT failed", "path=\"%s\" error=\"%s\"", q->rel, uv_strerror(q->put_err));
        fail(q->x, q, errno_status(q->put_err), uv_strerror(q->put_err));
        return;
    }
    buf_init(&b, 64 * 1024);
    buf_puts(&b, "{\"path\": \"/");
    buf_json_esc(&b, q->rel, strlen(q->rel));
    buf_printf(&b, "\", \"size\": %zu, \"etag\": ", q->body_len);
    buf_json_str(&b, q->etag, strlen(q->etag));
    buf_puts(&b, "}\n");
    snprintf(head, sizeof(head), "Content-Type: application/json\r\nETag: %s\r\n", q->etag);
    (void)w;
    respond(q->x, q, q->put_created ? 201 : 200, head, b.data, b.len);
    buf_fini(&b);
}

static int clean_for_write(struct oworker *w, struct http_exchange *x, struct oreq *q, char *rel,
                           size_t cap)
{
    const struct http_request *r = http_x_request(x);
    const char *tok = oset(w->o)->token;
    int e;

    if (tok) {
        const struct http_header *a = http_request_header(r, "authorization");
        if (!a || a->value.len < 7 || strncasecmp(a->value.p, "Bearer ", 7) != 0 ||
            !mc_consttime_eq(a->value.p + 7, a->value.len - 7, tok, strlen(tok))) {
            log_req(x, 401, 0);
            http_x_respond(x, 401, "WWW-Authenticate: Bearer\r\nContent-Type: application/json\r\n",
                           "{\"error\":\"writes need Authorization: Bearer <token>\","
                           "\"status\":401}\n",
                           sizeof("{\"error\":\"writes need Authorization: Bearer <token>\","
                                  "\"status\":401}\n") -
                               1);
            if (q) {
                q->ended = 1;
                oreq_release(q);
            }
            return -EACCES;
        }
    }
    e = origin__path_clean(r->path.p, r->path.len, rel, cap);
    if (e) {
        fail(x, q, e == -ENAMETOOLONG ? 414 : 400, "invalid path");
        return e;
    }
    /* .hdrs files may be written (tests set headers remotely); temporary names may not. */
    if (!*rel || (origin__path_hidden(rel) && strstr(rel, ".mlcdn-"))) {
        fail(x, q, 400, "not a file path");
        return -EINVAL;
    }
    return 0;
}

/* A write under models/ must follow the store's layout (origin_models.c); a manifest must
 * parse, so a broken one never replaces a good one. 0, or the exchange was answered. */
static int model_store_check(struct http_exchange *x, struct oreq *q, const char *rel, int put)
{
    struct origin_model_path mp;
    char msg[256];
    int e = origin__model_path(rel, &mp, msg, sizeof(msg));

    if (e == 1 && put && (mp.manifest || mp.index)) {
        size_t len;
        const char *body = http_x_body(x, &len);
        e = mp.index ? origin__index_check(body, len, msg, sizeof(msg))
                     : origin__manifest_check(body, len, mp.name, msg, sizeof(msg));
    }
    if (e < 0) {
        fail(x, q, 400, msg);
        return e;
    }
    return 0;
}

static void put_file(struct oworker *w, struct http_exchange *x, struct oreq *q)
{
    char rel[PATH_MAX - 32];
    int e;

    if (clean_for_write(w, x, q, rel, sizeof(rel)) || model_store_check(x, q, rel, 1))
        return;
    if (!q)
        q = oreq_new(w, x);
    memcpy(q->rel, rel, strlen(rel) + 1);
    q->body = http_x_body(x, &q->body_len);
    q->busy++;
    e = uv_queue_work(w->loop, &q->work, put_work, put_done);
    if (e) {
        q->busy--;
        fail(x, q, 500, uv_strerror(e));
    }
}

static void delete_file(struct oworker *w, struct http_exchange *x, struct oreq *q)
{
    char rel[PATH_MAX - 32];
    const char *base;
    int dfd, e = 0;

    if (clean_for_write(w, x, q, rel, sizeof(rel)) || model_store_check(x, q, rel, 0))
        return;
    dfd = open_parent(w->o, rel, 0, &base);
    if (dfd < 0)
        e = dfd;
    else if (unlinkat(dfd, base, 0) != 0)
        e = -errno;
    if (dfd >= 0)
        close(dfd);
    if (e) {
        fail(x, q, errno_status(e), e == -ENOENT || e == -ENOTDIR ? "not found" : uv_strerror(e));
        return;
    }
    respond(x, q, 204, NULL, NULL, 0);
}

/* ---- other methods: a JSON echo, so the edge's forwarding can be checked ---- */

static void echo(struct oworker *w, struct http_exchange *x, struct oreq *q)
{
    const struct http_request *r = http_x_request(x);
    const struct http_header *ct = http_request_header(r, "Content-Type");
    size_t blen;
    struct buf b;

    (void)http_x_body(x, &blen);
    buf_init(&b, 64 * 1024);
    buf_puts(&b, "{\"method\": ");
    buf_json_str(&b, r->method_str.p, r->method_str.len);
    buf_puts(&b, ", \"path\": ");
    buf_json_str(&b, r->path.p, r->path.len);
    buf_puts(&b, ", \"query\": ");
    buf_json_str(&b, r->query.p, r->query.len);
    buf_puts(&b, ", \"content_type\": ");
    buf_json_str(&b, ct ? ct->value.p : "", ct ? ct->value.len : 0);
    buf_printf(&b, ", \"body_len\": %zu}\n", blen);
    buf_reset(&w->hdr);
    buf_printf(&w->hdr, "Content-Type: application/json\r\nCache-Control: %s\r\n",
               oset(w->o)->cache_control);
    respond(x, q, 200, w->hdr.data, b.data, b.len);
    buf_fini(&b);
}

static void process(struct oworker *w, struct http_exchange *x, struct oreq *q)
{
    switch (http_x_request(x)->method) {
    case HTTP_M_GET:
    case HTTP_M_HEAD: serve_file(w, x, q); break;
    case HTTP_M_PUT: put_file(w, x, q); break;
    case HTTP_M_DELETE: delete_file(w, x, q); break;
    default: echo(w, x, q); break;
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    struct oreq *q = h->data;

    MC_CHECK_OBJ_NOTNULL(q, OREQ_MAGIC);
    q->timer_open = 0;
    oreq_release(q);
}

static void on_latency(uv_timer_t *t)
{
    struct oreq *q = t->data;

    MC_CHECK_OBJ_NOTNULL(q, OREQ_MAGIC);
    q->waiting = 0;
    uv_close((uv_handle_t *)&q->timer, on_timer_closed);
    if (q->aborted)
        fail(q->x, q, 503, "client went away"); /* nothing is sent; this ends the exchange */
    else
        process(q->w, q->x, q);
}

/* ---- the handler ---- */

static void answer_stats(struct oworker *w, struct http_exchange *x)
{
    struct buf b;

    buf_init(&b, SIZE_MAX);
    origin__stats_json(w->o->stats, w->o->nworkers, &b);
    respond(x, NULL, 200, "Content-Type: application/json\r\nCache-Control: no-store\r\n", b.data,
            b.len);
    buf_fini(&b);
}

static void on_request(struct http_exchange *x, void *arg)
{
    struct oworker *w = http_x_worker(x);
    const struct http_request *r = http_x_request(x);
    uint64_t latency;

    (void)arg;
    MC_CHECK_OBJ_NOTNULL(w, OWORKER_MAGIC);
    /* Control endpoints are not counted: tests read the counters through them. */
    if (r->path.len > 3 && memcmp(r->path.p, "/__", 3) == 0) {
        if (http_str_ieq(r->path, "/__stats")) {
            if (r->method == HTTP_M_GET || r->method == HTTP_M_HEAD)
                answer_stats(w, x);
            else
                fail(x, NULL, 405, "use GET");
            return;
        }
        if (http_str_ieq(r->path, "/__reset")) {
            if (r->method != HTTP_M_POST) {
                fail(x, NULL, 405, "use POST");
                return;
            }
            for (unsigned k = 0; k < w->o->nworkers; k++)
                origin__stats_reset(&w->o->stats[k]);
            respond(x, NULL, 200, "Content-Type: application/json\r\nCache-Control: no-store\r\n",
                    "{\"reset\": true}\n", 16);
            return;
        }
        if (http_str_ieq(r->path, "/__health")) {
            respond(x, NULL, 200, "Content-Type: text/plain\r\nCache-Control: no-store\r\n", "ok\n",
                    3);
            return;
        }
    }
    origin__stats_add(&w->o->stats[w->idx], r->method_str.p, r->method_str.len, r->path.p,
                      r->path.len);

    latency = oset(w->o)->latency_ms;
    const struct http_header *lh = http_request_header(r, "X-Origin-Latency");
    if (lh && origin__latency_parse(lh->value.p, lh->value.len, &latency) != 0) {
        fail(x, NULL, 400, "invalid X-Origin-Latency (milliseconds, at most 600000)");
        return;
    }
    if (latency == 0) {
        process(w, x, NULL);
        return;
    }
    /* The stand-in for a far-away origin: the whole answer waits, the loop does not. */
    struct oreq *q = oreq_new(w, x);
    uv_timer_init(w->loop, &q->timer);
    q->timer.data = q;
    q->timer_open = 1;
    q->waiting = 1;
    /* libuv's clock counts whole milliseconds, so a timer of N ms can fire up to 1 ms before N
     * ms have passed since the request arrived: the added latency is a floor, so one more. */
    uv_timer_start(&q->timer, on_latency, latency + 1, 0);
}

/* ---- worker loops ---- */

static void *loop_init(uv_loop_t *loop, unsigned idx, void *arg)
{
    struct origin *o = arg;
    struct oworker *w = mc_xcalloc(1, sizeof(*w));

    MC_INIT_OBJ(w, OWORKER_MAGIC);
    w->o = o;
    w->idx = idx;
    w->loop = loop;
    buf_init(&w->hdr, HDR_BUF_CAP);
    w->small = mc_xmalloc(SMALL_BODY);
    o->workers[idx] = w;
    return w;
}

/* The grace period is over: requests still waiting for their latency end now (their
 * connections are closed already); streams and PUTs end when their I/O returns. */
static void loop_fini(uv_loop_t *loop, void *data, void *arg)
{
    struct oworker *w = data;
    struct oreq *q, *next;

    (void)loop;
    (void)arg;
    MC_CHECK_OBJ_NOTNULL(w, OWORKER_MAGIC);
    for (q = w->reqs; q; q = next) {
        next = q->next;
        if (q->waiting) {
            q->waiting = 0;
            uv_timer_stop(&q->timer);
            uv_close((uv_handle_t *)&q->timer, on_timer_closed);
            fail(q->x, q, 503, "shutting down");
        }
    }
}

static void oworker_free(struct oworker *w)
{
    if (!w)
        return;
    MC_CHECK_OBJ(w, OWORKER_MAGIC);
    MC_ASSERT(w->reqs == NULL);
    buf_fini(&w->hdr);
    free(w->small);
    MC_FREE_OBJ(w);
}

/* ---- metrics and the admin listener ---- */

static void metrics_init(struct origin *o)
{
    char labels[32];
    for (int k = 1; k <= 5; k++) {
        snprintf(labels, sizeof(labels), "class=\"%dxx\"", k);
        o->responses[k] = metrics_counter("mlcdn_origin_responses_total",
                                          "Responses of the file listener by status class", labels);
    }
    o->bytes = metrics_counter("mlcdn_origin_bytes_served_total",
                               "Body bytes sent by the file listener", NULL);
    o->duration = metrics_hist("mlcdn_origin_request_duration_seconds",
                               "Time from request head to the last response byte (file listener, "
                               "added latency included)",
                               NULL, 1e6, 16, 60000000);
}

static void on_done(const struct http_x_done *d, void *arg)
{
    struct origin *o = arg;
    if (d->listener != 0)
        return;
    if (d->status >= 100 && d->status < 600)
        metrics_counter_add(o->responses[d->status / 100], 1);
    metrics_counter_add(o->bytes, d->bytes);
    metrics_hist_observe(o->duration, d->end_us - d->start_us);
}

/* --admin: GET /metrics (Prometheus text) and GET /health, apart from the files so that no
 * file under --root is shadowed. */
static void on_admin(struct http_exchange *x, void *arg)
{
    const struct http_request *r = http_x_request(x);
    (void)arg;
    if (http_str_ieq(r->path, "/health")) {
        http_x_respond(x, 200, "Content-Type: text/plain\r\nCache-Control: no-store\r\n", "ok\n",
                       3);
        return;
    }
    if (!http_str_ieq(r->path, "/metrics")) {
        http_x_error(x, 404, "admin paths: /metrics, /health");
        return;
    }
    if (r->method != HTTP_M_GET && r->method != HTTP_M_HEAD) {
        http_x_error(x, 405, "use GET");
        return;
    }
    struct buf b;
    buf_init(&b, 64u << 20);
    if (metrics_render(&b) != 0) {
        buf_fini(&b);
        http_x_error(x, 500, "metrics over 64 MiB");
        return;
    }
    http_x_respond(x, 200, "Content-Type: text/plain; version=0.0.4\r\nCache-Control: no-store\r\n",
                   b.data, b.len);
    buf_fini(&b);
}

/* ---- the subcommand ---- */

struct origin_args {
    const char *listen, *root, *latency_s, *cache_control, *log_level;
    long threads;
    uint64_t max_body;
    const char *admin;
    const char *token;
    struct accesslog_opts lo;
};

#define ORIGIN_NOPTS 13

/* CONF_RELOAD: what SIGHUP applies; --listen and --threads need a restart. */
static size_t origin_opts(struct origin_args *a, struct conf_opt *out)
{
    const struct conf_opt opts[] = {
        {"listen", CONF_STR, &a->listen, "ADDR:PORT to listen on (port 0: any free port)"},
        {"root", CONF_STR, &a->root, "directory to serve (required)", CONF_RELOAD},
        {"latency", CONF_STR, &a->latency_s, "added before each answer: MS, or 250ms, 1s",
         CONF_RELOAD},
        {"cache-control", CONF_STR, &a->cache_control, "Cache-Control of served files",
         CONF_RELOAD},
        {"threads", CONF_INT, &a->threads, "worker threads (default 1)"},
        {"max-body", CONF_SIZE, &a->max_body, "largest request body (PUT), default 256M",
         CONF_RELOAD},
        {"log-level", CONF_STR, &a->log_level, "debug (one line per request), info, warn, error",
         CONF_RELOAD},
        {"admin", CONF_STR, &a->admin,
         "admin address for GET /metrics and /health (default 127.0.0.1:0; \"\" disables)"},
        {"access-log", CONF_STR, &a->lo.access_log,
         "one line per request to FILE, '-' (stdout) or 'syslog' (default: none)"},
        {"access-log-format", CONF_STR, &a->lo.format, "combined (default) or json"},
        {"error-log", CONF_STR, &a->lo.error_log, "log lines to FILE instead of stderr"},
        {"token", CONF_STR, &a->token,
         "PUT and DELETE need Authorization: Bearer TOKEN (default: env MLCDN_ADMIN_TOKEN; "
         "unset: writes are open)",
         CONF_RELOAD},
    };
    MC_ASSERT(MC_ARRAY_SIZE(opts) <= ORIGIN_NOPTS);
    memcpy(out, opts, sizeof(opts));
    return MC_ARRAY_SIZE(opts);
}

/* Parses the flags and the file into a and a new set (its directory opened, its strings in
 * set->conf). 0, or -EINVAL with err naming the flag (or FILE:LINE); *out is the caller's
 * to free with set_free either way (NULL when nothing was made). */
static int origin_args_parse(struct origin_args *a, int argc, char **argv, struct origin_set **out,
                             char *err, size_t errlen)
{
    struct origin_set *set = mc_xcalloc(1, sizeof(*set));
    struct conf_opt opts[ORIGIN_NOPTS];
    size_t n;

    *out = set;
    set->rootfd = -1;
    memset(a, 0, sizeof(*a));
    a->listen = "127.0.0.1:8081";
    a->latency_s = "0";
    a->cache_control = "public, max-age=3600";
    a->log_level = "info";
    a->threads = 1;
    a->max_body = 256ull << 20;
    a->admin = "127.0.0.1:0";
    n = origin_opts(a, opts);
    if (conf_parse(&set->conf, opts, n, argc, argv, 0, err, errlen) != 0 ||
        conf_check_keys(&set->conf, opts, n, NULL, 0, err, errlen) != 0)
        return -EINVAL;
#define BAD(...)                                                                                   \
    do {                                                                                           \
        snprintf(err, errlen, __VA_ARGS__);                                                        \
        conf_locate(&set->conf, (const char *const *)argv, argc, err, errlen);                     \
        return -EINVAL;                                                                            \
    } while (0)
    if (log_level_parse(a->log_level) < 0)
        BAD("--log-level: '%s' is not a level", a->log_level);
    if (!a->root)
        BAD("--root DIR is required");
    if (origin__latency_parse(a->latency_s, strlen(a->latency_s), &set->latency_ms) != 0)
        BAD("--latency: '%s' is not a latency (MS, 250ms, 1s)", a->latency_s);
    if (a->threads < 1 || a->threads > 1024)
        BAD("--threads: %ld is not between 1 and 1024", a->threads);
    for (const char *p = a->cache_control; *p; p++)
        if ((unsigned char)*p < 0x20 && *p != '\t')
            BAD("--cache-control: control characters");
    set->cache_control = a->cache_control;
    if (!a->token)
        a->token = getenv("MLCDN_ADMIN_TOKEN");
    set->token = a->token && *a->token ? a->token : NULL;
#undef BAD
    set->rootfd = open(a->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (set->rootfd < 0) {
        snprintf(err, errlen, "--root %s: %s", a->root, strerror(errno));
        conf_locate(&set->conf, (const char *const *)argv, argc, err, errlen);
        return -EIO; /* not a usage error: the directory is not there (yet) */
    }
    return 0;
}

static void set_free(struct origin_set *set)
{
    while (set) {
        struct origin_set *prev = set->prev;
        if (set->rootfd >= 0)
            close(set->rootfd);
        conf_fini(&set->conf);
        free(set);
        set = prev;
    }
}

static struct accesslog *access_log; /* --access-log, --error-log: one per process */

/* The process around the origin: its main loop and signals.
 *   SIGHUP        reload (root, latency, cache-control, max-body, log level)
 *   SIGUSR1       reopen the access and error log files (logrotate)
 *   SIGTERM/INT   stop: requests in flight get 5 s
 * No drain: the origin sits behind edges, which try the next origin (or serve stale). */
struct origin_daemon {
    uv_signal_t sig[4];
    size_t nsig;
    struct origin *o;
    struct http_server *srv;
    struct http_server_cfg cfg;
    struct origin_args start;
    int argc;
    char **argv;
};

/* SIGHUP: a file or value that does not check is refused (logged with the file and line)
 * and nothing changes; otherwise the restart-only settings keep their running value (one
 * log line names them) and the rest apply to the next requests. */
static void origin_reload(struct origin_daemon *d)
{
    struct origin_args na;
    struct origin_set *set;
    struct conf_opt oldo[ORIGIN_NOPTS], newo[ORIGIN_NOPTS];
    char err[512], kept[256];

    sdnotify_reloading();
    if (origin_args_parse(&na, d->argc, d->argv, &set, err, sizeof(err)) != 0) {
        conf_reload_count(0);
        log_error("config reload refused; the running configuration stays", "error=\"%s\"", err);
        set_free(set);
        sdnotify_ready("configuration reload refused; the previous one runs");
        return;
    }
    size_t n = origin_opts(&d->start, oldo);
    origin_opts(&na, newo);
    if (conf_keep_restart_only(oldo, newo, n, kept, sizeof(kept)))
        log_warn("config: settings need a restart; running values kept", "file=%s settings=%s",
                 conf_file(&set->conf) ? conf_file(&set->conf) : "-", kept);
    set->prev = atomic_load(&d->o->set);
    atomic_store_explicit(&d->o->set, set, memory_order_release);
    http_server_set_limits(d->srv, na.max_body, d->cfg.header_timeout_ms, d->cfg.body_timeout_ms,
                           d->cfg.idle_timeout_ms, d->cfg.send_timeout_ms);
    log_level_set_name(na.log_level);
    conf_reload_count(1);
    log_info("config reloaded", "root=\"%s\" latency_ms=%" PRIu64, na.root, set->latency_ms);
    sdnotify_ready("configuration reloaded");
}

static void on_signal(uv_signal_t *sig, int signum)
{
    struct origin_daemon *d = sig->data;

    if (signum == SIGHUP) {
        origin_reload(d);
        return;
    }
    if (signum == SIGUSR1) {
        accesslog_reopen_all(access_log);
        return;
    }
    log_info("origin: stopping", "signal=%d", signum);
    sdnotify_stopping();
    for (size_t i = 0; i < d->nsig; i++)
        if (!uv_is_closing((uv_handle_t *)&d->sig[i]))
            uv_close((uv_handle_t *)&d->sig[i], NULL);
}

/* One handle per signal the origin answers; before the listener, so that a SIGTERM right
 * after the ready line is never lost. */
static int signals_init(struct origin_daemon *d, uv_loop_t *loop)
{
    static const int signals[] = {SIGHUP, SIGTERM, SIGINT, SIGUSR1};
    for (size_t i = 0; i < MC_ARRAY_SIZE(signals); i++) {
        if (uv_signal_init(loop, &d->sig[i]) != 0)
            return -EMFILE;
        d->nsig++;
        d->sig[i].data = d;
        uv_signal_start(&d->sig[i], on_signal, signals[i]);
    }
    return 0;
}

static void usage(void)
{
    printf("mlcdn origin: reference origin serving the files under --root (docs/origin.md)\n");
}

int origin_main(int argc, char **argv)
{
    struct origin_daemon d;
    struct origin_set *set = NULL;
    struct origin o;
    char err[512];
    int rc = 1;

    memset(&o, 0, sizeof(o));
    memset(&d, 0, sizeof(d));
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            struct conf_opt opts[ORIGIN_NOPTS];
            usage();
            conf_usage("origin", "--root DIR [--listen ADDR:PORT] [options]", opts,
                       origin_opts(&d.start, opts));
            return 0;
        }
    }
    if ((rc = origin_args_parse(&d.start, argc, argv, &set, err, sizeof(err))) != 0) {
        fprintf(stderr, "mlcdn origin: %s\n", err);
        set_free(set);
        return rc == -EIO ? 1 : 2;
    }
    rc = 1;
    log_level_set_name(d.start.log_level);
    if (accesslog_setup(&d.start.lo, &access_log, err, sizeof(err)) != 0) {
        fprintf(stderr, "mlcdn origin: %s\n", err);
        set_free(set);
        return 2;
    }
    d.argc = argc;
    d.argv = argv;
    d.o = &o;
    atomic_init(&o.set, set);
    MC_INIT_OBJ(&o, ORIGIN_MAGIC);
#ifdef SYS_openat2
    {
        struct open_how how;
        memset(&how, 0, sizeof(how));
        how.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
        how.resolve = RESOLVE_BENEATH;
        int fd = (int)syscall(SYS_openat2, set->rootfd, ".", &how, sizeof(how));
        if (fd >= 0) {
            o.has_openat2 = 1;
            close(fd);
        } else {
            log_warn("origin: openat2 unavailable; symlinks may lead out of --root", "error=\"%s\"",
                     strerror(errno));
        }
    }
#endif
    o.nworkers = (unsigned)d.start.threads;
    o.stats = mc_xcalloc(o.nworkers, sizeof(*o.stats));
    o.workers = mc_xcalloc(o.nworkers, sizeof(*o.workers));
    for (unsigned k = 0; k < o.nworkers; k++)
        origin__stats_init(&o.stats[k]);
    conf_reload_metrics_init();

    /* A client that goes away must not kill the process: writes then fail with EPIPE. */
    signal(SIGPIPE, SIG_IGN);

    struct http_server_cfg *cfg = &d.cfg;
    http_server_cfg_default(cfg);
    cfg->threads = o.nworkers;
    cfg->limits.max_body = d.start.max_body;
    cfg->listeners[0].addr = d.start.listen;
    cfg->listeners[0].handler = on_request;
    cfg->listeners[0].arg = &o;
    cfg->listeners[0].name = "origin";
    cfg->nlisteners = 1;
    if (d.start.admin && *d.start.admin)
        cfg->listeners[cfg->nlisteners++] = (struct http_listener_cfg){d.start.admin, on_admin, &o,
                                                                       "admin", 0};
    cfg->loop_init = loop_init;
    cfg->loop_fini = loop_fini;
    cfg->loop_arg = &o;
    cfg->access_log = access_log;
    cfg->on_done = on_done;
    metrics_init(&o);

    uv_loop_t loop;
    uv_loop_init(&loop);
    if (signals_init(&d, &loop) != 0 || http_server_start(cfg, &d.srv, err, sizeof(err)) != 0) {
        fprintf(stderr, "mlcdn origin: %s\n", d.nsig < 4 ? "cannot set up signals" : err);
        for (size_t i = 0; i < d.nsig; i++)
            uv_close((uv_handle_t *)&d.sig[i], NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        goto out_stats;
    }
    {
        /* The URL names the address as given (0.0.0.0 for ":PORT") and the bound port. */
        const char *listen = d.start.listen;
        const char *colon = strrchr(listen, ':');
        int hl = colon ? (int)(colon - listen) : 0;
        char adm[128] = "";
        if (cfg->nlisteners > 1) {
            const char *admin = d.start.admin, *ac = strrchr(admin, ':');
            int al = ac ? (int)(ac - admin) : 0;
            snprintf(adm, sizeof(adm), " admin=http://%.*s:%d", al ? al : 9,
                     al ? admin : "127.0.0.1", http_server_port(d.srv, 1));
        }
        printf("origin listening on http://%.*s:%d%s\n", hl ? hl : 7, hl ? listen : "0.0.0.0",
               http_server_port(d.srv, 0), adm);
        fflush(stdout);
    }
    log_info("origin: serving", "root=\"%s\" listen=%s threads=%u latency_ms=%" PRIu64,
             d.start.root, d.start.listen, o.nworkers, set->latency_ms);
    {
        char status[160];
        snprintf(status, sizeof(status), "serving %s on port %d", d.start.root,
                 http_server_port(d.srv, 0));
        sdnotify_ready(status);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    http_server_stop(d.srv, 5000);
    http_server_free(&d.srv);
    rc = 0;
out_stats:
    for (unsigned k = 0; k < o.nworkers; k++) {
        oworker_free(o.workers[k]);
        origin__stats_fini(&o.stats[k]);
    }
    free(o.workers);
    free(o.stats);
    accesslog_free(&access_log); /* after the server: its last lines are written */
    set_free(atomic_load(&o.set));
    return rc;
}
