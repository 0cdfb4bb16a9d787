/* src/infer/infer_err.c: the error sink every file of src/infer writes its messages to.
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
