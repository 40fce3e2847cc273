"""Quick probe of single-packet scaling with threads (free-threaded builds).

    PYTHON_GIL=0 python benchmarks/ft_scaling_probe.py [REPEAT] [CASE...]

Each of two threads sends 1,000 connections of its own REPEAT times (20 by
default) through one shared, warm Statistics; best of SAMPLES runs (env,
default 15), ns per packet for one thread and two, and the ratio.  Cases:

  shared    one bound method fetched once and shared by both loops
  attr      ``stats.update_tx_virtual(p)`` looked up at each call
  ownbound  a bound method of the core per thread (what deferred reference
            counting on the shared one gives on 3.14t)
  ownstats  one Statistics per thread: nothing shared (the ceiling)

The best of many short runs is kept because on a loaded 2-CPU machine most
runs do not get both CPUs; benchmarks/test_bench_threads.py is the
pytest-benchmark form of the first three.
"""

import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from workloads import cycling4

import connstats

CONNS = 1000
REPEAT = int(sys.argv[1]) if len(sys.argv) > 1 else 20
SAMPLES = int(os.environ.get("SAMPLES", "15"))
WORKS = [cycling4(CONNS, client_base=0x0A000000 + (i << 16)) * REPEAT for i in range(2)]


def _stats():
    s = connstats.Statistics()
    for w in WORKS:
        for p in w[:CONNS]:
            s.update_tx_virtual(p)
    return s


def _job(case, shared, own, i):
    packets = WORKS[i]
    if case == "shared":
        f = shared.update_tx_virtual
    elif case == "ownbound":
        f = shared._core.update_tx_virtual  # a new bound method each time
    elif case == "ownstats":
        f = own[i].update_tx_virtual
    else:

        def run():
            for p in packets:
                shared.update_tx_virtual(p)

        return run

    def run():
        for p in packets:
            f(p)

    return run


def measure(case, n):
    shared = _stats()
    own = [_stats() for _ in range(n)]
    best = float("inf")
    for _ in range(SAMPLES):
        jobs = [_job(case, shared, own, i) for i in range(n)]
        barrier = threading.Barrier(n + 1)

        def worker(job, barrier=barrier):
            barrier.wait()
            job()

        threads = [threading.Thread(target=worker, args=(j,)) for j in jobs]
        for t in threads:
            t.start()
        t0 = time.perf_counter()
        barrier.wait()
        for t in threads:
            t.join()
        best = min(best, (time.perf_counter() - t0) / (n * len(WORKS[0])) * 1e9)
    return best


def main():
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print(sys.version.split()[0], "GIL" if gil else "no GIL", f"load {os.getloadavg()}")
    for case in sys.argv[2:] or ["shared", "attr", "ownbound", "ownstats"]:
        one, two = measure(case, 1), measure(case, 2)
        print(
            f"{case:9s} 1 thread {one:6.1f} ns/pkt  2 threads {two:6.1f} ns/pkt  {one / two:4.2f}x"
        )


if __name__ == "__main__":
    main()
