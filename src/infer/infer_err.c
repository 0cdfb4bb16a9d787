/* src/infer/infer_err.c: the error sink every file of src/infer writes its messages to,
 * the prefix that names the node a planned or running kernel failed in, and the charge of
 * a model's constants against its memory budget (mostly the -E2BIG message).
 *
 * It calls nothing else in src/infer, so the loader, the protobuf pre-scan, the tensor
 * decoder, the planner and the kernels (a packed weight copy is charged from prepare())
 * can all use it without depending on one another. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "infer/infer_int.h"

int infer__errf(struct infer_err *e, int code, const char *fmt, ...)
{
    if (e != NULL && e->buf != NULL && e->len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->buf, e->len, fmt, ap);
        va_end(ap);
    }
    return code;
}

int infer__node_err(const struct infer_node *n, int err, struct infer_err *e)
{
    char msg[384];

    snprintf(msg, sizeof(msg), "%s", e != NULL && e->buf != NULL ? e->buf : "");
    return infer__errf(e, err, "node '%s' (%s, opset %d): %s", n->name, n->op_type, n->opset, msg);
}

int infer__charge(struct infer_model *m, size_t bytes, struct infer_err *e, const char *fmt, ...)
{
    char what[256];
    va_list ap;

    if (bytes <= m->budget && m->const_bytes <= m->budget - bytes) {
        m->const_bytes += bytes;
        return 0;
    }
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return infer__errf(e, -E2BIG,
                       "%s needs %zu bytes, over the memory budget of %zu bytes "
                       "(%zu already held by the model's constants)",
                       what, bytes, m->budget, m->const_bytes);
}
