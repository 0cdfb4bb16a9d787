/* src/plan/plan_cachesim.c: `mlcdn cachesim`, a trace replayed through the edge's policies.
 *
 * plan_cachesim_run() is the store loop of the edge reduced to its bookkeeping: an array of
 * struct cache_pnode indexed by the trace's dense object ids stands in for the store's
 * hash table, and every decision (admission, hits, victims) is made by the same
 * cache_policy_* calls the L1 makes under its shard lock. There is no second
 * implementation of any policy here; Belady (plan_belady.c) is the only simulator-side
 * algorithm, as it needs the future. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cache/cache_policy.h"
#include "core/mc.h"
#include "core/units.h"
#include "plan/plan.h"
#include "plan/plan_int.h"

int plan_cachesim_replay(const struct plan_trace *t, const char *policy, uint64_t capacity,
                         int by_objects, enum cache_policy_objective objective, uint64_t *miss_idx,
                         struct plan_sim_result *out)
{
    struct cache_policy *p = NULL;
    struct cache_pnode *nodes, *v;
    uint64_t *cur; /* size of the resident copy; 0 = not resident */
    struct plan_sim_result r = {0};
    uint64_t t0;
    int rc;

    if (capacity == 0) {
        /* No cache at all: every request misses (what the tier's absence means). */
        rc = cache_policy_new(policy, 1, &p);
        if (rc != 0)
            return rc;
        cache_policy_free(&p);
        for (uint64_t i = 0; i < t->nreq; i++)
            if (miss_idx != NULL)
                miss_idx[i] = i;
        r.requests = r.misses = t->nreq;
        r.bytes = r.miss_bytes = t->req_bytes;
        *out = r;
        return 0;
    }
    rc = cache_policy_new(policy, capacity, &p);
    if (rc != 0)
        return rc;
    cache_policy_set_objective(p, objective);
    nodes = mc_xcalloc(t->nobj, sizeof(*nodes));
    cur = mc_xcalloc(t->nobj, sizeof(*cur));
    t0 = units_now_ns();
    for (uint64_t i = 0; i < t->nreq; i++) {
        uint32_t o = t->req_obj[i];
        uint64_t sz = by_objects ? 1 : t->req_size[i];

        if (cur[o] != 0) {
            if (MC_LIKELY(cur[o] == sz)) {
                cache_policy_hit(p, &nodes[o]);
                continue;
            }
            /* A new size is a new version of the object: the store replaces it. */
            cache_policy_remove(p, &nodes[o]);
            cur[o] = 0;
        }
        if (miss_idx != NULL)
            miss_idx[r.misses] = i;
        r.misses++;
        r.miss_bytes += t->req_size[i];
        if (sz == 0 ||
            cache_policy_insert(p, &nodes[o], t->obj_hash[o], sz) != CACHE_POLICY_ADMITTED)
            continue;
        cur[o] = sz;
        while ((v = cache_policy_victim(p)) != NULL)
            cur[v - nodes] = 0;
    }
    r.seconds = (double)(units_now_ns() - t0) / 1e9;
    r.requests = t->nreq;
    r.bytes = t->req_bytes;
    r.meta_bytes = cache_policy_meta_bytes(p);
    r.meta_objects = cache_policy_count(p);
    for (uint64_t o = 0; o < t->nobj; o++)
        if (cur[o] != 0)
            cache_policy_remove(p, &nodes[o]);
    MC_ASSERT(cache_policy_used(p) == 0);
    cache_policy_free(&p);
    free(nodes);
    free(cur);
    *out = r;
    return 0;
}

int plan_cachesim_run(const struct plan_trace *t, const char *policy, uint64_t capacity,
                      int by_objects, enum cache_policy_objective objective,
                      struct plan_sim_result *out)
{
    return plan_cachesim_replay(t, policy, capacity, by_objects, objective, NULL, out);
}

/* ---- the subcommand ---- */

#define MAXLIST 64

static const char *const all_policies[] = {"lru",    "fifo",     "clock",   "sieve",
                                           "s3fifo", "wtinylfu", "default", "belady"};

static void usage(FILE *f)
{
    fprintf(f, "Usage: mlcdn cachesim --trace FILE [--format csv] [--policy NAME[,NAME...]]\n"
               "                      --size SIZE[,SIZE...] [--by-objects]\n"
               "                      [--objective objects|bytes] [--json]\n\n"
               "Replays a t,key,size trace through the edge's eviction policies and prints the\n"
               "object and byte miss ratios (misses/requests, missed bytes/requested bytes),\n"
               "the replay speed, and the policy's metadata per resident object at the end\n"
               "(its node in each object, plus ghosts and frequency sketch; meta_B/obj).\n\n"
               "Options:\n"
               "  --trace FILE     the trace (CSV: t,key,size; header line optional)\n"
               "  --format csv     trace format (only csv)\n"
               "  --policy LIST    policies, comma separated, or 'all' (default: all):\n"
               "                   ");
    for (const char *const *n = cache_policy_names(); *n; n++)
        fprintf(f, "%s, ", *n);
    fprintf(f,
            "belady (offline reference)\n"
            "  --size LIST      cache sizes: bytes (64M, 1G, 123456) or a percentage of the\n"
            "                   trace's working set (1%%: of its unique bytes, or of its unique\n"
            "                   keys with --by-objects or when the trace has no sizes)\n"
            "  --by-objects     count objects instead of bytes\n"
            "  --objective OBJ  what the policies optimise: objects (object hits, the\n"
            "                   default, as the memory tier) or bytes (byte hits, as the\n"
            "                   disk tier); both miss ratios are printed either way\n"
            "  --json           print JSON instead of a table\n");
}

static int known_policy(const char *name)
{
    if (!strcmp(name, "belady"))
        return 1;
    for (const char *const *n = cache_policy_names(); *n; n++)
        if (!strcmp(*n, name))
            return 1;
    return 0;
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

int plan__parse_size(const char *s, int allow_zero, struct plan__size *out)
{
    size_t len = strlen(s);

    out->text = s;
    out->percent = -1;
    if (len > 1 && s[len - 1] == '%') {
        char *end;
        double v = strtod(s, &end);
        if (end != s + len - 1 || !(v > 0) || v > 100)
            return -EINVAL;
        out->percent = v;
        return 0;
    }
    if (allow_zero && !strcmp(s, "0")) {
        out->units = 0;
        return 0;
    }
    if (units_parse_size(s, &out->units) != 0 || out->units == 0)
        return -EINVAL;
    return 0;
}

int cachesim_main(int argc, char **argv)
{
    const char *trace_path = NULL, *format = "csv";
    char *policy_arg = NULL, *size_arg = NULL;
    char *pol[MAXLIST], *szs[MAXLIST];
    struct plan__size sizes[MAXLIST];
    int npol, nsz, by_objects = 0, json = 0, rc = 0;
    enum cache_policy_objective objective = CACHE_POLICY_OBJECTS;
    struct plan_trace *t = NULL;
    char err[512];
    json_t *jres = NULL;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        int takes = !strcmp(a, "--trace") || !strcmp(a, "--format") || !strcmp(a, "--policy") ||
                    !strcmp(a, "--size") || !strcmp(a, "--objective");
        if (takes) {
            if (i + 1 >= argc) {
                fprintf(stderr, "mlcdn cachesim: %s: missing value\n", a);
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
        else if (!strcmp(a, "--size"))
            free(size_arg), size_arg = mc_xstrdup(val);
        else if (!strcmp(a, "--objective")) {
            if (cache_policy_objective_parse(val, &objective) != 0) {
                fprintf(stderr,
                        "mlcdn cachesim: --objective: '%s' is not an objective (known: objects "
                        "bytes)\n",
                        val);
                rc = 2;
                goto out;
            }
        } else if (!strcmp(a, "--by-objects"))
            by_objects = 1;
        else if (!strcmp(a, "--json"))
            json = 1;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            goto out;
        } else {
            fprintf(stderr, "mlcdn cachesim: unknown option '%s'\n", a);
            usage(stderr);
            rc = 2;
            goto out;
        }
    }
    if (trace_path == NULL || size_arg == NULL) {
        fprintf(stderr, "mlcdn cachesim: %s is required\n", trace_path ? "--size" : "--trace");
        usage(stderr);
        rc = 2;
        goto out;
    }
    if (strcmp(format, "csv") != 0) {
        fprintf(stderr, "mlcdn cachesim: --format: '%s' is not a format (known: csv)\n", format);
        rc = 2;
        goto out;
    }
    if (policy_arg == NULL || !strcmp(policy_arg, "all")) {
        npol = (int)MC_ARRAY_SIZE(all_policies);
        for (int i = 0; i < npol; i++)
            pol[i] = (char *)all_policies[i];
    } else if ((npol = split(policy_arg, pol, MAXLIST)) <= 0) {
        fprintf(stderr, "mlcdn cachesim: --policy: empty or too long a list\n");
        rc = 2;
        goto out;
    }
    for (int i = 0; i < npol; i++)
        if (!known_policy(pol[i])) {
            fprintf(stderr, "mlcdn cachesim: --policy: '%s' is not a policy (known:", pol[i]);
            for (const char *const *n = cache_policy_names(); *n; n++)
                fprintf(stderr, " %s", *n);
            fprintf(stderr, " belady)\n");
            rc = 2;
            goto out;
        }
    if ((nsz = split(size_arg, szs, MAXLIST)) <= 0) {
        fprintf(stderr, "mlcdn cachesim: --size: empty or too long a list\n");
        rc = 2;
        goto out;
    }
    for (int i = 0; i < nsz; i++)
        if (plan__parse_size(szs[i], 0, &sizes[i]) != 0) {
            fprintf(stderr, "mlcdn cachesim: --size: '%s' is not a size\n", szs[i]);
            rc = 2;
            goto out;
        }

    if (plan_trace_load_csv(trace_path, &t, err, sizeof(err)) != 0) {
        fprintf(stderr, "mlcdn cachesim: --trace: %s\n", err);
        rc = 1;
        goto out;
    }
    if (!t->sized)
        by_objects = 1; /* all sizes are 1: bytes and objects are the same count */
    {
        uint64_t ws = by_objects ? t->nobj : t->unique_bytes;
        for (int i = 0; i < nsz; i++)
            if (sizes[i].percent > 0) {
                sizes[i].units = (uint64_t)((double)ws * sizes[i].percent / 100.0);
                if (sizes[i].units == 0)
                    sizes[i].units = 1;
            }
    }

    if (json) {
        jres = json_array();
    } else {
        printf("trace %s: %llu requests, %llu objects, %llu unique bytes; sizes in %s; "
               "objective %s\n",
               trace_path, (unsigned long long)t->nreq, (unsigned long long)t->nobj,
               (unsigned long long)t->unique_bytes, by_objects ? "objects" : "bytes",
               cache_policy_objective_name(objective));
        printf("%-8s %-8s %14s %10s %10s %10s %10s\n", "policy", "size", "capacity", "miss",
               "byte_miss", "Mreq/s", "meta_B/obj");
    }
    for (int s = 0; s < nsz; s++)
        for (int i = 0; i < npol; i++) {
            struct plan_sim_result r;
            if (!strcmp(pol[i], "belady"))
                rc = plan_belady_run(t, sizes[s].units, by_objects, &r);
            else
                rc = plan_cachesim_run(t, pol[i], sizes[s].units, by_objects, objective, &r);
            if (rc != 0) {
                fprintf(stderr, "mlcdn cachesim: %s: %s\n", pol[i], strerror(-rc));
                rc = 1;
                goto out;
            }
            double miss = (double)r.misses / (double)r.requests;
            double bmiss = r.bytes ? (double)r.miss_bytes / (double)r.bytes : 0;
            double mrps = r.seconds > 0 ? (double)r.requests / r.seconds / 1e6 : 0;
            /* Metadata per resident object at the end (-1: none resident, or Belady). */
            double meta = r.meta_objects ? (double)r.meta_bytes / (double)r.meta_objects : -1;
            if (json) {
                json_t *jr = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f}",
                                       "policy", pol[i], "size", sizes[s].text, "capacity",
                                       (json_int_t)sizes[s].units, "requests",
                                       (json_int_t)r.requests, "misses", (json_int_t)r.misses,
                                       "bytes", (json_int_t)r.bytes, "miss_bytes",
                                       (json_int_t)r.miss_bytes, "miss_ratio", miss,
                                       "byte_miss_ratio", bmiss, "requests_per_s",
                                       r.seconds > 0 ? (double)r.requests / r.seconds : 0.0);
                json_object_set_new(jr, "meta_bytes_per_object",
                                    meta >= 0 ? json_real(meta) : json_null());
                json_array_append_new(jres, jr);
            } else {
                char mb[16] = "-";
                if (meta >= 0)
                    snprintf(mb, sizeof(mb), "%.1f", meta);
                printf("%-8s %-8s %14llu %10.4f %10.4f %10.1f %10s\n", pol[i], sizes[s].text,
                       (unsigned long long)sizes[s].units, miss, bmiss, mrps, mb);
                fflush(stdout);
            }
        }
    if (json) {
        json_t *doc = json_pack("{s:s, s:I, s:I, s:I, s:s, s:s, s:o}", "trace", trace_path,
                                "requests", (json_int_t)t->nreq, "objects", (json_int_t)t->nobj,
                                "unique_bytes", (json_int_t)t->unique_bytes, "unit",
                                by_objects ? "objects" : "bytes", "objective",
                                cache_policy_objective_name(objective), "results", jres);
        jres = NULL;
        json_dumpf(doc, stdout, JSON_INDENT(2));
        printf("\n");
        json_decref(doc);
    }
out:
    json_decref(jres);
    plan_trace_free(&t);
    free(policy_arg);
    free(size_arg);
    return rc;
}
