/* src/core/accesslog.c: see accesslog.h.
 *
 * Locks: al->mtx guards the writer's requests (kick, stop, flush generations) and the head
 * of the list of locals (pushed at the head, never removed before accesslog_free, so the
 * writer walks it from a snapshot of the head without the lock). l->mtx guards one local's
 * active buffer; it is taken by its thread for each line and by the writer for a swap, so
 * it is almost never contended. Order: a thread never holds l->mtx while taking al->mtx.
 * The writer does all the I/O with no lock held. */
#include "core/accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

/* syslog.h's LOG_INFO and LOG_DEBUG are macros that would replace log.h's levels. */
enum { SYSLOG_INFO = LOG_INFO };
#undef LOG_INFO
#undef LOG_DEBUG

#include "core/log.h"
#include "core/mc.h"
#include "core/metrics.h"

#define ACCESSLOG_MAGIC 0x41434c47u
#define LOCAL_MAGIC 0x41434c4cu
#define FLUSH_MS 200
#define FIELD_MAX 512 /* Referer and User-Agent are cut here: lines stay bounded */

enum dest { DEST_FILE, DEST_STDOUT, DEST_SYSLOG };

/* The line's time down to the second, in the format's form; a thread keeps the last one
 * (struct accesslog_local), so a line costs no gmtime_r or printf for it. */
struct tstamp {
    int64_t sec;
    size_t len;
    char text[48];
};

struct accesslog_local {
    unsigned magic;
    struct accesslog *al;
    struct accesslog_local *next; /* set before publication, then constant */
    pthread_mutex_t mtx;
    char *buf; /* l->mtx */
    size_t len;
    int kicked;
    struct tstamp ts; /* l->mtx */
    char *spare;      /* the writer's */
};

struct accesslog {
    unsigned magic;
    enum accesslog_format fmt;
    enum dest dest;
    char *path;
    int fd; /* the writer's */
    size_t cap;
    pthread_t thr;
    pthread_mutex_t mtx;
    pthread_cond_t cv, done_cv;
    int stop, kick;                 /* mtx */
    uint64_t flush_req, flush_done; /* mtx */
    struct accesslog_local *_Atomic locals;
    _Atomic int reopen_req;
    _Atomic uint64_t reopens, dropped, lines;
    /* The same counts on /metrics (NULL in tests that build the struct by hand). */
    struct metrics_counter *m_lines, *m_dropped;
};

/* ---- formatting ---- */

struct out {
    char *p, *end;
    int over;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->over || (size_t)(o->end - o->p) < n) {
        o->over = 1;
        return;
    }
    memcpy(o->p, s, n);
    o->p += n;
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_u64(struct out *o, uint64_t v)
{
    char d[24];
    put(o, d, mc_u64_digits(v, d));
}

/* Seconds with microsecond precision ("0.000123"), or the placeholder. Digits by hand: a
 * printf per field was a third of a line's cost. */
static void put_secs(struct out *o, int64_t us, const char *none)
{
    char d[32];
    size_t n;
    uint64_t frac;

    if (us < 0) {
        puts_(o, none);
        return;
    }
    n = mc_u64_digits((uint64_t)us / 1000000, d);
    d[n++] = '.';
    frac = (uint64_t)us % 1000000;
    for (int i = 5; i >= 0; i--, frac /= 10)
        d[n + (size_t)i] = (char)('0' + frac % 10);
    put(o, d, n + 6);
}

static const char hex[] = "0123456789abcdef";

/* Bytes written as they are: printable ASCII but the quote and the backslash. */
static int plain(unsigned char c)
{
    return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
}

/* Copies runs of plain bytes at once and hands each other byte to esc. */
static void put_escaped(struct out *o, const char *s, size_t n,
                        void (*esc)(struct out *o, unsigned char c))
{
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && plain((unsigned char)s[j]))
            j++;
        put(o, s + i, j - i);
        if (j == n)
            return;
        esc(o, (unsigned char)s[j]);
        i = j + 1;
    }
}

/* Combined format: `"` `\` and bytes outside printable ASCII become \xHH (nginx's escaping),
 * so a line can be neither split nor forged by a client. */
static void esc_hex(struct out *o, unsigned char c)
{
    char e[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
    put(o, e, 4);
}

/* JSON string contents: bytes outside ASCII are written as \u00HH (their Latin-1 reading),
 * so the line is valid JSON (and UTF-8) whatever the client sent. */
static void esc_json(struct out *o, unsigned char c)
{
    if (c == '"' || c == '\\') {
        char e[2] = {'\\', (char)c};
        put(o, e, 2);
    } else {
        char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        put(o, e, 6);
    }
}

static void put_esc(struct out *o, const char *s, size_t n)
{
    put_escaped(o, s, n, esc_hex);
}

static void put_json(struct out *o, const char *s, size_t n)
{
    put_escaped(o, s, n, esc_json);
}

/* The target, or for a long one its beginning, "...#" and a hash of the whole. */
static void put_target(struct out *o, const char *t, size_t n,
                       void (*esc)(struct out *, const char *, size_t))
{
    if (n <= ACCESSLOG_TARGET_MAX) {
        esc(o, t, n);
        return;
    }
    char h[24];
    uint64_t v = XXH3_64bits(t, n);
    esc(o, t, ACCESSLOG_TARGET_KEEP);
    put(o, "...#", 4);
    for (int i = 0; i < 16; i++)
        h[i] = hex[(v >> (60 - 4 * i)) & 15];
    put(o, h, 16);
}

static int have(const char *s, size_t n)
{
    return s && n;
}

static void put_field_c(struct out *o, const char *s, size_t n)
{
    put(o, "\"", 1);
    if (have(s, n))
        put_esc(o, s, MC_MIN(n, (size_t)FIELD_MAX));
    else
        put(o, "-", 1);
    put(o, "\"", 1);
}

static void put_str_j(struct out *o, const char *key, const char *s, size_t n)
{
    puts_(o, key);
    if (!have(s, n)) {
        puts_(o, "null");
        return;
    }
    put(o, "\"", 1);
    put_json(o, s, MC_MIN(n, (size_t)FIELD_MAX));
    put(o, "\"", 1);
}

static const char *month[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static void tstamp_set(struct tstamp *ts, enum accesslog_format fmt, int64_t sec)
{
    struct tm tm;
    time_t secs = (time_t)sec;
    int n;

    gmtime_r(&secs, &tm);
    if (fmt == ACCESSLOG_COMBINED)
        n = snprintf(ts->text, sizeof(ts->text), " - - [%02d/%s/%04d:%02d:%02d:%02d +0000] \"",
                     tm.tm_mday, month[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                     tm.tm_sec);
    else
        n = snprintf(ts->text, sizeof(ts->text), "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec);
    ts->sec = sec;
    ts->len = n > 0 ? (size_t)n : 0;
}

static size_t format_line(enum accesslog_format fmt, const struct accesslog_rec *r, int64_t now_us,
                          const struct tstamp *ts, char *buf, size_t cap)
{
    struct out o = {buf, buf + cap, 0};
    const char *proto = r->http2 ? "HTTP/2.0" : r->http_minor == 0 ? "HTTP/1.0" : "HTTP/1.1";

    if (fmt == ACCESSLOG_COMBINED) {
        puts_(&o, r->client && *r->client ? r->client : "-");
        put(&o, ts->text, ts->len);
        put_esc(&o, r->method, r->method_len);
        put(&o, " ", 1);
        put_target(&o, r->target, r->target_len, put_esc);
        put(&o, " ", 1);
        puts_(&o, proto);
        put(&o, "\" ", 2);
        put_u64(&o, (uint64_t)r->status);
        put(&o, " ", 1);
        put_u64(&o, r->bytes);
        put(&o, " ", 1);
        put_field_c(&o, r->referer, r->referer_len);
        put(&o, " ", 1);
        put_field_c(&o, r->user_agent, r->user_agent_len);
        puts_(&o, " cache=");
        puts_(&o, r->cache ? r->cache : "-");
        puts_(&o, " level=");
        puts_(&o, r->level ? r->level : "-");
        puts_(&o, " ttfb=");
        put_secs(&o, r->ttfb_us, "-");
        puts_(&o, " time=");
        put_secs(&o, r->total_us, "-");
        puts_(&o, " upstream=");
        put_secs(&o, r->upstream_us, "-");
        puts_(&o, " model=");
        if (r->model && *r->model)
            put_esc(&o, r->model, strlen(r->model));
        else
            put(&o, "-", 1);
        puts_(&o, " version=");
        if (r->version >= 0)
            put_u64(&o, (uint64_t)r->version);
        else
            put(&o, "-", 1);
        puts_(&o, " listener=");
        puts_(&o, r->listener ? r->listener : "-");
        puts_(&o, r->incomplete ? " completion=-\n" : " completion=OK\n");
    } else {
        char us[8];
        uint64_t frac = (uint64_t)(now_us % 1000000);
        for (int i = 5; i >= 0; i--, frac /= 10)
            us[i] = (char)('0' + frac % 10);
        us[6] = 'Z';
        us[7] = '"';
        put(&o, ts->text, ts->len);
        put(&o, us, 8);
        put_str_j(&o, ",\"client\":", r->client, r->client ? strlen(r->client) : 0);
        put_str_j(&o, ",\"listener\":", r->listener, r->listener ? strlen(r->listener) : 0);
        put_str_j(&o, ",\"method\":", r->method, r->method_len);
        puts_(&o, ",\"url\":\"");
        put_target(&o, r->target, r->target_len, put_json);
        puts_(&o, "\",\"protocol\":\"");
        puts_(&o, proto);
        puts_(&o, "\",\"status\":");
        put_u64(&o, (uint64_t)r->status);
        puts_(&o, ",\"bytes\":");
        put_u64(&o, r->bytes);
        put_str_j(&o, ",\"referer\":", r->referer, r->referer_len);
        put_str_j(&o, ",\"user_agent\":", r->user_agent, r->user_agent_len);
        put_str_j(&o, ",\"cache\":", r->cache, r->cache ? strlen(r->cache) : 0);
        put_str_j(&o, ",\"level\":", r->level, r->level ? strlen(r->level) : 0);
        puts_(&o, ",\"ttfb_s\":");
        put_secs(&o, r->ttfb_us, "null");
        puts_(&o, ",\"duration_s\":");
        put_secs(&o, r->total_us, "null");
        puts_(&o, ",\"upstream_s\":");
        put_secs(&o, r->upstream_us, "null");
        put_str_j(&o, ",\"model\":", r->model, r->model ? strlen(r->model) : 0);
        puts_(&o, ",\"version\":");
        if (r->version >= 0)
            put_u64(&o, (uint64_t)r->version);
        else
            puts_(&o, "null");
        puts_(&o, r->incomplete ? ",\"complete\":false}\n" : ",\"complete\":true}\n");
    }
    return o.over ? 0 : (size_t)(o.p - buf);
}

size_t accesslog_format(enum accesslog_format fmt, const struct accesslog_rec *r, int64_t now_us,
                        char *buf, size_t cap)
{
    struct tstamp ts;
    tstamp_set(&ts, fmt, now_us / 1000000);
    return format_line(fmt, r, now_us, &ts, buf, cap);
}

/* ---- the writer ---- */

static int open_dest(struct accesslog *al, int *fd)
{
    if (al->dest != DEST_FILE) {
        *fd = al->dest == DEST_STDOUT ? STDOUT_FILENO : -1;
        return 0;
    }
    int f = open(al->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (f < 0)
        return -errno;
    *fd = f;
    return 0;
}

static void write_out(struct accesslog *al, const char *p, size_t n)
{
    if (al->dest == DEST_SYSLOG) {
        while (n) {
            const char *nl = memchr(p, '\n', n);
            size_t k = nl ? (size_t)(nl - p) : n;
            syslog(SYSLOG_INFO, "%.*s", (int)k, p);
            k += nl ? 1 : 0;
            p += k;
            n -= k;
        }
        return;
    }
    while (n) {
        ssize_t w = write(al->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            /* Disk full, file gone: the lines are lost; the error log says so once per batch. */
            log_warn("access log write failed", "path=\"%s\" err=\"%s\" bytes=%zu",
                     al->path ? al->path : "-", w < 0 ? strerror(errno) : "short write", n);
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

static uint64_t count_lines(const char *p, size_t n)
{
    uint64_t k = 0;
    for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++)
        k++;
    return k;
}

/* Writes every local's buffer. Writer thread only. */
static void drain(struct accesslog *al)
{
    for (struct accesslog_local *l = atomic_load(&al->locals); l; l = l->next) {
        char *full;
        size_t n;
        pthread_mutex_lock(&l->mtx);
        full = l->buf;
        n = l->len;
        if (n) {
            l->buf = l->spare;
            l->len = 0;
            l->spare = full;
        }
        l->kicked = 0;
        pthread_mutex_unlock(&l->mtx);
        if (!n)
            continue;
        uint64_t k = count_lines(full, n);
        atomic_fetch_add_explicit(&al->lines, k, memory_order_relaxed);
        if (al->m_lines)
            metrics_counter_add(al->m_lines, k);
        write_out(al, full, n);
    }
}

static void reopen(struct accesslog *al)
{
    int fd = -1;
    if (al->dest != DEST_FILE)
        return;
    int rc = open_dest(al, &fd);
    if (rc != 0) {
        log_warn("access log not reopened, still writing the old file", "path=\"%s\" err=\"%s\"",
                 al->path, strerror(-rc));
    } else {
        close(al->fd);
        al->fd = fd;
    }
    atomic_fetch_add(&al->reopens, 1);
}

static void *writer(void *arg)
{
    struct accesslog *al = arg;
    struct timespec ts;

    pthread_mutex_lock(&al->mtx);
    for (;;) {
        if (!al->stop && !al->kick && al->flush_req == al->flush_done &&
            !atomic_load(&al->reopen_req)) {
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += FLUSH_MS * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&al->cv, &al->mtx, &ts);
        }
        int stop = al->stop;
        uint64_t gen = al->flush_req;
        al->kick = 0;
        pthread_mutex_unlock(&al->mtx);
        int ro = atomic_exchange(&al->reopen_req, 0);
        /* What was logged before the reopen request goes to the old file. */
        drain(al);
        if (ro)
            reopen(al);
        pthread_mutex_lock(&al->mtx);
        al->flush_done = gen;
        pthread_cond_broadcast(&al->done_cv);
        if (stop)
            break;
    }
    pthread_mutex_unlock(&al->mtx);
    return NULL;
}

int accesslog_open(const char *dest, const char *format, size_t buf_bytes, struct accesslog **out,
                   char *err, size_t errlen)
{
    struct accesslog *al;
    enum accesslog_format fmt;
    int rc;

    if (!format || !*format || !strcmp(format, "combined")) {
        fmt = ACCESSLOG_COMBINED;
    } else if (!strcmp(format, "json")) {
        fmt = ACCESSLOG_JSON;
    } else {
        snprintf(err, errlen, "--access-log-format: '%s' is not combined or json", format);
        return -EINVAL;
    }
    if (!dest || !*dest) {
        snprintf(err, errlen, "--access-log: empty destination (a file, '-' or 'syslog')");
        return -EINVAL;
    }
    al = mc_xcalloc(1, sizeof(*al));
    MC_INIT_OBJ(al, ACCESSLOG_MAGIC);
    al->fmt = fmt;
    al->cap = buf_bytes ? buf_bytes : 256u << 10;
    al->dest = !strcmp(dest, "-") ? DEST_STDOUT : !strcmp(dest, "syslog") ? DEST_SYSLOG : DEST_FILE;
    al->path = mc_xstrdup(dest);
    al->m_lines = metrics_counter("mlcdn_access_log_lines_total",
                                  "Access log lines handed to the file, stdout or syslog", NULL);
    al->m_dropped = metrics_counter("mlcdn_access_log_dropped_lines_total",
                                    "Access log lines dropped: a thread's buffer was full (the "
                                    "destination did not keep up)",
                                    NULL);
    if ((rc = open_dest(al, &al->fd)) != 0) {
        snprintf(err, errlen, "--access-log: cannot open '%s': %s", dest, strerror(-rc));
        goto fail;
    }
    if (al->dest == DEST_SYSLOG)
        openlog("mlcdn", LOG_PID | LOG_NDELAY, LOG_DAEMON);
    pthread_mutex_init(&al->mtx, NULL);
    pthread_cond_init(&al->cv, NULL);
    pthread_cond_init(&al->done_cv, NULL);
    if ((rc = -pthread_create(&al->thr, NULL, writer, al)) != 0) {
        snprintf(err, errlen, "--access-log: cannot start the writer thread: %s", strerror(-rc));
        pthread_mutex_destroy(&al->mtx);
        pthread_cond_destroy(&al->cv);
        pthread_cond_destroy(&al->done_cv);
        if (al->dest == DEST_FILE)
            close(al->fd);
        goto fail;
    }
    *out = al;
    return 0;
fail:
    free(al->path);
    MC_FREE_OBJ(al);
    return rc;
}

void accesslog_flush(struct accesslog *al)
{
    MC_CHECK_OBJ_NOTNULL(al, ACCESSLOG_MAGIC);
    pthread_mutex_lock(&al->mtx);
    uint64_t my = ++al->flush_req;
    pthread_cond_signal(&al->cv);
    while (al->flush_done < my)
        pthread_cond_wait(&al->done_cv, &al->mtx);
    pthread_mutex_unlock(&al->mtx);
}

void accesslog_free(struct accesslog **alp)
{
    struct accesslog *al = *alp;
    if (!al)
        return;
    MC_CHECK_OBJ(al, ACCESSLOG_MAGIC);
    pthread_mutex_lock(&al->mtx);
    al->stop = 1;
    pthread_cond_signal(&al->cv);
    pthread_mutex_unlock(&al->mtx);
    pthread_join(al->thr, NULL);
    for (struct accesslog_local *l = atomic_load(&al->locals), *n; l; l = n) {
        n = l->next;
        pthread_mutex_destroy(&l->mtx);
        free(l->buf);
        free(l->spare);
        MC_FREE_OBJ(l);
    }
    if (al->dest == DEST_FILE)
        close(al->fd);
    else if (al->dest == DEST_SYSLOG)
        closelog();
    pthread_mutex_destroy(&al->mtx);
    pthread_cond_destroy(&al->cv);
    pthread_cond_destroy(&al->done_cv);
    free(al->path);
    MC_FREE_OBJ(al);
    *alp = NULL;
}

void accesslog_reopen(struct accesslog *al)
{
    MC_CHECK_OBJ_NOTNULL(al, ACCESSLOG_MAGIC);
    atomic_store(&al->reopen_req, 1);
    pthread_mutex_lock(&al->mtx);
    pthread_cond_signal(&al->cv);
    pthread_mutex_unlock(&al->mtx);
}

uint64_t accesslog_reopens(const struct accesslog *al)
{
    return atomic_load(&((struct accesslog *)al)->reopens);
}

uint64_t accesslog_dropped(const struct accesslog *al)
{
    return atomic_load_explicit(&((struct accesslog *)al)->dropped, memory_order_relaxed);
}

uint64_t accesslog_lines(const struct accesslog *al)
{
    return atomic_load_explicit(&((struct accesslog *)al)->lines, memory_order_relaxed);
}

struct accesslog_local *accesslog_local_new(struct accesslog *al)
{
    struct accesslog_local *l = mc_xcalloc(1, sizeof(*l));

    MC_CHECK_OBJ_NOTNULL(al, ACCESSLOG_MAGIC);
    MC_INIT_OBJ(l, LOCAL_MAGIC);
    l->al = al;
    pthread_mutex_init(&l->mtx, NULL);
    l->buf = mc_xmalloc(al->cap);
    l->spare = mc_xmalloc(al->cap);
    pthread_mutex_lock(&al->mtx);
    l->next = atomic_load(&al->locals);
    atomic_store(&al->locals, l);
    pthread_mutex_unlock(&al->mtx);
    return l;
}

void accesslog_write(struct accesslog_local *l, const struct accesslog_rec *r)
{
    struct accesslog *al = l->al;
    struct timespec ts;
    int kick = 0;

    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    pthread_mutex_lock(&l->mtx);
    if (now / 1000000 != l->ts.sec)
        tstamp_set(&l->ts, al->fmt, now / 1000000);
    size_t n = format_line(al->fmt, r, now, &l->ts, l->buf + l->len, al->cap - l->len);
    if (n == 0) {
        /* Full: the writer has not caught up with a whole buffer. Drop, never wait. */
        atomic_fetch_add_explicit(&al->dropped, 1, memory_order_relaxed);
        if (al->m_dropped)
            metrics_counter_add(al->m_dropped, 1);
    } else {
        l->len += n;
    }
    if (l->len > al->cap / 2 && !l->kicked) {
        l->kicked = 1;
        kick = 1;
    }
    pthread_mutex_unlock(&l->mtx);
    if (kick) {
        pthread_mutex_lock(&al->mtx);
        al->kick = 1;
        pthread_cond_signal(&al->cv);
        pthread_mutex_unlock(&al->mtx);
    }
}

int accesslog_setup(const struct accesslog_opts *o, struct accesslog **out, char *err,
                    size_t errlen)
{
    int rc;

    *out = NULL;
    if (o->format && *o->format && strcmp(o->format, "combined") && strcmp(o->format, "json")) {
        snprintf(err, errlen, "--access-log-format: '%s' is not combined or json", o->format);
        return -EINVAL;
    }
    if (o->error_log && *o->error_log && (rc = log_file_open(o->error_log)) != 0) {
        snprintf(err, errlen, "--error-log: cannot open '%s': %s", o->error_log, strerror(-rc));
        return rc;
    }
    if (!o->access_log || !*o->access_log)
        return 0;
    return accesslog_open(o->access_log, o->format, 0, out, err, errlen);
}

void accesslog_reopen_all(struct accesslog *al)
{
    int rc = log_file_reopen();
    if (rc != 0)
        log_warn("error log not reopened, still writing the old file", "err=\"%s\"", strerror(-rc));
    if (al)
        accesslog_reopen(al);
    log_info("log files reopened", "signal=SIGUSR1 access_log=%s", al ? "yes" : "no");
}
