/* src/http/http_tls.h: TLS termination over memory buffers, for the event loops.
 *
 * No socket and no thread: the loop that owns a connection reads ciphertext from the
 * socket into http_tls_feed(), takes plaintext out of http_tls_read(), puts plaintext in
 * with http_tls_write() and sends what http_tls_take() gives it. So TLS runs on the same
 * worker loops as plain HTTP, and a connection costs one SSL object and two buffers.
 *
 * One struct http_tls_ctx serves every loop of a process (OpenSSL's SSL_CTX may be shared
 * between threads). It holds the certificates, picked per connection by SNI, and the
 * session-ticket keys. Ticket keys are derived from a secret and the current period
 * (HMAC-SHA256 of the period number), so they rotate on a schedule with no timer and no
 * lock on the handshake path, every loop uses the same keys, and edges given the same
 * secret file issue and accept each other's tickets. A ticket of the previous period is
 * still accepted (and replaced by a new one); older ones are not.
 *
 * Policy: TLS 1.3 and 1.2 only, AEAD ciphers only (AES-GCM, ChaCha20-Poly1305, with
 * ECDHE in 1.2), the server's order, no renegotiation, no compression, no 0-RTT (early
 * data can be replayed: a GET that purges or a POST that predicts must not run twice).
 *
 * Threads: http_tls_ctx_* may be called from any thread; a struct http_tls_conn belongs
 * to one loop. */
#ifndef MLCDN_HTTP_HTTP_TLS_H
#define MLCDN_HTTP_HTTP_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct http_tls_ctx;  /* opaque; http_tls_ctx_new() / http_tls_ctx_free() */
struct http_tls_conn; /* opaque; one connection's TLS state */

/* One certificate: PEM files (the leaf first, then its chain; the key unencrypted). Its
 * names are the certificate's DNS subject alternative names (the common name when it has
 * none); `*.example.com` matches one label. */
struct http_tls_cert {
    const char *cert;
    const char *key;
    const char *ocsp; /* DER OCSP response to staple, or NULL */
};

#define HTTP_TLS_MAX_CERTS 32
#define HTTP_TLS_SECRET_MIN 32 /* bytes of a ticket secret file */

struct http_tls_cfg {
    /* The first certificate answers clients without SNI or with an unknown name.
     * Certificates with the same names (an RSA and an ECDSA one) are served together: the
     * client's signature algorithms pick one. */
    const struct http_tls_cert *certs;
    size_t ncerts;
    /* File with at least HTTP_TLS_SECRET_MIN bytes of secret shared by the edges of a
     * region, or NULL: a random secret for this process. */
    const char *ticket_secret_file;
    uint64_t ticket_period_ms; /* key rotation period; 0: one hour */
    int h2;                    /* offer "h2" in ALPN (before "http/1.1") */
};

/* Counters since start (all connections of the context). */
struct http_tls_stats {
    uint64_t handshakes;      /* completed, full */
    uint64_t resumed;         /* completed with a session ticket */
    uint64_t failed;          /* handshakes that ended in an alert or a bad record */
    uint64_t tickets_issued;  /* ticket encryptions */
    uint64_t tickets_renewed; /* tickets of the previous period accepted and replaced */
};

/* Loads every certificate and key (checking each key matches its certificate) and the
 * secret. Returns 0 and *out, or a negative errno with a message naming the file. */
int http_tls_ctx_new(const struct http_tls_cfg *cfg, struct http_tls_ctx **out, char *err,
                     size_t errlen);
/* Loads a new set of certificates (and secret) and makes it the one new connections get;
 * open connections keep what they started with. On error nothing changes. */
int http_tls_ctx_reload(struct http_tls_ctx *c, const struct http_tls_cfg *cfg, char *err,
                        size_t errlen);
void http_tls_ctx_stats(const struct http_tls_ctx *c, struct http_tls_stats *out);
void http_tls_ctx_free(struct http_tls_ctx **c);

/* A server-side connection. The caller owns it; free it with http_tls_conn_free. */
struct http_tls_conn *http_tls_conn_new(struct http_tls_ctx *c);
void http_tls_conn_free(struct http_tls_conn **t);

/* Ciphertext received from the peer. Returns 0 (the bytes are copied). */
int http_tls_feed(struct http_tls_conn *t, const void *data, size_t len);
/* Plaintext from what was fed: > 0 bytes; 0 when more ciphertext is needed (or the
 * handshake is still running: check http_tls_pending, there may be bytes to send);
 * -ECONNRESET when the peer closed cleanly (close_notify); -EPROTO when the handshake or a
 * record failed (an alert may be pending to send; http_tls_error says why). */
ssize_t http_tls_read(struct http_tls_conn *t, void *buf, size_t cap);
/* Encrypts plaintext for sending (only once the handshake is done). Returns len, or
 * -EPROTO / -EAGAIN (handshake not finished). */
ssize_t http_tls_write(struct http_tls_conn *t, const void *data, size_t len);
/* Ciphertext waiting to be sent, and taking it (copies up to cap bytes, returns them). */
size_t http_tls_pending(const struct http_tls_conn *t);
size_t http_tls_take(struct http_tls_conn *t, void *buf, size_t cap);
/* Takes all of it without a copy: the buffer holding it (*len bytes from its start, *cap
 * allocated), which the caller then owns (free it, or hand it back with
 * http_tls_give_buf for the next records); NULL when nothing waits. */
char *http_tls_take_buf(struct http_tls_conn *t, size_t *len, size_t *cap);
/* A buffer from http_tls_take_buf, done with: kept for the next records (when t has none
 * and it is not large) or freed. */
void http_tls_give_buf(struct http_tls_conn *t, char *buf, size_t cap);
/* Gives back the memory between the socket and TLS when nothing waits there (an idle
 * connection): its buffers, which grew to the largest read or flight seen (a handshake's
 * at least), and the BIO over them; the calls above make new ones when needed. */
void http_tls_trim(struct http_tls_conn *t);
/* Queues close_notify (then take what is pending and close). */
void http_tls_close_notify(struct http_tls_conn *t);

int http_tls_done(const struct http_tls_conn *t);    /* handshake completed */
int http_tls_resumed(const struct http_tls_conn *t); /* ... with a session ticket */
/* The ALPN protocol agreed ("h2", "http/1.1"), or "" when the client offered none. */
const char *http_tls_alpn(const struct http_tls_conn *t);
/* The server name the client asked for, or "". */
const char *http_tls_sni(const struct http_tls_conn *t);
const char *http_tls_version(const struct http_tls_conn *t); /* "TLSv1.3" */
const char *http_tls_cipher(const struct http_tls_conn *t);
/* Why the connection failed (OpenSSL's reason), or "". */
const char *http_tls_error(const struct http_tls_conn *t);

#endif
