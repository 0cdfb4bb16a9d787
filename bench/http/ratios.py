#!/usr/bin/env python3
"""bench/http/ratios.py [--edge NAME] [--mode MODE] RAW.tsv...

Reads the TSV rows written by the shared harness' measure_one (compare.sh's raw.tsv):
  mode target version workload conns rep rps p50_us p99_us errors hit cpu0% cpu1%
  requests server_cpu_s req_per_server_cpu_s load1 [error detail]
and prints, per mode, markdown tables:
  1. medians per workload and target: req/s, req per server CPU-second, p50, p99
  2. ratios mlcdn / peer (ratio of medians) for req/s, req per server CPU-s and p99
     (> 1 is better for the first two, < 1 is better for p99)
  3. the issue's targets, checked.
"""
import argparse
import statistics as st
import sys
from collections import OrderedDict

WL_ORDER = ['small', 'medium', 'large', 'zipf', 'zipf1k']
WL_LABEL = {'small': '1 KiB hit, 64 conns', 'medium': '100 KiB hit, 64 conns',
            'large': '1 MiB hit, 16 conns', 'zipf': 'Zipf(0.99) 10k objs, 64 conns',
            'zipf1k': 'Zipf(0.99) 10k objs, 1000 conns'}
PEER_ORDER = ['origin', 'nginx', 'varnish', 'ats']
PEER_LABEL = {'origin': 'origin (static nginx)', 'nginx': 'nginx proxy_cache',
              'varnish': 'Varnish malloc', 'ats': 'ATS RAM cache'}
CACHES = ['nginx', 'varnish', 'ats']


def num(x):
    try:
        return float(x)
    except ValueError:
        return None


def load(files):
    data = OrderedDict()  # (mode, workload, target) -> list of rows
    for fn in files:
        with open(fn) as f:
            for line in f:
                r = line.rstrip('\n').split('\t')
                if len(r) < 17:
                    continue
                data.setdefault((r[0], r[3], r[1]), []).append(r)
    return data


def med(rows, i):
    v = [num(r[i]) for r in rows]
    v = [x for x in v if x is not None]
    return st.median(v) if v else None


def fmt_k(x):
    if x is None:
        return '-'
    return '%.1fk' % (x / 1000) if x >= 1000 else '%.0f' % x


def fmt_ms(us):
    return '-' if us is None else ('%.2f' % (us / 1000.0))


def fmt_r(x):
    return '-' if x is None else '%.2f×' % x


def ratio(a, b):
    return a / b if (a is not None and b) else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--edge', default='mlcdn')
    ap.add_argument('--mode', default=None)
    ap.add_argument('files', nargs='+')
    a = ap.parse_args()
    data = load(a.files)
    modes = sorted({k[0] for k in data}, key=lambda m: (m != 'pinned', m))
    if a.mode:
        modes = [m for m in modes if m == a.mode]
    for mode in modes:
        wls = sorted({k[1] for k in data if k[0] == mode},
                     key=lambda w: WL_ORDER.index(w) if w in WL_ORDER else 99)
        targets = [t for t in PEER_ORDER + [a.edge] if any((mode, w, t) in data for w in wls)]
        peers = [t for t in targets if t != a.edge]
        M = {}
        for w in wls:
            for t in targets:
                rows = data.get((mode, w, t))
                if not rows:
                    continue
                M[(w, t)] = dict(rps=med(rows, 6), p50=med(rows, 7), p99=med(rows, 8),
                                 rpc=med(rows, 15), load=med(rows, 16), n=len(rows),
                                 errors=sum(int(r[9]) for r in rows),
                                 hit=min([num(r[10]) for r in rows if num(r[10]) is not None] or [None],
                                         key=lambda x: 2 if x is None else x))
        loads = [float(r[16]) for k, rows in data.items() if k[0] == mode for r in rows if num(r[16]) is not None]
        n = max((v['n'] for v in M.values()), default=0)
        print('### mode=%s: medians of %d interleaved runs per cell (load1 during runs: median %.1f, %.1f-%.1f)'
              % (mode, n, st.median(loads) if loads else 0, min(loads or [0]), max(loads or [0])))
        print()
        print('Cell: req/s · **req per server CPU-s** · p50 / p99 ms (errors, worst hit ratio if not 100 %)')
        print()
        print('| workload | ' + ' | '.join(PEER_LABEL.get(t, t) for t in targets) + ' |')
        print('|---' * (len(targets) + 1) + '|')
        for w in wls:
            cells = []
            for t in targets:
                v = M.get((w, t))
                if not v:
                    cells.append('-')
                    continue
                extra = []
                if v['errors']:
                    extra.append('%d err' % v['errors'])
                if v['hit'] is not None and v['hit'] < 0.99995:
                    extra.append('hit %.2f%%' % (100 * v['hit']))
                cells.append('%s · **%s** · %s / %s%s' % (fmt_k(v['rps']), fmt_k(v['rpc']), fmt_ms(v['p50']),
                                                          fmt_ms(v['p99']), (' (' + ', '.join(extra) + ')') if extra else ''))
            print('| %s | %s |' % (WL_LABEL.get(w, w), ' | '.join(cells)))
        print()
        if not any(t == a.edge for t in targets):
            print('(no %s rows: no ratios)' % a.edge)
            continue
        print('Ratios %s / peer (ratio of medians): req/s · **req per server CPU-s** · p99 (p99 < 1 = %s lower)'
              % (a.edge, a.edge))
        print()
        print('| workload | ' + ' | '.join('%s / %s' % (a.edge, PEER_LABEL.get(p, p)) for p in peers) + ' |')
        print('|---' * (len(peers) + 1) + '|')
        for w in wls:
            e = M.get((w, a.edge))
            cells = []
            for p in peers:
                v = M.get((w, p))
                if not e or not v:
                    cells.append('-')
                    continue
                cells.append('%s · **%s** · %s' % (fmt_r(ratio(e['rps'], v['rps'])), fmt_r(ratio(e['rpc'], v['rpc'])),
                                                   fmt_r(ratio(e['p99'], v['p99']))))
            print('| %s | %s |' % (WL_LABEL.get(w, w), ' | '.join(cells)))
        print()
        # ---- targets from the issue
        print('Targets:')
        e = M.get(('small', a.edge))
        if e:
            best = max(((M[('small', p)]['rpc'] or 0, p) for p in CACHES if ('small', p) in M), default=None)
            org = M.get(('small', 'origin'))
            if best:
                print('* 1 KiB hits, req per server CPU-s: %s = %s vs best peer cache %s = %s -> %s (target >= 1.50×): %s'
                      % (a.edge, fmt_k(e['rpc']), best[1], fmt_k(best[0]), fmt_r(ratio(e['rpc'], best[0])),
                         'MET' if (ratio(e['rpc'], best[0]) or 0) >= 1.5 else 'NOT MET'))
            if org:
                print('* 1 KiB hits vs the static-file origin: %s vs %s -> %s (target >= 1.00×): %s'
                      % (fmt_k(e['rpc']), fmt_k(org['rpc']), fmt_r(ratio(e['rpc'], org['rpc'])),
                         'MET' if (ratio(e['rpc'], org['rpc']) or 0) >= 1.0 else 'NOT MET'))
        behind = []
        for w in wls:
            e = M.get((w, a.edge))
            for p in CACHES:
                v = M.get((w, p))
                if e and v:
                    for key, lbl in (('rpc', 'req/CPU-s'), ('rps', 'req/s')):
                        r = ratio(e[key], v[key])
                        if r is not None and r < 1.0:
                            behind.append('%s %s vs %s %s' % (w, lbl, p, fmt_r(r)))
        print('* ahead of every peer cache on every workload (req/s and req/CPU-s): %s'
              % ('MET' if not behind else 'NOT MET (behind: ' + '; '.join(behind) + ')'))
        e = M.get(('zipf1k', a.edge))
        if e:
            print('* p99 at 1,000 connections: %s ms (target < 50 ms): %s'
                  % (fmt_ms(e['p99']), 'MET' if e['p99'] is not None and e['p99'] < 50000 else 'NOT MET'))
        print()


if __name__ == '__main__':
    sys.exit(main())
