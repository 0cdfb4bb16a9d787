/* tests/fuzz/fuzz_cache_key.c: cache key normalisation.
 *
 * Input: host NUL path NUL query NUL header-name NUL header-value ... Invariants: on error
 * the buffer is untouched; normalisation never grows the text (beyond "/" and "?");
 * normalising a normalised query again changes nothing; the hash is deterministic. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache_key.h"

#define CHECK(e)                                                                                   \
    do {                                                                                           \
        if (!(e))                                                                                  \
            abort();                                                                               \
    } while (0)

static struct http_str next(const char **p, const char *end)
{
    struct http_str s = {*p, 0};
    const char *z = memchr(*p, '\0', (size_t)(end - *p));

    s.len = z ? (size_t)(z - *p) : (size_t)(end - *p);
    *p = z ? z + 1 : end;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const ign[] = {"utm_source", "a"};
    static struct http_request req;
    struct cache_key_opts opts = {ign, 2};
    char *in = malloc(size ? size : 1);
    const char *p, *end;
    struct http_str host, path, query;
    struct buf b, b2;
    uint8_t h1[16], h2[16];
    int rc;

    if (in == NULL)
        return 0;
    memcpy(in, data, size);
    p = in;
    end = in + size;
    host = next(&p, end);
    path = next(&p, end);
    query = next(&p, end);
    memset(&req, 0, sizeof(req));
    while (p < end && req.nheaders < HTTP_MAX_HEADERS) {
        req.headers[req.nheaders].name = next(&p, end);
        req.headers[req.nheaders].value = next(&p, end);
        req.nheaders++;
    }

    buf_init(&b, 1 << 16);
    buf_init(&b2, 1 << 16);
    rc = cache_key_primary(&b, host, path, query, &opts);
    if (rc != 0) {
        CHECK(rc == -EINVAL || rc == -E2BIG);
        CHECK(b.len == 0);
    } else {
        CHECK(b.len <= host.len + path.len + query.len + 2);
        /* Idempotence of the query normalisation. */
        if (query.len > 0 && memchr(b.data, '?', b.len) != NULL) {
            const char *q = memchr(b.data, '?', b.len);

            if (q != NULL && memchr(host.p, '?', host.len) == NULL &&
                memchr(path.p, '?', path.len) == NULL) {
                struct http_str q2 = {q + 1, b.len - (size_t)(q + 1 - b.data)};
                struct http_str root = {"/", 1}, none = {"", 0};

                CHECK(cache_key_primary(&b2, none, root, q2, &opts) == 0);
                CHECK(b2.len == 1 + q2.len + 1 && memcmp(b2.data + 2, q2.p, q2.len) == 0);
            }
        }
        if (req.nheaders > 0) {
            size_t before = b.len;

            rc = cache_key_vary_append(&b, &req, req.headers[0].name.p, req.headers[0].name.len);
            CHECK(rc == 0 || (rc == -E2BIG && b.len == before));
        }
        cache_key_hash(b.data, b.len, h1);
        cache_key_hash(b.data, b.len, h2);
        CHECK(memcmp(h1, h2, 16) == 0);
    }
    buf_fini(&b);
    buf_fini(&b2);
    free(in);
    return 0;
}
