/* src/edge/edge_routes.h: the edge's route table (`routes` in the --config file).
 *
 * A route picks, by path prefix and method, how a request is keyed and kept: the body's
 * part of the key (canonical JSON or raw bytes, for POST predictions), the query rules
 * (sorted, dropped, whitelisted, more ignored names), a default freshness lifetime and a
 * body limit. The table is built once at start-up by edge__routes_load(), is read-only
 * afterwards and may be shared by every worker without locks; routes handed out point
 * into it and live until edge__routes_free(). docs: conf/edge.conf shows every field. */
#ifndef MLCDN_EDGE_EDGE_ROUTES_H
#define MLCDN_EDGE_EDGE_ROUTES_H

#include <stddef.h>
#include <stdint.h>

#include "cache/cache_key.h"
#include "core/buf.h"
#include "http/http_parse.h"

struct edge_routes; /* opaque; edge__routes_load() / edge__routes_free() */

enum edge_route_body {
    EDGE_ROUTE_BODY_NONE = 0, /* the body is not part of the key (default) */
    EDGE_ROUTE_BODY_RAW,      /* the body bytes as sent */
    EDGE_ROUTE_BODY_JSON,     /* the canonical JSON of the body (cache_key_json_canon) */
};

#define EDGE_ROUTE_M(m) (1u << (m)) /* bit of an enum http_method in edge_route.methods */

/* One route, read-only; every pointer is owned by the table. */
struct edge_route {
    unsigned magic;
#define EDGE_ROUTE_MAGIC 0x52544531u
    const char *prefix; /* starts with '/' */
    size_t prefix_len;
    unsigned methods; /* EDGE_ROUTE_M() bits; default GET and HEAD */
    enum edge_route_body key_body;
    int64_t ttl_s;                /* freshness for responses without any of their own
                                   * (and what makes a POST response storable); -1: none */
    uint64_t max_body;            /* request body limit, bytes (default 1 MiB) → 413 */
    struct cache_key_query query; /* for cache_key_primary_ex(): drop / query_keys /
                                   * ignore_params */
    size_t index;                 /* position in the file's list, for messages */
};

/* Reads the `routes` list of the libconfig file at path (path NULL, or a file without
 * `routes`: an empty table). Returns 0 and a new table in *out (freed by
 * edge__routes_free()), or -EINVAL with a message in err naming the file, the route and
 * the field ("conf/edge.conf: routes[1].methods: unknown method 'FOO'"). */
int edge__routes_load(const char *path, struct edge_routes **out, char *err, size_t errlen);
/* Frees the table and every route in it; sets *rtp to NULL. */
void edge__routes_free(struct edge_routes **rtp);

/* Number of routes, and route i in the file's order (i < count). rt may be NULL (0). */
size_t edge__routes_count(const struct edge_routes *rt);
const struct edge_route *edge__routes_get(const struct edge_routes *rt, size_t i);

/* The route for a request: the longest prefix, among the routes accepting m, that path
 * starts with (a prefix not ending in '/' must be followed by '/' or the end, so
 * "/predict" matches "/predict/x" but not "/predictions"). NULL when none (or rt NULL).
 * No allocation: for the request hot path. */
const struct edge_route *edge__routes_match(const struct edge_routes *rt, const char *path,
                                            size_t plen, enum http_method m);

/* 1 when route r's prefix covers path[0..plen) (whatever the method), by the rule of
 * edge__routes_match(). */
int edge__route_covers(const struct edge_route *r, const char *path, size_t plen);

/* Appends the route's part of the key, to follow the primary key (which the caller builds
 * with cache_key_primary_ex(..., &r->query) so the route's query rules apply): for a POST
 * on a key_body route, "\nbody:" and the hex XXH3-128 of the canonical JSON (or of the
 * raw bytes), so large bodies do not make large keys; nothing otherwise. Returns 0;
 * -EFBIG for a body over max_body; -EINVAL for a body that is not JSON, with err "invalid
 * JSON body at byte N: <why>"; -E2BIG past out's cap. On error out is left as it was. */
int edge__route_key(const struct edge_route *r, const struct http_request *req, const char *body,
                    size_t blen, struct buf *out, char *err, size_t errlen);

#endif
