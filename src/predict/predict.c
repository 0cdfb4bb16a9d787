/* src/predict/predict.c: prediction endpoints of the edge's public listener.
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
 * (edge_batch.c), whose results come back on the same loop and are merged in the
 * original row order. The request holds a version reference from decoding to the answer,
 * so a reload never switches a request half-way. Every error is a 4xx/503 JSON body
 * naming the field at fault (docs/predict.md lists them). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/mc.h"
#include "core/units.h"
#include "edge/edge_int.h"
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
    case code:                                                                                     \
        return PREDICT_ST_##code;
        PREDICT_STATUSES(X)
#undef X
    default:
        return PREDICT_ST_OTHER;
    }
}

struct preq {
    unsigned magic;
    struct edge *e;
    struct predict_models *r;
    struct edge_worker *w;
    struct http_exchange *x;
    enum predict_ep ep;
    struct buf body;
    char name[PREDICT_MODEL_NAME_MAX + 8]; /* OIP: from the URL */
    int64_t version;                    /* OIP: from the URL, -1 for current */
    struct predict_version *v;                /* ref */
    size_t rows;
    void **in;           /* per input: rows * row_bytes */
    unsigned char *vals; /* rows * val_bytes */
    size_t *miss;
    size_t nmiss, hits;
    char *id;       /* OIP request id (JSON-escaped literal), or NULL */
    unsigned outsel; /* OIP: bit per output to return; 0 = all */
};

void predict__metrics_init(struct predict_models *r)
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
                snprintf(labels, sizeof(labels), "endpoint=\"%s\",status=\"other\"",
                         ep_names[e]);
            r->req[e][s] = metrics_counter("mlcdn_predict_requests_total",
                                           "Prediction API requests by endpoint and status",
                                           labels);
        }
}

static void count(struct predict_models *r, enum predict_ep ep, int status)
{
    metrics_counter_add(r->req[ep][st_index(status)], 1);
}

static void reply_err(struct predict_models *r, struct http_exchange *x, enum predict_ep ep, int status,
                      const char *msg)
{
    count(r, ep, status);
    if (status == 405) {
        struct buf b;
        buf_init(&b, 4096);
        buf_puts(&b, "{\"error\":");
        predict__json_str(&b, msg, strlen(msg));
        buf_puts(&b, ",\"status\":405}\n");
        http_x_respond(x, 405,
                       ep == PREDICT_EP_PREDICT || ep == PREDICT_EP_BATCH || ep == PREDICT_EP_V2_INFER
                           ? "Allow: POST\r\nContent-Type: application/json\r\n"
                           : "Allow: GET, HEAD\r\nContent-Type: application/json\r\n",
                       b.data, b.len);
        buf_fini(&b);
        return;
    }
    http_x_error(x, status, msg);
}

static void reply_json(struct edge *e, struct http_exchange *x, enum predict_ep ep, int status,
                       struct buf *b, const char *xcache)
{
    char h[256];
    count(e->models, ep, status);
    snprintf(h, sizeof(h),
             "Content-Type: application/json\r\nCache-Control: no-store\r\nX-Edge-Region: "
             "%s\r\n%s%s%s",
             e->cfg.region, xcache ? "X-Cache: " : "", xcache ? xcache : "",
             xcache ? "\r\n" : "");
    http_x_respond(x, status, h, b->data, b->len);
}

static void preq_free(struct preq *q)
{
    MC_CHECK_OBJ_NOTNULL(q, PREQ_MAGIC);
    if (q->in) {
        for (size_t i = 0; i < q->v->n_in; i++)
            free(q->in[i]);
        free(q->in);
    }
    free(q->vals);
    free(q->miss);
    free(q->id);
    buf_fini(&q->body);
    predict__version_unref(&q->v);
    MC_FREE_OBJ(q);
}

static void fail(struct preq *q, int status, const char *msg)
{
    reply_err(q->r, q->x, q->ep, status, msg);
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
        predict__json_str(b, v->out[o].name, strlen(v->out[o].name));
        buf_puts(b, ":");
        put_row_output(b, v, row, o);
    }
    buf_puts(b, "}");
}

static void put_tail(struct buf *b, struct preq *q)
{
    buf_puts(b, ",\"model\":");
    predict__json_str(b, q->v->model->name, strlen(q->v->model->name));
    buf_printf(b, ",\"model_version\":%" PRId64 ",\"edge_region\":", q->v->version);
    predict__json_str(b, q->e->cfg.region, strlen(q->e->cfg.region));
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
        for (size_t r = 0; r < q->rows; r++) {
            if (r)
                buf_puts(&b, ",");
            put_prediction(&b, v, q->vals + r * v->val_bytes);
        }
        buf_printf(&b, "],\"count\":%zu,\"cached\":%zu", q->rows, q->hits);
        put_tail(&b, q);
    } else {
        buf_puts(&b, "{\"model_name\":");
        predict__json_str(&b, v->model->name, strlen(v->model->name));
        buf_printf(&b, ",\"model_version\":\"%" PRId64 "\"", v->version);
        if (q->id)
            buf_printf(&b, ",\"id\":%s", q->id);
        buf_printf(&b, ",\"parameters\":{\"cached_rows\":%zu},\"outputs\":[", q->hits);
        int first = 1;
        for (size_t o = 0; o < v->n_out; o++) {
            const struct predict_io *io = &v->out[o];
            if (q->outsel && !(q->outsel & (1u << o)))
                continue;
            buf_puts(&b, first ? "{\"name\":" : ",{\"name\":");
            first = 0;
            predict__json_str(&b, io->name, strlen(io->name));
            buf_printf(&b, ",\"datatype\":\"%s\",\"shape\":[%zu", predict__json_oip_name(io->dtype),
                       q->rows);
            for (int d = 1; d < io->rank; d++)
                buf_printf(&b, ",%" PRId64, io->dims[d]);
            buf_puts(&b, "],\"data\":[");
            for (size_t r = 0; r < q->rows; r++) {
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
    reply_json(q->e, q->x, q->ep, 200, &b, xc);
    buf_fini(&b);
    preq_free(q);
}

/* ---- execution ---- */

static void on_done(struct predict_item *it, void *arg)
{
    struct preq *q = arg;
    struct predict_version *v = q->v;

    MC_CHECK_OBJ_NOTNULL(q, PREQ_MAGIC);
    if (it->status) {
        fail(q, it->status, it->msg);
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

    q->vals = malloc(MC_MAX(q->rows * v->val_bytes, (size_t)1));
    q->miss = malloc(q->rows * sizeof(*q->miss));
    if (!q->vals || !q->miss) {
        fail(q, 503, "out of memory for the predictions");
        return;
    }
    if (m->cache && v->key_bytes > sizeof(kbuf))
        key = mc_xmalloc(v->key_bytes);
    for (size_t r = 0; r < q->rows; r++) {
        if (m->cache) {
            predict__cache_key(v, q->in, r, key);
            if (cache_pred_get(m->cache, key, v->key_bytes, q->vals + r * v->val_bytes,
                               v->val_bytes, &vl) == 0 && vl == v->val_bytes) {
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
    atomic_fetch_add_explicit(&q->r->rows_hit, q->hits, memory_order_relaxed);
    atomic_fetch_add_explicit(&q->r->rows_missed, q->nmiss, memory_order_relaxed);
    if (q->nmiss == 0) {
        respond(q);
        return;
    }
    struct predict_item *it = predict__item_new(v, q->nmiss);
    for (size_t i = 0; i < v->n_in; i++) {
        size_t rb = v->in[i].row_bytes;
        if (q->nmiss == q->rows) {
            it->in[i] = q->in[i];
            q->in[i] = NULL;
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
                   (unsigned char *)q->in[i] + q->miss[k] * rb, rb);
    }
    predict__pool_submit(q->r->pool, q->w->pl, it, on_done, q);
}

/* ---- decoding ---- */

static int alloc_inputs(struct preq *q, char *msg, size_t mlen)
{
    struct predict_version *v = q->v;
    q->in = mc_xcalloc(v->n_in, sizeof(*q->in));
    for (size_t i = 0; i < v->n_in; i++) {
        size_t n = q->rows * v->in[i].row_bytes;
        q->in[i] = malloc(n ? n : 1);
        if (!q->in[i]) {
            snprintf(msg, mlen, "out of memory for %zu rows", q->rows);
            return -503;
        }
    }
    return 0;
}

static void shape_str(const struct predict_io *io, char *out, size_t len)
{
    size_t o = (size_t)snprintf(out, len, "[");
    for (int d = 1; d < io->rank && o < len; d++)
        o += (size_t)snprintf(out + o, len - o, "%s%" PRId64, d > 1 ? ", " : "", io->dims[d]);
    if (o < len)
        snprintf(out + o, len - o, "]");
}

static void input_names(const struct predict_version *v, char *out, size_t len)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < v->n_in && o < len; i++)
        o += (size_t)snprintf(out + o, len - o, "%s%s", i ? ", " : "", v->in[i].name);
}

static int check_rows(struct preq *q, const char *field, char *msg, size_t mlen)
{
    if (q->rows == 0) {
        snprintf(msg, mlen, "%s: expected at least one row", field);
        return -400;
    }
    if (q->rows > q->v->cfg.max_batch) {
        snprintf(msg, mlen, "%s: %zu rows is over max_batch %u of model %s", field, q->rows,
                 q->v->cfg.max_batch, q->v->model->name);
        return -400;
    }
    return 0;
}

/* One input's rows for /predict (one row) or /batch_predict (array of rows). */
static int fill_seed_input(struct preq *q, size_t i, const json_t *val, const char *field,
                           char *msg, size_t mlen)
{
    const struct predict_io *io = &q->v->in[i];
    char shp[96], f[128];

    if (q->ep == PREDICT_EP_PREDICT) {
        int64_t n = predict__json_count(val, io->dtype, field, msg, mlen);
        if (n < 0)
            return -400;
        if (n != io->row_numel) {
            shape_str(io, shp, sizeof(shp));
            snprintf(msg, mlen, "%s: expected %" PRId64 " values for input %s of model %s "
                     "(shape %s), got %" PRId64, field, io->row_numel, io->name,
                     q->v->model->name, shp, n);
            return -400;
        }
        return predict__json_fill(val, 0, io->dtype, q->in[i], n, field, msg, mlen) ? -400 : 0;
    }
    for (size_t r = 0; r < q->rows; r++) {
        const json_t *row = json_array_get(val, r);
        snprintf(f, sizeof(f), "%s[%zu]", field, r);
        int64_t n = predict__json_count(row, io->dtype, f, msg, mlen);
        if (n < 0)
            return -400;
        if (n != io->row_numel) {
            shape_str(io, shp, sizeof(shp));
            snprintf(msg, mlen, "%s: expected %" PRId64 " values for input %s of model %s "
                     "(shape %s), got %" PRId64, f, io->row_numel, io->name,
                     q->v->model->name, shp, n);
            return -400;
        }
        if (predict__json_fill(row, 0, io->dtype, (unsigned char *)q->in[i] + r * io->row_bytes, n,
                         f, msg, mlen))
            return -400;
    }
    return 0;
}

static int batch_rows(const json_t *val, const char *field, size_t *rows, char *msg,
                      size_t mlen)
{
    if (!json_is_array(val)) {
        snprintf(msg, mlen, "%s: expected an array of rows", field);
        return -400;
    }
    *rows = json_array_size(val);
    return 0;
}

static int decode_seed(struct preq *q, json_t *root, char *msg, size_t mlen)
{
    json_t *jm = json_object_get(root, "model"), *jv = json_object_get(root, "model_version");
    json_t *feat = json_object_get(root, "features"), *ins = json_object_get(root, "inputs");
    const char *name = NULL;
    int64_t version = -1;
    char names[256], field[128];
    int rc;

    if (jm && !json_is_null(jm)) {
        if (!json_is_string(jm)) {
            snprintf(msg, mlen, "model: expected a string");
            return -400;
        }
        name = json_string_value(jm);
    }
    if (!jv)
        jv = json_object_get(root, "version");
    if (jv && !json_is_null(jv)) {
        char *end;
        if (json_is_integer(jv) && json_integer_value(jv) >= 0)
            version = json_integer_value(jv);
        else if (json_is_string(jv) && *json_string_value(jv) &&
                 (version = strtoll(json_string_value(jv), &end, 10)) >= 0 && !*end)
            ;
        else {
            snprintf(msg, mlen, "model_version: expected a non-negative integer");
            return -400;
        }
    }
    if ((rc = predict__models_get(q->r, name, version, &q->v, msg, mlen)) != 0)
        return rc;
    struct predict_version *v = q->v;
    if (feat && ins) {
        snprintf(msg, mlen, "features: send either features or inputs, not both");
        return -400;
    }
    if (feat) {
        if (v->n_in != 1) {
            input_names(v, names, sizeof(names));
            snprintf(msg, mlen, "features: model %s has %zu inputs (%s); send them by name as "
                     "\"inputs\": {...}", v->model->name, v->n_in, names);
            return -400;
        }
        if (q->ep == PREDICT_EP_BATCH) {
            if ((rc = batch_rows(feat, "features", &q->rows, msg, mlen)) != 0 ||
                (rc = check_rows(q, "features", msg, mlen)) != 0)
                return rc;
        } else {
            q->rows = 1;
        }
        if ((rc = alloc_inputs(q, msg, mlen)) != 0)
            return rc;
        return fill_seed_input(q, 0, feat, "features", msg, mlen);
    }
    if (!ins) {
        snprintf(msg, mlen, "features: missing (an array of numbers, or named inputs as "
                 "\"inputs\": {...})");
        return -400;
    }
    if (!json_is_object(ins)) {
        snprintf(msg, mlen, "inputs: expected an object mapping input names to values");
        return -400;
    }
    const char *k;
    json_t *val;
    json_object_foreach(ins, k, val) {
        int found = 0;
        for (size_t i = 0; i < v->n_in; i++)
            found |= !strcmp(v->in[i].name, k);
        if (!found) {
            input_names(v, names, sizeof(names));
            snprintf(msg, mlen, "inputs.%.64s: model %s has no such input (inputs: %s)", k,
                     v->model->name, names);
            return -400;
        }
    }
    for (size_t i = 0; i < v->n_in; i++) {
        if (!json_object_get(ins, v->in[i].name)) {
            input_names(v, names, sizeof(names));
            snprintf(msg, mlen, "inputs.%s: missing (model %s needs %s)", v->in[i].name,
                     v->model->name, names);
            return -400;
        }
    }
    if (q->ep == PREDICT_EP_BATCH) {
        for (size_t i = 0; i < v->n_in; i++) {
            size_t n;
            snprintf(field, sizeof(field), "inputs.%s", v->in[i].name);
            if ((rc = batch_rows(json_object_get(ins, v->in[i].name), field, &n, msg, mlen)))
                return rc;
            if (i == 0) {
                q->rows = n;
            } else if (n != q->rows) {
                snprintf(msg, mlen, "%s: %zu rows, but inputs.%s has %zu", field, n,
                         v->in[0].name, q->rows);
                return -400;
            }
        }
        if ((rc = check_rows(q, "inputs", msg, mlen)) != 0)
            return rc;
    } else {
        q->rows = 1;
    }
    if ((rc = alloc_inputs(q, msg, mlen)) != 0)
        return rc;
    for (size_t i = 0; i < v->n_in; i++) {
        snprintf(field, sizeof(field), "inputs.%s", v->in[i].name);
        if ((rc = fill_seed_input(q, i, json_object_get(ins, v->in[i].name), field, msg,
                                  mlen)))
            return rc;
    }
    return 0;
}

static int compatible(int decl, int dtype)
{
    switch (dtype) {
    case INFER_DT_FLOAT:
    case INFER_DT_DOUBLE:
        return 1;
    case INFER_DT_INT64:
    case INFER_DT_INT32:
        return decl == INFER_DT_INT64 || decl == INFER_DT_INT32 || decl == INFER_DT_BOOL;
    case INFER_DT_BOOL:
        return decl == INFER_DT_BOOL;
    }
    return 0;
}

static int decode_oip(struct preq *q, json_t *root, char *msg, size_t mlen)
{
    json_t *ins = json_object_get(root, "inputs"), *outs = json_object_get(root, "outputs");
    json_t *jid = json_object_get(root, "id");
    char names[256], field[96], shp[96];
    int rc;

    if ((rc = predict__models_get(q->r, q->name, q->version, &q->v, msg, mlen)) != 0)
        return rc;
    struct predict_version *v = q->v;
    if (jid && !json_is_null(jid)) {
        if (!json_is_string(jid)) {
            snprintf(msg, mlen, "id: expected a string");
            return -400;
        }
        struct buf b;
        buf_init(&b, 4096);
        if (predict__json_str(&b, json_string_value(jid), json_string_length(jid)), b.len >= 4096) {
            buf_fini(&b);
            snprintf(msg, mlen, "id: longer than 4 KiB");
            return -400;
        }
        q->id = buf_take(&b, NULL);
    }
    if (!json_is_array(ins) || json_array_size(ins) == 0) {
        snprintf(msg, mlen, "inputs: expected a non-empty array of tensors "
                 "({\"name\", \"shape\", \"datatype\", \"data\"})");
        return -400;
    }
    size_t nin = json_array_size(ins);
    const json_t *given[16] = {0};
    int decl[16] = {0};
    q->rows = 0;
    for (size_t k = 0; k < nin; k++) {
        json_t *t = json_array_get(ins, k), *jn, *jd, *js;
        if (!json_is_object(t)) {
            snprintf(msg, mlen, "inputs[%zu]: expected an object", k);
            return -400;
        }
        jn = json_object_get(t, "name");
        if (!json_is_string(jn)) {
            snprintf(msg, mlen, "inputs[%zu].name: expected a string", k);
            return -400;
        }
        int idx = -1;
        for (size_t i = 0; i < v->n_in; i++)
            if (!strcmp(v->in[i].name, json_string_value(jn)))
                idx = (int)i;
        if (idx < 0) {
            input_names(v, names, sizeof(names));
            snprintf(msg, mlen, "inputs[%zu].name: model %s has no input '%.64s' (inputs: %s)",
                     k, v->model->name, json_string_value(jn), names);
            return -400;
        }
        if (given[idx]) {
            snprintf(msg, mlen, "inputs[%zu].name: input '%s' given twice", k, v->in[idx].name);
            return -400;
        }
        const struct predict_io *io = &v->in[idx];
        jd = json_object_get(t, "datatype");
        int dt = json_is_string(jd) ? predict__json_oip_dtype(json_string_value(jd)) : 0;
        if (!dt) {
            snprintf(msg, mlen, "inputs[%zu].datatype: expected one of FP32, INT64, INT32, "
                     "BOOL (FP64 too)", k);
            return -400;
        }
        if (!compatible(dt, io->dtype)) {
            snprintf(msg, mlen, "inputs[%zu].datatype: %s given, input %s of model %s is %s",
                     k, json_string_value(jd), io->name, v->model->name,
                     predict__json_oip_name(io->dtype));
            return -400;
        }
        js = json_object_get(t, "shape");
        shape_str(io, shp, sizeof(shp));
        int ok = json_is_array(js) && (int)json_array_size(js) == io->rank;
        int64_t rows = 0;
        for (int d = 0; ok && d < io->rank; d++) {
            json_t *e = json_array_get(js, (size_t)d);
            if (!json_is_integer(e) || json_integer_value(e) < 0) {
                ok = 0;
                break;
            }
            if (d == 0)
                rows = json_integer_value(e);
            else if (json_integer_value(e) != io->dims[d])
                ok = 0;
        }
        if (!ok) {
            snprintf(msg, mlen, "inputs[%zu].shape: expected [batch] + %s for input %s of "
                     "model %s", k, shp, io->name, v->model->name);
            return -400;
        }
        if (q->rows && (size_t)rows != q->rows) {
            snprintf(msg, mlen, "inputs[%zu].shape: batch %" PRId64 " differs from the other "
                     "inputs' %zu", k, rows, q->rows);
            return -400;
        }
        q->rows = (size_t)rows;
        if (!json_object_get(t, "data")) {
            snprintf(msg, mlen, "inputs[%zu].data: missing", k);
            return -400;
        }
        given[idx] = json_object_get(t, "data");
        decl[idx] = dt;
    }
    for (size_t i = 0; i < v->n_in; i++) {
        if (!given[i]) {
            input_names(v, names, sizeof(names));
            snprintf(msg, mlen, "inputs: input '%s' of model %s is missing (inputs: %s)",
                     v->in[i].name, v->model->name, names);
            return -400;
        }
    }
    if ((rc = check_rows(q, "inputs[0].shape", msg, mlen)) != 0)
        return rc;
    if (outs && !json_is_null(outs)) {
        if (!json_is_array(outs)) {
            snprintf(msg, mlen, "outputs: expected an array of {\"name\": ...}");
            return -400;
        }
        for (size_t k = 0; k < json_array_size(outs); k++) {
            json_t *jn = json_object_get(json_array_get(outs, k), "name");
            int idx = -1;
            if (!json_is_string(jn)) {
                snprintf(msg, mlen, "outputs[%zu].name: expected a string", k);
                return -400;
            }
            for (size_t o = 0; o < v->n_out; o++)
                if (!strcmp(v->out[o].name, json_string_value(jn)))
                    idx = (int)o;
            if (idx < 0) {
                size_t p = 0;
                names[0] = '\0';
                for (size_t o = 0; o < v->n_out && p < sizeof(names); o++)
                    p += (size_t)snprintf(names + p, sizeof(names) - p, "%s%s", o ? ", " : "",
                                          v->out[o].name);
                snprintf(msg, mlen, "outputs[%zu].name: model %s has no output '%.64s' "
                         "(outputs: %s)", k, v->model->name, json_string_value(jn), names);
                return -400;
            }
            q->outsel |= 1u << idx;
        }
    }
    if ((rc = alloc_inputs(q, msg, mlen)) != 0)
        return rc;
    for (size_t i = 0; i < v->n_in; i++) {
        size_t k = 0;
        for (; k < nin; k++)
            if (json_object_get(json_array_get(ins, k), "data") == given[i])
                break;
        snprintf(field, sizeof(field), "inputs[%zu].data", k);
        if (predict__json_fill(given[i], decl[i], v->in[i].dtype, q->in[i],
                         (int64_t)q->rows * v->in[i].row_numel, field, msg, mlen))
            return -400;
    }
    return 0;
}

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
    if (predict__models_get(q->r, f.model ? name : NULL, f.version, &q->v, msg, sizeof(msg)) != 0)
        return 0;
    const struct predict_io *io = &q->v->in[0];
    if (q->v->n_in != 1 || io->dtype != INFER_DT_FLOAT || (int64_t)f.n != io->row_numel) {
        predict__version_unref(&q->v);
        return 0;
    }
    q->rows = 1;
    if (alloc_inputs(q, msg, sizeof(msg)) != 0) {
        fail(q, 503, msg);
        return 1;
    }
    float *dst = q->in[0];
    for (size_t i = 0; i < f.n; i++)
        dst[i] = (float)vals[i];
    run(q);
    return 1;
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
    if (q->body.len > q->e->cfg.max_body) {
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
        fail(q, -rc, m);
        return;
    }
    run(q);
}

static void start_body(struct edge *e, struct http_exchange *x, enum predict_ep ep, const char *name,
                       int64_t version)
{
    struct preq *q = mc_xcalloc(1, sizeof(*q));
    MC_INIT_OBJ(q, PREQ_MAGIC);
    q->e = e;
    q->r = e->models;
    q->w = http_x_worker(x);
    q->x = x;
    q->ep = ep;
    q->version = version;
    if (name)
        snprintf(q->name, sizeof(q->name), "%s", name);
    buf_init(&q->body, e->cfg.max_body + 1);
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

static void oip_model(struct edge *e, struct http_exchange *x, const char *name,
                      int64_t version, int ready)
{
    struct predict_models *r = e->models;
    struct predict_version *v = NULL;
    char msg[512];
    struct buf b;
    enum predict_ep ep = ready ? PREDICT_EP_V2_READY : PREDICT_EP_V2_META;
    int rc = predict__models_get(r, name, version, &v, msg, sizeof(msg));

    buf_init(&b, 1 << 20);
    if (rc == -503 && ready) {
        buf_puts(&b, "{\"name\":");
        predict__json_str(&b, name, strlen(name));
        buf_puts(&b, ",\"ready\":false}\n");
        reply_json(e, x, ep, 503, &b, NULL);
        buf_fini(&b);
        return;
    }
    if (rc) {
        buf_fini(&b);
        reply_err(r, x, ep, -rc, msg);
        return;
    }
    buf_puts(&b, "{\"name\":");
    predict__json_str(&b, v->model->name, strlen(v->model->name));
    if (ready) {
        buf_puts(&b, ",\"ready\":true}\n");
    } else {
        buf_puts(&b, ",\"versions\":[");
        pthread_rwlock_rdlock(&r->lock);
        for (size_t k = 0; k < v->model->nvers; k++)
            buf_printf(&b, "%s\"%" PRId64 "\"", k ? "," : "", v->model->vers[k]->version);
        pthread_rwlock_unlock(&r->lock);
        buf_printf(&b, "],\"platform\":\"onnx\",\"inputs\":");
        predict__json_io(&b, v->in, v->n_in);
        buf_puts(&b, ",\"outputs\":");
        predict__json_io(&b, v->out, v->n_out);
        buf_printf(&b, ",\"parameters\":{\"version\":\"%" PRId64 "\",\"max_batch\":%u}}\n",
                   v->version, v->cfg.max_batch);
    }
    predict__version_unref(&v);
    reply_json(e, x, ep, 200, &b, NULL);
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

static void oip_route(struct edge *e, struct http_exchange *x, struct http_str path)
{
    const struct http_request *req = http_x_request(x);
    int get = req->method == HTTP_M_GET || req->method == HTTP_M_HEAD;
    struct predict_models *r = e->models;
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
        reply_err(r, x, PREDICT_EP_V2_META, 404, "unknown /v2 path");
        return;
    }
    if (n == 0 || (n == 2 && str_eq(s[0], "health"))) {
        enum predict_ep ep = n ? PREDICT_EP_V2_HEALTH : PREDICT_EP_V2_META;
        if (!get) {
            reply_err(r, x, ep, 405, "use GET");
            return;
        }
        buf_init(&b, 4096);
        int status = 200;
        if (n == 0) {
            buf_puts(&b, "{\"name\":\"mlcdn\",\"version\":\"1\",\"extensions\":[]}\n");
        } else if (str_eq(s[1], "live")) {
            buf_puts(&b, "{\"live\":true}\n");
        } else if (str_eq(s[1], "ready")) {
            int ready = 0;
            pthread_rwlock_rdlock(&r->lock);
            for (size_t i = 0; i < r->n; i++)
                ready |= r->models[i]->cur != NULL;
            pthread_rwlock_unlock(&r->lock);
            ready = ready && !atomic_load(&e->draining);
            status = ready ? 200 : 503;
            buf_puts(&b, ready ? "{\"ready\":true}\n" : "{\"ready\":false}\n");
        } else {
            buf_fini(&b);
            reply_err(r, x, ep, 404, "unknown /v2/health path (live, ready)");
            return;
        }
        reply_json(e, x, ep, status, &b, NULL);
        buf_fini(&b);
        return;
    }
    if (!str_eq(s[0], "models") || n < 2 || s[1].len == 0 || s[1].len > PREDICT_MODEL_NAME_MAX) {
        reply_err(r, x, PREDICT_EP_V2_META, 404, "unknown /v2 path (health/live, health/ready, "
                  "models/NAME[/versions/V][/ready|/infer])");
        return;
    }
    snprintf(name, sizeof(name), "%.*s", (int)s[1].len, s[1].p);
    size_t k = 2;
    if (n > k && str_eq(s[k], "versions")) {
        char vb[24], *end;
        if (n <= k + 1 || s[k + 1].len == 0 || s[k + 1].len >= sizeof(vb)) {
            reply_err(r, x, PREDICT_EP_V2_META, 404, "versions: expected /versions/NUMBER");
            return;
        }
        snprintf(vb, sizeof(vb), "%.*s", (int)s[k + 1].len, s[k + 1].p);
        version = strtoll(vb, &end, 10);
        if (*end || version < 0 || vb[0] < '0' || vb[0] > '9') {
            char m[96];
            snprintf(m, sizeof(m), "versions: '%s' is not a version number", vb);
            reply_err(r, x, PREDICT_EP_V2_META, 404, m);
            return;
        }
        k += 2;
    }
    if (n == k) {
        if (!get) {
            reply_err(r, x, PREDICT_EP_V2_META, 405, "model metadata: use GET");
            return;
        }
        oip_model(e, x, name, version, 0);
    } else if (n == k + 1 && str_eq(s[k], "ready")) {
        if (!get) {
            reply_err(r, x, PREDICT_EP_V2_READY, 405, "model ready: use GET");
            return;
        }
        oip_model(e, x, name, version, 1);
    } else if (n == k + 1 && str_eq(s[k], "infer")) {
        if (req->method != HTTP_M_POST) {
            reply_err(r, x, PREDICT_EP_V2_INFER, 405, "infer: use POST");
            return;
        }
        start_body(e, x, PREDICT_EP_V2_INFER, name, version);
    } else {
        reply_err(r, x, PREDICT_EP_V2_META, 404, "unknown /v2/models path ([/versions/V][/ready|/infer])");
    }
}

int edge_predict_route(struct edge *e, struct http_exchange *x)
{
    const struct http_request *req = http_x_request(x);
    struct http_str p = req->path;
    enum predict_ep ep;

    if (str_eq(p, "/predict"))
        ep = PREDICT_EP_PREDICT;
    else if (str_eq(p, "/batch_predict"))
        ep = PREDICT_EP_BATCH;
    else if ((p.len == 3 || (p.len > 3 && p.p[3] == '/')) && !memcmp(p.p, "/v2", 3)) {
        oip_route(e, x, p);
        return 1;
    } else
        return 0;
    if (req->method != HTTP_M_POST) {
        reply_err(e->models, x, ep, 405, ep == PREDICT_EP_PREDICT ? "/predict: use POST with a JSON body"
                                                          : "/batch_predict: use POST with a "
                                                            "JSON body");
        return 1;
    }
    start_body(e, x, ep, NULL, -1);
    return 1;
}

/* ---- admin ---- */

struct reload_job {
    uv_work_t work;
    struct edge *e;
    struct http_exchange *x;
    struct buf report;
};

static void reload_work(uv_work_t *w)
{
    struct reload_job *j = w->data;
    predict__models_reload(j->e->models, &j->report);
}

static void reload_after(uv_work_t *w, int status)
{
    struct reload_job *j = w->data;
    (void)status;
    reply_json(j->e, j->x, PREDICT_EP_ADMIN, 200, &j->report, NULL);
    buf_fini(&j->report);
    free(j);
}

int edge_predict_admin(struct edge *e, struct http_exchange *x, int authorized)
{
    const struct http_request *req = http_x_request(x);
    struct predict_models *r = e->models;

    if (str_eq(req->path, "/admin/models")) {
        if (req->method != HTTP_M_GET && req->method != HTTP_M_HEAD) {
            reply_err(r, x, PREDICT_EP_ADMIN, 405, "/admin/models: use GET");
            return 1;
        }
        struct buf b;
        buf_init(&b, 16u << 20);
        predict__models_describe(r, &b);
        reply_json(e, x, PREDICT_EP_ADMIN, 200, &b, NULL);
        buf_fini(&b);
        return 1;
    }
    if (!str_eq(req->path, "/admin/models/reload"))
        return 0;
    if (req->method != HTTP_M_POST) {
        static const char msg[] = "{\"error\":\"/admin/models/reload: use POST\","
                                  "\"status\":405}\n";
        count(r, PREDICT_EP_ADMIN, 405);
        http_x_respond(x, 405, "Allow: POST\r\nContent-Type: application/json\r\n", msg,
                       sizeof(msg) - 1);
        return 1;
    }
    if (!e->cfg.admin_token) {
        reply_err(r, x, PREDICT_EP_ADMIN, 403, "reload is disabled: start the edge with --admin-token");
        return 1;
    }
    if (!authorized) {
        count(r, PREDICT_EP_ADMIN, 401);
        static const char msg[] = "{\"error\":\"reload needs Authorization: Bearer <admin "
                                  "token>\",\"status\":401}\n";
        http_x_respond(x, 401, "WWW-Authenticate: Bearer\r\nContent-Type: application/json\r\n",
                       msg, sizeof(msg) - 1);
        return 1;
    }
    struct reload_job *j = mc_xcalloc(1, sizeof(*j));
    j->e = e;
    j->x = x;
    j->work.data = j;
    buf_init(&j->report, 4u << 20);
    /* Loading may take a while: off the loop, on libuv's pool (not the inference pool). */
    if (uv_queue_work(http_x_loop(x), &j->work, reload_work, reload_after) != 0) {
        buf_fini(&j->report);
        free(j);
        reply_err(r, x, PREDICT_EP_ADMIN, 503, "cannot queue the reload");
    }
    return 1;
}

void edge_predict_loop_init(struct edge_worker *w)
{
    if (w->e->models)
        w->pl = predict__loop_new(w->loop);
}

void edge_predict_loop_fini(struct edge_worker *w)
{
    if (w->pl) {
        predict__loop_close(w->pl);
        w->pl = NULL;
    }
}
