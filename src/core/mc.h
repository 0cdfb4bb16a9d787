/* src/core/mc.h: invariants and control-struct allocation shared by every module.
 *
 * Long-lived structs that cross threads or callbacks carry a `magic` first field,
 * checked at function entry and zeroed on free, so a use-after-free or a wrong
 * pointer in callback-heavy code stops at once instead of corrupting memory.
 * Control structs (connections, requests, nodes) come from mc_xmalloc() and friends,
 * which abort on OOM; payload memory is budgeted by its owner and may fail. */
#ifndef MLCDN_CORE_MC_H
#define MLCDN_CORE_MC_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MC_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MC_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MC_MAX(a, b) ((a) > (b) ? (a) : (b))
#define MC_CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#if defined(__GNUC__)
#define MC_LIKELY(x) __builtin_expect(!!(x), 1)
#define MC_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define MC_NORETURN __attribute__((noreturn))
#define MC_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define MC_LIKELY(x) (x)
#define MC_UNLIKELY(x) (x)
#define MC_NORETURN
#define MC_PRINTF(a, b)
#endif

MC_NORETURN void mc__panic(const char *file, int line, const char *expr);

/* Always on: these guard invariants whose violation would corrupt the cache. */
#define MC_ASSERT(e)                                                                               \
    do {                                                                                           \
        if (MC_UNLIKELY(!(e)))                                                                     \
            mc__panic(__FILE__, __LINE__, #e);                                                     \
    } while (0)

#define MC_INIT_OBJ(o, m)                                                                          \
    do {                                                                                           \
        (o)->magic = (m);                                                                          \
    } while (0)
#define MC_CHECK_OBJ(o, m) MC_ASSERT((o)->magic == (m))
#define MC_CHECK_OBJ_NOTNULL(o, m) MC_ASSERT((o) != NULL && (o)->magic == (m))
/* Zeroes the struct (magic included) before freeing, and NULLs the pointer variable. */
#define MC_FREE_OBJ(o)                                                                             \
    do {                                                                                           \
        memset((o), 0, sizeof(*(o)));                                                              \
        free(o);                                                                                   \
        (o) = NULL;                                                                                \
    } while (0)

/* Lock invariants: a function documented as "called with X held" says so in code with
 * mc_lock_assert_held(&X) at its entry (Varnish Lck_AssertHeld). The check runs in the
 * debug builds (MLCDN_DEBUG: the sanitizer and fuzz builds, which run every unit and e2e
 * test) and compiles to nothing in release builds: a missing lock is a property of a code
 * path, which those runs cover, not of data that only production traffic could bring.
 * With glibc the mutex check is exact (held by the calling thread); elsewhere it only
 * proves that some thread holds the lock. The rwlock check is always of that weaker kind
 * (readers are not recorded), and passes for a read or a write hold. */
#ifdef MLCDN_DEBUG
void mc__lock_assert_held(pthread_mutex_t *m, const char *file, int line, const char *expr);
void mc__rwlock_assert_held(pthread_rwlock_t *l, const char *file, int line, const char *expr);
#define mc_lock_assert_held(m) mc__lock_assert_held((m), __FILE__, __LINE__, #m)
#define mc_rwlock_assert_held(l) mc__rwlock_assert_held((l), __FILE__, __LINE__, #l)
#else
/* Type-checked, never evaluated. */
#define mc_lock_assert_held(m) ((void)sizeof((m) == (pthread_mutex_t *)0))
#define mc_rwlock_assert_held(l) ((void)sizeof((l) == (pthread_rwlock_t *)0))
#endif

/* Abort on OOM: for control structs only. Caller frees with free(). */
void *mc_xmalloc(size_t n);
void *mc_xcalloc(size_t nmemb, size_t n);
void *mc_xrealloc(void *p, size_t n);
char *mc_xstrdup(const char *s);
char *mc_xstrndup(const char *s, size_t n);

/* Writes the decimal digits of v to out (at least 20 bytes, not NUL-terminated) and returns
 * how many: for hot paths where printf costs too much. */
size_t mc_u64_digits(uint64_t v, char *out);

/* The value of the hex digit c (0-9, a-f, A-F), or -1 for any other byte, negative
 * (signed char) values included. */
static inline int mc_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Constant-time compare of two byte strings (length leaks, content does not). */
int mc_consttime_eq(const void *a, size_t alen, const void *b, size_t blen);

#endif
