/* src/plan/plan.h: capacity planning: trace readers, `mlcdn cachesim` and `mlcdn plan`.
 *
 * A trace is loaded once into dense arrays (object ids numbered by first appearance, one
 * size per request) so replays touch no hash table; the simulator then drives the very
 * policy code the edge's stores run (src/cache/cache_policy.h). Ownership: a struct
 * plan_trace is owned by its loader's caller and freed with plan_trace_free(). */
#ifndef MLCDN_PLAN_PLAN_H
#define MLCDN_PLAN_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "cache/cache_policy.h"

struct plan_trace {
    uint64_t nreq;
    uint64_t nobj;
    uint32_t *req_obj;     /* [nreq] dense object id of each request */
    uint64_t *req_size;    /* [nreq] size of each request, in bytes */
    uint64_t *obj_hash;    /* [nobj] XXH3 of the key text */
    uint64_t unique_bytes; /* sum over objects of their first size */
    uint64_t req_bytes;    /* sum over requests of their size */
    int sized;             /* 1 if any size differs from 1 */
    int timed;             /* 1 if t_min/t_max were read from the trace */
    double t_min, t_max;   /* seconds: the trace's time span */
    uint64_t skipped;      /* access logs: lines that are not a cacheable GET answered whole */
};

/* Loads a `t,key,size` CSV (optional header line; keys are any text without a comma,
 * hashed with XXH3; a missing size column means 1). Returns 0, -errno for I/O errors, or
 * -EINVAL with a message naming the file and line in err. */
int plan_trace_load_csv(const char *path, struct plan_trace **out, char *err, size_t errlen);
/* Same, from a buffer (tests). */
int plan_trace_parse_csv(const char *buf, size_t len, const char *name, struct plan_trace **out,
                         char *err, size_t errlen);
void plan_trace_free(struct plan_trace **t);

/* Per-tier latency samples (seconds) read from an access log's ttfb= by level=. */
enum plan_tier { PLAN_TIER_L1, PLAN_TIER_L2, PLAN_TIER_ORIGIN, PLAN_NTIERS };
struct plan_lat_samples {
    double *v[PLAN_NTIERS]; /* owned; plan_lat_samples_fini() */
    size_t n[PLAN_NTIERS], cap[PLAN_NTIERS];
};
void plan_lat_samples_fini(struct plan_lat_samples *s);

/* Loads an edge access log (src/core/accesslog.c), "combined" or "json" lines (told apart
 * per line). A request is a GET answered 200 and whole, not on the admin listener and not
 * BYPASS/PASS: its key is the target, its size the body bytes sent, its time the line's.
 * Other lines count in t->skipped. With `lat` non-NULL, the ttfb of L1, L2 and ORIGIN
 * answers is collected there. Errors as plan_trace_load_csv(). */
int plan_trace_load_accesslog(const char *path, struct plan_lat_samples *lat,
                              struct plan_trace **out, char *err, size_t errlen);
int plan_trace_parse_accesslog(const char *buf, size_t len, const char *name,
                               struct plan_lat_samples *lat, struct plan_trace **out, char *err,
                               size_t errlen);

/* SHARDS spatial sampling: keeps the requests of the objects whose key hash, mixed with
 * `seed`, falls in the lowest `rate` of the hash space (0 < rate <= 1). Object ids are
 * renumbered densely; times and the skipped count are copied. The caller owns the result. */
struct plan_trace *plan_trace_sample(const struct plan_trace *t, double rate, uint64_t seed);
/* Whether object hash `h` is kept by plan_trace_sample(rate, seed). */
int plan_sample_keep(uint64_t h, double rate, uint64_t seed);

struct plan_sim_result {
    uint64_t requests, misses;
    uint64_t bytes, miss_bytes;
    double seconds; /* replay time, loading excluded */
    /* At the end of the replay: the policy's metadata (cache_policy_meta_bytes()) and the
     * objects resident; both 0 for Belady, which is not a policy a store runs. */
    uint64_t meta_bytes, meta_objects;
};

/* Replays `t` through the policy `policy` (a cache_policy_names() entry) with `capacity`
 * units: bytes, or objects when `by_objects`, optimising `objective` (see
 * cache_policy_set_objective()). A request whose size differs from the cached copy's is a
 * miss that replaces it. Returns 0 or -EINVAL (unknown policy). */
int plan_cachesim_run(const struct plan_trace *t, const char *policy, uint64_t capacity,
                      int by_objects, enum cache_policy_objective objective,
                      struct plan_sim_result *out);
/* The same replay, writing the index of every missed request, in order, to miss_idx (room
 * for t->nreq; out->misses of them are written). A capacity of 0 misses everything. */
int plan_cachesim_replay(const struct plan_trace *t, const char *policy, uint64_t capacity,
                         int by_objects, enum cache_policy_objective objective, uint64_t *miss_idx,
                         struct plan_sim_result *out);

/* Belady's MIN: on a miss, admit and evict the resident objects whose next request is
 * furthest away until the newcomer fits (offline; the optimum for unit sizes). */
int plan_belady_run(const struct plan_trace *t, uint64_t capacity, int by_objects,
                    struct plan_sim_result *out);

/* `mlcdn cachesim`: argv[0] is "cachesim". Returns the process exit code. */
int cachesim_main(int argc, char **argv);
/* `mlcdn plan`: argv[0] is "plan". Returns the process exit code. */
int plan_main(int argc, char **argv);

#endif
