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
import socket
import subprocess
import threading

import pytest

from mlcdn_proc import binary, mlcdn, request, wait_for  # noqa: F401

TOKEN = "t0ken"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


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
