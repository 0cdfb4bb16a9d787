#!/usr/bin/env bash
# bench/infer/run.sh: mlcdn's inference engine against ONNX Runtime (onnxruntime-node 1.30,
# CPU, one thread each) on every reference model at batch 1, 16 and 256, plus a one-node
# Identity model that measures each side's fixed cost per call. Both engines run in the
# same invocation, interleaved (mlcdn, ORT, mlcdn, ORT, ...), pinned to one core; the table
# reports the median over ROUNDS of each side's median and p99 latency. The ORT side also
# times one Identity call after each model call (FLOOR_MODEL), so the batch-1 target
# compares against ORT's latency minus the floor measured at the same moment.
# Usage: bench/infer/run.sh [path/to/mlcdn]    env: ROUNDS (3), SECONDS_PER (1), CPU (1)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
mlcdn=${1:-$root/build/mlcdn}
rounds=${ROUNDS:-3}
secs=${SECONDS_PER:-1}
cpu=${CPU:-1}
models_dir=${MLCDN_SHARED:-$root/../shared}/models
if [ ! -f "$models_dir/tools/npy.mjs" ]; then
  echo "bench/infer: skipped: needs the reference models with their ONNX Runtime tools" \
       "(benchmark data set), $models_dir/tools/npy.mjs, which is not there; set MLCDN_SHARED" >&2
  exit 77
fi
cache=$root/bench/.cache
ort_dir=$cache/ort
out=${OUT:-$cache/infer-results.jsonl}

[ -x "$mlcdn" ] || { echo "bench/infer: $mlcdn not built (make build)" >&2; exit 1; }
if [ ! -d "$ort_dir/node_modules/onnxruntime-node" ]; then
  # --ignore-scripts: the package's install script would download GPU libraries; the CPU
  # library ships inside the package.
  npm install --ignore-scripts --no-audit --no-fund --prefix "$ort_dir" onnxruntime-node@1.30 >&2
fi
node "$root/bench/infer/gen_identity.mjs" "$cache/identity"

pin=()
command -v taskset >/dev/null && pin=(taskset -c "$cpu")
export ORT_DIR=$ort_dir NPY_MJS=$models_dir/tools/npy.mjs OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
export FLOOR_MODEL=$cache/identity/model.onnx
: > "$out"
for model in identity logreg mlp two_tower gbdt softmax_clf; do
  dir=$models_dir/$model
  [ "$model" = identity ] && dir=$cache/identity
  for batch in 1 16 256; do
    for r in $(seq "$rounds"); do
      m=$("${pin[@]}" "$mlcdn" infer "$dir/model.onnx" --bench --batch "$batch" --seconds "$secs" --json)
      o=$("${pin[@]}" node "$root/bench/infer/ort_bench.mjs" "$dir" "$batch" "$secs")
      echo "{\"model\":\"$model\",\"batch\":$batch,\"round\":$r,\"mlcdn\":$m,\"ort\":$o}" >> "$out"
      echo "bench/infer: $model batch $batch round $r done" >&2
    done
  done
done
/usr/bin/python3 "$root/bench/infer/table.py" "$out"
