/* src/ctl/ctl_model.c: `mlcdn ctl model`, model roll-out from the operator's side.
 *
 *   publish NAME VERSION FILE   upload to the origin's model store, record the version in
 *                               models/NAME/manifest.json (SHA-256, size, the sample and
 *                               the output this engine gives for it), set the policy
 *                               (latest, or a canary with --canary/--percent), announce
 *   rollback NAME VERSION       pin a version listed in the manifest, announce
 *   promote NAME VERSION        end a canary: that version everywhere, announce
 *   status [NAME]               what every edge serves (version, sha256, state, canary)
 *
 * The manifest is the fleet's truth: each command rewrites it on the origin (one PUT, a
 * rename there) and then announces the model to the edges, which read the manifest again:
 * POST /admin/models/announce on each edge's admin listener (--edges, or the edges the
 * router lists with --router), or an entry of kind "model" on the control stream
 * (--redis). Over HTTP each edge answers with the sequence number of its roll-out job;
 * unless --wait 0, the command then polls every edge's GET /admin/models until its job
 * is done, and reports each edge serving what the policy gives it, or why not. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "core/buf.h"
#include "core/conf.h"
#include "core/mc.h"
#include "core/units.h"
#include "ctl/ctl_int.h"
#include "ctl/ctl_look.h"
#include "predict/predict.h"

#define FILE_MAX ((size_t)2 << 30)
#define POLL_MS 50

struct model_args {
    struct conf c;
    struct ctl_target t;
    const char *origin, *sample, *canary;
    long percent;
    uint64_t wait_ms;
};

#define MODEL_NOPTS (CTL_TARGET_NOPTS + 5)

static size_t model_opts(struct model_args *a, struct conf_opt *opts)
{
    size_t n = ctl__target_opts(&a->t, opts);
    const struct conf_opt o[] = {
        {"origin", CONF_STR, &a->origin,
         "the model store: mlcdn origin's URL (models/NAME/manifest.json)"},
        {"sample", CONF_STR, &a->sample,
         "publish: a /predict body whose output every edge must reproduce"},
        {"canary", CONF_STR, &a->canary,
         "publish: EDGE,...: only these edges (by --name) take the new version"},
        {"percent", CONF_INT, &a->percent,
         "publish: share of the canary edges' requests for the new version (default 100)"},
        {"wait", CONF_DURATION, &a->wait_ms,
         "how long to wait for every edge to serve the result (default 2m, 0: do not wait)"},
    };
    memcpy(opts + n, o, sizeof(o));
    return n + MC_ARRAY_SIZE(o);
}

#define SYNOPSIS                                                                                   \
    "publish NAME VERSION FILE --origin URL [--sample INPUT.json] [--canary EDGE,... "             \
    "[--percent P]] | rollback NAME VERSION --origin URL | promote NAME VERSION --origin URL | "   \
    "status [NAME]; (--router URL | --edges URL,... | --redis URL) [--token T] [--wait D]"

void ctl_model_usage(void)
{
    struct model_args a;
    struct conf_opt opts[MODEL_NOPTS];
    memset(&a, 0, sizeof(a));
    conf_usage("ctl model", SYNOPSIS, opts, model_opts(&a, opts));
}

/* ---- HTTP to the origin (one request at a time) ---- */

struct resp {
    long status;
    struct buf body;
    char err[CURL_ERROR_SIZE];
};

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
    struct buf *b = arg;
    return buf_append(b, p, sz * n) == 0 ? sz * n : 0;
}

/* One request; 0 when a response came (any status), -EIO with r->err otherwise. */
static int http(const char *method, const char *url, const char *token, const void *body,
                size_t len, const char *ctype, struct resp *r)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char auth[1024];
    CURLcode cc;

    memset(r, 0, sizeof(*r));
    buf_init(&r->body, 64u << 20);
    if (!c) {
        snprintf(r->err, sizeof(r->err), "cannot start a transfer");
        return -ENOMEM;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->err);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 600000L);
    if (token && *token) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        h = curl_slist_append(h, auth);
    }
    if (body) {
        char ct[128];
        snprintf(ct, sizeof(ct), "Content-Type: %s", ctype);
        h = curl_slist_append(h, ct);
        h = curl_slist_append(h, "Expect:");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    if (cc != CURLE_OK) {
        if (!r->err[0])
            snprintf(r->err, sizeof(r->err), "%s", curl_easy_strerror(cc));
        return -EIO;
    }
    return 0;
}

static void resp_fini(struct resp *r)
{
    buf_fini(&r->body);
}

static const char *resp_text(struct resp *r)
{
    return r->body.data ? r->body.data : "";
}

static const char *str_or(json_t *v, const char *def)
{
    return json_is_string(v) ? json_string_value(v) : def;
}

/* ---- the edges' admin URLs ---- */

/* The admin base URL of every edge: --edges as given, or what the router lists. With
 * --redis there is none (*n = 0): the stream's acknowledgements name the edges. 0, or
 * -errno with err. */
static int fleet_get(const struct model_args *a, char ***bases, size_t *n, char *err, size_t errlen)
{
    *bases = NULL;
    *n = 0;
    if (a->t.edges)
        return ctl__edges_split(a->t.edges, bases, n, err, errlen);
    if (!a->t.router)
        return 0;
    struct look *l = mc_xcalloc(1, sizeof(*l));
    int rc;
    snprintf(l->router, sizeof(l->router), "%s", a->t.router);
    if (a->t.token)
        snprintf(l->token, sizeof(l->token), "%s", a->t.token);
    l->timeout_ms = (long)a->t.timeout_ms;
    if ((rc = look_resolve(l, err, errlen)) == 0) {
        *bases = mc_xcalloc(l->n, sizeof(**bases));
        for (size_t i = 0; i < l->n; i++)
            (*bases)[i] = mc_xstrdup(l->e[i].admin);
        *n = l->n;
    }
    look_free(l);
    free(l);
    return rc;
}

/* ---- the manifest on the origin ---- */

static int manifest_get(const struct model_args *a, const char *name, json_t **out)
{
    char url[2048];
    struct resp r;
    json_error_t je;

    *out = NULL;
    snprintf(url, sizeof(url), "%s/models/%s/manifest.json", a->origin, name);
    if (http("GET", url, NULL, NULL, 0, NULL, &r) != 0) {
        fprintf(stderr, "mlcdn ctl model: --origin %s: %s\n", a->origin, r.err);
        resp_fini(&r);
        return -EIO;
    }
    if (r.status == 404) {
        resp_fini(&r);
        *out = json_pack("{s:s, s:{}}", "name", name, "versions");
        return -ENOENT;
    }
    *out = r.status == 200 ? json_loads(resp_text(&r), 0, &je) : NULL;
    if (!*out || !json_is_object(json_object_get(*out, "versions"))) {
        fprintf(stderr, "mlcdn ctl model: GET %s: HTTP %ld, not a manifest\n", url, r.status);
        json_decref(*out);
        *out = NULL;
        resp_fini(&r);
        return -EIO;
    }
    resp_fini(&r);
    return 0;
}

static int manifest_put(const struct model_args *a, const char *name, json_t *m)
{
    char url[2048], *text = json_dumps(m, JSON_INDENT(1) | JSON_SORT_KEYS);
    struct resp r;
    int rc = 0;

    if (!text)
        abort();
    snprintf(url, sizeof(url), "%s/models/%s/manifest.json", a->origin, name);
    if (http("PUT", url, a->t.token, text, strlen(text), "application/json", &r) != 0 ||
        (r.status != 200 && r.status != 201 && r.status != 204)) {
        fprintf(stderr, "mlcdn ctl model: PUT %s: %s%s\n", url, r.err[0] ? r.err : "",
                r.err[0] ? "" : resp_text(&r));
        rc = -EIO;
    }
    resp_fini(&r);
    free(text);
    return rc;
}

static int64_t max_version(json_t *m)
{
    const char *k;
    json_t *v;
    int64_t best = -1;
    json_object_foreach(json_object_get(m, "versions"), k, v)
    {
        int64_t x = strtoll(k, NULL, 10);
        if (x > best)
            best = x;
    }
    return best;
}

/* The version the edges outside a canary serve under m's policy (-1: none). */
static int64_t stable_version(json_t *m)
{
    json_t *p = json_object_get(m, "policy");
    const char *mode = json_string_value(json_object_get(p, "mode"));
    if (!mode || !strcmp(mode, "latest"))
        return max_version(m);
    if (!strcmp(mode, "pinned"))
        return json_integer_value(json_object_get(p, "version"));
    return json_integer_value(json_object_get(p, "base"));
}

/* ---- announce, then wait for every edge ---- */

struct edge_run {
    char *base;     /* admin URL (owned), or NULL for a stream-only edge */
    char name[128]; /* from its answers */
    uint64_t seq;   /* the roll-out job its announce answer named */
    int announced;  /* the announcement was taken */
    int done;       /* 1 serving the policy's versions, 2 failed, 3 gave up */
    char detail[640];
};

/* Announces over HTTP: POST /admin/models/announce to each edge in parallel. Returns the
 * number of edges that refused or did not answer (named on stderr). */
static size_t announce_http(const struct model_args *a, const char *body, struct edge_run *er,
                            size_t n)
{
    const char **bases = mc_xcalloc(n ? n : 1, sizeof(*bases));
    struct ctl_reply *r = mc_xcalloc(n ? n : 1, sizeof(*r));
    struct ctl_call c = {"POST",
                         "/admin/models/announce",
                         body,
                         strlen(body),
                         a->t.token,
                         (long)a->t.timeout_ms,
                         (int)a->t.retries};
    size_t bad = 0;

    for (size_t i = 0; i < n; i++)
        bases[i] = er[i].base;
    if (ctl_fanout(&c, bases, n, r) < 0) {
        fprintf(stderr, "mlcdn ctl model: cannot announce (%zu edges)\n", n);
        bad = n;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *j = r[i].status == 202 ? json_loads(r[i].body, 0, NULL) : NULL;
        json_t *seq = json_object_get(j, "seq");
        snprintf(er[i].name, sizeof(er[i].name), "%s", str_or(json_object_get(j, "edge"), ""));
        if (!er[i].name[0])
            snprintf(er[i].name, sizeof(er[i].name), "%.127s", er[i].base);
        if (json_is_integer(seq)) {
            er[i].seq = (uint64_t)json_integer_value(seq);
            er[i].announced = 1;
            printf("  %-24s announced in %.2f ms\n", er[i].name, r[i].ms);
        } else {
            er[i].done = 3;
            snprintf(er[i].detail, sizeof(er[i].detail), "announce: %s%.300s",
                     r[i].status ? "" : r[i].error, r[i].status ? r[i].body : "");
            fprintf(stderr, "mlcdn ctl model: edge %s did not take the announcement: %s\n",
                    er[i].base, er[i].detail);
            bad++;
        }
        json_decref(j);
    }
out:
    ctl_replies_fini(r, n);
    free(r);
    free(bases);
    return bad;
}

/* Announces on the control stream; the edges acknowledge there. Returns 0 when every
 * registered edge took it. */
static int announce_redis(const struct model_args *a, const char *id, const char *body)
{
    struct ctl_ack *acks = NULL;
    size_t n = 0, ok = 0;
    char err[512];

    if (ctl__stream_send(a->t.redis, a->t.stream, "model", body, id, a->t.timeout_ms, &acks, &n,
                         err, sizeof(err)) < 0) {
        fprintf(stderr, "mlcdn ctl model: %s\n", err);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        if (acks[i].acked && acks[i].status >= 200 && acks[i].status < 300) {
            ok++;
            printf("  %-24s acknowledged in %.2f ms\n", acks[i].edge, acks[i].ms);
        } else {
            fprintf(stderr, "mlcdn ctl model: edge %s did not take the announcement: %s%d %s\n",
                    acks[i].edge, acks[i].acked ? "status " : "no acknowledgement, ",
                    acks[i].status, acks[i].detail);
        }
    }
    if (n == 0)
        fprintf(stderr, "mlcdn ctl model: no edge is registered on the control stream\n");
    free(acks);
    printf("%zu of %zu edges took the announcement; `mlcdn ctl model status --edges ...` shows "
           "how each roll-out goes\n",
           ok, n);
    return ok == n && n > 0 ? 0 : 1;
}

/* The entry of model `name` in one edge's GET /admin/models answer j (borrowed). */
static json_t *model_entry(json_t *j, const char *name)
{
    size_t i;
    json_t *ent;
    json_array_foreach(json_object_get(j, "models"), i, ent)
    {
        if (!strcmp(str_or(json_object_get(ent, "name"), ""), name))
            return ent;
    }
    return NULL;
}

/* Polls the edges' GET /admin/models until each finished the job it announced, then
 * checks it serves what manifest `text` gives it. Returns the number of edges that do
 * not. */
static size_t wait_edges(const struct model_args *a, const char *name, const char *text,
                         struct edge_run *er, size_t n)
{
    uint64_t t0 = units_now_ms(), deadline = t0 + a->wait_ms;
    const char **bases = mc_xcalloc(n ? n : 1, sizeof(*bases));
    struct ctl_reply *r = mc_xcalloc(n ? n : 1, sizeof(*r));
    size_t left = 0, bad = 0;

    for (size_t i = 0; i < n; i++)
        left += !er[i].done;
    while (left > 0) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (!er[i].done)
                bases[k++] = er[i].base;
        struct ctl_call c = {"GET", "/admin/models", NULL, 0, a->t.token, (long)a->t.timeout_ms, 0};
        if (ctl_fanout(&c, bases, k, r) < 0)
            break;
        k = 0;
        for (size_t i = 0; i < n; i++) {
            if (er[i].done)
                continue;
            struct ctl_reply *ri = &r[k++];
            json_t *j = ri->status == 200 ? json_loads(ri->body, 0, NULL) : NULL;
            json_t *done = json_object_get(j, "rollouts_done"), *ent = model_entry(j, name);
            if (!json_is_integer(done) || (uint64_t)json_integer_value(done) < er[i].seq || !ent) {
                json_decref(j);
                continue;
            }
            int64_t st = -1, ca = -1;
            char err[256];
            if (predict_manifest_target(name, text, strlen(text), er[i].name, &st, &ca, err,
                                        sizeof(err)) != 0) {
                /* Checked before the PUT: cannot happen unless the engines disagree. */
                snprintf(er[i].detail, sizeof(er[i].detail), "manifest: %s", err);
                er[i].done = 2;
            } else {
                const char *state = str_or(json_object_get(ent, "state"), "");
                json_t *v = json_object_get(ent, "version");
                json_t *cv = json_object_get(json_object_get(ent, "canary"), "version");
                int64_t got = json_is_integer(v) ? json_integer_value(v) : -1;
                int64_t gotc = json_is_integer(cv) ? json_integer_value(cv) : -1;
                double secs = (double)(units_now_ms() - t0) / 1000.0;
                if (!strcmp(state, "active") && got == st && gotc == ca) {
                    er[i].done = 1;
                    if (ca >= 0)
                        snprintf(er[i].detail, sizeof(er[i].detail),
                                 "%s %" PRId64 " active, canary %" PRId64 ", after %.3f s", name,
                                 st, ca, secs);
                    else
                        snprintf(er[i].detail, sizeof(er[i].detail),
                                 "%s %" PRId64 " active after %.3f s", name, st, secs);
                } else {
                    er[i].done = 2;
                    snprintf(er[i].detail, sizeof(er[i].detail),
                             "%s still serves %" PRId64 " (%s%s%.500s)", name, got, state,
                             json_is_string(json_object_get(ent, "reason")) ? ": " : "",
                             str_or(json_object_get(ent, "reason"), ""));
                }
            }
            left--;
            json_decref(j);
        }
        ctl_replies_fini(r, k);
        if (left == 0 || units_now_ms() >= deadline)
            break;
        usleep(POLL_MS * 1000);
    }
    for (size_t i = 0; i < n; i++) {
        if (!er[i].done) {
            er[i].done = 3;
            snprintf(er[i].detail, sizeof(er[i].detail),
                     "%s: the roll-out did not end within --wait %.1f s", name,
                     (double)a->wait_ms / 1000.0);
        }
        printf("  %-24s %s\n", er[i].name, er[i].detail);
        if (er[i].done != 1) {
            fprintf(stderr, "mlcdn ctl model: edge %s: %s\n", er[i].name, er[i].detail);
            bad++;
        }
    }
    free(r);
    free(bases);
    return bad;
}

/* Tells every edge (bases[0..n), their admin URLs; none with --redis) to read model
 * `name`'s manifest again (the one just written: `text`) and, over HTTP and unless
 * --wait 0, waits for each to serve it. Exit status. */
static int roll(const struct model_args *a, const char *name, const char *text, char *const *bases,
                size_t n)
{
    char id[17];
    size_t bad;
    json_t *b;
    char *body;
    int rc = 1;

    ctl__op_id(id);
    b = json_pack("{s:s, s:s}", "name", name, "id", id);
    body = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    if (!body)
        abort();
    if (a->t.redis) {
        rc = announce_redis(a, id, body);
        free(body);
        return rc;
    }
    struct edge_run *er = mc_xcalloc(n, sizeof(*er));
    for (size_t i = 0; i < n; i++)
        er[i].base = bases[i];
    bad = announce_http(a, body, er, n);
    if (a->wait_ms)
        bad = wait_edges(a, name, text, er, n);
    printf("%zu of %zu edges %s\n", n - bad, n, a->wait_ms ? "serve it" : "took the announcement");
    rc = bad ? 1 : 0;
    free(er);
    free(body);
    return rc;
}

/* ---- subcommands ---- */

static int read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct buf b;
    char chunk[65536];
    size_t n;

    if (!f)
        return -errno;
    buf_init(&b, FILE_MAX);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (buf_append(&b, chunk, n) != 0) {
            fclose(f);
            buf_fini(&b);
            return -EFBIG;
        }
    fclose(f);
    *len = b.len;
    *out = b.data ? b.data : mc_xstrdup("");
    return 0;
}

static int parse_version(const char *s, int64_t *v)
{
    if (!s || !*s || strlen(s) > 15 || (s[0] == '0' && s[1]))
        return -1;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return -1;
    *v = strtoll(s, NULL, 10);
    return 0;
}

/* The manifest as every edge will read it: checked with the edges' own parser, so a
 * manifest they would refuse is never written. Owned text, or NULL (said on stderr). */
static char *manifest_text(json_t *m, const char *name)
{
    char *text = json_dumps(m, JSON_INDENT(1) | JSON_SORT_KEYS), err[256];
    int64_t st, ca;
    if (!text)
        abort();
    if (predict_manifest_target(name, text, strlen(text), NULL, &st, &ca, err, sizeof(err)) != 0) {
        fprintf(stderr, "mlcdn ctl model: the manifest would be refused: %s\n", err);
        free(text);
        return NULL;
    }
    return text;
}

static int publish(const struct model_args *a)
{
    const char *name = a->c.positional[1], *file = a->c.positional[3];
    int64_t version;
    char *data = NULL, *sample = NULL, *expected = NULL, *text = NULL, hex[65], url[2048], err[512],
         vkey[24];
    size_t len = 0, slen = 0;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    json_t *m = NULL, *ent, *old;
    struct resp r;
    char **bases = NULL;
    size_t nb = 0;
    int rc = 1, e;

    if (parse_version(a->c.positional[2], &version) != 0) {
        fprintf(stderr,
                "mlcdn ctl model publish: VERSION '%s' must be a decimal number (1-15 "
                "digits)\n",
                a->c.positional[2]);
        return 2;
    }
    if (a->percent < 0 || a->percent > 100) {
        fprintf(stderr, "mlcdn ctl model publish: --percent %ld: expected 0..100\n", a->percent);
        return 2;
    }
    /* The edges first: nothing is uploaded when they cannot be told. */
    if (fleet_get(a, &bases, &nb, err, sizeof(err)) != 0) {
        fprintf(stderr, "mlcdn ctl model publish: %s\n", err);
        goto out;
    }
    if ((e = read_file(file, &data, &len)) != 0) {
        fprintf(stderr, "mlcdn ctl model publish: %s: %s\n", file, strerror(-e));
        goto out;
    }
    if (len == 0) {
        fprintf(stderr, "mlcdn ctl model publish: %s: empty file\n", file);
        goto out;
    }
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    for (unsigned i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    if (a->sample) {
        if ((e = read_file(a->sample, &sample, &slen)) != 0) {
            fprintf(stderr, "mlcdn ctl model publish: --sample %s: %s\n", a->sample, strerror(-e));
            goto out;
        }
        /* The output every edge must reproduce, from this same engine. */
        if (predict_sample_file(file, sample, slen, 0, &expected, err, sizeof(err)) != 0) {
            fprintf(stderr, "mlcdn ctl model publish: --sample %s on %s: %s\n", a->sample, file,
                    err);
            goto out;
        }
    }
    e = manifest_get(a, name, &m);
    if (e != 0 && e != -ENOENT)
        goto out;
    snprintf(vkey, sizeof(vkey), "%" PRId64, version);
    old = json_object_get(json_object_get(m, "versions"), vkey);
    if (old && strcmp(str_or(json_object_get(old, "sha256"), ""), hex) != 0) {
        /* The caches hold a version's file for good: other bytes need another number. */
        fprintf(stderr,
                "mlcdn ctl model publish: %s %s is already published with sha256 %s; "
                "publish these bytes as a new VERSION\n",
                name, vkey, str_or(json_object_get(old, "sha256"), "?"));
        goto out;
    }
    int64_t base = stable_version(m);
    if ((a->canary || a->percent != 100) && (base < 0 || base == version)) {
        fprintf(stderr,
                "mlcdn ctl model publish: --canary/--percent: model %s has no other "
                "version for the rest of the requests\n",
                name);
        goto out;
    }
    snprintf(url, sizeof(url), "%s/models/%s/%" PRId64 "/model.onnx", a->origin, name, version);
    if (http("PUT", url, a->t.token, data, len, "application/octet-stream", &r) != 0 ||
        (r.status != 200 && r.status != 201 && r.status != 204)) {
        fprintf(stderr, "mlcdn ctl model publish: PUT %s: %s%s\n", url, r.err[0] ? r.err : "",
                r.err[0] ? "" : resp_text(&r));
        resp_fini(&r);
        goto out;
    }
    resp_fini(&r);
    char created[32];
    time_t now = time(NULL);
    struct tm tmv;
    strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tmv));
    ent = json_pack("{s:s, s:I, s:s}", "sha256", hex, "size", (json_int_t)len, "created", created);
    if (sample) {
        json_t *in = json_loads(sample, 0, NULL), *outp = json_loads(expected, 0, NULL);
        json_object_set_new(ent, "sample", json_pack("{s:o, s:o}", "input", in, "output", outp));
    }
    json_object_set_new(json_object_get(m, "versions"), vkey, ent);
    json_object_set_new(m, "name", json_string(name));
    if (a->canary || a->percent != 100) {
        json_t *edges = json_array();
        for (const char *p = a->canary; p && *p;) {
            const char *comma = strchr(p, ',');
            size_t n = comma ? (size_t)(comma - p) : strlen(p);
            if (n)
                json_array_append_new(edges, json_stringn(p, n));
            p = comma ? comma + 1 : NULL;
        }
        json_object_set_new(m, "policy",
                            json_pack("{s:s, s:I, s:I, s:I, s:o}", "mode", "canary", "version",
                                      (json_int_t)version, "base", (json_int_t)base, "percent",
                                      (json_int_t)a->percent, "edges", edges));
        json_object_set_new(m, "active", json_integer(base));
    } else if (version >= max_version(m)) {
        json_object_set_new(m, "policy", json_pack("{s:s}", "mode", "latest"));
        json_object_set_new(m, "active", json_integer(version));
    } else {
        /* An older number published after a newer one: served as asked, pinned. */
        json_object_set_new(m, "policy",
                            json_pack("{s:s, s:I}", "mode", "pinned", "version",
                                      (json_int_t)version));
        json_object_set_new(m, "active", json_integer(version));
    }
    if (!(text = manifest_text(m, name)) || manifest_put(a, name, m) != 0)
        goto out;
    printf("published %s %" PRId64 ": %zu bytes, sha256 %s%s\n", name, version, len, hex,
           sample ? ", sample recorded" : "");
    fflush(stdout);
    rc = roll(a, name, text, bases, nb);
out:
    ctl__strv_free(bases, nb);
    json_decref(m);
    free(text);
    free(data);
    free(sample);
    free(expected);
    return rc;
}

/* rollback and promote: a version the manifest lists, on every edge. */
static int switch_to(const struct model_args *a, const char *verb)
{
    const char *name = a->c.positional[1];
    int64_t version;
    json_t *m = NULL;
    char vkey[24], *text = NULL, **bases = NULL, err[512];
    size_t nb = 0;
    int rc = 1;

    if (parse_version(a->c.positional[2], &version) != 0) {
        fprintf(stderr, "mlcdn ctl model %s: VERSION '%s' must be a decimal number\n", verb,
                a->c.positional[2]);
        return 2;
    }
    if (fleet_get(a, &bases, &nb, err, sizeof(err)) != 0) {
        fprintf(stderr, "mlcdn ctl model %s: %s\n", verb, err);
        goto out;
    }
    if (manifest_get(a, name, &m) != 0) {
        fprintf(stderr, "mlcdn ctl model %s: model %s has no manifest on %s\n", verb, name,
                a->origin);
        goto out;
    }
    snprintf(vkey, sizeof(vkey), "%" PRId64, version);
    if (!json_object_get(json_object_get(m, "versions"), vkey)) {
        fprintf(stderr, "mlcdn ctl model %s: model %s has no version %s in its manifest\n", verb,
                name, vkey);
        goto out;
    }
    /* A rollback pins (a later publish moves on); a promote of the newest follows latest. */
    if (!strcmp(verb, "rollback") || version < max_version(m))
        json_object_set_new(m, "policy",
                            json_pack("{s:s, s:I}", "mode", "pinned", "version",
                                      (json_int_t)version));
    else
        json_object_set_new(m, "policy", json_pack("{s:s}", "mode", "latest"));
    json_object_set_new(m, "active", json_integer(version));
    if (!(text = manifest_text(m, name)) || manifest_put(a, name, m) != 0)
        goto out;
    printf("%s %s to %s\n", !strcmp(verb, "rollback") ? "rolled back" : "promoted", name, vkey);
    fflush(stdout);
    rc = roll(a, name, text, bases, nb);
out:
    ctl__strv_free(bases, nb);
    free(text);
    json_decref(m);
    return rc;
}

static int status(const struct model_args *a)
{
    const char *only = a->c.npositional > 1 ? a->c.positional[1] : NULL;
    char **bases = NULL, err[512];
    size_t n = 0, bad = 0;

    if (a->t.redis) {
        fprintf(stderr, "mlcdn ctl model status: reads each edge's admin API: give --router URL "
                        "or --edges URL,...\n");
        return 2;
    }
    if (fleet_get(a, &bases, &n, err, sizeof(err)) != 0) {
        fprintf(stderr, "mlcdn ctl model status: %s\n", err);
        return 1;
    }
    struct ctl_reply *r = mc_xcalloc(n, sizeof(*r));
    struct ctl_call c =
        {"GET", "/admin/models", NULL, 0, a->t.token, (long)a->t.timeout_ms, (int)a->t.retries};
    if (ctl_fanout(&c, (const char *const *)bases, n, r) < 0) {
        fprintf(stderr, "mlcdn ctl model status: cannot reach the edges\n");
        bad = n;
        goto out;
    }
    printf("%-20s %-16s %-8s %-14s %-12s %s\n", "EDGE", "MODEL", "VERSION", "SHA256", "STATE",
           "DETAIL");
    for (size_t i = 0; i < n; i++) {
        json_t *root = r[i].status == 200 ? json_loads(r[i].body, 0, NULL) : NULL, *ent;
        size_t k;
        if (!root) {
            printf("%-20s unreachable: %s\n", bases[i],
                   r[i].status ? "GET /admin/models did not answer JSON" : r[i].error);
            bad++;
            continue;
        }
        const char *edge = str_or(json_object_get(root, "edge"), "");
        json_array_foreach(json_object_get(root, "models"), k, ent)
        {
            const char *name = str_or(json_object_get(ent, "name"), "");
            if (only && strcmp(name, only))
                continue;
            const char *sha = str_or(json_object_get(ent, "sha256"), "-");
            const char *state = str_or(json_object_get(ent, "state"), "-");
            json_t *ver = json_object_get(ent, "version"), *ca = json_object_get(ent, "canary");
            char vs[24] = "-", detail[768] = "";
            if (json_is_integer(ver))
                snprintf(vs, sizeof(vs), "%" JSON_INTEGER_FORMAT, json_integer_value(ver));
            if (json_is_object(ca))
                snprintf(detail, sizeof(detail),
                         "canary %" JSON_INTEGER_FORMAT " at %" JSON_INTEGER_FORMAT "%%",
                         json_integer_value(json_object_get(ca, "version")),
                         json_integer_value(json_object_get(ca, "percent")));
            if (!strcmp(state, "failed")) {
                snprintf(detail, sizeof(detail), "version %" JSON_INTEGER_FORMAT ": %.600s",
                         json_integer_value(json_object_get(ent, "target")),
                         str_or(json_object_get(ent, "reason"), ""));
                bad++;
            }
            printf("%-20s %-16s %-8s %-14.12s %-12s %s\n", *edge ? edge : bases[i], name, vs, sha,
                   state, detail);
        }
        json_decref(root);
    }
out:
    ctl_replies_fini(r, n);
    free(r);
    ctl__strv_free(bases, n);
    return bad ? 1 : 0;
}

int ctl_model_main(int argc, char **argv)
{
    struct model_args a;
    struct conf_opt opts[MODEL_NOPTS];
    char err[512];
    int rc = 2;

    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            ctl_model_usage();
            return 0;
        }
    memset(&a, 0, sizeof(a));
    ctl__target_init(&a.t);
    a.percent = 100;
    a.wait_ms = 120000;
    size_t n = model_opts(&a, opts);
    if (conf_parse(&a.c, opts, n, argc, argv, 1, err, sizeof(err)) < 0 ||
        ctl__target_check(&a.t, err, sizeof(err)) < 0) {
        fprintf(stderr, "mlcdn ctl model: %s\n", err);
        goto out;
    }
    const char *verb = a.c.npositional ? a.c.positional[0] : "";
    size_t want = !strcmp(verb, "publish")                              ? 4
                : !strcmp(verb, "rollback") || !strcmp(verb, "promote") ? 3
                : !strcmp(verb, "status")                               ? 0
                                                                        : 99;
    if (want == 99) {
        fprintf(stderr, "mlcdn ctl model: expected publish, rollback, promote or status%s%s\n",
                *verb ? ", not " : "", verb);
        goto out;
    }
    if (want ? a.c.npositional != want : a.c.npositional > 2) {
        fprintf(stderr, "mlcdn ctl model %s: expected %s\n", verb,
                want == 4   ? "NAME VERSION FILE"
                : want == 3 ? "NAME VERSION"
                            : "at most one NAME");
        goto out;
    }
    if (want) {
        if (!a.origin || (strncmp(a.origin, "http://", 7) && strncmp(a.origin, "https://", 8))) {
            fprintf(stderr,
                    "mlcdn ctl model %s: --origin URL (the model store, http://...) is "
                    "required\n",
                    verb);
            goto out;
        }
        /* models/NAME/... on the origin: the name is a path segment. */
        const char *nm = a.c.positional[1];
        size_t nl = strlen(nm);
        int ok = nl > 0 && nl < 64 && nm[0] != '.';
        for (size_t i = 0; ok && i < nl; i++)
            ok = (nm[i] >= 'a' && nm[i] <= 'z') || (nm[i] >= 'A' && nm[i] <= 'Z') ||
                 (nm[i] >= '0' && nm[i] <= '9') || nm[i] == '_' || nm[i] == '-' || nm[i] == '.';
        if (!ok) {
            fprintf(stderr,
                    "mlcdn ctl model %s: NAME '%s': 1-63 letters, digits, '_', '-' or "
                    "'.' (not first)\n",
                    verb, nm);
            goto out;
        }
        size_t ol = strlen(a.origin);
        while (ol > 0 && a.origin[ol - 1] == '/')
            ol--;
        a.origin = mc_xstrndup(a.origin, ol);
    }
    if (!strcmp(verb, "publish"))
        rc = publish(&a);
    else if (want == 3)
        rc = switch_to(&a, verb);
    else
        rc = status(&a);
    if (want)
        free((char *)a.origin);
out:
    conf_fini(&a.c);
    return rc;
}
