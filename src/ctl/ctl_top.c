/* src/ctl/ctl_top.c: `mlcdn ctl top`: the edges live, as varnishstat, varnishhist and htop
 * show a cache: every --interval each edge's /metrics is read (look_sample) and the screen
 * redrawn from the difference with the previous read.
 *
 * Three views, all within 80 columns: edges (one row each, sortable by any column), tiers
 * (every edge together: rate, share and quantiles per tier) and hist (the latency
 * distribution of each tier since top started, one bar chart per tier on a logarithmic
 * time axis, varnishhist's idea). Keys are read between samples with a timeout, so they act
 * at once. When stdout is not a terminal there is no screen: each refresh prints one plain
 * line per edge, for logs and scripts. */
#include <curses.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/mc.h"
#include "core/units.h"
#include "ctl/ctl_look.h"

enum view { V_EDGES, V_TIERS, V_HIST };
enum col {
    C_NAME,
    C_RPS,
    C_L1,
    C_L2,
    C_REDIS,
    C_ORIGIN,
    C_P50,
    C_P99,
    C_OUT,
    C_SAVED,
    C_ERR,
    C__N
};

static const char *const col_names[C__N] = {"EDGE", "REQ/S", "L1%",   "L2%",    "REDIS%", "ORIG%",
                                            "P50",  "P99",   "OUT/S", "SAVE/S", "5XX"};
static const int col_width[C__N] = {15, 7, 6, 6, 7, 6, 7, 7, 7, 7, 4};

/* One edge's row: the window's figures, computed once per sample. */
struct row {
    const struct look_edge *e;
    int ok;
    double v[C__N];
};

struct top {
    struct look *l;
    enum view view;
    enum col sort;
    int reverse;
    long interval_ms;
    long count, refreshes;
    struct edgestat *base; /* per edge: the first read, the hist view's origin */
    int *have_base;
    struct row *rows;
    size_t nrows;
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: mlcdn ctl top (--router URL | --edges URL,URL,...) [--interval T]\n"
               "                     [--count N] [--token T] [--timeout T]\n\n"
               "  --router URL     the router's HTTP API; the edges are read from its /edges\n"
               "  --edges LIST     edges' admin URLs (http://HOST:PORT), comma-separated\n"
               "  --interval T     time between refreshes (1s)\n"
               "  --count N        stop after N refreshes (default: until q)\n\n"
               "Keys: 1 edges  2 tiers  3 histograms  v next view  s/S sort by the next/previous\n"
               "column  r reverse the order  q quit. Without a terminal on stdout, each refresh\n"
               "prints one line per edge.\n");
}

void ctl_top_usage(void)
{
    usage(stdout);
}

static double share(const struct edgestat *w, int t)
{
    return w->requests > 0 ? 100.0 * w->tier_requests[t] / w->requests : NAN;
}

/* All tiers of one window together: the edge's own latency. */
static void all_tiers(const struct edgestat *w, struct edgestat_hist *h)
{
    memset(h, 0, sizeof(*h));
    for (int t = 0; t < EDGESTAT_TIERS; t++) {
        const struct edgestat_hist *s = &w->lat[t];
        if (h->n == 0 && s->n) {
            *h = *s;
            continue;
        }
        if (s->n != h->n || memcmp(s->le, h->le, s->n * sizeof(s->le[0])))
            continue;
        for (size_t k = 0; k < s->n; k++)
            h->cnt[k] += s->cnt[k];
        h->count += s->count;
    }
}

static void make_rows(struct top *tp)
{
    tp->nrows = tp->l->n;
    for (size_t i = 0; i < tp->l->n; i++) {
        const struct look_edge *e = &tp->l->e[i];
        struct row *r = &tp->rows[i];
        struct edgestat w;
        struct edgestat_hist h;
        double secs;

        memset(r, 0, sizeof(*r));
        r->e = e;
        r->ok = e->ok;
        for (int c = 0; c < C__N; c++)
            r->v[c] = NAN;
        if (!e->ok)
            continue;
        look_window(e, &w, &secs);
        if (secs <= 0)
            continue; /* one read so far: no rates yet */
        all_tiers(&w, &h);
        r->v[C_RPS] = w.requests / secs;
        r->v[C_L1] = share(&w, EDGESTAT_L1);
        r->v[C_L2] = share(&w, EDGESTAT_L2);
        r->v[C_REDIS] = share(&w, EDGESTAT_REDIS);
        r->v[C_ORIGIN] = share(&w, EDGESTAT_ORIGIN);
        double p50 = edgestat_quantile(&h, 0.5), p99 = edgestat_quantile(&h, 0.99);
        r->v[C_P50] = p50 < 0 ? NAN : p50;
        r->v[C_P99] = p99 < 0 ? NAN : p99;
        r->v[C_OUT] = w.bytes_served / secs;
        r->v[C_SAVED] = edgestat_bytes_saved(&w) / secs;
        r->v[C_ERR] = w.responses_5xx;
    }
}

static struct top *sort_ctx;

static int row_cmp(const void *a, const void *b)
{
    const struct row *x = a, *y = b;
    int c;
    if (sort_ctx->sort == C_NAME) {
        c = strcmp(x->e->name, y->e->name);
    } else {
        double u = x->v[sort_ctx->sort], v = y->v[sort_ctx->sort];
        /* Unknown values go last whatever the order; numbers sort largest first. */
        if (isnan(u) || isnan(v))
            return isnan(u) - isnan(v);
        c = u > v ? -1 : u < v ? 1 : 0;
    }
    if (c == 0)
        c = strcmp(x->e->name, y->e->name);
    return sort_ctx->reverse ? -c : c;
}

static void cell(char *out, size_t n, enum col c, double v)
{
    if (isnan(v)) {
        snprintf(out, n, "-");
        return;
    }
    switch (c) {
    case C_RPS: snprintf(out, n, v < 100 ? "%.1f" : "%.0f", v); break;
    case C_L1:
    case C_L2:
    case C_REDIS:
    case C_ORIGIN: snprintf(out, n, "%.1f", v); break;
    case C_P50:
    case C_P99: look_fmt_secs(out, n, v); break;
    case C_OUT:
    case C_SAVED: look_fmt_bytes(out, n, v); break;
    default: snprintf(out, n, "%.0f", v);
    }
}

/* An edge's name in the first column: an admin URL (--edges) without its scheme, and a
 * name too long for the column keeps its end, where host:port differ. */
static void name_text(const char *name, char *out, size_t n)
{
    const char *s = strstr(name, "://");
    size_t w = (size_t)col_width[C_NAME];
    s = s ? s + 3 : name;
    size_t len = strlen(s);
    if (len > w)
        snprintf(out, n, "~%s", s + len - (w - 1));
    else
        snprintf(out, n, "%s", s);
}

/* One edge row as text, 79 columns. */
static void row_text(const struct row *r, char *out, size_t n)
{
    size_t o = 0;
    char c[32], name[64];
    name_text(r->e->name, name, sizeof(name));
    int w = snprintf(out, n, "%-*s", col_width[C_NAME], name);
    o = w > 0 ? (size_t)w : 0;
    if (!r->ok) {
        snprintf(out + o, n - o, " DOWN %.60s", r->e->err);
        return;
    }
    for (int k = 1; k < C__N && o < n; k++) {
        cell(c, sizeof(c), k, r->v[k]);
        w = snprintf(out + o, n - o, "%*s", col_width[k], c);
        o += w > 0 ? (size_t)w : 0;
    }
}

/* ---- plain lines ---- */

static void plain_refresh(struct top *tp)
{
    char ts[16], line[256];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof(ts), "%H:%M:%S", &tm);
    if (tp->refreshes == 1) {
        printf("%-8s ", "TIME");
        for (int k = 0; k < C__N; k++)
            printf(k ? "%*s" : "%-*s", col_width[k], col_names[k]);
        printf("\n");
    }
    for (size_t i = 0; i < tp->nrows; i++) {
        row_text(&tp->rows[i], line, sizeof(line));
        printf("%-8s %s\n", ts, line);
    }
    fflush(stdout);
}

/* ---- screen ---- */

static void draw_edges(struct top *tp, int rows, int cols)
{
    char line[256];
    int x = 0;

    attron(A_REVERSE);
    mvhline(2, 0, ' ', cols);
    for (int k = 0; k < C__N; k++) {
        char h[16];
        snprintf(h, sizeof(h), "%s%s", col_names[k],
                 k == (int)tp->sort ? (tp->reverse ? "^" : "v") : "");
        if (k == (int)tp->sort)
            attron(A_BOLD);
        mvprintw(2, x, k ? "%*s" : "%-*s", col_width[k], h);
        attroff(A_BOLD);
        x += col_width[k];
    }
    attroff(A_REVERSE);
    for (size_t i = 0; i < tp->nrows && (int)i + 3 < rows - 1; i++) {
        row_text(&tp->rows[i], line, sizeof(line));
        if (!tp->rows[i].ok)
            attron(A_BOLD);
        mvaddnstr(3 + (int)i, 0, line, cols);
        attroff(A_BOLD);
    }
}

/* Every edge's window together. */
static void total_window(struct top *tp, struct edgestat *tot, double *secs)
{
    memset(tot, 0, sizeof(*tot));
    *secs = 0;
    for (size_t i = 0; i < tp->l->n; i++) {
        const struct look_edge *e = &tp->l->e[i];
        struct edgestat w;
        double s;
        if (!e->ok)
            continue;
        look_window(e, &w, &s);
        if (s <= 0)
            continue;
        edgestat_add(tot, &w);
        *secs = MC_MAX(*secs, s);
    }
}

static void draw_tiers(struct top *tp, int rows, int cols)
{
    struct edgestat tot;
    double secs;
    char a[16], b[16], c[16], d[16];

    total_window(tp, &tot, &secs);
    attron(A_REVERSE);
    mvhline(2, 0, ' ', cols);
    mvprintw(2, 0, "%-8s %9s %7s %9s %9s %9s %10s", "TIER", "REQ/S", "SHARE", "P50", "P95", "P99",
             "BYTES/S");
    attroff(A_REVERSE);
    int y = 3;
    for (int t = 0; t < EDGESTAT_TIERS && y < rows - 1; t++) {
        const struct edgestat_hist *h = &tot.lat[t];
        look_fmt_secs(a, sizeof(a), edgestat_quantile(h, 0.50));
        look_fmt_secs(b, sizeof(b), edgestat_quantile(h, 0.95));
        look_fmt_secs(c, sizeof(c), edgestat_quantile(h, 0.99));
        look_fmt_bytes(d, sizeof(d), secs > 0 ? tot.tier_bytes[t] / secs : 0);
        mvprintw(y++, 0, "%-8s %9.1f %6.1f%% %9s %9s %9s %10s", edgestat_tier_name(t),
                 secs > 0 ? tot.tier_requests[t] / secs : 0.0,
                 tot.requests > 0 ? 100.0 * tot.tier_requests[t] / tot.requests : 0.0, a, b, c, d);
    }
    if (y + 1 < rows - 1) {
        look_fmt_bytes(a, sizeof(a), secs > 0 ? tot.bytes_served / secs : 0);
        look_fmt_bytes(b, sizeof(b), secs > 0 ? edgestat_bytes_saved(&tot) / secs : 0);
        mvprintw(y + 1, 0, "all edges: %.1f req/s  %s/s served  %s/s saved  %.0f 5xx",
                 secs > 0 ? tot.requests / secs : 0.0, a, b, tot.responses_5xx);
    }
}

/* The hist view's data: every edge's activity since its first read (its counters since it
 * started until a second read exists). */
static void since_start(struct top *tp, struct edgestat *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < tp->l->n; i++) {
        const struct look_edge *e = &tp->l->e[i];
        struct edgestat d;
        if (!e->t_us)
            continue;
        if (tp->have_base[i])
            edgestat_delta(&tp->base[i], &e->cur, &d);
        else
            d = e->cur;
        edgestat_add(out, &d);
    }
}

static void draw_hist(struct top *tp, int rows, int cols)
{
    struct edgestat s;
    int tiers[EDGESTAT_TIERS], nt = 0;
    const double lo = 1e-5, hi = 10; /* 10 us .. 10 s across the width */

    since_start(tp, &s);
    for (int t = 0; t < EDGESTAT_TIERS; t++)
        if (s.lat[t].count > 0)
            tiers[nt++] = t;
    if (nt == 0) {
        mvprintw(3, 0, "no requests since top started");
        return;
    }
    int width = cols - 8, avail = rows - 5; /* title, axis and footer lines */
    int ch = avail / nt - 1;
    if (width < 10 || ch < 1) {
        mvprintw(3, 0, "the terminal is too small for histograms");
        return;
    }
    int y = 2;
    for (int i = 0; i < nt; i++) {
        const struct edgestat_hist *h = &s.lat[tiers[i]];
        double colv[512] = {0}, peak = 0;
        int w = MC_MIN(width, 512);
        for (size_t k = 0; k < h->n; k++) {
            double l0 = k ? h->le[k - 1] : h->le[0] / 2, l1 = isinf(h->le[k]) ? l0 * 1.5 : h->le[k];
            double mid = sqrt(MC_MAX(l0, 1e-9) * l1);
            int x = (int)((log10(mid) - log10(lo)) / (log10(hi) - log10(lo)) * w);
            x = MC_MAX(0, MC_MIN(w - 1, x));
            colv[x] += h->cnt[k];
        }
        for (int x = 0; x < w; x++)
            peak = MC_MAX(peak, colv[x]);
        char a[16], b[16], c[16];
        look_fmt_secs(a, sizeof(a), edgestat_quantile(h, 0.50));
        look_fmt_secs(b, sizeof(b), edgestat_quantile(h, 0.95));
        look_fmt_secs(c, sizeof(c), edgestat_quantile(h, 0.99));
        attron(A_BOLD);
        mvprintw(y++, 0, "%-6s n=%.0f  p50 %s  p95 %s  p99 %s", edgestat_tier_name(tiers[i]),
                 h->count, a, b, c);
        attroff(A_BOLD);
        /* A bar's height in rows, rounded up: a single request still shows. */
        for (int x = 0; x < w; x++) {
            int hgt = peak > 0 ? (int)ceil(colv[x] / peak * ch) : 0;
            for (int r = ch - hgt; r < ch; r++)
                mvaddch(y + r, 8 + x, tiers[i] == EDGESTAT_ORIGIN ? '#' : '|');
        }
        y += ch;
    }
    /* The time axis: a label at each power of ten. */
    for (double d = log10(lo); d <= log10(hi); d++) {
        char lab[16];
        int x = 8 + (int)((d - log10(lo)) / (log10(hi) - log10(lo)) * MC_MIN(width, 512));
        look_fmt_secs(lab, sizeof(lab), pow(10, d));
        if (x + (int)strlen(lab) < cols)
            mvprintw(y, x, "%s", lab);
    }
}

static void draw(struct top *tp)
{
    int rows, cols;
    static const char *const names[] = {"edges", "tiers", "histograms since start"};
    size_t up = 0;

    getmaxyx(stdscr, rows, cols);
    erase();
    for (size_t i = 0; i < tp->l->n; i++)
        up += tp->l->e[i].ok;
    mvprintw(0, 0, "%s - %zu/%zu edges up - every %.1fs - refresh %ld", names[tp->view], up,
             tp->l->n, tp->interval_ms / 1000.0, tp->refreshes);
    if (cols >= 80)
        mvprintw(0, cols - 14, "mlcdn ctl top");
    if (tp->view == V_EDGES)
        draw_edges(tp, rows, cols);
    else if (tp->view == V_TIERS)
        draw_tiers(tp, rows, cols);
    else
        draw_hist(tp, rows, cols);
    attron(A_REVERSE);
    mvhline(rows - 1, 0, ' ', cols);
    mvaddnstr(rows - 1, 0, "1 edges 2 tiers 3 hist  v view  s/S sort  r reverse  q quit", cols);
    attroff(A_REVERSE);
    refresh();
}

static void sample(struct top *tp)
{
    look_sample(tp->l);
    for (size_t i = 0; i < tp->l->n; i++)
        if (!tp->have_base[i] && tp->l->e[i].ok) {
            tp->base[i] = tp->l->e[i].cur;
            tp->have_base[i] = 1;
        }
    make_rows(tp);
    sort_ctx = tp;
    qsort(tp->rows, tp->nrows, sizeof(*tp->rows), row_cmp);
    tp->refreshes++;
}

/* Returns 1 to quit. */
static int key(struct top *tp, int k)
{
    switch (k) {
    case 'q':
    case 'Q': return 1;
    case '1': tp->view = V_EDGES; break;
    case '2': tp->view = V_TIERS; break;
    case '3': tp->view = V_HIST; break;
    case 'v':
    case '\t': tp->view = (tp->view + 1) % 3; break;
    case 's':
    case KEY_RIGHT: tp->sort = (tp->sort + 1) % C__N; break;
    case 'S':
    case KEY_LEFT: tp->sort = (tp->sort + C__N - 1) % C__N; break;
    case 'r': tp->reverse = !tp->reverse; break;
    default: return 0;
    }
    sort_ctx = tp;
    qsort(tp->rows, tp->nrows, sizeof(*tp->rows), row_cmp);
    return 0;
}

static int run_screen(struct top *tp)
{
    initscr();
    cbreak();
    noecho();
    keypad(stdscr, TRUE);
    curs_set(0);
    for (;;) {
        sample(tp);
        draw(tp);
        if (tp->count && tp->refreshes >= tp->count)
            break;
        uint64_t until = units_now_ms() + (uint64_t)tp->interval_ms;
        int quit = 0;
        for (;;) {
            uint64_t now = units_now_ms();
            if (now >= until)
                break;
            timeout((int)(until - now));
            int k = getch();
            if (k == ERR)
                continue;
            if ((quit = key(tp, k)))
                break;
            draw(tp);
        }
        if (quit)
            break;
    }
    endwin();
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

int ctl_top_main(int argc, char **argv)
{
    struct top tp = {0};
    char err[512];
    int rc = 0;

    tp.l = mc_xcalloc(1, sizeof(*tp.l));
    tp.interval_ms = 1000;
    tp.sort = C_RPS;
    for (int i = 1; i < argc; i++) {
        int f = look_flag(tp.l, argc, argv, &i, err, sizeof(err));
        if (f < 0) {
            fprintf(stderr, "mlcdn ctl top: %s\n", err);
            rc = 2;
            goto out;
        }
        if (f)
            continue;
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            goto out;
        } else if (v && !strcmp(argv[i], "--interval")) {
            uint64_t ms;
            if (units_parse_duration_ms(argv[++i], &ms) < 0 || ms < 100 || ms > 3600000) {
                fprintf(stderr,
                        "mlcdn ctl top: --interval: '%s' is not a duration of 100ms "
                        "to 1h\n",
                        argv[i]);
                rc = 2;
                goto out;
            }
            tp.interval_ms = (long)ms;
        } else if (v && !strcmp(argv[i], "--count")) {
            char *end;
            tp.count = strtol(argv[++i], &end, 10);
            if (*end || tp.count < 0) {
                fprintf(stderr, "mlcdn ctl top: --count: '%s' is not a number >= 0\n", argv[i]);
                rc = 2;
                goto out;
            }
        } else {
            fprintf(stderr, "mlcdn ctl top: unknown option '%s' (or its value is missing)\n",
                    argv[i]);
            usage(stderr);
            rc = 2;
            goto out;
        }
    }
    if (look_resolve(tp.l, err, sizeof(err)) < 0) {
        fprintf(stderr, "mlcdn ctl top: %s\n", err);
        rc = 2;
        goto out;
    }
    tp.base = mc_xcalloc(tp.l->n, sizeof(*tp.base));
    tp.have_base = mc_xcalloc(tp.l->n, sizeof(*tp.have_base));
    tp.rows = mc_xcalloc(tp.l->n, sizeof(*tp.rows));
    if (isatty(STDOUT_FILENO)) {
        rc = run_screen(&tp);
    } else {
        /* A reader that went away (| head) ends the loop through EPIPE, not a signal. */
        signal(SIGPIPE, SIG_IGN);
        for (;;) {
            sample(&tp);
            plain_refresh(&tp);
            if (ferror(stdout) || (tp.count && tp.refreshes >= tp.count))
                break;
            sleep_ms(tp.interval_ms);
        }
    }
out:
    free(tp.base);
    free(tp.have_base);
    free(tp.rows);
    look_free(tp.l);
    free(tp.l);
    return rc;
}
