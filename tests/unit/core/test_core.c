/* tests/unit/core/test_core.c: units, bounded buffers, config + flags, metrics. */
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

#include "core/buf.h"
#include "core/conf.h"
#include "core/mc.h"
#include "core/metrics.h"
#include "core/units.h"

static void test_sizes(void **state)
{
    uint64_t v;
    (void)state;
    assert_int_equal(units_parse_size("64M", &v), 0);
    assert_int_equal(v, 64ull << 20);
    assert_int_equal(units_parse_size("2G", &v), 0);
    assert_int_equal(v, 2ull << 30);
    assert_int_equal(units_parse_size("1.5K", &v), 0);
    assert_int_equal(v, 1536);
    assert_int_equal(units_parse_size("512", &v), 0);
    assert_int_equal(v, 512);
    assert_int_equal(units_parse_size("8MiB", &v), 0);
    assert_int_equal(v, 8ull << 20);
    v = 7;
    assert_int_equal(units_parse_size("12Q", &v), -EINVAL);
    assert_int_equal(units_parse_size("-1M", &v), -EINVAL);
    assert_int_equal(units_parse_size("", &v), -EINVAL);
    assert_int_equal(units_parse_size("M", &v), -EINVAL);
    assert_int_equal(v, 7); /* untouched on error */
}

static void test_durations(void **state)
{
    uint64_t v;
    (void)state;
    assert_int_equal(units_parse_duration_ms("500ms", &v), 0);
    assert_int_equal(v, 500);
    assert_int_equal(units_parse_duration_ms("2s", &v), 0);
    assert_int_equal(v, 2000);
    assert_int_equal(units_parse_duration_ms("3", &v), 0);
    assert_int_equal(v, 3000);
    assert_int_equal(units_parse_duration_ms("1.5m", &v), 0);
    assert_int_equal(v, 90000);
    assert_int_equal(units_parse_duration_ms("2h", &v), 0);
    assert_int_equal(v, 7200000);
    assert_int_equal(units_parse_duration_ms("5x", &v), -EINVAL);
}

static void test_buf_cap(void **state)
{
    struct buf b;
    (void)state;
    buf_init(&b, 10);
    assert_int_equal(buf_puts(&b, "hello"), 0);
    assert_int_equal(buf_printf(&b, "%d", 12345), 0);
    assert_int_equal(b.len, 10);
    assert_int_equal(buf_puts(&b, "x"), -E2BIG);
    assert_int_equal(b.len, 10);
    assert_string_equal(b.data, "hello12345");
    buf_consume(&b, 5);
    assert_string_equal(b.data, "12345");
    buf_reset(&b);
    assert_int_equal(buf_append_u64(&b, 0), 0);
    assert_int_equal(buf_append_u64(&b, 987654321), 0);
    assert_string_equal(b.data, "0987654321");
    buf_fini(&b);
}

static void test_consttime_eq(void **state)
{
    (void)state;
    assert_true(mc_consttime_eq("abc", 3, "abc", 3));
    assert_false(mc_consttime_eq("abc", 3, "abd", 3));
    assert_false(mc_consttime_eq("abc", 3, "abcd", 4));
    assert_false(mc_consttime_eq("", 0, "a", 1));
}

static void test_conf_file_and_flags(void **state)
{
    char path[] = "/tmp/mlcdn-conf-XXXXXX";
    int fd = mkstemp(path);
    const char *text = "listen = \"127.0.0.1:9000\";\nmem = \"64M\";\nthreads = 4;\n"
                       "edge = [\"a\", \"b\"];\ntimeout = \"250ms\";\nverbose = true;\n";
    const char *listen = "default", *region = "r0";
    uint64_t mem = 0, timeout = 0;
    long threads = 1;
    int verbose = 0;
    struct conf_strlist edges = {0};
    struct conf c;
    char err[256];
    const struct conf_opt opts[] = {
        {"listen", CONF_STR, &listen, ""},    {"region", CONF_STR, &region, ""},
        {"mem", CONF_SIZE, &mem, ""},         {"threads", CONF_INT, &threads, ""},
        {"edge", CONF_STRLIST, &edges, ""},   {"timeout", CONF_DURATION, &timeout, ""},
        {"verbose", CONF_BOOL, &verbose, ""},
    };
    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);

    char *argv[] = {"edge", "--config", path, "--threads", "8", "--edge=c", "--region", "eu"};
    assert_int_equal(conf_parse(&c, opts, MC_ARRAY_SIZE(opts), 8, argv, 0, err, sizeof(err)), 0);
    assert_string_equal(listen, "127.0.0.1:9000"); /* from the file */
    assert_int_equal(mem, 64ull << 20);
    assert_int_equal(threads, 8); /* the flag wins */
    assert_int_equal(timeout, 250);
    assert_true(verbose);
    assert_string_equal(region, "eu");
    assert_int_equal(edges.n, 1); /* a flag replaces the file's list */
    assert_string_equal(edges.v[0], "c");
    conf_fini(&c);

    char *bad[] = {"edge", "--mem", "12Q"};
    assert_int_equal(conf_parse(&c, opts, MC_ARRAY_SIZE(opts), 3, bad, 0, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "--mem"));
    conf_fini(&c);

    char *unknown[] = {"edge", "--nope", "1"};
    assert_int_equal(conf_parse(&c, opts, MC_ARRAY_SIZE(opts), 3, unknown, 0, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "--nope"));
    conf_fini(&c);

    char *missing[] = {"edge", "--config", "/nonexistent/mlcdn.conf"};
    assert_int_equal(conf_parse(&c, opts, MC_ARRAY_SIZE(opts), 3, missing, 0, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "/nonexistent/mlcdn.conf"));
    conf_fini(&c);

    FILE *f = fopen(path, "w");
    fputs("threads = ;\n", f);
    fclose(f);
    char *syntax[] = {"edge", "--config", path};
    assert_int_equal(conf_parse(&c, opts, MC_ARRAY_SIZE(opts), 3, syntax, 0, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, ":1:")); /* names the line */
    conf_fini(&c);
    unlink(path);
}

/* What a reload needs from conf: unknown keys refused with their line, restart-only
 * options put back (and named), a later check's message located in the file. */
static void test_conf_reload_helpers(void **state)
{
    char path[] = "/tmp/mlcdn-conf-XXXXXX";
    int fd = mkstemp(path);
    const char *text = "listen = \"a:1\";\nthreads = 4;\nedge = [\"x\"];\nroutes = ();\n";
    struct {
        const char *listen;
        long threads;
        struct conf_strlist edges;
    } v1 = {"d", 1, {0}}, v2 = {"d", 1, {0}};
    struct conf c1, c2;
    char err[256], names[64];
    static const char *const groups[] = {"routes"};
    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
#define OPTS(v)                                                                                    \
    {                                                                                              \
        {"listen", CONF_STR, &(v).listen, ""}, {"threads", CONF_INT, &(v).threads, ""},            \
            {"edge", CONF_STRLIST, &(v).edges, "", CONF_RELOAD},                                   \
    }
    const struct conf_opt o1[] = OPTS(v1), o2[] = OPTS(v2);
#undef OPTS
    char *argv[] = {"edge", "--config", path};
    assert_int_equal(conf_parse(&c1, o1, 3, 3, argv, 0, err, sizeof(err)), 0);
    assert_int_equal(conf_check_keys(&c1, o1, 3, groups, 1, err, sizeof(err)), 0);
    assert_int_equal(conf_check_keys(&c1, o1, 3, NULL, 0, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, ":4: unknown setting 'routes'"));

    FILE *f = fopen(path, "w");
    fputs("listen = \"b:2\";\nthreads = 4;\nedge = [\"y\", \"z\"];\n", f);
    fclose(f);
    assert_int_equal(conf_parse(&c2, o2, 3, 3, argv, 0, err, sizeof(err)), 0);
    assert_int_equal(conf_keep_restart_only(o1, o2, 3, names, sizeof(names)), 1);
    assert_string_equal(names, "listen");
    assert_string_equal(v2.listen, "a:1"); /* the running value */
    assert_int_equal(v2.edges.n, 2);       /* CONF_RELOAD: the new value */

    snprintf(err, sizeof(err), "--threads: too many");
    conf_locate(&c2, (const char *const *)argv, 3, err, sizeof(err));
    assert_non_null(strstr(err, ":2: --threads: too many"));
    char *flagged[] = {"edge", "--config", path, "--threads", "9"};
    snprintf(err, sizeof(err), "--threads: too many");
    conf_locate(&c2, (const char *const *)flagged, 5, err, sizeof(err));
    assert_string_equal(err, "--threads: too many"); /* the flag's value, not the file's */
    conf_fini(&c1);
    conf_fini(&c2);
    unlink(path);
}

static void test_metrics_render(void **state)
{
    struct buf b;
    (void)state;
    metrics_reset();
    struct metrics_counter *c = metrics_counter("t_requests_total", "Requests", "code=\"200\"");
    assert_ptr_equal(c, metrics_counter("t_requests_total", "Requests", "code=\"200\""));
    metrics_counter_add(c, 3);
    metrics_counter_add(metrics_counter("t_requests_total", "Requests", "code=\"404\""), 1);
    struct metrics_gauge *g = metrics_gauge("t_temp", "Temperature", NULL);
    metrics_gauge_set(g, 1.5);
    metrics_gauge_add(g, 1.0);
    struct metrics_hist *h = metrics_hist("t_latency_seconds", "Latency", NULL, 1e6, 1000, 1000000);
    for (int i = 0; i < 100; i++)
        metrics_hist_observe(h, 10000); /* 10 ms */
    metrics_hist_observe(h, 500000);
    buf_init(&b, 1 << 20);
    assert_int_equal(metrics_render(&b), 0);
    assert_non_null(strstr(b.data, "# TYPE t_requests_total counter\n"));
    assert_non_null(strstr(b.data, "t_requests_total{code=\"200\"} 3\n"));
    assert_non_null(strstr(b.data, "t_requests_total{code=\"404\"} 1\n"));
    assert_non_null(strstr(b.data, "t_temp 2.5\n"));
    assert_non_null(strstr(b.data, "# TYPE t_latency_seconds histogram\n"));
    assert_non_null(strstr(b.data, "t_latency_seconds_bucket{le=\"+Inf\"} 101\n"));
    assert_non_null(strstr(b.data, "t_latency_seconds_count 101\n"));
    assert_non_null(strstr(b.data, "t_latency_seconds_bucket{le=\"0.016384\"} 100\n"));
    /* Quantiles are within one sub-bucket (12.5%) of the truth. */
    uint64_t p50 = metrics_hist_quantile(h, 0.5);
    assert_true(p50 >= 9000 && p50 <= 11000);
    uint64_t p999 = metrics_hist_quantile(h, 0.999);
    assert_true(p999 >= 440000 && p999 <= 560000);
    buf_fini(&b);
    metrics_reset();
}

/* A model removed from a registry takes its series out of the export, and only its own;
 * showing the pair again brings them back with their values. */
static void test_metrics_hide_label(void **state)
{
    struct buf b;

    (void)state;
    metrics_reset();
    struct metrics_counter *a = metrics_counter("t_runs_total", "Runs",
                                                "model=\"a\",status=\"ok\"");
    metrics_counter_add(a, 2);
    metrics_counter_add(metrics_counter("t_runs_total", "Runs", "model=\"ab\""), 1);
    metrics_counter_add(metrics_counter("t_runs_total", "Runs", "xmodel=\"a\""), 1);
    metrics_counter_add(metrics_counter("t_only_a_total", "Only a", "model=\"a\""), 5);
    metrics_hide_label("model", "a");
    metrics_counter_add(a, 1); /* the pointer stays valid */
    buf_init(&b, 1 << 20);
    assert_int_equal(metrics_render(&b), 0);
    assert_null(strstr(b.data, "{model=\"a\""));
    assert_non_null(strstr(b.data, "t_runs_total{model=\"ab\"} 1"));
    assert_non_null(strstr(b.data, "t_runs_total{xmodel=\"a\"} 1"));
    assert_null(strstr(b.data, "t_only_a_total")); /* no series left: no HELP/TYPE either */
    /* Registered again, or anew, while hidden: still hidden (a late request). */
    buf_reset(&b);
    assert_ptr_equal(a, metrics_counter("t_runs_total", "Runs", "model=\"a\",status=\"ok\""));
    metrics_counter_add(metrics_counter("t_runs_total", "Runs", "model=\"a\",status=\"no\""), 1);
    assert_int_equal(metrics_render(&b), 0);
    assert_null(strstr(b.data, "{model=\"a\""));
    /* Shown again: every series of the pair, with its values. */
    metrics_show_label("model", "a");
    buf_reset(&b);
    assert_int_equal(metrics_render(&b), 0);
    assert_non_null(strstr(b.data, "t_runs_total{model=\"a\",status=\"ok\"} 3"));
    assert_non_null(strstr(b.data, "t_runs_total{model=\"a\",status=\"no\"} 1"));
    assert_non_null(strstr(b.data, "t_only_a_total{model=\"a\"} 5"));
    buf_fini(&b);
    metrics_reset();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_buf_cap),
        cmocka_unit_test(test_consttime_eq),
        cmocka_unit_test(test_conf_file_and_flags),
        cmocka_unit_test(test_conf_reload_helpers),
        cmocka_unit_test(test_metrics_render),
        cmocka_unit_test(test_metrics_hide_label),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
