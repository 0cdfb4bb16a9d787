"""tests/e2e/script_origin.py: an origin whose every byte the test writes, for faults the
reference origin cannot produce (bodies cut short, bad chunk sizes, conflicting framing, hangs).

    def answer(req, sock):            # req: ScriptRequest; sock: the accepted socket
        sock.sendall(b"HTTP/1.1 200 OK\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n5\\r\\nhel")
        # returning closes the connection (a cut body)

    with ScriptOrigin(answer) as o:
        edge = mlcdn("edge", ["--listen", "127.0.0.1:0", "--origin", o.url])
        ...
        assert o.requests[0].headers["host"] == "victim.example"

Each connection is served by its own thread: the request head (and a body announced by
Content-Length) is read, recorded in .requests, and handed to the script. The script may
serve several requests on one connection by calling req.next() for the following one, and
read a chunked request body with req.read_chunked().
.accepted counts the connections accepted and .heads the request heads read (before their
bodies), so a test can tell whether, and when, the edge contacted the origin.
Everything listens on 127.0.0.1 with a kernel-chosen port; close() (or leaving the `with`)
stops the listener and closes every open connection.
"""
import socket
import threading


class ScriptRequest:
    def __init__(self, raw_head, body, sock, origin):
        self.raw = raw_head  # bytes, the head as received (request line and fields)
        self.body = body
        self._sock = sock
        self._origin = origin
        lines = raw_head.decode("latin-1").split("\r\n")
        self.method, self.target, self.version = (lines[0].split(" ") + ["", "", ""])[:3]
        self.fields = []  # [(name lower-cased, value)] in order, repeats kept
        for ln in lines[1:]:
            if ":" in ln:
                n, v = ln.split(":", 1)
                self.fields.append((n.strip().lower(), v.strip()))
        self.headers = {}
        for n, v in self.fields:
            self.headers.setdefault(n, v)

    def read_chunked(self, timeout=10):
        """Reads the chunked body that follows the head into .body (trailers are not
        expected) and returns it; None when the peer closed first."""
        o = self._origin
        with o._lock:
            buf = o._pending.pop(self._sock, b"")
        self._sock.settimeout(timeout)
        body = b""
        while True:
            while b"\r\n" not in buf:
                d = self._sock.recv(65536)
                if not d:
                    return None
                buf += d
            line, buf = buf.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            while len(buf) < size + 2:
                d = self._sock.recv(65536)
                if not d:
                    return None
                buf += d
            body += buf[:size]
            buf = buf[size + 2:]
            if size == 0:
                break
        if buf:
            with o._lock:
                o._pending[self._sock] = buf
        self.body = body
        return body

    def next(self, timeout=10):
        """The next request on the same connection (None when the peer closed)."""
        return self._origin._read_request(self._sock, timeout)


class ScriptOrigin:
    def __init__(self, script):
        self.script = script
        self.requests = []
        self.accepted = 0
        self.heads = 0
        self._lock = threading.Lock()
        self._conns = []
        self._pending = {}  # socket -> bytes read past the previous request (pipelining)
        self._ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._ls.bind(("127.0.0.1", 0))
        self._ls.listen(128)
        self.port = self._ls.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self._stop = False
        self._t = threading.Thread(target=self._accept, daemon=True)
        self._t.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def count(self):
        with self._lock:
            return len(self.requests)

    def close(self):
        self._stop = True
        try:
            self._ls.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._ls.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.close()
            except OSError:
                pass
        self._t.join(5)

    def _accept(self):
        while not self._stop:
            try:
                s, _ = self._ls.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(s)
                self.accepted += 1
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _read_request(self, s, timeout=10):
        s.settimeout(timeout)
        with self._lock:
            buf = self._pending.pop(s, b"")
        while b"\r\n\r\n" not in buf:
            try:
                d = s.recv(65536)
            except OSError:
                return None
            if not d:
                return None
            buf += d
        head, rest = buf.split(b"\r\n\r\n", 1)
        req = ScriptRequest(head, b"", s, self)
        with self._lock:
            self.heads += 1
        n = int(req.headers.get("content-length", "0") or 0)
        while len(rest) < n:
            try:
                d = s.recv(65536)
            except OSError:
                break
            if not d:
                break
            rest += d
        req.body, extra = rest[:n], rest[n:]
        with self._lock:
            if extra:
                self._pending[s] = extra
            self.requests.append(req)
        return req

    def _serve(self, s):
        try:
            req = self._read_request(s)
            if req is not None:
                self.script(req, s)
        except OSError:
            pass
        finally:
            try:
                s.close()
            except OSError:
                pass
