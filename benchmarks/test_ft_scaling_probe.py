"""ft_scaling_probe.py's command line: bad arguments are errors.

The probe once took REPEAT as its first argument; RESULTS.md quoted
``ft_scaling_probe.py 20`` long after it had switched to case names, and the
``20`` then ran the ``ownstats`` code under the label "20".
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).resolve().parent / "ft_scaling_probe.py"


def _probe(*args, **env):
    return subprocess.run(
        [sys.executable, str(PROBE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


@pytest.mark.parametrize(
    "args, env, message",
    [
        (["20"], {}, "unknown case(s) '20' (a number: REPEAT and ROUNDS"),
        (["thread", "ownbound"], {}, "unknown case(s) 'ownbound'"),
        (["attr", "attr"], {}, "a case is named twice"),
        (["thread"], {"REPEAT": "0"}, "REPEAT='0': expected a whole number >= 1"),
        (["thread"], {"ROUNDS": "many"}, "ROUNDS='many': expected a whole number"),
    ],
)
def test_bad_arguments_are_an_error(args, env, message):
    proc = _probe(*args, **env)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "cases: thread attr shared ownstats" in proc.stderr
    assert proc.stdout == ""


def test_named_cases_run_in_the_order_given():
    proc = _probe("shared", "thread", REPEAT="1", ROUNDS="1")
    assert proc.returncode == 0, proc.stderr
    cases = [line.split()[0] for line in proc.stdout.splitlines()[1:]]
    assert cases == ["shared", "thread"]
