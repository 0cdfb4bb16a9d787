#!/usr/bin/env bash
# bench/tls/run.sh [MLCDN_BIN] -- cache hits over TLS, side by side, per server CPU-second:
#   * mlcdn edge   --tls-listen, one worker thread, L1 memory cache
#   * nginx        ssl + http2, proxy_cache (files; page cache), one worker
# both in front of one static nginx origin, both pinned to SERVER_CPUS, clients on
# CLIENT_CPUS, one interleaved run (every repetition measures each target once). TLS 1.3,
# ECDSA P-256 certificate made here. Rows:
#   h1-1k    1 KiB hits, HTTP/1.1 over TLS, CONNS keep-alive connections (wrk)
#   h1-1m    1 MiB hits, HTTP/1.1 over TLS (wrk), bytes per server CPU-second
#   h2-1k    1 KiB hits, HTTP/2, 100 connections x 10 streams (h2load), when the target
#            offers h2 in ALPN and h2load is installed; otherwise the row says why
#   hs-full  full TLS 1.3 handshakes (openssl s_time -new; one client, so client-bound:
#            the per-server-CPU figure is what compares)
#   hs-resume resumed handshakes (openssl s_time -reuse)
#   idle-mem resident memory per idle TLS connection (IDLE_CONNS connections opened and held
#            by a Python client, RSS delta of the server / IDLE_CONNS)
# Prints a table of medians and ratios (mlcdn / nginx) and writes raw.tsv + table.md.
#
# Env: REPS=3 DURATION=8 CONNS=64 IDLE_CONNS=10000 SERVER_CPUS=0 CLIENT_CPUS=1
#      ROWS="h1-1k h1-1m h2-1k hs-full hs-resume idle-mem" TARGETS="nginx mlcdn"
#      ORIGIN_PORT=27301 NGINX_PORT=27302 EDGE_PORT=27303 EDGE_TLS_PORT=27304
#      OUTDIR=/tmp/mlcdn-tls-bench/<time> SKIP_INSTALL=1 (do not install missing packages)
# Everything started here is stopped by PID on exit; temp dirs are removed.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="$(realpath "${1:-$ROOT/build/mlcdn}")"
REPS="${REPS:-3}"
DURATION="${DURATION:-8}"
CONNS="${CONNS:-64}"
IDLE_CONNS="${IDLE_CONNS:-10000}"
SERVER_CPUS="${SERVER_CPUS:-0}"
CLIENT_CPUS="${CLIENT_CPUS:-1}"
ROWS="${ROWS:-h1-1k h1-1m h2-1k hs-full hs-resume idle-mem}"
TARGETS="${TARGETS:-nginx mlcdn}"
ORIGIN_PORT="${ORIGIN_PORT:-27301}"
NGINX_PORT="${NGINX_PORT:-27302}"
EDGE_PORT="${EDGE_PORT:-27303}"
EDGE_TLS_PORT="${EDGE_TLS_PORT:-27304}"
OUTDIR="${OUTDIR:-/tmp/mlcdn-tls-bench/$(date +%Y%m%d-%H%M%S)}"

[ -x "$BIN" ] || { echo "bench/tls: no mlcdn binary at $BIN (build first: make build)" >&2; exit 2; }
if [ -z "${SKIP_INSTALL:-}" ]; then "$ROOT/scripts/install-deps.sh" --bench; fi
for c in nginx wrk openssl python3 taskset; do
  command -v "$c" >/dev/null || { echo "bench/tls: '$c' is missing (scripts/install-deps.sh --bench)" >&2; exit 2; }
done
HAVE_H2LOAD=1
command -v h2load >/dev/null || HAVE_H2LOAD=0

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

head -c 1024 /dev/urandom >"$W/root/1k.bin"
head -c 1048576 /dev/urandom >"$W/root/1m.bin"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=edge.test \
  -addext subjectAltName=DNS:edge.test -keyout "$W/key.pem" -out "$W/cert.pem" >/dev/null 2>&1

# As root, nginx's workers would run as nobody, who cannot enter the 0700 temp dir.
USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user root;"
cat >"$W/nginx.conf" <<NG
$USER_LINE
worker_processes 1; daemon off; pid $W/nginx.pid; error_log $W/error.log;
events { worker_connections 16384; }
http {
  access_log off; sendfile on;
  proxy_cache_path $W/cache keys_zone=z:10m max_size=1g;
  server { listen 127.0.0.1:$NGINX_PORT ssl http2;
           ssl_certificate $W/cert.pem; ssl_certificate_key $W/key.pem;
           ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:S:10m; ssl_session_tickets on;
           keepalive_requests 1000000;
           location / { proxy_pass http://127.0.0.1:$ORIGIN_PORT; proxy_cache z;
                        proxy_cache_valid 200 1h; } }
}
NG
# The origin is a separate nginx so the measured nginx has only the cache's work.
cat >"$W/origin.conf" <<NG
$USER_LINE
worker_processes 1; daemon off; pid $W/origin.pid; error_log $W/origin-error.log;
events { worker_connections 1024; }
http { access_log off; sendfile on;
  server { listen 127.0.0.1:$ORIGIN_PORT; root $W/root;
           location / { add_header Cache-Control "max-age=3600"; } } }
NG
taskset -c "$CLIENT_CPUS" nginx -c "$W/origin.conf" >/dev/null 2>&1 &
PIDS+=($!)

start_target() { # name -> sets TPID, TPORT
  case "$1" in
    nginx)
      taskset -c "$SERVER_CPUS" nginx -c "$W/nginx.conf" >"$W/nginx.out" 2>&1 &
      TPID=$!; TPORT=$NGINX_PORT ;;
    mlcdn)
      taskset -c "$SERVER_CPUS" "$BIN" edge --drain-time 0 --listen "127.0.0.1:$EDGE_PORT" --admin "" \
        --tls-listen "127.0.0.1:$EDGE_TLS_PORT" --tls-cert "$W/cert.pem" --tls-key "$W/key.pem" \
        --origin "http://127.0.0.1:$ORIGIN_PORT" --threads 1 --mem 256M --log-level warn \
        >"$W/mlcdn.out" 2>"$W/mlcdn.err" &
      TPID=$!; TPORT=$EDGE_TLS_PORT ;;
  esac
  PIDS+=("$TPID")
  for _ in $(seq 100); do
    curl -sk -o /dev/null "https://127.0.0.1:$TPORT/1k.bin" && break
    sleep 0.1
  done
  for f in 1k.bin 1m.bin; do curl -sk -o /dev/null "https://127.0.0.1:$TPORT/$f"; curl -sk -o /dev/null "https://127.0.0.1:$TPORT/$f"; done
}
stop_target() { kill "$TPID" 2>/dev/null || true; wait "$TPID" 2>/dev/null || true; }

# CPU ticks (user + system) of a process and its children (nginx's worker).
ticks() {
  local t=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
rss_kb() {
  local t=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    t=$((t + $(awk '/^VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
HZ=$(getconf CLK_TCK)

wrk_rate() { # url -> "requests_per_s bytes_per_s"
  taskset -c "$CLIENT_CPUS" wrk -t1 -c"$CONNS" -d"${DURATION}s" "$1" 2>&1 |
    awk '/^Requests\/sec/{r=$2} /^Transfer\/sec/{v=$2; u=substr(v,length(v)-1); n=substr(v,1,length(v)-2);
         m=(u=="GB")?1073741824:(u=="MB")?1048576:(u=="KB")?1024:1; b=n*m} END{printf "%.0f %.0f\n", r, b}'
}

measure() { # target row -> prints "value per_cpu_s note"
  local t=$1 row=$2 c0 c1 cpu val note=""
  c0=$(ticks "$TPID")
  case "$row" in
    h1-1k) read -r val _ < <(wrk_rate "https://127.0.0.1:$TPORT/1k.bin") ;;
    h1-1m) read -r _ val < <(wrk_rate "https://127.0.0.1:$TPORT/1m.bin") ;;
    h2-1k)
      if [ "$HAVE_H2LOAD" = 0 ]; then echo "- - h2load-missing"; return; fi
      if ! echo | openssl s_client -connect "127.0.0.1:$TPORT" -alpn h2 2>/dev/null | grep -q "ALPN protocol: h2"; then
        echo "- - no-h2-in-alpn"; return
      fi
      val=$(taskset -c "$CLIENT_CPUS" h2load -D "$DURATION" -n 100000000 -c 100 -m 10 \
              "https://127.0.0.1:$TPORT/1k.bin" 2>&1 | awk '/^finished in/{gsub(",","",$4); print $4}') ;;
    hs-full|hs-resume)
      local mode=-new; [ "$row" = hs-resume ] && mode=-reuse
      val=$(taskset -c "$CLIENT_CPUS" openssl s_time -connect "127.0.0.1:$TPORT" $mode \
              -time "$DURATION" 2>/dev/null | awk '/connections in .* real/{printf "%.0f", $1/$4; exit}') ;;
    idle-mem)
      local before after
      before=$(rss_kb "$TPID")
      taskset -c "$CLIENT_CPUS" python3 - "$TPORT" "$IDLE_CONNS" "$W/idle.ready" <<'PY' &
import resource, socket, ssl, sys, time
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
port, n, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
held = []
for _ in range(n):  # each handshake completes in wrap_socket
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="edge.test")
    held.append(s)
open(ready, "w").close()
time.sleep(60)
PY
      local cpid=$!
      for _ in $(seq 600); do [ -e "$W/idle.ready" ] && break; sleep 0.1; done
      sleep 2.5 # past mlcdn's idle trim (1 s idle, checked every second)
      after=$(rss_kb "$TPID")
      kill "$cpid" 2>/dev/null || true; wait "$cpid" 2>/dev/null || true
      rm -f "$W/idle.ready"
      echo "$(( (after - before) * 1024 / IDLE_CONNS )) - bytes-per-conn"
      return ;;
  esac
  c1=$(ticks "$TPID")
  cpu=$(echo "$c0 $c1 $HZ" | awk '{printf "%.3f", ($2-$1)/$3}')
  echo "$val $(echo "$val $DURATION $cpu" | awk '{printf "%.0f", ($3>0)?$1*$2/$3:0}') $note"
}

RAW="$OUTDIR/raw.tsv"
echo -e "rep\ttarget\trow\tvalue\tper_cpu_s\tnote" >"$RAW"
for rep in $(seq "$REPS"); do
  for t in $TARGETS; do
    start_target "$t"
    for row in $ROWS; do
      read -r v pc note < <(measure "$t" "$row")
      echo -e "$rep\t$t\t$row\t$v\t$pc\t${note:-}" | tee -a "$RAW"
    done
    stop_target
  done
done

# Medians and ratios: per CPU-second for throughput rows, bytes for idle-mem (lower wins).
python3 - "$RAW" "$OUTDIR/table.md" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
def med(t, r, col):
    v = [float(x[col]) for x in rows if x["target"] == t and x["row"] == r and x[col] not in ("-", "")]
    return statistics.median(v) if v else None
order = []
for x in rows:
    if x["row"] not in order:
        order.append(x["row"])
out = ["| row | nginx | mlcdn | mlcdn / nginx |", "|---|---|---|---|"]
for r in order:
    col = "value" if r == "idle-mem" else "per_cpu_s"
    n, m = med("nginx", r, col), med("mlcdn", r, col)
    notes = sorted({x["note"] for x in rows if x["row"] == r and x["note"] and x["note"] != "bytes-per-conn"})
    ratio = "-" if not n or not m else ("%.2fx (lower is better)" % (m / n) if r == "idle-mem" else "%.2fx" % (m / n))
    fmt = lambda v: "-" if v is None else "%.0f" % v
    out.append("| %s%s | %s | %s | %s |" % (r, " (" + ", ".join(notes) + ")" if notes else "", fmt(n), fmt(m), ratio))
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
echo "bench/tls: results in $OUTDIR"
