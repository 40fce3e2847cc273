"""Statistics: windows, the dump callback, the flush thread, shutdown and bad input.

Every test runs against both cores through the ``impl`` fixture.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import random
import threading
import time
from collections import Counter
from datetime import timedelta, timezone

import pytest
from captures import icmp4, tcp4, udp4, udp6

import connstats

# the compiled core also with its lane in use from a window's second packet
pytestmark = pytest.mark.with_lanes

U64 = 1 << 64


class Recorder:
    """A dump callback that keeps every window it is given."""

    def __init__(self) -> None:
        self.windows: list[tuple] = []
        self.lock = threading.Lock()
        self.event = threading.Event()

    def __call__(self, start, end, virtual, physical) -> None:
        with self.lock:
            self.windows.append((start, end, dict(virtual), dict(physical)))
        self.event.set()

    def wait_for(self, count: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.windows) < count:
            assert time.monotonic() < deadline, (
                f"only {len(self.windows)} of {count} windows"
            )
            time.sleep(0.002)


def conn(impl, proto, src, sport, dst, dport):
    return impl.Connection(
        proto,
        impl.AddrPort(ipaddress.ip_address(src), sport),
        impl.AddrPort(ipaddress.ip_address(dst), dport),
    )


def totals(tables):
    """Sum windows' virtual tables into one dict of plain tuples."""
    out: dict = Counter()
    for table in tables:
        for key, counts in table.items():
            for i, value in enumerate(tuple(counts)):
                out[(key, i)] += value
    return out


# -- construction ------------------------------------------------------------------


def test_zero_value_is_ready_for_use(impl):
    stats = impl.Statistics()
    assert stats.extract() == ({}, {})
    packet = udp4("100.64.0.1", 51000, "100.64.0.2", 443, b"x" * 10)
    stats.update_tx_virtual(packet)
    virtual, physical = stats.extract()
    key = conn(impl, 17, "100.64.0.1", 51000, "100.64.0.2", 443)
    assert virtual == {key: impl.Counts(1, len(packet), 0, 0)}
    assert physical == {}
    assert stats.extract() == ({}, {})
    assert stats.test_extract() == ({}, {})
    assert stats.shutdown() is True


@pytest.mark.parametrize(
    "kwargs, error, word",
    [
        ({"max_period": -1}, ValueError, "max_period"),
        ({"max_period": float("nan")}, ValueError, "max_period"),
        ({"max_period": float("inf")}, ValueError, "max_period"),
        ({"max_period": "1s"}, TypeError, "max_period"),
        ({"max_period": True}, TypeError, "max_period"),
        ({"max_conns": -1, "dump": print}, ValueError, "max_conns"),
        ({"max_conns": 1.5, "dump": print}, TypeError, "max_conns"),
        ({"max_conns": "10", "dump": print}, TypeError, "max_conns"),
        ({"dump": 42}, TypeError, "dump"),
        ({"max_conns": 10}, ValueError, "dump"),
        ({"max_period": 1}, ValueError, "dump"),
        ({"ignore_destinations": "100.100.100.100"}, TypeError, "ignore_destinations"),
        ({"ignore_destinations": ["not an ip"]}, ValueError, "ignore_destinations"),
        ({"ignore_destinations": [42]}, TypeError, "ignore_destinations"),
    ],
)
def test_bad_constructor_arguments(impl, kwargs, error, word):
    with pytest.raises(error, match=word):
        impl.Statistics(**kwargs)


def test_max_period_accepts_timedelta(impl):
    rec = Recorder()
    with impl.Statistics(timedelta(milliseconds=10), dump=rec) as stats:
        stats.update_tx_virtual(udp4("10.0.0.1", 1, "10.0.0.2", 2))
        rec.wait_for(1, timeout=2)


# -- the reference's scenarios ---------------------------------------------------------


def test_one_rx_packet_and_short_period_dumps_within_a_second(impl):
    rec = Recorder()
    stats = impl.Statistics(max_period=0.010, dump=rec)
    try:
        packet = udp4("100.64.0.2", 443, "100.64.0.1", 51000, b"hello")
        before = time.time()
        stats.update_rx_virtual(packet)
        assert rec.event.wait(1.0), "no dump within 1 s"
        start, end, virtual, physical = rec.windows[0]
        assert start.tzinfo is timezone.utc and end.tzinfo is timezone.utc
        assert (
            before - 0.001
            <= start.timestamp()
            <= end.timestamp()
            <= time.time() + 0.001
        )
        assert end.timestamp() - start.timestamp() >= 0.009
        # rx swaps src and dst
        assert virtual == {
            conn(impl, 17, "100.64.0.1", 51000, "100.64.0.2", 443): impl.Counts(
                0, 0, 1, len(packet)
            )
        }
        assert physical == {}
    finally:
        assert stats.shutdown(timeout=5)


def test_concurrent_updates_with_small_windows_add_up_exactly(impl):
    """Go's TestConcurrent: every window is small and nothing is lost."""
    rec = Recorder()
    max_conns = 10
    stats = impl.Statistics(max_period=0.010, max_conns=max_conns, dump=rec)
    nthreads = max(4, os.cpu_count() or 1)
    updates = 1000 if impl.name == "c" else 400
    tallies: list[Counter] = [Counter() for _ in range(nthreads)]
    barrier = threading.Barrier(nthreads)

    def worker(index: int) -> None:
        rng = random.Random(index)
        barrier.wait()
        for i in range(updates):
            src = f"100.64.0.{rng.randrange(16)}"
            dst = f"100.64.1.{rng.randrange(16)}"
            sport, dport = 1000 + rng.randrange(16), 2000 + rng.randrange(16)
            packet = udp4(src, sport, dst, dport, b"x" * rng.randrange(64))
            if rng.random() < 0.5:
                stats.update_tx_virtual(packet)
                key = (src, sport, dst, dport)
                tallies[index][(key, 0)] += 1
                tallies[index][(key, 1)] += len(packet)
            else:
                stats.update_rx_virtual(packet)
                key = (dst, dport, src, sport)
                tallies[index][(key, 2)] += 1
                tallies[index][(key, 3)] += len(packet)
            if i % 97 == 0:
                time.sleep(rng.random() / 1000)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stats.shutdown(timeout=30)

    expected: Counter = Counter()
    for tally in tallies:
        expected.update(tally)
    got: Counter = Counter()
    for start, end, virtual, physical in rec.windows:
        assert 1 <= len(virtual) + len(physical) <= max_conns
        assert start <= end
        for key, counts in virtual.items():
            plain = (str(key.src.addr), key.src.port, str(key.dst.addr), key.dst.port)
            for i, value in enumerate(tuple(counts)):
                if value:
                    got[(plain, i)] += value
    assert got == expected
    assert stats.dropped_windows == 0


def test_max_conns_cut_hands_over_the_full_window(impl):
    rec = Recorder()
    stats = impl.Statistics(max_conns=3, dump=rec)
    packets = [udp4("10.0.0.1", port, "10.0.0.2", 53) for port in range(1, 5)]
    for packet in packets[:3]:
        stats.update_tx_virtual(packet)
        stats.update_tx_virtual(packet)  # existing connections never cut
    time.sleep(0.05)
    assert rec.windows == []
    assert stats.connections == 3
    stats.update_tx_virtual(packets[3])
    rec.wait_for(1)
    _, _, virtual, physical = rec.windows[0]
    assert virtual == {
        conn(impl, 17, "10.0.0.1", port, "10.0.0.2", 53): impl.Counts(
            2, 2 * len(packets[0]), 0, 0
        )
        for port in (1, 2, 3)
    }
    assert stats.connections == 1
    assert stats.extract()[0] == {
        conn(impl, 17, "10.0.0.1", 4, "10.0.0.2", 53): impl.Counts(
            1, len(packets[3]), 0, 0
        )
    }
    stats.shutdown()


def test_physical_connections_count_towards_max_conns(impl):
    rec = Recorder()
    with impl.Statistics(max_conns=2, dump=rec) as stats:
        stats.update_tx_virtual(udp4("10.0.0.1", 1, "10.0.0.2", 2))
        stats.update_tx_physical("100.64.0.1", ("192.0.2.1", 41641), 100)
        stats.update_rx_physical("100.64.0.1", "[2001:db8::1]:41641", 200)
        rec.wait_for(1)
    assert len(rec.windows) == 2
    _, _, virtual, physical = rec.windows[0]
    assert len(virtual) == 1 and len(physical) == 1
    _, _, virtual, physical = rec.windows[1]
    key = impl.Connection(
        0,
        impl.AddrPort(ipaddress.ip_address("100.64.0.1"), 0),
        impl.AddrPort(ipaddress.ip_address("2001:db8::1"), 41641),
    )
    assert virtual == {} and physical == {key: impl.Counts(0, 0, 1, 200)}


# -- shutdown ------------------------------------------------------------------------


def test_shutdown_flushes_the_final_window_and_drops_later_updates(impl):
    rec = Recorder()
    stats = impl.Statistics(max_period=3600, dump=rec)
    packet = tcp4("10.0.0.1", 1234, "10.0.0.2", 80)
    stats.update_tx_virtual(packet)
    assert stats.shutdown(timeout=5) is True
    assert len(rec.windows) == 1
    assert rec.windows[0][2] == {
        conn(impl, 6, "10.0.0.1", 1234, "10.0.0.2", 80): impl.Counts(
            1, len(packet), 0, 0
        )
    }
    stats.update_tx_virtual(packet)
    stats.update_rx_virtual(packet)
    stats.update_tx_virtual_batch([packet, packet])
    stats.update_tx_physical("10.0.0.1", ("10.0.0.3", 1), 5)
    assert stats.extract() == ({}, {})
    assert stats.shutdown() is True
    assert len(rec.windows) == 1
    assert stats.is_shutdown
    assert not any(
        t.name == "connstats-flush" and t.is_alive() and t is stats._flusher.thread
        for t in threading.enumerate()
    )


def test_shutdown_without_dump_keeps_counts_for_extract(impl):
    stats = impl.Statistics()
    packet = icmp4("10.0.0.1", "10.0.0.2", b"ping")
    stats.update_tx_virtual(packet)
    assert stats.shutdown() is True
    stats.update_tx_virtual(packet)
    assert stats.extract()[0] == {
        conn(impl, 1, "10.0.0.1", 0, "10.0.0.2", 0): impl.Counts(1, len(packet), 0, 0)
    }


def test_concurrent_shutdown_calls_all_return_after_the_flush(impl):
    rec = Recorder()
    stats = impl.Statistics(max_period=3600, dump=rec)
    stats.update_tx_virtual(udp4("10.0.0.1", 1, "10.0.0.2", 2))
    barrier = threading.Barrier(8)
    results = []

    def stop() -> None:
        barrier.wait()
        results.append(stats.shutdown(timeout=10))
        results.append(len(rec.windows))

    threads = [threading.Thread(target=stop) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True, 1] * 8 or sorted(results) == sorted([True, 1] * 8)
    assert len(rec.windows) == 1


def test_shutdown_from_inside_dump(impl):
    windows = []
    done = threading.Event()
    holder = {}

    counted = threading.Event()

    def dump(start, end, virtual, physical):
        windows.append(virtual)
        if len(windows) == 1:
            # The packet that cut this window may still be on its way into
            # the next one (free-threaded builds run dump meanwhile); one
            # still being counted when shutdown starts may be dropped.
            assert counted.wait(5)
            holder["result"] = holder["stats"].shutdown()
            # counted after shutdown started: dropped
            holder["stats"].update_tx_virtual(udp4("10.0.0.9", 9, "10.0.0.2", 2))
        done.set()

    stats = impl.Statistics(max_conns=1, dump=dump)
    holder["stats"] = stats
    stats.update_tx_virtual(udp4("10.0.0.1", 1, "10.0.0.2", 2))
    stats.update_tx_virtual(udp4("10.0.0.3", 3, "10.0.0.2", 2))  # cuts the first window
    counted.set()
    assert done.wait(5)
    assert stats.shutdown(timeout=5) is True
    assert holder["result"] is False  # it cannot wait for itself
    assert len(windows) == 2  # the first window, then the final one
    assert list(windows[1]) == [conn(impl, 17, "10.0.0.3", 3, "10.0.0.2", 2)]


def test_with_block_shuts_down(impl):
    rec = Recorder()
    with impl.Statistics(max_period=3600, dump=rec) as stats:
        stats.update_tx_virtual(udp4("10.0.0.1", 1, "10.0.0.2", 2))
    assert stats.is_shutdown
    assert len(rec.windows) == 1


def test_shutdown_rejects_bad_timeout(impl):
    stats = impl.Statistics()
    with pytest.raises(TypeError, match="timeout"):
        stats.shutdown(timeout="soon")
    with pytest.raises(ValueError, match="timeout"):
        stats.shutdown(timeout=-1)
    assert stats.shutdown() is True


def test_dump_exception_is_logged_and_later_windows_still_come(impl, caplog):
    calls = []

    def dump(start, end, virtual, physical):
        calls.append(virtual)
        if len(calls) == 1:
            raise RuntimeError("boom")

    stats = impl.Statistics(max_conns=1, dump=dump)
    with caplog.at_level(logging.ERROR, logger="connstats"):
        for port in range(3):
            stats.update_tx_virtual(udp4("10.0.0.1", port, "10.0.0.2", 2))
        assert stats.shutdown(timeout=5)
    assert len(calls) == 3
    assert stats.dump_errors == 1
    assert any(
        "boom" in (r.exc_text or "") or "dump" in r.getMessage() for r in caplog.records
    )


def test_dump_is_never_called_with_empty_tables(impl):
    rec = Recorder()
    stats = impl.Statistics(max_period=0.005, dump=rec)
    time.sleep(0.05)
    stats.extract()
    stats.update_tx_virtual(udp4("10.0.0.1", 1, "10.0.0.2", 2))
    stats.extract()  # takes the window before the period ends
    time.sleep(0.05)
    stats.shutdown()
    assert all(v or p for _, _, v, p in rec.windows)
    assert rec.windows == []


def test_dump_runs_on_one_thread_never_concurrently(impl):
    active = []
    names = set()
    overlap = []

    def dump(start, end, virtual, physical):
        names.add(threading.current_thread().name)
        active.append(1)
        if len(active) > 1:
            overlap.append(True)
        time.sleep(0.001)
        active.pop()

    stats = impl.Statistics(max_period=0.002, max_conns=2, dump=dump)
    for i in range(200):
        stats.update_tx_virtual(udp4("10.0.0.1", i, "10.0.0.2", 2))
    stats.shutdown(timeout=10)
    assert not overlap
    assert names == {"connstats-flush"}


# -- counting rules -------------------------------------------------------------------


def test_rx_and_tx_of_one_flow_share_a_connection(impl):
    stats = impl.Statistics()
    out = udp6("fd7a:115c:a1e0::1", 5000, "fd7a:115c:a1e0::2", 53, b"q" * 20)
    back = udp6("fd7a:115c:a1e0::2", 53, "fd7a:115c:a1e0::1", 5000, b"a" * 100)
    stats.update_tx_virtual(out)
    stats.update_rx_virtual(back)
    stats.update_rx_virtual(back)
    virtual, _ = stats.extract()
    assert virtual == {
        conn(impl, 17, "fd7a:115c:a1e0::1", 5000, "fd7a:115c:a1e0::2", 53): impl.Counts(
            1, len(out), 2, 2 * len(back)
        )
    }


def test_service_destinations_are_not_counted(impl):
    stats = impl.Statistics(ignore_destinations=connstats.TAILSCALE_SERVICE_ADDRESSES)
    stats.update_tx_virtual(udp4("100.64.0.1", 5000, "100.100.100.100", 53))
    stats.update_rx_virtual(udp4("100.100.100.100", 53, "100.64.0.1", 5000))
    stats.update_tx_virtual(udp6("fd7a:115c:a1e0::1", 5000, "fd7a:115c:a1e0::53", 53))
    stats.update_tx_virtual_batch([udp4("100.64.0.1", 5001, "100.100.100.100", 53)])
    counted = udp4(
        "100.100.100.100", 53, "100.64.0.1", 5000
    )  # from the service: counted
    stats.update_tx_virtual(counted)
    virtual, physical = stats.extract()
    assert virtual == {
        conn(impl, 17, "100.100.100.100", 53, "100.64.0.1", 5000): impl.Counts(
            1, len(counted), 0, 0
        )
    }
    assert physical == {}


def test_counters_wrap_at_2_to_the_64(impl):
    stats = impl.Statistics()
    for _ in range(3):
        stats.update_tx_physical("10.0.0.1", ("192.0.2.1", 1), U64 - 1)
    stats.update_rx_physical("10.0.0.1", ("192.0.2.1", 1), U64 - 1)
    stats.update_rx_physical("10.0.0.1", ("192.0.2.1", 1), 5)
    _, physical = stats.extract()
    (counts,) = physical.values()
    assert tuple(counts) == (3, (3 * (U64 - 1)) % U64, 2, (U64 - 1 + 5) % U64)


def test_physical_address_forms(impl):
    stats = impl.Statistics()
    src = ipaddress.ip_address("100.64.0.1")
    forms = [
        (src, ("192.0.2.1", 41641)),
        ("100.64.0.1", impl.AddrPort(ipaddress.ip_address("192.0.2.1"), 41641)),
        (src.packed, "192.0.2.1:41641"),
        (bytearray(src.packed), (ipaddress.ip_address("192.0.2.1").packed, 41641)),
    ]
    for s, d in forms:
        stats.update_tx_physical(s, d, 10)
    _, physical = stats.extract()
    key = impl.Connection(
        0,
        impl.AddrPort(src, 0),
        impl.AddrPort(ipaddress.ip_address("192.0.2.1"), 41641),
    )
    assert physical == {key: impl.Counts(4, 40, 0, 0)}


def test_connection_takes_addrports_or_address_port_pairs(impl):
    # both cores: a pair becomes an AddrPort (a Connection a caller builds
    # with tuples equals the one counted), anything else is refused by name
    a = ipaddress.ip_address("10.0.0.1")
    b = ipaddress.ip_address("10.0.0.2")
    built = impl.Connection(17, (a, 5000), (b, 53))
    assert type(built.src) is impl.AddrPort and type(built.dst) is impl.AddrPort
    assert built == impl.Connection(17, impl.AddrPort(a, 5000), impl.AddrPort(b, 53))
    assert (built.src.addr, built.dst.port) == (a, 53)
    for argname, args in (("src", ("10.0.0.1:1", (b, 53))), ("dst", ((a, 1), [b, 53]))):
        with pytest.raises(TypeError, match=f"^{argname}: expected an AddrPort"):
            impl.Connection(17, *args)


def test_every_short_random_packet_is_counted_as_decoded(impl):
    rng = random.Random(1234)
    stats = impl.Statistics()
    expected: Counter = Counter()
    for length in range(101):
        for _ in range(5):
            packet = bytes(rng.randrange(256) for _ in range(length))
            if length and rng.random() < 0.5:
                packet = bytes([rng.choice((0x45, 0x60))]) + packet[1:]
            proto, src, dst = impl.decode(packet)
            stats.update_tx_virtual(packet)
            expected[(impl.Connection(proto, src, dst), 0)] += 1
            expected[(impl.Connection(proto, src, dst), 1)] += len(packet)
    virtual, _ = stats.extract()
    got: Counter = Counter()
    for key, counts in virtual.items():
        got[(key, 0)] += counts.tx_packets
        got[(key, 1)] += counts.tx_bytes
    assert +got == +expected


# -- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "packet, error",
    [
        (None, TypeError),
        ("45000014", TypeError),
        (42, TypeError),
        ([0x45, 0], TypeError),
        (memoryview(bytes(range(40)))[::2], ValueError),
    ],
    ids=["None", "str", "int", "list", "non-contiguous"],
)
def test_bad_packets_raise_and_lose_nothing(impl, packet, error):
    stats = impl.Statistics()
    good = udp4("10.0.0.1", 1, "10.0.0.2", 2)
    stats.update_tx_virtual(good)
    for method in (stats.update_tx_virtual, stats.update_rx_virtual):
        with pytest.raises(error, match="packet"):
            method(packet)
    with pytest.raises(error, match=r"packets\[1\]"):
        stats.update_tx_virtual_batch([good, packet])
    virtual, _ = stats.extract()
    assert virtual == {
        conn(impl, 17, "10.0.0.1", 1, "10.0.0.2", 2): impl.Counts(1, len(good), 0, 0)
    }


@pytest.mark.parametrize(
    "args, error, word",
    [
        ((None, ("10.0.0.2", 1), 1), TypeError, "src"),
        (("not-an-ip", ("10.0.0.2", 1), 1), ValueError, "src"),
        ((b"\x01\x02\x03", ("10.0.0.2", 1), 1), ValueError, "src"),
        (("10.0.0.1", ("10.0.0.2", 70000), 1), ValueError, "dst"),
        (("10.0.0.1", ("10.0.0.2", "80"), 1), TypeError, "dst"),
        (("10.0.0.1", "10.0.0.2", 1), ValueError, "dst"),
        (("10.0.0.1", 5, 1), TypeError, "dst"),
        (("10.0.0.1", ("10.0.0.2", 1, 2), 1), ValueError, "dst"),
        (("10.0.0.1", ("10.0.0.2", 1), -1), ValueError, "n"),
        (("10.0.0.1", ("10.0.0.2", 1), 1.5), TypeError, "n"),
        (("10.0.0.1", ("10.0.0.2", 1), U64), ValueError, "n"),
    ],
)
def test_bad_physical_arguments_raise_and_lose_nothing(impl, args, error, word):
    stats = impl.Statistics()
    stats.update_tx_physical("10.0.0.1", ("10.0.0.2", 1), 7)
    with pytest.raises(error, match=rf"^{word}:"):
        stats.update_tx_physical(*args)
    with pytest.raises(error, match=rf"^{word}:"):
        stats.update_rx_physical(*args)
    _, physical = stats.extract()
    assert [tuple(c) for c in physical.values()] == [(1, 7, 0, 0)]
