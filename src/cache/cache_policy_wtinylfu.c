/* src/cache/cache_policy_wtinylfu.c: W-TinyLFU (Einziger, Friedman and Manes, "TinyLFU: a
 * highly efficient cache admission policy", 2017; Caffeine's policy), the frequency-based
 * reference line beside LRU.
 *
 * A window LRU of 1 % of the capacity takes every newcomer. What the window pushes out is
 * a candidate for the main cache, a segmented LRU (probation, then protected: 80 % of the
 * main cache, reached by a hit on probation). While the main cache has room the candidate
 * joins its probation segment; else it contends with probation's least recent object and
 * the one a TinyLFU sketch (cache_policy_sketch.c, 4-bit count-min with aging, counting
 * every request) has seen more often stays; a tie keeps the resident. Hits move nodes in
 * their lists, so, as with LRU, hits are not safe under concurrent hits
 * (cache_policy_hit_concurrent() returns 0). It exists for comparison and for `mlcdn
 * cachesim`; the sizes are the paper's and Caffeine's starting values (Caffeine then
 * adapts the window; this does not). */
#include "cache/cache_policy_int.h"

#define Q_WINDOW 1
#define Q_PROBATION 2
#define Q_PROTECTED 3

struct wtinylfu {
    struct cache_policy base;
    struct cache__list window, probation, protected;
    struct cache__sketch sk;
    uint64_t window_max, protected_max;
};

static void wt_bounds(struct wtinylfu *w)
{
    uint64_t cap = w->base.capacity;

    w->window_max = MC_MAX(cap / 100, 1);
    w->protected_max = (cap - MC_MIN(w->window_max, cap)) / 10 * 8;
}

static void wt_init(struct cache_policy *p)
{
    struct wtinylfu *w = (struct wtinylfu *)p;

    cache__list_init(&w->window);
    cache__list_init(&w->probation);
    cache__list_init(&w->protected);
    cache__sketch_init(&w->sk, 64);
    wt_bounds(w);
}

static void wt_fini(struct cache_policy *p)
{
    cache__sketch_fini(&((struct wtinylfu *)p)->sk);
}

static struct cache__list *list_of(struct wtinylfu *w, const struct cache__pn *n)
{
    return n->q == Q_WINDOW ? &w->window : n->q == Q_PROBATION ? &w->probation : &w->protected;
}

static enum cache_policy_admit wt_admit(struct cache_policy *p, struct cache__pn *n)
{
    cache__sketch_add(&((struct wtinylfu *)p)->sk, n->hash, 1);
    return CACHE_POLICY_ADMITTED;
}

/* Moves n (linked) to the newest end of the list of queue q (its own, to refresh it). */
static void move_to(struct wtinylfu *w, struct cache__pn *n, int q)
{
    cache__list_del(list_of(w, n), n);
    n->q = (uint8_t)q;
    cache__list_push(list_of(w, n), n);
}

static int main_has_room(const struct wtinylfu *w, uint64_t size)
{
    uint64_t main_max = w->base.capacity - MC_MIN(w->window_max, w->base.capacity);

    return w->probation.used + w->protected.used + size <= main_max;
}

static void wt_link(struct cache_policy *p, struct cache__pn *n)
{
    struct wtinylfu *w = (struct wtinylfu *)p;
    struct cache__pn *c;

    n->q = Q_WINDOW;
    cache__list_push(&w->window, n);
    /* The window keeps its share while the main cache has room: what it pushes out joins
     * probation, where a hit protects it. Once the main cache is full, candidates wait in
     * the window and contend at eviction (below). */
    while (w->window.used > w->window_max && (c = cache__list_oldest(&w->window)) != n &&
           main_has_room(w, c->size))
        move_to(w, c, Q_PROBATION);
    if (p->count > w->sk.words) /* sized with the resident count, as the default's */
        cache__sketch_reserve(&w->sk, p->count + p->count / 2);
}

/* A hit refreshes the node in its list; one on probation earns the protected segment,
 * whose least recent objects go back to probation while it is over its share. */
static void wt_hit(struct cache_policy *p, struct cache__pn *n)
{
    struct wtinylfu *w = (struct wtinylfu *)p;
    struct cache__pn *d;

    cache__sketch_add(&w->sk, n->hash, 1);
    if (n->q == 0) /* the newcomer, not linked yet */
        return;
    if (n->q != Q_PROBATION) {
        move_to(w, n, n->q);
        return;
    }
    move_to(w, n, Q_PROTECTED);
    while (w->protected.used > w->protected_max && (d = cache__list_oldest(&w->protected)) != n)
        move_to(w, d, Q_PROBATION);
}

/* The main cache's next victim: probation's least recent, else protected's. */
static struct cache__pn *main_oldest(struct wtinylfu *w)
{
    struct cache__pn *v = cache__list_oldest(&w->probation);

    return v != NULL ? v : cache__list_oldest(&w->protected);
}

static struct cache__pn *take(struct wtinylfu *w, struct cache__pn *v)
{
    cache__list_del(list_of(w, v), v);
    v->q = 0;
    return v;
}

static struct cache__pn *wt_evict(struct cache_policy *p)
{
    struct wtinylfu *w = (struct wtinylfu *)p;
    struct cache__pn *c, *v;

    /* Candidates leave the window until it has room for the newcomer within its share, or
     * until one of them, or the main cache's victim it contended with, is out. */
    while (w->window.used + (p->pending != NULL ? p->pending->size : 0) > w->window_max &&
           (c = cache__list_oldest(&w->window)) != NULL) {
        if (main_has_room(w, c->size)) {
            move_to(w, c, Q_PROBATION);
            continue;
        }
        v = main_oldest(w);
        if (v == NULL ||
            cache__sketch_estimate(&w->sk, c->hash) <= cache__sketch_estimate(&w->sk, v->hash))
            return take(w, c);
        take(w, v);
        move_to(w, c, Q_PROBATION);
        return v;
    }
    if ((v = main_oldest(w)) != NULL)
        return take(w, v);
    return (v = cache__list_oldest(&w->window)) != NULL ? take(w, v) : NULL;
}

static void wt_unlink(struct cache_policy *p, struct cache__pn *n)
{
    take((struct wtinylfu *)p, n);
}

static void wt_resize(struct cache_policy *p)
{
    wt_bounds((struct wtinylfu *)p);
}

static uint64_t wt_side_bytes(const struct cache_policy *p)
{
    return cache__sketch_bytes(&((const struct wtinylfu *)p)->sk);
}

const struct cache__policy_ops cache__policy_wtinylfu = {
    .name = "wtinylfu",
    .size = sizeof(struct wtinylfu),
    .hit_concurrent = 0,
    .init = wt_init,
    .fini = wt_fini,
    .admit = wt_admit,
    .link = wt_link,
    .evict = wt_evict,
    .hit = wt_hit,
    .unlink = wt_unlink,
    .resize = wt_resize,
    .side_bytes = wt_side_bytes,
};
