"""Probe of single-packet scaling with threads (free-threaded builds).

    [REPEAT=N] [ROUNDS=N] PYTHON_GIL=0 python benchmarks/ft_scaling_probe.py [CASE...]

Each of two threads sends 1,000 connections of its own REPEAT times (env,
100 by default) into one shared, warm Statistics.  Cases (all by default;
anything else on the command line, a number included, is an error: REPEAT
and ROUNDS are environment variables, and the probe of commit 048f450 took
REPEAT as its first argument):

  thread    each thread fetches ``stats.update_tx_virtual`` once, in the
            thread, and calls it (the documented pattern)
  attr      ``stats.update_tx_virtual(p)`` looked up at each call
  shared    one method fetched once in the main thread and used by both
  ownstats  one Statistics per thread: nothing shared (the ceiling)

A round runs every case once with one thread and once with two, one case
after the other, so that all cases see the same machine: on a 2-vCPU virtual
machine the second CPU comes and goes with the host's load, and a figure
taken minutes apart from its ceiling says little.  ROUNDS rounds (env, 15 by
default); the median per case of (ns/packet one thread) / (ns/packet two
threads) is the throughput ratio.  benchmarks/test_bench_threads.py is the
pytest-benchmark form.
"""

import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from workloads import cycling4

import connstats

CONNS = 1000
CASES = ("thread", "attr", "shared", "ownstats")
USAGE = (
    "usage: [REPEAT=N] [ROUNDS=N] PYTHON_GIL=0 python "
    f"benchmarks/ft_scaling_probe.py [CASE...]   (cases: {' '.join(CASES)})"
)
WORKS: list = []  # two threads' packets, built by main() once arguments are valid


def _env_count(name, default):
    value = os.environ.get(name, default)
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        print(
            f"ft_scaling_probe.py: {name}={value!r}: expected a whole number >= 1\n{USAGE}",
            file=sys.stderr,
        )
        sys.exit(2)
    return n


def parse_args(argv):
    """The cases to run, in order; exits with status 2 and a message on bad input."""
    bad = [a for a in argv if a not in CASES]
    if bad:
        hint = ""
        if any(a.isdigit() for a in bad):
            hint = " (a number: REPEAT and ROUNDS are environment variables, e.g. ROUNDS=20)"
        print(
            f"ft_scaling_probe.py: unknown case(s) {', '.join(map(repr, bad))}{hint}\n{USAGE}",
            file=sys.stderr,
        )
        sys.exit(2)
    if len(set(argv)) != len(argv):
        print(
            f"ft_scaling_probe.py: a case is named twice: {' '.join(argv)}\n{USAGE}",
            file=sys.stderr,
        )
        sys.exit(2)
    return tuple(argv) or CASES


def _stats():
    s = connstats.Statistics()
    for w in WORKS:
        for p in w[:CONNS]:
            s.update_tx_virtual(p)
    return s


def _worker(case, shared, own, main_method, i, barrier):
    packets = WORKS[i]
    if case == "attr":
        stats = shared
        barrier.wait()
        for p in packets:
            stats.update_tx_virtual(p)
        return
    if case == "shared":
        f = main_method
    elif case == "thread":
        f = shared.update_tx_virtual
    else:
        f = own[i].update_tx_virtual
    barrier.wait()
    for p in packets:
        f(p)


def once(case, n, shared, own):
    barrier = threading.Barrier(n + 1)
    main_method = shared.update_tx_virtual
    threads = [
        threading.Thread(
            target=_worker, args=(case, shared, own, main_method, i, barrier)
        )
        for i in range(n)
    ]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    return (time.perf_counter() - t0) / (n * len(WORKS[0])) * 1e9


def main():
    cases = parse_args(sys.argv[1:])
    repeat = _env_count("REPEAT", "100")
    rounds = _env_count("ROUNDS", "15")
    WORKS[:] = [
        cycling4(CONNS, client_base=0x0A000000 + (i << 16)) * repeat for i in range(2)
    ]
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print(sys.version.split()[0], "GIL" if gil else "no GIL", f"load {os.getloadavg()}")
    shared = _stats()
    own = [_stats(), _stats()]
    runs = {case: [] for case in cases}
    for _ in range(rounds):
        for case in cases:
            runs[case].append((once(case, 1, shared, own), once(case, 2, shared, own)))
    for case in cases:
        one = statistics.median(r[0] for r in runs[case])
        two = statistics.median(r[1] for r in runs[case])
        ratios = sorted(r[0] / r[1] for r in runs[case])
        print(
            f"{case:9s} 1 thread {one:6.1f} ns/pkt  2 threads {two:6.1f} ns/pkt  "
            f"ratio median {statistics.median(ratios):4.2f}x "
            f"(quartiles {ratios[len(ratios) // 4]:4.2f}-{ratios[3 * len(ratios) // 4]:4.2f})"
        )


if __name__ == "__main__":
    main()
