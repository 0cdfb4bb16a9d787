"""Looking at the CDN (docs/operations.md "Look at it"): `mlcdn ctl stats`, `ctl plot`,
`ctl top`, the router's /dashboard, and the Prometheus/Grafana files under conf/.

* `ctl stats --json` agrees with the edges' own counters (requests per tier, bytes), through
  --edges and through --router; an unreachable edge is reported, not fatal.
* `ctl plot` writes an SVG with one series per tier, from live edges and from a JSON access
  log; bad input is refused with the flag named.
* `ctl top` driven in a tmux terminal of 80x24: the edges view with both edges, the keys that
  sort and switch views (tiers, histograms with a bar chart per tier), q; --count stops it
  after that many refreshes; plain lines when stdout is not a terminal.
* the router's /dashboard in headless Chromium, against a router with three edges under light
  load: the map shows the edges, the charts have data (histograms, quantiles over time,
  predictions per version, an invalidation with its per-edge times), a stopped edge turns
  red; a screenshot is saved in the test's temp dir (its path printed). Its data follows a
  reload of the router's edge list.
* conf/prometheus/ passes `promtool check config` / `check rules`, its alerts fire on
  synthetic series (`promtool test rules`), and every metric and label that the rules and
  conf/grafana/'s dashboard use exists on live daemons (an edge serving a model, an origin,
  a router with its admin listener).
"""
import glob
import json
import os
import re
import shlex
import subprocess
import threading
import time

import pytest

from mlcdn_proc import binary, metric, mlcdn, request, wait_for  # noqa: F401  (mlcdn is a fixture)
import router_util

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
ADMIN_READY = r"listening on (?P<url>\S+) admin=(?P<admin>\S+)"
PLACES = [("tokyo", 35.68, 139.69), ("london", 51.51, -0.13), ("nvirginia", 38.9, -77.4)]


def ctl(*args, timeout=30, check=True):
    p = subprocess.run([binary(), "ctl"] + [str(a) for a in args], capture_output=True,
                       text=True, timeout=timeout)
    if check:
        assert p.returncode == 0, "ctl %s: exit %d\n%s" % (args, p.returncode, p.stderr)
    return p


def start_edges(mlcdn, tmp_path, n, *extra):
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    for i in range(4):
        (root / ("f%d.bin" % i)).write_bytes(os.urandom(2000 + i))
    origin = mlcdn("origin", ["--listen", "127.0.0.1:0", "--root", str(root)],
                   ready_pattern=ADMIN_READY)
    edges = []
    for i in range(n):
        e = mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                           "--origin", origin.url, "--region", PLACES[i][0]] + list(extra),
                  ready_pattern=ADMIN_READY)
        e.admin = e.ready["admin"].rstrip("/")
        edges.append(e)
    return origin, edges


def load(edges, rounds=3):
    """Light load: each edge gets misses then hits for a few files."""
    for e in edges:
        for _ in range(rounds):
            for i in range(4):
                assert e.get("/f%d.bin" % i).status == 200


def start_router(tmp_path, edges, *extra):
    db = str(tmp_path / "geo.mmdb")
    router_util.make_test_mmdb(db)
    specs = ["%s=%s,%s,127.0.0.1,%s/health" % (PLACES[i][0], PLACES[i][1], PLACES[i][2],
                                                e.admin) for i, e in enumerate(edges)]
    return router_util.Router("cdn.test", db, specs, list(extra))


def test_stats_json_matches_edge_counters(mlcdn, tmp_path):
    _, edges = start_edges(mlcdn, tmp_path, 2)
    load(edges)
    out = json.loads(ctl("stats", "--json", "--interval", "100ms", "--edges",
                         ",".join(e.admin for e in edges)).stdout)
    assert out["edges_up"] == 2
    for e, s in zip(edges, out["edges"]):
        assert s["ok"] and s["error"] is None and s["admin"] == e.admin
        t = s["totals"]
        assert t["requests"] == metric(e.admin, "mlcdn_edge_requests_total") == 12
        for tier in ("L1", "ORIGIN"):
            body = request("GET", e.admin + "/metrics").body.decode()
            want = sum(float(l.rsplit(" ", 1)[1]) for l in body.splitlines()
                       if l.startswith("mlcdn_edge_requests_total{")
                       and 'level="%s"' % tier in l)
            assert t["tiers"][tier]["requests"] == want
        assert t["tiers"]["ORIGIN"]["requests"] == 4
        assert t["tiers"]["L1"]["share"] == pytest.approx(8 / 12)
        assert t["bytes_served"] == metric(e.admin, "mlcdn_edge_bytes_served_total")
        assert t["bytes_saved"] == 2 * (2000 + 2001 + 2002 + 2003)
        assert t["tiers"]["L1"]["p50"] > 0 and t["tiers"]["L2"]["p50"] is None
        assert s["window"]["seconds"] > 0 and s["window"]["requests_per_s"] == 0
    assert out["totals"]["requests"] == 24


def test_stats_through_router_and_edge_down(mlcdn, tmp_path):
    _, edges = start_edges(mlcdn, tmp_path, 2)
    load(edges, rounds=1)
    r = start_router(tmp_path, edges)
    try:
        router = "http://127.0.0.1:%d" % r.http_port
        text = ctl("stats", "--router", router, "--interval", "0").stdout
        assert "edge tokyo  " + edges[0].admin in text and "edge london" in text
        assert "ORIGIN" in text and "100.0%" in text
        edges[1].stop()
        p = ctl("stats", "--router", router, "--interval", "0", "--json")
        out = json.loads(p.stdout)
        assert [e["name"] for e in out["edges"]] == ["tokyo", "london"]
        assert out["edges"][0]["ok"] and not out["edges"][1]["ok"]
        assert "GET /metrics" in out["edges"][1]["error"]
    finally:
        r.cleanup()


def test_stats_bad_input():
    p = ctl("stats", check=False)
    assert p.returncode == 2 and "--router URL or --edges" in p.stderr
    p = ctl("stats", "--edges", "localhost:1", check=False)
    assert p.returncode == 2 and "--edges: 'localhost:1'" in p.stderr
    p = ctl("stats", "--edges", "http://127.0.0.1:1", "--interval", "0", check=False)
    assert p.returncode == 1 and "no edge answered" in p.stderr
    p = ctl("stats", "--interval", "x", check=False)
    assert p.returncode == 2 and "--interval" in p.stderr


def svg_series(path):
    import xml.etree.ElementTree as ET
    root = ET.parse(path).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == ns + "svg"
    out = {}
    for g in root.iter(ns + "g"):
        if g.get("class") == "series":
            line = g.find(ns + "polyline")
            pts = [tuple(map(float, p.split(","))) for p in line.get("points").split()]
            out[g.get("data-tier")] = (float(g.get("data-requests")), pts)
    return out


def test_plot_from_live_edges(mlcdn, tmp_path):
    _, edges = start_edges(mlcdn, tmp_path, 2)
    load(edges)
    svg = tmp_path / "latency.svg"
    ctl("plot", "--out", svg, "--edges", ",".join(e.admin for e in edges))
    s = svg_series(svg)
    assert sorted(s) == ["L1", "ORIGIN"]
    assert s["L1"][0] == 16 and s["ORIGIN"][0] == 8
    assert all(len(pts) >= 2 for _, pts in s.values())


def test_plot_from_access_log(tmp_path):
    log = tmp_path / "access.log"
    lines = []
    for tier, secs, n in (("L1", 0.0001, 30), ("L2", 0.002, 10), ("REDIS", 0.004, 5),
                          ("ORIGIN", 0.05, 5)):
        for i in range(n):
            lines.append(json.dumps({"status": 200, "cache": "HIT", "level": tier,
                                     "duration_s": secs * (1 + i / n)}))
    lines.append(json.dumps({"status": 200, "level": None, "duration_s": None}))  # admin
    lines.append('127.0.0.1 - - [07/Dec/2026:04:22:31 +0000] "GET /a HTTP/1.1" 200 5 "-" "-" '
                 'cache=HIT level=L1 ttfb=0.000050 time=0.000100 upstream=- model=- '
                 'version=- listener=public completion=OK')
    log.write_text("\n".join(lines) + "\n")
    svg = tmp_path / "log.svg"
    ctl("plot", "--access-log", log, "--out", svg)
    s = svg_series(svg)
    assert sorted(s) == ["L1", "L2", "ORIGIN", "REDIS"]
    assert s["L1"][0] == 31 and s["REDIS"][0] == 5
    # The origin's peak lies right of L1's: x grows with time.
    peak = {t: max(pts, key=lambda p: -p[1])[0] for t, (_, pts) in s.items()}
    assert peak["L1"] < peak["L2"] < peak["ORIGIN"]

    (tmp_path / "bad.log").write_text("hello\n")
    p = ctl("plot", "--access-log", tmp_path / "bad.log", "--out", svg, check=False)
    assert p.returncode == 1 and "line 1 is neither" in p.stderr
    p = ctl("plot", "--access-log", log, "--out", tmp_path / "x.png", check=False)
    assert p.returncode == 2 and "--out FILE.svg" in p.stderr


class Tmux:
    """One private tmux server (its own socket in the test's temp dir) running one command in
    an 80x24 window."""

    def __init__(self, tmp_path, argv):
        self.sock = str(tmp_path / "tmux.sock")
        self.rc_file = tmp_path / "rc"
        # The server in the foreground (-D), a child of the test: its PID is known and it
        # is stopped by it.
        self.server = subprocess.Popen(["tmux", "-D", "-S", self.sock, "-f", "/dev/null"],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        wait_for(lambda: self.tmux("list-sessions", check=False) is not None,
                 what="the tmux server")
        cmd = "%s; echo $? > %s; sleep 60" % (" ".join(shlex.quote(str(a)) for a in argv),
                                               shlex.quote(str(self.rc_file)))
        self.tmux("new-session", "-d", "-x", "80", "-y", "24", cmd)

    def tmux(self, *args, check=True):
        r = subprocess.run(["tmux", "-S", self.sock, "-f", "/dev/null"] + list(args),
                           capture_output=True, text=True, timeout=10)
        if not check:
            return r.stdout if r.returncode == 0 else None
        assert r.returncode == 0, "tmux %s: %s" % (args[0], r.stderr)
        return r.stdout

    def screen(self):
        return self.tmux("capture-pane", "-p")

    def keys(self, k):
        self.tmux("send-keys", k)

    def wait(self, pattern, what):
        """The screen once it matches pattern (a regex)."""
        last = [""]

        def seen():
            last[0] = self.screen()
            return re.search(pattern, last[0], re.M)
        try:
            wait_for(seen, what=what)
        except AssertionError:
            raise AssertionError("%s; the screen:\n%s" % (what, last[0]))
        return last[0]

    def refresh_no(self):
        m = re.search(r"refresh (\d+)", self.screen())
        return int(m.group(1)) if m else 0

    def close(self):
        self.server.terminate()
        self.server.wait(10)


def test_top_in_terminal(mlcdn, tmp_path):
    _, edges = start_edges(mlcdn, tmp_path, 2)
    admins = [e.admin for e in edges]
    hostports = [a.split("://")[1] for a in admins]
    t = Tmux(tmp_path, [binary(), "ctl", "top", "--interval", "200ms", "--edges",
                        ",".join(admins)])
    try:
        t.wait(r"refresh 2\b", "a second refresh")
        # Requests all along the views' checks: each refresh's window has some. The origin
        # serves each file once per edge; every later request is an L1 hit.
        stop = threading.Event()

        def loader():
            while not stop.is_set():
                load(edges, rounds=1)
        th = threading.Thread(target=loader, daemon=True)
        th.start()
        scr = t.wait(r"^%s +[0-9.]+ +[0-9.]+ .*[0-9.]+(us|ms|s) " % re.escape(hostports[0]),
                     "edge 0's rates")
        lines = scr.splitlines()
        assert lines[0].startswith("edges - 2/2 edges up") and lines[0].endswith("mlcdn ctl top")
        assert re.match(r"EDGE +REQ/Sv +L1% +L2% +REDIS% +ORIG% +P50 +P99 +OUT/S +SAVE/S +5XX",
                        lines[2]), lines[2]
        assert all(len(l) <= 80 for l in lines)
        assert any(l.startswith(hostports[1]) for l in lines[3:5]), scr
        assert "q quit" in lines[-1]

        t.keys("s")  # sort by the next column
        t.wait(r"REQ/S +L1%v", "sorted by L1%")
        t.keys("r")
        t.wait(r"L1%\^", "reversed")

        t.keys("2")
        scr = t.wait(r"^ORIGIN +[0-9.]+ +[0-9.]+%", "the tiers view")
        assert "\ntiers - 2/2 edges up" in "\n" + scr and re.search(r"^L1 +[0-9.]+ ", scr, re.M)
        assert "all edges:" in scr
        stop.set()
        th.join()

        # The histograms count since top started: every request of load() is in them.
        t.keys("3")
        scr = t.wait(r"^ORIGIN n=8 ", "the origin histogram")
        assert re.search(r"^L1 +n=\d+ +p50 \S+ +p95 \S+ +p99 \S+", scr, re.M), scr
        assert re.search(r"^ +[|# ]*#", scr, re.M) and re.search(r"^ +[| ]*\|", scr, re.M)
        assert re.search(r"10us +100us +1.0ms", scr)

        # Refreshes go on at --interval whatever the view; q quits at once with status 0.
        n = t.refresh_no()
        wait_for(lambda: t.refresh_no() >= n + 3, what="three more refreshes")
        t.keys("q")
        wait_for(lambda: t.rc_file.exists() and t.rc_file.read_text().strip(), what="exit")
        assert t.rc_file.read_text().strip() == "0"
    finally:
        t.close()

    # --count: that many refreshes, then top exits by itself.
    t = Tmux(tmp_path, [binary(), "ctl", "top", "--interval", "100ms", "--count", "3",
                        "--edges", admins[0]])
    try:
        wait_for(lambda: t.rc_file.exists() and t.rc_file.read_text().strip(), what="exit")
        assert t.rc_file.read_text().strip() == "0"
    finally:
        t.close()


def test_top_plain_lines(mlcdn, tmp_path):
    _, edges = start_edges(mlcdn, tmp_path, 2)
    load(edges, rounds=1)
    edges[1].stop()
    p = ctl("top", "--count", "2", "--interval", "100ms", "--edges",
            ",".join(e.admin for e in edges))
    lines = p.stdout.splitlines()
    assert re.match(r"TIME +EDGE +REQ/S", lines[0])
    assert len(lines) == 1 + 2 * 2, p.stdout
    up, down = [edges[i].admin.split("://")[1] for i in (0, 1)]
    for l in (lines[1], lines[3]):
        assert re.match(r"\d\d:\d\d:\d\d %s " % re.escape(up), l), l
    assert re.match(r"\d\d:\d\d:\d\d %s +DOWN " % re.escape(down), lines[2]), lines[2]
    # The second refresh has a window: numbers where the first had none.
    assert re.search(r" 0\.0 ", lines[3]) and " - " in lines[1]
    p = ctl("top", "--count", "x", "--edges", edges[0].admin, check=False)
    assert p.returncode == 2 and "--count: 'x'" in p.stderr
    p = ctl("top", "--interval", "1ms", "--edges", edges[0].admin, check=False)
    assert p.returncode == 2 and "--interval" in p.stderr



def test_dashboard_data_follows_a_reload(mlcdn, tmp_path):
    """SIGHUP with another edge list: the dashboard reads the new set's edges, and an edge
    in both keeps its samples (its histogram goes on counting)."""
    import signal
    _, edges = start_edges(mlcdn, tmp_path, 2)
    db = str(tmp_path / "geo.mmdb")
    router_util.make_test_mmdb(db)
    spec = ['"%s=%s,%s,127.0.0.1,%s/health"' % (PLACES[i][0], PLACES[i][1], PLACES[i][2],
                                                 e.admin) for i, e in enumerate(edges)]
    conf = tmp_path / "router.conf"

    def write(specs):
        conf.write_text('zone = "cdn.test";\ngeoip = ["%s"];\nhealth_interval = "100ms";\n'
                        'edge = [%s];\n' % (db, ", ".join(specs)))
    write(spec[:1])
    r = router_util.Router("cdn.test", [], [], ["--config", str(conf)])
    try:
        def data():
            return r.json("/dashboard/data")

        def l1(d, name):
            return [e for e in d["edges"] if e["name"] == name][0]
        load(edges, rounds=1)
        wait_for(lambda: len(data()["history"]) >= 2, what="two points of history")
        load(edges, rounds=2)  # 8 L1 hits on each edge, counted from the first read
        wait_for(lambda: data()["tiers"]["L1"]["requests"] == 8, what="tokyo's 8 hits")
        assert [e["name"] for e in data()["edges"]] == ["tokyo"]

        write(spec)
        os.kill(r.proc.pid, signal.SIGHUP)
        wait_for(lambda: "config reloaded" in r.text(), what="the reload")
        wait_for(lambda: [e["name"] for e in data()["edges"]] == ["tokyo", "london"]
                 and l1(data(), "london")["metrics_ok"], what="london read")
        # tokyo's first read stays the origin of the histograms; london's starts now.
        load(edges[1:], rounds=1)
        wait_for(lambda: data()["tiers"]["L1"]["requests"] == 12, what="london's 4 hits")

        write(spec[1:])
        os.kill(r.proc.pid, signal.SIGHUP)
        wait_for(lambda: [e["name"] for e in data()["edges"]] == ["london"], what="tokyo gone")
    finally:
        r.cleanup()


PROM_DIR = os.path.join(REPO, "conf", "prometheus")
GRAFANA_DIR = os.path.join(REPO, "conf", "grafana")


def promtool(*args):
    p = subprocess.run(["promtool"] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, "promtool %s:\n%s%s" % (args, p.stdout, p.stderr)
    return p.stdout


# Synthetic series and the alerts they must raise (promtool test rules).
ALERT_TESTS = """
rule_files: [%s]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{job="mlcdn-edge", instance="e1:9080"}'
        values: '1 1 0 0 0 0'
      - series: 'up{job="mlcdn-edge", instance="e2:9080"}'
        values: '1 1 1 1 1 1'
      - series: 'mlcdn_edge_origin_requests_total{job="mlcdn-edge", instance="e2:9080"}'
        values: '0+100x20'
      - series: 'mlcdn_edge_origin_errors_total{job="mlcdn-edge", instance="e2:9080"}'
        values: '0+20x20'
      - series: 'mlcdn_model_info{instance="e1:9080", model="resnet", version="2", sha256="aa"}'
        values: '1x30'
      - series: 'mlcdn_model_info{instance="e2:9080", model="resnet", version="1", sha256="bb"}'
        values: '1x30'
      - series: 'mlcdn_model_info{instance="e2:9080", model="resnet", version="2", sha256="aa"}'
        values: '_x30'
      - series: 'mlcdn_model_failed{instance="e2:9080", model="resnet"}'
        values: '0 0 1 1 1 1 1 1 1 0'
      - series: 'mlcdn_router_invalidations_total{instance="r:8053", result="incomplete"}'
        values: '0 0 1 1 1'
      - series: 'mlcdn_control_connected{instance="e1:9080"}'
        values: '1 1 0 0 0 0 1'
    alert_rule_test:
      - eval_time: 5m
        alertname: MlcdnEdgeDown
        exp_alerts:
          - exp_labels: {severity: page, job: mlcdn-edge, instance: "e1:9080"}
            exp_annotations:
              summary: "edge e1:9080 does not answer its /metrics"
      - eval_time: 1m
        alertname: MlcdnEdgeDown
        exp_alerts: []
      - eval_time: 15m
        alertname: MlcdnOriginErrors
        exp_alerts:
          - exp_labels: {severity: page, instance: "e2:9080"}
            exp_annotations:
              summary: "edge e2:9080: 20%% of origin fetches fail"
      - eval_time: 8m
        alertname: MlcdnModelLoadFailure
        exp_alerts:
          - exp_labels: {severity: page, instance: "e2:9080", model: resnet}
            exp_annotations:
              summary: "edge e2:9080: the last roll-out of model resnet failed (GET /admin/models says why)"
      - eval_time: 10m
        alertname: MlcdnModelLoadFailure
        exp_alerts: []
      - eval_time: 20m
        alertname: MlcdnModelVersionsDiverge
        exp_alerts:
          - exp_labels: {severity: ticket, model: resnet, version: "1"}
            exp_annotations:
              summary: "model resnet version 1 is loaded on 1 edges only"
          - exp_labels: {severity: ticket, model: resnet, version: "2"}
            exp_annotations:
              summary: "model resnet version 2 is loaded on 1 edges only"
      - eval_time: 5m
        alertname: MlcdnControlStreamDisconnected
        exp_alerts:
          - exp_labels: {severity: page, instance: "e1:9080"}
            exp_annotations:
              summary: "edge e1:9080 does not read the control stream: invalidations and model roll-outs do not reach it"
      - eval_time: 6m
        alertname: MlcdnControlStreamDisconnected
        exp_alerts: []
      - eval_time: 4m
        alertname: MlcdnInvalidationIncomplete
        exp_alerts:
          - exp_labels: {severity: page, instance: "r:8053", result: incomplete}
            exp_annotations:
              summary: "router r:8053: an invalidation did not reach every edge (GET /admin/invalidations names them)"
"""


def conf_exprs():
    """Every PromQL expression of the alert rules and of the Grafana dashboards."""
    import yaml
    exprs = []
    with open(os.path.join(PROM_DIR, "mlcdn-alerts.yml")) as f:
        for g in yaml.safe_load(f)["groups"]:
            exprs += [r["expr"] for r in g["rules"]]

    def walk(o):
        if isinstance(o, dict):
            if isinstance(o.get("expr"), str):
                exprs.append(o["expr"])
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    dashboards = glob.glob(os.path.join(GRAFANA_DIR, "*.json"))
    assert dashboards
    for path in dashboards:
        with open(path) as f:
            walk(json.load(f))
    return exprs


def families(text):
    """{family: set of label names} of a /metrics text; histogram series under their family."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ", line)
        name = re.sub(r"_(bucket|sum|count)$", "", m.group(1)) \
            if re.search(r"_(bucket|sum|count)$", m.group(1)) else m.group(1)
        labels = set(re.findall(r'([a-zA-Z_]\w*)="', m.group(2) or ""))
        out.setdefault(name, set()).update(labels)
        out.setdefault(m.group(1), set()).update(labels)
    return out


def test_prometheus_and_grafana_conf(mlcdn, tmp_path):
    promtool("check", "config", os.path.join(PROM_DIR, "prometheus.yml"))
    promtool("check", "rules", os.path.join(PROM_DIR, "mlcdn-alerts.yml"))
    tests = tmp_path / "alerts_test.yml"
    tests.write_text(ALERT_TESTS % json.dumps(os.path.join(PROM_DIR, "mlcdn-alerts.yml")))
    promtool("test", "rules", tests)

    # Live daemons with every family the files use: an edge serving a model that answered a
    # prediction, with a Redis tier and on the control stream, its origin, a router with
    # its admin listener.
    import shutil
    models = tmp_path / "models" / "logreg" / "1"
    models.mkdir(parents=True)
    os.symlink(os.path.join(REPO, "tests", "fixtures", "models", "logreg", "model.onnx"),
               models / "model.onnx")
    port = router_util.free_port()
    redis = subprocess.Popen([shutil.which("redis-server"), "--port", str(port), "--bind",
                              "127.0.0.1", "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: subprocess.run(["redis-cli", "-p", str(port), "PING"],
                                        capture_output=True, text=True).stdout.strip() == "PONG",
                 what="redis-server")
        redis_url = "redis://127.0.0.1:%d" % port
        origin, (edge,) = start_edges(mlcdn, tmp_path, 1, "--models", tmp_path / "models",
                                      "--models-poll", "0", "--redis", redis_url,
                                      "--control-redis", redis_url, "--name", "e1",
                                      "--control-state", tmp_path / "control.state")
        live = live_families(edge, origin, tmp_path)
    finally:
        redis.kill()
        redis.wait(10)
    check_names(conf_exprs(), live)


def live_families(edge, origin, tmp_path):
    """{family: label names} over the edge's, the origin's and a router's /metrics."""
    load([edge], rounds=2)
    r = edge.request("POST", "/predict", body=json.dumps({"model": "logreg",
                                                           "features": [0.1] * 32}),
                     headers={"Content-Type": "application/json"})
    assert r.status == 200, r.body
    router = start_router(tmp_path, [edge], "--admin", "127.0.0.1:0")
    try:
        wait_for(lambda: router.json("/edges")["edges"][0]["state"] == "up", what="edge up")
        live = {}
        for url in (edge.admin, origin.ready["admin"].rstrip("/"),
                    "http://127.0.0.1:%d" % router.http_port):
            for k, v in families(request("GET", url + "/metrics").body.decode()).items():
                live.setdefault(k, set()).update(v)
    finally:
        router.cleanup()
    return live


def check_names(exprs, live):
    """Every metric of exprs is in live, with the labels the expressions select or group
    by."""
    used = 0
    for expr in exprs:
        for m in re.finditer(r"\b((?:mlcdn|process)_[a-z0-9_]+)\b(\{[^}]*\})?", expr):
            name, sel = m.group(1), m.group(2) or ""
            assert name in live, "%s (in %r) is on no daemon's /metrics" % (name, expr)
            for label in re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", sel):
                if label not in ("job", "instance"):
                    assert label in live[name], "%s has no label %s (in %r)" % (name, label,
                                                                                 expr)
            used += 1
        for by in re.findall(r"\bby \(([^)]*)\)", expr):
            for label in filter(None, (x.strip() for x in by.split(","))):
                assert label in ("job", "instance", "le") or \
                    any(label in v for v in live.values()), "by (%s) in %r" % (label, expr)
    assert used > 30


def dashboard_dom(tmp_path, url, *extra):
    """The page's DOM in headless Chromium once its script had a few (virtual) seconds to
    poll and draw; extra: more flags (--screenshot=...). The profile in tmp_path is kept
    between the calls of a test: a fresh one costs seconds to create."""
    import shutil
    exe = shutil.which("chromium")
    assert exe, "chromium is missing: scripts/install-deps.sh installs it"
    p = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-extensions", "--mute-audio",
                        "--user-data-dir=%s" % (tmp_path / "chromium-profile"),
                        "--virtual-time-budget=3000", "--dump-dom"] + list(extra) + [url],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    (tmp_path / "dashboard.html").write_text(p.stdout)  # the last DOM, beside the screenshot
    return p.stdout


def test_dashboard_in_chromium(mlcdn, tmp_path):
    models = tmp_path / "models" / "logreg" / "1"
    models.mkdir(parents=True)
    os.symlink(os.path.join(REPO, "tests", "fixtures", "models", "logreg", "model.onnx"),
               models / "model.onnx")
    _, edges = start_edges(mlcdn, tmp_path, 3, "--models", tmp_path / "models",
                           "--models-poll", "0", "--admin-token", "t0k")
    router = start_router(tmp_path, edges, "--admin", "127.0.0.1:0", "--admin-token", "t0k",
                          "--health-interval", "200ms", "--health-timeout", "2s")
    stop = threading.Event()

    def loader():  # light load: hits, a miss (a new query) and a prediction on every edge
        feats = json.dumps({"model": "logreg", "features": [0.1] * 32})
        n = 0
        while not stop.is_set():
            n += 1
            for e in edges:
                try:
                    for i in range(4):
                        e.get("/f%d.bin" % i)
                    e.get("/f1.bin?n=%d" % n)
                    e.request("POST", "/predict", body=feats,
                              headers={"Content-Type": "application/json"})
                except OSError:
                    pass  # the edge the test stopped
            time.sleep(0.05)
    th = threading.Thread(target=loader, daemon=True)
    th.start()
    try:
        base = "http://127.0.0.1:%d" % router.http_port
        admin = int(re.search(r"admin_port=(\d+)", router.text()).group(1))
        r = request("POST", "http://127.0.0.1:%d/admin/invalidate" % admin,
                    body=json.dumps({"urls": ["/f0.bin"]}),
                    headers={"Authorization": "Bearer t0k", "Content-Type": "application/json"})
        assert r.status == 200, r.body
        # The data the page draws: the router reads the edges once someone looks.
        wait_for(lambda: len(router.json("/dashboard/data").get("history", [])) >= 3,
                 what="three points of history")
        data = router.json("/dashboard/data")
        assert [e["name"] for e in data["edges"]] == [p[0] for p in PLACES]
        assert all(e["state"] == "up" and e["metrics_ok"] for e in data["edges"])
        assert data["tiers"]["L1"]["requests"] > 0 and data["tiers"]["ORIGIN"]["requests"] > 0
        assert [(m["model"], m["version"], m["edges_loaded"]) for m in data["models"]] == \
            [("logreg", 1, 3)]
        inv = data["invalidations"][0]
        assert inv["what"] == ["urls"] and inv["acknowledged"] == 3
        assert sorted(e["edge"] for e in inv["edges"]) == sorted(p[0] for p in PLACES)

        dom = dashboard_dom(tmp_path, base + "/dashboard/")
        for name, lat, lon in PLACES:
            assert re.search(r'<circle class="edge"[^>]*fill="#2a9d4b" data-name="%s" '
                             r'data-state="up"' % name, dom), dom[:3000]
        # Histograms with bars for the tiers that answered; quantiles over time.
        for tier in ("L1", "ORIGIN"):
            h = re.search(r'<svg class="hist" data-tier="%s".*?</svg>' % tier, dom, re.S)
            assert h and '<rect class="bar"' in h.group(0), tier
        q = re.search(r'<svg class="quant" data-tier="L1".*?</svg>', dom, re.S)
        assert q, "no L1 quantile chart"
        for name in ("p50", "p95", "p99"):
            pl = re.search(r'<polyline points="([^"]+)"[^>]*data-q="%s"' % name, q.group(0))
            assert pl and len(pl.group(1).split()) >= 2, name
        assert re.search(r'<td>logreg</td><td>1</td><td>3</td>', dom)
        assert re.search(r'<td>urls</td><td>3/3</td>', dom)
        assert re.search(r'id="k-up">3/3<', dom)

        # A stopped edge: down after the router's --health-fall (2) failed checks, red on the
        # page.
        edges[1].stop()
        wait_for(lambda: router.json("/edges")["edges"][1]["state"] == "down",
                 what="the router to see london down")
        # The page's data is rebuilt once a second (each tick reads the edges): wait for
        # the tick that saw london down, then look at the page.
        wait_for(lambda: [e["state"] for e in router.json("/dashboard/data")["edges"]] ==
                 ["up", "down", "up"], what="the dashboard's data to show london down")
        shot = tmp_path / "dashboard.png"
        dom = dashboard_dom(tmp_path, base + "/dashboard/", "--window-size=1400,1500",
                            "--screenshot=%s" % shot)
        assert re.search(r'<circle class="edge"[^>]*fill="#d62828" data-name="london" '
                         r'data-state="down"', dom), dom[:3000]
        assert re.search(r'data-name="tokyo" data-state="up"', dom)
        assert re.search(r'id="k-up">2/3<', dom)
        assert shot.stat().st_size > 10000
        print("dashboard screenshot: %s" % shot)
    finally:
        stop.set()
        th.join()
        router.cleanup()

    # The page's files are in the binary; anything else under /dashboard is a 404.
    r2 = start_router(tmp_path, edges[:1])
    try:
        base = "http://127.0.0.1:%d" % r2.http_port
        r = request("GET", base + "/dashboard")
        assert r.status == 301 and r.headers.get("location") == "/dashboard/"
        r = request("GET", base + "/dashboard/dash.js")
        assert r.status == 200 and "javascript" in r.headers.get("content-type")
        assert request("GET", base + "/dashboard/nope.js").status == 404
        assert r2.json("/dashboard/data")["starting"] is True
    finally:
        r2.cleanup()
