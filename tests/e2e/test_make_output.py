"""The top-level Makefile builds quietly: no `make[N]: Entering directory` lines and no
per-object progress, unless V=1 (or VERBOSE=1); compiler warnings and errors still show and
a failed build still fails. Checked on a two-file C project driven by the repository's own
Makefile (copied into a temp dir), so the test builds in seconds."""
import os
import shutil
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CMAKELISTS = """cmake_minimum_required(VERSION 3.16)
project(quiet C)
add_library(part STATIC part.c)
add_executable(mlcdn main.c)
target_link_libraries(mlcdn PRIVATE part)
"""
MAIN = "int part(void);\nint main(void) { return part(); }\n"
PART = "int part(void) { return 0; }\n"
NOISE = ("Entering directory", "Leaving directory", "Building C object", "Built target",
         "Linking C")


def project(tmp_path):
    d = tmp_path / "proj"
    (d / "scripts").mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, "Makefile"), d / "Makefile")
    (d / "scripts" / "install-deps.sh").write_text("#!/bin/sh\nexit 0\n")
    os.chmod(d / "scripts" / "install-deps.sh", 0o755)
    (d / "CMakeLists.txt").write_text(CMAKELISTS)
    (d / "main.c").write_text(MAIN)
    (d / "part.c").write_text(PART)
    return d


def make(d, *args):
    # a clean environment: no make jobserver or level inherited from a calling `make test`
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(["make", "JOBS=2", *args], cwd=d, env=env, capture_output=True,
                          text=True, timeout=300)


def test_quiet_by_default(tmp_path):
    d = project(tmp_path)
    r = make(d, "build")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout + r.stderr
    assert "building build/" in out
    for n in NOISE:
        assert n not in out, out
    assert os.access(d / "build" / "mlcdn", os.X_OK)


def test_verbose_shows_the_commands(tmp_path):
    d = project(tmp_path)
    for flag in ("V=1", "VERBOSE=1"):
        shutil.rmtree(d / "build", ignore_errors=True)
        r = make(d, "build", flag)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "main.c.o" in r.stdout and " -c " in r.stdout, r.stdout  # the compile command
        assert "Entering directory" not in r.stdout + r.stderr


def test_warnings_and_errors_still_show(tmp_path):
    d = project(tmp_path)
    (d / "part.c").write_text('#warning "part.c has something to say"\n' + PART)
    r = make(d, "build")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "part.c has something to say" in r.stderr

    (d / "main.c").write_text(MAIN.replace("return part();", "return part() + undeclared;"))
    r = make(d, "build")
    assert r.returncode != 0
    assert "main.c" in r.stderr and "undeclared" in r.stderr and "error" in r.stderr, r.stderr
