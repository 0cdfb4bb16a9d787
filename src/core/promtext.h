/* src/core/promtext.h: a reader of the Prometheus text exposition format (0.0.4), for the
 * clients that read our daemons' /metrics back (`mlcdn ctl stats`, the router's dashboard).
 *
 * The parse is strict: a line that is not a comment, a HELP/TYPE line or a well-formed
 * sample is an error naming its line, never skipped, so a client never shows numbers read
 * from something that was not metrics. A parsed struct promtext owns every string in it;
 * promtext_free() gives it all back. */
#ifndef MLCDN_CORE_PROMTEXT_H
#define MLCDN_CORE_PROMTEXT_H

#include <stddef.h>

struct promtext_label {
    char *name, *value; /* value unescaped */
};

struct promtext_sample {
    char *name; /* with its _bucket/_sum/_count suffix as written */
    struct promtext_label *labels;
    size_t nlabels;
    double value;
};

struct promtext {
    struct promtext_sample *s;
    size_t n;
};

/* Parses text[0..len). Returns 0 and a new struct in *out (the caller frees it with
 * promtext_free), or -EINVAL with err naming the line and the problem. Caps: 64 labels per
 * sample, names and values of at most 4096 bytes. */
int promtext_parse(const char *text, size_t len, struct promtext **out, char *err, size_t errlen);
void promtext_free(struct promtext **p);

/* The value of label `name` of sample s, or NULL. */
const char *promtext_label(const struct promtext_sample *s, const char *name);

#endif
