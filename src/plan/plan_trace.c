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

static int fail(char *err, size_t errlen, const char *name, uint64_t line, const char *what)
{
    snprintf(err, errlen, "%s:%llu: %s", name, (unsigned long long)line, what);
    return -EINVAL;
}

int plan_trace_parse_csv(const char *buf, size_t len, const char *name, struct plan_trace **out,
                         char *err, size_t errlen)
{
    struct plan_trace *t = mc_xcalloc(1, sizeof(*t));
    struct idx x = {0};
    const char *p = buf, *end = buf + len;
    uint64_t reqcap = 0, objcap = 0, line = 0;
    int rc = 0;

    x.mask = 1023;
    x.hash = mc_xcalloc(x.mask + 1, sizeof(*x.hash));
    x.id = mc_xmalloc((x.mask + 1) * sizeof(*x.id));
    memset(x.id, 0xff, (x.mask + 1) * sizeof(*x.id));
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p)), *f1, *f2, *q;
        uint64_t size = 1, h, j;
        size_t klen;

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
            rc = fail(err, errlen, name, line, "expected t,key,size");
            goto out;
        }
        for (const char *c = p; c < f1; c++)
            if ((*c < '0' || *c > '9') && *c != '.' && *c != '-') {
                if (line == 1 && t->nreq == 0)
                    goto next; /* header line */
                rc = fail(err, errlen, name, line, "t is not a number");
                goto out;
            }
        f1++;
        f2 = memchr(f1, ',', (size_t)(q - f1));
        klen = (size_t)((f2 ? f2 : q) - f1);
        if (klen == 0) {
            rc = fail(err, errlen, name, line, "empty key");
            goto out;
        }
        if (f2 != NULL) {
            const char *c = f2 + 1, *se = memchr(c, ',', (size_t)(q - c));
            if (se == NULL)
                se = q;
            if (c == se) {
                rc = fail(err, errlen, name, line, "empty size");
                goto out;
            }
            size = 0;
            for (; c < se; c++) {
                if (*c < '0' || *c > '9' || size > (UINT64_MAX - 9) / 10) {
                    rc = fail(err, errlen, name, line, "size is not a non-negative integer");
                    goto out;
                }
                size = size * 10 + (uint64_t)(*c - '0');
            }
        }
        h = XXH3_64bits(f1, klen);
        j = h & x.mask;
        while (x.id[j] != UINT32_MAX && x.hash[j] != h)
            j = (j + 1) & x.mask;
        if (x.id[j] == UINT32_MAX) {
            if (t->nobj >= UINT32_MAX - 1) {
                rc = fail(err, errlen, name, line, "too many distinct keys");
                goto out;
            }
            if (t->nobj == objcap) {
                objcap = objcap ? objcap * 2 : 1 << 14;
                t->obj_hash = mc_xrealloc(t->obj_hash, objcap * sizeof(*t->obj_hash));
            }
            x.hash[j] = h;
            x.id[j] = (uint32_t)t->nobj;
            t->obj_hash[t->nobj++] = h;
            t->unique_bytes += size;
            if (t->nobj * 2 > x.mask)
                idx_grow(&x);
            trace_push(t, &reqcap, (uint32_t)(t->nobj - 1), size);
        } else {
            trace_push(t, &reqcap, x.id[j], size);
        }
    next:
        p = eol + 1;
    }
out:
    free(x.hash);
    free(x.id);
    if (rc != 0) {
        plan_trace_free(&t);
        return rc;
    }
    *out = t;
    return 0;
}

int plan_trace_load_csv(const char *path, struct plan_trace **out, char *err, size_t errlen)
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
    rc = plan_trace_parse_csv(m ? m : "", (size_t)st.st_size, path, out, err, errlen);
    if (m != NULL)
        munmap(m, (size_t)st.st_size);
    if (rc == 0 && (*out)->nreq == 0) {
        plan_trace_free(out);
        snprintf(err, errlen, "%s: no requests", path);
        return -EINVAL;
    }
    return rc;
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
