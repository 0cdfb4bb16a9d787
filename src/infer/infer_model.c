/* src/infer/infer_model.c: loading an ONNX model into an immutable struct infer_model.
 *
 * Bytes are pre-scanned (infer_pb.c), parsed by protobuf-c code generated from the
 * system's onnx.proto, then converted into our own graph: values (named tensors) and
 * topologically sorted nodes bound to operators. The protobuf tree is freed before
 * returning, so a loaded model holds each weight once. Load ends with a shape-inference
 * probe over the whole graph (dynamic dims at 1) so bad shapes and dtypes fail here, not
 * on the first request; the probe also folds, once for good, every node that reads only
 * constants. Then one run is sized at the caller's batch (a "measure" plan).
 *
 * Memory budget: every byte the model keeps (weights, attributes, folded constants, packed
 * copies) is charged with infer__charge() before it is allocated (attributes and op
 * structures right after, bounded by the file), and folded tensors plus the sized run are
 * checked in the planner before their allocation, so a tiny file that claims a huge tensor
 * is refused with its size, not built. After load nothing in the model is written except
 * refcnt. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "infer/infer_pb.h"

#define OPSET_MIN 7
#define OPSET_MAX 17
#define ML_OPSET_MAX 3

/* Name -> value index, open addressing; lives only during load. */
struct names {
    size_t cap;
    int *slot;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;

    while (*s)
        h = (h ^ (uint8_t)*s++) * 1099511628211ull;
    return h;
}

static int names_find(const struct names *nm, const struct infer_model *m, const char *s)
{
    for (size_t i = hash_str(s) & (nm->cap - 1);; i = (i + 1) & (nm->cap - 1)) {
        if (nm->slot[i] < 0)
            return -1;
        if (!strcmp(m->values[nm->slot[i]].name, s))
            return nm->slot[i];
    }
}

static void names_put(struct names *nm, const struct infer_model *m, int idx)
{
    size_t i = hash_str(m->values[idx].name) & (nm->cap - 1);

    while (nm->slot[i] >= 0)
        i = (i + 1) & (nm->cap - 1);
    nm->slot[i] = idx;
}

static int value_add(struct infer_model *m, struct names *nm, const char *name)
{
    struct infer_value *v = &m->values[m->n_values];

    memset(v, 0, sizeof(*v));
    v->name = mc_xstrdup(name);
    v->rank = -1;
    v->producer = -1;
    v->input_idx = -1;
    names_put(nm, m, (int)m->n_values);
    return (int)m->n_values++;
}

static void attr_fini(struct infer_attr *a)
{
    free(a->name);
    free(a->s);
    free(a->floats);
    free(a->ints);
    for (size_t i = 0; a->strings != NULL && i < a->n; i++)
        free(a->strings[i]);
    free(a->strings);
    free(a->t.data);
}

static void model_free(struct infer_model *m)
{
    size_t held = m->const_bytes;

    for (size_t i = 0; i < m->n_values; i++) {
        free(m->values[i].name);
        free(m->values[i].cdata);
    }
    for (size_t i = 0; i < m->n_nodes; i++) {
        struct infer_node *n = &m->nodes[i];
        free(n->name);
        free(n->op_type);
        free(n->in);
        free(n->out);
        for (size_t j = 0; j < n->n_attrs; j++)
            attr_fini(&n->attrs[j]);
        free(n->attrs);
        free(n->iv);
        if (n->ext_free != NULL)
            n->ext_free(n->ext);
    }
    free(m->values);
    free(m->nodes);
    free(m->inputs);
    free(m->outputs);
    free(m->in_info);
    free(m->out_info);
    free(m->producer);
    MC_FREE_OBJ(m);
    infer__release(held);
}

static size_t attr_bytes(const struct infer_attr *a)
{
    size_t b = 0;

    switch (a->type) {
    case INFER_AT_STRING: b = strlen(a->s); break;
    case INFER_AT_TENSOR: b = infer__bytes(&a->t); break;
    case INFER_AT_FLOATS: b = a->n * sizeof(float); break;
    case INFER_AT_INTS: b = a->n * sizeof(int64_t); break;
    case INFER_AT_STRINGS:
        for (size_t i = 0; i < a->n; i++)
            b += strlen(a->strings[i]) + sizeof(char *);
        break;
    default: break;
    }
    return b;
}

static int copy_attr(const Onnx__AttributeProto *ap, struct infer_attr *a, struct infer_err *e)
{
    uint64_t budget = 0;

    a->name = mc_xstrdup(ap->name ? ap->name : "");
    a->type = ap->has_type ? (int)ap->type : 0;
    if (ap->ref_attr_name != NULL && ap->ref_attr_name[0] != '\0')
        return infer__errf(e, -ENOTSUP, "attribute '%s' refers to a function attribute", a->name);
    switch (a->type) {
    case INFER_AT_FLOAT: a->f = ap->f; break;
    case INFER_AT_INT: a->i = ap->i; break;
    case INFER_AT_STRING: a->s = mc_xstrndup((const char *)ap->s.data, ap->s.len); break;
    case INFER_AT_TENSOR:
        if (ap->t == NULL)
            return infer__errf(e, -EINVAL, "attribute '%s' has no tensor", a->name);
        return infer__tensor_from_proto(ap->t, NULL, &budget, &a->t, e);
    case INFER_AT_FLOATS:
        a->n = ap->n_floats;
        a->floats = mc_xmalloc(sizeof(float) * (a->n ? a->n : 1));
        if (a->n)
            memcpy(a->floats, ap->floats, sizeof(float) * a->n);
        break;
    case INFER_AT_INTS:
        a->n = ap->n_ints;
        a->ints = mc_xmalloc(sizeof(int64_t) * (a->n ? a->n : 1));
        if (a->n)
            memcpy(a->ints, ap->ints, sizeof(int64_t) * a->n);
        break;
    case INFER_AT_STRINGS:
        a->n = ap->n_strings;
        a->strings = mc_xcalloc(a->n ? a->n : 1, sizeof(char *));
        for (size_t i = 0; i < a->n; i++)
            a->strings[i] = mc_xstrndup((const char *)ap->strings[i].data, ap->strings[i].len);
        break;
    default:
        return infer__errf(e, -ENOTSUP,
                           "attribute '%s': type %d (graphs, sparse tensors, "
                           "type protos) not supported",
                           a->name, a->type);
    }
    return 0;
}

static int io_info(const Onnx__ValueInfoProto *vi, struct infer_io_info *info, const char *what,
                   struct infer_err *e)
{
    const Onnx__TypeProto *tp = vi->type;

    info->rank = -1;
    if (tp == NULL || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ||
        tp->tensor_type == NULL)
        return infer__errf(e, -ENOTSUP,
                           "%s '%s': only tensor types are supported (not "
                           "sequences, maps, optionals or sparse tensors)",
                           what, vi->name);
    info->dtype = tp->tensor_type->has_elem_type ? tp->tensor_type->elem_type : 0;
    if (!infer__dtype_supported(info->dtype))
        return infer__errf(e, -ENOTSUP, "%s '%s': dtype %s not supported", what, vi->name,
                           infer_dtype_name(info->dtype));
    if (tp->tensor_type->shape != NULL) {
        const Onnx__TensorShapeProto *sh = tp->tensor_type->shape;
        if (sh->n_dim > INFER_MAX_RANK)
            return infer__errf(e, -ENOTSUP, "%s '%s': rank %zu over %d", what, vi->name, sh->n_dim,
                               INFER_MAX_RANK);
        info->rank = (int)sh->n_dim;
        for (size_t i = 0; i < sh->n_dim; i++) {
            const Onnx__TensorShapeProto__Dimension *d = sh->dim[i];
            info->dims[i] = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE
                              ? d->dim_value
                              : -1;
            if (info->dims[i] < -1)
                return infer__errf(e, -EINVAL, "%s '%s': negative dim", what, vi->name);
        }
    }
    return 0;
}

/* Marks graph inputs whose values decide some shape (Reshape's shape, Slice's starts...).
 * Nodes are walked backwards so every consumer is seen before its producer. */
static void mark_keyed(struct infer_model *m)
{
    for (size_t k = m->n_nodes; k-- > 0;) {
        struct infer_node *n = &m->nodes[k];
        bool out_needed = false;
        for (int j = 0; j < n->n_out; j++)
            if (n->out[j] >= 0 && m->values[n->out[j]].needed)
                out_needed = true;
        for (int i = 0; i < n->n_in; i++) {
            if (n->in[i] < 0)
                continue;
            if ((out_needed && !n->op->shape_only) || (n->op->value_inputs >> i & 1))
                m->values[n->in[i]].needed = true;
        }
    }
    for (size_t i = 0; i < m->n_inputs; i++)
        m->values[m->inputs[i]].keyed = m->values[m->inputs[i]].needed;
}

/* Gemm -> Relu where the Relu is the Gemm output's only use and that output is not a graph
 * output: the Gemm applies the Relu in its store and the Relu node becomes an alias (see
 * struct infer_node). */
static void fuse_gemm_relu(struct infer_model *m)
{
    int *uses = mc_xcalloc(m->n_values + 1, sizeof(int));

    for (size_t k = 0; k < m->n_nodes; k++)
        for (int i = 0; i < m->nodes[k].n_in; i++)
            if (m->nodes[k].in[i] >= 0)
                uses[m->nodes[k].in[i]]++;
    for (size_t i = 0; i < m->n_outputs; i++)
        uses[m->outputs[i]] += 2;
    for (size_t k = 0; k < m->n_nodes; k++) {
        struct infer_node *r = &m->nodes[k], *gm;
        int v = r->n_in == 1 ? r->in[0] : -1;
        if (strcmp(r->op->name, "Relu") || r->op->domain[0] || v < 0 || r->n_out != 1 ||
            r->out[0] < 0 || uses[v] != 1 || m->values[v].producer < 0)
            continue;
        gm = &m->nodes[m->values[v].producer];
        if (strcmp(gm->op->name, "Gemm") || gm->op->domain[0] || gm->n_out != 1 ||
            gm->out[0] != v || gm->fused_relu)
            continue;
        gm->fused_relu = true;
        r->alias = true;
    }
    free(uses);
}

/* Gives back the payload of an initializer already copied into the model, so the parsed
 * tree shrinks while the model's constants grow: the load peaks near the tree's size, not
 * at the tree plus every constant. protobuf-c's free_unpacked skips NULL arrays. */
static void release_payload(Onnx__TensorProto *tp)
{
    free(tp->raw_data.data);
    tp->raw_data.data = NULL;
    tp->raw_data.len = 0;
    free(tp->float_data);
    tp->float_data = NULL;
    tp->n_float_data = 0;
    free(tp->double_data);
    tp->double_data = NULL;
    tp->n_double_data = 0;
    free(tp->int64_data);
    tp->int64_data = NULL;
    tp->n_int64_data = 0;
    free(tp->uint64_data);
    tp->uint64_data = NULL;
    tp->n_uint64_data = 0;
    free(tp->int32_data);
    tp->int32_data = NULL;
    tp->n_int32_data = 0;
}

static int build(struct infer_model *m, const Onnx__ModelProto *mp, const char *ext_dir,
                 uint64_t ext_budget, struct infer_err *e)
{
    const Onnx__GraphProto *g = mp->graph;
    struct names nm = {0};
    size_t maxv;
    int err = 0;

    m->ir_version = mp->has_ir_version ? mp->ir_version : 0;
    if (g == NULL)
        return infer__errf(e, -EINVAL, "model has no graph (empty file, or not an ONNX model?)");
    if (m->ir_version < 3)
        return infer__errf(e, -ENOTSUP, "ir_version %lld not supported (3 or later)",
                           (long long)m->ir_version);
    for (size_t i = 0; i < mp->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *os = mp->opset_import[i];
        const char *d = os->domain ? os->domain : "";
        int64_t v = os->has_version ? os->version : 0;
        if (!strcmp(d, "") || !strcmp(d, "ai.onnx")) {
            if (v < OPSET_MIN || v > OPSET_MAX)
                return infer__errf(e, -ENOTSUP,
                                   "default-domain opset %lld not supported "
                                   "(%d to %d)",
                                   (long long)v, OPSET_MIN, OPSET_MAX);
            m->opset = (int)v;
        } else if (!strcmp(d, "ai.onnx.ml")) {
            if (v < 1 || v > ML_OPSET_MAX)
                return infer__errf(e, -ENOTSUP, "ai.onnx.ml opset %lld not supported (1 to %d)",
                                   (long long)v, ML_OPSET_MAX);
            m->ml_opset = (int)v;
        }
    }
    if (m->opset == 0 && m->ml_opset == 0)
        return infer__errf(e, mp->n_opset_import ? -ENOTSUP : -EINVAL,
                           "model imports neither the default domain nor ai.onnx.ml%s%s",
                           mp->n_opset_import ? " but " : "",
                           mp->n_opset_import ? mp->opset_import[0]->domain : "");
    if (g->n_sparse_initializer > 0)
        return infer__errf(e, -ENOTSUP, "sparse initializers not supported");
    if (mp->n_functions > 0)
        return infer__errf(e, -ENOTSUP, "model-local functions not supported");

    maxv = g->n_initializer + g->n_input;
    for (size_t i = 0; i < g->n_node; i++)
        maxv += g->node[i]->n_output;
    nm.cap = 16;
    while (nm.cap < maxv * 2)
        nm.cap *= 2;
    nm.slot = mc_xmalloc(sizeof(int) * nm.cap);
    memset(nm.slot, 0xff, sizeof(int) * nm.cap);
    m->values = mc_xcalloc(maxv ? maxv : 1, sizeof(*m->values));

    for (size_t i = 0; i < g->n_initializer; i++) {
        const Onnx__TensorProto *tp = g->initializer[i];
        struct infer_tensor t;
        if (tp->name == NULL || tp->name[0] == '\0' || names_find(&nm, m, tp->name) >= 0) {
            err = infer__errf(e, -EINVAL, "initializer %zu: missing or duplicate name", i);
            goto out;
        }
        size_t tb;
        if (infer__tensor_proto_bytes(tp, &tb) == 0) {
            err = infer__charge(m, tb, e, "initializer '%s'", tp->name);
            if (err != 0)
                goto out;
        }
        err = infer__tensor_from_proto(tp, ext_dir, &ext_budget, &t, e);
        if (err != 0)
            goto out;
        release_payload(g->initializer[i]);
        int v = value_add(m, &nm, tp->name);
        m->values[v].dtype = t.dtype;
        m->values[v].rank = t.rank;
        memcpy(m->values[v].dims, t.dims, sizeof(t.dims));
        m->values[v].cdata = t.data;
    }

    m->inputs = mc_xcalloc(g->n_input ? g->n_input : 1, sizeof(int));
    m->in_info = mc_xcalloc(g->n_input ? g->n_input : 1, sizeof(*m->in_info));
    for (size_t i = 0; i < g->n_input; i++) {
        const Onnx__ValueInfoProto *vi = g->input[i];
        if (vi->name == NULL || vi->name[0] == '\0') {
            err = infer__errf(e, -EINVAL, "graph input %zu has no name", i);
            goto out;
        }
        /* IR < 4 lists initializers among the inputs too; those are constants here. */
        int have = names_find(&nm, m, vi->name);
        if (have >= 0) {
            if (m->values[have].cdata == NULL) {
                err = infer__errf(e, -EINVAL, "graph input '%s' listed twice", vi->name);
                goto out;
            }
            continue;
        }
        struct infer_io_info *info = &m->in_info[m->n_inputs];
        err = io_info(vi, info, "input", e);
        if (err != 0)
            goto out;
        int v = value_add(m, &nm, vi->name);
        info->name = m->values[v].name;
        m->values[v].dtype = info->dtype;
        m->values[v].rank = info->rank;
        memcpy(m->values[v].dims, info->dims, sizeof(info->dims));
        m->values[v].input_idx = (int)m->n_inputs;
        m->inputs[m->n_inputs++] = v;
    }

    m->nodes = mc_xcalloc(g->n_node ? g->n_node : 1, sizeof(*m->nodes));
    for (size_t k = 0; k < g->n_node; k++) {
        const Onnx__NodeProto *np = g->node[k];
        struct infer_node *n = &m->nodes[k];
        const char *dom = np->domain ? np->domain : "";
        const char *label;
        m->n_nodes = k + 1;
        n->name = mc_xstrdup(np->name && np->name[0] ? np->name : "");
        n->op_type = mc_xstrdup(np->op_type ? np->op_type : "");
        if (n->name[0] == '\0') {
            char tmp[64];
            snprintf(tmp, sizeof(tmp), "#%zu", k);
            free(n->name);
            n->name = mc_xstrdup(tmp);
        }
        label = n->name;
        if (!strcmp(dom, "ai.onnx"))
            dom = "";
        n->opset = !strcmp(dom, "") ? m->opset : !strcmp(dom, "ai.onnx.ml") ? m->ml_opset : 0;
        n->op = infer__op_find(dom, n->op_type);
        if (n->opset == 0 && n->op != NULL)
            n->op = NULL; /* domain not imported */
        if (n->op == NULL) {
            err = infer__errf(e, -ENOTSUP, "unsupported operator '%s%s%s' (opset %d) in node '%s'",
                              dom, dom[0] ? "." : "", n->op_type, n->opset, label);
            goto out;
        }
        n->n_in = (int)np->n_input;
        n->n_out = (int)np->n_output;
        n->in = mc_xcalloc(np->n_input + 1, sizeof(int));
        n->out = mc_xcalloc(np->n_output + 1, sizeof(int));
        for (size_t i = 0; i < np->n_input; i++) {
            const char *s = np->input[i];
            n->in[i] = -1;
            if (s == NULL || s[0] == '\0')
                continue;
            n->in[i] = names_find(&nm, m, s);
            if (n->in[i] < 0) {
                err = infer__errf(e, -EINVAL,
                                  "node '%s' (%s): input '%s' is not defined before "
                                  "use (graph not topologically sorted?)",
                                  label, n->op_type, s);
                goto out;
            }
        }
        for (size_t i = 0; i < np->n_output; i++) {
            const char *s = np->output[i];
            n->out[i] = -1;
            if (s == NULL || s[0] == '\0')
                continue;
            if (names_find(&nm, m, s) >= 0) {
                err = infer__errf(e, -EINVAL, "node '%s' (%s): output '%s' defined twice", label,
                                  n->op_type, s);
                goto out;
            }
            n->out[i] = value_add(m, &nm, s);
            m->values[n->out[i]].producer = (int)k;
        }
        n->attrs = mc_xcalloc(np->n_attribute ? np->n_attribute : 1, sizeof(*n->attrs));
        for (size_t i = 0; i < np->n_attribute; i++) {
            n->n_attrs = i + 1;
            err = copy_attr(np->attribute[i], &n->attrs[i], e);
            if (err == 0)
                err = infer__charge(m, attr_bytes(&n->attrs[i]), e, "attribute '%s'",
                                    n->attrs[i].name);
            if (err != 0) {
                char msg[256];
                snprintf(msg, sizeof(msg), "%s", e && e->buf ? e->buf : "");
                infer__errf(e, err, "node '%s' (%s): %s", label, n->op_type, msg);
                goto out;
            }
        }
        if (n->op->load != NULL) {
            err = n->op->load(n, e);
            if (err == 0)
                err = infer__charge(m, n->ext_bytes, e, "its parsed attributes");
            if (err != 0) {
                char msg[256];
                snprintf(msg, sizeof(msg), "%s", e && e->buf ? e->buf : "");
                infer__errf(e, err, "node '%s' (%s, opset %d): %s", label, n->op_type, n->opset,
                            msg);
                goto out;
            }
        }
    }

    for (size_t k = 0; k < m->n_nodes; k++) {
        struct infer_node *n = &m->nodes[k];
        if (n->op->prepare == NULL)
            continue;
        err = n->op->prepare(n, m, e);
        if (err != 0) {
            char msg[256];
            snprintf(msg, sizeof(msg), "%s", e && e->buf ? e->buf : "");
            infer__errf(e, err, "node '%s' (%s, opset %d): %s", n->name, n->op_type, n->opset, msg);
            goto out;
        }
    }

    m->outputs = mc_xcalloc(g->n_output ? g->n_output : 1, sizeof(int));
    m->out_info = mc_xcalloc(g->n_output ? g->n_output : 1, sizeof(*m->out_info));
    if (g->n_output == 0) {
        err = infer__errf(e, -EINVAL, "graph has no outputs");
        goto out;
    }
    for (size_t i = 0; i < g->n_output; i++) {
        const Onnx__ValueInfoProto *vi = g->output[i];
        int v = vi->name ? names_find(&nm, m, vi->name) : -1;
        if (v < 0) {
            err = infer__errf(e, -EINVAL, "graph output '%s' is never produced",
                              vi->name ? vi->name : "");
            goto out;
        }
        err = io_info(vi, &m->out_info[i], "output", e);
        if (err != 0)
            goto out;
        m->out_info[i].name = m->values[v].name;
        m->outputs[m->n_outputs++] = v;
    }
    fuse_gemm_relu(m);
    mark_keyed(m);
out:
    free(nm.slot);
    return err;
}

/* Input shapes for a load-time plan: dynamic dims at 1, but a dynamic leading dim at
 * `batch` (the batch dimension by ONNX convention; other dims cannot be guessed and are
 * checked when a run brings them). */
static void plan_inputs(const struct infer_model *m, int64_t batch, struct infer_tensor *in)
{
    for (size_t i = 0; i < m->n_inputs; i++) {
        const struct infer_io_info *info = &m->in_info[i];
        memset(&in[i], 0, sizeof(in[i]));
        in[i].dtype = info->dtype;
        in[i].rank = info->rank;
        for (int d = 0; d < info->rank; d++)
            in[i].dims[d] = info->dims[d] >= 0 ? info->dims[d] : d == 0 ? batch : 1;
    }
}

static size_t default_budget(const struct infer_load_opts *opts)
{
    return opts && opts->max_memory ? opts->max_memory : INFER_DEFAULT_MEMORY;
}

/* *bufp is the file's bytes; when owned (the file loader's copy) it is freed as soon as
 * protobuf-c has parsed it, since every field is copied out of it. */
static int load_bytes(const void **bufp, int owned, size_t len, const char *ext_dir,
                      const struct infer_load_opts *opts, struct infer_model **out,
                      struct infer_err *e)
{
    const void *buf = *bufp;
    Onnx__ModelProto *mp;
    struct infer_model *m;
    struct infer_plan *plan = NULL;
    struct infer_tensor *in;
    uint64_t ext_budget = opts && opts->max_external_bytes ? opts->max_external_bytes
                                                           : (UINT64_C(16) << 30);
    int err;

    err = infer__pb_check(buf, len, INFER_PB_MODEL, e);
    if (err != 0)
        return err;
    mp = onnx__model_proto__unpack(NULL, len, buf);
    if (owned) {
        free((void *)buf);
        *bufp = NULL;
    }
    if (mp == NULL)
        return infer__errf(e, -EBADMSG, "not a valid ONNX ModelProto (protobuf parse failed)");
    m = mc_xcalloc(1, sizeof(*m));
    MC_INIT_OBJ(m, INFER_MODEL_MAGIC);
    atomic_init(&m->refcnt, 1);
    m->budget = default_budget(opts);
    m->load_batch = opts && opts->batch > 0 ? opts->batch : 1;
    m->producer = mc_xstrdup(mp->producer_name ? mp->producer_name : "");
    err = build(m, mp, ext_dir, ext_budget, e);
    onnx__model_proto__free_unpacked(mp, NULL);
    /* The parsed tree held about the file's size: give it back now, not at the next trim. */
    infer__release(len);
    if (err != 0)
        goto fail;
    in = mc_xcalloc(m->n_inputs + 1, sizeof(*in));
    /* Shape inference with every dynamic dim at 1: the whole graph is checked now, and what
     * depends on constants only is folded once, charged to the model's constants. */
    plan_inputs(m, 1, in);
    err = infer__plan_build(m, in, INFER_PLAN_PROBE, m->budget - m->const_bytes, &plan, e);
    infer__plan_free(&plan);
    for (size_t i = 0; err == 0 && i < m->n_outputs; i++) {
        struct infer_io_info *oi = &m->out_info[i];
        const struct infer_value *v = &m->values[m->outputs[i]];
        if (oi->dtype != v->dtype && v->dtype != 0)
            err = infer__errf(e, -EINVAL, "output '%s' declared %s but computes %s", oi->name,
                              infer_dtype_name(oi->dtype), infer_dtype_name(v->dtype));
    }
    if (err == 0) {
        /* The run the caller will make at its largest batch must fit beside the constants. */
        plan_inputs(m, m->load_batch, in);
        err = infer__plan_build(m, in, INFER_PLAN_MEASURE, m->budget - m->const_bytes, &plan, e);
        if (err == 0)
            m->run_bytes = infer__plan_bytes(plan);
        else if (err == -E2BIG && e != NULL && e->buf != NULL) {
            char msg[384];
            snprintf(msg, sizeof(msg), "%s", e->buf);
            infer__errf(e, err, "a run of %lld rows: %s", (long long)m->load_batch, msg);
        }
        infer__plan_free(&plan);
    }
    free(in);
    if (err != 0)
        goto fail;
    *out = m;
    return 0;
fail:
    model_free(m);
    return err;
}

int infer_model_load_mem(const void *buf, size_t len, const struct infer_load_opts *opts,
                         struct infer_model **out, char *errbuf, size_t errlen)
{
    struct infer_err e = {errbuf, errlen};
    size_t cap = opts && opts->max_file_bytes ? opts->max_file_bytes : ((size_t)2 << 30);

    if (len > cap)
        return infer__errf(&e, -EFBIG, "model of %zu bytes over the cap of %zu", len, cap);
    /* Parsing alone holds the bytes twice: a file larger than the budget cannot fit it. */
    if (len > default_budget(opts))
        return infer__errf(&e, -E2BIG, "model of %zu bytes over the memory budget of %zu bytes",
                           len, default_budget(opts));
    return load_bytes(&buf, 0, len, opts ? opts->external_dir : NULL, opts, out, &e);
}

int infer_model_load(const char *path, const struct infer_load_opts *opts, struct infer_model **out,
                     char *errbuf, size_t errlen)
{
    struct infer_err e = {errbuf, errlen};
    size_t cap = opts && opts->max_file_bytes ? opts->max_file_bytes : ((size_t)2 << 30);
    char dir[PATH_MAX];
    struct stat st;
    uint8_t *buf = NULL;
    int fd, err = 0, loaded = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return infer__errf(&e, -errno, "%s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        err = infer__errf(&e, -EINVAL, "%s: not a regular file", path);
        goto out;
    }
    if ((uint64_t)st.st_size > cap) {
        err = infer__errf(&e, -EFBIG, "%s: %lld bytes, over the cap of %zu", path,
                          (long long)st.st_size, cap);
        goto out;
    }
    if ((uint64_t)st.st_size > default_budget(opts)) {
        err = infer__errf(&e, -E2BIG, "%s: %lld bytes, over the memory budget of %zu bytes", path,
                          (long long)st.st_size, default_budget(opts));
        goto out;
    }
    buf = malloc(st.st_size ? (size_t)st.st_size : 1);
    if (buf == NULL) {
        err = infer__errf(&e, -ENOMEM, "%s: out of memory", path);
        goto out;
    }
    loaded = 1;
    for (size_t got = 0; got < (size_t)st.st_size;) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r <= 0) {
            err = infer__errf(&e, r < 0 ? -errno : -EIO, "%s: read failed", path);
            goto out;
        }
        got += (size_t)r;
    }
    if (opts != NULL && opts->external_dir != NULL) {
        snprintf(dir, sizeof(dir), "%s", opts->external_dir);
    } else {
        char tmp[PATH_MAX];
        snprintf(tmp, sizeof(tmp), "%s", path);
        snprintf(dir, sizeof(dir), "%s", dirname(tmp));
    }
    err = load_bytes((const void **)&buf, 1, (size_t)st.st_size, dir, opts, out, &e);
    if (err == -E2BIG && errbuf != NULL && errlen > 0) {
        /* Name the file: a registry loads many, and the budget is per model. */
        char msg[768];
        snprintf(msg, sizeof(msg), "%s", errbuf);
        infer__errf(&e, err, "%s: %s", path, msg);
    }
out:
    free(buf);
    close(fd);
    infer__release(loaded ? (size_t)st.st_size : 0);
    return err;
}

struct infer_model *infer_model_ref(struct infer_model *m)
{
    MC_CHECK_OBJ_NOTNULL(m, INFER_MODEL_MAGIC);
    atomic_fetch_add_explicit(&m->refcnt, 1, memory_order_relaxed);
    return m;
}

void infer_model_unref(struct infer_model **mp)
{
    struct infer_model *m = *mp;

    if (m == NULL)
        return;
    *mp = NULL;
    MC_CHECK_OBJ(m, INFER_MODEL_MAGIC);
    if (atomic_fetch_sub_explicit(&m->refcnt, 1, memory_order_acq_rel) == 1)
        model_free(m);
}

size_t infer_model_n_inputs(const struct infer_model *m)
{
    return m->n_inputs;
}

size_t infer_model_n_outputs(const struct infer_model *m)
{
    return m->n_outputs;
}

const struct infer_io_info *infer_model_input(const struct infer_model *m, size_t i)
{
    return i < m->n_inputs ? &m->in_info[i] : NULL;
}

const struct infer_io_info *infer_model_output(const struct infer_model *m, size_t i)
{
    return i < m->n_outputs ? &m->out_info[i] : NULL;
}

int infer_model_input_index(const struct infer_model *m, const char *name)
{
    for (size_t i = 0; i < m->n_inputs; i++)
        if (!strcmp(m->in_info[i].name, name))
            return (int)i;
    return -ENOENT;
}

int infer_model_output_index(const struct infer_model *m, const char *name)
{
    for (size_t i = 0; i < m->n_outputs; i++)
        if (!strcmp(m->out_info[i].name, name))
            return (int)i;
    return -ENOENT;
}

void infer_model_memory(const struct infer_model *m, struct infer_model_mem *out)
{
    MC_CHECK_OBJ_NOTNULL(m, INFER_MODEL_MAGIC);
    out->budget = m->budget;
    out->constants = m->const_bytes;
    out->run = m->run_bytes;
    out->batch = m->load_batch;
}

void infer_model_describe(const struct infer_model *m, char *buf, size_t len)
{
    size_t off = 0;

    if (len == 0)
        return;
    buf[0] = '\0';
#define PUT(...)                                                                                   \
    do {                                                                                           \
        if (off < len) {                                                                           \
            int w_ = snprintf(buf + off, len - off, __VA_ARGS__);                                  \
            off += w_ > 0 ? (size_t)w_ : 0;                                                        \
        }                                                                                          \
    } while (0)
    PUT("ir_version %lld, opset %d", (long long)m->ir_version, m->opset);
    if (m->ml_opset)
        PUT(", ai.onnx.ml opset %d", m->ml_opset);
    PUT(", %zu nodes, ops:", m->n_nodes);
    for (size_t i = 0; i < m->n_nodes; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = !strcmp(m->nodes[j].op_type, m->nodes[i].op_type);
        if (!seen)
            PUT(" %s", m->nodes[i].op_type);
    }
#undef PUT
}
