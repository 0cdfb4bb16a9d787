/* src/cache/cache_policy_fifo.c: first in, first out, and CLOCK (FIFO with reinsertion).
 *
 * FIFO ignores hits. CLOCK keeps FIFO order but gives a node that was hit since it last
 * reached the tail another round at the head (one reference bit, as in the classic
 * second-chance algorithm); a hit only sets the bit, so hits run concurrently. */
#include "cache/cache_policy_int.h"

struct fifo {
    struct cache_policy base;
    struct cache__list q;
};

static void fifo_init(struct cache_policy *p)
{
    cache__list_init(&((struct fifo *)p)->q);
}

static void fifo_fini(struct cache_policy *p)
{
}

static enum cache_policy_admit fifo_admit(struct cache_policy *p, struct cache__pn *n)
{
    return CACHE_POLICY_ADMITTED;
}

static void fifo_link(struct cache_policy *p, struct cache__pn *n)
{
    n->q = 1;
    cache__list_push(&((struct fifo *)p)->q, n);
}

static struct cache__pn *fifo_evict(struct cache_policy *p)
{
    struct fifo *f = (struct fifo *)p;
    struct cache__pn *v = cache__list_oldest(&f->q);

    if (v != NULL) {
        cache__list_del(&f->q, v);
        v->q = 0;
    }
    return v;
}

static void fifo_hit(struct cache_policy *p, struct cache__pn *n)
{
}

static void fifo_unlink(struct cache_policy *p, struct cache__pn *n)
{
    cache__list_del(&((struct fifo *)p)->q, n);
    n->q = 0;
}

static struct cache__pn *clock_evict(struct cache_policy *p)
{
    struct fifo *f = (struct fifo *)p;
    struct cache__pn *v;

    /* A concurrent hit may set a bit again behind the scan, so one full round bounds it. */
    for (uint64_t scanned = 0; (v = cache__list_oldest(&f->q)) != NULL; scanned++) {
        if (cache__freq(v) == 0 || scanned > f->q.count)
            break;
        cache__freq_set(v, 0);
        cache__list_del(&f->q, v);
        cache__list_push(&f->q, v);
    }
    if (v != NULL) {
        cache__list_del(&f->q, v);
        v->q = 0;
    }
    return v;
}

static void clock_hit(struct cache_policy *p, struct cache__pn *n)
{
    cache__freq_bump(n, 1);
}

const struct cache__policy_ops cache__policy_fifo = {
    .name = "fifo",
    .size = sizeof(struct fifo),
    .hit_concurrent = 1,
    .init = fifo_init,
    .fini = fifo_fini,
    .admit = fifo_admit,
    .link = fifo_link,
    .evict = fifo_evict,
    .hit = fifo_hit,
    .unlink = fifo_unlink,
};

const struct cache__policy_ops cache__policy_clock = {
    .name = "clock",
    .size = sizeof(struct fifo),
    .hit_concurrent = 1,
    .init = fifo_init,
    .fini = fifo_fini,
    .admit = fifo_admit,
    .link = fifo_link,
    .evict = clock_evict,
    .hit = clock_hit,
    .unlink = fifo_unlink,
};
