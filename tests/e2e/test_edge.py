"""End-to-end tests of `mlcdn edge` in front of `mlcdn origin` (real processes, loopback).

Each test asserts what the client saw and what reached the origin (its /__stats counter).
"""
import concurrent.futures
import http.server
import os
import signal
import socket
import threading
import time

import pytest

import fdlimit
from mlcdn_proc import metric, mlcdn, raw, request  # noqa: F401  (mlcdn is a fixture)

TOKEN = "s3cret-token"
EDGE_READY = r"listening on (?P<url>\S+) admin=(?P<admin>\S+)"


@pytest.fixture
def cdn(mlcdn, tmp_path):
    """An origin serving tmp_path/root and an edge in front of it."""
    return make_cdn(mlcdn, tmp_path)


def make_cdn(mlcdn, tmp_path, edge_extra=(), ready=EDGE_READY):
    """The cdn fixture's set-up; test_caching_h2.py adds a TLS listener (edge_extra, whose
    ready line `ready` matches) to run this file's caching tests over HTTP/2."""
    root = tmp_path / "root"
    root.mkdir()

    class CDN:
        pass

    c = CDN()
    c.root = root

    def put(name, data, headers=None):
        p = root / name.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
        if headers:
            (root / (name.lstrip("/") + ".hdrs")).write_text(
                "".join("%s: %s\n" % kv for kv in headers.items()))
        return data

    def start_edge(*extra):
        return mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                              "--origin", c.origin.url, "--region", "test-1",
                              "--admin-token", TOKEN, "--threads", "2", "--mem", "64M"]
                     + list(edge_extra) + list(extra), ready_pattern=ready)

    c.put = put
    c.origin = mlcdn("origin", ["--listen", "127.0.0.1:0", "--root", str(root)])
    c.start_edge = start_edge
    c.edge = start_edge()
    c.admin = c.edge.ready["admin"]

    def origin_count(path):
        return c.origin.get("/__stats").json()["requests"].get(path, 0)

    c.origin_count = origin_count
    return c


def test_miss_then_hit(cdn):
    body = cdn.put("/m/a.bin", os.urandom(4096))
    r1 = cdn.edge.get("/m/a.bin")
    assert r1.status == 200 and r1.body == body
    assert r1.headers["X-Cache"] == "MISS"
    assert r1.headers["X-Cache-Level"] == "ORIGIN"
    assert r1.headers["X-Edge-Region"] == "test-1"
    assert "fwd=miss" in r1.headers["Cache-Status"]
    r2 = cdn.edge.get("/m/a.bin")
    assert r2.status == 200 and r2.body == body
    assert r2.headers["X-Cache"] == "HIT"
    assert r2.headers["X-Cache-Level"] == "L1"
    assert r2.headers["Cache-Status"].startswith("mlcdn; hit")
    assert int(r2.headers["Age"]) >= 0
    assert cdn.origin_count("/m/a.bin") == 1


def test_query_parameter_order_shares_one_entry(cdn):
    cdn.put("/q.json", b'{"a": 1}')
    assert cdn.edge.get("/q.json?b=2&a=1").headers["X-Cache"] == "MISS"
    assert cdn.edge.get("/q.json?a=1&b=2").headers["X-Cache"] == "HIT"
    assert cdn.origin_count("/q.json") == 1


def test_200_concurrent_cold_requests_make_one_origin_request(cdn):
    body = cdn.put("/big/model.bin", os.urandom(200 * 1024))

    def get(_):
        return cdn.edge.get("/big/model.bin", headers={"X-Origin-Latency": "400"}, timeout=30)

    with concurrent.futures.ThreadPoolExecutor(max_workers=200) as ex:
        rs = list(ex.map(get, range(200)))
    assert all(r.status == 200 for r in rs), [r.status for r in rs if r.status != 200][:5]
    assert all(r.body == body for r in rs)
    assert cdn.origin_count("/big/model.bin") == 1
    collapsed = sum(1 for r in rs if "collapsed" in r.headers.get("Cache-Status", ""))
    hits = sum(1 for r in rs if r.headers["X-Cache"] == "HIT")
    assert collapsed + hits == 199


def test_requests_arriving_across_the_end_of_a_fill_make_one_origin_request(cdn):
    """Requests keep arriving, one every 5 ms, before, while and after the fill runs: one
    that missed L1 just before the fill stored its response, and reaches the busy table
    just after the fill left it, is served what was stored, not sent to the origin again."""
    body = cdn.put("/across/a.bin", os.urandom(2048))
    t0 = time.monotonic()

    def get(i):
        time.sleep(max(0.0, t0 + i * 0.005 - time.monotonic()))
        r = cdn.edge.get("/across/a.bin", headers={"X-Origin-Latency": "300"}, timeout=30)
        return r.status, r.body == body, r.headers.get("X-Cache")

    with concurrent.futures.ThreadPoolExecutor(max_workers=120) as ex:
        seen = list(ex.map(get, range(120)))
    assert all(st == 200 and ok for st, ok, _ in seen), seen[:5]
    assert any(xc == "HIT" for _, _, xc in seen)
    assert cdn.origin_count("/across/a.bin") == 1


def test_vary(cdn):
    cdn.put("/v.txt", b"variant", {"Vary": "Accept-Encoding"})
    g = lambda ae: cdn.edge.get("/v.txt", headers={"Accept-Encoding": ae})  # noqa: E731
    assert g("gzip").headers["X-Cache"] == "MISS"
    assert g("gzip").headers["X-Cache"] == "HIT"
    assert g("br").headers["X-Cache"] == "MISS"
    assert g("br").headers["X-Cache"] == "HIT"
    assert cdn.origin_count("/v.txt") == 2


def test_vary_star_is_never_reused(cdn):
    cdn.put("/vs.txt", b"x", {"Vary": "*"})
    assert cdn.edge.get("/vs.txt").headers["X-Cache"] == "MISS"
    assert cdn.edge.get("/vs.txt").headers["X-Cache"] == "MISS"
    assert cdn.origin_count("/vs.txt") == 2


@pytest.mark.parametrize("cc", ["no-store", "private", "private, max-age=600"])
def test_uncacheable_responses_are_not_stored(cdn, cc):
    cdn.put("/u.txt", b"secret", {"Cache-Control": cc})
    for _ in range(2):
        r = cdn.edge.get("/u.txt")
        assert r.status == 200 and r.headers["X-Cache"] == "MISS"
        assert "detail=" in r.headers["Cache-Status"]
    assert cdn.origin_count("/u.txt") == 2


def test_authorization_requests_bypass(cdn):
    cdn.put("/auth.txt", b"mine", {"Cache-Control": "max-age=600"})
    r = cdn.edge.get("/auth.txt", headers={"Authorization": "Bearer x"})
    assert r.headers["X-Cache"] == "BYPASS"
    # Not stored (no public/s-maxage): the next plain request misses.
    assert cdn.edge.get("/auth.txt").headers["X-Cache"] == "MISS"


def test_max_age_expiry_then_revalidation_304(cdn):
    # Ages count whole seconds: max-age=2 keeps a request right after a fetch or a 304 a
    # hit even across a second boundary.
    cdn.put("/e.txt", b"expiring", {"Cache-Control": "max-age=2"})
    assert cdn.edge.get("/e.txt").headers["X-Cache"] == "MISS"
    assert cdn.edge.get("/e.txt").headers["X-Cache"] == "HIT"
    time.sleep(3.2)
    r = cdn.edge.get("/e.txt")
    assert r.status == 200 and r.body == b"expiring"
    # The stale copy had an ETag: the edge asked the origin conditionally, got 304.
    assert "fwd-status=304" in r.headers["Cache-Status"]
    assert cdn.origin_count("/e.txt") == 2
    assert cdn.edge.get("/e.txt").headers["X-Cache"] == "HIT"
    assert cdn.origin_count("/e.txt") == 2


def test_changed_object_after_expiry_is_refetched(cdn):
    cdn.put("/c.txt", b"one", {"Cache-Control": "max-age=1"})
    assert cdn.edge.get("/c.txt").body == b"one"
    time.sleep(1.2)
    cdn.put("/c.txt", b"two-changed", {"Cache-Control": "max-age=1"})
    time.sleep(1.0)
    r = cdn.edge.get("/c.txt")
    assert r.body == b"two-changed"
    assert r.headers["X-Cache"] == "MISS"


def test_conditional_request_answered_304_from_cache(cdn):
    cdn.put("/cond.txt", b"conditional")
    etag = cdn.edge.get("/cond.txt").headers["ETag"]
    assert etag
    r = cdn.edge.get("/cond.txt", headers={"If-None-Match": etag})
    assert r.status == 304 and r.body == b""
    assert r.headers["X-Cache"] == "HIT"
    r = cdn.edge.get("/cond.txt", headers={"If-None-Match": '"other"'})
    assert r.status == 200 and r.body == b"conditional"
    assert cdn.origin_count("/cond.txt") == 1


def test_purge_needs_the_token(cdn):
    cdn.put("/p.txt", b"purge me")
    cdn.edge.get("/p.txt")
    assert cdn.edge.get("/p.txt").headers["X-Cache"] == "HIT"
    assert request("PURGE", cdn.admin + "/p.txt").status == 401
    assert request("PURGE", cdn.admin + "/p.txt",
                   headers={"Authorization": "Bearer wrong"}).status == 401
    assert cdn.edge.request("PURGE", "/p.txt",
                            headers={"Authorization": "Bearer " + TOKEN}).status == 403
    assert cdn.edge.get("/p.txt").headers["X-Cache"] == "HIT"
    r = request("PURGE", cdn.admin + "/p.txt", headers={"Authorization": "Bearer " + TOKEN})
    assert r.status == 200 and r.json()["purged"] >= 1
    assert cdn.edge.get("/p.txt").headers["X-Cache"] == "MISS"
    assert cdn.origin_count("/p.txt") == 2


def test_purge_drops_every_host_and_variant(cdn):
    cdn.put("/pv.txt", b"v", {"Vary": "Accept-Encoding"})
    for host in ("a.example", "b.example"):
        for ae in ("gzip", "br"):
            cdn.edge.get("/pv.txt", headers={"Host": host, "Accept-Encoding": ae})
    r = request("PURGE", cdn.admin + "/pv.txt", headers={"Authorization": "Bearer " + TOKEN})
    assert r.json()["purged"] == 4
    # An absolute URL purges one host only.
    for host in ("a.example", "b.example"):
        cdn.edge.get("/pv.txt", headers={"Host": host, "Accept-Encoding": "gzip"})
    out = raw(cdn.edge.host, int(cdn.admin.rsplit(":", 1)[1]),
              b"PURGE http://a.example/pv.txt HTTP/1.1\r\nHost: a.example\r\n"
              b"Authorization: Bearer " + TOKEN.encode() + b"\r\nConnection: close\r\n\r\n")
    assert b" 200 " in out.split(b"\r\n")[0] and b'"purged":1' in out
    assert cdn.edge.get("/pv.txt", headers={"Host": "b.example", "Accept-Encoding": "gzip"}
                        ).headers["X-Cache"] == "HIT"


def test_range_and_head_from_cache(cdn):
    body = cdn.put("/r.bin", os.urandom(10000))
    assert cdn.edge.get("/r.bin").status == 200
    r = cdn.edge.get("/r.bin", headers={"Range": "bytes=100-199"})
    assert r.status == 206 and r.body == body[100:200]
    assert r.headers["Content-Range"] == "bytes 100-199/10000"
    assert r.headers["X-Cache"] == "HIT"
    r = cdn.edge.get("/r.bin", headers={"Range": "bytes=-10"})
    assert r.status == 206 and r.body == body[-10:]
    r = cdn.edge.get("/r.bin", headers={"Range": "bytes=20000-"})
    assert r.status == 416 and r.headers["Content-Range"] == "bytes */10000"
    h = cdn.edge.head("/r.bin")
    assert h.status == 200 and h.body == b"" and h.headers["Content-Length"] == "10000"
    assert cdn.origin_count("/r.bin") == 1


def test_head_miss_is_forwarded_as_head(cdn):
    body = cdn.put("/h.bin", os.urandom(3000))
    h = cdn.edge.head("/h.bin")
    assert h.status == 200 and h.body == b"" and h.headers["Content-Length"] == "3000"
    assert h.headers["X-Cache"] == "MISS" and "detail=head" in h.headers["Cache-Status"]
    # The origin was asked with HEAD (no body came): nothing was stored, a GET fetches.
    r = cdn.edge.get("/h.bin")
    assert r.body == body and r.headers["X-Cache"] == "MISS"
    assert cdn.edge.get("/h.bin").headers["X-Cache"] == "HIT"
    assert cdn.origin_count("/h.bin") == 2


def test_keep_alive_and_pipelining(cdn):
    cdn.put("/k1.txt", b"first")
    cdn.put("/k2.txt", b"second")
    cdn.edge.get("/k1.txt")
    reqs = (b"GET /k1.txt HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /k2.txt HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /k1.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out = raw(cdn.edge.host, cdn.edge.port, reqs)
    assert out.count(b"HTTP/1.1 200 OK") == 3
    i1, i2, i3 = out.find(b"first"), out.find(b"second"), out.rfind(b"first")
    assert 0 < i1 < i2 < i3


def test_malformed_request_gets_400_and_server_keeps_serving(cdn):
    cdn.put("/ok.txt", b"ok")
    bad = [
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n folded: header\r\n\r\n",
        b"GET / HTTP/1.1\nHost: x\n\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"\x00\x01\x02 garbage\r\n\r\n",
    ]
    for b in bad:
        out = raw(cdn.edge.host, cdn.edge.port, b)
        assert out.startswith(b"HTTP/1.1 400"), (b, out[:80])
    r = cdn.edge.get("/ok.txt")
    assert r.status == 200 and r.body == b"ok"


def test_oversized_headers_and_uri(cdn):
    out = raw(cdn.edge.host, cdn.edge.port,
              b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 414")
    out = raw(cdn.edge.host, cdn.edge.port,
              b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"b" * 70000 + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431")


def test_post_is_forwarded_and_invalidates(cdn):
    cdn.put("/obj.txt", b"cached")
    cdn.edge.get("/obj.txt")
    assert cdn.edge.get("/obj.txt").headers["X-Cache"] == "HIT"
    r = cdn.edge.request("POST", "/obj.txt", body=b"payload-123",
                         headers={"Content-Type": "text/plain"})
    assert r.status == 200 and r.headers["X-Cache"] == "BYPASS"
    assert r.json()["body_len"] == 11
    assert cdn.edge.get("/obj.txt").headers["X-Cache"] == "MISS"


def test_origin_down_gives_502_and_slow_origin_504(cdn, mlcdn):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()
    e = mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "", "--origin",
                       "http://127.0.0.1:%d" % port, "--connect-timeout", "500ms"])
    r = e.get("/x")
    assert r.status == 502 and "origin" in r.json()["error"]
    cdn.put("/slow.txt", b"slow")
    e2 = mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "", "--origin", cdn.origin.url,
                        "--first-byte-timeout", "200ms"])
    r = e2.get("/slow.txt", headers={"X-Origin-Latency": "1500"})
    assert r.status == 504


def test_failover_to_second_origin(cdn, mlcdn):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()
    cdn.put("/f.txt", b"from the second origin")
    e = mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "", "--origin",
                       "http://127.0.0.1:%d,%s" % (port, cdn.origin.url)])
    r = e.get("/f.txt")
    assert r.status == 200 and r.body == b"from the second origin"


def test_health_and_metrics(cdn):
    cdn.put("/hm.txt", b"x")
    cdn.edge.get("/hm.txt")
    cdn.edge.get("/hm.txt")
    h = request("GET", cdn.admin + "/health").json()
    assert h["status"] == "ok" and h["region"] == "test-1"
    assert 0.0 <= h["load"] <= 1.0
    assert h["hit_ratio"] == pytest.approx(0.5)
    assert h["uptime_s"] >= 0
    m = request("GET", cdn.admin + "/metrics").body.decode()
    assert 'mlcdn_edge_requests_total{cache="HIT",level="L1"} 1' in m
    assert 'mlcdn_edge_requests_total{cache="MISS",level="ORIGIN"} 1' in m
    assert "# TYPE mlcdn_edge_request_duration_seconds histogram" in m


def test_graceful_shutdown_finishes_in_flight(cdn):
    cdn.put("/g.txt", b"graceful")
    result = {}

    def slow():
        result["r"] = cdn.edge.get("/g.txt", headers={"X-Origin-Latency": "1200"})

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.4)
    os.kill(cdn.edge.pid, signal.SIGTERM)
    t.join(10)
    assert result["r"].status == 200 and result["r"].body == b"graceful"
    assert cdn.edge.popen.wait(10) == 0
    with pytest.raises(OSError):
        socket.create_connection((cdn.edge.host, cdn.edge.port), timeout=2).close()


def test_slow_clients_hit_timeouts(cdn, mlcdn):
    e = mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "", "--origin", cdn.origin.url,
                       "--header-timeout", "300ms", "--idle-timeout", "500ms",
                       "--body-timeout", "300ms"])
    # An unfinished head gets 408 and the connection closes.
    with socket.create_connection((e.host, e.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        out = s.recv(4096)
        assert out.startswith(b"HTTP/1.1 408")
        assert time.monotonic() - t0 < 4
    # A body that stops arriving gets 408 too.
    with socket.create_connection((e.host, e.port), timeout=5) as s:
        s.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        assert s.recv(4096).startswith(b"HTTP/1.1 408")
    # An idle keep-alive connection is closed without a response.
    with socket.create_connection((e.host, e.port), timeout=5) as s:
        assert s.recv(4096) == b""


def test_client_that_stops_reading_is_disconnected(cdn, mlcdn):
    size = 32 * 1024 * 1024
    cdn.put("/huge.bin", b"\0" * size)
    e = mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "", "--origin", cdn.origin.url,
                       "--send-timeout", "1s", "--mem", "1G"])
    # Cached first, so the edge sends at full speed and the stall is ours, not the origin's.
    assert len(e.get("/huge.bin").body) == size
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((e.host, e.port))
    s.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(20)
    got = len(s.recv(1024))  # the response has started: from now on we do not read
    time.sleep(3.0)  # the edge's writes stall: it gives up after --send-timeout
    s.settimeout(5)
    try:
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            got += len(b)
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    assert got < size
    assert e.get("/huge.bin").status == 200  # the edge is fine


def test_request_bodies_are_streamed_to_the_origin(cdn, mlcdn):
    e = mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "", "--origin", cdn.origin.url,
                       "--max-body", "64M"])
    body = os.urandom(8 * 1024 * 1024)
    r = e.request("POST", "/echo", body=body)
    assert r.status == 200 and r.json()["body_len"] == len(body)
    # PUT stores the body at the origin; read it back through the edge.
    r = e.request("PUT", "/up/model.bin", body=body)
    assert r.status in (200, 201)
    assert e.get("/up/model.bin").body == body

    # A chunked body of unknown length, sent in pieces.
    def pieces():
        for i in range(64):
            yield bytes([i]) * 10000
    import http.client
    conn = http.client.HTTPConnection(e.host, e.port, timeout=30)
    conn.request("POST", "/echo", body=pieces(), encode_chunked=True,
                 headers={"Transfer-Encoding": "chunked"})
    resp = conn.getresponse()
    assert resp.status == 200
    import json
    assert json.loads(resp.read())["body_len"] == 640000
    conn.close()


def send_all_then_read(host, port, data):
    """The server may answer and close before it read everything we send: keep what it said."""
    with socket.create_connection((host, port), timeout=10) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except ConnectionResetError:
            pass
        return out


def test_body_over_the_limit_is_refused(cdn, mlcdn):
    e = mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "", "--origin", cdn.origin.url,
                       "--max-body", "1M"])
    out = send_all_then_read(e.host, e.port, b"POST /echo HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Length: 2097152\r\n\r\n" + b"x" * 2097152)
    assert out.startswith(b"HTTP/1.1 413")
    out = send_all_then_read(e.host, e.port, b"POST /echo HTTP/1.1\r\nHost: x\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n200000\r\n"
                             + b"y" * 0x200000 + b"\r\n0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413")
    assert e.get("/echo").status in (200, 404)



# Many times what loopback sockets buffer (a few MiB each way), so most of it is still on
# its way when the edge answers. send_all_then_read's 2 MiB above fit in the buffers: sent
# in full before the edge even closed, they never met the reset a plain close sends when
# unread bytes remain (and excused it if they had).
BIG = 32 * 1024 * 1024


@pytest.mark.parametrize("case,status", [
    ("length", 413),     # Content-Length over --max-body: refused before the body
    ("chunked", 413),    # chunked body crossing --max-body while it streams
    ("bad-chunk", 400),  # chunk framing broken in the middle of the body
    ("head", 431),       # a head that never ends
    ("admin", 413),      # the admin listener (bodies read before the handler)
])
def test_error_reaches_a_client_that_sends_everything_first(cdn, case, status):
    e = cdn.start_edge("--max-body", "1M")
    host, port = e.host, e.port
    if case == "length":
        data = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % BIG + b"x" * BIG
    elif case == "chunked":
        data = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"%x\r\n" % BIG + b"y" * BIG + b"\r\n0\r\n\r\n")
    elif case == "bad-chunk":
        data = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"400\r\n" + b"z" * 0x400 + b"\r\nnot-hex\r\n" + b"z" * BIG)
    elif case == "head":
        data = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * BIG + b"\r\n\r\n"
    else:
        host, port = e.ready["admin"].rsplit("/", 1)[1].split(":")
        data = b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % BIG + b"x" * BIG
    out = raw(host, int(port), data, timeout=30)  # everything sent before a byte is read
    assert out.startswith(b"HTTP/1.1 %d" % status), out[:80]
    assert b"Connection: close" in out
    m = request("GET", e.ready["admin"] + "/metrics").body.decode()
    listener = "admin" if case == "admin" else "public"
    assert fdlimit.counter(m, 'mlcdn_http_lingering_closes_total{listener="%s"}' % listener) >= 1
    cdn.put("/after.txt", b"still serving")
    assert e.get("/after.txt").body == b"still serving"


# Low enough that a flood of idle clients takes every descriptor, high enough for the
# edge's own (about 10 + 9 per worker thread here).
NOFILE = 96


@pytest.mark.parametrize("threads", [2, 4])
def test_out_of_descriptors_the_edge_pauses_and_recovers(cdn, mlcdn, threads):
    """More idle clients than descriptors, then all gone: the edge must answer again (admin
    and public), count the pauses, and idle meanwhile. Several rounds: what used to wedge
    it (two loops racing for libuv's one reserve descriptor) did not happen every time."""
    cdn.put("/fd.txt", b"still here")
    e = mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                       "--origin", cdn.origin.url, "--threads", threads, "--mem", "64M"],
              ready_pattern=EDGE_READY, nofile=NOFILE)
    admin = e.ready["admin"]
    ahost, aport = admin.rsplit("/", 1)[1].split(":")
    for rnd in range(6):
        # Odd rounds flood the admin listener: it shares the same accept path.
        host, port = (ahost, int(aport)) if rnd % 2 else (e.host, e.port)
        assert fdlimit.flood(host, port, NOFILE * 6) > NOFILE
        assert request("GET", admin + "/health", timeout=20).status == 200
        r = e.get("/fd.txt", timeout=20)
        assert r.status == 200 and r.body == b"still here"
        # Idle now: a loop spinning on accept() would burn a core per worker.
        before = fdlimit.cpu_seconds(e.pid)
        time.sleep(2)
        assert fdlimit.cpu_seconds(e.pid) - before < 0.5
    m = request("GET", admin + "/metrics").body.decode()
    paused = [fdlimit.counter(m, 'mlcdn_http_accept_paused_total{listener="%s"}' % listener)
              for listener in ("public", "admin")]
    assert paused[0] > 0 and paused[1] > 0
    # Logged once per episode (a round, give or take), not once per pause.
    assert 1 <= e.log().count("accepting paused") <= 12


class _LocationOrigin(http.server.BaseHTTPRequestHandler):
    """GETs are cacheable; a POST answers 201 with Location and Content-Location."""
    protocol_version = "HTTP/1.1"

    hits = {}

    def do_GET(self):
        _LocationOrigin.hits[self.path] = _LocationOrigin.hits.get(self.path, 0) + 1
        if self.path.startswith("/missing"):
            # A 404 that says nothing of its freshness (not heuristically fresh either).
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self.path.encode()
        self.send_response(200)
        self.send_header("Cache-Control", "max-age=600")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(201)
        self.send_header("Location", "/created.txt")
        self.send_header("Content-Location", "http://other.example/target.txt")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def test_unsafe_method_invalidates_location_on_the_same_host(mlcdn):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _LocationOrigin)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        e = mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "", "--origin",
                           "http://127.0.0.1:%d" % srv.server_address[1]])
        for p in ("/target.txt", "/created.txt"):
            e.get(p)
            assert e.get(p).headers["X-Cache"] == "HIT"
        assert e.request("POST", "/form", body=b"x").status == 201
        assert e.get("/created.txt").headers["X-Cache"] == "MISS"
        assert e.get("/target.txt").headers["X-Cache"] == "HIT"  # another host's URI: kept
    finally:
        srv.shutdown()
        srv.server_close()


def test_negative_caching_of_404(mlcdn):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _LocationOrigin)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        e = mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "", "--origin",
                           "http://127.0.0.1:%d" % srv.server_address[1], "--negative-ttl", "2s"])
        assert e.get("/missing.bin").status == 404
        # Ages count whole seconds: a 2 s TTL keeps the next request a hit even when the
        # two land on either side of a second boundary.
        r = e.get("/missing.bin")
        assert r.status == 404 and r.headers["X-Cache"] == "HIT"
        assert _LocationOrigin.hits["/missing.bin"] == 1
        time.sleep(3.2)
        assert e.get("/missing.bin").headers["X-Cache"] == "MISS"
        assert _LocationOrigin.hits["/missing.bin"] == 2
        e2 = mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "", "--origin",
                            "http://127.0.0.1:%d" % srv.server_address[1], "--negative-ttl", "0"])
        e2.get("/missing2")
        assert e2.get("/missing2").headers["X-Cache"] == "MISS"
    finally:
        srv.shutdown()
        srv.server_close()


def test_example_config_file_works_and_flags_win(cdn, mlcdn):
    conf = os.path.join(os.path.dirname(__file__), "..", "..", "conf", "edge.conf")
    e = mlcdn("edge", ["--config", conf, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                       "--origin", cdn.origin.url, "--mem", "64M", "--threads", "1"],
              ready_pattern=EDGE_READY)
    cdn.put("/conf.txt", b"configured")
    r = e.get("/conf.txt?utm_source=x")
    assert r.body == b"configured" and r.headers["X-Edge-Region"] == "eu-west"
    assert e.get("/conf.txt").headers["X-Cache"] == "HIT"  # utm_source is ignored in keys


def test_bad_flags_name_the_flag(mlcdn):
    from mlcdn_proc import binary
    import subprocess
    for args, flag in ((["--mem", "12Q", "--origin", "http://x"], "--mem"),
                       (["--origin", "ftp://x"], "--origin"),
                       (["--listen", "nowhere", "--origin", "http://127.0.0.1:1"], "nowhere"),
                       (["--threads", "0", "--origin", "http://x"], "--threads"),
                       (["--region", 'eu"west', "--origin", "http://x"], "--region"),
                       (["--region", "eu\r\nX-Evil: 1", "--origin", "http://x"], "--region"),
                       (["--mem-objective", "hits", "--origin", "http://127.0.0.1:1"],
                        "--mem-objective"),
                       (["--disk-objective", "", "--origin", "http://127.0.0.1:1"],
                        "--disk-objective"),
                       (["--predict-objective", "Bytes", "--origin", "http://127.0.0.1:1"],
                        "--predict-objective"),
                       (["--bogus"], "--bogus")):
        p = subprocess.run([binary(), "edge"] + args, capture_output=True, text=True, timeout=10)
        assert p.returncode != 0 and flag in p.stderr, (args, p.stderr)


def test_objective_flags(cdn, mlcdn, tmp_path):
    # Each tier takes its own objective; an object still goes L1 and L2 and hits.
    e = mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                       "--origin", cdn.origin.url, "--mem", "64M", "--mem-objective", "bytes",
                       "--disk-dir", str(tmp_path / "l2"), "--disk-policy", "default",
                       "--disk-objective", "objects", "--predict-objective", "bytes"],
              ready_pattern=EDGE_READY)
    body = cdn.put("/objective.txt", b"o" * 5000)
    assert e.get("/objective.txt").body == body
    r = e.get("/objective.txt")
    assert r.headers["X-Cache"] == "HIT" and r.body == body


def test_large_cached_bodies_full_and_ranges(cdn):
    # Bodies of 64 KiB and more are kept in a memfd and sent with sendfile.
    body = cdn.put("/w/weights.bin", os.urandom(300 * 1024 + 7))
    assert cdn.edge.get("/w/weights.bin").body == body
    for _ in range(3):
        r = cdn.edge.get("/w/weights.bin")
        assert r.headers["X-Cache"] == "HIT" and r.body == body
    r = cdn.edge.get("/w/weights.bin", headers={"Range": "bytes=70000-200000"})
    assert r.status == 206 and r.body == body[70000:200001]
    r = cdn.edge.get("/w/weights.bin", headers={"Range": "bytes=-5"})
    assert r.body == body[-5:]
    # Many clients at once, each reading slowly enough for partial sends.
    def get(_):
        return cdn.edge.get("/w/weights.bin").body == body
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as ex:
        assert all(ex.map(get, range(64)))
    assert cdn.origin_count("/w/weights.bin") == 1


def _edge_defaults(mlcdn, origin, *extra):
    """An edge with the default --mem (256M) and --max-mem-object."""
    return mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                          "--origin", origin.url] + list(extra), ready_pattern=EDGE_READY)


def test_3mb_object_is_stored_on_first_fetch_with_default_memory(cdn, mlcdn):
    """A 3 MB object in a 256M L1 with room to spare is kept at once, and the first
    answer's Cache-Status says what happened."""
    body = cdn.put("/big/3mb.bin", os.urandom(3 * 1000 * 1000))
    e = _edge_defaults(mlcdn, cdn.origin)
    r = e.get("/big/3mb.bin")
    assert r.status == 200 and r.body == body
    assert r.headers["Cache-Status"].endswith("; stored"), r.headers["Cache-Status"]
    r = e.get("/big/3mb.bin")
    assert r.status == 200 and r.body == body
    assert r.headers["X-Cache"] == "HIT" and r.headers["X-Cache-Level"] == "L1"
    assert cdn.origin_count("/big/3mb.bin") == 1
    assert metric(e.ready["admin"], "mlcdn_edge_not_stored_total") == 0


def test_cache_status_says_when_l1_admission_refuses(cdn, mlcdn):
    """In a full L1 a first-seen large object is not stored (it would flush the probation
    queue): the answer says so (detail=admission). Asked for again often enough for its
    size, it is stored, and the answer that stores it says so. Every answer is true: the
    one after "admission" is another miss, the one after "stored" a hit."""
    for i in range(300):
        cdn.put("/fill/%d" % i, b"x" * 30000)
    big = cdn.put("/fill/big.bin", os.urandom(120000))
    e = _edge_defaults(mlcdn, cdn.origin, "--mem", "4M", "--threads", "1")
    for i in range(300):
        assert e.get("/fill/%d" % i).status == 200
    assert metric(e.ready["admin"], "mlcdn_edge_l1_bytes") <= 4 << 20
    r = e.get("/fill/big.bin")
    assert r.body == big
    assert r.headers["Cache-Status"].endswith("; detail=admission"), r.headers["Cache-Status"]
    for _ in range(20):
        r = e.get("/fill/big.bin")
        assert r.body == big and r.headers["X-Cache"] == "MISS"
        if r.headers["Cache-Status"].endswith("; stored"):
            break
        assert r.headers["Cache-Status"].endswith("; detail=admission"), r.headers["Cache-Status"]
    assert r.headers["Cache-Status"].endswith("; stored"), r.headers["Cache-Status"]
    r = e.get("/fill/big.bin")
    assert r.body == big and r.headers["X-Cache"] == "HIT"


def test_cache_status_says_a_body_over_max_mem_object_is_not_kept(cdn, mlcdn):
    """Without L2 a body over --max-mem-object is streamed through a temporary file and
    not kept: the answer says so."""
    body = cdn.put("/big/over.bin", os.urandom(300000))
    e = _edge_defaults(mlcdn, cdn.origin, "--max-mem-object", "100K")
    r = e.get("/big/over.bin")
    assert r.status == 200 and r.body == body
    assert r.headers["Cache-Status"].endswith("; detail=too-large"), r.headers["Cache-Status"]
    assert e.get("/big/over.bin").headers["X-Cache"] == "MISS"
