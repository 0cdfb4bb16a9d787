#!/usr/bin/python3
"""bench/control/model.py MLCDN_BIN: time from `mlcdn ctl model publish` to every edge
serving the new version, for a large model (MODEL_MB, default 100 MiB).

It starts one `mlcdn origin` (the model store) and REGIONS regions of EDGES edges each: the
region's first edge fetches from the origin, the others have it as their --parent, so a
region fetches the file once from the origin (the parent coalesces its children's requests
with its own) and its other edges get it from the parent. Version 1 is published and
rolled out first (not timed); then, ROUNDS times, a new version of the same size is
published with a sample and the run measures:
  total     ctl's whole run: SHA-256 and the sample's output computed locally, the upload,
            the manifest, the announcement, until the last edge serves the new version
  rollout   from the announcement to the last edge serving it (what ctl prints per edge:
            download through the tiers, SHA-256, load, sample, switch)
  fetches   GETs of the new version's file that reached the origin (one per region wanted)
and checks every edge answers /predict with the new version. Prints one line per round
and a summary. Env: MODEL_MB (100), REGIONS (2), EDGES (2 per region), ROUNDS (1),
WORKDIR (a temp dir), LOGDIR (keep the processes' logs there). Loopback only; every process
started is stopped by PID.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "e2e"))
from predict_util import write_big_model  # noqa: E402  (the tests' ONNX writer)

TOKEN = "bench-token"
ROWS = 131072  # rows of each 2 MiB table of write_big_model


def http(method, url, body=None, token=None):
    req = urllib.request.Request(url, data=body, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.read()


def env_int(name, default, lo, hi):
    v = os.environ.get(name, str(default))
    if not v.isdigit() or not lo <= int(v) <= hi:
        sys.exit("bench/control/model: %s=%r: expected an integer %d..%d" % (name, v, lo, hi))
    return int(v)


class Bench:
    def __init__(self, binary, work, logdir):
        self.bin, self.work, self.logdir, self.procs = binary, work, logdir, []

    def start(self, name, args, pattern):
        log = open(os.path.join(self.logdir or self.work, name + ".log"), "w")
        p = subprocess.Popen([self.bin] + args, stdout=subprocess.PIPE, stderr=log, text=True)
        self.procs.append(p)
        end = time.time() + 30
        while time.time() < end:
            line = p.stdout.readline()
            if not line:
                break
            m = re.search(pattern, line)
            if m:
                return m
        raise RuntimeError("%s did not start (log: %s)" % (name, log.name))

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: bench/control/model.py MLCDN_BIN")
    mb = env_int("MODEL_MB", 100, 2, 2000)
    regions = env_int("REGIONS", 2, 1, 16)
    per = env_int("EDGES", 2, 1, 16)
    rounds = env_int("ROUNDS", 1, 1, 100)
    work = os.environ.get("WORKDIR") or tempfile.mkdtemp(prefix="mlcdn-bench-model.")
    logdir = os.environ.get("LOGDIR")
    if logdir:
        os.makedirs(logdir, exist_ok=True)
    b = Bench(sys.argv[1], work, logdir)
    tables = mb // 2
    try:
        root = os.path.join(work, "store")
        os.makedirs(root)
        m = b.start("origin", ["origin", "--listen", "127.0.0.1:0", "--root", root, "--token",
                               TOKEN, "--max-body", "%dM" % (mb + 16), "--admin", ""],
                    r"listening on (\S+)")
        origin = m.group(1)
        edges = []
        for r in range(regions):
            parent = None
            for i in range(per):
                name = "r%d-e%d" % (r + 1, i + 1)
                args = ["edge", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--origin",
                        origin, "--model-store", origin, "--admin-token", TOKEN, "--name", name,
                        "--region", "r%d" % (r + 1), "--mem", "%dM" % (2 * mb + 64),
                        "--model-keep", "1", "--infer-threads", "1", "--drain-time", "0"]
                if parent:
                    args += ["--parent", parent]
                m = b.start(name, args, r"listening on (\S+) admin=(\S+)")
                edges.append((name, m.group(1), m.group(2)))
                parent = parent or m.group(1)
        admins = ",".join(a for _, _, a in edges)
        sample = os.path.join(work, "sample.json")
        with open(sample, "w") as f:
            json.dump({"inputs": {"id": [7]}}, f)

        def publish(version):
            path = os.path.join(work, "m%d.onnx" % version)
            # The same size, other bytes than the version before (one row fewer or more).
            write_big_model(path, tensors=tables, rows=ROWS - version % 2)
            t0 = time.monotonic()
            p = subprocess.run([b.bin, "ctl", "model", "publish", "big", str(version), path,
                                "--sample", sample, "--origin", origin, "--edges", admins,
                                "--token", TOKEN, "--wait", "10m"],
                               capture_output=True, text=True)
            total = time.monotonic() - t0
            os.unlink(path)
            if p.returncode != 0:
                raise RuntimeError("publish %d failed:\n%s%s" % (version, p.stdout, p.stderr))
            after = [float(x) for x in re.findall(r"active after ([0-9.]+) s", p.stdout)]
            if len(after) != len(edges):
                raise RuntimeError("publish %d: not every edge reported:\n%s" % (version, p.stdout))
            return total, max(after), os.path.getsize(os.path.join(root, "models", "big",
                                                                   str(version), "model.onnx"))

        publish(1)
        rows = []
        for k in range(rounds):
            version = k + 2
            http("POST", origin + "/__reset")
            total, rollout, size = publish(version)
            st = json.loads(http("GET", origin + "/__stats")[1])
            fetches = st["requests"].get("/models/big/%d/model.onnx" % version, 0) - 1
            served = set()
            for _, url, _ in edges:
                j = json.loads(http("POST", url + "/predict",
                                    json.dumps({"model": "big", "inputs": {"id": [1]}}).encode())[1])
                served.add(j["model_version"])
            ok = served == {version}
            rows.append((total, rollout, fetches))
            print("round %d: %.1f MiB to %d edges in %d regions: publish -> all serving %.2f s "
                  "(edges %.2f s after the announcement); origin fetches %d (%.1f per region)%s"
                  % (k + 1, size / 2**20, len(edges), regions, total, rollout, fetches,
                     fetches / regions, "" if ok else "; SERVED %r" % sorted(served)),
                  flush=True)
            if not ok:
                raise RuntimeError("an edge does not serve version %d" % version)
        rows.sort()
        print("summary: %d round(s), publish -> all serving: min %.2f s, median %.2f s, max %.2f s"
              % (len(rows), rows[0][0], rows[len(rows) // 2][0], rows[-1][0]))
    finally:
        b.stop()
        if not os.environ.get("WORKDIR"):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
