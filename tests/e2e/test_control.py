"""tests/e2e/test_control.py: the control plane's transports, `mlcdn ctl invalidate`.

Direct fan-out to the edges' admin URLs (retries, an edge that does not answer is named),
the router's POST /admin/invalidate and its log of the last invalidations, and the Redis
Streams transport (catch-up after an edge restart and after a Redis restart, the
conservative drop when the stream was trimmed past an edge's position). Real processes on
loopback: `mlcdn edge`, `mlcdn origin`, `mlcdn router`, redis-server; stand-in edges
(http.server) where a test needs an edge that misbehaves. Every process is stopped by PID.
"""
import http.server
import json
import os
import shutil
import signal
import subprocess
import threading

import pytest

from mlcdn_proc import free_port, binary, metric, mlcdn, request, wait_for  # noqa: F401

TOKEN = "t0ken"



def ctl(*args, token=TOKEN, timeout=60):
    env = dict(os.environ)
    env.pop("MLCDN_ADMIN_TOKEN", None)
    if token:
        env["MLCDN_ADMIN_TOKEN"] = token
    return subprocess.run([binary(), "ctl"] + list(args), capture_output=True, text=True,
                          env=env, timeout=timeout)


class FakeEdges:
    """Admin listeners that record every POST /admin/invalidate; `fail[i]` answers 503
    that many times first, `bodies[i]` keeps what each received."""

    def __init__(self, n):
        self.servers, self.bodies, self.fail, self.auth = [], [], [], []
        for i in range(n):
            self.bodies.append([])
            self.fail.append(0)
            self.auth.append([])
            self.servers.append(self._listen(i))

    def _listen(self, i):
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.auth[i].append(self.headers.get("Authorization"))
                if outer.fail[i] > 0:
                    outer.fail[i] -= 1
                    status, out = 503, b'{"error":"busy"}'
                else:
                    outer.bodies[i].append(json.loads(body))
                    status, out = 200, b'{"purged":1}'
                self.send_response(status)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *a):
                pass

        s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=s.serve_forever, daemon=True).start()
        return s

    def url(self, i):
        return "http://127.0.0.1:%d" % self.servers[i].server_address[1]

    def close(self):
        for s in self.servers:
            s.shutdown()
            s.server_close()


@pytest.fixture
def fakes():
    f = FakeEdges(3)
    yield f
    f.close()


def test_fanout_reaches_every_edge_with_one_body_and_token(fakes):
    urls = ",".join(fakes.url(i) for i in range(3))
    r = ctl("invalidate", "--edges", urls, "--url", "/a", "--url", "/b", "--prefix", "/m/",
            "--pattern", "/x/*.bin", "--tag", "t1", "--model", "ranker", "--soft", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["acknowledged"] == 3 and out["total"] == 3
    assert out["propagation_ms"] == max(e["ms"] for e in out["edges"])
    for i in range(3):
        (b,) = fakes.bodies[i]
        assert b == {"urls": ["/a", "/b"], "prefix": "/m/", "patterns": ["/x/*.bin"],
                     "tags": ["t1"], "model": "ranker", "soft": True, "id": out["id"]}
        assert fakes.auth[i] == ["Bearer " + TOKEN]


def test_fanout_retries_a_busy_edge_and_names_one_that_is_down(fakes):
    fakes.fail[1] = 2  # two 503s, then it applies: within the default 2 retries
    dead = "http://127.0.0.1:%d" % free_port()
    r = ctl("invalidate", "--edges", ",".join([fakes.url(0), fakes.url(1), dead]),
            "--prefix", "/")
    assert r.returncode == 1
    assert len(fakes.bodies[1]) == 1 and len(fakes.bodies[0]) == 1
    assert ("edge %s did not acknowledge" % dead) in r.stderr
    assert fakes.url(0) not in r.stderr and fakes.url(1) not in r.stderr
    assert "2 of 3 edges acknowledged" in r.stdout
    fakes.fail[0] = 5  # more 503s than attempts: named with the status
    r = ctl("invalidate", "--edges", fakes.url(0), "--url", "/a", "--retries", "1")
    assert r.returncode == 1 and "HTTP 503" in r.stderr and fakes.url(0) in r.stderr


@pytest.mark.parametrize("args,flag", [
    (["--url", "/a"], "--router"),
    (["--edges", "http://127.0.0.1:1", "--redis", "redis://127.0.0.1", "--url", "/a"], "--redis"),
    (["--edges", "127.0.0.1:1", "--url", "/a"], "--edges"),
    (["--edges", "http://127.0.0.1:1,", "--url", "/a"], "--edges"),
    (["--redis", "redis://h:0", "--url", "/a"], "--redis"),
    (["--router", "ftp://x", "--url", "/a"], "--router"),
    (["--edges", "http://127.0.0.1:1", "--prefix", "models/"], "--prefix"),
    (["--edges", "http://127.0.0.1:1"], "--url"),
    (["--edges", "http://127.0.0.1:1", "--url", "/a", "--timeout", "soon"], "--timeout"),
    (["--edges", "http://127.0.0.1:1", "--url", "/a", "--retries", "-1"], "--retries"),
    (["--edges", "http://127.0.0.1:1", "--url", "/a", "--bogus"], "--bogus"),
])
def test_bad_flags_are_named(args, flag):
    r = ctl("invalidate", *args)
    assert r.returncode == 2, r.stderr
    assert flag in r.stderr


def test_ctl_help_lists_commands_and_flags():
    r = ctl("--help")
    assert r.returncode == 0
    for word in ["invalidate", "--router", "--edges", "--redis", "--soft", "--tag", "--json"]:
        assert word in r.stdout
    assert ctl("nope").returncode == 2


# ---------------------------------------------------------------- the router's fan-out

@pytest.fixture
def router_for(tmp_path):
    """router_for(names_urls) starts `mlcdn router --admin` knowing those edges (their admin
    URLs, as the health URL's base); returns (Router, admin_url)."""
    import re
    import router_util
    started = []

    def start(edges, extra=()):
        geo = str(tmp_path / "geo.mmdb")
        router_util.make_test_mmdb(geo)
        specs = ["%s=51.5,-0.12,127.0.0.1,%s/health" % (n, u) for n, u in edges]
        r = router_util.Router("cdn.test", geo, specs,
                               extra=["--admin", "127.0.0.1:0", "--admin-token", TOKEN,
                                      "--fanout-timeout", "1s"] + list(extra))
        started.append(r)
        port = int(re.search(r"admin_port=(\d+)", r.text()).group(1))
        return r, "http://127.0.0.1:%d" % port

    yield start
    for r in started:
        r.cleanup()


def test_router_fans_out_to_every_edge_and_logs_it(fakes, router_for):
    dead = "http://127.0.0.1:%d" % free_port()
    r, admin = router_for([("e0", fakes.url(0)), ("e1", fakes.url(1)), ("e2", fakes.url(2))])
    fakes.fail[2] = 1  # one 503, then applied: the router retries
    res = ctl("invalidate", "--router", admin, "--tag", "ranker", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["acknowledged"] == 3
    assert sorted(e["edge"].split()[0] for e in out["edges"]) == ["e0", "e1", "e2"]
    for i in range(3):
        assert fakes.bodies[i] == [{"tags": ["ranker"], "id": out["id"]}]
    log = request("GET", admin + "/admin/invalidations",
                  headers={"Authorization": "Bearer " + TOKEN}).json()
    (entry,) = log["invalidations"]
    assert entry["id"] == out["id"] and entry["acknowledged"] == 3
    assert entry["request"] == {"tags": ["ranker"], "id": out["id"]}
    assert {e["edge"]: e["attempts"] for e in entry["edges"]} == {"e0": 1, "e1": 1, "e2": 2}
    r.cleanup()

    # An edge that does not answer is named, and the status says so.
    r, admin = router_for([("e0", fakes.url(0)), ("gone", dead)])
    res = ctl("invalidate", "--router", admin, "--url", "/a", "--retries", "0")
    assert res.returncode == 1
    assert "edge gone (%s) did not acknowledge" % dead in res.stderr
    assert "e0" not in res.stderr
    st = request("POST", admin + "/admin/invalidate", body=b'{"urls":["/b"]}',
                 headers={"Authorization": "Bearer " + TOKEN})
    assert st.status == 502 and st.json()["acknowledged"] == 1 and st.json()["id"]


def test_router_admin_needs_the_token_and_a_json_object(fakes, router_for):
    r, admin = router_for([("e0", fakes.url(0))])
    assert request("POST", admin + "/admin/invalidate", body=b'{}').status == 401
    assert request("GET", admin + "/admin/invalidations",
                   headers={"Authorization": "Bearer nope"}).status == 401
    bad = request("POST", admin + "/admin/invalidate", body=b'["/a"]',
                  headers={"Authorization": "Bearer " + TOKEN})
    assert bad.status == 400 and "JSON object" in bad.json()["error"]
    assert fakes.bodies[0] == []
    assert ctl("invalidate", "--router", admin, "--url", "/a", token="nope").returncode == 1


# ---------------------------------------------------------------- the Redis Streams transport

EDGE_READY = r"listening on (?P<url>\S+) admin=(?P<admin>\S+) region=\S+ name=(?P<name>\S+)"


class Redis:
    """redis-server on a free port, its data in an append-only file so that a restart
    keeps the stream (a restart without it is a lost stream: a gap, tested apart)."""

    def __init__(self, d):
        self.exe = shutil.which("redis-server")
        self.port, self.dir, self.p = free_port(), str(d), None
        self.url = "redis://127.0.0.1:%d" % self.port
        self.start()

    def start(self):
        self.p = subprocess.Popen([self.exe, "--port", str(self.port), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                                   "--dir", self.dir], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        wait_for(lambda: self.cli("PING") == "PONG", what="redis-server")

    def stop(self):
        if self.p and self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
            self.p.wait(10)

    def cli(self, *args, stdin=None):
        return subprocess.run(["redis-cli", "-p", str(self.port)] + list(args), input=stdin,
                              capture_output=True, text=True).stdout.strip()

    def xadd(self, ops):
        """Adds invalidations [(id, body)] in one pipe, as ctl would (kind, body, id, t)."""
        lines = "".join("XADD mlcdn:control * kind invalidate body %s id %s t 0\n"
                        % (json.dumps(json.dumps(b)), i) for i, b in ops)
        self.cli(stdin=lines)

    def acked(self, edge):
        """The operation ids edge acknowledged with status 200."""
        out = self.cli("--json", "XRANGE", "mlcdn:control:acks", "-", "+") or "[]"
        ids = set()
        for _, f in json.loads(out):
            d = dict(zip(f[0::2], f[1::2]))
            if d["edge"] == edge and d["status"] == "200":
                ids.add(d["op"])
        return ids


@pytest.fixture
def site(mlcdn, tmp_path):
    """An origin with files /k0../k19 and /keep; s.edge(i) starts edge e<i> on the control
    stream with its disk tier (its cache and its stream position outlive a restart)."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed (scripts/install-deps.sh installs it)")
    root = tmp_path / "root"
    root.mkdir()
    for name in ["keep"] + ["k%d" % i for i in range(20)]:
        (root / name).write_bytes(name.encode() * 50)

    class Site:
        pass

    s = Site()
    s.redis = Redis(tmp_path)
    s.origin = mlcdn("origin", ["--listen", "127.0.0.1:0", "--root", str(root)])

    def edge(i, *extra):
        e = mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--origin",
                           s.origin.url, "--region", "t", "--name", "e%d" % i, "--admin-token",
                           TOKEN, "--disk-dir", str(tmp_path / ("l2-%d" % i)), "--disk", "16M",
                           "--drain-time", "0", "--control-redis", s.redis.url] + list(extra),
                  ready_pattern=EDGE_READY)
        e.admin = e.ready["admin"]
        # Registered on the stream once it reads it: from then on ctl waits for it.
        wait_for(lambda: s.redis.cli("HEXISTS", "mlcdn:control:edges", "e%d" % i) == "1",
                 what="e%d on the stream" % i)
        return e

    s.edge = edge
    yield s
    s.redis.stop()


def cached(e, path):
    return e.get(path).headers["X-Cache"] == "HIT"


def warm(e, paths):
    for p in paths:
        e.get(p)
    wait_for(lambda: all(cached(e, p) for p in paths), what="cached")


def test_stream_propagates_and_an_edge_restarted_mid_stream_misses_none(site, router_for):
    edges = [site.edge(i) for i in range(3)]
    for e in edges:
        warm(e, ["/k0", "/keep"])
    res = ctl("invalidate", "--redis", site.redis.url, "--url", "/k0", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["acknowledged"] == 3 and sorted(x["edge"] for x in out["edges"]) == ["e0", "e1", "e2"]
    assert all(x["answer"]["purged"] >= 1 for x in out["edges"]), out
    assert not any(cached(e, "/k0") for e in edges) and all(cached(e, "/keep") for e in edges)
    # The direct transport and the router's fan-out reach the same edges.
    for e in edges:
        warm(e, ["/k0"])
    res = ctl("invalidate", "--edges", ",".join(e.admin for e in edges), "--url", "/k0")
    assert res.returncode == 0 and "3 of 3 edges acknowledged" in res.stdout, res.stderr
    assert not any(cached(e, "/k0") for e in edges)
    for e in edges:
        warm(e, ["/k0"])
    _, admin = router_for([("e%d" % i, e.admin) for i, e in enumerate(edges)])
    res = ctl("invalidate", "--router", admin, "--url", "/k0")
    assert res.returncode == 0 and "3 of 3 edges acknowledged" in res.stdout, res.stderr
    assert not any(cached(e, "/k0") for e in edges)

    # e2 is killed in the middle of 20 invalidations and restarted: it applies every one.
    paths = ["/k%d" % i for i in range(1, 20)]
    warm(edges[2], paths)
    site.redis.xadd([("op%d" % i, {"urls": [paths[i]]}) for i in range(10)])
    edges[2].popen.send_signal(signal.SIGKILL)
    edges[2].stop()
    site.redis.xadd([("op%d" % i, {"urls": [paths[i]]}) for i in range(10, len(paths))])
    edges[2] = site.edge(2)
    every = {"op%d" % i for i in range(len(paths))}
    for i in range(3):
        wait_for(lambda: every <= site.redis.acked("e%d" % i), what="e%d's acknowledgements" % i)
    assert not any(cached(edges[2], p) for p in paths)


def test_stream_survives_redis_restart_and_names_a_silent_edge(site):
    edges = [site.edge(i) for i in range(3)]
    warm(edges[0], ["/keep"])
    site.redis.stop()
    assert cached(edges[0], "/keep")  # Redis down: the edges serve on
    site.redis.start()
    res = ctl("invalidate", "--redis", site.redis.url, "--url", "/keep", "--timeout", "10s")
    assert res.returncode == 0 and "3 of 3 edges acknowledged" in res.stdout, res.stderr
    assert not cached(edges[0], "/keep")
    # An edge that does not acknowledge in time is named; it catches up when it can.
    os.kill(edges[1].pid, signal.SIGSTOP)
    try:
        res = ctl("invalidate", "--redis", site.redis.url, "--url", "/k1", "--timeout", "500ms",
                  "--json")
    finally:
        os.kill(edges[1].pid, signal.SIGCONT)
    assert res.returncode == 1
    assert "edge e1 did not acknowledge: no acknowledgement on the stream" in res.stderr
    assert json.loads(res.stdout)["acknowledged"] == 2
    op = json.loads(res.stdout)["id"]
    wait_for(lambda: op in site.redis.acked("e1"), what="e1 catching up")


def test_stream_trimmed_past_an_edge_bans_everything_it_held(site, tmp_path):
    # Both edges serve a model: a cached prediction is no tier's object, and must go too.
    models = tmp_path / "models"
    (models / "mlp" / "1").mkdir(parents=True)
    os.symlink(os.path.join(os.path.dirname(__file__), "..", "fixtures", "models", "mlp",
                            "model.onnx"), models / "mlp" / "1" / "model.onnx")
    flags = ("--models", str(models), "--models-poll", "0")
    edges = [site.edge(i, *flags) for i in range(2)]
    x = json.dumps({"model": "mlp", "features": [0.5] * 64})
    other_host = {"Host": "assets.example"}
    for e in edges:
        warm(e, ["/keep", "/k1"])
        e.get("/k2", headers=other_host)
        assert e.get("/k2", headers=other_host).headers["X-Cache"] == "HIT"
        e.request("POST", "/predict", body=x)
        assert e.request("POST", "/predict", body=x).json()["cached"] is True
    assert ctl("invalidate", "--redis", site.redis.url, "--url", "/k0").returncode == 0
    # e1 is cut off (stopped, its connection closed) while entries come and are trimmed.
    os.kill(edges[1].pid, signal.SIGSTOP)
    try:
        for line in site.redis.cli("CLIENT", "LIST").splitlines():
            if "name=mlcdn-control-e1 " in line:
                site.redis.cli("CLIENT", "KILL", "ADDR", line.split("addr=")[1].split()[0])
        site.redis.xadd([("lost%d" % i, {"urls": ["/k1"]}) for i in range(3)])
        wait_for(lambda: "lost2" in site.redis.acked("e0"), what="e0 applying them")
        site.redis.cli("XTRIM", "mlcdn:control", "MAXLEN", "1")
    finally:
        os.kill(edges[1].pid, signal.SIGCONT)
    wait_for(lambda: "lost2" in site.redis.acked("e1"), what="e1 reading after the gap")
    # e1 cannot know what the trimmed entries named: nothing it held is served.
    assert metric(edges[1].admin, "mlcdn_control_gaps_total") == 1
    assert not cached(edges[1], "/keep") and not cached(edges[1], "/k1")
    assert edges[1].get("/k2", headers=other_host).headers["X-Cache"] != "HIT"
    assert edges[1].request("POST", "/predict", body=x).json()["cached"] is False
    assert metric(edges[1].admin, 'mlcdn_edge_invalidations_total{kind="all"}') == 1
    # Refetched after the gap, they are served from the cache again.
    assert cached(edges[1], "/keep")
    assert edges[1].request("POST", "/predict", body=x).json()["cached"] is True
    assert metric(edges[0].admin, "mlcdn_control_gaps_total") == 0
    assert cached(edges[0], "/keep") and not cached(edges[0], "/k1")
    assert edges[0].get("/k2", headers=other_host).headers["X-Cache"] == "HIT"
    assert edges[0].request("POST", "/predict", body=x).json()["cached"] is True
