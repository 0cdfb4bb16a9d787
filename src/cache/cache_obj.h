/* src/cache/cache_obj.h: cached responses and their bodies.
 *
 * struct cache_obj is one stored response (status, header block, freshness facts) with a
 * reference to a struct cache_body. Both are refcounted: the store holds one reference,
 * every reader (a response being sent, a waiter of a fill) holds one, so an object
 * evicted or purged while it is being sent stays valid until the last send completes.
 * A 304 revalidation makes a new object that shares the old body.
 *
 * A body is a list of chunks written by one filler (the origin fetch) while any number
 * of readers follow it: the filler appends bytes, links new chunks, then publishes the
 * new length with a release store; readers load the length with acquire and never read
 * past it, so they need no lock. Chunks never move or shrink until the body is freed. */
#ifndef MLCDN_CACHE_CACHE_OBJ_H
#define MLCDN_CACHE_CACHE_OBJ_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/cache_policy.h"
#include "http/http_cache.h"

struct cache_chunk {
    struct cache_chunk *_Atomic next;
    size_t len; /* bytes written (the filler's view; readers use the body's length) */
    size_t cap;
    char *data; /* right after the struct, or the body's file mapping */
};

enum cache_body_state { CACHE_BODY_FILLING = 0, CACHE_BODY_COMPLETE = 1, CACHE_BODY_FAILED = 2 };

struct cache_body {
    unsigned magic;
    _Atomic unsigned refcnt;
    _Atomic uint64_t len;            /* published bytes */
    _Atomic int state;               /* enum cache_body_state */
    int64_t expected;                /* Content-Length from the origin, -1 unknown */
    struct cache_chunk *head, *tail; /* tail: filler only */
    /* Large bodies of announced length live in a memfd mapping, so that a complete one can
     * be sent with sendfile(2) (no copy into the socket); -1/NULL otherwise. */
    int memfd;
    char *map;
    size_t map_len;
    /* Bodies too large for memory (model weights) live in a file instead: the L2 file being
     * written, or an unlinked temporary file. No chunks then; readers send the published
     * bytes with sendfile from file_fd at file_off + position. -1 otherwise. */
    int file_fd;
    uint64_t file_off;
    /* File bodies: the sender's clock (ms) when it last found the whole body in the page
     * cache, 0 never; a hint for how often to check again (edge_tier.c). */
    _Atomic uint64_t resident_ms;
};

/* New empty body in FILLING state, one reference for the caller. expected: -1 unknown. */
struct cache_body *cache_body_new(int64_t expected);
/* Like cache_body_new, but always in malloc'd chunks (never a memfd mapping): for bodies
 * copied from another tier, where mapping and unmapping per object would cost more than
 * the copy (munmap's TLB shootdowns). */
struct cache_body *cache_body_new_heap(int64_t expected);
/* New body kept in file `fd` from offset `off` on (the body takes ownership of fd and
 * closes it when freed), in FILLING state with nothing published; for a file that already
 * holds the whole body, publish its length and finish it COMPLETE. */
struct cache_body *cache_body_new_file(int fd, uint64_t off, int64_t expected);
/* The file of a file-backed body (owned by the body) and the body's offset in it, or -1. */
int cache_body_file(const struct cache_body *b, uint64_t *off);
/* Filler of a file-backed body that wrote bytes [published, len) into the file itself
 * (e.g. through the L2 writer): publishes them to the readers. */
void cache_body_publish(struct cache_body *b, uint64_t len);
/* Filler: appends bytes and publishes them (a file-backed body writes them into its
 * file). Returns 0, -ENOMEM (payload memory) or the write's -errno. */
int cache_body_append(struct cache_body *b, const void *p, size_t n);
/* Filler: the body is complete (or failed); readers see it after their next length load. */
void cache_body_finish(struct cache_body *b, enum cache_body_state st);
uint64_t cache_body_len(const struct cache_body *b);
/* A complete body held whole in its memfd: the fd (owned by the body) or -1. */
int cache_body_sendfile_fd(const struct cache_body *b);
/* Bodies of at least this announced length go to a memfd. */
#define CACHE_BODY_MEMFD_MIN (64u << 10)
enum cache_body_state cache_body_state(const struct cache_body *b);
/* New body holding a copy of p[0..n), complete. */
struct cache_body *cache_body_from(const void *p, size_t n);
struct cache_body *cache_body_ref(struct cache_body *b);
void cache_body_unref(struct cache_body **bp);

/* A reader's position in a body. */
struct cache_body_cursor {
    const struct cache_chunk *chunk;
    size_t off;   /* offset inside chunk */
    uint64_t pos; /* absolute offset */
};
void cache_body_cursor_init(struct cache_body_cursor *cur, const struct cache_body *b);
/* Moves the cursor to absolute offset `pos` (must be <= published length). */
void cache_body_cursor_seek(struct cache_body_cursor *cur, const struct cache_body *b,
                            uint64_t pos);
/* Next contiguous span of published bytes from the cursor, at most `max` bytes, up to
 * `limit` (absolute, exclusive); advances the cursor. Returns the span length (0: nothing
 * published beyond the cursor yet). Always 0 for file-backed bodies: see cache_body_file. */
size_t cache_body_next(struct cache_body_cursor *cur, const struct cache_body *b, uint64_t limit,
                       size_t max, const char **span);

struct cache_obj {
    unsigned magic;
    _Atomic unsigned refcnt;
    struct cache_pnode pnode; /* the store's policy node */
    /* Index linkage: owned by the store under its shard lock. */
    struct cache_obj *vnext;
    void *entry;
    int in_index;
    uint64_t charge; /* units charged to the store */
    int l1_verdict;  /* L1_VERDICT_* of l1_judge(), before the body arrived (store's lock) */
    /* Identity: the Vary'd part of the key ("" when the response has no Vary). */
    char *vkey;
    size_t vkey_len;
    /* Response. */
    int status;
    char *hdrs; /* stored header lines "Name: value\r\n" (hop-by-hop removed) */
    size_t hdrs_len;
    struct http_resp_info info; /* parsed from hdrs when stored */
    int64_t request_time;       /* epoch s: request to the origin sent */
    int64_t response_time;      /* epoch s: response received */
    int64_t lifetime;           /* freshness lifetime, s */
    int64_t stored_us;          /* epoch us: the request it answers was sent (cache_ban.h) */
    _Atomic int inval_stale;    /* a soft invalidation marked it stale (served while refreshed) */
    _Atomic int64_t ban_checked_us; /* bans up to this time do not match it; 0 none asked */
    char *etag;                     /* NULL when none */
    char *vary;                     /* lowercased Vary list, NULL when none */
    int has_accept_ranges;          /* the stored headers carry Accept-Ranges */
    struct cache_body *body;
};

/* New object with one reference for the caller; takes ownership of the strings (malloc'd)
 * and of the body reference. */
struct cache_obj *cache_obj_new(int status, char *hdrs, size_t hdrs_len, struct cache_body *body);
/* A new object (one reference for the caller) with o's response and identity (copies of
 * its strings) and the given body (the new object takes that reference). */
struct cache_obj *cache_obj_dup(const struct cache_obj *o, struct cache_body *body);
struct cache_obj *cache_obj_ref(struct cache_obj *o);
/* Drops one reference and NULLs *op; the last one frees the object and its body ref. */
void cache_obj_unref(struct cache_obj **op);
/* Finds a stored header's value (case-insensitive name); returns its length or -1. */
long cache_obj_header(const struct cache_obj *o, const char *name, const char **value);
/* The object's tags: the values of every Surrogate-Key and Cache-Tag field, each after a
 * space, into out[0..cap) (not NUL-terminated; tags are separated by spaces or commas).
 * Returns the length, 0 when there is none, or (size_t)-1 when they do not fit. */
#define CACHE_OBJ_TAGS_MAX 4096
size_t cache_obj_tags(const struct cache_obj *o, char *out, size_t cap);

#endif
