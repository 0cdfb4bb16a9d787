/* src/plan/plan_accesslog.c: the edge's access logs read back as a trace.
 *
 * Both formats of src/core/accesslog.c are read, told apart line by line (a JSON line
 * starts with '{'), so a file whose format was switched midway still loads. The combined
 * format is split by hand: the writer escapes '"' inside fields as \x22, so the first raw
 * quote closes a field. JSON lines go through jansson. The key is the request-target as
 * logged (a target over 2 KiB is logged as a prefix plus its hash: still one key per
 * target). Times are the lines' UTC timestamps. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/mc.h"
#include "plan/plan.h"
#include "plan/plan_int.h"

static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil):
 * timegm() would do, but it is not C11 and depends on TZ handling. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char *p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 0;
}

static double civil_secs(int y, int mo, int d, int h, int mi, int s)
{
    return (double)(days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + s);
}

/* "07/Dec/2026:04:22:31 +0000" (the writer always logs UTC). */
static int parse_clf_time(const char *p, const char *e, double *out)
{
    int d, y, h, mi, s, mo = -1;

    if (e - p < 20 || p[2] != '/' || p[6] != '/' || p[11] != ':' || p[14] != ':' || p[17] != ':')
        return -EINVAL;
    for (int i = 0; i < 12; i++)
        if (!memcmp(p + 3, months[i], 3))
            mo = i + 1;
    if (mo < 0 || digits(p, 2, &d) || digits(p + 7, 4, &y) || digits(p + 12, 2, &h) ||
        digits(p + 15, 2, &mi) || digits(p + 18, 2, &s))
        return -EINVAL;
    *out = civil_secs(y, mo, d, h, mi, s);
    return 0;
}

/* "2026-12-07T04:22:31.123456Z". */
static int parse_iso_time(const char *p, double *out)
{
    int y, mo, d, h, mi, s, us = 0;
    size_t n = strlen(p);

    if (n < 20 || p[4] != '-' || p[7] != '-' || p[10] != 'T' || p[13] != ':' || p[16] != ':')
        return -EINVAL;
    if (digits(p, 4, &y) || digits(p + 5, 2, &mo) || digits(p + 8, 2, &d) ||
        digits(p + 11, 2, &h) || digits(p + 14, 2, &mi) || digits(p + 17, 2, &s))
        return -EINVAL;
    if (mo < 1 || mo > 12)
        return -EINVAL;
    if (p[19] == '.' && n >= 26 && digits(p + 20, 6, &us) != 0)
        return -EINVAL;
    *out = civil_secs(y, mo, d, h, mi, s) + us / 1e6;
    return 0;
}

static void lat_add(struct plan_lat_samples *lat, const char *level, size_t llen, double v)
{
    int tier;

    if (lat == NULL || !(v >= 0))
        return;
    if (llen == 2 && !memcmp(level, "L1", 2))
        tier = PLAN_TIER_L1;
    else if (llen == 2 && !memcmp(level, "L2", 2))
        tier = PLAN_TIER_L2;
    else if (llen == 6 && !memcmp(level, "ORIGIN", 6))
        tier = PLAN_TIER_ORIGIN;
    else
        return;
    if (lat->n[tier] == lat->cap[tier]) {
        lat->cap[tier] = lat->cap[tier] ? lat->cap[tier] * 2 : 1024;
        lat->v[tier] = mc_xrealloc(lat->v[tier], lat->cap[tier] * sizeof(double));
    }
    lat->v[tier][lat->n[tier]++] = v;
}

void plan_lat_samples_fini(struct plan_lat_samples *s)
{
    for (int i = 0; i < PLAN_NTIERS; i++)
        free(s->v[i]);
    memset(s, 0, sizeof(*s));
}

/* A request the caches could have kept: a whole 200 answer to a GET, not on the admin
 * listener, not one the edge passes by design. */
static int usable(const char *method, size_t mlen, int status, const char *listener, size_t llen,
                  const char *cache, size_t clen, int complete)
{
    if (mlen != 3 || memcmp(method, "GET", 3) != 0 || status != 200 || !complete)
        return 0;
    if (llen == 5 && !memcmp(listener, "admin", 5))
        return 0;
    if ((clen == 6 && !memcmp(cache, "BYPASS", 6)) || (clen == 4 && !memcmp(cache, "PASS", 4)))
        return 0;
    return 1;
}

/* Finds ` name=` in [p, e) and returns its value's extent. */
static int kv(const char *p, const char *e, const char *name, const char **v, size_t *vlen)
{
    size_t n = strlen(name);

    for (const char *c = p; c + n + 1 < e; c++) {
        if (c[0] != ' ' || memcmp(c + 1, name, n) != 0 || c[1 + n] != '=')
            continue;
        const char *s = c + n + 2, *x = s;
        while (x < e && *x != ' ')
            x++;
        *v = s;
        *vlen = (size_t)(x - s);
        return 0;
    }
    return -1;
}

static int u64_field(const char **pp, const char *e, uint64_t *out)
{
    const char *p = *pp;
    uint64_t v = 0;

    if (p >= e || *p < '0' || *p > '9')
        return -1;
    for (; p < e && *p >= '0' && *p <= '9'; p++) {
        if (v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *pp = p;
    *out = v;
    return 0;
}

/* Skips one ` "..."` field. */
static int skip_quoted(const char **pp, const char *e)
{
    const char *p = *pp, *q;

    if (e - p < 3 || p[0] != ' ' || p[1] != '"')
        return -1;
    q = memchr(p + 2, '"', (size_t)(e - p - 2));
    if (q == NULL)
        return -1;
    *pp = q + 1;
    return 0;
}

static int combined_line(struct plan__builder *b, const char *p, const char *e,
                         struct plan_lat_samples *lat, const char **why)
{
    const char *lb, *rb, *rq, *rqe, *sp1, *sp2, *c;
    const char *cache = "", *listener = "", *level = "", *ttfb = NULL, *done = "OK";
    size_t clen = 0, llen = 0, lvlen = 0, tlen = 0, dlen = 2;
    uint64_t status, bytes;
    double tsec;

    *why = "not a combined-format access log line";
    lb = memchr(p, '[', (size_t)(e - p));
    if (lb == NULL)
        return -EINVAL;
    rb = memchr(lb, ']', (size_t)(e - lb));
    if (rb == NULL)
        return -EINVAL;
    if (parse_clf_time(lb + 1, rb, &tsec) != 0) {
        *why = "bad time";
        return -EINVAL;
    }
    if (e - rb < 3 || rb[1] != ' ' || rb[2] != '"')
        return -EINVAL;
    rq = rb + 3;
    rqe = memchr(rq, '"', (size_t)(e - rq));
    if (rqe == NULL)
        return -EINVAL;
    sp1 = memchr(rq, ' ', (size_t)(rqe - rq));
    sp2 = rqe;
    while (sp2 > rq && sp2[-1] != ' ')
        sp2--;
    c = rqe + 1;
    if (c >= e || *c != ' ')
        return -EINVAL;
    c++;
    if (u64_field(&c, e, &status) != 0 || c >= e || *c != ' ') {
        *why = "bad status";
        return -EINVAL;
    }
    c++;
    if (u64_field(&c, e, &bytes) != 0) {
        *why = "bad byte count";
        return -EINVAL;
    }
    if (skip_quoted(&c, e) != 0 || skip_quoted(&c, e) != 0)
        return -EINVAL;
    kv(c, e, "cache", &cache, &clen);
    kv(c, e, "level", &level, &lvlen);
    kv(c, e, "listener", &listener, &llen);
    kv(c, e, "completion", &done, &dlen);
    if (kv(c, e, "ttfb", &ttfb, &tlen) == 0 && tlen > 0 && tlen < 32 && *ttfb != '-') {
        char buf[32];
        memcpy(buf, ttfb, tlen);
        buf[tlen] = '\0';
        lat_add(lat, level, lvlen, strtod(buf, NULL));
    }
    /* A request line that did not parse is logged as "-": no method, no target. */
    if (sp1 == NULL || sp2 <= sp1 + 1 ||
        !usable(rq, (size_t)(sp1 - rq), (int)MC_MIN(status, 999), listener, llen, cache, clen,
                dlen == 2 && !memcmp(done, "OK", 2)) ||
        bytes == 0) {
        b->t->skipped++;
        return 0;
    }
    if (plan__builder_add(b, sp1 + 1, (size_t)(sp2 - 1 - (sp1 + 1)), bytes, tsec) != 0) {
        *why = "too many distinct keys";
        return -EINVAL;
    }
    return 0;
}

static const char *jstr(json_t *o, const char *k, size_t *len)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_string(v)) {
        *len = 0;
        return "";
    }
    *len = json_string_length(v);
    return json_string_value(v);
}

static int json_line(struct plan__builder *b, const char *p, const char *e,
                     struct plan_lat_samples *lat, const char **why)
{
    json_error_t jerr;
    json_t *o = json_loadb(p, (size_t)(e - p), 0, &jerr);
    json_t *st, *by, *cp, *tf;
    const char *method, *url, *listener, *cache, *level, *tm;
    size_t mlen, ulen, llen, clen, lvlen, tmlen;
    double tsec;
    int rc = 0;

    if (!json_is_object(o)) {
        *why = "not a JSON access log line";
        json_decref(o);
        return -EINVAL;
    }
    tm = jstr(o, "time", &tmlen);
    if (parse_iso_time(tm, &tsec) != 0) {
        *why = "bad or missing \"time\"";
        rc = -EINVAL;
        goto out;
    }
    method = jstr(o, "method", &mlen);
    url = jstr(o, "url", &ulen);
    listener = jstr(o, "listener", &llen);
    cache = jstr(o, "cache", &clen);
    level = jstr(o, "level", &lvlen);
    st = json_object_get(o, "status");
    by = json_object_get(o, "bytes");
    cp = json_object_get(o, "complete");
    tf = json_object_get(o, "ttfb_s");
    if (!json_is_integer(st) || !json_is_integer(by) || json_integer_value(by) < 0) {
        *why = "missing \"status\" or \"bytes\"";
        rc = -EINVAL;
        goto out;
    }
    if (json_is_number(tf))
        lat_add(lat, level, lvlen, json_number_value(tf));
    if (ulen == 0 || json_integer_value(by) == 0 ||
        !usable(method, mlen, (int)MC_MIN(json_integer_value(st), 999), listener, llen, cache, clen,
                !json_is_false(cp))) {
        b->t->skipped++;
        goto out;
    }
    if (plan__builder_add(b, url, ulen, (uint64_t)json_integer_value(by), tsec) != 0) {
        *why = "too many distinct keys";
        rc = -EINVAL;
    }
out:
    json_decref(o);
    return rc;
}

int plan_trace_parse_accesslog(const char *buf, size_t len, const char *name,
                               struct plan_lat_samples *lat, struct plan_trace **out, char *err,
                               size_t errlen)
{
    struct plan__builder b;
    const char *p = buf, *end = buf + len;
    uint64_t line = 0;
    int rc = 0;

    plan__builder_init(&b);
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p)), *q, *why = NULL;

        if (eol == NULL)
            eol = end;
        line++;
        q = eol;
        if (q > p && q[-1] == '\r')
            q--;
        if (q > p) {
            rc = *p == '{' ? json_line(&b, p, q, lat, &why) : combined_line(&b, p, q, lat, &why);
            if (rc != 0) {
                plan__fail(err, errlen, name, line, why);
                goto out;
            }
        }
        p = eol + 1;
    }
out:
    if (rc == 0)
        *out = plan__builder_take(&b);
    plan__builder_fini(&b);
    return rc;
}

static int parse_cb(const char *buf, size_t len, const char *name, void *arg,
                    struct plan_trace **out, char *err, size_t errlen)
{
    return plan_trace_parse_accesslog(buf, len, name, arg, out, err, errlen);
}

int plan_trace_load_accesslog(const char *path, struct plan_lat_samples *lat,
                              struct plan_trace **out, char *err, size_t errlen)
{
    int rc = plan__load_file(path, parse_cb, lat, out, err, errlen);
    if (rc == -EINVAL && strstr(err, ": no requests") != NULL)
        snprintf(err + strlen(err), errlen - strlen(err),
                 " (no GET answered 200 in full among its lines)");
    return rc;
}
