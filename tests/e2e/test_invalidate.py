"""End-to-end tests of POST /admin/invalidate on the edge: exact URLs, prefix and glob
bans (objects cached after a ban are served), tags (Surrogate-Key / Cache-Tag) across L1,
L2 and Redis, model invalidation with its cached predictions, soft purges (stale served
while one refresh reaches the origin), bad bodies, the token, and bans that outlive an
edge restart with its disk tier.

Real processes on loopback: `mlcdn origin` (headers from FILE.hdrs), a scripted origin
where a test must hold a response, `mlcdn edge`, redis-server. What reached the origin is
asserted through the origin's /__stats or the script's request list.
"""
import json
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

from mlcdn_proc import free_port, metric, mlcdn, request, wait_for  # noqa: F401  (mlcdn is a fixture)
from script_origin import ScriptOrigin

EDGE_READY = r"listening on (?P<url>\S+) admin=(?P<admin>\S+) region=\S+ name=(?P<name>\S+)"
TOKEN = "s3cret"
AUTH = {"Authorization": "Bearer " + TOKEN}
HERE = os.path.dirname(os.path.abspath(__file__))



def edge_proc(mlcdn, origin_url, *extra):
    e = mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                       "--origin", origin_url, "--region", "t", "--threads", "2",
                       "--admin-token", TOKEN] + [str(a) for a in extra],
              ready_pattern=EDGE_READY)
    e.admin = e.ready["admin"]
    plain_get = e.get

    def get(path, headers=None, **kw):
        # One site name whatever the edge's port, so edges share keys (Redis, restarts).
        h = {"Host": "cdn.example.test"}
        h.update(headers or {})
        return plain_get(path, headers=h, **kw)

    e.get = get
    return e


def invalidate(e, body, token=TOKEN):
    h = {"Content-Type": "application/json"}
    if token:
        h["Authorization"] = "Bearer " + token
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return request("POST", e.admin + "/admin/invalidate", body=data, headers=h)


@pytest.fixture
def site(mlcdn, tmp_path):
    root = tmp_path / "root"
    root.mkdir()

    class Site:
        pass

    s = Site()
    s.disk = tmp_path / "l2"
    s.origin = mlcdn("origin", ["--listen", "127.0.0.1:0", "--root", str(root)])

    def put(name, data, headers=None):
        p = root / name.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        h = {"Cache-Control": "max-age=3600"}
        h.update(headers or {})
        (root / (name.lstrip("/") + ".hdrs")).write_text(
            "".join("%s: %s\n" % kv for kv in h.items()))
        return data

    s.put = put
    s.edge = lambda *extra: edge_proc(mlcdn, s.origin.url, *extra)
    s.hits = lambda path: s.origin.get("/__stats").json()["requests"].get(path, 0)
    return s


def warm(e, paths):
    for p in paths:
        r = e.get(p)
        assert r.status == 200, p
    for p in paths:
        assert e.get(p).headers["X-Cache"] == "HIT", p


# ---------------------------------------------------------------- exact URLs, prefix, glob


def test_urls_purge_and_prefix_ban_then_objects_cached_after_the_ban_are_served(site):
    paths = ["/models/ranker/v1.bin", "/models/ranker/v2.bin", "/models/other/v1.bin", "/x.txt"]
    for p in paths:
        site.put(p, p.encode())
    e = site.edge()
    warm(e, paths)
    r = invalidate(e, {"urls": ["/x.txt"], "id": "op-1"})
    assert r.status == 200, r.body
    assert r.json() == {"id": "op-1", "purged": 1, "bans": 0, "soft": False}
    r = invalidate(e, {"prefix": "/models/ranker/"})
    assert r.status == 200 and r.json()["bans"] == 1, r.body
    # Banned: fetched again, once each; the other model's object is still a hit.
    for p in ("/models/ranker/v1.bin", "/models/ranker/v2.bin", "/x.txt"):
        r = e.get(p)
        assert r.status == 200 and r.headers["X-Cache"] == "MISS" and r.body == p.encode(), p
        assert site.hits(p) == 2
    assert e.get("/models/other/v1.bin").headers["X-Cache"] == "HIT"
    # That lookup found no ban matching it; a newer ban that does is still applied.
    r = invalidate(e, {"prefix": "/models/other/"})
    assert r.status == 200 and r.json()["bans"] == 1, r.body
    assert e.get("/models/other/v1.bin").headers["X-Cache"] == "MISS"
    assert site.hits("/models/other/v1.bin") == 2
    # Ban semantics: what was fetched after the ban is served from cache.
    for p in ("/models/ranker/v1.bin", "/models/ranker/v2.bin"):
        assert e.get(p).headers["X-Cache"] == "HIT", p
        assert site.hits(p) == 2
    assert metric(e.admin, "mlcdn_edge_bans_issued_total") == 2
    assert metric(e.admin, 'mlcdn_edge_invalidations_total{kind="prefix"}') == 2
    # The lurker applies the bans everywhere, then retires them (no Redis tier: at once).
    wait_for(lambda: metric(e.admin, "mlcdn_edge_bans_active") == 0, what="bans retired")
    assert metric(e.admin, "mlcdn_edge_bans_retired_total") == 2


def test_glob_pattern_ban_and_the_lurker_removes_without_a_request(site):
    paths = ["/emb/a/v1/x.bin", "/emb/b/v1/y.bin", "/emb/a/v2/x.bin"]
    for p in paths:
        site.put(p, b"e" * 100)
    e = site.edge()
    warm(e, paths)
    objects = metric(e.admin, "mlcdn_edge_l1_objects")
    r = invalidate(e, {"patterns": ["/emb/*/v1/*"]})
    assert r.status == 200 and r.json()["bans"] == 1, r.body
    # Nobody asks for them: the lurker removes both matching objects from L1.
    wait_for(lambda: metric(e.admin, "mlcdn_edge_l1_objects") == objects - 2, what="lurker")
    assert metric(e.admin, 'mlcdn_edge_invalidated_objects_total{by="lurker"}') == 2
    assert e.get("/emb/a/v2/x.bin").headers["X-Cache"] == "HIT"
    assert e.get("/emb/b/v1/y.bin").headers["X-Cache"] == "MISS"


def test_purge_with_a_star_is_a_pattern_ban(site):
    paths = ["/g/a/1.bin", "/g/b/2.bin", "/g/c.txt", "/h/a/1.bin"]
    for p in paths:
        site.put(p, b"g" * 10)
    e = site.edge()
    warm(e, paths)
    r = request("PURGE", e.admin + "/g/*.bin", headers=AUTH)
    assert r.status == 200 and r.json()["bans"] == 1, r.body
    for p in paths:
        want = "MISS" if p.startswith("/g/") and p.endswith(".bin") else "HIT"
        assert e.get(p).headers["X-Cache"] == want, p
    assert request("PURGE", e.admin + "/g/*", headers={}).status == 401


# ---------------------------------------------------------------- bad bodies, token


@pytest.mark.parametrize("body,field", [
    (b"{not json", "invalid JSON"),
    (b"[1,2]", "expected a JSON object"),
    ({"prefix": 3}, "prefix"),
    ({"prefix": "models/"}, "prefix"),
    ({"urls": "/a", "patterns": [1]}, "patterns"),
    ({"urls": ["/a", "ftp://x/y"]}, "urls[1]"),
    ({"tags": ["a b"]}, "tags[0]"),
    ({"model": "bad/name"}, "model"),
    ({"urls": ["/a"], "soft": "yes"}, "soft"),
    ({"all": 1}, "all: expected true or false"),
    ({"urls": ["/a"], "purge": True}, "purge"),
    ({}, "nothing to invalidate"),
])
def test_bad_bodies_are_400_naming_the_field(site, body, field):
    e = site.edge()
    r = invalidate(e, body)
    assert r.status == 400, r.body
    assert field in r.json()["error"], r.body
    assert metric(e.admin, "mlcdn_edge_bans_issued_total") == 0


def test_token_is_required(site, mlcdn):
    e = site.edge()
    assert invalidate(e, {"urls": ["/a"]}, token=None).status == 401
    assert invalidate(e, {"urls": ["/a"]}, token="wrong").status == 401
    assert request("GET", e.admin + "/admin/invalidate", headers=AUTH).status == 405
    bare = mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                          "--origin", site.origin.url, "--region", "t"],
                 ready_pattern=EDGE_READY)
    assert invalidate(type("E", (), {"admin": bare.ready["admin"]}), {"urls": ["/a"]}).status == 403


# ---------------------------------------------------------------- tags across L1, L2, Redis


@pytest.fixture
def redis(tmp_path):
    exe = shutil.which("redis-server")
    if not exe:
        pytest.skip("redis-server is not installed (scripts/install-deps.sh installs it)")

    class R:
        pass

    r = R()
    r.port = free_port()
    r.url = "redis://127.0.0.1:%d" % r.port
    r.cli = lambda *a: subprocess.run(["redis-cli", "-p", str(r.port)] + list(a),
                                      capture_output=True, text=True).stdout.split()
    r.objects = lambda: r.cli("--scan", "--pattern", "mlcdn:obj:*")
    # The tag index: a sorted set per tag, of the copies carrying it.
    r.tag_sets = lambda: {k: (r.cli("TYPE", k)[0], int(r.cli("ZCARD", k)[0]))
                          for k in r.cli("--scan", "--pattern", "mlcdn:tags:*")}
    r.p = subprocess.Popen([exe, "--port", str(r.port), "--bind", "127.0.0.1", "--save", "",
                            "--appendonly", "no", "--dir", str(tmp_path)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: subprocess.run(["redis-cli", "-p", str(r.port), "ping"],
                                    capture_output=True, text=True).stdout.strip() == "PONG",
             what="redis-server")
    yield r
    if r.p.poll() is None:
        r.p.send_signal(signal.SIGKILL)
        r.p.wait(10)


def test_tag_purge_removes_exactly_its_objects_in_l1_l2_and_redis(site, redis, tmp_path):
    site.put("/t/a.bin", b"a" * 300, {"Surrogate-Key": "model:ranker shard-1"})
    site.put("/t/b.bin", b"b" * 300, {"Cache-Tag": "shard-2,model:ranker"})
    site.put("/t/c.bin", b"c" * 300, {"Surrogate-Key": "model:ranker-old"})
    paths = ["/t/a.bin", "/t/b.bin", "/t/c.bin"]
    # Edge 1 fills L1, its L2 and Redis; edge 2 shares Redis only.
    e1 = site.edge("--disk-dir", tmp_path / "l2a", "--disk", "64M", "--redis", redis.url)
    e2 = site.edge("--redis", redis.url)
    warm(e1, paths)
    wait_for(lambda: metric(e1.admin, "mlcdn_edge_l2_stored_total") >= 3, what="L2 writes")
    wait_for(lambda: metric(e1.admin, "mlcdn_edge_redis_stores_total") >= 3, what="Redis writes")
    for p in paths:
        assert e2.get(p).headers["X-Cache-Level"] == "REDIS", p
    assert len(redis.objects()) == 3
    assert sorted(redis.tag_sets().values()) == [("zset", 1)] * 3 + [("zset", 2)]
    assert metric(e1.admin, "mlcdn_edge_tag_index_pairs") == 5
    # Edge 1 removes the two tagged objects at once from its L1 and L2 (the tag index)
    # and from Redis (the tag's set there); edge 2 from its L1.
    r = invalidate(e1, {"tags": ["model:ranker"]})
    assert r.status == 200 and r.json()["bans"] == 1, r.body
    assert r.json()["purged"] == 6, r.body
    assert metric(e1.admin, "mlcdn_edge_tag_index_pairs") == 3
    assert len(redis.objects()) == 1
    assert sorted(redis.tag_sets().values()) == [("zset", 1)] * 3
    r = invalidate(e2, {"tags": ["model:ranker"]})
    assert r.status == 200 and r.json()["purged"] == 2, r.body
    # Exactly the two tagged objects are gone, on both edges, from every tier.
    for p in ("/t/a.bin", "/t/b.bin"):
        r1 = e1.get(p)
        assert r1.headers["X-Cache"] == "MISS" and r1.headers["X-Cache-Level"] == "ORIGIN", p
    assert site.hits("/t/a.bin") == 2 and site.hits("/t/b.bin") == 2
    assert e1.get("/t/c.bin").headers["X-Cache"] == "HIT"
    assert e2.get("/t/c.bin").headers["X-Cache"] == "HIT"
    assert site.hits("/t/c.bin") == 1
    # Edge 2 finds edge 1's fresh copies in Redis (stored after the ban): served.
    wait_for(lambda: metric(e1.admin, "mlcdn_edge_redis_stores_total") >= 5, what="Redis writes")
    for p in ("/t/a.bin", "/t/b.bin"):
        r = e2.get(p)
        assert r.headers["X-Cache-Level"] in ("L1", "REDIS") and r.body[:1] == p[3:4].encode(), p
    assert site.hits("/t/a.bin") == 2 and site.hits("/t/b.bin") == 2
    assert metric(e1.admin, 'mlcdn_edge_invalidated_objects_total{by="tag"}') == 4


# ---------------------------------------------------------------- bans across a restart


def test_ban_survives_an_edge_restart_with_l2(site, tmp_path):
    site.put("/r/1.bin", b"1" * 500)
    site.put("/r/2.bin", b"2" * 500)
    flags = ("--disk", "64M", "--l2-admit-hits", "1")
    e = site.edge("--disk-dir", site.disk, *flags)
    warm(e, ["/r/1.bin", "/r/2.bin"])
    wait_for(lambda: metric(e.admin, "mlcdn_edge_l2_stored_total") >= 2, what="L2 writes")
    e.stop()
    # A copy of the disk tier as it was before the ban: no lurker ever walks it, so only
    # the ban list can keep its banned file from being served after the restart.
    before = tmp_path / "l2-before"
    shutil.copytree(site.disk, before)
    # With a Redis tier (down here) bans outlive their walk by the Redis copies' lifetime,
    # so this one is still listed when the edge stops.
    e = site.edge("--disk-dir", site.disk, "--redis", "redis://127.0.0.1:%d" % free_port(),
                  *flags)
    r = invalidate(e, {"patterns": ["/r/1.*"]})
    assert r.status == 200, r.body
    e.stop()
    assert "/r/1.*" in (site.disk / "bans").read_text()
    shutil.copy(site.disk / "bans", before / "bans")
    e = site.edge("--disk-dir", before, *flags)
    r = e.get("/r/1.bin")
    assert r.headers["X-Cache"] == "MISS" and r.headers["X-Cache-Level"] == "ORIGIN"
    assert site.hits("/r/1.bin") == 2
    r = e.get("/r/2.bin")
    assert r.headers["X-Cache"] == "HIT" and r.headers["X-Cache-Level"] == "L2"
    assert site.hits("/r/2.bin") == 1


# ---------------------------------------------------------------- soft purge


@pytest.mark.parametrize("how", [{"urls": ["/s.bin"]}, {"prefix": "/s"}])
def test_soft_purge_serves_stale_while_one_refresh_reaches_the_origin(mlcdn, how):
    release = threading.Event()

    def answer(req, sock):
        while req:
            first = o.count() == 1
            if not first:
                release.wait(10)
            body = b"old" if first else b"new"
            sock.sendall(b"HTTP/1.1 200 OK\r\nCache-Control: max-age=3600\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            req = req.next()

    with ScriptOrigin(answer) as o:
        e = edge_proc(mlcdn, o.url)
        assert e.get("/s.bin").body == b"old"
        r = invalidate(e, dict(how, soft=True))
        assert r.status == 200 and r.json()["soft"] is True and r.json()["bans"] == 1, r.body
        for _ in range(5):
            r = e.get("/s.bin")
            assert r.status == 200 and r.body == b"old" and r.headers["X-Cache"] == "STALE"
            assert "detail=soft-purged" in r.headers["Cache-Status"]
        wait_for(lambda: o.count() == 2, what="the refresh")
        assert o.count() == 2  # five stale answers, one refresh
        release.set()
        wait_for(lambda: e.get("/s.bin").body == b"new", what="the refreshed object")
        r = e.get("/s.bin")
        assert r.headers["X-Cache"] == "HIT" and r.body == b"new"
        assert o.count() == 2


def test_soft_purge_of_a_copy_only_on_disk_serves_it_stale(site):
    site.put("/d/s.bin", b"d" * 300)
    flags = ("--disk-dir", site.disk, "--disk", "64M", "--l2-admit-hits", "1")
    e = site.edge(*flags)
    warm(e, ["/d/s.bin"])
    wait_for(lambda: metric(e.admin, "mlcdn_edge_l2_stored_total") >= 1, what="L2 write")
    e.stop()
    e = site.edge(*flags)  # L1 starts empty: the copy is on the disk only
    r = invalidate(e, {"prefix": "/d/", "soft": True})
    assert r.status == 200 and r.json()["bans"] == 1, r.body
    # The lurker walks (kicked by the ban) but leaves the soft-banned disk copy, within
    # its grace, to be served stale while one refresh runs.
    walks = metric(e.admin, "mlcdn_edge_ban_lurker_walks_total")
    wait_for(lambda: metric(e.admin, "mlcdn_edge_ban_lurker_walks_total") > walks, what="walk")
    r = e.get("/d/s.bin")
    assert r.status == 200 and r.headers["X-Cache"] == "STALE", r.headers
    assert r.headers["X-Cache-Level"] == "L2"
    wait_for(lambda: site.hits("/d/s.bin") == 2, what="the refresh")


# ---------------------------------------------------------------- model


def test_model_invalidation_drops_its_objects_tags_and_cached_predictions(site, mlcdn, tmp_path):
    models = tmp_path / "models"
    d = models / "mlp" / "1"
    d.mkdir(parents=True)
    os.symlink(os.path.join(HERE, "..", "fixtures", "models", "mlp", "model.onnx"),
               d / "model.onnx")
    site.put("/models/mlp/1/model.onnx", b"w" * 200)
    site.put("/embeddings/mlp/user-1", b"[0.1]")
    site.put("/features/u1", b"{}", {"Surrogate-Key": "prediction:mlp"})
    site.put("/features/u2", b"{}", {"Cache-Tag": "other, embedding:mlp:v1"})
    site.put("/models/mlp2/1/model.onnx", b"v" * 200)
    site.put("/features/u3", b"{}", {"Surrogate-Key": "prediction:mlp2:v1 model:mlp2"})
    paths = ["/models/mlp/1/model.onnx", "/embeddings/mlp/user-1", "/features/u1",
             "/features/u2", "/models/mlp2/1/model.onnx", "/features/u3"]
    e = site.edge("--models", models, "--models-poll", "0")
    warm(e, paths)
    x = {"model": "mlp", "features": [0.5] * 64}
    first = e.request("POST", "/predict", body=json.dumps(x))
    assert first.status == 200 and first.json()["cached"] is False, first.body
    assert e.request("POST", "/predict", body=json.dumps(x)).json()["cached"] is True
    r = invalidate(e, {"model": "mlp"})
    assert r.status == 200, r.body
    assert r.json()["predictions"] >= 1 and r.json()["bans"] == 9
    assert e.request("POST", "/predict", body=json.dumps(x)).json()["cached"] is False
    for p in paths[:4]:
        assert e.get(p).headers["X-Cache"] == "MISS", p
    for p in paths[4:]:
        assert e.get(p).headers["X-Cache"] == "HIT", p
    assert metric(e.admin, 'mlcdn_edge_invalidations_total{kind="model"}') == 1
