#!/bin/sh
# bench/plan/run.sh: accuracy and speed of `mlcdn plan`'s sampled curves against exact ones.
#
#   bench/plan/run.sh [MLCDN_BIN] [TRACE...]
#   TRACEs default to every $MLCDN_SHARED/traces/*.csv (MLCDN_SHARED: the benchmark data
#   set, default ../shared beside the repository); skipped without them.
#   env: RATE (default auto), SEEDS (default 4), L1, L2 (size lists; see accuracy.py)
#
# Prints a markdown table per (trace, curve, size): exact, sampled, the difference in
# percentage points and the error `plan` reported; then, per trace, the wall times of the
# exact and the sampled runs and the largest difference.
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
exec /usr/bin/python3 "$here/accuracy.py" "$bin" "$@" --rate "${RATE:-auto}" --seeds "${SEEDS:-4}" \
    ${L1:+--l1 "$L1"} ${L2:+--l2 "$L2"}
