/* tests/fuzz/fuzz_l2_header.c: the L2 file-header parser (l2__hdr_parse, cache_disk.c).
 *
 * Files on disk are untrusted input (a crash, a failing disk, a hand edit). Each input is
 * parsed twice: as is (nearly always refused by the header checksum), then with the
 * checksum field recomputed, so that the fuzzer gets past it to the field checks and the
 * metadata decoder. Invariants: on success the header lies within the input, the body
 * offset is the header length rounded up to a page, the key is NUL-terminated, and
 * re-encoding the decoded object gives a header that parses to the same facts (an older
 * record version is re-encoded in the current one, so its length may change once, and then
 * no more). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache_disk.h"

#define CHECK(e)                                                                                   \
    do {                                                                                           \
        if (!(e))                                                                                  \
            abort();                                                                               \
    } while (0)

static int same_str(const char *a, size_t an, const char *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

static void one(const uint8_t *p, size_t n)
{
    struct cache_obj *o = NULL, *o2 = NULL, *o3 = NULL;
    struct l2__hdr h, h2, h3;
    char *k = NULL, *k2 = NULL, *k3 = NULL;
    size_t kl = 0, kl2 = 0, kl3 = 0;
    struct buf b, b2;
    int rc = l2__hdr_parse(p, n, &h, &o, &k, &kl);

    if (rc != 0) {
        CHECK(rc == -EINVAL && o == NULL);
        return;
    }
    CHECK(h.hdr_len >= L2_PRELUDE_LEN && h.hdr_len <= n && h.hdr_len <= L2_HDR_MAX);
    CHECK(h.body_off % L2_ALIGN == 0 && h.body_off >= h.hdr_len &&
          h.body_off - h.hdr_len < L2_ALIGN);
    CHECK(o != NULL && o->body == NULL && k != NULL && k[kl] == '\0');

    buf_init(&b, L2_HDR_MAX);
    CHECK(l2__hdr_build(&b, k, kl, o, h.body_len, h.body_xxh) == 0);
    CHECK(l2__hdr_parse(b.data, b.len, &h2, &o2, &k2, &kl2) == 0);
    /* Re-encoding what was decoded gives the same facts; re-encoding that again gives the
     * same header length (the current version is stable). */
    CHECK(h2.body_len == h.body_len && h2.body_xxh == h.body_xxh);
    buf_init(&b2, L2_HDR_MAX);
    CHECK(l2__hdr_build(&b2, k2, kl2, o2, h2.body_len, h2.body_xxh) == 0);
    CHECK(l2__hdr_parse(b2.data, b2.len, &h3, &o3, &k3, &kl3) == 0);
    CHECK(h3.hdr_len == h2.hdr_len && b2.len == b.len);
    CHECK(same_str(k, kl, k2, kl2));
    CHECK(o2->status == o->status && same_str(o->hdrs, o->hdrs_len, o2->hdrs, o2->hdrs_len));
    CHECK(same_str(o->vkey, o->vkey_len, o2->vkey, o2->vkey_len));
    CHECK((o->vary == NULL) == (o2->vary == NULL) && (!o->vary || !strcmp(o->vary, o2->vary)));
    buf_fini(&b);
    buf_fini(&b2);
    cache_obj_unref(&o);
    cache_obj_unref(&o2);
    cache_obj_unref(&o3);
    free(k);
    free(k2);
    free(k3);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *c;

    one(data, size);
    if (size < L2_PRELUDE_LEN)
        return 0;
    /* The checksum covers [16, hdr_len) and sits at offset 8 (see cache_disk.c). */
    uint32_t hl = (uint32_t)data[16] | (uint32_t)data[17] << 8 | (uint32_t)data[18] << 16 |
                  (uint32_t)data[19] << 24;
    if (hl < L2_PRELUDE_LEN || hl > size || hl > L2_HDR_MAX)
        return 0;
    c = malloc(size);
    if (!c)
        return 0;
    memcpy(c, data, size);
    uint64_t sum = l2__hdr_sum(c, hl);
    for (int i = 0; i < 8; i++)
        c[8 + i] = (uint8_t)(sum >> (8 * i));
    one(c, size);
    free(c);
    return 0;
}
