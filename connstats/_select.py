"""Choose between a compiled module and its pure-Python twin.

``CONNSTATS_NO_EXTENSIONS=1`` forces the twin.  A missing extension falls
back to it with a warning, so that an install without a compiler still works;
the test suite checks in a subprocess that a normal install is compiled.
This module imports nothing of connstats itself, so that each user (the
counting core, the capture scanner) loads only what it needs.
"""

from __future__ import annotations

import importlib
import os
import warnings
from types import ModuleType

NO_EXTENSIONS = os.environ.get("CONNSTATS_NO_EXTENSIONS", "") not in ("", "0")


def load(compiled: str, pure: str, what: str) -> ModuleType:
    """Import `compiled` unless disabled or missing, else `pure`."""
    if NO_EXTENSIONS:
        return importlib.import_module(pure)
    try:
        return importlib.import_module(compiled)
    except ImportError as exc:  # pragma: no cover - depends on the install
        warnings.warn(
            f"connstats: compiled {what} unavailable ({exc}); using the slow "
            "pure-Python one. Set CONNSTATS_NO_EXTENSIONS=1 to silence this.",
            RuntimeWarning,
            stacklevel=3,
        )
        return importlib.import_module(pure)
