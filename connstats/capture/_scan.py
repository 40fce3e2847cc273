"""Pick the record scanner: compiled ``connstats._capture`` unless disabled.

Mirrors ``connstats._impl``: ``CONNSTATS_NO_EXTENSIONS=1`` forces the pure
Python scanner, and a missing extension falls back to it with a warning.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING

# Read here rather than from connstats._impl so that the capture reader can
# be imported (and tested) without loading the counting core.
NO_EXTENSIONS = os.environ.get("CONNSTATS_NO_EXTENSIONS", "") not in ("", "0")

if TYPE_CHECKING:
    # Type checkers read the pure twin; the compiled module has the same surface.
    from ._scan_py import Scanner as Scanner
else:

    def _load():
        if NO_EXTENSIONS:
            from . import _scan_py

            return _scan_py.Scanner
        try:
            from .. import _capture  # type: ignore[attr-defined]
        except ImportError as exc:  # pragma: no cover - depends on the install
            from . import _scan_py

            warnings.warn(
                f"connstats: compiled capture scanner unavailable ({exc}); "
                "reading captures with the slow pure-Python scanner.",
                RuntimeWarning,
                stacklevel=3,
            )
            return _scan_py.Scanner
        return _capture.Scanner

    Scanner = _load()

IS_COMPILED: bool = Scanner.__module__ == "connstats._capture"
