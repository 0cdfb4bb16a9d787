/* tests/unit/cache/test_cache_ban.c: the ban list: matching (prefix, glob, tags), the
 * time rule (only objects stored before a ban are banned), soft versus hard, expression
 * checks, retirement by the lurker's walks, the file (reload, a line cut by a crash, a
 * foreign file), and the insert gate waiting for open sections. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cache/cache_ban.h"

#define S(x) x, strlen(x)

static enum cache_ban_verdict check(struct cache_bans *b, const char *pq, const char *tags,
                                    int64_t t)
{
    return cache_bans_check(b, pq, strlen(pq), tags, tags ? strlen(tags) : 0, t, NULL);
}

static void test_glob(void **state)
{
    (void)state;
    assert_true(cache_ban_glob(S("/a/*/v1/*"), S("/a/x/y/v1/z.bin")));
    assert_true(cache_ban_glob(S("/a/*"), S("/a/")));
    assert_false(cache_ban_glob(S("/a/*"), S("/a")));
    assert_true(cache_ban_glob(S("/m?.bin"), S("/m1.bin")));
    assert_false(cache_ban_glob(S("/m?.bin"), S("/m12.bin")));
    assert_true(cache_ban_glob(S("*"), S("")));
    assert_true(cache_ban_glob(S("/x\\*y"), S("/x*y")));
    assert_false(cache_ban_glob(S("/x\\*y"), S("/xzy")));
    assert_true(cache_ban_glob(S("*.onnx?v=*"), S("/m/a.onnx?v=2")));
    assert_false(cache_ban_glob(S("/a/b"), S("/a/bc")));
    /* Many stars against a long miss: answered, no blow-up. */
    char s[2000];
    memset(s, 'a', sizeof(s));
    assert_false(cache_ban_glob(S("*a*a*a*a*a*a*a*b"), s, sizeof(s)));
}

static void test_match_kinds(void **state)
{
    (void)state;
    assert_true(cache_ban_match(CACHE_BAN_PREFIX, S("/models/r/"), S("/models/r/v1"), NULL, 0));
    assert_false(cache_ban_match(CACHE_BAN_PREFIX, S("/models/r/"), S("/models/r"), NULL, 0));
    assert_true(cache_ban_match(CACHE_BAN_TAG, S("model:r"), S("/x"), S(" a,model:r  b")));
    assert_true(cache_ban_match(CACHE_BAN_TAG, S("b"), S("/x"), S("a, b")));
    assert_false(cache_ban_match(CACHE_BAN_TAG, S("model:r"), S("/x"), S("model:r2 model:")));
    assert_false(cache_ban_match(CACHE_BAN_TAG, S("a"), S("/x"), NULL, 0));
    /* A tag prefix: any tag that starts with it, and only a whole tag's start. */
    assert_true(
        cache_ban_match(CACHE_BAN_TAG_PREFIX, S("prediction:r:"), S("/x"), S("a prediction:r:v3")));
    assert_true(
        cache_ban_match(CACHE_BAN_TAG_PREFIX, S("prediction:r:"), S("/x"), S("prediction:r:")));
    assert_false(cache_ban_match(CACHE_BAN_TAG_PREFIX, S("prediction:r:"), S("/x"),
                                 S("prediction:r prediction:r2:v1 xprediction:r:v1")));
    assert_false(cache_ban_match(CACHE_BAN_TAG_PREFIX, S("p:"), S("/x"), NULL, 0));
}

static void test_check_upto_and_soft_since(void **state)
{
    struct cache_bans *b = cache_bans_new();
    (void)state;

    cache_bans_add(b, CACHE_BAN_PREFIX, S("/a/"), 0, 100, NULL);
    cache_bans_add(b, CACHE_BAN_PREFIX, S("/b/"), 1, 200, NULL);
    cache_bans_add(b, CACHE_BAN_PREFIX, S("/c/"), 1, 300, NULL);
    /* Bans issued after upto are left out, whatever they say. */
    assert_int_equal(cache_bans_check_upto(b, S("/b/x"), NULL, 0, 50, 199, NULL), CACHE_BAN_NONE);
    assert_int_equal(cache_bans_check_upto(b, S("/b/x"), NULL, 0, 50, 200, NULL), CACHE_BAN_SOFT);
    assert_int_equal(cache_bans_check_upto(b, S("/a/x"), NULL, 0, 50, 199, NULL), CACHE_BAN_HARD);
    /* The oldest soft ban at or after a time. */
    assert_int_equal(cache_bans_soft_since(b, 0), 200);
    assert_int_equal(cache_bans_soft_since(b, 201), 300);
    assert_int_equal(cache_bans_soft_since(b, 301), 0);
    cache_bans_free(&b);
}

static void test_expr_check(void **state)
{
    const char *why = NULL;
    char big[CACHE_BAN_EXPR_MAX + 2];
    (void)state;

    assert_int_equal(cache_ban_expr_check(CACHE_BAN_PREFIX, S("/ok"), &why), 0);
    assert_int_equal(cache_ban_expr_check(CACHE_BAN_PREFIX, S("ok"), &why), -EINVAL);
    assert_string_equal(why, "a prefix starts with '/'");
    assert_int_equal(cache_ban_expr_check(CACHE_BAN_TAG, S("a b"), &why), -EINVAL);
    assert_int_equal(cache_ban_expr_check(CACHE_BAN_TAG, S("a,b"), &why), -EINVAL);
    assert_int_equal(cache_ban_expr_check(CACHE_BAN_TAG_PREFIX, S("a b:"), &why), -EINVAL);
    assert_int_equal(cache_ban_expr_check(CACHE_BAN_GLOB, S("/a\nb"), &why), -EINVAL);
    assert_int_equal(cache_ban_expr_check(CACHE_BAN_GLOB, "", 0, &why), -EINVAL);
    memset(big, 'a', sizeof(big));
    big[0] = '/';
    assert_int_equal(cache_ban_expr_check(CACHE_BAN_PREFIX, big, CACHE_BAN_EXPR_MAX + 1, &why),
                     -EINVAL);
    assert_int_equal(cache_ban_expr_check(CACHE_BAN_PREFIX, big, CACHE_BAN_EXPR_MAX, &why), 0);
}

static void test_time_rule_and_soft(void **state)
{
    struct cache_bans *b = cache_bans_new();
    int64_t t1, t2;
    enum cache_ban_kind kind;
    (void)state;

    assert_int_equal(check(b, "/a/x", NULL, 0), CACHE_BAN_NONE);
    assert_int_equal(cache_bans_add(b, CACHE_BAN_PREFIX, S("/a/"), 0, 1000, &t1), 0);
    assert_int_equal(t1, 1000);
    /* Stored before (or in the same microsecond as) the ban: banned; after: served. */
    assert_int_equal(check(b, "/a/x", NULL, 999), CACHE_BAN_HARD);
    assert_int_equal(check(b, "/a/x", NULL, 1000), CACHE_BAN_HARD);
    assert_int_equal(check(b, "/a/x", NULL, 1001), CACHE_BAN_NONE);
    assert_int_equal(check(b, "/b/x", NULL, 1), CACHE_BAN_NONE);
    /* A clock that went back: the list stays ordered. */
    assert_int_equal(cache_bans_add(b, CACHE_BAN_TAG, S("t1"), 1, 500, &t2), 0);
    assert_int_equal(t2, 1001);
    assert_int_equal(cache_bans_newest(b), 1001);
    assert_int_equal(cache_bans_check(b, S("/b"), S("t0 t1"), 1000, &kind), CACHE_BAN_SOFT);
    assert_int_equal(kind, CACHE_BAN_TAG);
    /* Hard wins over soft. */
    assert_int_equal(check(b, "/a/x", "t1", 10), CACHE_BAN_HARD);
    assert_int_equal(cache_bans_add(b, CACHE_BAN_GLOB, S("bad\x01"), 0, 2000, NULL), -EINVAL);
    assert_int_equal(cache_bans_count(b), 2);
    cache_bans_free(&b);
    assert_null(b);
}

static void test_retire_after_walk_and_keep(void **state)
{
    struct cache_bans *b = cache_bans_new();
    (void)state;

    cache_bans_add(b, CACHE_BAN_PREFIX, S("/a"), 0, 100, NULL);
    cache_bans_add(b, CACHE_BAN_PREFIX, S("/b"), 0, 200, NULL);
    cache_bans_add(b, CACHE_BAN_PREFIX, S("/c"), 0, 300, NULL);
    /* Nothing retires before a walk. */
    assert_int_equal(cache_bans_retire(b, 1000000, 0), 0);
    cache_bans_walked(b, 200, 5000);
    /* Walked, but kept for keep_us after the walk. */
    assert_int_equal(cache_bans_retire(b, 5999, 1000), 0);
    assert_int_equal(cache_bans_retire(b, 6000, 1000), 2);
    assert_int_equal(cache_bans_count(b), 1);
    assert_int_equal(check(b, "/a", NULL, 0), CACHE_BAN_NONE);
    assert_int_equal(check(b, "/c", NULL, 0), CACHE_BAN_HARD);
    /* A later walk does not move the time of an earlier one. */
    cache_bans_walked(b, 300, 7000);
    cache_bans_walked(b, 300, 9000);
    assert_int_equal(cache_bans_retire(b, 7000, 0), 1);
    assert_int_equal(cache_bans_count(b), 0);
    cache_bans_free(&b);
}

static char tmpdir[64];

static void path_in_tmp(char *out, size_t n, const char *name)
{
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/inval-test-XXXXXX");
        assert_non_null(mkdtemp(tmpdir));
    }
    snprintf(out, n, "%s/%s", tmpdir, name);
}

static void test_file_survives_reload(void **state)
{
    char path[128], err[256];
    struct cache_bans *b = cache_bans_new();
    (void)state;

    path_in_tmp(path, sizeof(path), "bans");
    unlink(path);
    assert_int_equal(cache_bans_attach(b, path, err, sizeof(err)), 0);
    cache_bans_add(b, CACHE_BAN_PREFIX, S("/a/"), 0, 100, NULL);
    cache_bans_add(b, CACHE_BAN_GLOB, S("/m/*.onnx"), 1, 200, NULL);
    cache_bans_add(b, CACHE_BAN_TAG, S("model:x"), 0, 300, NULL);
    cache_bans_add(b, CACHE_BAN_TAG_PREFIX, S("model:y:"), 0, 350, NULL);
    cache_bans_free(&b);

    /* A crash while appending leaves a line without its end: it is not a ban. */
    FILE *f = fopen(path, "a");
    fputs("400 p 0 /half", f);
    fclose(f);
    b = cache_bans_new();
    assert_int_equal(cache_bans_attach(b, path, err, sizeof(err)), 0);
    assert_int_equal(cache_bans_count(b), 4);
    assert_int_equal(check(b, "/a/z", NULL, 99), CACHE_BAN_HARD);
    assert_int_equal(check(b, "/z", "model:y:v2", 320), CACHE_BAN_HARD);
    assert_int_equal(check(b, "/z", "model:y", 320), CACHE_BAN_NONE);
    assert_int_equal(check(b, "/m/q.onnx", NULL, 150), CACHE_BAN_SOFT);
    assert_int_equal(check(b, "/z", "model:x", 250), CACHE_BAN_HARD);
    assert_int_equal(check(b, "/half", NULL, 0), CACHE_BAN_NONE);
    /* Retiring rewrites the file: the retired bans do not come back. */
    cache_bans_walked(b, 200, 1);
    assert_int_equal(cache_bans_retire(b, 1, 0), 2);
    cache_bans_free(&b);
    b = cache_bans_new();
    assert_int_equal(cache_bans_attach(b, path, err, sizeof(err)), 0);
    assert_int_equal(cache_bans_count(b), 2);
    assert_int_equal(check(b, "/a/z", NULL, 0), CACHE_BAN_NONE);
    cache_bans_free(&b);

    /* A file that is not a ban list is refused, naming it. */
    f = fopen(path, "w");
    fputs("hello\n", f);
    fclose(f);
    b = cache_bans_new();
    assert_int_equal(cache_bans_attach(b, path, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, path));
    cache_bans_free(&b);
    unlink(path);
    rmdir(tmpdir);
}

/* An "all" ban: every object stored before it, whatever its key and tags (a key with no
 * path at all, which no prefix matches, included), none stored after; kept in the file. */
static void test_all_ban(void **state)
{
    char dir[64] = "/tmp/inval-all-XXXXXX", path[128], err[256];
    const char *why = NULL;
    struct cache_bans *b = cache_bans_new();
    (void)state;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/bans", dir);

    assert_true(cache_ban_match(CACHE_BAN_ALL, S("*"), "", 0, NULL, 0));
    assert_false(cache_ban_match(CACHE_BAN_PREFIX, S("/"), "", 0, NULL, 0));
    assert_int_equal(cache_ban_expr_check(CACHE_BAN_ALL, S("*"), &why), 0);
    assert_int_equal(cache_ban_expr_check(CACHE_BAN_ALL, S("/"), &why), -EINVAL);
    assert_int_equal(cache_bans_attach(b, path, err, sizeof(err)), 0);
    assert_int_equal(cache_bans_add(b, CACHE_BAN_ALL, S("*"), 0, 500, NULL), 0);
    cache_bans_free(&b);
    b = cache_bans_new();
    assert_int_equal(cache_bans_attach(b, path, err, sizeof(err)), 0);
    assert_int_equal(cache_bans_count(b), 1);
    assert_int_equal(check(b, "", NULL, 499), CACHE_BAN_HARD);
    assert_int_equal(check(b, "/predict", "prediction:m:v1", 10), CACHE_BAN_HARD);
    assert_int_equal(check(b, "/a", NULL, 501), CACHE_BAN_NONE);
    cache_bans_free(&b);
    unlink(path);
    rmdir(dir);
}

static void test_bans_max(void **state)
{
    struct cache_bans *b = cache_bans_new();
    (void)state;

    for (unsigned i = 0; i < CACHE_BANS_MAX; i++)
        assert_int_equal(cache_bans_add(b, CACHE_BAN_TAG, S("t"), 0, i + 1, NULL), 0);
    assert_int_equal(cache_bans_add(b, CACHE_BAN_TAG, S("t"), 0, 0, NULL), -ENOSPC);
    cache_bans_free(&b);
}

struct gate_arg {
    struct cache_bans *b;
    atomic_int entered, release, exited;
};

static void *gate_holder(void *p)
{
    struct gate_arg *a = p;
    unsigned tok = cache_bans_gate_enter(a->b);
    atomic_store(&a->entered, 1);
    while (!atomic_load(&a->release))
        usleep(1000);
    atomic_store(&a->exited, 1);
    cache_bans_gate_exit(a->b, tok);
    return NULL;
}

static void *gate_releaser(void *p)
{
    struct gate_arg *a = p;
    usleep(20000);
    atomic_store(&a->release, 1);
    return NULL;
}

static void test_gate_sync_waits_for_open_sections(void **state)
{
    struct gate_arg a = {.b = cache_bans_new()};
    pthread_t th, rel;
    (void)state;

    /* No section open: returns at once; a section entered after a sync does not hold
     * back the next one only because it exists. */
    cache_bans_gate_sync(a.b);
    unsigned tok = cache_bans_gate_enter(a.b);
    cache_bans_gate_exit(a.b, tok);
    cache_bans_gate_sync(a.b);

    pthread_create(&th, NULL, gate_holder, &a);
    while (!atomic_load(&a.entered))
        usleep(1000);
    pthread_create(&rel, NULL, gate_releaser, &a);
    cache_bans_gate_sync(a.b);
    /* The section open at the call has exited by the time sync returns. */
    assert_int_equal(atomic_load(&a.exited), 1);
    pthread_join(th, NULL);
    pthread_join(rel, NULL);
    cache_bans_free(&a.b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_glob),
        cmocka_unit_test(test_match_kinds),
        cmocka_unit_test(test_expr_check),
        cmocka_unit_test(test_check_upto_and_soft_since),
        cmocka_unit_test(test_time_rule_and_soft),
        cmocka_unit_test(test_retire_after_walk_and_keep),
        cmocka_unit_test(test_file_survives_reload),
        cmocka_unit_test(test_all_ban),
        cmocka_unit_test(test_bans_max),
        cmocka_unit_test(test_gate_sync_waits_for_open_sections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
