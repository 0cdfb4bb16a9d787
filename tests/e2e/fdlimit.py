"""tests/e2e/fdlimit.py: run a server out of file descriptors, then check it came back.

Start the server with a low limit (`mlcdn(..., nofile=N)`), then `flood()` it: idle
connections are opened from several threads at once (the kernel completes them in the
accept queue whether the server can accept them or not) and all closed again. A server
that recovered answers the next request; `cpu_seconds()` tells one that idles from one
that spins.
"""
import os
import socket
import threading


def flood(host, port, n, threads=4):
    """Opens about n idle connections to host:port from `threads` threads at once, then
    closes them all. Returns how many were open."""
    socks = []
    lock = threading.Lock()

    def opener(k):
        mine = []
        for _ in range(k):
            s = socket.socket()
            s.settimeout(5)
            try:
                s.connect((host, port))
            except OSError:
                s.close()
                break  # the accept queue is full: pressure enough
            mine.append(s)
        with lock:
            socks.extend(mine)

    ts = [threading.Thread(target=opener, args=(n // threads,)) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for s in socks:
        s.close()
    return len(socks)


def cpu_seconds(pid):
    """User + system CPU time of a process so far, from /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def counter(metrics_text, series):
    """The value of one series (`name{labels}`) in Prometheus text, 0 when absent."""
    for line in metrics_text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0
