#!/usr/bin/env python3
"""Sampled (SHARDS) against exact curves of `mlcdn plan`, per trace and size.

Usage: accuracy.py MLCDN TRACE... [--rate R] [--seeds N] [--l1 SIZES] [--l2 SIZES]
Prints one markdown row per (trace, curve, size): exact, sampled, |diff| in percentage
points, and the error `plan` itself reported for that point; then the largest diff.
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mlcdn")
    ap.add_argument("traces", nargs="+")
    ap.add_argument("--rate", default="0.1")
    ap.add_argument("--seeds", default="4")
    ap.add_argument("--l1", default="1%,2%,5%,10%,20%,50%")
    ap.add_argument("--l2", default="0,5%,20%,100%")
    a = ap.parse_args()
    sizes = ["--l1", a.l1, "--l2", a.l2, "--span", "1d"]
    worst = 0.0
    print("| trace | curve | L1 | L2 | exact | sampled | diff (pp) | reported error (pp) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for tr in a.traces:
        ex, tex = plan(a.mlcdn, tr, sizes + ["--sample", "1"])
        sa, tsa = plan(a.mlcdn, tr, sizes + ["--sample", a.rate, "--seeds", a.seeds])
        name = tr.rsplit("/", 1)[-1]
        for e, s in zip(ex["l1"], sa["l1"]):
            for key, label in (("miss_ratio", "L1 miss"), ("byte_miss_ratio", "L1 byte miss")):
                d = abs(e[key] - s[key]) * 100
                worst = max(worst, d)
                print(f"| {name} | {label} | {e['size']} | - | {e[key]:.4f} | {s[key]:.4f} "
                      f"| {d:.2f} | {s['error'] * 100:.2f} |")
        for e, s in zip(ex["grid"], sa["grid"]):
            if e["l2_bytes"] == 0:
                continue
            for key, label in (("hit_ratio", "L1+L2 hit"), ("byte_hit_ratio", "L1+L2 byte hit")):
                d = abs(e[key] - s[key]) * 100
                worst = max(worst, d)
                l1 = next(x["size"] for x in ex["l1"] if x["bytes"] == e["l1_bytes"])
                print(f"| {name} | {label} | {l1} | {e['l2_size']} | {e[key]:.4f} "
                      f"| {s[key]:.4f} | {d:.2f} | {s['error'] * 100:.2f} |")
        print(f"<!-- {name}: exact {tex:.2f} s, sampled {tsa:.2f} s, rate "
              f"{sa['sampling']['rate']} -->", file=sys.stderr)
    print(f"\nlargest diff: {worst:.2f} percentage points", file=sys.stderr)


if __name__ == "__main__":
    main()
