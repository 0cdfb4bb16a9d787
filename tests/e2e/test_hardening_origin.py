"""Origin faults the edge must never pass off as a whole response (docs/edge.md, "Origin
errors"): bodies that end early (a cut chunked body, a bad chunk size, a Content-Length body
cut short, a reset, a timeout) abort the client's response, or get 502/504 when nothing was
sent yet, and are never stored (L1, L2); response heads with conflicting framing get 502 and
are not stored either.

Every origin here is a ScriptOrigin: the test writes each byte it answers and decides when
the cut happens (after the client has its head), so nothing depends on timing. The client
side is asserted with http.client (IncompleteRead) or a raw socket (no last chunk), and the
origin side by counting the requests that reach it.
"""
import http.client
import os
import socket
import struct
import threading
import time

import pytest

from mlcdn_proc import metric, mlcdn, request, wait_for  # noqa: F401  (mlcdn is a fixture)
from script_origin import ScriptOrigin

EDGE_READY = r"listening on (?P<url>\S+) admin=(?P<admin>\S+) region=\S+ name=(?P<name>\S+)"
OK_HEAD = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\n"



_edges = []


@pytest.fixture(autouse=True)
def clean_exit(mlcdn):
    """Every edge of a test ends cleanly: exit status 0 and no sanitizer report (with an
    ASan build in MLCDN_BIN)."""
    _edges.clear()
    yield
    for e in _edges:
        rc = e.stop()
        log = e.log()
        assert rc == 0 and "Sanitizer" not in log and "runtime error" not in log, log[-4000:]


def start_edge(mlcdn, origin, *extra):
    e = mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--origin", origin.url,
                       "--region", "t", "--threads", "2"] + [str(a) for a in extra], EDGE_READY)
    e.admin = e.ready["admin"].rstrip("/")
    _edges.append(e)
    return e


class Script:
    """Answers request i with answers[i] (the last one for any later request). An answer is
    a list of steps: bytes to send, "wait" (until .cut is set), "rst" (close with a reset),
    "hang" (send nothing more until .cut is set), "eof?" (record in .closed_by_edge whether
    the edge closes the connection). The connection closes when the steps are done."""

    def __init__(self, *answers):
        self.answers = answers
        self.cut = threading.Event()
        self.n = 0
        self.lock = threading.Lock()
        self.closed_by_edge = []  # for each answered request: did the edge close the socket?

    def __call__(self, req, sock):
        with self.lock:
            steps = self.answers[min(self.n, len(self.answers) - 1)]
            self.n += 1
        for st in steps:
            if st == "wait":
                self.cut.wait(30)
            elif st == "hang":
                self.cut.wait(30)
                return
            elif st == "rst":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            elif st == "eof?":
                sock.settimeout(10)
                try:
                    self.closed_by_edge.append(sock.recv(1) == b"")
                except OSError:
                    self.closed_by_edge.append(False)
            else:
                sock.sendall(st)


def whole(body, extra=b"", cc=b"max-age=600"):
    return [b"HTTP/1.1 200 OK\r\nCache-Control: " + cc + b"\r\nContent-Length: %d\r\n" % len(body)
            + extra + b"\r\n" + body]


def get(edge, path="/m.bin", headers=None, version=11):
    """(status, headers, body, complete): complete is False when the response body did not
    arrive whole (IncompleteRead, reset)."""
    c = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=30)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        try:
            return r.status, r.msg, r.read(), True
        except http.client.IncompleteRead as ex:
            return r.status, r.msg, ex.partial, False
        except ConnectionError:
            return r.status, r.msg, b"", False
    finally:
        c.close()


class Streaming:
    """A GET whose head has arrived; .finish() reads the rest of the body."""

    def __init__(self, edge, path="/m.bin", headers=None):
        self.c = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=30)
        self.c.request("GET", path, headers=headers or {})
        self.r = self.c.getresponse()
        self.status = self.r.status

    def finish(self):
        try:
            body, complete = self.r.read(), True
        except http.client.IncompleteRead as ex:
            body, complete = ex.partial, False
        except ConnectionError:
            body, complete = b"", False
        self.c.close()
        return body, complete


def raw_get(edge, path="/m.bin", version=b"HTTP/1.1", connection=b"close"):
    """Sends a GET on a raw socket and returns the socket."""
    s = socket.create_connection(("127.0.0.1", edge.port), timeout=30)
    s.sendall(b"GET " + path.encode() + b" " + version + b"\r\nHost: t\r\nConnection: "
              + connection + b"\r\n\r\n")
    return s


def read_until(s, marker):
    out = b""
    while marker not in out:
        d = s.recv(65536)
        assert d, out
        out += d
    return out


def read_to_end(s):
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return out, False
            out += d
    except ConnectionResetError:
        return out, True
    finally:
        s.close()


def assert_refetched(edge, origin, body):
    """The cut response was not stored: the next request reaches the origin, gets the
    whole body, and that one is stored."""
    before = origin.count()
    st, h, b, ok = get(edge)
    assert (st, b, ok) == (200, body, True)
    assert origin.count() == before + 1
    st, h, b, ok = get(edge)
    assert (st, b, ok, h["X-Cache"]) == (200, body, True, "HIT")
    assert origin.count() == before + 1


CHUNKED = OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n"


def test_chunked_cut_mid_chunk_never_ends_clean(mlcdn):
    body = b"hello world"
    s = Script([CHUNKED + b"5\r\nhello\r\n6\r\n wo", "wait"], whole(body))
    with ScriptOrigin(s) as o:
        e = start_edge(mlcdn, o)
        sock = raw_get(e)
        head = read_until(sock, b"hello")  # the edge's head and the first chunk arrived
        s.cut.set()
        data, reset = read_to_end(sock)
        data = head + data
        assert data.startswith(b"HTTP/1.1 200 ")
        assert b"Transfer-Encoding: chunked" in data
        assert not data.endswith(b"0\r\n\r\n"), data  # no last chunk: the client knows
        wait_for(lambda: metric(e.admin, "mlcdn_edge_origin_truncated_total") == 1,
                 what="truncated counter")
        assert 'origin body incomplete' in e.log() and 'key="t/m.bin"' in e.log()
        # The same cut seen by http.client: IncompleteRead, never a short body read as whole.
        s.cut.clear()
        s.n = 0
        st = Streaming(e)
        assert st.status == 200
        s.cut.set()
        b, complete = st.finish()
        assert not complete and b == b"hello wo"
        assert_refetched(e, o, body)


def test_invalid_chunk_size_before_any_byte_is_502(mlcdn):
    s = Script([CHUNKED + b"zz\r\nhello\r\n0\r\n\r\n"], whole(b"abc"))
    with ScriptOrigin(s) as o:
        e = start_edge(mlcdn, o)
        st, h, b, ok = get(e)
        assert st == 502 and ok
        assert h.get("Cache-Control") == "no-store"
        assert metric(e.admin, "mlcdn_edge_origin_truncated_total") == 1
        assert_refetched(e, o, b"abc")


def cut_after_bytes(mlcdn, first, rest, sent):
    """The origin sends `first`, then (once a client is streaming it) the steps `rest`: the
    client sees `sent` and an incomplete end, and nothing was stored."""
    s = Script([first, "wait"] + rest, whole(b"abc"))
    with ScriptOrigin(s) as o:
        e = start_edge(mlcdn, o)
        st = Streaming(e)
        assert st.status == 200
        s.cut.set()
        b, complete = st.finish()
        assert not complete and b == sent
        assert_refetched(e, o, b"abc")


def test_invalid_chunk_size_after_bytes_aborts(mlcdn):
    cut_after_bytes(mlcdn, CHUNKED + b"5\r\nhello\r\n", [b"-1\r\nxx\r\n0\r\n\r\n"], b"hello")


def test_content_length_body_cut_short_aborts(mlcdn):
    body = bytes(range(256)) * 4
    s = Script([OK_HEAD + b"Content-Length: 1024\r\n\r\n" + body[:300], "wait"], whole(body))
    with ScriptOrigin(s) as o:
        e = start_edge(mlcdn, o)
        st = Streaming(e)
        assert st.status == 200 and st.r.getheader("Content-Length") == "1024"
        s.cut.set()
        b, complete = st.finish()
        assert not complete and b == body[:300]
        wait_for(lambda: metric(e.admin, "mlcdn_edge_origin_truncated_total") == 1,
                 what="truncated counter")
        assert_refetched(e, o, body)


def test_content_length_cut_before_any_byte_is_502(mlcdn):
    s = Script([OK_HEAD + b"Content-Length: 1024\r\n\r\n"], whole(b"abc"))
    with ScriptOrigin(s) as o:
        e = start_edge(mlcdn, o)
        st, h, b, ok = get(e)
        assert st == 502 and ok
        assert_refetched(e, o, b"abc")


def test_close_delimited_reset_mid_body_aborts(mlcdn):
    # Without a length the origin's close ends the body, but a reset is no end: it is a
    # failed transfer.
    cut_after_bytes(mlcdn, OK_HEAD + b"Connection: close\r\n\r\npartial", ["rst"], b"partial")


def test_close_delimited_body_is_passed_on_not_stored(mlcdn):
    # RFC 9112 §6.3 rule 8: a close ends such a body, and an origin dying mid-body closes the
    # same way. The client gets what came; nobody after it gets a copy that may be cut.
    s = Script([OK_HEAD + b"Connection: close\r\n\r\nall of it"])
    with ScriptOrigin(s) as o:
        e = start_edge(mlcdn, o)
        st, h, b, ok = get(e)
        assert (st, b, ok) == (200, b"all of it", True)
        assert "close-delimited" in h["Cache-Status"]
        st, h, b, ok = get(e)
        assert (b, ok, h["X-Cache"]) == (b"all of it", True, "MISS")
        assert o.count() == 2


def test_store_close_delimited_vouches_for_the_origin(mlcdn):
    s = Script([OK_HEAD + b"Connection: close\r\n\r\nall of it"])
    with ScriptOrigin(s) as o:
        e = start_edge(mlcdn, o, "--store-close-delimited")
        assert get(e)[2:] == (b"all of it", True)
        st, h, b, ok = get(e)
        assert (b, ok, h["X-Cache"]) == (b"all of it", True, "HIT")
        assert o.count() == 1


def test_origin_timeout_mid_body_aborts(mlcdn):
    s = Script([OK_HEAD + b"Connection: close\r\n\r\nslow", "hang"], whole(b"abc"))
    with ScriptOrigin(s) as o:
        e = start_edge(mlcdn, o, "--origin-timeout", "1s")
        st = Streaming(e)
        assert st.status == 200
        b, complete = st.finish()  # the origin never closes: the edge's timeout ends it
        assert not complete and b == b"slow"
        s.cut.set()
        assert_refetched(e, o, b"abc")


def test_origin_timeout_before_any_byte_is_504(mlcdn):
    s = Script([OK_HEAD + b"Content-Length: 10\r\n\r\n", "hang"], whole(b"abc"))
    with ScriptOrigin(s) as o:
        e = start_edge(mlcdn, o, "--origin-timeout", "1s")
        st, h, b, ok = get(e)
        assert st == 504 and ok
        s.cut.set()
        assert_refetched(e, o, b"abc")


@pytest.mark.parametrize("connection", [b"close", b"keep-alive"])
def test_http10_client_gets_a_reset_not_a_close(mlcdn, connection):
    # A close-delimited response (HTTP/1.0 client, no length) can only say "incomplete" by
    # a reset: a plain close (or a lingering one) would end the body as if whole.
    s = Script([CHUNKED + b"5\r\nhello\r\n", "wait"], whole(b"abc"))
    with ScriptOrigin(s) as o:
        e = start_edge(mlcdn, o)
        sock = raw_get(e, version=b"HTTP/1.0", connection=connection)
        head = read_until(sock, b"hello")
        assert head.startswith(b"HTTP/1.1 200 ") and b"Content-Length" not in head
        s.cut.set()
        data, reset = read_to_end(sock)
        assert reset, head + data


def test_coalesced_waiters_all_see_the_abort(mlcdn):
    s = Script([CHUNKED + b"a\r\n0123456789\r\n", "wait"], whole(b"abc"))
    with ScriptOrigin(s) as o:
        e = start_edge(mlcdn, o)
        clients = [Streaming(e)]
        for _ in range(3):  # each joins the running fill: the head is back only then
            clients.append(Streaming(e))
        assert [c.status for c in clients] == [200] * 4
        assert metric(e.admin, "mlcdn_edge_coalesced_total") == 3
        assert o.count() == 1
        s.cut.set()
        for c in clients:
            assert c.finish() == (b"0123456789", False)
        assert_refetched(e, o, b"abc")


def test_range_streamed_from_a_cut_fill_aborts(mlcdn):
    body = bytes(range(256)) * 4
    s = Script([OK_HEAD + b"Content-Length: 1024\r\n\r\n" + body[:100], "wait"], whole(body))
    with ScriptOrigin(s) as o:
        e = start_edge(mlcdn, o)
        leader = Streaming(e)
        inside = Streaming(e, headers={"Range": "bytes=10-49"})
        across = Streaming(e, headers={"Range": "bytes=50-899"})
        assert (leader.status, inside.status, across.status) == (200, 206, 206)
        # Bytes the origin did send are right: a range within them completes.
        assert inside.finish() == (body[10:50], True)
        s.cut.set()
        assert across.finish() == (body[50:100], False)
        assert leader.finish() == (body[:100], False)
        assert_refetched(e, o, body)


def test_range_past_the_cut_before_any_of_it_is_502(mlcdn):
    body = bytes(range(256)) * 4
    s = Script([OK_HEAD + b"Content-Length: 1024\r\n\r\n" + body[:100], "wait"], whole(body))
    with ScriptOrigin(s) as o:
        e = start_edge(mlcdn, o)
        leader = Streaming(e)
        out = {}
        t = threading.Thread(target=lambda: out.update(r=get(e, headers={"Range": "bytes=500-"})))
        t.start()
        wait_for(lambda: metric(e.admin, "mlcdn_edge_coalesced_total") == 1, what="coalesced")
        s.cut.set()
        t.join(30)
        assert out["r"][0] == 502
        assert leader.finish() == (body[:100], False)


def test_large_body_cut_leaves_nothing_in_l2(mlcdn, tmp_path):
    disk = tmp_path / "l2"
    body = os.urandom(1 << 20)
    s = Script([OK_HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body[:300000], "wait"],
               whole(body))
    with ScriptOrigin(s) as o:
        e = start_edge(mlcdn, o, "--disk-dir", disk, "--disk", "64M", "--max-mem-object", "64K")

        def files():
            return sorted(os.path.relpath(os.path.join(d, f), disk)
                          for d, _, fs in os.walk(disk) for f in fs)

        empty = files()
        st = Streaming(e)
        assert st.status == 200
        wait_for(lambda: any(f.startswith("tmp" + os.sep) for f in files()),
                 what="the L2 writer's temporary file")
        s.cut.set()
        b, complete = st.finish()
        assert not complete and b == body[:len(b)] and len(b) < len(body)
        wait_for(lambda: files() == empty, what="the L2 temporary file removed")
        assert metric(e.admin, "mlcdn_edge_l2_stored_total") == 0
        # The next request goes to the origin again and that whole body is kept in L2.
        st, h, b, ok = get(e)
        assert (st, ok, b == body) == (200, True, True)
        assert o.count() == 2
        wait_for(lambda: metric(e.admin, "mlcdn_edge_l2_stored_total") == 1, what="L2 store")
        st, h, b, ok = get(e)
        assert (st, ok, b == body, h["X-Cache"]) == (200, True, True, "HIT")
        assert o.count() == 2


BAD_FRAMING = {
    "two_lengths": b"Content-Length: 5\r\nContent-Length: 10\r\n\r\nhelloworld",
    "length_list": b"Content-Length: 5, 10\r\n\r\nhelloworld",
    "signed_length": b"Content-Length: +5\r\n\r\nhello",
    "te_and_length": b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te_not_chunked": b"Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "space_before_colon": b"Content-Length : 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"5\r\nhello\r\n0\r\n\r\n",
    "obs_fold": b"X-A: 1\r\n folded\r\nContent-Length: 5\r\n\r\nhello",
}


@pytest.mark.parametrize("case", sorted(BAD_FRAMING))
def test_bad_framing_from_origin_is_502_and_not_stored(mlcdn, case):
    s = Script([OK_HEAD + BAD_FRAMING[case], "eof?"], whole(b"good!"))
    with ScriptOrigin(s) as o:
        e = start_edge(mlcdn, o)
        st, h, b, ok = get(e)
        assert st == 502 and ok
        assert b"invalid response head" in b
        assert metric(e.admin, "mlcdn_edge_origin_bad_framing_total") == 1
        assert "origin response refused" in e.log()
        # RFC 9112 §6.3: the proxy closes its connection to the origin.
        wait_for(lambda: len(s.closed_by_edge) >= 1, what="the origin connection's end")
        assert s.closed_by_edge[0] is True
        assert_refetched(e, o, b"good!")


@pytest.mark.parametrize("cl", [b"Content-Length: 5\r\nContent-Length: 5\r\n",
                                b"Content-Length: 5, 5\r\n"])
def test_identical_content_lengths_are_one(mlcdn, cl):
    s = Script([OK_HEAD + cl + b"\r\nhello"])
    with ScriptOrigin(s) as o:
        e = start_edge(mlcdn, o)
        assert get(e)[::2] == (200, b"hello")
        st, h, b, ok = get(e)
        assert (st, b, ok, h["X-Cache"]) == (200, b"hello", True, "HIT")
        assert o.count() == 1
