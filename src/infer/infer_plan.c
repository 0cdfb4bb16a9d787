/* src/infer/infer_plan.c: plans (static memory layout per input shape), built and run.
 *
 * A plan is built the first time a session sees a given set of input shapes (plus the
 * values of "keyed" inputs, those that decide a shape, e.g. a Reshape target fed as a
 * graph input). Building walks the graph once: every node's output shape is computed,
 * nodes whose inputs are all known (initializers, keyed inputs, Shape of a known shape)
 * are evaluated then and there (constant folding), and every other node's outputs get an
 * offset in one arena, reusing memory between tensors whose lifetimes do not overlap.
 * Running a plan allocates no tensor memory: it points tensors into the caller's arena
 * and calls the kernels in order. The loader builds two plans of its own (the probe and the sized
 * run, see enum infer_plan_mode); sessions cache the rest. The model is only written by
 * the probe, during load. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer_int.h"

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
        snprintf(lim, sizeof(lim),
                 "the %zu bytes the memory budget of %zu bytes leaves beside "
                 "%zu bytes of constants",
                 limit, m->budget, m->const_bytes);
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
                err = infer__node_err(n, infer__errf(e, -EINVAL, "input shape unknown"), e);
                goto out;
            }
            continue; /* probe: downstream of an input declared without a shape */
        }
        err = n->op->shape(n, in, o, e);
        if (err == INFER_UNKNOWN) {
            err = 0;
            if (!probe) {
                err = infer__errf(e, -ENOTSUP,
                                  "output shape depends on values computed at "
                                  "run time");
                err = infer__node_err(n, err, e);
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
            err = infer__node_err(n, err, e);
            goto out;
        }
        for (int j = 0; j < n->n_out; j++) {
            int64_t numel;
            if (o[j] == NULL)
                continue;
            if (infer__dims_numel(o[j]->rank, o[j]->dims, &numel) != 0 ||
                !infer__dtype_supported(o[j]->dtype)) {
                err = infer__errf(e, -EINVAL, "output %d: bad shape or dtype", j);
                err = infer__node_err(n, err, e);
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
                err = infer__node_err(n, err, e);
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
            snprintf(what, sizeof(what),
                     "a run's working memory (largest tensor: output '%s' "
                     "%s of node '%s' (%s), %zu bytes)",
                     m->values[bv].name, ds, bn->name, bn->op_type, bb);
            err = over_limit(m, limit, p->folded_bytes, bb > limit ? bb : p->arena_bytes, e, what);
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

int infer__plan_run(const struct infer_model *m, struct infer_plan *p,
                    const struct infer_tensor *inputs, void *arena, const int *sel, size_t n_out,
                    struct infer_tensor *out, struct infer_err *e)
{
    struct infer_tensor *args_small[16], **args = args_small;
    int err = 0;

    for (size_t i = 0; i < m->n_inputs; i++)
        p->t[m->inputs[i]].data = inputs[i].data;
    /* Aliases share their root's arena slot (the root is always a run-list output). */
    for (size_t i = 0; i < p->n_alias; i++)
        p->t[p->alias[2 * i]].data = (char *)arena + p->off[p->alias[2 * i]];
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
                p->t[v].data = (char *)arena + p->off[v];
        }
        err = n->op->run(n, ia, oa, (char *)arena + p->scratch_off, e);
        if (err != 0) {
            err = infer__node_err(n, err, e);
            goto out;
        }
    }
    for (size_t j = 0; j < n_out; j++)
        out[j] = p->t[m->outputs[sel ? (size_t)sel[j] : j]];
out:
    if (args != args_small)
        free(args);
    return err;
}
