/* src/cache/cache_pred.h: the prediction cache.
 *
 * Maps a key (model version identity + the input tensors' bytes of one row) to the
 * output bytes of that row. Sharded hash table; each shard has its own eviction policy
 * (cache_policy.h) and lock; entries are charged their bytes (entry header + key +
 * value), so the budget is a byte budget. Keys are hashed with XXH3-128 and compared in
 * full. Values are copied in and out: no reference outlives a call, so an entry evicted
 * by another thread can never be read after free. Thread-safe. */
#ifndef MLCDN_CACHE_CACHE_PRED_H
#define MLCDN_CACHE_CACHE_PRED_H

#include <stddef.h>
#include <stdint.h>

#include "cache/cache_policy.h"

struct cache_pred; /* opaque; cache_pred_new() / cache_pred_free() */

struct cache_pred_stats {
    uint64_t entries, bytes, capacity;
    uint64_t hits, misses, inserts, evictions, rejected;
};

/* New cache of max_bytes (split evenly over nshards, 0 = 16) with eviction `policy`
 * (cache_policy_names()) optimising `objective` (rows served from cache: objects).
 * Returns 0, or -EINVAL for an unknown policy or a zero budget. The caller owns *out. */
int cache_pred_new(uint64_t max_bytes, const char *policy, enum cache_policy_objective objective,
                   unsigned nshards, struct cache_pred **out);
void cache_pred_free(struct cache_pred **cp);

/* Looks key up. On a hit copies the value into val (vcap bytes), sets *vlen and returns
 * 0; -ENOENT on a miss; -ENOSPC if the value is larger than vcap (counted as a miss). */
int cache_pred_get(struct cache_pred *c, const void *key, size_t klen, void *val, size_t vcap,
                   size_t *vlen);
/* Stores a copy of (key, value), replacing an entry with the same key. Returns 0, -E2BIG
 * when the policy refuses it (larger than a shard's budget or its admission rule), or
 * -ENOMEM when the payload allocation fails (the entry is simply not stored). */
int cache_pred_put(struct cache_pred *c, const void *key, size_t klen, const void *val,
                   size_t vlen);
/* Drops every entry. */
void cache_pred_clear(struct cache_pred *c);
void cache_pred_stats(struct cache_pred *c, struct cache_pred_stats *st);

#endif
