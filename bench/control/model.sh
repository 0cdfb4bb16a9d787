#!/bin/sh
# bench/control/model.sh [MLCDN_BIN] -- time from `mlcdn ctl model publish` to every edge
# serving the new version, for a 100 MiB model fetched once from the origin per region
# (model.py says how). Env: MODEL_MB (100), REGIONS (2), EDGES (2 per region), ROUNDS (1),
# LOGDIR.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../../build/mlcdn}
[ -x "$bin" ] || { echo "bench/control/model: mlcdn binary not found: $bin (run make build)" >&2; exit 2; }
# A private copy: the tree's build may be rebuilt meanwhile.
work=$(mktemp -d /tmp/mlcdn-bench-model.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM
cp "$bin" "$work/mlcdn"
WORKDIR="$work" /usr/bin/python3 "$here/model.py" "$work/mlcdn"
