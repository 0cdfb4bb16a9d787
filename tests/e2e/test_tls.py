"""HTTPS at the edge: `--tls-listen` beside the plain listener, driven by curl, openssl s_client
and Python's ssl module, with certificates made by the test (openssl req).

What a client sees (hits and misses, large bodies from memory, from L2 files and ranges of
them, pipelined requests), the policy (TLS 1.0/1.1 and non-AEAD suites refused, ALPN, SNI
choosing the certificate, RSA or ECDSA by the client's signature algorithms), resumption
(within an edge, across edges sharing a ticket secret, not across others), the metrics,
garbage on the TLS port, and start-up errors naming the flag or file.
"""
import concurrent.futures
import hashlib
import os
import re
import socket
import ssl
import subprocess
import time

import pytest

from mlcdn_proc import metric, mlcdn, request, wait_for  # noqa: F401  (mlcdn is a fixture)

EDGE_READY = r"listening on (?P<url>\S+) admin=(?P<admin>\S+) .* tls=(?P<tls>\S+)"
HOST = "edge.test"


def openssl(*args, input=None, timeout=20):
    return subprocess.run(["openssl"] + list(args), input=input, capture_output=True,
                          timeout=timeout)


def make_cert(d, name, kind, cn, sans):
    key, crt = str(d / (name + ".key")), str(d / (name + ".crt"))
    newkey = ["-newkey", "rsa:2048"] if kind == "rsa" else \
        ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    r = openssl("req", "-x509", *newkey, "-nodes", "-keyout", key, "-out", crt, "-days", "2",
                "-subj", "/CN=" + cn, "-addext",
                "subjectAltName=" + ",".join("DNS:" + s for s in sans))
    assert r.returncode == 0, r.stderr
    return crt, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    c = {
        "rsa": make_cert(d, "rsa", "rsa", HOST, [HOST, "www." + HOST]),
        "ec": make_cert(d, "ec", "ec", HOST, [HOST, "www." + HOST]),
        "other": make_cert(d, "other", "ec", "other", ["*.other.test"]),
    }
    secret = d / "secret"
    secret.write_bytes(os.urandom(48))
    c["secret"] = str(secret)
    secret2 = d / "secret2"
    secret2.write_bytes(os.urandom(48))
    c["secret2"] = str(secret2)
    return c


def tls_args(certs, *names):
    out = []
    for n in names or ("rsa", "ec", "other"):
        out += ["--tls-cert", certs[n][0], "--tls-key", certs[n][1]]
    return out


@pytest.fixture
def cdn(mlcdn, tmp_path, certs):
    root = tmp_path / "root"
    root.mkdir()

    class CDN:
        pass

    c = CDN()
    c.root = root
    c.origin = mlcdn("origin", ["--listen", "127.0.0.1:0", "--root", str(root)])

    def start_edge(*extra, names=()):
        e = mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                           "--tls-listen", "127.0.0.1:0", "--origin", c.origin.url,
                           "--threads", "2", "--mem", "64M"] + tls_args(certs, *names)
                  + list(extra), ready_pattern=EDGE_READY)
        e.admin = e.ready["admin"]
        e.tls_port = int(e.ready["tls"].rsplit(":", 1)[1])
        return e

    c.start_edge = start_edge

    def origin_count(path):
        return c.origin.get("/__stats").json()["requests"].get(path, 0)

    c.origin_count = origin_count
    return c


def curl(edge, path, *extra, host=HOST):
    """curl over HTTPS to the edge, --resolve for SNI; returns (status, headers, body)."""
    url = "https://%s:%d%s" % (host, edge.tls_port, path)
    r = subprocess.run(["curl", "-sk", "--http1.1", "--resolve",
                        "%s:%d:127.0.0.1" % (host, edge.tls_port), "-D", "-", url] + list(extra),
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, hdrs, body


def s_client(edge, *args, input=b"", servername=HOST):
    sn = ["-servername", servername] if servername else ["-noservername"]
    r = openssl("s_client", "-connect", "127.0.0.1:%d" % edge.tls_port, *sn, *args,
                input=input)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def client_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def https_get(edge, path, ctx=None, session=None):
    """One GET over a fresh TLS connection with Python's ssl; returns (status, body, sock
    facts: session, reused)."""
    ctx = ctx or client_ctx()
    with socket.create_connection(("127.0.0.1", edge.tls_port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=HOST, session=session) as s:
            s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                       % (path, HOST)).encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            return int(head.split()[1]), body, s.session, s.session_reused


def test_https_miss_then_hit_beside_plain_http(cdn):
    (cdn.root / "a.txt").write_bytes(b"hello over tls\n")
    e = cdn.start_edge()
    st, h, body = curl(e, "/a.txt")
    assert (st, body, h["x-cache"]) == (200, b"hello over tls\n", "MISS")
    st, h, body = curl(e, "/a.txt")
    assert (st, body, h["x-cache"], h["x-cache-level"]) == (200, b"hello over tls\n", "HIT", "L1")
    # The plain listener serves the same cache (the key is the host and path, not the scheme).
    r = e.get("/a.txt", headers={"Host": "%s:%d" % (HOST, e.tls_port)})
    assert r.status == 200 and r.headers["X-Cache"] == "HIT"
    assert cdn.origin_count("/a.txt") == 1


def test_large_bodies_from_memory_files_and_ranges(cdn, tmp_path):
    big = os.urandom(3 << 20) + b"end"
    (cdn.root / "weights.bin").write_bytes(big)
    want = hashlib.sha256(big).hexdigest()
    # Bodies over 1M skip L1 and are served from L2 files: read and encrypted in pieces.
    e = cdn.start_edge("--disk-dir", str(tmp_path / "l2"), "--disk", "64M",
                       "--max-mem-object", "1M")
    for expect in ("MISS", "HIT"):
        st, h, body = curl(e, "/weights.bin")
        assert st == 200 and h["x-cache"] == expect
        assert len(body) == len(big) and hashlib.sha256(body).hexdigest() == want
    st, h, body = curl(e, "/weights.bin", "-H", "Range: bytes=1000000-2999999")
    assert st == 206 and body == big[1000000:3000000]
    assert h["content-range"] == "bytes 1000000-2999999/%d" % len(big)
    assert cdn.origin_count("/weights.bin") == 1
    # From memory (an L1 body of 512 KiB, on an edge without a disk tier).
    mid = os.urandom(512 << 10)
    (cdn.root / "mid.bin").write_bytes(mid)
    m = cdn.start_edge()
    levels = []
    for _ in range(3):
        st, h, body = curl(m, "/mid.bin")
        assert st == 200 and body == mid
        levels.append(h["x-cache-level"])
    assert levels[-1] == "L1", levels


def test_pipelined_requests_over_one_tls_connection(cdn):
    for i in range(3):
        (cdn.root / ("p%d.txt" % i)).write_bytes(b"body %d\n" % i)
    e = cdn.start_edge()
    ctx = client_ctx()
    with socket.create_connection(("127.0.0.1", e.tls_port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=HOST) as s:
            reqs = b"".join(b"GET /p%d.txt HTTP/1.1\r\nHost: %s\r\n%s\r\n"
                            % (i, HOST.encode(), b"Connection: close\r\n" if i == 2 else b"")
                            for i in range(3))
            s.sendall(reqs)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 3
    assert [int(m) for m in re.findall(rb"body (\d)\n", data)] == [0, 1, 2]


def test_idle_connection_trimmed_then_served(cdn):
    """A keep-alive TLS connection idle past the trim (1 s) gives back its buffers and
    still serves its next requests, pipelined ones too."""
    (cdn.root / "k.txt").write_bytes(b"kept\n")
    e = cdn.start_edge()
    ctx = client_ctx()
    ctx.set_alpn_protocols(["http/1.1"])

    def exchange(s, n):
        s.sendall(b"GET /k.txt HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST.encode() * n)
        data = b""
        while data.count(b"kept\n") < n:
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
        return data

    with socket.create_connection(("127.0.0.1", e.tls_port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=HOST) as s:
            assert exchange(s, 1).startswith(b"HTTP/1.1 200")
            time.sleep(2.5)
            assert exchange(s, 3).count(b"HTTP/1.1 200 OK") == 3
            time.sleep(2.5)
            assert exchange(s, 1).startswith(b"HTTP/1.1 200")


def test_versions_ciphers_alpn(cdn):
    e = cdn.start_edge()
    for old in ("-tls1", "-tls1_1"):
        rc, out = s_client(e, old, "-cipher", "DEFAULT@SECLEVEL=0")
        assert rc != 0 and "Cipher is (NONE)" in out, out
    rc, out = s_client(e, "-tls1_2")
    assert rc == 0 and re.search(r"New, TLSv1\.2, Cipher is ECDHE-(RSA|ECDSA)-AES128-GCM-SHA256",
                                 out), out
    rc, out = s_client(e, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA:AES128-GCM-SHA256")
    assert rc != 0, out  # CBC and static RSA key exchange: no suite in common
    rc, out = s_client(e)
    assert rc == 0 and "New, TLSv1.3, Cipher is TLS_AES_128_GCM_SHA256" in out, out
    rc, out = s_client(e, "-alpn", "h2,http/1.1")
    assert rc == 0 and "ALPN protocol: h2" in out, out
    rc, out = s_client(e, "-alpn", "http/1.1")
    assert rc == 0 and "ALPN protocol: http/1.1" in out, out
    rc, out = s_client(e, "-alpn", "h3")
    assert rc != 0 and "no application protocol" in out, out


def test_sni_picks_the_certificate(cdn):
    e = cdn.start_edge()
    cases = [
        (HOST, ["-sigalgs", "ECDSA+SHA256"], "CN = edge.test", "ECDSA"),
        ("www." + HOST, ["-sigalgs", "RSA-PSS+SHA256"], "CN = edge.test", "RSA-PSS"),
        ("x.other.test", [], "CN = other", "ECDSA"),
        ("unknown.test", ["-sigalgs", "RSA-PSS+SHA256"], "CN = edge.test", "RSA-PSS"),
        (None, ["-sigalgs", "RSA-PSS+SHA256"], "CN = edge.test", "RSA-PSS"),
    ]
    for name, extra, subject, sig in cases:
        rc, out = s_client(e, *extra, servername=name)
        assert rc == 0, out
        assert re.search(r"subject=.*" + subject, out), (name, out)
        assert "Peer signature type: " + sig in out, (name, out)


def test_resumption_and_shared_ticket_secret(cdn, certs):
    (cdn.root / "r.txt").write_bytes(b"r\n")
    e1 = cdn.start_edge("--tls-ticket-secret", certs["secret"])
    e2 = cdn.start_edge("--tls-ticket-secret", certs["secret"])
    e3 = cdn.start_edge("--tls-ticket-secret", certs["secret2"])
    ctx = client_ctx()
    st, _, sess, reused = https_get(e1, "/r.txt", ctx)
    assert st == 200 and not reused and sess is not None
    st, _, _, reused = https_get(e1, "/r.txt", ctx, session=sess)
    assert st == 200 and reused
    # Another edge of the region, same secret: resumed; another secret: a full handshake.
    assert https_get(e2, "/r.txt", ctx, session=sess)[3]
    st, _, _, reused = https_get(e3, "/r.txt", ctx, session=sess)
    assert st == 200 and not reused
    assert metric(e1.admin, 'mlcdn_tls_handshakes_total{listener="tls",result="full"}') == 1
    assert metric(e1.admin, 'mlcdn_tls_handshakes_total{listener="tls",result="resumed"}') == 1
    assert metric(e1.admin, "mlcdn_tls_handshake_seconds_count") == 2
    # openssl s_client: a saved session is reused (TLS 1.2, where the ticket comes in the
    # handshake).
    sess_file = os.path.join(os.path.dirname(certs["secret"]), "s_client.sess")
    rc, out = s_client(e1, "-tls1_2", "-sess_out", sess_file)
    assert rc == 0 and "New, TLSv1.2" in out, out
    rc, out = s_client(e1, "-tls1_2", "-sess_in", sess_file)
    assert rc == 0 and "Reused, TLSv1.2" in out, out


def test_garbage_on_the_tls_port_is_counted_and_harmless(cdn):
    (cdn.root / "ok.txt").write_bytes(b"ok\n")
    e = cdn.start_edge()
    for junk in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",
                 os.urandom(4096)):
        with socket.create_connection(("127.0.0.1", e.tls_port), timeout=10) as s:
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            out = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                out += chunk
        assert b"HTTP/1.1" not in out  # never a plaintext answer on the TLS port
    rc, out = s_client(e, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert rc != 0
    assert metric(e.admin, 'mlcdn_tls_handshakes_total{listener="tls",result="failed"}') >= 3
    st, _, body = curl(e, "/ok.txt")
    assert st == 200 and body == b"ok\n"


def test_start_errors_name_the_flag_or_file(mlcdn, tmp_path, certs):
    base = ["edge", "--listen", "127.0.0.1:0", "--admin", "", "--origin", "http://127.0.0.1:9",
            "--tls-listen", "127.0.0.1:0"]
    from mlcdn_proc import binary

    def run(*extra):
        r = subprocess.run([binary()] + base + list(extra), capture_output=True, text=True,
                           timeout=30)
        return r.returncode, r.stderr

    rc, err = run()
    assert rc != 0 and "--tls-listen needs --tls-cert" in err
    rc, err = run("--tls-cert", certs["rsa"][0])
    assert rc != 0 and "--tls-key: 0 key(s) for 1 certificate(s)" in err
    rc, err = run("--tls-cert", certs["rsa"][0], "--tls-key", certs["ec"][1])
    assert rc != 0 and certs["ec"][1] in err and "does not match" in err
    missing = str(tmp_path / "missing.pem")
    rc, err = run("--tls-cert", missing, "--tls-key", certs["rsa"][1])
    assert rc != 0 and missing in err
    short = tmp_path / "short"
    short.write_bytes(b"short")
    rc, err = run("--tls-cert", certs["rsa"][0], "--tls-key", certs["rsa"][1],
                  "--tls-ticket-secret", str(short))
    assert rc != 0 and str(short) in err and "at least 32" in err


def test_https_origin_verified_against_its_ca(mlcdn, cdn, tmp_path):
    """An edge whose origin is https:// (here another edge's TLS listener, with a
    certificate for 127.0.0.1): verified against --origin-ca, refused without it (502
    naming the certificate problem), accepted unverified only with --origin-insecure."""
    # The certificate must name the address the edge dials.
    crt, key = str(tmp_path / "ipsan.crt"), str(tmp_path / "ipsan.key")
    r = openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=origin",
                "-addext", "subjectAltName=DNS:origin.test,IP:127.0.0.1")
    assert r.returncode == 0, r.stderr
    (cdn.root / "o.txt").write_bytes(b"via https\n")
    front = mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "", "--tls-listen",
                           "127.0.0.1:0", "--tls-cert", crt, "--tls-key", key,
                           "--origin", cdn.origin.url], ready_pattern=EDGE_READY)
    https_origin = front.ready["tls"]

    def edge(*extra):
        return mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                              "--origin", https_origin, "--origin-breaker-failures", "0"]
                     + list(extra), ready_pattern=EDGE_READY)

    ok = edge("--origin-ca", crt)
    r = ok.get("/o.txt")
    assert r.status == 200 and r.body == b"via https\n"
    strict = edge()
    r = strict.get("/o.txt")
    assert r.status == 502 and b"certificate" in r.body.lower(), r.body
    loose = edge("--origin-insecure")
    assert loose.get("/o.txt").status == 200
    from mlcdn_proc import binary
    missing = str(tmp_path / "no-such-ca.pem")
    r = subprocess.run([binary(), "edge", "--listen", "127.0.0.1:0", "--origin", https_origin,
                        "--origin-ca", missing], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "--origin-ca: " + missing in r.stderr


def test_http2_to_an_https_origin(mlcdn, cdn, tmp_path):
    """--origin-http2: requests to an https:// upstream that offers h2 go over HTTP/2 (the
    upstream's access log says so), bodies arrive whole; without it, HTTP/1.1."""
    crt, key = str(tmp_path / "up.crt"), str(tmp_path / "up.key")
    r = openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=origin",
                "-addext", "subjectAltName=IP:127.0.0.1")
    assert r.returncode == 0, r.stderr
    big = os.urandom(3 << 20)
    (cdn.root / "big.bin").write_bytes(big)
    for i in range(4):
        (cdn.root / ("s%d.txt" % i)).write_bytes(b"small %d\n" % i)
    log = tmp_path / "upstream-access.log"
    up = mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--tls-listen",
                        "127.0.0.1:0", "--tls-cert", crt, "--tls-key", key,
                        "--origin", cdn.origin.url, "--access-log", str(log)],
               ready_pattern=EDGE_READY)

    def lines():
        return log.read_text().splitlines() if log.exists() else []

    for flag, proto, host in ((["--origin-http2"], "HTTP/2.0", "v2.test"),
                              ([], "HTTP/1.1", "v1.test")):
        before = len(lines())
        e = mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "", "--origin", up.ready["tls"],
                           "--origin-ca", crt, "--max-mem-object", "1M"] + flag,
                  ready_pattern=EDGE_READY)
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            got = list(ex.map(lambda i: e.get("/s%d.txt" % i, headers={"Host": host}),
                              range(4)))
        assert [g.body for g in got] == [b"small %d\n" % i for i in range(4)]
        r = e.get("/big.bin", headers={"Host": host})
        assert r.status == 200 and r.body == big
        e.stop()
        wait_for(lambda: len(lines()) >= before + 5, what="upstream access log lines")
        new = lines()[before:]
        assert all('" 200 ' in ln for ln in new), new
        assert all(proto in ln for ln in new), (proto, new)
