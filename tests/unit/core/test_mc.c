/* tests/unit/core/test_mc.c: the hex-digit helper and the lock-held assertions.
 *
 * A failed lock assertion aborts the process, so those cases run in a child and the test
 * checks that it died of SIGABRT. In release builds (no MLCDN_DEBUG) the assertions compile
 * to nothing: the test checks that their argument is not even evaluated. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/mc.h"

static void test_hexval(void **state)
{
    (void)state;
    for (int c = -128; c < 256; c++) {
        int want = -1;
        if (c >= '0' && c <= '9')
            want = c - '0';
        else if (c >= 'a' && c <= 'f')
            want = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            want = c - 'A' + 10;
        assert_int_equal(mc_hexval(c), want);
    }
    /* Bytes >= 0x80 as a (signed) char are not digits either. */
    const char hi[] = "\xb0\xc1\xe6";
    for (size_t i = 0; i < sizeof(hi) - 1; i++)
        assert_int_equal(mc_hexval(hi[i]), -1);
    assert_int_equal(mc_hexval('f') << 4 | mc_hexval('F'), 255);
}

static pthread_mutex_t g_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t g_rw = PTHREAD_RWLOCK_INITIALIZER;
static int g_evals;

static pthread_mutex_t *mtx_counted(void)
{
    g_evals++;
    return &g_mtx;
}

/* Runs fn in a child with stderr silenced; returns the signal it died of, or 0. */
static int child_signal(void (*fn)(void))
{
    int st;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0)
            dup2(fd, STDERR_FILENO);
        fn();
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}

static void assert_unlocked_mutex(void)
{
    mc_lock_assert_held(&g_mtx);
}

static void *hold_forever(void *arg)
{
    int *ready = arg;
    pthread_mutex_lock(&g_mtx);
    __atomic_store_n(ready, 1, __ATOMIC_RELEASE);
    for (;;)
        pause();
    return NULL;
}

static void assert_mutex_of_other_thread(void)
{
    pthread_t t;
    int ready = 0;

    pthread_create(&t, NULL, hold_forever, &ready);
    while (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE))
        sched_yield();
    mc_lock_assert_held(&g_mtx);
}

/* After fork, the child's thread is a new thread: its own locks must pass. */
static void assert_own_lock_in_child(void)
{
    pthread_mutex_lock(&g_mtx);
    mc_lock_assert_held(&g_mtx);
    pthread_mutex_unlock(&g_mtx);
}

static void assert_unlocked_rwlock(void)
{
    mc_rwlock_assert_held(&g_rw);
}

static void test_lock_assert_held(void **state)
{
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    struct timespec past = {0, 0};
    (void)state;

    /* Held by this thread: passes, also after a condition wait gave the lock back. */
    pthread_mutex_lock(&g_mtx);
    mc_lock_assert_held(&g_mtx);
    assert_int_equal(pthread_cond_timedwait(&cv, &g_mtx, &past), ETIMEDOUT);
    mc_lock_assert_held(&g_mtx);
    g_evals = 0;
    mc_lock_assert_held(mtx_counted());
    pthread_mutex_unlock(&g_mtx);
    pthread_rwlock_rdlock(&g_rw);
    mc_rwlock_assert_held(&g_rw);
    pthread_rwlock_unlock(&g_rw);
    pthread_rwlock_wrlock(&g_rw);
    mc_rwlock_assert_held(&g_rw);
    pthread_rwlock_unlock(&g_rw);
    assert_int_equal(child_signal(assert_own_lock_in_child), 0);
#ifdef MLCDN_DEBUG
    assert_int_equal(g_evals, 1);
    assert_int_equal(child_signal(assert_unlocked_mutex), SIGABRT);
    assert_int_equal(child_signal(assert_unlocked_rwlock), SIGABRT);
#if defined(__GLIBC__)
    /* Exact with glibc: a lock held by another thread is not ours. */
    assert_int_equal(child_signal(assert_mutex_of_other_thread), SIGABRT);
#else
    assert_int_equal(child_signal(assert_mutex_of_other_thread), 0);
#endif
#else
    /* Release: nothing evaluated, nothing checked. */
    assert_int_equal(g_evals, 0);
    assert_int_equal(child_signal(assert_unlocked_mutex), 0);
    assert_int_equal(child_signal(assert_unlocked_rwlock), 0);
    assert_int_equal(child_signal(assert_mutex_of_other_thread), 0);
#endif
    pthread_cond_destroy(&cv);
}

/* mc_u64_digits against printf at every power of ten and its neighbours, both ends of
 * the range, and a spread of values between. */
static void check_digits(uint64_t v)
{
    char got[24], want[24];
    size_t n = mc_u64_digits(v, got);

    snprintf(want, sizeof(want), "%" PRIu64, v);
    assert_int_equal(strlen(want), n);
    assert_memory_equal(want, got, n);
}

static void test_u64_digits(void **state)
{
    uint64_t p = 1, x = 0x9e3779b97f4a7c15ull;

    (void)state;
    check_digits(0);
    check_digits(UINT64_MAX);
    check_digits(UINT64_MAX - 1);
    for (int i = 0; i < 20; i++, p *= 10) {
        check_digits(p);
        check_digits(p - 1);
        check_digits(p + 1);
    }
    for (uint64_t v = 0; v < 100000; v++)
        check_digits(v);
    for (int i = 0; i < 100000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        check_digits(x >> (i % 64));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hexval),
        cmocka_unit_test(test_u64_digits),
        cmocka_unit_test(test_lock_assert_held),
    };
    return cmocka_run_group_tests_name("core_mc", tests, NULL, NULL);
}
