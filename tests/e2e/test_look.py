"""Looking at the CDN (docs/operations.md "Look at it"): `mlcdn ctl stats`, `ctl plot`,
`ctl top`, the router's /dashboard, and the Prometheus/Grafana files under conf/.

* `ctl stats --json` agrees with the edges' own counters (requests per tier, bytes), through
  --edges and through --router; an unreachable edge is reported, not fatal.
* `ctl plot` writes an SVG with one series per tier, from live edges and from a JSON access
  log; bad input is refused with the flag named.
"""
import json
import os
import subprocess

import pytest

from mlcdn_proc import binary, metric, mlcdn, request  # noqa: F401  (mlcdn is a fixture)
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
