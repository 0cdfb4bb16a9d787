/* tests/unit/cache/test_cache_disk.c: L2, the disk store.
 *
 * Round trip; a reader following a body being written; restart and rebuild (with lookups,
 * probes, purges and writes while it runs); corruption by hand (a body byte, truncation, a
 * header byte); stale temporary files; the byte budget; Vary variants; removal and purge;
 * a full disk (a real 1 MiB tmpfs when mount(2) is allowed here, skipped otherwise) and
 * injected EIO; abort; open errors; kill -9 in the middle of writes; a concurrency smoke
 * test. Each test works in its own
 * mkdtemp directory under /tmp, removed afterwards.
 *
 * MLCDN_L2_CORPUS=dir makes test_header_roundtrip write valid headers there (the seed
 * corpus of tests/fuzz/fuzz_l2_header.c). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include <cmocka.h>
#include <xxhash.h>

#include "cache/cache_disk.h"
#include "cache/cache_key.h"
#include "cache/cache_mem.h"

struct fx {
    char dir[64];
    struct l2 *l2;
    int mounted;
};

static int rm_cb(const char *p, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)type;
    (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    strcpy(f->dir, "/tmp/l2test.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    l2__hold_rebuild(0);
    l2_close(&f->l2);
    if (f->mounted)
        umount2(f->dir, MNT_DETACH);
    nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static struct l2 *open_l2(struct fx *f, uint64_t budget, const char *policy)
{
    struct l2_cfg cfg = {f->dir, budget, policy};
    char err[256];

    assert_int_equal(l2_open(&cfg, &f->l2, err, sizeof(err)), 0);
    return f->l2;
}

static void wait_ready(struct l2 *l2)
{
    for (int i = 0; i < 5000 && !l2_ready(l2); i++)
        usleep(1000);
    assert_true(l2_ready(l2));
}

/* A parsed request with the given extra header lines; buf must outlive the result. */
static struct http_request *req_with(const char *hdrs, char *buf, size_t n, struct http_request *r)
{
    struct http_limits lim;
    const char *msg = NULL;

    http_limits_default(&lim);
    snprintf(buf, n, "GET / HTTP/1.1\r\nHost: h\r\n%s\r\n", hdrs);
    assert_true(http_parse_request(buf, strlen(buf), &lim, r, &msg) > 0);
    return r;
}

static struct cache_obj *meta(const char *hdrs, const char *vary, const char *vkey)
{
    struct cache_obj *o = cache_obj_new(200, strdup(hdrs), strlen(hdrs), NULL);

    o->request_time = 1000;
    o->response_time = 1001;
    o->lifetime = 60;
    if (vary)
        o->vary = strdup(vary);
    if (vkey) {
        free(o->vkey);
        o->vkey = strdup(vkey);
        o->vkey_len = strlen(vkey);
    }
    return o;
}

static void fill(char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (char)(seed * 131u + i * 7u + (i >> 8));
}

static int put(struct l2 *l2, const char *key, const struct cache_obj *o, const char *body,
               size_t n)
{
    struct l2_writer *w;
    int err = l2_writer_begin(l2, key, strlen(key), o, (int64_t)n, &w);

    if (err)
        return err;
    for (size_t off = 0; off < n; off += 1000) {
        err = l2_writer_append(w, body + off, n - off < 1000 ? n - off : 1000);
        if (err) {
            l2_writer_abort(&w);
            return err;
        }
    }
    return l2_writer_commit(&w);
}

/* Stores n bytes of fill(seed) under key, without Vary; the seed and length go in the
 * headers so that readers can check what they got. */
static int put_seed(struct l2 *l2, const char *key, size_t n, unsigned seed)
{
    char hdrs[128], *body = malloc(n ? n : 1);
    struct cache_obj *o;
    int err;

    snprintf(hdrs, sizeof(hdrs), "X-Seed: %u\r\nX-Len: %zu\r\n", seed, n);
    o = meta(hdrs, NULL, NULL);
    fill(body, n, seed);
    err = put(l2, key, o, body, n);
    cache_obj_unref(&o);
    free(body);
    return err;
}

/* Looks up and reads the variant `req` selects (NULL: no extra headers). On 0, *body is
 * malloc'd and *obj (when non-NULL) holds the decoded metadata. */
static int get(struct l2 *l2, const char *key, const struct http_request *req, char **body,
               size_t *n, struct cache_obj **obj)
{
    struct http_request r;
    struct l2_entry *en;
    struct l2_file f;
    char rb[256];
    int err;

    if (!req)
        req = req_with("", rb, sizeof(rb), &r);
    err = l2_lookup(l2, key, strlen(key), req, &en);
    if (err)
        return err;
    err = l2_read(l2, en, &f);
    l2_entry_unref(&en);
    if (err)
        return err;
    assert_int_equal(f.body_off % L2_ALIGN, 0);
    char *b = malloc(f.body_len + 1);
    assert_int_equal(pread(f.fd, b, f.body_len, (off_t)f.body_off), (ssize_t)f.body_len);
    close(f.fd);
    *body = b;
    *n = f.body_len;
    if (obj)
        *obj = f.obj;
    else
        cache_obj_unref(&f.obj);
    return 0;
}

/* get() and check the body against the seed recorded in the headers. */
static int get_check(struct l2 *l2, const char *key)
{
    struct cache_obj *o;
    const char *v;
    char *body, *want;
    size_t n;
    int err = get(l2, key, NULL, &body, &n, &o);

    if (err)
        return err;
    long vl = cache_obj_header(o, "X-Seed", &v);
    assert_true(vl > 0);
    unsigned seed = (unsigned)strtoul(v, NULL, 10);
    want = malloc(n ? n : 1);
    fill(want, n, seed);
    assert_memory_equal(body, want, n);
    free(want);
    free(body);
    cache_obj_unref(&o);
    return 0;
}

/* The documented layout: DIR/ab/cd/<32 hex XXH3-128(pkey)>-<16 hex XXH3-64(vkey)>. */
static void path_of(const struct fx *f, const char *key, const char *vkey, char *out, size_t n)
{
    uint8_t h[16];
    char hex[33];

    cache_key_hash(key, strlen(key), h);
    for (int i = 0; i < 16; i++)
        sprintf(hex + 2 * i, "%02x", h[i]);
    snprintf(out, n, "%s/%.2s/%.2s/%s-%016llx", f->dir, hex, hex + 2, hex,
             (unsigned long long)XXH3_64bits(vkey, strlen(vkey)));
}

static int exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* Unlinks are queued to the background thread: give it a moment. */
static int wait_gone(const char *p)
{
    for (int i = 0; i < 3000; i++) {
        if (!exists(p))
            return 1;
        usleep(1000);
    }
    return 0;
}

static size_t nfiles;
static int count_cb(const char *p, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    if (type == FTW_F && strlen(p + ftw->base) == 49)
        nfiles++;
    return 0;
}

/* Stored files (our names) under dir, tmp/ excluded. */
static size_t count_files(const char *dir)
{
    nfiles = 0;
    nftw(dir, count_cb, 16, FTW_PHYS);
    return nfiles;
}

static size_t count_tmp(const char *dir)
{
    char p[128];
    size_t n = 0;
    struct dirent *e;

    snprintf(p, sizeof(p), "%s/tmp", dir);
    DIR *d = opendir(p);
    if (!d)
        return 0;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static uint64_t body_off_of(const char *path)
{
    unsigned char p[L2_PRELUDE_LEN];
    int fd = open(path, O_RDONLY);
    uint64_t v = 0;

    assert_true(fd >= 0);
    assert_int_equal(pread(fd, p, sizeof(p), 0), (ssize_t)sizeof(p));
    close(fd);
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[24 + i];
    return v;
}

static void flip_byte(const char *path, uint64_t off)
{
    int fd = open(path, O_RDWR);
    char c;

    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &c, 1, (off_t)off), 1);
    c ^= 0x5a;
    assert_int_equal(pwrite(fd, &c, 1, (off_t)off), 1);
    close(fd);
}

static void test_roundtrip(void **state)
{
    struct fx *f = *state;
    struct l2 *l2 = open_l2(f, 64u << 20, NULL);
    struct cache_obj *o = meta("Content-Type: application/octet-stream\r\nETag: \"v1\"\r\n", NULL,
                               NULL),
                     *got;
    struct http_request r;
    struct l2_entry *en;
    struct l2_writer *w;
    struct l2_stats st;
    char body[10000], *rd, rb[256], path[256];
    size_t n;

    wait_ready(l2);
    fill(body, sizeof(body), 1);
    assert_int_equal(put(l2, "h/a", o, body, sizeof(body)), 0);
    assert_int_equal(get(l2, "h/a", NULL, &rd, &n, &got), 0);
    assert_int_equal(n, sizeof(body));
    assert_memory_equal(rd, body, n);
    free(rd);
    assert_int_equal(got->status, 200);
    assert_int_equal(got->hdrs_len, o->hdrs_len);
    assert_memory_equal(got->hdrs, o->hdrs, o->hdrs_len);
    assert_int_equal(got->vkey_len, 0);
    assert_null(got->vary);
    assert_int_equal(got->request_time, 1000);
    assert_int_equal(got->response_time, 1001);
    assert_int_equal(got->lifetime, 60);
    assert_non_null(got->etag);
    assert_null(got->body);
    cache_obj_unref(&got);

    /* One file at the documented name; its charge is the padded header plus the body. */
    path_of(f, "h/a", "", path, sizeof(path));
    assert_true(exists(path));
    l2_stats(l2, &st);
    assert_int_equal(st.objects, 1);
    assert_int_equal(st.bytes, body_off_of(path) + sizeof(body));
    assert_int_equal(body_off_of(path) % L2_ALIGN, 0);
    assert_int_equal(st.budget, 64u << 20);
    assert_int_equal(st.ready, 1);

    /* Hits count every lookup since the entry was indexed (get() made the first). */
    assert_int_equal(l2_lookup(l2, "h/a", 3, req_with("", rb, sizeof(rb), &r), &en), 0);
    assert_int_equal(l2_entry_hits(en), 2);
    assert_int_equal(l2_entry_size(en), sizeof(body));
    l2_entry_unref(&en);
    assert_int_equal(l2_lookup(l2, "h/b", 3, &r, &en), -ENOENT);

    /* A newer write replaces the variant (and its file). */
    fill(body, 500, 2);
    assert_int_equal(put(l2, "h/a", o, body, 500), 0);
    assert_int_equal(get(l2, "h/a", NULL, &rd, &n, NULL), 0);
    assert_int_equal(n, 500);
    assert_memory_equal(rd, body, 500);
    free(rd);
    l2_stats(l2, &st);
    assert_int_equal(st.objects, 1);
    assert_int_equal(count_files(f->dir), 1);

    /* Empty body. */
    assert_int_equal(put(l2, "h/empty", o, body, 0), 0);
    assert_int_equal(get(l2, "h/empty", NULL, &rd, &n, NULL), 0);
    assert_int_equal(n, 0);
    free(rd);

    /* Over the per-object bound (budget / 8): refused up front. */
    assert_int_equal(l2_writer_begin(l2, "h/big", 5, o, (64 << 20) / 8, &w), -EFBIG);
    /* A body that does not match its announced length is not stored. */
    assert_int_equal(l2_writer_begin(l2, "h/short", 7, o, 10, &w), 0);
    assert_int_equal(l2_writer_append(w, body, 5), 0);
    assert_int_equal(l2_writer_commit(&w), -EPROTO);
    assert_null(w);
    assert_int_equal(l2_writer_begin(l2, "h/long", 6, o, 3, &w), 0);
    assert_int_equal(l2_writer_append(w, body, 5), -EPROTO);
    l2_writer_abort(&w);
    assert_int_equal(count_tmp(f->dir), 0);
    assert_int_equal(l2_lookup(l2, "h/short", 7, &r, &en), -ENOENT);
    cache_obj_unref(&o);
}

static void test_follow_writer(void **state)
{
    struct fx *f = *state;
    struct l2 *l2 = open_l2(f, 64u << 20, NULL);
    struct cache_obj *o = meta("X-A: 1\r\n", NULL, NULL);
    struct http_request r;
    struct l2_writer *w;
    struct l2_entry *en;
    struct stat a, b;
    char body[8000], got[8000], rb[256], path[256], *rd;
    size_t n;

    wait_ready(l2);
    fill(body, sizeof(body), 7);
    /* Unknown length, as for a chunked origin response. */
    assert_int_equal(l2_writer_begin(l2, "h/f", 3, o, -1, &w), 0);
    int fd = l2_writer_fd(w);
    uint64_t off = l2_writer_body_off(w);
    assert_int_equal(off % L2_ALIGN, 0);
    assert_int_equal(l2_writer_append(w, body, 3000), 0);
    assert_int_equal(pread(fd, got, 3000, (off_t)off), 3000);
    assert_memory_equal(got, body, 3000);
    int dup = l2_writer_dup_fd(w);
    assert_true(dup >= 0);
    assert_int_equal(l2_writer_append(w, body + 3000, 5000), 0);
    assert_int_equal(pread(dup, got, 8000, (off_t)off), 8000);
    assert_memory_equal(got, body, 8000);
    /* Not visible to lookups before commit. */
    assert_int_equal(l2_lookup(l2, "h/f", 3, req_with("", rb, sizeof(rb), &r), &en), -ENOENT);
    assert_int_equal(l2_writer_commit(&w), 0);
    /* The dup'd descriptor outlives the writer and is the committed file. */
    memset(got, 0, sizeof(got));
    assert_int_equal(pread(dup, got, 8000, (off_t)off), 8000);
    assert_memory_equal(got, body, 8000);
    path_of(f, "h/f", "", path, sizeof(path));
    assert_int_equal(fstat(dup, &a), 0);
    assert_int_equal(stat(path, &b), 0);
    assert_int_equal(a.st_ino, b.st_ino);
    close(dup);
    assert_int_equal(get(l2, "h/f", NULL, &rd, &n, NULL), 0);
    assert_int_equal(n, 8000);
    assert_memory_equal(rd, body, 8000);
    free(rd);
    cache_obj_unref(&o);
}

static void vkey_for(const char *vary, const struct http_request *r, char *out, size_t n)
{
    struct buf b;

    buf_init(&b, 1024);
    assert_int_equal(l1_vary_key(&b, vary, r), 0);
    assert_true(b.len < n);
    memcpy(out, b.data ? b.data : "", b.len);
    out[b.len] = '\0';
    buf_fini(&b);
}

static void test_restart(void **state)
{
    struct fx *f = *state;
    struct l2 *l2 = open_l2(f, 64u << 20, NULL);
    struct http_request r;
    struct cache_obj *o;
    struct l2_stats st;
    char key[32], rb[256], vk[256], *rd;
    size_t n;

    wait_ready(l2);
    for (unsigned i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "h/r%u", i);
        assert_int_equal(put_seed(l2, key, 1000u * i, i), 0);
    }
    req_with("Accept-Encoding: gzip\r\n", rb, sizeof(rb), &r);
    vkey_for("accept-encoding", &r, vk, sizeof(vk));
    o = meta("X-V: gz\r\n", "accept-encoding", vk);
    assert_int_equal(put(l2, "h/vary", o, "gzipped", 7), 0);
    cache_obj_unref(&o);
    l2_close(&f->l2);

    l2 = open_l2(f, 64u << 20, NULL);
    wait_ready(l2);
    l2_stats(l2, &st);
    assert_int_equal(st.indexed_at_start, 21);
    assert_int_equal(st.objects, 21);
    assert_int_equal(st.corrupt, 0);
    for (unsigned i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "h/r%u", i);
        assert_int_equal(get_check(l2, key), 0); /* first read: body hashed */
        assert_int_equal(get_check(l2, key), 0); /* then trusted by its stat */
    }
    req_with("Accept-Encoding: gzip\r\n", rb, sizeof(rb), &r);
    assert_int_equal(get(l2, "h/vary", &r, &rd, &n, &o), 0);
    assert_int_equal(n, 7);
    assert_memory_equal(rd, "gzipped", 7);
    assert_string_equal(o->vary, "accept-encoding");
    assert_int_equal(o->vkey_len, strlen(vk));
    free(rd);
    cache_obj_unref(&o);
    l2_stats(l2, &st);
    assert_int_equal(st.corrupt, 0);
}

static void test_during_rebuild(void **state)
{
    struct fx *f = *state;
    struct l2 *l2 = open_l2(f, 64u << 20, NULL);
    struct http_request r;
    struct l2_entry *en;
    struct l2_stats st;
    char rb[256], pb[256], pc[256], *rd;
    size_t n;

    wait_ready(l2);
    assert_int_equal(put_seed(l2, "h/a", 3000, 1), 0);
    assert_int_equal(put_seed(l2, "h/b", 3000, 2), 0);
    assert_int_equal(put_seed(l2, "h/c", 3000, 3), 0);
    assert_int_equal(put_seed(l2, "h/d", 3000, 4), 0);
    l2_close(&f->l2);

    l2__hold_rebuild(1);
    l2 = open_l2(f, 64u << 20, NULL);
    assert_int_equal(l2_ready(l2), 0);
    req_with("", rb, sizeof(rb), &r);
    /* Unknown while the rebuild runs: the caller may probe. */
    assert_int_equal(l2_lookup(l2, "h/a", 3, &r, &en), -EAGAIN);
    assert_int_equal(l2_probe(l2, "h/a", 3, &en), 0);
    assert_int_equal(l2_entry_size(en), 3000);
    assert_int_equal(l2_entry_hits(en), 1);
    l2_entry_unref(&en);
    assert_int_equal(get_check(l2, "h/a"), 0); /* indexed by the probe */
    assert_int_equal(l2_probe(l2, "h/zz", 4, &en), -ENOENT);
    assert_int_equal(l2_lookup(l2, "h/zz", 4, &r, &en), -EAGAIN);

    /* Removals before the walk reached the files still apply to them. */
    assert_int_equal(l2_remove(l2, "h/b", 3), 0);
    assert_int_equal(l2_purge_path(l2, NULL, 0, "/c", 2), 0);
    path_of(f, "h/b", "", pb, sizeof(pb));
    path_of(f, "h/c", "", pc, sizeof(pc));
    assert_int_equal(l2_probe(l2, "h/b", 3, &en), -ENOENT);
    /* A write after the purge is newer than it, and than the file the walk will find. */
    assert_int_equal(put_seed(l2, "h/c", 500, 33), 0);

    l2__hold_rebuild(0);
    wait_ready(l2);
    assert_int_equal(l2_lookup(l2, "h/b", 3, &r, &en), -ENOENT);
    assert_false(exists(pb));
    assert_int_equal(get(l2, "h/c", NULL, &rd, &n, NULL), 0);
    assert_int_equal(n, 500);
    free(rd);
    assert_int_equal(get_check(l2, "h/c"), 0);
    assert_int_equal(get_check(l2, "h/d"), 0);
    l2_stats(l2, &st);
    assert_int_equal(st.objects, 3);          /* a (probe), c (new write), d (walk) */
    assert_int_equal(st.indexed_at_start, 2); /* a, d */
    assert_int_equal(st.corrupt, 0);
    assert_int_equal(count_files(f->dir), 3);
}

static void test_corrupt_body(void **state)
{
    struct fx *f = *state;
    struct l2 *l2 = open_l2(f, 64u << 20, NULL);
    struct http_request r;
    struct l2_entry *en;
    struct l2_stats st;
    char path[256], rb[256];

    wait_ready(l2);
    assert_int_equal(put_seed(l2, "h/x", 20000, 5), 0);
    assert_int_equal(get_check(l2, "h/x"), 0);
    path_of(f, "h/x", "", path, sizeof(path));
    /* The change is seen through the file's mtime/ctime: let the filesystem clock tick
     * past the commit's (a change within the same tick is not detectable by stat). */
    usleep(30000);
    flip_byte(path, body_off_of(path) + 100);
    assert_int_equal(get_check(l2, "h/x"), -EBADMSG);
    assert_int_equal(l2_lookup(l2, "h/x", 3, req_with("", rb, sizeof(rb), &r), &en), -ENOENT);
    assert_false(exists(path));
    l2_stats(l2, &st);
    assert_int_equal(st.corrupt, 1);
    assert_int_equal(st.objects, 0);
    assert_int_equal(st.bytes, 0);

    /* Corrupted while the edge was down: the rebuild reads headers only, the first read
     * hashes the body. */
    assert_int_equal(put_seed(l2, "h/y", 20000, 6), 0);
    l2_close(&f->l2);
    path_of(f, "h/y", "", path, sizeof(path));
    flip_byte(path, body_off_of(path) + 19999);
    l2 = open_l2(f, 64u << 20, NULL);
    wait_ready(l2);
    assert_int_equal(get_check(l2, "h/y"), -EBADMSG);
    assert_false(exists(path));
    l2_stats(l2, &st);
    assert_int_equal(st.corrupt, 1);
}

static void test_truncated(void **state)
{
    struct fx *f = *state;
    struct l2 *l2 = open_l2(f, 64u << 20, NULL);
    struct l2_stats st;
    char path[256];

    wait_ready(l2);
    assert_int_equal(put_seed(l2, "h/t", 9000, 8), 0);
    path_of(f, "h/t", "", path, sizeof(path));
    assert_int_equal(truncate(path, (off_t)(body_off_of(path) + 8999)), 0);
    assert_int_equal(get_check(l2, "h/t"), -EBADMSG);
    assert_false(exists(path));

    /* Truncated while down: found by the rebuild (file size vs header) and deleted. */
    assert_int_equal(put_seed(l2, "h/u", 9000, 9), 0);
    assert_int_equal(put_seed(l2, "h/v", 9000, 10), 0);
    l2_close(&f->l2);
    path_of(f, "h/u", "", path, sizeof(path));
    assert_int_equal(truncate(path, 100), 0);
    l2 = open_l2(f, 64u << 20, NULL);
    wait_ready(l2);
    assert_false(exists(path));
    l2_stats(l2, &st);
    assert_int_equal(st.corrupt, 1);
    assert_int_equal(st.objects, 1);
    assert_int_equal(get_check(l2, "h/u"), -ENOENT);
    assert_int_equal(get_check(l2, "h/v"), 0);
}

static void test_corrupt_header(void **state)
{
    struct fx *f = *state;
    struct l2 *l2 = open_l2(f, 64u << 20, NULL);
    struct l2_stats st;
    char path[256], path2[256];

    wait_ready(l2);
    assert_int_equal(put_seed(l2, "h/h1", 5000, 11), 0);
    assert_int_equal(put_seed(l2, "h/h2", 5000, 12), 0);
    assert_int_equal(put_seed(l2, "h/h3", 5000, 13), 0);
    l2_close(&f->l2);
    path_of(f, "h/h1", "", path, sizeof(path));
    flip_byte(path, L2_PRELUDE_LEN + 20); /* inside the metadata */
    path_of(f, "h/h2", "", path2, sizeof(path2));
    flip_byte(path2, 1); /* the magic */
    l2 = open_l2(f, 64u << 20, NULL);
    wait_ready(l2);
    assert_false(exists(path));
    assert_false(exists(path2));
    l2_stats(l2, &st);
    assert_int_equal(st.corrupt, 2);
    assert_int_equal(st.objects, 1);
    assert_int_equal(st.indexed_at_start, 1);
    assert_int_equal(get_check(l2, "h/h1"), -ENOENT);
    assert_int_equal(get_check(l2, "h/h3"), 0);
}

static void test_stale_tmp(void **state)
{
    struct fx *f = *state;
    char p[128], q[128];
    int fd;

    snprintf(p, sizeof(p), "%s/tmp", f->dir);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof(p), "%s/tmp/4242-7", f->dir);
    fd = open(p, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "half a file", 11), 11);
    close(fd);
    /* A file with a name that is not ours is left alone. */
    snprintf(q, sizeof(q), "%s/README", f->dir);
    fd = open(q, O_CREAT | O_WRONLY, 0644);
    close(fd);
    open_l2(f, 1u << 20, NULL);
    assert_false(exists(p));
    assert_true(exists(q));
    wait_ready(f->l2);
    assert_true(exists(q));
}

static void test_budget(void **state)
{
    struct fx *f = *state;
    /* Each object: one header page + a 4096-byte body = 8192 bytes: ten fit. */
    struct l2 *l2 = open_l2(f, 10 * 8192, "fifo");
    struct l2_stats st;
    struct l2_writer *w;
    struct cache_obj *o = meta("X-A: 1\r\n", NULL, NULL);
    char key[32], path[256];

    wait_ready(l2);
    for (unsigned i = 0; i < 30; i++) {
        snprintf(key, sizeof(key), "h/b%u", i);
        assert_int_equal(put_seed(l2, key, 4096, i), 0);
        l2_stats(l2, &st);
        assert_true(st.bytes <= st.budget);
    }
    l2_stats(l2, &st);
    assert_int_equal(st.objects, 10);
    assert_int_equal(st.bytes, 10 * 8192);
    assert_int_equal(st.evictions, 20);
    for (unsigned i = 0; i < 30; i++) {
        snprintf(key, sizeof(key), "h/b%u", i);
        path_of(f, key, "", path, sizeof(path));
        if (i < 20) {
            assert_int_equal(get_check(l2, key), -ENOENT);
            assert_true(wait_gone(path));
        } else {
            assert_int_equal(get_check(l2, key), 0);
        }
    }
    assert_int_equal(count_files(f->dir), 10);
    /* budget / 8 = 10240 bytes per object at most, header page included. */
    assert_int_equal(l2_writer_begin(l2, "h/big", 5, o, 6145, &w), -EFBIG);
    assert_int_equal(l2_writer_begin(l2, "h/big", 5, o, -1, &w), 0);
    char buf[7000] = {0};
    assert_int_equal(l2_writer_append(w, buf, 6144), 0);
    assert_int_equal(l2_writer_append(w, buf, 1), -EFBIG);
    assert_int_equal(l2_writer_commit(&w), -EFBIG);
    assert_int_equal(count_tmp(f->dir), 0);
    cache_obj_unref(&o);
}

static void test_vary(void **state)
{
    struct fx *f = *state;
    struct l2 *l2 = open_l2(f, 64u << 20, NULL);
    struct http_request r1, r2, r3, r0;
    struct cache_obj *o;
    struct l2_entry *en;
    struct l2_stats st;
    char b1[256], b2[256], b3[256], b0[256], vk1[256], vk2[256], vk3[256];
    char p1[256], p2[256], *rd;
    size_t n;

    wait_ready(l2);
    req_with("Accept-Encoding: gzip\r\n", b1, sizeof(b1), &r1);
    req_with("Accept-Encoding: br\r\n", b2, sizeof(b2), &r2);
    req_with("User-Agent: x\r\n", b3, sizeof(b3), &r3);
    req_with("", b0, sizeof(b0), &r0);
    vkey_for("accept-encoding", &r1, vk1, sizeof(vk1));
    vkey_for("accept-encoding", &r2, vk2, sizeof(vk2));
    o = meta("X-V: 1\r\n", "accept-encoding", vk1);
    assert_int_equal(put(l2, "h/m", o, "body-gzip", 9), 0);
    cache_obj_unref(&o);
    o = meta("X-V: 2\r\n", "accept-encoding", vk2);
    assert_int_equal(put(l2, "h/m", o, "body-br", 7), 0);
    cache_obj_unref(&o);
    l2_stats(l2, &st);
    assert_int_equal(st.objects, 2);
    assert_int_equal(get(l2, "h/m", &r1, &rd, &n, NULL), 0);
    assert_int_equal(n, 9);
    assert_memory_equal(rd, "body-gzip", 9);
    free(rd);
    assert_int_equal(get(l2, "h/m", &r2, &rd, &n, NULL), 0);
    assert_int_equal(n, 7);
    assert_memory_equal(rd, "body-br", 7);
    free(rd);
    assert_int_equal(l2_lookup(l2, "h/m", 3, &r0, &en), -ENOENT);
    path_of(f, "h/m", vk1, p1, sizeof(p1));
    path_of(f, "h/m", vk2, p2, sizeof(p2));
    assert_true(exists(p1));
    assert_true(exists(p2));

    /* The origin changes its Vary: the old variants are unreachable and go. */
    vkey_for("user-agent", &r3, vk3, sizeof(vk3));
    o = meta("X-V: 3\r\n", "user-agent", vk3);
    assert_int_equal(put(l2, "h/m", o, "ua", 2), 0);
    cache_obj_unref(&o);
    l2_stats(l2, &st);
    assert_int_equal(st.objects, 1);
    assert_int_equal(l2_lookup(l2, "h/m", 3, &r1, &en), -ENOENT);
    assert_int_equal(get(l2, "h/m", &r3, &rd, &n, NULL), 0);
    assert_int_equal(n, 2);
    free(rd);
    assert_true(wait_gone(p1));
    assert_true(wait_gone(p2));
}

static void test_remove_purge(void **state)
{
    struct fx *f = *state;
    struct l2 *l2 = open_l2(f, 64u << 20, NULL);
    struct http_request r;
    struct l2_entry *en;
    struct l2_stats st;
    char rb[256], path[256];

    wait_ready(l2);
    assert_int_equal(put_seed(l2, "a.com/x", 100, 1), 0);
    assert_int_equal(put_seed(l2, "b.com/x", 100, 2), 0);
    assert_int_equal(put_seed(l2, "a.com/y", 100, 3), 0);
    assert_int_equal(put_seed(l2, "a.com/x?q=1", 100, 4), 0);
    assert_int_equal(l2_remove(l2, "a.com/y", 7), 1);
    assert_int_equal(l2_remove(l2, "a.com/y", 7), 0);
    path_of(f, "a.com/y", "", path, sizeof(path));
    assert_true(wait_gone(path));
    assert_int_equal(l2_purge_path(l2, "A.com", 5, "/x", 2), 1); /* host case-insensitive */
    assert_int_equal(get_check(l2, "a.com/x"), -ENOENT);
    assert_int_equal(get_check(l2, "b.com/x"), 0);
    assert_int_equal(get_check(l2, "a.com/x?q=1"), 0);
    assert_int_equal(l2_purge_path(l2, NULL, 0, "/x", 2), 1);
    assert_int_equal(get_check(l2, "b.com/x"), -ENOENT);
    l2_stats(l2, &st);
    assert_int_equal(st.objects, 1);

    /* l2_drop: the caller keeps a valid handle; the file goes. */
    req_with("", rb, sizeof(rb), &r);
    assert_int_equal(l2_lookup(l2, "a.com/x?q=1", 11, &r, &en), 0);
    l2_drop(l2, en);
    l2_drop(l2, en); /* twice is harmless */
    assert_int_equal(l2_entry_size(en), 100);
    l2_entry_unref(&en);
    assert_int_equal(l2_lookup(l2, "a.com/x?q=1", 11, &r, &en), -ENOENT);
    l2_stats(l2, &st);
    assert_int_equal(st.objects, 0);
    assert_int_equal(st.bytes, 0);
    for (int i = 0; i < 3000 && count_files(f->dir) != 0; i++)
        usleep(1000);
    assert_int_equal(count_files(f->dir), 0);
}

/* A walk (and a removal by key) sees each file's stored time and tags from the index. */
static int drop_tagged_before(void *arg, const char *pkey, size_t plen, int64_t stored_us,
                              const char *tags, size_t tags_len)
{
    int t1 = 0;

    (void)pkey;
    (void)plen;
    for (size_t i = 0; tags && i + 2 <= tags_len; i++)
        t1 |= tags[i] == 't' && tags[i + 1] == '1';
    return stored_us < *(const int64_t *)arg && t1;
}

static void test_walk_and_remove_if(void **state)
{
    struct fx *f = *state;
    struct l2 *l2 = open_l2(f, 64u << 20, NULL);
    const char *hdrs[] = {"Surrogate-Key: t1 t2\r\n", "Cache-Tag: t2\r\n", "X-A: 1\r\n"};
    const char *keys[] = {"h/a", "h/b", "h/c"};
    char body[100] = {0}, path[256];
    struct l2_stats st;

    wait_ready(l2);
    for (int i = 0; i < 3; i++) {
        struct cache_obj *o = meta(hdrs[i], NULL, NULL);
        o->stored_us = 500 + i;
        assert_int_equal(put(l2, keys[i], o, body, sizeof(body)), 0);
        cache_obj_unref(&o);
    }
    int64_t t = 500;
    assert_int_equal(l2_remove_if(l2, "h/a", 3, drop_tagged_before, &t), 0); /* not older */
    t = 1000;
    assert_int_equal(l2_remove_if(l2, "h/b", 3, drop_tagged_before, &t), 0); /* no t1 */
    assert_int_equal(l2_remove_if(l2, "h/z", 3, drop_tagged_before, &t), 0);
    assert_int_equal(l2_remove_if(l2, "h/a", 3, drop_tagged_before, &t), 1);
    assert_int_equal(get_check(l2, "h/a"), -ENOENT);
    assert_int_equal(l2_walk(l2, drop_tagged_before, &t), 0);
    l2_flush_unlinks(l2);
    path_of(f, "h/a", "", path, sizeof(path));
    assert_false(exists(path));
    l2_stats(l2, &st);
    assert_int_equal(st.objects, 2);
}

static void test_full_disk_tmpfs(void **state)
{
    struct fx *f = *state;
    struct l2_stats st;
    struct l2_writer *w;
    struct cache_obj *o = meta("X-A: 1\r\n", NULL, NULL);
    char key[32];
    int err = 0, stored = 0;

    if (mount("tmpfs", f->dir, "tmpfs", 0, "size=1m") != 0) {
        print_message("  skipped: cannot mount a 1 MiB tmpfs here (%s); "
                      "test_inject_eio covers the error path\n",
                      strerror(errno));
        cache_obj_unref(&o);
        skip();
    }
    f->mounted = 1;
    /* A budget far above the disk: only the disk can say no. */
    struct l2 *l2 = open_l2(f, 1u << 30, NULL);
    wait_ready(l2);
    for (unsigned i = 0; i < 40 && err == 0; i++) {
        snprintf(key, sizeof(key), "h/full%u", i);
        err = put_seed(l2, key, 64u << 10, i);
        if (err == 0)
            stored++;
    }
    assert_int_equal(err, -ENOSPC);
    assert_true(stored > 5);
    l2_stats(l2, &st);
    assert_true(st.write_errors >= 1);
    assert_int_equal(st.admission_paused, 1);
    assert_int_equal(count_tmp(f->dir), 0);
    assert_int_equal(l2_writer_begin(l2, "h/more", 6, o, 10, &w), -EAGAIN);
    /* Serving goes on. */
    assert_int_equal(get_check(l2, "h/full0"), 0);
    snprintf(key, sizeof(key), "h/full%d", stored - 1);
    assert_int_equal(get_check(l2, key), 0);
    /* Space freed and the back-off over: admission resumes. */
    assert_int_equal(l2_remove(l2, "h/full0", 7), 1);
    assert_int_equal(l2_remove(l2, "h/full1", 7), 1);
    for (int i = 0; i < 3000 && count_files(f->dir) != (size_t)stored - 2; i++)
        usleep(1000);
    l2__set_pause_ns(l2, 0);
    assert_int_equal(put_seed(l2, "h/more", 10000, 99), 0);
    assert_int_equal(get_check(l2, "h/more"), 0);
    cache_obj_unref(&o);
}

static void test_inject_eio(void **state)
{
    struct fx *f = *state;
    struct l2 *l2 = open_l2(f, 64u << 20, NULL);
    struct cache_obj *o = meta("X-A: 1\r\n", NULL, NULL);
    struct l2_writer *w;
    struct l2_stats st;
    char body[3000] = {0};

    wait_ready(l2);
    assert_int_equal(put_seed(l2, "h/ok", 3000, 1), 0);
    /* Unknown length: open (1), header (2), first append (3). */
    l2__inject_write_error(l2, 3, EIO);
    assert_int_equal(l2_writer_begin(l2, "h/e", 3, o, -1, &w), 0);
    assert_int_equal(l2_writer_append(w, body, 1000), -EIO);
    assert_int_equal(l2_writer_append(w, body, 1000), -EIO); /* sticky */
    assert_int_equal(l2_writer_commit(&w), -EIO);
    assert_int_equal(count_tmp(f->dir), 0);
    l2_stats(l2, &st);
    assert_int_equal(st.write_errors, 1);
    assert_int_equal(st.admission_paused, 1);
    assert_int_equal(l2_writer_begin(l2, "h/e", 3, o, -1, &w), -EAGAIN);
    assert_int_equal(get_check(l2, "h/ok"), 0);

    /* The final header write fails: nothing indexed, nothing left behind. */
    l2__set_pause_ns(l2, 0);
    l2__inject_write_error(l2, 4, ENOSPC);
    assert_int_equal(l2_writer_begin(l2, "h/e", 3, o, -1, &w), 0);
    assert_int_equal(l2_writer_append(w, body, 1000), 0);
    assert_int_equal(l2_writer_commit(&w), -ENOSPC);
    assert_int_equal(count_tmp(f->dir), 0);
    assert_int_equal(get_check(l2, "h/e"), -ENOENT);
    l2_stats(l2, &st);
    assert_int_equal(st.write_errors, 2);
    assert_int_equal(st.admission_paused, 0); /* the pause is 0 in this test */
    /* Every write-side syscall position in turn (curl's torture idea, on a small scale). */
    for (unsigned nth = 1; nth <= 7; nth++) {
        l2__inject_write_error(l2, nth, EIO);
        int err = put_seed(l2, "h/loop", 2000, nth);
        assert_true(err == -EIO || err == 0);
        assert_int_equal(count_tmp(f->dir), 0);
        if (err == 0)
            assert_int_equal(get_check(l2, "h/loop"), 0);
    }
    l2__inject_write_error(l2, 0, 0);
    cache_obj_unref(&o);
}

static void test_abort(void **state)
{
    struct fx *f = *state;
    struct l2 *l2 = open_l2(f, 64u << 20, NULL);
    struct cache_obj *o = meta("X-A: 1\r\n", NULL, NULL);
    struct l2_writer *w;

    wait_ready(l2);
    assert_int_equal(l2_writer_begin(l2, "h/ab", 4, o, 100, &w), 0);
    assert_int_equal(l2_writer_append(w, "abc", 3), 0);
    assert_int_equal(count_tmp(f->dir), 1);
    l2_writer_abort(&w);
    assert_null(w);
    assert_int_equal(count_tmp(f->dir), 0);
    assert_int_equal(get_check(l2, "h/ab"), -ENOENT);
    assert_int_equal(count_files(f->dir), 0);
    cache_obj_unref(&o);
}

static void test_open_errors(void **state)
{
    struct fx *f = *state;
    struct l2 *other = NULL;
    char p[128], err[256];
    int fd;

    snprintf(p, sizeof(p), "%s/file", f->dir);
    fd = open(p, O_CREAT | O_WRONLY, 0644);
    close(fd);
    snprintf(p, sizeof(p), "%s/file/sub", f->dir);
    struct l2_cfg cfg = {p, 1u << 20, NULL};
    assert_int_equal(l2_open(&cfg, &other, err, sizeof(err)), -ENOTDIR);
    assert_non_null(strstr(err, p));
    assert_null(other);

    cfg.dir = f->dir;
    cfg.policy = "nope";
    assert_int_equal(l2_open(&cfg, &other, err, sizeof(err)), -EINVAL);
    cfg.policy = "lru";
    open_l2(f, 1u << 20, "lru");
    assert_int_equal(l2_open(&cfg, &other, err, sizeof(err)), -EBUSY);
    assert_non_null(strstr(err, f->dir));
}

static void test_header_roundtrip(void **state)
{
    struct cache_obj *o = meta("Content-Type: text/plain\r\n", "accept-encoding",
                               "\naccept-encoding:gzip"),
                     *got;
    struct l2__hdr h;
    struct buf b;
    char *pkey;
    size_t plen;
    const char *corpus = getenv("MLCDN_L2_CORPUS");
    (void)state;

    buf_init(&b, L2_HDR_MAX);
    assert_int_equal(l2__hdr_build(&b, "example.com/m.onnx", 18, o, 12345, 0xabcdef), 0);
    assert_int_equal(l2__hdr_parse(b.data, b.len, &h, &got, &pkey, &plen), 0);
    assert_int_equal(h.hdr_len, b.len);
    assert_int_equal(h.body_off, L2_ALIGN);
    assert_int_equal(h.body_len, 12345);
    assert_int_equal(h.body_xxh, 0xabcdef);
    assert_string_equal(pkey, "example.com/m.onnx");
    assert_int_equal(plen, 18);
    assert_string_equal(got->vary, "accept-encoding");
    assert_memory_equal(got->vkey, o->vkey, o->vkey_len);
    free(pkey);
    cache_obj_unref(&got);
    /* Every single-byte change of the header is caught; so is any truncation. */
    for (size_t i = 0; i < b.len; i++) {
        b.data[i] ^= 0x20;
        assert_int_equal(l2__hdr_parse(b.data, b.len, &h, &got, &pkey, &plen), -EINVAL);
        b.data[i] ^= 0x20;
    }
    for (size_t n = 0; n < b.len; n++)
        assert_int_equal(l2__hdr_parse(b.data, n, &h, &got, &pkey, &plen), -EINVAL);
    if (corpus) {
        char p[512];
        snprintf(p, sizeof(p), "%s/vary", corpus);
        FILE *fp = fopen(p, "wb");
        assert_non_null(fp);
        fwrite(b.data, 1, b.len, fp);
        fclose(fp);
        cache_obj_unref(&o);
        o = meta("ETag: \"x\"\r\nCache-Control: max-age=60\r\n", NULL, NULL);
        buf_reset(&b);
        assert_int_equal(l2__hdr_build(&b, "h/a?b=1", 7, o, 0, XXH3_64bits("", 0)), 0);
        snprintf(p, sizeof(p), "%s/plain", corpus);
        fp = fopen(p, "wb");
        assert_non_null(fp);
        fwrite(b.data, 1, b.len, fp);
        fclose(fp);
    }
    buf_fini(&b);
    cache_obj_unref(&o);
}

/* A process killed (SIGKILL) while it writes, replaces and removes objects leaves a store
 * that reopens with no temporary file, no corrupt file, and every object readable. */
static void test_kill9(void **state)
{
    struct fx *f = *state;
    struct l2_stats st;
    int pfd[2];
    char c, key[32];

    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct l2_cfg cfg = {f->dir, 64u << 20, NULL};
        struct l2 *l2;
        char err[256];
        close(pfd[0]);
        if (l2_open(&cfg, &l2, err, sizeof(err)) != 0)
            _exit(1);
        for (unsigned i = 0; i < 1000000; i++) {
            snprintf(key, sizeof(key), "h/k%u", i % 50);
            if (put_seed(l2, key, (i * 977u) % 20000, i) != 0)
                _exit(2);
            if (i % 7 == 0)
                l2_remove(l2, "h/k3", 4);
            if (i == 100 && write(pfd[1], "x", 1) != 1)
                _exit(3);
        }
        _exit(0);
    }
    close(pfd[1]);
    assert_int_equal(read(pfd[0], &c, 1), 1);
    close(pfd[0]);
    usleep(50000);
    kill(pid, SIGKILL);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));

    struct l2 *l2 = open_l2(f, 64u << 20, NULL);
    assert_int_equal(count_tmp(f->dir), 0);
    wait_ready(l2);
    l2_stats(l2, &st);
    assert_true(st.objects >= 40);
    for (unsigned i = 0; i < 50; i++) {
        snprintf(key, sizeof(key), "h/k%u", i);
        int err = get_check(l2, key);
        assert_true(err == 0 || (i == 3 && err == -ENOENT));
    }
    l2_stats(l2, &st);
    assert_int_equal(st.corrupt, 0);
}

/* ---- concurrency smoke test ---- */

#define CT_THREADS 4
#define CT_OPS 400
#define CT_KEYS 24

struct ct {
    struct l2 *l2;
    unsigned seed;
    _Atomic int *failures;
};

static void *ct_main(void *arg)
{
    struct ct *c = arg;
    char key[32];

    for (int i = 0; i < CT_OPS; i++) {
        unsigned op = (unsigned)rand_r(&c->seed) % 10, k = (unsigned)rand_r(&c->seed) % CT_KEYS;
        int err;
        snprintf(key, sizeof(key), "h/k%u", k);
        if (op < 4) {
            size_t n = 100 + (unsigned)rand_r(&c->seed) % 6000;
            err = put_seed(c->l2, key, n, (unsigned)rand_r(&c->seed));
            if (err != 0 && err != -EFBIG)
                atomic_fetch_add(c->failures, 1);
        } else if (op < 8) {
            /* get_check's cmocka asserts would longjmp across threads: check by hand. */
            struct http_request r;
            struct l2_entry *en;
            struct l2_file f;
            struct http_limits lim;
            const char *msg, *v;
            char rb[128];
            http_limits_default(&lim);
            snprintf(rb, sizeof(rb), "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
            if (http_parse_request(rb, strlen(rb), &lim, &r, &msg) <= 0)
                atomic_fetch_add(c->failures, 1);
            if (l2_lookup(c->l2, key, strlen(key), &r, &en) != 0)
                continue;
            err = l2_read(c->l2, en, &f);
            l2_entry_unref(&en);
            if (err == -ENOENT)
                continue;
            if (err != 0) {
                atomic_fetch_add(c->failures, 1);
                continue;
            }
            long vl = cache_obj_header(f.obj, "X-Seed", &v);
            unsigned seed = vl > 0 ? (unsigned)strtoul(v, NULL, 10) : 0;
            char *got = malloc(f.body_len + 1), *want = malloc(f.body_len + 1);
            if (vl <= 0 || pread(f.fd, got, f.body_len, (off_t)f.body_off) != (ssize_t)f.body_len)
                atomic_fetch_add(c->failures, 1);
            fill(want, f.body_len, seed);
            if (memcmp(got, want, f.body_len) != 0)
                atomic_fetch_add(c->failures, 1);
            free(got);
            free(want);
            close(f.fd);
            cache_obj_unref(&f.obj);
        } else if (op == 8) {
            l2_remove(c->l2, key, strlen(key));
        } else {
            l2_purge_path(c->l2, NULL, 0, key + 1, strlen(key + 1));
        }
    }
    return NULL;
}

static void test_concurrency(void **state)
{
    struct fx *f = *state;
    struct l2 *l2 = open_l2(f, 12 * 8192, NULL);
    pthread_t th[CT_THREADS];
    struct ct c[CT_THREADS];
    _Atomic int failures = 0;
    struct l2_stats st;

    wait_ready(l2);
    for (int i = 0; i < CT_THREADS; i++) {
        c[i] = (struct ct){l2, (unsigned)i * 7919u + 1, &failures};
        assert_int_equal(pthread_create(&th[i], NULL, ct_main, &c[i]), 0);
    }
    for (int i = 0; i < CT_THREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&failures), 0);
    l2_stats(l2, &st);
    assert_int_equal(st.corrupt, 0);
    assert_true(st.bytes <= st.budget);
    assert_int_equal(count_tmp(f->dir), 0);
    /* Once the queued unlinks ran, the disk holds exactly the index. */
    for (int i = 0; i < 3000 && count_files(f->dir) != st.objects; i++)
        usleep(1000);
    assert_int_equal(count_files(f->dir), st.objects);
    /* And a restart finds the same set. */
    uint64_t objects = st.objects;
    l2_close(&f->l2);
    l2 = open_l2(f, 12 * 8192, NULL);
    wait_ready(l2);
    l2_stats(l2, &st);
    assert_int_equal(st.objects, objects);
    assert_int_equal(st.corrupt, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_roundtrip),
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_follow_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_during_rebuild, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_tmp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_purge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_walk_and_remove_if, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_disk_tmpfs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inject_eio, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrency, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
