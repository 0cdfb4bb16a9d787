#!/usr/bin/env python3
"""Sampled (SHARDS) against exact curves of `mlcdn plan`, per trace.

Usage: accuracy.py MLCDN TRACE... [--mode MODE]... [--seeds N] [--l1 SIZES] [--l2 SIZES]
                   [--points]
MODE is `auto` (plan's default), `rate=R` (--sample R) or `objects=N` (--sample-objects N);
default: auto, rate=0.1 and objects=8000. Each trace is replayed exactly once (--sample 1)
and once per mode. Prints one markdown row per (trace, mode): how many of the grid's points
were sampled, the largest |sampled - exact| in percentage points over the L1 object and
byte miss ratios and the L1+L2 request and byte hit ratios (all points, and the sampled
ones that are not coarse), the largest error `plan` reported, and the wall times. --points
adds a row per point whose difference exceeds 0.25 points (`*`: coarse).
"""
import argparse
import json
import subprocess
import sys
import time


def plan(binary, trace, extra):
    t0 = time.monotonic()
    out = subprocess.run([binary, "plan", "--trace", trace, "--json"] + extra,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out), time.monotonic() - t0


def mode_flags(mode):
    if mode == "auto":
        return ["--sample", "auto"]
    kind, _, val = mode.partition("=")
    return {"rate": ["--sample", val], "objects": ["--sample-objects", val]}[kind]


def points(ex, sa):
    """(label, exact, sampled, rate, reported error, coarse) for every point of the grid."""
    for e, s in zip(ex["l1"], sa["l1"]):
        yield ("L1 miss %s" % e["size"], e["miss_ratio"], s["miss_ratio"], s["rate"], s["error"],
               s["coarse"])
        yield ("L1 byte miss %s" % e["size"], e["byte_miss_ratio"], s["byte_miss_ratio"],
               s["rate"], s["byte_error"], s["coarse"])
    l1name = {x["bytes"]: x["size"] for x in ex["l1"]}
    for e, s in zip(ex["grid"], sa["grid"]):
        if e["l2_bytes"] == 0:
            continue
        name = "%s + %s" % (l1name[e["l1_bytes"]], e["l2_size"])
        yield ("hit " + name, e["hit_ratio"], s["hit_ratio"], s["rate"], s["error"], s["coarse"])
        yield ("byte hit " + name, e["byte_hit_ratio"], s["byte_hit_ratio"], s["rate"],
               s["byte_error"], s["coarse"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mlcdn")
    ap.add_argument("traces", nargs="+")
    ap.add_argument("--mode", action="append")
    ap.add_argument("--rate", help="one mode: auto or a rate (as --mode rate=R)")
    ap.add_argument("--seeds", default="4")
    ap.add_argument("--l1", default=None)
    ap.add_argument("--l2", default=None)
    ap.add_argument("--points", action="store_true")
    a = ap.parse_args()
    modes = a.mode or ([("auto" if a.rate == "auto" else "rate=" + a.rate)] if a.rate
                       else ["auto", "rate=0.1", "objects=8000"])
    sizes = ["--span", "1d"]
    if a.l1:
        sizes += ["--l1", a.l1]
    if a.l2:
        sizes += ["--l2", a.l2]
    worst = 0.0
    print("| trace | requests | mode | rate | sampled points (coarse) | max diff, all (pp) "
          "| max diff, sampled not coarse (pp) | max reported error (pp) | exact s | sampled s |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    detail = []
    for tr in a.traces:
        ex, tex = plan(a.mlcdn, tr, sizes + ["--sample", "1"])
        name = tr.rsplit("/", 1)[-1]
        for mode in modes:
            sa, tsa = plan(a.mlcdn, tr, sizes + mode_flags(mode) + ["--seeds", a.seeds])
            pts = list(points(ex, sa))
            diffs = [abs(e - s) * 100 for _, e, s, _, _, _ in pts]
            sampled = [d for d, p in zip(diffs, pts) if p[3] < 1 and not p[5]]
            ncoarse = sum(1 for p in pts if p[5])
            nsampled = sum(1 for p in pts if p[3] < 1)
            rep = max(p[4] for p in pts) * 100
            worst = max([worst] + diffs)
            print("| %s | %d | %s | %.4f | %d (%d) / %d | %.2f | %s | %.2f | %.2f | %.2f |" % (
                name, ex["requests"], mode, sa["sampling"]["rate"], nsampled, ncoarse, len(pts),
                max(diffs), "%.2f" % max(sampled) if sampled else "-", rep, tex, tsa))
            sys.stdout.flush()
            for (label, e, s, r, err, co), d in zip(pts, diffs):
                if d > 0.25:
                    detail.append("| %s | %s | %s%s | %.4f | %.4f | %.2f | %.4f | %.2f |" % (
                        name, mode, label, " *" if co else "", e, s, d, r, err * 100))
    if a.points and detail:
        print("\n| trace | mode | point | exact | sampled | diff (pp) | rate | reported (pp) |")
        print("|---|---|---|---:|---:|---:|---:|---:|")
        print("\n".join(detail))
    print("\nlargest diff: %.2f percentage points" % worst)


if __name__ == "__main__":
    main()
