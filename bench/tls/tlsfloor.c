/* bench/tls/tlsfloor.c: the cost floor of answering small requests over TLS with the
 * libraries mlcdn is built on (OpenSSL for TLS, nghttp2 for HTTP/2), on this kernel.
 *
 * Answers every request, HTTP/1.1 over TLS or HTTP/2 (ALPN), with the same fixed body from
 * memory: no cache, no lookup, no headers beyond status, type and length, no timeouts, no
 * limits, no logging. One thread, epoll, OpenSSL reading and writing the socket itself;
 * the response's bytes are gathered and go out in one SSL_write per read. What remains is
 * what any server on these libraries pays per request. bench/tls/run.sh measures it beside
 * the peers and mlcdn ("floor" target, rows h1-1k and h2-1k), so how far mlcdn is from the
 * floor, and whether a peer that is ahead is ahead of the floor too, is measured.
 *
 * With HEADERS, a file of "Name: value" lines, every response also carries those fields
 * (over HTTP/2 as lower-case names, HPACK-indexed by nghttp2 as any server's): the floor
 * of a response with the same fields as the one it is compared with.
 *
 * usage: tlsfloor ADDR PORT CERT.pem KEY.pem BODY [HEADERS]   (IPv4; runs until killed)
 * Build: cc -O2 -o tlsfloor tlsfloor.c -lssl -lcrypto -lnghttp2 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

static char *body;
static size_t body_len;
static char h1_head[4096];
static size_t h1_head_len;
static char body_len_s[24];
static nghttp2_nv nv[64]; /* the HTTP/2 response fields */
static size_t nnv;
static int ep;

struct conn {
    int fd;
    SSL *ssl;
    int ready; /* handshake done */
    int h2;
    int want_out; /* EPOLLOUT is on */
    nghttp2_session *s;
    char *out; /* bytes to write, from off */
    size_t out_len, out_off, out_cap;
    unsigned h1_match; /* bytes of "\r\n\r\n" matched so far */
};

static void die(const char *what)
{
    fprintf(stderr, "tlsfloor: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void out_add(struct conn *c, const void *p, size_t n)
{
    if (c->out_len + n > c->out_cap) {
        c->out_cap = (c->out_len + n) * 2;
        c->out = realloc(c->out, c->out_cap);
        if (!c->out)
            die("realloc");
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

static void conn_free(struct conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    SSL_free(c->ssl);
    if (c->s)
        nghttp2_session_del(c->s);
    free(c->out);
    free(c);
}

static ssize_t on_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                       nghttp2_data_source *src, void *arg)
{
    (void)s, (void)id, (void)src, (void)arg;
    size_t n = body_len < len ? body_len : len; /* one frame: 1 KiB is under 16 KiB */
    memcpy(buf, body, n);
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    (void)arg;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST ||
        !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    nghttp2_data_provider dp = {.read_callback = on_body};
    return nghttp2_submit_response(s, f->hd.stream_id, nv, nnv, &dp) == 0
             ? 0
             : NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int h2_start(struct conn *c)
{
    static nghttp2_session_callbacks *cb;
    if (!cb) {
        nghttp2_session_callbacks_new(&cb);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    }
    if (nghttp2_session_server_new(&c->s, cb, c) != 0)
        return -1;
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100}};
    return nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, iv, 1);
}

/* HTTP/1.1: one response per request end ("\r\n\r\n"; GETs have no body), found
 * byte by byte so an end split between two reads counts. */
static void h1_requests(struct conn *c, const char *p, size_t n)
{
    static const char crlf2[] = "\r\n\r\n";
    for (size_t i = 0; i < n; i++) {
        if (p[i] == crlf2[c->h1_match])
            c->h1_match++;
        else
            c->h1_match = p[i] == '\r';
        if (c->h1_match == 4) {
            out_add(c, h1_head, h1_head_len);
            out_add(c, body, body_len);
            c->h1_match = 0;
        }
    }
}

/* Writes what is gathered; -1: the connection is to go. */
static int flush(struct conn *c)
{
    if (c->h2) {
        const uint8_t *d;
        ssize_t n;
        while ((n = nghttp2_session_mem_send(c->s, &d)) > 0)
            out_add(c, d, (size_t)n);
        if (n < 0)
            return -1;
    }
    while (c->out_off < c->out_len) {
        int n = SSL_write(c->ssl, c->out + c->out_off, (int)(c->out_len - c->out_off));
        if (n <= 0) {
            if (SSL_get_error(c->ssl, n) != SSL_ERROR_WANT_WRITE)
                return -1;
            if (!c->want_out) {
                struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                c->want_out = 1;
            }
            return 0;
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    if (c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = 0;
    }
    if (c->h2 && !nghttp2_session_want_read(c->s) && !nghttp2_session_want_write(c->s))
        return -1;
    return 0;
}

static int on_event(struct conn *c)
{
    static char buf[65536];
    if (!c->ready) {
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return 0;
            return -1;
        }
        c->ready = 1;
        const unsigned char *alpn;
        unsigned alen;
        SSL_get0_alpn_selected(c->ssl, &alpn, &alen);
        c->h2 = alen == 2 && memcmp(alpn, "h2", 2) == 0;
        if (c->h2 && h2_start(c) != 0)
            return -1;
    }
    for (;;) {
        int n = SSL_read(c->ssl, buf, sizeof(buf));
        if (n <= 0) {
            int e = SSL_get_error(c->ssl, n);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                break;
            return -1;
        }
        if (c->h2) {
            if (nghttp2_session_mem_recv(c->s, (const uint8_t *)buf, (size_t)n) < 0)
                return -1;
        } else {
            h1_requests(c, buf, (size_t)n);
        }
    }
    return flush(c);
}

static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned inlen, void *arg)
{
    static const unsigned char ours[] = "\x02h2\x08http/1.1";
    (void)ssl, (void)arg;
    if (SSL_select_next_proto((unsigned char **)out, outlen, ours, sizeof(ours) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    return SSL_TLSEXT_ERR_OK;
}

static void add_nv(const char *name, const char *value)
{
    if (nnv == sizeof(nv) / sizeof(nv[0])) {
        fprintf(stderr, "tlsfloor: more than %zu header fields\n", nnv);
        exit(2);
    }
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v)
        die("strdup");
    for (char *p = n; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p + 32);
    nv[nnv++] = (nghttp2_nv){(uint8_t *)n, (uint8_t *)v, strlen(n), strlen(v),
                             NGHTTP2_NV_FLAG_NONE};
}

int main(int argc, char **argv)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    char *end;

    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: tlsfloor ADDR PORT CERT.pem KEY.pem BODY [HEADERS]\n");
        return 2;
    }
    long port = strtol(argv[2], &end, 10);
    if (*end || port < 1 || port > 65535 || inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
        fprintf(stderr, "tlsfloor: bad address or port '%s' '%s'\n", argv[1], argv[2]);
        return 2;
    }
    sa.sin_port = htons((uint16_t)port);
    int bf = open(argv[5], O_RDONLY);
    struct stat st;
    if (bf < 0 || fstat(bf, &st) != 0)
        die(argv[5]);
    body_len = (size_t)st.st_size;
    body = malloc(body_len + 1);
    if (!body || read(bf, body, body_len) != (ssize_t)body_len)
        die("reading the body");
    close(bf);
    snprintf(body_len_s, sizeof(body_len_s), "%zu", body_len);
    add_nv(":status", "200");
    h1_head_len = (size_t)snprintf(h1_head, sizeof(h1_head), "HTTP/1.1 200 OK\r\n");
    FILE *hf = argc == 7 ? fopen(argv[6], "r") : NULL;
    if (argc == 7 && !hf)
        die(argv[6]);
    char line[1024];
    while (hf && fgets(line, sizeof(line), hf)) {
        char *colon = strchr(line, ':');
        line[strcspn(line, "\r\n")] = 0;
        if (!colon || colon == line)
            continue;
        *colon = 0;
        char *v = colon + 1;
        while (*v == ' ')
            v++;
        if (!strcasecmp(line, "content-length") || !strcasecmp(line, "content-type"))
            continue; /* set below */
        add_nv(line, v);
        h1_head_len += (size_t)snprintf(h1_head + h1_head_len, sizeof(h1_head) - h1_head_len,
                                        "%s: %s\r\n", line, v);
        if (h1_head_len >= sizeof(h1_head) - 128) {
            fprintf(stderr, "tlsfloor: header fields over %zu bytes\n", sizeof(h1_head) - 128);
            return 2;
        }
    }
    if (hf)
        fclose(hf);
    add_nv("content-type", "application/octet-stream");
    add_nv("content-length", body_len_s);
    h1_head_len += (size_t)snprintf(h1_head + h1_head_len, sizeof(h1_head) - h1_head_len,
                                    "Content-Type: application/octet-stream\r\n"
                                    "Content-Length: %zu\r\n\r\n",
                                    body_len);

    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, argv[3]) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, argv[4], SSL_FILETYPE_PEM) != 1) {
        fprintf(stderr, "tlsfloor: certificate or key: ");
        ERR_print_errors_fp(stderr);
        return 1;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(ls, 4096) != 0)
        die("listen");
    ep = epoll_create1(0);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &lev);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c == NULL) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    c = calloc(1, sizeof(*c));
                    if (!c)
                        die("calloc");
                    c->fd = fd;
                    c->ssl = SSL_new(ctx);
                    SSL_set_fd(c->ssl, fd);
                    SSL_set_accept_state(c->ssl);
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            if (on_event(c) != 0)
                conn_free(c);
            ERR_clear_error();
        }
    }
}
