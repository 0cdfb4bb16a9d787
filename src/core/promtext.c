/* src/core/promtext.c: see promtext.h.
 *
 * One pass over the lines; each sample line is read with a cursor (struct cur) that only
 * moves forward, so every error can name the line and the byte it stopped at. */
#include "core/promtext.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mc.h"

#define PROMTEXT_MAX_LABELS 64
#define PROMTEXT_MAX_STR 4096

struct cur {
    const char *p, *end;
};

static int is_name_start(char c, int colon)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
}

static int is_name_char(char c, int colon)
{
    return is_name_start(c, colon) || (c >= '0' && c <= '9');
}

/* A metric name (colons allowed) or a label name (no colons). */
static char *read_name(struct cur *c, int colon)
{
    const char *s = c->p;
    if (c->p >= c->end || !is_name_start(*c->p, colon))
        return NULL;
    while (c->p < c->end && is_name_char(*c->p, colon))
        c->p++;
    if (c->p - s > PROMTEXT_MAX_STR)
        return NULL;
    char *out = mc_xmalloc((size_t)(c->p - s) + 1);
    memcpy(out, s, (size_t)(c->p - s));
    out[c->p - s] = 0;
    return out;
}

static void skip_blank(struct cur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
        c->p++;
}

/* A quoted label value with the format's three escapes. */
static char *read_value(struct cur *c, const char **why)
{
    char *out, *o;

    if (c->p >= c->end || *c->p != '"') {
        *why = "label value does not start with '\"'";
        return NULL;
    }
    c->p++;
    out = o = mc_xmalloc(PROMTEXT_MAX_STR + 1);
    while (c->p < c->end && *c->p != '"') {
        char ch = *c->p++;
        if (ch == '\\') {
            if (c->p >= c->end) {
                break;
            }
            ch = *c->p++;
            if (ch == 'n')
                ch = '\n';
            else if (ch != '\\' && ch != '"') {
                *why = "unknown escape in label value (only \\\\, \\\" and \\n)";
                free(out);
                return NULL;
            }
        }
        if (o - out >= PROMTEXT_MAX_STR) {
            *why = "label value longer than 4096 bytes";
            free(out);
            return NULL;
        }
        *o++ = ch;
    }
    if (c->p >= c->end) {
        *why = "label value not closed";
        free(out);
        return NULL;
    }
    c->p++;
    *o = 0;
    return out;
}

static int read_number(struct cur *c, double *v)
{
    char tmp[64];
    const char *s = c->p;
    while (c->p < c->end && *c->p != ' ' && *c->p != '\t')
        c->p++;
    size_t n = (size_t)(c->p - s);
    if (n == 0 || n >= sizeof(tmp))
        return -EINVAL;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    if (!strcmp(tmp, "+Inf") || !strcmp(tmp, "Inf")) {
        *v = INFINITY;
        return 0;
    }
    if (!strcmp(tmp, "-Inf")) {
        *v = -INFINITY;
        return 0;
    }
    if (!strcmp(tmp, "NaN")) {
        *v = NAN;
        return 0;
    }
    /* strtod would also take "inf", "nan" and hex floats, which the format does not. */
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789+-.eE", tmp[i]))
            return -EINVAL;
    char *end;
    *v = strtod(tmp, &end);
    return *end ? -EINVAL : 0;
}

static void sample_fini(struct promtext_sample *s)
{
    free(s->name);
    for (size_t i = 0; i < s->nlabels; i++) {
        free(s->labels[i].name);
        free(s->labels[i].value);
    }
    free(s->labels);
    memset(s, 0, sizeof(*s));
}

static int parse_sample(struct cur *c, struct promtext_sample *s, const char **why)
{
    memset(s, 0, sizeof(*s));
    if (!(s->name = read_name(c, 1))) {
        *why = "expected a metric name";
        return -EINVAL;
    }
    if (c->p < c->end && *c->p == '{') {
        c->p++;
        s->labels = mc_xcalloc(PROMTEXT_MAX_LABELS, sizeof(*s->labels));
        for (;;) {
            skip_blank(c);
            if (c->p < c->end && *c->p == '}') {
                c->p++;
                break;
            }
            if (s->nlabels == PROMTEXT_MAX_LABELS) {
                *why = "more than 64 labels";
                return -EINVAL;
            }
            struct promtext_label *l = &s->labels[s->nlabels];
            if (!(l->name = read_name(c, 0))) {
                *why = "expected a label name";
                return -EINVAL;
            }
            s->nlabels++;
            skip_blank(c);
            if (c->p >= c->end || *c->p != '=') {
                *why = "expected '=' after the label name";
                return -EINVAL;
            }
            c->p++;
            skip_blank(c);
            if (!(l->value = read_value(c, why)))
                return -EINVAL;
            for (size_t i = 0; i + 1 < s->nlabels; i++)
                if (!strcmp(s->labels[i].name, l->name)) {
                    *why = "label repeated";
                    return -EINVAL;
                }
            skip_blank(c);
            if (c->p < c->end && *c->p == ',') {
                c->p++;
                continue;
            }
            if (c->p < c->end && *c->p == '}') {
                c->p++;
                break;
            }
            *why = "expected ',' or '}' after a label";
            return -EINVAL;
        }
    }
    if (c->p >= c->end || (*c->p != ' ' && *c->p != '\t')) {
        *why = "expected a blank before the value";
        return -EINVAL;
    }
    skip_blank(c);
    if (read_number(c, &s->value) < 0) {
        *why = "the value is not a number";
        return -EINVAL;
    }
    skip_blank(c);
    if (c->p < c->end) {
        /* An optional timestamp: milliseconds, an integer. */
        if (*c->p == '-')
            c->p++;
        const char *d = c->p;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
            c->p++;
        skip_blank(c);
        if (c->p == d || c->p < c->end) {
            *why = "unexpected text after the value";
            return -EINVAL;
        }
    }
    return 0;
}

/* "# HELP name text" and "# TYPE name kind" must name a metric; other comments are free. */
static int check_comment(const char *p, const char *end, const char **why)
{
    static const char *const kinds[] = {"counter", "gauge", "histogram", "summary", "untyped"};
    struct cur c = {p + 1, end};
    skip_blank(&c);
    int help = end - c.p >= 4 && !memcmp(c.p, "HELP", 4);
    int type = end - c.p >= 4 && !memcmp(c.p, "TYPE", 4);
    if (!help && !type)
        return 0;
    c.p += 4;
    if (c.p < end && *c.p != ' ' && *c.p != '\t')
        return 0; /* "# HELPER" is a plain comment */
    skip_blank(&c);
    char *name = read_name(&c, 1);
    if (!name) {
        *why = help ? "HELP without a metric name" : "TYPE without a metric name";
        return -EINVAL;
    }
    free(name);
    if (!type)
        return 0;
    skip_blank(&c);
    for (size_t i = 0; i < MC_ARRAY_SIZE(kinds); i++) {
        size_t kl = strlen(kinds[i]);
        if ((size_t)(end - c.p) >= kl && !memcmp(c.p, kinds[i], kl)) {
            struct cur r = {c.p + kl, end};
            skip_blank(&r);
            if (r.p == end)
                return 0;
        }
    }
    *why = "TYPE is not counter, gauge, histogram, summary or untyped";
    return -EINVAL;
}

int promtext_parse(const char *text, size_t len, struct promtext **out, char *err, size_t errlen)
{
    struct promtext *pt = mc_xcalloc(1, sizeof(*pt));
    size_t cap = 0, lineno = 0;
    const char *p = text, *end = text + len;
    const char *why = NULL;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        lineno++;
        struct cur c = {p, le};
        if (le > p && le[-1] == '\r')
            c.end--;
        skip_blank(&c);
        if (c.p == c.end) {
            /* empty line */
        } else if (*c.p == '#') {
            if (check_comment(c.p, c.end, &why) < 0)
                goto bad;
        } else {
            if (pt->n == cap) {
                cap = cap ? cap * 2 : 256;
                pt->s = mc_xrealloc(pt->s, cap * sizeof(*pt->s));
            }
            if (parse_sample(&c, &pt->s[pt->n], &why) < 0) {
                sample_fini(&pt->s[pt->n]);
                goto bad;
            }
            struct promtext_sample *ns = &pt->s[pt->n++];
            if (ns->labels)
                ns->labels = mc_xrealloc(ns->labels,
                                         (ns->nlabels ? ns->nlabels : 1) * sizeof(*ns->labels));
        }
        p = nl ? nl + 1 : end;
    }
    *out = pt;
    return 0;
bad:
    snprintf(err, errlen, "metrics line %zu: %s", lineno, why);
    promtext_free(&pt);
    return -EINVAL;
}

void promtext_free(struct promtext **pp)
{
    struct promtext *p = *pp;
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        sample_fini(&p->s[i]);
    free(p->s);
    free(p);
    *pp = NULL;
}

const char *promtext_label(const struct promtext_sample *s, const char *name)
{
    for (size_t i = 0; i < s->nlabels; i++)
        if (!strcmp(s->labels[i].name, name))
            return s->labels[i].value;
    return NULL;
}
