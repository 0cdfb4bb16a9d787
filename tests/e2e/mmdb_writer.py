#!/usr/bin/python3
"""A small MaxMind DB (mmdb, format 2.0) writer for tests: no third-party modules.

Writes the two city layouts the router reads:
  city  MaxMind GeoIP2/GeoLite2-City: {"city": {"names": {"en": ...}},
        "country": {"iso_code": CC}, "location": {"latitude": double, "longitude": double}}
  flat  @ip-location-db/*-city-mmdb: {"country_code": CC, "city": ..., "latitude": float,
        "longitude": float} at the top level

Usage as a program:
  mmdb_writer.py OUT.mmdb --layout city|flat [--ip-version 4|6] NET=LAT,LON,CC[,CITY] ...
  NET=CC (a country without coordinates) is accepted too.
Networks must not overlap. IPv4 networks in an IPv6 tree go to ::a.b.c.d (as MaxMind does).

Format: https://maxmind.github.io/MaxMind-DB/ (search tree of 32-bit records, 16 zero
bytes, data section, "\\xab\\xcd\\xefMaxMind.com" and the metadata map).
"""
import ipaddress
import struct
import sys
import time

META_MARKER = b"\xab\xcd\xefMaxMind.com"


class _F32(float):
    """A value to encode as the mmdb 'float' type (4 bytes) instead of 'double'."""


class _U16(int):
    pass


class _U32(int):
    pass


class _U64(int):
    """libmaxminddb checks the metadata's integer types exactly (build_epoch is uint64)."""


def _ctrl(type_num, size):
    # Returns the control byte(s) for a type and payload size (spec: "Data Field Format").
    if type_num <= 7:
        first = type_num << 5
        ext = b""
    else:
        first = 0
        ext = bytes([type_num - 7])
    if size < 29:
        return bytes([first | size]) + ext
    if size < 29 + 256:
        return bytes([first | 29]) + ext + bytes([size - 29])
    if size < 285 + 65536:
        return bytes([first | 30]) + ext + struct.pack(">H", size - 285)
    return bytes([first | 31]) + ext + struct.pack(">I", size - 65821)[1:]


def _uint(type_num, v):
    b = v.to_bytes((v.bit_length() + 7) // 8, "big") if v else b""
    return _ctrl(type_num, len(b)) + b


def encode(v):
    if isinstance(v, bool):
        return _ctrl(14, 1 if v else 0)
    if isinstance(v, _F32):
        return _ctrl(15, 4) + struct.pack(">f", v)
    if isinstance(v, float):
        return _ctrl(3, 8) + struct.pack(">d", v)
    if isinstance(v, _U16):
        return _uint(5, int(v))
    if isinstance(v, _U32):
        return _uint(6, int(v))
    if isinstance(v, _U64):
        return _uint(9, int(v))
    if isinstance(v, int):
        if v < 0:
            return _ctrl(8, 4) + struct.pack(">i", v)
        if v < 1 << 16:
            return _uint(5, v)
        if v < 1 << 32:
            return _uint(6, v)
        return _uint(9, v)
    if isinstance(v, str):
        b = v.encode()
        return _ctrl(2, len(b)) + b
    if isinstance(v, bytes):
        return _ctrl(4, len(v)) + v
    if isinstance(v, dict):
        out = _ctrl(7, len(v))
        for k, x in v.items():
            out += encode(str(k)) + encode(x)
        return out
    if isinstance(v, (list, tuple)):
        out = _ctrl(11, len(v))
        for x in v:
            out += encode(x)
        return out
    raise TypeError(type(v))


def record(layout, lat, lon, cc, city=None):
    """The data record of one network in the given layout (lat/lon may be None)."""
    if layout == "city":
        r = {}
        if city:
            r["city"] = {"geoname_id": 1, "names": {"en": city, "de": city}}
        if cc:
            r["continent"] = {"code": "XX"}
            r["country"] = {"iso_code": cc, "names": {"en": cc}}
            r["registered_country"] = {"iso_code": cc}
        if lat is not None:
            r["location"] = {"accuracy_radius": 50, "latitude": float(lat),
                             "longitude": float(lon), "time_zone": "UTC"}
        return r
    if layout == "flat":
        r = {"country_code": cc or "", "state1": "", "city": city or "", "postcode": "",
             "timezone": "UTC"}
        if lat is not None:
            r["latitude"] = _F32(lat)
            r["longitude"] = _F32(lon)
        return r
    raise ValueError(layout)


class Writer:
    def __init__(self, ip_version=6, database_type="GeoLite2-City", layout="city"):
        self.ip_version = ip_version
        self.bits = 128 if ip_version == 6 else 32
        self.database_type = database_type
        self.layout = layout
        self.nodes = [[None, None]]  # each record: None (empty), ("n", idx) or ("d", data)

    def insert(self, network, data):
        net = ipaddress.ip_network(network, strict=False)
        if net.version == 4 and self.bits == 128:
            value = int(net.network_address)
            prefix = 96 + net.prefixlen
        elif net.version == 6 and self.bits == 32:
            raise ValueError("IPv6 network in an IPv4 tree")
        else:
            value, prefix = int(net.network_address), net.prefixlen
        if prefix == 0:
            raise ValueError("a /0 network is not supported")
        node = 0
        for i in range(prefix):
            bit = (value >> (self.bits - 1 - i)) & 1
            if i == prefix - 1:
                if self.nodes[node][bit] is not None:
                    raise ValueError("overlapping network " + network)
                self.nodes[node][bit] = ("d", data)
                return
            rec = self.nodes[node][bit]
            if rec is None:
                self.nodes.append([None, None])
                rec = ("n", len(self.nodes) - 1)
                self.nodes[node][bit] = rec
            elif rec[0] == "d":
                raise ValueError("overlapping network " + network)
            node = rec[1]

    def add(self, network, lat, lon, cc, city=None):
        self.insert(network, record(self.layout, lat, lon, cc, city))

    def build(self):
        n = len(self.nodes)
        data = b""
        offsets = {}
        tree = bytearray()
        for left_right in self.nodes:
            for rec in left_right:
                if rec is None:
                    v = n
                elif rec[0] == "n":
                    v = rec[1]
                else:
                    blob = encode(rec[1])
                    if blob not in offsets:
                        offsets[blob] = len(data)
                        data += blob
                    v = n + 16 + offsets[blob]
                tree += struct.pack(">I", v)
        meta = {
            "node_count": _U32(n), "record_size": _U16(32), "ip_version": _U16(self.ip_version),
            "database_type": self.database_type, "languages": ["en"],
            "binary_format_major_version": _U16(2), "binary_format_minor_version": _U16(0),
            "build_epoch": _U64(int(time.time())), "description": {"en": "mlcdn test database"},
        }
        return bytes(tree) + b"\0" * 16 + data + META_MARKER + encode(meta)

    def write(self, path):
        with open(path, "wb") as fh:
            fh.write(self.build())


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--layout", choices=["city", "flat"], default="city")
    ap.add_argument("--ip-version", type=int, choices=[4, 6], default=6)
    ap.add_argument("nets", nargs="+", help="NET=LAT,LON,CC[,CITY] or NET=CC")
    a = ap.parse_args(argv)
    dbtype = "GeoLite2-City" if a.layout == "city" else "city ipv%d" % a.ip_version
    w = Writer(a.ip_version, dbtype, a.layout)
    for spec in a.nets:
        net, rest = spec.split("=", 1)
        parts = rest.split(",")
        if len(parts) == 1:
            w.add(net, None, None, parts[0])
        else:
            w.add(net, float(parts[0]), float(parts[1]), parts[2] if len(parts) > 2 else "",
                  parts[3] if len(parts) > 3 else None)
    w.write(a.out)


if __name__ == "__main__":
    main(sys.argv[1:])
