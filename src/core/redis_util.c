/* src/core/redis_util.c: redis:// URLs and stream entry ids (see redis_util.h). */
#include "core/redis_util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 20)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int redis_url_parse(const char *url, struct redis_url *out, const char **why)
{
    struct redis_url u;
    const char *p, *at, *hend, *slash;
    uint64_t v;

    memset(&u, 0, sizeof(u));
    u.port = 6379;
    if (!url || strncmp(url, "redis://", 8) != 0) {
        *why = "expected redis://[:PASSWORD@]HOST[:PORT][/DB]";
        return -EINVAL;
    }
    p = url + 8;
    slash = strchr(p, '/');
    at = memchr(p, '@', slash ? (size_t)(slash - p) : strlen(p));
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p;
        if ((size_t)(at - pw) >= sizeof(u.password)) {
            *why = "password too long";
            return -EINVAL;
        }
        memcpy(u.password, pw, (size_t)(at - pw));
        p = at + 1;
    }
    hend = slash ? slash : p + strlen(p);
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(hend - p));
        if (!rb || rb == p + 1 || (size_t)(rb - p - 1) >= sizeof(u.host)) {
            *why = "bad [IPv6] host";
            return -EINVAL;
        }
        memcpy(u.host, p + 1, (size_t)(rb - p - 1));
        p = rb + 1;
    } else {
        const char *colon = memchr(p, ':', (size_t)(hend - p));
        const char *e = colon ? colon : hend;
        if (e == p || (size_t)(e - p) >= sizeof(u.host)) {
            *why = "missing or too long host";
            return -EINVAL;
        }
        memcpy(u.host, p, (size_t)(e - p));
        p = e;
    }
    if (p < hend) {
        if (*p != ':' || parse_u64(p + 1, (size_t)(hend - p - 1), &v) < 0 || v == 0 || v > 65535) {
            *why = "port must be 1..65535";
            return -EINVAL;
        }
        u.port = (int)v;
    }
    if (slash && slash[1]) {
        if (parse_u64(slash + 1, strlen(slash + 1), &v) < 0 || v > 1000000) {
            *why = "database must be a number";
            return -EINVAL;
        }
        u.db = (long)v;
    }
    *out = u;
    return 0;
}

int redis_sid_parse(const char *s, size_t len, struct redis_sid *out)
{
    const char *dash = memchr(s, '-', len);
    struct redis_sid id = {0, 0};

    if (parse_u64(s, dash ? (size_t)(dash - s) : len, &id.ms) < 0)
        return -EINVAL;
    if (dash && parse_u64(dash + 1, len - (size_t)(dash + 1 - s), &id.seq) < 0)
        return -EINVAL;
    *out = id;
    return 0;
}

int redis_sid_cmp(struct redis_sid a, struct redis_sid b)
{
    if (a.ms != b.ms)
        return a.ms < b.ms ? -1 : 1;
    if (a.seq != b.seq)
        return a.seq < b.seq ? -1 : 1;
    return 0;
}

void redis_sid_fmt(struct redis_sid id, char *out, size_t n)
{
    snprintf(out, n, "%" PRIu64 "-%" PRIu64, id.ms, id.seq);
}

const char *redis_stream_gap(struct redis_sid last, const struct redis_stream_info *si)
{
    const struct redis_sid zero = {0, 0};
    int at_zero = redis_sid_cmp(last, zero) == 0;
    if (!si->exists)
        return at_zero ? NULL : "the stream is gone (Redis lost its data?)";
    if (redis_sid_cmp(si->last_generated, last) < 0)
        return "the stream is older than this edge's position (recreated)";
    if (redis_sid_cmp(si->last_generated, last) == 0)
        return NULL; /* nothing after `last` was ever added */
    if (si->have_first && redis_sid_cmp(si->first, last) <= 0)
        return NULL; /* `last`, or an older entry, is still there: nothing after it went */
    if (at_zero && si->added >= 0 && si->added == si->length)
        return NULL; /* read from the start, and nothing was ever removed */
    return "the stream was trimmed past this edge's position";
}
