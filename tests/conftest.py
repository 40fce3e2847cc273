"""Run every behavioural test against both cores (compiled and pure Python)."""

from __future__ import annotations

import importlib
import os
import sys
from types import SimpleNamespace

import pytest

# Test helpers (packet and capture builders) are plain modules in tests/;
# --import-mode=importlib does not put this folder on sys.path by itself.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--no-c-extensions",
        action="store_true",
        default=False,
        help="run only against the pure-Python core",
    )


def _c_module():
    try:
        return importlib.import_module("connstats._fastparse")
    except ImportError:
        return None


def _namespace(module, name):
    from connstats import _statistics

    class BoundStatistics(_statistics.Statistics):
        _core_module = module

    BoundStatistics.__name__ = f"Statistics[{name}]"
    return SimpleNamespace(
        name=name,
        module=module,
        Core=module.Core,
        decode=module.decode,
        AddrPort=module.AddrPort,
        Connection=module.Connection,
        Counts=module.Counts,
        Statistics=BoundStatistics,
    )


def _params(config):
    params = [pytest.param("py", id="py")]
    if not config.getoption("--no-c-extensions"):
        params.insert(0, pytest.param("c", id="c", marks=pytest.mark.c_extension))
    return params


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "impl" in metafunc.fixturenames:
        metafunc.parametrize(
            "impl", _params(metafunc.config), indirect=True, scope="session"
        )


@pytest.fixture(scope="session")
def impl(request):
    """A namespace with Core, decode, value types and a Statistics bound to one core."""
    if request.param == "c":
        module = _c_module()
        if module is None:
            pytest.fail("the compiled core connstats._fastparse is not importable")
        return _namespace(module, "c")
    return _namespace(importlib.import_module("connstats._fastparse_py"), "py")


@pytest.fixture(scope="session")
def py_impl():
    return _namespace(importlib.import_module("connstats._fastparse_py"), "py")


@pytest.fixture(scope="session")
def c_impl(request):
    if request.config.getoption("--no-c-extensions"):
        pytest.skip("--no-c-extensions given")
    module = _c_module()
    if module is None:
        pytest.fail("the compiled core connstats._fastparse is not importable")
    return _namespace(module, "c")
