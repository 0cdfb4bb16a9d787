/* src/cache/cache_ban.h: the ban list of an edge (invalidation by prefix, glob and tag).
 *
 * A ban is an expression (a path prefix, a glob over path and query, a tag or a tag
 * prefix) with the wall-clock time it was issued. Issuing one costs O(1): nothing is scanned. A stored
 * object is banned when a matching ban is newer than the object (its stored time: when
 * the request that produced it was sent), so objects fetched after the ban are served
 * as usual. Every tier asks at lookup (cache_bans_check); a background walker (the
 * edge's lurker) removes banned objects and then retires the bans it has applied
 * everywhere (cache_bans_walked, cache_bans_retire), as Varnish's ban lurker does.
 *
 * Soft bans mark matching objects stale instead of removing them.
 *
 * Ban times strictly increase in issue order, so the list is sorted and a check walks
 * from the newest down to the first ban older than the object. Persistence: an
 * append-only file (one line per ban), rewritten whole when bans retire, so bans
 * outlive a restart together with the disk tier they protect.
 *
 * The insert gate: whoever stores an object checks it against the bans inside
 * cache_bans_gate_enter/exit; cache_bans_gate_sync waits for every section that was open when it
 * was called, so that after a ban was added and the gate synced, no object checked
 * before the ban can still be on its way into a store the lurker is about to walk.
 *
 * Thread-safe: a rwlock guards the list; a check with no bans takes no lock. */
#ifndef MLCDN_CACHE_CACHE_BAN_H
#define MLCDN_CACHE_CACHE_BAN_H

#include <stddef.h>
#include <stdint.h>

/* A tag prefix matches every tag that starts with it (a model's "model:ID:" tags). An
 * "all" ban matches every object, whatever its key or tags (everything stored before it:
 * what an edge issues when it cannot know what it missed); its expression is "*". */
enum cache_ban_kind {
    CACHE_BAN_PREFIX = 0,
    CACHE_BAN_GLOB = 1,
    CACHE_BAN_TAG = 2,
    CACHE_BAN_TAG_PREFIX = 3,
    CACHE_BAN_ALL = 4
};
enum cache_ban_verdict { CACHE_BAN_NONE = 0, CACHE_BAN_SOFT = 1, CACHE_BAN_HARD = 2 };

#define CACHE_BAN_EXPR_MAX 4096 /* longest expression */
#define CACHE_BANS_MAX 100000u  /* active bans; more are refused until some retire */

struct cache_bans; /* opaque; cache_bans_new() / cache_bans_free() */

/* A new empty list; the caller owns it. */
struct cache_bans *cache_bans_new(void);
/* Closes the file (if any) and frees the list; NULLs *bp. */
void cache_bans_free(struct cache_bans **bp);

/* Keeps the list in file `path`: loads the bans it holds (a missing file is an empty
 * list), rewrites it without the lines it could not read, and appends every later ban.
 * Returns 0, or -errno with err naming the file and the line. */
int cache_bans_attach(struct cache_bans *b, const char *path, char *err, size_t errlen);

/* 0 when expr[0..len) is a valid expression of that kind, else -EINVAL with a static
 * reason in *why: empty, longer than CACHE_BAN_EXPR_MAX, control characters, a prefix not
 * starting with '/', a tag with a space or a comma, an "all" ban's other than "*". */
int cache_ban_expr_check(enum cache_ban_kind kind, const char *expr, size_t len, const char **why);

/* Adds a ban issued at t_us (wall clock, microseconds); a time not after the newest
 * ban's is raised to just after it. *t_out (may be NULL) gets the time kept. Returns 0,
 * -EINVAL (cache_ban_expr_check), -ENOSPC (CACHE_BANS_MAX active) or the file's -errno (the
 * ban is then not added: a ban that would not survive a restart is refused). */
int cache_bans_add(struct cache_bans *b, enum cache_ban_kind kind, const char *expr, size_t len,
                   int soft, int64_t t_us, int64_t *t_out);

/* The strongest verdict of the bans newer than stored_us that match an object stored
 * under path-and-query pathq[0..plen) carrying tags[0..tlen) (a list separated by spaces
 * or commas; NULL when none). *kind (may be NULL) gets the deciding ban's kind. */
enum cache_ban_verdict cache_bans_check(struct cache_bans *b, const char *pathq, size_t plen,
                                        const char *tags, size_t tlen, int64_t stored_us,
                                        enum cache_ban_kind *kind);

/* The same, with only the bans issued at or before upto_us (the lurker's walk). */
enum cache_ban_verdict cache_bans_check_upto(struct cache_bans *b, const char *pathq, size_t plen,
                                             const char *tags, size_t tlen, int64_t stored_us,
                                             int64_t upto_us, enum cache_ban_kind *kind);
/* The time of the oldest soft ban issued at or after t_us, 0 when there is none. */
int64_t cache_bans_soft_since(struct cache_bans *b, int64_t t_us);

/* Does the one expression match (pure; for tests and callers that hold no list)? */
int cache_ban_match(enum cache_ban_kind kind, const char *expr, size_t elen, const char *pathq,
                    size_t plen, const char *tags, size_t tlen);
/* Glob over path and query: '*' any run of characters ('/' included), '?' one, '\' quotes
 * the next; everything else literally. */
int cache_ban_glob(const char *pat, size_t plen, const char *s, size_t slen);

size_t cache_bans_count(struct cache_bans *b);
/* The newest ban's time, 0 when there is none. */
int64_t cache_bans_newest(struct cache_bans *b);
/* The lurker finished a walk that started after every ban up to upto_us was issued:
 * those bans are applied to the walked stores (as of now_us). */
void cache_bans_walked(struct cache_bans *b, int64_t upto_us, int64_t now_us);
/* Retires, oldest first, the bans walked at least keep_us before now_us (keep_us covers
 * stores that are never walked, such as copies that expire on their own). Returns how
 * many retired; rewrites the file when any did. */
size_t cache_bans_retire(struct cache_bans *b, int64_t now_us, int64_t keep_us);

/* The insert gate (top of file). enter returns the token to hand to exit. */
unsigned cache_bans_gate_enter(struct cache_bans *b);
void cache_bans_gate_exit(struct cache_bans *b, unsigned token);
/* Waits (sleeping) until every section entered before this call has exited. */
void cache_bans_gate_sync(struct cache_bans *b);

#endif
