/* src/edge/edge_origin.h: a circuit breaker per upstream (the --parent edge and each
 * --origin), shared by every worker loop.
 *
 * CLOSED: requests go to the upstream; `failures` consecutive connect failures or
 * timeouts before a response open the breaker. OPEN: nothing is sent to the upstream for
 * the cool-down; callers skip it (next upstream, stale object, or 503). HALF-OPEN: after
 * the cool-down one caller gets the probe; its response closes the breaker, its failure
 * opens it for another cool-down. A probe that ends without a verdict (cancelled) lets
 * the next caller probe; one that never reports is replaced after `probe_ms`.
 *
 * Any thread may call any function; the state is read lock-free, transitions take the
 * upstream's mutex, and each transition is logged once and counted in the metrics. */
#ifndef MLCDN_EDGE_EDGE_ORIGIN_H
#define MLCDN_EDGE_EDGE_ORIGIN_H

#include <stddef.h>
#include <stdint.h>

struct edge_origins; /* opaque; edge__origins_new() / edge__origins_free() */

enum edge_origin_state { EDGE_ORIGIN_CLOSED = 0, EDGE_ORIGIN_OPEN = 1, EDGE_ORIGIN_HALF = 2 };
enum edge_origin_verdict { EDGE_ORIGIN_PASS, EDGE_ORIGIN_PROBE, EDGE_ORIGIN_SKIP };

/* Breakers for the n upstreams `urls` (copied). failures == 0 disables them: every call
 * then passes. probe_ms bounds how long an unreported probe holds the half-open slot.
 * Registers the metrics (series of the same URL are shared with an earlier edge). The
 * caller owns the result. */
struct edge_origins *edge__origins_new(const char *const *urls, size_t n, unsigned failures,
                                       uint64_t cooldown_ms, uint64_t probe_ms);
void edge__origins_free(struct edge_origins **os);

/* May a request go to upstream idx now (monotonic ms)? PROBE hands the caller the
 * half-open slot: it must report the outcome (success, failure or probe_end). */
enum edge_origin_verdict edge__origin_allow(struct edge_origins *os, size_t idx, uint64_t now_ms);
/* The upstream answered (a response head arrived, whatever its status). */
void edge__origin_success(struct edge_origins *os, size_t idx);
/* A connect failure or a timeout before the response; probe: the caller held the slot. */
void edge__origin_failure(struct edge_origins *os, size_t idx, int probe, const char *why,
                          uint64_t now_ms);
/* The probe ended without telling anything (cancelled): the next caller probes. */
void edge__origin_probe_end(struct edge_origins *os, size_t idx);
/* Counts a request that did not go to upstream idx because its breaker is open. */
void edge__origin_skipped(struct edge_origins *os, size_t idx);
/* "origin URL is failing: ..." for the 503 of a request no upstream could take; static
 * for the life of os. */
const char *edge__origin_down_msg(const struct edge_origins *os, size_t idx);
enum edge_origin_state edge__origin_state(const struct edge_origins *os, size_t idx);

#endif
