// ONNX Runtime side of bench/infer: times InferenceSession.run on one model at one batch
// size, one thread, and prints one JSON line like `mlcdn infer --bench --json`.
// Inputs: rows of MODEL_DIR/data/b64/input_<name>.npy repeated to the batch (the same rows
// mlcdn reads from test_data_set_1), or deterministic values in [0, 1) when absent.
// With FLOOR_MODEL (the Identity model), each timed call is followed by one timed call of
// that model at batch 1 in the same process, and floor_p50_us reports its median: the call
// floor measured at the same moment as the model, so "ORT − floor" is not skewed by load
// that changes between separate runs.
// Usage: ORT_DIR=... [FLOOR_MODEL=.../identity/model.onnx] node ort_bench.mjs MODEL_DIR BATCH SECONDS
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
let floor = null, floorFeeds = null;
if (process.env.FLOOR_MODEL) {
  floor = await ort.InferenceSession.create(process.env.FLOOR_MODEL, {
    intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all',
  });
  floorFeeds = { x: new ort.Tensor('float32', new Float32Array(8).fill(0.5), [1, 8]) };
  for (let i = 0; i < 20; i++) await floor.run(floorFeeds);
}
for (let i = 0; i < 20; i++) await session.run(feeds);
const lat = [], flat = [];
const end = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
for (;;) {
  const t0 = process.hrtime.bigint();
  await session.run(feeds);
  const t1 = process.hrtime.bigint();
  lat.push(Number(t1 - t0));
  if (floor) {
    const f0 = process.hrtime.bigint();
    await floor.run(floorFeeds);
    flat.push(Number(process.hrtime.bigint() - f0));
  }
  if (t1 >= end && lat.length >= 50) break;
}
flat.sort((a, b) => a - b);
lat.sort((a, b) => a - b);
const q = (p) => lat[Math.floor(lat.length * p)] / 1e3;
const out = { batch, iters: lat.length, p50_us: q(0.5), p99_us: q(0.99), rows_per_s: batch * 1e6 / q(0.5),
  ort: ort.env.versions?.common ?? '1.30' };
if (floor) out.floor_p50_us = flat[Math.floor(flat.length * 0.5)] / 1e3;
console.log(JSON.stringify(out));
await session.release();
if (floor) await floor.release();
