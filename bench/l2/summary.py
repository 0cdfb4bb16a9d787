#!/usr/bin/env python3
"""bench/l2/summary.py [--edge mlcdn] RAW.tsv...

Reads the rows bench/l2/run.sh writes (the shared harness' measure_one columns plus two):
  mode target version workload conns rep rps p50_us p99_us errors hit cpu0% cpu1% requests
  server_cpu_s req_per_server_cpu_s load1 errdetail disk_read_MiB tiers
and prints, per workload, a markdown table of medians per target and the ratios
mlcdn / peer (ratio of medians) for req/s, req per server CPU-second and p99.
Several files can be given (rows are pooled).
"""
import argparse
import statistics as st
import sys
from collections import OrderedDict

ORDER = ['origin', 'nginx', 'ats', 'ats-tmpfs', 'mlcdn']
LABEL = {'origin': 'origin (static nginx, baseline)', 'nginx': 'nginx proxy_cache (disk)',
         'ats': 'ATS (cache file on disk, O_DIRECT)', 'ats-tmpfs': 'ATS (cache file on tmpfs)',
         'mlcdn': 'mlcdn (L1 + disk tier)'}


def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def med(rows, i):
    v = [num(r[i]) for r in rows if len(r) > i]
    v = [x for x in v if x is not None]
    return st.median(v) if v else None


def k(x):
    if x is None:
        return '-'
    return '%.1fk' % (x / 1000) if x >= 1000 else '%.0f' % x


def ms(us):
    return '-' if us is None else '%.2f' % (us / 1000.0)


def rx(a, b):
    return '-' if (a is None or not b) else '%.2f×' % (a / b)


def tiers(rows):
    """median share per tier over the runs, from strings like 'L1 8.0% · L2 92.0%'"""
    acc = OrderedDict()
    for r in rows:
        if len(r) < 20 or r[19] in ('', '-'):
            continue
        for part in r[19].split(' · '):
            name, _, pct = part.rpartition(' ')
            acc.setdefault(name, []).append(num(pct.rstrip('%')) or 0.0)
    if not acc:
        return '-'
    n = max(len(v) for v in acc.values())
    return ' · '.join('%s %.1f%%' % (t, st.median(v + [0.0] * (n - len(v)))) for t, v in acc.items())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--edge', default='mlcdn')
    ap.add_argument('files', nargs='+')
    a = ap.parse_args()
    data = OrderedDict()
    for fn in a.files:
        with open(fn) as f:
            for line in f:
                r = line.rstrip('\n').split('\t')
                if len(r) >= 17:
                    data.setdefault((r[3], r[1]), []).append(r)
    for wl in OrderedDict((w, 1) for w, _ in data):
        targets = sorted({t for w, t in data if w == wl},
                         key=lambda t: ORDER.index(t) if t in ORDER else 99)
        M = {}
        for t in targets:
            rows = data[(wl, t)]
            hits = [num(r[10]) for r in rows if num(r[10]) is not None]
            M[t] = dict(rps=med(rows, 6), p50=med(rows, 7), p99=med(rows, 8), scpu=med(rows, 14),
                        rpc=med(rows, 15), n=len(rows), conns=rows[0][4], ver=rows[0][2],
                        err=sum(int(r[9]) for r in rows), hit=min(hits) if hits else None,
                        rd=med(rows, 18), tiers=tiers(rows))
        loads = [num(r[16]) for t in targets for r in data[(wl, t)] if num(r[16]) is not None]
        n = max(v['n'] for v in M.values())
        print('### %s, %s conns: medians of %d interleaved runs (load1 during runs: median %.1f, %.1f-%.1f)'
              % (wl, M[targets[0]]['conns'], n, st.median(loads) if loads else 0,
                 min(loads or [0]), max(loads or [0])))
        print()
        print('| target | version | req/s | **req per server CPU-s** | p50 ms | p99 ms | server CPU-s | '
              'hit ratio (worst) | answered from (median) | block-device reads MiB | errors |')
        print('|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|')
        for t in targets:
            v = M[t]
            hit = '-' if v['hit'] is None else '%.2f%%' % (100 * v['hit'])
            print('| %s | %s | %s | **%s** | %s | %s | %s | %s | %s | %s | %d |'
                  % (LABEL.get(t, t), v['ver'], k(v['rps']), k(v['rpc']), ms(v['p50']), ms(v['p99']),
                     '-' if v['scpu'] is None else '%.2f' % v['scpu'], hit, v['tiers'],
                     '-' if v['rd'] is None else '%.1f' % v['rd'], v['err']))
        print()
        warned = False
        for t in targets:
            v = M[t]
            if v['hit'] is not None and v['hit'] < 0.999:
                print('WARNING: %s: hit ratio %.2f%% in its worst run: not a pure-hit measurement'
                      % (t, 100 * v['hit']))
                warned = True
            if t == a.edge and 'L2' not in v['tiers']:
                print('WARNING: %s answered no request from L2 (%s): not the disk tier' % (t, v['tiers']))
                warned = True
            if v['err']:
                print('WARNING: %s: %d wrk errors' % (t, v['err']))
                warned = True
        if warned:
            print()
        e = M.get(a.edge)
        peers = [t for t in targets if t != a.edge]
        if not e:
            print('(no %s rows: no mlcdn / peer ratios)' % a.edge)
            for p in ('ats', 'ats-tmpfs'):
                if 'nginx' in M and p in M:
                    print()
                    print('Peers: %s / nginx: req/s %s · req per server CPU-s %s · p99 %s'
                          % (p, rx(M[p]['rps'], M['nginx']['rps']), rx(M[p]['rpc'], M['nginx']['rpc']),
                             rx(M[p]['p99'], M['nginx']['p99'])))
            print()
            continue
        print('Ratios %s / peer (ratio of medians; > 1 = %s better for req/s and req/CPU-s, '
              '< 1 = %s lower for p99):' % (a.edge, a.edge, a.edge))
        print()
        print('| %s / | req/s | **req per server CPU-s** | p99 |' % a.edge)
        print('|---|---:|---:|---:|')
        for p in peers:
            v = M[p]
            print('| %s | %s | **%s** | %s |' % (LABEL.get(p, p), rx(e['rps'], v['rps']),
                                                 rx(e['rpc'], v['rpc']), rx(e['p99'], v['p99'])))
        print()


if __name__ == '__main__':
    sys.exit(main())
