/* src/infer/infer_err.c: the error sink every file of src/infer writes its messages to,
 * and the prefix that names the node a planned or running kernel failed in.
 *
 * It calls nothing else in src/infer, so the loader, the protobuf pre-scan, the tensor
 * decoder, the planner and the kernels can all report errors without depending on one
 * another. */
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
    return infer__errf(e, err, "node '%s' (%s, opset %d): %s", n->name, n->op_type, n->opset,
                       msg);
}
