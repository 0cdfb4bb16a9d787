/* tests/unit/http/test_http_tls.c: TLS termination over memory buffers, against OpenSSL's
 * own client, with certificates made here (RSA 2048 and ECDSA P-256, with subject
 * alternative names, self-signed).
 *
 * Handshakes in both versions and data both ways; the policy (TLS 1.0/1.1 refused, CBC
 * and non-forward-secret suites refused, no 0-RTT); ALPN (h2 preferred, http/1.1, no
 * overlap is an alert); SNI (exact over wildcard, unknown to the default, the RSA or the
 * ECDSA certificate by the client's signature algorithms); resumption by ticket, across
 * contexts sharing a secret file and not across others, a ticket of the previous period
 * renewed and an older one refused; reload (new connections get the new certificate, a
 * bad file changes nothing); OCSP stapling; close_notify both ways; garbage refused and
 * counted; load errors naming the file. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "http/http_tls.h"

static char dir[] = "/tmp/mlcdn-tls-XXXXXX";
static char path[16][300];
enum { A_RSA, A_EC, B_WILD, B_EXACT, OCSP, SECRET, SECRET2, SHORT, NEW_RSA };

static const char *file(int i, const char *ext)
{
    static char b[8][300];
    static int k;
    char *p = b[k++ % 8];
    snprintf(p, 300, "%s/%d.%s", dir, i, ext);
    return p;
}

/* A self-signed certificate for the names given (comma-separated DNS names). */
static void make_cert(int idx, int rsa, const char *cn, const char *names)
{
    EVP_PKEY *k = rsa ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
    X509 *x = X509_new();
    char san[512] = "";
    FILE *f;

    assert_non_null(k);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), idx + 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, k);
    X509_NAME *nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, nm);
    if (names != NULL) {
        char tmp[256];
        snprintf(tmp, sizeof(tmp), "%s", names);
        for (char *save = NULL, *n = strtok_r(tmp, ",", &save); n; n = strtok_r(NULL, ",", &save))
            snprintf(san + strlen(san), sizeof(san) - strlen(san), "%sDNS:%s", san[0] ? "," : "",
                     n);
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
        assert_non_null(ext);
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    assert_non_null(f = fopen(file(idx, "crt"), "w"));
    PEM_write_X509(f, x);
    fclose(f);
    assert_non_null(f = fopen(file(idx, "key"), "w"));
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(k);
}

static void write_bytes(const char *p, const void *b, size_t n)
{
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

static int setup(void **st)
{
    (void)st;
    if (mkdtemp(dir) == NULL)
        return -1;
    make_cert(A_RSA, 1, "a.test", "a.test,www.a.test");
    make_cert(A_EC, 0, "a.test", "www.a.test,a.test");
    make_cert(B_WILD, 0, "wild", "*.b.test");
    make_cert(B_EXACT, 1, "exact", "x.b.test");
    make_cert(NEW_RSA, 1, "new", "a.test,www.a.test");
    OCSP_RESPONSE *r = OCSP_response_create(OCSP_RESPONSE_STATUS_TRYLATER, NULL);
    unsigned char *der = NULL;
    int n = i2d_OCSP_RESPONSE(r, &der);
    write_bytes(file(OCSP, "der"), der, (size_t)n);
    OPENSSL_free(der);
    OCSP_RESPONSE_free(r);
    write_bytes(file(SECRET, "bin"), "0123456789abcdef0123456789abcdef0123456789", 42);
    write_bytes(file(SECRET2, "bin"), "another secret, another region, 0123456789", 42);
    write_bytes(file(SHORT, "bin"), "too short", 9);
    (void)path;
    return 0;
}

static int teardown(void **st)
{
    char cmd[400];
    (void)st;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static struct http_tls_cert cert(int i)
{
    struct http_tls_cert c = {0};
    c.cert = strdup(file(i, "crt"));
    c.key = strdup(file(i, "key"));
    return c;
}

static void cert_free(struct http_tls_cert *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free((char *)c[i].cert);
        free((char *)c[i].key);
        free((char *)c[i].ocsp);
    }
}

/* The server of most tests: a.test (RSA and ECDSA), *.b.test, x.b.test, h2 on. */
static struct http_tls_ctx *server(int h2, const char *secret_path, uint64_t period_ms)
{
    char secret[300];
    snprintf(secret, sizeof(secret), "%s", secret_path ? secret_path : "");
    struct http_tls_cert c[4] = {cert(A_RSA), cert(A_EC), cert(B_WILD), cert(B_EXACT)};
    struct http_tls_cfg cfg = {.certs = c, .ncerts = 4, .h2 = h2};
    struct http_tls_ctx *ctx = NULL;
    char err[256] = "";
    cfg.ticket_secret_file = secret_path ? secret : NULL;
    cfg.ticket_period_ms = period_ms;
    int rc = http_tls_ctx_new(&cfg, &ctx, err, sizeof(err));
    assert_int_equal(rc, 0);
    cert_free(c, 4);
    return ctx;
}

/* ---- a client over memory BIOs ---- */

struct cli {
    SSL_CTX *ctx;
    SSL *ssl;
    char got[1 << 21]; /* what the client read */
    size_t ngot;
    int closed;     /* read close_notify */
    int failed;     /* the client's handshake failed */
    char sgot[256]; /* what the server read */
    size_t nsgot;
    int sres; /* the server's last read: 0, -EPROTO, -ECONNRESET */
};

static struct cli *cli_new(int minv, int maxv, const char *sni, const char *alpn)
{
    struct cli *c = calloc(1, sizeof(*c));
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (minv && minv < TLS1_2_VERSION)
        SSL_CTX_set_security_level(c->ctx, 0); /* lets the client try TLS 1.0 and 1.1 */
    if (minv)
        SSL_CTX_set_min_proto_version(c->ctx, minv);
    if (maxv)
        SSL_CTX_set_max_proto_version(c->ctx, maxv);
    /* No client cache: freeing a context marks the sessions in its cache unresumable,
     * and a test keeps a session past its client. */
    SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_OFF);
    c->ssl = SSL_new(c->ctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(rb, -1);
    SSL_set_bio(c->ssl, rb, wb);
    SSL_set_connect_state(c->ssl);
    if (sni)
        SSL_set_tlsext_host_name(c->ssl, sni);
    if (alpn) {
        unsigned char wire[64];
        size_t n = 0;
        char tmp[64];
        snprintf(tmp, sizeof(tmp), "%s", alpn);
        for (char *save = NULL, *p = strtok_r(tmp, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
            wire[n++] = (unsigned char)strlen(p);
            memcpy(wire + n, p, strlen(p));
            n += strlen(p);
        }
        SSL_set_alpn_protos(c->ssl, wire, (unsigned)n);
    }
    return c;
}

static void cli_free(struct cli *c)
{
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
    free(c);
}

/* Moves bytes both ways until neither side has anything to say: the client shakes
 * hands, then reads what comes (into got); the server reads (into sgot). */
/* Set: the server's side is trimmed (http_tls_trim) at every round of pump, handshake
 * included, as the idle timer may do at any moment. */
static int g_trim_always;

static void pump(struct cli *c, struct http_tls_conn *t)
{
    char buf[1 << 16];
    for (int round = 0; round < 10000; round++) {
        int moved = 0, r, e;
        if (!c->failed && !c->closed) {
            ERR_clear_error();
            if (!SSL_is_init_finished(c->ssl)) {
                r = SSL_do_handshake(c->ssl);
                moved |= r == 1;
            } else {
                r = SSL_read(c->ssl, c->got + c->ngot, (int)(sizeof(c->got) - c->ngot));
                if (r > 0) {
                    c->ngot += (size_t)r;
                    moved = 1;
                }
            }
            if (r <= 0) {
                e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_ZERO_RETURN)
                    c->closed = 1;
                else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                    c->failed = 1;
            }
        }
        int n;
        while ((n = BIO_read(SSL_get_wbio(c->ssl), buf, sizeof(buf))) > 0) {
            assert_int_equal(http_tls_feed(t, buf, (size_t)n), 0);
            moved = 1;
        }
        ssize_t got = http_tls_read(t, c->sgot + c->nsgot, sizeof(c->sgot) - c->nsgot);
        if (got > 0) {
            c->nsgot += (size_t)got;
            moved = 1;
        } else {
            c->sres = (int)got;
        }
        size_t k;
        if (g_trim_always)
            http_tls_trim(t);
        while ((k = http_tls_take(t, buf, sizeof(buf))) > 0) {
            BIO_write(SSL_get_rbio(c->ssl), buf, (int)k);
            moved = 1;
        }
        if (!moved)
            break;
    }
}

static void peer_cn(struct cli *c, char *out, size_t n)
{
    X509 *x = SSL_get1_peer_certificate(c->ssl);
    assert_non_null(x);
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out, (int)n);
    X509_free(x);
}

static int peer_is_rsa(struct cli *c)
{
    X509 *x = SSL_get1_peer_certificate(c->ssl);
    int rsa = EVP_PKEY_get_base_id(X509_get0_pubkey(x)) == EVP_PKEY_RSA;
    X509_free(x);
    return rsa;
}

/* ---- tests ---- */

static void test_handshake_and_data(void **st)
{
    (void)st;
    struct http_tls_ctx *ctx = server(1, NULL, 0);
    struct http_tls_conn *t = http_tls_conn_new(ctx);
    struct cli *c = cli_new(0, 0, "a.test", "h2,http/1.1");
    struct http_tls_stats s;

    /* Nothing to send before the handshake. */
    assert_int_equal(http_tls_write(t, "x", 1), -EAGAIN);
    pump(c, t);
    assert_false(c->failed);
    assert_true(http_tls_done(t));
    assert_false(http_tls_resumed(t));
    assert_string_equal(http_tls_version(t), "TLSv1.3");
    assert_string_equal(http_tls_cipher(t), "TLS_AES_128_GCM_SHA256");
    assert_string_equal(http_tls_alpn(t), "h2");
    assert_string_equal(http_tls_sni(t), "a.test");
    /* Idle: the buffers between socket and TLS are given back; nothing is lost. */
    assert_int_equal(http_tls_pending(t), 0);
    http_tls_trim(t);
    /* Client to server. */
    assert_int_equal(SSL_write(c->ssl, "GET / HTTP/1.1\r\n\r\n", 18), 18);
    pump(c, t);
    assert_int_equal(c->nsgot, 18);
    assert_memory_equal(c->sgot, "GET / HTTP/1.1\r\n\r\n", 18);
    /* Server to client, a megabyte: it comes out in records, all of it. */
    size_t big = 1 << 20;
    char *body = malloc(big);
    for (size_t i = 0; i < big; i++)
        body[i] = (char)(i * 7);
    assert_int_equal(http_tls_write(t, body, big), (ssize_t)big);
    assert_true(http_tls_pending(t) > big);
    c->ngot = 0;
    pump(c, t);
    assert_int_equal(c->ngot, big);
    assert_memory_equal(c->got, body, big);
    free(body);
    /* The records taken whole, without a copy: the buffer is the caller's, nothing is
     * left pending, and the client reads them; handed back, it carries the next ones. A
     * large one handed back is freed (ASan would see a leak or a double free). */
    assert_int_equal(http_tls_write(t, "hello", 5), 5);
    size_t want = http_tls_pending(t), len, cap;
    char *rec = http_tls_take_buf(t, &len, &cap);
    assert_non_null(rec);
    assert_int_equal(len, want);
    assert_true(cap >= len);
    assert_int_equal(http_tls_pending(t), 0);
    size_t len0, cap0;
    assert_null(http_tls_take_buf(t, &len0, &cap0));
    assert_int_equal(len0, 0);
    assert_int_equal(BIO_write(SSL_get_rbio(c->ssl), rec, (int)want), (int)want);
    http_tls_give_buf(t, rec, cap);
    c->ngot = 0;
    pump(c, t);
    assert_int_equal(c->ngot, 5);
    assert_memory_equal(c->got, "hello", 5);
    body = calloc(1, 200000);
    assert_int_equal(http_tls_write(t, body, 200000), 200000);
    rec = http_tls_take_buf(t, &len, &cap);
    assert_true(len > 200000);
    assert_int_equal(BIO_write(SSL_get_rbio(c->ssl), rec, (int)len), (int)len);
    http_tls_give_buf(t, rec, cap);
    c->ngot = 0;
    pump(c, t);
    assert_int_equal(c->ngot, 200000);
    free(body);
    /* Trimmed again (twice: the second finds nothing to give back), the next call that
     * makes bytes is a write, with no read before it. */
    assert_int_equal(http_tls_pending(t), 0);
    http_tls_trim(t);
    http_tls_trim(t);
    assert_int_equal(http_tls_pending(t), 0);
    assert_int_equal(http_tls_take(t, c->got, 1), 0);
    assert_int_equal(http_tls_write(t, "ok", 2), 2);
    c->ngot = 0;
    pump(c, t);
    assert_int_equal(c->ngot, 2);
    /* A handshake and an exchange trimmed at every step on the server's side. */
    struct http_tls_conn *t2 = http_tls_conn_new(ctx);
    struct cli *c2 = cli_new(0, 0, "a.test", "http/1.1");
    g_trim_always = 1;
    pump(c2, t2);
    assert_true(http_tls_done(t2) && !c2->failed);
    assert_int_equal(SSL_write(c2->ssl, "ping", 4), 4);
    assert_int_equal(http_tls_write(t2, "pong", 4), 4);
    pump(c2, t2);
    g_trim_always = 0;
    assert_int_equal(c2->nsgot, 4);
    assert_memory_equal(c2->sgot, "ping", 4);
    assert_int_equal(c2->ngot, 4);
    assert_memory_equal(c2->got, "pong", 4);
    /* close_notify from the server: the client sees a clean end; and from the client: the
     * server's read says so. */
    http_tls_close_notify(t);
    pump(c, t);
    assert_true(c->closed);
    SSL_shutdown(c->ssl);
    pump(c, t);
    assert_int_equal(c->sres, -ECONNRESET);
    http_tls_ctx_stats(ctx, &s);
    assert_int_equal(s.handshakes, 2);
    assert_int_equal(s.failed, 0);
    cli_free(c);
    cli_free(c2);
    http_tls_conn_free(&t);
    http_tls_conn_free(&t2);
    assert_null(t);
    http_tls_ctx_free(&ctx);
}

static void test_versions_and_ciphers(void **st)
{
    (void)st;
    struct http_tls_ctx *ctx = server(0, NULL, 0);
    struct http_tls_stats s;
    static const int refused[] = {TLS1_VERSION, TLS1_1_VERSION};

    for (size_t i = 0; i < 2; i++) {
        struct http_tls_conn *t = http_tls_conn_new(ctx);
        struct cli *c = cli_new(refused[i], refused[i], "a.test", NULL);
        pump(c, t);
        assert_true(c->failed);
        assert_false(http_tls_done(t));
        assert_int_equal(c->sres, -EPROTO);
        assert_true(strlen(http_tls_error(t)) > 0);
        cli_free(c);
        http_tls_conn_free(&t);
    }
    /* TLS 1.2: an ECDHE AEAD suite, the server's first choice for the key type. */
    struct http_tls_conn *t = http_tls_conn_new(ctx);
    struct cli *c = cli_new(TLS1_2_VERSION, TLS1_2_VERSION, "a.test", NULL);
    SSL_set1_sigalgs_list(c->ssl, "RSA-PSS+SHA256:RSA+SHA256");
    pump(c, t);
    assert_false(c->failed);
    assert_string_equal(http_tls_version(t), "TLSv1.2");
    assert_string_equal(http_tls_cipher(t), "ECDHE-RSA-AES128-GCM-SHA256");
    /* The client offered no ALPN: none. */
    assert_string_equal(http_tls_alpn(t), "");
    cli_free(c);
    http_tls_conn_free(&t);
    /* A client with only CBC, or only static RSA key exchange: refused. */
    static const char *const weak[] = {"ECDHE-RSA-AES128-SHA", "AES128-GCM-SHA256"};
    for (size_t i = 0; i < 2; i++) {
        t = http_tls_conn_new(ctx);
        c = cli_new(TLS1_2_VERSION, TLS1_2_VERSION, "a.test", NULL);
        assert_int_equal(SSL_set_cipher_list(c->ssl, weak[i]), 1);
        pump(c, t);
        assert_true(c->failed);
        cli_free(c);
        http_tls_conn_free(&t);
    }
    http_tls_ctx_stats(ctx, &s);
    assert_int_equal(s.failed, 4);
    assert_int_equal(s.handshakes, 1);
    http_tls_ctx_free(&ctx);
}

static void test_alpn(void **st)
{
    (void)st;
    static const struct {
        int h2;
        const char *offer, *want; /* want NULL: the handshake fails */
    } cases[] = {
        {1, "http/1.1,h2", "h2"}, /* the server's order */
        {1, "http/1.1", "http/1.1"},
        {0, "h2,http/1.1", "http/1.1"},
        {0, "h2", NULL}, /* no overlap: no_application_protocol */
        {1, "spdy/3", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct http_tls_ctx *ctx = server(cases[i].h2, NULL, 0);
        struct http_tls_conn *t = http_tls_conn_new(ctx);
        struct cli *c = cli_new(0, 0, "a.test", cases[i].offer);
        pump(c, t);
        if (cases[i].want) {
            assert_false(c->failed);
            assert_string_equal(http_tls_alpn(t), cases[i].want);
        } else {
            assert_true(c->failed);
            assert_false(http_tls_done(t));
        }
        cli_free(c);
        http_tls_conn_free(&t);
        http_tls_ctx_free(&ctx);
    }
}

static void test_sni(void **st)
{
    (void)st;
    struct http_tls_ctx *ctx = server(1, NULL, 0);
    static const struct {
        const char *sni, *sigalgs, *cn;
        int rsa;
    } cases[] = {
        {"x.b.test", NULL, "exact", 1},               /* exact beats the wildcard */
        {"y.b.test", NULL, "wild", 0},                /* the wildcard */
        {"Y.B.Test", NULL, "wild", 0},                /* names are case-insensitive */
        {"z.y.b.test", NULL, "a.test", -1},           /* a wildcard is one label: default */
        {"nowhere.test", NULL, "a.test", -1},         /* unknown: the default */
        {NULL, NULL, "a.test", -1},                   /* no SNI: the default */
        {"www.a.test", "ECDSA+SHA256", "a.test", 0},  /* one name, two keys: ECDSA ... */
        {"www.a.test", "RSA-PSS+SHA256", "a.test", 1} /* ... or RSA, as the client can verify */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct http_tls_conn *t = http_tls_conn_new(ctx);
        struct cli *c = cli_new(0, 0, cases[i].sni, NULL);
        char cn[64] = "";
        if (cases[i].sigalgs)
            assert_int_equal(SSL_set1_sigalgs_list(c->ssl, cases[i].sigalgs), 1);
        pump(c, t);
        assert_false(c->failed);
        peer_cn(c, cn, sizeof(cn));
        assert_string_equal(cn, cases[i].cn);
        if (cases[i].rsa >= 0)
            assert_int_equal(peer_is_rsa(c), cases[i].rsa);
        cli_free(c);
        http_tls_conn_free(&t);
    }
    http_tls_ctx_free(&ctx);
}

/* A full handshake with ctx; returns the session the client got (its ticket). */
static SSL_SESSION *first_session(struct http_tls_ctx *ctx, int maxv)
{
    struct http_tls_conn *t = http_tls_conn_new(ctx);
    struct cli *c = cli_new(0, maxv, "a.test", NULL);
    pump(c, t);
    assert_false(c->failed);
    assert_false(http_tls_resumed(t));
    SSL_SESSION *s = SSL_get1_session(c->ssl);
    assert_non_null(s);
    /* A client that leaves without close_notify marks its session unresumable. */
    SSL_shutdown(c->ssl);
    cli_free(c);
    assert_true(SSL_SESSION_is_resumable(s));
    http_tls_conn_free(&t);
    return s;
}

/* Whether a handshake with ctx resumes sess. */
static int resumes(struct http_tls_ctx *ctx, SSL_SESSION *sess, int maxv)
{
    struct http_tls_conn *t = http_tls_conn_new(ctx);
    struct cli *c = cli_new(0, maxv, "a.test", NULL);
    assert_int_equal(SSL_set_session(c->ssl, sess), 1);
    pump(c, t);
    assert_false(c->failed);
    int r = http_tls_resumed(t);
    assert_int_equal(r, SSL_session_reused(c->ssl));
    cli_free(c);
    http_tls_conn_free(&t);
    return r;
}

static void test_resumption(void **st)
{
    (void)st;
    struct http_tls_ctx *ctx = server(1, NULL, 0), *other = server(1, NULL, 0);
    struct http_tls_stats s;

    for (int v = 0; v < 2; v++) {
        int maxv = v ? TLS1_2_VERSION : 0;
        SSL_SESSION *sess = first_session(ctx, maxv);
        /* No 0-RTT: the ticket allows no early data. */
        assert_int_equal(SSL_SESSION_get_max_early_data(sess), 0);
        assert_true(resumes(ctx, sess, maxv));
        /* Another process with its own random secret cannot read the ticket. */
        assert_false(resumes(other, sess, maxv));
        SSL_SESSION_free(sess);
    }
    http_tls_ctx_stats(ctx, &s);
    assert_int_equal(s.handshakes, 2);
    assert_int_equal(s.resumed, 2);
    assert_true(s.tickets_issued >= 2);
    http_tls_ctx_free(&ctx);
    http_tls_ctx_free(&other);

    /* Edges given the same secret file resume each other's sessions; another file no. */
    struct http_tls_ctx *e1 = server(1, file(SECRET, "bin"), 0),
                        *e2 = server(1, file(SECRET, "bin"), 0),
                        *e3 = server(1, file(SECRET2, "bin"), 0);
    SSL_SESSION *sess = first_session(e1, 0);
    assert_true(resumes(e2, sess, 0));
    assert_false(resumes(e3, sess, 0));
    SSL_SESSION_free(sess);
    http_tls_ctx_free(&e1);
    http_tls_ctx_free(&e2);
    http_tls_ctx_free(&e3);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Sleeps until `margin` ms after the next multiple of period. */
static void to_next_period(uint64_t period, uint64_t margin)
{
    uint64_t t = now_ms(), next = (t / period + 1) * period + margin;
    usleep((useconds_t)((next - t) * 1000));
}

static void test_ticket_rotation(void **st)
{
    (void)st;
    const uint64_t period = 2000;
    struct http_tls_ctx *ctx = server(1, file(SECRET, "bin"), period);
    struct http_tls_stats s;

    /* Issued early in a period (no boundary crossed by accident). */
    to_next_period(period, 50);
    SSL_SESSION *sess = first_session(ctx, 0);
    /* Next period: accepted, and replaced by a ticket of the new key. */
    to_next_period(period, 50);
    assert_true(resumes(ctx, sess, 0));
    http_tls_ctx_stats(ctx, &s);
    assert_int_equal(s.tickets_renewed, 1);
    /* Two periods on: the key is gone, a full handshake. */
    to_next_period(period, 50);
    assert_false(resumes(ctx, sess, 0));
    SSL_SESSION_free(sess);
    http_tls_ctx_free(&ctx);
}

static void test_reload(void **st)
{
    (void)st;
    struct http_tls_ctx *ctx = server(1, NULL, 0);
    char err[256] = "", cn[64];

    /* A connection that began before the reload finishes with the old certificate. */
    struct http_tls_conn *before = http_tls_conn_new(ctx);
    struct http_tls_cert c1[1] = {cert(NEW_RSA)};
    struct http_tls_cfg cfg = {.certs = c1, .ncerts = 1, .h2 = 1};
    assert_int_equal(http_tls_ctx_reload(ctx, &cfg, err, sizeof(err)), 0);
    struct cli *c = cli_new(0, 0, "a.test", NULL);
    SSL_set1_sigalgs_list(c->ssl, "ECDSA+SHA256");
    pump(c, before);
    assert_false(c->failed);
    assert_false(peer_is_rsa(c)); /* the old set had the ECDSA certificate */
    cli_free(c);
    http_tls_conn_free(&before);
    /* New connections: the new certificate. */
    struct http_tls_conn *t = http_tls_conn_new(ctx);
    c = cli_new(0, 0, "a.test", NULL);
    pump(c, t);
    assert_false(c->failed);
    peer_cn(c, cn, sizeof(cn));
    assert_string_equal(cn, "new");
    cli_free(c);
    http_tls_conn_free(&t);
    /* A bad reload names the file and changes nothing. */
    free((char *)c1[0].key);
    c1[0].key = strdup(file(A_EC, "key")); /* the wrong key */
    assert_int_equal(http_tls_ctx_reload(ctx, &cfg, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "1.key"));
    assert_non_null(strstr(err, "does not match"));
    t = http_tls_conn_new(ctx);
    c = cli_new(0, 0, "a.test", NULL);
    pump(c, t);
    assert_false(c->failed);
    peer_cn(c, cn, sizeof(cn));
    assert_string_equal(cn, "new");
    cli_free(c);
    http_tls_conn_free(&t);
    cert_free(c1, 1);
    http_tls_ctx_free(&ctx);
}

static void test_ocsp_staple(void **st)
{
    (void)st;
    struct http_tls_cert c[2] = {cert(A_RSA), cert(B_WILD)};
    c[0].ocsp = strdup(file(OCSP, "der"));
    struct http_tls_cfg cfg = {.certs = c, .ncerts = 2};
    struct http_tls_ctx *ctx = NULL;
    char err[256];
    assert_int_equal(http_tls_ctx_new(&cfg, &ctx, err, sizeof(err)), 0);
    for (int i = 0; i < 2; i++) {
        struct http_tls_conn *t = http_tls_conn_new(ctx);
        struct cli *cl = cli_new(0, 0, i ? "y.b.test" : "a.test", NULL);
        SSL_set_tlsext_status_type(cl->ssl, TLSEXT_STATUSTYPE_ocsp);
        pump(cl, t);
        assert_false(cl->failed);
        const unsigned char *resp = NULL;
        long n = SSL_get_tlsext_status_ocsp_resp(cl->ssl, &resp);
        if (i == 0) {
            assert_true(n > 0);
            OCSP_RESPONSE *r = d2i_OCSP_RESPONSE(NULL, &resp, n);
            assert_non_null(r);
            assert_int_equal(OCSP_response_status(r), OCSP_RESPONSE_STATUS_TRYLATER);
            OCSP_RESPONSE_free(r);
        } else {
            assert_true(n <= 0); /* no response configured for that certificate */
        }
        cli_free(cl);
        http_tls_conn_free(&t);
    }
    http_tls_ctx_free(&ctx);
    /* Not a DER OCSP response: refused, naming the file. */
    free((char *)c[0].ocsp);
    c[0].ocsp = strdup(file(A_RSA, "crt"));
    assert_int_equal(http_tls_ctx_new(&cfg, &ctx, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "OCSP"));
    cert_free(c, 2);
}

static void test_garbage(void **st)
{
    (void)st;
    struct http_tls_ctx *ctx = server(1, NULL, 0);
    static const struct {
        const char *b;
        size_t n;
    } inputs[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27},        /* plain HTTP on the TLS port */
        {"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00", 10}, /* a ClientHello of 1 byte */
        {"\x16\x03\x03\xff\xff", 5}, /* a record longer than allowed, announced */
    };
    struct http_tls_stats s;
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        struct http_tls_conn *t = http_tls_conn_new(ctx);
        char buf[64];
        assert_int_equal(http_tls_feed(t, inputs[i].b, inputs[i].n), 0);
        ssize_t r = http_tls_read(t, buf, sizeof(buf));
        if (i == 2) { /* a record announced longer than the limit, or only half there */
            assert_true(r == 0 || r == -EPROTO);
        } else {
            assert_int_equal(r, -EPROTO);
            assert_true(strlen(http_tls_error(t)) > 0);
            /* Once failed, it stays failed, and writes fail too. */
            assert_int_equal(http_tls_read(t, buf, sizeof(buf)), -EPROTO);
            assert_int_equal(http_tls_write(t, "x", 1), -EPROTO);
        }
        http_tls_conn_free(&t);
    }
    http_tls_ctx_stats(ctx, &s);
    assert_true(s.failed >= 2);
    http_tls_ctx_free(&ctx);
}

static void test_load_errors(void **st)
{
    (void)st;
    char err[256];
    struct http_tls_ctx *ctx = NULL;
    struct http_tls_cert c[1] = {cert(A_RSA)};
    struct http_tls_cfg cfg = {.certs = c, .ncerts = 1};

    cfg.ncerts = 0;
    assert_int_equal(http_tls_ctx_new(&cfg, &ctx, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "no certificate"));
    cfg.ncerts = 1;
    cfg.ticket_secret_file = file(SHORT, "bin");
    assert_int_equal(http_tls_ctx_new(&cfg, &ctx, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "at least 32"));
    cfg.ticket_secret_file = "/nonexistent/secret";
    assert_int_equal(http_tls_ctx_new(&cfg, &ctx, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "/nonexistent/secret"));
    cfg.ticket_secret_file = NULL;
    cfg.ticket_period_ms = 500;
    assert_int_equal(http_tls_ctx_new(&cfg, &ctx, err, sizeof(err)), -EINVAL);
    cfg.ticket_period_ms = 0;
    free((char *)c[0].cert);
    c[0].cert = strdup(file(OCSP, "der")); /* not PEM */
    assert_int_equal(http_tls_ctx_new(&cfg, &ctx, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "not a PEM certificate"));
    free((char *)c[0].cert);
    c[0].cert = strdup("/nonexistent/cert.pem");
    assert_int_equal(http_tls_ctx_new(&cfg, &ctx, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "/nonexistent/cert.pem"));
    assert_null(ctx);
    cert_free(c, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_and_data),
        cmocka_unit_test(test_versions_and_ciphers),
        cmocka_unit_test(test_alpn),
        cmocka_unit_test(test_sni),
        cmocka_unit_test(test_resumption),
        cmocka_unit_test(test_ticket_rotation),
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_ocsp_staple),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_load_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
