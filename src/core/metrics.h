/* src/core/metrics.h: process-wide metrics registry, exported in Prometheus text format.
 *
 * Series are registered once (usually at start-up) and updated lock-free with relaxed
 * atomics from any thread. A series is identified by its family name and its label set
 * (rendered text like `tier="L1",status="hit"`); registering the same pair twice returns
 * the same series. Series live until metrics_reset() (tests) or process exit; callers
 * keep plain pointers and never free them. Series that describe something gone (a model
 * removed) are hidden from the export (metrics_hide_label), not freed.
 *
 * Histograms are log-linear: 8 linear sub-buckets per power of two over integer values
 * (microseconds, bytes, rows...), so any quantile is within 12.5% of the true value at
 * constant memory. Export divides by `scale` (1e6 turns microseconds into seconds). */
#ifndef MLCDN_CORE_METRICS_H
#define MLCDN_CORE_METRICS_H

#include <stdint.h>

#include "core/buf.h"

struct metrics_counter;
struct metrics_gauge;
struct metrics_hist;

struct metrics_counter *metrics_counter(const char *name, const char *help, const char *labels);
void metrics_counter_add(struct metrics_counter *c, uint64_t n);
uint64_t metrics_counter_get(const struct metrics_counter *c);

struct metrics_gauge *metrics_gauge(const char *name, const char *help, const char *labels);
void metrics_gauge_set(struct metrics_gauge *g, double v);
void metrics_gauge_add(struct metrics_gauge *g, double d);
double metrics_gauge_get(const struct metrics_gauge *g);

/* Gauge whose value is read by a callback at render time (e.g. bytes in a store). The
 * callback runs on the rendering thread and must be thread-safe. */
typedef double metrics_read_f(void *arg);
void metrics_gauge_fn(const char *name, const char *help, const char *labels, metrics_read_f *fn,
                      void *arg);
/* Counter kept elsewhere (e.g. by a library with its own stats), read at render time. */
void metrics_counter_fn(const char *name, const char *help, const char *labels, metrics_read_f *fn,
                        void *arg);

/* `scale`: exported value = raw / scale. Buckets are exported between `lo` and `hi`
 * (raw units), two per power of two, plus +Inf. */
struct metrics_hist *metrics_hist(const char *name, const char *help, const char *labels,
                                  double scale, uint64_t lo, uint64_t hi);
void metrics_hist_observe(struct metrics_hist *h, uint64_t v);
uint64_t metrics_hist_count(const struct metrics_hist *h);
/* Approximate quantile (0..1) in raw units, 0 when empty. */
uint64_t metrics_hist_quantile(const struct metrics_hist *h, double q);

/* Standalone histogram, not registered (benchmarks, per-edge windows). Owned by the
 * caller: metrics_hist_free(). */
struct metrics_hist *metrics_hist_new_local(void);
void metrics_hist_free(struct metrics_hist *h);
void metrics_hist_merge(struct metrics_hist *dst, const struct metrics_hist *src);

/* Registers mlcdn_build_info{version,commit} (value 1) and the Prometheus client
 * conventions' process_* series (CPU seconds, resident memory, open and max descriptors,
 * start time), read from /proc/self at render time. Once per process. */
void metrics_process_register(const char *version, const char *commit);

/* Appends `s` to out as the inside of a label value: backslash, double quote and line
 * feed escaped as the exposition format requires. Returns 0 or -E2BIG. */
int metrics_label_esc(struct buf *out, const char *s);

/* Takes every series whose label set holds name="value" (value as rendered, already
 * escaped) out of the export, e.g. the series of a model that was removed: they are no
 * longer rendered (nor their callbacks called; a family left without a series is not
 * rendered either), and series registered later with that pair start hidden. Pointers to
 * them stay valid and updates are kept, unseen. metrics_show_label() undoes it (the
 * model is back), values included. */
void metrics_hide_label(const char *name, const char *value);
void metrics_show_label(const char *name, const char *value);

/* Appends every family in Prometheus text exposition format 0.0.4. */
int metrics_render(struct buf *out);
/* Drops every series (tests only; no series may be in use). */
void metrics_reset(void);

#endif
