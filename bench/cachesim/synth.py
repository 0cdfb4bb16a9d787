#!/usr/bin/env python3
"""bench/cachesim/synth.py: synthetic traces for `mlcdn cachesim`, to check an eviction
change on traffic it was not developed on.

    python3 bench/cachesim/synth.py --out DIR [--requests N] [--objects N]

Writes four t,key,size CSV traces into DIR, each seeded (the same bytes every run):

  zipf08.csv        Zipf(0.8) popularity, lognormal sizes (median 5 KB, sigma 1.5)
  zipf10_corr.csv   Zipf(1.0), sizes growing with popularity rank (up to 4 x)
  zipf09_drift.csv  Zipf(0.9), wider sizes (median 8 KB, sigma 2.0), 5 % of the ranks
                    swapped every requests/8 requests (popularity drift)
  block_phases.csv  unit sizes, a block device's phases: each 5 k-40 k requests long, one
                    of a Zipf hot range (skew 0.7-1.1), a loop over 1/250 to 1/5 of the
                    catalogue, a sequential scan of blocks never read before, or a fixed
                    hot set mixed with uniform reads over a wide range

In the three Zipf traces, 15 % of requests go to objects requested once only (one-hit
wonders), as web and CDN traces have. Phases that favour recency (loops that fit the
cache, a hot range that moves) and phases that favour frequency alternate in the block
trace, as in storage traces, where LRU is often the policy to beat. Example:

    python3 bench/cachesim/synth.py --out /tmp/synth
    mlcdn cachesim --trace /tmp/synth/zipf08.csv --size 0.1%,1%,10% --objective objects
"""
import argparse
import bisect
import os
import random
import sys


def write_trace(path, n_obj, n_req, alpha, mu, sigma, corr, drift, seed):
    rnd = random.Random(seed)
    weights = [1.0 / ((i + 1) ** alpha) for i in range(n_obj)]
    total = sum(weights)
    cdf, acc = [], 0.0
    for w in weights:
        acc += w / total
        cdf.append(acc)
    sizes = []
    for i in range(n_obj):
        s = rnd.lognormvariate(mu, sigma)
        if corr:
            s *= 1 + i / n_obj * corr  # the less popular, the larger
        sizes.append(max(64, int(s)))
    perm = list(range(n_obj))
    once = n_obj  # keys of one-hit wonders follow the catalogue's
    with open(path, "w") as f:
        f.write("t,key,size\n")
        for t in range(n_req):
            if drift and t and t % drift == 0:
                for _ in range(n_obj // 20):
                    a, b = rnd.randrange(n_obj), rnd.randrange(n_obj)
                    perm[a], perm[b] = perm[b], perm[a]
            if rnd.random() < 0.15:
                once += 1
                f.write("%d,%d,%d\n" % (t, once, max(64, int(rnd.lognormvariate(mu, sigma)))))
                continue
            o = perm[min(bisect.bisect_left(cdf, rnd.random()), n_obj - 1)]
            f.write("%d,%d,%d\n" % (t, o, sizes[o]))


def write_block_trace(path, n_obj, n_req, seed):
    rnd = random.Random(seed)
    cdfs = {}

    def zipf_cdf(n, alpha):
        if (n, alpha) not in cdfs:
            w = [1.0 / ((i + 1) ** alpha) for i in range(n)]
            total, acc, cdf = sum(w), 0.0, []
            for x in w:
                acc += x / total
                cdf.append(acc)
            cdfs[(n, alpha)] = cdf
        return cdfs[(n, alpha)]

    hot = [rnd.randrange(4 * n_obj) for _ in range(max(n_obj // 16, 1))]
    fresh = 8 * n_obj  # scans read blocks above every other phase's range
    t = 0
    with open(path, "w") as f:
        f.write("t,key,size\n")
        while t < n_req:
            kind = rnd.choice(("zipf", "loop", "scan", "mix"))
            end = min(t + rnd.randrange(5000, 40000), n_req)
            if kind == "zipf":
                n = max(n_obj // rnd.choice((10, 3, 1)), 1)
                cdf, off = zipf_cdf(n, rnd.choice((0.7, 0.9, 1.1))), rnd.randrange(4 * n_obj)
                keys = (off + min(bisect.bisect_left(cdf, rnd.random()), n - 1)
                        for _ in range(t, end))
            elif kind == "loop":
                n = max(n_obj // rnd.choice((250, 60, 16, 5)), 1)
                off = rnd.randrange(4 * n_obj)
                keys = (off + i % n for i in range(end - t))
            elif kind == "scan":
                keys = range(fresh, fresh + end - t)
                fresh += end - t
            else:
                keys = (rnd.choice(hot) if rnd.random() < 0.6 else 4 * n_obj + rnd.randrange(n_obj * 6)
                        for _ in range(t, end))
            for k in keys:
                f.write("%d,%d,1\n" % (t, k))
                t += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="directory for the traces (created)")
    ap.add_argument("--requests", type=int, default=400000, help="requests per trace")
    ap.add_argument("--objects", type=int, default=50000, help="catalogue size")
    a = ap.parse_args()
    if a.requests < 1 or a.objects < 1:
        sys.exit("synth.py: --requests and --objects must be at least 1")
    os.makedirs(a.out, exist_ok=True)
    n, r = a.objects, a.requests
    write_trace(os.path.join(a.out, "zipf08.csv"), n, r, 0.8, 8.5, 1.5, 0, 0, 1)
    write_trace(os.path.join(a.out, "zipf10_corr.csv"), n, r, 1.0, 8.5, 1.5, 3, 0, 2)
    write_trace(os.path.join(a.out, "zipf09_drift.csv"), n, r, 0.9, 9.0, 2.0, 0,
                max(r // 8, 1), 3)
    write_block_trace(os.path.join(a.out, "block_phases.csv"), n, r, 4)


if __name__ == "__main__":
    main()
