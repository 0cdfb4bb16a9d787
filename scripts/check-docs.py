#!/usr/bin/env python3
"""scripts/check-docs.py: every shell command shown in README.md and docs/ really works.

Usage: scripts/check-docs.py [--bin PATH] [--root DIR] [FILE.md ...]
(default: README.md, docs/*.md and docs/internals/*.md of the repository; --bin defaults to
build/mlcdn). Exits 0 when every check passes, 1 otherwise, naming file, line and problem.

What it checks (README.md, "Documentation checks", is the authors' guide):
* Every fenced block says what it holds: ```sh for commands; text, json, conf, ... otherwise.
  A block without a language, or one that is not sh but has lines starting with a command
  (mlcdn, build/mlcdn, make, curl, dig, bench/, scripts/), is an error.
* Every ```sh block is run, from the repository's root, by bash with `set -eE -o pipefail`,
  inside private mount, network and PID namespaces (`unshare`): the fixed ports the docs
  use cannot collide with anything, nothing leaves the machine, every process a block
  starts ends with it, and every file system is read-only but a fresh /tmp (a doc's
  `make install` fails instead of installing). A command that exits non-zero fails the block; curl runs with
  --fail-with-body, so an HTTP error fails it too. After a command sent to the background
  with `&`, the next line waits until the addresses of its --listen, --tls-listen, --admin,
  --http and --dns flags accept connections, or, without such flags (--config FILE), until
  it has opened its listening sockets; it fails if the process exited. A trailing comment made
  only of `Name: value` pairs (`# X-Cache: HIT, X-Cache-Level: L1`) is checked against the
  command's output.
* A ```sh block right after `<!-- not run: REASON -->` is not run (installs packages, needs
  data that is not in the repository, runs for minutes, is a synopsis with placeholders...);
  its commands are still checked: `mlcdn CMD` names a real command and each of its --flags
  appears in `mlcdn CMD --help`, `make` targets exist, scripts and repository paths exist.
* The same static checks apply to commands quoted inline (`mlcdn edge --mem 2G`, `make e2e`,
  `bench/dns/run.sh build/mlcdn`).

Set MLCDN_DOCS_HOST_NET=1 to run the blocks in the host's network namespace where
namespaces are not available (the commands then need their fixed ports free)."""
import argparse
import glob
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CMD_LANGS = {"sh", "bash", "shell"}
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([^\s`]*)\s*$")
NOT_RUN = re.compile(r"^\s*<!--\s*not run:\s*(.*?)\s*-->\s*$")
ANY_CHECK_COMMENT = re.compile(r"^\s*<!--\s*not[ -]run\b", re.I)
LOOKS_LIKE_CMD = re.compile(r"^(\$ )?(mlcdn|build/mlcdn|make|curl|dig) |^(\$ )?(bench|scripts)/")
INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
INLINE_CMD = re.compile(r"^([A-Z_][A-Z0-9_]*=\S+ )*(mlcdn [a-z<][\w<>-]*( |$)|build/mlcdn|make [a-z]|"
                        r"(bench|scripts)/\S+\.(sh|py)|(/usr/bin/)?python3 -m pytest )")
REPO_PATH = re.compile(r"^(\./)?(src|tests|docs|conf|assets|bench|scripts|cmake)(/|$)")
LISTEN_FLAGS = ("--listen", "--admin", "--http", "--dns", "--tls-listen")
OPERATORS = {"&&", "||", ";", "|", "&", "(", ")", ";;", "|&"}
REDIRECTS = {">", ">>", "<", "<<", ">&", "&>", "<&", "2>", "2>>"}
HEADER_PAIR = re.compile(r"^\s*([A-Za-z][A-Za-z0-9-]*):\s*(\S(?:.*\S)?)\s*$")
BLOCK_TIMEOUT = 120


class Problems:
    def __init__(self):
        self.items = []

    def add(self, where, msg):
        self.items.append("%s: %s" % (where, msg))


# ------------------------------------------------------------------------ markdown


class Block:
    def __init__(self, path, line, lang, lines, not_run):
        self.path, self.line, self.lang, self.lines, self.not_run = path, line, lang, lines, not_run


def read_blocks(path, rel, problems):
    """Fenced blocks of a markdown file, plus its text outside fences (for inline code)."""
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    blocks, prose = [], []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            prose.append((i + 1, lines[i]))
            i += 1
            continue
        indent, fence, lang = m.group(1), m.group(2), m.group(3).lower()
        start = i + 1
        body = []
        i += 1
        while i < len(lines) and not (lines[i].strip().startswith(fence[0] * len(fence))
                                      and lines[i].strip().strip(fence[0]) == ""):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        if i == len(lines):
            problems.add("%s:%d" % (rel, start), "fenced block is never closed")
        i += 1
        # the annotation is the nearest non-blank line above the fence
        j = start - 2
        while j >= 0 and not lines[j].strip():
            j -= 1
        note = lines[j] if j >= 0 else ""
        nr = NOT_RUN.match(note)
        not_run = nr.group(1) if nr else None
        where = "%s:%d" % (rel, start)
        if nr and not not_run:
            problems.add(where, "`<!-- not run: -->` needs a reason after the colon")
        elif not nr and ANY_CHECK_COMMENT.match(note):
            problems.add(where, "malformed annotation %r: write `<!-- not run: REASON -->`"
                         % note.strip())
            not_run = "(malformed annotation)"  # meant not to run: do not
        if not lang:
            problems.add(where, "fenced block without a language: use ```sh for commands, "
                         "```text (or json, conf...) for anything else")
        elif lang not in CMD_LANGS:
            if not_run is not None:
                problems.add(where, "`not run` annotates a ```%s block, which is never run" % lang)
            for k, b in enumerate(body):
                if LOOKS_LIKE_CMD.match(b):
                    problems.add("%s:%d" % (rel, start + 1 + k),
                                 "a command in a ```%s block: put commands in ```sh blocks" % lang)
                    break
        blocks.append(Block(rel, start, lang, body, not_run))
    return blocks, prose


HEREDOC = re.compile(r"<<(-?)\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")


def logical_lines(block):
    """(line number, code, trailing comment) per command line: continuations joined, a
    here-document kept whole (its body verbatim, after a newline)."""
    out, cur, first = [], "", None
    lines = block.lines
    k = 0
    while k < len(lines):
        n = block.line + 1 + k
        if first is None:
            first = n
        code, comment = split_comment(lines[k])
        k += 1
        if code.rstrip().endswith("\\"):
            cur += code.rstrip()[:-1] + " "
            continue
        cur += code
        m = HEREDOC.search(code)
        if m:
            strip_tabs, word = m.group(1) == "-", m.group(3)
            while k < len(lines):
                body = lines[k]
                k += 1
                cur += "\n" + body
                if (body.lstrip("\t") if strip_tabs else body) == word:
                    break
        if cur.strip():
            out.append((first, cur.strip(), comment))
        cur, first = "", None
    if cur.strip():
        out.append((first, cur.strip(), None))
    return out


def split_comment(line):
    """Splits off a shell comment: a # at the start of a word, outside quotes."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            if c == quote:
                quote = None
            elif c == "\\" and quote == '"':
                continue
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i], line[i + 1:].strip()
    return line, None


def simple_commands(code):
    """Word lists of the simple commands of a line (operators split, redirections dropped)."""
    lex = shlex.shlex(code, posix=True, punctuation_chars=";&|()<>")
    lex.whitespace_split = True
    lex.commenters = ""
    try:
        tokens = list(lex)
    except ValueError as e:
        return None, str(e)
    cmds, cur, skip_next = [], [], False
    for t in tokens:
        if skip_next:
            skip_next = False
            continue
        if t in OPERATORS:
            if cur:
                cmds.append(cur)
            cur = []
        elif t in REDIRECTS or re.fullmatch(r"\d?[<>]+&?", t):
            skip_next = True
            if cur and re.fullmatch(r"\d", cur[-1]):
                cur.pop()
        else:
            cur.append(t)
    if cur:
        cmds.append(cur)
    return cmds, None


# ------------------------------------------------------------------------ static checks


class Static:
    def __init__(self, root, mlcdn_bin, problems):
        self.root, self.bin, self.problems = root, mlcdn_bin, problems
        self.helps = {}
        self.subcmds = None
        self.targets = None

    def subcommands(self):
        if self.subcmds is None:
            out = subprocess.run([self.bin, "--help"], capture_output=True, text=True).stdout
            self.subcmds = set(re.findall(r"^  ([a-z][a-z0-9-]*)\s", out, re.M))
        return self.subcmds

    def help_text(self, sub):
        if sub not in self.helps:
            r = subprocess.run([self.bin, sub, "--help"], capture_output=True, text=True,
                               timeout=30)
            self.helps[sub] = r.stdout + r.stderr
        return self.helps[sub]

    def make_targets(self):
        if self.targets is None:
            with open(os.path.join(self.root, "Makefile")) as fh:
                text = fh.read()
            self.targets = set()
            for m in re.finditer(r"^([A-Za-z0-9_./$() -]+?)\s*:(?!=)", text, re.M):
                self.targets.update(m.group(1).split())
        return self.targets

    def check_path(self, where, word):
        if "..." in word or "<" in word or "$" in word:
            return  # a placeholder, not a path
        if not glob.glob(os.path.join(self.root, word)):
            self.problems.add(where, "no such file or directory: %s" % word)

    def check(self, where, code):
        code = code.split("\n", 1)[0]  # a here-document's body is data, not commands
        cmds, err = simple_commands(code)
        if cmds is None:
            self.problems.add(where, "cannot parse %r: %s" % (code, err))
            return
        for words in cmds:
            self.check_simple(where, words)

    def check_simple(self, where, words):
        while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
            words = words[1:]
        while words and words[0] in ("sudo", "env", "time", "exec", "nohup"):
            words = words[1:]
        if not words:
            return
        prog, args = words[0], words[1:]
        if prog == "mlcdn" or prog.endswith("/mlcdn"):
            self.check_mlcdn(where, args)
        elif prog == "make":
            for a in args:
                if a.startswith("-") or "=" in a:
                    continue
                if a not in self.make_targets():
                    self.problems.add(where, "make: no target '%s' in the Makefile" % a)
        elif "/" in prog and not re.match(r"^(\./)?build(-[a-z]+)?/", prog):
            paths = glob.glob(os.path.join(self.root, prog))  # bench/*/run.sh: every one
            if not paths or not all(os.path.isfile(p) for p in paths):
                self.problems.add(where, "no such file: %s" % prog)
            for p in paths:
                if os.path.isfile(p) and not os.access(p, os.X_OK):
                    self.problems.add(where, "%s is not executable" % os.path.relpath(p, self.root))
        for a in args:
            if REPO_PATH.match(a):
                self.check_path(where, a)

    def check_mlcdn(self, where, args):
        if not args or args[0] in ("--help", "-h", "--version", "help", "version"):
            return
        sub = args[0]
        if sub.startswith("<"):
            return
        if sub not in self.subcommands():
            self.problems.add(where, "mlcdn has no command '%s'" % sub)
            return
        help_text = self.help_text(sub)
        for a in args[1:]:
            for part in a.split("|"):
                flag = part.strip("[]()")
                m = re.match(r"^(--[A-Za-z0-9][A-Za-z0-9-]*|-[A-Za-z])(=|$|\])", flag)
                if not m:
                    continue
                name = m.group(1)
                if name in ("--help", "-h"):
                    continue
                if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(name), help_text):
                    self.problems.add(where, "mlcdn %s has no flag %s (not in `mlcdn %s --help`)"
                                      % (sub, name, sub))


# ------------------------------------------------------------------------ running


PRELUDE = r"""
set -eE -o pipefail
trap 'echo "docs-check: exit status $? at $__where" >&2' ERR
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
curl() { command curl --fail-with-body --max-time 30 "$@"; }
__listeners() { cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk '$4 == "0A"' | wc -l; }
__ready() {  # BASE PID [ADDR:PORT...]: the background command listens (on every address given;
             # else on as many new sockets as it opens within 0.3 s of its first)
    local base=$1 pid=$2 ok a i n last=-1 same=0
    shift 2
    for i in $(seq 200); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "docs-check: the command sent to the background exited" >&2
            return 1
        fi
        if [ $# -gt 0 ]; then
            ok=1
            for a in "$@"; do
                (exec 3<>"/dev/tcp/${a%:*}/${a##*:}") 2>/dev/null || ok=0
            done
            [ "$ok" = 1 ] && return 0
        else
            n=$(__listeners)
            if [ "$n" -gt "$base" ] && [ "$n" = "$last" ]; then
                same=$((same + 1))
                [ "$same" -ge 6 ] && return 0
            else
                same=0
            fi
            last=$n
        fi
        sleep 0.05
    done
    echo "docs-check: the command sent to the background is not listening after 10 s" >&2
    return 1
}
__expect() {  # OUTPUT 'Name: value'...: each pair is in the output (case-insensitive names)
    local out=$1 p
    shift
    for p in "$@"; do
        if ! printf '%s\n' "$out" | tr -d '\r' | grep -qixF -- "$p"; then
            echo "docs-check: the output has no '$p' line" >&2
            return 1
        fi
    done
}
"""


def listen_addrs(code):
    """host:port of the listening flags of a backgrounded mlcdn command (IPv4 only)."""
    out = []
    words = code.split()
    for i, w in enumerate(words):
        for f in LISTEN_FLAGS:
            v = None
            if w == f and i + 1 < len(words):
                v = words[i + 1]
            elif w.startswith(f + "="):
                v = w[len(f) + 1:]
            if v and re.fullmatch(r"[0-9.]+:\d+", v):
                host, port = v.rsplit(":", 1)
                if port != "0":
                    out.append("%s:%s" % ("127.0.0.1" if host == "0.0.0.0" else host, port))
    return out


def expectations(comment):
    """Name: value pairs of a trailing comment made only of such pairs, or []."""
    if not comment:
        return []
    pairs = []
    for part in re.split(r",\s*(?=[A-Za-z][A-Za-z0-9-]*:\s)", comment):
        m = HEADER_PAIR.match(part)
        if not m:
            return []
        pairs.append("%s: %s" % (m.group(1), m.group(2)))
    return pairs


def block_script(block, mlcdn_bin):
    # docs may say plain `mlcdn` (installed) or build/mlcdn: both are the binary under test
    parts = [PRELUDE, "mlcdn() { %s \"$@\"; }\nexport -f mlcdn\n" % shlex.quote(mlcdn_bin)]
    for n, code, comment in logical_lines(block):
        where = "%s:%d" % (block.path, n)
        parts.append("__where=%s\nprintf '+ %%s\\n' %s\n" % (shlex.quote(where), shlex.quote(code)))
        # the binary under test stands in for the docs' build/mlcdn
        code = re.sub(r"(?<![\w./-])build/mlcdn(?![\w.-])", lambda _: shlex.quote(mlcdn_bin), code)
        exp = expectations(comment)
        if code.endswith("&") and not code.endswith("&&"):
            addrs = listen_addrs(code)
            parts.append("__base=$(__listeners)\n%s\n__ready \"$__base\" $! %s\n"
                         % (code, " ".join(addrs)))
        elif exp:
            parts.append("__out=$( %s )\nprintf '%%s\\n' \"$__out\"\n__expect \"$__out\" %s\n"
                         % (code, " ".join(shlex.quote(p) for p in exp)))
        else:
            parts.append(code + "\n")
    return "".join(parts)


# Runs inside the namespaces, as their root, before the block (whose script is "$0"; the
# other arguments are directories the block must still see, the repository and the
# binary's): the loopback up, every file system read-only (a doc's `make install` or
# `> /etc/...` fails instead of changing this machine), fresh empty /tmp and /dev/shm for
# what blocks write, with the kept directories that lived there bound back, read-only.
SANDBOX = r"""
set -e
exec 3<"$0"
ip link set lo up
mount --make-rprivate /
while read -r mp; do
    mp=$(printf '%b' "$mp")
    case "$mp" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
    mount -o remount,bind,ro "$mp" || { echo "docs-check: cannot make $mp read-only" >&2; exit 1; }
done < <(awk '{print $5}' /proc/self/mountinfo | sort -u)
keep=() fds=()
for d in "$@"; do
    case "$d" in /tmp/*|/dev/shm/*) exec {fd}<"$d"; keep+=("$d"); fds+=("$fd") ;; esac
done
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
for i in "${!keep[@]}"; do
    mkdir -p "${keep[$i]}"
    mount --no-canonicalize --bind "/proc/self/fd/${fds[$i]}" "${keep[$i]}"
    mount -o remount,bind,ro "${keep[$i]}"
    eval "exec ${fds[$i]}<&-"
done
set +e
exec bash /dev/fd/3
"""


def namespace_prefix():
    """(the command that runs a block in its own mount, network and PID namespaces, None)
    or (None, why not). An empty command runs blocks unconfined."""
    if os.environ.get("MLCDN_DOCS_HOST_NET") == "1":
        return [], None
    base = ["unshare", "--mount", "--net", "--pid", "--fork", "--kill-child"]
    if os.getuid() != 0:
        base.insert(1, "--map-root-user")
    with tempfile.NamedTemporaryFile("w", suffix=".sh", prefix="docs-check-") as f:
        f.write("touch /tmp/probe && ! touch /usr/probe 2>/dev/null\n")
        f.flush()
        try:
            probe = subprocess.run(base + ["bash", "-c", SANDBOX, f.name, ROOT],
                                   capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, str(e)
    if probe.returncode != 0:
        return None, probe.stderr.strip() or "the sandbox probe failed"
    return base, None


def run_block(block, mlcdn_bin, prefix, env, problems, verbose):
    script = block_script(block, mlcdn_bin)
    with tempfile.NamedTemporaryFile("w", suffix=".sh", prefix="docs-check-", delete=False) as f:
        f.write(script)
        path = f.name
    where = "%s:%d" % (block.path, block.line)
    keep = [ROOT, os.path.dirname(os.path.realpath(mlcdn_bin))]
    argv = prefix + ["bash", "-c", SANDBOX, path] + keep if prefix else ["bash", path]
    t0 = time.monotonic()
    try:
        p = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True)
        try:
            out, _ = p.communicate(timeout=BLOCK_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
            out, _ = p.communicate()
            problems.add(where, "the block ran over %d s\n%s" % (BLOCK_TIMEOUT, tail(out)))
            return
    finally:
        os.unlink(path)
    took = time.monotonic() - t0
    if p.returncode != 0:
        problems.add(where, "the block failed (exit status %d)\n%s" % (p.returncode, tail(out)))
    elif verbose:
        print("docs-check: %s ran (%.1f s)" % (where, took))


def tail(out, n=40):
    lines = out.decode("utf-8", "replace").rstrip("\n").split("\n")
    return "\n".join("    | " + ln for ln in lines[-n:])


# ------------------------------------------------------------------------ main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "mlcdn"))
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("files", nargs="*")
    a = ap.parse_args()
    mlcdn_bin = os.path.abspath(a.bin)
    if not os.access(mlcdn_bin, os.X_OK):
        print("docs-check: %s is not an executable (build first, or pass --bin)" % a.bin,
              file=sys.stderr)
        return 2
    files = a.files or ([os.path.join(ROOT, "README.md")] +
                        sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))) +
                        sorted(glob.glob(os.path.join(ROOT, "docs", "internals", "*.md"))))
    problems = Problems()
    static = Static(ROOT, mlcdn_bin, problems)
    to_run, nstatic, ninline = [], 0, 0
    for f in files:
        rel = os.path.relpath(f, ROOT) if os.path.abspath(f).startswith(ROOT + os.sep) else f
        blocks, prose = read_blocks(f, rel, problems)
        for b in blocks:
            if b.lang not in CMD_LANGS:
                continue
            before = len(problems.items)
            for n, code, _ in logical_lines(b):
                static.check("%s:%d" % (rel, n), code)
            if b.not_run is None and len(problems.items) == before:
                to_run.append(b)
            elif b.not_run is not None:
                nstatic += 1
        for n, text in prose:
            for m in INLINE.finditer(text):
                span = m.group(1).strip()
                if INLINE_CMD.match(span):
                    static.check("%s:%d" % (rel, n), span)
                    ninline += 1

    prefix = []
    if to_run:
        prefix, why = namespace_prefix()
        if prefix is None:
            print("docs-check: cannot make the sandbox (private mount, network and PID "
                  "namespaces: %s); run as root or allow unprivileged user namespaces; "
                  "MLCDN_DOCS_HOST_NET=1 runs the blocks unconfined, on a throwaway machine "
                  "only" % why, file=sys.stderr)
            return 2
    env = dict(os.environ, TMPDIR="/tmp")
    for b in to_run:
        run_block(b, mlcdn_bin, prefix, env, problems, a.verbose)

    for p in problems.items:
        print("docs-check: " + p, file=sys.stderr)
    print("docs-check: %d files, %d sh blocks run, %d checked without running, %d inline "
          "commands checked: %s" % (len(files), len(to_run), nstatic, ninline,
                                     "%d problems" % len(problems.items) if problems.items
                                     else "ok"))
    return 1 if problems.items else 0


if __name__ == "__main__":
    sys.exit(main())
