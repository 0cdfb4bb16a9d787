/* src/predict/predict_manifest.c: a model store's manifest and the version policy.
 *
 * models/NAME/manifest.json (docs/predict.md has the format) lists the published versions
 * (digest, size, a sample input and the output it must give) and the version policy:
 *   latest                the highest version listed;
 *   pinned VERSION        that version;
 *   canary {version, base, percent, edges}
 *                         edges named in `edges` (all when the list is empty) send
 *                         `percent` % of their requests to `version`, the rest to `base`;
 *                         the other edges serve `base` only.
 * Resolution gives each edge its stable version and, when it takes part in a canary, the
 * canary version and its share. The split is a per-model request counter: request n goes
 * to the canary when n % 100 < percent, so every 100 consecutive requests hold exactly
 * `percent` canary answers. Pure: no I/O, no locks; unit-tested in
 * tests/unit/predict/test_predict_manifest.c. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mc.h"
#include "predict/predict_int.h"

static int parse_ver(const char *s, int64_t *out)
{
    size_t n = strlen(s);
    /* One spelling per version: "01" beside "1" would list version 1 twice. */
    if (n == 0 || n > 15 || (n > 1 && s[0] == '0'))
        return -1;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return -1;
    *out = strtoll(s, NULL, 10);
    return 0;
}

static int hex64(const char *s)
{
    if (strlen(s) != 64)
        return 0;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static int ver_of(const json_t *v, int64_t *out)
{
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = json_integer_value(v);
        return 0;
    }
    if (json_is_string(v))
        return parse_ver(json_string_value(v), out);
    return -1;
}

static int cmp_ver(const void *a, const void *b)
{
    const struct predict_mver *x = a, *y = b;
    return x->version < y->version ? -1 : x->version > y->version;
}

void predict__manifest_fini(struct predict_manifest *m)
{
    for (size_t i = 0; i < m->nedges; i++)
        free(m->edges[i]);
    free(m->edges);
    free(m->v);
    json_decref(m->root);
    memset(m, 0, sizeof(*m));
}

const struct predict_mver *predict__manifest_find(const struct predict_manifest *m, int64_t version)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->v[i].version == version)
            return &m->v[i];
    return NULL;
}

static int parse_policy(struct predict_manifest *m, json_t *pol, char *msg, size_t mlen)
{
    json_t *v;
    const char *mode;

    if (!pol) {
        /* No policy: the version marked active, else the latest. */
        v = json_object_get(m->root, "active");
        if (v && !json_is_null(v)) {
            if (ver_of(v, &m->pol.version) != 0) {
                snprintf(msg, mlen, "active: expected a version number");
                return -EINVAL;
            }
            m->pol.mode = PREDICT_POL_PINNED;
        } else {
            m->pol.mode = PREDICT_POL_LATEST;
        }
        return 0;
    }
    if (!json_is_object(pol) || !json_is_string(json_object_get(pol, "mode"))) {
        snprintf(msg, mlen, "policy: expected {\"mode\": \"latest\" | \"pinned\" | \"canary\"}");
        return -EINVAL;
    }
    mode = json_string_value(json_object_get(pol, "mode"));
    if (!strcmp(mode, "latest")) {
        m->pol.mode = PREDICT_POL_LATEST;
        return 0;
    }
    if (!strcmp(mode, "pinned"))
        m->pol.mode = PREDICT_POL_PINNED;
    else if (!strcmp(mode, "canary"))
        m->pol.mode = PREDICT_POL_CANARY;
    else {
        snprintf(msg, mlen, "policy.mode: '%.32s' is not latest, pinned or canary", mode);
        return -EINVAL;
    }
    if (ver_of(json_object_get(pol, "version"), &m->pol.version) != 0) {
        snprintf(msg, mlen, "policy.version: expected a version number (mode %s)", mode);
        return -EINVAL;
    }
    if (!predict__manifest_find(m, m->pol.version)) {
        snprintf(msg, mlen, "policy.version: %" PRId64 " is not in versions", m->pol.version);
        return -EINVAL;
    }
    if (m->pol.mode == PREDICT_POL_PINNED)
        return 0;
    m->pol.percent = 100;
    if ((v = json_object_get(pol, "percent"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 100) {
            snprintf(msg, mlen, "policy.percent: expected an integer 0..100");
            return -EINVAL;
        }
        m->pol.percent = (unsigned)json_integer_value(v);
    }
    m->pol.base = -1;
    if ((v = json_object_get(pol, "base")) && !json_is_null(v)) {
        if (ver_of(v, &m->pol.base) != 0 || !predict__manifest_find(m, m->pol.base)) {
            snprintf(msg, mlen, "policy.base: expected a version listed in versions");
            return -EINVAL;
        }
    } else {
        /* The highest version below the canary. */
        for (size_t i = 0; i < m->n; i++)
            if (m->v[i].version < m->pol.version)
                m->pol.base = m->v[i].version;
    }
    if ((v = json_object_get(pol, "edges")) && !json_is_null(v)) {
        size_t i;
        json_t *e;
        if (!json_is_array(v)) {
            snprintf(msg, mlen, "policy.edges: expected an array of edge names");
            return -EINVAL;
        }
        m->edges = mc_xcalloc(json_array_size(v) + 1, sizeof(*m->edges));
        json_array_foreach(v, i, e)
        {
            if (!json_is_string(e) || !json_string_length(e)) {
                snprintf(msg, mlen, "policy.edges[%zu]: expected an edge name", i);
                return -EINVAL;
            }
            m->edges[m->nedges++] = mc_xstrdup(json_string_value(e));
        }
    }
    if (m->pol.base < 0 && (m->pol.percent < 100 || m->nedges)) {
        snprintf(msg, mlen, "policy: canary %" PRId64 " has no base version (none lower is listed)",
                 m->pol.version);
        return -EINVAL;
    }
    return 0;
}

int predict__manifest_parse(const char *name, const char *text, size_t len,
                            struct predict_manifest *m, char *msg, size_t mlen)
{
    json_error_t je;
    json_t *vers, *ent, *v;
    const char *key;

    memset(m, 0, sizeof(*m));
    m->root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!m->root) {
        snprintf(msg, mlen, "line %d: %s", je.line, je.text);
        return -EINVAL;
    }
    if (!json_is_object(m->root)) {
        snprintf(msg, mlen, "expected a JSON object");
        goto fail;
    }
    v = json_object_get(m->root, "name");
    if (v && (!json_is_string(v) || strcmp(json_string_value(v), name) != 0)) {
        snprintf(msg, mlen, "name: expected \"%.64s\"", name);
        goto fail;
    }
    snprintf(m->name, sizeof(m->name), "%s", name);
    vers = json_object_get(m->root, "versions");
    if (!json_is_object(vers) || json_object_size(vers) == 0) {
        snprintf(msg, mlen, "versions: expected an object with at least one version");
        goto fail;
    }
    m->v = mc_xcalloc(json_object_size(vers), sizeof(*m->v));
    json_object_foreach(vers, key, ent)
    {
        struct predict_mver *mv = &m->v[m->n];
        json_t *s;
        if (parse_ver(key, &mv->version) != 0 || !json_is_object(ent)) {
            snprintf(msg, mlen, "versions: '%.32s' is not a version number with an object", key);
            goto fail;
        }
        v = json_object_get(ent, "sha256");
        if (!json_is_string(v) || !hex64(json_string_value(v))) {
            snprintf(msg, mlen, "versions.%s.sha256: expected 64 lowercase hex digits", key);
            goto fail;
        }
        memcpy(mv->sha256, json_string_value(v), 65);
        v = json_object_get(ent, "size");
        if (!json_is_integer(v) || json_integer_value(v) <= 0) {
            snprintf(msg, mlen, "versions.%s.size: expected a positive integer", key);
            goto fail;
        }
        mv->size = (uint64_t)json_integer_value(v);
        if ((s = json_object_get(ent, "sample")) && !json_is_null(s)) {
            mv->sample_in = json_object_get(s, "input");
            mv->sample_out = json_object_get(s, "output");
            if (!json_is_object(mv->sample_in) || !json_is_object(mv->sample_out)) {
                snprintf(msg, mlen,
                         "versions.%s.sample: expected {\"input\": {...}, \"output\": {...}}", key);
                goto fail;
            }
        }
        m->n++;
    }
    qsort(m->v, m->n, sizeof(*m->v), cmp_ver);
    if (parse_policy(m, json_object_get(m->root, "policy"), msg, mlen) != 0)
        goto fail;
    if (m->pol.mode == PREDICT_POL_PINNED && !predict__manifest_find(m, m->pol.version)) {
        snprintf(msg, mlen, "active: %" PRId64 " is not in versions", m->pol.version);
        goto fail;
    }
    return 0;
fail:
    predict__manifest_fini(m);
    return -EINVAL;
}

void predict__policy_resolve(const struct predict_manifest *m, const char *edge,
                             struct predict_target *t)
{
    int member = m->nedges == 0;

    t->canary = -1;
    t->percent = 0;
    switch (m->pol.mode) {
    case PREDICT_POL_LATEST: t->stable = m->v[m->n - 1].version; return;
    case PREDICT_POL_PINNED: t->stable = m->pol.version; return;
    case PREDICT_POL_CANARY: break;
    }
    for (size_t i = 0; !member && edge && i < m->nedges; i++)
        member = !strcmp(m->edges[i], edge);
    if (member && m->pol.percent == 100) {
        t->stable = m->pol.version;
        return;
    }
    t->stable = m->pol.base;
    if (member && m->pol.percent > 0) {
        t->canary = m->pol.version;
        t->percent = m->pol.percent;
    }
}

int predict__policy_canary(uint64_t seq, unsigned percent)
{
    return seq % 100 < percent;
}

void predict__policy_describe(const struct predict_manifest *m, struct buf *b)
{
    switch (m->pol.mode) {
    case PREDICT_POL_LATEST: buf_puts(b, "{\"mode\":\"latest\"}"); return;
    case PREDICT_POL_PINNED:
        buf_printf(b, "{\"mode\":\"pinned\",\"version\":%" PRId64 "}", m->pol.version);
        return;
    case PREDICT_POL_CANARY:
        buf_printf(b,
                   "{\"mode\":\"canary\",\"version\":%" PRId64 ",\"base\":%" PRId64
                   ",\"percent\":%u,\"edges\":[",
                   m->pol.version, m->pol.base, m->pol.percent);
        for (size_t i = 0; i < m->nedges; i++) {
            if (i)
                buf_puts(b, ",");
            buf_json_str(b, m->edges[i], strlen(m->edges[i]));
        }
        buf_puts(b, "]}");
        return;
    }
}

/* Flattens the numbers of v (nested arrays, numbers, booleans) into out; -1 on anything
 * else. */
static int flatten(const json_t *v, double **out, size_t *n, size_t *cap, int depth)
{
    if (depth > INFER_MAX_RANK + 1)
        return -1;
    if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) if (flatten(e, out, n, cap, depth + 1) != 0) return -1;
        return 0;
    }
    double d;
    if (json_is_number(v))
        d = json_number_value(v);
    else if (json_is_boolean(v))
        d = json_is_true(v);
    else if (json_is_null(v))
        d = NAN; /* how NaN and infinities are written */
    else
        return -1;
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *out = mc_xrealloc(*out, *cap * sizeof(**out));
    }
    (*out)[(*n)++] = d;
    return 0;
}

int predict__sample_compare(const json_t *expected, const json_t *got, double atol, double rtol,
                            char *msg, size_t mlen)
{
    const char *key;
    json_t *ev;
    double *a = NULL, *b = NULL;
    size_t na, nb, ca, cb;
    int rc = -EINVAL;

    if (!json_is_object(expected) || !json_is_object(got)) {
        snprintf(msg, mlen, "sample output: expected an object of outputs");
        return -EINVAL;
    }
    json_object_foreach((json_t *)expected, key, ev)
    {
        json_t *gv = json_object_get(got, key);
        if (!gv) {
            snprintf(msg, mlen, "sample output %.64s: the model has no such output", key);
            goto out;
        }
        na = nb = ca = cb = 0;
        if (flatten(ev, &a, &na, &ca, 0) != 0 || flatten(gv, &b, &nb, &cb, 0) != 0) {
            snprintf(msg, mlen, "sample output %.64s: expected numbers", key);
            goto out;
        }
        if (na != nb) {
            snprintf(msg, mlen, "sample output %.64s: %zu values, expected %zu", key, nb, na);
            goto out;
        }
        for (size_t i = 0; i < na; i++) {
            if (isnan(a[i]) && isnan(b[i]))
                continue;
            if (!(fabs(a[i] - b[i]) <= atol + rtol * fabs(a[i]))) {
                snprintf(msg, mlen, "sample output %.64s[%zu]: %.9g, expected %.9g", key, i, b[i],
                         a[i]);
                goto out;
            }
        }
    }
    rc = 0;
out:
    free(a);
    free(b);
    return rc;
}
