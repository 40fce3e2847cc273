"""ignore_destinations filters virtual traffic only (issue 10, item 10).

Tailscale's connstats drops virtual packets to its service addresses and
counts every physical (WireGuard underlay) update, whatever its endpoint:
a peer reached through an address that happens to be in the list is still
traffic on the wire.
"""

from __future__ import annotations

import array
import itertools
import random

import pytest
from test_core_model import QUAD100, QUAD100_6, UDP, ip, ipv4, ipv6, key, pkey, tables

import connstats

# the compiled core also with its lane in use from a window's second packet
pytestmark = pytest.mark.with_lanes

A, B = "10.1.0.1", "10.1.0.2"
A6 = "fd7a:115c:a1e0::1"


def test_physical_updates_to_ignored_addresses_are_counted(impl):
    core = impl.Core(ignore_destinations=[QUAD100, QUAD100_6])
    core.update_tx_physical(A, (QUAD100, 41641), 100)
    core.update_rx_physical(A, (QUAD100, 41641), 200)
    core.update_tx_physical(A6, (QUAD100_6, 41641), 300)
    core.update_tx_virtual(ipv4(UDP, A, QUAD100, 5000, 53))  # dropped
    core.update_rx_virtual(ipv6(UDP, QUAD100_6, A6, 53, 5000))  # dropped after the swap
    assert core.window_info() is not None
    assert tables(core.cut()) == (
        {},
        {
            pkey(A, QUAD100, 41641): (1, 100, 1, 200),
            pkey(A6, QUAD100_6, 41641): (1, 300, 0, 0),
        },
    )


def test_physical_counts_do_not_depend_on_the_ignore_list(impl):
    # Differential: the same random physical traffic with and without the
    # list gives the same physical table; only virtual traffic differs.
    rng = random.Random(10)
    hosts = [A, B, QUAD100, QUAD100_6, A6]
    ops = [
        (
            rng.choice(("tx", "rx")),
            rng.choice(hosts),
            rng.choice(hosts),
            rng.randrange(3),
            rng.randrange(1500),
        )
        for _ in range(300)
    ]
    results = []
    for ignore in ((), [QUAD100, QUAD100_6, B]):
        core = impl.Core(ignore_destinations=ignore)
        for direction, src, dst, port, n in ops:
            getattr(core, f"update_{direction}_physical")(src, (dst, port), n)
            if ":" not in src and ":" not in dst:
                getattr(core, f"update_{direction}_virtual")(
                    ipv4(UDP, src, dst, port, 53)
                )
        results.append(tables(core.cut()))
    (virtual_all, physical_all), (virtual_some, physical_some) = results
    assert physical_all == physical_some
    assert len(physical_all) > 10
    ignored = {ip(QUAD100), ip(QUAD100_6), ip(B)}
    assert virtual_some == {k: v for k, v in virtual_all.items() if k[3] not in ignored}
    assert len(virtual_some) < len(virtual_all)


@pytest.mark.parametrize("api", ["single", "batch"])
def test_statistics_ignore_virtual_only(impl, api):
    stats = impl.Statistics(ignore_destinations=connstats.TAILSCALE_SERVICE_ADDRESSES)
    try:
        packet = ipv4(UDP, A, QUAD100, 5000, 53)
        if api == "single":
            stats.update_tx_virtual(packet)
        else:
            stats.update_tx_virtual_batch([packet, packet])
        stats.update_tx_physical(A, (QUAD100, 41641), 10)
        virtual, physical = stats.extract()
    finally:
        stats.shutdown()
    assert virtual == {}
    assert list(physical.values()) == [impl.Counts(1, 10, 0, 0)]


# The list is checked where a connection would be inserted, not per packet
# (issue 24): an ignored connection is never in the table, so a packet that
# finds its connection is never an ignored one.  What must not change: such
# packets are never counted, whatever the entry point and direction, and
# they never open, wake up or cut a window.


def _send(core, api, direction, packets):
    if api == "single":
        for p in packets:
            getattr(core, f"update_{direction}_virtual")(p)
    elif api == "batch":
        getattr(core, f"update_{direction}_virtual_batch")(packets)
    else:
        lengths = array.array("Q", map(len, packets))
        offsets = array.array("Q", itertools.accumulate(lengths, initial=0))[:-1]
        getattr(core, f"update_{direction}_virtual_buffer")(
            b"".join(packets), offsets, lengths
        )


IGNORED_TRAFFIC = [
    ("tx", ipv4(UDP, A, QUAD100, 5000, 53)),
    ("rx", ipv4(UDP, QUAD100, A, 53, 5000)),  # the reply: QUAD100 after the swap
    ("tx", ipv6(UDP, A6, QUAD100_6, 5000, 53)),
    ("rx", ipv6(UDP, QUAD100_6, A6, 53, 5000)),
]


@pytest.mark.parametrize("api", ["single", "batch", "buffer"])
def test_ignored_traffic_opens_wakes_and_cuts_nothing(impl, api):
    core = impl.Core(max_conns=1, ignore_destinations=[QUAD100, QUAD100_6])
    for direction, p in IGNORED_TRAFFIC:
        _send(core, api, direction, [p] * 3)
    assert core.window_info() is None and core.connections == 0
    assert core.wait(0) is False  # nothing opened a window
    _send(core, api, "tx", [ipv4(UDP, A, B, 1, 2)])
    assert core.wait(0) is True
    for direction, p in IGNORED_TRAFFIC * 2:
        _send(core, api, direction, [p, p])
    # max_conns=1: an ignored packet counted as a new connection would cut
    assert core.pending == 0 and core.connections == 1
    assert core.wait(0) is False
    assert tables(core.cut()) == ({key(UDP, A, 1, B, 2): (1, 40, 0, 0)}, {})


@pytest.mark.parametrize("api", ["single", "batch", "buffer"])
def test_ignored_destinations_among_counted_traffic(impl, api):
    # The rx swap decides: a reply *from* the service address is ignored, a
    # packet received *by* it (rx with the service as source after the
    # swap) is counted, and so is traffic between other hosts in the same
    # batch, before and after the ignored packets.
    rng = random.Random(24)
    pool = IGNORED_TRAFFIC + [
        ("tx", ipv4(UDP, A, B, 7, 8)),
        ("rx", ipv4(UDP, B, A, 8, 7)),
        ("rx", ipv4(UDP, A, QUAD100, 9, 53)),  # received by QUAD100: counted
        ("tx", ipv4(UDP, QUAD100, A, 53, 9)),  # sent from QUAD100: counted
        ("tx", ipv6(UDP, A6, "fd7a:115c:a1e0::54", 1, 53)),
    ]
    ops = [rng.choice(pool) for _ in range(400)]
    core = impl.Core(ignore_destinations=[QUAD100, QUAD100_6])
    plain_core = impl.Core()
    for i in range(0, len(ops), 20):
        for direction in ("tx", "rx"):
            chunk = [p for d, p in ops[i : i + 20] if d == direction]
            if chunk:
                _send(core, api, direction, chunk)
                _send(plain_core, api, direction, chunk)
    ignored = {ip(QUAD100), ip(QUAD100_6)}
    everything, _ = tables(plain_core.cut())
    counted, physical = tables(core.cut())
    assert physical == {}
    assert counted == {k: v for k, v in everything.items() if k[3] not in ignored}
    # A<->B both ways, QUAD100->A both ways (one key after the swap), the v6 one
    assert len(counted) == 3 and len(everything) == 5
