#!/bin/sh
# bench/control/run.sh [MLCDN_BIN] -- propagation p50/p99 of invalidations to 4 and 16
# edges under load, over direct HTTP fan-out and the Redis stream (control.py says how).
# Env: N_INVAL (1000), EDGES ("4 16"), TRANSPORTS ("http redis"), LOAD_CONNS (4),
# LOAD_DELAY_MS (1; 0: saturating load), LOGDIR.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../../build/mlcdn}
for tool in redis-server redis-cli wrk curl; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "bench/control: skipped: $tool is not installed (scripts/install-deps.sh --bench)" >&2
        exit 77
    }
done
[ -x "$bin" ] || { echo "bench/control: mlcdn binary not found: $bin (run make build)" >&2; exit 2; }
# A private copy: the tree's build may be rebuilt meanwhile.
work=$(mktemp -d /tmp/mlcdn-bench-control.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM
cp "$bin" "$work/mlcdn"
WORKDIR="$work" /usr/bin/python3 "$here/control.py" "$work/mlcdn"
