#!/bin/sh
# bench/plan/run.sh: accuracy and speed of `mlcdn plan`'s sampled curves against exact ones.
#
#   bench/plan/run.sh [MLCDN_BIN] [TRACE...]
#   TRACEs default to every $MLCDN_SHARED/traces/*.csv (MLCDN_SHARED: the benchmark data
#   set, default ../shared beside the repository); skipped without them.
#   env: MODES (default "auto rate=0.1 objects=8000"), SEEDS (default 4), L1, L2 (size
#        lists; default: plan's own)
#
# Prints a markdown row per (trace, sampling mode): the largest difference from the exact
# curves in percentage points, the largest error `plan` reported, and both wall times
# (bench/plan/accuracy.py; POINTS=1 adds the points that differ by more than 0.25).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../../build/mlcdn}
shared=${MLCDN_SHARED:-$here/../../../shared}
[ $# -gt 0 ] && shift
if [ $# -eq 0 ]; then
    if ! ls "$shared"/traces/*.csv >/dev/null 2>&1; then
        echo "bench/plan: skipped: needs traces; $shared/traces/*.csv (benchmark data set)" \
             "is not there; pass traces as arguments or set MLCDN_SHARED" >&2
        exit 77
    fi
    set -- "$shared"/traces/*.csv
fi
modes=""
for m in ${MODES:-}; do modes="$modes --mode $m"; done
# shellcheck disable=SC2086 # $modes is a list of words
exec /usr/bin/python3 "$here/accuracy.py" "$bin" "$@" --seeds "${SEEDS:-4}" $modes \
    ${L1:+--l1 "$L1"} ${L2:+--l2 "$L2"} ${POINTS:+--points}
