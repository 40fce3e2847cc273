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
import sys
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
            _missing_message(compiled, what, exc), RuntimeWarning, stacklevel=3
        )
        return importlib.import_module(pure)


def _missing_message(compiled: str, what: str, exc: ImportError) -> str:
    """Why the compiled module is missing, and what to do about it."""
    from pathlib import Path  # only on this path: start-up time

    package = Path(__file__).resolve().parent
    checkout = package.parent
    slow = f"using the slow pure-Python {what}"
    if not (checkout / "src" / "_fastparse.pyx").is_file():
        return (
            f"connstats: compiled {what} unavailable ({exc}); {slow}. Set "
            "CONNSTATS_NO_EXTENSIONS=1 to choose it explicitly and silence this."
        )
    # Imported from a source checkout that was never built in place: usually
    # `pip install .` followed by Python started in the checkout, whose
    # directory comes first on sys.path and shadows the installed copy.
    module = compiled.rpartition(".")[2]
    for entry in sys.path:
        candidate = Path(entry or ".").resolve() / "connstats"
        if candidate != package and any(candidate.glob(module + ".*")):
            return (
                f"connstats: imported from the source checkout {package} (it "
                f"comes first on sys.path) instead of the compiled install in "
                f"{candidate}; {slow}. Run Python from another directory, or "
                "install with `pip install -e .`, which builds the compiled "
                "modules into the checkout."
            )
    return (
        f"connstats: imported from the source checkout {package}, which has "
        f"no compiled modules; {slow}. Build them with `pip install -e .` "
        "(or `python setup.py build_ext --inplace`)."
    )
