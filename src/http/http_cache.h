/* src/http/http_cache.h: HTTP caching rules (RFC 9111, RFC 9213, RFC 9211). Pure: no I/O.
 *
 * Everything the edge needs to decide whether a response may be stored, how long it
 * is fresh, how old it is, whether a stored response answers a request, and how to
 * answer conditional and Range requests. Times are seconds since the epoch (int64_t);
 * -1 means "absent" for every optional number below. */
#ifndef MLCDN_HTTP_HTTP_CACHE_H
#define MLCDN_HTTP_HTTP_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "http/http_parse.h"

/* Parsed Cache-Control (or CDN-Cache-Control / Surrogate-Control) directives. Unknown
 * directives are ignored; a directive with an invalid value is treated as RFC 9111
 * §4.2.1 says (e.g. an invalid max-age makes the response stale: max_age = 0). */
struct http_cc {
    int present; /* at least one directive was seen */
    int64_t max_age;
    int64_t s_maxage;
    int64_t stale_while_revalidate;
    int64_t stale_if_error;
    int64_t max_stale; /* request; INT64_MAX for a bare max-stale */
    int64_t min_fresh; /* request */
    unsigned no_store : 1;
    unsigned no_cache : 1; /* unqualified no-cache (qualified forms: see no_cache_fields) */
    unsigned no_cache_fields : 1;
    unsigned private_ : 1; /* unqualified private */
    unsigned private_fields : 1;
    unsigned public_ : 1;
    unsigned must_revalidate : 1;
    unsigned proxy_revalidate : 1;
    unsigned must_understand : 1;
    unsigned immutable : 1;
    unsigned only_if_cached : 1;
    unsigned no_transform : 1;
};

void http_cc_init(struct http_cc *cc);
/* Adds the directives of one header field value (may be called for repeated fields). */
void http_cc_parse(struct http_cc *cc, const char *value, size_t len);

/* Parses an HTTP-date (IMF-fixdate, RFC 850, asctime). 0 and *out set, or -EINVAL. */
int http_date_parse(const char *s, size_t len, int64_t *out);
/* Formats IMF-fixdate into buf (>= 30 bytes), NUL-terminated; returns the length (29). */
size_t http_date_format(int64_t t, char *buf);

/* What the cache knows of a response, gathered from its header fields. */
struct http_resp_info {
    int status;
    struct http_cc cc;        /* Cache-Control */
    struct http_cc cdn_cc;    /* CDN-Cache-Control (RFC 9213); takes precedence when present */
    struct http_cc surrogate; /* Surrogate-Control; used when no CDN-Cache-Control */
    int64_t date;             /* Date header */
    int64_t expires;          /* Expires; an invalid Expires is a time in the past (0) */
    int64_t last_modified;
    int64_t age; /* Age header value */
    int has_expires;
    int vary_star;     /* Vary: * */
    int has_validator; /* ETag or Last-Modified */
    int pragma_no_cache;
    int has_set_cookie;
};

void http_resp_info_init(struct http_resp_info *ri);
/* Feeds one response header field (name and value as received). */
void http_resp_info_add(struct http_resp_info *ri, const char *name, size_t nlen, const char *value,
                        size_t vlen);

/* Call once all fields are added: fills in what RFC 9110 §6.6.1 says a recipient uses
 * for an absent Date (the time the response was received). */
void http_resp_info_finish(struct http_resp_info *ri, int64_t response_time);

/* What the cache knows of the request that caused the fetch. */
struct http_req_info {
    enum http_method method;
    int has_authorization;
    struct http_cc cc; /* request Cache-Control */
    int pragma_no_cache;
};

void http_req_info_from_request(struct http_req_info *qi, const struct http_request *r);

/* RFC 9111 §3 for a shared cache: may this response be stored? Returns 1 or 0; when 0 and
 * why != NULL, *why is a short static reason ("no-store", "private", "status", ...).
 * `heuristic_ok` says whether the status is heuristically cacheable (done internally). */
int http_cache_storable(const struct http_req_info *qi, const struct http_resp_info *ri,
                        const char **why);

/* Freshness lifetime in seconds (RFC 9111 §4.2.1) for a shared cache, using
 * CDN-Cache-Control, then Surrogate-Control, then s-maxage, max-age, Expires - Date,
 * then the heuristic (10% of Date - Last-Modified, capped at `heuristic_max` seconds)
 * for heuristically cacheable statuses. 0 when stale on arrival. */
int64_t http_freshness_lifetime(const struct http_resp_info *ri, int64_t heuristic_max);

/* Current age (RFC 9111 §4.2.3). response_time = when the response was received,
 * request_time = when the request was sent, now = now (all epoch seconds). */
int64_t http_current_age(const struct http_resp_info *ri, int64_t request_time,
                         int64_t response_time, int64_t now);

/* How a stored response may be used for a request (RFC 9111 §4, §4.2.4 + RFC 5861). */
enum http_reuse {
    HTTP_REUSE_FRESH,      /* serve it */
    HTTP_REUSE_STALE_OK,   /* stale, but may be served while revalidating (s-w-r) */
    HTTP_REUSE_REVALIDATE, /* must revalidate before use (stale, or no-cache) */
};

/* Decides reuse from the stored response's lifetime, its current age, its directives and
 * the request's directives (no-cache, max-age, min-fresh, max-stale). */
enum http_reuse http_cache_reuse(const struct http_req_info *qi, const struct http_resp_info *ri,
                                 int64_t lifetime, int64_t age);

/* May a stale response be served because the origin failed (stale-if-error, RFC 5861 §4)?
 * `default_sie` is the configured default window in seconds (-1 none). must-revalidate
 * and proxy-revalidate forbid it. */
int http_cache_stale_if_error_ok(const struct http_resp_info *ri, int64_t lifetime, int64_t age,
                                 int64_t default_sie);

/* Evaluates If-None-Match / If-Modified-Since of a GET/HEAD request against a stored
 * response (RFC 9110 §13.2.2): returns 304 when the stored response is "not modified",
 * 412 for a failed If-Match/If-Unmodified-Since, 0 when it should be sent in full.
 * etag may be NULL (len 0); last_modified -1 when unknown. */
int http_cache_conditional(const struct http_request *r, const char *etag, size_t etag_len,
                           int64_t last_modified);

/* Range (RFC 9110 §14): parses a Range header against a representation of `size` bytes.
 * Returns 1 and sets [*first, *last] (inclusive) for one satisfiable byte range;
 * 0 when the header should be ignored (absent, not bytes, several ranges, syntax error;
 * and the caller ignores it too when http_range_if_range_ok() says no: 200, whole body);
 * -416 when unsatisfiable. */
int http_range_parse(const char *value, size_t len, uint64_t size, uint64_t *first, uint64_t *last);

/* If-Range (RFC 9110 §13.1.5) of request r against the stored response: 1 when there is
 * no If-Range or it matches (strong entity-tag comparison, or a date equal to
 * Last-Modified), so a Range may be honoured; 0 when the whole body must be sent. */
int http_range_if_range_ok(const struct http_request *r, const char *etag, size_t etag_len,
                           int64_t last_modified);

/* Weak comparison of two entity-tags (RFC 9110 §8.8.3.2): W/"a" matches "a". */
int http_etag_weak_eq(const char *a, size_t alen, const char *b, size_t blen);

/* Splits a comma-separated list field (Vary, Connection, ...), calling cb for each
 * trimmed non-empty element; stops early when cb returns non-zero (and returns that). */
int http_list_each(const char *value, size_t len,
                   int (*cb)(const char *item, size_t ilen, void *arg), void *arg);

/* Walks a block of stored header lines ("Name: value\r\n" each), calling fn with each
 * field's name and its value trimmed of surrounding whitespace; lines without a colon
 * are skipped. */
void http_header_lines_each(const char *p, size_t len,
                            void (*fn)(const char *name, size_t nlen, const char *value,
                                       size_t vlen, void *arg),
                            void *arg);

#endif
