"""mlcdn router out of file descriptors: a flood of idle DNS-over-TCP clients (and HTTP
API clients at the same time) past RLIMIT_NOFILE, all gone again. The router must answer
DNS over TCP and UDP and its HTTP API again, and idle meanwhile: its DNS TCP listener
pauses accepting instead of spinning on accept(2) at the limit."""
import threading
import time

import fdlimit
from router_util import (ADDR_DC, SIX_DCS, HealthEdges, Router, dig, edge_specs,
                         make_test_mmdb, wait_for)

ZONE = "cdn.example.test"
# Low enough that the flood takes every descriptor, high enough for the router's own
# (about 30 with two HTTP workers and two UDP threads).
NOFILE = 96


def _health_ok(r):
    try:
        return r.http("/health")[0] == 200
    except OSError:
        return False


def test_out_of_descriptors_dns_tcp_pauses_and_recovers(tmp_path):
    db = make_test_mmdb(str(tmp_path / "test-city.mmdb"))
    health = HealthEdges([n for n, _, _, _ in SIX_DCS])
    r = Router(ZONE, db, edge_specs(health), ["--name", "edge", "--http-threads", "2",
                                              "--udp-threads", "2"],
               nofile=NOFILE)
    try:
        assert wait_for(lambda: all(e["healthy"] for e in r.json("/edges")["edges"]), 10)
        for _ in range(3):
            # The HTTP workers accept on their own threads while the DNS listener is at the
            # limit: they take the descriptors the main loop frees.
            t = threading.Thread(target=fdlimit.flood,
                                 args=("127.0.0.1", r.http_port, NOFILE * 2))
            t.start()
            assert fdlimit.flood("127.0.0.1", r.dns_port, NOFILE * 6) > NOFILE
            t.join()
            res = dig(r.dns_port, "edge." + ZONE, "A", "+tcp", "+subnet=181.0.3.0/24",
                      "+time=5")
            assert res.status == "NOERROR", res.text
            assert ADDR_DC[res.addrs("A")[0]] == "saopaulo"
            res = dig(r.dns_port, "edge." + ZONE, "A", "+subnet=181.0.3.0/24")
            assert res.status == "NOERROR", res.text
            assert wait_for(lambda: _health_ok(r), 20)
            # Idle now: a main loop spinning on accept() would burn a core.
            before = fdlimit.cpu_seconds(r.proc.pid)
            time.sleep(2)
            assert fdlimit.cpu_seconds(r.proc.pid) - before < 0.5
        m = r.http("/metrics")[1]
        assert fdlimit.counter(m, "mlcdn_router_dns_tcp_accept_paused_total") > 0
        # Logged once per episode (a round, give or take), not once per pause.
        assert 1 <= r.text().count("DNS TCP accepting paused") <= 8
    finally:
        rc = r.stop()
        r.cleanup()
        health.close()
    assert rc == 0, r.args
