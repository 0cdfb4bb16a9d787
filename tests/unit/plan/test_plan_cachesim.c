/* tests/unit/plan/test_plan_cachesim.c: the trace reader, and `mlcdn cachesim`'s
 * simulator checked against straightforward reference simulations written here (arrays
 * and linear scans, no shared code with src/cache/): LRU, FIFO and Belady on a generated
 * trace with skew and sizes, plus a slice of a real trace when $MLCDN_SHARED names the
 * benchmark data (the unit tests never set it themselves). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "plan/plan.h"

/* ---- reference simulations: O(requests x capacity), obviously right ---- */

struct ref {
    uint64_t key[4096], size[4096], stamp[4096];
    int n;
};

static int ref_find(struct ref *r, uint64_t key)
{
    for (int i = 0; i < r->n; i++)
        if (r->key[i] == key)
            return i;
    return -1;
}

static void ref_del(struct ref *r, int i)
{
    r->n--;
    r->key[i] = r->key[r->n];
    r->size[i] = r->size[r->n];
    r->stamp[i] = r->stamp[r->n];
}

/* lru: evict the smallest last-use stamp; fifo: the smallest insertion stamp;
 * belady: the largest next-use index (needs `next`). */
static void ref_run(const struct plan_trace *t, const char *pol, uint64_t cap, int by_obj,
                    uint64_t *misses, uint64_t *miss_bytes)
{
    static struct ref r;
    uint64_t used = 0;
    uint64_t *next = calloc(t->nreq, sizeof(*next)), *last = malloc(t->nobj * sizeof(*last));

    memset(last, 0xff, t->nobj * sizeof(*last));
    for (uint64_t i = t->nreq; i-- > 0;) {
        next[i] = last[t->req_obj[i]];
        last[t->req_obj[i]] = i;
    }
    free(last);
    memset(&r, 0, sizeof(r));
    *misses = *miss_bytes = 0;
    for (uint64_t i = 0; i < t->nreq; i++) {
        uint64_t k = t->req_obj[i], sz = by_obj ? 1 : t->req_size[i];
        int at = ref_find(&r, k);
        if (at >= 0) {
            if (!strcmp(pol, "lru"))
                r.stamp[at] = i;
            if (!strcmp(pol, "belady"))
                r.stamp[at] = next[i];
            continue;
        }
        (*misses)++;
        *miss_bytes += t->req_size[i];
        if (sz > cap)
            continue;
        while (used + sz > cap) {
            int v = 0;
            for (int j = 1; j < r.n; j++)
                if (!strcmp(pol, "belady") ? r.stamp[j] > r.stamp[v] : r.stamp[j] < r.stamp[v])
                    v = j;
            used -= r.size[v];
            ref_del(&r, v);
        }
        r.key[r.n] = k;
        r.size[r.n] = sz;
        r.stamp[r.n] = !strcmp(pol, "belady") ? next[i] : i;
        r.n++;
        used += sz;
    }
    free(next);
}

static struct plan_trace *gen_trace(uint64_t nreq, int sized, unsigned seed)
{
    size_t cap = nreq * 32 + 32, len = 0;
    char *buf = malloc(cap), err[256];
    struct plan_trace *t = NULL;

    len += (size_t)snprintf(buf + len, cap - len, "t,key,size\n");
    srand(seed);
    for (uint64_t i = 0; i < nreq; i++) {
        /* a skewed popularity: a hot set, a warm set and a long tail */
        int r = rand() % 100, key;
        if (r < 50)
            key = rand() % 20;
        else if (r < 80)
            key = 20 + rand() % 200;
        else
            key = 220 + rand() % 2000;
        len += (size_t)snprintf(buf + len, cap - len, "%llu,k%d,%d\n", (unsigned long long)i, key,
                                sized ? 100 + (key * 37) % 900 : 1);
    }
    assert_int_equal(0, plan_trace_parse_csv(buf, len, "gen", &t, err, sizeof(err)));
    free(buf);
    return t;
}

static void check(const struct plan_trace *t, const char *pol, uint64_t cap, int by_obj)
{
    struct plan_sim_result got;
    uint64_t m, mb;

    if (!strcmp(pol, "belady"))
        assert_int_equal(0, plan_belady_run(t, cap, by_obj, &got));
    else
        assert_int_equal(0, plan_cachesim_run(t, pol, cap, by_obj, CACHE_POLICY_OBJECTS, &got));
    ref_run(t, pol, cap, by_obj, &m, &mb);
    assert_int_equal(t->nreq, got.requests);
    if (got.misses != m || got.miss_bytes != mb)
        fail_msg("%s cap %llu: simulator %llu misses (%llu bytes), reference %llu (%llu)", pol,
                 (unsigned long long)cap, (unsigned long long)got.misses,
                 (unsigned long long)got.miss_bytes, (unsigned long long)m, (unsigned long long)mb);
}

static void test_vs_reference_objects(void **state)
{
    struct plan_trace *t = gen_trace(20000, 0, 7);
    const uint64_t caps[] = {1, 5, 50, 300};

    for (size_t i = 0; i < 4; i++) {
        check(t, "lru", caps[i], 1);
        check(t, "fifo", caps[i], 1);
        check(t, "belady", caps[i], 1);
    }
    plan_trace_free(&t);
}

static void test_vs_reference_bytes(void **state)
{
    struct plan_trace *t = gen_trace(20000, 1, 11);
    const uint64_t caps[] = {500, 5000, 60000};

    assert_true(t->sized);
    for (size_t i = 0; i < 3; i++) {
        check(t, "lru", caps[i], 0);
        check(t, "fifo", caps[i], 0);
        check(t, "belady", caps[i], 0);
    }
    plan_trace_free(&t);
}

/* The adaptive default must not be worse than the simple policies by much on a skewed
 * trace, and never better than Belady. */
static void test_default_sane(void **state)
{
    struct plan_trace *t = gen_trace(50000, 0, 3);
    struct plan_sim_result d, l, b;

    assert_int_equal(0, plan_cachesim_run(t, "default", 100, 1, CACHE_POLICY_OBJECTS, &d));
    assert_int_equal(0, plan_cachesim_run(t, "lru", 100, 1, CACHE_POLICY_OBJECTS, &l));
    assert_int_equal(0, plan_belady_run(t, 100, 1, &b));
    assert_true(d.misses >= b.misses);
    assert_true(d.misses <= l.misses + l.requests / 100);
    assert_int_equal(-EINVAL, plan_cachesim_run(t, "nope", 100, 1, CACHE_POLICY_OBJECTS, &d));
    plan_trace_free(&t);
}

/* The replay reports the policy's metadata at its end: the node of each resident object,
 * plus the ghosts and sketch of the policies that keep them; nothing for Belady. */
static void test_meta_bytes(void **state)
{
    struct plan_trace *t = gen_trace(20000, 0, 7);
    struct plan_sim_result l, s, d, b;

    assert_int_equal(0, plan_cachesim_run(t, "lru", 100, 1, CACHE_POLICY_OBJECTS, &l));
    assert_int_equal(100, l.meta_objects);
    assert_int_equal(100 * sizeof(struct cache_pnode), l.meta_bytes);
    assert_int_equal(0, plan_cachesim_run(t, "s3fifo", 100, 1, CACHE_POLICY_OBJECTS, &s));
    assert_int_equal(0, plan_cachesim_run(t, "default", 100, 1, CACHE_POLICY_OBJECTS, &d));
    assert_true(s.meta_objects > 0 && d.meta_objects > 0);
    /* A ghost (s3fifo); two ghosts and a sketch (default). */
    assert_true(s.meta_bytes > s.meta_objects * sizeof(struct cache_pnode));
    assert_true(d.meta_bytes - d.meta_objects * sizeof(struct cache_pnode) >
                s.meta_bytes - s.meta_objects * sizeof(struct cache_pnode));
    assert_int_equal(0, plan_belady_run(t, 100, 1, &b));
    assert_int_equal(0, b.meta_bytes);
    assert_int_equal(0, b.meta_objects);
    plan_trace_free(&t);
}

/* Small hot objects, many moderately popular large ones and a tail of mixed sizes. */
static struct plan_trace *gen_mixed(uint64_t nreq, unsigned seed)
{
    size_t cap = nreq * 32 + 64, len = 0;
    char *buf = malloc(cap), err[256];
    struct plan_trace *t = NULL;

    len += (size_t)snprintf(buf + len, cap - len, "t,key,size\n");
    srand(seed);
    for (uint64_t i = 0; i < nreq; i++) {
        int r = rand() % 100, key, size;
        if (r < 45)
            key = rand() % 100, size = 100;
        else if (r < 75)
            key = 100 + rand() % 300, size = 4000;
        else
            key = 200 + rand() % 4000, size = 100 + (rand() % 10) * 100;
        len += (size_t)snprintf(buf + len, cap - len, "%llu,k%d,%d\n", (unsigned long long)i, key,
                                size);
    }
    assert_int_equal(0, plan_trace_parse_csv(buf, len, "mixed", &t, err, sizeof(err)));
    free(buf);
    return t;
}

static void test_objective(void **state)
{
    struct plan_trace *t = gen_mixed(60000, 5);
    struct plan_sim_result o, b, lo, lb;

    assert_int_equal(0, plan_cachesim_run(t, "default", 100000, 0, CACHE_POLICY_OBJECTS, &o));
    assert_int_equal(0, plan_cachesim_run(t, "default", 100000, 0, CACHE_POLICY_BYTES, &b));
    print_message("objects: %llu misses, %llu miss bytes; bytes: %llu, %llu\n",
                  (unsigned long long)o.misses, (unsigned long long)o.miss_bytes,
                  (unsigned long long)b.misses, (unsigned long long)b.miss_bytes);
    /* Keeping the small objects and letting a large one in only once it is asked for
     * often: clearly fewer object misses. */
    assert_true(o.misses + o.requests / 50 < b.misses);
    /* Policies without an objective replay the same either way. */
    assert_int_equal(0, plan_cachesim_run(t, "lru", 100000, 0, CACHE_POLICY_OBJECTS, &lo));
    assert_int_equal(0, plan_cachesim_run(t, "lru", 100000, 0, CACHE_POLICY_BYTES, &lb));
    assert_int_equal(lo.misses, lb.misses);
    /* The objective never does worse than LRU on its own measure here. */
    assert_true(o.misses <= lo.misses);
    assert_true(b.miss_bytes <= lo.miss_bytes);
    plan_trace_free(&t);
}

static void test_cli_objective(void **state)
{
    char dir[] = "/tmp/mlcdn-cachesim-XXXXXX", path[256];
    FILE *f;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/t.csv", dir);
    assert_non_null(f = fopen(path, "w"));
    fprintf(f, "t,key,size\n0,1,10\n1,2,20\n2,1,10\n");
    fclose(f);
    char *ok[] = {"cachesim", "--trace",     path,    "--size", "50%", "--policy",
                  "default",  "--objective", "bytes", "--json", NULL};
    assert_int_equal(0, cachesim_main(10, ok));
    char *ok2[] = {"cachesim", "--trace", path, "--size", "50%", "--objective", "objects", NULL};
    assert_int_equal(0, cachesim_main(7, ok2));
    char *bad[] = {"cachesim", "--trace", path, "--size", "50%", "--objective", "hits", NULL};
    assert_int_equal(2, cachesim_main(7, bad));
    char *missing[] = {"cachesim", "--trace", path, "--size", "50%", "--objective", NULL};
    assert_int_equal(2, cachesim_main(6, missing));
    assert_int_equal(0, unlink(path));
    assert_int_equal(0, rmdir(dir));
}

static void test_parse(void **state)
{
    struct plan_trace *t = NULL;
    char err[256];
    const char ok[] = "t,key,size\r\n0,a,10\r\n1,b,20\n2,a,10\n\n3,c\n";

    assert_int_equal(0, plan_trace_parse_csv(ok, strlen(ok), "x.csv", &t, err, sizeof(err)));
    assert_int_equal(4, t->nreq);
    assert_int_equal(3, t->nobj);
    assert_int_equal(31, t->unique_bytes);
    assert_int_equal(0, t->req_obj[0]);
    assert_int_equal(0, t->req_obj[2]);
    assert_int_equal(2, t->req_obj[3]);
    assert_int_equal(1, t->req_size[3]);
    assert_true(t->sized);
    plan_trace_free(&t);
    assert_null(t);

    const char bad[] = "0,a,10\n1,b,1x\n";
    assert_int_equal(-EINVAL,
                     plan_trace_parse_csv(bad, strlen(bad), "y.csv", &t, err, sizeof(err)));
    assert_null(t);
    assert_string_equal("y.csv:2: size is not a non-negative integer", err);
    const char bad2[] = "t,key,size\n0,a,1\nzz,b,1\n";
    assert_int_equal(-EINVAL, plan_trace_parse_csv(bad2, strlen(bad2), "z", &t, err, sizeof(err)));
    assert_string_equal("z:3: t is not a number", err);
    assert_int_equal(-ENOENT, plan_trace_load_csv("/nonexistent.csv", &t, err, sizeof(err)));
}

/* The first 20,000 requests of a real trace, when $MLCDN_SHARED points at the benchmark data. */
static void test_vs_reference_shared_trace(void **state)
{
    const char *shared = getenv("MLCDN_SHARED");
    char path[1024], err[512];
    struct plan_trace *t = NULL;

    if (shared == NULL)
        skip();
    snprintf(path, sizeof(path), "%s/traces/cache2k_web12.csv", shared);
    if (plan_trace_load_csv(path, &t, err, sizeof(err)) != 0)
        skip();
    t->nreq = 20000; /* a prefix is a valid trace */
    check(t, "lru", 137, 1);
    check(t, "fifo", 137, 1);
    check(t, "belady", 137, 1);
    plan_trace_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_vs_reference_objects),
        cmocka_unit_test(test_vs_reference_bytes),
        cmocka_unit_test(test_default_sane),
        cmocka_unit_test(test_meta_bytes),
        cmocka_unit_test(test_objective),
        cmocka_unit_test(test_cli_objective),
        cmocka_unit_test(test_vs_reference_shared_trace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
