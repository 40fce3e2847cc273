"""os.fork() in a process with live Statistics (docs/guarantees.md, "fork()").

In the child every live instance starts from an empty table with fresh locks
(the parent's counts stay with the parent), gets its own flush thread if it
had one, and keeps working; new instances work too.  Nothing may deadlock,
even when another thread was counting (holding a table lock without the GIL)
or shutting down at the moment of the fork.  The parent is unaffected.

Children report back through a pipe and always leave with os._exit; the
parent waits with a timeout and kills a child that hangs.
"""

from __future__ import annotations

import os
import random
import threading
import time
from typing import Any, Callable

import pytest
from captures import udp4
from subproc import fork_here

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.with_lanes,
    # Python 3.12+ warns that fork() in a multi-threaded process may deadlock
    # the child: exactly what these tests check does not happen here.
    pytest.mark.filterwarnings(
        "ignore:This process .* is multi-threaded:DeprecationWarning"
    ),
]

CHILD_TIMEOUT = 20.0


def _plain_table(table: dict) -> dict:
    return {
        f"{c.proto} {c.src.addr}:{c.src.port} {c.dst.addr}:{c.dst.port}": list(n)
        for c, n in table.items()
    }


def _fork(child: Callable[[], Any], timeout: float = CHILD_TIMEOUT) -> Any:
    """Run child() in a forked process; return what it returned (JSON)."""
    return fork_here(child)(timeout)


class Recorder:
    def __init__(self) -> None:
        self.windows: list = []
        self.event = threading.Event()

    def __call__(self, start, end, virtual, physical) -> None:
        self.windows.append((dict(virtual), dict(physical)))
        self.event.set()


def _child_checks(impl, stats, rec: Recorder) -> dict:
    """What a child does with the instance it inherited, and with a new one."""
    out: dict = {}
    # the parent's counts are not here
    out["inherited_extract"] = [_plain_table(t) for t in stats.extract()]
    inherited_windows = len(rec.windows)
    mine = udp4("10.9.9.9", 9999, "192.0.2.99", 99, b"child")
    for _ in range(3):
        stats.update_tx_virtual(mine)
    stats.update_rx_virtual_batch([mine, mine])
    # the child's own flush thread delivers the window (max_period is short)
    deadline = time.monotonic() + 5
    while len(rec.windows) == inherited_windows and time.monotonic() < deadline:
        time.sleep(0.005)
    out["child_windows"] = [
        _plain_table(v) for v, _p in rec.windows[inherited_windows:]
    ]
    out["flush_threads"] = sorted(
        t.name for t in threading.enumerate() if t.name == "connstats-flush"
    )
    out["inherited_shutdown"] = stats.shutdown(timeout=5)
    # a new instance
    rec2 = Recorder()
    fresh = impl.Statistics(max_conns=1, dump=rec2)
    fresh.update_tx_virtual(mine)
    fresh.update_tx_virtual(udp4("10.9.9.8", 1, "192.0.2.98", 2))
    out["new_shutdown"] = fresh.shutdown(timeout=5)
    out["new_windows"] = [_plain_table(v) for v, _p in rec2.windows]
    plain = impl.Statistics()
    plain.update_tx_physical("10.9.9.9", ("192.0.2.1", 41641), 100)
    out["plain_extract"] = [_plain_table(t) for t in plain.extract()]
    return out


@pytest.mark.parametrize("fork_from", ["main", "thread"])
def test_fork_with_live_instance_while_another_thread_updates(impl, fork_from):
    rec = Recorder()
    stats = impl.Statistics(max_period=0.02, dump=rec)
    stop = threading.Event()
    sent = [0]
    flow = udp4("10.1.1.1", 1111, "192.0.2.1", 53, b"parent")
    reply = udp4("192.0.2.1", 53, "10.1.1.1", 1111, b"parent reply")

    def updater() -> None:
        rng = random.Random(1)
        while not stop.is_set():
            k = rng.randrange(1, 64)
            stats.update_tx_virtual_batch(
                [flow] * k
            )  # holds table locks without the GIL
            stats.update_rx_virtual(reply)
            sent[0] += k

    thread = threading.Thread(target=updater)
    thread.start()
    reports = []
    try:
        time.sleep(0.02)
        for _ in range(4):
            if fork_from == "main":
                reports.append(_fork(lambda: _child_checks(impl, stats, rec)))
            else:
                box: list = []
                forker = threading.Thread(
                    target=lambda: box.append(
                        _fork(lambda: _child_checks(impl, stats, rec))
                    )
                )
                forker.start()
                forker.join(CHILD_TIMEOUT + 5)
                assert box, "the forking thread failed (see its exception above)"
                reports.append(box[0])
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join(30)
    assert stats.shutdown(timeout=10)

    mine = "17 10.9.9.9:9999 192.0.2.99:99"
    mine_bytes = len(udp4("10.9.9.9", 9999, "192.0.2.99", 99, b"child"))
    for report in reports:
        assert report["inherited_extract"] == [{}, {}]
        counted = [0, 0, 0, 0]
        for table in report["child_windows"]:
            assert set(table) <= {mine, "17 192.0.2.99:99 10.9.9.9:9999"}, table
            for value in table.values():
                counted = [a + b for a, b in zip(counted, value)]
        assert counted == [3, 3 * mine_bytes, 2, 2 * mine_bytes], report[
            "child_windows"
        ]
        assert report["flush_threads"] == ["connstats-flush"]
        assert report["inherited_shutdown"] is True
        assert report["new_shutdown"] is True and len(report["new_windows"]) == 2
        assert report["plain_extract"][1] == {
            "0 10.9.9.9:0 192.0.2.1:41641": [1, 100, 0, 0]
        }

    # the parent is unaffected: every packet it sent is in its windows
    key = "17 10.1.1.1:1111 192.0.2.1:53"
    total = [0, 0, 0, 0]
    for virtual, _physical in rec.windows:
        table = _plain_table(virtual)
        assert set(table) == {key}, table
        total = [a + b for a, b in zip(total, table[key])]
    assert total[0] == sent[0] and total[1] == sent[0] * len(flow)
    assert total[3] == total[2] * len(reply)


def test_fork_while_shutdown_waits_for_a_slow_dump(impl):
    """A child forked while the parent's shutdown() waits for the final dump
    has nothing to deliver: its shutdown() must return, not wait forever for a
    flush thread that does not exist in the child."""
    release = threading.Event()
    entered = threading.Event()

    def slow_dump(start, end, virtual, physical):
        entered.set()
        release.wait(30)

    stats = impl.Statistics(max_period=60, dump=slow_dump)
    stats.update_tx_virtual(udp4("10.1.1.1", 1, "192.0.2.1", 2))
    shutter = threading.Thread(target=stats.shutdown)
    shutter.start()
    try:
        assert entered.wait(10), "the final window never reached dump"

        def child() -> dict:
            started = time.monotonic()
            result = stats.shutdown()  # no timeout: a hang is a deadlock
            fresh = impl.Statistics(max_conns=1, dump=lambda *a: None)
            fresh.update_tx_virtual(udp4("10.9.9.9", 1, "192.0.2.9", 2))
            return {
                "result": result,
                "seconds": time.monotonic() - started,
                "fresh": fresh.shutdown(timeout=5),
            }

        report = _fork(child, timeout=10)
        assert report["result"] is True and report["fresh"] is True
    finally:
        release.set()
        shutter.join(30)
    assert stats.shutdown(timeout=10)


def test_fork_of_a_shut_down_instance(impl):
    stats = impl.Statistics(max_period=60, dump=lambda *a: None)
    stats.update_tx_virtual(udp4("10.1.1.1", 1, "192.0.2.1", 2))
    assert stats.shutdown(timeout=10)

    def child() -> dict:
        stats.update_tx_virtual(udp4("10.1.1.1", 1, "192.0.2.1", 2))
        return {
            "shutdown": stats.shutdown(timeout=5),
            "extract": [_plain_table(t) for t in stats.extract()],
            "threads": [
                t.name for t in threading.enumerate() if t.name == "connstats-flush"
            ],
        }

    report = _fork(child)
    assert report == {"shutdown": True, "extract": [{}, {}], "threads": []}
