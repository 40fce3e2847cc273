"""Python objects that lie: the cores must neither crash nor miscount.

Each class of issue 10 (items 1-5) has its tests here: a sequence that
changes while a batch reads it, address subclasses whose ``.packed`` has the
wrong size, ``int`` subclasses whose comparisons lie, re-running
``__init__`` on values.  Cases that crashed the old compiled core run in a
subprocess, so that a crash is reported as a failure instead of killing the
test run.  Out-of-memory paths are in test_out_of_memory.py.
"""

from __future__ import annotations

import array
import ipaddress
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from hostile import HUGE, HugeV4, HugeV6, LyingBytes, LyingInt, MyV4, ShortV6
from test_core_model import UDP, ipv4, key, pkey, tables

import connstats

# the compiled core also with its lane in use from a window's second packet
pytestmark = pytest.mark.with_lanes

A, B = "10.1.0.1", "10.1.0.2"


def run_isolated(impl: Any, body: str, timeout: float = 60) -> str:
    """Run `body` in a fresh interpreter with `core` = this core's module.

    Returns its stdout; fails the test (with the output) if it crashed."""
    package_root = os.path.dirname(os.path.dirname(connstats.__file__))
    module = "connstats._fastparse" if impl.name == "c" else "connstats._fastparse_py"
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    code = f"import sys\nsys.path.insert(0, {tests_dir!r})\nimport {module} as core\n"
    code += textwrap.dedent(body)
    env = dict(os.environ, PYTHONPATH=package_root, PYTHONFAULTHANDLER="1")
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert proc.returncode == 0, (
        f"exit status {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    return proc.stdout


# --------------------------------------------------------------------------
# 1. a batch's sequence changing while it is read


@pytest.mark.skipif(
    sys.version_info < (3, 12), reason="__buffer__ in Python classes needs 3.12+"
)
@pytest.mark.parametrize("how", ["clear", "replace", "truncate"])
@pytest.mark.parametrize("where", [0, 50, 100])
def test_batch_list_changed_by_an_items_buffer_method(impl, how, where):
    # One item's __buffer__ changes the list the batch is reading (and
    # "clear" drops the only other references to its items).  The batch
    # counts what the list held when the call began.
    out = run_isolated(
        impl,
        f"""
        from hostile import Mutating
        from test_core_model import UDP, ipv4

        c = core.Core()
        packets = [bytearray(ipv4(UDP, "10.1.0.1", "10.1.0.2", 1, 3 + i)) for i in range(50)]
        packets += [bytes(ipv4(UDP, "10.1.0.1", "10.1.0.2", 1, 100 + i)) for i in range(50)]
        packets.insert({where}, Mutating(packets, ipv4(UDP, "10.1.0.1", "10.1.0.2", 1, 2), {how!r}))
        c.update_tx_virtual_batch(packets)
        w = c.cut()
        print(len(w.to_dicts()[0]), w.packets)
        """,
    )
    assert out.split() == ["101", "101"]


def test_batch_list_mutated_by_other_threads(impl):
    # With the GIL this is a plain stress test; on a free-threaded build the
    # other threads really run during the read.  Every batch must count
    # either nothing of a list item or exactly the packet that was there.
    out = run_isolated(
        impl,
        """
        import threading
        from test_core_model import UDP, ipv4

        c = core.Core()
        packet = ipv4(UDP, "10.1.0.1", "10.1.0.2", 1, 2)
        shared = [packet] * 64
        stop = threading.Event()
        # Counted before the race: the window exists even if every racing
        # batch met the list between clear() and extend() (the GIL hands
        # over at the same places each loop, so that is not rare).
        c.update_tx_virtual_batch([packet] * 3)

        def mutate():
            while not stop.is_set():
                shared.clear()
                shared.extend([packet] * 64)
                shared[:] = [bytearray(packet)] * 32

        def feed():
            for _ in range(2000):
                c.update_tx_virtual_batch(shared)

        threads = [threading.Thread(target=mutate) for _ in range(2)]
        feeders = [threading.Thread(target=feed) for _ in range(2)]
        for t in threads + feeders:
            t.start()
        for t in feeders:
            t.join()
        stop.set()
        for t in threads:
            t.join()
        w = c.cut()
        v, _ = w.to_dicts()
        (counts,) = v.values()
        assert counts.tx_packets >= 3
        assert counts.tx_bytes == counts.tx_packets * len(packet)
        print("ok")
        """,
        timeout=120,
    )
    assert out.split() == ["ok"]


def test_index_sequence_is_read_once(impl):
    # An __index__ that empties the offsets list cannot change what is read.
    packet = ipv4(UDP, A, B, 1, 2)
    offsets: list[Any] = []

    class Clearing:
        def __index__(self) -> int:
            offsets.clear()
            return 0

    offsets += [Clearing(), len(packet), 2 * len(packet)]
    core = impl.Core()
    if impl.name == "c":
        # the compiled core takes real ints only
        with pytest.raises(TypeError, match=r"offsets\[0\]"):
            core.update_tx_virtual_buffer(packet * 3, offsets, [len(packet)] * 3)
    else:
        core.update_tx_virtual_buffer(packet * 3, offsets, [len(packet)] * 3)
        assert core.cut().packets == 3


# --------------------------------------------------------------------------
# 2. address objects whose bytes have the wrong size


BAD_ADDRESSES = {
    "v4-packed-256": lambda: HugeV4(A),
    "v6-packed-256": lambda: HugeV6("fd7a::1"),
    "v6-packed-4": lambda: ShortV6("fd7a::1"),
    "bytes-len-lies": lambda: LyingBytes(HUGE),
}


def outcome(call: Any, argname: str) -> str:
    """'rejected' if call() raises ValueError naming argname, else what happened."""
    try:
        call()
    except ValueError as exc:
        return "rejected" if str(exc).startswith(argname) else repr(exc)
    except Exception as exc:  # reported to the parent process
        return repr(exc)
    return "accepted"


# The old compiled core overflowed a stack or heap buffer on these (a crash,
# or a corrupt heap found later), so each test runs in its own interpreter.


def test_physical_rejects_addresses_of_the_wrong_size(impl):
    out = run_isolated(
        impl,
        """
        import ipaddress
        from test_hostile_callers import A, B, BAD_ADDRESSES, outcome
        from test_core_model import pkey, tables

        c = core.Core()
        good = ipaddress.ip_address(B)
        c.update_tx_physical(A, (good, 1), 10)
        for name, make in BAD_ADDRESSES.items():
            class Endpoint:
                addr = make()
                port = 1
            print(name, outcome(lambda: c.update_rx_physical(make(), (good, 1), 1), "src"))
            print(name, outcome(lambda: c.update_rx_physical(A, (make(), 1), 1), "dst"))
            print(name, outcome(lambda: c.update_tx_physical(A, Endpoint(), 1), "dst"))
        # nothing counted lost, nothing bogus counted
        print(tables(c.cut()) == ({}, {pkey(A, B, 1): (1, 10, 0, 0)}))
        """,
    )
    expected = [f"{name} rejected" for name in BAD_ADDRESSES for _ in range(3)]
    assert out.splitlines() == expected + ["True"]


def test_ignore_destinations_rejects_addresses_of_the_wrong_size(impl):
    out = run_isolated(
        impl,
        """
        from test_hostile_callers import BAD_ADDRESSES, outcome

        for name, make in BAD_ADDRESSES.items():
            print(name, outcome(lambda: core.Core(ignore_destinations=[make()]),
                                "ignore_destinations"))
        """,
    )
    assert out.splitlines() == [f"{name} rejected" for name in BAD_ADDRESSES]


def test_compiled_addrport_rejects_addresses_of_the_wrong_size(impl):
    if impl.name != "c":
        pytest.skip("the pure-Python AddrPort is a NamedTuple that stores, not copies")
    out = run_isolated(
        impl,
        """
        from test_hostile_callers import BAD_ADDRESSES, outcome

        kept = []
        for name, make in BAD_ADDRESSES.items():
            if name != "bytes-len-lies":  # AddrPort takes ipaddress objects only
                print(name, outcome(lambda: kept.append(core.AddrPort(make(), 80)), "addr"))
        """,
    )
    assert out.splitlines() == [
        f"{name} rejected" for name in BAD_ADDRESSES if name != "bytes-len-lies"
    ]


def test_address_subclasses_of_the_right_size_still_work(impl):
    core = impl.Core(ignore_destinations=[MyV4("100.100.100.100")])
    core.update_tx_physical(MyV4(A), (MyV4(B), 7), 3)
    core.update_tx_virtual(ipv4(UDP, A, "100.100.100.100", 1, 53))
    virtual, physical = tables(core.cut())
    assert virtual == {}
    assert physical == {pkey(A, B, 7): (1, 3, 0, 0)}


# --------------------------------------------------------------------------
# 3. int subclasses whose comparisons lie


def test_index_lists_of_lying_ints(impl):
    # A negative offset read before the buffer (without the GIL), a negative
    # length added about 2**64 bytes.  Crash-prone, so in a subprocess.
    out = run_isolated(
        impl,
        """
        from test_core_model import UDP, ipv4
        from hostile import LyingInt

        c = core.Core()
        packet = ipv4(UDP, "10.1.0.1", "10.1.0.2", 1, 2)
        buffer = bytes(4096) + packet
        results = []
        for offsets, lengths in (
            ([LyingInt(-4096)], [LyingInt(len(packet))]),
            ([LyingInt(4096)], [LyingInt(-1)]),
            ([LyingInt(-(2**40))], [LyingInt(8)]),
            ([LyingInt(2**70)], [LyingInt(8)]),
        ):
            try:
                c.update_tx_virtual_buffer(buffer, offsets, lengths)
                results.append("accepted")
            except ValueError as exc:
                results.append("ValueError" if str(exc).startswith(("offsets[0]", "lengths[0]")) else repr(exc))
        c.update_tx_virtual_buffer(buffer, [LyingInt(4096)], [LyingInt(len(packet))])
        w = c.cut()
        print(*results, w.packets, w.bytes)
        """,
    )
    packet_len = len(ipv4(UDP, A, B, 1, 2))
    assert out.split() == ["ValueError"] * 4 + ["1", str(packet_len)]


def test_buffer_error_message_end_does_not_wrap(impl):
    big = (1 << 63) - 1
    core = impl.Core()
    with pytest.raises(ValueError) as info:
        core.update_tx_virtual_buffer(
            b"x" * 10, array.array("q", [big]), array.array("q", [big])
        )
    assert f"..{2 * big}" in str(info.value)
    assert "-" not in str(info.value).split("..")[1]


@pytest.mark.parametrize(
    "bad",
    [LyingInt(70000), LyingInt(-1)],
    ids=["port-70000", "port--1"],
)
def test_physical_port_of_lying_int(impl, bad):
    core = impl.Core()
    with pytest.raises(ValueError, match="dst"):
        core.update_tx_physical(A, (B, bad), 1)
    assert core.cut() is None


@pytest.mark.parametrize("bad", [LyingInt(-5), LyingInt(2**64 + 5)])
def test_physical_byte_count_of_lying_int(impl, bad):
    core = impl.Core()
    with pytest.raises(ValueError, match=r"^n: "):
        core.update_tx_physical(A, (B, 1), bad)
    assert core.cut() is None


def test_physical_lying_ints_are_counted_as_their_real_value(impl):
    core = impl.Core()
    core.update_tx_physical(A, (B, LyingInt(53)), LyingInt(1000))
    assert tables(core.cut())[1] == {pkey(A, B, 53): (1, 1000, 0, 0)}


@pytest.mark.parametrize("name", ["max_conns", "max_pending", "max_pending_conns"])
def test_core_limits_of_lying_ints(impl, name):
    with pytest.raises(ValueError, match=name):
        impl.Core(**{name: LyingInt(-5)})


def test_compiled_values_reject_lying_ints():
    fastparse = pytest.importorskip("connstats._fastparse")
    addr = ipaddress.ip_address(A)
    with pytest.raises(ValueError, match="port"):
        fastparse.AddrPort(addr, LyingInt(70000))
    with pytest.raises(ValueError, match="port"):
        fastparse.AddrPort(addr, LyingInt(-1))
    with pytest.raises(ValueError, match="proto"):
        fastparse.Connection(LyingInt(300))
    with pytest.raises(ValueError, match="tx_packets"):
        fastparse.Counts(LyingInt(-1))
    assert fastparse.AddrPort(addr, LyingInt(80)).port == 80


def test_wait_with_odd_timeouts(impl):
    core = impl.Core()
    for timeout in (float("nan"), -1.0, 0, 1e-9):
        assert core.wait(timeout) is False


# --------------------------------------------------------------------------
# 5. values that must not change


def test_reinit_cannot_change_values(impl):
    a = ipaddress.ip_address(A)
    b = ipaddress.ip_address(B)
    src = impl.AddrPort(a, 1)
    conn = impl.Connection(UDP, src, impl.AddrPort(b, 2))
    counts = impl.Counts(1, 2, 3, 4)
    table = {src: "src", conn: "conn", counts: "counts"}
    hashes = (hash(src), hash(conn), hash(counts))
    for value, args in (
        (src, (b, 9)),
        (conn, (6, impl.AddrPort(b, 9), impl.AddrPort(a, 9))),
        (counts, (9, 9, 9, 9)),
    ):
        try:
            value.__init__(*args)
        except TypeError:
            pass  # refusing is fine too
    assert src == impl.AddrPort(a, 1) and src.addr == a and src.port == 1
    assert tuple(conn) == (UDP, impl.AddrPort(a, 1), impl.AddrPort(b, 2))
    assert tuple(counts) == (1, 2, 3, 4)
    assert (hash(src), hash(conn), hash(counts)) == hashes
    assert table[src] == "src" and table[conn] == "conn" and table[counts] == "counts"


def test_values_from_new_are_fixed_too(impl):
    # X.__new__(X) gives the zero value, which __init__ cannot change later.
    ap = impl.AddrPort.__new__(impl.AddrPort, None, 0)
    before = hash(ap)
    try:
        ap.__init__(ipaddress.ip_address(A), 5)
    except TypeError:
        pass
    assert (ap.addr, ap.port, hash(ap)) == (None, 0, before)


def test_materialized_values_cannot_be_reinitialized(impl):
    core = impl.Core()
    core.update_tx_virtual(ipv4(UDP, A, B, 1, 2))
    virtual, _ = core.cut().to_dicts()
    ((conn, counts),) = virtual.items()
    for value, args in ((conn, (6,)), (conn.src, (None, 9)), (counts, (7, 7, 7, 7))):
        try:
            value.__init__(*args)
        except TypeError:
            pass
    assert virtual[conn] == counts == impl.Counts(1, 40, 0, 0)
    assert key(UDP, A, 1, B, 2) == (
        conn.proto,
        conn.src.addr,
        conn.src.port,
        conn.dst.addr,
        conn.dst.port,
    )


def test_core_reinit_does_not_lose_counts(impl):
    core = impl.Core()
    core.update_tx_virtual(ipv4(UDP, A, B, 1, 2))
    try:
        core.__init__(max_conns=1)
    except TypeError:
        pass
    assert core.cut().packets == 1
