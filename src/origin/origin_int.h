/* src/origin/origin_int.h: the origin's pure helpers (paths, content types, .hdrs files,
 * validators) and its request counters, shared by origin.c and the unit tests. */
#ifndef MLCDN_ORIGIN_ORIGIN_INT_H
#define MLCDN_ORIGIN_ORIGIN_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* ---- paths ---- */

/* Turns a request path ("/a/%62/c") into a path relative to the root ("a/b/c"; "" for
 * the root itself): percent-decoded, empty and "." segments dropped. Returns 0 and writes
 * out (NUL-terminated); -EINVAL for a bad escape, a NUL byte, a ".." segment (also when
 * encoded) or a path not starting with '/'; -ENAMETOOLONG when it does not fit in out. */
int origin__path_clean(const char *path, size_t len, char *out, size_t outlen);
/* 1 when a cleaned path names something never served: a `.hdrs` file or a segment the
 * origin writes itself (".mlcdn-*" temporary files of PUT). */
int origin__path_hidden(const char *rel);
/* Content-Type for a file name, by extension (case-insensitive); never NULL. */
const char *origin__content_type(const char *name);

/* ---- .hdrs files: per-file response header overrides ---- */

#define ORIGIN_HDRS_MAX 32
#define ORIGIN_HDRS_FILE_MAX (16 * 1024)

struct origin_hdr {
    const char *name; /* points into the parsed text; not NUL-terminated */
    size_t nlen;
    const char *value;
    size_t vlen;
};

struct origin_hdrs {
    int status; /* from a "Status: NNN" line, 0 when absent */
    size_t n;
    struct origin_hdr h[ORIGIN_HDRS_MAX];
};

/* Parses "Name: value" lines (LF or CRLF; blank lines and lines starting with '#'
 * skipped). Entries point into text, which must outlive out. Lines that are not a valid
 * field (bad name, control characters in the value, a bad Status, too many lines) are
 * skipped; the return value is how many were skipped (0 when all were fine). Fields the
 * server owns (Content-Length, Transfer-Encoding, Connection, Date) are skipped too. */
int origin__hdrs_parse(const char *text, size_t len, struct origin_hdrs *out);

/* Appends "Name: value\r\n" for each default header whose name is not in over, then
 * every header of over (over may be NULL). defs[i] with a NULL value are left out.
 * Returns 0 or -E2BIG from the buffer. */
int origin__headers_build(struct buf *b, const char *const (*defs)[2], size_t ndefs,
                          const struct origin_hdrs *over);
/* Value of the first header `name` in over (case-insensitive), or NULL. */
const struct origin_hdr *origin__hdrs_find(const struct origin_hdrs *over, const char *name);

/* ---- validators and small parsers ---- */

/* Strong entity-tag from size, mtime (ns) and inode, quoted: "\"<size>-<mtime>-<ino>\"" in
 * hex. buf must hold 64 bytes; returns the length. */
size_t origin__etag(char *buf, uint64_t size, int64_t mtime_ns, uint64_t ino);
/* A latency: a bare integer is milliseconds ("250"), otherwise a duration ("250ms", "1s").
 * At most 10 minutes. Returns 0 or -EINVAL. */
int origin__latency_parse(const char *s, size_t len, uint64_t *ms);

/* ---- the model store (origin_models.c) ---- */

struct origin_model_path {
    char name[64];
    char version[16]; /* "" for the manifest */
    int manifest;     /* models/NAME/manifest.json */
    int index;        /* models/index.json, the store's list of models (name "") */
};

/* Classifies a cleaned path for a write: 0 when it is not under models/ (an ordinary
 * file), 1 when it is models/NAME/manifest.json or a file under models/NAME/VERSION/ (out
 * filled), -EINVAL with a message naming the NAME, VERSION or file at fault otherwise. */
int origin__model_path(const char *rel, struct origin_model_path *out, char *msg, size_t mlen);
/* Checks a manifest body for model `name`: a JSON object whose "name" (if any) is `name`
 * and whose "versions" is an object keyed by decimal versions. 0, or -EINVAL with a
 * message. */
int origin__manifest_check(const char *body, size_t len, const char *name, char *msg, size_t mlen);
/* Checks the store's index: {"models": [NAME, ...]}, each a valid model NAME. 0, or -EINVAL
 * with a message. */
int origin__index_check(const char *body, size_t len, char *msg, size_t mlen);

/* ---- request counters ---- */

/* One table per worker thread, each under its own mutex, so the hot path only takes an
 * uncontended lock; /__stats merges them. Paths beyond ORIGIN_STATS_MAX_PATHS distinct
 * ones are counted under "(other)", so a scan cannot grow memory without bound. */
#define ORIGIN_STATS_MAX_PATHS 65536
#define ORIGIN_STATS_MAX_METHODS 16

struct origin_count {
    char *key; /* owned, NUL-terminated */
    size_t klen;
    uint64_t n;
};

struct origin_counts {
    struct origin_count *slots; /* open addressing, power-of-two size */
    size_t cap, used;
};

struct origin_stats {
    pthread_mutex_t mtx;
    uint64_t total;
    struct origin_counts paths;
    struct origin_counts methods;
};

void origin__stats_init(struct origin_stats *st);
void origin__stats_fini(struct origin_stats *st);
/* Counts one request. */
void origin__stats_add(struct origin_stats *st, const char *method, size_t mlen, const char *path,
                       size_t plen);
void origin__stats_reset(struct origin_stats *st);
/* Merges n tables and appends {"total": N, "requests": {...}, "methods": {...}} to b. */
void origin__stats_json(struct origin_stats *st, size_t n, struct buf *b);

#endif
