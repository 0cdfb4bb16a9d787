"""HTTP caching semantics at the edge over HTTP/2 (curl --http2 over TLS, ALPN h2) as over
HTTP/1.1.

The caching tests of test_edge.py are collected here a second time, their `cdn` fixture
giving them an edge with a TLS listener and a client (curl) that speaks HTTP/2 to it: the
same assertions hold over both protocols. The tests written here (interim responses: 103
Early Hints forwarded, never stored, 100 Continue not forwarded; stale-if-error; HEAD
forwarded as HEAD on a miss and updating the stored response, RFC 9111 §4.3.5) need an origin
whose every byte the test writes (ScriptOrigin), and run over both protocols.
"""
import email.message
import os
import subprocess
import tempfile

import pytest

import test_edge
from mlcdn_proc import mlcdn, request  # noqa: F401  (mlcdn is a fixture)
from script_origin import ScriptOrigin
# Collected again here, over HTTP/2 (see the cdn fixture below).
from test_edge import (  # noqa: F401
    test_authorization_requests_bypass, test_changed_object_after_expiry_is_refetched,
    test_conditional_request_answered_304_from_cache, test_head_miss_is_forwarded_as_head,
    test_large_cached_bodies_full_and_ranges, test_max_age_expiry_then_revalidation_304,
    test_miss_then_hit, test_purge_drops_every_host_and_variant, test_purge_needs_the_token,
    test_query_parameter_order_shares_one_entry, test_range_and_head_from_cache,
    test_uncacheable_responses_are_not_stored, test_vary, test_vary_star_is_never_reused)

EDGE_READY = r"listening on (?P<url>\S+) admin=(?P<admin>\S+) .* tls=(?P<tls>\S+)"
HOST = "edge.test"


class Resp:
    def __init__(self, status, headers, body, interim, version):
        self.status = status
        self.headers = headers  # case-insensitive ["Name"] and .get(), as http.client's
        self.body = body
        self.interim = interim  # [(status, headers)] before the final response
        self.version = version


class Client:
    """Requests to an edge with curl, over HTTP/1.1 (its plain listener) or HTTP/2 (its TLS
    listener, h2 by ALPN), with the get/head/request of mlcdn_proc.Proc; every header block
    is kept. Other attributes are the edge process's."""

    def __init__(self, edge, proto):
        self.proc = edge
        self.proto = proto
        self.tls_port = int(edge.ready["tls"].rsplit(":", 1)[1])

    def __getattr__(self, name):
        return getattr(self.proc, name)

    def request(self, method, path, body=None, headers=None, timeout=30):
        assert body is None, "no request bodies through this client"
        with tempfile.TemporaryDirectory() as d:
            hfile, bfile = os.path.join(d, "h"), os.path.join(d, "b")
            cmd = ["curl", "-sS", "-D", hfile, "-o", bfile, "--max-time", str(timeout)]
            if self.proto == "h2":
                cmd += ["--http2", "-k", "--resolve", "%s:%d:127.0.0.1" % (HOST, self.tls_port)]
                url = "https://%s:%d%s" % (HOST, self.tls_port, path)
            else:
                cmd += ["--http1.1"]
                url = self.proc.url + path
            cmd += ["--head"] if method == "HEAD" else ["-X", method]
            for k, v in (headers or {}).items():
                cmd += ["-H", "%s: %s" % (k, v)]
            r = subprocess.run(cmd + [url], capture_output=True, timeout=timeout + 10)
            assert r.returncode == 0, r.stderr
            dump = open(hfile, "rb").read().decode("latin-1")
            # curl makes no output file for an empty body (a 304); with --head it writes the
            # head there too, and what follows it would be a body.
            body = open(bfile, "rb").read() if os.path.exists(bfile) else b""
            if method == "HEAD":
                assert body.startswith(dump.encode("latin-1"))
                body = body[len(dump):]
        blocks = []
        for b in (b for b in dump.split("\r\n\r\n") if b.strip()):
            lines = b.split("\r\n")
            version, status = lines[0].split()[:2]
            m = email.message.Message()
            for ln in lines[1:]:
                k, _, v = ln.partition(":")
                m[k.strip()] = v.strip()
            blocks.append((int(status), m, version))
        status, hdrs, version = blocks[-1]
        assert version == ("HTTP/2" if self.proto == "h2" else "HTTP/1.1")
        return Resp(status, hdrs, body, [(s, h) for s, h, _ in blocks[:-1]], version)

    def get(self, path, headers=None, **kw):
        return self.request("GET", path, headers=headers, **kw)

    def head(self, path, headers=None, **kw):
        return self.request("HEAD", path, headers=headers, **kw)


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("cert")
    key, crt = str(d / "ec.key"), str(d / "ec.crt")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt,
                        "-days", "2", "-subj", "/CN=" + HOST, "-addext",
                        "subjectAltName=DNS:" + HOST], capture_output=True, timeout=20)
    assert r.returncode == 0, r.stderr
    return ["--tls-listen", "127.0.0.1:0", "--tls-cert", crt, "--tls-key", key]


@pytest.fixture
def cdn(mlcdn, tmp_path, cert):
    """test_edge.py's cdn, its edge reached over HTTP/2."""
    c = test_edge.make_cdn(mlcdn, tmp_path, cert, EDGE_READY)
    c.edge = Client(c.edge, "h2")
    return c


@pytest.fixture(params=["h1", "h2"])
def proto(request):
    return request.param


@pytest.fixture
def edge_for(mlcdn, cert, proto):
    """An edge in front of origin_url (extra flags after), reached over proto."""
    def start(origin_url, *extra):
        e = mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                           "--origin", origin_url, "--threads", "2", "--mem", "64M"]
                  + cert + list(extra), ready_pattern=EDGE_READY)
        return Client(e, proto)
    return start


def scripted(responses):
    """A ScriptOrigin answering request i on any connection with responses[i] (bytes; the
    last one again once they run out; None closes the connection without an answer)."""
    state = {"n": 0}

    def answer(req, sock):
        while req is not None:
            i = min(state["n"], len(responses) - 1)
            state["n"] += 1
            if responses[i] is None:
                return
            sock.sendall(responses[i])
            req = req.next()
    return ScriptOrigin(answer)


def test_stale_if_error_on_5xx_and_on_close(edge_for):
    ok = (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nETag: \"s1\"\r\n"
          b"Cache-Control: max-age=0, stale-if-error=600\r\n\r\nold")
    err = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown"
    with scripted([ok, err, None]) as o:
        edge = edge_for(o.url)
        assert edge.get("/s").body == b"old"
        for _ in range(2):  # the 503, then a connection closed without an answer
            r = edge.get("/s")
            assert r.status == 200 and r.body == b"old"
            assert r.headers["x-cache"] == "STALE"
            assert "fwd=stale" in r.headers["cache-status"]
            assert "detail=stale-if-error" in r.headers["cache-status"]
        assert o.count() >= 3  # curl may retry a connection closed with no answer


def test_early_hints_are_forwarded_never_stored(edge_for):
    hints = (b"HTTP/1.1 103 Early Hints\r\nLink: </w.bin>; rel=preload\r\n"
             b"Link: </c.json>; rel=preload\r\n\r\n")
    final = (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nCache-Control: max-age=600\r\n"
             b"Content-Type: text/plain\r\n\r\nhello")
    with scripted([hints + final]) as o:
        edge = edge_for(o.url)
        r = edge.get("/page")
        assert r.status == 200 and r.body == b"hello" and r.headers["x-cache"] == "MISS"
        assert [s for s, _ in r.interim] == [103]
        assert "rel=preload" in r.interim[0][1]["link"]
        # The 103's fields are not the final response's, and not stored with it.
        assert "link" not in r.headers
        r = edge.get("/page")
        assert r.headers["x-cache"] == "HIT" and r.interim == [] and "link" not in r.headers
        assert o.count() == 1


def test_origin_100_continue_is_not_forwarded(edge_for):
    resp = (b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nCache-Control: no-store\r\n\r\nok")
    with scripted([resp]) as o:
        edge = edge_for(o.url)
        r = edge.get("/x")
        assert r.status == 200 and r.body == b"ok" and r.interim == []


def test_head_miss_asks_with_head_and_stores_nothing(edge_for):
    head = (b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\nETag: \"h1\"\r\n"
            b"Cache-Control: max-age=600\r\n\r\n")
    with scripted([head]) as o:
        edge = edge_for(o.url)
        r = edge.head("/m.bin")
        assert r.status == 200 and r.headers["content-length"] == "4096"
        assert r.headers["x-cache"] == "MISS" and "detail=head" in r.headers["cache-status"]
        assert [q.method for q in o.requests] == ["HEAD"]


def test_head_updates_the_stored_response(edge_for):
    get = (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nETag: \"v1\"\r\n"
           b"Cache-Control: max-age=0\r\nX-Meta: old\r\n\r\nbody")
    head_same = (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nETag: \"v1\"\r\n"
                 b"Cache-Control: max-age=600\r\nX-Meta: new\r\n\r\n")
    head_changed = (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nETag: \"v2\"\r\n"
                    b"Cache-Control: max-age=600\r\n\r\n")
    with scripted([get, head_same, head_changed, get]) as o:
        edge = edge_for(o.url)
        assert edge.get("/o").body == b"body"
        # Stale at once: the HEAD goes upstream as HEAD (with the validators); its 200 has
        # the stored ETag and length, so its fields refresh the stored response.
        r = edge.head("/o")
        assert r.headers["x-meta"] == "new"
        assert "detail=head-refreshed" in r.headers["cache-status"]
        r = edge.get("/o")
        assert r.body == b"body" and r.headers["x-cache"] == "HIT"
        assert r.headers["x-meta"] == "new"
        assert [q.method for q in o.requests] == ["GET", "HEAD"]
        assert o.requests[1].headers["if-none-match"] == '"v1"'
        # A HEAD describing another representation makes the stored one go.
        edge.head("/o", headers={"Cache-Control": "no-cache"})
        r = edge.get("/o")
        assert r.body == b"body" and r.headers["x-cache"] == "MISS"
        assert [q.method for q in o.requests] == ["GET", "HEAD", "HEAD", "GET"]


@pytest.fixture
def ref_origin(mlcdn, tmp_path):
    """The reference origin serving tmp_path/root (it answers Range with 206)."""
    root = tmp_path / "root"
    root.mkdir()
    o = mlcdn("origin", ["--listen", "127.0.0.1:0", "--root", str(root)])

    def put(name, data, headers):
        (root / name).write_bytes(data)
        (root / (name + ".hdrs")).write_text("".join("%s: %s\n" % kv for kv in headers.items()))
    o.put = put
    o.count = lambda path: o.get("/__stats").json()["requests"].get(path, 0)
    return o


def test_partial_responses_are_stored_and_combined(ref_origin, edge_for):
    body = os.urandom(100000)
    ref_origin.put("p.bin", body, {"Cache-Control": "max-age=600"})
    edge = edge_for(ref_origin.url)

    def rng(spec, xc):
        a, b = spec
        r = edge.get("/p.bin", headers={"Range": "bytes=%d-%d" % (a, b)})
        assert r.status == 206 and r.body == body[a:b + 1], (spec, r.status)
        assert r.headers["Content-Range"] == "bytes %d-%d/100000" % (a, b)
        assert r.headers["X-Cache"] == xc, (spec, r.headers["Cache-Status"])
        return r

    # A range miss is forwarded as a Range: the origin's 206 is passed on and kept.
    r = rng((0, 999), "MISS")
    assert "fwd-status=206" in r.headers["Cache-Status"]
    assert "detail=partial" in r.headers["Cache-Status"]
    assert ref_origin.count("/p.bin") == 1
    # A range inside it comes from the part kept.
    r = rng((100, 199), "HIT")
    assert "detail=partial" in r.headers["Cache-Status"]
    # One that is not covered is fetched with a Range, and merged with the first part.
    rng((500, 2999), "MISS")
    assert ref_origin.count("/p.bin") == 2
    rng((0, 2999), "HIT")
    rng((50000, 59999), "MISS")
    rng((2500, 49999), "MISS")  # bridges the two parts: one part 0-59999 now
    rng((10, 59990), "HIT")
    assert ref_origin.count("/p.bin") == 4
    # The last part makes the whole: a complete 200 in the cache, every range a hit.
    rng((60000, 99999), "MISS")
    r = edge.get("/p.bin")
    assert r.status == 200 and r.body == body and r.headers["X-Cache"] == "HIT"
    assert "detail=partial" not in r.headers["Cache-Status"]
    rng((99990, 99999), "HIT")
    assert ref_origin.count("/p.bin") == 5


def test_large_parts_make_a_large_whole(ref_origin, edge_for):
    # Parts of 64 KiB and more arrive in memfd-backed bodies: combined all the same.
    body = os.urandom(300 * 1024)
    ref_origin.put("w.bin", body, {"Cache-Control": "max-age=600"})
    edge = edge_for(ref_origin.url)
    for a, b in ((0, 149999), (150000, len(body) - 1)):
        r = edge.get("/w.bin", headers={"Range": "bytes=%d-%d" % (a, b)})
        assert r.status == 206 and r.body == body[a:b + 1] and r.headers["X-Cache"] == "MISS"
    r = edge.get("/w.bin")
    assert r.body == body and r.headers["X-Cache"] == "HIT"
    assert ref_origin.count("/w.bin") == 2


def test_parts_of_another_representation_are_not_combined(ref_origin, edge_for):
    one, two = os.urandom(10000), os.urandom(10000)
    ref_origin.put("q.bin", one, {"Cache-Control": "max-age=600", "ETag": '"one"'})
    edge = edge_for(ref_origin.url)
    assert edge.get("/q.bin", headers={"Range": "bytes=0-999"}).body == one[:1000]
    # The file changes: the next part (another ETag) replaces what was kept.
    ref_origin.put("q.bin", two, {"Cache-Control": "max-age=600", "ETag": '"two"'})
    r = edge.get("/q.bin", headers={"Range": "bytes=1000-9999"})
    assert r.body == two[1000:] and r.headers["ETag"] == '"two"'
    r = edge.get("/q.bin", headers={"Range": "bytes=0-999"})
    assert r.body == two[:1000] and r.headers["X-Cache"] == "MISS"
    # 0-999 and 1000-9999 of "two": whole.
    r = edge.get("/q.bin")
    assert r.body == two and r.headers["X-Cache"] == "HIT"


def test_purge_drops_the_parts_kept(ref_origin, edge_for):
    body = os.urandom(20000)
    ref_origin.put("g.bin", body, {"Cache-Control": "max-age=600"})
    edge = edge_for(ref_origin.url, "--admin-token", "t0ken")
    assert edge.get("/g.bin", headers={"Range": "bytes=0-999"}).headers["X-Cache"] == "MISS"
    assert edge.get("/g.bin", headers={"Range": "bytes=0-99"}).headers["X-Cache"] == "HIT"
    r = request("PURGE", edge.ready["admin"] + "/g.bin", headers={"Authorization": "Bearer t0ken"})
    assert r.status == 200
    r = edge.get("/g.bin", headers={"Range": "bytes=0-99"})
    assert r.body == body[:100] and r.headers["X-Cache"] == "MISS"
    assert ref_origin.count("/g.bin") == 2
