#!/usr/bin/env bash
# bench/http/run.sh [MLCDN_BIN] -- HTTP cache hits, mlcdn edge side by side with Varnish
# (malloc), nginx (proxy_cache) and Apache Traffic Server (RAM cache), all in front of the
# same nginx origin, measured with wrk in one interleaved run.
#
# It reuses the shared harness (../shared/bench/http relative to the repo root, read-only)
# by calling it: setup_peers.sh starts origin + peers, compare.sh measures every target
# interleaved and writes raw.tsv + table.md; ratios.py (here) adds the mlcdn/peer ratios.
#
# Env (all optional):
#   REPS=3 DURATION=10s WARMUP=3s     per (target, workload) runs, as in the shared lib.sh
#   WORKLOADS="small medium large zipf zipf1k"   1 KiB, 100 KiB, 1 MiB hits, Zipf 64 / 1000 conns
#   MODES=pinned                      servers on CPU 0 (1 worker), wrk on CPU 1 (1 thread)
#   EDGE_PORT=27090 EDGE_THREADS=1 EDGE_MEM=1G EDGE_CPUS=0 EDGE_EXTRA_ARGS=""
#   MLCDN_SHARED=<repo>/../shared (the benchmark data set; without it the bench is skipped)
#   SHARED_HTTP=$MLCDN_SHARED/bench/http   OUTDIR=<dir for raw.tsv, table.md, ratios.md>
#   SKIP_INSTALL=1                    do not try to install missing packages
# Everything started here (peers, edge) is stopped by PID on exit, also on failure.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN_IN="${1:-$ROOT/build/mlcdn}"
SHARED="${MLCDN_SHARED:-$ROOT/../shared}"
SHARED_HTTP="${SHARED_HTTP:-$SHARED/bench/http}"
if [ ! -x "$SHARED_HTTP/compare.sh" ]; then
  echo "bench/http: skipped: needs the HTTP benchmark harness (peer set-up, interleaved wrk runs) of the" \
       "benchmark data set, $SHARED_HTTP/compare.sh, which is not there; set MLCDN_SHARED (or SHARED_HTTP)" >&2
  exit 77
fi
export MODES="${MODES:-pinned}"
export WORKLOADS="${WORKLOADS:-small medium large zipf zipf1k}"
export REPS="${REPS:-3}"
export DURATION="${DURATION:-10s}"
export WARMUP="${WARMUP:-3s}"
EDGE_PORT="${EDGE_PORT:-27090}"
EDGE_THREADS="${EDGE_THREADS:-1}"
EDGE_MEM="${EDGE_MEM:-1G}"
EDGE_CPUS="${EDGE_CPUS:-0}"
STAMP="$(date +%Y%m%d-%H%M%S)"
export OUTDIR="${OUTDIR:-/tmp/mlcdn-http-bench/results/mlcdn-$STAMP}"
WORK="$(mktemp -d /tmp/mlcdn-bench-http.XXXXXX)"

[ -x "$BIN_IN" ] || { echo "bench/http: mlcdn binary not found: $BIN_IN (run make build)" >&2; exit 2; }

EDGE_PID=""
PEERS_STARTED=0
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$EDGE_PID" ] && kill -0 "$EDGE_PID" 2>/dev/null; then
    kill -TERM "$EDGE_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$EDGE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$EDGE_PID" 2>/dev/null && kill -KILL "$EDGE_PID" 2>/dev/null || true
    echo "bench/http: stopped mlcdn edge (pid $EDGE_PID)" >&2
  fi
  # stop_peers.sh stops only what setup_peers.sh recorded in its PID files
  [ "$PEERS_STARTED" = 1 ] && "$SHARED_HTTP/stop_peers.sh" >&2 || true
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ 1. packages
have_all() { local c; for c in nginx varnishd traffic_server wrk curl taskset python3; do
  command -v "$c" >/dev/null || return 1; done; }
if ! have_all && [ "${SKIP_INSTALL:-0}" != 1 ]; then
  "$ROOT/scripts/install-deps.sh" --bench || echo "bench/http: install-deps.sh --bench failed; installing the HTTP bench packages alone" >&2
  if ! have_all; then
    apt-get -o DPkg::Lock::Timeout=900 update -qq || true
    DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get -o DPkg::Lock::Timeout=900 install -y -qq \
      --no-install-recommends nginx-light varnish trafficserver wrk curl util-linux >/dev/null
  fi
fi
have_all || { echo "bench/http: missing one of nginx varnishd traffic_server wrk curl taskset python3" >&2; exit 2; }

# A private copy of the binary: the tree's build/mlcdn may be rebuilt during the run.
cp "$BIN_IN" "$WORK/mlcdn"
EDGE_VERSION="mlcdn $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')+bin:$(sha256sum "$BIN_IN" | cut -c1-8)"
export EDGE_VERSION
mkdir -p "$OUTDIR"

# ------------------------------------------------------------------ 2. origin + peers
# compare.sh restarts them once more per mode (its setup_peers.sh call); starting them
# here lets the edge be checked against a live origin before the long run.
PEERS_STARTED=1
MODE="${MODES%% *}" "$SHARED_HTTP/setup_peers.sh"

# ------------------------------------------------------------------ 3. mlcdn edge
ulimit -n 20000 2>/dev/null || true
# shellcheck disable=SC2086
taskset -c "$EDGE_CPUS" "$WORK/mlcdn" edge --drain-time 0 --threads "$EDGE_THREADS" \
  --listen "127.0.0.1:$EDGE_PORT" --admin 127.0.0.1:0 --origin http://127.0.0.1:27080 \
  --mem "$EDGE_MEM" --log-level warn ${EDGE_EXTRA_ARGS:-} \
  >"$OUTDIR/edge.log" 2>&1 </dev/null &
EDGE_PID=$!
echo "$EDGE_PID" > "$OUTDIR/edge.pid"
EDGE_URL="http://127.0.0.1:$EDGE_PORT"
ok=0
for _ in $(seq 1 100); do
  kill -0 "$EDGE_PID" 2>/dev/null || break
  if [ "$(curl -s -o /dev/null -w '%{size_download}' --max-time 2 "$EDGE_URL/obj/1k.bin" || true)" = 1024 ]; then ok=1; break; fi
  sleep 0.1
done
if [ "$ok" != 1 ]; then
  echo "bench/http: mlcdn edge did not serve $EDGE_URL/obj/1k.bin; its log:" >&2
  tail -20 "$OUTDIR/edge.log" >&2; exit 1
fi
echo "mlcdn    $EDGE_VERSION  $EDGE_URL  (pid $EDGE_PID, cpus $EDGE_CPUS, threads $EDGE_THREADS)"

# ------------------------------------------------------------------ 4. interleaved run
uptime | tee "$OUTDIR/load-before.txt"
EDGE_URL="$EDGE_URL" EDGE_PID="$EDGE_PID" EDGE_NAME=mlcdn KEEP_PEERS=1 \
  "$SHARED_HTTP/compare.sh" | tee "$OUTDIR/compare.log"
uptime | tee "$OUTDIR/load-after.txt"
if ! kill -0 "$EDGE_PID" 2>/dev/null; then
  echo "bench/http: mlcdn edge exited during the run; its log:" >&2; tail -20 "$OUTDIR/edge.log" >&2; exit 1
fi

# ------------------------------------------------------------------ 5. ratios
echo
python3 "$HERE/ratios.py" --edge mlcdn "$OUTDIR/raw.tsv" | tee "$OUTDIR/ratios.md"
echo "command: REPS=$REPS DURATION=$DURATION WARMUP=$WARMUP MODES=\"$MODES\" WORKLOADS=\"$WORKLOADS\" bench/http/run.sh $BIN_IN"
echo "results: $OUTDIR/{raw.tsv,table.md,ratios.md,compare.log,edge.log}"
