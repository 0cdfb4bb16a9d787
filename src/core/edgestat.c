/* src/core/edgestat.c: see edgestat.h. The metric names read here are the edge's
 * (src/edge/edge_admin.c, src/predict): a rename there must be made here too, which
 * tests/unit/core/test_edgestat.c catches by parsing a live edge registry's output. */
#include "core/edgestat.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/promtext.h"

#define NAME(n) #n,
static const char *const tier_names[EDGESTAT_TIERS] = {EDGESTAT_TIER_LIST(NAME)};
#undef NAME

const char *edgestat_tier_name(enum edgestat_tier t)
{
    return (unsigned)t < EDGESTAT_TIERS ? tier_names[t] : "?";
}

static int tier_of(const struct promtext_sample *s)
{
    const char *lv = promtext_label(s, "level");
    if (!lv)
        return -1;
    for (int i = 0; i < EDGESTAT_TIERS; i++)
        if (!strcmp(lv, tier_names[i]))
            return i;
    return -1;
}

static struct edgestat_model *model_slot(struct edgestat *st, const char *name, int64_t version)
{
    for (size_t i = 0; i < st->nmodels; i++)
        if (st->models[i].version == version && !strcmp(st->models[i].name, name))
            return &st->models[i];
    if (st->nmodels == EDGESTAT_MAX_MODELS || strlen(name) >= sizeof(st->models[0].name))
        return NULL;
    struct edgestat_model *m = &st->models[st->nmodels++];
    memset(m, 0, sizeof(*m));
    snprintf(m->name, sizeof(m->name), "%s", name);
    m->version = version;
    return m;
}

static struct edgestat_model *model_of(struct edgestat *st, const struct promtext_sample *s)
{
    const char *name = promtext_label(s, "model"), *v = promtext_label(s, "version");
    char *end;
    if (!name || !v)
        return NULL;
    long long ver = strtoll(v, &end, 10);
    if (*end || end == v)
        return NULL;
    return model_slot(st, name, ver);
}

int edgestat_parse(const char *text, size_t len, struct edgestat *out, char *err, size_t errlen)
{
    struct promtext *pt;
    int seen = 0;

    if (promtext_parse(text, len, &pt, err, errlen) < 0)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < pt->n; i++) {
        const struct promtext_sample *s = &pt->s[i];
        const char *n = s->name;
        int t = tier_of(s);
        double v = isfinite(s->value) ? s->value : 0;

        if (!strcmp(n, "mlcdn_edge_requests_total")) {
            seen = 1;
            out->requests += v;
            if (t >= 0)
                out->tier_requests[t] += v;
        } else if (!strcmp(n, "mlcdn_edge_bytes_served_by_level_total") && t >= 0) {
            out->tier_bytes[t] += v;
        } else if (!strcmp(n, "mlcdn_edge_bytes_served_total")) {
            out->bytes_served += v;
        } else if (!strcmp(n, "mlcdn_edge_bytes_from_origin_total")) {
            out->bytes_origin += v;
        } else if (!strcmp(n, "mlcdn_edge_origin_errors_total")) {
            out->origin_errors += v;
        } else if (!strcmp(n, "mlcdn_edge_responses_total")) {
            const char *cl = promtext_label(s, "class");
            if (cl && !strcmp(cl, "5xx"))
                out->responses_5xx += v;
        } else if (!strcmp(n, "mlcdn_edge_request_duration_seconds_bucket") && t >= 0) {
            struct edgestat_hist *h = &out->lat[t];
            const char *le = promtext_label(s, "le");
            char *end;
            double b = le ? strtod(le, &end) : 0;
            if (!le || *end || h->n == EDGESTAT_MAX_BUCKETS || (h->n && b <= h->le[h->n - 1]))
                continue; /* bounds come in increasing order; anything else is not ours */
            h->le[h->n] = b;
            h->cnt[h->n] = v; /* cumulative for now */
            h->n++;
        } else if (!strcmp(n, "mlcdn_edge_request_duration_seconds_count") && t >= 0) {
            out->lat[t].count = v;
        } else if (!strcmp(n, "mlcdn_edge_request_duration_seconds_sum") && t >= 0) {
            out->lat[t].sum = v;
        } else if (!strcmp(n, "mlcdn_model_info")) {
            struct edgestat_model *m = model_of(out, s);
            if (m)
                m->loaded += v;
        } else if (!strcmp(n, "mlcdn_predict_model_requests_total")) {
            struct edgestat_model *m = model_of(out, s);
            if (m)
                m->predictions += v;
        }
    }
    promtext_free(&pt);
    if (!seen) {
        snprintf(err, errlen, "no mlcdn_edge_requests_total in the metrics: not an mlcdn edge");
        return -EINVAL;
    }
    for (int t = 0; t < EDGESTAT_TIERS; t++) {
        struct edgestat_hist *h = &out->lat[t];
        for (size_t k = h->n; k-- > 1;)
            h->cnt[k] = h->cnt[k] >= h->cnt[k - 1] ? h->cnt[k] - h->cnt[k - 1] : 0;
    }
    return 0;
}

static double dsub(double a, double b)
{
    return a - b;
}

static int went_down(const struct edgestat *p, const struct edgestat *c)
{
    if (c->requests < p->requests || c->bytes_served < p->bytes_served ||
        c->bytes_origin < p->bytes_origin || c->responses_5xx < p->responses_5xx ||
        c->origin_errors < p->origin_errors)
        return 1;
    for (int t = 0; t < EDGESTAT_TIERS; t++)
        if (c->tier_requests[t] < p->tier_requests[t] || c->lat[t].count < p->lat[t].count)
            return 1;
    return 0;
}

void edgestat_delta(const struct edgestat *prev, const struct edgestat *cur, struct edgestat *out)
{
    struct edgestat d = *cur;

    if (went_down(prev, cur)) {
        *out = d;
        return;
    }
    d.requests = dsub(cur->requests, prev->requests);
    d.bytes_served = dsub(cur->bytes_served, prev->bytes_served);
    d.bytes_origin = dsub(cur->bytes_origin, prev->bytes_origin);
    d.responses_5xx = dsub(cur->responses_5xx, prev->responses_5xx);
    d.origin_errors = dsub(cur->origin_errors, prev->origin_errors);
    for (int t = 0; t < EDGESTAT_TIERS; t++) {
        d.tier_requests[t] = dsub(cur->tier_requests[t], prev->tier_requests[t]);
        d.tier_bytes[t] = MC_MAX(0, dsub(cur->tier_bytes[t], prev->tier_bytes[t]));
        const struct edgestat_hist *a = &prev->lat[t], *b = &cur->lat[t];
        struct edgestat_hist *h = &d.lat[t];
        h->count = dsub(b->count, a->count);
        h->sum = MC_MAX(0, dsub(b->sum, a->sum));
        if (a->n == b->n && !memcmp(a->le, b->le, a->n * sizeof(a->le[0])))
            for (size_t k = 0; k < h->n; k++)
                h->cnt[k] = MC_MAX(0, dsub(b->cnt[k], a->cnt[k]));
    }
    for (size_t i = 0; i < d.nmodels; i++) {
        struct edgestat_model *m = &d.models[i];
        for (size_t j = 0; j < prev->nmodels; j++)
            if (prev->models[j].version == m->version && !strcmp(prev->models[j].name, m->name))
                m->predictions = MC_MAX(0, m->predictions - prev->models[j].predictions);
    }
    *out = d;
}

void edgestat_add(struct edgestat *acc, const struct edgestat *s)
{
    acc->requests += s->requests;
    acc->bytes_served += s->bytes_served;
    acc->bytes_origin += s->bytes_origin;
    acc->responses_5xx += s->responses_5xx;
    acc->origin_errors += s->origin_errors;
    for (int t = 0; t < EDGESTAT_TIERS; t++) {
        acc->tier_requests[t] += s->tier_requests[t];
        acc->tier_bytes[t] += s->tier_bytes[t];
        struct edgestat_hist *a = &acc->lat[t];
        const struct edgestat_hist *b = &s->lat[t];
        if (a->n == 0 && a->count == 0) {
            *a = *b;
            continue;
        }
        if (a->n != b->n || memcmp(a->le, b->le, a->n * sizeof(a->le[0])))
            continue;
        for (size_t k = 0; k < a->n; k++)
            a->cnt[k] += b->cnt[k];
        a->count += b->count;
        a->sum += b->sum;
    }
    for (size_t i = 0; i < s->nmodels; i++) {
        struct edgestat_model *m = model_slot(acc, s->models[i].name, s->models[i].version);
        if (m) {
            m->loaded += s->models[i].loaded;
            m->predictions += s->models[i].predictions;
        }
    }
}

double edgestat_quantile(const struct edgestat_hist *h, double q)
{
    double total = 0, acc = 0;

    for (size_t k = 0; k < h->n; k++)
        total += h->cnt[k];
    if (total <= 0)
        return -1;
    double rank = q * total;
    for (size_t k = 0; k < h->n; k++) {
        if (acc + h->cnt[k] >= rank && h->cnt[k] > 0) {
            double lo = k ? h->le[k - 1] : 0;
            if (isinf(h->le[k]))
                return lo; /* above the highest bound: the bound is all that is known */
            return lo + (h->le[k] - lo) * ((rank - acc) / h->cnt[k]);
        }
        acc += h->cnt[k];
    }
    return h->n ? h->le[h->n - 1] : -1;
}

double edgestat_bytes_saved(const struct edgestat *s)
{
    return s->tier_bytes[EDGESTAT_L1] + s->tier_bytes[EDGESTAT_L2] + s->tier_bytes[EDGESTAT_REDIS] +
           s->tier_bytes[EDGESTAT_PARENT];
}

static int put_num(struct buf *out, double v)
{
    if (!isfinite(v))
        return buf_puts(out, "null");
    if (v == floor(v) && fabs(v) < 1e15)
        return buf_printf(out, "%.0f", v);
    return buf_printf(out, "%.6g", v);
}

static int put_q(struct buf *out, const struct edgestat_hist *h, double q)
{
    double v = edgestat_quantile(h, q);
    return v < 0 ? buf_puts(out, "null") : put_num(out, v);
}

int edgestat_json(const struct edgestat *s, double seconds, int buckets, struct buf *out)
{
    int err = 0;
    double rate = seconds > 0 ? 1.0 / seconds : 0;

    err |= buf_puts(out, "{\"requests\":");
    err |= put_num(out, s->requests);
    if (seconds > 0) {
        err |= buf_puts(out, ",\"seconds\":");
        err |= put_num(out, seconds);
        err |= buf_puts(out, ",\"requests_per_s\":");
        err |= put_num(out, s->requests * rate);
        err |= buf_puts(out, ",\"bytes_served_per_s\":");
        err |= put_num(out, s->bytes_served * rate);
        err |= buf_puts(out, ",\"bytes_saved_per_s\":");
        err |= put_num(out, edgestat_bytes_saved(s) * rate);
    }
    err |= buf_puts(out, ",\"bytes_served\":");
    err |= put_num(out, s->bytes_served);
    err |= buf_puts(out, ",\"bytes_from_origin\":");
    err |= put_num(out, s->bytes_origin);
    err |= buf_puts(out, ",\"bytes_saved\":");
    err |= put_num(out, edgestat_bytes_saved(s));
    err |= buf_puts(out, ",\"responses_5xx\":");
    err |= put_num(out, s->responses_5xx);
    err |= buf_puts(out, ",\"origin_errors\":");
    err |= put_num(out, s->origin_errors);
    err |= buf_puts(out, ",\"tiers\":{");
    for (int t = 0; t < EDGESTAT_TIERS; t++) {
        const struct edgestat_hist *h = &s->lat[t];
        err |= buf_printf(out, "%s\"%s\":{\"requests\":", t ? "," : "", tier_names[t]);
        err |= put_num(out, s->tier_requests[t]);
        err |= buf_puts(out, ",\"share\":");
        err |= put_num(out, s->requests > 0 ? s->tier_requests[t] / s->requests : 0);
        err |= buf_puts(out, ",\"bytes\":");
        err |= put_num(out, s->tier_bytes[t]);
        err |= buf_puts(out, ",\"p50\":");
        err |= put_q(out, h, 0.50);
        err |= buf_puts(out, ",\"p95\":");
        err |= put_q(out, h, 0.95);
        err |= buf_puts(out, ",\"p99\":");
        err |= put_q(out, h, 0.99);
        if (buckets) {
            err |= buf_puts(out, ",\"buckets\":[");
            for (size_t k = 0; k < h->n; k++) {
                err |= buf_puts(out, k ? ",[" : "[");
                err |= isinf(h->le[k]) ? buf_puts(out, "\"+Inf\"") : put_num(out, h->le[k]);
                err |= buf_puts(out, ",");
                err |= put_num(out, h->cnt[k]);
                err |= buf_puts(out, "]");
            }
            err |= buf_puts(out, "]");
        }
        err |= buf_puts(out, "}");
    }
    err |= buf_puts(out, "},\"models\":[");
    for (size_t i = 0; i < s->nmodels; i++) {
        const struct edgestat_model *m = &s->models[i];
        err |= buf_puts(out, i ? ",{\"name\":" : "{\"name\":");
        err |= buf_json_str(out, m->name, strlen(m->name));
        err |= buf_printf(out,
                          ",\"version\":%" PRId64 ",\"loaded\":%s,\"predictions\":", m->version,
                          m->loaded > 0 ? "true" : "false");
        err |= put_num(out, m->predictions);
        err |= buf_puts(out, "}");
    }
    err |= buf_puts(out, "]}");
    return err ? -E2BIG : 0;
}
