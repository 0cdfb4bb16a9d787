"""End-to-end tests of predictions at the edge: /predict, /batch_predict, the Open
Inference Protocol v2, the prediction cache, dynamic batching, hot reload and bad input.

The edge serves models from a tmp directory laid out NAME/VERSION/model.onnx with symlinks
to tests/fixtures/models; expected outputs come from the reference .npy files (ONNX Runtime).
No origin is needed: prediction endpoints never contact one (--origin points nowhere).
"""
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import threading
import time

import pytest

from mlcdn_proc import binary, mlcdn, request  # noqa: F401  (mlcdn is a fixture)
from predict_util import (read_npy, write_big_model, write_expand_bomb, write_slow_model,
                          write_value_shaped)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
SHARED = os.path.join(REPO, "tests", "fixtures", "models")
TOKEN = "predict-token"
EDGE_READY = r"listening on (?P<url>\S+) admin=(?P<admin>\S+)"
MODELS = ["logreg", "mlp", "two_tower", "gbdt", "softmax_clf"]


def close(got, want):
    return abs(got - want) <= 1e-5 + 1e-4 * abs(want)


def link_model(models, name, version, src=None, config=None):
    d = models / name / str(version)
    d.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.abspath(src or os.path.join(SHARED, name, "model.onnx")),
               d / "model.onnx")
    if config is not None:
        (d / "config.json").write_text(json.dumps(config))
    return d


@pytest.fixture
def models(tmp_path):
    m = tmp_path / "models"
    for name in MODELS:
        link_model(m, name, 1)
    return m


def start_edge(mlcdn, models, *extra):
    e = mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                       "--origin", "http://127.0.0.1:9", "--region", "test-eu",
                       "--admin-token", TOKEN, "--threads", "2", "--mem", "16M",
                       "--models", str(models), "--models-poll", "0"] + list(extra),
              ready_pattern=EDGE_READY)
    e.admin = e.ready["admin"]
    return e


@pytest.fixture
def edge(mlcdn, models):
    return start_edge(mlcdn, models)


def post(edge, path, obj, **kw):
    body = obj if isinstance(obj, (bytes, str)) else json.dumps(obj)
    return edge.request("POST", path, body=body,
                        headers={"Content-Type": "application/json"}, **kw)


def sample(name, batch):
    """{input name: (shape, flat values)} and {output name: (shape, flat)} of a sample set."""
    d = os.path.join(SHARED, name, "data", "b%d" % batch)
    ins, outs = {}, {}
    for f in sorted(os.listdir(d)):
        shape, vals = read_npy(os.path.join(d, f))
        if f.startswith("input_"):
            ins[f[6:-4]] = (shape, vals)
        else:
            outs[f[7:-4]] = (shape, vals)
    return ins, outs


def rows_of(shape, vals):
    n = len(vals) // shape[0]
    return [vals[i * n:(i + 1) * n] for i in range(shape[0])]


def flat(v):
    if isinstance(v, list):
        return [x for e in v for x in flat(e)]
    return [v]


# ---- endpoints ----

@pytest.mark.parametrize("name", MODELS)
def test_batch_predict_matches_reference(edge, name):
    ins, outs = sample(name, 64)
    if len(ins) == 1:
        (shape, vals), = ins.values()
        body = {"model": name, "features": rows_of(shape, vals)}
    else:
        body = {"model": name, "inputs": {k: rows_of(s, v) if len(s) > 1 else v
                                          for k, (s, v) in ins.items()}}
    r = post(edge, "/batch_predict", body)
    assert r.status == 200, r.body
    j = r.json()
    assert j["count"] == 64 and j["cached"] == 0
    assert j["model_version"] == 1 and j["edge_region"] == "test-eu" and j["model"] == name
    preds = j["predictions"]
    for oname, (oshape, ovals) in outs.items():
        want = rows_of(oshape, ovals) if len(oshape) > 1 else [[v] for v in ovals]
        for i, p in enumerate(preds):
            got = flat(p[oname] if len(outs) > 1 else p)
            assert len(got) == len(want[i])
            assert all(close(g, w) for g, w in zip(got, want[i])), (oname, i, got, want[i])


def test_predict_cached_flag(edge):
    ins, outs = sample("mlp", 1)
    x = ins["x"][1]
    r1 = post(edge, "/predict", {"model": "mlp", "features": x})
    r2 = post(edge, "/predict", {"model": "mlp", "features": x})
    assert r1.status == 200 and r2.status == 200
    assert r1.json()["cached"] is False and r2.json()["cached"] is True
    assert r1.headers["X-Cache"] == "MISS" and r2.headers["X-Cache"] == "HIT"
    assert close(r1.json()["prediction"], outs["prob"][1][0])
    assert r1.json()["prediction"] == r2.json()["prediction"]
    # Nested [[...]] is the same row, so the same key.
    r3 = post(edge, "/predict", {"model": "mlp", "features": [x]})
    assert r3.json()["cached"] is True
    # The full decoder (named inputs, exponents) makes the same key as the fast path.
    r5 = post(edge, "/predict", {"model": "mlp", "inputs": {"x": x}, "extra": None})
    assert r5.json()["cached"] is True and r5.json()["prediction"] == r1.json()["prediction"]
    r6 = post(edge, "/predict", '{"model": "mlp", "features": [%s]}'
              % ",".join("%.9e" % v for v in x))
    assert r6.json()["cached"] is True
    # A different version identity is a different key: named inputs, other model.
    r4 = post(edge, "/predict", {"model": "logreg", "inputs": {"x": x[:32]}})
    assert r4.status == 200 and r4.json()["cached"] is False


def test_predict_named_inputs_and_multi_output(edge):
    ins, outs = sample("two_tower", 1)
    body = {"model": "two_tower", "inputs": {"user_id": ins["user_id"][1][0],
                                             "item_id": ins["item_id"][1],
                                             "dense": ins["dense"][1]}}
    r = post(edge, "/predict", body)
    assert r.status == 200, r.body
    assert close(r.json()["prediction"], outs["prob"][1][0])
    ins, outs = sample("softmax_clf", 1)
    r = post(edge, "/predict", {"model": "softmax_clf", "features": ins["x"][1]})
    p = r.json()["prediction"]
    assert p["label"] == outs["label"][1][0]
    assert all(close(g, w) for g, w in zip(p["probs"], outs["probs"][1]))


def test_model_optional_when_one_loaded(mlcdn, tmp_path):
    m = tmp_path / "one"
    link_model(m, "mlp", 3)
    e = start_edge(mlcdn, m)
    r = post(e, "/predict", {"features": [0.5] * 64})
    assert r.status == 200 and r.json()["model"] == "mlp" and r.json()["model_version"] == 3


def test_batch_split_hits_and_misses(edge):
    rows = [[0.01 * (i + 1)] * 64 for i in range(5)]
    singles = [post(edge, "/predict", {"model": "mlp", "features": rows[i]}).json()["prediction"]
               for i in (1, 3)]
    r = post(edge, "/batch_predict", {"model": "mlp", "features": rows})
    j = r.json()
    assert r.status == 200 and j["count"] == 5 and j["cached"] == 2
    assert r.headers["X-Cache"] == "PARTIAL"
    assert j["predictions"][1] == singles[0] and j["predictions"][3] == singles[1]
    again = post(edge, "/batch_predict", {"model": "mlp", "features": rows[::-1]}).json()
    assert again["cached"] == 5 and again["predictions"] == j["predictions"][::-1]
    for i in (0, 2, 4):
        one = post(edge, "/predict", {"model": "mlp", "features": rows[i]}).json()
        assert one["cached"] is True and one["prediction"] == j["predictions"][i]


# ---- Open Inference Protocol v2 ----

def health(e, path):
    """(status, body) of an OIP health endpoint: the spec answers with the status code
    alone (200 true, 4xx false) and an empty body."""
    r = e.get(path)
    return r.status, r.body


def test_oip_health_and_metadata(edge):
    assert health(edge, "/v2/health/live") == (200, b"")
    assert health(edge, "/v2/health/ready") == (200, b"")
    assert edge.get("/v2").json()["name"] == "mlcdn"
    md = edge.get("/v2/models/two_tower").json()
    assert md["name"] == "two_tower" and md["versions"] == ["1"]
    assert md["inputs"] == [{"name": "user_id", "datatype": "INT64", "shape": [-1]},
                            {"name": "item_id", "datatype": "INT64", "shape": [-1]},
                            {"name": "dense", "datatype": "FP32", "shape": [-1, 16]}]
    assert md["outputs"] == [{"name": "prob", "datatype": "FP32", "shape": [-1, 1]}]
    assert edge.get("/v2/models/two_tower/versions/1").json()["inputs"] == md["inputs"]
    assert health(edge, "/v2/models/mlp/ready") == (200, b"")
    assert health(edge, "/v2/models/mlp/versions/1/ready") == (200, b"")
    assert health(edge, "/v2/models/mlp/versions/2/ready") == (404, b"")
    assert edge.get("/v2/models/nope").status == 404
    assert health(edge, "/v2/models/nope/ready") == (404, b"")


def test_oip_infer(edge):
    ins, outs = sample("two_tower", 64)
    body = {"id": "req-1", "inputs": [
        {"name": "user_id", "shape": [64], "datatype": "INT64", "data": ins["user_id"][1]},
        {"name": "item_id", "shape": [64], "datatype": "INT32", "data": ins["item_id"][1]},
        {"name": "dense", "shape": [64, 16], "datatype": "FP32",
         "data": rows_of(*ins["dense"])}]}  # nested
    r = post(edge, "/v2/models/two_tower/infer", body)
    assert r.status == 200, r.body
    j = r.json()
    assert j["model_name"] == "two_tower" and j["model_version"] == "1" and j["id"] == "req-1"
    (o,) = j["outputs"]
    assert o["name"] == "prob" and o["datatype"] == "FP32" and o["shape"] == [64, 1]
    assert all(close(g, w) for g, w in zip(o["data"], outs["prob"][1]))
    # Versioned path, output selection, flat data.
    ins, outs = sample("softmax_clf", 64)
    body = {"inputs": [{"name": "x", "shape": [64, 48], "datatype": "FP32",
                        "data": ins["x"][1]}], "outputs": [{"name": "label"}]}
    r = post(edge, "/v2/models/softmax_clf/versions/1/infer", body)
    assert r.status == 200, r.body
    (o,) = r.json()["outputs"]
    assert o["name"] == "label" and o["datatype"] == "INT64" and o["shape"] == [64]
    assert o["data"] == outs["label"][1]
    # BOOL tensors are accepted for a float input (true = 1.0).
    body = {"inputs": [{"name": "x", "shape": [1, 32], "datatype": "BOOL",
                        "data": [True, False] * 16}]}
    r = post(edge, "/v2/models/logreg/infer", body)
    ref = post(edge, "/predict", {"model": "logreg", "features": [1, 0] * 16})
    assert r.status == 200 and r.json()["outputs"][0]["data"][0] == ref.json()["prediction"]
    assert ref.json()["cached"] is True  # same input bytes as the OIP request


# ---- bad input ----

X64 = [0.5] * 64
BAD = [
    ("/predict", b'{"model": "mlp", "features": [1, 2', 400, "invalid JSON"),
    ("/predict", b'', 400, "invalid JSON"),
    ("/predict", b'[1, 2, 3]', 400, "expected a JSON object"),
    ("/predict", {"model": 5, "features": X64}, 400, "model: expected a string"),
    ("/predict", {"features": X64}, 400, "model: required"),
    ("/predict", {"model": "nope", "features": X64}, 404, "'nope' is not loaded"),
    ("/predict", {"model": "mlp", "model_version": 9, "features": X64}, 404, "no version 9"),
    ("/predict", {"model": "mlp"}, 400, "features: missing"),
    ("/predict", {"model": "mlp", "features": "abc"}, 400, "features: expected a number, got a string"),
    ("/predict", {"model": "mlp", "features": [1] * 63}, 400, "expected 64 values"),
    ("/predict", {"model": "mlp", "features": [1] * 3 + ["x"] + [1] * 60}, 400,
     "features[3]: expected a number, got a string"),
    ("/predict", {"model": "mlp", "features": [[[[[[[[[[[1]]]]]]]]]]]}, 400, "nested too deeply"),
    ("/predict", {"model": "mlp", "features": X64, "inputs": {"x": X64}}, 400, "not both"),
    ("/predict", {"model": "two_tower", "features": X64}, 400, "send them by name"),
    ("/predict", {"model": "two_tower", "inputs": {"user_id": 1, "item_id": 2}}, 400,
     "inputs.dense: missing"),
    ("/predict", {"model": "two_tower", "inputs": {"user_id": 1.5, "item_id": 2,
                                                   "dense": [0] * 16}}, 400,
     "inputs.user_id: expected an integer, got a number"),
    ("/predict", {"model": "two_tower", "inputs": {"user_id": 1, "item_id": 2, "dense": [0] * 16,
                                                   "extra": 1}}, 400, "inputs.extra"),
    ("/predict", {"model": "two_tower", "inputs": {"user_id": 50000, "item_id": 2,
                                                   "dense": [0] * 16}}, 400, "out of range"),
    ("/batch_predict", {"model": "mlp", "features": X64}, 400, "features[0]: expected 64 values"),
    ("/batch_predict", {"model": "mlp", "features": []}, 400, "at least one row"),
    ("/batch_predict", {"model": "mlp", "features": {"a": 1}}, 400, "expected an array of rows"),
    ("/batch_predict", {"model": "mlp", "features": [X64] * 65}, 400, "over max_batch 64"),
    ("/batch_predict", {"model": "two_tower", "inputs": {"user_id": [1, 2], "item_id": [1],
                                                         "dense": [[0] * 16] * 2}}, 400,
     "inputs.item_id: 1 rows"),
    ("/v2/models/nope/infer", {"inputs": []}, 404, "'nope' is not loaded"),
    ("/v2/models/mlp/versions/4/infer", {"inputs": []}, 404, "no version 4"),
    ("/v2/models/mlp/infer", {"inputs": []}, 400, "inputs: expected a non-empty array"),
    ("/v2/models/mlp/infer", {"inputs": [{"name": "y", "shape": [1, 64], "datatype": "FP32",
                                          "data": X64}]}, 400, "inputs[0].name: model mlp has no input 'y'"),
    ("/v2/models/mlp/infer", {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP16",
                                          "data": X64}]}, 400, "inputs[0].datatype"),
    ("/v2/models/two_tower/infer", {"inputs": [
        {"name": "user_id", "shape": [1], "datatype": "FP32", "data": [1]}]}, 400,
     "FP32 given, input user_id of model two_tower is INT64"),
    ("/v2/models/mlp/infer", {"inputs": [{"name": "x", "shape": [1, 63], "datatype": "FP32",
                                          "data": X64}]}, 400, "inputs[0].shape: expected [batch] + [64]"),
    ("/v2/models/mlp/infer", {"inputs": [{"name": "x", "shape": [2, 64], "datatype": "FP32",
                                          "data": X64}]}, 400, "inputs[0].data: expected 128 elements, got 64"),
    ("/v2/models/mlp/infer", {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "INT32",
                                          "data": [0.5] * 64}]}, 400,
     "inputs[0].data[0]: expected an integer in the int32 range"),
    ("/v2/models/mlp/infer", {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32",
                                          "data": X64}], "outputs": [{"name": "nope"}]}, 400,
     "outputs[0].name: model mlp has no output 'nope'"),
    ("/v2/models/two_tower/infer", {"inputs": [
        {"name": "user_id", "shape": [1], "datatype": "INT64", "data": [1]}]}, 400,
     "input 'item_id' of model two_tower is missing"),
]


def test_bad_input(edge):
    for path, body, status, msg in BAD:
        r = post(edge, path, body)
        assert r.status == status, (path, body, r.status, r.body)
        j = r.json()
        assert j["status"] == status and msg in j["error"], (path, body, j)
    # Methods and paths.
    assert edge.get("/predict").status == 405
    assert edge.get("/predict").headers["Allow"] == "POST"
    assert edge.get("/v2/models/mlp/infer").status == 405
    assert post(edge, "/v2/models/mlp", {}).status == 405
    assert edge.get("/v2/models/mlp/versions/x").status == 404
    assert edge.get("/v2/nothing").status == 404
    # Still serving, and the counters saw every case.
    assert post(edge, "/predict", {"model": "mlp", "features": X64}).status == 200
    m = request("GET", edge.admin + "/metrics").body.decode()
    assert re.search(r'mlcdn_predict_requests_total\{endpoint="predict",status="400"\} (\d+)', m)
    assert edge.alive()


def test_error_text_stays_utf8(edge):
    """An error message quotes at most 64 bytes of an input name; a cut in the middle of a
    UTF-8 sequence comes back as U+FFFD, so the answer is still JSON in UTF-8 (RFC 8259
    §8.1) that a strict client decodes."""
    name = "a" * 63 + "\u00e9"
    r = post(edge, "/v2/models/mlp/infer", {"inputs": [{"name": name, "shape": [1, 64],
                                                        "datatype": "FP32", "data": X64}]})
    assert r.status == 400
    j = json.loads(r.body.decode("utf-8"))
    assert "has no input '" + "a" * 63 + "\ufffd' (inputs: x)" in j["error"], j


def test_body_over_limit(mlcdn, models):
    e = start_edge(mlcdn, models, "--max-body", "64K")
    r = post(e, "/batch_predict", {"model": "mlp", "features": [[0.123456] * 64] * 200})
    assert r.status == 413 and "body" in r.json()["error"]
    assert post(e, "/predict", {"model": "mlp", "features": X64}).status == 200


# ---- worker threads, batching, metrics ----

def test_slow_inference_does_not_delay_hits(mlcdn, tmp_path):
    """One event loop (--threads 1): a 1 s inference runs on a pool thread while cache hits
    on the same loop keep being answered at once."""
    m = tmp_path / "models"
    link_model(m, "mlp", 1)
    (m / "slow" / "1").mkdir(parents=True)
    write_slow_model(str(m / "slow" / "1" / "model.onnx"), 1024, 24)
    e = start_edge(mlcdn, m, "--threads", "1", "--infer-threads", "2")
    x = [0.25] * 64
    assert post(e, "/predict", {"model": "mlp", "features": x}).json()["cached"] is False

    def hit_latencies(n):
        lat = []
        for _ in range(n):
            t = time.monotonic()
            r = post(e, "/predict", {"model": "mlp", "features": x})
            lat.append(time.monotonic() - t)
            assert r.json()["cached"] is True
        return sorted(lat)

    idle = hit_latencies(20)
    done = {}

    def slow():
        t = time.monotonic()
        r = post(e, "/predict", {"model": "slow", "features": [1.0] * 64}, timeout=60)
        done["status"], done["t"] = r.status, time.monotonic() - t

    th = threading.Thread(target=slow)
    t0 = time.monotonic()
    th.start()
    time.sleep(0.05)
    busy = []
    while "t" not in done and time.monotonic() - t0 < 30:
        busy += hit_latencies(5)
        if len(busy) >= 20:
            break
    th.join(60)
    assert done["status"] == 200
    # Hits completed while the slow inference was still running (all but at most the last
    # group of 5 started before it ended), as fast as when idle.
    assert len(busy) >= 10, (done, len(busy))
    busy.sort()
    p50_idle, p50_busy = idle[len(idle) // 2], busy[len(busy) // 2]
    assert p50_busy < max(5 * p50_idle, 0.05), (p50_idle, p50_busy, done)
    assert busy[-1] < done["t"] / 2


def metric(text, name, labels):
    m = re.search(re.escape(name) + r"\{" + re.escape(labels) + r"\} ([0-9.e+]+)", text)
    return float(m.group(1)) if m else None


def test_dynamic_batching_under_load(mlcdn, tmp_path):
    m = tmp_path / "models"
    link_model(m, "mlp", 1, config={"max_batch": 32, "max_delay_us": 20000})
    e = start_edge(mlcdn, m, "--infer-threads", "1")
    n = 64
    barrier = threading.Barrier(n)

    def one(i):
        barrier.wait(10)
        return post(e, "/predict", {"model": "mlp", "features": [i / 1000.0] * 64})

    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        rs = list(ex.map(one, range(n)))
    assert all(r.status == 200 and r.json()["cached"] is False for r in rs)
    text = request("GET", e.admin + "/metrics").body.decode()
    runs = metric(text, "mlcdn_predict_batch_size_count", 'model="mlp"')
    rows = metric(text, "mlcdn_predict_batch_size_sum", 'model="mlp"')
    # 64 rows, the probe excluded: fewer runs than requests means rows were batched.
    assert rows == 64 and runs < 64 / 2, (runs, rows)
    assert metric(text, "mlcdn_predict_requests_total", 'endpoint="predict",status="200"') == 64
    assert metric(text, "mlcdn_predict_cache_misses_total", 'model="mlp"') == 64
    assert "mlcdn_predict_inference_duration_seconds_bucket" in text
    assert metric(text, "mlcdn_predict_queue_depth", "") is None or True
    assert re.search(r"^mlcdn_predict_queue_depth \d", text, re.M)
    assert re.search(r"^mlcdn_predict_cache_hit_ratio [0-9.]+", text, re.M)


# ---- hot reload ----

def reload(e, token=TOKEN):
    h = {"Authorization": "Bearer " + token} if token else {}
    return request("POST", e.admin + "/admin/models/reload", body=b"", headers=h)


def test_hot_reload_during_load(mlcdn, models):
    e = start_edge(mlcdn, models)
    stop = threading.Event()
    results = []

    def client(k):
        i = 0
        while not stop.is_set():
            i += 1
            r = post(e, "/predict", {"model": "mlp", "features": [(k * 1000 + i % 50) / 1e4] * 64})
            results.append((r.status, r.json().get("model_version")))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    link_model(models, "mlp", 2)
    r = reload(e)
    assert r.status == 200, r.body
    assert {"model": "mlp", "version": 2} in r.json()["loaded"]
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(10)
    assert results and all(s == 200 for s, _ in results), [x for x in results if x[0] != 200][:3]
    versions = [v for _, v in results]
    assert 1 in versions and 2 in versions
    assert versions[-1] == 2 and post(e, "/predict", {"model": "mlp", "features": X64}).json()[
        "model_version"] == 2
    # Version 1 is still on disk, so still served on request.
    r = post(e, "/predict", {"model": "mlp", "model_version": 1, "features": X64})
    assert r.status == 200 and r.json()["model_version"] == 1
    # A broken version 3 leaves version 2 serving; the error is reported.
    (models / "mlp" / "3").mkdir()
    (models / "mlp" / "3" / "model.onnx").write_bytes(b"not an onnx model")
    r = reload(e)
    assert r.status == 200 and r.json()["failed"][0]["model"] == "mlp"
    st = {m["name"]: m for m in request("GET", e.admin + "/admin/models").json()["models"]}
    assert st["mlp"]["version"] == 2 and st["mlp"]["ready"] is True
    assert "version 3" in st["mlp"]["error"]
    assert post(e, "/predict", {"model": "mlp", "features": X64}).json()["model_version"] == 2
    text = request("GET", e.admin + "/metrics").body.decode()
    assert metric(text, "mlcdn_model_load_failures_total", 'model="mlp"') >= 1
    assert metric(text, "mlcdn_model_failed", 'model="mlp"') == 1
    # Removing the bad directory and reloading clears the error; removing v1 retires it.
    (models / "mlp" / "3" / "model.onnx").unlink()
    (models / "mlp" / "3").rmdir()
    (models / "mlp" / "1" / "model.onnx").unlink()
    (models / "mlp" / "1").rmdir()
    r = reload(e)
    assert {"model": "mlp", "version": 1} in r.json()["retired"]
    st = {m["name"]: m for m in request("GET", e.admin + "/admin/models").json()["models"]}
    assert st["mlp"]["error"] is None and st["mlp"]["versions"] == [2]
    text = request("GET", e.admin + "/metrics").body.decode()
    assert metric(text, "mlcdn_model_failed", 'model="mlp"') == 0
    # Token required.
    assert reload(e, token=None).status == 401
    assert reload(e, token="wrong").status == 401


def test_in_flight_request_finishes_on_its_version(mlcdn, tmp_path):
    m = tmp_path / "models"
    (m / "slow" / "1").mkdir(parents=True)
    write_slow_model(str(m / "slow" / "1" / "model.onnx"), 1024, 8)
    e = start_edge(mlcdn, m, "--models-poll", "100ms")
    res = {}

    def slow():
        res["r"] = post(e, "/predict", {"model": "slow", "features": [2.0] * 64}, timeout=60)

    th = threading.Thread(target=slow)
    th.start()
    time.sleep(0.05)
    # A new version directory is picked up by the watcher (no reload call).
    (m / "slow" / "2").mkdir()
    os.symlink(m / "slow" / "1" / "model.onnx", m / "slow" / "2" / "model.onnx")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if e.get("/v2/models/slow").json()["versions"] == ["1", "2"]:
            break
        time.sleep(0.05)
    th.join(60)
    assert res["r"].status == 200 and res["r"].json()["model_version"] == 1
    r = post(e, "/predict", {"model": "slow", "features": [2.0] * 64}, timeout=60)
    assert r.json()["model_version"] == 2 and r.json()["cached"] is False


def test_broken_model_at_start(mlcdn, tmp_path):
    m = tmp_path / "models"
    link_model(m, "mlp", 1)
    (m / "broken" / "1").mkdir(parents=True)
    (m / "broken" / "1" / "model.onnx").write_bytes(b"\x08\x08garbage")
    (m / "badcfg" / "1").mkdir(parents=True)
    os.symlink(os.path.join(SHARED, "logreg", "model.onnx"), m / "badcfg" / "1" / "model.onnx")
    (m / "badcfg" / "config.json").write_text('{"max_batch": "many"}')
    e = start_edge(mlcdn, m)
    assert post(e, "/predict", {"model": "mlp", "features": X64}).status == 200
    r = post(e, "/predict", {"model": "broken", "features": X64})
    assert r.status == 503 and "no version loaded" in r.json()["error"]
    # OIP v2: a model that is not ready is a 4xx with an empty body, and the server is
    # ready only when all its models are.
    assert health(e, "/v2/models/broken/ready") == (400, b"")
    assert health(e, "/v2/models/broken/versions/1/ready") == (404, b"")
    assert health(e, "/v2/models/mlp/ready") == (200, b"")
    assert health(e, "/v2/health/ready") == (400, b"")
    assert health(e, "/v2/health/live") == (200, b"")
    st = {x["name"]: x for x in request("GET", e.admin + "/admin/models").json()["models"]}
    assert st["broken"]["ready"] is False and "version 1" in st["broken"]["error"]
    assert "max_batch: expected an integer" in st["badcfg"]["error"]
    assert st["mlp"]["ready"] is True and st["mlp"]["error"] is None


# ---- memory budget ----

MiB = 1 << 20


def proc_status(pid, key):
    """A /proc/PID/status field in bytes (VmHWM: peak resident size, VmRSS: current)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def sanitized(pid):
    """An ASan build: its allocator keeps freed memory in quarantine, so RSS says nothing."""
    with open("/proc/%d/maps" % pid) as f:
        return "libasan" in f.read() or "ASAN_OPTIONS" in os.environ


def admin_models(e):
    return {m["name"]: m for m in request("GET", e.admin + "/admin/models").json()["models"]}


def test_expand_bomb_refused_by_budget(mlcdn, tmp_path):
    """A 200-byte model that expands a constant to [2^28, 4] (4 GiB) is refused from its
    shapes at start and at reload, naming the file, the node, the tensor and the bytes
    against the budget; the other models and the old version keep serving; the edge's peak
    RSS never comes near the claimed size."""
    m = tmp_path / "models"
    link_model(m, "mlp", 1)
    (m / "bomb" / "1").mkdir(parents=True)
    bomb = str(m / "bomb" / "1" / "model.onnx")
    write_expand_bomb(bomb)
    assert os.path.getsize(bomb) < 300
    e = start_edge(mlcdn, m)
    st = admin_models(e)
    assert st["bomb"]["ready"] is False
    err = st["bomb"]["error"]
    for want in (bomb, "node 'bomb' (Expand)", "'big' [268435456, 4] float32",
                 "needs 4294967296 bytes", "memory budget of 1073741824 bytes"):
        assert want in err, (want, err)
    assert st["mlp"]["ready"] is True and st["mlp"]["memory"]["budget"] == 1 << 30
    r = post(e, "/predict", {"model": "bomb", "features": [0.0] * 4})
    assert r.status == 503 and "budget" in r.json()["error"]
    assert post(e, "/predict", {"model": "mlp", "features": X64}).status == 200
    # The same bytes as a new version of a served model: refused by the reload, whose
    # answer says why, while version 1 keeps serving.
    (m / "mlp" / "2").mkdir()
    write_expand_bomb(str(m / "mlp" / "2" / "model.onnx"))
    r = reload(e)
    assert r.status == 200 and r.json()["loaded"] == []
    # A version that failed is retried by every reload: bomb fails again too.
    failed = {f["model"]: f["error"] for f in r.json()["failed"]}
    assert sorted(failed) == ["bomb", "mlp"] and "version 2" in failed["mlp"]
    assert "memory budget of 1073741824 bytes" in failed["mlp"]
    st = admin_models(e)
    assert st["mlp"]["version"] == 1 and "budget" in st["mlp"]["error"]
    assert post(e, "/predict", {"model": "mlp", "features": X64}).json()["model_version"] == 1
    assert proc_status(e.pid, "VmHWM") < 512 * MiB
    e.stop()
    assert re.search(r'model failed to load" model=bomb version=1 error=".*budget', e.log())


def test_request_over_model_memory_is_413(mlcdn, tmp_path):
    """A model whose output size is decided by a request's value: the run is sized when the
    value arrives and refused with 413 before anything is allocated; small values run."""
    m = tmp_path / "models"
    (m / "grow" / "1").mkdir(parents=True)
    write_value_shaped(str(m / "grow" / "1" / "model.onnx"))
    e = start_edge(mlcdn, m, "--model-memory", "64M")
    st = admin_models(e)
    assert st["grow"]["ready"] is True, st["grow"]["error"]
    assert st["grow"]["memory"]["budget"] == 64 * MiB
    ok = post(e, "/predict", {"model": "grow", "inputs": {"x": 1.5, "n": 0}})
    assert ok.status == 200, ok.body
    r = post(e, "/predict", {"model": "grow", "inputs": {"x": 1.5, "n": 1 << 28}})
    assert r.status == 413, r.body
    err = r.json()["error"]
    assert err.startswith("too large for the model's memory budget: ")
    assert "'y' [1, 268435456] float32 of node 'grow' (Expand)" in err
    assert "memory budget of 67108864 bytes" in err
    assert post(e, "/predict", {"model": "grow", "inputs": {"x": 1.5, "n": 0}}).status == 200
    assert proc_status(e.pid, "VmHWM") < 512 * MiB
    m413 = request("GET", e.admin + "/metrics").body.decode()
    assert re.search(r'mlcdn_predict_requests_total\{endpoint="predict",status="413"\} 1', m413)


def test_model_memory_flag_checked(mlcdn, tmp_path):
    m = tmp_path / "models"
    link_model(m, "mlp", 1)
    r = subprocess.run([binary(), "edge", "--origin", "http://127.0.0.1:9", "--models",
                        str(m), "--model-memory", "0"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and "--model-memory" in r.stderr
    # A budget too small for mlp's weights: refused, named, and the edge still starts.
    e = start_edge(mlcdn, m, "--model-memory", "64K")
    st = admin_models(e)
    assert st["mlp"]["ready"] is False and "memory budget of 65536 bytes" in st["mlp"]["error"]


def test_infer_cli_memory_budget(tmp_path):
    bomb = str(tmp_path / "bomb.onnx")
    write_expand_bomb(bomb)
    r = subprocess.run([binary(), "infer", bomb, "--describe"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1, r.stdout
    assert r.stderr.startswith("mlcdn infer: " + bomb + ": node 'bomb' (Expand)")
    assert "memory budget of 1073741824 bytes" in r.stderr
    small = str(tmp_path / "small.onnx")
    write_expand_bomb(small, rows=1 << 20)  # a 16 MiB expansion
    r = subprocess.run([binary(), "infer", small, "--describe", "--memory", "8M"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "memory budget of 8388608 bytes" in r.stderr
    r = subprocess.run([binary(), "infer", small, "--describe", "--memory", "32M"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^memory: \d+ bytes of constants \+ \d+ bytes for a run of 1 rows, "
                     r"budget 33554432$", r.stdout, re.M)
    r = subprocess.run([binary(), "infer", small, "--describe", "--memory", "lots"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--memory" in r.stderr


def test_load_peak_near_twice_the_weights(tmp_path):
    """Loading holds the file's bytes and protobuf's parse of them, then copies each weight
    out and frees its parsed payload at once: the peak stays near twice the weights (it
    was three times: file, parse and copies all at once)."""
    if "ASAN_OPTIONS" in os.environ:
        pytest.skip("ASan keeps freed memory in its quarantine")
    big = str(tmp_path / "big.onnx")
    write_big_model(big)
    size = os.path.getsize(big)
    pid = os.fork()
    if pid == 0:
        try:
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, 1)
            os.execv(binary(), [binary(), "infer", big, "--describe"])
        finally:
            os._exit(127)
    _, status, ru = os.wait4(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    peak = ru.ru_maxrss * 1024
    assert peak < 2.25 * size, (peak // MiB, size // MiB)


def test_rss_returns_after_big_model_removed(mlcdn, tmp_path):
    """200 MiB of weights in 2 MiB tables, loaded, replaced by a new version, then removed:
    the edge's resident size comes back near where it was before the model came."""
    m = tmp_path / "models"
    link_model(m, "mlp", 1)
    big = str(tmp_path / "big.onnx")
    write_big_model(big)
    e = start_edge(mlcdn, m)
    if sanitized(e.pid):
        pytest.skip("ASan keeps freed memory in its quarantine")
    for i in range(20):
        assert post(e, "/predict", {"model": "mlp", "features": [i / 20.0] * 64}).status == 200
    base = proc_status(e.pid, "VmRSS")
    for cycle in range(2):
        link_model(m, "big", 1, src=big)
        assert reload(e).json()["loaded"] == [{"model": "big", "version": 1}]
        r = post(e, "/predict", {"model": "big", "inputs": {"id": 7}})
        assert r.status == 200 and r.json()["prediction"] == [25.0, 50.0, 75.0, 100.0]
        assert proc_status(e.pid, "VmRSS") > base + 150 * MiB  # the weights are resident
        link_model(m, "big", 2, src=big)
        shutil.rmtree(m / "big" / "1")
        r = reload(e).json()
        assert r["loaded"] == [{"model": "big", "version": 2}]
        assert r["retired"] == [{"model": "big", "version": 1}]
        assert post(e, "/predict", {"model": "big", "inputs": {"id": 7}}).status == 200
        shutil.rmtree(m / "big")
        assert reload(e).json()["retired"] == [{"model": "big", "version": 2}]
        rss = proc_status(e.pid, "VmRSS")
        assert rss < base + 64 * MiB, (cycle, base // MiB, rss // MiB)


# ---- routes and prediction serving ----

def test_predict_route_shadowed_by_models_is_reported_at_start(mlcdn, models, tmp_path):
    """A caching route for /predict in the config file and --models both claim /predict:
    prediction serving wins (documented rule) and the start-up log names the route and
    the endpoint. The route's other paths still go through it."""
    conf = tmp_path / "edge.conf"
    conf.write_text('routes = (\n'
                    '  { prefix = "/features/"; methods = ["GET"]; ttl = 60; },\n'
                    '  { prefix = "/predict"; methods = ["POST"]; key_body = "json"; ttl = 300; }\n'
                    ');\n')
    e = start_edge(mlcdn, models, "--config", str(conf))
    r = post(e, "/predict", {"model": "logreg", "features": [0.0] * 32})
    assert r.status == 200, r.body
    assert "prediction" in r.json() or "predictions" in r.json()
    log = e.log()
    lines = [ln for ln in log.splitlines() if "route shadowed by prediction serving" in ln]
    assert len(lines) == 1, log
    assert 'route="routes[1]"' in lines[0] and 'prefix="/predict"' in lines[0]
    assert 'endpoint="/predict"' in lines[0] and "level=warn" in lines[0]


def test_inference_only_edge_needs_no_origin(mlcdn, models):
    """`mlcdn edge --models DIR` without --origin starts: predictions are served, any other
    request gets 404 saying no origin is configured. Without --models --origin stays
    required."""
    e = mlcdn("edge", ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                       "--models", str(models), "--models-poll", "0"], ready_pattern=EDGE_READY)
    r = post(e, "/predict", {"model": "logreg", "features": [0.0] * 32})
    assert r.status == 200, r.body
    r = e.get("/v2/health/live")
    assert r.status == 200
    for method, path in (("GET", "/index.html"), ("POST", "/upload"), ("HEAD", "/x")):
        r = e.request(method, path)
        assert r.status == 404, (method, path, r.status)
        if method != "HEAD":
            assert "no origin is configured" in r.json()["error"]
    assert request("GET", e.ready["admin"] + "/health").status == 200
    p = subprocess.run([binary(), "edge", "--listen", "127.0.0.1:0", "--admin", ""],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode != 0 and "--origin is required" in p.stderr, p.stderr


def test_unknown_config_key_refuses_the_model(mlcdn, tmp_path):
    """An unknown key in a model's config.json ("default_version": 1) is refused, naming
    the key: that model does not load (log, /admin/models), the other models do."""
    m = tmp_path / "models"
    link_model(m, "mlp", 1)
    link_model(m, "logreg", 1, config={"max_batch": 8, "default_version": 1})
    e = start_edge(mlcdn, m)
    assert post(e, "/predict", {"model": "mlp", "features": X64}).status == 200
    r = post(e, "/predict", {"model": "logreg", "features": [0.0] * 32})
    assert r.status == 503, r.body
    st = admin_models(e)
    assert st["mlp"]["ready"] is True
    assert st["logreg"]["ready"] is False
    assert "unknown key 'default_version'" in st["logreg"]["error"], st["logreg"]["error"]
    assert "config.json" in st["logreg"]["error"]
    assert "msg=\"model failed to load\" model=logreg" in e.log()
    assert "unknown key 'default_version'" in e.log()


def test_deleted_model_is_unloaded_and_its_series_go(mlcdn, tmp_path):
    """A model directory removed while the edge runs: the watcher unloads the model (it
    leaves /admin/models, /v2 answers 404) once its in-flight request finished on it, and
    its metric series leave /metrics; the other models go on."""
    m = tmp_path / "models"
    link_model(m, "mlp", 1)
    (m / "slow" / "1").mkdir(parents=True)
    write_slow_model(str(m / "slow" / "1" / "model.onnx"), 1024, 8)
    e = start_edge(mlcdn, m, "--models-poll", "100ms")
    assert post(e, "/predict", {"model": "mlp", "features": X64}).status == 200
    assert post(e, "/predict", {"model": "slow", "features": [1.0] * 64},
                timeout=60).status == 200
    assert 'model="slow"' in request("GET", e.admin + "/metrics").body.decode()
    res = {}

    def slow():
        res["r"] = post(e, "/predict", {"model": "slow", "features": [2.0] * 64}, timeout=60)

    th = threading.Thread(target=slow)
    th.start()
    time.sleep(0.05)
    shutil.rmtree(m / "slow")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "slow" in admin_models(e):
        time.sleep(0.05)
    assert "slow" not in admin_models(e)
    th.join(60)
    assert res["r"].status == 200 and res["r"].json()["model"] == "slow"
    r = post(e, "/predict", {"model": "slow", "features": [2.0] * 64})
    assert r.status == 404, r.body
    assert health(e, "/v2/models/slow/ready") == (404, b"")
    assert health(e, "/v2/health/ready") == (200, b"")
    metrics = request("GET", e.admin + "/metrics").body.decode()
    assert 'model="slow"' not in metrics
    assert 'model="mlp"' in metrics
    assert post(e, "/predict", {"model": "mlp", "features": X64}).status == 200
    assert "model removed" in e.log()
