"""tests/e2e/mlcdn_proc.py: start `mlcdn` subcommands as real processes, and talk HTTP to them.

    proc = start("origin", ["--listen", "127.0.0.1:0", "--root", str(tmp)])
    r = request("GET", proc.url + "/a.txt")
    proc.stop()

Every process is started with its stdout read until the ready line ("... listening on URL"),
stderr going to a log file that is printed when a test fails. Use the `mlcdn` fixture
(import it into the test module: `from mlcdn_proc import mlcdn`) so every process is stopped
by PID when the test ends, failed or not; an atexit hook catches anything left over.
"""
import atexit
import http.client
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

import pytest

READY = r"listening on (?P<url>https?://\S+)"
_live = []


def binary():
    b = os.environ.get("MLCDN_BIN")
    if b:
        return b
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(here, "..", "..", "build", "mlcdn")


class Proc:
    """One running `mlcdn <subcmd>`; .url/.host/.port come from its ready line."""

    def __init__(self, popen, url, log_path, argv):
        self.popen = popen
        self.pid = popen.pid
        self.url = url.rstrip("/")
        u = urllib.parse.urlsplit(self.url)
        self.host = u.hostname
        self.port = u.port
        self.log_path = log_path
        self.argv = argv
        self.returncode = None

    def alive(self):
        return self.popen.poll() is None

    def log(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, timeout=10.0):
        """SIGTERM, wait; SIGKILL if it does not end in time. Returns the exit status."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self.returncode = self.popen.returncode
        if self in _live:
            _live.remove(self)
        return self.returncode

    # HTTP helpers bound to this process
    def request(self, method, path, body=None, headers=None, timeout=30):
        return request(method, self.url + path, body=body, headers=headers, timeout=timeout)

    def get(self, path, headers=None, **kw):
        return self.request("GET", path, headers=headers, **kw)

    def head(self, path, headers=None, **kw):
        return self.request("HEAD", path, headers=headers, **kw)


def start(subcmd, args, ready_pattern=READY, timeout=15.0, env=None, nofile=None):
    """Starts `mlcdn subcmd args...` and waits for a stdout line matching ready_pattern
    (its group "url", or group 1, is the URL). Raises (and kills the process) on timeout.
    nofile=N runs it with RLIMIT_NOFILE N:N (as `prlimit --nofile=N:N` would).
    An edge gets --drain-time 0 first (so that stop() does not wait out a drain) unless
    args set one; a later flag wins."""
    argv = [binary(), subcmd] + [str(a) for a in args]
    if subcmd == "edge":
        argv[2:2] = ["--drain-time", "0"]
    log = tempfile.NamedTemporaryFile(prefix="mlcdn-%s-" % subcmd, suffix=".log", delete=False)

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                             env=env, text=True, bufsize=1,
                             preexec_fn=limit if nofile else None)
    log.close()
    pat = re.compile(ready_pattern)
    found = {}
    seen = []

    def reader():
        for line in popen.stdout:
            seen.append(line)
            m = pat.search(line)
            if m and "url" not in found:
                found["url"] = m.groupdict().get("url") or (m.group(1) if m.groups() else "")
                found["groups"] = m.groupdict()
                ready.set()
        ready.set()

    ready = threading.Event()
    threading.Thread(target=reader, daemon=True).start()
    ready.wait(timeout)
    if "url" not in found:
        popen.kill()
        popen.wait(5)
        with open(log.name, errors="replace") as f:
            err = f.read()
        raise RuntimeError("%s did not become ready (exit %s)\nstdout: %s\nstderr: %s"
                           % (" ".join(argv), popen.returncode, "".join(seen), err))
    p = Proc(popen, found["url"], log.name, argv)
    p.ready = found.get("groups") or {}
    _live.append(p)
    return p


@atexit.register
def _stop_all():
    for p in list(_live):
        p.stop(timeout=5)


class Response:
    def __init__(self, status, headers, body, reason=""):
        self.status = status
        self.reason = reason
        self.headers = headers  # http.client.HTTPMessage: case-insensitive .get()
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:80])


def request(method, url, body=None, headers=None, timeout=30):
    """One request on a fresh connection; returns Response (never raises on HTTP errors)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        target = u.path or "/"
        if u.query:
            target += "?" + u.query
        conn.request(method, target, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, r.msg, data, r.reason)
    finally:
        conn.close()


def raw(host, port, data, timeout=10):
    """Sends raw bytes and returns everything read until the peer closes (for malformed
    requests and paths http.client would normalise)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


def metric(admin, name):
    """Sum of every series of a metric on a daemon's /metrics (admin: its base URL)."""
    total = 0.0
    for line in request("GET", admin + "/metrics").body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def free_port():
    """A TCP port of 127.0.0.1 free at the time of the call (for a daemon's fixed port)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_for(cond, timeout=15.0, what="condition"):
    """Polls cond() until it is true; fails the test after timeout seconds."""
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


@pytest.fixture
def mlcdn(request):
    """Factory fixture: mlcdn(subcmd, args, ready_pattern=...) -> Proc; all stopped at the end.
    On failure the processes' stderr is printed (shown by pytest)."""
    procs = []

    def factory(subcmd, args, ready_pattern=READY, **kw):
        p = start(subcmd, args, ready_pattern, **kw)
        procs.append(p)
        return p

    def fin():
        for p in procs:
            p.stop()
        failed = getattr(request.node, "rep_call", None)
        if failed is None or failed.failed:
            for p in procs:
                sys.stderr.write("---- %s (pid %d) log ----\n%s\n"
                                 % (" ".join(p.argv), p.pid, p.log()[-8000:]))
        for p in procs:
            try:
                os.unlink(p.log_path)
            except OSError:
                pass

    request.addfinalizer(fin)
    return factory
