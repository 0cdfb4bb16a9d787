/* src/cache/cache_disk.h: L2, the persistent disk store of an edge.
 *
 * One file per stored variant under a hashed tree, DIR/ab/cd/<32 hex of XXH3-128(pkey)>-
 * <16 hex of XXH3-64(vkey)>: a fixed prelude (magic, version, checksums, body offset and
 * length), the metadata (cache_pack_meta), padding to a 4096-aligned body, the body. Files
 * are written under DIR/tmp/ and renamed into place when complete, so a kill -9 leaves
 * either the old file, the new one, or a temporary file removed at the next open; the
 * checksums catch whatever else the disk does. A body is served only after it was hashed
 * in this process and its file has not changed (inode, size, mtime, ctime) since.
 *
 * The index lives in memory (sharded by primary key, one entry per key holding its
 * variants, like L1) and is rebuilt at open by a background thread that walks the tree
 * while the store already serves. One eviction policy (cache_policy.h) covers the whole
 * store, not one per shard, so an object may use up to 1/L2_MAX_OBJECT_DIV of the budget.
 * Evicted, purged or corrupt files leave the index at once; their unlinks are queued to
 * the background thread (readers that opened the file keep reading it).
 *
 * Every function is thread-safe. Ownership is stated at each prototype; locking and the
 * races the design closes are described at the top of cache_disk.c. */
#ifndef MLCDN_CACHE_CACHE_DISK_H
#define MLCDN_CACHE_CACHE_DISK_H

#include <stddef.h>
#include <stdint.h>

#include "cache/cache_obj.h"
#include "core/buf.h"
#include "http/http_parse.h"

struct l2;        /* opaque; l2_open() / l2_close() */
struct l2_entry;  /* refcounted handle on one stored variant; ends with l2_entry_unref() */
struct l2_writer; /* one object being stored; the caller is its sole owner */

#define L2_ALIGN 4096u            /* bodies start at a multiple of this (page-aligned I/O) */
#define L2_PRELUDE_LEN 48u        /* fixed part of every file header */
#define L2_HDR_MAX (256u << 10)   /* prelude + metadata; larger headers are refused */
#define L2_MAX_OBJECT_DIV 8u      /* one file may take at most budget / 8 (eviction.md) */
#define L2_PAUSE_NS 5000000000ull /* admission back-off after ENOSPC/EIO */

struct l2_cfg {
    const char *dir;    /* created (with parents) if missing */
    uint64_t budget;    /* bytes: header (padded) + body of every file */
    const char *policy; /* cache_policy_new() name; NULL = "default" */
    /* what the policy optimises; a disk tier usually wants byte hits (origin bandwidth) */
    enum cache_policy_objective objective;
};

/* Opens the store: creates dir, takes an exclusive lock on it (one process per dir),
 * removes temporary files a crash left, and starts the rebuild in the background.
 * Returns 0 (caller owns *out, frees with l2_close), -EINVAL (policy name), -EBUSY (dir
 * locked by another process) or another -errno; err receives a message naming the dir. */
int l2_open(const struct l2_cfg *cfg, struct l2 **out, char *err, size_t errlen);
/* Stops the background thread after it ran the queued unlinks, frees the index and NULLs
 * *l2p. No writer may be open; entry handles stay valid (they no longer need the store). */
void l2_close(struct l2 **l2p);
/* 1 once the start-up rebuild has walked the whole tree. */
int l2_ready(const struct l2 *l2);

/* Memory only (never blocks on I/O; for event loops): the variant of pkey matching the
 * request's Vary'd headers. Returns 0 with a new reference in *out (and counts a hit),
 * -ENOENT, or -EAGAIN when not found while the rebuild still runs (l2_probe may know). */
int l2_lookup(struct l2 *l2, const char *pkey, size_t plen, const struct http_request *req,
              struct l2_entry **out);
/* Does I/O (thread pool): opens the no-Vary file of pkey, verifies its header and indexes
 * it if it is not yet. Returns 0 with a new reference in *out (counts a hit) or -ENOENT
 * (absent, invalid — then deleted and counted corrupt — or purged since start-up). */
int l2_probe(struct l2 *l2, const char *pkey, size_t plen, struct l2_entry **out);
void l2_entry_unref(struct l2_entry **enp);
struct l2_entry *l2_entry_ref(struct l2_entry *en);
/* Hits since the entry was indexed (L1 admits an object on its second L2 hit). */
unsigned l2_entry_hits(const struct l2_entry *en);
uint64_t l2_entry_size(const struct l2_entry *en); /* body length */
/* A word the caller keeps with the entry (e.g. its L1 admission state), 0 at first:
 * stores v and returns the previous value, atomically. */
uint64_t l2_entry_mark_swap(struct l2_entry *en, uint64_t v);

struct l2_file {
    int fd; /* owned by the caller: close() it */
    uint64_t body_off, body_len;
    struct cache_obj *obj; /* decoded metadata, body NULL; one reference for the caller */
};

/* Does I/O (thread pool): opens en's file and checks prelude, header checksum, stored
 * key and vkey, file size, and the body checksum unless this process verified the body
 * of this very file (same inode, size, mtime, ctime) before. Fills *out on success only.
 * Returns 0; -EBADMSG on any mismatch (entry dropped, file unlinked, counted corrupt);
 * -ENOENT when the file vanished or en was replaced meanwhile; -ENOMEM; -EIO. */
int l2_read(struct l2 *l2, struct l2_entry *en, struct l2_file *out);

/* Starts storing `o` (its vkey/vary set as for l1_insert; its body is not read) under
 * pkey: a temporary file holding the header, the body to follow at l2_writer_body_off().
 * expected_len: the body length, -1 unknown. Blocking but bounded (a few syscalls).
 * Returns 0 (caller owns *out until commit/abort), -EAGAIN (admission paused after a
 * write error), -EFBIG (over the per-object bound), -E2BIG (header too large), -ENOSPC,
 * -EIO or another -errno. */
int l2_writer_begin(struct l2 *l2, const char *pkey, size_t plen, const struct cache_obj *o,
                    int64_t expected_len, struct l2_writer **out);
/* The temporary file, owned by the writer (closed by commit/abort): readers may follow the
 * body being written with pread/sendfile at body_off + pos, for bytes already appended. */
int l2_writer_fd(const struct l2_writer *w);
uint64_t l2_writer_body_off(const struct l2_writer *w);
/* A new descriptor (O_CLOEXEC, caller closes) of the same file, for a reader that must
 * outlive the writer: rename keeps the inode, abort/eviction only unlink the name.
 * Returns the fd or -errno. */
int l2_writer_dup_fd(const struct l2_writer *w);
/* Appends body bytes (one pwrite, streaming checksum). Returns 0, -EFBIG (past the
 * per-object bound), -ENOSPC/-EIO (admission pauses) or -errno; after an error every
 * later append/commit fails the same way: abort. */
int l2_writer_append(struct l2_writer *w, const void *p, size_t n);
/* Completes the file (final prelude), renames it into place replacing the old variant,
 * indexes it (verified, no re-hash on first read) and evicts to fit the budget. Always
 * consumes the writer and NULLs *wp (on error the temporary file is removed). Returns 0,
 * -EPROTO (length differs from expected_len), -EFBIG (policy refused it), -ENOSPC/-EIO
 * or -errno. */
int l2_writer_commit(struct l2_writer **wp);
/* Drops the temporary file and frees the writer; NULLs *wp. */
void l2_writer_abort(struct l2_writer **wp);

/* Index-only removals (unlinks are queued); each returns the number of variants dropped.
 * During the rebuild they also apply to files not yet indexed. l2_purge_path matches
 * like l1_purge_path: every host, or only `host` when non-NULL. */
size_t l2_remove(struct l2 *l2, const char *pkey, size_t plen);
size_t l2_purge_path(struct l2 *l2, const char *host, size_t hlen, const char *pathq, size_t plen);
/* Calls fn(arg, pkey, plen, stored_us, tags, tags_len) for every indexed variant (its
 * stored time and cache_obj_tags(), kept in the index), one shard at a time under its
 * lock (fn must be quick and must not call into this store), and drops those for which
 * fn returns 1 (their unlinks queued). Files not indexed yet (rebuild) are not seen:
 * walk again once l2_ready(). Returns how many were dropped. */
typedef int l2_walk_f(void *arg, const char *pkey, size_t plen, int64_t stored_us, const char *tags,
                      size_t tags_len);
size_t l2_walk(struct l2 *l2, l2_walk_f *fn, void *arg);
/* The same for the variants of one primary key (a tag purge's keys). */
size_t l2_remove_if(struct l2 *l2, const char *pkey, size_t plen, l2_walk_f *fn, void *arg);
/* Blocking I/O: returns once every unlink queued before the call is done, so that what
 * was removed from the index is gone from the disk too (before a ban is forgotten). */
void l2_flush_unlinks(struct l2 *l2);
/* Drops en from the index if it still is there (e.g. the caller found it uncacheable).
 * The caller keeps its reference. */
void l2_drop(struct l2 *l2, struct l2_entry *en);

struct l2_stats {
    uint64_t objects; /* indexed variants */
    uint64_t bytes;   /* their charge: padded header + body */
    uint64_t budget;
    uint64_t indexed_at_start; /* files indexed by the rebuild or l2_probe */
    uint64_t corrupt;          /* files deleted for a bad header, size or body */
    uint64_t write_errors;     /* ENOSPC/EIO while writing */
    uint64_t evictions;
    int admission_paused; /* 1 while l2_writer_begin returns -EAGAIN */
    int ready;
};
void l2_stats(const struct l2 *l2, struct l2_stats *out);

/* Internal (module, tests, fuzzing). */

struct l2__hdr {
    uint32_t hdr_len; /* prelude + metadata */
    uint64_t body_off, body_len, body_xxh;
};
/* Appends a complete header (prelude + metadata, no padding) for `o` stored under pkey
 * with the given body facts. Returns 0 or -E2BIG (L2_HDR_MAX). */
int l2__hdr_build(struct buf *out, const char *pkey, size_t plen, const struct cache_obj *o,
                  uint64_t body_len, uint64_t body_xxh);
/* Parses and verifies the header at the start of p[0..n) (n may extend past it). On 0
 * fills *h, *obj (one reference, body NULL) and *pkey (malloc'd, NUL-terminated; caller
 * frees); on -EINVAL (bad or truncated) allocates nothing. */
int l2__hdr_parse(const void *p, size_t n, struct l2__hdr *h, struct cache_obj **obj, char **pkey,
                  size_t *plen);
/* The header checksum: XXH3-64 of bytes [16, hdr_len) (everything after the checksum
 * field; the magic, version and flags before it are checked for exact values). */
uint64_t l2__hdr_sum(const void *hdr, size_t hdr_len);
/* Failure injection: the nth write-side syscall from now (1 = next) fails with -err. */
void l2__inject_write_error(struct l2 *l2, unsigned nth, int err);
/* Overrides the admission back-off (tests). */
void l2__set_pause_ns(struct l2 *l2, uint64_t ns);
/* Process-wide (tests): while set, rebuilds wait before walking the tree, so that tests
 * can act "during the rebuild" deterministically. */
void l2__hold_rebuild(int hold);

#endif
