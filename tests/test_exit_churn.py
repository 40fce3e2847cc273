"""Interpreter exit while daemon threads create and drop instances.

The exit hook (and the fork hook) walk the live instances; other threads may
create or drop instances at the same time (on free-threaded builds at any
moment, on GIL builds between two steps of a Python-level walk).  Every
kept instance's window must still be delivered, with nothing on stderr
("Set changed size during iteration" and lost windows before the fix).
See tests/isolated/exit_churn.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from subproc import core_env

SCRIPT = Path(__file__).parent / "isolated" / "exit_churn.py"
KEEP = 30
RUNS = 4


@pytest.mark.parametrize("run", range(RUNS))
def test_exit_delivers_every_window_while_threads_churn_instances(impl, run):
    env = core_env(impl.name)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(KEEP)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr == "", proc.stderr[-3000:]
    assert "EXITING" in proc.stdout
    assert proc.stdout.count("KEPT 1") == KEEP, proc.stdout[-2000:]
