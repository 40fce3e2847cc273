"""Statistics' per-packet methods: where they come from, and who shares them.

With the compiled core they are C methods of Statistics' base class
(``CountingMethods``), so each attribute access makes a bound method of its
own: threads that fetch ``stats.update_tx_virtual`` once each call objects
of their own and never write a shared object's reference count on the packet
path (what makes them scale on free-threaded CPython 3.13).  These tests pin
that, the exact totals of threads counting through every entry point with
their own fetched methods, and that the routing to the core cannot be
replaced while in use.
"""

from __future__ import annotations

import ipaddress
import struct
import sys
import threading
from collections import Counter

import pytest
from captures import udp4

import connstats
from connstats import _fastparse_py, _impl
from connstats._statistics import _HOT_PATH as HOT_PATH

# the compiled core also with its lane in use from a window's second packet
pytestmark = pytest.mark.with_lanes

NTHREADS = 6


def _defers(impl) -> bool:
    return bool(getattr(impl.module, "HAS_DEFERRED_REFCOUNT", False))


def test_each_thread_fetches_a_method_of_its_own(impl):
    stats = impl.Statistics()
    try:
        fetched: list[object] = []
        lock = threading.Lock()

        def fetch() -> None:
            method = stats.update_tx_virtual
            with lock:
                fetched.append(method)

        threads = [threading.Thread(target=fetch) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for method in fetched:
            method(udp4("10.0.0.1", 1000, "192.0.2.1", 53, b"x"))
        ((conn, counts),) = stats.extract()[0].items()
        assert (str(conn.src.addr), conn.src.port, counts.tx_packets) == (
            "10.0.0.1",
            1000,
            4,
        )
        if impl.name == "c" and _impl.IS_COMPILED and not _defers(impl):
            # one object per access, bound to the instance itself: nothing on
            # the call path is shared between threads but the instance
            assert len({id(m) for m in fetched}) == len(fetched)
            for method in fetched:
                assert method.__self__ is stats
            for name in HOT_PATH:
                assert name not in vars(stats)
                assert getattr(stats, name) is not getattr(stats, name)
        else:
            # the pure core (and 3.14t, and Statistics on the pure-Python
            # base with CONNSTATS_NO_EXTENSIONS=1): the core's bound
            # methods, stored
            for name in HOT_PATH:
                assert vars(stats)[name] == getattr(stats._core, name)
    finally:
        stats.shutdown()


def _conn_packets(index: int, conns: int, reply: bool = False) -> list[bytes]:
    packets = []
    for c in range(conns):
        client = (f"10.{index}.{c // 200}.{c % 200 + 1}", 1000 + c)
        server = ("192.0.2.1", 53)
        a, b = (server, client) if reply else (client, server)
        packets.append(udp4(a[0], a[1], b[0], b[1], b"x" * index))
    return packets


def test_threads_counting_through_every_entry_point_with_their_own_methods(impl):
    """Each thread fetches every counting method once; totals are exact."""
    stats = impl.Statistics()
    conns, rounds = (300, 20) if impl.name == "c" else (40, 5)
    work = [_conn_packets(i, conns) for i in range(NTHREADS)]
    replies = [_conn_packets(i, conns, reply=True) for i in range(NTHREADS)]
    peers = [ipaddress.ip_address(f"198.51.100.{i + 1}") for i in range(NTHREADS)]
    errors: list[BaseException] = []
    start = threading.Barrier(NTHREADS)

    def sender(i: int) -> None:
        try:
            tx, rx = stats.update_tx_virtual, stats.update_rx_virtual
            tx_batch, rx_batch = (
                stats.update_tx_virtual_batch,
                stats.update_rx_virtual_batch,
            )
            tx_buf = stats.update_tx_virtual_buffer
            tx_phys, rx_phys = stats.update_tx_physical, stats.update_rx_physical
            virtual, physical = stats.update_virtual, stats.update_physical
            records = stats.update_records
            packets, answers = work[i], replies[i]
            joined = b"".join(packets)
            offsets = [sum(len(p) for p in packets[:k]) for k in range(len(packets))]
            lengths = [len(p) for p in packets]
            local = ipaddress.ip_address("192.0.2.200")
            # the same flows, pre-parsed: one record per flow and direction
            flows = [connstats.decode(p) for p in packets]
            record = struct.Struct(connstats.RECORD_FORMAT)
            table = b"".join(
                record.pack(
                    proto, rx, 4, 4, src.port, dst.port,
                    src.addr.packed, dst.addr.packed, 1, len(p),
                )
                for (proto, src, dst), p in zip(flows, packets)
                for rx in (0, connstats.RECORD_RECEIVE)
            )  # fmt: skip
            start.wait()
            for _ in range(rounds):
                for p, q in zip(packets, answers):
                    tx(p)
                    rx(q)
                tx_batch(packets)
                rx_batch(answers)
                tx_buf(joined, offsets, lengths)
                tx_phys(local, (peers[i], 41641), 100)
                rx_phys(local, (peers[i], 41641), 50)
                for (proto, src, dst), p in zip(flows, packets):
                    virtual(proto, src, dst, 2, 2 * len(p))
                    virtual(proto, src, dst, 1, len(p), receive=True)
                records(table)
                physical(0, (local, 0), (peers[i], 41641), 3, 300, True)
                tx_phys(local, (peers[i], 41641), 1000, packets=10)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(NTHREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    virtual, physical = stats.extract()
    stats.shutdown()
    assert not errors, errors
    expected = {
        (f"10.{i}.{c // 200}.{c % 200 + 1}", 1000 + c): i
        for i in range(NTHREADS)
        for c in range(conns)
    }
    got = {}
    for conn, c in virtual.items():
        assert (str(conn.dst.addr), conn.dst.port) == ("192.0.2.1", 53), conn
        got[(str(conn.src.addr), conn.src.port)] = c
    assert set(got) == set(expected)
    for key, i in expected.items():
        c = got[key]
        size = 28 + i
        # tx: single + batch + buffer + update_virtual (2) + a record;
        # rx: single + batch + update_virtual + a record
        assert (c.tx_packets, c.tx_bytes) == (6 * rounds, 6 * rounds * size), key
        assert (c.rx_packets, c.rx_bytes) == (4 * rounds, 4 * rounds * size), key
    by_peer = {str(conn.dst.addr): c for conn, c in physical.items()}
    assert set(by_peer) == {str(p) for p in peers}
    for peer in peers:
        counts = by_peer[str(peer)]
        assert (counts.tx_packets, counts.tx_bytes) == (11 * rounds, 1100 * rounds)
        assert (counts.rx_packets, counts.rx_bytes) == (4 * rounds, 350 * rounds)


def test_the_core_cannot_be_replaced(impl):
    stats = impl.Statistics()
    packet = udp4("10.0.0.1", 1000, "192.0.2.1", 53, b"x")
    stats.update_tx_virtual(packet)
    other = impl.Core()
    with pytest.raises(RuntimeError, match="already have a core"):
        stats._attach_core(other)
    stats.update_tx_virtual(packet)
    assert other.connections == 0
    (counts,) = stats.extract()[0].values()
    assert counts.tx_packets == 2
    stats.shutdown()


def test_threads_racing_to_replace_the_core_while_others_count(impl):
    """Hostile callers: attach attempts from many threads never land."""
    stats = impl.Statistics()
    packets = _conn_packets(1, 50)
    refused = Counter()
    stop = threading.Event()

    def attacker() -> None:
        while not stop.is_set():
            try:
                stats._attach_core(impl.Core())
            except RuntimeError:
                refused["n"] += 1

    def counter() -> None:
        update = stats.update_tx_virtual
        for _ in range(40):
            for p in packets:
                update(p)

    attackers = [threading.Thread(target=attacker) for _ in range(2)]
    counters = [threading.Thread(target=counter) for _ in range(3)]
    for t in attackers + counters:
        t.start()
    for t in counters:
        t.join()
    stop.set()
    for t in attackers:
        t.join()
    virtual, _ = stats.extract()
    stats.shutdown()
    assert refused["n"] > 0
    assert sum(c.tx_packets for c in virtual.values()) == 3 * 40 * 50


def test_unbound_calls_and_calls_before_init(impl):
    stats = impl.Statistics()
    packet = udp4("10.0.0.1", 1000, "192.0.2.1", 53, b"x")
    reply = udp4("192.0.2.1", 53, "10.0.0.1", 1000, b"x")
    type(stats).update_tx_virtual(stats, packet)
    connstats.Statistics.update_rx_virtual(stats, reply)
    (counts,) = stats.extract()[0].values()
    assert (counts.tx_packets, counts.rx_packets) == (1, 1)
    stats.shutdown()
    bare = impl.Statistics.__new__(impl.Statistics)
    for name in HOT_PATH:
        with pytest.raises(RuntimeError, match="__init__ was not called"):
            if name.endswith("_buffer"):
                getattr(bare, name)(packet, [0], [len(packet)])
            elif name in ("update_tx_physical", "update_rx_physical"):
                getattr(bare, name)("192.0.2.1", ("192.0.2.2", 1), 1)
            elif name in ("update_virtual", "update_physical"):
                getattr(bare, name)(17, ("192.0.2.1", 1), ("192.0.2.2", 2), 1, 29)
            elif name == "update_records":
                getattr(bare, name)(bytes(connstats.RECORD_SIZE))
            else:
                getattr(bare, name)(packet if name.endswith("virtual") else [packet])


def test_a_subclass_can_override_a_counting_method(impl):
    seen: list[bytes] = []

    class Tapped(impl.Statistics):
        def update_tx_virtual(self, packet):
            seen.append(bytes(packet))
            super().update_tx_virtual(packet)

    stats = Tapped()
    packet = udp4("10.0.0.1", 1000, "192.0.2.1", 53, b"x")
    stats.update_tx_virtual(packet)
    stats.update_rx_virtual(udp4("192.0.2.1", 53, "10.0.0.1", 1000, b"x"))
    assert seen == [packet]
    (counts,) = stats.extract()[0].values()
    assert (counts.tx_packets, counts.rx_packets) == (1, 1)
    stats.shutdown()


def test_both_bases_have_the_same_methods_and_docs():
    compiled = getattr(_impl.core, "CountingMethods", None)
    if not _impl.IS_COMPILED:
        pytest.skip("the compiled core is not built")
    assert compiled is not None
    for name in HOT_PATH:
        # (Cython puts the signature on the docstring's first line)
        assert (
            getattr(compiled, name)
            .__doc__.strip()
            .endswith(getattr(_fastparse_py.CountingMethods, name).__doc__.strip())
        ), name
    assert sys.modules["connstats._statistics"].Statistics.__mro__[1] is compiled
