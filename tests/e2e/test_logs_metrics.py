"""Access logs, error logs and metrics of every daemon (docs/operations.md "Logs", "Metrics").

* One access log line per request on the edge (both listeners), the origin and the router,
  in the combined format (with mlcdn's fields appended) or as JSON lines; set by flag or in
  the config file.
* SIGUSR1 reopens the access log and the error log as logrotate expects: rename, signal,
  no line lost, new lines in the new file; the daemon keeps running.
* A 502 or 504 is logged at warn with its reason; a client that leaves during a miss is no
  upstream failure (debug "client abort", status 499 in the access log).
* /metrics of every daemon passes `promtool check metrics`; build_info, process_*, the
  edge's last-byte and first-byte histograms, prediction metrics by model and version, the
  model's sha256, and label values with quotes and backslashes escaped.
"""
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from mlcdn_proc import mlcdn, request, wait_for  # noqa: F401  (mlcdn is a fixture)
import router_util

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
FIXTURE_MODELS = os.path.join(REPO, "tests", "fixtures", "models")
ADMIN_READY = r"listening on (?P<url>\S+) admin=(?P<admin>\S+)"

COMBINED = re.compile(
    r'^(?P<client>\S+) - - \[(?P<time>\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000)\] '
    r'"(?P<method>\S+) (?P<url>\S+) (?P<proto>HTTP/1\.[01])" (?P<status>\d{3}) (?P<bytes>\d+) '
    r'"(?P<referer>[^"]*)" "(?P<ua>[^"]*)" cache=(?P<cache>\S+) level=(?P<level>\S+) '
    r'ttfb=(?P<ttfb>\S+) time=(?P<time_s>\S+) upstream=(?P<upstream>\S+) model=(?P<model>\S+) '
    r'version=(?P<version>\S+) listener=(?P<listener>\S+) completion=(?P<completion>OK|-)$')


def lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def wait_lines(path, n, timeout=10):
    wait_for(lambda: len(lines(path)) >= n, timeout, "%d lines in %s" % (n, path))
    time.sleep(0.3)  # a line too many would show up within the writer's period
    return lines(path)


def parse(line):
    m = COMBINED.match(line)
    assert m, "not a combined line: %r" % line
    return m.groupdict()


def start_origin(mlcdn, root, *extra):
    o = mlcdn("origin", ["--listen", "127.0.0.1:0", "--root", str(root)] + list(extra),
              ready_pattern=ADMIN_READY)
    o.admin = o.ready["admin"]
    return o


def start_edge(mlcdn, origin_url, *extra):
    e = mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                       "--origin", origin_url] + list(extra), ready_pattern=ADMIN_READY)
    e.admin = e.ready["admin"]
    return e


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    r.mkdir()
    (r / "a.bin").write_bytes(os.urandom(1024))
    return r


def test_edge_access_log_combined(mlcdn, root, tmp_path):
    origin = start_origin(mlcdn, root)
    log = tmp_path / "edge-access.log"
    edge = start_edge(mlcdn, origin.url, "--access-log", log)
    assert edge.get("/a.bin", headers={"User-Agent": 'ua "quoted"', "Referer": "http://r/"}).status == 200
    assert edge.get("/a.bin").status == 200
    assert edge.get("/missing").status == 404
    assert request("GET", edge.admin + "/health").status == 200
    got = [parse(x) for x in wait_lines(log, 4)]
    assert len(got) == 4
    miss, hit, nf, adm = got
    assert (miss["method"], miss["url"], miss["status"], miss["bytes"]) == ("GET", "/a.bin", "200", "1024")
    assert (miss["cache"], miss["level"], miss["listener"]) == ("MISS", "ORIGIN", "public")
    assert miss["ua"] == "ua \\x22quoted\\x22" and miss["referer"] == "http://r/"
    assert float(miss["upstream"]) > 0 and float(miss["time_s"]) >= float(miss["ttfb"]) > 0
    assert (hit["cache"], hit["level"], hit["upstream"], hit["completion"]) == ("HIT", "L1", "-", "OK")
    assert nf["status"] == "404" and nf["referer"] == "-"
    assert (adm["listener"], adm["url"], adm["cache"]) == ("admin", "/health", "-")
    assert miss["model"] == "-" and miss["version"] == "-" and miss["client"] == "127.0.0.1"
    text = scrape(edge.admin)
    assert value(text, "mlcdn_access_log_lines_total") >= 4
    assert value(text, "mlcdn_access_log_dropped_lines_total") == 0


def test_access_log_json_from_config_file(mlcdn, root, tmp_path):
    origin = start_origin(mlcdn, root)
    log = tmp_path / "a.jsonl"
    conf = tmp_path / "edge.conf"
    conf.write_text('origin = ["%s"];\naccess_log = "%s";\naccess_log_format = "json";\n'
                    % (origin.url, log))
    edge = mlcdn("edge", ["--config", conf, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"],
                 ready_pattern=ADMIN_READY)
    for _ in range(3):
        assert edge.get("/a.bin?x=%22y").status == 200
    recs = [json.loads(x) for x in wait_lines(log, 3)]
    assert [r["cache"] for r in recs] == ["MISS", "HIT", "HIT"]
    r = recs[1]
    assert r["url"] == "/a.bin?x=%22y" and r["status"] == 200 and r["bytes"] == 1024
    assert r["level"] == "L1" and r["upstream_s"] is None and r["complete"] is True
    assert r["duration_s"] >= r["ttfb_s"] > 0 and r["protocol"] == "HTTP/1.1"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$", r["time"])
    assert recs[0]["upstream_s"] > 0 and recs[0]["level"] == "ORIGIN"


def test_access_log_off_by_default_and_bad_flags(mlcdn, root, tmp_path):
    origin = start_origin(mlcdn, root)
    edge = start_edge(mlcdn, origin.url)
    assert edge.get("/a.bin").status == 200
    assert "upstream failure" not in edge.log()
    for args, want in [(["--access-log-format", "xml"], "--access-log-format: 'xml'"),
                       (["--access-log", str(tmp_path / "no" / "dir.log")], "--access-log: cannot open"),
                       (["--error-log", str(tmp_path / "no" / "err.log")], "--error-log: cannot open")]:
        for sub in (["edge", "--origin", origin.url, "--listen", "127.0.0.1:0"],
                    ["origin", "--root", str(root), "--listen", "127.0.0.1:0"]):
            p = subprocess.run([edge.argv[0]] + sub + args, capture_output=True, text=True, timeout=20)
            assert p.returncode == 2, (sub, args, p.stderr)
            assert want in p.stderr, p.stderr


def rotate(proc, log, make_requests, n_before, n_after, err_log=None):
    """logrotate's sequence: lines, rename, SIGUSR1, lines; nothing lost, new lines in the
    new file."""
    make_requests(n_before)
    # A line is written once the response went out: the client can see its answer a moment
    # before its line exists. logrotate comes long after; here we wait for them.
    wait_lines(log, n_before)
    os.rename(log, str(log) + ".1")
    if err_log:
        os.rename(err_log, str(err_log) + ".1")
    os.kill(proc.pid, signal.SIGUSR1)
    wait_for(lambda: os.path.exists(log), 10, "the access log reopened")
    make_requests(n_after)
    after = wait_lines(log, n_after)
    before = lines(str(log) + ".1")
    assert len(before) == n_before, before
    assert len(after) == n_after, after
    assert proc.alive()
    if err_log:
        wait_for(lambda: 'level=info msg="log files reopened"' in "".join(lines(err_log)), 10,
                 "error log reopened")


def test_sigusr1_reopens_edge_logs(mlcdn, root, tmp_path):
    origin = start_origin(mlcdn, root)
    log, err = tmp_path / "access.log", tmp_path / "error.log"
    edge = start_edge(mlcdn, origin.url, "--access-log", log, "--error-log", err)
    wait_for(lambda: "edge started" in "".join(lines(err)), 10, "edge started in the error log")

    def reqs(n):
        for _ in range(n):
            assert edge.get("/a.bin").status == 200

    rotate(edge, log, reqs, 5, 3, err_log=err)
    assert "edge started" in "".join(lines(str(err) + ".1"))
    assert edge.get("/a.bin").status == 200


def test_sigusr1_reopens_origin_log(mlcdn, root, tmp_path):
    log = tmp_path / "origin-access.log"
    origin = start_origin(mlcdn, root, "--access-log", log)

    def reqs(n):
        for _ in range(n):
            assert origin.get("/a.bin").status == 200

    rotate(origin, log, reqs, 4, 2)
    rec = parse(lines(log)[0])
    assert (rec["listener"], rec["url"], rec["bytes"], rec["cache"]) == ("origin", "/a.bin", "1024", "-")


def router_with(tmp_path, *extra):
    db = str(tmp_path / "geo.mmdb")
    router_util.make_test_mmdb(db)
    health = router_util.HealthEdges(["tokyo"])
    specs = router_util.edge_specs(health, dcs=router_util.SIX_DCS[:1])
    return router_util.Router("cdn.test", db, specs, extra=list(extra)), health


def test_sigusr1_reopens_router_log(tmp_path):
    log = tmp_path / "router-access.log"
    r, health = router_with(tmp_path, "--access-log", log)
    try:
        class P:
            pid = r.proc.pid

            def alive(self):
                return r.proc.poll() is None

        def reqs(n):
            for _ in range(n):
                assert r.http("/edges")[0] == 200

        rotate(P(), log, reqs, 3, 2)
        rec = parse(lines(log)[0])
        assert (rec["listener"], rec["url"], rec["status"]) == ("api", "/edges", "200")
    finally:
        r.cleanup()
        health.close()


def test_502_and_504_logged_with_reason(mlcdn, root, tmp_path):
    dead = router_util.free_port()
    log = tmp_path / "a.log"
    edge = start_edge(mlcdn, "http://127.0.0.1:%d" % dead, "--access-log", log,
                      "--origin-breaker-failures", "0")
    assert edge.get("/x").status == 502
    wait_for(lambda: 'msg="upstream failure answered" status=502' in edge.log(), 10, "502 warning")
    line = [x for x in edge.log().splitlines() if "upstream failure answered" in x][0]
    assert "level=warn" in line and 'url="/x"' in line
    assert 'reason="origin refused the connection"' in line
    rec = parse(wait_lines(log, 1)[0])
    assert rec["status"] == "502" and float(rec["upstream"]) >= 0

    slow = start_origin(mlcdn, root, "--latency", "3s")
    edge2 = start_edge(mlcdn, slow.url, "--first-byte-timeout", "200ms")
    assert edge2.get("/a.bin").status == 504
    wait_for(lambda: "status=504" in edge2.log(), 10, "504 warning")
    assert 'reason="origin did not answer in time"' in edge2.log()


def test_client_abort_on_a_miss_is_no_upstream_failure(mlcdn, tmp_path):
    """A client leaves while its miss waits for a healthy origin: no 502 warning, 499 in
    the access log, nothing counted as 5xx; the fill goes on for the client that joined it
    and is stored."""
    arrived, release = threading.Event(), threading.Event()

    class Held(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            arrived.set()
            release.wait(20)
            self.send_response(200)
            self.send_header("Content-Length", "8")
            self.send_header("Cache-Control", "max-age=600")
            self.end_headers()
            self.wfile.write(b"held-ok\n")

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Held)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        log = tmp_path / "a.log"
        edge = start_edge(mlcdn, "http://127.0.0.1:%d" % srv.server_port, "--access-log", log,
                          "--log-level", "debug")
        addr = edge.url.split("//")[1].rsplit(":", 1)
        req = b"GET /held HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        gone = socket.create_connection((addr[0], int(addr[1])))
        gone.sendall(req)
        assert arrived.wait(10)
        stays = socket.create_connection((addr[0], int(addr[1])))
        stays.sendall(req)
        wait_for(lambda: "mlcdn_edge_coalesced_total 1" in scrape(edge.admin), 10, "coalesced")
        gone.close()
        wait_for(lambda: 'msg="client abort"' in edge.log(), 10, "the client abort")
        release.set()
        stays.settimeout(20)
        got = b""
        while True:
            chunk = stays.recv(65536)
            if not chunk:
                break
            got += chunk
        stays.close()
        assert got.startswith(b"HTTP/1.1 200") and got.endswith(b"held-ok\n"), got
        r = edge.get("/held", headers={"Host": "h"})
        assert r.status == 200 and r.headers["X-Cache"] == "HIT"
        assert "upstream failure answered" not in edge.log()
        m = scrape(edge.admin)
        assert 'mlcdn_edge_responses_total{class="5xx"} 0' in m
        assert "mlcdn_edge_origin_errors_total 0" in m
        wait_for(lambda: sum("/held" in x for x in lines(log)) >= 3, 10, "3 lines of /held")
        statuses = sorted(parse(x)["status"] for x in lines(log) if "/held" in x)
        assert statuses == ["200", "200", "499"], statuses
    finally:
        release.set()
        srv.shutdown()
        srv.server_close()


def models_dir(tmp_path, name='logreg'):
    m = tmp_path / "models" / name / "1"
    m.mkdir(parents=True)
    os.symlink(os.path.join(FIXTURE_MODELS, "logreg", "model.onnx"), m / "model.onnx")
    return tmp_path / "models"


def scrape(admin):
    r = request("GET", admin + "/metrics")
    assert r.status == 200
    return r.body.decode()


def promtool_ok(text):
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: scripts/install-deps.sh installs the prometheus package"
    p = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


def value(text, series):
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no series %s" % series)


def test_metrics_of_every_daemon_pass_promtool(mlcdn, root, tmp_path):
    origin = start_origin(mlcdn, root)
    # A quote and a backslash in an origin URL end up in label values.
    odd = origin.url + '/odd"dir\\x'
    log = tmp_path / "edge.log"
    edge = start_edge(mlcdn, origin.url, "--origin", odd, "--models", models_dir(tmp_path),
                      "--models-poll", "0", "--access-log", log)
    assert edge.get("/a.bin").status == 200
    assert edge.get("/a.bin").status == 200
    feats = [0.1] * 32
    for _ in range(2):  # a miss, then a prediction cache hit
        r = edge.request("POST", "/predict", body=json.dumps({"model": "logreg", "features": feats}),
                         headers={"Content-Type": "application/json"})
        assert r.status == 200, r.body
    assert edge.request("POST", "/predict", body="{").status == 400
    r, health = router_with(tmp_path)
    try:
        assert r.http("/edges")[0] == 200
        texts = {"edge": scrape(edge.admin), "origin": scrape(origin.admin),
                 "router": scrape("http://127.0.0.1:%d" % r.http_port)}
    finally:
        r.cleanup()
        health.close()
    for name, text in texts.items():
        promtool_ok(text)
        assert re.search(r'^mlcdn_build_info\{version="[^"]+",commit="(?:[0-9a-f]{12}|unknown)"\} 1$',
                         text, re.M), name
        # CPU time counts in clock ticks: an idle daemon may still be at 0.
        assert value(text, "process_cpu_seconds_total") >= 0, name
        for m in ("process_resident_memory_bytes", "process_open_fds", "process_max_fds",
                  "process_start_time_seconds"):
            assert value(text, m) > 0, (name, m)
        assert abs(value(text, "process_start_time_seconds") - time.time()) < 600
    e = texts["edge"]
    assert 'origin="%s"' % odd.replace("\\", "\\\\").replace('"', '\\"') in e
    assert value(e, 'mlcdn_edge_request_duration_seconds_count{level="L1"}') == 1
    assert value(e, 'mlcdn_edge_time_to_first_byte_seconds_count{level="ORIGIN"}') >= 1
    assert "# TYPE mlcdn_edge_time_to_first_byte_seconds histogram" in e
    # Predictions: by model, version, endpoint and status; timed by cache outcome.
    assert value(e, 'mlcdn_predict_model_requests_total{model="logreg",version="1",'
                    'endpoint="predict",status="200"}') == 2
    assert value(e, 'mlcdn_predict_request_duration_seconds_count{endpoint="predict",'
                    'cache="hit"}') == 1
    assert value(e, 'mlcdn_predict_request_duration_seconds_count{endpoint="predict",'
                    'cache="miss"}') == 1
    with open(os.path.join(FIXTURE_MODELS, "logreg", "model.onnx"), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    assert value(e, 'mlcdn_model_info{model="logreg",version="1",sha256="%s"}' % digest) == 1
    o = texts["origin"]
    assert value(o, 'mlcdn_origin_responses_total{class="2xx"}') == 1
    assert value(o, "mlcdn_origin_request_duration_seconds_count") == 1
    # The access log names the model of a prediction.
    preds = [parse(x) for x in wait_lines(log, 5) if '"POST /predict' in x]
    assert [(p["model"], p["version"], p["cache"]) for p in preds[:2]] == \
        [("logreg", "1", "MISS"), ("logreg", "1", "HIT")]
    assert preds[2]["status"] == "400" and preds[2]["model"] == "-"


def test_access_log_to_stdout(root, tmp_path):
    """--access-log -: the lines follow the ready line on stdout."""
    import queue
    import threading
    from mlcdn_proc import binary
    p = subprocess.Popen([binary(), "origin", "--root", str(root), "--listen", "127.0.0.1:0",
                          "--access-log", "-", "--access-log-format", "json"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = queue.Queue()
    threading.Thread(target=lambda: [out.put(x) for x in p.stdout], daemon=True).start()
    try:
        url = re.search(r"listening on (\S+)", out.get(timeout=15)).group(1)
        assert request("GET", url + "/a.bin").status == 200
        rec = json.loads(out.get(timeout=10))
        assert (rec["url"], rec["status"], rec["listener"]) == ("/a.bin", 200, "origin")
    finally:
        p.terminate()
        p.wait(10)


def test_build_info_without_git(tmp_path):
    """A source tree without git (a release tarball) builds with commit "unknown"."""
    out = tmp_path / "build_info.h"
    subprocess.run(["cmake", "-DSRC=%s" % tmp_path, "-DOUT=%s" % out, "-P",
                    os.path.join(REPO, "cmake", "build_info.cmake")], check=True, timeout=60)
    assert out.read_text() == '#define MLCDN_COMMIT "unknown"\n'
    subprocess.run(["cmake", "-DSRC=%s" % REPO, "-DOUT=%s" % out, "-P",
                    os.path.join(REPO, "cmake", "build_info.cmake")], check=True, timeout=60)
    if os.path.isdir(os.path.join(REPO, ".git")) or os.path.isfile(os.path.join(REPO, ".git")):
        assert re.match(r'^#define MLCDN_COMMIT "[0-9a-f]{12}"\n$', out.read_text())
