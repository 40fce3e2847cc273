"""The counting core in use: compiled, or the pure-Python twin (see _select)."""

from __future__ import annotations

from ._select import NO_EXTENSIONS, load

core = load("connstats._fastparse", "connstats._fastparse_py", "core")
IS_COMPILED = core.__name__ == "connstats._fastparse"

__all__ = ["IS_COMPILED", "NO_EXTENSIONS", "core"]
