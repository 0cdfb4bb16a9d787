#!/usr/bin/env bash
# bench/tls/run.sh [MLCDN_BIN] -- cache hits over TLS, side by side, per server CPU-second:
#   * nginx   Debian nginx-light: ssl + http2, proxy_cache (files; page cache), one worker
#   * ats     Apache Traffic Server: ssl_multicert.config, HTTP/2 on its TLS port, RAM cache
#             in front of a cache file, one ET_NET thread (every thread pinned)
#   * h2o     h2o 2.2: TLS + HTTP/2, one thread. h2o 2.2's proxy (proxy.reverse.url) has no
#             cache, so it serves the same files from disk (page cache) with its file handler
#   * mlcdn   edge --tls-listen, one worker thread, L1 memory cache
#   * floor   bench/tls/tlsfloor.c: the same 1 KiB from memory over OpenSSL + nghttp2 (with
#             mlcdn in TARGETS, with the header fields of mlcdn's hit) and
#             nothing else (no cache, no limits): the cost floor of those libraries on this
#             kernel, rows h1-1k and h2-1k only; not a peer and not in the ratios. Add it to
#             TARGETS ("nginx ats h2o mlcdn floor") to see how much of a row is the libraries'.
#   * floor-h2o the same floor sending the header fields of h2o's own answer (needs h2o in
#             TARGETS): what a server on OpenSSL + nghttp2 cannot go below for h2o's
#             response, to compare with h2o itself; not a peer either.
# all (h2o aside) in front of one static nginx origin, all pinned to SERVER_CPUS, clients on
# CLIENT_CPUS, interleaved (every repetition measures each target once, the order rotating
# from one repetition to the next). TLS 1.3; ECDSA P-256 certificates, RSA 2048 for the
# hs-full-rsa row. Rows:
#   h1-1k       1 KiB hits, HTTP/1.1 over TLS, CONNS keep-alive connections (wrk): requests
#               per server CPU-second, p99
#   h1-100k     100 KiB hits, same: body bytes per server CPU-second, p99
#   h1-1m       1 MiB hits, same: body bytes per server CPU-second, p99
#   h2-1k       1 KiB hits, HTTP/2, H2_CONNS connections x H2_STREAMS streams (h2load):
#               requests per server CPU-second, p99 (from h2load's per-request log)
#   hs-full     full TLS 1.3 handshakes, ECDSA P-256 (openssl s_time -new)
#   hs-full-rsa full TLS 1.3 handshakes, RSA 2048 (the target restarted with RSA certificates)
#   hs-resume   resumed handshakes (openssl s_time -reuse)
#               The handshake rows fetch /1k.bin (HTTP/1.0) on every connection: a TLS 1.3
#               client only receives its session ticket when it reads. One s_time process is
#               the client, so these rows are client-bound: compare per server CPU-second.
#   idle-mem    resident memory per idle TLS connection (IDLE_CONNS connections opened and held
#               by a Python client, RSS delta of the server's processes / IDLE_CONNS)
# Every row also records how many requests reached the origin meanwhile (a hit row must show
# 0) and notes non-2xx answers, failed streams, handshakes not resumed and connections
# dropped while held; a target that cannot do a row (no h2 in ALPN) gets "-" and the reason.
# Prints a table of medians with mlcdn / best peer and mlcdn / best caching peer (nginx,
# ats: h2o serves files) and writes raw.tsv + table.md.
#
# Env: REPS=3 DURATION=8 CONNS=64 H2_CONNS=100 H2_STREAMS=10 IDLE_CONNS=10000
#      SERVER_CPUS=0 CLIENT_CPUS=1 TARGETS="nginx ats h2o mlcdn"
#      ROWS="h1-1k h1-100k h1-1m h2-1k hs-full hs-full-rsa hs-resume idle-mem"
#      PORT_BASE=27300 (origin +1, its status +2, nginx +3, ats +4, h2o +5, mlcdn +6/+7)
#      OUTDIR=/tmp/mlcdn-tls-bench/<time> SKIP_INSTALL=1 (do not install missing packages)
#      NGINX=nginx TRAFFIC_SERVER=traffic_server H2O=h2o (the peers' commands)
# A peer (or client) that is missing and cannot be installed skips the bench: exit 77 and
# a line naming it (leave that peer out of TARGETS to run the others).
# Everything started here is stopped by PID on exit; temp dirs are removed.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="$(realpath -m "${1:-$ROOT/build/mlcdn}")"
REPS="${REPS:-3}"
DURATION="${DURATION:-8}"
CONNS="${CONNS:-64}"
H2_CONNS="${H2_CONNS:-100}"
H2_STREAMS="${H2_STREAMS:-10}"
IDLE_CONNS="${IDLE_CONNS:-10000}"
SERVER_CPUS="${SERVER_CPUS:-0}"
CLIENT_CPUS="${CLIENT_CPUS:-1}"
ROWS="${ROWS-h1-1k h1-100k h1-1m h2-1k hs-full hs-full-rsa hs-resume idle-mem}"
TARGETS="${TARGETS-nginx ats h2o mlcdn}"
PORT_BASE="${PORT_BASE:-27300}"
for v in REPS DURATION CONNS H2_CONNS H2_STREAMS IDLE_CONNS PORT_BASE; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "bench/tls: $v must be a positive whole number, not '${!v}'" >&2; exit 2; }
done
[ "$PORT_BASE" -le 65528 ] || { echo "bench/tls: PORT_BASE must leave room for 7 ports (at most 65528)" >&2; exit 2; }
ORIGIN_PORT=$((PORT_BASE + 1))
ORIGIN_STATUS_PORT=$((PORT_BASE + 2))
NGINX_PORT=$((PORT_BASE + 3))
ATS_PORT=$((PORT_BASE + 4))
H2O_PORT=$((PORT_BASE + 5))
EDGE_PORT=$((PORT_BASE + 6))
EDGE_TLS_PORT=$((PORT_BASE + 7))
OUTDIR="${OUTDIR:-/tmp/mlcdn-tls-bench/$(date +%Y%m%d-%H%M%S)}"
NGINX="${NGINX:-nginx}"
TRAFFIC_SERVER="${TRAFFIC_SERVER:-traffic_server}"
H2O="${H2O:-h2o}"

[ -x "$BIN" ] || { echo "bench/tls: no mlcdn binary at $BIN (build first: make build)" >&2; exit 2; }
[ -n "$TARGETS" ] || { echo "bench/tls: TARGETS is empty (nginx ats h2o mlcdn)" >&2; exit 2; }
[ -n "$ROWS" ] || { echo "bench/tls: ROWS is empty" >&2; exit 2; }
for t in $TARGETS; do
  case "$t" in nginx | ats | h2o | mlcdn | floor | floor-h2o) ;; *) echo "bench/tls: unknown target '$t' (nginx ats h2o mlcdn floor floor-h2o)" >&2; exit 2 ;; esac
  [ "$(echo "$TARGETS" | tr -s "[:blank:]" "\n" | grep -cx "$t")" = 1 ] || { echo "bench/tls: target '$t' is listed twice in TARGETS" >&2; exit 2; }
done
if [[ " $TARGETS " == *" floor-h2o "* && " $TARGETS " != *" h2o "* ]]; then
  echo "bench/tls: target floor-h2o sends h2o's header fields: add h2o to TARGETS" >&2; exit 2
fi
for r in $ROWS; do
  case "$r" in h1-1k | h1-100k | h1-1m | h2-1k | hs-full | hs-full-rsa | hs-resume | idle-mem) ;;
    *) echo "bench/tls: unknown row '$r'" >&2; exit 2 ;; esac
done

# command -> Debian package, for what this run needs
needs() {
  echo "$NGINX:nginx-light wrk:wrk openssl:openssl python3:python3 taskset:util-linux curl:curl ss:iproute2"
  case " $ROWS " in *" h2-1k "*) echo "h2load:nghttp2-client" ;; esac
  case " $TARGETS " in *" ats "*) echo "$TRAFFIC_SERVER:trafficserver" ;; esac
  case " $TARGETS " in *" h2o "*) echo "$H2O:h2o" ;; esac
  case " $TARGETS " in *" floor "* | *" floor-h2o "*) echo "cc:gcc" ;; esac
}
missing() { local pair; for pair in $(needs); do command -v "${pair%%:*}" >/dev/null || echo "$pair"; done; }
if [ -n "$(missing)" ] && [ -z "${SKIP_INSTALL:-}" ]; then
  "$ROOT/scripts/install-deps.sh" --bench >&2 || echo "bench/tls: scripts/install-deps.sh --bench failed" >&2
fi
if [ -n "$(missing)" ]; then
  m="$(missing | tr '\n' ' ')"
  echo "bench/tls: skipped: needs ${m% } (command:Debian package), not installed" \
       "(scripts/install-deps.sh --bench; or leave that peer out of TARGETS)" >&2
  exit 77
fi

# Another run (or anything else) on these ports would be measured instead: refuse.
for p in $(seq $((PORT_BASE + 1)) $((PORT_BASE + 7))); do
  if [ -n "$(ss -Hltn "( sport = :$p )")" ]; then
    echo "bench/tls: port $p is in use (another run?): set PORT_BASE to a free range of 8 ports" >&2
    exit 2
  fi
done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
W="$(mktemp -d /tmp/mlcdn-tls-bench.XXXXXX)"
mkdir -p "$W/root" "$W/cache" "$OUTDIR"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

declare -A SIZE=([1k.bin]=1024 [100k.bin]=102400 [1m.bin]=1048576)
for f in "${!SIZE[@]}"; do head -c "${SIZE[$f]}" /dev/urandom >"$W/root/$f"; done
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=edge.test \
  -addext subjectAltName=DNS:edge.test -keyout "$W/ecdsa.key" -out "$W/ecdsa.pem" >/dev/null 2>&1
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=edge.test \
  -addext subjectAltName=DNS:edge.test -keyout "$W/rsa.key" -out "$W/rsa.pem" >/dev/null 2>&1

# As root, nginx's workers would run as nobody, who cannot enter the 0700 temp dir.
USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user root;"
if [[ " $TARGETS " == *" floor "* || " $TARGETS " == *" floor-h2o "* ]]; then
  cc -O2 -o "$W/tlsfloor" "$HERE/tlsfloor.c" -lssl -lcrypto -lnghttp2 ||
    { echo "bench/tls: cannot build tlsfloor.c (needs libssl-dev, libnghttp2-dev: scripts/install-deps.sh)" >&2; exit 1; }
fi

# The origin is a separate nginx so the measured servers have only the cache's work; its
# stub_status counts the requests that reach it.
cat >"$W/origin.conf" <<NG
$USER_LINE
worker_processes 1; daemon off; pid $W/origin.pid; error_log $W/origin-error.log;
events { worker_connections 1024; }
http { access_log off; sendfile on;
  server { listen 127.0.0.1:$ORIGIN_PORT; root $W/root;
           location / { add_header Cache-Control "max-age=3600"; } }
  server { listen 127.0.0.1:$ORIGIN_STATUS_PORT; location / { stub_status; } } }
NG
taskset -c "$CLIENT_CPUS" "$NGINX" -c "$W/origin.conf" >/dev/null 2>&1 &
PIDS+=($!)
# requests the origin has answered, this status request included (a delta counts one more)
origin_requests() { curl -s --max-time 2 "http://127.0.0.1:$ORIGIN_STATUS_PORT/" | awk 'NR==3{print $3}'; }

conf_nginx() { # key
  cat >"$W/nginx.conf" <<NG
$USER_LINE
worker_processes 1; worker_rlimit_nofile 65536; daemon off; pid $W/nginx.pid; error_log $W/error.log;
events { worker_connections 32768; }
http {
  access_log off; sendfile on;
  keepalive_timeout 120s; keepalive_requests 1000000; client_header_timeout 120s;
  proxy_cache_path $W/cache keys_zone=z:10m max_size=1g;
  server { listen 127.0.0.1:$NGINX_PORT ssl http2;
           ssl_certificate $W/$1.pem; ssl_certificate_key $W/$1.key;
           ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:S:10m; ssl_session_tickets on;
           location / { proxy_pass http://127.0.0.1:$ORIGIN_PORT; proxy_cache z;
                        proxy_cache_valid 200 1h; } }
}
NG
}

conf_ats() { # key
  local A="$W/ats"
  rm -rf "$A"
  mkdir -p "$A/etc" "$A/log" "$A/run" "$A/var" "$A/cache"
  cp -r /etc/trafficserver/. "$A/etc/"
  cat >"$A/runroot.yaml" <<CONF
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
  # Thread and cache settings as bench/http's ATS (one ET_NET thread, RAM cache); TLS 1.2
  # and 1.3 on the ssl port, where ATS offers h2 and http/1.1 in ALPN by default.
  cat >"$A/etc/records.config" <<CONF
CONFIG proxy.config.http.server_ports STRING $ATS_PORT:ssl
CONFIG proxy.config.admin.user_id STRING #-1
CONFIG proxy.config.exec_thread.autoconfig INT 0
CONFIG proxy.config.exec_thread.limit INT 1
CONFIG proxy.config.exec_thread.affinity INT 0
CONFIG proxy.config.accept_threads INT 1
CONFIG proxy.config.task_threads INT 2
CONFIG proxy.config.cache.threads_per_disk INT 8
CONFIG proxy.config.reverse_proxy.enabled INT 1
CONFIG proxy.config.url_remap.remap_required INT 1
CONFIG proxy.config.url_remap.pristine_host_hdr INT 0
CONFIG proxy.config.http.cache.http INT 1
CONFIG proxy.config.http.cache.required_headers INT 2
CONFIG proxy.config.cache.ram_cache.size INT 268435456
CONFIG proxy.config.cache.ram_cache_cutoff INT 4194304
CONFIG proxy.config.http.insert_response_via_str INT 0
CONFIG proxy.config.http.keep_alive_no_activity_timeout_in INT 120
CONFIG proxy.config.http.accept_no_activity_timeout INT 120
CONFIG proxy.config.http.transaction_no_activity_timeout_in INT 120
CONFIG proxy.config.http2.no_activity_timeout_in INT 120
CONFIG proxy.config.net.connections_throttle INT 60000
CONFIG proxy.config.net.max_connections_in INT 60000
CONFIG proxy.config.ssl.server.cert.path STRING $W
CONFIG proxy.config.ssl.server.private_key.path STRING $W
CONFIG proxy.config.ssl.server.multicert.filename STRING ssl_multicert.config
CONFIG proxy.config.ssl.TLSv1_2 INT 1
CONFIG proxy.config.ssl.TLSv1_3 INT 1
CONFIG proxy.config.log.logging_enabled INT 0
CONFIG proxy.config.diags.debug.enabled INT 0
CONF
  echo "dest_ip=* ssl_cert_name=$1.pem ssl_key_name=$1.key" >"$A/etc/ssl_multicert.config"
  echo "map https://127.0.0.1:$ATS_PORT/ http://127.0.0.1:$ORIGIN_PORT/" >"$A/etc/remap.config"
  echo "$A/cache/cache.db 256M" >"$A/etc/storage.config"
  truncate -s 256M "$A/cache/cache.db"
}

conf_h2o() { # key
  local user_line=""
  [ "$(id -u)" = 0 ] && user_line="user: root" # else h2o would switch to nobody
  cat >"$W/h2o.conf" <<CONF
$user_line
num-threads: 1
max-connections: 60000
http1-request-timeout: 120
http2-idle-timeout: 120
ssl-session-resumption:
  mode: all
listen:
  host: 127.0.0.1
  port: $H2O_PORT
  ssl:
    certificate-file: $W/$1.pem
    key-file: $W/$1.key
    minimum-version: TLSv1.2
    ocsp-update-interval: 0
hosts:
  default:
    paths:
      /:
        file.dir: $W/root
CONF
}

start_target() { # name key -> sets TPID, TPORT
  case "$1" in
    nginx)
      conf_nginx "$2"
      taskset -c "$SERVER_CPUS" "$NGINX" -c "$W/nginx.conf" >"$W/nginx.out" 2>&1 &
      TPID=$!; TPORT=$NGINX_PORT ;;
    ats)
      conf_ats "$2"
      TS_RUNROOT="$W/ats/runroot.yaml" taskset -c "$SERVER_CPUS" "$TRAFFIC_SERVER" \
        --bind_stdout "$W/ats/log/traffic.out" --bind_stderr "$W/ats/log/traffic.out" \
        >/dev/null 2>&1 </dev/null &
      TPID=$!; TPORT=$ATS_PORT ;;
    h2o)
      conf_h2o "$2"
      taskset -c "$SERVER_CPUS" "$H2O" -c "$W/h2o.conf" >"$W/h2o.out" 2>&1 &
      TPID=$!; TPORT=$H2O_PORT ;;
    mlcdn)
      taskset -c "$SERVER_CPUS" "$BIN" edge --drain-time 0 --listen "127.0.0.1:$EDGE_PORT" --admin "" \
        --tls-listen "127.0.0.1:$EDGE_TLS_PORT" --tls-cert "$W/$2.pem" --tls-key "$W/$2.key" \
        --origin "http://127.0.0.1:$ORIGIN_PORT" --threads 1 --mem 256M --log-level warn \
        --idle-timeout 120s >"$W/mlcdn.out" 2>"$W/mlcdn.err" &
      TPID=$!; TPORT=$EDGE_TLS_PORT ;;
    floor)
      taskset -c "$SERVER_CPUS" "$W/tlsfloor" 127.0.0.1 "$EDGE_TLS_PORT" "$W/$2.pem" "$W/$2.key" \
        "$W/root/1k.bin" ${FLOOR_FIELDS:+"$FLOOR_FIELDS"} >"$W/floor.out" 2>&1 &
      TPID=$!; TPORT=$EDGE_TLS_PORT ;;
    floor-h2o)
      taskset -c "$SERVER_CPUS" "$W/tlsfloor" 127.0.0.1 "$EDGE_TLS_PORT" "$W/$2.pem" "$W/$2.key" \
        "$W/root/1k.bin" "$W/fields-h2o.txt" >"$W/floor.out" 2>&1 &
      TPID=$!; TPORT=$EDGE_TLS_PORT ;;
  esac
  PIDS+=("$TPID")
  local ok=0
  for _ in $(seq 300); do
    kill -0 "$TPID" 2>/dev/null || break
    if curl -sk -o /dev/null --max-time 2 "https://127.0.0.1:$TPORT/1k.bin"; then ok=1; break; fi
    sleep 0.1
  done
  if [ "$ok" != 1 ]; then
    echo "bench/tls: $1 did not answer on https://127.0.0.1:$TPORT/1k.bin" >&2
    tail -5 "$W"/*.out "$W"/*.err "$W/ats/log/traffic.out" 2>/dev/null >&2 || true
    exit 1
  fi
  # Some servers set their threads' CPUs themselves: pin every thread of every process.
  local p
  for p in $(tree_pids "$TPID"); do taskset -a -p -c "$SERVER_CPUS" "$p" >/dev/null 2>&1 || true; done
  # Warm: a few requests per object, until one is answered without reaching the origin.
  local f n0
  case "$1" in floor | floor-h2o) return ;; esac # serves from memory
  for f in "${!SIZE[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      n0=$(origin_requests)
      curl -sk -o /dev/null "https://127.0.0.1:$TPORT/$f"
      [ "$(origin_requests)" -gt "$((n0 + 1))" ] || break
      sleep 0.2
    done
  done
}
stop_target() {
  local p kids
  kids=$(tree_pids "$TPID")
  kill "$TPID" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$TPID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$TPID" 2>/dev/null || true
  wait "$TPID" 2>/dev/null || true
  for p in $kids; do kill -9 "$p" 2>/dev/null || true; done # h2o's key-holding helper, if left
}

tree_pids() { # pid -> it and its descendants
  local p
  echo "$1"
  for p in $(pgrep -P "$1" || true); do tree_pids "$p"; done
}
# CPU ticks (user + system) of a process and its descendants (nginx's worker, h2o's helper).
ticks() {
  local t=0 p
  for p in $(tree_pids "$1"); do
    t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
rss_kb() {
  local t=0 p
  for p in $(tree_pids "$1"); do
    t=$((t + $(awk '/^VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
HZ=$(getconf CLK_TCK)

# wrk with --latency -> "requests_per_s p99_ms non2xx errors"
wrk_run() {
  taskset -c "$CLIENT_CPUS" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$1" 2>&1 |
    awk 'function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0;
                          if (v ~ /m$/) return v * 60000; if (v ~ /s$/) return v * 1000; return v }
         /^Requests\/sec/ {r = $2} /^ +99%/ {p = ms($2)} /Non-2xx/ {n = $NF}
         /Socket errors/ {gsub(",", ""); e = $4 + $6 + $8 + $10}
         END {printf "%.0f %.2f %d %d\n", r, p, n, e}'
}

row_key() { [ "$1" = hs-full-rsa ] && echo rsa || echo ecdsa; }

measure() { # target row -> prints "value per_cpu_s p99_ms origin_reqs note"
  local t=$1 row=$2 c0 c1 cpu val p99=- note="" o0 o1 f non2xx errs
  if [ "${t%-h2o}" = floor ] && [ "$row" != h1-1k ] && [ "$row" != h2-1k ]; then
    echo "- - - - floor-only-h1-1k-h2-1k"; return
  fi
  o0=$(origin_requests)
  c0=$(ticks "$TPID")
  case "$row" in
    h1-*)
      f="${row#h1-}.bin"
      read -r val p99 non2xx errs < <(wrk_run "https://127.0.0.1:$TPORT/$f")
      [ "$f" != 1k.bin ] && val=$((val * ${SIZE[$f]})) # body bytes per second
      [ "$non2xx" != 0 ] && note="non2xx=$non2xx"
      [ "$errs" != 0 ] && note="${note:+$note,}sockerr=$errs" ;;
    h2-1k)
      # Captured first, then matched: with pipefail, `s_client | grep -q` fails whenever
      # grep exits before s_client has written the rest (SIGPIPE), at random.
      local hello
      # (tr: the server's first HTTP/2 frames reach stdout too, NUL bytes and all)
      hello=$(echo | openssl s_client -connect "127.0.0.1:$TPORT" -alpn h2 2>/dev/null | tr -d '\0' || true)
      if ! grep -q "ALPN protocol: h2" <<<"$hello"; then
        echo "- - - - no-h2-in-alpn"; return
      fi
      local out
      out=$(taskset -c "$CLIENT_CPUS" h2load -D "$DURATION" -n 1000000000 -c "$H2_CONNS" -m "$H2_STREAMS" \
              --log-file "$W/h2load.log" "https://127.0.0.1:$TPORT/1k.bin" 2>&1)
      val=$(echo "$out" | awk '/^finished in/{gsub(",", "", $4); print $4}')
      local bad
      bad=$(echo "$out" | awk '/^requests:/{gsub(",", ""); print $10 + $12 + $14}
                               /^status codes:/{gsub(",", ""); print $5 + $7 + $9}' | awk '{s += $1} END{print s + 0}')
      [ "${bad:-0}" != 0 ] && note="failed-or-non2xx=$bad" ;;
    hs-full | hs-full-rsa | hs-resume)
      local mode=-new out
      [ "$row" = hs-resume ] && mode=-reuse
      # s_time sends "GET <www> HTTP/1.0" and no Host, which a cache keys apart (and mlcdn
      # forwards with an empty Host, which the nginx origin refuses): the path given here
      # carries a Host line, so every target serves the hit the other rows warmed.
      out=$(taskset -c "$CLIENT_CPUS" openssl s_time -connect "127.0.0.1:$TPORT" $mode \
              -www $'/1k.bin HTTP/1.0\r\nHost: '"127.0.0.1:$TPORT"$'\r\nX-Bench:' -time "$DURATION" 2>/dev/null)
      val=$(echo "$out" | awk '/connections in .* real/{printf "%.0f", $1/$4; exit}')
      # every connection must have fetched the whole object (headers + 1 KiB)
      [ "$(echo "$out" | awk '/bytes read per connection/{print ($(NF-4) >= 1024)}')" = 1 ] || note="short-replies"
      if [ "$row" = hs-resume ]; then
        # s_time prints 'r' per resumed connection, '*' per full handshake
        local rs full
        rs=$(echo "$out" | tr -cd 'r' | wc -c); full=$(echo "$out" | tr -cd '*' | wc -c)
        [ "$full" -gt $((rs / 20)) ] && note="${note:+$note,}not-resumed=$full/$((rs + full))"
      fi ;;
    idle-mem)
      local before after held
      before=$(rss_kb "$TPID")
      taskset -c "$CLIENT_CPUS" python3 - "$TPORT" "$IDLE_CONNS" "$W/idle.ready" <<'PY' &
import os, resource, socket, ssl, sys, time
parent = os.getppid()  # the bench: when it is gone (killed), so is this client
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
port, n, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
held = []
for _ in range(n):  # each handshake completes in wrap_socket
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="edge.test")
    held.append(s)
    if os.getppid() != parent:
        sys.exit(1)
open(ready, "w").close()
for _ in range(600):  # held until the bench has read the RSS and stops this client
    if os.getppid() != parent:
        break
    time.sleep(0.1)
PY
      local cpid=$!
      for _ in $(seq 1200); do [ -e "$W/idle.ready" ] && break; kill -0 "$cpid" 2>/dev/null || break; sleep 0.1; done
      sleep 2.5 # past mlcdn's idle trim (1 s idle, checked every second)
      after=$(rss_kb "$TPID")
      held=$(ss -Htn state established "( sport = :$TPORT )" | wc -l)
      kill "$cpid" 2>/dev/null || true; wait "$cpid" 2>/dev/null || true
      [ -e "$W/idle.ready" ] || note="client-failed"
      rm -f "$W/idle.ready"
      [ "$held" -lt "$IDLE_CONNS" ] && note="${note:+$note,}held=$held"
      o1=$(origin_requests)
      echo "$(((after - before) * 1024 / IDLE_CONNS)) - - $((o1 - o0 - 1)) ${note:-bytes-per-conn}"
      sleep 1 # let the server close the 10,000 connections before the next row
      return ;;
  esac
  c1=$(ticks "$TPID")
  o1=$(origin_requests)
  cpu=$(echo "$c0 $c1 $HZ" | awk '{printf "%.3f", ($2-$1)/$3}')
  if [ "$row" = h2-1k ] && [ -s "$W/h2load.log" ]; then
    p99=$(awk '{print $3}' "$W/h2load.log" | sort -n | awk '{v[NR]=$1} END{i=int(NR*0.99); if(i<1)i=1; printf "%.2f", v[i]/1000}')
    rm -f "$W/h2load.log"
  fi
  echo "${val:-0} $(echo "${val:-0} $DURATION $cpu" | awk '{printf "%.0f", ($3>0)?$1*$2/$3:0}') $p99 $((o1 - o0 - 1)) ${note:--}"
}

# The header fields of TARGET's answer for 1k.bin, as "Name: value" lines in FILE, less
# those the floor sends itself (content-length, content-type) and hop-by-hop ones.
capture_fields() { # target file
  start_target "$1" ecdsa
  curl -sk -D "$W/$1.head" -o /dev/null --http1.1 "https://127.0.0.1:$TPORT/1k.bin"
  stop_target
  grep -viE '^(HTTP/|content-length:|content-type:|connection:|keep-alive:|transfer-encoding:)' \
    "$W/$1.head" | tr -d '\r' | grep -v '^$' >"$2" || true
  [ -s "$2" ] || { echo "bench/tls: no header fields captured from $1" >&2; exit 1; }
}
# With mlcdn in the run, the floor answers with the header fields of mlcdn's own hit (the
# origin's plus Age, X-Cache, X-Cache-Level, X-Edge-Region, Cache-Status): what nghttp2's
# HPACK and the record bytes cost for the same response, not a shorter one.
FLOOR_FIELDS=""
if [[ " $TARGETS " == *" floor "* && " $TARGETS " == *" mlcdn "* ]]; then
  capture_fields mlcdn "$W/fields.txt"
  FLOOR_FIELDS="$W/fields.txt"
  cp "$W/fields.txt" "$OUTDIR/floor-fields.txt"
fi
# floor-h2o: the fields of h2o's own answer for the same file (Date as h2o sent it once).
if [[ " $TARGETS " == *" floor-h2o "* ]]; then
  capture_fields h2o "$W/fields-h2o.txt"
  cp "$W/fields-h2o.txt" "$OUTDIR/floor-h2o-fields.txt"
fi

RAW="$OUTDIR/raw.tsv"
echo -e "rep\ttarget\trow\tvalue\tper_cpu_s\tp99_ms\torigin_reqs\tnote" >"$RAW"
read -r -a TARR <<<"$TARGETS"
NT=${#TARR[@]}
uptime >"$OUTDIR/load-before.txt"
for rep in $(seq "$REPS"); do
  for i in $(seq 0 $((NT - 1))); do
    t=${TARR[$(((i + rep - 1) % NT))]}
    for key in ecdsa rsa; do
      rows=""
      for row in $ROWS; do [ "$(row_key "$row")" = "$key" ] && rows="$rows $row"; done
      [ -n "$rows" ] || continue
      start_target "$t" "$key"
      for row in $rows; do
        read -r v pc p99 oreq note < <(measure "$t" "$row")
        [ "$note" = - ] && note=""
        echo -e "$rep\t$t\t$row\t$v\t$pc\t$p99\t$oreq\t$note" | tee -a "$RAW"
      done
      stop_target
    done
  done
done
uptime >"$OUTDIR/load-after.txt"

# Medians; per server CPU-second for throughput rows, bytes for idle-mem (lower wins). Two
# ratios: mlcdn over the best peer of the row, and over the best peer that caches (h2o 2.2
# has no proxy cache, so its column is a static file server: less work than a cache hit).
python3 - "$RAW" "$OUTDIR/table.md" "$TARGETS" "$ROWS" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
targets = sys.argv[3].split()
order = [r for r in sys.argv[4].split() if any(x["row"] == r for x in rows)]
def med(t, r, col):
    v = [float(x[col]) for x in rows if x["target"] == t and x["row"] == r and x[col] not in ("-", "")]
    return statistics.median(v) if v else None
def fmt(v, r):
    if v is None:
        return "-"
    if r in ("h1-100k", "h1-1m"):
        return "%.2f GB" % (v / 1e9)
    if r == "idle-mem":
        return "{:,.0f} B".format(v)
    return "{:,.0f}".format(v)
label = {
    "h1-1k": "1 KiB hits, HTTP/1.1 over TLS, keep-alive (req per CPU-s)",
    "h1-100k": "100 KiB hits, HTTP/1.1 over TLS (body bytes per CPU-s)",
    "h1-1m": "1 MiB hits, HTTP/1.1 over TLS (body bytes per CPU-s)",
    "h2-1k": "1 KiB hits, HTTP/2, 100 conns x 10 streams (req per CPU-s)",
    "hs-full": "full TLS 1.3 handshakes, ECDSA P-256 (per CPU-s)",
    "hs-full-rsa": "full TLS 1.3 handshakes, RSA 2048 (per CPU-s)",
    "hs-resume": "resumed TLS 1.3 handshakes (per CPU-s)",
    "idle-mem": "memory per idle TLS connection (RSS delta)",
}
head_name = {"h2o": "h2o (files, no cache)", "floor": "floor (OpenSSL + nghttp2 alone)",
             "floor-h2o": "floor, h2o's fields"}
peers = [t for t in targets if t not in ("mlcdn", "floor", "floor-h2o")]
caching = [t for t in peers if t != "h2o"]
ratios = "mlcdn" in targets and peers
two = ratios and caching != peers and caching
head = "| row | " + " | ".join(head_name.get(t, t) for t in targets)
if ratios:
    head += " | mlcdn / best peer"
if two:
    head += " | mlcdn / best caching peer"
out = [head + " |", "|---" * head.count("|") + "|"]
def ratio(r, m, vals, among):
    pv = {t: vals[t] for t in among if vals[t]}
    if not pv or not m:
        return " - |"
    if r == "idle-mem":
        best = min(pv, key=pv.get)
        return " %.2fx of %s (lower is better) |" % (m / pv[best], best)
    best = max(pv, key=pv.get)
    return " %.2fx %s |" % (m / pv[best], best)
for r in order:
    col = "value" if r == "idle-mem" else "per_cpu_s"
    vals = {t: med(t, r, col) for t in targets}
    cells = []
    for t in targets:
        c = fmt(vals[t], r)
        p = med(t, r, "p99_ms")
        if p is not None and vals[t] is not None:
            c += " · p99 %.1f ms" % p
        o = med(t, r, "origin_reqs")
        if o:
            c += " · %d to origin" % o
        notes = sorted({x["note"] for x in rows if x["row"] == r and x["target"] == t and x["note"] not in ("", "bytes-per-conn", "floor-only-h1-1k-h2-1k")})
        if notes:
            c += " (" + ", ".join(notes) + ")"
        cells.append(c)
    line = "| %s | %s |" % (label.get(r, r), " | ".join(cells))
    if ratios:
        line += ratio(r, vals["mlcdn"], vals, peers)
    if two:
        line += ratio(r, vals["mlcdn"], vals, caching)
    out.append(line)
if "h2o" in targets:
    out.append("")
    out.append("h2o 2.2 (Debian) has no proxy cache (proxy.reverse.url only forwards): it cannot be "
               "configured to cache the origin's objects, so its column serves the same files from "
               "disk (page cache) with its file handler.")
def ratios(num, den):
    return ["%s %.2fx" % (r, med(num, r, "per_cpu_s") / med(den, r, "per_cpu_s"))
            for r in order if med(num, r, "per_cpu_s") and med(den, r, "per_cpu_s")]
if "floor" in targets:
    fr = ratios("mlcdn", "floor")
    out.append("")
    out.append("floor: bench/tls/tlsfloor.c answers every request with the same 1 KiB from memory over "
               "OpenSSL and nghttp2 and does nothing else: what a server on those libraries cannot "
               "go below on this kernel" + (" (with mlcdn in the run, it sends the header fields of "
               "mlcdn's hit: floor-fields.txt)" if "mlcdn" in targets else "") + "." +
               (" mlcdn / floor: " + ", ".join(fr) + "." if fr else ""))
if "floor-h2o" in targets:
    fr = ratios("floor-h2o", "h2o")
    out.append("")
    out.append("floor, h2o's fields: the same floor answering with the header fields of h2o's own "
               "response (floor-h2o-fields.txt): the most any server on OpenSSL and nghttp2 could do "
               "for h2o's answer." + (" floor with h2o's fields / h2o: " + ", ".join(fr) + "." if fr else ""))
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
echo "command: REPS=$REPS DURATION=$DURATION CONNS=$CONNS H2_CONNS=$H2_CONNS H2_STREAMS=$H2_STREAMS" \
     "IDLE_CONNS=$IDLE_CONNS TARGETS=\"$TARGETS\" ROWS=\"$ROWS\" bench/tls/run.sh $BIN"
echo "bench/tls: results in $OUTDIR (load: $(sed 's/.*load/load/' "$OUTDIR/load-before.txt") -> $(sed 's/.*load/load/' "$OUTDIR/load-after.txt"))"
