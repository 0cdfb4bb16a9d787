#!/usr/bin/env bash
# bench/http2origin/run.sh [MLCDN_BIN] -- the edge's misses to an https:// origin over
# HTTP/2 (--origin-http2: libcurl multiplexing) against HTTP/1.1 keep-alive (the default).
#
# One mlcdn edge (one worker thread, pinned to EDGE_CPUS) in front of an nginx origin that
# terminates TLS 1.3 and offers h2 and http/1.1 in ALPN (Debian nginx-light, `ssl http2`,
# certificate verified by the edge through --origin-ca). wrk (HTTP/1.1, CONNS keep-alive
# connections, plain HTTP to the edge) makes every request go upstream:
#   unique-1k    a new key on every request (/1k.bin?k=<run>-<n>): a miss each time
#   unique-100k  the same with a 100 KiB object
#   revalidate   1 KiB objects the origin sends with max-age=0 (ETag from nginx), KEYS keys
#                picked at random: every request is a conditional request answered 304
# Edge variants: h1 (no flag) and h2 (--origin-http2). Interleaved: every repetition starts
# each variant once (fresh edge, empty cache; the order alternates) and runs every workload.
# Each workload runs WARMUP seconds unmeasured first (upstream connections open, revalidate's
# keys stored), then DURATION seconds measured: requests/s, requests per edge CPU-second
# (user + system time of the edge), p50 and p99 (wrk --latency), upstream connections
# opened (the origin's stub_status "accepts" delta) and the most held at once (sampled with
# ss every 0.2 s), non-2xx answers and socket errors. The protocol the edge used upstream
# is read from the origin's log of one probe request per edge start. The edge runs with
# long origin timeouts and no breaker (a busy machine must not turn misses into errors);
# its warnings are kept as edge-<rep>-<variant>.log. Prints medians and h2 / h1 (misses
# per second, per CPU-second, p99) and writes raw.tsv + table.md.
#
# Env: REPS=5 DURATION=8 WARMUP=2 CONNS=64 KEYS=1000 WORKLOADS="unique-1k unique-100k revalidate"
#      VARIANTS="h1 h2" EDGE_CPUS=0 CLIENT_CPUS=1 ORIGIN_CPUS=$CLIENT_CPUS
#      PORT_BASE=27500 (origin TLS +1, its status +2, edge +3)
#      OUTDIR=/tmp/mlcdn-http2origin-bench/<time> SKIP_INSTALL=1 NGINX=nginx
# A missing tool that cannot be installed skips the bench: exit 77 and a line naming it.
# Everything started here is stopped by PID on exit; temp dirs are removed.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="$(realpath -m "${1:-$ROOT/build/mlcdn}")"
REPS="${REPS:-5}"
DURATION="${DURATION:-8}"
WARMUP="${WARMUP:-2}"
CONNS="${CONNS:-64}"
KEYS="${KEYS:-1000}"
WORKLOADS="${WORKLOADS-unique-1k unique-100k revalidate}"
VARIANTS="${VARIANTS-h1 h2}"
EDGE_CPUS="${EDGE_CPUS:-0}"
CLIENT_CPUS="${CLIENT_CPUS:-1}"
ORIGIN_CPUS="${ORIGIN_CPUS:-$CLIENT_CPUS}"
PORT_BASE="${PORT_BASE:-27500}"
for v in REPS DURATION WARMUP CONNS KEYS PORT_BASE; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "bench/http2origin: $v must be a positive whole number, not '${!v}'" >&2; exit 2; }
done
[ "$PORT_BASE" -le 65532 ] || { echo "bench/http2origin: PORT_BASE must leave room for 3 ports (at most 65532)" >&2; exit 2; }
ORIGIN_PORT=$((PORT_BASE + 1))
ORIGIN_STATUS_PORT=$((PORT_BASE + 2))
EDGE_PORT=$((PORT_BASE + 3))
OUTDIR="${OUTDIR:-/tmp/mlcdn-http2origin-bench/$(date +%Y%m%d-%H%M%S)}"
NGINX="${NGINX:-nginx}"

[ -x "$BIN" ] || { echo "bench/http2origin: no mlcdn binary at $BIN (build first: make build)" >&2; exit 2; }
[ -n "$WORKLOADS" ] || { echo "bench/http2origin: WORKLOADS is empty (unique-1k unique-100k revalidate)" >&2; exit 2; }
[ -n "$VARIANTS" ] || { echo "bench/http2origin: VARIANTS is empty (h1 h2)" >&2; exit 2; }
for w in $WORKLOADS; do
  case "$w" in unique-1k | unique-100k | revalidate) ;; *) echo "bench/http2origin: unknown workload '$w'" >&2; exit 2 ;; esac
done
for v in $VARIANTS; do
  case "$v" in h1 | h2) ;; *) echo "bench/http2origin: unknown variant '$v' (h1 h2)" >&2; exit 2 ;; esac
  [ "$(echo "$VARIANTS" | tr -s "[:blank:]" "\n" | grep -cx "$v")" = 1 ] || { echo "bench/http2origin: variant '$v' is listed twice in VARIANTS" >&2; exit 2; }
done
NEEDS="$NGINX:nginx-light wrk:wrk openssl:openssl curl:curl taskset:util-linux ss:iproute2 python3:python3"
missing() { local pair; for pair in $NEEDS; do command -v "${pair%%:*}" >/dev/null || echo "$pair"; done; }
if [ -n "$(missing)" ] && [ -z "${SKIP_INSTALL:-}" ]; then
  "$ROOT/scripts/install-deps.sh" --bench >&2 || echo "bench/http2origin: scripts/install-deps.sh --bench failed" >&2
fi
if [ -n "$(missing)" ]; then
  m="$(missing | tr '\n' ' ')"
  echo "bench/http2origin: skipped: needs ${m% } (command:Debian package), not installed" \
       "(scripts/install-deps.sh --bench)" >&2
  exit 77
fi

# Another run (or anything else) on these ports would be measured instead: refuse.
for p in $(seq $((PORT_BASE + 1)) $((PORT_BASE + 3))); do
  if [ -n "$(ss -Hltn "( sport = :$p )")" ]; then
    echo "bench/http2origin: port $p is in use (another run?): set PORT_BASE to a free range of 4 ports" >&2
    exit 2
  fi
done
ulimit -n 65536 2>/dev/null || true
W="$(mktemp -d /tmp/mlcdn-h2o-bench.XXXXXX)"
mkdir -p "$W/root" "$OUTDIR"
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

head -c 1024 /dev/urandom >"$W/root/1k.bin"
head -c 102400 /dev/urandom >"$W/root/100k.bin"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=origin.test \
  -addext subjectAltName=IP:127.0.0.1,DNS:origin.test -keyout "$W/origin.key" -out "$W/origin.pem" >/dev/null 2>&1

USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user root;" # nobody could not enter the 0700 temp dir
# keepalive_requests also bounds the requests of an HTTP/2 connection in nginx (1000 by
# default): raised so neither protocol's connections are recycled during a run.
cat >"$W/origin.conf" <<NG
$USER_LINE
worker_processes 1; worker_rlimit_nofile 65536; daemon off; pid $W/origin.pid; error_log $W/origin-error.log;
events { worker_connections 16384; }
http {
  access_log off; sendfile on; keepalive_requests 1000000; keepalive_timeout 120s;
  log_format proto '\$server_protocol \$request_uri';
  server { listen 127.0.0.1:$ORIGIN_PORT ssl http2;
           ssl_certificate $W/origin.pem; ssl_certificate_key $W/origin.key;
           ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:S:10m;
           root $W/root;
           location /u/ { alias $W/root/; add_header Cache-Control "max-age=3600"; }
           location /r/ { alias $W/root/; add_header Cache-Control "max-age=0"; }
           location /probe/ { alias $W/root/; access_log $W/probe.log proto; } }
  server { listen 127.0.0.1:$ORIGIN_STATUS_PORT; location / { stub_status; } }
}
NG
taskset -c "$ORIGIN_CPUS" "$NGINX" -c "$W/origin.conf" >"$W/origin.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
  curl -s --max-time 1 --cacert "$W/origin.pem" -o /dev/null "https://127.0.0.1:$ORIGIN_PORT/u/1k.bin" && break
  sleep 0.1
done
# stub_status: "accepts" is the connections the origin has accepted, this request's included
origin_accepts() { curl -s --max-time 2 "http://127.0.0.1:$ORIGIN_STATUS_PORT/" | awk 'NR==3{print $1}'; }

cat >"$W/keys.lua" <<'LUA'
-- a new key per request (unique), or one of KEYS keys at random (revalidate)
local path, run, keys = os.getenv("WRK_PATH"), os.getenv("WRK_RUN"), tonumber(os.getenv("WRK_KEYS"))
local n = 0
request = function()
  n = n + 1
  local k = keys > 0 and math.random(keys) or n
  return wrk.format("GET", path .. "?k=" .. run .. "-" .. k)
end
LUA

start_edge() { # variant -> EPID
  local flag=""
  [ "$1" = h2 ] && flag="--origin-http2"
  # Long origin timeouts and no breaker: on a busy machine the first burst of CONNS misses
  # (each opening a TLS connection for HTTP/1.1) can outlast the default timeouts, and an
  # opened breaker would turn the rest of the run into fast errors, not origin fetches.
  # shellcheck disable=SC2086
  taskset -c "$EDGE_CPUS" "$BIN" edge --drain-time 0 --listen "127.0.0.1:$EDGE_PORT" --admin "" \
    --origin "https://127.0.0.1:$ORIGIN_PORT" --origin-ca "$W/origin.pem" $flag \
    --connect-timeout 30s --first-byte-timeout 30s --origin-breaker-failures 0 \
    --threads 1 --mem 1G --log-level warn >"$W/edge.out" 2>"$W/edge.err" &
  EPID=$!
  PIDS+=("$EPID")
  local ok=0
  for _ in $(seq 100); do
    kill -0 "$EPID" 2>/dev/null || break
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$EDGE_PORT/probe/1k.bin?v=$1-$RANDOM" || true)" = 200 ]; then
      ok=1; break
    fi
    sleep 0.1
  done
  if [ "$ok" != 1 ]; then
    echo "bench/http2origin: the $1 edge did not serve /probe/1k.bin; its log:" >&2
    tail -5 "$W/edge.err" >&2; exit 1
  fi
  UPSTREAM_PROTO=$(tail -1 "$W/probe.log" | awk '{print $1}')
}
stop_edge() {
  kill "$EPID" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$EPID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$EPID" 2>/dev/null || true
  wait "$EPID" 2>/dev/null || true
  # the edge's warnings and errors (why requests failed, if any did) stay with the results
  [ -s "$W/edge.err" ] && cp "$W/edge.err" "$OUTDIR/edge-$1.log"
  return 0
}
ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)

measure() { # workload run-id -> "rps per_cpu_s p50_ms p99_ms conns_opened conns_peak non2xx sock_errors"
  local path keys=0 a0 a1 c0 c1 peak
  case "$1" in
    unique-1k) path=/u/1k.bin ;;
    unique-100k) path=/u/100k.bin ;;
    revalidate) path=/r/1k.bin; keys=$KEYS ;;
  esac
  # Warm-up, not measured: the upstream connections (one TLS handshake per connection for
  # HTTP/1.1) are open before the measured run, which shows the steady state. Unique keys
  # of their own; revalidate's keys get stored, so its measured run only revalidates.
  local wrun="$2-warm"
  [ "$1" = revalidate ] && wrun=$2
  WRK_PATH=$path WRK_RUN=$wrun WRK_KEYS=$keys taskset -c "$CLIENT_CPUS" \
    wrk -t1 -c"$CONNS" -d"${WARMUP}s" -s "$W/keys.lua" "http://127.0.0.1:$EDGE_PORT" >/dev/null 2>&1
  a0=$(origin_accepts)
  c0=$(ticks "$EPID")
  # the most upstream connections held at once, sampled while wrk runs
  (peak=0
   while [ ! -e "$W/wrk.done" ]; do
     n=$(ss -Htn state established "( dport = :$ORIGIN_PORT )" | wc -l)
     [ "$n" -gt "$peak" ] && peak=$n
     sleep 0.2
   done
   echo "$peak" >"$W/peak") &
  local spid=$!
  WRK_PATH=$path WRK_RUN=$2 WRK_KEYS=$keys taskset -c "$CLIENT_CPUS" \
    wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$W/keys.lua" "http://127.0.0.1:$EDGE_PORT" >"$W/wrk.out" 2>&1
  c1=$(ticks "$EPID")
  touch "$W/wrk.done"
  wait "$spid" 2>/dev/null || true
  rm -f "$W/wrk.done"
  peak=$(cat "$W/peak")
  a1=$(origin_accepts)
  awk -v c0="$c0" -v c1="$c1" -v hz="$HZ" -v d="$DURATION" -v opened=$((a1 - a0 - 1)) -v peak="$peak" '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0;
                     if (v ~ /m$/) return v * 60000; if (v ~ /s$/) return v * 1000; return v }
    /^Requests\/sec/ {r = $2} /^ +50%/ {m = ms($2)} /^ +99%/ {p = ms($2)} /Non-2xx/ {n = $NF}
    /Socket errors/ {gsub(",", ""); e = $4 + $6 + $8 + $10}
    END {cpu = (c1 - c0) / hz; printf "%.0f %.0f %.2f %.2f %d %d %d %d\n", r, (cpu > 0) ? r * d / cpu : 0, m, p, opened, peak, n, e}' "$W/wrk.out"
}

RAW="$OUTDIR/raw.tsv"
echo -e "rep\tvariant\tupstream\tworkload\treq_s\tper_cpu_s\tp50_ms\tp99_ms\tconns_opened\tconns_peak\tnon2xx\tsock_errors" >"$RAW"
read -r -a VARR <<<"$VARIANTS"
NV=${#VARR[@]}
uptime >"$OUTDIR/load-before.txt"
for rep in $(seq "$REPS"); do
  for i in $(seq 0 $((NV - 1))); do
    v=${VARR[$(((i + rep - 1) % NV))]}
    start_edge "$v"
    for w in $WORKLOADS; do
      read -r rps pc p50 p99 opened peak non2xx errs < <(measure "$w" "$rep$v$RANDOM")
      echo -e "$rep\t$v\t$UPSTREAM_PROTO\t$w\t$rps\t$pc\t$p50\t$p99\t$opened\t$peak\t$non2xx\t$errs" | tee -a "$RAW"
    done
    stop_edge "rep$rep-$v"
  done
done
uptime >"$OUTDIR/load-after.txt"

# Medians per variant; with both variants, h2 / h1 for misses per second, per edge
# CPU-second and p99 (lower is better).
python3 - "$RAW" "$OUTDIR/table.md" "$VARIANTS" "$WORKLOADS" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
variants = sys.argv[3].split()
order = [w for w in sys.argv[4].split() if any(r["workload"] == w for r in rows)]
def med(v, w, col):
    x = [float(r[col]) for r in rows if r["variant"] == v and r["workload"] == w]
    return statistics.median(x) if x else None
proto = {v: sorted({r["upstream"] for r in rows if r["variant"] == v}) for v in variants}
name = {"h1": "HTTP/1.1 keep-alive", "h2": "--origin-http2"}
both = sorted(variants) == ["h1", "h2"]
head = ["workload"] + ["%s (upstream %s)" % (name[v], "/".join(proto[v])) for v in variants]
if both:
    head += ["h2 / h1 misses/s", "h2 / h1 per CPU-s", "h2 / h1 p99 (lower is better)"]
out = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
for w in order:
    cells = [w]
    for v in variants:
        c = "{:,.0f} req/s · **{:,.0f} per CPU-s** · p50 {:.1f} ms · p99 {:.1f} ms".format(
            med(v, w, "req_s"), med(v, w, "per_cpu_s"), med(v, w, "p50_ms"), med(v, w, "p99_ms"))
        c += " · {:.0f} upstream conns opened, {:.0f} at most at once".format(
            med(v, w, "conns_opened"), med(v, w, "conns_peak"))
        bad, errs = med(v, w, "non2xx"), med(v, w, "sock_errors")
        if bad:
            c += " · %d non-2xx" % bad
        if errs:
            c += " · %d socket errors" % errs
        cells.append(c)
    if both:
        for col in ("req_s", "per_cpu_s", "p99_ms"):
            a, b = med("h2", w, col), med("h1", w, col)
            cells.append("%.2fx" % (a / b) if a and b else "-")
    out.append("| " + " | ".join(cells) + " |")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
echo "command: REPS=$REPS DURATION=$DURATION WARMUP=$WARMUP CONNS=$CONNS KEYS=$KEYS VARIANTS=\"$VARIANTS\" WORKLOADS=\"$WORKLOADS\" bench/http2origin/run.sh $BIN"
echo "bench/http2origin: results in $OUTDIR (load: $(sed 's/.*load/load/' "$OUTDIR/load-before.txt") -> $(sed 's/.*load/load/' "$OUTDIR/load-after.txt"))"
