"""ignore_destinations filters virtual traffic only (issue 10, item 10).

Tailscale's connstats drops virtual packets to its service addresses and
counts every physical (WireGuard underlay) update, whatever its endpoint:
a peer reached through an address that happens to be in the list is still
traffic on the wire.
"""

from __future__ import annotations

import random

import pytest
from test_core_model import QUAD100, QUAD100_6, UDP, ip, ipv4, ipv6, pkey, tables

import connstats

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
