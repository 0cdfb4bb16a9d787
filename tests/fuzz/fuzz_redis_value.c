/* tests/fuzz/fuzz_redis_value.c: the Redis tier's value decoder (edge__redis_value_decode,
 * edge_redis.c: the frame of cache_pack_unseal(), then the cache_pack metadata).
 *
 * Values in Redis are untrusted input (any client of that Redis may write them). Each
 * input is decoded twice under the key "k" with a cap of 64 KiB: as is (nearly always
 * refused by the checksum), then with a sound frame rewritten over its first 24 bytes, so
 * that the fuzzer gets past the frame to the metadata decoder. Invariants:
 * an object comes back exactly on success, with a complete body that is the payload's
 * tail; a refusal as corrupt names its reason. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache_pack.h"
#include "edge/edge_redis.h"

#define CAP (64u << 10)

#define CHECK(e)                                                                                   \
    do {                                                                                           \
        if (!(e))                                                                                  \
            abort();                                                                               \
    } while (0)

static void one(const uint8_t *p, size_t n)
{
    struct cache_obj *o = NULL;
    const char *why = NULL;
    int rc = edge__redis_value_decode(p, n, CAP, "k", 1, &o, &why);

    if (rc != 0) {
        CHECK(o == NULL);
        CHECK(rc == -ENOENT || rc == -EFBIG || rc == -ENOMEM || (rc == -EBADMSG && why));
        CHECK(rc != -EFBIG || n > CAP);
        return;
    }
    CHECK(o != NULL && o->body != NULL && n <= CAP && n >= CACHE_SEAL_LEN);
    CHECK(cache_body_state(o->body) == CACHE_BODY_COMPLETE);
    uint64_t blen = cache_body_len(o->body);
    CHECK(blen <= n - CACHE_SEAL_LEN);
    struct cache_body_cursor cur;
    const char *span;
    size_t k, at = n - (size_t)blen;
    cache_body_cursor_init(&cur, o->body);
    while ((k = cache_body_next(&cur, o->body, blen, SIZE_MAX, &span)) > 0) {
        CHECK(memcmp(span, p + at, k) == 0);
        at += k;
    }
    CHECK(at == n);
    cache_obj_unref(&o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    one(data, size);
    if (size < CACHE_SEAL_LEN)
        return 0;
    uint8_t *c = malloc(size);
    if (!c)
        return 0;
    memcpy(c, data, size);
    cache_pack_seal(c, size - CACHE_SEAL_LEN);
    one(c, size);
    free(c);
    return 0;
}
