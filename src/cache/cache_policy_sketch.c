/* src/cache/cache_policy_sketch.c: the frequency sketch of the default policy (TinyLFU's
 * count-min sketch with aging, as Caffeine keeps it). See struct cache__sketch in
 * cache_policy_int.h.
 *
 * 4-bit counters packed sixteen to a 64-bit word; an object counts in four counters, one in
 * each row (a quarter of the table), at indices drawn from four independent mixes of its hash; its estimate is the
 * smallest of the four (count-min: collisions only ever add). When the number of additions
 * reaches ten times the number of objects the sketch is sized for, every counter is halved:
 * old popularity fades with a half-life of that many requests, so a formerly hot object
 * cannot squat forever (TinyLFU's "reset"). Counters are sized at 16 per object (4 per row),
 * 8 bytes per object. */
#include <stdlib.h>
#include <string.h>

#include "cache/cache_policy_int.h"

#define ROWS 4
#define SAMPLE_PER_ENTRY 10

static const uint64_t seeds[ROWS] = {0x97cb3127d3c1f7a5ull, 0xc2b2ae3d27d4eb4full,
                                     0x165667b19e3779f9ull, 0xd6e8feb86659fd93ull};

static uint64_t index_of(const struct cache__sketch *s, uint64_t hash, int row)
{
    uint64_t x = (hash ^ (hash >> 29)) * seeds[row];
    /* Each row has its own quarter of the counters, so two rows never share a counter. */
    return (uint64_t)row * (s->mask + 1) + ((x >> 32) & s->mask);
}

static uint64_t words_for(uint64_t entries)
{
    uint64_t w = 8;
    while (w < entries && w < (1ull << 36))
        w <<= 1;
    return w; /* 16 counters per word: 16 per entry */
}

void cache__sketch_init(struct cache__sketch *s, uint64_t entries)
{
    memset(s, 0, sizeof(*s));
    s->words = words_for(entries);
    s->mask = s->words * 16 / ROWS - 1;
    s->sample = entries * SAMPLE_PER_ENTRY;
    s->tab = mc_xcalloc(s->words, sizeof(*s->tab));
}

void cache__sketch_fini(struct cache__sketch *s)
{
    free(s->tab);
    memset(s, 0, sizeof(*s));
}

void cache__sketch_reserve(struct cache__sketch *s, uint64_t entries)
{
    uint64_t w = words_for(entries);

    s->sample = MC_MAX(s->sample, entries * SAMPLE_PER_ENTRY);
    if (w <= s->words)
        return;
    /* Counters cannot be re-homed (only hashes of the counters' owners would tell where),
     * so growing starts over; it doubles, and happens while the store is still filling. */
    free(s->tab);
    s->words = w;
    s->mask = w * 16 / ROWS - 1;
    s->adds = 0;
    s->tab = mc_xcalloc(w, sizeof(*s->tab));
}

static void age(struct cache__sketch *s)
{
    for (uint64_t i = 0; i < s->words; i++)
        s->tab[i] = (s->tab[i] >> 1) & 0x7777777777777777ull;
    s->adds /= 2;
}

uint32_t cache__sketch_add(struct cache__sketch *s, uint64_t hash, uint32_t n)
{
    uint32_t m = CACHE__SKETCH_MAX;

    for (int r = 0; r < ROWS; r++) {
        uint64_t i = index_of(s, hash, r), *w = &s->tab[i >> 4];
        unsigned sh = (unsigned)(i & 15) * 4;
        uint64_t c = MC_MIN(((*w >> sh) & 15) + n, CACHE__SKETCH_MAX);
        *w = (*w & ~(15ull << sh)) | c << sh;
        m = MC_MIN(m, (uint32_t)c);
    }
    s->adds += n;
    if (s->adds >= s->sample) {
        age(s);
        m >>= 1;
    }
    return m;
}

uint32_t cache__sketch_estimate(const struct cache__sketch *s, uint64_t hash)
{
    uint32_t m = 15;
    for (int r = 0; r < ROWS; r++) {
        uint64_t i = index_of(s, hash, r);
        uint32_t c = (uint32_t)(s->tab[i >> 4] >> ((i & 15) * 4)) & 15;
        m = MC_MIN(m, c);
    }
    return m;
}
