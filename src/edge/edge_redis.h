/* src/edge/edge_redis.h: the Redis shared tier ("L1 Redis"), between L2 and the parent.
 *
 * The edges of one region share hot objects through one Redis. A struct edge_redis holds
 * the configuration, the counters and the circuit breaker, shared by every worker loop;
 * each loop has its own async hiredis connection (struct edge_redis_conn) and touches it
 * only from that loop. Nothing here may fail or slow a client request: a GET has a
 * deadline (answered as a miss when it passes), calls are skipped at once while the
 * connection is down, and after 3 consecutive failures the breaker opens and the tier
 * skips itself until a probe after a back-off (0.5 s doubling to 5 s) succeeds.
 *
 * Redis key: "mlcdn:obj:" + hex XXH3-128 of the primary key text; each is also listed in
 * the set "mlcdn:path:" + hex XXH3-128 of its path and query, for PURGE. Value: sealed
 * (cache_pack_seal(): magic, version, length and checksum of everything) around the
 * cache_pack_meta() bytes (which carry the primary key, checked on read) and the body.
 * A value that does not verify is never served: the GET is a miss (the next tier or the
 * origin answers, and the refetch stores a good copy), it is counted in `corrupt`, logged
 * once and deleted unless it changed since it was read. */
#ifndef MLCDN_EDGE_EDGE_REDIS_H
#define MLCDN_EDGE_EDGE_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "cache/cache_obj.h"

struct edge_redis;      /* opaque, shared by all loops; edge__redis_new() / edge__redis_free() */
struct edge_redis_conn; /* opaque, one per loop; edge__redis_loop_init() / _loop_fini() */

#define EDGE_REDIS_TIMEOUT_DEFAULT_MS 50
#define EDGE_REDIS_MAX_OBJECT_DEFAULT (1u << 20)

/* url: redis://[[user]:password@]HOST[:PORT][/DB], HOST a name, an IPv4 address or
 * [IPv6]; port 6379 and db 0 by default. Bodies larger than max_object are not stored
 * (0: EDGE_REDIS_MAX_OBJECT_DEFAULT); timeout_ms is each GET's deadline, and must cover
 * the transfer of a max_object value (0: EDGE_REDIS_TIMEOUT_DEFAULT_MS). Returns 0 with
 * the tier in *out (caller owns it), or -EINVAL with a message naming the URL (password
 * masked) in err. No connection is made here. */
int edge__redis_new(const char *url, uint64_t max_object, uint64_t timeout_ms,
                    struct edge_redis **out, char *err, size_t errlen);
/* Frees the tier and NULLs *r; every loop must have been finalised. */
void edge__redis_free(struct edge_redis **r);

/* Attaches the tier to `loop` (call on the loop's thread) and starts connecting in the
 * background; calls are skipped until the connection is up. The loop owns the result
 * until edge__redis_loop_fini(). */
struct edge_redis_conn *edge__redis_loop_init(struct edge_redis *r, uv_loop_t *loop);
/* On the loop's thread, not from inside an edge_redis callback: answers every pending
 * GET (NULL unless already decoded), drops the connection, closes the handles and NULLs
 * *c. The memory is released by close callbacks, so the loop must run afterwards; it
 * then has nothing of this tier left (uv_loop_close() succeeds). */
void edge__redis_loop_fini(struct edge_redis_conn **c);

/* o: a new reference for the callee (complete body in memory), or NULL on a miss, an
 * error, a timeout, a skipped call or a bad value. pkey/plen: the key passed
 * to edge__redis_get(), valid during the call only. */
typedef void edge_redis_get_cb(void *arg, struct cache_obj *o, const char *pkey, size_t plen);

/* Looks up primary key key[0..klen). cb runs exactly once, on this loop, never inside
 * edge__redis_get() itself, within the deadline (plus loop latency). */
void edge__redis_get(struct edge_redis_conn *c, const char *key, size_t klen, edge_redis_get_cb *cb,
                     void *arg);
/* Fire and forget: stores o's metadata and body under the key with SET ... PX ttl_ms.
 * Skipped when ttl_ms is 0, the body is missing, incomplete or larger than max_object,
 * the breaker is not closed or the connection is down. Copies what it needs; the caller
 * keeps its reference. */
void edge__redis_put(struct edge_redis_conn *c, const char *key, size_t klen,
                     const struct cache_obj *o, uint64_t ttl_ms);
/* Fire and forget DEL of the key (PURGE/invalidation). Sent whenever the connection is
 * up, even with the breaker open, since a purge left in Redis would be served again by
 * other edges; one that could not be sent or was not acknowledged counts in del_failed. */
void edge__redis_del(struct edge_redis_conn *c, const char *key, size_t klen);

/* deleted: how many copies Redis deleted (>= 0) once it acknowledged the deletes, or
 * -ENOTCONN (this loop is not connected) or -EIO (an error reply, or the connection was
 * lost before the answer): then copies may remain. */
typedef void edge_redis_purge_cb(void *arg, int64_t deleted);
/* PURGE: deletes the copies of path and query pathq[0..plen) (a primary key from its first
 * '/'): host's alone when host is not NULL, else every host's that the path index lists
 * (each put lists its copy there first). cb runs exactly once, after Redis acknowledged
 * the deletes; it may run before this returns when nothing could be sent. Sent whenever
 * the connection is up, even with the breaker open. */
void edge__redis_purge(struct edge_redis_conn *c, const char *host, size_t hlen, const char *pathq,
                       size_t plen, edge_redis_purge_cb *cb, void *arg);
/* Tag purge: deletes the copies that the tag index of tag[0..tlen) lists (each put lists
 * its copy under each of its Surrogate-Key / Cache-Tag values first). cb as for
 * edge__redis_purge(). */
void edge__redis_purge_tag(struct edge_redis_conn *c, const char *tag, size_t tlen,
                           edge_redis_purge_cb *cb, void *arg);

/* Counters summed over every loop since edge__redis_new(). */
struct edge_redis_stats {
    uint64_t hits;
    uint64_t misses;              /* not in Redis, or stored under another primary key */
    uint64_t errors;              /* timeouts, connection failures, error replies, values over
                                     the read cap, no memory for a body */
    uint64_t corrupt;             /* values that failed verification (frame, length, checksum,
                                     metadata), each also a miss for its request */
    uint64_t timeouts;            /* GETs answered at their deadline */
    uint64_t skipped_open;        /* calls skipped by the open breaker */
    uint64_t skipped_down;        /* calls skipped because this loop was not connected */
    uint64_t stores;              /* SETs acknowledged */
    uint64_t store_skipped_large; /* puts skipped: body (or metadata) over the limit */
    uint64_t del_failed;          /* DELs not sent or not acknowledged */
    uint64_t breaker_trips;       /* closed -> open transitions */
    int breaker_open;             /* now: 1 when open or half-open */
};
void edge__redis_stats(const struct edge_redis *r, struct edge_redis_stats *out);
/* "closed", "open" or "half-open" (static string), for /health and logs. */
const char *edge__redis_state(const struct edge_redis *r);

/* Module-private, for the unit tests and the fuzzer: decodes the value v[0..n) that a
 * GETRANGE 0 cap of key[0..klen) read (n > cap: the value is longer than the cap). Returns
 * 0 with a new object (body attached) in *out; -ENOENT when empty or another key's object;
 * -EFBIG when a sound frame declares more than cap; -EBADMSG, with a static reason in
 * *why, when the value is bad (frame, length, checksum or metadata); -ENOMEM. */
int edge__redis_value_decode(const void *v, size_t n, uint64_t cap, const char *key, size_t klen,
                             struct cache_obj **out, const char **why);

#endif
