"""docs/analysing.md runs: its doctests, and its complete scripts (the
pandas and DuckDB examples on a Parquet file written by ``connstats read``)."""

from __future__ import annotations

import doctest
import re
import subprocess
import sys
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parent.parent / "docs" / "analysing.md"

pytest.importorskip("pyarrow", reason="pyarrow is not installed (connstats[arrow])")


def scripts() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    return [b for b in blocks if not b.lstrip().startswith(">>>")]


def test_doctests():
    result = doctest.testfile(
        str(PAGE), module_relative=False, optionflags=doctest.ELLIPSIS, verbose=False
    )
    assert result.attempted > 5
    assert result.failed == 0


@pytest.mark.parametrize("index", range(len(scripts())))
def test_scripts(index, tmp_path):
    script = scripts()[index]
    for module in re.findall(r"^import (\w+)", script, re.M):
        if module in ("pandas", "duckdb"):
            pytest.importorskip(module, reason=f"{module} is not installed")
    run = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip()
