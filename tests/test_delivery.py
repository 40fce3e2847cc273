"""No window is ever lost uncounted: the flush thread and extract() under failure.

docs/guarantees.md, "Delivery when things fail":
* the flush thread survives ``dump`` raising anything (``BaseException``
  included) and a window whose dicts cannot be built (``MemoryError``): it
  keeps delivering, counts each failure in ``dump_errors``, retries a build
  ``BUILD_ATTEMPTS`` times (pausing, never spinning) and then counts the window
  in ``dropped_*``; ``shutdown()`` returns True once everything counted was
  delivered or counted as dropped;
* ``extract()`` that raises while building its dicts keeps the cut window and
  returns it (added up with newer counts) from the next ``extract()``, or hands
  it to ``dump`` at shutdown.

Every test runs against both cores (``impl``).  Failures are injected by
replacing the function that builds a window's dicts.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from typing import Any, Callable

import pytest
from captures import udp4

from connstats import _flusher, _impl, _statistics

# the compiled core also with its lane in use from a window's second packet
pytestmark = pytest.mark.with_lanes


class Recorder:
    def __init__(self) -> None:
        self.windows: list[tuple[dict, dict]] = []
        self.lock = threading.Lock()

    def __call__(self, start, end, virtual, physical) -> None:
        with self.lock:
            self.windows.append((dict(virtual), dict(physical)))

    def packets(self) -> int:
        return sum(
            c.tx_packets + c.rx_packets
            for v, p in self.windows
            for c in [*v.values(), *p.values()]
        )

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.windows) < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True


def flow(i: int) -> bytes:
    return udp4(f"10.0.{i // 250}.{i % 250 + 1}", 1000 + i, "192.0.2.1", 53, b"x" * i)


def key(impl, i: int):
    return impl.Connection(
        17,
        impl.AddrPort(ipaddress.ip_address(f"10.0.{i // 250}.{i % 250 + 1}"), 1000 + i),
        impl.AddrPort(ipaddress.ip_address("192.0.2.1"), 53),
    )


def failing(times: int, exc: Callable[[], BaseException] = MemoryError) -> Any:
    """A materialize() that raises ``times`` times, then works; counts calls."""
    real = _impl.materialize
    state = {"calls": 0}

    def materialize(window):
        state["calls"] += 1
        if state["calls"] <= times:
            raise exc()
        return real(window)

    materialize.state = state  # type: ignore[attr-defined]
    return materialize


@pytest.fixture
def fast_retries(monkeypatch):
    # raising=False: the regression tests also run against code without them
    monkeypatch.setattr(_flusher, "RETRY_DELAY", 0.002, raising=False)
    monkeypatch.setattr(_flusher, "RETRY_DELAY_MAX", 0.02, raising=False)


def patch_flusher_build(monkeypatch, fake) -> None:
    monkeypatch.setattr(_flusher, "materialize", fake)


def patch_extract_build(monkeypatch, fake) -> None:
    # extract() builds through _impl.materialize (older code: a name
    # imported into _statistics)
    monkeypatch.setattr(_impl, "materialize", fake)
    monkeypatch.setattr(_statistics, "materialize", fake, raising=False)


# -- the flush thread ----------------------------------------------------------------


def test_no_flush_thread_at_interpreter_exit_final_flush_runs_in_shutdown(
    impl, monkeypatch
):
    # Python 3.12+ refuses new threads while the interpreter finalizes (a
    # daemon thread creating an instance during exit): the instance must
    # still count, and shutdown() must deliver its window itself.
    def refuse(self):
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    rec = Recorder()
    stats = impl.Statistics(max_period=3600, dump=rec)
    for i in range(3):
        stats.update_tx_virtual(flow(i))
    assert stats.shutdown(timeout=10) is True
    assert rec.packets() == 3
    assert stats.shutdown(timeout=0) is True  # idempotent, nothing twice
    assert rec.packets() == 3


@pytest.mark.parametrize(
    "exc",
    [SystemExit, KeyboardInterrupt, GeneratorExit, RuntimeError, MemoryError],
    ids=lambda e: e.__name__,
)
def test_flush_thread_survives_dump_raising_anything(impl, exc, caplog):
    rec = Recorder()
    calls = []

    def dump(start, end, virtual, physical):
        calls.append(1)
        if len(calls) in (1, 3):
            raise exc("from dump")
        rec(start, end, virtual, physical)

    stats = impl.Statistics(max_conns=1, dump=dump)
    with caplog.at_level(logging.ERROR, logger="connstats"):
        for i in range(5):
            stats.update_tx_virtual(flow(i))
        assert stats.shutdown(timeout=10) is True
    assert len(calls) == 5
    assert len(rec.windows) == 3
    assert stats.dump_errors == 2
    assert stats.dropped_windows == 0
    assert (
        sum(
            1
            for r in caplog.records
            if r.levelno == logging.ERROR and r.exc_info and r.exc_info[0] is exc
        )
        == 2
    )


def test_window_whose_build_fails_once_is_retried_and_delivered(
    impl, monkeypatch, fast_retries
):
    fake = failing(1)
    patch_flusher_build(monkeypatch, fake)
    rec = Recorder()
    stats = impl.Statistics(max_conns=1, dump=rec)
    for i in range(4):
        stats.update_tx_virtual(flow(i))
    # No shutdown yet: the thread keeps delivering on its own after the failure.
    assert rec.wait_for(3), rec.windows
    assert stats.shutdown(timeout=10) is True
    assert [list(v) for v, _p in rec.windows] == [[key(impl, i)] for i in range(4)]
    assert stats.dump_errors == 1
    assert stats.dropped_windows == 0 and stats.dropped_packets == 0


def test_window_that_cannot_be_built_is_counted_as_dropped_without_spinning(
    impl, monkeypatch, fast_retries
):
    fake = failing(10**9)
    patch_flusher_build(monkeypatch, fake)
    rec = Recorder()
    stats = impl.Statistics(max_conns=2, dump=rec)
    sent_bytes = 0
    for i in range(7):  # windows of 2, 2, 2 and a final 1 connection
        packet = flow(i)
        stats.update_tx_virtual(packet)
        sent_bytes += len(packet)
    assert stats.shutdown(timeout=20) is True
    attempts = getattr(_flusher, "BUILD_ATTEMPTS", 3)
    assert rec.windows == []
    assert stats.dropped_windows == 4
    assert stats.dropped_packets == 7
    assert stats.dropped_bytes == sent_bytes
    assert stats.dump_errors == 4 * attempts
    # each failed build is followed by a pause, not an immediate retry
    assert fake.state["calls"] == 4 * attempts


def test_flush_thread_pauses_between_failures_and_misses_no_wakeup(impl, monkeypatch):
    """While the thread pauses after a failure, a window cut by max_conns is
    still delivered (the wake-up is not lost), and the pause is a wait, not
    a spin: with every build failing for 0.3 s, only a few tries happen."""
    monkeypatch.setattr(_flusher, "RETRY_DELAY", 0.05, raising=False)
    monkeypatch.setattr(_flusher, "RETRY_DELAY_MAX", 0.1, raising=False)
    real = _impl.materialize
    calls = []
    until = time.monotonic() + 0.3

    def flaky(window):
        calls.append(time.monotonic())
        if time.monotonic() < until:
            raise MemoryError
        return real(window)

    patch_flusher_build(monkeypatch, flaky)
    monkeypatch.setattr(_flusher, "BUILD_ATTEMPTS", 1000, raising=False)
    rec = Recorder()
    stats = impl.Statistics(max_conns=1, dump=rec)
    stats.update_tx_virtual(flow(0))
    stats.update_tx_virtual(flow(1))  # cuts window 0
    time.sleep(0.1)
    stats.update_tx_virtual(flow(2))  # cuts window 1 during a pause
    assert rec.wait_for(2, timeout=5), rec.windows
    assert stats.shutdown(timeout=10) is True
    assert [list(v) for v, _p in rec.windows] == [[key(impl, i)] for i in range(3)]
    assert len(calls) < 20, f"{len(calls)} build attempts in 0.3 s: spinning"


def test_shutdown_is_true_only_when_everything_is_accounted_for(
    impl, monkeypatch, fast_retries
):
    fake = failing(2)
    patch_flusher_build(monkeypatch, fake)
    rec = Recorder()
    stats = impl.Statistics(max_period=3600, max_conns=3, dump=rec)
    sent = 0
    for i in range(10):
        for _ in range(i + 1):
            stats.update_tx_virtual(flow(i))
            sent += 1
    assert stats.shutdown(timeout=10) is True
    assert rec.packets() + stats.dropped_packets == sent
    assert stats.dump_errors == 2


# -- extract() -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc", [MemoryError, KeyboardInterrupt], ids=lambda e: e.__name__
)
def test_extract_that_fails_keeps_the_window_for_the_next_extract(
    impl, monkeypatch, exc
):
    stats = impl.Statistics()
    a, b = flow(1), flow(2)
    stats.update_tx_virtual(a)
    stats.update_tx_virtual(b)
    patch_extract_build(monkeypatch, failing(1, exc))
    with pytest.raises(exc):
        stats.extract()
    # counted after the failed extract: added to what it cut
    stats.update_tx_virtual(a)
    stats.update_rx_virtual(b)
    virtual, physical = stats.extract()
    assert physical == {}
    assert virtual == {
        key(impl, 1): impl.Counts(2, 2 * len(a), 0, 0),
        key(impl, 2): impl.Counts(1, len(b), 0, 0),
        impl.Connection(17, key(impl, 2).dst, key(impl, 2).src): impl.Counts(
            0, 0, 1, len(b)
        ),
    }
    assert stats.extract() == ({}, {})


def test_extract_failing_twice_keeps_both_windows(impl, monkeypatch):
    stats = impl.Statistics()
    patch_extract_build(monkeypatch, failing(2))
    stats.update_tx_virtual(flow(1))
    with pytest.raises(MemoryError):
        stats.extract()
    stats.update_tx_virtual(flow(1))
    stats.update_tx_virtual(flow(2))
    with pytest.raises(MemoryError):
        stats.extract()
    virtual, _ = stats.extract()
    assert virtual == {
        key(impl, 1): impl.Counts(2, 2 * len(flow(1)), 0, 0),
        key(impl, 2): impl.Counts(1, len(flow(2)), 0, 0),
    }


def test_window_kept_by_a_failed_extract_reaches_dump_at_shutdown(impl, monkeypatch):
    rec = Recorder()
    stats = impl.Statistics(max_period=3600, dump=rec)
    stats.update_tx_virtual(flow(1))
    patch_extract_build(monkeypatch, failing(1))
    with pytest.raises(MemoryError):
        stats.extract()
    stats.update_tx_virtual(flow(2))
    assert stats.shutdown(timeout=10) is True
    delivered = {k for v, _p in rec.windows for k in v}
    assert delivered == {key(impl, 1), key(impl, 2)}
    assert rec.packets() == 2


def test_failed_extracts_under_concurrent_updates_lose_nothing(impl, monkeypatch):
    """Threads count while every other extract() fails: the sum of what
    the successful extracts returned is exactly what was counted."""
    real = _impl.materialize
    armed = [False]

    def fails_when_armed(window):
        if armed[0]:
            armed[0] = False
            raise MemoryError
        return real(window)

    patch_extract_build(monkeypatch, fails_when_armed)
    stats = impl.Statistics()
    stop = threading.Event()
    sent = [0] * 4

    def updater(t: int) -> None:
        packets = [flow(t * 10 + j) for j in range(10)]
        while not stop.is_set():
            stats.update_tx_virtual_batch(packets)
            sent[t] += len(packets)

    threads = [threading.Thread(target=updater, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    got = 0
    failures = 0
    try:
        for i in range(200):
            armed[0] = i % 2 == 0
            try:
                virtual, _p = stats.extract()
            except MemoryError:
                failures += 1
                continue
            got += sum(c.tx_packets for c in virtual.values())
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    armed[0] = False
    while True:
        virtual, _p = stats.extract()
        if not virtual:
            break
        got += sum(c.tx_packets for c in virtual.values())
    assert failures > 0
    assert got == sum(sent)
