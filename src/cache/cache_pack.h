/* src/cache/cache_pack.h: the serialized form of a stored response's metadata.
 *
 * Shared by the L2 disk store (the metadata part of each file) and the Redis tier (the
 * front of each value), so that both tiers read back exactly the object L1 would hold:
 * status, stored header lines, the times the freshness rules need (request/response
 * time, the origin's Age, the lifetime), the Vary list and the variant's key part, and
 * the primary key it was stored under. The body is not part of it.
 *
 * Layout (little endian): "MCPK", u16 version, u16 flags, i32 status, i64
 * request_time, i64 response_time, i64 lifetime, i64 age, then length-prefixed (u32)
 * pkey, hdrs, vkey, vary (length 0xffffffff = absent). Decoding checks every length
 * against the input and re-derives the parsed header facts from the stored lines. */
#ifndef MLCDN_CACHE_CACHE_PACK_H
#define MLCDN_CACHE_CACHE_PACK_H

#include <stddef.h>

#include "cache/cache_obj.h"
#include "core/buf.h"

#define CACHE_PACK_VERSION 1

/* Appends the metadata of `o`, stored under primary key pkey, to out. Returns 0 or
 * -E2BIG (out's cap). */
int cache_pack_meta(struct buf *out, const char *pkey, size_t plen, const struct cache_obj *o);

/* Decodes p[0..n): a new object (one reference for the caller, body NULL: the caller
 * attaches one) and a malloc'd copy of the primary key (caller frees; NUL-terminated).
 * Returns 0 or -EINVAL (truncated, bad magic or version, lengths out of range); on error
 * nothing is allocated. *used (may be NULL) receives the bytes consumed. */
int cache_unpack_meta(const void *p, size_t n, struct cache_obj **out, char **pkey, size_t *plen,
                      size_t *used);

#endif
