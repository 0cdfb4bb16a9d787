/* src/plan/plan_main.c: `mlcdn plan`, tier sizes and their cost from a trace.
 *
 * Loads the trace (CSV or the edge's access log), resolves the size lists, runs the
 * L1 x L2 grid (plan_mrc.c: exact, or SHARDS-sampled with several seeds), averages the
 * seeds, prices every pair and picks the cheapest that meets the target (plan_cost.c),
 * then prints a table or JSON and optionally writes the SVG plot (plan_svg.c). Everything
 * here is argument handling and output; single-threaded but for the replays. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "core/mc.h"
#include "core/units.h"
#include "plan/plan.h"
#include "plan/plan_int.h"

#define MAXSIZES 64

static const char *const tier_names[PLAN_NTIERS] = {"l1", "l2", "origin"};
/* Edge-side time to first byte, seconds, when neither --latency nor an access log gives
 * one: an L1 hit and an L2 hit as measured on an edge (docs/plan.md, "Latency"), and an
 * origin fetch across a continent (a round trip of the seed's RTT table). */
static const double default_lat[PLAN_NTIERS] = {20e-6, 200e-6, 0.1};

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: mlcdn plan --trace FILE [--format csv|access-log] [--policy NAME]\n"
            "                  [--l1 SIZES] [--l2 SIZES] [--prices l1=P,l2=P,origin=P]\n"
            "                  [--target-hit RATIO] [--latency l1=T,l2=T,origin=T]\n"
            "                  [--sample RATE|auto | --sample-objects N] [--seeds N]\n"
            "                  [--threads N] [--span DURATION]\n"
            "                  [--object-size SIZE] [--svg FILE] [--json]\n\n"
            "Replays a trace through the edge's eviction policies and tier rules (L1: objective\n"
            "objects; L2: objective bytes, every origin fill stored; an L2 object copied into L1\n"
            "on its --l2-admit-hits-th hit) at every pair of sizes, and recommends the pair\n"
            "with the lowest monthly cost that meets the hit target.\n\n"
            "Options:\n"
            "  --trace FILE        the trace\n"
            "  --format F          csv (t,key,size; t in seconds) or access-log (the edge's\n"
            "                      --access-log, combined or json lines) (default: csv)\n"
            "  --policy P          eviction policy of both tiers, or l1=P,l2=P (default: the\n"
            "                      edge's: l1=default,l2=sieve)\n"
            "  --l1 SIZES          L1 sizes, comma separated: bytes (64M, 2G) or a percentage of\n"
            "                      the trace's unique bytes (5%%) (default: "
            "0.5%%,1%%,2%%,5%%,10%%,20%%,50%%)\n"
            "  --l2 SIZES          L2 sizes, the same; 0 = no L2 (default: "
            "0,1%%,2%%,5%%,10%%,20%%,50%%,100%%)\n"
            "  --prices LIST       l1=, l2= per GiB-month of cache; origin= per GiB sent by the\n"
            "                      origin (default: l1=100,l2=10,origin=0.02)\n"
            "  --target-hit R      share of requests answered by L1 or L2 (default: 0.8)\n"
            "  --latency LIST      time to first byte per tier: l1=, l2=, origin= with us, ms or\n"
            "                      s (default: l1=20us,l2=200us,origin=100ms; with an access\n"
            "                      log, the log's own ttfb per level where it has 20 or more)\n"
            "  --sample R|auto     replay a spatial sample of rate R (0 < R <= 1; 1 = exact);\n"
            "                      auto: exact up to %d requests, else sampled (default: auto)\n"
            "  --sample-objects N  fixed-size sampling: the highest rate whose samples hold at\n"
            "                      most N objects (bounded memory; every size at that rate)\n"
            "  --seeds N           sampled replays with different hash seeds, whose spread\n"
            "                      gives the error estimate (default: 4; 1 when exact)\n"
            "  --threads N         replay threads (default: the online CPUs, at most 8)\n"
            "  --span DURATION     the time the trace covers (default: its last t minus its\n"
            "                      first); sets the request rate behind monthly egress\n"
            "  --object-size SIZE  size of every object of a trace without sizes (default: 64K)\n"
            "  --l2-admit-hits N   L2 hits before an object is copied into L1, as the edge's flag\n"
            "                      (default: 2)\n"
            "  --max-mem-object S  bodies larger than this skip L1, as the edge's flag\n"
            "                      (default: each L1 size / 16)\n"
            "  --svg FILE          write the curves and the chosen point as an SVG plot\n"
            "  --json              print JSON instead of a table\n",
            PLAN_EXACT_MAX);
}

static int split(char *s, char **v, int max)
{
    int n = 0;
    for (char *tok = strtok(s, ","); tok != NULL; tok = strtok(NULL, ",")) {
        if (n == max)
            return -1;
        v[n++] = tok;
    }
    return n;
}

/* "1.5", "0.2ms", "150us", "2s" -> seconds. */
static int parse_secs(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end), mul;

    if (end == s || !(v >= 0) || isinf(v))
        return -EINVAL;
    if (*end == '\0' || !strcmp(end, "s"))
        mul = 1;
    else if (!strcmp(end, "ms"))
        mul = 1e-3;
    else if (!strcmp(end, "us"))
        mul = 1e-6;
    else
        return -EINVAL;
    *out = v * mul;
    return 0;
}

static int parse_num(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !(v >= 0) || isinf(v))
        return -EINVAL;
    *out = v;
    return 0;
}

/* "l1=X,l2=Y,origin=Z" (any subset, any order) into vals[tier]; names the bad item. */
static int parse_tiers(const char *flag, const char *arg, int (*conv)(const char *, double *),
                       int nnames, double *vals)
{
    char *dup = mc_xstrdup(arg), *items[8];
    int n = split(dup, items, 8), rc = 0;

    if (n <= 0) {
        fprintf(stderr, "mlcdn plan: %s: empty or too long a list\n", flag);
        rc = -EINVAL;
    }
    for (int i = 0; i < n && rc == 0; i++) {
        char *eq = strchr(items[i], '=');
        int k;
        if (eq == NULL) {
            fprintf(stderr, "mlcdn plan: %s: '%s' is not NAME=VALUE\n", flag, items[i]);
            rc = -EINVAL;
            break;
        }
        *eq = '\0';
        for (k = 0; k < nnames; k++)
            if (!strcmp(items[i], tier_names[k]))
                break;
        if (k == nnames) {
            fprintf(stderr, "mlcdn plan: %s: '%s' is not a tier (known: l1 l2%s)\n", flag, items[i],
                    nnames > 2 ? " origin" : "");
            rc = -EINVAL;
        } else if (conv(eq + 1, &vals[k]) != 0) {
            fprintf(stderr, "mlcdn plan: %s: %s='%s' is not a %s\n", flag, items[i], eq + 1,
                    conv == parse_secs ? "duration (us, ms, s)" : "non-negative number");
            rc = -EINVAL;
        }
    }
    free(dup);
    return rc;
}

static int known_policy(const char *name)
{
    for (const char *const *n = cache_policy_names(); *n; n++)
        if (!strcmp(*n, name))
            return 1;
    return 0;
}

static int check_policy(const char *p)
{
    if (known_policy(p))
        return 0;
    fprintf(stderr, "mlcdn plan: --policy: '%s' is not a policy (known:", p);
    for (const char *const *n = cache_policy_names(); *n; n++)
        fprintf(stderr, " %s", *n);
    fprintf(stderr, ")\n");
    return -EINVAL;
}

static int parse_sizes(const char *flag, char *arg, struct plan__size *sz, int *n)
{
    char *items[MAXSIZES];
    int k = split(arg, items, MAXSIZES);

    if (k <= 0) {
        fprintf(stderr, "mlcdn plan: %s: empty list or more than %d sizes\n", flag, MAXSIZES);
        return -EINVAL;
    }
    for (int i = 0; i < k; i++)
        if (plan__parse_size(items[i], 1, &sz[i]) != 0) {
            fprintf(stderr,
                    "mlcdn plan: %s: '%s' is not a size (bytes as 64M or 2G, a percentage "
                    "as 5%%, or 0)\n",
                    flag, items[i]);
            return -EINVAL;
        }
    *n = k;
    return 0;
}

static void resolve(struct plan__size *sz, int n, uint64_t ws, uint64_t *out)
{
    for (int i = 0; i < n; i++) {
        out[i] = sz[i].percent > 0 ? (uint64_t)((double)ws * sz[i].percent / 100.0) : sz[i].units;
        if (sz[i].percent > 0 && out[i] == 0)
            out[i] = 1;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static const char *fmt_size(uint64_t b, char *buf)
{
    if (b == 0)
        return "0";
    return units_format_size(b, buf, 16);
}

/* Seconds as "0.10 ms" / "100 ms" / "1.20 s". */
static const char *fmt_secs(double s, char *buf, size_t n)
{
    if (s < 1e-3)
        snprintf(buf, n, "%.3f ms", s * 1e3);
    else if (s < 1)
        snprintf(buf, n, "%.2f ms", s * 1e3);
    else
        snprintf(buf, n, "%.2f s", s);
    return buf;
}

int plan_main(int argc, char **argv)
{
    const char *trace_path = NULL, *format = "csv", *svg_path = NULL;
    /* The edge's own defaults: --policy for L1, --disk-policy for L2. */
    const char *l1_policy = "default", *l2_policy = "sieve";
    char *l1_arg = NULL, *l2_arg = NULL, *policy_arg = NULL;
    char *sample_arg = NULL, *span_arg = NULL, *objsize_arg = NULL, *smax_arg = NULL;
    struct plan__size l1s[MAXSIZES], l2s[MAXSIZES];
    uint64_t l1[MAXSIZES], l2[MAXSIZES], object_size = 64 * 1024, sample_objects = 0;
    uint64_t max_mem = 0;    /* --max-mem-object; 0: the edge's default, --mem / 16 */
    unsigned admit_hits = 2; /* --l2-admit-hits, the edge's default */
    int nl1 = 0, nl2 = 0, json = 0, seeds = 0, threads = 0, rc = 0, met = 0;
    int lat_from_log[PLAN_NTIERS] = {0}, lat_given[PLAN_NTIERS] = {0};
    double prices3[3] = {100, 10, 0.02}, target = 0.8, rate = -1, span = -1;
    double lat_val[PLAN_NTIERS] = {-1, -1, -1};
    struct plan_lat_samples samples = {0};
    struct plan_trace *t = NULL;
    struct plan__mrc m = {0};
    struct plan__cell *cells = NULL;
    double *l1_mean = NULL, *l1_err = NULL, *l1_bmean = NULL, *o_mean = NULL, *o_err = NULL;
    double *o_bmean = NULL, *o_berr = NULL, *l1_berr = NULL, *c_mean = NULL, *c_bmean = NULL;
    double max_err = 0;
    char err[512];
    long ncpu;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        static const char *const takes[] =
            {"--trace",         "--format",        "--policy", "--l1",          "--l2",
             "--prices",        "--latency",       "--sample", "--seeds",       "--target-hit",
             "--svg",           "--threads",       "--span",   "--object-size", "--sample-objects",
             "--l2-admit-hits", "--max-mem-object"};
        for (size_t k = 0; k < MC_ARRAY_SIZE(takes); k++)
            if (!strcmp(a, takes[k])) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "mlcdn plan: %s: missing value\n", a);
                    rc = 2;
                    goto out;
                }
                val = argv[++i];
            }
        if (!strcmp(a, "--trace"))
            trace_path = val;
        else if (!strcmp(a, "--format"))
            format = val;
        else if (!strcmp(a, "--policy"))
            free(policy_arg), policy_arg = mc_xstrdup(val);
        else if (!strcmp(a, "--l1"))
            free(l1_arg), l1_arg = mc_xstrdup(val);
        else if (!strcmp(a, "--l2"))
            free(l2_arg), l2_arg = mc_xstrdup(val);
        else if (!strcmp(a, "--sample"))
            sample_arg = (char *)val;
        else if (!strcmp(a, "--sample-objects"))
            smax_arg = (char *)val;
        else if (!strcmp(a, "--span"))
            span_arg = (char *)val;
        else if (!strcmp(a, "--object-size"))
            objsize_arg = (char *)val;
        else if (!strcmp(a, "--svg"))
            svg_path = val;
        else if (!strcmp(a, "--max-mem-object")) {
            if (units_parse_size(val, &max_mem) != 0 || max_mem == 0) {
                fprintf(stderr, "mlcdn plan: --max-mem-object: '%s' is not a size (64K, 1M)\n",
                        val);
                rc = 2;
                goto out;
            }
        } else if (!strcmp(a, "--l2-admit-hits")) {
            char *end;
            long v = strtol(val, &end, 10);
            /* The edge's own range for the flag. */
            if (end == val || *end != '\0' || v < 1 || v > 1000) {
                fprintf(stderr, "mlcdn plan: --l2-admit-hits: '%s' is out of range (1..1000)\n",
                        val);
                rc = 2;
                goto out;
            }
            admit_hits = (unsigned)v;
        } else if (!strcmp(a, "--prices")) {
            if (parse_tiers("--prices", val, parse_num, 3, prices3) != 0) {
                rc = 2;
                goto out;
            }
        } else if (!strcmp(a, "--latency")) {
            double v[PLAN_NTIERS] = {-1, -1, -1};
            if (parse_tiers("--latency", val, parse_secs, PLAN_NTIERS, v) != 0) {
                rc = 2;
                goto out;
            }
            for (int k = 0; k < PLAN_NTIERS; k++)
                if (v[k] >= 0)
                    lat_val[k] = v[k], lat_given[k] = 1;
        } else if (!strcmp(a, "--target-hit")) {
            if (parse_num(val, &target) != 0 || target > 1) {
                fprintf(stderr, "mlcdn plan: --target-hit: '%s' is not a ratio in [0, 1]\n", val);
                rc = 2;
                goto out;
            }
        } else if (!strcmp(a, "--seeds") || !strcmp(a, "--threads")) {
            char *end;
            long v = strtol(val, &end, 10);
            if (end == val || *end != '\0' || v < 1 || v > 64) {
                fprintf(stderr, "mlcdn plan: %s: '%s' is not a count from 1 to 64\n", a, val);
                rc = 2;
                goto out;
            }
            *(a[2] == 's' ? &seeds : &threads) = (int)v;
        } else if (!strcmp(a, "--json"))
            json = 1;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            goto out;
        } else {
            fprintf(stderr, "mlcdn plan: unknown option '%s'\n", a);
            usage(stderr);
            rc = 2;
            goto out;
        }
    }
    if (trace_path == NULL) {
        fprintf(stderr, "mlcdn plan: --trace is required\n");
        usage(stderr);
        rc = 2;
        goto out;
    }
    if (strcmp(format, "csv") != 0 && strcmp(format, "access-log") != 0) {
        fprintf(stderr, "mlcdn plan: --format: '%s' is not a format (known: csv access-log)\n",
                format);
        rc = 2;
        goto out;
    }
    if (policy_arg != NULL) {
        if (strchr(policy_arg, '=') == NULL) {
            l1_policy = l2_policy = policy_arg;
        } else {
            char *items[4];
            int n = split(policy_arg, items, 4);
            for (int k = 0; k < n; k++) {
                if (!strncmp(items[k], "l1=", 3))
                    l1_policy = items[k] + 3;
                else if (!strncmp(items[k], "l2=", 3))
                    l2_policy = items[k] + 3;
                else {
                    fprintf(stderr, "mlcdn plan: --policy: '%s' is not NAME or l1=NAME,l2=NAME\n",
                            items[k]);
                    rc = 2;
                    goto out;
                }
            }
        }
        if (check_policy(l1_policy) != 0 || check_policy(l2_policy) != 0) {
            rc = 2;
            goto out;
        }
    }
    if (l1_arg == NULL)
        l1_arg = mc_xstrdup("0.5%,1%,2%,5%,10%,20%,50%");
    if (l2_arg == NULL)
        l2_arg = mc_xstrdup("0,1%,2%,5%,10%,20%,50%,100%");
    if (parse_sizes("--l1", l1_arg, l1s, &nl1) != 0 ||
        parse_sizes("--l2", l2_arg, l2s, &nl2) != 0) {
        rc = 2;
        goto out;
    }
    if (sample_arg != NULL && strcmp(sample_arg, "auto") != 0) {
        if (parse_num(sample_arg, &rate) != 0 || !(rate > 0) || rate > 1) {
            fprintf(stderr, "mlcdn plan: --sample: '%s' is not a rate in (0, 1] or auto\n",
                    sample_arg);
            rc = 2;
            goto out;
        }
    }
    if (smax_arg != NULL) {
        char *end;
        unsigned long long v = strtoull(smax_arg, &end, 10);
        /* Below a few hundred objects a sample says little about any cache size. */
        if (end == smax_arg || *end != '\0' || v < 100 || v > UINT32_MAX) {
            fprintf(stderr, "mlcdn plan: --sample-objects: '%s' is not a count from 100 to %u\n",
                    smax_arg, UINT32_MAX);
            rc = 2;
            goto out;
        }
        if (sample_arg != NULL) {
            fprintf(stderr, "mlcdn plan: --sample-objects: give it or --sample, not both\n");
            rc = 2;
            goto out;
        }
        sample_objects = v;
    }
    if (span_arg != NULL) {
        uint64_t ms;
        if (units_parse_duration_ms(span_arg, &ms) != 0 || ms == 0) {
            fprintf(stderr, "mlcdn plan: --span: '%s' is not a duration (30s, 2h, 7d)\n", span_arg);
            rc = 2;
            goto out;
        }
        span = (double)ms / 1000.0;
    }
    if (objsize_arg != NULL &&
        (units_parse_size(objsize_arg, &object_size) != 0 || object_size == 0)) {
        fprintf(stderr, "mlcdn plan: --object-size: '%s' is not a size (64K, 1M)\n", objsize_arg);
        rc = 2;
        goto out;
    }

    if (!strcmp(format, "csv"))
        rc = plan_trace_load_csv(trace_path, &t, err, sizeof(err));
    else
        rc = plan_trace_load_accesslog(trace_path, &samples, &t, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "mlcdn plan: --trace: %s\n", err);
        rc = 1;
        goto out;
    }
    if (!t->sized) {
        /* A trace without sizes: every object weighs --object-size, so capacities, prices
         * and bandwidth stay in bytes (by-bytes and by-objects replays then agree). */
        for (uint64_t i = 0; i < t->nreq; i++)
            t->req_size[i] = object_size;
        t->req_bytes = t->nreq * object_size;
        t->unique_bytes = t->nobj * object_size;
    }
    if (span < 0) {
        if (!t->timed || !(t->t_max > t->t_min)) {
            fprintf(stderr,
                    "mlcdn plan: --trace: %s: all requests have the same time; say how long it "
                    "covers with --span\n",
                    trace_path);
            rc = 2;
            goto out;
        }
        span = t->t_max - t->t_min;
    }
    resolve(l1s, nl1, t->unique_bytes, l1);
    resolve(l2s, nl2, t->unique_bytes, l2);

    /* Latencies: a flag wins, then the log's own measurements, then the defaults. */
    for (int k = 0; k < PLAN_NTIERS; k++) {
        if (lat_given[k])
            continue;
        if (samples.n[k] >= 20) {
            qsort(samples.v[k], samples.n[k], sizeof(double), cmp_double);
            lat_from_log[k] = 1;
        } else {
            lat_val[k] = default_lat[k];
        }
    }

    {
        struct plan__mrc_opts o = {.policy = {l1_policy, l2_policy},
                                   .l1 = l1,
                                   .nl1 = nl1,
                                   .l2 = l2,
                                   .nl2 = nl2,
                                   .max_mem = max_mem,
                                   .admit_hits = admit_hits};
        if (seeds == 0)
            seeds = 4;
        if (sample_objects > 0) {
            rate = plan__fixed_rate(t, sample_objects, seeds);
            o.fixed = 1;
        } else if (rate < 0) {
            rate = plan__base_rate(t);
        }
        o.rate = rate;
        o.seeds = rate >= 1.0 ? 1 : seeds;
        ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        o.threads = threads > 0 ? threads : (int)MC_MAX(1, MC_MIN(ncpu, 8));
        threads = o.threads;
        rc = plan__mrc_run(t, &o, &m);
        if (rc != 0) {
            fprintf(stderr, "mlcdn plan: replay failed: %s\n", strerror(-rc));
            rc = 1;
            goto out;
        }
    }

    /* Average the seeds. */
    {
        size_t n1 = (size_t)nl1, n2 = n1 * (size_t)nl2;
        double bytes_per_s = (double)t->req_bytes / span, ignored;
        l1_mean = mc_xcalloc(n1, sizeof(double));
        l1_err = mc_xcalloc(n1, sizeof(double));
        l1_bmean = mc_xcalloc(n1, sizeof(double));
        o_mean = mc_xcalloc(n2, sizeof(double));
        o_err = mc_xcalloc(n2, sizeof(double));
        o_bmean = mc_xcalloc(n2, sizeof(double));
        o_berr = mc_xcalloc(n2, sizeof(double));
        c_mean = mc_xcalloc(n2, sizeof(double));
        c_bmean = mc_xcalloc(n2, sizeof(double));
        l1_berr = mc_xcalloc(n1, sizeof(double));
        cells = mc_xcalloc(n2, sizeof(*cells));
        for (size_t i = 0; i < n1; i++) {
            plan__seed_stat(m.l1_miss, m.seeds, n1, i, m.l1_rate[i], &l1_mean[i], &l1_err[i]);
            plan__seed_stat(m.l1_bmiss, m.seeds, n1, i, m.l1_rate[i], &l1_bmean[i], &l1_berr[i]);
            max_err = MC_MAX(max_err, MC_MAX(l1_err[i], l1_berr[i]));
        }
        for (size_t k = 0; k < n2; k++) {
            plan__seed_stat(m.o_miss, m.seeds, n2, k, m.o_rate[k], &o_mean[k], &o_err[k]);
            plan__seed_stat(m.o_bmiss, m.seeds, n2, k, m.o_rate[k], &o_bmean[k], &o_berr[k]);
            plan__seed_stat(m.c_l1miss, m.seeds, n2, k, m.o_rate[k], &c_mean[k], &ignored);
            plan__seed_stat(m.c_l1bmiss, m.seeds, n2, k, m.o_rate[k], &c_bmean[k], &ignored);
            max_err = MC_MAX(max_err, MC_MAX(o_err[k], o_berr[k]));
            cells[k].l1 = l1[k / (size_t)nl2];
            cells[k].l2 = l2[k % (size_t)nl2];
            cells[k].hit = 1.0 - o_mean[k];
            cells[k].origin_bytes_per_s = o_bmean[k] * bytes_per_s;
        }
    }

    {
        struct plan__prices pr = {prices3[0], prices3[1], prices3[2]};
        size_t n2 = (size_t)nl1 * (size_t)nl2;
        size_t best = plan__choose(cells, n2, &pr, target, &met);
        size_t bi = best / (size_t)nl2, bj = best % (size_t)nl2;
        struct plan__cost cost;
        struct plan__lat lat[PLAN_NTIERS];
        double w[PLAN_NTIERS], lmean, p50, p99;
        double req_rate = (double)t->nreq / span;
        char b1[16], b2[16], s1[32], s2[32], s3[32];

        plan__cost_of(&cells[best], &pr, &cost);
        for (int k = 0; k < PLAN_NTIERS; k++) {
            if (lat_from_log[k])
                lat[k] = (struct plan__lat){samples.v[k], samples.n[k]};
            else
                lat[k] = (struct plan__lat){&lat_val[k], 1};
        }
        /* The pair's own L1 hits: L2 hits copied into L1 make them differ from the L1 curve. */
        w[PLAN_TIER_L1] = 1.0 - c_mean[best];
        w[PLAN_TIER_ORIGIN] = o_mean[best];
        w[PLAN_TIER_L2] = MC_MAX(0.0, c_mean[best] - o_mean[best]);
        lmean = plan__lat_mean(lat, w);
        p50 = plan__lat_quantile(lat, w, 0.5);
        p99 = plan__lat_quantile(lat, w, 0.99);

        if (svg_path != NULL) {
            struct plan__svg sv = {.l1 = l1,
                                   .nl1 = nl1,
                                   .l1_miss = l1_mean,
                                   .l1_err = l1_err,
                                   .l2 = l2,
                                   .nl2 = nl2,
                                   .chosen_l1 = (int)bi,
                                   .chosen_l2 = (int)bj,
                                   .target = target};
            sv.l2_miss = o_mean + bi * (size_t)nl2;
            sv.l2_err = o_err + bi * (size_t)nl2;
            sv.l2_bmiss = o_bmean + bi * (size_t)nl2;
            sv.l2_berr = o_berr + bi * (size_t)nl2;
            rc = plan__svg_write(svg_path, &sv, err, sizeof(err));
            if (rc != 0) {
                fprintf(stderr, "mlcdn plan: --svg: %s\n", err);
                rc = 1;
                goto out;
            }
        }

        if (json) {
            json_t *doc = json_object(), *jl1 = json_array(), *jgrid = json_array(), *jlat;
            json_object_set_new(doc, "trace", json_string(trace_path));
            json_object_set_new(doc, "format", json_string(format));
            json_object_set_new(doc, "requests", json_integer((json_int_t)t->nreq));
            json_object_set_new(doc, "skipped_lines", json_integer((json_int_t)t->skipped));
            json_object_set_new(doc, "objects", json_integer((json_int_t)t->nobj));
            json_object_set_new(doc, "unique_bytes", json_integer((json_int_t)t->unique_bytes));
            json_object_set_new(doc, "bytes", json_integer((json_int_t)t->req_bytes));
            json_object_set_new(doc, "sized", json_boolean(t->sized));
            if (!t->sized)
                json_object_set_new(doc, "object_size", json_integer((json_int_t)object_size));
            json_object_set_new(doc, "span_s", json_real(span));
            json_object_set_new(doc, "requests_per_s", json_real(req_rate));
            json_object_set_new(doc, "policy",
                                json_pack("{s:s, s:s}", "l1", l1_policy, "l2", l2_policy));
            json_object_set_new(
                doc, "sampling",
                json_pack("{s:b, s:s, s:I, s:f, s:i, s:f, s:s, s:f, s:i, s:i, s:I}", "exact",
                          rate >= 1.0, "mode",
                          rate >= 1.0          ? "exact"
                          : sample_objects > 0 ? "fixed-size"
                                               : "fixed-rate",
                          "max_objects", (json_int_t)sample_objects, "rate", rate, "seeds", m.seeds,
                          "max_error", max_err, "error_method",
                          "2 x standard error of the mean over the seeds (0: exact)", "replay_s",
                          m.seconds, "threads", threads, "replays", m.replays, "sampled_requests",
                          (json_int_t)m.sampled_reqs));
            json_object_set_new(doc, "prices",
                                json_pack("{s:f, s:f, s:f, s:s}", "l1", prices3[0], "l2",
                                          prices3[1], "origin", prices3[2], "units",
                                          "l1/l2 per GiB-month, origin per GiB sent"));
            jlat = json_object();
            for (int k = 0; k < PLAN_NTIERS; k++) {
                double v = lat_from_log[k] ? samples.v[k][samples.n[k] / 2] : lat_val[k];
                json_object_set_new(jlat, tier_names[k],
                                    json_pack("{s:f, s:s}", "p50_s", v, "source",
                                              lat_given[k]      ? "flag"
                                              : lat_from_log[k] ? "access log"
                                                                : "default"));
            }
            json_object_set_new(doc, "latency", jlat);
            json_object_set_new(doc, "target_hit", json_real(target));
            for (int i = 0; i < nl1; i++) {
                json_t *pt = json_pack("{s:s, s:I, s:f, s:f, s:f, s:f, s:f}", "size", l1s[i].text,
                                       "bytes", (json_int_t)l1[i], "miss_ratio", l1_mean[i],
                                       "byte_miss_ratio", l1_bmean[i], "error", l1_err[i],
                                       "byte_error", l1_berr[i], "rate", m.l1_rate[i]);
                json_object_set_new(pt, "coarse",
                                    json_boolean(plan__coarse(t, m.l1_rate[i], l1[i])));
                json_array_append_new(jl1, pt);
            }
            json_object_set_new(doc, "l1", jl1);
            for (size_t k = 0; k < (size_t)nl1 * (size_t)nl2; k++) {
                struct plan__cost c;
                size_t i = k / (size_t)nl2, j = k % (size_t)nl2;
                double l2_req = c_mean[k], l2_breq = c_bmean[k];
                plan__cost_of(&cells[k], &pr, &c);
                json_t *pt =
                    json_pack("{s:I, s:I, s:s, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}",
                              "l1_bytes", (json_int_t)l1[i], "l2_bytes", (json_int_t)l2[j],
                              "l2_size", l2s[j].text, "l2_miss_ratio",
                              l2_req > 0 ? o_mean[k] / l2_req : 0.0, "l2_byte_miss_ratio",
                              l2_breq > 0 ? o_bmean[k] / l2_breq : 0.0, "hit_ratio", cells[k].hit,
                              "byte_hit_ratio", 1.0 - o_bmean[k], "error", o_err[k], "byte_error",
                              o_berr[k], "origin_bytes_per_s", cells[k].origin_bytes_per_s,
                              "monthly_cost", c.total, "rate", m.o_rate[k], "l1_hit_ratio",
                              1.0 - c_mean[k]);
                json_object_set_new(pt, "coarse",
                                    json_boolean(plan__coarse(t, m.o_rate[k], l1[i]) ||
                                                 plan__coarse(t, m.o_rate[k], l2[j])));
                json_array_append_new(jgrid, pt);
            }
            json_object_set_new(doc, "grid", jgrid);
            json_object_set_new(
                doc, "recommendation",
                json_pack("{s:b, s:I, s:I, s:f, s:f, s:f, s:f, s:{s:f, s:f, s:f, s:f}, s:f, s:f, "
                          "s:f, s:f, s:f}",
                          "met_target", met, "l1_bytes", (json_int_t)l1[bi], "l2_bytes",
                          (json_int_t)l2[bj], "hit_ratio", cells[best].hit, "l1_hit_ratio",
                          w[PLAN_TIER_L1], "l2_hit_ratio", w[PLAN_TIER_L2], "byte_hit_ratio",
                          1.0 - o_bmean[best], "monthly_cost", "l1", cost.l1, "l2", cost.l2,
                          "origin", cost.origin, "total", cost.total, "origin_gib_per_month",
                          cost.origin_gib_month, "origin_bits_per_s",
                          cells[best].origin_bytes_per_s * 8, "latency_mean_s", lmean,
                          "latency_p50_s", p50, "latency_p99_s", p99));
            json_dumpf(doc, stdout, JSON_INDENT(2));
            printf("\n");
            json_decref(doc);
        } else {
            printf("trace %s (%s): %llu requests, %llu objects, %s unique bytes", trace_path,
                   format, (unsigned long long)t->nreq, (unsigned long long)t->nobj,
                   fmt_size(t->unique_bytes, b1));
            if (t->skipped)
                printf(", %llu lines skipped", (unsigned long long)t->skipped);
            if (!t->sized)
                printf(" (no sizes: every object counted as %s, --object-size)",
                       fmt_size(object_size, b2));
            printf("\nspan %.0f s: %.2f requests/s, %s/s requested\n", span, req_rate,
                   fmt_size((uint64_t)((double)t->req_bytes / span), b1));
            printf("policy: L1 %s (objective objects), L2 %s (objective bytes, stores every "
                   "origin fill); --l2-admit-hits %u, --max-mem-object ",
                   l1_policy, l2_policy, admit_hits);
            if (max_mem)
                printf("%s\n", fmt_size(max_mem, b1));
            else
                printf("L1 / 16\n");
            if (rate >= 1.0)
                printf("replay: exact, %.2f s on %d threads\n", m.seconds, threads);
            else if (sample_objects > 0)
                printf("replay: fixed-size SHARDS samples of at most %llu objects (rate %.4f), "
                       "%d seeds, %.2f s on %d threads; sampling error at most %.4f (2 "
                       "standard errors over the seeds)\n",
                       (unsigned long long)sample_objects, rate, m.seeds, m.seconds, threads,
                       max_err);
            else
                printf("replay: SHARDS samples from rate %.4f (higher for small caches, column "
                       "rate), %d seeds, %.2f s on %d threads; sampling error at most %.4f (2 "
                       "standard errors over the seeds)\n",
                       rate, m.seeds, m.seconds, threads, max_err);
            printf("\nL1 curve\n%-8s %10s %10s %10s %8s %8s\n", "size", "bytes", "miss",
                   "byte_miss", "error", "rate");
            for (int i = 0; i < nl1; i++)
                printf("%-8s %10s %10.4f %10.4f %8.4f %8.4f%s%s\n", l1s[i].text,
                       fmt_size(l1[i], b1), l1_mean[i], l1_bmean[i], l1_err[i], m.l1_rate[i],
                       plan__coarse(t, m.l1_rate[i], l1[i]) ? "*" : "",
                       (size_t)i == bi ? "  <- chosen" : "");
            printf("\nL2 curve behind L1 %s (miss: of the requests L2 sees; hit: of all)\n",
                   fmt_size(l1[bi], b1));
            printf("%-8s %10s %10s %10s %8s %8s %8s %12s\n", "size", "bytes", "miss", "byte_miss",
                   "hit", "byte_hit", "error", "cost/month");
            for (int j = 0; j < nl2; j++) {
                size_t k = bi * (size_t)nl2 + (size_t)j;
                struct plan__cost c;
                plan__cost_of(&cells[k], &pr, &c);
                printf("%-8s %10s %10.4f %10.4f %8.4f %8.4f %8.4f %12.2f%s\n", l2s[j].text,
                       fmt_size(l2[j], b1), c_mean[k] > 0 ? o_mean[k] / c_mean[k] : 0.0,
                       c_bmean[k] > 0 ? o_bmean[k] / c_bmean[k] : 0.0, cells[k].hit,
                       1.0 - o_bmean[k], o_err[k], c.total, (size_t)j == bj ? "  <- chosen" : "");
            }
            for (int i = 0; i < nl1; i++)
                if (plan__coarse(t, m.l1_rate[i], l1[i])) {
                    printf("* fewer than %d objects fit the sampled cache: the point may be off by "
                           "more than its error (raise --sample-objects)\n",
                           PLAN_SAMPLE_MIN_OBJS);
                    break;
                }
            printf("\nrecommendation (target hit ratio %.3f): %s\n", target,
                   met ? "the cheapest pair that meets it"
                       : "NO pair meets it; the highest hit ratio is shown: give larger sizes");
            printf("  L1 %s, L2 %s: hit ratio %.4f (L1 %.4f, L2 %.4f), byte hit ratio %.4f\n",
                   fmt_size(l1[bi], b1), fmt_size(l2[bj], b2), cells[best].hit, w[PLAN_TIER_L1],
                   w[PLAN_TIER_L2], 1.0 - o_bmean[best]);
            printf("  monthly cost %.2f = L1 %.2f + L2 %.2f + origin %.2f (prices: l1=%g, l2=%g "
                   "per GiB-month; origin=%g per GiB sent)\n",
                   cost.total, cost.l1, cost.l2, cost.origin, prices3[0], prices3[1], prices3[2]);
            printf("  origin egress %.1f GiB/month (%.3f Mbit/s at %.2f requests/s)\n",
                   cost.origin_gib_month, cells[best].origin_bytes_per_s * 8 / 1e6, req_rate);
            printf("  latency (time to first byte at the edge): mean %s, p50 %s, p99 %s\n",
                   fmt_secs(lmean, s1, sizeof(s1)), fmt_secs(p50, s2, sizeof(s2)),
                   fmt_secs(p99, s3, sizeof(s3)));
            printf("  tier latencies:");
            for (int k = 0; k < PLAN_NTIERS; k++) {
                if (lat_from_log[k])
                    printf(" %s from the log (%zu answers, median %s)", tier_names[k], samples.n[k],
                           fmt_secs(samples.v[k][samples.n[k] / 2], s1, sizeof(s1)));
                else
                    printf(" %s %s (%s)", tier_names[k], fmt_secs(lat_val[k], s1, sizeof(s1)),
                           lat_given[k] ? "--latency" : "default");
                printf(k + 1 < PLAN_NTIERS ? "," : "\n");
            }
        }
    }
    rc = 0;
out:
    free(l1_arg);
    free(l2_arg);
    free(policy_arg);
    free(l1_mean);
    free(l1_err);
    free(l1_bmean);
    free(o_mean);
    free(o_err);
    free(o_bmean);
    free(o_berr);
    free(c_mean);
    free(c_bmean);
    free(l1_berr);
    free(cells);
    plan__mrc_fini(&m);
    plan_lat_samples_fini(&samples);
    plan_trace_free(&t);
    return rc;
}
