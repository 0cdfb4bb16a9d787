// ONNX Runtime side of bench/infer: times InferenceSession.run on one model at one batch
// size, one thread, and prints one JSON line like `mlcdn infer --bench --json`.
// Inputs: rows of MODEL_DIR/data/b64/input_<name>.npy repeated to the batch (the same rows
// mlcdn reads from test_data_set_1), or deterministic values in [0, 1) when absent.
// Usage: ORT_DIR=... node ort_bench.mjs MODEL_DIR BATCH SECONDS
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const [dir, batchS, secS] = process.argv.slice(2);
const batch = Number(batchS), seconds = Number(secS || 1);
const require = createRequire(path.join(path.resolve(process.env.ORT_DIR), 'node_modules', '_'));
const ort = require('onnxruntime-node');
const { readNpy } = await import(path.resolve(process.env.NPY_MJS));

const session = await ort.InferenceSession.create(path.join(dir, 'model.onnx'), {
  intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all',
});
const feeds = {};
for (const name of session.inputNames) {
  const f = path.join(dir, 'data', 'b64', `input_${name}.npy`);
  let type = 'float32', data, shape;
  if (fs.existsSync(f)) {
    const a = readNpy(f);
    type = a.type;
    const row = a.data.length / a.shape[0];
    const Ctor = a.data.constructor;
    data = new Ctor(row * batch);
    for (let r = 0; r < batch; r++) data.set(a.data.subarray((r % a.shape[0]) * row, (r % a.shape[0] + 1) * row), r * row);
    shape = [batch, ...a.shape.slice(1)];
  } else {
    shape = [batch, 8];
    data = new Float32Array(batch * 8);
    let x = 12345;
    for (let i = 0; i < data.length; i++) { x = (Math.imul(x, 1103515245) + 12345) >>> 0; data[i] = (x >>> 8) / 16777216; }
  }
  feeds[name] = new ort.Tensor(type, data, shape);
}
for (let i = 0; i < 20; i++) await session.run(feeds);
const lat = [];
const end = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
for (;;) {
  const t0 = process.hrtime.bigint();
  await session.run(feeds);
  const t1 = process.hrtime.bigint();
  lat.push(Number(t1 - t0));
  if (t1 >= end && lat.length >= 50) break;
}
lat.sort((a, b) => a - b);
const q = (p) => lat[Math.floor(lat.length * p)] / 1e3;
console.log(JSON.stringify({ batch, iters: lat.length, p50_us: q(0.5), p99_us: q(0.99), rows_per_s: batch * 1e6 / q(0.5),
  ort: ort.env.versions?.common ?? '1.30' }));
await session.release();
