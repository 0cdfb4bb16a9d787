/* tests/fuzz/fuzz_http_parse.c: request head parser + chunked decoder.
 *
 * The input is parsed as a request head (from an exact-size heap copy, so any read past
 * len is an ASan error); the parser's invariants are asserted, a strict prefix of a
 * complete head must be "incomplete", and the bytes after the head are fed to the chunked
 * decoder in splits derived from the input itself. Then what an intermediary does to the
 * parsed head is checked: Connection-named fields go, end-to-end ones never do. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http_cache.h"
#include "http/http_parse.h"

#define CHECK(e)                                                                                   \
    do {                                                                                           \
        if (!(e))                                                                                  \
            abort();                                                                               \
    } while (0)

static void check_str(struct http_str s, const char *buf, size_t len)
{
    if (s.len == 0)
        return;
    if (s.len == 1 && s.p[0] == '/' && (s.p < buf || s.p >= buf + len))
        return; /* the static "/" of an absolute-form target without a path */
    CHECK(s.p >= buf && s.p + s.len <= buf + len);
}

static void dechunk(const char *in, size_t len, const uint8_t *seed, size_t nseed,
                    uint64_t max_body)
{
    struct http_chunked c;
    size_t off = 0, k = 0;

    http_chunked_init(&c, max_body);
    while (off < len) {
        size_t piece = nseed ? (size_t)seed[k++ % nseed] % 17 + 1 : len;
        size_t used = 0;
        const char *d = NULL, *m = NULL;
        size_t dl = 0;
        int rc;

        if (piece > len - off)
            piece = len - off;
        rc = http_chunked_feed(&c, in + off, piece, &used, &d, &dl, &m);
        CHECK(used <= piece);
        CHECK(c.total <= max_body);
        if (rc < 0) {
            CHECK(rc == -400 || rc == -413);
            CHECK(m != NULL);
            return;
        }
        if (rc == HTTP_CHUNKED_DATA) {
            CHECK(dl > 0 && d >= in + off && d + dl <= in + off + used);
        } else if (rc == HTTP_CHUNKED_DONE) {
            rc = http_chunked_feed(&c, in + off + used, len - off - used, &used, &d, &dl, &m);
            CHECK(rc == HTTP_CHUNKED_DONE && used == 0);
            return;
        } else {
            CHECK(rc == HTTP_CHUNKED_MORE && used == piece);
        }
        off += used;
    }
}

/* The caching rules' value parsers (Cache-Control, dates, entity-tags, Range) get the
 * parsed header values: request fields as such, and each one also as a response field. */
static void cache_rules(const struct http_request *r)
{
    struct http_req_info qi;
    struct http_resp_info ri;
    const struct http_header *h;
    const struct http_header *et = http_request_header(r, "x-etag");
    uint64_t a = 0, b = 0;
    int64_t lt, age, t;
    char dbuf[32];
    size_t i;
    int rc;

    http_req_info_from_request(&qi, r);
    http_resp_info_init(&ri);
    ri.status = 200;
    for (i = 0; i < r->nheaders; i++) {
        http_resp_info_add(&ri, r->headers[i].name.p, r->headers[i].name.len, r->headers[i].value.p,
                           r->headers[i].value.len);
        if (http_date_parse(r->headers[i].value.p, r->headers[i].value.len, &t) == 0) {
            int64_t back;

            /* Every accepted date formats back to itself. */
            CHECK(http_date_format(t, dbuf) == 29);
            CHECK(http_date_parse(dbuf, 29, &back) == 0 && back == t);
        }
    }
    http_resp_info_finish(&ri, 1700000000);
    (void)http_cache_storable(&qi, &ri, NULL);
    lt = http_freshness_lifetime(&ri, 86400);
    CHECK(lt >= 0);
    age = http_current_age(&ri, 1700000000, 1700000001, 1700000100);
    CHECK(age >= 0);
    (void)http_cache_reuse(&qi, &ri, lt, age);
    (void)http_cache_stale_if_error_ok(&ri, lt, age, 60);
    rc = http_cache_conditional(r, et ? et->value.p : NULL, et ? et->value.len : 0,
                                ri.last_modified);
    CHECK(rc == 0 || rc == 304 || rc == 412);
    (void)http_range_if_range_ok(r, et ? et->value.p : NULL, et ? et->value.len : 0,
                                 ri.last_modified);
    h = http_request_header(r, "range");
    if (h != NULL) {
        uint64_t size = h->value.len * 7;

        rc = http_range_parse(h->value.p, h->value.len, size, &a, &b);
        CHECK(rc == 0 || rc == 1 || rc == -416);
        if (rc == 1)
            CHECK(a <= b && b < size);
    }
}

static size_t count_named(const struct http_request *r, const char *name)
{
    size_t i, n = 0;

    for (i = 0; i < r->nheaders; i++)
        n += (size_t)http_str_ieq(r->headers[i].name, name);
    return n;
}

/* http_request_strip_connection / _fields on a parsed head. */
static void strip_rules(struct http_request *r)
{
    static const char *const keep[] = {"host",          "content-length", "transfer-encoding",
                                       "authorization", "cache-control",  "connection"};
    static const struct http_str names[] = {{"x-forwarded-host", 16},
                                            {"forwarded", 9},
                                            {"host", 4},
                                            {"a", 1}};
    size_t before[6], i, n0 = r->nheaders, removed;
    struct http_str host = r->host;

    for (i = 0; i < 6; i++)
        before[i] = count_named(r, keep[i]);
    removed = http_request_strip_connection(r);
    CHECK(removed <= n0 && r->nheaders == n0 - removed);
    for (i = 0; i < 6; i++)
        CHECK(count_named(r, keep[i]) == before[i]);
    for (i = 0; i < r->nheaders; i++)
        CHECK(!http_request_hop_nominated(r, r->headers[i].name));
    CHECK(r->host.p == host.p && r->host.len == host.len);
    n0 = r->nheaders;
    removed = http_request_strip_fields(r, names, 4);
    CHECK(r->nheaders == n0 - removed);
    CHECK(count_named(r, "x-forwarded-host") == 0 && count_named(r, "forwarded") == 0);
    CHECK(count_named(r, "a") == 0 && count_named(r, "host") == before[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct http_request req;
    struct http_limits lim;
    const char *msg = NULL;
    char *buf = malloc(size ? size : 1);
    size_t i;
    int rc;

    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    http_limits_default(&lim);
    if (size > 0 && (data[0] & 1)) {
        /* Small limits now and then, so the limit paths get exercised too. */
        lim.max_request_line = 64;
        lim.max_uri = 48;
        lim.max_header_bytes = 256;
        lim.max_headers = 4;
        lim.max_body = 100;
    }
    rc = http_parse_request(buf, size, &lim, &req, &msg);
    if (rc > 0) {
        size_t head = (size_t)rc;

        CHECK(head == req.head_len && head <= size && head <= lim.max_header_bytes);
        CHECK(req.nheaders <= lim.max_headers && req.nheaders <= HTTP_MAX_HEADERS);
        CHECK(req.version_minor == 0 || req.version_minor == 1);
        CHECK(!(req.chunked && req.content_length >= 0));
        CHECK(req.content_length < 0 || (uint64_t)req.content_length <= lim.max_body);
        CHECK(req.target.len > 0 && req.target.len <= lim.max_uri);
        CHECK(req.method_str.len > 0);
        check_str(req.method_str, buf, head);
        check_str(req.target, buf, head);
        check_str(req.path, buf, head);
        check_str(req.query, buf, head);
        check_str(req.abs_host, buf, head);
        check_str(req.host, buf, head);
        CHECK(req.version_minor == 0 || req.host.len > 0 || http_request_header(&req, "host"));
        CHECK(req.unsupported_coding.len == 0);
        if (req.abs_host.len && req.method != HTTP_M_CONNECT) {
            /* RFC 9112 §3.2.2: one host, the target's, whatever the Host field said. */
            const struct http_header *h = http_request_header(&req, "host");

            CHECK(req.host.p == req.abs_host.p && req.host.len == req.abs_host.len);
            CHECK(h == NULL || (h->value.p == req.abs_host.p && h->value.len == req.abs_host.len));
        }
        for (i = 0; i < req.nheaders; i++) {
            check_str(req.headers[i].name, buf, head);
            CHECK(req.headers[i].name.len > 0);
            check_str(req.headers[i].value, buf, head);
        }
        /* Incrementality: a strict prefix of a complete head is never complete nor
         * rejected (the same bytes were accepted with more following). */
        {
            static struct http_request req2;
            char *pre = malloc(head - 1 ? head - 1 : 1);

            if (pre != NULL) {
                memcpy(pre, buf, head - 1);
                CHECK(http_parse_request(pre, head - 1, &lim, &req2, &msg) == HTTP_PARSE_AGAIN);
                free(pre);
            }
        }
        cache_rules(&req);
        if (req.chunked)
            dechunk(buf + head, size - head, data, size, lim.max_body);
        strip_rules(&req);
    } else if (rc < 0) {
        CHECK(msg != NULL);
        CHECK(rc == -400 || rc == -413 || rc == -414 || rc == -431 || rc == -501 || rc == -505);
        if (req.unsupported_coding.len) {
            /* Named only for a 501, and it is a coding other than chunked, inside buf. */
            CHECK(rc == -501);
            check_str(req.unsupported_coding, buf, size);
            CHECK(!http_str_ieq(req.unsupported_coding, "chunked"));
        }
    } else {
        CHECK(size <= lim.max_header_bytes);
    }
    /* The decoder on its own, over the raw input. */
    dechunk(buf, size, data + (size > 0), size > 0 ? size - 1 : 0, 1 << 20);
    free(buf);
    return 0;
}
