#!/bin/sh
# bench/cachesim/run.sh: replay speed of `mlcdn cachesim`, per policy, on one pinned core.
#
#   bench/cachesim/run.sh [MLCDN_BIN] [TRACE]
#   TRACE defaults to $MLCDN_SHARED/traces/cloudphysics_w106_1m.csv (MLCDN_SHARED: the
#   benchmark data set, default ../shared beside the repository); skipped without it.
#   env: RUNS (default 7), CPU (default 1), SIZES (default "0.1% 1% 10%"),
#        POLICIES (default "lru fifo clock sieve s3fifo wtinylfu default")
#
# Prints, per policy and size, the median of RUNS replays in requests per second. The
# replay time excludes loading the trace (cachesim's own "requests_per_s"), so this is
# the cost of the policy calls plus the simulator's array index.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../../build/mlcdn}
shared=${MLCDN_SHARED:-$here/../../../shared}
trace=${2:-$shared/traces/cloudphysics_w106_1m.csv}
if [ -z "${2:-}" ] && [ ! -f "$trace" ]; then
    echo "bench/cachesim: skipped: needs a trace; the default, $trace (benchmark data set)," \
         "is not there; pass one as the second argument or set MLCDN_SHARED" >&2
    exit 77
fi
[ -f "$trace" ] || { echo "bench/cachesim: no trace at $trace" >&2; exit 1; }
runs=${RUNS:-7}
cpu=${CPU:-1}
sizes=${SIZES:-"0.1% 1% 10%"}
policies=${POLICIES:-"lru fifo clock sieve s3fifo wtinylfu default"}
pin=""
command -v taskset >/dev/null 2>&1 && pin="taskset -c $cpu"

printf '%-8s %-6s %14s   (%s, median of %s runs, cpu %s)\n' policy size req/s "$(basename "$trace")" "$runs" "$cpu"
for p in $policies; do
    for s in $sizes; do
        i=0
        : >"${TMPDIR:-/tmp}/cachesim_bench.$$"
        while [ "$i" -lt "$runs" ]; do
            $pin "$bin" cachesim --trace "$trace" --policy "$p" --size "$s" --json |
                /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["results"][0]["requests_per_s"])' \
                    >>"${TMPDIR:-/tmp}/cachesim_bench.$$"
            i=$((i + 1))
        done
        med=$(sort -g "${TMPDIR:-/tmp}/cachesim_bench.$$" | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')
        printf '%-8s %-6s %14.0f\n' "$p" "$s" "$med"
    done
done
rm -f "${TMPDIR:-/tmp}/cachesim_bench.$$"
