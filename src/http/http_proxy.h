/* src/http/http_proxy.h: what a proxy does with a response head it received. Pure: no I/O.
 *
 * The edge gets an upstream's response head as header lines (libcurl parsed the status
 * line and framed the body). Before any of it is trusted, http_proxy_resp_parse() checks
 * the framing the lines announce (RFC 9112 §6.3: an unrecoverable framing error in a
 * response received by a proxy means 502 and closing the upstream connection) and the
 * lines themselves, and builds the header block the edge stores and forwards: no
 * hop-by-hop fields nor those named by Connection (RFC 9110 §7.6.1), no framing fields
 * (the edge frames its own responses), no Age (recomputed). http_proxy_merge_304()
 * updates a stored block with the fields of a 304 (RFC 9111 §3.2).
 *
 * A stored block is "Name: value\r\n" lines: Name a token, value without CR, LF or NUL and
 * without surrounding whitespace; it is NUL-terminated and no longer than
 * HTTP_PROXY_HDRS_MAX. */
#ifndef MLCDN_HTTP_HTTP_PROXY_H
#define MLCDN_HTTP_HTTP_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "http/http_cache.h"

#define HTTP_PROXY_HDRS_MAX (256u << 10)

/* A response head as the edge keeps it. Everything owned is freed by
 * http_proxy_resp_fini(). */
struct http_proxy_resp {
    struct http_resp_info info; /* caching facts of every field (stored or not) */
    char *hdrs;                 /* the stored block, owned, never NULL */
    size_t hdrs_len;
    char *etag;             /* the ETag value, owned; NULL when absent */
    char *vary;             /* Vary names lower-cased, joined by ","; owned; NULL when absent */
    int64_t content_length; /* the body length the head announces; -1 when it does not */
    int chunked;            /* the body is chunked (content_length is then -1) */
};

/* Parses the field lines `lines` (each ended by LF or CRLF, as received; no status line,
 * no empty line) of a final response with `status` in HTTP/1.`version_minor`. `no_body`
 * says the response has no body whatever its fields say (the request was HEAD, or the
 * status is 1xx, 204 or 304: RFC 9112 §6.3 rule 1); transfer codings are then not
 * checked. `now` is when the response arrived (for an absent Date).
 * Returns 0 with *out filled (the caller owns it), or -EPROTO and *why (a short static
 * reason) when the head must be refused: a field line that is not `token ":" value`
 * (obs-fold included), CR or NUL in a value, Content-Length not 1*DIGIT or differing
 * values (lines or a list; identical ones are one value), Transfer-Encoding with
 * Content-Length, Transfer-Encoding in HTTP/1.0, a coding other than a single final
 * chunked; -E2BIG when the stored block would exceed HTTP_PROXY_HDRS_MAX. *out is left
 * untouched on error. */
int http_proxy_resp_parse(struct http_proxy_resp *out, int status, int version_minor, int no_body,
                          const char *lines, size_t len, int64_t now, const char **why);
void http_proxy_resp_fini(struct http_proxy_resp *r);

/* The stored block `old` updated with the fields of a 304's field lines (RFC 9111 §3.2):
 * every stored field the 304 also carries is replaced by the 304's, the others are kept;
 * the 304's fields are filtered as for storing, and so are the lines of `old` (those that
 * are not valid field lines, or not fields a stored block holds, are dropped). Returns a new block (the caller frees it) and its length in
 * *outlen, or NULL when the result would exceed HTTP_PROXY_HDRS_MAX. */
char *http_proxy_merge_304(const char *old, size_t oldlen, const char *lines, size_t len,
                           size_t *outlen);

/* Is `name` a hop-by-hop field (RFC 9110 §7.6.1), never forwarded nor stored? */
int http_proxy_hop_by_hop(const char *name, size_t n);

#endif
