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
 * is done, and reports each edge serving what the policy gives it, or why not.
 *
 * The store may also be an S3-compatible bucket (--origin https://HOST/BUCKET, path
 * style) with --store-sigv4 aws:amz:REGION:s3: every request to it is then signed with AWS
 * Signature Version 4 by libcurl (credentials from AWS_ACCESS_KEY_ID and
 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN if set), with the body's SHA-256 in
 * x-amz-content-sha256 as S3 requires; the admin token is not sent there. */
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
#include "predict/predict.h"

#define FILE_MAX ((size_t)2 << 30)
#define POLL_MS 50

struct model_args {
    struct conf c;
    struct ctl_target t;
    const char *origin, *sample, *canary, *sigv4;
    long percent;
    uint64_t wait_ms;
    char *aws_user; /* owned: "KEY:SECRET" with --store-sigv4, else NULL */
};

#define MODEL_NOPTS (CTL_TARGET_NOPTS + 6)

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
        {"store-sigv4", CONF_STR, &a->sigv4,
         "PROVIDER:...:REGION:SERVICE, e.g. aws:amz:us-east-1:s3: --origin is an S3-compatible "
         "bucket; sign with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"},
    };
    memcpy(opts + n, o, sizeof(o));
    return n + MC_ARRAY_SIZE(o);
}

#define SYNOPSIS                                                                                   \
    "publish NAME VERSION FILE --origin URL [--sample INPUT.json] [--canary EDGE,... "             \
    "[--percent P]] | rollback NAME VERSION --origin URL | promote NAME VERSION --origin URL | "   \
    "status [NAME]; (--router URL | --edges URL,... | --redis URL) [--token T] [--wait D] "        \
    "[--store-sigv4 aws:amz:REGION:s3]"

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

/* Lowercase hex SHA-256 of len bytes at p into hex[65]. */
static void sha256_hex(const void *p, size_t len, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (EVP_Digest(p, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        abort();
    for (unsigned i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/* One request to the model store; 0 when a response came (any status), -EIO with r->err
 * otherwise. Writes carry the admin token, or with --store-sigv4 every request is signed
 * (S3 wants the payload's digest in x-amz-content-sha256, which the signature covers). */
static int http(const struct model_args *a, const char *method, const char *url, int write,
                const void *body, size_t len, const char *ctype, struct resp *r)
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
    if (a->sigv4) {
        char digest[65];
        const char *session = getenv("AWS_SESSION_TOKEN");
        sha256_hex(body ? body : "", body ? len : 0, digest);
        snprintf(auth, sizeof(auth), "x-amz-content-sha256: %s", digest);
        h = curl_slist_append(h, auth);
        if (session && *session) {
            /* STS session tokens run to a few kilobytes. */
            size_t n = strlen(session) + sizeof("x-amz-security-token: ");
            char *line = mc_xmalloc(n);
            snprintf(line, n, "x-amz-security-token: %s", session);
            h = curl_slist_append(h, line);
            free(line);
        }
        curl_easy_setopt(c, CURLOPT_AWS_SIGV4, a->sigv4);
        curl_easy_setopt(c, CURLOPT_USERPWD, a->aws_user);
    } else if (write && a->t.token && *a->t.token) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", a->t.token);
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

/* ---- the edges, straight or through the router ---- */

/* One edge's answer to a request sent to every edge. */
struct edge_ans {
    char url[512];  /* its admin base URL */
    char name[512]; /* its name (the router's, or its answer's "edge"), else its URL */
    int status;     /* 0: no answer (error says why) */
    double ms;
    json_t *answer; /* the JSON it answered (owned), or NULL */
    char error[300];
};

static void ans_free(struct edge_ans *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        json_decref(v[i].answer);
    free(v);
}

/* Sends one request to every edge: to each of --edges in parallel (ctl_fanout), or once to
 * the router's admin listener (--router), which fans out and answers per edge. *out (owned:
 * ans_free) gets one entry per edge. 0, or -errno with err saying why nothing came back
 * (the router unreachable or refusing, a bad --edges). */
static int fleet_call(const struct model_args *a, const char *method, const char *path,
                      const char *body, struct edge_ans **out, size_t *n, char *err, size_t errlen)
{
    struct ctl_call c =
        {method,           path, body, body ? strlen(body) : 0, a->t.token, (long)a->t.timeout_ms,
         (int)a->t.retries};
    char **bases = NULL;
    size_t nb = 0;
    struct ctl_reply *r;
    int rc = 0;

    *out = NULL;
    *n = 0;
    if (a->t.router) {
        const char *base = a->t.router;
        struct ctl_reply one;
        /* The router waits for its slowest edge: give it that long and a second. */
        c.timeout_ms += 1000;
        if (ctl_fanout(&c, &base, 1, &one) < 0) {
            snprintf(err, errlen, "--router %s: cannot send", base);
            return -EIO;
        }
        json_t *j = one.status ? json_loads(one.body, 0, NULL) : NULL;
        json_t *arr = json_object_get(j, "edges");
        if (!json_is_array(arr)) {
            if (one.status)
                snprintf(err, errlen, "--router %s: %s: HTTP %d %.300s", base, path, one.status,
                         one.body);
            else
                snprintf(err, errlen, "--router %s: %s", base, one.error);
            json_decref(j);
            ctl_replies_fini(&one, 1);
            return -EIO;
        }
        *n = json_array_size(arr);
        *out = mc_xcalloc(*n ? *n : 1, sizeof(**out));
        for (size_t i = 0; i < *n; i++) {
            json_t *e = json_array_get(arr, i);
            struct edge_ans *o = &(*out)[i];
            snprintf(o->url, sizeof(o->url), "%s", str_or(json_object_get(e, "url"), "?"));
            snprintf(o->name, sizeof(o->name), "%s", str_or(json_object_get(e, "edge"), o->url));
            o->status = (int)json_integer_value(json_object_get(e, "status"));
            o->ms = json_number_value(json_object_get(e, "ms"));
            json_t *ans = json_object_get(e, "answer");
            o->answer = json_is_object(ans) ? json_incref(ans) : NULL;
            snprintf(o->error, sizeof(o->error), "%s",
                     str_or(json_object_get(e, "error"),
                            json_is_string(ans) ? json_string_value(ans) : ""));
        }
        json_decref(j);
        ctl_replies_fini(&one, 1);
        return 0;
    }
    if ((rc = ctl__edges_split(a->t.edges, &bases, &nb, err, errlen)) < 0)
        return rc;
    r = mc_xcalloc(nb, sizeof(*r));
    if ((rc = ctl_fanout(&c, (const char *const *)bases, nb, r)) < 0) {
        snprintf(err, errlen, "cannot reach the edges: %s", strerror(-rc));
        goto out;
    }
    *n = nb;
    *out = mc_xcalloc(nb, sizeof(**out));
    for (size_t i = 0; i < nb; i++) {
        struct edge_ans *o = &(*out)[i];
        snprintf(o->url, sizeof(o->url), "%s", bases[i]);
        o->status = r[i].status;
        o->ms = r[i].ms;
        o->answer = r[i].status ? json_loads(r[i].body, 0, NULL) : NULL;
        snprintf(o->name, sizeof(o->name), "%s",
                 str_or(json_object_get(o->answer, "edge"), bases[i]));
        if (!o->name[0])
            snprintf(o->name, sizeof(o->name), "%s", bases[i]);
        snprintf(o->error, sizeof(o->error), "%.290s",
                 r[i].status
                     ? (o->answer ? str_or(json_object_get(o->answer, "error"), "") : r[i].body)
                     : r[i].error);
    }
out:
    ctl_replies_fini(r, nb);
    free(r);
    ctl__strv_free(bases, nb);
    return rc;
}

/* An edge silent on the stream longer than this is reported, not judged: it refreshes its
 * entry at least once a second while connected. */
#define STREAM_STALE_MS 5000

/* Every edge's GET /admin/models answer: from the edges or the router (fleet_call), or,
 * with --redis, from what each edge of the stream wrote in KEY:edges (url = its name). */
static int models_call(const struct model_args *a, struct edge_ans **out, size_t *n, char *err,
                       size_t errlen)
{
    struct ctl_stream_edge *se;
    size_t ns;
    int rc;

    if (!a->t.redis)
        return fleet_call(a, "GET", "/admin/models", NULL, out, n, err, errlen);
    if ((rc = ctl__stream_edges(a->t.redis, a->t.stream, &se, &ns, err, errlen)) < 0)
        return rc;
    *n = ns;
    *out = mc_xcalloc(ns ? ns : 1, sizeof(**out));
    int64_t now = ctl__now_ms();
    for (size_t i = 0; i < ns; i++) {
        struct edge_ans *o = &(*out)[i];
        json_t *v = json_loads(se[i].value, 0, NULL), *models = json_object_get(v, "models");
        json_t *t = json_object_get(v, "t");
        int64_t age = json_is_integer(t) ? now - (int64_t)json_integer_value(t) : -1;
        snprintf(o->url, sizeof(o->url), "%s", se[i].name);
        snprintf(o->name, sizeof(o->name), "%s", se[i].name);
        if (age < 0 || age > STREAM_STALE_MS)
            snprintf(o->error, sizeof(o->error), "not heard from on the stream for %.1f s",
                     age < 0 ? 0.0 : (double)age / 1000.0);
        else if (!json_is_object(models))
            snprintf(o->error, sizeof(o->error),
                     "serves no predictions (no --models/--model-store)");
        else {
            o->status = 200;
            o->answer = json_incref(models);
        }
        json_decref(v);
    }
    ctl__stream_edges_free(se, ns);
    return 0;
}

/* ---- the manifest on the origin ---- */

static int manifest_get(const struct model_args *a, const char *name, json_t **out)
{
    char url[2048];
    struct resp r;
    json_error_t je;

    *out = NULL;
    snprintf(url, sizeof(url), "%s/models/%s/manifest.json", a->origin, name);
    if (http(a, "GET", url, 0, NULL, 0, NULL, &r) != 0) {
        fprintf(stderr, "mlcdn ctl model: --origin %s: %s\n", a->origin, r.err);
        resp_fini(&r);
        return -EIO;
    }
    if (r.status == 404) {
        resp_fini(&r);
        *out = json_pack("{s:s, s:{}}", "name", name, "versions");
        return -ENOENT;
    }
    if (r.status != 200) {
        /* The store's own words: an S3 error names its code (SignatureDoesNotMatch ...). */
        fprintf(stderr, "mlcdn ctl model: GET %s: HTTP %ld: %.300s\n", url, r.status,
                resp_text(&r));
        resp_fini(&r);
        return -EIO;
    }
    *out = json_loads(resp_text(&r), 0, &je);
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

/* PUTs a JSON document to the store. 0, or -EIO (said on stderr with the store's words). */
static int put_json(const struct model_args *a, const char *url, const char *text)
{
    struct resp r;
    int rc = 0;

    if (http(a, "PUT", url, 1, text, strlen(text), "application/json", &r) != 0 ||
        (r.status != 200 && r.status != 201 && r.status != 204)) {
        fprintf(stderr, "mlcdn ctl model: PUT %s: %s%s\n", url, r.err[0] ? r.err : "",
                r.err[0] ? "" : resp_text(&r));
        rc = -EIO;
    }
    resp_fini(&r);
    return rc;
}

static int manifest_put(const struct model_args *a, const char *name, json_t *m)
{
    char url[2048], *text = json_dumps(m, JSON_INDENT(1) | JSON_SORT_KEYS);
    int rc;

    if (!text)
        abort();
    snprintf(url, sizeof(url), "%s/models/%s/manifest.json", a->origin, name);
    rc = put_json(a, url, text);
    free(text);
    return rc;
}

/* Adds `name` to the store's models/index.json (what an edge reads at start), unless it is
 * there. 0, or -EIO (said on stderr). */
static int index_add(const struct model_args *a, const char *name)
{
    char url[2048], *text;
    struct resp r;
    json_t *idx = NULL, *names, *v;
    size_t i;
    int rc;

    snprintf(url, sizeof(url), "%s/models/index.json", a->origin);
    if (http(a, "GET", url, 0, NULL, 0, NULL, &r) != 0 || (r.status != 200 && r.status != 404)) {
        fprintf(stderr, "mlcdn ctl model: GET %s: %s%ld\n", url, r.err[0] ? r.err : "HTTP ",
                r.err[0] ? 0L : r.status);
        resp_fini(&r);
        return -EIO;
    }
    idx = r.status == 200 ? json_loads(resp_text(&r), 0, NULL) : json_pack("{s:[]}", "models");
    resp_fini(&r);
    names = json_object_get(idx, "models");
    if (!json_is_array(names)) {
        fprintf(stderr, "mlcdn ctl model: %s: not a store index ({\"models\": [...]})\n", url);
        json_decref(idx);
        return -EIO;
    }
    json_array_foreach(names, i, v) if (json_is_string(v) && !strcmp(json_string_value(v), name))
    {
        json_decref(idx);
        return 0;
    }
    json_array_append_new(names, json_string(name));
    text = json_dumps(idx, JSON_INDENT(1));
    json_decref(idx);
    if (!text)
        abort();
    rc = put_json(a, url, text);
    free(text);
    return rc;
}

/* --store-sigv4: libcurl's form (provider1[:provider2[:region[:service]]]) and the
 * credentials from the environment, as the AWS tools read them. 0, or -EINVAL (said). */
static int store_sigv4_check(struct model_args *a)
{
    const char *id = getenv("AWS_ACCESS_KEY_ID"), *key = getenv("AWS_SECRET_ACCESS_KEY");
    size_t parts = 1, run = 0;

    for (const char *q = a->sigv4;; q++) {
        if (*q == ':' || *q == '\0') {
            if (run == 0 || parts > 4)
                break;
            if (*q == '\0') {
                run = SIZE_MAX;
                break;
            }
            parts++;
            run = 0;
        } else if ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
                   (*q >= '0' && *q <= '9') || *q == '-' || *q == '_' || *q == '.') {
            run++;
        } else {
            break;
        }
    }
    if (run != SIZE_MAX) {
        fprintf(stderr,
                "mlcdn ctl model: --store-sigv4 '%s': expected PROVIDER[:PROVIDER2[:REGION"
                "[:SERVICE]]] (letters, digits, '-', '_', '.'), e.g. aws:amz:us-east-1:s3\n",
                a->sigv4);
        return -EINVAL;
    }
    if (!id || !*id || !key || !*key || strchr(id, ':')) {
        fprintf(stderr, "mlcdn ctl model: --store-sigv4: set AWS_ACCESS_KEY_ID and "
                        "AWS_SECRET_ACCESS_KEY (the key id without ':')\n");
        return -EINVAL;
    }
    size_t n = strlen(id) + strlen(key) + 2;
    a->aws_user = mc_xmalloc(n);
    snprintf(a->aws_user, n, "%s:%s", id, key);
    return 0;
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
    char url[512], name[512];
    uint64_t seq; /* the roll-out job its announce answer named */
    int done;     /* 1 serving the policy's versions, 2 not, 3 no answer in time */
    char detail[640];
};

/* Announces on the control stream; the edges acknowledge there. Exit status. */
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

/* Judges edge er from its GET /admin/models answer j once the job it announced is done:
 * it must serve what manifest `text` gives it. 0 while the job is not done. */
static int judge(struct edge_run *er, json_t *j, const char *name, const char *text, double secs)
{
    json_t *done = json_object_get(j, "rollouts_done"), *ent = model_entry(j, name);
    int64_t st = -1, ca = -1;
    char err[256];

    if (!json_is_integer(done) || (uint64_t)json_integer_value(done) < er->seq || !ent)
        return 0;
    /* Canary membership is by the edge's own name (--name), which the router may not use. */
    const char *self = str_or(json_object_get(j, "edge"), er->name);
    if (predict_manifest_target(name, text, strlen(text), self, &st, &ca, err, sizeof(err)) != 0) {
        /* Checked before the PUT: only if this ctl and the edge disagree. */
        snprintf(er->detail, sizeof(er->detail), "manifest: %s", err);
        return 2;
    }
    const char *state = str_or(json_object_get(ent, "state"), "");
    json_t *v = json_object_get(ent, "version");
    json_t *cv = json_object_get(json_object_get(ent, "canary"), "version");
    int64_t got = json_is_integer(v) ? json_integer_value(v) : -1;
    int64_t gotc = json_is_integer(cv) ? json_integer_value(cv) : -1;
    if (!strcmp(state, "active") && got == st && gotc == ca) {
        if (ca >= 0)
            snprintf(er->detail, sizeof(er->detail),
                     "%s %" PRId64 " active, canary %" PRId64 ", after %.3f s", name, st, ca, secs);
        else
            snprintf(er->detail, sizeof(er->detail), "%s %" PRId64 " active after %.3f s", name, st,
                     secs);
        return 1;
    }
    snprintf(er->detail, sizeof(er->detail), "%s still serves %" PRId64 " (%s%s%.500s)", name, got,
             state, json_is_string(json_object_get(ent, "reason")) ? ": " : "",
             str_or(json_object_get(ent, "reason"), ""));
    return 2;
}

/* Polls every edge's GET /admin/models until each finished the job it announced; prints
 * one line per edge. Returns the number of edges that do not serve what `text` gives
 * them. */
static size_t wait_edges(const struct model_args *a, const char *name, const char *text,
                         struct edge_run *er, size_t n)
{
    uint64_t t0 = units_now_ms(), deadline = t0 + a->wait_ms;
    size_t left = 0, bad = 0;

    for (size_t i = 0; i < n; i++)
        left += !er[i].done;
    while (left > 0) {
        struct edge_ans *ans;
        size_t na;
        char err[512];
        if (models_call(a, &ans, &na, err, sizeof(err)) == 0) {
            double secs = (double)(units_now_ms() - t0) / 1000.0;
            for (size_t k = 0; k < na; k++)
                for (size_t i = 0; i < n; i++)
                    if (!er[i].done && !strcmp(er[i].url, ans[k].url) && ans[k].status == 200 &&
                        (er[i].done = judge(&er[i], ans[k].answer, name, text, secs)) != 0)
                        left--;
            ans_free(ans, na);
        }
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
    return bad;
}

/* Adds the announcement to the control stream and collects each registered edge's
 * acknowledgement as an edge_ans (url = the edge's name; answer = its handler's answer,
 * {"seq": job} once queued). 0, or 1 when nothing could be sent (said). */
static int announce_redis(const struct model_args *a, const char *id, const char *body,
                          struct edge_ans **out, size_t *n)
{
    struct ctl_ack *acks = NULL;
    size_t na = 0;
    char err[512];

    if (ctl__stream_send(a->t.redis, a->t.stream, "model", body, id, a->t.timeout_ms, &acks, &na,
                         err, sizeof(err)) < 0) {
        fprintf(stderr, "mlcdn ctl model: %s\n", err);
        return 1;
    }
    *n = na;
    *out = mc_xcalloc(na ? na : 1, sizeof(**out));
    for (size_t i = 0; i < na; i++) {
        struct edge_ans *o = &(*out)[i];
        snprintf(o->url, sizeof(o->url), "%s", acks[i].edge);
        snprintf(o->name, sizeof(o->name), "%s", acks[i].edge);
        o->ms = acks[i].ms;
        if (acks[i].acked) {
            o->status = acks[i].status;
            o->answer = json_loads(acks[i].detail, 0, NULL);
            snprintf(o->error, sizeof(o->error), "%.290s", acks[i].detail);
        } else {
            snprintf(o->error, sizeof(o->error), "no acknowledgement within %.1f s",
                     (double)a->t.timeout_ms / 1000.0);
        }
    }
    free(acks);
    return 0;
}

/* Tells every edge to read model `name`'s manifest again (the one just written: `text`)
 * and, over HTTP and unless --wait 0, waits for each to serve it. Exit status. */
static int roll(const struct model_args *a, const char *name, const char *text)
{
    char id[17], err[512];
    struct edge_ans *ans = NULL;
    size_t n = 0, bad = 0;
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
        if (announce_redis(a, id, body, &ans, &n) != 0) {
            free(body);
            return 1;
        }
    } else if (fleet_call(a, "POST", "/admin/models/announce", body, &ans, &n, err, sizeof(err)) !=
               0) {
        fprintf(stderr, "mlcdn ctl model: announce: %s\n", err);
        free(body);
        return 1;
    }
    struct edge_run *er = mc_xcalloc(n ? n : 1, sizeof(*er));
    for (size_t i = 0; i < n; i++) {
        json_t *seq = json_object_get(ans[i].answer, "seq");
        snprintf(er[i].url, sizeof(er[i].url), "%s", ans[i].url);
        snprintf(er[i].name, sizeof(er[i].name), "%s", ans[i].name);
        /* 202 over HTTP; the stream acknowledges a queued job as 200. */
        if (ans[i].status / 100 == 2 && json_is_integer(seq)) {
            er[i].seq = (uint64_t)json_integer_value(seq);
            printf("  %-24s %s in %.2f ms\n", er[i].name, a->t.redis ? "acknowledged" : "announced",
                   ans[i].ms);
        } else {
            er[i].done = 3;
            snprintf(er[i].detail, sizeof(er[i].detail), "announce: %s%d %.300s",
                     ans[i].status ? "HTTP " : "no answer", ans[i].status, ans[i].error);
            fprintf(stderr, "mlcdn ctl model: edge %s did not take the announcement: %s\n",
                    er[i].name, er[i].detail);
            bad++;
        }
    }
    if (a->wait_ms)
        bad = wait_edges(a, name, text, er, n);
    if (n == 0)
        fprintf(stderr, "mlcdn ctl model: no edge to announce to (%s)\n",
                a->t.redis ? "none is registered on the control stream" : "none known");
    printf("%zu of %zu edges %s\n", n - bad, n, a->wait_ms ? "serve it" : "took the announcement");
    rc = bad || n == 0 ? 1 : 0;
    ans_free(ans, n);
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

/* Over HTTP, the edges (or the router) must answer before anything is written on the
 * origin: a manifest no edge hears of would wait there for the next announcement. */
static int reachable(const struct model_args *a, const char *verb)
{
    struct edge_ans *ans;
    size_t n;
    char err[512];

    if (models_call(a, &ans, &n, err, sizeof(err)) != 0) {
        fprintf(stderr, "mlcdn ctl model %s: %s\n", verb, err);
        return -EIO;
    }
    ans_free(ans, n);
    return 0;
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
    int rc = 1, e;

    if (parse_version(a->c.positional[2], &version) != 0) {
        fprintf(stderr,
                "mlcdn ctl model publish: VERSION '%s' must be a decimal number (1-15 "
                "digits, no leading zero)\n",
                a->c.positional[2]);
        return 2;
    }
    if (a->percent < 0 || a->percent > 100) {
        fprintf(stderr, "mlcdn ctl model publish: --percent %ld: expected 0..100\n", a->percent);
        return 2;
    }
    if (reachable(a, "publish") != 0)
        goto out;
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
    if (http(a, "PUT", url, 1, data, len, "application/octet-stream", &r) != 0 ||
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
    if (!(text = manifest_text(m, name)) || manifest_put(a, name, m) != 0 ||
        index_add(a, name) != 0)
        goto out;
    printf("published %s %" PRId64 ": %zu bytes, sha256 %s%s\n", name, version, len, hex,
           sample ? ", sample recorded" : "");
    fflush(stdout);
    rc = roll(a, name, text);
out:
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
    char vkey[24], *text = NULL;
    int rc = 1;

    if (parse_version(a->c.positional[2], &version) != 0) {
        fprintf(stderr, "mlcdn ctl model %s: VERSION '%s' must be a decimal number\n", verb,
                a->c.positional[2]);
        return 2;
    }
    if (reachable(a, verb) != 0)
        goto out;
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
    rc = roll(a, name, text);
out:
    free(text);
    json_decref(m);
    return rc;
}

static int status(const struct model_args *a)
{
    const char *only = a->c.npositional > 1 ? a->c.positional[1] : NULL;
    struct edge_ans *ans;
    size_t n, bad = 0;
    char err[512];

    if (models_call(a, &ans, &n, err, sizeof(err)) != 0) {
        fprintf(stderr, "mlcdn ctl model status: %s\n", err);
        return 1;
    }
    printf("%-20s %-16s %-8s %-14s %-12s %s\n", "EDGE", "MODEL", "VERSION", "SHA256", "STATE",
           "DETAIL");
    for (size_t i = 0; i < n; i++) {
        json_t *ent;
        size_t k;
        if (ans[i].status != 200 || !ans[i].answer) {
            printf("%-20s unreachable: %s%s\n", ans[i].name,
                   ans[i].status ? "GET /admin/models: " : "",
                   ans[i].error[0] ? ans[i].error : "no JSON answer");
            bad++;
            continue;
        }
        json_array_foreach(json_object_get(ans[i].answer, "models"), k, ent)
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
            printf("%-20s %-16s %-8s %-14.12s %-12s %s\n", ans[i].name, name, vs, sha, state,
                   detail);
        }
    }
    ans_free(ans, n);
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
        if (a.sigv4 && store_sigv4_check(&a) != 0)
            goto out;
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
    free(a.aws_user);
    conf_fini(&a.c);
    return rc;
}
