"""Packaging: `make install` (cmake --install) into a DESTDIR and into a prefix, the man pages
generated from --help, the systemd units (systemd-analyze verify and security), the
configuration the units read, the .deb built by CPack, and the container files (Dockerfile
and compose file, checked against the binary without a Docker daemon).

Every test reuses the build the binary under test comes from ($MLCDN_BIN's directory):
nothing is compiled here."""
import os
import re
import shutil
import subprocess

import pytest
import yaml

from mlcdn_proc import binary, mlcdn  # noqa: F401 (fixture)
from router_util import Router, make_test_mmdb

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DAEMONS = ("edge", "router", "origin")


def build_dir():
    d = os.path.dirname(os.path.abspath(binary()))
    if not os.path.exists(os.path.join(d, "cmake_install.cmake")):
        pytest.skip("%s is not in a CMake build tree: nothing to install from" % binary())
    return d


def run(argv, env=None, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, env=env, **kw)
    assert r.returncode == 0, "%s: exit %d\n%s%s" % (" ".join(argv), r.returncode, r.stdout,
                                                     r.stderr)
    return r


def commands():
    """The subcommands `mlcdn --help` lists (src/main.c's table)."""
    out = run([binary(), "--help"]).stdout
    return re.findall(r"^  (\w+) +\S", out.split("Commands:", 1)[1], re.M)


def flags(cmd):
    """Every --flag that `mlcdn CMD --help` documents."""
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", run([binary(), cmd, "--help"]).stdout))


@pytest.fixture(scope="module")
def destdir(tmp_path_factory):
    """`DESTDIR=... cmake --install BUILD --prefix /usr`: the tree a distribution packages."""
    d = tmp_path_factory.mktemp("destdir")
    run(["cmake", "--install", build_dir(), "--prefix", "/usr"], env=dict(os.environ, DESTDIR=str(d)))
    return d


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    """`cmake --install BUILD --prefix DIR`: units then name DIR/bin/mlcdn, which exists."""
    d = tmp_path_factory.mktemp("prefix")
    run(["cmake", "--install", build_dir(), "--prefix", str(d)])
    return d


def test_install_tree(destdir):
    pages = ["mlcdn"] + ["mlcdn-" + c for c in commands()]
    want = ["usr/bin/mlcdn", "usr/share/doc/mlcdn/README.md",
            "usr/share/doc/mlcdn/docs/edge.md", "usr/share/doc/mlcdn/examples/edge.conf",
            "usr/share/doc/mlcdn/examples/prometheus/mlcdn-alerts.yml",
            "usr/share/doc/mlcdn/examples/grafana/mlcdn.json"]
    want += ["usr/share/man/man1/%s.1" % p for p in pages]
    want += ["etc/mlcdn/%s.conf" % d for d in DAEMONS]
    want += ["usr/lib/systemd/system/mlcdn-%s.service" % d for d in DAEMONS]
    missing = [w for w in want if not os.path.isfile(destdir / w)]
    assert not missing, missing
    # Exactly one page per command: a command added to src/main.c needs its page.
    assert sorted(os.listdir(destdir / "usr/share/man/man1")) == sorted(p + ".1" for p in pages)
    assert os.access(destdir / "usr/bin/mlcdn", os.X_OK)
    r = run([str(destdir / "usr/bin/mlcdn"), "--help"])
    assert "Commands:" in r.stdout and "edge" in r.stdout
    assert re.match(r"mlcdn \d+\.\d+\.\d+$", run([str(destdir / "usr/bin/mlcdn"), "--version"]).stdout.strip())
    for d in DAEMONS:
        unit = (destdir / ("usr/lib/systemd/system/mlcdn-%s.service" % d)).read_text()
        assert ("\nExecStart=/usr/bin/mlcdn %s --config /etc/mlcdn/%s.conf $MLCDN_%s_FLAGS\n"
                % (d, d, d.upper())) in unit
        assert "@MLCDN_" not in unit


def test_man_pages_render_and_list_every_flag(destdir):
    man1 = destdir / "usr/share/man/man1"
    env = dict(os.environ, MANWIDTH="100", MAN_KEEP_FORMATTING="0")
    for cmd in [""] + commands():
        page = man1 / ("mlcdn-%s.1" % cmd if cmd else "mlcdn.1")
        r = run(["man", "-l", str(page)], env=env)
        text = re.sub(r".\x08", "", r.stdout)  # overstrike (bold) as plain text
        head = "MLCDN-%s(1)" % cmd.upper() if cmd else "MLCDN(1)"
        assert text.lstrip().startswith(head), text[:200]
        assert "\nNAME\n" in text and "\nSEE ALSO\n" in text
        if cmd:
            # Generated from --help: every flag the command takes is on its page.
            missing = [f for f in flags(cmd) if f not in text]
            assert not missing, "%s lacks %s" % (page.name, missing)
            line = re.search(r"^  %s +(.+)$" % cmd, run([binary(), "--help"]).stdout, re.M)
            assert line.group(1) in " ".join(text.split())


def test_units_pass_systemd_analyze(prefix):
    units = prefix / "lib/systemd/system"
    # verify resolves Documentation=man:... through MANPATH: the pages must be installed.
    env = dict(os.environ, MANPATH=str(prefix / "share/man"))
    for d in DAEMONS:
        unit = str(units / ("mlcdn-%s.service" % d))
        r = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True,
                           env=env)
        assert r.returncode == 0 and r.stderr == "", r.stderr
        r = run(["systemd-analyze", "security", "--offline=yes", unit])
        score = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", r.stdout).group(1))
        assert score <= 2.0, r.stdout  # systemd rates <= 2 "OK"; a default unit rates 9.6
        text = open(unit).read()
        for line in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "DynamicUser=yes",
                     "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                     "NoNewPrivileges=yes", "SystemCallFilter=@system-service"):
            assert "\n%s\n" % line in text, (d, line)
        caps = "CAP_NET_BIND_SERVICE" if d == "router" else ""
        assert "\nCapabilityBoundingSet=%s\n" % caps in text
        assert "\nAmbientCapabilities=%s\n" % caps in text
    assert "\nCacheDirectory=mlcdn/edge\n" in (units / "mlcdn-edge.service").read_text()
    # A unit systemd would refuse fails this check (the test can fail).
    bad = prefix / "bad.service"
    bad.write_text("[Service]\nType=notify\nExecStart=%s/bin/nonexistent\n" % prefix)
    assert subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True,
                          env=env).returncode != 0


def test_installed_configuration_starts_each_daemon(destdir, mlcdn, tmp_path):
    """The /etc files the units read are valid: each daemon starts from its file, with only
    the addresses and directories of this test given as flags (flags win)."""
    etc = destdir / "etc/mlcdn"
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_text("from the origin\n")
    origin = mlcdn("origin", ["--config", etc / "origin.conf", "--listen", "127.0.0.1:0",
                              "--root", root])
    edge = mlcdn("edge", ["--config", etc / "edge.conf", "--listen", "127.0.0.1:0",
                          "--admin", "127.0.0.1:0", "--origin", origin.url,
                          "--disk-dir", tmp_path / "l2"],
                 ready_pattern=r"listening on (?P<url>http://\S+) admin=(?P<admin>\S+)")
    r = edge.get("/a.txt")
    assert r.status == 200 and r.body == b"from the origin\n"
    # The router's file leaves zone, database and edges to the operator, and says so.
    r = subprocess.run([binary(), "router", "--config", str(etc / "router.conf"),
                        "--dns", "127.0.0.1:0", "--http", "127.0.0.1:0"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "--zone is required" in r.stderr, r.stderr
    geo = make_test_mmdb(str(tmp_path / "geo.mmdb"))
    router = Router("cdn.test", geo, ["e1=51.5,-0.1,127.0.0.1,%s/health" % edge.ready["admin"]],
                    extra=["--config", str(etc / "router.conf")])
    try:
        assert [e["name"] for e in router.json("/edges")["edges"]] == ["e1"]
    finally:
        router.cleanup()


def test_second_install_keeps_edited_configuration(tmp_path):
    env = dict(os.environ, DESTDIR=str(tmp_path))
    run(["cmake", "--install", build_dir(), "--prefix", "/usr"], env=env)
    conf = tmp_path / "etc/mlcdn/edge.conf"
    conf.write_text(conf.read_text() + 'region = "edited";\n')
    r = run(["cmake", "--install", build_dir(), "--prefix", "/usr"], env=env)
    assert "Keeping: %s" % conf in r.stdout
    assert conf.read_text().endswith('region = "edited";\n')


def test_deb_package(tmp_path):
    b = build_dir()
    run(["cpack", "-G", "DEB", "--config", os.path.join(b, "CPackConfig.cmake"), "-B",
         str(tmp_path)], cwd=str(tmp_path))
    debs = [f for f in os.listdir(tmp_path) if f.endswith(".deb")]
    assert len(debs) == 1, os.listdir(tmp_path)
    deb = str(tmp_path / debs[0])
    info = run(["dpkg-deb", "-I", deb]).stdout
    fields = dict(re.findall(r"^ (\w[\w-]*): (.*)$", info, re.M))
    assert fields["Package"] == "mlcdn"
    # Dependencies computed from the binary by dpkg-shlibdeps, one per linked library.
    depends = [d.split()[0] for d in fields["Depends"].split(", ")]
    for pkg in ("libc6", "libuv1", "libcurl4", "libhiredis0.14", "libssl3", "libconfig9",
                "libnghttp2-14", "libncursesw6"):
        assert pkg in depends, fields["Depends"]
    ctrl = tmp_path / "ctrl"
    run(["dpkg-deb", "-e", deb, str(ctrl)])
    assert sorted((ctrl / "conffiles").read_text().split()) == \
        sorted("/etc/mlcdn/%s.conf" % d for d in DAEMONS)
    listing = run(["dpkg-deb", "-c", deb]).stdout
    for path in ["./usr/bin/mlcdn", "./usr/share/man/man1/mlcdn-edge.1",
                 "./usr/share/doc/mlcdn/docs/edge.md", "./etc/mlcdn/router.conf"] + \
            ["./usr/lib/systemd/system/mlcdn-%s.service" % d for d in DAEMONS]:
        assert re.search(r" %s$" % re.escape(path), listing, re.M), path
    root = tmp_path / "root"
    run(["dpkg", "-x", deb, str(root)])
    assert "ExecStart=/usr/bin/mlcdn edge --config /etc/mlcdn/edge.conf" in \
        (root / "usr/lib/systemd/system/mlcdn-edge.service").read_text()
    assert run([str(root / "usr/bin/mlcdn"), "--version"]).stdout.startswith("mlcdn ")


# ---- container files (no Docker daemon needed) ----

def dockerfile_stages():
    """{stage index: [apt packages]} of packaging/docker/Dockerfile's apt-get installs."""
    text = open(os.path.join(REPO, "packaging/docker/Dockerfile")).read().replace("\\\n", " ")
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    out = []
    for s in stages:
        pkgs = []
        for m in re.finditer(r"apt-get install -y --no-install-recommends ([^&]+)", s):
            pkgs += m.group(1).split()
        out.append(pkgs)
    return out


def test_dockerfile_runtime_packages_cover_the_binary():
    build, runtime = dockerfile_stages()
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(\S+)\]",
                        run(["readelf", "-d", binary()]).stdout)
    paths = dict(re.findall(r"^\s*(\S+) => (\S+)", run(["ldd", binary()]).stdout, re.M))
    owners = {}
    for lib in needed:
        path = paths[lib]
        r = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
        if r.returncode != 0:  # merged /usr: dpkg knows the /usr/lib name
            r = run(["dpkg", "-S", os.path.realpath(path)])
        owners[lib] = r.stdout.split(":")[0]
    # libc6 is in every Debian image; everything else must be installed by the stage.
    missing = {lib: p for lib, p in owners.items() if p != "libc6" and p not in runtime}
    assert not missing, "runtime stage lacks %s" % missing
    assert not [p for p in runtime if p.endswith("-dev")]
    # The build stage has every -dev package the build needs (scripts/install-deps.sh).
    deps = open(os.path.join(REPO, "scripts/install-deps.sh")).read()
    build_pkgs = re.search(r'BUILD_PKGS="([^"]+)"', deps).group(1).split()
    wanted = [p for p in build_pkgs if p.endswith("-dev") and not p.startswith("libclang")]
    assert not [p for p in wanted if p not in build], build
    # Both lists name real packages of this Debian release: the ones this machine built and
    # linked the binary with (install-deps.sh installed them), so a typo or a renamed
    # package (libssl3 -> libssl3t64) fails here rather than in `docker build`.
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Status}\\n"] + build + runtime,
                       capture_output=True, text=True)
    installed = {l.split()[0] for l in r.stdout.splitlines() if l.endswith("install ok installed")}
    assert not [p for p in build + runtime if p not in installed], r.stderr


def test_dockerfile_build_stage_steps_after_the_compile(tmp_path):
    """The build stage's steps after the compile, run here with /build and /out pointing at
    this build and a temporary tree: the staged install and the demo city database."""
    text = open(os.path.join(REPO, "packaging/docker/Dockerfile")).read().replace("\\\n", " ")
    build_stage = re.split(r"^FROM ", text, flags=re.M)[1]
    runs = re.findall(r"^RUN (.*)$", build_stage, re.M)
    compile_step = [r for r in runs if "cmake --build /build" in r]
    assert len(compile_step) == 1
    install = re.search(r"DESTDIR=/out cmake --install /build[^&]*", compile_step[0]).group(0)
    out = str(tmp_path / "out")
    steps = [install] + runs[runs.index(compile_step[0]) + 1:]
    for step in steps:
        step = step.replace("/out", out).replace("/build", build_dir())
        run(["sh", "-ec", step], cwd=REPO)
    assert os.access(os.path.join(out, "usr/bin/mlcdn"), os.X_OK)
    with open(os.path.join(out, "usr/share/mlcdn/demo-geo.mmdb"), "rb") as f:
        assert b"\xab\xcd\xefMaxMind.com" in f.read()
    # The compose file's router command names this database.
    compose = open(os.path.join(REPO, "packaging/docker/compose.yaml")).read()
    assert "/usr/share/mlcdn/demo-geo.mmdb" in compose


def test_dockerfile_runs_unprivileged_from_slim_images():
    text = open(os.path.join(REPO, "packaging/docker/Dockerfile")).read()
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(froms) == 2 and all(f.startswith("debian:") and f.endswith("-slim") for f in froms)
    assert re.search(r"^USER mlcdn$", text, re.M)
    assert "COPY --from=build" in text


def test_compose_services_use_real_flags():
    with open(os.path.join(REPO, "packaging/docker/compose.yaml")) as f:
        compose = yaml.safe_load(f)
    services = compose["services"]
    assert {"origin", "router"} <= set(services)
    edges = [n for n, s in services.items() if s.get("command", [""])[0] == "edge"]
    assert len(edges) == 4, edges
    # A Redis per region, shared by that region's edges only.
    redis_of = {}
    for e in edges:
        cmd = services[e]["command"]
        region, redis = cmd[cmd.index("--region") + 1], cmd[cmd.index("--redis") + 1]
        assert redis.split("//")[1].split(":")[0] in services
        assert redis_of.setdefault(region, redis) == redis, (e, region)
    assert len(set(redis_of.values())) == len(redis_of) == 3
    known = {}
    for name, svc in services.items():
        if svc.get("image") != "mlcdn:latest":
            continue
        cmd = svc["command"]
        if cmd[0] not in known:
            known[cmd[0]] = flags(cmd[0])
        unknown = [a for a in cmd[1:] if a.startswith("--") and a not in known[cmd[0]]]
        assert not unknown, "%s: %s not in `mlcdn %s --help`" % (name, unknown, cmd[0])
        for dep in svc.get("depends_on", []):
            assert dep in services
    # The router's edges are the edge services' fixed addresses.
    addrs = {services[e]["networks"]["cdn"]["ipv4_address"] for e in edges}
    router = services["router"]["command"]
    specs = [router[i + 1] for i, a in enumerate(router) if a == "--edge"]
    assert {s.split(",")[2] for s in specs} == addrs
    assert "build" in services["origin"]


def test_compose_config_with_docker_cli():
    """`docker compose config` validates the file against the Compose specification; it
    needs the compose plugin (not the daemon)."""
    if not shutil.which("docker") or subprocess.run(
            ["docker", "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("no `docker compose` on this machine: the compose file was checked by "
                    "test_compose_services_use_real_flags only")
    run(["docker", "compose", "-f", os.path.join(REPO, "packaging/docker/compose.yaml"),
         "config", "--quiet"])
