/* tests/unit/edge/test_edge_routes.c: the route table: loading (defaults, every field,
 * every error naming file, route and field), longest-prefix matching by method, and the
 * route's key: body part (canonical JSON, raw, limits) and query rules through
 * cache_key_primary_ex. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "edge/edge_routes.h"

static char conf_path[64];

/* Writes text to a fresh temporary file; its path is in conf_path until unlinked. */
static const char *write_conf(const char *text)
{
    int fd;
    FILE *f;

    snprintf(conf_path, sizeof(conf_path), "/tmp/test_edge_routes_XXXXXX");
    fd = mkstemp(conf_path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    return conf_path;
}

static struct edge_routes *load_ok(const char *text)
{
    struct edge_routes *rt = NULL;
    char err[512] = "";
    int rc = edge__routes_load(write_conf(text), &rt, err, sizeof(err));

    if (rc != 0)
        print_error("load: %s\n", err);
    unlink(conf_path);
    assert_int_equal(rc, 0);
    assert_non_null(rt);
    return rt;
}

static const char example[] =
    "listen = \"127.0.0.1:8080\";\n"
    "routes = (\n"
    "  { prefix = \"/predict\"; methods = [\"POST\"]; key_body = \"json\"; ttl = 300; "
    "max_body = \"64K\"; },\n"
    "  { prefix = \"/features/\"; methods = [\"GET\"]; query = \"sorted\"; "
    "ignore_params = [\"session\", \"ts\"]; ttl = 60; },\n"
    "  { prefix = \"/embeddings/\"; methods = [\"GET\"]; query_keys = [\"id\", \"v\"]; }\n"
    ");\n";

static void test_load_example(void **state)
{
    struct edge_routes *rt = load_ok(example);
    const struct edge_route *r;

    (void)state;
    assert_int_equal(edge__routes_count(rt), 3);
    r = edge__routes_get(rt, 0);
    assert_string_equal(r->prefix, "/predict");
    assert_int_equal(r->prefix_len, 8);
    assert_int_equal(r->methods, EDGE_ROUTE_M(HTTP_M_POST));
    assert_int_equal(r->key_body, EDGE_ROUTE_BODY_JSON);
    assert_int_equal(r->ttl_s, 300);
    assert_int_equal(r->max_body, 64 * 1024);
    assert_int_equal(r->index, 0);

    r = edge__routes_get(rt, 1);
    assert_string_equal(r->prefix, "/features/");
    assert_int_equal(r->methods, EDGE_ROUTE_M(HTTP_M_GET));
    assert_int_equal(r->key_body, EDGE_ROUTE_BODY_NONE);
    assert_int_equal(r->ttl_s, 60);
    assert_int_equal(r->max_body, 1 << 20);
    assert_int_equal(r->query.drop, 0);
    assert_int_equal(r->query.n_ignore, 2);
    assert_string_equal(r->query.ignore[0], "session");
    assert_string_equal(r->query.ignore[1], "ts");
    assert_int_equal(r->query.n_keep, 0);

    r = edge__routes_get(rt, 2);
    assert_int_equal(r->ttl_s, -1);
    assert_int_equal(r->query.n_keep, 2);
    assert_string_equal(r->query.keep[0], "id");
    assert_string_equal(r->query.keep[1], "v");
    edge__routes_free(&rt);
    assert_null(rt);
}

/* The example in conf/edge.conf stays loadable and means what its comment says. */
static void test_load_shipped_conf(void **state)
{
    const char *src = getenv("MLCDN_SRC");
    struct edge_routes *rt = NULL;
    char path[512], err[512] = "";

    (void)state;
    snprintf(path, sizeof(path), "%s/conf/edge.conf", src ? src : ".");
    if (edge__routes_load(path, &rt, err, sizeof(err)) != 0)
        print_error("%s\n", err);
    assert_non_null(rt);
    assert_int_equal(edge__routes_count(rt), 3);
    assert_int_equal(edge__routes_match(rt, "/predict", 8, HTTP_M_POST)->key_body,
                     EDGE_ROUTE_BODY_JSON);
    edge__routes_free(&rt);
}

static void test_load_defaults_and_forms(void **state)
{
    struct edge_routes *rt;
    const struct edge_route *r;
    char err[256];

    (void)state;
    rt = load_ok("routes = ( { prefix = \"/\"; } );");
    r = edge__routes_get(rt, 0);
    assert_int_equal(r->methods, EDGE_ROUTE_M(HTTP_M_GET) | EDGE_ROUTE_M(HTTP_M_HEAD));
    assert_int_equal(r->key_body, EDGE_ROUTE_BODY_NONE);
    assert_int_equal(r->ttl_s, -1);
    assert_int_equal(r->max_body, 1 << 20);
    assert_int_equal(r->query.drop, 0);
    edge__routes_free(&rt);

    /* Durations and sizes as strings or numbers; methods as a list; key_body "none". */
    rt = load_ok("routes = ( { prefix = \"/a\"; methods = (\"GET\", \"POST\"); key_body = \"raw\";"
                 " ttl = \"5m\"; max_body = 1000; query = \"drop\"; },"
                 " { prefix = \"/b\"; key_body = \"none\"; ttl = 0; max_body = 1000000000L; } );");
    r = edge__routes_get(rt, 0);
    assert_int_equal(r->methods, EDGE_ROUTE_M(HTTP_M_GET) | EDGE_ROUTE_M(HTTP_M_POST));
    assert_int_equal(r->key_body, EDGE_ROUTE_BODY_RAW);
    assert_int_equal(r->ttl_s, 300);
    assert_int_equal(r->max_body, 1000);
    assert_int_equal(r->query.drop, 1);
    r = edge__routes_get(rt, 1);
    assert_int_equal(r->ttl_s, 0);
    assert_int_equal(r->max_body, 1000000000u);
    edge__routes_free(&rt);

    /* No routes: an empty table, which matches nothing. */
    rt = load_ok("threads = 4;\n");
    assert_int_equal(edge__routes_count(rt), 0);
    assert_null(edge__routes_match(rt, "/x", 2, HTTP_M_GET));
    edge__routes_free(&rt);
    rt = load_ok("routes = ();\n");
    assert_int_equal(edge__routes_count(rt), 0);
    edge__routes_free(&rt);
    rt = load_ok("routes = [];\n");
    assert_int_equal(edge__routes_count(rt), 0);
    edge__routes_free(&rt);
    assert_int_equal(edge__routes_load(NULL, &rt, err, sizeof(err)), 0);
    assert_int_equal(edge__routes_count(rt), 0);
    edge__routes_free(&rt);
    edge__routes_free(&rt); /* NULL is fine */
    assert_int_equal(edge__routes_count(NULL), 0);
    assert_null(edge__routes_match(NULL, "/x", 2, HTTP_M_GET));
}

struct err_case {
    const char *conf;
    const char *want; /* after "<path>: " */
};

static const struct err_case err_cases[] = {
    {"routes = ( { prefix = \"/a\"; }, { prefix = \"/b\"; methods = [\"GET\", \"FOO\"]; } );",
     "routes[1].methods: unknown method 'FOO' (GET, HEAD or POST)"},
    {"routes = ( { prefix = \"/a\"; methods = [\"get\"]; } );",
     "routes[0].methods: unknown method 'get' (GET, HEAD or POST)"},
    {"routes = ( { prefix = \"/a\"; methods = []; } );", "routes[0].methods: is an empty list"},
    {"routes = ( { prefix = \"/a\"; methods = \"GET\"; } );",
     "routes[0].methods: must be a list of strings, like [\"GET\", \"HEAD\"]"},
    {"routes = ( { prefix = \"/a\"; methods = (\"GET\", 1); } );",
     "routes[0].methods: element 1 is not a string"},
    {"routes = ( { methods = [\"GET\"]; } );", "routes[0].prefix: is required"},
    {"routes = ( { prefix = \"predict\"; } );",
     "routes[0].prefix: must be a string starting with '/'"},
    {"routes = ( { prefix = 1; } );", "routes[0].prefix: must be a string starting with '/'"},
    {"routes = ( { prefix = \"/a\"; tll = 5; } );",
     "routes[0].tll: unknown field (prefix, methods, key_body, ttl, max_body, query, "
     "ignore_params or query_keys)"},
    {"routes = ( { prefix = \"/a\"; methods = [\"POST\"]; key_body = \"xml\"; } );",
     "routes[0].key_body: must be \"json\", \"raw\" or \"none\""},
    {"routes = ( { prefix = \"/a\"; key_body = \"json\"; } );",
     "routes[0].key_body: needs POST in methods (only a POST body is keyed)"},
    {"routes = ( { prefix = \"/a\"; methods = [\"POST\"]; ttl = 60; } );",
     "routes[0].ttl: a cached POST route needs key_body = \"json\" or \"raw\""},
    {"routes = ( { prefix = \"/a\"; ttl = -1; } );", "routes[0].ttl: -1 is negative"},
    {"routes = ( { prefix = \"/a\"; ttl = \"soon\"; } );",
     "routes[0].ttl: must be seconds or a duration (like 300 or \"5m\")"},
    {"routes = ( { prefix = \"/a\"; ttl = 1.5; } );",
     "routes[0].ttl: must be seconds or a duration (like 300 or \"5m\")"},
    {"routes = ( { prefix = \"/a\"; max_body = \"lots\"; } );",
     "routes[0].max_body: must be a positive size (like 65536 or \"64K\")"},
    {"routes = ( { prefix = \"/a\"; max_body = 0; } );",
     "routes[0].max_body: 0 is not a positive size"},
    {"routes = ( { prefix = \"/a\"; max_body = \"2G\"; } );",
     "routes[0].max_body: at most 1G (bodies are held in memory to be keyed)"},
    {"routes = ( { prefix = \"/a\"; query = \"random\"; } );",
     "routes[0].query: must be \"sorted\" or \"drop\""},
    {"routes = ( { prefix = \"/a\"; query = \"drop\"; query_keys = [\"id\"]; } );",
     "routes[0].query: \"drop\" leaves no parameters for query_keys or ignore_params"},
    {"routes = ( { prefix = \"/a\"; query = \"drop\"; ignore_params = [\"ts\"]; } );",
     "routes[0].query: \"drop\" leaves no parameters for query_keys or ignore_params"},
    {"routes = ( { prefix = \"/a\"; query_keys = []; } );",
     "routes[0].query_keys: is an empty list"},
    {"routes = ( { prefix = \"/a\"; ignore_params = [\"a\", \"\"]; } );",
     "routes[0].ignore_params: element 1 is not a non-empty string"},
    {"routes = ( { prefix = \"/a\"; ignore_params = \"a\"; } );",
     "routes[0].ignore_params: must be a list of strings, like [\"a\", \"b\"]"},
    {"routes = ( { prefix = \"/a\"; }, \"/b\" );",
     "routes[1]: must be a group, like { prefix = \"/predict\"; ... }"},
    {"routes = { prefix = \"/a\"; };",
     "routes: must be a list of groups, like ( { prefix = ...; } )"},
    {"routes = [\"/a\"];", "routes: must be a list of groups, like ( { prefix = ...; } )"},
    /* One prefix twice is fine for different methods, an error when they overlap. */
    {"routes = ( { prefix = \"/a\"; methods = [\"GET\"]; }, { prefix = \"/b\"; },"
     " { prefix = \"/a\"; methods = [\"POST\", \"GET\"]; } );",
     "routes[2].prefix: '/a' for GET is already routes[0]"},
};

static void test_load_errors(void **state)
{
    char err[512], want[512];
    struct edge_routes *rt;
    size_t i;

    (void)state;
    for (i = 0; i < MC_ARRAY_SIZE(err_cases); i++) {
        const char *path = write_conf(err_cases[i].conf);
        int rc;

        rt = (struct edge_routes *)(uintptr_t)1; /* written on success only */
        err[0] = '\0';
        rc = edge__routes_load(path, &rt, err, sizeof(err));
        snprintf(want, sizeof(want), "%s: %s", path, err_cases[i].want);
        unlink(path);
        if (rc != -EINVAL || strcmp(err, want) != 0)
            print_error("case %zu: rc %d\n got  %s\n want %s\n", i, rc, err, want);
        assert_int_equal(rc, -EINVAL);
        assert_string_equal(err, want);
        assert_ptr_equal(rt, (struct edge_routes *)(uintptr_t)1);
    }

    /* Syntax errors carry the line; a missing file says so. */
    write_conf("a = 1;\nroutes = ( { prefix = \"/a\" } \n");
    assert_int_equal(edge__routes_load(conf_path, &rt, err, sizeof(err)), -EINVAL);
    snprintf(want, sizeof(want), "%s:", conf_path);
    assert_memory_equal(err, want, strlen(want));
    assert_non_null(strstr(err, "syntax error"));
    unlink(conf_path);
    assert_int_equal(edge__routes_load("/nonexistent/edge.conf", &rt, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "/nonexistent/edge.conf: cannot read the file");
    /* The brief's example, as an operator would see it. */
    write_conf("routes = ( { prefix = \"/a\"; }, { prefix = \"/b\"; methods = [\"FOO\"]; } );");
    assert_int_equal(edge__routes_load(conf_path, &rt, err, sizeof(err)), -EINVAL);
    snprintf(want, sizeof(want), "%s: routes[1].methods: unknown method 'FOO'", conf_path);
    assert_memory_equal(err, want, strlen(want));
    unlink(conf_path);
}

static const char *match_prefix(const struct edge_routes *rt, const char *path, enum http_method m)
{
    const struct edge_route *r = edge__routes_match(rt, path, strlen(path), m);

    return r ? r->prefix : NULL;
}

static void test_match(void **state)
{
    struct edge_routes *rt = load_ok(
        "routes = (\n"
        "  { prefix = \"/\"; ttl = 10; },\n"
        "  { prefix = \"/predict\"; methods = [\"POST\"]; key_body = \"json\"; },\n"
        "  { prefix = \"/predict\"; methods = [\"GET\"]; query = \"drop\"; },\n"
        "  { prefix = \"/predict/batch\"; methods = [\"POST\"]; key_body = \"raw\"; },\n"
        "  { prefix = \"/features/\"; methods = [\"GET\", \"HEAD\"]; },\n"
        "  { prefix = \"/features/v2/\"; }\n"
        ");\n");

    (void)state;
    /* Longest prefix wins, whatever the file's order. */
    assert_string_equal(match_prefix(rt, "/predict/batch", HTTP_M_POST), "/predict/batch");
    assert_string_equal(match_prefix(rt, "/predict/batch/x", HTTP_M_POST), "/predict/batch");
    assert_string_equal(match_prefix(rt, "/predict/one", HTTP_M_POST), "/predict");
    assert_string_equal(match_prefix(rt, "/predict", HTTP_M_POST), "/predict");
    assert_string_equal(match_prefix(rt, "/features/v2/a", HTTP_M_GET), "/features/v2/");
    assert_string_equal(match_prefix(rt, "/features/v1/a", HTTP_M_HEAD), "/features/");
    assert_string_equal(match_prefix(rt, "/features/", HTTP_M_GET), "/features/");
    /* A prefix without a trailing '/' is a whole segment. */
    assert_string_equal(match_prefix(rt, "/predictions", HTTP_M_GET), "/");
    assert_null(match_prefix(rt, "/predictions", HTTP_M_POST));
    assert_string_equal(match_prefix(rt, "/predict/batchy", HTTP_M_POST), "/predict");
    /* "/features" is not under "/features/". */
    assert_string_equal(match_prefix(rt, "/features", HTTP_M_GET), "/");
    /* By method: one prefix, two routes; and a shorter prefix when the longer refuses it. */
    assert_int_equal(edge__routes_match(rt, "/predict/x", 10, HTTP_M_GET)->query.drop, 1);
    assert_int_equal(edge__routes_match(rt, "/predict/x", 10, HTTP_M_POST)->key_body,
                     EDGE_ROUTE_BODY_JSON);
    assert_string_equal(match_prefix(rt, "/predict/batch", HTTP_M_GET), "/predict");
    assert_string_equal(match_prefix(rt, "/predict", HTTP_M_HEAD), "/");
    assert_null(match_prefix(rt, "/features/x", HTTP_M_POST));
    assert_null(match_prefix(rt, "/x", HTTP_M_PUT));
    assert_null(match_prefix(rt, "/x", HTTP_M_OTHER));
    /* The length given is what counts: a longer buffer is not read. */
    assert_string_equal(edge__routes_match(rt, "/predict/batch", 9, HTTP_M_POST)->prefix,
                        "/predict");
    assert_null(edge__routes_match(rt, "", 0, HTTP_M_GET));
    /* Covering ignores the method (prediction serving takes every method on its paths). */
    const struct edge_route *pr = edge__routes_match(rt, "/predict", 8, HTTP_M_GET);
    assert_true(edge__route_covers(pr, "/predict", 8));
    assert_true(edge__route_covers(pr, "/predict/x", 10));
    assert_false(edge__route_covers(pr, "/predictions", 12));
    assert_false(edge__route_covers(pr, "/predic", 7));
    edge__routes_free(&rt);
}

static struct http_request post_req(enum http_method m)
{
    struct http_request r;

    memset(&r, 0, sizeof(r));
    r.method = m;
    r.content_length = -1;
    return r;
}

/* Replaces out with the route key of a request of method m carrying body. */
static int route_key(const struct edge_route *r, enum http_method m, const char *body,
                     struct buf *out, char *err, size_t errlen)
{
    struct http_request req = post_req(m);

    buf_reset(out);
    return edge__route_key(r, &req, body, strlen(body), out, err, errlen);
}

static void test_route_key_body(void **state)
{
    struct edge_routes *rt = load_ok(example);
    const struct edge_route *pr = edge__routes_match(rt, "/predict", 8, HTTP_M_POST);
    const struct edge_route *fr = edge__routes_match(rt, "/features/x", 11, HTTP_M_GET);
    struct buf a, b;
    char err[256];
    size_t i;

    (void)state;
    assert_non_null(pr);
    assert_non_null(fr);
    buf_init(&a, 4096);
    buf_init(&b, 4096);
    /* Two spellings of one JSON body (key order, spaces, 2 vs 2.0) get one key. */
    assert_int_equal(route_key(pr, HTTP_M_POST, "{\"b\":1,\"a\":[1,2]}", &a, err, sizeof(err)), 0);
    assert_int_equal(route_key(pr, HTTP_M_POST, "{ \"a\":[1, 2.0], \"b\":1 }", &b, err,
                               sizeof(err)),
                     0);
    assert_int_equal(a.len, 6 + 32);
    assert_memory_equal(a.data, "\nbody:", 6);
    for (i = 6; i < a.len; i++)
        assert_non_null(strchr("0123456789abcdef", a.data[i]));
    assert_string_equal(a.data, b.data);
    /* Another value, another key. */
    assert_int_equal(route_key(pr, HTTP_M_POST, "{\"b\":1,\"a\":[2,1]}", &b, err, sizeof(err)), 0);
    assert_string_not_equal(a.data, b.data);

    /* Bad JSON names the byte; the buffer keeps what it had. */
    buf_reset(&a);
    assert_int_equal(buf_puts(&a, "h/predict"), 0);
    {
        struct http_request req = post_req(HTTP_M_POST);

        assert_int_equal(edge__route_key(pr, &req, "{\"a\":1,}", 8, &a, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "invalid JSON body at byte 7: unexpected character");
        assert_string_equal(a.data, "h/predict");
        assert_int_equal(edge__route_key(pr, &req, "", 0, &a, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "invalid JSON body at byte 0: unexpected end of input");
        assert_int_equal(edge__route_key(pr, &req, "{\"a\":1,\"a\":2}", 13, &a, err, sizeof(err)),
                         -EINVAL);
        assert_string_equal(err, "invalid JSON body at byte 7: duplicate key");
        /* Appended after the primary key. */
        assert_int_equal(edge__route_key(pr, &req, "[1]", 3, &a, err, sizeof(err)), 0);
        assert_int_equal(a.len, 9 + 38);
        assert_memory_equal(a.data, "h/predict\nbody:", 15);
    }

    /* Over max_body (64K): -EFBIG, whatever the body is. */
    {
        struct http_request req = post_req(HTTP_M_POST);
        size_t big = 64 * 1024 + 1;
        char *body = malloc(big);

        memset(body, ' ', big);
        body[0] = '1';
        buf_reset(&a);
        assert_int_equal(edge__route_key(pr, &req, body, big, &a, err, sizeof(err)), -EFBIG);
        assert_string_equal(err, "request body of 65537 bytes is over the route's max_body "
                                 "(65536)");
        assert_int_equal(a.len, 0);
        /* At the limit it is keyed (whitespace around a number is still JSON). */
        assert_int_equal(edge__route_key(pr, &req, body, big - 1, &a, err, sizeof(err)), 0);
        assert_int_equal(a.len, 38);
        free(body);
    }

    /* Routes without key_body, and methods without a body, add nothing. */
    assert_int_equal(route_key(fr, HTTP_M_GET, "", &a, err, sizeof(err)), 0);
    assert_int_equal(a.len, 0);
    assert_int_equal(route_key(pr, HTTP_M_GET, "not json", &a, err, sizeof(err)), 0);
    assert_int_equal(a.len, 0);

    /* The cap of the key buffer is honoured. */
    buf_fini(&a);
    buf_init(&a, 20);
    assert_int_equal(route_key(pr, HTTP_M_POST, "[1]", &a, err, sizeof(err)), -E2BIG);
    assert_int_equal(a.len, 0);
    buf_fini(&a);
    buf_fini(&b);
    edge__routes_free(&rt);
}

static void test_route_key_raw(void **state)
{
    struct edge_routes *rt = load_ok("routes = ( { prefix = \"/p\"; methods = [\"POST\"];"
                                     " key_body = \"raw\"; ttl = 5; max_body = 16; } );");
    const struct edge_route *r = edge__routes_match(rt, "/p", 2, HTTP_M_POST);
    struct buf a, b;
    char err[256];

    (void)state;
    buf_init(&a, 4096);
    buf_init(&b, 4096);
    /* Raw bytes: whitespace counts, and no JSON is needed. */
    assert_int_equal(route_key(r, HTTP_M_POST, "{\"a\":1}", &a, err, sizeof(err)), 0);
    assert_int_equal(route_key(r, HTTP_M_POST, "{ \"a\":1}", &b, err, sizeof(err)), 0);
    assert_int_equal(a.len, 38);
    assert_string_not_equal(a.data, b.data);
    assert_int_equal(route_key(r, HTTP_M_POST, "\x01\x02 not json", &b, err, sizeof(err)), 0);
    assert_int_equal(route_key(r, HTTP_M_POST, "{\"a\":1}", &b, err, sizeof(err)), 0);
    assert_string_equal(a.data, b.data);
    assert_int_equal(route_key(r, HTTP_M_POST, "01234567890123456", &b, err, sizeof(err)), -EFBIG);
    buf_fini(&a);
    buf_fini(&b);
    edge__routes_free(&rt);
}

static struct http_str S(const char *s) {
    struct http_str r = {s, strlen(s)};
    return r;
}

/* The whole key of a GET as the edge builds it: primary key under the route's query rules
 * (and the edge-wide ignore list), then the route's part. */
static void
key_is(const struct edge_routes *rt, const struct cache_key_opts *opts, const char *path,
       const char *query, const char *want)
{
    const struct edge_route *r = edge__routes_match(rt, path, strlen(path), HTTP_M_GET);
    struct http_request req = post_req(HTTP_M_GET);
    char err[128];
    struct buf b;

    buf_init(&b, 1024);
    assert_int_equal(cache_key_primary_ex(&b, S("h"), S(path), S(query), opts,
                                          r ? &r->query : NULL),
                     0);
    if (r != NULL)
        assert_int_equal(edge__route_key(r, &req, NULL, 0, &b, err, sizeof(err)), 0);
    if (strcmp(b.data, want) != 0)
        print_error("%s?%s: got %s want %s\n", path, query, b.data, want);
    assert_string_equal(b.data, want);
    buf_fini(&b);
}

static void test_route_query_rules(void **state)
{
    static const char *const global[] = {"utm_source"};
    struct cache_key_opts opts = {global, 1};
    struct edge_routes *rt = load_ok(
        "routes = (\n"
        "  { prefix = \"/features/\"; ignore_params = [\"session\", \"ts\"]; },\n"
        "  { prefix = \"/embeddings/\"; query_keys = [\"id\", \"v\"]; },\n"
        "  { prefix = \"/static/\"; query = \"drop\"; },\n"
        "  { prefix = \"/both/\"; query_keys = [\"id\", \"ts\"]; ignore_params = [\"ts\"]; }\n"
        ");\n");
    struct buf b;

    (void)state;
    /* Sorted, minus the route's and the edge's ignored names. */
    key_is(rt, &opts, "/features/u1", "ts=9&b=2&session=abc&a=1&utm_source=x",
           "h/features/u1?a=1&b=2");
    key_is(rt, &opts, "/features/u1", "session=abc", "h/features/u1");
    /* Whitelist: only id and v, sorted; names compared after %-normalisation. */
    key_is(rt, &opts, "/embeddings/e", "v=2&x=1&id=7&%69d=8&idx=3", "h/embeddings/e?id=7&id=8&v=2");
    key_is(rt, &opts, "/embeddings/e", "x=1", "h/embeddings/e");
    /* Dropped entirely, bad escapes included. */
    key_is(rt, &opts, "/static/m.onnx", "v=3&cb=%zz", "h/static/m.onnx");
    /* Whitelist and ignore together. */
    key_is(rt, &opts, "/both/x", "ts=1&id=2&z=3", "h/both/x?id=2");
    /* No route: the primary key as before, and cache_key_primary_ex(NULL) is it. */
    key_is(rt, &opts, "/other", "b=1&a=2&utm_source=x", "h/other?a=2&b=1");
    buf_init(&b, 64);
    assert_int_equal(cache_key_primary(&b, S("h"), S("/other"), S("b=1&a=2&utm_source=x"), &opts),
                     0);
    assert_string_equal(b.data, "h/other?a=2&b=1");
    /* A bad escape in a kept query is still an error. */
    buf_reset(&b);
    assert_int_equal(cache_key_primary_ex(&b, S("h"), S("/features/a"), S("a=%zz"), &opts,
                                          &edge__routes_match(rt, "/features/a", 11, HTTP_M_GET)
                                               ->query),
                     -EINVAL);
    assert_int_equal(b.len, 0);
    buf_fini(&b);
    edge__routes_free(&rt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_example),
        cmocka_unit_test(test_load_shipped_conf),
        cmocka_unit_test(test_load_defaults_and_forms),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_route_key_body),
        cmocka_unit_test(test_route_key_raw),
        cmocka_unit_test(test_route_query_rules),
    };

    return cmocka_run_group_tests_name("edge_routes", tests, NULL, NULL);
}
