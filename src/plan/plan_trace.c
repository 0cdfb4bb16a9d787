/* src/plan/plan_trace.c: CSV trace reader (`t,key,size`).
 *
 * The file is mapped and parsed by hand (strtoull-free) into dense arrays: replaying 1M
 * requests must cost milliseconds, not the parse. Keys are hashed with XXH3 and numbered
 * by first appearance through an open-addressing table of hashes; two keys with the same
 * 64-bit hash would be taken for one (probability ~n^2/2^65, negligible for any trace). */
#include "plan/plan.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "core/mc.h"
#include "plan/plan_int.h"

struct idx {
    uint64_t *hash;
    uint32_t *id;
    uint64_t mask;
};

static void idx_grow(struct idx *x)
{
    uint64_t nsize = (x->mask + 1) * 2;
    uint64_t *nh = mc_xcalloc(nsize, sizeof(*nh));
    uint32_t *ni = mc_xmalloc(nsize * sizeof(*ni));

    memset(ni, 0xff, nsize * sizeof(*ni));

    for (uint64_t i = 0; i <= x->mask; i++) {
        if (x->id[i] == UINT32_MAX)
            continue;
        uint64_t j = x->hash[i] & (nsize - 1);
        while (ni[j] != UINT32_MAX)
            j = (j + 1) & (nsize - 1);
        nh[j] = x->hash[i];
        ni[j] = x->id[i];
    }
    free(x->hash);
    free(x->id);
    x->hash = nh;
    x->id = ni;
    x->mask = nsize - 1;
}

static void trace_push(struct plan_trace *t, uint64_t *cap, uint32_t obj, uint64_t size)
{
    if (t->nreq == *cap) {
        *cap = *cap ? *cap * 2 : 1 << 16;
        t->req_obj = mc_xrealloc(t->req_obj, *cap * sizeof(*t->req_obj));
        t->req_size = mc_xrealloc(t->req_size, *cap * sizeof(*t->req_size));
    }
    t->req_obj[t->nreq] = obj;
    t->req_size[t->nreq] = size;
    t->nreq++;
    t->req_bytes += size;
    if (size != 1)
        t->sized = 1;
}

void plan__builder_init(struct plan__builder *b)
{
    memset(b, 0, sizeof(*b));
    b->t = mc_xcalloc(1, sizeof(*b->t));
    b->mask = 1023;
    b->hash = mc_xcalloc(b->mask + 1, sizeof(*b->hash));
    b->id = mc_xmalloc((b->mask + 1) * sizeof(*b->id));
    memset(b->id, 0xff, (b->mask + 1) * sizeof(*b->id));
}

int plan__builder_add(struct plan__builder *b, const char *key, size_t klen, uint64_t size,
                      double tsec)
{
    struct plan_trace *t = b->t;
    struct idx x = {b->hash, b->id, b->mask};
    uint64_t h = XXH3_64bits(key, klen), j = h & x.mask;

    if (tsec == tsec) { /* not NaN */
        if (!t->timed || tsec < t->t_min)
            t->t_min = tsec;
        if (!t->timed || tsec > t->t_max)
            t->t_max = tsec;
        t->timed = 1;
    }
    while (x.id[j] != UINT32_MAX && x.hash[j] != h)
        j = (j + 1) & x.mask;
    if (x.id[j] != UINT32_MAX) {
        trace_push(t, &b->reqcap, x.id[j], size);
        return 0;
    }
    if (t->nobj >= UINT32_MAX - 1)
        return -E2BIG;
    if (t->nobj == b->objcap) {
        b->objcap = b->objcap ? b->objcap * 2 : 1 << 14;
        t->obj_hash = mc_xrealloc(t->obj_hash, b->objcap * sizeof(*t->obj_hash));
    }
    x.hash[j] = h;
    x.id[j] = (uint32_t)t->nobj;
    t->obj_hash[t->nobj++] = h;
    t->unique_bytes += size;
    if (t->nobj * 2 > x.mask) {
        idx_grow(&x);
        b->hash = x.hash;
        b->id = x.id;
        b->mask = x.mask;
    }
    trace_push(t, &b->reqcap, (uint32_t)(t->nobj - 1), size);
    return 0;
}

struct plan_trace *plan__builder_take(struct plan__builder *b)
{
    struct plan_trace *t = b->t;
    b->t = NULL;
    return t;
}

void plan__builder_fini(struct plan__builder *b)
{
    plan_trace_free(&b->t);
    free(b->hash);
    free(b->id);
    b->hash = NULL;
    b->id = NULL;
}

int plan__fail(char *err, size_t errlen, const char *name, uint64_t line, const char *what)
{
    snprintf(err, errlen, "%s:%llu: %s", name, (unsigned long long)line, what);
    return -EINVAL;
}

/* t: a decimal number (the shared traces use integers; a fraction is accepted). */
static int parse_t(const char *p, const char *e, double *out)
{
    char buf[64], *end;
    size_t n = (size_t)(e - p);

    if (n == 0 || n >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, p, n);
    buf[n] = '\0';
    *out = strtod(buf, &end);
    return end == buf + n ? 0 : -EINVAL;
}

int plan_trace_parse_csv(const char *buf, size_t len, const char *name, struct plan_trace **out,
                         char *err, size_t errlen)
{
    struct plan__builder b;
    const char *p = buf, *end = buf + len;
    uint64_t line = 0;
    int rc = 0;

    plan__builder_init(&b);
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p)), *f1, *f2, *q;
        uint64_t size = 1;
        size_t klen;
        double tsec;

        if (eol == NULL)
            eol = end;
        line++;
        q = eol;
        if (q > p && q[-1] == '\r')
            q--;
        if (q == p || *p == '#') { /* blank line or comment */
            p = eol + 1;
            continue;
        }
        f1 = memchr(p, ',', (size_t)(q - p));
        if (f1 == NULL) {
            rc = plan__fail(err, errlen, name, line, "expected t,key,size");
            goto out;
        }
        for (const char *c = p; c < f1; c++)
            if ((*c < '0' || *c > '9') && *c != '.' && *c != '-') {
                if (line == 1 && b.t->nreq == 0)
                    goto next; /* header line */
                rc = plan__fail(err, errlen, name, line, "t is not a number");
                goto out;
            }
        if (parse_t(p, f1, &tsec) != 0) {
            rc = plan__fail(err, errlen, name, line, "t is not a number");
            goto out;
        }
        f1++;
        f2 = memchr(f1, ',', (size_t)(q - f1));
        klen = (size_t)((f2 ? f2 : q) - f1);
        if (klen == 0) {
            rc = plan__fail(err, errlen, name, line, "empty key");
            goto out;
        }
        if (f2 != NULL) {
            const char *c = f2 + 1, *se = memchr(c, ',', (size_t)(q - c));
            if (se == NULL)
                se = q;
            if (c == se) {
                rc = plan__fail(err, errlen, name, line, "empty size");
                goto out;
            }
            size = 0;
            for (; c < se; c++) {
                if (*c < '0' || *c > '9' || size > (UINT64_MAX - 9) / 10) {
                    rc = plan__fail(err, errlen, name, line, "size is not a non-negative integer");
                    goto out;
                }
                size = size * 10 + (uint64_t)(*c - '0');
            }
        }
        if (plan__builder_add(&b, f1, klen, size, tsec) != 0) {
            rc = plan__fail(err, errlen, name, line, "too many distinct keys");
            goto out;
        }
    next:
        p = eol + 1;
    }
out:
    if (rc == 0)
        *out = plan__builder_take(&b);
    plan__builder_fini(&b);
    return rc;
}

/* Maps `path` and hands its bytes to `parse`; the error names the file. */
int plan__load_file(const char *path,
                    int (*parse)(const char *buf, size_t len, const char *name, void *arg,
                                 struct plan_trace **out, char *err, size_t errlen),
                    void *arg, struct plan_trace **out, char *err, size_t errlen)
{
    struct stat st;
    void *m = NULL;
    int fd, rc;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(-rc));
        close(fd);
        return rc;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -EINVAL;
    }
    if (st.st_size > 0) {
        m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            rc = -errno;
            snprintf(err, errlen, "%s: %s", path, strerror(-rc));
            close(fd);
            return rc;
        }
        madvise(m, (size_t)st.st_size, MADV_SEQUENTIAL);
    }
    close(fd);
    rc = parse(m ? m : "", (size_t)st.st_size, path, arg, out, err, errlen);
    if (m != NULL)
        munmap(m, (size_t)st.st_size);
    if (rc == 0 && (*out)->nreq == 0) {
        plan_trace_free(out);
        snprintf(err, errlen, "%s: no requests", path);
        return -EINVAL;
    }
    return rc;
}

static int parse_csv_cb(const char *buf, size_t len, const char *name, void *arg,
                        struct plan_trace **out, char *err, size_t errlen)
{
    (void)arg;
    return plan_trace_parse_csv(buf, len, name, out, err, errlen);
}

int plan_trace_load_csv(const char *path, struct plan_trace **out, char *err, size_t errlen)
{
    return plan__load_file(path, parse_csv_cb, NULL, out, err, errlen);
}

void plan_trace_free(struct plan_trace **tp)
{
    struct plan_trace *t = *tp;

    if (t == NULL)
        return;
    free(t->req_obj);
    free(t->req_size);
    free(t->obj_hash);
    free(t);
    *tp = NULL;
}
