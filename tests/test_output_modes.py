"""Files ``connstats`` creates (``-o``, ``-w``) are readable by their owner only.

They hold addresses and ports (``-o``) or whole packets (``-w``), and are
often written as root: a new file is created with mode 0600 whatever the
umask; an existing file is truncated and keeps its mode.  (``capture -w`` is
checked in test_capture_live.py, which can capture.)
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


def _read_to(path: Path, umask: int, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "connstats", "read", "connstats/data/sample.pcap",
         "-o", str(path), *args],
        check=True, timeout=120, cwd=Path(__file__).parents[1],
        preexec_fn=lambda: os.umask(umask),
    )  # fmt: skip


@pytest.mark.parametrize("fmt", ["table", "jsonl", "csv", "parquet"])
@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_new_output_files_are_private(tmp_path, fmt, umask):
    path = tmp_path / f"out.{fmt}"
    _read_to(path, umask, "--format", fmt)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_size > 0


def test_an_existing_file_keeps_its_mode(tmp_path):
    path = tmp_path / "shared.csv"
    path.write_text("old contents that are longer than nothing\n" * 1000)
    path.chmod(0o644)
    _read_to(path, 0o022, "--format", "csv")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_text().startswith("window,")  # truncated, then written
