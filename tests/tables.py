"""Windows as plain dicts, for the tests: comparable across the two cores'
value types (Connection/AddrPort/Counts of either core)."""

from __future__ import annotations

from typing import Any

Key = tuple[int, Any, int, Any, int]


def plain_key(conn: Any) -> Key:
    proto, src, dst = conn
    return (proto, src.addr, src.port, dst.addr, dst.port)


def plain(table: dict) -> dict[Key, tuple[int, int, int, int]]:
    return {plain_key(k): tuple(v) for k, v in table.items()}


def extract(stats: Any) -> tuple[dict, dict]:
    """``stats.extract()``'s virtual and physical tables, plain."""
    virtual, physical = stats.extract()
    return plain(virtual), plain(physical)
