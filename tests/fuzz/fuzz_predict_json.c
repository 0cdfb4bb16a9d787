/* tests/fuzz/fuzz_predict_json.c: request bodies of the prediction endpoints.
 *
 * Input: a /predict, /batch_predict or OIP v2 infer body. It goes through the fast path and,
 * when jansson reads it as an object, through every full decoder (seed model, seed inputs
 * one row and batched, OIP) for two fixed model versions ("x" 4 floats; "user_id" int64 of
 * rank 1, "dense" 2x2 floats, "flag" bool) and for a version shaped after what the fast path
 * read. Invariants:
 * - the fast path never reads past the input; when it accepts a body, jansson accepts it
 *   too, and the seed decoder of a one-float-input model of that many values writes the
 *   same float32 bits: both paths make the same cache key;
 * - a decoder returns 0 or -EINVAL, and -EINVAL always with a message (element decoding
 *   too, for every dtype code);
 * - on success the rows are 1..max_batch, every input buffer exists, the outputs asked
 *   for are outputs of the model, and an OIP id is a JSON string literal;
 * - whatever a decoder allocated is freed by predict__rows_fini, on success or refusal
 *   (leaks are crashes under libFuzzer). */
#include <errno.h>
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

static struct predict_model m_a = {.name = "a"}, m_b = {.name = "b"}, m_f = {.name = "f"};
static struct predict_io a_in[] = {
    {.name = "x",
     .dtype = INFER_DT_FLOAT,
     .esize = 4,
     .rank = 2,
     .dims = {-1, 4},
     .row_numel = 4,
     .row_bytes = 16},
};
static struct predict_io a_out[] = {
    {.name = "y",
     .dtype = INFER_DT_FLOAT,
     .esize = 4,
     .rank = 2,
     .dims = {-1, 1},
     .row_numel = 1,
     .row_bytes = 4},
};
static struct predict_io b_in[] = {
    {.name = "user_id",
     .dtype = INFER_DT_INT64,
     .esize = 8,
     .rank = 1,
     .dims = {-1},
     .row_numel = 1,
     .row_bytes = 8},
    {.name = "dense",
     .dtype = INFER_DT_FLOAT,
     .esize = 4,
     .rank = 3,
     .dims = {-1, 2, 2},
     .row_numel = 4,
     .row_bytes = 16},
    {.name = "flag",
     .dtype = INFER_DT_BOOL,
     .esize = 1,
     .rank = 2,
     .dims = {-1, 1},
     .row_numel = 1,
     .row_bytes = 1},
};
static struct predict_io b_out[] = {
    {.name = "score",
     .dtype = INFER_DT_FLOAT,
     .esize = 4,
     .rank = 2,
     .dims = {-1, 1},
     .row_numel = 1,
     .row_bytes = 4},
    {.name = "label",
     .dtype = INFER_DT_INT64,
     .esize = 8,
     .rank = 1,
     .dims = {-1},
     .row_numel = 1,
     .row_bytes = 8,
     .off = 4},
};
static const struct predict_version v_a = {
    .model = &m_a,
    .name = "a",
    .n_in = 1,
    .n_out = 1,
    .in = a_in,
    .out = a_out,
    .cfg = {.max_batch = 8},
};
static const struct predict_version v_b = {
    .model = &m_b,
    .name = "b",
    .n_in = 3,
    .n_out = 2,
    .in = b_in,
    .out = b_out,
    .cfg = {.max_batch = 4},
};

/* One decoder run and the invariants on its result. */
static void check(int rc, const struct predict_version *v, struct predict_rows *d, const char *msg)
{
    CHECK(rc == 0 || rc == -EINVAL);
    if (rc) {
        CHECK(msg[0] != '\0');
    } else {
        CHECK(d->rows >= 1 && d->rows <= v->cfg.max_batch);
        CHECK(d->n_in == v->n_in);
        for (size_t i = 0; i < v->n_in; i++)
            CHECK(d->in[i] != NULL);
        CHECK((d->outsel >> v->n_out) == 0);
        if (d->id) {
            json_error_t je;
            json_t *id = json_loads(d->id, JSON_DECODE_ANY, &je);
            CHECK(id && json_is_string(id));
            json_decref(id);
        }
    }
    predict__rows_fini(d);
}

static void decoders(json_t *root, const struct predict_version *v)
{
    struct predict_rows d = {0};
    char msg[512];

    for (int batch = 0; batch <= 1; batch++) {
        msg[0] = '\0';
        check(predict__json_seed(root, v, batch, &d, msg, sizeof(msg)), v, &d, msg);
    }
    msg[0] = '\0';
    check(predict__json_oip(root, v, &d, msg, sizeof(msg)), v, &d, msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    double vals[256];
    float a[256];
    struct predict_json_fast f = {.vals = vals, .cap = 256};
    char msg[512];
    char *copy = malloc(size ? size : 1); /* exact size: ASan sees any over-read */
    json_error_t je;

    memcpy(copy, data, size);
    int fast = predict__json_fast_predict(copy, size, &f);
    json_t *root = json_loadb(copy, size, 0, &je);
    if (fast) {
        CHECK(root && json_is_object(root));
        struct predict_io in = {.name = "x",
                                .dtype = INFER_DT_FLOAT,
                                .esize = 4,
                                .rank = 2,
                                .dims = {-1, (int64_t)f.n},
                                .row_numel = (int64_t)f.n,
                                .row_bytes = f.n * 4};
        struct predict_version v = {.model = &m_f,
                                    .name = "f",
                                    .n_in = 1,
                                    .n_out = 1,
                                    .in = &in,
                                    .out = a_out,
                                    .cfg = {.max_batch = 1}};
        struct predict_rows d = {0};
        msg[0] = '\0';
        CHECK(predict__json_seed(root, &v, 0, &d, msg, sizeof(msg)) == 0);
        CHECK(d.rows == 1);
        for (size_t i = 0; i < f.n; i++) {
            a[i] = (float)vals[i];
            CHECK(memcmp(&a[i], (const float *)d.in[0] + i, sizeof(float)) == 0);
        }
        predict__rows_fini(&d);
    }
    if (root && json_is_object(root)) {
        const char *name;
        int64_t version;
        msg[0] = '\0';
        int rc = predict__json_seed_model(root, &name, &version, msg, sizeof(msg));
        CHECK(rc == 0 ? version >= -1 : rc == -EINVAL && msg[0] != '\0');
        decoders(root, &v_a);
        decoders(root, &v_b);
    }
    if (root) {
        /* Element decoding for every dtype code, those no input may have included. */
        const json_t *feat = json_is_object(root) ? json_object_get(root, "features") : root;
        for (int dt = INFER_DT_FLOAT; dt <= INFER_DT_BOOL; dt++) {
            msg[0] = '\0';
            if (predict__json_count(feat, dt, "features", msg, sizeof(msg)) < 0)
                CHECK(msg[0] != '\0');
        }
    }
    json_decref(root);
    free(copy);
    return 0;
}
