/* src/http/http_client.c: libcurl multi driven by libuv (see http_client.h).
 *
 * curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when to wake it
 * (CURLMOPT_TIMERFUNCTION); we map each socket to a uv_poll_t and the timeout to one
 * uv_timer_t, and call curl_multi_socket_action() from their callbacks. Finished
 * transfers are collected after every action and their `done` callbacks run on the loop.
 * Each uv handle is freed in its close callback (libuv's handle lifetime rule). */
#include "http/http_client.h"

#include <errno.h>
#include <stdlib.h>

#include "core/mc.h"

#define HTTP_CLIENT_MAGIC 0x48434c31u
#define SOCK_CTX_MAGIC 0x48435331u

struct xfer {
    struct xfer *prev, *next; /* running transfers, so free() can abort them */
    CURL *easy;
    http_client_done_f *done;
    void *arg;
};

struct http_client {
    unsigned magic;
    uv_loop_t *loop;
    struct xfer *xfers;
    CURLM *multi;
    uv_timer_t *timer;
    unsigned running;
    int closing;
};

struct sock_ctx {
    unsigned magic;
    uv_poll_t poll;
    curl_socket_t fd;
    struct http_client *c;
};

static void xfer_unlink(struct http_client *c, struct xfer *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        c->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
}

static void check_done(struct http_client *c)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode res = msg->data.result;
        struct xfer *x = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        curl_multi_remove_handle(c->multi, easy);
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        c->running--;
        if (x) {
            xfer_unlink(c, x);
            http_client_done_f *done = x->done;
            void *arg = x->arg;
            free(x);
            /* `done` may free the easy handle or add new transfers: msg is not used after. */
            done(easy, res, arg);
        }
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct sock_ctx *s = h->data;
    int flags = 0, still;

    MC_CHECK_OBJ_NOTNULL(s, SOCK_CTX_MAGIC);
    struct http_client *c = s->c;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(c->multi, s->fd, flags, &still);
    check_done(c);
}

static void on_timer(uv_timer_t *t)
{
    struct http_client *c = t->data;
    int still;

    MC_CHECK_OBJ_NOTNULL(c, HTTP_CLIENT_MAGIC);
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &still);
    check_done(c);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct http_client *c = userp;

    (void)multi;
    if (c->closing)
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(c->timer);
    else
        /* 0 means "act now": run on the next loop iteration, not recursively. */
        uv_timer_start(c->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

static void sock_closed(uv_handle_t *h)
{
    struct sock_ctx *s = h->data;
    MC_FREE_OBJ(s);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *sockp)
{
    struct http_client *c = userp;
    struct sock_ctx *s = sockp;
    int events = 0;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            uv_poll_stop(&s->poll);
            curl_multi_assign(c->multi, fd, NULL);
            uv_close((uv_handle_t *)&s->poll, sock_closed);
        }
        return 0;
    }
    if (!s) {
        s = mc_xcalloc(1, sizeof(*s));
        MC_INIT_OBJ(s, SOCK_CTX_MAGIC);
        s->fd = fd;
        s->c = c;
        if (uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
            MC_FREE_OBJ(s);
            return -1;
        }
        s->poll.data = s;
        curl_multi_assign(c->multi, fd, s);
    }
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

static void global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

int http_client_new(uv_loop_t *loop, struct http_client **out)
{
    static uv_once_t once = UV_ONCE_INIT;
    struct http_client *c;

    uv_once(&once, global_init);
    c = mc_xcalloc(1, sizeof(*c));
    MC_INIT_OBJ(c, HTTP_CLIENT_MAGIC);
    c->loop = loop;
    c->multi = curl_multi_init();
    if (!c->multi) {
        MC_FREE_OBJ(c);
        return -ENOMEM;
    }
    c->timer = mc_xcalloc(1, sizeof(*c->timer));
    uv_timer_init(loop, c->timer);
    c->timer->data = c;
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    /* Keep a few idle connections per origin host for reuse across requests. */
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, 64L);
    *out = c;
    return 0;
}

static void timer_closed(uv_handle_t *h)
{
    free(h);
}

void http_client_free(struct http_client **cp)
{
    struct http_client *c = *cp;

    if (!c)
        return;
    MC_CHECK_OBJ_NOTNULL(c, HTTP_CLIENT_MAGIC);
    c->closing = 1;
    /* Removing an easy handle makes curl close its sockets through socket_cb. */
    while (c->xfers) {
        struct xfer *x = c->xfers;
        c->xfers = x->next;
        curl_multi_remove_handle(c->multi, x->easy);
        curl_easy_setopt(x->easy, CURLOPT_PRIVATE, NULL);
        free(x);
    }
    curl_multi_cleanup(c->multi);
    uv_timer_stop(c->timer);
    uv_close((uv_handle_t *)c->timer, timer_closed);
    MC_FREE_OBJ(c);
    *cp = NULL;
}

int http_client_add(struct http_client *c, CURL *easy, http_client_done_f *done, void *arg)
{
    struct xfer *x;

    MC_CHECK_OBJ_NOTNULL(c, HTTP_CLIENT_MAGIC);
    if (!easy || !done || c->closing)
        return -EINVAL;
    x = mc_xcalloc(1, sizeof(*x));
    x->easy = easy;
    x->done = done;
    x->arg = arg;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, (char *)x);
    /* Signals would break a multi-threaded daemon; curl must not use them for timeouts. */
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    if (curl_multi_add_handle(c->multi, easy) != CURLM_OK) {
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        free(x);
        return -EINVAL;
    }
    x->next = c->xfers;
    if (c->xfers)
        c->xfers->prev = x;
    c->xfers = x;
    c->running++;
    return 0;
}

void http_client_cancel(struct http_client *c, CURL *easy)
{
    struct xfer *x = NULL;

    MC_CHECK_OBJ_NOTNULL(c, HTTP_CLIENT_MAGIC);
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
    if (!x)
        return;
    curl_multi_remove_handle(c->multi, easy);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
    xfer_unlink(c, x);
    free(x);
    c->running--;
}

unsigned http_client_running(const struct http_client *c)
{
    return c->running;
}
