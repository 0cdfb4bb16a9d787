/* src/core/buf.h: a growable byte buffer with a hard cap fixed at init.
 *
 * Every buffer fed from the network is bounded: appending past `cap` fails with
 * -E2BIG and leaves the buffer as it was. The struct is embedded by its owner
 * (buf_init/buf_fini); the bytes belong to the buffer until buf_take(). */
#ifndef MLCDN_CORE_BUF_H
#define MLCDN_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <string.h>

#include "core/mc.h"

struct buf {
    char *data; /* NUL-terminated when len < alloc, for convenience of C string users */
    size_t len;
    size_t alloc;
    size_t cap;
};

void buf_init(struct buf *b, size_t cap);
void buf_fini(struct buf *b);
void buf_reset(struct buf *b);
/* 0, or -E2BIG when the result would exceed the cap. */
int buf__append_slow(struct buf *b, const void *p, size_t n);
static inline int buf_append(struct buf *b, const void *p, size_t n)
{
    /* Fast path: room for the bytes and the terminating NUL, within the cap. */
    if (n && b->alloc - b->len > n && b->cap - b->len >= n) {
        memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = '\0';
        return 0;
    }
    return buf__append_slow(b, p, n);
}
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) MC_PRINTF(2, 3);
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Appends the decimal form of v (no printf on hot paths). */
int buf_append_u64(struct buf *b, uint64_t v);
/* Appends s[0..n) as a JSON string, quotes included (RFC 8259 §7): '"' and '\\' escaped,
 * the controls U+0000..U+001F as \b \f \n \r \t or \u00xx (lower-case hex), everything else
 * (DEL and '/' included) as itself, so a well-formed string comes out in the canonical
 * form of RFC 8785 §3.2.2.2. Bytes that are not well-formed UTF-8 (RFC 3629 §4) become
 * U+FFFD, one per maximal ill-formed subpart (Unicode §3.9), so the output is always
 * valid UTF-8 as RFC 8259 §8.1 requires. 0, or -E2BIG with the buffer left as it was. */
int buf_json_str(struct buf *b, const char *s, size_t n);
/* The same without the quotes, for a string value written in several pieces. */
int buf_json_esc(struct buf *b, const char *s, size_t n);
/* Drops the first n bytes. */
void buf_consume(struct buf *b, size_t n);
/* Moves the bytes out; the caller frees them with free(). The buffer is left empty. */
char *buf_take(struct buf *b, size_t *len);

#endif
