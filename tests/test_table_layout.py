"""The counter table's two kinds of entries (issue 24).

The compiled core keeps connections whose addresses are IPv4 (or absent) in
48-byte entries with a 16-byte key, and every other connection in 72-byte
ones.  Which array a connection lives in must never show: connections whose
address bytes agree in their first four bytes stay apart, each lands in one
entry however the table grows, and every entry point (single, batch,
buffer, physical) finds the same entry.  The oracle is a plain dict keyed by
what ``decode`` returns; both cores run every test.
"""

from __future__ import annotations

import array
import ipaddress
import random

import pytest
from test_core_model import UDP, ipv4, ipv6, plain, plain_key

ip = ipaddress.ip_address


def test_entry_sizes():
    core = pytest.importorskip("connstats._fastparse")
    assert core.IPV4_KEY_BYTES == 16
    assert core.IPV4_ENTRY_BYTES == 48
    assert core.ENTRY_BYTES == 72


def _model_add(model, k, rx, n):
    c = model.setdefault(k, [0, 0, 0, 0])
    i = 2 if rx else 0
    c[i] += 1
    c[i + 1] += n


def _virtual_key(impl, packet, rx):
    proto, s, sp, d, dp = plain_key(impl.decode(packet))
    return (proto, d, dp, s, sp) if rx else (proto, s, sp, d, dp)


def test_keys_that_share_their_first_address_bytes_stay_apart(impl):
    # 1.2.3.4 is the first 4 bytes of none of these IPv6 addresses, but a
    # compact key that compared too few bytes, or a slot that named the
    # wrong array, would merge some of them.
    packets = [
        ipv4(UDP, "1.2.3.4", "5.6.7.8", 1, 2),
        ipv6(UDP, "::102:304", "::506:708", 1, 2),
        ipv6(UDP, "::ffff:1.2.3.4", "::ffff:5.6.7.8", 1, 2),
        ipv6(UDP, "102:304::", "506:708::", 1, 2),
        ipv4(UDP, "1.2.3.4", "5.6.7.8", 1, 3),
        ipv4(UDP, "1.2.3.4", "5.6.7.9", 1, 2),
        ipv4(UDP, "1.2.3.5", "5.6.7.8", 1, 2),
        ipv4(18, "1.2.3.4", "5.6.7.8"),  # proto 18: no ports
        b"",  # the zero connection: no addresses
        b"\x45",  # too short: also the zero connection
    ]
    core = impl.Core()
    model: dict = {}
    for times, p in enumerate(packets, start=1):
        for _ in range(times):
            core.update_tx_virtual(p)
            _model_add(model, _virtual_key(impl, p, False), False, len(p))
    physical_model: dict = {}
    for times, (src, dst) in enumerate(
        [
            ("1.2.3.4", "5.6.7.8"),
            ("1.2.3.4", "::ffff:5.6.7.8"),
            ("::ffff:1.2.3.4", "5.6.7.8"),
            ("::102:304", "::506:708"),
        ],
        start=1,
    ):
        for _ in range(times):
            core.update_rx_physical(src, (dst, 80), 100)
            _model_add(physical_model, (0, ip(src), 0, ip(dst), 80), True, 100)
    virtual, physical = core.cut().to_dicts()
    assert plain(virtual) == {k: tuple(v) for k, v in model.items()}
    assert plain(physical) == {k: tuple(v) for k, v in physical_model.items()}
    assert len(model) == 9 and len(physical_model) == 4


@pytest.mark.parametrize("path", ["single", "batch", "buffer"])
def test_mixed_families_through_table_growth_match_a_dict(impl, path):
    # Thousands of connections of both kinds, interleaved, so that every
    # shard's index grows many times with both arrays in it; each packet
    # is sent twice (tx, then rx of the reply), so the second pass finds
    # what the first inserted.
    rng = random.Random(24)
    n = 6000 if impl.name == "c" else 1500
    packets = []
    for i in range(n):
        a, b = rng.randrange(1 << 32), rng.randrange(1 << 32)
        if rng.random() < 0.5:
            src, dst = str(ipaddress.IPv4Address(a)), str(ipaddress.IPv4Address(b))
            packets.append(ipv4(UDP, src, dst, i & 0xFFFF, 443, pad=i % 7))
        else:
            # the same 32 bits in the low bytes of an IPv6 address
            src = f"::{a >> 16:x}:{a & 0xFFFF:x}"
            dst = f"fd00::{b >> 16:x}:{b & 0xFFFF:x}"
            packets.append(ipv6(UDP, src, dst, i & 0xFFFF, 443, pad=i % 5))
    replies = []
    for p in packets:
        proto, s, d = impl.decode(p)
        make = ipv4 if s.addr.version == 4 else ipv6
        replies.append(make(proto, str(d.addr), str(s.addr), d.port, s.port, pad=3))
    core = impl.Core()
    model: dict = {}
    for rx, batch in ((False, packets), (True, replies)):
        order = list(batch)
        rng.shuffle(order)
        d = "rx" if rx else "tx"
        if path == "single":
            update = getattr(core, f"update_{d}_virtual")
            for p in order:
                update(p)
        elif path == "batch":
            update = getattr(core, f"update_{d}_virtual_batch")
            for i in range(0, len(order), 300):
                update(order[i : i + 300])
        else:
            lengths = array.array("Q", map(len, order))
            offsets = array.array("Q", [0] * len(order))
            for i in range(1, len(order)):
                offsets[i] = offsets[i - 1] + lengths[i - 1]
            getattr(core, f"update_{d}_virtual_buffer")(
                b"".join(order), offsets, lengths
            )
        for p in order:
            _model_add(model, _virtual_key(impl, p, rx), rx, len(p))
    assert core.connections == n
    virtual, physical = core.cut().to_dicts()
    assert physical == {}
    assert plain(virtual) == {k: tuple(v) for k, v in model.items()}
    assert all(v[0] == 1 and v[2] == 1 for v in model.values())


def test_merge_windows_adds_up_like_counts():
    # `connstats read --total` adds windows up in the compiled core: the same
    # as adding their dicts' Counts (which wrap at 2**64), for both kinds of
    # entries and physical connections.
    core = pytest.importorskip("connstats._fastparse")
    rng = random.Random(7)
    windows = []
    for w in range(4):
        c = core.Core()
        for i in range(400):
            k = rng.randrange(300)
            if k % 3 == 0:
                p = ipv6(UDP, f"fd00::{k:x}", "fd00::1", k, 53, pad=k % 5)
            else:
                p = ipv4(UDP, f"10.0.{k >> 8}.{k & 255}", "10.9.9.9", k, 53, pad=w)
            (c.update_rx_virtual if i % 4 == 0 else c.update_tx_virtual)(p)
        c.update_tx_physical("10.0.0.1", ("fd00::2", 41641), 2**64 - 1 - w)
        c.update_rx_physical("10.0.0.1", ("10.0.0.2", 41641), 2**63)
        windows.append(c.cut())
    merged = core.merge_windows(windows)
    want: list[dict] = [{}, {}]
    for w in windows:
        for table, total in zip(w.to_dicts(), want):
            for conn, counts in table.items():
                total[conn] = counts if conn not in total else total[conn] + counts
    got = merged.to_dicts()
    assert got == tuple(want)
    assert len(merged) == len(want[0]) + len(want[1])
    (wrapped,) = [n for c, n in got[1].items() if c.dst.addr.version == 6]
    assert wrapped.tx_bytes == (4 * (2**64 - 1) - 6) % 2**64
