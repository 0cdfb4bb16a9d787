"""Shared helpers for the router's end-to-end tests (tests/e2e/test_router*.py).

* HealthEdges: stand-in edge /health endpoints (one in-process HTTP listener per edge on a
  random loopback port) whose answer each test controls: ok / draining / HTTP 503 / slow /
  gone (listener closed), load, hit ratio.
* Router: starts `$MLCDN_BIN router ...`, reads the bound ports from its "router ready" log
  line, and stops it by PID.
* dig(): runs the real `dig` and parses status, flags, answers and the ECS option.
* SIX_DCS / make_test_mmdb(): six regions (as tests/fixtures/geo/README.md) and a small test
  database generated with mmdb_writer.py, one network per region plus loopback.
"""
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mmdb_writer  # noqa: E402

from mlcdn_proc import free_port  # noqa: E402,F401  (the tests take it from here too)

SIX_DCS = [  # name, lat, lon, answer address
    ("tokyo", 35.68, 139.69, "127.0.1.1"),
    ("london", 51.51, -0.13, "127.0.1.2"),
    ("nvirginia", 38.9, -77.4, "127.0.1.3"),
    ("mumbai", 19.08, 72.88, "127.0.1.4"),
    ("saopaulo", -23.55, -46.63, "127.0.1.5"),
    ("sydney", -33.87, 151.21, "127.0.1.6"),
]
ADDR_DC = {a: n for n, _, _, a in SIX_DCS}

# Client networks of the generated database: (network, lat, lon, country, city, nearest DC)
TEST_NETS = [
    ("49.165.0.0/16", 37.5985, 126.9783, "KR", "Seoul", "tokyo"),
    ("81.2.0.0/16", 48.85, 2.35, "FR", "Paris", "london"),
    ("24.12.0.0/16", 41.88, -87.63, "US", "Chicago", "nvirginia"),
    ("101.100.0.0/16", 1.35, 103.82, "SG", "Singapore", "mumbai"),
    ("181.0.0.0/16", -34.6, -58.38, "AR", "Buenos Aires", "saopaulo"),
    ("203.86.0.0/16", -36.85, 174.76, "NZ", "Auckland", "sydney"),
    ("2001:db8:10::/48", 35.0, 135.75, "JP", "Kyoto", "tokyo"),
]



def make_test_mmdb(path, layout="city", loopback=(51.5, -0.12, "GB", "London")):
    """Writes the test database; 127.0.0.0/8 (resolvers without ECS) sits in `loopback`."""
    w = mmdb_writer.Writer(6, "GeoLite2-City" if layout == "city" else "city ipv6", layout)
    for net, lat, lon, cc, city, _ in TEST_NETS:
        w.add(net, lat, lon, cc, city)
    if loopback:
        w.add("127.0.0.0/8", loopback[0], loopback[1], loopback[2], loopback[3])
    w.add("5.0.0.0/8", None, None, "DE")  # country only: the country's location
    w.write(path)
    return path


class _EdgeState:
    def __init__(self, name):
        self.name = name
        self.mode = "ok"      # ok | draining | 503 | slow | badjson
        self.load = 0.2
        self.hit = 0.8
        self.delay = 0.0      # seconds before answering in "slow" mode
        self.requests = 0
        self.gone = False


class HealthEdges:
    """One /health listener per edge name, controlled through set()."""

    def __init__(self, names):
        self.state = {}
        self.servers = {}
        self.ports = {}
        for n in names:
            self.state[n] = _EdgeState(n)
            self._listen(n, 0)

    def _listen(self, name, port):
        st = self.state[name]

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                if st.gone:  # a keep-alive connection that outlived kill(): drop it
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                st.requests += 1
                if st.mode == "slow":
                    time.sleep(st.delay)
                if st.mode == "503":
                    body, code = b"down\n", 503
                elif st.mode == "badjson":
                    body, code = b"{not json", 200
                else:
                    body = json.dumps({"status": "draining" if st.mode == "draining" else "ok",
                                       "region": name, "load": st.load,
                                       "hit_ratio": st.hit, "uptime_s": 1}).encode()
                    code = 200
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

            def log_message(self, *a):
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
        srv.daemon_threads = True
        srv.allow_reuse_address = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.servers[name] = srv
        self.ports[name] = srv.server_address[1]

    def url(self, name):
        return "http://127.0.0.1:%d/health" % self.ports[name]

    def set(self, name, **kw):
        for k, v in kw.items():
            setattr(self.state[name], k, v)

    def kill(self, name):
        """The edge is gone: its listener closes (connections are refused)."""
        self.state[name].gone = True
        srv = self.servers.pop(name)
        srv.shutdown()
        srv.server_close()

    def revive(self, name):
        self.state[name].gone = False
        self._listen(name, self.ports[name])

    def close(self):
        for srv in list(self.servers.values()):
            srv.shutdown()
            srv.server_close()
        self.servers.clear()


def mlcdn_bin():
    b = os.environ.get("MLCDN_BIN")
    if not b:
        root = os.path.dirname(os.path.dirname(HERE))
        b = os.path.join(root, "build", "mlcdn")
    return b


class Router:
    """`mlcdn router` on random ports; stop() ends it by PID."""

    def __init__(self, zone, geoip, edges, extra=(), timeout=10, nofile=None):
        """nofile=N runs it with RLIMIT_NOFILE N:N (as `prlimit --nofile=N:N` would)."""
        args = [mlcdn_bin(), "router", "--zone", zone, "--dns", "127.0.0.1:0",
                "--http", "127.0.0.1:0", "--log-level", "info"]
        for g in (geoip if isinstance(geoip, (list, tuple)) else [geoip]):
            args += ["--geoip", g]
        for e in edges:
            args += ["--edge", e]
        args += list(extra)
        self.args = args
        self.log = tempfile.NamedTemporaryFile(prefix="mlcdn-router-", suffix=".log",
                                               delete=False)

        def limit():
            import resource
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=limit if nofile else None)
        self.dns_port = self.http_port = None
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = re.search(r'msg="router ready".*dns_port=(\d+) http_port=(\d+)', self.text())
            if m:
                self.dns_port, self.http_port = int(m.group(1)), int(m.group(2))
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if self.dns_port is None:
            self.stop()
            raise RuntimeError("router did not start: %s\n%s" % (" ".join(args), self.text()))

    def text(self):
        with open(self.log.name, errors="replace") as fh:
            return fh.read()

    def http(self, path):
        import urllib.request
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.http_port, path),
                                    timeout=5) as r:
            return r.status, r.read().decode()

    def json(self, path):
        return json.loads(self.http(path)[1])

    def stop(self):
        """SIGTERM, then SIGKILL after 5 s; returns the exit status."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()
        return self.proc.returncode

    def cleanup(self):
        self.stop()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass


def edge_specs(health, dcs=SIX_DCS, capacity=None):
    out = []
    for n, lat, lon, addr in dcs:
        s = "%s=%s,%s,%s,%s" % (n, lat, lon, addr, health.url(n))
        if capacity and n in capacity:
            s += ",%s" % capacity[n]
        out.append(s)
    return out


class DigResult:
    def __init__(self, text):
        self.text = text
        m = re.search(r"status: (\w+)", text)
        self.status = m.group(1) if m else None
        m = re.search(r";; flags: ([a-z ]+);", text)
        self.flags = m.group(1).split() if m else []
        m = re.search(r";; ANSWER SECTION:\n(.*?)(?:\n\n|\Z)", text, re.S)
        self.answers = re.findall(r"^(\S+)\s+(\d+)\s+IN\s+(A|AAAA|SOA|NS)\s+(.+)$",
                                  m.group(1) if m else "", re.M)
        m = re.search(r"CLIENT-SUBNET: ([0-9a-fA-F:.]+)/(\d+)/(\d+)", text)
        self.ecs = (m.group(1), int(m.group(2)), int(m.group(3))) if m else None
        m = re.search(r"udp: (\d+)", text)
        self.udp = int(m.group(1)) if m else None
        m = re.search(r"AUTHORITY: (\d+)", text)
        self.authority = int(m.group(1)) if m else 0

    def addrs(self, rtype=None):
        return [a[3] for a in self.answers if rtype is None or a[2] == rtype]


def dig(port, name, rtype="A", *opts):
    # Three tries of 3 s: a loaded CI machine can hold one UDP answer past a single try.
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+tries=3", "+time=3",
                          name, rtype] + list(opts), capture_output=True, text=True, timeout=20)
    return DigResult(out.stdout)


def wait_for(pred, timeout, step=0.05):
    """Polls pred() until it is true; returns the seconds it took, or None on timeout."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        time.sleep(step)
    return None
