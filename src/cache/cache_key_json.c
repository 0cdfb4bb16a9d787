/* src/cache/cache_key_json.c: canonical JSON for request keys (POST prediction routes).
 *
 * Two bodies that mean the same JSON value must key the same cache entry, so the text is
 * rewritten into one form: no whitespace, object members sorted by the UTF-8 bytes of
 * their unescaped names, numbers rewritten from their decimal text (never through a
 * double, so integers past 2^53 and long fractions stay exact), one escape choice per
 * character. The parser is a strict RFC 8259 recursive descent, bounded at
 * JSON_MAX_DEPTH levels, that writes as it reads; an object's members are reordered in
 * place when its '}' is reached, so nested objects are already canonical when their
 * parent moves them, and duplicate names are found then (after the sort). jansson is not
 * used here: it loses number text and exact error offsets.
 *
 * On error `out` is left as it was found. */
#include "cache/cache_key.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 64
/* Exponent digits beyond this (after leading zeros) are refused: RFC 8259 §9 lets a
 * parser limit the range of numbers, and 10^(10^15) is no prediction input. */
#define JSON_MAX_EXP_DIGITS 15

#define TRY(e)                                                                                     \
    do {                                                                                           \
        int rc_ = (e);                                                                             \
        if (rc_ != 0)                                                                              \
            return rc_;                                                                            \
    } while (0)

struct member {
    size_t off;    /* start of `"name":value` in out */
    size_t klen;   /* canonical name length, quotes excluded */
    size_t len;    /* whole member text */
    size_t pos;    /* input offset of the name, for "duplicate key" */
    const char *k; /* out->data + off + 1, set just before sorting */
};

/* Output goes through a small staging area: a body is thousands of tokens of a few
 * bytes, and one buf_append per token cost more than the parsing itself. */
#define JP_STAGE 512

struct jp {
    const char *s;
    size_t len, i;
    struct buf *out; /* the output so far, but for the ns bytes still staged */
    char stage[JP_STAGE];
    size_t ns;
    struct member *m; /* members of every open object, innermost last */
    size_t nm, am;
    char *tmp; /* reordering scratch, reused by every object */
    size_t atmp;
    size_t err_pos;
    const char *err_msg;
};

static int fail(struct jp *p, size_t pos, const char *msg)
{
    p->err_pos = pos;
    p->err_msg = msg;
    return -EINVAL;
}

static int append(struct jp *p, const void *b, size_t n)
{
    int err = buf_append(p->out, b, n);

    if (err != 0) {
        p->err_pos = p->i;
        p->err_msg = "canonical form over the size limit";
    }
    return err;
}

static int flush(struct jp *p)
{
    size_t n = p->ns;

    p->ns = 0;
    return n ? append(p, p->stage, n) : 0;
}

static int put(struct jp *p, const void *b, size_t n)
{
    if (MC_LIKELY(n <= JP_STAGE - p->ns)) {
        memcpy(p->stage + p->ns, b, n);
        p->ns += n;
        return 0;
    }
    TRY(flush(p));
    if (n > JP_STAGE)
        return append(p, b, n);
    memcpy(p->stage, b, n);
    p->ns = n;
    return 0;
}

static int put1(struct jp *p, char c)
{
    if (MC_UNLIKELY(p->ns == JP_STAGE))
        TRY(flush(p));
    p->stage[p->ns++] = c;
    return 0;
}

/* Offset in out where the next byte will land. */
static size_t opos(const struct jp *p)
{
    return p->out->len + p->ns;
}

static int is_digit(const struct jp *p, size_t i)
{
    return i < p->len && p->s[i] >= '0' && p->s[i] <= '9';
}

static void skip_ws(struct jp *p)
{
    const char *s = p->s;
    size_t i = p->i, n = p->len;

    while (i < n && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t'))
        i++;
    p->i = i;
}

/* Length of the valid UTF-8 sequence at s (RFC 3629 §4: no overlong forms, no
 * surrogates, nothing past U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t len, k;

    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4;
    else
        return 0;
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (k = 2; k < len; k++)
        if (s[k] < 0x80 || s[k] > 0xBF)
            return 0;
    return len;
}

/* The one escape choice per character: the two mandatory escapes, the short forms of
 * RFC 8259 §7 for the controls that have one, \u00xx (lower-case) for the other controls,
 * every other character (including '/', DEL and non-ASCII) as itself. */
static int put_cp(struct jp *p, uint32_t cp)
{
    static const char hex[] = "0123456789abcdef";
    char b[6];

    if (cp >= 0x80) {
        size_t n;

        if (cp < 0x800) {
            b[0] = (char)(0xC0 | cp >> 6);
            n = 2;
        } else if (cp < 0x10000) {
            b[0] = (char)(0xE0 | cp >> 12);
            b[1] = (char)(0x80 | (cp >> 6 & 0x3F));
            n = 3;
        } else {
            b[0] = (char)(0xF0 | cp >> 18);
            b[1] = (char)(0x80 | (cp >> 12 & 0x3F));
            b[2] = (char)(0x80 | (cp >> 6 & 0x3F));
            n = 4;
        }
        b[n - 1] = (char)(0x80 | (cp & 0x3F));
        return put(p, b, n);
    }
    switch (cp) {
    case '"': return put(p, "\\\"", 2);
    case '\\': return put(p, "\\\\", 2);
    case '\b': return put(p, "\\b", 2);
    case '\f': return put(p, "\\f", 2);
    case '\n': return put(p, "\\n", 2);
    case '\r': return put(p, "\\r", 2);
    case '\t': return put(p, "\\t", 2);
    default: break;
    }
    if (cp < 0x20) {
        memcpy(b, "\\u00", 4);
        b[4] = hex[cp >> 4];
        b[5] = hex[cp & 0xF];
        return put(p, b, 6);
    }
    b[0] = (char)cp;
    return put(p, b, 1);
}

static long hex4(const struct jp *p, size_t i)
{
    long v = 0;
    size_t k;

    for (k = 0; k < 4; k++) {
        int h = mc_hexval((unsigned char)p->s[i + k]);

        if (h < 0)
            return -1;
        v = v << 4 | h;
    }
    return v;
}

/* At a backslash inside the string opened at `open`. */
static int escape(struct jp *p, size_t open)
{
    size_t at = p->i;
    long cp, lo;

    if (p->len - at < 2)
        return fail(p, open, "unterminated string");
    switch (p->s[at + 1]) {
    case '"': cp = '"'; break;
    case '\\': cp = '\\'; break;
    case '/': cp = '/'; break;
    case 'b': cp = '\b'; break;
    case 'f': cp = '\f'; break;
    case 'n': cp = '\n'; break;
    case 'r': cp = '\r'; break;
    case 't': cp = '\t'; break;
    case 'u':
        if (p->len - at < 6)
            return fail(p, open, "unterminated string");
        cp = hex4(p, at + 2);
        if (cp < 0)
            return fail(p, at, "invalid escape");
        p->i = at + 6;
        if (cp >= 0xDC00 && cp <= 0xDFFF)
            return fail(p, at, "lone surrogate");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            /* RFC 8259 §7: a character outside the BMP is a surrogate pair of escapes. */
            if (p->len - p->i < 6 || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u')
                return fail(p, at, "lone surrogate");
            lo = hex4(p, p->i + 2);
            if (lo < 0xDC00 || lo > 0xDFFF)
                return fail(p, at, "lone surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p->i += 6;
        }
        return put_cp(p, (uint32_t)cp);
    default: return fail(p, at, "invalid escape");
    }
    p->i = at + 2;
    return put_cp(p, (uint32_t)cp);
}

static int string(struct jp *p)
{
    size_t open = p->i++;

    TRY(put1(p, '"'));
    for (;;) {
        size_t run = p->i, n;
        unsigned char c;

        while (p->i < p->len) {
            c = (unsigned char)p->s[p->i];
            if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\')
                break;
            p->i++;
        }
        if (p->i > run)
            TRY(put(p, p->s + run, p->i - run));
        if (p->i >= p->len)
            return fail(p, open, "unterminated string");
        c = (unsigned char)p->s[p->i];
        if (c == '"') {
            p->i++;
            return put1(p, '"');
        }
        if (c == '\\') {
            TRY(escape(p, open));
            continue;
        }
        if (c < 0x20)
            return fail(p, p->i, "control character in string");
        n = utf8_len((const unsigned char *)p->s + p->i, p->len - p->i);
        if (n == 0)
            return fail(p, p->i, "invalid UTF-8");
        TRY(put(p, p->s + p->i, n));
        p->i += n;
    }
}

/* A number's digits as one string D = int part ++ fraction part, read in place. */
struct digits {
    const char *ip, *fp;
    size_t il, fl;
};

static char digit_at(const struct digits *d, size_t k)
{
    return k < d->il ? d->ip[k] : d->fp[k - d->il];
}

/* Byte by byte: number texts are short, and a call per digit run cost more. */
static int put_digits(struct jp *p, const struct digits *d, size_t from, size_t to)
{
    for (; from < to; from++)
        TRY(put1(p, digit_at(d, from)));
    return 0;
}

static int put_zeros(struct jp *p, size_t n)
{
    while (n-- > 0)
        TRY(put1(p, '0'));
    return 0;
}

/* The value is 0.S x 10^n with S the k significant digits D[a..a+k). Digits are written
 * in place unless that takes more than 21 zeros after them or 5 before them (the bounds
 * of ECMAScript's Number::toString), then as d.ddde±N. The form depends on (sign, S, n)
 * only, which is what makes 1, 1.0, 1e0 and 10E-1 the same bytes, and a body grows by at
 * most 21 bytes per number. */
static int put_number(struct jp *p, int neg, const struct digits *d, size_t a, size_t k,
                      long long n)
{
    char eb[24];
    long long e;

    if (neg)
        TRY(put1(p, '-'));
    if ((long long)k <= n && n - (long long)k <= 21) {
        TRY(put_digits(p, d, a, a + k));
        return put_zeros(p, (size_t)(n - (long long)k));
    }
    if (n > 0 && n < (long long)k) {
        TRY(put_digits(p, d, a, a + (size_t)n));
        TRY(put1(p, '.'));
        return put_digits(p, d, a + (size_t)n, a + k);
    }
    if (n > -6 && n <= 0) {
        TRY(put(p, "0.", 2));
        TRY(put_zeros(p, (size_t)-n));
        return put_digits(p, d, a, a + k);
    }
    TRY(put_digits(p, d, a, a + 1));
    if (k > 1) {
        TRY(put1(p, '.'));
        TRY(put_digits(p, d, a + 1, a + k));
    }
    e = n - 1;
    TRY(put(p, e < 0 ? "e-" : "e+", 2));
    return put(p, eb, mc_u64_digits((uint64_t)(e < 0 ? -e : e), eb));
}

static int number(struct jp *p)
{
    size_t start = p->i, nd, a, b;
    struct digits d = {0};
    long long ex = 0;
    int neg = 0;

    if (p->s[p->i] == '-') {
        neg = 1;
        p->i++;
    }
    if (!is_digit(p, p->i))
        return fail(p, p->i, "invalid number");
    d.ip = p->s + p->i;
    if (p->s[p->i] == '0') {
        p->i++;
        if (is_digit(p, p->i)) /* RFC 8259 §6: no leading zeros */
            return fail(p, p->i, "invalid number");
    } else {
        while (is_digit(p, p->i))
            p->i++;
    }
    d.il = (size_t)(p->s + p->i - d.ip);
    if (p->i < p->len && p->s[p->i] == '.') {
        d.fp = p->s + ++p->i;
        while (is_digit(p, p->i))
            p->i++;
        d.fl = (size_t)(p->s + p->i - d.fp);
        if (d.fl == 0)
            return fail(p, p->i, "invalid number");
    }
    if (p->i < p->len && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        int eneg = 0;
        size_t ed, sig = 0;

        p->i++;
        if (p->i < p->len && (p->s[p->i] == '+' || p->s[p->i] == '-'))
            eneg = p->s[p->i++] == '-';
        ed = p->i;
        while (is_digit(p, p->i)) {
            if (sig > 0 || p->s[p->i] != '0') {
                if (++sig > JSON_MAX_EXP_DIGITS)
                    return fail(p, start, "number out of range");
                ex = ex * 10 + (p->s[p->i] - '0');
            }
            p->i++;
        }
        if (p->i == ed)
            return fail(p, p->i, "invalid number");
        if (eneg)
            ex = -ex;
    }

    nd = d.il + d.fl;
    for (a = 0; a < nd && digit_at(&d, a) == '0'; a++)
        ;
    if (a == nd) /* every zero, -0 included, is "0" */
        return put1(p, '0');
    for (b = nd; digit_at(&d, b - 1) == '0'; b--)
        ;
    return put_number(p, neg, &d, a, b - a, ex + (long long)d.il - (long long)a);
}

static int literal(struct jp *p, const char *lit, size_t n)
{
    size_t k;

    for (k = 0; k < n; k++) {
        if (p->i + k >= p->len)
            return fail(p, p->len, "unexpected end of input");
        if (p->s[p->i + k] != lit[k])
            return fail(p, p->i + k, "unexpected character");
    }
    p->i += n;
    return put(p, lit, n);
}

/* The next byte of a name in canonical form (the only escapes are those of put_cp). */
static unsigned char name_byte(const char *k, size_t *i)
{
    unsigned char c = (unsigned char)k[(*i)++];

    if (c != '\\')
        return c;
    c = (unsigned char)k[(*i)++];
    switch (c) {
    case 'b': return '\b';
    case 'f': return '\f';
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case 'u':
        *i += 4;
        return (unsigned char)(mc_hexval((unsigned char)k[*i - 2]) << 4 |
                               mc_hexval((unsigned char)k[*i - 1]));
    default: return c; /* '"' and '\\' */
    }
}

static int name_cmp(const struct member *x, const struct member *y)
{
    size_t i = 0, j = 0;

    while (i < x->klen && j < y->klen) {
        unsigned char a = name_byte(x->k, &i), b = name_byte(y->k, &j);

        if (a != b)
            return a < b ? -1 : 1;
    }
    return (i < x->klen) - (j < y->klen);
}

static int member_cmp(const void *a, const void *b)
{
    const struct member *x = a, *y = b;
    int c = name_cmp(x, y);

    /* Equal names stay in input order, so the second one is the duplicate reported. */
    if (c != 0)
        return c;
    return x->pos < y->pos ? -1 : (x->pos > y->pos ? 1 : 0);
}

/* Sorts the members [base, nm) of the object whose text starts at out[start]. */
static int sort_members(struct jp *p, size_t base, size_t start)
{
    struct member *m = p->m + base;
    size_t n = p->nm - base, size, i, o = 0, dup = SIZE_MAX;
    int moved = 0;

    TRY(flush(p));
    size = p->out->len - start;

    for (i = 0; i < n; i++)
        m[i].k = p->out->data + m[i].off + 1;
    qsort(m, n, sizeof(*m), member_cmp);
    for (i = 1; i < n; i++) {
        if (name_cmp(&m[i - 1], &m[i]) == 0 && m[i].pos < dup)
            dup = m[i].pos;
        moved |= m[i].off < m[i - 1].off;
    }
    if (dup != SIZE_MAX)
        return fail(p, dup, "duplicate key");
    if (!moved)
        return 0;
    if (p->atmp < size) {
        p->atmp = MC_MAX(size, 2 * p->atmp);
        p->tmp = mc_xrealloc(p->tmp, p->atmp);
    }
    for (i = 0; i < n; i++) {
        if (i > 0)
            p->tmp[o++] = ',';
        memcpy(p->tmp + o, p->out->data + m[i].off, m[i].len);
        o += m[i].len;
    }
    MC_ASSERT(o == size);
    memcpy(p->out->data + start, p->tmp, size);
    return 0;
}

static int value(struct jp *p, unsigned depth);

static int object(struct jp *p, unsigned depth)
{
    size_t base = p->nm, start;
    char c;

    if (depth > JSON_MAX_DEPTH)
        return fail(p, p->i, "nesting too deep");
    p->i++;
    TRY(put1(p, '{'));
    start = opos(p);
    skip_ws(p);
    if (p->i < p->len && p->s[p->i] == '}') {
        p->i++;
        return put1(p, '}');
    }
    for (;;) {
        size_t idx = p->nm;

        skip_ws(p);
        if (p->i >= p->len)
            return fail(p, p->len, "unexpected end of input");
        if (p->s[p->i] != '"')
            return fail(p, p->i, "unexpected character");
        if (p->nm == p->am) {
            p->am = p->am ? 2 * p->am : 16;
            p->m = mc_xrealloc(p->m, p->am * sizeof(*p->m));
        }
        p->nm++;
        p->m[idx].off = opos(p);
        p->m[idx].pos = p->i;
        TRY(string(p));
        p->m[idx].klen = opos(p) - p->m[idx].off - 2;
        skip_ws(p);
        if (p->i >= p->len)
            return fail(p, p->len, "unexpected end of input");
        if (p->s[p->i] != ':')
            return fail(p, p->i, "unexpected character");
        p->i++;
        TRY(put1(p, ':'));
        TRY(value(p, depth));
        /* p->m may have moved while the value's own objects grew it. */
        p->m[idx].len = opos(p) - p->m[idx].off;
        skip_ws(p);
        if (p->i >= p->len)
            return fail(p, p->len, "unexpected end of input");
        c = p->s[p->i++];
        if (c == '}')
            break;
        if (c != ',')
            return fail(p, p->i - 1, "unexpected character");
        TRY(put1(p, ','));
    }
    TRY(sort_members(p, base, start));
    p->nm = base;
    return put1(p, '}');
}

static int array(struct jp *p, unsigned depth)
{
    char c;

    if (depth > JSON_MAX_DEPTH)
        return fail(p, p->i, "nesting too deep");
    p->i++;
    TRY(put1(p, '['));
    skip_ws(p);
    if (p->i < p->len && p->s[p->i] == ']') {
        p->i++;
        return put1(p, ']');
    }
    for (;;) {
        TRY(value(p, depth));
        skip_ws(p);
        if (p->i >= p->len)
            return fail(p, p->len, "unexpected end of input");
        c = p->s[p->i++];
        if (c == ']')
            return put1(p, ']');
        if (c != ',')
            return fail(p, p->i - 1, "unexpected character");
        TRY(put1(p, ','));
    }
}

static int value(struct jp *p, unsigned depth)
{
    char c;

    skip_ws(p);
    if (p->i >= p->len)
        return fail(p, p->len, "unexpected end of input");
    c = p->s[p->i];
    switch (c) {
    case '{': return object(p, depth + 1);
    case '[': return array(p, depth + 1);
    case '"': return string(p);
    case 't': return literal(p, "true", 4);
    case 'f': return literal(p, "false", 5);
    case 'n': return literal(p, "null", 4);
    default:
        if (c == '-' || (c >= '0' && c <= '9'))
            return number(p);
        return fail(p, p->i, "unexpected character");
    }
}

int cache_key_json_canon(const char *body, size_t len, struct buf *out, size_t *err_pos,
                         const char **err_msg)
{
    struct jp p = {.s = body, .len = len, .out = out};
    size_t saved = out->len;
    int err;

    err = value(&p, 0);
    if (err == 0) {
        skip_ws(&p);
        if (p.i < len)
            err = fail(&p, p.i, "trailing data");
    }
    if (err == 0)
        err = flush(&p);
    free(p.m);
    free(p.tmp);
    if (err != 0) {
        out->len = saved;
        if (out->data != NULL)
            out->data[saved] = '\0';
        if (err_pos != NULL)
            *err_pos = p.err_pos;
        if (err_msg != NULL)
            *err_msg = p.err_msg;
    }
    return err;
}
