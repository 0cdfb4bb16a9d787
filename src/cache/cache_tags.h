/* src/cache/cache_tags.h: the tag index of an edge's own stores (L1, L2).
 *
 * Maps each tag (a value of the origin's Surrogate-Key or Cache-Tag field) to the primary
 * keys stored with it, so that a tag purge finds its objects without a scan. The index is
 * a hint, never the judge: it may list a key whose object was evicted since, or whose new
 * copy no longer carries the tag, so the caller removes only the variants that really
 * carry the tag (and are older than the purge). It is bounded: past max_pairs (tag, key)
 * pairs it starts over empty, and the tag's ban (cache_ban.h), which the lurker applies,
 * still removes what the index forgot. One mutex guards it. */
#ifndef MLCDN_CACHE_CACHE_TAGS_H
#define MLCDN_CACHE_CACHE_TAGS_H

#include <stddef.h>
#include <stdint.h>

struct cache_tags; /* opaque; cache_tags_new() / cache_tags_free() */

/* A new empty index holding at most max_pairs (tag, key) pairs; the caller owns it. */
struct cache_tags *cache_tags_new(size_t max_pairs);
/* Frees the index; NULLs *tp. */
void cache_tags_free(struct cache_tags **tp);

/* Lists primary key pkey[0..plen) under every tag of tags[0..tlen) (separated by spaces,
 * commas or tabs; empty ones skipped; a pair already listed is not listed twice). Returns
 * how many new pairs were listed. Any thread. */
size_t cache_tags_add(struct cache_tags *t, const char *pkey, size_t plen, const char *tags,
                      size_t tlen);

/* Removes tag[0..tlen)'s list and calls fn(arg, pkey, plen) for each key it held, after
 * the index's lock is released (fn may call into the stores). Returns how many keys. */
typedef void cache_tags_key_f(void *arg, const char *pkey, size_t plen);
size_t cache_tags_take(struct cache_tags *t, const char *tag, size_t tlen, cache_tags_key_f *fn,
                       void *arg);

/* (tag, key) pairs listed now, and the times the index started over because it was full. */
size_t cache_tags_pairs(struct cache_tags *t);
uint64_t cache_tags_resets(struct cache_tags *t);

/* Calls fn(arg, tag, tlen) for each tag of the list tags[0..tlen) (the separators of
 * cache_tags_add). Pure. */
typedef void cache_tags_each_f(void *arg, const char *tag, size_t tlen);
void cache_tags_each(const char *tags, size_t tlen, cache_tags_each_f *fn, void *arg);

#endif
