/* src/core/metrics.c: see metrics.h.
 *
 * Families are kept in registration order, each with its series; one mutex guards
 * registration and rendering, never updates. */
#include "core/metrics.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <dirent.h>
#include <unistd.h>

#define SUB_BITS 3
#define SUB (1u << SUB_BITS)
#define NBUCKETS (64 * SUB)

enum kind { K_COUNTER, K_GAUGE, K_GAUGE_FN, K_HIST, K_COUNTER_FN };

struct metrics_counter {
    _Atomic uint64_t v;
};
struct metrics_gauge {
    _Atomic uint64_t bits; /* a double's bits, so updates stay lock-free */
};
struct metrics_hist {
    _Atomic uint64_t buckets[NBUCKETS];
    _Atomic uint64_t count;
    _Atomic uint64_t sum;
    double scale;
    uint64_t lo, hi;
};

struct series {
    struct series *next;
    char *labels;
    enum kind kind;
    int hidden; /* holds a pair metrics_hide_label() hid: not rendered */
    union {
        struct metrics_counter counter;
        struct metrics_gauge gauge;
        struct {
            metrics_read_f *fn;
            void *arg;
        } fn;
        struct metrics_hist *hist;
    } u;
};

struct family {
    struct family *next;
    char *name;
    char *help;
    enum kind kind;
    struct series *series, **tail;
};

/* A label pair (`name="value"`) whose series are hidden (metrics_hide_label). */
struct hidden_pair {
    struct hidden_pair *next;
    size_t len;
    char pair[];
};

static pthread_mutex_t mtx = PTHREAD_MUTEX_INITIALIZER;
static struct family *families, **ftail = &families;
static struct hidden_pair *hidden; /* mtx */

static int hidden_labels(const char *labels);

static struct series *lookup(const char *name, const char *help, const char *labels, enum kind kind)
{
    struct family *f;
    struct series *s;

    if (!labels)
        labels = "";
    for (f = families; f; f = f->next)
        if (strcmp(f->name, name) == 0)
            break;
    if (!f) {
        f = mc_xcalloc(1, sizeof(*f));
        f->name = mc_xstrdup(name);
        f->help = mc_xstrdup(help ? help : name);
        f->kind = kind;
        f->tail = &f->series;
        *ftail = f;
        ftail = &f->next;
    }
    MC_ASSERT(f->kind == kind || (f->kind == K_GAUGE && kind == K_GAUGE_FN) ||
              (f->kind == K_GAUGE_FN && kind == K_GAUGE));
    for (s = f->series; s; s = s->next)
        if (strcmp(s->labels, labels) == 0)
            return s;
    s = mc_xcalloc(1, sizeof(*s));
    s->labels = mc_xstrdup(labels);
    s->kind = kind;
    /* A late first update of something removed (a request that finished on a model
     * after it left) does not bring it back. */
    s->hidden = hidden_labels(labels);
    *f->tail = s;
    f->tail = &s->next;
    return s;
}

struct metrics_counter *metrics_counter(const char *name, const char *help, const char *labels)
{
    pthread_mutex_lock(&mtx);
    struct series *s = lookup(name, help, labels, K_COUNTER);
    pthread_mutex_unlock(&mtx);
    return &s->u.counter;
}

void metrics_counter_add(struct metrics_counter *c, uint64_t n)
{
    atomic_fetch_add_explicit(&c->v, n, memory_order_relaxed);
}

uint64_t metrics_counter_get(const struct metrics_counter *c)
{
    return atomic_load_explicit(&((struct metrics_counter *)c)->v, memory_order_relaxed);
}

static uint64_t dbits(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof(b));
    return b;
}

static double bitsd(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof(d));
    return d;
}

struct metrics_gauge *metrics_gauge(const char *name, const char *help, const char *labels)
{
    pthread_mutex_lock(&mtx);
    struct series *s = lookup(name, help, labels, K_GAUGE);
    pthread_mutex_unlock(&mtx);
    return &s->u.gauge;
}

void metrics_gauge_set(struct metrics_gauge *g, double v)
{
    atomic_store_explicit(&g->bits, dbits(v), memory_order_relaxed);
}

void metrics_gauge_add(struct metrics_gauge *g, double d)
{
    uint64_t old = atomic_load_explicit(&g->bits, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&g->bits, &old, dbits(bitsd(old) + d),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

double metrics_gauge_get(const struct metrics_gauge *g)
{
    return bitsd(atomic_load_explicit(&((struct metrics_gauge *)g)->bits, memory_order_relaxed));
}

static void register_fn(const char *name, const char *help, const char *labels, enum kind kind,
                        metrics_read_f *fn, void *arg)
{
    pthread_mutex_lock(&mtx);
    struct series *s = lookup(name, help, labels, kind);
    s->u.fn.fn = fn;
    s->u.fn.arg = arg;
    pthread_mutex_unlock(&mtx);
}

void metrics_gauge_fn(const char *name, const char *help, const char *labels, metrics_read_f *fn,
                      void *arg)
{
    register_fn(name, help, labels, K_GAUGE_FN, fn, arg);
}

void metrics_counter_fn(const char *name, const char *help, const char *labels, metrics_read_f *fn,
                        void *arg)
{
    register_fn(name, help, labels, K_COUNTER_FN, fn, arg);
}

/* Values below SUB map linearly; above, the top SUB_BITS+1 bits pick octave and sub-bucket. */
static unsigned bucket_of(uint64_t v)
{
    if (v < SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned sub = (unsigned)(v >> (msb - SUB_BITS)) & (SUB - 1);
    return (msb - SUB_BITS + 1) * SUB + sub;
}

/* Smallest value of bucket i + its width = exclusive upper bound. */
static uint64_t bucket_upper(unsigned i)
{
    if (i < SUB)
        return i + 1;
    unsigned oct = i / SUB - 1 + SUB_BITS, sub = i % SUB;
    if (oct >= 63)
        return UINT64_MAX;
    uint64_t base = (uint64_t)1 << oct;
    uint64_t width = base >> SUB_BITS;
    return base + (uint64_t)(sub + 1) * width;
}

struct metrics_hist *metrics_hist_new_local(void)
{
    struct metrics_hist *h = mc_xcalloc(1, sizeof(*h));
    h->scale = 1;
    return h;
}

void metrics_hist_free(struct metrics_hist *h)
{
    free(h);
}

struct metrics_hist *metrics_hist(const char *name, const char *help, const char *labels,
                                  double scale, uint64_t lo, uint64_t hi)
{
    pthread_mutex_lock(&mtx);
    struct series *s = lookup(name, help, labels, K_HIST);
    if (!s->u.hist) {
        s->u.hist = metrics_hist_new_local();
        s->u.hist->scale = scale > 0 ? scale : 1;
        s->u.hist->lo = lo ? lo : 1;
        s->u.hist->hi = hi > lo ? hi : lo * 2;
    }
    pthread_mutex_unlock(&mtx);
    return s->u.hist;
}

void metrics_hist_observe(struct metrics_hist *h, uint64_t v)
{
    atomic_fetch_add_explicit(&h->buckets[bucket_of(v)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum, v, memory_order_relaxed);
}

uint64_t metrics_hist_count(const struct metrics_hist *h)
{
    return atomic_load_explicit(&((struct metrics_hist *)h)->count, memory_order_relaxed);
}

void metrics_hist_merge(struct metrics_hist *dst, const struct metrics_hist *src)
{
    struct metrics_hist *s = (struct metrics_hist *)src;
    for (unsigned i = 0; i < NBUCKETS; i++)
        atomic_fetch_add(&dst->buckets[i], atomic_load(&s->buckets[i]));
    atomic_fetch_add(&dst->count, atomic_load(&s->count));
    atomic_fetch_add(&dst->sum, atomic_load(&s->sum));
}

uint64_t metrics_hist_quantile(const struct metrics_hist *h, double q)
{
    struct metrics_hist *m = (struct metrics_hist *)h;
    uint64_t total = 0, acc = 0, rank;

    for (unsigned i = 0; i < NBUCKETS; i++)
        total += atomic_load_explicit(&m->buckets[i], memory_order_relaxed);
    if (total == 0)
        return 0;
    rank = (uint64_t)ceil(q * (double)total);
    if (rank == 0)
        rank = 1;
    for (unsigned i = 0; i < NBUCKETS; i++) {
        acc += atomic_load_explicit(&m->buckets[i], memory_order_relaxed);
        if (acc >= rank) {
            /* Report the bucket's midpoint: the error is then at most half a bucket. */
            uint64_t up = bucket_upper(i), low = i ? bucket_upper(i - 1) : 0;
            return low + (up - low) / 2;
        }
    }
    return bucket_upper(NBUCKETS - 1);
}

static void fmt_double(char *out, size_t n, double v)
{
    if (isinf(v))
        snprintf(out, n, v > 0 ? "+Inf" : "-Inf");
    else if (isnan(v))
        snprintf(out, n, "NaN");
    else if (v == floor(v) && fabs(v) < 1e15)
        snprintf(out, n, "%.0f", v);
    else
        snprintf(out, n, "%.9g", v);
}

static int render_labels(struct buf *out, const char *labels, const char *extra)
{
    int have = labels && *labels;
    if (!have && !extra)
        return 0;
    return buf_printf(out, "{%s%s%s}", have ? labels : "", have && extra ? "," : "",
                      extra ? extra : "");
}

static int render_hist(struct buf *out, const char *name, const struct series *s)
{
    struct metrics_hist *h = s->u.hist;
    uint64_t cum = 0, count = 0;
    unsigned i = 0;
    char num[64], le[96];
    int err = 0;

    for (unsigned k = 0; k < NBUCKETS; k++)
        count += atomic_load_explicit(&h->buckets[k], memory_order_relaxed);
    /* Export bounds are the bucket edges 2^k and 1.5 * 2^k inside [lo, hi]. */
    for (uint64_t p = 1; p && p <= h->hi * 2; p <<= 1) {
        uint64_t bounds[2] = {p, p + p / 2};
        for (int b = 0; b < 2; b++) {
            uint64_t bound = bounds[b];
            if (bound < h->lo || bound > h->hi || (b == 1 && p < 2))
                continue;
            while (i < NBUCKETS && bucket_upper(i) <= bound)
                cum += atomic_load_explicit(&h->buckets[i++], memory_order_relaxed);
            fmt_double(num, sizeof(num), (double)bound / h->scale);
            snprintf(le, sizeof(le), "le=\"%s\"", num);
            err |= buf_printf(out, "%s_bucket", name);
            err |= render_labels(out, s->labels, le);
            err |= buf_printf(out, " %llu\n", (unsigned long long)cum);
        }
    }
    err |= buf_printf(out, "%s_bucket", name);
    err |= render_labels(out, s->labels, "le=\"+Inf\"");
    err |= buf_printf(out, " %llu\n", (unsigned long long)count);
    fmt_double(num, sizeof(num),
               (double)atomic_load_explicit(&h->sum, memory_order_relaxed) / h->scale);
    err |= buf_printf(out, "%s_sum", name);
    err |= render_labels(out, s->labels, NULL);
    err |= buf_printf(out, " %s\n%s_count", num, name);
    err |= render_labels(out, s->labels, NULL);
    err |= buf_printf(out, " %llu\n", (unsigned long long)count);
    return err;
}

/* 1 when the label text holds pair (`name="value"`) as one whole label. */
static int has_label(const char *labels, const char *pair, size_t plen)
{
    for (const char *p = labels; (p = strstr(p, pair)) != NULL; p++)
        if ((p == labels || p[-1] == ',') && (p[plen] == '\0' || p[plen] == ','))
            return 1;
    return 0;
}

static int hidden_labels(const char *labels)
{
    for (const struct hidden_pair *h = hidden; h; h = h->next)
        if (has_label(labels, h->pair, h->len))
            return 1;
    return 0;
}

/* Marks the series again after the list of hidden pairs changed (mtx held). */
static void rehide(void)
{
    for (struct family *f = families; f; f = f->next)
        for (struct series *s = f->series; s; s = s->next)
            s->hidden = hidden_labels(s->labels);
}

void metrics_hide_label(const char *name, const char *value)
{
    struct buf pair;

    buf_init(&pair, SIZE_MAX);
    buf_printf(&pair, "%s=\"%s\"", name, value);
    pthread_mutex_lock(&mtx);
    if (!hidden_labels(pair.data)) {
        struct hidden_pair *h = mc_xmalloc(sizeof(*h) + pair.len + 1);
        h->len = pair.len;
        memcpy(h->pair, pair.data, pair.len + 1);
        h->next = hidden;
        hidden = h;
        rehide();
    }
    pthread_mutex_unlock(&mtx);
    buf_fini(&pair);
}

void metrics_show_label(const char *name, const char *value)
{
    struct buf pair;

    buf_init(&pair, SIZE_MAX);
    buf_printf(&pair, "%s=\"%s\"", name, value);
    pthread_mutex_lock(&mtx);
    for (struct hidden_pair **hp = &hidden; *hp; hp = &(*hp)->next) {
        if ((*hp)->len == pair.len && memcmp((*hp)->pair, pair.data, pair.len) == 0) {
            struct hidden_pair *h = *hp;
            *hp = h->next;
            free(h);
            rehide();
            break;
        }
    }
    pthread_mutex_unlock(&mtx);
    buf_fini(&pair);
}

int metrics_render(struct buf *out)
{
    static const char *const types[] = {"counter", "gauge", "gauge", "histogram", "counter"};
    char num[64];
    int err = 0;

    pthread_mutex_lock(&mtx);
    for (struct family *f = families; f; f = f->next) {
        struct series *s = f->series;
        while (s && s->hidden)
            s = s->next;
        if (f->series && !s)
            continue; /* every series hidden */
        err |= buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
                          types[f->kind]);
        for (; s; s = s->next) {
            if (s->hidden)
                continue;
            if (f->kind == K_HIST) {
                err |= render_hist(out, f->name, s);
                continue;
            }
            double v;
            if (s->kind == K_GAUGE_FN || s->kind == K_COUNTER_FN)
                v = s->u.fn.fn(s->u.fn.arg);
            else if (f->kind == K_COUNTER)
                v = (double)metrics_counter_get(&s->u.counter);
            else
                v = metrics_gauge_get(&s->u.gauge);
            fmt_double(num, sizeof(num), v);
            err |= buf_puts(out, f->name);
            err |= render_labels(out, s->labels, NULL);
            err |= buf_printf(out, " %s\n", num);
        }
    }
    pthread_mutex_unlock(&mtx);
    return err ? -E2BIG : 0;
}

void metrics_reset(void)
{
    pthread_mutex_lock(&mtx);
    while (families) {
        struct family *f = families;
        families = f->next;
        while (f->series) {
            struct series *s = f->series;
            f->series = s->next;
            if (f->kind == K_HIST)
                free(s->u.hist);
            free(s->labels);
            free(s);
        }
        free(f->name);
        free(f->help);
        free(f);
    }
    ftail = &families;
    while (hidden) {
        struct hidden_pair *h = hidden;
        hidden = h->next;
        free(h);
    }
    pthread_mutex_unlock(&mtx);
}

int metrics_label_esc(struct buf *out, const char *s)
{
    int err = 0;
    for (; *s; s++) {
        if (*s == '\\')
            err |= buf_puts(out, "\\\\");
        else if (*s == '"')
            err |= buf_puts(out, "\\\"");
        else if (*s == '\n')
            err |= buf_puts(out, "\\n");
        else
            err |= buf_append(out, s, 1);
    }
    return err ? -E2BIG : 0;
}

/* ---- process_* (Prometheus client conventions), from /proc/self ---- */

/* Fields of /proc/self/stat after the command name (which may hold spaces and parens):
 * index 0 is field 3 (state). utime 14, stime 15, starttime 22 (proc(5)). */
static int proc_stat(unsigned long long *utime, unsigned long long *stime,
                     unsigned long long *start)
{
    char b[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f)
        return -1;
    size_t n = fread(b, 1, sizeof(b) - 1, f);
    fclose(f);
    b[n] = '\0';
    char *p = strrchr(b, ')');
    if (!p)
        return -1;
    p++;
    unsigned long long v[20];
    int k = 0;
    for (char *sv, *tok = strtok_r(p, " ", &sv); tok && k < 20; tok = strtok_r(NULL, " ", &sv))
        v[k++] = strtoull(tok, NULL, 10);
    if (k < 20)
        return -1;
    *utime = v[11];
    *stime = v[12];
    *start = v[19];
    return 0;
}

static double cpu_read(void *arg)
{
    unsigned long long u, s, st;
    (void)arg;
    if (proc_stat(&u, &s, &st) != 0)
        return 0;
    return (double)(u + s) / (double)sysconf(_SC_CLK_TCK);
}

static double rss_read(void *arg)
{
    unsigned long long size = 0, res = 0;
    (void)arg;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    if (fscanf(f, "%llu %llu", &size, &res) != 2)
        res = 0;
    fclose(f);
    return (double)res * (double)sysconf(_SC_PAGESIZE);
}

static double vsz_read(void *arg)
{
    unsigned long long size = 0;
    (void)arg;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    if (fscanf(f, "%llu", &size) != 1)
        size = 0;
    fclose(f);
    return (double)size * (double)sysconf(_SC_PAGESIZE);
}

static double fds_read(void *arg)
{
    double n = 0;
    struct dirent *de;
    (void)arg;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 0;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

static double maxfds_read(void *arg)
{
    struct rlimit rl;
    (void)arg;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    return rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur;
}

static double start_s;

static double start_read(void *arg)
{
    (void)arg;
    return start_s;
}

/* Boot time (btime of /proc/stat) + the process's start in ticks since boot; the time of
 * registration when /proc is not there. */
static double process_start(void)
{
    unsigned long long u, s, st, btime = 0;
    char line[256];
    FILE *f = fopen("/proc/stat", "r");
    if (f) {
        while (fgets(line, sizeof(line), f))
            if (sscanf(line, "btime %llu", &btime) == 1)
                break;
        fclose(f);
    }
    if (btime && proc_stat(&u, &s, &st) == 0)
        return (double)btime + (double)st / (double)sysconf(_SC_CLK_TCK);
    return (double)time(NULL);
}

static double one_read(void *arg)
{
    (void)arg;
    return 1;
}

void metrics_process_register(const char *version, const char *commit)
{
    struct buf b;

    start_s = floor(process_start()); /* whole seconds: exported without an exponent */
    buf_init(&b, 1024);
    buf_puts(&b, "version=\"");
    metrics_label_esc(&b, version);
    buf_puts(&b, "\",commit=\"");
    metrics_label_esc(&b, commit);
    buf_puts(&b, "\"");
    metrics_gauge_fn("mlcdn_build_info", "Version and git commit of this binary (value 1)", b.data,
                     one_read, NULL);
    buf_fini(&b);
    metrics_counter_fn("process_cpu_seconds_total",
                       "Total user and system CPU time spent in seconds.", NULL, cpu_read, NULL);
    metrics_gauge_fn("process_resident_memory_bytes", "Resident memory size in bytes.", NULL,
                     rss_read, NULL);
    metrics_gauge_fn("process_virtual_memory_bytes", "Virtual memory size in bytes.", NULL,
                     vsz_read, NULL);
    metrics_gauge_fn("process_open_fds", "Number of open file descriptors.", NULL, fds_read, NULL);
    metrics_gauge_fn("process_max_fds", "Maximum number of open file descriptors.", NULL,
                     maxfds_read, NULL);
    metrics_gauge_fn("process_start_time_seconds",
                     "Start time of the process since unix epoch in seconds.", NULL, start_read,
                     NULL);
}
