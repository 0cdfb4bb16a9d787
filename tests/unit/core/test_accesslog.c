/* tests/unit/core/test_accesslog.c: access log lines (combined and JSON, escaping, long
 * targets), the writer (every line written, reopen after a rename), the bound on memory
 * (lines dropped and counted, never buffered beyond the cap), and the metrics helpers the
 * daemons share (label escaping, process_* and build_info). */
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
#include <jansson.h>

#include "../../src/core/accesslog.c"
#include "core/metrics.h"

#define T0 1796617351123456LL /* 2026-12-07T04:22:31.123456Z */

static struct accesslog_rec rec(void)
{
    struct accesslog_rec r;
    memset(&r, 0, sizeof(r));
    r.client = "127.0.0.1";
    r.listener = "public";
    r.method = "GET";
    r.method_len = 3;
    r.target = "/a/b?x=1";
    r.target_len = 8;
    r.http_minor = 1;
    r.status = 200;
    r.bytes = 1024;
    r.cache = "HIT";
    r.level = "L1";
    r.ttfb_us = 12;
    r.total_us = 1500034;
    r.upstream_us = -1;
    r.version = -1;
    return r;
}

static void test_combined(void **state)
{
    char out[4096];
    struct accesslog_rec r = rec();
    (void)state;

    size_t n = accesslog_format(ACCESSLOG_COMBINED, &r, T0, out, sizeof(out));
    assert_true(n > 0);
    out[n] = '\0';
    assert_string_equal(out, "127.0.0.1 - - [07/Dec/2026:04:22:31 +0000] \"GET /a/b?x=1 HTTP/1.1\" "
                             "200 1024 \"-\" \"-\" cache=HIT level=L1 ttfb=0.000012 "
                             "time=1.500034 upstream=- model=- version=- listener=public "
                             "completion=OK\n");
    /* A client cannot split or forge a line: quotes, backslashes, controls and bytes
     * outside ASCII are escaped. */
    r.user_agent = "a\"b\\c\nd\xc3\xa9";
    r.user_agent_len = strlen(r.user_agent);
    r.referer = "http://x/";
    r.referer_len = 9;
    r.model = "m\"1";
    r.version = 3;
    r.upstream_us = 250;
    r.incomplete = 1;
    r.http_minor = 0;
    n = accesslog_format(ACCESSLOG_COMBINED, &r, T0, out, sizeof(out));
    out[n] = '\0';
    assert_non_null(strstr(out, "\"GET /a/b?x=1 HTTP/1.0\""));
    assert_non_null(strstr(out, "\"http://x/\" \"a\\x22b\\x5cc\\x0ad\\xc3\\xa9\""));
    assert_non_null(strstr(out, " upstream=0.000250 model=m\\x221 version=3 "));
    assert_non_null(strstr(out, "completion=-\n"));
    assert_int_equal(count_lines(out, n), 1); /* one line, whatever the client sent */
    /* Too small a buffer: nothing (never a cut line). */
    assert_int_equal(accesslog_format(ACCESSLOG_COMBINED, &r, T0, out, 40), 0);
}

static void test_json(void **state)
{
    char out[4096];
    struct accesslog_rec r = rec();
    json_error_t je;
    (void)state;

    r.user_agent = "q\"\x01\xff";
    r.user_agent_len = 4;
    r.model = "logreg";
    r.version = 2;
    r.upstream_us = 2000001;
    size_t n = accesslog_format(ACCESSLOG_JSON, &r, T0, out, sizeof(out));
    assert_true(n > 0 && out[n - 1] == '\n');
    json_t *j = json_loadb(out, n, 0, &je);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "time")),
                        "2026-12-07T04:22:31.123456Z");
    assert_string_equal(json_string_value(json_object_get(j, "url")), "/a/b?x=1");
    assert_string_equal(json_string_value(json_object_get(j, "user_agent")), "q\"\x01\xc3\xbf");
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 200);
    assert_int_equal(json_integer_value(json_object_get(j, "bytes")), 1024);
    assert_true(json_is_null(json_object_get(j, "referer")));
    assert_string_equal(json_string_value(json_object_get(j, "cache")), "HIT");
    assert_string_equal(json_string_value(json_object_get(j, "model")), "logreg");
    assert_int_equal(json_integer_value(json_object_get(j, "version")), 2);
    assert_true(json_real_value(json_object_get(j, "upstream_s")) > 2.0);
    assert_true(json_is_true(json_object_get(j, "complete")));
    json_decref(j);
}

static void test_long_target(void **state)
{
    static char t[ACCESSLOG_TARGET_MAX + 100], out[16384];
    struct accesslog_rec r = rec();
    (void)state;

    memset(t, 'a', sizeof(t));
    t[0] = '/';
    r.target = t;
    r.target_len = sizeof(t);
    size_t n = accesslog_format(ACCESSLOG_COMBINED, &r, T0, out, sizeof(out));
    out[n] = '\0';
    char *dots = strstr(out, "...#");
    assert_non_null(dots);
    assert_int_equal(dots - strstr(out, "GET /") - 4, ACCESSLOG_TARGET_KEEP);
    assert_int_equal(strspn(dots + 4, "0123456789abcdef"), 16);
    /* Another long target gives another hash. */
    char first[17];
    memcpy(first, dots + 4, 16);
    first[16] = '\0';
    t[sizeof(t) - 1] = 'b';
    n = accesslog_format(ACCESSLOG_COMBINED, &r, T0, out, sizeof(out));
    out[n] = '\0';
    assert_null(strstr(out, first));
}

static size_t file_lines(const char *path)
{
    size_t n = 0;
    int c;
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static void test_writer_and_reopen(void **state)
{
    char dir[] = "/tmp/mlcdn-alog-XXXXXX", path[256], old[256], err[256];
    struct accesslog *al = NULL;
    struct accesslog_rec r = rec();
    (void)state;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/access.log", dir);
    snprintf(old, sizeof(old), "%s/access.log.1", dir);
    assert_int_equal(accesslog_open(path, "bogus", 0, &al, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "--access-log-format"));
    assert_int_equal(accesslog_open("/nonexistent-dir/x.log", NULL, 0, &al, err, sizeof(err)),
                     -ENOENT);
    assert_non_null(strstr(err, "/nonexistent-dir/x.log"));
    assert_int_equal(accesslog_open(path, "combined", 0, &al, err, sizeof(err)), 0);
    struct accesslog_local *l = accesslog_local_new(al);
    for (int i = 0; i < 1000; i++)
        accesslog_write(l, &r);
    accesslog_flush(al);
    assert_int_equal(file_lines(path), 1000);
    assert_int_equal(accesslog_lines(al), 1000);
    assert_int_equal(accesslog_dropped(al), 0);

    /* logrotate: rename, then the signal; lines from before go to the old file. */
    for (int i = 0; i < 3; i++)
        accesslog_write(l, &r);
    assert_int_equal(rename(path, old), 0);
    accesslog_reopen(al);
    while (accesslog_reopens(al) < 1)
        usleep(1000);
    for (int i = 0; i < 2; i++)
        accesslog_write(l, &r);
    accesslog_free(&al); /* writes what is buffered */
    assert_null(al);
    assert_int_equal(file_lines(old), 1003);
    assert_int_equal(file_lines(path), 2);
    unlink(old);
    unlink(path);
    rmdir(dir);
}

/* No writer runs here (the struct is set up by hand): a full buffer must drop lines and
 * count them, never grow. */
static void test_bounded(void **state)
{
    struct accesslog al;
    struct accesslog_rec r = rec();
    (void)state;

    memset(&al, 0, sizeof(al));
    MC_INIT_OBJ(&al, ACCESSLOG_MAGIC);
    al.cap = 1024;
    pthread_mutex_init(&al.mtx, NULL);
    pthread_cond_init(&al.cv, NULL);
    struct accesslog_local *l = accesslog_local_new(&al);
    for (int i = 0; i < 100; i++)
        accesslog_write(l, &r);
    assert_true(l->len <= al.cap);
    uint64_t kept = count_lines(l->buf, l->len);
    assert_true(kept > 0 && kept < 100);
    assert_int_equal(accesslog_dropped(&al) + kept, 100);
    assert_int_equal(al.kick, 1); /* the writer would have been woken at half */
    pthread_mutex_destroy(&l->mtx);
    free(l->buf);
    free(l->spare);
    free(l);
    pthread_mutex_destroy(&al.mtx);
    pthread_cond_destroy(&al.cv);
}

static void test_label_esc_and_process(void **state)
{
    struct buf b;
    (void)state;

    buf_init(&b, 1024);
    assert_int_equal(metrics_label_esc(&b, "a\"b\\c\nd"), 0);
    assert_string_equal(b.data, "a\\\"b\\\\c\\nd");
    buf_fini(&b);

    metrics_reset();
    metrics_process_register("1.2.3", "abc\"def");
    buf_init(&b, SIZE_MAX);
    assert_int_equal(metrics_render(&b), 0);
    assert_non_null(
        strstr(b.data, "mlcdn_build_info{version=\"1.2.3\",commit=\"abc\\\"def\"} 1\n"));
    assert_non_null(strstr(b.data, "# TYPE process_cpu_seconds_total counter\n"));
    const char *rss = strstr(b.data, "\nprocess_resident_memory_bytes ");
    assert_non_null(rss);
    assert_true(strtod(rss + 31, NULL) > 0);
    const char *fds = strstr(b.data, "\nprocess_open_fds ");
    assert_non_null(fds);
    assert_true(strtod(fds + 18, NULL) >= 3);
    const char *st = strstr(b.data, "\nprocess_start_time_seconds ");
    assert_non_null(st);
    assert_true(strtod(st + 28, NULL) > 1.6e9);
    assert_non_null(strstr(b.data, "\nprocess_max_fds "));
    buf_fini(&b);
    metrics_reset();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_combined),    cmocka_unit_test(test_json),
        cmocka_unit_test(test_long_target), cmocka_unit_test(test_writer_and_reopen),
        cmocka_unit_test(test_bounded),     cmocka_unit_test(test_label_esc_and_process),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
