/* src/infer/infer_pb.c: strict pre-scan of ONNX protobuf bytes before protobuf-c parses
 * them (see infer_pb.h for why). The walk only follows fields that can lead back into a
 * recursive message; every other length-delimited field is skipped after its length is
 * checked against the enclosing message. */
#include <errno.h>

#include "infer/infer_pb.h"

static enum infer_pb_kind child_kind(enum infer_pb_kind k, uint32_t field)
{
    switch (k) {
    case INFER_PB_MODEL:
        return field == 7  ? INFER_PB_GRAPH
             : field == 25 ? INFER_PB_FUNCTION
             : field == 20 ? INFER_PB_TRAINING
                           : INFER_PB_LEAF;
    case INFER_PB_GRAPH:
        return field == 1                                  ? INFER_PB_NODE
             : field == 5                                  ? INFER_PB_TENSOR
             : field == 15                                 ? INFER_PB_SPARSE
             : (field == 11 || field == 12 || field == 13) ? INFER_PB_VALUEINFO
                                                           : INFER_PB_LEAF;
    case INFER_PB_NODE: return field == 5 ? INFER_PB_ATTR : INFER_PB_LEAF;
    case INFER_PB_ATTR:
        return (field == 5 || field == 10)  ? INFER_PB_TENSOR
             : (field == 6 || field == 11)  ? INFER_PB_GRAPH
             : (field == 14 || field == 15) ? INFER_PB_TYPE
             : (field == 22 || field == 23) ? INFER_PB_SPARSE
                                            : INFER_PB_LEAF;
    case INFER_PB_VALUEINFO: return field == 2 ? INFER_PB_TYPE : INFER_PB_LEAF;
    case INFER_PB_TYPE:
        return (field == 4 || field == 9) ? INFER_PB_TYPE_WRAP1
             : field == 5                 ? INFER_PB_TYPE_MAP
                                          : INFER_PB_LEAF;
    case INFER_PB_TYPE_WRAP1: return field == 1 ? INFER_PB_TYPE : INFER_PB_LEAF;
    case INFER_PB_TYPE_MAP: return field == 2 ? INFER_PB_TYPE : INFER_PB_LEAF;
    case INFER_PB_FUNCTION: return field == 7 ? INFER_PB_NODE : INFER_PB_LEAF;
    case INFER_PB_TRAINING: return (field == 1 || field == 2) ? INFER_PB_GRAPH : INFER_PB_LEAF;
    case INFER_PB_SPARSE: return (field == 1 || field == 2) ? INFER_PB_TENSOR : INFER_PB_LEAF;
    default: return INFER_PB_LEAF;
    }
}

static int varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;

    for (int shift = 0; shift < 64; shift += 7) {
        if (*p >= end)
            return -1;
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

int infer__pb_check(const void *buf, size_t len, enum infer_pb_kind kind, struct infer_err *e)
{
    struct frame {
        const uint8_t *end;
        enum infer_pb_kind kind;
    } stack[INFER_PB_MAX_DEPTH];
    const uint8_t *p = buf;
    int depth = 0;

    if (buf == NULL && len > 0)
        return -EINVAL;
    stack[0].end = p + len;
    stack[0].kind = kind;
    for (;;) {
        struct frame *f = &stack[depth];
        uint64_t key, v;

        if (p == f->end) {
            if (depth == 0)
                return 0;
            depth--;
            continue;
        }
        if (varint(&p, f->end, &key) != 0)
            return infer__errf(e, -EBADMSG, "corrupt protobuf: truncated field key at byte %zu",
                               (size_t)(p - (const uint8_t *)buf));
        uint32_t field = (uint32_t)(key >> 3);
        if (field == 0 || key >> 32)
            return infer__errf(e, -EBADMSG, "corrupt protobuf: bad field number at byte %zu",
                               (size_t)(p - (const uint8_t *)buf));
        switch (key & 7) {
        case 0:
            if (varint(&p, f->end, &v) != 0)
                return infer__errf(e, -EBADMSG, "corrupt protobuf: truncated varint");
            break;
        case 1:
            if (f->end - p < 8)
                return infer__errf(e, -EBADMSG, "corrupt protobuf: truncated fixed64");
            p += 8;
            break;
        case 5:
            if (f->end - p < 4)
                return infer__errf(e, -EBADMSG, "corrupt protobuf: truncated fixed32");
            p += 4;
            break;
        case 2: {
            if (varint(&p, f->end, &v) != 0 || v > (uint64_t)(f->end - p))
                return infer__errf(e, -EBADMSG,
                                   "corrupt protobuf: length-delimited field %u "
                                   "runs past its message (truncated file?)",
                                   field);
            enum infer_pb_kind ck = child_kind(f->kind, field);
            if (ck == INFER_PB_LEAF) {
                p += v;
                break;
            }
            if (depth + 1 >= INFER_PB_MAX_DEPTH)
                return infer__errf(e, -EBADMSG, "protobuf nesting deeper than %d",
                                   INFER_PB_MAX_DEPTH);
            depth++;
            stack[depth].end = p + v;
            stack[depth].kind = ck;
            break;
        }
        default:
            return infer__errf(e, -EBADMSG, "corrupt protobuf: wire type %u (field %u)",
                               (unsigned)(key & 7), field);
        }
    }
}
