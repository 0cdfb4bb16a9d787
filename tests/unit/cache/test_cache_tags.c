/* tests/unit/cache/test_cache_tags.c: the tag index: tag lists (separators, duplicates),
 * take hands over exactly the tag's keys once, other tags keep theirs, and the bound
 * (the index starts over when full). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cache/cache_tags.h"

#define S(x) x, strlen(x)

struct seen {
    char keys[64][64];
    size_t n;
};

static void collect(void *arg, const char *s, size_t len)
{
    struct seen *c = arg;

    assert_true(c->n < 64 && len < 64);
    memcpy(c->keys[c->n], s, len);
    c->keys[c->n++][len] = '\0';
}

static int has(const struct seen *c, const char *k)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->keys[i], k) == 0)
            return 1;
    return 0;
}

static void test_each_splits_on_spaces_commas_tabs(void **state)
{
    struct seen c = {0};

    (void)state;
    cache_tags_each(S(" a,b  ,\tc,,d "), collect, &c);
    assert_int_equal(c.n, 4);
    assert_string_equal(c.keys[0], "a");
    assert_string_equal(c.keys[3], "d");
    c.n = 0;
    cache_tags_each(S(" , "), collect, &c);
    assert_int_equal(c.n, 0);
}

static void test_take_hands_over_exactly_the_tags_keys(void **state)
{
    struct cache_tags *t = cache_tags_new(1000);
    struct seen c = {0};

    (void)state;
    assert_int_equal(cache_tags_add(t, S("h/a"), S("model:ranker shard-1")), 2);
    assert_int_equal(cache_tags_add(t, S("h/b"), S("shard-2,model:ranker")), 2);
    assert_int_equal(cache_tags_add(t, S("h/c"), S("model:ranker-old")), 1);
    /* Listed once however often it is stored (each variant, each refresh). */
    assert_int_equal(cache_tags_add(t, S("h/a"), S("model:ranker model:ranker")), 0);
    assert_int_equal(cache_tags_add(t, S("h/d"), NULL, 0), 0);
    assert_int_equal(cache_tags_pairs(t), 5);

    assert_int_equal(cache_tags_take(t, S("model:ranker"), collect, &c), 2);
    assert_true(has(&c, "h/a") && has(&c, "h/b") && !has(&c, "h/c"));
    assert_int_equal(cache_tags_pairs(t), 3);
    /* Taken: a second purge of the tag finds nothing; a prefix of a tag is another tag. */
    c.n = 0;
    assert_int_equal(cache_tags_take(t, S("model:ranker"), collect, &c), 0);
    assert_int_equal(cache_tags_take(t, S("model:rank"), collect, &c), 0);
    assert_int_equal(c.n, 0);
    /* The other tags of the same keys are untouched. */
    assert_int_equal(cache_tags_take(t, S("shard-1"), collect, &c), 1);
    assert_string_equal(c.keys[0], "h/a");
    cache_tags_free(&t);
    assert_null(t);
}

static void test_many_keys_and_tags_grow_the_tables(void **state)
{
    struct cache_tags *t = cache_tags_new(100000);
    char key[32], tag[32];
    size_t n = 0;

    (void)state;
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "h/k%d", i);
        snprintf(tag, sizeof(tag), "all t%d", i % 50);
        cache_tags_add(t, key, strlen(key), tag, strlen(tag));
    }
    assert_int_equal(cache_tags_pairs(t), 4000);
    struct seen c = {0};
    assert_int_equal(cache_tags_take(t, S("t7"), collect, &c), 40);
    assert_true(has(&c, "h/k7") && has(&c, "h/k1957") && !has(&c, "h/k8"));
    for (int i = 0; i < 50; i++) {
        snprintf(tag, sizeof(tag), "t%d", i);
        c.n = 0;
        n += cache_tags_take(t, tag, strlen(tag), collect, &c);
    }
    assert_int_equal(n, 2000 - 40);
    assert_int_equal(cache_tags_pairs(t), 2000);
    cache_tags_free(&t);
}

static void test_full_index_starts_over(void **state)
{
    struct cache_tags *t = cache_tags_new(3);
    struct seen c = {0};

    (void)state;
    cache_tags_add(t, S("h/a"), S("x y z"));
    assert_int_equal(cache_tags_pairs(t), 3);
    assert_int_equal(cache_tags_resets(t), 0);
    cache_tags_add(t, S("h/b"), S("x"));
    assert_int_equal(cache_tags_resets(t), 1);
    assert_int_equal(cache_tags_pairs(t), 1);
    assert_int_equal(cache_tags_take(t, S("x"), collect, &c), 1);
    assert_string_equal(c.keys[0], "h/b");
    cache_tags_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_splits_on_spaces_commas_tabs),
        cmocka_unit_test(test_take_hands_over_exactly_the_tags_keys),
        cmocka_unit_test(test_many_keys_and_tags_grow_the_tables),
        cmocka_unit_test(test_full_index_starts_over),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
