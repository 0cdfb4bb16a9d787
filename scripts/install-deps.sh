#!/usr/bin/env bash
# Installs every Debian package that the build, the tests and the benchmarks need.
# Idempotent: packages already present are skipped, and apt runs only when one is missing.
set -euo pipefail

BUILD_PKGS="build-essential cmake pkg-config clang clang-format libclang-rt-14-dev
 libuv1-dev libcurl4-openssl-dev libhiredis-dev libmaxminddb-dev mmdb-bin libjansson-dev
 libxxhash-dev libssl-dev libprotobuf-c-dev protobuf-c-compiler libonnx-dev libonnx-testdata
 libopenblas-dev libconfig-dev libnghttp2-dev libncurses-dev help2man"
# systemd (systemd-analyze), man-db, file and python3-yaml: the packaging tests (units,
# man pages, CPack's dependency scan, the compose file); iproute2 and util-linux (ip,
# unshare): the docs check runs the docs' commands in private namespaces. prometheus ships
# promtool, which checks every daemon's /metrics (tests/e2e/test_logs_metrics.py) and
# conf/prometheus (tests/e2e/test_look.py); no smaller Debian package has it.
# nghttp2-client (nghttp, h2load): the HTTP/2 tests.
# tmux drives `mlcdn ctl top` in a terminal; chromium (headless: --dump-dom, --screenshot)
# opens the router's dashboard (tests/e2e/test_look.py).
TEST_PKGS="libcmocka-dev python3 python3-pytest python3-yaml curl openssl dnsutils redis-server redis-tools
 systemd man-db file iproute2 util-linux prometheus nghttp2-client tmux chromium"
BENCH_PKGS="wrk varnish nginx-light trafficserver h2o dnsperf gdnsd hyperfine"

# Node.js may come from another source than Debian (with its own npm): install Debian's
# only when the commands are missing, or apt refuses the whole list on the conflict.
NODE_PKGS=""
command -v node >/dev/null 2>&1 || NODE_PKGS="$NODE_PKGS nodejs"
command -v npm >/dev/null 2>&1 || NODE_PKGS="$NODE_PKGS npm"

want="$BUILD_PKGS $TEST_PKGS $NODE_PKGS"
case "${1:-}" in
  --bench) want="$want $BENCH_PKGS" ;;
  "") ;;
  *) echo "install-deps.sh: unknown argument '$1' (use --bench or nothing)" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Debian starts services on install; we start our own servers from the tests.
$SUDO env RUNLEVEL=1 apt-get install -y -qq --no-install-recommends $missing >/dev/null
