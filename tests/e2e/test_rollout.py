"""End-to-end tests of model roll-out: `mlcdn origin` as the model store, three edges with
--model-store, and `mlcdn ctl model publish | rollback | promote | status`.

The models are tiny linear ones (y = k * sum(x)), so each version's answer says which
version served it: with features [1, 2, 3, 4], version k answers 10 * k.
"""
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading

import pytest

import router_util
from mlcdn_proc import free_port, binary, metric, mlcdn, request, wait_for  # noqa: F401  (mlcdn is a fixture)
from predict_util import write_linear_model

TOKEN = "rollout-token"
EDGE_READY = r"listening on (?P<url>\S+) admin=(?P<admin>\S+)"
X = [1, 2, 3, 4]


class Fleet:
    def __init__(self, mlcdn, tmp_path, n=3, edge_args=lambda name: []):
        root = tmp_path / "store"
        root.mkdir()
        self.tmp = tmp_path
        self.origin = mlcdn("origin", ["--listen", "127.0.0.1:0", "--root", str(root),
                                       "--token", TOKEN])
        self.edges = [self.start_edge(mlcdn, "e%d" % (i + 1), *edge_args("e%d" % (i + 1)))
                      for i in range(n)]
        (tmp_path / "sample.json").write_text(json.dumps({"features": X}))
        for k in range(1, 5):
            write_linear_model(str(tmp_path / ("m%d.onnx" % k)), k)

    def start_edge(self, mlcdn, name, *extra):
        e = mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                           "--origin", self.origin.url, "--model-store", self.origin.url,
                           "--admin-token", TOKEN, "--name", name, "--mem", "16M",
                           "--threads", "2"] + list(extra), ready_pattern=EDGE_READY)
        e.admin = e.ready["admin"]
        e.name = name
        return e

    def ctl(self, *args, edges=None, ok=True, target=None):
        edges = edges if edges is not None else self.edges
        target = target or ["--edges", ",".join(e.admin for e in edges)]
        argv = [binary(), "ctl", "model"] + [str(a) for a in args] + [
            "--origin", self.origin.url] + target + ["--token", TOKEN, "--wait", "30s"]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if ok:
            assert p.returncode == 0, p.stdout + p.stderr
        return p

    def publish(self, version, k=None, *extra, **kw):
        return self.ctl("publish", "lin", version, self.tmp / ("m%d.onnx" % (k or version)),
                        "--sample", self.tmp / "sample.json", *extra, **kw)

    def model_requests(self, version):
        """Requests that reached the store for a version's file (the PUT included)."""
        st = request("GET", self.origin.url + "/__stats").json()
        return st["requests"].get("/models/lin/%d/model.onnx" % version, 0)



def predict(edge, features=X):
    r = request("POST", edge.url + "/predict",
                body=json.dumps({"model": "lin", "features": features}))
    assert r.status == 200, r.body
    j = r.json()
    return j["model_version"], j["prediction"]


def state(edge, name="lin"):
    for m in request("GET", edge.admin + "/admin/models").json()["models"]:
        if m["name"] == name:
            return m
    return None


@pytest.fixture
def fleet(mlcdn, tmp_path):
    return Fleet(mlcdn, tmp_path)


def test_publish_reaches_every_edge(fleet):
    p = fleet.publish(1)
    assert "published lin 1" in p.stdout
    assert [predict(e) for e in fleet.edges] == [(1, 10)] * 3
    fleet.publish(2)
    assert [predict(e) for e in fleet.edges] == [(2, 20)] * 3
    sha = hashlib.sha256((fleet.tmp / "m2.onnx").read_bytes()).hexdigest()
    for e in fleet.edges:
        m = state(e)
        assert m["state"] == "active" and m["version"] == 2 and m["sha256"] == sha, m
        assert m["versions"] == [1, 2] and m["policy"] == {"mode": "latest"}, m
    # The upload, then each edge fetched the file once, through its own cache.
    assert fleet.model_requests(2) == 1 + 3
    man = request("GET", fleet.origin.url + "/models/lin/manifest.json")
    assert man.headers.get("Cache-Control") == "no-cache"
    v2 = man.json()["versions"]["2"]
    assert v2["sha256"] == sha and v2["sample"]["output"] == {"y": [20]}


def test_restarted_edge_serves_the_store_at_once(mlcdn, fleet):
    """A new or restarted edge reads every model of the store's index, without an
    announcement; --model-store-models limits it to those named."""
    fleet.publish(1)
    fleet.publish(2)
    idx = request("GET", fleet.origin.url + "/models/index.json")
    assert idx.json() == {"models": ["lin"]} and idx.headers.get("Cache-Control") == "no-cache"
    fleet.edges[0].stop()
    e = fleet.start_edge(mlcdn, "e1")
    wait_for(lambda: (state(e) or {}).get("state") == "active", what="lin on the new edge")
    assert predict(e) == (2, 20) and state(e)["versions"] == [2]
    other = fleet.start_edge(mlcdn, "e4", "--model-store-models", "other")
    wait_for(lambda: (state(other, "other") or {}).get("state") == "failed", what="other refused")
    assert "404" in state(other, "other")["reason"] and state(other, "lin") is None
    r = request("PUT", fleet.origin.url + "/models/index.json", body=b'{"models":["a b"]}',
                headers={"Authorization": "Bearer " + TOKEN})
    assert r.status == 400 and "models[0]" in r.json()["error"]


def test_status_lists_every_edge(fleet):
    fleet.publish(1)
    p = fleet.ctl("status", "lin")
    lines = p.stdout.splitlines()
    assert lines[0].split()[:5] == ["EDGE", "MODEL", "VERSION", "SHA256", "STATE"]
    sha = hashlib.sha256((fleet.tmp / "m1.onnx").read_bytes()).hexdigest()
    rows = sorted(l.split()[:5] for l in lines[1:])
    assert rows == [[e, "lin", "1", sha[:12], "active"] for e in ("e1", "e2", "e3")]


def test_rollback_without_download(fleet):
    fleet.publish(1)
    fleet.publish(2)
    request("POST", fleet.origin.url + "/__reset")
    p = fleet.ctl("rollback", "lin", 1)
    assert "rolled back lin to 1" in p.stdout
    assert [predict(e) for e in fleet.edges] == [(1, 10)] * 3
    assert fleet.model_requests(1) == 0 and fleet.model_requests(2) == 0
    assert state(fleet.edges[0])["policy"] == {"mode": "pinned", "version": 1}
    # A version the manifest does not list is refused by name.
    p = fleet.ctl("rollback", "lin", 7, ok=False)
    assert p.returncode == 1 and "no version 7" in p.stderr


def test_canary_then_promote(fleet):
    fleet.publish(1)
    fleet.publish(2, None, "--canary", "e1")
    assert [predict(e)[0] for e in fleet.edges] == [2, 1, 1]
    assert state(fleet.edges[1])["policy"]["mode"] == "canary"
    fleet.ctl("promote", "lin", 2)
    assert [predict(e)[0] for e in fleet.edges] == [2, 2, 2]
    # A share of the requests: exactly that share of every 100 on the canary's edge.
    fleet.publish(3, None, "--canary", "e2", "--percent", "30")
    got = [predict(fleet.edges[1], [i, 0, 0, 0])[0] for i in range(100)]
    assert got.count(3) == 30 and got.count(2) == 70
    assert state(fleet.edges[1])["canary"]["percent"] == 30
    assert {predict(fleet.edges[0])[0] for _ in range(10)} == {2}


def put_version(fleet, version, k):
    data = (fleet.tmp / ("m%d.onnx" % k)).read_bytes()
    r = request("PUT", "%s/models/lin/%d/model.onnx" % (fleet.origin.url, version), body=data,
                headers={"Authorization": "Bearer " + TOKEN})
    assert r.status in (200, 201), r.body
    return data


def put_manifest(fleet, man):
    r = request("PUT", fleet.origin.url + "/models/lin/manifest.json", body=json.dumps(man),
                headers={"Authorization": "Bearer " + TOKEN})
    assert r.status in (200, 201), r.body


def announce_all(fleet):
    for e in fleet.edges:
        r = request("POST", e.admin + "/admin/models/announce", body='{"name":"lin"}',
                    headers={"Authorization": "Bearer " + TOKEN})
        assert r.status == 202, r.body


def wait_failed(fleet, version):
    for e in fleet.edges:
        wait_for(lambda: state(e)["state"] == "failed" and state(e)["target"] == version,
                 what="%s refusing version %d" % (e.name, version))


def test_corrupted_upload_refused(fleet):
    fleet.publish(1)
    man = request("GET", fleet.origin.url + "/models/lin/manifest.json").json()
    data = put_version(fleet, 2, 2)
    # The manifest records other bytes than those stored: every edge must refuse them.
    man["versions"]["2"] = {"sha256": hashlib.sha256(b"other bytes").hexdigest(),
                            "size": len(data)}
    man["policy"] = {"mode": "latest"}
    put_manifest(fleet, man)
    failures = [metric(e.admin, "mlcdn_model_load_failures_total") for e in fleet.edges]
    announce_all(fleet)
    wait_failed(fleet, 2)
    for e, before in zip(fleet.edges, failures):
        m = state(e)
        assert "sha256 mismatch" in m["reason"] and m["version"] == 1, m
        assert predict(e) == (1, 10)
        # What the model-load alert of conf/prometheus waits on.
        assert metric(e.admin, "mlcdn_model_load_failures_total") > before
        assert metric(e.admin, "mlcdn_model_failed") == 1
    p = fleet.ctl("status", ok=False)
    assert p.returncode == 1 and p.stdout.count("sha256 mismatch") == 3
    # A good version afterwards clears the failed state.
    fleet.publish(3)
    for e in fleet.edges:
        assert predict(e) == (3, 30)
        assert metric(e.admin, "mlcdn_model_failed") == 0


def test_model_failing_its_sample_refused(fleet):
    fleet.publish(1)
    man = request("GET", fleet.origin.url + "/models/lin/manifest.json").json()
    data = put_version(fleet, 2, 3)
    # Right bytes, but the output recorded for the sample is not what they compute.
    man["versions"]["2"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                            "sample": {"input": {"features": X}, "output": {"y": [20]}}}
    put_manifest(fleet, man)
    announce_all(fleet)
    wait_failed(fleet, 2)
    for e in fleet.edges:
        m = state(e)
        assert m["reason"].startswith("sample: sample output y[0]: 30"), m
        assert m["versions"] == [1] and predict(e) == (1, 10)
    # A sample that does not even fit the model is refused the same way.
    man["versions"]["2"]["sample"]["input"] = {"features": [1, 2]}
    put_manifest(fleet, man)
    announce_all(fleet)
    for e in fleet.edges:
        wait_for(lambda: "expected 4 values" in (state(e)["reason"] or ""), what="bad sample")
        assert predict(e) == (1, 10)


def test_switch_under_load(fleet):
    fleet.publish(1)
    stop = threading.Event()
    seen = {e.name: [] for e in fleet.edges}
    errors = []

    def client(e):
        i = 0
        while not stop.is_set():
            try:
                seen[e.name].append(predict(e, [i % 7, 1, 2, 3]))
            except Exception as ex:  # noqa: BLE001 (any failure fails the test)
                errors.append(repr(ex))
            i += 1

    threads = [threading.Thread(target=client, args=(e,)) for e in fleet.edges]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: all(len(v) > 5 for v in seen.values()), what="load")
        fleet.publish(2)
        n = {k: len(v) for k, v in seen.items()}
        wait_for(lambda: all(len(seen[k]) > n[k] + 5 for k in n), what="load after")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    for name, got in seen.items():
        versions = [v for v, _ in got]
        first2 = versions.index(2)
        # Every answer is its version's own; none of version 1 once 2 answered.
        assert all(p == v * (6 + i % 7) for i, (v, p) in enumerate(got)), name
        assert 1 not in versions[first2:], name


def test_region_second_edge_fetches_from_parent(mlcdn, tmp_path):
    fleet = Fleet(mlcdn, tmp_path, n=1)
    child = fleet.start_edge(mlcdn, "e2", "--parent", fleet.edges[0].url)
    fleet.publish(1, edges=fleet.edges)
    fleet.ctl("promote", "lin", 1, edges=[child])
    assert predict(child) == (1, 10)
    assert fleet.model_requests(1) == 1 + 1  # the upload and the parent's fetch


def test_refusals_name_the_problem(fleet):
    e = fleet.edges[0]
    r = request("POST", e.admin + "/admin/models/announce", body='{"name":"lin"}')
    assert r.status == 401
    r = request("POST", e.admin + "/admin/models/announce", body='{"nom":"lin"}',
                headers={"Authorization": "Bearer " + TOKEN})
    assert r.status == 400 and "name" in r.json()["error"]
    r = request("POST", e.admin + "/admin/models/announce",
                body='{"name":"lin","manifest":{"versions":{}}}',
                headers={"Authorization": "Bearer " + TOKEN})
    assert r.status == 400 and "manifest: versions" in r.json()["error"]
    auth = {"Authorization": "Bearer " + TOKEN}
    r = request("PUT", fleet.origin.url + "/models/lin/1/model.onnx", body=b"x")
    assert r.status == 401
    r = request("PUT", fleet.origin.url + "/models/l%20in/1/model.onnx", body=b"x", headers=auth)
    assert r.status == 400 and "NAME" in r.json()["error"]
    r = request("PUT", fleet.origin.url + "/models/lin/v1/model.onnx", body=b"x", headers=auth)
    assert r.status == 400 and "VERSION" in r.json()["error"]
    r = request("PUT", fleet.origin.url + "/models/lin/manifest.json", body=b"{", headers=auth)
    assert r.status == 400 and "manifest.json" in r.json()["error"]
    p = fleet.ctl("publish", "lin", "x1", fleet.tmp / "m1.onnx", ok=False)
    assert p.returncode == 2 and "VERSION" in p.stderr
    p = fleet.ctl("publish", "lin", 1, fleet.tmp / "missing.onnx", ok=False)
    assert p.returncode == 1 and "missing.onnx" in p.stderr


def test_publish_through_router(fleet, tmp_path):
    """--router: the router's admin listener fans the announcement and the status reads out
    to the edges it knows; its /edges shows what each edge serves, from its health checks."""
    db = str(tmp_path / "geo.mmdb")
    router_util.make_test_mmdb(db)
    places = [("tokyo", 35.68, 139.69), ("london", 51.51, -0.13), ("nvirginia", 38.9, -77.4)]
    specs = ["%s=%s,%s,127.0.0.1,%s/health" % (p[0], p[1], p[2], e.admin)
             for p, e in zip(places, fleet.edges)]
    r = router_util.Router("cdn.test", db, specs,
                           ["--health-interval", "100ms", "--admin", "127.0.0.1:0",
                            "--admin-token", TOKEN])
    try:
        admin = "http://127.0.0.1:%s" % re.search(r"admin_port=(\d+)", r.text()).group(1)
        router = ["--router", admin]
        p = fleet.publish(1, target=router)
        assert sorted(re.findall(r"(\w+) +lin 1 active after", p.stdout)) == \
            ["london", "nvirginia", "tokyo"], p.stdout
        assert [predict(e) for e in fleet.edges] == [(1, 10)] * 3
        sha = hashlib.sha256((fleet.tmp / "m1.onnx").read_bytes()).hexdigest()

        def router_sees():
            edges = request("GET", "http://127.0.0.1:%d/edges" % r.http_port).json()["edges"]
            return all(e["models"] == [{"name": "lin", "version": 1, "sha256": sha,
                                        "state": "active"}] for e in edges)
        wait_for(router_sees, what="the router's /edges listing lin 1 on every edge")
        p = fleet.ctl("status", "lin", target=router)
        assert sorted(l.split()[:3] for l in p.stdout.splitlines()[1:]) == \
            [[n, "lin", "1"] for n in ("london", "nvirginia", "tokyo")]
        # A canary names edges as they name themselves (--name), whatever the router calls them.
        fleet.publish(2, None, "--canary", "e1", target=router)
        assert [predict(e)[0] for e in fleet.edges] == [2, 1, 1]
        # The router's own endpoints need its token, and a JSON object to announce.
        st = request("POST", admin + "/admin/models/announce", body=b'{"name":"lin"}')
        assert st.status == 401
        st = request("POST", admin + "/admin/models/announce", body=b'["lin"]',
                     headers={"Authorization": "Bearer " + TOKEN})
        assert st.status == 400 and "JSON object" in st.json()["error"]
    finally:
        r.cleanup()


def test_redis_target_unreachable(fleet):
    p = fleet.ctl("status", target=["--redis", "redis://127.0.0.1:1"], ok=False)
    assert p.returncode == 1 and "127.0.0.1:1" in p.stderr
    p = fleet.ctl("publish", "lin", 1, fleet.tmp / "m1.onnx",
                  target=["--redis", "redis://127.0.0.1:1"], ok=False)
    assert p.returncode == 1 and "127.0.0.1:1" in p.stderr


def test_publish_over_the_control_stream(mlcdn, tmp_path):
    """--redis: one entry of kind "model" on the control stream; every edge reading it
    acknowledges, then rolls the model out as after a direct announcement; ctl waits for
    and `status --redis` reads what each edge writes in the stream's KEY:edges."""
    exe = shutil.which("redis-server")
    if not exe:
        pytest.skip("redis-server is not installed (scripts/install-deps.sh installs it)")
    port = free_port()
    redis = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", str(tmp_path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def cli(*args):
        return subprocess.run(["redis-cli", "-p", str(port)] + list(args), capture_output=True,
                              text=True).stdout.strip()
    try:
        wait_for(lambda: cli("PING") == "PONG", what="redis-server")
        url = "redis://127.0.0.1:%d" % port
        fleet = Fleet(mlcdn, tmp_path, edge_args=lambda name: [
            "--control-redis", url, "--control-state", str(tmp_path / (name + ".state"))])
        for e in fleet.edges:
            wait_for(lambda: cli("HEXISTS", "mlcdn:control:edges", e.name) == "1",
                     what="%s on the stream" % e.name)
        # ctl waits for every edge of the stream to serve it, from what each edge writes
        # in mlcdn:control:edges (no admin URL needed).
        p = fleet.publish(1, target=["--redis", url])
        assert "3 of 3 edges serve it" in p.stdout, p.stdout + p.stderr
        assert len(re.findall(r"lin 1 active after", p.stdout)) == 3, p.stdout
        assert [predict(e) for e in fleet.edges] == [(1, 10)] * 3
        entry = json.loads(cli("--json", "XRANGE", "mlcdn:control", "-", "+"))[-1][1]
        fields = dict(zip(entry[0::2], entry[1::2]))
        assert fields["kind"] == "model" and json.loads(fields["body"])["name"] == "lin"
        p = fleet.publish(2, target=["--redis", url])
        assert "3 of 3 edges serve it" in p.stdout, p.stdout + p.stderr
        p = fleet.ctl("status", "lin", target=["--redis", url])
        rows = [l.split() for l in p.stdout.splitlines()[1:]]
        assert sorted(r[0] for r in rows) == ["e1", "e2", "e3"], p.stdout
        assert all(r[1:3] == ["lin", "2"] and r[4] == "active" for r in rows), p.stdout
        # A stopped edge is named as silent, not taken for serving.
        fleet.edges[2].stop()
        wait_for(lambda: "not heard from" in fleet.ctl(
            "status", target=["--redis", url], ok=False).stdout, timeout=20,
            what="e3 reported silent")
        p = fleet.ctl("status", target=["--redis", url], ok=False)
        assert p.returncode == 1 and re.search(r"e3\s+unreachable: not heard from", p.stdout)
    finally:
        redis.send_signal(signal.SIGKILL)
        redis.wait(10)


S3_KEY_ID, S3_SECRET = "AKIDMLCDNTEST", "test-secret/with+chars"


def s3_ctl(s3, tmp_path, edges, *args, secret=S3_SECRET, sigv4="aws:amz:us-east-1:s3",
           session=None):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=S3_KEY_ID, AWS_SECRET_ACCESS_KEY=secret)
    env.pop("AWS_SESSION_TOKEN", None)
    if session:
        env["AWS_SESSION_TOKEN"] = session
    argv = [binary(), "ctl", "model"] + [str(a) for a in args] + [
        "--origin", s3.url + "/ml-models", "--store-sigv4", sigv4,
        "--edges", ",".join(e.admin for e in edges), "--token", TOKEN, "--wait", "30s"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)


def test_publish_to_an_s3_bucket(mlcdn, tmp_path):
    """--store-sigv4: the store is an S3-compatible bucket (path style); every request ctl
    makes to it is signed with AWS Signature V4 (checked by the test's S3 as S3 checks it)
    and the edges read the public bucket, the model file through their own tiers with the
    bucket's path kept."""
    from s3_server import S3
    s3 = S3(S3_KEY_ID, S3_SECRET)
    try:
        (tmp_path / "sample.json").write_text(json.dumps({"features": X}))
        for k in (1, 2):
            write_linear_model(str(tmp_path / ("m%d.onnx" % k)), k)
        edges = []
        for name in ("e1", "e2"):
            e = mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                               "--origin", s3.url, "--model-store", s3.url + "/ml-models",
                               "--admin-token", TOKEN, "--name", name, "--mem", "16M"],
                      ready_pattern=EDGE_READY)
            e.admin = e.ready["admin"]
            edges.append(e)
        # Version 2 with temporary credentials: STS session tokens run to kilobytes.
        session = "IQoJb3JpZ2luX2VjE" + "x" * 2500
        for v in (1, 2):
            p = s3_ctl(s3, tmp_path, edges, "publish", "lin", v, tmp_path / ("m%d.onnx" % v),
                       "--sample", tmp_path / "sample.json", session=session if v == 2 else None)
            assert p.returncode == 0, p.stdout + p.stderr
            assert [predict(e) for e in edges] == [(v, 10 * v)] * 2
            f = "/ml-models/models/lin/%d/model.onnx" % v
            assert s3.objects[f] == (tmp_path / ("m%d.onnx" % v)).read_bytes()
            assert s3.requests("PUT", f) == [("PUT", f, "signed")]
            # Each edge fetched the file through its tiers, from the bucket's own path.
            assert len(s3.requests("GET", f)) == 2
        man = json.loads(s3.objects["/ml-models/models/lin/manifest.json"])
        assert sorted(man["versions"]) == ["1", "2"]
        assert json.loads(s3.objects["/ml-models/models/index.json"]) == {"models": ["lin"]}
        assert s3.session_tokens[0] == "" and s3.session_tokens[-1] == session
        # ctl's reads of the manifest and the index were signed too.
        assert ("GET", "/ml-models/models/lin/manifest.json", "signed") in s3.log
        assert all(st == "signed" for m, path, st in s3.log if m == "PUT")

        # A wrong secret: S3 refuses the upload, ctl says so and changes nothing.
        write_linear_model(str(tmp_path / "m3.onnx"), 3)
        p = s3_ctl(s3, tmp_path, edges, "publish", "lin", 3, tmp_path / "m3.onnx",
                   secret="not-the-secret")
        assert p.returncode == 1 and "SignatureDoesNotMatch" in p.stderr, p.stderr
        assert "/ml-models/models/lin/3/model.onnx" not in s3.objects
        man = json.loads(s3.objects["/ml-models/models/lin/manifest.json"])
        assert sorted(man["versions"]) == ["1", "2"]
        assert [predict(e) for e in edges] == [(2, 20)] * 2

        p = s3_ctl(s3, tmp_path, edges, "status", sigv4="aws:amz:us-east-1:s3:x")
        assert p.returncode == 0, p.stderr  # status does not use the store
        p = s3_ctl(s3, tmp_path, edges, "rollback", "lin", 1, sigv4="aws:amz:us east:s3")
        assert p.returncode != 0 and "--store-sigv4 'aws:amz:us east:s3'" in p.stderr
        env = dict(os.environ)
        env.pop("AWS_ACCESS_KEY_ID", None)
        p = subprocess.run([binary(), "ctl", "model", "rollback", "lin", "1", "--origin",
                            s3.url + "/ml-models", "--store-sigv4", "aws:amz:us-east-1:s3",
                            "--edges", edges[0].admin, "--token", TOKEN],
                           capture_output=True, text=True, timeout=60, env=env)
        assert p.returncode != 0 and "AWS_ACCESS_KEY_ID" in p.stderr, p.stderr
    finally:
        s3.close()
