#!/usr/bin/python3
"""bench/world/world.py MLCDN_BIN GEO_CSV: many regions on one machine.

Starts `mlcdn run --regions REGIONS --port-base 0 --geo-places GEO_CSV --idle-report 10s`
(no workload: small idle edges), then measures:
  - DNS: every region's users (dig +subnet=10.N.0.0/24) get their region's edge, and every
    address of GEO_CSV gets the nearest edge by great-circle distance (addresses whose two
    nearest edges are within 50 km of each other are left out: too close to call);
  - the control plane: N_INVAL invalidations with `mlcdn ctl invalidate --router`, one after
    the other; propagation = the slowest edge's acknowledgement, as ctl reports it; p50/p99
    over the invalidations, and p50/p99 of every single edge's acknowledgement;
  - fail-over: STOP edges spread over the world are stopped (POST /admin/drain; the run
    keeps going), and the time until the router's DNS sends each one's users to another
    healthy edge is measured (health checks every second, two failures to go down);
  - the run's own figures: idle RSS and CPU per edge, emulated round trips.
Then Ctrl-C (SIGINT) and every part of the run must be gone. Loopback only.
Env: REGIONS (60), N_INVAL (50), STOP (6).
"""
import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

TOKEN = "demo-token"


def get(url, method="GET", data=None, headers=None):
    req = urllib.request.Request(url, method=method, data=data, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


def dig(port, subnet):
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "cdn.mlcdn.test", "+short",
                          "+subnet=" + subnet, "+time=2", "+tries=2"],
                         capture_output=True, text=True, timeout=20)
    return out.stdout.strip()


def haversine_km(lat1, lon1, lat2, lon2):
    r = math.pi / 180
    a = (math.sin((lat2 - lat1) * r / 2) ** 2
         + math.cos(lat1 * r) * math.cos(lat2 * r) * math.sin((lon2 - lon1) * r / 2) ** 2)
    return 2 * 6371.0088 * math.asin(math.sqrt(a))


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p * (len(v) - 1) + 0.5))] if v else float("nan")


def main():
    binary, geo_csv = sys.argv[1], sys.argv[2]
    regions = int(os.environ.get("REGIONS", "60"))
    n_inval = int(os.environ.get("N_INVAL", "50"))
    n_stop = int(os.environ.get("STOP", "6"))
    t0 = time.time()
    p = subprocess.Popen([binary, "run", "--regions", str(regions), "--port-base", "0",
                          "--geo-places", geo_csv, "--idle-report", "10s"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    lines, err = [], []
    ready = threading.Event()

    def read():
        for line in p.stdout:
            lines.append(line)
            if "mlcdn run ready" in line:
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    reader = threading.Thread(target=lambda: err.extend(p.stderr), daemon=True)
    reader.start()
    ready.wait(300)
    out = "".join(lines)
    children = []
    try:
        if "mlcdn run ready" not in out:
            raise SystemExit("bench/world: mlcdn run did not become ready\n%s\n%s"
                             % (out[-3000:], "".join(err)[-3000:]))
        up_s = time.time() - t0
        children = [int(x) for x in re.search(r"^  children ([\d ]+)$", out, re.M).group(1).split()]
        m = re.search(r"router +dns 127\.0\.0\.1:(\d+) +(http://\S+) +admin (http://\S+)", out)
        dns_port, router, radm = int(m.group(1)), m.group(2), m.group(3)
        edges = json.loads(get(router + "/edges"))["edges"]
        healthy = sum(e["healthy"] for e in edges)

        # DNS for every region's users, and for the real addresses.
        wrong = []
        for i, e in enumerate(edges):
            got = dig(dns_port, "10.%d.0.0/24" % (i + 1))
            if got != e["address"]:
                wrong.append((e["name"], got))
        geo_ok = geo_checked = geo_close = 0
        with open(geo_csv) as fh:
            for row in csv.DictReader(fh):
                lat, lon = float(row["lat"]), float(row["lon"])
                d = sorted((haversine_km(lat, lon, e["latitude"], e["longitude"]), e["address"],
                            e["name"]) for e in edges)
                if d[1][0] - d[0][0] < 50:
                    geo_close += 1
                    continue
                geo_checked += 1
                got = dig(dns_port, row["ip"].rsplit(".", 1)[0] + ".0/24")
                if got == d[0][1]:
                    geo_ok += 1
                else:
                    wrong.append((row["ip"] + " " + row["city"], got, d[0][2]))

        # The control plane, through the router.
        prop, per_edge, unacked = [], [], 0
        for k in range(n_inval):
            r = subprocess.run([binary, "ctl", "invalidate", "--router", radm, "--token", TOKEN,
                                "--url", "/bench/world/%d" % k, "--json"],
                               capture_output=True, text=True, timeout=60)
            j = json.loads(r.stdout)
            prop.append(j["propagation_ms"])
            for e in j["edges"]:
                if e["acknowledged"]:
                    per_edge.append(e["ms"])
                else:
                    unacked += 1

        # Fail-over: stop edges spread over the list; time until their users move.
        victims = edges[::max(1, len(edges) // n_stop)][:n_stop]
        stopped_at = {}
        for e in victims:
            admin = e["health_url"].rsplit("/health", 1)[0]
            get(admin + "/admin/drain", method="POST", data=b"",
                headers={"Authorization": "Bearer " + TOKEN})
            stopped_at[e["name"]] = time.time()
        moved = {}
        deadline = time.time() + 60
        while len(moved) < len(victims) and time.time() < deadline:
            for e in victims:
                if e["name"] in moved:
                    continue
                i = edges.index(e)
                got = dig(dns_port, "10.%d.0.0/24" % (i + 1))
                if got and got != e["address"]:
                    moved[e["name"]] = time.time() - stopped_at[e["name"]]
            time.sleep(0.1)
        after = json.loads(get(router + "/edges"))["edges"]
        still = sum(e["healthy"] for e in after)

        idle = re.search(r"^idle edges: .*$", out, re.M)
        rtt = re.search(r"^round-trip times: .*$", out, re.M)
        print("%d regions: ready in %.1f s, %d of %d edges healthy"
              % (regions, up_s, healthy, len(edges)))
        print(idle.group(0) if idle else "idle edges: not reported")
        print(rtt.group(0) if rtt else "round-trip times: not reported")
        print("DNS: %d of %d regions' users sent to their own region's edge; real addresses: "
              "%d of %d sent to the nearest edge (%d too close to call)"
              % (len(edges) - sum(1 for w in wrong if len(w) == 2), len(edges), geo_ok,
                 geo_checked, geo_close))
        for w in wrong[:10]:
            print("  wrong:", w)
        print("control plane: %d invalidations through the router to %d edges: propagation "
              "(slowest edge) p50 %.1f ms, p99 %.1f ms, max %.1f ms; one edge's acknowledgement "
              "p50 %.1f ms, p99 %.1f ms; %d not acknowledged"
              % (n_inval, len(edges), pct(prop, .5), pct(prop, .99), max(prop), pct(per_edge, .5),
                 pct(per_edge, .99), unacked))
        print("fail-over: %d edges stopped, %d had their users moved to another edge, in %s s "
              "(max %.1f s); the router then saw %d healthy"
              % (len(victims), len(moved),
                 ", ".join("%.1f" % v for v in sorted(moved.values())),
                 max(moved.values()) if moved else float("nan"), still))
        ok = not wrong and len(moved) == len(victims) and unacked == 0 and \
            still == len(edges) - len(victims)
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        reader.join(10)
        left = []
        for pid in children:
            try:
                os.kill(pid, 0)
                left.append(pid)
            except ProcessLookupError:
                pass
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    print("stopped with SIGINT: exit status %d, %d parts left running" % (p.returncode, len(left)))
    sys.exit(0 if ok and p.returncode == 0 and not left else 1)


if __name__ == "__main__":
    main()
