/* src/cache/cache_key.h: cache keys (host + path + normalised query + Vary'd headers).
 *
 * The key text is what is stored and compared in full; its XXH3-128 hash picks the
 * bucket. Two requests share an entry exactly when their key texts are equal, so all
 * normalisation (host case, default port, percent-encoding of unreserved characters,
 * query parameter order, ignored parameters, Vary'd header whitespace) happens here. */
#ifndef MLCDN_CACHE_CACHE_KEY_H
#define MLCDN_CACHE_CACHE_KEY_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "http/http_parse.h"

struct cache_key_opts {
    const char *const *ignore_params; /* query parameter names left out of the key */
    size_t n_ignore;
};

/* Appends the primary key "host/path?query" to out: host lowercased, ":80" dropped,
 * path with %XX of unreserved characters decoded and other %xx upper-cased, query
 * parameters sorted by name (stable: equal names keep their order) minus the ignored
 * ones, '?' only when parameters remain. Returns 0, -E2BIG (buffer cap) or -EINVAL for
 * a path or query that is not valid (bad %-escape). */
int cache_key_primary(struct buf *out, struct http_str host, struct http_str path,
                      struct http_str query, const struct cache_key_opts *opts);

/* Appends "\n<name lowercased>:<value>" for the request header `name` (Vary): repeated
 * fields joined with ",", whitespace around commas and runs of spaces folded. An absent
 * header appends "\n<name>:" followed by NUL-free marker "\x01" so absent != empty. */
int cache_key_vary_append(struct buf *out, const struct http_request *r, const char *name,
                          size_t nlen);

/* XXH3-128 of the key text. */
void cache_key_hash(const void *text, size_t len, uint8_t out[16]);

#endif
