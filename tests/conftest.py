"""Run every behavioural test against both cores (compiled and pure Python)."""

from __future__ import annotations

import importlib
import os
import sys
import sysconfig
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


FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def _params(config, lanes):
    params = [pytest.param("py", id="py")]
    if not config.getoption("--no-c-extensions"):
        params.insert(0, pytest.param("c", id="c", marks=pytest.mark.c_extension))
        if lanes and not FREE_THREADED:
            # GIL builds count through the lane only from LANE_MIN_CONNS
            # connections on, which few tests reach: "c-lanes" runs them
            # with the lane in use from a window's second packet, as
            # free-threaded builds always do (src/core/lanes.pxi).
            params.insert(
                1, pytest.param("c-lanes", id="c-lanes", marks=pytest.mark.c_extension)
            )
    return params


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "impl" in metafunc.fixturenames:
        lanes = metafunc.definition.get_closest_marker("with_lanes") is not None
        metafunc.parametrize(
            "impl", _params(metafunc.config, lanes), indirect=True, scope="session"
        )


@pytest.fixture(scope="session")
def impl(request):
    """A namespace with Core, decode, value types and a Statistics bound to one core."""
    if request.param in ("c", "c-lanes"):
        module = _c_module()
        if module is None:
            pytest.fail("the compiled core connstats._fastparse is not importable")
        return _namespace(module, "c")
    return _namespace(importlib.import_module("connstats._fastparse_py"), "py")


@pytest.fixture(autouse=True)
def _lanes_from_the_second_packet(request):
    """For a "c-lanes" test: cores it creates use their lane early."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is None or callspec.params.get("impl") != "c-lanes":
        yield
        return
    module = _c_module()
    previous = module._set_lane_min_default(1)
    try:
        yield
    finally:
        module._set_lane_min_default(previous)


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
