/* src/plan/plan_mrc.c: miss-ratio curves of an L1 x L2 pair, exact or SHARDS-sampled.
 *
 * Sampling is spatial, as in SHARDS (Waldspurger et al., FAST 2015) used for miniature
 * simulations (ATC 2017): an object is in the sample when its key hash, mixed with a seed,
 * falls in the lowest `rate` of the hash space, so every request of a kept object is kept
 * and reuse is preserved; the sample is replayed through the real policies
 * (plan__tiers_replay) with capacities scaled by the rate. The estimate of a miss ratio
 * is the sample's own ratio. Several seeds give independent samples: the curve is their
 * mean and the spread gives the error estimate.
 *
 * Work is one job per (seed, L1 size, rate): the L1 replayed alone (its curve), then one
 * coupled replay of both tiers per L2 size at that rate: L2's contents depend on L1's
 * misses and L1's on L2's hits (promotions), so no L2 curve can be drawn from one L1
 * replay's misses. Jobs are taken from an atomic counter by plain pthreads;
 * every job writes only its own result cells and reads the shared, immutable traces. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "core/mc.h"
#include "core/units.h"
#include "plan/plan.h"
#include "plan/plan_int.h"

#define SAMPLE_BITS 24 /* the hash space is 2^24 buckets: rates down to 6e-8 */

static uint32_t sample_value(uint64_t h, uint64_t seed)
{
    return (uint32_t)(XXH3_64bits_withSeed(&h, sizeof(h), seed) >> (64 - SAMPLE_BITS));
}

int plan_sample_keep(uint64_t h, double rate, uint64_t seed)
{
    uint64_t thr = (uint64_t)(rate * (double)(1u << SAMPLE_BITS));
    return sample_value(h, seed) < thr;
}

uint64_t plan__seed(int s)
{
    return 0x9e3779b97f4a7c15ull * (uint64_t)(s + 1);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

double plan__fixed_rate(const struct plan_trace *t, uint64_t smax, int seeds)
{
    uint32_t *v, thr = 1u << SAMPLE_BITS;

    if (t->nobj <= smax)
        return 1.0;
    v = mc_xmalloc(t->nobj * sizeof(*v));
    for (int s = 0; s < seeds; s++) {
        for (uint64_t o = 0; o < t->nobj; o++)
            v[o] = sample_value(t->obj_hash[o], plan__seed(s));
        qsort(v, t->nobj, sizeof(*v), cmp_u32);
        /* Keeping the values below the (smax+1)-th smallest keeps at most smax objects
         * (ties at it are dropped too); the lowest threshold over the seeds bounds them all. */
        if (v[smax] < thr)
            thr = v[smax];
    }
    free(v);
    return (double)MC_MAX(thr, 1u) / (double)(1u << SAMPLE_BITS);
}

struct plan_trace *plan_trace_sample(const struct plan_trace *t, double rate, uint64_t seed)
{
    struct plan_trace *s = mc_xcalloc(1, sizeof(*s));
    uint32_t *map = mc_xmalloc(t->nobj * sizeof(*map));
    uint64_t n = 0;

    for (uint64_t o = 0; o < t->nobj; o++)
        map[o] = plan_sample_keep(t->obj_hash[o], rate, seed) ? (uint32_t)s->nobj++ : UINT32_MAX;
    s->obj_hash = mc_xmalloc(MC_MAX(s->nobj, 1) * sizeof(*s->obj_hash));
    for (uint64_t o = 0; o < t->nobj; o++)
        if (map[o] != UINT32_MAX)
            s->obj_hash[map[o]] = t->obj_hash[o];
    for (uint64_t i = 0; i < t->nreq; i++)
        n += map[t->req_obj[i]] != UINT32_MAX;
    s->req_obj = mc_xmalloc(MC_MAX(n, 1) * sizeof(*s->req_obj));
    s->req_size = mc_xmalloc(MC_MAX(n, 1) * sizeof(*s->req_size));
    for (uint64_t i = 0; i < t->nreq; i++) {
        uint32_t o = map[t->req_obj[i]];
        if (o == UINT32_MAX)
            continue;
        s->req_obj[s->nreq] = o;
        s->req_size[s->nreq++] = t->req_size[i];
        s->req_bytes += t->req_size[i];
        if (t->req_size[i] != 1)
            s->sized = 1;
    }
    /* unique_bytes: the first size of each kept object, as the loader counts it. */
    {
        uint8_t *seen = mc_xcalloc(MC_MAX(s->nobj, 1), 1);
        for (uint64_t i = 0; i < s->nreq; i++)
            if (!seen[s->req_obj[i]]) {
                seen[s->req_obj[i]] = 1;
                s->unique_bytes += s->req_size[i];
            }
        free(seen);
    }
    s->timed = t->timed;
    s->t_min = t->t_min;
    s->t_max = t->t_max;
    s->skipped = t->skipped;
    free(map);
    return s;
}

double plan__base_rate(const struct plan_trace *t)
{
    double rate = MC_MAX((double)PLAN_SAMPLE_REQS / (double)t->nreq,
                         (double)PLAN_SAMPLE_OBJS / (double)MC_MAX(t->nobj, 1));
    return t->nreq <= PLAN_EXACT_MAX || rate > PLAN_SAMPLE_MAX_RATE ? 1.0 : rate;
}

int plan__coarse(const struct plan_trace *t, double rate, uint64_t cap)
{
    double mean_obj = t->nobj ? (double)t->unique_bytes / (double)t->nobj : 1;
    return rate < 1.0 && cap > 0 && rate * (double)cap < PLAN_SAMPLE_MIN_OBJS * mean_obj;
}

double plan__size_rate(const struct plan_trace *t, double base, uint64_t cap)
{
    double mean_obj = t->nobj ? (double)t->unique_bytes / (double)t->nobj : 1, r = base;

    if (cap == 0)
        return base;
    /* Doubling (not the exact need) keeps the distinct rates, and the samples, few. */
    while (r < 1.0 && r * (double)cap < PLAN_SAMPLE_MIN_OBJS * mean_obj)
        r *= 2;
    /* Above PLAN_SAMPLE_MAX_RATE the seeds' replays cost about as much as an exact one,
     * and samples of different seeds share many of their objects, so their spread would
     * understate the error: replay exactly. */
    return r > base && r > PLAN_SAMPLE_MAX_RATE ? 1.0 : r; /* a rate asked for is kept */
}

struct job {
    int seed, i;
    double rate;
    int sample; /* index into samples[] */
};

struct job_ctx {
    const struct plan__mrc_opts *o;
    struct plan__mrc *m;
    struct job *jobs;
    int njobs;
    struct plan_trace **samples; /* [nsamples]; the trace itself at rate 1 */
    uint64_t nreq, bytes;        /* of the whole trace */
    _Atomic int next;
    _Atomic int rc;
};

static uint64_t scaled(uint64_t cap, double rate)
{
    if (cap == 0 || rate >= 1.0)
        return cap;
    uint64_t c = (uint64_t)llround((double)cap * rate);
    return c ? c : 1;
}

/* A miss ratio from a sample: the sample's misses over the requests the rate promises
 * (rate x the whole trace's), not over the requests the sample happened to get. This is
 * SHARDS's adjustment: the few hottest objects decide how many requests a sample gets,
 * yet they are hits in any cache worth sizing, so the misses carry far less noise than
 * the request count does. */
static double est(uint64_t misses, uint64_t total, double rate)
{
    double r = total ? (double)misses / ((double)total * rate) : 0.0;
    return r > 1.0 ? 1.0 : r;
}

/* L2 behind L1 without promotions (plan__tiers_coupled is false): a replay of L2 alone over
 * the L1's misses, which is the coupled replay with no L1. */
static int l2_behind(const struct plan_trace *t, const uint64_t *miss, uint64_t nmiss,
                     const struct plan__tiers_cfg *tc, struct plan__tiers_result *r)
{
    struct plan_trace l2t = {0};
    struct plan__tiers_cfg c2 = *tc;
    int rc;

    l2t.nobj = t->nobj;
    l2t.obj_hash = t->obj_hash;
    l2t.req_obj = mc_xmalloc(MC_MAX(nmiss, 1) * sizeof(*l2t.req_obj));
    l2t.req_size = mc_xmalloc(MC_MAX(nmiss, 1) * sizeof(*l2t.req_size));
    for (uint64_t k = 0; k < nmiss; k++) {
        l2t.req_obj[k] = t->req_obj[miss[k]];
        l2t.req_size[k] = t->req_size[miss[k]];
        l2t.req_bytes += t->req_size[miss[k]];
    }
    l2t.nreq = nmiss;
    c2.l1 = 0;
    c2.l1_miss_idx = NULL;
    rc = plan__tiers_replay(&l2t, &c2, r);
    free(l2t.req_obj);
    free(l2t.req_size);
    return rc;
}

static int run_job(struct job_ctx *c, const struct job *jb)
{
    const struct plan__mrc_opts *o = c->o;
    struct plan__mrc *m = c->m;
    const struct plan_trace *t = c->samples[jb->sample];
    size_t n1 = (size_t)o->nl1, n2 = n1 * (size_t)o->nl2, i = (size_t)jb->i;
    struct plan__tiers_cfg tc = {.policy = {o->policy[0], o->policy[1]},
                                 .l1 = scaled(o->l1[i], jb->rate),
                                 .l1_full = o->l1[i],
                                 .max_mem = o->max_mem,
                                 .admit_hits = MC_MAX(o->admit_hits, 1u),
                                 .rate = jb->rate};
    struct plan__tiers_result alone, r;
    int coupled = plan__tiers_coupled(t, o->max_mem ? o->max_mem : o->l1[i] / 16);
    uint64_t *miss = coupled ? NULL : mc_xmalloc(MC_MAX(t->nreq, 1) * sizeof(*miss));
    int rc;

    /* L1 without L2: the L1 curve, the pairs whose L2 is 0, and (without promotions) the
     * stream every L2 size sees. */
    tc.l1_miss_idx = miss;
    if ((rc = plan__tiers_replay(t, &tc, &alone)) != 0)
        goto out;
    tc.l1_miss_idx = NULL;
    if (m->l1_rate[i] == jb->rate) {
        m->l1_miss[(size_t)jb->seed * n1 + i] = est(alone.l1_misses, c->nreq, jb->rate);
        m->l1_bmiss[(size_t)jb->seed * n1 + i] = est(alone.l1_miss_bytes, c->bytes, jb->rate);
    }
    for (size_t j = 0; j < (size_t)o->nl2; j++) {
        size_t k = i * (size_t)o->nl2 + j, at = (size_t)jb->seed * n2 + k;
        if (m->o_rate[k] != jb->rate)
            continue;
        tc.l2 = scaled(o->l2[j], jb->rate);
        tc.l2_full = o->l2[j];
        if (o->l2[j] == 0) {
            r = alone;
        } else if (!coupled) {
            if ((rc = l2_behind(t, miss, alone.l1_misses, &tc, &r)) != 0)
                goto out;
            r.l1_misses = alone.l1_misses;
            r.l1_miss_bytes = alone.l1_miss_bytes;
        } else if ((rc = plan__tiers_replay(t, &tc, &r)) != 0) {
            goto out;
        }
        m->o_miss[at] = est(r.o_misses, c->nreq, jb->rate);
        m->o_bmiss[at] = est(r.o_miss_bytes, c->bytes, jb->rate);
        m->c_l1miss[at] = est(r.l1_misses, c->nreq, jb->rate);
        m->c_l1bmiss[at] = est(r.l1_miss_bytes, c->bytes, jb->rate);
    }
out:
    free(miss);
    return rc;
}

static void *worker(void *arg)
{
    struct job_ctx *c = arg;

    for (;;) {
        int j = atomic_fetch_add(&c->next, 1);
        if (j >= c->njobs || atomic_load(&c->rc) != 0)
            break;
        int rc = run_job(c, &c->jobs[j]);
        if (rc != 0)
            atomic_store(&c->rc, rc);
    }
    return NULL;
}

/* The sample of (seed, rate), made on first use; rate 1 is the trace itself. */
static int sample_for(struct job_ctx *c, const struct plan_trace *t, int *nsamples, double *srate,
                      int *sseed, int seed, double rate)
{
    if (rate >= 1.0)
        seed = 0;
    for (int k = 0; k < *nsamples; k++)
        if (srate[k] == rate && sseed[k] == seed)
            return k;
    srate[*nsamples] = rate;
    sseed[*nsamples] = seed;
    c->samples[*nsamples] = rate >= 1.0 ? (struct plan_trace *)t
                                        : plan_trace_sample(t, rate, plan__seed(seed));
    return (*nsamples)++;
}

int plan__mrc_run(const struct plan_trace *t, const struct plan__mrc_opts *o, struct plan__mrc *out)
{
    struct plan__mrc m = {0};
    struct job_ctx c = {.o = o};
    size_t n1 = (size_t)o->nl1, n2 = n1 * (size_t)o->nl2;
    size_t maxjobs = (size_t)o->seeds * n1 * ((size_t)o->nl2 + 1);
    double *srate = mc_xcalloc(maxjobs, sizeof(double));
    int *sseed = mc_xcalloc(maxjobs, sizeof(int)), nsamples = 0, nthr, started = 0, rc;
    pthread_t *thr;
    uint64_t t0 = units_now_ns();

    MC_ASSERT(o->seeds >= 1 && o->nl1 >= 1 && o->nl2 >= 1);
    m.nl1 = o->nl1;
    m.nl2 = o->nl2;
    m.seeds = o->seeds;
    m.l1_miss = mc_xcalloc((size_t)o->seeds * n1, sizeof(double));
    m.l1_bmiss = mc_xcalloc((size_t)o->seeds * n1, sizeof(double));
    m.o_miss = mc_xcalloc((size_t)o->seeds * n2, sizeof(double));
    m.o_bmiss = mc_xcalloc((size_t)o->seeds * n2, sizeof(double));
    m.c_l1miss = mc_xcalloc((size_t)o->seeds * n2, sizeof(double));
    m.c_l1bmiss = mc_xcalloc((size_t)o->seeds * n2, sizeof(double));
    m.l1_rate = mc_xcalloc(n1, sizeof(double));
    m.o_rate = mc_xcalloc(n2, sizeof(double));
    for (size_t i = 0; i < n1; i++) {
        m.l1_rate[i] = o->fixed ? o->rate : plan__size_rate(t, o->rate, o->l1[i]);
        for (size_t j = 0; j < (size_t)o->nl2; j++)
            m.o_rate[i * (size_t)o->nl2 + j] =
                o->fixed ? o->rate : MC_MAX(m.l1_rate[i], plan__size_rate(t, o->rate, o->l2[j]));
    }
    c.m = &m;
    c.nreq = t->nreq;
    c.bytes = t->req_bytes;
    c.jobs = mc_xcalloc(maxjobs, sizeof(*c.jobs));
    c.samples = mc_xcalloc(maxjobs, sizeof(*c.samples));
    /* One job per (seed, L1 size, rate): the L1's own rate, and each rate an L2 size
     * behind it needs. An exact job (rate 1) is run for the first seed only. */
    for (int s = 0; s < o->seeds; s++)
        for (size_t i = 0; i < n1; i++)
            for (size_t j = 0; j <= (size_t)o->nl2; j++) {
                double r = j == 0 ? m.l1_rate[i] : m.o_rate[i * (size_t)o->nl2 + j - 1];
                int dup = 0;
                if (r >= 1.0 && s > 0)
                    continue;
                for (int k = 0; k < c.njobs; k++)
                    dup |= c.jobs[k].seed == s && c.jobs[k].i == (int)i && c.jobs[k].rate == r;
                if (dup)
                    continue;
                c.jobs[c.njobs++] = (struct job){s, (int)i, r,
                                                 sample_for(&c, t, &nsamples, srate, sseed, s, r)};
            }
    for (int k = 0; k < nsamples; k++)
        if (srate[k] < 1.0)
            m.sampled_reqs += c.samples[k]->nreq;
    nthr = MC_MAX(1, MC_MIN(o->threads, c.njobs));
    thr = mc_xcalloc((size_t)nthr, sizeof(*thr));
    for (int k = 1; k < nthr; k++)
        if (pthread_create(&thr[k], NULL, worker, &c) == 0)
            started = k;
        else
            break;
    worker(&c); /* this thread works too */
    for (int k = 1; k <= started; k++)
        pthread_join(thr[k], NULL);
    rc = atomic_load(&c.rc);
    m.replays = c.njobs;
    for (int k = 0; k < nsamples; k++)
        if (c.samples[k] != t)
            plan_trace_free(&c.samples[k]);
    free(c.samples);
    free(c.jobs);
    free(srate);
    free(sseed);
    free(thr);
    m.seconds = (double)(units_now_ns() - t0) / 1e9;
    if (rc != 0) {
        plan__mrc_fini(&m);
        return rc;
    }
    *out = m;
    return 0;
}

void plan__mrc_fini(struct plan__mrc *m)
{
    free(m->l1_miss);
    free(m->l1_bmiss);
    free(m->o_miss);
    free(m->o_bmiss);
    free(m->c_l1miss);
    free(m->c_l1bmiss);
    free(m->l1_rate);
    free(m->o_rate);
    memset(m, 0, sizeof(*m));
}

void plan__seed_stat(const double *v, int seeds, size_t stride, size_t idx, double rate,
                     double *mean, double *err)
{
    double sum = 0, ss = 0, mu;

    if (rate >= 1.0) /* exact: one replay, in the first seed's row */
        seeds = 1;
    for (int s = 0; s < seeds; s++)
        sum += v[(size_t)s * stride + idx];
    mu = sum / seeds;
    for (int s = 0; s < seeds; s++) {
        double d = v[(size_t)s * stride + idx] - mu;
        ss += d * d;
    }
    *mean = mu;
    *err = seeds > 1 ? 2.0 * sqrt(ss / (seeds - 1)) / sqrt((double)seeds) : 0.0;
}
