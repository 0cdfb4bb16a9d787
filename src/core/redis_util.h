/* src/core/redis_util.h: pure helpers for the Redis clients outside the cache tier: the
 * control stream's consumer on the edge and its producer in `mlcdn ctl`.
 *
 * Nothing here talks to Redis; both sides parse a redis:// URL and compare stream entry
 * ids the same way, and decide when a reader's position may hide lost entries. */
#ifndef MLCDN_CORE_REDIS_UTIL_H
#define MLCDN_CORE_REDIS_UTIL_H

#include <stddef.h>
#include <stdint.h>

struct redis_url {
    char host[256];
    int port;           /* 6379 when not given */
    char password[256]; /* "" when none */
    long db;            /* 0 when not given */
};

/* Parses redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]. Returns 0, or -EINVAL with *why
 * set to a static description of what is wrong. */
int redis_url_parse(const char *url, struct redis_url *out, const char **why);

/* A stream entry id, "MS-SEQ". */
struct redis_sid {
    uint64_t ms, seq;
};

/* Parses "MS-SEQ" or "MS" (seq 0) of exactly len bytes. Returns 0 or -EINVAL. */
int redis_sid_parse(const char *s, size_t len, struct redis_sid *out);
/* <0, 0, >0 as a is before, equal to, after b. */
int redis_sid_cmp(struct redis_sid a, struct redis_sid b);
/* Writes "MS-SEQ" into out (at least 42 bytes). */
void redis_sid_fmt(struct redis_sid id, char *out, size_t n);

/* What XINFO STREAM says of a stream, as far as a reader's position is concerned. */
struct redis_stream_info {
    int exists;
    struct redis_sid last_generated, first;
    int have_first;   /* the stream has entries; first is the oldest */
    long long length; /* entries in the stream now */
    long long added;  /* entries ever added (Redis 7's entries-added), -1 unknown */
};

/* Whether entries after position `last` (of a reader that applied every entry up to it)
 * may have been removed before it read them: NULL when certainly not, else why (static
 * text). Trimming removes the oldest entries first, so the position itself gone means a
 * possible gap; conservative when it cannot tell (docs/internals/control.md). */
const char *redis_stream_gap(struct redis_sid last, const struct redis_stream_info *si);

#endif
