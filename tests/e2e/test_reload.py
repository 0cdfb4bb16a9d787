"""SIGHUP reloads the configuration file of every daemon without dropping a connection or
the cache; a bad file is refused (file and line named) and the running configuration stays.
docs/operations.md "Signals"."""
import os
import signal
import socket
import time

import pytest

from mlcdn_proc import mlcdn, metric, request, wait_for  # noqa: F401  (mlcdn is a fixture)

EDGE_READY = r"listening on (?P<url>\S+) admin=(?P<admin>\S+)"


def origin(mlcdn, root, *extra):
    return mlcdn("origin", ["--listen", "127.0.0.1:0", "--root", str(root)] + list(extra))


def hup_and_wait(proc, what, count_before):
    """SIGHUP, then wait until the log holds one more line containing `what`."""
    os.kill(proc.pid, signal.SIGHUP)
    wait_for(lambda: proc.log().count(what) > count_before, 10, what)
    assert proc.alive()


def read_response(sock, buf=b""):
    """One HTTP/1.1 response with a Content-Length from sock; returns (head, body, rest)."""
    while b"\r\n\r\n" not in buf:
        d = sock.recv(65536)
        assert d, "connection closed before a response head"
        buf += d
    head, buf = buf.split(b"\r\n\r\n", 1)
    n = [int(ln.split(b":")[1]) for ln in head.split(b"\r\n")
         if ln.lower().startswith(b"content-length:")][0]
    while len(buf) < n:
        d = sock.recv(65536)
        assert d, "connection closed inside a body"
        buf += d
    return head.decode(), buf[:n], buf[n:]


@pytest.fixture
def two_origins(mlcdn, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "which.txt").write_text("from-a")
    (b / "which.txt").write_text("from-b")
    (a / "cached.txt").write_text("kept across reloads")
    (a / "big.bin").write_bytes(os.urandom(1 << 20) * 24)
    return origin(mlcdn, a), origin(mlcdn, b)


def edge_with(mlcdn, conf, *extra):
    return mlcdn("edge", ["--config", str(conf), "--listen", "127.0.0.1:0",
                          "--admin", "127.0.0.1:0", "--mem", "64M"] + list(extra),
                 ready_pattern=EDGE_READY)


def test_edge_sighup_switches_origin_without_dropping_connections_or_cache(
        mlcdn, tmp_path, two_origins):
    oa, ob = two_origins
    conf = tmp_path / "edge.conf"
    conf.write_text('origin = "%s";\nconnect_timeout = "2s";\n' % oa.url)
    e = edge_with(mlcdn, conf)
    assert request("GET", e.url + "/cached.txt").headers["X-Cache"] == "MISS"
    assert request("GET", e.url + "/cached.txt").headers["X-Cache"] == "HIT"

    # a keep-alive connection with one answered request, and a long download half read
    ka = socket.create_connection((e.host, e.port), timeout=10)
    ka.sendall(b"GET /cached.txt HTTP/1.1\r\nHost: t\r\n\r\n")
    head, body, rest = read_response(ka)
    assert " 200 " in head.split("\r\n")[0] and body == b"kept across reloads"
    dl = socket.create_connection((e.host, e.port), timeout=10)
    dl.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    dl.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
    got = dl.recv(65536)
    assert got.startswith(b"HTTP/1.1 200")

    conf.write_text('origin = "%s";\nconnect_timeout = "3s";\n' % ob.url)
    hup_and_wait(e, "config reloaded", 0)

    # the same keep-alive connection serves the next request, from the cache
    ka.sendall(b"GET /cached.txt HTTP/1.1\r\nHost: t\r\n\r\n")
    head, body, _ = read_response(ka, rest)
    assert "X-Cache: HIT" in head and body == b"kept across reloads"
    ka.close()
    # the download started before the reload ends whole (its fill keeps origin a)
    _, body, _ = read_response(dl, got)
    assert len(body) == 24 << 20
    dl.close()
    # the next miss goes to the new origin
    r = request("GET", e.url + "/which.txt")
    assert r.status == 200 and r.body == b"from-b"
    assert ob.get("/__stats").json()["requests"].get("/which.txt") == 1
    assert oa.get("/__stats").json()["requests"].get("/which.txt") is None
    admin = e.ready["admin"]
    assert metric(admin, 'mlcdn_config_reloads_total{result="ok"}') == 1
    assert metric(admin, 'mlcdn_config_reloads_total{result="error"}') == 0
    assert metric(admin, "mlcdn_config_last_reload_success_timestamp_seconds") > 0


@pytest.mark.parametrize("bad,named", [
    ('origin = "%s";\nregion = ;\n', ":2: syntax error"),
    ('origin = "%s";\n\nmax_bodyy = "1M";\n', ":3: unknown setting 'max_bodyy'"),
    ('origin = "%s";\nmax_body = "lots";\n', ":2: --max-body: 'lots' is not a size"),
    ('# %s\norigin = "ftp://x";\n', ":2: --origin: 'ftp://x' is not an http:// or https:// URL"),
    ('origin = "%s\nhttp://b";\n', ":1: --origin: the URL holds a space or control character"),
    ('origin = "%s";\nroutes = ({ prefix = "/p"; methods = ["FOO"]; });\n', "methods"),
])
def test_edge_refuses_a_bad_file_and_keeps_running(mlcdn, tmp_path, two_origins, bad, named):
    oa, ob = two_origins
    conf = tmp_path / "edge.conf"
    conf.write_text('origin = "%s";\n' % oa.url)
    e = edge_with(mlcdn, conf)
    conf.write_text(bad % ob.url)
    hup_and_wait(e, "config reload refused", 0)
    line = [ln for ln in e.log().splitlines() if "config reload refused" in ln][0]
    assert str(conf) in line and named in line, line
    assert metric(e.ready["admin"], 'mlcdn_config_reloads_total{result="error"}') == 1
    # still the old origin
    assert request("GET", e.url + "/which.txt").body == b"from-a"


def test_edge_restart_only_settings_keep_their_value_and_the_rest_applies(
        mlcdn, tmp_path, two_origins):
    oa, ob = two_origins
    conf = tmp_path / "edge.conf"
    conf.write_text('origin = "%s";\nthreads = 1;\npolicy = "lru";\n' % oa.url)
    e = edge_with(mlcdn, conf)
    # --mem is also a flag here: the flag's value stays whatever the file says
    conf.write_text('origin = "%s";\nthreads = 4;\npolicy = "sieve";\nregion = "elsewhere";\n'
                    'mem = "128M";\n' % ob.url)
    hup_and_wait(e, "config reloaded", 0)
    line = [ln for ln in e.log().splitlines() if "need a restart" in ln][0]
    assert "settings=region,policy,threads" in line, line
    r = request("GET", e.url + "/which.txt")
    assert r.body == b"from-b" and r.headers["X-Edge-Region"] == "local"


def test_edge_flags_still_win_over_the_file_after_a_reload(mlcdn, tmp_path, two_origins):
    oa, ob = two_origins
    conf = tmp_path / "edge.conf"
    conf.write_text('origin = "%s";\n' % oa.url)
    e = edge_with(mlcdn, conf, "--origin", ob.url)
    assert request("GET", e.url + "/which.txt").body == b"from-b"
    conf.write_text('origin = "%s";\nnegative_ttl = "1s";\n' % oa.url)
    hup_and_wait(e, "config reloaded", 0)
    assert request("GET", e.url + "/which.txt?again").body == b"from-b"


def test_edge_reload_applies_routes_and_limits(mlcdn, tmp_path, two_origins):
    oa, _ = two_origins
    conf = tmp_path / "edge.conf"
    conf.write_text('origin = "%s";\n' % oa.url)
    e = edge_with(mlcdn, conf)
    body = b'{"x": [1, 2]}'
    assert request("POST", e.url + "/score", body=body).headers["X-Cache"] == "BYPASS"
    conf.write_text('origin = "%s";\nmax_body = "1K";\n'
                    'routes = ({ prefix = "/score"; methods = ["POST"]; key_body = "json"; '
                    'ttl = 60; });\n' % oa.url)
    hup_and_wait(e, "config reloaded", 0)
    assert request("POST", e.url + "/score", body=body).headers["X-Cache"] == "MISS"
    r = request("POST", e.url + "/score", body=b'{"x":[1,2]}')
    assert r.headers["X-Cache"] == "HIT"
    assert request("POST", e.url + "/other", body=b"y" * 4096).status == 413


def test_edge_reload_changes_the_log_level(mlcdn, tmp_path, two_origins):
    oa, _ = two_origins
    conf = tmp_path / "edge.conf"
    conf.write_text('origin = "%s";\nlog_level = "info";\n' % oa.url)
    e = edge_with(mlcdn, conf)
    conf.write_text('origin = "%s";\nlog_level = "warn";\n' % oa.url)
    os.kill(e.pid, signal.SIGHUP)
    wait_for(lambda: metric(e.ready["admin"], 'mlcdn_config_reloads_total{result="ok"}') == 1,
             10, "the reload")
    # at warn the "config reloaded" line (info) of that reload is not written; the
    # refusal of the next one (an error) is
    conf.write_text("origin = ")
    hup_and_wait(e, "config reload refused", 0)
    assert "config reloaded" not in e.log()


# ---------------------------------------------------------------- router

def router_conf(path, db, edges, weights=(0.5, 0.3, 0.2), extra=""):
    path.write_text('zone = "cdn.test";\nname = ["edge"];\ngeoip = ["%s"];\n'
                    'health_interval = "100ms";\nedge = [%s];\n'
                    'w_distance = %s;\nw_load = %s;\nw_hit = %s;\n%s'
                    % (db, ", ".join('"%s"' % e for e in edges), *weights, extra))


def test_router_sighup_reloads_edges_weights_and_geo(tmp_path):
    from router_util import ADDR_DC, HealthEdges, Router, dig, make_test_mmdb
    from router_util import wait_for as poll
    db = make_test_mmdb(str(tmp_path / "t.mmdb"))
    health = HealthEdges(["tokyo", "london"])
    tokyo = "tokyo=35.68,139.69,127.0.1.1,%s" % health.url("tokyo")
    london = "london=51.51,-0.13,127.0.1.2,%s" % health.url("london")
    conf = tmp_path / "router.conf"
    router_conf(conf, db, [tokyo])
    r = Router("cdn.test", [], [], ["--config", str(conf)])
    try:
        def edges():
            return {e["name"]: e for e in r.json("/edges")["edges"]}

        def answer(sub):
            a = dig(r.dns_port, "edge.cdn.test", "A", "+subnet=" + sub).addrs("A")
            return ADDR_DC.get(a[0]) if a else None

        assert poll(lambda: edges()["tokyo"]["state"] == "up", 10) is not None
        assert answer("81.2.0.0/24") == "tokyo"  # Paris: only tokyo so far
        # a new edge and new weights
        router_conf(conf, db, [tokyo, london], weights=(0.9, 0.05, 0.05))
        os.kill(r.proc.pid, signal.SIGHUP)
        assert poll(lambda: "config reloaded" in r.text(), 10) is not None
        e = edges()
        assert set(e) == {"tokyo", "london"}
        assert e["tokyo"]["state"] == "up"  # kept across the reload, not checked afresh
        assert poll(lambda: edges()["london"]["state"] == "up", 10) is not None
        assert answer("81.2.0.0/24") == "london"
        assert r.json("/route?ip=81.2.3.4")["weights"] == {"distance": 0.9, "load": 0.05,
                                                            "hit": 0.05}
        # a database that does not open is refused, naming it; the old one stays
        bad = tmp_path / "bad.mmdb"
        bad.write_bytes(b"not a database" * 100)
        router_conf(conf, db + '", "' + str(bad), [tokyo, london])
        os.kill(r.proc.pid, signal.SIGHUP)
        assert poll(lambda: "config reload refused" in r.text(), 10) is not None
        line = [ln for ln in r.text().splitlines() if "config reload refused" in ln][0]
        assert "bad.mmdb" in line, line
        assert answer("81.2.0.0/24") == "london"
        # a new database is opened: loopback now locates in Tokyo
        db2 = make_test_mmdb(str(tmp_path / "t2.mmdb"),
                             loopback=(35.68, 139.69, "JP", "Tokyo"))
        assert r.json("/route?ip=127.0.0.1")["edge"] == "london"
        router_conf(conf, db2, [tokyo, london])
        os.kill(r.proc.pid, signal.SIGHUP)
        assert poll(lambda: r.text().count("config reloaded") == 2, 10) is not None
        assert r.json("/route?ip=127.0.0.1")["edge"] == "tokyo"
        # a syntax error names the file and line
        conf.write_text(conf.read_text() + "ttl = ;\n")
        os.kill(r.proc.pid, signal.SIGHUP)
        assert poll(lambda: r.text().count("config reload refused") == 2, 10) is not None
        line = [ln for ln in r.text().splitlines() if "config reload refused" in ln][1]
        assert "router.conf:9:" in line, line
        _, m = r.http("/metrics")
        assert 'mlcdn_config_reloads_total{result="ok"} 2' in m
        assert 'mlcdn_config_reloads_total{result="error"} 2' in m
        assert r.proc.poll() is None
    finally:
        r.cleanup()
        health.close()


def test_router_restart_only_settings_are_named(tmp_path):
    from router_util import HealthEdges, Router, make_test_mmdb
    from router_util import wait_for as poll
    db = make_test_mmdb(str(tmp_path / "t.mmdb"))
    health = HealthEdges(["tokyo"])
    tokyo = "tokyo=35.68,139.69,127.0.1.1,%s" % health.url("tokyo")
    conf = tmp_path / "router.conf"
    router_conf(conf, db, [tokyo])
    r = Router("cdn.test", [], [], ["--config", str(conf)])
    try:
        router_conf(conf, db, [tokyo], extra='edns_size = 1400;\nudp_threads = 2;\n')
        os.kill(r.proc.pid, signal.SIGHUP)
        assert poll(lambda: "config reloaded" in r.text(), 10) is not None
        assert "settings=udp-threads,edns-size" in r.text()
    finally:
        r.cleanup()
        health.close()


# ---------------------------------------------------------------- origin

def test_origin_sighup_changes_latency_and_root(mlcdn, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "f.txt").write_text("a")
    (b / "f.txt").write_text("b")
    conf = tmp_path / "origin.conf"
    conf.write_text('root = "%s";\nlatency = "0";\n' % a)
    o = mlcdn("origin", ["--config", str(conf), "--listen", "127.0.0.1:0"])
    ka = http_client(o)
    ka.request("GET", "/f.txt")
    assert ka.getresponse().read() == b"a"
    conf.write_text('root = "%s";\nlatency = "400ms";\nthreads = 3;\n' % b)
    hup_and_wait(o, "config reloaded", 0)
    assert "settings=threads" in o.log()
    # the same connection, the new root and the new latency (a lower bound: it cannot be
    # faster than the latency it waits)
    t0 = time.monotonic()
    ka.request("GET", "/f.txt")
    assert ka.getresponse().read() == b"b"
    assert time.monotonic() - t0 >= 0.4
    ka.close()
    conf.write_text('root = "%s/missing";\n' % b)
    hup_and_wait(o, "config reload refused", 0)
    line = [ln for ln in o.log().splitlines() if "config reload refused" in ln][0]
    assert "origin.conf:1: --root" in line, line
    assert request("GET", o.url + "/f.txt").body == b"b"


def http_client(proc):
    import http.client
    return http.client.HTTPConnection(proc.host, proc.port, timeout=10)


# ---------------------------------------------------------------- edge TLS

def test_edge_sighup_reloads_tls_certificates(mlcdn, tmp_path, two_origins):
    import ssl
    import subprocess
    oa, _ = two_origins

    def make_cert(name):
        key, crt = str(tmp_path / (name + ".key")), str(tmp_path / (name + ".crt"))
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt,
                            "-days", "2", "-subj", "/CN=" + name, "-addext",
                            "subjectAltName=DNS:edge.test"], capture_output=True, timeout=20)
        assert r.returncode == 0, r.stderr
        return crt, key

    a, b = make_cert("a"), make_cert("b")
    conf = tmp_path / "edge.conf"

    def write(crt, key):
        conf.write_text('origin = "%s";\ntls_cert = ["%s"];\ntls_key = ["%s"];\n'
                        % (oa.url, crt, key))

    write(*a)
    e = mlcdn("edge", ["--config", str(conf), "--listen", "127.0.0.1:0", "--admin",
                       "127.0.0.1:0", "--tls-listen", "127.0.0.1:0"],
              ready_pattern=r"listening on (?P<url>\S+) admin=(?P<admin>\S+) .* "
                            r"tls=https://127.0.0.1:(?P<tls>\d+)")
    port = int(e.ready["tls"])
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    def connect():
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        return ctx.wrap_socket(raw, server_hostname="edge.test")

    def der(crt):
        return ssl.PEM_cert_to_DER_cert(open(crt).read())

    def get(s):
        s.sendall(b"GET /cached.txt HTTP/1.1\r\nHost: edge.test\r\n\r\n")
        return read_response(s)[1]

    old = connect()
    assert old.getpeercert(binary_form=True) == der(a[0])
    assert get(old) == b"kept across reloads"
    write(*b)
    hup_and_wait(e, "config reloaded", 0)
    new = connect()
    assert new.getpeercert(binary_form=True) == der(b[0])
    assert get(new) == b"kept across reloads"
    new.close()
    assert get(old) == b"kept across reloads"  # the connection from before keeps going
    old.close()
    # a key that does not match its certificate is refused, naming the file
    write(b[0], a[1])
    hup_and_wait(e, "config reload refused", 0)
    line = [ln for ln in e.log().splitlines() if "config reload refused" in ln][0]
    assert "a.key" in line or "b.crt" in line, line
    s = connect()
    assert s.getpeercert(binary_form=True) == der(b[0])
    s.close()
