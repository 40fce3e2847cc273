"""The final window of an instance collected just before (or during) exit.

An instance that nobody shut down and that is garbage-collected as the
program ends (the local of the function that ends it, a reference cycle
freed just before, an instance made and dropped by a later atexit hook) must
still have its final window, and any windows queued behind a slow ``dump``,
delivered before the interpreter stops its daemon threads; ``dump`` must not
be cut off half way.  Before the fix the issue's program (shape ``local``
alone) delivered nothing in 20 of 20 runs on each core.

Each case runs tests/isolated/exit_collected.py RUNS times in fresh
interpreters, on both cores, with and without busy threads (see the script).
"""

from __future__ import annotations

import gc
import os
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from subproc import core_env, fork_here

from connstats import _statistics

SCRIPT = Path(__file__).parent / "isolated" / "exit_collected.py"
RUNS = 50
# EXIT_FLUSH_BUDGET in the children: generous, so that only a missing wait
# (not a slow, loaded machine) can make a run lose a window.
BUDGET = 20.0
# Interpreters started at a time: fewer with busy threads, whose spinning
# children would otherwise take each other's CPUs (and the machine's).
PARALLEL = {0: 4, 2: 2}

EXPECTED = {
    "local": ["DELIVERED local 5"],
    "cycle": ["DELIVERED cycle 3"],
    "backlog": [f"DELIVERED backlog-{1100 + i} 1" for i in range(6)],
    "late-local": ["DELIVERED late-local 4"],
}
CASES = {
    "issue": ["local"],
    "all-shapes": ["backlog", "cycle", "local", "late-local"],
}


def udp4(i: int) -> bytes:
    payload = struct.pack("!HHHH", 1000 + i, 53, 8, 0)
    header = struct.pack(
        "!BBHHHBBHII", 0x45, 0, 28, 0, 0, 64, 17, 0, 0x0A000000 + i, 0xC0000201
    )
    return header + payload


def _one_run(impl_name: str, busy: int, shapes: list[str]) -> str | None:
    """None if the run delivered exactly the expected lines, else what went wrong."""
    try:
        proc = subprocess.run(
            # faulthandler: a crash names the thread and the line it was on
            [sys.executable, "-X", "faulthandler", str(SCRIPT), str(BUDGET), str(busy)]
            + shapes,
            capture_output=True,
            text=True,
            timeout=60,
            env=core_env(impl_name),
        )
    except subprocess.TimeoutExpired:
        return "did not exit within 60 s"
    want = Counter(["EXITING"] + [line for s in shapes for line in EXPECTED[s]])
    got = Counter(proc.stdout.splitlines())
    if proc.returncode != 0 or proc.stderr or got != want:
        return (
            f"exit status {proc.returncode}; missing {sorted((want - got).elements())}; "
            f"unexpected {sorted((got - want).elements())}; stderr {proc.stderr[-1500:]!r}"
        )
    return None


@pytest.mark.parametrize("busy", [0, 2], ids=["quiet", "busy-threads"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_final_window_of_a_collected_instance_reaches_dump_at_exit(impl, case, busy):
    shapes = CASES[case]
    with ThreadPoolExecutor(PARALLEL[busy]) as pool:
        results = list(
            pool.map(lambda _: _one_run(impl.name, busy, shapes), range(RUNS))
        )
    failures = [r for r in results if r is not None]
    assert not failures, f"{len(failures)} of {RUNS} runs failed; first: {failures[0]}"


# -- the bookkeeping behind it, in this process ----------------------------------


def _pending_of(flusher) -> bool:
    return any(f is flusher for f in _statistics._pending_flushes.copy().values())


def test_a_collected_instance_is_pending_until_its_final_flush_has_run(impl):
    release = threading.Event()
    delivered = []

    def dump(start, end, virtual, physical):
        release.wait(30)
        delivered.append(sum(c.tx_packets for c in virtual.values()))

    s = impl.Statistics(max_period=3600, dump=dump)
    for _ in range(3):
        s.update_tx_virtual(udp4(1))
    flusher = s._flusher
    del s
    gc.collect()
    try:
        assert _pending_of(flusher)  # the exit hook would wait for it
    finally:
        release.set()
    assert flusher.wait(time.monotonic() + 30)
    assert delivered == [3]
    assert not _pending_of(flusher)


def test_instances_dropped_while_running_leave_no_pending_entry(impl):
    """Many instances dropped without shutdown: each final window is delivered
    by its thread, and each entry leaves the pending table when it is."""
    delivered = []
    lock = threading.Lock()

    def dump(start, end, virtual, physical):
        with lock:
            delivered.append(sum(c.tx_packets for c in virtual.values()))

    flushers = []
    for i in range(200):
        s = impl.Statistics(max_period=3600, dump=dump)
        for _ in range(i % 5 + 1):
            s.update_tx_virtual(udp4(i))
        flushers.append(s._flusher)
        del s
    gc.collect()
    for flusher in flushers:
        assert flusher.wait(time.monotonic() + 60)
    assert sorted(delivered) == sorted(i % 5 + 1 for i in range(200))
    assert not any(_pending_of(f) for f in flushers)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)
def test_a_fork_child_does_not_wait_for_the_parents_pending_flushes(impl):
    release = threading.Event()

    def dump(start, end, virtual, physical):
        release.wait(30)

    s = impl.Statistics(max_period=3600, dump=dump)
    s.update_tx_virtual(udp4(1))
    flusher = s._flusher
    del s
    gc.collect()
    try:
        assert _pending_of(flusher)

        def child():
            return [
                len(_statistics._pending_flushes),
                _statistics._exit_deadline is None,
            ]

        assert fork_here(child)(20.0) == [0, True]
    finally:
        release.set()
    assert flusher.wait(time.monotonic() + 30)
