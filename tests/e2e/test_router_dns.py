"""mlcdn router, DNS and HTTP API end to end: real `dig`, a generated test mmdb, stand-in
edge health endpoints (router_util.HealthEdges)."""
import os
import socket
import struct
import time

import pytest

from router_util import (ADDR_DC, SIX_DCS, TEST_NETS, HealthEdges, Router, dig, edge_specs,
                         make_test_mmdb, wait_for)

ZONE = "cdn.example.test"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("router")
    db = make_test_mmdb(str(d / "test-city.mmdb"))
    health = HealthEdges([n for n, _, _, _ in SIX_DCS])
    edges = edge_specs(health) + ["v6tokyo=35.68,139.69,fd00::1,%s" % health.url("tokyo")]
    r = Router(ZONE, db, edges, ["--name", "edge", "--static", "ns1=127.0.0.1",
                                 "--static", "static=127.0.0.9"])
    # every edge is up after the first round of checks
    assert wait_for(lambda: all(e["healthy"] for e in r.json("/edges")["edges"]), 5)
    yield r, health, db
    rc = r.stop()  # a clean exit (0), also under ASan/LSan when MLCDN_BIN is a sanitizer build
    r.cleanup()
    health.close()
    assert rc == 0, r.args


def test_nearest_edge_by_region(setup):
    r, _, _ = setup
    for net, _, _, cc, city, dc in TEST_NETS:
        if ":" in net:
            continue
        ip = net.split("/")[0][:-1] + "7"  # an address inside the /16
        res = dig(r.dns_port, "edge." + ZONE, "A", "+subnet=%s/24" % ip)
        assert res.status == "NOERROR", res.text
        assert ADDR_DC[res.addrs("A")[0]] == dc, (city, res.text)
        assert res.answers[0][1] == "20"  # default TTL


def test_ecs_scope_and_resolver_address(setup):
    r, _, _ = setup
    res = dig(r.dns_port, "edge." + ZONE, "A", "+subnet=49.165.200.39/24")
    # the network in the database is a /16: the answer is valid for all of it
    assert res.ecs == ("49.165.200.0", 24, 16), res.text
    # IPv6 ECS
    res = dig(r.dns_port, "edge." + ZONE, "A", "+subnet=2001:db8:10::/56")
    assert ADDR_DC[res.addrs("A")[0]] == "tokyo"
    assert res.ecs[1:] == (56, 48)
    # no ECS: the resolver's own address (127.0.0.1, London in the test database)
    res = dig(r.dns_port, "edge." + ZONE, "A")
    assert res.ecs is None
    assert ADDR_DC[res.addrs("A")[0]] == "london"
    # ECS /0 (opt-out): resolver's address, scope 0
    res = dig(r.dns_port, "edge." + ZONE, "A", "+subnet=0.0.0.0/0")
    assert ADDR_DC[res.addrs("A")[0]] == "london"
    assert res.ecs[2] == 0
    # a country-only record gets the country's location (DE → london)
    res = dig(r.dns_port, "edge." + ZONE, "A", "+subnet=5.1.2.0/24")
    assert ADDR_DC[res.addrs("A")[0]] == "london"


def test_tcp_bufsize_case_and_records(setup):
    r, _, _ = setup
    res = dig(r.dns_port, "EdGe.Cdn.Example.TEST", "A", "+tcp", "+subnet=181.0.3.0/24")
    assert res.status == "NOERROR"
    assert res.answers[0][0] == "EdGe.Cdn.Example.TEST."  # case preserved
    assert ADDR_DC[res.addrs("A")[0]] == "saopaulo"
    res = dig(r.dns_port, ZONE, "A", "+bufsize=512", "+subnet=203.86.1.0/24")
    assert ADDR_DC[res.addrs("A")[0]] == "sydney"  # the apex is routed too
    assert res.udp == 1232
    res = dig(r.dns_port, ZONE, "A", "+noedns")
    assert res.udp is None and res.status == "NOERROR"
    res = dig(r.dns_port, "edge." + ZONE, "AAAA")
    assert res.addrs("AAAA") == ["fd00::1"]
    res = dig(r.dns_port, ZONE, "SOA", "+tcp")
    assert res.answers[0][2] == "SOA" and "ns1." + ZONE in res.answers[0][3]
    res = dig(r.dns_port, ZONE, "NS")
    assert res.addrs("NS") == ["ns1.%s." % ZONE]
    assert dig(r.dns_port, "ns1." + ZONE, "A").addrs("A") == ["127.0.0.1"]
    assert dig(r.dns_port, "static." + ZONE, "A").addrs("A") == ["127.0.0.9"]
    res = dig(r.dns_port, "edge." + ZONE, "TXT")  # NODATA
    assert res.status == "NOERROR" and not res.answers and res.authority == 1


def test_refused_nxdomain(setup):
    r, _, _ = setup
    res = dig(r.dns_port, "www.example.org", "A")
    assert res.status == "REFUSED" and "aa" not in res.flags
    res = dig(r.dns_port, "xcdn.example.test", "A")
    assert res.status == "REFUSED"
    res = dig(r.dns_port, "nope." + ZONE, "A", "+tcp")
    assert res.status == "NXDOMAIN" and "aa" in res.flags and res.authority == 1
    res = dig(r.dns_port, "a.edge." + ZONE, "A")
    assert res.status == "NXDOMAIN"


def _udp(port, pkt, timeout=1.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    s.sendto(pkt, ("127.0.0.1", port))
    try:
        return s.recv(65535)
    except socket.timeout:
        return None
    finally:
        s.close()


def _q(name, qtype=1, qd=1, extra=b"", ar=0, flags=0x0100):
    wire = b"".join(bytes([len(x)]) + x.encode() for x in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", 0xabcd, flags, qd, 0, 0, ar) + wire + struct.pack("!HH", qtype, 1) + extra


def test_formerr_and_garbage(setup):
    r, _, _ = setup
    # QDCOUNT 2 → FORMERR with the id echoed
    ans = _udp(r.dns_port, _q("edge." + ZONE, qd=2))
    assert ans and ans[:2] == b"\xab\xcd" and ans[3] & 0xf == 1
    # ECS with bits past the source prefix → FORMERR (RFC 7871 §6)
    ecs = struct.pack("!HHHBB", 8, 8, 1, 24, 0) + bytes([10, 1, 2, 3])
    opt = b"\0" + struct.pack("!HHIH", 41, 1232, 0, len(ecs)) + ecs
    ans = _udp(r.dns_port, _q("edge." + ZONE, extra=opt, ar=1))
    assert ans and ans[3] & 0xf == 1
    # compression loop in the question → FORMERR, not a hang
    loop = struct.pack("!HHHHHH", 7, 0, 1, 0, 0, 0) + b"\xc0\x0c" + b"\0\x01\0\x01"
    ans = _udp(r.dns_port, loop)
    assert ans and ans[3] & 0xf == 1
    # too short, and responses: dropped
    assert _udp(r.dns_port, b"\x01\x02\x03", 0.3) is None
    assert _udp(r.dns_port, _q("edge." + ZONE, flags=0x8000), 0.3) is None
    # random garbage, then the server still answers
    rnd = os.urandom
    for i in range(300):
        _s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        _s.sendto(rnd(1 + i % 200), ("127.0.0.1", r.dns_port))
        _s.close()
    # TCP: a length prefix longer than what follows, then close
    t = socket.create_connection(("127.0.0.1", r.dns_port))
    t.sendall(b"\x40\x00\x00\x01garbage")
    t.close()
    res = dig(r.dns_port, "edge." + ZONE, "A", "+subnet=49.165.1.0/24")
    assert ADDR_DC[res.addrs("A")[0]] == "tokyo"
    assert r.proc.poll() is None
    # dig's own FORMERR-provoking option: EDNS version 1 → BADVERS
    res = dig(r.dns_port, "edge." + ZONE, "A", "+edns=1", "+noednsnegotiation")
    assert res.status == "BADVERS"


def test_tcp_pipelined(setup):
    r, _, _ = setup
    t = socket.create_connection(("127.0.0.1", r.dns_port))
    msgs = [_q("edge." + ZONE), _q("nope." + ZONE), _q("www.example.org")]
    t.sendall(b"".join(struct.pack("!H", len(m)) + m for m in msgs))
    rcodes = []
    buf = b""
    t.settimeout(3)
    while len(rcodes) < 3:
        buf += t.recv(4096)
        while len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
            n = struct.unpack("!H", buf[:2])[0]
            rcodes.append(buf[2 + 3] & 0xf)
            buf = buf[2 + n:]
    t.close()
    assert rcodes == [0, 3, 5]


def test_http_route_edges_redirect_metrics(setup):
    r, _, _ = setup
    j = r.json("/route?ip=49.165.200.39")
    assert j["edge"] == "tokyo" and j["address"] == "127.0.1.1"
    assert j["location"]["country"] == "KR" and j["location"]["source"] == "city"
    cands = {c["edge"]: c for c in j["candidates"]}
    assert set(cands) == {n for n, _, _, _ in SIX_DCS}  # IPv4 candidates only
    t = cands["tokyo"]
    assert abs(t["score"] - (t["distance_part"] + t["load_part"] + t["hit_part"])) < 1e-6
    assert abs(t["load"] - 0.2) < 1e-9 and abs(t["hit_ratio"] - 0.8) < 1e-9  # reported values
    assert cands["tokyo"]["score"] > cands["mumbai"]["score"] > cands["london"]["score"]
    assert r.json("/route?ip=2001:db8:10::5&family=6")["edge"] == "v6tokyo"
    edges = {e["name"]: e for e in r.json("/edges")["edges"]}
    assert edges["london"]["healthy"] and edges["london"]["region"] == "london"
    assert edges["london"]["last_check_ms"] > 0 and edges["london"]["checks"] >= 1
    # redirect mode
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None
    op = urllib.request.build_opener(NoRedirect)
    try:
        op.open("http://127.0.0.1:%d/r/models/m.onnx?ip=81.2.3.4&v=1" % r.http_port, timeout=5)
        raise AssertionError("no redirect")
    except urllib.error.HTTPError as e:
        assert e.code == 302
        assert e.headers["Location"] == "http://127.0.1.2/models/m.onnx?v=1"
    st, text = r.http("/metrics")
    assert st == 200
    assert 'mlcdn_router_answers_total{edge="tokyo"}' in text
    assert 'mlcdn_router_answers_by_region_total{edge="tokyo",region="tokyo"}' in text
    assert 'mlcdn_router_dns_queries_total{transport="udp",rcode="NXDOMAIN"}' in text
    assert "mlcdn_router_dns_latency_seconds_bucket" in text
    assert "mlcdn_router_health_transitions_total" in text


def test_flat_layout_two_files(tmp_path):
    """The @ip-location-db layout: IPv4 and IPv6 in two files, --geoip given twice."""
    import mmdb_writer
    w4 = mmdb_writer.Writer(4, "city ipv4", "flat")
    w6 = mmdb_writer.Writer(6, "city ipv6", "flat")
    for net, lat, lon, cc, city, _ in TEST_NETS:
        (w6 if ":" in net else w4).add(net, lat, lon, cc, city)
    w4.write(str(tmp_path / "v4.mmdb"))
    w6.write(str(tmp_path / "v6.mmdb"))
    health = HealthEdges([n for n, _, _, _ in SIX_DCS])
    r = Router(ZONE, [str(tmp_path / "v4.mmdb"), str(tmp_path / "v6.mmdb")], edge_specs(health))
    try:
        assert wait_for(lambda: all(e["healthy"] for e in r.json("/edges")["edges"]), 5)
        for net, _, _, _, city, dc in TEST_NETS:
            ip = net.split("/")[0]
            sub = ip + ("/24" if ":" not in ip else "/48")
            res = dig(r.dns_port, ZONE, "A", "+subnet=" + sub)
            assert ADDR_DC[res.addrs("A")[0]] == dc, (city, res.text)
    finally:
        r.cleanup()
        health.close()


def test_config_file(tmp_path):
    db = make_test_mmdb(str(tmp_path / "t.mmdb"))
    health = HealthEdges(["tokyo", "london"])
    cfg = tmp_path / "router.conf"
    cfg.write_text('zone = "%s";\ngeoip = ["%s"];\nedge = ["tokyo=35.68,139.69,127.0.1.1,%s",\n'
                   '        "london=51.51,-0.13,127.0.1.2,%s"];\nttl = "7s";\nname = ["www"];\n'
                   'w_distance = 0.6;\n' % (ZONE, db, health.url("tokyo"), health.url("london")))
    import subprocess
    from router_util import mlcdn_bin
    # --zone is given both ways (the flag wins); the rest comes from the file only
    r = Router(ZONE, [], [], ["--config", str(cfg)])
    try:
        res = dig(r.dns_port, "www." + ZONE, "A", "+subnet=49.165.0.0/24")
        wait_for(lambda: dig(r.dns_port, "www." + ZONE, "A").addrs("A"), 3)
        res = dig(r.dns_port, "www." + ZONE, "A", "+subnet=49.165.0.0/24")
        assert res.addrs("A") == ["127.0.1.1"] and res.answers[0][1] == "7"
    finally:
        r.cleanup()
        health.close()
    # a bad edge spec is refused with a message naming it
    out = subprocess.run([mlcdn_bin(), "router", "--zone", ZONE, "--geoip", db, "--edge",
                          "x=1,2,not-an-ip,http://h/"], capture_output=True, text=True)
    assert out.returncode != 0 and "--edge" in out.stderr
