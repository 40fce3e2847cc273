"""Timing helpers shared by the benchmark files.

Every timed function is one round over a whole workload; ``record`` stores
how many units (packets, connections) a round handles in ``extra_info`` so
that ``conftest.py`` and ``report.py`` can print ns per unit.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable, Optional

from workloads import Workload


def record(
    benchmark: Any,
    *,
    unit: str,
    count: int,
    path: str,
    workload: str,
    direction: str = "tx",
    threads: int = 1,
    **extra: Any,
) -> None:
    benchmark.extra_info.update(
        unit=unit,
        count=count,
        path=path,
        workload=workload,
        direction=direction,
        threads=threads,
        **extra,
    )


def run_packets(
    benchmark: Any,
    fn: Callable[[], Any],
    w: Workload,
    path: str,
    direction: str = "tx",
    stats: Any = None,
) -> None:
    """Time ``fn`` (one round over every packet of ``w``), per packet.

    ``stats`` (warmed with one round before) is checked afterwards: it must
    have counted at least two rounds, so a benchmark can never time a
    shut-down Statistics that drops packets.
    """
    record(
        benchmark,
        unit="packet",
        count=len(w.packets),
        path=path,
        workload=w.name,
        direction=direction,
    )
    benchmark(fn)
    if stats is not None:
        virtual, _ = stats.extract()
        counted = sum(c.tx_packets + c.rx_packets for c in virtual.values())
        assert counted >= 2 * len(w.packets), f"{path}: only {counted} packets counted"


# The loops are identical for every callable so that the floor, the baseline
# and connstats pay exactly the same interpreter overhead per packet.


def each(fn: Callable[[Any], Any], packets: list) -> Callable[[], None]:
    def run() -> None:
        for p in packets:
            fn(p)

    return run


def each_batch(fn: Callable[[Any], Any], batches: list) -> Callable[[], None]:
    def run() -> None:
        for b in batches:
            fn(b)

    return run


def each_buffer(
    fn: Callable[[Any, Any, Any], Any], buffers: list
) -> Callable[[], None]:
    def run() -> None:
        for buf, offsets, lengths in buffers:
            fn(buf, offsets, lengths)

    return run


def each_flow(fn: Callable[..., Any], flows: list) -> Callable[[], None]:
    """``fn(proto, src, dst, 1, n)`` per packet: a caller that parsed it."""

    def run() -> None:
        for proto, src, dst, n in flows:
            fn(proto, src, dst, 1, n)

    return run


_FLOWS: dict[str, list] = {}
_RECORDS: dict[str, list] = {}


def flows(w: Workload) -> list:
    """``(proto, src, dst, len)`` per packet of ``w``, src/dst as AddrPort
    objects (decoded once, outside the timing): what a forwarder that parsed
    its packets holds."""
    import connstats

    if w.name not in _FLOWS:
        _FLOWS[w.name] = [(*connstats.decode(p), len(p)) for p in w.packets]
    return _FLOWS[w.name]


def preparsed_record(proto: int, src: Any, dst: Any, n: int) -> bytes:
    """The ``update_records`` record of one packet of ``n`` bytes, from what
    ``connstats.decode`` gives for it."""
    import struct

    import connstats

    sf = 0 if src.addr is None else src.addr.version
    df = 0 if dst.addr is None else dst.addr.version
    return struct.pack(
        connstats.RECORD_FORMAT, proto, 0, sf, df, src.port, dst.port,
        src.addr.packed if sf else b"", dst.addr.packed if df else b"", 1, n,
    )  # fmt: skip


def records(w: Workload) -> list:
    """``w``'s batches as update_records buffers (one record per packet)."""
    if w.name not in _RECORDS:
        items = flows(w)
        step = len(w.batches[0]) if w.batches else 1
        _RECORDS[w.name] = [
            b"".join(preparsed_record(*f) for f in items[i : i + step])
            for i in range(0, len(items), step)
        ]
    return _RECORDS[w.name]


def warm(w: Workload, rx: bool = False) -> Any:
    """A connstats.Statistics that has seen every packet of ``w`` once (table warm)."""
    import connstats

    s = connstats.Statistics()
    update = s.update_rx_virtual_buffer if rx else s.update_tx_virtual_buffer
    for buf, offsets, lengths in w.buffers:
        update(buf, offsets, lengths)
    return s


def noop(packet: Any) -> None:
    """The cheapest Python-level callee: the no-op floor."""


def cpu_snapshot() -> tuple[float, float, float, float] | None:
    """(busy and steal seconds of all CPUs, this process's CPU seconds, wall clock).

    Linux only.  Steal is time the hypervisor gave our virtual CPUs to others.
    """
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    busy = (sum(fields) - fields[3] - fields[4] - fields[7]) / tick
    t = os.times()
    return busy, fields[7] / tick, t.user + t.system, time.monotonic()


def other_load(start: tuple[float, float, float, float] | None) -> dict | None:
    """CPUs used by other processes, and stolen, since ``start`` (0.0 = none)."""
    end = cpu_snapshot()
    if start is None or end is None or end[3] <= start[3]:
        return None
    wall = end[3] - start[3]
    others = (end[0] - start[0]) - (end[2] - start[2])
    return {
        "other_processes_cpus": round(max(others, 0.0) / wall, 2),
        "steal_cpus": round((end[1] - start[1]) / wall, 2),
    }


class Workers:
    """``n`` long-lived threads that run one job each per round.

    Rounds are released and joined with barriers, so the one-thread and
    two-thread cases pay the same synchronisation (measured on its own by
    the ``*_harness_*`` benchmarks).
    """

    def __init__(self, n: int, timeout: float = 120.0) -> None:
        self.n = n
        self.jobs: list[Optional[Callable[[], Any]]] = [None] * n
        self._start = threading.Barrier(n + 1, timeout=timeout)
        self._done = threading.Barrier(n + 1, timeout=timeout)
        self._stop = False
        self._errors: list[BaseException] = []
        self._threads = [
            threading.Thread(
                target=self._loop, args=(i,), daemon=True, name=f"bench-worker-{i}"
            )
            for i in range(n)
        ]
        for t in self._threads:
            t.start()

    def _loop(self, i: int) -> None:
        while True:
            self._start.wait()
            if self._stop:
                return
            try:
                job = self.jobs[i]
                if job is not None:
                    job()
            except BaseException as exc:  # surfaced by run()
                self._errors.append(exc)
            finally:
                self._done.wait()

    def run(self) -> None:
        """One round: every worker runs its job once."""
        self._start.wait()
        self._done.wait()
        if self._errors:
            raise self._errors.pop()

    def close(self) -> None:
        self._stop = True
        self._start.wait()
        for t in self._threads:
            t.join()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
