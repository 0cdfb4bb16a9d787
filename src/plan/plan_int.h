/* src/plan/plan_int.h: what the files of src/plan share and nothing outside uses.
 *
 * The trace builder numbers keys by first appearance for every reader (CSV, access logs);
 * plan__load_file maps a file for a reader. The curve engine (plan_mrc.c) and the cost
 * model (plan_cost.c) are here so that `mlcdn plan` (plan_main.c) and the unit tests can
 * drive them without the command line. */
#ifndef MLCDN_PLAN_PLAN_INT_H
#define MLCDN_PLAN_PLAN_INT_H

#include <stddef.h>
#include <stdint.h>

#include "plan/plan.h"

/* ---- trace building (plan_trace.c) ---- */

struct plan__builder {
    struct plan_trace *t; /* owned until plan__builder_take() */
    uint64_t *hash;       /* open addressing: key hash -> dense id */
    uint32_t *id;
    uint64_t mask;
    uint64_t reqcap, objcap;
};

void plan__builder_init(struct plan__builder *b);
/* Appends one request for `key` of `size` bytes at `tsec` seconds (NaN: no time).
 * Returns 0 or -E2BIG when ids run out. */
int plan__builder_add(struct plan__builder *b, const char *key, size_t klen, uint64_t size,
                      double tsec);
/* The trace built so far; the caller owns it. */
struct plan_trace *plan__builder_take(struct plan__builder *b);
/* Frees what the builder still holds (the trace too, unless taken). */
void plan__builder_fini(struct plan__builder *b);

int plan__fail(char *err, size_t errlen, const char *name, uint64_t line, const char *what);
int plan__load_file(const char *path,
                    int (*parse)(const char *buf, size_t len, const char *name, void *arg,
                                 struct plan_trace **out, char *err, size_t errlen),
                    void *arg, struct plan_trace **out, char *err, size_t errlen);

#endif

/* A cache size as given on the command line: bytes ("64M"), or a percentage of the
 * trace's unique bytes ("5%"), resolved once the trace is loaded (plan_cachesim.c). */
struct plan__size {
    const char *text; /* borrowed from argv */
    double percent;   /* < 0: absolute */
    uint64_t units;
};
/* Returns 0 or -EINVAL; "0" is accepted only with allow_zero. */
int plan__parse_size(const char *s, int allow_zero, struct plan__size *out);

/* ---- the two tiers coupled (plan_tiers.c) ---- */

/* The edge's L1 shards (edge_main.c's l1_new call): each holds 1/16 of --mem. */
#define PLAN_L1_SHARDS 16u

/* One replay of L1 and L2 as the edge runs them (the rules are in plan_tiers.c). */
struct plan__tiers_cfg {
    const char *policy[2]; /* L1, L2 */
    uint64_t l1, l2;       /* capacities of this replay (scaled when sampled); 0 = no tier */
    uint64_t l1_full;      /* L1's size in the whole trace: --max-mem-object's default */
    uint64_t l2_full;      /* L2's: its largest object is l2_full / L2_MAX_OBJECT_DIV */
    uint64_t max_mem;      /* --max-mem-object; 0 = l1_full / 16, the edge's default */
    unsigned admit_hits;   /* --l2-admit-hits (the edge's default 2) */
    double rate;           /* the sample's rate (1: exact): scales the admission window */
    uint64_t *l1_miss_idx; /* NULL, or [nreq]: the index of every request L1 missed */
};

struct plan__tiers_result {
    uint64_t requests, bytes;
    uint64_t l1_misses, l1_miss_bytes; /* requests L1 did not answer */
    uint64_t o_misses, o_miss_bytes;   /* requests neither tier answered (origin fetches) */
    uint64_t promoted;                 /* L2 hits copied into L1 */
};

/* Returns 0 or -EINVAL (unknown policy). */
int plan__tiers_replay(const struct plan_trace *t, const struct plan__tiers_cfg *c,
                       struct plan__tiers_result *out);
/* Whether some request of t could be copied from L2 into L1 (a body under the edge's
 * L1_COPY_MAX and at most max_mem): when none can, L1 does not depend on L2, and L2 sees
 * exactly the L1's misses, so one L1 replay serves every L2 size. */
int plan__tiers_coupled(const struct plan_trace *t, uint64_t max_mem);

/* ---- curves (plan_mrc.c) ---- */

/* One L1 x L2 grid of replays, each pair one coupled replay of both tiers with the edge's
 * rules (plan__tiers_replay): L1 objective objects, L2 objective bytes. The L1 curve is
 * the L1 without an L2. Capacities are bytes of the full trace; a sampled replay scales
 * them by the rate. */
struct plan__mrc_opts {
    const char *policy[2]; /* L1, L2: cache_policy_names() entries */
    const uint64_t *l1;    /* [nl1] bytes; 0 = no such tier */
    int nl1;
    const uint64_t *l2; /* [nl2] */
    int nl2;
    double rate; /* base rate; 1: exact replay of the whole trace */
    int fixed;   /* every size at `rate` (fixed-size sampling: no raised rates) */
    int seeds;   /* sampled replays, each with its own hash seed */
    int threads;
    uint64_t max_mem;    /* --max-mem-object; 0: each L1 size / 16, as the edge */
    unsigned admit_hits; /* --l2-admit-hits; 0 is taken as 1, as the edge does */
};

struct plan__mrc {
    int nl1, nl2, seeds;
    /* [s * nl1 + i]: seed s, L1 size i: missed requests / requests, missed bytes / bytes.
     * A point replayed exactly (its rate is 1) has only the row of seed 0. */
    double *l1_miss, *l1_bmiss;
    double *l1_rate; /* [nl1] the rate each L1 size was replayed at */
    /* [s * nl1 * nl2 + i * nl2 + j]: the same, missed by both tiers (to the origin) */
    double *o_miss, *o_bmiss;
    double *c_l1miss, *c_l1bmiss; /* [same]: missed by L1 in that pair's replay (requests,
                                   * bytes): L2 hits copied into L1 change L1's hits */
    double *o_rate;               /* [nl1 * nl2] */
    uint64_t sampled_reqs;        /* requests in all the samples made */
    int replays;                  /* jobs: one L1 replay and the L2 replays behind it */
    double seconds;               /* wall time of the replays, sampling included */
};

/* Runs the grid with o->threads threads. Every size is replayed at the rate o->rate, or
 * at a doubled one until the sampled cache holds PLAN_SAMPLE_MIN_OBJS mean-sized objects
 * (plan__size_rate); a cell of the grid at the larger of its two sizes' rates. Returns 0
 * or -EINVAL (unknown policy). The caller owns the arrays in *out (plan__mrc_fini). */
int plan__mrc_run(const struct plan_trace *t, const struct plan__mrc_opts *o,
                  struct plan__mrc *out);
void plan__mrc_fini(struct plan__mrc *m);
/* Mean over the seeds of v[s * stride + idx] (only seed 0 when rate is 1), and the error
 * estimate: twice the standard error of that mean (0 with one replay). */
void plan__seed_stat(const double *v, int seeds, size_t stride, size_t idx, double rate,
                     double *mean, double *err);
/* `--sample auto`: 1 (exact) for traces up to PLAN_EXACT_MAX requests; else the rate
 * whose samples hold about PLAN_SAMPLE_REQS requests and PLAN_SAMPLE_OBJS objects (the
 * larger), or 1 when that rate is above PLAN_SAMPLE_MAX_RATE (the default 4 seeds'
 * replays at 0.125 cost half an exact one: above, sampling saves too little to pay for
 * its error). A size is replayed at a raised rate until its scaled cache holds
 * PLAN_SAMPLE_MIN_OBJS mean-sized objects (bench/plan: below about a thousand objects in
 * the cache, or a few ten thousand in the sample, the sampled miss ratios stray by more
 * than half a percentage point). */
#define PLAN_EXACT_MAX 400000
#define PLAN_SAMPLE_REQS 200000
#define PLAN_SAMPLE_OBJS 40000
#define PLAN_SAMPLE_MIN_OBJS 1000
#define PLAN_SAMPLE_MAX_RATE 0.125
double plan__base_rate(const struct plan_trace *t);
/* Whether a cache of `cap` bytes replayed at `rate` holds fewer than PLAN_SAMPLE_MIN_OBJS
 * mean-sized objects in its sample: a point whose error is more than the seeds' spread
 * shows (only fixed-size sampling replays such points). */
int plan__coarse(const struct plan_trace *t, double rate, uint64_t cap);
/* Fixed-size SHARDS: the rate whose samples hold at most `smax` objects under every one of
 * the first `seeds` seeds (1 when the trace has no more objects than that). The trace is
 * in memory already, so the threshold is set from all its objects at once rather than
 * lowered as they arrive; the samples are the ones the streaming variant ends with. */
double plan__fixed_rate(const struct plan_trace *t, uint64_t smax, int seeds);
/* The hash seed of sampled replay `s` (0, 1, ...). */
uint64_t plan__seed(int s);
/* The rate a cache of `cap` bytes is replayed at, from the base rate. */
double plan__size_rate(const struct plan_trace *t, double base, uint64_t cap);

/* ---- cost and latency (plan_cost.c) ---- */

struct plan__prices {
    double l1, l2; /* per GiB-month of capacity */
    double origin; /* per GiB sent by the origin */
};

struct plan__cell {  /* one (L1, L2) pair, curves already averaged over seeds */
    uint64_t l1, l2; /* bytes */
    double hit;      /* requests answered by L1 or L2 / requests */
    double origin_bytes_per_s;
};

struct plan__cost {
    double l1, l2, origin, total; /* per month */
    double origin_gib_month;
};

#define PLAN_MONTH_S (30.0 * 86400.0)

void plan__cost_of(const struct plan__cell *c, const struct plan__prices *p,
                   struct plan__cost *out);
/* Index of the cheapest cell whose hit >= target; when none reaches it, the one with the
 * highest hit (the cheapest among equals) and *met = 0. n > 0. */
size_t plan__choose(const struct plan__cell *cells, size_t n, const struct plan__prices *p,
                    double target, int *met);

/* A tier's latency: sorted samples (measured), or one value (a flag or the default). */
struct plan__lat {
    const double *v; /* sorted ascending */
    size_t n;
};
/* Mean and quantile q of the mixture sum_k w[k] * lat[k] (w sums to 1). */
double plan__lat_mean(const struct plan__lat lat[PLAN_NTIERS], const double w[PLAN_NTIERS]);
double plan__lat_quantile(const struct plan__lat lat[PLAN_NTIERS], const double w[PLAN_NTIERS],
                          double q);

/* ---- the plot (plan_svg.c) ---- */

struct plan__svg {
    const uint64_t *l1; /* [nl1] bytes */
    int nl1;
    const double *l1_miss, *l1_err; /* L1 object miss ratio (objective objects) */
    const uint64_t *l2;             /* [nl2], behind the chosen L1 */
    int nl2;
    const double *l2_bmiss, *l2_berr; /* share of the bytes that reach the origin */
    const double *l2_miss, *l2_err;   /* share of the requests that reach the origin */
    int chosen_l1, chosen_l2;
    double target;
};

/* Writes a self-contained SVG: miss ratio against size (log axis), one polyline per tier
 * objective (class "curve", data-objective "objects" for L1, "bytes" for L2), the request
 * miss ratio of both tiers (class "total"), and the chosen pair (a group of class "chosen"
 * with data-l1-bytes, data-l2-bytes).
 * Returns 0 or -errno with a message naming the file in err. */
int plan__svg_write(const char *path, const struct plan__svg *s, char *err, size_t errlen);
