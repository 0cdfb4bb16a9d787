"""Benchmarks that need the benchmark data set beside the repository (../shared, or
$MLCDN_SHARED) skip without it: exit status 77 and one line naming the benchmark, what it
skips for and the path it looked at; bench/run-all.sh counts that as skipped, not failed.
Run here with MLCDN_SHARED pointing at an empty directory, so nothing is measured."""
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
    "plan": "traces/*.csv",
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
