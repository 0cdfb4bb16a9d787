/* src/ctl/ctl_look.h: what `mlcdn ctl stats`, `top` and `plot` share (internal to src/ctl):
 * finding the edges (--router or --edges) and reading each one's admin API (GET /metrics,
 * GET /admin/models), all edges in parallel with libcurl's multi interface.
 *
 * Ownership: a struct look owns its edges and everything in them; look_free(). */
#ifndef MLCDN_CTL_CTL_LOOK_H
#define MLCDN_CTL_CTL_LOOK_H

#include <jansson.h>
#include <stdint.h>

#include "core/edgestat.h"

#define LOOK_MAX_EDGES 256

struct look_edge {
    char name[128];
    char admin[512];         /* admin base URL, no trailing slash */
    int ok;                  /* the last sample was read */
    char err[320];           /* why not, when !ok */
    int64_t t_us, t_prev_us; /* monotonic times of cur and prev (0: none yet) */
    struct edgestat cur, prev;
    int have_prev;
    json_t *models; /* GET /admin/models "models" array of the last sample, or NULL */
};

struct look {
    char router[512]; /* --router, or "" */
    char token[512];
    long timeout_ms;
    size_t n;
    struct look_edge e[LOOK_MAX_EDGES];
};

/* The common flags of the look commands: --router URL | --edges URL,... , --token T (or env
 * MLCDN_ADMIN_TOKEN), --timeout MS. Consumes argv[*i] (and its value) when it is one of them:
 * returns 1; 0 when it is not; -EINVAL with err naming the flag. */
int look_flag(struct look *l, int argc, char **argv, int *i, char *err, size_t errlen);

/* After the flags: asks the router for its edges (GET ROUTER/edges: each edge's health URL
 * less its "/health" is its admin URL), or checks the --edges list. Returns 0 or -errno
 * with err set (no source given, router unreachable, empty list). */
int look_resolve(struct look *l, char *err, size_t errlen);

/* Reads every edge once (in parallel); previous samples move to prev. An edge that fails
 * keeps ok = 0 and err. Returns the number of edges read. */
size_t look_sample(struct look *l);

/* The activity of edge e between its last two samples (seconds > 0), or its counters since
 * it started (seconds = 0) when there is one sample. */
void look_window(const struct look_edge *e, struct edgestat *out, double *seconds);

/* Formats bytes (1.5K, 20M...) and seconds (850us, 12ms, 1.2s) into short fixed forms. */
void look_fmt_bytes(char *out, size_t n, double bytes);
void look_fmt_secs(char *out, size_t n, double secs);
/* "name@version" of each active model, comma-separated, from /admin/models ("-" if none). */
void look_models_text(const struct look_edge *e, char *out, size_t n);

void look_free(struct look *l);

/* Commands (ctl_main.c's table). */
int ctl_stats_main(int argc, char **argv);
void ctl_stats_usage(void);
int ctl_plot_main(int argc, char **argv);
void ctl_plot_usage(void);
int ctl_top_main(int argc, char **argv);
void ctl_top_usage(void);

#endif
