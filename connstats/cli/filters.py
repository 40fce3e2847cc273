"""``connstats read`` filters on decoded connections: --host, --net, --port, --proto.

They select connections after counting, on the connection the core decoded
(addresses, ports, IP protocol number), so they are exact for what the
tables show: a connection passes when *either* endpoint matches ``--host``,
``--net`` and ``--port`` (as tcpdump's ``host``/``net``/``port`` primitives)
and its protocol is one of ``--proto``.  Options of different kinds must all
match; repeating one kind means "any of these".  Undecoded packets (no
addresses) pass only when no address or port filter is given; ``--proto``
never selects them.  Later fragments have addresses but no ports: ``--port``
does not select them.

Packet-level filtering with a BPF expression (``--bpf``) is in
:mod:`connstats.capture._bpf_input`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from typing import Any

from .._protocols import protocol_number

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_host(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not an IP address (examples: 192.0.2.7, 2001:db8::1)"
        ) from None


def parse_net(text: str) -> Network:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an IP network (examples: 10.0.0.0/8, fd00::/8)"
        ) from None


def parse_port(text: str) -> tuple[int, int]:
    """``443`` or a range ``8000-8080`` -> (low, high)."""
    low, sep, high = text.strip().partition("-")
    try:
        lo = int(low)
        hi = int(high) if sep else lo
    except ValueError:
        raise ValueError(
            f"{text!r} is not a port or port range (examples: 53, 8000-8080)"
        ) from None
    if not (0 <= lo <= hi <= 65535):
        raise ValueError(f"{text!r}: ports are 0 to 65535, low to high")
    return lo, hi


class ConnectionFilter:
    """What --host/--net/--port/--proto ask for; empty lists select everything."""

    # A plain class: the dataclasses module costs start-up (see capture.reader).
    __slots__ = ("hosts", "nets", "ports", "protos")

    def __init__(
        self,
        hosts: Sequence[ipaddress.IPv4Address | ipaddress.IPv6Address] = (),
        nets: Sequence[Network] = (),
        ports: Sequence[tuple[int, int]] = (),
        protos: Sequence[int] = (),
    ) -> None:
        self.hosts = hosts
        self.nets = nets
        self.ports = ports
        self.protos = protos

    def __repr__(self) -> str:
        return (
            f"ConnectionFilter(hosts={self.hosts!r}, nets={self.nets!r}, "
            f"ports={self.ports!r}, protos={self.protos!r})"
        )

    @classmethod
    def from_text(
        cls,
        hosts: Sequence[str] = (),
        nets: Sequence[str] = (),
        ports: Sequence[str] = (),
        protos: Sequence[str] = (),
    ) -> ConnectionFilter:
        return cls(
            [parse_host(h) for h in hosts],
            [parse_net(n) for n in nets],
            [parse_port(p) for p in ports],
            [protocol_number(p) for p in protos],
        )

    def __bool__(self) -> bool:
        return bool(self.hosts or self.nets or self.ports or self.protos)

    def predicate(self) -> Callable[[Any], bool]:
        """A function of a Connection: True when it is selected."""
        hosts = frozenset(self.hosts)
        nets = list(self.nets)
        ports = list(self.ports)
        protos = frozenset(self.protos)

        def addr_ok(addr: Any) -> bool:
            if addr is None:
                return False
            if hosts and addr in hosts:
                return True
            return any(addr.version == n.version and addr in n for n in nets)

        def port_ok(port: int) -> bool:
            return any(lo <= port <= hi for lo, hi in ports)

        def selected(conn: Any) -> bool:
            if protos and (conn.proto not in protos or conn.src.addr is None):
                return False
            if (hosts or nets) and not (
                addr_ok(conn.src.addr) or addr_ok(conn.dst.addr)
            ):
                return False
            if ports:
                if conn.src.addr is None or not (conn.src.port or conn.dst.port):
                    return False  # no ports were decoded
                if not (port_ok(conn.src.port) or port_ok(conn.dst.port)):
                    return False
            return True

        return selected


def filter_table(
    table: dict[Any, Any], selected: Callable[[Any], bool]
) -> dict[Any, Any]:
    return {conn: counts for conn, counts in table.items() if selected(conn)}
