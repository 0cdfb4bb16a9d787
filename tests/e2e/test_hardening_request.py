"""End-to-end tests of the edge's request side against cache poisoning and mis-forwarding:
the host that keys an object is the host the origin was asked for, Connection cannot
remove end-to-end fields, unkeyed response-changing fields are stripped (or keyed), only
chunked is accepted as a transfer coding, and CONNECT, OPTIONS * and unknown methods
(methods are case-sensitive) are answered by the edge itself.

The origin is tests/e2e/script_origin.py: it answers per Host (and echoes what a
framework would use to build links), and records every request it received, so each test
asserts what the client got and what reached the origin.
"""
import socket
import subprocess

from mlcdn_proc import binary, mlcdn, raw  # noqa: F401  (mlcdn is a fixture)
from script_origin import ScriptOrigin


def _answer(req, sock):
    """An origin whose content depends on what a careless one lets change it: the Host, the
    X-Forwarded-Host and Accept-Language (Vary'd), the method. Cacheable for a minute."""
    while req is not None:
        h = req.headers
        body = ("host=%s xfh=%s lang=%s method=%s path=%s" % (
            h.get("host", "-"), h.get("x-forwarded-host", "-"), h.get("accept-language", "-"),
            req.method, req.target)).encode()
        extra = "Vary: Accept-Language\r\n" if req.target.startswith("/lang") else ""
        sock.sendall(b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n" + extra.encode() +
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        req = req.next()


def _edge(mlcdn, origin, *extra):
    return mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "", "--origin", origin.url,
                          "--threads", "2", "--mem", "16M"] + list(extra))


class Resp:
    def __init__(self, data):
        head, _, self.body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1]) if lines and lines[0] else 0
        self.headers = {}
        for ln in lines[1:]:
            n, _, v = ln.partition(":")
            self.headers[n.strip().lower()] = v.strip()

    def __repr__(self):
        return "<Resp %d %r %r>" % (self.status, self.headers, self.body[:120])


def send(edge, head):
    """One raw request (Connection: close is added) and the whole answer."""
    return Resp(raw(edge.host, edge.port, head.encode() + b"Connection: close\r\n\r\n"))


def get(edge, path, host, *fields):
    return send(edge, "GET %s HTTP/1.1\r\nHost: %s\r\n%s" % (
        path, host, "".join(f + "\r\n" for f in fields)))


def seen(origin, path):
    """The requests for `path` that reached the origin."""
    return [r for r in list(origin.requests) if r.target == path]


# ---- Host: the key's host is the host sent ----

def test_absolute_form_authority_replaces_host_for_key_and_origin(mlcdn):
    with ScriptOrigin(_answer) as o:
        e = _edge(mlcdn, o)
        # The attacker's absolute-form target names the victim, its Host the attacker.
        r = send(e, "GET http://victim.example/x HTTP/1.1\r\nHost: attacker.example\r\n")
        assert r.status == 200 and r.headers["x-cache"] == "MISS"
        assert r.body.startswith(b"host=victim.example ")
        assert [q.headers["host"] for q in seen(o, "/x")] == ["victim.example"]
        # The victim's hit holds what the origin answered for the victim's host.
        v = get(e, "/x", "victim.example")
        assert v.headers["x-cache"] == "HIT" and v.body.startswith(b"host=victim.example ")
        # And the attacker's own host is its own key, fetched with its own Host.
        a = get(e, "/x", "attacker.example")
        assert a.headers["x-cache"] == "MISS" and a.body.startswith(b"host=attacker.example ")
        assert [q.headers["host"] for q in seen(o, "/x")] == ["victim.example",
                                                              "attacker.example"]
        # Exactly one Host line went to the origin each time.
        assert all([n for n, _ in q.fields].count("host") == 1 for q in seen(o, "/x"))


def test_request_without_host_is_sent_without_one(mlcdn):
    with ScriptOrigin(_answer) as o:
        e = _edge(mlcdn, o)
        # HTTP/1.0 without Host: keyed under the empty host, and the origin is asked for
        # the empty host too, not for its own address.
        r = send(e, "GET /e HTTP/1.0\r\n")
        assert r.status == 200 and r.body.startswith(b"host= ")
        assert [q.headers.get("host") for q in seen(o, "/e")] == [""]
        assert send(e, "GET /e HTTP/1.0\r\n").headers["x-cache"] == "HIT"
        # A named host is another key.
        assert get(e, "/e", "h.example").headers["x-cache"] == "MISS"
        # HTTP/1.0 in absolute-form: the authority is the host.
        r = send(e, "GET http://v.example/e HTTP/1.0\r\n")
        assert r.body.startswith(b"host=v.example ")
        assert [q.headers.get("host") for q in seen(o, "/e")] == ["", "h.example", "v.example"]


def test_connection_cannot_remove_host(mlcdn):
    with ScriptOrigin(_answer) as o:
        e = _edge(mlcdn, o)
        r = send(e, "GET /y HTTP/1.1\r\nHost: victim.example\r\nConnection: Host\r\n")
        assert r.status == 200 and r.body.startswith(b"host=victim.example ")
        assert [q.headers.get("host") for q in seen(o, "/y")] == ["victim.example"]
        v = get(e, "/y", "victim.example")
        assert v.headers["x-cache"] == "HIT" and v.body.startswith(b"host=victim.example ")


def test_connection_removes_only_hop_by_hop_fields(mlcdn):
    with ScriptOrigin(_answer) as o:
        e = _edge(mlcdn, o)
        r = send(e, "GET /c HTTP/1.1\r\nHost: h.example\r\n"
                    "Connection: X-Debug, Cache-Control, Authorization, Content-Length\r\n"
                    "X-Debug: 1\r\nX-Kept: 2\r\nCache-Control: no-cache\r\n"
                    "Authorization: Bearer t\r\n")
        assert r.status == 200
        (q,) = seen(o, "/c")
        assert "x-debug" not in q.headers            # nominated: hop-by-hop
        assert q.headers["x-kept"] == "2"
        assert q.headers["cache-control"] == "no-cache"      # end-to-end, kept
        assert q.headers["authorization"] == "Bearer t"      # end-to-end, kept
        assert r.headers["x-cache"] == "BYPASS"              # Authorization still seen


def test_vary_on_a_field_removed_by_connection_is_not_misfiled(mlcdn):
    with ScriptOrigin(_answer) as o:
        e = _edge(mlcdn, o)
        # The origin never sees the attacker's Accept-Language (Connection removed it) ...
        a = get(e, "/lang", "h.example", "Accept-Language: fr", "Connection: Accept-Language")
        assert a.status == 200 and b"lang=- " in a.body
        # ... so its answer must not be stored as the "fr" variant.
        v = get(e, "/lang", "h.example", "Accept-Language: fr")
        assert v.headers["x-cache"] == "MISS" and b"lang=fr " in v.body
        assert [q.headers.get("accept-language") for q in seen(o, "/lang")] == [None, "fr"]
        assert get(e, "/lang", "h.example", "Accept-Language: fr").headers["x-cache"] == "HIT"


# ---- unkeyed fields: stripped by default, or keyed ----

UNKEYED = ["X-Forwarded-Host: evil.example", "X-Original-URL: /admin",
           "X-Rewrite-URL: /admin", "X-HTTP-Method-Override: DELETE", "X-HTTP-Method: DELETE",
           "X-Method-Override: DELETE", "Forwarded: host=evil.example;proto=https",
           "X-Forwarded-Scheme: nothttps", "X-Forwarded-Proto: nothttps",
           "X-Forwarded-Port: 8443", "X-Forwarded-Prefix: /evil", "X-Host: evil.example"]


def test_unkeyed_fields_are_stripped_by_default(mlcdn):
    with ScriptOrigin(_answer) as o:
        e = _edge(mlcdn, o)
        a = get(e, "/u", "h.example", "X-Forwarded-For: 192.0.2.7", *UNKEYED)
        assert a.status == 200 and b"xfh=- " in a.body
        (q,) = seen(o, "/u")
        for f in UNKEYED:
            assert f.split(":")[0].lower() not in q.headers, f
        # What the edge adds itself is still there.
        assert q.headers["x-forwarded-for"] == "192.0.2.7, 127.0.0.1"
        assert "(mlcdn)" in q.headers["via"]
        v = get(e, "/u", "h.example")
        assert v.headers["x-cache"] == "HIT" and b"xfh=- " in v.body


def test_key_header_is_forwarded_and_splits_the_key(mlcdn):
    with ScriptOrigin(_answer) as o:
        e = _edge(mlcdn, o, "--key-header", "X-Forwarded-Host")
        a = get(e, "/k", "h.example", "X-Forwarded-Host: a.example")
        assert a.headers["x-cache"] == "MISS" and b"xfh=a.example " in a.body
        b = get(e, "/k", "h.example", "X-Forwarded-Host: b.example")
        assert b.headers["x-cache"] == "MISS" and b"xfh=b.example " in b.body
        n = get(e, "/k", "h.example")
        assert n.headers["x-cache"] == "MISS" and b"xfh=- " in n.body
        again = get(e, "/k", "h.example", "X-Forwarded-Host: a.example")
        assert again.headers["x-cache"] == "HIT" and b"xfh=a.example " in again.body
        assert [q.headers.get("x-forwarded-host") for q in seen(o, "/k")] == [
            "a.example", "b.example", None]


def test_strip_header_replaces_the_default_list(mlcdn):
    with ScriptOrigin(_answer) as o:
        e = _edge(mlcdn, o, "--strip-header", "X-Debug", "--strip-header", "Forwarded")
        get(e, "/s", "h.example", "X-Debug: 1", "Forwarded: for=x", "X-Original-URL: /o")
        (q,) = seen(o, "/s")
        assert "x-debug" not in q.headers and "forwarded" not in q.headers
        assert q.headers["x-original-url"] == "/o"  # no longer in the (replaced) list
        e2 = _edge(mlcdn, o, "--strip-header", "none")
        get(e2, "/s2", "h.example", "X-Forwarded-Host: x.example")
        assert seen(o, "/s2")[0].headers["x-forwarded-host"] == "x.example"


def test_header_and_method_flags_are_checked(mlcdn, tmp_path):
    for flag, val in (("--key-header", "Bad Name"), ("--strip-header", "a:b"),
                      ("--extra-method", "GE T")):
        p = subprocess.run([binary(), "edge", "--listen", "127.0.0.1:0", "--admin", "",
                            "--origin", "http://127.0.0.1:1", flag, val],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode != 0 and flag in p.stderr and val in p.stderr, (flag, p.stderr)
    # Well-formed values start; in a config file they are lists.
    with ScriptOrigin(_answer) as o:
        conf = tmp_path / "edge.conf"
        conf.write_text('origin = "%s";\nkey_header = ["X-Tenant"];\n'
                        'strip_header = ["X-Debug"];\nextra_method = ["PROPFIND"];\n' % o.url)
        e = mlcdn("edge", ["--config", str(conf), "--listen", "127.0.0.1:0", "--admin", ""])
        assert get(e, "/f", "h.example", "X-Tenant: a", "X-Debug: 1").status == 200
        assert get(e, "/f", "h.example", "X-Tenant: a").headers["x-cache"] == "HIT"
        assert get(e, "/f", "h.example", "X-Tenant: b").headers["x-cache"] == "MISS"
        assert send(e, "PROPFIND /f HTTP/1.1\r\nHost: h.example\r\n").status == 200
        assert [(q.method, q.headers.get("x-tenant"), q.headers.get("x-debug"))
                for q in seen(o, "/f")] == [("GET", "a", None), ("GET", "b", None),
                                           ("PROPFIND", None, None)]


# ---- transfer codings ----

def test_transfer_codings_other_than_chunked_get_501(mlcdn):
    with ScriptOrigin(_answer) as o:
        e = _edge(mlcdn, o)
        for coding in ("gzip", "deflate", "x-custom"):
            r = send(e, "POST /t HTTP/1.1\r\nHost: h.example\r\n"
                        "Transfer-Encoding: %s, chunked\r\n" % coding)
            assert r.status == 501, r
            assert coding.encode() in r.body, r
        assert seen(o, "/t") == []
        # Plain chunked still goes through (a body this small is read whole by the edge,
        # --request-buffer, and sent on with a Content-Length).
        data = b"POST /t HTTP/1.1\r\nHost: h.example\r\nTransfer-Encoding: chunked\r\n" \
               b"Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        r = Resp(raw(e.host, e.port, data))
        assert r.status == 200
        got = seen(o, "/t")
        assert [(q.headers.get("transfer-encoding"), q.headers.get("content-length"), q.body)
                for q in got] == [(None, "5", b"hello")]


# ---- methods the edge answers itself ----

def test_connect_is_refused_with_allow_and_close(mlcdn):
    with ScriptOrigin(_answer) as o:
        e = _edge(mlcdn, o)
        with socket.create_connection((e.host, e.port), timeout=10) as s:
            s.sendall(b"CONNECT victim.example:443 HTTP/1.1\r\nHost: victim.example:443\r\n\r\n")
            out = b""
            while True:  # the edge closes after answering: tunnel bytes are never read
                d = s.recv(65536)
                if not d:
                    break
                out += d
        r = Resp(out)
        assert r.status == 405, r
        assert "GET" in r.headers["allow"] and "CONNECT" not in r.headers["allow"]
        assert o.count() == 0


def test_options_star_is_answered_by_the_edge(mlcdn):
    with ScriptOrigin(_answer) as o:
        e = _edge(mlcdn, o)
        r = send(e, "OPTIONS * HTTP/1.1\r\nHost: h.example\r\n")
        assert r.status == 200 and r.body == b""
        assert r.headers["content-length"] == "0"
        allow = [m.strip() for m in r.headers["allow"].split(",")]
        assert {"GET", "HEAD", "POST", "OPTIONS"} <= set(allow) and "CONNECT" not in allow
        assert o.count() == 0
        # OPTIONS on a resource is the origin's to answer.
        assert send(e, "OPTIONS /r HTTP/1.1\r\nHost: h.example\r\n").status == 200
        assert [q.method for q in seen(o, "/r")] == ["OPTIONS"]


def test_lowercase_method_is_refused_by_default(mlcdn):
    with ScriptOrigin(_answer) as o:
        e = _edge(mlcdn, o)
        assert get(e, "/m", "h.example").headers["x-cache"] == "MISS"
        r = send(e, "get /m HTTP/1.1\r\nHost: h.example\r\n")
        assert r.status == 501 and b"get" in r.body, r
        r = send(e, "FROB /m HTTP/1.1\r\nHost: h.example\r\n")
        assert r.status == 501 and b"FROB" in r.body, r
        assert [q.method for q in seen(o, "/m")] == ["GET"]


def test_extra_method_is_forwarded_never_cached(mlcdn):
    with ScriptOrigin(_answer) as o:
        e = _edge(mlcdn, o, "--extra-method", "get")
        assert get(e, "/m", "h.example").headers["x-cache"] == "MISS"
        assert get(e, "/m", "h.example").headers["x-cache"] == "HIT"
        # "get" is not GET: not served from the stored GET response ...
        r = send(e, "get /m HTTP/1.1\r\nHost: h.example\r\n")
        assert r.status == 200 and r.headers["x-cache"] == "BYPASS"
        assert b"method=get " in r.body
        # ... and its response fills nothing.
        r = send(e, "get /n HTTP/1.1\r\nHost: h.example\r\n")
        assert r.headers["x-cache"] == "BYPASS"
        n = get(e, "/n", "h.example")
        assert n.headers["x-cache"] == "MISS" and b"method=GET " in n.body
        assert [q.method for q in seen(o, "/n")] == ["get", "GET"]
        # Case-sensitive the other way too: allowing "get" does not allow "Get".
        assert send(e, "Get /m HTTP/1.1\r\nHost: h.example\r\n").status == 501
        # The edge's own Allow lists what it lets through.
        allow = send(e, "OPTIONS * HTTP/1.1\r\nHost: h.example\r\n").headers["allow"]
        assert "get" in [m.strip() for m in allow.split(",")]
