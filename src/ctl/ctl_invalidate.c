/* src/ctl/ctl_invalidate.c: `mlcdn ctl invalidate`, one invalidation on every edge.
 *
 * The flags become the body of the edges' POST /admin/invalidate, with a fresh operation
 * id, sent by one of the three transports: straight to each edge (ctl_fanout), to the
 * router's POST /admin/invalidate (which fans out and answers per edge), or added to the
 * control stream (ctl__stream_send, the edges acknowledge there). The answer is one line
 * per edge with the time its acknowledgement came, and the propagation time: the slowest
 * edge's. An edge that does not acknowledge (no answer, an error status, no stream
 * acknowledgement before --timeout) is named on stderr and the exit status is 1. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/conf.h"
#include "core/mc.h"
#include "ctl/ctl_int.h"

struct inval_args {
    struct conf c;
    struct ctl_target t;
    struct conf_strlist urls, patterns, tags;
    const char *prefix, *model;
    int soft, json;
};

#define INVAL_NOPTS (CTL_TARGET_NOPTS + 7)

static size_t inval_opts(struct inval_args *a, struct conf_opt *opts)
{
    size_t n = ctl__target_opts(&a->t, opts);
    const struct conf_opt o[] = {
        {"url", CONF_STRLIST, &a->urls, "purge this URL or path (repeat)"},
        {"prefix", CONF_STR, &a->prefix, "ban every path starting with P (\"/\": everything)"},
        {"pattern", CONF_STRLIST, &a->patterns, "ban paths matching the glob G (repeat)"},
        {"tag", CONF_STRLIST, &a->tags,
         "purge the objects the origin tagged T (Surrogate-Key, Cache-Tag; repeat)"},
        {"model", CONF_STR, &a->model, "purge model ID's keys and cached predictions"},
        {"soft", CONF_BOOL, &a->soft, "mark stale (served while one refresh runs), not delete"},
        {"json", CONF_BOOL, &a->json, "print the result as JSON"},
    };
    memcpy(opts + n, o, sizeof(o));
    return n + MC_ARRAY_SIZE(o);
}

#define SYNOPSIS                                                                                   \
    "(--router URL | --edges URL,URL,... | --redis URL) [--token T] [--url U]... "                 \
    "[--prefix P] [--pattern G]... [--tag T]... [--model ID] [--soft] [--json]"

void ctl_invalidate_usage(void)
{
    struct inval_args a;
    struct conf_opt opts[INVAL_NOPTS];
    memset(&a, 0, sizeof(a));
    conf_usage("ctl invalidate", SYNOPSIS, opts, inval_opts(&a, opts));
}

/* The body of POST /admin/invalidate (owned, free()). */
static char *make_body(const struct inval_args *a, const char *id)
{
    json_t *j = json_object(), *arr;
    if (a->urls.n) {
        arr = json_array();
        for (size_t i = 0; i < a->urls.n; i++)
            json_array_append_new(arr, json_string(a->urls.v[i]));
        json_object_set_new(j, "urls", arr);
    }
    if (a->prefix)
        json_object_set_new(j, "prefix", json_string(a->prefix));
    if (a->patterns.n) {
        arr = json_array();
        for (size_t i = 0; i < a->patterns.n; i++)
            json_array_append_new(arr, json_string(a->patterns.v[i]));
        json_object_set_new(j, "patterns", arr);
    }
    if (a->tags.n) {
        arr = json_array();
        for (size_t i = 0; i < a->tags.n; i++)
            json_array_append_new(arr, json_string(a->tags.v[i]));
        json_object_set_new(j, "tags", arr);
    }
    if (a->model)
        json_object_set_new(j, "model", json_string(a->model));
    if (a->soft)
        json_object_set_new(j, "soft", json_true());
    json_object_set_new(j, "id", json_string(id));
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (!s)
        abort();
    return s;
}

/* One edge's outcome, whatever the transport. */
struct outcome {
    char edge[2048];
    int ok;
    int status;
    double ms;
    char *answer; /* owned: the edge's JSON answer (or text) */
    char error[256];
};

/* The answer shown: compact JSON when it parses, else the text as is. */
static json_t *answer_json(const char *s)
{
    json_error_t je;
    json_t *j = s && *s ? json_loads(s, 0, &je) : NULL;
    return j ? j : json_string(s ? s : "");
}

static int report(const struct inval_args *a, const char *id, const char *transport,
                  struct outcome *o, size_t n)
{
    size_t ok = 0;
    double total = 0;
    for (size_t i = 0; i < n; i++) {
        if (o[i].ok) {
            ok++;
            if (o[i].ms > total)
                total = o[i].ms;
        }
    }
    if (a->json) {
        json_t *j = json_object(), *arr = json_array();
        json_object_set_new(j, "id", json_string(id));
        json_object_set_new(j, "transport", json_string(transport));
        for (size_t i = 0; i < n; i++) {
            json_t *e = json_object();
            json_object_set_new(e, "edge", json_string(o[i].edge));
            json_object_set_new(e, "acknowledged", json_boolean(o[i].ok));
            json_object_set_new(e, "status", json_integer(o[i].status));
            json_object_set_new(e, "ms", json_real(o[i].ms));
            json_object_set_new(e, "answer", answer_json(o[i].answer));
            if (o[i].error[0])
                json_object_set_new(e, "error", json_string(o[i].error));
            json_array_append_new(arr, e);
        }
        json_object_set_new(j, "edges", arr);
        json_object_set_new(j, "acknowledged", json_integer((json_int_t)ok));
        json_object_set_new(j, "total", json_integer((json_int_t)n));
        json_object_set_new(j, "propagation_ms", json_real(total));
        char *s = json_dumps(j, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
        json_decref(j);
        printf("%s\n", s ? s : "{}");
        free(s);
    } else {
        printf("invalidation %s via %s\n", id, transport);
        for (size_t i = 0; i < n; i++) {
            if (o[i].ok)
                printf("  %-40s acknowledged in %8.2f ms  %s\n", o[i].edge, o[i].ms,
                       o[i].answer ? o[i].answer : "");
            else
                printf("  %-40s NOT acknowledged: %s\n", o[i].edge, o[i].error);
        }
        printf("propagation: %.2f ms, %zu of %zu edges acknowledged\n", total, ok, n);
    }
    for (size_t i = 0; i < n; i++)
        if (!o[i].ok)
            fprintf(stderr, "mlcdn ctl invalidate: edge %s did not acknowledge: %s\n", o[i].edge,
                    o[i].error);
    if (n == 0)
        fprintf(stderr, "mlcdn ctl invalidate: no edge to invalidate (none %s)\n",
                !strcmp(transport, "redis") ? "registered on the control stream" : "known");
    return ok == n && n > 0 ? 0 : 1;
}

static void trim_nl(char *s)
{
    size_t l = strlen(s);
    while (l > 0 && (s[l - 1] == '\n' || s[l - 1] == '\r'))
        s[--l] = 0;
}

static void from_reply(struct outcome *o, const char *edge, struct ctl_reply *r)
{
    snprintf(o->edge, sizeof(o->edge), "%s", edge);
    o->status = r->status;
    o->ms = r->ms;
    o->ok = r->status == 200;
    o->answer = r->body;
    r->body = NULL;
    trim_nl(o->answer);
    if (!o->ok) {
        if (r->status)
            snprintf(o->error, sizeof(o->error), "HTTP %d %.200s", r->status, o->answer);
        else
            snprintf(o->error, sizeof(o->error), "%.200s (%d attempts)", r->error, r->attempts);
    }
}

static int via_edges(const struct inval_args *a, const char *id, const char *body)
{
    char **bases, err[512];
    size_t n;
    if (ctl__edges_split(a->t.edges, &bases, &n, err, sizeof(err)) < 0) {
        fprintf(stderr, "mlcdn ctl invalidate: %s\n", err);
        return 2;
    }
    struct ctl_call c = {"POST",           "/admin/invalidate", body,
                         strlen(body),     a->t.token,          (long)a->t.timeout_ms,
                         (int)a->t.retries};
    struct ctl_reply *r = mc_xcalloc(n, sizeof(*r));
    struct outcome *o = mc_xcalloc(n, sizeof(*o));
    int rc = ctl_fanout(&c, (const char *const *)bases, n, r);
    if (rc < 0) {
        fprintf(stderr, "mlcdn ctl invalidate: %s\n", strerror(-rc));
        rc = 1;
    } else {
        for (size_t i = 0; i < n; i++)
            from_reply(&o[i], bases[i], &r[i]);
        rc = report(a, id, "edges", o, n);
    }
    for (size_t i = 0; i < n; i++)
        free(o[i].answer);
    free(o);
    ctl_replies_fini(r, n);
    free(r);
    ctl__strv_free(bases, n);
    return rc;
}

/* The router answers {"id","propagation_ms","edges":[{"edge","url","status","ms",
 * "answer","error"}]} (router_admin.c). */
static int via_router(const struct inval_args *a, const char *id, const char *body)
{
    const char *base = a->t.router;
    /* The router retried each edge already: its answer, a 502 too, is final. */
    struct ctl_call c = {"POST",
                         "/admin/invalidate",
                         body,
                         strlen(body),
                         a->t.token,
                         (long)a->t.timeout_ms + 1000,
                         (int)a->t.retries,
                         1};
    struct ctl_reply r;
    int rc = ctl_fanout(&c, &base, 1, &r);
    if (rc < 0) {
        fprintf(stderr, "mlcdn ctl invalidate: %s\n", strerror(-rc));
        return 1;
    }
    json_error_t je;
    json_t *j = r.status ? json_loads(r.body, 0, &je) : NULL;
    json_t *edges = j ? json_object_get(j, "edges") : NULL;
    if (!json_is_array(edges)) {
        if (r.status)
            fprintf(stderr, "mlcdn ctl invalidate: --router %s: HTTP %d %s\n", base, r.status,
                    r.body);
        else
            fprintf(stderr, "mlcdn ctl invalidate: --router %s: %s\n", base, r.error);
        json_decref(j);
        ctl_replies_fini(&r, 1);
        return 1;
    }
    size_t n = json_array_size(edges);
    struct outcome *o = mc_xcalloc(n ? n : 1, sizeof(*o));
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(edges, i);
        const char *name = json_string_value(json_object_get(e, "edge"));
        const char *url = json_string_value(json_object_get(e, "url"));
        const char *error = json_string_value(json_object_get(e, "error"));
        json_t *ans = json_object_get(e, "answer");
        snprintf(o[i].edge, sizeof(o[i].edge), "%s%s%s%s", name ? name : "?", url ? " (" : "",
                 url ? url : "", url ? ")" : "");
        o[i].status = (int)json_integer_value(json_object_get(e, "status"));
        o[i].ms = json_number_value(json_object_get(e, "ms"));
        o[i].ok = o[i].status == 200;
        o[i].answer = json_is_string(ans) ? strdup(json_string_value(ans))
                    : ans                 ? json_dumps(ans, JSON_COMPACT | JSON_PRESERVE_ORDER)
                                          : strdup("");
        if (!o[i].ok)
            snprintf(o[i].error, sizeof(o[i].error), "%s",
                     error && *error ? error
                     : o[i].answer   ? o[i].answer
                                     : "");
    }
    rc = report(a, id, "router", o, n);
    for (size_t i = 0; i < n; i++)
        free(o[i].answer);
    free(o);
    json_decref(j);
    ctl_replies_fini(&r, 1);
    return rc;
}

static int via_redis(const struct inval_args *a, const char *id, const char *body)
{
    struct ctl_ack *acks = NULL;
    size_t n = 0;
    char err[512];
    if (ctl__stream_send(a->t.redis, a->t.stream, "invalidate", body, id, a->t.timeout_ms, &acks,
                         &n, err, sizeof(err)) < 0) {
        fprintf(stderr, "mlcdn ctl invalidate: %s\n", err);
        return 1;
    }
    struct outcome *o = mc_xcalloc(n ? n : 1, sizeof(*o));
    for (size_t i = 0; i < n; i++) {
        snprintf(o[i].edge, sizeof(o[i].edge), "%s", acks[i].edge);
        o[i].status = acks[i].status;
        o[i].ms = acks[i].ms;
        o[i].ok = acks[i].acked && acks[i].status == 200;
        o[i].answer = strdup(acks[i].detail);
        if (!acks[i].acked)
            snprintf(o[i].error, sizeof(o[i].error),
                     "no acknowledgement on the stream within %llu ms",
                     (unsigned long long)a->t.timeout_ms);
        else if (!o[i].ok)
            snprintf(o[i].error, sizeof(o[i].error), "status %d %.200s", acks[i].status,
                     acks[i].detail);
    }
    int rc = report(a, id, "redis", o, n);
    for (size_t i = 0; i < n; i++)
        free(o[i].answer);
    free(o);
    free(acks);
    return rc;
}

int ctl_invalidate_main(int argc, char **argv)
{
    struct inval_args a;
    struct conf_opt opts[INVAL_NOPTS];
    char err[512], id[17];
    int rc = 2;

    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            ctl_invalidate_usage();
            return 0;
        }
    memset(&a, 0, sizeof(a));
    ctl__target_init(&a.t);
    size_t n = inval_opts(&a, opts);
    if (conf_parse(&a.c, opts, n, argc, argv, 0, err, sizeof(err)) < 0 ||
        ctl__target_check(&a.t, err, sizeof(err)) < 0) {
        fprintf(stderr, "mlcdn ctl invalidate: %s\n", err);
        goto out;
    }
    if (!a.urls.n && !a.prefix && !a.patterns.n && !a.tags.n && !a.model) {
        fprintf(stderr, "mlcdn ctl invalidate: nothing to invalidate: give --url, --prefix, "
                        "--pattern, --tag or --model\n");
        goto out;
    }
    for (size_t i = 0; i < a.urls.n; i++)
        if (!*a.urls.v[i]) {
            fprintf(stderr, "mlcdn ctl invalidate: --url: empty\n");
            goto out;
        }
    if (a.prefix && a.prefix[0] != '/') {
        fprintf(stderr, "mlcdn ctl invalidate: --prefix '%s': must start with '/'\n", a.prefix);
        goto out;
    }
    if (a.model && !*a.model) {
        fprintf(stderr, "mlcdn ctl invalidate: --model: empty\n");
        goto out;
    }
    ctl__op_id(id);
    char *body = make_body(&a, id);
    if (a.t.edges)
        rc = via_edges(&a, id, body);
    else if (a.t.router)
        rc = via_router(&a, id, body);
    else
        rc = via_redis(&a, id, body);
    free(body);
out:
    conf_fini(&a.c);
    return rc;
}
