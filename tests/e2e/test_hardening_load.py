"""Load-shaped origin protection: slow request bodies.

* Request bodies are read (up to --request-buffer) before the origin is contacted: clients
  that trickle their bodies hold no origin connection, and a stalled body gets 408 from
  --body-timeout without the origin ever seeing the request. Larger bodies still stream.

The origin side is a ScriptOrigin: the tests count the connections and requests that reached
it, and read the edge's metrics; no assert is about time.
"""
import os
import socket
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
