"""The daemons speak systemd's readiness protocol (Type=notify, sd_notify(3)): with
NOTIFY_SOCKET set, the origin, the edge and the router each send READY=1 once their
listeners answer, and STOPPING=1 when SIGTERM starts their shutdown, from the main PID
(what NotifyAccess=main accepts). The socket is a real AF_UNIX datagram socket bound by the
test, by path and in the abstract namespace."""
import os
import re
import signal
import socket
import struct
import subprocess
import tempfile
import urllib.request

import pytest

from mlcdn_proc import mlcdn, wait_for  # noqa: F401 (fixture)
from router_util import make_test_mmdb, mlcdn_bin

WAIT = 15.0  # a daemon that never notifies fails the test after this, it does not hang it


class Notified:
    """A daemon started with NOTIFY_SOCKET pointing at a socket this test bound."""

    def __init__(self, sock_name, argv):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        # Ask for the sender's credentials, as systemd does to apply NotifyAccess=main.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind("\0" + sock_name[1:] if sock_name.startswith("@") else sock_name)
        self.sock.settimeout(WAIT)
        self.log = tempfile.NamedTemporaryFile(prefix="mlcdn-notify-", suffix=".log",
                                               delete=False)
        env = dict(os.environ, NOTIFY_SOCKET=sock_name)
        self.proc = subprocess.Popen([mlcdn_bin()] + argv, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.log)

    def next(self):
        """The next datagram as {KEY: VALUE}, with the sender's PID under "_pid"."""
        try:
            data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except socket.timeout:
            raise AssertionError("no notification within %.0f s; log:\n%s" % (WAIT, self.text()))
        msg = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                msg["_pid"] = struct.unpack("iII", cdata[:12])[0]
        return msg

    def text(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.sock.close()
        self.log.close()
        os.unlink(self.log.name)


@pytest.fixture
def notified(tmp_path):
    started = []

    def factory(argv, abstract=False):
        name = ("@mlcdn-test-%d-%d" % (os.getpid(), len(started)) if abstract
                else str(tmp_path / ("notify%d" % len(started))))
        n = Notified(name, argv)
        started.append(n)
        return n

    yield factory
    for n in started:
        n.close()


def ready_then_stopping(n, probe):
    """READY=1 comes from the daemon's own PID and only once `probe` can reach it (called
    right after READY, no retry); SIGTERM then brings STOPPING=1 and a clean exit."""
    msg = n.next()
    assert msg.get("READY") == "1", msg
    assert msg["_pid"] == n.proc.pid
    probe(msg["STATUS"])
    n.proc.send_signal(signal.SIGTERM)
    msg = n.next()
    assert msg == {"STOPPING": "1", "_pid": n.proc.pid}
    assert n.proc.wait(WAIT) == 0, n.text()


def http_get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.read()


def test_origin_edge_router_notify_ready_and_stopping(notified, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_text("hello\n")
    origin = notified(["origin", "--listen", "127.0.0.1:0", "--root", str(root)])
    msg = origin.next()
    assert msg.get("READY") == "1" and msg["_pid"] == origin.proc.pid
    port = int(re.search(r"on port (\d+)$", msg["STATUS"]).group(1))
    assert http_get("http://127.0.0.1:%d/a.txt" % port) == (200, b"hello\n")

    # The edge notifies through an abstract socket ("@name"), as systemd may set it.
    edge = notified(["edge", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                     "--origin", "http://127.0.0.1:%d" % port, "--grace", "1s",
                     "--drain-time", "1s"], abstract=True)
    msg = edge.next()
    assert msg.get("READY") == "1" and msg["_pid"] == edge.proc.pid
    m = re.match(r"serving on 127\.0\.0\.1:(\d+), admin (http://\S+)$", msg["STATUS"])
    assert m, msg
    assert http_get("http://127.0.0.1:%s/a.txt" % m.group(1)) == (200, b"hello\n")
    assert http_get(m.group(2) + "/health")[0] == 200

    geo = make_test_mmdb(str(tmp_path / "geo.mmdb"))
    router = notified(["router", "--zone", "cdn.test", "--geoip", geo, "--dns", "127.0.0.1:0",
                       "--http", "127.0.0.1:0",
                       "--edge", "e1=51.5,-0.1,127.0.0.1,%s/health" % m.group(2)])

    def router_answers(status):
        hp = re.search(r"HTTP port (\d+)$", status).group(1)
        st, body = http_get("http://127.0.0.1:%s/edges" % hp)
        assert st == 200 and b"e1" in body

    ready_then_stopping(router, router_answers)

    edge.proc.send_signal(signal.SIGTERM)
    assert edge.next() == {"STOPPING": "1", "_pid": edge.proc.pid}
    assert edge.proc.wait(WAIT) == 0, edge.text()
    origin.proc.send_signal(signal.SIGTERM)
    assert origin.next() == {"STOPPING": "1", "_pid": origin.proc.pid}
    assert origin.proc.wait(WAIT) == 0, origin.text()


def test_unreachable_notify_socket_is_logged_and_the_daemon_runs_on(mlcdn, tmp_path):
    # Nobody bound this path: the origin still serves, and its log says why the service
    # manager heard nothing (systemd would time the start out with no other clue).
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "nobody"))
    (tmp_path / "a.txt").write_text("x")
    o = mlcdn("origin", ["--listen", "127.0.0.1:0", "--root", str(tmp_path)], env=env)
    wait_for(lambda: "cannot notify" in o.log(), what="the warning")
    assert re.search(r'level=warn msg="cannot notify the service manager" state=READY '
                     r'NOTIFY_SOCKET="\S+/nobody" error="No such file or directory"', o.log())
    assert o.get("/a.txt").status == 200
