/* src/ctl/ctl_plot.c: `mlcdn ctl plot`: the latency distribution per tier as an SVG file.
 *
 * The data is either the edges' last-byte histograms (GET /metrics, every edge merged,
 * since each started) or an access log (json or combined format: its level and duration
 * fields), binned into the same buckets the edges export (two per octave, 16 us to 60 s),
 * so both sources draw alike. Each tier that answered is one series: the share of its
 * requests per bucket over a logarithmic time axis, with its p50/p95/p99 in the legend.
 * The SVG is written here by hand: no plotting library is needed for lines and text. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/mc.h"
#include "ctl/ctl_look.h"

static const char *const tier_colors[EDGESTAT_TIERS] = {"#1b9e77", "#d95f02", "#7570b3", "#e7298a",
                                                        "#66a61e"};

static void usage(FILE *f)
{
    fprintf(f, "Usage: mlcdn ctl plot --out FILE.svg (--router URL | --edges URL,... |\n"
               "                      --access-log FILE) [--title TEXT] [--token T]\n\n"
               "  --out FILE         the SVG to write\n"
               "  --router URL       the edges the router knows (their /metrics)\n"
               "  --edges LIST       edges' admin URLs, comma-separated\n"
               "  --access-log FILE  an edge's access log (json or combined format) instead\n"
               "  --title TEXT       the plot's title\n");
}

/* The edges' export bounds (metrics.c: 2^k and 1.5 * 2^k inside [16 us, 60 s]) + Inf. */
static void edge_bounds(struct edgestat_hist *h)
{
    const uint64_t lo = 16, hi = 60000000;
    memset(h, 0, sizeof(*h));
    for (uint64_t p = 1; p && p <= hi * 2; p <<= 1) {
        uint64_t b2[2] = {p, p + p / 2};
        for (int b = 0; b < 2; b++) {
            if (b2[b] < lo || b2[b] > hi || (b == 1 && p < 2))
                continue;
            h->le[h->n++] = (double)b2[b] / 1e6;
        }
    }
    h->le[h->n++] = INFINITY;
}

static void hist_observe(struct edgestat_hist *h, double secs)
{
    size_t k = 0;
    while (k + 1 < h->n && secs > h->le[k])
        k++;
    h->cnt[k]++;
    h->count++;
    h->sum += secs;
}

static int tier_index(const char *s, size_t n)
{
    for (int t = 0; t < EDGESTAT_TIERS; t++) {
        const char *tn = edgestat_tier_name(t);
        if (strlen(tn) == n && !strncmp(tn, s, n))
            return t;
    }
    return -1;
}

/* One access log line: JSON ({"level":..,"duration_s":..}) or combined (level=X time=S).
 * Returns 1 when it gave a tier and a duration, 0 when the line has none (an admin
 * request, an unknown duration), -1 when it is neither format. */
static int log_line(const char *line, size_t len, int *tier, double *secs)
{
    if (len && line[0] == '{') {
        json_error_t je;
        json_t *j = json_loadb(line, len, 0, &je);
        if (!json_is_object(j)) {
            json_decref(j);
            return -1;
        }
        const char *lv = json_string_value(json_object_get(j, "level"));
        json_t *d = json_object_get(j, "duration_s");
        int rc = 0;
        if (lv && json_is_number(d) && (*tier = tier_index(lv, strlen(lv))) >= 0) {
            *secs = json_number_value(d);
            rc = 1;
        }
        json_decref(j);
        return rc;
    }
    const char *lvp = memmem(line, len, " level=", 7);
    const char *tp = memmem(line, len, " time=", 6);
    if (!lvp || !tp)
        return -1;
    lvp += 7;
    size_t n = 0;
    while (lvp + n < line + len && lvp[n] != ' ')
        n++;
    if ((*tier = tier_index(lvp, n)) < 0)
        return 0;
    char *end;
    *secs = strtod(tp + 6, &end);
    return end == tp + 6 ? 0 : 1;
}

static int read_log(const char *path, struct edgestat *st, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0, lineno = 0, used = 0;
    ssize_t n;

    if (!f) {
        snprintf(err, errlen, "--access-log %s: %s", path, strerror(errno));
        return -errno;
    }
    memset(st, 0, sizeof(*st));
    for (int t = 0; t < EDGESTAT_TIERS; t++)
        edge_bounds(&st->lat[t]);
    while ((n = getline(&line, &cap, f)) > 0) {
        int tier;
        double secs;
        lineno++;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            n--;
        if (n == 0)
            continue;
        int rc = log_line(line, (size_t)n, &tier, &secs);
        if (rc < 0) {
            snprintf(err, errlen,
                     "--access-log %s: line %zu is neither a json nor a combined "
                     "access log line",
                     path, lineno);
            free(line);
            fclose(f);
            return -EINVAL;
        }
        if (rc == 1) {
            hist_observe(&st->lat[tier], secs);
            st->tier_requests[tier]++;
            st->requests++;
            used++;
        }
    }
    free(line);
    fclose(f);
    if (used == 0) {
        snprintf(err, errlen, "--access-log %s: no request with a tier and a duration", path);
        return -ENOENT;
    }
    return 0;
}

static double xmid(const struct edgestat_hist *h, size_t k)
{
    double lo = k ? h->le[k - 1] : h->le[0] / 2, hi = h->le[k];
    if (isinf(hi))
        hi = lo * 1.5;
    return sqrt(lo * hi);
}

static void svg_text(struct buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '<')
            buf_puts(b, "&lt;");
        else if (*s == '>')
            buf_puts(b, "&gt;");
        else if (*s == '&')
            buf_puts(b, "&amp;");
        else if (*s == '"')
            buf_puts(b, "&quot;");
        else
            buf_append(b, s, 1);
    }
}

static void plot_svg(const struct edgestat *st, const char *title, struct buf *b)
{
    const double W = 880, H = 460, L = 70, R = 260, T = 40, B = 50;
    const double pw = W - L - R, ph = H - T - B;
    double xmin = INFINITY, xmax = 0, ymax = 0;

    for (int t = 0; t < EDGESTAT_TIERS; t++) {
        const struct edgestat_hist *h = &st->lat[t];
        double tot = 0;
        for (size_t k = 0; k < h->n; k++)
            tot += h->cnt[k];
        for (size_t k = 0; k < h->n && tot > 0; k++) {
            if (h->cnt[k] <= 0)
                continue;
            xmin = MC_MIN(xmin, xmid(h, k));
            xmax = MC_MAX(xmax, xmid(h, k));
            ymax = MC_MAX(ymax, h->cnt[k] / tot);
        }
    }
    if (!(xmax > 0)) {
        xmin = 1e-4;
        xmax = 1;
    }
    double lx0 = floor(log10(xmin)), lx1 = ceil(log10(xmax));
    if (lx1 <= lx0)
        lx1 = lx0 + 1;
    ymax = ymax > 0 ? MC_MIN(1.0, ceil(ymax * 10) / 10) : 1;
#define X(v) (L + (log10(v) - lx0) / (lx1 - lx0) * pw)
#define Y(v) (T + ph - (v) / ymax * ph)

    buf_printf(b,
               "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
               W, H, W, H);
    buf_printf(b, "<text x=\"%.0f\" y=\"22\" font-size=\"15\">", L);
    svg_text(b, title);
    buf_puts(b, "</text>\n<g class=\"axes\" stroke=\"#999\" stroke-width=\"0.5\">\n");
    for (double d = lx0; d <= lx1; d++) {
        char lab[32];
        look_fmt_secs(lab, sizeof(lab), pow(10, d));
        buf_printf(b,
                   "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" stroke=\"none\" "
                   "fill=\"#333\">%s</text>\n",
                   X(pow(10, d)), T, X(pow(10, d)), T + ph, X(pow(10, d)), T + ph + 16, lab);
    }
    for (int i = 0; i <= 4; i++) {
        double v = ymax * i / 4;
        buf_printf(b,
                   "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" stroke=\"none\" "
                   "fill=\"#333\">%.0f%%</text>\n",
                   L, Y(v), L + pw, Y(v), L - 6, Y(v) + 4, v * 100);
    }
    buf_printf(b,
               "</g>\n<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">time to the last "
               "byte (log scale)</text>\n"
               "<text transform=\"translate(16 %.1f) rotate(-90)\" text-anchor=\"middle\">"
               "share of the tier's requests</text>\n",
               L + pw / 2, H - 10, T + ph / 2);
    double ly = T + 10;
    for (int t = 0; t < EDGESTAT_TIERS; t++) {
        const struct edgestat_hist *h = &st->lat[t];
        double tot = 0;
        for (size_t k = 0; k < h->n; k++)
            tot += h->cnt[k];
        if (tot <= 0)
            continue;
        size_t first = h->n, last = 0;
        for (size_t k = 0; k < h->n; k++)
            if (h->cnt[k] > 0) {
                first = MC_MIN(first, k);
                last = k;
            }
        /* One bucket of zeros on each side, so a single bucket still draws a peak. */
        if (first > 0)
            first--;
        if (last + 1 < h->n)
            last++;
        buf_printf(b, "<g class=\"series\" data-tier=\"%s\" data-requests=\"%.0f\">\n",
                   edgestat_tier_name(t), tot);
        buf_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
                   tier_colors[t]);
        for (size_t k = first; k <= last; k++) {
            double x = MC_MAX(xmid(h, k), pow(10, lx0));
            buf_printf(b, "%s%.1f,%.1f", k == first ? "" : " ", X(x), Y(h->cnt[k] / tot));
        }
        char p50[16], p95[16], p99[16];
        look_fmt_secs(p50, sizeof(p50), edgestat_quantile(h, 0.50));
        look_fmt_secs(p95, sizeof(p95), edgestat_quantile(h, 0.95));
        look_fmt_secs(p99, sizeof(p99), edgestat_quantile(h, 0.99));
        buf_printf(b,
                   "\"/>\n<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"12\" fill=\"%s\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\">%s  n=%.0f</text>"
                   "<text x=\"%.1f\" y=\"%.1f\" fill=\"#555\">p50 %s  p95 %s  p99 %s</text>\n"
                   "</g>\n",
                   L + pw + 16, ly, tier_colors[t], L + pw + 34, ly + 10, edgestat_tier_name(t),
                   tot, L + pw + 34, ly + 26, p50, p95, p99);
        ly += 44;
    }
    buf_puts(b, "</svg>\n");
#undef X
#undef Y
}

void ctl_plot_usage(void)
{
    usage(stdout);
}

int ctl_plot_main(int argc, char **argv)
{
    struct look *l = mc_xcalloc(1, sizeof(*l));
    struct edgestat *st = mc_xcalloc(1, sizeof(*st));
    const char *out = NULL, *logf = NULL, *title = NULL;
    char err[512], tbuf[600];
    int rc = 0;

    for (int i = 1; i < argc; i++) {
        int f = look_flag(l, argc, argv, &i, err, sizeof(err));
        if (f < 0) {
            fprintf(stderr, "mlcdn ctl plot: %s\n", err);
            rc = 2;
            goto out;
        }
        if (f)
            continue;
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            goto out;
        } else if (v && !strcmp(argv[i], "--out")) {
            out = argv[++i];
        } else if (v && !strcmp(argv[i], "--access-log")) {
            logf = argv[++i];
        } else if (v && !strcmp(argv[i], "--title")) {
            title = argv[++i];
        } else {
            fprintf(stderr, "mlcdn ctl plot: unknown option '%s' (or its value is missing)\n",
                    argv[i]);
            usage(stderr);
            rc = 2;
            goto out;
        }
    }
    size_t ol = out ? strlen(out) : 0;
    if (!out || ol < 5 || strcmp(out + ol - 4, ".svg")) {
        fprintf(stderr, "mlcdn ctl plot: --out FILE.svg is required (SVG is the one format)\n");
        rc = 2;
        goto out;
    }
    if (logf && (l->n || l->router[0])) {
        fprintf(stderr, "mlcdn ctl plot: --access-log, or --router/--edges: one source\n");
        rc = 2;
        goto out;
    }
    if (logf) {
        if (read_log(logf, st, err, sizeof(err)) < 0) {
            fprintf(stderr, "mlcdn ctl plot: %s\n", err);
            rc = 1;
            goto out;
        }
        snprintf(tbuf, sizeof(tbuf), "Latency by tier: %.0f requests from %s", st->requests, logf);
    } else {
        if (look_resolve(l, err, sizeof(err)) < 0) {
            fprintf(stderr, "mlcdn ctl plot: %s\n", err);
            rc = 2;
            goto out;
        }
        size_t ok = look_sample(l);
        for (size_t i = 0; i < l->n; i++) {
            if (l->e[i].ok)
                edgestat_add(st, &l->e[i].cur);
            else
                fprintf(stderr, "mlcdn ctl plot: edge %s left out: %s\n", l->e[i].name,
                        l->e[i].err);
        }
        if (ok == 0) {
            fprintf(stderr, "mlcdn ctl plot: no edge answered\n");
            rc = 1;
            goto out;
        }
        snprintf(tbuf, sizeof(tbuf), "Latency by tier: %.0f requests on %zu edge%s", st->requests,
                 ok, ok == 1 ? "" : "s");
    }
    struct buf b;
    buf_init(&b, 16u << 20);
    plot_svg(st, title ? title : tbuf, &b);
    FILE *f = fopen(out, "w");
    int werr = !f || fwrite(b.data, 1, b.len, f) != b.len;
    if ((f && fclose(f) != 0) || werr) {
        fprintf(stderr, "mlcdn ctl plot: --out %s: %s\n", out, strerror(errno));
        rc = 1;
    }
    buf_fini(&b);
out:
    look_free(l);
    free(l);
    free(st);
    return rc;
}
