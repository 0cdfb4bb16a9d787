/* src/cache/cache_ban.c: the ban list (see cache_ban.h).
 *
 * struct cache_bans holds the bans in an array sorted by issue time (strictly
 * increasing, so the newest is last), guarded by a rwlock: checks read, add and retire
 * write. `n` mirrors the count atomically so that a check with no bans takes no lock.
 * Retirement removes from the old end only: the lurker applies bans in time order.
 *
 * The file: a first line "mlcdn-bans 1", then one line per ban, "<t_us> <p|g|t|T> <0|1>
 * <expr>" (expressions hold no control characters, so a line is a ban). Changes take
 * file_mtx, then the rwlock only for the memory update, so a check never waits for the
 * disk. Bans are appended with one write(2) each; retirement rewrites the file
 * into a temporary name and renames it over the old one, so a crash leaves one of the two
 * whole files. The insert gate is two counters and an epoch (a sleepable RCU in
 * miniature): a section counts itself in the epoch's counter; sync flips the epoch and
 * waits for the previous counter to drain. */
#include "cache/cache_ban.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/mc.h"

#define CACHE_BANS_MAGIC 0x42414e53u
#define FILE_HEAD "mlcdn-bans 1\n"

struct ban {
    int64_t t_us;
    int64_t walked_us; /* when a lurker walk covering it ended; 0 not yet */
    enum cache_ban_kind kind;
    int soft;
    size_t elen;
    char *expr; /* NUL-terminated */
};

struct cache_bans {
    unsigned magic;
    pthread_rwlock_t lock;
    struct ban *v; /* [0, n) oldest first (lock) */
    size_t cap;
    _Atomic size_t n;
    /* The file: file_mtx serialises every change (add, retire) and the file's writes, so
     * the rwlock is held only for memory updates and checks never wait for the disk. */
    pthread_mutex_t file_mtx;
    char *path; /* the file, or NULL */
    int fd;     /* appended to (file_mtx), -1 without a file */
    _Atomic unsigned epoch;
    _Atomic unsigned long gate[2];
    pthread_mutex_t sync_mtx;
};

static const char kind_ch[] = {'p', 'g', 't', 'T', 'a'};

struct cache_bans *cache_bans_new(void)
{
    struct cache_bans *b = mc_xcalloc(1, sizeof(*b));

    MC_INIT_OBJ(b, CACHE_BANS_MAGIC);
    pthread_rwlock_init(&b->lock, NULL);
    pthread_mutex_init(&b->sync_mtx, NULL);
    pthread_mutex_init(&b->file_mtx, NULL);
    b->fd = -1;
    return b;
}

void cache_bans_free(struct cache_bans **bp)
{
    struct cache_bans *b = *bp;

    if (!b)
        return;
    MC_CHECK_OBJ(b, CACHE_BANS_MAGIC);
    for (size_t i = 0; i < atomic_load(&b->n); i++)
        free(b->v[i].expr);
    free(b->v);
    if (b->fd >= 0)
        close(b->fd);
    free(b->path);
    pthread_rwlock_destroy(&b->lock);
    pthread_mutex_destroy(&b->sync_mtx);
    pthread_mutex_destroy(&b->file_mtx);
    MC_FREE_OBJ(b);
    *bp = NULL;
}

int cache_ban_expr_check(enum cache_ban_kind kind, const char *expr, size_t len, const char **why)
{
    if (len == 0) {
        *why = "empty";
        return -EINVAL;
    }
    if (len > CACHE_BAN_EXPR_MAX) {
        *why = "longer than 4096 bytes";
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)expr[i];
        if (c < 0x20 || c == 0x7f) {
            *why = "contains a control character";
            return -EINVAL;
        }
        if ((kind == CACHE_BAN_TAG || kind == CACHE_BAN_TAG_PREFIX) && (c == ' ' || c == ',')) {
            *why = "a tag holds no space or comma";
            return -EINVAL;
        }
    }
    if (kind == CACHE_BAN_ALL && (len != 1 || expr[0] != '*')) {
        *why = "an \"all\" ban's expression is \"*\"";
        return -EINVAL;
    }
    if (kind == CACHE_BAN_PREFIX && expr[0] != '/') {
        *why = "a prefix starts with '/'";
        return -EINVAL;
    }
    return 0;
}

int cache_ban_glob(const char *pat, size_t plen, const char *s, size_t slen)
{
    size_t p = 0, i = 0, star_p = (size_t)-1, star_i = 0;

    /* Backtracking to the last '*' only: linear in the common case, O(plen * slen) at
     * worst, and no recursion whatever the pattern. */
    while (i < slen) {
        if (p < plen && pat[p] == '*') {
            star_p = p++;
            star_i = i;
            continue;
        }
        if (p < plen) {
            int esc = pat[p] == '\\' && p + 1 < plen;
            char c = esc ? pat[p + 1] : pat[p];
            if ((!esc && c == '?') || c == s[i]) {
                p += esc ? 2 : 1;
                i++;
                continue;
            }
        }
        if (star_p == (size_t)-1)
            return 0;
        p = star_p + 1;
        i = ++star_i;
    }
    while (p < plen && pat[p] == '*')
        p++;
    return p == plen;
}

/* Is tag[0..len) one of the list's tags (or, with prefix, the start of one)? */
static int tag_listed(const char *tag, size_t len, const char *tags, size_t tlen, int prefix)
{
    size_t i = 0;

    while (i < tlen) {
        while (i < tlen && (tags[i] == ' ' || tags[i] == ',' || tags[i] == '\t'))
            i++;
        size_t s = i;
        while (i < tlen && tags[i] != ' ' && tags[i] != ',' && tags[i] != '\t')
            i++;
        if (i > s && (prefix ? i - s >= len : i - s == len) && memcmp(tags + s, tag, len) == 0)
            return 1;
    }
    return 0;
}

int cache_ban_match(enum cache_ban_kind kind, const char *expr, size_t elen, const char *pathq,
                    size_t plen, const char *tags, size_t tlen)
{
    switch (kind) {
    case CACHE_BAN_PREFIX: return plen >= elen && memcmp(pathq, expr, elen) == 0;
    case CACHE_BAN_GLOB: return cache_ban_glob(expr, elen, pathq, plen);
    case CACHE_BAN_TAG: return tags && tag_listed(expr, elen, tags, tlen, 0);
    case CACHE_BAN_TAG_PREFIX: return tags && tag_listed(expr, elen, tags, tlen, 1);
    case CACHE_BAN_ALL: return 1;
    }
    return 0;
}

enum cache_ban_verdict cache_bans_check(struct cache_bans *b, const char *pathq, size_t plen,
                                        const char *tags, size_t tlen, int64_t stored_us,
                                        enum cache_ban_kind *kind)
{
    return cache_bans_check_upto(b, pathq, plen, tags, tlen, stored_us, INT64_MAX, kind);
}

int64_t cache_bans_soft_since(struct cache_bans *b, int64_t t_us)
{
    int64_t t = 0;

    pthread_rwlock_rdlock(&b->lock);
    for (size_t i = atomic_load(&b->n); i-- > 0 && b->v[i].t_us >= t_us;)
        if (b->v[i].soft)
            t = b->v[i].t_us;
    pthread_rwlock_unlock(&b->lock);
    return t;
}

enum cache_ban_verdict cache_bans_check_upto(struct cache_bans *b, const char *pathq, size_t plen,
                                             const char *tags, size_t tlen, int64_t stored_us,
                                             int64_t upto_us, enum cache_ban_kind *kind)
{
    enum cache_ban_verdict v = CACHE_BAN_NONE;

    if (atomic_load_explicit(&b->n, memory_order_acquire) == 0)
        return CACHE_BAN_NONE;
    pthread_rwlock_rdlock(&b->lock);
    /* A ban issued in the very microsecond the object's request left counts as newer:
     * when in doubt, the object is not served. */
    for (size_t i = atomic_load(&b->n); i-- > 0 && b->v[i].t_us >= stored_us;) {
        const struct ban *ba = &b->v[i];
        if (ba->t_us > upto_us)
            continue;
        if (!cache_ban_match(ba->kind, ba->expr, ba->elen, pathq, plen, tags, tlen))
            continue;
        if (kind)
            *kind = ba->kind;
        if (!ba->soft) {
            v = CACHE_BAN_HARD;
            break;
        }
        v = CACHE_BAN_SOFT;
    }
    pthread_rwlock_unlock(&b->lock);
    return v;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int ban_line(char *out, size_t cap, const struct ban *ba)
{
    return snprintf(out, cap, "%" PRId64 " %c %d %s\n", ba->t_us, kind_ch[ba->kind], ba->soft,
                    ba->expr);
}

/* The file's text for bans v[0..n). Called with the list stable (file_mtx held). */
static char *file_text(const struct ban *v, size_t n, size_t *len)
{
    char line[CACHE_BAN_EXPR_MAX + 64];
    size_t cap = 4096, l = sizeof(FILE_HEAD) - 1;
    char *t = mc_xmalloc(cap);

    memcpy(t, FILE_HEAD, l);
    for (size_t i = 0; i < n; i++) {
        int k = ban_line(line, sizeof(line), &v[i]);
        while (l + (size_t)k > cap) {
            cap *= 2;
            t = mc_xrealloc(t, cap);
        }
        memcpy(t + l, line, (size_t)k);
        l += (size_t)k;
    }
    *len = l;
    return t;
}

/* Writes text to path.tmp, renames it over path and reopens it for appending. file_mtx
 * held; the list's lock is not (no check waits for this I/O). */
static int rewrite(struct cache_bans *b, const char *text, size_t len)
{
    size_t tl = strlen(b->path) + 5;
    char *tmp = mc_xmalloc(tl);
    int fd, err = 0;

    mc_lock_assert_held(&b->file_mtx);
    snprintf(tmp, tl, "%s.tmp", b->path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        err = -errno;
        goto out;
    }
    err = write_all(fd, text, len);
    if (err == 0 && fsync(fd) != 0)
        err = -errno;
    close(fd);
    if (err == 0 && rename(tmp, b->path) != 0)
        err = -errno;
    if (err != 0) {
        unlink(tmp);
        goto out;
    }
    if (b->fd >= 0)
        close(b->fd);
    b->fd = open(b->path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (b->fd < 0)
        err = -errno;
out:
    free(tmp);
    return err;
}

static void push(struct cache_bans *b, enum cache_ban_kind kind, const char *expr, size_t len,
                 int soft, int64_t t_us)
{
    size_t n = atomic_load(&b->n);

    if (n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 16;
        b->v = mc_xrealloc(b->v, b->cap * sizeof(*b->v));
    }
    b->v[n] = (struct ban){.t_us = t_us, .kind = kind, .soft = soft, .elen = len};
    b->v[n].expr = mc_xstrndup(expr, len);
    atomic_store_explicit(&b->n, n + 1, memory_order_release);
}

/* One line of the file into the list; 0 or -EINVAL. */
static int load_line(struct cache_bans *b, char *line)
{
    char *end, *p = line;
    const char *why;
    int64_t t = strtoll(p, &end, 10);
    int kind = -1;

    if (end == p || *end != ' ' || t <= 0)
        return -EINVAL;
    p = end + 1;
    for (int k = 0; k < (int)sizeof(kind_ch); k++)
        if (*p == kind_ch[k])
            kind = k;
    if (kind < 0 || p[1] != ' ' || (p[2] != '0' && p[2] != '1') || p[3] != ' ')
        return -EINVAL;
    int soft = p[2] == '1';
    p += 4;
    size_t len = strlen(p);
    size_t n = atomic_load(&b->n);
    if (cache_ban_expr_check((enum cache_ban_kind)kind, p, len, &why) != 0 ||
        (n && t <= b->v[n - 1].t_us))
        return -EINVAL;
    push(b, (enum cache_ban_kind)kind, p, len, soft, t);
    return 0;
}

int cache_bans_attach(struct cache_bans *b, const char *path, char *err, size_t errlen)
{
    char *line = NULL;
    size_t lcap = 0;
    unsigned lineno = 0, bad = 0;
    FILE *f;
    int rc;

    MC_CHECK_OBJ_NOTNULL(b, CACHE_BANS_MAGIC);
    MC_ASSERT(b->path == NULL);
    f = fopen(path, "re");
    if (!f && errno != ENOENT) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    while (f && getline(&line, &lcap, f) > 0) {
        size_t l = strlen(line);
        int whole = l && line[l - 1] == '\n';
        lineno++;
        if (whole)
            line[--l] = '\0';
        if (lineno == 1) {
            if (strcmp(line, "mlcdn-bans 1") != 0) {
                snprintf(err, errlen, "%s: not a ban list (first line)", path);
                free(line);
                fclose(f);
                return -EINVAL;
            }
            continue;
        }
        /* A line cut short by a crash while appending is not a ban; it goes with the
         * rewrite below. */
        if (!whole || load_line(b, line) != 0)
            bad++;
    }
    free(line);
    if (f)
        fclose(f);
    if (bad)
        log_warn("ban list: lines skipped", "file=%s lines=%u", path, bad);
    b->path = mc_xstrdup(path);
    size_t tlen;
    char *text = file_text(b->v, atomic_load(&b->n), &tlen);
    pthread_mutex_lock(&b->file_mtx);
    rc = rewrite(b, text, tlen);
    pthread_mutex_unlock(&b->file_mtx);
    free(text);
    if (rc != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(-rc));
        free(b->path);
        b->path = NULL;
    }
    return rc;
}

int cache_bans_add(struct cache_bans *b, enum cache_ban_kind kind, const char *expr, size_t len,
                   int soft, int64_t t_us, int64_t *t_out)
{
    const char *why;
    int rc = 0;

    MC_CHECK_OBJ_NOTNULL(b, CACHE_BANS_MAGIC);
    if (cache_ban_expr_check(kind, expr, len, &why) != 0)
        return -EINVAL;
    /* Every change holds file_mtx: the list read here cannot move under this add. */
    pthread_mutex_lock(&b->file_mtx);
    size_t n = atomic_load(&b->n);
    if (n >= CACHE_BANS_MAX) {
        rc = -ENOSPC;
        goto out;
    }
    if (n && t_us <= b->v[n - 1].t_us)
        t_us = b->v[n - 1].t_us + 1;
    if (b->fd >= 0) {
        char line[CACHE_BAN_EXPR_MAX + 64];
        struct ban tmp = {.t_us = t_us, .kind = kind, .soft = soft, .elen = len};
        tmp.expr = mc_xstrndup(expr, len);
        int l = ban_line(line, sizeof(line), &tmp);
        free(tmp.expr);
        rc = write_all(b->fd, line, (size_t)l);
        if (rc != 0)
            goto out;
    }
    pthread_rwlock_wrlock(&b->lock);
    push(b, kind, expr, len, soft, t_us);
    pthread_rwlock_unlock(&b->lock);
    if (t_out)
        *t_out = t_us;
out:
    pthread_mutex_unlock(&b->file_mtx);
    return rc;
}

size_t cache_bans_count(struct cache_bans *b)
{
    return atomic_load(&b->n);
}

int64_t cache_bans_newest(struct cache_bans *b)
{
    int64_t t = 0;

    pthread_rwlock_rdlock(&b->lock);
    size_t n = atomic_load(&b->n);
    if (n)
        t = b->v[n - 1].t_us;
    pthread_rwlock_unlock(&b->lock);
    return t;
}

void cache_bans_walked(struct cache_bans *b, int64_t upto_us, int64_t now_us)
{
    pthread_rwlock_wrlock(&b->lock);
    for (size_t i = 0; i < atomic_load(&b->n) && b->v[i].t_us <= upto_us; i++)
        if (!b->v[i].walked_us)
            b->v[i].walked_us = now_us;
    pthread_rwlock_unlock(&b->lock);
}

size_t cache_bans_retire(struct cache_bans *b, int64_t now_us, int64_t keep_us)
{
    size_t k = 0, n;

    pthread_mutex_lock(&b->file_mtx);
    pthread_rwlock_wrlock(&b->lock);
    n = atomic_load(&b->n);
    while (k < n && b->v[k].walked_us && b->v[k].walked_us + keep_us <= now_us)
        k++;
    if (k) {
        for (size_t i = 0; i < k; i++)
            free(b->v[i].expr);
        memmove(b->v, b->v + k, (n - k) * sizeof(*b->v));
        atomic_store(&b->n, n - k);
    }
    pthread_rwlock_unlock(&b->lock);
    if (k && b->path) {
        /* A rewrite that fails leaves the old file: retired bans come back at the next
         * start, which is safe (they only cost lookups), so it is not an error here. */
        size_t tlen;
        char *text = file_text(b->v, n - k, &tlen);
        (void)rewrite(b, text, tlen);
        free(text);
    }
    pthread_mutex_unlock(&b->file_mtx);
    return k;
}

unsigned cache_bans_gate_enter(struct cache_bans *b)
{
    for (;;) {
        unsigned i = atomic_load(&b->epoch) & 1u;
        atomic_fetch_add(&b->gate[i], 1);
        if ((atomic_load(&b->epoch) & 1u) == i)
            return i;
        atomic_fetch_sub(&b->gate[i], 1);
    }
}

void cache_bans_gate_exit(struct cache_bans *b, unsigned token)
{
    atomic_fetch_sub(&b->gate[token & 1u], 1);
}

void cache_bans_gate_sync(struct cache_bans *b)
{
    pthread_mutex_lock(&b->sync_mtx);
    unsigned old = atomic_fetch_add(&b->epoch, 1) & 1u;
    while (atomic_load(&b->gate[old]) != 0) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_unlock(&b->sync_mtx);
}
