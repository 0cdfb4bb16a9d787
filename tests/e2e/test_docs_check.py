"""scripts/check-docs.py, the check that keeps README.md and docs/ honest, fed small documents
that are right and documents that are wrong in one way each: it must pass the first and name
file, line and problem for the others. (`make docs-check`, a step of `make test`, runs it on
the real docs.) Blocks run inside the checker's private network namespace, so the fixed
ports below cannot collide with anything."""
import os
import shutil
import subprocess
import sys

import pytest

from mlcdn_proc import binary

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CHECK = os.path.join(ROOT, "scripts", "check-docs.py")

FENCE = "```"


def check(tmp_path, text):
    doc = tmp_path / "doc.md"
    doc.write_text(text)
    r = subprocess.run([sys.executable, CHECK, "--bin", binary(), str(doc)],
                       capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout + r.stderr, str(doc)


def doc(*blocks):
    return "# a page\n\nSome prose.\n\n" + "\n".join(blocks)


def sh(body, note=None):
    return ((note + "\n") if note else "") + FENCE + "sh\n" + body + "\n" + FENCE + "\n"


ORIGIN = "mlcdn origin --listen 127.0.0.1:9000 --root ./assets &"
GOOD = sh(ORIGIN + "\n"
          "curl -s -o /dev/null -D - http://127.0.0.1:9000/api/features.json"
          "   # Cache-Control: public, max-age=10, stale-while-revalidate=30\n"
          "build/mlcdn origin --help | grep -q -- --latency\n"
          "kill %1")


def test_good_doc_passes(tmp_path):
    rc, out, _ = check(tmp_path, doc(GOOD,
                                     sh("mlcdn edge --origin URL [--mem SIZE] [--threads N]",
                                        "<!-- not run: a synopsis -->"),
                                     "Run `make e2e` or `mlcdn cachesim --trace FILE --json`.\n",
                                     FENCE + "json\n{\"a\": 1}\n" + FENCE + "\n"))
    assert rc == 0, out
    assert "1 sh blocks run, 1 checked without running, 2 inline commands checked: ok" in out


def test_here_document_and_config_file(tmp_path):
    # a here-document's body is data (its '#' line is not a comment to strip, its words are
    # not checked as commands); a daemon started from a config file, without --listen on
    # its command line, is waited for through the sockets it opens
    body = ("cat > /tmp/origin.conf <<'END'\n"
            "# the origin of this example\n"
            "listen = \"127.0.0.1:9000\";\n"
            "root = \"./assets\";\n"
            "END\n"
            "grep -q '^# the origin' /tmp/origin.conf\n"
            "mlcdn origin --config /tmp/origin.conf &\n"
            "curl -s http://127.0.0.1:9000/index.txt | grep -q 'demo origin'")
    rc, out, _ = check(tmp_path, doc(sh(body)))
    assert rc == 0, out


@pytest.mark.parametrize("body, problem", [
    # a flag the command does not have, in a block that runs and in one that does not
    (sh("mlcdn origin --listen 127.0.0.1:9000 --rooot ./assets &"),
     "mlcdn origin has no flag --rooot"),
    (sh("mlcdn edge --origin URL --memory 2G", "<!-- not run: a synopsis -->"),
     "mlcdn edge has no flag --memory"),
    (sh("build/mlcdn serve --root ./assets", "<!-- not run: a synopsis -->"),
     "mlcdn has no command 'serve'"),
    # files that are not there
    (sh("mlcdn origin --listen 127.0.0.1:9000 --root ./assets/nope &",
        "<!-- not run: example -->"), "no such file or directory: ./assets/nope"),
    (sh("REPS=1 bench/nope/run.sh build/mlcdn", "<!-- not run: a benchmark -->"),
     "no such file: bench/nope/run.sh"),
    (sh("make tset", "<!-- not run: recursive -->"), "make: no target 'tset'"),
    # commands that fail when run
    (sh("false"), "exit status 1 at"),
    (sh(ORIGIN + "\ncurl -s http://127.0.0.1:9000/missing.bin"), "exit status 22 at"),
    (sh("mlcdn origin --listen 127.0.0.1:9000 --root /nonexistent &\ntrue"),
     "the command sent to the background exited"),
    (sh(ORIGIN + "\ncurl -s -o /dev/null -D - http://127.0.0.1:9000/index.txt  # X-Cache: HIT"),
     "the output has no 'X-Cache: HIT' line"),
    (sh(ORIGIN + "\ncurl -s -o /dev/null -D - http://127.0.0.1:9000/api/private.json"
        "  # Cache-Control: private, max-age=61"),
     "the output has no 'Cache-Control: private, max-age=61' line"),
    # the sandbox: nothing but a fresh /tmp is writable
    (sh("echo scratch > /tmp/scratch && touch written-by-a-doc"), "Read-only file system"),
    (sh("touch /etc/written-by-a-doc"), "Read-only file system"),
    # blocks that do not say what they are
    (FENCE + "\nmlcdn run\n" + FENCE + "\n", "fenced block without a language"),
    (FENCE + "text\nmake run\n" + FENCE + "\n", "a command in a ```text block"),
    (sh("make run", "<!-- not run: -->"), "needs a reason"),
    (sh("make run", "<!-- not-run because -->"), "malformed annotation"),
    # inline commands get the static checks
    ("Start it with `mlcdn origin --root DIR --port 9000`.\n", "mlcdn origin has no flag --port"),
])
def test_broken_doc_fails(tmp_path, body, problem):
    rc, out, path = check(tmp_path, doc(GOOD, body))
    assert rc == 1, out
    assert problem in out, out
    assert "%s:" % path in out
    assert "1 problems" in out, out  # the good block next to it is not blamed


def test_a_checkout_under_tmp_stays_visible(tmp_path):
    # the sandbox's fresh /tmp must not hide a repository that lives in /tmp (a CI clone)
    repo = tmp_path / "clone"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(CHECK, repo / "scripts")
    shutil.copytree(os.path.join(ROOT, "assets"), repo / "assets")
    (repo / "build").mkdir()
    shutil.copy(binary(), repo / "build" / "mlcdn")
    (repo / "doc.md").write_text(doc(sh("grep -q 'demo origin' assets/index.txt\n"
                                        "echo scratch > /tmp/scratch\n"
                                        "build/mlcdn origin --listen 127.0.0.1:9000 --root ./assets &\n"
                                        "curl -s http://127.0.0.1:9000/index.txt")))
    r = subprocess.run([sys.executable, str(repo / "scripts" / "check-docs.py"),
                        "--bin", str(repo / "build" / "mlcdn"), str(repo / "doc.md")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (tmp_path / "scratch").exists()


def test_nothing_written_outside_the_sandbox():
    assert not os.path.exists(os.path.join(ROOT, "written-by-a-doc"))
    assert not os.path.exists("/etc/written-by-a-doc")


def test_problem_names_the_line(tmp_path):
    rc, out, path = check(tmp_path, doc(sh("true\n\ntrue\nmlcdn origin --help --nope")))
    assert rc == 1
    assert "%s:9: mlcdn origin has no flag --nope" % path in out, out


def test_block_processes_end_with_the_block(tmp_path):
    # the same fixed port in two blocks: the first block's origin is gone (its namespace
    # ended), and neither collides with anything on the host
    rc, out, _ = check(tmp_path, doc(sh(ORIGIN), sh(ORIGIN + "\ncurl -s http://127.0.0.1:9000/index.txt")))
    assert rc == 0, out
