// Writes a one-node Identity model (x float32 [batch, 8] -> y), used to measure each engine's
// fixed cost per call. Protobuf bytes are written by hand: python3-onnx is not installed.
// Usage: node gen_identity.mjs OUT_DIR
import fs from 'node:fs';
import path from 'node:path';

const varint = (v) => { const b = []; v = BigInt(v); do { let x = Number(v & 0x7fn); v >>= 7n; if (v) x |= 0x80; b.push(x); } while (v); return b; };
const key = (f, wt) => varint((f << 3) | wt);
const vint = (f, v) => [...key(f, 0), ...varint(v)];
const bytes = (f, b) => [...key(f, 2), ...varint(b.length), ...b];
const str = (f, s) => bytes(f, [...Buffer.from(s)]);

const dim = (d) => (typeof d === 'string' ? str(2, d) : vint(1, d));
const valueInfo = (name, dims) => [
  ...str(1, name),
  ...bytes(2, bytes(1, [...vint(1, 1), ...bytes(2, dims.flatMap((d) => bytes(1, dim(d))))])),
];
const node = [...str(1, 'x'), ...str(2, 'y'), ...str(3, 'id'), ...str(4, 'Identity')];
const graph = [...bytes(1, node), ...str(2, 'identity'), ...bytes(11, valueInfo('x', ['batch', 8])),
  ...bytes(12, valueInfo('y', ['batch', 8]))];
const model = [...vint(1, 8), ...str(2, 'mlcdn-bench'), ...bytes(7, graph), ...bytes(8, [...str(1, ''), ...vint(2, 13)])];

const out = process.argv[2];
fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(path.join(out, 'model.onnx'), Buffer.from(model));
