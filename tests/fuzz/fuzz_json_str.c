/* tests/fuzz/fuzz_json_str.c: the JSON string writer (buf_json_str, src/core/buf.c).
 *
 * Input: any bytes, written as one JSON string. Invariants: the output is a JSON text in
 * well-formed UTF-8 (the strict canonicalizer of cache_key_json.c accepts it), and already
 * its own canonical form (the writer's escape choices are the canonical ones); input bytes
 * that need no escape and are ASCII come out as themselves; a cap too small for the
 * output gives -E2BIG and leaves the buffer as it was. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache_key.h"
#include "core/buf.h"

#define CHECK(e)                                                                                   \
    do {                                                                                           \
        if (!(e))                                                                                  \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size ? size : 1);
    struct buf a, b, c;
    int plain = 1;

    if (in == NULL)
        return 0;
    memcpy(in, data, size);
    for (size_t i = 0; i < size; i++)
        if (data[i] < 0x20 || data[i] >= 0x80 || data[i] == '"' || data[i] == '\\')
            plain = 0;
    buf_init(&a, 1 << 22);
    buf_init(&b, 1 << 22);
    CHECK(buf_json_str(&a, in, size) == 0);
    CHECK(a.len >= size + 2 && a.data[0] == '"' && a.data[a.len - 1] == '"');
    if (plain)
        CHECK(a.len == size + 2 && memcmp(a.data + 1, in, size) == 0);
    CHECK(cache_key_json_canon(a.data, a.len, &b, NULL, NULL) == 0);
    CHECK(b.len == a.len && memcmp(a.data, b.data, a.len) == 0);
    buf_init(&c, a.len - 1 + 2);
    CHECK(buf_puts(&c, "[ ") == 0);
    CHECK(buf_json_str(&c, in, size) == -E2BIG);
    CHECK(c.len == 2 && memcmp(c.data, "[ ", 3) == 0);
    buf_fini(&a);
    buf_fini(&b);
    buf_fini(&c);
    free(in);
    return 0;
}
