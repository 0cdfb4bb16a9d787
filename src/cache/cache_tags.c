/* src/cache/cache_tags.c: the tag index (see cache_tags.h).
 *
 * Two levels of chained hash tables (XXH3-64 of the text): tags, and per tag the set of
 * its primary keys. Both double when their load passes one. One mutex guards all of it;
 * adds happen at stores (once per object, not per hit) and takes at tag purges, so it is
 * not contended like a lookup path would be. A take unhooks the tag's set under the lock
 * and walks it after, so the callback may lock the stores. */
#include "cache/cache_tags.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "core/mc.h"

#define CACHE_TAGS_MAGIC 0x54414753u

struct node {
    struct node *next;
    uint64_t h;
    size_t len;
    /* A tag's node heads its key set; a key's node leaves these zero. */
    struct node **kb;
    size_t kcap, nkeys;
    char s[]; /* len bytes, NUL-terminated */
};

struct cache_tags {
    unsigned magic;
    pthread_mutex_t mtx;
    struct node **tb; /* tags (mtx) */
    size_t tcap, ntags, pairs, max_pairs;
    uint64_t resets;
};

static struct node *node_new(const char *s, size_t len, uint64_t h)
{
    struct node *n = mc_xcalloc(1, sizeof(*n) + len + 1);

    n->h = h;
    n->len = len;
    memcpy(n->s, s, len);
    return n;
}

/* Finds s in buckets b[0..cap) (cap a power of two); the link that points at it or at
 * the chain's end. */
static struct node **find(struct node **b, size_t cap, const char *s, size_t len, uint64_t h)
{
    struct node **pp = &b[h & (cap - 1)];

    while (*pp && !((*pp)->h == h && (*pp)->len == len && memcmp((*pp)->s, s, len) == 0))
        pp = &(*pp)->next;
    return pp;
}

static void grow(struct node ***bp, size_t *capp)
{
    size_t cap = *capp, ncap = cap ? cap * 2 : 16;
    struct node **nb = mc_xcalloc(ncap, sizeof(*nb));

    for (size_t i = 0; i < cap; i++) {
        struct node *n = (*bp)[i], *next;
        for (; n; n = next) {
            next = n->next;
            n->next = nb[n->h & (ncap - 1)];
            nb[n->h & (ncap - 1)] = n;
        }
    }
    free(*bp);
    *bp = nb;
    *capp = ncap;
}

static void chain_free(struct node **b, size_t cap)
{
    for (size_t i = 0; i < cap; i++) {
        struct node *n = b[i], *next;
        for (; n; n = next) {
            next = n->next;
            if (n->kb)
                chain_free(n->kb, n->kcap);
            free(n);
        }
    }
    free(b);
}

struct cache_tags *cache_tags_new(size_t max_pairs)
{
    struct cache_tags *t = mc_xcalloc(1, sizeof(*t));

    MC_INIT_OBJ(t, CACHE_TAGS_MAGIC);
    pthread_mutex_init(&t->mtx, NULL);
    t->max_pairs = max_pairs ? max_pairs : 1;
    return t;
}

void cache_tags_free(struct cache_tags **tp)
{
    struct cache_tags *t = *tp;

    if (!t)
        return;
    MC_CHECK_OBJ(t, CACHE_TAGS_MAGIC);
    chain_free(t->tb, t->tcap);
    pthread_mutex_destroy(&t->mtx);
    MC_FREE_OBJ(t);
    *tp = NULL;
}

static int is_sep(char c)
{
    return c == ' ' || c == ',' || c == '\t';
}

void cache_tags_each(const char *tags, size_t tlen, cache_tags_each_f *fn, void *arg)
{
    size_t i = 0;

    while (i < tlen) {
        while (i < tlen && is_sep(tags[i]))
            i++;
        size_t s = i;
        while (i < tlen && !is_sep(tags[i]))
            i++;
        if (i > s)
            fn(arg, tags + s, i - s);
    }
}

struct add_ctx {
    struct cache_tags *t;
    const char *pkey;
    size_t plen;
    uint64_t kh;
    size_t added;
};

static void add_one(void *arg, const char *tag, size_t len)
{
    struct add_ctx *c = arg;
    struct cache_tags *t = c->t;
    uint64_t h = XXH3_64bits(tag, len);

    mc_lock_assert_held(&t->mtx);
    if (t->pairs >= t->max_pairs) {
        /* Full: start over. What is forgotten is still found by the tag's ban. */
        chain_free(t->tb, t->tcap);
        t->tb = NULL;
        t->tcap = t->ntags = t->pairs = 0;
        t->resets++;
    }
    if (t->ntags >= t->tcap)
        grow(&t->tb, &t->tcap);
    struct node **pp = find(t->tb, t->tcap, tag, len, h);
    if (!*pp) {
        *pp = node_new(tag, len, h);
        t->ntags++;
    }
    struct node *tn = *pp;
    if (tn->nkeys >= tn->kcap)
        grow(&tn->kb, &tn->kcap);
    struct node **kp = find(tn->kb, tn->kcap, c->pkey, c->plen, c->kh);
    if (*kp)
        return;
    *kp = node_new(c->pkey, c->plen, c->kh);
    tn->nkeys++;
    t->pairs++;
    c->added++;
}

size_t cache_tags_add(struct cache_tags *t, const char *pkey, size_t plen, const char *tags,
                      size_t tlen)
{
    struct add_ctx c = {t, pkey, plen, XXH3_64bits(pkey, plen), 0};

    MC_CHECK_OBJ_NOTNULL(t, CACHE_TAGS_MAGIC);
    if (!tags || tlen == 0)
        return 0;
    pthread_mutex_lock(&t->mtx);
    cache_tags_each(tags, tlen, add_one, &c);
    pthread_mutex_unlock(&t->mtx);
    return c.added;
}

size_t cache_tags_take(struct cache_tags *t, const char *tag, size_t tlen, cache_tags_key_f *fn,
                       void *arg)
{
    struct node *tn = NULL;
    size_t n = 0;

    MC_CHECK_OBJ_NOTNULL(t, CACHE_TAGS_MAGIC);
    pthread_mutex_lock(&t->mtx);
    if (t->tcap) {
        struct node **pp = find(t->tb, t->tcap, tag, tlen, XXH3_64bits(tag, tlen));
        tn = *pp;
        if (tn) {
            *pp = tn->next;
            t->ntags--;
            t->pairs -= tn->nkeys;
        }
    }
    pthread_mutex_unlock(&t->mtx);
    if (!tn)
        return 0;
    for (size_t i = 0; i < tn->kcap; i++)
        for (struct node *k = tn->kb[i]; k; k = k->next, n++)
            fn(arg, k->s, k->len);
    chain_free(tn->kb, tn->kcap);
    free(tn);
    return n;
}

size_t cache_tags_pairs(struct cache_tags *t)
{
    pthread_mutex_lock(&t->mtx);
    size_t n = t->pairs;
    pthread_mutex_unlock(&t->mtx);
    return n;
}

uint64_t cache_tags_resets(struct cache_tags *t)
{
    pthread_mutex_lock(&t->mtx);
    uint64_t n = t->resets;
    pthread_mutex_unlock(&t->mtx);
    return n;
}
