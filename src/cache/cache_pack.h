/* src/cache/cache_pack.h: the serialized form of a stored response's metadata.
 *
 * Shared by the L2 disk store (the metadata part of each file) and the Redis tier (the
 * front of each value), so that both tiers read back exactly the object L1 would hold:
 * status, stored header lines, the times the freshness rules need (request/response
 * time, the origin's Age, the lifetime), the Vary list and the variant's key part, and
 * the primary key it was stored under. The body is not part of it.
 *
 * Layout (little endian): "MCPK", u16 version, u16 flags, i32 status, i64
 * request_time, i64 response_time, i64 lifetime, i64 age, i64 stored_us (version 2; a
 * version 1 record, without it, reads as stored at the start of its request_time's
 * second), then length-prefixed (u32) pkey, hdrs, vkey, vary (length 0xffffffff =
 * absent). Decoding checks every length
 * against the input and re-derives the parsed header facts from the stored lines.
 *
 * Sealed values: a store that other processes write to and that offers no integrity of
 * its own (the Redis tier) keeps each value behind a frame, so that a damaged, cut or
 * foreign value is refused before anything in it is believed. Frame (little endian, 24
 * bytes): "MCSV", u16 version, u16 flags (0), u64 checksum of every byte after it (the
 * length field and the payload), u64 payload length; the payload follows. The checksum
 * is cache_pack_sum(), the one the L2 file headers use. */
#ifndef MLCDN_CACHE_CACHE_PACK_H
#define MLCDN_CACHE_CACHE_PACK_H

#include <stddef.h>
#include <stdint.h>

#include "cache/cache_obj.h"
#include "core/buf.h"

#define CACHE_PACK_VERSION 2
#define CACHE_SEAL_LEN 24
#define CACHE_SEAL_VERSION 1

/* Appends the metadata of `o`, stored under primary key pkey, to out. Returns 0 or
 * -E2BIG (out's cap). */
int cache_pack_meta(struct buf *out, const char *pkey, size_t plen, const struct cache_obj *o);

/* Decodes p[0..n): a new object (one reference for the caller, body NULL: the caller
 * attaches one) and a malloc'd copy of the primary key (caller frees; NUL-terminated).
 * Returns 0 or -EINVAL (truncated, bad magic or version, lengths out of range); on error
 * nothing is allocated. *used (may be NULL) receives the bytes consumed. */
int cache_unpack_meta(const void *p, size_t n, struct cache_obj **out, char **pkey, size_t *plen,
                      size_t *used);

/* XXH3-64 of p[0..n): the checksum of every stored header and value (L2 file headers,
 * sealed values). */
uint64_t cache_pack_sum(const void *p, size_t n);

/* Writes the frame in front of a payload of n bytes that the caller has already placed at
 * v + CACHE_SEAL_LEN; the sealed value is v[0..CACHE_SEAL_LEN + n). */
void cache_pack_seal(void *v, size_t n);
/* Reads only the frame at the start of v[0..n): 0 with the value's declared total length
 * (frame + payload) in *total, or -EBADMSG with a static reason in *why (shorter than a
 * frame, not a sealed value, another version, unknown flags). Tells a value longer than
 * what a reader fetched from one that is damaged. */
int cache_pack_seal_len(const void *v, size_t n, uint64_t *total, const char **why);
/* Verifies the whole sealed value v[0..n): the frame as above, n equal to its declared
 * length, and the checksum. Returns 0 (the payload is v[CACHE_SEAL_LEN..n)) or -EBADMSG
 * with a static reason in *why. */
int cache_pack_unseal(const void *v, size_t n, const char **why);

#endif
