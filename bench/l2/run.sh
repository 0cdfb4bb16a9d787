#!/usr/bin/env bash
# bench/l2/run.sh [MLCDN_BIN] -- L2 (disk-tier) cache hits: a working set larger than the
# memory tier but inside the OS page cache, fetched at random by wrk, against
#   * mlcdn edge         --mem 32M --disk-dir DIR --disk 2G (L1 far smaller than the set)
#   * nginx proxy_cache  cache files on disk, sendfile, open_file_cache, 1 worker
#   * ATS "ats"          32 MB RAM cache + 2 GiB cache file on disk. ATS opens its cache
#                        with O_DIRECT, so its disk hits are real block-device reads
#   * ATS "ats-tmpfs"    the same with the cache file on tmpfs (/dev/shm): ATS's best case,
#                        its "disk" reads are memory copies, like a page-cached disk tier
#   * origin             static nginx serving the object files (baseline, no cache logic)
# all in front of one static nginx origin, each server on CPU 0 with one worker thread,
# wrk (1 thread) on CPU 1, measured in one interleaved run (per repetition every target
# once, rotating order). Self-contained: its own origin, configs, ports and temp dirs, so it
# does not touch the shared harness' peers (../shared/bench/http) that bench/http drives.
#
# Until the edge has --disk-dir/--disk, the mlcdn part is skipped with a clear message,
# the peers are still measured, and the script exits 3.
#
# Env (all optional):
#   REPS=3 DURATION=10s WARMUP=3s CONNS=64     per-target wrk runs (median of REPS reported)
#   NOBJ=4000 OBJ_SIZE=100K                    working set (K/M/G suffixes are IEC: 100K = 102400)
#   DIST=uniform|zipf ZIPF_S=0.99              object popularity
#   TARGETS="origin nginx ats ats-tmpfs mlcdn" what to measure
#   EDGE_MEM=32M EDGE_DISK=2G EDGE_THREADS=1 EDGE_EXTRA_ARGS=""
#   ATS_RAM=32M ATS_DISK=2G NGINX_MAX_SIZE=4g NGINX_EXTRA_HTTP="" (e.g. "aio threads;")
#   ORIGIN_PORT=27180 ORIGIN_STATUS_PORT=27189 NGINX_PORT=27181 ATS_PORT=27183
#   ATS_TMPFS_PORT=27184 EDGE_PORT=27190 EDGE_ADMIN_PORT=27191
#   ATS_TMPFS_DIR=/dev/shm   parent of the ats-tmpfs cache file (must be tmpfs)
#   ATS_STATS=1              load stats_over_http and report ATS RAM/disk hit shares; ATS
#                            publishes counters every ~5 s, so each ATS run is followed by a
#                            ATS_STATS_SETTLE=5.5 s wait (outside the measured window)
#   SERVER_CPUS=0 CLIENT_CPUS=1
#   SERVER_CPU_QUOTA=     percent of one CPU each target may use (a cgroup cpu quota per
#                         target, v1 or v2), e.g. 40: every server is then CPU-bound, so
#                         req/s compares the servers instead of wrk (which otherwise tops
#                         out first on CPU 1); empty (default): no quota
#   L2_TMP=/var/tmp          parent of the temp dir (origin files, nginx/ATS/mlcdn caches);
#                            must be a disk file system, not tmpfs
#   OUTDIR=/tmp/mlcdn-l2-bench/results/l2-<time>   raw.tsv, table.md, logs
#   SKIP_INSTALL=1           do not try to install missing packages
# Everything started here is stopped by PID on exit (also on failure); temp dirs are removed.
# shellcheck disable=SC2317  # functions run from the EXIT trap
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN_IN="${1:-$ROOT/build/mlcdn}"

REPS="${REPS:-3}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-3s}"
CONNS="${CONNS:-64}"
NOBJ="${NOBJ:-4000}"
OBJ_SIZE="${OBJ_SIZE:-100K}"
DIST="${DIST:-uniform}"
ZIPF_S="${ZIPF_S:-0.99}"
TARGETS="${TARGETS:-origin nginx ats ats-tmpfs mlcdn}"
EDGE_MEM="${EDGE_MEM:-32M}"
EDGE_DISK="${EDGE_DISK:-2G}"
EDGE_THREADS="${EDGE_THREADS:-1}"
ATS_RAM="${ATS_RAM:-32M}"
ATS_DISK="${ATS_DISK:-2G}"
NGINX_MAX_SIZE="${NGINX_MAX_SIZE:-4g}"
ORIGIN_PORT="${ORIGIN_PORT:-27180}"
ORIGIN_STATUS_PORT="${ORIGIN_STATUS_PORT:-27189}"
NGINX_PORT="${NGINX_PORT:-27181}"
ATS_PORT="${ATS_PORT:-27183}"
ATS_TMPFS_PORT="${ATS_TMPFS_PORT:-27184}"
ATS_TMPFS_DIR="${ATS_TMPFS_DIR:-/dev/shm}"
ATS_STATS="${ATS_STATS:-1}"
ATS_STATS_SETTLE="${ATS_STATS_SETTLE:-5.5}"
EDGE_PORT="${EDGE_PORT:-27190}"
EDGE_ADMIN_PORT="${EDGE_ADMIN_PORT:-27191}"
SERVER_CPUS="${SERVER_CPUS:-0}"
CLIENT_CPUS="${CLIENT_CPUS:-1}"
SERVER_CPU_QUOTA="${SERVER_CPU_QUOTA:-}"
L2_TMP="${L2_TMP:-/var/tmp}"
BIND=127.0.0.1
STAMP="$(date +%Y%m%d-%H%M%S)"
OUTDIR="${OUTDIR:-/tmp/mlcdn-l2-bench/results/l2-$STAMP}"

die() { echo "bench/l2: $*" >&2; exit 2; }
case "$DIST" in uniform|zipf) ;; *) die "DIST must be uniform or zipf, not '$DIST'";; esac
OBJ_BYTES="$(numfmt --from=iec "$OBJ_SIZE")" || die "bad OBJ_SIZE '$OBJ_SIZE'"
ATS_RAM_BYTES="$(numfmt --from=iec "$ATS_RAM")" || die "bad ATS_RAM '$ATS_RAM'"
EDGE_MEM_BYTES="$(numfmt --from=iec "$EDGE_MEM")" || die "bad EDGE_MEM '$EDGE_MEM'"
ATS_DISK_BYTES="$(numfmt --from=iec "$ATS_DISK")" || die "bad ATS_DISK '$ATS_DISK'"
if [ "$NOBJ" -lt 1 ] || [ "$NOBJ" -gt 99999 ]; then die "NOBJ must be 1..99999"; fi
SET_BYTES=$((NOBJ * OBJ_BYTES))
LAST="$(printf %05d "$NOBJ")"
WL="l2-$DIST"; [ "$DIST" = zipf ] && WL="l2-zipf$ZIPF_S"
has_target() { case " $TARGETS " in *" $1 "*) return 0;; esac; return 1; }

# ------------------------------------------------------------------ 0. temp dir, cleanup
mkdir -p "$L2_TMP" "$OUTDIR"
W="$(mktemp -d "$L2_TMP/mlcdn-bench-l2.XXXXXX")"
chmod 755 "$W"   # nginx workers (www-data) and ATS (trafficserver) must traverse it

# started servers: "name pid stop-signal", stopped in reverse order
STARTED=()
CGROUPS=()   # cgroups made for SERVER_CPU_QUOTA, removed on exit
declare -A PID=() URL=() DB=()
SHM=""
stop_pid() {  # name pid signal
  local name="$1" pid="$2" sig="$3"
  kill -0 "$pid" 2>/dev/null || return 0
  kill -"$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  echo "bench/l2: stopped $name (pid $pid)" >&2
}
cleanup() {
  local rc=$? i
  trap - EXIT INT TERM
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
    # shellcheck disable=SC2086
    stop_pid ${STARTED[$i]}
  done
  # page-cache pages of the deleted files are dropped with them
  for i in "${CGROUPS[@]}"; do rmdir "$i" 2>/dev/null || true; done
  rm -rf "$W"
  [ -n "$SHM" ] && rm -rf "$SHM"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fstype="$(stat -f -c %T "$W")"
case "$fstype" in tmpfs|ramfs) die "L2_TMP=$L2_TMP is $fstype; the disk tiers must live on a disk file system";; esac

# ------------------------------------------------------------------ 1. packages
have_all() { local c; for c in nginx traffic_server wrk curl taskset fincore numfmt python3; do
  command -v "$c" >/dev/null || return 1; done; }
if ! have_all && [ "${SKIP_INSTALL:-0}" != 1 ]; then
  "$ROOT/scripts/install-deps.sh" --bench || echo "bench/l2: scripts/install-deps.sh --bench failed" >&2
fi
have_all || die "missing one of nginx traffic_server wrk curl taskset fincore numfmt python3 (scripts/install-deps.sh --bench)"
ulimit -n 20000 2>/dev/null || true

# ------------------------------------------------------------------ 2. mlcdn usable?
EDGE_OK=0
EDGE_SKIP_REASON=""
if has_target mlcdn; then
  if [ ! -x "$BIN_IN" ]; then
    EDGE_SKIP_REASON="mlcdn binary not found: $BIN_IN (run make build)"
  elif ! grep -q -- '--disk-dir' <<<"$("$BIN_IN" edge --help 2>&1)"; then # not a pipe: grep -q's early exit would fail it under pipefail
    EDGE_SKIP_REASON="'$BIN_IN edge --help' lists no --disk-dir: this binary has no disk tier yet (mlcdn edge: unknown flag --disk-dir)"
  else
    EDGE_OK=1
  fi
  if [ "$EDGE_OK" != 1 ]; then
    echo "=====================================================================" >&2
    echo "bench/l2: SKIPPING mlcdn: $EDGE_SKIP_REASON" >&2
    echo "bench/l2: measuring the peers only; the script will exit 3" >&2
    echo "=====================================================================" >&2
  fi
fi

MEM_AVAIL=$(( $(awk '/^MemAvailable:/{print $2}' /proc/meminfo) * 1024 ))
echo "bench/l2: working set $NOBJ x $OBJ_BYTES B = $((SET_BYTES / 1048576)) MiB ($DIST), L1 $EDGE_MEM, ATS RAM cache $ATS_RAM, temp dir $W ($fstype), MemAvailable $((MEM_AVAIL / 1048576)) MiB"
[ "$SET_BYTES" -gt "$EDGE_MEM_BYTES" ] || echo "bench/l2: WARNING: the working set fits in L1 ($EDGE_MEM): not an L2 workload" >&2
[ "$SET_BYTES" -gt "$ATS_RAM_BYTES" ] || echo "bench/l2: WARNING: the working set fits in the ATS RAM cache ($ATS_RAM)" >&2
# origin files + up to four cached copies (nginx, ats-tmpfs, mlcdn; ats bypasses the page
# cache) must stay in memory
[ $((SET_BYTES * 5)) -lt "$MEM_AVAIL" ] || echo "bench/l2: WARNING: 5 x the working set exceeds MemAvailable: hits may come from the disk itself" >&2
[ "$SET_BYTES" -lt "$ATS_DISK_BYTES" ] || die "the working set does not fit in ATS_DISK=$ATS_DISK"

# the ports must be free: a server already there would answer for ours
for port in "$ORIGIN_PORT" "$ORIGIN_STATUS_PORT" "$NGINX_PORT" "$ATS_PORT" "$ATS_TMPFS_PORT" \
            "$EDGE_PORT" "$EDGE_ADMIN_PORT"; do
  if (exec 3<>"/dev/tcp/$BIND/$port") 2>/dev/null; then
    die "port $BIND:$port is already in use (another bench/l2 run?); set the *_PORT variables"
  fi
done

# ------------------------------------------------------------------ 3. origin files
mkdir -p "$W/www/l2"
head -c "$SET_BYTES" /dev/urandom | \
  split -b "$OBJ_BYTES" -d -a 5 --numeric-suffixes=1 --additional-suffix=.bin - "$W/www/l2/"
[ -f "$W/www/l2/$LAST.bin" ] || die "object generation failed"
chmod -R a+rX "$W/www"

# ------------------------------------------------------------------ 4. servers
pin_all() { local p; for p in "$@"; do taskset -a -p -c "$SERVER_CPUS" "$p" >/dev/null 2>&1 || true; done; }
wait_port() {  # port [path]: until an HTTP answer
  local i
  for i in $(seq 1 100); do
    curl -s -o /dev/null --max-time 1 "http://$BIND:$1${2:-/}" && return 0
    sleep 0.2
  done
  return 1
}
nginx_temp_paths() {
  local d="$1"
  mkdir -p "$d/tmp"
  cat <<CONF
  client_body_temp_path $d/tmp/body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
CONF
}

# ---- origin: static nginx, 1 worker (also the baseline target)
mkdir -p "$W/origin"
cat > "$W/origin/nginx.conf" <<CONF
user www-data;
worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid $W/origin/nginx.pid;
error_log $W/origin/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
$(nginx_temp_paths "$W/origin")
  types { application/octet-stream bin; }
  default_type application/octet-stream;
  sendfile on; tcp_nopush off; tcp_nodelay on;
  keepalive_timeout 120s; keepalive_requests 1000000;
  open_file_cache max=$((NOBJ * 2 + 1000)) inactive=300s; open_file_cache_valid 3600s;
  server {
    listen $BIND:$ORIGIN_PORT backlog=4096;
    root $W/www;
    location / { add_header Cache-Control "max-age=3600"; }
  }
  server {
    listen $BIND:$ORIGIN_STATUS_PORT;
    location / { stub_status; }
  }
}
CONF
chown -R www-data: "$W/origin/tmp"
taskset -c "$SERVER_CPUS" nginx -p "$W/origin" -c "$W/origin/nginx.conf" >"$W/origin/stdout.log" 2>&1 </dev/null &
PID[origin]=$!; URL[origin]="http://$BIND:$ORIGIN_PORT"; STARTED+=("origin ${PID[origin]} QUIT")
wait_port "$ORIGIN_PORT" "/l2/00001.bin" || { cat "$W/origin/error.log" "$W/origin/stdout.log" >&2; die "origin did not start"; }
wait_port "$ORIGIN_STATUS_PORT" || die "origin stub_status did not start"

# ---- nginx proxy_cache on disk
if has_target nginx; then
  mkdir -p "$W/nginx" "$W/nginx-cache"
  KZ=$(( (NOBJ + 7999) / 8000 + 8 ))   # MB; 1 MB of keys zone holds ~8000 keys
  cat > "$W/nginx/nginx.conf" <<CONF
user www-data;
worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
$(nginx_temp_paths "$W/nginx")
  # tcp_nopush stays off: with sendfile + tcp_nopush on, nginx 1.22 stalls ~40 ms per cached
  # 100 KiB response on keep-alive connections (../shared/bench/http/setup_peers.sh).
  sendfile on; tcp_nopush off; tcp_nodelay on;
  keepalive_timeout 120s; keepalive_requests 1000000;
  # cached files stay open: no open()/fstat()/close() per hit
  open_file_cache max=$((NOBJ * 2 + 1000)) inactive=300s; open_file_cache_valid 3600s;
  open_file_cache_min_uses 1; open_file_cache_errors on;
  upstream origin { server $BIND:$ORIGIN_PORT; keepalive 64; }
  proxy_cache_path $W/nginx-cache levels=1:2 keys_zone=l2:${KZ}m max_size=$NGINX_MAX_SIZE
                   inactive=1d use_temp_path=off;
  ${NGINX_EXTRA_HTTP:-}
  server {
    listen $BIND:$NGINX_PORT backlog=4096;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache l2;
      proxy_cache_key \$uri;
      proxy_cache_lock on;
      add_header X-Cache-Status \$upstream_cache_status always;
    }
  }
}
CONF
  chown -R www-data: "$W/nginx-cache" "$W/nginx/tmp"
  taskset -c "$SERVER_CPUS" nginx -p "$W/nginx" -c "$W/nginx/nginx.conf" >"$W/nginx/stdout.log" 2>&1 </dev/null &
  PID[nginx]=$!; URL[nginx]="http://$BIND:$NGINX_PORT"; STARTED+=("nginx ${PID[nginx]} QUIT")
  wait_port "$NGINX_PORT" || { cat "$W/nginx/error.log" "$W/nginx/stdout.log" >&2; die "nginx proxy_cache did not start"; }
fi

# ---- Apache Traffic Server: small RAM cache in front of a cache file
# ATS opens every cache span with O_DIRECT|O_DSYNC (iocore/cache/Cache.cc), also a plain file
# on a file system: its "disk" reads bypass the page cache and go to the block device. So it
# runs twice: "ats" with the cache file on disk (as deployed; real device reads) and
# "ats-tmpfs" with the cache file on tmpfs (its direct reads are then memory copies: the
# closest ATS gets to a disk tier that sits in the page cache, which is what the others get).
start_ats() {  # name port cache-file
  local name="$1" port="$2" db="$3" A="$W/$1"
  mkdir -p "$A/etc" "$A/log" "$A/run" "$A/var" "$A/cache"
  cp -r /etc/trafficserver/. "$A/etc/"
  cat > "$A/runroot.yaml" <<CONF
prefix: /usr
exec_prefix: /usr
bindir: /usr/bin
sbindir: /usr/sbin
sysconfdir: $A/etc
datadir: $A/cache
includedir: /usr/include
libdir: /usr/lib/trafficserver
libexecdir: /usr/lib/trafficserver/modules
localstatedir: $A/var
runtimedir: $A/run
logdir: $A/log
cachedir: $A/cache
CONF
  cat > "$A/etc/records.config" <<CONF
CONFIG proxy.config.http.server_ports STRING $port
CONFIG proxy.config.admin.user_id STRING trafficserver
# one ET_NET thread (pinned like every server); AIO threads for the cache file as default
CONFIG proxy.config.exec_thread.autoconfig INT 0
CONFIG proxy.config.exec_thread.limit INT 1
CONFIG proxy.config.exec_thread.affinity INT 0
CONFIG proxy.config.accept_threads INT 1
CONFIG proxy.config.task_threads INT 2
CONFIG proxy.config.cache.threads_per_disk INT 8
# reverse proxy
CONFIG proxy.config.reverse_proxy.enabled INT 1
CONFIG proxy.config.url_remap.remap_required INT 1
CONFIG proxy.config.url_remap.pristine_host_hdr INT 0
# cache: $ATS_RAM RAM cache in front of a $ATS_DISK cache file (storage.config)
CONFIG proxy.config.http.cache.http INT 1
CONFIG proxy.config.http.cache.required_headers INT 2
CONFIG proxy.config.cache.ram_cache.size INT $ATS_RAM_BYTES
CONFIG proxy.config.cache.ram_cache_cutoff INT 4194304
CONFIG proxy.config.http.insert_request_via_str INT 1
CONFIG proxy.config.http.insert_response_via_str INT 0
CONFIG proxy.config.http.keep_alive_no_activity_timeout_in INT 120
CONFIG proxy.config.http.keep_alive_no_activity_timeout_out INT 120
CONFIG proxy.config.net.connections_throttle INT 10000
CONFIG proxy.config.net.max_connections_in INT 10000
CONFIG proxy.config.log.logging_enabled INT 0
CONFIG proxy.config.diags.debug.enabled INT 0
CONF
  echo "map http://$BIND:$port/ http://$BIND:$ORIGIN_PORT/" > "$A/etc/remap.config"
  # stats (RAM vs disk hits) are read between runs from /_stats
  [ "$ATS_STATS" = 1 ] && echo "stats_over_http.so _stats" >> "$A/etc/plugin.config"
  echo "$db $ATS_DISK_BYTES" > "$A/etc/storage.config"
  rm -f "$db"
  case "$(stat -f -c %T "$(dirname "$db")")" in
    tmpfs) truncate -s "$ATS_DISK_BYTES" "$db" ;;   # sparse: only what ATS writes takes RAM
    *) fallocate -l "$ATS_DISK_BYTES" "$db" 2>/dev/null || truncate -s "$ATS_DISK_BYTES" "$db" ;;
  esac
  chown -R trafficserver: "$A" "$db"
  TS_RUNROOT="$A/runroot.yaml" taskset -c "$SERVER_CPUS" traffic_server \
    --bind_stdout "$A/log/traffic.out" --bind_stderr "$A/log/traffic.out" \
    >/dev/null 2>&1 </dev/null &
  PID[$name]=$!; URL[$name]="http://$BIND:$port"; DB[$name]="$db"
  STARTED+=("$name ${PID[$name]} TERM")
  wait_port "$port" || { tail -20 "$A/log/traffic.out" >&2; die "$name did not start"; }
}
has_target ats && start_ats ats "$ATS_PORT" "$W/ats.cache.db"
if has_target ats-tmpfs; then
  [ "$(stat -f -c %T "$ATS_TMPFS_DIR")" = tmpfs ] || die "ATS_TMPFS_DIR=$ATS_TMPFS_DIR is not tmpfs"
  SHM="$(mktemp -d "$ATS_TMPFS_DIR/mlcdn-bench-l2.XXXXXX")"
  chmod 755 "$SHM"
  start_ats ats-tmpfs "$ATS_TMPFS_PORT" "$SHM/ats.cache.db"
fi

# ---- mlcdn edge: small L1, disk tier
if [ "$EDGE_OK" = 1 ]; then
  cp "$BIN_IN" "$W/mlcdn"   # private copy: build/mlcdn may be rebuilt during the run
  mkdir -p "$W/mlcdn-disk"
  # shellcheck disable=SC2086
  taskset -c "$SERVER_CPUS" "$W/mlcdn" edge --drain-time 0 --threads "$EDGE_THREADS" \
    --listen "$BIND:$EDGE_PORT" --admin "$BIND:$EDGE_ADMIN_PORT" \
    --origin "http://$BIND:$ORIGIN_PORT" --mem "$EDGE_MEM" \
    --disk-dir "$W/mlcdn-disk" --disk "$EDGE_DISK" --log-level warn ${EDGE_EXTRA_ARGS:-} \
    >"$OUTDIR/edge.log" 2>&1 </dev/null &
  EDGE_PID=$!; STARTED+=("mlcdn $EDGE_PID TERM")
  PID[mlcdn]=$EDGE_PID; URL[mlcdn]="http://$BIND:$EDGE_PORT"
  ok=0
  for _ in $(seq 1 100); do
    kill -0 "$EDGE_PID" 2>/dev/null || break
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$BIND:$EDGE_PORT/l2/00001.bin" || true)" = 200 ] && { ok=1; break; }
    sleep 0.1
  done
  if [ "$ok" != 1 ]; then
    EDGE_OK=0
    if grep -q 'unknown flag' "$OUTDIR/edge.log"; then
      EDGE_SKIP_REASON="the edge rejected a flag: $(grep -m1 'unknown flag' "$OUTDIR/edge.log")"
    else
      EDGE_SKIP_REASON="the edge did not serve http://$BIND:$EDGE_PORT/l2/00001.bin; log: $OUTDIR/edge.log"
    fi
    echo "=====================================================================" >&2
    echo "bench/l2: SKIPPING mlcdn: $EDGE_SKIP_REASON" >&2
    tail -5 "$OUTDIR/edge.log" >&2 || true
    echo "=====================================================================" >&2
  fi
fi

# ------------------------------------------------------------------ 5. helpers
NAMES=()
for t in origin nginx ats ats-tmpfs mlcdn; do
  has_target "$t" || continue
  [ "$t" = mlcdn ] && [ "$EDGE_OK" != 1 ] && continue
  NAMES+=("$t")
done
[ ${#NAMES[@]} -gt 0 ] || die "nothing to measure (TARGETS=$TARGETS)"

server_pid() {
  echo "${PID[$1]}"
}
pids_of() { local p; p=$(server_pid "$1"); echo "$p"; pgrep -P "$p" || true; }
# shellcheck disable=SC2046
pin_all $(for n in "${NAMES[@]}"; do pids_of "$n"; done)   # ATS re-binds its threads at start

# SERVER_CPU_QUOTA: one cgroup per target with a CPU quota (cgroup v1 cpu controller, or v2)
cap_cpu() {  # name pids...
  local name="$1" d p q=$((SERVER_CPU_QUOTA * 1000)); shift
  if [ -w /sys/fs/cgroup/cpu ] && [ -e /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
    d="/sys/fs/cgroup/cpu/mlcdn-bench-l2-$$-$name"
    mkdir "$d" && CGROUPS+=("$d")
    echo 100000 >"$d/cpu.cfs_period_us" && echo "$q" >"$d/cpu.cfs_quota_us"
  elif [ -e /sys/fs/cgroup/cgroup.controllers ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers; then
    echo +cpu >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
    d="/sys/fs/cgroup/mlcdn-bench-l2-$$-$name"
    mkdir "$d" && CGROUPS+=("$d")
    echo "$q 100000" >"$d/cpu.max"
  else
    die "SERVER_CPU_QUOTA needs a writable cgroup cpu controller (v1 /sys/fs/cgroup/cpu or v2)"
  fi
  for p in "$@"; do echo "$p" >"$d/cgroup.procs" 2>/dev/null || true; done
  echo "bench/l2: $name capped at $SERVER_CPU_QUOTA % of a CPU ($d)" >&2
}
if [ -n "$SERVER_CPU_QUOTA" ]; then
  case "$SERVER_CPU_QUOTA" in *[!0-9]*|0) die "SERVER_CPU_QUOTA must be a whole percent (1-100)";; esac
  # shellcheck disable=SC2046
  for n in "${NAMES[@]}"; do cap_cpu "$n" $(pids_of "$n"); done
fi

version_of() {
  case "$1" in
    origin|nginx) nginx -v 2>&1 | sed 's/.*nginx\//nginx /' ;;
    ats|ats-tmpfs) traffic_server -V 2>&1 | grep -o 'Traffic Server [0-9.]*' | head -1 | sed 's/Traffic Server/ATS/' ;;
    mlcdn) echo "$("$W/mlcdn" --version 2>/dev/null | head -1)+bin:$(sha256sum "$BIN_IN" | cut -c1-8)" ;;
  esac
}
origin_requests() { curl -s --max-time 2 "http://$BIND:$ORIGIN_STATUS_PORT/" | awk 'NR==3{print $3}'; }
cpu_ticks() { awk '/^cpu[01] /{b=$2+$3+$4+$7+$8; t=b+$5+$6; printf "%s %s ", b, t}' /proc/stat; }
proc_ticks() {  # utime+stime (clock ticks) summed over pids
  local t=0 p v
  for p in "$@"; do v=$(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0); t=$((t + v)); done
  echo "$t"
}
proc_read_bytes() {  # bytes the pids made the kernel fetch from the block device
  local t=0 p v
  for p in "$@"; do v=$(awk '/^read_bytes:/{print $2}' "/proc/$p/io" 2>/dev/null || echo 0); t=$((t + ${v:-0})); done
  echo "$t"
}
# cumulative per-tier answer counters, "key=value,..." ("-" when the target has none):
#   mlcdn: admin /metrics mlcdn_edge_requests_total summed per level (L1, L2, ORIGIN, ...)
#   ats, ats-tmpfs: /_stats: RAM = fresh hits served from the RAM cache, disk = other fresh hits,
#          miss = cold misses
declare -A LAST_USE=()   # EPOCHREALTIME of the end of the last load on a target
settle() {  # ATS publishes its counters only every ~5 s: wait that long after the last load
  case "$1" in ats|ats-tmpfs) ;; *) return 0 ;; esac
  local w
  w=$(awk -v l="${LAST_USE[$1]:-0}" -v n="$EPOCHREALTIME" -v s="$ATS_STATS_SETTLE" \
        'BEGIN { w = l + s - n; printf "%.2f", (w > 0 ? w : 0) }')
  sleep "$w"
}
tiers_now() {
  settle "$1"
  case "$1" in
    mlcdn)
      curl -s --max-time 3 "http://$BIND:$EDGE_ADMIN_PORT/metrics" | python3 -c '
import re, sys
c = {}
for line in sys.stdin:
    m = re.match(r"mlcdn_edge_requests_total\{([^}]*)\}\s+([0-9.eE+]+)", line)
    if m:
        lv = re.search(r"level=\"([^\"]*)\"", m.group(1))
        k = lv.group(1) if lv else "?"
        c[k] = c.get(k, 0) + float(m.group(2))
print(",".join("%s=%d" % kv for kv in sorted(c.items())) or "-")' ;;
    ats|ats-tmpfs)
      [ "$ATS_STATS" = 1 ] || { echo "-"; return 0; }
      curl -s --max-time 3 "${URL[$1]}/_stats" | python3 -c '
import json, sys
try:
    g = json.load(sys.stdin)["global"]
    v = lambda k: int(float(g.get(k, 0)))
    mem = v("proxy.process.http.cache_hit_mem_fresh")
    fresh = v("proxy.process.http.cache_hit_fresh")
    print("RAM=%d,disk=%d,miss=%d" % (mem, fresh - mem, v("proxy.process.http.cache_miss_cold")))
except Exception as e:
    print("-"); print("bench/l2: cannot read the ATS stats: %r" % e, file=sys.stderr)' ;;
    *) echo "-" ;;
  esac
}
tier_share() {  # before after -> "L1 8.0% · L2 92.0%"
  python3 - "$1" "$2" <<'PY'
import sys
def parse(s):
    return {} if s in ("-", "") else {k: int(v) for k, v in (x.split("=") for x in s.split(","))}
a, b = parse(sys.argv[1]), parse(sys.argv[2])
d = {k: b[k] - a.get(k, 0) for k in b}
tot = sum(d.values())
print(" · ".join("%s %.1f%%" % (k, 100.0 * v / tot) for k, v in d.items() if v) if tot > 0 else "-")
PY
}
page_cache() {  # name -> "resident MiB / size MiB in N files" of the target's stored objects
  local files=()
  case "$1" in
    origin) files=("$W/www/l2") ;;
    nginx) files=("$W/nginx-cache") ;;
    ats|ats-tmpfs) files=("${DB[$1]}") ;;
    mlcdn) files=("$W/mlcdn-disk") ;;
  esac
  find "${files[@]}" -type f -print0 2>/dev/null | xargs -0 -r fincore -b -n -o RES,SIZE 2>/dev/null | \
    awk '{r+=$1; s+=$2; n++} END{printf "%.0f MiB resident of %.0f MiB in %d file(s)", r/1048576, s/1048576, n}'
}

# one pass over every object, sequential keep-alive curl; prints status/tier counts
warm_pass() {  # name url pass
  local name="$1" url="$2" pass="$3" fmt o0 o1 t0 t1
  case "$name" in
    mlcdn) fmt='%{http_code} X-Cache=%header{x-cache} X-Cache-Level=%header{x-cache-level}\n' ;;
    nginx) fmt='%{http_code} X-Cache-Status=%header{x-cache-status}\n' ;;
    *) fmt='%{http_code}\n' ;;
  esac
  t0=$(tiers_now "$name"); o0=$(origin_requests)
  curl -s --max-time 600 -o /dev/null -w "$fmt" "$url/l2/[00001-$LAST].bin" > "$W/warm-$name-$pass.txt" || true
  LAST_USE[$name]=$EPOCHREALTIME
  o1=$(origin_requests); t1=$(tiers_now "$name")
  local miss=$((o1 - o0 - 1)); [ "$name" = origin ] && miss="-"
  printf '  %-9s pass %s: %s | origin requests: %s | tiers: %s\n' "$name" "$pass" \
    "$(sort "$W/warm-$name-$pass.txt" | uniq -c | awk '{c=$1; $1=""; printf "%s%d x%s", (NR>1?", ":""), c, $0}')" \
    "$miss" "$(tier_share "$t0" "$t1")"
}

# measure NAME URL REP OUT [warm]: one pinned wrk run -> one TSV row (columns as the shared
# harness' measure_one, plus disk_read_MiB and tiers):
# mode target version workload conns rep rps p50_us p99_us errors hit cpu0% cpu1% requests
#   server_cpu_s req_per_server_cpu_s load1 errdetail disk_read_MiB tiers
measure() {
  local name="$1" url="$2" rep="$3" out="$4" warm="${5:-}"
  local dur="$DURATION"; [ -n "$warm" ] && dur="$WARMUP"
  local spids; spids=$(pids_of "$name" | tr '\n' ' ')
  local tb ta before after t0 t1 s0 s1 io0 io1 res
  tb=$(tiers_now "$name"); before=$(origin_requests)
  # shellcheck disable=SC2086
  { t0=$(cpu_ticks); s0=$(proc_ticks $spids); io0=$(proc_read_bytes $spids); }
  res=$(ulimit -n 20000 2>/dev/null; L2_NOBJ="$NOBJ" L2_DIST="$DIST" L2_ZIPF_S="$ZIPF_S" \
        taskset -c "$CLIENT_CPUS" wrk -t1 -c"$CONNS" -d"$dur" --latency --timeout 5s \
        -s "$HERE/l2.lua" "$url/" 2>&1 | grep '^RESULT' || true)
  LAST_USE[$name]=$EPOCHREALTIME
  # shellcheck disable=SC2086
  { t1=$(cpu_ticks); s1=$(proc_ticks $spids); io1=$(proc_read_bytes $spids); }
  after=$(origin_requests); ta=$(tiers_now "$name")
  [ -n "$warm" ] && return 0
  if [ -z "$res" ]; then echo "bench/l2: wrk produced no result for $name" >&2; return 1; fi
  python3 - pinned "$name" "$(version_of "$name")" "$WL" "$CONNS" "$rep" "$before" "$after" \
      "$t0" "$t1" "$res" "$((s1 - s0))" "$((io1 - io0))" "$(tier_share "$tb" "$ta")" >> "$out" <<'PY'
import os, sys
mode, name, ver, wl, conns, rep, before, after, t0, t1, res, sticks, rbytes, tiers = sys.argv[1:]
kv = dict(x.split('=') for x in res.split()[1:])
req = int(kv['requests']); dur = int(kv['duration_us']) / 1e6
rps = req / dur if dur else 0
errs = sum(int(kv[k]) for k in kv if k.startswith('err_'))
if name == 'origin' or not before or not after:
    hit = '-'
else:
    miss = max(0, int(after) - int(before) - 1)
    hit = '%.4f' % (1 - miss / req) if req else '-'
a = list(map(int, t0.split())); b = list(map(int, t1.split()))
def pct(i):
    db = b[2 * i] - a[2 * i]; dt = b[2 * i + 1] - a[2 * i + 1]
    return '%.0f' % (100 * db / dt) if dt else '-'
scpu = int(sticks) / os.sysconf('SC_CLK_TCK')
rpc = '%.0f' % (req / scpu) if scpu > 0 else '-'
load = open('/proc/loadavg').read().split()[0]
print('\t'.join([mode, name, ver, wl, conns, rep, '%.0f' % rps, kv['p50_us'], kv['p99_us'], str(errs), hit,
                 pct(0), pct(1), str(req), '%.2f' % scpu, rpc, load,
                 'c%s/r%s/w%s/s%s/t%s' % (kv['err_connect'], kv['err_read'], kv['err_write'],
                                          kv['err_status'], kv['err_timeout']),
                 '%.1f' % (int(rbytes) / 1048576), tiers]))
PY
}

# ------------------------------------------------------------------ 6. warm-up + checks
{
  echo "bench/l2 $(date -u '+%Y-%m-%d %H:%M:%S UTC')  workload $WL: $NOBJ objects x $OBJ_BYTES B, $CONNS conns"
  for t in "${NAMES[@]}"; do
    printf '%-9s %-26s %s (pid %s, cpus %s)\n' "$t" "$(version_of "$t")" "${URL[$t]}" "${PID[$t]}" "$SERVER_CPUS"
  done
} | tee "$OUTDIR/targets.txt"
echo "== warm-up: every object fetched twice per target (pass 1 fills the cache, pass 2 must be all hits)"
for t in "${NAMES[@]}"; do warm_pass "$t" "${URL[$t]}" 1; done
sleep 2   # ATS writes its aggregation buffers to the cache file asynchronously
for t in "${NAMES[@]}"; do warm_pass "$t" "${URL[$t]}" 2; done
echo "== page cache (fincore) of each target's stored objects after warm-up"
for t in "${NAMES[@]}"; do printf '  %-9s %s\n' "$t" "$(page_cache "$t")"; done
for t in "${NAMES[@]}"; do measure "$t" "${URL[$t]}" 0 /dev/null warm; done

# ------------------------------------------------------------------ 7. interleaved runs
RAW="$OUTDIR/raw.tsv"; : > "$RAW"
n=${#NAMES[@]}
echo "== $REPS x ${DURATION} per target, interleaved (rotating order); server cpus $SERVER_CPUS, wrk -t1 -c$CONNS on cpus $CLIENT_CPUS"
uptime | tee "$OUTDIR/load-before.txt"
for rep in $(seq 1 "$REPS"); do
  for k in $(seq 0 $((n - 1))); do
    i=$(( (k + rep - 1) % n ))
    measure "${NAMES[$i]}" "${URL[${NAMES[$i]}]}" "$rep" "$RAW"
    tail -1 "$RAW"
  done
done
uptime | tee "$OUTDIR/load-after.txt"
echo "== page cache (fincore) after the runs"
for t in "${NAMES[@]}"; do printf '  %-9s %s\n' "$t" "$(page_cache "$t")"; done
for n in "${NAMES[@]}"; do
  p=$(server_pid "$n"); kill -0 "$p" 2>/dev/null || die "$n (pid $p) exited during the run"
done

# ------------------------------------------------------------------ 8. table + ratios
echo
python3 "$HERE/summary.py" "$RAW" | tee "$OUTDIR/table.md"
echo "command: REPS=$REPS DURATION=$DURATION WARMUP=$WARMUP CONNS=$CONNS NOBJ=$NOBJ OBJ_SIZE=$OBJ_SIZE DIST=$DIST TARGETS=\"$TARGETS\" ${SERVER_CPU_QUOTA:+SERVER_CPU_QUOTA=$SERVER_CPU_QUOTA }bench/l2/run.sh $BIN_IN"
echo "results: $OUTDIR/{raw.tsv,table.md,targets.txt}"
if has_target mlcdn && [ "$EDGE_OK" != 1 ]; then
  echo "bench/l2: mlcdn was NOT measured: $EDGE_SKIP_REASON" >&2
  exit 3
fi
exit 0
