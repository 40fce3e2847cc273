"""Turning a cut window into dicts: in slices, so a packet thread is not stalled.

The compiled core builds Connection/Counts objects in C; one call for a whole
window would hold the GIL from start to end.  ``Window.materialize_slices``
yields every 2,048 connections instead, and connstats drives it from a
Python loop (``connstats._impl.materialize``) so that each slice boundary is
a point where CPython can hand the GIL to a waiting thread.  These tests pin
the behaviour that makes that work; the pause itself is timed by
``benchmarks/test_bench_materialize.py``.
"""

from __future__ import annotations

import threading

import pytest
from captures import udp4, udp6

from connstats._impl import materialize

# the compiled core also with its lane in use from a window's second packet
pytestmark = pytest.mark.with_lanes

SLICE = 2048


def _packets(n: int) -> list[bytes]:
    # n distinct connections over v4 and v6, with repeated addresses so the
    # address cache is used across slice boundaries.
    out = []
    for i in range(n):
        if i % 3:
            out.append(
                udp4(
                    f"10.0.{i % 7}.1", 1024 + i, f"192.0.2.{i % 5}", 53, b"x" * (i % 13)
                )
            )
        else:
            out.append(udp6(f"fd00::{i % 11:x}", 1024 + i, "2001:db8::1", 443, b"y"))
    return out


def _window(impl, packets, physical=0):
    core = impl.Core()
    core.update_tx_virtual_batch(packets)
    for i in range(physical):
        core.update_tx_physical(
            "100.64.0.1", f"198.51.100.{i % 250}:{41641 + i}", 100 + i
        )
    window = core.cut()
    assert window is not None
    return window


@pytest.mark.c_extension
def test_compiled_window_yields_once_per_full_slice_and_fills_as_it_goes(c_impl):
    n = 2 * SLICE + 100
    window = _window(c_impl, _packets(n))
    virtual: dict = {}
    physical: dict = {}
    sizes = [len(virtual) for _ in window.materialize_slices(virtual, physical)]
    assert sizes == [SLICE, 2 * SLICE]
    assert len(virtual) == n
    assert physical == {}


def test_sliced_result_equals_to_dicts(impl):
    window = _window(impl, _packets(SLICE + 7), physical=300)
    assert materialize(window) == window.to_dicts()
    virtual, physical = materialize(window)
    assert len(virtual) == SLICE + 7
    assert len(physical) == 300


def test_materializing_twice_gives_equal_fresh_dicts(impl):
    window = _window(impl, _packets(50))
    first, second = materialize(window), materialize(window)
    assert first == second
    assert first[0] is not second[0]


def test_a_window_of_physical_connections_only(impl):
    core = impl.Core()
    core.update_tx_physical("100.64.0.1", "198.51.100.1:41641", 1)
    virtual, physical = materialize(core.cut())
    assert virtual == {}
    assert [c.tx_bytes for c in physical.values()] == [1]


@pytest.mark.parametrize("bad", [[], None, (), "virtual"])
def test_materialize_slices_wants_dicts_and_names_the_argument(impl, bad):
    window = _window(impl, _packets(3))
    with pytest.raises(TypeError, match="virtual"):
        for _ in window.materialize_slices(bad, {}):
            pass
    with pytest.raises(TypeError, match="physical"):
        for _ in window.materialize_slices({}, bad):
            pass


def test_extract_and_dump_deliver_every_connection_of_a_multi_slice_window(impl):
    packets = _packets(3 * SLICE + 1)
    stats = impl.Statistics()
    stats.update_tx_virtual_batch(packets)
    virtual, _ = stats.extract()
    assert len(virtual) == len(packets)
    assert sum(c.tx_packets for c in virtual.values()) == len(packets)

    delivered = []
    done = threading.Event()

    def dump(start, end, virtual, physical):
        delivered.append(len(virtual))
        done.set()

    stats = impl.Statistics(max_conns=len(packets), dump=dump)
    try:
        stats.update_tx_virtual_batch(packets)
        stats.update_tx_virtual(
            udp4("10.9.9.9", 1, "192.0.2.1", 2)
        )  # cuts the full window
        assert done.wait(10)
    finally:
        stats.shutdown()
    assert delivered[0] == len(packets)
