/* src/infer/infer_int.h: structures shared inside src/infer (not part of the API).
 *
 * A model is a list of values (every named tensor: graph inputs, initializers, node
 * outputs) and a topologically sorted list of nodes referring to values by index. Each
 * node points at its operator (struct infer_op, registered in infer_ops_tbl.h), which
 * parses attributes once at load (`load`), computes output dtypes/shapes (`shape`) and
 * computes (`run`). A plan (infer_plan.c) fixes every shape, folds what is constant and
 * lays out one arena for a given input key; sessions (infer_session.c) cache and run plans.
 * Prototypes are grouped under the file that defines them (docs/internals/infer.md says
 * which file calls which). */
#ifndef MLCDN_INFER_INT_H
#define MLCDN_INFER_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/mc.h"
#include "infer/infer.h"

#define INFER_MODEL_MAGIC 0x4d4f444cu
#define INFER_SESSION_MAGIC 0x53455353u
#define INFER_ALIGN 64
#define INFER_UNKNOWN 1 /* shape function: output shape depends on a value not known yet */

/* Error sink: a message buffer that may be NULL. */
struct infer_err {
    char *buf;
    size_t len;
};
struct infer_node;

enum infer_attr_type {
    INFER_AT_FLOAT = 1,
    INFER_AT_INT = 2,
    INFER_AT_STRING = 3,
    INFER_AT_TENSOR = 4,
    INFER_AT_FLOATS = 6,
    INFER_AT_INTS = 7,
    INFER_AT_STRINGS = 8,
};

struct infer_attr {
    char *name;
    int type;
    float f;
    int64_t i;
    char *s;  /* NUL-terminated copy of the bytes */
    size_t n; /* element count of floats/ints/strings */
    float *floats;
    int64_t *ints;
    char **strings;
    struct infer_tensor t; /* TENSOR: data owned by the attribute */
};

struct infer_value {
    char *name;
    /* Declared or inferred at load time (batch dims at 1 during the probe). */
    int dtype;
    int rank; /* -1 unknown */
    int64_t dims[INFER_MAX_RANK];
    void *cdata;   /* constant value (initializer or Constant output), owned by the model */
    int producer;  /* node index, -1 for graph inputs and constants */
    int input_idx; /* graph input index or -1 */
    bool keyed;    /* graph input whose values decide shapes: part of the plan key */
    bool needed;   /* load-time: value flows into a shape-deciding operand */
};

typedef int infer_op_load_f(struct infer_node *n, struct infer_err *e);
/* in[i] NULL for an absent optional input; in[i]->data NULL where the value is not known
 * (only shapes). Sets every present out[j]'s dtype and shape. Returns 0, INFER_UNKNOWN, or
 * a negative errno with a message. */
typedef int infer_op_shape_f(const struct infer_node *n, struct infer_tensor *const *in,
                             struct infer_tensor *const *out, struct infer_err *e);
/* Scratch bytes run() needs for these shapes (optional). */
typedef size_t infer_op_scratch_f(const struct infer_node *n, struct infer_tensor *const *in,
                                  struct infer_tensor *const *out);
struct infer_model;
/* Called once at load after every node's load(), with the model (constants readable): ops
 * that precompute from constant inputs (packed Gemm weights) store the result in n->ext,
 * after charging its size with infer__charge(). */
typedef int infer_op_prepare_f(struct infer_node *n, struct infer_model *m, struct infer_err *e);
typedef int infer_op_run_f(const struct infer_node *n, struct infer_tensor *const *in,
                           struct infer_tensor *const *out, void *scratch, struct infer_err *e);

struct infer_op {
    const char *name;
    const char *domain;    /* "" for the default domain, "ai.onnx.ml" */
    uint32_t value_inputs; /* bitmask of inputs whose values (not only shape) decide shapes */
    bool shape_only;       /* output depends only on the input's shape (Shape) */
    infer_op_load_f *load;
    infer_op_shape_f *shape;
    infer_op_scratch_f *scratch;
    infer_op_run_f *run;
    infer_op_prepare_f *prepare; /* optional */
};

struct infer_node {
    const struct infer_op *op;
    char *name;
    char *op_type;
    int opset;
    int n_in, n_out;
    int *in, *out; /* value indices, -1 for an absent optional input/output */
    size_t n_attrs;
    struct infer_attr *attrs;
    /* Parsed attributes; which fields mean what is up to the op. */
    int64_t ia[8];
    float fa[4];
    int64_t *iv; /* owned */
    size_t niv;
    void *ext; /* op-owned structure, freed by ext_free */
    void (*ext_free)(void *);
    size_t ext_bytes; /* what load() put in ext, charged to the model's budget after it */
    /* Set at load by fusion (infer_model.c): a Gemm whose only consumer is a Relu applies
     * the Relu itself (fused_relu), and that Relu becomes an alias: its output is its
     * input's buffer and it never runs (plans skip it unless it is constant-folded, where
     * running it is harmless). */
    bool fused_relu;
    bool alias;
    /* Every input is a constant: evaluated once by the load probe, never planned again.
     * Outputs that a later node or the graph reads stay as constants of the model. */
    bool folded;
};

struct infer_model {
    unsigned magic;
    atomic_uint refcnt;
    int64_t ir_version;
    int opset;    /* default domain */
    int ml_opset; /* ai.onnx.ml, 0 if not imported */
    size_t n_values, n_nodes;
    struct infer_value *values;
    struct infer_node *nodes;
    size_t n_inputs, n_outputs;
    int *inputs, *outputs; /* value indices */
    struct infer_io_info *in_info, *out_info;
    char *producer;
    /* Memory budget (infer_load_opts.max_memory) and what the model holds against it:
     * constants (initializers, constants folded at load, attributes, op ext such as packed
     * weights). run_bytes: one run's working memory at load_batch rows, sized at load. */
    size_t budget, const_bytes, run_bytes;
    int64_t load_batch;
};

struct infer_plan; /* infer_plan.c */

struct infer_session {
    unsigned magic;
    struct infer_model *m;
    size_t limit; /* cap on arena + the folded tensors of every cached plan */
    unsigned max_plans, n_plans;
    struct infer_plan **plans; /* most recently used first */
    void *arena;
    size_t arena_bytes;
    uint8_t *key; /* scratch for the plan key of the current run */
    size_t key_alloc;
};

/* infer_err.c */
/* Writes the message (if e has a buffer) and returns `code`. */
int infer__errf(struct infer_err *e, int code, const char *fmt, ...) MC_PRINTF(3, 4);
/* Prefixes the message already in `e` with the node's name, op type and opset; returns err. */
int infer__node_err(const struct infer_node *n, int err, struct infer_err *e);
/* Charges `bytes` of constants to the model's budget, or fails with -E2BIG and a message
 * naming `what` (printf-style), the bytes and the budget. */
int infer__charge(struct infer_model *m, size_t bytes, struct infer_err *e, const char *fmt, ...)
    MC_PRINTF(4, 5);

/* infer_tensor.c (its TensorProto decoders are declared in infer_pb.h) */
int infer__dims_numel(int rank, const int64_t *dims, int64_t *out);
size_t infer__bytes(const struct infer_tensor *t);
bool infer__dtype_supported(int dtype);
/* A new INFER_ALIGN-aligned buffer of at least `bytes` (never of size 0), or NULL. */
void *infer__aligned_alloc(size_t bytes);
/* After freeing `bytes` of payload: hands free heap pages back to the system (glibc keeps
 * freed chunks below its mmap threshold in the process), so dropping a model brings the
 * resident size back down. Does nothing for small amounts. */
void infer__release(size_t bytes);
/* Attribute helpers for op load functions. */
const struct infer_attr *infer__attr(const struct infer_node *n, const char *name);
int64_t infer__attr_i(const struct infer_node *n, const char *name, int64_t def);
float infer__attr_f(const struct infer_node *n, const char *name, float def);
const char *infer__attr_s(const struct infer_node *n, const char *name, const char *def);
/* Shape helpers. */
int infer__broadcast(struct infer_tensor *const *in, int n, struct infer_tensor *out,
                     struct infer_err *e);
/* Normalises a possibly negative axis against rank; -EINVAL if out of [-rank, rank). */
int infer__axis(int64_t axis, int rank, int *out, struct infer_err *e);
/* Reads a 1-D int64/int32 tensor's values into v (at most cap). Returns count or -EINVAL. */
int infer__read_ints(const struct infer_tensor *t, int64_t *v, int cap, struct infer_err *e);
double infer__get_f64(const struct infer_tensor *t, int64_t i);
int64_t infer__get_i64(const struct infer_tensor *t, int64_t i);

/* infer_ops.c: the operator registered under (domain, name) in infer_ops_tbl.h, or NULL. */
const struct infer_op *infer__op_find(const char *domain, const char *name);

/* infer_plan.c */
/* A plan: every value's shape for one input key, the folded tensors, the nodes left to run
 * and each one's arena offset. Built and run here; a session caches plans and reads key,
 * arena_bytes and folded_bytes (and sets the key of the plans it builds). */
struct infer_plan {
    uint8_t *key;
    size_t keylen;
    struct infer_tensor *t; /* per value: dtype, shape, data (constants/folded only) */
    int64_t *off;           /* per value: arena offset, -1 when not in the arena */
    void **owned;           /* folded outputs */
    size_t n_owned;
    int *run; /* nodes left to execute at run time, in order */
    size_t n_run;
    int *alias; /* pairs (value, value whose buffer it shares): alias nodes' outputs */
    size_t n_alias;
    size_t arena_bytes, scratch_off;
    size_t folded_bytes; /* the owned tensors, held as long as the plan is cached */
    int max_args;
};
enum infer_plan_mode {
    INFER_PLAN_RUN,     /* a session plan: every shape known, arena offsets assigned */
    INFER_PLAN_PROBE,   /* load: keyed inputs unknown; shapes written back into m->values,
                         * nodes on constants only folded for good (node->folded) */
    INFER_PLAN_MEASURE, /* load: sizes a run; nodes whose shape fails or is unknown are left
                         * out (such a run would stop there before allocating anything) */
};
void infer__plan_free(struct infer_plan **pp);
/* Shape inference over the whole graph, folding what is known, then the arena layout. The
 * folded tensors plus the arena must fit `limit` bytes: checked before each allocation,
 * -E2BIG otherwise. */
int infer__plan_build(struct infer_model *m, const struct infer_tensor *inputs,
                      enum infer_plan_mode mode, size_t limit, struct infer_plan **out,
                      struct infer_err *e);
/* Folded bytes plus arena bytes of a plan. */
size_t infer__plan_bytes(const struct infer_plan *p);
/* Runs a RUN plan built for these inputs' key in `arena` (at least p->arena_bytes). out[j]
 * is graph output sel[j] (j when sel is NULL) and points into the arena or at a constant:
 * valid until the next run in that arena. */
int infer__plan_run(const struct infer_model *m, struct infer_plan *p,
                    const struct infer_tensor *inputs, void *arena, const int *sel, size_t n_out,
                    struct infer_tensor *out, struct infer_err *e);

/* infer_testdata.c */
int infer__read_file(const char *path, size_t cap, void **out, size_t *len);
int infer__read_pb(const char *path, struct infer_tensor *t, char **name, char *err, size_t errlen);
int infer__run_dataset(struct infer_session *s, const struct infer_model *m, const char *dir,
                       double atol, double rtol, char *msg, size_t len);

#endif
