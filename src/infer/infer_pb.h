/* src/infer/infer_pb.h: the protobuf side of the loader (internal).
 *
 * protobuf-c parses nested messages recursively with no depth limit, and onnx.proto has
 * cycles (a graph inside an attribute inside a node inside a graph, a type inside a
 * sequence type). infer__pb_check() walks the wire format first, iteratively bounded,
 * and rejects malformed framing and nesting deeper than INFER_PB_MAX_DEPTH, so a few
 * kilobytes of crafted bytes cannot exhaust the stack. */
#ifndef MLCDN_INFER_PB_H
#define MLCDN_INFER_PB_H

#include "infer/infer_int.h"
#include "onnx/onnx.pb-c.h"

#define INFER_PB_MAX_DEPTH 48

enum infer_pb_kind {
    INFER_PB_LEAF = 0,
    INFER_PB_MODEL,
    INFER_PB_GRAPH,
    INFER_PB_NODE,
    INFER_PB_ATTR,
    INFER_PB_VALUEINFO,
    INFER_PB_TYPE,
    INFER_PB_TYPE_WRAP1, /* Sequence / Optional: field 1 is a TypeProto */
    INFER_PB_TYPE_MAP,   /* field 2 is a TypeProto */
    INFER_PB_FUNCTION,
    INFER_PB_TRAINING,
    INFER_PB_TENSOR,
    INFER_PB_SPARSE,
};

/* infer_pb.c: 0, or -EBADMSG (or -EINVAL for a NULL buffer) with a message. */
int infer__pb_check(const void *buf, size_t len, enum infer_pb_kind kind, struct infer_err *e);

/* infer_tensor.c: decodes `tp` into a new tensor the caller owns; external data is read
 * from ext_dir and counted against *budget. */
int infer__tensor_from_proto(const Onnx__TensorProto *tp, const char *ext_dir, uint64_t *budget,
                             struct infer_tensor *out, struct infer_err *e);
/* Bytes the tensor's dims and dtype call for (before any data is looked at), or -EINVAL
 * where they are unusable (infer__tensor_from_proto says why). */
int infer__tensor_proto_bytes(const Onnx__TensorProto *tp, size_t *out);

#endif
