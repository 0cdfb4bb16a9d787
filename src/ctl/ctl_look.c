/* src/ctl/ctl_look.c: see ctl_look.h. Plain blocking libcurl (multi, one round per sample):
 * the look commands are short-lived clients with nothing else to do meanwhile. */
#include "ctl/ctl_look.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/mc.h"
#include "core/units.h"

#define LOOK_BODY_MAX (32u << 20)

static void trim_slash(char *s)
{
    size_t n = strlen(s);
    while (n && s[n - 1] == '/')
        s[--n] = 0;
}

static int is_http_url(const char *s)
{
    return !strncmp(s, "http://", 7) || !strncmp(s, "https://", 8);
}

static int add_edge(struct look *l, const char *name, const char *admin, char *err, size_t errlen)
{
    if (l->n == LOOK_MAX_EDGES) {
        snprintf(err, errlen, "more than %d edges", LOOK_MAX_EDGES);
        return -E2BIG;
    }
    if (!is_http_url(admin) || strlen(admin) >= sizeof(l->e[0].admin)) {
        snprintf(err, errlen, "--edges: '%s' is not an http:// or https:// URL", admin);
        return -EINVAL;
    }
    struct look_edge *e = &l->e[l->n++];
    memset(e, 0, sizeof(*e));
    snprintf(e->admin, sizeof(e->admin), "%s", admin);
    trim_slash(e->admin);
    snprintf(e->name, sizeof(e->name), "%.127s", name && *name ? name : e->admin);
    return 0;
}

int look_flag(struct look *l, int argc, char **argv, int *i, char *err, size_t errlen)
{
    const char *a = argv[*i];
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;

    if (!l->token[0] && getenv("MLCDN_ADMIN_TOKEN"))
        snprintf(l->token, sizeof(l->token), "%s", getenv("MLCDN_ADMIN_TOKEN"));
    if (!l->timeout_ms)
        l->timeout_ms = 2000;
    if (strcmp(a, "--router") && strcmp(a, "--edges") && strcmp(a, "--token") &&
        strcmp(a, "--timeout"))
        return 0;
    if (!v) {
        snprintf(err, errlen, "%s needs a value", a);
        return -EINVAL;
    }
    (*i)++;
    if (!strcmp(a, "--router")) {
        if (!is_http_url(v) || strlen(v) >= sizeof(l->router)) {
            snprintf(err, errlen, "--router: '%s' is not an http:// or https:// URL", v);
            return -EINVAL;
        }
        snprintf(l->router, sizeof(l->router), "%s", v);
        trim_slash(l->router);
    } else if (!strcmp(a, "--edges")) {
        char *dup = mc_xstrdup(v), *save = NULL;
        int rc = 0;
        for (char *t = strtok_r(dup, ",", &save); t && rc == 0; t = strtok_r(NULL, ",", &save))
            rc = add_edge(l, NULL, t, err, errlen);
        free(dup);
        if (rc < 0)
            return rc;
    } else if (!strcmp(a, "--token")) {
        snprintf(l->token, sizeof(l->token), "%s", v);
    } else {
        uint64_t ms;
        if (units_parse_duration_ms(v, &ms) < 0 || ms == 0 || ms > 600000) {
            snprintf(err, errlen, "--timeout: '%s' is not a duration of 1ms to 10m (2s, 500ms)", v);
            return -EINVAL;
        }
        l->timeout_ms = (long)ms;
    }
    return 1;
}

struct xfer {
    CURL *easy;
    struct buf body;
    struct curl_slist *hdrs;
};

static size_t on_body(char *p, size_t sz, size_t nm, void *arg)
{
    struct xfer *x = arg;
    return buf_append(&x->body, p, sz * nm) < 0 ? 0 : sz * nm;
}

static void xfer_init(struct look *l, struct xfer *x, const char *url)
{
    buf_init(&x->body, LOOK_BODY_MAX);
    x->easy = curl_easy_init();
    MC_ASSERT(x->easy != NULL);
    x->hdrs = NULL;
    if (l->token[0]) {
        char h[600];
        snprintf(h, sizeof(h), "Authorization: Bearer %s", l->token);
        x->hdrs = curl_slist_append(NULL, h);
        curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->hdrs);
    }
    curl_easy_setopt(x->easy, CURLOPT_URL, url);
    curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, l->timeout_ms);
    curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(x->easy, CURLOPT_USERAGENT, "mlcdn-ctl/" MLCDN_VERSION);
    curl_easy_setopt(x->easy, CURLOPT_PROTOCOLS_STR, "http,https");
}

static void xfer_fini(struct xfer *x)
{
    curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->hdrs);
    buf_fini(&x->body);
}

/* Runs every transfer to its end; returns each one's error text ("" when it got 200). */
static void run_all(struct xfer *xs, size_t n, char (*errs)[256])
{
    CURLM *m = curl_multi_init();
    int running = 0;

    MC_ASSERT(m != NULL);
    for (size_t i = 0; i < n; i++)
        curl_multi_add_handle(m, xs[i].easy);
    do {
        curl_multi_perform(m, &running);
        if (running)
            curl_multi_poll(m, NULL, 0, 200, NULL);
    } while (running);
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        for (size_t i = 0; i < n; i++) {
            if (xs[i].easy != msg->easy_handle)
                continue;
            long code = 0;
            curl_easy_getinfo(xs[i].easy, CURLINFO_RESPONSE_CODE, &code);
            if (msg->data.result != CURLE_OK)
                snprintf(errs[i], sizeof(errs[i]), "%s", curl_easy_strerror(msg->data.result));
            else if (code != 200)
                snprintf(errs[i], sizeof(errs[i]), "HTTP %ld", code);
            else
                errs[i][0] = 0;
        }
    }
    for (size_t i = 0; i < n; i++)
        curl_multi_remove_handle(m, xs[i].easy);
    curl_multi_cleanup(m);
}

int look_resolve(struct look *l, char *err, size_t errlen)
{
    if (!l->router[0] && l->n == 0) {
        snprintf(err, errlen, "say where the edges are: --router URL or --edges URL,URL,...");
        return -EINVAL;
    }
    if (l->router[0] && l->n) {
        snprintf(err, errlen, "--router and --edges: give one of them");
        return -EINVAL;
    }
    if (!l->router[0])
        return 0;
    char url[600], e1[1][256];
    struct xfer x;
    snprintf(url, sizeof(url), "%s/edges", l->router);
    xfer_init(l, &x, url);
    run_all(&x, 1, e1);
    int rc = 0;
    if (e1[0][0]) {
        snprintf(err, errlen, "--router: GET %s: %s", url, e1[0]);
        rc = -EIO;
        goto out;
    }
    json_error_t je;
    json_t *j = json_loadb(x.body.data, x.body.len, 0, &je);
    json_t *arr = j ? json_object_get(j, "edges") : NULL;
    if (!json_is_array(arr)) {
        snprintf(err, errlen, "--router: GET %s: not the router's edge list (no \"edges\" array)",
                 url);
        json_decref(j);
        rc = -EINVAL;
        goto out;
    }
    size_t i;
    json_t *o;
    json_array_foreach(arr, i, o)
    {
        const char *name = json_string_value(json_object_get(o, "name"));
        const char *hu = json_string_value(json_object_get(o, "health_url"));
        char admin[512];
        if (!name || !hu || strlen(hu) >= sizeof(admin))
            continue;
        snprintf(admin, sizeof(admin), "%s", hu);
        /* The router checks GET ADMIN/health: the admin listener is what precedes it. */
        size_t hl = strlen(admin);
        if (hl > 7 && !strcmp(admin + hl - 7, "/health"))
            admin[hl - 7] = 0;
        if ((rc = add_edge(l, name, admin, err, errlen)) < 0)
            break;
    }
    json_decref(j);
    if (rc == 0 && l->n == 0) {
        snprintf(err, errlen, "--router: the router at %s knows no edges", l->router);
        rc = -ENOENT;
    }
out:
    xfer_fini(&x);
    return rc;
}

size_t look_sample(struct look *l)
{
    size_t n = l->n, ok = 0;
    struct xfer *xs = mc_xcalloc(2 * n, sizeof(*xs));
    char(*errs)[256] = mc_xcalloc(2 * n, sizeof(*errs));
    char url[600];

    for (size_t i = 0; i < n; i++) {
        snprintf(url, sizeof(url), "%s/metrics", l->e[i].admin);
        xfer_init(l, &xs[2 * i], url);
        snprintf(url, sizeof(url), "%s/admin/models", l->e[i].admin);
        xfer_init(l, &xs[2 * i + 1], url);
        snprintf(errs[2 * i], sizeof(errs[0]), "no answer");
        snprintf(errs[2 * i + 1], sizeof(errs[0]), "no answer");
    }
    run_all(xs, 2 * n, errs);
    int64_t now = (int64_t)units_now_us();
    for (size_t i = 0; i < n; i++) {
        struct look_edge *e = &l->e[i];
        struct edgestat st;
        char perr[256];
        if (errs[2 * i][0]) {
            e->ok = 0;
            snprintf(e->err, sizeof(e->err), "GET /metrics: %s", errs[2 * i]);
        } else if (edgestat_parse(xs[2 * i].body.data, xs[2 * i].body.len, &st, perr,
                                  sizeof(perr)) < 0) {
            e->ok = 0;
            snprintf(e->err, sizeof(e->err), "GET /metrics: %s", perr);
        } else {
            if (e->t_us) {
                /* The window runs from the previous good read. */
                e->prev = e->cur;
                e->t_prev_us = e->t_us;
                e->have_prev = 1;
            }
            e->cur = st;
            e->t_us = now;
            e->ok = 1;
            e->err[0] = 0;
            ok++;
        }
        /* An edge without prediction serving answers 404 here: it has no models. */
        json_decref(e->models);
        e->models = NULL;
        if (!errs[2 * i + 1][0]) {
            json_error_t je;
            json_t *j = json_loadb(xs[2 * i + 1].body.data, xs[2 * i + 1].body.len, 0, &je);
            json_t *ms = j ? json_object_get(j, "models") : NULL;
            if (json_is_array(ms))
                e->models = json_incref(ms);
            json_decref(j);
        }
        xfer_fini(&xs[2 * i]);
        xfer_fini(&xs[2 * i + 1]);
    }
    free(xs);
    free(errs);
    return ok;
}

void look_window(const struct look_edge *e, struct edgestat *out, double *seconds)
{
    if (e->have_prev && e->t_us > e->t_prev_us) {
        edgestat_delta(&e->prev, &e->cur, out);
        *seconds = (double)(e->t_us - e->t_prev_us) / 1e6;
    } else {
        *out = e->cur;
        *seconds = 0;
    }
}

void look_fmt_bytes(char *out, size_t n, double b)
{
    static const char units[] = "BKMGTP";
    int u = 0;
    while (b >= 1000 && u < 5) {
        b /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, n, "%.0fB", b);
    else
        snprintf(out, n, b < 10 ? "%.1f%c" : "%.0f%c", b, units[u]);
}

void look_fmt_secs(char *out, size_t n, double s)
{
    if (s < 0)
        snprintf(out, n, "-");
    else if (s < 1e-3)
        snprintf(out, n, "%.0fus", s * 1e6);
    else if (s < 1)
        snprintf(out, n, s < 0.01 ? "%.1fms" : "%.0fms", s * 1e3);
    else
        snprintf(out, n, "%.1fs", s);
}

void look_models_text(const struct look_edge *e, char *out, size_t n)
{
    size_t i, o = 0;
    json_t *m;

    out[0] = 0;
    if (e->models)
        json_array_foreach(e->models, i, m)
        {
            const char *name = json_string_value(json_object_get(m, "name"));
            json_t *v = json_object_get(m, "version");
            if (!name || o >= n)
                continue;
            int w = json_is_integer(v) ? snprintf(out + o, n - o, "%s%s@%lld", o ? "," : "", name,
                                                  (long long)json_integer_value(v))
                                       : snprintf(out + o, n - o, "%s%s@none", o ? "," : "", name);
            if (w > 0)
                o += (size_t)w;
        }
    if (!out[0])
        snprintf(out, n, "-");
}

void look_free(struct look *l)
{
    for (size_t i = 0; i < l->n; i++) {
        json_decref(l->e[i].models);
        l->e[i].models = NULL;
    }
}
