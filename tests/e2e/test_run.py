"""`mlcdn run`: the whole CDN on one machine with embedded defaults."""
import socket

from mlcdn_proc import mlcdn, request  # noqa: F401


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
