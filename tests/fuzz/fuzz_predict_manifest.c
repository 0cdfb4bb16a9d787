/* tests/fuzz/fuzz_predict_manifest.c: a model store's manifest (models/NAME/manifest.json,
 * written by whoever can write to the store, read by every edge).
 *
 * Input: the manifest's text. It goes through predict__manifest_parse, then, when it
 * parses, the policy is resolved for a member edge, another edge and a nameless one, the
 * split and the policy's description run, and every sample's expected output is compared
 * with itself. Invariants:
 * - the parser returns 0 or -EINVAL, and -EINVAL always with a message;
 * - on 0 there is at least one version, listed in ascending order, and every version the
 *   policy resolves to (stable, canary) is one of them: an edge never looks for a version
 *   the manifest does not list;
 * - a canary's share is 0..100 and the split of 100 consecutive requests gives exactly it;
 * - the description is a JSON object;
 * - an expected output compares equal to itself (NaN included);
 * - whatever the parser holds is released by predict__manifest_fini (leaks are crashes). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/buf.h"
#include "predict/predict_int.h"

#define CHECK(e)                                                                                   \
    do {                                                                                           \
        if (!(e))                                                                                  \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_target(const struct predict_manifest *m, const char *edge)
{
    struct predict_target t;
    predict__policy_resolve(m, edge, &t);
    CHECK(predict__manifest_find(m, t.stable) != NULL);
    if (t.canary >= 0) {
        CHECK(predict__manifest_find(m, t.canary) != NULL);
        CHECK(t.percent > 0 && t.percent <= 100);
        unsigned n = 0;
        for (uint64_t s = 0; s < 100; s++)
            n += (unsigned)predict__policy_canary(s, t.percent);
        CHECK(n == t.percent);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct predict_manifest m;
    char msg[512] = "";
    int rc = predict__manifest_parse("r", (const char *)data, size, &m, msg, sizeof(msg));

    CHECK(rc == 0 || rc == -EINVAL);
    if (rc) {
        CHECK(msg[0] != '\0');
        return 0;
    }
    CHECK(m.n >= 1);
    for (size_t i = 1; i < m.n; i++)
        CHECK(m.v[i - 1].version < m.v[i].version);
    check_target(&m, NULL);
    check_target(&m, "e1");
    if (m.nedges)
        check_target(&m, m.edges[0]);
    struct buf b;
    buf_init(&b, 1u << 20);
    predict__policy_describe(&m, &b);
    json_t *d = json_loadb(b.data, b.len, 0, NULL);
    CHECK(json_is_object(d));
    json_decref(d);
    buf_fini(&b);
    for (size_t i = 0; i < m.n; i++)
        if (m.v[i].sample_out)
            (void)predict__sample_compare(m.v[i].sample_out, m.v[i].sample_out, 0, 0, msg,
                                          sizeof(msg));
    predict__manifest_fini(&m);
    return 0;
}
