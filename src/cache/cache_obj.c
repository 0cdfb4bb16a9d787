/* src/cache/cache_obj.c: see cache_obj.h. */
#include "cache/cache_obj.h"

#include <errno.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/mc.h"

#define CACHE_BODY_MAGIC 0x424f4459u
#define CACHE_OBJ_MAGIC 0x4f424a31u
#define CHUNK_FIRST_MAX (1u << 20)
#define CHUNK_NEXT (256u << 10)

struct cache_body *cache_body_new_heap(int64_t expected)
{
    struct cache_body *b = mc_xcalloc(1, sizeof(*b));
    MC_INIT_OBJ(b, CACHE_BODY_MAGIC);
    atomic_init(&b->refcnt, 1);
    b->expected = expected;
    b->memfd = -1;
    b->file_fd = -1;
    return b;
}

struct cache_body *cache_body_new(int64_t expected)
{
    struct cache_body *b = cache_body_new_heap(expected);
    if (expected >= (int64_t)CACHE_BODY_MEMFD_MIN && expected <= (int64_t)CHUNK_FIRST_MAX * 64) {
        /* No memfd (or no mapping) is not an error: the body then lives in malloc chunks. */
        int fd = memfd_create("mlcdn-body", MFD_CLOEXEC);
        if (fd >= 0 && ftruncate(fd, (off_t)expected) == 0) {
            void *m = mmap(NULL, (size_t)expected, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (m != MAP_FAILED) {
                b->memfd = fd;
                b->map = m;
                b->map_len = (size_t)expected;
                fd = -1;
            }
        }
        if (fd >= 0)
            close(fd);
    }
    return b;
}

static struct cache_chunk *chunk_new(size_t cap, char *mapped)
{
    struct cache_chunk *c = malloc(sizeof(*c) + (mapped ? 0 : cap));
    if (!c)
        return NULL;
    atomic_init(&c->next, NULL);
    c->len = 0;
    c->cap = cap;
    c->data = mapped ? mapped : (char *)(c + 1);
    return c;
}

struct cache_body *cache_body_new_file(int fd, uint64_t off, int64_t expected)
{
    struct cache_body *b = cache_body_new_heap(expected);
    b->file_fd = fd;
    b->file_off = off;
    return b;
}

int cache_body_file(const struct cache_body *b, uint64_t *off)
{
    if (b->file_fd >= 0 && off)
        *off = b->file_off;
    return b->file_fd;
}

void cache_body_publish(struct cache_body *b, uint64_t len)
{
    MC_ASSERT(b->file_fd >= 0 && len >= cache_body_len(b));
    atomic_store_explicit(&b->len, len, memory_order_release);
}

static int file_append(struct cache_body *b, const char *p, size_t n)
{
    uint64_t at = cache_body_len(b);
    size_t done = 0;
    while (done < n) {
        ssize_t w = pwrite(b->file_fd, p + done, n - done, (off_t)(b->file_off + at + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        done += (size_t)w;
    }
    atomic_store_explicit(&b->len, at + n, memory_order_release);
    return 0;
}

int cache_body_append(struct cache_body *b, const void *p, size_t n)
{
    const char *src = p;

    MC_CHECK_OBJ_NOTNULL(b, CACHE_BODY_MAGIC);
    if (b->file_fd >= 0)
        return file_append(b, src, n);
    while (n) {
        struct cache_chunk *t = b->tail;
        if (!t || t->len == t->cap) {
            size_t cap;
            char *mapped = NULL;
            if (!t && b->map) {
                /* The whole announced length is one chunk over the mapping. */
                cap = b->map_len;
                mapped = b->map;
            } else if (!t) {
                /* Size the first chunk for the announced length: small objects are one span. */
                uint64_t want = b->expected > 0 ? (uint64_t)b->expected : 16384;
                cap = (size_t)MC_MIN(MC_MAX(want, (uint64_t)n), (uint64_t)CHUNK_FIRST_MAX);
            } else {
                cap = MC_MAX((size_t)CHUNK_NEXT, MC_MIN(n, (size_t)CHUNK_FIRST_MAX));
            }
            struct cache_chunk *c = chunk_new(cap, mapped);
            if (!c)
                return -ENOMEM;
            if (t)
                atomic_store_explicit(&t->next, c, memory_order_release);
            else
                b->head = c;
            b->tail = t = c;
        }
        size_t k = MC_MIN(n, t->cap - t->len);
        memcpy(t->data + t->len, src, k);
        t->len += k;
        src += k;
        n -= k;
        atomic_fetch_add_explicit(&b->len, k, memory_order_release);
    }
    return 0;
}

void cache_body_finish(struct cache_body *b, enum cache_body_state st)
{
    atomic_store_explicit(&b->state, (int)st, memory_order_release);
}

int cache_body_sendfile_fd(const struct cache_body *b)
{
    if (b->memfd < 0 || cache_body_state(b) != CACHE_BODY_COMPLETE ||
        cache_body_len(b) > b->map_len)
        return -1;
    return b->memfd;
}

uint64_t cache_body_len(const struct cache_body *b)
{
    return atomic_load_explicit(&((struct cache_body *)b)->len, memory_order_acquire);
}

enum cache_body_state cache_body_state(const struct cache_body *b)
{
    return (enum cache_body_state)atomic_load_explicit(&((struct cache_body *)b)->state,
                                                       memory_order_acquire);
}

struct cache_body *cache_body_from(const void *p, size_t n)
{
    struct cache_body *b = cache_body_new((int64_t)n);
    if (n && cache_body_append(b, p, n) != 0) {
        cache_body_unref(&b);
        return NULL;
    }
    cache_body_finish(b, CACHE_BODY_COMPLETE);
    return b;
}

struct cache_body *cache_body_ref(struct cache_body *b)
{
    MC_CHECK_OBJ_NOTNULL(b, CACHE_BODY_MAGIC);
    atomic_fetch_add_explicit(&b->refcnt, 1, memory_order_relaxed);
    return b;
}

void cache_body_unref(struct cache_body **bp)
{
    struct cache_body *b = *bp;

    *bp = NULL;
    if (!b)
        return;
    MC_CHECK_OBJ_NOTNULL(b, CACHE_BODY_MAGIC);
    if (atomic_fetch_sub_explicit(&b->refcnt, 1, memory_order_acq_rel) != 1)
        return;
    struct cache_chunk *c = b->head;
    while (c) {
        struct cache_chunk *n = atomic_load_explicit(&c->next, memory_order_relaxed);
        free(c);
        c = n;
    }
    if (b->map)
        munmap(b->map, b->map_len);
    if (b->memfd >= 0)
        close(b->memfd);
    if (b->file_fd >= 0)
        close(b->file_fd);
    MC_FREE_OBJ(b);
}

void cache_body_cursor_init(struct cache_body_cursor *cur, const struct cache_body *b)
{
    cur->chunk = b->head;
    cur->off = 0;
    cur->pos = 0;
}

/* Chunk capacity is what readers step by: a chunk is full before the next is linked. */
void cache_body_cursor_seek(struct cache_body_cursor *cur, const struct cache_body *b, uint64_t pos)
{
    const struct cache_chunk *c =
        atomic_load_explicit(&((struct cache_body *)b)->len, memory_order_acquire) ? b->head : NULL;
    uint64_t at = 0;

    while (c && at + c->cap <= pos) {
        const struct cache_chunk *n = atomic_load_explicit(&((struct cache_chunk *)c)->next,
                                                           memory_order_acquire);
        if (!n)
            break;
        at += c->cap;
        c = n;
    }
    cur->chunk = c;
    cur->off = (size_t)(pos - at);
    cur->pos = pos;
}

size_t cache_body_next(struct cache_body_cursor *cur, const struct cache_body *b, uint64_t limit,
                       size_t max, const char **span)
{
    uint64_t avail = cache_body_len(b);

    if (b->file_fd >= 0)
        return 0;
    if (limit < avail)
        avail = limit;
    if (cur->pos >= avail)
        return 0;
    if (!cur->chunk) {
        /* The cursor was set up before the first chunk existed. */
        cache_body_cursor_seek(cur, b, cur->pos);
        if (!cur->chunk)
            return 0;
    }
    if (cur->off == cur->chunk->cap) {
        const struct cache_chunk *n =
            atomic_load_explicit(&((struct cache_chunk *)cur->chunk)->next, memory_order_acquire);
        if (!n)
            return 0;
        cur->chunk = n;
        cur->off = 0;
    }
    uint64_t n = MC_MIN(avail - cur->pos, (uint64_t)(cur->chunk->cap - cur->off));
    if (n > max)
        n = max;
    *span = cur->chunk->data + cur->off;
    cur->off += (size_t)n;
    cur->pos += n;
    return (size_t)n;
}

struct cache_obj *cache_obj_new(int status, char *hdrs, size_t hdrs_len, struct cache_body *body)
{
    struct cache_obj *o = mc_xcalloc(1, sizeof(*o));
    MC_INIT_OBJ(o, CACHE_OBJ_MAGIC);
    atomic_init(&o->refcnt, 1);
    o->status = status;
    o->hdrs = hdrs;
    o->hdrs_len = hdrs_len;
    o->body = body;
    o->vkey = mc_xstrdup("");
    http_resp_info_init(&o->info);
    return o;
}

struct cache_obj *cache_obj_dup(const struct cache_obj *o, struct cache_body *body)
{
    struct cache_obj *d = cache_obj_new(o->status, mc_xstrndup(o->hdrs ? o->hdrs : "", o->hdrs_len),
                                        o->hdrs_len, body);
    free(d->vkey);
    d->vkey = mc_xstrndup(o->vkey, o->vkey_len);
    d->vkey_len = o->vkey_len;
    d->info = o->info;
    d->request_time = o->request_time;
    d->response_time = o->response_time;
    d->stored_us = o->stored_us;
    d->lifetime = o->lifetime;
    d->etag = o->etag ? mc_xstrdup(o->etag) : NULL;
    d->vary = o->vary ? mc_xstrdup(o->vary) : NULL;
    d->has_accept_ranges = o->has_accept_ranges;
    return d;
}

struct cache_obj *cache_obj_ref(struct cache_obj *o)
{
    MC_CHECK_OBJ_NOTNULL(o, CACHE_OBJ_MAGIC);
    atomic_fetch_add_explicit(&o->refcnt, 1, memory_order_relaxed);
    return o;
}

void cache_obj_unref(struct cache_obj **op)
{
    struct cache_obj *o = *op;

    *op = NULL;
    if (!o)
        return;
    MC_CHECK_OBJ_NOTNULL(o, CACHE_OBJ_MAGIC);
    if (atomic_fetch_sub_explicit(&o->refcnt, 1, memory_order_acq_rel) != 1)
        return;
    MC_ASSERT(!o->in_index);
    cache_body_unref(&o->body);
    free(o->hdrs);
    free(o->vkey);
    free(o->etag);
    free(o->vary);
    MC_FREE_OBJ(o);
}

long cache_obj_header(const struct cache_obj *o, const char *name, const char **value)
{
    size_t nl = strlen(name);
    const char *p = o->hdrs, *end = o->hdrs + o->hdrs_len;

    while (p && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            break;
        if ((size_t)(eol - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = eol;
            if (ve > v && ve[-1] == '\r')
                ve--;
            *value = v;
            return (long)(ve - v);
        }
        p = eol + 1;
    }
    return -1;
}

size_t cache_obj_tags(const struct cache_obj *o, char *out, size_t cap)
{
    static const char *const names[] = {"surrogate-key", "cache-tag"};
    const char *p = o->hdrs, *end = o->hdrs + o->hdrs_len;
    size_t n = 0;

    while (p && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            break;
        for (size_t i = 0; i < 2; i++) {
            size_t nl = strlen(names[i]);
            if ((size_t)(eol - p) <= nl || p[nl] != ':' || strncasecmp(p, names[i], nl) != 0)
                continue;
            const char *v = p + nl + 1, *ve = eol;
            if (ve > v && ve[-1] == '\r')
                ve--;
            size_t vl = (size_t)(ve - v);
            if (n + vl + 1 > cap)
                return (size_t)-1;
            out[n++] = ' ';
            memcpy(out + n, v, vl);
            n += vl;
        }
        p = eol + 1;
    }
    return n;
}
