/* src/predict/predict.c: the top object and the prediction endpoints.
 *
 *   POST /predict, POST /batch_predict                       (mlcdn's JSON shapes)
 *   GET  /v2, /v2/health/live, /v2/health/ready              (Open Inference Protocol v2)
 *   GET  /v2/models/NAME[/versions/V][/ready]
 *   POST /v2/models/NAME[/versions/V]/infer
 * and, on the admin listener, GET /admin/models and POST /admin/models/reload.
 *
 * A request is decoded on its loop into per-input row buffers; every row is looked up in
 * the model's prediction cache (key: version, load generation, the rows' input bytes).
 * Hits are answered on the loop at once; the missing rows go to the pool as one item
 * (predict_batch.c), whose results come back on the same loop and are merged in the
 * original row order. The request holds a version reference from decoding to the answer,
 * so a reload never switches a request half-way. Every error is a 4xx/503 JSON body
 * naming the field at fault (docs/predict.md lists them); this file is the only one of
 * the module that knows HTTP statuses. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/mc.h"
#include "core/units.h"
#include "http/http_server.h"
#include "predict/predict_int.h"

#define PREQ_MAGIC 0x50524551u
#define RESP_CAP (256u << 20)

static const char *const ep_names[PREDICT_EP__N] = {
#define X(id, label) [PREDICT_EP_##id] = label,
    PREDICT_ENDPOINTS(X)
#undef X
};

/* The counter index of an answered status. */
static enum predict_st st_index(int status)
{
    switch (status) {
#define X(code)                                                                                    \
    case code: return PREDICT_ST_##code;
        PREDICT_STATUSES(X)
#undef X
    default: return PREDICT_ST_OTHER;
    }
}

/* The HTTP status of an error of the module (predict_int.h). */
static int http_status(int err)
{
    switch (err) {
    case -EINVAL: return 400;
    case -ENOENT: return 404;
    case -E2BIG: return 413;
    case -ENOMEM:
    case -EAGAIN:
    case -ESHUTDOWN: return 503;
    default: return 500;
    }
}

struct preq {
    unsigned magic;
    struct predict *p;
    struct predict_loop *pl;
    struct http_exchange *x;
    enum predict_ep ep;
    struct buf body;
    char name[PREDICT_MODEL_NAME_MAX + 8]; /* OIP: from the URL */
    int64_t version;                       /* OIP: from the URL, -1 for current */
    struct predict_version *v;             /* ref */
    struct predict_rows d;                 /* the decoded body */
    unsigned char *vals;                   /* rows * val_bytes */
    size_t *miss;
    size_t nmiss, hits;
};

static void metrics_init(struct predict *p)
{
    char labels[128];
    static const int codes[PREDICT_ST__N] = {
#define X(code) [PREDICT_ST_##code] = code,
        PREDICT_STATUSES(X)
#undef X
    };

    for (int e = 0; e < PREDICT_EP__N; e++)
        for (int s = 0; s < PREDICT_ST__N; s++) {
            if (s != PREDICT_ST_OTHER)
                snprintf(labels, sizeof(labels), "endpoint=\"%s\",status=\"%d\"", ep_names[e],
                         codes[s]);
            else
                snprintf(labels, sizeof(labels), "endpoint=\"%s\",status=\"other\"", ep_names[e]);
            p->req[e][s] = metrics_counter("mlcdn_predict_requests_total",
                                           "Prediction API requests by endpoint and status",
                                           labels);
        }
    static const char *const cache[3] = {"hit", "partial", "miss"};
    static const enum predict_ep timed[3] = {PREDICT_EP_PREDICT, PREDICT_EP_BATCH,
                                             PREDICT_EP_V2_INFER};
    for (int e = 0; e < 3; e++)
        for (int c = 0; c < 3; c++) {
            snprintf(labels, sizeof(labels), "endpoint=\"%s\",cache=\"%s\"", ep_names[timed[e]],
                     cache[c]);
            p->lat[timed[e]][c] = metrics_hist(
                "mlcdn_predict_request_duration_seconds",
                "Prediction requests answered 200, from request head to the last response byte, "
                "by endpoint and by prediction cache outcome (hit: every row from the cache)",
                labels, 1e6, 16, 60000000);
        }
}

static void count(struct predict *p, struct http_exchange *x, enum predict_ep ep, int status)
{
    http_x_note(x)->kind = (int)ep + 1; /* predict_on_done reads it back */
    metrics_counter_add(p->req[ep][st_index(status)], 1);
}

/* mlcdn_predict_model_requests_total of the version a request resolved to, registered on
 * its first use (a version's series exist only for what it answered). */
static void count_version(struct predict_version *v, struct http_exchange *x, enum predict_ep ep,
                          int status)
{
    enum predict_st st = st_index(status);
    struct metrics_counter *c = atomic_load_explicit(&v->req[ep][st], memory_order_acquire);
    struct http_x_note *n = http_x_note(x);

    snprintf(n->model, sizeof(n->model), "%s", v->model->name);
    n->version = v->version;
    if (!c) {
        struct buf b;
        buf_init(&b, 512);
        buf_puts(&b, "model=\"");
        metrics_label_esc(&b, v->model->name);
        buf_printf(&b, "\",version=\"%" PRId64 "\",endpoint=\"%s\",status=\"", v->version,
                   ep_names[ep]);
        if (st == PREDICT_ST_OTHER)
            buf_puts(&b, "other\"");
        else
            buf_printf(&b, "%d\"", status);
        c = metrics_counter("mlcdn_predict_model_requests_total",
                            "Prediction requests by model, version, endpoint and status", b.data);
        buf_fini(&b);
        atomic_store_explicit(&v->req[ep][st], c, memory_order_release);
    }
    metrics_counter_add(c, 1);
}

void predict_on_done(struct predict *p, const struct http_x_done *d)
{
    const struct http_x_note *n = d->note;
    int ep = n->kind - 1;
    int c;

    if (d->status != 200 ||
        (ep != PREDICT_EP_PREDICT && ep != PREDICT_EP_BATCH && ep != PREDICT_EP_V2_INFER))
        return;
    c = n->cache && !strcmp(n->cache, "HIT") ? 0 : n->cache && !strcmp(n->cache, "PARTIAL") ? 1 : 2;
    metrics_hist_observe(p->lat[ep][c], d->end_us - d->start_us);
}

static void reply_err(struct predict *p, struct http_exchange *x, enum predict_ep ep, int status,
                      const char *msg)
{
    count(p, x, ep, status);
    if (status == 405) {
        struct buf b;
        buf_init(&b, 4096);
        buf_puts(&b, "{\"error\":");
        buf_json_str(&b, msg, strlen(msg));
        buf_puts(&b, ",\"status\":405}\n");
        int post = ep == PREDICT_EP_PREDICT || ep == PREDICT_EP_BATCH || ep == PREDICT_EP_V2_INFER;
        http_x_respond(x, 405,
                       post ? "Allow: POST\r\nContent-Type: application/json\r\n"
                            : "Allow: GET, HEAD\r\nContent-Type: application/json\r\n",
                       b.data, b.len);
        buf_fini(&b);
        return;
    }
    http_x_error(x, status, msg);
}

static void reply_json(struct predict *p, struct http_exchange *x, enum predict_ep ep, int status,
                       struct buf *b, const char *xcache)
{
    char h[256];
    count(p, x, ep, status);
    snprintf(h, sizeof(h),
             "Content-Type: application/json\r\nCache-Control: no-store\r\nX-Edge-Region: "
             "%s\r\n%s%s%s",
             p->cfg.region, xcache ? "X-Cache: " : "", xcache ? xcache : "", xcache ? "\r\n" : "");
    http_x_respond(x, status, h, b->data, b->len);
}

static void preq_free(struct preq *q)
{
    MC_CHECK_OBJ_NOTNULL(q, PREQ_MAGIC);
    predict__rows_fini(&q->d);
    free(q->vals);
    free(q->miss);
    buf_fini(&q->body);
    predict__version_unref(&q->v);
    MC_FREE_OBJ(q);
}

static void fail(struct preq *q, int status, const char *msg)
{
    if (q->v)
        count_version(q->v, q->x, q->ep, status);
    reply_err(q->p, q->x, q->ep, status, msg);
    preq_free(q);
}

/* ---- responses ---- */

static void put_row_output(struct buf *b, const struct predict_version *v, const unsigned char *row,
                           size_t o)
{
    const struct predict_io *io = &v->out[o];
    predict__json_tensor(b, io->dtype, row + io->off, io->dims + 1, io->rank - 1, 1);
}

static void put_prediction(struct buf *b, const struct predict_version *v, const unsigned char *row)
{
    if (v->n_out == 1) {
        put_row_output(b, v, row, 0);
        return;
    }
    buf_puts(b, "{");
    for (size_t o = 0; o < v->n_out; o++) {
        if (o)
            buf_puts(b, ",");
        buf_json_str(b, v->out[o].name, strlen(v->out[o].name));
        buf_puts(b, ":");
        put_row_output(b, v, row, o);
    }
    buf_puts(b, "}");
}

static void put_tail(struct buf *b, struct preq *q)
{
    buf_puts(b, ",\"model\":");
    buf_json_str(b, q->v->model->name, strlen(q->v->model->name));
    buf_printf(b, ",\"model_version\":%" PRId64 ",\"edge_region\":", q->v->version);
    buf_json_str(b, q->p->cfg.region, strlen(q->p->cfg.region));
    buf_puts(b, "}\n");
}

static void respond(struct preq *q)
{
    struct predict_version *v = q->v;
    struct buf b;
    const char *xc = q->nmiss == 0 ? "HIT" : q->hits ? "PARTIAL" : "MISS";

    buf_init(&b, RESP_CAP);
    if (q->ep == PREDICT_EP_PREDICT) {
        buf_puts(&b, "{\"prediction\":");
        put_prediction(&b, v, q->vals);
        buf_puts(&b, q->nmiss ? ",\"cached\":false" : ",\"cached\":true");
        put_tail(&b, q);
    } else if (q->ep == PREDICT_EP_BATCH) {
        buf_puts(&b, "{\"predictions\":[");
        for (size_t r = 0; r < q->d.rows; r++) {
            if (r)
                buf_puts(&b, ",");
            put_prediction(&b, v, q->vals + r * v->val_bytes);
        }
        buf_printf(&b, "],\"count\":%zu,\"cached\":%zu", q->d.rows, q->hits);
        put_tail(&b, q);
    } else {
        buf_puts(&b, "{\"model_name\":");
        buf_json_str(&b, v->model->name, strlen(v->model->name));
        buf_printf(&b, ",\"model_version\":\"%" PRId64 "\"", v->version);
        if (q->d.id)
            buf_printf(&b, ",\"id\":%s", q->d.id);
        buf_printf(&b, ",\"parameters\":{\"cached_rows\":%zu},\"outputs\":[", q->hits);
        int first = 1;
        for (size_t o = 0; o < v->n_out; o++) {
            const struct predict_io *io = &v->out[o];
            if (q->d.outsel && !(q->d.outsel & (1u << o)))
                continue;
            buf_puts(&b, first ? "{\"name\":" : ",{\"name\":");
            first = 0;
            buf_json_str(&b, io->name, strlen(io->name));
            buf_printf(&b, ",\"datatype\":\"%s\",\"shape\":[%zu", predict__json_oip_name(io->dtype),
                       q->d.rows);
            for (int d = 1; d < io->rank; d++)
                buf_printf(&b, ",%" PRId64, io->dims[d]);
            buf_puts(&b, "],\"data\":[");
            for (size_t r = 0; r < q->d.rows; r++) {
                const unsigned char *p = q->vals + r * v->val_bytes + io->off;
                for (int64_t k = 0; k < io->row_numel; k++) {
                    if (r || k)
                        buf_puts(&b, ",");
                    predict__json_elem(&b, io->dtype, p, k);
                }
            }
            buf_puts(&b, "]}");
        }
        buf_puts(&b, "]}\n");
    }
    if (b.len >= RESP_CAP - 1) {
        buf_fini(&b);
        fail(q, 503, "response larger than the edge's 256 MiB response cap");
        return;
    }
    count_version(v, q->x, q->ep, 200);
    http_x_note(q->x)->cache = xc;
    reply_json(q->p, q->x, q->ep, 200, &b, xc);
    buf_fini(&b);
    preq_free(q);
}

/* ---- execution ---- */

static void on_done(struct predict_item *it, void *arg)
{
    struct preq *q = arg;
    struct predict_version *v = q->v;

    MC_CHECK_OBJ_NOTNULL(q, PREQ_MAGIC);
    if (it->err) {
        fail(q, http_status(it->err), it->msg);
        return;
    }
    for (size_t k = 0; k < q->nmiss; k++)
        memcpy(q->vals + q->miss[k] * v->val_bytes, it->out + k * v->val_bytes, v->val_bytes);
    respond(q);
}

static void run(struct preq *q)
{
    struct predict_version *v = q->v;
    struct predict_model *m = v->model;
    unsigned char kbuf[2048], *key = kbuf;
    size_t vl;

    q->vals = malloc(MC_MAX(q->d.rows * v->val_bytes, (size_t)1));
    q->miss = malloc(q->d.rows * sizeof(*q->miss));
    if (!q->vals || !q->miss) {
        fail(q, 503, "out of memory for the predictions");
        return;
    }
    if (m->cache && v->key_bytes > sizeof(kbuf))
        key = mc_xmalloc(v->key_bytes);
    for (size_t r = 0; r < q->d.rows; r++) {
        if (m->cache) {
            predict__cache_key(v, q->d.in, r, key);
            if (cache_pred_get(m->cache, key, v->key_bytes, q->vals + r * v->val_bytes,
                               v->val_bytes, &vl) == 0 &&
                vl == v->val_bytes) {
                q->hits++;
                continue;
            }
        }
        q->miss[q->nmiss++] = r;
    }
    if (key != kbuf)
        free(key);
    metrics_counter_add(m->hits, q->hits);
    metrics_counter_add(m->misses, q->nmiss);
    atomic_fetch_add_explicit(&q->p->rows_hit, q->hits, memory_order_relaxed);
    atomic_fetch_add_explicit(&q->p->rows_missed, q->nmiss, memory_order_relaxed);
    if (q->nmiss == 0) {
        respond(q);
        return;
    }
    struct predict_item *it = predict__item_new(v, q->nmiss);
    for (size_t i = 0; i < v->n_in; i++) {
        size_t rb = v->in[i].row_bytes;
        if (q->nmiss == q->d.rows) {
            it->in[i] = q->d.in[i];
            q->d.in[i] = NULL;
            continue;
        }
        it->in[i] = malloc(MC_MAX(q->nmiss * rb, (size_t)1));
        if (!it->in[i]) {
            predict__item_free(it);
            fail(q, 503, "out of memory for the batch");
            return;
        }
        for (size_t k = 0; k < q->nmiss; k++)
            memcpy((unsigned char *)it->in[i] + k * rb,
                   (unsigned char *)q->d.in[i] + q->miss[k] * rb, rb);
    }
    predict__pool_submit(q->p->pool, q->pl, it, on_done, q);
}

/* ---- decoding ---- */

/* The common single-input float /predict without a JSON tree (predict__json_fast_predict);
 * returns 0, having changed nothing, when the body or the model does not fit it. */
static int fast_predict(struct preq *q)
{
    double vals[1024];
    struct predict_json_fast f = {.vals = vals, .cap = MC_ARRAY_SIZE(vals)};
    char name[PREDICT_MODEL_NAME_MAX + 1], msg[512];

    if (!q->body.len || !predict__json_fast_predict(q->body.data, q->body.len, &f) ||
        f.model_len > PREDICT_MODEL_NAME_MAX)
        return 0;
    memcpy(name, f.model ? f.model : "", f.model_len);
    name[f.model_len] = '\0';
    if (predict__models_get(q->p->models, f.model ? name : NULL, f.version, &q->v, msg,
                            sizeof(msg)) != 0)
        return 0;
    const struct predict_io *io = &q->v->in[0];
    if (q->v->n_in != 1 || io->dtype != INFER_DT_FLOAT || (int64_t)f.n != io->row_numel) {
        predict__version_unref(&q->v);
        return 0;
    }
    if (predict__rows_alloc(&q->d, q->v, 1, msg, sizeof(msg)) != 0) {
        fail(q, 503, msg);
        return 1;
    }
    float *dst = q->d.in[0];
    for (size_t i = 0; i < f.n; i++)
        dst[i] = (float)vals[i];
    run(q);
    return 1;
}

/* The seed shapes: the model the body names, then its inputs for that version. */
static int decode_seed(struct preq *q, json_t *root, char *msg, size_t mlen)
{
    const char *name;
    int64_t version;
    int rc;

    if ((rc = predict__json_seed_model(root, &name, &version, msg, mlen)) != 0 ||
        (rc = predict__models_get(q->p->models, name, version, &q->v, msg, mlen)) != 0)
        return rc;
    return predict__json_seed(root, q->v, q->ep == PREDICT_EP_BATCH, &q->d, msg, mlen);
}

/* OIP: the model and version come from the URL. */
static int decode_oip(struct preq *q, json_t *root, char *msg, size_t mlen)
{
    int rc = predict__models_get(q->p->models, q->name, q->version, &q->v, msg, mlen);
    return rc ? rc : predict__json_oip(root, q->v, &q->d, msg, mlen);
}

static void on_body(struct http_exchange *x, const char *data, size_t len, void *arg)
{
    struct preq *q = arg;
    (void)x;
    /* Over the cap the listener fails the body with 413; until then keep what fits. */
    buf_append(&q->body, data, len);
}

static void on_body_end(struct http_exchange *x, int err, const char *msg, void *arg)
{
    struct preq *q = arg;
    json_error_t je;
    json_t *root;
    char m[512];
    int rc;

    (void)x;
    MC_CHECK_OBJ_NOTNULL(q, PREQ_MAGIC);
    if (err) {
        snprintf(m, sizeof(m), "request body: %s", msg ? msg : "could not be read");
        fail(q, -err, m);
        return;
    }
    if (q->body.len > q->p->cfg.max_body) {
        fail(q, 413, "request body: over the edge's --max-body limit");
        return;
    }
    if (q->ep == PREDICT_EP_PREDICT && fast_predict(q))
        return;
    root = json_loadb(q->body.data ? q->body.data : "", q->body.len, 0, &je);
    if (!root) {
        snprintf(m, sizeof(m), "request body: invalid JSON at line %d column %d: %s", je.line,
                 je.column, je.text);
        fail(q, 400, m);
        return;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        fail(q, 400, "request body: expected a JSON object");
        return;
    }
    m[0] = '\0';
    rc = q->ep == PREDICT_EP_V2_INFER ? decode_oip(q, root, m, sizeof(m))
                                      : decode_seed(q, root, m, sizeof(m));
    json_decref(root);
    if (rc) {
        fail(q, http_status(rc), m);
        return;
    }
    run(q);
}

static void start_body(struct predict *p, struct predict_loop *pl, struct http_exchange *x,
                       enum predict_ep ep, const char *name, int64_t version)
{
    struct preq *q = mc_xcalloc(1, sizeof(*q));
    MC_INIT_OBJ(q, PREQ_MAGIC);
    q->p = p;
    q->pl = pl;
    q->x = x;
    q->ep = ep;
    q->version = version;
    if (name)
        snprintf(q->name, sizeof(q->name), "%s", name);
    buf_init(&q->body, p->cfg.max_body + 1);
    if (!http_x_body_streaming(x)) {
        /* No body to stream (none sent, or the server already read it). */
        size_t len;
        const char *b = http_x_body(x, &len);
        if (len)
            buf_append(&q->body, b, len);
        on_body_end(x, 0, NULL, q);
        return;
    }
    http_x_body_stream(x, on_body, on_body_end, q);
}

/* ---- OIP metadata ---- */

/* OIP v2 health (KServe's REST spec, "Health"): the status code is the answer, 200 true
 * and a 4xx false, and the body is empty. False is 400, as Triton answers; an unknown
 * model or version is 404 (still a 4xx: false). */
static void reply_health(struct predict *p, struct http_exchange *x, enum predict_ep ep, int status)
{
    char h[160];

    count(p, x, ep, status);
    snprintf(h, sizeof(h), "Cache-Control: no-store\r\nX-Edge-Region: %s\r\n", p->cfg.region);
    http_x_respond(x, status, h, NULL, 0);
}

/* The spec's "server ready": all the models are ready for inferencing. A model is ready
 * when a version of it serves; one that failed to load (and has no older version to
 * serve) keeps the server not ready until it is fixed or removed. No model at all is
 * vacuously ready. A draining edge is not ready: it is about to stop. */
static int server_ready(struct predict *p)
{
    struct predict_models *r = p->models;
    int ready = !atomic_load(&p->draining);

    pthread_rwlock_rdlock(&r->lock);
    for (size_t i = 0; i < r->n && ready; i++)
        ready = r->models[i]->cur != NULL;
    pthread_rwlock_unlock(&r->lock);
    return ready;
}

static void oip_model(struct predict *p, struct http_exchange *x, const char *name, int64_t version,
                      int ready)
{
    struct predict_models *r = p->models;
    struct predict_version *v = NULL;
    char msg[512];
    struct buf b;
    enum predict_ep ep = ready ? PREDICT_EP_V2_READY : PREDICT_EP_V2_META;
    int rc = predict__models_get(r, name, version, &v, msg, sizeof(msg));

    if (ready) {
        predict__version_unref(&v);
        reply_health(p, x, ep, rc == 0 ? 200 : rc == -EAGAIN ? 400 : rc == -ENOENT ? 404 : 400);
        return;
    }
    buf_init(&b, 1 << 20);
    if (rc) {
        buf_fini(&b);
        reply_err(p, x, ep, http_status(rc), msg);
        return;
    }
    buf_puts(&b, "{\"name\":");
    buf_json_str(&b, v->model->name, strlen(v->model->name));
    buf_puts(&b, ",\"versions\":[");
    pthread_rwlock_rdlock(&r->lock);
    for (size_t k = 0; k < v->model->nvers; k++)
        buf_printf(&b, "%s\"%" PRId64 "\"", k ? "," : "", v->model->vers[k]->version);
    pthread_rwlock_unlock(&r->lock);
    buf_printf(&b, "],\"platform\":\"onnx\",\"inputs\":");
    predict__json_io(&b, v->in, v->n_in);
    buf_puts(&b, ",\"outputs\":");
    predict__json_io(&b, v->out, v->n_out);
    buf_printf(&b, ",\"parameters\":{\"version\":\"%" PRId64 "\",\"max_batch\":%u}}\n", v->version,
               v->cfg.max_batch);
    predict__version_unref(&v);
    reply_json(p, x, ep, 200, &b, NULL);
    buf_fini(&b);
}

static int seg(struct http_str *rest, struct http_str *out)
{
    if (rest->len == 0)
        return 0;
    size_t i = 0;
    while (i < rest->len && rest->p[i] != '/')
        i++;
    out->p = rest->p;
    out->len = i;
    rest->p += i < rest->len ? i + 1 : i;
    rest->len -= i < rest->len ? i + 1 : i;
    return 1;
}

static int str_eq(struct http_str s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

static void oip_route(struct predict *p, struct predict_loop *pl, struct http_exchange *x,
                      struct http_str path)
{
    const struct http_request *req = http_x_request(x);
    int get = req->method == HTTP_M_GET || req->method == HTTP_M_HEAD;
    struct http_str rest = path, s[6];
    size_t n = 0;
    char name[PREDICT_MODEL_NAME_MAX + 8];
    int64_t version = -1;
    struct buf b;

    rest.p += 3; /* "/v2" */
    rest.len -= 3;
    if (rest.len && rest.p[0] == '/') {
        rest.p++;
        rest.len--;
    }
    while (n < MC_ARRAY_SIZE(s) && seg(&rest, &s[n]))
        n++;
    if (rest.len) {
        reply_err(p, x, PREDICT_EP_V2_META, 404, "unknown /v2 path");
        return;
    }
    if (n == 0 || (n == 2 && str_eq(s[0], "health"))) {
        enum predict_ep ep = n ? PREDICT_EP_V2_HEALTH : PREDICT_EP_V2_META;
        if (!get) {
            reply_err(p, x, ep, 405, "use GET");
            return;
        }
        if (n == 0) {
            buf_init(&b, 4096);
            buf_puts(&b, "{\"name\":\"mlcdn\",\"version\":\"1\",\"extensions\":[]}\n");
            reply_json(p, x, ep, 200, &b, NULL);
            buf_fini(&b);
        } else if (str_eq(s[1], "live")) {
            reply_health(p, x, ep, 200);
        } else if (str_eq(s[1], "ready")) {
            reply_health(p, x, ep, server_ready(p) ? 200 : 400);
        } else {
            reply_err(p, x, ep, 404, "unknown /v2/health path (live, ready)");
        }
        return;
    }
    if (!str_eq(s[0], "models") || n < 2 || s[1].len == 0 || s[1].len > PREDICT_MODEL_NAME_MAX) {
        reply_err(p, x, PREDICT_EP_V2_META, 404,
                  "unknown /v2 path (health/live, health/ready, "
                  "models/NAME[/versions/V][/ready|/infer])");
        return;
    }
    snprintf(name, sizeof(name), "%.*s", (int)s[1].len, s[1].p);
    size_t k = 2;
    if (n > k && str_eq(s[k], "versions")) {
        char vb[24], *end;
        if (n <= k + 1 || s[k + 1].len == 0 || s[k + 1].len >= sizeof(vb)) {
            reply_err(p, x, PREDICT_EP_V2_META, 404, "versions: expected /versions/NUMBER");
            return;
        }
        snprintf(vb, sizeof(vb), "%.*s", (int)s[k + 1].len, s[k + 1].p);
        version = strtoll(vb, &end, 10);
        if (*end || version < 0 || vb[0] < '0' || vb[0] > '9') {
            char m[96];
            snprintf(m, sizeof(m), "versions: '%s' is not a version number", vb);
            reply_err(p, x, PREDICT_EP_V2_META, 404, m);
            return;
        }
        k += 2;
    }
    if (n == k) {
        if (!get) {
            reply_err(p, x, PREDICT_EP_V2_META, 405, "model metadata: use GET");
            return;
        }
        oip_model(p, x, name, version, 0);
    } else if (n == k + 1 && str_eq(s[k], "ready")) {
        if (!get) {
            reply_err(p, x, PREDICT_EP_V2_READY, 405, "model ready: use GET");
            return;
        }
        oip_model(p, x, name, version, 1);
    } else if (n == k + 1 && str_eq(s[k], "infer")) {
        if (req->method != HTTP_M_POST) {
            reply_err(p, x, PREDICT_EP_V2_INFER, 405, "infer: use POST");
            return;
        }
        start_body(p, pl, x, PREDICT_EP_V2_INFER, name, version);
    } else {
        reply_err(p, x, PREDICT_EP_V2_META, 404,
                  "unknown /v2/models path ([/versions/V][/ready|/infer])");
    }
}

const char *const predict_paths[] = {"/predict", "/batch_predict", "/v2", NULL};

int predict_path_taken(const char *path, size_t len)
{
    struct http_str s = {path, len};

    return str_eq(s, "/predict") || str_eq(s, "/batch_predict") ||
           (len >= 3 && !memcmp(path, "/v2", 3) && (len == 3 || path[3] == '/'));
}

int predict_handle(struct predict *p, struct predict_loop *pl, struct http_exchange *x)
{
    const struct http_request *req = http_x_request(x);
    struct http_str path = req->path;
    enum predict_ep ep;

    MC_CHECK_OBJ_NOTNULL(p, PREDICT_MAGIC);
    if (str_eq(path, "/predict"))
        ep = PREDICT_EP_PREDICT;
    else if (str_eq(path, "/batch_predict"))
        ep = PREDICT_EP_BATCH;
    else if ((path.len == 3 || (path.len > 3 && path.p[3] == '/')) && !memcmp(path.p, "/v2", 3)) {
        oip_route(p, pl, x, path);
        return 1;
    } else
        return 0;
    if (req->method != HTTP_M_POST) {
        reply_err(p, x, ep, 405,
                  ep == PREDICT_EP_PREDICT ? "/predict: use POST with a JSON body"
                                           : "/batch_predict: use POST with a JSON body");
        return 1;
    }
    start_body(p, pl, x, ep, NULL, -1);
    return 1;
}

/* ---- admin ---- */

struct reload_job {
    uv_work_t work;
    struct predict *p;
    struct http_exchange *x;
    struct buf report;
};

static void reload_work(uv_work_t *w)
{
    struct reload_job *j = w->data;
    predict__models_reload(j->p->models, &j->report);
}

static void reload_after(uv_work_t *w, int status)
{
    struct reload_job *j = w->data;
    (void)status;
    reply_json(j->p, j->x, PREDICT_EP_ADMIN, 200, &j->report, NULL);
    buf_fini(&j->report);
    free(j);
}

static int announce_err(struct buf *out, int status, const char *msg)
{
    buf_puts(out, "{\"error\":");
    buf_json_str(out, msg, strlen(msg));
    buf_printf(out, ",\"status\":%d}\n", status);
    return status;
}

int predict_announce_json(struct predict *p, const char *body, size_t len, struct buf *out)
{
    json_error_t je;
    json_t *root, *name, *man;
    char msg[256];
    int status = 202;
    uint64_t seq;

    MC_CHECK_OBJ_NOTNULL(p, PREDICT_MAGIC);
    if (!p->store)
        return announce_err(out, 409,
                            "announce needs a model store: start the edge with --model-store URL");
    root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je);
    name = json_object_get(root, "name");
    if (!json_is_object(root) || !json_is_string(name)) {
        snprintf(msg, sizeof(msg), "body: expected {\"name\": MODEL[, \"manifest\": {...}]}%s%s",
                 root ? "" : ": ", root ? "" : je.text);
        status = announce_err(out, 400, msg);
        goto out;
    }
    const char *n = json_string_value(name);
    size_t nl = strlen(n);
    int ok = nl > 0 && nl < PREDICT_MODEL_NAME_MAX && n[0] != '.';
    for (size_t i = 0; ok && i < nl; i++)
        ok = (n[i] >= 'a' && n[i] <= 'z') || (n[i] >= 'A' && n[i] <= 'Z') ||
             (n[i] >= '0' && n[i] <= '9') || n[i] == '_' || n[i] == '-' || n[i] == '.';
    if (!ok) {
        status = announce_err(out, 400, "name: 1-63 letters, digits, '_', '-' or '.' (not first)");
        goto out;
    }
    man = json_object_get(root, "manifest");
    if (man && !json_is_null(man)) {
        char *text = json_dumps(man, JSON_COMPACT);
        struct predict_manifest m;
        if (!text ||
            predict__manifest_parse(n, text, strlen(text), &m, msg + 10, sizeof(msg) - 10) != 0) {
            memcpy(msg, "manifest: ", 10);
            status = announce_err(out, 400, msg);
            free(text);
            goto out;
        }
        predict__manifest_fini(&m);
        seq = predict__store_announce(p->store, n, text, strlen(text));
        free(text);
    } else {
        seq = predict__store_announce(p->store, n, NULL, 0);
    }
    buf_puts(out, "{\"queued\":true,\"name\":");
    buf_json_str(out, n, nl);
    buf_puts(out, ",\"edge\":");
    buf_json_str(out, p->edge_name, strlen(p->edge_name));
    buf_printf(out, ",\"seq\":%" PRIu64 "}\n", seq);
out:
    json_decref(root);
    return status;
}

/* POST /admin/models/announce: predict_announce_json() behind the admin token. The
 * roll-out runs on the store's thread; the answer (202) only says it is queued, with the
 * job's number: GET /admin/models shows how it goes ("rollouts_done"). */
static void announce(struct predict *p, struct http_exchange *x, int authorized)
{
    const struct http_request *req = http_x_request(x);
    const char *body;
    size_t len;
    struct buf b;
    int status;

    if (req->method != HTTP_M_POST) {
        reply_err(p, x, PREDICT_EP_ADMIN, 405, "/admin/models/announce: use POST");
        return;
    }
    if (!p->cfg.admin_token) {
        reply_err(p, x, PREDICT_EP_ADMIN, 403,
                  "announce is disabled: start the edge with --admin-token");
        return;
    }
    if (!authorized) {
        reply_err(p, x, PREDICT_EP_ADMIN, 401,
                  "announce needs Authorization: Bearer <admin token>");
        return;
    }
    body = http_x_body(x, &len);
    buf_init(&b, 1u << 20);
    status = predict_announce_json(p, body, len, &b);
    reply_json(p, x, PREDICT_EP_ADMIN, status, &b, NULL);
    buf_fini(&b);
}

int predict_admin(struct predict *p, struct http_exchange *x, int authorized)
{
    const struct http_request *req = http_x_request(x);

    MC_CHECK_OBJ_NOTNULL(p, PREDICT_MAGIC);
    if (str_eq(req->path, "/admin/models")) {
        if (req->method != HTTP_M_GET && req->method != HTTP_M_HEAD) {
            reply_err(p, x, PREDICT_EP_ADMIN, 405, "/admin/models: use GET");
            return 1;
        }
        struct buf b;
        buf_init(&b, 16u << 20);
        predict_models_json(p, &b);
        reply_json(p, x, PREDICT_EP_ADMIN, 200, &b, NULL);
        buf_fini(&b);
        return 1;
    }
    if (str_eq(req->path, "/admin/models/announce")) {
        announce(p, x, authorized);
        return 1;
    }
    if (!str_eq(req->path, "/admin/models/reload"))
        return 0;
    if (req->method != HTTP_M_POST) {
        static const char msg[] = "{\"error\":\"/admin/models/reload: use POST\","
                                  "\"status\":405}\n";
        count(p, x, PREDICT_EP_ADMIN, 405);
        http_x_respond(x, 405, "Allow: POST\r\nContent-Type: application/json\r\n", msg,
                       sizeof(msg) - 1);
        return 1;
    }
    if (!p->cfg.admin_token) {
        reply_err(p, x, PREDICT_EP_ADMIN, 403,
                  "reload is disabled: start the edge with --admin-token");
        return 1;
    }
    if (!authorized) {
        count(p, x, PREDICT_EP_ADMIN, 401);
        static const char msg[] = "{\"error\":\"reload needs Authorization: Bearer <admin "
                                  "token>\",\"status\":401}\n";
        http_x_respond(x, 401, "WWW-Authenticate: Bearer\r\nContent-Type: application/json\r\n",
                       msg, sizeof(msg) - 1);
        return 1;
    }
    if (p->store) {
        struct buf b;
        buf_init(&b, 1u << 20);
        int status = predict_store_reread(p, &b);
        reply_json(p, x, PREDICT_EP_ADMIN, status, &b, NULL);
        buf_fini(&b);
        return 1;
    }
    struct reload_job *j = mc_xcalloc(1, sizeof(*j));
    j->p = p;
    j->x = x;
    j->work.data = j;
    buf_init(&j->report, 4u << 20);
    /* Loading may take a while: off the loop, on libuv's pool (not the inference pool). */
    if (uv_queue_work(http_x_loop(x), &j->work, reload_work, reload_after) != 0) {
        buf_fini(&j->report);
        free(j);
        reply_err(p, x, PREDICT_EP_ADMIN, 503, "cannot queue the reload");
    }
    return 1;
}

/* ---- the top object ---- */

static double queue_depth_read(void *arg)
{
    struct predict *p = arg;
    return (double)predict__pool_queued_rows(p->pool);
}

static double hit_ratio_read(void *arg)
{
    struct predict *p = arg;
    uint64_t h = atomic_load_explicit(&p->rows_hit, memory_order_relaxed);
    uint64_t m = atomic_load_explicit(&p->rows_missed, memory_order_relaxed);
    return h + m ? (double)h / (double)(h + m) : 0.0;
}

int predict_new(const struct predict_cfg *cfg, struct predict **out, char *err, size_t errlen)
{
    struct predict *p = mc_xcalloc(1, sizeof(*p));
    unsigned nthreads = cfg->infer_threads ? cfg->infer_threads : 1;
    int rc;

    MC_INIT_OBJ(p, PREDICT_MAGIC);
    p->cfg = *cfg;
    p->dir = cfg->models_dir ? mc_xstrdup(cfg->models_dir) : NULL;
    p->store_url = cfg->model_store ? mc_xstrdup(cfg->model_store) : NULL;
    p->store_models = cfg->store_models ? mc_xstrdup(cfg->store_models) : NULL;
    p->edge_name = mc_xstrdup(cfg->edge_name ? cfg->edge_name : "");
    p->cfg.model_store = p->store_url;
    p->cfg.store_models = p->store_models;
    p->cfg.edge_name = p->edge_name;
    p->region = mc_xstrdup(cfg->region ? cfg->region : "");
    p->admin_token = cfg->admin_token ? mc_xstrdup(cfg->admin_token) : NULL;
    p->cfg.models_dir = p->dir;
    p->cfg.region = p->region;
    p->cfg.admin_token = p->admin_token;
    if ((rc = predict__models_new(&p->cfg, nthreads, &p->models, err, errlen)) != 0)
        goto fail;
    if ((rc = predict__pool_new(nthreads, &p->pool)) != 0) {
        snprintf(err, errlen, "--infer-threads: cannot start threads: %s", strerror(-rc));
        goto fail;
    }
    metrics_init(p);
    metrics_gauge_fn("mlcdn_predict_queue_depth", "Rows queued for inference", NULL,
                     queue_depth_read, p);
    metrics_gauge_fn("mlcdn_predict_cache_hit_ratio",
                     "Share of rows answered from the prediction cache", NULL, hit_ratio_read, p);
    if (p->store_url)
        p->store = predict__store_new(&p->cfg, p->models);
    predict__models_reload(p->models, NULL);
    predict__models_watch(p->models);
    *out = p;
    return 0;
fail:
    predict_free(&p);
    return rc;
}

void predict_free(struct predict **pp)
{
    struct predict *p = *pp;

    if (!p)
        return;
    MC_CHECK_OBJ(p, PREDICT_MAGIC);
    /* The store's thread and the pool first: they use the registry's versions, models and
     * caches. */
    predict__store_free(&p->store);
    predict__pool_free(&p->pool);
    predict__models_free(&p->models);
    free(p->dir);
    free(p->store_url);
    free(p->store_models);
    free(p->edge_name);
    free(p->region);
    free(p->admin_token);
    MC_FREE_OBJ(p);
    *pp = NULL;
}

struct predict_loop *predict_loop_init(struct predict *p, uv_loop_t *loop)
{
    MC_CHECK_OBJ_NOTNULL(p, PREDICT_MAGIC);
    return predict__loop_new(loop);
}

void predict_loop_fini(struct predict_loop **plp)
{
    if (!*plp)
        return;
    predict__loop_close(*plp);
    *plp = NULL;
}

int predict_store_start(struct predict *p, const char *fetch_base, char *err, size_t errlen)
{
    MC_CHECK_OBJ_NOTNULL(p, PREDICT_MAGIC);
    return p->store ? predict__store_start(p->store, fetch_base, err, errlen) : 0;
}

int predict_sample_file(const char *path, const char *sample, size_t len, uint64_t model_memory,
                        char **out, char *err, size_t errlen)
{
    struct predict_cfg cfg = {.max_batch = 1, .model_memory = model_memory};
    struct predict_models *r = NULL;
    struct predict_version *v = NULL;
    json_error_t je;
    json_t *root = json_loadb(sample, len, JSON_REJECT_DUPLICATES, &je);
    struct buf b;
    int rc;

    buf_init(&b, 64u << 20);
    if (!json_is_object(root)) {
        snprintf(err, errlen, "sample: expected a JSON object (a /predict body)%s%s",
                 root ? "" : ": ", root ? "" : je.text);
        rc = -EINVAL;
        goto out;
    }
    if ((rc = predict__models_new(&cfg, 1, &r, err, errlen)) != 0)
        goto out;
    if ((rc = predict__models_load_file(r, "sample", 0, path, &v, err, errlen)) != 0)
        goto out;
    if ((rc = predict__sample_run(v, root, &b, err, errlen)) != 0)
        goto out;
    *out = mc_xstrdup(b.data);
out:
    predict__version_unref(&v);
    predict__models_free(&r);
    json_decref(root);
    buf_fini(&b);
    return rc;
}

int predict_store_reread(struct predict *p, struct buf *out)
{
    MC_CHECK_OBJ_NOTNULL(p, PREDICT_MAGIC);
    if (!p->store) {
        buf_puts(out, "{\"error\":\"no model store (--model-store)\",\"status\":409}\n");
        return 409;
    }
    /* A model store has no directory to rescan: every model known is read again (one whose
     * first roll-out failed is known too). */
    buf_puts(out, "{\"announced\":[");
    pthread_rwlock_rdlock(&p->models->lock);
    for (size_t i = 0; i < p->models->n; i++) {
        const char *name = p->models->models[i]->name;
        predict__store_announce(p->store, name, NULL, 0);
        if (i)
            buf_puts(out, ",");
        buf_json_str(out, name, strlen(name));
    }
    pthread_rwlock_unlock(&p->models->lock);
    buf_puts(out, "]}\n");
    /* And those the store gained meanwhile, unless the edge serves a fixed list. */
    if (!p->store_models || !*p->store_models)
        predict__store_announce(p->store, "", NULL, 0);
    return 202;
}

void predict_models_json(struct predict *p, struct buf *out)
{
    MC_CHECK_OBJ_NOTNULL(p, PREDICT_MAGIC);
    predict__models_describe(p->models, p->edge_name,
                             p->store ? (int64_t)predict__store_done(p->store) : -1, out);
}

void predict_models_brief(struct predict *p, size_t max, struct buf *out)
{
    MC_CHECK_OBJ_NOTNULL(p, PREDICT_MAGIC);
    predict__models_brief(p->models, max, out);
}

int predict_manifest_target(const char *name, const char *text, size_t len, const char *edge,
                            int64_t *stable, int64_t *canary, char *err, size_t errlen)
{
    struct predict_manifest m;
    struct predict_target t;

    if (predict__manifest_parse(name, text, len, &m, err, errlen) != 0)
        return -EINVAL;
    predict__policy_resolve(&m, edge, &t);
    *stable = t.stable;
    *canary = t.canary;
    predict__manifest_fini(&m);
    return 0;
}

void predict_set_draining(struct predict *p)
{
    if (p)
        atomic_store(&p->draining, 1);
}
