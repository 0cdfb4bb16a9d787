/* src/core/log.h: levelled key=value logging to stderr.
 *
 * One line per event, `ts=... level=... msg="..." k=v ...`, written with a single
 * write() so lines from several worker threads never interleave. Library code
 * returns errors; only daemons' top levels (and request logging) call these. */
#ifndef MLCDN_CORE_LOG_H
#define MLCDN_CORE_LOG_H

#include "core/mc.h"

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };

/* The level called name ("debug"...), or -EINVAL for an unknown name. */
int log_level_parse(const char *name);
/* Sets the minimum level printed. Returns -EINVAL for an unknown name. */
int log_level_set_name(const char *name);
void log_level_set(enum log_level lvl);
enum log_level log_level_get(void);

/* Sends log lines to the file `path` (appended, created 0644) instead of the original
 * stderr: the file becomes the process's standard error, so a library writing there lands
 * in it too. Returns 0 or -errno (stderr unchanged). */
int log_file_open(const char *path);
/* Opens the file of log_file_open() again (after logrotate renamed it). Returns 0 (also
 * when no file was set), or -errno with the old file still in use. */
int log_file_reopen(void);

/* `fmt` is the rest of the line after msg, usually key=value pairs. */
void log_emit(enum log_level lvl, const char *msg, const char *fmt, ...) MC_PRINTF(3, 4);

#define log_debug(msg, ...)                                                                        \
    do {                                                                                           \
        if (log_level_get() <= LOG_DEBUG)                                                          \
            log_emit(LOG_DEBUG, msg, __VA_ARGS__);                                                 \
    } while (0)
#define log_info(msg, ...) log_emit(LOG_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...) log_emit(LOG_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) log_emit(LOG_ERROR, msg, __VA_ARGS__)

#endif
