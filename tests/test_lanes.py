"""The single-packet path's lane on GIL builds (src/core/lanes.pxi).

Once the open window has LANE_MIN_CONNS connections, single packets are held
in a lane and added to the table 256 at a time.  What must not change: every
read (``extract``/``cut``, ``connections``, ``close``) sees every packet
counted before it, per connection and exactly; a new window counts straight
into the table again until it is large; cores with ``max_conns`` or
``track_times`` never hold packets back.  The pure-Python core is the
reference.  Other modules run their tests with the lane in use from a
window's second packet too (``c-lanes`` in conftest.py).
"""

from __future__ import annotations

import random
import sysconfig
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import ip_address

import pytest
from captures import tcp4, udp4, udp6
from hypothesis import given, settings
from hypothesis import strategies as st
from tables import plain

fastparse = pytest.importorskip("connstats._fastparse")
pytestmark = [
    pytest.mark.c_extension,
    pytest.mark.skipif(
        bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        reason="free-threaded builds use their lanes from a window's second "
        "packet; test_freethreading.py covers them",
    ),
]

LANE_N = 256
DEFAULT_MIN = 32768


@contextmanager
def lane_min(conns: int) -> Iterator[None]:
    previous = fastparse._set_lane_min_default(conns)
    try:
        yield
    finally:
        fastparse._set_lane_min_default(previous)


def packet(i: int, size: int = 0) -> bytes:
    return udp4(
        f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
        1000,
        "192.0.2.1",
        53,
        b"x" * size,
    )


def test_the_default_threshold_is_what_the_docs_say():
    with lane_min(5):
        assert fastparse._set_lane_min_default(DEFAULT_MIN) == 5
    assert fastparse._set_lane_min_default(DEFAULT_MIN) == DEFAULT_MIN


def test_small_windows_count_straight_into_the_table(c_impl):
    core = c_impl.Core()
    for i in range(1000):
        core.update_tx_virtual(packet(i))
        core.update_tx_virtual(packet(i))
    assert core._lane_state == (False, 0)
    assert core.cut().packets == 2000


def test_a_large_window_holds_packets_and_every_read_sees_them(c_impl):
    core = c_impl.Core()
    packets = [packet(i) for i in range(DEFAULT_MIN)]
    core.update_tx_virtual_batch(packets)  # the batch path opens the lane too
    assert core._lane_state == (True, 0)
    for p in packets[:100]:
        core.update_tx_virtual(p)
    core.update_tx_virtual(packet(DEFAULT_MIN))  # a new connection, held
    assert core._lane_state == (True, 101)
    # connections adds the lane to the table first
    assert core.connections == DEFAULT_MIN + 1
    assert core._lane_state == (True, 0)
    for p in packets[: LANE_N + 10]:  # a full lane is added by the next call
        core.update_tx_virtual(p)
    assert core._lane_state == (True, 10)
    window = core.cut()
    # the new window starts small: straight into the table
    core.update_tx_virtual(packets[0])
    core.update_tx_virtual(packets[1])
    assert core._lane_state == (False, 0)
    counts = plain(window.to_dicts()[0])
    assert window.packets == DEFAULT_MIN + 100 + 1 + LANE_N + 10
    assert len(counts) == DEFAULT_MIN + 1
    by_source = Counter({key[1]: value[0] for key, value in counts.items()})
    assert by_source.most_common(1)[0][1] == 3  # packets[0] .. packets[99]
    assert sum(by_source.values()) == window.packets


@pytest.mark.parametrize("kwargs", [{"max_conns": 10**9}, {"track_times": True}])
def test_cores_that_need_every_packet_in_order_have_no_lane(c_impl, kwargs):
    with lane_min(1):
        core = c_impl.Core(**kwargs)
        for i in range(600):
            core.update_tx_virtual(packet(i % 50))
            assert core._lane_state == (False, 0)
    assert core.cut().packets == 600


def _operations() -> st.SearchStrategy:
    conn = st.integers(0, 40)
    return st.lists(
        st.one_of(
            st.tuples(st.just("tx"), conn, st.integers(0, 30)),
            st.tuples(st.just("rx"), conn, st.integers(0, 30)),
            st.tuples(st.just("v6"), conn, st.integers(0, 30)),
            st.tuples(st.just("preparsed"), conn, st.integers(1, 3)),
            st.tuples(st.just("batch"), conn, st.integers(1, 40)),
            st.tuples(st.just("cut"), st.just(0), st.just(0)),
            st.tuples(st.just("connections"), st.just(0), st.just(0)),
        ),
        max_size=1200,
    )


def _apply(stats, operations) -> list:
    seen = []
    for op, i, n in operations:
        if op == "tx":
            stats.update_tx_virtual(packet(i, n))
        elif op == "rx":
            stats.update_rx_virtual(
                tcp4("10.9.0.1", 80, f"10.8.0.{i + 1}", 4000, b"y" * n)
            )
        elif op == "v6":
            stats.update_tx_virtual(udp6("fd00::1", 5000 + i, "fd00::2", 53, b"z" * n))
        elif op == "preparsed":
            stats.update_virtual(
                17, (f"10.7.0.{i + 1}", 9), ("10.7.1.1", 9), 1, n * 100
            )
        elif op == "batch":
            stats.update_tx_virtual_batch([packet(i + k) for k in range(n)])
        elif op == "cut":
            seen.append(plain(stats.extract()[0]))
        else:
            seen.append(stats.connections)
    seen.append(plain(stats.extract()[0]))
    return seen


@settings(max_examples=60, deadline=None)
@given(operations=_operations(), least=st.integers(1, 6))
def test_random_operations_match_the_pure_python_core(
    c_impl, py_impl, operations, least
):
    with lane_min(least):
        compiled = c_impl.Statistics()
    reference = py_impl.Statistics()
    try:
        assert _apply(compiled, operations) == _apply(reference, operations)
    finally:
        compiled.shutdown()
        reference.shutdown()


def test_threads_and_extracts_add_up_exactly_at_scale(c_impl):
    # Above the default threshold, four threads counting single packets and a
    # fifth extracting: every packet exactly once.
    conns = DEFAULT_MIN + 5000
    stats = c_impl.Statistics()
    stats.update_tx_virtual_batch([packet(i) for i in range(conns)])
    total: Counter = Counter()
    for key, counts in plain(stats.extract()[0]).items():
        total[key[1]] += counts[0]
    stats.update_tx_virtual_batch([packet(i) for i in range(conns)])
    assert stats._core._lane_state[0]
    done = threading.Event()

    def count(seed: int) -> None:
        rng = random.Random(seed)
        order = list(range(conns))
        rng.shuffle(order)
        for i in order[: conns // 2]:
            stats.update_tx_virtual(packet(i))

    def extract() -> None:
        while not done.is_set():
            for key, counts in plain(stats.extract()[0]).items():
                total[key[1]] += counts[0]

    workers = [threading.Thread(target=count, args=(seed,)) for seed in range(4)]
    reader = threading.Thread(target=extract)
    reader.start()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    done.set()
    reader.join()
    for key, counts in plain(stats.extract()[0]).items():
        total[key[1]] += counts[0]
    stats.shutdown()
    assert sum(total.values()) == 2 * conns + 4 * (conns // 2)
    expected: Counter = Counter()
    for seed in range(4):
        order = list(range(conns))
        random.Random(seed).shuffle(order)
        expected.update(order[: conns // 2])
    for i in range(conns):
        address = ip_address(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
        assert total[address] == 2 + expected[i]


def test_shutdown_keeps_the_held_packets(c_impl):
    windows = []
    with lane_min(1):
        stats = c_impl.Statistics(
            dump=lambda start, end, virtual, physical: windows.append(plain(virtual))
        )
    for i in range(300):
        stats.update_tx_virtual(packet(i % 7))
    assert stats._core._lane_state[1] > 0
    stats.shutdown()
    assert sum(counts[0] for window in windows for counts in window.values()) == 300


@pytest.mark.with_lanes
def test_c_lanes_tests_count_through_the_lane(impl, request):
    # What conftest.py's "c-lanes" parameter is for: the other modules'
    # tests with the lane in use from a window's second packet.
    stats = impl.Statistics()
    for i in range(3):
        stats.update_tx_virtual(packet(i))
    lanes = request.node.callspec.params["impl"] == "c-lanes"
    if impl.name == "c":
        assert stats._core._lane_state == (lanes, 1 if lanes else 0)
    assert stats.connections == 3
    stats.shutdown()
