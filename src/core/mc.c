/* src/core/mc.c: panic and aborting allocators (see mc.h). */
#include "core/mc.h"

#include <stdio.h>
#include <stdlib.h>
#ifdef MLCDN_DEBUG
#include <sys/syscall.h>
#include <unistd.h>
#endif

void mc__panic(const char *file, int line, const char *expr)
{
    fprintf(stderr, "level=fatal msg=\"assertion failed\" expr=\"%s\" at=%s:%d\n", expr, file,
            line);
    abort();
}

static void *oom(size_t n)
{
    fprintf(stderr, "level=fatal msg=\"out of memory\" bytes=%zu\n", n);
    abort();
}

void *mc_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    return p ? p : oom(n);
}

void *mc_xcalloc(size_t nmemb, size_t n)
{
    void *p = calloc(nmemb ? nmemb : 1, n ? n : 1);
    return p ? p : oom(nmemb * n);
}

void *mc_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    return q ? q : oom(n);
}

char *mc_xstrdup(const char *s)
{
    return mc_xstrndup(s, strlen(s));
}

char *mc_xstrndup(const char *s, size_t n)
{
    char *d = mc_xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

int mc_consttime_eq(const void *a, size_t alen, const void *b, size_t blen)
{
    const unsigned char *x = a, *y = b;
    unsigned char diff = (unsigned char)(alen != blen);
    size_t n = alen < blen ? alen : blen;
    for (size_t i = 0; i < n; i++)
        diff |= x[i] ^ y[i];
    return diff == 0;
}

/* The count first (compares, no division), then two digits per division, written in
 * place from the end: every response head takes a few (status, lengths, Age). */
size_t mc_u64_digits(uint64_t v, char *out)
{
    static const char pairs[] = "00010203040506070809101112131415161718192021222324"
                                "25262728293031323334353637383940414243444546474849"
                                "50515253545556575859606162636465666768697071727374"
                                "75767778798081828384858687888990919293949596979899";
    size_t n = 1, i;

    for (uint64_t p = 10; n < 20 && v >= p; p *= 10)
        n++;
    i = n;
    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        i -= 2;
        out[i] = pairs[2 * r];
        out[i + 1] = pairs[2 * r + 1];
    }
    if (v >= 10) {
        out[0] = pairs[2 * v];
        out[1] = pairs[2 * v + 1];
    } else {
        out[0] = (char)('0' + v);
    }
    return n;
}

#ifdef MLCDN_DEBUG
static MC_NORETURN void lock_panic(const char *file, int line, const char *what, const char *expr)
{
    char msg[256];

    snprintf(msg, sizeof(msg), "%s(%s)", what, expr);
    mc__panic(file, line, msg);
}

#if defined(__GLIBC__)
static _Thread_local pid_t cached_tid;
static pthread_once_t tid_once = PTHREAD_ONCE_INIT;

/* A forked child starts with the forking thread's copy of cached_tid, which names the
 * parent's thread: the child forgets it. */
static void forget_tid(void)
{
    cached_tid = 0;
}

static void tid_init(void)
{
    pthread_atfork(NULL, NULL, forget_tid);
}

static pid_t self_tid(void)
{
    if (cached_tid == 0) {
        pthread_once(&tid_once, tid_init);
        cached_tid = (pid_t)syscall(SYS_gettid);
    }
    return cached_tid;
}
#endif

void mc__lock_assert_held(pthread_mutex_t *m, const char *file, int line, const char *expr)
{
#if defined(__GLIBC__)
    /* glibc writes the owner's kernel thread id into __data.__owner on every lock of every
     * mutex kind (lock elision, off unless the glibc.elision.enable tunable is set, would
     * skip it), clears it on unlock, and restores it when pthread_cond_wait returns. */
    if (*(volatile int *)&m->__data.__owner != self_tid())
        lock_panic(file, line, "mc_lock_assert_held", expr);
#else
    if (pthread_mutex_trylock(m) == 0) {
        pthread_mutex_unlock(m);
        lock_panic(file, line, "mc_lock_assert_held", expr);
    }
#endif
}

void mc__rwlock_assert_held(pthread_rwlock_t *l, const char *file, int line, const char *expr)
{
    /* Fails (EBUSY, or EDEADLK for our own write hold) whenever anyone holds it. */
    if (pthread_rwlock_trywrlock(l) == 0) {
        pthread_rwlock_unlock(l);
        lock_panic(file, line, "mc_rwlock_assert_held", expr);
    }
}
#endif
