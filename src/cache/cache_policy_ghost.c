/* src/cache/cache_policy_ghost.c: the ghost (evicted-hash memory) shared by s3fifo and the
 * default policy. See struct cache__ghost in cache_policy_int.h.
 *
 * A four-way set-associative table of 8-byte slots: a 23-bit fingerprint, a 1-bit tag for
 * the caller and a 40-bit stamp, the ghost clock (which advances by each added size) in
 * units of `quantum` = budget / 2^16. An entry is remembered while less than `budget`
 * units were added after it: exactly a FIFO of `budget` units of evicted objects, minus
 * the rare entry pushed out of a full set (the oldest goes first) and fingerprint
 * collisions (4 in 2^23 per look-up, i.e. a false ghost hit, which costs one object a
 * slightly early promotion). Each add also cleans one set of expired entries, so every set
 * is visited long before a 40-bit stamp could wrap. Slots are sized at two per live
 * entry: 16 bytes of ghost per remembered object. */
#include <stdlib.h>
#include <string.h>

#include "cache/cache_policy_int.h"

#define WAYS CACHE__GHOST_WAYS
#define STAMP_BITS 40
#define STAMP_MASK ((1ull << STAMP_BITS) - 1)
#define TAG_BIT (1ull << STAMP_BITS)
#define FP_SHIFT (STAMP_BITS + 1)

static uint64_t fp_of(uint64_t hash)
{
    uint64_t fp = hash >> FP_SHIFT; /* 23 bits, independent of the set index bits */
    return fp != 0 ? fp : 1;
}

static uint64_t sets_for(uint64_t entries)
{
    uint64_t sets = 16;
    while (sets * WAYS < entries * 2 && sets < (1ull << 40))
        sets <<= 1;
    return sets;
}

static uint64_t age_of(const struct cache__ghost *g, uint64_t e)
{
    return (g->now - (e & STAMP_MASK)) & STAMP_MASK;
}

static int alive(const struct cache__ghost *g, uint64_t e)
{
    return e != 0 && age_of(g, e) < g->span;
}

static void set_quantum(struct cache__ghost *g)
{
    g->quantum = MC_MAX(g->budget >> 16, 1);
    g->span = (g->budget + g->quantum - 1) / g->quantum;
    g->now = (g->clock / g->quantum) & STAMP_MASK;
}

void cache__ghost_init(struct cache__ghost *g, uint64_t budget, uint64_t entries)
{
    memset(g, 0, sizeof(*g));
    g->budget = budget;
    set_quantum(g);
    g->nsets = sets_for(entries);
    g->live_max = entries;
    g->slot = mc_xcalloc(g->nsets * WAYS, sizeof(*g->slot));
}

void cache__ghost_fini(struct cache__ghost *g)
{
    free(g->slot);
    memset(g, 0, sizeof(*g));
}

void cache__ghost_set_budget(struct cache__ghost *g, uint64_t budget)
{
    uint64_t q = g->quantum;

    g->budget = budget;
    set_quantum(g);
    if (q != g->quantum)
        memset(g->slot, 0, g->nsets * WAYS * sizeof(*g->slot));
}

void cache__ghost_reserve(struct cache__ghost *g, uint64_t entries)
{
    uint64_t sets = sets_for(entries);

    g->live_max = entries;
    if (sets <= g->nsets)
        return;
    /* Entries cannot be re-homed (only fingerprints are kept), so growing forgets them.
     * Growth doubles: amortised O(1), and it happens while the cache is still filling. */
    free(g->slot);
    g->nsets = sets;
    g->scrub = 0;
    g->slot = mc_xcalloc(sets * WAYS, sizeof(*g->slot));
}

void cache__ghost_add(struct cache__ghost *g, uint64_t hash, uint64_t size, int tag)
{
    uint64_t *s = &g->slot[(hash & (g->nsets - 1)) * WAYS], *victim = NULL, *c;
    uint64_t oldest_age = 0;

    if (g->budget == 0)
        return;
    for (int i = 0; i < WAYS; i++) {
        if (!alive(g, s[i])) {
            victim = &s[i];
            break;
        }
        uint64_t age = age_of(g, s[i]);
        if (victim == NULL || age > oldest_age) {
            victim = &s[i];
            oldest_age = age;
        }
    }
    *victim = fp_of(hash) << FP_SHIFT | (tag ? TAG_BIT : 0) | g->now;
    g->clock += size;
    g->now = (g->quantum == 1 ? g->clock : g->clock / g->quantum) & STAMP_MASK;
    c = &g->slot[g->scrub * WAYS];
    for (int i = 0; i < WAYS; i++)
        if (!alive(g, c[i]))
            c[i] = 0;
    g->scrub = (g->scrub + 1) & (g->nsets - 1);
}

uint64_t cache__ghost_take(struct cache__ghost *g, uint64_t hash, int *tag)
{
    uint64_t *s = &g->slot[(hash & (g->nsets - 1)) * WAYS], fp = fp_of(hash);

    if (g->budget == 0)
        return 0;
    for (int i = 0; i < WAYS; i++)
        if ((s[i] >> FP_SHIFT) == fp && alive(g, s[i])) {
            uint64_t age = age_of(g, s[i]) * g->quantum;
            *tag = (s[i] & TAG_BIT) != 0;
            s[i] = 0;
            return 1 + age;
        }
    return 0;
}
