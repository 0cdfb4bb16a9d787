/* src/http/http_range.h: the answer to a Range request (RFC 9110 §14), one for every
 * server of a representation (the edge, the reference origin).
 *
 * The lower-level pieces, http_range_parse() and http_range_if_range_ok(), are declared
 * in http/http_cache.h; http_range_answer() is what a handler calls. Pure: no I/O, no
 * allocation. */
#ifndef MLCDN_HTTP_HTTP_RANGE_H
#define MLCDN_HTTP_HTTP_RANGE_H

#include <stddef.h>
#include <stdint.h>

#include "http/http_cache.h"

/* "bytes " 20 digits "-" 20 digits "/" 20 digits, and the NUL. */
#define HTTP_RANGE_CR_MAX 72

struct http_range_answer {
    int status;     /* 200, 206 or 416 */
    uint64_t first; /* offset of the first byte to send: 0 unless 206 */
    uint64_t len;   /* bytes to send: size (200), last - first + 1 (206), 0 (416) */
    /* The Content-Range field value, without name or CRLF (RFC 9110 §14.4): for 206
     * "bytes FIRST-LAST/SIZE"; for 416 the unsatisfied-range form, "bytes ", '*', then
     * "/SIZE"; for 200 "" (send no Content-Range). */
    char content_range[HTTP_RANGE_CR_MAX];
};

/* How to answer GET request r for a representation that would otherwise be a 200 of
 * `size` bytes, with validators etag (NULL or etag_len 0: none; the stored field value,
 * quotes included) and last_modified (epoch seconds, -1 when unknown). Fills *out:
 *  - 200, the whole representation: no Range; a method other than GET (RFC 9110 §14.2:
 *    range handling is defined for GET only, so HEAD gets the 200's fields); an If-Range
 *    that does not match (§13.1.5: strong entity-tag comparison, a weak tag never
 *    matches; a date matches only a Last-Modified equal to it); a Range to ignore (not
 *    "bytes", a syntax error, a range-spec with last < first, or several ranges: multipart
 *    answers are not made, which §14.2 allows and which keeps range amplification out);
 *  - 206 with [first, first + len) and "bytes F-L/SIZE": one satisfiable range (a
 *    suffix "-N" is the last N bytes, all of them when N >= size; an open-ended "F-" and
 *    an L past the end run to size - 1);
 *  - 416 with the unsatisfied-range Content-Range: one range that is not satisfiable
 *    (first >= size, "-0", or any range of an empty representation).
 * Call it after the other preconditions (http_cache_conditional(): 304/412 come first,
 * RFC 9110 §13.2.2) and only for a representation that is a 200. */
void http_range_answer(const struct http_request *r, uint64_t size, const char *etag,
                       size_t etag_len, int64_t last_modified, struct http_range_answer *out);

#endif
