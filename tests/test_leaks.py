"""Bounded memory: a million update/extract cycles, ten thousand Statistics.

Each workload runs in a fresh interpreter (tests/isolated/leak_cycles.py) so
that nothing else in the test session moves RSS.  Stated bounds, measured
after a warm-up:

* RSS grows by at most 2 MiB over the run (a leak of 2 bytes per cycle of the
  million would already exceed it; one leaked window, lock or thread stack
  per cycle would exceed it many times over);
* Python memory still allocated (tracemalloc, after gc) grows by at most
  16 KiB between the middle and the end of a traced run of 100,000
  update/extract cycles (80,000 for the pure core) or 2,000 create/shutdown
  cycles;
* no ``connstats-flush`` thread and no other thread is left behind.

The pure-Python core runs 100,000 update/extract cycles (it is ~20x slower).
Figures are printed (``-s`` shows them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).parent / "isolated" / "leak_cycles.py"
RSS_BOUND = 2 * 1024 * 1024
TRACED_BOUND = 16 * 1024

if not sys.platform.startswith("linux"):
    pytest.skip("RSS is read from /proc (Linux)", allow_module_level=True)


def _run(mode: str, impl_name: str, cycles: int, traced: int) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONMALLOC", None)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), mode, impl_name, str(cycles), str(traced)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        f"\n[leaks {impl_name}] {mode}: {cycles} cycles in {result['seconds']} s, "
        f"RSS {result['rss_before'] / 2**20:.1f} -> {result['rss_after'] / 2**20:.1f} MiB "
        f"({result['rss_growth']:+d} B), traced Python memory {result['traced_growth']:+d} B "
        f"over the second half of {result['traced_cycles']} traced cycles"
    )
    return result


def _check(result: dict) -> None:
    assert result["rss_growth"] <= RSS_BOUND, result
    assert result["traced_growth"] <= TRACED_BOUND, result
    assert result["flush_threads"] == 0, result
    assert result["threads_after"] == result["threads_before"], result


def test_a_million_update_extract_cycles_keep_memory_flat(impl):
    if impl.name == "c":
        result = _run("update-extract", "c", 1_000_000, 100_000)
    else:
        result = _run("update-extract", "py", 100_000, 80_000)
    _check(result)


def test_ten_thousand_statistics_create_shutdown_cycles_leave_nothing_behind(impl):
    _check(_run("create-shutdown", impl.name, 10_000, 2_000))
