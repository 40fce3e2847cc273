"""connstats.export.netlog: Tailscale network-log messages (issue 18, item 4).

* The message rules are checked on vectors derived from the cases upstream's
  ``wgengine/netlog/record_test.go`` checks (TestToMessage, TestToNode): the
  inputs and the expected messages are upstream's facts; where upstream's
  test sets a connection's class by hand, the nodes and routes here are
  chosen so that the rules give that class (noted where they cannot).
* ``dumps`` is checked against Go's encoding/json itself when ``go`` is
  installed (tests/data/netlog_oracle/main.go, an oracle written for this
  test), on a few hundred random messages and the edge cases; without Go
  that test skips and the hand-derived vectors below still run.
* Properties (hypothesis): dumps parses back to the message, and a window
  cut by ``max_bytes`` gives a message within the size the budget assumed.
"""

from __future__ import annotations

import ipaddress
import json
import random
import re
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connstats.export import netlog

ORACLE = Path(__file__).parent / "data" / "netlog_oracle" / "main.go"
U64 = 2**64 - 1
ip = ipaddress.ip_address
T0 = datetime(2025, 10, 28, 14, 48, 37, 123456, timezone.utc)
T1 = T0 + timedelta(seconds=5)


def conn(impl: Any, proto: int, src: str, dst: str) -> Any:
    """record_test.go's conn(proto, "addr:port", "addr:port"); "" is no address."""

    def ap(text: str) -> Any:
        if not text:
            return impl.AddrPort(None, 0)
        host, _, port = text.rpartition(":")
        return impl.AddrPort(ip(host.strip("[]")), int(port))

    return impl.Connection(proto, ap(src), ap(dst))


def row(proto: int, src: str, dst: str, tx_p: int, tx_b: int, rx_p: int, rx_b: int):
    """The JSON of one ConnectionCounts, zero fields left out."""
    out: dict[str, Any] = {}
    if proto:
        out["proto"] = proto
    if src:
        out["src"] = src
    if dst:
        out["dst"] = dst
    for name, value in zip(
        ("txPkts", "txBytes", "rxPkts", "rxBytes"), (tx_p, tx_b, rx_p, rx_b)
    ):
        if value:
            out[name] = value
    return out


# -- TestToMessage ---------------------------------------------------------------

SELF = {
    "nodeId": "n123456CNTL",
    "name": "src.tail123456.ts.net.",
    "addresses": ["100.1.2.3/32"],
    "tags": ["tag:src"],
}
DST1 = {
    "nodeId": "n123457CNTL",
    "name": "dst1.tail123456.ts.net.",
    "addresses": ["100.1.2.4/32"],
    "tags": ["tag:dst1"],
}
DST2 = {
    "nodeId": "n123458CNTL",
    "name": "dst2.tail123456.ts.net.",
    "addresses": ["100.1.2.5/32"],
    "tags": ["tag:dst2"],
}
NODES = {"100.1.2.3": SELF, "100.1.2.4": DST1, "100.1.2.5": DST2}
# 172.16.1.0/24 is the subnet behind the subnet routers.
ROUTES = ["172.16.1.0/24"]


def upstream_window(impl: Any) -> tuple[dict, dict]:
    counts = impl.Counts
    virtual = {
        conn(impl, 1, "100.1.2.3:1234", "100.1.2.4:80"): counts(12, 34, 56, 78),
        conn(impl, 1, "100.1.2.3:1234", "100.1.2.5:80"): counts(23, 45, 78, 790),
        conn(impl, 6, "172.16.1.1:80", "100.1.2.4:1234"): counts(91, 54, 723, 621),
        conn(impl, 6, "172.16.1.2:443", "100.1.2.5:1234"): counts(42, 813, 3, 1823),
        # upstream's test marks this one subnet traffic by hand; 100.1.2.6 is
        # no node there, so the rules make it exit traffic (see below)
        conn(impl, 6, "172.16.1.3:80", "100.1.2.6:1234"): counts(34, 52, 78, 790),
        conn(impl, 6, "100.1.2.3:1234", "12.34.56.78:80"): counts(11, 110, 10, 100),
        conn(impl, 6, "100.1.2.4:1234", "23.34.56.78:80"): counts(423, 1, 6, 123),
        conn(impl, 6, "100.1.2.4:1234", "23.34.56.78:443"): counts(22, 220, 20, 200),
        conn(impl, 6, "100.1.2.5:1234", "45.34.56.78:80"): counts(33, 330, 30, 300),
        conn(impl, 6, "100.1.2.6:1234", "67.34.56.78:80"): counts(44, 440, 40, 400),
        conn(impl, 6, "42.54.72.42:555", "18.42.7.1:777"): counts(44, 440, 40, 400),
    }
    physical = {
        conn(impl, 0, "100.1.2.4:0", "4.3.2.1:1234"): counts(12, 34, 56, 78),
        conn(impl, 0, "100.1.2.5:0", "4.3.2.10:1234"): counts(78, 56, 34, 12),
    }
    return virtual, physical


SRC_NODE = {
    "nodeId": "n123456CNTL",
    "name": "src.tail123456.ts.net",
    "addresses": ["100.1.2.3"],
    "tags": ["tag:src"],
}
DST_NODES = [
    {"nodeId": "n123457CNTL", "name": "dst1.tail123456.ts.net",
     "addresses": ["100.1.2.4"], "tags": ["tag:dst1"]},
    {"nodeId": "n123458CNTL", "name": "dst2.tail123456.ts.net",
     "addresses": ["100.1.2.5"], "tags": ["tag:dst2"]},
]  # fmt: skip
VIRTUAL_TRAFFIC = [
    row(1, "100.1.2.3:1234", "100.1.2.4:80", 12, 34, 56, 78),
    row(1, "100.1.2.3:1234", "100.1.2.5:80", 23, 45, 78, 790),
]
SUBNET_TRAFFIC = [
    row(6, "172.16.1.1:80", "100.1.2.4:1234", 91, 54, 723, 621),
    row(6, "172.16.1.2:443", "100.1.2.5:1234", 42, 813, 3, 1823),
]
PHYSICAL_TRAFFIC = [
    row(0, "100.1.2.4:0", "4.3.2.1:1234", 12, 34, 56, 78),
    row(0, "100.1.2.5:0", "4.3.2.10:1234", 78, 56, 34, 12),
]


def test_to_message_with_exit_flows_logged(impl):
    """TestToMessage, toMessage(false, false): every row as it is, sorted."""
    virtual, physical = upstream_window(impl)
    got = netlog.to_message(
        T0, T1, virtual, physical, node_id="n123456CNTL", nodes=NODES,
        routes=ROUTES, log_exit_flows=True,
    )  # fmt: skip
    assert got == {
        "nodeId": "n123456CNTL",
        "start": T0,
        "end": T1,
        "srcNode": SRC_NODE,
        "dstNodes": DST_NODES,
        "virtualTraffic": VIRTUAL_TRAFFIC,
        "subnetTraffic": SUBNET_TRAFFIC,
        "exitTraffic": [
            row(6, "42.54.72.42:555", "18.42.7.1:777", 44, 440, 40, 400),
            row(6, "100.1.2.3:1234", "12.34.56.78:80", 11, 110, 10, 100),
            row(6, "100.1.2.4:1234", "23.34.56.78:80", 423, 1, 6, 123),
            row(6, "100.1.2.4:1234", "23.34.56.78:443", 22, 220, 20, 200),
            row(6, "100.1.2.5:1234", "45.34.56.78:80", 33, 330, 30, 300),
            row(6, "100.1.2.6:1234", "67.34.56.78:80", 44, 440, 40, 400),
            # the connection upstream's test calls subnet traffic (see above)
            row(6, "172.16.1.3:80", "100.1.2.6:1234", 34, 52, 78, 790),
        ],
        "physicalTraffic": PHYSICAL_TRAFFIC,
    }


def test_to_message_without_node_information(impl):
    """toMessage(true, false): nodes=None leaves srcNode and dstNodes out
    (and with no node known every virtual row is exit traffic)."""
    virtual, physical = upstream_window(impl)
    got = netlog.to_message(
        T0, T1, {}, physical, node_id="n123456CNTL", log_exit_flows=True
    )
    assert got == {"nodeId": "n123456CNTL", "start": T0, "end": T1,
                   "physicalTraffic": PHYSICAL_TRAFFIC}  # fmt: skip
    got = netlog.to_message(T0, T1, virtual, {}, node_id="x", log_exit_flows=True)
    assert set(got) == {"nodeId", "start", "end", "exitTraffic"}
    assert len(got["exitTraffic"]) == len(virtual)


def test_to_message_anonymises_exit_traffic(impl):
    """toMessage(_, true): protocol and ports scrubbed, non-node addresses
    scrubbed, counts of rows that become equal summed."""
    virtual, physical = upstream_window(impl)
    got = netlog.to_message(
        T0, T1, virtual, physical, node_id="n123456CNTL", nodes=NODES, routes=ROUTES
    )
    assert got["exitTraffic"] == [
        # 42.54.72.42 -> 18.42.7.1, 100.1.2.6 -> 67.34.56.78 (upstream's
        # two), and 172.16.1.3 -> 100.1.2.6 here: no node on either side
        row(0, "", "", 44 + 44 + 34, 440 + 440 + 52, 40 + 40 + 78, 400 + 400 + 790),
        row(0, "100.1.2.3:0", "", 11, 110, 10, 100),
        row(0, "100.1.2.4:0", "", 423 + 22, 1 + 220, 6 + 20, 123 + 200),
        row(0, "100.1.2.5:0", "", 33, 330, 30, 300),
    ]
    for name, want in (("virtualTraffic", VIRTUAL_TRAFFIC),
                       ("subnetTraffic", SUBNET_TRAFFIC),
                       ("physicalTraffic", PHYSICAL_TRAFFIC)):  # fmt: skip
        assert got[name] == want


def test_to_message_upstreams_subnet_row_with_the_node_it_needs(impl):
    """Upstream's third subnet row is subnet traffic once 100.1.2.6 is a node."""
    virtual, physical = upstream_window(impl)
    dst3 = {"nodeId": "n123459CNTL", "addresses": ["100.1.2.6"]}
    got = netlog.to_message(
        T0, T1, virtual, physical, node_id="n123456CNTL",
        nodes={**NODES, "100.1.2.6": dst3}, routes=ROUTES,
    )  # fmt: skip
    assert got["subnetTraffic"] == [
        *SUBNET_TRAFFIC,
        row(6, "172.16.1.3:80", "100.1.2.6:1234", 34, 52, 78, 790),
    ]
    assert got["dstNodes"] == [*DST_NODES, {"nodeId": "n123459CNTL",
                                            "addresses": ["100.1.2.6"]}]  # fmt: skip
    # and its address is kept when the exit row to 67.34.56.78 is anonymised
    assert row(0, "100.1.2.6:0", "", 44, 440, 40, 400) in got["exitTraffic"]


# -- the classification rules, one by one ------------------------------------------


@pytest.mark.parametrize(
    ("src", "dst", "routes", "expected"),
    [
        ("100.1.2.3", "100.1.2.4", [], "virtualTraffic"),  # self -> node
        ("100.1.2.3", "100.1.2.3", [], "virtualTraffic"),  # self -> self
        ("100.1.2.3", "10.0.0.9", ["10.0.0.0/8"], "subnetTraffic"),  # self -> route
        ("100.1.2.3", "10.0.0.9", ["10.0.0.9/32"], "subnetTraffic"),  # single IP
        ("100.1.2.3", "10.0.0.9", ["10.0.0.9"], "subnetTraffic"),  # a bare address
        ("100.1.2.3", "10.0.0.9", ["0.0.0.0/0"], "exitTraffic"),  # length 0: no route
        ("100.1.2.3", "10.0.0.9", ["::/0", "10.0.0.10/32"], "exitTraffic"),
        ("100.1.2.3", "8.8.8.8", [], "exitTraffic"),  # self -> the internet
        ("10.0.0.9", "100.1.2.4", ["10.0.0.0/8"], "subnetTraffic"),  # route -> node
        ("8.8.8.8", "100.1.2.4", [], "exitTraffic"),  # serving as an exit node
        ("100.1.2.4", "8.8.8.8", ["8.8.8.0/24"], "exitTraffic"),  # node, not self
        ("100.1.2.4", "100.1.2.5", [], "exitTraffic"),  # two other nodes
        ("8.8.8.8", "9.9.9.9", ["8.0.0.0/7"], "exitTraffic"),  # neither a node
        # an IPv4-mapped IPv6 address is not the IPv4 address (as in netip)
        ("::ffff:100.1.2.3", "100.1.2.4", [], "exitTraffic"),
        ("100.1.2.3", "::ffff:10.0.0.9", ["10.0.0.0/8"], "exitTraffic"),
        ("fd7a::3", "fd00::9", ["fd00::/64"], "subnetTraffic"),
    ],
)
def test_classification(impl, src, dst, routes, expected):
    nodes = {
        "100.1.2.3": {"nodeId": "nSELF"},
        "fd7a::3": {"nodeId": "nSELF"},
        "100.1.2.4": {"nodeId": "nB"},
        "100.1.2.5": {"nodeId": "nC"},
    }
    c = impl.Connection(6, impl.AddrPort(ip(src), 1), impl.AddrPort(ip(dst), 2))
    got = netlog.to_message(
        T0, T1, {c: impl.Counts(1, 2, 3, 4)}, {}, node_id="nSELF", nodes=nodes,
        routes=routes, log_exit_flows=True,
    )  # fmt: skip
    lists = [k for k in got if k.endswith("Traffic")]
    assert lists == [expected]


def test_anonymised_sums_wrap_and_undecoded_rows_join_them(impl):
    c = impl.Connection
    ap = impl.AddrPort
    virtual = {
        c(6, ap(ip("8.8.8.8"), 1), ap(ip("9.9.9.9"), 2)): impl.Counts(U64, U64, 1, 0),
        c(17, ap(ip("8.8.4.4"), 1), ap(ip("9.9.9.9"), 2)): impl.Counts(2, 3, 0, 0),
        c(): impl.Counts(1, 40, 0, 0),  # a packet that had no addresses
    }
    got = netlog.to_message(T0, T1, virtual, {}, node_id="n")
    assert got["exitTraffic"] == [row(0, "", "", 2, 42, 1, 0)]


def test_rows_sort_as_netip_orders_them(impl):
    """src, then dst, then protocol; no address < IPv4 < IPv6; then the value."""
    c, ap = impl.Connection, impl.AddrPort
    order = [
        c(0, ap(None, 0), ap(ip("1.1.1.1"), 0)),
        c(0, ap(None, 7), ap(None, 0)),
        c(6, ap(ip("9.0.0.1"), 0), ap(ip("1.1.1.1"), 5)),
        c(17, ap(ip("9.0.0.1"), 0), ap(ip("1.1.1.1"), 5)),
        c(6, ap(ip("9.0.0.1"), 0), ap(ip("::1"), 0)),
        c(6, ap(ip("9.0.0.1"), 1), ap(None, 0)),
        c(6, ap(ip("10.0.0.1"), 0), ap(None, 0)),
        c(6, ap(ip("::"), 0), ap(None, 0)),
        c(6, ap(ip("::ffff:1.0.0.0"), 0), ap(None, 0)),
        c(6, ap(ip("fd00::1"), 0), ap(None, 0)),
    ]
    table = {k: impl.Counts(i + 1, 0, 0, 0) for i, k in enumerate(reversed(order))}
    got = netlog.to_message(T0, T1, table, table, node_id="n", log_exit_flows=True)
    for name in ("exitTraffic", "physicalTraffic"):
        assert [r["txPkts"] for r in got[name]] == list(range(len(order), 0, -1))
    assert got["physicalTraffic"][1] == {"src": "", "txPkts": 9}  # port, no address
    assert got["physicalTraffic"][8]["src"] == "[::ffff:1.0.0.0]:0"


# -- TestToNode ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        (
            {"nodeId": "n123456CNTL", "name": "test.tail123456.ts.net.",
             "addresses": ["100.1.2.3/32"], "tags": ["tag:dupe", "tag:test", "tag:dupe"],
             "user": "ignored@example.com"},
            {"nodeId": "n123456CNTL", "name": "test.tail123456.ts.net",
             "addresses": ["100.1.2.3"], "tags": ["tag:dupe", "tag:test"]},
        ),
        (
            {"nodeId": "n123456CNTL", "addresses": ["100.1.2.3/32"]},
            {"nodeId": "n123456CNTL", "addresses": ["100.1.2.3"]},
        ),
        (
            {"nodeId": "n123456CNTL", "addresses": ["100.1.2.3/32"], "os": "linux",
             "user": "user@domain"},
            {"nodeId": "n123456CNTL", "addresses": ["100.1.2.3"], "os": "linux",
             "user": "user@domain"},
        ),
        (
            # the last single-IP IPv4 and IPv6 address, IPv4 first; prefixes
            # that are not one address are not the node's
            {"nodeId": "n1", "addresses": ["fd7a:115c:a1e0::1/128", "100.64.0.0/10",
                                           ip("100.1.2.3"), "100.1.2.9", "fd00::/8"]},
            {"nodeId": "n1", "addresses": ["100.1.2.9", "fd7a:115c:a1e0::1"]},
        ),
        ({"nodeId": "n1", "name": "", "os": "", "user": "", "tags": []}, {"nodeId": "n1"}),
    ],
)  # fmt: skip
def test_nodes(impl, node, expected):
    c = impl.Connection(0, impl.AddrPort(ip("100.1.2.3"), 0), impl.AddrPort(None, 0))
    got = netlog.to_message(
        T0, T1, {}, {c: impl.Counts(1)}, node_id="n123456CNTL",
        nodes={"100.1.2.3": node},
    )  # fmt: skip
    if node["nodeId"] == "n123456CNTL":
        assert got["srcNode"] == expected and "dstNodes" not in got
    else:  # seen in the window, and not self
        assert got["srcNode"] == {"nodeId": "n123456CNTL"}
        assert got["dstNodes"] == [expected]


def test_dst_nodes_are_the_nodes_seen_sorted_and_once(impl):
    c, ap = impl.Connection, impl.AddrPort
    nodes = {
        "100.0.0.1": {"nodeId": "self"},
        "100.0.0.2": {"nodeId": "zeta"},
        "fd7a::2": {"nodeId": "zeta"},
        "100.0.0.3": {"nodeId": "alpha"},
        "100.0.0.4": {"nodeId": "unseen"},
    }
    virtual = {
        c(6, ap(ip("100.0.0.1"), 1), ap(ip("100.0.0.2"), 2)): impl.Counts(1),
        c(6, ap(ip("100.0.0.1"), 1), ap(ip("fd7a::2"), 2)): impl.Counts(1),
    }
    physical = {c(0, ap(ip("100.0.0.3"), 0), ap(ip("1.2.3.4"), 9)): impl.Counts(1)}
    got = netlog.to_message(T0, T1, virtual, physical, node_id="self", nodes=nodes)
    assert [n["nodeId"] for n in got["dstNodes"]] == ["alpha", "zeta"]


# -- argument checks ------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"start": T0.replace(tzinfo=None)}, ValueError, "start: expected a timezone-aware"),
        ({"end": 1700000000}, TypeError, "end: expected a datetime, got int"),
        ({"node_id": ""}, ValueError, "node_id: must not be empty"),
        ({"node_id": 5}, TypeError, "node_id: expected a str"),
        ({"virtual": [1]}, TypeError, "virtual: expected a dict"),
        ({"virtual": {(6, ("1.2.3.4", 1)): (1, 1, 1, 1)}}, TypeError, "virtual key"),
        ({"virtual": {(256, (None, 0), (None, 0)): (1, 1, 1, 1)}}, ValueError, r"virtual key.proto: 256"),
        ({"physical": {(0, (None, 0), (None, 0)): (1, 1, 1)}}, ValueError, r"physical\[.*\]: expected Counts"),
        ({"physical": {(0, (None, 0), (None, 0)): (1, -1, 1, 1)}}, ValueError, r"physical\[.*\]: -1 is out"),
        ({"nodes": {"nope": {"nodeId": "a"}}}, ValueError, "nodes key: 'nope' is not an IP"),
        ({"nodes": {"1.2.3.4": {"name": "a"}}}, ValueError, "needs a 'nodeId'"),
        ({"nodes": {"1.2.3.4": {"nodeId": "a", "nmae": "x"}}}, ValueError, "unknown field"),
        ({"nodes": {"1.2.3.4": {"nodeId": "a", "tags": "tag:x"}}}, TypeError, "tags.*list of str"),
        ({"nodes": [("1.2.3.4", {"nodeId": "a"})]}, TypeError, "nodes: expected a mapping"),
        ({"routes": "10.0.0.0/8"}, TypeError, "routes: expected a list"),
        ({"routes": ["10.0.0.0/33"]}, ValueError, r"routes\[0\]: '10.0.0.0/33'"),
        ({"log_exit_flows": 1}, TypeError, "log_exit_flows: expected True or False"),
    ],
)  # fmt: skip
def test_bad_arguments_name_the_argument(kwargs, error, pattern):
    args = {"start": T0, "end": T1, "virtual": {}, "physical": {}, "node_id": "n"}
    args.update(kwargs)
    start, end, virtual, physical = (
        args.pop(k) for k in ("start", "end", "virtual", "physical")
    )
    with pytest.raises(error, match=pattern):
        netlog.to_message(start, end, virtual, physical, **args)


# -- dumps, by hand --------------------------------------------------------------------


def test_dumps_writes_what_go_writes_by_hand():
    # Go's time.Time JSON (RFC 3339, fraction trimmed), omitzero, escaping
    m = {
        "nodeId": "n<1>&\u2028\b\f\x01\x7f\"\\é😀",
        "start": datetime(1, 1, 1, tzinfo=timezone.utc),
        "end": datetime(2024, 2, 3, 4, 5, 6, 120000, timezone(timedelta(hours=2))),
        "srcNode": {},
        "dstNodes": [{"nodeId": "n2", "addresses": ["::ffff:102:304", "0:0:0:0:0:0:0:1"]}],
        "virtualTraffic": [{"proto": 0, "src": ("fd00::1", 0), "dst": (None, 0),
                            "txPkts": 0, "rxBytes": U64}],
        "exitTraffic": [],
        "physicalTraffic": [{"src": "", "dst": "[2001:db8::1]:41641"}],
    }  # fmt: skip
    assert netlog.dumps(m) == (
        '{"nodeId":"n\\u003c1\\u003e\\u0026\\u2028\\b\\f\\u0001\x7f\\"\\\\é😀",'
        '"start":"0001-01-01T00:00:00Z","end":"2024-02-03T02:05:06.12Z",'
        '"dstNodes":[{"nodeId":"n2","addresses":["::ffff:1.2.3.4","::1"]}],'
        '"virtualTraffic":[{"src":"[fd00::1]:0","rxBytes":18446744073709551615}],'
        '"physicalTraffic":[{"src":"","dst":"[2001:db8::1]:41641"}]}'
    )


@pytest.mark.parametrize(
    ("message", "error", "pattern"),
    [
        ({"start": T0, "end": T1}, ValueError, "'nodeId' is missing"),
        ({"nodeId": "n", "start": T0}, ValueError, "'end' is missing"),
        ({"nodeId": "n", "start": T0, "end": T1, "bogus": 1}, ValueError, "unknown field 'bogus'"),
        ({"nodeId": "n\ud800", "start": T0, "end": T1}, ValueError, "lone surrogate"),
        ({"nodeId": "n", "start": T0, "end": T1, "exitTraffic": [{"src": "1.2.3.4"}]},
         ValueError, "not an address and port"),
        ({"nodeId": "n", "start": T0, "end": T1, "exitTraffic": [{"src": "[1.2.3.4]:1"}]},
         ValueError, "not an address and port"),
        ({"nodeId": "n", "start": T0, "end": T1, "exitTraffic": [{"src": "[::0]:1"}]},
         ValueError, "canonical"),
        ({"nodeId": "n", "start": T0, "end": T1, "exitTraffic": [{"src": "1.2.3.4:65536"}]},
         ValueError, "out of range"),
        ({"nodeId": "n", "start": T0, "end": T1, "exitTraffic": [{"txPkts": 2**64}]},
         ValueError, "out of range"),
        ({"nodeId": "n", "start": T0, "end": T1, "exitTraffic": {"src": "1.2.3.4:1"}},
         TypeError, "expected a list"),
    ],
)  # fmt: skip
def test_dumps_refuses_what_go_could_not_hold(message, error, pattern):
    with pytest.raises(error, match=pattern):
        netlog.dumps(message)


# -- dumps against Go ------------------------------------------------------------------


def _go_version() -> tuple[int, int] | None:
    go = shutil.which("go")
    if go is None:
        return None
    out = subprocess.run([go, "version"], capture_output=True, text=True, timeout=60)
    found = re.search(r"go(\d+)\.(\d+)", out.stdout)
    return (int(found.group(1)), int(found.group(2))) if found else None


@pytest.fixture(scope="module")
def go_oracle(tmp_path_factory) -> tuple[Path, tuple[int, int]]:
    version = _go_version()
    if version is None:
        pytest.skip("go is not installed (apt-get install golang-go): no Go oracle")
    out = tmp_path_factory.mktemp("oracle") / "netlog_oracle"
    # std only, no module, nothing fetched
    env = {"GOPROXY": "off", "GOTOOLCHAIN": "local", "CGO_ENABLED": "0",
           "GOCACHE": str(out.parent / "cache"), "GOPATH": str(out.parent / "gopath"),
           "PATH": "/usr/bin:/bin", "HOME": str(out.parent)}  # fmt: skip
    subprocess.run(
        [shutil.which("go") or "go", "build", "-o", str(out), str(ORACLE)],
        check=True, capture_output=True, timeout=600, env=env,
    )  # fmt: skip
    return out, version


def _random_text(rng: random.Random, short_escapes: bool) -> str:
    alphabet = list("abcXYZ019 .:-_/@") + ["<", ">", "&", '"', "\\", "\n", "\r",
               "\t", "\x00", "\x1f", "\x7f", "\u2028", "\u2029", "é", "ß", "中",
               "😀", "\ufffd", "\u200b"]  # fmt: skip
    if short_escapes:
        alphabet += ["\b", "\f"]
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))


def _random_address(rng: random.Random) -> str:
    pick = rng.randrange(6)
    if pick == 0:
        return str(ipaddress.IPv4Address(rng.getrandbits(32)))
    if pick == 1:
        return str(ipaddress.IPv6Address(rng.getrandbits(128)))
    if pick == 2:  # few groups set: exercises the "::" run choice
        groups = [rng.choice([0, 0, 0, 1, 0xFFFF]) for _ in range(8)]
        return ":".join(f"{g:x}" for g in groups)
    if pick == 3:
        return f"::ffff:{ipaddress.IPv4Address(rng.getrandbits(32))}"
    if pick == 4:
        return rng.choice(["::", "::1", "0.0.0.0", "255.255.255.255", "fe80::1",
                           "1:0:0:1:0:0:0:1", "1:0:0:0:1:0:0:1", "::ffff:0.0.0.0"])  # fmt: skip
    return str(ipaddress.IPv4Address(rng.choice([0, 1, 0x64646464, 0xFFFFFFFF])))


def _random_count(rng: random.Random) -> int:
    return rng.choice([0, 0, 1, rng.randrange(1 << 16), rng.getrandbits(64), U64])


def _random_neutral(rng: random.Random, short_escapes: bool) -> dict[str, Any]:
    def when() -> datetime:
        t = datetime(1, 1, 1, tzinfo=timezone.utc) + timedelta(
            seconds=rng.randrange(315537897599), microseconds=rng.choice(
                [0, 0, 1, 10, 100000, 120000, rng.randrange(1000000)])
        )  # fmt: skip
        return t.astimezone(timezone(timedelta(minutes=rng.randrange(-900, 900))))

    def node() -> dict[str, Any]:
        n: dict[str, Any] = {"nodeId": _random_text(rng, short_escapes)}
        for name in ("name", "os", "user"):
            if rng.random() < 0.5:
                n[name] = _random_text(rng, short_escapes)
        if rng.random() < 0.5:
            n["addresses"] = [_random_address(rng) for _ in range(rng.randrange(3))]
        if rng.random() < 0.5:
            n["tags"] = [
                _random_text(rng, short_escapes) for _ in range(rng.randrange(3))
            ]
        return n

    def endpoint() -> list[Any]:
        addr = "" if rng.random() < 0.2 else _random_address(rng)
        return [addr, rng.choice([0, 0, 1, 80, 65535, rng.randrange(65536)])]

    m: dict[str, Any] = {"nodeId": _random_text(rng, short_escapes),
                         "start": when(), "end": when()}  # fmt: skip
    if rng.random() < 0.5:
        m["srcNode"] = node() if rng.random() < 0.8 else {}
    if rng.random() < 0.5:
        m["dstNodes"] = [node() for _ in range(rng.randrange(3))]
    for name in ("virtualTraffic", "subnetTraffic", "exitTraffic", "physicalTraffic"):
        if rng.random() < 0.6:
            m[name] = [
                [rng.choice([0, 1, 6, 17, 255]), endpoint(), endpoint(),
                 *(_random_count(rng) for _ in range(4))]
                for _ in range(rng.randrange(4))
            ]  # fmt: skip
    return m


def _for_go(neutral: dict[str, Any]) -> str:
    out = dict(neutral)
    out["start"] = neutral["start"].isoformat()
    out["end"] = neutral["end"].isoformat()
    return json.dumps(out, ensure_ascii=True)


def _for_dumps(neutral: dict[str, Any]) -> dict[str, Any]:
    """The same message as dumps takes it: rows as dicts, endpoints as pairs."""
    m = dict(neutral)
    for name in ("virtualTraffic", "subnetTraffic", "exitTraffic", "physicalTraffic"):
        if name in m:
            m[name] = [
                {"proto": r[0], "src": (r[1][0] or None, r[1][1]),
                 "dst": (r[2][0] or None, r[2][1]), "txPkts": r[3], "txBytes": r[4],
                 "rxPkts": r[5], "rxBytes": r[6]}
                for r in m[name]
            ]  # fmt: skip
    return m


def test_dumps_is_byte_identical_to_go_encoding_json(go_oracle, impl):
    binary, version = go_oracle
    # Go writes \b and \f in short form from 1.22 on (omitzero needs 1.24):
    # an older oracle is not asked about them
    short_escapes = version >= (1, 22)
    rng = random.Random(18)
    neutrals = [_random_neutral(rng, short_escapes) for _ in range(400)]
    # and messages to_message made from upstream's window
    virtual, physical = upstream_window(impl)
    messages = [_for_dumps(n) for n in neutrals]
    for flows in (False, True):
        made = netlog.to_message(T0, T1, virtual, physical, node_id="n123456CNTL",
                                 nodes=NODES, routes=ROUTES, log_exit_flows=flows)  # fmt: skip
        messages.append(made)
        neutrals.append(_neutral_of(made, virtual, physical))
    proc = subprocess.run(
        [str(binary)], input="\n".join(_for_go(n) for n in neutrals) + "\n",
        capture_output=True, text=True, timeout=120, encoding="utf-8",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    want = proc.stdout.splitlines()
    assert len(want) == len(messages)
    for i, (m, line) in enumerate(zip(messages, want)):
        assert netlog.dumps(m) == line, (i, neutrals[i])


def _neutral_of(
    message: dict[str, Any], virtual: dict, physical: dict
) -> dict[str, Any]:
    """A to_message result in the oracle's input form (endpoints parsed back)."""

    def endpoint(text: str | None) -> list[Any]:
        if not text:
            return ["", 0]
        host, _, port = text.rpartition(":")
        return [host.strip("[]"), int(port)]

    out = {k: v for k, v in message.items() if not k.endswith("Traffic")}
    for name in ("virtualTraffic", "subnetTraffic", "exitTraffic", "physicalTraffic"):
        if name in message:
            out[name] = [
                [r.get("proto", 0), endpoint(r.get("src")), endpoint(r.get("dst")),
                 *(r.get(k, 0) for k in ("txPkts", "txBytes", "rxPkts", "rxBytes"))]
                for r in message[name]
            ]  # fmt: skip
    return out


# -- properties -------------------------------------------------------------------------

addresses = st.one_of(
    st.none(),
    st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address),
    st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address),
    st.just(ipaddress.IPv6Address("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
)
counters = st.one_of(st.integers(0, U64), st.just(U64), st.integers(0, 10**19 - 1))
connections = st.tuples(
    st.integers(0, 255),
    st.tuples(addresses, st.integers(0, 65535)),
    st.tuples(addresses, st.integers(0, 65535)),
)
tables = st.dictionaries(connections, st.tuples(counters, counters, counters, counters),
                         max_size=40)  # fmt: skip
node_ids = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzCNTRL0123456789", min_size=1, max_size=22
)


def _json_of(message: dict[str, Any]) -> dict[str, Any]:
    return json.loads(netlog.dumps(message))


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(virtual=tables, physical=tables, node_id=node_ids, flows=st.booleans())
def test_dumps_parses_back_to_the_message(virtual, physical, node_id, flows):
    m = netlog.to_message(T0, T1, virtual, physical, node_id=node_id,
                          log_exit_flows=flows)  # fmt: skip
    back = _json_of(m)
    assert back.pop("start") == "2025-10-28T14:48:37.123456Z"
    assert back.pop("end") == "2025-10-28T14:48:42.123456Z"
    assert back == {k: v for k, v in m.items() if k not in ("start", "end")}
    rows = sum((back.get(k, []) for k in back if k.endswith("Traffic")), [])
    assert sum(len(t) for t in (virtual, physical)) >= len(rows)


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(virtual=tables, physical=tables, node_id=node_ids)
def test_message_stays_within_what_the_budget_assumed(virtual, physical, node_id):
    """Upstream's accounting: at most 219 bytes besides the rows (node ids up
    to upstream's 22 characters, no node information) and at most 247 bytes
    a row.  The rows' commas are not in it: the bound holds for counters
    below 10**19 (each row then at most 243 bytes and its comma); at the
    very top of the u64 range a row may need 248 with its comma."""
    # log_exit_flows: one row per connection, the largest message
    m = netlog.to_message(T0, T1, virtual, physical, node_id=node_id,
                          log_exit_flows=True)  # fmt: skip
    n = len(virtual) + len(physical)
    text = netlog.dumps(m)
    for name in ("virtualTraffic", "exitTraffic", "physicalTraffic"):
        for r in m.get(name, []):
            assert len(_row_text(r)) <= netlog.CONNECTION_BYTES
    assert (
        len(text) <= netlog.MESSAGE_OVERHEAD_BYTES + (netlog.CONNECTION_BYTES + 1) * n
    )
    small = all(v < 10**19 for t in (virtual, physical) for c in t.values() for v in c)
    if small:
        assert len(text) <= netlog.MESSAGE_OVERHEAD_BYTES + netlog.CONNECTION_BYTES * n


def _row_text(r: dict[str, Any]) -> str:
    """One row's JSON, as dumps writes it inside a message."""
    text = netlog.dumps({"nodeId": "n", "start": T0, "end": T0, "exitTraffic": [r]})
    head = '"exitTraffic":['
    return text[text.index(head) + len(head) : -2]


def test_windows_cut_by_max_log_size_give_messages_within_it(impl):
    """Statistics(max_bytes=MAX_LOG_SIZE) -> to_message -> dumps <= 256 KiB,
    with the longest rows the table can hold (IPv6, five-digit ports)."""
    sizes: list[int] = []
    conns: list[int] = []

    def dump(start, end, virtual, physical):
        m = netlog.to_message(start, end, virtual, physical,
                              node_id="n0123456789abcdefCNTRL", log_exit_flows=True)  # fmt: skip
        sizes.append(len(netlog.dumps(m).encode()))
        conns.append(len(virtual) + len(physical))

    stats = impl.Statistics(max_bytes=netlog.MAX_LOG_SIZE, dump=dump)
    top = ipaddress.IPv6Address("ffff:ffff:ffff:ffff:ffff:ffff:ffff:f000")
    for i in range(2500):
        src = (top + i, 65535 - (i % 100))
        if i % 3:
            stats.update_virtual(255, src, (top, 65535), 10**19 - 1, 10**19 - 1)
            stats.update_virtual(255, src, (top, 65535), 10**19 - 1, 10**19 - 1, True)
        else:
            stats.update_physical(255, src, (top, 65535), 10**19 - 1, 10**19 - 1)
    assert stats.shutdown(timeout=30)
    # (262144 - 219) // 247 connections a window
    assert conns == [1060, 1060, 380]
    assert max(sizes) <= netlog.MAX_LOG_SIZE
