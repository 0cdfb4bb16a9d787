/* src/cache/cache_policy.h: the eviction-policy interface shared by every store.
 *
 * L1 (memory), L2 (disk), the prediction cache and `mlcdn cachesim` all drive the same
 * policy code through these calls, so a simulation replays exactly what the edge runs.
 * A store embeds one struct cache_pnode in each of its objects and finds its object
 * from a node with MC_CONTAINER_OF; the policy never allocates per object (ghost and
 * frequency state it keeps are bounded by the capacity).
 *
 * Locking: one policy instance per store shard. cache_policy_hit() may run concurrently
 * with other hits on the same instance (it only touches the node, with atomics);
 * every other call needs the shard's lock held by the caller.
 *
 * Sizes: the store chooses the unit. L1/L2 charge bytes (object size + overhead);
 * the prediction cache and `cachesim --by-objects` charge 1 per entry. */
#ifndef MLCDN_CACHE_CACHE_POLICY_H
#define MLCDN_CACHE_CACHE_POLICY_H

#include <stddef.h>
#include <stdint.h>

/* Per-object policy metadata, embedded in the store's object. Its layout is private to
 * the policies; its size is at most 48 bytes (checked by a static assertion). */
struct cache_pnode {
    uint64_t opaque[6];
};

struct cache_policy; /* opaque; cache_policy_new() / cache_policy_free() */

enum cache_policy_admit {
    CACHE_POLICY_ADMITTED = 0,
    CACHE_POLICY_REJECTED = 1, /* not stored: the caller drops the object (serves it uncached) */
};

/* Creates a policy by name ("lru", "fifo", "sieve", "s3fifo", "default", ...) with a
 * capacity in the store's unit. Returns 0, or -EINVAL for an unknown name (then *out is
 * untouched). The caller owns the policy and frees it with cache_policy_free(), after
 * removing or abandoning every node. */
int cache_policy_new(const char *name, uint64_t capacity, struct cache_policy **out);
void cache_policy_free(struct cache_policy **p);

/* The names cache_policy_new() accepts, NULL-terminated (static storage). */
const char *const *cache_policy_names(void);
const char *cache_policy_name(const struct cache_policy *p);

/* Offers a new object of `size` units whose key hashes to `hash` (the policy keeps hashes
 * for ghost/frequency state). On CACHE_POLICY_ADMITTED the node is linked and counted in
 * cache_policy_used(); the caller must then drain cache_policy_victim() until it returns
 * NULL (the victim may be the new node itself). On REJECTED the node is untouched. */
enum cache_policy_admit cache_policy_insert(struct cache_policy *p, struct cache_pnode *n,
                                            uint64_t hash, uint64_t size);

/* Decides now whether an object of `size` units would be admitted, for a store that must
 * say so before the object is complete: the policy's admission runs (ghost look-ups and
 * adaptation happen here, a refusal is remembered as cache_policy_insert() would) and its
 * outcome stays in n, unlinked. An ADMITTED node is later inserted with
 * cache_policy_insert_judged(); a REJECTED one is not offered again. */
enum cache_policy_admit cache_policy_judge(struct cache_policy *p, struct cache_pnode *n,
                                           uint64_t hash, uint64_t size);
/* Inserts a node cache_policy_judge() admitted, at its final size: only the store bound
 * (cache_policy_set_max_object) may still refuse it. Then as cache_policy_insert(). */
enum cache_policy_admit cache_policy_insert_judged(struct cache_policy *p, struct cache_pnode *n,
                                                   uint64_t size);

/* A hit on a resident node. Constant time; safe concurrently with other hits. */
void cache_policy_hit(struct cache_policy *p, struct cache_pnode *n);

/* Next node to evict while the policy is over capacity, already unlinked and uncounted;
 * NULL once within capacity. The caller removes the object from its index and drops it. */
struct cache_pnode *cache_policy_victim(struct cache_policy *p);

/* Unlinks a resident node the store drops on its own (purge, expiry, replacement). */
void cache_policy_remove(struct cache_policy *p, struct cache_pnode *n);

/* Changes the capacity (e.g. a disk that fills up); drain victims afterwards. */
void cache_policy_set_capacity(struct cache_policy *p, uint64_t capacity);
uint64_t cache_policy_capacity(const struct cache_policy *p);
uint64_t cache_policy_used(const struct cache_policy *p);
uint64_t cache_policy_count(const struct cache_policy *p);
/* Bytes of eviction metadata the policy accounts for now: the struct cache_pnode of each
 * resident object plus what the policy keeps beside them (ghost tables, frequency sketch;
 * its own struct excluded, a constant). Divided by cache_policy_count() it is the
 * metadata per resident object that `mlcdn cachesim` reports. */
uint64_t cache_policy_meta_bytes(const struct cache_policy *p);

/* Concurrency of hits, and size-aware admission. */

/* 1 if cache_policy_hit() may run concurrently with other hits (every policy but "lru",
 * whose hit reorders its list: a store using "lru" must hold its lock exclusively). */
int cache_policy_hit_concurrent(const struct cache_policy *p);

/* Size-aware admission: cache_policy_insert() refuses an object larger than `max_units`
 * (0 = the capacity, the default). Stores whose objects vary in size (L2, the Redis tier)
 * set a fraction of their capacity, so one giant object cannot flush many small hot ones;
 * see docs/internals/eviction.md. Policies may refuse more (e.g. a first-seen object
 * larger than their probation queue). */
void cache_policy_set_max_object(struct cache_policy *p, uint64_t max_units);
uint64_t cache_policy_max_object(const struct cache_policy *p);

/* While the store fills (nothing evicted yet), admits what the policy refuses when it fits
 * in the free space: there is nothing to protect yet, and a fresh cache that refuses a
 * first-seen large object it has room for looks broken to its users (L1 turns it on; off
 * by default, so simulations measure the policy alone). The policy's own bookkeeping of
 * the offer (ghosts, counts) is kept. */
void cache_policy_set_fill_admit(struct cache_policy *p, int on);

/* What the policy optimises: hits counted per object (latency; the memory tier and the
 * prediction cache) or per byte (origin bandwidth; the disk tier). The default policy
 * weighs an object's expected hits by its size under `bytes` and not under `objects`
 * when it decides whether a newcomer is worth the objects it would displace; the other
 * policies ignore it. Set it before the first insert. */
enum cache_policy_objective {
    CACHE_POLICY_OBJECTS = 0, /* the default */
    CACHE_POLICY_BYTES = 1,
};

/* "objects" or "bytes" -> *out; returns 0 or -EINVAL (then *out is untouched). */
int cache_policy_objective_parse(const char *s, enum cache_policy_objective *out);
const char *cache_policy_objective_name(enum cache_policy_objective o);
void cache_policy_set_objective(struct cache_policy *p, enum cache_policy_objective o);
enum cache_policy_objective cache_policy_objective(const struct cache_policy *p);

#endif
