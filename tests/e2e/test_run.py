"""`mlcdn run`: the whole CDN on one machine with embedded defaults."""
import os
import socket
import subprocess

from mlcdn_proc import mlcdn, request  # noqa: F401

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def test_run_starts_origin_and_edge_and_stops_them(mlcdn):
    edge, admin, origin = free_port(), free_port(), free_port()
    p = mlcdn("run", ["--listen", "127.0.0.1:%d" % edge, "--admin", "127.0.0.1:%d" % admin,
                      "--origin-listen", "127.0.0.1:%d" % origin, "--latency", "50ms"],
              ready_pattern=r"admin +(?P<url>http://\S+)")
    base = "http://127.0.0.1:%d" % edge
    r1 = request("GET", base + "/models/ranker/3/config.json")
    assert r1.status == 200 and r1.headers["X-Cache"] == "MISS"
    r2 = request("GET", base + "/models/ranker/3/config.json")
    assert r2.headers["X-Cache"] == "HIT" and r2.body == r1.body
    assert request("GET", base + "/api/private.json").headers["X-Cache"] == "MISS"
    h = request("GET", "http://127.0.0.1:%d/health" % admin).json()
    assert h["status"] == "ok" and h["region"] == "local-1"
    assert p.stop() == 0
    for port in (edge, admin, origin):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            raise AssertionError("port %d still open after stop" % port)
        except OSError:
            pass


def test_run_with_the_router(mlcdn, tmp_path):
    db = tmp_path / "geo.mmdb"
    subprocess.check_call(["/usr/bin/python3", os.path.join(HERE, "mmdb_writer.py"), str(db),
                           "127.0.0.0/8=53.35,-6.26,IE,Dublin"])
    edge, admin, origin, dns, rhttp = (free_port() for _ in range(5))
    p = mlcdn("run", ["--listen", "127.0.0.1:%d" % edge, "--admin", "127.0.0.1:%d" % admin,
                      "--origin-listen", "127.0.0.1:%d" % origin, "--geoip", str(db),
                      "--dns", "127.0.0.1:%d" % dns, "--router-http", "127.0.0.1:%d" % rhttp],
              ready_pattern=r"admin +(?P<url>http://\S+)")
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(dns), "cdn.mlcdn.test", "+short",
                          "+time=2", "+tries=3"], capture_output=True, text=True, timeout=20)
    assert out.stdout.strip() == "127.0.0.1"
    r = request("GET", "http://127.0.0.1:%d/route?ip=127.0.0.1" % rhttp).json()
    assert r["edge"] == "local-1"
    assert p.stop() == 0
