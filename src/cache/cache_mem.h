/* src/cache/cache_mem.h: L1, the in-memory object store of an edge.
 *
 * A sharded hash table of entries, one entry per primary key (host + path + query),
 * each holding the variants of that key (one per distinct set of Vary'd request header
 * values). Each shard has its own lock and its own eviction-policy instance with an
 * equal share of the byte budget; the budget counts each object's body, headers, key and
 * a fixed per-object overhead (L1_OBJ_OVERHEAD). The store holds one reference on each
 * indexed object; lookups hand out new references (see cache_obj.h). */
#ifndef MLCDN_CACHE_CACHE_MEM_H
#define MLCDN_CACHE_CACHE_MEM_H

#include <stddef.h>
#include <stdint.h>

#include "cache/cache_obj.h"
#include "core/buf.h"
#include "http/http_parse.h"

struct l1; /* opaque; l1_new() / l1_free() */

#define L1_OBJ_OVERHEAD 512u

/* Creates a store of `budget` bytes with the named eviction policy optimising `objective`
 * (object hits for a memory tier). Returns 0 or -EINVAL (unknown policy). The caller owns
 * *out. */
int l1_new(uint64_t budget, const char *policy, enum cache_policy_objective objective,
           unsigned nshards, struct l1 **out);
void l1_free(struct l1 **c);

/* Looks up the variant of primary key `pkey` that matches the request's Vary'd headers.
 * Returns 0 with a new reference in *out, or -ENOENT. A Vary: * entry never matches. */
int l1_lookup(struct l1 *c, const char *pkey, size_t plen, const struct http_request *req,
              struct cache_obj **out);

/* Stores `o` (its vary/vkey set by the caller from the response's Vary and the request)
 * under pkey, replacing the variant with the same vkey. The store takes its own
 * reference; the caller keeps its own. Returns 0, -EFBIG when the policy refused it
 * (too large), or -EEXIST if `o` is already indexed. */
int l1_insert(struct l1 *c, const char *pkey, size_t plen, struct cache_obj *o);

/* The L1 admission of an object whose body is still to come, decided while its response
 * head can still say so (Cache-Status): body_len is the announced length. The verdict is
 * kept in o; l1_insert() then honours it (an admitted object is stored whatever the
 * policy would say by then, a refused one is not offered again). Returns 0 when L1 will
 * store o, -EFBIG when it will not. */
enum { L1_VERDICT_NONE = 0, L1_VERDICT_ADMIT = 1, L1_VERDICT_REFUSE = 2 };
int l1_judge(struct l1 *c, const char *pkey, size_t plen, struct cache_obj *o, uint64_t body_len);

/* Replaces stored object `old` by `fresh` (e.g. headers refreshed by a 304) if `old` is
 * still indexed; returns 0 or -ENOENT. */
int l1_replace(struct l1 *c, const char *pkey, size_t plen, struct cache_obj *old,
               struct cache_obj *fresh);

/* Drops every variant of pkey; returns how many objects were dropped. */
size_t l1_remove(struct l1 *c, const char *pkey, size_t plen);
/* Drops the variants of one object (the variant only). */
void l1_remove_obj(struct l1 *c, const char *pkey, size_t plen, struct cache_obj *o);
/* Drops every entry whose path-and-query equals `pathq` (normalised like the key), for
 * every host, or only for `host` when non-NULL. Returns the number of objects dropped. */
size_t l1_purge_path(struct l1 *c, const char *host, size_t hlen, const char *pathq, size_t plen);

/* Calls fn(arg, pkey, plen, o) for every stored object, one shard at a time under its
 * lock (fn must be quick and must not call into this store), and drops the objects for
 * which fn returns 1. Returns how many were dropped. For invalidation walks (bans). */
typedef int l1_walk_f(void *arg, const char *pkey, size_t plen, struct cache_obj *o);
size_t l1_walk(struct l1 *c, l1_walk_f *fn, void *arg);
/* The same for the variants of one primary key (a tag purge's keys). */
size_t l1_remove_if(struct l1 *c, const char *pkey, size_t plen, l1_walk_f *fn, void *arg);

/* Builds the vary part of the key for a request given a lowercased Vary list; appends
 * to out. Returns 0 or -E2BIG. */
int l1_vary_key(struct buf *out, const char *vary, const struct http_request *req);

/* Does object o (one Vary variant, its vary/vkey set) answer this request? 1 for an
 * object without Vary; 0 for Vary: * or other header values. */
int l1_variant_matches(const struct cache_obj *o, const struct http_request *req);

uint64_t l1_bytes(const struct l1 *c);
uint64_t l1_objects(const struct l1 *c);
uint64_t l1_budget(const struct l1 *c);

#endif
