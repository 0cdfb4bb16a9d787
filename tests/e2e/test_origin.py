"""tests/e2e/test_origin.py: `mlcdn origin`, the reference origin, as a real process."""
import concurrent.futures
import json
import os
import socket
import time

import pytest

import fdlimit
from mlcdn_proc import mlcdn, raw, request  # noqa: F401  (mlcdn is a fixture)


@pytest.fixture
def root(tmp_path):
    d = tmp_path / "root"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_bytes(b"hello origin\n")
    (d / "m.json").write_bytes(b'{"k": 1}\n')
    (d / "sub" / "index.html").write_bytes(b"<p>index</p>\n")
    (d / "w.bin").write_bytes(bytes(range(256)) * 1024)  # 256 KiB: streamed from disk
    return d


@pytest.fixture
def origin(mlcdn, root):
    return mlcdn("origin", ["--listen", "127.0.0.1:0", "--root", root, "--log-level", "debug"])


def stats(o):
    r = o.get("/__stats")
    assert r.status == 200
    return r.json()


def test_ready_line_and_get(origin):
    assert origin.port > 0 and origin.url == "http://127.0.0.1:%d" % origin.port
    r = origin.get("/a.txt")
    assert r.status == 200
    assert r.body == b"hello origin\n"
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.headers["Cache-Control"] == "public, max-age=3600"
    assert r.headers["ETag"].startswith('"') and r.headers["Last-Modified"].endswith("GMT")
    assert r.headers["Content-Length"] == "13"
    assert origin.get("/m.json").headers["Content-Type"] == "application/json"


def test_head_has_length_no_body(origin):
    r = origin.head("/w.bin")
    assert r.status == 200
    assert r.headers["Content-Length"] == str(256 * 1024)
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.body == b""


def test_large_body_streamed(origin, root):
    r = origin.get("/w.bin")
    assert r.status == 200 and r.body == (root / "w.bin").read_bytes()


def test_missing_and_directories(origin, root):
    assert origin.get("/nope").status == 404
    assert origin.get("/sub").body == b"<p>index</p>\n"
    assert origin.get("/sub/").status == 200
    (root / "empty").mkdir()
    assert origin.get("/empty/").status == 404
    assert origin.get("/a.txt/x").status == 404


def test_etag_and_last_modified_304(origin):
    r = origin.get("/a.txt")
    etag, lm = r.headers["ETag"], r.headers["Last-Modified"]
    r2 = origin.get("/a.txt", {"If-None-Match": etag})
    assert r2.status == 304 and r2.body == b"" and r2.headers["ETag"] == etag
    assert origin.get("/a.txt", {"If-None-Match": '"other"'}).status == 200
    assert origin.get("/a.txt", {"If-Modified-Since": lm}).status == 304
    assert origin.get("/a.txt", {"If-Modified-Since": "Thu, 01 Jan 1998 00:00:00 GMT"}).status == 200


def test_etag_changes_with_content(origin, root):
    e1 = origin.get("/a.txt").headers["ETag"]
    (root / "a.txt").write_bytes(b"changed, longer content\n")
    r = origin.get("/a.txt")
    assert r.body == b"changed, longer content\n" and r.headers["ETag"] != e1


def test_range(origin, root):
    body = (root / "w.bin").read_bytes()
    r = origin.get("/w.bin", {"Range": "bytes=10-19"})
    assert r.status == 206 and r.body == body[10:20]
    assert r.headers["Content-Range"] == "bytes 10-19/%d" % len(body)
    r = origin.get("/w.bin", {"Range": "bytes=-100"})
    assert r.status == 206 and r.body == body[-100:]
    r = origin.get("/w.bin", {"Range": "bytes=1000-"})
    assert r.status == 206 and r.body == body[1000:]  # > 64 KiB: streamed range
    r = origin.get("/a.txt", {"Range": "bytes=100-200"})
    assert r.status == 416 and r.headers["Content-Range"] == "bytes */13"
    # If-Range with a stale validator: the whole body.
    r = origin.get("/a.txt", {"Range": "bytes=0-1", "If-Range": '"stale"'})
    assert r.status == 200 and r.body == b"hello origin\n"
    etag = origin.get("/a.txt").headers["ETag"]
    r = origin.get("/a.txt", {"Range": "bytes=0-4", "If-Range": etag})
    assert r.status == 206 and r.body == b"hello"
    assert origin.head("/a.txt", {"Range": "bytes=0-1"}).status == 200


def test_hdrs_override(origin, root):
    (root / "m.json.hdrs").write_text(
        "Cache-Control: no-store\nVary: Accept-Encoding\nSurrogate-Key: a b\n")
    r = origin.get("/m.json")
    assert r.status == 200 and r.body == b'{"k": 1}\n'
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers.get_all("Cache-Control") == ["no-store"]
    assert r.headers["Vary"] == "Accept-Encoding"
    assert r.headers["Surrogate-Key"] == "a b"
    assert origin.get("/m.json.hdrs").status == 404  # never served
    (root / "a.txt.hdrs").write_text("Status: 404\nCache-Control: max-age=60\n")
    r = origin.get("/a.txt")
    assert r.status == 404 and r.headers["Cache-Control"] == "max-age=60"
    # Headers without a body file: an empty response (redirects, cacheable errors).
    (root / "moved.hdrs").write_text("Status: 301\nLocation: /a.txt\n")
    r = origin.get("/moved")
    assert r.status == 301 and r.headers["Location"] == "/a.txt"


def test_put_delete(origin, root):
    r = origin.request("PUT", "/models/m1/1/model.onnx", body=b"\x01\x02" * 40000)
    assert r.status == 201 and r.json()["size"] == 80000
    assert (root / "models/m1/1/model.onnx").read_bytes() == b"\x01\x02" * 40000
    g = origin.get("/models/m1/1/model.onnx")
    assert g.body == b"\x01\x02" * 40000 and g.headers["ETag"] == r.headers["ETag"]
    r = origin.request("PUT", "/models/m1/1/model.onnx", body=b"new")
    assert r.status == 200
    assert origin.get("/models/m1/1/model.onnx").body == b"new"
    assert not [n for n in os.listdir(root / "models/m1/1") if n.startswith(".mlcdn")]
    assert origin.request("DELETE", "/models/m1/1/model.onnx").status == 204
    assert origin.get("/models/m1/1/model.onnx").status == 404
    assert origin.request("DELETE", "/models/m1/1/model.onnx").status == 404
    assert origin.request("PUT", "/a.txt/below", body=b"x").status == 409
    assert origin.request("PUT", "/", body=b"x").status == 400


def test_post_echo(origin):
    r = origin.request("POST", "/predict?x=1", body=b'{"input": [1, 2]}',
                       headers={"Content-Type": "application/json"})
    assert r.status == 200
    assert r.json() == {"method": "POST", "path": "/predict", "query": "x=1",
                        "content_type": "application/json", "body_len": 17}


def test_post_echo_escapes(origin):
    """Header bytes may be obs-text (RFC 9110 §5.5), which is not UTF-8: the echo turns them
    into U+FFFD and stays JSON in UTF-8 (RFC 8259 §8.1); controls take their short escapes."""
    r = origin.request("POST", "/e", body=b"x",
                       headers={"Content-Type": b'text/\xff\xc3\xa9\t"q"\\'})
    assert r.status == 200
    assert b'"content_type": "text/\xef\xbf\xbd\xc3\xa9\\t\\"q\\"\\\\"' in r.body
    assert json.loads(r.body.decode("utf-8"))["content_type"] == 'text/\ufffd\u00e9\t"q"\\'


def test_stats_and_reset(origin):
    origin.get("/a.txt")
    origin.get("/a.txt")
    origin.head("/m.json")
    origin.get("/nope")
    origin.request("POST", "/predict", body=b"{}")
    s = stats(origin)
    assert s["total"] == 5
    assert s["requests"] == {"/a.txt": 2, "/m.json": 1, "/nope": 1, "/predict": 1}
    assert s["methods"] == {"GET": 3, "HEAD": 1, "POST": 1}
    r = origin.request("POST", "/__reset")
    assert r.status == 200
    assert stats(origin) == {"total": 0, "requests": {}, "methods": {}}


def test_stats_across_threads(mlcdn, root):
    o = mlcdn("origin", ["--listen", "127.0.0.1:0", "--root", root, "--threads", "4"])
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        codes = list(ex.map(lambda i: o.get("/a.txt").status, range(200)))
    assert codes == [200] * 200
    assert stats(o)["requests"]["/a.txt"] == 200


def test_traversal_refused(origin, tmp_path):
    (tmp_path / "secret").write_text("secret")
    for path in [b"/../secret", b"/%2e%2e/secret", b"/sub/..%2f..%2fsecret", b"/.%2E/secret",
                 b"/sub/../../secret", b"/a%00.txt"]:
        out = raw(origin.host, origin.port,
                  b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status = int(out.split(b" ", 2)[1])
        assert status in (400, 404), (path, out[:100])
        assert b"secret" not in out.split(b"\r\n\r\n", 1)[1]
    os.symlink(tmp_path / "secret", origin_root(tmp_path) / "link")
    assert origin.get("/link").status == 404


def origin_root(tmp_path):
    return tmp_path / "root"


def test_latency_flag_and_header(mlcdn, root):
    o = mlcdn("origin", ["--listen", "127.0.0.1:0", "--root", root, "--latency", "200"])
    t = time.monotonic()
    assert o.get("/a.txt").status == 200
    assert time.monotonic() - t >= 0.2
    t = time.monotonic()
    assert o.get("/a.txt", {"X-Origin-Latency": "300"}).status == 200
    assert time.monotonic() - t >= 0.3
    assert o.get("/a.txt", {"X-Origin-Latency": "bogus"}).status == 400
    # The delay never blocks the loop: concurrent slow requests overlap.
    t = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(5) as ex:
        codes = list(ex.map(lambda i: o.get("/a.txt", {"X-Origin-Latency": "400"}).status,
                            range(5)))
    assert codes == [200] * 5 and time.monotonic() - t >= 0.4
    assert o.get("/__stats").status == 200


def test_cache_control_flag_and_config(mlcdn, root, tmp_path):
    cfg = tmp_path / "origin.conf"
    cfg.write_text('cache_control = "public, max-age=5";\nlatency = "0";\n')
    o = mlcdn("origin", ["--config", cfg, "--listen", "127.0.0.1:0", "--root", root])
    assert o.get("/a.txt").headers["Cache-Control"] == "public, max-age=5"
    o2 = mlcdn("origin", ["--config", cfg, "--listen", "127.0.0.1:0", "--root", root,
                          "--cache-control", "no-cache"])
    assert o2.get("/a.txt").headers["Cache-Control"] == "no-cache"


def test_sparse_large_file_bounded_memory(origin, root):
    size = 512 * 1024 * 1024
    with open(root / "sparse.bin", "wb") as f:
        f.truncate(size)
    import http.client
    conn = http.client.HTTPConnection(origin.host, origin.port, timeout=60)
    conn.request("GET", "/sparse.bin")
    r = conn.getresponse()
    assert r.status == 200 and int(r.headers["Content-Length"]) == size
    got, peak = 0, 0
    while True:
        chunk = r.read(1 << 20)
        if not chunk:
            break
        got += len(chunk)
        if got % (64 << 20) < (1 << 20):
            peak = max(peak, rss_kib(origin.pid))
    conn.close()
    assert got == size
    assert peak < 64 * 1024, "origin RSS %d KiB while streaming" % peak


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_keepalive_pipelined_mix(origin):
    req = (b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET /w.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=0-3\r\n\r\n"
           b"HEAD /m.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out = raw(origin.host, origin.port, req)
    assert out.count(b"HTTP/1.1 ") == 3
    assert b"hello origin\n" in out and b"HTTP/1.1 206" in out


def test_sigterm_graceful(mlcdn, root):
    o = mlcdn("origin", ["--listen", "127.0.0.1:0", "--root", root])
    assert o.get("/a.txt").status == 200
    assert o.stop() == 0


def test_bad_flags(root):
    import subprocess
    from mlcdn_proc import binary
    r = subprocess.run([binary(), "origin", "--listen", "127.0.0.1:0"], capture_output=True,
                       timeout=10)
    assert r.returncode == 2 and b"--root" in r.stderr
    r = subprocess.run([binary(), "origin", "--root", str(root), "--latency", "x"],
                       capture_output=True, timeout=10)
    assert r.returncode == 2


def test_out_of_descriptors_the_origin_pauses_and_recovers(mlcdn, root):
    """The origin shares the edge's HTTP server: more idle clients than descriptors, then
    all gone, and it must answer again without spinning."""
    o = mlcdn("origin", ["--listen", "127.0.0.1:0", "--root", root, "--threads", "2"],
              nofile=64)
    for _ in range(4):
        assert fdlimit.flood(o.host, o.port, 64 * 6) > 64
        # The first requests may find every descriptor still held by clients that are
        # leaving: opening the file then fails, and that is a 503 (try again), never a 500.
        deadline = time.monotonic() + 20
        while True:
            r = o.get("/a.txt", timeout=20)
            if r.status != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert r.status == 200 and r.body == b"hello origin\n"
        before = fdlimit.cpu_seconds(o.pid)
        time.sleep(2)
        assert fdlimit.cpu_seconds(o.pid) - before < 0.5
    assert 1 <= o.log().count("accepting paused") <= 4


def test_error_reaches_a_client_that_sends_everything_first(mlcdn, root):
    o = mlcdn("origin", ["--listen", "127.0.0.1:0", "--root", root, "--max-body", "1M"])
    size = 32 * 1024 * 1024  # far more than loopback sockets buffer
    with socket.create_connection((o.host, o.port), timeout=30) as s:
        s.sendall(b"PUT /up.bin HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size
                  + b"u" * size)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    assert out.startswith(b"HTTP/1.1 413"), out[:80]
    assert o.get("/a.txt").status == 200
