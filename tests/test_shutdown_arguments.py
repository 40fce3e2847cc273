"""After ``shutdown()``: what holds, the same on both cores.

An update after ``shutdown()`` has returned counts nothing and raises
nothing, and its arguments are checked as before: a bad call raises the
same ``TypeError``/``ValueError`` whether it comes before or after
shutdown, so an error never depends on when a call races the shutdown.
Each entry point and each kind of bad argument, on both cores, against the
other core as the oracle.
"""

from __future__ import annotations

import importlib
from typing import Any

import captures as cap
import pytest

from connstats import _statistics

GOOD_V4 = cap.udp4("10.0.0.1", 5000, "10.0.0.2", 53, b"x")
BAD_CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("update_tx_virtual", ("not bytes",)),
    ("update_rx_virtual", (None,)),
    ("update_tx_virtual", (5,)),
    ("update_tx_virtual", (memoryview(b"abcdef")[::2],)),  # not contiguous
    ("update_rx_virtual_batch", ("abc",)),
    ("update_tx_virtual_batch", ([GOOD_V4, 1],)),
    ("update_tx_virtual_batch", ({GOOD_V4},)),
    ("update_tx_virtual_buffer", (GOOD_V4, [0, 1], [1])),
    ("update_rx_virtual_buffer", (GOOD_V4, [0], [len(GOOD_V4) + 1])),
    ("update_tx_virtual_buffer", (None, [], [])),
    ("update_tx_virtual_buffer", (GOOD_V4, [-1], [1])),
    ("update_tx_physical", ("not an address", ("10.0.0.1", 5), 1)),
    ("update_rx_physical", ("10.0.0.1", ("10.0.0.2", 70000), 1)),
    ("update_tx_physical", ("10.0.0.1", "10.0.0.2:5", -1)),
    ("update_rx_physical", ("10.0.0.1", "10.0.0.2:5", 1.5)),
    ("update_tx_physical", (b"\x01\x02\x03", "10.0.0.2:5", 1)),
]
GOOD_CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("update_tx_virtual", (GOOD_V4,)),
    ("update_rx_virtual", (bytearray(GOOD_V4),)),
    ("update_tx_virtual_batch", ([GOOD_V4, b""],)),
    ("update_rx_virtual_buffer", (GOOD_V4 * 2, [0, len(GOOD_V4)], [len(GOOD_V4)] * 2)),
    ("update_tx_physical", ("10.0.0.1", "10.0.0.2:5", 100)),
    ("update_rx_physical", ("10.0.0.1", ("10.0.0.2", 5), 0)),
]


def _statistics_class(name: str) -> type:
    module = importlib.import_module(
        "connstats._fastparse" if name == "c" else "connstats._fastparse_py"
    )

    class Bound(_statistics.Statistics):
        _core_module = module

    return Bound


def _outcome(stats: Any, method: str, args: tuple[Any, ...]) -> tuple[str, str]:
    try:
        getattr(stats, method)(*args)
    except (TypeError, ValueError) as exc:
        return type(exc).__name__, str(exc).split(":")[0]  # the argument named
    return "ok", ""


@pytest.mark.parametrize(("method", "args"), BAD_CALLS)
def test_bad_calls_raise_before_and_after_shutdown(impl, method, args):
    stats = impl.Statistics()
    before = _outcome(stats, method, args)
    assert before[0] in ("TypeError", "ValueError"), before
    stats.shutdown()
    assert _outcome(stats, method, args) == before
    assert stats.extract() == ({}, {})


@pytest.mark.parametrize(("method", "args"), BAD_CALLS)
def test_both_cores_agree_after_shutdown(method, args):
    try:
        compiled = _statistics_class("c")
    except ImportError:
        pytest.skip("no compiled core here")
    outcomes = []
    for cls in (compiled, _statistics_class("py")):
        stats = cls()
        stats.shutdown()
        outcomes.append(_outcome(stats, method, args)[0])
    assert outcomes[0] == outcomes[1] != "ok"


def test_good_calls_after_shutdown_count_nothing_and_raise_nothing(impl):
    delivered: list[Any] = []
    stats = impl.Statistics(dump=lambda *window: delivered.append(window))
    stats.update_tx_virtual(GOOD_V4)
    assert stats.shutdown() is True
    for method, args in GOOD_CALLS:
        assert _outcome(stats, method, args) == ("ok", ""), method
    assert stats.extract() == ({}, {})
    assert len(delivered) == 1
    (conn,) = delivered[0][2]
    assert delivered[0][2][conn].tx_packets == 1 and delivered[0][3] == {}
