#!/usr/bin/env bash
# bench/predict/run.sh [MLCDN_BIN] -- predictions at the edge (issue 5), in one run:
#   warm   /predict on mlp, one repeated input: every request a prediction-cache hit
#   static GET of a 1 KiB object from the same edge's L1 (the yardstick for warm hits)
#   cold   /predict on mlp, unique inputs: every request an inference, with dynamic
#          batching (mlp: max_batch 64, max_delay_us from EDGE_MAX_DELAY_US) and without
#          (mlp_nobatch: the same model file, max_batch 1)
# wrk, CONNS connections (64), pinned: the edge on CPU EDGE_CPUS (1 loop + INFER_THREADS
# inference threads), wrk on CPU WRK_CPUS (1 thread). Prints a markdown table (requests/s,
# p50, p99, mean rows per inference run, inference time per row) and writes it to $OUTDIR/predict.md.
#
# Env: DURATION=10s CONNS=64 EDGE_CPUS=0 WRK_CPUS=1 INFER_THREADS=1 EDGE_THREADS=1
#      EDGE_MAX_DELAY_US=200 PORT=27190 OUTDIR=/tmp/mlcdn-predict-bench
# Everything started here is stopped by PID on exit.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN_IN="${1:-$ROOT/build/mlcdn}"
MODELS_SRC="${MODELS_SRC:-$ROOT/tests/fixtures/models}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-64}"
EDGE_CPUS="${EDGE_CPUS:-0}"
WRK_CPUS="${WRK_CPUS:-1}"
INFER_THREADS="${INFER_THREADS:-1}"
EDGE_THREADS="${EDGE_THREADS:-1}"
EDGE_MAX_DELAY_US="${EDGE_MAX_DELAY_US:-200}"
PORT="${PORT:-27190}"
OUTDIR="${OUTDIR:-/tmp/mlcdn-predict-bench}"
WORK="$(mktemp -d /tmp/mlcdn-bench-predict.XXXXXX)"

for c in wrk curl taskset python3; do
  command -v "$c" >/dev/null || { echo "bench/predict: $c is missing (scripts/install-deps.sh --bench)" >&2; exit 2; }
done
[ -x "$BIN_IN" ] || { echo "bench/predict: mlcdn binary not found: $BIN_IN" >&2; exit 2; }

EDGE_PID="" ORIGIN_PID=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for p in $EDGE_PID $ORIGIN_PID; do
    if kill -0 "$p" 2>/dev/null; then
      kill -TERM "$p" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
    fi
  done
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cp "$BIN_IN" "$WORK/mlcdn" # the tree's binary may be rebuilt during the run
mkdir -p "$OUTDIR" "$WORK/models/mlp/1" "$WORK/models/mlp_nobatch/1" "$WORK/root"
ln -s "$(cd "$MODELS_SRC/mlp" && pwd)/model.onnx" "$WORK/models/mlp/1/model.onnx"
ln -s "$(cd "$MODELS_SRC/mlp" && pwd)/model.onnx" "$WORK/models/mlp_nobatch/1/model.onnx"
echo '{"max_batch": 1}' > "$WORK/models/mlp_nobatch/1/config.json"
head -c 1024 /dev/urandom > "$WORK/root/1k.bin"
printf 'Cache-Control: max-age=86400\n' > "$WORK/root/1k.bin.hdrs"

# Origin (only for the static yardstick), then the edge.
"$WORK/mlcdn" origin --listen 127.0.0.1:0 --root "$WORK/root" > "$WORK/origin.out" 2> "$WORK/origin.err" &
ORIGIN_PID=$!
for _ in $(seq 1 100); do grep -q "listening on" "$WORK/origin.out" 2>/dev/null && break; sleep 0.05; done
ORIGIN_URL="$(grep -o 'http://[^ ]*' "$WORK/origin.out" | head -1)"
taskset -c "$EDGE_CPUS" "$WORK/mlcdn" edge --drain-time 0 --listen "127.0.0.1:$PORT" --admin 127.0.0.1:0 \
  --origin "$ORIGIN_URL" --threads "$EDGE_THREADS" --infer-threads "$INFER_THREADS" \
  --models "$WORK/models" --models-poll 0 --max-delay-us "$EDGE_MAX_DELAY_US" \
  --predict-cache 512M --log-level warn > "$WORK/edge.out" 2> "$WORK/edge.err" &
EDGE_PID=$!
for _ in $(seq 1 100); do grep -q "listening on" "$WORK/edge.out" 2>/dev/null && break; sleep 0.05; done
ADMIN="$(grep -o 'admin=http://[^ ]*' "$WORK/edge.out" | cut -d= -f2)"
BASE="http://127.0.0.1:$PORT"
curl -sf "$BASE/v2/models/mlp/ready" >/dev/null || { echo "bench/predict: edge not ready" >&2; cat "$WORK/edge.err" >&2; exit 1; }
curl -sf -o /dev/null "$BASE/1k.bin"  # fill L1
MODE=warm MODEL=mlp SALT=0 curl -sf -o /dev/null -H 'Content-Type: application/json' \
  --data "$(printf '{"model":"mlp","features":[0,0.5,%s]}' "$(python3 -c 'print(",".join("%.4f" % ((i % 17) / 17) for i in range(3, 65)))')")" "$BASE/predict"

batch_stats() { # model -> "runs rows inference_seconds"
  curl -s "$ADMIN/metrics" | awk -v m="model=\"$1\"" '
    index($0, "mlcdn_predict_batch_size_count{" m "}") == 1 { c = $2 }
    index($0, "mlcdn_predict_batch_size_sum{" m "}") == 1 { s = $2 }
    index($0, "mlcdn_predict_inference_duration_seconds_sum{" m "}") == 1 { t = $2 }
    END { printf "%d %d %.9f\n", c, s, t }'
}

RESULTS="$WORK/results.tsv"
: > "$RESULTS"
run() { # name mode model path
  local name=$1 mode=$2 model=$3 path=$4 out before after
  before=$(batch_stats "$model")
  if [ "$path" = "/predict" ]; then
    out=$(MODE=$mode MODEL=$model SALT="$RANDOM$RANDOM" taskset -c "$WRK_CPUS" wrk -t1 -c"$CONNS" \
          -d"$DURATION" --latency -s "$HERE/predict.lua" "$BASE$path")
  else
    out=$(taskset -c "$WRK_CPUS" wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$BASE$path")
  fi
  after=$(batch_stats "$model")
  python3 - "$name" "$before" "$after" <<PY >> "$RESULTS"
import re, sys
out = """$out"""
def ms(s):
    v, u = re.match(r"([0-9.]+)(us|ms|s)", s).groups()
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[u]
rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
b0, b1 = [list(map(float, a.split())) for a in sys.argv[2:4]]
runs, rows, secs = b1[0] - b0[0], b1[1] - b0[1], b1[2] - b0[2]
mean = "%.1f" % (rows / runs) if runs else "-"
per_row = "%.2f" % (secs * 1e6 / rows) if rows > 100 else "-"
print("\t".join([sys.argv[1], "%.0f" % rps, "%.2f" % p50, "%.2f" % p99, mean, per_row,
                 bad.group(1) if bad else "0"]))
PY
  tail -1 "$RESULTS" >&2
}

run "warm /predict (hits)"        warm mlp         /predict
run "static 1 KiB GET (L1 hits)"  -    mlp         /1k.bin
run "cold /predict, batching"     cold mlp         /predict
run "cold /predict, max_batch 1"  cold mlp_nobatch /predict

python3 - "$RESULTS" "$CONNS" "$DURATION" "$INFER_THREADS" "$EDGE_MAX_DELAY_US" <<'PY' | tee "$OUTDIR/predict.md"
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
print("| %s connections, %s per run, 1 loop + %s inference thread(s) on one CPU, wrk on another; max_delay_us %s |" % tuple(sys.argv[2:6]))
print("| --- |")
print()
print("| workload | requests/s | p50 ms | p99 ms | rows per inference run | inference us per row | non-2xx |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for r in rows:
    print("| %s | %s | %s | %s | %s | %s | %s |" % tuple(r))
d = {r[0]: float(r[1]) for r in rows}
print()
print("- warm hits / static 1 KiB hits: %.2f" % (d["warm /predict (hits)"] / d["static 1 KiB GET (L1 hits)"]))
print("- cold with dynamic batching / cold with max_batch 1: %.2fx requests/s" % (d["cold /predict, batching"] / d["cold /predict, max_batch 1"]))
# A cold request does on the loop everything a warm one does (parse, key, cache lookup,
# answer) plus the inference hand-off, so the warm rate bounds the cold rate from above:
# warm / unbatched is the most any batching (even free inference) could gain on this path.
print("- ceiling of that gain (warm hits / cold max_batch 1): %.2fx" % (d["warm /predict (hits)"] / d["cold /predict, max_batch 1"]))
u = {r[0]: r[5] for r in rows}
if u["cold /predict, batching"] != "-" and u["cold /predict, max_batch 1"] != "-":
    print("- inference time per row, max_batch 1 / batching: %.2fx" % (float(u["cold /predict, max_batch 1"]) / float(u["cold /predict, batching"])))
PY
