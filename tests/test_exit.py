"""Interpreter exit with live Statistics that were never shut down.

Each scenario of tests/isolated/exit_live.py runs in a fresh interpreter
(compiled core, and the pure-Python one with CONNSTATS_NO_EXTENSIONS=1): it
must exit with status 0 within a few seconds and write no traceback, crash or
"Exception ignored" report, whatever its flush threads are doing: asleep,
delivering a backlog, stuck inside a dump callback that never returns, or
racing updating threads that are still counting without the GIL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "isolated" / "exit_live.py"
EXIT_WITHIN = 5.0  # seconds, interpreter start-up included
SCENARIOS = [
    "no-dump",
    "dump-period",
    "dump-backlog",
    "dump-blocked",
    "blocked-first",
    "updating-threads",
    "many",
    "garbage-cycle",
    "exit-from-dump",
]
BAD_OUTPUT = (
    "Traceback",
    "Fatal Python error",
    "Exception ignored",
    "Segmentation fault",
    "AddressSanitizer",
)


def _run(scenario: str, impl_name: str) -> tuple[subprocess.CompletedProcess, float]:
    env = dict(os.environ)
    if impl_name == "py":
        env["CONNSTATS_NO_EXTENSIONS"] = "1"
    else:
        env.pop("CONNSTATS_NO_EXTENSIONS", None)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, str(SCRIPT), scenario],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"{scenario}: the interpreter did not exit within 60 s\n{exc.stderr}"
        )
    return proc, time.monotonic() - started


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_interpreter_exits_promptly_with_live_instances(impl, scenario):
    proc, elapsed = _run(scenario, impl.name)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    for bad in BAD_OUTPUT:
        assert bad not in proc.stderr, proc.stderr[-3000:]
    assert elapsed < EXIT_WITHIN, f"{scenario}: exit took {elapsed:.1f} s"
    if scenario != "exit-from-dump":
        assert "EXITING" in proc.stdout


@pytest.mark.parametrize(
    "code",
    [
        "len(m.Window())",
        "m.Window().to_dicts()",
        "m.Window.__new__(m.Window).start",
        "m.Window().packets",
    ],
)
def test_a_window_made_from_python_raises_instead_of_crashing(c_impl, code):
    """Windows come from Core.cut()/pop_pending(); one constructed directly has
    no table, and using it must raise, not dereference NULL."""
    script = (
        "import connstats._fastparse as m\n"
        "try:\n"
        f"    {code}\n"
        "except (TypeError, ValueError) as exc:\n"
        "    print('raised', type(exc).__name__)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, (
        f"{code}: exit status {proc.returncode} {proc.stderr[-2000:]}"
    )
    assert "raised" in proc.stdout


def test_open_window_is_delivered_at_exit(impl):
    proc, _elapsed = _run("dump-period", impl.name)
    assert proc.returncode == 0
    assert "DUMP 200" in proc.stdout


def test_a_blocked_dump_does_not_spend_the_budget_of_the_others(impl):
    """The exit hook stops every instance before it waits for any: a dump
    that never returns delays exit by the budget, and meanwhile the other
    instances' windows are delivered."""
    proc, _elapsed = _run("blocked-first", impl.name)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "DUMP blocked" in proc.stdout
    assert "DUMP 20" in proc.stdout
