/* src/ctl/ctl_stats.c: `mlcdn ctl stats`: every edge read twice, --interval apart (rates
 * need two samples), then one table per edge, or JSON with --json.
 *
 * Rates (requests/s, bytes/s) are over the interval; shares per tier, latency quantiles,
 * byte and error totals are over the edge's counters since it started, as its /metrics
 * holds them (a restart between the samples reads as the later sample alone). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "core/mc.h"
#include "core/units.h"
#include "ctl/ctl_look.h"

static void usage(FILE *f)
{
    fprintf(f, "Usage: mlcdn ctl stats (--router URL | --edges URL,URL,...) [--json]\n"
               "                       [--interval T] [--token T] [--timeout T]\n\n"
               "  --router URL     the router's HTTP API; the edges are read from its /edges\n"
               "  --edges LIST     edges' admin URLs (http://HOST:PORT), comma-separated\n"
               "  --interval T     time between the two samples the rates come from (1s;\n"
               "                   0: one sample, no rates)\n"
               "  --json           one JSON document instead of the tables\n"
               "  --token T        admin token (default: $MLCDN_ADMIN_TOKEN)\n"
               "  --timeout T      per request (2s)\n");
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void print_table(const struct look_edge *e)
{
    struct edgestat w;
    double secs;
    char a[32], b[32], c[32], d[32], models[512];

    if (!e->ok) {
        printf("edge %s  %s  DOWN: %s\n\n", e->name, e->admin, e->err);
        return;
    }
    look_window(e, &w, &secs);
    const struct edgestat *t = &e->cur;
    look_fmt_bytes(a, sizeof(a), t->bytes_served);
    look_fmt_bytes(b, sizeof(b), edgestat_bytes_saved(t));
    look_fmt_bytes(c, sizeof(c), secs > 0 ? w.bytes_served / secs : 0);
    printf("edge %s  %s\n", e->name, e->admin);
    if (secs > 0)
        printf("  %.1f req/s  %s/s served", w.requests / secs, c);
    else
        printf("  - req/s");
    printf("  served %s  saved %s  5xx %.0f  origin errors %.0f\n", a, b, t->responses_5xx,
           t->origin_errors);
    look_models_text(e, models, sizeof(models));
    printf("  models %s\n", models);
    printf("  %-7s %10s %7s %8s %8s %8s %9s\n", "tier", "requests", "share", "p50", "p95", "p99",
           "bytes");
    for (int k = 0; k < EDGESTAT_TIERS; k++) {
        if (k == EDGESTAT_PARENT && t->tier_requests[k] == 0)
            continue; /* only edges with a parent tier show it */
        const struct edgestat_hist *h = &t->lat[k];
        look_fmt_secs(a, sizeof(a), edgestat_quantile(h, 0.50));
        look_fmt_secs(b, sizeof(b), edgestat_quantile(h, 0.95));
        look_fmt_secs(c, sizeof(c), edgestat_quantile(h, 0.99));
        look_fmt_bytes(d, sizeof(d), t->tier_bytes[k]);
        printf("  %-7s %10.0f %6.1f%% %8s %8s %8s %9s\n", edgestat_tier_name(k),
               t->tier_requests[k],
               t->requests > 0 ? 100.0 * t->tier_requests[k] / t->requests : 0.0, a, b, c, d);
    }
    printf("\n");
}

static int print_json(const struct look *l)
{
    struct buf out;
    struct edgestat total;
    double total_rps = 0;
    int err = 0;
    size_t up = 0;

    memset(&total, 0, sizeof(total));
    buf_init(&out, 256u << 20);
    err |= buf_puts(&out, "{\"edges\":[");
    for (size_t i = 0; i < l->n; i++) {
        const struct look_edge *e = &l->e[i];
        err |= buf_puts(&out, i ? ",{\"name\":" : "{\"name\":");
        err |= buf_json_str(&out, e->name, strlen(e->name));
        err |= buf_puts(&out, ",\"admin\":");
        err |= buf_json_str(&out, e->admin, strlen(e->admin));
        err |= buf_printf(&out, ",\"ok\":%s,\"error\":", e->ok ? "true" : "false");
        if (e->ok)
            err |= buf_puts(&out, "null");
        else
            err |= buf_json_str(&out, e->err, strlen(e->err));
        if (e->ok) {
            struct edgestat w;
            double secs;
            look_window(e, &w, &secs);
            err |= buf_puts(&out, ",\"window\":");
            err |= edgestat_json(&w, secs, 0, &out);
            err |= buf_puts(&out, ",\"totals\":");
            err |= edgestat_json(&e->cur, 0, 1, &out);
            edgestat_add(&total, &e->cur);
            if (secs > 0)
                total_rps += w.requests / secs;
            up++;
        }
        err |= buf_puts(&out, ",\"admin_models\":");
        char *m = e->models ? json_dumps(e->models, JSON_COMPACT) : NULL;
        err |= buf_puts(&out, m ? m : "null");
        free(m);
        err |= buf_puts(&out, "}");
    }
    err |= buf_printf(&out, "],\"edges_up\":%zu,\"requests_per_s\":%.3f,\"totals\":", up,
                      total_rps);
    err |= edgestat_json(&total, 0, 0, &out);
    err |= buf_puts(&out, "}\n");
    if (err) {
        fprintf(stderr, "mlcdn ctl stats: the JSON answer is too large\n");
        buf_fini(&out);
        return 1;
    }
    fwrite(out.data, 1, out.len, stdout);
    buf_fini(&out);
    return 0;
}

void ctl_stats_usage(void)
{
    usage(stdout);
}

int ctl_stats_main(int argc, char **argv)
{
    struct look *l = mc_xcalloc(1, sizeof(*l));
    char err[512];
    int json = 0, rc = 0;
    long interval = 1000;

    for (int i = 1; i < argc; i++) {
        int f = look_flag(l, argc, argv, &i, err, sizeof(err));
        if (f < 0) {
            fprintf(stderr, "mlcdn ctl stats: %s\n", err);
            rc = 2;
            goto out;
        }
        if (f)
            continue;
        if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "--interval") && i + 1 < argc) {
            uint64_t ms;
            if (units_parse_duration_ms(argv[++i], &ms) < 0 || ms > 600000) {
                fprintf(stderr, "mlcdn ctl stats: --interval: '%s' is not a duration up to 10m\n",
                        argv[i]);
                rc = 2;
                goto out;
            }
            interval = (long)ms;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            goto out;
        } else {
            fprintf(stderr, "mlcdn ctl stats: unknown option '%s'\n", argv[i]);
            usage(stderr);
            rc = 2;
            goto out;
        }
    }
    if (look_resolve(l, err, sizeof(err)) < 0) {
        fprintf(stderr, "mlcdn ctl stats: %s\n", err);
        rc = 2;
        goto out;
    }
    size_t ok = look_sample(l);
    if (interval > 0 && ok > 0) {
        sleep_ms(interval);
        ok = look_sample(l);
    }
    if (json) {
        rc = print_json(l);
    } else {
        for (size_t i = 0; i < l->n; i++)
            print_table(&l->e[i]);
    }
    /* Every edge unreadable is a failure a script must see; some down is a state shown. */
    if (rc == 0 && ok == 0) {
        fprintf(stderr, "mlcdn ctl stats: no edge answered\n");
        rc = 1;
    }
out:
    look_free(l);
    free(l);
    return rc;
}
