/* tests/fuzz/fuzz_predict_json.c: request bodies of the prediction endpoints (issue 5).
 *
 * Input: a /predict body. Invariants: the fast path never reads past the input and, when
 * it accepts a body, jansson accepts it too and the full decoder reads the same values
 * (same count, same float32 bits): both paths make the same cache key. The full decoder
 * never fails without a message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "predict/predict_int.h"

#define CHECK(e)                                                                                   \
    do {                                                                                           \
        if (!(e))                                                                                  \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    double vals[256];
    float a[256], b[256];
    struct predict_json_fast f = {.vals = vals, .cap = 256};
    char msg[512];
    char *copy = malloc(size ? size : 1); /* exact size: ASan sees any over-read */
    json_error_t je;

    memcpy(copy, data, size);
    int fast = predict__json_fast_predict(copy, size, &f);
    json_t *root = json_loadb(copy, size, 0, &je);
    if (fast) {
        CHECK(root && json_is_object(root));
        json_t *feat = json_object_get(root, "features");
        msg[0] = '\0';
        int64_t n = predict__json_count(feat, INFER_DT_FLOAT, "features", msg, sizeof(msg));
        CHECK(n == (int64_t)f.n);
        CHECK(predict__json_fill(feat, 0, INFER_DT_FLOAT, b, n, "features", msg, sizeof(msg)) == 0);
        for (size_t i = 0; i < f.n; i++) {
            a[i] = (float)vals[i];
            CHECK(memcmp(&a[i], &b[i], sizeof(float)) == 0);
        }
    } else if (root) {
        for (int dt = INFER_DT_FLOAT; dt <= INFER_DT_BOOL; dt++) {
            msg[0] = '\0';
            json_t *feat = json_object_get(root, "features");
            if (predict__json_count(feat, dt, "features", msg, sizeof(msg)) < 0)
                CHECK(msg[0] != '\0');
        }
    }
    json_decref(root);
    free(copy);
    return 0;
}
