"""``connstats read`` output failures: a closed pipe is quiet, a full disk is one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import captures as cap

S = 1_000_000_000
T0 = 1_700_000_000 * S
pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="POSIX pipes and /dev/full"
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CONNSTATS_NO_EXTENSIONS", None)
    return env


@pytest.fixture
def many(tmp_path) -> str:
    recs = [(T0 + i, cap.udp4("10.0.0.1", i, "10.0.0.2", 9)) for i in range(1, 20000)]
    path = tmp_path / "many.pcap"
    path.write_bytes(cap.pcap(recs, 101, nanosecond=True))
    return str(path)


@pytest.mark.parametrize("fmt", ["table", "jsonl", "csv"])
def test_reader_going_away_is_quiet_and_exits_like_sigpipe(many, fmt):
    proc = subprocess.Popen(
        [sys.executable, "-m", "connstats", "read", many, "--top", "0", "--format", fmt,
         "--max-period", "100ns"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(),
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    assert first
    proc.stdout.close()  # what `head -n 1` does after its line
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 141
    assert err == b""


def test_head_in_a_shell_pipeline(many):
    proc = subprocess.run(
        f"set -o pipefail; {sys.executable} -m connstats read {many} --top 0 | head -n 2;"
        " echo status=$?",
        shell=True, executable="/bin/bash", capture_output=True, text=True,
        env=_env(), timeout=60,
    )  # fmt: skip
    lines = proc.stdout.splitlines()
    assert len(lines) == 3 and lines[-1] == "status=141"
    assert proc.stderr == ""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
@pytest.mark.parametrize("where", ["stdout", "--output"])
def test_full_disk_is_one_line(many, where):
    if where == "stdout":
        with open("/dev/full", "w") as full:
            proc = subprocess.run(
                [sys.executable, "-m", "connstats", "read", many, "--top", "0"],
                stdout=full, stderr=subprocess.PIPE, text=True, env=_env(), timeout=60,
            )  # fmt: skip
        name = "standard output"
    else:
        proc = subprocess.run(
            [sys.executable, "-m", "connstats", "read", many, "--top", "0", "-o", "/dev/full"],
            capture_output=True, text=True, env=_env(), timeout=60,
        )  # fmt: skip
        name = "/dev/full"
    assert proc.returncode == 1
    assert proc.stderr == f"connstats: cannot write {name}: No space left on device\n"
    assert many not in proc.stderr  # the input is not blamed


def test_small_output_to_full_disk_fails_at_the_final_flush(tmp_path):
    # Small enough to sit in the stdout buffer until exit.
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "connstats", "read", "--format", "jsonl"],
            stdout=full, stderr=subprocess.PIPE, text=True, env=_env(), timeout=60,
            stdin=subprocess.DEVNULL,  # the built-in sample, whatever runs the tests
        )  # fmt: skip
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("connstats: cannot write standard output:")
