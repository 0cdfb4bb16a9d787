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

/* Per-route query rules (src/edge/edge_routes.h), applied on top of cache_key_opts. The
 * arrays are borrowed: they must outlive the call. */
struct cache_key_query {
    int drop;                /* no query in the key at all */
    const char *const *keep; /* n_keep > 0: only these parameter names are kept */
    size_t n_keep;
    const char *const *ignore; /* more names left out, besides opts->ignore_params */
    size_t n_ignore;
};

/* cache_key_primary() with a route's query rules; rq NULL is cache_key_primary() itself.
 * Names are compared after %-normalisation, as the ignore list is. Same errors. */
int cache_key_primary_ex(struct buf *out, struct http_str host, struct http_str path,
                         struct http_str query, const struct cache_key_opts *opts,
                         const struct cache_key_query *rq);

/* Appends the canonical form of the JSON document body[0..len) to out, so that bodies
 * meaning the same value give the same bytes (src/cache/cache_key_json.c): no whitespace,
 * object members sorted by the UTF-8 bytes of their unescaped names, numbers rewritten
 * from their decimal text (exact past 2^53: 1, 1.0, 10E-1 are "1"; -0 is "0"), one escape
 * choice per character. Strict RFC 8259, nesting at most 64 deep; duplicate names and
 * exponents over 15 digits are refused. Returns 0; -EINVAL for a body that is not such a
 * document, with *err_pos its byte offset and *err_msg a static description ("unexpected
 * character", "duplicate key", "invalid UTF-8", ...); or -E2BIG past out's cap. On error
 * out is left as it was. err_pos and err_msg may be NULL. */
int cache_key_json_canon(const char *body, size_t len, struct buf *out, size_t *err_pos,
                         const char **err_msg);

#endif
