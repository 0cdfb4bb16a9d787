/* src/ctl/ctl_fanout.c: one HTTP request to many targets at once (libcurl multi).
 *
 * Every target gets its own easy handle; all run in one multi handle driven by
 * curl_multi_poll on the calling thread. A target that gives no answer (refused, reset,
 * timed out) or answers 5xx is tried again after a backoff (25 ms, doubling) while
 * attempts remain; a 4xx is final, the request itself was refused. Elapsed times count
 * from the start of the whole fan-out, so the slowest target's time is the propagation
 * time of the operation. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "core/buf.h"
#include "core/mc.h"
#include "ctl/ctl_int.h"

#define FANOUT_BODY_MAX (16u << 20)

struct tgt {
    CURL *easy;
    char url[2048];
    struct buf body;
    struct curl_slist *hdrs;
    int running;
    int done;
    double retry_at; /* ms since start; 0: not waiting */
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static size_t on_body(char *p, size_t sz, size_t nm, void *arg)
{
    struct tgt *t = arg;
    if (buf_append(&t->body, p, sz * nm) < 0)
        return 0; /* over the cap: the transfer fails */
    return sz * nm;
}

static int start(CURLM *m, const struct ctl_call *c, struct tgt *t)
{
    t->easy = curl_easy_init();
    if (!t->easy)
        return -ENOMEM;
    buf_reset(&t->body);
    curl_easy_setopt(t->easy, CURLOPT_URL, t->url);
    curl_easy_setopt(t->easy, CURLOPT_CUSTOMREQUEST, c->method);
    if (c->body) {
        curl_easy_setopt(t->easy, CURLOPT_POSTFIELDS, c->body);
        curl_easy_setopt(t->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->len);
    } else if (!strcmp(c->method, "GET")) {
        curl_easy_setopt(t->easy, CURLOPT_HTTPGET, 1L);
    } else if (!strcmp(c->method, "HEAD")) {
        curl_easy_setopt(t->easy, CURLOPT_NOBODY, 1L);
    }
    curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, t->hdrs);
    curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS, c->timeout_ms > 0 ? c->timeout_ms : 2000L);
    curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
    if (curl_multi_add_handle(m, t->easy) != CURLM_OK) {
        curl_easy_cleanup(t->easy);
        t->easy = NULL;
        return -ENOMEM;
    }
    t->running = 1;
    return 0;
}

int ctl_fanout(const struct ctl_call *c, const char *const *bases, size_t n, struct ctl_reply *out)
{
    struct tgt *t;
    CURLM *m;
    char auth[1200];
    double t0 = now_ms();
    size_t left = n;
    int err = 0;

    if (n > CTL_MAX_TARGETS)
        return -EINVAL;
    memset(out, 0, n * sizeof(*out));
    if (n == 0)
        return 0;
    m = curl_multi_init();
    if (!m)
        return -ENOMEM;
    t = mc_xcalloc(n, sizeof(*t));
    for (size_t i = 0; i < n; i++) {
        size_t bl = strlen(bases[i]);
        while (bl > 0 && bases[i][bl - 1] == '/')
            bl--;
        snprintf(t[i].url, sizeof(t[i].url), "%.*s%s", (int)bl, bases[i], c->path);
        buf_init(&t[i].body, FANOUT_BODY_MAX);
        if (c->body)
            t[i].hdrs = curl_slist_append(t[i].hdrs, "Content-Type: application/json");
        /* Without this, curl waits for a 100 Continue on larger bodies. */
        t[i].hdrs = curl_slist_append(t[i].hdrs, "Expect:");
        if (c->token) {
            snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->token);
            t[i].hdrs = curl_slist_append(t[i].hdrs, auth);
        }
        out[i].body = NULL;
    }
    for (size_t i = 0; i < n; i++)
        if ((err = start(m, c, &t[i])) < 0)
            goto out;
    while (left > 0) {
        int still, msgs, wait_ms = 100;
        double now = now_ms() - t0;
        for (size_t i = 0; i < n; i++) {
            if (t[i].done || t[i].running || t[i].retry_at == 0)
                continue;
            if (t[i].retry_at <= now) {
                t[i].retry_at = 0;
                if ((err = start(m, c, &t[i])) < 0)
                    goto out;
            } else if (t[i].retry_at - now < wait_ms) {
                wait_ms = (int)(t[i].retry_at - now) + 1;
            }
        }
        curl_multi_perform(m, &still);
        CURLMsg *msg;
        while ((msg = curl_multi_info_read(m, &msgs)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct tgt *x;
            long status = 0;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
            size_t i = (size_t)(x - t);
            CURLcode rc = msg->data.result;
            if (rc == CURLE_OK)
                curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
            curl_multi_remove_handle(m, x->easy);
            curl_easy_cleanup(x->easy);
            x->easy = NULL;
            x->running = 0;
            out[i].attempts++;
            out[i].ms = now_ms() - t0;
            out[i].status = (int)status;
            if (rc != CURLE_OK)
                snprintf(out[i].error, sizeof(out[i].error), "%s", curl_easy_strerror(rc));
            else if (status >= 500)
                snprintf(out[i].error, sizeof(out[i].error), "HTTP %ld", status);
            else
                out[i].error[0] = 0;
            int again = rc != CURLE_OK || (status >= 500 && !c->answer_final);
            if (again && out[i].attempts <= c->retries) {
                x->retry_at = out[i].ms + 25.0 * (double)(1u << (out[i].attempts - 1));
                if (x->retry_at - out[i].ms < wait_ms)
                    wait_ms = (int)(x->retry_at - out[i].ms) + 1;
                continue;
            }
            free(out[i].body);
            out[i].len = x->body.len;
            out[i].body = mc_xmalloc(x->body.len + 1);
            memcpy(out[i].body, x->body.data ? x->body.data : "", x->body.len);
            out[i].body[x->body.len] = 0;
            x->done = 1;
            left--;
        }
        if (left > 0)
            curl_multi_poll(m, NULL, 0, wait_ms, NULL);
    }
out:
    for (size_t i = 0; i < n; i++) {
        if (t[i].easy) {
            curl_multi_remove_handle(m, t[i].easy);
            curl_easy_cleanup(t[i].easy);
        }
        if (!out[i].body) {
            out[i].body = mc_xmalloc(1);
            out[i].body[0] = 0;
        }
        curl_slist_free_all(t[i].hdrs);
        buf_fini(&t[i].body);
    }
    free(t);
    curl_multi_cleanup(m);
    return err;
}

void ctl_replies_fini(struct ctl_reply *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(r[i].body);
        r[i].body = NULL;
    }
}
