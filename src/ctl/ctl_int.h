/* src/ctl/ctl_int.h: what the `mlcdn ctl` subcommands share (internal to src/ctl).
 *
 *  - ctl_fanout(): one HTTP request to N base URLs in parallel (libcurl multi), with
 *    retries, a bearer token, and per-target status, answer and elapsed time. It blocks the
 *    calling thread until every target answered or gave up: ctl is a command-line client.
 *  - the control stream (Redis Streams): ctl__stream_send() adds one operation to the
 *    stream the edges read and waits for their acknowledgements (docs/internals/control.md).
 *  - the target flags every command takes: --router URL | --edges URL,... | --redis URL,
 *    --token T (or MLCDN_ADMIN_TOKEN). */
#ifndef MLCDN_CTL_CTL_INT_H
#define MLCDN_CTL_CTL_INT_H

#include <stddef.h>
#include <stdint.h>

#include "core/conf.h"

#define CTL_MAX_TARGETS 256

/* One request sent to every target. Strings are borrowed for the call. */
struct ctl_call {
    const char *method; /* "POST", "GET", "PUT"... */
    const char *path;   /* appended to each base URL, e.g. "/admin/invalidate" */
    const char *body;   /* sent as application/json; NULL: none */
    size_t len;
    const char *token; /* Authorization: Bearer TOKEN; NULL: none */
    long timeout_ms;   /* per attempt (connect and answer); 0: 2000 */
    int retries;       /* more attempts after no answer or a 5xx; backoff 25 ms doubling */
    int answer_final;  /* any answer ends the target, a 5xx too (only no answer is retried):
                        * for a target that already retried behind it (the router) */
};

/* What one target answered (the last attempt). */
struct ctl_reply {
    int status; /* HTTP status; 0: no answer (see error) */
    char *body; /* owned, NUL-terminated ("" when empty); ctl_replies_fini frees it */
    size_t len;
    double ms; /* from the start of ctl_fanout to this answer (or the last failure) */
    int attempts;
    char error[256]; /* why there is no answer, or "" */
};

/* Sends c to bases[0..n) (each "http://HOST:PORT", without a trailing slash needed) in
 * parallel and fills out[0..n). Returns 0 once every target ended (each reply says how),
 * or -ENOMEM / -EINVAL (n over CTL_MAX_TARGETS) before anything was sent. */
int ctl_fanout(const struct ctl_call *c, const char *const *bases, size_t n, struct ctl_reply *out);
void ctl_replies_fini(struct ctl_reply *r, size_t n);

/* The target flags. Strings are borrowed from the struct conf they were parsed into. */
struct ctl_target {
    const char *router; /* the router's admin URL */
    const char *edges;  /* comma-separated edge admin URLs */
    const char *redis;  /* redis:// URL of the control stream */
    const char *stream; /* stream key (default mlcdn:control) */
    const char *token;
    uint64_t timeout_ms; /* how long to wait for every edge (default 5 s) */
    long retries;
};
#define CTL_TARGET_NOPTS 7
/* Writes the options of struct ctl_target into opts (CTL_TARGET_NOPTS of them). */
size_t ctl__target_opts(struct ctl_target *t, struct conf_opt *opts);
/* Defaults (token from MLCDN_ADMIN_TOKEN). */
void ctl__target_init(struct ctl_target *t);
/* Exactly one of --router, --edges, --redis, each well formed. 0, or -EINVAL with err
 * naming the flag. */
int ctl__target_check(const struct ctl_target *t, char *err, size_t errlen);
/* Splits --edges into owned base URLs (trailing '/' removed). 0, or -EINVAL with err. On
 * success *out is an array of *n strings; ctl__strv_free frees it. */
int ctl__edges_split(const char *list, char ***out, size_t *n, char *err, size_t errlen);
void ctl__strv_free(char **v, size_t n);

/* An operation id: 16 hex digits, random. */
void ctl__op_id(char out[17]);
/* Milliseconds since the epoch. */
int64_t ctl__now_ms(void);

/* One edge's acknowledgement of a stream operation. */
struct ctl_ack {
    char edge[64];
    int status;       /* what the edge's handler answered (200 applied) */
    double ms;        /* from the XADD to the acknowledgement arriving (ctl's clock) */
    int acked;        /* 0: no acknowledgement within the timeout */
    char detail[256]; /* the handler's answer (trimmed) */
};

/* Adds {kind, body, id, t} to stream `key` on Redis `url` and waits up to timeout_ms for
 * an acknowledgement from every edge registered in KEY:edges. On return *acks (owned,
 * free()) holds one entry per registered edge (and any that acknowledged without being
 * registered) and *nacks their number. Returns 0, or -EINVAL / -ECONNREFUSED / -EIO with
 * err saying why nothing could be sent. */
int ctl__stream_send(const char *url, const char *key, const char *kind, const char *body,
                     const char *id, uint64_t timeout_ms, struct ctl_ack **acks, size_t *nacks,
                     char *err, size_t errlen);

/* An edge registered on a control stream (KEY:edges) and what it last wrote there: a JSON
 * object {"last": stream id applied, "t": wall ms, "models": {...} when it serves
 * predictions}, refreshed at least once a second while it is connected. */
struct ctl_stream_edge {
    char name[64];
    char *value; /* owned */
};

/* Every edge of stream `key` on Redis `url`: *out (owned: ctl__stream_edges_free), *n.
 * 0, or -EINVAL / -ECONNREFUSED / -EIO with err. */
int ctl__stream_edges(const char *url, const char *key, struct ctl_stream_edge **out, size_t *n,
                      char *err, size_t errlen);
void ctl__stream_edges_free(struct ctl_stream_edge *v, size_t n);

/* Subcommands (ctl_main.c's table). */
int ctl_invalidate_main(int argc, char **argv);
void ctl_invalidate_usage(void);
int ctl_model_main(int argc, char **argv);
void ctl_model_usage(void);

#endif
