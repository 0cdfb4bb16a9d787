"""`mlcdn run`: the whole CDN on one machine: origin, model server, regional edges (with
their caches and Redis), the router and the delay relays that emulate distance; and
`mlcdn delay` on its own."""
import csv
import http.client
import json
import math
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.parse

import pytest

from mlcdn_proc import binary, mlcdn, request, wait_for  # noqa: F401

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "..", "fixtures", "models")



class Run:
    """`mlcdn run ARGS` with every stdout line kept; ready at "mlcdn run ready"."""

    def __init__(self, args, timeout):
        self.lines = []
        self.p = subprocess.Popen([binary(), "run"] + args, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                  bufsize=1)
        self.err = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        self.err_reader = threading.Thread(target=lambda: self.err.extend(self.p.stderr),
                                           daemon=True)
        self.err_reader.start()
        self.ready.wait(timeout)
        if not any("mlcdn run ready" in line for line in self.lines):
            self.p.kill()
            self.p.wait(10)
            raise AssertionError("mlcdn run did not become ready\n%s\n%s"
                                 % ("".join(self.lines), "".join(self.err)))
        self.out = "".join(self.lines)
        self.children = [int(x) for x in
                         re.search(r"^  children ([\d ]+)$", self.out, re.M).group(1).split()]
        self.regions = {}
        for m in re.finditer(r"^  region (\S+) +(\S+), *(\S+) +users (\S+) +edge (\S+) \(direct "
                             r"(\S+), admin (\S+), pid (\d+)\) +origin via (\S+)", self.out, re.M):
            self.regions[m.group(1)] = {
                "net": m.group(4), "edge": m.group(5), "direct": m.group(6),
                "admin": m.group(7), "pid": int(m.group(8)), "origin": m.group(9),
                "ip": re.match(r"http://([\d.]+):", m.group(5)).group(1)}
        m = re.search(r"router +dns 127\.0\.0\.1:(\d+) +(http://\S+)", self.out)
        self.dns_port, self.router = int(m.group(1)), m.group(2)

    def _read(self):
        for line in self.p.stdout:
            self.lines.append(line)
            if "mlcdn run ready" in line:
                self.ready.set()
        self.ready.set()

    def interrupt(self, timeout=30):
        """Ctrl-C: SIGINT to the run only; returns its exit status."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
        self.err_reader.join(10)  # the children write to the same pipe until they end
        return self.p.returncode


@pytest.fixture
def run_proc():
    runs = []

    def start(args, timeout=60):
        r = Run(args, timeout)
        runs.append(r)
        return r

    yield start
    for r in runs:
        r.interrupt()
        for pid in r.children:  # nothing a failed test leaves behind
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


GEO_IPS = os.path.join(HERE, "..", "fixtures", "geo", "test-ips.csv")


def haversine_km(lat1, lon1, lat2, lon2):
    r = math.pi / 180
    a = (math.sin((lat2 - lat1) * r / 2) ** 2
         + math.cos(lat1 * r) * math.cos(lat2 * r) * math.sin((lon2 - lon1) * r / 2) ** 2)
    return 2 * 6371.0088 * math.asin(math.sqrt(a))


def dig(port, subnet):
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "cdn.mlcdn.test", "+short",
                          "+subnet=" + subnet, "+time=2", "+tries=3"],
                         capture_output=True, text=True, timeout=20)
    return out.stdout.strip()


def gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def table(out):
    rows = {}
    for m in re.finditer(r"^(\S+) +(\d+) +(\d+) \| +([\d.]+) +([\d.]+) +([\d.]+) \| +([\d.]+) "
                         r"+([\d.]+) \|", out, re.M):
        rows[m.group(1)] = [float(x) for x in m.groups()[1:]]
    return rows


def added_rtt_ms(relayed, direct, configured):
    """The round trip a relay adds, in ms: the fastest small GET through it on a kept-alive
    connection less the fastest straight to the same server. Load only ever adds time, so
    sampling goes on (bounded) until the minimum is within 10 % of the configured value;
    the caller checks what came out. The first request of each connection (the handshake)
    is left out."""
    def conn(url):
        u = urllib.parse.urlsplit(url)
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        return c

    def once(c):
        t0 = time.monotonic()
        c.request("GET", "/index.txt", headers={"X-Origin-Latency": "0"})
        r = c.getresponse()
        r.read()
        assert r.status == 200
        return (time.monotonic() - t0) * 1000

    cr, cd = conn(relayed), conn(direct)
    once(cr), once(cd)
    best_r = best_d = float("inf")
    for k in range(60):
        best_r, best_d = min(best_r, once(cr)), min(best_d, once(cd))
        if k >= 2 and abs(best_r - best_d - configured) <= rtt_tolerance(configured):
            break
    cr.close(), cd.close()
    return best_r - best_d


def rtt_tolerance(configured):
    # 10 %, but not under a quarter millisecond: the two extra loopback hops through the
    # relay process cost about 0.1-0.2 ms, which a 2 ms path cannot hide in 10 %.
    return max(0.1 * configured, 0.25)


def test_run_four_regions_table_rtts_dns_and_stop(run_proc):
    r = run_proc(["--port-base", "0", "--models", MODELS, "--workload", "24", "--users", "4"])
    assert list(r.regions) == ["tokyo", "london", "virginia", "mumbai"]
    rows = table(r.out)
    assert sorted(rows) == sorted(r.regions)
    for name, (rtt_edge, rtt_origin, e50, e99, h50, o50, o99) in rows.items():
        # Cached content comes from the nearby edge; the origin is far and slow.
        assert h50 < o50, (name, rows[name])
        assert rtt_edge < rtt_origin
    assert re.search(r"^tiers .*L1 \d+%.*origin \d+%; predictions cached \d+%", r.out, re.M)
    assert re.search(r"^origin bandwidth: .* \d+% saved", r.out, re.M)
    assert re.search(r"^control plane: an invalidation .* reached 4 of 4 edges, .* p99 [\d.]+ ms",
                     r.out, re.M)
    assert "errors:" not in r.out

    # The emulated distances, measured here: each relay adds its configured round trip.
    configured = {}
    for m in re.finditer(r"^  (\S+) +user-edge +[\d.]+ ms \(configured +(\d+)\) +user-origin "
                         r"+[\d.]+ ms \(configured +(\d+)\) +edge-origin +[\d.]+ ms "
                         r"\(configured +(\d+)\)", r.out, re.M):
        configured[m.group(1)] = [int(x) for x in m.groups()[1:]]
    assert sorted(configured) == sorted(r.regions)
    assert configured["tokyo"][2] == 150  # the table's Tokyo - N. Virginia
    origin = re.search(r"^  origin +(http://\S+)", r.out, re.M).group(1)
    for i, (name, g) in enumerate(r.regions.items()):
        user_edge, user_origin, edge_origin = configured[name]
        port = origin.rsplit(":", 1)[1]
        for relayed, direct, want in (
                (g["edge"], g["direct"], user_edge),
                (g["origin"], origin, user_origin),
                ("http://127.4.0.%d:%s" % (i + 1, port), origin, edge_origin)):
            got = added_rtt_ms(relayed, direct, want)
            assert abs(got - want) <= rtt_tolerance(want), (name, relayed, got, want)

    # Every edge answers its users, with its own region; predictions too.
    for name, g in r.regions.items():
        resp = request("GET", g["edge"] + "/api/items/3.json")
        assert resp.status == 200 and resp.headers["X-Edge-Region"] == name
        pred = request("POST", g["edge"] + "/predict",
                       body=b'{"model":"logreg","features":[%s]}' % b",".join([b"0.5"] * 32),
                       headers={"Content-Type": "application/json"})
        assert pred.status == 200 and pred.json()["edge_region"] == name

    # The router sends each region's users to their region's edge.
    for name, g in r.regions.items():
        assert dig(r.dns_port, g["net"].replace("/16", "/24")) == g["ip"], name
    assert request("GET", r.router + "/route?ip=10.4.0.9").json()["edge"] == "mumbai"

    # The router's dashboard shows every edge.
    dash = re.search(r"^  (http://\S+/dashboard/)", r.out, re.M).group(1)
    assert request("GET", dash).status == 200
    # (it starts reading the edges' metrics once someone looks)
    wait_for(lambda: len(request("GET", dash + "data").json()["edges"]) == 4, timeout=20,
             what="the dashboard shows the four edges")

    # The printed commands work: `ctl stats` reads every edge, `ctl invalidate` reaches every
    # edge, a model version published to the store is served by every edge.
    stats = re.search(r"^  (\S+ ctl stats .*?)\s+#", r.out, re.M).group(1).split()
    out = subprocess.run([binary()] + stats[1:] + ["--interval", "0", "--json"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["edges"]) == 4
    inval = re.search(r"^  (\S+ ctl invalidate .*)$", r.out, re.M).group(1).split()
    out = subprocess.run([binary()] + inval[1:], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "4 of 4 edges acknowledged" in out.stdout, out
    publish = re.search(r"^  (\S+ ctl model publish logreg 2 .*)$", r.out, re.M).group(1).split()
    out = subprocess.run([binary()] + publish[1:], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr

    def logreg_version(g):
        models = request("GET", g["admin"] + "/admin/models").json()["models"]
        return [m["version"] for m in models if m["name"] == "logreg"]

    wait_for(lambda: all(logreg_version(g) == [2] for g in r.regions.values()), timeout=20,
             what="every edge serves logreg version 2")
    pred = request("POST", r.regions["mumbai"]["edge"] + "/predict",
                   body=b'{"model":"logreg","features":[%s]}' % b",".join([b"0.25"] * 32))
    assert pred.status == 200 and pred.json()["model_version"] == 2

    # Tokyo's edge stops: the run keeps going and Tokyo's users go elsewhere.
    tokyo = r.regions["tokyo"]
    os.kill(tokyo["pid"], signal.SIGTERM)
    others = {g["ip"] for n, g in r.regions.items() if n != "tokyo"}
    wait_for(lambda: dig(r.dns_port, "10.1.0.0/24") in others, timeout=20,
             what="Tokyo's users failed over")
    assert r.p.poll() is None

    # Ctrl-C stops every part: no process is left.
    assert r.interrupt() == 0
    assert "stopping the rest" not in "".join(r.err)
    assert "Sanitizer" not in "".join(r.err), "".join(r.err)[-3000:]
    wait_for(lambda: all(gone(pid) for pid in r.children), timeout=10, what="children gone")


def test_run_twenty_regions(run_proc):
    """Many small edges and the router (60 in bench/world): DNS for every region, the control
    plane reaching all, failover, idle costs."""
    r = run_proc(["--regions", "20", "--port-base", "0", "--idle-report", "1s",
                  "--geo-places", GEO_IPS], timeout=90)
    edges = request("GET", r.router + "/edges").json()["edges"]
    assert len(edges) == 20 and all(e["healthy"] for e in edges)
    assert [e["name"] for e in edges[:6]] == ["tokyo", "london", "virginia", "mumbai", "saopaulo",
                                              "sydney"]
    assert re.search(r"^round-trip times: 60 paths measured", r.out, re.M)
    # Real addresses of every continent (the city database places each /24 where the
    # fixture says): each gets the nearest of the 20 edges by great-circle distance.
    checked = 0
    with open(GEO_IPS) as fh:
        for row in csv.DictReader(fh):
            lat, lon = float(row["lat"]), float(row["lon"])
            d = sorted((haversine_km(lat, lon, e["latitude"], e["longitude"]), e["address"])
                       for e in edges)
            if d[1][0] - d[0][0] < 50:
                continue  # too close to call: load may tip it either way
            net = row["ip"].rsplit(".", 1)[0] + ".0/24"
            assert dig(r.dns_port, net) == d[0][1], (row, d[:2])
            checked += 1
    assert checked >= 50
    assert re.search(r"^control plane: an invalidation .* reached 20 of 20 edges", r.out, re.M)
    m = re.search(r"^idle edges: 20, RSS per edge median ([\d.]+) MiB .* CPU per edge mean "
                  r"([\d.]+)%", r.out, re.M)
    assert m and float(m.group(1)) > 0
    # Users of regions all over the generated world get their own region's edge.
    for e in edges[::7] + edges[-1:]:
        i = int(e["address"].split(".")[3])  # 127.1.0.<i+1>
        assert dig(r.dns_port, "10.%d.0.0/24" % i) == e["address"], e["name"]
    # One stops: its users move to another healthy edge.
    victim = r.regions["london"]
    os.kill(victim["pid"], signal.SIGKILL)
    wait_for(lambda: dig(r.dns_port, "10.2.0.0/24") not in ("", victim["ip"]), timeout=20,
             what="London's users failed over")
    wait_for(lambda: sum(e["healthy"] for e in request("GET", r.router + "/edges")
                         .json()["edges"]) == 19, timeout=20, what="router sees 19 healthy")
    assert r.interrupt() == 0
    wait_for(lambda: all(gone(pid) for pid in r.children), timeout=15, what="children gone")


def test_run_refuses_bad_flags():
    bad_csv = os.path.join(os.path.dirname(GEO_IPS), "README.md")
    for args, word in ((["--regions", "0"], "--regions"), (["--redis", "maybe"], "--redis"),
                       (["--latency", "soon"], "latency"), (["--bogus"], "bogus"),
                       (["--geo-places", "/nonexistent.csv"], "--geo-places"),
                       (["--geo-places", bad_csv], "--geo-places")):
        p = subprocess.run([binary(), "run"] + args, capture_output=True, text=True, timeout=10)
        assert p.returncode == 2 and word in p.stderr, (args, p.stderr)


def test_delay_adds_the_round_trip_and_keeps_the_bytes(mlcdn, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    body = os.urandom(3 << 20)
    (root / "big.bin").write_bytes(body)
    origin = mlcdn("origin", ["--listen", "127.0.0.1:0", "--root", str(root)])
    d = mlcdn("delay", ["--listen", "127.0.0.1:0", "--to", "%s:%d" % (origin.host, origin.port),
                        "--rtt", "80ms"], ready_pattern=r"delay listening on (?P<url>\S+)")
    port = d.port
    # One connection: the first request pays the handshake too, the next one round trip.
    s = socket.create_connection(("127.0.0.1", port))
    times = []
    for _ in range(2):
        t0 = time.monotonic()
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while b"\r\n\r\n" not in got:
            got += s.recv(65536)
        head, rest = got.split(b"\r\n\r\n", 1)
        n = int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1))
        while len(rest) < n:
            rest += s.recv(1 << 20)
        times.append(time.monotonic() - t0)
        assert rest == body
    s.close()
    assert times[0] >= 0.160 and times[1] >= 0.080
    bad = subprocess.run([binary(), "delay", "--relay", "127.0.0.1:1=nowhere"],
                         capture_output=True, text=True, timeout=10)
    assert bad.returncode != 0 and "--relay" in bad.stderr
