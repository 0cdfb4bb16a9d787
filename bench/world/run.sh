#!/bin/sh
# bench/world/run.sh [MLCDN_BIN] -- `mlcdn run --regions 60` on this machine: the router's DNS
# for every region and for real addresses of six continents, fail-over when edges stop,
# invalidation propagation to all edges through the router, memory and CPU per idle edge
# (world.py says how). Env: REGIONS (60), N_INVAL (50), STOP (6 edges stopped).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../../build/mlcdn}
command -v dig >/dev/null 2>&1 || {
    echo "bench/world: skipped: dig is not installed (scripts/install-deps.sh)" >&2
    exit 77
}
[ -x "$bin" ] || { echo "bench/world: mlcdn binary not found: $bin (run make build)" >&2; exit 2; }
# A private copy: the tree's build may be rebuilt meanwhile.
work=$(mktemp -d /tmp/mlcdn-bench-world.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM
cp "$bin" "$work/mlcdn"
/usr/bin/python3 "$here/world.py" "$work/mlcdn" "$here/../../tests/fixtures/geo/test-ips.csv"
