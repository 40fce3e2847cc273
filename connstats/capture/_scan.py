"""Pick the record scanner: compiled ``connstats.capture._capture`` unless disabled.

``CONNSTATS_NO_EXTENSIONS=1`` forces the pure-Python scanner, and a missing
extension falls back to it with a warning (see ``connstats._select``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._select import NO_EXTENSIONS, load

if TYPE_CHECKING:
    # Type checkers read the pure twin; the compiled module has the same surface.
    from ._scan_py import Scanner as Scanner
else:
    Scanner = load(
        "connstats.capture._capture", "connstats.capture._scan_py", "capture scanner"
    ).Scanner

IS_COMPILED: bool = Scanner.__module__ == "connstats.capture._capture"

__all__ = ["IS_COMPILED", "NO_EXTENSIONS", "Scanner"]
