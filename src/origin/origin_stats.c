/* src/origin/origin_stats.c: request counters behind GET /__stats (see origin_int.h).
 *
 * Each worker thread owns one struct origin_stats and is the only writer of it; its mutex
 * is taken by that worker on every request (uncontended) and by whichever worker answers
 * /__stats or /__reset, which merges or clears every table in turn. Keys are copies of the
 * request path (as received, query excluded) and of the method token. */
#include "origin/origin_int.h"

#include <stdlib.h>
#include <string.h>

#include "core/mc.h"

#define OTHER_KEY "(other)"

static uint64_t hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a: short keys, no adversary worth more */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static void counts_fini(struct origin_counts *c)
{
    for (size_t i = 0; i < c->cap; i++)
        free(c->slots[i].key);
    free(c->slots);
    memset(c, 0, sizeof(*c));
}

static struct origin_count *counts_slot(struct origin_counts *c, const char *k, size_t klen)
{
    size_t mask = c->cap - 1, i = (size_t)hash(k, klen) & mask;
    while (c->slots[i].key && (c->slots[i].klen != klen || memcmp(c->slots[i].key, k, klen) != 0))
        i = (i + 1) & mask;
    return &c->slots[i];
}

static void counts_grow(struct origin_counts *c)
{
    struct origin_counts old = *c;

    c->cap = old.cap ? old.cap * 2 : 16;
    c->slots = mc_xcalloc(c->cap, sizeof(*c->slots));
    for (size_t i = 0; i < old.cap; i++) {
        if (!old.slots[i].key)
            continue;
        *counts_slot(c, old.slots[i].key, old.slots[i].klen) = old.slots[i];
    }
    free(old.slots);
}

/* Adds n to key, or to OTHER_KEY when the table already holds `max` keys. */
static void counts_add(struct origin_counts *c, const char *k, size_t klen, uint64_t n, size_t max)
{
    struct origin_count *s;

    if ((c->used + 1) * 4 > c->cap * 3)
        counts_grow(c);
    s = counts_slot(c, k, klen);
    if (!s->key) {
        if (c->used >= max && !(klen == strlen(OTHER_KEY) && !memcmp(k, OTHER_KEY, klen))) {
            counts_add(c, OTHER_KEY, strlen(OTHER_KEY), n, max + 1);
            return;
        }
        s->key = mc_xstrndup(k, klen);
        s->klen = klen;
        c->used++;
    }
    s->n += n;
}

void origin__stats_init(struct origin_stats *st)
{
    memset(st, 0, sizeof(*st));
    pthread_mutex_init(&st->mtx, NULL);
}

void origin__stats_fini(struct origin_stats *st)
{
    counts_fini(&st->paths);
    counts_fini(&st->methods);
    pthread_mutex_destroy(&st->mtx);
}

void origin__stats_add(struct origin_stats *st, const char *method, size_t mlen, const char *path,
                       size_t plen)
{
    pthread_mutex_lock(&st->mtx);
    st->total++;
    counts_add(&st->paths, path, plen, 1, ORIGIN_STATS_MAX_PATHS);
    counts_add(&st->methods, method, mlen, 1, ORIGIN_STATS_MAX_METHODS);
    pthread_mutex_unlock(&st->mtx);
}

void origin__stats_reset(struct origin_stats *st)
{
    pthread_mutex_lock(&st->mtx);
    st->total = 0;
    counts_fini(&st->paths);
    counts_fini(&st->methods);
    pthread_mutex_unlock(&st->mtx);
}

static void counts_json(struct buf *b, const struct origin_counts *c)
{
    int first = 1;

    buf_puts(b, "{");
    for (size_t i = 0; i < c->cap; i++) {
        if (!c->slots[i].key)
            continue;
        if (!first)
            buf_puts(b, ", ");
        first = 0;
        buf_json_str(b, c->slots[i].key, c->slots[i].klen);
        buf_printf(b, ": %llu", (unsigned long long)c->slots[i].n);
    }
    buf_puts(b, "}");
}

void origin__stats_json(struct origin_stats *st, size_t n, struct buf *b)
{
    struct origin_counts paths = {0}, methods = {0};
    uint64_t total = 0;

    /* Merged into private tables so no lock is held while formatting. */
    for (size_t k = 0; k < n; k++) {
        pthread_mutex_lock(&st[k].mtx);
        total += st[k].total;
        for (size_t i = 0; i < st[k].paths.cap; i++)
            if (st[k].paths.slots[i].key)
                counts_add(&paths, st[k].paths.slots[i].key, st[k].paths.slots[i].klen,
                           st[k].paths.slots[i].n, SIZE_MAX);
        for (size_t i = 0; i < st[k].methods.cap; i++)
            if (st[k].methods.slots[i].key)
                counts_add(&methods, st[k].methods.slots[i].key, st[k].methods.slots[i].klen,
                           st[k].methods.slots[i].n, SIZE_MAX);
        pthread_mutex_unlock(&st[k].mtx);
    }
    buf_printf(b, "{\"total\": %llu, \"requests\": ", (unsigned long long)total);
    counts_json(b, &paths);
    buf_puts(b, ", \"methods\": ");
    counts_json(b, &methods);
    buf_puts(b, "}\n");
    counts_fini(&paths);
    counts_fini(&methods);
}
