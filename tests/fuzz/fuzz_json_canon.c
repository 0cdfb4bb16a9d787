/* tests/fuzz/fuzz_json_canon.c: canonical JSON of request bodies (cache_key_json_canon).
 *
 * Input: a request body. Invariants: no crash or over-read (the input is copied to an
 * exact-size allocation); an error names a position inside the input (or its end) and a
 * message, and leaves the buffer as it was; the canonical form is itself valid and is
 * its own canonical form (idempotence); a smaller cap only ever adds -E2BIG. */
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size ? size : 1);
    const char *msg = NULL;
    size_t pos = (size_t)-1;
    struct buf a, b, c;
    int rc;

    if (in == NULL)
        return 0;
    memcpy(in, data, size);
    buf_init(&a, 1 << 22);
    buf_init(&b, 1 << 22);
    buf_init(&c, size / 2 + 1);
    CHECK(buf_puts(&a, "k\n") == 0);
    rc = cache_key_json_canon(in, size, &a, &pos, &msg);
    if (rc != 0) {
        CHECK(rc == -EINVAL);
        CHECK(pos <= size && msg != NULL && *msg != '\0');
        CHECK(a.len == 2 && memcmp(a.data, "k\n", 3) == 0);
    } else {
        CHECK(a.len > 2);
        rc = cache_key_json_canon(a.data + 2, a.len - 2, &b, &pos, &msg);
        CHECK(rc == 0);
        CHECK(b.len == a.len - 2 && memcmp(a.data + 2, b.data, b.len) == 0);
        rc = cache_key_json_canon(in, size, &c, NULL, NULL);
        CHECK(rc == -E2BIG ? c.len == 0 : (rc == 0 && c.len == b.len));
    }
    buf_fini(&a);
    buf_fini(&b);
    buf_fini(&c);
    free(in);
    return 0;
}
