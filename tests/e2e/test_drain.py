"""Graceful drain: SIGTERM (or POST /admin/drain) keeps the edge's listeners open for
--drain-time while /health says "draining" (503) and responses say Connection: close, so a
router steers clients away before the edge stops; a second signal stops at once.
docs/operations.md "Drain"."""
import os
import signal
import socket
import threading
import time

from mlcdn_proc import mlcdn, request, wait_for  # noqa: F401  (mlcdn is a fixture)
from router_util import Router, make_test_mmdb
from router_util import wait_for as poll

EDGE_READY = r"listening on (?P<url>\S+) admin=(?P<admin>\S+)"
TOKEN = "drain-token"


def start_origin(mlcdn, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "f.txt").write_text("payload")
    return mlcdn("origin", ["--listen", "127.0.0.1:0", "--root", str(root)])


def start_edge(mlcdn, origin, *extra):
    return mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                          "--origin", origin.url, "--admin-token", TOKEN] + list(extra),
                 ready_pattern=EDGE_READY)


def test_sigterm_drains_then_stops(mlcdn, tmp_path):
    o = start_origin(mlcdn, tmp_path)
    e = start_edge(mlcdn, o, "--drain-time", "2s")
    admin = e.ready["admin"]
    assert request("GET", admin + "/health").json()["status"] == "ok"
    # a request in flight when the signal comes, and a keep-alive connection
    result = {}
    t = threading.Thread(target=lambda: result.update(
        r=request("GET", e.url + "/f.txt", headers={"X-Origin-Latency": "800"})))
    t.start()
    ka = socket.create_connection((e.host, e.port), timeout=10)
    wait_for(lambda: o.get("/__stats").json()["requests"].get("/f.txt") == 1, 10,
             "the slow request to reach the origin")
    os.kill(e.pid, signal.SIGTERM)
    wait_for(lambda: request("GET", admin + "/health").status == 503, 10, "503 on /health")
    h = request("GET", admin + "/health")
    assert h.json()["status"] == "draining"
    # still serving, but asking keep-alive clients to go
    ka.sendall(b"GET /f.txt HTTP/1.1\r\nHost: t\r\n\r\n")
    got = b""
    while True:
        d = ka.recv(65536)
        if not d:
            break
        got += d
    ka.close()
    assert got.startswith(b"HTTP/1.1 200") and b"\r\nConnection: close\r\n" in got
    assert got.endswith(b"payload")
    t.join(10)
    assert result["r"].status == 200 and result["r"].body == b"payload"
    assert e.popen.wait(15) == 0
    assert "edge draining" in e.log() and "reason=SIGTERM" in e.log()


def test_admin_drain_needs_the_token(mlcdn, tmp_path):
    o = start_origin(mlcdn, tmp_path)
    e = start_edge(mlcdn, o, "--drain-time", "30s")
    admin = e.ready["admin"]
    assert request("POST", admin + "/admin/drain").status == 401
    assert request("POST", admin + "/admin/drain",
                   headers={"Authorization": "Bearer nope"}).status == 401
    assert request("GET", admin + "/admin/drain").status == 405
    assert request("GET", admin + "/health").status == 200
    r = request("POST", admin + "/admin/drain", headers={"Authorization": "Bearer " + TOKEN})
    assert r.status == 202 and r.json()["status"] == "draining"
    h = request("GET", admin + "/health")
    assert h.status == 503 and h.json()["status"] == "draining"
    r = request("GET", e.url + "/f.txt")
    assert r.status == 200 and r.headers["Connection"] == "close"
    wait_for(lambda: "reason=admin" in e.log(), 10, "the drain log line")
    # a signal during the drain stops at once (the drain had 30 s to go)
    os.kill(e.pid, signal.SIGTERM)
    assert e.popen.wait(10) == 0
    assert "edge stopping at once" in e.log()


def test_sigint_stops_without_the_drain(mlcdn, tmp_path):
    o = start_origin(mlcdn, tmp_path)
    e = start_edge(mlcdn, o, "--drain-time", "60s")
    os.kill(e.pid, signal.SIGINT)
    assert e.popen.wait(10) == 0
    assert "edge draining" not in e.log() and "stopping without drain" in e.log()


def test_second_signal_cuts_requests_in_flight(mlcdn, tmp_path):
    o = start_origin(mlcdn, tmp_path)
    e = start_edge(mlcdn, o, "--drain-time", "0", "--grace", "60s")
    result = {}

    def slow():
        try:
            result["r"] = request("GET", e.url + "/f.txt", headers={"X-Origin-Latency": "30000"})
        except OSError as exc:
            result["err"] = exc

    t = threading.Thread(target=slow)
    t.start()
    wait_for(lambda: o.get("/__stats").json()["requests"].get("/f.txt") == 1, 10,
             "the slow request to reach the origin")
    os.kill(e.pid, signal.SIGTERM)  # no drain: stop, giving the request up to 60 s
    wait_for(lambda: "edge stopping" in e.log(), 10, "the stop")
    assert e.alive()
    os.kill(e.pid, signal.SIGINT)
    assert e.popen.wait(10) == 0
    t.join(10)
    assert "r" not in result or result["r"].status != 200


def test_zero_failed_requests_while_the_router_steers_away(mlcdn, tmp_path):
    o = start_origin(mlcdn, tmp_path)
    near = start_edge(mlcdn, o, "--drain-time", "3s", "--region", "london")
    far = start_edge(mlcdn, o, "--region", "paris")
    urls = {"london": near.url, "paris": far.url}
    db = make_test_mmdb(str(tmp_path / "t.mmdb"))
    specs = ["london=51.5,-0.12,127.0.0.1,%s/health" % near.ready["admin"],
             "paris=48.85,2.35,127.0.0.1,%s/health" % far.ready["admin"]]
    r = Router("cdn.test", db, specs, ["--name", "edge", "--health-interval", "100ms",
                                       "--health-timeout", "1s"])
    try:
        assert poll(lambda: r.json("/route?ip=127.0.0.1")["edge"] == "london", 10) is not None
        log, stop = [], threading.Event()

        def client():
            while not stop.is_set():
                name = r.json("/route?ip=127.0.0.1")["edge"]
                try:
                    resp = request("GET", urls[name] + "/f.txt", timeout=10)
                    ok = resp.status == 200 and resp.body == b"payload"
                except OSError:
                    ok = False
                log.append((time.monotonic(), name, ok))

        t = threading.Thread(target=client)
        t.start()
        try:
            wait_for(lambda: sum(1 for _, n, _ in log if n == "london") >= 20, 10, "traffic")
            os.kill(near.pid, signal.SIGTERM)
            assert poll(lambda: {x["name"]: x for x in r.json("/edges")["edges"]}["london"]
                        ["status"] == "draining", 5) is not None
            assert near.popen.wait(15) == 0
            exited = time.monotonic()
            wait_for(lambda: sum(1 for ts, _, _ in log if ts > exited) >= 20, 10, "more traffic")
        finally:
            stop.set()
            t.join(15)
        failed = [x for x in log if not x[2]]
        print("drain: %d requests (%d to the drained edge), %d failed"
              % (len(log), sum(1 for _, n, _ in log if n == "london"), len(failed)))
        assert not failed, failed[:5]
        last_near = max(ts for ts, n, _ in log if n == "london")
        assert last_near < exited, "the router still answered with the drained edge"
        assert any(n == "paris" for ts, n, _ in log if ts > last_near)
    finally:
        r.cleanup()
