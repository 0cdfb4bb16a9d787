#!/bin/sh
# bench/run-all.sh [MLCDN_BIN] -- runs every bench/*/run.sh that exists, in name order,
# each with the mlcdn binary path as $1. Called by `make bench`.
# A failing benchmark is reported and the others still run; the exit status is
# non-zero if any failed. A benchmark that exits 77 was skipped (it says why: most often
# the benchmark data set beside the repository, ../shared, is not there); skips do not fail.
set -u
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../build/mlcdn}
status=0
for r in "$here"/*/run.sh; do
    [ -f "$r" ] || continue
    name=$(basename "$(dirname "$r")")
    echo "==== bench/$name ===="
    if [ -x "$r" ]; then "$r" "$bin"; else bash "$r" "$bin"; fi
    rc=$?
    if [ $rc -eq 77 ]; then
        echo "==== bench/$name skipped ===="
    elif [ $rc -ne 0 ]; then
        echo "==== bench/$name FAILED ====" >&2
        status=1
    fi
done
exit $status
