"""Pick the core: the compiled one unless CONNSTATS_NO_EXTENSIONS is set.

A missing extension falls back to the pure-Python twin with a warning, so
that ``pip install`` without a compiler still gives a working package; the
test suite checks in a subprocess that a normal install really is compiled.
"""

from __future__ import annotations

import os
import warnings
from types import ModuleType

NO_EXTENSIONS = os.environ.get("CONNSTATS_NO_EXTENSIONS", "") not in ("", "0")


def _load() -> ModuleType:
    if NO_EXTENSIONS:
        from . import _fastparse_py

        return _fastparse_py
    try:
        from . import _fastparse
    except ImportError as exc:  # pragma: no cover - depends on the install
        from . import _fastparse_py

        warnings.warn(
            f"connstats: compiled core unavailable ({exc}); using the slow "
            "pure-Python core. Set CONNSTATS_NO_EXTENSIONS=1 to silence this.",
            RuntimeWarning,
            stacklevel=3,
        )
        return _fastparse_py
    return _fastparse


core = _load()
IS_COMPILED = core.__name__.endswith("._fastparse")
