"""The counting core in use: compiled, or the pure-Python twin (see _select)."""

from __future__ import annotations

from typing import Any, Sequence

from ._select import NO_EXTENSIONS, load

core = load("connstats._fastparse", "connstats._fastparse_py", "core")
IS_COMPILED = core.__name__ == "connstats._fastparse"


def materialize(window: Any) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """Build a cut window's ``(virtual, physical)`` dicts of Connection -> Counts.

    The loop is Python on purpose: every slice returns to the eval loop, where
    a thread waiting for the GIL (a packet thread calling update_*) gets its
    turn after a switch interval instead of stalling for the whole window.
    """
    virtual: dict[Any, Any] = {}
    physical: dict[Any, Any] = {}
    for _ in window.materialize_slices(virtual, physical):
        pass
    return virtual, physical


def materialize_all(windows: Sequence[Any]) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """``materialize`` for several disjoint windows: counts of a connection
    present in more than one are added up."""
    if len(windows) == 1:
        return materialize(windows[0])
    virtual: dict[Any, Any] = {}
    physical: dict[Any, Any] = {}
    for window in windows:
        for part, total in zip(materialize(window), (virtual, physical)):
            for conn, counts in part.items():
                before = total.get(conn)
                total[conn] = counts if before is None else before + counts
    return virtual, physical


__all__ = ["IS_COMPILED", "NO_EXTENSIONS", "core", "materialize", "materialize_all"]
