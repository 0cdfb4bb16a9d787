/* src/cache/cache_policy_int.h: private to the policy files (cache_policy*.c).
 *
 * struct cache__pn is the real layout behind struct cache_pnode (48 bytes). Every policy
 * keeps its queues as circular doubly linked lists through next/prev with a sentinel
 * (head.next is the newest, head.prev the oldest). `freq` is the only field written by
 * cache_policy_hit() without the shard lock, always with relaxed atomics; everything else
 * belongs to the lock holder. The dispatcher (cache_policy.c) evicts before it links a new
 * object, so a newcomer never pushes itself out and every policy sees "make room, then
 * insert", the order the published simulators use. */
#ifndef MLCDN_CACHE_CACHE_POLICY_INT_H
#define MLCDN_CACHE_CACHE_POLICY_INT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/cache_policy.h"
#include "core/mc.h"

struct cache__pn {
    struct cache__pn *next, *prev;
    uint64_t hash;
    uint64_t size;
    _Atomic uint32_t freq; /* hits since the policy last looked (saturating) */
    uint8_t q;             /* which queue the node is on; 0 = not linked */
    uint8_t flags;
    uint16_t spare;
    uint64_t aux; /* policy-specific (e.g. an insertion stamp) */
};

_Static_assert(sizeof(struct cache__pn) <= sizeof(struct cache_pnode), "pnode too small");
_Static_assert(sizeof(struct cache_pnode) == 48, "pnode is 48 bytes");
_Static_assert(_Alignof(struct cache__pn) <= _Alignof(struct cache_pnode), "pnode alignment");

#define CACHE__PN(n) ((struct cache__pn *)(void *)(n))
#define CACHE__PUB(pn) ((struct cache_pnode *)(void *)(pn))
#define CACHE__FREQ_MAX 15u

struct cache__list {
    struct cache__pn head; /* sentinel */
    uint64_t used;         /* sum of sizes on the list */
    uint64_t count;
};

static inline void cache__list_init(struct cache__list *l)
{
    l->head.next = l->head.prev = &l->head;
    l->used = l->count = 0;
}

static inline int cache__list_empty(const struct cache__list *l)
{
    return l->head.next == &l->head;
}

static inline void cache__list_push(struct cache__list *l, struct cache__pn *n)
{
    n->next = l->head.next;
    n->prev = &l->head;
    l->head.next->prev = n;
    l->head.next = n;
    l->used += n->size;
    l->count++;
}

static inline struct cache__pn *cache__list_oldest(struct cache__list *l)
{
    return cache__list_empty(l) ? NULL : l->head.prev;
}

static inline void cache__list_del(struct cache__list *l, struct cache__pn *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = NULL;
    l->used -= n->size;
    l->count--;
}

/* Saturating increment from concurrent hits: a lost update under a race only loses one
 * count, which every frequency-based policy here tolerates. */
static inline void cache__freq_bump(struct cache__pn *n, uint32_t max)
{
    uint32_t f = atomic_load_explicit(&n->freq, memory_order_relaxed);
    if (f < max)
        atomic_store_explicit(&n->freq, f + 1, memory_order_relaxed);
}

static inline uint32_t cache__freq(const struct cache__pn *n)
{
    return atomic_load_explicit(&((struct cache__pn *)n)->freq, memory_order_relaxed);
}

static inline void cache__freq_set(struct cache__pn *n, uint32_t f)
{
    atomic_store_explicit(&n->freq, f, memory_order_relaxed);
}

struct cache_policy;

/* One policy implementation. The dispatcher owns capacity/used/count and the pending
 * newcomer; a policy owns its queues. */
struct cache__policy_ops {
    const char *name;
    size_t size;        /* of the policy's struct, which starts with struct cache_policy */
    int hit_concurrent; /* 0: hit() reorders lists and needs the lock exclusively */
    void (*init)(struct cache_policy *p);
    void (*fini)(struct cache_policy *p);
    /* Decides at offer time (ghost look-ups happen here); may tag the node. */
    enum cache_policy_admit (*admit)(struct cache_policy *p, struct cache__pn *n);
    void (*link)(struct cache_policy *p, struct cache__pn *n);
    /* Chooses and unlinks one victim (its queues' accounting updated); NULL if empty. */
    struct cache__pn *(*evict)(struct cache_policy *p);
    void (*hit)(struct cache_policy *p, struct cache__pn *n);
    void (*unlink)(struct cache_policy *p, struct cache__pn *n);
    void (*resize)(struct cache_policy *p); /* capacity changed; may be NULL */
    /* Bytes held beside the nodes (ghosts, sketch); NULL = none. */
    uint64_t (*side_bytes)(const struct cache_policy *p);
};

struct cache_policy {
    unsigned magic;
#define CACHE_POLICY_MAGIC 0x504f4c59u
    const struct cache__policy_ops *ops;
    uint64_t capacity;
    uint64_t used; /* includes the pending newcomer */
    uint64_t count;
    uint64_t max_object; /* admission: larger objects are refused; 0 = capacity */
    struct cache__pn *pending;
    uint64_t evictions; /* lifetime, for stats */
    int fill_admit;     /* cache_policy_set_fill_admit() */
    enum cache_policy_objective objective;
};

/* Ghost: remembers hashes of recently evicted objects, bounded by a budget in the store's
 * unit (the sum of the remembered sizes) and by a fixed number of 8-byte slots; see
 * cache_policy_ghost.c. No per-entry allocation, O(1) per call. */
#define CACHE__GHOST_WAYS 4 /* slots per set */

struct cache__ghost {
    uint64_t *slot; /* fingerprint:23 | tag:1 | stamp:40 */
    uint64_t nsets; /* power of two; CACHE__GHOST_WAYS slots per set */
    uint64_t clock; /* total units ever added */
    uint64_t budget;
    uint64_t quantum;  /* stamps count clock / quantum */
    uint64_t now;      /* (clock / quantum) mod 2^40 */
    uint64_t span;     /* budget in quanta: an entry lives while now - stamp < span */
    uint64_t live_max; /* live entries the table is sized for */
    uint64_t scrub;    /* next set to clean of expired entries */
};

void cache__ghost_init(struct cache__ghost *g, uint64_t budget, uint64_t entries);
/* Bytes of the ghost's table. */
static inline uint64_t cache__ghost_bytes(const struct cache__ghost *g)
{
    return g->nsets * CACHE__GHOST_WAYS * sizeof(*g->slot);
}
void cache__ghost_fini(struct cache__ghost *g);
/* Changes the budget (forgets everything if the stamp unit has to change). */
void cache__ghost_set_budget(struct cache__ghost *g, uint64_t budget);
/* Re-sizes to hold `entries` live entries; growing forgets the current entries. */
void cache__ghost_reserve(struct cache__ghost *g, uint64_t entries);
void cache__ghost_add(struct cache__ghost *g, uint64_t hash, uint64_t size, int tag);
/* If `hash` is remembered: forgets it, stores its tag in *tag and returns 1 + its depth,
 * the units added to the ghost since it was, its own included (in the ghost's quantum,
 * budget / 2^16 units); else 0. */
uint64_t cache__ghost_take(struct cache__ghost *g, uint64_t hash, int *tag);

/* Frequency sketch: 4-bit count-min counters with periodic halving (TinyLFU); see
 * cache_policy_sketch.c. Bounded by the resident count, O(1) per call (amortised aging). */
struct cache__sketch {
    uint64_t *tab;  /* 16 counters of 4 bits per word */
    uint64_t words; /* power of two */
    uint64_t mask;  /* counters per row - 1 */
    uint64_t adds;  /* since the last halving */
    uint64_t sample;
};

#define CACHE__SKETCH_MAX 15u /* counters saturate here */

void cache__sketch_init(struct cache__sketch *s, uint64_t entries);
/* Bytes of the sketch's counters. */
static inline uint64_t cache__sketch_bytes(const struct cache__sketch *s)
{
    return s->words * sizeof(*s->tab);
}
void cache__sketch_fini(struct cache__sketch *s);
/* Re-sizes for `entries` objects; growing forgets the counts. */
void cache__sketch_reserve(struct cache__sketch *s, uint64_t entries);
/* Adds n to hash's count; returns its estimate afterwards. */
uint32_t cache__sketch_add(struct cache__sketch *s, uint64_t hash, uint32_t n);
uint32_t cache__sketch_estimate(const struct cache__sketch *s, uint64_t hash);

extern const struct cache__policy_ops cache__policy_lru;
extern const struct cache__policy_ops cache__policy_fifo;
extern const struct cache__policy_ops cache__policy_clock;
extern const struct cache__policy_ops cache__policy_sieve;
extern const struct cache__policy_ops cache__policy_s3fifo;
extern const struct cache__policy_ops cache__policy_wtinylfu;
extern const struct cache__policy_ops cache__policy_mlcdn;

/* The default policy's current small-queue target (stats, tests). */
uint64_t cache__mlcdn_small_target(const struct cache_policy *p);

#endif
