/* src/core/buf.c: see buf.h. */
#include "core/buf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

void buf_init(struct buf *b, size_t cap)
{
    b->data = NULL;
    b->len = b->alloc = 0;
    b->cap = cap;
}

void buf_fini(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->alloc = 0;
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

static int reserve(struct buf *b, size_t extra)
{
    size_t need;

    if (extra > b->cap || b->len > b->cap - extra)
        return -E2BIG;
    need = b->len + extra + 1;
    if (need <= b->alloc)
        return 0;
    size_t n = b->alloc ? b->alloc : 1024;
    while (n < need)
        n *= 2;
    b->data = mc_xrealloc(b->data, n);
    b->alloc = n;
    return 0;
}

int buf__append_slow(struct buf *b, const void *p, size_t n)
{
    int err = reserve(b, n);
    if (err)
        return err;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int buf_puts(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
    va_list cp;
    int n;
    int err;

    va_copy(cp, ap);
    n = vsnprintf(NULL, 0, fmt, cp);
    va_end(cp);
    if (n < 0)
        return -EINVAL;
    err = reserve(b, (size_t)n);
    if (err)
        return err;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int err;

    va_start(ap, fmt);
    err = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return err;
}

int buf_append_u64(struct buf *b, uint64_t v)
{
    char tmp[20];
    return buf_append(b, tmp, mc_u64_digits(v, tmp));
}

/* Length of the well-formed UTF-8 sequence that starts at s (RFC 3629 §4 table), or 0 with
 * *bad set to the length of its maximal ill-formed subpart: the lead byte plus the
 * continuation bytes that could still have started a well-formed sequence. */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *bad)
{
    unsigned char lo = 0x80, hi = 0xBF;
    size_t need, k;

    if (s[0] >= 0xC2 && s[0] <= 0xDF) {
        need = 2;
    } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        need = 3;
        if (s[0] == 0xE0)
            lo = 0xA0; /* overlong */
        else if (s[0] == 0xED)
            hi = 0x9F; /* UTF-16 surrogates */
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        need = 4;
        if (s[0] == 0xF0)
            lo = 0x90; /* overlong */
        else if (s[0] == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
    } else {
        *bad = 1; /* a stray continuation byte, C0, C1 or F5..FF */
        return 0;
    }
    for (k = 1; k < need && k < n && s[k] >= lo && s[k] <= hi; k++) {
        lo = 0x80;
        hi = 0xBF;
    }
    if (k == need)
        return need;
    *bad = k;
    return 0;
}

int buf_json_esc(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t len0 = b->len, start = 0, i = 0;
    int err = 0;

    while (i < n) {
        unsigned char c = u[i];

        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t bad = 0, ok = utf8_seq(u + i, n - i, &bad);
            if (ok) {
                i += ok;
                continue;
            }
            if ((err = buf_append(b, s + start, i - start)) != 0 ||
                (err = buf_append(b, "\xEF\xBF\xBD", 3)) != 0)
                goto fail;
            i += bad;
            start = i;
            continue;
        }
        char e[6] = {'\\', 0, '0', '0', hex[c >> 4], hex[c & 15]};
        size_t en = 2;
        switch (c) {
        case '"': e[1] = '"'; break;
        case '\\': e[1] = '\\'; break;
        case '\b': e[1] = 'b'; break;
        case '\f': e[1] = 'f'; break;
        case '\n': e[1] = 'n'; break;
        case '\r': e[1] = 'r'; break;
        case '\t': e[1] = 't'; break;
        default:
            e[1] = 'u';
            en = 6;
            break;
        }
        if ((err = buf_append(b, s + start, i - start)) != 0 || (err = buf_append(b, e, en)) != 0)
            goto fail;
        start = ++i;
    }
    if ((err = buf_append(b, s + start, n - start)) != 0)
        goto fail;
    return 0;
fail:
    b->len = len0;
    if (b->data)
        b->data[len0] = '\0';
    return err;
}

int buf_json_str(struct buf *b, const char *s, size_t n)
{
    size_t len0 = b->len;
    int err;

    if ((err = buf_append(b, "\"", 1)) != 0 || (err = buf_json_esc(b, s, n)) != 0 ||
        (err = buf_append(b, "\"", 1)) != 0) {
        b->len = len0;
        if (b->data)
            b->data[len0] = '\0';
    }
    return err;
}

void buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

char *buf_take(struct buf *b, size_t *len)
{
    char *p = b->data;
    if (len)
        *len = b->len;
    if (!p)
        p = mc_xcalloc(1, 1);
    b->data = NULL;
    b->len = b->alloc = 0;
    return p;
}
