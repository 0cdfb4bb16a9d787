"""HTTP/2 at the edge (ALPN h2 on --tls-listen), driven by curl --http2, nghttp, h2load and a
small raw-frame client written here (for what no well-behaved client sends).

Every edge feature over HTTP/2: misses and hits, coalescing of concurrent streams for one key,
Range, conditional requests, large bodies from memory and from L2 files (flow control),
request bodies passed to the origin, predictions; many streams on one connection; errors and
aborts. The limits: a rapid-reset flood and a CONTINUATION flood end their connection with
GOAWAY while the edge keeps serving others; a graceful stop lets a stream in flight finish.
"""
import hashlib
import json
import os
import socket
import ssl
import struct
import subprocess
import threading

import pytest

from mlcdn_proc import metric, mlcdn, request, wait_for  # noqa: F401  (mlcdn is a fixture)
from script_origin import ScriptOrigin
from test_tls import EDGE_READY, HOST, certs, client_ctx, tls_args  # noqa: F401  (certs: fixture)

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "..", "fixtures", "models")


@pytest.fixture
def cdn(mlcdn, tmp_path, certs):
    root = tmp_path / "root"
    root.mkdir()

    class CDN:
        pass

    c = CDN()
    c.root = root
    c.tmp = tmp_path
    c.origin = None

    def start_origin(*extra):
        c.origin = mlcdn("origin", ["--listen", "127.0.0.1:0", "--root", str(root)]
                         + list(extra))
        return c.origin

    def start_edge(*extra, origin=None):
        url = origin or c.origin.url
        e = mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                           "--tls-listen", "127.0.0.1:0", "--origin", url,
                           "--threads", "2", "--mem", "64M"] + tls_args(certs, "ec")
                  + list(extra), ready_pattern=EDGE_READY)
        e.admin = e.ready["admin"]
        e.tls_port = int(e.ready["tls"].rsplit(":", 1)[1])
        return e

    c.start_origin = start_origin
    c.start_edge = start_edge
    c.origin_count = lambda path: c.origin.get("/__stats").json()["requests"].get(path, 0)
    return c


def curl2(edge, path, *extra, check=True):
    """curl --http2 over TLS with --resolve (SNI); returns (status, headers, body, version)."""
    url = "https://%s:%d%s" % (HOST, edge.tls_port, path)
    r = subprocess.run(["curl", "-sk", "--http2", "--resolve",
                        "%s:%d:127.0.0.1" % (HOST, edge.tls_port), "-D", "-", url] + list(extra),
                       capture_output=True, timeout=60)
    if check:
        assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    if not lines[0]:
        return None, {}, b"", r.returncode
    version, status = lines[0].split()[:2]
    hdrs = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return int(status), hdrs, body, version


def write_file(root, name, data):
    p = root / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return data


# ---- a raw HTTP/2 client (frames by hand, HPACK literals without indexing) ----

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = \
    0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, END_HEADERS = 0x1, 0x4
ENHANCE_YOUR_CALM = 0xb


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid) + payload


def hpack_int(v, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if v < limit:
        return bytes([first | v])
    out = [first | limit]
    v -= limit
    while v >= 128:
        out.append((v & 0x7f) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def hpack(fields):
    out = b""
    for n, v in fields:
        n, v = n.encode(), v.encode()
        out += b"\x00" + hpack_int(len(n), 7) + n + hpack_int(len(v), 7) + v
    return out


def request_block(path, authority=HOST):
    return hpack([(":method", "GET"), (":scheme", "https"), (":authority", authority),
                  (":path", path)])


class H2Conn:
    def __init__(self, edge):
        ctx = client_ctx()
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", edge.tls_port), timeout=10)
        self.s = ctx.wrap_socket(raw, server_hostname=HOST)
        assert self.s.selected_alpn_protocol() == "h2"
        self.buf = b""
        self.s.sendall(PREFACE + frame(SETTINGS, 0, 0))

    def send(self, data):
        """False once the server has closed (reset or EOF) the connection."""
        try:
            self.s.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            return False

    def frames(self, timeout=10):
        """Yields (type, flags, stream, payload) until the connection ends."""
        self.s.settimeout(timeout)
        while True:
            while len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + n:
                    break
                t, fl = self.buf[3], self.buf[4]
                sid = int.from_bytes(self.buf[5:9], "big") & 0x7fffffff
                payload = self.buf[9:9 + n]
                self.buf = self.buf[9 + n:]
                yield t, fl, sid, payload
            try:
                chunk = self.s.recv(65536)
            except (ConnectionResetError, ssl.SSLError, OSError):
                return
            if not chunk:
                return
            self.buf += chunk

    def goaway(self, timeout=10):
        """The error code of the GOAWAY the server sends (None if the connection ends
        without one)."""
        for t, _, _, payload in self.frames(timeout):
            if t == GOAWAY:
                return int.from_bytes(payload[4:8], "big")
        return None

    def close(self):
        self.s.close()


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# ---- the features over HTTP/2 ----

def test_miss_then_hit_over_h2(cdn):
    body = write_file(cdn.root, "a.txt", b"hello over h2\n")
    cdn.start_origin()
    e = cdn.start_edge()
    st, h, b, ver = curl2(e, "/a.txt")
    assert (st, b, ver) == (200, body, "HTTP/2")
    assert h["x-cache"] == "MISS" and h["content-length"] == str(len(body))
    assert "date" in h and "connection" not in h and "transfer-encoding" not in h
    st, h, b, _ = curl2(e, "/a.txt")
    assert (st, b, h["x-cache"]) == (200, body, "HIT")
    st, h, b, _ = curl2(e, "/a.txt", "-I")
    assert (st, b.strip(), h["content-length"]) == (200, b"", str(len(body)))
    st, _, b, _ = curl2(e, "/missing.txt")
    assert st == 404
    assert cdn.origin_count("/a.txt") == 1
    assert metric(e.admin, "mlcdn_http2_connections_total") == 4
    assert metric(e.admin, "mlcdn_http2_streams_total") == 4


def test_http2_false_offers_http11_only(cdn):
    write_file(cdn.root, "a.txt", b"x")
    cdn.start_origin()
    e = cdn.start_edge("--http2", "false")
    st, _, b, ver = curl2(e, "/a.txt")
    assert (st, b, ver) == (200, b"x", "HTTP/1.1")
    assert metric(e.admin, "mlcdn_http2_connections_total") == 0


def test_range_and_conditional_over_h2(cdn):
    body = write_file(cdn.root, "r.bin", bytes(range(256)) * 40)
    cdn.start_origin()
    e = cdn.start_edge()
    st, h, b, _ = curl2(e, "/r.bin")
    assert st == 200
    etag = h["etag"]
    st, h, b, _ = curl2(e, "/r.bin", "-r", "100-1099")
    assert (st, b, h["content-range"]) == (206, body[100:1100], "bytes 100-1099/%d" % len(body))
    st, h, b, _ = curl2(e, "/r.bin", "-H", "If-None-Match: " + etag)
    assert (st, b) == (304, b"")
    assert "content-length" not in h
    st, _, b, _ = curl2(e, "/r.bin", "-r", "999999-")
    assert st == 416


def test_large_bodies_from_memory_and_l2_files(cdn):
    big = write_file(cdn.root, "big.bin", os.urandom(3 << 20))
    want = hashlib.sha256(big).hexdigest()
    cdn.start_origin()
    e = cdn.start_edge("--disk-dir", str(cdn.tmp / "l2"), "--max-mem-object", "1M")
    for _ in range(3):  # the miss streamed from the origin, then hits from the L2 file
        st, h, b, _ = curl2(e, "/big.bin")
        assert st == 200 and hashlib.sha256(b).hexdigest() == want
    assert h["x-cache"] == "HIT"
    st, _, b, _ = curl2(e, "/big.bin", "-r", "1000000-2999999")
    assert st == 206 and b == big[1000000:3000000]
    mem = write_file(cdn.root, "mem.bin", os.urandom(900 << 10))
    for _ in range(2):
        st, _, b, _ = curl2(e, "/mem.bin")
        assert st == 200 and b == mem
    assert cdn.origin_count("/big.bin") == 1


def test_slow_reader_gets_the_whole_body(cdn):
    """Flow control: a client that reads slowly (curl --limit-rate) still gets every byte."""
    big = write_file(cdn.root, "slow.bin", os.urandom(2 << 20))
    cdn.start_origin()
    e = cdn.start_edge()
    curl2(e, "/slow.bin")
    st, _, b, _ = curl2(e, "/slow.bin", "--limit-rate", "4M")
    assert st == 200 and b == big


def test_concurrent_streams_coalesce_to_one_fetch(cdn):
    body = write_file(cdn.root, "c.bin", os.urandom(50000))
    cdn.start_origin("--latency", "300ms")
    e = cdn.start_edge()
    r = subprocess.run(["nghttp", "-n", "-s", "-m", "10", "https://127.0.0.1:%d/c.bin"
                        % e.tls_port], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.decode().splitlines() if "/c.bin" in ln]
    assert len(lines) == 10 and all(" 200 " in ln for ln in lines), r.stdout
    assert cdn.origin_count("/c.bin") == 1
    assert metric(e.admin, "mlcdn_edge_coalesced_total") == 9
    _, _, b, _ = curl2(e, "/c.bin")
    assert b == body


def test_many_streams_nghttp_and_h2load(cdn):
    for i in range(20):
        write_file(cdn.root, "f%d.txt" % i, b"file %d\n" % i)
    cdn.start_origin()
    e = cdn.start_edge()
    urls = ["https://127.0.0.1:%d/f%d.txt" % (e.tls_port, i) for i in range(20)]
    r = subprocess.run(["nghttp", "-nv"] + urls, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert out.count(":status: 200") == 20
    assert "GOAWAY" not in out.split("recv SETTINGS")[0]
    r = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "16", urls[0]],
                       capture_output=True, timeout=120)
    out = r.stdout.decode()
    assert r.returncode == 0, out
    assert "2000 succeeded, 0 failed, 0 errored" in out, out
    assert "status codes: 2000 2xx" in out, out


def test_request_bodies_reach_the_origin(cdn):
    cdn.start_origin()
    e = cdn.start_edge()
    for size in (0, 10, 3 << 20):
        data = cdn.tmp / ("body%d" % size)
        data.write_bytes(os.urandom(size))
        st, _, b, _ = curl2(e, "/upload/x", "-X", "POST", "--data-binary", "@" + str(data),
                            "-H", "Content-Type: application/octet-stream")
        assert st == 200, b
        got = json.loads(b)
        assert (got["method"], got["body_len"]) == ("POST", size)
    # Without Content-Length (a body of unknown length, as chunked over HTTP/1.1).
    r = subprocess.run(["curl", "-sk", "--http2", "--resolve",
                        "%s:%d:127.0.0.1" % (HOST, e.tls_port), "-T", "-", "-X", "POST",
                        "https://%s:%d/upload/y" % (HOST, e.tls_port)],
                       input=b"z" * 70000, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["body_len"] == 70000


def test_bad_requests_are_answered_per_stream(cdn):
    write_file(cdn.root, "a.txt", b"ok")
    cdn.start_origin()
    e = cdn.start_edge()
    c = H2Conn(e)
    # A request the HTTP/1.1 parser refuses (a URI over the limit) gets its error on its
    # stream (414); an
    # uppercase field name is malformed (RFC 9113 §8.2.1): that stream is reset; the
    # connection goes on and serves the next stream.
    c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1,
                 hpack([(":method", "GET"), (":scheme", "https"), (":authority", HOST),
                        (":path", "/" + "a" * 9000)])))
    c.send(frame(HEADERS, END_STREAM | END_HEADERS, 3,
                 hpack([(":method", "GET"), (":scheme", "https"), (":authority", HOST),
                        (":path", "/a.txt"), ("X-Upper", "1")])))
    c.send(frame(HEADERS, END_STREAM | END_HEADERS, 5, request_block("/a.txt")))
    seen, status, data = {}, {}, {}
    for t, fl, sid, payload in c.frames():
        if t in (HEADERS, RST_STREAM, DATA) and sid not in seen:
            seen[sid] = t
            if t == HEADERS:
                status[sid] = payload[:1]
        if t == DATA:
            data[sid] = data.get(sid, b"") + payload
        if t == DATA and sid == 5 and fl & END_STREAM:
            break
    c.close()
    assert seen == {1: HEADERS, 3: RST_STREAM, 5: HEADERS}
    assert status[5] == b"\x88"  # HPACK static table: ":status: 200"
    assert b'"status":414' in data[1] and data[5] == b"ok"


def test_aborted_fill_resets_the_stream(mlcdn, cdn):
    """A body the edge cannot complete (the origin cut it) ends in RST_STREAM, never a clean
    END_STREAM: curl reports the stream error."""
    def answer(req, sock):
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n"
                     b"Cache-Control: max-age=60\r\n\r\n" + b"x" * 30000)

    with ScriptOrigin(answer) as o:
        e = cdn.start_edge(origin=o.url)
        st, _, b, rc = curl2(e, "/cut.bin", check=False)
        assert rc != 0  # the transfer failed
        assert len(b) < 100000


def test_predictions_over_h2(cdn, tmp_path):
    models = tmp_path / "models"
    d = models / "logreg" / "1"
    d.mkdir(parents=True)
    os.symlink(os.path.abspath(os.path.join(MODELS, "logreg", "model.onnx")), d / "model.onnx")
    cdn.start_origin()
    e = cdn.start_edge("--models", str(models), "--models-poll", "0")
    st, _, b, _ = curl2(e, "/v2/models/logreg/ready")
    assert st == 200
    meta = json.loads(curl2(e, "/v2/models/logreg")[2])
    inp = meta["inputs"][0]
    n = int(inp["shape"][-1])
    req = {"inputs": [{"name": inp["name"], "shape": [2, n], "datatype": inp["datatype"],
                       "data": [0.5] * (2 * n)}]}
    st, _, b, _ = curl2(e, "/v2/models/logreg/infer", "-X", "POST", "-H",
                        "Content-Type: application/json", "--data-binary", json.dumps(req))
    assert st == 200, b
    h2 = json.loads(b)
    r = e.request("POST", "/v2/models/logreg/infer", body=json.dumps(req),
                  headers={"Content-Type": "application/json"})
    assert r.status == 200
    assert h2["outputs"] == json.loads(r.body)["outputs"]


# ---- limits ----

def test_rapid_reset_flood_gets_goaway(cdn):
    write_file(cdn.root, "a.txt", b"still here")
    cdn.start_origin()
    e = cdn.start_edge()
    curl2(e, "/a.txt")
    rss0 = rss_kb(e.pid)
    c = H2Conn(e)
    sid, cut = 1, False
    block = request_block("/a.txt")
    while sid < 20000 and not cut:
        batch = b""
        for _ in range(50):
            batch += frame(HEADERS, END_STREAM | END_HEADERS, sid, block)
            batch += frame(RST_STREAM, 0, sid, struct.pack(">I", 8))  # CANCEL
            sid += 2
        cut = not c.send(batch)
    assert c.goaway() == ENHANCE_YOUR_CALM
    c.close()
    assert metric(e.admin, "mlcdn_http2_goaway_sent_total") >= 1
    assert metric(e.admin, "mlcdn_http2_resets_received_total") >= 200
    st, _, b, _ = curl2(e, "/a.txt")
    assert (st, b) == (200, b"still here")
    assert rss_kb(e.pid) < rss0 + 64 * 1024
    assert e.stop() == 0


def test_continuation_flood_is_cut_off(cdn):
    write_file(cdn.root, "a.txt", b"still here")
    cdn.start_origin()
    e = cdn.start_edge()
    rss0 = rss_kb(e.pid)
    c = H2Conn(e)
    c.send(frame(HEADERS, 0, 1, request_block("/a.txt")))
    filler = hpack([("x-f", "a" * 1000)] * 8)
    sent, cut = 0, False
    while sent < 20000 and not cut:
        cut = not c.send(frame(CONTINUATION, 0, 1, filler))
        sent += 1
    code = c.goaway()
    c.close()
    assert cut or code is not None
    assert sent < 20000  # never read to the end
    st, _, b, _ = curl2(e, "/a.txt")
    assert (st, b) == (200, b"still here")
    assert rss_kb(e.pid) < rss0 + 64 * 1024
    assert e.stop() == 0


def test_ping_flood_gets_goaway(cdn):
    write_file(cdn.root, "a.txt", b"x")
    cdn.start_origin()
    e = cdn.start_edge()
    c = H2Conn(e)
    ok = True
    for i in range(20):
        ok = c.send(b"".join(frame(PING, 0, 0, struct.pack(">Q", i * 1000 + k))
                             for k in range(500)))
        if not ok:
            break
    assert c.goaway() == ENHANCE_YOUR_CALM
    c.close()
    assert curl2(e, "/a.txt")[0] == 200


def test_graceful_stop_lets_a_stream_finish(cdn):
    body = write_file(cdn.root, "late.bin", os.urandom(100000))
    cdn.start_origin("--latency", "800ms")
    e = cdn.start_edge()
    out = {}
    t = threading.Thread(target=lambda: out.update(r=curl2(e, "/late.bin", check=False)))
    t.start()
    wait_for(lambda: metric(e.admin, "mlcdn_http2_streams_total") == 1, what="the stream")
    e.popen.terminate()  # graceful stop: GOAWAY, the stream in flight finishes
    t.join(30)
    st, _, b, _ = out["r"]
    assert (st, b) == (200, body)
    assert e.popen.wait(30) == 0


def test_idle_connection_gets_goaway(cdn):
    cdn.start_origin()
    e = cdn.start_edge("--idle-timeout", "300ms")
    c = H2Conn(e)
    assert c.goaway(timeout=20) == 0  # NO_ERROR
    c.close()


def test_request_body_over_the_limit_is_413(cdn):
    cdn.start_origin()
    e = cdn.start_edge("--max-body", "1M")
    data = cdn.tmp / "big"
    data.write_bytes(b"b" * (3 << 20))
    st, _, b, _ = curl2(e, "/upload/x", "-X", "POST", "--data-binary", "@" + str(data))
    assert st == 413, b
    # The connection is still good for the next request.
    st, _, b, _ = curl2(e, "/upload/x", "-X", "POST", "--data-binary", "small")
    assert st == 200 and json.loads(b)["body_len"] == 5


def test_access_log_says_http2(cdn):
    body = write_file(cdn.root, "a.txt", b"logged")
    cdn.start_origin()
    log = cdn.tmp / "access.jsonl"
    e = cdn.start_edge("--access-log", str(log), "--access-log-format", "json")
    curl2(e, "/a.txt")
    curl2(e, "/a.txt", "--http1.1")

    def lines():
        return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []

    wait_for(lambda: len(lines()) == 2, what="two access log lines")
    # Each worker loop buffers its own lines: the order in the file is not the requests'.
    by = {x["protocol"]: x for x in lines()}
    h2, h1 = by["HTTP/2.0"], by["HTTP/1.1"]
    assert (h2["status"], h2["bytes"], h2["cache"]) == (200, len(body), "MISS")
    assert (h1["status"], h1["cache"]) == (200, "HIT")



def test_drain_sends_goaway_after_the_next_response(cdn):
    write_file(cdn.root, "a.txt", b"ok")
    cdn.start_origin()
    e = cdn.start_edge("--admin-token", "tok", "--drain-time", "30s")
    # Stream 1 must be a hit: a miss ends in steps (the fetch completes after the last
    # DATA frame went), and a step after the drain would send GOAWAY before stream 3.
    wait_for(lambda: curl2(e, "/a.txt")[1].get("x-cache") == "HIT", what="a.txt cached")
    c = H2Conn(e)

    def answered(sid):
        for t, fl, s, _ in c.frames():
            if s == sid and t in (DATA, HEADERS) and fl & END_STREAM:
                return True
        return False

    c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, request_block("/a.txt")))
    assert answered(1)
    r = request("POST", e.admin + "/admin/drain", headers={"Authorization": "Bearer tok"})
    assert r.status == 202
    # Frames the session sends after the drain that are no response (a PING's ACK here; a
    # write completing for stream 1 under load) do not end it: the next response does.
    c.send(frame(PING, 0, 0, b"12345678"))
    for t, fl, _, payload in c.frames():
        assert t != GOAWAY, "GOAWAY before the next response"
        if t == PING and fl & 1:
            assert payload == b"12345678"
            break
    # As Connection: close over HTTP/1.1: the next response, then GOAWAY NO_ERROR.
    c.send(frame(HEADERS, END_STREAM | END_HEADERS, 3, request_block("/a.txt")))
    assert answered(3)
    assert c.goaway() == 0
    c.close()


def test_h2c_prior_knowledge_on_the_plain_listener(cdn):
    big = write_file(cdn.root, "big.bin", os.urandom(2 << 20))
    write_file(cdn.root, "a.txt", b"plain h2")
    cdn.start_origin()
    e = cdn.start_edge("--disk-dir", str(cdn.tmp / "l2"), "--max-mem-object", "1M")

    def get(url, *extra):
        r = subprocess.run(["curl", "-s", "-o", "-", "-w", "\n%{http_version} %{http_code}",
                            url] + list(extra), capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        body, _, tail = r.stdout.rpartition(b"\n")
        return tail.decode(), body

    assert get(e.url + "/a.txt", "--http2-prior-knowledge") == ("2 200", b"plain h2")
    assert get(e.url + "/a.txt") == ("1.1 200", b"plain h2")  # HTTP/1.1 as before
    for _ in range(2):  # a miss, then a hit from the L2 file
        assert get(e.url + "/big.bin", "--http2-prior-knowledge") == ("2 200", big)
    r = subprocess.run(["h2load", "-n", "1000", "-c", "2", "-m", "8", e.url + "/a.txt"],
                       capture_output=True, timeout=60)
    assert "1000 succeeded, 0 failed, 0 errored" in r.stdout.decode(), r.stdout
    # The admin listener speaks HTTP/1.1 only.
    r = subprocess.run(["curl", "-s", "--http2-prior-knowledge", e.admin + "/health"],
                       capture_output=True, timeout=30)
    assert r.returncode != 0 or b"HTTP/2" not in r.stdout
    e2 = cdn.start_edge("--http2", "false")
    r = subprocess.run(["curl", "-s", "--http2-prior-knowledge", e2.url + "/a.txt"],
                       capture_output=True, timeout=30)
    assert r.returncode != 0 or r.stdout != b"plain h2"
