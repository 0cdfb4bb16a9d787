/* src/infer/infer.h: the edge's ONNX inference engine.
 *
 * A model (struct infer_model) is loaded once, checked (operators, opsets, dtypes, shapes
 * inferred with the batch dimension at 1) and is immutable afterwards: any number of
 * threads may share it. It is refcounted so a model swap can let in-flight runs finish.
 * A session (struct infer_session) holds everything a run writes: memory plans cached per
 * input shape (a static arena layout per batch size) and the arena itself. A session is
 * used by one thread at a time; give each worker thread its own.
 *
 * Memory: every model has a budget (infer_load_opts.max_memory, 1 GiB by default) for its
 * constants plus the working memory of one run. Both are computed from shapes before
 * anything is allocated, at load (the run sized at `batch` rows) and again for each new
 * input shape at run time; what does not fit is refused with -E2BIG and a message naming
 * the node and tensor, the bytes needed and the budget (docs/infer.md, "Memory budget").
 *
 * Errors are negative errno values: -ENOTSUP for an operator, opset, dtype or feature the
 * engine does not implement, -EINVAL for a model or input that breaks the ONNX rules,
 * -EBADMSG for bytes that are not a valid ONNX protobuf, -EFBIG past a size cap, -E2BIG
 * over the memory budget, -ERANGE for out-of-range indices in the data, -ENOENT / -EIO
 * from the file system.
 * Functions taking `err, errlen` write a one-line message there on failure (may be NULL). */
#ifndef MLCDN_INFER_INFER_H
#define MLCDN_INFER_INFER_H

#include <stddef.h>
#include <stdint.h>

#define INFER_MAX_RANK 8

/* Same numbers as onnx.TensorProto.DataType. */
enum infer_dtype {
    INFER_DT_UNDEFINED = 0,
    INFER_DT_FLOAT = 1,
    INFER_DT_UINT8 = 2,
    INFER_DT_INT8 = 3,
    INFER_DT_UINT16 = 4,
    INFER_DT_INT16 = 5,
    INFER_DT_INT32 = 6,
    INFER_DT_INT64 = 7,
    INFER_DT_STRING = 8,
    INFER_DT_BOOL = 9,
    INFER_DT_FLOAT16 = 10,
    INFER_DT_DOUBLE = 11,
    INFER_DT_UINT32 = 12,
    INFER_DT_UINT64 = 13,
    INFER_DT_BFLOAT16 = 16,
};

/* A dense tensor in C order. `data` is borrowed: whoever filled the struct owns it. */
struct infer_tensor {
    int dtype; /* enum infer_dtype */
    int rank;  /* 0 for a scalar */
    int64_t dims[INFER_MAX_RANK];
    void *data;
};

/* One named input of a run; `name` and `t.data` stay owned by the caller. */
struct infer_input {
    const char *name;
    struct infer_tensor t;
};

/* Metadata of a graph input or output. dims[i] is -1 where the model leaves it dynamic
 * (a symbolic dimension such as `batch`); rank is -1 if the model declares no shape. */
struct infer_io_info {
    const char *name; /* owned by the model */
    int dtype;
    int rank;
    int64_t dims[INFER_MAX_RANK];
};

struct infer_model;
struct infer_session;

#define INFER_DEFAULT_MEMORY ((size_t)1 << 30)

struct infer_load_opts {
    size_t max_file_bytes;     /* cap on the .onnx file; 0 = 2 GiB (the protobuf limit) */
    size_t max_external_bytes; /* cap on all external data together; 0 = 16 GiB */
    /* Directory external data paths are relative to; NULL = the model file's directory.
     * For infer_model_load_mem(), NULL forbids external data. */
    const char *external_dir;
    /* Memory budget: constants (weights, folded constants, packed copies) plus one run's
     * working memory; 0 = INFER_DEFAULT_MEMORY. The file itself may not be larger. */
    size_t max_memory;
    /* Rows the caller runs at once: a dynamic leading input dimension takes this value
     * when the run is sized at load (other dynamic dims take 1); 0 = 1. */
    int64_t batch;
};

/* What a loaded model was charged (bytes). */
struct infer_model_mem {
    size_t budget;    /* infer_load_opts.max_memory */
    size_t constants; /* held by the model for its lifetime */
    size_t run;       /* working memory of one run at `batch` rows, as sized at load */
    int64_t batch;
};

/* Loads and checks the model at `path`. On success *out holds the only reference (release
 * with infer_model_unref()). opts may be NULL. */
int infer_model_load(const char *path, const struct infer_load_opts *opts, struct infer_model **out,
                     char *err, size_t errlen);
/* Same from bytes in memory; `buf` is not referenced after return. */
int infer_model_load_mem(const void *buf, size_t len, const struct infer_load_opts *opts,
                         struct infer_model **out, char *err, size_t errlen);
/* Reference counting (thread-safe). The last unref frees the model; sessions hold one. */
struct infer_model *infer_model_ref(struct infer_model *m);
void infer_model_unref(struct infer_model **mp);

/* Metadata; pointers stay valid while the model lives. */
size_t infer_model_n_inputs(const struct infer_model *m);
size_t infer_model_n_outputs(const struct infer_model *m);
const struct infer_io_info *infer_model_input(const struct infer_model *m, size_t i);
const struct infer_io_info *infer_model_output(const struct infer_model *m, size_t i);
/* Index of the input / output called `name`, or -ENOENT. */
int infer_model_input_index(const struct infer_model *m, const char *name);
int infer_model_output_index(const struct infer_model *m, const char *name);
/* Short description: opsets, node count, operators used. Written into buf (NUL-ended). */
void infer_model_describe(const struct infer_model *m, char *buf, size_t len);
void infer_model_memory(const struct infer_model *m, struct infer_model_mem *out);

struct infer_session_opts {
    int threads; /* BLAS threads for this process; 0 = leave as is (default 1) */
    /* Cap on the session's memory: arena plus the tensors its cached plans folded; 0 = the
     * model's budget less its constants (a lower value only lowers it). */
    size_t max_arena;
    unsigned max_plans; /* plans cached (one per input shape); 0 = 8 */
};

/* New session on `m` (takes its own model reference). opts may be NULL. Caller frees it
 * with infer_session_free(). */
int infer_session_new(struct infer_model *m, const struct infer_session_opts *opts,
                      struct infer_session **out);
void infer_session_free(struct infer_session **sp);

/* Runs the model. Every graph input must be given once, by name, with the model's dtype and
 * a shape matching its fixed dims. A shape (or keyed value) whose run would not fit the
 * session's cap is refused with -E2BIG before anything is allocated. On success out[i] (i < n_out, n_out <= model's output
 * count, model order) describes output i; its data belongs to the session and stays valid
 * until the next run on, or free of, this session (an output that is a constant of the
 * model, or a graph input passed through, points at the model or the caller's buffer). */
int infer_session_run(struct infer_session *s, const struct infer_input *in, size_t n_in,
                      struct infer_tensor *out, size_t n_out, char *err, size_t errlen);
/* Same, writing only the outputs named in `names` (n of them) into out[0..n). */
int infer_session_run_select(struct infer_session *s, const struct infer_input *in, size_t n_in,
                             const char *const *names, size_t n, struct infer_tensor *out,
                             char *err, size_t errlen);
/* Bytes of the largest plan's arena so far (the static working memory per batch size). */
size_t infer_session_arena_bytes(const struct infer_session *s);
/* Everything the session holds: its arena plus the tensors its cached plans folded. Kept
 * within the session's cap by dropping the least recently used plans. */
size_t infer_session_memory_bytes(const struct infer_session *s);

/* Sets the BLAS thread count for the process (default 1: the edge runs many inferences in
 * parallel, one thread each). */
void infer_set_threads(int n);

/* Helpers shared by the CLI, the tests and the HTTP layer. */
const char *infer_dtype_name(int dtype);
size_t infer_dtype_size(int dtype); /* 0 for unsupported dtypes (string) */
/* Element count of t, or -1 on a bad shape (negative dim, overflow). */
int64_t infer_tensor_numel(const struct infer_tensor *t);

/* Decodes a serialized onnx.TensorProto (an input_*.pb / output_*.pb). On success *out
 * holds a tensor whose data the caller frees with free(), and *name (may be NULL) a
 * malloc'd name (free() it). */
int infer_tensor_pb_decode(const void *buf, size_t len, struct infer_tensor *out, char **name,
                           char *err, size_t errlen);

/* Runs one ONNX backend-test case directory (model.onnx, test_data_set_N/input_K.pb and
 * output_K.pb) and compares every output: floats within atol + rtol * |expected|, other
 * dtypes exactly. Returns 0 when all data sets match, -ENOTSUP when the model needs
 * something the engine does not implement (a skip), another negative errno on failure;
 * `msg` says why. */
int infer_case_run(const char *case_dir, double atol, double rtol, char *msg, size_t len);

/* `mlcdn infer ...` (argv[0] == "infer"). */
int infer_cli_main(int argc, char **argv);

#endif
