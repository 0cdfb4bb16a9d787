/* tests/fuzz/fuzz_http_proxy.c: an upstream's response head as the edge checks and stores it
 * (http_proxy_resp_parse, http_proxy_merge_304).
 *
 * Input: byte 0 picks the status, the HTTP minor version and "no body"; the rest is split
 * at the first CRLFCRLF into the field lines of a response and those of a 304 merged into
 * what was stored of it. Both parts are exact-size heap copies (a read past them is an
 * ASan error).
 *
 * Invariants: a refused head gives -EPROTO or -E2BIG and a reason; an accepted one gives a
 * well-formed stored block ("token: value\r\n" lines, values without CR, LF, NUL or
 * surrounding whitespace, no hop-by-hop or framing field, no field the Connection list
 * names), a length that is -1 when chunked, and parsing the stored block again accepts it
 * and gives the same block (a fixpoint) and no ETag or Vary the head did not have. A merge gives a well-formed block holding every
 * stored line of the 304, or NULL exactly when the 304 is refused or the result too
 * large. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/http_proxy.h"

#define CHECK(e)                                                                                   \
    do {                                                                                           \
        if (!(e))                                                                                  \
            abort();                                                                               \
    } while (0)

static const int statuses[8] = {200, 204, 206, 304, 404, 500, 301, 203};

static int tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int ieq(const char *p, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(p, lit, n) == 0;
}

/* Is name listed in a Connection field of the raw input lines? (An oracle written apart
 * from the code under test: fields split at LF, names up to ':', list items at ','.) */
static int connection_lists(const char *in, size_t len, const char *name, size_t n)
{
    const char *p = in, *end = in + len;

    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (colon && ieq(p, (size_t)(colon - p), "connection")) {
            const char *q = colon + 1;
            while (q < le) {
                const char *c = memchr(q, ',', (size_t)(le - q));
                const char *ie = c ? c : le;
                while (q < ie && (*q == ' ' || *q == '\t'))
                    q++;
                const char *te = ie;
                while (te > q && (te[-1] == ' ' || te[-1] == '\t' || te[-1] == '\r'))
                    te--;
                if ((size_t)(te - q) == n && strncasecmp(q, name, n) == 0)
                    return 1;
                q = c ? c + 1 : le;
            }
        }
        p = eol ? eol + 1 : end;
    }
    return 0;
}

/* The stored block is well-formed; `in` (may be NULL) is the input it was built from. */
static void check_block(const char *b, size_t len, const char *in, size_t inlen)
{
    static const char *const never[] = {"connection",
                                        "keep-alive",
                                        "proxy-connection",
                                        "te",
                                        "trailer",
                                        "transfer-encoding",
                                        "upgrade",
                                        "proxy-authenticate",
                                        "proxy-authorization",
                                        "content-length",
                                        "age",
                                        "surrogate-control"};
    const char *p = b, *end = b + len;

    CHECK(b != NULL && strlen(b) == len && len <= HTTP_PROXY_HDRS_MAX);
    while (p < end) {
        const char *crlf = memchr(p, '\r', (size_t)(end - p));
        CHECK(crlf != NULL && crlf + 1 < end && crlf[1] == '\n');
        const char *colon = memchr(p, ':', (size_t)(crlf - p));
        CHECK(colon != NULL && colon > p);
        for (const char *q = p; q < colon; q++)
            CHECK(tchar((unsigned char)*q));
        CHECK(colon + 1 < crlf + 1 && colon[1] == ' ');
        const char *v = colon + 2;
        for (const char *q = v; q < crlf; q++)
            CHECK(*q != '\n' && *q != '\0');
        if (crlf > v)
            CHECK(v[0] != ' ' && v[0] != '\t' && crlf[-1] != ' ' && crlf[-1] != '\t');
        for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++)
            CHECK(!ieq(p, (size_t)(colon - p), never[i]));
        if (in)
            CHECK(!connection_lists(in, inlen, p, (size_t)(colon - p)));
        p = crlf + 2;
    }
}

static char *copy(const uint8_t *d, size_t n)
{
    char *c = malloc(n ? n : 1);
    if (c && n)
        memcpy(c, d, n);
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct http_proxy_resp r, again, fresh;
    const char *why = NULL;
    size_t n1, n2 = 0, mlen = 0;
    int status, minor, no_body, rc, rc2;
    char *a, *b = NULL, *m;

    if (size < 1)
        return 0;
    status = statuses[data[0] & 7];
    minor = (data[0] >> 3) & 1;
    no_body = (data[0] >> 4) & 1;
    data++;
    size--;
    n1 = size;
    for (size_t i = 0; i + 3 < size; i++) {
        if (memcmp(data + i, "\r\n\r\n", 4) == 0) {
            n1 = i + 2;
            n2 = size - i - 4;
            break;
        }
    }
    a = copy(data, n1);
    if (n1 < size)
        b = copy(data + n1 + 2, n2);
    if (!a || (n1 < size && !b))
        goto out;

    rc = http_proxy_resp_parse(&r, status, minor, no_body, a, n1, 1700000000, &why);
    if (rc != 0) {
        CHECK((rc == -EPROTO || rc == -E2BIG) && why != NULL);
    } else {
        check_block(r.hdrs, r.hdrs_len, a, n1);
        CHECK(r.content_length >= -1);
        CHECK(!r.chunked || r.content_length == -1);
        CHECK(!(r.chunked && no_body));
        /* The stored block is its own fixpoint. */
        rc2 = http_proxy_resp_parse(&again, status, 1, no_body, r.hdrs, r.hdrs_len, 1700000000,
                                    &why);
        CHECK(rc2 == 0);
        CHECK(again.hdrs_len == r.hdrs_len && memcmp(again.hdrs, r.hdrs, r.hdrs_len) == 0);
        /* Facts come from every field, stored or not (a field named by Connection is
         * addressed to this hop): the stored block never adds one. */
        CHECK(r.etag || !again.etag);
        CHECK(r.vary || !again.vary);
        http_proxy_resp_fini(&again);

        if (b) {
            int frc = http_proxy_resp_parse(&fresh, 304, 1, 1, b, n2, 0, &why);
            m = http_proxy_merge_304(r.hdrs, r.hdrs_len, b, n2, &mlen);
            if (frc != 0) {
                CHECK(m == NULL);
            } else {
                if (m) {
                    check_block(m, mlen, NULL, 0);
                    /* Every line the 304 contributes is in the result. */
                    const char *p = fresh.hdrs, *end = fresh.hdrs + fresh.hdrs_len;
                    while (p < end) {
                        const char *nl = memchr(p, '\n', (size_t)(end - p));
                        CHECK(nl != NULL);
                        CHECK(memmem(m, mlen, p, (size_t)(nl + 1 - p)) != NULL);
                        p = nl + 1;
                    }
                    rc2 = http_proxy_resp_parse(&again, 200, 1, 0, m, mlen, 0, &why);
                    CHECK(rc2 == 0);
                    http_proxy_resp_fini(&again);
                    free(m);
                } else {
                    CHECK(r.hdrs_len + fresh.hdrs_len > HTTP_PROXY_HDRS_MAX);
                }
                http_proxy_resp_fini(&fresh);
            }
        }
        http_proxy_resp_fini(&r);
    }
    /* A merge into a stored block that is not one (an older store): its bad lines go. */
    if (b) {
        m = http_proxy_merge_304(a, n1, b, n2, &mlen);
        if (m) {
            check_block(m, mlen, NULL, 0);
            free(m);
        }
    }
out:
    free(a);
    free(b);
    return 0;
}
