#!/usr/bin/env python3
"""bench/infer/table.py: the markdown table from run.sh's JSON lines (medians over rounds).

Columns: median and p99 per call for each engine, rows/s, the ratio mlcdn/ORT, and ORT's
median minus its call floor, which is what the batch-1 target compares mlcdn against. The
floor is the Identity model's median at batch 1 timed in the same process, interleaved with
the model's calls (floor_p50_us, median over rounds); results without it fall back to the
separate Identity row."""
import json
import statistics
import sys
from collections import defaultdict

rows = defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows[(r["model"], r["batch"])].append(r)

med = lambda v: statistics.median(v)
floor_ort = med([r["ort"]["p50_us"] for r in rows[("identity", 1)]]) if ("identity", 1) in rows else 0.0
floor_mc = med([r["mlcdn"]["p50_us"] for r in rows[("identity", 1)]]) if ("identity", 1) in rows else 0.0
print(f"call floor (Identity, batch 1): mlcdn {floor_mc:.2f} us, ONNX Runtime {floor_ort:.2f} us "
      "(\"ORT − floor\" subtracts the floor timed in the same process as each row)\n")
print("| model | batch | mlcdn p50 µs | mlcdn p99 µs | ORT p50 µs | ORT p99 µs | ORT p50 − floor µs "
      "| mlcdn rows/s | ORT rows/s | mlcdn/ORT (p50) | mlcdn/(ORT − floor) | target |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for (model, batch), rs in rows.items():
    mp50 = med([r["mlcdn"]["p50_us"] for r in rs]); mp99 = med([r["mlcdn"]["p99_us"] for r in rs])
    op50 = med([r["ort"]["p50_us"] for r in rs]); op99 = med([r["ort"]["p99_us"] for r in rs])
    fl = [r["ort"]["floor_p50_us"] for r in rs if "floor_p50_us" in r["ort"]]
    net = op50 - (med(fl) if fl else floor_ort)
    ratio = mp50 / op50
    nratio = mp50 / net if net > 0 else float("nan")
    if model == "identity":
        target = "(floor)"
    elif batch == 1:
        target = "ok" if mp50 <= net else "MISSED"
        target += " (≤ ORT − floor)"
    elif batch == 256:
        target = ("ok" if ratio <= 1.2 else "MISSED") + " (≤ 1.2× ORT)"
    else:
        target = ""
    print(f"| {model} | {batch} | {mp50:.2f} | {mp99:.2f} | {op50:.2f} | {op99:.2f} | {net:.2f} | "
          f"{batch * 1e6 / mp50:,.0f} | {batch * 1e6 / op50:,.0f} | {ratio:.2f} | {nratio:.2f} | {target} |")
