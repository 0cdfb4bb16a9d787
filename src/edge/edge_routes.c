/* src/edge/edge_routes.c: the route table: loading `routes` from the config file,
 * matching a request to its route, and the route's part of the cache key.
 *
 * The table keeps the routes in file order (for messages and listing) and an index
 * sorted by prefix length, longest first, so matching is a scan that stops at the first
 * hit: a few dozen memcmp at most, no allocation. Loading is strict: an unknown field, a
 * wrong type or a combination that cannot mean anything (a key_body without POST, a
 * cached POST that does not key its body) is an error naming the route and the field,
 * because a silently ignored key rule is a cache that serves one user's answer to
 * another. The table is immutable once loaded, so workers share it without locks. */
#include "edge/edge_routes.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libconfig.h>

#include "core/mc.h"
#include "core/units.h"

#define ROUTES_DEFAULT_MAX_BODY (1u << 20)
/* Bodies are held in memory to be keyed (and canonical JSON is up to 5 times larger). */
#define ROUTES_MAX_MAX_BODY (1ull << 30)

struct edge_routes {
    unsigned magic;
#define EDGE_ROUTES_MAGIC 0x52545331u
    struct edge_route *v; /* file order */
    size_t n;
    const struct edge_route **by_len; /* longest prefix first */
};

/* Where a message comes from: the file and the route being read. */
struct where {
    const char *path;
    size_t idx;
    char *err;
    size_t errlen;
};

static int bad(const struct where *w, const char *field, const char *fmt, ...) MC_PRINTF(3, 4);

static int bad(const struct where *w, const char *field, const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(w->err, w->errlen, "%s: routes[%zu]%s%s: %s", w->path, w->idx, field ? "." : "",
             field ? field : "", msg);
    return -EINVAL;
}

static void route_fini(struct edge_route *r)
{
    size_t i;

    free((void *)r->prefix);
    for (i = 0; i < r->query.n_keep; i++)
        free((void *)r->query.keep[i]);
    free((void *)r->query.keep);
    for (i = 0; i < r->query.n_ignore; i++)
        free((void *)r->query.ignore[i]);
    free((void *)r->query.ignore);
    memset(r, 0, sizeof(*r));
}

void edge__routes_free(struct edge_routes **rtp)
{
    struct edge_routes *rt = *rtp;
    size_t i;

    if (rt == NULL)
        return;
    MC_CHECK_OBJ(rt, EDGE_ROUTES_MAGIC);
    for (i = 0; i < rt->n; i++)
        route_fini(&rt->v[i]);
    free(rt->v);
    free(rt->by_len);
    MC_FREE_OBJ(rt);
    *rtp = NULL;
}

static const char *str_of(config_setting_t *s)
{
    return config_setting_type(s) == CONFIG_TYPE_STRING ? config_setting_get_string(s) : NULL;
}

static int is_int(config_setting_t *s)
{
    return config_setting_type(s) == CONFIG_TYPE_INT || config_setting_type(s) == CONFIG_TYPE_INT64;
}

/* A list (or array) of non-empty strings, copied into *out. */
static int str_list(const struct where *w, config_setting_t *s, const char *field,
                    const char *const **out, size_t *n)
{
    char **v;
    int len, i;

    if (!config_setting_is_list(s) && !config_setting_is_array(s))
        return bad(w, field, "must be a list of strings, like [\"a\", \"b\"]");
    len = config_setting_length(s);
    if (len == 0)
        return bad(w, field, "is an empty list");
    v = mc_xcalloc((size_t)len, sizeof(*v));
    *out = (const char *const *)v;
    for (i = 0; i < len; i++) {
        const char *e = str_of(config_setting_get_elem(s, (unsigned)i));

        if (e == NULL || *e == '\0')
            return bad(w, field, "element %d is not a non-empty string", i);
        v[i] = mc_xstrdup(e);
        *n = (size_t)i + 1;
    }
    return 0;
}

static int parse_methods(const struct where *w, config_setting_t *s, unsigned *out)
{
    static const struct {
        const char *name;
        enum http_method m;
    } known[] = {{"GET", HTTP_M_GET}, {"HEAD", HTTP_M_HEAD}, {"POST", HTTP_M_POST}};
    unsigned bits = 0;
    int len, i;
    size_t k;

    if (!config_setting_is_list(s) && !config_setting_is_array(s))
        return bad(w, "methods", "must be a list of strings, like [\"GET\", \"HEAD\"]");
    len = config_setting_length(s);
    if (len == 0)
        return bad(w, "methods", "is an empty list");
    for (i = 0; i < len; i++) {
        const char *e = str_of(config_setting_get_elem(s, (unsigned)i));

        if (e == NULL)
            return bad(w, "methods", "element %d is not a string", i);
        /* Method names are case-sensitive (RFC 9110 §9.1). */
        for (k = 0; k < MC_ARRAY_SIZE(known) && strcmp(e, known[k].name) != 0; k++)
            ;
        if (k == MC_ARRAY_SIZE(known))
            return bad(w, "methods", "unknown method '%s' (GET, HEAD or POST)", e);
        bits |= EDGE_ROUTE_M(known[k].m);
    }
    *out = bits;
    return 0;
}

static int parse_ttl(const struct where *w, config_setting_t *s, int64_t *out)
{
    const char *t = str_of(s);
    uint64_t ms;

    if (is_int(s)) {
        long long v = config_setting_get_int64(s);

        if (v < 0)
            return bad(w, "ttl", "%lld is negative", v);
        *out = v;
        return 0;
    }
    if (t == NULL || units_parse_duration_ms(t, &ms) != 0)
        return bad(w, "ttl", "must be seconds or a duration (like 300 or \"5m\")");
    *out = (int64_t)(ms / 1000);
    return 0;
}

static int parse_size(const struct where *w, config_setting_t *s, uint64_t *out)
{
    const char *t = str_of(s);
    uint64_t v;

    if (is_int(s)) {
        long long i = config_setting_get_int64(s);

        if (i <= 0)
            return bad(w, "max_body", "%lld is not a positive size", i);
        v = (uint64_t)i;
    } else if (t == NULL || units_parse_size(t, &v) != 0 || v == 0) {
        return bad(w, "max_body", "must be a positive size (like 65536 or \"64K\")");
    }
    if (v > ROUTES_MAX_MAX_BODY)
        return bad(w, "max_body", "at most 1G (bodies are held in memory to be keyed)");
    *out = v;
    return 0;
}

static int parse_route(const struct where *w, config_setting_t *g, struct edge_route *r)
{
    int i, len, rc;

    MC_INIT_OBJ(r, EDGE_ROUTE_MAGIC);
    r->methods = EDGE_ROUTE_M(HTTP_M_GET) | EDGE_ROUTE_M(HTTP_M_HEAD);
    r->ttl_s = -1;
    r->max_body = ROUTES_DEFAULT_MAX_BODY;
    r->index = w->idx;
    if (!config_setting_is_group(g))
        return bad(w, NULL, "must be a group, like { prefix = \"/predict\"; ... }");
    len = config_setting_length(g);
    for (i = 0; i < len; i++) {
        config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *name = config_setting_name(s), *v = str_of(s);

        rc = 0;
        if (strcmp(name, "prefix") == 0) {
            if (v == NULL || v[0] != '/')
                return bad(w, name, "must be a string starting with '/'");
            r->prefix = mc_xstrdup(v);
            r->prefix_len = strlen(v);
        } else if (strcmp(name, "methods") == 0) {
            rc = parse_methods(w, s, &r->methods);
        } else if (strcmp(name, "key_body") == 0) {
            if (v != NULL && strcmp(v, "json") == 0)
                r->key_body = EDGE_ROUTE_BODY_JSON;
            else if (v != NULL && strcmp(v, "raw") == 0)
                r->key_body = EDGE_ROUTE_BODY_RAW;
            else if (v != NULL && strcmp(v, "none") == 0)
                r->key_body = EDGE_ROUTE_BODY_NONE;
            else
                return bad(w, name, "must be \"json\", \"raw\" or \"none\"");
        } else if (strcmp(name, "ttl") == 0) {
            rc = parse_ttl(w, s, &r->ttl_s);
        } else if (strcmp(name, "max_body") == 0) {
            rc = parse_size(w, s, &r->max_body);
        } else if (strcmp(name, "query") == 0) {
            if (v != NULL && strcmp(v, "drop") == 0)
                r->query.drop = 1;
            else if (v == NULL || strcmp(v, "sorted") != 0)
                return bad(w, name, "must be \"sorted\" or \"drop\"");
        } else if (strcmp(name, "ignore_params") == 0) {
            rc = str_list(w, s, name, &r->query.ignore, &r->query.n_ignore);
        } else if (strcmp(name, "query_keys") == 0) {
            rc = str_list(w, s, name, &r->query.keep, &r->query.n_keep);
        } else {
            return bad(w, name,
                       "unknown field (prefix, methods, key_body, ttl, max_body, "
                       "query, ignore_params or query_keys)");
        }
        if (rc != 0)
            return rc;
    }
    if (r->prefix == NULL)
        return bad(w, "prefix", "is required");
    if (r->key_body != EDGE_ROUTE_BODY_NONE && !(r->methods & EDGE_ROUTE_M(HTTP_M_POST)))
        return bad(w, "key_body", "needs POST in methods (only a POST body is keyed)");
    /* Without the body in the key every POST to the route would share one entry. */
    if (r->ttl_s >= 0 && (r->methods & EDGE_ROUTE_M(HTTP_M_POST)) &&
        r->key_body == EDGE_ROUTE_BODY_NONE)
        return bad(w, "ttl", "a cached POST route needs key_body = \"json\" or \"raw\"");
    if (r->query.drop && (r->query.n_keep > 0 || r->query.n_ignore > 0))
        return bad(w, "query", "\"drop\" leaves no parameters for query_keys or ignore_params");
    return 0;
}

static int by_len_cmp(const void *a, const void *b)
{
    const struct edge_route *x = *(const struct edge_route *const *)a;
    const struct edge_route *y = *(const struct edge_route *const *)b;

    if (x->prefix_len != y->prefix_len)
        return x->prefix_len > y->prefix_len ? -1 : 1;
    return x->index < y->index ? -1 : (x->index > y->index ? 1 : 0);
}

/* Two routes with one prefix must not both accept a method: which one applies would be
 * an accident of the file's order. */
static int check_overlaps(const struct where *base, const struct edge_routes *rt)
{
    static const char *const names[] =
        {[HTTP_M_GET] = "GET", [HTTP_M_HEAD] = "HEAD", [HTTP_M_POST] = "POST"};
    size_t i, j, m;

    for (i = 0; i < rt->n; i++) {
        for (j = 0; j < i; j++) {
            const struct edge_route *a = &rt->v[j], *b = &rt->v[i];
            unsigned both = a->methods & b->methods;
            struct where w = *base;

            if (both == 0 || a->prefix_len != b->prefix_len ||
                memcmp(a->prefix, b->prefix, a->prefix_len) != 0)
                continue;
            for (m = 0; !(both & EDGE_ROUTE_M(m)); m++)
                ;
            w.idx = i;
            return bad(&w, "prefix", "'%s' for %s is already routes[%zu]", b->prefix, names[m], j);
        }
    }
    return 0;
}

int edge__routes_load(const char *path, struct edge_routes **out, char *err, size_t errlen)
{
    struct edge_routes *rt = mc_xcalloc(1, sizeof(*rt));
    struct where w = {path, 0, err, errlen};
    config_setting_t *list;
    config_t cfg;
    size_t i, n;
    int rc = 0;

    MC_INIT_OBJ(rt, EDGE_ROUTES_MAGIC);
    if (path == NULL) {
        *out = rt;
        return 0;
    }
    config_init(&cfg);
    if (config_read_file(&cfg, path) != CONFIG_TRUE) {
        if (config_error_type(&cfg) == CONFIG_ERR_FILE_IO)
            snprintf(err, errlen, "%s: cannot read the file", path);
        else
            snprintf(err, errlen, "%s:%d: %s", path, config_error_line(&cfg),
                     config_error_text(&cfg));
        rc = -EINVAL;
        goto out;
    }
    list = config_lookup(&cfg, "routes");
    if (list == NULL)
        goto out;
    /* An empty array "[]" is an empty list too; a non-empty one cannot hold groups. */
    if (!config_setting_is_list(list) &&
        !(config_setting_is_array(list) && config_setting_length(list) == 0)) {
        snprintf(err, errlen, "%s: routes: must be a list of groups, like ( { prefix = ...; } )",
                 path);
        rc = -EINVAL;
        goto out;
    }
    n = (size_t)config_setting_length(list);
    rt->v = mc_xcalloc(n ? n : 1, sizeof(*rt->v));
    for (i = 0; i < n; i++) {
        w.idx = i;
        rt->n = i + 1; /* so that edge__routes_free() sees a half-read route */
        rc = parse_route(&w, config_setting_get_elem(list, (unsigned)i), &rt->v[i]);
        if (rc != 0)
            goto out;
    }
    rc = check_overlaps(&w, rt);
    if (rc != 0)
        goto out;
    rt->by_len = mc_xcalloc(n ? n : 1, sizeof(*rt->by_len));
    for (i = 0; i < n; i++)
        rt->by_len[i] = &rt->v[i];
    qsort(rt->by_len, n, sizeof(*rt->by_len), by_len_cmp);
out:
    config_destroy(&cfg);
    if (rc != 0) {
        edge__routes_free(&rt);
        return rc;
    }
    *out = rt;
    return 0;
}

size_t edge__routes_count(const struct edge_routes *rt)
{
    if (rt == NULL)
        return 0;
    MC_CHECK_OBJ(rt, EDGE_ROUTES_MAGIC);
    return rt->n;
}

const struct edge_route *edge__routes_get(const struct edge_routes *rt, size_t i)
{
    MC_CHECK_OBJ_NOTNULL(rt, EDGE_ROUTES_MAGIC);
    MC_ASSERT(i < rt->n);
    return &rt->v[i];
}

int edge__route_covers(const struct edge_route *r, const char *path, size_t plen)
{
    size_t n = r->prefix_len;

    if (n > plen || memcmp(r->prefix, path, n) != 0)
        return 0;
    /* "/predict" is a path segment: it covers "/predict/x", not "/predictions". */
    return n == plen || r->prefix[n - 1] == '/' || path[n] == '/';
}

const struct edge_route *edge__routes_match(const struct edge_routes *rt, const char *path,
                                            size_t plen, enum http_method m)
{
    unsigned bit;
    size_t i;

    if (rt == NULL)
        return NULL;
    MC_CHECK_OBJ(rt, EDGE_ROUTES_MAGIC);
    MC_ASSERT((unsigned)m < 32);
    bit = EDGE_ROUTE_M(m);
    for (i = 0; i < rt->n; i++) {
        const struct edge_route *r = rt->by_len[i];

        if ((r->methods & bit) && edge__route_covers(r, path, plen))
            return r;
    }
    return NULL;
}

int edge__route_key(const struct edge_route *r, const struct http_request *req, const char *body,
                    size_t blen, struct buf *out, char *err, size_t errlen)
{
    static const char hex[] = "0123456789abcdef";
    char line[6 + 32] = "\nbody:";
    const char *msg = "";
    uint8_t h[16];
    struct buf canon;
    size_t pos = 0, i;
    int rc;

    MC_CHECK_OBJ_NOTNULL(r, EDGE_ROUTE_MAGIC);
    if (blen > r->max_body) {
        snprintf(err, errlen, "request body of %zu bytes is over the route's max_body (%llu)", blen,
                 (unsigned long long)r->max_body);
        return -EFBIG;
    }
    if (r->key_body == EDGE_ROUTE_BODY_NONE || req->method != HTTP_M_POST)
        return 0;
    if (r->key_body == EDGE_ROUTE_BODY_RAW) {
        cache_key_hash(body, blen, h);
    } else {
        /* A number grows by at most 18 bytes ("1e21" is 22 digits) and takes at least 4
         * bytes of input, so 5 times the body is always enough. */
        buf_init(&canon, 5 * blen + 32);
        rc = cache_key_json_canon(body, blen, &canon, &pos, &msg);
        if (rc == 0)
            cache_key_hash(canon.data, canon.len, h);
        buf_fini(&canon);
        if (rc != 0) {
            snprintf(err, errlen, "invalid JSON body at byte %zu: %s", pos, msg);
            return rc;
        }
    }
    for (i = 0; i < 16; i++) {
        line[6 + 2 * i] = hex[h[i] >> 4];
        line[7 + 2 * i] = hex[h[i] & 15];
    }
    rc = buf_append(out, line, sizeof(line));
    if (rc != 0)
        snprintf(err, errlen, "cache key over its size limit");
    return rc;
}
