"""The Core's counting and window bookkeeping (docs/contract.md §2, §3 and §7).

Tables are compared as plain tuples ``(proto, src_addr, sport, dst_addr,
dport) -> (tx_packets, tx_bytes, rx_packets, rx_bytes)`` so that the test
does not depend on which AddrPort/Connection classes a core returns.  The
last test replays random operation sequences against a small dict model.
"""

from __future__ import annotations

import array
import ipaddress
import random
import struct
import threading
import time
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tables import Key, plain, plain_key

# the compiled core also with its lane in use from a window's second packet
pytestmark = pytest.mark.with_lanes

U64 = 2**64 - 1
TCP, UDP, ICMP = 6, 17, 1

A = "10.1.0.1"
B = "10.1.0.2"
C = "10.1.0.3"
A6 = "fd00::a"
B6 = "fd00::b"
QUAD100 = "100.100.100.100"
QUAD100_6 = "fd7a:115c:a1e0::53"

ip = ipaddress.ip_address


# --------------------------------------------------------------------------
# packets


def ipv4(
    proto: int, src: str, dst: str, sport: int = 0, dport: int = 0, pad: int = 0
) -> bytes:
    payload = struct.pack("!HH", sport, dport) + bytes(16 + pad)
    return (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(payload),
            0,
            0,
            64,
            proto,
            0,
            ip(src).packed,
            ip(dst).packed,
        )
        + payload
    )


def ipv6(
    proto: int, src: str, dst: str, sport: int = 0, dport: int = 0, pad: int = 0
) -> bytes:
    payload = struct.pack("!HH", sport, dport) + bytes(16 + pad)
    return (
        struct.pack(
            "!IHBB16s16s",
            0x6000_0000,
            len(payload),
            proto,
            64,
            ip(src).packed,
            ip(dst).packed,
        )
        + payload
    )


# --------------------------------------------------------------------------
# plain views of what a core returns


def tables(window: Any) -> Optional[tuple[dict, dict]]:
    if window is None:
        return None
    virtual, physical = window.to_dicts()
    return plain(virtual), plain(physical)


def key(proto: int, src: str, sport: int, dst: str, dport: int) -> Key:
    return (proto, ip(src), sport, ip(dst), dport)


def pkey(src: str, dst: str, port: int) -> Key:
    return (0, ip(src), 0, ip(dst), port)


ZERO_KEY: Key = (0, None, 0, None, 0)


def snapshot(core: Any) -> tuple:
    """Everything observable about a core, for "nothing changed" checks."""
    return (
        core.connections,
        core.window_info(),
        core.dropped_windows,
        core.dropped_packets,
        core.dropped_bytes,
    )


# A small traffic mix: both families, both directions, garbage and empty.
TX1 = ipv4(TCP, A, B, 40000, 443, pad=10)  # 50 bytes
RX1 = ipv4(TCP, B, A, 443, 40000, pad=100)  # reply: same key after the swap
TX2 = ipv6(UDP, A6, B6, 5353, 53)
RX2 = ipv6(UDP, B6, A6, 53, 5353, pad=7)
ICMP1 = ipv4(ICMP, A, C)
GARBAGE = b"\x00garbage"
MIX = [TX1, RX1, TX2, RX2, ICMP1, GARBAGE, b"", TX1, TX2, bytes(range(60))]


# --------------------------------------------------------------------------
# virtual counting


def test_tx_and_rx_of_one_flow_merge_on_the_tx_key(impl):
    core = impl.Core()
    core.update_tx_virtual(TX1)
    core.update_rx_virtual(RX1)
    core.update_rx_virtual(RX1)
    assert tables(core.cut()) == (
        {key(TCP, A, 40000, B, 443): (1, len(TX1), 2, 2 * len(RX1))},
        {},
    )


def test_rx_alone_is_keyed_with_src_and_dst_swapped(impl):
    core = impl.Core()
    core.update_rx_virtual(RX2)
    assert tables(core.cut()) == ({key(UDP, A6, 5353, B6, 53): (0, 0, 1, len(RX2))}, {})


def test_every_packet_is_counted_under_its_decoded_key(impl):
    core = impl.Core()
    for packet in MIX:
        core.update_tx_virtual(packet)
    core.update_rx_virtual(GARBAGE)
    assert tables(core.cut()) == (
        {
            key(TCP, A, 40000, B, 443): (2, 2 * len(TX1), 0, 0),
            key(TCP, B, 443, A, 40000): (1, len(RX1), 0, 0),
            key(UDP, A6, 5353, B6, 53): (2, 2 * len(TX2), 0, 0),
            key(UDP, B6, 53, A6, 5353): (1, len(RX2), 0, 0),
            key(ICMP, A, 0, C, 0): (1, len(ICMP1), 0, 0),
            # garbage, the empty packet and a bad version all share the zero key
            ZERO_KEY: (3, len(GARBAGE) + 60, 1, len(GARBAGE)),
        },
        {},
    )


def test_bytes_counted_are_the_buffer_length(impl):
    core = impl.Core()
    big = bytearray(b"\xff" * 5 + TX1 + b"\xff" * 9)
    core.update_tx_virtual(memoryview(big)[5:-9])
    core.update_tx_virtual(bytearray(TX1))
    core.update_tx_virtual(array.array("B", TX1))
    core.update_tx_virtual(TX1 + bytes(1000))  # bytes past the total length count too
    assert tables(core.cut())[0] == {
        key(TCP, A, 40000, B, 443): (4, 4 * len(TX1) + 1000, 0, 0)
    }


def test_random_bytes_of_every_length_0_to_100_are_counted(impl):
    rng = random.Random(20240601)
    core = impl.Core()
    expected: dict[Key, list[int]] = {}
    for length in range(101):
        for first in (None, 0x45, 0x4F, 0x60):
            packet = bytearray(rng.randbytes(length))
            if first is not None and length:
                packet[0] = first
            packet = bytes(packet)
            tx = plain_key(impl.decode(packet))
            proto, s, sp, d, dp = tx
            rx = (proto, d, dp, s, sp)
            tx_counts = expected.setdefault(tx, [0, 0, 0, 0])
            tx_counts[0] += 1
            tx_counts[1] += length
            rx_counts = expected.setdefault(rx, [0, 0, 0, 0])
            rx_counts[2] += 1
            rx_counts[3] += length
            core.update_tx_virtual(packet)
            core.update_rx_virtual(packet)
    assert tables(core.cut()) == ({k: tuple(v) for k, v in expected.items()}, {})


# --------------------------------------------------------------------------
# physical counting


def test_physical_updates_count_without_swap(impl):
    core = impl.Core()
    core.update_tx_physical(A, ("203.0.113.7", 41641), 100)
    core.update_rx_physical(ip(A), "203.0.113.7:41641", 50)
    core.update_rx_physical(ip(A).packed, impl.AddrPort(ip("203.0.113.7"), 41641), 7)
    core.update_tx_physical(A6, "[2001:db8::9]:3478", 0)  # n = 0 is still a packet
    core.update_tx_physical(
        bytearray(ip(A6).packed), (ip("2001:db8::9").packed, 3478), 1
    )
    assert tables(core.cut()) == (
        {},
        {
            pkey(A, "203.0.113.7", 41641): (1, 100, 2, 57),
            pkey(A6, "2001:db8::9", 3478): (2, 1, 0, 0),
        },
    )


def test_virtual_and_physical_tables_stay_apart(impl):
    core = impl.Core()
    # IPv4 with hl > tl decodes to proto 0 with addresses and ports 0 ...
    packet = bytearray(ipv4(TCP, A, B))
    packet[2:4] = (19).to_bytes(2, "big")
    core.update_tx_virtual(bytes(packet))
    # ... the very key a physical update with port 0 produces
    core.update_tx_physical(A, (B, 0), 9)
    assert tables(core.cut()) == (
        {pkey(A, B, 0): (1, len(packet), 0, 0)},
        {pkey(A, B, 0): (1, 9, 0, 0)},
    )


def test_counters_wrap_at_2_to_the_64(impl):
    core = impl.Core()
    core.update_tx_physical(A, (B, 1), U64)
    core.update_tx_physical(A, (B, 1), U64)
    core.update_rx_physical(A, (B, 1), U64)
    assert tables(core.cut())[1] == {pkey(A, B, 1): (2, U64 - 1, 1, U64)}
    core.update_tx_physical(A, (B, 1), U64)
    core.update_tx_physical(A, (B, 1), 1)
    assert tables(core.cut())[1] == {pkey(A, B, 1): (2, 0, 0, 0)}


# --------------------------------------------------------------------------
# ignore_destinations


def test_ignore_destinations_are_checked_after_the_rx_swap(impl):
    core = impl.Core(ignore_destinations=[ip(QUAD100).packed, ip(QUAD100_6).packed])
    core.update_tx_virtual(ipv4(UDP, A, QUAD100, 5000, 53))  # to the service: ignored
    core.update_rx_virtual(ipv4(UDP, QUAD100, A, 53, 5000))  # from it: dst after swap
    core.update_tx_virtual(ipv6(UDP, A6, QUAD100_6, 5000, 53))
    core.update_rx_virtual(ipv6(UDP, QUAD100_6, A6, 53, 5000))
    assert core.window_info() is None  # ignored traffic does not even open a window
    assert core.cut() is None

    core.update_tx_virtual(ipv4(UDP, QUAD100, A, 53, 5000))  # the service as source
    core.update_rx_virtual(ipv4(UDP, A, QUAD100, 5000, 53))  # swapped: dst is A
    mapped = "::ffff:" + QUAD100  # another family: not the same address
    core.update_tx_virtual(ipv6(UDP, A6, mapped, 1, 53))
    core.update_tx_physical(QUAD100, (A, 53), 10)
    assert tables(core.cut()) == (
        {
            key(UDP, QUAD100, 53, A, 5000): (1, 40, 1, 40),
            key(UDP, A6, 1, mapped, 53): (1, 60, 0, 0),
        },
        {pkey(QUAD100, A, 53): (1, 10, 0, 0)},
    )


def test_ignore_destinations_may_be_any_iterable(impl):
    packed = {ip(QUAD100).packed}
    for ignore in (packed, iter(packed), frozenset(packed)):
        core = impl.Core(ignore_destinations=ignore)
        core.update_tx_virtual(ipv4(UDP, A, QUAD100, 5000, 53))
        core.update_tx_virtual(ipv4(UDP, A, B, 5000, 53))
        assert tables(core.cut()) == ({key(UDP, A, 5000, B, 53): (1, 40, 0, 0)}, {})


# --------------------------------------------------------------------------
# windows


def test_cut_returns_the_window_once(impl):
    core = impl.Core()
    assert core.cut() is None
    assert core.window_info() is None
    assert core.connections == 0
    before = time.time()
    core.update_tx_virtual(TX1)
    after = time.time()
    generation, start = core.window_info()
    assert before <= start <= after
    core.update_tx_virtual(TX2)
    assert core.window_info() == (
        generation,
        start,
    )  # only the first insertion starts it
    assert core.connections == 2
    window = core.cut()
    assert window.start == start
    assert start <= window.end <= time.time()
    assert len(window) == 2
    assert (window.packets, window.bytes) == (2, len(TX1) + len(TX2))
    assert core.cut() is None
    assert core.window_info() is None
    assert core.connections == 0
    # a window's dicts can be built more than once
    assert tables(window) == tables(window)


def test_cut_with_a_stale_generation_does_nothing(impl):
    core = impl.Core()
    core.update_tx_virtual(TX1)
    generation, _ = core.window_info()
    assert core.cut(generation + 1) is None
    assert core.connections == 1
    window = core.cut(generation)
    assert tables(window)[0] == {key(TCP, A, 40000, B, 443): (1, len(TX1), 0, 0)}
    core.update_tx_virtual(TX1)
    new_generation, _ = core.window_info()
    assert new_generation != generation
    assert core.cut(generation) is None  # the old generation cannot cut the new window
    assert core.cut(-1) is not None


def test_window_totals(impl):
    core = impl.Core()
    core.update_tx_virtual(TX1)
    core.update_rx_virtual(RX1)
    core.update_tx_physical(A, (B, 1), 1000)
    core.update_rx_physical(A, (B, 1), 24)
    window = core.cut()
    assert len(window) == 2
    assert window.packets == 4
    assert window.bytes == len(TX1) + len(RX1) + 1024


def test_max_conns_cuts_into_the_pending_queue(impl):
    core = impl.Core(max_conns=2)
    core.update_tx_virtual(TX1)
    first_generation, _ = core.window_info()
    core.update_tx_virtual(TX2)
    core.update_rx_virtual(RX1)  # existing connection: no cut
    core.update_tx_physical(A, (B, 1), 5)  # third connection: cut first
    assert core.connections == 1
    assert core.window_info()[0] != first_generation
    window = core.pop_pending()
    assert core.pop_pending() is None
    assert tables(window) == (
        {
            key(TCP, A, 40000, B, 443): (1, len(TX1), 1, len(RX1)),
            key(UDP, A6, 5353, B6, 53): (1, len(TX2), 0, 0),
        },
        {},
    )
    assert window.start <= window.end <= core.window_info()[1]
    assert tables(core.cut()) == ({}, {pkey(A, B, 1): (1, 5, 0, 0)})
    assert core.dropped_windows == 0


def test_windows_carry_their_generation_and_pending_is_counted(impl):
    core = impl.Core(max_conns=1)
    core.update_tx_virtual(TX1)
    first, _ = core.window_info()
    core.update_tx_virtual(TX2)
    second, _ = core.window_info()
    core.update_tx_virtual(ICMP1)
    assert core.pending == 2
    assert core.pop_pending().generation == first
    assert core.pending == 1
    assert core.pop_pending().generation == second
    assert core.pending == 0
    third, _ = core.window_info()
    assert len({first, second, third}) == 3
    assert core.cut().generation == third


def test_max_conns_counts_virtual_and_physical_together(impl):
    core = impl.Core(max_conns=1)
    core.update_tx_physical(A, (B, 1), 5)
    core.update_tx_virtual(TX1)
    core.update_tx_physical(A, (B, 2), 5)
    assert [
        tables(core.pop_pending()),
        tables(core.pop_pending()),
        core.pop_pending(),
    ] == [
        ({}, {pkey(A, B, 1): (1, 5, 0, 0)}),
        ({key(TCP, A, 40000, B, 443): (1, len(TX1), 0, 0)}, {}),
        None,
    ]
    assert tables(core.cut()) == ({}, {pkey(A, B, 2): (1, 5, 0, 0)})


def test_updates_to_existing_connections_never_cut(impl):
    core = impl.Core(max_conns=1)
    for _ in range(100):
        core.update_tx_virtual(TX1)
        core.update_rx_virtual(RX1)
    assert core.pop_pending() is None
    assert tables(core.cut())[0] == {
        key(TCP, A, 40000, B, 443): (100, 100 * len(TX1), 100, 100 * len(RX1))
    }


def test_full_pending_queue_drops_and_counts_the_newest_windows(impl):
    core = impl.Core(max_conns=1, max_pending=2)
    for port in range(5):  # windows 0..3 are cut, window 4 stays open
        for _ in range(port + 1):
            core.update_tx_physical(A, (B, port), 10 + port)
    assert core.dropped_windows == 2  # windows 2 and 3
    assert core.dropped_packets == 3 + 4
    assert core.dropped_bytes == 3 * 12 + 4 * 13
    assert tables(core.pop_pending()) == ({}, {pkey(A, B, 0): (1, 10, 0, 0)})
    core.update_tx_physical(A, (B, 5), 1)  # room again: window 4 is queued
    assert core.dropped_windows == 2
    assert [
        tables(core.pop_pending()),
        tables(core.pop_pending()),
        core.pop_pending(),
    ] == [
        ({}, {pkey(A, B, 1): (2, 22, 0, 0)}),
        ({}, {pkey(A, B, 4): (5, 70, 0, 0)}),
        None,
    ]
    assert tables(core.cut()) == ({}, {pkey(A, B, 5): (1, 1, 0, 0)})


def test_max_pending_one_keeps_only_the_oldest_cut_window(impl):
    core = impl.Core(max_conns=1, max_pending=1)
    core.update_tx_virtual(TX1)
    core.update_rx_virtual(RX1)
    core.update_tx_virtual(TX2)  # cuts {TX1}: queued
    core.update_tx_virtual(ICMP1)  # cuts {TX2}: queue full, dropped
    assert (core.dropped_windows, core.dropped_packets, core.dropped_bytes) == (
        1,
        1,
        len(TX2),
    )
    assert tables(core.pop_pending())[0] == {
        key(TCP, A, 40000, B, 443): (1, len(TX1), 1, len(RX1))
    }
    assert core.pop_pending() is None
    assert tables(core.cut())[0] == {key(ICMP, A, 0, C, 0): (1, len(ICMP1), 0, 0)}


# --------------------------------------------------------------------------
# wait / notify


def test_first_insertion_and_max_conns_cut_notify(impl):
    core = impl.Core(max_conns=1)
    assert core.wait(0) is False
    core.update_tx_virtual(TX1)  # opens a window
    assert core.wait(0) is True
    assert core.wait(0) is False  # the notification was consumed
    core.update_tx_virtual(TX1)  # same window: no news
    assert core.wait(0) is False
    core.update_tx_virtual(TX2)  # max_conns cut
    assert core.wait(0) is True
    core.update_tx_physical(A, (B, 1), 0)  # another cut
    assert core.wait(0.0) is True
    core.cut()
    core.update_tx_physical(A, (B, 1), 0)  # first insertion after a cut
    assert core.wait(0) is True


def test_notify_is_kept_until_the_next_wait(impl):
    core = impl.Core()
    core.notify()
    assert core.wait(0) is True
    assert core.wait(0.01) is False


def test_wait_wakes_up_on_notify_from_another_thread(impl):
    core = impl.Core()
    results: list[tuple[bool, float]] = []

    def waiter() -> None:
        begin = time.monotonic()
        results.append((core.wait(30), time.monotonic() - begin))

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.05)
    core.update_tx_virtual(TX1)
    thread.join(10)
    assert not thread.is_alive()
    assert results[0][0] is True
    assert results[0][1] < 10


def test_wait_times_out(impl):
    core = impl.Core()
    begin = time.monotonic()
    assert core.wait(0.05) is False
    assert time.monotonic() - begin >= 0.04


# --------------------------------------------------------------------------
# close


def test_close_drops_later_updates_but_keeps_the_window(impl):
    core = impl.Core(max_conns=1)
    core.update_tx_virtual(TX1)
    assert core.closed is False
    core.close()
    assert core.closed is True
    core.update_tx_virtual(TX2)
    core.update_rx_virtual(RX1)
    core.update_tx_physical(A, (B, 1), 5)
    core.update_rx_physical(A, (B, 1), 5)
    core.update_tx_virtual_batch([TX2, TX1])
    core.update_rx_virtual_batch([RX1])
    core.update_tx_virtual_buffer(
        TX2, array.array("I", [0]), array.array("I", [len(TX2)])
    )
    core.update_rx_virtual_buffer(RX1, [0], [len(RX1)])
    assert core.pop_pending() is None
    assert core.dropped_windows == 0
    assert tables(core.cut()) == ({key(TCP, A, 40000, B, 443): (1, len(TX1), 0, 0)}, {})
    assert core.cut() is None
    core.update_tx_virtual(TX1)
    assert core.cut() is None
    core.close()  # idempotent
    assert core.closed is True


def test_after_fork_in_child_starts_from_an_empty_table(impl):
    core = impl.Core(max_conns=1)
    core.update_tx_virtual(TX1)
    core.update_tx_virtual(TX2)  # one pending window, one open
    core._after_fork_in_child()
    assert (core.connections, core.pending, core.window_info()) == (0, 0, None)
    assert core.pop_pending() is None
    assert core.cut() is None
    core.update_tx_virtual(TX1)  # the fresh lock works
    assert tables(core.cut())[0] == {key(TCP, A, 40000, B, 443): (1, len(TX1), 0, 0)}


# --------------------------------------------------------------------------
# batch and buffer entry points


def run_single(core: Any, tx: list, rx: list) -> None:
    for packet in tx:
        core.update_tx_virtual(packet)
    for packet in rx:
        core.update_rx_virtual(packet)


def drain(core: Any) -> list:
    """Pending windows, the open window and the drop counters."""
    windows = []
    while (window := core.pop_pending()) is not None:
        windows.append(tables(window))
    windows.append(tables(core.cut()))
    return [windows, core.dropped_windows, core.dropped_packets, core.dropped_bytes]


@pytest.mark.parametrize("max_conns, max_pending", [(0, 64), (3, 64), (2, 1)])
def test_batch_counts_like_single_calls(impl, max_conns, max_pending):
    tx = MIX + [bytearray(TX1), memoryview(RX2), array.array("B", ICMP1)]
    rx = list(reversed(MIX))
    single = impl.Core(max_conns=max_conns, max_pending=max_pending)
    run_single(single, tx, rx)
    batch = impl.Core(max_conns=max_conns, max_pending=max_pending)
    batch.update_tx_virtual_batch(tx)
    batch.update_rx_virtual_batch(tuple(rx))
    batch.update_rx_virtual_batch([])
    assert drain(batch) == drain(single)


def offsets_lengths(
    packets: list[bytes], gap: int = 3
) -> tuple[bytes, list[int], list[int]]:
    buffer = bytearray()
    offsets, lengths = [], []
    for packet in packets:
        buffer += b"\xee" * gap  # junk between packets must not leak in
        offsets.append(len(buffer))
        lengths.append(len(packet))
        buffer += packet
    buffer += b"\xee" * gap
    return bytes(buffer), offsets, lengths


def _int_containers() -> list:
    kinds = [
        ("list", list),
        ("tuple", tuple),
        ("array-I", lambda v: array.array("I", v)),
        ("array-q", lambda v: array.array("q", v)),
        ("memoryview-H", lambda v: memoryview(array.array("H", v))),
    ]
    return [pytest.param(f, id=name) for name, f in kinds]


@pytest.mark.parametrize("container", _int_containers())
@pytest.mark.parametrize("max_conns, max_pending", [(0, 64), (2, 1)])
def test_buffer_counts_like_single_calls(impl, container, max_conns, max_pending):
    tx = MIX
    rx = list(reversed(MIX))
    single = impl.Core(max_conns=max_conns, max_pending=max_pending)
    run_single(single, tx, rx)
    buffered = impl.Core(max_conns=max_conns, max_pending=max_pending)
    buffer, offsets, lengths = offsets_lengths(tx)
    buffered.update_tx_virtual_buffer(buffer, container(offsets), container(lengths))
    buffer, offsets, lengths = offsets_lengths(rx, gap=0)
    buffered.update_rx_virtual_buffer(
        bytearray(buffer), container(offsets), container(lengths)
    )
    buffered.update_rx_virtual_buffer(b"", container([]), container([]))
    assert drain(buffered) == drain(single)


def test_buffer_accepts_numpy_arrays_and_any_slice_order(impl):
    np = pytest.importorskip("numpy")
    buffer, offsets, lengths = offsets_lengths(MIX)
    # reversed and repeated slices: packets may overlap or come in any order
    order = list(reversed(range(len(MIX)))) + [0, 0]
    reference = impl.Core()
    run_single(reference, [MIX[i] for i in order], [])
    expected = tables(reference.cut())
    for dtype in (np.uint32, np.int64, np.uint16, np.int32):
        core = impl.Core()
        core.update_tx_virtual_buffer(
            np.frombuffer(buffer, dtype=np.uint8),
            np.array([offsets[i] for i in order], dtype=dtype),
            np.array([lengths[i] for i in order], dtype=dtype),
        )
        assert tables(core.cut()) == expected, dtype


def test_buffer_slice_may_end_exactly_at_the_end(impl):
    core = impl.Core()
    core.update_tx_virtual_buffer(TX1, [0, len(TX1)], [len(TX1), 0])
    assert tables(core.cut())[0] == {
        key(TCP, A, 40000, B, 443): (1, len(TX1), 0, 0),
        ZERO_KEY: (1, 0, 0, 0),
    }


# --------------------------------------------------------------------------
# bad arguments: TypeError/ValueError naming the argument, nothing counted


def primed(impl: Any, **kwargs: Any) -> Any:
    core = impl.Core(**kwargs)
    core.update_tx_virtual(TX1)
    core.update_tx_physical(A, (B, 1), 5)
    return core


PRIMED_TABLES = (
    {key(TCP, A, 40000, B, 443): (1, 50, 0, 0)},
    {pkey(A, B, 1): (1, 5, 0, 0)},
)


def strided(data: bytes) -> memoryview:
    return memoryview(bytes(b for x in data for b in (x, 0)))[::2]


@pytest.mark.parametrize("method", ["update_tx_virtual", "update_rx_virtual"])
@pytest.mark.parametrize(
    "bad, exc",
    [("45000014", TypeError), (None, TypeError), (7, TypeError), ([0x45], TypeError)],
)
def test_bad_packet_raises_type_error_naming_packet(impl, method, bad, exc):
    core = primed(impl)
    before = snapshot(core)
    with pytest.raises(exc, match=r"^packet: expected a bytes-like object"):
        getattr(core, method)(bad)
    assert snapshot(core) == before
    assert tables(core.cut()) == PRIMED_TABLES


@pytest.mark.parametrize("method", ["update_tx_virtual", "update_rx_virtual"])
def test_non_contiguous_packet_raises_value_error_naming_packet(impl, method):
    core = primed(impl)
    with pytest.raises(ValueError, match=r"^packet: buffer is not C-contiguous"):
        getattr(core, method)(strided(TX2))
    assert tables(core.cut()) == PRIMED_TABLES


@pytest.mark.parametrize("method", ["update_tx_physical", "update_rx_physical"])
@pytest.mark.parametrize(
    "args, exc, name",
    [
        ((None, (B, 1), 5), TypeError, "src"),
        ((1.5, (B, 1), 5), TypeError, "src"),
        (("not an ip", (B, 1), 5), ValueError, "src"),
        ((b"\x01\x02\x03", (B, 1), 5), ValueError, "src"),
        ((A, B, 5), ValueError, "dst"),  # no port
        ((A, None, 5), TypeError, "dst"),
        ((A, (B,), 5), ValueError, "dst"),
        ((A, (B, 1, 2), 5), ValueError, "dst"),
        ((A, (B, 70000), 5), ValueError, "dst"),
        ((A, (B, -1), 5), ValueError, "dst"),
        ((A, (B, "80"), 5), TypeError, "dst"),
        ((A, ("nope", 1), 5), ValueError, "dst"),
        ((A, (B, 1), -1), ValueError, "n"),
        ((A, (B, 1), 2**64), ValueError, "n"),
        ((A, (B, 1), "5"), TypeError, "n"),
        ((A, (B, 1), 5.0), TypeError, "n"),
        ((A, (B, 1), None), TypeError, "n"),
    ],
)
def test_bad_physical_arguments_raise_naming_the_argument(
    impl, method, args, exc, name
):
    core = primed(impl)
    before = snapshot(core)
    with pytest.raises(exc, match=rf"^{name}: "):
        getattr(core, method)(*args)
    assert snapshot(core) == before
    assert tables(core.cut()) == PRIMED_TABLES


@pytest.mark.parametrize(
    "method", ["update_tx_virtual_batch", "update_rx_virtual_batch"]
)
@pytest.mark.parametrize(
    "batch, exc, pattern",
    [
        (
            [TX2, TX2, "x"],
            TypeError,
            r"^packets\[2\]: expected a bytes-like object, got str",
        ),
        (
            [TX2, None],
            TypeError,
            r"^packets\[1\]: expected a bytes-like object, got NoneType",
        ),
        ([7], TypeError, r"^packets\[0\]: expected a bytes-like object, got int"),
        (
            [TX2, "STRIDED", TX2],
            ValueError,
            r"^packets\[1\]: buffer is not C-contiguous",
        ),
    ],
)
def test_bad_batch_element_counts_nothing(impl, method, batch, exc, pattern):
    batch = [strided(TX2) if item == "STRIDED" else item for item in batch]
    core = primed(impl, max_conns=2)  # TX2 would also force a cut if counted
    before = snapshot(core)
    with pytest.raises(exc, match=pattern):
        getattr(core, method)(batch)
    assert snapshot(core) == before
    assert core.pop_pending() is None
    assert tables(core.cut()) == PRIMED_TABLES


@pytest.mark.parametrize(
    "method", ["update_tx_virtual_batch", "update_rx_virtual_batch"]
)
@pytest.mark.parametrize(
    "packets",
    [None, 5, 1.5, {TX1}, iter([TX1]), (p for p in [TX1])],
    ids=lambda v: type(v).__name__,
)
def test_batch_that_is_not_a_sequence_raises_type_error(impl, method, packets):
    core = primed(impl)
    with pytest.raises(TypeError, match=r"^packets\b"):
        getattr(core, method)(packets)
    assert tables(core.cut()) == PRIMED_TABLES


BUF, OFFS, LENS = offsets_lengths([TX2, TX2, RX2])


@pytest.mark.parametrize(
    "method", ["update_tx_virtual_buffer", "update_rx_virtual_buffer"]
)
@pytest.mark.parametrize(
    "args, exc, pattern",
    [
        (("text", OFFS, LENS), TypeError, r"^buffer\b"),
        ((None, OFFS, LENS), TypeError, r"^buffer\b"),
        (("STRIDED", OFFS, LENS), ValueError, r"^buffer: buffer is not C-contiguous"),
        ((BUF, None, LENS), TypeError, r"^offsets\b"),
        ((BUF, OFFS, 5), TypeError, r"^lengths\b"),
        ((BUF, array.array("d", OFFS), LENS), TypeError, r"^offsets\b"),
        ((BUF, OFFS, [float(n) for n in LENS]), TypeError, r"^lengths\b"),
        ((BUF, OFFS, LENS[:2]), ValueError, r"^(offsets|lengths)\b"),
        ((BUF, OFFS + [0], LENS), ValueError, r"^(offsets|lengths)\b"),
        ((BUF, OFFS[:2] + [-1], LENS), ValueError, r"^offsets\[2\]"),
        ((BUF, OFFS, LENS[:2] + [-1]), ValueError, r"^lengths\[2\]"),
        ((BUF, array.array("i", OFFS[:2] + [-5]), LENS), ValueError, r"^offsets\[2\]"),
        ((BUF, OFFS[:2] + [len(BUF)], LENS), ValueError, r"^(offsets|lengths)\[2\]"),
        (
            (BUF, OFFS[:2] + [len(BUF) - LENS[2] + 1], LENS),
            ValueError,
            r"^(offsets|lengths)\[2\]",
        ),
        ((BUF, OFFS, LENS[:2] + [len(BUF)]), ValueError, r"^(offsets|lengths)\[2\]"),
        ((BUF, OFFS[:2] + [2**40], LENS), ValueError, r"^(offsets|lengths)\[2\]"),
    ],
)
def test_bad_buffer_arguments_count_nothing(impl, method, args, exc, pattern):
    args = tuple(strided(BUF) if a == "STRIDED" else a for a in args)
    core = primed(impl, max_conns=2)
    before = snapshot(core)
    with pytest.raises(exc, match=pattern):
        getattr(core, method)(*args)
    assert snapshot(core) == before
    assert core.pop_pending() is None
    assert tables(core.cut()) == PRIMED_TABLES


@pytest.mark.parametrize(
    "kwargs, exc, name",
    [
        ({"max_conns": -1}, ValueError, "max_conns"),
        ({"max_conns": "3"}, TypeError, "max_conns"),
        ({"max_conns": 1.5}, TypeError, "max_conns"),
        ({"max_pending": -1}, ValueError, "max_pending"),
        ({"max_pending": 0}, ValueError, "max_pending"),
        ({"max_pending": None}, TypeError, "max_pending"),
        ({"ignore_destinations": [b"\x01\x02\x03"]}, ValueError, "ignore_destinations"),
        ({"ignore_destinations": [5]}, TypeError, "ignore_destinations"),
        ({"ignore_destinations": 5}, TypeError, "ignore_destinations"),
    ],
    ids=lambda v: repr(v) if isinstance(v, dict) else None,
)
def test_bad_constructor_arguments_raise_naming_the_argument(impl, kwargs, exc, name):
    with pytest.raises(exc, match=rf"^{name}\b"):
        impl.Core(**kwargs)


# --------------------------------------------------------------------------
# random operation sequences against a dict model


class Model:
    """The counting rules of docs/contract.md §2 in the plainest possible form."""

    def __init__(self, max_conns: int, max_pending: int, ignore: set) -> None:
        self.max_conns = max_conns
        self.max_pending = max_pending
        self.ignore = ignore
        self.window: Optional[tuple[dict, dict]] = None
        self.pending: list[tuple[dict, dict]] = []
        self.dropped = [0, 0, 0]

    def add(self, physical: bool, rx: bool, k: Key, n: int, packets: int = 1) -> None:
        if not physical and k[3] in self.ignore:  # virtual traffic only
            return
        if self.window is None:
            self.window = ({}, {})
        table = self.window[physical]
        if (
            k not in table
            and self.max_conns
            and (len(self.window[0]) + len(self.window[1]) + 1 > self.max_conns)
        ):
            full = self.window
            if len(self.pending) < self.max_pending:
                self.pending.append(full)
            else:
                counts = list(full[0].values()) + list(full[1].values())
                self.dropped[0] += 1
                self.dropped[1] += sum(c[0] + c[2] for c in counts)
                self.dropped[2] += sum(c[1] + c[3] for c in counts)
            self.window = ({}, {})
            table = self.window[physical]
        counts = table.setdefault(k, [0, 0, 0, 0])
        i = 2 if rx else 0
        counts[i] = (counts[i] + packets) % 2**64
        counts[i + 1] = (counts[i + 1] + n) % 2**64

    def cut(self) -> Optional[tuple[dict, dict]]:
        window, self.window = self.window, None
        return frozen(window)

    def pop(self) -> Optional[tuple[dict, dict]]:
        return frozen(self.pending.pop(0)) if self.pending else None

    @property
    def connections(self) -> int:
        return 0 if self.window is None else len(self.window[0]) + len(self.window[1])


def frozen(window: Optional[tuple[dict, dict]]) -> Optional[tuple[dict, dict]]:
    if window is None:
        return None
    return tuple({k: tuple(v) for k, v in t.items()} for t in window)  # type: ignore[return-value]


HOSTS = [A, B, C, A6, B6, QUAD100, QUAD100_6]
POOL = [
    TX1, RX1, TX2, RX2, ICMP1, GARBAGE, b"",
    ipv4(UDP, A, QUAD100, 999, 53), ipv4(UDP, QUAD100, A, 53, 999),
    ipv6(TCP, A6, QUAD100_6, 1, 2), ipv6(TCP, QUAD100_6, A6, 2, 1),
    ipv4(TCP, B, C, 1, 2), ipv4(TCP, C, B, 2, 1), ipv6(UDP, B6, A6, 7, 7),
]  # fmt: skip

packets = st.sampled_from(POOL)
byte_counts = st.one_of(st.integers(0, 1500), st.sampled_from([U64, U64 - 1, 2**63]))
physical_args = st.tuples(
    st.sampled_from(HOSTS), st.sampled_from(HOSTS), st.integers(0, 3), byte_counts
)
# pre-parsed: (proto, src, sport, dst, dport, packets, bytes, receive, physical)
preparsed_args = st.tuples(
    st.integers(0, 255),
    st.sampled_from([None, *HOSTS]),
    st.integers(0, 3),
    st.sampled_from([None, *HOSTS]),
    st.integers(0, 3),
    byte_counts,
    byte_counts,
    st.booleans(),
    st.booleans(),
)
operations = st.one_of(
    st.tuples(st.sampled_from(["tx", "rx"]), packets),
    st.tuples(st.sampled_from(["ptx", "prx"]), physical_args),
    st.tuples(st.just("pre"), preparsed_args),
    st.tuples(st.just("records"), st.lists(preparsed_args, max_size=6)),
    st.tuples(
        st.sampled_from(["txb", "rxb", "txbuf", "rxbuf"]), st.lists(packets, max_size=6)
    ),
    st.tuples(st.sampled_from(["cut", "pop"]), st.none()),
)


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    max_conns=st.integers(0, 4),
    max_pending=st.integers(1, 3),
    ignore=st.lists(st.sampled_from([QUAD100, QUAD100_6, A]), unique=True, max_size=2),
    ops=st.lists(operations, max_size=40),
)
def test_random_operations_match_the_dict_model(
    impl, max_conns, max_pending, ignore, ops
):
    core = impl.Core(
        max_conns=max_conns,
        ignore_destinations=[ip(h).packed for h in ignore],
        max_pending=max_pending,
    )
    model = Model(max_conns, max_pending, {ip(h) for h in ignore})

    def model_virtual(packet: bytes, rx: bool) -> None:
        proto, s, sp, d, dp = plain_key(impl.decode(packet))
        k = (proto, d, dp, s, sp) if rx else (proto, s, sp, d, dp)
        model.add(False, rx, k, len(packet))

    def endpoint(host: Optional[str], port: int) -> tuple[Any, int]:
        return (None if host is None else ip(host), port)

    def model_preparsed(arg: tuple) -> None:
        proto, s, sp, d, dp, npkts, n, rx, physical = arg
        k = (proto, *endpoint(s, sp), *endpoint(d, dp))
        model.add(physical, rx, k, n, npkts)

    def as_record(arg: tuple) -> bytes:
        proto, s, sp, d, dp, npkts, n, rx, physical = arg
        fam = [0 if h is None else ip(h).version for h in (s, d)]
        raw = [b"" if h is None else ip(h).packed for h in (s, d)]
        flags = (1 if rx else 0) | (2 if physical else 0)
        return struct.pack(
            "<BBBBHH16s16sQQ", proto, flags, *fam, sp, dp, *raw, npkts, n
        )

    for op, arg in ops:
        if op == "pre":
            proto, s, sp, d, dp, npkts, n, rx, physical = arg
            method = core.update_physical if physical else core.update_virtual
            method(proto, endpoint(s, sp), endpoint(d, dp), npkts, n, receive=rx)
            model_preparsed(arg)
        elif op == "records":
            core.update_records(b"".join(as_record(a) for a in arg))
            for a in arg:
                model_preparsed(a)
        elif op in ("tx", "rx"):
            getattr(core, f"update_{op}_virtual")(arg)
            model_virtual(arg, op == "rx")
        elif op in ("ptx", "prx"):
            src, dst, port, n = arg
            rx = op == "prx"
            getattr(core, f"update_{op[1:]}_physical")(src, (dst, port), n)
            model.add(True, rx, (0, ip(src), 0, ip(dst), port), n)
        elif op in ("txb", "rxb"):
            getattr(core, f"update_{op[:2]}_virtual_batch")(arg)
            for packet in arg:
                model_virtual(packet, op == "rxb")
        elif op in ("txbuf", "rxbuf"):
            buffer, offsets, lengths = offsets_lengths(arg, gap=1)
            getattr(core, f"update_{op[:2]}_virtual_buffer")(
                buffer, array.array("I", offsets), array.array("I", lengths)
            )
            for packet in arg:
                model_virtual(packet, op == "rxbuf")
        elif op == "cut":
            assert tables(core.cut()) == model.cut()
        else:
            assert tables(core.pop_pending()) == model.pop()
        assert core.connections == model.connections
        assert core.dropped_windows == model.dropped[0]

    assert (core.dropped_packets, core.dropped_bytes) == tuple(
        d % 2**64 for d in model.dropped[1:]
    )
    while model.pending:
        assert tables(core.pop_pending()) == model.pop()
    assert core.pop_pending() is None
    assert tables(core.cut()) == model.cut()
