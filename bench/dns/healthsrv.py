#!/usr/bin/python3
"""Edge health endpoints for the GeoDNS benchmark: one listener per edge DC, shared by
gdnsd (plugin http_status: wants HTTP 200) and mlcdn router (wants the edge's JSON).

Usage: healthsrv.py STATE_DIR PORT name=127.0.1.1 name=127.0.1.2 ...
GET /health -> 200 {"status":"ok","region":name,"load":0.2,"hit_ratio":0.8,...}, or 503
while the file STATE_DIR/down-<name> exists (as ../../../shared/bench/geodns/healthsrv.py).
Loopback addresses only."""
import http.server, json, os, sys, threading

state_dir, port = sys.argv[1], int(sys.argv[2])
pairs = [a.split("=", 1) for a in sys.argv[3:]]


def make_handler(name):
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            down = os.path.exists(os.path.join(state_dir, "down-" + name))
            body = b"down\n" if down else json.dumps(
                {"status": "ok", "region": name, "load": 0.2, "hit_ratio": 0.8,
                 "uptime_s": 1}).encode()
            self.send_response(503 if down else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass
    return H


for name, addr in pairs:
    if not addr.startswith("127."):
        sys.exit("refusing non-loopback address " + addr)
    s = http.server.ThreadingHTTPServer((addr, port), make_handler(name))
    s.daemon_threads = True
    threading.Thread(target=s.serve_forever, daemon=True).start()
print("health endpoints on port %d: %s" % (port, " ".join("%s=%s" % (n, a) for n, a in pairs)),
      flush=True)
threading.Event().wait()
