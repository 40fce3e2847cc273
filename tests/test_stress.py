"""Threads, faults and scale: exact totals wherever docs/contract.md promises them.

Every worker thread counts its own traffic on connections of its own, so each
counted value can be checked exactly:

* with no shutdown in the race: extracted + dumped == sent, per connection,
  packets and bytes;
* with ``shutdown`` racing the updates: for every connection and direction,
  ``sent before shutdown() was called <= counted <= sent before it
  returned`` (calls in flight may or may not count, nothing is counted after
  shutdown returns), and bytes == packets * packet size (nothing torn or
  counted twice);
* with a backlog (``dump`` slower than ``max_conns`` cuts windows):
  delivered + ``dropped_*`` == sent, exactly, and a warning is logged.

The figures (sizes, totals checked, memory per connection) are printed; run
with ``-s`` to see them.
"""

from __future__ import annotations

import array
import gc
import ipaddress
import logging
import os
import random
import threading
import time
from collections import Counter
from datetime import timezone
from typing import Any, Optional

import pytest
from captures import udp4

# the compiled core also with its lane in use from a window's second packet
pytestmark = pytest.mark.with_lanes

U64 = (1 << 64) - 1
NTHREADS = 8


def _scale(impl, c_value: int, py_value: int) -> int:
    return c_value if impl.name == "c" else py_value


def _plain(conn: Any) -> tuple:
    proto, src, dst = conn
    return (proto, str(src.addr), src.port, str(dst.addr), dst.port)


def _rss_bytes() -> Optional[int]:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


class Recorder:
    """A dump callback that keeps every window and checks how it is called."""

    def __init__(self, delay: float = 0.0) -> None:
        self.windows: list[tuple] = []
        self.problems: list[str] = []
        self.threads: set[str] = set()
        self.delay = delay
        self._busy = threading.Lock()

    def __call__(self, start, end, virtual, physical) -> None:
        if not self._busy.acquire(blocking=False):
            self.problems.append("dump called concurrently with itself")
            return
        try:
            self.threads.add(threading.current_thread().name)
            if not virtual and not physical:
                self.problems.append("dump called with two empty tables")
            if (
                start.tzinfo is not timezone.utc
                or end.tzinfo is not timezone.utc
                or start > end
            ):
                self.problems.append(f"bad window times {start!r} .. {end!r}")
            self.windows.append((start, end, dict(virtual), dict(physical)))
            if self.delay:
                time.sleep(self.delay)
        finally:
            self._busy.release()

    def check(self) -> None:
        assert not self.problems, self.problems[:5]
        assert self.threads <= {"connstats-flush"}, self.threads


class Flow:
    """One worker's traffic: a virtual connection (tx and rx) and a physical one.

    ``started``/``done`` count packets per column (virtual tx, virtual rx,
    physical tx, physical rx) before each call and after it returns.
    """

    COLUMNS = 4

    def __init__(self, index: int) -> None:
        local, remote = f"10.1.{index}.1", "10.255.0.1"
        self.tx = udp4(local, 1000 + index, remote, 53, b"t" * (index + 1))
        self.rx = udp4(remote, 53, local, 1000 + index, b"r" * (2 * index + 3))
        self.key = (17, local, 1000 + index, remote, 53)
        self.phys_src = f"10.2.{index}.1"
        self.phys_dst = ("198.51.100.1", 41641)
        self.phys_n = 1200 + index
        self.pkey = (0, self.phys_src, 0, "198.51.100.1", 41641)
        self.sizes = (len(self.tx), len(self.rx), self.phys_n, self.phys_n)
        self.started = [0] * self.COLUMNS
        self.done = [0] * self.COLUMNS
        self._buffers: dict[int, tuple] = {}

    def _buffer(self, k: int) -> tuple:
        if k not in self._buffers:
            n = len(self.tx)
            self._buffers[k] = (
                self.tx * k,
                array.array("q", range(0, n * k, n)),
                array.array("q", [n] * k),
            )
        return self._buffers[k]

    def step(self, stats: Any, rng: random.Random) -> None:
        kind = rng.randrange(7)
        k = rng.randrange(1, 24) if kind in (2, 3, 4) else 1
        col = (0, 1, 0, 1, 0, 2, 3)[kind]
        self.started[col] += k
        if kind == 0:
            stats.update_tx_virtual(self.tx)
        elif kind == 1:
            stats.update_rx_virtual(self.rx)
        elif kind == 2:
            stats.update_tx_virtual_batch([self.tx] * k)
        elif kind == 3:
            stats.update_rx_virtual_batch([self.rx] * k)
        elif kind == 4:
            stats.update_tx_virtual_buffer(*self._buffer(k))
        elif kind == 5:
            stats.update_tx_physical(self.phys_src, self.phys_dst, self.phys_n)
        else:
            stats.update_rx_physical(self.phys_src, self.phys_dst, self.phys_n)
        self.done[col] += k

    def counted(self, virtual: Counter, physical: Counter) -> list[tuple[int, int]]:
        """(packets, bytes) per column as found in the collected tables."""
        return [
            (virtual[(self.key, 0)], virtual[(self.key, 1)]),
            (virtual[(self.key, 2)], virtual[(self.key, 3)]),
            (physical[(self.pkey, 0)], physical[(self.pkey, 1)]),
            (physical[(self.pkey, 2)], physical[(self.pkey, 3)]),
        ]


class Collected:
    """Sum of every table handed out, by dump or by extract."""

    def __init__(self) -> None:
        self.virtual: Counter = Counter()
        self.physical: Counter = Counter()
        self.lock = threading.Lock()

    def add(self, virtual: dict, physical: dict) -> None:
        with self.lock:
            for table, out in ((virtual, self.virtual), (physical, self.physical)):
                for conn, counts in table.items():
                    key = _plain(conn)
                    for i, value in enumerate(tuple(counts)):
                        out[(key, i)] += value

    def add_windows(self, windows: list) -> None:
        for _start, _end, virtual, physical in windows:
            self.add(virtual, physical)

    def packets(self) -> int:
        return sum(v for (k, i), v in self.virtual.items() if i in (0, 2)) + sum(
            v for (k, i), v in self.physical.items() if i in (0, 2)
        )


def _steps(flow: Flow, stats: Any, seed: int, steps: int) -> None:
    rng = random.Random(seed)
    for _ in range(steps):
        flow.step(stats, rng)


def _run_threads(targets: list) -> None:
    threads = [
        threading.Thread(target=t, name=f"stress-{i}") for i, t in enumerate(targets)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
        assert not t.is_alive(), f"{t.name} did not finish"


# --------------------------------------------------------------------------
# updates, extracts and periodic cuts: exact totals


def test_threads_updating_while_others_extract_add_up_exactly(impl):
    rec = Recorder()
    stats = impl.Statistics(max_period=0.005, dump=rec)
    flows = [Flow(i) for i in range(NTHREADS)]
    steps = _scale(impl, 3000, 300)
    collected = Collected()
    barrier = threading.Barrier(NTHREADS + 2)
    updating = threading.Event()
    updating.set()
    extracts = [0]

    def updater(flow: Flow, seed: int) -> None:
        rng = random.Random(seed)
        barrier.wait()
        for _ in range(steps):
            flow.step(stats, rng)

    def extractor(seed: int) -> None:
        rng = random.Random(seed)
        barrier.wait()
        while updating.is_set():
            collected.add(*stats.extract())
            extracts[0] += 1
            time.sleep(rng.random() / 1000)

    workers = [lambda f=f, i=i: updater(f, i) for i, f in enumerate(flows)]
    extractors = [threading.Thread(target=extractor, args=(100 + i,)) for i in range(2)]
    for t in extractors:
        t.start()
    _run_threads(workers)
    updating.clear()
    for t in extractors:
        t.join(30)
    assert stats.shutdown(timeout=30)
    collected.add(*stats.extract())
    collected.add_windows(rec.windows)
    rec.check()

    sent = 0
    for flow in flows:
        assert flow.started == flow.done
        for col, (packets, nbytes) in enumerate(
            flow.counted(collected.virtual, collected.physical)
        ):
            assert packets == flow.done[col], (flow.key, col)
            assert nbytes == flow.done[col] * flow.sizes[col], (flow.key, col)
            sent += flow.done[col]
    assert collected.packets() == sent
    assert stats.dropped_windows == 0
    print(
        f"\n[stress {impl.name}] {NTHREADS} threads, {sent} packets in {len(rec.windows)} "
        f"dumped windows + {extracts[0]} extracts: totals exact"
    )


# --------------------------------------------------------------------------
# shutdown racing updates and extracts


@pytest.mark.parametrize("with_dump", [True, False], ids=["dump", "no-dump"])
@pytest.mark.parametrize("seed", range(3))
def test_shutdown_racing_updates_counts_within_bounds(impl, with_dump, seed):
    rng = random.Random(seed)
    rec = Recorder()
    stats = (
        impl.Statistics(max_period=0.003, dump=rec) if with_dump else impl.Statistics()
    )
    flows = [Flow(i) for i in range(NTHREADS)]
    collected = Collected()
    stop = threading.Event()
    barrier = threading.Barrier(NTHREADS + 3)
    bounds: dict[str, Any] = {}

    def updater(flow: Flow, seed: int) -> None:
        r = random.Random(seed)
        barrier.wait()
        while not stop.is_set():
            flow.step(stats, r)

    def extractor(seed: int) -> None:
        r = random.Random(seed)
        barrier.wait()
        while not stop.is_set():
            collected.add(*stats.extract())
            time.sleep(r.random() / 500)

    def shutter() -> None:
        barrier.wait()
        time.sleep(rng.uniform(0.005, _scale(impl, 0.15, 0.3)))
        bounds["lower"] = [list(f.done) for f in flows]
        bounds["result"] = stats.shutdown(timeout=30)
        bounds["upper"] = [list(f.started) for f in flows]
        time.sleep(0.02)  # updates after shutdown returned: all dropped
        stop.set()

    targets = [lambda f=f, i=i: updater(f, seed * 100 + i) for i, f in enumerate(flows)]
    targets += [
        lambda: extractor(seed * 100 + 50),
        lambda: extractor(seed * 100 + 51),
        shutter,
    ]
    _run_threads(targets)

    assert bounds["result"] is True
    collected.add(*stats.extract())  # without dump, the final window is still here
    collected.add_windows(rec.windows)
    rec.check()
    assert stats.extract() == ({}, {})
    assert stats._core.pop_pending() is None  # no window left behind
    late = sum(sum(f.started) for f in flows) - sum(sum(u) for u in bounds["upper"])
    assert late > 0, "no update was attempted after shutdown returned"
    checked = 0
    for flow, lower, upper in zip(flows, bounds["lower"], bounds["upper"]):
        for col, (packets, nbytes) in enumerate(
            flow.counted(collected.virtual, collected.physical)
        ):
            assert lower[col] <= packets <= upper[col], (
                flow.key,
                col,
                lower[col],
                packets,
                upper[col],
            )
            assert nbytes == packets * flow.sizes[col], (flow.key, col)
            checked += packets
    assert collected.packets() == checked
    in_flight = sum(sum(u) for u in bounds["upper"]) - sum(
        sum(lo) for lo in bounds["lower"]
    )
    print(
        f"\n[stress {impl.name}] shutdown race: {checked} packets counted, "
        f"{in_flight} in flight at shutdown, {late} sent after it (dropped)"
    )


@pytest.mark.parametrize("max_conns", [1, 3])
def test_shutdown_racing_max_conns_batches_leaves_no_window_behind(impl, max_conns):
    """Batches cut windows without the GIL; shutdown must still deliver every one."""
    rounds = _scale(impl, 20, 4)
    for round_ in range(rounds):
        rec = Recorder()
        stats = impl.Statistics(max_conns=max_conns, dump=rec)
        stop = threading.Event()
        lower = [0]
        upper = [0]
        started = [0] * 6
        done = [0] * 6
        rng = random.Random(round_)
        batches = [
            [
                udp4(f"10.3.{t}.{j % 250 + 1}", 2000 + j, "10.255.0.2", 80)
                for j in range(64)
            ]
            for t in range(6)
        ]

        def worker(t: int) -> None:
            while not stop.is_set():
                started[t] += 64
                stats.update_tx_virtual_batch(batches[t])
                done[t] += 64

        def shutter() -> None:
            time.sleep(rng.uniform(0.001, 0.03))
            lower[0] = sum(done)
            assert stats.shutdown(timeout=30)
            upper[0] = sum(started)
            stop.set()

        _run_threads([lambda t=t: worker(t) for t in range(6)] + [shutter])
        collected = Collected()
        collected.add_windows(rec.windows)
        rec.check()
        left = stats._core.pop_pending()
        assert left is None, (
            f"round {round_}: a window of {len(left)} connections was left in the pending "
            "queue after shutdown returned (its counts are lost without being counted as dropped)"
        )
        counted = collected.packets() + stats.dropped_packets
        assert lower[0] <= counted <= upper[0], (lower[0], counted, upper[0])
        assert all(len(v) + len(p) <= max_conns for _s, _e, v, p in rec.windows)


# --------------------------------------------------------------------------
# backlog, failing and re-entrant dump callbacks


@pytest.mark.parametrize("mode", ["single", "batch", "threads"])
def test_slow_dump_backlog_drops_are_counted_exactly(impl, mode, caplog):
    release = threading.Event()
    rec = Recorder()

    def dump(start, end, virtual, physical):
        release.wait(60)
        rec(start, end, virtual, physical)

    stats = impl.Statistics(max_conns=1, dump=dump)
    n = _scale(impl, 3000, 1500)
    packets = [
        udp4(f"10.4.{i // 250}.{i % 250 + 1}", 3000, "10.255.0.3", 443, bytes(i % 50))
        for i in range(n)
    ]
    sent_bytes = sum(len(p) for p in packets)
    with caplog.at_level(logging.WARNING, logger="connstats"):
        if mode == "single":
            for p in packets:
                stats.update_tx_virtual(p)
        elif mode == "batch":
            stats.update_tx_virtual_batch(packets)
        else:
            chunks = [packets[i::4] for i in range(4)]
            _run_threads([lambda c=c: stats.update_rx_virtual_batch(c) for c in chunks])
        release.set()
        assert stats.shutdown(timeout=60)
    rec.check()
    delivered_packets = sum(
        sum(c.tx_packets + c.rx_packets for c in v.values())
        for _s, _e, v, _p in rec.windows
    )
    delivered_bytes = sum(
        sum(c.tx_bytes + c.rx_bytes for c in v.values())
        for _s, _e, v, _p in rec.windows
    )
    assert all(len(v) == 1 for _s, _e, v, _p in rec.windows)
    assert stats.dropped_windows > 0, "the backlog never overflowed: send more"
    assert delivered_packets + stats.dropped_packets == n
    assert delivered_bytes + stats.dropped_bytes == sent_bytes
    # one connection and one packet per window here
    assert stats.dropped_windows == n - len(rec.windows)
    warnings = [
        r
        for r in caplog.records
        if r.name == "connstats" and r.levelno == logging.WARNING
    ]
    assert any("dropped" in r.getMessage() for r in warnings), [
        r.getMessage() for r in caplog.records
    ]
    # rate-limited: the first drop, then one summary when the thread ends
    assert len([r for r in warnings if "dropped" in r.getMessage()]) <= 2
    print(
        f"\n[stress {impl.name}] backlog ({mode}): {n} windows cut, {len(rec.windows)} delivered, "
        f"{stats.dropped_windows} dropped; {delivered_bytes} + {stats.dropped_bytes} == {sent_bytes} bytes"
    )


@pytest.mark.parametrize("slow_dump", [False, True], ids=["fast-dump", "blocked-dump"])
def test_max_conns_windows_are_cut_only_when_full(impl, slow_dump):
    """A window ends only when a new connection does not fit: every window handed
    out (but the last, cut by shutdown) and every window dropped holds exactly
    max_conns connections, also when threads cut windows concurrently."""
    max_conns = 4
    nthreads = 4
    per_thread = _scale(impl, 4000, 400)
    for round_ in range(_scale(impl, 3, 1)):
        release = threading.Event()
        if not slow_dump:
            release.set()
        rec = Recorder()

        def dump(start, end, virtual, physical):
            release.wait(60)
            rec(start, end, virtual, physical)

        stats = impl.Statistics(max_conns=max_conns, dump=dump)
        batches = [
            [
                udp4(f"10.5.{t}.{j // 200 + 1}", 1000 + j % 200, "10.255.0.4", 443)
                for j in range(per_thread)
            ]
            for t in range(nthreads)
        ]

        def sender(t: int) -> None:
            for k in range(0, per_thread, 50):
                stats.update_tx_virtual_batch(batches[t][k : k + 50])

        _run_threads([lambda t=t: sender(t) for t in range(nthreads)])
        release.set()
        assert stats.shutdown(timeout=60)
        rec.check()
        sizes = Counter(len(v) + len(p) for _s, _e, v, p in rec.windows[:-1])
        assert set(sizes) <= {max_conns}, (
            f"round {round_}: windows cut before they were full: {sorted(sizes.items())}"
        )
        # one packet per connection: a dropped window holds max_conns packets
        assert stats.dropped_packets == max_conns * stats.dropped_windows, (
            f"round {round_}: {stats.dropped_windows} windows dropped but only "
            f"{stats.dropped_packets} packets in them"
        )
        delivered = sum(len(v) for _s, _e, v, _p in rec.windows)
        assert delivered + stats.dropped_packets == nthreads * per_thread


def test_dump_that_raises_does_not_stop_later_windows(impl, caplog):
    calls = []

    def dump(start, end, virtual, physical):
        calls.append((dict(virtual), dict(physical)))
        if len(calls) % 2:
            raise RuntimeError("dump failed on purpose")

    stats = impl.Statistics(max_conns=2, dump=dump)
    flows = [Flow(i) for i in range(4)]
    steps = _scale(impl, 1500, 300)
    with caplog.at_level(logging.ERROR, logger="connstats"):
        _run_threads(
            [lambda f=f, i=i: _steps(f, stats, i, steps) for i, f in enumerate(flows)]
        )
        assert stats.shutdown(timeout=30)
    collected = Collected()
    for virtual, physical in calls:
        collected.add(virtual, physical)
    sent = sum(sum(f.done) for f in flows)
    assert collected.packets() + stats.dropped_packets == sent
    if stats.dropped_windows == 0:
        for flow in flows:
            for col, (packets, nbytes) in enumerate(
                flow.counted(collected.virtual, collected.physical)
            ):
                assert (packets, nbytes) == (
                    flow.done[col],
                    flow.done[col] * flow.sizes[col],
                )
    raised = (len(calls) + 1) // 2
    assert stats.dump_errors == raised
    errors = [
        r
        for r in caplog.records
        if r.name == "connstats" and r.levelno >= logging.ERROR
    ]
    assert len(errors) == raised
    assert all(
        r.exc_info and "dump failed on purpose" in str(r.exc_info[1]) for r in errors
    )


def test_dump_that_calls_shutdown_while_threads_update(impl):
    holder: dict[str, Any] = {}
    rec = Recorder()
    flows = [Flow(i) for i in range(NTHREADS)]
    stop = threading.Event()

    def dump(start, end, virtual, physical):
        rec(start, end, virtual, physical)
        if len(rec.windows) == 3 and "result" not in holder:
            holder["lower"] = sum(sum(f.done) for f in flows)
            holder["result"] = holder["stats"].shutdown()  # cannot wait for itself
            holder["upper"] = sum(sum(f.started) for f in flows)
            holder["finished_inside"] = holder["stats"].shutdown(timeout=0)

    stats = holder["stats"] = impl.Statistics(max_period=0.002, dump=dump)

    def updater(flow: Flow, seed: int) -> None:
        r = random.Random(seed)
        while not stop.is_set():
            flow.step(stats, r)
            if stats.is_shutdown and not stop.is_set():
                time.sleep(0.0005)

    def waiter() -> None:
        deadline = time.monotonic() + 30
        while "upper" not in holder and time.monotonic() < deadline:
            time.sleep(0.001)
        holder["outside"] = stats.shutdown(timeout=30)
        time.sleep(0.01)
        stop.set()

    _run_threads(
        [lambda f=f, i=i: updater(f, i) for i, f in enumerate(flows)] + [waiter]
    )
    assert holder["result"] is False and holder["finished_inside"] is False
    assert holder["outside"] is True
    rec.check()
    windows_at_end = len(rec.windows)
    collected = Collected()
    collected.add_windows(rec.windows)
    assert holder["lower"] <= collected.packets() <= holder["upper"]
    for flow in flows:
        for col, (packets, nbytes) in enumerate(
            flow.counted(collected.virtual, collected.physical)
        ):
            assert nbytes == packets * flow.sizes[col]
    flows[0].step(stats, random.Random(0))
    time.sleep(0.02)
    assert len(rec.windows) == windows_at_end
    assert stats.extract() == ({}, {})


def test_max_conns_1_with_threads_every_window_holds_one_connection(impl):
    rec = Recorder()
    stats = impl.Statistics(max_conns=1, dump=rec)
    flows = [Flow(i) for i in range(NTHREADS)]
    steps = _scale(impl, 1500, 200)
    _run_threads(
        [lambda f=f, i=i: _steps(f, stats, i, steps) for i, f in enumerate(flows)]
    )
    assert stats.shutdown(timeout=60)
    rec.check()
    assert all(len(v) + len(p) == 1 for _s, _e, v, p in rec.windows)
    collected = Collected()
    collected.add_windows(rec.windows)
    sent = sum(sum(f.done) for f in flows)
    sent_bytes = sum(d * s for f in flows for d, s in zip(f.done, f.sizes))
    got_bytes = sum(
        v
        for (_k, i), v in (collected.virtual + collected.physical).items()
        if i in (1, 3)
    )
    assert collected.packets() + stats.dropped_packets == sent
    assert got_bytes + stats.dropped_bytes == sent_bytes
    print(
        f"\n[stress {impl.name}] max_conns=1: {sent} packets, {len(rec.windows)} windows delivered, "
        f"{stats.dropped_windows} dropped; delivered + dropped == sent"
    )


# --------------------------------------------------------------------------
# scale


def _distinct_udp_packets(n: int) -> tuple[bytes, array.array, array.array]:
    """n 28-byte UDP packets, all of different connections, back to back in one buffer."""
    head = bytes.fromhex("4500001c00000000401100000a")  # ... src 10.x.y.z
    dst = ipaddress.IPv4Address("192.0.2.1").packed
    parts = []
    for i in range(n):
        parts.append(head)
        parts.append((i >> 8).to_bytes(3, "big"))
        parts.append(dst)
        parts.append((1024 + (i & 0xFF)).to_bytes(2, "big"))
        parts.append(b"\x00\x35\x00\x08\x00\x00")
    buf = b"".join(parts)
    assert len(buf) == 28 * n
    return buf, array.array("q", range(0, 28 * n, 28)), array.array("q", [28]) * n


def test_a_million_connections_in_one_window(impl):
    n = _scale(impl, 1_000_000, 50_000)
    buf, offsets, lengths = _distinct_udp_packets(n)
    gc.collect()
    rss0 = _rss_bytes()
    stats = impl.Statistics()
    stats.update_tx_virtual_buffer(buf, offsets, lengths)
    rss1 = _rss_bytes()
    assert stats.connections == n
    table_bytes = getattr(stats._core, "table_bytes", None)
    virtual, physical = stats.extract()
    rss2 = _rss_bytes()
    assert physical == {} and len(virtual) == n
    assert sum(c.tx_packets for c in virtual.values()) == n
    assert sum(c.tx_bytes for c in virtual.values()) == 28 * n
    assert stats.connections == 0
    figures = [f"[stress {impl.name}] {n} connections in one window:"]
    if table_bytes is not None:
        per_conn = table_bytes / n
        figures.append(
            f"table {table_bytes / 2**20:.1f} MiB = {per_conn:.1f} B/connection"
        )
        # compiled core: 48-byte IPv4 entries + 16 bytes of index (issue 24)
        assert per_conn <= 72, per_conn
        after = stats._core.table_bytes
        assert after < 64 * 1024, f"the fresh window still holds {after} bytes"
    if rss0 is not None:
        figures.append(
            f"RSS +{(rss1 - rss0) / n:.1f} B/connection while counting, "
            f"+{(rss2 - rss1) / n:.1f} B/connection for the extracted dicts"
        )
    del virtual, physical
    stats.shutdown()
    print("\n" + " ".join(figures))


# --------------------------------------------------------------------------
# found while hardening


def test_value_comparisons_return_bool(impl):
    """==, <, ... on Connection and AddrPort give True/False, not 1/0 (json.dumps,
    ``is True`` and repr tell the difference)."""
    a = impl.AddrPort(ipaddress.ip_address("10.0.0.1"), 1)
    b = impl.AddrPort(ipaddress.ip_address("10.0.0.2"), 1)
    conn_a, conn_b = impl.Connection(6, a, b), impl.Connection(6, b, a)
    for x, y in ((a, b), (conn_a, conn_b)):
        results = [x == y, x != y, x < y, x <= y, x > y, x >= y, x == x]
        assert all(type(r) is bool for r in results), [repr(r) for r in results]
