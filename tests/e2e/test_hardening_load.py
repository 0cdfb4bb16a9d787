"""Load-shaped origin protection: slow request bodies and hanging origins.

* Request bodies are read (up to --request-buffer) before the origin is contacted: clients
  that trickle their bodies hold no origin connection, and a stalled body gets 408 from
  --body-timeout without the origin ever seeing the request. Larger bodies still stream.
* A circuit breaker per origin: after --origin-breaker-failures timeouts or connect failures
  in a row the origin is left alone for --origin-breaker-cooldown; requests get the stale
  object (stale-if-error), the next origin, or a 503 naming the origin at once, and one
  probe (in the background when a stale object can answer the client) closes it again.

The origin side is a ScriptOrigin: the tests count the connections and requests that reached
it, and read the edge's metrics; no assert is about time.
"""
import os
import socket
import threading
import time

from mlcdn_proc import mlcdn, request  # noqa: F401  (mlcdn is a fixture)
from script_origin import ScriptOrigin

EDGE_READY = r"listening on (?P<url>\S+) admin=(?P<admin>\S+)"


def start_edge(mlcdn, origin_url, *extra):
    return mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                          "--origin", origin_url, "--threads", "2", "--mem", "64M"]
                 + list(extra), ready_pattern=EDGE_READY)


def metrics(edge):
    """{'name{labels}': value} of the edge's /metrics."""
    out = {}
    for line in request("GET", edge.ready["admin"] + "/metrics").body.decode().splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def wait_until(cond, timeout=20.0):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached in %.0f s" % timeout
        time.sleep(0.05)


def read_to_eof(s):
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return out
            out += d
    except (ConnectionResetError, socket.timeout):
        return out


def echo(req, sock):
    """Answers with the length of the body it got."""
    body = b'{"len": %d}' % len(req.body)
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                 % len(body) + body)


# ---- request bodies ----

def test_trickled_bodies_hold_no_origin_connection_and_get_408(mlcdn):
    with ScriptOrigin(echo) as o:
        e = start_edge(mlcdn, o.url, "--body-timeout", "1s")
        socks = []
        try:
            for i in range(20):
                s = socket.create_connection((e.host, e.port), timeout=20)
                s.sendall(b"POST /upload/%d HTTP/1.1\r\nHost: x\r\nContent-Length: 51200\r\n\r\nab"
                          % i)
                socks.append(s)
            for _ in range(3):  # a byte each, well within the body timeout
                time.sleep(0.2)
                for s in socks:
                    try:
                        s.sendall(b"c")
                    except OSError:
                        pass
            # Every head arrived long ago: the origin has still not been contacted.
            assert o.accepted == 0
            # Then they stall: each gets 408 from the body timeout.
            for s in socks:
                assert read_to_eof(s).startswith(b"HTTP/1.1 408")
        finally:
            for s in socks:
                s.close()
        assert o.accepted == 0 and o.heads == 0
        m = metrics(e)
        assert m["mlcdn_edge_request_body_timeouts_total"] == 20
        assert m['mlcdn_edge_request_bodies_total{mode="streamed"}'] == 0
        # The edge is fine afterwards.
        r = e.request("POST", "/after", body=b"x" * 1000)
        assert r.status == 200 and r.json() == {"len": 1000}


def test_bodies_under_the_buffer_reach_the_origin_whole(mlcdn):
    with ScriptOrigin(echo) as o:
        e = start_edge(mlcdn, o.url)
        body = os.urandom(50 * 1024)
        r = e.request("POST", "/submit", body=body)
        assert r.status == 200 and r.json() == {"len": len(body)}
        got = o.requests[-1]
        assert got.method == "POST" and got.body == body
        assert got.headers["content-length"] == str(len(body))
        # A chunked body under the buffer size is buffered too: the origin gets it with a
        # Content-Length.
        chunked = os.urandom(30000)
        with socket.create_connection((e.host, e.port), timeout=20) as s:
            s.sendall(b"PUT /put HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                      b"Connection: close\r\n\r\n")
            for i in range(0, len(chunked), 10000):
                part = chunked[i:i + 10000]
                s.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
                time.sleep(0.05)
            s.sendall(b"0\r\n\r\n")
            out = read_to_eof(s)
        assert out.startswith(b"HTTP/1.1 200") and out.endswith(b'{"len": 30000}')
        got = o.requests[-1]
        assert got.method == "PUT" and got.body == chunked
        assert got.headers.get("content-length") == "30000"
        assert "transfer-encoding" not in got.headers
        m = metrics(e)
        assert m['mlcdn_edge_request_bodies_total{mode="buffered"}'] == 2
        assert m['mlcdn_edge_request_bodies_total{mode="streamed"}'] == 0


def test_body_over_the_buffer_streams_to_the_origin(mlcdn):
    with ScriptOrigin(echo) as o:
        e = start_edge(mlcdn, o.url, "--request-buffer", "64K")
        body = os.urandom(300000)
        with socket.create_connection((e.host, e.port), timeout=20) as s:
            s.sendall(b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 300000\r\n"
                      b"Connection: close\r\n\r\n" + body[:100000])
            # Over the buffer: the origin sees the request start before the body ends.
            wait_until(lambda: o.heads == 1)
            assert o.count() == 0  # the script origin records a request once its body is read
            s.sendall(body[100000:])
            out = read_to_eof(s)
        assert out.startswith(b"HTTP/1.1 200") and out.endswith(b'{"len": 300000}')
        assert o.requests[0].body == body
        m = metrics(e)
        assert m['mlcdn_edge_request_bodies_total{mode="streamed"}'] == 1
        assert m['mlcdn_edge_request_bodies_total{mode="buffered"}'] == 0


def test_chunked_body_over_the_buffer_streams_chunked(mlcdn):
    def echo_chunked(req, sock):
        if req.headers.get("transfer-encoding") == "chunked":
            req.read_chunked()
        echo(req, sock)

    with ScriptOrigin(echo_chunked) as o:
        e = start_edge(mlcdn, o.url, "--request-buffer", "64K")
        body = os.urandom(200000)
        with socket.create_connection((e.host, e.port), timeout=20) as s:
            s.sendall(b"POST /chunks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                      b"Connection: close\r\n\r\n")
            for i in range(0, 100000, 20000):
                s.sendall(b"%x\r\n" % 20000 + body[i:i + 20000] + b"\r\n")
            # Over the buffer with no announced length: streamed on, chunked.
            wait_until(lambda: o.heads == 1)
            for i in range(100000, len(body), 20000):
                s.sendall(b"%x\r\n" % 20000 + body[i:i + 20000] + b"\r\n")
            s.sendall(b"0\r\n\r\n")
            out = read_to_eof(s)
        assert out.startswith(b"HTTP/1.1 200") and out.endswith(b'{"len": 200000}')
        got = o.requests[0]
        assert got.headers.get("transfer-encoding") == "chunked" and got.body == body
        assert metrics(e)['mlcdn_edge_request_bodies_total{mode="streamed"}'] == 1


# ---- hanging origins: the circuit breaker ----

class Switchable:
    """A script origin that answers (version `body`, with `cc`) or hangs: it reads the request
    and never answers until released."""

    def __init__(self):
        self.mode = "ok"
        self.body = b"v1"
        self.cc = "max-age=0, stale-if-error=600"
        self.release = threading.Event()

    def __call__(self, req, sock):
        if self.mode == "hang":
            self.release.wait(60)
            return
        body = self.body
        sock.sendall(b"HTTP/1.1 200 OK\r\nCache-Control: %s\r\nETag: \"%s\"\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n"
                     % (self.cc.encode(), body, len(body)) + body)


def breaker(m, url, what):
    if what == "state":
        return m['mlcdn_edge_origin_breaker_state{origin="%s"}' % url]
    if what == "skipped":
        return m['mlcdn_edge_origin_short_circuited_total{origin="%s"}' % url]
    return m['mlcdn_edge_origin_breaker_transitions_total{origin="%s",to="%s"}' % (url, what)]


def test_hanging_origin_opens_the_breaker_and_stale_is_served_at_once(mlcdn):
    script = Switchable()
    with ScriptOrigin(script) as o:
        try:
            e = start_edge(mlcdn, o.url, "--first-byte-timeout", "400ms",
                           "--origin-breaker-failures", "2", "--origin-breaker-cooldown", "1s")
            r = e.get("/model.json")
            assert r.status == 200 and r.body == b"v1" and r.headers["X-Cache"] == "MISS"
            assert o.count() == 1
            # The origin hangs: the stale object (max-age=0, stale-if-error) must be
            # revalidated. The first two requests each pay the first-byte timeout, then get
            # the stale object.
            script.mode = "hang"
            for n in (2, 3):
                r = e.get("/model.json")
                assert r.status == 200 and r.body == b"v1" and r.headers["X-Cache"] == "STALE"
                assert "detail=stale-if-error" in r.headers["Cache-Status"]
                wait_until(lambda: o.count() == n)
            m = metrics(e)
            assert breaker(m, o.url, "state") == 1
            assert breaker(m, o.url, "open") == 1
            # Open: served stale without asking the origin (only probes, one per cool-down,
            # may reach it; each is counted as a half-open transition).
            for _ in range(10):
                r = e.get("/model.json")
                assert r.status == 200 and r.body == b"v1" and r.headers["X-Cache"] == "STALE"
                assert "detail=stale-if-error" in r.headers["Cache-Status"]
            m = metrics(e)
            assert breaker(m, o.url, "skipped") == 10
            wait_until(lambda: o.count() == 3 + breaker(metrics(e), o.url, "half_open"))
            assert breaker(metrics(e), o.url, "closed") == 0

            # The origin comes back: after the cool-down a request is answered stale at once
            # while a background probe fetches the new version and closes the breaker.
            script.mode = "ok"
            script.body = b"v2"
            script.cc = "max-age=600"
            end = time.monotonic() + 30
            while True:
                r = e.get("/model.json")
                assert r.status == 200
                if r.body == b"v2":
                    break
                assert r.body == b"v1" and r.headers["X-Cache"] == "STALE"
                assert time.monotonic() < end, "the breaker never closed"
                time.sleep(0.1)
            m = metrics(e)
            assert breaker(m, o.url, "state") == 0
            assert breaker(m, o.url, "closed") == 1
            wait_until(lambda: o.count() == 3 + breaker(m, o.url, "half_open"))
            before = o.count()
            r = e.get("/model.json")
            assert r.body == b"v2" and r.headers["X-Cache"] == "HIT"
            assert o.count() == before
            # Breaker transitions are logged, one line each.
            log = e.log()
            assert log.count("origin breaker open:") == 1
            assert log.count("origin breaker closed") == 1
        finally:
            script.release.set()


def test_open_breaker_moves_on_to_the_next_origin_or_answers_503(mlcdn):
    hang = Switchable()
    hang.mode = "hang"
    good = Switchable()
    good.body = b"from B"
    good.cc = "no-store"
    with ScriptOrigin(hang) as a, ScriptOrigin(good) as b:
        try:
            flags = ["--first-byte-timeout", "300ms", "--origin-breaker-failures", "1",
                     "--origin-breaker-cooldown", "60s"]
            e = start_edge(mlcdn, a.url + "," + b.url, *flags)
            # A timeout does not move on to the next origin (the client already waited), but
            # it opens A's breaker ...
            assert e.get("/one").status == 504
            wait_until(lambda: a.heads == 1)
            # ... so the next requests go straight to B, whatever their method.
            r = e.get("/two")
            assert r.status == 200 and r.body == b"from B"
            r = e.request("POST", "/three", body=b"payload")
            assert r.status == 200 and r.body == b"from B"
            assert b.requests[-1].method == "POST" and b.requests[-1].body == b"payload"
            assert a.heads == 1
            m = metrics(e)
            assert breaker(m, a.url, "state") == 1 and breaker(m, a.url, "skipped") == 2
            assert breaker(m, b.url, "state") == 0

            # With a single origin and no stale object there is nothing to serve: 503 at
            # once, naming the origin, and the origin is not asked.
            e1 = start_edge(mlcdn, a.url, *flags)
            assert e1.get("/four").status == 504
            wait_until(lambda: a.heads == 2)
            r = e1.get("/five")
            assert r.status == 503
            assert a.url in r.json()["error"] and "circuit breaker" in r.json()["error"]
            r = e1.request("PUT", "/six", body=b"x" * 100)
            assert r.status == 503 and a.url in r.json()["error"]
            assert a.heads == 2
            assert breaker(metrics(e1), a.url, "skipped") == 2
        finally:
            hang.release.set()
