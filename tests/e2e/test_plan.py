"""`mlcdn plan` (docs/plan.md): tier sizing and cost from a trace or an edge's access log.

* Exact curves follow the edge's tier rules: L1 alone holds what cachesim's would,
  --max-mem-object keeps bodies out of L1, --l2-admit-hits sets how L2 hits fill L1.
* The coupled model against a real edge replaying a fixture: per-tier hit ratios within
  0.03.
* The recommendation is the cheapest (L1, L2) pair of the grid meeting the target, its
  cost the sum of the prices; when no pair meets it, it says so.
* The SVG parses as XML, holds one curve per objective and the chosen pair.
* An access log (combined and JSON lines) gives the same curves as the same requests in
  CSV, skips what the caches could not keep and measures the tiers' latencies; a real
  edge's log loads too.
* Bad flags and files give errors naming the flag or the file.
"""
import json
import os
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from mlcdn_proc import binary, metric, mlcdn, wait_for  # noqa: F401  (mlcdn is a fixture)

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures", "plan")
TRACE = os.path.join(FIX, "trace.csv")
GIB = 1024.0 ** 3
MONTH = 30 * 86400.0
SVG_NS = "{http://www.w3.org/2000/svg}"


def run(*args, check=True):
    r = subprocess.run([binary()] + list(args), capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def plan_json(*args):
    return json.loads(run("plan", "--json", *args).stdout)


def cachesim(trace, sizes, policy, objective):
    out = run("cachesim", "--trace", trace, "--size", ",".join(str(s) for s in sizes),
              "--policy", policy, "--objective", objective, "--json").stdout
    return {r["capacity"]: r for r in json.loads(out)["results"]}


SIZES = [20000, 100000, 400000, 2000000, 8000000]


def test_exact_curves_follow_the_edges_tier_rules():
    # L1 alone: every fill enters L1 (LRU admits all; --max-mem-object above every size),
    # so an L1 that holds every object misses only first requests, as cachesim's does
    big = [16 * 4000000]
    p = plan_json("--trace", TRACE, "--l1", ",".join(map(str, SIZES + big)), "--l2", "0",
                  "--policy", "l1=lru,l2=sieve", "--max-mem-object", "1G")
    assert p["sampling"]["exact"] is True and p["requests"] == 6000
    assert [x["bytes"] for x in p["l1"]] == SIZES + big
    # the largest holds every object: only first requests miss, as in cachesim
    ref = cachesim(TRACE, [p["unique_bytes"]], "lru", "objects")
    assert p["l1"][-1]["miss_ratio"] == pytest.approx(
        ref[p["unique_bytes"]]["miss_ratio"], abs=1e-12)
    # the L1 curve decreases with size on this trace, or the test would prove little
    assert p["l1"][0]["miss_ratio"] > p["l1"][-2]["miss_ratio"] + 0.2

    # --max-mem-object: a body over it never enters L1
    p = plan_json("--trace", TRACE, "--l1", "8M", "--l2", "0,8M", "--max-mem-object", "1")
    assert p["l1"][0]["miss_ratio"] == 1.0
    assert p["grid"][1]["l1_hit_ratio"] == 0.0 and p["grid"][1]["hit_ratio"] > 0.3

    # L2 alone: the edge's disk policy (sieve) by default, or the one asked for
    p = plan_json("--trace", TRACE, "--l1", "0", "--l2", ",".join(map(str, SIZES)))
    assert p["policy"] == {"l1": "default", "l2": "sieve"}
    assert all(g["l1_hit_ratio"] == 0.0 for g in p["grid"])
    assert p["grid"][0]["hit_ratio"] < p["grid"][-1]["hit_ratio"]

    # --l2-admit-hits: a copy into L1 on the first L2 hit gives L1 more hits than on the
    # 1000th (never, on this trace); and then L1 has fewer hits than without an L2, where
    # every miss refills it (the simplified model of before)
    one = plan_json("--trace", TRACE, "--l1", "1M", "--l2", "8M", "--l2-admit-hits", "1")
    never = plan_json("--trace", TRACE, "--l1", "1M", "--l2", "8M", "--l2-admit-hits", "1000")
    assert one["grid"][0]["l1_hit_ratio"] > never["grid"][0]["l1_hit_ratio"] + 0.01
    assert never["grid"][0]["l1_hit_ratio"] < 1 - never["l1"][0]["miss_ratio"] - 0.01


def test_fixed_size_sampling_reports_its_rate_error_and_coarse_points():
    ex = plan_json("--trace", TRACE, "--l1", "200K,1M,4M,16M", "--l2", "0,8M")
    p = plan_json("--trace", TRACE, "--l1", "200K,1M,4M,16M", "--l2", "0,8M",
                  "--sample-objects", "200", "--seeds", "3")
    s = p["sampling"]
    assert (s["mode"], s["max_objects"], s["seeds"], s["exact"]) == ("fixed-size", 200, 3, False)
    # at most 200 of the 572 objects under every seed, so the rate is at most about 200/572
    assert 0.2 < s["rate"] <= 0.4
    assert all(x["rate"] == s["rate"] for x in p["l1"])  # no raised rates: memory is bounded
    assert s["sampled_requests"] > 0 and s["max_error"] > 0
    # the small caches hold few sampled objects and say so; the curve still has its shape
    assert [x["coarse"] for x in p["l1"]] == [True, True, True, True]
    assert all(not x["coarse"] for x in ex["l1"])
    assert p["l1"][0]["miss_ratio"] > p["l1"][-1]["miss_ratio"]
    for e, x in zip(ex["l1"], p["l1"]):
        assert abs(e["miss_ratio"] - x["miss_ratio"]) < 0.2
    r = run("plan", "--trace", TRACE, "--sample-objects", "200")
    assert "fixed-size SHARDS samples of at most 200 objects" in r.stdout
    assert "fewer than 1000 objects fit the sampled cache" in r.stdout


def cost(g, prices):
    return (prices["l1"] * g["l1_bytes"] / GIB + prices["l2"] * g["l2_bytes"] / GIB +
            prices["origin"] * g["origin_bytes_per_s"] * MONTH / GIB)


def test_recommendation_is_the_cheapest_pair_meeting_the_target():
    prices = {"l1": 300.0, "l2": 20.0, "origin": 0.5}
    p = plan_json("--trace", TRACE, "--l1", "50K,200K,1M,4M", "--l2", "0,1M,4M,16M",
                  "--prices", "l1=300,l2=20,origin=0.5", "--target-hit", "0.6", "--span", "1h")
    assert p["span_s"] == 3600
    grid = p["grid"]
    assert len(grid) == 16
    for g in grid:
        assert g["monthly_cost"] == pytest.approx(cost(g, prices), rel=1e-9)
        # bytes missed by both tiers, at the trace's byte rate
        assert g["origin_bytes_per_s"] == pytest.approx(
            (1 - g["byte_hit_ratio"]) * p["bytes"] / 3600, rel=1e-9)
    ok = [g for g in grid if g["hit_ratio"] >= 0.6]
    assert ok and len(ok) < len(grid)
    best = min(ok, key=lambda g: g["monthly_cost"])
    rec = p["recommendation"]
    assert rec["met_target"] is True
    assert (rec["l1_bytes"], rec["l2_bytes"]) == (best["l1_bytes"], best["l2_bytes"])
    assert rec["monthly_cost"]["total"] == pytest.approx(best["monthly_cost"], rel=1e-9)
    assert rec["hit_ratio"] == pytest.approx(rec["l1_hit_ratio"] + rec["l2_hit_ratio"])
    # latency: the defaults weighted by the share each tier answers
    lat = {k: v["p50_s"] for k, v in p["latency"].items()}
    assert all(v["source"] == "default" for v in p["latency"].values())
    want = (rec["l1_hit_ratio"] * lat["l1"] + rec["l2_hit_ratio"] * lat["l2"] +
            (1 - rec["hit_ratio"]) * lat["origin"])
    assert rec["latency_mean_s"] == pytest.approx(want, rel=1e-9)

    # an unreachable target: the highest hit ratio, and the table says no pair meets it
    r = run("plan", "--trace", TRACE, "--l1", "50K,200K", "--l2", "0,1M", "--target-hit",
            "0.999", "--latency", "l1=50us,l2=2ms,origin=300ms")
    assert "NO pair meets it" in r.stdout
    assert "origin 300.00 ms (--latency)" in r.stdout


def test_svg_has_a_curve_per_objective_and_the_chosen_point(tmp_path):
    svg = tmp_path / "plan.svg"
    p = plan_json("--trace", TRACE, "--l1", "50K,200K,1M,4M", "--l2", "0,1M,4M,16M",
                  "--target-hit", "0.7", "--svg", str(svg))
    root = ET.parse(str(svg)).getroot()
    assert root.tag == SVG_NS + "svg"
    curves = [e for e in root.iter(SVG_NS + "polyline") if e.get("class") == "curve"]
    assert sorted(c.get("data-objective") for c in curves) == ["bytes", "objects"]
    by_obj = {c.get("data-objective"): c for c in curves}
    assert by_obj["objects"].get("data-tier") == "l1"
    assert len(by_obj["objects"].get("points").split()) == 4
    assert len(by_obj["bytes"].get("points").split()) == 3  # the L2 of 0 is not on a log axis
    chosen = [e for e in root.iter(SVG_NS + "g") if e.get("class") == "chosen"]
    assert len(chosen) == 1
    rec = p["recommendation"]
    assert int(chosen[0].get("data-l1-bytes")) == rec["l1_bytes"]
    assert int(chosen[0].get("data-l2-bytes")) == rec["l2_bytes"]
    assert float(chosen[0].get("data-hit")) == pytest.approx(rec["hit_ratio"], abs=1e-6)
    assert len(list(chosen[0].iter(SVG_NS + "circle"))) >= 1


def test_access_log_gives_the_curves_of_the_same_requests_as_csv():
    sizes = ["--l1", "10K,100K,1M", "--l2", "0,500K,2M"]
    a = plan_json("--trace", os.path.join(FIX, "access.log"), "--format", "access-log", *sizes)
    c = plan_json("--trace", os.path.join(FIX, "access.csv"), *sizes)
    assert a["requests"] == c["requests"] == 400
    assert a["skipped_lines"] == 48  # POST, 404, 206, admin, BYPASS, incomplete
    assert a["objects"] == c["objects"] and a["unique_bytes"] == c["unique_bytes"]
    assert a["span_s"] == c["span_s"] == 399
    assert [x["miss_ratio"] for x in a["l1"]] == [x["miss_ratio"] for x in c["l1"]]
    assert [g["byte_hit_ratio"] for g in a["grid"]] == [g["byte_hit_ratio"] for g in c["grid"]]
    # the tiers' latencies come from the log's ttfb (L1 0.2-0.4 ms, L2 2-4, origin 80-160)
    lat = a["latency"]
    assert {v["source"] for v in lat.values()} == {"access log"}
    assert 0.0002 <= lat["l1"]["p50_s"] <= 0.0004
    assert 0.002 <= lat["l2"]["p50_s"] <= 0.004
    assert 0.08 <= lat["origin"]["p50_s"] <= 0.16
    assert c["latency"]["origin"]["source"] == "default"


def test_a_real_edge_access_log_loads(mlcdn, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    for i in range(4):
        (root / ("f%d.bin" % i)).write_bytes(b"x" * (1000 * (i + 1)))
    origin = mlcdn("origin", ["--listen", "127.0.0.1:0", "--root", str(root)])
    log = tmp_path / "access.log"
    edge = mlcdn("edge", ["--listen", "127.0.0.1:0", "--origin", origin.url,
                          "--access-log", str(log)])
    order = [0, 1, 0, 2, 0, 1, 3, 0]
    for i in order:
        assert edge.get("/f%d.bin" % i).status == 200
    assert edge.get("/missing").status == 404

    def logged():
        return log.exists() and len(log.read_text().splitlines()) >= len(order) + 1
    wait_for(logged, 10, "the access log")
    time.sleep(0.3)
    p = plan_json("--trace", str(log), "--format", "access-log", "--span", "1h",
                  "--l1", "1K,100K", "--l2", "0")
    assert p["requests"] == len(order) and p["objects"] == 4 and p["skipped_lines"] == 1
    assert p["bytes"] == sum(1000 * (i + 1) for i in order)
    # 100K holds the four files: only the first request of each misses
    assert p["l1"][1]["miss_ratio"] == pytest.approx(4 / len(order))


@pytest.mark.parametrize("args,needle", [
    ([], "--trace is required"),
    (["--trace", TRACE, "--format", "xml"], "--format: 'xml'"),
    (["--trace", TRACE, "--policy", "nope"], "--policy: 'nope'"),
    (["--trace", TRACE, "--l1", "12Q"], "--l1: '12Q'"),
    (["--trace", TRACE, "--l2", "1M,,x"], "--l2: 'x'"),
    (["--trace", TRACE, "--prices", "l1=abc"], "--prices: l1='abc'"),
    (["--trace", TRACE, "--prices", "disk=3"], "--prices: 'disk'"),
    (["--trace", TRACE, "--target-hit", "1.5"], "--target-hit: '1.5'"),
    (["--trace", TRACE, "--latency", "l2=fast"], "--latency: l2='fast'"),
    (["--trace", TRACE, "--sample", "0"], "--sample: '0'"),
    (["--trace", TRACE, "--sample-objects", "1"], "--sample-objects: '1'"),
    (["--trace", TRACE, "--sample-objects", "500", "--sample", "0.5"], "not both"),
    (["--trace", TRACE, "--seeds", "0"], "--seeds: '0'"),
    (["--trace", TRACE, "--span", "soon"], "--span: 'soon'"),
    (["--trace", TRACE, "--svg"], "--svg: missing value"),
    (["--trace", TRACE, "--bogus"], "unknown option '--bogus'"),
    (["--trace", TRACE, "--l2-admit-hits", "0"], "--l2-admit-hits: '0'"),
    (["--trace", TRACE, "--max-mem-object", "big"], "--max-mem-object: 'big'"),
])
def test_bad_flags_name_the_flag(args, needle):
    r = run("plan", *args, check=False)
    assert r.returncode == 2, r.stdout + r.stderr
    assert needle in r.stderr, r.stderr


def test_bad_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("t,key,size\n0,a,10\n1,b,ten\n")
    r = run("plan", "--trace", str(bad), check=False)
    assert r.returncode == 1 and "%s:3: size is not" % bad in r.stderr, r.stderr
    log = tmp_path / "bad.log"
    log.write_text("this is not a log line\n")
    r = run("plan", "--trace", str(log), "--format", "access-log", check=False)
    assert r.returncode == 1 and "%s:1:" % log in r.stderr, r.stderr
    r = run("plan", "--trace", str(tmp_path / "none.csv"), check=False)
    assert r.returncode == 1 and "--trace: %s" % (tmp_path / "none.csv") in r.stderr, r.stderr
    r = run("plan", "--trace", str(tmp_path), check=False)
    assert r.returncode == 1 and str(tmp_path) in r.stderr, r.stderr
    r = run("plan", "--trace", TRACE, "--svg", str(tmp_path / "no" / "dir.svg"), check=False)
    assert r.returncode == 1 and "--svg" in r.stderr and "no/dir.svg" in r.stderr, r.stderr


def test_plan_predicts_a_real_edges_tier_hits(mlcdn, tmp_path):
    """The coupled model against the edge itself: tiers.csv's requests replayed in order
    through an origin and an edge with a small L1 and L2, then the edge's per-tier counts
    (/metrics) against plan's prediction for the same sizes and flags.

    The tolerance, 0.03 of the requests per tier, is for what plan does not model: the
    edge's L1 is 16 shards of 1/16 of --mem each (an object's shard is chosen by its key
    hash, about 5 of these objects per shard here), and both tiers charge an object more
    than its body (headers, key, 512 bytes of L1 bookkeeping: 2 % of these bodies). The
    simplified model of before (every L1 miss enters L1) is off by more on this trace, which
    the assertions on the L1 share also check."""
    TIERS = os.path.join(FIX, "tiers.csv")
    reqs = []
    with open(TIERS) as f:
        next(f)
        for line in f:
            _, key, size = line.strip().split(",")
            reqs.append((key, int(size)))
    root = tmp_path / "root"
    for key, size in set(reqs):
        p = root / key.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(bytes([len(key) % 251]) * size)
        (root / (key.lstrip("/") + ".hdrs")).write_text("Cache-Control: max-age=3600\n")
    origin = mlcdn("origin", ["--listen", "127.0.0.1:0", "--root", str(root)])
    edge = mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--origin",
                          origin.url, "--threads", "1", "--mem", "2M", "--disk", "4M",
                          "--disk-dir", str(tmp_path / "l2"), "--l2-admit-hits", "2"],
                 ready_pattern=r"listening on (?P<url>\S+) admin=(?P<admin>\S+)")
    admin = edge.ready["admin"]
    levels = {"L1": 0, "L2": 0, "ORIGIN": 0}
    for key, size in reqs:
        r = edge.get(key)
        assert r.status == 200 and len(r.body) == size, key
        levels[r.headers["X-Cache-Level"]] += 1
        if r.headers["X-Cache-Level"] == "ORIGIN":
            # L2 copies fills in the background: the next request must find it there
            n = levels["ORIGIN"]
            wait_for(lambda: metric(admin, "mlcdn_edge_l2_stored_total") +
                     metric(admin, "mlcdn_edge_l2_not_stored_total") >= n, 10, "the L2 copy")
    n = len(reqs)
    l2_hits = metric(admin, "mlcdn_edge_tier_hits_total")
    l2_misses = metric(admin, "mlcdn_edge_tier_misses_total")
    assert (l2_hits, l2_misses) == (levels["L2"], levels["ORIGIN"])
    edge_l1 = (n - l2_hits - l2_misses) / n
    edge_l2 = l2_hits / n
    assert metric(admin, "mlcdn_edge_l2_promoted_total") > 0  # the rule the model mirrors

    p = plan_json("--trace", TIERS, "--span", "1h", "--l1", "2M", "--l2", "4M",
                  "--l2-admit-hits", "2")
    g = p["grid"][0]
    plan_l1 = g["l1_hit_ratio"]
    plan_l2 = g["hit_ratio"] - plan_l1
    assert abs(plan_l1 - edge_l1) <= 0.03, (plan_l1, edge_l1)
    assert abs(plan_l2 - edge_l2) <= 0.03, (plan_l2, edge_l2)
    assert abs(g["hit_ratio"] - (edge_l1 + edge_l2)) <= 0.03
    # L1 alone (no L2) is the old model's L1: every miss enters it; on this trace it
    # predicts L1 hits that the edge, which copies L2 objects only on a repeated hit, does
    # not reach
    print("edge L1 %.4f L2 %.4f; plan L1 %.4f L2 %.4f; L1 alone %.4f" %
          (edge_l1, edge_l2, plan_l1, plan_l2, 1 - p["l1"][0]["miss_ratio"]))
