/* src/cache/cache_policy.c: policy registry and the calls every store makes.
 *
 * The dispatcher owns the accounting all policies share (capacity, used, count, the size
 * admission bound) and the "evict first, then link" order: cache_policy_insert() only
 * counts the newcomer and parks it as `pending`; cache_policy_victim() hands out victims
 * while the total exceeds the capacity and links the newcomer once it fits. A newcomer is
 * therefore never its own victim, and every policy decides with the cache full of the
 * old objects, as the published simulators do. The caller holds the shard lock for every
 * call except cache_policy_hit() (see cache_policy.h). Design: docs/internals/eviction.md. */
#include "cache/cache_policy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache_policy_int.h"
#include "core/mc.h"

static const struct cache__policy_ops *const policies[] = {
    &cache__policy_mlcdn, &cache__policy_lru,    &cache__policy_fifo,     &cache__policy_clock,
    &cache__policy_sieve, &cache__policy_s3fifo, &cache__policy_wtinylfu,
};

static const char *const names[] = {"default", "mlcdn",  "lru",      "fifo", "clock",
                                    "sieve",   "s3fifo", "wtinylfu", NULL};

const char *const *cache_policy_names(void)
{
    return names;
}

static const struct cache__policy_ops *find_ops(const char *name)
{
    if (name == NULL)
        return NULL;
    if (!strcmp(name, "default"))
        return &cache__policy_mlcdn;
    for (size_t i = 0; i < MC_ARRAY_SIZE(policies); i++)
        if (!strcmp(name, policies[i]->name))
            return policies[i];
    return NULL;
}

int cache_policy_new(const char *name, uint64_t capacity, struct cache_policy **out)
{
    const struct cache__policy_ops *ops = find_ops(name);
    struct cache_policy *p;

    if (ops == NULL)
        return -EINVAL;
    p = mc_xcalloc(1, ops->size);
    MC_INIT_OBJ(p, CACHE_POLICY_MAGIC);
    p->ops = ops;
    p->capacity = capacity;
    ops->init(p);
    *out = p;
    return 0;
}

void cache_policy_free(struct cache_policy **pp)
{
    struct cache_policy *p = *pp;

    if (p == NULL)
        return;
    MC_CHECK_OBJ(p, CACHE_POLICY_MAGIC);
    p->ops->fini(p);
    memset(p, 0, p->ops->size);
    free(p);
    *pp = NULL;
}

const char *cache_policy_name(const struct cache_policy *p)
{
    MC_CHECK_OBJ_NOTNULL(p, CACHE_POLICY_MAGIC);
    return p->ops->name;
}

int cache_policy_hit_concurrent(const struct cache_policy *p)
{
    MC_CHECK_OBJ_NOTNULL(p, CACHE_POLICY_MAGIC);
    return p->ops->hit_concurrent;
}

void cache_policy_set_max_object(struct cache_policy *p, uint64_t max_units)
{
    MC_CHECK_OBJ_NOTNULL(p, CACHE_POLICY_MAGIC);
    p->max_object = max_units;
}

void cache_policy_set_fill_admit(struct cache_policy *p, int on)
{
    MC_CHECK_OBJ_NOTNULL(p, CACHE_POLICY_MAGIC);
    p->fill_admit = on;
}

/* The policy's verdict on n, or admitted anyway while the store fills (fill_admit). */
static enum cache_policy_admit admit(struct cache_policy *p, struct cache__pn *n)
{
    enum cache_policy_admit v = p->ops->admit(p, n);

    if (v != CACHE_POLICY_ADMITTED && p->fill_admit && p->evictions == 0 &&
        p->used + n->size <= p->capacity)
        v = CACHE_POLICY_ADMITTED;
    return v;
}

uint64_t cache_policy_max_object(const struct cache_policy *p)
{
    MC_CHECK_OBJ_NOTNULL(p, CACHE_POLICY_MAGIC);
    return p->max_object != 0 && p->max_object < p->capacity ? p->max_object : p->capacity;
}

int cache_policy_objective_parse(const char *s, enum cache_policy_objective *out)
{
    if (s != NULL && !strcmp(s, "objects"))
        *out = CACHE_POLICY_OBJECTS;
    else if (s != NULL && !strcmp(s, "bytes"))
        *out = CACHE_POLICY_BYTES;
    else
        return -EINVAL;
    return 0;
}

const char *cache_policy_objective_name(enum cache_policy_objective o)
{
    return o == CACHE_POLICY_BYTES ? "bytes" : "objects";
}

void cache_policy_set_objective(struct cache_policy *p, enum cache_policy_objective o)
{
    MC_CHECK_OBJ_NOTNULL(p, CACHE_POLICY_MAGIC);
    p->objective = o;
}

enum cache_policy_objective cache_policy_objective(const struct cache_policy *p)
{
    MC_CHECK_OBJ_NOTNULL(p, CACHE_POLICY_MAGIC);
    return p->objective;
}

enum cache_policy_admit cache_policy_insert(struct cache_policy *p, struct cache_pnode *pub,
                                            uint64_t hash, uint64_t size)
{
    struct cache__pn *n = CACHE__PN(pub);

    MC_CHECK_OBJ_NOTNULL(p, CACHE_POLICY_MAGIC);
    /* The previous newcomer must have been drained in (see cache_policy.h). */
    MC_ASSERT(p->pending == NULL);
    if (size > cache_policy_max_object(p))
        return CACHE_POLICY_REJECTED;
    memset(n, 0, sizeof(*n));
    n->hash = hash;
    n->size = size;
    if (admit(p, n) != CACHE_POLICY_ADMITTED)
        return CACHE_POLICY_REJECTED;
    p->pending = n;
    p->used += size;
    p->count++;
    return CACHE_POLICY_ADMITTED;
}

enum cache_policy_admit cache_policy_judge(struct cache_policy *p, struct cache_pnode *pub,
                                           uint64_t hash, uint64_t size)
{
    struct cache__pn *n = CACHE__PN(pub);

    MC_CHECK_OBJ_NOTNULL(p, CACHE_POLICY_MAGIC);
    memset(n, 0, sizeof(*n));
    n->hash = hash;
    n->size = size;
    if (size > cache_policy_max_object(p))
        return CACHE_POLICY_REJECTED;
    return admit(p, n);
}

enum cache_policy_admit cache_policy_insert_judged(struct cache_policy *p, struct cache_pnode *pub,
                                                   uint64_t size)
{
    struct cache__pn *n = CACHE__PN(pub);

    MC_CHECK_OBJ_NOTNULL(p, CACHE_POLICY_MAGIC);
    MC_ASSERT(p->pending == NULL);
    if (size > cache_policy_max_object(p))
        return CACHE_POLICY_REJECTED;
    n->size = size; /* the flags the admission set stay */
    p->pending = n;
    p->used += size;
    p->count++;
    return CACHE_POLICY_ADMITTED;
}

void cache_policy_hit(struct cache_policy *p, struct cache_pnode *n)
{
    p->ops->hit(p, CACHE__PN(n));
}

struct cache_pnode *cache_policy_victim(struct cache_policy *p)
{
    struct cache__pn *v;

    MC_CHECK_OBJ_NOTNULL(p, CACHE_POLICY_MAGIC);
    while (p->used > p->capacity) {
        v = p->ops->evict(p);
        if (v == NULL) {
            /* Only the newcomer is left and it alone exceeds a shrunk capacity. */
            if (p->pending == NULL)
                break;
            v = p->pending;
            p->pending = NULL;
        }
        p->used -= v->size;
        p->count--;
        p->evictions++;
        return CACHE__PUB(v);
    }
    if (p->pending != NULL) {
        p->ops->link(p, p->pending);
        p->pending = NULL;
    }
    return NULL;
}

void cache_policy_remove(struct cache_policy *p, struct cache_pnode *pub)
{
    struct cache__pn *n = CACHE__PN(pub);

    MC_CHECK_OBJ_NOTNULL(p, CACHE_POLICY_MAGIC);
    if (n == p->pending) {
        p->pending = NULL;
    } else {
        MC_ASSERT(n->q != 0);
        p->ops->unlink(p, n);
    }
    p->used -= n->size;
    p->count--;
}

void cache_policy_set_capacity(struct cache_policy *p, uint64_t capacity)
{
    MC_CHECK_OBJ_NOTNULL(p, CACHE_POLICY_MAGIC);
    p->capacity = capacity;
    if (p->ops->resize != NULL)
        p->ops->resize(p);
}

uint64_t cache_policy_capacity(const struct cache_policy *p)
{
    return p->capacity;
}

uint64_t cache_policy_used(const struct cache_policy *p)
{
    return p->used;
}

uint64_t cache_policy_count(const struct cache_policy *p)
{
    return p->count;
}

uint64_t cache_policy_meta_bytes(const struct cache_policy *p)
{
    return p->count * sizeof(struct cache_pnode) + (p->ops->side_bytes ? p->ops->side_bytes(p) : 0);
}
