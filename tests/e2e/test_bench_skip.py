"""Benchmarks that need the benchmark data set beside the repository (../shared, or
$MLCDN_SHARED) skip without it: exit status 77 and one line naming the benchmark, what it
skips for and the path it looked at; bench/run-all.sh counts that as skipped, not failed.
Run here with MLCDN_SHARED pointing at an empty directory, so nothing is measured.
Benchmarks whose peers come from Debian skip the same way when one is missing, and every
benchmark's settings are checked before it installs or starts anything."""
import os
import subprocess

import pytest

from mlcdn_proc import binary

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# bench name -> what its skip line names
NEEDS_SHARED = {
    "cachesim": "traces/cloudphysics_w106_1m.csv",
    "dns": "bench/geodns/mkqueries.py",
    "http": "bench/http/compare.sh",
    "infer": "models/tools/npy.mjs",
}


@pytest.mark.parametrize("name", sorted(NEEDS_SHARED))
def test_bench_skips_without_the_data_set(name, tmp_path):
    empty = tmp_path / "no-shared"
    empty.mkdir()
    env = dict(os.environ, MLCDN_SHARED=str(empty), TMPDIR=str(tmp_path))
    r = subprocess.run([os.path.join(ROOT, "bench", name, "run.sh"), binary()], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 77, r.stdout + r.stderr
    line = r.stderr.strip()
    assert line.startswith("bench/%s: skipped: needs " % name), line
    assert os.path.join(str(empty), NEEDS_SHARED[name]) in line, line
    assert "MLCDN_SHARED" in line
    assert os.listdir(tmp_path) == ["no-shared"]  # nothing started, nothing left behind


def test_run_all_reports_a_skip_as_skipped(tmp_path):
    # bench/run-all.sh's loop, on a copy holding one benchmark that skips and one that fails
    bench = tmp_path / "bench"
    for name, body in (("a", "echo 'bench/a: skipped: needs X' >&2; exit 77"), ("b", "exit 3")):
        (bench / name).mkdir(parents=True)
        (bench / name / "run.sh").write_text("#!/bin/sh\n" + body + "\n")
        os.chmod(bench / name / "run.sh", 0o755)
    with open(os.path.join(ROOT, "bench", "run-all.sh")) as fh:
        (bench / "run-all.sh").write_text(fh.read())
    r = subprocess.run(["sh", str(bench / "run-all.sh"), "/bin/true"], capture_output=True,
                       text=True, timeout=30)
    assert "==== bench/a skipped ====" in r.stdout
    assert "==== bench/b FAILED ====" in r.stderr
    assert r.returncode == 1


# benchmarks whose peers or tools come from Debian: with one missing and SKIP_INSTALL set
# (as when it cannot be installed) they skip and name it as "command:package"
NEEDS_PEER = {
    "tls": ("H2O", "h2o"),
    "http2origin": ("NGINX", "nginx-light"),
}


@pytest.mark.parametrize("name", sorted(NEEDS_PEER))
def test_bench_skips_without_a_peer(name, tmp_path):
    var, pkg = NEEDS_PEER[name]
    gone = str(tmp_path / "not-installed")
    env = dict(os.environ, SKIP_INSTALL="1", TMPDIR=str(tmp_path), **{var: gone})
    r = subprocess.run([os.path.join(ROOT, "bench", name, "run.sh"), binary()], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 77, r.stdout + r.stderr
    line = r.stderr.strip()
    assert line.startswith("bench/%s: skipped: needs " % name), line
    assert "%s:%s" % (gone, pkg) in line, line
    assert os.listdir(tmp_path) == []  # nothing started, nothing left behind


# settings a benchmark refuses before it installs or starts anything: exit 2, the setting named
BAD_SETTINGS = [
    ("tls", {"TARGETS": "nginx varnish"}, "unknown target 'varnish'"),
    ("tls", {"TARGETS": "mlcdn nginx mlcdn"}, "target 'mlcdn' is listed twice"),
    ("tls", {"TARGETS": ""}, "TARGETS is empty"),
    ("tls", {"ROWS": "h1-1k h3-1k"}, "unknown row 'h3-1k'"),
    ("tls", {"REPS": "0"}, "REPS must be a positive whole number, not '0'"),
    ("tls", {"IDLE_CONNS": "10k"}, "IDLE_CONNS must be a positive whole number, not '10k'"),
    ("tls", {"PORT_BASE": "65530"}, "PORT_BASE must leave room for 7 ports"),
    ("http2origin", {"VARIANTS": "h1 h3"}, "unknown variant 'h3'"),
    ("http2origin", {"WORKLOADS": "unique-1k zipf"}, "unknown workload 'zipf'"),
    ("http2origin", {"DURATION": "5s"}, "DURATION must be a positive whole number, not '5s'"),
    ("http2origin", {"CONNS": "-4"}, "CONNS must be a positive whole number, not '-4'"),
    ("http2origin", {"WARMUP": "0"}, "WARMUP must be a positive whole number, not '0'"),
    ("http2origin", {"VARIANTS": ""}, "VARIANTS is empty"),
    ("http2origin", {"VARIANTS": "h2 h1 h2"}, "variant 'h2' is listed twice"),
]


@pytest.mark.parametrize("name,settings,message", BAD_SETTINGS,
                         ids=["%s-%d" % (b[0], i) for i, b in enumerate(BAD_SETTINGS)])
def test_bench_refuses_a_bad_setting(name, settings, message, tmp_path):
    env = dict(os.environ, SKIP_INSTALL="1", TMPDIR=str(tmp_path), OUTDIR=str(tmp_path / "out"),
               **settings)
    r = subprocess.run([os.path.join(ROOT, "bench", name, "run.sh"), binary()], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench/%s: " % name), r.stderr
    assert message in lines[0], r.stderr
    assert os.listdir(tmp_path) == []  # nothing started, nothing written


@pytest.mark.parametrize("name", ["tls", "http2origin"])
def test_bench_names_a_missing_binary(name, tmp_path):
    gone = str(tmp_path / "no" / "mlcdn")
    env = dict(os.environ, SKIP_INSTALL="1", TMPDIR=str(tmp_path))
    r = subprocess.run([os.path.join(ROOT, "bench", name, "run.sh"), gone], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "bench/%s: no mlcdn binary at %s" % (name, gone) in r.stderr
