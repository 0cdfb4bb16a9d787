/* src/infer/ops/infer_ops_ml.c: ai.onnx.ml TreeEnsembleRegressor/Classifier and
 * LinearRegressor/Classifier.
 *
 * Tree ensembles are rebuilt at load into one array of 16-byte nodes, each tree laid out
 * in depth-first preorder from its root so a root-to-leaf walk touches a few adjacent
 * cache lines. (tree id, node id) references are resolved and checked once: a child that
 * does not exist, a node reached twice (a cycle or a DAG), or a tree without a single
 * root is a load error, so the walk at run time needs no checks and always ends.
 * Leaves point at a run of (target, weight) pairs. Scores accumulate in double.
 * Ensembles whose splits are all BRANCH_LEQ (no missing tracking), SUM/AVERAGE, with every
 * leaf weight on one target (what gradient-boosting exporters write) also get a compact
 * 8-byte record per node for a branch-free walk (struct fnode): with AVX-512, 16 lanes
 * (16 trees for one row, or 16 rows through one tree) step together with gathers (two
 * 8-lane qword gathers for the records, one for the features), four such walks
 * interleaved; otherwise scalar selects. */
#include <float.h>
#include <stdint.h>
#include <stdio.h>

#include "infer/ops/infer_ops.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define INFER_X86 1
#include <immintrin.h>
#else
#define INFER_X86 0
#endif

#include "infer/ops/infer_kern.h"

#define TREE_BLOCK 16 /* rows walked together through one tree */
#define TREE_LANES 8  /* scalar fast walk: trees walked together for one row */

enum { M_LEQ, M_LT, M_GTE, M_GT, M_EQ, M_NEQ, M_LEAF };
enum { PT_NONE, PT_LOGISTIC, PT_SOFTMAX, PT_SOFTMAX_ZERO, PT_PROBIT };
enum { AG_SUM, AG_AVERAGE, AG_MIN, AG_MAX };

struct tnode {
    float thr;
    int32_t feat; /* leaf: first target index */
    int32_t t, f; /* children (node array indices); leaf: t = target count */
    uint8_t mode;
    uint8_t miss_true;
    uint8_t pad[2];
};

/* Fast-walk node (all-BRANCH_LEQ ensembles whose leaves all add to one target): 8 bytes,
 * one record per node in the same preorder index as `nodes`. The true child of an internal
 * node is always the next record (preorder), so only the false child is stored, packed with
 * the feature: fn = next << fbits | feature. A leaf has thr = NaN (x <= NaN is false for
 * every x, NaN too) and next = itself, so a walk of any length ends on it; its value (the
 * sum of its weights) is in fval[]. */
struct fnode {
    float thr;
    uint32_t fn;
};

struct tgt {
    int32_t id;
    float w;
};

struct infer_tree {
    struct tnode *nodes;
    int32_t *leaf_start, *leaf_n; /* per node: run of targets (leaves only) */
    int32_t *depth;               /* per tree: longest root-to-leaf path */
    bool all_leq;                 /* every split is BRANCH_LEQ without missing tracking */
    int32_t n_nodes;
    int32_t *roots;
    int32_t n_trees;
    struct tgt *tg;
    int32_t n_tg;
    int32_t n_targets; /* regressor: n_targets; classifier: number of classes */
    int32_t max_feat;
    double *base; /* n_targets entries, or NULL */
    int agg, post;
    struct fnode *fast; /* NULL when the fast walk does not apply */
    float *fval;        /* per node: leaf value (0 for internal nodes) */
    int32_t fast_id;    /* the one target every leaf adds to */
    int fbits;          /* feature bits in fnode.fn */
    int32_t *by_depth;  /* tree indices sorted by depth (16-tree lane groups walk evenly) */
    /* classifier */
    int64_t *labels;
    bool binary, all_pos;
    int32_t bin_class;
};

static void tree_free(void *p)
{
    struct infer_tree *t = p;

    if (t == NULL)
        return;
    free(t->nodes);
    free(t->fast);
    free(t->fval);
    free(t->by_depth);
    free(t->leaf_start);
    free(t->leaf_n);
    free(t->depth);
    free(t->roots);
    free(t->tg);
    free(t->base);
    free(t->labels);
    free(t);
}

static int post_of(const char *s, int *out, struct infer_err *e)
{
    static const char *const names[] = {"NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"};

    for (int i = 0; i < 5; i++)
        if (!strcmp(s, names[i])) {
            *out = i;
            return 0;
        }
    return infer__errf(e, -EINVAL, "unknown post_transform '%s'", s);
}

/* ints/floats attribute, or NULL with n = 0 when absent. */
static const int64_t *ints_of(const struct infer_node *n, const char *name, size_t *cnt)
{
    const struct infer_attr *a = infer__attr(n, name);

    *cnt = a != NULL && a->type == INFER_AT_INTS ? a->n : 0;
    return *cnt ? a->ints : NULL;
}

/* Floats from `name` or, for ai.onnx.ml 3, `name`_as_tensor (float or double). Returns a
 * malloc'd double array (caller frees) and its length, or NULL with cnt 0. */
static double *floats_of(const struct infer_node *n, const char *name, size_t *cnt)
{
    const struct infer_attr *a = infer__attr(n, name);
    char tn[64];
    double *v;

    *cnt = 0;
    if (a != NULL && a->type == INFER_AT_FLOATS && a->n) {
        v = mc_xmalloc(sizeof(double) * a->n);
        for (size_t i = 0; i < a->n; i++)
            v[i] = a->floats[i];
        *cnt = a->n;
        return v;
    }
    snprintf(tn, sizeof(tn), "%s_as_tensor", name);
    a = infer__attr(n, tn);
    if (a != NULL && a->type == INFER_AT_TENSOR && infer_is_float(a->t.dtype)) {
        int64_t k = infer_tensor_numel(&a->t);
        if (k <= 0)
            return NULL;
        v = mc_xmalloc(sizeof(double) * (size_t)k);
        for (int64_t i = 0; i < k; i++)
            v[i] = infer__get_f64(&a->t, i);
        *cnt = (size_t)k;
        return v;
    }
    return NULL;
}

static int mode_of(const char *s)
{
    static const char *const names[] = {"BRANCH_LEQ", "BRANCH_LT",  "BRANCH_GTE", "BRANCH_GT",
                                        "BRANCH_EQ",  "BRANCH_NEQ", "LEAF"};

    for (int i = 0; i < 7; i++)
        if (!strcmp(s, names[i]))
            return i;
    return -1;
}

struct key {
    int64_t tree, node;
    int32_t idx;
};

static int cmp_key(const void *a, const void *b)
{
    const struct key *x = a, *y = b;

    if (x->tree != y->tree)
        return x->tree < y->tree ? -1 : 1;
    if (x->node != y->node)
        return x->node < y->node ? -1 : 1;
    return 0;
}

static int32_t find_key(const struct key *k, size_t n, int64_t tree, int64_t node)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        struct key q = {tree, node, 0};
        int c = cmp_key(&k[mid], &q);
        if (c == 0)
            return k[mid].idx;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* One ensemble on its way from attributes to struct infer_tree: the attributes (arrays
 * borrowed from the node, except vals, w and base, which floats_of() copies) and what each
 * step below leaves for the next. tree_load() frees all of it in one place. */
struct tree_src {
    bool clf;
    const char *pfx; /* "class" or "target": prefix of the leaf attributes and errors */
    size_t nn, nmiss, nt, nb;
    const int64_t *tree, *nid, *feat, *tru, *fal, *miss; /* nodes_*, nn entries */
    const struct infer_attr *modes;                      /* nodes_modes */
    double *vals;                                        /* nodes_values */
    const int64_t *ttree, *tnode, *tid;                  /* <pfx>_*, nt entries */
    double *w;                                           /* <pfx>_weights */
    double *base;                                        /* base_values, nb entries */
    struct key *keys; /* (tree id, node id) -> attribute index, sorted */
    uint8_t *child;   /* per attribute index: some node's child (so not a root) */
    int32_t *map;     /* attribute index -> preorder index in T->nodes */
    int32_t *stack;
    struct key *tk; /* leaf targets sorted by leaf */
};

static void tree_src_fini(struct tree_src *s)
{
    free(s->vals);
    free(s->w);
    free(s->base);
    free(s->keys);
    free(s->child);
    free(s->map);
    free(s->stack);
    free(s->tk);
}

/* Reads the attributes into s and checks what does not need the tree structure: lengths,
 * labels or n_targets, base_values, post_transform and aggregate_function (into T). */
static int tree_parse(const struct infer_node *n, struct tree_src *s, struct infer_tree *T,
                      struct infer_err *e)
{
    size_t c1, c2, c3, c4, c5, t1, t2, t3;
    char nm[64];
    int err;

    s->tree = ints_of(n, "nodes_treeids", &s->nn);
    s->nid = ints_of(n, "nodes_nodeids", &c1);
    s->feat = ints_of(n, "nodes_featureids", &c2);
    s->tru = ints_of(n, "nodes_truenodeids", &c3);
    s->fal = ints_of(n, "nodes_falsenodeids", &c4);
    s->miss = ints_of(n, "nodes_missing_value_tracks_true", &s->nmiss);
    s->pfx = s->clf ? "class" : "target";
    s->modes = infer__attr(n, "nodes_modes");
    s->vals = floats_of(n, "nodes_values", &c5);
    snprintf(nm, sizeof(nm), "%s_treeids", s->pfx);
    s->ttree = ints_of(n, nm, &s->nt);
    snprintf(nm, sizeof(nm), "%s_nodeids", s->pfx);
    s->tnode = ints_of(n, nm, &t1);
    snprintf(nm, sizeof(nm), "%s_ids", s->pfx);
    s->tid = ints_of(n, nm, &t2);
    snprintf(nm, sizeof(nm), "%s_weights", s->pfx);
    s->w = floats_of(n, nm, &t3);
    s->base = floats_of(n, "base_values", &s->nb);

    if (s->nn == 0 || c1 != s->nn || c2 != s->nn || c3 != s->nn || c4 != s->nn || c5 != s->nn ||
        s->modes == NULL || s->modes->type != INFER_AT_STRINGS || s->modes->n != s->nn ||
        (s->nmiss != 0 && s->nmiss != s->nn))
        return infer__errf(e, -EINVAL, "nodes_* attributes missing or of different lengths");
    if (t1 != s->nt || t2 != s->nt || t3 != s->nt)
        return infer__errf(e, -EINVAL, "%s_* attributes of different lengths", s->pfx);
    if (s->nn > INT32_MAX / 2 || s->nt > INT32_MAX / 2)
        return infer__errf(e, -EFBIG, "too many nodes");
    if (s->clf) {
        size_t nl;
        const int64_t *lab = ints_of(n, "classlabels_int64s", &nl);
        if (infer__attr(n, "classlabels_strings") != NULL)
            return infer__errf(e, -ENOTSUP, "string class labels not supported");
        if (nl == 0)
            return infer__errf(e, -EINVAL, "classlabels_int64s required");
        T->labels = mc_xmalloc(sizeof(int64_t) * nl);
        memcpy(T->labels, lab, sizeof(int64_t) * nl);
        T->n_targets = (int32_t)nl;
    } else {
        int64_t k = infer__attr_i(n, "n_targets", 1);
        if (k < 1 || k > 1 << 20)
            return infer__errf(e, -EINVAL, "bad n_targets %lld", (long long)k);
        T->n_targets = (int32_t)k;
    }
    if (s->nb != 0 && s->nb != (size_t)T->n_targets)
        return infer__errf(e, -EINVAL, "base_values has %zu entries, expected %d", s->nb,
                           T->n_targets);
    T->base = s->base;
    s->base = NULL;
    err = post_of(infer__attr_s(n, "post_transform", "NONE"), &T->post, e);
    if (err != 0)
        return err;
    const char *ag = infer__attr_s(n, "aggregate_function", "SUM");
    T->agg = !strcmp(ag, "SUM")     ? AG_SUM
           : !strcmp(ag, "AVERAGE") ? AG_AVERAGE
           : !strcmp(ag, "MIN")     ? AG_MIN
           : !strcmp(ag, "MAX")     ? AG_MAX
                                    : -1;
    if (T->agg < 0 || (s->clf && T->agg != AG_SUM))
        return infer__errf(e, -EINVAL, "bad aggregate_function '%s'", ag);
    return 0;
}

/* Resolves (tree id, node id) references: ids unique, modes known, feature ids in range,
 * every split's children present. Marks which nodes are some node's child. */
static int tree_check(struct tree_src *s, struct infer_err *e)
{
    size_t nn = s->nn;

    s->keys = mc_xmalloc(sizeof(*s->keys) * nn);
    for (size_t i = 0; i < nn; i++) {
        s->keys[i].tree = s->tree[i];
        s->keys[i].node = s->nid[i];
        s->keys[i].idx = (int32_t)i;
    }
    qsort(s->keys, nn, sizeof(*s->keys), cmp_key);
    for (size_t i = 1; i < nn; i++)
        if (!cmp_key(&s->keys[i - 1], &s->keys[i]))
            return infer__errf(e, -EINVAL, "tree %lld node %lld defined twice",
                               (long long)s->keys[i].tree, (long long)s->keys[i].node);
    s->child = mc_xcalloc(nn, 1);
    for (size_t i = 0; i < nn; i++) {
        int m = mode_of(s->modes->strings[i]);
        if (m < 0)
            return infer__errf(e, -EINVAL, "unknown node mode '%s'", s->modes->strings[i]);
        if (m == M_LEAF)
            continue;
        if (s->feat[i] < 0 || s->feat[i] > INT32_MAX)
            return infer__errf(e, -EINVAL, "bad feature id %lld", (long long)s->feat[i]);
        int32_t a = find_key(s->keys, nn, s->tree[i], s->tru[i]);
        int32_t b = find_key(s->keys, nn, s->tree[i], s->fal[i]);
        if (a < 0 || b < 0)
            return infer__errf(e, -EINVAL, "tree %lld node %lld: child node missing",
                               (long long)s->tree[i], (long long)s->nid[i]);
        s->child[a] = s->child[b] = 1;
    }
    return 0;
}

/* Lays the trees out in preorder, roots in order of first appearance, and fills T->nodes.
 * The walk from each root is where a second root, a node reached twice (a cycle or a DAG)
 * or a node no root reaches shows up. */
static int tree_layout(struct tree_src *s, struct infer_tree *T, struct infer_err *e)
{
    size_t nn = s->nn;
    const int64_t *tree = s->tree, *nid = s->nid;

    T->nodes = mc_xcalloc(nn, sizeof(*T->nodes));
    T->roots = mc_xmalloc(sizeof(int32_t) * nn);
    s->map = mc_xmalloc(sizeof(int32_t) * nn);
    s->stack = mc_xmalloc(sizeof(int32_t) * (nn + 1));
    for (size_t i = 0; i < nn; i++)
        s->map[i] = -1;
    for (size_t r = 0; r < nn; r++) {
        int sp = 0;
        if (s->child[r])
            continue;
        /* A second root of an already seen tree id would be ambiguous. */
        for (int32_t k = 0; k < T->n_trees; k++)
            if (tree[T->roots[k]] == tree[r])
                return infer__errf(e, -EINVAL, "tree %lld has more than one root",
                                   (long long)tree[r]);
        T->roots[T->n_trees++] = (int32_t)r; /* attribute index until the layout is done */
        s->stack[sp++] = (int32_t)r;
        while (sp > 0) {
            int32_t i = s->stack[--sp];
            if (s->map[i] >= 0)
                return infer__errf(e, -EINVAL, "tree %lld: node %lld reached twice (cycle?)",
                                   (long long)tree[i], (long long)nid[i]);
            s->map[i] = T->n_nodes++;
            if (mode_of(s->modes->strings[i]) != M_LEAF) {
                s->stack[sp++] = find_key(s->keys, nn, tree[i], s->fal[i]);
                s->stack[sp++] = find_key(s->keys, nn, tree[i], s->tru[i]);
                if (sp > (int)nn)
                    return infer__errf(e, -EINVAL, "tree %lld: cyclic", (long long)tree[i]);
            }
        }
    }
    if (T->n_trees == 0)
        return infer__errf(e, -EINVAL, "no tree roots (every node is some node's child)");
    for (size_t i = 0; i < nn; i++) {
        if (s->map[i] < 0)
            return infer__errf(e, -EINVAL, "tree %lld node %lld unreachable from its root",
                               (long long)tree[i], (long long)nid[i]);
        struct tnode *d = &T->nodes[s->map[i]];
        int m = mode_of(s->modes->strings[i]);
        d->mode = (uint8_t)m;
        d->miss_true = s->nmiss ? s->miss[i] != 0 : 0;
        d->thr = (float)s->vals[i];
        if (m == M_LEAF) {
            /* Leaves loop to themselves, so a walk may take a fixed number of steps. */
            d->t = d->f = s->map[i];
            d->feat = 0;
            d->thr = 0;
        } else {
            d->feat = (int32_t)s->feat[i];
            d->t = s->map[find_key(s->keys, nn, tree[i], s->tru[i])];
            d->f = s->map[find_key(s->keys, nn, tree[i], s->fal[i])];
            if (d->feat > T->max_feat)
                T->max_feat = d->feat;
        }
    }
    for (int32_t k = 0; k < T->n_trees; k++)
        T->roots[k] = s->map[T->roots[k]];
    return 0;
}

/* Depth per tree (the walk's step count) and whether every split is BRANCH_LEQ without
 * missing tracking. */
static void tree_depths(struct infer_tree *T)
{
    T->depth = mc_xcalloc((size_t)T->n_trees, sizeof(int32_t));
    T->all_leq = true;
    for (int32_t i = 0; i < T->n_nodes; i++)
        if (T->nodes[i].mode != M_LEAF && (T->nodes[i].mode != M_LEQ || T->nodes[i].miss_true))
            T->all_leq = false;
    for (int32_t k = 0; k < T->n_trees; k++) {
        /* Preorder layout: a tree is the index range [root, next root). */
        int32_t lo = T->roots[k], hi = k + 1 < T->n_trees ? T->roots[k + 1] : T->n_nodes;
        int32_t *dep = mc_xcalloc((size_t)(hi - lo), sizeof(int32_t));
        for (int32_t i = lo; i < hi; i++) {
            const struct tnode *d = &T->nodes[i];
            if (d->mode == M_LEAF)
                continue;
            dep[d->t - lo] = dep[i - lo] + 1;
            dep[d->f - lo] = dep[i - lo] + 1;
            if (dep[i - lo] + 1 > T->depth[k])
                T->depth[k] = dep[i - lo] + 1;
        }
        free(dep);
    }
}

/* Leaf targets, grouped per leaf in one array (attribute order kept within a leaf). Each
 * must name a leaf and a target in range. */
static int tree_targets(struct tree_src *s, struct infer_tree *T, struct infer_err *e)
{
    size_t nt = s->nt;

    T->leaf_start = mc_xcalloc((size_t)T->n_nodes, sizeof(int32_t));
    T->leaf_n = mc_xcalloc((size_t)T->n_nodes, sizeof(int32_t));
    T->tg = mc_xmalloc(sizeof(*T->tg) * (nt + 1));
    s->tk = mc_xmalloc(sizeof(*s->tk) * (nt + 1));
    for (size_t i = 0; i < nt; i++) {
        int32_t idx = find_key(s->keys, s->nn, s->ttree[i], s->tnode[i]);
        if (idx < 0 || T->nodes[s->map[idx]].mode != M_LEAF)
            return infer__errf(e, -EINVAL, "%s %zu refers to tree %lld node %lld, not a leaf",
                               s->pfx, i, (long long)s->ttree[i], (long long)s->tnode[i]);
        if (s->tid[i] < 0 || s->tid[i] >= T->n_targets)
            return infer__errf(e, -EINVAL, "%s id %lld out of range [0, %d)", s->pfx,
                               (long long)s->tid[i], T->n_targets);
        s->tk[i].tree = s->map[idx]; /* sort by leaf, keep the attribute order within one */
        s->tk[i].node = (int64_t)i;
        s->tk[i].idx = (int32_t)i;
    }
    qsort(s->tk, nt, sizeof(*s->tk), cmp_key);
    for (size_t i = 0; i < nt; i++) {
        size_t j = (size_t)s->tk[i].idx;
        if (T->leaf_n[s->tk[i].tree] == 0)
            T->leaf_start[s->tk[i].tree] = (int32_t)i;
        T->leaf_n[s->tk[i].tree]++;
        T->tg[i].id = (int32_t)s->tid[j];
        T->tg[i].w = (float)s->w[j];
    }
    T->n_tg = (int32_t)nt;
    return 0;
}

/* Fast walk: all splits BRANCH_LEQ without missing tracking, SUM or AVERAGE, every leaf
 * weight on one target, and preorder children (true child = next node). Leaves T->fast
 * NULL when it does not apply. */
static void tree_fast(const struct tree_src *s, struct infer_tree *T)
{
    size_t nt = s->nt;
    const int64_t *tid = s->tid;
    bool ok = true;

    T->fbits = 1;
    while (T->fbits < 31 && (INT64_C(1) << T->fbits) <= T->max_feat)
        T->fbits++;
    if (!T->all_leq || (T->agg != AG_SUM && T->agg != AG_AVERAGE) ||
        (int64_t)T->n_nodes >= (INT64_C(1) << (32 - T->fbits)))
        return;
    for (size_t i = 1; i < nt && ok; i++)
        ok = tid[i] == tid[0];
    for (int32_t i = 0; i < T->n_nodes && ok; i++)
        ok = T->nodes[i].mode == M_LEAF || T->nodes[i].t == i + 1;
    if (!ok)
        return;
    T->fast = mc_xcalloc((size_t)T->n_nodes, sizeof(*T->fast));
    T->fval = mc_xcalloc((size_t)T->n_nodes, sizeof(*T->fval));
    T->fast_id = nt ? (int32_t)tid[0] : 0;
    for (int32_t i = 0; i < T->n_nodes; i++) {
        const struct tnode *d = &T->nodes[i];
        struct fnode *f = &T->fast[i];
        if (d->mode == M_LEAF) {
            double v = 0;
            for (int32_t k = 0; k < T->leaf_n[i]; k++)
                v += T->tg[T->leaf_start[i] + k].w;
            f->thr = NAN;
            f->fn = (uint32_t)i << T->fbits;
            T->fval[i] = (float)v;
        } else {
            f->thr = d->thr;
            f->fn = (uint32_t)d->f << T->fbits | (uint32_t)d->feat;
        }
    }
    /* Counting sort of the trees by depth (stable). */
    T->by_depth = mc_xmalloc(sizeof(int32_t) * (size_t)T->n_trees);
    int32_t k = 0, maxd = 0;
    for (int32_t t = 0; t < T->n_trees; t++)
        maxd = T->depth[t] > maxd ? T->depth[t] : maxd;
    for (int32_t d = 0; d <= maxd; d++)
        for (int32_t t = 0; t < T->n_trees; t++)
            if (T->depth[t] == d)
                T->by_depth[k++] = t;
}

/* Classifier: whether every weight is non-negative, and the binary case (as ONNX Runtime:
 * two labels and every weight on one class). */
static void tree_classes(const struct tree_src *s, struct infer_tree *T)
{
    size_t nt = s->nt;
    const int64_t *tid = s->tid;

    T->all_pos = true;
    for (size_t i = 0; i < nt; i++)
        if (s->w[i] < 0)
            T->all_pos = false;
    T->binary = T->n_targets == 2;
    for (size_t i = 1; i < nt && T->binary; i++)
        if (tid[i] != tid[0])
            T->binary = false;
    T->bin_class = nt ? (int32_t)tid[0] : 1;
}

/* Flattens checked attributes into T: the preorder node array, depths, leaf targets, the
 * fast-walk records where they apply, and the classifier's flags. */
static int tree_flatten(struct tree_src *s, struct infer_tree *T, struct infer_err *e)
{
    int err;

    err = tree_layout(s, T, e);
    if (err != 0)
        return err;
    tree_depths(T);
    err = tree_targets(s, T, e);
    if (err != 0)
        return err;
    tree_fast(s, T);
    if (s->clf)
        tree_classes(s, T);
    return 0;
}

/* The tree is the node's ext from the start, so what a failed step built is freed with the
 * node. */
static int tree_load(struct infer_node *n, bool clf, struct infer_err *e)
{
    struct infer_tree *T = mc_xcalloc(1, sizeof(*T));
    struct tree_src s = {.clf = clf};
    int err;

    n->ext = T;
    n->ext_free = tree_free;
    err = tree_parse(n, &s, T, e);
    if (err == 0)
        err = tree_check(&s, e);
    if (err == 0)
        err = tree_flatten(&s, T, e);
    if (err == 0) {
        /* Charged to the model's budget by the loader (at most a few times the attributes). */
        n->ext_bytes = (size_t)T->n_nodes * (sizeof(struct tnode) + 3 * sizeof(int32_t) +
                                             sizeof(struct fnode) + sizeof(float)) +
                       (s.nt + 1) * sizeof(struct tgt) + (size_t)T->n_trees * 3 * sizeof(int32_t) +
                       (size_t)T->n_targets * (sizeof(double) + sizeof(int64_t));
    }
    tree_src_fini(&s);
    return err;
}

static int treereg_load(struct infer_node *n, struct infer_err *e)
{
    return tree_load(n, false, e);
}

static int treeclf_load(struct infer_node *n, struct infer_err *e)
{
    return tree_load(n, true, e);
}

static int ml_input(const struct infer_tensor *x, int64_t *N, int64_t *C, struct infer_err *e)
{
    if (x->dtype != INFER_DT_FLOAT && x->dtype != INFER_DT_DOUBLE && x->dtype != INFER_DT_INT64 &&
        x->dtype != INFER_DT_INT32)
        return infer__errf(e, -ENOTSUP, "input dtype %s not supported", infer_dtype_name(x->dtype));
    if (x->rank == 1) {
        *N = 1;
        *C = x->dims[0];
    } else if (x->rank == 2) {
        *N = x->dims[0];
        *C = x->dims[1];
    } else {
        return infer__errf(e, -EINVAL, "input must be [N, C] (rank %d)", x->rank);
    }
    return 0;
}

/* Classifier outputs: int64 labels [N], and float scores [N, k] when asked for. */
static void clf_outputs(const struct infer_node *n, struct infer_tensor *const *out, int64_t N,
                        int64_t k)
{
    out[0]->dtype = INFER_DT_INT64;
    out[0]->rank = 1;
    out[0]->dims[0] = N;
    if (n->n_out > 1 && out[1] != NULL) {
        out[1]->dtype = INFER_DT_FLOAT;
        out[1]->rank = 2;
        out[1]->dims[0] = N;
        out[1]->dims[1] = k;
    }
}

static int treereg_shape(const struct infer_node *n, struct infer_tensor *const *in,
                         struct infer_tensor *const *out, struct infer_err *e)
{
    const struct infer_tree *T = n->ext;
    int64_t N = 0, C = 0;
    int err;

    INFER_NEED(n->n_in == 1 && in[0] && n->n_out >= 1, "needs X");
    err = ml_input(in[0], &N, &C, e);
    if (err != 0)
        return err;
    INFER_NEED(T->max_feat < C && C > 0, "feature id %d but X has %lld columns", T->max_feat,
               (long long)C);
    out[0]->dtype = INFER_DT_FLOAT;
    out[0]->rank = 2;
    out[0]->dims[0] = N;
    out[0]->dims[1] = T->n_targets;
    return 0;
}

static int treeclf_shape(const struct infer_node *n, struct infer_tensor *const *in,
                         struct infer_tensor *const *out, struct infer_err *e)
{
    const struct infer_tree *T = n->ext;
    int64_t N = 0, C = 0;
    int err;

    INFER_NEED(n->n_in == 1 && in[0] && n->n_out >= 1 && n->n_out <= 2, "needs X");
    err = ml_input(in[0], &N, &C, e);
    if (err != 0)
        return err;
    INFER_NEED(T->max_feat < C && C > 0, "feature id %d but X has %lld columns", T->max_feat,
               (long long)C);
    clf_outputs(n, out, N, T->n_targets);
    return 0;
}

/* Inverse of the standard normal CDF's argument mapping used by PROBIT:
 * sqrt(2) * erfinv(2p - 1), by Newton steps on erf() from a logistic first guess. */
static double probit(double p)
{
    double y = 2 * p - 1, x;

    if (!(p > 0))
        return -INFINITY;
    if (!(p < 1))
        return INFINITY;
    x = 0.886226925 * log((1 + y) / (1 - y)) / 2.0;
    for (int i = 0; i < 40; i++) {
        double d = (erf(x) - y) / (1.1283791670955126 * exp(-x * x));
        x -= d;
        if (fabs(d) < 1e-15)
            break;
    }
    return 1.4142135623730951 * x;
}

static void post_apply(int post, double *s, int k)
{
    switch (post) {
    case PT_LOGISTIC:
        for (int i = 0; i < k; i++)
            s[i] = 1.0 / (1.0 + exp(-s[i]));
        break;
    case PT_SOFTMAX:
    case PT_SOFTMAX_ZERO: {
        double mx = -INFINITY, sum = 0;
        for (int i = 0; i < k; i++)
            if (s[i] > mx && !(post == PT_SOFTMAX_ZERO && s[i] == 0))
                mx = s[i];
        for (int i = 0; i < k; i++) {
            /* SOFTMAX_ZERO keeps exact zeros at zero. */
            s[i] = post == PT_SOFTMAX_ZERO && s[i] == 0 ? 0 : exp(s[i] - mx);
            sum += s[i];
        }
        for (int i = 0; i < k && sum > 0; i++)
            s[i] /= sum;
        break;
    }
    case PT_PROBIT:
        for (int i = 0; i < k; i++)
            s[i] = probit(s[i]);
        break;
    default: break;
    }
}

static size_t tree_scratch(const struct infer_node *n, struct infer_tensor *const *in,
                           struct infer_tensor *const *out)
{
    const struct infer_tree *T = n->ext;

    /* scores, "has a value" flags, rows converted to float: TREE_BLOCK rows of each */
    return TREE_BLOCK * ((sizeof(double) + 1) * (size_t)(T->n_targets + 2) + 8 +
                         sizeof(float) * (size_t)in[0]->dims[in[0]->rank - 1]);
}

/* Scores of nr <= TREE_BLOCK rows (before base values and post transform) into
 * s[r * n_targets + k]. Each tree is walked for all rows in lockstep for exactly its depth
 * (leaves loop to themselves): the steps are branch-free selects, and the rows' walks
 * overlap their memory latency. */
static void tree_rows(const struct infer_tree *T, const float *const *x, int nr, double *s,
                      uint8_t *has)
{
    const int32_t nt = T->n_targets;

    for (int32_t k = 0; k < nr * nt; k++) {
        s[k] = 0;
        has[k] = 0;
    }
    for (int32_t t = 0; t < T->n_trees; t++) {
        int32_t cur[TREE_BLOCK];
        for (int j = 0; j < nr; j++)
            cur[j] = T->roots[t];
        if (T->all_leq) {
            for (int32_t d = 0; d < T->depth[t]; d++)
                for (int j = 0; j < nr; j++) {
                    const struct tnode *nd = &T->nodes[cur[j]];
                    cur[j] = x[j][nd->feat] <= nd->thr ? nd->t : nd->f;
                }
        } else {
            for (int32_t d = 0; d < T->depth[t]; d++)
                for (int j = 0; j < nr; j++) {
                    const struct tnode *nd = &T->nodes[cur[j]];
                    float v = x[j][nd->feat];
                    bool c;
                    switch (nd->mode) {
                    case M_LEQ: c = v <= nd->thr; break;
                    case M_LT: c = v < nd->thr; break;
                    case M_GTE: c = v >= nd->thr; break;
                    case M_GT: c = v > nd->thr; break;
                    case M_EQ: c = v == nd->thr; break;
                    default: c = v != nd->thr; break;
                    }
                    /* A missing value (NaN) fails every comparison but NEQ; the flag sends
                     * it to the true branch instead. */
                    if (nd->miss_true && v != v)
                        c = true;
                    cur[j] = c ? nd->t : nd->f;
                }
        }
        for (int j = 0; j < nr; j++) {
            double *sj = s + j * nt;
            uint8_t *hj = has + j * nt;
            for (int32_t i = 0; i < T->leaf_n[cur[j]]; i++) {
                const struct tgt *g = &T->tg[T->leaf_start[cur[j]] + i];
                double wv = g->w;
                switch (T->agg) {
                case AG_MIN: sj[g->id] = hj[g->id] && sj[g->id] < wv ? sj[g->id] : wv; break;
                case AG_MAX: sj[g->id] = hj[g->id] && sj[g->id] > wv ? sj[g->id] : wv; break;
                default: sj[g->id] += wv; break;
                }
                hj[g->id] = 1;
            }
        }
    }
    if (T->agg == AG_AVERAGE)
        for (int32_t k = 0; k < nr * nt; k++)
            s[k] /= T->n_trees;
}

/* Fast walk, portable: one step is three loads and a branch-free select. */
static inline int32_t fstep(const struct fnode *F, int fb, const float *x, int32_t cur)
{
    const struct fnode *nd = &F[cur];
    const uint32_t fn = nd->fn;
    int32_t c = -(int32_t)(x[fn & ((1u << fb) - 1)] <= nd->thr); /* all ones: true child */

    return ((int32_t)(fn >> fb) & ~c) | ((cur + 1) & c);
}

/* Sums of the leaf values over every tree for nr <= TREE_BLOCK rows at x + j*C. One row:
 * TREE_LANES trees walk in lockstep (independent loads overlap); several rows: the rows
 * walk each tree in lockstep. */
static void fast_rows_c(const struct infer_tree *T, const float *x, int64_t C, int nr, double *sum)
{
    const struct fnode *F = T->fast;

    for (int j = 0; j < nr; j++)
        sum[j] = 0;
    if (nr == 1) {
        for (int32_t t0 = 0; t0 < T->n_trees; t0 += TREE_LANES) {
            int nl = T->n_trees - t0 < TREE_LANES ? (int)(T->n_trees - t0) : TREE_LANES;
            int32_t cur[TREE_LANES], dep = 0;
            for (int l = 0; l < nl; l++) {
                cur[l] = T->roots[t0 + l];
                dep = T->depth[t0 + l] > dep ? T->depth[t0 + l] : dep;
            }
            for (int32_t d = 0; d < dep; d++)
                for (int l = 0; l < nl; l++)
                    cur[l] = fstep(F, T->fbits, x, cur[l]);
            for (int l = 0; l < nl; l++)
                sum[0] += T->fval[cur[l]];
        }
        return;
    }
    for (int32_t t = 0; t < T->n_trees; t++) {
        int32_t cur[TREE_BLOCK];
        for (int j = 0; j < nr; j++)
            cur[j] = T->roots[t];
        for (int32_t d = 0; d < T->depth[t]; d++)
            for (int j = 0; j < nr; j++)
                cur[j] = fstep(F, T->fbits, x + j * C, cur[j]);
        for (int j = 0; j < nr; j++)
            sum[j] += T->fval[cur[j]];
    }
}

#if INFER_X86
#define T512 __attribute__((target("avx512f,fma")))

/* The records of 16 lanes' current nodes: two 8-lane qword gathers, split into thresholds
 * and fn with two permutes. */
static inline __attribute__((always_inline)) T512 __m512 frec16(const struct fnode *F, __m512i cur,
                                                                __m512i *fn)
{
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2,
                                          0);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    const __m512i q0 = _mm512_i32gather_epi64(_mm512_castsi512_si256(cur), F, 8);
    const __m512i q1 = _mm512_i32gather_epi64(_mm512_extracti64x4_epi64(cur, 1), F, 8);

    *fn = _mm512_permutex2var_epi32(q0, odd, q1);
    return _mm512_castsi512_ps(_mm512_permutex2var_epi32(q0, even, q1));
}

/* cur = xv <= thr ? cur + 1 : next. */
static inline __attribute__((always_inline)) T512 __m512i fsel16(__m512 xv, __m512 thr, __m512i fn,
                                                                 __m512i cur, __m128i fb)
{
    const __mmask16 go = _mm512_cmp_ps_mask(xv, thr, _CMP_LE_OQ);

    return _mm512_mask_add_epi32(_mm512_srl_epi32(fn, fb), go, cur, _mm512_set1_epi32(1));
}

/* One step of 16 lanes on different rows (`rowoff`: each lane's row offset in floats):
 * the features come from a gather. */
static inline __attribute__((always_inline)) T512 __m512i fstep16(const struct fnode *F,
                                                                  const float *x, __m512i rowoff,
                                                                  __m512i cur, __m512i fmask,
                                                                  __m128i fb)
{
    __m512i fn;
    const __m512 thr = frec16(F, cur, &fn);
    const __m512i feat = _mm512_and_si512(fn, fmask);
    const __m512 xv = _mm512_i32gather_ps(_mm512_add_epi32(rowoff, feat), x, 4);

    return fsel16(xv, thr, fn, cur, fb);
}

/* One step of 16 lanes on one row of at most 32 features held in xlo:xhi: the features
 * come from a two-register permute instead of a gather. */
static inline __attribute__((always_inline)) T512 __m512i fstep16p(const struct fnode *F,
                                                                   __m512 xlo, __m512 xhi,
                                                                   __m512i cur, __m512i fmask,
                                                                   __m128i fb)
{
    __m512i fn;
    const __m512 thr = frec16(F, cur, &fn);
    const __m512 xv = _mm512_permutex2var_ps(xlo, _mm512_and_si512(fn, fmask), xhi);

    return fsel16(xv, thr, fn, cur, fb);
}

#define FGROUPS 8 /* independent 16-lane walks in flight (gather latency is long) */

static inline __attribute__((always_inline)) T512 __m512d cvt_lo(__m512 v)
{
    return _mm512_cvtps_pd(_mm512_castps512_ps256(v));
}

static inline __attribute__((always_inline)) T512 __m512d cvt_hi(__m512 v)
{
    return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

/* Sum over every tree for one row: lanes are trees (in depth order, so the 16 trees of a
 * lane group need about the same number of steps), FGROUPS groups in flight. Rows of at
 * most 32 features are held in two registers and read with a permute. */
static T512 double row_trees_512(const struct infer_tree *T, const float *x, int64_t C)
{
    const struct fnode *F = T->fast;
    const __m512i fmask = _mm512_set1_epi32((int)((1u << T->fbits) - 1));
    const __m128i fb = _mm_cvtsi32_si128(T->fbits);
    const __m512i zero = _mm512_setzero_si512();
    const bool perm = C <= 32;
    const __mmask16 m0 = (__mmask16)(C >= 16 ? 0xffff : (1u << C) - 1);
    const __mmask16 m1 = (__mmask16)(C >= 32 ? 0xffff : C > 16 ? (1u << (C - 16)) - 1 : 0);
    const __m512 xlo = perm ? _mm512_maskz_loadu_ps(m0, x) : _mm512_setzero_ps();
    const __m512 xhi = perm ? _mm512_maskz_loadu_ps(m1, x + 16) : _mm512_setzero_ps();
    __m512d acc0 = _mm512_setzero_pd(), acc1 = _mm512_setzero_pd();
    __m512i cur[FGROUPS];

    for (int32_t t0 = 0; t0 < T->n_trees; t0 += 16 * FGROUPS) {
        __mmask16 live[FGROUPS];
        int32_t dep = 0, ng = 0;
        for (int g = 0; g < FGROUPS && t0 + 16 * g < T->n_trees; g++, ng++) {
            int32_t tg = t0 + 16 * g, idx[16];
            int nl = T->n_trees - tg < 16 ? (int)(T->n_trees - tg) : 16;
            live[g] = (__mmask16)((1u << nl) - 1);
            /* Dead lanes walk tree 0 harmlessly; their values are dropped. */
            for (int l = 0; l < 16; l++) {
                int32_t t = l < nl ? T->by_depth[tg + l] : 0;
                idx[l] = T->roots[t];
                dep = l < nl && T->depth[t] > dep ? T->depth[t] : dep;
            }
            cur[g] = _mm512_loadu_si512(idx);
        }
        for (int32_t d = 0; d < dep; d++) {
            if (perm) {
#pragma GCC unroll 8
                for (int g = 0; g < FGROUPS; g++)
                    if (g < ng)
                        cur[g] = fstep16p(F, xlo, xhi, cur[g], fmask, fb);
            } else {
#pragma GCC unroll 8
                for (int g = 0; g < FGROUPS; g++)
                    if (g < ng)
                        cur[g] = fstep16(F, x, zero, cur[g], fmask, fb);
            }
        }
        for (int g = 0; g < ng; g++) {
            __m512 v = _mm512_maskz_mov_ps(live[g], _mm512_i32gather_ps(cur[g], T->fval, 4));
            acc0 = _mm512_add_pd(acc0, cvt_lo(v));
            acc1 = _mm512_add_pd(acc1, cvt_hi(v));
        }
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(acc0, acc1));
}

/* As fast_rows_c with AVX-512: rows of at most 32 features (and single rows) one by one
 * through row_trees_512; wider rows 16 at a time, lanes being rows, FGROUPS trees in
 * flight (lanes past nr repeat the last row and are dropped). */
static T512 void fast_rows_512(const struct infer_tree *T, const float *x, int64_t C, int nr,
                               double *sum)
{
    const struct fnode *F = T->fast;
    const float *val = T->fval;
    const __m512i fmask = _mm512_set1_epi32((int)((1u << T->fbits) - 1));
    const __m128i fb = _mm_cvtsi32_si128(T->fbits);
    __m512d acc0 = _mm512_setzero_pd(), acc1 = _mm512_setzero_pd();
    __m512i cur[FGROUPS];

    if (nr == 1 || C <= 32) {
        for (int j = 0; j < nr; j++)
            sum[j] = row_trees_512(T, x + j * C, C);
        return;
    }
    int32_t ro[16];
    double tmp[16];
    for (int j = 0; j < 16; j++)
        ro[j] = (int32_t)((j < nr ? j : nr - 1) * C);
    const __m512i rowoff = _mm512_loadu_si512(ro);
    for (int32_t t0 = 0; t0 < T->n_trees; t0 += FGROUPS) {
        int32_t dep = 0, ng = T->n_trees - t0 < FGROUPS ? T->n_trees - t0 : FGROUPS;
        for (int g = 0; g < ng; g++) {
            cur[g] = _mm512_set1_epi32(T->roots[t0 + g]);
            dep = T->depth[t0 + g] > dep ? T->depth[t0 + g] : dep;
        }
        for (int32_t d = 0; d < dep; d++) {
#pragma GCC unroll 8
            for (int g = 0; g < FGROUPS; g++)
                if (g < ng)
                    cur[g] = fstep16(F, x, rowoff, cur[g], fmask, fb);
        }
        /* Trees added in order, so each row's sum is the same as walking them one by one. */
        for (int g = 0; g < ng; g++) {
            __m512 v = _mm512_i32gather_ps(cur[g], val, 4);
            acc0 = _mm512_add_pd(acc0, cvt_lo(v));
            acc1 = _mm512_add_pd(acc1, cvt_hi(v));
        }
    }
    _mm512_storeu_pd(tmp, acc0);
    _mm512_storeu_pd(tmp + 8, acc1);
    for (int j = 0; j < nr; j++)
        sum[j] = tmp[j];
}
#endif

/* Scores like tree_rows() for the fast-walk case (float rows at x + j*C). */
static void fast_rows(const struct infer_tree *T, const float *x, int64_t C, int nr, double *s,
                      uint8_t *has)
{
    double sum[TREE_BLOCK];
    const int32_t nt = T->n_targets;

#if INFER_X86
    if (infer__cpu_level() >= INFER_CPU_AVX512 && C <= INT32_MAX / TREE_BLOCK)
        fast_rows_512(T, x, C, nr, sum);
    else
#endif
        fast_rows_c(T, x, C, nr, sum);
    for (int j = 0; j < nr; j++) {
        for (int32_t k = 0; k < nt; k++) {
            s[j * nt + k] = 0;
            has[j * nt + k] = 0;
        }
        s[j * nt + T->fast_id] = T->agg == AG_AVERAGE ? sum[j] / T->n_trees : sum[j];
    }
}

static const float *row_as_float(const struct infer_tensor *x, int64_t r, int64_t C, float *buf)
{
    if (x->dtype == INFER_DT_FLOAT)
        return (const float *)x->data + r * C;
    for (int64_t j = 0; j < C; j++)
        buf[j] = (float)infer__get_f64(x, r * C + j);
    return buf;
}

/* Carves tree_rows()'s buffers out of scratch (layout as in tree_scratch()). */
static void tree_bufs(const struct infer_tree *T, int64_t C, void *scratch, double **s,
                      uint8_t **has, float **xb)
{
    size_t nt = (size_t)T->n_targets + 2;

    *s = scratch;
    *has = (uint8_t *)(*s + TREE_BLOCK * nt);
    *xb = (float *)(((uintptr_t)(*has + TREE_BLOCK * nt) + 7) & ~(uintptr_t)7);
    (void)C;
}

static int treereg_run(const struct infer_node *n, struct infer_tensor *const *in,
                       struct infer_tensor *const *out, void *scratch, struct infer_err *e)
{
    const struct infer_tree *T = n->ext;
    int64_t N = 0, C = 0;
    double *s;
    uint8_t *has;
    float *xb, *y = out[0]->data;
    const float *rows[TREE_BLOCK];

    ml_input(in[0], &N, &C, NULL);
    tree_bufs(T, C, scratch, &s, &has, &xb);
    for (int64_t r0 = 0; r0 < N; r0 += TREE_BLOCK) {
        int nr = N - r0 < TREE_BLOCK ? (int)(N - r0) : TREE_BLOCK;
        if (T->fast != NULL && in[0]->dtype == INFER_DT_FLOAT) {
            fast_rows(T, (const float *)in[0]->data + r0 * C, C, nr, s, has);
        } else {
            for (int j = 0; j < nr; j++)
                rows[j] = row_as_float(in[0], r0 + j, C, xb + j * C);
            tree_rows(T, rows, nr, s, has);
        }
        for (int j = 0; j < nr; j++) {
            double *sj = s + j * T->n_targets;
            for (int32_t k = 0; k < T->n_targets; k++)
                sj[k] += T->base ? T->base[k] : 0;
            post_apply(T->post, sj, T->n_targets);
            for (int32_t k = 0; k < T->n_targets; k++)
                y[(r0 + j) * T->n_targets + k] = (float)sj[k];
        }
    }
    return 0;
}

/* Scores [n_classes] from raw class sums, with the ONNX Runtime binary-case convention:
 * one class carries every weight -> scores (1-s, s) when weights are all positive, else
 * (-s, s); the label compares s with 0.5 or 0. Returns the label index. */
static int32_t clf_finish(const struct infer_tree *T, double *s)
{
    int32_t best = 0;

    if (T->binary) {
        double v = s[T->bin_class];
        int32_t lab;
        if (T->all_pos) {
            lab = v > 0.5 ? 1 : 0;
            s[0] = 1 - v;
        } else {
            lab = v > 0 ? 1 : 0;
            s[0] = -v;
        }
        s[1] = v;
        post_apply(T->post, s, 2);
        return lab;
    }
    for (int32_t k = 0; k < T->n_targets; k++)
        s[k] += T->base ? T->base[k] : 0;
    for (int32_t k = 1; k < T->n_targets; k++)
        if (s[k] > s[best])
            best = k;
    post_apply(T->post, s, T->n_targets);
    return best;
}

static int treeclf_run(const struct infer_node *n, struct infer_tensor *const *in,
                       struct infer_tensor *const *out, void *scratch, struct infer_err *e)
{
    const struct infer_tree *T = n->ext;
    int64_t N = 0, C = 0;
    double *s;
    uint8_t *has;
    float *xb;
    const float *rows[TREE_BLOCK];

    ml_input(in[0], &N, &C, NULL);
    tree_bufs(T, C, scratch, &s, &has, &xb);
    for (int64_t r0 = 0; r0 < N; r0 += TREE_BLOCK) {
        int nr = N - r0 < TREE_BLOCK ? (int)(N - r0) : TREE_BLOCK;
        if (T->fast != NULL && in[0]->dtype == INFER_DT_FLOAT) {
            fast_rows(T, (const float *)in[0]->data + r0 * C, C, nr, s, has);
        } else {
            for (int j = 0; j < nr; j++)
                rows[j] = row_as_float(in[0], r0 + j, C, xb + j * C);
            tree_rows(T, rows, nr, s, has);
        }
        for (int j = 0; j < nr; j++) {
            /* clf_finish may write s[0..1] of a binary model: give it room past n_targets. */
            double sj[2 + 2], *p = T->n_targets <= 2 ? sj : s + j * T->n_targets;
            int64_t r = r0 + j;
            if (T->n_targets <= 2)
                memcpy(sj, s + j * T->n_targets, sizeof(double) * (size_t)T->n_targets);
            if (T->binary && T->base != NULL)
                p[T->bin_class] += T->base[T->bin_class];
            int32_t lab = clf_finish(T, p);
            ((int64_t *)out[0]->data)[r] = T->labels[lab];
            if (n->n_out > 1 && out[1] != NULL)
                for (int32_t k = 0; k < T->n_targets; k++)
                    ((float *)out[1]->data)[r * T->n_targets + k] = (float)p[k];
        }
    }
    return 0;
}

const struct infer_op infer__op_treeregressor = {.name = "TreeEnsembleRegressor",
                                                 .domain = "ai.onnx.ml",
                                                 .load = treereg_load,
                                                 .shape = treereg_shape,
                                                 .scratch = tree_scratch,
                                                 .run = treereg_run};
const struct infer_op infer__op_treeclassifier = {.name = "TreeEnsembleClassifier",
                                                  .domain = "ai.onnx.ml",
                                                  .load = treeclf_load,
                                                  .shape = treeclf_shape,
                                                  .scratch = tree_scratch,
                                                  .run = treeclf_run};

/* ---- LinearRegressor / LinearClassifier ---- */

struct infer_linear {
    double *coef; /* [k, C] */
    double *icpt; /* [k] or NULL */
    int32_t k;
    int64_t C;
    int post;
    int64_t *labels; /* classifier */
    int32_t n_labels;
    bool binary;
};

static void linear_free(void *p)
{
    struct infer_linear *l = p;

    if (l == NULL)
        return;
    free(l->coef);
    free(l->icpt);
    free(l->labels);
    free(l);
}

static int linear_load(struct infer_node *n, bool clf, struct infer_err *e)
{
    struct infer_linear *L = mc_xcalloc(1, sizeof(*L));
    size_t nc, ni;

    n->ext = L;
    n->ext_free = linear_free;
    L->coef = floats_of(n, "coefficients", &nc);
    L->icpt = floats_of(n, "intercepts", &ni);
    if (nc == 0)
        return infer__errf(e, -EINVAL, "coefficients required");
    if (post_of(infer__attr_s(n, "post_transform", "NONE"), &L->post, e) != 0)
        return -EINVAL;
    if (clf) {
        size_t nl;
        const int64_t *lab = ints_of(n, "classlabels_ints", &nl);
        if (infer__attr(n, "classlabels_strings") != NULL)
            return infer__errf(e, -ENOTSUP, "string class labels not supported");
        if (nl == 0)
            return infer__errf(e, -EINVAL, "classlabels_ints required");
        if (infer__attr_i(n, "multi_class", 0) != 0)
            return infer__errf(e, -ENOTSUP, "multi_class=1 not supported");
        L->labels = mc_xmalloc(sizeof(int64_t) * nl);
        memcpy(L->labels, lab, sizeof(int64_t) * nl);
        L->n_labels = (int32_t)nl;
        /* One coefficient row and two labels: a binary model scoring the second label. */
        L->binary = nl == 2 && ni <= 1 && nc % 2 != 0;
        L->k = (int32_t)(ni ? ni : (L->binary ? 1 : nl));
        if (ni == 0 && !L->binary && nc % nl != 0)
            return infer__errf(e, -EINVAL, "coefficients do not split into %zu classes", nl);
        if (ni == 1 && nl == 2)
            L->binary = true;
        if (!L->binary && L->k != L->n_labels)
            return infer__errf(e, -EINVAL, "%d intercepts for %d labels", L->k, L->n_labels);
    } else {
        int64_t t = infer__attr_i(n, "targets", 1);
        if (t < 1 || t > 1 << 20)
            return infer__errf(e, -EINVAL, "bad targets");
        L->k = (int32_t)t;
    }
    if (ni != 0 && ni != (size_t)L->k)
        return infer__errf(e, -EINVAL, "%zu intercepts for %d outputs", ni, L->k);
    if (nc % (size_t)L->k != 0)
        return infer__errf(e, -EINVAL, "%zu coefficients do not split into %d rows", nc, L->k);
    L->C = (int64_t)(nc / (size_t)L->k);
    n->ext_bytes = (nc + ni) * sizeof(double) + (size_t)L->n_labels * sizeof(int64_t);
    return 0;
}

static int linreg_load(struct infer_node *n, struct infer_err *e)
{
    return linear_load(n, false, e);
}

static int linclf_load(struct infer_node *n, struct infer_err *e)
{
    return linear_load(n, true, e);
}

static int linreg_shape(const struct infer_node *n, struct infer_tensor *const *in,
                        struct infer_tensor *const *out, struct infer_err *e)
{
    const struct infer_linear *L = n->ext;
    int64_t N = 0, C = 0;
    int err;

    INFER_NEED(n->n_in == 1 && in[0] && n->n_out == 1, "needs X");
    err = ml_input(in[0], &N, &C, e);
    if (err != 0)
        return err;
    INFER_NEED(C == L->C, "X has %lld columns, coefficients expect %lld", (long long)C,
               (long long)L->C);
    out[0]->dtype = INFER_DT_FLOAT;
    out[0]->rank = 2;
    out[0]->dims[0] = N;
    out[0]->dims[1] = L->k;
    return 0;
}

static int linclf_shape(const struct infer_node *n, struct infer_tensor *const *in,
                        struct infer_tensor *const *out, struct infer_err *e)
{
    const struct infer_linear *L = n->ext;
    int64_t N = 0, C = 0;
    int err;

    INFER_NEED(n->n_in == 1 && in[0] && n->n_out >= 1 && n->n_out <= 2, "needs X");
    err = ml_input(in[0], &N, &C, e);
    if (err != 0)
        return err;
    INFER_NEED(C == L->C, "X has %lld columns, coefficients expect %lld", (long long)C,
               (long long)L->C);
    clf_outputs(n, out, N, L->binary ? 2 : L->k);
    return 0;
}

static void linear_row(const struct infer_linear *L, const struct infer_tensor *x, int64_t r,
                       double *s)
{
    for (int32_t k = 0; k < L->k; k++) {
        double acc = L->icpt ? L->icpt[k] : 0;
        for (int64_t j = 0; j < L->C; j++)
            acc += L->coef[k * L->C + j] * infer__get_f64(x, r * L->C + j);
        s[k] = acc;
    }
}

static size_t linear_scratch(const struct infer_node *n, struct infer_tensor *const *in,
                             struct infer_tensor *const *out)
{
    const struct infer_linear *L = n->ext;

    return sizeof(double) * (size_t)(L->k + 2);
}

static int linreg_run(const struct infer_node *n, struct infer_tensor *const *in,
                      struct infer_tensor *const *out, void *scratch, struct infer_err *e)
{
    const struct infer_linear *L = n->ext;
    double *s = scratch;
    int64_t N = in[0]->rank == 2 ? in[0]->dims[0] : 1;

    for (int64_t r = 0; r < N; r++) {
        linear_row(L, in[0], r, s);
        post_apply(L->post, s, L->k);
        for (int32_t k = 0; k < L->k; k++)
            ((float *)out[0]->data)[r * L->k + k] = (float)s[k];
    }
    return 0;
}

static int linclf_run(const struct infer_node *n, struct infer_tensor *const *in,
                      struct infer_tensor *const *out, void *scratch, struct infer_err *e)
{
    const struct infer_linear *L = n->ext;
    double *s = scratch;
    int64_t N = in[0]->rank == 2 ? in[0]->dims[0] : 1;
    int32_t nz = L->binary ? 2 : L->k;

    for (int64_t r = 0; r < N; r++) {
        int32_t best = 0;
        linear_row(L, in[0], r, s);
        if (L->binary) {
            /* Label from the raw score's sign; scores (-s, s) then the post transform. */
            best = s[0] > 0 ? 1 : 0;
            s[1] = s[0];
            s[0] = -s[1];
            if (L->post == PT_LOGISTIC) {
                s[1] = 1.0 / (1.0 + exp(-s[1]));
                s[0] = 1 - s[1];
            } else {
                post_apply(L->post, s, 2);
            }
        } else {
            for (int32_t k = 1; k < L->k; k++)
                if (s[k] > s[best])
                    best = k;
            post_apply(L->post, s, L->k);
        }
        ((int64_t *)out[0]->data)[r] = L->labels[best];
        if (n->n_out > 1 && out[1] != NULL)
            for (int32_t k = 0; k < nz; k++)
                ((float *)out[1]->data)[r * nz + k] = (float)s[k];
    }
    return 0;
}

const struct infer_op infer__op_linearregressor = {.name = "LinearRegressor",
                                                   .domain = "ai.onnx.ml",
                                                   .load = linreg_load,
                                                   .shape = linreg_shape,
                                                   .scratch = linear_scratch,
                                                   .run = linreg_run};
const struct infer_op infer__op_linearclassifier = {.name = "LinearClassifier",
                                                    .domain = "ai.onnx.ml",
                                                    .load = linclf_load,
                                                    .shape = linclf_shape,
                                                    .scratch = linear_scratch,
                                                    .run = linclf_run};
