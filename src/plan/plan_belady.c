/* src/plan/plan_belady.c: Belady's MIN, the offline reference line of `mlcdn cachesim`.
 *
 * A backward pass gives each request the index of the same object's next request; the
 * replay keeps resident objects in a max-heap by that index. Hits push a fresh entry and
 * leave the old one stale (detected against next_of[obj]), so every step is O(log n) and
 * the heap never holds more than one entry per request. Every miss is admitted (objects
 * larger than the cache excepted), as in the anchors' Belady. It needs the future, so it
 * lives here and not among the policies of src/cache/. */
#include <errno.h>
#include <stdlib.h>

#include "core/mc.h"
#include "core/units.h"
#include "plan/plan.h"

struct hent {
    uint64_t next;
    uint32_t obj;
};

static void heap_push(struct hent *h, uint64_t *n, struct hent e)
{
    uint64_t i = (*n)++;
    while (i > 0) {
        uint64_t parent = (i - 1) / 2;
        if (h[parent].next >= e.next)
            break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = e;
}

static struct hent heap_pop(struct hent *h, uint64_t *n)
{
    struct hent top = h[0], last = h[--(*n)];
    uint64_t i = 0;

    for (;;) {
        uint64_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && h[c + 1].next > h[c].next)
            c++;
        if (h[c].next <= last.next)
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0)
        h[i] = last;
    return top;
}

int plan_belady_run(const struct plan_trace *t, uint64_t capacity, int by_objects,
                    struct plan_sim_result *out)
{
    uint64_t *next = mc_xmalloc(t->nreq * sizeof(*next));
    uint64_t *last = mc_xmalloc(t->nobj * sizeof(*last));
    uint64_t *next_of = mc_xcalloc(t->nobj, sizeof(*next_of));
    uint64_t *size_of = mc_xcalloc(t->nobj, sizeof(*size_of));
    uint8_t *res = mc_xcalloc(t->nobj, 1);
    struct hent *heap = mc_xmalloc((t->nreq + 1) * sizeof(*heap));
    uint64_t hn = 0, used = 0, t0;
    struct plan_sim_result r = {0};

    for (uint64_t o = 0; o < t->nobj; o++)
        last[o] = UINT64_MAX; /* never requested again */
    for (uint64_t i = t->nreq; i-- > 0;) {
        next[i] = last[t->req_obj[i]];
        last[t->req_obj[i]] = i;
    }
    t0 = units_now_ns();
    for (uint64_t i = 0; i < t->nreq; i++) {
        uint32_t o = t->req_obj[i];
        uint64_t sz = by_objects ? 1 : t->req_size[i];

        r.requests++;
        r.bytes += t->req_size[i];
        if (res[o] && size_of[o] == sz) {
            next_of[o] = next[i];
            heap_push(heap, &hn, (struct hent){next[i], o});
            continue;
        }
        r.misses++;
        r.miss_bytes += t->req_size[i];
        if (res[o]) { /* size changed: the old copy goes */
            res[o] = 0;
            used -= size_of[o];
        }
        if (sz > capacity)
            continue;
        while (used + sz > capacity) {
            struct hent e = heap_pop(heap, &hn);
            if (!res[e.obj] || next_of[e.obj] != e.next)
                continue; /* stale */
            res[e.obj] = 0;
            used -= size_of[e.obj];
        }
        res[o] = 1;
        size_of[o] = sz;
        used += sz;
        next_of[o] = next[i];
        heap_push(heap, &hn, (struct hent){next[i], o});
    }
    r.seconds = (double)(units_now_ns() - t0) / 1e9;
    free(next);
    free(last);
    free(next_of);
    free(size_of);
    free(res);
    free(heap);
    *out = r;
    return 0;
}
