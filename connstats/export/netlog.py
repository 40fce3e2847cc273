"""Tailscale network-log messages from connstats windows.

:func:`to_message` turns one window (what ``dump`` receives) into the
message that Tailscale's network logger (``wgengine/netlog``, v1.92 on)
writes for it: the traffic classified as virtual (this node to another
node), subnet (to or from an address within the configured routes) or exit
(anything else), exit traffic anonymised unless exit flows may be logged,
and the nodes involved.  :func:`dumps` writes a message as compact JSON,
byte for byte what Go's ``encoding/json`` writes for ``netlogtype.Message``
(whose fields are tagged ``omitzero``).

The rules follow ``record.go`` and ``netlog.go`` of Tailscale's repository:

* ``nodes`` maps an address to a node; a connection's src (and, for virtual
  traffic, dst) is looked up there.  The node whose ``nodeId`` is
  ``node_id`` is this node ("self").
* A virtual connection from self to a node is virtual traffic; from self
  to a non-node, subnet traffic if the destination is within ``routes``,
  else exit traffic; from a non-node to a node, subnet traffic if the
  source is within ``routes``, else exit traffic; anything else (neither
  side a node, or a node other than self to a non-node) is exit traffic.
  A route of length 0 (``0.0.0.0/0``, ``::/0``) does not count.
* Unless ``log_exit_flows``, exit traffic is anonymised: protocol and ports
  zeroed, addresses that are not nodes' zeroed, and the counts of rows that
  become equal summed.
* ``srcNode`` is self, ``dstNodes`` every other node seen in the window
  (sorted by ``nodeId``); both are left out when ``nodes`` is None.  Rows
  are sorted by src, dst, then protocol, as ``netip`` orders them.
"""

from __future__ import annotations

import ipaddress
import operator
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any, Optional, Union

from .._types import CONNECTION_BYTES, MESSAGE_OVERHEAD_BYTES

__all__ = [
    "CONNECTION_BYTES",
    "MAX_LOG_SIZE",
    "MESSAGE_OVERHEAD_BYTES",
    "dumps",
    "to_message",
]

#: Upstream's budget for one log message (``maxLogSize``, 256 KiB): pass it
#: as ``Statistics(max_bytes=MAX_LOG_SIZE)`` to cut windows as upstream does.
MAX_LOG_SIZE = 256 << 10

_Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
_Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
_U64 = (1 << 64) - 1

# The JSON field names, in the order of the Go structs' fields.
_MESSAGE_FIELDS = (
    "nodeId",
    "start",
    "end",
    "srcNode",
    "dstNodes",
    "virtualTraffic",
    "subnetTraffic",
    "exitTraffic",
    "physicalTraffic",
)
_TRAFFIC = _MESSAGE_FIELDS[5:]
_NODE_FIELDS = ("nodeId", "name", "addresses", "os", "user", "tags")
_ROW_FIELDS = ("proto", "src", "dst", "txPkts", "txBytes", "rxPkts", "rxBytes")
_COUNT_FIELDS = _ROW_FIELDS[3:]

# A plain endpoint: (address or None, port); (None, 0) is Go's zero AddrPort.
_Endpoint = tuple[Optional[_Address], int]
_Conn = tuple[int, _Endpoint, _Endpoint]


# -- addresses as Go's net/netip writes and orders them ---------------------------


def _addr_text(addr: _Address) -> str:
    """``netip.Addr.String``: RFC 5952 for IPv6, ``::ffff:a.b.c.d`` for
    IPv4-mapped (Python before 3.13 writes those in hex), ``%zone`` kept."""
    if addr.version == 4:
        return str(addr)
    value = int(addr)
    zone = getattr(addr, "scope_id", None)
    suffix = f"%{zone}" if zone else ""
    if value >> 32 == 0xFFFF:
        return f"::ffff:{ipaddress.IPv4Address(value & 0xFFFFFFFF)}{suffix}"
    groups = [(value >> (112 - 16 * i)) & 0xFFFF for i in range(8)]
    # the first longest run of two or more zero groups becomes "::"
    best, best_len, i = -1, 1, 0
    while i < 8:
        if groups[i] == 0:
            j = i
            while j < 8 and groups[j] == 0:
                j += 1
            if j - i > best_len:
                best, best_len = i, j - i
            i = j
        else:
            i += 1
    hexes = [f"{g:x}" for g in groups]
    if best < 0:
        return ":".join(hexes) + suffix
    head = ":".join(hexes[:best])
    tail = ":".join(hexes[best + best_len :])
    return f"{head}::{tail}{suffix}"


def _addrport_text(addr: Optional[_Address], port: int) -> str:
    """``netip.AddrPort.MarshalText``: "" when there is no address."""
    if addr is None:
        return ""
    if addr.version == 6:
        return f"[{_addr_text(addr)}]:{port}"
    return f"{addr}:{port}"


def _addr_order(addr: Optional[_Address]) -> tuple[int, int, str]:
    # netip.Addr.Compare: bit length (none < IPv4 < IPv6), value, zone
    if addr is None:
        return (0, 0, "")
    zone = getattr(addr, "scope_id", None) or ""
    return (32 if addr.version == 4 else 128, int(addr), zone)


def _conn_order(conn: _Conn) -> tuple[Any, ...]:
    # compareConnCnts: src, then dst, then protocol
    proto, (sa, sp), (da, dp) = conn
    return (_addr_order(sa), sp, _addr_order(da), dp, proto)


# -- checking arguments -----------------------------------------------------------


def _type_name(value: Any) -> str:
    return type(value).__name__


def _int_in(value: Any, argname: str, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{argname}: expected an int, got {_type_name(value)}")
    value = operator.index(value)  # the real value of an int subclass
    if not 0 <= value <= high:
        raise ValueError(f"{argname}: {value} is out of range 0..{high}")
    return value


def _ip(value: Any, argname: str) -> _Address:
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return value
    if isinstance(value, str):
        try:
            return ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{argname}: {value!r} is not an IP address") from None
    raise TypeError(
        f"{argname}: expected an IP address (str or ipaddress object), "
        f"got {_type_name(value)}"
    )


def _endpoint(value: Any, argname: str) -> _Endpoint:
    try:
        addr, port = value
    except (TypeError, ValueError):
        raise TypeError(
            f"{argname}: expected an AddrPort or (address, port), got "
            f"{_type_name(value)}"
        ) from None
    return (
        None if addr is None else _ip(addr, argname),
        _int_in(port, argname, 0xFFFF),
    )


def _connection(value: Any, argname: str) -> _Conn:
    try:
        proto, src, dst = value
    except (TypeError, ValueError):
        raise TypeError(
            f"{argname}: expected a Connection (proto, src, dst), got "
            f"{_type_name(value)}"
        ) from None
    return (
        _int_in(proto, f"{argname}.proto", 0xFF),
        _endpoint(src, f"{argname}.src"),
        _endpoint(dst, f"{argname}.dst"),
    )


def _counts(value: Any, argname: str) -> tuple[int, int, int, int]:
    try:
        values = tuple(value)
    except TypeError:
        raise TypeError(
            f"{argname}: expected Counts (4 ints), got {_type_name(value)}"
        ) from None
    if len(values) != 4:
        raise ValueError(f"{argname}: expected Counts (4 ints), got {len(values)}")
    a, b, c, d = (_int_in(v, argname, _U64) for v in values)
    return (a, b, c, d)


def _table(value: Any, argname: str) -> list[tuple[_Conn, tuple[int, int, int, int]]]:
    if not isinstance(value, Mapping):
        raise TypeError(
            f"{argname}: expected a dict of Connection to Counts, got "
            f"{_type_name(value)}"
        )
    return [
        (_connection(k, f"{argname} key"), _counts(v, f"{argname}[{k}]"))
        for k, v in value.items()
    ]


def _time(value: Any, argname: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{argname}: expected a datetime, got {_type_name(value)}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{argname}: expected a timezone-aware datetime")
    return value.astimezone(timezone.utc)


def _text(value: Any, argname: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{argname}: expected a str, got {_type_name(value)}")
    return value


def _strings(value: Any, argname: str) -> list[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{argname}: expected a list of str, got {_type_name(value)}")
    return [_text(v, f"{argname}[{i}]") for i, v in enumerate(value)]


def _single_addresses(value: Any, argname: str) -> list[_Address]:
    """A node's addresses (tailcfg keeps prefixes): the single-IP ones."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(
            f"{argname}: expected a list of addresses, got {_type_name(value)}"
        )
    out = []
    for i, item in enumerate(value):
        name = f"{argname}[{i}]"
        if isinstance(item, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            net = item
        elif isinstance(item, str) and "/" in item:
            try:
                net = ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{name}: {item!r} is not an IP prefix") from None
        else:
            out.append(_ip(item, name))
            continue
        if net.num_addresses == 1:  # IsSingleIP
            out.append(net.network_address)
    return out


def _routes(value: Any) -> list[_Network]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"routes: expected a list of networks, got {_type_name(value)}")
    out: list[_Network] = []
    for i, item in enumerate(value):
        if isinstance(item, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            out.append(item)
            continue
        if isinstance(item, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            out.append(ipaddress.ip_network(item))
            continue
        if not isinstance(item, str):
            raise TypeError(
                f"routes[{i}]: expected a network (str or ipaddress object), "
                f"got {_type_name(item)}"
            )
        try:
            # netip.ParsePrefix keeps host bits; Contains ignores them
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"routes[{i}]: {item!r} is not an IP network") from None
    return out


# -- nodes ---------------------------------------------------------------------


def _node_json(node: Any, argname: str) -> dict[str, Any]:
    """``nodeUser.toNode``: what a node contributes to the message."""
    if not isinstance(node, Mapping):
        raise TypeError(f"{argname}: expected a mapping, got {_type_name(node)}")
    unknown = set(node) - set(_NODE_FIELDS)
    if unknown:
        raise ValueError(
            f"{argname}: unknown field(s) {sorted(map(str, unknown))}; a node has "
            f"{', '.join(_NODE_FIELDS)}"
        )
    if "nodeId" not in node:
        raise ValueError(f"{argname}: a node needs a 'nodeId'")
    node_id = _text(node["nodeId"], f"{argname}['nodeId']")
    if not node_id:
        raise ValueError(f"{argname}['nodeId']: must not be empty")
    out: dict[str, Any] = {"nodeId": node_id}
    name = _text(node.get("name", ""), f"{argname}['name']")
    if name.endswith("."):
        name = name[:-1]  # the fully qualified name without its root dot
    if name:
        out["name"] = name
    # the last single-IP IPv4 and IPv6 address, in that order
    v4 = v6 = None
    for addr in _single_addresses(node.get("addresses", ()), f"{argname}['addresses']"):
        if addr.version == 4:
            v4 = addr
        else:
            v6 = addr
    addresses = [_addr_text(a) for a in (v4, v6) if a is not None]
    if addresses:
        out["addresses"] = addresses
    os_name = _text(node.get("os", ""), f"{argname}['os']")
    if os_name:
        out["os"] = os_name
    tags = sorted(set(_strings(node.get("tags", ()), f"{argname}['tags']")))
    user = _text(node.get("user", ""), f"{argname}['user']")
    if tags:
        out["tags"] = tags  # a tagged node has no owning user
    elif user:
        out["user"] = user
    return out


class _Nodes:
    """Node lookups for one message (NodeSource.NodeByAddr)."""

    def __init__(self, nodes: Any) -> None:
        if not isinstance(nodes, Mapping):
            raise TypeError(
                f"nodes: expected a mapping of address to node, got {_type_name(nodes)}"
            )
        self.by_addr: dict[_Address, dict[str, Any]] = {}
        for key, node in nodes.items():
            addr = _ip(key, "nodes key")
            self.by_addr[addr] = _node_json(node, f"nodes[{key!r}]")
        self.seen: dict[_Address, dict[str, Any]] = {}

    def get(self, addr: Optional[_Address]) -> Optional[dict[str, Any]]:
        if addr is None:
            return None
        node = self.by_addr.get(addr)
        if node is not None:
            self.seen[addr] = node
        return node


# -- the message ----------------------------------------------------------------


def _row(conn: _Conn, counts: tuple[int, int, int, int]) -> dict[str, Any]:
    """One ``ConnectionCounts`` with Go's omitzero applied."""
    proto, (sa, sp), (da, dp) = conn
    out: dict[str, Any] = {}
    if proto:
        out["proto"] = proto
    if sa is not None or sp:
        out["src"] = _addrport_text(sa, sp)
    if da is not None or dp:
        out["dst"] = _addrport_text(da, dp)
    for name, value in zip(_COUNT_FIELDS, counts):
        if value:
            out[name] = value
    return out


def _add(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, int, int, int]:
    w, x, y, z = ((p + q) & _U64 for p, q in zip(a, b))
    return (w, x, y, z)


def to_message(
    start: datetime,
    end: datetime,
    virtual: Mapping[Any, Any],
    physical: Mapping[Any, Any],
    *,
    node_id: str,
    nodes: Optional[Mapping[Any, Mapping[str, Any]]] = None,
    routes: Iterable[Any] = (),
    log_exit_flows: bool = False,
) -> dict[str, Any]:
    """The network-log message of one window, as a dict shaped like its JSON.

    ``start``/``end``/``virtual``/``physical`` are what ``dump`` receives.
    ``nodes`` maps an address (str or ipaddress object) to a node: a mapping
    with ``nodeId`` and optionally ``name``, ``addresses``, ``os``, ``user``
    and ``tags``.  ``routes`` are the networks routed through the tailnet
    (subnet routes; str, ``ip_network`` or single addresses).  The result
    has the JSON's keys in Go's order with zero fields left out; ``start``
    and ``end`` stay ``datetime`` objects in UTC.  :func:`dumps` writes it.
    """
    start = _time(start, "start")
    end = _time(end, "end")
    node_id = _text(node_id, "node_id")
    if not node_id:
        raise ValueError("node_id: must not be empty")
    if not isinstance(log_exit_flows, bool):
        raise TypeError(
            f"log_exit_flows: expected True or False, got {_type_name(log_exit_flows)}"
        )
    virtual_rows = _table(virtual, "virtual")
    physical_rows = _table(physical, "physical")
    nets = [n for n in _routes(routes) if n.prefixlen > 0]
    known = _Nodes(nodes if nodes is not None else {})

    def within_routes(addr: Optional[_Address]) -> bool:
        return addr is not None and any(addr in n for n in nets)

    lists: dict[str, list[tuple[_Conn, tuple[int, int, int, int]]]] = {
        name: [] for name in _TRAFFIC
    }
    anonymized: dict[_Conn, tuple[int, int, int, int]] = {}
    for conn, counts in virtual_rows:
        proto, (sa, sp), (da, dp) = conn
        src_node, dst_node = known.get(sa), known.get(da)
        src_is_self = src_node is not None and src_node["nodeId"] == node_id
        if src_is_self and dst_node is not None:
            kind = "virtualTraffic"
        elif src_is_self:
            kind = "subnetTraffic" if within_routes(da) else "exitTraffic"
        elif dst_node is not None:
            kind = "subnetTraffic" if within_routes(sa) else "exitTraffic"
        else:
            kind = "exitTraffic"
        if kind == "exitTraffic" and not log_exit_flows:
            # protocol and ports scrubbed; addresses kept only for nodes
            key: _Conn = (
                0,
                (sa, 0) if src_node is not None else (None, 0),
                (da, 0) if dst_node is not None else (None, 0),
            )
            before = anonymized.get(key)
            anonymized[key] = counts if before is None else _add(before, counts)
            continue
        lists[kind].append((conn, counts))
    lists["exitTraffic"] += anonymized.items()
    for conn, counts in physical_rows:
        known.get(conn[1][0])  # the physical src is a node's address
        lists["physicalTraffic"].append((conn, counts))

    message: dict[str, Any] = {"nodeId": node_id, "start": start, "end": end}
    if nodes is not None:
        self_node = next(
            (n for n in known.by_addr.values() if n["nodeId"] == node_id), None
        )
        message["srcNode"] = self_node or {"nodeId": node_id}
        others: dict[str, dict[str, Any]] = {}
        for addr in sorted(known.seen, key=_addr_order):
            node = known.seen[addr]
            if node["nodeId"] != node_id:
                others.setdefault(node["nodeId"], node)
        if others:
            message["dstNodes"] = [others[k] for k in sorted(others)]
    for name in _TRAFFIC:
        if lists[name]:
            rows = sorted(lists[name], key=lambda item: _conn_order(item[0]))
            message[name] = [_row(conn, counts) for conn, counts in rows]
    return message


# -- JSON as Go's encoding/json writes it --------------------------------------------

# encoding/json's escapes: the short forms, \u00XX for other control
# characters, and <, >, & and U+2028/U+2029 escaped (HTML-safe by default).
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",  # Go 1.22 and later (omitzero needs 1.24)
    "\f": "\\f",
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
for _code in range(0x20):
    _ESCAPES.setdefault(chr(_code), f"\\u{_code:04x}")
_TRANSLATE = str.maketrans(_ESCAPES)


def _quote(text: Any, argname: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"{argname}: expected a str, got {_type_name(text)}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate has no UTF-8 form; what bytes it stood for is
        # not known, so Go's output for it cannot be known either.
        raise ValueError(f"{argname}: not valid Unicode (a lone surrogate)") from None
    return '"' + text.translate(_TRANSLATE) + '"'


def _rfc3339(value: Any, argname: str) -> str:
    """time.Time's JSON: RFC 3339 with the fraction's trailing zeros trimmed."""
    t = _time(value, argname)
    text = (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}"
        f"T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    )
    if t.microsecond:
        text += f".{t.microsecond:06d}".rstrip("0")
    return f'"{text}Z"'


def _dump_addrport(value: Any, argname: str) -> Optional[str]:
    """An endpoint as Go writes its netip.AddrPort; None when it is zero.

    A str is taken as to_message writes it (and must be in that canonical
    form: Go holds a parsed AddrPort); an AddrPort or (address, port) is
    written as Go would."""
    if not isinstance(value, str):
        addr, port = _endpoint(value, argname)
        if addr is None and port == 0:
            return None  # the zero AddrPort: omitzero leaves it out
        return f'"{_addrport_text(addr, port)}"'
    if value == "":
        return '""'  # an AddrPort with a port but no address
    host, sep, port_text = value.rpartition(":")
    canonical = None
    if sep and port_text.isdigit() and len(port_text) <= 5:
        v6 = host.startswith("[") and host.endswith("]")
        try:
            addr = ipaddress.ip_address(host[1:-1] if v6 else host)
        except ValueError:
            addr = None
        if addr is not None and (addr.version == 6) == v6:
            canonical = _addrport_text(addr, _int_in(int(port_text), argname, 0xFFFF))
    if canonical != value:
        raise ValueError(
            f"{argname}: {value!r} is not an address and port as Go writes them "
            "(ADDR:PORT or [ADDR]:PORT, canonical form)"
        )
    return f'"{value}"'


def _fields(obj: Any, allowed: tuple[str, ...], argname: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise TypeError(f"{argname}: expected a dict, got {_type_name(obj)}")
    unknown = [k for k in obj if k not in allowed]
    if unknown:
        raise ValueError(f"{argname}: unknown field {unknown[0]!r}")
    return obj


def _dump_node(node: Any, argname: str) -> Optional[str]:
    node = _fields(node, _NODE_FIELDS, argname)
    parts = [f'"nodeId":{_quote(node.get("nodeId", ""), f"{argname}.nodeId")}']
    if node.get("name"):
        parts.append(f'"name":{_quote(node["name"], f"{argname}.name")}')
    addresses = node.get("addresses") or []
    if addresses:
        if isinstance(addresses, str) or not isinstance(addresses, list):
            raise TypeError(f"{argname}.addresses: expected a list")
        texts = []
        for i, a in enumerate(addresses):
            addr = _ip(a, f"{argname}.addresses[{i}]")
            texts.append(f'"{_addr_text(addr)}"')
        parts.append(f'"addresses":[{",".join(texts)}]')
    for name in ("os", "user"):
        if node.get(name):
            parts.append(f'"{name}":{_quote(node[name], f"{argname}.{name}")}')
    tags = node.get("tags") or []
    if tags:
        if isinstance(tags, str) or not isinstance(tags, list):
            raise TypeError(f"{argname}.tags: expected a list")
        quoted = [_quote(t, f"{argname}.tags[{i}]") for i, t in enumerate(tags)]
        parts.append(f'"tags":[{",".join(quoted)}]')
    if len(parts) == 1 and not node.get("nodeId"):
        return None  # the zero Node: omitzero leaves it out
    return "{" + ",".join(parts) + "}"


def _dump_row(row: Any, argname: str) -> str:
    row = _fields(row, _ROW_FIELDS, argname)
    parts = []
    proto = _int_in(row.get("proto", 0), f"{argname}.proto", 0xFF)
    if proto:
        parts.append(f'"proto":{proto}')
    for name in ("src", "dst"):
        if name in row:
            text = _dump_addrport(row[name], f"{argname}.{name}")
            if text is not None:
                parts.append(f'"{name}":{text}')
    for name in _COUNT_FIELDS:
        value = _int_in(row.get(name, 0), f"{argname}.{name}", _U64)
        if value:
            parts.append(f'"{name}":{value}')
    return "{" + ",".join(parts) + "}"


def _dump_list(value: Any, argname: str, item: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise TypeError(f"{argname}: expected a list, got {_type_name(value)}")
    texts = [item(v, f"{argname}[{i}]") for i, v in enumerate(value)]
    if not texts:
        return None  # omitempty
    return "[" + ",".join(texts) + "]"


def dumps(message: Mapping[str, Any]) -> str:
    """``message`` (as :func:`to_message` returns it) as compact JSON.

    Byte for byte what Go's ``encoding/json`` writes for the same
    ``netlogtype.Message``: fields in the struct's order, zero counters,
    zero addresses, empty lists and an empty ``srcNode`` left out, times in
    RFC 3339 with the fraction's trailing zeros trimmed, strings escaped as
    Go escapes them (``<``, ``>``, ``&`` as ``\\u003c``...).
    """
    message = _fields(message, _MESSAGE_FIELDS, "message")
    for name in ("nodeId", "start", "end"):
        if name not in message:
            raise ValueError(f"message: {name!r} is missing")
    parts = [
        f'"nodeId":{_quote(message["nodeId"], "message.nodeId")}',
        f'"start":{_rfc3339(message["start"], "message.start")}',
        f'"end":{_rfc3339(message["end"], "message.end")}',
    ]
    if message.get("srcNode") is not None:
        node = _dump_node(message["srcNode"], "message.srcNode")
        if node is not None:
            parts.append(f'"srcNode":{node}')
    nodes = _dump_list(
        message.get("dstNodes"),
        "message.dstNodes",
        lambda n, a: _dump_node(n, a) or '{"nodeId":""}',
    )
    if nodes is not None:
        parts.append(f'"dstNodes":{nodes}')
    for name in _TRAFFIC:
        rows = _dump_list(message.get(name), f"message.{name}", _dump_row)
        if rows is not None:
            parts.append(f'"{name}":{rows}')
    return "{" + ",".join(parts) + "}"
