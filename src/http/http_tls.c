/* src/http/http_tls.c: TLS termination over memory BIOs (see http_tls.h).
 *
 * A struct tls_set is one generation of the certificates: an SSL_CTX per group of
 * certificates that share their names (so an RSA and an ECDSA certificate for the same
 * names sit in one SSL_CTX and the client's signature algorithms pick), the ticket secret
 * and the OCSP responses. The context points at the current set; a connection holds a
 * reference on the set it started with, so a reload never pulls a certificate or a
 * callback's data from under a handshake.
 *
 * The callbacks (SNI, ALPN, tickets, OCSP) find their connection through
 * SSL_get_app_data, and from it the set: no global state, no lock on the handshake path.
 * The one lock guards the set pointer while a connection takes its reference. */
#include "http/http_tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/mc.h"

#define TLS_CTX_MAGIC 0x7a5c0c71u
#define TLS_CONN_MAGIC 0x7a5c0c72u

/* AEAD only, forward secret only: ECDHE with AES-GCM or ChaCha20-Poly1305 for TLS 1.2, the
 * three AEAD suites for TLS 1.3. AES-128 first: as safe here and the cheapest on CPUs with
 * AES instructions; ChaCha20 last. */
#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS13_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define TLS_GROUPS "X25519:P-256:P-384"
#define TLS_SID_CTX "mlcdn"
#define TICKET_SECRET_MAX 1024
#define DEFAULT_PERIOD_MS (3600u * 1000u)

struct tls_ocsp {
    X509 *leaf; /* not owned: the SSL_CTX holds it */
    unsigned char *der;
    size_t len;
};

/* Certificates that share their names, in one SSL_CTX. */
struct tls_entry {
    SSL_CTX *ssl;
    char **names; /* lower case; "*.example.com" for a wildcard */
    size_t nnames;
};

struct tls_set {
    _Atomic unsigned refs;
    struct http_tls_ctx *owner;
    unsigned char secret[TICKET_SECRET_MAX];
    size_t secret_len;
    uint64_t period_ms;
    int h2;
    struct tls_ocsp ocsp[HTTP_TLS_MAX_CERTS];
    size_t nocsp;
    size_t n;
    struct tls_entry e[HTTP_TLS_MAX_CERTS]; /* e[0] is the default */
};

struct http_tls_ctx {
    unsigned magic;
    pthread_mutex_t mtx; /* guards set */
    struct tls_set *set; /* ref */
    _Atomic uint64_t handshakes, resumed, failed, issued, renewed;
};

struct http_tls_conn {
    unsigned magic;
    SSL *ssl;
    struct tls_set *set; /* ref */
    bool done, failed;
    bool keep_bufs;  /* SSL_MODE_RELEASE_BUFFERS is off: requests are coming */
    const char *err; /* static: OpenSSL's reason string, or a literal */
    /* Between the socket and OpenSSL: ciphertext fed and not yet read by OpenSSL (from
     * in_off), and records OpenSSL wrote and the caller did not take yet. Plain buffers,
     * not memory BIOs: a BIO_s_mem zero-fills every byte before copying it in. */
    char *in, *out; /* owned, NULL when empty for good (trimmed) */
    size_t in_off, in_len, in_cap, out_len, out_cap;
};

/* ---- loading ---- */

static int errf(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int errf(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;
    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* OpenSSL's reason for the last failure, or a fallback. */
static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "unknown error";
}

static char *lower_dup(const char *s, size_t n)
{
    char *d = mc_xmalloc(n + 1);
    for (size_t i = 0; i < n; i++)
        d[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
    d[n] = '\0';
    return d;
}

/* The names a certificate answers for: its DNS subject alternative names, or the common
 * name when it has none (RFC 6125 §6.4.4). */
static int cert_names(X509 *x, char ***out, size_t *nout)
{
    GENERAL_NAMES *san = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    char **v = NULL;
    size_t n = 0;

    if (san != NULL) {
        int k = sk_GENERAL_NAME_num(san);
        v = mc_xcalloc((size_t)(k > 0 ? k : 1), sizeof(*v));
        for (int i = 0; i < k; i++) {
            const GENERAL_NAME *g = sk_GENERAL_NAME_value(san, i);
            if (g->type != GEN_DNS)
                continue;
            const unsigned char *d = ASN1_STRING_get0_data(g->d.dNSName);
            int len = ASN1_STRING_length(g->d.dNSName);
            if (len > 0 && memchr(d, '\0', (size_t)len) == NULL)
                v[n++] = lower_dup((const char *)d, (size_t)len);
        }
        GENERAL_NAMES_free(san);
    }
    if (n == 0) {
        char cn[256];
        int len = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn,
                                            sizeof(cn));
        if (len > 0) {
            free(v);
            v = mc_xcalloc(1, sizeof(*v));
            v[n++] = lower_dup(cn, (size_t)len);
        }
    }
    *out = v;
    *nout = n;
    return 0;
}

static void names_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static int same_names(char *const *a, size_t na, char *const *b, size_t nb)
{
    if (na != nb)
        return 0;
    for (size_t i = 0; i < na; i++) {
        size_t j = 0;
        while (j < nb && strcmp(a[i], b[j]) != 0)
            j++;
        if (j == nb)
            return 0;
    }
    return 1;
}

static int sni_cb(SSL *s, int *al, void *arg);
static int alpn_cb(SSL *s, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg);
static int ticket_cb(SSL *s, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc);
static int ocsp_cb(SSL *s, void *arg);

static SSL_CTX *ssl_ctx_new(const struct tls_set *set, char *err, size_t errlen)
{
    SSL_CTX *x = SSL_CTX_new(TLS_server_method());
    if (x == NULL) {
        errf(err, errlen, -ENOMEM, "TLS: %s", ssl_reason());
        return NULL;
    }
    SSL_CTX_set_min_proto_version(x, TLS1_2_VERSION);
    SSL_CTX_set_options(x, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_NO_COMPRESSION);
    if (SSL_CTX_set_cipher_list(x, TLS12_CIPHERS) != 1 ||
        SSL_CTX_set_ciphersuites(x, TLS13_SUITES) != 1 ||
        SSL_CTX_set1_groups_list(x, TLS_GROUPS) != 1) {
        errf(err, errlen, -EINVAL, "TLS: cipher set-up: %s", ssl_reason());
        SSL_CTX_free(x);
        return NULL;
    }
    /* A connection that only shook hands holds no record buffers (released after each
     * record: they go back to malloc at once, for the next handshake to reuse); one that
     * carries requests keeps them (http_tls_read) until it is idle (http_tls_trim): the
     * release costs a 16 KB free and malloc around every record. */
    SSL_CTX_set_mode(x, SSL_MODE_RELEASE_BUFFERS);
    /* Resumption by tickets only: no per-process session cache to share or to fill. */
    SSL_CTX_set_session_cache_mode(x, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_session_id_context(x, (const unsigned char *)TLS_SID_CTX, sizeof(TLS_SID_CTX) - 1);
    SSL_CTX_set_num_tickets(x, 1);
    /* A ticket lives through the period it was issued in and the next. */
    SSL_CTX_set_timeout(x, (long)(2 * set->period_ms / 1000));
    SSL_CTX_set_max_early_data(x, 0);
    SSL_CTX_set_recv_max_early_data(x, 0);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(x, ticket_cb);
    SSL_CTX_set_alpn_select_cb(x, alpn_cb, NULL);
    SSL_CTX_set_tlsext_servername_callback(x, sni_cb);
    SSL_CTX_set_tlsext_status_cb(x, ocsp_cb);
    return x;
}

static int read_file(const char *path, unsigned char *buf, size_t cap, size_t *len, char *err,
                     size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return errf(err, errlen, -errno, "%s: %s", path, strerror(errno));
    size_t n = fread(buf, 1, cap, f);
    int bad = ferror(f), more = !bad && fgetc(f) != EOF;
    fclose(f);
    if (bad)
        return errf(err, errlen, -EIO, "%s: read failed", path);
    if (more)
        return errf(err, errlen, -EFBIG, "%s: larger than %zu bytes", path, cap);
    *len = n;
    return 0;
}

static void set_free(struct tls_set *set)
{
    for (size_t i = 0; i < set->n; i++) {
        SSL_CTX_free(set->e[i].ssl);
        names_free(set->e[i].names, set->e[i].nnames);
    }
    for (size_t i = 0; i < set->nocsp; i++)
        free(set->ocsp[i].der);
    OPENSSL_cleanse(set->secret, sizeof(set->secret));
    free(set);
}

static void set_unref(struct tls_set *set)
{
    if (set != NULL && atomic_fetch_sub(&set->refs, 1) == 1)
        set_free(set);
}

/* Adds one certificate to its entry (a new one unless one has the same names). */
static int load_cert(struct tls_set *set, const struct http_tls_cert *c, char *err, size_t errlen)
{
    FILE *f;
    X509 *leaf;
    char **names;
    size_t nnames, i;
    int rc = 0;

    if (c->cert == NULL || c->key == NULL)
        return errf(err, errlen, -EINVAL, "TLS: a certificate needs both a cert and a key file");
    if ((f = fopen(c->cert, "r")) == NULL)
        return errf(err, errlen, -errno, "%s: %s", c->cert, strerror(errno));
    leaf = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (leaf == NULL)
        return errf(err, errlen, -EINVAL, "%s: not a PEM certificate (%s)", c->cert, ssl_reason());
    cert_names(leaf, &names, &nnames);
    X509_free(leaf);
    if (nnames == 0) {
        names_free(names, nnames);
        return errf(err, errlen, -EINVAL, "%s: the certificate names no host", c->cert);
    }
    for (i = 0; i < set->n; i++)
        if (same_names(set->e[i].names, set->e[i].nnames, names, nnames))
            break;
    if (i == set->n) {
        if (set->n == HTTP_TLS_MAX_CERTS) {
            names_free(names, nnames);
            return errf(err, errlen, -E2BIG, "TLS: at most %d certificates", HTTP_TLS_MAX_CERTS);
        }
        SSL_CTX *x = ssl_ctx_new(set, err, errlen);
        if (x == NULL) {
            names_free(names, nnames);
            return -ENOMEM;
        }
        set->e[i].ssl = x;
        set->e[i].names = names;
        set->e[i].nnames = nnames;
        set->n++;
    } else {
        names_free(names, nnames);
    }
    SSL_CTX *x = set->e[i].ssl;
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(x, c->cert) != 1)
        return errf(err, errlen, -EINVAL, "%s: %s", c->cert, ssl_reason());
    if (SSL_CTX_use_PrivateKey_file(x, c->key, SSL_FILETYPE_PEM) != 1)
        return errf(err, errlen, -EINVAL, "%s: %s", c->key, ssl_reason());
    if (SSL_CTX_check_private_key(x) != 1)
        return errf(err, errlen, -EINVAL, "%s: the key does not match %s", c->key, c->cert);
    if (c->ocsp != NULL) {
        unsigned char *der = mc_xmalloc(64 << 10);
        size_t len = 0;
        if ((rc = read_file(c->ocsp, der, 64 << 10, &len, err, errlen)) != 0) {
            free(der);
            return rc;
        }
        const unsigned char *p = der;
        OCSP_RESPONSE *r = len ? d2i_OCSP_RESPONSE(NULL, &p, (long)len) : NULL;
        if (r == NULL) {
            free(der);
            return errf(err, errlen, -EINVAL, "%s: not a DER OCSP response", c->ocsp);
        }
        OCSP_RESPONSE_free(r);
        set->ocsp[set->nocsp].leaf = SSL_CTX_get0_certificate(x);
        set->ocsp[set->nocsp].der = der;
        set->ocsp[set->nocsp].len = len;
        set->nocsp++;
    }
    return 0;
}

static int set_new(const struct http_tls_cfg *cfg, const struct tls_set *prev, struct tls_set **out,
                   char *err, size_t errlen)
{
    struct tls_set *set = mc_xcalloc(1, sizeof(*set));
    int rc = 0;

    atomic_init(&set->refs, 1);
    set->period_ms = cfg->ticket_period_ms ? cfg->ticket_period_ms : DEFAULT_PERIOD_MS;
    if (set->period_ms < 2000) {
        rc = errf(err, errlen, -EINVAL, "TLS: the ticket key period must be at least 2s");
        goto fail;
    }
    set->h2 = cfg->h2;
    if (cfg->ncerts == 0) {
        rc = errf(err, errlen, -EINVAL, "TLS: no certificate");
        goto fail;
    }
    if (cfg->ncerts > HTTP_TLS_MAX_CERTS) {
        rc = errf(err, errlen, -E2BIG, "TLS: at most %d certificates", HTTP_TLS_MAX_CERTS);
        goto fail;
    }
    if (cfg->ticket_secret_file != NULL) {
        rc = read_file(cfg->ticket_secret_file, set->secret, sizeof(set->secret), &set->secret_len,
                       err, errlen);
        if (rc != 0)
            goto fail;
        if (set->secret_len < HTTP_TLS_SECRET_MIN) {
            rc = errf(err, errlen, -EINVAL, "%s: %zu bytes; a ticket secret needs at least %d",
                      cfg->ticket_secret_file, set->secret_len, HTTP_TLS_SECRET_MIN);
            goto fail;
        }
    } else if (prev != NULL && prev->secret_len) {
        /* A reload without a secret file keeps the process's secret: tickets stay valid. */
        memcpy(set->secret, prev->secret, prev->secret_len);
        set->secret_len = prev->secret_len;
    } else {
        set->secret_len = 48;
        if (RAND_bytes(set->secret, (int)set->secret_len) != 1) {
            rc = errf(err, errlen, -EIO, "TLS: no randomness for the ticket secret");
            goto fail;
        }
    }
    for (size_t i = 0; i < cfg->ncerts; i++)
        if ((rc = load_cert(set, &cfg->certs[i], err, errlen)) != 0)
            goto fail;
    *out = set;
    return 0;
fail:
    set_free(set);
    return rc;
}

int http_tls_ctx_new(const struct http_tls_cfg *cfg, struct http_tls_ctx **out, char *err,
                     size_t errlen)
{
    struct tls_set *set;
    int rc = set_new(cfg, NULL, &set, err, errlen);
    if (rc != 0)
        return rc;
    struct http_tls_ctx *c = mc_xcalloc(1, sizeof(*c));
    MC_INIT_OBJ(c, TLS_CTX_MAGIC);
    pthread_mutex_init(&c->mtx, NULL);
    set->owner = c;
    c->set = set;
    *out = c;
    return 0;
}

int http_tls_ctx_reload(struct http_tls_ctx *c, const struct http_tls_cfg *cfg, char *err,
                        size_t errlen)
{
    struct tls_set *set, *old;
    MC_CHECK_OBJ(c, TLS_CTX_MAGIC);
    pthread_mutex_lock(&c->mtx);
    old = c->set;
    atomic_fetch_add(&old->refs, 1);
    pthread_mutex_unlock(&c->mtx);
    int rc = set_new(cfg, old, &set, err, errlen);
    set_unref(old);
    if (rc != 0)
        return rc;
    set->owner = c;
    pthread_mutex_lock(&c->mtx);
    old = c->set;
    c->set = set;
    pthread_mutex_unlock(&c->mtx);
    set_unref(old);
    return 0;
}

void http_tls_ctx_stats(const struct http_tls_ctx *c, struct http_tls_stats *out)
{
    MC_CHECK_OBJ(c, TLS_CTX_MAGIC);
    out->handshakes = atomic_load(&c->handshakes);
    out->resumed = atomic_load(&c->resumed);
    out->failed = atomic_load(&c->failed);
    out->tickets_issued = atomic_load(&c->issued);
    out->tickets_renewed = atomic_load(&c->renewed);
}

void http_tls_ctx_free(struct http_tls_ctx **cp)
{
    struct http_tls_ctx *c = *cp;
    if (c == NULL)
        return;
    MC_CHECK_OBJ(c, TLS_CTX_MAGIC);
    set_unref(c->set);
    pthread_mutex_destroy(&c->mtx);
    MC_FREE_OBJ(c);
    *cp = NULL;
}

/* ---- callbacks ---- */

static struct http_tls_conn *conn_of(SSL *s)
{
    struct http_tls_conn *t = SSL_get_app_data(s);
    MC_CHECK_OBJ(t, TLS_CONN_MAGIC);
    return t;
}

/* Whether host (lower case) is one of an entry's names; "*.b.c" matches "a.b.c" only. */
static int name_match(const char *pat, const char *host)
{
    if (pat[0] == '*' && pat[1] == '.') {
        const char *dot = strchr(host, '.');
        return dot != NULL && dot != host && strcmp(dot, pat + 1) == 0;
    }
    return strcmp(pat, host) == 0;
}

static int sni_cb(SSL *s, int *al, void *arg)
{
    (void)al;
    (void)arg;
    struct http_tls_conn *t = conn_of(s);
    const char *name = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
    char host[256];
    size_t n;

    if (name == NULL || (n = strlen(name)) == 0 || n >= sizeof(host))
        return SSL_TLSEXT_ERR_OK; /* the default certificate */
    for (size_t i = 0; i < n; i++)
        host[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
    host[n] = '\0';
    /* An exact name wins over a wildcard, whatever the order of the certificates. */
    for (int wild = 0; wild < 2; wild++)
        for (size_t i = 0; i < t->set->n; i++)
            for (size_t j = 0; j < t->set->e[i].nnames; j++) {
                const char *p = t->set->e[i].names[j];
                if ((p[0] == '*') == wild && name_match(p, host)) {
                    if (i != 0)
                        SSL_set_SSL_CTX(s, t->set->e[i].ssl);
                    return SSL_TLSEXT_ERR_OK;
                }
            }
    return SSL_TLSEXT_ERR_OK;
}

static int alpn_cb(SSL *s, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char with_h2[] = "\x02h2\x08http/1.1";
    static const unsigned char h11[] = "\x08http/1.1";
    (void)arg;
    struct http_tls_conn *t = conn_of(s);
    const unsigned char *srv = t->set->h2 ? with_h2 : h11;
    unsigned int srvlen = t->set->h2 ? sizeof(with_h2) - 1 : sizeof(h11) - 1;
    unsigned char *sel;

    /* The server's order: h2 when both offer it. No overlap is a fatal alert
     * (no_application_protocol, RFC 7301 §3.2): the client would speak a protocol we do not. */
    if (SSL_select_next_proto(&sel, outlen, srv, srvlen, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* The 80 bytes of period p's ticket key: name (16), AES-256 key (32), HMAC key (32), as
 * HMAC-SHA256(secret, "mlcdn ticket key" || p || i) for i = 1, 2, 3. */
struct ticket_key {
    unsigned char name[16], aes[32], mac[32];
};

static int ticket_key(const struct tls_set *set, uint64_t p, struct ticket_key *k)
{
    unsigned char out[96], msg[16 + 8 + 1];
    size_t got;

    memcpy(msg, "mlcdn ticket key", 16);
    for (int i = 0; i < 8; i++)
        msg[16 + i] = (unsigned char)(p >> (56 - 8 * i));
    for (int i = 0; i < 3; i++) {
        msg[24] = (unsigned char)(i + 1);
        if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, set->secret, set->secret_len, msg,
                      sizeof(msg), out + 32 * i, 32, &got) == NULL ||
            got != 32)
            return -EIO;
    }
    memcpy(k->name, out, 16);
    memcpy(k->aes, out + 16, 32);
    memcpy(k->mac, out + 48, 32);
    OPENSSL_cleanse(out, sizeof(out));
    return 0;
}

static uint64_t period_now(const struct tls_set *set)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000) / set->period_ms;
}

static int ticket_use(const struct ticket_key *k, const unsigned char *iv, EVP_CIPHER_CTX *cctx,
                      EVP_MAC_CTX *hctx, int enc)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->mac, sizeof(k->mac)),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_MAC_CTX_set_params(hctx, params) != 1)
        return -EIO;
    if (enc)
        return EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) == 1 ? 0 : -EIO;
    return EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) == 1 ? 0 : -EIO;
}

static int ticket_cb(SSL *s, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    struct http_tls_conn *t = conn_of(s);
    const struct tls_set *set = t->set;
    struct ticket_key k;
    uint64_t p = period_now(set);
    int rc = -1;

    if (enc) {
        if (ticket_key(set, p, &k) == 0 && RAND_bytes(iv, 16) == 1 &&
            ticket_use(&k, iv, cctx, hctx, 1) == 0) {
            memcpy(name, k.name, 16);
            atomic_fetch_add(&set->owner->issued, 1);
            rc = 1;
        }
        OPENSSL_cleanse(&k, sizeof(k));
        return rc;
    }
    /* This period's key; the previous one (renewed), and the next one too, since another
     * edge's clock may have turned already. */
    static const int64_t tries[] = {0, -1, 1};
    for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
        if (ticket_key(set, p + (uint64_t)tries[i], &k) != 0)
            break;
        if (memcmp(k.name, name, 16) == 0) {
            rc = ticket_use(&k, iv, cctx, hctx, 0) == 0 ? (tries[i] == -1 ? 2 : 1) : -1;
            if (rc == 2)
                atomic_fetch_add(&set->owner->renewed, 1);
            break;
        }
        rc = 0; /* unknown key: a full handshake */
    }
    OPENSSL_cleanse(&k, sizeof(k));
    return rc;
}

static int ocsp_cb(SSL *s, void *arg)
{
    (void)arg;
    struct http_tls_conn *t = conn_of(s);
    X509 *leaf = SSL_get_certificate(s);
    for (size_t i = 0; i < t->set->nocsp; i++) {
        if (t->set->ocsp[i].leaf != leaf)
            continue;
        unsigned char *copy = OPENSSL_malloc(t->set->ocsp[i].len);
        if (copy == NULL)
            return SSL_TLSEXT_ERR_NOACK;
        memcpy(copy, t->set->ocsp[i].der, t->set->ocsp[i].len);
        SSL_set_tlsext_status_ocsp_resp(s, copy, (long)t->set->ocsp[i].len);
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* ---- connections ---- */

/* SSL_get_error() reads the thread's error queue, so it must be empty before a call; it
 * nearly always is, and emptying it costs far more than looking (OpenSSL 3 clears every
 * slot). */
static void clear_errors(void)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

/* A buffer is kept at most this large once emptied; a larger one goes back to malloc. */
#define BUF_KEEP (32u << 10)

static void grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return;
    /* From the first need exactly: a handshake's buffers are small, and they are freed
     * between long-lived allocations (the trim), where a larger one leaves a larger hole. */
    size_t n = *cap ? *cap * 2 : need;
    while (n < need)
        n *= 2;
    *buf = mc_xrealloc(*buf, n);
    *cap = n;
}

/* The BIO OpenSSL reads and writes: t's two buffers. Reading an empty input asks to be
 * called again (more is to come), it is not the end of the stream. */
static int bio_write(BIO *b, const char *data, int len)
{
    struct http_tls_conn *t = BIO_get_data(b);
    if (len <= 0)
        return 0;
    grow(&t->out, &t->out_cap, t->out_len + (size_t)len);
    memcpy(t->out + t->out_len, data, (size_t)len);
    t->out_len += (size_t)len;
    return len;
}

static int bio_read(BIO *b, char *buf, int cap)
{
    struct http_tls_conn *t = BIO_get_data(b);
    size_t avail = t->in_len - t->in_off;

    BIO_clear_retry_flags(b);
    if (avail == 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n = cap > 0 && (size_t)cap < avail ? (size_t)cap : avail;
    memcpy(buf, t->in + t->in_off, n);
    t->in_off += n;
    if (t->in_off == t->in_len) {
        t->in_off = t->in_len = 0;
        if (t->in_cap > BUF_KEEP) { /* a large read passed: not kept for small ones */
            free(t->in);
            t->in = NULL;
            t->in_cap = 0;
        }
    }
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    struct http_tls_conn *t = BIO_get_data(b);
    (void)num, (void)ptr;
    switch (cmd) {
    case BIO_CTRL_PENDING: return (long)(t->in_len - t->in_off);
    case BIO_CTRL_WPENDING: return (long)t->out_len;
    case BIO_CTRL_FLUSH:
    case BIO_CTRL_DUP: return 1;
    default: return 0;
    }
}

static BIO_METHOD *bio_method;

static void bio_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "mlcdn buffers");
    MC_ASSERT(m != NULL);
    BIO_meth_set_write(m, bio_write);
    BIO_meth_set_read(m, bio_read);
    BIO_meth_set_ctrl(m, bio_ctrl);
    bio_method = m;
}

/* A trimmed connection has no BIO (http_tls_trim): it comes back before the next call
 * into OpenSSL. One BIO both ways: OpenSSL reads t->in and writes t->out through it. */
static void attach(struct http_tls_conn *t)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    if (SSL_get_rbio(t->ssl) != NULL)
        return;
    pthread_once(&once, bio_method_init);
    BIO *b = BIO_new(bio_method);
    MC_ASSERT(b != NULL);
    BIO_set_data(b, t);
    BIO_set_init(b, 1);
    SSL_set_bio(t->ssl, b, b); /* the same BIO both ways: one reference passes */
}

struct http_tls_conn *http_tls_conn_new(struct http_tls_ctx *c)
{
    struct http_tls_conn *t = mc_xcalloc(1, sizeof(*t));
    MC_CHECK_OBJ(c, TLS_CTX_MAGIC);
    MC_INIT_OBJ(t, TLS_CONN_MAGIC);
    pthread_mutex_lock(&c->mtx);
    t->set = c->set;
    atomic_fetch_add(&t->set->refs, 1);
    pthread_mutex_unlock(&c->mtx);
    t->ssl = SSL_new(t->set->e[0].ssl);
    /* Control structures abort on allocation failure, as mc_xmalloc does. */
    MC_ASSERT(t->ssl != NULL);
    attach(t);
    SSL_set_app_data(t->ssl, t);
    SSL_set_accept_state(t->ssl);
    return t;
}

void http_tls_conn_free(struct http_tls_conn **tp)
{
    struct http_tls_conn *t = *tp;
    if (t == NULL)
        return;
    MC_CHECK_OBJ(t, TLS_CONN_MAGIC);
    SSL_free(t->ssl);
    set_unref(t->set);
    free(t->in);
    free(t->out);
    MC_FREE_OBJ(t);
    *tp = NULL;
}

int http_tls_feed(struct http_tls_conn *t, const void *data, size_t len)
{
    MC_CHECK_OBJ(t, TLS_CONN_MAGIC);
    attach(t);
    if (len > INT32_MAX - (t->in_len - t->in_off))
        return -ENOMEM; /* more than OpenSSL will be asked to read: never from one socket read */
    if (t->in_off > 0 && t->in_len + len > t->in_cap) {
        memmove(t->in, t->in + t->in_off, t->in_len - t->in_off);
        t->in_len -= t->in_off;
        t->in_off = 0;
    }
    grow(&t->in, &t->in_cap, t->in_len + len);
    memcpy(t->in + t->in_len, data, len);
    t->in_len += len;
    return 0;
}

static void check_done(struct http_tls_conn *t)
{
    if (t->done || !SSL_is_init_finished(t->ssl))
        return;
    t->done = 1;
    if (SSL_session_reused(t->ssl))
        atomic_fetch_add(&t->set->owner->resumed, 1);
    else
        atomic_fetch_add(&t->set->owner->handshakes, 1);
}

static void fail(struct http_tls_conn *t)
{
    if (t->failed)
        return;
    t->failed = 1;
    t->err = ssl_reason();
    ERR_clear_error();
    if (!t->done)
        atomic_fetch_add(&t->set->owner->failed, 1);
}

ssize_t http_tls_read(struct http_tls_conn *t, void *buf, size_t cap)
{
    MC_CHECK_OBJ(t, TLS_CONN_MAGIC);
    if (t->failed)
        return -EPROTO;
    attach(t);
    /* Once the handshake is done, nothing can come out of SSL_read without new bytes or
     * what it already holds: the common last call of a read loop skips OpenSSL. A
     * close_notify already read still answers as SSL_read would, every time. */
    if (t->done && !SSL_has_pending(t->ssl) && t->in_len == t->in_off &&
        !(SSL_get_shutdown(t->ssl) & SSL_RECEIVED_SHUTDOWN))
        return 0;
    clear_errors();
    int n = SSL_read(t->ssl, buf, cap > INT32_MAX ? INT32_MAX : (int)cap);
    check_done(t);
    if (n > 0) {
        if (!t->keep_bufs) {
            SSL_clear_mode(t->ssl, SSL_MODE_RELEASE_BUFFERS);
            t->keep_bufs = true;
        }
        return n;
    }
    switch (SSL_get_error(t->ssl, n)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE: return 0;
    case SSL_ERROR_ZERO_RETURN: return -ECONNRESET;
    default: fail(t); return -EPROTO;
    }
}

ssize_t http_tls_write(struct http_tls_conn *t, const void *data, size_t len)
{
    MC_CHECK_OBJ(t, TLS_CONN_MAGIC);
    if (t->failed)
        return -EPROTO;
    if (!t->done)
        return -EAGAIN;
    attach(t);
    for (size_t off = 0; off < len;) {
        size_t chunk = len - off > INT32_MAX ? INT32_MAX : len - off;
        clear_errors();
        int n = SSL_write(t->ssl, (const char *)data + off, (int)chunk);
        if (n <= 0) {
            fail(t);
            return -EPROTO;
        }
        off += (size_t)n;
    }
    return (ssize_t)len;
}

size_t http_tls_pending(const struct http_tls_conn *t)
{
    MC_CHECK_OBJ(t, TLS_CONN_MAGIC);
    return t->out_len;
}

size_t http_tls_take(struct http_tls_conn *t, void *buf, size_t cap)
{
    MC_CHECK_OBJ(t, TLS_CONN_MAGIC);
    size_t n = MC_MIN(cap, t->out_len);
    if (n == 0)
        return 0;
    memcpy(buf, t->out, n);
    memmove(t->out, t->out + n, t->out_len - n);
    t->out_len -= n;
    return n;
}

char *http_tls_take_buf(struct http_tls_conn *t, size_t *len, size_t *cap)
{
    MC_CHECK_OBJ(t, TLS_CONN_MAGIC);
    char *b = t->out;
    *len = t->out_len;
    *cap = t->out_cap;
    if (t->out_len == 0)
        return NULL;
    t->out = NULL;
    t->out_len = t->out_cap = 0;
    return b;
}

void http_tls_give_buf(struct http_tls_conn *t, char *buf, size_t cap)
{
    MC_CHECK_OBJ(t, TLS_CONN_MAGIC);
    if (t->out == NULL && cap <= BUF_KEEP) {
        t->out = buf;
        t->out_cap = cap;
    } else {
        free(buf);
    }
}

void http_tls_trim(struct http_tls_conn *t)
{
    MC_CHECK_OBJ(t, TLS_CONN_MAGIC);
    /* Nothing waiting either way: the BIO and both buffers go (the input one grew to the
     * largest socket read, the output one to a flight); attach() and the first bytes
     * bring them back when the connection wakes up. */
    if (t->in_len != t->in_off || t->out_len != 0)
        return;
    if (SSL_get_rbio(t->ssl) != NULL)
        SSL_set_bio(t->ssl, NULL, NULL);
    if (t->keep_bufs) {
        SSL_set_mode(t->ssl, SSL_MODE_RELEASE_BUFFERS);
        SSL_free_buffers(t->ssl); /* fails (keeping them) only while a record is in them */
        t->keep_bufs = false;
    }
    free(t->in);
    free(t->out);
    t->in = t->out = NULL;
    t->in_off = t->in_len = t->in_cap = t->out_cap = 0;
}

void http_tls_close_notify(struct http_tls_conn *t)
{
    MC_CHECK_OBJ(t, TLS_CONN_MAGIC);
    if (t->done && !t->failed) {
        attach(t);
        ERR_clear_error();
        SSL_shutdown(t->ssl);
        ERR_clear_error();
    }
}

int http_tls_done(const struct http_tls_conn *t)
{
    return t->done;
}

int http_tls_resumed(const struct http_tls_conn *t)
{
    return t->done && SSL_session_reused(t->ssl);
}

const char *http_tls_alpn(const struct http_tls_conn *t)
{
    static _Thread_local char buf[32];
    const unsigned char *p;
    unsigned int n;
    SSL_get0_alpn_selected(t->ssl, &p, &n);
    if (p == NULL || n == 0 || n >= sizeof(buf))
        return "";
    memcpy(buf, p, n);
    buf[n] = '\0';
    return buf;
}

const char *http_tls_sni(const struct http_tls_conn *t)
{
    const char *n = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
    return n ? n : "";
}

const char *http_tls_version(const struct http_tls_conn *t)
{
    return SSL_get_version(t->ssl);
}

const char *http_tls_cipher(const struct http_tls_conn *t)
{
    const char *c = SSL_get_cipher_name(t->ssl);
    return c ? c : "";
}

const char *http_tls_error(const struct http_tls_conn *t)
{
    return t->err ? t->err : "";
}
