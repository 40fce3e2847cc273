"""pytest-benchmark configuration for connstats.

Not part of the default test run (``testpaths = ["tests"]``); run on purpose:

    python -m pytest benchmarks --benchmark-json=bench.json      # the real run
    python -m pytest benchmarks -q --benchmark-disable           # smoke (CI)

Workloads are built once per session; every benchmark stores what one round
handles (``extra_info``: unit, count, workload, path, direction), and the
terminal summary below adds ns per unit and the ratios against the floor and
the pure-Python baseline of the same workload.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    # --import-mode=importlib does not put rootdir/benchmarks on sys.path.
    sys.path.insert(0, str(HERE))

import workloads as _workloads  # noqa: E402
from harness import cpu_snapshot, other_load  # noqa: E402


def quick(config: pytest.Config) -> bool:
    """True when timing is off (``--benchmark-disable``): shrink the heavy cases."""
    return bool(config.getoption("benchmark_disable", False))


@pytest.fixture(scope="session")
def is_quick(pytestconfig: pytest.Config) -> bool:
    return quick(pytestconfig)


class _Workloads(dict):
    def __missing__(self, name: str) -> _workloads.Workload:
        value = self[name] = _workloads.build(name)
        return value


@pytest.fixture(scope="session")
def workloads() -> _Workloads:
    """Lazily built workloads by name (``workloads["ipv4-100k"]``)."""
    return _Workloads()


@pytest.fixture(scope="session", autouse=True)
def _compiled_core() -> None:
    import connstats

    if not connstats.IS_COMPILED:
        pytest.exit(
            "connstats is not using its compiled core: benchmarks would mislead", 2
        )


# -- machine description in the JSON ------------------------------------------


def _compiler() -> str:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    try:
        out = subprocess.run(
            [cc, "--version"], capture_output=True, text=True, timeout=10
        )
        return out.stdout.splitlines()[0] if out.stdout else cc
    except (OSError, subprocess.SubprocessError):
        return cc


def pytest_benchmark_update_machine_info(
    config: pytest.Config, machine_info: dict
) -> None:
    import connstats

    machine_info["connstats"] = {
        "version": connstats.__version__,
        "compiled": connstats.IS_COMPILED,
        "core": connstats._impl.core.__file__,
        # when the loaded extension file was built (read at session start)
        "core_built": getattr(config, "_connstats_core_built", None),
    }
    machine_info["compiler"] = _compiler()
    machine_info["python_build"] = " ".join(platform.python_build())
    machine_info["uname"] = " ".join(platform.uname())
    machine_info["loadavg_at_end"] = list(os.getloadavg())
    machine_info["loadavg_at_start"] = getattr(config, "_connstats_loadavg", None)
    # Average number of CPUs busy with other processes during the run: the
    # two-thread cases need both CPUs of a 2-CPU machine.
    machine_info.update(other_load(getattr(config, "_connstats_cpu", None)) or {})


def pytest_configure(config: pytest.Config) -> None:
    try:
        from connstats import _impl

        built = os.path.getmtime(_impl.core.__file__)
        config._connstats_core_built = datetime.datetime.fromtimestamp(  # type: ignore[attr-defined]
            built, datetime.timezone.utc
        ).isoformat(timespec="seconds")
    except (ImportError, OSError):
        pass
    config._connstats_loadavg = list(os.getloadavg())  # type: ignore[attr-defined]
    config._connstats_cpu = cpu_snapshot()  # type: ignore[attr-defined]


# -- ns per unit in the terminal summary ----------------------------------------


def per_unit_rows(benches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with ns/unit and ratios; shared with report.py (which reads the JSON)."""
    rows = []
    for b in benches:
        info = b.get("extra_info") or {}
        count = info.get("count")
        if not count or info.get("unit") in (None, "memory"):
            continue
        rows.append(
            dict(
                info, name=b["name"], group=b.get("group"), ns=b["median"] * 1e9 / count
            )
        )
    floor = {(r["workload"]): r["ns"] for r in rows if r["path"] == "floor"}
    base = {
        (r["workload"], r["direction"]): r["ns"]
        for r in rows
        if r["path"] == "baseline"
    }
    for r in rows:
        if r["unit"] == "packet":
            f = floor.get(r["workload"])
            bl = base.get((r["workload"], r["direction"]))
            r["vs_floor"] = r["ns"] / f if f else None
            r["vs_baseline"] = bl / r["ns"] if bl else None
        else:
            r["vs_floor"] = r["vs_baseline"] = None
    return rows


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    session = getattr(config, "_benchmarksession", None)
    if session is None or quick(config) or not session.benchmarks:
        return
    benches = []
    for m in session.benchmarks:
        if not m or m.has_error:
            continue
        benches.append(
            {
                "name": m.name,
                "group": m.group,
                "median": m.stats.median,
                "extra_info": m.extra_info,
            }
        )
    rows = per_unit_rows(benches)
    if not rows:
        return
    tr = terminalreporter
    tr.write_sep("-", "connstats: median ns per unit (ratios in the same run)")
    tr.write_line(
        f"{'case':58} {'ns/unit':>10} {'unit':>10} {'x floor':>8} {'x faster':>9}"
    )
    for r in rows:
        vf = f"{r['vs_floor']:.2f}" if r["vs_floor"] else ""
        vb = f"{r['vs_baseline']:.1f}" if r["vs_baseline"] else ""
        tr.write_line(f"{r['name']:58} {r['ns']:10.1f} {r['unit']:>10} {vf:>8} {vb:>9}")
