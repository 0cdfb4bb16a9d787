#!/usr/bin/python3
"""bench/control/control.py MLCDN_BIN: propagation time of invalidations to every edge.

For each edge count (EDGES, default "4 16") it starts redis-server, one `mlcdn origin` and
that many `mlcdn edge` processes reading the control stream, puts them under load (one wrk
per edge on a cached object, LOAD_CONNS connections each, each waiting LOAD_DELAY_MS between
requests: a steady load that leaves the CPUs some room; 0: as fast as the edges answer,
which saturates the machine), and sends N_INVAL invalidations
one after the other with `mlcdn ctl invalidate` over each transport (TRANSPORTS, default
"http redis": direct HTTP fan-out to the edges' admin URLs, and the Redis stream). The
propagation of one invalidation is what ctl reports: the time until the slowest edge
acknowledged (HTTP: from the start of the fan-out; Redis: from the XADD). It prints one
table row per (edges, transport): p50, p99, max, invalidations not acknowledged by every
edge, and the load the edges served meanwhile.

Then (SURVIVE invalidations, default 300; 0 skips it) nothing lost across restarts: 4 edges
on the stream, Redis with its append-only file (a durable control stream); a third of the
way through one edge is killed (SIGKILL) and started again on its state file, two thirds
of the way Redis is restarted. Every invalidation Redis accepted must be acknowledged
(applied) by every edge; it prints how many were sent, refused while Redis was down, and
applied per edge.

Env: N_INVAL (1000), EDGES ("4 16"), TRANSPORTS ("http redis"), LOAD_CONNS (4; 0: no
load), LOAD_DELAY_MS (1), SURVIVE (300), WORKDIR (a temp dir), LOGDIR (keep the edges' logs
there). Loopback only; every process started is stopped by PID.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

TOKEN = "bench-token"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_line(proc, pattern, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(pattern, line)
        if m:
            return m
    raise RuntimeError("no ready line matching %r" % pattern)


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")


class Bench:
    def __init__(self, binary, work):
        self.bin, self.work, self.procs = binary, work, []

    def spawn(self, argv, **kw):
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=kw.pop("stderr", subprocess.DEVNULL),
                             text=True, **kw)
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.procs = []

    def breakdown(self, rport):
        """Where the stream's time goes: entry t (ctl, before XADD) to each edge's ack t."""
        def xrange(key):
            out = subprocess.run(["redis-cli", "-p", str(rport), "--json", "XRANGE", key, "-",
                                  "+"], capture_output=True, text=True).stdout
            return [dict(zip(f[0::2], f[1::2])) for _, f in json.loads(out or "[]")]
        sent = {e["id"]: int(e["t"]) for e in xrange("mlcdn:control")}
        d = [int(a["t"]) - sent[a["op"]] for a in xrange("mlcdn:control:acks") if a["op"] in sent]
        print("  stream: XADD to an edge's acknowledgement (wall clocks): p50 %d ms, p99 %d ms, "
              "max %d ms over %d acknowledgements" % (pct(d, 0.5), pct(d, 0.99), max(d), len(d)))

    def run(self, nedges, transports, n_inval, conns, delay_ms):
        d = tempfile.mkdtemp(dir=self.work)
        root = os.path.join(d, "root")
        os.mkdir(root)
        with open(os.path.join(root, "hot.bin"), "wb") as f:
            f.write(b"x" * 1024)
        rport = free_port()
        redis_url = "redis://127.0.0.1:%d" % rport
        self.spawn(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--dir", d])
        for _ in range(100):
            if subprocess.run(["redis-cli", "-p", str(rport), "ping"], capture_output=True,
                              text=True).stdout.strip() == "PONG":
                break
            time.sleep(0.05)
        origin = self.spawn([self.bin, "origin", "--listen", "127.0.0.1:0", "--root", root],
                            stderr=subprocess.STDOUT)
        ourl = wait_line(origin, r"(http://127\.0\.0\.1:\d+)").group(1)
        edges = []
        for i in range(nedges):
            logdir = os.environ.get("LOGDIR")
            err = open(os.path.join(logdir, "b%d-%d.log" % (nedges, i)), "w") if logdir else subprocess.DEVNULL
            e = self.spawn([self.bin, "edge", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                            "--origin", ourl, "--region", "bench", "--name", "b%d" % i,
                            "--admin-token", TOKEN, "--drain-time", "0", "--log-level", "warn",
                            "--control-redis", redis_url, "--control-state",
                            os.path.join(d, "b%d.state" % i)], stderr=err)
            m = wait_line(e, r"listening on (\S+) admin=(\S+)")
            edges.append((m.group(1), m.group(2)))
        # Every edge registered on the stream before the first measured invalidation.
        for _ in range(200):
            n = subprocess.run(["redis-cli", "-p", str(rport), "HLEN", "mlcdn:control:edges"],
                               capture_output=True, text=True).stdout.strip()
            if n == str(nedges):
                break
            time.sleep(0.05)
        loads = []
        if conns > 0:
            pace = []
            if delay_ms > 0:  # each connection waits this long between requests
                lua = os.path.join(d, "pace.lua")
                with open(lua, "w") as f:
                    f.write("function delay()\n  return %d\nend\n" % delay_ms)
                pace = ["-s", lua]
            for url, _ in edges:
                subprocess.run(["curl", "-s", "-o", "/dev/null", url + "/hot.bin"])
                loads.append(self.spawn(["wrk", "-t1", "-c%d" % conns, "-d3600s"] + pace +
                                        [url + "/hot.bin"]))
            time.sleep(1)
        rows = []
        env = dict(os.environ, MLCDN_ADMIN_TOKEN=TOKEN)
        for tr in transports:
            target = (["--edges", ",".join(a for _, a in edges)] if tr == "http"
                      else ["--redis", redis_url])
            props, missed = [], 0
            t0 = time.time()
            for k in range(n_inval):
                r = subprocess.run([self.bin, "ctl", "invalidate"] + target +
                                   ["--url", "/inv/%s/%d" % (tr, k), "--json"],
                                   capture_output=True, text=True, env=env)
                try:
                    out = json.loads(r.stdout)
                except ValueError:
                    missed += 1
                    continue
                if out["acknowledged"] != nedges:
                    missed += 1
                else:
                    props.append(out["propagation_ms"])
            rows.append((nedges, tr, len(props), pct(props, 0.5), pct(props, 0.99),
                         max(props) if props else float("nan"), missed, time.time() - t0))
            if tr == "redis" and os.environ.get("BREAKDOWN"):
                self.breakdown(rport)
        for p in loads:
            p.send_signal(signal.SIGINT)
        reqs = 0
        for p in loads:
            out = p.communicate(timeout=30)[0]
            m = re.search(r"(\d+) requests in", out or "")
            reqs += int(m.group(1)) if m else 0
        self.stop_all()
        shutil.rmtree(d, ignore_errors=True)
        return rows, reqs


def redis_up(port):
    for _ in range(200):
        if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                          text=True).stdout.strip() == "PONG":
            return
        time.sleep(0.05)
    raise RuntimeError("redis-server on port %d did not answer" % port)


def survive(b, n_inval, nedges=4):
    """Invalidations over the stream while an edge and then Redis restart: how many every
    edge applied (acknowledged) of those Redis accepted."""
    d = tempfile.mkdtemp(dir=b.work)
    root = os.path.join(d, "root")
    os.mkdir(root)
    rport = free_port()
    redis_url = "redis://127.0.0.1:%d" % rport
    redis_argv = ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                  "--appendonly", "yes", "--appendfsync", "always", "--dir", d]
    redis = b.spawn(redis_argv)
    redis_up(rport)
    origin = b.spawn([b.bin, "origin", "--listen", "127.0.0.1:0", "--root", root],
                     stderr=subprocess.STDOUT)
    ourl = wait_line(origin, r"(http://127\.0\.0\.1:\d+)").group(1)

    def start_edge(i):
        e = b.spawn([b.bin, "edge", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                     "--origin", ourl, "--region", "bench", "--name", "s%d" % i,
                     "--admin-token", TOKEN, "--drain-time", "0", "--log-level", "warn",
                     "--control-redis", redis_url, "--control-state",
                     os.path.join(d, "s%d.state" % i)])
        wait_line(e, r"listening on (\S+) admin=(\S+)")
        return e

    edges = [start_edge(i) for i in range(nedges)]
    for _ in range(200):
        if subprocess.run(["redis-cli", "-p", str(rport), "HLEN", "mlcdn:control:edges"],
                          capture_output=True, text=True).stdout.strip() == str(nedges):
            break
        time.sleep(0.05)
    env = dict(os.environ, MLCDN_ADMIN_TOKEN=TOKEN)
    sent, refused = [], 0
    for k in range(n_inval):
        if k == n_inval // 3:
            edges[0].kill()
            edges[0].wait(10)
            edges[0] = start_edge(0)
        if k == 2 * n_inval // 3:
            redis.send_signal(signal.SIGTERM)
            redis.wait(20)
            redis = b.spawn(redis_argv)
            redis_up(rport)
        r = subprocess.run([b.bin, "ctl", "invalidate", "--redis", redis_url, "--url",
                            "/survive/%d" % k, "--timeout", "100ms", "--json"],
                           capture_output=True, text=True, env=env)
        try:
            sent.append(json.loads(r.stdout)["id"])
        except (ValueError, KeyError):
            refused += 1
    applied = {}
    want = set(sent)
    for _ in range(600):  # up to 30 s for the edges to catch up
        out = subprocess.run(["redis-cli", "-p", str(rport), "--json", "XRANGE",
                              "mlcdn:control:acks", "-", "+"], capture_output=True,
                             text=True).stdout
        applied = {}
        for _, f in json.loads(out or "[]"):
            a = dict(zip(f[0::2], f[1::2]))
            if a.get("op") in want and a.get("status") == "200":
                applied.setdefault(a["edge"], set()).add(a["op"])
        if len(applied) == nedges and all(len(v) == len(want) for v in applied.values()):
            break
        time.sleep(0.05)
    b.stop_all()
    shutil.rmtree(d, ignore_errors=True)
    return len(sent), refused, {e: len(v) for e, v in sorted(applied.items())}


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "build/mlcdn"
    n_inval = int(os.environ.get("N_INVAL", "1000"))
    edge_counts = [int(x) for x in os.environ.get("EDGES", "4 16").split()]
    transports = os.environ.get("TRANSPORTS", "http redis").split()
    n_survive = int(os.environ.get("SURVIVE", "300"))
    conns = int(os.environ.get("LOAD_CONNS", "4"))
    delay_ms = int(os.environ.get("LOAD_DELAY_MS", "1"))
    for t in transports:
        if t not in ("http", "redis"):
            sys.exit("TRANSPORTS: '%s' is not http or redis" % t)
    work = os.environ.get("WORKDIR") or tempfile.mkdtemp(prefix="mlcdn-bench-control.")
    b = Bench(binary, work)
    print("propagation of %d invalidations, one at a time, edges under load (wrk, %d "
          "connections per edge on a cached 1 KiB object, %s); %d CPUs"
          % (n_inval, conns, "%d ms between a connection's requests" % delay_ms if delay_ms
             else "as fast as they answer", os.cpu_count()))
    print("| edges | transport | acknowledged by all | p50 ms | p99 ms | max ms | not by all | "
          "wall s | load req/s |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    try:
        for n in edge_counts:
            t0 = time.time()
            rows, reqs = b.run(n, transports, n_inval, conns, delay_ms)
            rate = reqs / (time.time() - t0) if reqs else 0
            for r in rows:
                print("| %d | %s | %d | %.2f | %.2f | %.2f | %d | %.1f | %.0f |"
                      % (r + (rate,)), flush=True)
        if n_survive > 0:
            nsent, refused, applied = survive(b, n_survive)
            print("\nacross restarts (4 edges, stream; edge s0 killed and restarted at 1/3, "
                  "Redis restarted at 2/3): %d invalidations accepted by Redis, %d refused while "
                  "it was down; applied per edge: %s; %s"
                  % (nsent, refused, ", ".join("%s %d" % kv for kv in applied.items()),
                     "none lost" if len(applied) == 4 and
                     all(v == nsent for v in applied.values()) else "SOME LOST"), flush=True)
    finally:
        b.stop_all()
        if not os.environ.get("WORKDIR"):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
