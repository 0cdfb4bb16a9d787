/* src/core/log.c: see log.h. */
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static _Atomic int min_level = LOG_INFO;
static const char *const names[] = {"debug", "info", "warn", "error", "off"};

int log_level_parse(const char *name)
{
    for (size_t i = 0; i < MC_ARRAY_SIZE(names); i++)
        if (strcmp(name, names[i]) == 0)
            return (int)i;
    return -EINVAL;
}

int log_level_set_name(const char *name)
{
    int lvl = log_level_parse(name);
    if (lvl < 0)
        return lvl;
    atomic_store(&min_level, lvl);
    return 0;
}

void log_level_set(enum log_level lvl)
{
    atomic_store(&min_level, (int)lvl);
}

enum log_level log_level_get(void)
{
    return (enum log_level)atomic_load_explicit(&min_level, memory_order_relaxed);
}

void log_emit(enum log_level lvl, const char *msg, const char *fmt, ...)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    size_t n;
    int k;
    va_list ap;

    if ((int)lvl < atomic_load_explicit(&min_level, memory_order_relaxed))
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
    k = snprintf(line + n, sizeof(line) - n, ".%03ldZ level=%s msg=\"%s\" ", ts.tv_nsec / 1000000L,
                 names[lvl], msg);
    if (k > 0)
        n = MC_MIN(n + (size_t)k, sizeof(line) - 2);
    va_start(ap, fmt);
    k = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    if (k > 0)
        n = MC_MIN(n + (size_t)k, sizeof(line) - 2);
    line[n++] = '\n';
    /* One write per line keeps lines whole across threads; a failed log write is not
     * worth failing a request for, so the result is ignored on purpose. */
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}

static pthread_mutex_t file_mtx = PTHREAD_MUTEX_INITIALIZER;
static char *file_path; /* file_mtx */

static int open_onto_stderr(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    /* dup2 swaps the descriptor atomically: a line written meanwhile goes to one file or
     * the other, never nowhere. */
    int rc = dup2(fd, STDERR_FILENO) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

int log_file_open(const char *path)
{
    int rc = open_onto_stderr(path);
    if (rc == 0) {
        pthread_mutex_lock(&file_mtx);
        free(file_path);
        file_path = mc_xstrdup(path);
        pthread_mutex_unlock(&file_mtx);
    }
    return rc;
}

int log_file_reopen(void)
{
    int rc = 0;
    pthread_mutex_lock(&file_mtx);
    if (file_path)
        rc = open_onto_stderr(file_path);
    pthread_mutex_unlock(&file_mtx);
    return rc;
}
