/* src/core/accesslog.h: the access log (one line per answered request), written off the
 * request path.
 *
 * A struct accesslog is one destination (a file, stdout or syslog) and one writer thread.
 * Each thread that logs (a worker loop) gets its own struct accesslog_local: a line is
 * formatted straight into that thread's buffer under its own, uncontended mutex; the
 * writer swaps the buffer out every 200 ms or as soon as it is half full, and writes it
 * with one write(2). Memory is bounded: when the buffer is full (the disk is not keeping
 * up) the line is dropped and counted (accesslog_dropped, and on /metrics
 * mlcdn_access_log_dropped_lines_total), the request never waits.
 *
 * Formats: "combined" (Apache/nginx combined log format with mlcdn's fields appended as
 * key=value pairs) and "json" (one JSON object per line); docs/operations.md shows both.
 * Lifetimes: the accesslog owns its locals; they live until accesslog_free(). */
#ifndef MLCDN_CORE_ACCESSLOG_H
#define MLCDN_CORE_ACCESSLOG_H

#include <stddef.h>
#include <stdint.h>

struct accesslog;       /* opaque; accesslog_open() / accesslog_free() */
struct accesslog_local; /* opaque; one per logging thread, owned by the accesslog */

enum accesslog_format { ACCESSLOG_COMBINED, ACCESSLOG_JSON };

/* One request. Strings with a length need not be NUL-terminated; NULL or empty ones are
 * written as "-" (combined) or left out / null (json). Durations are microseconds, -1 when
 * unknown. Everything is borrowed for the duration of the call. */
struct accesslog_rec {
    const char *client;   /* peer address */
    const char *listener; /* "public", "admin", "http" */
    const char *method;
    size_t method_len;
    const char *target; /* request-target as received */
    size_t target_len;
    int http_minor;
    int http2; /* the request came over HTTP/2 (then http_minor is not used) */
    int status;
    uint64_t bytes; /* body bytes sent */
    const char *referer;
    size_t referer_len;
    const char *user_agent;
    size_t user_agent_len;
    const char *cache;   /* HIT, MISS, STALE, BYPASS... */
    const char *level;   /* L1, L2, REDIS, PARENT, ORIGIN */
    int64_t ttfb_us;     /* head complete -> first response byte handed to the socket */
    int64_t total_us;    /* head complete -> last response byte handed to the socket */
    int64_t upstream_us; /* time spent waiting for an upstream (origin, edge), or -1 */
    const char *model;   /* predictions: model name, else NULL */
    int64_t version;     /* predictions: model version, else -1 */
    int incomplete;      /* the response did not go out whole (client gone, aborted) */
};

/* Targets longer than this are logged as their first ACCESSLOG_TARGET_KEEP bytes, "...",
 * and a hash of the whole target (so that long keys stay greppable, lines stay short). */
#define ACCESSLOG_TARGET_MAX 2048
#define ACCESSLOG_TARGET_KEEP 256

/* `dest`: a file path (appended to, created 0644), "-" for stdout, "syslog" for syslog(3)
 * (facility LOG_DAEMON, ident "mlcdn", priority info). `format`: "combined" or "json".
 * `buf_bytes` is each thread's buffer (0: 256 KiB). Returns 0 and a running writer in
 * *out, or -EINVAL (unknown format) / -errno of open(2) with a message naming the flag. */
int accesslog_open(const char *dest, const char *format, size_t buf_bytes, struct accesslog **out,
                   char *err, size_t errlen);
/* Writes what is buffered, stops the writer, closes the file; *alp becomes NULL (NULL is
 * fine). No thread may log any more. */
void accesslog_free(struct accesslog **alp);
/* Asks the writer to reopen the file (logrotate: rename, then signal): what was logged
 * before the call goes to the old file, later lines to the new one. Any thread; returns
 * at once. A no-op for stdout and syslog. */
void accesslog_reopen(struct accesslog *al);
/* Number of reopens done so far (tests wait on it). */
uint64_t accesslog_reopens(const struct accesslog *al);
/* Writes everything buffered so far before returning (tests, shutdown). Any thread. */
void accesslog_flush(struct accesslog *al);

/* The calling thread's buffer; call once per thread and keep it. */
struct accesslog_local *accesslog_local_new(struct accesslog *al);
/* Formats r into the thread's buffer; never blocks on I/O. */
void accesslog_write(struct accesslog_local *l, const struct accesslog_rec *r);

/* Lines dropped because a buffer was full, and lines written (all threads). */
uint64_t accesslog_dropped(const struct accesslog *al);
uint64_t accesslog_lines(const struct accesslog *al);

/* The logging settings every daemon takes: --access-log, --access-log-format, --error-log
 * (config file: access_log, access_log_format, error_log). */
struct accesslog_opts {
    const char *access_log; /* NULL or "": no access log */
    const char *format;     /* NULL: combined */
    const char *error_log;  /* NULL or "": stderr stays */
};
/* Opens the error log file and the access log as `o` asks; *out is NULL when there is no
 * access log. Returns 0, or a negative errno with a message naming the flag. */
int accesslog_setup(const struct accesslog_opts *o, struct accesslog **out, char *err,
                    size_t errlen);
/* SIGUSR1: reopens the access log (al may be NULL) and the error log file, and says so in
 * the error log. */
void accesslog_reopen_all(struct accesslog *al);

/* Formats one line (with its '\n') into out[0..cap); returns its length, or 0 when it did
 * not fit. Pure: the unit tests and accesslog_write use it. `now_us`: wall clock. */
size_t accesslog_format(enum accesslog_format fmt, const struct accesslog_rec *r, int64_t now_us,
                        char *out, size_t cap);

#endif
