"""Windows bounded by the size of the network log message (issue 18, item 3).

Upstream (wgengine/netlog, v1.92 on) cuts a record before a new connection
would make its JSON bound exceed 256 KiB: ``MinMessageJSONSize`` (219) plus
``MaxConnectionCountsJSONSize`` (247) per connection.  ``Statistics(max_bytes=)``
cuts the same way, together with max_period and max_conns, and a window
still opens at its first packet: nothing wakes while idle.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from hostile import LyingInt

import connstats
from connstats._types import CONNECTION_BYTES, MESSAGE_OVERHEAD_BYTES

# the compiled core also with its lane in use from a window's second packet
pytestmark = pytest.mark.with_lanes


class Recorder:
    def __init__(self) -> None:
        self.windows: list[tuple[Any, Any, dict, dict]] = []
        self.lock = threading.Lock()
        self.event = threading.Event()

    def __call__(self, start, end, virtual, physical) -> None:
        with self.lock:
            self.windows.append((start, end, dict(virtual), dict(physical)))
        self.event.set()

    def sizes(self) -> list[int]:
        with self.lock:
            return [len(v) + len(p) for _, _, v, p in self.windows]


def fill(stats: Any, n: int, first: int = 0) -> None:
    """n new connections: virtual and physical alternately."""
    for i in range(first, first + n):
        if i % 2:
            stats.update_physical(0, ("100.64.0.1", 0), ("192.0.2.1", i), 1, 100)
        else:
            stats.update_virtual(6, ("100.64.0.1", i), ("100.64.0.2", 80), 1, 60)


def bound(conns: int) -> int:
    return MESSAGE_OVERHEAD_BYTES + CONNECTION_BYTES * conns


def test_upstream_constants():
    # netlogtype's own definitions, spelled out
    assert MESSAGE_OVERHEAD_BYTES == len(
        '{"nodeId":"n0123456789abcdefCNTRL","srcNode":{},"dstNodes":[],'
        '"start":"0001-01-01T00:00:00.000000000Z",'
        '"end":"0001-01-01T00:00:00.000000000Z",'
        '"virtualTraffic":{},"subnetTraffic":{},"exitTraffic":{},"physicalTraffic":{}}'
    )
    top = '"[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"'
    count = "18446744073709551615"
    assert CONNECTION_BYTES == len(
        f'{{"proto":255,"src":{top},"dst":{top},"txPkts":{count},'
        f'"txBytes":{count},"rxPkts":{count},"rxBytes":{count}}}'
    )


@pytest.mark.parametrize(
    ("max_bytes", "per_window"),
    [
        (bound(1), 1),
        (bound(3), 3),
        (bound(3) + CONNECTION_BYTES - 1, 3),
        (bound(4), 4),
        (256 << 10, 1060),  # upstream's budget: (262144 - 219) // 247
    ],
)
def test_window_is_cut_before_the_bound_would_be_exceeded(impl, max_bytes, per_window):
    rec = Recorder()
    stats = impl.Statistics(max_bytes=max_bytes, dump=rec)
    fill(stats, per_window)
    fill(stats, per_window)  # the same connections again: no cut
    assert stats.connections == per_window
    fill(stats, per_window + 1, first=per_window)
    assert stats.shutdown(timeout=10)
    sizes = rec.sizes()
    # the first two windows are full, the last holds the one left over
    assert sizes == [per_window, per_window, 1]
    for s in sizes:
        assert bound(s) <= max_bytes


@pytest.mark.parametrize(
    ("max_conns", "max_bytes", "per_window"),
    [(2, bound(5), 2), (5, bound(2), 2), (0, bound(2), 2), (2, 0, 2)],
)
def test_max_bytes_and_max_conns_whichever_comes_first(
    impl, max_conns, max_bytes, per_window
):
    rec = Recorder()
    stats = impl.Statistics(max_conns=max_conns, max_bytes=max_bytes, dump=rec)
    fill(stats, 3 * per_window)
    assert stats.shutdown(timeout=10)
    assert rec.sizes() == [per_window] * 3


def test_max_bytes_with_max_period(impl):
    rec = Recorder()
    with impl.Statistics(max_period=0.05, max_bytes=bound(2), dump=rec) as stats:
        fill(stats, 3)  # cut by size: a window of 2, then one of 1 by time
        deadline = time.monotonic() + 5
        while len(rec.sizes()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert rec.sizes() == [2, 1]


@pytest.mark.parametrize(
    ("value", "error", "word"),
    [
        (-1, ValueError, "max_bytes: must be 0 .unbounded. or at least 466"),
        (bound(1) - 1, ValueError, "at least 466"),
        (1.5e6, TypeError, "max_bytes: expected an int, got float"),
        ("256KiB", TypeError, "max_bytes: expected an int, got str"),
        (True, TypeError, "max_bytes: expected an int, got bool"),
        (LyingInt(100), ValueError, "got 100"),
    ],
)
def test_bad_max_bytes(impl, value, error, word):
    with pytest.raises(error, match=word):
        impl.Statistics(max_bytes=value, dump=print)


def test_max_bytes_needs_dump(impl):
    with pytest.raises(ValueError, match="dump"):
        impl.Statistics(max_bytes=256 << 10)
    # zero is no bound: no dump needed
    assert impl.Statistics(max_bytes=0).shutdown()


class WaitCounter:
    """A core that counts how often the flush thread waits on it."""

    def __init__(self, module: Any, **kwargs: Any) -> None:
        self._core = module.Core(**kwargs)
        self.waits = 0

    def wait(self, timeout: Any = None) -> bool:
        self.waits += 1
        return bool(self._core.wait(timeout))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)


def test_window_opens_at_its_first_packet_and_nothing_wakes_while_idle(impl):
    cores: list[WaitCounter] = []

    def make(**kwargs: Any) -> WaitCounter:
        cores.append(WaitCounter(impl.module, **kwargs))
        return cores[-1]

    class Counted(connstats.Statistics):
        _core_module = SimpleNamespace(Core=make)  # type: ignore[assignment]

    rec = Recorder()
    stats = Counted(max_period=0.02, max_bytes=bound(2), dump=rec)
    try:
        (core,) = cores
        time.sleep(0.3)  # idle: 15 periods
        assert rec.windows == []
        idle_waits = core.waits
        assert idle_waits == 1  # one wait, still blocked: no timer, no ticks
        before = time.time()
        fill(stats, 1)
        assert rec.event.wait(5)
        start, end, _, _ = rec.windows[0]
        # the window started at its first packet, not at construction
        assert before - 0.001 <= start.timestamp() <= end.timestamp()
        time.sleep(0.3)  # idle again after the window was delivered
        settled = core.waits
        time.sleep(0.3)
        assert core.waits == settled
        assert len(rec.windows) == 1
    finally:
        assert stats.shutdown(timeout=10)
