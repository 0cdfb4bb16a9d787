/* src/core/edgestat.h: what an operator looks at on an edge, read from its /metrics.
 *
 * `mlcdn ctl stats|top|plot` and the router's dashboard all show the same figures; this
 * is where they are computed, from the edge's own metric names (docs/operations.md): request
 * counts by the tier that answered, the last-byte latency histogram of each tier, bytes
 * served and fetched, errors, loaded model versions and predictions per version.
 *
 * A struct edgestat is a snapshot of counters (monotonic since the edge started);
 * edgestat_delta() turns two snapshots into the activity between them (a restart between
 * them reads as the later snapshot alone). Plain values, no pointers: copy freely. */
#ifndef MLCDN_CORE_EDGESTAT_H
#define MLCDN_CORE_EDGESTAT_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* The tiers of X-Cache-Level, nearest first, as the edge's `level` label spells them. */
#define EDGESTAT_TIER_LIST(X) X(L1) X(L2) X(REDIS) X(PARENT) X(ORIGIN)
#define EDGESTAT_TIER_ENUM(n) EDGESTAT_##n,
enum edgestat_tier { EDGESTAT_TIER_LIST(EDGESTAT_TIER_ENUM) EDGESTAT_TIERS };
#undef EDGESTAT_TIER_ENUM

#define EDGESTAT_MAX_BUCKETS 96
#define EDGESTAT_MAX_MODELS 32

/* A Prometheus histogram: upper bounds in seconds (the last is +Inf) and counts per
 * bucket (not cumulative). */
struct edgestat_hist {
    size_t n;
    double le[EDGESTAT_MAX_BUCKETS];
    double cnt[EDGESTAT_MAX_BUCKETS];
    double count, sum;
};

struct edgestat_model {
    char name[64];
    int64_t version;
    double loaded;      /* mlcdn_model_info's value: 1 while loaded */
    double predictions; /* mlcdn_predict_model_requests_total, every endpoint and status */
};

struct edgestat {
    double requests; /* answered, every tier and cache status */
    double tier_requests[EDGESTAT_TIERS];
    double tier_bytes[EDGESTAT_TIERS];
    double bytes_served, bytes_origin;
    double responses_5xx, origin_errors;
    struct edgestat_hist lat[EDGESTAT_TIERS]; /* to the last byte */
    size_t nmodels;
    struct edgestat_model models[EDGESTAT_MAX_MODELS];
};

/* "L1", "L2", "REDIS", "PARENT", "ORIGIN". */
const char *edgestat_tier_name(enum edgestat_tier t);

/* Reads an edge's /metrics text. Returns 0, or -EINVAL with err naming the problem (not
 * Prometheus text, or no mlcdn_edge_requests_total: not an edge). */
int edgestat_parse(const char *text, size_t len, struct edgestat *out, char *err, size_t errlen);

/* out = cur - prev, counter by counter; when any counter went down (the edge restarted),
 * out = cur. Models come from cur, their predictions as a difference. */
void edgestat_delta(const struct edgestat *prev, const struct edgestat *cur, struct edgestat *out);

/* acc += s (histograms with other bounds than acc's are left out of acc). Models are
 * merged by name and version. */
void edgestat_add(struct edgestat *acc, const struct edgestat *s);

/* Quantile q (0..1) in seconds by linear interpolation inside the bucket holding it (as
 * PromQL's histogram_quantile); -1 when the histogram is empty. */
double edgestat_quantile(const struct edgestat_hist *h, double q);

/* Bytes clients got from a cache tier rather than from the origin (L1, L2, Redis, parent). */
double edgestat_bytes_saved(const struct edgestat *s);

/* Appends s as a JSON object: requests, per tier {requests, share, bytes, p50, p95, p99
 * (seconds or null), buckets: [[le, count]...] when `buckets`}, bytes, errors, models.
 * `seconds` > 0 adds the per-second rates over that interval. Returns 0 or -E2BIG. */
int edgestat_json(const struct edgestat *s, double seconds, int buckets, struct buf *out);

#endif
