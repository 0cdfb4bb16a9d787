/* src/infer/infer_session.c: sessions, the per-thread side of inference.
 *
 * A session binds the caller's inputs, keys them (every input's dtype and dims plus the
 * bytes of keyed inputs), finds or builds the plan for that key (infer_plan.c) and runs it
 * in the session's arena. Plans are cached most recently used first, and the arena plus the
 * cached plans' folded tensors stay within the session's limit. Sessions are
 * single-threaded; the model is only read. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "infer/infer_int.h"

#define KEYED_MAX_BYTES (64 * 1024)

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
                return infer__errf(e, -EINVAL, "input '%s': rank %d, model expects %d", info->name,
                                   t->rank, info->rank);
            for (int d = 0; d < t->rank; d++)
                if (info->dims[d] >= 0 && info->dims[d] != t->dims[d])
                    return infer__errf(e, -EINVAL,
                                       "input '%s': dim %d is %lld, model expects "
                                       "%lld",
                                       info->name, d, (long long)t->dims[d],
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
                       const int *sel, size_t n_out, struct infer_tensor *out, struct infer_err *e)
{
    struct infer_model *m;
    struct infer_tensor bound_small[8], *bound = bound_small;
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
                err = infer__errf(e, -ENOTSUP,
                                  "input '%s' decides shapes and is %zu bytes "
                                  "(max %d)",
                                  m->in_info[i].name, b, KEYED_MAX_BYTES);
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

    err = infer__plan_run(m, p, bound, s->arena, sel, n_out, out, e);
out:
    if (bound != bound_small)
        free(bound);
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
