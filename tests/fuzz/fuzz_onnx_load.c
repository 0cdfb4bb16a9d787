/* tests/fuzz/fuzz_onnx_load.c: the ONNX model loader on arbitrary bytes.
 *
 * Loads the input as a model (pre-scan, protobuf-c parse, graph build, shape-inference
 * probe); when it loads, runs it once on small zero inputs so the planner and kernels
 * see whatever shapes the fuzzer invented. Any crash, leak or sanitizer report is a bug. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct infer_model *m = NULL;
    struct infer_session *s = NULL;
    struct infer_session_opts so = {.max_arena = 64u << 20};
    struct infer_load_opts lo = {.max_file_bytes = 1u << 20, .max_memory = 256u << 20};
    struct infer_input in[8];
    struct infer_tensor out[8];
    char err[256];
    size_t n_in;

    if (infer_model_load_mem(data, size, &lo, &m, err, sizeof(err)) != 0)
        return 0;
    n_in = infer_model_n_inputs(m);
    if (n_in <= 8 && infer_session_new(m, &so, &s) == 0) {
        size_t n_out = infer_model_n_outputs(m);
        bool ok = true;
        memset(in, 0, sizeof(in));
        for (size_t i = 0; i < n_in && ok; i++) {
            const struct infer_io_info *info = infer_model_input(m, i);
            int64_t numel = 1;
            in[i].name = info->name;
            in[i].t.dtype = info->dtype;
            in[i].t.rank = info->rank < 0 ? 1 : info->rank;
            for (int d = 0; d < in[i].t.rank; d++) {
                int64_t v = info->rank < 0 || info->dims[d] < 0 ? 2 : info->dims[d];
                in[i].t.dims[d] = v;
                if (v > 4096 || numel * v > 65536)
                    ok = false;
                else
                    numel *= v;
            }
            if (ok)
                in[i].t.data = calloc((size_t)numel + 1, infer_dtype_size(info->dtype) + 1);
        }
        if (ok)
            (void)infer_session_run(s, in, n_in, out, n_out < 8 ? n_out : 8, err, sizeof(err));
        for (size_t i = 0; i < n_in; i++)
            free(in[i].t.data);
        infer_session_free(&s);
    }
    infer_model_unref(&m);
    return 0;
}
