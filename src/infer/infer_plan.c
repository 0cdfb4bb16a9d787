/* src/infer/infer_session.c: plans (static memory layout per input shape) and runs.
 *
 * A plan is built the first time a session sees a given set of input shapes (plus the
 * values of "keyed" inputs, those that decide a shape, e.g. a Reshape target fed as a
 * graph input). Building walks the graph once: every node's output shape is computed,
 * nodes whose inputs are all known (initializers, keyed inputs, Shape of a known shape)
 * are evaluated then and there (constant folding), and every other node's outputs get an
 * offset in one arena, reusing memory between tensors whose lifetimes do not overlap.
 * A run with a cached plan does no allocation: it points tensors into the arena and calls
 * the kernels in order. Sessions are single-threaded; the model is only read. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "infer/infer_int.h"

#define KEYED_MAX_BYTES (64 * 1024)

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

void infer__plan_free(struct infer_plan **pp)
{
    struct infer_plan *p = *pp;

    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n_owned; i++)
        free(p->owned[i]);
    free(p->owned);
    free(p->key);
    free(p->t);
    free(p->off);
    free(p->run);
    free(p->alias);
    free(p);
    *pp = NULL;
}

static int node_err(const struct infer_node *n, int err, struct infer_err *e)
{
    char msg[384];

    snprintf(msg, sizeof(msg), "%s", e != NULL && e->buf != NULL ? e->buf : "");
    return infer__errf(e, err, "node '%s' (%s, opset %d): %s", n->name, n->op_type, n->opset,
                       msg);
}

struct live {
    int v;
    size_t bytes;
    size_t start, end;
    size_t off;
};

static int cmp_live(const void *a, const void *b)
{
    const struct live *x = a, *y = b;

    return x->bytes < y->bytes ? 1 : x->bytes > y->bytes ? -1 : x->v - y->v;
}

static size_t align_up(size_t x)
{
    return (x + INFER_ALIGN - 1) / INFER_ALIGN * INFER_ALIGN;
}

/* Greedy offset assignment, largest tensors first, lowest offset that fits beside every
 * already placed tensor alive at the same time. Quadratic, but runs once per plan. */
static size_t assign_offsets(struct live *l, size_t n)
{
    size_t total = 0;

    qsort(l, n, sizeof(*l), cmp_live);
    for (size_t i = 0; i < n; i++) {
        size_t off = 0;
        bool moved = true;
        while (moved) {
            moved = false;
            for (size_t j = 0; j < i; j++) {
                if (l[j].end < l[i].start || l[i].end < l[j].start)
                    continue;
                if (off < l[j].off + l[j].bytes && l[j].off < off + l[i].bytes) {
                    off = align_up(l[j].off + l[j].bytes);
                    moved = true;
                }
            }
        }
        l[i].off = off;
        if (off + l[i].bytes > total)
            total = off + l[i].bytes;
    }
    return align_up(total);
}

static void dims_str(const struct infer_tensor *t, char *buf, size_t len)
{
    size_t o = 0;

    o += (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < t->rank && o < len; d++)
        o += (size_t)snprintf(buf + o, len - o, "%s%lld", d ? ", " : "", (long long)t->dims[d]);
    if (o < len)
        snprintf(buf + o, len - o, "] %s", infer_dtype_name(t->dtype));
}

/* -E2BIG: `need` more bytes after `used` do not fit `limit`. The message says what the
 * limit is made of, the budget and the model's constants unless a session cap is lower. */
static int over_limit(const struct infer_model *m, size_t limit, size_t used, size_t need,
                      struct infer_err *e, const char *what)
{
    char lim[160], after[64] = "";

    if (limit == m->budget - m->const_bytes)
        snprintf(lim, sizeof(lim), "the %zu bytes the memory budget of %zu bytes leaves beside "
                 "%zu bytes of constants", limit, m->budget, m->const_bytes);
    else
        snprintf(lim, sizeof(lim), "the session's cap of %zu bytes", limit);
    if (used)
        snprintf(after, sizeof(after), " (with %zu bytes already folded)", used);
    return infer__errf(e, -E2BIG, "%s needs %zu bytes%s, over %s", what, need, after, lim);
}

/* After the probe: nodes that read only constants are marked folded and never planned
 * again; their outputs that a planned node or the graph reads become constants of the
 * model (charged to it), the rest are freed with the probe. A folded node's attributes
 * and op structure are not needed any more. */
static void keep_folds(struct infer_model *m, struct infer_plan *p, const bool *stat)
{
    bool *read = mc_xcalloc(m->n_values + 1, sizeof(bool));
    size_t refund = 0;

    for (size_t k = 0; k < m->n_nodes; k++) {
        struct infer_node *n = &m->nodes[k];
        int present = 0, folded = 0;
        for (int j = 0; j < n->n_out; j++) {
            if (n->out[j] < 0)
                continue;
            present++;
            folded += stat[n->out[j]];
        }
        n->folded = present > 0 && folded == present;
        if (n->folded)
            continue;
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i] >= 0)
                read[n->in[i]] = true;
    }
    for (size_t i = 0; i < m->n_outputs; i++)
        read[m->outputs[i]] = true;
    for (size_t v = 0; v < m->n_values; v++) {
        struct infer_value *val = &m->values[v];
        if (!stat[v] || val->cdata != NULL || !read[v] || val->producer < 0 ||
            !m->nodes[val->producer].folded)
            continue;
        for (size_t i = 0; i < p->n_owned; i++) {
            if (p->owned[i] == p->t[v].data) {
                p->owned[i] = NULL;
                val->cdata = p->t[v].data;
                m->const_bytes += infer__bytes(&p->t[v]);
                break;
            }
        }
    }
    for (size_t k = 0; k < m->n_nodes; k++) {
        struct infer_node *n = &m->nodes[k];
        if (!n->folded)
            continue;
        for (size_t i = 0; i < n->n_attrs; i++) {
            if (n->attrs[i].type != INFER_AT_TENSOR)
                continue;
            refund += infer__bytes(&n->attrs[i].t);
            free(n->attrs[i].t.data);
            n->attrs[i].t.data = NULL;
        }
        if (n->ext_free != NULL)
            n->ext_free(n->ext);
        n->ext = NULL;
        n->ext_free = NULL;
        refund += n->ext_bytes;
        n->ext_bytes = 0;
    }
    m->const_bytes -= refund < m->const_bytes ? refund : m->const_bytes;
    free(read);
}

int infer__plan_build(struct infer_model *m, const struct infer_tensor *inputs,
                      enum infer_plan_mode mode, size_t limit, struct infer_plan **out,
                      struct infer_err *e)
{
    struct infer_plan *p = mc_xcalloc(1, sizeof(*p));
    bool probe = mode != INFER_PLAN_RUN;
    bool *known = mc_xcalloc(m->n_values + 1, sizeof(bool));
    bool *shaped = mc_xcalloc(m->n_values + 1, sizeof(bool));
    bool *stat = mc_xcalloc(m->n_values + 1, sizeof(bool));
    struct infer_tensor **args = NULL;
    struct live *lv = NULL;
    size_t *last = NULL, n_lv = 0, scratch_max = 0, big = 0;
    int *root = NULL;
    int err = 0;

    p->t = mc_xcalloc(m->n_values + 1, sizeof(*p->t));
    p->off = mc_xmalloc(sizeof(int64_t) * (m->n_values + 1));
    p->run = mc_xmalloc(sizeof(int) * (m->n_nodes + 1));
    p->alias = mc_xmalloc(sizeof(int) * (2 * m->n_nodes + 2));
    p->owned = mc_xmalloc(sizeof(void *) * (m->n_nodes * 4 + 1));
    for (size_t v = 0; v < m->n_values; v++) {
        const struct infer_value *val = &m->values[v];
        p->off[v] = -1;
        if (val->cdata != NULL) {
            p->t[v].dtype = val->dtype;
            p->t[v].rank = val->rank;
            memcpy(p->t[v].dims, val->dims, sizeof(val->dims));
            p->t[v].data = val->cdata;
            known[v] = shaped[v] = stat[v] = true;
        }
    }
    for (size_t i = 0; i < m->n_inputs; i++) {
        int v = m->inputs[i];
        p->t[v] = inputs[i];
        shaped[v] = inputs[i].rank >= 0;
        /* Only keyed inputs may be read while planning: the plan is reused for any input
         * with the same key, so nothing else may leak into it. */
        known[v] = m->values[v].keyed && inputs[i].data != NULL;
        if (!known[v])
            p->t[v].data = NULL;
    }
    for (size_t k = 0; k < m->n_nodes; k++)
        if (m->nodes[k].n_in + m->nodes[k].n_out > p->max_args)
            p->max_args = m->nodes[k].n_in + m->nodes[k].n_out;
    args = mc_xcalloc((size_t)p->max_args + 2, sizeof(*args));

    for (size_t k = 0; k < m->n_nodes; k++) {
        const struct infer_node *n = &m->nodes[k];
        struct infer_tensor **in = args, **o = args + n->n_in;
        bool all_shaped = true, all_known = true, all_stat = true;

        /* Folded at load: what planned nodes read of it is a constant of the model now. */
        if (n->folded)
            continue;
        for (int i = 0; i < n->n_in; i++) {
            int v = n->in[i];
            in[i] = v >= 0 ? &p->t[v] : NULL;
            if (v >= 0 && !shaped[v])
                all_shaped = false;
            if (v >= 0 && !known[v])
                all_known = false;
            if (v >= 0 && !stat[v])
                all_stat = false;
        }
        for (int j = 0; j < n->n_out; j++) {
            int v = n->out[j];
            o[j] = v >= 0 ? &p->t[v] : NULL;
            if (v >= 0)
                memset(&p->t[v], 0, sizeof(p->t[v]));
        }
        if (!all_shaped) {
            if (!probe) {
                err = node_err(n, infer__errf(e, -EINVAL, "input shape unknown"), e);
                goto out;
            }
            continue; /* probe: downstream of an input declared without a shape */
        }
        err = n->op->shape(n, in, o, e);
        if (err == INFER_UNKNOWN) {
            err = 0;
            if (!probe) {
                err = node_err(n, infer__errf(e, -ENOTSUP, "output shape depends on values "
                                              "computed at run time"), e);
                goto out;
            }
            continue;
        }
        if (err != 0 && mode == INFER_PLAN_MEASURE) {
            /* A run at this size stops here before allocating: nothing further to count. */
            err = 0;
            continue;
        }
        if (err != 0) {
            err = node_err(n, err, e);
            goto out;
        }
        for (int j = 0; j < n->n_out; j++) {
            int64_t numel;
            if (o[j] == NULL)
                continue;
            if (infer__dims_numel(o[j]->rank, o[j]->dims, &numel) != 0 ||
                !infer__dtype_supported(o[j]->dtype)) {
                err = node_err(n, infer__errf(e, -EINVAL, "output %d: bad shape or dtype", j), e);
                break;
            }
        }
        if (err != 0 && mode == INFER_PLAN_MEASURE) {
            err = 0;
            continue;
        }
        if (err != 0)
            goto out;
        for (int j = 0; j < n->n_out; j++)
            if (o[j] != NULL)
                shaped[n->out[j]] = true;
        if (n->op->shape_only)
            all_known = true;
        if (all_known) {
            size_t sb = n->op->scratch ? n->op->scratch(n, in, o) : 0, need = align_up(sb);
            void *scratch = NULL;
            int bigj = -1;
            /* Sized before anything is allocated: a constant expanded to gigabytes by a
             * few bytes of model is refused here, not built. */
            for (int j = 0; j < n->n_out; j++) {
                if (o[j] == NULL)
                    continue;
                need += align_up(infer__bytes(o[j]));
                if (bigj < 0 || infer__bytes(o[j]) > infer__bytes(o[bigj]))
                    bigj = j;
            }
            if (need > limit || p->folded_bytes > limit - need) {
                char what[320], ds[128] = "";
                if (bigj >= 0)
                    dims_str(o[bigj], ds, sizeof(ds));
                snprintf(what, sizeof(what), "node '%s' (%s): folding output '%s' %s", n->name,
                         n->op_type, bigj >= 0 ? m->values[n->out[bigj]].name : "", ds);
                err = over_limit(m, limit, p->folded_bytes, need, e, what);
                goto out;
            }
            scratch = sb ? infer__aligned_alloc(sb) : NULL;
            for (int j = 0; j < n->n_out; j++) {
                if (o[j] == NULL)
                    continue;
                o[j]->data = infer__aligned_alloc(infer__bytes(o[j]));
                if (o[j]->data == NULL) {
                    free(scratch);
                    err = infer__errf(e, -ENOMEM, "out of memory folding node '%s'", n->name);
                    goto out;
                }
                p->owned[p->n_owned++] = o[j]->data;
                p->folded_bytes += align_up(infer__bytes(o[j]));
                known[n->out[j]] = true;
                stat[n->out[j]] = all_stat;
            }
            err = n->op->run(n, in, o, scratch, e);
            free(scratch);
            if (err != 0 && mode == INFER_PLAN_MEASURE) {
                for (int j = 0; j < n->n_out; j++)
                    if (o[j] != NULL)
                        known[n->out[j]] = shaped[n->out[j]] = false;
                err = 0;
                continue;
            }
            if (err != 0) {
                err = node_err(n, err, e);
                goto out;
            }
            continue;
        }
        if (n->alias && n->in[0] >= 0 && n->out[0] >= 0) {
            /* Output 0 is input 0's buffer (a Relu fused into its Gemm): nothing to run. */
            p->alias[2 * p->n_alias] = n->out[0];
            p->alias[2 * p->n_alias + 1] = n->in[0];
            p->n_alias++;
            continue;
        }
        if (n->op->scratch) {
            size_t sb = n->op->scratch(n, in, o);
            if (sb > scratch_max)
                scratch_max = sb;
        }
        p->run[p->n_run++] = (int)k;
    }

    if (mode == INFER_PLAN_PROBE) {
        for (size_t v = 0; v < m->n_values; v++) {
            if (m->values[v].cdata != NULL || m->values[v].input_idx >= 0 || !shaped[v])
                continue;
            m->values[v].dtype = p->t[v].dtype;
            m->values[v].rank = p->t[v].rank;
            memcpy(m->values[v].dims, p->t[v].dims, sizeof(p->t[v].dims));
        }
        keep_folds(m, p, stat);
        goto out;
    }

    /* Lifetimes in run-list positions; graph outputs live to the end. A use of an alias is
     * a use of the buffer it shares (root). */
    last = mc_xcalloc(m->n_values + 1, sizeof(size_t));
    lv = mc_xcalloc(m->n_values + 1, sizeof(*lv));
    root = mc_xmalloc(sizeof(int) * (m->n_values + 1));
    for (size_t v = 0; v < m->n_values; v++)
        root[v] = (int)v;
    for (size_t i = 0; i < p->n_alias; i++) /* in node order: a chain resolves forwards */
        root[p->alias[2 * i]] = root[p->alias[2 * i + 1]];
    for (size_t r = 0; r < p->n_run; r++) {
        const struct infer_node *n = &m->nodes[p->run[r]];
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i] >= 0)
                last[root[n->in[i]]] = r;
        for (int j = 0; j < n->n_out; j++)
            if (n->out[j] >= 0 && last[root[n->out[j]]] < r)
                last[root[n->out[j]]] = r;
    }
    for (size_t i = 0; i < m->n_outputs; i++)
        last[root[m->outputs[i]]] = p->n_run;
    for (size_t r = 0; r < p->n_run; r++) {
        const struct infer_node *n = &m->nodes[p->run[r]];
        for (int j = 0; j < n->n_out; j++) {
            int v = n->out[j];
            if (v < 0)
                continue;
            lv[n_lv].v = v;
            lv[n_lv].bytes = align_up(infer__bytes(&p->t[v]));
            lv[n_lv].start = r;
            lv[n_lv].end = last[v];
            if (lv[n_lv].bytes > lv[big].bytes)
                big = n_lv;
            n_lv++;
        }
    }
    if (n_lv > 0) {
        /* Named in the error below; the sort in assign_offsets() reorders lv. */
        int bv = lv[big].v;
        size_t bb = lv[big].bytes;
        /* One tensor over the limit fails before the layout, whose sums then stay far
         * from overflowing. */
        if (bb <= limit) {
            p->scratch_off = assign_offsets(lv, n_lv);
            p->arena_bytes = p->scratch_off + align_up(scratch_max);
        }
        if (bb > limit || p->arena_bytes > limit || p->folded_bytes > limit - p->arena_bytes) {
            const struct infer_node *bn = &m->nodes[m->values[bv].producer];
            char what[384], ds[128];
            dims_str(&p->t[bv], ds, sizeof(ds));
            snprintf(what, sizeof(what), "a run's working memory (largest tensor: output '%s' "
                     "%s of node '%s' (%s), %zu bytes)", m->values[bv].name, ds, bn->name,
                     bn->op_type, bb);
            err = over_limit(m, limit, p->folded_bytes, bb > limit ? bb : p->arena_bytes, e,
                             what);
            goto out;
        }
    } else {
        p->arena_bytes = align_up(scratch_max);
    }
    for (size_t i = 0; i < n_lv; i++)
        p->off[lv[i].v] = (int64_t)lv[i].off;
    for (size_t i = 0; i < p->n_alias; i++)
        p->off[p->alias[2 * i]] = p->off[root[p->alias[2 * i]]];
out:
    free(known);
    free(shaped);
    free(stat);
    free(args);
    free(lv);
    free(last);
    free(root);
    if (err != 0) {
        infer__plan_free(&p);
        return err;
    }
    *out = p;
    return 0;
}

size_t infer__plan_bytes(const struct infer_plan *p)
{
    return p->folded_bytes + p->arena_bytes;
}

void infer_set_threads(int n)
{
    openblas_set_num_threads(n > 0 ? n : 1);
}

int infer_session_new(struct infer_model *m, const struct infer_session_opts *opts,
                      struct infer_session **out)
{
    struct infer_session *s;

    MC_CHECK_OBJ_NOTNULL(m, INFER_MODEL_MAGIC);
    if (opts != NULL && opts->threads > 0)
        infer_set_threads(opts->threads);
    s = mc_xcalloc(1, sizeof(*s));
    MC_INIT_OBJ(s, INFER_SESSION_MAGIC);
    s->m = infer_model_ref(m);
    s->limit = m->budget - m->const_bytes;
    if (opts != NULL && opts->max_arena != 0 && opts->max_arena < s->limit)
        s->limit = opts->max_arena;
    s->max_plans = opts && opts->max_plans ? opts->max_plans : 8;
    s->plans = mc_xcalloc(s->max_plans, sizeof(*s->plans));
    /* Never NULL, so a model without inputs or an all-constant graph needs no special case. */
    s->key_alloc = 64;
    s->key = mc_xmalloc(s->key_alloc);
    s->arena = infer__aligned_alloc(INFER_ALIGN);
    *out = s;
    return 0;
}

void infer_session_free(struct infer_session **sp)
{
    struct infer_session *s = *sp;
    size_t held;

    if (s == NULL)
        return;
    MC_CHECK_OBJ(s, INFER_SESSION_MAGIC);
    held = infer_session_memory_bytes(s);
    for (unsigned i = 0; i < s->n_plans; i++)
        infer__plan_free(&s->plans[i]);
    free(s->plans);
    free(s->arena);
    free(s->key);
    infer_model_unref(&s->m);
    MC_FREE_OBJ(s);
    *sp = NULL;
    infer__release(held);
}

size_t infer_session_arena_bytes(const struct infer_session *s)
{
    return s->arena_bytes;
}

size_t infer_session_memory_bytes(const struct infer_session *s)
{
    size_t b = s->arena_bytes;

    for (unsigned i = 0; i < s->n_plans; i++)
        b += s->plans[i]->folded_bytes;
    return b;
}

/* Caches the new plan `p` (most recently used first). The arena and every cached plan's
 * folded tensors stay within s->limit: least recently used plans go first, then an arena
 * grown by an older, larger plan is dropped (the run grows it again to p's size). p fits
 * alone: that was checked when it was built. */
static void plan_insert(struct infer_session *s, struct infer_plan *p)
{
    size_t arena = MC_MAX(s->arena_bytes, p->arena_bytes), freed = 0;
    size_t held = p->folded_bytes;

    for (unsigned i = 0; i < s->n_plans; i++)
        held += s->plans[i]->folded_bytes;
    while (s->n_plans > 0 && (s->n_plans == s->max_plans || held + arena > s->limit)) {
        struct infer_plan **lru = &s->plans[--s->n_plans];
        held -= (*lru)->folded_bytes;
        freed += (*lru)->folded_bytes;
        infer__plan_free(lru);
    }
    if (held + arena > s->limit) {
        freed += s->arena_bytes;
        free(s->arena);
        s->arena = infer__aligned_alloc(INFER_ALIGN);
        MC_ASSERT(s->arena != NULL);
        s->arena_bytes = 0;
    }
    memmove(&s->plans[1], &s->plans[0], sizeof(*s->plans) * s->n_plans);
    s->plans[0] = p;
    s->n_plans++;
    infer__release(freed);
}

static void key_put(struct infer_session *s, size_t *len, const void *p, size_t n)
{
    if (*len + n > s->key_alloc) {
        s->key_alloc = (*len + n) * 2 + 64;
        s->key = mc_xrealloc(s->key, s->key_alloc);
    }
    if (n)
        memcpy(s->key + *len, p, n);
    *len += n;
}

/* Validates the caller's inputs against the model and orders them as the graph does. */
static int bind_inputs(const struct infer_model *m, const struct infer_input *in, size_t n_in,
                       struct infer_tensor *bound, struct infer_err *e)
{
    for (size_t i = 0; i < m->n_inputs; i++)
        bound[i].rank = -1;
    for (size_t k = 0; k < n_in; k++) {
        int i = in[k].name ? infer_model_input_index(m, in[k].name) : -ENOENT;
        const struct infer_io_info *info;
        const struct infer_tensor *t = &in[k].t;
        int64_t numel;
        if (i < 0)
            return infer__errf(e, -EINVAL, "unknown input '%s'", in[k].name ? in[k].name : "");
        info = &m->in_info[i];
        if (bound[i].rank >= 0)
            return infer__errf(e, -EINVAL, "input '%s' given twice", info->name);
        if (t->dtype != info->dtype)
            return infer__errf(e, -EINVAL, "input '%s': dtype %s, model expects %s", info->name,
                               infer_dtype_name(t->dtype), infer_dtype_name(info->dtype));
        if (infer__dims_numel(t->rank, t->dims, &numel) != 0)
            return infer__errf(e, -EINVAL, "input '%s': bad shape", info->name);
        if (info->rank >= 0) {
            if (t->rank != info->rank)
                return infer__errf(e, -EINVAL, "input '%s': rank %d, model expects %d",
                                   info->name, t->rank, info->rank);
            for (int d = 0; d < t->rank; d++)
                if (info->dims[d] >= 0 && info->dims[d] != t->dims[d])
                    return infer__errf(e, -EINVAL, "input '%s': dim %d is %lld, model expects "
                                       "%lld", info->name, d, (long long)t->dims[d],
                                       (long long)info->dims[d]);
        }
        if (t->data == NULL && numel > 0)
            return infer__errf(e, -EINVAL, "input '%s': no data", info->name);
        bound[i] = *t;
    }
    for (size_t i = 0; i < m->n_inputs; i++)
        if (bound[i].rank < 0)
            return infer__errf(e, -EINVAL, "missing input '%s'", m->in_info[i].name);
    return 0;
}

static int session_run(struct infer_session *s, const struct infer_input *in, size_t n_in,
                       const int *sel, size_t n_out, struct infer_tensor *out,
                       struct infer_err *e)
{
    struct infer_model *m;
    struct infer_tensor bound_small[8], *bound = bound_small;
    struct infer_tensor *args_small[16], **args = args_small;
    struct infer_plan *p = NULL;
    size_t keylen = 0;
    unsigned pi;
    int err = 0;

    MC_CHECK_OBJ_NOTNULL(s, INFER_SESSION_MAGIC);
    m = s->m;
    if (m->n_inputs > MC_ARRAY_SIZE(bound_small))
        bound = mc_xcalloc(m->n_inputs, sizeof(*bound));
    err = bind_inputs(m, in, n_in, bound, e);
    if (err != 0)
        goto out;

    for (size_t i = 0; i < m->n_inputs; i++) {
        const struct infer_tensor *t = &bound[i];
        int32_t hdr[2] = {t->dtype, t->rank};
        key_put(s, &keylen, hdr, sizeof(hdr));
        key_put(s, &keylen, t->dims, sizeof(int64_t) * (size_t)t->rank);
        if (m->values[m->inputs[i]].keyed) {
            size_t b = infer__bytes(t);
            if (b > KEYED_MAX_BYTES) {
                err = infer__errf(e, -ENOTSUP, "input '%s' decides shapes and is %zu bytes "
                                  "(max %d)", m->in_info[i].name, b, KEYED_MAX_BYTES);
                goto out;
            }
            key_put(s, &keylen, t->data, b);
        }
    }
    for (pi = 0; pi < s->n_plans; pi++)
        if (s->plans[pi]->keylen == keylen && !memcmp(s->plans[pi]->key, s->key, keylen))
            break;
    if (pi < s->n_plans) {
        p = s->plans[pi];
        if (pi > 0) { /* most recently used first */
            memmove(&s->plans[1], &s->plans[0], sizeof(*s->plans) * pi);
            s->plans[0] = p;
        }
    } else {
        err = infer__plan_build(m, bound, INFER_PLAN_RUN, s->limit, &p, e);
        if (err != 0)
            goto out;
        p->key = mc_xmalloc(keylen ? keylen : 1);
        memcpy(p->key, s->key, keylen);
        p->keylen = keylen;
        plan_insert(s, p);
    }
    if (p->arena_bytes > s->arena_bytes) {
        /* The old arena goes first: both at once could be twice the cap. */
        free(s->arena);
        s->arena_bytes = 0;
        s->arena = infer__aligned_alloc(p->arena_bytes);
        if (s->arena == NULL) {
            s->arena = infer__aligned_alloc(INFER_ALIGN);
            MC_ASSERT(s->arena != NULL);
            err = infer__errf(e, -ENOMEM, "out of memory for a %zu-byte arena", p->arena_bytes);
            goto out;
        }
        s->arena_bytes = p->arena_bytes;
    }

    for (size_t i = 0; i < m->n_inputs; i++)
        p->t[m->inputs[i]].data = bound[i].data;
    /* Aliases share their root's arena slot (the root is always a run-list output). */
    for (size_t i = 0; i < p->n_alias; i++)
        p->t[p->alias[2 * i]].data = (char *)s->arena + p->off[p->alias[2 * i]];
    if ((size_t)p->max_args > MC_ARRAY_SIZE(args_small))
        args = mc_xcalloc((size_t)p->max_args, sizeof(*args));
    for (size_t r = 0; r < p->n_run; r++) {
        const struct infer_node *n = &m->nodes[p->run[r]];
        struct infer_tensor **ia = args, **oa = args + n->n_in;
        for (int i = 0; i < n->n_in; i++)
            ia[i] = n->in[i] >= 0 ? &p->t[n->in[i]] : NULL;
        for (int j = 0; j < n->n_out; j++) {
            int v = n->out[j];
            oa[j] = v >= 0 ? &p->t[v] : NULL;
            if (v >= 0)
                p->t[v].data = (char *)s->arena + p->off[v];
        }
        err = n->op->run(n, ia, oa, (char *)s->arena + p->scratch_off, e);
        if (err != 0) {
            err = node_err(n, err, e);
            goto out;
        }
    }
    for (size_t j = 0; j < n_out; j++)
        out[j] = p->t[m->outputs[sel ? (size_t)sel[j] : j]];
out:
    if (bound != bound_small)
        free(bound);
    if (args != args_small)
        free(args);
    return err;
}

int infer_session_run(struct infer_session *s, const struct infer_input *in, size_t n_in,
                      struct infer_tensor *out, size_t n_out, char *errbuf, size_t errlen)
{
    struct infer_err e = {errbuf, errlen};

    MC_CHECK_OBJ_NOTNULL(s, INFER_SESSION_MAGIC);
    if (n_out > s->m->n_outputs)
        return infer__errf(&e, -EINVAL, "asked for %zu outputs, model has %zu", n_out,
                           s->m->n_outputs);
    return session_run(s, in, n_in, NULL, n_out, out, &e);
}

int infer_session_run_select(struct infer_session *s, const struct infer_input *in, size_t n_in,
                             const char *const *names, size_t n, struct infer_tensor *out,
                             char *errbuf, size_t errlen)
{
    struct infer_err e = {errbuf, errlen};
    int sel_small[8], *sel = sel_small;
    int err = 0;

    MC_CHECK_OBJ_NOTNULL(s, INFER_SESSION_MAGIC);
    if (n > MC_ARRAY_SIZE(sel_small))
        sel = mc_xcalloc(n, sizeof(int));
    for (size_t i = 0; i < n; i++) {
        sel[i] = infer_model_output_index(s->m, names[i]);
        if (sel[i] < 0) {
            err = infer__errf(&e, -EINVAL, "unknown output '%s'", names[i]);
            goto out;
        }
    }
    err = session_run(s, in, n_in, sel, n, out, &e);
out:
    if (sel != sel_small)
        free(sel);
    return err;
}
