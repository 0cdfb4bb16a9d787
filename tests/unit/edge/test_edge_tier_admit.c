/* tests/unit/edge/test_edge_tier_admit.c: a tier's hit enters L1 only when no purge ran
 * or runs since its lookup began (edge__tier_admit). The order a slow L2 read or Redis
 * answer meets a PURGE in: the lookup takes its mark, the purge clears L1 and L2 and
 * answers, then the read completes; its copy must not enter L1, where every later request
 * would be served the purged object. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "edge/edge_int.h"

#define KEY "h/a"

static struct cache_obj *obj(void)
{
    struct cache_body *b = cache_body_new_heap(4);
    assert_int_equal(cache_body_append(b, "old!", 4), 0);
    cache_body_finish(b, CACHE_BODY_COMPLETE);
    struct cache_obj *o = cache_obj_new(200, strdup("X-A: 1\r\n"), 8, b);
    o->stored_us = 1;
    return o;
}

static void test_admit_after_purge(void **state)
{
    struct edge *e = calloc(1, sizeof(*e));
    char err[256];
    (void)state;

    assert_int_equal(l1_new(1u << 20, "lru", CACHE_POLICY_OBJECTS, 1, &e->l1), 0);
    assert_int_equal(edge__inval_open(e, err, sizeof(err)), 0);

    /* A read began, a purge ran whole, the read completes: refused. */
    uint64_t mark = edge__tier_purge_mark(e);
    edge__tier_purge_begin(e);
    edge__tier_purge_end(e);
    struct cache_obj *o = obj();
    assert_int_equal(edge__tier_admit(e, mark, KEY, strlen(KEY), o), -ECANCELED);
    assert_int_equal(l1_objects(e->l1), 0);

    /* A purge still running (Redis not answered yet): refused too. */
    mark = edge__tier_purge_mark(e);
    edge__tier_purge_begin(e);
    assert_int_equal(edge__tier_admit(e, mark, KEY, strlen(KEY), o), -ECANCELED);
    edge__tier_purge_end(e);
    assert_int_equal(l1_objects(e->l1), 0);

    /* No purge since the lookup began: admitted. */
    mark = edge__tier_purge_mark(e);
    assert_int_equal(edge__tier_admit(e, mark, KEY, strlen(KEY), o), 0);
    assert_int_equal(l1_objects(e->l1), 1);

    cache_obj_unref(&o);
    edge__inval_close(e);
    l1_free(&e->l1);
    free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admit_after_purge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
