/* tests/fuzz/fuzz_inval_json.c: invalidation bodies (POST /admin/invalidate and the
 * control stream's entries, which other machines write).
 *
 * Input: the body. It goes through edge__inval_parse, which applies nothing. Invariants:
 * - it returns 0 or -EINVAL, and -EINVAL always with a message;
 * - on 0, something is named (urls, prefix, patterns, tags, model or all), every pattern and
 *   tag is a valid ban expression and the prefix one too, so that applying the body can
 *   only fail for lack of room or disk, never on its content;
 * - every glob of the body runs against its own text and against a fixed path without
 *   crashing, and matches its own text when it holds no '?' or '\' (those are wildcards
 *   or quotes, not themselves);
 * - whatever the parser holds is released by edge__inval_req_fini (leaks are crashes). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cache/cache_ban.h"
#include "edge/edge_int.h"

#define CHECK(e)                                                                                   \
    do {                                                                                           \
        if (!(e))                                                                                  \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int valid_list(json_t *a, enum cache_ban_kind kind)
{
    size_t i;
    json_t *it;
    const char *why;

    json_array_foreach(a, i, it)
    {
        const char *s = json_string_value(it);
        if (!s || cache_ban_expr_check(kind, s, strlen(s), &why) != 0)
            return 0;
        if (kind == CACHE_BAN_GLOB) {
            size_t n = strlen(s);
            int m = cache_ban_glob(s, n, s, n);
            (void)cache_ban_glob(s, n, "/models/ranker/v1.bin?x=1", 25);
            if (!strpbrk(s, "?\\") && !m)
                return 0;
        }
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const ignore[] = {"utm_source"};
    const struct cache_key_opts ko = {ignore, 1};
    struct edge_inval_req q;
    char msg[400];
    const char *why;

    msg[0] = '\0';
    int rc = edge__inval_parse((const char *)data, size, &ko, &q, msg, sizeof(msg));
    CHECK(rc == 0 || rc == -EINVAL);
    if (rc != 0) {
        CHECK(msg[0] != '\0');
        return 0;
    }
    CHECK(json_array_size(q.urls) || q.prefix || json_array_size(q.patterns) ||
          json_array_size(q.tags) || q.model || q.all);
    CHECK(!q.prefix ||
          cache_ban_expr_check(CACHE_BAN_PREFIX, q.prefix, strlen(q.prefix), &why) == 0);
    CHECK(valid_list(q.patterns, CACHE_BAN_GLOB));
    CHECK(valid_list(q.tags, CACHE_BAN_TAG));
    edge__inval_req_fini(&q);
    return 0;
}
