"""End-to-end tests of the edge's tiers behind L1: the L2 disk store across
kill -9, corrupt files, L1 admission of L2 hits, multi-GiB objects streamed through a file
with bounded memory, Range requests on filling objects, the Redis shared tier and its
circuit breaker, parent edges and loop refusal, and stale-if-error.

Real processes on loopback: `mlcdn origin`, `mlcdn edge`, redis-server; curl-like clients
from http.client. Every process is stopped by PID (the mlcdn fixture; redis by its Popen).
"""
import concurrent.futures
import hashlib
import http.client
import http.server
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

from mlcdn_proc import free_port, metric, mlcdn, raw, request, wait_for  # noqa: F401  (mlcdn is a fixture)

EDGE_READY = r"listening on (?P<url>\S+) admin=(?P<admin>\S+) region=\S+ name=(?P<name>\S+)"




@pytest.fixture
def site(mlcdn, tmp_path):
    """An origin serving tmp_path/root, and a factory of edges in front of it."""
    root = tmp_path / "root"
    root.mkdir()

    class Site:
        pass

    s = Site()
    s.root = root
    s.disk = tmp_path / "l2"
    s.origin = mlcdn("origin", ["--listen", "127.0.0.1:0", "--root", str(root)])

    def put(name, data, headers=None):
        p = root / name.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        if headers:
            (root / (name.lstrip("/") + ".hdrs")).write_text(
                "".join("%s: %s\n" % kv for kv in headers.items()))
        return data

    def edge(*extra, origin=None, listen="127.0.0.1:0"):
        e = mlcdn("edge", ["--listen", listen, "--admin", "127.0.0.1:0",
                           "--origin", origin or s.origin.url, "--region", "t",
                           "--threads", "2"] + [str(a) for a in extra],
                  ready_pattern=EDGE_READY)
        e.admin = e.ready["admin"]
        e.name = e.ready["name"]
        plain_get = e.get

        def get(path, headers=None, **kw):
            # One site name whatever the edge's port, so keys survive restarts on new ports.
            h = {"Host": "cdn.example.test"}
            h.update(headers or {})
            return plain_get(path, headers=h, **kw)

        e.get = get
        return e

    def origin_count(path):
        return s.origin.get("/__stats").json()["requests"].get(path, 0)

    s.put = put
    s.edge = edge
    s.origin_count = origin_count
    return s


def l2_files(disk):
    out = []
    for d, dirs, files in os.walk(disk):
        if os.path.basename(d) == "tmp":
            continue
        out += [os.path.join(d, f) for f in files if "-" in f]
    return out


# ---------------------------------------------------------------- L2 disk store

def test_l2_survives_kill_9_and_serves_l2_hits(site):
    bodies = {"/m/%d.bin" % i: site.put("/m/%d.bin" % i, os.urandom(1000 + 97 * i),
                                         {"Cache-Control": "max-age=3600"}) for i in range(20)}
    e = site.edge("--mem", "8M", "--disk-dir", site.disk, "--disk", "64M")
    for p, b in bodies.items():
        r = e.get(p)
        assert r.status == 200 and r.body == b and r.headers["X-Cache-Level"] == "ORIGIN"
    wait_for(lambda: metric(e.admin, "mlcdn_edge_l2_stored_total") >= 20, what="L2 writes")
    os.kill(e.pid, signal.SIGKILL)
    e.popen.wait(5)
    e2 = site.edge("--mem", "8M", "--disk-dir", site.disk, "--disk", "64M")
    for p, b in bodies.items():
        r = e2.get(p)
        assert r.status == 200 and r.body == b, p
        assert r.headers["X-Cache-Level"] == "L2" and r.headers["X-Cache"] == "HIT"
        assert site.origin_count(p) == 1
    m = request("GET", e2.admin + "/metrics").body.decode()
    assert 'mlcdn_edge_tier_hits_total{level="L2"} 20' in m


def test_l2_hits_enter_l1_on_the_second_hit_only(site):
    site.put("/a.bin", b"a" * 5000, {"Cache-Control": "max-age=3600"})
    e = site.edge("--disk-dir", site.disk, "--disk", "64M")
    e.get("/a.bin")
    wait_for(lambda: metric(e.admin, "mlcdn_edge_l2_stored_total") >= 1, what="L2 write")
    e.stop()
    e = site.edge("--disk-dir", site.disk, "--disk", "64M", "--l2-admit-hits", "2")
    levels = [e.get("/a.bin").headers["X-Cache-Level"] for _ in range(4)]
    assert levels == ["L2", "L2", "L1", "L1"]
    assert metric(e.admin, "mlcdn_edge_l2_promoted_total") == 1


def test_l2_hits_of_64kib_and_more_stay_in_l2_as_documented(site):
    """L2 hits are copied into L1 only for bodies under 64 KiB; docs/edge.md says so (and
    why), so the docs and the code agree."""
    small = site.put("/s.bin", b"s" * (64 * 1024 - 1), {"Cache-Control": "max-age=3600"})
    large = site.put("/l.bin", b"l" * (64 * 1024), {"Cache-Control": "max-age=3600"})
    e = site.edge("--disk-dir", site.disk, "--disk", "64M")
    e.get("/s.bin")
    e.get("/l.bin")
    wait_for(lambda: metric(e.admin, "mlcdn_edge_l2_stored_total") >= 2, what="L2 writes")
    e.stop()
    e = site.edge("--disk-dir", site.disk, "--disk", "64M", "--l2-admit-hits", "1")
    for path, body, levels in (("/s.bin", small, ["L2", "L1", "L1"]),
                               ("/l.bin", large, ["L2", "L2", "L2"])):
        seen = []
        for _ in range(3):
            r = e.get(path)
            assert r.body == body
            seen.append(r.headers["X-Cache-Level"])
        assert seen == levels, path
    assert metric(e.admin, "mlcdn_edge_l2_promoted_total") == 1
    doc = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "edge.md")).read()
    bullet = doc.split("* **L1 admission of L2 hits**", 1)[1].split("\n* ", 1)[0]
    assert "smaller than 64 KiB" in bullet and "64 KiB and more are never copied" in bullet


def test_corrupt_l2_file_is_refetched_not_served(site):
    body = site.put("/c.bin", os.urandom(100_000), {"Cache-Control": "max-age=3600"})
    e = site.edge("--disk-dir", site.disk, "--disk", "64M")
    e.get("/c.bin")
    wait_for(lambda: len(l2_files(site.disk)) == 1, what="the L2 file")
    e.stop()
    path = l2_files(site.disk)[0]
    size = os.path.getsize(path)
    with open(path, "r+b") as f:  # flip one byte near the end of the body
        f.seek(size - 1000)
        c = f.read(1)
        f.seek(size - 1000)
        f.write(bytes([c[0] ^ 0xFF]))
    e = site.edge("--disk-dir", site.disk, "--disk", "64M")
    r = e.get("/c.bin")
    assert r.status == 200 and r.body == body
    assert r.headers["X-Cache-Level"] == "ORIGIN"
    assert site.origin_count("/c.bin") == 2
    # A truncated file is caught the same way.
    wait_for(lambda: metric(e.admin, "mlcdn_edge_l2_stored_total") >= 1, what="rewrite")
    e.stop()
    path = l2_files(site.disk)[0]
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 10)
    e = site.edge("--disk-dir", site.disk, "--disk", "64M")
    r = e.get("/c.bin")
    assert r.body == body and r.headers["X-Cache-Level"] == "ORIGIN"
    assert site.origin_count("/c.bin") == 3


def test_l2_file_changed_while_open_is_not_served(site):
    """Hot L2 files stay open (no check per hit); a change behind the edge's back drops them."""
    body = site.put("/o.bin", os.urandom(100_000), {"Cache-Control": "max-age=3600"})
    args = ("--disk-dir", site.disk, "--disk", "64M")
    e = site.edge(*args)
    e.get("/o.bin")
    wait_for(lambda: metric(e.admin, "mlcdn_edge_l2_stored_total") >= 1, what="L2 write")
    e.stop()
    e = site.edge(*args)  # empty L1: every hit below is an L2 hit (100 kB: not copied to L1)
    for _ in range(6):
        r = e.get("/o.bin")
        assert r.body == body and r.headers["X-Cache-Level"] == "L2"
    opens = metric(e.admin, "mlcdn_edge_l2_file_opens_total")
    assert 1 <= opens <= 2  # one per event loop at most
    for _ in range(6):
        r = e.get("/o.bin")
        assert r.body == body and r.headers["X-Cache-Level"] == "L2"
    # From open files: still one open per event loop at most (the first six may all have
    # gone to one loop, the next ones to the other), never one per hit.
    assert opens <= metric(e.admin, "mlcdn_edge_l2_file_opens_total") <= 2
    path = l2_files(site.disk)[0]
    size = os.path.getsize(path)
    with open(path, "r+b") as f:  # flip one byte of the body while the edge has it open
        f.seek(size - 1000)
        c = f.read(1)
        f.seek(size - 1000)
        f.write(bytes([c[0] ^ 0xFF]))
    r = e.get("/o.bin")
    assert r.status == 200 and r.body == body
    assert r.headers["X-Cache-Level"] == "ORIGIN"
    assert metric(e.admin, "mlcdn_edge_l2_corrupt_total") >= 1
    # A file truncated while open is caught the same way.
    wait_for(lambda: metric(e.admin, "mlcdn_edge_l2_stored_total") >= 1, what="rewrite")
    e.stop()
    e = site.edge(*args)
    for _ in range(4):
        assert e.get("/o.bin").headers["X-Cache-Level"] == "L2"
    path = l2_files(site.disk)[0]
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 10)
    r = e.get("/o.bin")
    assert r.body == body and r.headers["X-Cache-Level"] == "ORIGIN"
    assert site.origin_count("/o.bin") == 3


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MiB tmpfs (needs root to mount; skipped with the reason otherwise)."""
    d = tmp_path / "tiny"
    d.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(d)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip("cannot mount a small tmpfs to fill (%s)" % p.stderr.strip())
    yield d
    subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_full_disk_stops_admission_and_serving_goes_on(site, tiny_disk):
    bodies = {"/f/%d.bin" % i: site.put("/f/%d.bin" % i, os.urandom(300_000),
                                         {"Cache-Control": "max-age=3600"}) for i in range(12)}
    # The budget says 64M, the file system holds 2M: writes hit ENOSPC.
    e = site.edge("--mem", "1M", "--disk-dir", tiny_disk, "--disk", "64M")
    for _ in range(2):
        for p, b in bodies.items():
            r = e.get(p)
            assert r.status == 200 and r.body == b, p
    wait_for(lambda: metric(e.admin, "mlcdn_edge_l2_write_errors_total") >= 1,
             what="a write error counted")
    assert metric(e.admin, "mlcdn_edge_l2_not_stored_total") >= 1
    # What did fit is still served from L2.
    levels = [e.get(p).headers["X-Cache-Level"] for p in bodies]
    assert "L2" in levels and all(lv in ("L1", "L2", "ORIGIN") for lv in levels)
    assert request("GET", e.admin + "/health").json()["status"] == "ok"


def test_bad_disk_flags_are_named(site, mlcdn):
    f = site.root / "a-file"
    f.write_bytes(b"x")
    p = subprocess.run([mlcdn_bin(), "edge", "--origin", site.origin.url, "--listen",
                        "127.0.0.1:0", "--disk-dir", str(f / "sub")],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode != 0 and "a-file" in p.stderr
    p = subprocess.run([mlcdn_bin(), "edge", "--origin", site.origin.url, "--listen",
                        "127.0.0.1:0", "--disk", "lots"], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode != 0 and "--disk" in p.stderr


def mlcdn_bin():
    from mlcdn_proc import binary
    return binary()


# ---------------------------------------------------------------- large objects

def sparse_file(path, size, marks):
    with open(path, "wb") as f:
        f.truncate(size)
        for off, data in marks:
            f.seek(off)
            f.write(data)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(8 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


def vm_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def stream_sha(edge, path, headers=None, stop_after=None):
    c = http.client.HTTPConnection(edge.host, edge.port, timeout=60)
    h = {"Host": "cdn.example.test"}
    h.update(headers or {})
    c.request("GET", path, headers=h)
    r = c.getresponse()
    h = hashlib.sha256()
    n = 0
    while True:
        b = r.read(1 << 20)
        if not b:
            break
        h.update(b)
        n += len(b)
        if stop_after and n >= stop_after:
            break
    c.close()
    return r, h.hexdigest(), n


def test_2gib_object_streams_through_l2_with_bounded_rss(site):
    size = 2 << 30
    marks = [(0, os.urandom(4096)), (1 << 30, os.urandom(4096)), (size - 4096, os.urandom(4096))]
    sparse_file(site.root / "weights.bin", size, marks)
    (site.root / "weights.bin.hdrs").write_text("Cache-Control: max-age=3600\n")
    want = sha256_file(site.root / "weights.bin")
    e = site.edge("--mem", "64M", "--max-mem-object", "8M", "--disk-dir", site.disk,
                  "--disk", "20G")
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], vm_rss_kib(e.pid))
            time.sleep(0.02)

    t = threading.Thread(target=sample)
    t.start()
    try:
        r, got, n = stream_sha(e, "/weights.bin")
        assert r.status == 200 and n == size and got == want
        assert r.getheader("X-Cache-Level") == "ORIGIN"
        wait_for(lambda: metric(e.admin, "mlcdn_edge_l2_stored_total") >= 1, what="L2 commit")
        # Served again from L2 (sendfile from the file), same bytes.
        r, got, n = stream_sha(e, "/weights.bin")
        assert r.getheader("X-Cache-Level") == "L2" and got == want and n == size
    finally:
        done.set()
        t.join()
    assert peak[0] < 200 * 1024, "edge RSS peaked at %d KiB" % peak[0]
    assert site.origin_count("/weights.bin") == 1
    # Ranges of the cached object, from inside the body and across a marked block.
    off = (1 << 30) - 100
    r = e.get("/weights.bin", headers={"Range": "bytes=%d-%d" % (off, off + 4195)})
    assert r.status == 206 and r.body == b"\0" * 100 + marks[1][1] + b"\0" * 0
    r = e.get("/weights.bin", headers={"Range": "bytes=-4096"})
    assert r.status == 206 and r.body == marks[2][1]


def test_client_leaving_mid_download_does_not_abort_the_fill(site):
    size = 96 << 20
    sparse_file(site.root / "big.bin", size, [(size - 10, b"0123456789")])
    (site.root / "big.bin.hdrs").write_text("Cache-Control: max-age=3600\n")
    want = sha256_file(site.root / "big.bin")
    e = site.edge("--max-mem-object", "4M", "--disk-dir", site.disk, "--disk", "2G")
    r, _, n = stream_sha(e, "/big.bin", stop_after=1 << 20)
    assert r.status == 200 and n < size
    wait_for(lambda: metric(e.admin, "mlcdn_edge_l2_stored_total") >= 1, timeout=20,
             what="the fill to finish without its client")
    r, got, n = stream_sha(e, "/big.bin")
    assert got == want and r.getheader("X-Cache-Level") == "L2"
    assert site.origin_count("/big.bin") == 1


class SlowOrigin:
    """A Python origin that sends a body of known length slowly, to observe fills."""

    def __init__(self, body, piece=64 << 10, delay=0.03):
        outer = self
        self.count = 0

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                outer.count += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "max-age=600")
                self.end_headers()
                for i in range(0, len(body), piece):
                    self.wfile.write(body[i:i + piece])
                    self.wfile.flush()
                    time.sleep(delay)

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d" % self.srv.server_address[1]
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.mark.parametrize("in_file", [False, True])
def test_range_on_an_object_still_filling(site, in_file):
    body = os.urandom(3 << 20)
    slow = SlowOrigin(body)
    try:
        extra = ["--max-mem-object", "1M"] if in_file else []
        e = site.edge(*extra, origin=slow.url)
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            full = ex.submit(e.get, "/s.bin")
            time.sleep(0.2)  # the fill is running
            a, b = 2_500_000, 2_600_000
            r = e.get("/s.bin", headers={"Range": "bytes=%d-%d" % (a, b)})
            assert r.status == 206 and r.body == body[a:b + 1]
            assert r.headers["Content-Range"] == "bytes %d-%d/%d" % (a, b, len(body))
            assert "collapsed" in r.headers["Cache-Status"]
            assert full.result().body == body
        assert slow.count == 1
    finally:
        slow.close()


# ---------------------------------------------------------------- Redis shared tier

@pytest.fixture
def redis(tmp_path):
    exe = shutil.which("redis-server")
    if not exe:
        pytest.skip("redis-server is not installed (scripts/install-deps.sh installs it)")

    class R:
        pass

    r = R()
    r.port = free_port()
    r.url = "redis://127.0.0.1:%d" % r.port

    def start():
        r.p = subprocess.Popen([exe, "--port", str(r.port), "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: subprocess.run(["redis-cli", "-p", str(r.port), "ping"],
                                        capture_output=True, text=True).stdout.strip()
                 == "PONG", what="redis-server")

    def stop(sig=signal.SIGKILL):
        if r.p.poll() is None:
            r.p.send_signal(sig)
            if sig != signal.SIGSTOP:  # a stopped process does not exit: nothing to wait for
                r.p.wait(10)

    r.start = start
    r.stop = stop
    start()
    yield r
    stop()


def test_redis_tier_shares_objects_between_edges(site, redis):
    body = site.put("/shared.json", b'{"w": [1, 2, 3]}', {"Cache-Control": "max-age=300"})
    e1 = site.edge("--redis", redis.url)
    e2 = site.edge("--redis", redis.url)
    time.sleep(0.3)  # the loops connect in the background
    r = e1.get("/shared.json")
    assert r.headers["X-Cache-Level"] == "ORIGIN"
    wait_for(lambda: subprocess.run(["redis-cli", "-p", str(redis.port), "keys", "mlcdn:obj:*"],
                                    capture_output=True, text=True).stdout.strip() != "",
             what="the object in Redis")
    def cli(*args):
        return subprocess.run(["redis-cli", "-p", str(redis.port)] + list(args),
                              capture_output=True, text=True).stdout.strip()

    key = cli("keys", "mlcdn:obj:*").split()[0]
    ttl = int(cli("pttl", key))
    assert 0 < ttl <= 300_000  # SET ... PX with the remaining freshness
    r = e2.get("/shared.json")
    assert r.status == 200 and r.body == body and r.headers["X-Cache-Level"] == "REDIS"
    assert site.origin_count("/shared.json") == 1
    assert metric(e2.admin, 'mlcdn_edge_tier_hits_total{level="REDIS"}') == 1


def test_redis_killed_during_load_fails_no_request(site, redis):
    for i in range(50):
        site.put("/k/%d" % i, b"v%d" % i, {"Cache-Control": "max-age=300"})
    e = site.edge("--redis", redis.url)
    time.sleep(0.3)
    stop = threading.Event()
    results = []

    def client(k):
        n = 0
        while not stop.is_set():
            i = (k * 7 + n) % 50
            r = request("GET", e.url + "/k/%d?n=%d" % (i, n % 5))
            results.append((r.status, r.body == b"v%d" % i))
            n += 1

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        fs = [ex.submit(client, k) for k in range(8)]
        time.sleep(1.0)
        redis.stop(signal.SIGSTOP)  # first slow (no answers) ...
        time.sleep(1.0)
        redis.stop(signal.SIGKILL)  # ... then gone
        time.sleep(1.0)
        stop.set()
        for f in fs:
            f.result()
    assert len(results) > 100
    assert all(s == 200 and ok for s, ok in results), [x for x in results if x != (200, True)][:5]
    m = request("GET", e.admin + "/metrics").body.decode()
    assert "mlcdn_edge_redis_errors_total" in m



def redis_cli(redis, *args, stdin=None):
    """redis-cli's raw answer as bytes; with stdin, that is the last argument (-x), sent as
    is, so any byte can go into a value."""
    argv = ["redis-cli", "-p", str(redis.port)] + (["-x"] if stdin is not None else [])
    out = subprocess.run(argv + [str(a) for a in args], input=stdin, capture_output=True,
                         check=True).stdout
    return out[:-1] if out.endswith(b"\n") else out  # raw replies end with one newline


def redis_value(redis, key):
    n = int(redis_cli(redis, "strlen", key))
    v = redis_cli(redis, "getrange", key, 0, n - 1) if n else b""
    assert len(v) == n
    return v


def redis_clients(redis):
    """Clients other than redis-cli that have sent a command (the edge's loops: PING ends
    their handshake)."""
    lines = redis_cli(redis, "client", "list").decode().splitlines()
    cmds = [ln.split(" cmd=", 1)[1].split()[0] for ln in lines if " cmd=" in ln]
    return sum(1 for c in cmds if not c.startswith("client") and c != "NULL")


def wait_redis_connected(redis, n):
    """Until exactly n edge loops are connected: a loop skips the tier while it connects."""
    wait_for(lambda: redis_clients(redis) == n, what="%d Redis connections" % n)
    time.sleep(0.5)  # the PING's answer is read by the edge's loop right after


@pytest.mark.parametrize("damage", ["flip", "cut"])
def test_corrupt_redis_value_is_refetched_not_served(site, redis, damage):
    body = site.put("/rc.bin", os.urandom(50_000), {"Cache-Control": "max-age=300"})
    # A loaded test host may take more than the default 50 ms for a GET: a timeout is a
    # miss too, and not the outcome under test.
    args = ("--redis", redis.url, "--redis-timeout", "2s")
    a = site.edge(*args)
    wait_redis_connected(redis, 2)
    assert a.get("/rc.bin").headers["X-Cache-Level"] == "ORIGIN"
    wait_for(lambda: redis_cli(redis, "keys", "mlcdn:obj:*") != b"", what="the object in Redis")
    key = redis_cli(redis, "keys", "mlcdn:obj:*").decode().split()[0]
    good = redis_value(redis, key)
    a.stop()
    if damage == "flip":  # one byte in the middle of the body
        off = len(good) - len(body) // 2
        redis_cli(redis, "setrange", key, off, stdin=bytes([good[off] ^ 0x20]))
    else:  # cut short inside the body, as a full Redis or a broken proxy would leave it
        redis_cli(redis, "set", key, stdin=good[:len(good) - 1000])
    bad = redis_value(redis, key)
    assert bad != good
    wait_redis_connected(redis, 0)

    b = site.edge(*args)  # a fresh edge: empty L1, no L2
    wait_redis_connected(redis, 2)
    r = b.get("/rc.bin")
    assert r.status == 200 and r.body == body
    assert r.headers["X-Cache-Level"] == "ORIGIN"
    assert site.origin_count("/rc.bin") == 2
    assert metric(b.admin, "mlcdn_edge_redis_corrupt_total") == 1
    assert metric(b.admin, 'mlcdn_edge_redis_skipped_total') == 0
    # The refetch stored a good copy in place of the bad one.
    wait_for(lambda: redis_cli(redis, "exists", key) == b"1" and redis_value(redis, key) != bad,
             what="a new value in Redis")
    assert b.log().count("redis value corrupt") == 1
    b.stop()
    wait_redis_connected(redis, 0)
    c = site.edge(*args)
    wait_redis_connected(redis, 2)
    r = c.get("/rc.bin")
    assert r.status == 200 and r.body == body and r.headers["X-Cache-Level"] == "REDIS"
    assert site.origin_count("/rc.bin") == 2
    assert metric(c.admin, "mlcdn_edge_redis_corrupt_total") == 0


# ---------------------------------------------------------------- parents

def test_parent_chain_of_two_edges(site):
    body = site.put("/p.txt", b"through the parent", {"Cache-Control": "max-age=300"})
    parent = site.edge()
    child1 = site.edge("--parent", parent.url)
    child2 = site.edge("--parent", parent.url)
    host = {"Host": "cdn.example.test"}  # one site name, whichever edge DNS picked
    r = child1.get("/p.txt", headers=host)
    assert r.status == 200 and r.body == body
    assert r.headers["X-Cache-Level"] == "PARENT" and r.headers["X-Cache"] == "MISS"
    r = child2.get("/p.txt", headers=host)  # a miss at child2, a hit at the parent
    assert r.headers["X-Cache-Level"] == "PARENT"
    assert "mlcdn; hit" in r.headers.get_all("Cache-Status")[0]
    r = child1.get("/p.txt", headers=host)
    assert r.headers["X-Cache-Level"] == "L1"
    assert site.origin_count("/p.txt") == 1
    # The parent saw both children's Via.
    assert parent.get("/p.txt", headers=host).status == 200


def test_parent_loop_is_refused(site):
    pa, pb = free_port(), free_port()
    a = site.edge("--parent", "http://127.0.0.1:%d" % pb, listen="127.0.0.1:%d" % pa)
    b = site.edge("--parent", "http://127.0.0.1:%d" % pa, listen="127.0.0.1:%d" % pb)
    site.put("/loop.txt", b"x")
    r = a.get("/loop.txt")
    assert r.status == 508
    assert site.origin_count("/loop.txt") == 0
    r = request("GET", b.url + "/loop.txt", headers={"Via": "1.1 %s (mlcdn)" % b.name})
    assert r.status == 508 and "loop" in r.json()["error"]


# ---------------------------------------------------------------- stale serving

def test_origin_down_serves_stale_within_stale_if_error(site, mlcdn):
    site.put("/s1.txt", b"one", {"Cache-Control": "max-age=1, stale-if-error=60"})
    site.put("/s2.txt", b"two", {"Cache-Control": "max-age=1"})
    site.put("/s3.txt", b"three", {"Cache-Control": "max-age=1"})
    e = site.edge("--connect-timeout", "300ms")
    e2 = site.edge("--connect-timeout", "300ms", "--stale-if-error", "60s")
    for p in ("/s1.txt", "/s2.txt"):
        assert e.get(p).status == 200
    assert e2.get("/s3.txt").status == 200
    time.sleep(2.2)
    site.origin.stop()
    r = e.get("/s1.txt")
    assert r.status == 200 and r.body == b"one"
    assert "stale-if-error" in r.headers["Cache-Status"] and r.headers["X-Cache"] == "STALE"
    r = e.get("/s2.txt")  # no stale-if-error anywhere: the outage shows
    assert r.status == 502
    r = e2.get("/s3.txt")  # --stale-if-error sets the default
    assert r.status == 200 and r.body == b"three"
    assert "stale-if-error" in r.headers["Cache-Status"]


# ---------------------------------------------------------------- routes: POST keyed by body

class PredictOrigin:
    """An origin whose answers say how many requests it got (so a cached answer shows)."""

    def __init__(self):
        outer = self
        self.count = 0
        self.bodies = []

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def answer(self, payload):
                outer.count += 1
                data = ('{"n": %d, "got": %s}' % (outer.count, payload)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.bodies.append(body)
                self.answer(body.decode() or "null")

            def do_GET(self):
                self.answer('"%s"' % self.path)

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d" % self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


ROUTES = """routes = (
  { prefix = "/predict"; methods = ["POST"]; key_body = "json"; ttl = 300; max_body = "1K"; },
  { prefix = "/features/"; methods = ["GET"]; ignore_params = ["session"]; ttl = 60; },
  { prefix = "/embeddings/"; methods = ["GET"]; query_keys = ["id"]; ttl = 60; }
);
"""


def test_post_routes_are_keyed_by_canonical_json(site, tmp_path):
    po = PredictOrigin()
    try:
        conf = tmp_path / "edge.conf"
        conf.write_text(ROUTES)
        e = site.edge("--config", conf, origin=po.url)
        hdr = {"Content-Type": "application/json"}
        r1 = e.request("POST", "/predict", body=b'{"b":1,"a":[1,2]}', headers=hdr)
        assert r1.status == 200 and r1.headers["X-Cache"] == "MISS"
        assert po.bodies == [b'{"b":1,"a":[1,2]}']  # the origin gets the body as sent
        r2 = e.request("POST", "/predict", body=b'{ "a":[1, 2.0], "b":1 }', headers=hdr)
        assert r2.status == 200 and r2.headers["X-Cache"] == "HIT" and r2.body == r1.body
        r3 = e.request("POST", "/predict", body=b'{"a":[1,3],"b":1}', headers=hdr)
        assert r3.headers["X-Cache"] == "MISS" and r3.json()["n"] == 2
        r = e.request("POST", "/predict", body=b'{"a":[1,2,}', headers=hdr)
        assert r.status == 400 and "byte 10" in r.json()["error"]
        r = e.request("POST", "/predict", body=b'{"a":"' + b"x" * 2000 + b'"}', headers=hdr)
        assert r.status == 413
        assert po.count == 2
        # GET routes: the route's query rules make one entry of these.
        a = e.get("/features/u1?b=2&a=1&session=s1")
        b = e.get("/features/u1?a=1&b=2&session=s2")
        assert a.headers["X-Cache"] == "MISS" and b.headers["X-Cache"] == "HIT"
        c = e.get("/embeddings/e?id=7&trace=1")
        d = e.get("/embeddings/e?trace=2&id=7")
        assert c.headers["X-Cache"] == "MISS" and d.headers["X-Cache"] == "HIT"
        assert e.get("/embeddings/e?id=8").headers["X-Cache"] == "MISS"
        assert po.count == 5
        # A POST outside the routes is forwarded, never cached.
        r = e.request("POST", "/other", body=b'{"a":1}', headers=hdr)
        assert r.headers["X-Cache"] == "BYPASS"
    finally:
        po.close()


def test_bad_route_config_is_named(site, tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text('routes = ({ prefix = "/p"; methods = ["FOO"]; });\n')
    p = subprocess.run([mlcdn_bin(), "edge", "--origin", site.origin.url, "--listen",
                        "127.0.0.1:0", "--config", str(conf)], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode != 0 and "routes[0].methods" in p.stderr and "FOO" in p.stderr


def test_purge_reaches_the_redis_tier(site, redis):
    """PURGE on the admin port (relative target: the Host is the admin address, as curl
    sends it) drops the Redis copies too, and answers only once they are gone: the very
    next request is fetched from the origin, on this edge and on another one."""
    token = "purge-token"
    site.put("/pr.txt", b"old body", {"Cache-Control": "max-age=300"})
    args = ("--redis", redis.url, "--redis-timeout", "2s", "--disk-dir", site.disk,
            "--admin-token", token)
    a = site.edge(*args)
    b = site.edge("--redis", redis.url, "--redis-timeout", "2s")
    wait_redis_connected(redis, 4)
    assert a.get("/pr.txt").headers["X-Cache-Level"] == "ORIGIN"
    wait_for(lambda: redis_cli(redis, "keys", "mlcdn:obj:*") != b"", what="the object in Redis")
    site.put("/pr.txt", b"new body", {"Cache-Control": "max-age=300"})
    r = request("PURGE", a.admin + "/pr.txt", headers={"Authorization": "Bearer " + token})
    assert r.status == 200, r.body
    assert r.json()["purged"] == 3  # L1, L2 and Redis
    assert redis_cli(redis, "keys", "mlcdn:obj:*") == b""
    r = a.get("/pr.txt")
    assert r.status == 200 and r.body == b"new body", (r.headers["X-Cache-Level"], r.body)
    assert r.headers["X-Cache-Level"] == "ORIGIN"
    r = b.get("/pr.txt")  # the new copy, from the origin or from a's new Redis copy
    assert r.status == 200 and r.body == b"new body", (r.headers["X-Cache-Level"], r.body)
    # a's Redis write is asynchronous: b may come before it lands and fetch on its own.
    level = r.headers["X-Cache-Level"]
    assert level in ("REDIS", "ORIGIN"), level
    assert site.origin_count("/pr.txt") == (2 if level == "REDIS" else 3)


def test_purge_answers_503_when_redis_cannot_be_reached(site, redis):
    """A copy left in Redis would be served again: a purge that cannot reach the tier
    says so (503) instead of {"purged":n}."""
    token = "purge-token"
    site.put("/pd.txt", b"body", {"Cache-Control": "max-age=300"})
    a = site.edge("--redis", redis.url, "--redis-timeout", "2s", "--admin-token", token)
    wait_redis_connected(redis, 2)
    assert a.get("/pd.txt").headers["X-Cache-Level"] == "ORIGIN"
    redis.stop()
    r = request("PURGE", a.admin + "/pd.txt", headers={"Authorization": "Bearer " + token})
    assert r.status == 503, r.body
    assert "redis" in r.json()["error"].lower()
    assert r.json()["purged"] == 1  # L1's copy went anyway


def test_purge_of_an_absolute_url_drops_that_hosts_redis_copy_only(site, redis):
    token = "purge-token"
    site.put("/ph.txt", b"body", {"Cache-Control": "max-age=300"})
    a = site.edge("--redis", redis.url, "--redis-timeout", "2s", "--admin-token", token)
    wait_redis_connected(redis, 2)
    for host in ("a.example.test", "b.example.test"):
        assert a.get("/ph.txt", headers={"Host": host}).headers["X-Cache-Level"] == "ORIGIN"
    wait_for(lambda: len(redis_cli(redis, "keys", "mlcdn:obj:*").split()) == 2,
             what="both copies in Redis")
    adm = a.admin.split("//", 1)[1].split(":")
    out = raw(adm[0], int(adm[1]),
              b"PURGE http://a.example.test/ph.txt HTTP/1.1\r\nHost: a.example.test\r\n"
              b"Authorization: Bearer " + token.encode() + b"\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200"), out
    assert b'{"purged":2}' in out  # L1 and Redis, a.example.test only
    assert len(redis_cli(redis, "keys", "mlcdn:obj:*").split()) == 1
    assert a.get("/ph.txt", headers={"Host": "b.example.test"}).headers["X-Cache"] == "HIT"
    assert a.get("/ph.txt", headers={"Host": "a.example.test"}).headers["X-Cache"] == "MISS"
