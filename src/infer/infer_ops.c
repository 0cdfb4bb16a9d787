/* src/infer/infer_ops.c: operator lookup over the registry in infer_ops_tbl.h. */
#include <string.h>

#include "infer/infer_int.h"

#define INFER_OP(sym, dom, name) extern const struct infer_op infer__op_##sym;
#include "infer/infer_ops_tbl.h"
#undef INFER_OP

static const struct infer_op *const ops[] = {
#define INFER_OP(sym, dom, name) &infer__op_##sym,
#include "infer/infer_ops_tbl.h"
#undef INFER_OP
};

const struct infer_op *infer__op_find(const char *domain, const char *name)
{
    for (size_t i = 0; i < MC_ARRAY_SIZE(ops); i++)
        if (!strcmp(ops[i]->name, name) && !strcmp(ops[i]->domain, domain))
            return ops[i];
    return NULL;
}
