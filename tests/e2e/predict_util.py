"""tests/e2e/predict_util.py: helpers for the prediction tests.

- read_npy(path): a NumPy 1.0 .npy file (little-endian f4/i8, C order) -> (shape, flat list),
  without numpy.
- write_slow_model(path, n, k): an ONNX model `x float[batch,64] -> y float[batch,1]` that
  spends its time on k chained MatMuls of an n x n matrix built from the input (so the
  engine cannot fold it at load time). y = x @ 0.01 + 0 * (W^k)[0,0]. Written with a tiny
  hand-rolled protobuf encoder (no onnx package needed).
"""
import ast
import struct


def read_npy(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:6] == b"\x93NUMPY", path
    hlen = struct.unpack("<H", data[8:10])[0]
    hdr = ast.literal_eval(data[10:10 + hlen].decode("latin1"))
    body = data[10 + hlen:]
    code = {"<f4": "f", "<i8": "q"}[hdr["descr"]]
    n = 1
    for d in hdr["shape"]:
        n *= d
    return list(hdr["shape"]), list(struct.unpack("<%d%s" % (n, code), body[:n * struct.calcsize(code)]))


def _varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(num, wt):
    return _varint((num << 3) | wt)


def _ld(num, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return _key(num, 2) + _varint(len(payload)) + payload


def _vi(num, v):
    return _key(num, 0) + _varint(v)


FLOAT, INT64 = 1, 7


def _tensor(name, dtype, dims, vals):
    t = b"".join(_vi(1, d) for d in dims) + _vi(2, dtype)
    if dtype == FLOAT:
        t += _ld(4, struct.pack("<%df" % len(vals), *vals))
    else:
        t += _ld(7, b"".join(_varint(v) for v in vals))
    return t + _ld(8, name)


def _node(op, ins, outs, name):
    return b"".join(_ld(1, i) for i in ins) + b"".join(_ld(2, o) for o in outs) + \
        _ld(3, name) + _ld(4, op)


def _value_info(name, dtype, dims):
    shape = b""
    for d in dims:
        shape += _ld(1, _ld(2, d) if isinstance(d, str) else _vi(1, d))
    tt = _vi(1, dtype) + _ld(2, shape)
    return _ld(1, name) + _ld(2, _ld(1, tt))


def write_slow_model(path, n=1024, k=16):
    inits = [
        _tensor("starts", INT64, [2], [0, 0]),
        _tensor("ends", INT64, [2], [1, 1]),
        _tensor("zero", FLOAT, [1], [0.0]),
        _tensor("c", FLOAT, [1], [1.0 / n]),
        _tensor("shape", INT64, [2], [n, n]),
        _tensor("wcol", FLOAT, [64, 1], [0.01] * 64),
    ]
    nodes = [
        _node("Slice", ["x", "starts", "ends"], ["s"], "s"),
        _node("Mul", ["s", "zero"], ["z"], "z"),
        _node("Add", ["z", "c"], ["w0"], "w0"),
        _node("Expand", ["w0", "shape"], ["m0"], "W"),
    ]
    prev = "m0"
    for i in range(k):
        nodes.append(_node("MatMul", [prev, "m0"], ["m%d" % (i + 1)], "mm%d" % i))
        prev = "m%d" % (i + 1)
    nodes += [
        _node("Slice", [prev, "starts", "ends"], ["corner"], "corner"),
        _node("Mul", ["corner", "zero"], ["nothing"], "nothing"),
        _node("MatMul", ["x", "wcol"], ["base"], "base"),
        _node("Add", ["base", "nothing"], ["y"], "y"),
    ]
    graph = b"".join(_ld(1, nd) for nd in nodes) + _ld(2, "slow") + \
        b"".join(_ld(5, t) for t in inits) + \
        _ld(11, _value_info("x", FLOAT, ["batch", 64])) + \
        _ld(12, _value_info("y", FLOAT, ["batch", 1]))
    model = _vi(1, 8) + _ld(2, "mlcdn-tests") + _ld(7, graph) + _ld(8, _ld(1, "") + _vi(2, 13))
    with open(path, "wb") as f:
        f.write(model)


def write_expand_bomb(path, rows=1 << 28, cols=4):
    """A ~200-byte model `x float[batch,4] -> y float[batch,4]` whose graph expands a
    constant to [rows, cols] (4 GiB of float32 at the default size) and sums it away:
    y = x + ReduceSum(Expand(c, [rows, cols]), axis 0). Every input of the Expand is a
    constant, so an engine that folds constants at load would build the whole tensor."""
    inits = [
        _tensor("c", FLOAT, [1, 1], [0.0]),
        _tensor("shape", INT64, [2], [rows, cols]),
    ]
    axes = _ld(1, "axes") + _vi(20, 7) + _vi(8, 0)
    keep = _ld(1, "keepdims") + _vi(20, 2) + _vi(3, 1)
    nodes = [
        _node("Expand", ["c", "shape"], ["big"], "bomb"),
        _node("ReduceSum", ["big"], ["s"], "sum") + _ld(5, axes) + _ld(5, keep),
        _node("Add", ["x", "s"], ["y"], "y"),
    ]
    graph = b"".join(_ld(1, nd) for nd in nodes) + _ld(2, "bomb") + \
        b"".join(_ld(5, t) for t in inits) + \
        _ld(11, _value_info("x", FLOAT, ["batch", cols])) + \
        _ld(12, _value_info("y", FLOAT, ["batch", cols]))
    model = _vi(1, 8) + _ld(2, "mlcdn-tests") + _ld(7, graph) + _ld(8, _ld(1, "") + _vi(2, 11))
    with open(path, "wb") as f:
        f.write(model)


def write_value_shaped(path):
    """`x float[batch,1], n int64[batch] -> y float[batch,k]`: y = Expand(x, [1, n[0]]), so
    the request's value of n decides the output's size (an engine plans it per value)."""
    inits = [_tensor("one", INT64, [1], [1])]
    axis = _ld(1, "axis") + _vi(20, 2) + _vi(3, 0)
    nodes = [
        _node("Concat", ["one", "n"], ["shape"], "shape") + _ld(5, axis),
        _node("Expand", ["x", "shape"], ["y"], "grow"),
    ]
    graph = b"".join(_ld(1, nd) for nd in nodes) + _ld(2, "grow") + \
        b"".join(_ld(5, t) for t in inits) + \
        _ld(11, _value_info("x", FLOAT, ["batch", 1])) + \
        _ld(11, _value_info("n", INT64, ["batch"])) + \
        _ld(12, _value_info("y", FLOAT, ["batch", "k"]))
    model = _vi(1, 8) + _ld(2, "mlcdn-tests") + _ld(7, graph) + _ld(8, _ld(1, "") + _vi(2, 13))
    with open(path, "wb") as f:
        f.write(model)


def write_big_model(path, tensors=100, rows=131072):
    """`id int64[batch] -> y float[batch,4]`, y = sum of Gather(W_i, id) over `tensors`
    float32 tables of [rows, 4] (2 MiB each at the default size: 200 MiB of weights in
    mid-sized pieces, the sizes an allocator keeps in its heap rather than mapping)."""
    f = open(path, "wb")
    try:
        nodes = []
        for i in range(tensors):
            nodes.append(_node("Gather", ["W%d" % i, "id"], ["g%d" % i], "g%d" % i))
        prev = "g0"
        for i in range(1, tensors):
            out = "y" if i == tensors - 1 else "s%d" % i
            nodes.append(_node("Add", [prev, "g%d" % i], [out], "a%d" % i))
            prev = out
        row = struct.pack("<4f", 0.25, 0.5, 0.75, 1.0)
        raw = row * rows
        inits = []
        for i in range(tensors):
            t = _vi(1, rows) + _vi(1, 4) + _vi(2, FLOAT) + _ld(8, "W%d" % i) + _ld(9, raw)
            inits.append(_ld(5, t))
        graph = b"".join(_ld(1, nd) for nd in nodes) + _ld(2, "big") + b"".join(inits) + \
            _ld(11, _value_info("id", INT64, ["batch"])) + \
            _ld(12, _value_info("y", FLOAT, ["batch", 4]))
        model = _vi(1, 8) + _ld(2, "mlcdn-tests") + _ld(7, graph) + \
            _ld(8, _ld(1, "") + _vi(2, 13))
        f.write(model)
    finally:
        f.close()


def write_linear_model(path, k, n=4):
    """`x float[batch,n] -> y float[batch,1]`, y = MatMul(x, W) with every weight k: a model
    whose versions differ only in their answer (k times the sum of the features)."""
    inits = [_tensor("W", FLOAT, [n, 1], [float(k)] * n)]
    nodes = [_node("MatMul", ["x", "W"], ["y"], "mm")]
    graph = b"".join(_ld(1, nd) for nd in nodes) + _ld(2, "linear") + \
        b"".join(_ld(5, t) for t in inits) + \
        _ld(11, _value_info("x", FLOAT, ["batch", n])) + \
        _ld(12, _value_info("y", FLOAT, ["batch", 1]))
    model = _vi(1, 8) + _ld(2, "mlcdn-tests") + _ld(7, graph) + _ld(8, _ld(1, "") + _vi(2, 13))
    with open(path, "wb") as f:
        f.write(model)
