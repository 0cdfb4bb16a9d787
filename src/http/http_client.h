/* src/http/http_client.h: libcurl's multi interface driven by a libuv loop.
 *
 * One struct http_client per loop. Callers prepare a CURL easy handle themselves
 * (URL, headers, write/header callbacks, timeouts), hand it over with http_client_add(),
 * and get `done` once, on the loop, when the transfer ends. Connection reuse and DNS
 * caching come from the shared multi handle. Nothing here blocks the loop. */
#ifndef MLCDN_HTTP_HTTP_CLIENT_H
#define MLCDN_HTTP_HTTP_CLIENT_H

#include <curl/curl.h>
#include <uv.h>

struct http_client; /* opaque; http_client_new() / http_client_free() */

typedef void http_client_done_f(CURL *easy, CURLcode result, void *arg);

/* Creates a client on `loop` (call on the loop's thread). Returns 0 or -ENOMEM. */
int http_client_new(uv_loop_t *loop, struct http_client **out);
/* Aborts every transfer still running (their `done` is not called), then closes the
 * client's handles; the memory goes back in their close callbacks, so the loop must run
 * once more after this call. *c is set to NULL. */
void http_client_free(struct http_client **c);

/* Starts the transfer. The caller keeps ownership of `easy` and must not free it before
 * `done` ran (or before http_client_cancel()). Returns 0 or -EINVAL. */
int http_client_add(struct http_client *c, CURL *easy, http_client_done_f *done, void *arg);
/* Stops a running transfer without calling `done`. */
void http_client_cancel(struct http_client *c, CURL *easy);
/* Transfers running now. */
unsigned http_client_running(const struct http_client *c);

#endif
