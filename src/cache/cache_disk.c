/* src/cache/cache_disk.c: L2 disk store (see cache_disk.h).
 *
 * Structures: struct l2 holds NSHARDS index shards (buckets of struct l2_key, one per
 * primary key, each listing its variants, struct l2_entry, one per file), one policy for
 * the whole store, and a background thread that rebuilds the index, then runs queued
 * unlinks.
 *
 * Locks, always taken in this order: a name lock (striped by file name; serialises the
 * rename, unlink and "index what I found on disk" steps of one name, and is held only
 * around those few syscalls), a shard's mtx (its index, its pending unlinks, the
 * verification records of its variants), pol_mtx (the policy and every in_policy), then
 * the leaves tomb_mtx and bg_mtx. No I/O ever runs under a shard lock or pol_mtx.
 *
 * Refcounts: the index holds one reference on each indexed variant (in_index); handles
 * hold the others. Policy victims are picked under pol_mtx but unlinked from their
 * (possibly other) shard after it is released, which keeps the lock order; meanwhile they
 * are still indexed but out of the policy (in_policy 0), and still readable.
 *
 * Stale files: a queued unlink records the inode it targets and stays in its shard's
 * pending list until done; every unlink by name checks that inode under the name lock, so
 * a newer file renamed to the same name is never deleted, and the rebuild or a probe never
 * re-indexes a file whose unlink is pending. Removals issued during the rebuild also leave
 * tombstones, so that files not indexed yet are deleted when the walk reaches them. */
#include "cache/cache_disk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "cache/cache_key.h"
#include "cache/cache_mem.h"
#include "cache/cache_pack.h"
#include "core/log.h"
#include "core/mc.h"
#include "core/units.h"

#define L2_MAGIC 0x4c324453u
#define L2_ENTRY_MAGIC 0x4c32454eu
#define L2_WRITER_MAGIC 0x4c325752u
#define L2_FORMAT_VERSION 1
#define NSHARDS 16u
#define NNAMELOCKS 64u
#define NAME_LEN 56u            /* "ab/cd/" + 32 hex + "-" + 16 hex + NUL */
#define VERIFY_CHUNK (1u << 20) /* read size when hashing a body */
#define VKEY_CAP (64u << 10)    /* as L1 */

/* Prelude layout (little endian). The header checksum covers [P_HDR_LEN, hdr_len): every
 * field after it and the metadata; the magic, version and flags are checked exactly. */
#define P_MAGIC 0
#define P_VERSION 4
#define P_FLAGS 6
#define P_HDR_SUM 8
#define P_HDR_LEN 16
#define P_RESERVED 20
#define P_BODY_OFF 24
#define P_BODY_LEN 32
#define P_BODY_SUM 40
static const char file_magic[4] = {'M', 'C', 'L', '2'};

struct l2_key {
    struct l2_key *next;
    uint64_t h, bb;
    char *vary; /* lowercased Vary list of the variants (all share it), NULL when none */
    struct l2_entry *variants;
    size_t plen;
    char pkey[];
};

struct l2_entry {
    unsigned magic;
    _Atomic unsigned refcnt;
    struct cache_pnode pnode; /* pol_mtx */
    int in_policy;            /* pol_mtx */
    /* Index linkage: the shard's mtx. */
    struct l2_entry *vnext;
    struct l2_key *key;
    int in_index;
    _Atomic unsigned hits;
    _Atomic uint64_t mark; /* the caller's word (l2_entry_mark_swap) */
    unsigned shard;
    uint8_t ph[16]; /* XXH3-128(pkey), canonical: the file name's first part */
    uint64_t vh;    /* XXH3-64(vkey) */
    /* File facts, fixed once indexed. ino is the file the index means: an unlink or a
     * read that finds another inode at the name is looking at someone else's file. */
    uint64_t body_off, body_len, body_sum, charge;
    ino_t ino;
    /* The last body verification in this process (the shard's mtx). */
    int verified;
    off_t v_size;
    struct timespec v_mtim, v_ctim;
    char *vary;
    /* What invalidation asks of a file without reading it (l2_walk): fixed once made. */
    int64_t stored_us;
    char *tags; /* cache_obj_tags(), NULL when none */
    size_t tags_len;
    size_t plen, vkey_len;
    char *pkey, *vkey; /* in this allocation, NUL-terminated */
};

struct pending {
    struct pending *next;
    uint8_t ph[16];
    uint64_t vh;
    ino_t ino;
    uint64_t seq; /* l2->pend_seq when queued (l2_flush_unlinks) */
    int busy;     /* the unlink is running: still counts as pending */
};

struct shard {
    pthread_mutex_t mtx;
    struct l2_key **buckets;
    size_t nbuckets, nkeys;
    struct pending *pend;
};

enum tomb_kind { TOMB_KEY, TOMB_PATH };

struct tomb {
    struct tomb *next;
    enum tomb_kind kind;
    char *host; /* TOMB_PATH: NULL = every host */
    size_t hlen, slen;
    char *s; /* the key, or the path-and-query */
};

struct l2 {
    unsigned magic;
    int dirfd, tmpfd, lockfd;
    char *dir;
    uint64_t budget, max_object;
    struct shard shards[NSHARDS];
    pthread_mutex_t names[NNAMELOCKS];
    pthread_mutex_t pol_mtx;
    struct cache_policy *pol;
    _Atomic uint64_t objects, bytes, at_start, corrupt, write_errors, evictions;
    _Atomic uint64_t paused_until, pause_ns; /* monotonic ns */
    _Atomic unsigned inj_nth;
    _Atomic int inj_err;
    _Atomic int ready;
    _Atomic unsigned writers;
    _Atomic uint64_t tmpseq, npending, pend_seq;
    pthread_mutex_t tomb_mtx;
    struct tomb *tombs;
    int tomb_active;
    pthread_t bg;
    pthread_mutex_t bg_mtx;
    pthread_cond_t bg_cond;
    int bg_stop;
    unsigned bg_work;
};

struct l2_writer {
    unsigned magic;
    struct l2 *l2;
    int fd;
    int err; /* sticky: the first failure */
    char tmpname[48];
    struct l2_entry *en; /* the variant to index at commit (not indexed yet) */
    struct buf hdr;      /* prelude + metadata, rewritten at commit */
    uint64_t pos;
    int64_t expected;
    XXH3_state_t *xs;
};

/* References dropped under a lock, released after it (as in cache_mem.c). */
struct dropped {
    struct l2_entry **v;
    size_t n, cap;
};

static void put16(char *p, uint16_t v)
{
    for (int i = 0; i < 2; i++)
        p[i] = (char)(v >> (8 * i));
}
static void put32(char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (char)(v >> (8 * i));
}
static void put64(char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (char)(v >> (8 * i));
}
static uint64_t getn(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t round_up(uint64_t v)
{
    return (v + L2_ALIGN - 1) & ~(uint64_t)(L2_ALIGN - 1);
}

static int bytes_eq(const char *a, size_t an, const char *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

static int same_vary(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

static uint64_t hash_vkey(const char *vkey, size_t n)
{
    return XXH3_64bits(vkey, n);
}

static void name_of(const uint8_t ph[16], uint64_t vh, char out[NAME_LEN])
{
    static const char hx[] = "0123456789abcdef";
    char *p = out;

    for (int i = 0; i < 2; i++) { /* "ab/cd/": 65536 leaf directories */
        *p++ = hx[ph[i] >> 4];
        *p++ = hx[ph[i] & 15];
        *p++ = '/';
    }
    for (int i = 0; i < 16; i++) {
        *p++ = hx[ph[i] >> 4];
        *p++ = hx[ph[i] & 15];
    }
    *p++ = '-';
    for (int i = 15; i >= 0; i--)
        *p++ = hx[(vh >> (4 * i)) & 15];
    *p = '\0';
}

static pthread_mutex_t *name_lock(struct l2 *l2, const uint8_t ph[16], uint64_t vh)
{
    return &l2->names[(ph[15] ^ vh) % NNAMELOCKS];
}

static uint64_t ph_h(const uint8_t ph[16])
{
    uint64_t v;
    memcpy(&v, ph, 8);
    return v;
}

static uint64_t ph_bb(const uint8_t ph[16])
{
    uint64_t v;
    memcpy(&v, ph + 8, 8);
    return v;
}

static struct shard *shard_of(struct l2 *l2, const uint8_t ph[16])
{
    return &l2->shards[ph_h(ph) % NSHARDS];
}

/* ---- failure accounting and injection ---- */

static int inject(struct l2 *l2)
{
    unsigned n = atomic_load(&l2->inj_nth);

    while (n != 0) {
        if (atomic_compare_exchange_weak(&l2->inj_nth, &n, n - 1))
            return n == 1 ? -atomic_load(&l2->inj_err) : 0;
    }
    return 0;
}

/* A full or failing disk stops admission for a while; serving goes on. */
static int note_write_error(struct l2 *l2, int err)
{
    if (err == -ENOSPC || err == -EIO || err == -EDQUOT) {
        atomic_fetch_add(&l2->write_errors, 1);
        atomic_store(&l2->paused_until, units_now_ns() + atomic_load(&l2->pause_ns));
    }
    return err;
}

void l2__inject_write_error(struct l2 *l2, unsigned nth, int err)
{
    MC_CHECK_OBJ_NOTNULL(l2, L2_MAGIC);
    atomic_store(&l2->inj_err, err);
    atomic_store(&l2->inj_nth, nth);
}

void l2__set_pause_ns(struct l2 *l2, uint64_t ns)
{
    MC_CHECK_OBJ_NOTNULL(l2, L2_MAGIC);
    atomic_store(&l2->pause_ns, ns);
    if (ns == 0)
        atomic_store(&l2->paused_until, 0);
}

static int pwrite_all(int fd, const void *p, size_t n, uint64_t off)
{
    const char *c = p;

    while (n) {
        ssize_t k = pwrite(fd, c, n, (off_t)off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        if (k == 0)
            return -EIO;
        c += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

/* Bytes read (short only at end of file) or -errno. */
static ssize_t pread_all(int fd, void *p, size_t n, uint64_t off)
{
    char *c = p;
    size_t got = 0;

    while (got < n) {
        ssize_t k = pread(fd, c + got, n - got, (off_t)(off + got));
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        if (k == 0)
            break;
        got += (size_t)k;
    }
    return (ssize_t)got;
}

/* ---- header ---- */

uint64_t l2__hdr_sum(const void *hdr, size_t hdr_len)
{
    MC_ASSERT(hdr_len >= L2_PRELUDE_LEN);
    return cache_pack_sum((const char *)hdr + P_HDR_LEN, hdr_len - P_HDR_LEN);
}

static void prelude_fill(char *p, size_t hdr_len, uint64_t body_len, uint64_t body_sum)
{
    memcpy(p + P_MAGIC, file_magic, 4);
    put16(p + P_VERSION, L2_FORMAT_VERSION);
    put16(p + P_FLAGS, 0);
    put32(p + P_HDR_LEN, (uint32_t)hdr_len);
    put32(p + P_RESERVED, 0);
    put64(p + P_BODY_OFF, round_up(hdr_len));
    put64(p + P_BODY_LEN, body_len);
    put64(p + P_BODY_SUM, body_sum);
    put64(p + P_HDR_SUM, l2__hdr_sum(p, hdr_len));
}

int l2__hdr_build(struct buf *out, const char *pkey, size_t plen, const struct cache_obj *o,
                  uint64_t body_len, uint64_t body_sum)
{
    static const char zero[L2_PRELUDE_LEN];
    size_t start = out->len;
    int err = buf_append(out, zero, sizeof(zero));

    if (err == 0)
        err = cache_pack_meta(out, pkey, plen, o);
    if (err == 0 && out->len - start > L2_HDR_MAX)
        err = -E2BIG;
    if (err != 0) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
        return err;
    }
    prelude_fill(out->data + start, out->len - start, body_len, body_sum);
    return 0;
}

int l2__hdr_parse(const void *p, size_t n, struct l2__hdr *h, struct cache_obj **obj, char **pkey,
                  size_t *plen)
{
    const unsigned char *u = p;
    struct cache_obj *o = NULL;
    char *k = NULL;
    size_t kl = 0, used = 0;
    uint64_t hdr_len, body_off, body_len;

    if (n < L2_PRELUDE_LEN || memcmp(u + P_MAGIC, file_magic, 4) != 0 ||
        getn(u + P_VERSION, 2) != L2_FORMAT_VERSION || getn(u + P_FLAGS, 2) != 0 ||
        getn(u + P_RESERVED, 4) != 0)
        return -EINVAL;
    hdr_len = getn(u + P_HDR_LEN, 4);
    body_off = getn(u + P_BODY_OFF, 8);
    body_len = getn(u + P_BODY_LEN, 8);
    if (hdr_len < L2_PRELUDE_LEN || hdr_len > L2_HDR_MAX || hdr_len > n ||
        body_off != round_up(hdr_len) || body_len > (uint64_t)INT64_MAX - body_off)
        return -EINVAL;
    if (getn(u + P_HDR_SUM, 8) != l2__hdr_sum(p, hdr_len))
        return -EINVAL;
    if (cache_unpack_meta(u + L2_PRELUDE_LEN, hdr_len - L2_PRELUDE_LEN, &o, &k, &kl, &used) != 0)
        return -EINVAL;
    /* Trailing bytes inside the checksummed header would be a writer bug or a forgery. */
    if (used != hdr_len - L2_PRELUDE_LEN) {
        cache_obj_unref(&o);
        free(k);
        return -EINVAL;
    }
    h->hdr_len = (uint32_t)hdr_len;
    h->body_off = body_off;
    h->body_len = body_len;
    h->body_xxh = getn(u + P_BODY_SUM, 8);
    *obj = o;
    *pkey = k;
    *plen = kl;
    return 0;
}

/* Reads and verifies the header of an open file. -EINVAL: bad or truncated; -ENOMEM,
 * -EIO and other read errors as they come. */
static int read_header(int fd, struct l2__hdr *h, struct cache_obj **obj, char **pkey, size_t *plen)
{
    char first[L2_ALIGN];
    char *big = NULL;
    ssize_t n = pread_all(fd, first, sizeof(first), 0);
    int err;

    if (n < 0)
        return (int)n;
    if ((size_t)n < L2_PRELUDE_LEN)
        return -EINVAL;
    uint64_t hdr_len = getn((const unsigned char *)first + P_HDR_LEN, 4);
    if (hdr_len <= (uint64_t)n || hdr_len > L2_HDR_MAX)
        return l2__hdr_parse(first, (size_t)n, h, obj, pkey, plen);
    /* A header beyond one page: payload memory, may fail. */
    big = malloc((size_t)hdr_len);
    if (!big)
        return -ENOMEM;
    n = pread_all(fd, big, (size_t)hdr_len, 0);
    err = n < 0 ? (int)n : l2__hdr_parse(big, (size_t)n, h, obj, pkey, plen);
    free(big);
    return err;
}

/* ---- entries and index ---- */

static struct l2_entry *entry_new(const char *pkey, size_t plen, const char *vkey, size_t vlen,
                                  const char *vary)
{
    struct l2_entry *en = mc_xcalloc(1, sizeof(*en) + plen + 1 + vlen + 1);

    MC_INIT_OBJ(en, L2_ENTRY_MAGIC);
    atomic_init(&en->refcnt, 1);
    en->pkey = (char *)(en + 1);
    en->vkey = en->pkey + plen + 1;
    if (plen)
        memcpy(en->pkey, pkey, plen);
    if (vlen)
        memcpy(en->vkey, vkey, vlen);
    en->plen = plen;
    en->vkey_len = vlen;
    en->vary = vary ? mc_xstrdup(vary) : NULL;
    cache_key_hash(pkey, plen, en->ph);
    en->vh = hash_vkey(vkey, vlen);
    en->shard = (unsigned)(ph_h(en->ph) % NSHARDS);
    return en;
}

/* The invalidation facts of the object stored in en (l2_walk). Tags that would not fit
 * are kept as one that matches no tag ban, and the file stays findable by its time and
 * path; cache_obj_tags() bounds them. */
static void entry_meta(struct l2_entry *en, const struct cache_obj *o)
{
    char tags[CACHE_OBJ_TAGS_MAX];
    size_t tl = cache_obj_tags(o, tags, sizeof(tags));

    en->stored_us = o->stored_us;
    if (tl != (size_t)-1 && tl > 0) {
        en->tags = mc_xstrndup(tags, tl);
        en->tags_len = tl;
    }
}

struct l2_entry *l2_entry_ref(struct l2_entry *en)
{
    MC_CHECK_OBJ_NOTNULL(en, L2_ENTRY_MAGIC);
    atomic_fetch_add_explicit(&en->refcnt, 1, memory_order_relaxed);
    return en;
}

void l2_entry_unref(struct l2_entry **enp)
{
    struct l2_entry *en = *enp;

    *enp = NULL;
    if (!en)
        return;
    MC_CHECK_OBJ_NOTNULL(en, L2_ENTRY_MAGIC);
    if (atomic_fetch_sub_explicit(&en->refcnt, 1, memory_order_acq_rel) != 1)
        return;
    MC_ASSERT(!en->in_index && !en->in_policy);
    free(en->vary);
    free(en->tags);
    MC_FREE_OBJ(en);
}

unsigned l2_entry_hits(const struct l2_entry *en)
{
    MC_CHECK_OBJ_NOTNULL(en, L2_ENTRY_MAGIC);
    return atomic_load(&((struct l2_entry *)en)->hits);
}

uint64_t l2_entry_mark_swap(struct l2_entry *en, uint64_t v)
{
    MC_CHECK_OBJ_NOTNULL(en, L2_ENTRY_MAGIC);
    return atomic_exchange(&en->mark, v);
}

uint64_t l2_entry_size(const struct l2_entry *en)
{
    MC_CHECK_OBJ_NOTNULL(en, L2_ENTRY_MAGIC);
    return en->body_len;
}

static void dropped_add(struct dropped *d, struct l2_entry *en)
{
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 8;
        d->v = mc_xrealloc(d->v, d->cap * sizeof(*d->v));
    }
    d->v[d->n++] = en;
}

static void dropped_release(struct dropped *d)
{
    for (size_t i = 0; i < d->n; i++)
        l2_entry_unref(&d->v[i]);
    free(d->v);
    memset(d, 0, sizeof(*d));
}

static struct l2_key *key_find(struct shard *s, const uint8_t ph[16], const char *pkey, size_t plen)
{
    uint64_t h = ph_h(ph), bb = ph_bb(ph);

    mc_lock_assert_held(&s->mtx);
    for (struct l2_key *k = s->buckets[bb & (s->nbuckets - 1)]; k; k = k->next)
        if (k->h == h && bytes_eq(k->pkey, k->plen, pkey, plen))
            return k;
    return NULL;
}

static struct l2_entry *variant_find(struct l2_key *k, const char *vkey, size_t vlen)
{
    for (struct l2_entry *x = k->variants; x; x = x->vnext)
        if (bytes_eq(x->vkey, x->vkey_len, vkey, vlen))
            return x;
    return NULL;
}

static void grow(struct shard *s)
{
    size_t nb;
    struct l2_key **nbk;

    mc_lock_assert_held(&s->mtx);
    nb = s->nbuckets * 2;
    nbk = mc_xcalloc(nb, sizeof(*nbk));
    for (size_t i = 0; i < s->nbuckets; i++) {
        struct l2_key *k = s->buckets[i], *kn;
        for (; k; k = kn) {
            kn = k->next;
            k->next = nbk[k->bb & (nb - 1)];
            nbk[k->bb & (nb - 1)] = k;
        }
    }
    free(s->buckets);
    s->buckets = nbk;
    s->nbuckets = nb;
}

static void key_unlink(struct shard *s, struct l2_key *k)
{
    mc_lock_assert_held(&s->mtx);
    for (struct l2_key **pp = &s->buckets[k->bb & (s->nbuckets - 1)]; *pp; pp = &(*pp)->next) {
        if (*pp == k) {
            *pp = k->next;
            s->nkeys--;
            free(k->vary);
            free(k);
            return;
        }
    }
    MC_ASSERT(!"key not in its bucket");
}

static void kick(struct l2 *l2)
{
    pthread_mutex_lock(&l2->bg_mtx);
    l2->bg_work++;
    pthread_cond_signal(&l2->bg_cond);
    pthread_mutex_unlock(&l2->bg_mtx);
}

static void pend_push(struct l2 *l2, struct shard *s, const struct l2_entry *en)
{
    struct pending *p = mc_xcalloc(1, sizeof(*p));

    mc_lock_assert_held(&s->mtx);
    memcpy(p->ph, en->ph, 16);
    p->vh = en->vh;
    p->ino = en->ino;
    p->seq = atomic_fetch_add(&l2->pend_seq, 1) + 1;
    p->next = s->pend;
    s->pend = p;
    atomic_fetch_add(&l2->npending, 1);
}

static int pend_has(struct shard *s, const struct l2_entry *en)
{
    for (struct pending *p = s->pend; p; p = p->next)
        if (p->vh == en->vh && p->ino == en->ino && memcmp(p->ph, en->ph, 16) == 0)
            return 1;
    return 0;
}

/* Removes en from its key (policy already done); unlink: queue its file's removal. The
 * index's reference goes to d. */
static void variant_unlink(struct l2 *l2, struct shard *s, struct l2_entry *en, int unlink,
                           struct dropped *d)
{
    struct l2_key *k = en->key;

    mc_lock_assert_held(&s->mtx);
    MC_ASSERT(en->in_index && k != NULL);
    for (struct l2_entry **pp = &k->variants; *pp; pp = &(*pp)->vnext) {
        if (*pp == en) {
            *pp = en->vnext;
            break;
        }
    }
    en->vnext = NULL;
    en->key = NULL;
    en->in_index = 0;
    atomic_fetch_sub(&l2->bytes, en->charge);
    atomic_fetch_sub(&l2->objects, 1);
    if (unlink)
        pend_push(l2, s, en);
    dropped_add(d, en);
    if (!k->variants)
        key_unlink(s, k);
}

static void drop_variant(struct l2 *l2, struct shard *s, struct l2_entry *en, int unlink,
                         struct dropped *d)
{
    mc_lock_assert_held(&s->mtx);
    pthread_mutex_lock(&l2->pol_mtx);
    if (en->in_policy) {
        cache_policy_remove(l2->pol, &en->pnode);
        en->in_policy = 0;
    }
    pthread_mutex_unlock(&l2->pol_mtx);
    variant_unlink(l2, s, en, unlink, d);
}

/* Drops every variant of k, which frees k. */
static void drop_key(struct l2 *l2, struct shard *s, struct l2_key *k, struct dropped *d)
{
    mc_lock_assert_held(&s->mtx);
    while (k->variants) {
        int last = k->variants->vnext == NULL;
        drop_variant(l2, s, k->variants, 1, d);
        if (last)
            return;
    }
}

/* Offers en to the policy; victims are collected (with a reference each) to be removed
 * from their shard once the caller released its locks. -EFBIG when refused. */
static int policy_admit(struct l2 *l2, struct l2_entry *en, struct dropped *victims)
{
    struct cache_pnode *v;
    int err = 0;

    pthread_mutex_lock(&l2->pol_mtx);
    if (cache_policy_insert(l2->pol, &en->pnode, ph_h(en->ph) ^ en->vh, en->charge) !=
        CACHE_POLICY_ADMITTED) {
        err = -EFBIG;
    } else {
        en->in_policy = 1;
        while ((v = cache_policy_victim(l2->pol)) != NULL) {
            struct l2_entry *x = MC_CONTAINER_OF(v, struct l2_entry, pnode);
            x->in_policy = 0;
            dropped_add(victims, l2_entry_ref(x));
        }
    }
    pthread_mutex_unlock(&l2->pol_mtx);
    return err;
}

/* Links en under k (created when NULL) and gives the index its reference. */
static void link_variant(struct l2 *l2, struct shard *s, struct l2_key *k, struct l2_entry *en)
{
    mc_lock_assert_held(&s->mtx);
    if (!k) {
        if (s->nkeys >= s->nbuckets)
            grow(s);
        k = mc_xcalloc(1, sizeof(*k) + en->plen + 1);
        k->h = ph_h(en->ph);
        k->bb = ph_bb(en->ph);
        k->plen = en->plen;
        memcpy(k->pkey, en->pkey, en->plen);
        k->vary = en->vary ? mc_xstrdup(en->vary) : NULL;
        k->next = s->buckets[k->bb & (s->nbuckets - 1)];
        s->buckets[k->bb & (s->nbuckets - 1)] = k;
        s->nkeys++;
    }
    en->key = k;
    en->vnext = k->variants;
    k->variants = en;
    en->in_index = 1;
    l2_entry_ref(en);
    atomic_fetch_add(&l2->bytes, en->charge);
    atomic_fetch_add(&l2->objects, 1);
}

/* Removes the policy's victims from the index (each in its own shard) and queues their
 * unlinks; releases the victims' references. */
static void evict(struct l2 *l2, struct dropped *victims)
{
    struct dropped d = {0};
    int any = 0;

    for (size_t i = 0; i < victims->n; i++) {
        struct l2_entry *en = victims->v[i];
        struct shard *s = &l2->shards[en->shard];
        pthread_mutex_lock(&s->mtx);
        /* Someone may have dropped it between the policy's choice and now. */
        if (en->in_index) {
            variant_unlink(l2, s, en, 1, &d);
            atomic_fetch_add(&l2->evictions, 1);
            any = 1;
        }
        pthread_mutex_unlock(&s->mtx);
    }
    dropped_release(victims);
    dropped_release(&d);
    if (any)
        kick(l2);
}

static void hit(struct l2 *l2, struct l2_entry *en)
{
    atomic_fetch_add_explicit(&en->hits, 1, memory_order_relaxed);
    /* Always under pol_mtx: "lru" reorders on a hit, and a victim chosen concurrently may
     * already be out of the policy. L2 lookups only follow L1 misses, so this is cheap. */
    pthread_mutex_lock(&l2->pol_mtx);
    if (en->in_policy)
        cache_policy_hit(l2->pol, &en->pnode);
    pthread_mutex_unlock(&l2->pol_mtx);
}

/* ---- tombstones (removals issued while the rebuild runs) ---- */

static int pkey_path_match(const char *pkey, size_t klen, const char *host, size_t hlen,
                           const char *pathq, size_t plen)
{
    const char *slash = memchr(pkey, '/', klen);

    if (!slash)
        return 0;
    size_t kh = (size_t)(slash - pkey);
    if (!bytes_eq(slash, klen - kh, pathq, plen))
        return 0;
    return !host || (kh == hlen && strncasecmp(pkey, host, hlen) == 0);
}

static void tomb_add(struct l2 *l2, enum tomb_kind kind, const char *host, size_t hlen,
                     const char *s, size_t slen)
{
    pthread_mutex_lock(&l2->tomb_mtx);
    if (l2->tomb_active) {
        struct tomb *t = mc_xcalloc(1, sizeof(*t));
        t->kind = kind;
        t->host = host ? mc_xstrndup(host, hlen) : NULL;
        t->hlen = hlen;
        t->s = mc_xstrndup(s, slen);
        t->slen = slen;
        t->next = l2->tombs;
        l2->tombs = t;
    }
    pthread_mutex_unlock(&l2->tomb_mtx);
}

static int tomb_match(struct l2 *l2, const char *pkey, size_t plen)
{
    int m = 0;

    pthread_mutex_lock(&l2->tomb_mtx);
    for (struct tomb *t = l2->tombs; t && !m; t = t->next) {
        if (t->kind == TOMB_KEY)
            m = bytes_eq(t->s, t->slen, pkey, plen);
        else
            m = pkey_path_match(pkey, plen, t->host, t->hlen, t->s, t->slen);
    }
    pthread_mutex_unlock(&l2->tomb_mtx);
    return m;
}

static void tombs_end(struct l2 *l2)
{
    pthread_mutex_lock(&l2->tomb_mtx);
    l2->tomb_active = 0;
    while (l2->tombs) {
        struct tomb *t = l2->tombs;
        l2->tombs = t->next;
        free(t->host);
        free(t->s);
        free(t);
    }
    pthread_mutex_unlock(&l2->tomb_mtx);
}

/* ---- unlinks ---- */

/* Unlinks the name only while it still is inode `ino`; the caller holds its name lock nl. */
static int unlink_if_locked(struct l2 *l2, pthread_mutex_t *nl, const char *name, ino_t ino)
{
    struct stat st;

    mc_lock_assert_held(nl);
    if (fstatat(l2->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return -errno;
    if (st.st_ino != ino)
        return -ESTALE;
    return unlinkat(l2->dirfd, name, 0) == 0 ? 0 : -errno;
}

static int unlink_checked(struct l2 *l2, const uint8_t ph[16], uint64_t vh, ino_t ino)
{
    pthread_mutex_t *nl = name_lock(l2, ph, vh);
    char name[NAME_LEN];
    int err;

    name_of(ph, vh, name);
    pthread_mutex_lock(nl);
    err = unlink_if_locked(l2, nl, name, ino);
    pthread_mutex_unlock(nl);
    return err;
}

/* Background thread: runs the queued unlinks. An item stays listed (busy) until its unlink
 * is done, so that a probe racing with it sees the file as going away. */
static void drain_unlinks(struct l2 *l2)
{
    if (atomic_load(&l2->npending) == 0)
        return;
    for (unsigned i = 0; i < NSHARDS; i++) {
        struct shard *s = &l2->shards[i];
        for (;;) {
            struct pending *p, **pp;
            pthread_mutex_lock(&s->mtx);
            for (p = s->pend; p && p->busy; p = p->next)
                ;
            if (p)
                p->busy = 1;
            pthread_mutex_unlock(&s->mtx);
            if (!p)
                break;
            int err = unlink_checked(l2, p->ph, p->vh, p->ino);
            if (err != 0 && err != -ENOENT && err != -ESTALE) {
                char name[NAME_LEN];
                name_of(p->ph, p->vh, name);
                log_warn("l2 unlink failed", "dir=%s file=%s err=%s", l2->dir, name,
                         strerror(-err));
            }
            pthread_mutex_lock(&s->mtx);
            for (pp = &s->pend; *pp != p; pp = &(*pp)->next)
                ;
            *pp = p->next;
            pthread_mutex_unlock(&s->mtx);
            free(p);
            atomic_fetch_sub(&l2->npending, 1);
        }
    }
}

/* ---- files found on disk (rebuild, probe) ---- */

/* Indexes en, read from the file now at its name (en->ino), unless the index or the disk
 * moved on since it was read: a variant already indexed under that name (a newer write,
 * or an earlier find) wins; a file of an older Vary list, a purged one, or one the policy
 * refuses is deleted; one whose unlink is queued is left to it.
 * Removals add their tombstone before touching the index, and this check and the insert
 * run under one hold of the shard lock: so either the check sees the tombstone, or the
 * insert precedes the removal's index step, which then drops it. Returns 0 (indexed), 1
 * (already indexed: *out is that one), -ENOENT (skipped). *out (may be NULL) gets a new
 * reference on success. */
static int index_found(struct l2 *l2, struct l2_entry *en, struct l2_entry **out)
{
    pthread_mutex_t *nl = name_lock(l2, en->ph, en->vh);
    struct shard *s = &l2->shards[en->shard];
    struct dropped victims = {0};
    char name[NAME_LEN];
    struct stat st;
    int rc, del = 0;

    name_of(en->ph, en->vh, name);
    pthread_mutex_lock(nl);
    if (fstatat(l2->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || st.st_ino != en->ino) {
        pthread_mutex_unlock(nl);
        return -ENOENT;
    }
    pthread_mutex_lock(&s->mtx);
    struct l2_key *k = key_find(s, en->ph, en->pkey, en->plen);
    struct l2_entry *x = k ? variant_find(k, en->vkey, en->vkey_len) : NULL;
    if (x) {
        rc = 1;
        if (out)
            *out = l2_entry_ref(x);
    } else if ((k && !same_vary(k->vary, en->vary)) || tomb_match(l2, en->pkey, en->plen)) {
        rc = -ENOENT; /* an older Vary list (unreachable), or purged during the rebuild */
        del = 1;
    } else if (pend_has(s, en)) {
        rc = -ENOENT;
    } else if (policy_admit(l2, en, &victims) != 0 && policy_admit(l2, en, &victims) != 0) {
        /* Offered twice: a file on disk was admitted once already, and the default policy
         * refuses a first-seen giant but admits it on its second offer (eviction.md). A
         * hard bound (a smaller budget than last run) still refuses it. */
        rc = -ENOENT;
        del = 1;
    } else {
        link_variant(l2, s, k, en);
        rc = 0;
        if (out)
            *out = l2_entry_ref(en);
    }
    pthread_mutex_unlock(&s->mtx);
    if (del)
        (void)unlinkat(l2->dirfd, name, 0); /* still en->ino: checked under this lock */
    pthread_mutex_unlock(nl);
    evict(l2, &victims);
    return rc;
}

/* Opens, checks and offers to the index the file named (ph, vh). want: the key the caller
 * asks for (a probe), or NULL (the rebuild). Returns as index_found(), or -EBADMSG
 * (corrupt: deleted and counted; *why says what), -ENOENT, another -errno. */
static int found_file(struct l2 *l2, const uint8_t ph[16], uint64_t vh, const char *want,
                      size_t wlen, struct l2_entry **out, const char **why)
{
    struct cache_obj *obj = NULL;
    struct l2_entry *en;
    struct l2__hdr h;
    struct stat st;
    char name[NAME_LEN], *pkey = NULL;
    uint8_t kh[16];
    size_t plen = 0;
    int fd, rc;

    name_of(ph, vh, name);
    fd = openat(l2->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ELOOP ? -ENOENT : -errno;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = -ENOENT;
        goto out;
    }
    rc = read_header(fd, &h, &obj, &pkey, &plen);
    if (rc == -EINVAL) {
        *why = "bad header";
        goto corrupt;
    }
    if (rc != 0)
        goto out;
    cache_key_hash(pkey, plen, kh);
    if (memcmp(kh, ph, 16) != 0 || hash_vkey(obj->vkey, obj->vkey_len) != vh) {
        *why = "name does not match the stored key";
        goto corrupt;
    }
    if ((uint64_t)st.st_size != h.body_off + h.body_len) {
        *why = "file size differs from the header's (truncated?)";
        goto corrupt;
    }
    if (want && !bytes_eq(want, wlen, pkey, plen)) {
        rc = -ENOENT; /* an XXH3-128 collision: another key's file */
        goto out;
    }
    en = entry_new(pkey, plen, obj->vkey, obj->vkey_len, obj->vary);
    entry_meta(en, obj);
    en->body_off = h.body_off;
    en->body_len = h.body_len;
    en->body_sum = h.body_xxh;
    en->charge = h.body_off + h.body_len;
    en->ino = st.st_ino;
    rc = index_found(l2, en, out);
    l2_entry_unref(&en);
    goto out;
corrupt:
    (void)unlink_checked(l2, ph, vh, st.st_ino);
    atomic_fetch_add(&l2->corrupt, 1);
    rc = -EBADMSG;
out:
    close(fd);
    cache_obj_unref(&obj);
    free(pkey);
    return rc;
}

/* Lower-case only: the store writes its names so, and any other spelling is not its file. */
static int is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* "ab", "cd", "<32 hex>-<16 hex>" with ab/cd the first bytes: one of our files. */
static int parse_name(const char *d1, const char *d2, const char *f, uint8_t ph[16], uint64_t *vh)
{
    if (strlen(f) != 49 || f[32] != '-' || !is_hex(f, 32) || !is_hex(f + 33, 16) ||
        memcmp(f, d1, 2) != 0 || memcmp(f + 2, d2, 2) != 0)
        return 0;
    for (int i = 0; i < 16; i++)
        ph[i] = (uint8_t)(mc_hexval(f[2 * i]) << 4 | mc_hexval(f[2 * i + 1]));
    *vh = 0;
    for (int i = 0; i < 16; i++)
        *vh = *vh << 4 | (unsigned)mc_hexval(f[33 + i]);
    return 1;
}

static int bg_stopping(struct l2 *l2)
{
    pthread_mutex_lock(&l2->bg_mtx);
    int stop = l2->bg_stop;
    pthread_mutex_unlock(&l2->bg_mtx);
    return stop;
}

static DIR *opendir_at(int dfd, const char *name)
{
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    DIR *d;

    if (fd < 0)
        return NULL;
    d = fdopendir(fd);
    if (!d)
        close(fd);
    return d;
}

static int is_hex2(const char *s)
{
    return strlen(s) == 2 && is_hex(s, 2);
}

/* Walks DIR/ab/cd/ and offers every file to the index. Bodies are not hashed here (that
 * would read the whole disk before serving): l2_read verifies each at its first use. */
static void rebuild(struct l2 *l2)
{
    uint64_t t0 = units_now_ms(), found = 0, bad = 0;
    DIR *top = opendir_at(l2->dirfd, ".");
    struct dirent *a, *b, *f;

    if (!top) {
        log_error("l2 rebuild failed", "dir=%s err=%s", l2->dir, strerror(errno));
        return;
    }
    while ((a = readdir(top)) != NULL && !bg_stopping(l2)) {
        if (!is_hex2(a->d_name))
            continue;
        DIR *da = opendir_at(dirfd(top), a->d_name);
        while (da && (b = readdir(da)) != NULL) {
            if (!is_hex2(b->d_name))
                continue;
            DIR *db = opendir_at(dirfd(da), b->d_name);
            while (db && (f = readdir(db)) != NULL && !bg_stopping(l2)) {
                uint8_t ph[16];
                uint64_t vh;
                const char *why = NULL;
                if (!parse_name(a->d_name, b->d_name, f->d_name, ph, &vh))
                    continue; /* not ours: left alone */
                drain_unlinks(l2);
                int rc = found_file(l2, ph, vh, NULL, 0, NULL, &why);
                if (rc == 0) {
                    found++;
                    atomic_fetch_add(&l2->at_start, 1);
                } else if (rc == -EBADMSG) {
                    bad++;
                    log_warn("l2 corrupt file deleted", "dir=%s file=%s/%s/%s reason=\"%s\"",
                             l2->dir, a->d_name, b->d_name, f->d_name, why);
                }
            }
            if (db)
                closedir(db);
        }
        if (da)
            closedir(da);
    }
    closedir(top);
    log_info("l2 rebuild done", "dir=%s indexed=%" PRIu64 " corrupt=%" PRIu64 " ms=%" PRIu64,
             l2->dir, found, bad, units_now_ms() - t0);
}

static _Atomic int hold_rebuild;

void l2__hold_rebuild(int hold)
{
    atomic_store(&hold_rebuild, hold);
}

static void *bg_main(void *arg)
{
    struct l2 *l2 = arg;

    while (atomic_load(&hold_rebuild) && !bg_stopping(l2))
        usleep(1000);
    rebuild(l2);
    /* Every file that existed at start has now been seen: tombstones have done their job. */
    tombs_end(l2);
    atomic_store(&l2->ready, 1);
    for (;;) {
        drain_unlinks(l2);
        pthread_mutex_lock(&l2->bg_mtx);
        while (!l2->bg_stop && l2->bg_work == 0)
            pthread_cond_wait(&l2->bg_cond, &l2->bg_mtx);
        int stop = l2->bg_stop;
        l2->bg_work = 0;
        pthread_mutex_unlock(&l2->bg_mtx);
        if (stop)
            break;
    }
    /* Unlinks left queued would let purged objects come back at the next start. */
    drain_unlinks(l2);
    return NULL;
}

/* ---- open / close ---- */

static int mkdir_p(const char *path)
{
    char *p = mc_xstrdup(path);
    int err = 0;

    for (char *c = p + 1; *c; c++) {
        if (*c != '/')
            continue;
        *c = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            err = -errno;
            break;
        }
        *c = '/';
    }
    if (!err && mkdir(p, 0755) != 0 && errno != EEXIST)
        err = -errno;
    free(p);
    return err;
}

/* Removes what a crash left in DIR/tmp: those files were never renamed into place. */
static void clean_tmp(struct l2 *l2)
{
    int fd = dup(l2->tmpfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *e;

    if (!d) {
        if (fd >= 0)
            close(fd);
        return;
    }
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            (void)unlinkat(l2->tmpfd, e->d_name, 0);
    closedir(d);
}

static void l2_free(struct l2 *l2)
{
    for (unsigned i = 0; i < NSHARDS; i++) {
        struct shard *s = &l2->shards[i];
        for (size_t b = 0; s->buckets && b < s->nbuckets; b++) {
            while (s->buckets[b]) {
                struct l2_key *k = s->buckets[b];
                while (k->variants) {
                    struct l2_entry *en = k->variants;
                    k->variants = en->vnext;
                    if (en->in_policy)
                        cache_policy_remove(l2->pol, &en->pnode);
                    en->in_policy = 0;
                    en->in_index = 0;
                    en->key = NULL;
                    l2_entry_unref(&en);
                }
                s->buckets[b] = k->next;
                free(k->vary);
                free(k);
            }
        }
        while (s->pend) {
            struct pending *p = s->pend;
            s->pend = p->next;
            free(p);
        }
        free(s->buckets);
        pthread_mutex_destroy(&s->mtx);
    }
    for (unsigned i = 0; i < NNAMELOCKS; i++)
        pthread_mutex_destroy(&l2->names[i]);
    cache_policy_free(&l2->pol);
    tombs_end(l2);
    pthread_mutex_destroy(&l2->pol_mtx);
    pthread_mutex_destroy(&l2->tomb_mtx);
    pthread_mutex_destroy(&l2->bg_mtx);
    pthread_cond_destroy(&l2->bg_cond);
    if (l2->tmpfd >= 0)
        close(l2->tmpfd);
    if (l2->dirfd >= 0)
        close(l2->dirfd);
    if (l2->lockfd >= 0)
        close(l2->lockfd); /* releases the flock */
    free(l2->dir);
    MC_FREE_OBJ(l2);
}

int l2_open(const struct l2_cfg *cfg, struct l2 **out, char *errbuf, size_t errlen)
{
    struct l2 *l2;
    const char *what = "";
    int err;

    if (!cfg->dir || !*cfg->dir) {
        snprintf(errbuf, errlen, "l2: no directory configured");
        return -EINVAL;
    }
    l2 = mc_xcalloc(1, sizeof(*l2));
    MC_INIT_OBJ(l2, L2_MAGIC);
    l2->dirfd = l2->tmpfd = l2->lockfd = -1;
    l2->dir = mc_xstrdup(cfg->dir);
    l2->budget = cfg->budget;
    l2->max_object = cfg->budget / L2_MAX_OBJECT_DIV;
    atomic_init(&l2->pause_ns, L2_PAUSE_NS);
    l2->tomb_active = 1;
    for (unsigned i = 0; i < NSHARDS; i++) {
        pthread_mutex_init(&l2->shards[i].mtx, NULL);
        l2->shards[i].nbuckets = 256;
        l2->shards[i].buckets = mc_xcalloc(256, sizeof(struct l2_key *));
    }
    for (unsigned i = 0; i < NNAMELOCKS; i++)
        pthread_mutex_init(&l2->names[i], NULL);
    pthread_mutex_init(&l2->pol_mtx, NULL);
    pthread_mutex_init(&l2->tomb_mtx, NULL);
    pthread_mutex_init(&l2->bg_mtx, NULL);
    pthread_cond_init(&l2->bg_cond, NULL);

    err = cache_policy_new(cfg->policy ? cfg->policy : "default", cfg->budget, &l2->pol);
    if (err) {
        what = "unknown eviction policy";
        goto fail;
    }
    cache_policy_set_max_object(l2->pol, l2->max_object);
    cache_policy_set_objective(l2->pol, cfg->objective);
    what = "cannot create directory";
    if ((err = mkdir_p(cfg->dir)) != 0)
        goto fail;
    l2->dirfd = open(cfg->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (l2->dirfd < 0) {
        err = -errno;
        goto fail;
    }
    what = "directory not writable";
    if ((mkdirat(l2->dirfd, "tmp", 0755) != 0 && errno != EEXIST) ||
        faccessat(l2->dirfd, ".", W_OK, AT_EACCESS) != 0) {
        err = -errno;
        goto fail;
    }
    l2->tmpfd = openat(l2->dirfd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    l2->lockfd = openat(l2->dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (l2->tmpfd < 0 || l2->lockfd < 0 || faccessat(l2->tmpfd, ".", W_OK, AT_EACCESS) != 0) {
        err = -errno;
        goto fail;
    }
    /* Two processes on one tree would delete each other's temporary files. */
    if (flock(l2->lockfd, LOCK_EX | LOCK_NB) != 0) {
        err = errno == EWOULDBLOCK ? -EBUSY : -errno;
        what = "directory in use by another process";
        goto fail;
    }
    clean_tmp(l2);
    err = -pthread_create(&l2->bg, NULL, bg_main, l2);
    if (err) {
        what = "cannot start the rebuild thread";
        goto fail;
    }
    pthread_setname_np(l2->bg, "mlcdn-l2");
    *out = l2;
    return 0;
fail:
    snprintf(errbuf, errlen, "l2: %s: %s: %s", cfg->dir, what, strerror(-err));
    l2_free(l2);
    return err;
}

void l2_close(struct l2 **l2p)
{
    struct l2 *l2 = *l2p;

    if (!l2)
        return;
    MC_CHECK_OBJ(l2, L2_MAGIC);
    MC_ASSERT(atomic_load(&l2->writers) == 0);
    pthread_mutex_lock(&l2->bg_mtx);
    l2->bg_stop = 1;
    pthread_cond_signal(&l2->bg_cond);
    pthread_mutex_unlock(&l2->bg_mtx);
    pthread_join(l2->bg, NULL);
    l2_free(l2);
    *l2p = NULL;
}

int l2_ready(const struct l2 *l2)
{
    MC_CHECK_OBJ_NOTNULL(l2, L2_MAGIC);
    return atomic_load(&((struct l2 *)l2)->ready);
}

/* ---- lookup ---- */

int l2_lookup(struct l2 *l2, const char *pkey, size_t plen, const struct http_request *req,
              struct l2_entry **out)
{
    uint8_t ph[16];
    struct shard *s;
    struct buf vk;
    int ret = -ENOENT;

    MC_CHECK_OBJ_NOTNULL(l2, L2_MAGIC);
    cache_key_hash(pkey, plen, ph);
    s = shard_of(l2, ph);
    buf_init(&vk, VKEY_CAP);
    pthread_mutex_lock(&s->mtx);
    struct l2_key *k = key_find(s, ph, pkey, plen);
    if (k && !(k->vary && strcmp(k->vary, "*") == 0) &&
        (!k->vary || l1_vary_key(&vk, k->vary, req) == 0)) {
        struct l2_entry *x = variant_find(k, vk.data, vk.len);
        if (x) {
            hit(l2, x);
            *out = l2_entry_ref(x);
            ret = 0;
        }
    }
    pthread_mutex_unlock(&s->mtx);
    buf_fini(&vk);
    if (ret == -ENOENT && !atomic_load(&l2->ready))
        ret = -EAGAIN;
    return ret;
}

int l2_probe(struct l2 *l2, const char *pkey, size_t plen, struct l2_entry **out)
{
    uint8_t ph[16];
    uint64_t vh = hash_vkey("", 0);
    struct l2_entry *got = NULL;
    const char *why = NULL;
    struct shard *s;
    int rc;

    MC_CHECK_OBJ_NOTNULL(l2, L2_MAGIC);
    cache_key_hash(pkey, plen, ph);
    s = shard_of(l2, ph);
    pthread_mutex_lock(&s->mtx);
    struct l2_key *k = key_find(s, ph, pkey, plen);
    struct l2_entry *x = k ? variant_find(k, "", 0) : NULL;
    if (x)
        got = l2_entry_ref(x);
    pthread_mutex_unlock(&s->mtx);
    if (!got) {
        rc = found_file(l2, ph, vh, pkey, plen, &got, &why);
        if (rc < 0)
            return -ENOENT;
        if (rc == 0)
            atomic_fetch_add(&l2->at_start, 1);
    }
    hit(l2, got);
    *out = got;
    return 0;
}

/* ---- read ---- */

static int same_stat(const struct l2_entry *en, const struct stat *st)
{
    return en->verified && st->st_ino == en->ino && st->st_size == en->v_size &&
           st->st_mtim.tv_sec == en->v_mtim.tv_sec && st->st_mtim.tv_nsec == en->v_mtim.tv_nsec &&
           st->st_ctim.tv_sec == en->v_ctim.tv_sec && st->st_ctim.tv_nsec == en->v_ctim.tv_nsec;
}

static void record_verified(struct l2_entry *en, const struct stat *st)
{
    en->verified = 1;
    en->v_size = st->st_size;
    en->v_mtim = st->st_mtim;
    en->v_ctim = st->st_ctim;
}

/* 0 and the body's XXH3-64 in *sum; -EBADMSG when the file ends early; -ENOMEM, -EIO. */
static int hash_body(int fd, uint64_t off, uint64_t len, uint64_t *sum)
{
    size_t cap = (size_t)MC_MIN(len, (uint64_t)VERIFY_CHUNK);
    char *b = malloc(cap ? cap : 1); /* payload memory: may fail */
    XXH3_state_t *xs = XXH3_createState();
    int err = 0;

    if (!b || !xs) {
        err = -ENOMEM;
        goto out;
    }
    XXH3_64bits_reset(xs);
    (void)posix_fadvise(fd, (off_t)off, (off_t)len, POSIX_FADV_SEQUENTIAL);
    while (len) {
        size_t want = (size_t)MC_MIN(len, (uint64_t)cap);
        ssize_t n = pread_all(fd, b, want, off);
        if (n < 0) {
            err = (int)n;
            goto out;
        }
        if ((size_t)n < want) {
            err = -EBADMSG;
            goto out;
        }
        XXH3_64bits_update(xs, b, want);
        off += want;
        len -= want;
    }
    *sum = XXH3_64bits_digest(xs);
out:
    XXH3_freeState(xs);
    free(b);
    return err;
}

/* Drops en from the index if it still is there; unlink: queue its file's removal. */
static void drop_entry(struct l2 *l2, struct l2_entry *en, int unlink)
{
    struct shard *s = &l2->shards[en->shard];
    struct dropped d = {0};

    pthread_mutex_lock(&s->mtx);
    if (en->in_index)
        drop_variant(l2, s, en, unlink, &d);
    pthread_mutex_unlock(&s->mtx);
    if (unlink && d.n)
        kick(l2);
    dropped_release(&d);
}

int l2_read(struct l2 *l2, struct l2_entry *en, struct l2_file *out)
{
    struct shard *s;
    pthread_mutex_t *nl;
    struct cache_obj *obj = NULL;
    struct l2__hdr h;
    struct stat st;
    char name[NAME_LEN], *pkey = NULL;
    size_t plen = 0;
    uint64_t sum = 0;
    int fd, rc, fresh;

    MC_CHECK_OBJ_NOTNULL(l2, L2_MAGIC);
    MC_CHECK_OBJ_NOTNULL(en, L2_ENTRY_MAGIC);
    s = &l2->shards[en->shard];
    nl = name_lock(l2, en->ph, en->vh);
    name_of(en->ph, en->vh, name);
    fd = openat(l2->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        rc = -errno;
        if (rc == -ENOENT || rc == -ELOOP) {
            drop_entry(l2, en, 0); /* the file vanished: the entry means nothing */
            rc = -ENOENT;
        }
        return rc;
    }
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        goto fail;
    }
    if (st.st_ino != en->ino) {
        /* Another file holds the name now (a newer write, or one moved there by hand):
         * en is stale, not corrupt, and that file is not ours to delete. */
        drop_entry(l2, en, 0);
        rc = -ENOENT;
        goto fail;
    }
    rc = read_header(fd, &h, &obj, &pkey, &plen);
    if (rc == -EINVAL)
        goto corrupt;
    if (rc != 0)
        goto fail;
    /* Same inode, so any difference from what was indexed is a change to the file. */
    if (!bytes_eq(pkey, plen, en->pkey, en->plen) ||
        !bytes_eq(obj->vkey, obj->vkey_len, en->vkey, en->vkey_len) || h.body_off != en->body_off ||
        h.body_len != en->body_len || h.body_xxh != en->body_sum ||
        (uint64_t)st.st_size != h.body_off + h.body_len)
        goto corrupt;
    pthread_mutex_lock(&s->mtx);
    fresh = same_stat(en, &st);
    pthread_mutex_unlock(&s->mtx);
    if (!fresh) {
        rc = hash_body(fd, h.body_off, h.body_len, &sum);
        if (rc == -EBADMSG || (rc == 0 && sum != h.body_xxh))
            goto corrupt;
        if (rc != 0)
            goto fail;
        pthread_mutex_lock(&s->mtx);
        record_verified(en, &st);
        pthread_mutex_unlock(&s->mtx);
    }
    free(pkey);
    out->fd = fd;
    out->body_off = h.body_off;
    out->body_len = h.body_len;
    out->obj = obj;
    return 0;
corrupt:
    /* Under the name lock, so that no probe or rebuild re-indexes the file in between. */
    pthread_mutex_lock(nl);
    drop_entry(l2, en, 0);
    (void)unlink_if_locked(l2, nl, name, st.st_ino);
    pthread_mutex_unlock(nl);
    atomic_fetch_add(&l2->corrupt, 1);
    rc = -EBADMSG;
fail:
    close(fd);
    cache_obj_unref(&obj);
    free(pkey);
    return rc;
}

/* ---- write ---- */

int l2_writer_begin(struct l2 *l2, const char *pkey, size_t plen, const struct cache_obj *o,
                    int64_t expected_len, struct l2_writer **out)
{
    struct l2_writer *w;
    uint64_t body_off;
    int err;

    MC_CHECK_OBJ_NOTNULL(l2, L2_MAGIC);
    if (units_now_ns() < atomic_load(&l2->paused_until))
        return -EAGAIN;
    w = mc_xcalloc(1, sizeof(*w));
    MC_INIT_OBJ(w, L2_WRITER_MAGIC);
    w->l2 = l2;
    w->fd = -1;
    w->expected = expected_len;
    buf_init(&w->hdr, L2_HDR_MAX);
    if ((err = l2__hdr_build(&w->hdr, pkey, plen, o, 0, 0)) != 0)
        goto fail;
    body_off = round_up(w->hdr.len);
    if (body_off > l2->max_object ||
        (expected_len >= 0 && (uint64_t)expected_len > l2->max_object - body_off)) {
        err = -EFBIG;
        goto fail;
    }
    snprintf(w->tmpname, sizeof(w->tmpname), "%ld-%" PRIu64, (long)getpid(),
             atomic_fetch_add(&l2->tmpseq, 1));
    if ((err = inject(l2)) != 0)
        goto fail_io;
    w->fd = openat(l2->tmpfd, w->tmpname, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        err = -errno;
        goto fail_io;
    }
    /* Reserving the blocks now turns a full disk into an error here, before the body
     * streams, and keeps large files contiguous. KEEP_SIZE: st_size stays what was
     * written. Filesystems without fallocate just skip it. */
    if (expected_len > 0) {
        if ((err = inject(l2)) != 0)
            goto fail_io;
        if (fallocate(w->fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)(body_off + (uint64_t)expected_len)) !=
                0 &&
            errno != EOPNOTSUPP) {
            err = -errno;
            goto fail_io;
        }
    }
    /* The magic stays zero until commit: a torn temporary file never parses. */
    memset(w->hdr.data + P_MAGIC, 0, 4);
    if ((err = inject(l2)) != 0 || (err = pwrite_all(w->fd, w->hdr.data, w->hdr.len, 0)) != 0)
        goto fail_io;
    w->xs = XXH3_createState();
    if (!w->xs) {
        err = -ENOMEM;
        goto fail_io;
    }
    XXH3_64bits_reset(w->xs);
    w->en = entry_new(pkey, plen, o->vkey, o->vkey_len, o->vary);
    entry_meta(w->en, o);
    w->en->body_off = body_off;
    atomic_fetch_add(&l2->writers, 1);
    *out = w;
    return 0;
fail_io:
    note_write_error(l2, err);
    if (w->fd >= 0) {
        close(w->fd);
        (void)unlinkat(l2->tmpfd, w->tmpname, 0);
    }
fail:
    buf_fini(&w->hdr);
    MC_FREE_OBJ(w);
    return err;
}

int l2_writer_fd(const struct l2_writer *w)
{
    MC_CHECK_OBJ_NOTNULL(w, L2_WRITER_MAGIC);
    return w->fd;
}

uint64_t l2_writer_body_off(const struct l2_writer *w)
{
    MC_CHECK_OBJ_NOTNULL(w, L2_WRITER_MAGIC);
    return w->en->body_off;
}

int l2_writer_dup_fd(const struct l2_writer *w)
{
    MC_CHECK_OBJ_NOTNULL(w, L2_WRITER_MAGIC);
    int fd = fcntl(w->fd, F_DUPFD_CLOEXEC, 0);
    return fd >= 0 ? fd : -errno;
}

int l2_writer_append(struct l2_writer *w, const void *p, size_t n)
{
    struct l2 *l2;
    int err;

    MC_CHECK_OBJ_NOTNULL(w, L2_WRITER_MAGIC);
    l2 = w->l2;
    if (w->err || n == 0)
        return w->err;
    if (w->expected >= 0 && (uint64_t)w->expected - w->pos < n)
        err = -EPROTO; /* more than announced */
    else if (l2->max_object - w->en->body_off - w->pos < n)
        err = -EFBIG;
    else if ((err = inject(l2)) == 0)
        err = pwrite_all(w->fd, p, n, w->en->body_off + w->pos);
    if (err) {
        w->err = note_write_error(l2, err);
        return err;
    }
    XXH3_64bits_update(w->xs, p, n);
    w->pos += n;
    return 0;
}

static void writer_free(struct l2_writer *w, int unlink_tmp)
{
    if (unlink_tmp)
        (void)unlinkat(w->l2->tmpfd, w->tmpname, 0);
    if (w->fd >= 0)
        close(w->fd);
    XXH3_freeState(w->xs);
    buf_fini(&w->hdr);
    l2_entry_unref(&w->en);
    atomic_fetch_sub(&w->l2->writers, 1);
    MC_FREE_OBJ(w);
}

void l2_writer_abort(struct l2_writer **wp)
{
    struct l2_writer *w = *wp;

    if (!w)
        return;
    MC_CHECK_OBJ(w, L2_WRITER_MAGIC);
    writer_free(w, 1);
    *wp = NULL;
}

/* Renames the temporary file to `name`, creating DIR/ab/cd on first use. */
static int rename_in(struct l2 *l2, const char *tmpname, const char *name)
{
    char sub[8];

    if (renameat(l2->tmpfd, tmpname, l2->dirfd, name) == 0)
        return 0;
    if (errno != ENOENT)
        return -errno;
    memcpy(sub, name, 2);
    sub[2] = '\0';
    if (mkdirat(l2->dirfd, sub, 0755) != 0 && errno != EEXIST)
        return -errno;
    memcpy(sub, name, 5);
    sub[5] = '\0';
    if (mkdirat(l2->dirfd, sub, 0755) != 0 && errno != EEXIST)
        return -errno;
    return renameat(l2->tmpfd, tmpname, l2->dirfd, name) == 0 ? 0 : -errno;
}

int l2_writer_commit(struct l2_writer **wp)
{
    struct l2_writer *w = *wp;
    struct l2 *l2;
    struct l2_entry *en;
    struct dropped d = {0}, victims = {0};
    pthread_mutex_t *nl;
    struct shard *s;
    struct stat st;
    char name[NAME_LEN];
    int err, renamed = 0;

    MC_CHECK_OBJ_NOTNULL(w, L2_WRITER_MAGIC);
    *wp = NULL;
    l2 = w->l2;
    en = w->en;
    if ((err = w->err) != 0)
        goto fail;
    if (w->expected >= 0 && w->pos != (uint64_t)w->expected) {
        err = -EPROTO;
        goto fail;
    }
    en->body_len = w->pos;
    en->body_sum = XXH3_64bits_digest(w->xs);
    en->charge = en->body_off + en->body_len;
    prelude_fill(w->hdr.data, w->hdr.len, en->body_len, en->body_sum);
    if ((err = inject(l2)) == 0)
        err = pwrite_all(w->fd, w->hdr.data, L2_PRELUDE_LEN, 0);
    /* An empty body must still end the file at body_off, not at the header's end. */
    if (err == 0 && ftruncate(w->fd, (off_t)en->charge) != 0)
        err = -errno;
    if (err != 0) {
        note_write_error(l2, err);
        goto fail;
    }

    /* The name lock spans rename and indexing, so the index never ends up describing an
     * older file than the one at the name when two writers of one variant race. */
    name_of(en->ph, en->vh, name);
    nl = name_lock(l2, en->ph, en->vh);
    s = &l2->shards[en->shard];
    pthread_mutex_lock(nl);
    if ((err = inject(l2)) != 0 || (err = rename_in(l2, w->tmpname, name)) != 0) {
        pthread_mutex_unlock(nl);
        note_write_error(l2, err);
        goto fail;
    }
    renamed = 1;
    /* After the rename: some filesystems update ctime on it. */
    if (fstat(w->fd, &st) != 0) {
        err = -errno;
        (void)unlinkat(l2->dirfd, name, 0);
        pthread_mutex_unlock(nl);
        goto fail;
    }
    en->ino = st.st_ino;
    record_verified(en, &st); /* its body was hashed as it was written */

    pthread_mutex_lock(&s->mtx);
    struct l2_key *k = key_find(s, en->ph, en->pkey, en->plen);
    if (k && !same_vary(k->vary, en->vary)) {
        /* The origin changed its Vary: the other variants are unreachable. */
        drop_key(l2, s, k, &d);
        k = NULL;
    } else if (k) {
        struct l2_entry *old = variant_find(k, en->vkey, en->vkey_len);
        if (old) {
            drop_variant(l2, s, old, 0, &d); /* its file was just replaced by the rename */
            k = key_find(s, en->ph, en->pkey, en->plen);
        }
    }
    err = policy_admit(l2, en, &victims);
    if (err == 0)
        link_variant(l2, s, k, en);
    pthread_mutex_unlock(&s->mtx);
    if (err != 0)
        (void)unlinkat(l2->dirfd, name, 0);
    pthread_mutex_unlock(nl);
    evict(l2, &victims);
    if (d.n)
        kick(l2);
    dropped_release(&d);
fail:
    writer_free(w, !renamed);
    return err;
}

/* ---- removal ---- */

size_t l2_remove(struct l2 *l2, const char *pkey, size_t plen)
{
    struct dropped d = {0};
    uint8_t ph[16];
    struct shard *s;
    size_t n;

    MC_CHECK_OBJ_NOTNULL(l2, L2_MAGIC);
    /* Before the index: see index_found() for why this order closes the race. */
    tomb_add(l2, TOMB_KEY, NULL, 0, pkey, plen);
    cache_key_hash(pkey, plen, ph);
    s = shard_of(l2, ph);
    pthread_mutex_lock(&s->mtx);
    struct l2_key *k = key_find(s, ph, pkey, plen);
    if (k)
        drop_key(l2, s, k, &d);
    pthread_mutex_unlock(&s->mtx);
    n = d.n;
    if (n)
        kick(l2);
    dropped_release(&d);
    return n;
}

size_t l2_purge_path(struct l2 *l2, const char *host, size_t hlen, const char *pathq, size_t plen)
{
    struct dropped d = {0};
    size_t n;

    MC_CHECK_OBJ_NOTNULL(l2, L2_MAGIC);
    tomb_add(l2, TOMB_PATH, host, hlen, pathq, plen);
    for (unsigned i = 0; i < NSHARDS; i++) {
        struct shard *s = &l2->shards[i];
        pthread_mutex_lock(&s->mtx);
        for (size_t b = 0; b < s->nbuckets; b++) {
            struct l2_key *k = s->buckets[b], *kn;
            for (; k; k = kn) {
                kn = k->next;
                if (pkey_path_match(k->pkey, k->plen, host, hlen, pathq, plen))
                    drop_key(l2, s, k, &d);
            }
        }
        pthread_mutex_unlock(&s->mtx);
    }
    n = d.n;
    if (n)
        kick(l2);
    dropped_release(&d);
    return n;
}

size_t l2_walk(struct l2 *l2, l2_walk_f *fn, void *arg)
{
    struct dropped d = {0};
    size_t n;

    MC_CHECK_OBJ_NOTNULL(l2, L2_MAGIC);
    for (unsigned i = 0; i < NSHARDS; i++) {
        struct shard *s = &l2->shards[i];
        pthread_mutex_lock(&s->mtx);
        for (size_t b = 0; b < s->nbuckets; b++) {
            struct l2_key *k = s->buckets[b], *kn;
            for (; k; k = kn) {
                kn = k->next;
                /* The last variant dropped frees k: read its links before. */
                struct l2_entry *en = k->variants, *enn;
                for (; en; en = enn) {
                    enn = en->vnext;
                    int last = enn == NULL;
                    if (fn(arg, en->pkey, en->plen, en->stored_us, en->tags, en->tags_len))
                        drop_variant(l2, s, en, 1, &d);
                    if (last)
                        break;
                }
            }
        }
        pthread_mutex_unlock(&s->mtx);
    }
    n = d.n;
    if (n)
        kick(l2);
    dropped_release(&d);
    return n;
}

size_t l2_remove_if(struct l2 *l2, const char *pkey, size_t plen, l2_walk_f *fn, void *arg)
{
    struct dropped d = {0};
    uint8_t ph[16];
    struct shard *s;
    size_t n;

    MC_CHECK_OBJ_NOTNULL(l2, L2_MAGIC);
    cache_key_hash(pkey, plen, ph);
    s = shard_of(l2, ph);
    pthread_mutex_lock(&s->mtx);
    struct l2_key *k = key_find(s, ph, pkey, plen);
    /* The last variant dropped frees k: read its links before. */
    for (struct l2_entry *en = k ? k->variants : NULL, *enn; en; en = enn) {
        enn = en->vnext;
        int last = enn == NULL;
        if (fn(arg, en->pkey, en->plen, en->stored_us, en->tags, en->tags_len))
            drop_variant(l2, s, en, 1, &d);
        if (last)
            break;
    }
    pthread_mutex_unlock(&s->mtx);
    n = d.n;
    if (n)
        kick(l2);
    dropped_release(&d);
    return n;
}

void l2_flush_unlinks(struct l2 *l2)
{
    uint64_t upto = atomic_load(&l2->pend_seq);

    MC_CHECK_OBJ_NOTNULL(l2, L2_MAGIC);
    for (;;) {
        /* Runs the queue here too (items are claimed one at a time, so this and the
         * background thread never run the same unlink), then waits out those the
         * background thread holds. */
        drain_unlinks(l2);
        int left = 0;
        for (unsigned i = 0; i < NSHARDS && !left; i++) {
            pthread_mutex_lock(&l2->shards[i].mtx);
            for (struct pending *p = l2->shards[i].pend; p && !left; p = p->next)
                left = p->seq <= upto;
            pthread_mutex_unlock(&l2->shards[i].mtx);
        }
        if (!left)
            return;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

void l2_drop(struct l2 *l2, struct l2_entry *en)
{
    MC_CHECK_OBJ_NOTNULL(l2, L2_MAGIC);
    MC_CHECK_OBJ_NOTNULL(en, L2_ENTRY_MAGIC);
    drop_entry(l2, en, 1);
}

void l2_stats(const struct l2 *cl2, struct l2_stats *out)
{
    struct l2 *l2 = (struct l2 *)cl2;

    MC_CHECK_OBJ_NOTNULL(l2, L2_MAGIC);
    memset(out, 0, sizeof(*out));
    out->objects = atomic_load(&l2->objects);
    out->bytes = atomic_load(&l2->bytes);
    out->budget = l2->budget;
    out->indexed_at_start = atomic_load(&l2->at_start);
    out->corrupt = atomic_load(&l2->corrupt);
    out->write_errors = atomic_load(&l2->write_errors);
    out->evictions = atomic_load(&l2->evictions);
    out->admission_paused = units_now_ns() < atomic_load(&l2->paused_until);
    out->ready = atomic_load(&l2->ready);
}
