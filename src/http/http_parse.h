/* src/http/http_parse.h: strict HTTP/1.1 request parser (RFC 9112). Pure: no I/O.
 *
 * The parser works on a contiguous buffer holding the start of a connection's input.
 * http_parse_request() either finds a whole, valid request head and fills a struct
 * http_request whose strings point into that buffer (so the buffer must outlive it and
 * must not move), or reports that more bytes are needed, or rejects the request with
 * the status to answer (after which the connection is closed: RFC 9112 §11.2 — a
 * server that cannot frame a request must not guess). What is rejected: see
 * http_parse.c's top comment and docs/internals/http.md (request smuggling vectors,
 * obs-fold, bare LF, invalid tokens, oversized line/headers/URI, ...).
 *
 * Bodies: Content-Length bodies are read by the caller (content_length bytes after the
 * head); chunked bodies go through struct http_chunked, an incremental decoder. */
#ifndef MLCDN_HTTP_HTTP_PARSE_H
#define MLCDN_HTTP_HTTP_PARSE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

enum http_method {
    HTTP_M_OTHER = 0, /* a valid token we do not know: forwarded to the origin */
    HTTP_M_GET,
    HTTP_M_HEAD,
    HTTP_M_POST,
    HTTP_M_PUT,
    HTTP_M_DELETE,
    HTTP_M_PATCH,
    HTTP_M_OPTIONS,
    HTTP_M_TRACE,
    HTTP_M_CONNECT,
    HTTP_M_PURGE,
};

struct http_limits {
    size_t max_request_line; /* longer request line → 414 when the URI is the culprit */
    size_t max_uri;          /* → 414 */
    size_t max_header_bytes; /* whole head incl. request line → 431 */
    size_t max_headers;      /* count → 431; at most HTTP_MAX_HEADERS */
    uint64_t max_body;       /* Content-Length or decoded chunked size → 413 */
};

#define HTTP_MAX_HEADERS 128

/* Fills lim with the defaults: 8 KiB line and URI, 64 KiB head, 100 headers, 16 MiB body. */
void http_limits_default(struct http_limits *lim);

struct http_str {
    const char *p;
    size_t len;
};

struct http_header {
    struct http_str name;  /* as received (case preserved) */
    struct http_str value; /* leading/trailing OWS stripped */
};

struct http_request {
    enum http_method method;
    struct http_str method_str;
    struct http_str target;   /* request-target as received */
    struct http_str path;     /* origin-form path (or the path of an absolute-form URI) */
    struct http_str query;    /* after '?', without it; len 0 when absent */
    struct http_str abs_host; /* authority of an absolute-form (or CONNECT) target, else len 0 */
    int version_minor;        /* 0 or 1 (HTTP/1.x only) */
    struct http_header headers[HTTP_MAX_HEADERS];
    size_t nheaders;
    /* The request's host: the authority of an absolute-form target, which replaces the
     * Host field (RFC 9112 §3.2.2; that field's value in headers[] is rewritten to it
     * too), else the Host field's value; len 0 when there is neither. */
    struct http_str host;
    int64_t content_length; /* -1 when absent */
    int chunked;            /* Transfer-Encoding: chunked (last coding) */
    int keep_alive;         /* per version default, Connection: close / keep-alive */
    int expect_continue;    /* Expect: 100-continue */
    size_t head_len;        /* bytes of the request head including the final CRLFCRLF */
    /* Set on a 501 for a transfer coding other than chunked (and only then): the coding,
     * so the answer can name it. The one field meaningful after a rejection. */
    struct http_str unsupported_coding;
};

enum {
    HTTP_PARSE_AGAIN = 0, /* need more bytes */
};

/* Parses one request head at the start of buf[0..len). Returns:
 *   > 0  the head length (== out->head_len); out is filled;
 *   0    (HTTP_PARSE_AGAIN) incomplete: call again with more bytes (but if len already
 *        exceeds the limits, an error is returned instead);
 *   < 0  the request is rejected: the value is minus the HTTP status to answer (400, 413,
 *        414, 431, 501 for an unsupported transfer coding, 505 for a bad version), and
 *        *errmsg (if non-NULL) points to a static message naming the problem.
 * out is only meaningful on > 0, but for out->unsupported_coding. */
int http_parse_request(const char *buf, size_t len, const struct http_limits *lim,
                       struct http_request *out, const char **errmsg);

/* 1 when a Connection option of r names the field `name` and that field may be removed
 * as hop-by-hop: Host, Content-Length, Transfer-Encoding, Authorization and
 * Cache-Control are meant for every hop and never are, whatever Connection says. */
int http_request_hop_nominated(const struct http_request *r, struct http_str name);

/* RFC 9110 §7.6.1: an intermediary removes the fields named by Connection options before
 * it forwards (and, here, before it looks at) the request. Removes those fields of r for
 * which http_request_hop_nominated() holds; the Connection field itself stays (it is
 * hop-by-hop anyway). Returns the number of field lines removed. */
size_t http_request_strip_connection(struct http_request *r);

/* Removes every field line whose name is one of names[0..n) (case-insensitive). Host,
 * Content-Length and Transfer-Encoding are never removed (the parse results depend on
 * them). Returns the number of field lines removed. */
size_t http_request_strip_fields(struct http_request *r, const struct http_str *names, size_t n);

/* Finds a header by case-insensitive name; NULL if absent. For repeated headers, the first. */
const struct http_header *http_request_header(const struct http_request *r, const char *name);

/* Case-insensitive ASCII compare of s against lit[0..n). */
int http_str_ieq_n(struct http_str s, const char *lit, size_t n);

/* Case-insensitive ASCII compare of s against the NUL-terminated lit. Inline so that for
 * a literal the length is known where it is called: most names differ in length, and
 * then the compare costs one test (a request's fields are checked against dozens). */
static inline int http_str_ieq(struct http_str s, const char *lit)
{
    size_t n = strlen(lit);

    return s.len == n && http_str_ieq_n(s, lit, n);
}

/* Incremental decoder of a chunked body (RFC 9112 §7.1): chunk-size (hex, no
 * overflow), chunk extensions (skipped, bounded), CRLF strictly, trailers (bounded,
 * discarded). Embedded by its owner; no allocation. */
struct http_chunked {
    int state;
    uint64_t remaining; /* bytes of chunk data still to come */
    uint64_t total;     /* decoded body bytes so far */
    uint64_t max_body;
    size_t line_len; /* bytes of the current size/extension/trailer line so far */
    unsigned digits;
};

void http_chunked_init(struct http_chunked *c, uint64_t max_body);

enum http_chunked_result {
    HTTP_CHUNKED_MORE = 0, /* consumed everything given, need more input */
    HTTP_CHUNKED_DATA = 1, /* *data, *data_len: a span of body bytes inside `in` */
    HTTP_CHUNKED_DONE = 2, /* body (and trailers) complete; *consumed says where it ended */
};

/* Consumes from in[0..len). Always sets *consumed (bytes of `in` used by this call).
 * Returns an enum http_chunked_result, or minus an HTTP status (400 invalid framing, 413
 * body over max_body) with *errmsg set to a static message. Call repeatedly: a DATA
 * result stops early so the caller can forward the span. */
int http_chunked_feed(struct http_chunked *c, const char *in, size_t len, size_t *consumed,
                      const char **data, size_t *data_len, const char **errmsg);

/* Status line reason phrase for a code ("Not Found"); "Unknown" for unlisted codes. */
const char *http_status_reason(int status);

#endif
