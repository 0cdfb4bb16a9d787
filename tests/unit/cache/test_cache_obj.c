/* tests/unit/cache/test_cache_obj.c: object and body refcounting, cache_obj_dup, stored-header
 * lookup, and the body's chunk list, memfd and file forms read through cursors. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cache/cache_obj.h"
#include "core/mc.h"

static char *dupstr(const char *s)
{
    char *d = strdup(s);
    assert_non_null(d);
    return d;
}

static int fcntl_closed(int fd)
{
    return fcntl(fd, F_GETFD) == -1 && errno == EBADF;
}

static unsigned refs(_Atomic unsigned *r)
{
    return atomic_load(r);
}

/* Reads the whole published body through a cursor, `max` bytes per span at most. */
static size_t read_all(const struct cache_body *b, char *out, size_t cap, size_t max)
{
    struct cache_body_cursor cur;
    const char *span;
    size_t got = 0, n;

    cache_body_cursor_init(&cur, b);
    while ((n = cache_body_next(&cur, b, UINT64_MAX, max, &span)) > 0) {
        assert_true(n <= max);
        assert_true(got + n <= cap);
        memcpy(out + got, span, n);
        got += n;
    }
    return got;
}

static void test_body_refcount(void **st)
{
    struct cache_body *b = cache_body_from("hello", 5);
    assert_non_null(b);
    assert_int_equal(refs(&b->refcnt), 1);
    struct cache_body *r = cache_body_ref(b);
    assert_ptr_equal(r, b);
    assert_int_equal(refs(&b->refcnt), 2);
    cache_body_unref(&r);
    assert_null(r);
    /* One reference left: still readable. */
    assert_int_equal(refs(&b->refcnt), 1);
    char out[8];
    assert_int_equal(read_all(b, out, sizeof(out), 64), 5);
    assert_memory_equal(out, "hello", 5);
    assert_int_equal(cache_body_state(b), CACHE_BODY_COMPLETE);
    cache_body_unref(&b);
    assert_null(b);
    cache_body_unref(&b); /* NULL: nothing */
    /* An empty body is complete with nothing to read. */
    b = cache_body_from("", 0);
    assert_int_equal(cache_body_len(b), 0);
    assert_int_equal(cache_body_state(b), CACHE_BODY_COMPLETE);
    assert_int_equal(read_all(b, out, sizeof(out), 64), 0);
    cache_body_unref(&b);
}

static void test_obj_refcount_and_body(void **st)
{
    static const char h[] = "Content-Type: text/plain\r\nETag: \"a\"\r\n";
    struct cache_body *b = cache_body_from("xyz", 3);
    struct cache_body *keep = cache_body_ref(b);
    struct cache_obj *o = cache_obj_new(200, dupstr(h), sizeof(h) - 1, b);

    assert_int_equal(o->status, 200);
    assert_ptr_equal(o->body, keep);
    assert_string_equal(o->vkey, "");
    assert_int_equal(o->vkey_len, 0);
    assert_null(o->etag);
    assert_int_equal(refs(&o->refcnt), 1);
    struct cache_obj *r = cache_obj_ref(o);
    assert_int_equal(refs(&o->refcnt), 2);
    cache_obj_unref(&r);
    assert_null(r);
    /* The object still holds its body reference. */
    assert_int_equal(refs(&keep->refcnt), 2);
    cache_obj_unref(&o);
    assert_null(o);
    /* The last object reference gave the body reference back. */
    assert_int_equal(refs(&keep->refcnt), 1);
    cache_body_unref(&keep);
}

static void test_obj_dup(void **st)
{
    static const char h[] = "Content-Type: text/plain\r\nETag: \"v1\"\r\nVary: Accept\r\n";
    struct cache_body *b = cache_body_from("body", 4);
    struct cache_obj *o = cache_obj_new(200, dupstr(h), sizeof(h) - 1, cache_body_ref(b));

    free(o->vkey);
    o->vkey = dupstr("accept=gzip");
    o->vkey_len = strlen(o->vkey);
    o->etag = dupstr("\"v1\"");
    o->vary = dupstr("accept");
    o->request_time = 1000;
    o->response_time = 1001;
    o->lifetime = 60;
    o->has_accept_ranges = 1;
    o->info.status = 200;

    /* A 304 revalidation: same response facts, and the same body shared. */
    struct cache_obj *d = cache_obj_dup(o, cache_body_ref(b));
    assert_int_equal(refs(&b->refcnt), 3);
    assert_int_equal(refs(&d->refcnt), 1);
    assert_ptr_equal(d->body, o->body);
    assert_int_equal(d->status, 200);
    assert_int_equal(d->hdrs_len, o->hdrs_len);
    assert_memory_equal(d->hdrs, h, sizeof(h) - 1);
    assert_ptr_not_equal(d->hdrs, o->hdrs);
    assert_int_equal(d->vkey_len, o->vkey_len);
    assert_string_equal(d->vkey, "accept=gzip");
    assert_ptr_not_equal(d->vkey, o->vkey);
    assert_string_equal(d->etag, "\"v1\"");
    assert_ptr_not_equal(d->etag, o->etag);
    assert_string_equal(d->vary, "accept");
    assert_int_equal(d->request_time, 1000);
    assert_int_equal(d->response_time, 1001);
    assert_int_equal(d->lifetime, 60);
    assert_int_equal(d->has_accept_ranges, 1);
    assert_int_equal(d->info.status, 200);
    /* The copy outlives the original (its strings are its own). */
    cache_obj_unref(&o);
    assert_int_equal(refs(&b->refcnt), 2);
    const char *v;
    assert_int_equal(cache_obj_header(d, "etag", &v), 4);
    assert_memory_equal(v, "\"v1\"", 4);
    cache_obj_unref(&d);
    assert_int_equal(refs(&b->refcnt), 1);
    cache_body_unref(&b);

    /* An object without headers or ETag dups to one without them. */
    o = cache_obj_new(404, NULL, 0, NULL);
    d = cache_obj_dup(o, NULL);
    assert_int_equal(d->status, 404);
    assert_null(d->etag);
    assert_null(d->vary);
    assert_int_equal(cache_obj_header(d, "etag", &v), -1);
    cache_obj_unref(&o);
    cache_obj_unref(&d);
}

static void test_obj_header(void **st)
{
    static const char h[] = "Content-Type: text/plain\r\n"
                            "X-Empty:\r\n"
                            "X-Tab:\t \tspaced \r\n"
                            "Content-Length: 12\r\n"
                            "x-lf-only: yes\n";
    struct cache_obj *o = cache_obj_new(200, dupstr(h), sizeof(h) - 1, NULL);
    const char *v = NULL;

    /* Case-insensitive name, leading blanks skipped, CR not part of the value. */
    assert_int_equal(cache_obj_header(o, "content-type", &v), 10);
    assert_memory_equal(v, "text/plain", 10);
    assert_int_equal(cache_obj_header(o, "CONTENT-LENGTH", &v), 2);
    assert_memory_equal(v, "12", 2);
    assert_int_equal(cache_obj_header(o, "x-tab", &v), 7);
    assert_memory_equal(v, "spaced ", 7);
    assert_int_equal(cache_obj_header(o, "X-Empty", &v), 0);
    assert_int_equal(cache_obj_header(o, "X-LF-Only", &v), 3);
    assert_memory_equal(v, "yes", 3);
    /* Prefixes and extensions of a stored name are other names. */
    assert_int_equal(cache_obj_header(o, "Content", &v), -1);
    assert_int_equal(cache_obj_header(o, "Content-Type-X", &v), -1);
    assert_int_equal(cache_obj_header(o, "ETag", &v), -1);
    cache_obj_unref(&o);
    /* A name as a value does not match: only names at a line's start. */
    static const char h2[] = "X-Note: ETag: no\r\n";
    o = cache_obj_new(200, dupstr(h2), sizeof(h2) - 1, NULL);
    assert_int_equal(cache_obj_header(o, "ETag", &v), -1);
    cache_obj_unref(&o);
}

static void test_body_chunks_and_cursor(void **st)
{
    /* Unknown length: several chunks (16 KiB, then 256 KiB ones). */
    size_t n = 700 * 1024 + 3;
    char *src = malloc(n), *out = malloc(n);
    assert_non_null(src);
    assert_non_null(out);
    for (size_t i = 0; i < n; i++)
        src[i] = (char)(i * 131 + (i >> 9));
    struct cache_body *b = cache_body_new_heap(-1);
    assert_int_equal(cache_body_state(b), CACHE_BODY_FILLING);

    /* A reader set up before any byte exists follows the filler. */
    struct cache_body_cursor early;
    const char *span;
    cache_body_cursor_init(&early, b);
    assert_int_equal(cache_body_next(&early, b, UINT64_MAX, 1 << 20, &span), 0);

    for (size_t at = 0; at < n;) {
        size_t k = MC_MIN(n - at, 10007);
        assert_int_equal(cache_body_append(b, src + at, k), 0);
        at += k;
        assert_int_equal(cache_body_len(b), at);
    }
    assert_non_null(b->head);
    assert_non_null(atomic_load(&b->head->next));
    assert_int_equal(cache_body_next(&early, b, UINT64_MAX, 100, &span), 100);
    assert_memory_equal(span, src, 100);
    cache_body_finish(b, CACHE_BODY_COMPLETE);

    memset(out, 0, n);
    assert_int_equal(read_all(b, out, n, 5000), n);
    assert_memory_equal(out, src, n);
    /* Heap bodies have no memfd. */
    assert_int_equal(cache_body_sendfile_fd(b), -1);

    /* Seek into a later chunk, read up to a limit. */
    struct cache_body_cursor cur;
    uint64_t pos = 300 * 1024 + 17;
    cache_body_cursor_seek(&cur, b, pos);
    size_t got = 0, k;
    while ((k = cache_body_next(&cur, b, pos + 1000, 64 * 1024, &span)) > 0) {
        assert_memory_equal(span, src + pos + got, k);
        got += k;
    }
    assert_int_equal(got, 1000);
    /* At the end: nothing more. */
    cache_body_cursor_seek(&cur, b, n);
    assert_int_equal(cache_body_next(&cur, b, UINT64_MAX, 10, &span), 0);
    cache_body_unref(&b);
    free(src);
    free(out);
}

static void test_body_memfd(void **st)
{
    size_t n = CACHE_BODY_MEMFD_MIN;
    char *src = malloc(n + 10), *out = malloc(n + 10);
    assert_non_null(src);
    assert_non_null(out);
    for (size_t i = 0; i < n + 10; i++)
        src[i] = (char)(i * 7);

    struct cache_body *b = cache_body_new((int64_t)n);
    if (b->memfd < 0) {
        cache_body_unref(&b);
        free(src);
        free(out);
        skip(); /* no memfd on this kernel: the heap form is tested above */
    }
    assert_int_equal(cache_body_append(b, src, n), 0);
    /* Only a complete body is sent from its memfd. */
    assert_int_equal(cache_body_sendfile_fd(b), -1);
    cache_body_finish(b, CACHE_BODY_COMPLETE);
    assert_int_equal(cache_body_sendfile_fd(b), b->memfd);
    assert_int_equal(read_all(b, out, n, 1 << 20), n);
    assert_memory_equal(out, src, n);
    cache_body_unref(&b);

    /* An origin that sends more than it announced: the extra goes to a heap chunk, and the
     * memfd (which holds only the announced bytes) is no longer the whole body. */
    b = cache_body_new((int64_t)n);
    assert_int_equal(cache_body_append(b, src, n + 10), 0);
    cache_body_finish(b, CACHE_BODY_COMPLETE);
    assert_int_equal(cache_body_len(b), n + 10);
    assert_int_equal(cache_body_sendfile_fd(b), -1);
    assert_int_equal(read_all(b, out, n + 10, 1 << 20), n + 10);
    assert_memory_equal(out, src, n + 10);
    cache_body_unref(&b);
    free(src);
    free(out);
}

static void test_body_file(void **st)
{
    char path[] = "/tmp/mlcdn-cache-obj-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(pwrite(fd, "HEAD", 4, 0), 4);

    /* The body starts at offset 4 of the file; the body owns and closes the fd. */
    struct cache_body *b = cache_body_new_file(fd, 4, 11);
    uint64_t off = 0;
    assert_int_equal(cache_body_file(b, &off), fd);
    assert_int_equal(off, 4);
    assert_int_equal(cache_body_append(b, "hello ", 6), 0);
    assert_int_equal(cache_body_append(b, "world", 5), 0);
    assert_int_equal(cache_body_len(b), 11);
    char buf[16] = {0};
    assert_int_equal(pread(fd, buf, 15, 0), 15);
    assert_memory_equal(buf, "HEADhello world", 15);
    /* Readers of a file body use sendfile, never spans. */
    struct cache_body_cursor cur;
    const char *span;
    cache_body_cursor_init(&cur, b);
    assert_int_equal(cache_body_next(&cur, b, UINT64_MAX, 100, &span), 0);
    /* Bytes written into the file by someone else, then published. */
    assert_int_equal(pwrite(fd, "!!", 2, 15), 2);
    cache_body_publish(b, 13);
    assert_int_equal(cache_body_len(b), 13);
    cache_body_finish(b, CACHE_BODY_COMPLETE);
    assert_int_equal(cache_body_sendfile_fd(b), -1); /* not a memfd body */
    cache_body_unref(&b);
    /* The fd was closed with the body. */
    assert_int_equal(fcntl_closed(fd), 1);

    /* Non-file bodies have no file. */
    b = cache_body_from("x", 1);
    assert_int_equal(cache_body_file(b, &off), -1);
    cache_body_unref(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_refcount),
        cmocka_unit_test(test_obj_refcount_and_body),
        cmocka_unit_test(test_obj_dup),
        cmocka_unit_test(test_obj_header),
        cmocka_unit_test(test_body_chunks_and_cursor),
        cmocka_unit_test(test_body_memfd),
        cmocka_unit_test(test_body_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
